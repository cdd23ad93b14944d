/*
 * channel: the authenticated, encrypted byte pipe between the two nodes.
 * TCP + TLS 1.3 (OpenSSL), mutual authentication, non-blocking inside the
 * daemon's one event loop (daemon/ev.h).  It carries bytes, not frames:
 * the sync session above it frames and parses them (sync/frame.h).
 *
 * Who connects: both nodes listen on sync.listen; the node whose name
 * sorts lower dials sync.peer, so exactly one connection exists.  A new
 * authenticated connection from the peer replaces an old one (the peer
 * restarted).  Dialing retries with capped exponential backoff (100 ms
 * doubling to 5 s).  TCP keepalive and TCP_USER_TIMEOUT find a dead peer
 * within 3 s even when nothing is sent; the session's heartbeats cover
 * the rest.
 *
 * Authentication happens before a single byte is delivered: the peer's
 * certificate must chain to sync.tls.ca and its name (subject CN or a DNS
 * subjectAltName) must equal sync.tls.peer_name; our own certificate and
 * key come from sync.tls.cert/key.  TLS below 1.3 is refused.  A failed
 * handshake (wrong CA, wrong name, expired, plaintext, garbage) is counted
 * and the connection closed; nothing reaches the session.
 *
 * Sending is bounded: at most CHANNEL_MAX_QUEUED bytes wait to be
 * written; past that channel_send() refuses (the session then marks the
 * peer out of sync and resyncs later instead of growing memory).
 */
#ifndef UPLINKD_CHANNEL_H
#define UPLINKD_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ev.h"

#define CHANNEL_MAX_QUEUED (64u << 20)
/* The log warns, daily, when a certificate expires within this many days. */
#define CHANNEL_CERT_WARN_DAYS 30
/* Room for a reason naming a TLS file. */
#define CHANNEL_ERR_MAX 512
#define CHANNEL_BACKOFF_MIN_MS 100	/* redial delays double from this */
#define CHANNEL_BACKOFF_MAX_MS 5000	/* ... up to this */
/* A peer still unreachable (dialer) or still not connecting (listener) is
 * logged again this often; a test build may shorten it. */
#ifndef CHANNEL_UNREACHABLE_LOG_MS
#define CHANNEL_UNREACHABLE_LOG_MS 60000
#endif

enum channel_state {
	CHANNEL_IDLE,		/* not connected; dialing or waiting to be dialed */
	CHANNEL_HANDSHAKE,	/* TCP up, TLS handshake running */
	CHANNEL_UP,		/* authenticated; bytes flow */
};

enum channel_event {
	CHANNEL_EV_UP,		/* authenticated connection established */
	CHANNEL_EV_DOWN,	/* connection lost (reason in stats.last_error) */
};

struct channel_stats {
	enum channel_state state;
	bool authenticated;
	char tls_version[16];		/* "TLSv1.3" */
	char cipher[64];
	char peer_cn[64];
	uint64_t connects;		/* authenticated connections made */
	uint64_t reconnects;		/* ... after the first */
	bool dialer;			/* this node dials; the peer only listens */
	uint64_t dials;			/* connection attempts this node began */
	int64_t redial_delay_ms;	/* the wait before the next attempt, from
					 * CHANNEL_BACKOFF_MIN_MS doubling up to
					 * CHANNEL_BACKOFF_MAX_MS; 0: none waits */
	int64_t redial_in_ms;		/* ... of which this much is left; -1 */
	int64_t down_ms;		/* how long there has been no
					 * authenticated connection (since the
					 * last was lost, or the start); -1 up */
	uint64_t auth_failures;		/* handshakes refused, any reason */
	uint64_t bytes_in, bytes_out;
	uint64_t send_refused;		/* channel_send over the bound */
	uint64_t accept_refused;	/* inbound TCP closed at once: too
					 * many handshakes already pending (the
					 * peer's address takes the slot of one
					 * from elsewhere, which counts here) */
	char last_error[160];
	int64_t last_error_ms;		/* monotonic, 0 if none */
	bool closed_by_peer;		/* the last connection lost was closed
					 * or reset by the peer's end (its
					 * daemon exited), not timed out or
					 * dropped here */
	/* When the certificates stop being valid, Unix seconds (0: unknown):
	 * ours and the first of the CA file's as last loaded, the peer's of
	 * the last authenticated connection. */
	int64_t cert_not_after, ca_not_after, peer_cert_not_after;
};

struct channel;

typedef void (*channel_event_cb)(enum channel_event ev, void *data);
typedef void (*channel_data_cb)(const uint8_t *buf, size_t len, void *data);

/*
 * Loads the TLS material and starts listening (and dialing, if we are the
 * lower name).  cfg must outlive the channel and have has_sync.  NULL with
 * errno on failure, with the reason (file, OpenSSL error) logged.  A
 * certificate that expires within CHANNEL_CERT_WARN_DAYS is warned about
 * now and every day after.
 */
struct channel *channel_create(struct ev_loop *loop, const struct config *cfg,
    channel_event_cb on_event, channel_data_cb on_data, void *data);
void channel_destroy(struct channel *ch);

/* Queues bytes for the peer.  0, or -1 with errno ENOTCONN (not up) or
 * ENOBUFS (over CHANNEL_MAX_QUEUED). */
int channel_send(struct channel *ch, const void *buf, size_t len);
/* Writes what the socket takes now instead of in the write callback of
 * the next loop iteration (for the owner's before-sleep hook: one wake-up
 * less per flush).  May deliver CHANNEL_EV_DOWN before it returns. */
void channel_flush(struct channel *ch);
/* Bytes queued and not yet written. */
size_t channel_queued(const struct channel *ch);
/* Drops the connection (the session saw a protocol violation); the
 * CHANNEL_EV_DOWN event is delivered before this returns. */
void channel_close(struct channel *ch, const char *reason);
void channel_get_stats(const struct channel *ch, struct channel_stats *out);
/* A reload's new config, whose node and sync section equal the current
 * one's (the caller compares; a different sync section needs a new
 * channel). */
void channel_set_config(struct channel *ch, const struct config *cfg);
/* Loads cfg's TLS files as channel_create() would, to check them before
 * a reload commits or for `uplinkd -n`: 0, or -1 with the reason
 * ("sync.tls.cert FILE: ...") in err.  With warn_lifetimes, a certificate
 * that expires within CHANNEL_CERT_WARN_DAYS is logged as at a start. */
int channel_check_tls(const struct config *cfg, bool warn_lifetimes, char *err,
    size_t errlen);
/* Reads the TLS files again (renewed under the same paths): connections
 * made from now on use them, the one that is up stays up.  0, or -1 with
 * the reason in err and the files loaded before still in use. */
int channel_reload_tls(struct channel *ch, char *err, size_t errlen);
/* For tests: how long a connection may take from TCP accept/connect to
 * authentication (default 5000 ms); applies to connections started later. */
void channel_set_handshake_timeout(struct channel *ch, int ms);

#endif
