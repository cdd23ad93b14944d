/*
 * test_session: two sessions (gw1 and gw2) in one process and one event
 * loop over 127.0.0.1, each with its own flow table, over the real TLS
 * channel.  Covers replication, deletes, coalescing, the pending bound,
 * bulk resync with mark and sweep, reconnects and conflicts.  Every wait
 * is bounded by a deadline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "channel.h"
#include "config.h"
#include "emit.h"
#include "ev.h"
#include "flows.h"
#include "frame.h"
#include "json.h"
#include "log.h"
#include "session.h"
#include "tap.h"

struct node {
	const char *name, *peer;
	uint16_t port;
	struct config *cfg;
	struct flows *flows;
	struct session *s;
};

static struct ev_loop *loop;
static char dir[64];
static struct node gw1 = { .name = "gw1", .peer = "gw2" };
static struct node gw2 = { .name = "gw2", .peer = "gw1" };

static int64_t
wait_tick(void *data)
{
	(void)data;
	ev_stop(loop);
	return EV_TIMER_STOP;
}

/* Runs the loop until cond() holds or max_ms passed; returns cond(). */
static int
run_until(int (*cond)(void), int max_ms)
{
	int64_t deadline = ev_clock_us() / 1000 + max_ms;

	while (!cond() && ev_clock_us() / 1000 < deadline) {
		struct ev_timer *t = ev_timer_add(loop, 5, wait_tick, NULL);

		ev_run(loop);
		ev_timer_del(loop, t);
	}
	return cond();
}

static int
never(void)
{
	return 0;
}

static struct config *
node_config(const struct node *n)
{
	char text[2048], err[512];
	struct config *cfg;
	int len = snprintf(text, sizeof(text),
	    "node: %s\n"
	    "lan: {interface: lan0, networks: [10.0.0.0/24]}\n"
	    "providers:\n"
	    "  - {name: isp-a, interface: wan0, gateway: 198.51.100.1, source: 198.51.100.10}\n"
	    "  - {name: isp-b, interface: wan1, gateway: 203.0.113.1, source: 203.0.113.10}\n"
	    "sync:\n"
	    "  listen: 127.0.0.1:%u\n"
	    "  peer: 127.0.0.1:%u\n"
	    "  tls: {ca: %s/ca.pem, cert: %s/%s.pem, key: %s/%s.key, peer_name: %s}\n",
	    n->name, n->port, n == &gw1 ? gw2.port : gw1.port, dir, dir, n->name, dir,
	    n->name, n->peer);

	if ((cfg = config_parse("test", text, (size_t)len, err, sizeof(err))) == NULL)
		fprintf(stderr, "%s\n", err);
	return cfg;
}

/* What the owner is told about peer flows; gw2 counts them. */
static uint64_t peer_upserts, peer_deletes;

static void
on_peer(enum session_peer_event ev, const struct flow *f, void *data)
{
	(void)f;
	if (data != &gw2)
		return;
	if (ev == SESSION_PEER_UPSERT)
		peer_upserts++;
	else
		peer_deletes++;
}

static int
node_start(struct node *n)
{
	config_free(n->cfg);
	if ((n->cfg = node_config(n)) == NULL)
		return -1;
	n->s = session_create(loop, n->cfg, n->flows, on_peer, n);
	return n->s == NULL ? -1 : 0;
}

static void
node_stop(struct node *n)
{
	session_destroy(n->s);
	n->s = NULL;
}

static struct flow
mkflow(uint32_t i, uint8_t provider)
{
	struct flow f;

	memset(&f, 0, sizeof(f));
	f.key.family = AF_INET;
	f.key.proto = IPPROTO_TCP;
	f.key.src[0] = 10;
	f.key.src[2] = (uint8_t)(i >> 16);
	f.key.src[3] = (uint8_t)(i >> 8);
	f.key.dst[0] = 192;
	f.key.dst[1] = 0;
	f.key.dst[2] = 2;
	f.key.dst[3] = (uint8_t)i;
	f.key.sport = (uint16_t)(1024 + (i % 60000));
	f.key.dport = 443;
	f.provider = provider;
	f.nat_src[0] = provider == 0 ? 198 : 203;
	f.nat_port = (uint16_t)(20000 + i % 40000);
	f.mark = provider == 0 ? 0x100 : 0x200;
	f.l4state = FLOW_L4_ESTABLISHED;
	f.origin = FLOW_OWN;
	f.created = f.updated = 1700000000;
	return f;
}

