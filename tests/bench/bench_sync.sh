#!/bin/bash
# Benchmark of flow-state replication between the two gateways of the
# namespace lab (tests/lab/lab.sh, two gateways): uplinkd's TLS sync
# against conntrackd (FT-FW over unicast UDP) as the baseline, the same
# workload through each in one run, never two daemons at once.  gw1 is
# the sender (its conntrack table is filled by tests/bench/ctgen, entries
# that look like uplinkd's own flows: TCP ESTABLISHED, SNAT, provider
# mark), gw2 the receiver, over the sync0 link 10.255.0.1 -> 10.255.0.2.
# gw1 is told `uplinkctl ha master` and gw2 `ha backup`, as keepalived
# would.  Prints figures, ratios to the baselines and the targets;
# asserts nothing about speed (the machine is shared).  The sync link
# itself is not conntracked (raw NOTRACK on sync0) for any daemon.
#
# The daemons ("kinds", KINDS):
#   uplinkd     the receiver keeps the peer's flows in its flow table
#               ("cache"); a build with hot standby also writes each one
#               into its kernel conntrack table (detected and measured:
#               "kernel" figures)
#   conntrackd  FT-FW, external cache: the baseline the targets use
#   ctdhs       conntrackd FT-FW with DisableExternalCache On: the backup
#               writes every entry into its kernel table as it arrives,
#               conntrackd's own hot standby; its "cache" is gw2's kernel
#               table.  The like-for-like baseline for a hot-standby
#               uplinkd
#
# What each figure means:
#  1. Replication lag at a steady RATE new flows/s (STREAM flows; ctgen
#     sends batches of 10 on an absolute schedule).
#     - peer-cache lag (every kind, the comparable figure): for entry i,
#       time from ctgen's sendmsg of its batch (the NEW event fires inside
#       it) to the first poll that shows the receiver's cache holding
#       >= i+1 entries (uplinkd: flows.peer; conntrackd: the external
#       cache; ctdhs and "kernel": nf_conntrack_count in gw2), through
#       the daemon's own control socket, every POLL_US (the median
#       interval is printed as the resolution; a poll costs ~0.1 ms).
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
#     probes, heartbeats; idle CPU rate printed).  Kernel work done in the
#     daemon's system calls (netlink creates of a hot standby) counts.
#  3. Bulk resync of N flows (BULK_SIZES), the receiver empty (daemon
#     fresh, gw2's conntrack table flushed): gw1's kernel table holds N
#     entries; the sender daemon starts and learns them (uplinkd from its
#     dump; conntrackd into its internal cache from its startup dump).
#     - uplinkd: bulk_ms = gw1's bulk_ms_last (BulkBegin queued to the
#       Ack of the BulkEnd, the peer having swept and acked); wall = from
#       the receiver's start to its cache (and kernel, with hot standby)
#       holding N: includes its start, the sender's redial backoff and the
#       TLS handshake.  Then `uplinkctl sync --resync` on gw1: a bulk into
#       a full cache.
#     - conntrackd / ctdhs: `conntrackd -B` on gw1, time until gw2's
#       external cache / kernel table holds N (polled every 5 ms; the
#       client's own start included).
#     Each is done BULK_REPEAT times (uplinkd: the receiver restarted each
#     time, then as many resyncs; conntrackd: gw2's external cache or
#     kernel table flushed before each -B); the summary shows the median
#     and the best (the machine is shared: the best is the capacity, the
#     median what a busy moment leaves of it).
#  4. RSS per cached flow on the receiver: (VmRSS with N cached, after the
#     first bulk - VmRSS of a fresh idle receiver) / N, and the slope
#     between the smallest and the largest N (removes fixed costs).
#     Kernel conntrack memory of a hot standby is not in any RSS.
#  5. With a hot standby: its kernel writes cost more here than on a node
#     of its own, because gw1's sender listens to conntrack NEW events and
#     the kernel's listener mask is machine-wide (see the phase).  The
#     factor between the two, measured with ctinject in gw2, scales the
#     receiver's kernel writes in an extra summary row (an estimate).
#
# Usage: tests/bench/bench_sync.sh     (as root, from the source tree)
# Env:   UPLINKD_BUILD (default _build/plain), KINDS ("uplinkd conntrackd
#        ctdhs"), RATE (10000), STREAM (100000), BURST (100000),
#        BULK_SIZES ("100000 1000000"), BULK_REPEAT (3), POLL_US (1000),
#        CTDHS_BULK_MAX (100000: conntrackd-hs bulks above it are skipped;
#        on this VM its 1M bulk had not completed after 115 s),
#        IDLE_WAIT (120 s to wait for a quiet machine), LAB_PREFIX (usb),
#        PERF (a directory: profile the daemons during the CPU runs),
#        PIN (SENDER:RECEIVER:CTGEN CPU lists, e.g. 0:1:0: the lag and
#        CPU phases run each kind's two daemons and ctgen on those CPUs;
#        unset, the scheduler places them, and the stream figures move
#        with where it puts them).
# 1M entries need nf_conntrack_max >= 1.25M in gw1 (and gw2 for a hot
# standby).  The script raises it when needed, and nf_conntrack_buckets
# with it (the kernel's pairing), and restores both at exit
# (tests/bench/ctsize.sh: the hash is one for all namespaces, and gw1's
# entries would lengthen the chains gw2's writes walk).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export UPLINKD_BUILD=${UPLINKD_BUILD:-$top/_build/plain}
export LAB_PREFIX=${LAB_PREFIX:-usb}
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"
# shellcheck source=tests/bench/conntrackd.sh
. "$top/tests/bench/conntrackd.sh"
# shellcheck source=tests/bench/ctsize.sh
. "$top/tests/bench/ctsize.sh"
KINDS=${KINDS:-"uplinkd conntrackd ctdhs"}
RATE=${RATE:-10000}
STREAM=${STREAM:-100000}
BURST=${BURST:-100000}
BULK_SIZES=${BULK_SIZES:-"100000 1000000"}
BULK_REPEAT=${BULK_REPEAT:-3}
POLL_US=${POLL_US:-1000}
IDLE_WAIT=${IDLE_WAIT:-120}
PIN=${PIN:-}
ctpin=""
CTDHS_BULK_MAX=${CTDHS_BULK_MAX:-100000}
B=$UPLINKD_BUILD/tests/bench
CTGEN=$B/ctgen
CTINJECT=$B/ctinject
SYNC_LAG=$top/tests/bench/sync_lag.py
HZ=$(getconf CLK_TCK)
R=$LAB_DIR/bench

