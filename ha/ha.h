/*
 * ha: the node's role in the VRRP pair, and what keepalived sees of it.
 *
 * keepalived decides which node is master and tells uplinkd through its
 * notify script (`uplinkctl ha master|backup|fault`, ha/notify.sh).  The
 * other way round, uplinkd tells keepalived whether this node may win,
 * through a track file (keepalived's vrrp_track_file, weight 1) holding a
 * number that keepalived adds to the instance's priority:
 *
 *   0              ready
 *   -HA_PENALTY    not ready: it lacks state the peer has (a bulk from the
 *                  peer is running and this node is not master, or its
 *                  kernel does not hold all of the peer's flows yet: more
 *                  than HA_BACKLOG_SMALL of them wait, or it has not been
 *                  empty for HA_BACKLOG_MS (a steady stream keeps a few
 *                  in flight for a loop iteration, which is no gap; a
 *                  verdict that flipped with each of them flapped the
 *                  file), or the
 *                  daemon has just started and the peer has not answered
 *                  yet: HA_GRACE_MS, and only until the first
 *                  connection), or it is not master and the sync link
 *                  went down (whatever the peer changed since is missing
 *                  here; but not for HA_PEER_GONE_MS after the peer's end
 *                  closed the connection, as it does when its daemon
 *                  exits or is killed: it sent everything up to then,
 *                  and this node is about to take over), or it has fewer
 *                  providers up than the peer while the two are in sync
 *   -HA_FAULT      the daemon stopped (written at a clean exit, and by a
 *                  guard process when it dies any other way), or an
 *                  operator's drill asked it to step down for a while;
 *                  keepalived goes to FAULT and releases the addresses
 *
 * This closes the known hole of conntrackd + keepalived pairs, where a node
 * wins VRRP before it has the connection state.  A node whose peer stays
 * unreachable after the start-up grace is ready: waiting for a peer that
 * is gone would leave nobody serving.  HA_PENALTY must exceed the
 * priority difference of the two nodes (ha/keepalived.conf.in: 150 and
 * 100) so that a node that is not ready never preempts, and stay below the
 * standby's priority so that a lone node does not fault.
 *
 * The file is written atomically (temporary file and rename) and only when
 * the value changes; keepalived watches it with inotify.  Its path is the
 * control socket's directory plus "<node>.vrrp" (/run/uplinkd/gw1.vrrp by
 * default), so two nodes in one lab never share it.
 *
 * Errors: NULL or -1 with errno; failures to write the file are logged
 * (rate-limited) and retried on the next update.
 */
#ifndef UPLINKD_HA_H
#define UPLINKD_HA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "emit.h"

#define HA_PENALTY 60
#define HA_FAULT 254
#define HA_GRACE_MS 5000
#define HA_PEER_GONE_MS 5000
#define HA_BACKLOG_SMALL 4096
#define HA_BACKLOG_MS 1000

enum ha_role {
	HA_INIT,
	HA_MASTER,
	HA_BACKUP,
	HA_FAULT_ROLE,
};

struct ha;

/* now_ms: the caller's monotonic clock (ev_now_ms).  Writes the track file
 * at once: not ready when the config has a peer, ready otherwise.  Starts
 * the guard (a child process, reaped by ha_destroy) that writes -HA_FAULT
 * if the daemon dies without ha_destroy; waits up to 2 s for the guard of
 * an earlier daemon to finish first.  Call it after the last fork of
 * daemon(3). */
struct ha *ha_create(const struct config *cfg, int64_t now_ms);
/* Writes -HA_FAULT into the track file and frees.  NULL is a no-op. */
void ha_destroy(struct ha *ha);

const char *ha_role_name(enum ha_role role);
/* "master", "backup", "fault": 0 and *out, or -1 (EINVAL). */
int ha_role_parse(const char *s, enum ha_role *out);

/* A transition; logs it with its reason.  Returns the previous role. */
enum ha_role ha_set_role(struct ha *ha, enum ha_role role, const char *reason,
    int64_t now_ms);
enum ha_role ha_role(const struct ha *ha);
int64_t ha_role_since_ms(const struct ha *ha);

/*
 * What decides readiness, evaluated by the owner a few times a second.
 * peer_configured: the config has a sync section.  peer_connected,
 * in_sync: from the session; peer_closed: not connected because the
 * peer's end closed the connection.  kernel_backlog: the peer's flows
 * this node has and its kernel not yet, or not in their latest state (hot
 * standby; deletes waiting leave stale entries, not missing ones), and
 * kernel_backlog_empty_ms when it last was 0 (after a write slice: a
 * steady stream keeps some in flight whenever it is sampled, and is no
 * gap while each slice empties it).  up_own, up_peer: providers
 * up here and as the peer reported them (peer_known false when it has
 * not); a drain is the operator's choice for the pair, not a reason to
 * move it.  Rewrites the file when the verdict changes.
 */
struct ha_inputs {
	bool peer_configured;
	bool peer_connected;
	bool peer_closed;
	bool in_sync;
	bool peer_missing;		/* the flow table refused some of the peer's */
	bool peer_known;
	unsigned up_own, up_peer;
	size_t kernel_backlog;		/* peer flows not in the kernel yet */
	int64_t kernel_backlog_empty_ms;
};
void ha_update(struct ha *ha, const struct ha_inputs *in, int64_t now_ms);
bool ha_ready(const struct ha *ha);

/* What the owner saw of keepalived's notifies, for `status`: a notify the
 * addresses contradicted (refused), a role set from the addresses. */
enum ha_count {
	HA_STALE_NOTIFY,
	HA_ROLE_REPAIR,
};
void ha_count(struct ha *ha, enum ha_count what);

/* A drill's step-down: -HA_FAULT in the track file until until_ms (a
 * bound, so that a drill that dies does not leave the node out of the
 * pair for good); 0 ends it.  Takes effect at the next ha_update. */
void ha_step_down(struct ha *ha, int64_t until_ms);
/* The end of a step-down in progress, or 0. */
int64_t ha_step_down_until(const struct ha *ha, int64_t now_ms);

/* Fields for `status` (role, since) and `ha` detail (track file, value,
 * reason, transitions). */
void ha_report(const struct ha *ha, struct emit *out, int64_t now_ms, bool detail);
/* The same for `uplinkctl metrics`: Prometheus text into f. */
void ha_metrics(const struct ha *ha, FILE *f);

/* The track file path for cfg (into buf); -1 with ENAMETOOLONG. */
int ha_track_path(const struct config *cfg, char *buf, size_t len);

#endif
