/*
 * session: see session.h for the protocol.  Implementation notes:
 *
 * The pending set is a flow table of its own (sized SESSION_MAX_PENDING),
 * so coalescing by key costs one hash lookup; its aux byte says whether
 * the entry is an upsert or a delete.  It is only filled while a peer is
 * connected and no bulk is waiting to start: a bulk reads the live flow
 * table, so changes before it starts are in it anyway.
 *
 * The bulk walks the flow table by dense position, downwards, a few
 * batches per loop iteration (SESSION_BULK_STEP) while the channel's
 * queue is short.  The step is what lets the bulk stream: each step's
 * batches are written at the end of the iteration (channel_flush), while
 * a walk that filled the queue to SESSION_QUEUE_HIGH in one go would
 * encode a whole 100k-flow table before the peer received its first byte
 * (sender and receiver then work one after the other instead of at
 * once).  Changes during the walk go through the pending set and are
 * flushed after each step, in stream order: whatever the walk sends is
 * the table's current state, and any later change follows it.
 *
 * The receiver's mark: a peer flow's aux byte holds the number (1..255) of
 * the last bulk that touched it.  A BulkEnd sweeps peer flows whose mark
 * is not the current bulk's.  Any flow missing from a complete bulk is
 * swept at that bulk, so a mark cannot survive long enough to be confused
 * with a later bulk's number by wrapping around (it would take 255 bulks
 * in a row that all broke off before their BulkEnd).
 *
 * Lag is measured at the sender: the monotonic time of the oldest change
 * in a flush is remembered with the sequence numbers of its Batches, and
 * the Ack that covers them closes the sample.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "frame.h"
#include "log.h"
#include "netaddr.h"
#include "session.h"

#define SESSION_TICK_MS		250
#define SESSION_QUEUE_HIGH	(8u << 20)	/* bulk pauses above this */
#define SESSION_BULK_STEP	4		/* bulk batches per loop iteration */
#define SESSION_QUEUE_LOW	(1u << 20)	/* an overflowed bulk restarts below */
#define SESSION_INFLIGHT	1024		/* batches whose lag is tracked */
#define SESSION_LAG_SAMPLES	8192
#define SESSION_LAG_WINDOW_MS	60000
/* Acks wait up to SESSION_ACK_DELAY_MS (or SESSION_ACK_BATCHES batches) so
 * that a steady stream, a Batch every 5 ms, costs the pair one Ack write
 * and one sender wake-up per four Batches instead of one per Batch.  Any
 * loop iteration after SESSION_ACK_EARLY_MS sends the Ack: in a stream
 * that is the one that brings the fourth Batch, so the timer, which
 * would cost a wake-up of its own, is left for a stream that stops. */
#define SESSION_ACK_DELAY_MS	20
/* A receiver whose table refused some of the peer's flows asks for them
 * again once they would fit, at most this often, so that a table that
 * stays near full does not turn into a bulk every tick. */
#define SESSION_REFILL_MS	10000
#define SESSION_ACK_EARLY_MS	15
#define SESSION_ACK_BATCHES	64

enum pending_op {
	PENDING_UPSERT = 1,
	PENDING_DELETE = 2,
};

enum bulk_state {
	BULK_IDLE,		/* nothing to send, or done */
	BULK_WANTED,		/* starts when the channel queue is short */
	BULK_WALKING,
	BULK_WAIT_ACK,		/* BulkEnd sent, its epoch not yet acked */
};

struct lag_sample {
	int64_t at_ms;
	uint32_t lag_us;
};

struct session {
	struct ev_loop *loop;
	const struct config *cfg;
	struct flows *flows;
	session_peer_cb peer_cb;
	void *peer_data;
	struct channel *ch;
	struct frame_decoder *dec;	/* per connection */
	struct frame_stats fst;		/* across connections */
	struct ev_timer *tick;
	struct ev_timer *expiry;
	uint8_t boot_id[FRAME_BOOT_ID_LEN];

	/* The current connection. */
	bool up;			/* channel up */
	bool hello_seen;
	int64_t last_rx_ms, last_hb_ms;
	uint64_t seq_tx, seq_acked, seq_rx;
	bool ack_due;
	bool acks_delayed;		/* the peer announced CAP_ACK_HELD */
	uint64_t ack_batches;		/* applied since the last Ack */
	int64_t ack_first_us, ack_last_us;	/* first and last of them */
	struct ev_timer *ack_timer;	/* sends a delayed Ack when a stream stops */
	uint64_t ack_echo_ms;
	uint64_t ack_bulk_epoch;	/* to acknowledge, 0 if none */
	bool want_bulk_from_peer;
	uint64_t peer_flows_own, peer_flows_peer;	/* from its heartbeat */
	int64_t peer_hb_ms;		/* ... received then */
	char peer_node[CFG_NAME_MAX];

	/* Our bulk towards the peer. */
	enum bulk_state tx_bulk;
	uint64_t tx_epoch;
	size_t tx_walk;			/* positions below this are still to send */
	uint64_t tx_bulk_count;
	int64_t tx_bulk_start_ms;
	bool tx_in_sync;

	/* The peer's bulk towards us. */
	bool rx_bulk;
	uint64_t rx_epoch;
	uint8_t rx_mark;
	bool rx_in_sync;
	uint64_t rx_missing;		/* peer flows refused since its last BulkBegin */
	int64_t rx_missing_ms;		/* the last refusal */
	int64_t rx_refill_ms;		/* when we last asked for them again */

	struct flows *pending;
	int64_t pending_since_us;	/* oldest change in it, 0 when empty */

	struct { uint64_t seq; int64_t since_us; } inflight[SESSION_INFLIGHT];
	size_t inflight_head, inflight_len;
	struct lag_sample lag[SESSION_LAG_SAMPLES];
	size_t lag_head, lag_len;

	enum session_health prov_health[CFG_MAX_PROVIDERS];
	bool prov_draining[CFG_MAX_PROVIDERS];
	bool prov_dirty;
	struct {
		char name[CFG_NAME_MAX];
		int state;		/* Uplinkd__ProviderHealth */
		bool draining;
		uint32_t weight;
	} peer_prov[CFG_MAX_PROVIDERS];
	size_t npeer_prov;

	/* Scratch for encoding: one Batch's worth. */
	struct frame_flow_pb *fpb;
	Uplinkd__Flow **fptr;
	struct frame_flowkey_pb *kpb;
	Uplinkd__FlowKey **kptr;
	uint8_t *buf;
	size_t bufcap;

	struct session_stats st;
	char last_error[160];
	int64_t last_error_ms;
	bool fingerprint_warned;
	bool master;			/* this node, as the owner says */
	bool peer_master;		/* the peer, as it last said */
	bool hb_due;			/* tell the peer our role now */
};

static uint64_t
unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void __attribute__((format(printf, 2, 3)))
session_error(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->last_error, sizeof(s->last_error), fmt, ap);
	va_end(ap);
	s->last_error_ms = ev_now_ms(s->loop);
}

/* Ends the connection for a reason the peer caused; the channel redials
 * and the reconnect resyncs both ways. */
static void
session_drop(struct session *s, const char *why)
{
	session_error(s, "%s", why);
	log_warnx("sync: dropping the connection to %s: %s", s->cfg->sync.tls.peer_name, why);
	channel_close(s->ch, why);
}

static bool
session_connected(const struct session *s)
{
	return s->up && s->hello_seen;
}

static void
pending_clear(struct session *s)
{
	flows_sweep(s->pending, FLOW_OWN, NULL, NULL);
	s->pending_since_us = 0;
}

