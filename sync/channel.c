/*
 * channel: TCP + TLS 1.3 between the two nodes, inside the one event loop.
 *
 * A connection (struct chan_conn) goes CONNECTING (outbound TCP connect
 * running) -> HANDSHAKE -> UP.  Inbound connections wait in a small fixed
 * array of pending slots so that a flood of half-open or plaintext clients
 * costs at most CHANNEL_MAX_PENDING handshakes, each bounded by the
 * handshake timeout; the configured peer's address is never locked out
 * by them (chan_on_accept).
 *
 * The greeting.  In TLS 1.3 the client finishes its handshake before the
 * server has looked at the client's certificate: a dialer whose own
 * certificate the peer refuses would see a "successful" handshake, report
 * UP, and only learn the truth from the alert that follows.  So the
 * accepting side, once it has authenticated the dialer, writes a fixed
 * 4-byte greeting as the first application bytes, and the dialer reports
 * UP only when it has read them (phase AWAIT_GO).  The greeting is the
 * channel's own: it never reaches on_data and is not counted in bytes_in
 * or bytes_out.
 *
 * Reentrancy.  on_event and on_data may call channel_send, channel_close
 * or even channel_destroy.  Every entry from the event loop brackets its
 * work with chan_enter()/chan_leave(); a connection closed while inside is
 * only unlinked and closed, and its SSL freed when the outermost callback
 * returns; a channel destroyed while inside is freed the same way.  Code
 * that calls out to the owner checks c->dead before touching c again.
 *
 * SIGPIPE: OpenSSL writes with write(2); the daemon ignores SIGPIPE
 * (main.c), as must any other program using this module.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "channel.h"
#include "log.h"
#include "netaddr.h"

#define CHANNEL_MAX_PENDING	4	/* inbound handshakes at once */
#define CHANNEL_HANDSHAKE_MS	5000
#define CHANNEL_ACCEPT_BURST	16	/* accepts per wakeup */
#define CHANNEL_READ_BUDGET	(1u << 20)	/* bytes per wakeup */
#define CHANNEL_WRITE_CHUNK	(256u << 10)	/* bytes per SSL_write */
#define CHANNEL_READ_AHEAD	(64u << 10)	/* bytes per read() of the socket */
#define CHANNEL_QUEUE_KEEP	(1u << 20)	/* buffer kept when empty */
#define CHANNEL_GO_LEN		4

static const uint8_t channel_go[CHANNEL_GO_LEN] = { 'U', 'P', 'C', '1' };

enum conn_phase {
	CONN_CONNECTING,	/* outbound TCP connect in progress */
	CONN_HANDSHAKE,
	CONN_AWAIT_GO,		/* outbound: handshake done, greeting not yet read */
	CONN_UP,
};

struct chan_conn {
	struct channel *ch;
	int fd;
	SSL *ssl;
	bool inbound;
	bool dead;
	bool handshake_done;
	bool read_wants_write;	/* SSL_read returned WANT_WRITE */
	bool write_wants_read;	/* SSL_write returned WANT_READ */
	bool peer_closed;	/* the peer's end closed or reset it */
	bool from_peer;		/* inbound from the configured peer's address */
	bool rx_drained;	/* the last read() left the socket empty */
	enum conn_phase phase;
	size_t go_seen;
	struct ev_timer *timer;	/* connect + handshake deadline */
	char addr[NETENDPOINT_STRLEN];
	struct chan_conn *next;	/* graveyard link */
};

struct channel {
	struct ev_loop *loop;
	const struct config *cfg;
	channel_event_cb on_event;
	channel_data_cb on_data;
	void *data;
	SSL_CTX *ctx;
	int lfd;
	bool dialer;
	bool destroyed;
	int depth;			/* nesting of event-loop entries */
	int hs_timeout_ms;
	int64_t backoff_ms;		/* next dial delay */
	int64_t dial_delay_ms;		/* the wait dial_timer was set for */
	int64_t dial_due_ms;		/* ... and when it fires (ev_now_ms) */
	int64_t unreachable_ms;		/* first failed dial since the last
					 * connection, 0 if none */
	int64_t unreachable_log_ms;	/* last said so at warning level */
	uint64_t unreachable_dials;	/* st.dials before that first one */
	int64_t down_since_ms;		/* no authenticated connection since */
	struct ev_timer *absent_timer;	/* listener: says so while it lasts */
	int64_t refuse_log_ms;		/* last refusal logged at warning level */
	uint64_t refuse_quiet;		/* refusals since, logged at debug only */
	struct ev_timer *dial_timer;
	struct ev_timer *lifetime_timer;	/* the daily certificate check */
	struct chan_conn *pending[CHANNEL_MAX_PENDING];
	struct chan_conn *dial;		/* outbound, not yet up */
	struct chan_conn *up;
	struct chan_conn *graveyard;
	/* Outgoing bytes for ch->up: q[qhead .. qhead+qlen).  The first qskip
	 * of them are the greeting, not counted in bytes_out. */
	uint8_t *q;
	size_t qhead, qlen, qcap, qskip;
	struct channel_stats st;
};

static void conn_handshake(struct chan_conn *c);
static void conn_read(struct chan_conn *c);
static void conn_flush(struct chan_conn *c);
static void dial_schedule(struct channel *ch);

/* A certificate's notAfter as Unix seconds; 0 if it cannot be read. */
static int64_t
cert_not_after(const X509 *x)
{
	const ASN1_TIME *t = x ? X509_get0_notAfter(x) : NULL;
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

/* "2027-03-01 12:00 UTC" */
static const char *
utc_str(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm) == 0)
		snprintf(buf, len, "@%lld", (long long)t);
	return buf;
}

/*
 * An expired certificate costs nothing while the connection it
 * authenticated stays up: TLS checks dates at the handshake only.  The
 * pair would fail at the next reconnect, a network blip or a restart,
 * possibly at 3 a.m.  So the log says so well before, and again every day.
 */
