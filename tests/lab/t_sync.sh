#!/bin/bash
# End-to-end test of the sync channel: two uplinkd nodes in the namespace
# lab (tests/lab/lab.sh, two gateways; gw1 holds the VIPs and carries the
# traffic, gw2 is the standby) replicate gw1's flows over mutual TLS on the
# sync0 link.  Real kernel, real conntrack, real TLS.  TAP output.
# Asserts outcomes (the standby's cache equals the active node's flows,
# field by field), never speed.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export LAB_PREFIX=${LAB_PREFIX:-usy}
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"
LT=$(lab_labtraffic) || { echo "Bail out! labtraffic not built"; exit 1; }
SRV=192.0.2.10
PKI=$LAB_DIR/pki
SYNC2=10.255.0.2:7410

# shellcheck source=tests/lab/tap.sh
. "$top/tests/lab/tap.sh"
cleanup() {
	lab_stop long >/dev/null 2>&1
	lab_stop server >/dev/null 2>&1
	lab_stop uplinkd-gw1 >/dev/null 2>&1
	lab_stop uplinkd-gw2 >/dev/null 2>&1
	lab_exec gw1 conntrack -F >/dev/null 2>&1
	lab_down >/dev/null 2>&1
}
trap cleanup EXIT

jget() { lab_jget "$@"; }
in_sync() { [ "$(jget "$1" 'd["in_sync"]' status)" = True ]; }
both_in_sync() { in_sync gw1 && in_sync gw2; }
own() { jget gw1 'd["flows"]["own"]' status; }
peer() { jget gw2 'd["flows"]["peer"]' status; }
counter() { jget gw2 "d['sync']['rejected']['$1']" sync; }

# Compares gw1's own flows with gw2's cache of them, every field that a
# takeover needs.  Prints "own=N peer=M missing=X extra=Y differ=Z".
compare() {
	lab_uplinkctl gw1 --json flows --limit 10000000 >"$LAB_DIR/flows1.json" 2>/dev/null
	lab_uplinkctl gw2 --json flows --limit 10000000 >"$LAB_DIR/flows2.json" 2>/dev/null
	python3 - "$LAB_DIR/flows1.json" "$LAB_DIR/flows2.json" <<'PY'
import json, sys
def load(path, origin):
    out = {}
    for f in json.load(open(path))["flows"]:
        if f["origin"] == origin:
            out[(f["proto"], f["src"], f["sport"], f["dst"], f["dport"])] = \
                (f["provider"], f["nat_src"], f["nat_port"], f["mark"])
    return out
a, b = load(sys.argv[1], "own"), load(sys.argv[2], "peer")
missing = sum(1 for k in a if k not in b)
extra = sum(1 for k in b if k not in a)
differ = sum(1 for k in a if k in b and a[k] != b[k])
print(f"own={len(a)} peer={len(b)} missing={missing} extra={extra} differ={differ}")
PY
}
# The same, as a condition: the sets are equal and both nodes in sync.
converged() {
	local c
	both_in_sync || return 1
	c=$(compare)
	case $c in *" missing=0 extra=0 differ=0") return 0 ;; esac
	return 1
}
short() {	# short ID_BASE COUNT SRC_FROM SRC_COUNT
	lab_exec client "$LT" short --to "$SRV:5001" --count "$2" --concurrency 32 \
		--src-from "$3" --src-count "$4" --id-base "$1" --timeout 30 --deadline 240
}

lab_down >/dev/null 2>&1
lab_up 2 >/dev/null || { echo "Bail out! lab up failed"; exit 1; }
# One CA with gw1, gw2 and gw3 (a valid certificate for the wrong name), a
# second CA, and an expired gw1 certificate: what the hostile clients use.
mkdir -p "$PKI"
top_srcdir=$top "$top/tests/unit/channel_certs.sh" "$PKI" >/dev/null 2>&1
ok $? "certificates: the pair's CA, a foreign CA, a wrong name, an expired one"
for gw in gw1 gw2; do
	lab_uplinkd_config "$gw" wrr 1 1
	lab_uplinkd_sync "$gw"
