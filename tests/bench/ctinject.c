/*
 * ctinject: uplinkd's kernel inject path on its own.  Writes N conntrack
 * entries, the same ones tests/bench/ctgen makes (TCP ESTABLISHED, SNAT to
 * a provider address and port, provider mark), through the daemon's ct
 * module exactly as a hot standby does with the peer's flows: each flow
 * goes into a flow table as the peer's (flows_upsert) and is queued with
 * ct_write_upsert(), which sends a batch of CT_WRITE_BATCH messages when
 * it fills; the rest go out with ct_write_flush().  It runs in the
 * daemon's event loop: the ct module's event socket (subscribed to NEW and
 * DESTROY, mark filter) reads back the NEW events of our own writes
 * between slices, as the daemon does, and each event costs a flow table
 * lookup, as in on_ct_event().  The clock stops when the kernel has
 * handled every message (ct_write_flush() reads the answers, which come
 * for errors only; ctgen, the raw baseline, asks for an acknowledgement of
 * each).
 *
 *   ctinject -c CONFIG -n N [--slice K] [--offset K] [--no-loop] [--update]
 *
 * CONFIG is an uplinkd config (its providers give the marks and the event
 * filter; entry i uses provider i % providers, its mark and its source
 * address).  --slice: flows queued per loop iteration (default 1024, a
 * few sync batches' worth).  --no-loop: no event loop, the writes back to
 * back (the events then stay unread).  --update: afterwards, the same N
 * again with expect_exists (update first, create on ENOENT), which is the
 * takeover check of a new master over entries hot standby put in.
 *
 * Prints one line of key=value figures; exit 1 when an entry was not
 * created (or not updated).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ct.h"
#include "ev.h"
#include "flows.h"
#include "log.h"

struct inject {
	struct ev_loop *loop;
	struct ct *ct;
	struct flows *ft;
	const struct config *cfg;
	unsigned long n, offset, slice, next;
	bool update;
	uint64_t events, events_peer;
};

/* Entry i as ctgen makes it (see tests/bench/ctgen.c). */
static void
inject_flow(const struct inject *in, unsigned long i, struct flow *f)
{
	unsigned long k = i + in->offset;
	uint32_t src = htonl(0x0a400000u + (uint32_t)k);
	uint32_t dst = htonl(0xc000020au);
	size_t p = k % in->cfg->nproviders;

	memset(f, 0, sizeof(*f));
	f->key.family = AF_INET;
	f->key.proto = IPPROTO_TCP;
	memcpy(f->key.src, &src, 4);
	memcpy(f->key.dst, &dst, 4);
	f->key.sport = (uint16_t)(40000 + k % 20000);
	f->key.dport = (uint16_t)(1000 + k / 60000);
	memcpy(f->nat_src, in->cfg->providers[p].source.a, 4);
	f->nat_port = (uint16_t)(1024 + k % 60000);
	f->provider = (uint8_t)p;
	f->mark = in->cfg->providers[p].mark;
	f->l4state = FLOW_L4_ESTABLISHED;
	f->origin = FLOW_PEER;
}

static int
inject_one(struct inject *in, unsigned long i)
{
	struct flow f;

	inject_flow(in, i, &f);
	if (!in->update && flows_upsert(in->ft, &f) == -1)
		return -1;
	return ct_write_upsert(in->ct, &f, in->update);
}

/* What the daemon does with an event of its own write: the flow is the
 * peer's, so nothing. */
static void
inject_on_event(enum ct_event ev, const struct flow *f, void *data)
{
	struct inject *in = data;
	const struct flow *cur;

	if (ev == CT_PREFETCH)
		return;
	in->events++;
	if (ev != CT_OVERRUN && (cur = flows_lookup(in->ft, &f->key)) != NULL &&
	    cur->origin == FLOW_PEER)
		in->events_peer++;
}

/* One slice per loop iteration; 0 ms: the loop never sleeps meanwhile. */
static int64_t
inject_tick(void *data)
{
	struct inject *in = data;
	unsigned long end = in->next + in->slice;

	for (; in->next < in->n && in->next < end; in->next++)
		inject_one(in, in->next);
	ct_write_flush(in->ct);
	if (in->next == in->n) {
		ev_stop(in->loop);
		return EV_TIMER_STOP;
	}
	return 0;
}

