#!/bin/bash
# End-to-end test of one gateway: uplinkd on the real kernel datapath in
# the namespace lab (tests/lab/lab.sh, one gateway, weights 2:1).
# TAP output.  Asserts outcomes (which provider, which source address,
# nothing lost), never speed.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export LAB_PREFIX=${LAB_PREFIX:-ugw}
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"
LT=$(lab_labtraffic) || { echo "Bail out! labtraffic not built"; exit 1; }
SNAT_A=198.51.100.10
SNAT_B=203.0.113.10
SRV=192.0.2.10

# shellcheck source=tests/lab/tap.sh
. "$top/tests/lab/tap.sh"
cleanup() {
	lab_stop long >/dev/null 2>&1
	lab_stop server >/dev/null 2>&1
	lab_stop uplinkd-gw1 >/dev/null 2>&1
	# Freeing a big conntrack table with the namespace is slow; flush first.
	lab_exec gw1 conntrack -F >/dev/null 2>&1
	lab_down >/dev/null 2>&1
}
trap cleanup EXIT

# A value out of `uplinkctl --json CMD`: jget 'd["providers"][0]["state"]' CMD...
jget() { lab_jget gw1 "$@"; }
provider_state() { jget "[p['state'] for p in d['providers'] if p['name']=='$1'][0]" status; }

# Server report lines for TCP ids in [lo, hi): prints "A B OTHER".
server_report() {
	rm -f "$LAB_DIR/server.report"
	kill -USR1 "$(cat "$LAB_DIR/server.pid")"
	lab_wait_for "test -s $LAB_DIR/server.report" 10
}
count_sources() {
	server_report
	awk -v lo="$1" -v hi="$2" -v a="$SNAT_A" -v b="$SNAT_B" '
		$1 == "tcp" {
			split($2, f, "="); id = f[2]
			if (id == "-" || id + 0 < lo || id + 0 >= hi) next
			split($3, p, "="); split(p[2], ip, ":")
			if (ip[1] == a) na++; else if (ip[1] == b) nb++; else other++
		}
		END { printf "%d %d %d\n", na, nb, other }' "$LAB_DIR/server.report"
}
short() {	# short ID_BASE COUNT
	lab_exec client "$LT" short --to "$SRV:5001" --count "$2" --concurrency 8 \
		--src-from 10.0.0.100 --src-count 50 --id-base "$1" --timeout 30 --deadline 120
}

lab_down >/dev/null 2>&1
lab_up 1 >/dev/null || { echo "Bail out! lab up failed"; exit 1; }
lab_uplinkd_config gw1 wrr 2 1
lab_uplinkd_start gw1
lab_wait_for "lab_uplinkctl gw1 status" 20
ok $? "uplinkd starts and answers on its control socket"
ok "$([ "$(jget 'd["role"]' status)" = master ] && echo 0 || echo 1)" "a node without a peer is master"
lab_wait_for '[ "$(provider_state isp-a)" = up ] && [ "$(provider_state isp-b)" = up ]' 10
ok $? "both providers up"
lab_exec gw1 iptables-save | grep -q -- "-j NFQUEUE --queue-num 0 --queue-bypass"
ok $? "queue rule installed with bypass"

lab_start_bg srv server "$LT" server --tcp 5001 --udp 5002 --report "$LAB_DIR/server.report" \
	--deadline 900
lab_wait_for "lab_exec srv ss -ltn | grep -q :5001" 10
# Long-lived connections (ids 1..6) and UDP flows: spread 2:1 by wrr.
lab_start_bg client long "$LT" long --to "$SRV:5001" --conns 6 --udp-flows 4 --udp-port 5002 \
	--rate 20 --until-file "$LAB_DIR/stop-long" --id-base 1 --deadline 600
sleep 2