/* Adds flow i to gw's own table and tells its session. */
static void
own_add(struct node *n, uint32_t i, uint8_t provider)
{
	struct flow f = mkflow(i, provider);

	flows_upsert(n->flows, &f);
	session_own_upsert(n->s, flows_lookup(n->flows, &f.key), ev_clock_us());
}

static void
own_del(struct node *n, uint32_t i)
{
	struct flow f = mkflow(i, 0);

	if (flows_delete(n->flows, &f.key, NULL) == 0)
		session_own_delete(n->s, &f.key, ev_clock_us());
}

static struct session_stats
stats(const struct node *n)
{
	struct session_stats st;

	session_get_stats(n->s, &st);
	session_get_lag(n->s, &st);
	return st;
}

static int
both_in_sync(void)
{
	return gw1.s && gw2.s && session_in_sync(gw1.s) && session_in_sync(gw2.s);
}

/* gw2's peer flows are exactly gw1's own flows, field by field. */
static size_t mismatches;

static int
check_one(const struct flow *f, void *data)
{
	const struct flows *other = data;
	const struct flow *g;

	if (f->origin != FLOW_OWN)
		return 0;
	g = flows_lookup(other, &f->key);
	if (g == NULL || g->origin != FLOW_PEER || g->provider != f->provider ||
	    g->nat_port != f->nat_port || memcmp(g->nat_src, f->nat_src, 16) != 0 ||
	    g->mark != f->mark || g->l4state != f->l4state)
		mismatches++;
	return 0;
}

static bool
mirrors(const struct node *from, const struct node *to)
{
	mismatches = 0;
	flows_foreach(from->flows, check_one, to->flows);
	return mismatches == 0 &&
	    flows_count_origin(from->flows, FLOW_OWN) == flows_count_origin(to->flows, FLOW_PEER);
}

static size_t want_peer;

static int
gw2_has_peer(void)
{
	return flows_count_origin(gw2.flows, FLOW_PEER) == want_peer;
}

static int
gw2_mirrors(void)
{
	return both_in_sync() && mirrors(&gw1, &gw2) && stats(&gw1).pending == 0 &&
	    stats(&gw1).seq_acked == stats(&gw1).seq_sent;
}

static int
pick_ports(void)
{
	gw1.port = (uint16_t)(20000 + (unsigned)rand() % 20000);
	gw2.port = (uint16_t)(gw1.port + 1 + (unsigned)rand() % 1000);
	return 0;
}

/*
 * A hostile gw1: a bare channel with gw1's certificate in place of gw1's
 * session, sending frames built by hand.  What a buggy or compromised peer
 * can send must not hurt gw2 beyond what the protocol allows.
 */
static struct channel *evil;
static bool evil_up;

static void
evil_event(enum channel_event ev, void *data)
{
	(void)data;
	evil_up = ev == CHANNEL_EV_UP;
}

static void
evil_data(const uint8_t *buf, size_t len, void *data)
{
	(void)buf;
	(void)len;
	(void)data;
}

static int
evil_sends(enum frame_type t, const ProtobufCMessage *m, size_t cut)
{
	uint8_t *buf;
	size_t len;
	int r;

	if (frame_encode_alloc(t, m, &buf, &len) == -1)
		return -1;
	r = channel_send(evil, buf, cut != 0 && cut < len ? cut : len);
	channel_flush(evil);
	free(buf);
	return r;
}

static int
evil_send(enum frame_type t, const ProtobufCMessage *m)
{
	return evil_sends(t, m, 0);
}

static int
gw2_connected(void)
{
	return gw2.s && stats(&gw2).connected;
}

static int
gw2_disconnected(void)
{
	return gw2.s && !stats(&gw2).connected && !evil_up;
}

/* Dials gw2 as gw1 and says hello; true once gw2 accepted it. */
static bool
evil_start(void)
{
	static uint8_t boot[FRAME_BOOT_ID_LEN] = { 0xe1 };
	Uplinkd__Hello h = UPLINKD__HELLO__INIT;

	evil_up = false;
	if ((evil = channel_create(loop, gw1.cfg, evil_event, evil_data, NULL)) == NULL)
		return false;
	for (int i = 0; i < 1000 && !evil_up; i++)
		run_until(never, 5);
	if (!evil_up)
		return false;
	h.node = (char *)"gw1";
	h.has_major = 1;
	h.major = FRAME_MAJOR;
	h.has_minor = 1;
	h.has_capabilities = 1;
	h.capabilities = FRAME_CAPS;
	h.has_boot_id = 1;
	h.boot_id.data = boot;
	h.boot_id.len = sizeof(boot);
	return evil_send(FRAME_HELLO, &h.base) == 0 && run_until(gw2_connected, 5000);
}