static void
lifetime_warn(const char *what, const char *file, int64_t not_after, int64_t now)
{
	char when[40];
	int64_t left = not_after - now;

	if (not_after == 0 || left > (int64_t)CHANNEL_CERT_WARN_DAYS * 86400)
		return;
	utc_str(not_after, when, sizeof(when));
	if (left <= 0)
		log_warnx("channel: %s %s expired on %s: the peer refuses it at the next "
		    "connection; renew it and reload", what, file, when);
	else
		log_warnx("channel: %s %s expires on %s, in %.1f days: renew it and reload "
		    "before then", what, file, when, (double)left / 86400);
}

static void
chan_enter(struct channel *ch)
{
	ch->depth++;
}

static void
conn_free(struct chan_conn *c)
{
	SSL_free(c->ssl);
	free(c);
}

static void
chan_free(struct channel *ch)
{
	while (ch->graveyard) {
		struct chan_conn *c = ch->graveyard;

		ch->graveyard = c->next;
		conn_free(c);
	}
	SSL_CTX_free(ch->ctx);
	free(ch->q);
	free(ch);
}

/* Must be the last thing an event-loop callback does with ch. */
static void
chan_leave(struct channel *ch)
{
	if (--ch->depth > 0)
		return;
	if (ch->destroyed) {
		chan_free(ch);
		return;
	}
	while (ch->graveyard) {
		struct chan_conn *c = ch->graveyard;

		ch->graveyard = c->next;
		conn_free(c);
	}
}

static void __attribute__((format(printf, 2, 3)))
chan_error(struct channel *ch, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ch->st.last_error, sizeof(ch->st.last_error), fmt, ap);
	va_end(ap);
	ch->st.last_error_ms = ev_now_ms(ch->loop);
}

static const char *
conn_dir(const struct chan_conn *c)
{
	return c->inbound ? "from" : "to";
}

/* The reason OpenSSL gives for the last failure on c, then clears its
 * error queue.  err is the SSL_get_error() value and sys the errno seen
 * right after the call. */
static void
conn_ssl_reason(struct chan_conn *c, int err, int sys, char *buf, size_t len)
{
	unsigned long e = ERR_peek_error();
	long vr = SSL_get_verify_result(c->ssl);

	/* The peer's process closed its socket, or exited and its kernel
	 * closed it: no close_notify when it was killed. */
	c->peer_closed = err == SSL_ERROR_ZERO_RETURN ||
	    (err == SSL_ERROR_SYSCALL && (sys == 0 || sys == ECONNRESET)) ||
	    (err == SSL_ERROR_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
	if (e != 0) {
		const char *r = ERR_reason_error_string(e);
		char num[32];

		if (r == NULL) {
			snprintf(num, sizeof(num), "error %lx", e);
			r = num;
		}
		if (vr != X509_V_OK)
			snprintf(buf, len, "%s (%s)", r, X509_verify_cert_error_string(vr));
		else
			snprintf(buf, len, "%s", r);
	} else if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && sys == 0))
		snprintf(buf, len, "connection closed by peer");
	else if (err == SSL_ERROR_SYSCALL)
		snprintf(buf, len, "%s", strerror(sys));
	else
		snprintf(buf, len, "TLS error %d", err);
	ERR_clear_error();
}

static void
conn_want_write(struct chan_conn *c, bool want)
{
	if (ev_fd_want_write(c->ch->loop, c->fd, want) == -1)
		log_warn("channel: epoll on fd %d", c->fd);
}

static void
queue_reset(struct channel *ch)
{
	ch->qhead = ch->qlen = ch->qskip = 0;
	if (ch->qcap > CHANNEL_QUEUE_KEEP) {
		free(ch->q);
		ch->q = NULL;
		ch->qcap = 0;
	}
}

/* The caller has checked the CHANNEL_MAX_QUEUED bound. */
static int
queue_append(struct channel *ch, const void *buf, size_t len)
{
	if (ch->qhead + ch->qlen + len > ch->qcap && ch->qhead > 0) {
		/* Safe under a pending SSL_write retry thanks to
		 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER. */
		memmove(ch->q, ch->q + ch->qhead, ch->qlen);
		ch->qhead = 0;
	}
	if (ch->qlen + len > ch->qcap) {
		size_t cap = ch->qcap ? ch->qcap : 64u << 10;
		uint8_t *q;

		while (cap < ch->qlen + len)
			cap *= 2;
		if (cap > CHANNEL_MAX_QUEUED)
			cap = CHANNEL_MAX_QUEUED;
		if ((q = realloc(ch->q, cap)) == NULL)
			return -1;
		ch->q = q;
		ch->qcap = cap;
	}
	memcpy(ch->q + ch->qhead + ch->qlen, buf, len);
	ch->qlen += len;
	return 0;
}

