/*
 * test_ctl: the control socket server driven by raw client sockets of this
 * process through the same event loop (every wait bounded by a deadline
 * timer), and ctl_call() from a forked child.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"
#include "ev.h"
#include "log.h"
#include "tap.h"

#define WAIT_MS 5000	/* a guard against hangs, never a condition */

static struct ev_loop *loop;
static struct ctl *ctl;
static char sock_path[200];

struct conn {
	int fd;
	char *buf;
	size_t len, cap;
	bool eof;
};

/* --- the loop, bounded --- */

static int64_t
on_deadline(void *data)
{
	*(bool *)data = true;
	ev_stop(loop);
	return EV_TIMER_STOP;
}

static void
conn_read(int fd, void *data)
{
	struct conn *c = data;

	for (;;) {
		ssize_t n;

		if (c->cap - c->len < 65536) {
			c->cap = c->cap ? c->cap * 2 : 65536;
			if ((c->buf = realloc(c->buf, c->cap + 1)) == NULL)
				abort();
		}
		n = read(fd, c->buf + c->len, c->cap - c->len);
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		/* EOF, or ECONNRESET when the server closed with our surplus
		 * bytes unread: the reply before it was delivered either way. */
		c->eof = true;
		ev_fd_del(loop, fd);
		ev_stop(loop);
		return;
	}
}

/* Runs the loop until the server closes c; false on the guard deadline. */
static bool
run_until_eof(struct conn *c)
{
	bool expired = false;
	struct ev_timer *t;

	if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) == -1 ||
	    ev_fd_add(loop, c->fd, conn_read, NULL, c) == -1)
		abort();
	t = ev_timer_add(loop, WAIT_MS, on_deadline, &expired);
	ev_run(loop);
	ev_timer_del(loop, t);
	if (!c->eof)
		ev_fd_del(loop, c->fd);
	return c->eof;
}

struct until {
	bool (*pred)(void);
};

static int64_t
on_poll(void *data)
{
	bool (*pred)(void) = ((struct until *)data)->pred;

	if (pred()) {
		ev_stop(loop);
		return EV_TIMER_STOP;
	}
	return 1;
}

static bool
run_until(bool (*pred)(void))
{
	struct until u = { pred };
	bool expired = false;
	struct ev_timer *t, *p;

	t = ev_timer_add(loop, WAIT_MS, on_deadline, &expired);
	p = ev_timer_add(loop, 1, on_poll, &u);
	ev_run(loop);
	ev_timer_del(loop, t);
	ev_timer_del(loop, p);
	return pred();
}

/* --- raw clients --- */

static void
set_sun(struct sockaddr_un *sun, const char *path)
{
	if (strlen(path) >= sizeof(sun->sun_path))
		abort();
	memcpy(sun->sun_path, path, strlen(path) + 1);
}

static int
client_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	set_sun(&sun, path);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		return -1;
	return fd;
}

static size_t
build(unsigned char *buf, uint32_t magic, uint16_t version, uint16_t type,
    uint32_t flags, uint32_t length, const void *payload, size_t plen)
{
	struct ctl_req_hdr h = { magic, version, type, flags, length };

	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), payload, plen);
	return sizeof(h) + plen;
}

struct reply {
	bool ok;		/* a complete reply arrived and the server closed */
	uint32_t status;
	char *body;
};

static void
reply_free(struct reply *r)
{
	free(r->body);
	r->body = NULL;
}

/* Sends raw bytes (optionally half-closing), and collects the reply. */
static struct reply
exchange(const void *data, size_t len, bool shut)
{
	struct conn c = { .fd = client_connect(sock_path) };
	struct reply r = { 0 };
	struct ctl_reply_hdr h;

	if (c.fd == -1 || send(c.fd, data, len, MSG_NOSIGNAL) != (ssize_t)len)
		abort();
	if (shut)
		shutdown(c.fd, SHUT_WR);
	if (run_until_eof(&c) && c.len >= sizeof(h)) {
		memcpy(&h, c.buf, sizeof(h));
		if (h.magic == CTL_MAGIC && c.len == sizeof(h) + h.length) {
			r.ok = true;
			r.status = h.status;
			r.body = strndup(c.buf + sizeof(h), h.length);
		}
	}
	close(c.fd);
	free(c.buf);
	return r;
}

