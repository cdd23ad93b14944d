#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ha.h"
#include "log.h"

#define HA_WARN_EVERY_MS 60000
/* How long a starting daemon waits for the guard of the one before. */
#define HA_GUARD_WAIT_MS 2000
/* What the daemon writes to its guard before a clean exit. */
#define HA_GUARD_QUIT 'q'

struct ha {
	char path[256];
	char node[CFG_NAME_MAX];
	enum ha_role role;
	int64_t role_since_ms;
	int64_t start_ms;
	uint64_t transitions;
	uint64_t stale_notifies, role_repairs;
	char last_reason[96];
	int value;			/* what the file says (or should say) */
	bool written;			/* ... and it does */
	char why[128];			/* why not ready; "" when ready */
	bool peer_seen;			/* connected at least once */
	bool peer_was_connected;	/* at the last update */
	int64_t peer_closed_ms;		/* when the peer closed the link, or 0 */
	int64_t step_down_until_ms;	/* a drill's step-down, or 0 */
	int64_t warned_ms;
	int guard_fd;			/* the write end of the guard's pipe */
	pid_t guard_pid;
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

/* Writes value into path atomically; 0 or -1 with errno.  Only system
 * calls and snprintf: the guard uses it too. */
static int
ha_write_file(const char *path, int value)
{
	char tmp[300], text[16];
	int fd, n = snprintf(text, sizeof(text), "%d\n", value), saved;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) == -1)
		return -1;
	if (write(fd, text, (size_t)n) != n) {
		saved = errno;
		close(fd);
		unlink(tmp);
		errno = saved;
		return -1;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		saved = errno;
		unlink(tmp);
		errno = saved;
		return -1;
	}
	return 0;
}

static int
ha_write(struct ha *ha, int value, int64_t now_ms)
{
	if (ha_write_file(ha->path, value) == 0) {
		ha->value = value;
		ha->written = true;
		return 0;
	}
	if (now_ms - ha->warned_ms >= HA_WARN_EVERY_MS || ha->warned_ms == 0) {
		log_warn("ha: writing the VRRP track file %s", ha->path);
		ha->warned_ms = now_ms;
	}
	ha->written = false;
	return -1;
}

/*
 * The guard: a child process that writes -HA_FAULT into the track file
 * when the daemon dies by any means (kill -9, a crash, the OOM killer), so
 * that keepalived releases the addresses at once rather than when its
 * liveness script next runs, up to a second later.  The guard learns of
 * the death from a pipe whose other end the kernel closes as the daemon
 * exits; a clean exit writes HA_GUARD_QUIT first.  It keeps none of the
 * daemon's other descriptors: a netlink or queue socket held open by it
 * would outlive the daemon.
 *
 * The guard holds a lock on <track file>.lock for its whole life, and a
 * starting daemon takes that lock before it writes its first value: a
 * restart right after a crash then cannot have its value overwritten by
 * the old daemon's guard.
 */
