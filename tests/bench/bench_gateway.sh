#!/bin/bash
# Benchmark of the single-gateway datapath, in the namespace lab.  Prints
# figures and ratios against a baseline measured in the same run; asserts
# nothing about speed (the machine is shared).
#
#  1. New TCP connections per second through the gateway: uplinkd deciding
#     vs the kernel-only balancer (iptables statistic marks, no queue),
#     rounds alternating, 16 connections in flight; connect latency p50/p99
#     of each under that load, and the whole machine's busy CPU per
#     connection.  Once from one client process and once from two: one
#     client thread is the kernel-only lab's bottleneck (it carries each
#     SYN through every namespace inside its own connect()), so with it
#     the rate ratio measures how long that thread waits for the daemon;
#     two clients take that limit away.  Then one connection at a time:
#     the difference in connect latency is what the queue adds to the first
#     packet (under load it mostly measures CPU contention instead).
#  2. UDP flood where every datagram is a new flow: flows delivered to the
#     server per second with and without uplinkd, drops, and how many flows
#     the daemon decided versus the kernel fallback.
#  3. Conntrack event intake into uplinkd's flow table (flows/s, daemon CPU
#     per event) and RSS per tracked flow at 100k flows.
#
# Usage: tests/bench/bench_gateway.sh [ROUNDS] ; env COUNT, LAT_COUNT, UDP_COUNT, CT_FLOWS
# PARTS: which of "tcp tcp2 lat udp ct" to run (default all).
# UPLINKD_BUILD: build directory (default _build/plain).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export UPLINKD_BUILD=${UPLINKD_BUILD:-$top/_build/plain}
export LAB_PREFIX=${LAB_PREFIX:-ubn}
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"
ROUNDS=${1:-5}
COUNT=${COUNT:-20000}
LAT_COUNT=${LAT_COUNT:-3000}
UDP_COUNT=${UDP_COUNT:-100000}
CT_FLOWS=${CT_FLOWS:-100000}
PARTS=${PARTS:-tcp tcp2 lat udp ct}
part() { [[ " $PARTS " == *" $1 "* ]]; }
LT=$(lab_labtraffic) || exit 1
B=$UPLINKD_BUILD/tests/bench

cleanup() {
	lab_stop uplinkd-gw1 >/dev/null 2>&1
	lab_stop server >/dev/null 2>&1
	lab_down >/dev/null 2>&1
}
trap cleanup EXIT

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

uplinkd_up() {
	lab_uplinkd_start gw1
	lab_wait_for "lab_uplinkctl gw1 status" 20 || { echo "uplinkd did not start"; exit 1; }
}
uplinkd_down() {
	lab_stop uplinkd-gw1 >/dev/null
	lab_exec gw1 conntrack -F >/dev/null 2>&1
}
kernel_up() { lab_kernel_balancer gw1 2 1 >/dev/null; }
kernel_down() {
	lab_kernel_balancer_off gw1 >/dev/null
	lab_exec gw1 conntrack -F >/dev/null 2>&1
}

lab_down >/dev/null 2>&1
lab_up 1 >/dev/null || exit 1
lab_uplinkd_config gw1 wrr 2 1
lab_start_bg srv server "$LT" server --tcp 5001 --udp 5002 --report "$LAB_DIR/server.report" \
	--deadline 3600
lab_wait_for "lab_exec srv ss -ltn | grep -q :5001" 10

# synlat_start N / synlat_stop: the gateway's own delay of the first packet
# of N connections (SYN in on lan0 to SYN out on a provider link), in
# $LAB_DIR/synlat.out.  Not in a subshell: synlat is this shell's child.
synlat_start() {
	ip netns exec "$(lab_ns gw1)" "$B/synlat" --in lan0 --out wan0,wan1 --count "$1" --timeout 300 \
		>"$LAB_DIR/synlat.out" 2>&1 &
	synlat_pid=$!
	lab_wait_for "grep -q ready $LAB_DIR/synlat.out" 10
}
synlat_stop() {
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$synlat_pid" 2>/dev/null || break
		sleep 0.05
	done
	kill "$synlat_pid" 2>/dev/null
	wait "$synlat_pid" 2>/dev/null
}

# Busy and idle CPU of the whole machine so far, in clock ticks.
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 }' /proc/stat; }

