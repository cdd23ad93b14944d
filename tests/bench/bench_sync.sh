#!/bin/bash
# Benchmark of flow-state replication between the two gateways of the
# namespace lab (tests/lab/lab.sh, two gateways): uplinkd's TLS sync
# against conntrackd (FT-FW over unicast UDP) as the baseline, the same
# workload through both in one run, never both daemons at once.  gw1 is
# the sender (its conntrack table is filled by tests/bench/ctgen, entries
# that look like uplinkd's own flows: TCP ESTABLISHED, SNAT, provider
# mark), gw2 the receiver, over the sync0 link 10.255.0.1 -> 10.255.0.2.
# Prints figures, ratios uplinkd/conntrackd and the targets; asserts
# nothing about speed (the machine is shared).  The sync link itself is
# not conntracked (raw NOTRACK on sync0) for either daemon.
#
# What each figure means:
#  1. Replication lag at a steady RATE new flows/s (STREAM flows; ctgen
#     sends batches of 10 on an absolute schedule).
#     - peer-cache lag (both daemons, the comparable figure): for entry i,
#       time from ctgen's sendmsg of its batch (the NEW event fires inside
#       it) to the first reply of the receiver's control socket that shows
#       its cache holding >= i+1 entries; polled every POLL_US (median
#       interval printed as the resolution; each poll is a ~0.1 ms query).
#       tail = the same for the stream's last entry.
#     - uplinkd's own lag (gw1, `uplinkctl --json sync` lag_p50/p99_ms):
#       from the daemon reading the first change of a flush to the peer's
#       Ack of the Batch that carried it (one sample per flush, its oldest
#       change; includes the Ack's way back).
#  2. Daemon CPU per replicated entry, utime+stime from /proc/PID/stat
#     before/after, divided by the entries (sender: created in gw1;
#     receiver: arrived in its cache).  Measured without the poller, on
#     (a) a second paced stream of STREAM flows at RATE/s and (b) a burst
#     of BURST flows as fast as ctgen goes (the anchor's workload).
#     Includes everything the process does meanwhile (uplinkd's health
#     probes, heartbeats; idle CPU rate printed).
#  3. Bulk resync of N flows (BULK_SIZES), the receiver's cache empty:
#     gw1's kernel table holds N entries; the sender daemon starts and
#     learns them (uplinkd from its dump; conntrackd into its internal
#     cache from its startup dump); the receiver starts fresh.
#     - uplinkd: bulk_ms = gw1's bulk_ms_last (BulkBegin queued to the
#       Ack of the BulkEnd, the peer having swept and acked); wall = from
#       the receiver's start to its cache holding N (includes its start,
#       the sender's redial backoff and the TLS handshake).  Then
#       `uplinkctl sync --resync` on gw1: a bulk into a full cache.
#     - conntrackd: `conntrackd -B` on gw1, time until gw2's external
#       cache holds N (polled every 5 ms; the client's own start included).
#     Each is done BULK_REPEAT times (uplinkd: the receiver restarted each
#     time, then as many resyncs; conntrackd: gw2's external cache
#     flushed with `-f external` before each -B); the summary shows the
#     median and the best (the machine is shared: the best is the
#     capacity, the median what a busy moment leaves of it).
#  4. RSS per cached flow on the receiver: (VmRSS with N cached, after the
#     first bulk - VmRSS of a fresh idle receiver) / N, and the slope
#     between the smallest and the largest N (removes fixed costs).
#
# Usage: tests/bench/bench_sync.sh     (as root, from the source tree)
# Env:   UPLINKD_BUILD (default _build/plain), RATE (10000), STREAM (100000),
#        BURST (100000), BULK_SIZES ("100000 1000000"), POLL_US (1000),
#        BULK_REPEAT (3: bulks per N and daemon, the median is summarised),
#        IDLE_WAIT (120 s to wait for a quiet machine), LAB_PREFIX (usb).
# 1M entries need nf_conntrack_max >= 1.25M in gw1: it is global (set in
# the init netns, read-only in a child) and limits each netns separately;
# the script raises it when needed and restores it at exit unless someone
# changed it meanwhile.  nf_conntrack_buckets (hashsize) is global for all
# namespaces of the machine and is left alone.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export UPLINKD_BUILD=${UPLINKD_BUILD:-$top/_build/plain}
export LAB_PREFIX=${LAB_PREFIX:-usb}
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"
RATE=${RATE:-10000}
STREAM=${STREAM:-100000}
BURST=${BURST:-100000}
BULK_SIZES=${BULK_SIZES:-"100000 1000000"}
POLL_US=${POLL_US:-1000}
IDLE_WAIT=${IDLE_WAIT:-120}
BULK_REPEAT=${BULK_REPEAT:-3}
B=$UPLINKD_BUILD/tests/bench
CTGEN=$B/ctgen
SYNC_LAG=$top/tests/bench/sync_lag.py
HZ=$(getconf CLK_TCK)
CTMAX=/proc/sys/net/netfilter/nf_conntrack_max
R=$LAB_DIR/bench

