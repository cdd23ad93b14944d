/*
 * test_channel: two channels (gw1 dials, gw2 is dialed) in one process and
 * one event loop over 127.0.0.1, plus hostile clients run in forked
 * children (blocking code is simplest there and cannot stall the loop).
 * Certificates come from deploy/mkcerts.sh via tests/unit/channel_certs.sh.
 * Every wait is bounded by a deadline timer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "channel.h"
#include "config.h"
#include "ev.h"
#include "log.h"
#include "tap.h"

#define CHUNK (64u << 10)
#define BULK (10u << 20)

struct side {
	const char *name;
	struct config cfg;
	char ca[256], cert[256], key[256];
	struct channel *ch;
	int ups, downs;
	uint64_t rx, tx;	/* pattern offsets since the last UP */
	uint64_t rx_total;
	uint64_t rx_bad;
};

static struct ev_loop *loop;
static char dir[64];
static bool use_v6;	/* endpoints on ::1 instead of 127.0.0.1 */

static uint8_t
pattern(uint64_t i)
{
	return (uint8_t)(i ^ (i >> 8) * 31 ^ (i >> 16) * 7);
}

static void
on_event(enum channel_event ev, void *data)
{
	struct side *s = data;

	if (ev == CHANNEL_EV_UP) {
		s->ups++;
		s->rx = s->tx = 0;
	} else
		s->downs++;
}

static void
on_data(const uint8_t *buf, size_t len, void *data)
{
	struct side *s = data;

	for (size_t i = 0; i < len; i++)
		if (buf[i] != pattern(s->rx + i))
			s->rx_bad++;
	s->rx += len;
	s->rx_total += len;
}

static int
send_pattern(struct side *s, size_t n)
{
	static uint8_t buf[CHUNK];

	while (n > 0) {
		size_t k = n < CHUNK ? n : CHUNK;

		for (size_t i = 0; i < k; i++)
			buf[i] = pattern(s->tx + i);
		if (channel_send(s->ch, buf, k) == -1)
			return -1;
		s->tx += k;
		n -= k;
	}
	return 0;
}

/* Runs the loop until cond(arg) holds or max_ms passed; returns cond. */
struct waiter {
	int (*cond)(const void *);
	const void *arg;
	int64_t deadline;
};

static int64_t
wait_tick(void *data)
{
	struct waiter *w = data;

	if (w->cond(w->arg) || ev_clock_us() / 1000 >= w->deadline) {
		ev_stop(loop);
		return EV_TIMER_STOP;
	}
	return 5;
}

static int
run_until(int (*cond)(const void *), const void *arg, int max_ms)
{
	struct waiter w = { cond, arg, ev_clock_us() / 1000 + max_ms };
	struct ev_timer *t = ev_timer_add(loop, 0, wait_tick, &w);

	if (t == NULL)
		abort();
	ev_run(loop);
	ev_timer_del(loop, t);
	return cond(arg);
}

static int
never(const void *arg)
{
	(void)arg;
	return 0;
}

static void
run_for(int ms)
{
	run_until(never, NULL, ms);
}

/* The log (stderr) into a file while a check counts its lines. */
static char cap_path[96];
static int cap_saved = -1;

static void
cap_begin(void)
{
	int fd;

	snprintf(cap_path, sizeof(cap_path), "%s/log", dir);
	fflush(stderr);
	if ((fd = open(cap_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1 ||
	    (cap_saved = dup(2)) == -1 || dup2(fd, 2) == -1)
		abort();
	close(fd);
}

/* Ends the capture; with show, the captured lines go into the TAP stream. */
static void
cap_end(bool show)
{
	char line[1024];
	FILE *f;

	fflush(stderr);
	dup2(cap_saved, 2);
	close(cap_saved);
	cap_saved = -1;
	if (show && (f = fopen(cap_path, "r")) != NULL) {
		while (fgets(line, sizeof(line), f))
			tap_diag("log: %.*s", (int)strcspn(line, "\n"), line);
		fclose(f);
	}
}

static int
cap_count(const char *needle)
{
	char line[1024];
	FILE *f = fopen(cap_path, "r");
	int n = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle) != NULL)
			n++;
	fclose(f);
	return n;
}

struct cap_goal {
	const char *needle;
	int want;
};

static int
cap_reached(const void *arg)
{
	const struct cap_goal *g = arg;

	return cap_count(g->needle) >= g->want;
}