static void
evil_stop(void)
{
	channel_destroy(evil);
	evil = NULL;
	evil_up = false;
	run_until(gw2_disconnected, 5000);
}

/* A number in gw2's `uplinkctl sync --json` (session_report); NAN when
 * absent or null. */
static double
gw2_report_num(const char *path)
{
	struct emit *e = emit_create(EMIT_JSON);
	const char *text;
	struct json *j;
	char err[128];
	double v = NAN;
	size_t len;

	session_report(gw2.s, gw2.cfg, e, true);
	if ((text = emit_finish(e, &len)) != NULL &&
	    (j = json_parse(text, len, err, sizeof(err))) != NULL) {
		if (!json_num(json_root(j), path, &v))
			v = NAN;
		json_destroy(j);
	}
	emit_destroy(e);
	return v;
}

/* A counter there (exact below 2^53); UINT64_MAX when absent. */
static uint64_t
gw2_report_u64(const char *path)
{
	double v = gw2_report_num(path);

	return isnan(v) || v < 0 ? UINT64_MAX : (uint64_t)v;
}

/* A counter of gw2's `uplinkctl sync` rejections. */
static uint64_t
gw2_rejected(const char *name)
{
	char path[64];

	snprintf(path, sizeof(path), "rejected.%s", name);
	return gw2_report_u64(path);
}

static int
gw2_missing_settled(void)
{
	struct session_stats st = stats(&gw2);

	return st.bulks_received >= 1 && !session_receiving_bulk(gw2.s) && st.rx_missing > 0 &&
	    stats(&gw1).tx_in_sync;
}

/*
 * A receiver whose flow table is too small for the peer's flows: it says
 * it is not in sync and how many are missing, and once the peer's flows
 * fit again it asks for them and converges.  gw2 restarts with a table
 * 100 flows short of gw1's own flows and ends with a normal one.
 */
static void
test_receiver_full(void)
{
	size_t have = flows_count_origin(gw1.flows, FLOW_OWN);
	uint64_t full;

	node_stop(&gw2);
	flows_destroy(gw2.flows);
	gw2.flows = flows_create(have - 100);
	tap_ok(gw2.flows && node_start(&gw2) == 0, "gw2 restarted with room for %zu flows",
	    have - 100);
	tap_ok(run_until(gw2_missing_settled, 20000) && stats(&gw2).rx_missing == 100 &&
	    !session_in_sync(gw2.s) && !stats(&gw2).rx_in_sync && stats(&gw1).tx_in_sync,
	    "gw1's bulk of %zu flows into it: some refused, gw2 not in sync, gw1 is", have);
	tap_ok(gw2_report_u64("missing") == 100 && gw2_report_u64("cache_full") == 100,
	    "`sync` shows missing 100, cache_full 100");
	full = stats(&gw2).cache_full;
	for (uint32_t i = 3000; i < 3300; i++)
		own_del(&gw1, i);
	tap_ok(run_until(gw2_mirrors, 20000) && stats(&gw2).rx_missing == 0,
	    "gw1 deleted 300 flows: gw2 asked for the bulk again and mirrors gw1 (%zu peer flows)",
	    flows_count_origin(gw2.flows, FLOW_PEER));
	tap_ok(stats(&gw2).cache_full == full, "the refill refused nothing (%llu)",
	    (unsigned long long)(stats(&gw2).cache_full - full));
	node_stop(&gw2);
	flows_destroy(gw2.flows);
	gw2.flows = flows_create(0);
	tap_ok(gw2.flows && node_start(&gw2) == 0 && run_until(gw2_mirrors, 20000),
	    "gw2 back with a full-size table, in sync");
}

/*
 * A peer that says hello and heartbeats and reads nothing (a daemon that
 * cannot keep up, at the extreme), run in a child process with blocking
 * calls.  Killed by the parent, or by the alarm.
 */
