#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"
#include "log.h"

#define CTL_HDR_LEN sizeof(struct ctl_req_hdr)
#define CTL_REPLY_HDR_LEN sizeof(struct ctl_reply_hdr)
#define CTL_ACCEPT_BATCH 16		/* accepts per wakeup, so one burst cannot starve the loop */
#define CTL_ACCEPT_PAUSE_MS 100		/* back-off when out of fds */
#define CTL_POLL_MS 10			/* write retry period after a client half-closed */
#define CTL_MAX_REPLY (1u << 30)	/* client side: a longer reply is garbage */
#define CTL_ERRLEN 256

_Static_assert(sizeof(struct ctl_req_hdr) == 16, "request header is 16 bytes on the wire");
_Static_assert(sizeof(struct ctl_reply_hdr) == 12, "reply header is 12 bytes on the wire");

enum ctl_client_state {
	CTL_READING,
	CTL_WRITING,
};

struct ctl_client {
	struct ctl *ctl;
	int fd;
	int slot;
	enum ctl_client_state state;
	/*
	 * A client whose peer shut down its write side keeps its socket
	 * readable (EOF) forever; the loop always has read interest, so such a
	 * client is taken out of the loop and its reply is pushed from its
	 * timer instead of spinning on EPOLLIN.
	 */
	bool polling;
	struct ev_timer *timer;
	int64_t accepted_ms;	/* the request must be whole within the timeout */
	int64_t last_ms;	/* last progress, for the reply's stall timeout */
	size_t have, need;	/* request bytes received, and expected */
	unsigned char buf[CTL_HDR_LEN + CTL_MAX_REQUEST];
	char *reply;
	size_t reply_len, reply_off;
};

struct ctl {
	struct ev_loop *loop;
	int fd;
	bool accepting;
	struct ev_timer *accept_timer;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev;
	ino_t ino;
	int timeout_ms;
	struct {
		ctl_handler fn;
		void *data;
	} handlers[CTL_TYPE_MAX];
	struct ctl_client *clients[CTL_MAX_CLIENTS];
	int nclients;
	struct ctl_stats stats;
};

/* --- requests: validation without I/O --- */