/* Unlinks and closes c; the SSL is freed once no callback is running. */
static void
conn_close(struct chan_conn *c)
{
	struct channel *ch = c->ch;

	if (c->dead)
		return;
	c->dead = true;
	for (int i = 0; i < CHANNEL_MAX_PENDING; i++)
		if (ch->pending[i] == c)
			ch->pending[i] = NULL;
	if (ch->dial == c)
		ch->dial = NULL;
	if (ch->up == c)
		ch->up = NULL;
	ev_timer_del(ch->loop, c->timer);
	c->timer = NULL;
	ev_fd_del(ch->loop, c->fd);
	if (c->handshake_done) {
		/* Best effort close_notify; never waits. */
		ERR_clear_error();
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	close(c->fd);
	c->fd = -1;
	if (ch->depth > 0) {
		c->next = ch->graveyard;
		ch->graveyard = c;
	} else
		conn_free(c);
}

/* A handshake refused or failed: counted, nothing was delivered. */
static void
conn_refuse(struct chan_conn *c, const char *why)
{
	struct channel *ch = c->ch;
	bool outbound = !c->inbound;

	ch->st.auth_failures++;
	chan_error(ch, "refused %s %s: %s", conn_dir(c), c->addr, why);
	/* Anyone who can reach the port can make us refuse: at most one
	 * warning a second, the rest at debug level and in the counter. */
	if (ch->refuse_log_ms == 0 || ch->st.last_error_ms - ch->refuse_log_ms >= 1000) {
		if (ch->refuse_quiet > 0)
			log_warnx("channel: %s (and %llu more refused)", ch->st.last_error,
			    (unsigned long long)ch->refuse_quiet);
		else
			log_warnx("channel: %s", ch->st.last_error);
		ch->refuse_log_ms = ch->st.last_error_ms;
		ch->refuse_quiet = 0;
	} else {
		ch->refuse_quiet++;
		log_debug("channel: %s", ch->st.last_error);
	}
	conn_close(c);
	if (outbound)
		dial_schedule(ch);
}

/*
 * A dial that never reached TLS (refused, timed out, no route): said at
 * warning level when it starts to happen and then once every
 * CHANNEL_UNREACHABLE_LOG_MS while it goes on, so that a log read at 3 a.m.
 * tells why the pair is not in sync; each attempt at debug level.
 */
static void
chan_unreachable(struct channel *ch)
{
	int64_t now = ev_now_ms(ch->loop);

	if (ch->unreachable_ms == 0) {
		ch->unreachable_ms = ch->unreachable_log_ms = now;
		ch->unreachable_dials = ch->st.dials - 1;
		log_warnx("channel: %s; retrying, at most %d s apart", ch->st.last_error,
		    CHANNEL_BACKOFF_MAX_MS / 1000);
	} else if (now - ch->unreachable_log_ms >= CHANNEL_UNREACHABLE_LOG_MS) {
		ch->unreachable_log_ms = now;
		log_warnx("channel: the peer has not been reached for %lld s (%llu attempts): %s",
		    (long long)(now - ch->unreachable_ms) / 1000,
		    (unsigned long long)(ch->st.dials - ch->unreachable_dials), ch->st.last_error);
	} else
		log_debug("channel: %s", ch->st.last_error);
}

/*
 * The listener's counterpart of chan_unreachable: only the peer dials, so
 * nothing fails here while it stays away, and the log would otherwise be
 * silent from the loss until the peer cache expires.
 */
static int64_t
chan_on_absent_timer(void *data)
{
	struct channel *ch = data;
	char ep[NETENDPOINT_STRLEN];

	log_warnx("channel: no connection from %s for %lld s (it dials this node's %s)%s%s",
	    ch->cfg->sync.tls.peer_name, (long long)(ev_now_ms(ch->loop) - ch->down_since_ms) / 1000,
	    netendpoint_str(&ch->cfg->sync.listen, ep, sizeof(ep)),
	    ch->st.last_error[0] ? "; last error: " : "", ch->st.last_error);
	return CHANNEL_UNREACHABLE_LOG_MS;
}

/* From now on there is no authenticated connection (the start, or a loss). */
static void
chan_down(struct channel *ch)
{
	ch->down_since_ms = ev_now_ms(ch->loop);
	if (!ch->dialer && ch->absent_timer == NULL &&
	    (ch->absent_timer = ev_timer_add(ch->loop, CHANNEL_UNREACHABLE_LOG_MS,
	    chan_on_absent_timer, ch)) == NULL)
		log_warn("channel: cannot schedule the absent-peer log");
}

/* An outbound attempt that never reached TLS (connect refused, ...). */
static void
conn_fail(struct chan_conn *c, const char *why)
{
	struct channel *ch = c->ch;

	chan_error(ch, "connect to %s: %s", c->addr, why);
	chan_unreachable(ch);
	conn_close(c);
	dial_schedule(ch);
}

/* The authenticated connection is gone. */
static void
conn_lost(struct chan_conn *c, const char *why)
{
	struct channel *ch = c->ch;

	chan_error(ch, "connection %s %s lost: %s", conn_dir(c), c->addr, why);
	log_warnx("channel: %s", ch->st.last_error);
	ch->st.closed_by_peer = c->peer_closed;
	conn_close(c);
	queue_reset(ch);
	ch->st.authenticated = false;
	ch->st.tls_version[0] = ch->st.cipher[0] = ch->st.peer_cn[0] = '\0';
	if (!ch->destroyed) {
		chan_down(ch);
		ch->on_event(CHANNEL_EV_DOWN, ch->data);
	}
	dial_schedule(ch);
}

static void
conn_up(struct chan_conn *c)
{
	struct channel *ch = c->ch;
	X509 *peer = SSL_get0_peer_certificate(c->ssl);
	X509_NAME *subj = peer ? X509_get_subject_name(peer) : NULL;

	if (ch->up != NULL)
		conn_lost(ch->up, "replaced by a new connection from the peer");
	if (c->dead || ch->destroyed)
		return;
	if (ch->dial != NULL && ch->dial != c)
		conn_close(ch->dial);
	ev_timer_del(ch->loop, ch->dial_timer);
	ch->dial_timer = NULL;
	ev_timer_del(ch->loop, ch->absent_timer);
	ch->absent_timer = NULL;
	ev_timer_del(ch->loop, c->timer);
	c->timer = NULL;
	for (int i = 0; i < CHANNEL_MAX_PENDING; i++)
		if (ch->pending[i] == c)
			ch->pending[i] = NULL;
	if (ch->dial == c)
		ch->dial = NULL;
	ch->up = c;
	c->phase = CONN_UP;
	queue_reset(ch);
	if (c->inbound) {
		/* Cannot fail: the queue was just emptied and 4 bytes fit. */
		if (queue_append(ch, channel_go, CHANNEL_GO_LEN) == -1) {
			conn_lost(c, "out of memory");
			return;
		}
		ch->qskip = CHANNEL_GO_LEN;
		conn_want_write(c, true);
	}
	ch->backoff_ms = CHANNEL_BACKOFF_MIN_MS;
	ch->unreachable_ms = 0;
	ch->st.authenticated = true;
	if (ch->st.connects++ > 0)
		ch->st.reconnects++;
	snprintf(ch->st.tls_version, sizeof(ch->st.tls_version), "%s", SSL_get_version(c->ssl));
	snprintf(ch->st.cipher, sizeof(ch->st.cipher), "%s", SSL_get_cipher_name(c->ssl));
	ch->st.peer_cn[0] = '\0';
	if (subj == NULL || X509_NAME_get_text_by_NID(subj, NID_commonName, ch->st.peer_cn,
	    (int)sizeof(ch->st.peer_cn)) < 0)
		snprintf(ch->st.peer_cn, sizeof(ch->st.peer_cn), "%s", ch->cfg->sync.tls.peer_name);
	log_info("channel: authenticated connection %s %s (%s, %s, peer %s)", conn_dir(c),
	    c->addr, ch->st.tls_version, ch->st.cipher, ch->st.peer_cn);
	ch->st.peer_cert_not_after = cert_not_after(peer);
	lifetime_warn("the certificate of peer", ch->st.peer_cn, ch->st.peer_cert_not_after,
	    (int64_t)time(NULL));
	ch->on_event(CHANNEL_EV_UP, ch->data);
}

/* The handshake finished: check again what the verifier already checked
 * (a certificate is there, the name is right) so that a mistake in the
 * SSL_CTX setup cannot turn into an unauthenticated channel. */
static void
conn_authenticated(struct chan_conn *c)
{
	struct channel *ch = c->ch;
	const char *name = ch->cfg->sync.tls.peer_name;
	X509 *peer = SSL_get0_peer_certificate(c->ssl);

	c->handshake_done = true;
	if (peer == NULL || SSL_get_verify_result(c->ssl) != X509_V_OK) {
		conn_refuse(c, "no verified peer certificate");
		return;
	}
	if (X509_check_host(peer, name, 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1) {
		conn_refuse(c, "peer certificate is not for the configured peer_name");
		return;
	}
	if (SSL_version(c->ssl) < TLS1_3_VERSION) {
		conn_refuse(c, "TLS below 1.3");
		return;
	}
	if (c->inbound) {
		conn_up(c);
	} else {
		c->phase = CONN_AWAIT_GO;
		conn_want_write(c, false);
	}
	/* Bytes may already sit in OpenSSL's buffers: no epoll wakeup would
	 * announce them. */
	if (!c->dead)
		conn_read(c);
}

static void
conn_handshake(struct chan_conn *c)
{
	char why[128];
	int r, err, sys;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(c->ssl);
	sys = errno;
	if (r == 1) {
		conn_authenticated(c);
		return;
	}
	err = SSL_get_error(c->ssl, r);
	if (err == SSL_ERROR_WANT_READ) {
		conn_want_write(c, false);
		return;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		conn_want_write(c, true);
		return;
	}
	conn_ssl_reason(c, err, sys, why, sizeof(why));
	conn_refuse(c, why);
}

/* Notes whether a read() took less than OpenSSL asked for, which means
 * it emptied the socket: the read loop then stops without another read()
 * that would only find EAGAIN, a system call per wake-up in a stream. */
static long
conn_bio_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
    int ret, size_t *processed)
{
	struct chan_conn *c = (void *)BIO_get_callback_arg(b);

	(void)argp;
	(void)argi;
	(void)argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN))
		c->rx_drained = ret <= 0 || processed == NULL || *processed < len;
	return ret;
}