done
"$UPLINKD_BUILD/uplinkd" -n -c "$LAB_DIR/gw1.yaml"
ok $? "the lab's sync configs are valid"
# Closed connections leave conntrack after TIME_WAIT; 40 s instead of 120
# lets the test see them go.
lab_exec gw1 sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=40
lab_vip_add gw1
lab_uplinkd_start gw2
lab_uplinkd_start gw1
lab_wait_for "lab_uplinkctl gw1 status && lab_uplinkctl gw2 status" 20
ok $? "both daemons answer"
# The roles keepalived would give them (t_ha.sh runs the real keepalived).
lab_uplinkctl gw1 ha master >/dev/null && lab_uplinkctl gw2 ha backup >/dev/null
ok $? "gw1 is master, gw2 backup"
lab_wait_for both_in_sync 30
ok $? "the pair is in sync after the first bulk"
jget gw2 'd["sync"]' sync >"$LAB_DIR/sync2.txt"
state=$(jget gw2 '(d["sync"]["state"], d["sync"]["authenticated"], d["sync"]["peer_name"], d["sync"]["tls_version"])' sync)
ok "$([ "$state" = "('connected', True, 'gw1', 'TLSv1.3')" ] && echo 0 || echo 1)" \
	"uplinkctl sync: connected, authenticated, peer gw1, TLS 1.3 ($state)"
lab_uplinkctl gw2 sync >"$LAB_DIR/sync2.human" 2>&1
grep -q 'in_sync: yes' "$LAB_DIR/sync2.human" && grep -q 'cipher: TLS_' "$LAB_DIR/sync2.human"
ok $? "uplinkctl sync human output shows in_sync and the cipher"

lab_start_bg srv server "$LT" server --tcp 5001 --udp 5002 --report "$LAB_DIR/server.report" \
	--deadline 900
lab_wait_for "lab_exec srv ss -ltn | grep -q :5001" 10
# Long-lived connections from 10.0.0.100 (short ones come from .110-.149).
lab_start_bg client long "$LT" long --to "$SRV:5001" --conns 8 --udp-flows 4 --udp-port 5002 \
	--rate 20 --until-file "$LAB_DIR/stop-long" --id-base 1 --deadline 800
lab_wait_for '[ "$(peer)" -ge 12 ]' 20
ok $? "long-lived flows replicated ($(peer) in gw2's cache)"

# --- 10 000 connections appear in the peer's cache ---
short 10000 10000 10.0.0.110 40 >"$LAB_DIR/short1.out" 2>&1
ok $? "10000 short connections through gw1 ($(tail -1 "$LAB_DIR/short1.out" | cut -c1-60))"
lab_wait_for converged 60
r=$?
c=$(compare)
ok $r "gw2 caches exactly gw1's flows, same provider, translated address and port ($c)"
own1=$(own)
ok "$([ "${own1:-0}" -ge 10012 ] && echo 0 || echo 1)" "... all 10000 of them ($own1 own flows on gw1)"
lag=$(jget gw1 '(d["sync"]["lag_p50_ms"], d["sync"]["lag_p99_ms"], d["sync"]["lag_samples"])' sync)
diag "replication lag on gw1 (event -> peer ack) p50, p99 ms, samples: $lag"
# The closed connections leave conntrack after TIME_WAIT, and the cache.
lab_wait_for '[ "$(own)" -lt 100 ]' 120
lab_wait_for converged 30
r=$?
ok $r "closed connections vanish from both nodes after TIME_WAIT ($(compare))"

