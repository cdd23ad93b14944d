#!/usr/bin/python3
"""Renders ha/keepalived.conf.j2 (or any template) with variables from a
JSON file: render.py TEMPLATE VARS.json > keepalived.conf

The lab uses it; the ansible role renders the same template with its own
template module, so there is one source of the keepalived config.
Undefined variables are errors, not empty strings."""
import json
import sys

import jinja2


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: render.py TEMPLATE VARS.json\n")
        return 2
    with open(sys.argv[1]) as f:
        text = f.read()
    with open(sys.argv[2]) as f:
        variables = json.load(f)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    sys.stdout.write(env.from_string(text).render(**variables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