static void
conn_read(struct chan_conn *c)
{
	struct channel *ch = c->ch;
	uint8_t buf[16384];
	size_t budget = 0;
	char why[128];

	c->read_wants_write = false;
	for (;;) {
		const uint8_t *p = buf;
		size_t len;
		int n, err, sys;

		ERR_clear_error();
		errno = 0;
		n = SSL_read(c->ssl, buf, sizeof(buf));
		sys = errno;
		if (n <= 0) {
			err = SSL_get_error(c->ssl, n);
			if (err == SSL_ERROR_WANT_READ)
				return;
			if (err == SSL_ERROR_WANT_WRITE) {
				c->read_wants_write = true;
				conn_want_write(c, true);
				return;
			}
			conn_ssl_reason(c, err, sys, why, sizeof(why));
			if (c->phase == CONN_UP)
				conn_lost(c, why);
			else
				conn_refuse(c, why);
			return;
		}
		len = (size_t)n;
		budget += len;
		if (c->phase == CONN_AWAIT_GO) {
			size_t k = CHANNEL_GO_LEN - c->go_seen;

			if (k > len)
				k = len;
			if (memcmp(p, channel_go + c->go_seen, k) != 0) {
				conn_refuse(c, "peer sent no channel greeting");
				return;
			}
			c->go_seen += k;
			p += k;
			len -= k;
			if (c->go_seen < CHANNEL_GO_LEN)
				continue;
			conn_up(c);
			if (c->dead)
				return;
		}
		if (len > 0) {
			ch->st.bytes_in += len;
			ch->on_data(p, len, ch->data);
			if (c->dead)
				return;
		}
		/* Level-triggered epoll brings us back for what is left in the
		 * socket (or arrives after the read that emptied it); what
		 * OpenSSL already holds (read ahead, or decrypted and not yet
		 * taken) must be read now. */
		if ((c->rx_drained || budget >= CHANNEL_READ_BUDGET) && !SSL_has_pending(c->ssl))
			return;
	}
}