static void
lag_add(struct session *s, int64_t lag_us)
{
	struct lag_sample *l = &s->lag[(s->lag_head + s->lag_len) % SESSION_LAG_SAMPLES];

	if (s->lag_len < SESSION_LAG_SAMPLES)
		s->lag_len++;
	else
		s->lag_head = (s->lag_head + 1) % SESSION_LAG_SAMPLES;
	l->at_ms = ev_now_ms(s->loop);
	l->lag_us = lag_us < 0 ? 0 : lag_us > UINT32_MAX ? UINT32_MAX : (uint32_t)lag_us;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void
session_get_lag(const struct session *s, struct session_stats *st)
{
	uint32_t v[SESSION_LAG_SAMPLES];
	int64_t since = ev_now_ms(s->loop) - SESSION_LAG_WINDOW_MS;
	size_t n = 0;

	for (size_t i = 0; i < s->lag_len; i++) {
		const struct lag_sample *l = &s->lag[(s->lag_head + i) % SESSION_LAG_SAMPLES];

		if (l->at_ms >= since)
			v[n++] = l->lag_us;
	}
	st->lag_samples = n;
	st->lag_p50_ms = st->lag_p99_ms = -1;
	if (n == 0)
		return;
	qsort(v, n, sizeof(v[0]), cmp_u32);
	st->lag_p50_ms = v[(n - 1) / 2] / 1000.0;
	st->lag_p99_ms = v[(n - 1) * 99 / 100] / 1000.0;
}

/* --- sending --- */

/* 0, or -1 when the frame could not be queued (the session is then out of
 * sync and will resend everything). */
static void session_overflow(struct session *s, const char *why);

static int
session_send(struct session *s, enum frame_type type, const ProtobufCMessage *msg)
{
	ssize_t n = frame_encode(type, msg, s->buf, s->bufcap);

	if (n < 0) {
		/* Batches are bounded well under FRAME_MAX_PAYLOAD: a bug. */
		log_warn("sync: encoding %s", frame_type_name(type));
		session_overflow(s, "frame encoding failed");
		return -1;
	}
	if (channel_send(s->ch, s->buf, (size_t)n) == -1) {
		/* Not queued: the flows in it are lost to the peer unless a
		 * bulk resends them (a bulk's walk has moved past them).  A
		 * full queue is dropped with the connection: a bulk queued
		 * behind CHANNEL_MAX_QUEUED bytes would leave the peer
		 * reporting itself in sync, while it misses these flows, for
		 * as long as it takes to read them; a closed connection puts
		 * both sides out of sync at once, and the reconnect resends. */
		if (errno == ENOBUFS) {
			char why[96];

			snprintf(why, sizeof(why), "the peer has not read the last %u MiB queued for it",
			    CHANNEL_MAX_QUEUED >> 20);
			s->st.overflows++;
			session_drop(s, why);
		} else if (errno != ENOTCONN) {
			session_overflow(s, "queueing a frame failed (out of memory)");
		}
		return -1;
	}
	return 0;
}

/*
 * The peer can no longer be kept current by deltas: forget them and resend
 * everything once the channel has room.
 */
static void
session_overflow(struct session *s, const char *why)
{
	s->st.overflows++;
	if (s->tx_in_sync || s->tx_bulk != BULK_WANTED)
		log_warnx("sync: %s; the peer is out of sync until a bulk resend completes", why);
	session_error(s, "%s", why);
	s->tx_in_sync = false;
	s->tx_bulk = BULK_WANTED;
	pending_clear(s);
}

static int
send_batch(struct session *s, size_t nup, size_t ndel, int64_t since_us)
{
	Uplinkd__Batch b = UPLINKD__BATCH__INIT;

	b.has_seq = 1;
	b.seq = s->seq_tx + 1;
	b.n_upserts = nup;
	b.upserts = s->fptr;
	b.n_deletes = ndel;
	b.deletes = s->kptr;
	b.has_sent_ms = 1;
	b.sent_ms = unix_ms();
	if (session_send(s, FRAME_BATCH, &b.base) == -1)
		return -1;
	s->seq_tx = b.seq;
	s->st.batches_sent++;
	s->st.upserts_sent += nup;
	s->st.deletes_sent += ndel;
	if (since_us != 0) {
		if (s->inflight_len == SESSION_INFLIGHT) {
			s->inflight_head = (s->inflight_head + 1) % SESSION_INFLIGHT;
			s->inflight_len--;
		}
		s->inflight[(s->inflight_head + s->inflight_len) % SESSION_INFLIGHT].seq = b.seq;
		s->inflight[(s->inflight_head + s->inflight_len) % SESSION_INFLIGHT].since_us = since_us;
		s->inflight_len++;
	}
	return 0;
}

static int
add_upsert(struct session *s, size_t *nup, const struct flow *f)
{
	struct flow copy = *f;

	copy.origin = FLOW_OWN;
	if (frame_flow_to_pb(&copy, s->cfg, &s->fpb[*nup]) == -1)
		return -1;	/* provider index out of range: skip it */
	s->fptr[*nup] = &s->fpb[*nup].pb;
	(*nup)++;
	return 0;
}

static void
flush_pending(struct session *s)
{
	size_t n = flows_count(s->pending), nup = 0, ndel = 0;
	int64_t since = s->pending_since_us;

	if (n == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct flow *p = flows_at(s->pending, i);

		if (p->aux == PENDING_DELETE) {
			frame_flowkey_to_pb(&p->key, &s->kpb[ndel]);
			s->kptr[ndel] = &s->kpb[ndel].pb;
			ndel++;
		} else {
			add_upsert(s, &nup, p);
		}
		if (nup + ndel == SESSION_BATCH_FLOWS || i + 1 == n) {
			if (send_batch(s, nup, ndel, since) == -1)
				return;	/* session_overflow() cleared the set */
			nup = ndel = 0;
		}
	}
	pending_clear(s);
}

static void
bulk_start(struct session *s)
{
	Uplinkd__BulkBegin b = UPLINKD__BULK_BEGIN__INIT;

	s->tx_epoch++;
	b.has_epoch = 1;
	b.epoch = s->tx_epoch;
	b.has_expected = 1;
	b.expected = flows_count_origin(s->flows, FLOW_OWN);
	/* The walk reads the table: what is pending is in it already. */
	pending_clear(s);
	s->tx_bulk = BULK_WALKING;
	if (session_send(s, FRAME_BULK_BEGIN, &b.base) == -1)
		return;
	s->tx_walk = flows_count(s->flows);
	s->tx_bulk_count = 0;
	s->tx_bulk_start_ms = ev_now_ms(s->loop);
	s->st.bulks_sent++;
	log_debug("sync: bulk %llu to the peer: %llu flows", (unsigned long long)b.epoch,
	    (unsigned long long)b.expected);
}

static void
bulk_step(struct session *s)
{
	int step = SESSION_BULK_STEP;

	/* What is left of the walk after these steps follows in the next
	 * loop iteration, without sleeping (session_flush). */
	while (s->tx_bulk == BULK_WALKING && channel_queued(s->ch) < SESSION_QUEUE_HIGH &&
	    step-- > 0) {
		size_t nup = 0;

		if (s->tx_walk > flows_count(s->flows))
			s->tx_walk = flows_count(s->flows);
		while (s->tx_walk > 0 && nup < SESSION_BATCH_FLOWS) {
			const struct flow *f = flows_at(s->flows, --s->tx_walk);

			if (f->origin == FLOW_OWN)
				add_upsert(s, &nup, f);
		}
		if (nup > 0) {
			if (send_batch(s, nup, 0, 0) == -1)
				return;
			s->tx_bulk_count += nup;
		}
		if (s->tx_walk == 0) {
			Uplinkd__BulkEnd e = UPLINKD__BULK_END__INIT;

			e.has_epoch = 1;
			e.epoch = s->tx_epoch;
			e.has_count = 1;
			e.count = s->tx_bulk_count;
			if (session_send(s, FRAME_BULK_END, &e.base) == -1)
				return;
			s->tx_bulk = BULK_WAIT_ACK;
		}
	}
}

static void
send_ack(struct session *s)
{
	Uplinkd__Ack a = UPLINKD__ACK__INIT;

	a.has_seq = 1;
	a.seq = s->seq_rx;
	if (s->ack_echo_ms != 0) {
		a.has_echo_ms = 1;
		a.echo_ms = s->ack_echo_ms;
	}
	if (s->ack_bulk_epoch != 0) {
		a.has_bulk_epoch = 1;
		a.bulk_epoch = s->ack_bulk_epoch;
	}
	if (s->acks_delayed && s->ack_batches > 0) {
		a.has_held_us = 1;
		a.held_us = (uint64_t)(ev_clock_us() - s->ack_last_us);
	}
	if (session_send(s, FRAME_ACK, &a.base) == 0) {
		ev_timer_del(s->loop, s->ack_timer);
		s->ack_timer = NULL;
		s->ack_due = false;
		s->ack_bulk_epoch = 0;
		s->ack_batches = 0;
		s->st.acks_sent++;
	}
}

static int64_t
on_ack_timer(void *data)
{
	struct session *s = data;

	/* The before-sleep hook that follows sends the Ack. */
	s->ack_timer = NULL;
	return EV_TIMER_STOP;
}

/* Whether the Ack that is due goes out in this iteration.  Towards a peer
 * that takes the hold off its lag figure (CAP_ACK_HELD), Batch Acks wait;
 * a bulk's Ack, which completes the peer's resync, never does. */
static bool
ack_now(struct session *s)
{
	int64_t wait_us;

	if (!s->acks_delayed || s->ack_bulk_epoch != 0 || s->ack_batches == 0 ||
	    s->ack_batches >= SESSION_ACK_BATCHES)
		return true;
	wait_us = s->ack_first_us + SESSION_ACK_DELAY_MS * 1000 - ev_clock_us();
	if (wait_us <= (SESSION_ACK_DELAY_MS - SESSION_ACK_EARLY_MS) * 1000)
		return true;
	if (s->ack_timer == NULL &&
	    (s->ack_timer = ev_timer_add(s->loop, wait_us / 1000 + 1, on_ack_timer, s)) == NULL)
		return true;
	return false;
}

static void
send_providers(struct session *s)
{
	Uplinkd__ProviderState ps[CFG_MAX_PROVIDERS], *pp[CFG_MAX_PROVIDERS];
	Uplinkd__Providers p = UPLINKD__PROVIDERS__INIT;

	for (size_t i = 0; i < s->cfg->nproviders; i++) {
		Uplinkd__ProviderState init = UPLINKD__PROVIDER_STATE__INIT;

		ps[i] = init;
		/* The name is only read while packing. */
		ps[i].name = (char *)(uintptr_t)s->cfg->providers[i].name;
		ps[i].has_state = 1;
		ps[i].state = (Uplinkd__ProviderHealth)s->prov_health[i];
		ps[i].has_draining = 1;
		ps[i].draining = s->prov_draining[i];
		ps[i].has_weight = 1;
		ps[i].weight = s->cfg->providers[i].weight;
		pp[i] = &ps[i];
	}
	p.n_providers = s->cfg->nproviders;
	p.providers = pp;
	if (session_send(s, FRAME_PROVIDERS, &p.base) == 0)
		s->prov_dirty = false;
}

static void
send_heartbeat(struct session *s)
{
	Uplinkd__Heartbeat h = UPLINKD__HEARTBEAT__INIT;

	h.has_unix_ms = 1;
	h.unix_ms = unix_ms();
	h.has_flows_own = 1;
	h.flows_own = flows_count_origin(s->flows, FLOW_OWN);
	h.has_flows_peer = 1;
	h.flows_peer = flows_count_origin(s->flows, FLOW_PEER);
	h.has_seq_sent = 1;
	h.seq_sent = s->seq_tx;
	h.has_seq_acked = 1;
	h.seq_acked = s->seq_acked;
	if (s->want_bulk_from_peer) {
		h.has_want_bulk = 1;
		h.want_bulk = 1;
	}
	h.has_master = 1;
	h.master = s->master;
	if (session_send(s, FRAME_HEARTBEAT, &h.base) == 0) {
		s->want_bulk_from_peer = false;
		s->hb_due = false;
		s->last_hb_ms = ev_now_ms(s->loop);
	}
}

static void
send_hello(struct session *s)
{
	Uplinkd__Hello h = UPLINKD__HELLO__INIT;

	h.node = (char *)(uintptr_t)s->cfg->node;
	h.has_major = 1;
	h.major = FRAME_MAJOR;
	h.has_minor = 1;
	h.minor = FRAME_MINOR;
	h.has_capabilities = 1;
	h.capabilities = FRAME_CAPS;
	h.has_boot_id = 1;
	h.boot_id.data = s->boot_id;
	h.boot_id.len = sizeof(s->boot_id);
	h.has_config_fingerprint = 1;
	h.config_fingerprint = frame_config_fingerprint(s->cfg);
	h.has_master = 1;
	h.master = s->master;
	session_send(s, FRAME_HELLO, &h.base);
}

/* The before-sleep hook: everything the loop iteration produced goes out
 * in as few frames as it takes. */
static void
session_flush(void *data)
{
	struct session *s = data;

	if (!s->up)
		return;
	if (s->ack_due && ack_now(s))
		send_ack(s);
	if (!session_connected(s))
		return;
	if (s->prov_dirty)
		send_providers(s);
	if (s->want_bulk_from_peer || s->hb_due)
		send_heartbeat(s);
	if (s->tx_bulk == BULK_WANTED && channel_queued(s->ch) < SESSION_QUEUE_LOW)
		bulk_start(s);
	if (s->tx_bulk == BULK_WALKING)
		bulk_step(s);
	if (s->tx_bulk == BULK_WANTED)
		pending_clear(s);
	else
		flush_pending(s);
	/* Last: it may report the connection lost. */
	channel_flush(s->ch);
	/* A walk with room in the queue goes on at once; a full queue waits
	 * for the socket (the channel's write callback). */
	if (s->tx_bulk == BULK_WALKING && channel_queued(s->ch) < SESSION_QUEUE_HIGH)
		ev_no_sleep(s->loop);
}

/* --- receiving --- */

/* Both nodes hold a flow as their own: the master's copy wins; when
 * neither is master, the copy of the node whose name sorts lower (a
 * restarted daemon learns its kernel's hot-standby entries as its own and
 * must not keep them against the node that carries them). */
static bool
peer_copy_wins(const struct session *s)
{
	if (s->master)
		return false;
	return s->peer_master || strcmp(s->peer_node, s->cfg->node) < 0;
}

/*
 * A peer flow that did not fit: this node no longer holds the peer's set,
 * so a takeover would lose that flow.  That is said (in_sync false, the
 * log, last_error) rather than kept quiet; on_tick asks for the peer's
 * bulk once its flows fit again.
 */
static void
rx_refused(struct session *s)
{
	s->st.cache_full++;
	s->rx_missing_ms = ev_now_ms(s->loop);
	if (s->rx_missing++ == 0) {
		session_error(s, "the flow table is full (%zu flows): the peer's flows do not all "
		    "fit", flows_count(s->flows));
		log_warnx("sync: %s; out of sync until they do", s->last_error);
	}
	s->rx_in_sync = false;
}

static void
rx_upsert(struct session *s, struct flow *f)
{
	const struct flow *cur;

	cur = flows_lookup(s->flows, &f->key);
	if (cur != NULL && cur->origin == FLOW_OWN) {
		if (!peer_copy_wins(s)) {
			s->st.conflicts++;
			return;
		}
		s->st.yielded++;
	}
	f->aux = s->rx_mark;
	if (flows_upsert(s->flows, f) == -1) {
		rx_refused(s);
		return;
	}
	s->st.upserts_received++;
	if (s->peer_cb != NULL)
		s->peer_cb(SESSION_PEER_UPSERT, f, s->peer_data);
}

/*
 * A batch's upserts in runs: each run is converted whole and its cache
 * slots prefetched before any is applied, so that the lookups' memory
 * latencies overlap (the same as the conntrack event path).
 */
#define SESSION_RX_RUN 64

static void
rx_upserts(struct session *s, Uplinkd__Flow *const *pb, size_t n)
{
	struct flow f[SESSION_RX_RUN];
	bool ok[SESSION_RX_RUN];

	for (size_t i = 0; i < n; i += SESSION_RX_RUN) {
		size_t m = n - i < SESSION_RX_RUN ? n - i : SESSION_RX_RUN;

		for (size_t j = 0; j < m; j++)
			if ((ok[j] = frame_flow_from_pb(pb[i + j], s->cfg, &f[j]) == 0))
				flows_prefetch(s->flows, &f[j].key);
		for (size_t j = 0; j < m; j++) {
			if (ok[j])
				rx_upsert(s, &f[j]);
			else
				s->st.unknown_provider++;	/* valid: the decoder checked */
		}
	}
}

static void
peer_gone(struct session *s, const struct flow *f)
{
	if (s->peer_cb != NULL)
		s->peer_cb(SESSION_PEER_DELETE, f, s->peer_data);
}

static void
rx_delete(struct session *s, const Uplinkd__FlowKey *pb)
{
	const struct flow *cur;
	struct flow_key k;

	if (frame_flowkey_from_pb(pb, &k) == -1)
		return;
	cur = flows_lookup(s->flows, &k);
	if (cur != NULL && cur->origin == FLOW_PEER) {
		struct flow old;

		flows_delete(s->flows, &k, &old);
		peer_gone(s, &old);
	}
	s->st.deletes_received++;
}

static int
rx_batch(struct session *s, const Uplinkd__Batch *b)
{
	char why[96];

	if (b->seq != s->seq_rx + 1) {
		s->fst.out_of_order++;
		snprintf(why, sizeof(why), "batch %llu after %llu",
		    (unsigned long long)b->seq, (unsigned long long)s->seq_rx);
		session_drop(s, why);
		return -1;
	}
	s->seq_rx = b->seq;
	rx_upserts(s, b->upserts, b->n_upserts);
	for (size_t i = 0; i < b->n_deletes; i++)
		rx_delete(s, b->deletes[i]);
	s->st.batches_received++;
	s->ack_due = true;
	s->ack_last_us = ev_clock_us();
	if (s->ack_batches++ == 0)
		s->ack_first_us = s->ack_last_us;
	s->ack_echo_ms = b->has_sent_ms ? b->sent_ms : 0;
	return 0;
}

static bool
keep_marked(const struct flow *f, void *data)
{
	struct session *s = data;

	if (f->aux == s->rx_mark)
		return true;
	peer_gone(s, f);
	return false;
}

static bool
keep_none(const struct flow *f, void *data)
{
	peer_gone(data, f);
	return false;
}

static void
rx_bulk_end(struct session *s, const Uplinkd__BulkEnd *e)
{
	size_t swept;

	if (!s->rx_bulk || e->epoch != s->rx_epoch) {
		/* Harmless here (nothing is swept), but the peer's bulk state
		 * is not ours: count it where `uplinkctl sync` shows it. */
		s->fst.out_of_order++;
		log_debug("sync: BulkEnd %llu without its BulkBegin ignored",
		    (unsigned long long)e->epoch);
		return;
	}
	swept = flows_sweep(s->flows, FLOW_PEER, keep_marked, s);
	s->rx_bulk = false;
	s->st.bulks_received++;
	s->st.bulk_swept += swept;
	if (s->rx_missing > 0)
		log_warnx("sync: the peer's bulk of %llu flows ended with %llu of them refused "
		    "(flow table full)", (unsigned long long)e->count,
		    (unsigned long long)s->rx_missing);
	else if (!s->rx_in_sync)
		log_info("sync: have the peer's %llu flows (%zu stale removed)",
		    (unsigned long long)e->count, swept);
	s->rx_in_sync = s->rx_missing == 0;
	s->ack_due = true;
	s->ack_bulk_epoch = e->epoch;
}

static int
rx_ack(struct session *s, const Uplinkd__Ack *a)
{
	int64_t now_us = ev_clock_us();

	if (a->seq > s->seq_tx || a->seq < s->seq_acked) {
		s->fst.out_of_order++;
		session_drop(s, "ack outside the sent range");
		return -1;
	}
	s->seq_acked = a->seq;
	/* A delayed Ack tells how long it was held after Batch `seq` only: the
	 * earlier Batches it covers give no sample.  (A hold longer than the
	 * whole round trip is the peer's error, and no sample either.) */
	while (s->inflight_len > 0 && s->inflight[s->inflight_head].seq <= a->seq) {
		int64_t lag_us = now_us - s->inflight[s->inflight_head].since_us;

		if (!a->has_held_us)
			lag_add(s, lag_us);
		else if (s->inflight[s->inflight_head].seq == a->seq && lag_us >= 0 &&
		    a->held_us <= (uint64_t)lag_us)
			lag_add(s, lag_us - (int64_t)a->held_us);
		s->inflight_head = (s->inflight_head + 1) % SESSION_INFLIGHT;
		s->inflight_len--;
	}
	if (a->has_bulk_epoch && s->tx_bulk == BULK_WAIT_ACK && a->bulk_epoch == s->tx_epoch) {
		s->tx_bulk = BULK_IDLE;
		s->st.bulks_completed++;
		s->st.bulk_ms_last = (uint64_t)(ev_now_ms(s->loop) - s->tx_bulk_start_ms);
		if (!s->tx_in_sync)
			log_info("sync: the peer has our %llu flows (bulk took %llu ms)",
			    (unsigned long long)s->tx_bulk_count,
			    (unsigned long long)s->st.bulk_ms_last);
		s->tx_in_sync = true;
	}
	return 0;
}

static int
rx_hello(struct session *s, const Uplinkd__Hello *h)
{
	char why[160];

	if (frame_hello_check(h, why, sizeof(why)) == -1)
		goto refuse;
	if (strcmp(h->node, s->cfg->sync.tls.peer_name) != 0) {
		snprintf(why, sizeof(why), "hello from node \"%s\", expected \"%s\"", h->node,
		    s->cfg->sync.tls.peer_name);
		goto refuse;
	}
	if (h->has_config_fingerprint &&
	    h->config_fingerprint != frame_config_fingerprint(s->cfg)) {
		if (!s->fingerprint_warned)
			log_warnx("sync: the peer's providers or marks differ from ours; "
			    "flows of providers we lack are ignored");
		s->fingerprint_warned = true;
	}
	snprintf(s->peer_node, sizeof(s->peer_node), "%s", h->node);
	s->peer_master = h->has_master && h->master;
	s->acks_delayed = h->has_capabilities &&
	    (h->capabilities & UPLINKD__CAPABILITY__CAP_ACK_HELD) != 0;
	s->hello_seen = true;
	log_info("sync: peer %s speaks protocol %u.%u", h->node, h->major, h->minor);
	return 0;
refuse:
	s->st.hello_refused++;
	session_drop(s, why);
	return -1;
}

static void
rx_providers(struct session *s, const Uplinkd__Providers *p)
{
	s->st.peer_providers_known = true;
	s->st.peer_up = 0;
	for (size_t i = 0; i < p->n_providers; i++)
		if (p->providers[i]->state == UPLINKD__PROVIDER_HEALTH__PROVIDER_UP)
			s->st.peer_up++;
	s->npeer_prov = p->n_providers;
	for (size_t i = 0; i < p->n_providers; i++) {
		snprintf(s->peer_prov[i].name, sizeof(s->peer_prov[i].name), "%s",
		    p->providers[i]->name);
		s->peer_prov[i].state = p->providers[i]->state;
		s->peer_prov[i].draining = p->providers[i]->draining;
		s->peer_prov[i].weight = p->providers[i]->weight;
	}
}

/* 0, or -1 after the connection was dropped. */
static int
rx_frame(struct session *s, const struct frame_msg *m)
{
	if (!s->hello_seen && m->type != FRAME_HELLO) {
		s->st.hello_refused++;
		session_drop(s, "first frame is not a hello");
		return -1;
	}
	switch (m->type) {
	case FRAME_HELLO:
		if (s->hello_seen) {
			s->st.hello_refused++;
			session_drop(s, "second hello on one connection");
			return -1;
		}
		return rx_hello(s, (const Uplinkd__Hello *)m->msg);
	case FRAME_BATCH:
		return rx_batch(s, (const Uplinkd__Batch *)m->msg);
	case FRAME_BULK_BEGIN:
		s->rx_bulk = true;
		s->rx_epoch = ((const Uplinkd__BulkBegin *)m->msg)->epoch;
		s->rx_mark = (uint8_t)(s->rx_mark % 255 + 1);
		s->rx_in_sync = false;
		s->rx_missing = 0;
		return 0;
	case FRAME_BULK_END:
		rx_bulk_end(s, (const Uplinkd__BulkEnd *)m->msg);
		return 0;
	case FRAME_ACK:
		return rx_ack(s, (const Uplinkd__Ack *)m->msg);
	case FRAME_HEARTBEAT: {
		const Uplinkd__Heartbeat *h = (const Uplinkd__Heartbeat *)m->msg;

		s->peer_flows_own = h->flows_own;
		s->peer_hb_ms = ev_now_ms(s->loop);
		s->peer_flows_peer = h->flows_peer;
		if (h->has_master)
			s->peer_master = h->master;
		if (h->has_want_bulk && h->want_bulk && s->tx_bulk != BULK_WANTED) {
			log_info("sync: the peer asked for a bulk resend");
			s->tx_in_sync = false;
			s->tx_bulk = BULK_WANTED;
		}
		return 0;
	}
	case FRAME_PROVIDERS:
		rx_providers(s, (const Uplinkd__Providers *)m->msg);
		return 0;
	default:
		return 0;
	}
}

static void
on_data(const uint8_t *buf, size_t len, void *data)
{
	struct session *s = data;
	struct frame_msg m;
	enum frame_result r;

	s->last_rx_ms = ev_now_ms(s->loop);
	if (s->dec == NULL || frame_decoder_feed(s->dec, buf, len) == -1)
		return;
	while ((r = frame_decoder_next(s->dec, &m)) != FRAME_NEED_MORE) {
		if (r == FRAME_FATAL) {
			session_drop(s, errno == ENOMEM ? "out of memory decoding a frame" :
			    "malformed frame header");
			return;
		}
		if (r == FRAME_SKIPPED) {
			if (m.type == FRAME_BATCH || m.type == FRAME_HELLO ||
			    m.type == FRAME_BULK_BEGIN || m.type == FRAME_BULK_END ||
			    m.type == FRAME_ACK) {
				/* Losing one of these loses state or sequence. */
				char why[64];

				snprintf(why, sizeof(why), "undecodable %s", frame_type_name(m.type));
				session_drop(s, why);
				return;
			}
			continue;
		}
		if (rx_frame(s, &m) == -1) {
			frame_msg_free(&m);
			return;
		}
		frame_msg_free(&m);
	}
}

static void
conn_reset(struct session *s)
{
	/* The stream ended: a frame it held in part is counted as truncated. */
	if (s->dec != NULL)
		frame_decoder_eof(s->dec);
	frame_decoder_destroy(s->dec);
	s->dec = NULL;
	s->hello_seen = false;
	s->seq_tx = s->seq_acked = s->seq_rx = 0;
	s->ack_due = false;
	s->acks_delayed = false;
	s->ack_batches = 0;
	ev_timer_del(s->loop, s->ack_timer);
	s->ack_timer = NULL;
	s->ack_echo_ms = 0;
	s->ack_bulk_epoch = 0;
	s->want_bulk_from_peer = false;
	s->tx_bulk = BULK_IDLE;
	s->tx_in_sync = s->rx_in_sync = false;
	s->rx_bulk = false;
	s->rx_missing = 0;
	s->rx_missing_ms = s->rx_refill_ms = s->peer_hb_ms = 0;
	s->inflight_len = 0;
	s->st.peer_providers_known = false;
	s->npeer_prov = 0;
	s->peer_master = false;
	pending_clear(s);
}

static int64_t
on_expiry(void *data)
{
	struct session *s = data;
	size_t n = flows_sweep(s->flows, FLOW_PEER, keep_none, s);

	s->expiry = NULL;
	s->st.expired += n;
	if (n > 0)
		log_warnx("sync: the peer has been gone for %d s: dropped its %zu flows",
		    SESSION_PEER_EXPIRY_S, n);
	return EV_TIMER_STOP;
}

static void
on_channel(enum channel_event ev, void *data)
{
	struct session *s = data;

	conn_reset(s);
	if (ev == CHANNEL_EV_UP) {
		if ((s->dec = frame_decoder_create(&s->fst)) == NULL) {
			log_warn("sync: frame decoder");
			channel_close(s->ch, "out of memory");
			return;
		}
		s->up = true;
		s->st.peer_closed = false;
		s->last_rx_ms = s->last_hb_ms = ev_now_ms(s->loop);
		ev_timer_del(s->loop, s->expiry);
		s->expiry = NULL;
		send_hello(s);
		s->prov_dirty = true;
		s->tx_bulk = BULK_WANTED;
		return;
	}
	if (s->up) {
		struct channel_stats cs;

		channel_get_stats(s->ch, &cs);
		s->st.peer_closed = cs.closed_by_peer;
		log_warnx("sync: lost the peer%s; its %zu flows are kept for %d s",
		    s->st.peer_closed ? " (it closed the connection)" : "",
		    flows_count_origin(s->flows, FLOW_PEER), SESSION_PEER_EXPIRY_S);
	}
	s->up = false;
	if (s->expiry == NULL)
		s->expiry = ev_timer_add(s->loop, (int64_t)SESSION_PEER_EXPIRY_S * 1000,
		    on_expiry, s);
}

/* Refused peer flows, no bulk under way, and room now for all the peer
 * announced in a heartbeat since the last refusal (a table that would
 * refuse again waits rather than asking for a bulk that cannot fit). */
static bool
refill_due(const struct session *s, int64_t now)
{
	size_t room;

	if (s->rx_missing == 0 || s->rx_bulk || s->want_bulk_from_peer ||
	    s->peer_hb_ms <= s->rx_missing_ms || now - s->rx_refill_ms < SESSION_REFILL_MS)
		return false;
	room = flows_capacity(s->flows) - flows_count(s->flows) +
	    flows_count_origin(s->flows, FLOW_PEER);
	return room >= s->peer_flows_own;
}

static int64_t
on_tick(void *data)
{
	struct session *s = data;
	int64_t now = ev_now_ms(s->loop);

	if (!s->up)
		return SESSION_TICK_MS;
	if (now - s->last_rx_ms >= SESSION_DEAD_MS) {
		char why[64];

		snprintf(why, sizeof(why), "nothing heard from the peer for %lld ms",
		    (long long)(now - s->last_rx_ms));
		session_drop(s, why);
		return SESSION_TICK_MS;
	}
	if (session_connected(s) && refill_due(s, now)) {
		log_info("sync: the peer's %llu flows fit in the flow table again: asking for "
		    "its bulk", (unsigned long long)s->peer_flows_own);
		s->rx_refill_ms = now;
		s->want_bulk_from_peer = true;	/* session_flush sends it */
	}
	if (session_connected(s) && now - s->last_hb_ms >= SESSION_HEARTBEAT_MS)
		send_heartbeat(s);
	return SESSION_TICK_MS;
}

/* --- the owner's side --- */

/* Records a change for the next flush; p->aux says which kind. */
static void
pending_put(struct session *s, struct flow *p, int64_t event_us)
{
	p->origin = FLOW_OWN;
	if (flows_upsert(s->pending, p) == -1) {
		session_overflow(s, "too many changes waiting for the peer");
		return;
	}
	if (s->pending_since_us == 0)
		s->pending_since_us = event_us;
}

/* Changes matter only while a peer listens and no bulk is about to resend
 * the whole table anyway. */
static bool
pending_wanted(const struct session *s)
{
	return s != NULL && session_connected(s) && s->tx_bulk != BULK_WANTED;
}

void
session_own_upsert(struct session *s, const struct flow *f, int64_t event_us)
{
	struct flow p;

	if (!pending_wanted(s))
		return;
	p = *f;
	p.aux = PENDING_UPSERT;
	pending_put(s, &p, event_us);
}

void
session_own_delete(struct session *s, const struct flow_key *key, int64_t event_us)
{
	struct flow p;

	if (!pending_wanted(s))
		return;
	memset(&p, 0, sizeof(p));
	p.key = *key;
	p.aux = PENDING_DELETE;
	pending_put(s, &p, event_us);
}

void
session_resync(struct session *s)
{
	if (s == NULL || !session_connected(s))
		return;
	s->tx_in_sync = false;
	s->tx_bulk = BULK_WANTED;
	pending_clear(s);
}

int
session_request_resync(struct session *s)
{
	if (s == NULL || !session_connected(s)) {
		errno = ENOTCONN;
		return -1;
	}
	session_resync(s);
	s->want_bulk_from_peer = true;
	return 0;
}

void
session_set_providers(struct session *s, const enum session_health *health,
    const bool *draining)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->cfg->nproviders; i++) {
		if (s->prov_health[i] != health[i] || s->prov_draining[i] != draining[i])
			s->prov_dirty = true;
		s->prov_health[i] = health[i];
		s->prov_draining[i] = draining[i];
	}
}

