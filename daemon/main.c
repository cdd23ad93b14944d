/*
 * uplinkd: picks a provider for every new connection from the LAN and keeps
 * the kernel datapath that carries it.  This file wires the modules
 * together and owns the daemon's lifecycle: start, reload, stop.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "log.h"
#include "notify.h"
#include "rules.h"
#include "uplinkd.h"

#define UPLINKD_DEFAULT_CONFIG SYSCONFDIR "/uplinkd/uplinkd.yaml"
#define UPLINKD_MAX_FLOWS (4u << 20)
#define UPLINKD_RESYNC_DELAY_MS 200
#define UPLINKD_RESYNC_SLICE 16384	/* flows swept or merged per loop iteration */
#define UPLINKD_HA_TICK_MS 200
#define UPLINKD_ROLE_REPAIR_MS 1000
#define UPLINKD_WATCH_MS 10000	/* the installed rules and the leak guard */
#define UPLINKD_WATCH_PAUSE_MS 300000	/* after a repair that did not hold */

static void
usage(FILE *out)
{
	fprintf(out,
"Usage: uplinkd [-f] [-v] [-c FILE]\n"
"       uplinkd -n -c FILE\n"
"       uplinkd --print-config -c FILE\n"
"       uplinkd --print-rules -c FILE\n"
"\n"
"uplinkd chooses an Internet provider (uplink) for every new connection from\n"
"the internal network.  It sees the first packet of each connection through\n"
"NFQUEUE, picks a healthy provider (wrr, wlc, source-hash or maglev, optionally\n"
"sticky per internal host), and marks the connection so that policy routing and\n"
"SNAT send it out through that provider with that provider's source address.\n"
"It installs and removes its own iptables chains (UPLINKD-*), an nft leak guard\n"
"(table ip uplinkd) and one routing table per provider.\n"
"\n"
"Options:\n"
"  -c, --config FILE   configuration file (default " UPLINKD_DEFAULT_CONFIG ")\n"
"  -f, --foreground    stay in the foreground and log to stderr\n"
"  -v, --verbose       log debug messages too\n"
"  -n, --check         check the configuration and exit: 0 valid, 1 not; with a\n"
"                      sync section, the TLS files are loaded too (readable,\n"
"                      the key matching the certificate) and a certificate\n"
"                      within 30 days of its expiry is warned about\n"
"      --print-config  print the effective configuration (defaults filled in)\n"
"      --print-rules   print the iptables, nft and ip commands uplinkd installs\n"
"  -h, --help          show this help\n"
"  -V, --version       show the version\n"
"\n"
"Signals: SIGTERM/SIGINT stop and remove everything uplinkd installed;\n"
"SIGHUP reloads the configuration and the sync channel's TLS files (a file with\n"
"errors, or TLS files that do not load, keep the running ones).\n"
"Control: uplinkctl(8) talks to the daemon over its control socket.\n"
"Exit status: 0 on a clean stop or a valid check, 1 on failure, 2 on bad usage.\n");
}

uint32_t
uplinkd_now_s(const struct uplinkd *d)
{
	return (uint32_t)(d->start_wall_s + (ev_now_ms(d->loop) - d->start_ms) / 1000);
}

const char *
uplinkd_provider_state(const struct uplinkd *d, size_t i)
{
	if (d->draining[i])
		return "draining";
	return health_up(d->health, i) ? "up" : "down";
}

static bool
provider_usable(const struct uplinkd *d, size_t i)
{
	return !d->draining[i] && health_up(d->health, i);
}

/* Pushes usability into the scheduler and the kernel fallback chain. */
static void
apply_usability(struct uplinkd *d)
{
	bool usable[CFG_MAX_PROVIDERS];
	char err[512];

	enum session_health health[CFG_MAX_PROVIDERS];

	for (size_t i = 0; i < d->cfg->nproviders; i++) {
		usable[i] = provider_usable(d, i);
		sched_set_usable(d->sched, i, usable[i]);
		health[i] = health_up(d->health, i) ? SESSION_PROVIDER_UP : SESSION_PROVIDER_DOWN;
	}
	session_set_providers(d->session, health, d->draining);
	if (rules_set_fallback(d->cfg, usable, err, sizeof(err)) == -1)
		log_warnx("updating the kernel fallback mark: %s", err);
}

/*
 * The safety net.  A packet the kernel calls NEW but whose tuple is a flow
 * we know is a mid-stream packet whose conntrack entry is missing: the flow
 * reached us during the failover, or the kernel timed its hot-standby copy
 * out.  A fresh decision would give it another provider or port and the
 * far end would reset it.  Instead its entry is written now, with the
 * replicated provider and NAT source, and this one packet is dropped: the
 * retransmission (or the next datagram) matches the entry.  (Accepting it
 * would let it create a conntrack entry of its own, a new NAT decision.)
 * A TCP SYN opens a new connection that happens to reuse the tuple.  An
 * ICMP or GRE key does not name one connection (two pings from one host
 * to one server share it), and the kernel takes no entry written from it:
 * those get a fresh decision.  So does a packet whose entry the kernel
 * refuses (the NAT port is another entry's): dropped, it would be dropped
 * again at every retransmission.
 */
static bool
safety_net(struct uplinkd *d, const struct queue_packet *pkt)
{
	struct flow_key k;
	const struct flow *f;

	if (pkt->tuple.proto == IPPROTO_TCP && (pkt->tcp_flags & TH_SYN) != 0)
		return false;
	if (!ct_key_is_tuple(pkt->tuple.proto))
		return false;
	memset(&k, 0, sizeof(k));
	k.family = pkt->tuple.family;
	k.proto = pkt->tuple.proto;
	k.sport = pkt->tuple.sport;
	k.dport = pkt->tuple.dport;
	memcpy(k.src, pkt->tuple.src, sizeof(k.src));
	memcpy(k.dst, pkt->tuple.dst, sizeof(k.dst));
	if (flows_lookup(d->flows, &k) == NULL)
		return false;
	/* The flow may have ended a moment ago: the kernel reaps an expired
	 * entry at the lookup of the packet that finds it, and its DESTROY
	 * can still wait in the event socket.  Applied first, it removes the
	 * flow, and this packet starts a new one; a stale flow's entry,
	 * written again, would be one the table no longer knows. */
	ct_drain(d->ct);
	if ((f = flows_lookup(d->flows, &k)) == NULL)
		return false;
	/* Written before the verdict leaves (verdicts go at the end of the
	 * burst), so the retransmission finds it. */
	if (ct_write_now(d->ct, f) == -1) {
		d->safety_net_failed++;
		return false;
	}
	d->safety_net++;
	return true;
}

