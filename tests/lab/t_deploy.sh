#!/bin/bash
# The ansible deploy of a pair, end to end (issue 5): deploy/site.yml with
# deploy/inventory.example (copied, plus what the namespace lab needs in
# host_vars) deploys the two gateways of the lab; the pair comes up in sync
# with keepalived; a second run changes nothing; a weight change reloads
# uplinkd without breaking a long-lived connection; deploy/drill.yml's
# graceful drill passes on what ansible deployed.  Also the static checks:
# ansible-playbook --syntax-check, ansible-lint, systemd-analyze verify.
#
# Each gateway namespace is one inventory host.  Its play runs inside the
# namespace (ip netns exec ... ansible-playbook --limit gwN) with
# ansible_connection=local, the two plays at once as ansible would run
# them, and every path of the role under $LAB_DIR/gwN (uplinkd_root):
# the namespaces share one filesystem.  systemd is not PID 1 on the test
# machine, so uplinkd_service_manager=pidfile: the role starts the
# installed unit's ExecStart line under start-stop-daemon and reloads with
# SIGHUP (deploy/roles/uplinkd/tasks/service_pidfile.yml).  Its pid files
# are in $LAB_DIR as lab.sh names them, so lab_stop and lab_down stop them.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
export LAB_PREFIX=${LAB_PREFIX:-udep}
# Only labtraffic comes from a build (ansible builds uplinkd itself): the
# CI's, else a build under _build/.
if [ -z "${UPLINKD_BUILD:-}" ]; then
	for b in "$top/_build/asan" "$top/_build/plain"; do
		[ -x "$b/tests/lab/labtraffic" ] && { export UPLINKD_BUILD=$b; break; }
	done
fi
# shellcheck source=tests/lab/lab.sh
. "$top/tests/lab/lab.sh"
# shellcheck source=tests/lab/tap.sh
. "$top/tests/lab/tap.sh"
LT=$(lab_labtraffic) || { echo "Bail out! labtraffic not built"; exit 1; }
command -v ansible-playbook >/dev/null || { echo "Bail out! ansible-playbook missing (deploy/install-deps.sh)"; exit 1; }
SRV=192.0.2.10
TCP_CONNS=${TCP_CONNS:-50}
UDP_FLOWS=${UDP_FLOWS:-20}
INV=$LAB_DIR/inventory
export ANSIBLE_NOCOLOR=1

