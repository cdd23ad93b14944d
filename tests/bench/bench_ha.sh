#!/bin/bash
# Benchmark of the takeover (issue 4, "Benchmark"): uplinkd against a plain
# conntrackd + keepalived pair in the two-gateway namespace lab
# (tests/lab/lab.sh), one daemon at a time.  Prints figures, ratios to
# the baselines and whether each target is met; asserts nothing about
# speed (the machine is shared and noisy).
#
# Part 1, kernel inject rate for each N in SIZES (entries as ctgen makes
# them: TCP ESTABLISHED, SNAT to a provider address and port, provider
# mark), always into gw2's table with gw1's empty (the conntrack hash is
# shared by all namespaces, so a full neighbour slows creates down):
#   raw        ctgen, batches of 256 creates, no event listener: the
#              kernel's limit
#   raw+ev     ctgen --listen: the same with a conntrack event listener
#              present (every create then also builds an event), as for
#              any daemon that follows the table
#   uplinkd    tests/bench/ctinject: the daemon's ct module and flow table,
#              ct_write_upsert() in its batching inside its event loop,
#              which reads back the events of its own writes (what a hot
#              standby does with each replicated flow); timed until the
#              kernel acknowledged every entry.  Also "takeover check":
#              the same N again, update first (the new master's check of
#              the adopted flows over a table hot standby filled)
#   uplinkd e2e  the real daemons: gw1 (master) holds N in its kernel,
#              gw2 (backup, empty) starts; from gw2's start until its
#              kernel holds N (sync bulk + hot standby; includes start-up
#              and the TLS handshake); gw1's bulk_ms is printed too
#   conntrackd `conntrackd -c` on gw2 committing N entries from its
#              external cache (filled by -B from gw1, whose conntrackd is
#              then stopped and table emptied), the call's wall time
#
# Part 2, kill-mode drills (KILL=daemon: kill -9 of the daemon on the
# active node while keepalived keeps running, which then learns of it from
# uplinkd's guard, or for conntrackd from its liveness script; KILL=both:
# kill -9 of the daemon and keepalived, the issue's kill mode, whose VRRP
# child then steps down), the roles alternating (nopreempt: the killed node is
# restored, resyncs and stays backup; the next drill kills the other
# one).  Long-lived TCP connections and UDP flows (labtraffic long, RATE
# records/s each) run through the pair from the client to the server.
#   takeover   failure (the kill) -> the three VIPs up on the new master
#              (`ip -ts monitor address` on both gateways) and its flows
#              in its kernel: uplinkd: hot standby had them there before
#              the failure (checked: nf_conntrack_count of the standby
#              >= the flows), so the end is the VIPs; its check of the
#              adopted flows ("takeover: ... checked in the kernel" in
#              its log) is printed as check_ms and counts only when the
#              standby's kernel was short; conntrackd: the later of the
#              VIPs and the end of `conntrackd -c` in the notify script
#   stall      per connection, the longest time between two echoes as the
#              client sees it in the drill window (labtraffic long
#              --stats: SIGUSR2 1 s before the kill, SIGUSR1 SETTLE s
#              after the takeover); a connection still stalled then
#              counts with its stall so far.  The record interval
#              (1000/RATE ms) is the floor.
#   broken     TCP connections the client saw break in the window, and at
#              the server: connections reset and flows whose source IP:port
#              changed
#   unplanned  the LAN VIP's moves seen by the monitors against the
#              drills: a failover keepalived made on its own (a daemon
#              too busy to answer its liveness check within 1 s) shows
#              there; a drill whose active node already lost the VIPs
#              before the kill is skipped and counted
# The kill comes 1-2 s (uniform) after the window starts, so that it has
# no fixed phase to keepalived's 1 s liveness check.
# Variants per daemon: DRILLS drills with ~0 flows held (only the
# traffic), HELD_DRILLS with HELD extra entries held (ctgen on the
# active node, replicated to the standby), and BIG_DRILLS with BIG_CONNS
# TCP connections (the fd limit is raised).  The baseline pair: FT-FW over
# UDP on the sync link, static kernel balancing (lab_kernel_balancer 1 1)
# on both gateways, keepalived (VRRPv3, 100 ms adverts, one sync group,
# a liveness script like uplinkd's) calling a primary-backup script after
# conntrackd's documentation (master: -c, -f, -R, -B; backup: -t, -n;
# fault: -t).
#
# Usage: tests/bench/bench_ha.sh     (as root, from the source tree, after a
#        build and `make check TESTS=` in UPLINKD_BUILD)
# Env:   UPLINKD_BUILD (default _build/plain), PARTS ("inject drills"),
#        SIZES ("10000 100000 1000000"), INJECT_REPEAT (3 rounds of raw,
#        raw+ev and uplinkd per N, medians in the summary), KINDS ("uplinkd conntrackd"),
#        DRILLS (20), HELD (100000), HELD_DRILLS (10), BIG_CONNS (10000),
#        BIG_DRILLS (1), TCP_CONNS (500), UDP_FLOWS (100), RATE (10),
#        BIG_RATE (2), SETTLE (4 s after the takeover), KILL (daemon or
#        both, see part 2; default daemon), IDLE_WAIT (60 s for
#        a quiet machine), LAB_PREFIX (uhb).
# nf_conntrack_max is global (set in the init netns) and limits each netns
# separately: raised for the largest N and restored at exit unless someone
# changed it meanwhile (tests/bench/ctsize.sh).  nf_conntrack_buckets is
# left alone: the README's takeover figures were measured so.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export UPLINKD_BUILD=${UPLINKD_BUILD:-$top/_build/plain}
export LAB_PREFIX=${LAB_PREFIX:-uhb}
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"
# shellcheck source=tests/bench/conntrackd.sh
. "$top/tests/bench/conntrackd.sh"
# shellcheck source=tests/bench/ctsize.sh
. "$top/tests/bench/ctsize.sh"
PARTS=${PARTS:-"inject drills"}
SIZES=${SIZES:-"10000 100000 1000000"}
KINDS=${KINDS:-"uplinkd conntrackd"}
DRILLS=${DRILLS:-20}
HELD=${HELD:-100000}
HELD_DRILLS=${HELD_DRILLS:-10}
BIG_CONNS=${BIG_CONNS:-10000}
BIG_DRILLS=${BIG_DRILLS:-1}
TCP_CONNS=${TCP_CONNS:-500}
UDP_FLOWS=${UDP_FLOWS:-100}
RATE=${RATE:-10}
BIG_RATE=${BIG_RATE:-2}
SETTLE=${SETTLE:-4}
IDLE_WAIT=${IDLE_WAIT:-60}
INJECT_REPEAT=${INJECT_REPEAT:-3}
KILL=${KILL:-daemon}
B=$UPLINKD_BUILD/tests/bench
CTGEN=$B/ctgen
CTINJECT=$B/ctinject
SYNC_LAG=$top/tests/bench/sync_lag.py
R=$LAB_DIR/bench
SRV=192.0.2.10
T_START=$(date +%s)

