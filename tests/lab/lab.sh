#!/bin/bash
# lab.sh: the uplinkd network-namespace lab.  A library to source from test
# scripts, and a command line:
#
#   tests/lab/lab.sh up [--gateways 1|2]    build the lab (removes leftovers first)
#   tests/lab/lab.sh down                   remove everything the lab created
#   tests/lab/lab.sh status                 namespaces, addresses, processes, leaks
#   tests/lab/lab.sh exec NODE CMD...       run CMD inside a node
#
# Environment:
#   LAB_PREFIX     name prefix of every namespace (default "ul"); two labs with
#                  different prefixes can run side by side on one host.
#   LAB_DIR        state: pid files, logs, configs (default /run/uplinkd-lab-$LAB_PREFIX)
#   UPLINKD_BUILD  directory holding uplinkd, uplinkctl and tests/lab/labtraffic
#                  (default: the repository root)
#
# The topology is FIXED: tests, configs and drills elsewhere are written
# against these names and addresses.  P = $LAB_PREFIX.
#
#                               P-sw: three bridges, no IP
#   P-client eth0  -----------+
#   P-gw1    lan0  -----------+-- br-lan
#   P-gw2    lan0  -----------+
#
#   P-gw1    wan0  -----------+
#   P-gw2    wan0  -----------+-- br-a -- down0 P-pa up0 -- pa0 --+
#                                                                 P-srv
#   P-gw1    wan1  -----------+                                   |  lo 192.0.2.10/32
#   P-gw2    wan1  -----------+-- br-b -- down0 P-pb up0 -- pb0 --+
#
#   P-gw1    sync0 ---------------------- sync0 P-gw2   (direct veth)
#
#   (P-gw2 and the sync link exist only with --gateways 2)
#
#   node      interface  address(es)                    notes
#   client    eth0       10.0.0.100/24, .101-.149/24    default via 10.0.0.1
#   sw        br-lan, br-a, br-b                        bridges only, no IP
#   gw1       lan0       10.0.0.2/24                    on br-lan
#             wan0       198.51.100.2/24                on br-a (provider A)
#             wan1       203.0.113.2/24                 on br-b (provider B)
#             sync0      10.255.0.1/30                  veth to gw2 (2 gateways only)
#   gw2       lan0 10.0.0.3/24, wan0 198.51.100.3/24, wan1 203.0.113.3/24,
#             sync0 10.255.0.2/30                       (only with --gateways 2)
#   pa        down0      198.51.100.1/24                provider A router, on br-a
#             up0        100.64.1.1/30                  to srv
#   pb        down0      203.0.113.1/24                 provider B router, on br-b
#             up0        100.64.2.1/30                  to srv
#   srv       lo         192.0.2.10/32                  the "Internet" server
#             pa0        100.64.1.2/30                  198.51.100.0/24 via 100.64.1.1
#             pb0        100.64.2.2/30                  203.0.113.0/24 via 100.64.2.1
#
# VIPs: the LAN gateway 10.0.0.1/24 (lan0), provider A's SNAT address
# 198.51.100.10/24 (wan0) and provider B's 203.0.113.10/24 (wan1).  With one
# gateway, gw1 holds them.  With two, nobody does (keepalived's job):
# lab_vip_add/lab_vip_del move them by hand.
#
# The server has no default route: it can only answer sources inside the two
# provider prefixes, i.e. translated traffic.  Its two routes carry
# "src 192.0.2.10", so what it originates comes from the service address.
# Each provider router drops and counts (LAB-LEAK rule in FORWARD) anything
# with a 10.0.0.0/8 source, so an untranslated packet never gets an answer
# and always shows in lab_leaks.
# The gateways have no default route in their main table either: traffic
# leaves only through a provider table selected by a mark.
#
# Sysctls: ip_forward=1 on gateways and provider routers, rp_filter=0
# everywhere (the replies of marked connections come back unmarked and the
# main table has no route to the server), IPv6 off (no DAD/RS noise).
#
# Library functions (all return non-zero on failure, never exit):
#   lab_up [1|2] / lab_down / lab_status
#   lab_pair_down                   keepalived and uplinkd stopped on both gateways, then lab_down
#   lab_exec NODE CMD...            run CMD in P-NODE
#   lab_wait_for 'SHELL CMD' SECS   poll CMD every 0.1 s until it succeeds
#   lab_start_bg NODE NAME CMD...   background CMD in P-NODE, $LAB_DIR/NAME.{pid,log}
#   lab_stop NAME                   TERM, wait up to 5 s, then KILL
#   lab_vip_add gwN / lab_vip_del gwN
#   lab_leaks                       untranslated packets dropped at both providers
#   lab_traffic_check MAX / lab_traffic_records   the labtraffic server's view
#   lab_kernel_balancer gwN WA WB / lab_kernel_balancer_off gwN
#   lab_uplinkd_config gwN [ALGO] [WA] [WB] / lab_uplinkd_start gwN / lab_uplinkctl gwN ARGS...
#   lab_uplinkd_sync gwN             add the sync section (certificates in $LAB_DIR/pki)
#   lab_keepalived_config gwN PRIO [preempt|nopreempt] / lab_keepalived_start gwN
#   lab_jget gwN EXPR CMD...        a value out of `uplinkctl --json CMD`
#   lab_labtraffic                  prints the path of the labtraffic binary