# --- weights, source addresses ---
short 10000 300 >"$LAB_DIR/short1.out" 2>&1
ok $? "300 short connections through the gateway"
read -r na nb other < <(count_sources 10000 10300)
diag "server saw isp-a=$na isp-b=$nb other=$other"
ok "$([ "$other" -eq 0 ] && [ $((na + nb)) -eq 300 ] && echo 0 || echo 1)" \
	"every connection arrives from a provider's SNAT address"
ratio_ok=$(python3 -c "r=$na/max($nb,1); print(0 if abs(r-2.0)/2.0 <= 0.10 else 1)")
ok "$ratio_ok" "weights 2:1 respected within 10% (ratio $na:$nb)"
nflows=$(jget 'd["flows"]["own"]' status)
ok "$([ "${nflows:-0}" -ge 6 ] && echo 0 || echo 1)" "conntrack events feed the flow table ($nflows own flows)"
lab_uplinkctl gw1 --json flows --provider isp-b --limit 5 >"$LAB_DIR/flows.json"
python3 - "$LAB_DIR/flows.json" "$SNAT_B" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ok = d["flows"] and all(f["provider"] == "isp-b" and f["nat_src"] == sys.argv[2] and f["nat_port"] > 0 for f in d["flows"])
sys.exit(0 if ok and len(d["flows"]) <= 5 else 1)
PY
ok $? "uplinkctl flows shows provider, translated address and port"

# Which provider carries each long connection.
server_report
long_on() { awk -v ip="$1" '$1=="tcp" { split($2,f,"="); if (f[2]!="-" && f[2]+0>=1 && f[2]+0<=6) { split($3,p,"="); split(p[2],a,":"); if (a[1]==ip) print f[2] } }' "$LAB_DIR/server.report"; }
long_a=$(long_on $SNAT_A | head -1)
long_b=$(long_on $SNAT_B | head -1)
ok "$([ -n "$long_a" ] && [ -n "$long_b" ] && echo 0 || echo 1)" "long-lived connections on both providers (a:$long_a b:$long_b)"
records_of() { server_report; awk -v id="$1" '$1=="tcp" && $2=="id="id { for (i=1;i<=NF;i++) if ($i ~ /^records=/) { split($i,r,"="); print r[2] } }' "$LAB_DIR/server.report"; }
# The records of connection ID once they passed BEFORE (within 5 s): the
# long connections send every 50 ms, so a short phase between two reports
# may see none arrive.
records_after() {
	local id=$1 before=${2:-0} n i
	for ((i = 0; i < 50; i++)); do
		n=$(records_of "$id")
		[ "${n:-0}" -gt "$before" ] && break
		sleep 0.1
	done
	echo "$n"
}
field_of() { awk -v id="$1" -v k="$2" '$1=="tcp" && $2=="id="id { for (i=1;i<=NF;i++) if (index($i, k"=")==1) { print substr($i, length(k)+2) } }' "$LAB_DIR/server.report"; }

# --- provider A fails its probes ---
t0=$(date +%s.%N)
lab_exec pa iptables -I INPUT -p icmp -j DROP
lab_wait_for '[ "$(provider_state isp-a)" = down ]' 15
ok $? "isp-a goes down when its probes are dropped"
t1=$(date +%s.%N)
took=$(python3 -c "print(round($t1-$t0,2))")
# fall*interval plus one interval is 0.8 s; the rest is slack for a loaded
# 2-core machine and the 0.1 s polling.
ok "$(python3 -c "print(0 if $took < 3.0 else 1)")" "isp-a taken down in $took s (fall*interval+interval = 0.8 s)"
short 20000 60 >/dev/null 2>&1
ok $? "60 connections while isp-a is down"
read -r na nb other < <(count_sources 20000 20060)
ok "$([ "$na" -eq 0 ] && [ "$nb" -eq 60 ] && echo 0 || echo 1)" "all new connections go to isp-b ($na/$nb)"
server_report
gap=$(field_of "$long_b" max_gap_ms)
ok "$(python3 -c "print(0 if float('${gap:-9999}') < 1000 else 1)")" "long connection on isp-b never stalled (max gap ${gap} ms)"