cleanup() {
	mkdir -p "$top/_build/t_deploy"
	cp "$LAB_DIR"/*.log "$top/_build/t_deploy/" 2>/dev/null
	lab_stop long >/dev/null 2>&1
	lab_stop server >/dev/null 2>&1
	lab_pair_down
}
trap cleanup EXIT

uctl() { "$LAB_DIR/$1/usr/local/bin/uplinkctl" -s "$LAB_DIR/$1/run/uplinkd/uplinkd.sock" "${@:2}"; }
jget() {	# jget gwN EXPR CMD...
	uctl "$1" --json "${@:3}" 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}
in_sync() { [ "$(jget "$1" 'd["in_sync"]' status)" = True ]; }

# deploy NAME: both plays at once, each in its node's namespace; logs in
# $LAB_DIR/ansible-NAME-gwN.log.  0 when both succeeded.
deploy() {
	local name=$1 gw pids="" rc=0 p
	for gw in gw1 gw2; do
		(cd "$top" && ip netns exec "$(lab_ns "$gw")" timeout 300 \
			ansible-playbook -i "$INV" deploy/site.yml --limit "$gw" \
			>"$LAB_DIR/ansible-$name-$gw.log" 2>&1) &
		pids="$pids $!"
	done
	for p in $pids; do wait "$p" || rc=1; done
	return $rc
}
# The PLAY RECAP counter KEY (ok, changed, failed) of gwN in run NAME.
recap() { sed -n "s/^$2 *:.* $3=\([0-9]*\).*/\1/p" "$LAB_DIR/ansible-$1-$2.log" | tail -1; }
show_failure() { grep -E '^(fatal|failed):|FAILED|msg' "$LAB_DIR/ansible-$1-$2.log" | head -8 | sed 's/^/#   /'; }


t0=$(date +%s)
# ---- static checks ----
(cd "$top" && ansible-playbook --syntax-check -i deploy/inventory.example deploy/site.yml deploy/drill.yml) \
	>"$top/_build/t_deploy-syntax.log" 2>&1
ok $? "ansible-playbook --syntax-check: site.yml and drill.yml"
if command -v ansible-lint >/dev/null; then
	(cd "$top" && ansible-lint --nocolor deploy/) >"$top/_build/t_deploy-lint.log" 2>&1
	r=$?
	grep -qiE 'warning\(s\)|WARNING' "$top/_build/t_deploy-lint.log" && ! grep -q ' 0 warning(s)' "$top/_build/t_deploy-lint.log" && r=1
	ok $r "ansible-lint deploy/: no failures, no warnings ($(tail -1 "$top/_build/t_deploy-lint.log"))"
else
	ok 1 "ansible-lint is installed (deploy/install-deps.sh)"
fi

# ---- the first deploy ----
lab_down >/dev/null 2>&1
lab_up 2 >/dev/null || { echo "Bail out! lab up failed"; exit 1; }
# ansible's own temporary files go with the lab (set only now: lab_up
# refuses a LAB_DIR that something else created first).
export ANSIBLE_LOCAL_TEMP=$LAB_DIR/ansible-tmp ANSIBLE_HOME=$LAB_DIR/ansible-home
rm -rf "$INV" && cp -r "$top/deploy/inventory.example" "$INV" || { echo "Bail out! inventory"; exit 1; }
for gw in gw1 gw2; do
	cat >>"$INV/host_vars/$gw.yml" <<EOT

# ---- added by tests/lab/t_deploy.sh: the namespace lab ----
# The play runs inside this node's namespace, on this machine, as root.
ansible_connection: local
ansible_python_interpreter: /usr/bin/python3
ansible_become: false
# No systemd as PID 1 here: start-stop-daemon, pid files, SIGHUP.
uplinkd_service_manager: pidfile
# Both nodes share one filesystem: every path under the node's own root.
uplinkd_root: $LAB_DIR/$gw
uplinkd_pidfile: $LAB_DIR/uplinkd-$gw.pid
uplinkd_logfile: $LAB_DIR/uplinkd-$gw.log
uplinkd_keepalived_pidfile: $LAB_DIR/keepalived-$gw.pid
uplinkd_keepalived_logfile: $LAB_DIR/keepalived-$gw.log
uplinkd_pki_dir: $LAB_DIR/pki
uplinkd_artifact_dir: $LAB_DIR/artifacts
# The lab tests run the sanitizer build.
uplinkd_configure_args: [--enable-sanitizers]
# Offline: the packages are there (deploy/install-deps.sh).
uplinkd_apt_update_cache: false
# The lab's main table has no route to the server (loose rp_filter would
# drop the replies), and nf_conntrack_max is read-only in a namespace.
uplinkd_rp_filter: 0
uplinkd_conntrack_max: ""
# A loaded CI box may take a while to bring the pair in sync.
uplinkd_sync_wait_s: 120
EOT
done
t1=$(date +%s)
deploy first
r=$?
ok $r "first deploy: both plays succeed ($(($(date +%s) - t1)) s)"
[ $r -eq 0 ] || { show_failure first gw1; show_failure first gw2; }
diag "first run: gw1 changed=$(recap first gw1 changed), gw2 changed=$(recap first gw2 changed)"
for gw in gw1 gw2; do
	kill -0 "$(cat "$LAB_DIR/uplinkd-$gw.pid" 2>/dev/null)" 2>/dev/null &&
		[ "$(ip netns identify "$(cat "$LAB_DIR/uplinkd-$gw.pid")")" = "$(lab_ns "$gw")" ]
	ok $? "$gw: uplinkd runs in its namespace, from the unit's ExecStart"
	kill -0 "$(cat "$LAB_DIR/keepalived-$gw.pid" 2>/dev/null)" 2>/dev/null
	ok $? "$gw: keepalived runs"
done
# Each play ends when its node is in sync with a role; gw1 may still be
# backup then, until VRRP's election (three adverts) makes it master.
lab_wait_for "[ \"\$(jget gw1 'd[\"role\"]' status)\" = master ] &&
	[ \"\$(jget gw2 'd[\"role\"]' status)\" = backup ] && in_sync gw1 && in_sync gw2" 30
ok $? "the pair is in sync: gw1 master (priority 150), gw2 backup"
lab_exec gw1 ip -br addr show lan0 | grep -q ' 10\.0\.0\.1/24'
ok $? "gw1 holds the LAN gateway address"

# What the role installed.
unit=$LAB_DIR/gw1/usr/local/lib/systemd/system/uplinkd.service
if command -v systemd-analyze >/dev/null; then
	# Offline: it parses the unit and checks its commands exist; any
	# message (an unknown or misspelt setting) is a failure.
	out=$(timeout 60 systemd-analyze verify --man=no "$unit" 2>&1)
	r=$?
	[ -z "$out" ] || r=1
	ok $r "systemd-analyze verify accepts the installed uplinkd.service${out:+: $out}"
else
	echo "ok $((n += 1)) - systemd-analyze verify # SKIP no systemd-analyze"
fi
test -f "$LAB_DIR/gw1/usr/local/lib/systemd/system/keepalived.service.d/uplinkd.conf" &&
	test -L "$LAB_DIR/gw1/etc/systemd/system/multi-user.target.wants/uplinkd.service"
ok $? "make install put keepalived's drop-in next to the unit; the unit is enabled"
cmp -s "$LAB_DIR/pki/ca.pem" "$LAB_DIR/gw1/etc/uplinkd/ca.pem" &&
	cmp -s "$LAB_DIR/pki/ca.pem" "$LAB_DIR/gw2/etc/uplinkd/ca.pem" &&
	[ "$(stat -c %a "$LAB_DIR/gw2/etc/uplinkd/gw2.key")" = 600 ] &&
	[ ! -e "$LAB_DIR/gw1/etc/uplinkd/ca.key" ] && [ ! -e "$LAB_DIR/gw1/etc/uplinkd/gw2.key" ]
ok $? "TLS: one CA on both nodes, each node only its own key (0600), ca.key stays on the control node"
# The role rendered ha/keepalived.conf.j2 itself; ha/render.py (the lab's
# renderer) gives the same file from the same variables.
python3 - "$LAB_DIR" <<'PY' >"$LAB_DIR/kvars.json"
import json, sys
d = sys.argv[1]; r = d + "/gw1"
print(json.dumps({"node": "gw1", "priority": 150, "preempt": True, "advert_ms": 100, "vrid": 51,
    "lan": {"interface": "lan0", "vip": "10.0.0.1/24", "networks": ["10.0.0.0/24"]},
    "providers": [{"name": "isp-a", "interface": "wan0", "source": "198.51.100.10/24"},
                  {"name": "isp-b", "interface": "wan1", "source": "203.0.113.10/24"}],
    "unicast": False,
    "track_file": r + "/run/uplinkd/gw1.vrrp",
    "alive_check": r + "/usr/local/bin/uplinkctl -s " + r + "/run/uplinkd/uplinkd.sock status",
    "notify": r + "/usr/local/libexec/uplinkd/notify.sh -b " + r + "/usr/local/bin/uplinkctl " +
              r + "/run/uplinkd/uplinkd.sock"}))
PY
"$top/ha/render.py" "$top/ha/keepalived.conf.j2" "$LAB_DIR/kvars.json" >"$LAB_DIR/keepalived-gw1.expected"
diff -u "$LAB_DIR/keepalived-gw1.expected" "$LAB_DIR/gw1/etc/keepalived/keepalived.conf" >"$LAB_DIR/keepalived.diff"
ok $? "keepalived.conf is ha/keepalived.conf.j2 as ha/render.py renders it ($(grep -c '^[-+][^-+]' "$LAB_DIR/keepalived.diff") lines differ)"
grep -qx nf_conntrack "$LAB_DIR/gw1/etc/modules-load.d/uplinkd.conf"
ok $? "modules-load.d/uplinkd.conf loads nf_conntrack at boot (its sysctls exist only then)"
# The lab leaves the host-wide table size alone (""): the sysctl drop-in
# as the role renders it for the example inventory, whose bucket count
# follows nf_conntrack_max by default.
cat >"$LAB_DIR/render-sysctl.yml" <<'EOT'
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_vars: "{{ top }}/deploy/roles/uplinkd/defaults/main.yml"
    - ansible.builtin.include_vars: "{{ top }}/deploy/inventory.example/group_vars/uplinkd.yml"
    - ansible.builtin.template:
        src: "{{ top }}/deploy/roles/uplinkd/templates/sysctl.conf.j2"
        dest: "{{ out }}"
        mode: "0644"
EOT
ansible-playbook -i localhost, -e top="$top" -e out="$LAB_DIR/sysctl-example.conf" \
	"$LAB_DIR/render-sysctl.yml" >"$LAB_DIR/render-sysctl.log" 2>&1 &&
	grep -qx 'net.netfilter.nf_conntrack_max = 262144' "$LAB_DIR/sysctl-example.conf" &&
	grep -qx 'net.netfilter.nf_conntrack_buckets = 262144' "$LAB_DIR/sysctl-example.conf" &&
	! grep -q nf_conntrack_buckets "$LAB_DIR/gw1/etc/sysctl.d/60-uplinkd.conf"
ok $? "the sysctl drop-in sizes nf_conntrack_buckets with nf_conntrack_max (example inventory), and not in the lab"

# ---- idempotence ----
t1=$(date +%s)
deploy second
r=$?
c1=$(recap second gw1 changed) c2=$(recap second gw2 changed)
[ $r -eq 0 ] && [ "$c1" = 0 ] && [ "$c2" = 0 ]
ok $? "second deploy changes nothing (gw1 changed=$c1, gw2 changed=$c2; $(($(date +%s) - t1)) s)"
[ "$c1" = 0 ] || grep -B1 '^changed:' "$LAB_DIR/ansible-second-gw1.log" | sed 's/^/#   /' | head -10

# ---- a weight change under traffic ----
lab_start_bg srv server "$LT" server --tcp 5001 --udp 5002 --report "$LAB_DIR/server.report" \
	--deadline 900
lab_wait_for "lab_exec srv ss -ltn | grep -q :5001" 10
lab_start_bg client long "$LT" long --to "$SRV:5001" --conns "$TCP_CONNS" --udp-flows "$UDP_FLOWS" \
	--udp-port 5002 --rate 4 --until-file "$LAB_DIR/stop-long" --id-base 1 --deadline 800
want=$((TCP_CONNS + UDP_FLOWS))
lab_wait_for "[ \"\$(jget gw2 'd[\"flows\"][\"peer\"]' status)\" -ge $want ]" 60
ok $? "gw2 holds gw1's $want flows ($(jget gw2 'd["flows"]["peer"]' status))"
check_flows "before the weight change"

hups1=$(grep -c 'SIGHUP: reloading' "$LAB_DIR/uplinkd-gw1.log")
pid1=$(cat "$LAB_DIR/uplinkd-gw1.pid") pid2=$(cat "$LAB_DIR/uplinkd-gw2.pid")
sed -i '0,/weight: 1$/s//weight: 3/' "$INV/group_vars/uplinkd.yml"
# The same run installs gw2's renewed certificate (re-issued on the
# control node, 400 days) and the CA's renewed certificate (4000 days):
# a reload must read them.
DAYS=400 "$top/deploy/mkcerts.sh" --force "$LAB_DIR/pki" gw2 >/dev/null 2>&1 &&
	CA_DAYS=4000 "$top/deploy/mkcerts.sh" --renew-ca "$LAB_DIR/pki" >/dev/null 2>&1
ok $? "the control node renews gw2's certificate and the CA's (mkcerts.sh --force, --renew-ca)"
t1=$(date +%s)
deploy weight
r=$?
ok $r "deploy with isp-a's weight 1 -> 3 succeeds ($(($(date +%s) - t1)) s; gw1 changed=$(recap weight gw1 changed))"
[ $r -eq 0 ] || { show_failure weight gw1; show_failure weight gw2; }
w1=$(jget gw1 '[p["weight"] for p in d["providers"]]' status)
w2=$(jget gw2 '[p["weight"] for p in d["providers"]]' status)
[ "$w1" = "[3, 1]" ] && [ "$w2" = "[3, 1]" ]
ok $? "both nodes run with the new weights (gw1 $w1, gw2 $w2)"
hups2=$(grep -c 'SIGHUP: reloading' "$LAB_DIR/uplinkd-gw1.log")
# The first two runs must not have reloaded it either (handlers act only
# on daemons that ran when the play started).
[ "$(cat "$LAB_DIR/uplinkd-gw1.pid")" = "$pid1" ] && [ "$hups1" = 0 ] && [ "$hups2" = 1 ]
ok $? "uplinkd was reloaded (SIGHUP), not restarted (pid $pid1; SIGHUPs before $hups1, after $hups2)"
days=$(jget gw2 'd["sync"]["cert_days_left"]' sync)
[ "$(cat "$LAB_DIR/uplinkd-gw2.pid")" = "$pid2" ] &&
	python3 -c "import sys; sys.exit(0 if 399 <= ${days:-0} <= 400 else 1)" &&
	[ "$(jget gw2 'd["sync"]["state"]' sync)" = connected ]
ok $? "gw2's renewed certificate was read by a reload, not a restart ($days days left, pid $pid2, sync connected)"
ca1=$(jget gw1 'd["sync"]["ca_days_left"]' sync) ca2=$(jget gw2 'd["sync"]["ca_days_left"]' sync)
python3 -c "import sys; sys.exit(0 if 3999 <= ${ca1:-0} <= 4000 and 3999 <= ${ca2:-0} <= 4000 else 1)"
ok $? "both nodes trust the renewed CA certificate ($ca1 and $ca2 days left)"
check_flows "after the weight change"

# ---- a new build: both nodes restart in one run, under traffic ----
# Both plays run at once, as they do on real hosts; `uplinkctl handover`
# (the restart handler) must keep the two from going down together.
pid1=$(cat "$LAB_DIR/uplinkd-gw1.pid") pid2=$(cat "$LAB_DIR/uplinkd-gw2.pid")
rm -f "$LAB_DIR"/gw[12]/usr/local/share/uplinkd/source-tree
t1=$(date +%s)
deploy rebuild
r=$?
ok $r "deploy of a new build (the installed tree forgotten on both nodes) succeeds ($(($(date +%s) - t1)) s)"
[ $r -eq 0 ] || { show_failure rebuild gw1; show_failure rebuild gw2; }
new1=$(cat "$LAB_DIR/uplinkd-gw1.pid") new2=$(cat "$LAB_DIR/uplinkd-gw2.pid")
[ "$new1" != "$pid1" ] && [ "$new2" != "$pid2" ] &&
	grep -q 'Hand over to the peer before restarting uplinkd' "$LAB_DIR/ansible-rebuild-gw1.log" &&
	grep -q 'Hand over to the peer before restarting uplinkd' "$LAB_DIR/ansible-rebuild-gw2.log"
ok $? "both daemons were restarted after a handover (gw1 pid $pid1 -> $new1, gw2 $pid2 -> $new2)"
lab_wait_for "in_sync gw1 && in_sync gw2 && [ \"\$(jget gw1 'd[\"role\"]' status)\" = master ]" 60
ok $? "then the pair is in sync and gw1 master again (gw2 $(jget gw2 'd["role"]' status))"
check_flows "after both nodes restarted"

# ---- the drill, on what ansible deployed ----
t1=$(date +%s)
(cd "$top" && ip netns exec "$(lab_ns gw1)" timeout 300 \
	ansible-playbook -i "$INV" deploy/drill.yml --limit gw1 >"$LAB_DIR/ansible-drill-gw1.log" 2>&1)
r=$?
ok $r "deploy/drill.yml: the graceful drill passes ($(($(date +%s) - t1)) s)"
grep -oE '"(passed|flows_lost)": [a-z0-9]+' "$LAB_DIR/ansible-drill-gw1.log" | sort -u | tr '\n' ' ' | sed 's/^/# drill report: /'
echo
[ $r -eq 0 ] || show_failure drill gw1
lab_wait_for "[ \"\$(jget gw1 'd[\"role\"]' status)\" = master ] && in_sync gw1 && in_sync gw2" 30
ok $? "after the drill's failback gw1 is master again and the pair in sync"
check_flows "after the drill"

check_long_end ""
for gw in gw1 gw2; do
	no_sanitizer_report "$LAB_DIR/uplinkd-$gw.log"
	ok $? "no sanitizer report in $gw's log"
done
diag "t_deploy took $(($(date +%s) - t0)) s"
echo "1..$n"
