#!/bin/bash
# Lab test of daemon/health in network namespaces (TAP).  Needs root.
#
#   hlt-pa (198.51.100.1, 192.0.2.1 on lo) ── wan0 ┐
#                                                  ├─ hlt-gw (runs health_probe)
#   hlt-pb (203.0.113.1, 192.0.2.1 on lo) ── wan1 ┘
#
# Both providers probe the same target, 192.0.2.1, which the gateway has no
# route to in its main table: only the provider mark (SO_MARK + policy
# routing) and SO_BINDTODEVICE decide which provider a probe leaves through,
# and counters in hlt-pa / hlt-pb show that it was the right one.  A third
# provider, isp-c on wan2, has no interface at start; wan2 (to hlt-pa,
# 100.64.0.0/24) is created later.  isp-6 probes an IPv6 target over wan1
# (best effort: skipped where IPv6 is off).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
NS_GW=hlt-gw NS_A=hlt-pa NS_B=hlt-pb
INTERVAL=200 TIMEOUT=150 FALL=3 RISE=2
SLACK=3000		# generous: a loaded 2-core machine
tmp=$(mktemp -d /tmp/t_health.XXXXXX)
out=$tmp/probe.out err=$tmp/probe.err
probe_pid=

n=0 failed=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi; }
diag() { echo "# $*"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

cleanup() {
	if [ -n "$probe_pid" ] && kill -0 "$probe_pid" 2>/dev/null; then
		kill "$probe_pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$probe_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$probe_pid" 2>/dev/null
	fi
	for ns in $NS_GW $NS_A $NS_B; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$tmp"
}

if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root"; exit 0; fi
probe=
for p in "${UPLINKD_BUILD:-/nonexistent}/tests/unit/health_probe" \
    "$top/tests/unit/health_probe" "$top/_build/plain/tests/unit/health_probe"; do
	[ -x "$p" ] && { probe=$p; break; }
done
if [ -z "$probe" ]; then ok 1 "health_probe is built"; echo "1..$n"; exit 1; fi

# Leftovers of an earlier run (ours only, by name).
for ns in $NS_GW $NS_A $NS_B; do ip netns del "$ns" 2>/dev/null; done
trap cleanup EXIT

gw() { ip netns exec $NS_GW "$@"; }
pa() { ip netns exec $NS_A "$@"; }
pb() { ip netns exec $NS_B "$@"; }

setup() {
	set -e
	for ns in $NS_GW $NS_A $NS_B; do ip netns add $ns; ip -n $ns link set lo up; done
	ip link add wan0 netns $NS_GW type veth peer name up0 netns $NS_A
	ip link add wan1 netns $NS_GW type veth peer name up0 netns $NS_B
	gw sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
	ip -n $NS_GW addr add 198.51.100.2/24 dev wan0
	ip -n $NS_GW addr add 203.0.113.2/24 dev wan1
	ip -n $NS_GW link set wan0 up
	ip -n $NS_GW link set wan1 up
	gw sysctl -qw net.ipv4.conf.wan0.rp_filter=0 net.ipv4.conf.wan1.rp_filter=0
	ip -n $NS_A addr add 198.51.100.1/24 dev up0
	ip -n $NS_A addr add 192.0.2.1/32 dev lo
	ip -n $NS_A link set up0 up
	ip -n $NS_B addr add 203.0.113.1/24 dev up0
	ip -n $NS_B addr add 192.0.2.1/32 dev lo
	ip -n $NS_B link set up0 up
	# Policy routing as uplinkd installs it.
	ip -n $NS_GW rule add fwmark 0x100/0xff00 table 100
	ip -n $NS_GW rule add fwmark 0x200/0xff00 table 101
	ip -n $NS_GW rule add fwmark 0x300/0xff00 table 102
	ip -n $NS_GW route add default via 198.51.100.1 dev wan0 table 100
	ip -n $NS_GW route add default via 203.0.113.1 dev wan1 table 101
	# isp-v: wan1 again, from a VIP this node holds at start (as a master
	# does) and loses later (as keepalived moves it to the peer).
	ip -n $NS_GW addr add 203.0.113.10/24 dev wan1
	ip -n $NS_GW rule add fwmark 0x500/0xff00 table 101
	# Counters (no target: count and continue) for echo requests per source.
	for ns in $NS_A $NS_B; do
		ip netns exec $ns iptables -A INPUT -p icmp --icmp-type echo-request -s 198.51.100.2 -d 192.0.2.1
		ip netns exec $ns iptables -A INPUT -p icmp --icmp-type echo-request -s 203.0.113.2 -d 192.0.2.1
		ip netns exec $ns iptables -A INPUT -p icmp --icmp-type echo-request -s 203.0.113.10 -d 192.0.2.1
	done
	set +e
	has6=0
	ip -n $NS_GW addr add 2001:db8:b::2/64 dev wan1 nodad 2>/dev/null &&
		ip -n $NS_B addr add 2001:db8:b::1/64 dev up0 nodad 2>/dev/null && has6=1
	return 0
}

# Packets counted by the rule matching source $2 in namespace $1.
count() {
	ip netns exec "$1" iptables -nvxL INPUT |
		awk -v s="$2" '{ for (i = 2; i < NF; i++) if ($i == s && $(i + 1) == "192.0.2.1") { print $1; exit } }'
}

# wait_for PATTERN MS: true once PATTERN is in the probe output.
wait_for() {
	local end=$(( $(now_ms) + $2 ))
	while [ "$(now_ms)" -lt $end ]; do
		grep -qE "$1" "$out" && return 0
		sleep 0.05
	done
	grep -qE "$1" "$out"
}

# wait_count PATTERN N MS: true once PATTERN is on N lines of the output.
wait_count() {
	local end=$(( $(now_ms) + $3 ))
	while [ "$(grep -cE "$1" "$out")" -lt "$2" ] && [ "$(now_ms)" -lt $end ]; do
		sleep 0.05
	done
	[ "$(grep -cE "$1" "$out")" -ge "$2" ]
}

# Line number of the first match, or 0.
line_of() { local l; l=$(grep -nE "$1" "$out" | head -1 | cut -d: -f1); echo "${l:-0}"; }

if ! setup >"$tmp/setup.log" 2>&1; then
	sed 's/^/# /' "$tmp/setup.log"
	ok 1 "topology set up"; echo "1..$n"; exit 1
fi
ok 0 "topology set up"

# Started directly (not through a shell function) so that $! is the probe.
ip netns exec $NS_GW "$probe" -v -d 90000 -i $INTERVAL -t $TIMEOUT -f $FALL -r $RISE \
	-p isp-a,wan0,198.51.100.1,198.51.100.10,0x100,192.0.2.1 \
	-p isp-b,wan1,203.0.113.1,203.0.113.2,0x200,192.0.2.1 \
	-p isp-c,wan2,100.64.0.1,100.64.0.2,0x300,100.64.0.1 \
	-p isp-6,wan1,2001:db8:b::1,2001:db8:b::2,0x400,2001:db8:b::1 \
	-p isp-v,wan1,203.0.113.1,203.0.113.10,0x500,192.0.2.1 >"$out" 2>"$err" &
probe_pid=$!

wait_for '^[0-9]+ START' 5000
ok $? "health_probe started"
grep -qE '^[0-9]+ START isp-a=up isp-b=up isp-c=up isp-6=up' "$out"; ok $? "providers start up"
wait_for 'EVENT isp-c LINK_DOWN interface missing' 3000; ok $? "missing interface: isp-c LINK_DOWN"
wait_for 'EVENT isp-c DOWN link down' 1000; ok $? "missing interface: isp-c DOWN"
grep -q 'interface wan2 does not exist' "$err"; ok $? "missing interface logged"
sleep $(( (FALL + 3) * INTERVAL / 1000 + 1 ))
! grep -qE 'EVENT isp-(a|b) ' "$out"; ok $? "isp-a and isp-b stay up while targets answer"
grep -q 'isp-a: source address not assigned here' "$err"; ok $? "isp-a: unassigned source falls back to the interface address"
! grep -q 'isp-b: source address not assigned' "$err"; ok $? "isp-b: assigned source is bound"

a1=$(count $NS_A 198.51.100.2) b1=$(count $NS_B 203.0.113.2)
diag "echo requests so far: via hlt-pa $a1, via hlt-pb $b1"
[ "${a1:-0}" -gt 0 ]; ok $? "isp-a probes arrive in hlt-pa from wan0's address"
[ "${b1:-0}" -gt 0 ]; ok $? "isp-b probes arrive in hlt-pb from wan1's address"

if [ $has6 = 1 ]; then
	! grep -q 'EVENT isp-6 ' "$out"; ok $? "isp-6 (IPv6 target) stays up while it answers"
else
	ok 0 "isp-6 (IPv6 target) stays up while it answers # SKIP no IPv6"
fi

# The VIP isp-v's sockets are bound to moves away: the next round's
# sockets bind to wan1's own address, and isp-v stays up.
v1=$(count $NS_B 203.0.113.10)
[ "${v1:-0}" -gt 0 ]; ok $? "isp-v probes arrive in hlt-pb from the VIP it holds ($v1)"
ip -n $NS_GW addr del 203.0.113.10/24 dev wan1
sleep $(( (FALL + 3) * INTERVAL / 1000 + 1 ))
! grep -qE 'EVENT isp-v DOWN' "$out"; ok $? "isp-v stays up after its VIP left (the probes bind anew)"

# Provider A stops answering.
t0=$(now_ms)
pa iptables -A INPUT -p icmp -j DROP
limit=$(( FALL * INTERVAL + INTERVAL + SLACK ))
wait_for 'EVENT isp-a DOWN' $limit; rc=$?
diag "isp-a DOWN after $(( $(now_ms) - t0 )) ms (limit $limit)"
ok $rc "ICMP dropped in hlt-pa: isp-a DOWN within fall*interval+interval+slack"
grep -q "EVENT isp-a DOWN $FALL rounds without 1 of 1 replies" "$out"; ok $? "isp-a DOWN reason names the rounds"
! grep -qE 'EVENT isp-b ' "$out"; ok $? "isp-b stays up"

t0=$(now_ms)
pa iptables -D INPUT -p icmp -j DROP
limit=$(( RISE * INTERVAL + INTERVAL + SLACK ))
wait_for 'EVENT isp-a UP' $limit; rc=$?
diag "isp-a UP after $(( $(now_ms) - t0 )) ms (limit $limit)"
ok $rc "drop removed: isp-a UP after rise rounds"
grep -q "EVENT isp-a UP $RISE good rounds" "$out"; ok $? "isp-a UP reason"

# Provider B loses its link.
t0=$(now_ms)
ip -n $NS_GW link set wan1 down
wait_for 'EVENT isp-b DOWN' 1500; rc=$?
diag "isp-b DOWN after $(( $(now_ms) - t0 )) ms"
ok $rc "wan1 down: isp-b DOWN at once"
lD=$(line_of 'EVENT isp-b LINK_DOWN link down') lX=$(line_of 'EVENT isp-b DOWN link down')
[ "$lD" -gt 0 ] && [ "$lX" -gt "$lD" ]; ok $? "isp-b LINK_DOWN, then DOWN with reason \"link down\""

t0=$(now_ms)
ip -n $NS_GW link set wan1 up
wait_for 'EVENT isp-b LINK_UP' 3000; ok $? "wan1 up: isp-b LINK_UP"
# The kernel dropped table 101's route with the link; the owner re-installs
# it on LINK_UP, as uplinkd does.
ip -n $NS_GW route replace default via 203.0.113.1 dev wan1 table 101
wait_for 'EVENT isp-b UP' $(( RISE * INTERVAL + INTERVAL + SLACK )); rc=$?
diag "isp-b UP after $(( $(now_ms) - t0 )) ms"
ok $rc "isp-b UP after rise rounds"
lU=$(line_of 'EVENT isp-b LINK_UP') lX=$(line_of 'EVENT isp-b UP')
[ "$lU" -gt 0 ] && [ "$lX" -gt "$lU" ]; ok $? "isp-b LINK_UP comes before UP"
[ "$(grep -c 'EVENT isp-a ' "$out")" = 2 ]; ok $? "isp-a unaffected by wan1"

# The missing interface appears.
ip link add wan2 netns $NS_GW type veth peer name up1 netns $NS_A &&
	ip -n $NS_GW addr add 100.64.0.2/24 dev wan2 &&
	ip -n $NS_A addr add 100.64.0.1/24 dev up1 &&
	ip -n $NS_A link set up1 up && ip -n $NS_GW link set wan2 up &&
	ip -n $NS_GW route add default via 100.64.0.1 dev wan2 table 102
ok $? "wan2 created"
wait_for 'EVENT isp-c LINK_UP' 3000; ok $? "new interface: isp-c LINK_UP"
wait_for 'EVENT isp-c UP' $(( RISE * INTERVAL + INTERVAL + SLACK )); ok $? "new interface: isp-c UP"

# The interface is deleted and created again (a new ifindex): the probe
# sockets, bound to the old one, must be replaced.
ip -n $NS_GW link del wan2
# (a veth loses its carrier just before it is deleted: the reason may be
# "link down" or "interface gone")
wait_count 'EVENT isp-c LINK_DOWN' 2 3000; ok $? "deleted interface: isp-c LINK_DOWN"
wait_count 'EVENT isp-c DOWN' 2 1000; ok $? "deleted interface: isp-c DOWN"
ip link add wan2 netns $NS_GW type veth peer name up1 netns $NS_A &&
	ip -n $NS_GW addr add 100.64.0.2/24 dev wan2 &&
	ip -n $NS_A addr add 100.64.0.1/24 dev up1 &&
	ip -n $NS_A link set up1 up && ip -n $NS_GW link set wan2 up &&
	ip -n $NS_GW route add default via 100.64.0.1 dev wan2 table 102
ok $? "wan2 created again"
wait_count 'EVENT isp-c UP' 2 $(( RISE * INTERVAL + INTERVAL + SLACK ))
ok $? "re-created interface: isp-c UP again (new probe sockets)"

# Probes went through the right provider only.
a2=$(count $NS_A 198.51.100.2) b2=$(count $NS_B 203.0.113.2)
xa=$(count $NS_A 203.0.113.2) xb=$(count $NS_B 198.51.100.2)
diag "echo requests: hlt-pa from wan0 $a2, from wan1 $xa; hlt-pb from wan1 $b2, from wan0 $xb"
[ "${xa:-1}" = 0 ] && [ "${xb:-1}" = 0 ]; ok $? "no probe crossed to the other provider"
[ "${a2:-0}" -gt "${a1:-0}" ] && [ "${b2:-0}" -gt "${b1:-0}" ]; ok $? "probes kept flowing through both providers"

kill "$probe_pid" 2>/dev/null
for _ in $(seq 50); do kill -0 "$probe_pid" 2>/dev/null || break; sleep 0.1; done
wait "$probe_pid"; rc=$?
probe_pid=
ok $rc "health_probe exits cleanly on SIGTERM"
grep -E '^(STATS|COMBINED)' "$out" | sed 's/^/# /'
grep -qE '^STATS isp-a up=1 link=1 .* replies=[1-9]' "$out"; ok $? "isp-a stats: up, replies counted"
grep -qE '^STATS isp-b up=1 link=1 .* rtt_avg=[0-9]' "$out"; ok $? "isp-b stats: up, RTT measured"
grep -qE '^STATS isp-v up=1 link=1 .* replies=[1-9]' "$out"; ok $? "isp-v stats: up, replies counted (from the VIP, then from wan1's address)"
if [ $has6 = 1 ]; then
	grep -qE '^STATS isp-6 .* replies=[1-9]' "$out"; ok $? "isp-6 stats: IPv6 replies counted"
else
	ok 0 "isp-6 stats: IPv6 replies counted # SKIP no IPv6"
fi
if [ $failed -gt 0 ]; then
	diag "probe output:"; sed 's/^/#   /' "$out"
	diag "probe log (tail):"; tail -30 "$err" | sed 's/^/#   /'
fi
echo "1..$n"
[ $failed -eq 0 ]
