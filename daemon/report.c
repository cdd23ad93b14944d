/*
 * report: what the control socket shows about the running daemon.  Each
 * handler describes its answer once through emit, which renders it for
 * people or as JSON with the same fields (keys fixed by ARCHITECTURE.md).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rules.h"
#include "uplinkd.h"

#define REPORT_FLOWS_DEFAULT_LIMIT 100

static void
report_provider(struct uplinkd *d, struct emit *out, size_t i, bool detail)
{
	const struct cfg_provider *p = &d->cfg->providers[i];
	struct health_stats hs;
	char addr[NETADDR_STRLEN];

	health_get(d->health, i, &hs);
	emit_object_begin(out, NULL);
	emit_str(out, "name", p->name);
	emit_str(out, "state", uplinkd_provider_state(d, i));
	emit_u64(out, "weight", p->weight);
	emit_u64(out, "flows", flows_count_provider(d->flows, i));
	emit_str(out, "source", netaddr_str(&p->source, addr, sizeof(addr)));
	/* keepalived moves the SNAT addresses with the role: which node
	 * holds them is the first thing to look at after a failover. */
	if (addrs_refresh(d->addrs) == 0)
		emit_bool(out, "source_here", addrs_has(d->addrs, &p->source));
	else
		emit_null(out, "source_here");
	emit_str(out, "interface", p->interface);
	emit_bool(out, "link", hs.link_up);
	emit_u64(out, "decisions", d->decisions[i]);
	emit_double(out, "availability", health_availability(d->health, i), 4);
	if (hs.rtt_ms_last >= 0)
		emit_double(out, "rtt_ms", hs.rtt_ms_last, 3);
	else
		emit_null(out, "rtt_ms");
	if (detail) {
		char mark[16];

		snprintf(mark, sizeof(mark), "0x%x", p->mark);
		emit_str(out, "gateway", netaddr_str(&p->gateway, addr, sizeof(addr)));
		emit_str(out, "mark", mark);
		emit_u64(out, "table", p->table);
		if (hs.rtt_ms_avg >= 0)
			emit_double(out, "rtt_ms_avg", hs.rtt_ms_avg, 3);
		else
			emit_null(out, "rtt_ms_avg");
		emit_u64(out, "rounds", hs.rounds);
		emit_u64(out, "rounds_good", hs.rounds_good);
		emit_u64(out, "probes_sent", hs.probes_sent);
		emit_u64(out, "replies", hs.replies);
		emit_u64(out, "timeouts", hs.timeouts);
		emit_str(out, "last_change", hs.last_reason[0] ? hs.last_reason : NULL);
	}
	emit_object_end(out);
}

static void
report_sync(struct uplinkd *d, struct emit *out, bool detail)
{
	emit_object_begin(out, "sync");
	session_report(d->session, d->cfg, out, detail);
	emit_object_end(out);
}

/* A node without a peer has nothing to wait for. */
static bool
report_in_sync(const struct uplinkd *d)
{
	return d->session == NULL || session_in_sync(d->session);
}

/* The last takeover: when, how many flows, and the kernel check. */
static void
report_takeover(const struct uplinkd *d, struct emit *out)
{
	if (d->takeover.at_ms == 0) {
		emit_null(out, "takeover");
		return;
	}
	emit_object_begin(out, "takeover");
	emit_double(out, "age_s", (double)(ev_now_ms(d->loop) - d->takeover.at_ms) / 1000, 1);
	emit_u64(out, "adopted", d->takeover.adopted);
	emit_bool(out, "checked", d->takeover.checked);
	if (d->takeover.checked)
		emit_double(out, "check_ms", d->takeover.check_ms, 1);
	else
		emit_null(out, "check_ms");
	emit_u64(out, "present", d->takeover.present);
	emit_u64(out, "created", d->takeover.created);
	emit_u64(out, "conflicts", d->takeover.conflicts);
	emit_u64(out, "failed", d->takeover.failed);
	emit_object_end(out);
}