die() { echo "bench_sync: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
for f in "$UPLINKD_BUILD/uplinkd" "$UPLINKD_BUILD/uplinkctl" "$CTGEN" "$CTINJECT"; do
	[ -x "$f" ] || die "$f not built (make && make check TESTS= in $UPLINKD_BUILD)"
done
for k in $KINDS; do
	case $k in uplinkd | conntrackd | ctdhs) ;; *) die "unknown kind $k" ;; esac
done
if ! command -v conntrackd >/dev/null 2>&1; then
	"$top/deploy/install-deps.sh" || die "could not install conntrackd"
fi

# --- state we change outside the lab (ctsize_raise), restored by cleanup ---
cleanup() {
	local n
	for n in poll listener uplinkd-gw1 uplinkd-gw2 ctd-gw1 ctd-gw2; do
		lab_stop "$n" >/dev/null 2>&1
	done
	# Netns deletion frees conntrack entries in a kworker after `ip netns
	# del` returns: flush first so that the next run is not disturbed.
	for n in gw1 gw2; do
		[ -e "/run/netns/$(lab_ns $n)" ] && lab_exec $n conntrack -F >/dev/null 2>&1
	done
	lab_down >/dev/null 2>&1
	ctsize_restore
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
v() { local x; eval "x=\${$1:-n/a}"; echo "$x"; }	# a result, n/a when unset
us_per() { calc "round(($1) * 1e6 / $HZ / ($2), 2) if ($2) > 0 else 'n/a'"; }	# ticks, entries
# net_us TICKS IDLE_US_PER_S ENTRIES: per entry after the idle rate over
# the interval t0..t1 (the caller's).
net_us() { calc "round((($1) * 1e6 / $HZ - $2 * ($t1 - $t0)) / ($3), 2) if ($3) > 0 else 'n/a'"; }
min_of() { printf '%s\n' "$@" | sort -n | head -1; }
median_of() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
mono_us() { python3 -c 'import time; print(time.monotonic_ns() // 1000)'; }
label() { case $1 in ctdhs) echo "conntrackd-hs" ;; *) echo "$1" ;; esac; }
# Per kind: pid-file prefix, the sender's learned field, the receiver's
# cache field.
pfx() { if [ "$1" = uplinkd ]; then echo uplinkd-; else echo ctd-; fi; }
sfield() { if [ "$1" = uplinkd ]; then echo own; else echo internal; fi; }
rfield() {
	case $1 in uplinkd) echo peer ;; conntrackd) echo external ;; ctdhs) echo kernel ;; esac
}
# src KIND GW: the daemon's control socket, as sync_lag.py options.
src() {
	if [ "$1" = uplinkd ]; then echo "--uplinkd $LAB_DIR/$2.sock"; else echo "--conntrackd $LAB_DIR/ctd-$2.ctl"; fi
}
# count KIND GW FIELD; wait_count KIND GW FIELD TARGET TIMEOUT [INTERVAL_MS]
# (inside GW's netns: the kernel field is that netns's conntrack count)
# shellcheck disable=SC2046	# src's words are split on purpose
count() { lab_exec "$2" python3 "$SYNC_LAG" count $(src "$1" "$2") --field "$3"; }
# shellcheck disable=SC2046
wait_count() {
	lab_exec "$2" python3 "$SYNC_LAG" wait $(src "$1" "$2") --field "$3" \
		--target "$4" --timeout "$5" --interval-ms "${6:-20}"
}
kcount() { lab_exec "$1" cat /proc/sys/net/netfilter/nf_conntrack_count; }
# uplinkd's CPU milliseconds in its conntrack writes so far.
kw_cpu_ms() {
	lab_uplinkctl "$1" --json status |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["kernel_writes"]["cpu_ms"])'
}
# uget GW EXPR: a value out of `uplinkctl --json sync` on GW.
uget() {
	lab_uplinkctl "$1" --json sync 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}