int
session_set_config(struct session *s, const struct config *cfg)
{
	char err[CHANNEL_ERR_MAX];

	if (!config_sync_equal(s->cfg, cfg)) {
		errno = EINVAL;
		return -1;
	}
	s->cfg = cfg;
	channel_set_config(s->ch, cfg);
	/* Renewed certificates under the same paths.  The caller checked
	 * the files (channel_check_tls); failing now is a file changed since. */
	if (channel_reload_tls(s->ch, err, sizeof(err)) == -1)
		log_warnx("sync: %s; the channel keeps the TLS files it had", err);
	s->prov_dirty = true;
	memset(s->prov_health, 0, sizeof(s->prov_health));
	memset(s->prov_draining, 0, sizeof(s->prov_draining));
	/* Our own flows were remapped to the new indexes (main.c);
	 * the peer's are re-sent so that they are too.  Not connected: the
	 * next connection resyncs anyway. */
	session_request_resync(s);
	return 0;
}

void
session_set_master(struct session *s, bool master)
{
	if (s == NULL || s->master == master)
		return;
	s->master = master;
	s->hb_due = true;
}

bool
session_in_sync(const struct session *s)
{
	return s != NULL && session_connected(s) && s->tx_in_sync && s->rx_in_sync;
}

bool
session_receiving_bulk(const struct session *s)
{
	return s != NULL && s->rx_bulk;
}