static void __attribute__((noreturn))
stalled_peer(uint16_t port)
{
	static uint8_t boot[FRAME_BOOT_ID_LEN] = { 0x5a };
	Uplinkd__Hello h = UPLINKD__HELLO__INIT;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), small = 64 << 10;
	char ca[256], cert[256], key[256];
	SSL_CTX *ctx;
	uint8_t *buf;
	size_t len;
	SSL *ssl;

	alarm(120);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* Little kernel buffering: gw2's own queue is what fills. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	if (fd == -1 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		_exit(1);
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/gw1.pem", dir);
	snprintf(key, sizeof(key), "%s/gw1.key", dir);
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
	    SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		_exit(1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
		_exit(1);
	h.node = (char *)"gw1";
	h.has_major = 1;
	h.major = FRAME_MAJOR;
	h.has_minor = 1;
	h.has_capabilities = 1;
	h.capabilities = FRAME_CAPS;
	h.has_boot_id = 1;
	h.boot_id.data = boot;
	h.boot_id.len = sizeof(boot);
	if (frame_encode_alloc(FRAME_HELLO, &h.base, &buf, &len) == -1 ||
	    SSL_write(ssl, buf, (int)len) != (int)len)
		_exit(1);
	free(buf);
	/* Alive all the same: gw2's dead-peer timer must not be what ends
	 * the connection. */
	for (;;) {
		Uplinkd__Heartbeat hb = UPLINKD__HEARTBEAT__INIT;

		usleep(200 * 1000);
		if (frame_encode_alloc(FRAME_HEARTBEAT, &hb.base, &buf, &len) == -1 ||
		    SSL_write(ssl, buf, (int)len) != (int)len)
			_exit(0);	/* gw2 closed the connection */
		free(buf);
	}
}

/*
 * The send queue fills (CHANNEL_MAX_QUEUED unread): gw2 drops the
 * connection, so that both sides say at once that they are out of sync,
 * rather than queue a resend behind 64 MiB that the peer may never read.
 */
static void
test_stalled_peer(void)
{
	uint64_t before = stats(&gw2).overflows, sent;
	int64_t deadline;
	char *err = NULL;
	int status = -1;
	uint32_t i = 0;
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) == 0)
		stalled_peer(gw2.port);
	tap_ok(pid > 0 && run_until(gw2_connected, 10000),
	    "a peer that says hello and then reads nothing is connected");
	sent = stats(&gw2).upserts_sent;
	deadline = ev_clock_us() / 1000 + 60000;
	while (stats(&gw2).connected && ev_clock_us() / 1000 < deadline) {
		for (int k = 0; k < 5000; k++, i++) {
			struct flow f = mkflow(2000000 + i % 50000, 0);

			session_own_upsert(gw2.s, &f, ev_clock_us());
		}
		run_until(never, 1);
	}
	{
		struct emit *e = emit_create(EMIT_JSON);
		const char *text;
		struct json *j;
		char jerr[128];
		size_t len;

		session_report(gw2.s, gw2.cfg, e, true);
		if ((text = emit_finish(e, &len)) != NULL &&
		    (j = json_parse(text, len, jerr, sizeof(jerr))) != NULL) {
			const char *v = json_str(json_root(j), "last_error");

			err = v ? strdup(v) : NULL;
			json_destroy(j);
		}
		emit_destroy(e);
	}
	tap_ok(!stats(&gw2).connected && stats(&gw2).overflows == before + 1 &&
	    err && strstr(err, "has not read"),
	    "after %u changes (%llu sent) its full queue dropped the connection, counted: %s", i,
	    (unsigned long long)(stats(&gw2).upserts_sent - sent), err ? err : "(no error)");
	free(err);
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	tap_ok(stats(&gw2).pending == 0, "nothing left pending for the gone peer");
}