__attribute__((format(printf, 5, 6))) static int
ctl_request_fail(enum ctl_reject *reason, enum ctl_reject why, char *err,
    size_t errlen, const char *fmt, ...)
{
	va_list ap;

	*reason = why;
	if (errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	errno = EINVAL;
	return -1;
}

int
ctl_request_check_header(const struct ctl_req_hdr *h, char *err,
    size_t errlen, enum ctl_reject *reason)
{
	/* The order is part of the behaviour: magic first, so that a
	 * stranger talking to the socket is told so before anything else. */
	if (h->magic != CTL_MAGIC)
		return ctl_request_fail(reason, CTL_REJECT_MAGIC, err, errlen,
		    "bad magic 0x%08x (want 0x%08x)", h->magic, CTL_MAGIC);
	if (h->version != CTL_VERSION)
		return ctl_request_fail(reason, CTL_REJECT_VERSION, err, errlen,
		    "unsupported protocol version %u (want %u)", h->version,
		    CTL_VERSION);
	if (h->type == 0 || h->type >= CTL_TYPE_MAX)
		return ctl_request_fail(reason, CTL_REJECT_TYPE, err, errlen,
		    "unknown request type %u", h->type);
	if (h->length > CTL_MAX_REQUEST)
		return ctl_request_fail(reason, CTL_REJECT_LENGTH, err, errlen,
		    "request length %u exceeds %u", h->length, CTL_MAX_REQUEST);
	*reason = CTL_REJECT_NONE;
	return 0;
}

int
ctl_request_parse(const void *buf, size_t len, struct ctl_request *out,
    char *err, size_t errlen, enum ctl_reject *reason)
{
	const char *payload = (const char *)buf + CTL_HDR_LEN;
	struct ctl_req_hdr h;
	int nuls = 0;

	if (len < CTL_HDR_LEN)
		return ctl_request_fail(reason, CTL_REJECT_LENGTH, err, errlen,
		    "request cut at %zu of %zu header bytes", len, CTL_HDR_LEN);
	memcpy(&h, buf, CTL_HDR_LEN);
	if (ctl_request_check_header(&h, err, errlen, reason) == -1)
		return -1;
	if (len - CTL_HDR_LEN != h.length)
		return ctl_request_fail(reason, CTL_REJECT_LENGTH, err, errlen,
		    "request has %zu payload bytes, its header says %u",
		    len - CTL_HDR_LEN, h.length);
	if (h.length > 0 && payload[h.length - 1] != '\0')
		return ctl_request_fail(reason, CTL_REJECT_ARGS, err, errlen,
		    "arguments are not NUL-terminated");
	for (uint32_t i = 0; i < h.length; i++)
		if (payload[i] == '\0')
			nuls++;
	if (nuls > CTL_MAX_ARGS)
		return ctl_request_fail(reason, CTL_REJECT_ARGS, err, errlen,
		    "too many arguments (%d, at most %d)", nuls, CTL_MAX_ARGS);
	memset(out, 0, sizeof(*out));
	out->type = (enum ctl_type)h.type;
	out->flags = h.flags;
	/* Each string ends at a NUL inside the payload (the last byte is
	 * one), and there are at most CTL_MAX_ARGS of them. */
	for (uint32_t off = 0; off < h.length; off += strlen(payload + off) + 1)
		out->argv[out->argc++] = payload + off;
	*reason = CTL_REJECT_NONE;
	return 0;
}

/* --- server: clients --- */

static void
ctl_client_close(struct ctl_client *c)
{
	struct ctl *ctl = c->ctl;

	if (!c->polling)
		ev_fd_del(ctl->loop, c->fd);
	ev_timer_del(ctl->loop, c->timer);
	close(c->fd);
	ctl->clients[c->slot] = NULL;
	ctl->nclients--;
	free(c->reply);
	free(c);
}

/*
 * Pushes the reply; closes the client when it is written or broken.
 * Returns false when the client is gone.
 */
static bool
ctl_client_flush(struct ctl_client *c)
{
	struct ctl *ctl = c->ctl;

	while (c->reply_off < c->reply_len) {
		ssize_t n = send(c->fd, c->reply + c->reply_off,
		    c->reply_len - c->reply_off, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!c->polling &&
				    ev_fd_want_write(ctl->loop, c->fd, true) == -1) {
					log_warn("ctl: write interest");
					break;
				}
				return true;
			}
			log_debug("ctl: client %d: send: %s", c->fd, strerror(errno));
			break;
		}
		c->reply_off += (size_t)n;
		c->last_ms = ev_now_ms(ctl->loop);
	}
	ctl_client_close(c);
	return false;
}

/* Queues a reply and starts writing it.  The client may be gone after. */
static void
ctl_client_reply(struct ctl_client *c, enum ctl_status status, const char *body,
    size_t len)
{
	struct ctl_reply_hdr h = { .magic = CTL_MAGIC, .status = status };

	if (len > UINT32_MAX - CTL_REPLY_HDR_LEN ||
	    (c->reply = malloc(CTL_REPLY_HDR_LEN + len)) == NULL) {
		log_warnx("ctl: no memory for a reply of %zu bytes", len);
		ctl_client_close(c);
		return;
	}
	h.length = (uint32_t)len;
	memcpy(c->reply, &h, CTL_REPLY_HDR_LEN);
	memcpy(c->reply + CTL_REPLY_HDR_LEN, body, len);
	c->reply_len = CTL_REPLY_HDR_LEN + len;
	c->reply_off = 0;
	c->state = CTL_WRITING;
	(void)ctl_client_flush(c);
}

__attribute__((format(printf, 4, 5))) static void
ctl_client_reject(struct ctl_client *c, uint64_t *counter, enum ctl_status status,
    const char *fmt, ...)
{
	char msg[CTL_ERRLEN];
	va_list ap;

	(*counter)++;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* A counter per reason rather than a log line per bad request. */
	log_debug("ctl: rejected request: %s", msg);
	ctl_client_reply(c, status, msg, strlen(msg));
}

static uint64_t *
ctl_reject_counter(struct ctl *ctl, enum ctl_reject reason)
{
	switch (reason) {
	case CTL_REJECT_MAGIC:
		return &ctl->stats.bad_magic;
	case CTL_REJECT_VERSION:
		return &ctl->stats.bad_version;
	case CTL_REJECT_TYPE:
		return &ctl->stats.bad_type;
	case CTL_REJECT_LENGTH:
		return &ctl->stats.bad_length;
	case CTL_REJECT_ARGS:
	case CTL_REJECT_NONE:
		break;
	}
	return &ctl->stats.bad_args;
}