static struct reply
request(uint16_t type, uint32_t flags, const char *payload, size_t plen)
{
	unsigned char buf[sizeof(struct ctl_req_hdr) + CTL_MAX_REQUEST];

	return exchange(buf, build(buf, CTL_MAGIC, CTL_VERSION, type, flags,
	    (uint32_t)plen, payload, plen), false);
}

/* --- counters --- */

#define NSTATS (sizeof(struct ctl_stats) / sizeof(uint64_t))
#define FIELD(f) (offsetof(struct ctl_stats, f) / sizeof(uint64_t))

static struct ctl_stats before;

static void
snap(void)
{
	before = *ctl_stats(ctl);
}

/* True when exactly counter `field` moved, by `by`, since snap(). */
static bool
only(size_t field, uint64_t by)
{
	uint64_t a[NSTATS], b[NSTATS];

	memcpy(a, &before, sizeof(a));
	memcpy(b, ctl_stats(ctl), sizeof(b));
	for (size_t i = 0; i < NSTATS; i++)
		if (b[i] != a[i] + (i == field ? by : 0))
			return false;
	return true;
}

static bool
unchanged(void)
{
	return memcmp(&before, ctl_stats(ctl), sizeof(before)) == 0;
}

/* --- handler --- */

static enum ctl_status
h_echo(const struct ctl_request *req, struct emit *out, char *err,
    size_t errlen, void *data)
{
	(void)data;
	if (req->argc > 0 && strcmp(req->argv[0], "fail") == 0) {
		snprintf(err, errlen, "failed on purpose");
		return CTL_FAILED;
	}
	if (req->argc > 0 && strcmp(req->argv[0], "big") == 0) {
		emit_array_begin(out, "rows");
		for (int i = 0; i < 100000; i++) {
			emit_object_begin(out, NULL);
			emit_u64(out, "id", (uint64_t)i);
			emit_str(out, "provider", "isp-a");
			emit_str(out, "source", "198.51.100.10:40000");
			emit_object_end(out);
		}
		emit_array_end(out);
		return CTL_OK;
	}
	emit_str(out, "type", req->type == CTL_STATUS ? "status" : "other");
	emit_u64(out, "argc", (uint64_t)req->argc);
	emit_array_begin(out, "argv");
	for (int i = 0; i < req->argc; i++)
		emit_str(out, NULL, req->argv[i]);
	emit_array_end(out);
	return CTL_OK;
}

static bool
serves(void)
{
	struct reply r = request(CTL_STATUS, 0, "", 0);
	bool ok = r.ok && r.status == CTL_OK &&
	    strcmp(r.body, "type: status\nargc: 0\nargv: (none)\n") == 0;

	reply_free(&r);
	return ok;
}

/* --- cases --- */