static struct side gw1 = { .name = "gw1" }, gw2 = { .name = "gw2" };

static int
both_up(const void *arg)
{
	(void)arg;
	return gw1.ch && gw2.ch && gw1.ups - gw1.downs == 1 && gw2.ups - gw2.downs == 1;
}

struct rx_goal {
	const struct side *s;
	uint64_t total;
};

static int
rx_reached(const void *arg)
{
	const struct rx_goal *g = arg;

	return g->s->rx_total >= g->total;
}

static int
bulk_done(const void *arg)
{
	(void)arg;
	return gw1.rx >= BULK && gw2.rx >= BULK;
}

struct counter_goal {
	const struct side *s;
	uint64_t auth, refused;
};

static int
auth_bumped(const void *arg)
{
	const struct counter_goal *g = arg;
	struct channel_stats st;

	channel_get_stats(g->s->ch, &st);
	return st.auth_failures > g->auth && st.accept_refused >= g->refused;
}

static void
side_config(struct side *s, const char *peer_name, const char *certdir, const char *node_cert,
    uint16_t listen, uint16_t peer)
{
	memset(&s->cfg, 0, sizeof(s->cfg));
	snprintf(s->cfg.node, sizeof(s->cfg.node), "%s", s->name);
	s->cfg.has_sync = true;
	if (use_v6) {
		s->cfg.sync.listen.addr.family = AF_INET6;
		s->cfg.sync.listen.addr.a[15] = 1;
	} else {
		s->cfg.sync.listen.addr.family = AF_INET;
		s->cfg.sync.listen.addr.a[0] = 127;
		s->cfg.sync.listen.addr.a[3] = 1;
	}
	s->cfg.sync.listen.port = listen;
	s->cfg.sync.peer = s->cfg.sync.listen;
	s->cfg.sync.peer.port = peer;
	snprintf(s->ca, sizeof(s->ca), "%s/ca.pem", dir);
	snprintf(s->cert, sizeof(s->cert), "%s/%s.pem", certdir, node_cert);
	snprintf(s->key, sizeof(s->key), "%s/%s.key", certdir, node_cert);
	s->cfg.sync.tls.ca = s->ca;
	s->cfg.sync.tls.cert = s->cert;
	s->cfg.sync.tls.key = s->key;
	snprintf(s->cfg.sync.tls.peer_name, sizeof(s->cfg.sync.tls.peer_name), "%s", peer_name);
}

/* Creates s->ch listening on a free high port (EADDRINUSE: try another). */
static int
side_create(struct side *s, const char *peer_name, const char *certdir, const char *node_cert,
    uint16_t *port, uint16_t peer)
{
	for (int tries = 0; tries < 50; tries++) {
		if (*port == 0)
			*port = (uint16_t)(20000 + (unsigned)rand() % 40000);
		side_config(s, peer_name, certdir, node_cert, *port, peer);
		s->ups = s->downs = 0;
		s->rx = s->tx = 0;
		if ((s->ch = channel_create(loop, &s->cfg, on_event, on_data, s)) != NULL)
			return 0;
		if (errno != EADDRINUSE)
			return -1;
		*port = 0;
	}
	return -1;
}

/* From 127.0.0.1, the peer's configured address, or from `from` (another
 * loopback address) when it is not 0. */
static int
tcp_connect_from(uint16_t port, uint32_t from)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval tv = { 5, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return -1;
	if (from != 0) {
		struct sockaddr_in src = { .sin_family = AF_INET };

		src.sin_addr.s_addr = htonl(from);
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
			close(fd);
			return -1;
		}
	}
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
tcp_connect(uint16_t port)
{
	return tcp_connect_from(port, 0);
}

enum bad_kind { BAD_TLS, BAD_TLS_NOCERT, BAD_PLAIN, BAD_RANDOM };

/*
 * The child: a blocking client.  Exit 0 when it got nothing from the
 * server but a refusal, 3 if the server ever sent it application bytes
 * (the greeting means it was accepted), 1 on a setup failure.
 */
