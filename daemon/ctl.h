/*
 * ctl: the UNIX control socket of uplinkd, and the client call uplinkctl
 * uses.
 *
 * Wire (SOCK_STREAM, one request and one reply per connection; all fields
 * in host byte order since both ends are on one machine):
 *
 *   request   +--------+---------+------+-------+--------+----------------+
 *             | magic  | version | type | flags | length | payload ...    |
 *             | u32    | u16     | u16  | u32   | u32    | length bytes   |
 *             +--------+---------+------+-------+--------+----------------+
 *   payload: the command's arguments as NUL-terminated strings, back to
 *   back (argc is the number of NULs); length <= CTL_MAX_REQUEST.
 *
 *   reply     +--------+--------+--------+----------------+
 *             | magic  | status | length | body ...       |
 *             | u32    | u32    | u32    | length bytes   |
 *             +--------+--------+--------+----------------+
 *   status: CTL_OK, CTL_FAILED or CTL_USAGE (the uplinkctl exit codes);
 *   body: the rendered answer, or an error message when status != CTL_OK.
 *
 * The server checks magic, version, type, length and the argument encoding
 * before a handler sees the request; anything else is answered with an
 * error reply and counted, never trusted.  A client whose request is not
 * whole CTL_TIMEOUT_MS after the accept, or whose reply makes no progress
 * for that long, is dropped.
 */
#ifndef UPLINKD_CTL_H
#define UPLINKD_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "emit.h"
#include "ev.h"

#define CTL_MAGIC 0x4b4c5055u		/* "UPLK" little-endian */
#define CTL_VERSION 1
#define CTL_MAX_REQUEST 4096
#define CTL_MAX_ARGS 32
#define CTL_MAX_CLIENTS 32
#define CTL_TIMEOUT_MS 5000
#define CTL_DEFAULT_SOCKET "/run/uplinkd/uplinkd.sock"

#define CTL_F_JSON 0x1u

enum ctl_type {
	CTL_STATUS = 1,
	CTL_PROVIDERS,
	CTL_FLOWS,
	CTL_SYNC,
	CTL_DRAIN,
	CTL_UNDRAIN,
	CTL_HA,
	CTL_RELOAD,
	CTL_METRICS,
	CTL_DRILL,
	CTL_TYPE_MAX,		/* one past the last */
};

/* The longest step-down a CTL_DRILL request may ask for, in seconds. */
#define CTL_STEP_DOWN_MAX_S 3600

enum ctl_status {
	CTL_OK = 0,
	CTL_FAILED = 1,
	CTL_USAGE = 2,
};

struct ctl_req_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t flags;
	uint32_t length;
};

struct ctl_reply_hdr {
	uint32_t magic;
	uint32_t status;
	uint32_t length;
};

/* A validated request as handlers see it. */
struct ctl_request {
	enum ctl_type type;
	uint32_t flags;
	int argc;
	const char *argv[CTL_MAX_ARGS];
};

/* Why a request was refused; each reason has a counter in ctl_stats. */
enum ctl_reject {
	CTL_REJECT_NONE = 0,
	CTL_REJECT_MAGIC,
	CTL_REJECT_VERSION,
	CTL_REJECT_TYPE,
	CTL_REJECT_LENGTH,
	CTL_REJECT_ARGS,
};

/*
 * The server's checks, as pure functions (no I/O, no state) so that they
 * can be tested and fuzzed alone.
 *
 * ctl_request_check_header: what can be checked before the payload is
 * read (magic, version, type in range, length <= CTL_MAX_REQUEST).
 * Whether a handler is registered for the type is the server's business.
 *
 * ctl_request_parse: a whole request, `len` bytes at buf (the header and
 * exactly h.length payload bytes).  Fills `out`, whose argv point into buf
 * (valid as long as buf is), and returns 0; or returns -1 with errno
 * EINVAL, *reason set and a one-line message in err (the reply's body).
 */
int ctl_request_check_header(const struct ctl_req_hdr *h, char *err,
    size_t errlen, enum ctl_reject *reason);
int ctl_request_parse(const void *buf, size_t len, struct ctl_request *out,
    char *err, size_t errlen, enum ctl_reject *reason);

/*
 * A handler fills `out` (created in the format the client asked for) and
 * returns a ctl_status.  On CTL_FAILED/CTL_USAGE it writes a one-line reason
 * to err (the body of the reply); out is discarded.
 */
typedef enum ctl_status (*ctl_handler)(const struct ctl_request *req,
    struct emit *out, char *err, size_t errlen, void *data);

struct ctl;

/* Counters of rejected requests, by reason. */
struct ctl_stats {
	uint64_t requests;
	uint64_t bad_magic;
	uint64_t bad_version;
	uint64_t bad_type;
	uint64_t bad_length;
	uint64_t bad_args;
	uint64_t timeouts;
	uint64_t overflows;	/* clients refused past CTL_MAX_CLIENTS */
};

/*
 * Binds `path` (creating its directory 0750 when missing, replacing a stale
 * socket that nobody answers on, refusing one that a live daemon holds) and
 * registers with the loop.  NULL with errno on failure (ENAMETOOLONG when
 * the path does not fit sun_path, EADDRINUSE when another daemon answers).
 */
struct ctl *ctl_create(struct ev_loop *loop, const char *path);
/* Closes all clients and the listener and unlinks the socket. */
void ctl_destroy(struct ctl *ctl);
void ctl_register(struct ctl *ctl, enum ctl_type type, ctl_handler handler,
    void *data);
const struct ctl_stats *ctl_stats(const struct ctl *ctl);
/*
 * How long a client may take to send its whole request, and how long its
 * reply may stall (no byte written), before it is dropped; CTL_TIMEOUT_MS
 * by default.  Applies to clients accepted from now on; tests use it to
 * exercise the timeout quickly.
 */
void ctl_set_timeout(struct ctl *ctl, int timeout_ms);

/*
 * Client side (blocking, for uplinkctl): sends one request and waits up to
 * timeout_ms for the reply.  On success returns 0, with *status and a
 * malloc'ed NUL-terminated *body.  Returns -1 with errno when the daemon
 * cannot be reached or the reply is malformed.
 */
int ctl_call(const char *path, enum ctl_type type, uint32_t flags, int argc,
    char *const argv[], int timeout_ms, uint32_t *status, char **body);

#endif