static void
test_valid(void)
{
	struct reply r;
	char many[CTL_MAX_ARGS * 2];

	snap();
	r = request(CTL_STATUS, 0, "a\0b c", 6);
	tap_ok(r.ok && r.status == CTL_OK &&
	    strcmp(r.body, "type: status\nargc: 2\nargv: a, b c\n") == 0,
	    "valid request: human reply from the handler");
	tap_ok(only(FIELD(requests), 1), "valid request counted in requests only");
	reply_free(&r);

	r = request(CTL_STATUS, CTL_F_JSON, "a\0\"q\"", 6);
	if (!tap_ok(r.ok && r.status == CTL_OK &&
	    strcmp(r.body, "{\"type\": \"status\", \"argc\": 2, "
	    "\"argv\": [\"a\", \"\\\"q\\\"\"]}") == 0,
	    "valid request with CTL_F_JSON: JSON reply") && r.body)
		tap_diag("got %s", r.body);
	reply_free(&r);

	r = request(CTL_STATUS, 0, "\0", 1);
	tap_ok(r.ok && r.status == CTL_OK &&
	    strcmp(r.body, "type: status\nargc: 1\nargv: \n") == 0,
	    "one empty argument is an argument");
	reply_free(&r);

	memset(many, 0, sizeof(many));
	for (int i = 0; i < CTL_MAX_ARGS; i++)
		many[2 * i] = 'x';
	r = request(CTL_STATUS, CTL_F_JSON, many, sizeof(many));
	tap_ok(r.ok && r.status == CTL_OK && strstr(r.body, "\"argc\": 32,") != NULL,
	    "exactly CTL_MAX_ARGS arguments are accepted");
	reply_free(&r);

	snap();
	r = request(CTL_STATUS, 0, "fail", 5);
	tap_ok(r.ok && r.status == CTL_FAILED &&
	    strcmp(r.body, "failed on purpose") == 0,
	    "handler failure: CTL_FAILED with its message");
	tap_ok(only(FIELD(requests), 1), "handler failure counted as a request");
	reply_free(&r);
}

static void
test_big(void)
{
	struct reply r;
	size_t len;

	r = request(CTL_FLOWS, CTL_F_JSON, "big", 4);
	len = r.body ? strlen(r.body) : 0;
	tap_ok(r.ok && r.status == CTL_OK && len > 5000000 &&
	    strncmp(r.body, "{\"rows\": [{\"id\": 0, ", 20) == 0 &&
	    strcmp(r.body + len - 3, "}]}") == 0,
	    "a reply of %zu bytes arrives whole through write interest", len);
	reply_free(&r);

	/* A client that half-closes after its request: its socket stays
	 * readable at EOF while the reply is pushed out. */
	{
		unsigned char buf[64];
		size_t n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_FLOWS, 0, 4, "big", 4);

		r = exchange(buf, n, true);
		len = r.body ? strlen(r.body) : 0;
		tap_ok(r.ok && r.status == CTL_OK && len > 3000000 &&
		    strncmp(r.body, "rows:\n  ID  ", 12) == 0,
		    "half-closed client still gets a %zu-byte human reply", len);
		reply_free(&r);
	}
}

static void
reject(const void *data, size_t len, bool shut, size_t field,
    uint32_t status, const char *prefix, const char *what)
{
	struct reply r;

	snap();
	r = exchange(data, len, shut);
	if (prefix == NULL)
		tap_ok(r.ok == false, "%s: closed without a reply", what);
	else if (!tap_ok(r.ok && r.status == status &&
	    strncmp(r.body, prefix, strlen(prefix)) == 0,
	    "%s: error reply \"%s...\"", what, prefix))
		tap_diag("got ok=%d status=%u body=%s", r.ok, r.status,
		    r.body ? r.body : "(none)");
	else
		tap_diag("%s", r.body);
	tap_ok(only(field, 1), "%s: only its counter moved", what);
	reply_free(&r);
	tap_ok(serves(), "%s: server still serves", what);
}

