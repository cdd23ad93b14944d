/*
 * test_ha: the role state machine and the VRRP track file it writes, read
 * back from the file as keepalived would.
 */
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "emit.h"
#include "ha.h"
#include "log.h"
#include "tap.h"

static char dir[64], sock[128], track[128], lock[140];

static int
track_value(void)
{
	FILE *f = fopen(track, "r");
	int v = 9999;

	if (f == NULL)
		return 9999;
	if (fscanf(f, "%d", &v) != 1)
		v = 9998;
	fclose(f);
	return v;
}

static struct config *
mkconfig(bool sync)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	snprintf(cfg->node, sizeof(cfg->node), "gw1");
	cfg->control.socket = sock;
	cfg->has_sync = sync;
	return cfg;
}

/* A child that starts the ha module (and its guard) and dies by SIGKILL;
 * true when it did. */
static bool
daemon_killed(struct config *cfg)
{
	int status;
	pid_t pid;

	fflush(NULL);
	if ((pid = fork()) == 0) {
		if (ha_create(cfg, 0) == NULL)
			_exit(1);
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFSIGNALED(status);
}

/* A daemon that dies by SIGKILL: its guard must write the fault value,
 * and a daemon started right after must not have its value overwritten. */
static void
guard_kill(struct config *cfg)
{
	struct ha *ha;
	int waited;

	tap_ok(daemon_killed(cfg), "a daemon with its guard killed with SIGKILL");
	for (waited = 0; track_value() != -HA_FAULT && waited < 10000; waited += 10)
		usleep(10000);
	tap_ok(track_value() == -HA_FAULT, "its guard writes the fault value (%d after %d ms)",
	    track_value(), waited);

	daemon_killed(cfg);
	/* No wait for the guard here: ha_create waits for its lock. */
	ha = ha_create(cfg, 0);
	usleep(200000);
	tap_ok(ha != NULL && track_value() == -HA_PENALTY,
	    "a restart right after a kill is not overwritten by the old guard (%d)", track_value());
	ha_destroy(ha);
}

/* The not-ready reason ha_report gives contains what. */
static bool
reason_has(const struct ha *ha, const char *what)
{
	struct emit *e = emit_create(EMIT_JSON);
	const char *text;
	size_t len;
	bool found;

	ha_report(ha, e, 0, true);
	text = emit_finish(e, &len);
	found = text != NULL && strstr(text, what) != NULL;
	emit_destroy(e);
	return found;
}

int
main(void)
{
	struct config *cfg = mkconfig(true), *alone = mkconfig(false);
	struct ha_inputs in = { .peer_configured = true };
	enum ha_role r;
	struct ha *ha;
	char path[256];

	log_init("test_ha", 1, 0);
	snprintf(dir, sizeof(dir), "/tmp/uplinkd-ha-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(sock, sizeof(sock), "%s/uplinkd.sock", dir);
	snprintf(track, sizeof(track), "%s/gw1.vrrp", dir);
	snprintf(lock, sizeof(lock), "%s.lock", track);

	tap_ok(ha_track_path(cfg, path, sizeof(path)) == 0 && strcmp(path, track) == 0,
	    "track file next to the control socket, named after the node (%s)", path);
	tap_ok(ha_track_path(cfg, path, 8) == -1 && errno == ENAMETOOLONG, "too long a path refused");
	tap_ok(ha_role_parse("master", &r) == 0 && r == HA_MASTER &&
	    ha_role_parse("backup", &r) == 0 && r == HA_BACKUP &&
	    ha_role_parse("fault", &r) == 0 && r == HA_FAULT_ROLE, "roles parse");
	tap_ok(ha_role_parse("init", &r) == -1 && ha_role_parse("Master", &r) == -1,
	    "init and wrong case are not roles keepalived sends");

	ha = ha_create(cfg, 1000);
	tap_ok(ha != NULL && track_value() == -HA_PENALTY && ha_role(ha) == HA_INIT,
	    "a node with a peer starts not ready (%d), role init", track_value());
	ha_update(ha, &in, 1000 + HA_GRACE_MS - 1);
	tap_ok(track_value() == -HA_PENALTY, "... for the start-up grace while the peer is silent");
	ha_update(ha, &in, 1000 + HA_GRACE_MS);
	tap_ok(track_value() == 0 && ha_ready(ha), "after the grace a lone node is ready");
	in.peer_connected = true;
	ha_update(ha, &in, 10000);
	tap_ok(track_value() == -HA_PENALTY && !ha_ready(ha),
	    "a connected peer whose bulk is incomplete makes it not ready");
	in.in_sync = true;
	ha_update(ha, &in, 10100);
	tap_ok(track_value() == 0, "in sync: ready");
	in.in_sync = false;
	in.peer_missing = true;
	ha_update(ha, &in, 10150);
	tap_ok(track_value() == -HA_PENALTY && reason_has(ha, "flow table is full"),
	    "a flow table that refused some of the peer's flows: not ready, and says why");
	in.in_sync = true;
	in.peer_missing = false;
	ha_update(ha, &in, 10200);
	tap_ok(track_value() == 0, "... ready once they fit");
	in.peer_known = true;
	in.up_own = 1;
	in.up_peer = 2;
	ha_update(ha, &in, 10200);
	tap_ok(track_value() == -HA_PENALTY, "fewer providers up than the peer: not ready");
	in.in_sync = false;
	ha_update(ha, &in, 10210);
	tap_ok(!reason_has(ha, "providers up here"),
	    "... but not while the two are out of sync");
	in.in_sync = true;
	in.up_own = 2;
	ha_update(ha, &in, 10300);
	tap_ok(track_value() == 0, "as many: ready");
	in.kernel_backlog = HA_BACKLOG_SMALL + 1;
	in.kernel_backlog_empty_ms = 10300;
	ha_update(ha, &in, 10310);
	tap_ok(track_value() == -HA_PENALTY && !ha_ready(ha),
	    "in sync, but the kernel does not hold all of the peer's flows yet: not ready");
	in.kernel_backlog = 0;
	in.kernel_backlog_empty_ms = 10320;
	ha_update(ha, &in, 10320);
	tap_ok(track_value() == 0, "... ready once they are written");
	in.kernel_backlog = 50;
	ha_update(ha, &in, 10330);
	tap_ok(track_value() == 0 && ha_ready(ha),
	    "a few of a stream's flows in flight for a moment: still ready");
	/* A steady stream: every sample sees some waiting, every write
	 * slice empties the backlog. */
	for (int64_t t = 10330; t <= 10330 + 3 * HA_BACKLOG_MS; t += 200) {
		in.kernel_backlog_empty_ms = t - 1;
		ha_update(ha, &in, t);
	}
	tap_ok(ha_ready(ha), "a stream that each slice writes out: ready however long it lasts");
	ha_update(ha, &in, 10330 + 4 * HA_BACKLOG_MS);
	tap_ok(track_value() == -HA_PENALTY && !ha_ready(ha),
	    "a backlog not empty for %d ms: not ready", HA_BACKLOG_MS);
	in.kernel_backlog = 0;
	in.kernel_backlog_empty_ms = 10330 + 4 * HA_BACKLOG_MS + 10;
	ha_update(ha, &in, 10330 + 4 * HA_BACKLOG_MS + 10);
	tap_ok(ha_ready(ha), "... ready once it is written");
	in.peer_connected = in.in_sync = in.peer_known = false;
	in.peer_closed = true;
	ha_update(ha, &in, 10400);
	tap_ok(track_value() == 0 && ha_ready(ha),
	    "the peer's daemon closed the sync link (it exited): still ready");
	ha_update(ha, &in, 10400 + HA_PEER_GONE_MS);
	tap_ok(track_value() == -HA_PENALTY, "... for %d ms only", HA_PEER_GONE_MS);
	in.peer_connected = in.in_sync = true;
	in.peer_closed = false;
	ha_update(ha, &in, 10500 + HA_PEER_GONE_MS);
	in.peer_connected = in.in_sync = false;
	ha_update(ha, &in, 10600 + HA_PEER_GONE_MS);
	tap_ok(track_value() == -HA_PENALTY && !ha_ready(ha),
	    "not master and the sync link lost after the peer was seen: not ready");

	tap_ok(ha_set_role(ha, HA_BACKUP, "test", 11000) == HA_INIT && ha_role(ha) == HA_BACKUP &&
	    ha_role_since_ms(ha) == 11000, "init -> backup");
	tap_ok(ha_set_role(ha, HA_BACKUP, "test", 12000) == HA_BACKUP &&
	    ha_role_since_ms(ha) == 11000, "the same role again is no transition");
	tap_ok(ha_set_role(ha, HA_MASTER, "test", 13000) == HA_BACKUP && ha_role(ha) == HA_MASTER,
	    "backup -> master");
	ha_update(ha, &in, 13100);
	tap_ok(track_value() == 0, "a master that lost the sync link stays ready (it has the state)");
	in.peer_connected = true;
	ha_update(ha, &in, 13150);
	tap_ok(track_value() == 0 && ha_ready(ha),
	    "a master receiving a returning peer's bulk stays ready (it has the live state)");
	in.peer_connected = false;
	ha_step_down(ha, 15000);
	ha_update(ha, &in, 13200);
	tap_ok(track_value() == -HA_FAULT && ha_step_down_until(ha, 13200) == 15000,
	    "a drill's step-down writes the fault value");
	ha_update(ha, &in, 15000);
	tap_ok(track_value() == 0 && ha_step_down_until(ha, 15000) == 0,
	    "... and ends by itself at its bound");
	ha_step_down(ha, 20000);
	ha_update(ha, &in, 15100);
	ha_step_down(ha, 0);
	ha_update(ha, &in, 15200);
	tap_ok(track_value() == 0, "step-down 0 ends it early");
	ha_destroy(ha);
	tap_ok(track_value() == -HA_FAULT, "a clean stop writes the fault value (%d)", track_value());

	tap_ok(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD,
	    "a clean stop reaps the guard");

	ha = ha_create(alone, 0);
	tap_ok(ha != NULL && track_value() == 0, "a node without a peer is ready at once");
	ha_destroy(ha);
	ha_destroy(NULL);

	guard_kill(cfg);

	unlink(lock);
	unlink(track);
	rmdir(dir);
	free(cfg);
	free(alone);
	return tap_done();
}