lab_exec pa iptables -D INPUT -p icmp -j DROP
lab_wait_for '[ "$(provider_state isp-a)" = up ]' 15
ok $? "isp-a comes back after rise good rounds"
short 30000 60 >/dev/null 2>&1
read -r na nb other < <(count_sources 30000 30060)
ok "$([ "$na" -ge 30 ] && [ "$nb" -ge 10 ] && echo 0 || echo 1)" "isp-a gets new connections again ($na/$nb)"

# --- drain ---
lab_uplinkctl gw1 drain isp-a >/dev/null
ok $? "uplinkctl drain isp-a"
ok "$([ "$(provider_state isp-a)" = draining ] && echo 0 || echo 1)" "isp-a shows draining"
before=$(records_of "$long_a")
short 40000 60 >/dev/null 2>&1
read -r na nb other < <(count_sources 40000 40060)
ok "$([ "$na" -eq 0 ] && [ "$nb" -eq 60 ] && echo 0 || echo 1)" "a drained provider gets no new connections ($na/$nb)"
after=$(records_after "$long_a" "$before")
ok "$([ "${after:-0}" -gt "${before:-0}" ] && [ "$(field_of "$long_a" reset)" = no ] && echo 0 || echo 1)" \
	"an existing isp-a connection keeps working while drained ($before -> $after records)"
lab_uplinkctl gw1 undrain isp-a >/dev/null
ok "$([ "$(provider_state isp-a)" = up ] && echo 0 || echo 1)" "undrain"
lab_uplinkctl gw1 drain nosuch >/dev/null 2>&1
ok "$([ $? -eq 2 ] && echo 0 || echo 1)" "draining an unknown provider is a usage error (exit 2)"

# --- reload ---
cp "$LAB_DIR/gw1.yaml" "$LAB_DIR/gw1.yaml.good"
printf 'providers: [\n' >>"$LAB_DIR/gw1.yaml"
kill -HUP "$(cat "$LAB_DIR/uplinkd-gw1.pid")"
sleep 1
out=$(lab_uplinkctl gw1 reload 2>&1)
rc=$?
ok "$([ $rc -eq 1 ] && echo 0 || echo 1)" "reload of a broken file fails (exit $rc): $out"
case $out in *gw1.yaml:*:*) r=0 ;; *) r=1 ;; esac
ok $r "the error names file:line:column"
ok "$([ "$(jget '[p["weight"] for p in d["providers"]]' status)" = "[2, 1]" ] && echo 0 || echo 1)" \
	"after SIGHUP with a broken file the old config is still active"
grep -q "reload failed, keeping the running configuration" "$LAB_DIR/uplinkd-gw1.log"
ok $? "the daemon logged why the reload failed"
sed -e 's/weight: 2/weight: 1/' "$LAB_DIR/gw1.yaml.good" >"$LAB_DIR/gw1.yaml"
before=$(records_of "$long_a")
lab_uplinkctl gw1 reload >/dev/null
ok $? "reload of a good file"
ok "$([ "$(jget '[p["weight"] for p in d["providers"]]' status)" = "[1, 1]" ] && echo 0 || echo 1)" \
	"new weights active after reload"
sleep 1
after=$(records_after "$long_a" "$before")
ok "$([ "${after:-0}" -gt "${before:-0}" ] && echo 0 || echo 1)" "a weight change keeps existing connections"