static void
test_malformed(void)
{
	unsigned char buf[sizeof(struct ctl_req_hdr) + CTL_MAX_REQUEST + 64];
	char many[CTL_MAX_ARGS + 1];
	size_t n;

	n = build(buf, 0xdeadbeef, CTL_VERSION, CTL_STATUS, 0, 0, "", 0);
	reject(buf, n, false, FIELD(bad_magic), CTL_USAGE,
	    "bad magic 0xdeadbeef", "bad magic");
	n = build(buf, CTL_MAGIC, 7, CTL_STATUS, 0, 0, "", 0);
	reject(buf, n, false, FIELD(bad_version), CTL_USAGE,
	    "unsupported protocol version 7", "bad version");
	n = build(buf, CTL_MAGIC, CTL_VERSION, 0, 0, 0, "", 0);
	reject(buf, n, false, FIELD(bad_type), CTL_USAGE,
	    "unknown request type 0", "type 0");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_TYPE_MAX, 0, 0, "", 0);
	reject(buf, n, false, FIELD(bad_type), CTL_USAGE,
	    "unknown request type", "type past the last");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_DRILL, 0, 0, "", 0);
	reject(buf, n, false, FIELD(bad_type), CTL_USAGE,
	    "unknown request type 10", "type without a handler");
	/* Magic is checked before the rest. */
	n = build(buf, 1, 99, 999, 0, 1u << 30, "", 0);
	reject(buf, n, false, FIELD(bad_magic), CTL_USAGE, "bad magic 0x00000001",
	    "everything wrong: magic first");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, CTL_MAX_REQUEST + 1,
	    "", 0);
	memset(buf + n, 'x', 64);
	reject(buf, n + 64, false, FIELD(bad_length), CTL_USAGE,
	    "request length 4097 exceeds 4096", "oversized length");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, 3, "abc", 3);
	reject(buf, n, false, FIELD(bad_args), CTL_USAGE,
	    "arguments are not NUL-terminated", "arguments not NUL-terminated");
	memset(many, 0, sizeof(many));
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, sizeof(many), many,
	    sizeof(many));
	reject(buf, n, false, FIELD(bad_args), CTL_USAGE,
	    "too many arguments (33, at most 32)", "too many arguments");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, 0, "", 0);
	reject(buf, 7, true, FIELD(bad_length), 0, NULL, "truncated header");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, 10, "abcde", 5);
	reject(buf, n, true, FIELD(bad_length), 0, NULL, "truncated payload");

	{
		struct conn c = { .fd = client_connect(sock_path) };

		snap();
		shutdown(c.fd, SHUT_WR);
		tap_ok(run_until_eof(&c) && c.len == 0 && unchanged(),
		    "connect and close without a byte: closed, not counted");
		close(c.fd);
		free(c.buf);
	}
}

struct drip {
	int fd;
	const unsigned char *data;
	size_t off, len;
};

static int64_t
on_drip(void *data)
{
	struct drip *d = data;

	if (d->off == d->len || send(d->fd, d->data + d->off, 1, MSG_NOSIGNAL) != 1)
		return EV_TIMER_STOP;
	d->off++;
	return 40;
}

/*
 * A client that sends its request a byte at a time, each well within the
 * timeout, must not keep its slot for longer than the timeout: at 5 s a
 * byte, 32 of them would lock keepalived's "uplinkctl ha" out for hours.
 */
static void
test_drip(void)
{
	unsigned char buf[sizeof(struct ctl_req_hdr) + 100];
	char payload[100];
	struct conn c = { .fd = client_connect(sock_path) };
	struct drip d = { c.fd, buf, 0, 0 };
	struct ctl_reply_hdr h;
	struct ev_timer *t;
	int64_t start;
	bool closed;

	memset(payload, 'x', sizeof(payload) - 1);
	payload[sizeof(payload) - 1] = '\0';
	d.len = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, sizeof(payload),
	    payload, sizeof(payload));
	snap();
	start = ev_clock_us();
	t = ev_timer_add(loop, 0, on_drip, &d);
	closed = run_until_eof(&c);
	ev_timer_del(loop, t);
	tap_ok(closed && d.off < d.len, "a client dripping its request is dropped "
	    "(%s after %zu of %zu bytes, %lld ms)", closed ? "closed" : "still open",
	    d.off, d.len, (long long)((ev_clock_us() - start) / 1000));
	memset(&h, 0, sizeof(h));
	if (c.len >= sizeof(h))
		memcpy(&h, c.buf, sizeof(h));
	tap_ok(h.magic == CTL_MAGIC && h.status == CTL_FAILED &&
	    c.len == sizeof(h) + h.length &&
	    strncmp(c.buf + sizeof(h), "request timed out", h.length) == 0,
	    "dripping client: \"request timed out\"");
	tap_ok(only(FIELD(timeouts), 1), "dripping client: counted in timeouts");
	close(c.fd);
	free(c.buf);
	tap_ok(serves(), "dripping client: server still serves");
}