static struct queue_decision
on_packet(const struct queue_packet *pkt, void *data)
{
	struct uplinkd *d = data;
	struct queue_decision dec = { QUEUE_ACCEPT, 0 };
	size_t p;

	if (safety_net(d, pkt)) {
		dec.verdict = QUEUE_DROP;
		return dec;
	}
	p = sched_pick(d->sched, &pkt->tuple, flows_provider_counts(d->flows),
	    ev_now_ms(d->loop));

	d->decisions[p]++;
	if (sched_degraded(d->sched))
		d->decisions_degraded++;
	dec.mark = d->cfg->providers[p].mark;
	return dec;
}

/* f as learned from the kernel; old is the table's entry for its key
 * (NULL if none), which the caller has looked up already.  Returns the
 * flow as it is now in the table, or NULL when it is full or the peer's.
 * The kernel's copy of a peer flow (hot standby) stays the peer's: an
 * event or a dump that shows it does not make it ours. */
static const struct flow *
flow_learned(struct uplinkd *d, const struct flow *f, const struct flow *old)
{
	struct flow copy = *f;
	uint32_t now = uplinkd_now_s(d);
	const struct flow *stored;
	bool inserted;

	if (old != NULL && old->origin == FLOW_PEER)
		return NULL;

	copy.created = old ? old->created : now;
	copy.updated = now;
	if ((stored = flows_put(d->flows, &copy, &inserted)) == NULL)
		d->flows_full++;
	return stored;
}

/*
 * Resync: mark and sweep from a dump.  Own flows the kernel no longer has
 * are removed, the rest are (re)learned.  At start the dump is read in
 * one go; after an event overrun it runs in the loop (ct_dump_start)
 * while events go on being applied to the table.  Every event read
 * meanwhile happened after the events that were lost, so for the keys it
 * touches the event stream has the last word: it is noted in
 * resync_seen, a DESTROY as a tombstone, and the dump's record of that
 * key is ignored, whichever of the two is read first.
 */
enum resync_seen {
	SEEN_DUMP = 0,		/* the dump's record */
	SEEN_EVENT,		/* a NEW event during the dump */
	SEEN_GONE,		/* a DESTROY event during the dump */
};

static void
resync_dump_one(const struct flow *f, void *data)
{
	struct uplinkd *d = data;
	struct flow copy = *f;

	if (flows_lookup(d->resync_seen, &f->key) != NULL)
		return;
	copy.aux = SEEN_DUMP;
	if (flows_upsert(d->resync_seen, &copy) == -1)
		d->flows_full++;
}

static void
resync_note(struct uplinkd *d, const struct flow *f, enum resync_seen what)
{
	struct flow copy = *f;

	if (d->resync_seen == NULL)
		return;
	copy.aux = (uint8_t)what;
	/* Not noted, the dump's record of this key could win: the resync
	 * cannot be trusted, so another follows. */
	if (flows_upsert(d->resync_seen, &copy) == -1)
		d->resync_again = true;
}

static bool
resync_keep(const struct flow *f, void *data)
{
	const struct flow *seen = flows_lookup(data, &f->key);

	return seen != NULL && seen->aux != SEEN_GONE;
}

static int
resync_add(const struct flow *f, void *data)
{
	struct uplinkd *d = data;
	struct flow copy = *f;

	if (f->aux != SEEN_DUMP)
		return 0;	/* its event put it in the table already */
	copy.aux = 0;
	flow_learned(d, &copy, flows_lookup(d->flows, &f->key));
	return 0;
}

static int
resync_begin(struct uplinkd *d)
{
	if ((d->resync_seen = flows_create(UPLINKD_MAX_FLOWS)) == NULL)
		return -1;
	d->resync_phase = RESYNC_DUMP;
	d->resync_again = false;
	d->resync_swept = 0;
	d->resync_start_us = ev_clock_us();
	d->resync_start_iteration = d->loop_iterations;
	return 0;
}

static void
resync_drop(struct uplinkd *d)
{
	flows_destroy(d->resync_seen);
	d->resync_seen = NULL;
}

/* n is the dump's count, or -1 when it failed (errno kept). */
static int
resync_dumped(struct uplinkd *d, long n)
{
	int saved = errno;

	if (n == -1) {
		resync_drop(d);
		errno = saved;
		return -1;
	}
	d->resync_dumped = n;
	d->resync_phase = RESYNC_SWEEP;
	d->resync_cursor = flows_count(d->flows);
	return 0;
}

/*
 * What follows the dump, at most `budget` flows of it: a sweep over the
 * table, then a merge of the dump's records.  At a million flows the two
 * take a fifth of a second, too long to hold the queue's packets, so
 * after an overrun they go a slice per loop iteration, and events keep
 * being noted in resync_seen until the merge is over.  Returns true when
 * the resync is complete.
 */
static bool
resync_step(struct uplinkd *d, size_t budget)
{
	if (d->resync_phase == RESYNC_SWEEP) {
		d->resync_swept += flows_sweep_step(d->flows, &d->resync_cursor, budget,
		    FLOW_OWN, resync_keep, d->resync_seen);
		if (d->resync_cursor == 0)
			d->resync_phase = RESYNC_MERGE;
		return false;
	}
	/* Upwards: events only add to resync_seen, they never move a record. */
	for (; budget > 0 && d->resync_cursor < flows_count(d->resync_seen); budget--)
		resync_add(flows_at(d->resync_seen, d->resync_cursor++), d);
	if (d->resync_cursor < flows_count(d->resync_seen))
		return false;
	resync_drop(d);
	d->resyncs++;
	session_resync(d->session);
	log_info("flow table resynced from conntrack: %ld flows, %zu stale removed, "
	    "in %.1f ms over %llu loop iterations", d->resync_dumped, d->resync_swept,
	    (double)(ev_clock_us() - d->resync_start_us) / 1000,
	    (unsigned long long)(d->loop_iterations - d->resync_start_iteration));
	return true;
}

/* At start, with nothing else to serve yet. */
static int
flows_resync_now(struct uplinkd *d)
{
	if (resync_begin(d) == -1 || resync_dumped(d, ct_dump(d->ct, resync_dump_one, d)) == -1)
		return -1;
	while (!resync_step(d, SIZE_MAX))
		;
	return 0;
}

static int64_t on_resync_timer(void *data);

/* Coalesced: nothing new while one is due or running. */
static void
resync_schedule(struct uplinkd *d, int delay_ms)
{
	if (d->resync_timer != NULL || d->resync_seen != NULL)
		return;
	if ((d->resync_timer = ev_timer_add(d->loop, delay_ms, on_resync_timer, d)) == NULL)
		log_warn("scheduling a flow resync");
}

static void
on_resync_dumped(long n, void *data)
{
	struct uplinkd *d = data;

	d->resync_dump = NULL;
	if (resync_dumped(d, n) == -1) {
		log_warn("conntrack dump for the resync");
		resync_schedule(d, UPLINKD_RESYNC_DELAY_MS * 5);
	}
}