# --- a reload that puts the providers in another order (marks and tables
# given, so they stay): every known flow keeps its provider ---
cp "$LAB_DIR/gw1.yaml" "$LAB_DIR/gw1.yaml.inorder"
python3 - "$LAB_DIR/gw1.yaml.inorder" "$LAB_DIR/gw1.yaml" <<'PY'
import sys
t = open(sys.argv[1]).read()
a, b, e = t.index("  - name: isp-a"), t.index("  - name: isp-b"), t.index("balance:")
pin = lambda p, m, tb: p.replace("    interface:", "    mark: %s\n    table: %d\n    interface:" % (m, tb), 1)
open(sys.argv[2], "w").write(t[:a] + pin(t[b:e], "0x200", 101) + pin(t[a:b], "0x100", 100) + t[e:])
PY
# Each flow's provider must be the one whose address it is translated to.
flows_consistent() {
	lab_uplinkctl gw1 --json flows --limit 100000 | python3 -c '
import json, sys
want = {"isp-a": "198.51.100.10", "isp-b": "203.0.113.10"}
fl = json.load(sys.stdin)["flows"]
bad = [f for f in fl if want.get(f["provider"]) != f["nat_src"]]
print(len(fl), len(bad))
sys.exit(1 if bad or not fl else 0)'
}
c0=$(flows_consistent)
lab_uplinkctl gw1 reload >/dev/null
ok $? "reload with the providers in the other order"
ok "$([ "$(jget '[p["name"] for p in d["providers"]]' status)" = "['isp-b', 'isp-a']" ] && echo 0 || echo 1)" \
	"the new order is active"
c1=$(flows_consistent)
ok $? "every flow kept its provider across the reorder (flows, wrong: $c0 before, $c1 after)"
cp "$LAB_DIR/gw1.yaml.inorder" "$LAB_DIR/gw1.yaml"
lab_uplinkctl gw1 reload >/dev/null
ok $? "reload back to the original order"

# --- the daemon dies: bypass + kernel fallback ---
nflows_before=$(jget 'd["flows"]["own"]' status)
pid=$(cat "$LAB_DIR/uplinkd-gw1.pid")
kill -9 "$pid"
wait "$pid" 2>/dev/null	# reap it: a zombie still answers kill -0
sleep 0.5
short 60000 60 >/dev/null 2>&1
ok $? "new connections still succeed with the daemon dead (queue bypass)"
read -r na nb other < <(count_sources 60000 60060)
ok "$([ "$other" -eq 0 ] && [ "$na" -gt 0 ] && [ "$nb" -gt 0 ] && echo 0 || echo 1)" \
	"kernel fallback balances and translates them ($na/$nb/$other)"
before=$(records_of "$long_a")
sleep 1
after=$(records_after "$long_a" "$before")
ok "$([ "${after:-0}" -gt "${before:-0}" ] && echo 0 || echo 1)" "existing connections keep flowing without the daemon"
lab_uplinkd_start gw1
lab_wait_for "lab_uplinkctl gw1 status" 20
ok $? "a restarted daemon comes up over its own leftover rules"
nrules=$(lab_exec gw1 iptables-save | grep -c -- "-j UPLINKD-PRE")
ok "$([ "$nrules" -eq 1 ] && echo 0 || echo 1)" "no duplicated rules after restart ($nrules jump)"
nflows=$(jget 'd["flows"]["own"]' status)
ok "$([ "${nflows:-0}" -ge 10 ] && echo 0 || echo 1)" "a restarted daemon re-learns existing flows ($nflows, had $nflows_before)"

# --- outcome of the long-lived traffic ---
touch "$LAB_DIR/stop-long"
lab_wait_for "! kill -0 $(cat "$LAB_DIR/long.pid") 2>/dev/null" 20
summary=$(grep '^long:' "$LAB_DIR/long.log" | tail -1)
diag "$summary"
case $summary in *" broken=0 "*) r=0 ;; *) r=1 ;; esac
ok $r "no long-lived connection broke during the whole test"
# A TCP stall past one retransmission timeout means packets were lost
# somewhere (a reload or restart that left a moment without rules).
gap=$(echo "$summary" | sed -n 's/.* max_gap_ms=\([0-9.]*\).*/\1/p')
ok "$(python3 -c "print(0 if float('${gap:-9999}') < 1500 else 1)")" "no long-lived connection stalled (max gap $gap ms)"
usent=$(echo "$summary" | sed -n 's/.* udp_sent=\([0-9]*\).*/\1/p')
uecho=$(echo "$summary" | sed -n 's/.* udp_echoed=\([0-9]*\).*/\1/p')
ok "$(python3 -c "print(0 if ${usent:-0} > 0 and ${uecho:-0} >= 0.99 * ${usent:-0} else 1)")" \
	"UDP flows kept flowing ($uecho of $usent datagrams echoed)"