static void
test_timeout(void)
{
	unsigned char buf[64];
	size_t n;

	ctl_set_timeout(ctl, 100);
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, 0, "", 0);
	reject(buf, 5, false, FIELD(timeouts), CTL_FAILED, "request timed out",
	    "stalled in the header");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, 8, "abc", 3);
	reject(buf, n, false, FIELD(timeouts), CTL_FAILED, "request timed out",
	    "stalled in the payload");
	test_drip();
	ctl_set_timeout(ctl, CTL_TIMEOUT_MS);
}

static uint64_t want_bad_length;

static bool
all_closed(void)
{
	return ctl_stats(ctl)->bad_length == want_bad_length;
}

static void
test_max_clients(void)
{
	int fds[CTL_MAX_CLIENTS];
	struct reply r;

	snap();
	/* Each holds a slot with a partial header, so that its close later
	 * is counted and can be waited for. */
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		if ((fds[i] = client_connect(sock_path)) == -1 ||
		    send(fds[i], "UPL", 3, MSG_NOSIGNAL) != 3)
			abort();
	r = exchange("", 0, false);
	tap_ok(r.ok && r.status == CTL_FAILED &&
	    strcmp(r.body, "too many control clients") == 0,
	    "client past CTL_MAX_CLIENTS: error reply");
	tap_ok(only(FIELD(overflows), 1), "client past CTL_MAX_CLIENTS: only overflows moved");
	reply_free(&r);

	want_bad_length = before.bad_length + CTL_MAX_CLIENTS;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		close(fds[i]);
	tap_ok(run_until(all_closed), "the %d held clients are released",
	    CTL_MAX_CLIENTS);
	tap_ok(serves(), "slots are free again");
}

static void
test_ctl_call(void)
{
	int pfd[2];
	pid_t pid;
	struct conn c = { 0 };
	uint32_t status;
	char *body, *path_long;

	if (pipe(pfd) == -1 || (pid = fork()) == -1)
		abort();
	if (pid == 0) {
		char *args[] = { "x", "y z" }, *fail[] = { "fail" };
		FILE *f;

		alarm(20);
		close(pfd[0]);
		f = fdopen(pfd[1], "w");
		if (ctl_call(sock_path, CTL_STATUS, CTL_F_JSON, 2, args, 5000,
		    &status, &body) == 0)
			fprintf(f, "%u|%s\n", status, body);
		else
			fprintf(f, "err %d\n", errno);
		if (ctl_call(sock_path, CTL_STATUS, 0, 1, fail, 5000, &status,
		    &body) == 0)
			fprintf(f, "%u|%s\n", status, body);
		else
			fprintf(f, "err %d\n", errno);
		if (ctl_call(sock_path, CTL_DRILL, 0, 0, NULL, 5000, &status,
		    &body) == 0)
			fprintf(f, "%u|%s\n", status, body);
		else
			fprintf(f, "err %d\n", errno);
		fclose(f);
		_exit(0);
	}
	close(pfd[1]);
	c.fd = pfd[0];
	if (!run_until_eof(&c))
		kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(pfd[0]);
	if (c.buf)
		c.buf[c.len] = '\0';
	if (!tap_ok(c.buf && strcmp(c.buf,
	    "0|{\"type\": \"status\", \"argc\": 2, \"argv\": [\"x\", \"y z\"]}\n"
	    "1|failed on purpose\n"
	    "2|unknown request type 10\n") == 0,
	    "ctl_call: OK/JSON, handler failure, usage error") && c.buf)
		for (char *l = strtok(c.buf, "\n"); l; l = strtok(NULL, "\n"))
			tap_diag("got %s", l);
	free(c.buf);

	errno = 0;
	tap_ok(ctl_call("/nonexistent/uplinkd.sock", CTL_STATUS, 0, 0, NULL, 1000,
	    &status, &body) == -1 && errno == ENOENT,
	    "ctl_call without a daemon: -1/ENOENT");
	path_long = malloc(200);
	memset(path_long, 'a', 199);
	path_long[199] = '\0';
	errno = 0;
	tap_ok(ctl_call(path_long, CTL_STATUS, 0, 0, NULL, 1000, &status, &body) ==
	    -1 && errno == ENAMETOOLONG, "ctl_call with a long path: ENAMETOOLONG");
	errno = 0;
	tap_ok(ctl_create(loop, path_long) == NULL && errno == ENAMETOOLONG,
	    "ctl_create with a long path: ENAMETOOLONG");
	free(path_long);
}

