#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "emit.h"
#include "ev.h"
#include "handover.h"
#include "json.h"
#include "query.h"

#define HANDOVER_POLL_MS 100
#define HANDOVER_CALL_MS 5000
#define HANDOVER_TAKEOVER_MS 5000

#define EXIT_OK 0
#define EXIT_FAILED 1
#define EXIT_UNREACHABLE 3

struct handover {
	const struct handover_opts *o;
	int64_t start_ms, deadline_ms;
	char err[512];
	bool unreachable;
};

/* What one status poll says. */
struct pair_view {
	bool has_peer;		/* a sync section is configured */
	bool in_sync;		/* connected, and in sync both ways */
	char role[16];
	char sync_state[32];
	bool peer_master;	/* as the peer's heartbeats say */
};

static int64_t
now_ms(void)
{
	return ev_clock_us() / 1000;
}

static void
say(const struct handover *h, const char *fmt, const char *arg)
{
	fprintf(stderr, "handover: %7.1f s  ", (double)(now_ms() - h->start_ms) / 1000);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
}

static int
view(struct handover *h, struct pair_view *v)
{
	struct json *st, *sy;
	const char *s;

	memset(v, 0, sizeof(*v));
	snprintf(v->role, sizeof(v->role), "unknown");
	snprintf(v->sync_state, sizeof(v->sync_state), "unknown");
	if ((st = query_json(h->o->socket, CTL_STATUS, 0, NULL, HANDOVER_CALL_MS, h->err,
	    sizeof(h->err), &h->unreachable)) == NULL)
		return -1;
	if ((sy = query_json(h->o->socket, CTL_SYNC, 0, NULL, HANDOVER_CALL_MS, h->err,
	    sizeof(h->err), &h->unreachable)) == NULL) {
		json_destroy(st);
		return -1;
	}
	s = json_str(json_root(st), "role");
	snprintf(v->role, sizeof(v->role), "%s", s ? s : "unknown");
	s = json_str(json_root(sy), "sync.state");
	snprintf(v->sync_state, sizeof(v->sync_state), "%s", s ? s : "unknown");
	v->has_peer = strcmp(v->sync_state, "disabled") != 0;
	json_bool(json_root(st), "in_sync", &v->in_sync);
	v->in_sync = v->in_sync && strcmp(v->sync_state, "connected") == 0;
	json_bool(json_root(sy), "sync.peer_master", &v->peer_master);
	json_destroy(st);
	json_destroy(sy);
	return 0;
}

/*
 * Step 1: 0 once the pair has been in sync for stable_s (a backup: with
 * the peer master all along) or twice that (a master), 1 without a peer,
 * -1 (err set).  The longer wait of a master lets a backup that restarts
 * at the same moment show as gone before the master steps down, and a
 * backup does not go while the master is stepping down.
 */
static int
wait_stable(struct handover *h, struct pair_view *v)
{
	int64_t since = 0, need;

	for (;;) {
		if (view(h, v) == -1)
			return -1;
		if (!v->has_peer)
			return 1;
		need = (int64_t)h->o->stable_s * 1000;
		if (strcmp(v->role, "master") == 0)
			need *= 2;
		if (!v->in_sync || (strcmp(v->role, "master") != 0 && !v->peer_master))
			since = 0;
		else if (since == 0)
			since = now_ms();
		if (since != 0 && now_ms() - since >= need)
			return 0;
		if (now_ms() >= h->deadline_ms) {
			snprintf(h->err, sizeof(h->err), "the pair was not in sync (and the peer "
			    "master, or this node) for %lld s in a row within %u s (sync %s): "
			    "stopping this node now would lose what the peer lacks",
			    (long long)need / 1000, h->o->timeout_s, v->sync_state);
			return -1;
		}
		query_sleep_ms(HANDOVER_POLL_MS);
	}
}

