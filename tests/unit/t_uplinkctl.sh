#!/bin/bash
# t_uplinkctl: the uplinkctl command line as a user and keepalived run it,
# without uplinkd.  Help, usage errors and an unreachable socket need no
# daemon; the rest talks to a fake daemon, a small Python server that
# speaks the wire of daemon/ctl.h (host byte order, 16-byte request header,
# 12-byte reply header), logs each request it gets and answers with the
# status and body the test sets.  TAP output.  Every wait is bounded: the
# CLI by timeout(1), the fake daemon by its own lifetime and socket
# timeouts.
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
bin=$(cd "$top_builddir" && pwd)/uplinkctl
CLI_TIMEOUT=20		# seconds; uplinkctl's own is 10
COMMANDS="status providers flows sync drain undrain ha reload metrics drill handover"

if [ ! -x "$bin" ]; then
	echo "1..0 # SKIP uplinkctl not built"
	exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
	echo "1..0 # SKIP python3 missing (fake daemon)"
	exit 0
fi

tmp=$(mktemp -d /tmp/t_uplinkctl.XXXXXX) || { echo "Bail out! mktemp"; exit 1; }
server_pid=""
cleanup() {
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

n=0 failed=0
ok() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
		for f in "$tmp/out" "$tmp/err"; do
			[ -s "$f" ] && head -5 "$f" | sed "s|^|# $(basename "$f"): |"
		done
		echo "# exit status: $rc"
	fi
}

# Runs uplinkctl; sets rc, leaves stdout/stderr in $tmp/out and $tmp/err.
ctl() {
	UPLINKD_SOCKET='' timeout -k 5 $CLI_TIMEOUT "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
}

# --- without a daemon ---

ctl --help
[ $rc = 0 ] && grep -q '^SYNOPSIS' "$tmp/out" && grep -q '^COMMANDS' "$tmp/out"
ok $? "--help: exit 0, SYNOPSIS and COMMANDS"
for c in $COMMANDS; do
	ctl "$c" --help
	[ $rc = 0 ] && grep -q '^SYNOPSIS' "$tmp/out" &&
	    grep -q "uplinkctl \[-s SOCKET\] \[--json\] $c" "$tmp/out" && [ ! -s "$tmp/err" ]
	ok $? "$c --help: exit 0, its own SYNOPSIS"
done
ctl help ha
[ $rc = 0 ] && grep -q 'ha master|backup|fault' "$tmp/out"
ok $? "help ha: the command's manual"
ctl --version
[ $rc = 0 ] && grep -q '^uplinkctl ' "$tmp/out"
ok $? "--version: exit 0"

# usage <message-regex> <description> args...: exit 2, message on stderr,
# nothing on stdout.
usage() {
	local re=$1 what=$2
	shift 2
	ctl "$@"
	[ $rc = 2 ] && grep -Eq -- "$re" "$tmp/err" && [ ! -s "$tmp/out" ]
	ok $? "$what: exit 2, \"$re\""
}
usage 'unknown command "bogus"' "unknown command" bogus
usage 'missing command' "no command"
usage 'unknown option "--bogus"' "unknown global option" --bogus status
usage 'drain: missing PROVIDER' "drain without a name" drain
usage 'bad --limit "abc"' "flows --limit abc" flows --limit abc
usage 'bad --limit "0"' "flows --limit 0" flows --limit 0
usage 'option --limit needs a value' "flows --limit without a value" flows --limit
usage 'bad state "bogus"' "ha bogus" ha bogus
usage 'missing STATE' "ha without a state" ha
usage 'unexpected argument "extra"' "status with an extra argument" status extra
usage 'unexpected argument "b"' "drain with two names" drain a b
usage 'unexpected argument "x"' "ha with two states" ha master x
usage '--provider given twice' "flows --provider twice" flows -p a -p b
usage 'unknown option "--force"' "undrain with an unknown option" undrain --force isp-a
usage 'bad provider name ""' "drain with an empty name" drain ''
usage 'empty socket path' "empty socket path" -s '' status
# sun_path holds 107 bytes and a NUL: a longer path can never be reached,
# whether or not a daemon runs, so it is the caller's mistake.
long_sock=/tmp/$(printf 'a%.0s' $(seq 120))
usage 'socket path .* is longer than 107 bytes' "socket path too long" -s "$long_sock" status
usage 'socket path .* is longer than 107 bytes' "socket path too long for drill" \
    -s "$long_sock" drill --mode graceful
usage '--peer-socket .* is longer than 107 bytes' "peer socket path too long" \
    drill --mode kill --fail-cmd true --peer-socket "$long_sock"