static void
test_create(const char *dir)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char path[200], sdir[200];
	struct ctl *other;
	struct stat st;
	uint32_t status;
	char *body;
	int fd;

	errno = 0;
	snap();
	tap_ok(ctl_create(loop, sock_path) == NULL && errno == EADDRINUSE,
	    "a live socket is refused with EADDRINUSE");
	/* The probe's connection is accepted, closed, and not counted. */
	{
		struct reply r = request(CTL_STATUS, 0, "", 0);

		tap_ok(r.ok && r.status == CTL_OK, "the live server still serves");
		reply_free(&r);
	}

	snprintf(sdir, sizeof(sdir), "%s/stale", dir);
	snprintf(path, sizeof(path), "%s/stale/s.sock", dir);
	mkdir(sdir, 0700);
	set_sun(&sun, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		abort();
	close(fd);	/* leaves the file with nobody listening */
	tap_ok(ctl_call(path, CTL_STATUS, 0, 0, NULL, 1000, &status, &body) ==
	    -1 && errno == ECONNREFUSED, "stale socket: ctl_call gets ECONNREFUSED");
	other = ctl_create(loop, path);
	tap_ok(other != NULL, "stale socket is replaced");
	tap_ok(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    (st.st_mode & 0777) == 0660, "replaced socket has mode 0660");
	ctl_destroy(other);
	tap_ok(stat(path, &st) == -1 && errno == ENOENT,
	    "ctl_destroy unlinks the socket");

	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	errno = 0;
	tap_ok(ctl_create(loop, path) == NULL && errno == EEXIST &&
	    stat(path, &st) == 0 && S_ISREG(st.st_mode),
	    "a regular file in the way is left alone: EEXIST");
	unlink(path);
	rmdir(sdir);
	ctl_destroy(NULL);
}