# clients_run COUNT CONCURRENCY CLIENTS: COUNT short connections from CLIENTS
# labtraffic processes at once (COUNT/CLIENTS each, CONCURRENCY in flight
# in each); prints "rate p50 p99 failed busy_us": the connections per
# second from the first start to the last end, the first client's connect
# latencies, the failures of all, and the machine's busy CPU microseconds
# per connection.
clients_run() {
	local count=$1 conc=$2 clients=$3 i pids="" c0 c1 t0 t1 failed=0 f
	c0=$(cpu_ticks)
	t0=$(date +%s.%N)
	for ((i = 0; i < clients; i++)); do
		lab_exec client "$LT" short --to 192.0.2.10:5001 --count $((count / clients)) \
			--concurrency "$conc" --src-from 10.0.0.100 --src-count 50 --timeout 30 \
			--deadline 300 >"$LAB_DIR/client.$i" 2>&1 &
		pids="$pids $!"
	done
	# shellcheck disable=SC2086
	wait $pids
	t1=$(date +%s.%N)
	c1=$(cpu_ticks)
	for ((i = 0; i < clients; i++)); do
		f=$(kv failed <"$LAB_DIR/client.$i")
		failed=$((failed + ${f:-1}))
	done
	python3 - "$c0" "$c1" "$t0" "$t1" "$((count / clients * clients))" "$(getconf CLK_TCK)" "$failed" \
		"$(kv connect_p50_us <"$LAB_DIR/client.0")" "$(kv connect_p99_us <"$LAB_DIR/client.0")" <<'PY'
import sys
c0, c1 = sys.argv[1].split(), sys.argv[2].split()
secs, n, hz = float(sys.argv[4]) - float(sys.argv[3]), int(sys.argv[5]), int(sys.argv[6])
busy = (int(c1[0]) - int(c0[0])) / hz * 1e6 / n
print(round(n / secs, 1), sys.argv[8] or 0, sys.argv[9] or 0, sys.argv[7], round(busy, 1))
PY
}

# tcp_rounds TAG COUNT CONCURRENCY [CLIENTS]: ROUNDS alternating rounds of
# COUNT short connections; "rate p50 p99 failed busy_us" per round in
# $LAB_DIR/TAG.k and TAG.u, medians in rate_k/u, p50_k/u, p99_k/u, busy_k/u.
tcp_rounds() {
	local tag=$1 count=$2 conc=$3 clients=${4:-1} r mode line
	: >"$LAB_DIR/$tag.k"
	: >"$LAB_DIR/$tag.u"
	: >"$LAB_DIR/gwlat.k"
	: >"$LAB_DIR/gwlat.u"
	for ((r = 1; r <= ROUNDS; r++)); do
		for mode in k u; do
			if [ $mode = k ]; then kernel_up; else uplinkd_up; fi
			[ "$tag" = lat ] && synlat_start "$count"
			line=$(clients_run "$count" "$conc" "$clients")
			echo "$line" >>"$LAB_DIR/$tag.$mode"
			read -r rate p50 p99 failed busy <<<"$line"
			echo "round $r $([ $mode = k ] && echo kernel-only || echo uplinkd): rate=$rate conn/s connect_p50_us=$p50 connect_p99_us=$p99 failed=$failed machine_busy_us_per_conn=$busy"
			if [ "$tag" = lat ]; then
				synlat_stop
				line=$(grep '^synlat pairs' "$LAB_DIR/synlat.out")
				echo "$(echo "$line" | kv p50_us) $(echo "$line" | kv p99_us)" >>"$LAB_DIR/gwlat.$mode"
				echo "  in the gateway: $line"
			fi
			if [ $mode = k ]; then kernel_down; else uplinkd_down; fi
		done
	done
	for mode in k u; do
		eval "rate_$mode=$(cut -d' ' -f1 "$LAB_DIR/$tag.$mode" | median)"
		eval "p50_$mode=$(cut -d' ' -f2 "$LAB_DIR/$tag.$mode" | median)"
		eval "p99_$mode=$(cut -d' ' -f3 "$LAB_DIR/$tag.$mode" | median)"
		eval "busy_$mode=$(cut -d' ' -f5 "$LAB_DIR/$tag.$mode" | median)"
	done
}
# Medians of an even number of rounds are not integers: no shell arithmetic.
diff_us() { python3 -c "print(round($1 - $2, 1))"; }