/* The before-sleep hook's share: a slice of the sweep or the merge. */
static void
resync_slice(struct uplinkd *d)
{
	if (d->resync_seen == NULL || d->resync_phase == RESYNC_DUMP)
		return;
	if (!resync_step(d, UPLINKD_RESYNC_SLICE)) {
		ev_no_sleep(d->loop);
		return;
	}
	if (d->resync_again) {
		log_warnx("conntrack events lost during the resync; resyncing again");
		resync_schedule(d, UPLINKD_RESYNC_DELAY_MS * 5);
	}
}

static int64_t
on_resync_timer(void *data)
{
	struct uplinkd *d = data;

	/* While a retry is pending the timer stays ours: an overrun
	 * meanwhile must not start a second one. */
	if (ct_events_behind(d->ct))
		return UPLINKD_RESYNC_DELAY_MS;
	if (resync_begin(d) == -1)
		goto retry;
	if ((d->resync_dump = ct_dump_start(d->ct, resync_dump_one, on_resync_dumped, d)) == NULL) {
		log_warn("starting the resync's conntrack dump");
		resync_drop(d);
		goto retry;
	}
	d->resync_timer = NULL;
	return EV_TIMER_STOP;
retry:
	return UPLINKD_RESYNC_DELAY_MS * 5;
}

/* Stops a running resync; true when there was one.  Its dump cannot
 * follow flows that change owner (a takeover) or a ct that goes away (a
 * reload), so it starts over afterwards. */
static bool
resync_abort(struct uplinkd *d)
{
	if (d->resync_seen == NULL)
		return false;
	ct_dump_cancel(d->resync_dump);
	d->resync_dump = NULL;
	resync_drop(d);
	return true;
}

static void
on_ct_event(enum ct_event ev, const struct flow *f, void *data)
{
	struct uplinkd *d = data;
	const struct flow *cur;

	if (ev == CT_PREFETCH) {
		flows_prefetch(d->flows, &f->key);
		return;
	}
	/* Our own writes of the peer's flows (hot standby) come back as
	 * events: the peer still owns those flows. */
	cur = ev != CT_OVERRUN ? flows_lookup(d->flows, &f->key) : NULL;
	if (cur != NULL && cur->origin == FLOW_PEER)
		return;
	switch (ev) {
	case CT_NEW:
		resync_note(d, f, SEEN_EVENT);
		if ((cur = flow_learned(d, f, cur)) != NULL)
			session_own_upsert(d->session, cur, ev_clock_us());
		break;
	case CT_DESTROY:
		resync_note(d, f, SEEN_GONE);
		if (flows_delete(d->flows, &f->key, NULL) == 0)
			session_own_delete(d->session, &f->key, ev_clock_us());
		break;
	case CT_OVERRUN:
		if (d->resync_seen != NULL) {
			d->resync_again = true;
			break;
		}
		/* Coalesce: one resync after the burst, not one per error. */
		if (d->resync_timer == NULL)
			log_warnx("conntrack events lost (socket buffer overrun); "
			    "resyncing from a dump");
		resync_schedule(d, UPLINKD_RESYNC_DELAY_MS);
		break;
	case CT_PREFETCH:
		break;
	}
}

static void
on_health(size_t provider, enum health_event ev, const char *reason, void *data)
{
	struct uplinkd *d = data;
	const char *name = d->cfg->providers[provider].name;
	char err[512];

	switch (ev) {
	case HEALTH_UP:
		log_info("provider %s is up: %s", name, reason);
		apply_usability(d);
		break;
	case HEALTH_DOWN:
		log_warnx("provider %s is down: %s; new connections go elsewhere", name, reason);
		apply_usability(d);
		break;
	case HEALTH_LINK_DOWN:
		log_warnx("provider %s: link %s down", name, d->cfg->providers[provider].interface);
		break;
	case HEALTH_LINK_UP:
		/* The kernel deleted the provider's routes with the link. */
		log_info("provider %s: link %s up, restoring its route", name,
		    d->cfg->providers[provider].interface);
		if (rules_route_provider(d->cfg, provider, err, sizeof(err)) == -1)
			log_warnx("provider %s: restoring route: %s", name, err);
		break;
	}
}

static int
provider_arg(struct uplinkd *d, const struct ctl_request *req, char *err, size_t errlen)
{
	char q[LOG_QUOTE_MAX];
	int i;

	if (req->argc != 1) {
		snprintf(err, errlen, "expected one provider name");
		return -1;
	}
	if ((i = config_provider_index(d->cfg, req->argv[0])) < 0) {
		snprintf(err, errlen, "no provider named %s", log_quote(req->argv[0], q, sizeof(q)));
		return -1;
	}
	return i;
}

static enum ctl_status
ctl_drain(const struct ctl_request *req, struct emit *out, char *err, size_t errlen,
    void *data)
{
	struct uplinkd *d = data;
	bool drain = req->type == CTL_DRAIN;
	int i = provider_arg(d, req, err, errlen);

	if (i < 0)
		return CTL_USAGE;
	if (d->draining[i] != drain) {
		d->draining[i] = drain;
		log_info("provider %s %s by operator", d->cfg->providers[i].name,
		    drain ? "draining: keeps its connections, gets no new ones" : "undrained");
		apply_usability(d);
	}
	emit_str(out, "provider", d->cfg->providers[i].name);
	emit_str(out, "state", uplinkd_provider_state(d, (size_t)i));
	emit_u64(out, "flows", flows_count_provider(d->flows, (size_t)i));
	return CTL_OK;
}

/* Checks a slice of the adopted flows against the kernel per loop
 * iteration, so that NFQUEUE and the peer are served in between. */
#define UPLINKD_VERIFY_SLICE 4096
/* Kernel writes of the backlog per loop iteration (two batches, about
 * 2 ms of kernel work): small, so that a bulk from the peer enters the
 * flow table at the channel's speed; the loop does not sleep while any
 * are left, so the kernel gets them at its own speed after the bulk. */
#define UPLINKD_BACKLOG_SLICE 512

static void
verify_done(struct uplinkd *d)
{
	struct ct_write_stats w;

	ct_write_flush(d->ct);
	ct_get_write_stats(d->ct, &w);
	d->takeover.checked = true;
	d->takeover.check_ms = (double)(ev_clock_us() - d->verify_start_us) / 1000;
	d->takeover.present = w.updated - d->verify_base.updated;
	d->takeover.created = w.created - d->verify_base.created;
	d->takeover.conflicts = w.conflicts - d->verify_base.conflicts;
	d->takeover.failed = w.failed - d->verify_base.failed;
	log_info("takeover: %zu adopted flows checked in the kernel in %.1f ms: %llu were there "
	    "(hot standby), %llu created, %llu NAT conflicts, %llu failed, %zu ended meanwhile, "
	    "%llu not writable (ICMP, GRE)",
	    d->nverify, d->takeover.check_ms, (unsigned long long)d->takeover.present,
	    (unsigned long long)d->takeover.created, (unsigned long long)d->takeover.conflicts,
	    (unsigned long long)d->takeover.failed, d->verify_gone,
	    (unsigned long long)(w.unwritable - d->verify_base.unwritable));
	free(d->verify);
	d->verify = NULL;
	d->nverify = d->verify_pos = d->verify_gone = 0;
	/* The check's writes kept the event socket out of the NEW group for
	 * much of it, when the node is busiest: a connection that failed
	 * open (queue full) or a RELATED one confirmed meanwhile was not
	 * heard.  A resync's dump learns them. */
	resync_schedule(d, UPLINKD_RESYNC_DELAY_MS);
}