# Seconds to allow for N entries to move (at >= 40k/s, what a hot standby
# manages) plus slack; sbudget: the same for the paced stream.
budget() { echo $((15 + $1 / 40000)); }
sbudget() { echo $((15 + STREAM / RATE)); }

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

# conntrackd_config gwN KIND: conntrackd (external cache) or ctdhs (hot
# standby), TCP only.
conntrackd_config() {
	local dis=Off
	[ "$2" = ctdhs ] && dis=On
	ctd_write_config "$LAB_DIR/$2-$1.conf" "$1" "$dis" TCP
}

# Daemon control.  A node's role is set as keepalived's notify would.
u_start() {	# u_start gwN master|backup
	lab_uplinkd_start "$1" || die "uplinkd on $1 did not start"
	lab_wait_for "lab_uplinkctl $1 status" 20 || die "uplinkd on $1 does not answer"
	# As keepalived would: the addresses first (uplinkd refuses a master
	# role without them).
	if [ "$2" = master ]; then lab_vip_add "$1" || die "addresses on $1"; fi
	lab_uplinkctl "$1" ha "$2" >/dev/null || die "uplinkctl ha $2 on $1 failed"
}
u_in_sync() { [ "$(uget "$1" 'd["in_sync"]')" = True ]; }
c_start() {	# c_start gwN KIND
	lab_start_bg "$1" "ctd-$1" conntrackd -C "$LAB_DIR/$2-$1.conf" ||
		die "conntrackd on $1 did not start"
	lab_wait_for "count conntrackd $1 internal" 20 || die "conntrackd on $1 does not answer"
}
# Both sides have heard >= 2 sync messages (HELLO/ALIVE): see the anchor's
# pitfall 5; UDP gets the same wait.
c_handshake() {
	wait_count conntrackd gw1 udp_rx 2 15 >/dev/null || die "conntrackd gw1 heard no HELLO"
	wait_count conntrackd gw2 udp_rx 2 15 >/dev/null || die "conntrackd gw2 heard no HELLO"
}
pair_up() {
	if [ "$1" = uplinkd ]; then
		u_start gw2 backup
		u_start gw1 master
		lab_wait_for "u_in_sync gw1 && u_in_sync gw2" 30 || die "uplinkd pair not in sync"
	else
		c_start gw2 "$1"
		c_start gw1 "$1"
		c_handshake
	fi
}
flush() {	# flush gwN...: empty the nodes' conntrack tables
	local gw
	for gw in "$@"; do
		lab_exec "$gw" conntrack -F >/dev/null 2>&1
		lab_wait_for "[ \$(kcount $gw) -eq 0 ]" 30 || echo "$gw: conntrack table not empty"
	done
}
stop_pair() {	# stop_pair KIND: then both tables are emptied
	lab_stop "$(pfx "$1")gw2"
	lab_stop "$(pfx "$1")gw1"
	flush gw1 gw2
}

# --- setup ---
cleanup
max_bulk=0
for n in $BULK_SIZES; do [ "$n" -gt "$max_bulk" ] && max_bulk=$n; done
need=$((max_bulk * 5 / 4 + 1024))
[ $((2 * STREAM + BURST)) -gt "$need" ] && need=$((2 * STREAM + BURST + 1024))
ctsize_raise "$need" "$need" || die "cannot size the conntrack table for $need entries"
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
	conntrackd_config $gw conntrackd
	conntrackd_config $gw ctdhs
done
echo "# bench_sync: $(uname -r), $(nproc) CPUs, $(conntrackd -v 2>&1 | head -1 | cut -d. -f1-3)," \
	"uplinkd $(git -C "$top" describe --always --dirty 2>/dev/null)," \
	"nf_conntrack_max=$(cat $ctsize_max) buckets=$(cat $ctsize_buckets)," \
	"bg_busy_pct=$bg"

# lag_of KIND TAG COLUMN BASE: the peer-cache lag of the last stream from
# column COLUMN of the poll file; sets KIND_lag_TAG_{p50,p99,max,tail}_ms.
lag_of() {
	local kind=$1 tag=$2 line k
	line=$(python3 "$SYNC_LAG" lag --stamps "$R/$kind.stamps" --polls "$R/$kind.polls" \
		--base "$4" --column "$3")
	echo "$(label "$kind") $tag lag: $line"
	for k in p50_ms p99_ms max_ms tail_ms; do
		eval "${kind}_lag_${tag}_$k=$(echo "$line" | kv $k | grep . || echo n/a)"
	done
}

