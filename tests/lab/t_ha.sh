#!/bin/bash
# Failover drills of the pair: two uplinkd nodes with real keepalived
# (ha/keepalived.conf.j2, VRRPv3, 100 ms adverts, preempt) in the namespace
# lab, 500 long-lived TCP connections and 100 UDP flows over both providers
# through the master.  Each drill fails gw1 in one way, checks that gw2
# takes the addresses and that every connection keeps running with the
# same translated source address and port at the server, then brings gw1
# back and checks the failback the same way.  TAP output; outcomes, not
# speed (the takeover times are printed).
#
# Each drill is `uplinkctl drill` through tests/lab/drill.sh; the checks
# read its JSON report and the server's view of the connections.
#
# Usage: t_ha.sh [MODE...]   modes: graceful crash kill link node sync-cut gap
#   (default: all; then, unless STALE=0, a node failure while the standby
#   is out of sync, which the drill must report flow by flow)
#   gap: graceful, after the standby's kernel lost its copy of every flow
#   (what the takeover check and the NFQUEUE safety net must repair)
#   crash: uplinkd alone killed with SIGKILL; its guard must tell
#   keepalived (tests/lab/drill.sh)
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export LAB_PREFIX=${LAB_PREFIX:-uha}
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"
LT=$(lab_labtraffic) || { echo "Bail out! labtraffic not built"; exit 1; }
SRV=192.0.2.10
TCP_CONNS=${TCP_CONNS:-500}
UDP_FLOWS=${UDP_FLOWS:-100}
MODES=${*:-graceful crash kill link node sync-cut gap}

# shellcheck source=tests/lab/tap.sh
. "$top/tests/lab/tap.sh"
cleanup() {
	# The daemons' logs outlive the lab, for a failed run's post-mortem.
	mkdir -p "$top/_build/t_ha"
	cp "$LAB_DIR"/uplinkd-gw*.log "$LAB_DIR"/keepalived-gw*.log "$top/_build/t_ha/" 2>/dev/null
	for p in long late server late-server; do lab_stop "$p" >/dev/null 2>&1; done
	lab_pair_down
}
trap cleanup EXIT

jget() { lab_jget "$@"; }
role() { jget "$1" 'd["role"]' status; }
holds_vip() { lab_exec "$1" ip -br addr show lan0 | grep -q ' 10\.0\.0\.1/24'; }
in_sync() { [ "$(jget "$1" 'd["in_sync"]' status)" = True ]; }
# Marked conntrack entries in a node's kernel (its own and hot standby).
kernel_flows() { lab_exec "$1" conntrack -L 2>/dev/null | grep -cE 'mark=(256|512) '; }
# Entries the NFQUEUE safety net has rewritten so far.
safety_net() { lab_jget "$1" 'd["queue"]["safety_net"]' status; }

# Waits until NODE is master with the VIPs and the other one has let them
# go; prints the seconds it took.
wait_master() {
	local gw=$1 other=$2 t0 t1
	t0=$(date +%s.%N)
	lab_wait_for "holds_vip $gw && [ \"\$(role $gw)\" = master ] && ! holds_vip $other" 30 || return 1
	t1=$(date +%s.%N)
	python3 -c "print(round($t1 - $t0, 2))"
}

lab_down >/dev/null 2>&1
lab_up 2 >/dev/null || { echo "Bail out! lab up failed"; exit 1; }
for gw in gw1 gw2; do
	lab_uplinkd_config "$gw" wrr 1 1
	lab_uplinkd_sync "$gw"
done
lab_keepalived_config gw1 150 preempt
lab_keepalived_config gw2 100 preempt
lab_exec gw1 keepalived -t -f "$LAB_DIR/keepalived-gw1.conf" &&
	lab_exec gw2 keepalived -t -f "$LAB_DIR/keepalived-gw2.conf"
ok $? "keepalived -t accepts both rendered configs"
lab_uplinkd_start gw1
lab_uplinkd_start gw2
lab_wait_for "lab_uplinkctl gw1 status && lab_uplinkctl gw2 status" 20
lab_keepalived_start gw1
lab_keepalived_start gw2
took=$(wait_master gw1 gw2)
ok $? "gw1 (priority 150) becomes master, gw2 backup ($took s)"
lab_wait_for "in_sync gw1 && in_sync gw2" 30
ok $? "the pair is in sync"
here1=$(jget gw1 '",".join(str(p["source_here"]) for p in d["providers"])' status)
here2=$(jget gw2 '",".join(str(p["source_here"]) for p in d["providers"])' status)
[ "$here1" = "True,True" ] && [ "$here2" = "False,False" ]
ok $? "status shows the SNAT addresses on the master only (gw1 $here1, gw2 $here2)"