/*
 * A slice of the backlog into the kernel.  An upsert writes the flow as
 * the table holds it now; one that is gone (a delete follows in the
 * backlog) or no longer the peer's (adopted at a takeover, whose check
 * writes it) is skipped.
 */
static void
backlog_drain(struct uplinkd *d)
{
	struct flow_key key;
	enum backlog_op op;

	if (backlog_upserts(d->backlog) == 0)
		d->backlog_empty_ms = ev_now_ms(d->loop);
	/* While a bulk arrives, the channel first: the kernel writes take
	 * several times longer than the protocol and would hold it back. */
	if (session_receiving_bulk(d->session))
		return;
	for (int n = 0; n < UPLINKD_BACKLOG_SLICE && backlog_pop(d->backlog, &key, &op); n++) {
		const struct flow *f;

		if (op == BACKLOG_DELETE)
			ct_write_delete(d->ct, &key);
		else if ((f = flows_lookup(d->flows, &key)) != NULL && f->origin == FLOW_PEER)
			ct_write_upsert(d->ct, f, false);
	}
	if (backlog_upserts(d->backlog) == 0)
		d->backlog_empty_ms = ev_now_ms(d->loop);
}

static void
on_before_sleep(void *data)
{
	struct uplinkd *d = data;

	d->loop_iterations++;
	resync_slice(d);
	backlog_drain(d);
	if (d->verify != NULL) {
		size_t end = d->verify_pos + UPLINKD_VERIFY_SLICE;

		/* As the table holds the flow now: one that ended since the
		 * takeover must not come back (its update would fail, and the
		 * create that follows would write it again). */
		for (; d->verify_pos < d->nverify && d->verify_pos < end; d->verify_pos++) {
			const struct flow *f = flows_lookup(d->flows, &d->verify[d->verify_pos]);

			if (f != NULL)
				ct_write_upsert(d->ct, f, true);
			else
				d->verify_gone++;
		}
		if (d->verify_pos == d->nverify)
			verify_done(d);
	}
	ct_write_flush(d->ct);
	/* Work left: the next slice at once, except while a bulk arrives
	 * (its data wakes the loop, and polling would take the CPU the
	 * channel needs). */
	if ((backlog_len(d->backlog) > 0 && !session_receiving_bulk(d->session)) ||
	    d->verify != NULL)
		ev_no_sleep(d->loop);
}

static void
collect_adopted(const struct flow *f, void *data)
{
	struct uplinkd *d = data;

	if (d->verify != NULL)
		d->verify[d->nverify++] = f->key;
}

/*
 * Master: the peer's flows become ours.  Hot standby put them into the
 * kernel as they arrived, so they already carry their provider and NAT
 * source; the check that follows only repairs what is missing (an entry
 * the kernel timed out, a flow that arrived during the failover).
 * Backup: our flows become the peer's, which the master now owns; they
 * stay in the kernel as its hot standby.  That includes a daemon that
 * restarted on a backup: its start-up dump learned the hot-standby
 * entries as its own.
 */
static void
role_effects(struct uplinkd *d, enum ha_role old, enum ha_role role)
{
	size_t n, peer = flows_count_origin(d->flows, FLOW_PEER);

	session_set_master(d->session, role == HA_MASTER);
	/* keepalived moved the SNAT addresses with the role. */
	if (role != old)
		health_rebind(d->health);
	if (role != old && resync_abort(d)) {
		log_info("ha: the flow resync starts over under the new role");
		resync_schedule(d, UPLINKD_RESYNC_DELAY_MS);
	}
	if (role == HA_MASTER && old != HA_MASTER) {
		free(d->verify);
		d->verify = peer ? malloc(peer * sizeof(*d->verify)) : NULL;
		d->nverify = d->verify_pos = d->verify_gone = 0;
		if (peer && d->verify == NULL)
			log_warn("takeover: no memory to check the adopted flows");
		d->verify_start_us = ev_clock_us();
		ct_get_write_stats(d->ct, &d->verify_base);
		n = flows_adopt(d->flows, FLOW_PEER, FLOW_OWN, collect_adopted, d);
		log_info("takeover: adopted the peer's %zu flows (%zu own before)", n,
		    flows_count_origin(d->flows, FLOW_OWN) - n);
		memset(&d->takeover, 0, sizeof(d->takeover));
		d->takeover.at_ms = ev_now_ms(d->loop);
		d->takeover.adopted = n;
		if (d->verify != NULL && d->nverify == 0) {
			free(d->verify);
			d->verify = NULL;
		}
		d->takeover.checked = d->verify == NULL;
		session_resync(d->session);
	} else if (role == HA_BACKUP && old != HA_BACKUP) {
		/* No bulk now: ours would be empty, and a peer that is not
		 * master yet would sweep the very flows it is about to adopt.
		 * The master's next bulk refreshes our copies. */
		n = flows_adopt(d->flows, FLOW_OWN, FLOW_PEER, NULL, NULL);
		log_info("ha: handed %zu flows to the peer (kept in the kernel as standby)", n);
	}
}

/*
 * How many providers' SNAT addresses are on this node's interfaces, or -1
 * when that cannot be read.  keepalived moves them with the role
 * (ha/keepalived.conf.j2): it adds them before it runs notify_master and
 * removes them before notify_backup and notify_fault.
 */
static int
addresses_held(const struct uplinkd *d)
{
	int held = 0;

	if (addrs_refresh(d->addrs) == -1)
		return -1;
	for (size_t p = 0; p < d->cfg->nproviders; p++)
		held += addrs_has(d->addrs, &d->cfg->providers[p].source);
	return held;
}

/* Whether the addresses contradict role: master without any of them, any
 * other role with all of them.  Only with a peer: a lone node is master
 * without keepalived. */
static bool
role_contradicted(const struct uplinkd *d, enum ha_role role, int held)
{
	int all = (int)d->cfg->nproviders;

	if (!d->cfg->has_sync || held < 0 || all == 0)
		return false;
	return role == HA_MASTER ? held == 0 : held == all;
}