LAB_PREFIX=${LAB_PREFIX:-ul}
LAB_DIR=${LAB_DIR:-/run/uplinkd-lab-$LAB_PREFIX}
LAB_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
UPLINKD_BUILD=${UPLINKD_BUILD:-$LAB_TOP}
LAB_NODES="client sw gw1 gw2 pa pb srv"
# Marks a directory as ours so that lab_down may delete it as a whole.
LAB_MARKER=.uplinkd-lab

_lab_err() { echo "lab: $*" >&2; }

# Runs a command and names it when it fails.
_lab_do() {
	"$@" || { _lab_err "failed: $*"; return 1; }
}

# The namespace name of a node ("gw1" or an already prefixed "ul-gw1").
lab_ns() {
	case $1 in
	"$LAB_PREFIX"-*) echo "$1" ;;
	*) echo "$LAB_PREFIX-$1" ;;
	esac
}

lab_exec() {
	local ns
	[ $# -ge 2 ] || { _lab_err "usage: lab_exec NODE CMD..."; return 2; }
	ns=$(lab_ns "$1"); shift
	ip netns exec "$ns" "$@"
}

# lab_wait_for 'CMD' SECS: bounded polling; 0 when CMD succeeded in time.
lab_wait_for() {
	local cmd=$1 secs=${2:-5} i n
	n=$((secs * 10))
	[ "$n" -gt 0 ] || n=1
	for ((i = 0; i < n; i++)); do
		eval "$cmd" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	eval "$cmd" >/dev/null 2>&1
}

_lab_dir_init() {
	if [ -d "$LAB_DIR" ] && [ ! -e "$LAB_DIR/$LAB_MARKER" ] &&
		[ -n "$(ls -A "$LAB_DIR" 2>/dev/null)" ]; then
		_lab_err "$LAB_DIR exists and is not a lab directory; refusing to use it"
		return 1
	fi
	mkdir -p "$LAB_DIR" && chmod 700 "$LAB_DIR" && touch "$LAB_DIR/$LAB_MARKER"
}

# lab_start_bg NODE NAME CMD...: the pid is the command's own (ip netns exec
# execs it), so lab_stop signals the real process.
lab_start_bg() {
	local ns name pid
	[ $# -ge 3 ] || { _lab_err "usage: lab_start_bg NODE NAME CMD..."; return 2; }
	ns=$(lab_ns "$1"); name=$2; shift 2
	case $name in */* | "") _lab_err "bad process name '$name'"; return 2 ;; esac
	_lab_dir_init || return 1
	if [ -f "$LAB_DIR/$name.pid" ]; then
		if _lab_pid_is_ours "$(cat "$LAB_DIR/$name.pid")"; then
			_lab_err "$name already started (pid $(cat "$LAB_DIR/$name.pid"))"
			return 1
		fi
		rm -f "$LAB_DIR/$name.pid"	# left by a process that died
	fi
	ip netns exec "$ns" "$@" </dev/null >>"$LAB_DIR/$name.log" 2>&1 &
	pid=$!
	echo "$pid" >"$LAB_DIR/$name.pid"
	# A command that fails at once (not found, bad usage) is reported here.
	sleep 0.05
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid" 2>/dev/null
		_lab_err "$name exited at once ($?): $(tail -3 "$LAB_DIR/$name.log")"
		rm -f "$LAB_DIR/$name.pid"
		return 1
	fi
}

# True when PID is alive and lives in one of this lab's namespaces: a pid
# file left behind by a crash must not make us kill a recycled pid.
_lab_pid_is_ours() {
	local pid=$1 ns
	kill -0 "$pid" 2>/dev/null || return 1
	ns=$(ip netns identify "$pid" 2>/dev/null)
	case $ns in "$LAB_PREFIX"-*) return 0 ;; esac
	return 1
}

lab_stop() {
	local name=$1 f pid i
	f="$LAB_DIR/$name.pid"
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if [ -n "$pid" ] && _lab_pid_is_ours "$pid"; then
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			_lab_err "$name (pid $pid) ignored SIGTERM; killing"
			kill -KILL "$pid" 2>/dev/null
		fi
		# Reap it when it is our child; harmless otherwise.
		wait "$pid" 2>/dev/null
	fi
	rm -f "$f"
	return 0
}

# Creates a veth pair straight inside two namespaces (no name ever appears in
# the root namespace, so nothing there can clash) and brings both ends up.
_lab_veth() {
	local ns1=$1 if1=$2 ns2=$3 if2=$4
	_lab_do ip -n "$ns1" link add "$if1" type veth peer name "$if2" netns "$ns2" &&
		_lab_do ip -n "$ns1" link set "$if1" up &&
		_lab_do ip -n "$ns2" link set "$if2" up
}

# A veth from NODE's IF to a port of bridge BR in the switch.
_lab_port() {
	local node=$1 ifn=$2 br=$3 sw
	sw=$(lab_ns sw)
	_lab_veth "$(lab_ns "$node")" "$ifn" "$sw" "$node-$ifn" &&
		_lab_do ip -n "$sw" link set "$node-$ifn" master "$br"
}

_lab_sysctl() {
	local ns=$1; shift
	_lab_do ip netns exec "$ns" sysctl -qw "$@" >/dev/null
}

_lab_mkns() {
	local ns
	ns=$(lab_ns "$1")
	_lab_do ip netns add "$ns" &&
		_lab_do ip -n "$ns" link set lo up &&
		_lab_sysctl "$ns" net.ipv6.conf.all.disable_ipv6=1 \
			net.ipv6.conf.default.disable_ipv6=1 \
			net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

_lab_gw() {
	local gw=$1 n ns
	n=${gw#gw}
	ns=$(lab_ns "$gw")
	_lab_mkns "$gw" &&
		_lab_port "$gw" lan0 br-lan &&
		_lab_port "$gw" wan0 br-a &&
		_lab_port "$gw" wan1 br-b &&
		_lab_do ip -n "$ns" addr add "10.0.0.$((n + 1))/24" dev lan0 &&
		_lab_do ip -n "$ns" addr add "198.51.100.$((n + 1))/24" dev wan0 &&
		_lab_do ip -n "$ns" addr add "203.0.113.$((n + 1))/24" dev wan1 &&
		_lab_sysctl "$ns" net.ipv4.ip_forward=1 &&
		_lab_gw_conntrack "$ns"
}

# What deploy/roles/uplinkd/templates/sysctl.conf.j2 sets for conntrack
# (its net.netfilter sysctls exist once the module is loaded).
_lab_gw_conntrack() {
	modprobe -q nf_conntrack 2>/dev/null
	_lab_sysctl "$1" net.netfilter.nf_conntrack_tcp_be_liberal=1
}

# A provider router: down0 on the provider bridge, up0 to the server, and
# the leak trap.
_lab_provider() {
	local node=$1 br=$2 down=$3 up=$4 srvif=$5 srvaddr=$6 ns
	ns=$(lab_ns "$node")
	_lab_mkns "$node" &&
		_lab_veth "$(lab_ns sw)" "$node-down0" "$ns" down0 &&
		_lab_do ip -n "$(lab_ns sw)" link set "$node-down0" master "$br" &&
		_lab_veth "$ns" up0 "$(lab_ns srv)" "$srvif" &&
		_lab_do ip -n "$ns" addr add "$down" dev down0 &&
		_lab_do ip -n "$ns" addr add "$up" dev up0 &&
		_lab_do ip -n "$(lab_ns srv)" addr add "$srvaddr" dev "$srvif" &&
		_lab_do ip -n "$ns" route add 192.0.2.10/32 via "${srvaddr%/*}" &&
		_lab_sysctl "$ns" net.ipv4.ip_forward=1 &&
		_lab_do ip netns exec "$ns" iptables -w -A FORWARD -s 10.0.0.0/8 \
			-m comment --comment LAB-LEAK -j DROP
}

lab_up() {
	local gws=${1:-1} i sw cl
	case $gws in 1 | 2) ;; *) _lab_err "--gateways must be 1 or 2"; return 2 ;; esac
	lab_down >/dev/null 2>&1
	_lab_dir_init || return 1
	echo "$gws" >"$LAB_DIR/gateways"
	sw=$(lab_ns sw); cl=$(lab_ns client)

	_lab_mkns sw || return 1
	for br in br-lan br-a br-b; do
		# No STP and no IGMP snooping: ports forward at once, VRRP
		# multicast floods without a querier.
		_lab_do ip -n "$sw" link add "$br" type bridge stp_state 0 \
			forward_delay 0 mcast_snooping 0 &&
			_lab_do ip -n "$sw" link set "$br" up || return 1
	done

	_lab_mkns client && _lab_port client eth0 br-lan || return 1
	{
		echo "addr add 10.0.0.100/24 dev eth0"
		for ((i = 101; i <= 149; i++)); do
			echo "addr add 10.0.0.$i/24 dev eth0"
		done
		echo "route add default via 10.0.0.1"
	} | _lab_do ip -n "$cl" -batch - || return 1

	_lab_mkns srv &&
		_lab_do ip -n "$(lab_ns srv)" addr add 192.0.2.10/32 dev lo || return 1
	_lab_provider pa br-a 198.51.100.1/24 100.64.1.1/30 pa0 100.64.1.2/30 &&
		_lab_provider pb br-b 203.0.113.1/24 100.64.2.1/30 pb0 100.64.2.2/30 &&
		_lab_do ip -n "$(lab_ns srv)" route add 198.51.100.0/24 via 100.64.1.1 src 192.0.2.10 &&
		_lab_do ip -n "$(lab_ns srv)" route add 203.0.113.0/24 via 100.64.2.1 src 192.0.2.10 || return 1

	_lab_gw gw1 || return 1
	if [ "$gws" = 2 ]; then
		_lab_gw gw2 &&
			_lab_veth "$(lab_ns gw1)" sync0 "$(lab_ns gw2)" sync0 &&
			_lab_do ip -n "$(lab_ns gw1)" addr add 10.255.0.1/30 dev sync0 &&
			_lab_do ip -n "$(lab_ns gw2)" addr add 10.255.0.2/30 dev sync0 || return 1
	else
		lab_vip_add gw1 || return 1
	fi
	return 0
}

# The end of a two-gateway test.  keepalived first, so that no notify
# reaches a daemon that is gone; the tables flushed before the namespaces
# go (deleting a netns frees its entries in a kworker, which would disturb
# the next run).
lab_pair_down() {
	local gw
	for gw in gw1 gw2; do
		lab_stop "keepalived-$gw" >/dev/null 2>&1
		lab_stop "uplinkd-$gw" >/dev/null 2>&1
		lab_exec "$gw" conntrack -F >/dev/null 2>&1
	done
	lab_down >/dev/null 2>&1
}

lab_down() {
	local f name node ns pids
	if [ -d "$LAB_DIR" ]; then
		for f in "$LAB_DIR"/*.pid; do
			[ -e "$f" ] || continue
			name=$(basename "$f" .pid)
			lab_stop "$name"
		done
	fi
	for node in $LAB_NODES; do
		ns=$(lab_ns "$node")
		[ -e "/run/netns/$ns" ] || continue
		pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
		[ -n "$pids" ] && _lab_err "warning: processes still in $ns: $pids(not started by lab_start_bg; left alone)"
		ip netns del "$ns" || _lab_err "could not delete namespace $ns"
	done
	if [ -e "$LAB_DIR/$LAB_MARKER" ]; then
		rm -rf "$LAB_DIR"
	fi
	return 0
}

_lab_vip_list() {
	echo "lan0 10.0.0.1/24"
	echo "wan0 198.51.100.10/24"
	echo "wan1 203.0.113.10/24"
}

# Without arping the neighbours' ARP caches would keep pointing at the old
# owner until they expire, so we flush the VIP entries on the neighbours
# instead (a lab-only shortcut; keepalived sends real gratuitous ARP).
lab_vip_add() {
	local ns ifn addr
	ns=$(lab_ns "${1:?usage: lab_vip_add gwN}")
	while read -r ifn addr; do
		ip -n "$ns" addr replace "$addr" dev "$ifn" || { _lab_err "vip $addr on $ns"; return 1; }
		if command -v arping >/dev/null 2>&1; then
			ip netns exec "$ns" arping -q -U -c 1 -I "$ifn" -s "${addr%/*}" "${addr%/*}" >/dev/null 2>&1
		fi
	done < <(_lab_vip_list)
	if ! command -v arping >/dev/null 2>&1; then
		ip -n "$(lab_ns client)" neigh flush to 10.0.0.1 2>/dev/null
		ip -n "$(lab_ns pa)" neigh flush to 198.51.100.10 2>/dev/null
		ip -n "$(lab_ns pb)" neigh flush to 203.0.113.10 2>/dev/null
	fi
	return 0
}

lab_vip_del() {
	local ns ifn addr
	ns=$(lab_ns "${1:?usage: lab_vip_del gwN}")
	while read -r ifn addr; do
		ip -n "$ns" addr del "$addr" dev "$ifn" 2>/dev/null
	done < <(_lab_vip_list)
	return 0
}

# Total of packets with an internal source dropped by both provider routers.
# The labtraffic server's view of the long-lived flows (a fresh report via
# SIGUSR1 to $LAB_DIR/server.pid): prints "tcp=N udp=M changed=C reset=R",
# changed counting flows whose source IP:port at the server ever changed.
# Only ids 1..MAX+1000 count (the long-lived ones, not later batches).
lab_traffic_check() {
	local max=${1:?usage: lab_traffic_check MAX_TCP_CONNS}
	rm -f "$LAB_DIR/server.report"
	kill -USR1 "$(cat "$LAB_DIR/server.pid")" || return 1
	lab_wait_for "test -s $LAB_DIR/server.report" 10 || return 1
	awk -v max="$max" '
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

# The records all TCP connections have exchanged, by the last report.
lab_traffic_records() {
	awk '$1 == "tcp" && $2 != "id=-" { for (i = 3; i <= NF; i++) if ($i ~ /^records=/) { split($i, r, "="); t += r[2] } } END { print t + 0 }' \
		"$LAB_DIR/server.report"
}

# TCP connections of the last report whose records did not grow since the
# report saved in FILE (each long-lived connection exchanges a few a second).
lab_traffic_stalled() {
	awk '
		function recs(    i, r) { for (i = 3; i <= NF; i++) if ($i ~ /^records=/) { split($i, r, "="); return r[2] + 0 } return -1 }
		$1 != "tcp" || $2 == "id=-" { next }
		FNR == NR { before[$2] = recs(); next }
		($2 in before) && recs() <= before[$2] { n++ }
		END { print n + 0 }
	' "${1:?usage: lab_traffic_stalled FILE}" "$LAB_DIR/server.report"
}

lab_leaks() {
	local node ns n total=0
	for node in pa pb; do
		ns=$(lab_ns "$node")
		[ -e "/run/netns/$ns" ] || continue
		# "-A FORWARD -s 10.0.0.0/8 -m comment --comment LAB-LEAK -c PKTS BYTES -j DROP"
		n=$(ip netns exec "$ns" iptables -w -v -S FORWARD 2>/dev/null |
			awk '/LAB-LEAK/ { for (i = 1; i < NF; i++) if ($i == "-c") { print $(i + 1); exit } }')
		total=$((total + ${n:-0}))
	done
	echo "$total"
}

lab_status() {
	local node ns f name pid
	echo "prefix $LAB_PREFIX, state in $LAB_DIR, gateways $(cat "$LAB_DIR/gateways" 2>/dev/null || echo -)"
	for node in $LAB_NODES; do
		ns=$(lab_ns "$node")
		[ -e "/run/netns/$ns" ] || continue
		echo "== $ns"
		ip -n "$ns" -br addr show | sed "s/^/  /"
	done
	if [ -d "$LAB_DIR" ]; then
		for f in "$LAB_DIR"/*.pid; do
			[ -e "$f" ] || continue
			name=$(basename "$f" .pid); pid=$(cat "$f")
			if _lab_pid_is_ours "$pid"; then
				echo "process $name pid $pid running in $(ip netns identify "$pid")"
			else
				echo "process $name pid $pid not running"
			fi
		done
	fi
	echo "leaks $(lab_leaks)"
}

# ---- kernel-only balancer (the benchmark baseline) ----
#
# Per-connection random choice in the kernel, no daemon: the connmark is
# restored on LAN ingress; a NEW connection from the LAN gets 0x100 with
# probability WA/(WA+WB), otherwise 0x200, saved to the connmark; policy
# routing sends 0x100 to table 100 (provider A) and 0x200 to table 101
# (provider B); SNAT by connmark.  No health checks, no failover.  It uses
# the same tables as uplinkd's defaults: never run both on one node.

LAB_KB_PRIO_A=20100
LAB_KB_PRIO_B=20101

lab_kernel_balancer() {
	local ns wa=${2:-1} wb=${3:-1} p
	ns=$(lab_ns "${1:?usage: lab_kernel_balancer gwN WEIGHT_A WEIGHT_B}")
	case "$wa$wb" in *[!0-9]*) _lab_err "weights must be integers"; return 2 ;; esac
	[ $((wa + wb)) -gt 0 ] || { _lab_err "weights are both 0"; return 2; }
	p=$(awk -v a="$wa" -v b="$wb" 'BEGIN { printf "%.6f", a / (a + b) }')
	lab_kernel_balancer_off "$1"
	_lab_do ip netns exec "$ns" iptables-restore -w --noflush <<EOF || return 1
*mangle
:LABKB-PRE - [0:0]
-A PREROUTING -i lan0 -j LABKB-PRE
-A LABKB-PRE -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00
-A LABKB-PRE -m mark ! --mark 0/0xff00 -j RETURN
-A LABKB-PRE -s 10.0.0.0/24 ! -d 10.0.0.0/24 -m conntrack --ctstate NEW -m statistic --mode random --probability $p -j MARK --set-xmark 0x100/0xff00
-A LABKB-PRE -s 10.0.0.0/24 ! -d 10.0.0.0/24 -m conntrack --ctstate NEW -m mark --mark 0/0xff00 -j MARK --set-xmark 0x200/0xff00
-A LABKB-PRE -m mark ! --mark 0/0xff00 -j CONNMARK --save-mark --nfmask 0xff00 --ctmask 0xff00
COMMIT
*nat
:LABKB-POST - [0:0]
-A POSTROUTING -j LABKB-POST
-A LABKB-POST -o wan0 -m connmark --mark 0x100/0xff00 -j SNAT --to-source 198.51.100.10
-A LABKB-POST -o wan1 -m connmark --mark 0x200/0xff00 -j SNAT --to-source 203.0.113.10
COMMIT
EOF
	_lab_do ip -n "$ns" route replace default via 198.51.100.1 dev wan0 table 100 &&
		_lab_do ip -n "$ns" route replace default via 203.0.113.1 dev wan1 table 101 &&
		_lab_do ip -n "$ns" rule add priority $LAB_KB_PRIO_A fwmark 0x100/0xff00 lookup 100 &&
		_lab_do ip -n "$ns" rule add priority $LAB_KB_PRIO_B fwmark 0x200/0xff00 lookup 101
}

lab_kernel_balancer_off() {
	local ns i
	ns=$(lab_ns "${1:?usage: lab_kernel_balancer_off gwN}")
	# Bounded: each pass removes one jump rule.
	for ((i = 0; i < 16; i++)); do
		ip netns exec "$ns" iptables -w -t mangle -D PREROUTING -i lan0 -j LABKB-PRE 2>/dev/null || break
	done
	for ((i = 0; i < 16; i++)); do
		ip netns exec "$ns" iptables -w -t nat -D POSTROUTING -j LABKB-POST 2>/dev/null || break
	done
	ip netns exec "$ns" iptables -w -t mangle -F LABKB-PRE 2>/dev/null
	ip netns exec "$ns" iptables -w -t mangle -X LABKB-PRE 2>/dev/null
	ip netns exec "$ns" iptables -w -t nat -F LABKB-POST 2>/dev/null
	ip netns exec "$ns" iptables -w -t nat -X LABKB-POST 2>/dev/null
	ip -n "$ns" rule del priority $LAB_KB_PRIO_A 2>/dev/null
	ip -n "$ns" rule del priority $LAB_KB_PRIO_B 2>/dev/null
	ip -n "$ns" route del default table 100 2>/dev/null
	ip -n "$ns" route del default table 101 2>/dev/null
	return 0
}

# ---- uplinkd (config schema: /work/shared/ARCHITECTURE.md, "Config file") ----

lab_uplinkd_config() {
	local gw=${1:?usage: lab_uplinkd_config gwN [ALGO] [WA] [WB]} algo=${2:-wrr} wa=${3:-1} wb=${4:-1}
	_lab_dir_init || return 1
	cat >"$LAB_DIR/$gw.yaml" <<EOF
# Written by tests/lab/lab.sh (lab_uplinkd_config) for the lab topology.
node: $gw
lan:
  interface: lan0
  networks: [10.0.0.0/24]
queue:
  first: 0
  count: 1
providers:
  - name: isp-a
    interface: wan0
    gateway: 198.51.100.1
    source: 198.51.100.10
    weight: $wa
    health:
      targets: [198.51.100.1]
      require: 1
      interval: 200ms
      timeout: 150ms
      fall: 3
      rise: 2
  - name: isp-b
    interface: wan1
    gateway: 203.0.113.1
    source: 203.0.113.10
    weight: $wb
    health:
      targets: [203.0.113.1]
      require: 1
      interval: 200ms
      timeout: 150ms
      fall: 3
      rise: 2
balance:
  algorithm: $algo
control:
  socket: $LAB_DIR/$gw.sock
EOF
}

# The pair's CA and node certificates in $LAB_DIR/pki (kept when they
# exist, so a test may put its own there first).
lab_sync_certs() {
	_lab_dir_init || return 1
	[ -f "$LAB_DIR/pki/gw1.pem" ] && [ -f "$LAB_DIR/pki/gw2.pem" ] && return 0
	"$LAB_TOP/deploy/mkcerts.sh" "$LAB_DIR/pki" gw1 gw2 >/dev/null
}

# Appends the sync section (over the sync0 link, port 7410) to gwN's config.
lab_uplinkd_sync() {
	local gw=${1:?usage: lab_uplinkd_sync gwN} peer me them
	case $gw in
	gw1) peer=gw2 me=10.255.0.1 them=10.255.0.2 ;;
	gw2) peer=gw1 me=10.255.0.2 them=10.255.0.1 ;;
	*) _lab_err "lab_uplinkd_sync: gw1 or gw2"; return 2 ;;
	esac
	lab_sync_certs || return 1
	[ -f "$LAB_DIR/$gw.yaml" ] || lab_uplinkd_config "$gw" || return 1
	cat >>"$LAB_DIR/$gw.yaml" <<EOF
sync:
  listen: $me:7410
  peer: $them:7410
  tls:
    ca: $LAB_DIR/pki/ca.pem
    cert: $LAB_DIR/pki/$gw.pem
    key: $LAB_DIR/pki/$gw.key
    peer_name: $peer
EOF
}

# keepalived for gwN from ha/keepalived.conf.j2 (the same template the
# ansible role renders): lab_keepalived_config gwN PRIORITY [preempt|nopreempt]
lab_keepalived_config() {
	local gw=${1:?usage: lab_keepalived_config gwN PRIORITY [preempt|nopreempt]}
	local prio=${2:?priority} preempt=true
	[ "${3:-preempt}" = nopreempt ] && preempt=false
	_lab_dir_init || return 1
	cat >"$LAB_DIR/keepalived-$gw.json" <<EOF
{"node": "$gw", "priority": $prio, "preempt": $preempt, "advert_ms": 100, "vrid": 51,
 "lan": {"interface": "lan0", "vip": "10.0.0.1/24"},
 "providers": [{"name": "isp-a", "interface": "wan0", "source": "198.51.100.10/24"},
               {"name": "isp-b", "interface": "wan1", "source": "203.0.113.10/24"}],
 "track_file": "$LAB_DIR/$gw.vrrp",
 "alive_check": "$UPLINKD_BUILD/uplinkctl -s $LAB_DIR/$gw.sock status",
 "notify": "$LAB_TOP/ha/notify.sh -b $UPLINKD_BUILD/uplinkctl $LAB_DIR/$gw.sock"}
EOF
	"$LAB_TOP/ha/render.py" "$LAB_TOP/ha/keepalived.conf.j2" "$LAB_DIR/keepalived-$gw.json" \
		>"$LAB_DIR/keepalived-$gw.conf"
}

# Runs keepalived in gwN (in the foreground of its own process, its pid files
# in $LAB_DIR): keepalived-gwN.pid is the parent, keepalived-gwN.vrrp.pid
# its VRRP child.
lab_keepalived_start() {
	local gw=${1:?usage: lab_keepalived_start gwN}
	[ -f "$LAB_DIR/keepalived-$gw.conf" ] || { _lab_err "no keepalived config for $gw"; return 1; }
	lab_start_bg "$gw" "keepalived-$gw" keepalived -n -l -D --vrrp \
		-f "$LAB_DIR/keepalived-$gw.conf" -p "$LAB_DIR/keepalived-$gw.main.pid" \
		-r "$LAB_DIR/keepalived-$gw.vrrp.pid"
}

lab_uplinkd_start() {
	local gw=${1:?usage: lab_uplinkd_start gwN}
	[ -f "$LAB_DIR/$gw.yaml" ] || lab_uplinkd_config "$gw" || return 1
	lab_start_bg "$gw" "uplinkd-$gw" "$UPLINKD_BUILD/uplinkd" -f -c "$LAB_DIR/$gw.yaml"
}

lab_uplinkctl() {
	local gw=${1:?usage: lab_uplinkctl gwN ARGS...}
	shift
	"$UPLINKD_BUILD/uplinkctl" -s "$LAB_DIR/$gw.sock" "$@"
}

# lab_jget gwN EXPR CMD...: the value of the Python expression EXPR over
# `uplinkctl --json CMD` on gwN, whose answer is d (empty when unreachable).
lab_jget() {
	local gw=${1:?usage: lab_jget gwN EXPR CMD...} expr=${2:?expression}
	shift 2
	lab_uplinkctl "$gw" --json "$@" 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$expr"
}

# The traffic tool: the build directory first, then the source tree.
lab_labtraffic() {
	local p
	for p in "$UPLINKD_BUILD/tests/lab/labtraffic" "$LAB_TOP/tests/lab/labtraffic"; do
		[ -x "$p" ] && { echo "$p"; return 0; }
	done
	_lab_err "labtraffic not built (looked in $UPLINKD_BUILD and $LAB_TOP)"
	return 1
}

_lab_usage() {
	cat >&2 <<EOF
usage: lab.sh up [--gateways 1|2]
       lab.sh down | status
       lab.sh exec NODE CMD...
environment: LAB_PREFIX=$LAB_PREFIX LAB_DIR=$LAB_DIR
EOF
	return 2
}

lab_main() {
	local cmd=${1:-}
	[ $# -gt 0 ] && shift
	[ "$(id -u)" = 0 ] || { _lab_err "needs root"; return 1; }
	case $cmd in
	up)
		local gws=1
		while [ $# -gt 0 ]; do
			case $1 in
			--gateways) gws=${2:-}; shift 2 || return 2 ;;
			--gateways=*) gws=${1#*=}; shift ;;
			*) _lab_usage; return 2 ;;
			esac
		done
		lab_up "$gws" || { _lab_err "up failed; removing the partial lab"; lab_down; return 1; }
		;;
	down) lab_down ;;
	status) lab_status ;;
	exec) lab_exec "$@" ;;
	*) _lab_usage ;;
	esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	lab_main "$@"
	exit $?
fi