static enum ctl_status
report_status(const struct ctl_request *req, struct emit *out, char *err, size_t errlen,
    void *data)
{
	struct uplinkd *d = data;
	struct queue_stats qs;

	if (req->argc != 0) {
		snprintf(err, errlen, "status takes no arguments");
		return CTL_USAGE;
	}
	queue_get_stats(d->queue, &qs);
	emit_str(out, "node", d->cfg->node);
	ha_report(d->ha, out, ev_now_ms(d->loop), true);
	report_takeover(d, out);
	emit_bool(out, "in_sync", report_in_sync(d));
	emit_str(out, "algorithm", config_algorithm_name(d->cfg->balance.algorithm));
	emit_bool(out, "degraded", sched_degraded(d->sched));
	emit_double(out, "uptime_s", (double)(ev_now_ms(d->loop) - d->start_ms) / 1000, 1);
	emit_array_begin(out, "providers");
	for (size_t i = 0; i < d->cfg->nproviders; i++)
		report_provider(d, out, i, false);
	emit_array_end(out);
	emit_object_begin(out, "flows");
	emit_u64(out, "total", flows_count(d->flows));
	emit_u64(out, "own", flows_count_origin(d->flows, FLOW_OWN));
	emit_u64(out, "peer", flows_count_origin(d->flows, FLOW_PEER));
	emit_object_end(out);
	emit_object_begin(out, "queue");
	emit_u64(out, "packets", qs.packets);
	emit_u64(out, "accepted", qs.accepted);
	emit_u64(out, "dropped", qs.dropped);
	emit_u64(out, "unparsed", qs.unparsed);
	emit_u64(out, "failed_open", qs.kernel_queue_dropped + qs.kernel_user_dropped);
	emit_u64(out, "safety_net", d->safety_net);
	emit_u64(out, "safety_net_failed", d->safety_net_failed);
	emit_object_end(out);
	/* As of the last watch (UPLINKD_WATCH_MS): status is polled often,
	 * metrics reads the guard's counter itself. */
	emit_object_begin(out, "rules");
	emit_bool(out, "watched", d->rules_watched);
	emit_u64(out, "repairs", d->rules_repairs);
	emit_u64(out, "leak_guard_dropped", d->leak_seen);
	emit_object_end(out);
	{
		struct ct_write_stats w;

		ct_get_write_stats(d->ct, &w);
		emit_object_begin(out, "kernel_writes");
		emit_u64(out, "created", w.created);
		emit_u64(out, "updated", w.updated);
		emit_u64(out, "deleted", w.deleted);
		emit_u64(out, "conflicts", w.conflicts);
		emit_u64(out, "not_found", w.not_found);
		emit_u64(out, "failed", w.failed + w.enobufs);
		emit_u64(out, "unwritable", w.unwritable);
		emit_u64(out, "backlog", backlog_len(d->backlog));
		emit_double(out, "cpu_ms", (double)w.cpu_ns / 1e6, 1);
		emit_object_end(out);
	}
	report_sync(d, out, false);
	return CTL_OK;
}

static enum ctl_status
report_providers(const struct ctl_request *req, struct emit *out, char *err, size_t errlen,
    void *data)
{
	struct uplinkd *d = data;

	if (req->argc != 0) {
		snprintf(err, errlen, "providers takes no arguments");
		return CTL_USAGE;
	}
	emit_array_begin(out, "providers");
	for (size_t i = 0; i < d->cfg->nproviders; i++)
		report_provider(d, out, i, true);
	emit_array_end(out);
	emit_double(out, "combined_availability", health_combined_availability(d->health), 6);
	emit_bool(out, "degraded", sched_degraded(d->sched));
	return CTL_OK;
}

struct flows_walk {
	struct uplinkd *d;
	struct emit *out;
	int provider;		/* -1: all */
	uint64_t limit, shown, matched;
};

static const char *
proto_name(uint8_t proto, char *buf, size_t len)
{
	switch (proto) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	case IPPROTO_ICMP:
		return "icmp";
	case IPPROTO_ICMPV6:
		return "icmpv6";
	case IPPROTO_SCTP:
		return "sctp";
	default:
		snprintf(buf, len, "%u", proto);
		return buf;
	}
}

static int
report_flow_one(const struct flow *f, void *data)
{
	struct flows_walk *w = data;
	struct netaddr a = { .family = f->key.family };
	char addr[NETADDR_STRLEN], pn[8], mark[16];
	uint32_t now = uplinkd_now_s(w->d);

	if (w->provider >= 0 && f->provider != w->provider)
		return 0;
	w->matched++;
	if (w->shown >= w->limit)
		return 0;
	w->shown++;
	emit_object_begin(w->out, NULL);
	emit_str(w->out, "proto", proto_name(f->key.proto, pn, sizeof(pn)));
	memcpy(a.a, f->key.src, 16);
	emit_str(w->out, "src", netaddr_str(&a, addr, sizeof(addr)));
	emit_u64(w->out, "sport", f->key.sport);
	memcpy(a.a, f->key.dst, 16);
	emit_str(w->out, "dst", netaddr_str(&a, addr, sizeof(addr)));
	emit_u64(w->out, "dport", f->key.dport);
	emit_str(w->out, "provider", f->provider < w->d->cfg->nproviders ?
	    w->d->cfg->providers[f->provider].name : "?");
	memcpy(a.a, f->nat_src, 16);
	emit_str(w->out, "nat_src", netaddr_str(&a, addr, sizeof(addr)));
	emit_u64(w->out, "nat_port", f->nat_port);
	snprintf(mark, sizeof(mark), "0x%x", f->mark);
	emit_str(w->out, "mark", mark);
	emit_str(w->out, "state", flow_l4state_name(f->l4state));
	emit_str(w->out, "origin", f->origin == FLOW_PEER ? "peer" : "own");
	emit_u64(w->out, "age_s", now >= f->created ? now - f->created : 0);
	emit_object_end(w->out);
	return 0;
}