static enum ctl_status
ctl_ha(const struct ctl_request *req, struct emit *out, char *err, size_t errlen,
    void *data)
{
	struct uplinkd *d = data;
	enum ha_role role, old;
	int held;

	if (req->argc != 1 || ha_role_parse(req->argv[0], &role) == -1) {
		snprintf(err, errlen, "expected master, backup or fault");
		return CTL_USAGE;
	}
	/* A notify that a later transition overtook: keepalived runs each
	 * one as a process of its own, and they can finish in any order. */
	held = addresses_held(d);
	if (role_contradicted(d, role, held)) {
		ha_count(d->ha, HA_STALE_NOTIFY);
		snprintf(err, errlen, "stale: keepalived's %s, but %d of %zu provider addresses "
		    "are here now (a later transition overtook it); role stays %s",
		    ha_role_name(role), held, d->cfg->nproviders, ha_role_name(ha_role(d->ha)));
		log_warnx("ha: %s", err);
		return CTL_FAILED;
	}
	d->role_mismatch_ms = 0;
	old = ha_set_role(d->ha, role, "keepalived", ev_now_ms(d->loop));
	role_effects(d, old, role);
	emit_str(out, "role", ha_role_name(role));
	emit_str(out, "previous", ha_role_name(old));
	return CTL_OK;
}

static unsigned
providers_up(const struct uplinkd *d)
{
	unsigned n = 0;

	for (size_t i = 0; i < d->cfg->nproviders; i++)
		n += health_up(d->health, i);
	return n;
}

static void
ha_evaluate(struct uplinkd *d)
{
	struct ha_inputs in = {
		.peer_configured = d->session != NULL,
		.kernel_backlog = backlog_upserts(d->backlog),
		.kernel_backlog_empty_ms = d->backlog_empty_ms,
	};

	if (d->session != NULL) {
		struct session_stats st;

		session_get_stats(d->session, &st);
		in.peer_connected = st.connected;
		in.peer_closed = st.peer_closed;
		in.in_sync = st.in_sync;
		in.peer_missing = st.rx_missing > 0;
		in.peer_known = st.peer_providers_known;
		in.up_peer = st.peer_up;
	}
	in.up_own = providers_up(d);
	ha_update(d->ha, &in, ev_now_ms(d->loop));
}

/*
 * A role the addresses have contradicted for UPLINKD_ROLE_REPAIR_MS is
 * repaired from them: a notify was lost, or overtaken and refused, or the
 * daemon restarted after keepalived's last transition.  Without all
 * addresses a master becomes backup (which of backup and fault keepalived
 * is in, the addresses cannot tell).
 */
static void
role_repair(struct uplinkd *d)
{
	enum ha_role role = ha_role(d->ha), old, want;
	int held = addresses_held(d);
	int64_t now = ev_now_ms(d->loop);
	char why[128];

	if (!role_contradicted(d, role, held)) {
		d->role_mismatch_ms = 0;
		return;
	}
	if (d->role_mismatch_ms == 0)
		d->role_mismatch_ms = now;
	if (now - d->role_mismatch_ms < UPLINKD_ROLE_REPAIR_MS)
		return;
	want = role == HA_MASTER ? HA_BACKUP : HA_MASTER;
	snprintf(why, sizeof(why), "%d of %zu provider addresses here for %d ms", held,
	    d->cfg->nproviders, UPLINKD_ROLE_REPAIR_MS);
	log_warnx("ha: role %s, but %s: keepalived's notify was lost or overtaken; %s now",
	    ha_role_name(role), why, ha_role_name(want));
	old = ha_set_role(d->ha, want, why, now);
	role_effects(d, old, want);
	ha_count(d->ha, HA_ROLE_REPAIR);
	d->role_mismatch_ms = 0;
}

/*
 * Rules that are gone take the provider choice, the NAT and the leak
 * guard with them: a firewall reload or a flush by another tool removes
 * them without a word, so the watch puts them back and says so.
 */
/* What rules_check() needs to know of the providers now. */
static void
providers_now(const struct uplinkd *d, bool usable[CFG_MAX_PROVIDERS],
    bool link_up[CFG_MAX_PROVIDERS])
{
	for (size_t i = 0; i < d->cfg->nproviders; i++) {
		struct health_stats hs;

		health_get(d->health, i, &hs);
		usable[i] = provider_usable(d, i);
		link_up[i] = hs.link_up;
	}
}

static void
watch_rules(struct uplinkd *d)
{
	bool usable[CFG_MAX_PROVIDERS], link_up[CFG_MAX_PROVIDERS];
	char what[256], err[512];
	int r;

	if (!d->rules_watched || ev_now_ms(d->loop) < d->rules_watch_resume_ms)
		return;
	providers_now(d, usable, link_up);
	if ((r = rules_check(d->cfg, usable, link_up, what, sizeof(what))) == 0)
		return;
	/* What cannot be checked or fixed (a route the kernel refuses) is
	 * not tried again every time. */
	if (r == -1) {
		log_warn("checking the installed rules (again in %d s)", UPLINKD_WATCH_PAUSE_MS / 1000);
		goto pause;
	}
	log_warnx("the rules uplinkd installed were changed by something else (%s); "
	    "installing them again", what);
	d->rules_repairs++;
	if (rules_install(d->cfg, usable, err, sizeof(err)) == -1) {
		log_warnx("installing the rules again: %s (again in %d s)", err,
		    UPLINKD_WATCH_PAUSE_MS / 1000);
		goto pause;
	}
	if ((r = rules_check(d->cfg, usable, link_up, what, sizeof(what))) == 0)
		return;
	log_warnx("the rules still differ after installing them again (%s); again in %d s",
	    r == -1 ? strerror(errno) : what, UPLINKD_WATCH_PAUSE_MS / 1000);
pause:
	d->rules_watch_resume_ms = ev_now_ms(d->loop) + UPLINKD_WATCH_PAUSE_MS;
}

/* Every drop of the leak guard is a packet that missed its provider's
 * mark or NAT: traffic is failing, and the operator should hear of it. */
static void
watch_leaks(struct uplinkd *d)
{
	uint64_t n;

	if (rules_leak_guard_dropped(&n) == -1) {
		if (!d->leak_unreadable)
			log_warn("reading the leak guard's counter (nft table %s)", RULES_NFT_TABLE);
		d->leak_unreadable = true;
		return;
	}
	d->leak_unreadable = false;
	if (n < d->leak_seen)	/* the rules were installed again */
		d->leak_seen = 0;
	if (n > d->leak_seen)
		log_warnx("the leak guard dropped %llu packets from LAN addresses on their way "
		    "to a provider in the last %d s: they had no provider mark or no NAT",
		    (unsigned long long)(n - d->leak_seen), UPLINKD_WATCH_MS / 1000);
	d->leak_seen = n;
}

/* A full flow table is silent in the datapath (the kernel carries the
 * flows regardless) but not harmless: what is not tracked is not
 * replicated, and a takeover would not keep it. */
static void
watch_full(struct uplinkd *d)
{
	struct session_stats st = { 0 };
	uint64_t n;

	if (d->session != NULL)
		session_get_stats(d->session, &st);
	n = d->flows_full + st.cache_full;
	if (n > d->full_seen)
		log_warnx("the flow table is full (%zu flows): %llu flows (own or the peer's) "
		    "were not tracked in the last %d s; they are not replicated and a "
		    "takeover would not keep them", flows_count(d->flows),
		    (unsigned long long)(n - d->full_seen), UPLINKD_WATCH_MS / 1000);
	d->full_seen = n;
}