# --- kill -9 the receiver mid-stream, restart it ---
short 20000 6000 10.0.0.110 40 >"$LAB_DIR/short2.out" 2>&1 &
spid=$!
lab_wait_for '[ "$(own)" -ge 1500 ]' 30
kill -9 "$(cat "$LAB_DIR/uplinkd-gw2.pid")"
ok $? "uplinkd on gw2 killed with SIGKILL mid-stream ($(own) own flows on gw1 by then)"
sleep 1
lab_uplinkd_start gw2
lab_wait_for "lab_uplinkctl gw2 ha backup" 20
wait $spid
ok $? "6000 connections while the receiver died and restarted"
lab_wait_for converged 60
r=$?
ok $r "the restarted receiver converges to the exact set ($(compare))"
reconn=$(jget gw1 'd["sync"]["reconnects"]' sync)
ok "$([ "${reconn:-0}" -ge 1 ] && echo 0 || echo 1)" "gw1 counted the reconnect ($reconn)"
lab_exec gw1 conntrack -D -p tcp --state TIME_WAIT >/dev/null 2>&1
lab_wait_for converged 30
ok $? "deleted conntrack entries leave both nodes ($(compare))"

# --- a renewed certificate, read by a reload: no reconnect, no restart ---
connects=$(jget gw1 'd["sync"]["connects"]' sync)
cp "$PKI/soon/gw2.pem" "$PKI/gw2.pem" && cp "$PKI/soon/gw2.key" "$PKI/gw2.key" &&
	lab_uplinkctl gw2 reload >/dev/null
ok $? "uplinkctl reload on gw2 after its certificate was renewed (valid 5 days)"
days=$(jget gw2 'd["sync"]["cert_days_left"]' sync)
ok "$(python3 -c "print(0 if 4.9 <= ${days:-0} <= 5 else 1)")" \
	"... gw2 uses the new certificate ($days days left), the CA $(jget gw2 'd["sync"]["ca_days_left"]' sync) days"
ok "$([ "$(jget gw1 'd["sync"]["connects"]' sync)" = "$connects" ] &&
	[ "$(jget gw2 'd["sync"]["state"]' sync)" = connected ] && echo 0 || echo 1)" \
	"... and the channel stayed up (gw1's connects $connects)"
grep -q 'sync.tls.cert .* expires on .*, in [45].[0-9] days: renew it' "$LAB_DIR/uplinkd-gw2.log"
ok $? "gw2's log warns that its certificate expires within 30 days"
lab_uplinkctl gw2 metrics | grep -q '^uplinkd_sync_cert_expiry_timestamp_seconds{cert="own"} [0-9]'
ok $? "uplinkctl metrics: the certificate's expiry"
lab_uplinkctl gw2 sync >"$LAB_DIR/sync2-cert.human" 2>&1
grep -q 'cert_days_left: [45]\.' "$LAB_DIR/sync2-cert.human"
ok $? "uplinkctl sync shows the days left ($(grep 'cert_expires' "$LAB_DIR/sync2-cert.human" | head -1 | tr -s ' '))"
cp "$PKI/gw2.key" "$PKI/gw2.key.good" && cp "$PKI/gw3.key" "$PKI/gw2.key"
lab_uplinkctl gw2 reload >"$LAB_DIR/reload-badkey.out" 2>&1
rc=$?
ok "$([ $rc = 1 ] && grep -q 'sync.tls.key .* does not match' "$LAB_DIR/reload-badkey.out" && echo 0 || echo 1)" \
	"a reload with a key of another certificate fails (exit $rc: $(head -c 160 "$LAB_DIR/reload-badkey.out"))"
ok "$([ "$(jget gw2 'd["sync"]["state"]' sync)" = connected ] &&
	[ "$(jget gw1 'd["sync"]["connects"]' sync)" = "$connects" ] && echo 0 || echo 1)" \
	"... and the running configuration and channel stay"
mv "$PKI/gw2.key.good" "$PKI/gw2.key"

# --- the CA's certificate renewed (same name and key) and reloaded on gw2
# only: the reconnect after the cut below authenticates both ways, gw1
# trusting the old CA certificate and gw2 the new one ---
ca1=$(jget gw1 'd["sync"]["ca_days_left"]' sync)
auth1=$(jget gw1 "d['sync']['rejected']['auth']" sync) auth2=$(counter auth)
CA_DAYS=4000 "$top/deploy/mkcerts.sh" --renew-ca "$PKI" >"$LAB_DIR/renew-ca.out" 2>&1 &&
	"$UPLINKD_BUILD/uplinkd" -n -c "$LAB_DIR/gw2.yaml" 2>"$LAB_DIR/check-gw2.err" &&
	lab_uplinkctl gw2 reload >/dev/null