usage 'drill: missing --mode' "drill without a mode" drill
usage 'bad mode "bogus"' "drill with an unknown mode" drill --mode bogus
usage '--mode kill needs --fail-cmd' "drill kill without a way to kill" drill -m kill
usage '--mode sync-cut needs --restore-cmd' "drill sync-cut without a heal" \
    drill --mode sync-cut --fail-cmd true --peer-socket /x
usage '--mode link needs --peer-socket' "drill link without the peer's socket" \
    drill --mode link --fail-cmd true
usage 'no --fail-cmd or --restore-cmd' "drill graceful with a fail command" \
    drill --mode graceful --fail-cmd true
usage '--timeout: "0" is not a number of seconds' "drill --timeout 0" \
    drill --mode graceful --timeout 0
usage 'unknown option "--bogus"' "drill with an unknown option" drill --mode graceful --bogus
usage '--hold: "5" is not a number of seconds \(10\.\.3600\)' "handover --hold 5" handover --hold 5
usage 'unexpected argument "now"' "handover with an argument" handover now
usage '--mode given twice' "drill with two modes" drill --mode kill --fail-cmd true --mode graceful
# A wrapper puts its defaults first (tests/lab/drill.sh): parsed, then
# the missing daemon (exit 3), not a usage error.
ctl -s "$tmp/none.sock" drill --mode graceful --timeout 5 --timeout 6
ok "$([ $rc = 3 ] && echo 0 || echo 1)" "drill: a later --timeout replaces an earlier one (exit $rc)"
usage '--fail-cmd given twice' "drill with two fail commands" \
    drill --mode kill --fail-cmd true --fail-cmd false --peer-socket /x
usage '--timeout: "\+5" is not a number of seconds' "drill --timeout +5" \
    drill --mode graceful --timeout +5
usage '--stable: " 5" is not a number of seconds' "handover --stable ' 5'" handover --stable ' 5'

ctl -s /nonexistent/x.sock status
[ $rc = 3 ] && grep -q 'cannot reach uplinkd at /nonexistent/x.sock' "$tmp/err" &&
    [ ! -s "$tmp/out" ]
ok $? "-s /nonexistent/x.sock status: exit 3, \"cannot reach\""
UPLINKD_SOCKET=/nonexistent/env.sock timeout -k 5 $CLI_TIMEOUT "$bin" status \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc = 3 ] && grep -q 'cannot reach uplinkd at /nonexistent/env.sock' "$tmp/err"
ok $? "\$UPLINKD_SOCKET is used without -s"

# --- with a fake daemon ---

sock=$tmp/uplinkd.sock
cat >"$tmp/fake.py" <<'EOF'
# Fake uplinkd control socket: one request, one reply per connection.
# The reply comes from the file REPLY, read at each connection: its first
# line is a status number, "badmagic" (a reply header with a wrong magic)
# or "close" (no reply at all); the rest of the file is the body.  Each
# request is appended to LOG as one JSON line before the reply is sent.
import json, os, socket, struct, sys, time

REQ = struct.Struct("=IHHII")   # magic, version, type, flags, length: 16
REP = struct.Struct("=III")     # magic, status, length: 12
MAGIC = 0x4b4c5055
LIFETIME = 120                  # seconds: the server never outlives a test

path, reply_file, log_file = sys.argv[1:4]
assert REQ.size == 16 and REP.size == 12
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(4)
srv.settimeout(1.0)
end = time.monotonic() + LIFETIME

def read_exact(c, n):
    b = b""
    while len(b) < n:
        chunk = c.recv(n - len(b))
        if not chunk:
            raise EOFError("cut after %d of %d bytes" % (len(b), n))
        b += chunk
    return b