/* What the config lets an operator write but the datapath does not do:
 * said at start and at each reload, not silently ignored. */
static void
warn_unbalanced(const struct config *cfg)
{
	char buf[NETADDR_STRLEN + 8];
	size_t n4 = 0;

	for (size_t i = 0; i < cfg->nproviders; i++) {
		if (config_provider_balanced(cfg, i))
			n4++;
		else
			log_warnx("provider %s is IPv6: its health is checked and its routes are "
			    "kept, but it carries no connections (uplinkd balances and translates "
			    "IPv4 connections only)", cfg->providers[i].name);
	}
	for (size_t i = 0; i < cfg->lan.nnetworks; i++)
		if (cfg->lan.networks[i].addr.family != AF_INET)
			log_warnx("lan.networks %s is IPv6: its connections are not balanced and "
			    "follow the main routing table", netprefix_str(&cfg->lan.networks[i],
			    buf, sizeof(buf)));
	if (n4 == 1)
		log_warnx("only one provider is IPv4: every IPv4 connection goes through it");
}

/* The watch trusts a check only where it saw the rules just installed. */
static void
watch_start(struct uplinkd *d)
{
	bool usable[CFG_MAX_PROVIDERS], link_up[CFG_MAX_PROVIDERS];
	char what[256];
	int r;

	providers_now(d, usable, link_up);
	d->rules_watched = (r = rules_check(d->cfg, usable, link_up, what, sizeof(what))) == 0;
	if (!d->rules_watched)
		log_warnx("the installed rules do not read back as installed (%s): changes "
		    "made to them by other tools will not be repaired (with iptables-legacy, "
		    "iptables rules cannot be read over nfnetlink)",
		    r == -1 ? strerror(errno) : what);
}

static int64_t
on_watch_timer(void *data)
{
	struct uplinkd *d = data;

	watch_rules(d);
	watch_leaks(d);
	watch_full(d);
	return UPLINKD_WATCH_MS;
}

static int64_t
on_ha_timer(void *data)
{
	role_repair(data);
	ha_evaluate(data);
	return UPLINKD_HA_TICK_MS;
}

/*
 * The daemon's part of `uplinkctl drill` (the drill itself runs in
 * uplinkctl): "step-down SECONDS" makes keepalived release this node's
 * addresses for at most that long, "step-up" ends it early.
 */
static enum ctl_status
ctl_drill(const struct ctl_request *req, struct emit *out, char *err, size_t errlen,
    void *data)
{
	struct uplinkd *d = data;
	int64_t now = ev_now_ms(d->loop);
	unsigned long secs = 0;
	char *end;

	if (req->argc == 2 && strcmp(req->argv[0], "step-down") == 0) {
		errno = 0;
		secs = strtoul(req->argv[1], &end, 10);
		if (errno || *end || req->argv[1][0] == '\0' || req->argv[1][0] == '-' ||
		    secs == 0 || secs > CTL_STEP_DOWN_MAX_S) {
			char q[LOG_QUOTE_MAX];

			snprintf(err, errlen, "step-down: %s is not a number of seconds "
			    "(1..%d)", log_quote(req->argv[1], q, sizeof(q)), CTL_STEP_DOWN_MAX_S);
			return CTL_USAGE;
		}
		if (!d->cfg->has_sync) {
			snprintf(err, errlen, "no sync peer configured: nobody to step down for");
			return CTL_FAILED;
		}
		ha_step_down(d->ha, now + (int64_t)secs * 1000);
		log_info("drill: stepping down for at most %lu s (role %s)", secs,
		    ha_role_name(ha_role(d->ha)));
	} else if (req->argc == 1 && strcmp(req->argv[0], "step-up") == 0) {
		if (ha_step_down_until(d->ha, now) != 0)
			log_info("drill: step-down ended");
		ha_step_down(d->ha, 0);
	} else {
		snprintf(err, errlen, "expected \"step-down SECONDS\" or \"step-up\"");
		return CTL_USAGE;
	}
	ha_evaluate(d);
	emit_str(out, "role", ha_role_name(ha_role(d->ha)));
	emit_u64(out, "step_down_s", secs);
	return CTL_OK;
}

/* The peer's flows mirrored into our kernel (hot standby): each change
 * goes into the backlog and the kernel gets it from there (backlog_drain),
 * so that the session takes a bulk at its own speed. */
static void
on_peer_flow(enum session_peer_event ev, const struct flow *f, void *data)
{
	struct uplinkd *d = data;

	if (backlog_push(d->backlog, &f->key, ev == SESSION_PEER_UPSERT ? BACKLOG_UPSERT :
	    BACKLOG_DELETE) == 0)
		return;
	/* Out of memory: write it now rather than lose it. */
	if (ev == SESSION_PEER_UPSERT)
		ct_write_upsert(d->ct, f, false);
	else
		ct_write_delete(d->ct, &f->key);
}

static bool
provider_marks_equal(const struct config *a, const struct config *b)
{
	if (a->mark_mask != b->mark_mask || a->nproviders != b->nproviders)
		return false;
	for (size_t i = 0; i < a->nproviders; i++)
		if (ct_provider_of_mark(b, a->providers[i].mark) < 0)
			return false;
	return true;
}

/*
 * After a reload an own flow's provider is the one its mark now names,
 * which is how the kernel knows it; a flow whose mark names none is no
 * longer ours (the kernel keeps it).  The peer learns of it from the
 * bulk that session_set_config() asks for.
 */
static void
flows_remap(struct uplinkd *d)
{
	size_t moved = 0, dropped = 0;

	/* Downwards: a delete moves the last flow into the hole. */
	for (size_t i = flows_count(d->flows); i-- > 0;) {
		const struct flow *f = flows_at(d->flows, i);
		struct flow copy;
		int p;

		if (f == NULL || f->origin != FLOW_OWN)
			continue;
		copy = *f;
		if ((p = ct_provider_of_mark(d->cfg, f->mark)) < 0) {
			flows_delete(d->flows, &copy.key, NULL);
			dropped++;
		} else if ((size_t)p != f->provider) {
			copy.provider = (uint8_t)p;
			flows_upsert(d->flows, &copy);
			moved++;
		}
	}
	if (moved || dropped)
		log_info("reload: %zu own flows moved to their provider's new place, "
		    "%zu dropped (their mark is no provider's now)", moved, dropped);
}

/*
 * Reload: everything that depends on the config is built anew from the
 * new one, and only when all of it stands is the old state let go.  A
 * file with errors changes nothing.  The rules are installed over the old
 * ones atomically, so established connections do not notice.
 */