die() { echo "bench_sync: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
for f in "$UPLINKD_BUILD/uplinkd" "$UPLINKD_BUILD/uplinkctl" "$CTGEN"; do
	[ -x "$f" ] || die "$f not built (make && make check TESTS= in $UPLINKD_BUILD)"
done
if ! command -v conntrackd >/dev/null 2>&1; then
	"$top/deploy/install-deps.sh" || die "could not install conntrackd"
fi

# --- state we change outside the lab, restored by cleanup ---
ctmax_old="" ctmax_set=""
cleanup() {
	local n
	for n in poll uplinkd-gw1 uplinkd-gw2 ctd-gw1 ctd-gw2; do
		lab_stop "$n" >/dev/null 2>&1
	done
	# Netns deletion frees conntrack entries in a kworker after `ip netns
	# del` returns: flush first so that the next run is not disturbed.
	for n in gw1 gw2; do
		[ -e "/run/netns/$(lab_ns $n)" ] && lab_exec $n conntrack -F >/dev/null 2>&1
	done
	lab_down >/dev/null 2>&1
	if [ -n "$ctmax_set" ] && [ "$(cat $CTMAX)" = "$ctmax_set" ]; then
		echo "$ctmax_old" >$CTMAX
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ---
pid_of() { cat "$LAB_DIR/$1.pid"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Nanoseconds on CPU, all threads (schedstat): the idle rate is too small
# for clock ticks.
cpu_ns() { cat "/proc/$1"/task/*/schedstat | awk '{ s += $1 } END { print s }'; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
calc() { python3 -c "print($*)"; }
us_per() { calc "round(($1) * 1e6 / $HZ / ($2), 2)"; }	# ticks, entries
# net_us TICKS IDLE_US_PER_S ENTRIES: per entry after the idle rate over
# the interval t0..t1 (the caller's).
net_us() { calc "round((($1) * 1e6 / $HZ - $2 * ($t1 - $t0)) / ($3), 2)"; }
min_of() { printf '%s\n' "$@" | sort -n | head -1; }
median_of() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
mono_us() { python3 -c 'import time; print(time.monotonic_ns() // 1000)'; }
# sock KIND GW: the daemon's control socket.
sock() {
	if [ "$1" = uplinkd ]; then echo "$LAB_DIR/$2.sock"; else echo "$LAB_DIR/ctd-$2.ctl"; fi
}
q() { python3 "$SYNC_LAG" "$@"; }
# uget GW EXPR: a value out of `uplinkctl --json sync` on GW.
uget() {
	lab_uplinkctl "$1" --json sync 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}
# count KIND GW FIELD; wait_count KIND GW FIELD TARGET TIMEOUT [INTERVAL_MS]
count() { q count "--$1" "$(sock "$1" "$2")" --field "$3"; }
wait_count() {
	q wait "--$1" "$(sock "$1" "$2")" --field "$3" \
		--target "$4" --timeout "$5" --interval-ms "${6:-20}"
}
# Seconds to allow for N entries to move (at >= 10k/s) plus slack.
budget() { echo $((30 + $1 / 10000)); }

# Busy share of all CPUs over one second, from /proc/stat.
busy_pct() {
	local a b
	a=$(awk '/^cpu / { print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8 }' /proc/stat)
	sleep 1
	b=$(awk '/^cpu / { print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8 }' /proc/stat)
	calc "round(100 * (${b% *} - ${a% *}) / max(1, ${b#* } - ${a#* }))"
}
wait_idle() {
	local i p
	for ((i = 0; i < IDLE_WAIT; i++)); do
		p=$(busy_pct)
		[ "$p" -lt 15 ] && break
	done
	echo "$p"
}

conntrackd_config() {	# conntrackd_config gwN: FT-FW over UDP on sync0
	local gw=$1 me them
	case $gw in
	gw1) me=10.255.0.1 them=10.255.0.2 ;;
	gw2) me=10.255.0.2 them=10.255.0.1 ;;
	esac
	# The anchor's tuned configuration: big netlink and socket buffers,
	# a resend queue that holds a whole burst, resync 1 s after an
	# overrun, caches sized for 1M+ entries; files in the lab directory
	# (LockFile is O_EXCL: lab_down removing it avoids stale locks).
	cat >"$LAB_DIR/ctd-$gw.conf" <<EOF
Sync {
	Mode FTFW {
		ResendQueueSize 4194304
	}
	UDP {
		IPv4_address $me
		IPv4_Destination_Address $them
		Port 3780
		Interface sync0
		SndSocketBuffer 67108864
		RcvSocketBuffer 67108864
		Checksum on
	}
}
General {
	Systemd off
	HashSize 262144
	HashLimit 4194304
	LogFile $LAB_DIR/ctd-$gw.daemon.log
	Syslog off
	LockFile $LAB_DIR/ctd-$gw.lock
	UNIX {
		Path $LAB_DIR/ctd-$gw.ctl
	}
	NetlinkBufferSize 134217728
	NetlinkBufferSizeMaxGrowth 536870912
	NetlinkOverrunResync 1
	Filter From Userspace {
		Protocol Accept {
			TCP
		}
		Address Ignore {
			IPv4_address 127.0.0.1
			IPv4_address 10.255.0.1
			IPv4_address 10.255.0.2
		}
	}
}
EOF
}

# Daemon control: start/stop one node, wait for the pair to be ready.
u_start() {
	lab_uplinkd_start "$1" || die "uplinkd on $1 did not start"
	lab_wait_for "lab_uplinkctl $1 status" 20 || die "uplinkd on $1 does not answer"
}
u_in_sync() { [ "$(uget "$1" 'd["in_sync"]')" = True ]; }
u_pair_up() {
	u_start gw2
	u_start gw1
	lab_wait_for "u_in_sync gw1 && u_in_sync gw2" 30 || die "uplinkd pair not in sync"
}
c_start() {
	lab_start_bg "$1" "ctd-$1" conntrackd -C "$LAB_DIR/ctd-$1.conf" ||
		die "conntrackd on $1 did not start"
	lab_wait_for "count conntrackd $1 internal" 20 || die "conntrackd on $1 does not answer"
}
# Both sides have heard >= 2 sync messages (HELLO/ALIVE): see the anchor's
# pitfall 5; UDP gets the same wait.
c_handshake() {
	wait_count conntrackd gw1 udp_rx 2 15 >/dev/null || die "conntrackd gw1 heard no HELLO"
	wait_count conntrackd gw2 udp_rx 2 15 >/dev/null || die "conntrackd gw2 heard no HELLO"
}
c_pair_up() {
	c_start gw2
	c_start gw1
	c_handshake
}
stop_pair() {	# stop_pair uplinkd|conntrackd [flush]
	local p
	p=$([ "$1" = uplinkd ] && echo uplinkd- || echo ctd-)
	lab_stop "${p}gw2"
	lab_stop "${p}gw1"
	if [ "${2:-}" = flush ]; then
		lab_exec gw1 conntrack -F >/dev/null 2>&1
		lab_exec gw2 conntrack -F >/dev/null 2>&1
	fi
}

# --- setup ---
cleanup
max_bulk=0
for n in $BULK_SIZES; do [ "$n" -gt "$max_bulk" ] && max_bulk=$n; done
need=$((max_bulk * 5 / 4 + 1024))
[ $((2 * STREAM + BURST)) -gt "$need" ] && need=$((2 * STREAM + BURST + 1024))
if [ "$(cat $CTMAX)" -lt "$need" ]; then
	ctmax_old=$(cat $CTMAX)
	echo "$need" >$CTMAX || die "cannot raise nf_conntrack_max to $need"
	ctmax_set=$need
fi
bg=$(wait_idle)
lab_up 2 >/dev/null || die "lab up failed"
mkdir -p "$R"
# No connection tracking for the sync link itself, for either daemon
# (uplinkd's nat chains would otherwise make conntrack track it).
for gw in gw1 gw2; do
	lab_exec $gw iptables -w -t raw -A PREROUTING -i sync0 -j CT --notrack ||
		die "notrack rule on $gw"
	lab_exec $gw iptables -w -t raw -A OUTPUT -o sync0 -j CT --notrack ||
		die "notrack rule on $gw"
	lab_uplinkd_config $gw wrr 1 1
	lab_uplinkd_sync $gw || die "sync config for $gw"
	conntrackd_config $gw
done
echo "# bench_sync: $(uname -r), $(nproc) CPUs, $(conntrackd -v 2>&1 | head -1)," \
	"nf_conntrack_max=$(cat $CTMAX) buckets=$(cat /proc/sys/net/netfilter/nf_conntrack_buckets)," \
	"bg_busy_pct=$bg"

# --- 1 and 2: streams and burst, per daemon ---
# stream_phase KIND: sets <kind>_* variables via printed key=value lines.
stream_phase() {
	local kind=$1 f snd rcv base pid1 pid2 c1 c2 d1 d2 t0 t1 line got n k rss_idle idle1 idle2
	if [ "$kind" = uplinkd ]; then
		u_pair_up; snd=uplinkd-gw1; rcv=uplinkd-gw2; f=peer
	else
		c_pair_up; snd=ctd-gw1; rcv=ctd-gw2; f=external
	fi
	pid1=$(pid_of $snd); pid2=$(pid_of $rcv)
	sleep 1
	rss_idle=$(rss_kb "$pid2")
	c1=$(cpu_ns "$pid1"); c2=$(cpu_ns "$pid2")
	sleep 5
	idle1=$(calc "round(($(cpu_ns "$pid1") - $c1) / 1e3 / 5)")
	idle2=$(calc "round(($(cpu_ns "$pid2") - $c2) / 1e3 / 5)")
	echo "$kind idle: rss_receiver_kb=$rss_idle cpu_us_per_s sender=$idle1 receiver=$idle2"

	# (1) lag: paced stream with the poller on the receiver.
	base=$(count "$kind" gw2 $f)
	rm -f "$R/$kind.polls"
	lab_start_bg gw2 poll python3 "$SYNC_LAG" poll "--$kind" "$(sock "$kind" gw2)" \
		--field $f --target $((base + STREAM)) --timeout "$(budget "$STREAM")" \
		--interval-us "$POLL_US" --out "$R/$kind.polls" || die "poller"
	lab_wait_for "[ -s $R/$kind.polls ]" 10
	lab_exec gw1 "$CTGEN" -n "$STREAM" -b 10 --rate "$RATE" --stamps "$R/$kind.stamps" \
		>"$R/$kind.ctgen1" || die "ctgen failed: $(cat "$R/$kind.ctgen1")"
	lab_wait_for "! kill -0 $(pid_of poll) 2>/dev/null" "$(budget "$STREAM")"
	lab_stop poll
	echo "$kind stream 1 (lag): $(cat "$R/$kind.ctgen1")"
	line=$(q lag --stamps "$R/$kind.stamps" --polls "$R/$kind.polls" --base "$base")
	echo "$kind peer-cache $line"
	for k in p50_ms p99_ms max_ms tail_ms poll_interval_ms arrived; do
		eval "${kind}_lag_$k=$(echo "$line" | kv $k)"
	done
	if [ "$kind" = uplinkd ]; then
		line=$(uget gw1 '"p50_ms=%s p99_ms=%s samples=%s overflows=%s" % (d["sync"]["lag_p50_ms"], d["sync"]["lag_p99_ms"], d["sync"]["lag_samples"], d["sync"]["overflows"])')
		echo "uplinkd own lag (event -> ack, gw1): $line"
		uplinkd_ack_p50=$(echo "$line" | kv p50_ms)
		uplinkd_ack_p99=$(echo "$line" | kv p99_ms)
	fi

	# (2a) CPU: a second paced stream, no poller.
	base=$(count "$kind" gw2 $f)
	c1=$(cpu_ticks "$pid1"); c2=$(cpu_ticks "$pid2")
	t0=$(date +%s.%N)
	lab_exec gw1 "$CTGEN" -n "$STREAM" -b 10 --rate "$RATE" --offset "$STREAM" \
		>"$R/$kind.ctgen2" || die "ctgen failed: $(cat "$R/$kind.ctgen2")"
	wait_count "$kind" gw2 $f $((base + STREAM)) "$(budget "$STREAM")" 50 >/dev/null ||
		echo "$kind: the receiver did not get all of stream 2"
	d1=$(($(cpu_ticks "$pid1") - c1)); d2=$(($(cpu_ticks "$pid2") - c2))
	t1=$(date +%s.%N)
	got=$(($(count "$kind" gw2 $f) - base))
	eval "${kind}_cpu_snd_stream=$(us_per $d1 "$STREAM")"
	eval "${kind}_cpu_rcv_stream=$(us_per $d2 "$got")"
	echo "$kind stream 2 (cpu): $(cat "$R/$kind.ctgen2")"
	echo "$kind cpu_us_per_entry stream: sender=$(us_per $d1 "$STREAM") receiver=$(us_per $d2 "$got") (ticks $d1/$d2, entries $STREAM/$got; net of the idle rate: $(net_us $d1 "$idle1" "$STREAM") / $(net_us $d2 "$idle2" "$got"))"

	# (2b) CPU: a burst as fast as ctgen goes.
	base=$(count "$kind" gw2 $f)
	c1=$(cpu_ticks "$pid1"); c2=$(cpu_ticks "$pid2")
	t0=$(date +%s.%N)
	lab_exec gw1 "$CTGEN" -n "$BURST" --offset $((2 * STREAM)) >"$R/$kind.ctgen3" ||
		die "ctgen failed: $(cat "$R/$kind.ctgen3")"
	wait_count "$kind" gw2 $f $((base + BURST)) "$(budget "$BURST")" 10 >/dev/null ||
		echo "$kind: the receiver did not get all of the burst"
	d1=$(($(cpu_ticks "$pid1") - c1)); d2=$(($(cpu_ticks "$pid2") - c2))
	t1=$(date +%s.%N)
	got=$(($(count "$kind" gw2 $f) - base))
	eval "${kind}_cpu_snd_burst=$(us_per $d1 "$BURST")"
	eval "${kind}_cpu_rcv_burst=$(us_per $d2 "$got")"
	echo "$kind burst: $(cat "$R/$kind.ctgen3")"
	echo "$kind cpu_us_per_entry burst: sender=$(us_per $d1 "$BURST") receiver=$(us_per $d2 "$got") replicate_s=$(calc "round($t1 - $t0, 3)") (ticks $d1/$d2, entries $BURST/$got; net of the idle rate: $(net_us $d1 "$idle1" "$BURST") / $(net_us $d2 "$idle2" "$got"))"
	n=$(count "$kind" gw2 $f)
	echo "$kind receiver rss_kb=$(rss_kb "$pid2") cached=$n bytes_per_flow=$(calc "round(($(rss_kb "$pid2") - $rss_idle) * 1024 / $n, 1)")"
	eval "${kind}_rss_idle=$rss_idle"
	stop_pair "$kind" flush
}

echo "# 1, 2: paced streams of $STREAM flows at $RATE/s (lag, then CPU), a burst of $BURST"
stream_phase uplinkd
stream_phase conntrackd

# --- 3 and 4: bulk resync, receiver memory ---
# shellcheck disable=SC2154	# uplinkd_rss_idle: set by stream_phase's eval
bulk_phase() {
	local n=$1 line t0 t1 pid1 pid2 before c1 c2 rss rss0 ms i cold resync crs
	lab_exec gw1 conntrack -F >/dev/null 2>&1
	line=$(lab_exec gw1 "$CTGEN" -n "$n") || die "ctgen -n $n failed: $line"
	echo "bulk N=$n: gw1's table filled without a listener: $line"

	# uplinkd: the sender learns the table from its dump; a receiver
	# started fresh gets it all in one bulk (BULK_REPEAT restarts).
	u_start gw1
	wait_count uplinkd gw1 own "$n" "$(budget "$n")" >/dev/null || die "uplinkd gw1 did not learn $n flows"
	pid1=$(pid_of uplinkd-gw1)
	cold=""
	for ((i = 1; i <= BULK_REPEAT; i++)); do
		before=$(uget gw1 'd["sync"]["bulks_completed"]')
		t0=$(date +%s.%N)
		u_start gw2
		wait_count uplinkd gw2 peer "$n" "$(budget "$n")" 5 >/dev/null ||
			echo "uplinkd: gw2 did not get $n flows"
		lab_wait_for "[ \$(uget gw1 'd[\"sync\"][\"bulks_completed\"]') -gt $before ]" 30 ||
			echo "uplinkd: gw1's bulk was not acknowledged"
		t1=$(date +%s.%N)
		ms=$(uget gw1 'd["sync"]["bulk_ms_last"]')
		cold="$cold $ms"
		pid2=$(pid_of uplinkd-gw2)
		if [ "$i" = 1 ]; then
			sleep 1
			rss=$(rss_kb "$pid2")
			eval "uplinkd_rss_$n=$rss"
		fi
		echo "uplinkd bulk N=$n (receiver restarted, cache empty) #$i: bulk_ms=$ms entries_per_s=$(calc "round($n * 1000 / max($ms, 1))") wall_from_receiver_start_s=$(calc "round($t1 - $t0, 3)")"
		[ "$i" = "$BULK_REPEAT" ] || lab_stop uplinkd-gw2
	done
	echo "uplinkd receiver N=$n: rss_kb=$rss idle_rss_kb=$uplinkd_rss_idle bytes_per_flow=$(calc "round(($rss - $uplinkd_rss_idle) * 1024 / $n, 1)")"
	resync=""
	for ((i = 1; i <= BULK_REPEAT; i++)); do
		before=$(uget gw1 'd["sync"]["bulks_completed"]')
		c1=$(cpu_ticks "$pid1"); c2=$(cpu_ticks "$pid2")
		lab_uplinkctl gw1 sync --resync >/dev/null || echo "uplinkd: resync refused"
		lab_wait_for "[ \$(uget gw1 'd[\"sync\"][\"bulks_completed\"]') -gt $before ]" "$(budget "$n")" ||
			echo "uplinkd: the operator's resync did not complete"
		ms=$(uget gw1 'd["sync"]["bulk_ms_last"]')
		resync="$resync $ms"
		echo "uplinkd resync N=$n (uplinkctl sync --resync, cache full) #$i: bulk_ms=$ms entries_per_s=$(calc "round($n * 1000 / max($ms, 1))") cpu_us_per_entry sender=$(us_per $(($(cpu_ticks "$pid1") - c1)) "$n") receiver=$(us_per $(($(cpu_ticks "$pid2") - c2)) "$n")"
	done
	# shellcheck disable=SC2086	# the lists are split on purpose
	eval "uplinkd_bulk_ms_$n=$(median_of $cold) uplinkd_resync_ms_$n=$(median_of $resync)"
	# shellcheck disable=SC2086
	eval "uplinkd_bulk_best_$n=$(min_of $cold) uplinkd_resync_best_$n=$(min_of $resync)"
	stop_pair uplinkd

	# conntrackd: the sender's startup dump fills its internal cache (it
	# does not send what it finds there); -B sends that cache.  Repeats
	# flush gw2's external cache first (-f external).
	c_start gw1
	wait_count conntrackd gw1 internal "$n" "$(budget "$n")" >/dev/null || die "conntrackd gw1 did not learn $n entries"
	c_start gw2
	c_handshake
	pid2=$(pid_of ctd-gw2)
	rss0=$(rss_kb "$pid2")
	crs=""
	for ((i = 1; i <= BULK_REPEAT; i++)); do
		[ "$i" = 1 ] || lab_exec gw2 conntrackd -C "$LAB_DIR/ctd-gw2.conf" -f external >/dev/null 2>&1
		before=$(count conntrackd gw2 external)
		t0=$(mono_us)
		lab_exec gw1 conntrackd -C "$LAB_DIR/ctd-gw1.conf" -B >/dev/null 2>&1 || echo "conntrackd -B failed"
		line=$(wait_count conntrackd gw2 external "$n" "$(budget "$n")" 5) ||
			echo "conntrackd: gw2 did not get $n entries"
		ms=$(calc "round(($(echo "$line" | kv t_us) - $t0) / 1e3)")
		crs="$crs $ms"
		if [ "$i" = 1 ]; then
			sleep 1
			rss=$(rss_kb "$pid2")
			eval "conntrackd_rss_$n=$rss conntrackd_rss_idle_$n=$rss0"
		fi
		echo "conntrackd bulk N=$n (-B, external cache empty, held $before) #$i: bulk_ms=$ms entries_per_s=$(calc "round($n * 1000 / max($ms, 1))")"
	done
	echo "conntrackd receiver N=$n: rss_kb=$rss idle_rss_kb=$rss0 bytes_per_flow=$(calc "round(($rss - $rss0) * 1024 / $n, 1)")"
	# shellcheck disable=SC2086
	eval "conntrackd_bulk_ms_$n=$(median_of $crs) conntrackd_bulk_best_$n=$(min_of $crs)"
	stop_pair conntrackd flush
}

echo "# 3, 4: bulk resync and receiver memory, N = $BULK_SIZES"
for n in $BULK_SIZES; do
	bulk_phase "$n"
done

# --- summary ---
ratio() { calc "round($1 / $2, 3) if $2 else float('nan')"; }
met() { calc "'yes' if $1 else 'no'"; }
nmax=$max_bulk
nmin=$(for n in $BULK_SIZES; do echo "$n"; done | sort -n | head -1)
eval "ubulk=\$uplinkd_bulk_ms_$nmax cbulk=\$conntrackd_bulk_ms_$nmax"
eval "urss=\$uplinkd_rss_$nmax crss=\$conntrackd_rss_$nmax crss0=\$conntrackd_rss_idle_$nmax"
# shellcheck disable=SC2154
{
u_bpf=$(calc "round(($urss - $uplinkd_rss_idle) * 1024 / $nmax, 1)")
c_bpf=$(calc "round(($crss - $crss0) * 1024 / $nmax, 1)")
echo
echo "# summary (ratio = uplinkd / conntrackd)"
printf '%-52s %14s %14s %8s %-16s %s\n' figure uplinkd conntrackd ratio target met
row() { printf '%-52s %14s %14s %8s %-16s %s\n' "$@"; }
row "lag p50 / p99 ms, peer cache, $RATE/s" "$uplinkd_lag_p50_ms / $uplinkd_lag_p99_ms" \
	"$conntrackd_lag_p50_ms / $conntrackd_lag_p99_ms" "$(ratio "$uplinkd_lag_p99_ms" "$conntrackd_lag_p99_ms")" \
	"p99 <= 10 ms" "$(met "$uplinkd_lag_p99_ms <= 10")"
row "lag p50 / p99 ms, uplinkd event -> ack" "$uplinkd_ack_p50 / $uplinkd_ack_p99" - - \
	"p99 <= 10 ms" "$(met "$uplinkd_ack_p99 <= 10")"
row "lag of the stream's last entry ms (tail)" "$uplinkd_lag_tail_ms" "$conntrackd_lag_tail_ms" \
	"$(ratio "$uplinkd_lag_tail_ms" "$conntrackd_lag_tail_ms")" - -
row "CPU us/entry sender, $RATE/s stream" "$uplinkd_cpu_snd_stream" "$conntrackd_cpu_snd_stream" \
	"$(ratio "$uplinkd_cpu_snd_stream" "$conntrackd_cpu_snd_stream")" "ratio <= 0.333" \
	"$(met "$uplinkd_cpu_snd_stream * 3 <= $conntrackd_cpu_snd_stream")"
row "CPU us/entry receiver, $RATE/s stream" "$uplinkd_cpu_rcv_stream" "$conntrackd_cpu_rcv_stream" \
	"$(ratio "$uplinkd_cpu_rcv_stream" "$conntrackd_cpu_rcv_stream")" "ratio <= 0.333" \
	"$(met "$uplinkd_cpu_rcv_stream * 3 <= $conntrackd_cpu_rcv_stream")"
row "CPU us/entry sender, burst" "$uplinkd_cpu_snd_burst" "$conntrackd_cpu_snd_burst" \
	"$(ratio "$uplinkd_cpu_snd_burst" "$conntrackd_cpu_snd_burst")" "ratio <= 0.333" \
	"$(met "$uplinkd_cpu_snd_burst * 3 <= $conntrackd_cpu_snd_burst")"
row "CPU us/entry receiver, burst" "$uplinkd_cpu_rcv_burst" "$conntrackd_cpu_rcv_burst" \
	"$(ratio "$uplinkd_cpu_rcv_burst" "$conntrackd_cpu_rcv_burst")" "ratio <= 0.333" \
	"$(met "$uplinkd_cpu_rcv_burst * 3 <= $conntrackd_cpu_rcv_burst")"
for n in $BULK_SIZES; do
	eval "ub=\$uplinkd_bulk_ms_$n cb=\$conntrackd_bulk_ms_$n ur=\$uplinkd_resync_ms_$n"
	eval "ubb=\$uplinkd_bulk_best_$n cbb=\$conntrackd_bulk_best_$n urb=\$uplinkd_resync_best_$n"
	ueps=$(calc "round($n * 1000 / max($ub, 1))"); ceps=$(calc "round($n * 1000 / max($cb, 1))")
	row "bulk entries/s, N=$n, median of $BULK_REPEAT (ms)" "$ueps ($ub)" "$ceps ($cb)" "$(ratio "$ueps" "$ceps")" \
		">= 1000000/s" "$(met "$ueps >= 1000000")"
	ueps=$(calc "round($n * 1000 / max($ubb, 1))"); ceps=$(calc "round($n * 1000 / max($cbb, 1))")
	row "  best of $BULK_REPEAT (ms)" "$ueps ($ubb)" "$ceps ($cbb)" "$(ratio "$ueps" "$ceps")" \
		">= 1000000/s" "$(met "$ueps >= 1000000")"
	row "  uplinkd resync into a full cache, median (ms)" "$(calc "round($n * 1000 / max($ur, 1))") ($ur)" - - - -
	row "  uplinkd resync into a full cache, best (ms)" "$(calc "round($n * 1000 / max($urb, 1))") ($urb)" - - - -
done
row "receiver RSS bytes per cached flow, N=$nmax" "$u_bpf" "$c_bpf" "$(ratio "$u_bpf" "$c_bpf")" \
	"<= 128 B" "$(met "$u_bpf <= 128")"
if [ "$nmin" != "$nmax" ]; then
	eval "ur0=\$uplinkd_rss_$nmin cr0=\$conntrackd_rss_$nmin"
	us=$(calc "round(($urss - $ur0) * 1024 / ($nmax - $nmin), 1)")
	cs=$(calc "round(($crss - $cr0) * 1024 / ($nmax - $nmin), 1)")
	row "  slope between N=$nmin and N=$nmax, bytes/flow" "$us" "$cs" "$(ratio "$us" "$cs")" - -
fi
echo "# conntrackd anchor (/work/shared/anchors, same kind of VM, other day): CPU/entry sender 9.9-12.0 us,"
echo "# receiver 7.1-8.2 us (unpaced ctgen, as 'burst' here); -B bulk 490-550k entries/s; 453 B per cached entry."
}