while time.monotonic() < end:
    try:
        c, _ = srv.accept()
    except socket.timeout:
        continue
    with c:
        c.settimeout(5.0)
        entry = {}
        try:
            magic, version, rtype, flags, length = REQ.unpack(read_exact(c, REQ.size))
            payload = read_exact(c, length) if length else b""
            entry = {"magic": magic, "version": version, "type": rtype,
                     "flags": flags, "length": length,
                     "args": [a.decode() for a in payload.split(b"\0")[:-1]],
                     "terminated": payload.endswith(b"\0") or not payload}
        except (EOFError, OSError) as e:
            entry = {"error": str(e)}
        with open(log_file, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
        with open(reply_file, "rb") as f:
            first, _, body = f.read().partition(b"\n")
        try:
            if first == b"close":
                continue
            if first == b"badmagic":
                c.sendall(REP.pack(0x12345678, 0, len(body)) + body)
                continue
            c.sendall(REP.pack(MAGIC, int(first), len(body)) + body)
        except OSError:
            pass
EOF
: >"$tmp/log"
printf '0\n' >"$tmp/reply"
python3 "$tmp/fake.py" "$sock" "$tmp/reply" "$tmp/log" 2>"$tmp/fake.err" &
server_pid=$!
for _ in $(seq 100); do
	[ -S "$sock" ] && break
	sleep 0.1
done
if [ ! -S "$sock" ]; then
	echo "Bail out! fake daemon did not start: $(head -3 "$tmp/fake.err")"
	exit 1
fi

# reply STATUS BODY: what the fake daemon answers next (BODY as printf %b).
reply() { { printf '%s\n' "$1"; printf '%b' "$2"; } >"$tmp/reply"; }
# The last request the fake daemon got, as a JSON line.
last() { tail -1 "$tmp/log"; }
requests() { wc -l <"$tmp/log" | tr -d ' '; }
# want_request 'JSON fields' : the last request has those (python check).
want_request() {
	python3 - "$(last)" "$1" <<'EOF'
import json, sys
got, want = json.loads(sys.argv[1]), json.loads(sys.argv[2])
bad = {k: got.get(k) for k in want if got.get(k) != want[k]}
if bad:
    print("# request differs:", json.dumps(bad, sort_keys=True), "got", sys.argv[1])
    sys.exit(1)
EOF
}

reply 0 'node gw1 master'
ctl -s "$sock" status
[ $rc = 0 ] && [ "$(cat "$tmp/out")" = "node gw1 master" ] &&
    [ "$(tail -c 1 "$tmp/out" | od -An -c | tr -d ' ')" = '\n' ] && [ ! -s "$tmp/err" ]
ok $? "status 0: exit 0, body on stdout with a trailing newline added"
want_request '{"magic": 1263292501, "version": 1, "type": 1, "flags": 0, "length": 0, "args": []}'
ok $? "status: header magic/version/type 1, no flags, no payload"

reply 0 'a\nb\n'
ctl -s "$sock" providers
[ $rc = 0 ] && [ "$(od -An -c "$tmp/out" | tr -d ' \n')" = 'a\nb\n' ]
ok $? "a body that ends in a newline is printed as it is"
want_request '{"type": 2, "args": []}'
ok $? "providers: type 2"

reply 0 '{"node": "gw1"}'
ctl -s "$sock" --json status
[ $rc = 0 ] && grep -qx '{"node": "gw1"}' "$tmp/out"
ok $? "--json status: exit 0, JSON body printed"
want_request '{"type": 1, "flags": 1, "args": []}'
ok $? "--json before the command: CTL_F_JSON flag, not an argument"
ctl -s "$sock" status -j
want_request '{"type": 1, "flags": 1, "args": []}'
ok $? "-j after the command: CTL_F_JSON flag"

reply 0 'flows'
ctl -s "$sock" flows --provider isp-a --limit 5
[ $rc = 0 ]
ok $? "flows --provider isp-a --limit 5: exit 0"
want_request '{"type": 3, "flags": 0, "length": 27, "terminated": true, "args": ["--provider", "isp-a", "--limit", "5"]}'
ok $? "flows: exactly --provider isp-a --limit 5, NUL-terminated"
ctl -s "$sock" flows -n 007 --provider=isp-b --json
want_request '{"type": 3, "flags": 1, "args": ["--provider", "isp-b", "--limit", "7"]}'
ok $? "flows -n 007 --provider=isp-b --json: normalised to the same form"
ctl -s "$sock" sync --resync
want_request '{"type": 4, "args": ["--resync"]}'
ok $? "sync --resync: type 4, one argument"
ctl -s "$sock" drain isp-a
want_request '{"type": 5, "args": ["isp-a"]}'
ok $? "drain isp-a: type 5"
ctl -s "$sock" undrain -- isp-a
want_request '{"type": 6, "args": ["isp-a"]}'
ok $? "undrain -- isp-a: type 6"
ctl -s "$sock" ha MASTER
want_request '{"type": 7, "args": ["master"]}'
ok $? "ha MASTER (as keepalived says it): type 7, \"master\""
ctl -s "$sock" reload
want_request '{"type": 8, "args": []}'
ok $? "reload: type 8"
ctl -s "$sock" metrics
want_request '{"type": 9, "args": []}'
ok $? "metrics: type 9"
# drill reads the daemons' JSON answers: a backup node whose peer is
# master refuses to drill from here and never asks anyone to step down.
reply 0 '{"node":"gw2","role":"backup","in_sync":true,"sync":{"peer_name":"gw1","state":"connected","peer_master":true}}'
before=$(requests)
ctl -s "$sock" drill --mode graceful
[ $rc = 1 ] && grep -q 'this node (gw2) is backup and its peer gw1 is master' "$tmp/err" &&
    ! tail -n +$((before + 1)) "$tmp/log" | grep -q '"type": 10'
ok $? "drill on the backup: exit 1, names the master, no step-down requested"
reply 0 'not json'
ctl -s "$sock" drill --mode graceful
[ $rc = 1 ] && grep -q 'unreadable answer: offset 0' "$tmp/err"
ok $? "drill: an answer that is not JSON is an error with its offset"
# handover: a backup in sync is safe to stop at once, and asks nobody to
# step down; a master whose peer never takes over steps up again and
# fails; without a peer there is nothing to hand over.
reply 0 '{"role":"backup","in_sync":true,"sync":{"state":"connected","peer_master":true}}'
before=$(requests)
ctl -s "$sock" --json handover --stable 0
[ $rc = 0 ] && grep -q '"safe": true' "$tmp/out" && grep -q 'not master' "$tmp/out" &&
    ! tail -n +$((before + 1)) "$tmp/log" | grep -q '"type": 10'
ok $? "handover on a backup in sync: safe at once, no step-down"
reply 0 '{"role":"master","in_sync":true,"sync":{"state":"connected","peer_master":false}}'
before=$(requests)
ctl -s "$sock" handover --stable 0 --timeout 1
[ $rc = 1 ] && grep -q 'NOT safe\|safe: no' "$tmp/out" && grep -q 'did not take over within 1 s' "$tmp/out" &&
    tail -n +$((before + 1)) "$tmp/log" | grep '"type": 10' | head -1 | grep -q '"step-down", "300"' &&
    tail -n +$((before + 1)) "$tmp/log" | grep '"type": 10' | tail -1 | grep -q '"step-up"'
ok $? "handover on a master whose peer does not take over: steps down, then up again, exit 1"
reply 0 '{"role":"master","in_sync":false,"sync":{"state":"connected"}}'
ctl -s "$sock" handover --timeout 1
[ $rc = 1 ] && grep -q 'for 6 s in a row within 1 s' "$tmp/out"
ok $? "handover with the pair out of sync: exit 1 after --timeout, says why"
reply 0 '{"role":"master","in_sync":true,"sync":{"state":"disabled"}}'
ctl -s "$sock" handover
[ $rc = 0 ] && grep -q 'no peer is configured' "$tmp/out"
ok $? "handover without a peer: nothing to hand over, exit 0"
before=$(requests)
for args in "drain" "flows --limit abc" "ha bogus" "status extra" "drill -m kill" "handover --stable x"; do
	# shellcheck disable=SC2086
	ctl -s "$sock" $args
done
[ "$(requests)" = "$before" ]
ok $? "usage errors never reach the daemon"

reply 1 'provider "isp-z" is not configured'
ctl -s "$sock" drain isp-z
[ $rc = 1 ] && grep -qx 'uplinkctl: provider "isp-z" is not configured' "$tmp/err" &&
    [ ! -s "$tmp/out" ]
ok $? "status 1: exit 1, the daemon's message on stderr, nothing on stdout"

reply 2 'no provider named "isp-q"'
ctl -s "$sock" flows --provider isp-q
[ $rc = 2 ] && grep -qx 'uplinkctl: no provider named "isp-q"' "$tmp/err" && [ ! -s "$tmp/out" ]
ok $? "status 2: exit 2, the daemon's message on stderr"

reply 7 'odd'
ctl -s "$sock" status
[ $rc = 1 ] && grep -qx 'uplinkctl: odd' "$tmp/err"
ok $? "an unknown status is a failure: exit 1"

reply 0 ''
ctl -s "$sock" reload
[ $rc = 0 ] && [ ! -s "$tmp/out" ] && [ ! -s "$tmp/err" ]
ok $? "empty OK body: exit 0, nothing printed"

reply badmagic 'x'
ctl -s "$sock" status
[ $rc = 3 ] && grep -q 'cannot reach uplinkd at .*: malformed reply' "$tmp/err"
ok $? "reply with a bad magic: exit 3, \"malformed reply\""

reply close ''
ctl -s "$sock" status
[ $rc = 3 ] && grep -q 'cannot reach uplinkd' "$tmp/err"
ok $? "daemon closes without a reply: exit 3"

! grep -q '"error"' "$tmp/log"
ok $? "every request the fake daemon got was complete"

kill "$server_pid" 2>/dev/null
wait "$server_pid" 2>/dev/null
server_pid=""

echo "1..$n"
[ $failed = 0 ]