static void __attribute__((noreturn))
ha_guard_run(const char *path, pid_t daemon_pid, int pipe_fd, int lock_fd)
{
	sigset_t all;
	char c = 0;
	ssize_t n;
	int lo = pipe_fd < lock_fd ? pipe_fd : lock_fd;
	int hi = pipe_fd < lock_fd ? lock_fd : pipe_fd;

	/* A signal to the whole group (systemd stopping the unit, ^C in a
	 * terminal) must not end the guard before the daemon is gone. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	prctl(PR_SET_NAME, "uplinkd-guard");
	close_range(3, (unsigned)lo - 1, 0);
	if (hi > lo + 1)
		close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
	close_range((unsigned)hi + 1, ~0U, 0);
	do
		n = read(pipe_fd, &c, 1);
	while (n == -1 && errno == EINTR);
	if (n == 1 && c == HA_GUARD_QUIT)
		_exit(0);
	if (ha_write_file(path, -HA_FAULT) == 0)
		log_warnx("ha: uplinkd (pid %ld) died: %d written into %s, so keepalived "
		    "releases the addresses now", (long)daemon_pid, -HA_FAULT, path);
	else
		log_warn("ha: uplinkd (pid %ld) died, and writing %s failed", (long)daemon_pid, path);
	_exit(0);
}

/* Takes <path>.lock (waiting for an earlier guard) and starts the guard.
 * Failures are logged: the node still has keepalived's liveness script. */
static void
ha_guard_start(struct ha *ha)
{
	char lock_path[sizeof(ha->path) + 8];
	struct timespec pause = { 0, 10 * 1000 * 1000 };
	int lock_fd, fds[2], waited;
	pid_t self = getpid(), pid;

	snprintf(lock_path, sizeof(lock_path), "%s.lock", ha->path);
	if ((lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		log_warn("ha: %s: no guard for this daemon", lock_path);
		return;
	}
	for (waited = 0; flock(lock_fd, LOCK_EX | LOCK_NB) == -1; waited += 10) {
		if (errno != EWOULDBLOCK || waited >= HA_GUARD_WAIT_MS) {
			log_warnx("ha: %s is still locked after %d ms (the guard of an earlier "
			    "daemon?): going on", lock_path, waited);
			break;
		}
		nanosleep(&pause, NULL);
	}
	if (pipe2(fds, O_CLOEXEC) == -1) {
		log_warn("ha: guard pipe");
		close(lock_fd);
		return;
	}
	if ((pid = fork()) == -1) {
		log_warn("ha: starting the guard");
		close(fds[0]);
		close(fds[1]);
		close(lock_fd);
		return;
	}
	if (pid == 0) {
		close(fds[1]);
		ha_guard_run(ha->path, self, fds[0], lock_fd);
	}
	/* The lock lives on in the guard's copy of the descriptor. */
	close(lock_fd);
	close(fds[0]);
	ha->guard_fd = fds[1];
	ha->guard_pid = pid;
}

static void
ha_guard_stop(struct ha *ha)
{
	static const char quit = HA_GUARD_QUIT;

	if (ha->guard_pid <= 0)
		return;
	if (write(ha->guard_fd, &quit, 1) != 1)
		log_warn("ha: telling the guard to quit");
	close(ha->guard_fd);
	while (waitpid(ha->guard_pid, NULL, 0) == -1 && errno == EINTR)
		;
	ha->guard_pid = -1;
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
	ha->guard_pid = -1;
	ha_guard_start(ha);
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
	ha_guard_stop(ha);
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
	if (ha->peer_was_connected && !in->peer_connected)
		ha->peer_closed_ms = in->peer_closed ? now_ms : 0;
	ha->peer_was_connected = in->peer_connected;
	if (ha->step_down_until_ms > now_ms) {
		snprintf(why, sizeof(why), "stepping down for a failover drill");
		value = -HA_FAULT;
	} else if (in->peer_configured) {
		/* A master holds the live state: what a returning peer sends
		 * is its own few flows, and a penalty here could hand the
		 * addresses to a node that has just started. */
		if (in->peer_connected && in->peer_missing && ha->role != HA_MASTER)
			snprintf(why, sizeof(why), "the flow table is full: some of the peer's "
			    "flows are not here");
		else if (in->peer_connected && !in->in_sync && ha->role != HA_MASTER)
			snprintf(why, sizeof(why), "receiving the peer's flows (bulk not complete)");
		else if (ha->role != HA_MASTER && (in->kernel_backlog > HA_BACKLOG_SMALL ||
		    (in->kernel_backlog > 0 && now_ms - in->kernel_backlog_empty_ms >= HA_BACKLOG_MS)))
			snprintf(why, sizeof(why), "writing the peer's flows into the kernel");
		else if (!in->peer_connected && !ha->peer_seen &&
		    now_ms - ha->start_ms < HA_GRACE_MS)
			snprintf(why, sizeof(why), "starting: waiting for the peer's flows");
		else if (!in->peer_connected && ha->peer_seen && ha->role != HA_MASTER &&
		    !(ha->peer_closed_ms != 0 && now_ms - ha->peer_closed_ms < HA_PEER_GONE_MS))
			snprintf(why, sizeof(why), "the sync link is down: the peer's changes "
			    "since are missing here");
		/* Only in sync: a peer that is still receiving our flows
		 * (just restarted, its providers not yet probed) must not
		 * outrank us with this penalty against its own. */
		else if (in->peer_connected && in->peer_known && in->in_sync &&
		    in->up_own < in->up_peer)
			snprintf(why, sizeof(why), "%u providers up here, %u on the peer",
			    in->up_own, in->up_peer);
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
ha_count(struct ha *ha, enum ha_count what)
{
	if (what == HA_STALE_NOTIFY)
		ha->stale_notifies++;
	else
		ha->role_repairs++;
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
	emit_u64(out, "stale_notifies", ha->stale_notifies);
	emit_u64(out, "role_repairs", ha->role_repairs);
	emit_str(out, "last_transition", ha->last_reason[0] ? ha->last_reason : NULL);
	emit_object_end(out);
}

void
ha_metrics(const struct ha *ha, FILE *f)
{
	fprintf(f, "# HELP uplinkd_ha_role The role keepalived gave this node (1 for the current one).\n"
	    "# TYPE uplinkd_ha_role gauge\n");
	for (size_t i = 0; i < sizeof(ha_names) / sizeof(ha_names[0]); i++)
		fprintf(f, "uplinkd_ha_role{role=\"%s\"} %d\n", ha_names[i], (size_t)ha->role == i);
	fprintf(f, "# HELP uplinkd_ha_ready Ready to take over: nothing lowers the VRRP priority.\n"
	    "# TYPE uplinkd_ha_ready gauge\nuplinkd_ha_ready %d\n"
	    "# HELP uplinkd_ha_transitions_total Role changes since the daemon started.\n"
	    "# TYPE uplinkd_ha_transitions_total counter\nuplinkd_ha_transitions_total %llu\n",
	    ha_ready(ha), (unsigned long long)ha->transitions);
}
