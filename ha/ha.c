#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ha.h"
#include "log.h"

#define HA_WARN_EVERY_MS 60000

struct ha {
	char path[256];
	char node[CFG_NAME_MAX];
	enum ha_role role;
	int64_t role_since_ms;
	int64_t start_ms;
	uint64_t transitions;
	char last_reason[96];
	int value;			/* what the file says (or should say) */
	bool written;			/* ... and it does */
	char why[128];			/* why not ready; "" when ready */
	bool peer_seen;			/* connected at least once */
	int64_t step_down_until_ms;	/* a drill's step-down, or 0 */
	int64_t warned_ms;
};

static const char *const ha_names[] = {
	[HA_INIT] = "init",
	[HA_MASTER] = "master",
	[HA_BACKUP] = "backup",
	[HA_FAULT_ROLE] = "fault",
};

const char *
ha_role_name(enum ha_role role)
{
	if ((size_t)role >= sizeof(ha_names) / sizeof(ha_names[0]))
		return "init";
	return ha_names[role];
}

int
ha_role_parse(const char *s, enum ha_role *out)
{
	for (size_t i = HA_MASTER; i < sizeof(ha_names) / sizeof(ha_names[0]); i++) {
		if (strcmp(s, ha_names[i]) == 0) {
			*out = (enum ha_role)i;
			return 0;
		}
	}
	errno = EINVAL;
	return -1;
}

int
ha_track_path(const struct config *cfg, char *buf, size_t len)
{
	const char *sock = cfg->control.socket;
	const char *slash = strrchr(sock, '/');
	int dirlen = slash ? (int)(slash - sock) : 1;
	int n;

	n = snprintf(buf, len, "%.*s/%s.vrrp", dirlen, slash ? sock : ".", cfg->node);
	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* Writes value atomically; 0 or -1 with errno. */
static int
ha_write(struct ha *ha, int value, int64_t now_ms)
{
	char tmp[sizeof(ha->path) + 8], text[16];
	int fd, n = snprintf(text, sizeof(text), "%d\n", value), saved;

	snprintf(tmp, sizeof(tmp), "%s.tmp", ha->path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) == -1)
		goto fail;
	if (write(fd, text, (size_t)n) != n) {
		saved = errno;
		close(fd);
		unlink(tmp);
		errno = saved;
		goto fail;
	}
	if (close(fd) == -1 || rename(tmp, ha->path) == -1) {
		saved = errno;
		unlink(tmp);
		errno = saved;
		goto fail;
	}
	ha->value = value;
	ha->written = true;
	return 0;
fail:
	if (now_ms - ha->warned_ms >= HA_WARN_EVERY_MS || ha->warned_ms == 0) {
		log_warn("ha: writing the VRRP track file %s", ha->path);
		ha->warned_ms = now_ms;
	}
	ha->written = false;
	return -1;
}

struct ha *
ha_create(const struct config *cfg, int64_t now_ms)
{
	struct ha *ha = calloc(1, sizeof(*ha));

	if (ha == NULL)
		return NULL;
	if (ha_track_path(cfg, ha->path, sizeof(ha->path)) == -1) {
		log_warnx("ha: the track file path for %s is too long", cfg->control.socket);
		free(ha);
		errno = ENAMETOOLONG;
		return NULL;
	}
	snprintf(ha->node, sizeof(ha->node), "%s", cfg->node);
	ha->role = HA_INIT;
	ha->role_since_ms = ha->start_ms = now_ms;
	if (cfg->has_sync)
		snprintf(ha->why, sizeof(ha->why), "starting: waiting for the peer's flows");
	ha_write(ha, cfg->has_sync ? -HA_PENALTY : 0, now_ms);
	return ha;
}

void
ha_destroy(struct ha *ha)
{
	if (ha == NULL)
		return;
	ha_write(ha, -HA_FAULT, ha->start_ms);
	free(ha);
}

enum ha_role
ha_set_role(struct ha *ha, enum ha_role role, const char *reason, int64_t now_ms)
{
	enum ha_role old = ha->role;

	if (role == old)
		return old;
	log_info("ha: role %s -> %s (%s)", ha_role_name(old), ha_role_name(role), reason);
	ha->role = role;
	ha->role_since_ms = now_ms;
	ha->transitions++;
	snprintf(ha->last_reason, sizeof(ha->last_reason), "%s", reason);
	return old;
}

enum ha_role
ha_role(const struct ha *ha)
{
	return ha->role;
}

int64_t
ha_role_since_ms(const struct ha *ha)
{
	return ha->role_since_ms;
}

void
ha_update(struct ha *ha, const struct ha_inputs *in, int64_t now_ms)
{
	char why[sizeof(ha->why)] = "";
	int value = 0;

	if (in->peer_connected)
		ha->peer_seen = true;
	if (ha->step_down_until_ms > now_ms) {
		snprintf(why, sizeof(why), "stepping down for a failover drill");
		value = -HA_FAULT;
	} else if (in->peer_configured) {
		if (in->peer_connected && !in->in_sync)
			snprintf(why, sizeof(why), "receiving the peer's flows (bulk not complete)");
		else if (!in->peer_connected && !ha->peer_seen &&
		    now_ms - ha->start_ms < HA_GRACE_MS)
			snprintf(why, sizeof(why), "starting: waiting for the peer's flows");
		else if (!in->peer_connected && ha->peer_seen && ha->role != HA_MASTER)
			snprintf(why, sizeof(why), "the sync link is down: the peer's changes "
			    "since are missing here");
		else if (in->peer_connected && in->peer_known && in->usable_own < in->usable_peer)
			snprintf(why, sizeof(why), "%u usable providers here, %u on the peer",
			    in->usable_own, in->usable_peer);
	}
	if (value == 0 && why[0])
		value = -HA_PENALTY;
	if (strcmp(why, ha->why) != 0) {
		if (why[0])
			log_info("ha: not ready to be master: %s", why);
		else
			log_info("ha: ready to be master");
		snprintf(ha->why, sizeof(ha->why), "%s", why);
	}
	if (value != ha->value || !ha->written)
		ha_write(ha, value, now_ms);
}

bool
ha_ready(const struct ha *ha)
{
	return ha->why[0] == '\0';
}

void
ha_step_down(struct ha *ha, int64_t until_ms)
{
	ha->step_down_until_ms = until_ms;
}

int64_t
ha_step_down_until(const struct ha *ha, int64_t now_ms)
{
	return ha->step_down_until_ms > now_ms ? ha->step_down_until_ms : 0;
}

void
ha_report(const struct ha *ha, struct emit *out, int64_t now_ms, bool detail)
{
	emit_str(out, "role", ha_role_name(ha->role));
	emit_double(out, "role_since_s", (double)(now_ms - ha->role_since_ms) / 1000, 1);
	if (!detail)
		return;
	emit_object_begin(out, "ha");
	emit_bool(out, "ready", ha_ready(ha));
	emit_str(out, "not_ready_because", ha->why[0] ? ha->why : NULL);
	if (ha->step_down_until_ms > now_ms)
		emit_double(out, "step_down_s", (double)(ha->step_down_until_ms - now_ms) / 1000, 1);
	else
		emit_null(out, "step_down_s");
	emit_str(out, "track_file", ha->path);
	emit_i64(out, "track_value", ha->value);
	emit_bool(out, "track_written", ha->written);
	emit_u64(out, "transitions", ha->transitions);
	emit_str(out, "last_transition", ha->last_reason[0] ? ha->last_reason : NULL);
	emit_object_end(out);
}