# --- 1 and 2: streams and burst, per daemon ---
# PERF=DIR: a call-graph profile of each daemon during each CPU run, in
# DIR/TAG.{sender,receiver}.data (perf's own cost then counts in the
# figures: for finding where the time goes, not for the table).
perf_pids=""
perf_start() {	# perf_start TAG SENDER_PID RECEIVER_PID
	[ -n "${PERF:-}" ] || return 0
	mkdir -p "$PERF"
	perf record -q -g -o "$PERF/$1.sender.data" -p "$2" >/dev/null 2>&1 &
	perf_pids="$!"
	perf record -q -g -o "$PERF/$1.receiver.data" -p "$3" >/dev/null 2>&1 &
	perf_pids="$perf_pids $!"
	sleep 0.5
}
perf_stop() {
	local p
	for p in $perf_pids; do kill -INT "$p" 2>/dev/null; done
	for p in $perf_pids; do wait "$p" 2>/dev/null; done
	perf_pids=""
}
stream_phase() {
	local kind=$1 f snd rcv base kbase pid1 pid2 c1 c2 d1 d2 t0 t1 got n rss_idle idle1 idle2 kw0 kw
	local fields hs=0 lbl line run w
	lbl=$(label "$kind")
	pair_up "$kind"
	snd=$(pfx "$kind")gw1; rcv=$(pfx "$kind")gw2; f=$(rfield "$kind")
	pid1=$(pid_of "$snd"); pid2=$(pid_of "$rcv")
	if [ -n "$PIN" ]; then
		IFS=: read -r pin_snd pin_rcv pin_gen <<<"$PIN"
		taskset -a -p -c "$pin_snd" "$pid1" >/dev/null || die "taskset $pin_snd $pid1"
		taskset -a -p -c "$pin_rcv" "$pid2" >/dev/null || die "taskset $pin_rcv $pid2"
		ctpin="taskset -c $pin_gen"
	fi
	sleep 1
	rss_idle=$(rss_kb "$pid2")
	c1=$(cpu_ns "$pid1"); c2=$(cpu_ns "$pid2")
	sleep 5
	idle1=$(calc "round(($(cpu_ns "$pid1") - $c1) / 1e3 / 5)")
	idle2=$(calc "round(($(cpu_ns "$pid2") - $c2) / 1e3 / 5)")
	echo "$lbl idle: rss_receiver_kb=$rss_idle cpu_us_per_s sender=$idle1 receiver=$idle2"
	eval "${kind}_rss_idle=$rss_idle"

	# (1) lag: a paced stream with the poller on the receiver (uplinkd:
	# its cache and, for a hot standby, gw2's kernel table).
	fields=$f
	[ "$kind" = uplinkd ] && fields=peer,kernel
	base=$(count "$kind" gw2 "$f"); kbase=$(kcount gw2)
	rm -f "$R/$kind.polls"
	# shellcheck disable=SC2046
	lab_start_bg gw2 poll python3 "$SYNC_LAG" poll $(src "$kind" gw2) --field "$fields" \
		--target $((base + STREAM)) --timeout "$(sbudget)" --linger 3 \
		--interval-us "$POLL_US" --out "$R/$kind.polls" || die "poller"
	lab_wait_for "[ -s $R/$kind.polls ]" 10
	lab_exec gw1 $ctpin "$CTGEN" -n "$STREAM" -b 10 --rate "$RATE" --stamps "$R/$kind.stamps" \
		>"$R/$kind.ctgen1" || die "ctgen failed: $(cat "$R/$kind.ctgen1")"
	lab_wait_for "! kill -0 $(pid_of poll) 2>/dev/null" "$(sbudget)"
	lab_stop poll
	echo "$lbl stream 1 (lag): $(cat "$R/$kind.ctgen1")"
	lag_of "$kind" cache 1 "$base"
	if [ "$kind" = uplinkd ]; then
		if [ "$(kcount gw2)" -ge $((kbase + STREAM)) ]; then
			hs=1
			lag_of uplinkd kernel 2 "$kbase"
		else
			echo "uplinkd: no hot standby (gw2's kernel table did not grow)"
		fi
		uplinkd_hs=$hs
		line=$(uget gw1 '"p50_ms=%s p99_ms=%s samples=%s overflows=%s" % (d["sync"]["lag_p50_ms"], d["sync"]["lag_p99_ms"], d["sync"]["lag_samples"], d["sync"]["overflows"])')
		echo "uplinkd own lag (event -> ack, gw1): $line"
		# shellcheck disable=SC2034	# read through v() in the summary
		uplinkd_ack_p50=$(echo "$line" | kv p50_ms)
		# shellcheck disable=SC2034
		uplinkd_ack_p99=$(echo "$line" | kv p99_ms)
	fi

	# (2) CPU: a second paced stream and a burst, no poller.
	for run in stream burst; do
		base=$(count "$kind" gw2 "$f"); kbase=$(kcount gw2)
		c1=$(cpu_ticks "$pid1"); c2=$(cpu_ticks "$pid2")
		[ "$kind" = uplinkd ] && kw0=$(kw_cpu_ms gw2)
		perf_start "$kind.$run" "$pid1" "$pid2"
		t0=$(date +%s.%N)
		if [ $run = stream ]; then
			n=$STREAM
			lab_exec gw1 $ctpin "$CTGEN" -n "$n" -b 10 --rate "$RATE" --offset "$STREAM" \
				>"$R/$kind.ctgen.$run" || die "ctgen failed: $(cat "$R/$kind.ctgen.$run")"
		else
			n=$BURST
			lab_exec gw1 $ctpin "$CTGEN" -n "$n" --offset $((2 * STREAM)) \
				>"$R/$kind.ctgen.$run" || die "ctgen failed: $(cat "$R/$kind.ctgen.$run")"
		fi
		[ $run = stream ] && w=$(sbudget) || w=$(budget "$n")
		wait_count "$kind" gw2 "$f" $((base + n)) "$w" 10 >/dev/null ||
			echo "$lbl: the receiver's cache did not get all of the $run ($(($(count "$kind" gw2 "$f") - base)) of $n)"
		[ "$hs" = 1 ] && { lab_wait_for "[ \$(kcount gw2) -ge $((kbase + n)) ]" "$(budget "$n")" ||
			echo "uplinkd: gw2's kernel did not get all of the $run"; }
		d1=$(($(cpu_ticks "$pid1") - c1)); d2=$(($(cpu_ticks "$pid2") - c2))
		t1=$(date +%s.%N)
		perf_stop
		got=$(($(count "$kind" gw2 "$f") - base))
		eval "${kind}_cpu_snd_$run=$(us_per $d1 "$n")"
		eval "${kind}_cpu_rcv_$run=$(us_per $d2 "$got")"
		if [ "$kind" = uplinkd ]; then
			# The receiver's own share: its CPU less the time the
			# kernel spent in its conntrack writes (hot standby).
			kw=$(calc "$(kw_cpu_ms gw2) - $kw0")
			eval "uplinkd_kw_us_$run=$(calc "round($kw * 1e3 / $got, 2) if $got > 0 else 'n/a'")"
			eval "uplinkd_cpu_rsy_$run=$(calc "round(($d2 * 1e6 / $HZ - $kw * 1e3) / $got, 2) if $got > 0 else 'n/a'")"
			echo "uplinkd $run: receiver kernel writes ${kw} ms of CPU, the rest $(v "uplinkd_cpu_rsy_$run") us/entry"
		fi
		echo "$lbl $run: $(cat "$R/$kind.ctgen.$run")"
		echo "$lbl cpu_us_per_entry $run: sender=$(us_per $d1 "$n") receiver=$(us_per $d2 "$got") replicate_s=$(calc "round($t1 - $t0, 3)") (ticks $d1/$d2, entries $n/$got; net of the idle rate: $(net_us $d1 "$idle1" "$n") / $(net_us $d2 "$idle2" "$got"))"
	done
	n=$(count "$kind" gw2 "$f")
	if [ "$kind" = uplinkd ]; then
		echo "uplinkd receiver after the phase: $(lab_uplinkctl gw2 --json status | python3 -c 'import json,sys; d=json.load(sys.stdin); print("role=%s flows=%s" % (d["role"], d["flows"]))') kernel=$(kcount gw2)"
	fi
	echo "$lbl receiver rss_kb=$(rss_kb "$pid2") cached=$n bytes_per_flow=$(calc "round(($(rss_kb "$pid2") - $rss_idle) * 1024 / $n, 1) if $n > 0 else 'n/a'")"
	stop_pair "$kind"
}

