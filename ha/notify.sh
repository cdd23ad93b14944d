#!/bin/sh
# keepalived's notify for the uplinkd sync group:
#   notify.sh [-b UPLINKCTL] SOCKET master|backup|fault
# One call of uplinkctl per state change; the logic lives in uplinkd.
# Exit status is uplinkctl's (0 ok, 1 failed, 2 usage, 3 daemon unreachable),
# which keepalived logs.
set -eu
uplinkctl=uplinkctl
if [ "${1:-}" = "-b" ]; then
	uplinkctl=$2
	shift 2
fi
[ $# -eq 2 ] || { echo "usage: $0 [-b UPLINKCTL] SOCKET master|backup|fault" >&2; exit 2; }
exec "$uplinkctl" -s "$1" ha "$2"