static void
conn_flush(struct chan_conn *c)
{
	struct channel *ch = c->ch;
	char why[128];

	c->write_wants_read = false;
	while (ch->qlen > 0) {
		size_t chunk = ch->qlen < CHANNEL_WRITE_CHUNK ? ch->qlen : CHANNEL_WRITE_CHUNK;
		int n, err, sys;

		ERR_clear_error();
		errno = 0;
		n = SSL_write(c->ssl, ch->q + ch->qhead, (int)chunk);
		sys = errno;
		if (n > 0) {
			size_t w = (size_t)n, skip = w < ch->qskip ? w : ch->qskip;

			ch->qskip -= skip;
			ch->st.bytes_out += w - skip;
			ch->qhead += w;
			ch->qlen -= w;
			continue;
		}
		err = SSL_get_error(c->ssl, n);
		if (err == SSL_ERROR_WANT_WRITE) {
			conn_want_write(c, true);
			return;
		}
		if (err == SSL_ERROR_WANT_READ) {
			c->write_wants_read = true;
			conn_want_write(c, c->read_wants_write);
			return;
		}
		conn_ssl_reason(c, err, sys, why, sizeof(why));
		conn_lost(c, why);
		return;
	}
	ch->qhead = 0;
	if (ch->qcap > CHANNEL_QUEUE_KEEP)
		queue_reset(ch);
	conn_want_write(c, c->read_wants_write);
}

static void
conn_connected(struct chan_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		conn_fail(c, strerror(err));
		return;
	}
	c->phase = CONN_HANDSHAKE;
	conn_handshake(c);
}

static void
conn_on_read(int fd, void *data)
{
	struct chan_conn *c = data;
	struct channel *ch = c->ch;

	(void)fd;
	chan_enter(ch);
	switch (c->phase) {
	case CONN_CONNECTING:
		conn_connected(c);
		break;
	case CONN_HANDSHAKE:
		conn_handshake(c);
		break;
	case CONN_AWAIT_GO:
		conn_read(c);
		break;
	case CONN_UP:
		if (c->write_wants_read)
			conn_flush(c);
		if (!c->dead)
			conn_read(c);
		break;
	}
	chan_leave(ch);
}

static void
conn_on_write(int fd, void *data)
{
	struct chan_conn *c = data;
	struct channel *ch = c->ch;

	(void)fd;
	chan_enter(ch);
	switch (c->phase) {
	case CONN_CONNECTING:
		conn_connected(c);
		break;
	case CONN_HANDSHAKE:
		conn_handshake(c);
		break;
	case CONN_AWAIT_GO:
		if (c->read_wants_write)
			conn_read(c);
		else
			conn_want_write(c, false);
		break;
	case CONN_UP:
		if (c->read_wants_write)
			conn_read(c);
		if (!c->dead)
			conn_flush(c);
		break;
	}
	chan_leave(ch);
}

static int64_t
conn_on_timeout(void *data)
{
	struct chan_conn *c = data;
	struct channel *ch = c->ch;
	char why[64];

	chan_enter(ch);
	c->timer = NULL;	/* EV_TIMER_STOP removes it */
	if (c->phase == CONN_CONNECTING) {
		conn_fail(c, "timed out");
	} else {
		snprintf(why, sizeof(why), "no authentication within %d ms", ch->hs_timeout_ms);
		conn_refuse(c, why);
	}
	chan_leave(ch);
	return EV_TIMER_STOP;
}

static void
sock_tune(int fd)
{
	static const struct {
		int level, name, value;
		const char *what;
	} opts[] = {
		{ IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY" },
		{ SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE" },
		/* A silent dead peer is found after 1 s idle + 2 probes 1 s
		 * apart; unacknowledged data gives up after 3 s. */
		{ IPPROTO_TCP, TCP_KEEPIDLE, 1, "TCP_KEEPIDLE" },
		{ IPPROTO_TCP, TCP_KEEPINTVL, 1, "TCP_KEEPINTVL" },
		{ IPPROTO_TCP, TCP_KEEPCNT, 2, "TCP_KEEPCNT" },
		{ IPPROTO_TCP, TCP_USER_TIMEOUT, 3000, "TCP_USER_TIMEOUT" },
	};

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (setsockopt(fd, opts[i].level, opts[i].name, &opts[i].value,
		    sizeof(opts[i].value)) == -1)
			log_warn("channel: setsockopt %s", opts[i].what);
}

static socklen_t
ep_to_sa(const struct netendpoint *ep, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ep->addr.family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(ep->port);
		memcpy(&s6->sin6_addr, ep->addr.a, 16);
		return sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(ep->port);
		memcpy(&s4->sin_addr, ep->addr.a, 4);
		return sizeof(*s4);
	}
}

static void
sa_to_ep(const struct sockaddr_storage *ss, struct netendpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		ep->addr.family = AF_INET6;
		memcpy(ep->addr.a, &s6->sin6_addr, 16);
		ep->port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		ep->addr.family = AF_INET;
		memcpy(ep->addr.a, &s4->sin_addr, 4);
		ep->port = ntohs(s4->sin_port);
	}
}