echo "# 1, 2: paced streams of $STREAM flows at $RATE/s (lag, then CPU), a burst of $BURST"
uplinkd_hs=0
for kind in $KINDS; do
	stream_phase "$kind"
done

# --- 3 and 4: bulk resync, receiver memory ---
# shellcheck disable=SC2154	# uplinkd_rss_idle: set by stream_phase's eval
bulk_uplinkd() {
	local n=$1 t0 t1 pid1 pid2 before c1 c2 rss ms i cold="" resync="" w
	u_start gw1 master
	wait_count uplinkd gw1 own "$n" "$(budget "$n")" >/dev/null || die "uplinkd gw1 did not learn $n flows"
	pid1=$(pid_of uplinkd-gw1)
	for ((i = 1; i <= BULK_REPEAT; i++)); do
		before=$(uget gw1 'd["sync"]["bulks_completed"]')
		t0=$(date +%s.%N)
		u_start gw2 backup
		wait_count uplinkd gw2 peer "$n" "$(budget "$n")" 5 >/dev/null ||
			echo "uplinkd: gw2's cache did not get $n flows: $(lab_uplinkctl gw2 --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["flows"])')"
		lab_wait_for "[ \$(uget gw1 'd[\"sync\"][\"bulks_completed\"]') -gt $before ]" 30 ||
			echo "uplinkd: gw1's bulk was not acknowledged"
		t1=$(date +%s.%N)
		w="wall_from_receiver_start_s=$(calc "round($t1 - $t0, 3)")"
		if [ "$uplinkd_hs" = 1 ]; then
			lab_wait_for "[ \$(kcount gw2) -ge $n ]" "$(budget "$n")" ||
				echo "uplinkd: gw2's kernel did not get $n flows ($(kcount gw2))"
			w="$w kernel_from_receiver_start_s=$(calc "round($(date +%s.%N) - $t0, 3)")"
		fi
		ms=$(uget gw1 'd["sync"]["bulk_ms_last"]')
		cold="$cold $ms"
		pid2=$(pid_of uplinkd-gw2)
		if [ "$i" = 1 ]; then
			sleep 1
			rss=$(rss_kb "$pid2")
			eval "uplinkd_rss_$n=$rss"
		fi
		echo "uplinkd bulk N=$n (receiver restarted, empty) #$i: bulk_ms=$ms entries_per_s=$(calc "round($n * 1000 / max($ms, 1))") $w"
		if [ "$i" != "$BULK_REPEAT" ]; then
			lab_stop uplinkd-gw2
			flush gw2
		fi
	done
	echo "uplinkd receiver N=$n: rss_kb=$rss idle_rss_kb=$uplinkd_rss_idle bytes_per_flow=$(calc "round(($rss - $uplinkd_rss_idle) * 1024 / $n, 1)")"
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
	echo "uplinkd receiver after the resyncs: $(lab_uplinkctl gw2 --json status | python3 -c 'import json,sys; d=json.load(sys.stdin); print("flows=%s" % d["flows"])') kernel=$(kcount gw2); gw1: $(uget gw1 '"conflicts=%s" % d["sync"]["conflicts"]')"
	# shellcheck disable=SC2086	# the lists are split on purpose
	eval "uplinkd_bulk_ms_$n=$(median_of $cold) uplinkd_resync_ms_$n=$(median_of $resync)"
	# shellcheck disable=SC2086
	eval "uplinkd_bulk_best_$n=$(min_of $cold) uplinkd_resync_best_$n=$(min_of $resync)"
	lab_stop uplinkd-gw2
	lab_stop uplinkd-gw1
	flush gw2
}

