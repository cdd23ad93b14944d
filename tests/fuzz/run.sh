#!/bin/bash
# Builds the libFuzzer targets (tests/fuzz/build.sh) into _build/fuzz and
# runs each for FUZZ_SECONDS (default 20), printing TAP: one line per
# target, "not ok" when it does not build, exits with an error, or leaves a
# crash/leak/timeout/oom file.  Targets skipped by build.sh are "# SKIP".
#
# Usage: tests/fuzz/run.sh [TARGET...]       (default: every fuzz_*.c)
# Env:   FUZZ_SECONDS  run time per target (default 20)
#        FUZZ_BUILDDIR configured build tree with generated proto/ files
#
# Corpora: tests/fuzz/corpus/TARGET/ holds the committed seeds and is only
# read; what a run discovers goes to _build/fuzz/corpus/TARGET/ and is kept
# for the next run.  Crash inputs land in _build/fuzz/artifacts/TARGET/;
# replay one with "_build/fuzz/TARGET FILE".  A dictionary
# tests/fuzz/dict/TARGET.dict is used when present.
#
# A longer run (an hour per target, both cores, more memory per input):
#   FUZZ_SECONDS=3600 tests/fuzz/run.sh
# or by hand, on one target, with two jobs:
#   _build/fuzz/fuzz_config -jobs=2 -workers=2 -max_total_time=3600 \
#       -dict=tests/fuzz/dict/fuzz_config.dict -max_len=16384 \
#       -artifact_prefix=_build/fuzz/artifacts/fuzz_config/ \
#       _build/fuzz/corpus/fuzz_config tests/fuzz/corpus/fuzz_config
# and, afterwards, minimise what it found into the seeds worth committing:
#   _build/fuzz/fuzz_config -merge=1 /tmp/min tests/fuzz/corpus/fuzz_config \
#       _build/fuzz/corpus/fuzz_config
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
secs=${FUZZ_SECONDS:-20}
case "$secs" in ''|*[!0-9]*) echo "run.sh: FUZZ_SECONDS must be a number" >&2; exit 2 ;; esac
out=$top/_build/fuzz

if [ $# -gt 0 ]; then
	targets=("$@")
else
	targets=()
	for f in tests/fuzz/fuzz_*.c; do
		[ -f "$f" ] && targets+=("$(basename "$f" .c)")
	done
fi
echo "1..${#targets[@]}"
[ ${#targets[@]} -gt 0 ] || exit 0

buildlog=$(mktemp) || exit 1
trap 'rm -f "$buildlog"' EXIT
tests/fuzz/build.sh "$out" ${FUZZ_BUILDDIR:+"$FUZZ_BUILDDIR"} >"$buildlog" 2>&1
sed 's/^/# /' "$buildlog"

# Crash-like files libFuzzer writes, counted before and after a run so that
# old ones kept from an earlier run do not fail this one.
artifacts() { find "$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'oom-*' -o -name 'slow-unit-*' \) | wc -l; }

n=0 failed=0
for t in "${targets[@]}"; do
	n=$((n + 1))
	if [ ! -f "tests/fuzz/$t.c" ]; then
		echo "not ok $n - $t: no tests/fuzz/$t.c"
		failed=$((failed + 1))
		continue
	fi
	if grep -q "^skipped $t:" "$buildlog"; then
		echo "ok $n - $t # SKIP $(sed -n "s/^skipped $t: //p" "$buildlog")"
		continue
	fi
	if ! grep -q "^built $t\$" "$buildlog" || [ ! -x "$out/$t" ]; then
		echo "not ok $n - $t: does not build"
		failed=$((failed + 1))
		continue
	fi
	work=$out/corpus/$t art=$out/artifacts/$t
	mkdir -p "$work" "$art"
	seeds=()
	[ -d "tests/fuzz/corpus/$t" ] && seeds+=("tests/fuzz/corpus/$t")
	dict=()
	[ -f "tests/fuzz/dict/$t.dict" ] && dict+=("-dict=tests/fuzz/dict/$t.dict")
	before=$(artifacts "$art")
	# -timeout: one input may take 10 s at most; the outer timeout bounds
	# the whole run even if libFuzzer itself wedges.
	timeout -k 10 $((secs + 120)) "$out/$t" -max_total_time="$secs" \
	    -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
	    -artifact_prefix="$art/" "${dict[@]}" "$work" "${seeds[@]}" \
	    >"$out/$t.log" 2>&1
	rc=$?
	after=$(artifacts "$art")
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log" | tail -1)
	if [ $rc -ne 0 ] || [ "$after" -gt "$before" ]; then
		echo "not ok $n - $t: exit $rc, $((after - before)) new crash file(s) in $art (log: $out/$t.log)"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_)' "$out/$t.log" | head -5 | sed 's/^/# /'
		failed=$((failed + 1))
	else
		echo "ok $n - $t: ${runs:-?} inputs in ${secs}s, no crash"
	fi
done
[ $failed -eq 0 ]
