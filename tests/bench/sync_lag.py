#!/usr/bin/env python3
"""Cache counters of a sync daemon, for tests/bench/bench_sync.sh.

Talks to the daemon's own UNIX control socket (no client process per
query, so a poll costs about 0.1 ms):
  uplinkd     the ctl protocol of daemon/ctl.h, `status` as JSON:
              fields own, peer (flows.own / flows.peer)
  conntrackd  its local protocol: one int request, text reply until EOF;
              request 21 (STATS, what `conntrackd -s` prints): fields
              internal, external ("current active connections" of each
              cache), udp_rx (sync datagrams received)
  kernel      field kernel: nf_conntrack_count of the network namespace
              the script runs in (run it with `ip netns exec`); needs no
              socket

Commands:
  count  [--uplinkd|--conntrackd SOCK] --field F
         prints the value
  wait   ... --field F --target N --timeout S [--interval-ms MS]
         polls until value >= N; prints "t_us=... value=..."; exit 1 on timeout
  poll   ... --field F[,F2...] --target N --timeout S --out FILE
         [--interval-us US] [--linger S]
         like wait, but writes every poll as "T_US V1 [V2...]" (CLOCK_MONOTONIC
         at the reply, i.e. a time by which the values were reached); stops
         when all fields are >= N, or LINGER s after the first one is
  lag    --stamps FILE --polls FILE --base B [--column K]
         per-entry lag from ctgen --stamps and a poll file (see below);
         K (1-based) picks the field

The lag of entry i (0-based in the stream) is  a_i - e_i  where e_i is the
time ctgen sent the batch holding entry i (its NEW event fires inside that
sendmsg, so e_i <= event time: the lag includes the kernel's create) and
a_i is the first poll reply showing the peer's cache at >= B + i + 1
entries.  With in-order delivery that is exactly when entry i was in the
peer's cache, up to one poll interval late (the resolution, printed).
"""
import argparse
import json
import socket
import struct
import sys
import time

CTL_MAGIC = 0x4B4C5055
CTL_STATUS = 1
CTL_F_JSON = 1
CTD_STATS = 21


def now_us():
    return time.monotonic_ns() // 1000


def recv_all(s):
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def uplinkd_query(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect(path)
        s.sendall(struct.pack("<IHHII", CTL_MAGIC, 1, CTL_STATUS, CTL_F_JSON, 0))
        data = recv_all(s)
    finally:
        s.close()
    magic, status, length = struct.unpack_from("<III", data)
    if magic != CTL_MAGIC or status != 0:
        raise OSError("uplinkd replied status %d" % status)
    d = json.loads(data[12:12 + length])
    return {"own": d["flows"]["own"], "peer": d["flows"]["peer"]}


def conntrackd_query(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect(path)
        s.sendall(struct.pack("=i", CTD_STATS))
        text = recv_all(s).decode(errors="replace")
    finally:
        s.close()
    out, cache = {}, None
    for line in text.splitlines():
        if line.startswith("cache internal"):
            cache = "internal"
        elif line.startswith("cache external"):
            cache = "external"
        elif line.startswith("current active connections") and cache:
            out[cache] = int(line.split()[-1])
            cache = None
        elif "Pckts recv" in line:
            out["udp_rx"] = int(line.split()[3])
    return out


def kernel_count():
    with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
        return int(f.read())


def make_query(args):
    """A function returning the values of args.field (comma-separated)."""
    fields = args.field.split(",")
    daemon = [f for f in fields if f != "kernel"]
    fn = path = None
    if daemon:
        if args.uplinkd:
            path, fn = args.uplinkd, uplinkd_query
        elif args.conntrackd:
            path, fn = args.conntrackd, conntrackd_query
        else:
            raise SystemExit("field %s needs --uplinkd or --conntrackd" % daemon[0])

    def q():
        d = fn(path) if fn else {}
        return [kernel_count() if f == "kernel" else d[f] for f in fields]
    return q


def cmd_count(args):
    print(make_query(args)()[0])


def poll_loop(args, interval_s, out=None, linger=0.0):
    q = make_query(args)
    deadline = time.monotonic() + args.timeout
    first_done = None
    while True:
        try:
            v = q()
        except (OSError, KeyError, ValueError):
            v = [-1] * len(args.field.split(","))	# restarting or busy: again
        t = now_us()
        if out is not None:
            out.write("%d %s\n" % (t, " ".join(str(x) for x in v)))
            out.flush()
        if min(v) >= args.target:
            return t, v[0], True
        if v[0] >= args.target and first_done is None:
            first_done = time.monotonic()
        if first_done is not None and time.monotonic() - first_done >= linger:
            return t, v[0], True
        if time.monotonic() >= deadline:
            return t, v[0], False
        time.sleep(interval_s)


def cmd_wait(args):
    t, v, ok = poll_loop(args, args.interval_ms / 1000.0)
    print("t_us=%d value=%d" % (t, v))
    return 0 if ok else 1


def cmd_poll(args):
    with open(args.out, "w") as out:
        t, v, ok = poll_loop(args, args.interval_us / 1e6, out, args.linger)
    return 0 if ok else 1


def pct(v, p):
    return v[(len(v) - 1) * p // 100]


def cmd_lag(args):
    ev = []			# event time of each entry, in stream order
    for line in open(args.stamps):
        first, count, t = (int(x) for x in line.split())
        ev.extend([t] * count)
    polls = []
    for line in open(args.polls):
        v = line.split()
        polls.append((int(v[0]), int(v[args.column])))
    lags, j = [], 0
    for i, e in enumerate(ev):
        need = args.base + i + 1
        while j < len(polls) and polls[j][1] < need:
            j += 1
        if j == len(polls):
            break		# never arrived (within the poller's deadline)
        lags.append(max(0, polls[j][0] - e))
    gaps = sorted(b[0] - a[0] for a, b in zip(polls, polls[1:]))
    res = gaps[len(gaps) // 2] if gaps else 0
    if not lags:
        print("lag entries=%d arrived=0" % len(ev))
        return 1
    tail = lags[-1]
    lags.sort()
    print("lag entries=%d arrived=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f tail_ms=%.3f "
          "polls=%d poll_interval_ms=%.3f"
          % (len(ev), len(lags), pct(lags, 50) / 1e3, pct(lags, 99) / 1e3,
             lags[-1] / 1e3, tail / 1e3, len(polls), res / 1e3))
    return 0 if len(lags) == len(ev) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("count", "wait", "poll"):
        p = sub.add_parser(name)
        g = p.add_mutually_exclusive_group()
        g.add_argument("--uplinkd", metavar="SOCK")
        g.add_argument("--conntrackd", metavar="SOCK")
        p.add_argument("--field", required=True)
        if name != "count":
            p.add_argument("--target", type=int, required=True)
            p.add_argument("--timeout", type=float, required=True)
        if name == "wait":
            p.add_argument("--interval-ms", type=float, default=20)
        if name == "poll":
            p.add_argument("--out", required=True)
            p.add_argument("--interval-us", type=float, default=1000)
            p.add_argument("--linger", type=float, default=0)
    p = sub.add_parser("lag")
    p.add_argument("--stamps", required=True)
    p.add_argument("--polls", required=True)
    p.add_argument("--base", type=int, default=0)
    p.add_argument("--column", type=int, default=1)
    args = ap.parse_args()
    return {"count": cmd_count, "wait": cmd_wait, "poll": cmd_poll, "lag": cmd_lag}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