static int
reload(struct uplinkd *d, char *err, size_t errlen)
{
	struct config *ncfg = config_load(d->cfg->path, err, errlen);
	struct config *ocfg = d->cfg;
	struct sched *nsched = NULL;
	struct health *nhealth = NULL;
	struct ct *nct = NULL;
	struct queue *nqueue = NULL;
	bool resyncing, marks_changed;

	d->reloads++;
	notify_reloading();
	if (ncfg == NULL)
		goto fail;
	if (strcmp(ncfg->control.socket, ocfg->control.socket) != 0)
		log_warnx("reload: control.socket changed; the new path takes effect at restart");
	/* Unusable TLS files would leave the pair without its channel at the
	 * next connection: refuse them now, while the old ones still serve. */
	if (ncfg->has_sync && channel_check_tls(ncfg, false, err, errlen) == -1)
		goto fail;
	if ((nsched = sched_create(ncfg)) == NULL ||
	    (nhealth = health_create(d->loop, ncfg, on_health, d)) == NULL) {
		snprintf(err, errlen, "reload: %s", strerror(errno));
		goto fail;
	}
	for (size_t i = 0; i < ocfg->nproviders; i++) {
		int j = config_provider_index(ncfg, ocfg->providers[i].name);

		if (j >= 0)
			health_assume(nhealth, (size_t)j, health_up(d->health, i));
	}
	if ((nct = ct_create(d->loop, ncfg, on_ct_event, d)) == NULL) {
		snprintf(err, errlen, "reload: conntrack events: %s", strerror(errno));
		goto fail;
	}
	if (ncfg->queue.first != ocfg->queue.first || ncfg->queue.count != ocfg->queue.count) {
		queue_destroy(d->queue);
		d->queue = NULL;
		if ((nqueue = queue_create(d->loop, ncfg->queue.first, ncfg->queue.count,
		    on_packet, d)) == NULL)
			log_warn("reload: binding the new queues; new connections use the "
			    "kernel fallback until the next reload");
	} else {
		nqueue = d->queue;
	}
	{
		char rerr[512];

		if (rules_install(ncfg, NULL, rerr, sizeof(rerr)) == -1)
			log_warnx("reload: installing rules: %s", rerr);
		rules_remove_stale(ocfg, ncfg);
	}
	resyncing = resync_abort(d);
	marks_changed = !provider_marks_equal(ocfg, ncfg);
	/* Events the old socket holds from before the new one joined are
	 * not in the new one. */
	ct_drain(d->ct);
	sched_destroy(d->sched);
	health_destroy(d->health);
	ct_destroy(d->ct);
	d->sched = nsched;
	d->health = nhealth;
	d->ct = nct;
	d->queue = nqueue;
	d->cfg = ncfg;
	/* Drain state follows provider names. */
	{
		bool draining[CFG_MAX_PROVIDERS] = { false };

		for (size_t i = 0; i < ocfg->nproviders; i++) {
			int j = config_provider_index(ncfg, ocfg->providers[i].name);
			if (j >= 0)
				draining[j] = d->draining[i];
		}
		memcpy(d->draining, draining, sizeof(draining));
		memset(d->decisions, 0, sizeof(d->decisions));
	}
	if (d->session != NULL && session_set_config(d->session, ncfg) == -1) {
		log_info("reload: the sync section changed; reconnecting to the peer");
		session_destroy(d->session);
		d->session = NULL;
	}
	if (d->session == NULL && ncfg->has_sync) {
		if ((d->session = session_create(d->loop, ncfg, d->flows, on_peer_flow, d)) == NULL)
			log_warn("reload: the sync channel could not start; running without a peer");
		else	/* A new session knows nothing of the role. */
			session_set_master(d->session, ha_role(d->ha) == HA_MASTER);
	}
	/* No session, no expiry: nothing would ever end the peer's flows. */
	if (!ncfg->has_sync) {
		size_t n = flows_sweep(d->flows, FLOW_PEER, NULL, NULL);

		if (n > 0)
			log_info("reload: no sync section: forgot the peer's %zu flows (their "
			    "copies in this node's kernel stay until they time out)", n);
	}
	config_free(ocfg);
	apply_usability(d);
	flows_remap(d);
	/* Entries the kernel holds under marks that are new to us. */
	if (resyncing || marks_changed)
		resync_schedule(d, UPLINKD_RESYNC_DELAY_MS);
	log_info("configuration reloaded from %s", d->cfg->path);
	warn_unbalanced(d->cfg);
	notify_ready();
	return 0;
fail:
	d->reload_failures++;
	snprintf(d->last_reload_error, sizeof(d->last_reload_error), "%s", err);
	log_warnx("reload failed, keeping the running configuration: %s", err);
	sched_destroy(nsched);
	health_destroy(nhealth);
	ct_destroy(nct);
	config_free(ncfg);
	notify_ready();
	return -1;
}

static enum ctl_status
ctl_reload(const struct ctl_request *req, struct emit *out, char *err, size_t errlen,
    void *data)
{
	struct uplinkd *d = data;

	if (req->argc != 0) {
		snprintf(err, errlen, "reload takes no arguments");
		return CTL_USAGE;
	}
	if (reload(d, err, errlen) == -1)
		return CTL_FAILED;
	emit_str(out, "config", d->cfg->path);
	emit_str(out, "result", "reloaded");
	return CTL_OK;
}

static void
on_signal(int fd, void *data)
{
	struct uplinkd *d = data;
	struct signalfd_siginfo si;
	char err[CFG_ERR_MAX];

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			log_info("SIGHUP: reloading %s", d->cfg->path);
			reload(d, err, sizeof(err));
			break;
		case SIGTERM:
		case SIGINT:
			log_info("%s: stopping", strsignal((int)si.ssi_signo));
			ev_stop(d->loop);
			break;
		default:
			break;
		}
	}
}