leaks=$(lab_leaks)
ok "$([ "${leaks:-1}" -eq 0 ] && echo 0 || echo 1)" "nothing left towards a provider untranslated ($leaks leaked)"

# --- the leak guard: a packet with a provider mark that NAT never saw ---
# Untracked packets skip NAT; marked, they are routed out provider A with
# the client's own address, the case the guard is there for.
guard_count() {
	lab_uplinkctl gw1 metrics | sed -n 's/^uplinkd_leak_guard_dropped_total //p'
}
guard_count_nft() {
	lab_exec gw1 nft list counter ip uplinkd leaked | sed -n 's/.*packets \([0-9]*\) .*/\1/p'
}
raw_rules() {
	lab_exec gw1 iptables -w -t raw "$1" PREROUTING -i lan0 -p udp --dport 5999 -j NOTRACK &&
		lab_exec gw1 iptables -w -t raw "$1" PREROUTING -i lan0 -p udp --dport 5999 \
			-j MARK --set-xmark 0x100/0x300
}
g0=$(guard_count)
raw_rules -I
for ((i = 0; i < 5; i++)); do
	lab_exec client bash -c 'echo leak > /dev/udp/192.0.2.10/5999'
done
lab_wait_for "[ \$(guard_count) -ge $((${g0:-0} + 5)) ]" 10
ok $? "the leak guard dropped 5 untranslated datagrams towards provider A ($g0 -> $(guard_count))"
ok "$([ "$(guard_count)" = "$(guard_count_nft)" ] && echo 0 || echo 1)" \
	"uplinkctl metrics shows the guard's own counter ($(guard_count_nft) in nft)"
raw_rules -D
# The daemon reads the counter every 10 s and says what it dropped.
lab_wait_for "grep -q 'the leak guard dropped [0-9]* packets' '$LAB_DIR/uplinkd-gw1.log'" 25
ok $? "the daemon logged the drops: $(grep -o 'the leak guard dropped [0-9]* packets' "$LAB_DIR/uplinkd-gw1.log" | tail -1)"
ok "$([ "$(jget 'd["rules"]["watched"]' status)" = True ] &&
	[ "$(jget 'd["rules"]["leak_guard_dropped"]' status)" -ge 5 ] && echo 0 || echo 1)" \
	"uplinkctl status: rules watched, the guard's drops as of the last watch ($(jget 'd["rules"]' status))"
leaks=$(lab_leaks)
ok "$([ "${leaks:-1}" -eq 0 ] && echo 0 || echo 1)" "none of them reached the provider ($leaks leaked)"

# --- conntrack DESTROY events remove flows ---
before=$(jget 'd["flows"]["own"]' status)
lab_exec gw1 conntrack -D -s 10.0.0.149 >/dev/null 2>&1
lab_wait_for "[ \$(jget 'd[\"flows\"][\"own\"]' status) -lt $before ]" 10
ok $? "flows deleted from conntrack leave the flow table ($before -> $(jget 'd["flows"]["own"]' status))"

