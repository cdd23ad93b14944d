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
# Usage: t_ha.sh [MODE...]   modes: graceful kill link node gap (default: all)
#   gap: graceful, after the standby's kernel lost its copy of every flow
#   (what the takeover check and the NFQUEUE safety net must repair)
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export LAB_PREFIX=${LAB_PREFIX:-uha}
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"
LT=$(lab_labtraffic) || { echo "Bail out! labtraffic not built"; exit 1; }
SRV=192.0.2.10
TCP_CONNS=${TCP_CONNS:-500}
UDP_FLOWS=${UDP_FLOWS:-100}
MODES=${*:-graceful kill link node gap}

# shellcheck source=tests/lab/tap.sh
. "$top/tests/lab/tap.sh"
cleanup() {
	# The daemons' logs outlive the lab, for a failed run's post-mortem.
	mkdir -p "$top/_build/t_ha"
	cp "$LAB_DIR"/uplinkd-gw*.log "$LAB_DIR"/keepalived-gw*.log "$top/_build/t_ha/" 2>/dev/null
	lab_stop long >/dev/null 2>&1
	lab_stop server >/dev/null 2>&1
	for gw in gw1 gw2; do
		lab_stop "keepalived-$gw" >/dev/null 2>&1
		lab_stop "uplinkd-$gw" >/dev/null 2>&1
		lab_exec "$gw" conntrack -F >/dev/null 2>&1
	done
	lab_down >/dev/null 2>&1
}
trap cleanup EXIT

jget() { lab_jget "$@"; }
role() { jget "$1" 'd["role"]' status; }
holds_vip() { lab_exec "$1" ip -br addr show lan0 | grep -q ' 10\.0\.0\.1/24'; }
in_sync() { [ "$(jget "$1" 'd["in_sync"]' status)" = True ]; }
# Marked conntrack entries in a node's kernel (its own and hot standby).
kernel_flows() { lab_exec "$1" conntrack -L 2>/dev/null | grep -cE 'mark=(256|512) '; }

# The server's view of the long-lived flows: prints "tcp=N udp=M changed=C
# reset=R" where changed counts flows whose source IP:port at the server
# ever changed and reset those that were reset.
traffic_check() {
	rm -f "$LAB_DIR/server.report"
	kill -USR1 "$(cat "$LAB_DIR/server.pid")"
	lab_wait_for "test -s $LAB_DIR/server.report" 10
	awk -v max="$TCP_CONNS" '
		$2 == "id=-" { next }
		{
			split($2, f, "="); id = f[2] + 0
			if (id < 1 || id > max + 1000) next
			if ($1 == "tcp") tcp++; else udp++
			for (i = 3; i <= NF; i++) {
				if ($i ~ /^peer_changes=/ && $i != "peer_changes=0") changed++
				if ($i == "reset=yes") reset++
			}
		}
		END { printf "tcp=%d udp=%d changed=%d reset=%d\n", tcp, udp, changed, reset }
	' "$LAB_DIR/server.report"
}
# Records the TCP connections have exchanged so far (all of them).
records() {
	awk '$1 == "tcp" && $2 != "id=-" { for (i = 3; i <= NF; i++) if ($i ~ /^records=/) { split($i, r, "="); t += r[2] } } END { print t + 0 }' \
		"$LAB_DIR/server.report"
}

# Waits until NODE is master with the VIPs and the other one has let them
# go (unless it is dead: a node killed outright keeps its addresses on links
# that are down); prints the seconds it took.
wait_master() {
	local gw=$1 other=$2 dead=${3:-} t0 t1 cond
	cond="holds_vip $gw && [ \"\$(role $gw)\" = master ]"
	[ -n "$dead" ] || cond="$cond && ! holds_vip $other"
	t0=$(date +%s.%N)
	lab_wait_for "$cond" 30 || return 1
	t1=$(date +%s.%N)
	python3 -c "print(round($t1 - $t0, 2))"
}