static void
test_hostile_peer(void)
{
	uint64_t before;

	/* The stream ends inside a frame: counted as truncated. */
	tap_ok(evil_start(), "a bare channel as gw1 is accepted by gw2's session");
	before = gw2_rejected("truncated");
	{
		Uplinkd__Heartbeat h = UPLINKD__HEARTBEAT__INIT;

		h.has_unix_ms = 1;
		h.unix_ms = 1700000000000ull;
		evil_sends(FRAME_HEARTBEAT, &h.base, FRAME_HDR_LEN + 3);
	}
	run_until(never, 100);
	evil_stop();
	tap_ok(gw2_rejected("truncated") == before + 1,
	    "a connection lost inside a frame counts as truncated (%llu -> %llu)",
	    (unsigned long long)before, (unsigned long long)gw2_rejected("truncated"));

	/* One provider listed five times is not five usable providers. */
	tap_ok(evil_start(), "gw1 again");
	{
		Uplinkd__ProviderState ps = UPLINKD__PROVIDER_STATE__INIT, *pp[5];
		Uplinkd__Providers p = UPLINKD__PROVIDERS__INIT;
		struct session_stats st;

		ps.name = (char *)"isp-a";
		ps.has_state = 1;
		ps.state = UPLINKD__PROVIDER_HEALTH__PROVIDER_UP;
		for (size_t i = 0; i < 5; i++)
			pp[i] = &ps;
		p.n_providers = 5;
		p.providers = pp;
		evil_send(FRAME_PROVIDERS, &p.base);
		run_until(never, 100);
		st = stats(&gw2);
		tap_ok(st.peer_up <= 1,
		    "a provider named twice counts once at most (peer_up %u, known %d)",
		    st.peer_up, st.peer_providers_known);
	}
	/* A BulkEnd without its BulkBegin. */
	{
		Uplinkd__BulkEnd e = UPLINKD__BULK_END__INIT;
		uint64_t oo = gw2_rejected("out_of_order"), bf = gw2_rejected("bad_frame");

		e.has_epoch = 1;
		e.epoch = 77;
		e.has_count = 1;
		evil_send(FRAME_BULK_END, &e.base);
		run_until(never, 100);
		tap_ok(gw2_rejected("out_of_order") == oo + 1 && gw2_rejected("bad_frame") == bf + 1 &&
		    gw2_connected() && !session_receiving_bulk(gw2.s),
		    "a BulkEnd without its BulkBegin: ignored, counted as out_of_order (%llu -> %llu)",
		    (unsigned long long)oo, (unsigned long long)gw2_rejected("out_of_order"));
	}
	evil_stop();
}

