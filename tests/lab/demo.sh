#!/bin/bash
# The README's first command: installs what is needed, builds, and shows
# uplinkd doing its job live in the namespace lab: connections spread over
# both providers with the providers' source addresses, a provider failing
# and recovering, and `uplinkctl` along the way.  Everything it creates is
# removed at the end (Ctrl-C too).  Needs root.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
build="$top/_build/demo"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing packages (apt-get, only what is missing)"
deploy/install-deps.sh
step "building into $build"
[ -f config.status ] && make distclean >/dev/null 2>&1
./autogen.sh >/dev/null 2>&1
mkdir -p "$build"
(cd "$build" && { [ -f Makefile ] || ../../configure -q; } && make -j2 >/dev/null && make -j2 check TESTS= >/dev/null)
echo "built: $build/uplinkd $build/uplinkctl"

export UPLINKD_BUILD=$build LAB_PREFIX=demo
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"
LT=$(lab_labtraffic)
cleanup() {
	lab_stop long >/dev/null 2>&1 || true
	lab_stop server >/dev/null 2>&1 || true
	lab_stop uplinkd-gw1 >/dev/null 2>&1 || true
	lab_down >/dev/null 2>&1 || true
}
trap cleanup EXIT

count() {	# count ID_LO ID_HI: connections per source address seen by the server
	rm -f "$LAB_DIR/server.report"
	kill -USR1 "$(cat "$LAB_DIR/server.pid")"
	lab_wait_for "test -s $LAB_DIR/server.report" 10
	awk -v lo="$1" -v hi="$2" '$1=="tcp" { split($2,f,"="); if (f[2]=="-"||f[2]+0<lo||f[2]+0>=hi) next;
		split($3,p,"="); split(p[2],a,":"); c[a[1]]++ }
		END { for (k in c) printf "    %-16s %d connections\n", k, c[k] }' "$LAB_DIR/server.report"
}

step "building the lab: client -- LAN -- gw1 -- providers A and B -- server (network namespaces)"
lab_up 1 >/dev/null
lab_uplinkd_config gw1 wrr 2 1
echo "uplinkd config (weights isp-a:isp-b = 2:1):"
sed 's/^/    /' "$LAB_DIR/gw1.yaml" | grep -v '^    #'
lab_uplinkd_start gw1
lab_wait_for "lab_uplinkctl gw1 status" 20
lab_wait_for "lab_uplinkctl gw1 --json status | grep -q '\"state\": *\"up\".*\"state\": *\"up\"'" 5 || true
lab_start_bg srv server "$LT" server --tcp 5001 --udp 5002 --report "$LAB_DIR/server.report" --deadline 600
lab_wait_for "lab_exec srv ss -ltn | grep -q :5001" 10
lab_start_bg client long "$LT" long --to 192.0.2.10:5001 --conns 6 --udp-flows 4 --udp-port 5002 \
	--rate 10 --until-file "$LAB_DIR/stop-long" --id-base 1 --deadline 300

step "300 new connections from 50 internal hosts to the server 192.0.2.10"
lab_exec client "$LT" short --to 192.0.2.10:5001 --count 300 --concurrency 8 \
	--src-from 10.0.0.100 --src-count 50 --id-base 10000 --timeout 30
echo "what the server saw (source addresses are the providers' SNAT addresses):"
count 10000 10300

step "uplinkctl status"
lab_uplinkctl gw1 status
step "uplinkctl flows --limit 5"
lab_uplinkctl gw1 flows --limit 5

step "provider A stops answering its health probes"
lab_exec pa iptables -I INPUT -p icmp -j DROP
lab_wait_for "lab_uplinkctl gw1 --json status | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d[\"providers\"][0][\"state\"]!=\"down\")'" 15 || true
lab_uplinkctl gw1 providers
echo "100 new connections now:"
lab_exec client "$LT" short --to 192.0.2.10:5001 --count 100 --concurrency 8 \
	--src-from 10.0.0.100 --src-count 50 --id-base 20000 --timeout 30
count 20000 20100

step "provider A answers again"
lab_exec pa iptables -D INPUT -p icmp -j DROP
lab_wait_for "lab_uplinkctl gw1 --json status | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d[\"providers\"][0][\"state\"]!=\"up\")'" 15 || true
lab_exec client "$LT" short --to 192.0.2.10:5001 --count 100 --concurrency 8 \
	--src-from 10.0.0.100 --src-count 50 --id-base 30000 --timeout 30
count 30000 30100

step "the long-lived connections (6 TCP, 4 UDP) ran through all of it"
touch "$LAB_DIR/stop-long"
lab_wait_for "! kill -0 $(cat "$LAB_DIR/long.pid") 2>/dev/null" 20 || true
grep '^long:' "$LAB_DIR/long.log" | tail -1
echo "untranslated packets seen at the providers: $(lab_leaks)"
step "done; removing the lab"