# --- two pings from one host to one server at once ---
# ICMP flow keys have no ports, so both echo sessions have one key: the
# second must get a decision of its own, not be taken for the first one's
# missing entry (the safety net cannot write an ICMP entry).
net0=$(jget 'd["queue"]["safety_net"]' status)
lab_exec client python3 "$top/tests/lab/pingid.py" "$SRV" 1111 8 1 >"$LAB_DIR/ping-a.out" 2>&1 &
ping_a=$!
sleep 1.5
lab_exec client python3 "$top/tests/lab/pingid.py" "$SRV" 2222 4 1 >"$LAB_DIR/ping-b.out" 2>&1
wait $ping_a
received() { sed -n 's/.* received=\([0-9]*\).*/\1/p' "$1"; }
pa=$(received "$LAB_DIR/ping-a.out") pb=$(received "$LAB_DIR/ping-b.out")
ok "$([ "${pa:-0}" -ge 7 ] && [ "${pb:-0}" -ge 3 ] &&
	[ "$(jget 'd["queue"]["safety_net"]' status)" = "$net0" ] && echo 0 || echo 1)" \
	"two pings from one host to one server at once are both answered (id 1111: $pa of 8, id 2222: $pb of 4)"

# --- event overrun: the daemon misses events and resyncs from a dump ---
# While the resync's dump runs, half of the entries go away: their
# DESTROY events and the dump race, and the table must still end exact.
# The test's own connections go first: expiring one by one (TIME_WAIT),
# they would leave the two counts apart at every sample.
marked() { lab_exec gw1 conntrack -L 2>/dev/null | grep -cE 'mark=(256|512) '; }
lab_exec gw1 conntrack -D -s 10.0.0.0/24 >/dev/null 2>&1
lab_wait_for "[ \$(jget 'd[\"flows\"][\"own\"]' status) -eq 0 ]" 20
# One UDP flow (10.0.0.140:40140) whose end the daemon will not hear of.
UE=$top/tests/lab/udpecho.py
lab_start_bg srv udpecho python3 "$UE" server 5009 "$LAB_DIR/udpecho.log"
lab_wait_for "lab_exec srv ss -lun | grep -q :5009" 10
lab_exec client python3 "$UE" once 10.0.0.140 40140 "$SRV" 5009 first 5 >/dev/null
flowf() { jget '[f for f in d["flows"] if f["src"] == "10.0.0.140" and f["sport"] == 40140]' flows; }
lab_wait_for "[ \"\$(flowf)\" != '[]' ]" 10
read -r nat_ip nat_port < <(jget '["%s %d" % (f["nat_src"], f["nat_port"]) for f in d["flows"]
	if f["src"] == "10.0.0.140" and f["sport"] == 40140][0]' flows)
failed0=$(jget 'd["queue"]["safety_net_failed"]' status)
pid=$(cat "$LAB_DIR/uplinkd-gw1.pid")
kill -STOP "$pid"
lab_exec gw1 "$UPLINKD_BUILD/tests/bench/ctgen" -n 150000 >/dev/null
# With the event socket overrun, the flow's entry goes unheard, and
# another entry takes its translated address and port: the next datagram
# is NEW to the kernel, a known flow to the daemon, and the entry the
# safety net writes for it is refused (the NAT port is taken).
lab_exec gw1 conntrack -D -p udp -s 10.0.0.140 --sport 40140 >/dev/null 2>&1
lab_exec gw1 conntrack -I -p udp -s 10.0.0.141 -d "$SRV" --sport 40141 --dport 5009 \
	-r "$SRV" -q "$nat_ip" --reply-port-src 5009 --reply-port-dst "$nat_port" -t 120 >/dev/null 2>&1
lab_exec client python3 "$UE" once 10.0.0.140 40140 "$SRV" 5009 second 20 >"$LAB_DIR/udpecho.second" 2>&1 &
second=$!
sleep 1
kill -CONT "$pid"
wait $second
r=$?
lab_wait_for "grep -q 'resyncing from a dump' $LAB_DIR/uplinkd-gw1.log" 60
src2=$(awk '$1 == "second" { print $2 }' "$LAB_DIR/udpecho.log" | tail -1)
ok "$([ $r -eq 0 ] && [ -n "$src2" ] && [ "$src2" != "$nat_ip:$nat_port" ] &&
	[ "$(jget 'd["queue"]["safety_net_failed"]' status)" -gt "${failed0:-0}" ] && echo 0 || echo 1)" \
	"a known flow whose entry the kernel refuses gets a fresh decision, not a drop (echoed: $([ $r -eq 0 ] && echo yes || echo no), from $src2, was $nat_ip:$nat_port)"