void
session_get_stats(const struct session *s, struct session_stats *out)
{
	*out = s->st;
	out->connected = session_connected(s);
	out->in_sync = session_in_sync(s);
	out->tx_in_sync = s->tx_in_sync;
	out->rx_in_sync = s->rx_in_sync;
	out->rx_missing = s->rx_missing;
	out->seq_sent = s->seq_tx;
	out->seq_acked = s->seq_acked;
	out->seq_received = s->seq_rx;
	out->pending = flows_count(s->pending);
	out->lag_p50_ms = out->lag_p99_ms = -1;
	out->lag_samples = 0;
}

static void
emit_ms(struct emit *out, const char *key, double ms)
{
	if (ms < 0)
		emit_null(out, key);
	else
		emit_double(out, key, ms, 3);
}

/* KEY_expires as "2027-03-01T12:00:00Z" and KEY_days_left (negative once
 * past), both null when unknown. */
static void
emit_expiry(struct emit *out, const char *key, int64_t not_after, int64_t now)
{
	char k[48], when[32];
	time_t t = (time_t)not_after;
	struct tm tm;

	snprintf(k, sizeof(k), "%s_expires", key);
	if (not_after == 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		emit_null(out, k);
		snprintf(k, sizeof(k), "%s_days_left", key);
		emit_null(out, k);
		return;
	}
	emit_str(out, k, when);
	snprintf(k, sizeof(k), "%s_days_left", key);
	emit_double(out, k, (double)(not_after - now) / 86400, 1);
}

