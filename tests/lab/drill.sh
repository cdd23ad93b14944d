#!/bin/bash
# drill.sh: `uplinkctl drill` against the two-gateway namespace lab, with
# the commands that fail and restore a node the way each mode means it,
# and the lab's traffic generator as the judge of what broke.
#
#   tests/lab/drill.sh --mode MODE [uplinkctl drill options...]
#
# MODE: graceful, kill, link, node or sync-cut (see `uplinkctl drill
# --help`), or crash.  Every other option goes to uplinkctl drill as it is
# (--json, --timeout, --force, --no-failback, ...).  The drill finds the
# master itself; the commands act on the node it names (DRILL_ACTIVE):
#
#   kill      kill -9 of the node's uplinkd and keepalived (whose VRRP
#             child then steps down at once); restore: start both again
#   crash     uplinkctl's kill mode, but kill -9 of uplinkd alone:
#             keepalived keeps running and must learn of the death from
#             the daemon's guard (ha/ha.h); restore: start uplinkd again
#   link      its LAN link down; restore: up
#   node      every process of the node killed at once and every link
#             down, as if the box vanished; restore: it "reboots" (no
#             addresses, no connections, daemons started afresh)
#   sync-cut  its sync link down; restore: up
#
# Traffic: when the lab's labtraffic server runs ($LAB_DIR/server.pid, as
# t_ha.sh and demo.sh start it), its report after each leg gives the
# traffic view: {"tcp", "udp", "changed" (a source IP:port at the server
# changed), "reset", "broken" (changed + reset), "max_gap_ms" (the longest
# silence of any connection since it started)}.
#
# Environment: LAB_PREFIX, LAB_DIR, UPLINKD_BUILD as for lab.sh.
# Exit status: uplinkctl drill's.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"

# --- the commands uplinkctl runs (drill.sh --do ACTION) ---

do_fail() {
	local gw=$DRILL_ACTIVE
	case $DRILL_LAB_MODE in
	crash) kill -9 "$(cat "$LAB_DIR/uplinkd-$gw.pid")" ;;
	kill) kill -9 "$(cat "$LAB_DIR/uplinkd-$gw.pid")" "$(cat "$LAB_DIR/keepalived-$gw.pid")" ;;
	link) lab_exec "$gw" ip link set lan0 down ;;
	sync-cut) lab_exec "$gw" ip link set sync0 down ;;
	node)
		# keepalived killed with SIGKILL keeps its addresses: as a dead
		# box does, on links that are down.
		kill -9 "$(cat "$LAB_DIR/keepalived-$gw.vrrp.pid")" "$(cat "$LAB_DIR/keepalived-$gw.pid")" \
			"$(cat "$LAB_DIR/uplinkd-$gw.pid")" 2>/dev/null
		for ifn in lan0 wan0 wan1 sync0; do lab_exec "$gw" ip link set "$ifn" down; done
		;;
	*) echo "drill.sh: no failure for mode $DRILL_LAB_MODE" >&2; return 1 ;;
	esac
}

# Waits until the processes a failure killed are gone (reaped or zombies),
# so that a new keepalived does not take their pid files for a live one.
wait_gone() {	# GW [uplinkd]: all of them, or uplinkd alone
	local gw=$1 f p files=("uplinkd-$1.pid")
	[ $# -gt 1 ] || files+=("keepalived-$gw.pid" "keepalived-$gw.vrrp.pid")
	for f in "${files[@]}"; do
		p=$(cat "$LAB_DIR/$f" 2>/dev/null) || continue
		lab_wait_for "! [ -e /proc/$p ] || grep -q '^State:[[:space:]]*Z' /proc/$p/status" 10
	done
	[ $# -gt 1 ] || rm -f "$LAB_DIR/keepalived-$gw.main.pid" "$LAB_DIR/keepalived-$gw.vrrp.pid"
}

# uplinkd first, keepalived once it answers (as the systemd units order
# them).
start_node() {
	lab_uplinkd_start "$1" &&
		lab_wait_for "lab_uplinkctl $1 status >/dev/null 2>&1" 20 &&
		lab_keepalived_start "$1"
}

do_restore() {
	local gw=$DRILL_ACTIVE
	case $DRILL_LAB_MODE in
	crash)
		wait_gone "$gw" uplinkd
		lab_uplinkd_start "$gw" &&
			lab_wait_for "lab_uplinkctl $gw status >/dev/null 2>&1" 20
		;;
	kill)
		wait_gone "$gw"
		start_node "$gw"
		;;
	link) lab_exec "$gw" ip link set lan0 up ;;
	sync-cut) lab_exec "$gw" ip link set sync0 up ;;
	node)
		wait_gone "$gw"
		lab_vip_del "$gw"
		lab_exec "$gw" conntrack -F >/dev/null 2>&1
		for ifn in lan0 wan0 wan1 sync0; do lab_exec "$gw" ip link set "$ifn" up; done
		start_node "$gw"
		;;
	*) echo "drill.sh: no restore for mode $DRILL_LAB_MODE" >&2; return 1 ;;
	esac
}