# keepalived runs each notify as a process of its own, and two of them can
# finish in the wrong order; the provider addresses (its VIPs) decide.
lab_uplinkctl gw2 ha master >"$LAB_DIR/stale.out" 2>&1
rc=$?
[ $rc = 1 ] && grep -q 'stale' "$LAB_DIR/stale.out" && [ "$(role gw2)" = backup ]
ok $? "a master notify on the node without the addresses is refused as stale ($(head -c 120 "$LAB_DIR/stale.out"))"
# A lost notify: the addresses appear without one (on lo, and with
# arp_ignore so that gw2 does not answer ARP for gw1's addresses); the
# role follows them, and back.
arp_ignore=$(lab_exec gw2 sysctl -n net.ipv4.conf.all.arp_ignore)
lab_exec gw2 sysctl -qw net.ipv4.conf.all.arp_ignore=1 &&
	lab_exec gw2 ip addr add 198.51.100.10/32 dev lo &&
	lab_exec gw2 ip addr add 203.0.113.10/32 dev lo &&
	lab_wait_for "[ \"\$(role gw2)\" = master ]" 10
ok $? "the provider addresses without a notify: gw2's role follows them to master ($(jget gw2 'd["ha"]["role_repairs"]' status) repair)"
lab_exec gw2 ip addr del 198.51.100.10/32 dev lo
lab_exec gw2 ip addr del 203.0.113.10/32 dev lo
lab_exec gw2 sysctl -qw "net.ipv4.conf.all.arp_ignore=$arp_ignore"
lab_wait_for "[ \"\$(role gw2)\" = backup ] && in_sync gw1 && in_sync gw2" 20
ok $? "... and back to backup when they go (stale notifies $(jget gw2 'd["ha"]["stale_notifies"]' status), repairs $(jget gw2 'd["ha"]["role_repairs"]' status))"

lab_start_bg srv server "$LT" server --tcp 5001 --udp 5002 --report "$LAB_DIR/server.report" \
	--deadline 1500
lab_wait_for "lab_exec srv ss -ltn | grep -q :5001" 10
lab_start_bg client long "$LT" long --to "$SRV:5001" --conns "$TCP_CONNS" --udp-flows "$UDP_FLOWS" \
	--udp-port 5002 --rate 4 --until-file "$LAB_DIR/stop-long" --id-base 1 --deadline 1400
want=$((TCP_CONNS + UDP_FLOWS))
lab_wait_for "[ \"\$(jget gw2 'd[\"flows\"][\"peer\"]' status)\" -ge $want ]" 60
ok $? "gw2 caches gw1's $want flows ($(jget gw2 'd["flows"]["peer"]' status))"
lab_wait_for "[ \$(kernel_flows gw2) -ge $want ]" 30
ok $? "... and holds them in its kernel (hot standby: $(kernel_flows gw2) entries)"
check_flows "before any failure"

# A VRRP blip: gw1's keepalived stalls for a moment (a loaded host), gw2
# takes the addresses and gw1 takes them back at once (preempt).  Packets
# of every connection may cross gw2 meanwhile, and gw1's own entries did
# not see them: with TCP window tracking on, those connections stalled
# for 30-100 s afterwards (the lab, like the ansible role, sets
# nf_conntrack_tcp_be_liberal).
blips=$(grep -c '(lan) Entering MASTER STATE' "$LAB_DIR/keepalived-gw2.log")
kpids="$(cat "$LAB_DIR/keepalived-gw1.pid") $(cat "$LAB_DIR/keepalived-gw1.vrrp.pid")"
# shellcheck disable=SC2086
kill -STOP $kpids
lab_wait_for "[ \$(grep -c '(lan) Entering MASTER STATE' '$LAB_DIR/keepalived-gw2.log') -gt $blips ]" 5
r=$?
# Long enough for gw2's gratuitous ARPs to draw traffic across it.
sleep 0.5
# shellcheck disable=SC2086
kill -CONT $kpids
ok $r "a VRRP blip: with gw1's keepalived stopped, gw2 becomes master for half a second"
took=$(wait_master gw1 gw2)
ok $? "... and gw1 takes the addresses back ($took s)"
back=$(date +%s.%N)
lab_wait_for "in_sync gw1 && in_sync gw2 && [ \"\$(role gw2)\" = backup ]" 30
ok $? "the pair is in sync again, gw2 backup"
check_flows "after the blip"