static int
step(struct handover *h, bool down)
{
	char secs[16], *argv[2] = { down ? "step-down" : "step-up", secs };
	struct json *j;

	snprintf(secs, sizeof(secs), "%u", h->o->hold_s);
	if ((j = query_json(h->o->socket, CTL_DRILL, down ? 2 : 1, argv, HANDOVER_CALL_MS,
	    h->err, sizeof(h->err), &h->unreachable)) == NULL)
		return -1;
	json_destroy(j);
	return 0;
}

/* Step 2 on a master: 0 handed over, 1 not now (stepped up again: the
 * peer dropped off, or did not take over in time), -1 (err set). */
static int
hand_over(struct handover *h, struct pair_view *v)
{
	int64_t since = now_ms();

	if (step(h, true) == -1)
		return -1;
	say(h, "%s", "stepping down: keepalived releases this node's addresses");
	for (;;) {
		query_sleep_ms(HANDOVER_POLL_MS);
		if (view(h, v) == -1)
			break;
		if (strcmp(v->sync_state, "connected") != 0) {
			say(h, "the peer dropped off (sync %s): stepping up again", v->sync_state);
			return step(h, false) == -1 ? -1 : 1;
		}
		if (strcmp(v->role, "master") != 0 && v->peer_master)
			return 0;
		/* A takeover takes well under a second.  Longer, and the peer
		 * may be stepping down too: both back off, for different
		 * times, and try again. */
		if (now_ms() - since >= HANDOVER_TAKEOVER_MS) {
			int pause = HANDOVER_POLL_MS * (5 + (int)(now_ms() % 20));

			say(h, "%s", "the peer has not taken over (both nodes may be handing "
			    "over): stepping up again, retrying after a pause");
			if (step(h, false) == -1)
				return -1;
			query_sleep_ms(pause);
			return 1;
		}
		if (now_ms() >= h->deadline_ms) {
			snprintf(h->err, sizeof(h->err), "the peer did not take over within %u s "
			    "(this node %s)", h->o->timeout_s, v->role);
			break;
		}
	}
	/* Not handed over: this node keeps (or takes back) the addresses. */
	{
		char why[sizeof(h->err)];

		snprintf(why, sizeof(why), "%s", h->err);
		if (step(h, false) == -1)
			say(h, "could not step up again: %s", h->err);
		snprintf(h->err, sizeof(h->err), "%s", why);
	}
	return -1;
}

static void
verdict(const struct handover *h, bool safe, const char *what, const struct pair_view *v)
{
	struct emit *out = emit_create(h->o->json ? EMIT_JSON : EMIT_HUMAN);
	const char *text;
	size_t len;

	if (out == NULL)
		return;
	emit_bool(out, "safe", safe);
	emit_str(out, "verdict", what);
	emit_str(out, "role", v->role);
	emit_str(out, "sync", v->sync_state);
	emit_double(out, "seconds", (double)(now_ms() - h->start_ms) / 1000, 1);
	if ((text = emit_finish(out, &len)) != NULL) {
		fwrite(text, 1, len, stdout);
		if (len > 0 && text[len - 1] != '\n')
			putchar('\n');
	}
	emit_destroy(out);
}

int
handover_run(const struct handover_opts *o)
{
	struct handover h = { .o = o };
	struct pair_view v;
	int rc;

	h.start_ms = now_ms();
	h.deadline_ms = h.start_ms + (int64_t)o->timeout_s * 1000;
	for (;;) {
		if ((rc = wait_stable(&h, &v)) == 1) {
			verdict(&h, true, "no peer is configured: nothing to hand over", &v);
			return EXIT_OK;
		}
		if (rc == -1)
			break;
		if (strcmp(v.role, "master") != 0) {
			verdict(&h, true, "the pair is in sync and this node is not master", &v);
			return EXIT_OK;
		}
		say(&h, "%s", "the pair is in sync; this node is master");
		if ((rc = hand_over(&h, &v)) == 0) {
			verdict(&h, true, "the peer is master and holds this node's flows", &v);
			return EXIT_OK;
		}
		if (rc == -1)
			break;
	}
	verdict(&h, false, h.err, &v);
	return h.unreachable ? EXIT_UNREACHABLE : EXIT_FAILED;
}