static void __attribute__((noreturn))
bad_client(enum bad_kind kind, uint16_t port, const char *cert, const char *key)
{
	char buf[256];
	int fd;

	alarm(15);
	if ((fd = tcp_connect(port)) == -1)
		_exit(1);
	if (kind == BAD_PLAIN || kind == BAD_RANDOM) {
		uint8_t junk[1024];
		ssize_t n;

		if (kind == BAD_PLAIN) {
			memcpy(junk, "hello\n", 6);
			n = 6;
		} else {
			srand(7);
			for (size_t i = 0; i < sizeof(junk); i++)
				junk[i] = (uint8_t)rand();
			n = sizeof(junk);
		}
		if (write(fd, junk, (size_t)n) != n)
			_exit(0);	/* already refused */
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			;
		_exit(0);
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	char ca[256];

	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		_exit(1);
	if (kind == BAD_TLS && (SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1))
		_exit(1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1)
		_exit(1);
	/* In TLS 1.3 the client's handshake completes before the server
	 * has judged its certificate: then try to push bytes through. */
	if (SSL_connect(ssl) == 1) {
		SSL_write(ssl, "evil bytes that must never arrive", 33);
		for (int i = 0; i < 100; i++) {
			int n = SSL_read(ssl, buf, sizeof(buf));

			if (n > 0)
				_exit(3);
			if (SSL_get_error(ssl, n) != SSL_ERROR_WANT_READ)
				break;
		}
	}
	_exit(0);
}

static const char *
bad_case(enum bad_kind kind, const char *what, const char *cert, const char *key,
    uint16_t port, const char *expect)
{
	static char err[160];
	struct counter_goal g = { &gw2, 0, 0 };
	struct channel_stats st;
	uint64_t rx = gw2.rx_total;
	struct rx_goal r;
	int status = -1;
	pid_t pid;

	channel_get_stats(gw2.ch, &st);
	g.auth = st.auth_failures;
	fflush(stdout);
	if ((pid = fork()) == 0)
		bad_client(kind, port, cert, key);
	tap_ok(pid > 0, "%s: client started", what);
	tap_ok(run_until(auth_bumped, &g, 10000), "%s: refused and counted", what);
	/* Give the child time to push its bytes before judging. */
	run_for(100);
	if (pid > 0)
		waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "%s: client never accepted (status %d)", what, status);
	channel_get_stats(gw2.ch, &st);
	snprintf(err, sizeof(err), "%s", st.last_error);
	tap_diag("%s: last_error: %s", what, err);
	if (expect)
		tap_ok(strstr(err, expect) != NULL, "%s: reason says \"%s\"", what, expect);
	tap_ok(gw2.rx_total == rx, "%s: no bytes delivered", what);
	tap_ok(gw2.downs == 0 && st.state == CHANNEL_UP, "%s: the good connection stayed up",
	    what);
	/* And it still serves the good peer. */
	r.s = &gw2;
	r.total = gw2.rx_total + 100000;
	tap_ok(send_pattern(&gw1, 100000) == 0 && run_until(rx_reached, &r, 10000) &&
	    gw2.rx_bad == 0, "%s: good peer still served", what);
	return err;
}

static int
dialer_refused(const void *arg)
{
	const struct side *s = arg;
	struct channel_stats st;

	channel_get_stats(s->ch, &st);
	return st.auth_failures > 0;
}

/* gw2 again on the port it had (another socket may hold it a moment);
 * gw2.ch stays NULL if it never comes free. */
static void
gw2_recreate(uint16_t port, uint16_t peer)
{
	gw2.ch = NULL;
	for (int i = 0; i < 50 && gw2.ch == NULL; i++) {
		uint16_t p = port;

		if (side_create(&gw2, "gw1", dir, "gw2", &p, peer) == 0 && p == port)
			break;
		channel_destroy(gw2.ch);
		gw2.ch = NULL;
		run_for(100);
	}
}