/* The validation alone, without a socket (what the fuzz target drives). */
static void
test_parse(void)
{
	unsigned char buf[sizeof(struct ctl_req_hdr) + CTL_MAX_REQUEST + 1];
	struct ctl_request req;
	enum ctl_reject why;
	char err[128], many[CTL_MAX_ARGS + 1];
	size_t n;

	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_FLOWS, CTL_F_JSON, 13,
	    "--limit\0" "5\0\0" "x\0", 13);
	tap_ok(ctl_request_parse(buf, n, &req, err, sizeof(err), &why) == 0 &&
	    why == CTL_REJECT_NONE && req.type == CTL_FLOWS &&
	    req.flags == CTL_F_JSON && req.argc == 4 &&
	    strcmp(req.argv[0], "--limit") == 0 && strcmp(req.argv[1], "5") == 0 &&
	    req.argv[2][0] == '\0' && strcmp(req.argv[3], "x") == 0,
	    "parse: arguments split at NULs, empty ones kept");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, 0, "", 0);
	tap_ok(ctl_request_parse(buf, n, &req, err, sizeof(err), &why) == 0 &&
	    req.argc == 0, "parse: no payload, no arguments");
	errno = 0;
	tap_ok(ctl_request_parse(buf, n - 1, &req, err, sizeof(err), &why) == -1 &&
	    why == CTL_REJECT_LENGTH && errno == EINVAL,
	    "parse: cut header is a length error, EINVAL");
	tap_ok(ctl_request_parse(buf, n + 1, &req, err, sizeof(err), &why) == -1 &&
	    why == CTL_REJECT_LENGTH && strstr(err, "header says 0") != NULL,
	    "parse: a byte past the payload is a length error");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_DRILL, 0, 0, "", 0);
	tap_ok(ctl_request_parse(buf, n, &req, err, sizeof(err), &why) == 0,
	    "parse: a type without a handler is the server's business");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_TYPE_MAX, 0, 0, "", 0);
	tap_ok(ctl_request_parse(buf, n, &req, err, sizeof(err), &why) == -1 &&
	    why == CTL_REJECT_TYPE &&
	    strcmp(err, "unknown request type 11") == 0,
	    "parse: type past the last: %s", err);
	n = build(buf, 0x11, 99, 0, 0, 1u << 31, "", 0);
	tap_ok(ctl_request_parse(buf, n, &req, err, sizeof(err), &why) == -1 &&
	    why == CTL_REJECT_MAGIC, "parse: magic checked first");
	n = build(buf, CTL_MAGIC, 2, CTL_STATUS, 0, 0, "", 0);
	tap_ok(ctl_request_parse(buf, n, &req, err, sizeof(err), &why) == -1 &&
	    why == CTL_REJECT_VERSION, "parse: bad version");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, CTL_MAX_REQUEST + 1,
	    "", 0);
	memset(buf + n, 0, CTL_MAX_REQUEST + 1);
	tap_ok(ctl_request_parse(buf, n + CTL_MAX_REQUEST + 1, &req, err,
	    sizeof(err), &why) == -1 && why == CTL_REJECT_LENGTH,
	    "parse: payload over CTL_MAX_REQUEST");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, 2, "a", 1);
	buf[n++] = 'b';
	tap_ok(ctl_request_parse(buf, n, &req, err, sizeof(err), &why) == -1 &&
	    why == CTL_REJECT_ARGS, "parse: last argument not NUL-terminated");
	memset(many, 0, sizeof(many));
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, sizeof(many) - 1,
	    many, sizeof(many) - 1);
	tap_ok(ctl_request_parse(buf, n, &req, err, sizeof(err), &why) == 0 &&
	    req.argc == CTL_MAX_ARGS, "parse: CTL_MAX_ARGS empty arguments");
	n = build(buf, CTL_MAGIC, CTL_VERSION, CTL_STATUS, 0, sizeof(many),
	    many, sizeof(many));
	tap_ok(ctl_request_parse(buf, n, &req, err, sizeof(err), &why) == -1 &&
	    why == CTL_REJECT_ARGS, "parse: one argument too many");
	tap_ok(ctl_request_parse(buf, n, &req, NULL, 0, &why) == -1 &&
	    why == CTL_REJECT_ARGS, "parse: no room for a message is fine");
}

int
main(void)
{
	char dir[] = "/tmp/test_ctl.XXXXXX", rundir[64];
	struct stat st;

	signal(SIGPIPE, SIG_IGN);
	log_init("test_ctl", 1, 0);
	if (mkdtemp(dir) == NULL || (loop = ev_create()) == NULL)
		abort();
	snprintf(rundir, sizeof(rundir), "%s/run", dir);
	snprintf(sock_path, sizeof(sock_path), "%s/uplinkd.sock", rundir);

	ctl = ctl_create(loop, sock_path);
	if (!tap_ok(ctl != NULL, "ctl_create in a missing directory")) {
		tap_diag("ctl_create: %s", strerror(errno));
		return tap_done();
	}
	tap_ok(stat(rundir, &st) == 0 && (st.st_mode & 0777) == 0750,
	    "directory created with mode 0750");
	tap_ok(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    (st.st_mode & 0777) == 0660, "socket has mode 0660");
	ctl_register(ctl, CTL_STATUS, h_echo, NULL);
	ctl_register(ctl, CTL_FLOWS, h_echo, NULL);

	test_parse();
	test_valid();
	test_big();
	test_malformed();
	test_timeout();
	test_max_clients();
	test_ctl_call();
	test_create(dir);

	ctl_destroy(ctl);
	tap_ok(stat(sock_path, &st) == -1 && errno == ENOENT,
	    "ctl_destroy unlinks the socket");
	ev_destroy(loop);
	rmdir(rundir);
	rmdir(dir);
	return tap_done();
}
