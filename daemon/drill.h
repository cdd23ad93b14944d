/*
 * drill: `uplinkctl drill`, a controlled failover of the pair and its
 * report.  It runs in uplinkctl, not in the daemon, because the drill
 * must outlive the node it fails; it talks to the daemons through their
 * control sockets only.
 *
 * The nodes: the one on -s, and the peer either on its own control socket
 * (--peer-socket: the lab, or both sockets reachable from one host) or as
 * the first node sees it through the sync channel (its role from the
 * peer's heartbeats, its flows from what it replicates back).
 *
 * One leg: find the active node (the master) and the standby, check that
 * the pair is in sync, take the active node's own flows, fail it, wait
 * until the standby is master, and compare its own flows with the ones
 * taken before: carried (same tuple, provider, translated source address
 * and port), changed (the tuple is there with another provider or
 * source), lost (not there).  The failure is the mode:
 *
 *   graceful   the active node steps down (uplinkd writes the fault value
 *              into keepalived's track file; ha.h), released at the end
 *   kill, link, node
 *              --fail-cmd does it (uplinkctl cannot kill or unplug another
 *              box; the lab harness tests/lab/drill.sh supplies the
 *              commands); --restore-cmd undoes it
 *   sync-cut   --fail-cmd cuts the sync link only: no role may change for
 *              --watch seconds; after --restore-cmd the pair must be in
 *              sync again with every flow of the active node on the
 *              standby
 *
 * Then the failback leg (graceful: at the step-up; other modes: after
 * --restore-cmd): when the old active node becomes master again (VRRP
 * preempt), the same comparison the other way round.  --traffic-cmd, run
 * after each leg, prints a JSON object from a traffic generator (the lab's
 * labtraffic): it is copied into the report, and a "broken" count above
 * zero fails the drill.
 *
 * Result: the process exit status (0 passed, 1 failed, 2 usage, 3 a
 * daemon could not be reached); the report is printed either way.
 */
#ifndef UPLINKD_DRILL_H
#define UPLINKD_DRILL_H

#include <stdbool.h>

enum drill_mode {
	DRILL_GRACEFUL,
	DRILL_KILL,
	DRILL_LINK,
	DRILL_NODE,
	DRILL_SYNC_CUT,
};

struct drill_opts {
	enum drill_mode mode;
	const char *socket;		/* the first node */
	const char *peer_socket;	/* NULL: the peer as the first node sees it */
	const char *fail_cmd;		/* sh -c; required unless graceful */
	const char *restore_cmd;	/* sh -c; required for sync-cut */
	const char *traffic_cmd;	/* sh -c; prints a JSON object */
	unsigned timeout_s;		/* each wait */
	unsigned settle_s;		/* after a takeover, for the flows */
	unsigned watch_s;		/* sync-cut: no role change meanwhile */
	unsigned hold_s;		/* graceful: stay down this long after */
	bool failback;			/* run and check the failback leg */
	bool force;			/* run although the pair is not in sync */
	bool json;
};

/* "graceful", "kill", ...: 0 and *out, or -1 (EINVAL). */
int drill_mode_parse(const char *s, enum drill_mode *out);
const char *drill_mode_name(enum drill_mode mode);

/* Runs the drill, prints its report on stdout (errors on stderr) and
 * returns the exit status. */
int drill_run(const struct drill_opts *o);

#endif