do_traffic() {
	local report=$LAB_DIR/server.report
	rm -f "$report"
	kill -USR1 "$(cat "$LAB_DIR/server.pid")" || return 1
	lab_wait_for "test -s $report" 10 || return 1
	awk '
		$1 != "tcp" && $1 != "udp" { next }
		$2 == "id=-" { next }
		{
			if ($1 == "tcp") tcp++; else udp++
			bad = 0
			for (i = 3; i <= NF; i++) {
				if ($i ~ /^peer_changes=/ && $i != "peer_changes=0") { changed++; bad = 1 }
				if ($i == "reset=yes") { reset++; bad = 1 }
				if ($i ~ /^max_gap_ms=/) { split($i, g, "="); if (g[2] + 0 > gap) gap = g[2] + 0 }
			}
			broken += bad
		}
		END {
			printf "{\"tcp\": %d, \"udp\": %d, \"changed\": %d, \"reset\": %d, " \
			    "\"broken\": %d, \"max_gap_ms\": %.1f}\n", tcp, udp, changed, reset, broken, gap
		}
	' "$report"
}

if [ "${1:-}" = --do ]; then
	case ${2:-} in
	fail) do_fail ;;
	restore) do_restore ;;
	traffic) do_traffic ;;
	*) echo "drill.sh: --do fail|restore|traffic" >&2; exit 2 ;;
	esac
	exit
fi

# --- the drill ---

mode=
args=()
while [ $# -gt 0 ]; do
	case $1 in
	--mode | -m) mode=${2:-}; args+=("$1" "${2:-}"); shift 2 || break ;;
	--mode=*) mode=${1#--mode=}; args+=("$1"); shift ;;
	-h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) args+=("$1"); shift ;;
	esac
done
[ -n "$mode" ] || { echo "drill.sh: --mode MODE is required (try --help)" >&2; exit 2; }
# The hooks act on the lab's mode; uplinkctl knows crash as kill.
export DRILL_LAB_MODE=$mode
if [ "$mode" = crash ]; then
	for i in "${!args[@]}"; do
		case ${args[$i]} in crash) args[i]=kill ;; --mode=crash) args[i]=--mode=kill ;; esac
	done
fi
for gw in gw1 gw2; do
	[ -S "$LAB_DIR/$gw.sock" ] || { echo "drill.sh: no $gw in the lab at $LAB_DIR" >&2; exit 2; }
done
self="bash $top/tests/lab/drill.sh"
hooks=()
if [ "$mode" != graceful ]; then
	hooks+=(--fail-cmd "$self --do fail" --restore-cmd "$self --do restore")
fi
if [ -f "$LAB_DIR/server.pid" ] && kill -0 "$(cat "$LAB_DIR/server.pid")" 2>/dev/null; then
	hooks+=(--traffic-cmd "$self --do traffic")
else
	echo "drill.sh: no lab traffic running: the report has no traffic view" >&2
fi
export LAB_PREFIX LAB_DIR UPLINKD_BUILD
exec "$UPLINKD_BUILD/uplinkctl" -s "$LAB_DIR/gw1.sock" drill --peer-socket "$LAB_DIR/gw2.sock" \
	"${hooks[@]}" "${args[@]}"
