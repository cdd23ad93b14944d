#!/bin/sh
# Installs what building, running and testing uplinkd needs on Debian 12.
# Idempotent; needs root.  Used by the README's two commands and by CI.
# systemd-container and debootstrap are for tests/lab/t_systemd.sh (the
# units under systemd as PID 1, in a container).
set -eu
PKGS="build-essential autoconf automake libtool pkg-config
 libnetfilter-queue-dev libnetfilter-conntrack-dev libmnl-dev
 libprotobuf-c-dev protobuf-c-compiler libssl-dev libyaml-dev libsystemd-dev
 iptables nftables conntrack conntrackd iproute2 keepalived openssl kmod
 clang libclang-rt-14-dev python3 python3-jinja2 procps
 ansible-core ansible-lint python3-apt git
 systemd-container debootstrap"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "install-deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# keepalived's package starts a service that would grab VRRP on the host,
# and conntrackd's (only the sync benchmark's baseline, tests/bench/
# bench_sync.sh) one that would sync the host's conntrack table; the lab
# runs its own instances in namespaces.
for svc in keepalived conntrackd; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q "$svc" 2>/dev/null; then
		systemctl stop "$svc" || true
	fi
done