ok $? "mkcerts.sh --renew-ca, uplinkd -n and a reload on gw2 ($(head -c 100 "$LAB_DIR/renew-ca.out"))"
ca2=$(jget gw2 'd["sync"]["ca_days_left"]' sync)
ok "$(python3 -c "print(0 if 3999 <= ${ca2:-0} <= 4000 and ${ca1:-0} <= 3650 else 1)")" \
	"gw2 uses the renewed CA certificate ($ca2 days left; gw1 keeps the old one, $ca1)"

# --- cut the sync link for 10 s while flows come and go ---
log_at_cut=$(($(wc -l <"$LAB_DIR/uplinkd-gw1.log") + 1))
lab_exec gw2 iptables -I INPUT -i sync0 -j DROP
lab_exec gw2 iptables -I OUTPUT -o sync0 -j DROP
t0=$(date +%s.%N)
lab_wait_for '[ "$(jget gw1 "d[\"sync\"][\"state\"]" sync)" != connected ]' 15
t1=$(date +%s.%N)
took=$(python3 -c "print(round($t1-$t0,1))")
ok "$(python3 -c "print(0 if $took < 8 else 1)")" "gw1 notices the silent peer ($took s; heartbeats give up after 2.5 s)"
ok "$(in_sync gw1 || in_sync gw2; [ $? -ne 0 ] && echo 0 || echo 1)" "neither node claims to be in sync while cut"
short 30000 2000 10.0.0.110 40 >"$LAB_DIR/short3.out" 2>&1
lab_exec gw1 conntrack -D -p tcp --state TIME_WAIT -s 10.0.0.110 >/dev/null 2>&1
lab_wait_for '[ "$(jget gw2 "d[\"sync\"][\"disconnected_for_s\"]" sync)" != None ]' 10
down2=$(jget gw2 'd["sync"]["disconnected_for_s"]' sync)
ok "$(python3 -c "v = ${down2:-None}; print(0 if v is not None and 0 <= v <= 60 else 1)")" \
	"gw2, which does not dial, says how long it has had no connection ($down2 s)"
sleep "$(python3 -c "print(max(0.0, 10 - ($(date +%s.%N) - $t0)))")"
lab_exec gw2 iptables -D INPUT -i sync0 -j DROP
lab_exec gw2 iptables -D OUTPUT -o sync0 -j DROP
lab_wait_for converged 60
r=$?
ok $r "after the link heals the pair converges ($(compare))"
ok "$([ "$(jget gw1 'd["sync"]["disconnected_for_s"]' sync)" = None ] &&
	[ "$(jget gw2 'd["sync"]["disconnected_for_s"]' sync)" = None ] && echo 0 || echo 1)" \
	"connected again: disconnected_for_s is null on both"
said=$(tail -n +"$log_at_cut" "$LAB_DIR/uplinkd-gw1.log" |
	grep 'channel: connect to 10.255.0.2:7410: .*; retrying, at most 5 s apart')
[ "$(echo "$said" | grep -c .)" = 1 ]
ok $? "gw1's log said once, at warning level, that it could not reach gw2 (${said#*channel: })"
days=$(jget gw1 'd["sync"]["peer_cert_days_left"]' sync)
ok "$(python3 -c "print(0 if 4.9 <= ${days:-0} <= 5 else 1)")" \
	"the new connection carries gw2's renewed certificate (gw1 sees $days days left)"
grep -q 'the certificate of peer gw2 expires on' "$LAB_DIR/uplinkd-gw1.log"
ok $? "... and gw1's log warns about it"
ok "$([ "$(jget gw1 "d['sync']['rejected']['auth']" sync)" = "$auth1" ] &&
	[ "$(counter auth)" = "$auth2" ] &&
	python3 -c "exit(0 if $(jget gw1 'd["sync"]["ca_days_left"]' sync) <= 3650 else 1)" &&
	echo 0 || echo 1)" \
	"the old and the renewed CA certificate trust each other's node (no auth failure on either)"