ratio() { python3 -c "print(round($1 / $2, 3))"; }
# shellcheck disable=SC2154
tcp_report() {
	echo "tcp_conn_rate clients=$1 kernel_only=$rate_k uplinkd=$rate_u ratio=$(ratio "$rate_u" "$rate_k")"
	echo "tcp_connect_latency_us clients=$1 concurrency=16 kernel_only_p50=$p50_k uplinkd_p50=$p50_u kernel_only_p99=$p99_k uplinkd_p99=$p99_u difference_p50=$(diff_us "$p50_u" "$p50_k") difference_p99=$(diff_us "$p99_u" "$p99_k")"
	echo "machine_busy_us_per_conn clients=$1 kernel_only=$busy_k uplinkd=$busy_u ratio=$(ratio "$busy_k" "$busy_u")"
}
if part tcp; then
echo "# 1. new TCP connections/s, $COUNT per round, $ROUNDS rounds, alternating; one client process"
tcp_rounds tcp "$COUNT" 16 1
tcp_report 1
fi
if part tcp2; then
echo "# 1a. the same from two client processes at once, $((COUNT / 2)) connections each"
tcp_rounds tcp2 "$COUNT" 16 2
tcp_report 2
fi
if part lat; then
echo "# 1b. first-packet latency, one connection at a time, $LAT_COUNT per round, $ROUNDS rounds"
tcp_rounds lat "$LAT_COUNT" 1
# shellcheck disable=SC2154
{
echo "tcp_connect_latency_us concurrency=1 kernel_only_p50=$p50_k uplinkd_p50=$p50_u kernel_only_p99=$p99_k uplinkd_p99=$p99_u"
echo "connect_time_difference_us p50=$(diff_us "$p50_u" "$p50_k") p99=$(diff_us "$p99_u" "$p99_k")"
for mode in k u; do
	eval "g50_$mode=$(cut -d' ' -f1 "$LAB_DIR/gwlat.$mode" | median)"
	eval "g99_$mode=$(cut -d' ' -f2 "$LAB_DIR/gwlat.$mode" | median)"
done
echo "gateway_first_packet_us kernel_only_p50=$g50_k uplinkd_p50=$g50_u kernel_only_p99=$g99_k uplinkd_p99=$g99_u"
echo "queue_added_latency_us p50=$(diff_us "$g50_u" "$g50_k") p99=$(diff_us "$g99_u" "$g99_k")"
}

fi
if part udp; then
echo "# 2. UDP flood, $UDP_COUNT new flows per run"
lab_exec srv iptables -I INPUT -p udp ! --dport 5002 -j DROP
udp_delivered() { lab_exec srv iptables -L INPUT -v -x -n | awk '/udp/ && /DROP/ { print $1; exit }'; }
for mode in k u; do
	if [ $mode = k ]; then kernel_up; else uplinkd_up; fi
	lab_exec srv iptables -Z INPUT
	line=$(lab_exec client "$B/udpflood" --to 192.0.2.10 --count "$UDP_COUNT" --src-from 10.0.0.100 --src-count 50)
	sleep 1
	got=$(udp_delivered)
	sent=$(echo "$line" | kv sent)
	secs=$(echo "$line" | kv seconds)
	if [ $mode = u ]; then
		q=$(lab_uplinkctl gw1 --json status | python3 -c 'import json,sys; q=json.load(sys.stdin)["queue"]; print(q["packets"], q["failed_open"])')
		echo "udp uplinkd: sent=$sent delivered=$got dropped=$((sent - got)) flows_per_s=$(python3 -c "print(round($got/$secs))") decided_by_daemon=${q% *} kernel_fallback=$((got - ${q% *}))"
		udp_u=$(python3 -c "print($got/$secs)")
		uplinkd_down
	else
		echo "udp kernel-only: sent=$sent delivered=$got dropped=$((sent - got)) flows_per_s=$(python3 -c "print(round($got/$secs))")"
		udp_k=$(python3 -c "print($got/$secs)")
		kernel_down
	fi
done
echo "udp_delivered_ratio uplinkd/kernel_only=$(python3 -c "print(round($udp_u/$udp_k,3))")"

fi
if part ct; then
echo "# 3. conntrack event intake and memory, $CT_FLOWS flows"
uplinkd_up
pid=$(cat "$LAB_DIR/uplinkd-gw1.pid")
rss0=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
cpu0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
t0=$(date +%s.%N)
lab_exec gw1 "$B/ctgen" -n "$CT_FLOWS" >"$LAB_DIR/ctgen.out"
for ((i = 0; i < 600; i++)); do
	n=$(lab_uplinkctl gw1 --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["flows"]["own"])')
	[ "${n:-0}" -ge "$CT_FLOWS" ] && break
	sleep 0.02
done
t1=$(date +%s.%N)
cpu1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
rss1=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
hz=$(getconf CLK_TCK)
cat "$LAB_DIR/ctgen.out"
echo "ct_intake flows=$n seconds=$(python3 -c "print(round($t1-$t0,3))") flows_per_s=$(python3 -c "print(round($n/($t1-$t0)))") daemon_cpu_us_per_flow=$(python3 -c "print(round(($cpu1-$cpu0)/$hz*1e6/$n,2))")"
echo "rss_per_flow_bytes=$(python3 -c "print(round(($rss1-$rss0)*1024/$n,1))") rss_idle_kb=$rss0 rss_kb=$rss1"
uplinkd_down
fi
