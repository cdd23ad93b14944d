#!/bin/sh
#
# mkcerts.sh: the CA and node certificates for the uplinkd sync channel.
#
#   deploy/mkcerts.sh [--force] DIR NODE...
#   deploy/mkcerts.sh --renew-ca DIR
#
# Creates, with nothing but the `openssl` command:
#   DIR/ca.pem, DIR/ca.key      the pair's private CA (made once; kept if
#                               both files exist, refused if only one does)
#   DIR/NODE.pem, DIR/NODE.key  one certificate per node, signed by the CA,
#                               with CN=NODE and subjectAltName DNS:NODE
#
# A node certificate that already exists is kept unless --force is given,
# so running the script again (from the lab or from ansible) changes
# nothing.  --force re-issues the named nodes' certificates and keys; it
# never touches the CA.  Keys are written mode 0600.
#
# --renew-ca gives the CA a new certificate (CA_DAYS from now, a new serial)
# with the same name and the same key, so every node certificate it signed
# verifies under either CA certificate: copy the new ca.pem to the nodes
# in any order and reload each (`uplinkctl reload`); nothing fails over and
# no node certificate changes.  The old one stays as DIR/ca.pem.prev.  It
# refuses if ca.key is not the key of ca.pem, or if a certificate in DIR
# that verified under the old CA certificate would not under the new one.
#
# Environment:
#   DAYS=825        validity of node certificates, in days
#   CA_DAYS=3650    validity of the CA certificate, in days
#   KEY_ALG=ec      ec (P-256) or ed25519
#
# Each node gets, in its uplinkd.yaml:
#   sync: { tls: { ca: DIR/ca.pem, cert: DIR/NODE.pem, key: DIR/NODE.key,
#                  peer_name: OTHER-NODE } }
# Copy ca.pem and the node's own .pem/.key to that node only; ca.key stays
# where the certificates are made.
#
# Exit status: 0 on success, 1 on a failure, 2 on a usage error.

set -eu

usage() {
	echo "usage: $0 [--force] DIR NODE..." >&2
	echo "       $0 --renew-ca DIR" >&2
	exit 2
}

force=0 renew_ca=0
case ${1:-} in
--force) force=1; shift ;;
--renew-ca) renew_ca=1; shift; [ $# -eq 1 ] || usage ;;
esac
[ $renew_ca -eq 1 ] || [ $# -ge 2 ] || usage
dir=$1
shift

DAYS=${DAYS:-825}
CA_DAYS=${CA_DAYS:-3650}
KEY_ALG=${KEY_ALG:-ec}

case $DAYS$CA_DAYS in
*[!0-9]*) echo "$0: DAYS and CA_DAYS must be numbers" >&2; exit 2 ;;
esac
case $KEY_ALG in
ec|ed25519) ;;
*) echo "$0: KEY_ALG must be ec or ed25519, not '$KEY_ALG'" >&2; exit 2 ;;
esac
# Node names become file names and certificate names: same rule as the
# config's node names, nothing a shell or a DN could misread.
for node in "$@"; do
	case $node in
	''|*[!A-Za-z0-9._-]*|.*) echo "$0: bad node name '$node'" >&2; exit 2 ;;
	esac
	[ "$node" != ca ] || { echo "$0: 'ca' is not a node name" >&2; exit 2; }
done

command -v openssl >/dev/null 2>&1 || { echo "$0: openssl not found" >&2; exit 1; }

umask 077
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.mkcerts.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

genkey() {
	if [ "$KEY_ALG" = ed25519 ]; then
		openssl genpkey -algorithm ed25519 -out "$1"
	else
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
		    -pkeyopt ec_param_enc:named_curve -out "$1"
	fi
}

if [ $renew_ca -eq 1 ]; then
	[ -f "$dir/ca.pem" ] && [ -f "$dir/ca.key" ] ||
		{ echo "$0: $dir/ca.pem and $dir/ca.key must both exist to renew the CA" >&2; exit 1; }
	# x509 -key would put the key's public half into the new certificate:
	# with another key, nothing the CA signed would verify any more.
	openssl x509 -in "$dir/ca.pem" -noout -pubkey > "$tmp/cert.pub"
	openssl pkey -in "$dir/ca.key" -pubout > "$tmp/key.pub"
	cmp -s "$tmp/cert.pub" "$tmp/key.pub" ||
		{ echo "$0: $dir/ca.key is not the key of $dir/ca.pem; refusing to renew" >&2; exit 1; }
	openssl x509 -in "$dir/ca.pem" -key "$dir/ca.key" -days "$CA_DAYS" \
	    -set_serial "0x$(openssl rand -hex 16)" -out "$tmp/ca.pem"
	# Dates aside (an expired node certificate is renewed on its own), what
	# chained to the old certificate must chain to the new one.
	for cert in "$dir"/*.pem; do
		[ "$cert" != "$dir/ca.pem" ] || continue
		openssl verify -no_check_time -CAfile "$dir/ca.pem" "$cert" >/dev/null 2>&1 ||
			continue
		openssl verify -no_check_time -CAfile "$tmp/ca.pem" "$cert" >/dev/null 2>&1 ||
			{ echo "$0: $cert would not verify under the renewed CA; refusing" >&2; exit 1; }
	done
	chmod 0644 "$tmp/ca.pem"
	cp -p "$dir/ca.pem" "$dir/ca.pem.prev"
	mv "$tmp/ca.pem" "$dir/ca.pem"
	echo "renewed $dir/ca.pem, valid until $(openssl x509 -in "$dir/ca.pem" -noout -enddate | cut -d= -f2)"
	exit 0
elif [ -f "$dir/ca.pem" ] && [ -f "$dir/ca.key" ]; then
	:
elif [ -f "$dir/ca.pem" ] || [ -f "$dir/ca.key" ]; then
	echo "$0: only one of $dir/ca.pem and $dir/ca.key exists; refusing to replace the CA" >&2
	exit 1
else
	genkey "$tmp/ca.key"
	# No -sha256: OpenSSL 3 defaults to it for EC, and ed25519 refuses any
	# separate digest.
	openssl req -x509 -new -key "$tmp/ca.key" -days "$CA_DAYS" \
	    -subj "/CN=uplinkd sync CA" \
	    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" \
	    -addext "subjectKeyIdentifier=hash" \
	    -out "$tmp/ca.pem"
	chmod 0644 "$tmp/ca.pem"
	mv "$tmp/ca.key" "$dir/ca.key"
	mv "$tmp/ca.pem" "$dir/ca.pem"
	echo "created $dir/ca.pem"
fi

for node in "$@"; do
	if [ $force -eq 0 ] && [ -f "$dir/$node.pem" ] && [ -f "$dir/$node.key" ]; then
		echo "kept $dir/$node.pem"
		continue
	fi
	genkey "$tmp/$node.key"
	openssl req -new -key "$tmp/$node.key" -subj "/CN=$node" -out "$tmp/$node.csr"
	# Both serverAuth and clientAuth: each node is the TLS server on one
	# connection and may be the client on the next.
	cat > "$tmp/$node.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$node
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
	openssl x509 -req -in "$tmp/$node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
	    -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" \
	    -extfile "$tmp/$node.ext" -out "$tmp/$node.pem"
	chmod 0644 "$tmp/$node.pem"
	mv "$tmp/$node.key" "$dir/$node.key"
	mv "$tmp/$node.pem" "$dir/$node.pem"
	echo "created $dir/$node.pem"
done
