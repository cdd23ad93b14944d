#!/bin/sh
# Runs every libFuzzer target (tests/fuzz/fuzz_*) for FUZZ_SECONDS seconds
# each (default 30) and prints TAP: "ok" when the target ran that long
# without a crash, leak or failed check.
#
# Each target starts from its committed seeds, tests/fuzz/corpus/<target>/
# (read only), plus a working corpus in the build tree,
# tests/fuzz/corpus-work/<target>/, that keeps what the runs discover
# between runs.  A crash leaves its input as tests/fuzz/crash-* in the
# build tree; reproduce it with `tests/fuzz/fuzz_frame FILE`.
#
# "make check" runs this for 5 s per target.  Before a release, or after
# touching sync/frame.c or proto/, run it longer, e.g. an hour on both
# cores:
#	FUZZ_SECONDS=3600 FUZZ_JOBS=2 tests/fuzz/run.sh
# and commit any new seed worth keeping (a minimised crash input, once
# fixed) to tests/fuzz/corpus/<target>/.
#
# Build directory: $top_builddir (make check), else $UPLINKD_BUILD, else
# the source tree if configured in place, else _build/plain.  Targets are
# built there first when missing (they need configure to have found clang
# with -fsanitize=fuzzer).
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-1}
if [ -n "${top_builddir:-}" ]; then
	build=$(cd "$top_builddir" && pwd)
elif [ -n "${UPLINKD_BUILD:-}" ]; then
	build=$UPLINKD_BUILD
elif [ -f "$src/Makefile" ]; then
	build=$src
else
	build=$src/_build/plain
fi

targets=$(cd "$src/tests/fuzz" && ls fuzz_*.c 2>/dev/null | sed 's/\.c$//')
if [ -z "$targets" ]; then
	echo "1..0 # SKIP no fuzz targets"
	exit 0
fi
if ! grep -q '^FUZZ_TARGETS = tests/fuzz' "$build/Makefile" 2>/dev/null; then
	echo "1..0 # SKIP no libFuzzer build in $build (clang -fsanitize=fuzzer not found by configure)"
	exit 0
fi

n=0 failed=0
for t in $targets; do
	n=$((n + 1))
	bin=$build/tests/fuzz/$t
	work=$build/tests/fuzz/corpus-work/$t
	log=$build/tests/fuzz/$t.fuzz.log
	if [ ! -x "$bin" ] && ! make -C "$build" "tests/fuzz/$t" >/dev/null 2>&1; then
		echo "not ok $n - $t: build failed (make -C $build tests/fuzz/$t)"
		failed=$((failed + 1))
		continue
	fi
	mkdir -p "$work"
	# -max_len: the decoder buffers up to 1 MiB, but small inputs explore
	# the header and chunking paths far faster; 64 KiB still holds
	# several frames.  -timeout/-rss_limit_mb turn hangs and runaway
	# allocation into failures.
	# More than one job forks workers that log to fuzz-N.log in the
	# current directory: run from the build tree.
	par=""
	[ "$jobs" -gt 1 ] && par="-jobs=$jobs -workers=$jobs"
	# shellcheck disable=SC2086
	if (cd "$build/tests/fuzz" && "$bin" -max_total_time="$seconds" \
	    -max_len=65536 -timeout=10 -rss_limit_mb=2048 $par \
	    -artifact_prefix="$build/tests/fuzz/crash-" -print_final_stats=1 \
	    "$work" "$src/tests/fuzz/corpus/$t") >"$log" 2>&1; then
		runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
		echo "ok $n - $t: ${seconds}s, $runs inputs, no crash"
	else
		echo "not ok $n - $t: crashed or failed (see $log)"
		grep -E '^(==[0-9]+==ERROR|SUMMARY)|artifact' "$log" | head -5 | sed 's/^/# /'
		failed=$((failed + 1))
	fi
done
echo "1..$n"
[ "$failed" -eq 0 ]