# --- hostile clients against gw2's sync listener, from gw1 ---
lab_exec gw1 conntrack -D -p tcp --state TIME_WAIT >/dev/null 2>&1
lab_wait_for converged 30
lab_uplinkctl gw2 --json flows --limit 10000000 >"$LAB_DIR/before.json"
tls_client() {	# tls_client CERT KEY [STDIN-PRODUCER]
	lab_exec gw1 timeout 10 openssl s_client -connect "$SYNC2" -tls1_3 -quiet \
		-cert "$1" -key "$2" -CAfile "$PKI/ca.pem" -servername gw2 >/dev/null 2>&1
}
hostile() {	# hostile KIND COUNTER DESCRIPTION
	local kind=$1 key=$2 before
	before=$(counter "$key")
	case $kind in
	other-ca) tls_client "$PKI/other/gw1.pem" "$PKI/other/gw1.key" </dev/null ;;
	wrong-name) tls_client "$PKI/gw3.pem" "$PKI/gw3.key" </dev/null ;;
	expired) tls_client "$PKI/expired/gw1.pem" "$PKI/expired/gw1.key" </dev/null ;;
	plaintext)
		lab_exec gw1 timeout 10 bash -c "exec 3<>/dev/tcp/${SYNC2%:*}/${SYNC2#*:};
			printf 'GET / HTTP/1.0\r\n\r\n' >&3; cat <&3 >/dev/null" 2>/dev/null ;;
	random)
		lab_exec gw1 timeout 10 bash -c "exec 3<>/dev/tcp/${SYNC2%:*}/${SYNC2#*:};
			head -c 4096 /dev/urandom >&3; cat <&3 >/dev/null" 2>/dev/null ;;
	garbage-frames)
		{ head -c 4096 /dev/urandom; sleep 2; } |
			tls_client "$PKI/gw1.pem" "$PKI/gw1.key" ;;
	bad-payload)
		# A good header (magic, major 1, type BATCH) before bytes that are
		# no protobuf message.
		{ printf 'UPLS\001\002\000\000\000\000\000\010\377\377\377\377\377\377\377\377'; sleep 2; } |
			tls_client "$PKI/gw1.pem" "$PKI/gw1.key" ;;
	esac
	lab_wait_for "[ \"\$(counter $key)\" -gt $before ]" 10
	ok $? "$3: refused and counted as $key ($before -> $(counter "$key"))"
}
hostile other-ca auth "a client certificate from another CA"
hostile wrong-name auth "a certificate of the right CA for the wrong name (gw3)"
hostile expired auth "an expired certificate"
hostile plaintext auth "a plaintext client"
hostile random auth "random bytes"
# A client with gw1's own certificate replaces gw1's connection (a peer
# that restarted looks the same); held still, gw1 cannot win it back
# before the garbage arrives.
kill -STOP "$(cat "$LAB_DIR/uplinkd-gw1.pid")"
hostile garbage-frames bad_frame "a valid TLS client sending garbage"
hostile bad-payload bad_frame "a valid TLS client sending an undecodable batch"
kill -CONT "$(cat "$LAB_DIR/uplinkd-gw1.pid")"
undec=$(jget gw2 'd["sync"]["rejected"]["undecodable"]' sync)
ok "$([ "${undec:-0}" -ge 1 ] && echo 0 || echo 1)" "the undecodable batch has its own counter ($undec)"
lab_uplinkctl gw2 status >/dev/null
ok $? "gw2 keeps serving"
lab_wait_for converged 60
r=$?
lab_uplinkctl gw2 --json flows --limit 10000000 >"$LAB_DIR/after.json"
python3 - "$LAB_DIR/before.json" "$LAB_DIR/after.json" <<'PY'
import json, sys
def s(p):
    return sorted(json.dumps({k: v for k, v in f.items() if k != "age_s"}, sort_keys=True)
                  for f in json.load(open(p))["flows"] if f["origin"] == "peer")