static double
inject_run(struct inject *in, bool loop)
{
	int64_t t0 = ev_clock_us();

	in->next = 0;
	if (loop) {
		if (ev_timer_add(in->loop, 0, inject_tick, in) == NULL || ev_run(in->loop) == -1) {
			perror("ctinject: event loop");
			exit(1);
		}
	} else {
		for (; in->next < in->n; in->next++)
			inject_one(in, in->next);
		ct_write_flush(in->ct);
	}
	return (double)(ev_clock_us() - t0) / 1e6;
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "slice", required_argument, NULL, 'S' },
		{ "offset", required_argument, NULL, 'o' },
		{ "no-loop", no_argument, NULL, 'L' },
		{ "update", no_argument, NULL, 'u' },
		{ NULL, 0, NULL, 0 },
	};
	struct inject in = { .n = 1000, .slice = 1024 };
	struct ct_write_stats w0, w1, w2;
	struct ct_stats cs;
	const char *path = NULL;
	bool loop = true, update = false;
	char err[512];
	struct config *cfg;
	double secs, usecs = 0;
	int ch;

	while ((ch = getopt_long(argc, argv, "c:n:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'n': in.n = strtoul(optarg, NULL, 0); break;
		case 'S': in.slice = strtoul(optarg, NULL, 0); break;
		case 'o': in.offset = strtoul(optarg, NULL, 0); break;
		case 'L': loop = false; break;
		case 'u': update = true; break;
		default:
			fprintf(stderr, "usage: ctinject -c CONFIG -n N [--slice K] [--offset K] "
			    "[--no-loop] [--update]\n");
			return 2;
		}
	}
	if (path == NULL || in.n == 0 || in.slice == 0) {
		fprintf(stderr, "ctinject: need -c CONFIG, N > 0 and a slice > 0\n");
		return 2;
	}
	log_init("ctinject", 1, 0);
	if ((cfg = config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "ctinject: %s\n", err);
		return 2;
	}
	in.cfg = cfg;
	if ((in.loop = ev_create()) == NULL || (in.ft = flows_create(in.n + 1024)) == NULL ||
	    (in.ct = ct_create(in.loop, cfg, inject_on_event, &in)) == NULL) {
		perror("ctinject: setup");
		return 1;
	}
	ct_get_write_stats(in.ct, &w0);
	secs = inject_run(&in, loop);
	ct_get_write_stats(in.ct, &w1);
	if (update) {
		in.update = true;
		usecs = inject_run(&in, loop);
	}
	ct_get_write_stats(in.ct, &w2);
	ct_get_stats(in.ct, &cs);
	printf("ctinject n=%lu mode=%s created=%llu exists_updated=%llu conflicts=%llu failed=%llu "
	    "enobufs=%llu seconds=%.3f rate=%.0f events_read=%llu "
	    "event_overruns=%llu",
	    in.n, loop ? "loop" : "no-loop",
	    (unsigned long long)(w1.created - w0.created),
	    (unsigned long long)(w1.updated - w0.updated),
	    (unsigned long long)(w1.conflicts - w0.conflicts),
	    (unsigned long long)(w1.failed - w0.failed),
	    (unsigned long long)(w1.enobufs - w0.enobufs), secs, (double)in.n / (secs + 1e-9),
	    (unsigned long long)in.events, (unsigned long long)cs.enobufs);
	if (update)
		printf(" update_seconds=%.3f update_rate=%.0f update_updated=%llu "
		    "update_created=%llu update_failed=%llu",
		    usecs, (double)in.n / (usecs + 1e-9),
		    (unsigned long long)(w2.updated - w1.updated),
		    (unsigned long long)(w2.created - w1.created),
		    (unsigned long long)(w2.failed - w1.failed + w2.conflicts - w1.conflicts));
	printf("\n");
	ct_destroy(in.ct);
	flows_destroy(in.ft);
	ev_destroy(in.loop);
	config_free(cfg);
	return w1.created - w0.created == in.n &&
	    (!update || w2.updated - w1.updated == in.n) ? 0 : 1;
}