/* Returns false (after replying) when the header is not acceptable. */
static bool
ctl_check_header(struct ctl_client *c, const struct ctl_req_hdr *h)
{
	struct ctl *ctl = c->ctl;
	enum ctl_reject reason;
	char err[CTL_ERRLEN];

	if (ctl_request_check_header(h, err, sizeof(err), &reason) == -1) {
		ctl_client_reject(c, ctl_reject_counter(ctl, reason), CTL_USAGE,
		    "%s", err);
		return false;
	}
	if (ctl->handlers[h->type].fn == NULL) {
		ctl_client_reject(c, &ctl->stats.bad_type, CTL_USAGE,
		    "unknown request type %u", h->type);
		return false;
	}
	return true;
}

static void
ctl_dispatch(struct ctl_client *c)
{
	struct ctl *ctl = c->ctl;
	struct ctl_request req;
	enum ctl_reject reason;
	char err[CTL_ERRLEN] = "";
	enum ctl_status status;
	struct emit *out;
	const char *body;
	size_t len;

	if (ctl_request_parse(c->buf, c->need, &req, err, sizeof(err),
	    &reason) == -1) {
		ctl_client_reject(c, ctl_reject_counter(ctl, reason), CTL_USAGE,
		    "%s", err);
		return;
	}
	ctl->stats.requests++;
	out = emit_create(req.flags & CTL_F_JSON ? EMIT_JSON : EMIT_HUMAN);
	if (out == NULL) {
		ctl_client_reply(c, CTL_FAILED, "out of memory", 13);
		return;
	}
	err[0] = '\0';
	status = ctl->handlers[req.type].fn(&req, out, err, sizeof(err),
	    ctl->handlers[req.type].data);
	err[sizeof(err) - 1] = '\0';
	if (status == CTL_OK) {
		if ((body = emit_finish(out, &len)) != NULL)
			ctl_client_reply(c, CTL_OK, body, len);
		else
			ctl_client_reply(c, CTL_FAILED, "out of memory", 13);
	} else {
		if (status != CTL_USAGE)
			status = CTL_FAILED;
		if (err[0] == '\0')
			snprintf(err, sizeof(err), "operation failed");
		ctl_client_reply(c, status, err, strlen(err));
	}
	emit_destroy(out);
}

static void
ctl_client_read(int fd, void *data)
{
	struct ctl_client *c = data;
	struct ctl *ctl = c->ctl;

	if (c->state == CTL_WRITING) {
		/* Whatever follows a request is not ours to read: discard it. */
		char sink[512];
		ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);

		if (n == 0) {
			ev_fd_del(ctl->loop, fd);
			c->polling = true;
			ev_timer_rearm(ctl->loop, c->timer, CTL_POLL_MS);
		} else if (n == -1 && errno != EAGAIN && errno != EINTR)
			ctl_client_close(c);
		return;
	}
	for (;;) {
		ssize_t n = recv(fd, c->buf + c->have, c->need - c->have,
		    MSG_DONTWAIT);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				log_debug("ctl: client %d: recv: %s", fd, strerror(errno));
				ctl_client_close(c);
			}
			return;
		}
		if (n == 0) {
			/* A connect-and-close is a liveness probe (ctl_create
			 * does that); a cut request is a length error. */
			if (c->have > 0) {
				ctl->stats.bad_length++;
				log_debug("ctl: client %d: request cut at %zu of %zu "
				    "bytes", fd, c->have, c->need);
			}
			ctl_client_close(c);
			return;
		}
		c->have += (size_t)n;
		c->last_ms = ev_now_ms(ctl->loop);
		if (c->have < c->need)
			continue;
		if (c->need == CTL_HDR_LEN) {
			struct ctl_req_hdr h;

			memcpy(&h, c->buf, CTL_HDR_LEN);
			if (!ctl_check_header(c, &h))
				return;
			c->need += h.length;
			if (h.length > 0)
				continue;
		}
		ctl_dispatch(c);
		return;
	}
}

static void
ctl_client_write(int fd, void *data)
{
	struct ctl_client *c = data;

	(void)fd;
	if (c->state == CTL_WRITING)
		(void)ctl_client_flush(c);
}

