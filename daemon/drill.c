/*
 * drill: the orchestration is a sequence of polls of the daemons' --json
 * answers, every wait bounded by --timeout; what it saw goes into an
 * event list with times relative to the start of the drill.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "drill.h"
#include "emit.h"
#include "ev.h"
#include "json.h"
#include "query.h"

#define DRILL_POLL_MS 20		/* role changes: the takeover time's resolution */
#define DRILL_FLOW_POLL_MS 250		/* flow lists are large: poll them slowly */
#define DRILL_CALL_MS 10000
#define DRILL_MAX_EVENTS 64
#define DRILL_FLOW_LIMIT "100000000"
#define DRILL_HUMAN_LOST 20		/* lost flows listed in human output */
#define DRILL_OUTPUT_MAX (1u << 20)	/* a --traffic-cmd's output */

#define EXIT_OK 0
#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

static const char *const mode_names[] = {
	[DRILL_GRACEFUL] = "graceful",
	[DRILL_KILL] = "kill",
	[DRILL_LINK] = "link",
	[DRILL_NODE] = "node",
	[DRILL_SYNC_CUT] = "sync-cut",
};

struct dnode {
	const char *socket;		/* NULL: seen through the other node */
	struct dnode *via;
	char name[CFG_NAME_MAX];
};

/* A flow as the comparison needs it: the tuple is the identity, the
 * rest is what must not change. */
struct dflow {
	char key[112];			/* "tcp 10.0.0.100:40000 > 192.0.2.10:5001" */
	char nat[56];			/* "198.51.100.10:40000" */
	char provider[CFG_NAME_MAX];
};

struct flowset {
	struct dflow *v;
	size_t n;
};

struct event {
	double t_ms;
	char node[CFG_NAME_MAX];
	char text[160];
};

/* One leg's outcome. */
struct leg {
	bool done;
	char from[CFG_NAME_MAX], to[CFG_NAME_MAX];
	double takeover_ms;		/* < 0: no takeover */
	size_t before, carried, changed;
	struct flowset lost;		/* lost and changed, with why[] */
	char (*why)[16];
	struct json *takeover;		/* the new master's status (its takeover object) */
	struct json *traffic;
};

struct drill {
	const struct drill_opts *o;
	struct dnode a, b;
	int64_t t0_us;
	struct event ev[DRILL_MAX_EVENTS];
	size_t nev;
	char err[512];			/* the last error of a call */
	char verdict_text[512];
	bool unreachable;
	bool stepped_down;
	struct leg leg[2];
	const char *verdict;		/* why it failed, NULL when it passed */
};

int
drill_mode_parse(const char *s, enum drill_mode *out)
{
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
		if (strcmp(s, mode_names[i]) == 0) {
			*out = (enum drill_mode)i;
			return 0;
		}
	}
	errno = EINVAL;
	return -1;
}

const char *
drill_mode_name(enum drill_mode mode)
{
	return (size_t)mode < sizeof(mode_names) / sizeof(mode_names[0]) ?
	    mode_names[mode] : "?";
}

static double
elapsed_ms(const struct drill *dr)
{
	return (double)(ev_clock_us() - dr->t0_us) / 1000;
}

