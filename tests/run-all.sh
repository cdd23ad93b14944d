#!/bin/bash
# The whole test suite: installs dependencies, builds from scratch (plain and
# with ASan/UBSan), runs the unit and golden tests in both builds, then the
# end-to-end tests in network namespaces (t_systemd.sh among them: the units
# under systemd as PID 1 in a container, its rootfs cached in
# /var/cache/uplinkd-test).  Ends with "N passed, N failed".
# Needs root (namespaces, netfilter).  Usage: tests/run-all.sh [-k] [lab-test ...]
#   -k  keep going without reinstalling/rebuilding when a build exists
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
quick=0
[ "${1:-}" = "-k" ] && { quick=1; shift; }

passed=0 failed=0 skipped=0
note() { printf '=== %s\n' "$*"; }

# Counts a TAP stream: "ok", "not ok", "# SKIP".
count_tap() {
	local file=$1 p f s
	p=$(grep -cE '^ok [0-9]+' "$file" | tr -d ' ')
	s=$(grep -cE '^ok [0-9]+.*# SKIP' "$file" | tr -d ' ')
	f=$(grep -cE '^not ok [0-9]+' "$file" | tr -d ' ')
	passed=$((passed + p - s)); skipped=$((skipped + s)); failed=$((failed + f))
	grep -E '^not ok' "$file" | sed 's/^/  FAILED: /'
}

fail_step() { echo "  FAILED: $*"; failed=$((failed + 1)); }

if [ $quick = 0 ] || [ ! -x "$top/_build/plain/uplinkd" ]; then
	note "dependencies"
	deploy/install-deps.sh || { fail_step "install-deps"; echo "$passed passed, $failed failed"; exit 1; }
	note "build (plain and sanitizers)"
	[ -f config.status ] && make distclean >/dev/null 2>&1
	./autogen.sh >/dev/null 2>&1 || { fail_step "autogen"; echo "$passed passed, $failed failed"; exit 1; }
	for v in plain asan; do
		rm -rf "_build/$v"; mkdir -p "_build/$v"
		flags=""; [ $v = asan ] && flags="--enable-sanitizers"
		if ! (cd "_build/$v" && ../../configure -q $flags && make -j2 >make.log 2>&1 && make -j2 check TESTS= >>make.log 2>&1); then
			tail -30 "_build/$v/make.log"; fail_step "build $v"
			echo "$passed passed, $failed failed"; exit 1
		fi
	done
fi

for v in plain asan; do
	note "unit and golden tests ($v)"
	(cd "_build/$v" && ASAN_OPTIONS=detect_leaks=1 make check >check.log 2>&1)
	for trs in $(find "_build/$v/tests" -name '*.log' ! -name 'test-suite.log'); do
		count_tap "$trs"
	done
	grep -q '^# ERROR: *[1-9]' "_build/$v/check.log" && fail_step "$v: a test program crashed (see _build/$v/test-suite.log)"
done

note "make distcheck (the tarball builds and passes its unit tests on its own)"
if (cd _build/plain && make -j2 distcheck >distcheck.log 2>&1); then
	echo "ok - make distcheck"
	passed=$((passed + 1))
else
	tail -30 _build/plain/distcheck.log
	fail_step "make distcheck (see _build/plain/distcheck.log)"
fi

note "fuzz targets (short run; see tests/fuzz/run.sh for a long one)"
FUZZ_SECONDS=${FUZZ_SECONDS:-15} FUZZ_BUILDDIR="$top/_build/plain" tests/fuzz/run.sh >_build/fuzz.log 2>&1
grep -E '^(ok|not ok)' _build/fuzz.log
count_tap _build/fuzz.log

# The lab runs the sanitizer build: real traffic through an ASan/UBSan
# daemon finds what unit tests cannot.
export UPLINKD_BUILD="$top/_build/asan"
for t in ${@:-$(ls tests/lab/t_*.sh 2>/dev/null)}; do
	note "$t"
	log="_build/$(basename "$t" .sh).log"
	timeout 900 bash "$t" >"$log" 2>&1
	rc=$?
	grep -E '^(ok|not ok|#)' "$log" | tail -40
	count_tap "$log"
	[ $rc -ne 0 ] && ! grep -q '^not ok' "$log" && fail_step "$t exited $rc (see $log)"
done

if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
