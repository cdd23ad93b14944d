#!/bin/sh
# Golden config tests through the daemon binary, as an operator runs it:
#   uplinkd -n -c FILE              exits 0 for valid/*, 1 for invalid/* with
#                                   exactly the NAME.err text on stderr
#   uplinkd --print-config -c FILE  prints YAML that checks again and prints
#                                   back to the same text
#   uplinkd -n -c FILE              with a sync section, also loads its TLS
#                                   files: the valid files' /etc/uplinkd paths
#                                   are pointed at a pair made here
# Paths are passed relative to tests/config, as the .err files name them.
# The same files are checked without the binary by tests/unit/test_config.
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
bin=$(cd "$top_builddir" && pwd)/uplinkd
mkcerts=$(cd "$top_srcdir" && pwd)/deploy/mkcerts.sh
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

pki=$tmp/pki
if ! "$mkcerts" "$pki" node-a node-b >"$tmp/out" 2>&1 ||
    ! DAYS=5 "$mkcerts" "$pki" soon >>"$tmp/out" 2>&1; then
	echo "Bail out! deploy/mkcerts.sh failed: $(tr '\n' ' ' <"$tmp/out")"
	exit 1
fi
# $1 with its TLS files replaced: the CA by $2, the certificate by $3, the
# key by $4.
tls_files() {
	sed -e "s|/etc/uplinkd/ca\.pem|$2|" -e "s|/etc/uplinkd/[^\"/ ]*\.pem|$3|" \
	    -e "s|/etc/uplinkd/[^\"/ ]*\.key|$4|" "$1"
}

for f in valid/*.yaml; do
	tls_files "$f" "$pki/ca.pem" "$pki/node-a.pem" "$pki/node-a.key" >"$tmp/in.yaml"
	"$bin" -n -c "$tmp/in.yaml" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	ok $rc "uplinkd -n accepts $f"
	[ $rc = 0 ] || diag "$tmp/err"
	"$bin" --print-config -c "$tmp/in.yaml" >"$tmp/p1.yaml" 2>"$tmp/err"
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

# What -n says of TLS files the daemon could not start with, or should
# be renewed soon.
f=valid/full.yaml
check_tls() {
	tls_files "$f" "$1" "$2" "$3" >"$tmp/in.yaml"
	"$bin" -n -c "$tmp/in.yaml" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	[ $rc = "$4" ] && grep -qF -- "$5" "$tmp/err"
	res=$?
	ok $res "uplinkd -n: $6 (exit $rc)"
	[ $res = 0 ] || diag "$tmp/err"
}
check_tls "$pki/none.pem" "$pki/node-a.pem" "$pki/node-a.key" 1 \
    "$tmp/in.yaml: sync.tls.ca $pki/none.pem: No such file or directory" \
    "a missing CA file is refused, with the config file, the key and the file"
check_tls "$pki/ca.pem" "$pki/node-a.pem" "$pki/node-b.key" 1 \
    "sync.tls.key $pki/node-b.key does not match sync.tls.cert $pki/node-a.pem" \
    "another node's key is refused"
check_tls "$pki/ca.pem" "$pki/ca.key" "$pki/node-a.key" 1 \
    "sync.tls.cert $pki/ca.key:" "a key file named as the certificate is refused"
check_tls "$pki/ca.pem" "$pki/soon.pem" "$pki/soon.key" 0 \
    "sync.tls.cert $pki/soon.pem expires on" \
    "a certificate that expires in 5 days is accepted, with a warning"

echo "1..$n"
[ $failed = 0 ]