/* Takes ownership of fd (closed on failure). */
static struct chan_conn *
conn_new(struct channel *ch, int fd, bool inbound, const char *addr)
{
	struct chan_conn *c = calloc(1, sizeof(*c));
	X509_VERIFY_PARAM *vp;

	if (c == NULL) {
		close(fd);
		return NULL;
	}
	c->ch = ch;
	c->fd = fd;
	c->inbound = inbound;
	c->phase = inbound ? CONN_HANDSHAKE : CONN_CONNECTING;
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	if ((c->ssl = SSL_new(ch->ctx)) == NULL || SSL_set_fd(c->ssl, fd) != 1)
		goto fail;
	BIO_set_callback_arg(SSL_get_rbio(c->ssl), (char *)c);
	BIO_set_callback_ex(SSL_get_rbio(c->ssl), conn_bio_cb);
	/* The verifier checks the name for both directions: the server's
	 * verification of the client certificate uses the same parameters. */
	vp = SSL_get0_param(c->ssl);
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_WILDCARDS);
	if (X509_VERIFY_PARAM_set1_host(vp, ch->cfg->sync.tls.peer_name, 0) != 1)
		goto fail;
	if (inbound) {
		SSL_set_accept_state(c->ssl);
	} else {
		SSL_set_connect_state(c->ssl);
		if (SSL_set_tlsext_host_name(c->ssl, ch->cfg->sync.tls.peer_name) != 1)
			goto fail;
	}
	sock_tune(fd);
	if (ev_fd_add(ch->loop, fd, conn_on_read, conn_on_write, c) == -1)
		goto fail;
	if ((c->timer = ev_timer_add(ch->loop, ch->hs_timeout_ms, conn_on_timeout, c)) == NULL) {
		ev_fd_del(ch->loop, fd);
		goto fail;
	}
	return c;
fail:
	ERR_clear_error();
	SSL_free(c->ssl);
	close(fd);
	free(c);
	errno = ENOMEM;
	return NULL;
}

static void
dial_start(struct channel *ch)
{
	struct sockaddr_storage ss;
	socklen_t sl = ep_to_sa(&ch->cfg->sync.peer, &ss);
	char addr[NETENDPOINT_STRLEN];
	struct chan_conn *c;
	int fd;

	netendpoint_str(&ch->cfg->sync.peer, addr, sizeof(addr));
	ch->st.dials++;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		chan_error(ch, "connect to %s: socket: %s", addr, strerror(errno));
		log_warnx("channel: %s", ch->st.last_error);
		dial_schedule(ch);
		return;
	}
	if (connect(fd, (struct sockaddr *)&ss, sl) == -1 && errno != EINPROGRESS) {
		chan_error(ch, "connect to %s: %s", addr, strerror(errno));
		chan_unreachable(ch);
		close(fd);
		dial_schedule(ch);
		return;
	}
	if ((c = conn_new(ch, fd, false, addr)) == NULL) {
		chan_error(ch, "connect to %s: %s", addr, strerror(errno));
		log_warnx("channel: %s", ch->st.last_error);
		dial_schedule(ch);
		return;
	}
	ch->dial = c;
	/* Writable once the TCP connect finished, either way. */
	conn_want_write(c, true);
}

static int64_t
dial_on_timer(void *data)
{
	struct channel *ch = data;

	chan_enter(ch);
	ch->dial_timer = NULL;	/* EV_TIMER_STOP removes it */
	if (!ch->destroyed && ch->up == NULL && ch->dial == NULL)
		dial_start(ch);
	chan_leave(ch);
	return EV_TIMER_STOP;
}

/* Only the dialer dials, one attempt at a time, never while up. */
static void
dial_schedule(struct channel *ch)
{
	int64_t delay = ch->backoff_ms;

	if (!ch->dialer || ch->destroyed || ch->up || ch->dial || ch->dial_timer)
		return;
	ch->backoff_ms = delay * 2 > CHANNEL_BACKOFF_MAX_MS ? CHANNEL_BACKOFF_MAX_MS : delay * 2;
	ch->dial_delay_ms = delay;
	ch->dial_due_ms = ev_now_ms(ch->loop) + delay;
	if ((ch->dial_timer = ev_timer_add(ch->loop, delay, dial_on_timer, ch)) == NULL)
		log_warn("channel: cannot schedule a dial");
}

static void
chan_on_accept(int fd, void *data)
{
	struct channel *ch = data;

	chan_enter(ch);
	for (int n = 0; n < CHANNEL_ACCEPT_BURST && !ch->destroyed; n++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct netendpoint ep;
		char addr[NETENDPOINT_STRLEN];
		int cfd, slot = -1;
		bool from_peer;

		cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("channel: accept");
			break;
		}
		sa_to_ep(&ss, &ep);
		netendpoint_str(&ep, addr, sizeof(addr));
		from_peer = netaddr_eq(&ep.addr, &ch->cfg->sync.peer.addr);
		for (int i = 0; i < CHANNEL_MAX_PENDING && slot < 0; i++)
			if (ch->pending[i] == NULL)
				slot = i;
		/*
		 * Anyone who reaches the port can fill the slots with silent
		 * handshakes, one timeout at a time.  The peer's own address
		 * does not wait behind them: it takes the slot of one that
		 * comes from elsewhere.
		 */
		for (int i = 0; i < CHANNEL_MAX_PENDING && slot < 0 && from_peer; i++)
			if (!ch->pending[i]->from_peer) {
				ch->st.accept_refused++;
				chan_error(ch, "dropped the handshake of %s for one from the "
				    "peer's address (%s)", ch->pending[i]->addr, addr);
				log_debug("channel: %s", ch->st.last_error);
				conn_close(ch->pending[i]);
				slot = i;
			}
		if (slot < 0) {
			/* Not an auth failure: nobody has been asked for a
			 * certificate yet. */
			close(cfd);
			ch->st.accept_refused++;
			chan_error(ch, "refused connection from %s: %d handshakes pending", addr,
			    CHANNEL_MAX_PENDING);
			log_debug("channel: %s", ch->st.last_error);
			continue;
		}
		if ((ch->pending[slot] = conn_new(ch, cfd, true, addr)) == NULL) {
			log_warn("channel: connection from %s", addr);
			continue;
		}
		ch->pending[slot]->from_peer = from_peer;
		log_debug("channel: connection from %s", addr);
	}
	chan_leave(ch);
}

