# tap.sh: TAP output for the lab tests (source it).  ok RC WHAT prints
# "ok N - WHAT" when RC is 0, "not ok N - WHAT" otherwise; diag prints a
# comment line.  tests/run-all.sh counts the lines.
n=0
ok() {
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
diag() { echo "# $*"; }
