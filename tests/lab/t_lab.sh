#!/bin/bash
# t_lab.sh: proves the lab itself (TAP).  No uplinkd involved: the
# 1-gateway lab runs the kernel-only balancer (static iptables, 2:1), which
# is also the baseline of the benchmarks, and labtraffic drives it.
#
#   - 300 short TCP connections from 50 client addresses all succeed;
#   - the server saw only the two SNAT addresses, split about 2:1;
#   - nothing untranslated reached a provider (and the leak trap does catch
#     an untranslated packet when we make one on purpose);
#   - long-lived TCP and UDP flows run and keep their source at the server;
#   - the 2-gateway lab comes up (twice: leftovers are removed), the sync
#     link and a hand-moved VIP work, and `down` leaves nothing behind.
#
# Uses its own prefix (LAB_PREFIX=ult) so it never touches another lab.
# Needs root.  UPLINKD_BUILD: build directory holding tests/lab/labtraffic
# (default: the repository root).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export LAB_PREFIX=ult
unset LAB_DIR
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"

n=0 failed=0
ok() {
	local rc=$1; shift
	n=$((n + 1))
	if [ "$rc" -eq 0 ]; then
		echo "ok $n - $*"
	else
		echo "not ok $n - $*"
		failed=$((failed + 1))
	fi
}
diag() { printf '%s\n' "$*" | sed 's/^/# /'; }

if [ "$(id -u)" != 0 ]; then
	echo "1..0 # SKIP needs root (network namespaces)"
	exit 0
fi

cleanup() { lab_down >/dev/null 2>&1; }
trap cleanup EXIT
trap 'exit 1' INT TERM

LT=$(lab_labtraffic) || { echo "Bail out! labtraffic not built"; exit 1; }
SRV=192.0.2.10
SNAT_A=198.51.100.10
SNAT_B=203.0.113.10
work=$(mktemp -d /tmp/t_lab.XXXXXX)
trap 'cleanup; rm -rf "$work"' EXIT

# Our namespaces that exist now.
lab_namespaces() { ip netns list | awk -v p="$LAB_PREFIX-" 'index($1, p) == 1 { print $1 }'; }

# ---- one gateway, kernel-only balancer ----

"$top/tests/lab/lab.sh" up --gateways 1
ok $? "lab.sh up --gateways 1"
got=$(lab_namespaces | sort | tr '\n' ' ')
[ "$got" = "ult-client ult-gw1 ult-pa ult-pb ult-srv ult-sw " ]
ok $? "six namespaces ($got)"

lab_start_bg srv server "$LT" server --tcp 5001 --udp 5002 --report "$LAB_DIR/server.report" --deadline 600
ok $? "server started"
lab_wait_for "lab_exec srv ss -ltn | grep -q ':5001 '" 5
ok $? "server listening"

# Before any balancer the gateway has no route to the Internet: nothing
# leaves unbalanced.
! lab_exec client "$LT" short --to $SRV:5001 --count 1 --timeout 1 >/dev/null 2>&1
ok $? "without a balancer the server is unreachable"

lab_kernel_balancer gw1 2 1
ok $? "kernel-only balancer 2:1 on gw1"

out=$(lab_exec client "$LT" short --to $SRV:5001 --count 300 --concurrency 8 \
	--src-from 10.0.0.100 --src-count 50 --timeout 5 --log "$work/short.log")
rc=$?
diag "$out"
echo "$out" | grep -q ' ok=300 failed=0 '
ok $((rc || $?)) "300 short connections through the kernel balancer all succeeded"
srcs=$(awk '{ split($2, a, "[=:]"); print a[2] }' "$work/short.log" | sort -u | wc -l)
[ "$srcs" -eq 50 ]
ok $? "client used 50 source addresses ($srcs)"

rm -f "$LAB_DIR/server.report"
kill -USR1 "$(cat "$LAB_DIR/server.pid")"
lab_wait_for "[ -s '$LAB_DIR/server.report' ]" 5
ok $? "server wrote its report"
# peer=IP:PORT of every TCP connection, as the server saw it.
awk '/^tcp / { for (i = 2; i <= NF; i++) if ($i ~ /^peer=/) { split(substr($i, 6), a, ":"); print a[1] } }' \
	"$LAB_DIR/server.report" >"$work/peers"
total=$(wc -l <"$work/peers")
na=$(grep -cx "$SNAT_A" "$work/peers")
nb=$(grep -cx "$SNAT_B" "$work/peers")
[ "$total" -eq 300 ]
ok $? "server saw 300 connections ($total)"
[ $((na + nb)) -eq "$total" ]
ok $? "server saw only the SNAT addresses ($SNAT_A: $na, $SNAT_B: $nb, other: $((total - na - nb)))"
# The split is random (-m statistic), so the bound must hold for chance:
# A ~ Binomial(300, 2/3), sd 8.2.  A within +-15% of its expected 200
# (170..230, i.e. B 70..130) is +-3.7 sd: a false failure about once in
# 4000 runs.  A +-15% bound on the ratio A/B itself would be +-1.3 sd,
# failing one run in five, so that is not what we test.
[ "$na" -ge 170 ] && [ "$na" -le 230 ]
ok $? "provider split is 2:1 within 15% (A=$na, expected 200 +- 30)"
grep -q 'state=eof' "$LAB_DIR/server.report" && ! grep -q 'reset=yes' "$LAB_DIR/server.report"
ok $? "server: connections closed cleanly, none reset"