# conntrackd: the sender's startup dump fills its internal cache (it does
# not send what it finds there); -B sends that cache.
bulk_conntrackd() {
	local kind=$1 n=$2 f line t0 pid2 rss rss0 ms i crs="" lbl
	lbl=$(label "$kind"); f=$(rfield "$kind")
	c_start gw1 "$kind"
	wait_count conntrackd gw1 internal "$n" "$(budget "$n")" >/dev/null || die "conntrackd gw1 did not learn $n entries"
	c_start gw2 "$kind"
	c_handshake
	pid2=$(pid_of ctd-gw2)
	rss0=$(rss_kb "$pid2")
	for ((i = 1; i <= BULK_REPEAT; i++)); do
		if [ "$i" -gt 1 ] && [ "$kind" = ctdhs ]; then
			# Flushed while stopped: a running conntrackd would replicate
			# the deletions to gw1's kernel.
			lab_stop ctd-gw2
			flush gw2
			c_start gw2 "$kind"
			c_handshake
			pid2=$(pid_of ctd-gw2)
		elif [ "$i" -gt 1 ]; then
			lab_exec gw2 conntrackd -C "$LAB_DIR/$kind-gw2.conf" -f external >/dev/null 2>&1
		fi
		t0=$(mono_us)
		lab_exec gw1 conntrackd -C "$LAB_DIR/$kind-gw1.conf" -B >/dev/null 2>&1 || echo "conntrackd -B failed"
		line=$(wait_count "$kind" gw2 "$f" "$n" "$(budget "$n")" 5) ||
			echo "$lbl: gw2 did not get $n entries in $(budget "$n") s ($(count "$kind" gw2 "$f"))"
		ms=$(calc "round(($(echo "$line" | kv t_us) - $t0) / 1e3)")
		crs="$crs $ms"
		if [ "$i" = 1 ]; then
			sleep 1
			rss=$(rss_kb "$pid2")
			eval "${kind}_rss_$n=$rss ${kind}_rss_idle_$n=$rss0"
		fi
		echo "$lbl bulk N=$n (-B, gw2's $f emptied) #$i: bulk_ms=$ms entries_per_s=$(calc "round($n * 1000 / max($ms, 1))")"
	done
	echo "$lbl receiver N=$n: rss_kb=$rss idle_rss_kb=$rss0 bytes_per_flow=$(calc "round(($rss - $rss0) * 1024 / $n, 1)")"
	# shellcheck disable=SC2086
	eval "${kind}_bulk_ms_$n=$(median_of $crs) ${kind}_bulk_best_$n=$(min_of $crs)"
	lab_stop ctd-gw2
	lab_stop ctd-gw1
	flush gw2
}

echo "# 3, 4: bulk resync and receiver memory, N = $BULK_SIZES"
for n in $BULK_SIZES; do
	flush gw1 gw2
	line=$(lab_exec gw1 "$CTGEN" -n "$n") || die "ctgen -n $n failed: $line"
	echo "bulk N=$n: gw1's table filled without a listener: $line"
	for kind in $KINDS; do
		if [ "$kind" = ctdhs ] && [ "$n" -gt "$CTDHS_BULK_MAX" ]; then
			echo "conntrackd-hs bulk N=$n: skipped (CTDHS_BULK_MAX=$CTDHS_BULK_MAX)"
			continue
		fi
		if [ "$kind" = uplinkd ]; then bulk_uplinkd "$n"; else bulk_conntrackd "$kind" "$n"; fi
		if [ "$(kcount gw1)" -lt "$n" ]; then
			echo "bulk N=$n: gw1's table lost entries under $(label "$kind") ($(kcount gw1) of $n): refilled"
			lab_exec gw1 "$CTGEN" -n "$n" >/dev/null
		fi
	done
