/*
 * handover: `uplinkctl handover`, which makes this node safe to stop or
 * restart.  A restart loses the daemon's state, so the peer must hold
 * everything first, and if this node is master the addresses must move to
 * the peer before it goes.
 *
 *   1. wait until the pair has been in sync for stable_s in a row, with
 *      the peer master all along (a master: twice as long; a peer that is
 *      itself restarting shows as not connected within that time)
 *   2. backup: done.  master: step down (uplinkd writes the fault value
 *      into keepalived's track file for at most hold_s; ha.h) and wait
 *      until this node is no longer master and the peer says it is.  If
 *      the peer drops off meanwhile (it is restarting too), step up at
 *      once and start again at 1: both nodes must never be down together.
 *
 * Every wait is bounded by timeout_s in all.  The step-down ends with the
 * daemon (the restart that follows) or after hold_s.  A node without a
 * peer has nothing to hand over.
 *
 * Result: the exit status, 0 (safe), 1 (not safe: the timeout, the reason
 * printed), 3 (the daemon could not be reached).  Progress goes to stderr,
 * the verdict to stdout (one JSON object with json).
 */
#ifndef UPLINKD_HANDOVER_H
#define UPLINKD_HANDOVER_H

#include <stdbool.h>

struct handover_opts {
	const char *socket;
	unsigned timeout_s;
	unsigned stable_s;
	unsigned hold_s;
	bool json;
};

int handover_run(const struct handover_opts *o);

#endif
