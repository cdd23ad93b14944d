/*
 * uplinkd.h: the daemon's context.  Only main.c (lifecycle, wiring,
 * events) and report.c (what the control socket shows) see inside it; every
 * module below them gets just the pieces it needs.
 */
#ifndef UPLINKD_UPLINKD_H
#define UPLINKD_UPLINKD_H

#include <stdbool.h>
#include <stdint.h>

#include "addrs.h"
#include "backlog.h"
#include "config.h"
#include "ct.h"
#include "ctl.h"
#include "ev.h"
#include "flows.h"
#include "ha.h"
#include "health.h"
#include "queue.h"
#include "sched.h"
#include "session.h"

enum resync_phase {
	RESYNC_DUMP,		/* the dump is read a few messages per wake-up */
	RESYNC_SWEEP,		/* own flows the dump did not show go */
	RESYNC_MERGE,		/* the dump's flows are learned */
};

struct uplinkd {
	struct ev_loop *loop;
	struct config *cfg;
	struct sched *sched;
	struct flows *flows;
	struct health *health;
	struct queue *queue;
	struct ct *ct;
	struct ctl *ctl;
	struct session *session;	/* NULL without a sync section */
	struct ev_timer *resync_timer;
	/* A resync after an event overrun, from its dump to its merge
	 * (main.c); resync_seen is NULL when none runs. */
	struct flows *resync_seen;
	struct ct_dump *resync_dump;
	enum resync_phase resync_phase;
	size_t resync_cursor;
	long resync_dumped;
	size_t resync_swept;
	bool resync_again;
	int64_t resync_start_us;
	uint64_t resync_start_iteration;
	uint64_t loop_iterations;

	/* The peer's changes on their way into the kernel (hot standby), and
	 * when the last write slice left no upsert waiting. */
	struct backlog *backlog;
	int64_t backlog_empty_ms;
	struct ha *ha;
	struct ev_timer *ha_timer;
	/* Every UPLINKD_WATCH_MS: the installed rules, the leak guard. */
	struct ev_timer *watch_timer;
	bool rules_watched;		/* they can be read back (iptables-nft) */
	int64_t rules_watch_resume_ms;	/* paused after a repair that failed */
	uint64_t rules_repairs;		/* installed again after a change */
	uint64_t leak_seen;		/* the leak guard's count at the last check */
	bool leak_unreadable;		/* said so once */
	struct addrs *addrs;		/* where the provider SNAT addresses are */
	/* The takeover's check of the adopted flows against the kernel,
	 * a slice per loop iteration. */
	struct flow_key *verify;
	size_t nverify, verify_pos, verify_gone;
	int64_t verify_start_us;
	struct ct_write_stats verify_base;
	/* The last takeover, for status and drills. */
	struct {
		int64_t at_ms;		/* 0: none yet */
		size_t adopted;
		bool checked;		/* the kernel check has finished */
		double check_ms;
		uint64_t present, created, conflicts, failed;
	} takeover;
	/* keepalived's notifies may run out of order: the provider SNAT
	 * addresses (its VIPs) are the truth the role must match. */
	int64_t role_mismatch_ms;	/* since when role and addresses differ */
	int64_t start_ms;
	int64_t start_wall_s;
	bool draining[CFG_MAX_PROVIDERS];
	uint64_t decisions[CFG_MAX_PROVIDERS];
	uint64_t decisions_degraded;
	uint64_t safety_net;		/* mid-stream packets of known flows
					 * whose entry was rewritten */
	uint64_t safety_net_failed;	/* ... whose entry the kernel refused */
	uint64_t flows_full;		/* upserts refused: table full */
	uint64_t full_seen;		/* flows_full + the peer's refused, at the last check */
	uint64_t resyncs;
	uint64_t reloads;
	uint64_t reload_failures;
	char last_reload_error[CFG_ERR_MAX];
	int sigfd;
};

/* Seconds on the daemon's clock, for flow timestamps. */
uint32_t uplinkd_now_s(const struct uplinkd *d);
/* "up", "down" or "draining". */
const char *uplinkd_provider_state(const struct uplinkd *d, size_t provider);

/* report.c: registers the read-only control handlers (status, providers,
 * flows, sync, metrics). */
void report_register(struct uplinkd *d);

#endif