static const char *
session_state_name(const struct session *s, const struct channel_stats *cs)
{
	if (session_connected(s))
		return "connected";
	if (cs->state == CHANNEL_HANDSHAKE || s->up)
		return "connecting";
	return "disconnected";
}

/* Every reason the channel or the session refused something the network
 * sent, in the order `uplinkctl sync` shows them: auth first. */
#define SESSION_REJECTIONS 10
struct rejection {
	const char *name;
	uint64_t count;
};

static void
rejections(const struct session *s, const struct channel_stats *cs,
    const struct session_stats *st, struct rejection *r)
{
	const struct frame_stats *f = &s->fst;
	size_t n = 0;

	r[n++] = (struct rejection){ "auth", cs->auth_failures };
	r[n++] = (struct rejection){ "bad_magic", f->bad_magic };
	r[n++] = (struct rejection){ "bad_version", f->bad_version };
	r[n++] = (struct rejection){ "bad_type", f->bad_type };
	r[n++] = (struct rejection){ "oversized", f->oversized };
	r[n++] = (struct rejection){ "truncated", f->truncated };
	r[n++] = (struct rejection){ "undecodable", f->undecodable };
	r[n++] = (struct rejection){ "out_of_order", f->out_of_order };
	r[n++] = (struct rejection){ "hello", st->hello_refused };
	r[n++] = (struct rejection){ "accept_refused", cs->accept_refused };
}

