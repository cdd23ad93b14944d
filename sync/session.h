/*
 * session: replication of flows between the two nodes over the channel.
 *
 * Each node sends the flows it owns (learned from its own conntrack) and
 * keeps the peer's flows in the shared flow table with origin FLOW_PEER.
 *
 *   on connect   both send Hello, then each sends its whole own-flow set
 *                between BulkBegin and BulkEnd (walked a little per loop
 *                iteration, paced by the channel's queue); the receiver
 *                marks what it sees and sweeps peer flows the bulk did not
 *                contain, then acknowledges the bulk's epoch.  A direction
 *                is in sync once that acknowledgement arrived; the node is
 *                in sync when both are.
 *   streaming    own-flow changes go into a pending set keyed by flow (a
 *                later change of a flow replaces the earlier one), flushed
 *                as numbered Batches in the loop's before-sleep hook and
 *                acknowledged cumulatively; an Ack may wait a little and
 *                then says how long (Ack.held_us).  The pending set is bounded:
 *                when full, or when the channel refuses more bytes, the
 *                node is out of sync and a new bulk replaces the backlog.
 *   liveness     a Heartbeat every second; nothing heard for
 *                SESSION_DEAD_MS drops the connection, and the channel
 *                redials.
 *   violations   a sequence gap or a lost Batch closes the connection (the
 *                reconnect resyncs); every rejection is counted.
 *   expiry       peer flows are dropped after the peer has been gone for
 *                SESSION_PEER_EXPIRY_S, so a vanished peer leaves nothing
 *                behind forever.
 *
 * A flow that exists as this node's own is overwritten by the peer's copy
 * only when the peer's copy wins (session_set_master()).
 *
 * Errors: NULL or -1 with errno; the reason is logged where it is known.
 */
#ifndef UPLINKD_SESSION_H
#define UPLINKD_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "emit.h"
#include "ev.h"
#include "flows.h"

#define SESSION_MAX_PENDING (1u << 20)
#define SESSION_BATCH_FLOWS 2048
#define SESSION_HEARTBEAT_MS 1000
#define SESSION_DEAD_MS 2500
#ifndef SESSION_PEER_EXPIRY_S	/* test_session builds with a few seconds */
#define SESSION_PEER_EXPIRY_S 600
#endif

struct session;

/* Provider state as this node sees it, sent to the peer. */
enum session_health {
	SESSION_PROVIDER_UNKNOWN = 0,
	SESSION_PROVIDER_UP = 1,
	SESSION_PROVIDER_DOWN = 2,
};

struct session_stats {
	bool connected;			/* channel up and Hello accepted */
	bool peer_closed;		/* not connected because the peer's end
					 * closed the connection (its daemon
					 * exited), not a timeout or an error */
	bool in_sync;
	bool tx_in_sync, rx_in_sync;	/* per direction */
	uint64_t seq_sent, seq_acked, seq_received;	/* this connection */
	uint64_t batches_sent, batches_received;
	uint64_t acks_sent;		/* cumulative: several Batches each */
	uint64_t upserts_sent, deletes_sent;
	uint64_t upserts_received, deletes_received;
	uint64_t bulks_sent;		/* bulk resends started by us */
	uint64_t bulks_completed;	/* ... and acknowledged by the peer */
	uint64_t bulks_received;	/* complete bulks from the peer */
	uint64_t bulk_swept;		/* stale peer flows a bulk removed */
	uint64_t overflows;		/* pending bound or channel queue hit */
	uint64_t conflicts;		/* peer flow that is our own here */
	uint64_t unknown_provider;	/* peer flow of a provider we lack */
	uint64_t cache_full;		/* peer flow refused: table full */
	uint64_t rx_missing;		/* ... of them since the peer's last
					 * bulk began: not in sync while > 0 */
	uint64_t hello_refused;		/* bad or missing Hello */
	uint64_t expired;		/* peer flows dropped by expiry */
	uint64_t pending;		/* changes waiting to be sent */
	uint64_t bulk_ms_last;		/* duration of the last completed bulk */
	uint64_t yielded;		/* own flows the master's copy replaced */
	bool peer_providers_known;	/* the peer sent its provider states */
	unsigned peer_up;		/* ... providers up (drained or not) */
	/* Last minute, from session_get_lag() (it sorts the samples: for
	 * status, not for every timer tick); < 0 without samples. */
	double lag_p50_ms, lag_p99_ms;
	uint64_t lag_samples;		/* ... how many */
};

/*
 * Told after the peer's copy of a flow entered or left the table (an
 * upsert, a delete, a bulk's sweep, expiry), so that the owner can mirror
 * it into the kernel.  For SESSION_PEER_DELETE only f->key is meaningful.
 */
enum session_peer_event {
	SESSION_PEER_UPSERT,
	SESSION_PEER_DELETE,
};
typedef void (*session_peer_cb)(enum session_peer_event ev, const struct flow *f,
    void *data);

/* cfg (with has_sync) and flows must outlive the session (see
 * session_set_config for reloads); cb may be NULL.  NULL with errno; the
 * reason is logged. */
struct session *session_create(struct ev_loop *loop, const struct config *cfg,
    struct flows *flows, session_peer_cb cb, void *data);
void session_destroy(struct session *s);

/* A reload's config: 0, or -1 with errno EINVAL when its node or sync
 * section differs (the caller then creates a new session).  The TLS
 * files are read again (renewed certificates).  Provider indexes may have
 * moved, so the peer is asked for a bulk resend. */
int session_set_config(struct session *s, const struct config *cfg);

/* An own flow appeared or changed / went away (after the flow table was
 * updated).  event_us: monotonic time of the conntrack event. */
void session_own_upsert(struct session *s, const struct flow *f, int64_t event_us);
void session_own_delete(struct session *s, const struct flow_key *key, int64_t event_us);
/* The own-flow set may have changed wholesale (resync from a dump). */
void session_resync(struct session *s);
/* Operator's resync: a bulk in both directions.  0, or -1 with errno
 * ENOTCONN when no peer is connected. */
int session_request_resync(struct session *s);

/* health[i] and draining[i] for each configured provider. */
void session_set_providers(struct session *s, const enum session_health *health,
    const bool *draining);

/*
 * Which copy wins when a flow is both ours and the peer's: the master's;
 * when neither node is master, the copy of the node whose name sorts
 * lower.  Each side tells the other its role (Hello, Heartbeat).  A copy
 * that loses is counted on the losing side as yielded, a copy kept
 * against the peer's as a conflict.  (A backup whose daemon restarted has
 * learned the hot-standby entries of its kernel as its own.)
 */
void session_set_master(struct session *s, bool master);

bool session_in_sync(const struct session *s);
/* Between the peer's BulkBegin and BulkEnd (false for NULL). */
bool session_receiving_bulk(const struct session *s);
void session_get_stats(const struct session *s, struct session_stats *out);
/* Fills out's lag fields. */
void session_get_lag(const struct session *s, struct session_stats *out);
/* Emits the fields of the `sync` object (ARCHITECTURE.md keys first);
 * detail adds TLS, sequence, lag and rejection breakdowns.  s == NULL
 * (no sync configured) emits the object of a node that runs alone. */
void session_report(const struct session *s, const struct config *cfg,
    struct emit *out, bool detail);
/* The same for `uplinkctl metrics`: Prometheus text into f. */
void session_metrics(const struct session *s, FILE *f);

#endif