static int64_t
ctl_client_timer(void *data)
{
	struct ctl_client *c = data;
	struct ctl *ctl = c->ctl;
	int64_t idle;

	if (c->polling && !ctl_client_flush(c))
		return EV_TIMER_STOP;	/* written (or broken) and closed */
	/*
	 * A request is small and sent in one go, so it gets the timeout from
	 * the accept: counted from the last byte, a client sending one byte
	 * just before each timeout would hold its slot for hours (and 32 of
	 * them would lock keepalived's "uplinkctl ha" out).  A reply can be
	 * megabytes for a slow reader, so there only a stall counts.
	 */
	idle = ev_now_ms(ctl->loop) -
	    (c->state == CTL_READING ? c->accepted_ms : c->last_ms);
	if (idle < ctl->timeout_ms) {
		int64_t left = ctl->timeout_ms - idle;

		return c->polling && left > CTL_POLL_MS ? CTL_POLL_MS : left;
	}
	ctl->stats.timeouts++;
	log_debug("ctl: client %d: stalled for %" PRId64 " ms, dropped", c->fd, idle);
	if (c->state == CTL_READING) {
		/* Best effort; a stalled client may not read it either. */
		char msg[] = "request timed out";
		struct ctl_reply_hdr h = { CTL_MAGIC, CTL_FAILED, sizeof(msg) - 1 };
		unsigned char out[CTL_REPLY_HDR_LEN + sizeof(msg)];

		memcpy(out, &h, CTL_REPLY_HDR_LEN);
		memcpy(out + CTL_REPLY_HDR_LEN, msg, sizeof(msg) - 1);
		(void)!send(c->fd, out, sizeof(out) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	ctl_client_close(c);
	return EV_TIMER_STOP;
}

/* --- server: listener --- */

static void ctl_accept(int fd, void *data);

static int64_t
ctl_accept_resume(void *data)
{
	struct ctl *ctl = data;

	if (ev_fd_add(ctl->loop, ctl->fd, ctl_accept, NULL, ctl) == -1) {
		log_warn("ctl: resume accepting");
		return CTL_ACCEPT_PAUSE_MS;
	}
	ctl->accept_timer = NULL;
	ctl->accepting = true;
	return EV_TIMER_STOP;
}

static void
ctl_refuse(struct ctl *ctl, int fd)
{
	static const char msg[] = "too many control clients";
	struct ctl_reply_hdr h = { CTL_MAGIC, CTL_FAILED, sizeof(msg) - 1 };
	unsigned char out[CTL_REPLY_HDR_LEN + sizeof(msg)];

	ctl->stats.overflows++;
	memcpy(out, &h, CTL_REPLY_HDR_LEN);
	memcpy(out + CTL_REPLY_HDR_LEN, msg, sizeof(msg) - 1);
	(void)!send(fd, out, sizeof(out) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

static void
ctl_accept(int lfd, void *data)
{
	struct ctl *ctl = data;

	for (int i = 0; i < CTL_ACCEPT_BATCH; i++) {
		struct ctl_client *c;
		int fd, slot;

		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* Out of fds or memory: the listener would stay
			 * readable and spin the loop, so stop listening for a
			 * moment. */
			log_warn("ctl: accept");
			if (ctl->accept_timer == NULL) {
				ctl->accept_timer = ev_timer_add(ctl->loop,
				    CTL_ACCEPT_PAUSE_MS, ctl_accept_resume, ctl);
				if (ctl->accept_timer != NULL) {
					ev_fd_del(ctl->loop, lfd);
					ctl->accepting = false;
				}
			}
			return;
		}
		if (ctl->nclients == CTL_MAX_CLIENTS) {
			ctl_refuse(ctl, fd);
			continue;
		}
		for (slot = 0; slot < CTL_MAX_CLIENTS; slot++)
			if (ctl->clients[slot] == NULL)
				break;
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			log_warn("ctl: client");
			close(fd);
			continue;
		}
		c->ctl = ctl;
		c->fd = fd;
		c->slot = slot;
		c->need = CTL_HDR_LEN;
		c->accepted_ms = c->last_ms = ev_now_ms(ctl->loop);
		c->timer = ev_timer_add(ctl->loop, ctl->timeout_ms,
		    ctl_client_timer, c);
		if (c->timer == NULL || ev_fd_add(ctl->loop, fd, ctl_client_read,
		    ctl_client_write, c) == -1) {
			log_warn("ctl: client");
			ev_timer_del(ctl->loop, c->timer);
			close(fd);
			free(c);
			continue;
		}
		ctl->clients[slot] = c;
		ctl->nclients++;
	}
}

static int
ctl_sockaddr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun->sun_path, path, strlen(path) + 1);
	return 0;
}