void
session_report(const struct session *s, const struct config *cfg, struct emit *out,
    bool detail)
{
	struct channel_stats cs;
	struct session_stats st;
	char ep[NETENDPOINT_STRLEN];
	const struct frame_stats *f;
	uint64_t bad_frame;

	if (s == NULL) {
		emit_null(out, "peer");
		emit_str(out, "state", "disabled");
		emit_bool(out, "authenticated", false);
		emit_null(out, "peer_name");
		emit_null(out, "lag_ms");
		emit_u64(out, "sent", 0);
		emit_u64(out, "received", 0);
		emit_u64(out, "resyncs", 0);
		emit_object_begin(out, "rejected");
		emit_u64(out, "auth", 0);
		emit_u64(out, "bad_frame", 0);
		emit_object_end(out);
		return;
	}
	channel_get_stats(s->ch, &cs);
	session_get_stats(s, &st);
	session_get_lag(s, &st);
	f = &s->fst;
	bad_frame = f->bad_magic + f->bad_version + f->bad_type + f->oversized +
	    f->truncated + f->undecodable + f->out_of_order + st.hello_refused;
	emit_str(out, "peer", netendpoint_str(&cfg->sync.peer, ep, sizeof(ep)));
	emit_str(out, "state", session_state_name(s, &cs));
	emit_bool(out, "authenticated", cs.state == CHANNEL_UP && cs.authenticated);
	emit_str(out, "peer_name", cfg->sync.tls.peer_name);
	/* The worst of the last minute is what an operator needs to see. */
	emit_ms(out, "lag_ms", st.lag_p99_ms);
	emit_u64(out, "sent", st.upserts_sent + st.deletes_sent);
	emit_u64(out, "received", st.upserts_received + st.deletes_received);
	emit_u64(out, "resyncs", st.bulks_sent);
	emit_object_begin(out, "rejected");
	emit_u64(out, "auth", cs.auth_failures);
	emit_u64(out, "bad_frame", bad_frame);
	if (detail) {
		struct rejection r[SESSION_REJECTIONS];

		rejections(s, &cs, &st, r);
		for (size_t i = 1; i < SESSION_REJECTIONS; i++)
			emit_u64(out, r[i].name, r[i].count);
	}
	emit_object_end(out);
	if (!detail)
		return;
	emit_str(out, "listen", netendpoint_str(&cfg->sync.listen, ep, sizeof(ep)));
	emit_str(out, "tls_version", cs.state == CHANNEL_UP ? cs.tls_version : NULL);
	emit_str(out, "cipher", cs.state == CHANNEL_UP ? cs.cipher : NULL);
	emit_str(out, "peer_cn", cs.state == CHANNEL_UP ? cs.peer_cn : NULL);
	{
		int64_t now = (int64_t)time(NULL);

		emit_expiry(out, "cert", cs.cert_not_after, now);
		emit_expiry(out, "ca", cs.ca_not_after, now);
		emit_expiry(out, "peer_cert", cs.peer_cert_not_after, now);
	}
	emit_bool(out, "tx_in_sync", st.tx_in_sync);
	emit_bool(out, "rx_in_sync", st.rx_in_sync);
	emit_ms(out, "lag_p50_ms", st.lag_p50_ms);
	emit_ms(out, "lag_p99_ms", st.lag_p99_ms);
	emit_u64(out, "lag_samples", st.lag_samples);
	emit_u64(out, "seq_sent", st.seq_sent);
	emit_u64(out, "seq_acked", st.seq_acked);
	emit_u64(out, "seq_received", st.seq_received);
	emit_u64(out, "flows_sent", st.upserts_sent);
	emit_u64(out, "deletes_sent", st.deletes_sent);
	emit_u64(out, "flows_received", st.upserts_received);
	emit_u64(out, "deletes_received", st.deletes_received);
	emit_u64(out, "pending", st.pending);
	emit_u64(out, "queued_bytes", channel_queued(s->ch));
	emit_u64(out, "bulks_sent", st.bulks_sent);
	emit_u64(out, "bulks_completed", st.bulks_completed);
	emit_u64(out, "bulks_received", st.bulks_received);
	emit_u64(out, "bulk_ms_last", st.bulk_ms_last);
	emit_u64(out, "bulk_swept", st.bulk_swept);
	emit_u64(out, "reconnects", cs.reconnects);
	emit_u64(out, "connects", cs.connects);
	emit_bool(out, "dialer", cs.dialer);
	emit_u64(out, "dials", cs.dials);
	if (cs.down_ms >= 0)
		emit_double(out, "disconnected_for_s", (double)cs.down_ms / 1000, 1);
	else
		emit_null(out, "disconnected_for_s");
	if (cs.redial_in_ms >= 0)
		emit_u64(out, "redial_in_ms", (uint64_t)cs.redial_in_ms);
	else
		emit_null(out, "redial_in_ms");
	emit_u64(out, "overflows", st.overflows);
	emit_u64(out, "conflicts", st.conflicts);
	emit_u64(out, "yielded", st.yielded);
	emit_u64(out, "unknown_provider", st.unknown_provider);
	emit_u64(out, "cache_full", st.cache_full);
	emit_u64(out, "missing", st.rx_missing);
	emit_u64(out, "expired", st.expired);
	emit_u64(out, "bytes_in", cs.bytes_in);
	emit_u64(out, "bytes_out", cs.bytes_out);
	emit_bool(out, "peer_master", session_connected(s) && s->peer_master);
	emit_u64(out, "peer_flows_own", s->peer_flows_own);
	emit_u64(out, "peer_cache_of_ours", s->peer_flows_peer);
	emit_array_begin(out, "peer_providers");
	for (size_t i = 0; session_connected(s) && i < s->npeer_prov; i++) {
		static const char *const names[] = { "unknown", "up", "down" };

		emit_object_begin(out, NULL);
		emit_str(out, "name", s->peer_prov[i].name);
		emit_str(out, "state", s->peer_prov[i].draining ? "draining" :
		    names[s->peer_prov[i].state]);
		emit_u64(out, "weight", s->peer_prov[i].weight);
		emit_object_end(out);
	}
	emit_array_end(out);
	emit_str(out, "last_error", s->last_error[0] ? s->last_error :
	    cs.last_error[0] ? cs.last_error : NULL);
	{
		int64_t at = s->last_error_ms > cs.last_error_ms ? s->last_error_ms :
		    cs.last_error_ms;

		if (at > 0)
			emit_double(out, "last_error_age_s",
			    (double)(ev_now_ms(s->loop) - at) / 1000, 1);
		else
			emit_null(out, "last_error_age_s");
	}
}