int
main(void)
{
	const char *top = getenv("top_srcdir");
	char cmd[512];
	struct session_stats s1, s2;
	uint64_t before;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	log_init("test_session", 1, 0);
	srand((unsigned)(getpid() ^ time(NULL)));
	snprintf(dir, sizeof(dir), "/tmp/uplinkd-sess-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(cmd, sizeof(cmd), "'%s/deploy/mkcerts.sh' '%s' gw1 gw2 >/dev/null 2>&1",
	    top ? top : ".", dir);
	rc = system(cmd);
	tap_ok(rc == 0, "certificates made by deploy/mkcerts.sh (%d)", rc);
	loop = ev_create();
	gw1.flows = flows_create(0);
	gw2.flows = flows_create(0);

	/* gw1 starts with flows; gw2 holds stale peer flows from an earlier
	 * life that the first bulk must sweep. */
	for (uint32_t i = 0; i < 20000; i++) {
		struct flow f = mkflow(i, (uint8_t)(i % 2));

		flows_upsert(gw1.flows, &f);
	}
	for (uint32_t i = 100000; i < 100500; i++) {
		struct flow f = mkflow(i, 1);

		f.origin = FLOW_PEER;
		flows_upsert(gw2.flows, &f);
	}
	pick_ports();
	rc = node_start(&gw2) == 0 && node_start(&gw1) == 0;
	tap_ok(rc, "two sessions on 127.0.0.1:%u and :%u", gw1.port, gw2.port);
	if (!rc)
		return tap_done();
	tap_ok(!session_in_sync(gw1.s), "not in sync before the peer connected");
	tap_ok(run_until(both_in_sync, 15000), "both sides in sync after the first bulk");
	tap_ok(mirrors(&gw1, &gw2), "gw2 caches exactly gw1's 20000 flows (%zu mismatches, %zu peer flows)",
	    mismatches, flows_count_origin(gw2.flows, FLOW_PEER));
	s2 = stats(&gw2);
	tap_ok(s2.bulk_swept == 500, "the bulk swept gw2's 500 stale peer flows (%llu)",
	    (unsigned long long)s2.bulk_swept);
	tap_ok(peer_upserts == 20000 && peer_deletes == 500,
	    "the owner was told of 20000 upserts and 500 sweeps (%llu, %llu)",
	    (unsigned long long)peer_upserts, (unsigned long long)peer_deletes);
	tap_ok(flows_count_origin(gw1.flows, FLOW_PEER) == 0, "gw1 caches none (gw2 owns none)");

	/* Streaming: new flows and deletes. */
	for (uint32_t i = 20000; i < 21000; i++)
		own_add(&gw1, i, 0);
	for (uint32_t i = 0; i < 500; i++)
		own_del(&gw1, i);
	rc = run_until(gw2_mirrors, 10000);
	tap_ok(rc, "1000 new and 500 deleted flows replicated (%zu peer flows)",
	    flows_count_origin(gw2.flows, FLOW_PEER));
	s1 = stats(&gw1);
	tap_ok(s1.lag_samples > 0 && s1.lag_p99_ms >= 0 && s1.lag_p99_ms < 5000,
	    "lag measured: p50 %.3f ms, p99 %.3f ms over %llu batches", s1.lag_p50_ms, s1.lag_p99_ms,
	    (unsigned long long)s1.lag_samples);

	{
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);

		session_metrics(gw2.s, f);
		fclose(f);
		tap_ok(text && strstr(text, "\nuplinkd_sync_connected 1\n") &&
		    strstr(text, "\nuplinkd_sync_in_sync 1\n") &&
		    strstr(text, "uplinkd_sync_changes_total{direction=\"received\",kind=\"upsert\"} 21000\n") &&
		    strstr(text, "uplinkd_sync_rejected_total{reason=\"auth\"} 0\n") &&
		    strstr(text, "uplinkd_sync_rejected_total{reason=\"accept_refused\"} 0\n") &&
		    strstr(text, "\nuplinkd_sync_missing 0\n"),
		    "metrics: connected, in sync, 21000 upserts received, rejections by reason");
		tap_ok(text && strstr(text, "uplinkd_sync_cert_expiry_timestamp_seconds{cert=\"own\"} ") &&
		    strstr(text, "uplinkd_sync_cert_expiry_timestamp_seconds{cert=\"ca\"} ") &&
		    strstr(text, "uplinkd_sync_cert_expiry_timestamp_seconds{cert=\"peer\"} "),
		    "metrics: when our, the CA's and the peer's certificates expire");
		free(text);
	}
	{
		double own = gw2_report_num("cert_days_left"), ca = gw2_report_num("ca_days_left"),
		    peer = gw2_report_num("peer_cert_days_left");

		tap_ok(own > 824 && own <= 825 && ca > 3649 && ca <= 3650 && peer > 824 && peer <= 825,
		    "sync report: days left of our certificate %.1f, the CA %.1f, the peer's %.1f",
		    own, ca, peer);
	}

	/* Coalescing: three changes to one flow, then a create+delete, in one
	 * loop iteration: one upsert and one delete go out. */
	before = stats(&gw1).upserts_sent + stats(&gw1).deletes_sent;
	own_add(&gw1, 30000, 0);
	own_add(&gw1, 30000, 1);
	own_add(&gw1, 30000, 0);
	own_add(&gw1, 30001, 0);
	own_del(&gw1, 30001);
	tap_ok(stats(&gw1).pending == 2, "five changes of two flows pend as two (%llu)",
	    (unsigned long long)stats(&gw1).pending);
	run_until(gw2_mirrors, 10000);
	s1 = stats(&gw1);
	tap_ok(s1.upserts_sent + s1.deletes_sent - before == 2, "... and go out as two (%llu)",
	    (unsigned long long)(s1.upserts_sent + s1.deletes_sent - before));
	tap_ok(gw2_mirrors(), "gw2 still mirrors gw1");

	/* Delayed Acks: a Batch per loop iteration for 20 iterations, a few
	 * milliseconds apart, gets a few Acks, not one each, and the lag
	 * figure leaves out the time the Acks were held. */
	{
		struct session_stats a0 = stats(&gw2), a1;
		uint64_t b0 = stats(&gw1).batches_sent;

		for (uint32_t i = 0; i < 20; i++) {
			own_add(&gw1, 45000 + i, 0);
			run_until(never, 2);
		}
		run_until(gw2_mirrors, 10000);
		a1 = stats(&gw2);
		s1 = stats(&gw1);
		tap_ok(s1.batches_sent - b0 == 20 && a1.batches_received - a0.batches_received == 20 &&
		    a1.acks_sent - a0.acks_sent < 10,
		    "20 batches, %llu acks", (unsigned long long)(a1.acks_sent - a0.acks_sent));
		tap_ok(s1.lag_p50_ms >= 0 && s1.lag_p50_ms < 20,
		    "lag without the acks' hold: p50 %.3f ms", s1.lag_p50_ms);
	}

	/* A flow that is gw2's own: a master keeps its copy, anyone else
	 * yields to the peer's. */
	{
		struct flow f = mkflow(40000, 1);
		const struct flow *g;

		flows_upsert(gw2.flows, &f);
		session_set_master(gw2.s, true);
		before = stats(&gw2).conflicts;
		own_add(&gw1, 40000, 0);
		run_until(never, 300);
		g = flows_lookup(gw2.flows, &f.key);
		tap_ok(g && g->origin == FLOW_OWN && g->provider == 1 &&
		    stats(&gw2).conflicts == before + 1, "a master's own flow kept, conflict counted");
		session_set_master(gw2.s, false);
		before = stats(&gw2).yielded;
		own_add(&gw1, 40000, 0);
		run_until(never, 300);
		g = flows_lookup(gw2.flows, &f.key);
		tap_ok(g && g->origin == FLOW_PEER && g->provider == 0 &&
		    stats(&gw2).yielded == before + 1,
		    "neither master: gw2 yields its copy to gw1's (the lower name)");
		own_del(&gw1, 40000);
		run_until(never, 200);
	}
	{
		struct flow f = mkflow(40001, 0);
		const struct flow *g;

		flows_upsert(gw1.flows, &f);
		before = stats(&gw1).conflicts;
		own_add(&gw2, 40001, 1);
		run_until(never, 300);
		g = flows_lookup(gw1.flows, &f.key);
		tap_ok(g && g->origin == FLOW_OWN && stats(&gw1).conflicts == before + 1,
		    "neither master: gw1 keeps its copy against gw2's");
		session_set_master(gw2.s, true);
		run_until(never, 300);
		before = stats(&gw1).yielded;
		own_add(&gw2, 40001, 1);
		run_until(never, 300);
		g = flows_lookup(gw1.flows, &f.key);
		tap_ok(g && g->origin == FLOW_PEER && g->provider == 1 &&
		    stats(&gw1).yielded == before + 1, "gw2 master: gw1 yields to the master's copy");
		session_set_master(gw2.s, false);
		own_del(&gw2, 40001);
		run_until(never, 300);
	}

	/* Both directions: gw2's own flows reach gw1. */
	for (uint32_t i = 50000; i < 50100; i++)
		own_add(&gw2, i, 1);
	run_until(never, 300);
	tap_ok(flows_count_origin(gw1.flows, FLOW_PEER) == 100 && mirrors(&gw2, &gw1),
	    "gw2's 100 flows reach gw1");

	/* The pending bound: more changes than it holds, in one iteration,
	 * put the peer out of sync and a bulk repairs it. */
	before = stats(&gw1).overflows;
	for (uint32_t i = 0; i <= SESSION_MAX_PENDING; i++) {
		struct flow f = mkflow(1000000 + i, 0);

		f.key.src[1] = (uint8_t)(i >> 24);
		f.key.dport = (uint16_t)(i & 0xffff);
		f.key.sport = (uint16_t)(i >> 16);
		session_own_upsert(gw1.s, &f, ev_clock_us());
	}
	s1 = stats(&gw1);
	tap_ok(s1.overflows == before + 1 && !s1.tx_in_sync && s1.pending == 0,
	    "%u changes overflow the pending set: counted, out of sync, backlog dropped",
	    SESSION_MAX_PENDING + 1);
	tap_ok(run_until(gw2_mirrors, 15000), "a bulk resend puts gw2 back in sync with gw1's table");

	/* The receiver dies and comes back: it relearns everything. */
	node_stop(&gw2);
	flows_sweep(gw2.flows, FLOW_PEER, NULL, NULL);
	for (uint32_t i = 60000; i < 61000; i++)
		own_add(&gw1, i, 1);
	for (uint32_t i = 500; i < 1500; i++)
		own_del(&gw1, i);
	run_until(never, 200);
	tap_ok(!session_in_sync(gw1.s), "gw1 is out of sync while gw2 is gone");
	tap_ok(node_start(&gw2) == 0, "gw2 restarted");
	rc = run_until(gw2_mirrors, 20000);
	tap_ok(rc, "after gw2's restart the bulk converges to gw1's exact set (%zu)",
	    flows_count_origin(gw2.flows, FLOW_PEER));

	/* The sender restarts while its peer keeps its cache: the bulk
	 * sweeps what the sender no longer has. */
	node_stop(&gw1);
	for (uint32_t i = 1500; i < 3000; i++) {
		struct flow f = mkflow(i, 0);

		flows_delete(gw1.flows, &f.key, NULL);
	}
	tap_ok(node_start(&gw1) == 0, "gw1 restarted with 1500 flows fewer");
	rc = run_until(gw2_mirrors, 20000);
	tap_ok(rc, "gw2 swept the flows gw1 lost (%zu peer flows)",
	    flows_count_origin(gw2.flows, FLOW_PEER));

	/* Operator's resync. */
	before = stats(&gw1).bulks_sent;
	tap_ok(session_request_resync(gw1.s) == 0, "resync requested");
	run_until(never, 100);
	tap_ok(run_until(gw2_mirrors, 15000) && stats(&gw1).bulks_sent == before + 1 &&
	    stats(&gw2).bulks_received >= 2, "resync ran in both directions");

	test_receiver_full();

	/* Peer flows stay when the peer goes (for a takeover), and go when it
	 * has been gone for SESSION_PEER_EXPIRY_S (3 s in this build; 600 in
	 * the daemon's); a reconnect in between stops the clock. */
	want_peer = flows_count_origin(gw2.flows, FLOW_PEER);
	node_stop(&gw1);
	run_until(never, 300);
	tap_ok(gw2_has_peer() && !session_in_sync(gw2.s),
	    "a lost peer's flows are kept (for takeover), not in sync");
	errno = 0;
	tap_ok(session_request_resync(gw2.s) == -1 && errno == ENOTCONN,
	    "resync without a peer: ENOTCONN");
	run_until(never, SESSION_PEER_EXPIRY_S * 1000 / 2);
	tap_ok(node_start(&gw1) == 0 && run_until(gw2_mirrors, 15000),
	    "gw1 back within the expiry: in sync again");
	run_until(never, SESSION_PEER_EXPIRY_S * 1000);
	tap_ok(gw2_has_peer() && stats(&gw2).expired == 0,
	    "... and its flows outlive the expiry that the reconnect cancelled (%zu)",
	    flows_count_origin(gw2.flows, FLOW_PEER));
	{
		uint64_t deletes = peer_deletes;
		int64_t t0 = ev_clock_us(), took;

		node_stop(&gw1);
		run_until(never, SESSION_PEER_EXPIRY_S * 1000 - 500);
		tap_ok(gw2_has_peer(), "gw1 gone again: its %zu flows kept until the expiry", want_peer);
		want_peer = 0;
		rc = run_until(gw2_has_peer, 5000);
		took = (ev_clock_us() - t0) / 1000;
		tap_ok(rc && took >= SESSION_PEER_EXPIRY_S * 1000 && stats(&gw2).expired ==
		    flows_count_origin(gw1.flows, FLOW_OWN) &&
		    peer_deletes - deletes == flows_count_origin(gw1.flows, FLOW_OWN),
		    "after %lld ms gw2 dropped all %llu of them and told the owner of each",
		    (long long)took, (unsigned long long)stats(&gw2).expired);
		tap_ok(gw2_report_u64("expired") == stats(&gw2).expired, "`sync` shows expired %llu",
		    (unsigned long long)gw2_report_u64("expired"));
	}
	/* A reload that recreates gw2's session (its sync section changed)
	 * while the peer is away: the new session's clock runs too. */
	{
		int64_t t0;

		want_peer = flows_count_origin(gw1.flows, FLOW_OWN);
		tap_ok(node_start(&gw1) == 0 && run_until(gw2_mirrors, 15000) && gw2_has_peer(),
		    "gw1 back: gw2 holds its %zu flows again", want_peer);
		node_stop(&gw1);
		run_until(never, 300);
		node_stop(&gw2);
		tap_ok(node_start(&gw2) == 0 && gw2_has_peer(),
		    "gw2's session recreated (a reload) with the peer away: its flows kept");
		t0 = ev_clock_us();
		want_peer = 0;
		rc = run_until(gw2_has_peer, SESSION_PEER_EXPIRY_S * 1000 + 5000);
		tap_ok(rc && (ev_clock_us() - t0) / 1000 >= SESSION_PEER_EXPIRY_S * 1000 - 500,
		    "... and dropped at the new session's expiry (after %lld ms)",
		    (long long)((ev_clock_us() - t0) / 1000));
	}

	test_hostile_peer();
	test_stalled_peer();

	node_stop(&gw1);
	node_stop(&gw2);
	config_free(gw1.cfg);
	config_free(gw2.cfg);
	flows_destroy(gw1.flows);
	flows_destroy(gw2.flows);
	ev_destroy(loop);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", dir);
	return tap_done();
}