lab_stop udpecho >/dev/null
lab_exec gw1 conntrack -D -m 512/0x300 >/dev/null 2>&1
want=$(marked)
lab_wait_for "[ \$(jget 'd[\"flows\"][\"own\"]' status) -eq \$(marked) ]" 30
have=$(jget 'd["flows"]["own"]' status)
ok "$([ "$have" -eq "$(marked)" ] && echo 0 || echo 1)" \
	"after 150000 events the flow table matches conntrack exactly ($have flows, $want marked entries)"
lab_uplinkctl gw1 metrics >"$LAB_DIR/metrics.txt"
enobufs=$(awk '/^uplinkd_ct_enobufs_total/ { print $2 }' "$LAB_DIR/metrics.txt")
resyncs=$(awk '/^uplinkd_flow_resyncs_total/ { print $2 }' "$LAB_DIR/metrics.txt")
diag "event overruns: $enobufs, resyncs: $resyncs"
ok "$([ "${enobufs:-0}" -gt 0 ] && [ "${resyncs:-0}" -ge 2 ] && echo 0 || echo 1)" \
	"the overrun was counted and answered with a resync"
python3 "$top/tests/lab/promcheck.py" "$LAB_DIR/metrics.txt" >"$LAB_DIR/promcheck.out" 2>&1
r=$?
ok $r "uplinkctl metrics is well-formed Prometheus text, HELP and TYPE for every metric ($(tail -1 "$LAB_DIR/promcheck.out"))"
[ $r -eq 0 ] || diag "$(head -20 "$LAB_DIR/promcheck.out")"
# "... in T ms over N loop iterations": the dump left the loop free.
iters=$(grep 'resynced from conntrack' "$LAB_DIR/uplinkd-gw1.log" | tail -1 |
	sed -n 's/.* over \([0-9]*\) loop iterations.*/\1/p')
ok "$([ "${iters:-0}" -ge 10 ] && echo 0 || echo 1)" \
	"the resync's dump ran in the event loop, which kept serving ($iters iterations)"

# --- rules changed by another tool are put back ---
# A firewall reload that flushes the chains uplinkd owns takes the
# provider choice, the NAT and the guard with them; the daemon's watch
# (every 10 s) installs them again.  Here: a jump, a chain, the nft table,
# a policy rule and a provider table's route removed at once (a network
# manager that removes "foreign" rules and routes does the last two).
repairs0=$(lab_uplinkctl gw1 metrics | sed -n 's/^uplinkd_rules_repairs_total //p')
lab_exec gw1 iptables -w -t mangle -D PREROUTING -j UPLINKD-PRE
lab_exec gw1 iptables -w -t nat -F UPLINKD-POST
lab_exec gw1 nft delete table ip uplinkd
lab_exec gw1 ip rule del pref 10001
lab_exec gw1 ip route flush table 100
lab_wait_for "lab_exec gw1 iptables -w -t mangle -C PREROUTING -j UPLINKD-PRE 2>/dev/null &&
	[ \$(lab_exec gw1 iptables -w -t nat -S UPLINKD-POST | grep -c SNAT) -eq 2 ] &&
	lab_exec gw1 nft list chain ip uplinkd leakguard >/dev/null 2>&1 &&
	lab_exec gw1 ip rule list pref 10001 | grep -q lookup &&
	lab_exec gw1 ip route show table 100 | grep -q default" 30