static int
setup_signals(struct uplinkd *d)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	if ((d->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		return -1;
	return ev_fd_add(d->loop, d->sigfd, on_signal, NULL, d);
}

static void
check_sysctl(const char *path, const char *want, const char *why)
{
	char buf[16] = "";
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return;
	if (fgets(buf, sizeof(buf), f) != NULL && strncmp(buf, want, strlen(want)) != 0)
		log_warnx("%s is %.*s, expected %s: %s", path, (int)strcspn(buf, "\n"), buf, want, why);
	fclose(f);
}

static int
run(struct uplinkd *d)
{
	char err[512];
	long n;

	d->start_ms = ev_now_ms(d->loop);
	d->backlog_empty_ms = d->start_ms;
	d->start_wall_s = time(NULL);
	if (setup_signals(d) == -1)
		fatal("signals");
	/* The control socket first: it refuses to start a second daemon
	 * before that one's rules are touched. */
	if ((d->ctl = ctl_create(d->loop, d->cfg->control.socket)) == NULL)
		fatal("control socket %s", d->cfg->control.socket);
	if ((d->flows = flows_create(UPLINKD_MAX_FLOWS)) == NULL ||
	    (d->backlog = backlog_create()) == NULL ||
	    (d->sched = sched_create(d->cfg)) == NULL)
		fatal("allocating state");
	/* Subscribe before the dump so nothing falls between the two. */
	if ((d->ct = ct_create(d->loop, d->cfg, on_ct_event, d)) == NULL)
		fatal("conntrack events (is nf_conntrack_netlink available?)");
	if (flows_resync_now(d) == -1)
		fatal("conntrack dump");
	if ((d->health = health_create(d->loop, d->cfg, on_health, d)) == NULL)
		fatal("health probes");
	if (d->cfg->has_sync &&
	    (d->session = session_create(d->loop, d->cfg, d->flows, on_peer_flow, d)) == NULL)
		fatal("sync channel");
	if ((d->ha = ha_create(d->cfg, d->start_ms)) == NULL)
		fatal("VRRP track file");
	if ((d->addrs = addrs_create(d->loop)) == NULL)
		fatal("watching this node's addresses");
	/* A node without a peer has no VRRP partner to wait for. */
	if (!d->cfg->has_sync)
		ha_set_role(d->ha, HA_MASTER, "no sync peer configured", d->start_ms);
	if ((d->ha_timer = ev_timer_add(d->loop, UPLINKD_HA_TICK_MS, on_ha_timer, d)) == NULL ||
	    (d->watch_timer = ev_timer_add(d->loop, UPLINKD_WATCH_MS, on_watch_timer, d)) == NULL ||
	    ev_hook_add(d->loop, on_before_sleep, d) == -1)
		fatal("timers");
	if (rules_install(d->cfg, NULL, err, sizeof(err)) == -1) {
		char rerr[512];

		/* The routes and the leak guard went in before the step that
		 * failed: a start that fails leaves nothing behind. */
		if (rules_remove(d->cfg, rerr, sizeof(rerr)) == -1)
			log_warnx("removing what was installed: %s", rerr);
		fatalx("installing rules: %s", err);
	}
	apply_usability(d);
	watch_start(d);
	if ((d->queue = queue_create(d->loop, d->cfg->queue.first, d->cfg->queue.count,
	    on_packet, d)) == NULL) {
		rules_remove(d->cfg, err, sizeof(err));
		fatal("NFQUEUE %u..%u", d->cfg->queue.first,
		    d->cfg->queue.first + d->cfg->queue.count - 1);
	}
	check_sysctl("/proc/sys/net/ipv4/ip_forward", "1", "the node does not forward");
	if (d->cfg->has_sync)
		check_sysctl("/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal", "1",
		    "a TCP connection whose packets crossed the peer for a moment (both nodes "
		    "master in a VRRP blip, a stale ARP entry) falls out of this node's window "
		    "tracking and stalls");
	n = (long)flows_count(d->flows);
	ctl_register(d->ctl, CTL_DRAIN, ctl_drain, d);
	ctl_register(d->ctl, CTL_UNDRAIN, ctl_drain, d);
	ctl_register(d->ctl, CTL_HA, ctl_ha, d);
	ctl_register(d->ctl, CTL_DRILL, ctl_drill, d);
	ctl_register(d->ctl, CTL_RELOAD, ctl_reload, d);
	report_register(d);
	warn_unbalanced(d->cfg);
	log_info("node %s running: %zu providers, %s, queues %u..%u, %ld existing flows",
	    d->cfg->node, d->cfg->nproviders, config_algorithm_name(d->cfg->balance.algorithm),
	    d->cfg->queue.first, d->cfg->queue.first + d->cfg->queue.count - 1, n);
	notify_ready();
	if (ev_run(d->loop) == -1)
		log_warn("event loop");
	notify_stopping();

	/* Unbind first: from here on the kernel bypasses the queue. */
	queue_destroy(d->queue);
	/* keepalived sees the fault value first and moves the addresses:
	 * until they are gone the rules still mark and translate. */
	ha_destroy(d->ha);
	if (rules_remove(d->cfg, err, sizeof(err)) == -1)
		log_warnx("removing rules: %s", err);
	addrs_destroy(d->addrs);
	free(d->verify);
	ev_timer_del(d->loop, d->ha_timer);
	ev_timer_del(d->loop, d->watch_timer);
	session_destroy(d->session);
	health_destroy(d->health);
	resync_abort(d);
	ct_destroy(d->ct);
	ctl_destroy(d->ctl);
	sched_destroy(d->sched);
	flows_destroy(d->flows);
	backlog_destroy(d->backlog);
	ev_fd_del(d->loop, d->sigfd);
	close(d->sigfd);
	log_info("stopped; rules removed");
	return 0;
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "check", no_argument, NULL, 'n' },
		{ "print-config", no_argument, NULL, 'P' },
		{ "print-rules", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = UPLINKD_DEFAULT_CONFIG;
	int foreground = 0, verbose = 0, check = 0, print_config = 0, print_rules = 0, ch;
	struct uplinkd d = { 0 };
	char err[CFG_ERR_MAX];
	int rc;

	/*
	 * Fixed thresholds: every block of 1 MiB or more is mapped on its own
	 * and unmapped when freed.  glibc's sliding threshold (up to 32 MiB)
	 * put the kernel-write backlog's rings of a bulk into the heap, where
	 * 19 MB of them stayed resident after a 1M-flow bulk had drained.
	 * Fixing it also fixes the trim threshold, at 128 KiB by default: the
	 * heap's top would then be given back and faulted in again for every
	 * received frame's arena (a 1M-flow resync took 880 ms instead of
	 * 570), so up to 8 MiB of free top stays.
	 */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	mallopt(M_TRIM_THRESHOLD, 8 << 20);

	while ((ch = getopt_long(argc, argv, "c:fvnhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'n':
			check = 1;
			break;
		case 'P':
			print_config = 1;
			break;
		case 'R':
			print_rules = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("uplinkd %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "uplinkd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if ((d.cfg = config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check || print_config || print_rules) {
		if (print_config)
			rc = config_print(d.cfg, stdout);
		else if (print_rules)
			rc = rules_print(d.cfg, stdout);
		else {
			char tls_err[CHANNEL_ERR_MAX];

			warn_unbalanced(d.cfg);
			rc = 0;
			/* The daemon would refuse to start on these too. */
			if (d.cfg->has_sync && channel_check_tls(d.cfg, true, tls_err,
			    sizeof(tls_err)) == -1) {
				fprintf(stderr, "%s: %s\n", path, tls_err);
				rc = -1;
			}
		}
		config_free(d.cfg);
		return rc == 0 ? 0 : 1;
	}
	log_init("uplinkd", foreground, verbose);
	if (!foreground && daemon(0, 0) == -1)
		fatal("daemon");
	if ((d.loop = ev_create()) == NULL)
		fatal("event loop");
	rc = run(&d);
	config_free(d.cfg);
	ev_destroy(d.loop);
	return rc;
}