die() { echo "bench_ha: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
for f in "$UPLINKD_BUILD/uplinkd" "$UPLINKD_BUILD/uplinkctl" "$CTGEN" "$CTINJECT" \
	"$UPLINKD_BUILD/tests/lab/labtraffic"; do
	[ -x "$f" ] || die "$f not built (make && make check TESTS= in $UPLINKD_BUILD)"
done
LT=$UPLINKD_BUILD/tests/lab/labtraffic
for k in $KINDS; do
	case $k in uplinkd | conntrackd) ;; *) die "unknown kind $k" ;; esac
done
case $KILL in daemon | both) ;; *) die "KILL: daemon or both, not $KILL" ;; esac
for t in conntrackd keepalived conntrack iptables python3; do
	command -v $t >/dev/null 2>&1 || die "$t is not installed (deploy/install-deps.sh)"
done

# --- state we change outside the lab (ctsize_raise), restored by cleanup ---
cleanup() {
	local n
	# Everything this script started went through lab_start_bg: lab_down
	# stops it by pid file.  Tables are flushed first (netns deletion frees
	# entries in a kworker, which would disturb the next run).
	for n in long server; do lab_stop "$n" >/dev/null 2>&1; done
	for n in gw1 gw2; do
		lab_stop "keepalived-$n" >/dev/null 2>&1
	done
	for n in gw1 gw2; do
		[ -e "/run/netns/$(lab_ns $n)" ] && lab_exec $n conntrack -F >/dev/null 2>&1
	done
	if [ -d "$LAB_DIR" ]; then
		mkdir -p "$top/_build/bench_ha"
		cp "$LAB_DIR"/*.log "$top/_build/bench_ha/" 2>/dev/null
	fi
	lab_down >/dev/null 2>&1
	ctsize_restore
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ---
pid_of() { cat "$LAB_DIR/$1.pid" 2>/dev/null; }
calc() { python3 -c "print($*)"; }
kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
kcount() { lab_exec "$1" cat /proc/sys/net/netfilter/nf_conntrack_count; }
other() { if [ "$1" = gw1 ]; then echo gw2; else echo gw1; fi; }
elapsed() { echo $(($(date +%s) - T_START)); }
flush() {	# flush gwN...
	local gw
	for gw in "$@"; do
		lab_exec "$gw" conntrack -F >/dev/null 2>&1
		lab_wait_for "[ \$(kcount $gw) -lt 100 ]" 60 || echo "$gw: conntrack table not empty ($(kcount "$gw"))"
	done
}
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
# pct FILE P...: percentiles (nearest rank) of the numbers in FILE, "a/b/..."
pct() {
	python3 - "$@" <<'EOF'
import sys
import math
v = sorted(float(x) for x in open(sys.argv[1]).read().split())
out = []
for p in sys.argv[2:]:
    if not v:
        out.append("n/a")
        continue
    i = min(len(v) - 1, max(0, math.ceil(float(p) / 100 * len(v)) - 1))
    out.append("%.0f" % v[i])
print("/".join(out))
EOF
}
budget() { echo $((30 + $1 / 20000)); }	# seconds for N entries at >= 20k/s

# uplinkd control
uget() {	# uget gwN EXPR: a value out of `uplinkctl --json status`
	lab_jget "$1" "$2" status
}
u_in_sync() { [ "$(uget "$1" 'd["in_sync"]')" = True ]; }
u_start() {	# u_start gwN [master|backup]
	lab_uplinkd_start "$1" || die "uplinkd on $1 did not start"
	lab_wait_for "lab_uplinkctl $1 status" 20 || die "uplinkd on $1 does not answer"
	# As keepalived would: the addresses first (uplinkd refuses a master
	# role without them).
	if [ "${2:-}" = master ]; then lab_vip_add "$1" || die "addresses on $1"; fi
	[ -z "${2:-}" ] || lab_uplinkctl "$1" ha "$2" >/dev/null || die "uplinkctl ha $2 on $1 failed"
}

# conntrackd control
ctd_conf() { echo "$LAB_DIR/ctd-$1.conf"; }
ctd_count() {	# ctd_count gwN internal|external
	lab_exec "$1" python3 "$SYNC_LAG" count --conntrackd "$LAB_DIR/ctd-$1.ctl" --field "$2" 2>/dev/null
}
ctd_start() {
	rm -f "$LAB_DIR/ctd-$1.lock"	# O_EXCL lock left by a kill -9
	lab_start_bg "$1" "ctd-$1" conntrackd -C "$(ctd_conf "$1")" || die "conntrackd on $1 did not start"
	lab_wait_for "ctd_count $1 internal" 20 || die "conntrackd on $1 does not answer"
}
ctd_handshake() {	# both sides heard >= 2 sync messages (the anchor's pitfall 5)
	lab_exec gw1 python3 "$SYNC_LAG" wait --conntrackd "$LAB_DIR/ctd-gw1.ctl" --field udp_rx \
		--target 2 --timeout 15 >/dev/null || die "conntrackd gw1 heard no HELLO"
	lab_exec gw2 python3 "$SYNC_LAG" wait --conntrackd "$LAB_DIR/ctd-gw2.ctl" --field udp_rx \
		--target 2 --timeout 15 >/dev/null || die "conntrackd gw2 heard no HELLO"
}

# conntrackd_config gwN: TCP and UDP (the drills carry both); the LAN's
# gateway addresses are ignored too.
conntrackd_config() {
	ctd_write_config "$(ctd_conf "$1")" "$1" Off "TCP UDP" 10.0.0.1 10.0.0.2 10.0.0.3
}

# The baseline's notify script, after conntrackd's primary-backup.sh
# (doc/sync/primary-backup.sh), with time stamps for the bench.
ctd_notify_script() {
	cat >"$LAB_DIR/ctd-notify.sh" <<'EOF'
#!/bin/sh
# ctd-notify.sh CONF LOG master|backup|fault (written by bench_ha.sh)
CONF=$1 LOG=$2
ts() { date +%s.%N; }
case $3 in
master)
	echo "master_start $(ts)" >>"$LOG"
	conntrackd -C "$CONF" -c	# commit the external cache into the kernel
	echo "commit_done $(ts) rc=$?" >>"$LOG"
	conntrackd -C "$CONF" -f	# flush the internal and external caches
	conntrackd -C "$CONF" -R	# resync the internal cache with the kernel
	conntrackd -C "$CONF" -B	# bulk update to the backup
	echo "master_done $(ts)" >>"$LOG"
	;;
backup)
	conntrackd -C "$CONF" -t	# shorten kernel timers (zombie entries)
	conntrackd -C "$CONF" -n	# request a resync from the master
	echo "backup_done $(ts)" >>"$LOG"
	;;
fault)
	conntrackd -C "$CONF" -t
	echo "fault_done $(ts)" >>"$LOG"
	;;
esac
exit 0
EOF
	chmod 700 "$LAB_DIR/ctd-notify.sh"
}

# keepalived for the baseline: the same instances, VIPs, VRRPv3 100 ms
# adverts and liveness check interval as ha/keepalived.conf.j2, nopreempt.
ctd_keepalived_config() {	# gwN PRIORITY
	local gw=$1 prio=$2 conf notify
	conf=$(ctd_conf "$gw")
	notify="$LAB_DIR/ctd-notify.sh $conf $LAB_DIR/ctd-notify-$gw.log"
	{
		cat <<EOF
global_defs {
	router_id ctd-$gw
	vrrp_version 3
	enable_script_security
	script_user root
}
vrrp_script ctd_alive {
	script "/usr/sbin/conntrackd -C $conf -s"
	interval 1
	timeout 1
	fall 1
	rise 1
	weight 0
}
vrrp_sync_group ctd {
	group {
		lan
		isp_a
		isp_b
	}
	track_script {
		ctd_alive
	}
	notify_master "$notify master"
	notify_backup "$notify backup"
	notify_fault "$notify fault"
}
EOF
		local name ifn vip k=0
		while read -r name ifn vip; do
			cat <<EOF
vrrp_instance $name {
	state BACKUP
	interface $ifn
	virtual_router_id $((51 + k))
	priority $prio
	advert_int 0.10
	nopreempt
	virtual_ipaddress {
		$vip dev $ifn
	}
}
EOF
			k=$((k + 1))
		done <<EOF
lan lan0 10.0.0.1/24
isp_a wan0 198.51.100.10/24
isp_b wan1 203.0.113.10/24
EOF
	} >"$LAB_DIR/keepalived-$gw.conf"
}

notrack_sync() {	# the sync link is not conntracked, for either daemon
	local gw
	for gw in gw1 gw2; do
		lab_exec $gw iptables -w -t raw -A PREROUTING -i sync0 -j CT --notrack &&
			lab_exec $gw iptables -w -t raw -A OUTPUT -o sync0 -j CT --notrack ||
			die "notrack rule on $gw"
	done
}

lab_fresh() {
	lab_down >/dev/null 2>&1
	lab_up 2 >/dev/null || die "lab up failed"
	mkdir -p "$R"
	notrack_sync
	for gw in gw1 gw2; do
		lab_uplinkd_config $gw wrr 1 1
		lab_uplinkd_sync $gw 2>/dev/null || die "sync config for $gw"
		conntrackd_config $gw
	done
}

# --- setup ---
cleanup
need=0
if [[ " $PARTS " == *" inject "* ]]; then
	for n in $SIZES; do [ $((n * 5 / 4 + 1024)) -gt "$need" ] && need=$((n * 5 / 4 + 1024)); done
fi
[ $((HELD * 2 + BIG_CONNS * 4)) -gt "$need" ] && need=$((HELD * 2 + BIG_CONNS * 4))
ctsize_raise "$need" 0 || die "cannot raise nf_conntrack_max to $need"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
bg=$(wait_idle)
lab_fresh
echo "# bench_ha: $(uname -r), $(nproc) CPUs, $(conntrackd -v 2>&1 | head -1 | cut -d. -f1-3)," \
	"$(keepalived -v 2>&1 | head -1 | cut -d' ' -f1-2), uplinkd $(git -C "$top" describe --always --dirty 2>/dev/null)," \
	"nf_conntrack_max=$(cat $ctsize_max) buckets=$(cat $ctsize_buckets)," \
	"bg_busy_pct=$bg, fd limit $(ulimit -n)"

# ======================= part 1: inject rates =======================
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
inject_size() {
	local n=$1 line t0 t1="" ms got i raw="" rawev="" inj="" upd=""
	flush gw1 gw2
	# Interleaved, INJECT_REPEAT rounds: the medians go to the summary.
	for ((i = 1; i <= INJECT_REPEAT; i++)); do
		line=$(lab_exec gw2 "$CTGEN" -n "$n")
		echo "N=$n #$i raw:        $line"
		raw="$raw $(echo "$line" | kv rate)"
		flush gw2
		line=$(lab_exec gw2 "$CTGEN" -n "$n" --listen)
		echo "N=$n #$i raw+ev:     $line"
		rawev="$rawev $(echo "$line" | kv rate)"
		flush gw2
		line=$(lab_exec gw2 "$CTINJECT" -c "$LAB_DIR/gw2.yaml" -n "$n" --update)
		echo "N=$n #$i uplinkd:    $line"
		inj="$inj $(echo "$line" | kv rate)"
		upd="$upd $(echo "$line" | kv update_rate)"
		flush gw2
	done
	# shellcheck disable=SC2086	# the lists are split on purpose
	eval "raw_$n=$(median $raw) rawev_$n=$(median $rawev) inj_$n=$(median $inj) upd_$n=$(median $upd)"

	# gw1 holds N (the source for both daemons' transfers).
	line=$(lab_exec gw1 "$CTGEN" -n "$n" -t 3600)
	echo "N=$n gw1 filled: $line"

	# uplinkd end to end: the standby's kernel from empty to N.
	u_start gw1 master
	lab_wait_for "[ \$(uget gw1 'd[\"flows\"][\"own\"]') -ge $n ]" "$(budget "$n")" ||
		echo "uplinkd gw1 did not learn $n flows ($(uget gw1 'd["flows"]'))"
	t0=$(date +%s.%N)
	u_start gw2 backup
	if lab_wait_for "[ \$(kcount gw2) -ge $n ]" "$(budget "$n")"; then
		t1=$(date +%s.%N)
		got=$(calc "round($n / ($t1 - $t0))")
	else
		got=n/a
		echo "uplinkd: gw2's kernel did not reach $n ($(kcount gw2))"
	fi
	lab_wait_for "[ \$(lab_jget gw1 'd[\"sync\"][\"bulks_completed\"]' sync) -ge 1 ]" 30
	ms=$(lab_jget gw1 'd["sync"]["bulk_ms_last"]' sync)
	echo "N=$n uplinkd e2e: kernel_from_receiver_start_s=$(calc "round($t1 - $t0, 3)" 2>/dev/null) rate=$got sender_bulk_ms=$ms standby_writes=$(uget gw2 'd["kernel_writes"]')"
	eval "e2e_$n=$got"
	lab_stop uplinkd-gw2
	lab_stop uplinkd-gw1
	flush gw2
	if [ "$(kcount gw1)" -lt "$n" ]; then
		echo "N=$n: gw1 lost entries ($(kcount gw1)): refilled"
		flush gw1
		lab_exec gw1 "$CTGEN" -n "$n" -t 3600 >/dev/null
	fi

	# conntrackd: gw2's external cache gets N by -B; then gw1 is emptied
	# (its conntrackd stopped first, so nothing replicates) and gw2 commits.
	ctd_start gw1
	lab_wait_for "[ \$(ctd_count gw1 internal) -ge $n ]" "$(budget "$n")" ||
		echo "conntrackd gw1 learned only $(ctd_count gw1 internal) of $n"
	ctd_start gw2
	ctd_handshake
	lab_exec gw1 conntrackd -C "$(ctd_conf gw1)" -B >/dev/null 2>&1 || echo "conntrackd -B failed"
	lab_wait_for "[ \$(ctd_count gw2 external) -ge $n ]" "$(budget "$n")" ||
		echo "conntrackd gw2's external cache holds only $(ctd_count gw2 external) of $n"
	lab_stop ctd-gw1
	flush gw1
	t0=$(date +%s.%N)
	lab_exec gw2 conntrackd -C "$(ctd_conf gw2)" -c >/dev/null 2>&1 || echo "conntrackd -c failed"
	t1=$(date +%s.%N)
	got=$(kcount gw2)
	echo "N=$n conntrackd -c: commit_s=$(calc "round($t1 - $t0, 3)") rate=$(calc "round($n / ($t1 - $t0))") kernel_after=$got"
	eval "ctd_$n=$(calc "round($n / ($t1 - $t0))")"
	[ "$got" -ge "$n" ] || eval "ctd_$n=n/a"
	lab_stop ctd-gw2
	flush gw1 gw2
}

if [[ " $PARTS " == *" inject "* ]]; then
	echo "# part 1: kernel inject rate, N = $SIZES"
	for n in $SIZES; do
		inject_size "$n"
	done
fi

# ======================= part 2: drills =======================
vips_on() {	# vips_on gwN: how many of the three VIPs it holds
	lab_exec "$1" ip -br -4 addr show 2>/dev/null |
		grep -cE ' (10\.0\.0\.1|198\.51\.100\.10|203\.0\.113\.10)/24'
}
# vip_time MONLOG T [del]: epoch of the moment the last of the three VIPs
# was added (deleted) after T (ip -ts monitor: "[YYYY-MM-DDTHH:MM:SS.us]
# N: IF inet A/L ...", "[...] Deleted N: IF inet ...")
vip_time() {
	python3 - "$1" "$2" "${3:-add}" <<'EOF'
import sys, time, datetime
t0 = float(sys.argv[2]); first = {}
for line in open(sys.argv[1], errors="replace"):
    if not line.startswith("[") or ("Deleted" in line) != (sys.argv[3] == "del"):
        continue
    for v in ("10.0.0.1/24", "198.51.100.10/24", "203.0.113.10/24"):
        if " inet " + v + " " in line:
            ts = datetime.datetime.strptime(line[1:line.index("]")], "%Y-%m-%dT%H:%M:%S.%f")
            t = time.mktime(ts.timetuple()) + ts.microsecond / 1e6
            if t >= t0 and v not in first:
                first[v] = t
print("%.6f" % max(first.values()) if len(first) == 3 else "n/a")
EOF
}
# log_time LOG PATTERN SKIP: epoch of the first line matching PATTERN after
# the first SKIP matches, from uplinkd's "HH:MM:SS.mmm" stamps (today).
log_time() {
	python3 - "$@" <<'EOF'
import sys, time, re
n = 0
for line in open(sys.argv[1], errors="replace"):
    if sys.argv[2] not in line:
        continue
    n += 1
    if n <= int(sys.argv[3]):
        continue
    m = re.match(r"(\d\d):(\d\d):(\d\d)\.(\d\d\d) ", line)
    if not m:
        continue
    lt = time.localtime()
    t = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, int(m[1]), int(m[2]), int(m[3]), 0, 0, -1))
    if t > time.time() + 3600:
        t -= 86400
    print("%.3f %s" % (t + int(m[4]) / 1000, line.strip()))
    break
else:
    print("n/a")
EOF
}

# LAN VIP additions seen by both gateways' monitors so far.
lan_vip_adds() {
	cat "$LAB_DIR/mon-gw1.log" "$LAB_DIR/mon-gw2.log" 2>/dev/null |
		grep -v Deleted | grep -c ' inet 10\.0\.0\.1/24 '
}

# The server's view: "changed=C reset=R" over the long-lived flows.
server_check() {
	rm -f "$LAB_DIR/server.report"
	kill -USR1 "$(pid_of server)"
	lab_wait_for "test -s $LAB_DIR/server.report" 10
	awk '
		$2 == "id=-" { next }
		/^(tcp|udp) / {
			for (i = 3; i <= NF; i++) {
				if ($i ~ /^peer_changes=/ && $i != "peer_changes=0") changed++
				if ($i == "reset=yes") reset++
			}
		}
		END { printf "changed=%d reset=%d\n", changed, reset }
	' "$LAB_DIR/server.report"
}
# The client's drill window (labtraffic long --stats).
window_start() { kill -USR2 "$(pid_of long)"; }
window_read() {	# window_read OUTFILE: writes the stats, prints the summary line
	rm -f "$LAB_DIR/long.stats"
	kill -USR1 "$(pid_of long)"
	lab_wait_for "test -s $LAB_DIR/long.stats" 10
	cp "$LAB_DIR/long.stats" "$1"
	head -1 "$1"
}

traffic_start() {	# CONNS UDP RATE
	local conns=$1 udp=$2 rate=$3 want
	rm -f "$LAB_DIR/stop-long" "$LAB_DIR/long.log" "$LAB_DIR/server.log"
	lab_start_bg srv server "$LT" server --tcp 5001 --udp 5002 --report "$LAB_DIR/server.report" \
		--deadline 3000 || die "traffic server"
	lab_wait_for "lab_exec srv ss -ltn | grep -q :5001" 10 || die "server does not listen"
	lab_start_bg client long "$LT" long --to "$SRV:5001" --conns "$conns" --udp-flows "$udp" \
		--udp-port 5002 --rate "$rate" --until-file "$LAB_DIR/stop-long" --id-base 1 \
		--timeout 30 --deadline 2900 --stats "$LAB_DIR/long.stats" || die "traffic client"
	# Every TCP connection up and echoing.
	lab_wait_for "traffic_up $conns" 90 ||
		echo "traffic: not every connection is up: $(head -1 "$R/w0")"
}
traffic_up() {	# CONNS: every connection intact and echoed at least once
	window_read "$R/w0" >/dev/null || return 1
	awk -v want="$1" '/^tcp / { n++; if ($0 ~ / echoed=0 / || $0 !~ / state=intact /) bad++ }
		END { exit !(n >= want && bad == 0) }' "$R/w0"
}
traffic_stop() {
	touch "$LAB_DIR/stop-long"
	lab_wait_for "! kill -0 $(pid_of long) 2>/dev/null" 60
	grep '^long:' "$LAB_DIR/long.log" | tail -1
	lab_stop long
	server_check >/dev/null
	cp "$LAB_DIR/server.report" "$R/server.report.last" 2>/dev/null
	lab_stop server
}

# Kind-specific: pair up with gw1 active, ready test, kill, restore.
pair_up() {	# KIND
	local gw
	if [ "$1" = uplinkd ]; then
		lab_keepalived_config gw1 150 nopreempt
		lab_keepalived_config gw2 100 nopreempt
		u_start gw1
		u_start gw2
		lab_keepalived_start gw1 || die "keepalived gw1"
		lab_wait_for "[ \$(vips_on gw1) -eq 3 ] && [ \"\$(uget gw1 'd[\"role\"]')\" = master ]" 30 ||
			die "gw1 did not become master"
		lab_keepalived_start gw2 || die "keepalived gw2"
	else
		ctd_notify_script
		ctd_keepalived_config gw1 150
		ctd_keepalived_config gw2 100
		for gw in gw1 gw2; do
			lab_kernel_balancer "$gw" 1 1 || die "kernel balancer on $gw"
		done
		ctd_start gw1
		ctd_start gw2
		ctd_handshake
		lab_keepalived_start gw1 || die "keepalived gw1"
		lab_wait_for "[ \$(vips_on gw1) -eq 3 ]" 30 || die "gw1 did not take the VIPs"
		lab_keepalived_start gw2 || die "keepalived gw2"
	fi
	for gw in gw1 gw2; do
		lab_start_bg "$gw" "mon-$gw" ip -ts monitor address || die "address monitor on $gw"
	done
	sleep 1
}
pair_down() {	# KIND
	local gw
	for gw in gw1 gw2; do
		lab_stop "keepalived-$gw"
		lab_stop "mon-$gw"
	done
	for gw in gw1 gw2; do
		if [ "$1" = uplinkd ]; then lab_stop "uplinkd-$gw"; else lab_stop "ctd-$gw"; fi
		lab_vip_del "$gw"
		[ "$1" = conntrackd ] && lab_kernel_balancer_off "$gw"
	done
	flush gw1 gw2
}
# ready KIND ACTIVE WANT: the standby holds the active node's flows: WANT,
# or as many as the active node has when fewer (connections that broke in
# an earlier drill are gone).
ready() {
	local s have
	s=$(other "$2")
	[ "$(vips_on "$2")" -eq 3 ] && [ "$(vips_on "$s")" -eq 0 ] || return 1
	if [ "$1" = uplinkd ]; then
		have=$(uget "$2" 'd["flows"]["own"]')
		[ "${have:-0}" -lt "$3" ] || have=$3
		u_in_sync "$2" && u_in_sync "$s" && [ "$(uget "$2" 'd["role"]')" = master ] &&
			[ "$(uget "$s" 'd["role"]')" = backup ] &&
			[ "$(uget "$s" 'd["flows"]["peer"]')" -ge "$have" ]
	else
		have=$(ctd_count "$2" internal)
		[ "${have:-0}" -lt "$3" ] || have=$3
		[ "$(ctd_count "$s" external)" -ge "$have" ]
	fi
}
kill_active() {	# KIND ACTIVE
	local pids
	if [ "$1" = uplinkd ]; then pids=$(pid_of "uplinkd-$2"); else pids=$(pid_of "ctd-$2"); fi
	[ "$KILL" = both ] && pids="$pids $(pid_of "keepalived-$2")"
	# shellcheck disable=SC2086 # a list of pids
	kill -9 $pids
	# shellcheck disable=SC2086
	wait $pids 2>/dev/null	# our children (lab_start_bg): reaped without a job notice
}
restore() {	# KIND GW WANT: the daemon back; keepalived (still running or restarted) makes it backup
	local p
	if [ "$KILL" = both ]; then
		# keepalived's VRRP child outlives a SIGKILL of its parent by
		# the moment it takes to step down.
		p=$(cat "$LAB_DIR/keepalived-$2.vrrp.pid" 2>/dev/null) &&
			lab_wait_for "! [ -e /proc/$p ] || grep -q '^State:[[:space:]]*Z' /proc/$p/status" 10
		rm -f "$LAB_DIR/keepalived-$2.main.pid" "$LAB_DIR/keepalived-$2.vrrp.pid"
	fi
	if [ "$1" = uplinkd ]; then
		u_start "$2"
		[ "$KILL" = daemon ] || lab_keepalived_start "$2" || die "keepalived $2"
	else
		ctd_start "$2"
		# The notify script's -n asks the master for its state; ask once
		# more if that went out before the sync channel was up.
		[ "$KILL" = daemon ] || lab_keepalived_start "$2" || die "keepalived $2"
		lab_wait_for "[ \$(ctd_count $2 external) -ge $3 ]" 10 ||
			lab_exec "$2" conntrackd -C "$(ctd_conf "$2")" -n >/dev/null 2>&1
	fi
}
# Seconds at which the new master's state is complete (see the top).
state_mark() {	# KIND GW: a count of the "done" lines so far
	if [ "$1" = uplinkd ]; then
		cat "$LAB_DIR/uplinkd-$2.log" 2>/dev/null | grep -c "checked in the kernel"
	else
		cat "$LAB_DIR/ctd-notify-$2.log" 2>/dev/null | grep -c "^commit_done"
	fi
}
state_time() {	# KIND GW SKIP
	local l
	if [ "$1" = uplinkd ]; then
		l=$(log_time "$LAB_DIR/uplinkd-$2.log" "checked in the kernel" "$3")
		echo "${l%% *}"
	else
		awk -v skip="$3" '/^commit_done/ { if (++n > skip) { print $2; exit } }' \
			"$LAB_DIR/ctd-notify-$2.log" 2>/dev/null | grep . || echo n/a
	fi
}

# drills KIND TAG COUNT WANT: COUNT drills; files $R/{takeover,stall,udpstall}-KIND-TAG
drills() {
	local kind=$1 tag=$2 count=$3 want=$4 i act sb mark t_fail t_vip t_state t_end line l
	local t_rel t_check unplanned=0 adds0 adds1 k_before k_after changed0 changed1 reset0 reset1 c r wl bw to_ms tot_broken=0 tot_changed=0 tot_reset=0
	: >"$R/takeover-$kind-$tag"; : >"$R/stall-$kind-$tag"; : >"$R/udpstall-$kind-$tag"
	: >"$R/vip-$kind-$tag"; : >"$R/release-$kind-$tag"; : >"$R/check-$kind-$tag"
	act=$(cat "$R/active")
	adds0=$(lan_vip_adds)
	for ((i = 1; i <= count; i++)); do
		sb=$(other "$act")
		if ! lab_wait_for "ready $kind $act $want" 60; then
			echo "drill $kind $tag #$i: the pair is not ready (active $act): skipped" \
				"(vips $(vips_on "$act")/$(vips_on "$sb"))"
			[ "$kind" = uplinkd ] && echo "  $(uget "$act" '(d["role"], d["in_sync"], d["flows"])') / $(uget "$sb" '(d["role"], d["in_sync"], d["flows"])')"
			[ "$kind" = conntrackd ] && echo "  standby external cache $(ctd_count "$sb" external) of $want"
			continue
		fi
		c=$(server_check); changed0=$(echo "$c" | kv changed); reset0=$(echo "$c" | kv reset)
		mark=$(state_mark "$kind" "$sb")
		window_start
		# 1-2 s, uniform: the kill must not keep a fixed phase to
		# keepalived's 1 s liveness check (the drills' own rhythm would).
		sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", 1 + r / 32768 }')"
		if [ "$(vips_on "$act")" -ne 3 ] || [ "$(vips_on "$sb")" -ne 0 ]; then
			echo "drill $kind $tag #$i: $act lost the VIPs before the kill (vips $(vips_on "$act")/$(vips_on "$sb")): an unplanned failover; skipped"
			unplanned=$((unplanned + 1))
			[ "$(vips_on "$sb")" -eq 3 ] && { act=$sb; echo "$act" >"$R/active"; }
			continue
		fi
		k_before=$(kcount "$sb")
		t_fail=$(date +%s.%N)
		kill_active "$kind" "$act"
		lab_wait_for "[ \$(vips_on $sb) -eq 3 ] && [ \$(vips_on $act) -eq 0 ] && [ \$(state_mark $kind $sb) -gt $mark ]" 30 ||
			echo "drill $kind $tag #$i: no complete takeover by $sb within 30 s (vips $(vips_on "$act")/$(vips_on "$sb"))"
		k_after=$(kcount "$sb")
		sleep "$SETTLE"
		wl=$(window_read "$R/w-$kind-$tag-$i")
		c=$(server_check); changed1=$(echo "$c" | kv changed); reset1=$(echo "$c" | kv reset)
		t_vip=$(vip_time "$LAB_DIR/mon-$sb.log" "$t_fail")
		t_rel=$(vip_time "$LAB_DIR/mon-$act.log" "$t_fail" del)
		calc "round(($t_rel - $t_fail) * 1000)" >>"$R/release-$kind-$tag" 2>/dev/null
		t_check=$(state_time "$kind" "$sb" "$mark")
		t_state=$t_check
		# Hot standby: the flows were in the standby's kernel at the failure.
		[ "$kind" = uplinkd ] && [ "$k_before" -ge "$want" ] && t_state=$t_fail
		calc "round(($t_check - $t_fail) * 1000)" >>"$R/check-$kind-$tag" 2>/dev/null
		t_end=$(calc "max($t_vip, $t_state)" 2>/dev/null || echo n/a)
		to_ms=$(calc "round(($t_end - $t_fail) * 1000)" 2>/dev/null || echo n/a)
		[ "$to_ms" != n/a ] && echo "$to_ms" >>"$R/takeover-$kind-$tag"
		calc "round(($t_vip - $t_fail) * 1000)" >>"$R/vip-$kind-$tag" 2>/dev/null
		awk '/^tcp / { for (i = 1; i <= NF; i++) if ($i ~ /^win_gap_ms=/) { split($i, a, "="); print a[2] } }' \
			"$R/w-$kind-$tag-$i" >>"$R/stall-$kind-$tag"
		awk '/^udp / { for (i = 1; i <= NF; i++) if ($i ~ /^win_gap_ms=/) { split($i, a, "="); print a[2] } }' \
			"$R/w-$kind-$tag-$i" >>"$R/udpstall-$kind-$tag"
		bw=$(echo "$wl" | kv broken_in_window)
		tot_broken=$((tot_broken + ${bw:-0}))
		tot_changed=$((tot_changed + changed1 - changed0))
		tot_reset=$((tot_reset + reset1 - reset0))
		line="takeover_ms=$to_ms old_released_ms=$(calc "round(($t_rel - $t_fail) * 1000)" 2>/dev/null || echo n/a)"
		line="$line vip_ms=$(calc "round(($t_vip - $t_fail) * 1000)" 2>/dev/null || echo n/a)"
		line="$line state_ms=$(calc "round(($t_state - $t_fail) * 1000)" 2>/dev/null || echo n/a)"
		line="$line check_ms=$(calc "round(($t_check - $t_fail) * 1000)" 2>/dev/null || echo n/a)"
		line="$line kernel_standby_before=$k_before kernel_after=$k_after"
		line="$line stall_tcp_p50/p99/max_ms=$(awk '/^tcp /{for(i=1;i<=NF;i++) if($i~/^win_gap_ms=/){split($i,a,"=");print a[2]}}' "$R/w-$kind-$tag-$i" >"$R/tmp"; pct "$R/tmp" 50 99 100)"
		line="$line stall_udp_max_ms=$(awk '/^udp /{for(i=1;i<=NF;i++) if($i~/^win_gap_ms=/){split($i,a,"=");print a[2]}}' "$R/w-$kind-$tag-$i" >"$R/tmp"; pct "$R/tmp" 100)"
		line="$line broken=${bw:-?} changed=$((changed1 - changed0)) reset=$((reset1 - reset0))"
		echo "drill $kind $tag #$i $act->$sb: $line"
		if [ "$kind" = uplinkd ]; then
			l=$(log_time "$LAB_DIR/uplinkd-$sb.log" "checked in the kernel" "$mark")
			echo "  $sb: ${l#* }"
		fi
		restore "$kind" "$act" "$want"
		act=$sb
		echo "$act" >"$R/active"
		[ $(($(date +%s) - T_START)) -lt 3000 ] || { echo "bench_ha: time budget spent, stopping the drills"; break; }
	done
	eval "broken_${kind}_$tag=$tot_broken changed_${kind}_$tag=$tot_changed reset_${kind}_$tag=$tot_reset"
	adds1=$(lan_vip_adds)
	# One move of the LAN VIP per drill; more: keepalived moved it on its own.
	eval "moves_${kind}_$tag=$((adds1 - adds0)) drills_${kind}_$tag=$(wc -l <"$R/vip-$kind-$tag") unplanned_${kind}_$tag=$unplanned"
	echo "$kind $tag: LAN VIP moves $((adds1 - adds0)) for $(wc -l <"$R/vip-$kind-$tag") drills measured; $unplanned unplanned failovers before a kill"
	# Traffic the standby must hold before the next variant's first drill.
	lab_wait_for "ready $kind $act $want" 120 || echo "$kind: not ready after the drills"
}

# held KIND N: N extra entries on the active node (ctgen), replicated.
hold() {
	local kind=$1 n=$2 act line
	act=$(cat "$R/active")
	line=$(lab_exec "$act" "$CTGEN" -n "$n" -t 7200)
	echo "$kind: $act holds $n extra entries: $line"
}

drill_kind() {
	local kind=$1 want
	echo "# part 2: $kind, kill-mode drills, KILL=$KILL (elapsed $(elapsed) s)"
	pair_up "$kind"
	echo gw1 >"$R/active"
	traffic_start "$TCP_CONNS" "$UDP_FLOWS" "$RATE"
	want=$((TCP_CONNS + UDP_FLOWS))
	drills "$kind" held0 "$DRILLS" "$want"
	if [ "$HELD_DRILLS" -gt 0 ] && [ "$HELD" -gt 0 ]; then
		hold "$kind" "$HELD"
		drills "$kind" held "$HELD_DRILLS" $((want + HELD))
	fi
	echo "$kind traffic: $(traffic_stop)"
	pair_down "$kind"
	if [ "$BIG_DRILLS" -gt 0 ]; then
		echo "# part 2: $kind, $BIG_CONNS connections (elapsed $(elapsed) s)"
		pair_up "$kind"
		echo gw1 >"$R/active"
		traffic_start "$BIG_CONNS" 0 "$BIG_RATE"
		drills "$kind" big "$BIG_DRILLS" "$BIG_CONNS"
		echo "$kind big traffic: $(traffic_stop)"
		pair_down "$kind"
	fi
}

v() { local x; eval "x=\${$1:-n/a}"; echo "$x"; }	# a result, n/a when unset
if [[ " $PARTS " == *" drills "* ]]; then
	lab_fresh
	for kind in $KINDS; do
		drill_kind "$kind"
	done
fi

# ======================= summary =======================
# ratio A B and met EXPR print n/a when a figure is missing.
ratio() {
	python3 -c 'import sys
try: print(round(float(sys.argv[1]) / float(sys.argv[2]), 3))
except Exception: print("n/a")' "$1" "$2"
}
met() {
	python3 -c 'import sys
try: print("yes" if eval(sys.argv[1]) else "no")
except Exception: print("n/a")' "$1"
}
row() { printf '%-50s %14s %14s %8s %-16s %s\n' "$@"; }
echo
echo "# summary (elapsed $(elapsed) s)"
if [[ " $PARTS " == *" inject "* ]]; then
	row "inject, entries/s" uplinkd raw ratio target met
	for n in $SIZES; do
		u=$(v "inj_$n"); r=$(v "raw_$n"); x=$(ratio "$u" "$r")
		row "  N=$n: uplinkd (ctinject) / raw ctgen" "$u" "$r" "$x" ">= 0.9 of raw" "$(met "$x >= 0.9")"
		r2=$(v "rawev_$n")
		row "  N=$n: uplinkd / raw with an event listener" "$u" "$r2" "$(ratio "$u" "$r2")" - -
		c=$(v "ctd_$n")
		row "  N=$n: uplinkd / conntrackd -c" "$u" "$c" "$(ratio "$u" "$c")" - -
		row "  N=$n: uplinkd e2e (sync bulk -> kernel) / raw" "$(v "e2e_$n")" "$r" "$(ratio "$(v "e2e_$n")" "$r")" - -
		row "  N=$n: uplinkd takeover check (update) / raw" "$(v "upd_$n")" "$r" "$(ratio "$(v "upd_$n")" "$r")" - -
	done
	echo "# anchor (other day, same kind of VM): conntrackd -c 52 000/s at 100k, 27 500/s at 1M; raw 90-150k/s"
fi
if [[ " $PARTS " == *" drills "* ]]; then
	echo
	row "kill drills (KILL=$KILL)" uplinkd conntrackd ratio target met
	for tag in held0 held big; do
		case $tag in
		held0) what="~0 held ($((TCP_CONNS + UDP_FLOWS)) flows)" ;;
		held) what="$HELD held" ;;
		big) what="$BIG_CONNS connections" ;;
		esac
		[ -s "$R/takeover-uplinkd-$tag" ] || [ -s "$R/takeover-conntrackd-$tag" ] || continue
		u=$(pct "$R/takeover-uplinkd-$tag" 50 99 2>/dev/null || echo n/a)
		c=$(pct "$R/takeover-conntrackd-$tag" 50 99 2>/dev/null || echo n/a)
		n=$(wc -l <"$R/takeover-uplinkd-$tag" 2>/dev/null || echo 0)
		row "takeover p50/p99 ms, $what, $n drills" "$u" "$c" "$(ratio "${u%/*}" "${c%/*}")" \
			"<= 400 ms" "$(met "${u#*/} <= 400")"
		u=$(pct "$R/vip-uplinkd-$tag" 50 99 2>/dev/null || echo n/a)
		c=$(pct "$R/vip-conntrackd-$tag" 50 99 2>/dev/null || echo n/a)
		row "  of which VIPs up, p50/p99 ms" "$u" "$c" - - -
		u=$(pct "$R/release-uplinkd-$tag" 50 99 2>/dev/null || echo n/a)
		c=$(pct "$R/release-conntrackd-$tag" 50 99 2>/dev/null || echo n/a)
		row "  of which failure noticed (old node drops VIPs)" "$u" "$c" - - -
		u=$(pct "$R/check-uplinkd-$tag" 50 99 2>/dev/null || echo n/a)
		c=$(pct "$R/check-conntrackd-$tag" 50 99 2>/dev/null || echo n/a)
		row "  state done: uplinkd check / conntrackd -c end" "$u" "$c" - - -
		u=$(pct "$R/stall-uplinkd-$tag" 50 99 2>/dev/null || echo n/a)
		c=$(pct "$R/stall-conntrackd-$tag" 50 99 2>/dev/null || echo n/a)
		row "stall TCP p50/p99 ms (all conns x drills)" "$u" "$c" "$(ratio "${u#*/}" "${c#*/}")" \
			"p99 <= 1000 ms" "$(met "${u#*/} <= 1000")"
		if [ -s "$R/udpstall-uplinkd-$tag" ] || [ -s "$R/udpstall-conntrackd-$tag" ]; then
			u=$(pct "$R/udpstall-uplinkd-$tag" 50 99 2>/dev/null || echo n/a)
			c=$(pct "$R/udpstall-conntrackd-$tag" 50 99 2>/dev/null || echo n/a)
			row "stall UDP p50/p99 ms" "$u" "$c" - - -
		fi
		u="$(v "broken_uplinkd_$tag")/$(v "reset_uplinkd_$tag")/$(v "changed_uplinkd_$tag")"
		c="$(v "broken_conntrackd_$tag")/$(v "reset_conntrackd_$tag")/$(v "changed_conntrackd_$tag")"
		case $u in 0/0/0) x=yes ;; *n/a*) x=n/a ;; *) x=no ;; esac
		row "broken/reset/source changed (sum over drills)" "$u" "$c" - "0" "$x"
		u="$(v "moves_uplinkd_$tag")/$(v "drills_uplinkd_$tag")/$(v "unplanned_uplinkd_$tag")"
		c="$(v "moves_conntrackd_$tag")/$(v "drills_conntrackd_$tag")/$(v "unplanned_conntrackd_$tag")"
		row "LAN VIP moves / drills / unplanned failovers" "$u" "$c" - - -
	done
	echo "# the record interval is $((1000 / RATE)) ms ($((1000 / BIG_RATE)) ms with $BIG_CONNS connections): the floor of the stall"
	echo "# leaks towards the providers (untranslated): $(lab_leaks)"
fi