static void event(struct drill *dr, const struct dnode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
event(struct drill *dr, const struct dnode *n, const char *fmt, ...)
{
	struct event *e;
	va_list ap;

	if (dr->nev == DRILL_MAX_EVENTS)
		return;
	e = &dr->ev[dr->nev++];
	e->t_ms = elapsed_ms(dr);
	snprintf(e->node, sizeof(e->node), "%s", n ? n->name : "-");
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	/* Progress as it happens; the report (stdout) has the same list. */
	fprintf(stderr, "drill: %8.1f ms  %-10s %s\n", e->t_ms, e->node, e->text);
}

static void fail(struct drill *dr, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The first failure is the verdict. */
static void
fail(struct drill *dr, const char *fmt, ...)
{
	va_list ap;

	if (dr->verdict != NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(dr->verdict_text, sizeof(dr->verdict_text), fmt, ap);
	va_end(ap);
	dr->verdict = dr->verdict_text;
}

static struct json *
node_call(struct drill *dr, const struct dnode *n, enum ctl_type type, int argc, char **argv)
{
	return query_json(n->socket, type, argc, argv, DRILL_CALL_MS, dr->err, sizeof(dr->err),
	    &dr->unreachable);
}

/*
 * The node's role: "master", "backup", "fault", "init", or for a peer
 * seen through the sync channel "master"/"not master"/"unknown".  Returns
 * -1 when the node (or the one it is seen through) cannot be asked.
 */
static int
node_role(struct drill *dr, const struct dnode *n, char *role, size_t len)
{
	struct json *j;
	const char *s;
	bool master;

	if (n->socket != NULL) {
		if ((j = node_call(dr, n, CTL_STATUS, 0, NULL)) == NULL)
			return -1;
		s = json_str(json_root(j), "role");
		snprintf(role, len, "%s", s ? s : "unknown");
	} else {
		if ((j = node_call(dr, n->via, CTL_SYNC, 0, NULL)) == NULL)
			return -1;
		s = json_str(json_root(j), "sync.state");
		if (s == NULL || strcmp(s, "connected") != 0)
			snprintf(role, len, "unknown");
		else
			snprintf(role, len, "%s", json_bool(json_root(j), "sync.peer_master",
			    &master) && master ? "master" : "not master");
	}
	json_destroy(j);
	return 0;
}

static bool
is_master(const char *role)
{
	return strcmp(role, "master") == 0;
}

/* in_sync as the node reports it (a peer seen through the sync channel:
 * as its partner reports it; the two directions make one answer). */
static int
node_in_sync(struct drill *dr, const struct dnode *n, bool *in_sync)
{
	struct json *j = node_call(dr, n->socket ? n : n->via, CTL_STATUS, 0, NULL);
	bool ok;

	if (j == NULL)
		return -1;
	ok = json_bool(json_root(j), "in_sync", in_sync);
	json_destroy(j);
	if (!ok) {
		snprintf(dr->err, sizeof(dr->err), "status without in_sync");
		return -1;
	}
	return 0;
}

static int
dflow_cmp(const void *a, const void *b)
{
	return strcmp(((const struct dflow *)a)->key, ((const struct dflow *)b)->key);
}

static void
flowset_free(struct flowset *s)
{
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

static void
dflow_key(struct dflow *f, const char *proto, const char *src, uint64_t sport,
    const char *dst, uint64_t dport)
{
	snprintf(f->key, sizeof(f->key), "%s %s:%llu > %s:%llu", proto, src,
	    (unsigned long long)sport, dst, (unsigned long long)dport);
}

/*
 * The node's own flows (a peer seen through the sync channel: the flows
 * its partner holds as the peer's), sorted by tuple.
 */
static int
node_flows(struct drill *dr, const struct dnode *n, struct flowset *out)
{
	char *argv[] = { "--limit", DRILL_FLOW_LIMIT };
	const char *want = n->socket ? "own" : "peer";
	const struct json_value *list, *f;
	struct json *j;
	size_t i = 0;

	out->v = NULL;
	out->n = 0;
	if ((j = node_call(dr, n->socket ? n : n->via, CTL_FLOWS, 2, argv)) == NULL)
		return -1;
	list = json_get(json_root(j), "flows");
	if (json_count(list) > 0 && (out->v = calloc(json_count(list), sizeof(*out->v))) == NULL) {
		json_destroy(j);
		snprintf(dr->err, sizeof(dr->err), "no memory for %zu flows", json_count(list));
		return -1;
	}
	for (f = json_first(list); f != NULL; f = json_next(f)) {
		const char *proto = json_str(f, "proto"), *src = json_str(f, "src");
		const char *dst = json_str(f, "dst"), *nat = json_str(f, "nat_src");
		const char *origin = json_str(f, "origin"), *prov = json_str(f, "provider");
		uint64_t sport, dport, nport;

		if (!proto || !src || !dst || !nat || !origin || !prov ||
		    !json_u64(f, "sport", &sport) || !json_u64(f, "dport", &dport) ||
		    !json_u64(f, "nat_port", &nport)) {
			json_destroy(j);
			flowset_free(out);
			snprintf(dr->err, sizeof(dr->err), "a flow in the answer lacks a field");
			return -1;
		}
		if (strcmp(origin, want) != 0)
			continue;
		dflow_key(&out->v[i], proto, src, sport, dst, dport);
		snprintf(out->v[i].nat, sizeof(out->v[i].nat), "%s:%llu", nat,
		    (unsigned long long)nport);
		snprintf(out->v[i].provider, sizeof(out->v[i].provider), "%s", prov);
		i++;
	}
	json_destroy(j);
	out->n = i;
	qsort(out->v, out->n, sizeof(*out->v), dflow_cmp);
	return 0;
}

/*
 * The flows of `before` that `after` lacks or carries differently go
 * into leg->lost (with leg->why); the rest are counted as carried.  With
 * `copy` (what the standby held of them when the failure began), a flow
 * it did not hold is lost even if `after` has it: the new master made a
 * fresh decision for it, which only by chance kept its source.
 */
static int
compare(struct drill *dr, struct leg *leg, const struct flowset *before,
    const struct flowset *after, const struct flowset *copy)
{
	free(leg->lost.v);
	free(leg->why);
	leg->lost.v = NULL;
	leg->why = NULL;
	leg->lost.n = leg->carried = leg->changed = 0;
	leg->before = before->n;
	for (size_t i = 0; i < before->n; i++) {
		const struct dflow *f = &before->v[i];
		const struct dflow *g = bsearch(f, after->v, after->n, sizeof(*f), dflow_cmp);
		const char *why;

		if (copy != NULL && bsearch(f, copy->v, copy->n, sizeof(*f), dflow_cmp) == NULL)
			why = "not replicated";
		else if (g == NULL)
			why = "missing";
		else if (strcmp(g->nat, f->nat) != 0 || strcmp(g->provider, f->provider) != 0)
			why = "changed";
		else {
			leg->carried++;
			continue;
		}
		leg->changed += strcmp(why, "changed") == 0;
		if (leg->lost.v == NULL) {
			leg->lost.v = calloc(before->n, sizeof(*leg->lost.v));
			leg->why = calloc(before->n, sizeof(*leg->why));
			if (leg->lost.v == NULL || leg->why == NULL) {
				snprintf(dr->err, sizeof(dr->err), "no memory");
				return -1;
			}
		}
		leg->lost.v[leg->lost.n] = *f;
		snprintf(leg->why[leg->lost.n++], sizeof(leg->why[0]), "%s", why);
	}
	return 0;
}

/* Runs an operator's command (sh -c) with the drill's names in the
 * environment; its stdout is captured when out is given. */
static int
run_cmd(struct drill *dr, const char *what, const char *cmd, const struct dnode *active,
    const struct dnode *standby, char **out)
{
	char buf[4096];
	size_t len = 0, n;
	FILE *p;
	int st;

	setenv("DRILL_MODE", drill_mode_name(dr->o->mode), 1);
	setenv("DRILL_ACTIVE", active->name, 1);
	setenv("DRILL_STANDBY", standby->name, 1);
	fflush(NULL);
	if ((p = popen(cmd, "r")) == NULL) {
		snprintf(dr->err, sizeof(dr->err), "%s: cannot run \"%s\": %s", what, cmd,
		    strerror(errno));
		return -1;
	}
	if (out != NULL)
		*out = NULL;
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
		char *grown;

		if (out == NULL) {
			fwrite(buf, 1, n, stderr);
			continue;
		}
		if (len + n > DRILL_OUTPUT_MAX || (grown = realloc(*out, len + n + 1)) == NULL) {
			free(*out);
			*out = NULL;
			pclose(p);
			snprintf(dr->err, sizeof(dr->err), "%s: output too long", what);
			return -1;
		}
		*out = grown;
		memcpy(*out + len, buf, n);
		len += n;
		(*out)[len] = '\0';
	}
	st = pclose(p);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		snprintf(dr->err, sizeof(dr->err), "%s: \"%s\" failed (%s %d)", what, cmd,
		    st != -1 && WIFEXITED(st) ? "exit status" : "wait status", st != -1 &&
		    WIFEXITED(st) ? WEXITSTATUS(st) : st);
		if (out != NULL) {
			free(*out);
			*out = NULL;
		}
		return -1;
	}
	return 0;
}

static struct json *
run_traffic(struct drill *dr, const struct dnode *active, const struct dnode *standby)
{
	char perr[128];
	struct json *j;
	char *text;
	uint64_t broken;

	if (dr->o->traffic_cmd == NULL)
		return NULL;
	if (run_cmd(dr, "--traffic-cmd", dr->o->traffic_cmd, active, standby, &text) == -1) {
		fail(dr, "%s", dr->err);
		return NULL;
	}
	j = text ? json_parse(text, strlen(text), perr, sizeof(perr)) : NULL;
	free(text);
	if (j == NULL || json_type(json_root(j)) != JSON_OBJECT) {
		json_destroy(j);
		fail(dr, "--traffic-cmd did not print a JSON object");
		return NULL;
	}
	if (json_u64(json_root(j), "broken", &broken) && broken > 0)
		fail(dr, "%llu connections broke", (unsigned long long)broken);
	return j;
}

/* Polls until cond(dr, arg) is true, fails or the timeout passes:
 * 1, -1 (dr->err), 0 (timeout). */
static int
wait_for(struct drill *dr, int (*cond)(struct drill *, void *), void *arg, unsigned secs,
    int poll_ms)
{
	int64_t deadline = ev_clock_us() + (int64_t)secs * 1000000;
	int r;

	for (;;) {
		if ((r = cond(dr, arg)) != 0)
			return r;
		if (ev_clock_us() >= deadline)
			return 0;
		query_sleep_ms(poll_ms);
	}
}

struct takeover_watch {
	struct dnode *old, *new;
	bool old_left;			/* the old active node is no longer master */
	bool new_master;
};

/* The new node is master and the old one is not (or cannot be asked: a
 * killed daemon). */
static int
takeover_done(struct drill *dr, void *arg)
{
	struct takeover_watch *w = arg;
	char role[32];

	if (!w->old_left) {
		if (node_role(dr, w->old, role, sizeof(role)) == -1) {
			w->old_left = true;
			event(dr, w->old, "cannot be reached (%s)", dr->err);
		} else if (!is_master(role)) {
			w->old_left = true;
			event(dr, w->old, "role %s", role);
		}
	}
	if (!w->new_master) {
		if (node_role(dr, w->new, role, sizeof(role)) == -1)
			return -1;
		if (is_master(role)) {
			w->new_master = true;
			event(dr, w->new, "role master");
		}
	}
	return w->new_master && w->old_left;
}

struct flows_watch {
	struct dnode *node;
	const struct flowset *before, *copy;
	struct leg *leg;
};

static int
flows_arrived(struct drill *dr, void *arg)
{
	struct flows_watch *w = arg;
	struct flowset now;
	int r;

	if (node_flows(dr, w->node, &now) == -1)
		return -1;
	r = compare(dr, w->leg, w->before, &now, w->copy);
	flowset_free(&now);
	if (r == -1)
		return -1;
	return w->leg->lost.n == 0;
}

struct check_watch {
	struct dnode *node;
	struct leg *leg;
};

/* The new master's check of the adopted flows against its kernel. */
static int
check_finished(struct drill *dr, void *arg)
{
	struct check_watch *w = arg;
	bool checked;

	json_destroy(w->leg->takeover);
	if ((w->leg->takeover = node_call(dr, w->node, CTL_STATUS, 0, NULL)) == NULL)
		return -1;
	return json_bool(json_root(w->leg->takeover), "takeover.checked", &checked) && checked;
}

/* Flows the tables carried can still have lost their translation: the
 * new master's kernel refused their entries. */
static void
check_verdict(struct drill *dr, struct dnode *to, struct leg *leg)
{
	const struct json_value *root = json_root(leg->takeover);
	uint64_t conflicts = 0, failed = 0;

	if (!json_u64(root, "takeover.conflicts", &conflicts) ||
	    !json_u64(root, "takeover.failed", &failed) || conflicts + failed == 0)
		return;
	fail(dr, "%s's takeover check found %llu NAT conflicts and %llu failed writes: "
	    "their connections lost their source address or port", to->name,
	    (unsigned long long)conflicts, (unsigned long long)failed);
}

/*
 * One failover from `from` to `to`: the failure (or the failback's
 * restore) is `act`, done after the snapshot.  A failback that does not
 * happen within `wait_s` (VRRP without preempt keeps the roles) is
 * reported, not failed: the old node may stay backup.
 */
static int
leg_run(struct drill *dr, struct leg *leg, struct dnode *from, struct dnode *to,
    int (*act)(struct drill *, struct dnode *, struct dnode *), const struct flowset *before,
    unsigned wait_s, bool must)
{
	struct takeover_watch tw = { from, to, false, false };
	struct flowset copy = { 0 };
	struct flows_watch fw = { to, before, NULL, leg };
	struct check_watch cw = { to, leg };
	struct dnode held = { NULL, to, "" };
	double t_fail;
	int r;

	leg->done = true;
	leg->takeover_ms = -1;
	snprintf(leg->from, sizeof(leg->from), "%s", from->name);
	snprintf(leg->to, sizeof(leg->to), "%s", to->name);
	leg->before = before->n;
	/* What the standby holds of the flows when the failure begins (its
	 * flows of origin peer), when it can be asked directly.  Not for a
	 * failback: the returning node is still down here, and it resyncs
	 * before VRRP lets it win. */
	if (to->socket != NULL && must) {
		if (node_flows(dr, &held, &copy) == -1)
			event(dr, to, "its copy of the flows cannot be read (%s)", dr->err);
		else
			fw.copy = &copy;
	}
	t_fail = elapsed_ms(dr);
	if (act(dr, from, to) == -1) {
		flowset_free(&copy);
		fail(dr, "%s", dr->err);
		return -1;
	}
	r = wait_for(dr, takeover_done, &tw, wait_s, DRILL_POLL_MS);
	if (r == 0 && !must) {
		event(dr, to, "did not become master within %u s (VRRP without preempt?)",
		    wait_s);
		leg->done = false;
		flowset_free(&copy);
		return 0;
	}
	if (r != 1) {
		flowset_free(&copy);
		fail(dr, "%s did not take over within %u s%s%s", to->name, wait_s,
		    r == -1 ? ": " : "", r == -1 ? dr->err : "");
		return -1;
	}
	leg->takeover_ms = elapsed_ms(dr) - t_fail;
	if (to->socket != NULL && wait_for(dr, check_finished, &cw, dr->o->timeout_s,
	    DRILL_POLL_MS) != 1)
		event(dr, to, "takeover check not finished within %u s", dr->o->timeout_s);
	else if (to->socket != NULL)
		check_verdict(dr, to, leg);
	r = wait_for(dr, flows_arrived, &fw, dr->o->settle_s, DRILL_FLOW_POLL_MS);
	flowset_free(&copy);
	if (r == -1) {
		fail(dr, "reading the flows of %s: %s", to->name, dr->err);
		return -1;
	}
	event(dr, to, "holds %zu of %zu flows (%zu changed, %zu missing or not replicated)",
	    leg->carried, leg->before, leg->changed, leg->lost.n - leg->changed);
	leg->traffic = run_traffic(dr, from, to);
	if (leg->lost.n > 0)
		fail(dr, "%zu of %zu flows were not carried to %s", leg->lost.n, leg->before,
		    to->name);
	return 0;
}

static int
step(struct drill *dr, struct dnode *n, bool down)
{
	char secs[16], *argv[2] = { down ? "step-down" : "step-up", secs };
	/* A bound on the step-down, so that a drill that dies does not leave
	 * the node out of the pair: every wait it can still make. */
	unsigned hold = 4 * dr->o->timeout_s + dr->o->settle_s + dr->o->hold_s + 30;
	struct json *j;

	/* Long waits (--timeout above ~890 s) would ask for more than the
	 * daemon grants, and every graceful drill would be refused. */
	if (hold > CTL_STEP_DOWN_MAX_S)
		hold = CTL_STEP_DOWN_MAX_S;

	snprintf(secs, sizeof(secs), "%u", hold);
	if ((j = node_call(dr, n, CTL_DRILL, down ? 2 : 1, argv)) == NULL)
		return -1;
	json_destroy(j);
	dr->stepped_down = down;
	event(dr, n, down ? "steps down (keepalived releases its addresses)" :
	    "step-down ended");
	return 0;
}

static int
act_fail(struct drill *dr, struct dnode *active, struct dnode *standby)
{
	if (dr->o->mode == DRILL_GRACEFUL)
		return step(dr, active, true);
	event(dr, active, "failure: %s (--fail-cmd)", drill_mode_name(dr->o->mode));
	return run_cmd(dr, "--fail-cmd", dr->o->fail_cmd, active, standby, NULL);
}

/* The failback's trigger: from and to are the second leg's. */
static int
act_restore(struct drill *dr, struct dnode *from, struct dnode *to)
{
	if (dr->o->mode == DRILL_GRACEFUL) {
		if (dr->o->hold_s)
			query_sleep_ms((int)dr->o->hold_s * 1000);
		return step(dr, to, false);
	}
	event(dr, to, "restore (--restore-cmd)");
	return run_cmd(dr, "--restore-cmd", dr->o->restore_cmd, to, from, NULL);
}

struct roles_watch {
	struct dnode *active, *standby;
};

/* sync-cut: both keep their roles.  Returns 1 (a change: the verdict is
 * set) or 0, so that wait_for runs to its end when nothing happens. */
static int
roles_changed(struct drill *dr, void *arg)
{
	struct roles_watch *w = arg;
	char role[32];

	if (node_role(dr, w->active, role, sizeof(role)) == -1 || !is_master(role)) {
		fail(dr, "%s lost the master role during the sync cut", w->active->name);
		return 1;
	}
	if (node_role(dr, w->standby, role, sizeof(role)) == -1 || is_master(role)) {
		fail(dr, "%s became master during the sync cut", w->standby->name);
		return 1;
	}
	return 0;
}

static int
pair_in_sync(struct drill *dr, void *arg)
{
	struct roles_watch *w = arg;
	bool a, b;

	if (node_in_sync(dr, w->active, &a) == -1 || node_in_sync(dr, w->standby, &b) == -1)
		return 0;	/* a node still restarting */
	return a && b;
}

/*
 * sync-cut: the standby's copy of the active node's flows (its flows of
 * origin peer) after the heal must hold every flow the active node still
 * has.
 */
static int
sync_cut_run(struct drill *dr, struct dnode *active, struct dnode *standby)
{
	struct roles_watch rw = { active, standby };
	struct leg *leg = &dr->leg[0];
	struct flowset now = { 0 }, copy = { 0 };
	struct dnode seen = { NULL, standby, "" };
	int r;

	leg->done = true;
	leg->takeover_ms = -1;
	snprintf(leg->from, sizeof(leg->from), "%s", active->name);
	snprintf(leg->to, sizeof(leg->to), "%s", standby->name);
	event(dr, active, "failure: sync link cut (--fail-cmd)");
	if (run_cmd(dr, "--fail-cmd", dr->o->fail_cmd, active, standby, NULL) == -1) {
		fail(dr, "%s", dr->err);
		return -1;
	}
	wait_for(dr, roles_changed, &rw, dr->o->watch_s, DRILL_POLL_MS);
	if (dr->verdict == NULL)
		event(dr, NULL, "no role changed in %u s", dr->o->watch_s);
	event(dr, active, "restore (--restore-cmd)");
	if (run_cmd(dr, "--restore-cmd", dr->o->restore_cmd, active, standby, NULL) == -1) {
		fail(dr, "%s", dr->err);
		return -1;
	}
	if ((r = wait_for(dr, pair_in_sync, &rw, dr->o->timeout_s, DRILL_POLL_MS)) != 1) {
		fail(dr, "the pair is not in sync %u s after the heal", dr->o->timeout_s);
		return -1;
	}
	event(dr, NULL, "the pair is in sync again");
	snprintf(seen.name, sizeof(seen.name), "%s", active->name);
	if (node_flows(dr, active, &now) == -1 || node_flows(dr, &seen, &copy) == -1 ||
	    compare(dr, leg, &now, &copy, NULL) == -1) {
		fail(dr, "comparing the flows: %s", dr->err);
		flowset_free(&now);
		flowset_free(&copy);
		return -1;
	}
	flowset_free(&now);
	flowset_free(&copy);
	event(dr, standby, "holds %zu of the active node's %zu flows", leg->carried, leg->before);
	leg->traffic = run_traffic(dr, active, standby);
	if (leg->lost.n > 0)
		fail(dr, "%zu of %zu flows are missing on %s after the heal", leg->lost.n,
		    leg->before, standby->name);
	return 0;
}

static void
emit_json(struct emit *out, const char *key, const struct json_value *v)
{
	const struct json_value *k;
	double d;
	bool b;

	switch (json_type(v)) {
	case JSON_NULL:
		emit_null(out, key);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		json_bool(v, "", &b);
		emit_bool(out, key, b);
		break;
	case JSON_NUMBER:
		json_num(v, "", &d);
		if (d == (double)(int64_t)d)
			emit_i64(out, key, (int64_t)d);
		else
			emit_double(out, key, d, 3);
		break;
	case JSON_STRING:
		emit_str(out, key, json_str(v, ""));
		break;
	case JSON_ARRAY:
	case JSON_OBJECT:
		if (json_type(v) == JSON_ARRAY)
			emit_array_begin(out, key);
		else
			emit_object_begin(out, key);
		for (k = json_first(v); k != NULL; k = json_next(k))
			emit_json(out, json_type(v) == JSON_ARRAY ? NULL : json_key(k), k);
		if (json_type(v) == JSON_ARRAY)
			emit_array_end(out);
		else
			emit_object_end(out);
		break;
	}
}

static void
emit_leg(struct drill *dr, struct emit *out, const char *key, const struct leg *leg)
{
	size_t shown = dr->o->json ? leg->lost.n : DRILL_HUMAN_LOST;
	const struct json_value *t;

	if (!leg->done) {
		emit_null(out, key);
		return;
	}
	emit_object_begin(out, key);
	emit_str(out, "from", leg->from);
	emit_str(out, "to", leg->to);
	if (leg->takeover_ms >= 0)
		emit_double(out, "takeover_ms", leg->takeover_ms, 1);
	else
		emit_null(out, "takeover_ms");
	emit_u64(out, "flows_before", leg->before);
	emit_u64(out, "flows_carried", leg->carried);
	emit_u64(out, "flows_changed", leg->changed);
	emit_u64(out, "flows_lost", leg->lost.n);
	t = leg->takeover ? json_get(json_root(leg->takeover), "takeover") : NULL;
	if (t != NULL)
		emit_json(out, "inject", t);
	else
		emit_null(out, "inject");
	if (leg->traffic != NULL)
		emit_json(out, "traffic", json_root(leg->traffic));
	else
		emit_null(out, "traffic");
	emit_array_begin(out, "lost");
	for (size_t i = 0; i < leg->lost.n && i < shown; i++) {
		emit_object_begin(out, NULL);
		emit_str(out, "flow", leg->lost.v[i].key);
		emit_str(out, "provider", leg->lost.v[i].provider);
		emit_str(out, "nat", leg->lost.v[i].nat);
		emit_str(out, "why", leg->why[i]);
		emit_object_end(out);
	}
	emit_array_end(out);
	if (leg->lost.n > shown)
		emit_u64(out, "lost_not_shown", leg->lost.n - shown);
	emit_object_end(out);
}

static int
report(struct drill *dr, const struct dnode *active, const struct dnode *standby)
{
	struct emit *out = emit_create(dr->o->json ? EMIT_JSON : EMIT_HUMAN);
	const char *text;
	size_t len;
	int rc;

	if (out == NULL)
		return -1;
	emit_str(out, "mode", drill_mode_name(dr->o->mode));
	emit_bool(out, "passed", dr->verdict == NULL);
	emit_str(out, "verdict", dr->verdict ? dr->verdict : "every flow carried");
	emit_str(out, "active_before", active ? active->name : NULL);
	emit_str(out, "standby_before", standby ? standby->name : NULL);
	emit_u64(out, "flows_lost", dr->leg[0].lost.n + dr->leg[1].lost.n);
	emit_leg(dr, out, "failover", &dr->leg[0]);
	emit_leg(dr, out, "failback", &dr->leg[1]);
	emit_array_begin(out, "events");
	for (size_t i = 0; i < dr->nev; i++) {
		emit_object_begin(out, NULL);
		emit_double(out, "t_ms", dr->ev[i].t_ms, 1);
		emit_str(out, "node", dr->ev[i].node);
		emit_str(out, "event", dr->ev[i].text);
		emit_object_end(out);
	}
	emit_array_end(out);
	text = emit_finish(out, &len);
	rc = text != NULL && fwrite(text, 1, len, stdout) == len ? 0 : -1;
	emit_destroy(out);
	return rc;
}

static void
leg_free(struct leg *leg)
{
	free(leg->lost.v);
	free(leg->why);
	json_destroy(leg->takeover);
	json_destroy(leg->traffic);
}

static int
node_name(struct drill *dr, struct dnode *n)
{
	struct json *j = node_call(dr, n->socket ? n : n->via, CTL_STATUS, 0, NULL);
	const char *s;

	if (j == NULL)
		return -1;
	s = n->socket ? json_str(json_root(j), "node") : json_str(json_root(j), "sync.peer_name");
	snprintf(n->name, sizeof(n->name), "%s", s ? s : "peer");
	json_destroy(j);
	return 0;
}

/* Finds the master and checks that the drill may start. */
static int
preflight(struct drill *dr, struct dnode **active, struct dnode **standby)
{
	char ra[32], rb[32];
	bool sa, sb;

	if (node_name(dr, &dr->a) == -1 || node_name(dr, &dr->b) == -1 ||
	    node_role(dr, &dr->a, ra, sizeof(ra)) == -1 ||
	    node_role(dr, &dr->b, rb, sizeof(rb)) == -1)
		return -1;
	if (is_master(ra) && !is_master(rb)) {
		*active = &dr->a;
		*standby = &dr->b;
	} else if (is_master(rb) && !is_master(ra) && dr->b.socket != NULL) {
		*active = &dr->b;
		*standby = &dr->a;
	} else if (is_master(rb) && !is_master(ra)) {
		snprintf(dr->err, sizeof(dr->err), "this node (%s) is %s and its peer %s is "
		    "master: run the drill on the active node, or give --peer-socket",
		    dr->a.name, ra, dr->b.name);
		return -1;
	} else {
		snprintf(dr->err, sizeof(dr->err), "no single master: %s is %s, %s is %s",
		    dr->a.name, ra, dr->b.name, rb);
		return -1;
	}
	if (node_in_sync(dr, *active, &sa) == -1 || node_in_sync(dr, *standby, &sb) == -1)
		return -1;
	event(dr, *active, "master%s", sa ? ", in sync" : ", NOT in sync");
	event(dr, *standby, "%s%s", *standby == &dr->b ? rb : ra,
	    sb ? ", in sync" : ", NOT in sync");
	if ((!sa || !sb) && !dr->o->force) {
		snprintf(dr->err, sizeof(dr->err), "the pair is not in sync: a failover now "
		    "could lose flows (--force runs the drill anyway and reports them)");
		return -1;
	}
	return 0;
}

int
drill_run(const struct drill_opts *o)
{
	struct drill *dr = calloc(1, sizeof(*dr));
	struct dnode *active = NULL, *standby = NULL;
	struct flowset before = { 0 };
	int rc;

	if (dr == NULL) {
		fprintf(stderr, "uplinkctl: drill: no memory\n");
		return EXIT_FAILED;
	}
	dr->o = o;
	dr->t0_us = ev_clock_us();
	dr->a.socket = o->socket;
	dr->b.socket = o->peer_socket;
	if (o->peer_socket == NULL)
		dr->b.via = &dr->a;
	if (preflight(dr, &active, &standby) == -1) {
		fprintf(stderr, "uplinkctl: drill: %s\n", dr->err);
		rc = dr->unreachable ? EXIT_UNREACHABLE : EXIT_FAILED;
		free(dr);
		return rc;
	}
	if (o->mode == DRILL_SYNC_CUT) {
		sync_cut_run(dr, active, standby);
	} else if (node_flows(dr, active, &before) == -1) {
		fail(dr, "reading the flows of %s: %s", active->name, dr->err);
	} else {
		event(dr, active, "holds %zu own flows", before.n);
		if (leg_run(dr, &dr->leg[0], active, standby, act_fail, &before,
		    o->timeout_s, true) == 0 && o->failback) {
			flowset_free(&before);
			if (node_flows(dr, standby, &before) == -1)
				fail(dr, "reading the flows of %s: %s", standby->name, dr->err);
			else
				leg_run(dr, &dr->leg[1], standby, active, act_restore, &before,
				    2 * o->timeout_s, false);
		}
	}
	/* The step-up is owed even after a failure. */
	if (dr->stepped_down && step(dr, active, false) == -1)
		fail(dr, "ending the step-down of %s: %s", active->name, dr->err);
	flowset_free(&before);
	rc = report(dr, active, standby) == -1 ? EXIT_FAILED :
	    dr->verdict == NULL ? EXIT_OK : EXIT_FAILED;
	leg_free(&dr->leg[0]);
	leg_free(&dr->leg[1]);
	free(dr);
	return rc;
}