static int
chan_listen(struct channel *ch)
{
	struct sockaddr_storage ss;
	socklen_t sl = ep_to_sa(&ch->cfg->sync.listen, &ss);
	char addr[NETENDPOINT_STRLEN];
	int one = 1, fd, saved;

	netendpoint_str(&ch->cfg->sync.listen, addr, sizeof(addr));
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("channel: socket for %s", addr);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (struct sockaddr *)&ss, sl) == -1 || listen(fd, 16) == -1 ||
	    ev_fd_add(ch->loop, fd, chan_on_accept, NULL, ch) == -1) {
		saved = errno;
		log_warn("channel: listen on %s", addr);
		close(fd);
		errno = saved;
		return -1;
	}
	ch->lfd = fd;
	return 0;
}

/* The reason OpenSSL gives for a file it could not use: for a missing or
 * unreadable file the root cause is the errno. */
static void
ssl_reason(const char *what, const char *file, char *err, size_t errlen)
{
	unsigned long first = ERR_peek_error(), e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	if (first != 0 && ERR_SYSTEM_ERROR(first))
		r = strerror(ERR_GET_REASON(first));
	snprintf(err, errlen, "%s %s: %s", what, file, r ? r : "failed");
	ERR_clear_error();
}

/* The first of the CA file's certificates to expire: after it, the
 * chains it signed stop verifying. */
static int64_t
ca_not_after(SSL_CTX *ctx)
{
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
	int64_t first = 0;

	for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
		int64_t t = cert_not_after(X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i)));

		if (t != 0 && (first == 0 || t < first))
			first = t;
	}
	return first;
}

/* The context every connection is made from.  NULL with the reason
 * ("sync.tls.cert FILE: ...") in err. */
static SSL_CTX *
chan_ctx(const struct config *cfg, char *err, size_t errlen)
{
	const struct cfg_tls *tls = &cfg->sync.tls;
	SSL_CTX *ctx;
	X509 *own;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_method())) == NULL) {
		ssl_reason("SSL_CTX_new", "", err, errlen);
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
		ssl_reason("cannot require", "TLSv1.3", err, errlen);
		goto fail;
	}
	/* Every connection is authenticated in full: no tickets, no
	 * resumption, nothing cached. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* One read() takes in whatever the socket holds, up to the buffer,
	 * rather than two per record (its header, then its body). */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, CHANNEL_READ_AHEAD);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(ctx, 4);
	if (SSL_CTX_load_verify_locations(ctx, tls->ca, NULL) != 1) {
		ssl_reason("sync.tls.ca", tls->ca, err, errlen);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert) != 1) {
		ssl_reason("sync.tls.cert", tls->cert, err, errlen);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM) != 1 &&
	    ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
		ssl_reason("sync.tls.key", tls->key, err, errlen);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "sync.tls.key %s does not match sync.tls.cert %s", tls->key,
		    tls->cert);
		goto fail;
	}
	/* Not fatal (the names may be a deliberate choice), but the peer will
	 * refuse us, so say why now rather than only in its logs. */
	own = SSL_CTX_get0_certificate(ctx);
	if (own != NULL && X509_check_host(own, cfg->node, 0, X509_CHECK_FLAG_NO_WILDCARDS,
	    NULL) != 1)
		log_warnx("channel: sync.tls.cert %s is not for node \"%s\": the peer will refuse it",
		    tls->cert, cfg->node);
	ERR_clear_error();
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static void
lifetimes_check(const struct cfg_tls *tls, int64_t cert_end, int64_t ca_end)
{
	int64_t now = (int64_t)time(NULL);

	lifetime_warn("sync.tls.cert", tls->cert, cert_end, now);
	lifetime_warn("the CA certificate in sync.tls.ca", tls->ca, ca_end, now);
}

static void
chan_lifetimes_check(const struct channel *ch)
{
	lifetimes_check(&ch->cfg->sync.tls, ch->st.cert_not_after, ch->st.ca_not_after);
}

static int64_t
chan_on_lifetime_timer(void *data)
{
	chan_lifetimes_check(data);
	return 86400 * 1000;
}

/* ctx becomes the one new connections are made from. */
static void
chan_use_ctx(struct channel *ch, SSL_CTX *ctx)
{
	/* A live connection holds its own reference to the old one. */
	SSL_CTX_free(ch->ctx);
	ch->ctx = ctx;
	ch->st.cert_not_after = cert_not_after(SSL_CTX_get0_certificate(ctx));
	ch->st.ca_not_after = ca_not_after(ctx);
	chan_lifetimes_check(ch);
}

int
channel_check_tls(const struct config *cfg, bool warn_lifetimes, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if (cfg == NULL || !cfg->has_sync) {
		snprintf(err, errlen, "no sync section");
		return -1;
	}
	if ((ctx = chan_ctx(cfg, err, errlen)) == NULL)
		return -1;
	if (warn_lifetimes)
		lifetimes_check(&cfg->sync.tls, cert_not_after(SSL_CTX_get0_certificate(ctx)),
		    ca_not_after(ctx));
	SSL_CTX_free(ctx);
	return 0;
}

int
channel_reload_tls(struct channel *ch, char *err, size_t errlen)
{
	SSL_CTX *ctx = chan_ctx(ch->cfg, err, errlen);
	char when[40];

	if (ctx == NULL)
		return -1;
	chan_use_ctx(ch, ctx);
	log_info("channel: TLS files read again, the certificate valid until %s: the next "
	    "connection uses them, the one up stays", utc_str(ch->st.cert_not_after, when,
	    sizeof(when)));
	return 0;
}

