#!/bin/sh
# Golden config tests through the daemon binary, as an operator runs it:
#   uplinkd -n -c FILE              exits 0 for valid/*, 1 for invalid/* with
#                                   exactly the NAME.err text on stderr
#   uplinkd --print-config -c FILE  prints YAML that checks again and prints
#                                   back to the same text
# Paths are passed relative to tests/config, as the .err files name them.
# The same files are checked without the binary by tests/unit/test_config.
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
bin=$(cd "$top_builddir" && pwd)/uplinkd
cd "$top_srcdir/tests/config" || { echo "Bail out! no tests/config"; exit 1; }

if [ ! -x "$bin" ]; then
	echo "1..0 # SKIP uplinkd not built"
	exit 0
fi
if "$bin" -n -c valid/minimal.yaml 2>&1 | grep -q "not built yet"; then
	echo "1..0 # SKIP uplinkd main not ready"
	exit 0
fi

tmp=$(mktemp -d) || { echo "Bail out! mktemp"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0
ok() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}
diag() { sed 's/^/# /' "$@"; }

for f in valid/*.yaml; do
	"$bin" -n -c "$f" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	ok $rc "uplinkd -n accepts $f"
	[ $rc = 0 ] || diag "$tmp/err"
	"$bin" --print-config -c "$f" >"$tmp/p1.yaml" 2>"$tmp/err"
	ok $? "uplinkd --print-config $f"
	"$bin" -n -c "$tmp/p1.yaml" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	ok $rc "printed $f checks"
	[ $rc = 0 ] || diag "$tmp/err"
	"$bin" --print-config -c "$tmp/p1.yaml" >"$tmp/p2.yaml" 2>"$tmp/err"
	cmp -s "$tmp/p1.yaml" "$tmp/p2.yaml"
	ok $? "printed $f prints back the same"
done

for f in invalid/*.yaml; do
	"$bin" -n -c "$f" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	[ $rc = 1 ]
	ok $? "uplinkd -n rejects $f with exit 1 (got $rc)"
	cmp -s "${f%.yaml}.err" "$tmp/err"
	rc=$?
	ok $rc "$f: stderr is ${f%.yaml}.err"
	if [ $rc != 0 ]; then
		echo "# want:"; diag "${f%.yaml}.err"
		echo "# got:"; diag "$tmp/err"
	fi
done

echo "1..$n"
[ $failed = 0 ]