# A LAN host and a provider router that missed gw1's gratuitous ARPs after
# such a blip: their entries name gw2, which forwards (it holds every
# flow), and the traffic's own progress keeps such an entry reachable.
# The master's periodic gratuitous ARPs (vrrp_garp_master_refresh, 10 s)
# must correct both, and no connection may stall meanwhile.  After the
# second burst of gratuitous ARPs that follows a takeover by 5 s
# (vrrp_garp_master_delay), so that only the refresh can do it.
mac() { lab_exec "$1" cat "/sys/class/net/$2/address"; }
neigh_is() { lab_exec "$1" ip neigh show "$2" dev "$3" | grep -q "lladdr $4 "; }
sleep "$(python3 -c "print(max(0.0, 7 - ($(date +%s.%N) - $back)))")"
lab_exec client ip neigh replace 10.0.0.1 lladdr "$(mac gw2 lan0)" dev eth0 nud reachable &&
	lab_exec pa ip neigh replace 198.51.100.10 lladdr "$(mac gw2 wan0)" dev down0 nud reachable
ok $? "the client's and provider A's ARP entries for gw1's addresses now name gw2"
t0=$(date +%s.%N)
lab_wait_for "neigh_is client 10.0.0.1 eth0 $(mac gw1 lan0) && neigh_is pa 198.51.100.10 down0 $(mac gw1 wan0)" 15
ok $? "the master's gratuitous ARP refresh corrects both ($(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s)"
check_flows "while traffic crossed the backup"

# A value of a drill report: dj FILE PYTHON-EXPR (the report is d).
dj() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# drill MODE [OPTIONS]: tests/lab/drill.sh with --json, the report in
# $LAB_DIR/drill-MODE.json, its progress in the TAP output.
drill() {
	local mode=$1 rc
	shift
	bash "$top/tests/lab/drill.sh" --mode "$mode" --json --timeout 30 "$@" \
		>"$LAB_DIR/drill-$mode.json" 2>"$LAB_DIR/drill-$mode.err"
	rc=$?
	sed 's/^/# /' "$LAB_DIR/drill-$mode.err"
	return $rc
}

# The checks every failover drill passes, from its report: it passed,
# gw2 took over with every flow, gw1 took them back.
check_drill() {
	local mode=$1 rc=$2 f=$LAB_DIR/drill-$1.json
	ok "$rc" "$mode: uplinkctl drill passed ($(dj "$f" 'd["verdict"]'))"
	ok "$([ "$(dj "$f" 'd["failover"]["to"], d["failover"]["flows_lost"], d["failover"]["flows_before"] >= '"$want"'')" = "('gw2', 0, True)" ] && echo 0 || echo 1)" \
		"$mode: gw2 took over with all of gw1's flows ($(dj "$f" '"%(flows_carried)s of %(flows_before)s carried in %(takeover_ms)s ms" % d["failover"]'))"
	diag "$mode: gw2's check of the adopted flows: $(dj "$f" 'd["failover"]["inject"]')"
	diag "$mode: traffic after the failover: $(dj "$f" 'd["failover"]["traffic"]')"
	ok "$([ "$(dj "$f" 'd["failback"] and (d["failback"]["to"], d["failback"]["flows_lost"])')" = "('gw1', 0)" ] && echo 0 || echo 1)" \
		"$mode: gw1 took them back (preempt) ($(dj "$f" 'd["failback"] and "%(flows_carried)s of %(flows_before)s carried in %(takeover_ms)s ms" % d["failback"]'))"
	lab_wait_for "holds_vip gw1 && ! holds_vip gw2" 10
	ok $? "$mode: gw1 holds the addresses again, gw2 none"
}

for mode in $MODES; do
	diag "--- drill: $mode ---"
	case $mode in
	gap)
		# What the takeover check and the NFQUEUE safety net must
		# repair: the standby's kernel lost its copy of every flow.
		lab_exec gw2 conntrack -D --mark 256 >/dev/null 2>&1
		lab_exec gw2 conntrack -D --mark 512 >/dev/null 2>&1
		diag "gap: gw2's kernel holds $(kernel_flows gw2) of the flows now"
		net0=$(safety_net gw2)
		drill graceful
		rc=$?
		net1=$(safety_net gw2)
		cp "$LAB_DIR/drill-graceful.json" "$LAB_DIR/drill-gap.json"
		check_drill gap $rc
		rep=$(dj "$LAB_DIR/drill-gap.json" 'd["failover"]["inject"]')
		diag "gap: gw2 rewrote the missing entries: $rep; the safety net $((net1 - net0)) of them"
		# The VIPs move before keepalived's notify, so the safety net
		# rewrites the entries whose packets come first and the check
		# creates the rest: how many each does is a race, together they
		# rewrite every one.
		ok "$([ "$(dj "$LAB_DIR/drill-gap.json" '(lambda i: i["failed"] == 0 and i["created"] + i["present"] >= '"$want"' and i["created"] + '"$((net1 - net0))"' >= '"$want"')(d["failover"]["inject"])')" = True ] && echo 0 || echo 1)" \
			"gap: gw2 had every entry again after its takeover check (created + present >= $want, none failed; created + safety net >= $want)"
		;;
	sync-cut)
		drill sync-cut --watch 5
		rc=$?
		f=$LAB_DIR/drill-sync-cut.json
		ok $rc "sync-cut: uplinkctl drill passed ($(dj "$f" 'd["verdict"]'))"
		ok "$([ "$(dj "$f" '(d["failover"]["takeover_ms"], d["failover"]["flows_lost"], d["failover"]["flows_before"] >= '"$want"')')" = "(None, 0, True)" ] && echo 0 || echo 1)" \
			"sync-cut: no failover, and after the heal gw2 holds all of gw1's flows ($(dj "$f" 'd["failover"]["flows_carried"]'))"
		holds_vip gw1 && ! holds_vip gw2
		ok $? "sync-cut: gw1 kept the addresses"
		;;
	crash)
		drill crash
		check_drill crash $?
		grep -q "uplinkd (pid [0-9]*) died: -254 written" "$LAB_DIR/uplinkd-gw1.log"
		ok $? "crash: gw1's guard wrote the fault value for keepalived"
		;;
	graceful)
		# Long waits: the step-down they would need is more than the
		# daemon grants (3600 s); the drill must ask for no more.
		drill graceful --timeout 900
		check_drill graceful $?
		;;
	*)
		drill "$mode"
		check_drill "$mode" $?
		;;
	esac
	check_flows "after the $mode drill"
	lab_wait_for "in_sync gw1 && in_sync gw2" 60
	ok $? "$mode: the pair is in sync again"