/* --- lifecycle --- */

static void
random_bytes(uint8_t *buf, size_t len)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, len) : -1;

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)len) {
		/* Only used to tell restarts apart: time and pid will do. */
		uint64_t v = unix_ms() ^ ((uint64_t)getpid() << 32);

		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(v >> (8 * (i % 8)));
	}
}

struct session *
session_create(struct ev_loop *loop, const struct config *cfg, struct flows *flows,
    session_peer_cb cb, void *data)
{
	struct session *s;

	if (!cfg->has_sync) {
		errno = EINVAL;
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->loop = loop;
	s->cfg = cfg;
	s->flows = flows;
	s->peer_cb = cb;
	s->peer_data = data;
	s->bufcap = FRAME_HDR_LEN + FRAME_MAX_PAYLOAD;
	random_bytes(s->boot_id, sizeof(s->boot_id));
	if ((s->pending = flows_create(SESSION_MAX_PENDING)) == NULL ||
	    (s->fpb = calloc(SESSION_BATCH_FLOWS, sizeof(*s->fpb))) == NULL ||
	    (s->fptr = calloc(SESSION_BATCH_FLOWS, sizeof(*s->fptr))) == NULL ||
	    (s->kpb = calloc(SESSION_BATCH_FLOWS, sizeof(*s->kpb))) == NULL ||
	    (s->kptr = calloc(SESSION_BATCH_FLOWS, sizeof(*s->kptr))) == NULL ||
	    (s->buf = malloc(s->bufcap)) == NULL) {
		log_warn("sync: allocating the session");
		goto fail;
	}
	if ((s->tick = ev_timer_add(loop, SESSION_TICK_MS, on_tick, s)) == NULL ||
	    ev_hook_add(loop, session_flush, s) == -1) {
		log_warn("sync: timers");
		goto fail;
	}
	if ((s->ch = channel_create(loop, cfg, on_channel, on_data, s)) == NULL)
		goto fail;
	/* A reload's new session inherits its predecessor's peer flows (and
	 * cancelled its clock): they expire unless this peer comes in time. */
	if (flows_count_origin(flows, FLOW_PEER) > 0 &&
	    (s->expiry = ev_timer_add(loop, (int64_t)SESSION_PEER_EXPIRY_S * 1000,
	    on_expiry, s)) == NULL) {
		log_warn("sync: timers");
		goto fail;
	}
	return s;
fail:
	session_destroy(s);
	return NULL;
}

void
session_destroy(struct session *s)
{
	if (s == NULL)
		return;
	/* channel_destroy() reports nothing back: the session goes quietly. */
	channel_destroy(s->ch);
	ev_hook_del(s->loop, session_flush, s);
	ev_timer_del(s->loop, s->tick);
	ev_timer_del(s->loop, s->expiry);
	ev_timer_del(s->loop, s->ack_timer);
	frame_decoder_destroy(s->dec);
	flows_destroy(s->pending);
	free(s->fpb);
	free(s->fptr);
	free(s->kpb);
	free(s->kptr);
	free(s->buf);
	free(s);
}

void
session_metrics(const struct session *s, FILE *f)
{
	struct rejection r[SESSION_REJECTIONS];
	struct channel_stats cs;
	struct session_stats st;

	channel_get_stats(s->ch, &cs);
	session_get_stats(s, &st);
	session_get_lag(s, &st);
	fprintf(f, "# HELP uplinkd_sync_connected The sync peer is connected and has said hello.\n"
	    "# TYPE uplinkd_sync_connected gauge\nuplinkd_sync_connected %d\n"
	    "# HELP uplinkd_sync_in_sync Both bulks are complete and none of the peer's flows is "
	    "missing here.\n"
	    "# TYPE uplinkd_sync_in_sync gauge\nuplinkd_sync_in_sync %d\n",
	    st.connected, st.in_sync);
	if (st.lag_samples > 0)
		fprintf(f, "# HELP uplinkd_sync_lag_seconds Local conntrack event to the peer's "
		    "acknowledgement, less the time the peer held it, over the last minute.\n"
		    "# TYPE uplinkd_sync_lag_seconds gauge\n"
		    "uplinkd_sync_lag_seconds{quantile=\"0.5\"} %.6f\n"
		    "uplinkd_sync_lag_seconds{quantile=\"0.99\"} %.6f\n",
		    st.lag_p50_ms / 1000, st.lag_p99_ms / 1000);
	fprintf(f, "# HELP uplinkd_sync_changes_total Flow upserts and deletes sent to and received "
	    "from the peer.\n# TYPE uplinkd_sync_changes_total counter\n"
	    "uplinkd_sync_changes_total{direction=\"sent\",kind=\"upsert\"} %llu\n"
	    "uplinkd_sync_changes_total{direction=\"sent\",kind=\"delete\"} %llu\n"
	    "uplinkd_sync_changes_total{direction=\"received\",kind=\"upsert\"} %llu\n"
	    "uplinkd_sync_changes_total{direction=\"received\",kind=\"delete\"} %llu\n"
	    "# HELP uplinkd_sync_bulks_total Complete bulk resends, ours acknowledged and the peer's.\n"
	    "# TYPE uplinkd_sync_bulks_total counter\n"
	    "uplinkd_sync_bulks_total{direction=\"sent\"} %llu\n"
	    "uplinkd_sync_bulks_total{direction=\"received\"} %llu\n"
	    "# HELP uplinkd_sync_reconnects_total Authenticated connections to the peer after the "
	    "first.\n"
	    "# TYPE uplinkd_sync_reconnects_total counter\nuplinkd_sync_reconnects_total %llu\n"
	    "# HELP uplinkd_sync_overflows_total Times the pending set or the send queue was full "
	    "and a bulk replaced the backlog.\n"
	    "# TYPE uplinkd_sync_overflows_total counter\nuplinkd_sync_overflows_total %llu\n"
	    "# HELP uplinkd_sync_pending Changes waiting to be sent.\n"
	    "# TYPE uplinkd_sync_pending gauge\nuplinkd_sync_pending %llu\n"
	    "# HELP uplinkd_sync_cache_full_total Peer flows the full flow table refused.\n"
	    "# TYPE uplinkd_sync_cache_full_total counter\nuplinkd_sync_cache_full_total %llu\n"
	    "# HELP uplinkd_sync_missing Peer flows refused since the peer's last bulk began.\n"
	    "# TYPE uplinkd_sync_missing gauge\nuplinkd_sync_missing %llu\n",
	    (unsigned long long)st.upserts_sent, (unsigned long long)st.deletes_sent,
	    (unsigned long long)st.upserts_received, (unsigned long long)st.deletes_received,
	    (unsigned long long)st.bulks_completed, (unsigned long long)st.bulks_received,
	    (unsigned long long)cs.reconnects, (unsigned long long)st.overflows,
	    (unsigned long long)st.pending, (unsigned long long)st.cache_full,
	    (unsigned long long)st.rx_missing);
	fprintf(f, "# HELP uplinkd_sync_cert_expiry_timestamp_seconds When a certificate of the "
	    "sync channel stops being valid: ours, the first of the CA file's, the peer's.\n"
	    "# TYPE uplinkd_sync_cert_expiry_timestamp_seconds gauge\n");
	{
		static const char *const which[] = { "own", "ca", "peer" };
		const int64_t at[] = { cs.cert_not_after, cs.ca_not_after, cs.peer_cert_not_after };

		for (size_t i = 0; i < 3; i++)
			if (at[i] != 0)
				fprintf(f, "uplinkd_sync_cert_expiry_timestamp_seconds{cert=\"%s\"} "
				    "%lld\n", which[i], (long long)at[i]);
	}
	fprintf(f, "# HELP uplinkd_sync_rejected_total What the sync channel refused, by reason.\n"
	    "# TYPE uplinkd_sync_rejected_total counter\n");
	rejections(s, &cs, &st, r);
	for (size_t i = 0; i < SESSION_REJECTIONS; i++)
		fprintf(f, "uplinkd_sync_rejected_total{reason=\"%s\"} %llu\n", r[i].name,
		    (unsigned long long)r[i].count);
}