/* Creates the socket's directory (one level) when it is missing. */
static int
ctl_mkdir(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);	/* length checked by caller */
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (stat(dir, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		errno = ENOTDIR;
		log_warnx("ctl: %s is not a directory", dir);
		return -1;
	}
	if (errno != ENOENT || mkdir(dir, 0750) == -1 ||
	    chmod(dir, 0750) == -1) {
		log_warn("ctl: %s", dir);
		return -1;
	}
	return 0;
}

/* 1 when a server answers on sun, 0 when the socket is stale. */
static int
ctl_probe(const struct sockaddr_un *sun)
{
	int fd, rc;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	/* EAGAIN: a full backlog is still somebody listening. */
	rc = rc == 0 || errno != ECONNREFUSED;
	close(fd);
	return rc;
}

static int
ctl_bind(struct ctl *ctl, const struct sockaddr_un *sun)
{
	struct stat st;
	mode_t mask;
	int rc;

	for (int tries = 0; tries < 2; tries++) {
		/* The socket appears with mode 0660, not widened for a moment. */
		mask = umask(0117);
		rc = bind(ctl->fd, (const struct sockaddr *)sun, sizeof(*sun));
		umask(mask);
		if (rc == 0)
			return 0;
		if (errno != EADDRINUSE)
			break;
		if (lstat(ctl->path, &st) == -1) {
			if (errno == ENOENT)
				continue;
			break;
		}
		if (!S_ISSOCK(st.st_mode)) {
			log_warnx("ctl: %s exists and is not a socket", ctl->path);
			errno = EEXIST;
			return -1;
		}
		if (ctl_probe(sun) != 0) {
			log_warnx("ctl: %s: another uplinkd answers there",
			    ctl->path);
			errno = EADDRINUSE;
			return -1;
		}
		log_info("ctl: replacing stale socket %s", ctl->path);
		if (unlink(ctl->path) == -1 && errno != ENOENT)
			break;
	}
	log_warn("ctl: bind %s", ctl->path);
	return -1;
}

struct ctl *
ctl_create(struct ev_loop *loop, const char *path)
{
	struct sockaddr_un sun;
	struct ctl *ctl;
	struct stat st;
	int saved;

	if (ctl_sockaddr(path, &sun) == -1) {
		log_warnx("ctl: socket path too long (%zu bytes, at most %zu): %s",
		    strlen(path), sizeof(sun.sun_path) - 1, path);
		errno = ENAMETOOLONG;
		return NULL;
	}
	if ((ctl = calloc(1, sizeof(*ctl))) == NULL)
		return NULL;
	ctl->loop = loop;
	ctl->timeout_ms = CTL_TIMEOUT_MS;
	memcpy(ctl->path, sun.sun_path, sizeof(ctl->path));
	ctl->fd = -1;
	if (ctl_mkdir(path) == -1)
		goto fail;
	ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->fd == -1) {
		log_warn("ctl: socket");
		goto fail;
	}
	if (ctl_bind(ctl, &sun) == -1)
		goto fail;
	if (chmod(path, 0660) == -1 || stat(path, &st) == -1 ||
	    listen(ctl->fd, SOMAXCONN) == -1 ||
	    ev_fd_add(loop, ctl->fd, ctl_accept, NULL, ctl) == -1) {
		saved = errno;
		log_warn("ctl: %s", path);
		unlink(path);
		errno = saved;
		goto fail;
	}
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	ctl->accepting = true;
	return ctl;
fail:
	saved = errno;
	if (ctl->fd != -1)
		close(ctl->fd);
	free(ctl);
	errno = saved;
	return NULL;
}

void
ctl_destroy(struct ctl *ctl)
{
	struct stat st;

	if (ctl == NULL)
		return;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		if (ctl->clients[i] != NULL)
			ctl_client_close(ctl->clients[i]);
	ev_timer_del(ctl->loop, ctl->accept_timer);
	if (ctl->accepting)
		ev_fd_del(ctl->loop, ctl->fd);
	close(ctl->fd);
	/* Only our own socket: a newer daemon may have replaced it. */
	if (stat(ctl->path, &st) == 0 && st.st_dev == ctl->dev &&
	    st.st_ino == ctl->ino)
		unlink(ctl->path);
	free(ctl);
}