# Long-lived TCP connections and UDP flows: the echo path both ways, and
# every UDP flow keeps one source at the server.
out=$(lab_exec client "$LT" long --to $SRV:5001 --conns 6 --udp-flows 6 --udp-port 5002 \
	--rate 20 --duration 1 --src-from 10.0.0.130 --src-count 6 --id-base 1000 \
	--log "$work/long.log")
rc=$?
diag "$out"
echo "$out" | grep -q 'intact=6 broken=0' && ! echo "$out" | grep -q 'udp_echoed=0 '
ok $((rc || $?)) "long-lived TCP and UDP flows ran intact"
rm -f "$LAB_DIR/server.report"
kill -USR1 "$(cat "$LAB_DIR/server.pid")"
lab_wait_for "[ -s '$LAB_DIR/server.report' ]" 5
udp=$(grep -c '^udp id=100[0-5] ' "$LAB_DIR/server.report")
bad=$(grep '^udp ' "$LAB_DIR/server.report" |
	grep -cv -E "peer=($SNAT_A|$SNAT_B):[0-9]+ .*peer_changes=0 ")
[ "$udp" -eq 6 ] && [ "$bad" -eq 0 ]
ok $? "server saw 6 UDP flows from SNAT addresses, none changed source ($udp flows, $bad bad)"

leaks=$(lab_leaks)
[ "$leaks" = 0 ]
ok $? "no untranslated packet reached a provider (leaks=$leaks)"

# The leak trap must catch a leak: route unbalanced, unmarked traffic out
# of provider A without SNAT.
lab_kernel_balancer_off gw1
lab_exec gw1 ip route add default via 198.51.100.1 dev wan0
lab_exec client "$LT" short --to $SRV:5001 --count 1 --timeout 1 >/dev/null 2>&1
leaks=$(lab_leaks)
[ "$leaks" -gt 0 ]
ok $? "the leak trap counts an untranslated packet (leaks=$leaks)"
lab_exec gw1 ip route del default via 198.51.100.1 dev wan0

lab_stop server
[ ! -e "$LAB_DIR/server.pid" ]
ok $? "lab_stop removed the server"

"$top/tests/lab/lab.sh" down
ok $? "lab.sh down"
[ -z "$(lab_namespaces)" ] && [ ! -e "$LAB_DIR" ]
ok $? "nothing left after down (namespaces: $(lab_namespaces | tr '\n' ' '))"

# ---- two gateways ----

"$top/tests/lab/lab.sh" up --gateways 2 >/dev/null && "$top/tests/lab/lab.sh" up --gateways 2
ok $? "lab.sh up --gateways 2, twice (leftovers removed)"
got=$(lab_namespaces | sort | tr '\n' ' ')
[ "$got" = "ult-client ult-gw1 ult-gw2 ult-pa ult-pb ult-srv ult-sw " ]
ok $? "seven namespaces ($got)"
! lab_exec gw1 ip -br addr | grep -q -e '10\.0\.0\.1/' -e "$SNAT_A/" -e "$SNAT_B/"
ok $? "with two gateways nobody holds the VIPs"

lab_start_bg gw2 gwsrv "$LT" server --tcp 5003 --deadline 600 &&
	lab_wait_for "lab_exec gw2 ss -ltn | grep -q ':5003 '" 5
ok $? "server on gw2"
lab_exec gw1 "$LT" short --to 10.255.0.2:5003 --count 3 --timeout 2 >/dev/null
ok $? "sync link gw1 -> gw2"
lab_exec client "$LT" short --to 10.0.0.3:5003 --count 3 --timeout 2 >/dev/null
ok $? "client -> gw2 LAN address"
lab_vip_add gw2 && lab_exec client "$LT" short --to 10.0.0.1:5003 --count 3 --timeout 2 >/dev/null
ok $? "VIP on gw2: client reaches 10.0.0.1 there"
lab_vip_del gw2 && ! lab_exec gw2 ip -br addr | grep -q '10\.0\.0\.1/'
ok $? "lab_vip_del removes the VIPs"
pid=$(cat "$LAB_DIR/gwsrv.pid")

"$top/tests/lab/lab.sh" down
ok $? "lab.sh down (two gateways)"
[ -z "$(lab_namespaces)" ] && [ ! -e "$LAB_DIR" ] && ! kill -0 "$pid" 2>/dev/null
ok $? "nothing left after down: no ult-* namespaces, no state, no processes"

echo "1..$n"
[ "$failed" -eq 0 ]