done
flush gw1 gw2

# --- 5: what the shared kernel adds to a hot standby's writes ---
# The kernel builds a conntrack NEW event for each create while any socket
# on the machine listens to the group: the listener mask is per netlink
# protocol, not per namespace.  uplinkd's receiver leaves the group for its
# writes, but gw1's sender listens (it must), so in this lab every write in
# gw2 also builds an event no one there receives; on a node of its own it
# would not.  ctinject (the daemon's ct module, as hot standby uses it) in
# gw2, without and with a NEW listener in gw1, alternating; the slice is the
# flows per loop iteration (10: the paced stream's batches; 1024: a burst).
# Gives the factor that turns the lab's kernel writes into a node's own.
kernel_share_phase() {
	local slice n=50000 i where line secs a b alone shared
	for slice in 10 1024; do
		alone="" shared=""
		for ((i = 1; i <= 3; i++)); do
			for where in alone shared; do
				flush gw2
				if [ $where = shared ]; then
					lab_start_bg gw1 listener conntrack -E -e NEW || die "conntrack -E in gw1"
					sleep 0.5
				fi
				line=$(lab_exec gw2 "$CTINJECT" -c "$LAB_DIR/gw2.yaml" -n $n --slice $slice 2>&1) ||
					die "ctinject in gw2 failed: $line"
				secs=$(echo "$line" | kv seconds)
				if [ $where = shared ]; then
					lab_stop listener
					shared="$shared $secs"
				else
					alone="$alone $secs"
				fi
			done
		done
		# shellcheck disable=SC2086	# the lists are split on purpose
		a=$(median_of $alone); b=$(median_of $shared)
		echo "kernel writes, slice $slice: ctinject n=$n us/entry alone=$(calc "round($a * 1e6 / $n, 2)") with a NEW listener in gw1=$(calc "round($b * 1e6 / $n, 2)") (median of 3; seconds alone:$alone, shared:$shared)"
		eval "kw_factor_$slice=$(calc "round($a / $b, 3)")"
	done
	flush gw2
}
if [ "$uplinkd_hs" = 1 ]; then
	echo "# 5: the shared kernel's share of the hot standby's writes"
	kernel_share_phase
fi

# --- summary ---
has() { case " $KINDS " in *" $1 "*) return 0 ;; esac; return 1; }
ratio() { calc "round($1 / $2, 3) if '$1' != 'n/a' and '$2' != 'n/a' and float('$2') else 'n/a'"; }
met() { calc "'n/a' if 'n/a' in '$1' else ('yes' if $1 else 'no')"; }
eps() { calc "round($1 * 1000 / max($2, 1)) if '$2' != 'n/a' else 'n/a'"; }
bpf() { calc "round(($2 - $3) * 1024 / $1, 1) if 'n/a' not in '$2$3' else 'n/a'"; }
nmax=$max_bulk
nmin=$(for n in $BULK_SIZES; do echo "$n"; done | sort -n | head -1)
row() { printf '%-46s %15s %15s %7s %15s %7s %-14s %s\n' "$@"; }
echo
echo "# summary: ratio = uplinkd / conntrackd (FT-FW, external cache; the targets' baseline),"
echo "# ratio-hs = uplinkd / conntrackd-hs (DisableExternalCache: writes into the backup's kernel)"
row figure uplinkd conntrackd ratio conntrackd-hs ratio-hs target met
x=$(v uplinkd_lag_cache_p99_ms)
row "lag p50/p99 ms, receiver cache, $RATE/s" "$(v uplinkd_lag_cache_p50_ms)/$x" \
	"$(v conntrackd_lag_cache_p50_ms)/$(v conntrackd_lag_cache_p99_ms)" \
	"$(ratio "$x" "$(v conntrackd_lag_cache_p99_ms)")" \
	"$(v ctdhs_lag_cache_p50_ms)/$(v ctdhs_lag_cache_p99_ms)" \
	"$(ratio "$x" "$(v ctdhs_lag_cache_p99_ms)")" "p99 <= 10 ms" "$(met "$x <= 10")"
if [ "$uplinkd_hs" = 1 ]; then
	x=$(v uplinkd_lag_kernel_p99_ms)
	row "lag p50/p99 ms, receiver kernel (hot standby)" "$(v uplinkd_lag_kernel_p50_ms)/$x" - - \
		"$(v ctdhs_lag_cache_p50_ms)/$(v ctdhs_lag_cache_p99_ms)" \
		"$(ratio "$x" "$(v ctdhs_lag_cache_p99_ms)")" "p99 <= 10 ms" "$(met "$x <= 10")"
