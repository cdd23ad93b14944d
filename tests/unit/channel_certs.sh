#!/bin/sh
# channel_certs.sh DIR: the certificates test_channel needs.
#   DIR/ca.pem, gw1, gw2, gw3     one CA (deploy/mkcerts.sh)
#   DIR/other/ca.pem, gw1         a second, unrelated CA
#   DIR/expired/gw1.pem,.key      signed by DIR/ca, valid only in 2020
#   DIR/soon/gw2.pem,.key         signed by DIR/ca, valid for 5 days
# openssl 3.0's req/x509 cannot backdate a certificate; `openssl ca` with
# -startdate/-enddate can, given a minimal config.
set -eu
dir=$1
top=${top_srcdir:-.}
"$top/deploy/mkcerts.sh" "$dir" gw1 gw2 gw3 >/dev/null 2>&1
"$top/deploy/mkcerts.sh" "$dir/other" gw1 >/dev/null 2>&1

e=$dir/expired
mkdir -p "$e"
: > "$e/index.txt"
echo 01 > "$e/serial"
cat > "$e/ca.cnf" <<CNF
[ ca ]
default_ca = test
[ test ]
database = $e/index.txt
new_certs_dir = $e
serial = $e/serial
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
x509_extensions = node
[ anything ]
commonName = supplied
[ node ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:gw1
CNF
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$e/gw1.key" 2>/dev/null
openssl req -new -key "$e/gw1.key" -subj /CN=gw1 -out "$e/gw1.csr" 2>/dev/null
openssl ca -batch -config "$e/ca.cnf" -notext \
    -startdate 20200101000000Z -enddate 20200102000000Z \
    -in "$e/gw1.csr" -out "$e/gw1.pem" >/dev/null 2>&1

# DIR/soon/gw2.pem,.key: signed by DIR/ca, valid for 5 days (a renewal
# that the lifetime warning must flag).
mkdir -p "$dir/soon"
cp "$dir/ca.pem" "$dir/ca.key" "$dir/soon/"
DAYS=5 "$top/deploy/mkcerts.sh" "$dir/soon" gw2 >/dev/null 2>&1