static enum ctl_status
report_flows(const struct ctl_request *req, struct emit *out, char *err, size_t errlen,
    void *data)
{
	struct uplinkd *d = data;
	struct flows_walk w = { d, out, -1, REPORT_FLOWS_DEFAULT_LIMIT, 0, 0 };
	char q[LOG_QUOTE_MAX];

	for (int i = 0; i < req->argc; i++) {
		if (strcmp(req->argv[i], "--provider") == 0 && i + 1 < req->argc) {
			w.provider = config_provider_index(d->cfg, req->argv[++i]);
			if (w.provider < 0) {
				snprintf(err, errlen, "no provider named %s",
				    log_quote(req->argv[i], q, sizeof(q)));
				return CTL_USAGE;
			}
		} else if (strcmp(req->argv[i], "--limit") == 0 && i + 1 < req->argc) {
			char *end;

			errno = 0;
			w.limit = strtoull(req->argv[++i], &end, 10);
			if (errno || *end || req->argv[i][0] == '\0' || req->argv[i][0] == '-') {
				snprintf(err, errlen, "--limit: %s is not a count",
				    log_quote(req->argv[i], q, sizeof(q)));
				return CTL_USAGE;
			}
		} else {
			snprintf(err, errlen, "unexpected argument %s",
			    log_quote(req->argv[i], q, sizeof(q)));
			return CTL_USAGE;
		}
	}
	emit_array_begin(out, "flows");
	flows_foreach(d->flows, report_flow_one, &w);
	emit_array_end(out);
	emit_u64(out, "matched", w.matched);
	emit_u64(out, "shown", w.shown);
	emit_u64(out, "total", flows_count(d->flows));
	return CTL_OK;
}

static enum ctl_status
report_sync_cmd(const struct ctl_request *req, struct emit *out, char *err, size_t errlen,
    void *data)
{
	struct uplinkd *d = data;
	bool resync = req->argc == 1 && strcmp(req->argv[0], "--resync") == 0;

	if (req->argc != 0 && !resync) {
		snprintf(err, errlen, "sync takes only --resync");
		return CTL_USAGE;
	}
	if (resync) {
		if (d->session == NULL || session_request_resync(d->session) == -1) {
			snprintf(err, errlen, "%s", d->session == NULL ? "no sync peer is configured" :
			    "the peer is not connected (a connection always starts with a resync)");
			return CTL_FAILED;
		}
		log_info("sync: bulk resync requested by operator");
	}
	emit_bool(out, "in_sync", report_in_sync(d));
	if (resync)
		emit_str(out, "resync", "started");
	report_sync(d, out, true);
	return CTL_OK;
}

/* The pair's part of the metrics: sync, role, and the standby's writes
 * of the peer's flows into the kernel. */
static void
report_metrics_ha(const struct uplinkd *d, FILE *f)
{
	struct ct_write_stats w;

	if (d->session != NULL)
		session_metrics(d->session, f);
	ha_metrics(d->ha, f);
	ct_get_write_stats(d->ct, &w);
	fprintf(f, "# HELP uplinkd_kernel_writes_total The peer's flows written into this node's "
	    "conntrack table (hot standby), by result.\n"
	    "# TYPE uplinkd_kernel_writes_total counter\n"
	    "uplinkd_kernel_writes_total{result=\"created\"} %llu\n"
	    "uplinkd_kernel_writes_total{result=\"updated\"} %llu\n"
	    "uplinkd_kernel_writes_total{result=\"deleted\"} %llu\n"
	    "uplinkd_kernel_writes_total{result=\"conflict\"} %llu\n"
	    "uplinkd_kernel_writes_total{result=\"not_found\"} %llu\n"
	    "uplinkd_kernel_writes_total{result=\"failed\"} %llu\n"
	    "uplinkd_kernel_writes_total{result=\"unwritable\"} %llu\n"
	    "# HELP uplinkd_kernel_writes_backlog The peer's flows waiting to be written.\n"
	    "# TYPE uplinkd_kernel_writes_backlog gauge\nuplinkd_kernel_writes_backlog %zu\n",
	    (unsigned long long)w.created, (unsigned long long)w.updated,
	    (unsigned long long)w.deleted, (unsigned long long)w.conflicts,
	    (unsigned long long)w.not_found, (unsigned long long)(w.failed + w.enobufs),
	    (unsigned long long)w.unwritable, backlog_len(d->backlog));
}