fi
row "lag p50/p99 ms, uplinkd event -> ack" "$(v uplinkd_ack_p50)/$(v uplinkd_ack_p99)" - - - - \
	"p99 <= 10 ms" "$(met "$(v uplinkd_ack_p99) <= 10")"
row "lag ms of the stream's last entry (tail)" "$(v uplinkd_lag_cache_tail_ms)" \
	"$(v conntrackd_lag_cache_tail_ms)" "$(ratio "$(v uplinkd_lag_cache_tail_ms)" "$(v conntrackd_lag_cache_tail_ms)")" \
	"$(v ctdhs_lag_cache_tail_ms)" "$(ratio "$(v uplinkd_lag_cache_tail_ms)" "$(v ctdhs_lag_cache_tail_ms)")" - -
for run in stream burst; do
	for side in snd rcv; do
		u=$(v "uplinkd_cpu_${side}_$run"); c=$(v "conntrackd_cpu_${side}_$run"); h=$(v "ctdhs_cpu_${side}_$run")
		row "CPU us/entry $([ $side = snd ] && echo sender || echo receiver), $([ $run = stream ] && echo "$RATE/s stream" || echo burst)" \
			"$u" "$c" "$(ratio "$u" "$c")" "$h" "$(ratio "$u" "$h")" "ratio <= 0.333" \
			"$(met "$(ratio "$u" "$c") <= 1 / 3")"
	done
	if [ "$uplinkd_hs" = 1 ]; then
		u=$(v "uplinkd_cpu_rsy_$run"); c=$(v "conntrackd_cpu_rcv_$run")
		row "  receiver less its kernel writes, $([ $run = stream ] && echo "$RATE/s stream" || echo burst)" \
			"$u" "$c" "$(ratio "$u" "$c")" - - "ratio <= 0.333" "$(met "$(ratio "$u" "$c") <= 1 / 3")"
		f=$(v "kw_factor_$([ $run = stream ] && echo 10 || echo 1024)")
		u=$(calc "round($u + $(v "uplinkd_kw_us_$run") * $f, 2) if 'n/a' not in '$u$f$(v "uplinkd_kw_us_$run")' else 'n/a'")
		row "  receiver, writes as on a node of its own (x$f)" \
			"$u" "$c" "$(ratio "$u" "$c")" - - "ratio <= 0.333" "$(met "$(ratio "$u" "$c") <= 1 / 3")"
	fi
done
for n in $BULK_SIZES; do
	for stat in ms best; do
		u=$(eps "$n" "$(v "uplinkd_bulk_${stat}_$n")"); c=$(eps "$n" "$(v "conntrackd_bulk_${stat}_$n")")
		h=$(eps "$n" "$(v "ctdhs_bulk_${stat}_$n")")
		row "bulk entries/s, N=$n, $([ $stat = ms ] && echo "median of $BULK_REPEAT" || echo best)" \
			"$u" "$c" "$(ratio "$u" "$c")" "$h" "$(ratio "$u" "$h")" ">= 1000000/s" "$(met "$u >= 1000000")"
	done
	row "  uplinkd resync into a full cache, median/best" \
		"$(eps "$n" "$(v "uplinkd_resync_ms_$n")")/$(eps "$n" "$(v "uplinkd_resync_best_$n")")" - - - - - -
done
u=$(bpf "$nmax" "$(v "uplinkd_rss_$nmax")" "$(v uplinkd_rss_idle)")
c=$(bpf "$nmax" "$(v "conntrackd_rss_$nmax")" "$(v "conntrackd_rss_idle_$nmax")")
h=$(bpf "$nmax" "$(v "ctdhs_rss_$nmax")" "$(v "ctdhs_rss_idle_$nmax")")
row "receiver RSS bytes per cached flow, N=$nmax" "$u" "$c" "$(ratio "$u" "$c")" "$h" - "<= 128 B" "$(met "$u <= 128")"
if [ "$nmin" != "$nmax" ]; then
	u=$(calc "round(($(v "uplinkd_rss_$nmax") - $(v "uplinkd_rss_$nmin")) * 1024 / ($nmax - $nmin), 1)" 2>/dev/null || echo n/a)
	c=$(calc "round(($(v "conntrackd_rss_$nmax") - $(v "conntrackd_rss_$nmin")) * 1024 / ($nmax - $nmin), 1)" 2>/dev/null || echo n/a)
	row "  slope N=$nmin..$nmax, bytes/flow" "$u" "$c" "$(ratio "$u" "$c")" - - - -
fi
has ctdhs && echo "# conntrackd-hs holds no cache of its own (its entries are kernel memory, not RSS)."
[ "$uplinkd_hs" = 1 ] && echo "# uplinkd is a hot standby here: its receiver also writes every flow into gw2's kernel."
echo "# conntrackd anchor (/work/shared/anchors, same kind of VM, other day): CPU/entry sender 9.9-12.0 us,"
echo "# receiver 7.1-8.2 us (unpaced ctgen, as 'burst' here); -B bulk 490-550k entries/s; 453 B per cached entry."