int
main(void)
{
	const char *top = getenv("top_srcdir");
	char cmd[512], other[128], expired[128];
	struct channel_stats st1, st2;
	uint16_t p1 = 0, p2 = 0, p3 = 0;
	struct side bad = { .name = "gw1" };
	struct counter_goal g;
	uint8_t *big;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	log_init("test_channel", 1, 0);
	srand((unsigned)(getpid() ^ time(NULL)));
	snprintf(dir, sizeof(dir), "/tmp/uplinkd-chan-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(cmd, sizeof(cmd), "top_srcdir='%s' '%s/tests/unit/channel_certs.sh' '%s'",
	    top ? top : ".", top ? top : ".", dir);
	rc = system(cmd);
	tap_ok(rc == 0, "certificates made by deploy/mkcerts.sh (%d)", rc);
	snprintf(other, sizeof(other), "%s/other", dir);
	snprintf(expired, sizeof(expired), "%s/expired", dir);
	loop = ev_create();

	/* TLS material is checked at create. */
	side_config(&bad, "gw2", dir, "gw1", 1, 2);
	snprintf(bad.key, sizeof(bad.key), "%s/gw2.key", dir);
	errno = 0;
	tap_ok(channel_create(loop, &bad.cfg, on_event, on_data, &bad) == NULL && errno == EINVAL,
	    "key that does not match the certificate refused");
	side_config(&bad, "gw2", dir, "nosuch", 1, 2);
	tap_ok(channel_create(loop, &bad.cfg, on_event, on_data, &bad) == NULL,
	    "missing certificate refused");
	channel_destroy(NULL);

	/* gw2 sorts higher: it only listens; gw1 dials it. */
	rc = side_create(&gw2, "gw1", dir, "gw2", &p2, 1);
	tap_ok(rc == 0, "gw2 created on port %u", p2);
	rc = side_create(&gw1, "gw2", dir, "gw1", &p1, p2);
	tap_ok(rc == 0, "gw1 created on port %u", p1);
	gw2.cfg.sync.peer.port = p1;
	errno = 0;
	tap_ok(channel_send(gw1.ch, "x", 1) == -1 && errno == ENOTCONN, "send before up: ENOTCONN");
	tap_ok(run_until(both_up, NULL, 10000), "both sides up");
	channel_get_stats(gw1.ch, &st1);
	channel_get_stats(gw2.ch, &st2);
	tap_ok(st1.state == CHANNEL_UP && st2.state == CHANNEL_UP && st1.authenticated &&
	    st2.authenticated, "state up, authenticated");
	tap_ok(strcmp(st1.tls_version, "TLSv1.3") == 0 && strcmp(st2.tls_version, "TLSv1.3") == 0,
	    "TLSv1.3 (%s, %s)", st1.tls_version, st2.tls_version);
	tap_ok(st1.cipher[0] != '\0', "cipher %s", st1.cipher);
	tap_ok(strcmp(st1.peer_cn, "gw2") == 0 && strcmp(st2.peer_cn, "gw1") == 0,
	    "peer names %s and %s", st1.peer_cn, st2.peer_cn);
	tap_ok(st1.connects == 1 && st1.reconnects == 0 && st2.connects == 1,
	    "one connection each");

	/* 10 MB each way at once, in order and intact. */
	tap_ok(send_pattern(&gw1, BULK) == 0 && send_pattern(&gw2, BULK) == 0,
	    "10 MB queued each way");
	tap_ok(channel_queued(gw1.ch) > 0, "bytes wait in the queue (%zu)", channel_queued(gw1.ch));
	rc = run_until(bulk_done, NULL, 60000);
	tap_ok(rc, "10 MB arrived each way (%llu, %llu)",
	    (unsigned long long)gw2.rx, (unsigned long long)gw1.rx);
	tap_ok(gw1.rx_bad == 0 && gw2.rx_bad == 0, "in order and intact");
	tap_ok(gw1.rx == BULK && gw2.rx == BULK, "nothing extra (greeting not delivered)");
	channel_get_stats(gw1.ch, &st1);
	channel_get_stats(gw2.ch, &st2);
	tap_ok(st1.bytes_out == BULK && st1.bytes_in == BULK && st2.bytes_out == BULK &&
	    st2.bytes_in == BULK, "byte counters");
	tap_ok(channel_queued(gw1.ch) == 0 && channel_queued(gw2.ch) == 0, "queues drained");

	big = calloc(1, CHANNEL_MAX_QUEUED + 1);
	errno = 0;
	tap_ok(big && channel_send(gw1.ch, big, CHANNEL_MAX_QUEUED + 1) == -1 && errno == ENOBUFS,
	    "over the queue bound: ENOBUFS");
	free(big);
	channel_get_stats(gw1.ch, &st1);
	tap_ok(st1.send_refused == 1, "send_refused counted");

	/* Hostile clients against gw2 (which accepts only "gw1"). */
	snprintf(cmd, sizeof(cmd), "%s/gw1.pem", other);
	snprintf(bad.cert, sizeof(bad.cert), "%s/gw1.key", other);
	bad_case(BAD_TLS, "other CA", cmd, bad.cert, p2, "certificate verify failed");
	snprintf(cmd, sizeof(cmd), "%s/gw3.pem", dir);
	snprintf(bad.cert, sizeof(bad.cert), "%s/gw3.key", dir);
	bad_case(BAD_TLS, "wrong name gw3", cmd, bad.cert, p2, "hostname mismatch");
	snprintf(cmd, sizeof(cmd), "%s/gw1.pem", expired);
	snprintf(bad.cert, sizeof(bad.cert), "%s/gw1.key", expired);
	bad_case(BAD_TLS, "expired", cmd, bad.cert, p2, "expired");
	bad_case(BAD_TLS_NOCERT, "no client certificate", NULL, NULL, p2, NULL);
	bad_case(BAD_PLAIN, "plaintext hello", NULL, NULL, p2, NULL);
	bad_case(BAD_RANDOM, "random bytes", NULL, NULL, p2, NULL);

	/* A client that says nothing holds a slot only until the timeout. */
	{
		int fds[6], n = 0;
		uint64_t rx = gw2.rx_total;

		channel_set_handshake_timeout(gw2.ch, 300);
		channel_get_stats(gw2.ch, &st2);
		g.s = &gw2;
		g.auth = st2.auth_failures;
		g.refused = 0;
		fds[0] = tcp_connect(p2);
		tap_ok(fds[0] != -1 && run_until(auth_bumped, &g, 5000),
		    "silent client refused after the handshake timeout");
		channel_get_stats(gw2.ch, &st2);
		tap_ok(strstr(st2.last_error, "no authentication within 300 ms") != NULL,
		    "reason: %s", st2.last_error);
		if (fds[0] != -1)
			close(fds[0]);

		/* Six at once: four get a handshake slot, two are refused. */
		channel_set_handshake_timeout(gw2.ch, 3000);
		for (int i = 0; i < 6; i++)
			if ((fds[i] = tcp_connect(p2)) != -1)
				n++;
		tap_ok(n == 6, "six silent clients connected");
		g.auth = 0;
		g.refused = st2.accept_refused + 2;
		run_until(auth_bumped, &g, 5000);
		channel_get_stats(gw2.ch, &st2);
		tap_ok(st2.accept_refused >= 2, "extra connections refused (%llu)",
		    (unsigned long long)st2.accept_refused);
		for (int i = 0; i < 6; i++)
			if (fds[i] != -1)
				close(fds[i]);
		channel_set_handshake_timeout(gw2.ch, 0);
		run_for(200);
		channel_get_stats(gw2.ch, &st2);
		tap_ok(st2.state == CHANNEL_UP && gw2.downs == 0 && gw2.rx_total == rx,
		    "good connection untouched, nothing delivered");
	}

	/* A dialer whose own certificate the peer refuses never reports UP,
	 * although its TLS 1.3 handshake "succeeds" first. */
	{
		struct side b = { .name = "gw1" };

		channel_get_stats(gw2.ch, &st2);
		g.s = &gw2;
		g.auth = st2.auth_failures;
		g.refused = 0;
		tap_ok(side_create(&b, "gw2", other, "gw1", &p3, p2) == 0,
		    "dialer with a foreign certificate created");
		tap_ok(run_until(auth_bumped, &g, 5000), "its peer refused it");
		tap_ok(run_until(dialer_refused, &b, 5000), "the dialer counted the refusal too");
		tap_ok(b.ups == 0 && b.rx_total == 0, "and never reported up");
		channel_destroy(b.ch);
		run_for(50);
	}

	/*
	 * channel_close: the dialer reconnects after backoff.  Meanwhile four
	 * silent clients from another address hold every handshake slot for
	 * a minute: the peer, from its configured address, still gets in, in
	 * the slot of one of them.
	 */
	{
		int fds[4], n = 0;

		channel_set_handshake_timeout(gw2.ch, 60000);
		for (int i = 0; i < 4; i++)
			if ((fds[i] = tcp_connect_from(p2, 0x7f000002)) != -1)
				n++;
		run_for(200);
		tap_ok(n == 4, "four silent clients from 127.0.0.2 hold every handshake slot");
		channel_get_stats(gw2.ch, &st2);
		g.refused = st2.accept_refused;
		channel_close(gw1.ch, "test");
		tap_ok(gw1.downs == 1, "channel_close reports DOWN");
		channel_get_stats(gw1.ch, &st1);
		tap_ok(strstr(st1.last_error, "test") != NULL, "reason kept: %s", st1.last_error);
		tap_ok(!st1.closed_by_peer, "a close here is not the peer's");
		tap_ok(run_until(both_up, NULL, 10000) && gw1.ups == 2,
		    "reconnected after close, through the held slots");
		channel_get_stats(gw2.ch, &st2);
		tap_ok(st2.accept_refused == g.refused + 1 &&
		    strstr(st2.last_error, "for one from the peer's address") != NULL,
		    "one silent client dropped for the peer (%s)", st2.last_error);
		for (int i = 0; i < 4; i++)
			if (fds[i] != -1)
				close(fds[i]);
		channel_set_handshake_timeout(gw2.ch, 0);
		run_for(200);
	}

	/* The dialed side restarts: the dialer finds it again. */
	channel_destroy(gw2.ch);
	gw2.ch = NULL;
	run_for(300);
	tap_ok(gw1.downs == 2, "dialer saw the peer go");
	channel_get_stats(gw1.ch, &st1);
	tap_ok(st1.closed_by_peer, "... closed by the peer (%s)", st1.last_error);
	gw2_recreate(p2, p1);
	tap_ok(gw2.ch != NULL, "gw2 recreated on the same port");
	tap_ok(run_until(both_up, NULL, 15000), "dialer reconnected");
	channel_get_stats(gw1.ch, &st1);
	tap_ok(st1.reconnects == 2 && st1.connects == 3, "reconnects counted (%llu)",
	    (unsigned long long)st1.reconnects);
	{
		struct rx_goal r = { &gw2, 200000 };

		tap_ok(send_pattern(&gw1, 200000) == 0 && run_until(rx_reached, &r, 10000) &&
		    gw2.rx_bad == 0, "bytes flow again");
	}

	/* Certificate lifetimes as loaded, and a renewal under the same paths. */
	{
		int64_t now = (int64_t)time(NULL), day = 86400;
		char err[CHANNEL_ERR_MAX];
		int downs = gw2.downs;

		channel_get_stats(gw1.ch, &st1);
		channel_get_stats(gw2.ch, &st2);
		tap_ok(llabs(st2.cert_not_after - (now + 825 * day)) < 3600,
		    "own certificate valid 825 days (%.2f)", (double)(st2.cert_not_after - now) / day);
		tap_ok(llabs(st2.ca_not_after - (now + 3650 * day)) < 3600,
		    "CA valid 3650 days (%.2f)", (double)(st2.ca_not_after - now) / day);
		tap_ok(st1.peer_cert_not_after == st2.cert_not_after && st2.peer_cert_not_after ==
		    st1.cert_not_after, "each side knows when the other's certificate ends");
		snprintf(cmd, sizeof(cmd), "mkdir -p '%s/rot' && cp '%s/gw2.pem' '%s/gw2.key' "
		    "'%s/rot/'", dir, dir, dir, dir);
		tap_ok(system(cmd) == 0, "a copy of gw2's files to renew in place");
		snprintf(gw2.cert, sizeof(gw2.cert), "%s/rot/gw2.pem", dir);
		snprintf(gw2.key, sizeof(gw2.key), "%s/rot/gw2.key", dir);
		snprintf(cmd, sizeof(cmd), "cp '%s/soon/gw2.pem' '%s/soon/gw2.key' '%s/rot/'", dir,
		    dir, dir);
		tap_ok(system(cmd) == 0 && channel_check_tls(&gw2.cfg, false, err, sizeof(err)) == 0 &&
		    channel_reload_tls(gw2.ch, err, sizeof(err)) == 0,
		    "renewed files (valid 5 days) checked and read again");
		channel_get_stats(gw2.ch, &st2);
		tap_ok(llabs(st2.cert_not_after - (now + 5 * day)) < 3600,
		    "own certificate now ends in %.2f days", (double)(st2.cert_not_after - now) / day);
		run_for(100);
		tap_ok(st2.state == CHANNEL_UP && gw2.downs == downs,
		    "the connection up stays up across the reload");
		channel_close(gw1.ch, "test: reconnect with the renewed certificate");
		tap_ok(run_until(both_up, NULL, 10000), "reconnected");
		channel_get_stats(gw1.ch, &st1);
		tap_ok(st1.peer_cert_not_after == st2.cert_not_after,
		    "the peer presents the renewed certificate on the next connection");

		snprintf(cmd, sizeof(cmd), "cp '%s/gw3.key' '%s/rot/gw2.key'", dir, dir);
		tap_ok(system(cmd) == 0 && channel_check_tls(&gw2.cfg, false, err, sizeof(err)) == -1 &&
		    strstr(err, "does not match") != NULL, "a key of another certificate: %s", err);
		tap_ok(channel_reload_tls(gw2.ch, err, sizeof(err)) == -1 &&
		    strstr(err, "sync.tls.key") != NULL, "... refused by a reload too");
		snprintf(gw2.cert, sizeof(gw2.cert), "%s/rot/nosuch.pem", dir);
		tap_ok(channel_reload_tls(gw2.ch, err, sizeof(err)) == -1 &&
		    strstr(err, "nosuch.pem: No such file") != NULL, "a missing file: %s", err);
		channel_get_stats(gw2.ch, &st2);
		tap_ok(llabs(st2.cert_not_after - (now + 5 * day)) < 3600 &&
		    st2.state == CHANNEL_UP, "the files loaded before stay in use, the channel up");
		channel_close(gw1.ch, "test: reconnect after the refused reload");
		tap_ok(run_until(both_up, NULL, 10000), "and still authenticate a new connection");
	}

	/* With the peer gone, redials wait CHANNEL_BACKOFF_MIN_MS, doubling
	 * up to CHANNEL_BACKOFF_MAX_MS; an authenticated connection brings the
	 * wait back to the minimum. */
	{
		int64_t waits[16], deadline = ev_clock_us() / 1000 + 15000;
		size_t nwaits = 0, wrong = 0;
		uint64_t dials;
		int64_t gone_ms, intervals;
		int first, again;

		channel_get_stats(gw1.ch, &st1);
		dials = st1.dials;
		tap_ok(st1.redial_delay_ms == 0 && st1.redial_in_ms == -1,
		    "up: no redial waits (%lld, %lld)", (long long)st1.redial_delay_ms,
		    (long long)st1.redial_in_ms);
		cap_begin();
		channel_destroy(gw2.ch);
		gw2.ch = NULL;
		gone_ms = ev_clock_us() / 1000;
		while (ev_clock_us() / 1000 < deadline && nwaits < 16) {
			run_for(10);
			channel_get_stats(gw1.ch, &st1);
			if (st1.redial_delay_ms != 0 &&
			    (nwaits == 0 || waits[nwaits - 1] != st1.redial_delay_ms))
				waits[nwaits++] = st1.redial_delay_ms;
			if (st1.redial_delay_ms == CHANNEL_BACKOFF_MAX_MS)
				break;
		}
		for (size_t i = 0; i < nwaits; i++) {
			int64_t want = (int64_t)CHANNEL_BACKOFF_MIN_MS << i;

			if (waits[i] != (want < CHANNEL_BACKOFF_MAX_MS ? want : CHANNEL_BACKOFF_MAX_MS))
				wrong++;
		}
		tap_ok(nwaits == 7 && wrong == 0, "redial waits %lld, %lld, ... up to %lld ms (%zu "
		    "waits, %zu out of order)", nwaits > 0 ? (long long)waits[0] : -1,
		    nwaits > 1 ? (long long)waits[1] : -1,
		    nwaits > 0 ? (long long)waits[nwaits - 1] : -1, nwaits, wrong);
		tap_ok(st1.redial_in_ms > 0 && st1.redial_in_ms <= CHANNEL_BACKOFF_MAX_MS &&
		    st1.dials - dials == 6, "the next in %lld ms, after %llu attempts",
		    (long long)st1.redial_in_ms, (unsigned long long)(st1.dials - dials));
		/* Dials 0.1, 0.3, 0.7, 1.5, 3.1 and 6.3 s after the loss: the
		 * first failure is a warning, then one line per interval. */
		first = cap_count("; retrying, at most 5 s apart");
		again = cap_count("the peer has not been reached for");
		intervals = (ev_clock_us() / 1000 - gone_ms) / CHANNEL_UNREACHABLE_LOG_MS;
		cap_end(first != 1 || again < 2 || again > intervals);
		tap_ok(first == 1 && again >= 2 && again <= intervals,
		    "the dialer warned once, then %d times, at most every %d ms", again,
		    CHANNEL_UNREACHABLE_LOG_MS);
		tap_ok(st1.down_ms >= CHANNEL_BACKOFF_MAX_MS, "disconnected for %lld ms",
		    (long long)st1.down_ms);
		gw2_recreate(p2, p1);
		tap_ok(gw2.ch != NULL && run_until(both_up, NULL, CHANNEL_BACKOFF_MAX_MS + 5000),
		    "the peer back: reconnected at the next attempt");
		channel_close(gw1.ch, "test: the wait after an authenticated connection");
		channel_get_stats(gw1.ch, &st1);
		tap_ok(st1.redial_delay_ms == CHANNEL_BACKOFF_MIN_MS,
		    "a connection lost after it authenticated waits %lld ms again",
		    (long long)st1.redial_delay_ms);
		tap_ok(run_until(both_up, NULL, 10000), "and reconnects");
	}

	/* The listener cannot fail while the dialer stays away, so it says
	 * every interval that nobody connects. */
	{
		struct cap_goal two = { "no connection from gw1 for", 2 };
		char where[64];
		uint16_t port = 0;
		int lines, after;

		snprintf(where, sizeof(where), "(it dials this node's 127.0.0.1:%u)", p2);
		channel_get_stats(gw2.ch, &st2);
		tap_ok(st2.down_ms == -1, "up: not disconnected (%lld)", (long long)st2.down_ms);
		cap_begin();
		channel_destroy(gw1.ch);
		gw1.ch = NULL;
		lines = run_until(cap_reached, &two, 10000) ? cap_count(where) : 0;
		channel_get_stats(gw2.ch, &st2);
		tap_ok(lines >= 2 && st2.down_ms >= 2 * CHANNEL_UNREACHABLE_LOG_MS &&
		    cap_count("channel: no connection") <= st2.down_ms / CHANNEL_UNREACHABLE_LOG_MS,
		    "the listener says so every %d ms (%d lines in %lld ms)",
		    CHANNEL_UNREACHABLE_LOG_MS, lines, (long long)st2.down_ms);
		rc = side_create(&gw1, "gw2", dir, "gw1", &port, p2);
		tap_ok(rc == 0 && run_until(both_up, NULL, 10000), "the dialer back: reconnected");
		after = cap_count("channel: no connection");
		run_for(CHANNEL_UNREACHABLE_LOG_MS + 500);
		channel_get_stats(gw2.ch, &st2);
		after = cap_count("channel: no connection") - after;
		cap_end(lines < 2 || after != 0);
		tap_ok(after == 0 && st2.down_ms == -1, "and quiet once connected (%d more lines, %lld)",
		    after, (long long)st2.down_ms);
	}

	channel_destroy(gw1.ch);
	channel_destroy(gw2.ch);

	/* The same over IPv6 loopback, when the host has it. */
	{
		int fd = socket(AF_INET6, SOCK_STREAM, 0);
		struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
		bool have_v6 = fd != -1 && bind(fd, (struct sockaddr *)&s6, sizeof(s6)) == 0;
		struct rx_goal r = { &gw2, 1000000 };

		if (fd != -1)
			close(fd);
		if (!have_v6) {
			tap_diag("no IPv6 loopback: IPv6 checks skipped");
		} else {
			use_v6 = true;
			gw1.rx_total = gw2.rx_total = 0;
			p1 = p2 = 0;
			rc = side_create(&gw2, "gw1", dir, "gw2", &p2, 1);
			rc |= side_create(&gw1, "gw2", dir, "gw1", &p1, p2);
			tap_ok(rc == 0, "IPv6 pair created on [::1]:%u and [::1]:%u", p1, p2);
			tap_ok(rc == 0 && run_until(both_up, NULL, 10000), "IPv6: both up");
			tap_ok(rc == 0 && send_pattern(&gw1, 1000000) == 0 &&
			    run_until(rx_reached, &r, 10000) && gw2.rx_bad == 0, "IPv6: bytes flow");
			channel_destroy(gw1.ch);
			channel_destroy(gw2.ch);
		}
	}
	ev_destroy(loop);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", dir);
	return tap_done();
}