void
ctl_register(struct ctl *ctl, enum ctl_type type, ctl_handler handler,
    void *data)
{
	if (type <= 0 || type >= CTL_TYPE_MAX) {
		log_warnx("ctl: cannot register request type %d", (int)type);
		return;
	}
	ctl->handlers[type].fn = handler;
	ctl->handlers[type].data = data;
}

const struct ctl_stats *
ctl_stats(const struct ctl *ctl)
{
	return &ctl->stats;
}

void
ctl_set_timeout(struct ctl *ctl, int timeout_ms)
{
	ctl->timeout_ms = timeout_ms > 0 ? timeout_ms : CTL_TIMEOUT_MS;
}

/* --- client --- */

static int64_t
ctl_ms_left(int64_t deadline_us)
{
	int64_t left = (deadline_us - ev_clock_us() + 999) / 1000;

	return left > 0 ? left : 0;
}

/* Waits for `events` on fd until the deadline: 0, or -1 with ETIMEDOUT. */
static int
ctl_wait(int fd, short events, int64_t deadline_us)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		int64_t left = ctl_ms_left(deadline_us);
		int n;

		if (left == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		n = poll(&pfd, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n == -1 && errno != EINTR)
			return -1;
	}
}

/* Reads exactly len bytes: 0, or -1 with errno (ECONNRESET on early EOF). */
static int
ctl_read_full(int fd, void *buf, size_t len, int64_t deadline_us)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(fd, (char *)buf + got, len - got, MSG_DONTWAIT);

		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (ctl_wait(fd, POLLIN, deadline_us) == -1)
			return -1;
	}
	return 0;
}

static int
ctl_write_full(int fd, const void *buf, size_t len, int64_t deadline_us)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, (const char *)buf + off, len - off,
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (ctl_wait(fd, POLLOUT, deadline_us) == -1)
			return -1;
	}
	return 0;
}

int
ctl_call(const char *path, enum ctl_type type, uint32_t flags, int argc,
    char *const argv[], int timeout_ms, uint32_t *status, char **body)
{
	unsigned char req[CTL_HDR_LEN + CTL_MAX_REQUEST];
	struct ctl_req_hdr h = { CTL_MAGIC, CTL_VERSION, (uint16_t)type, flags, 0 };
	struct ctl_reply_hdr rh;
	struct sockaddr_un sun;
	struct timeval tv;
	int64_t deadline_us;
	int fd, saved;
	char *b = NULL;
	size_t len = 0;

	if (argc < 0 || argc > CTL_MAX_ARGS || timeout_ms <= 0) {
		errno = argc > CTL_MAX_ARGS ? E2BIG : EINVAL;
		return -1;
	}
	for (int i = 0; i < argc; i++) {
		size_t l = strlen(argv[i]) + 1;

		if (l > CTL_MAX_REQUEST - len) {
			errno = E2BIG;
			return -1;
		}
		memcpy(req + CTL_HDR_LEN + len, argv[i], l);
		len += l;
	}
	h.length = (uint32_t)len;
	memcpy(req, &h, CTL_HDR_LEN);
	if (ctl_sockaddr(path, &sun) == -1)
		return -1;

	deadline_us = ev_clock_us() + (int64_t)timeout_ms * 1000;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	/* A blocking connect waits on a full backlog at most this long. */
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		if (errno == EINPROGRESS || errno == EAGAIN)
			errno = ETIMEDOUT;
		goto fail;
	}
	/* The daemon may answer and close before taking the whole request
	 * (a rejected header): its reply is still worth reading. */
	if (ctl_write_full(fd, req, CTL_HDR_LEN + len, deadline_us) == -1 &&
	    errno != EPIPE && errno != ECONNRESET)
		goto fail;
	if (ctl_read_full(fd, &rh, sizeof(rh), deadline_us) == -1)
		goto fail;
	if (rh.magic != CTL_MAGIC || rh.length > CTL_MAX_REPLY) {
		errno = EPROTO;
		goto fail;
	}
	if ((b = malloc((size_t)rh.length + 1)) == NULL)
		goto fail;
	if (ctl_read_full(fd, b, rh.length, deadline_us) == -1)
		goto fail;
	b[rh.length] = '\0';
	close(fd);
	*status = rh.status;
	*body = b;
	return 0;
fail:
	saved = errno;
	free(b);
	close(fd);
	errno = saved;
	return -1;
}