/* Prometheus text exposition format. */
static enum ctl_status
report_metrics(const struct ctl_request *req, struct emit *out, char *err, size_t errlen,
    void *data)
{
	struct uplinkd *d = data;
	struct queue_stats qs;
	struct ct_stats cs;
	uint64_t leaked;
	char *text = NULL;
	size_t len;
	FILE *f;

	if (req->argc != 0) {
		snprintf(err, errlen, "metrics takes no arguments");
		return CTL_USAGE;
	}
	if ((f = open_memstream(&text, &len)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return CTL_FAILED;
	}
	queue_get_stats(d->queue, &qs);
	ct_get_stats(d->ct, &cs);
	fprintf(f, "# HELP uplinkd_decisions_total New connections given a provider by uplinkd.\n"
	    "# TYPE uplinkd_decisions_total counter\n");
	for (size_t i = 0; i < d->cfg->nproviders; i++)
		fprintf(f, "uplinkd_decisions_total{provider=\"%s\"} %llu\n",
		    d->cfg->providers[i].name, (unsigned long long)d->decisions[i]);
	fprintf(f, "# HELP uplinkd_decisions_degraded_total Decisions made with no usable provider.\n"
	    "# TYPE uplinkd_decisions_degraded_total counter\n"
	    "uplinkd_decisions_degraded_total %llu\n", (unsigned long long)d->decisions_degraded);
	fprintf(f, "# HELP uplinkd_safety_net_total Mid-stream packets of known flows whose conntrack entry was rewritten (the packet dropped).\n"
	    "# TYPE uplinkd_safety_net_total counter\n"
	    "uplinkd_safety_net_total %llu\n", (unsigned long long)d->safety_net);
	fprintf(f, "# HELP uplinkd_safety_net_failed_total Mid-stream packets of known flows whose "
	    "entry the kernel refused (a fresh decision carried the packet).\n"
	    "# TYPE uplinkd_safety_net_failed_total counter\n"
	    "uplinkd_safety_net_failed_total %llu\n", (unsigned long long)d->safety_net_failed);
	if (rules_leak_guard_dropped(&leaked) == 0)
		fprintf(f, "# HELP uplinkd_leak_guard_dropped_total Packets from LAN addresses the leak guard "
		    "dropped on their way to a provider untranslated, since the rules were installed.\n"
		    "# TYPE uplinkd_leak_guard_dropped_total counter\n"
		    "uplinkd_leak_guard_dropped_total %llu\n", (unsigned long long)leaked);
	fprintf(f, "# HELP uplinkd_rules_repairs_total Times the installed rules were found changed by "
	    "another tool and installed again.\n"
	    "# TYPE uplinkd_rules_repairs_total counter\n"
	    "uplinkd_rules_repairs_total %llu\n", (unsigned long long)d->rules_repairs);
	fprintf(f, "# HELP uplinkd_provider_up Provider usable (1) or not (0).\n"
	    "# TYPE uplinkd_provider_up gauge\n");
	for (size_t i = 0; i < d->cfg->nproviders; i++)
		fprintf(f, "uplinkd_provider_up{provider=\"%s\",state=\"%s\"} %d\n",
		    d->cfg->providers[i].name, uplinkd_provider_state(d, i),
		    strcmp(uplinkd_provider_state(d, i), "up") == 0);
	fprintf(f, "# HELP uplinkd_provider_flows Tracked flows per provider.\n"
	    "# TYPE uplinkd_provider_flows gauge\n");
	for (size_t i = 0; i < d->cfg->nproviders; i++)
		fprintf(f, "uplinkd_provider_flows{provider=\"%s\"} %llu\n", d->cfg->providers[i].name,
		    (unsigned long long)flows_count_provider(d->flows, i));
	fprintf(f, "# HELP uplinkd_provider_rtt_seconds Round-trip time of the last probe reply.\n"
	    "# TYPE uplinkd_provider_rtt_seconds gauge\n");
	for (size_t i = 0; i < d->cfg->nproviders; i++) {
		struct health_stats hs;

		health_get(d->health, i, &hs);
		if (hs.rtt_ms_last >= 0)
			fprintf(f, "uplinkd_provider_rtt_seconds{provider=\"%s\"} %.6f\n",
			    d->cfg->providers[i].name, hs.rtt_ms_last / 1000);
	}
	fprintf(f, "# HELP uplinkd_provider_availability Fraction of probe rounds that were good.\n"
	    "# TYPE uplinkd_provider_availability gauge\n");
	for (size_t i = 0; i < d->cfg->nproviders; i++)
		fprintf(f, "uplinkd_provider_availability{provider=\"%s\"} %.6f\n",
		    d->cfg->providers[i].name, health_availability(d->health, i));
	fprintf(f, "# HELP uplinkd_queue_packets_total First packets the daemon read from its queue.\n"
	    "# TYPE uplinkd_queue_packets_total counter\nuplinkd_queue_packets_total %llu\n"
	    "# HELP uplinkd_queue_unparsed_total Queued packets the daemon could not parse, "
	    "accepted unmarked for the kernel's fallback mark.\n"
	    "# TYPE uplinkd_queue_unparsed_total counter\nuplinkd_queue_unparsed_total %llu\n"
	    "# HELP uplinkd_queue_verdict_errors_total Batches of verdicts the kernel refused.\n"
	    "# TYPE uplinkd_queue_verdict_errors_total counter\nuplinkd_queue_verdict_errors_total %llu\n"
	    "# HELP uplinkd_queue_enobufs_total Times the queue's socket overflowed (the kernel "
	    "accepted those packets unqueued).\n"
	    "# TYPE uplinkd_queue_enobufs_total counter\nuplinkd_queue_enobufs_total %llu\n"
	    "# HELP uplinkd_queue_failed_open_total Packets the kernel accepted unqueued (queue or socket full).\n"
	    "# TYPE uplinkd_queue_failed_open_total counter\nuplinkd_queue_failed_open_total %llu\n",
	    (unsigned long long)qs.packets, (unsigned long long)qs.unparsed,
	    (unsigned long long)qs.verdict_errors, (unsigned long long)qs.enobufs,
	    (unsigned long long)(qs.kernel_queue_dropped + qs.kernel_user_dropped));
	fprintf(f, "# HELP uplinkd_flows Tracked flows: this node's own and the peer's.\n"
	    "# TYPE uplinkd_flows gauge\nuplinkd_flows{origin=\"own\"} %zu\n"
	    "uplinkd_flows{origin=\"peer\"} %zu\n"
	    "# HELP uplinkd_ct_events_total Conntrack events read, by type.\n"
	    "# TYPE uplinkd_ct_events_total counter\nuplinkd_ct_events_total{type=\"new\"} %llu\n"
	    "uplinkd_ct_events_total{type=\"destroy\"} %llu\n"
	    "# HELP uplinkd_ct_enobufs_total Times conntrack events were lost to a full socket "
	    "(each answered by a resync from a dump).\n"
	    "# TYPE uplinkd_ct_enobufs_total counter\nuplinkd_ct_enobufs_total %llu\n"
	    "# HELP uplinkd_flow_resyncs_total Completed resyncs of the flow table from a conntrack "
	    "dump.\n"
	    "# TYPE uplinkd_flow_resyncs_total counter\nuplinkd_flow_resyncs_total %llu\n"
	    "# HELP uplinkd_flows_table_full_total Own flows the full flow table refused.\n"
	    "# TYPE uplinkd_flows_table_full_total counter\nuplinkd_flows_table_full_total %llu\n",
	    flows_count_origin(d->flows, FLOW_OWN), flows_count_origin(d->flows, FLOW_PEER),
	    (unsigned long long)cs.events_new, (unsigned long long)cs.events_destroy,
	    (unsigned long long)cs.enobufs, (unsigned long long)d->resyncs,
	    (unsigned long long)d->flows_full);
	report_metrics_ha(d, f);
	if (fclose(f) != 0) {
		free(text);
		snprintf(err, errlen, "out of memory");
		return CTL_FAILED;
	}
	emit_raw(out, text, len);
	free(text);
	return CTL_OK;
}

void
report_register(struct uplinkd *d)
{
	ctl_register(d->ctl, CTL_STATUS, report_status, d);
	ctl_register(d->ctl, CTL_PROVIDERS, report_providers, d);
	ctl_register(d->ctl, CTL_FLOWS, report_flows, d);
	ctl_register(d->ctl, CTL_SYNC, report_sync_cmd, d);
	ctl_register(d->ctl, CTL_METRICS, report_metrics, d);
}