done

if [ "${STALE:-1}" != 0 ]; then
	# The standby is out of sync when the active node dies for good: the
	# sync link is cut, new connections start on gw1, then gw1 vanishes.
	# gw2 must take over anyway (nobody else is left) and the drill must
	# name exactly the flows it could not carry: the new ones.
	diag "--- drill: node, with the standby out of sync ---"
	LATE=10
	lab_start_bg srv late-server "$LT" server --tcp 5003 --udp 5004 \
		--report "$LAB_DIR/late-server.report" --deadline 600
	lab_wait_for "lab_exec srv ss -ltn | grep -q :5003" 10
	lab_exec gw1 ip link set sync0 down
	lab_wait_for "[ \"\$(jget gw2 'd[\"sync\"][\"state\"]' status)\" != connected ]" 10
	lab_wait_for "[ \"\$(jget gw2 'd[\"ha\"][\"ready\"]' status)\" = False ]" 5
	ok $? "a backup that lost the sync link says it is not ready ($(jget gw2 'd["ha"]["not_ready_because"]' status))"
	lab_start_bg client late "$LT" long --to "$SRV:5003" --conns $LATE --udp-flows 0 \
		--udp-port 5004 --rate 4 --until-file "$LAB_DIR/stop-late" --id-base 5001 --deadline 600
	late_flows() { lab_uplinkctl gw1 --json flows --limit 100000 |
		python3 -c 'import json, sys; print(sum(f["dport"] == 5003 for f in json.load(sys.stdin)["flows"]))'; }
	lab_wait_for "[ \$(late_flows) -ge $LATE ]" 20
	ok $? "gw1 has the $LATE new connections the standby does not know ($(late_flows))"
	drill node --force --timeout 40
	rc=$?
	f=$LAB_DIR/drill-node.json
	ok "$([ $rc = 1 ] && [ "$(dj "$f" 'd["passed"]')" = False ] && echo 0 || echo 1)" \
		"the drill fails: $(dj "$f" 'd["verdict"]')"
	ok "$([ "$(dj "$f" '(d["failover"]["to"], d["failover"]["flows_lost"], sorted(set(l["flow"].split(":")[-1] for l in d["failover"]["lost"])))')" = "('gw2', $LATE, ['5003'])" ] && echo 0 || echo 1)" \
		"gw2 took over and the report names exactly the $LATE flows it could not carry: $(dj "$f" '[l["flow"] for l in d["failover"]["lost"]][:3]') ..."
	ok "$([ "$(dj "$f" 'd["failover"]["flows_carried"] >= '"$want"'')" = True ] && echo 0 || echo 1)" \
		"... and carried the $want it had ($(dj "$f" 'd["failover"]["flows_carried"]'))"
	check_flows "after the out-of-sync failure"
	touch "$LAB_DIR/stop-late"
	lab_wait_for "in_sync gw1 && in_sync gw2" 60
	ok $? "the pair is in sync again"
	lab_stop late >/dev/null 2>&1
	lab_stop late-server >/dev/null 2>&1
fi

check_long_end " in any drill"
for gw in gw1 gw2; do
	grep -h 'takeover\|ha: role' "$LAB_DIR/uplinkd-$gw.log" | sed "s/^/# $gw: /" | tail -12
	no_sanitizer_report "$LAB_DIR/uplinkd-$gw.log"
	ok $? "no sanitizer report in $gw's log"
done
echo "1..$n"