check_flows() {	# check_flows WHAT
	local c before after
	c=$(traffic_check)
	before=$(records)
	sleep 2
	traffic_check >/dev/null
	after=$(records)
	case $c in
	"tcp=$TCP_CONNS udp=$UDP_FLOWS changed=0 reset=0") r=0 ;;
	*) r=1 ;;
	esac
	ok $r "$1: every connection and flow kept its source address and port ($c)"
	ok "$([ "$after" -gt "$before" ] && kill -0 "$(cat "$LAB_DIR/long.pid")" 2>/dev/null && echo 0 || echo 1)" \
		"$1: the connections still carry data ($before -> $after records)"
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

fail_gw1() {
	case $1 in
	graceful) lab_stop keepalived-gw1 ;;
	gap)
		lab_exec gw2 conntrack -D --mark 256 >/dev/null 2>&1
		lab_exec gw2 conntrack -D --mark 512 >/dev/null 2>&1
		diag "gap: gw2's kernel holds $(kernel_flows gw2) of the flows now"
		lab_stop keepalived-gw1
		;;
	kill) kill -9 "$(cat "$LAB_DIR/uplinkd-gw1.pid")" ;;
	link) lab_exec gw1 ip link set lan0 down ;;
	node)
		# A node that vanished: every process gone at once, its links
		# dead.  (keepalived killed with SIGKILL keeps its addresses.)
		kill -9 "$(cat "$LAB_DIR/keepalived-gw1.vrrp.pid")" "$(cat "$LAB_DIR/keepalived-gw1.pid")" \
			"$(cat "$LAB_DIR/uplinkd-gw1.pid")" 2>/dev/null
		for ifn in lan0 wan0 wan1 sync0; do lab_exec gw1 ip link set "$ifn" down; done
		;;
	esac
}
restore_gw1() {
	case $1 in
	graceful | gap) lab_keepalived_start gw1 ;;
	kill) lab_uplinkd_start gw1 ;;
	link) lab_exec gw1 ip link set lan0 up ;;
	node)
		# It reboots: no addresses, no connections, no daemons.
		lab_stop keepalived-gw1
		lab_stop uplinkd-gw1
		lab_vip_del gw1
		lab_exec gw1 conntrack -F >/dev/null 2>&1
		for ifn in lan0 wan0 wan1 sync0; do lab_exec gw1 ip link set "$ifn" up; done
		lab_uplinkd_start gw1
		lab_wait_for "lab_uplinkctl gw1 status" 20
		lab_keepalived_start gw1
		;;
	esac
}

for mode in $MODES; do
	diag "--- drill: $mode ---"
	fail_gw1 "$mode"
	took=$(wait_master gw2 gw1 "$([ "$mode" = node ] && echo dead)")
	ok $? "$mode: gw2 takes over ($took s from the failure to VIPs and role)"
	check_flows "$mode, on gw2"
	if [ "$mode" = gap ]; then
		rep=$(jget gw2 '(d["queue"]["safety_net"], d["kernel_writes"]["created"])' status)
		diag "gap: gw2 rewrote the missing entries (safety net, created by the takeover check): $rep"
		ok "$([ "$(kernel_flows gw2)" -ge "$want" ] && echo 0 || echo 1)" \
			"gap: gw2's kernel has every flow again ($(kernel_flows gw2))"
	fi
	restore_gw1 "$mode"
	lab_wait_for "in_sync gw1 && in_sync gw2" 60
	ok $? "$mode: gw1 is back and in sync"
	took=$(wait_master gw1 gw2)
	ok $? "$mode: gw1 takes the addresses back (preempt; $took s)"
	check_flows "$mode, back on gw1"
done

touch "$LAB_DIR/stop-long"
lab_wait_for "! kill -0 $(cat "$LAB_DIR/long.pid") 2>/dev/null" 30
summary=$(grep '^long:' "$LAB_DIR/long.log" | tail -1)
diag "$summary"
case $summary in *" broken=0 "*) r=0 ;; *) r=1 ;; esac
ok $r "no connection broke in any drill"
leaks=$(lab_leaks)
ok "$([ "${leaks:-1}" -eq 0 ] && echo 0 || echo 1)" "nothing left towards a provider untranslated ($leaks leaked)"
for gw in gw1 gw2; do
	grep -h 'takeover\|ha: role' "$LAB_DIR/uplinkd-$gw.log" | sed "s/^/# $gw: /" | tail -12
	! grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LAB_DIR/uplinkd-$gw.log"
	ok $? "no sanitizer report in $gw's log"
done
echo "1..$n"