sys.exit(0 if s(sys.argv[1]) == s(sys.argv[2]) else 1)
PY
ok $? "the hostile clients changed 0 entries in gw2's cache ($(compare))"
ok $r "the pair is back in sync"
lab_uplinkctl gw1 metrics >"$LAB_DIR/metrics1.txt"
lab_uplinkctl gw2 metrics >"$LAB_DIR/metrics2.txt"
metric() { awk -v k="$2" '$1 == k { print $2 }' "$LAB_DIR/metrics$1.txt"; }
[ "$(metric 1 uplinkd_sync_in_sync)" = 1 ] && [ "$(metric 2 uplinkd_sync_in_sync)" = 1 ] &&
	[ "$(metric 1 'uplinkd_ha_role{role="master"}')" = 1 ] &&
	[ "$(metric 2 'uplinkd_ha_role{role="backup"}')" = 1 ] &&
	[ -n "$(metric 1 'uplinkd_sync_lag_seconds{quantile="0.99"}')" ] &&
	[ "$(metric 2 'uplinkd_sync_rejected_total{reason="undecodable"}')" = "$undec" ] &&
	[ "$(metric 2 'uplinkd_sync_rejected_total{reason="auth"}')" -ge 2 ]
ok $? "uplinkctl metrics: both in sync, gw1 master, gw2 backup, gw1's lag, gw2's rejections ($undec undecodable, $(metric 2 'uplinkd_sync_rejected_total{reason="auth"}') auth)"
for i in 1 2; do
	python3 "$top/tests/lab/promcheck.py" "$LAB_DIR/metrics$i.txt" >"$LAB_DIR/promcheck$i.out" 2>&1
	r=$?
	ok $r "gw$i's metrics are well-formed Prometheus text, HELP and TYPE for every metric ($(tail -1 "$LAB_DIR/promcheck$i.out"))"
	[ $r -eq 0 ] || head -20 "$LAB_DIR/promcheck$i.out" | sed 's/^/# /'
done

# --- a reload on the standby: the kernel's
# copies of gw1's flows (hot standby) must stay gw1's ---
p_before=$(peer)
kill -HUP "$(cat "$LAB_DIR/uplinkd-gw2.pid")"
lab_wait_for "grep -q 'configuration reloaded' $LAB_DIR/uplinkd-gw2.log" 10
sleep 1
own2=$(jget gw2 'd["flows"]["own"]' status)
ok "$([ "${own2:-1}" -eq 0 ] && [ "$(peer)" -eq "$p_before" ] && echo 0 || echo 1)" \
	"after a reload gw2 still holds gw1's $p_before flows as gw1's (own $own2, peer $(peer))"

# --- operator's resync ---
before=$(jget gw1 'd["sync"]["bulks_sent"]' sync)
lab_uplinkctl gw1 sync --resync >/dev/null
ok $? "uplinkctl sync --resync"
lab_wait_for "[ \$(jget gw1 'd[\"sync\"][\"bulks_completed\"]' sync) -gt $before ] && converged" 30
ok $? "the resync completed and the pair converged"

# --- outcome of the long-lived traffic and the daemons' health ---
check_long_end " while the sync channel was abused" 20

# --- a reload that removes the sync section: the peer's flows go ---
lab_uplinkd_config gw2 wrr 1 1
lab_uplinkctl gw2 reload >/dev/null
r=$?
ok "$([ $r -eq 0 ] && [ "$(peer)" -eq 0 ] &&
	grep -q "reload: no sync section: forgot the peer's [0-9]* flows" "$LAB_DIR/uplinkd-gw2.log" &&
	echo 0 || echo 1)" "a reload without the sync section forgets the peer's flows (peer $(peer))"
for gw in gw1 gw2; do
	kill -TERM "$(cat "$LAB_DIR/uplinkd-$gw.pid")"
	lab_wait_for "! kill -0 $(cat "$LAB_DIR/uplinkd-$gw.pid") 2>/dev/null" 10
	no_sanitizer_report "$LAB_DIR/uplinkd-$gw.log"
	ok $? "$gw stopped cleanly, no sanitizer report in its log"
done
echo "1..$n"