ok $? "the removed jump, chain rules, leak guard, policy rule and route are installed again"
repairs=$(lab_uplinkctl gw1 metrics | sed -n 's/^uplinkd_rules_repairs_total //p')
ok "$([ "${repairs:-0}" -gt "${repairs0:-0}" ] && [ "$(jget 'd["rules"]["repairs"]' status)" = "$repairs" ] &&
	echo 0 || echo 1)" \
	"the repair is counted ($repairs0 -> $repairs) and logged: $(grep -o 'changed by something else ([^)]*)' "$LAB_DIR/uplinkd-gw1.log" | tail -1)"
short 70000 30 >/dev/null 2>&1
read -r na nb other < <(count_sources 70000 70030)
# The weights are 1:1 since the reload above.
ok "$([ "$other" -eq 0 ] && [ $((na + nb)) -eq 30 ] && [ $((na - nb)) -le 2 ] && [ $((nb - na)) -le 2 ] &&
	echo 0 || echo 1)" \
	"after the repair, new connections are balanced 1:1 and translated again (isp-a=$na isp-b=$nb other=$other)"
ok "$([ "$(lab_exec gw1 iptables-save | grep -c -- '-j UPLINKD-PRE')" -eq 1 ] && echo 0 || echo 1)" \
	"and the jumps are not duplicated"

# --- clean stop ---
kill -TERM "$(cat "$LAB_DIR/uplinkd-gw1.pid")"
lab_wait_for "! kill -0 $(cat "$LAB_DIR/uplinkd-gw1.pid") 2>/dev/null" 10
ok $? "SIGTERM stops the daemon"
left=$(lab_exec gw1 iptables-save | grep -c UPLINKD)
lab_exec gw1 nft list table ip uplinkd >/dev/null 2>&1 && left=$((left + 1))
left=$((left + $(lab_exec gw1 ip rule | grep -c 'lookup 10[01]')))
ok "$([ "$left" -eq 0 ] && echo 0 || echo 1)" "everything uplinkd installed is removed ($left left)"

# --- a start that cannot install its iptables rules ---
# A kernel without the NFQUEUE target makes iptables-restore fail after the
# routes and the leak guard went in; a stand-in on PATH fails the same way.
mkdir -p "$LAB_DIR/failbin"
printf '#!/bin/sh\ncat >/dev/null\necho "Couldn'"'"'t load target NFQUEUE: No such file or directory" >&2\nexit 1\n' \
	>"$LAB_DIR/failbin/iptables-restore"
chmod +x "$LAB_DIR/failbin/iptables-restore"
# (A daemon that started anyway is stopped by the timeout: exit 124.)
out=$(lab_exec gw1 timeout 30 env PATH="$LAB_DIR/failbin:$PATH" ASAN_OPTIONS=detect_leaks=0 \
	"$UPLINKD_BUILD/uplinkd" -f -c "$LAB_DIR/gw1.yaml" 2>&1)
rc=$?
left=$(lab_exec gw1 iptables-save | grep -c UPLINKD)
lab_exec gw1 nft list table ip uplinkd >/dev/null 2>&1 && left=$((left + 1))
left=$((left + $(lab_exec gw1 ip rule | grep -c 'lookup 10[01]')))
left=$((left + $(lab_exec gw1 ip route show table all | grep -c 'table 10[01]')))
ok "$([ $rc -eq 1 ] && [ "$left" -eq 0 ] && echo "$out" | grep -q "installing rules: .*load target NFQUEUE" &&
	echo 0 || echo 1)" \
	"a start whose iptables rules fail exits 1, says why and leaves nothing installed (exit $rc, $left left: $(echo "$out" | grep -o 'installing rules: .*' | head -c 90))"
# With a sanitizer build (tests/run-all.sh runs the lab on one) the daemon
# reports memory errors and leaks into its log.
no_sanitizer_report "$LAB_DIR/uplinkd-gw1.log"
ok $? "no sanitizer report in the daemon's log"
echo "1..$n"
