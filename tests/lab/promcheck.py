#!/usr/bin/env python3
"""promcheck.py FILE: checks `uplinkctl metrics` output against the
Prometheus text exposition format (0.0.4) as a scraper reads it.

Every metric has one HELP and one TYPE line before its samples, its samples
are contiguous, names and labels are well formed, no series repeats, and
every value is a number.  Prints each problem with its line number and
exits 1 if there is any; prints the count of metrics and samples otherwise.
"""
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
TYPES = {"counter", "gauge", "summary", "histogram", "untyped"}


def main(path):
    problems = []
    helps, types, sampled, series = {}, {}, set(), set()
    last, samples = None, 0
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, 1):
        def bad(msg):
            problems.append(f"{path}:{n}: {msg}: {line!r}")
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if len(parts) < 4 or not NAME.match(parts[2]) or not parts[3].strip():
                bad("malformed or empty comment")
                continue
            kind, name, rest = parts[1], parts[2], parts[3]
            seen = helps if kind == "HELP" else types
            if name in seen:
                bad(f"a second {kind} for {name}")
            if name in sampled:
                bad(f"{kind} for {name} after its samples")
            if kind == "TYPE" and rest not in TYPES:
                bad(f"unknown type {rest}")
            seen[name] = rest
            continue
        if line.startswith("#") or not line.strip():
            bad("stray line")
            continue
        m = SAMPLE.match(line)
        if not m:
            bad("not a sample")
            continue
        name, labels, value = m.group(1), m.group(3) or "", m.group(4)
        samples += 1
        if name != last and name in sampled:
            bad(f"samples of {name} are not contiguous")
        sampled.add(name)
        last = name
        if name not in types:
            bad(f"no TYPE before the first sample of {name}")
        if name not in helps:
            bad(f"no HELP before the first sample of {name}")
        pos, keys = 0, []
        while pos < len(labels):
            lm = LABEL.match(labels, pos)
            if not lm:
                bad("malformed labels")
                break
            keys.append(lm.group(1))
            pos = lm.end()
        if len(set(keys)) != len(keys):
            bad("a label twice")
        if (name, labels) in series:
            bad("a series twice")
        series.add((name, labels))
        try:
            float(value)
        except ValueError:
            bad(f"value {value!r} is not a number")
    for name in types.keys() ^ helps.keys():
        problems.append(f"{path}: {name} has only one of HELP and TYPE")
    for p in problems:
        print(p)
    if not problems:
        print(f"{len(types)} metrics, {samples} samples")
    return 1 if problems or samples == 0 else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: promcheck.py FILE", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
