#!/bin/bash
# The README's first command: installs what is needed, builds, and shows
# the product doing its job live in the namespace lab: two gateways (gw1
# master, gw2 backup, real keepalived), connections spread over both
# providers with the providers' source addresses, gw1 killed outright, and
# every connection carrying on through gw2 with the same source address
# and port; `uplinkctl status` of both nodes along the way.  Everything it
# creates is removed at the end (Ctrl-C too).  Needs root.
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
	lab_pair_down || true
}
trap cleanup EXIT

report() {
	rm -f "$LAB_DIR/server.report"
	kill -USR1 "$(cat "$LAB_DIR/server.pid")"
	lab_wait_for "test -s $LAB_DIR/server.report" 10
}
count() {	# count ID_LO ID_HI: connections per source address seen by the server
	report
	awk -v lo="$1" -v hi="$2" '$1=="tcp" { split($2,f,"="); if (f[2]=="-"||f[2]+0<lo||f[2]+0>=hi) next;
		split($3,p,"="); split(p[2],a,":"); c[a[1]]++ }
		END { for (k in c) printf "    %-16s %d connections\n", k, c[k] }' "$LAB_DIR/server.report"
}
# The long-lived flows as the server sees them: how many kept their
# translated source address and port the whole time.
survivors() {
	report
	awk '$2 != "id=-" { split($2,f,"="); if (f[2]+0 < 1 || f[2]+0 > 1000) next; n[$1]++;
		if ($0 ~ / peer_changes=0 / && $0 !~ / reset=yes /) kept[$1]++ }
		END { printf "    TCP: %d of %d kept their source address and port, UDP: %d of %d\n",
			kept["tcp"], n["tcp"], kept["udp"], n["udp"] }' "$LAB_DIR/server.report"
}
master_is() { lab_uplinkctl "$1" --json status 2>/dev/null | grep -q '"role": *"master"'; }

step "building the lab: client -- LAN -- gw1 + gw2 -- providers A and B -- server (network namespaces)"
lab_up 2 >/dev/null
for gw in gw1 gw2; do
	lab_uplinkd_config "$gw" wrr 2 1
	lab_uplinkd_sync "$gw"
done
lab_keepalived_config gw1 150 preempt
lab_keepalived_config gw2 100 preempt
echo "uplinkd config of gw1 (weights isp-a:isp-b = 2:1, sync over TLS to gw2):"
sed 's/^/    /' "$LAB_DIR/gw1.yaml" | grep -v '^    #'
for gw in gw1 gw2; do lab_uplinkd_start "$gw"; done
lab_wait_for "lab_uplinkctl gw1 status && lab_uplinkctl gw2 status" 20
for gw in gw1 gw2; do lab_keepalived_start "$gw"; done
lab_wait_for "master_is gw1" 30 || true
lab_start_bg srv server "$LT" server --tcp 5001 --udp 5002 --report "$LAB_DIR/server.report" --deadline 600
lab_wait_for "lab_exec srv ss -ltn | grep -q :5001" 10

step "200 long-lived TCP connections and 50 UDP flows, and 300 short connections from 50 hosts"
lab_start_bg client long "$LT" long --to 192.0.2.10:5001 --conns 200 --udp-flows 50 --udp-port 5002 \
	--rate 5 --until-file "$LAB_DIR/stop-long" --id-base 1 --deadline 300
lab_exec client "$LT" short --to 192.0.2.10:5001 --count 300 --concurrency 8 \
	--src-from 10.0.0.110 --src-count 40 --id-base 10000 --timeout 30
echo "what the server saw (source addresses are the providers' SNAT addresses, 2:1):"
count 10000 10300
lab_wait_for "lab_uplinkctl gw2 --json status | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)[\"flows\"][\"peer\"] < 250)'" 30 || true

step "uplinkctl status on gw1 (master)"
lab_uplinkctl gw1 status
step "uplinkctl status on gw2 (backup: gw1's flows are in its cache and its kernel)"
lab_uplinkctl gw2 status

step "uplinkctl drill --mode node: gw1 dies (uplinkd and keepalived killed with SIGKILL, every link cut)"
# The lab's drill harness supplies the failure and the traffic view; the
# drill finds the master, kills it, waits for gw2 and compares the flows.
# gw1's daemons are this shell's jobs: disowned, their deaths are not
# reported ("Killed") in the middle of the drill's output.
for name in uplinkd-gw1 keepalived-gw1; do
	disown "$(cat "$LAB_DIR/$name.pid")" 2>/dev/null || true
done
bash "$top/tests/lab/drill.sh" --mode node --no-failback 2>&1 || true
sleep 2
echo "the long-lived flows, at the server:"
survivors
step "uplinkctl status on gw2 (master now)"
lab_uplinkctl gw2 status
step "uplinkctl sync on gw2"
lab_uplinkctl gw2 sync | head -12

step "the long-lived connections ran through all of it"
touch "$LAB_DIR/stop-long"
lab_wait_for "! kill -0 $(cat "$LAB_DIR/long.pid") 2>/dev/null" 20 || true
grep '^long:' "$LAB_DIR/long.log" | tail -1
echo "(udp_sent minus udp_echoed: datagrams sent during the takeover, while no gateway held"
echo " the addresses, are lost, as UDP allows; TCP retransmits. Every flow carried on: above.)"
echo "untranslated packets seen at the providers: $(lab_leaks)"
step "done; removing the lab"