struct channel *
channel_create(struct ev_loop *loop, const struct config *cfg,
    channel_event_cb on_event, channel_data_cb on_data, void *data)
{
	struct channel *ch;
	char err[CHANNEL_ERR_MAX];
	SSL_CTX *ctx;
	int saved;

	if (loop == NULL || cfg == NULL || !cfg->has_sync || on_event == NULL || on_data == NULL) {
		errno = EINVAL;
		return NULL;
	}
	if ((ch = calloc(1, sizeof(*ch))) == NULL)
		return NULL;
	ch->loop = loop;
	ch->cfg = cfg;
	ch->on_event = on_event;
	ch->on_data = on_data;
	ch->data = data;
	ch->lfd = -1;
	ch->hs_timeout_ms = CHANNEL_HANDSHAKE_MS;
	ch->backoff_ms = CHANNEL_BACKOFF_MIN_MS;
	ch->dialer = strcmp(cfg->node, cfg->sync.tls.peer_name) < 0;
	if (strcmp(cfg->node, cfg->sync.tls.peer_name) == 0)
		log_warnx("channel: node and sync.tls.peer_name are both \"%s\": nobody will dial",
		    cfg->node);
	if ((ctx = chan_ctx(cfg, err, sizeof(err))) == NULL) {
		log_warnx("channel: %s", err);
		free(ch);
		errno = EINVAL;
		return NULL;
	}
	chan_use_ctx(ch, ctx);
	if (chan_listen(ch) == -1 ||
	    (ch->lifetime_timer = ev_timer_add(loop, 86400 * 1000, chan_on_lifetime_timer,
	    ch)) == NULL)
		goto fail;
	chan_down(ch);
	/* The first attempt is immediate; failures back off. */
	ch->dial_due_ms = ev_now_ms(loop);
	if (ch->dialer && (ch->dial_timer = ev_timer_add(loop, 0, dial_on_timer, ch)) == NULL)
		goto fail;
	return ch;
fail:
	saved = errno;
	ev_timer_del(loop, ch->lifetime_timer);
	ev_timer_del(loop, ch->absent_timer);
	if (ch->lfd != -1) {
		ev_fd_del(loop, ch->lfd);
		close(ch->lfd);
	}
	SSL_CTX_free(ch->ctx);
	free(ch);
	errno = saved;
	return NULL;
}

void
channel_destroy(struct channel *ch)
{
	if (ch == NULL || ch->destroyed)
		return;
	ch->destroyed = true;
	for (int i = 0; i < CHANNEL_MAX_PENDING; i++)
		if (ch->pending[i])
			conn_close(ch->pending[i]);
	if (ch->dial)
		conn_close(ch->dial);
	if (ch->up)
		conn_close(ch->up);
	ev_timer_del(ch->loop, ch->dial_timer);
	ch->dial_timer = NULL;
	ev_timer_del(ch->loop, ch->lifetime_timer);
	ch->lifetime_timer = NULL;
	ev_timer_del(ch->loop, ch->absent_timer);
	ch->absent_timer = NULL;
	if (ch->lfd != -1) {
		ev_fd_del(ch->loop, ch->lfd);
		close(ch->lfd);
		ch->lfd = -1;
	}
	/* Called from the owner's callback: freed when that returns. */
	if (ch->depth == 0)
		chan_free(ch);
}

int
channel_send(struct channel *ch, const void *buf, size_t len)
{
	if (ch->up == NULL || ch->destroyed) {
		errno = ENOTCONN;
		return -1;
	}
	if (len > CHANNEL_MAX_QUEUED - ch->qlen) {
		ch->st.send_refused++;
		errno = ENOBUFS;
		return -1;
	}
	if (len == 0)
		return 0;
	if (queue_append(ch, buf, len) == -1)
		return -1;
	/* Written from the write callback, not here: the owner never sees
	 * DOWN from inside its own channel_send(). */
	if (!ch->up->write_wants_read)
		conn_want_write(ch->up, true);
	return 0;
}

void
channel_flush(struct channel *ch)
{
	struct chan_conn *c = ch->up;

	if (c == NULL || ch->destroyed || ch->qlen == 0 || c->phase != CONN_UP ||
	    c->write_wants_read || c->read_wants_write)
		return;
	chan_enter(ch);
	conn_flush(c);
	chan_leave(ch);
}

size_t
channel_queued(const struct channel *ch)
{
	return ch->qlen;
}

void
channel_close(struct channel *ch, const char *reason)
{
	if (ch == NULL || ch->up == NULL || ch->destroyed)
		return;
	/* The DOWN event may destroy the channel. */
	chan_enter(ch);
	conn_lost(ch->up, reason ? reason : "closed by the session");
	chan_leave(ch);
}

void
channel_get_stats(const struct channel *ch, struct channel_stats *out)
{
	*out = ch->st;
	out->dialer = ch->dialer;
	out->redial_delay_ms = 0;
	out->redial_in_ms = -1;
	out->down_ms = ch->up != NULL ? -1 : ev_now_ms(ch->loop) - ch->down_since_ms;
	if (ch->dial_timer != NULL) {
		int64_t now = ev_now_ms(ch->loop);

		out->redial_delay_ms = ch->dial_delay_ms;
		out->redial_in_ms = ch->dial_due_ms > now ? ch->dial_due_ms - now : 0;
	}
	if (ch->up != NULL) {
		out->state = CHANNEL_UP;
	} else {
		out->state = ch->dial && ch->dial->phase != CONN_CONNECTING ? CHANNEL_HANDSHAKE :
		    CHANNEL_IDLE;
		for (int i = 0; i < CHANNEL_MAX_PENDING; i++)
			if (ch->pending[i])
				out->state = CHANNEL_HANDSHAKE;
	}
}

void
channel_set_handshake_timeout(struct channel *ch, int ms)
{
	if (ms < 1)
		ms = CHANNEL_HANDSHAKE_MS;
	if (ms > 60000)
		ms = 60000;
	ch->hs_timeout_ms = ms;
}

void
channel_set_config(struct channel *ch, const struct config *cfg)
{
	ch->cfg = cfg;
}
