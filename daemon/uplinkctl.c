/*
 * uplinkctl: the command line of uplinkd's control socket.
 *
 * One table of subcommands; each checks its own arguments before anything
 * is sent (a usage error never reaches the daemon), normalises them into
 * the argv strings of the request, and has its own --help.  The daemon
 * renders the answer (human or JSON) and uplinkctl prints it as it is.
 *
 * Exit status (fixed): 0 ok, 1 operation failed, 2 usage error, 3 daemon
 * not reachable.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "config.h"
#include "ctl.h"
#include "drill.h"
#include "handover.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define EXIT_OK 0
#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

#define UPLINKCTL_TIMEOUT_MS 10000
#define UPLINKCTL_MAX_LIMIT 100000000u

/* What a command's parser produced: the request's arguments. */
struct request_args {
	int argc;
	char *argv[CTL_MAX_ARGS];
	char limit[24];		/* normalised --limit value */
	char state[8];		/* normalised ha state */
	struct drill_opts drill;	/* drill and handover run here, not in */
	struct handover_opts handover;	/* the daemon */
};

enum parse_result {
	PARSE_OK,
	PARSE_HELP,		/* help printed: exit 0 */
	PARSE_USAGE,		/* message printed: exit 2 */
};

struct command {
	const char *name;
	enum ctl_type type;
	const char *summary;
	const char *synopsis;	/* the command's part of the synopsis */
	const char *description;
	const char *options;	/* NULL when it has none of its own */
	enum parse_result (*parse)(const struct command *cmd, int argc,
	    char **argv, struct request_args *out, bool *json);
	/* Runs in uplinkctl (drill, handover): returns the exit status. */
	int (*run_here)(struct request_args *a, const char *socket, bool json);
};

static const char *exit_status_text =
    "EXIT STATUS\n"
    "    0  the operation succeeded\n"
    "    1  the daemon could not carry it out (its message is on stderr)\n"
    "    2  usage error (bad command, option or argument)\n"
    "    3  uplinkd could not be reached on its control socket\n";

static const char *global_options_text =
    "    -s, --socket PATH\n"
    "        Control socket of uplinkd.  Default: $UPLINKD_SOCKET when set,\n"
    "        else " CTL_DEFAULT_SOCKET ".\n"
    "    -j, --json\n"
    "        Ask for JSON output (one object, same fields as the human\n"
    "        output).  May also follow the command.\n"
    "    -h, --help\n"
    "        Show help: the command list, or one command's manual when it\n"
    "        follows the command (\"uplinkctl flows --help\").\n"
    "    -V, --version\n"
    "        Show the version.\n";

static void
usage_error(const struct command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
usage_error(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "uplinkctl: %s%s", cmd ? cmd->name : "", cmd ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (cmd)
		fprintf(stderr, "\nusage: uplinkctl [-s SOCKET] [--json] %s\n"
		    "Try 'uplinkctl %s --help'.\n", cmd->synopsis, cmd->name);
	else
		fprintf(stderr, "\nTry 'uplinkctl --help'.\n");
}

static void
command_help(const struct command *cmd)
{
	printf("NAME\n    uplinkctl %s - %s\n\n", cmd->name, cmd->summary);
	printf("SYNOPSIS\n    uplinkctl [-s SOCKET] [--json] %s\n\n", cmd->synopsis);
	printf("DESCRIPTION\n%s\n", cmd->description);
	printf("OPTIONS\n");
	if (cmd->options)
		printf("%s", cmd->options);
	printf("    -h, --help\n        Show this help.\n\n");
	printf("GLOBAL OPTIONS\n%s\n", global_options_text);
	printf("%s", exit_status_text);
}

static bool
is_help(const char *arg)
{
	return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

static bool
is_json(const char *arg)
{
	return strcmp(arg, "-j") == 0 || strcmp(arg, "--json") == 0;
}

/* The arguments every command takes: -h/--help (its manual is printed,
 * *r = PARSE_HELP) and -j/--json (noted, *r = PARSE_OK).  False for any
 * other argument. */
static bool
common_arg(const struct command *cmd, const char *arg, bool *json, enum parse_result *r)
{
	*r = PARSE_OK;
	if (is_help(arg)) {
		command_help(cmd);
		*r = PARSE_HELP;
		return true;
	}
	if (is_json(arg)) {
		*json = true;
		return true;
	}
	return false;
}

/*
 * "--name VALUE", "--name=VALUE" or "-x VALUE".  Returns 1 and sets *value
 * when argv[*i] is the option (advancing *i over its value), 0 when it is
 * not, -1 (after a message) when its value is missing.
 */
static int
option_value(const struct command *cmd, int argc, char **argv, int *i,
    const char *longname, const char *shortname, const char **value)
{
	const char *arg = argv[*i];
	size_t n = strlen(longname);

	if (strncmp(arg, longname, n) == 0 && arg[n] == '=') {
		*value = arg + n + 1;
		return 1;
	}
	if (strcmp(arg, longname) != 0 &&
	    (shortname == NULL || strcmp(arg, shortname) != 0))
		return 0;
	if (*i + 1 >= argc) {
		usage_error(cmd, "option %s needs a value", longname);
		return -1;
	}
	*value = argv[++*i];
	return 1;
}

/* A provider name as the config allows it. */
static bool
check_provider(const struct command *cmd, const char *name)
{
	if (name[0] == '\0' || name[0] == '-') {
		usage_error(cmd, "bad provider name \"%s\"", name);
		return false;
	}
	if (strlen(name) >= CFG_NAME_MAX) {
		usage_error(cmd, "provider name \"%s\" is longer than %d bytes",
		    name, CFG_NAME_MAX - 1);
		return false;
	}
	return true;
}

/*
 * A socket path that does not fit sun_path can never be reached: that is
 * the caller's mistake (exit 2), not a daemon that is down (exit 3).
 */
static bool
check_socket(const struct command *cmd, const char *what, const char *path)
{
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

	if (strlen(path) > max) {
		usage_error(cmd, "%s \"%s\" is longer than %zu bytes", what, path, max);
		return false;
	}
	return true;
}

static void
add_arg(struct request_args *out, char *arg)
{
	/* Callers add a handful at most; drill checks its own count. */
	out->argv[out->argc++] = arg;
}

/* Commands without arguments of their own. */
static enum parse_result
parse_none(const struct command *cmd, int argc, char **argv,
    struct request_args *out, bool *json)
{
	enum parse_result r;
	(void)out;
	for (int i = 0; i < argc; i++) {
		if (common_arg(cmd, argv[i], json, &r)) {
			if (r == PARSE_HELP)
				return r;
			continue;
		}
		usage_error(cmd, "unexpected argument \"%s\"", argv[i]);
		return PARSE_USAGE;
	}
	return PARSE_OK;
}

static enum parse_result
parse_flows(const struct command *cmd, int argc, char **argv,
    struct request_args *out, bool *json)
{
	enum parse_result r;
	const char *provider = NULL, *limit = NULL;

	for (int i = 0; i < argc; i++) {
		const char *v;
		int rc;

		if (common_arg(cmd, argv[i], json, &r)) {
			if (r == PARSE_HELP)
				return r;
			continue;
		}
		if ((rc = option_value(cmd, argc, argv, &i, "--provider", "-p",
		    &v)) != 0) {
			if (rc == -1)
				return PARSE_USAGE;
			if (provider != NULL) {
				usage_error(cmd, "--provider given twice");
				return PARSE_USAGE;
			}
			provider = v;
			continue;
		}
		if ((rc = option_value(cmd, argc, argv, &i, "--limit", "-n",
		    &v)) != 0) {
			if (rc == -1)
				return PARSE_USAGE;
			if (limit != NULL) {
				usage_error(cmd, "--limit given twice");
				return PARSE_USAGE;
			}
			limit = v;
			continue;
		}
		usage_error(cmd, "unexpected argument \"%s\"", argv[i]);
		return PARSE_USAGE;
	}
	if (provider != NULL) {
		if (!check_provider(cmd, provider))
			return PARSE_USAGE;
		add_arg(out, "--provider");
		add_arg(out, (char *)(uintptr_t)provider);
	}
	if (limit != NULL) {
		char *end;
		unsigned long long n;

		errno = 0;
		n = strtoull(limit, &end, 10);
		if (limit[0] < '0' || limit[0] > '9' || *end != '\0' ||
		    errno != 0 || n == 0 || n > UPLINKCTL_MAX_LIMIT) {
			usage_error(cmd, "bad --limit \"%s\" (a number from 1 to %u)",
			    limit, UPLINKCTL_MAX_LIMIT);
			return PARSE_USAGE;
		}
		snprintf(out->limit, sizeof(out->limit), "%llu", n);
		add_arg(out, "--limit");
		add_arg(out, out->limit);
	}
	return PARSE_OK;
}

static enum parse_result
parse_sync(const struct command *cmd, int argc, char **argv,
    struct request_args *out, bool *json)
{
	enum parse_result r;
	bool resync = false;

	for (int i = 0; i < argc; i++) {
		if (common_arg(cmd, argv[i], json, &r)) {
			if (r == PARSE_HELP)
				return r;
		} else if (strcmp(argv[i], "--resync") == 0)
			resync = true;
		else {
			usage_error(cmd, "unexpected argument \"%s\"", argv[i]);
			return PARSE_USAGE;
		}
	}
	if (resync)
		add_arg(out, "--resync");
	return PARSE_OK;
}

/* Exactly one positional argument; *value gets it. */
static enum parse_result
parse_one(const struct command *cmd, int argc, char **argv, bool *json,
    const char *what, char **value)
{
	enum parse_result r;
	*value = NULL;
	for (int i = 0; i < argc; i++) {
		if (common_arg(cmd, argv[i], json, &r)) {
			if (r == PARSE_HELP)
				return r;
			continue;
		}
		if (strcmp(argv[i], "--") == 0 && i + 1 < argc && *value == NULL) {
			*value = argv[++i];
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1] != '\0') {
			usage_error(cmd, "unknown option \"%s\"", argv[i]);
			return PARSE_USAGE;
		}
		if (*value != NULL) {
			usage_error(cmd, "unexpected argument \"%s\"", argv[i]);
			return PARSE_USAGE;
		}
		*value = argv[i];
	}
	if (*value == NULL) {
		usage_error(cmd, "missing %s", what);
		return PARSE_USAGE;
	}
	return PARSE_OK;
}

static enum parse_result
parse_provider(const struct command *cmd, int argc, char **argv,
    struct request_args *out, bool *json)
{
	enum parse_result r;
	char *name;

	if ((r = parse_one(cmd, argc, argv, json, "PROVIDER", &name)) != PARSE_OK)
		return r;
	if (!check_provider(cmd, name))
		return PARSE_USAGE;
	add_arg(out, name);
	return PARSE_OK;
}

static enum parse_result
parse_ha(const struct command *cmd, int argc, char **argv,
    struct request_args *out, bool *json)
{
	static const char *const states[] = { "master", "backup", "fault" };
	enum parse_result r;
	char *state;

	if ((r = parse_one(cmd, argc, argv, json, "STATE", &state)) != PARSE_OK)
		return r;
	/* keepalived says MASTER/BACKUP/FAULT; accept either case. */
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		if (strcasecmp(state, states[i]) == 0) {
			snprintf(out->state, sizeof(out->state), "%s", states[i]);
			add_arg(out, out->state);
			return PARSE_OK;
		}
	}
	usage_error(cmd, "bad state \"%s\" (master, backup or fault)", state);
	return PARSE_USAGE;
}

struct secs_opt {
	const char *name;
	size_t offset;		/* of an unsigned in the options struct */
	unsigned min, max;
};

/* argv[*i] as one of opts (a number of seconds into base + offset): 1
 * taken, 0 not one of them, -1 usage error (printed).  A later one wins,
 * so that a wrapper can put its defaults first (tests/lab/drill.sh). */
static int
secs_option(const struct command *cmd, int argc, char **argv, int *i,
    const struct secs_opt *opts, size_t nopts, void *base)
{
	for (size_t k = 0; k < nopts; k++) {
		unsigned long n;
		const char *v;
		char *end;
		int rc;

		if ((rc = option_value(cmd, argc, argv, i, opts[k].name, NULL, &v)) != 1) {
			if (rc == -1)
				return -1;
			continue;
		}
		errno = 0;
		n = strtoul(v, &end, 10);
		/* Digits only: strtoul() would also take "+5" and " 5". */
		if (errno || *end || !isdigit((unsigned char)v[0]) || n < opts[k].min ||
		    n > opts[k].max) {
			usage_error(cmd, "%s: \"%s\" is not a number of seconds (%u..%u)",
			    opts[k].name, v, opts[k].min, opts[k].max);
			return -1;
		}
		*(unsigned *)((char *)base + opts[k].offset) = (unsigned)n;
		return 1;
	}
	return 0;
}

static enum parse_result
parse_drill(const struct command *cmd, int argc, char **argv,
    struct request_args *out, bool *json)
{
	enum parse_result r;
	static const struct secs_opt secs_opts[] = {
		{ "--timeout", offsetof(struct drill_opts, timeout_s), 1, 3600 },
		{ "--settle", offsetof(struct drill_opts, settle_s), 0, 3600 },
		{ "--watch", offsetof(struct drill_opts, watch_s), 1, 3600 },
		{ "--hold", offsetof(struct drill_opts, hold_s), 0, 3600 },
	};
	static const struct {
		const char *name;
		size_t offset;
	} str_opts[] = {
		{ "--peer-socket", offsetof(struct drill_opts, peer_socket) },
		{ "--fail-cmd", offsetof(struct drill_opts, fail_cmd) },
		{ "--restore-cmd", offsetof(struct drill_opts, restore_cmd) },
		{ "--traffic-cmd", offsetof(struct drill_opts, traffic_cmd) },
	};
	struct drill_opts *o = &out->drill;
	bool have_mode = false;

	o->timeout_s = 30;
	o->settle_s = 5;
	o->watch_s = 5;
	o->failback = true;
	for (int i = 0; i < argc; i++) {
		const char *v;
		bool matched = false;
		int rc;

		if (common_arg(cmd, argv[i], json, &r)) {
			if (r == PARSE_HELP)
				return r;
			continue;
		}
		if (strcmp(argv[i], "--force") == 0) {
			o->force = true;
			continue;
		}
		if (strcmp(argv[i], "--no-failback") == 0) {
			o->failback = false;
			continue;
		}
		if ((rc = option_value(cmd, argc, argv, &i, "--mode", "-m", &v)) == -1)
			return PARSE_USAGE;
		if (rc == 1) {
			if (have_mode) {
				usage_error(cmd, "--mode given twice");
				return PARSE_USAGE;
			}
			if (drill_mode_parse(v, &o->mode) == -1) {
				usage_error(cmd, "bad mode \"%s\" (graceful, kill, link, node "
				    "or sync-cut)", v);
				return PARSE_USAGE;
			}
			have_mode = true;
			continue;
		}
		for (size_t k = 0; k < sizeof(str_opts) / sizeof(str_opts[0]) && !matched; k++) {
			if ((rc = option_value(cmd, argc, argv, &i, str_opts[k].name, NULL,
			    &v)) == -1)
				return PARSE_USAGE;
			if (rc == 1) {
				if (v[0] == '\0') {
					usage_error(cmd, "%s: empty value", str_opts[k].name);
					return PARSE_USAGE;
				}
				if (*(const char **)((char *)o + str_opts[k].offset) != NULL) {
					usage_error(cmd, "%s given twice", str_opts[k].name);
					return PARSE_USAGE;
				}
				*(const char **)((char *)o + str_opts[k].offset) = v;
				matched = true;
			}
		}
		if (!matched) {
			if ((rc = secs_option(cmd, argc, argv, &i, secs_opts,
			    sizeof(secs_opts) / sizeof(secs_opts[0]), o)) == -1)
				return PARSE_USAGE;
			matched = rc == 1;
		}
		if (matched)
			continue;
		usage_error(cmd, "%s \"%s\"", argv[i][0] == '-' ? "unknown option" :
		    "unexpected argument", argv[i]);
		return PARSE_USAGE;
	}
	if (!have_mode) {
		usage_error(cmd, "missing --mode");
		return PARSE_USAGE;
	}
	if (o->mode != DRILL_GRACEFUL && o->fail_cmd == NULL) {
		usage_error(cmd, "--mode %s needs --fail-cmd: uplinkctl cannot kill, unplug or "
		    "cut another box itself (the lab harness tests/lab/drill.sh supplies the "
		    "commands)", drill_mode_name(o->mode));
		return PARSE_USAGE;
	}
	if (o->mode == DRILL_GRACEFUL && (o->fail_cmd || o->restore_cmd)) {
		usage_error(cmd, "--mode graceful steps the active node down itself: no "
		    "--fail-cmd or --restore-cmd");
		return PARSE_USAGE;
	}
	if (o->mode == DRILL_SYNC_CUT && (o->restore_cmd == NULL || o->peer_socket == NULL)) {
		usage_error(cmd, "--mode sync-cut needs --restore-cmd (to heal the link) and "
		    "--peer-socket (the nodes cannot see each other while it is cut)");
		return PARSE_USAGE;
	}
	if (o->peer_socket != NULL && !check_socket(cmd, "--peer-socket", o->peer_socket))
		return PARSE_USAGE;
	if (o->mode != DRILL_GRACEFUL && o->peer_socket == NULL) {
		usage_error(cmd, "--mode %s needs --peer-socket: the failed node cannot report "
		    "what its peer did", drill_mode_name(o->mode));
		return PARSE_USAGE;
	}
	/* Without a way back there is no failback leg to check. */
	if (o->mode != DRILL_GRACEFUL && o->restore_cmd == NULL)
		o->failback = false;
	return PARSE_OK;
}

static enum parse_result
parse_handover(const struct command *cmd, int argc, char **argv,
    struct request_args *out, bool *json)
{
	enum parse_result r;
	static const struct secs_opt secs_opts[] = {
		{ "--timeout", offsetof(struct handover_opts, timeout_s), 1, 86400 },
		{ "--stable", offsetof(struct handover_opts, stable_s), 0, 600 },
		{ "--hold", offsetof(struct handover_opts, hold_s), 10, 3600 },
	};
	struct handover_opts *o = &out->handover;

	o->timeout_s = 120;
	o->stable_s = 3;
	o->hold_s = 300;
	for (int i = 0; i < argc; i++) {
		int rc;

		if (common_arg(cmd, argv[i], json, &r)) {
			if (r == PARSE_HELP)
				return r;
			continue;
		}
		if ((rc = secs_option(cmd, argc, argv, &i, secs_opts,
		    sizeof(secs_opts) / sizeof(secs_opts[0]), o)) == -1)
			return PARSE_USAGE;
		if (rc == 1)
			continue;
		usage_error(cmd, "%s \"%s\"", argv[i][0] == '-' ? "unknown option" :
		    "unexpected argument", argv[i]);
		return PARSE_USAGE;
	}
	return PARSE_OK;
}

static int
run_drill(struct request_args *a, const char *socket, bool json)
{
	a->drill.socket = socket;
	a->drill.json = json;
	return drill_run(&a->drill);
}

static int
run_handover(struct request_args *a, const char *socket, bool json)
{
	a->handover.socket = socket;
	a->handover.json = json;
	return handover_run(&a->handover);
}

static const struct command commands[] = {
	{
		"status", CTL_STATUS, "show the node's state",
		"status",
		"    Shows this node's name and HA role (master, backup, fault or\n"
		"    init), whether it is in sync with its peer, each provider with\n"
		"    its health state (up, down or draining), weight, flow count and\n"
		"    SNAT address, the flow counts (total, own, from the peer) and\n"
		"    the state of the sync channel (peer, connection,\n"
		"    authentication, lag, frames sent and received, resyncs and\n"
		"    rejected frames by reason).\n",
		NULL, parse_none, NULL,
	},
	{
		"providers", CTL_PROVIDERS, "list the providers and their health",
		"providers",
		"    Lists every configured provider with its interface, gateway,\n"
		"    SNAT address, mark, routing table, weight, health state and\n"
		"    the state of its probes.\n",
		NULL, parse_none, NULL,
	},
	{
		"flows", CTL_FLOWS, "list tracked flows",
		"flows [--provider NAME] [--limit N]",
		"    Lists the flows uplinkd tracks: the original tuple, the\n"
		"    provider, the translated source address and port, the mark,\n"
		"    the L4 state, its age and the node that owns it.\n",
		"    -p, --provider NAME\n"
		"        Only flows through provider NAME.\n"
		"    -n, --limit N\n"
		"        At most N flows (1 to 100000000).\n",
		parse_flows, NULL,
	},
	{
		"sync", CTL_SYNC, "show the peer sync, or start a resync",
		"sync [--resync]",
		"    Shows the state of the sync channel to the peer node, with\n"
		"    when this node's, the CA's and the peer's certificates expire\n"
		"    (cert_, ca_, peer_cert_expires and _days_left).  Of the two\n"
		"    nodes, the one whose name sorts first dials (dialer: yes);\n"
		"    while the peer cannot be reached it retries after 0.1 s,\n"
		"    doubling up to 5 s: dials counts the attempts and\n"
		"    redial_in_ms says when the next one is due.\n"
		"    disconnected_for_s says how long there has been no\n"
		"    authenticated connection (\"-\", null with --json, while\n"
		"    there is one).  With --resync, asks the peer for a full\n"
		"    transfer of its flows (bulk resync) and sends ours.\n",
		"    --resync\n"
		"        Start a bulk resync.\n",
		parse_sync, NULL,
	},
	{
		"drain", CTL_DRAIN, "stop sending new flows to a provider",
		"drain PROVIDER",
		"    Marks PROVIDER as draining: it gets no new flows, while its\n"
		"    established flows keep going through it.  Undone by\n"
		"    \"uplinkctl undrain\" and by a restart.\n",
		NULL, parse_provider, NULL,
	},
	{
		"undrain", CTL_UNDRAIN, "let a drained provider take new flows",
		"undrain PROVIDER",
		"    Ends the draining of PROVIDER; it takes new flows again while\n"
		"    its health checks say it is up.\n",
		NULL, parse_provider, NULL,
	},
	{
		"ha", CTL_HA, "set the HA role (keepalived notify)",
		"ha master|backup|fault",
		"    Tells uplinkd the state keepalived has just entered.  On\n"
		"    master it commits the peer's flows into the kernel before\n"
		"    taking traffic; on backup and fault it keeps receiving them.\n"
		"    The state may be given in upper case, as keepalived passes it.\n",
		NULL, parse_ha, NULL,
	},
	{
		"reload", CTL_RELOAD, "reload the configuration",
		"reload",
		"    Reads the configuration file again and switches to it only\n"
		"    when it is valid (like SIGHUP); otherwise the errors are\n"
		"    reported and the running configuration stays.  The sync\n"
		"    channel's TLS files are read again too (renewed\n"
		"    certificates): the connection that is up stays up, the next\n"
		"    one uses them; files that do not load fail the reload.\n",
		NULL, parse_none, NULL,
	},
	{
		"metrics", CTL_METRICS, "print counters in Prometheus text format",
		"metrics",
		"    Prints uplinkd's counters and gauges in the Prometheus text\n"
		"    exposition format (for a textfile collector or a scrape\n"
		"    wrapper).  --json has no effect on it.\n",
		NULL, parse_none, NULL,
	},
	{
		"drill", CTL_DRILL, "run a failover drill and report",
		"drill --mode MODE [OPTIONS]",
		"    Fails the active node of the pair on purpose and checks the\n"
		"    product's promise: the standby becomes master and carries every\n"
		"    connection of the failed node with the same provider and the\n"
		"    same translated source address and port.  Then, when the old\n"
		"    node comes back and VRRP preempt gives it the addresses again,\n"
		"    the same check the other way round (the failback).\n"
		"\n"
		"    The drill runs in uplinkctl and talks to the daemons through\n"
		"    their control sockets: the one given by -s and, with\n"
		"    --peer-socket, the peer's.  Without --peer-socket it sees the\n"
		"    peer through the sync channel (its role from its heartbeats,\n"
		"    its flows from what it replicates back), which is enough for\n"
		"    --mode graceful run on the active node.  It refuses to start\n"
		"    unless exactly one node is master and the pair is in sync.\n"
		"\n"
		"    Modes:\n"
		"      graceful  the active node steps down: uplinkd puts keepalived\n"
		"                into FAULT through its track file, keepalived\n"
		"                releases the addresses and the standby takes them\n"
		"                at once.  The step-down ends after the takeover was\n"
		"                checked (and --hold), or by itself at the latest\n"
		"                after every wait the drill could make.\n"
		"      kill, link, node\n"
		"                --fail-cmd fails the active node (kill -9 of uplinkd\n"
		"                and keepalived, its LAN link cut, every link cut);\n"
		"                --restore-cmd brings it back for the failback leg.\n"
		"      sync-cut  --fail-cmd cuts only the sync link: for --watch\n"
		"                seconds no role may change; after --restore-cmd the\n"
		"                pair must be in sync again, with every flow of the\n"
		"                active node on the standby.\n"
		"    The commands run with sh -c and DRILL_MODE, DRILL_ACTIVE and\n"
		"    DRILL_STANDBY (node names) in their environment; the lab\n"
		"    harness tests/lab/drill.sh supplies them for the namespace lab.\n"
		"\n"
		"    The report: the verdict, for each leg the takeover time (from\n"
		"    the failure to the new node reporting master while the old one\n"
		"    does not), the flows the old node had, carried, changed\n"
		"    (another provider or source) and lost (each one listed), the\n"
		"    new master's check of the adopted flows against its kernel\n"
		"    (inject: present, created, conflicts, failed, time), the\n"
		"    traffic generator's view (--traffic-cmd) and the events with\n"
		"    their times.  Progress goes to stderr as it happens.\n"
		"    Exit status 0: every flow was carried, the new master's kernel\n"
		"    took every entry (no conflicts, no failed writes) and nothing\n"
		"    broke.\n",
		"    -m, --mode MODE\n"
		"        graceful, kill, link, node or sync-cut (required).\n"
		"    --peer-socket PATH\n"
		"        The peer's control socket (required except for graceful).\n"
		"    --fail-cmd CMD, --restore-cmd CMD\n"
		"        How to fail the active node and bring it back (not for\n"
		"        graceful).  Without --restore-cmd there is no failback leg.\n"
		"    --traffic-cmd CMD\n"
		"        Run after each leg; prints one JSON object (a traffic\n"
		"        generator's counts), copied into the report.  A \"broken\"\n"
		"        member above 0 fails the drill.\n"
		"    --timeout SECONDS\n"
		"        Bound of each wait (takeover, resync).  Default 30; the\n"
		"        failback waits twice as long, for a node that restarts.  A\n"
		"        graceful drill's step-down lasts at most 3600 s however\n"
		"        long the waits.\n"
		"    --settle SECONDS\n"
		"        How long after a takeover the flows may take to show on the\n"
		"        new master before the missing ones count as lost.  Default 5.\n"
		"    --watch SECONDS\n"
		"        sync-cut: how long the cut lasts.  Default 5.\n"
		"    --hold SECONDS\n"
		"        graceful: stay stepped down this long after the takeover was\n"
		"        checked.  Default 0.\n"
		"    --no-failback\n"
		"        Stop after the failover leg (graceful still ends its\n"
		"        step-down, but the failback is not checked).\n"
		"    --force\n"
		"        Run although the pair is not in sync; the flows the standby\n"
		"        could not carry are listed in the report.\n"
		"    What the drill does (--mode, --peer-socket and the commands)\n"
		"    may be given once.  Of the SECONDS options a later one wins, so\n"
		"    that a wrapper can put its defaults first.\n",
		parse_drill, run_drill,
	},
	{
		"handover", CTL_DRILL, "make this node safe to stop or restart",
		"handover [OPTIONS]",
		"    Run before stopping or restarting uplinkd on a node of a pair\n"
		"    (the ansible role does, for a new binary or certificates).  A\n"
		"    restart loses the daemon's state, so the peer must hold it all\n"
		"    first, and the addresses must be on the peer before the master\n"
		"    goes.\n"
		"\n"
		"    It waits until the pair has been in sync for --stable seconds\n"
		"    in a row (a backup: with its peer master all along; a master:\n"
		"    twice as long).  On a backup that is all.  A master then steps\n"
		"    down (uplinkd writes the fault value into keepalived's track file,\n"
		"    keepalived releases the addresses and the peer takes them) and\n"
		"    the command waits until the peer says it is master.  If the\n"
		"    peer drops off meanwhile, because it is restarting too, this\n"
		"    node steps up again at once and waits for the pair anew: the\n"
		"    two nodes are never down together, even when both run this at\n"
		"    the same time.  The step-down lasts until uplinkd stops, or\n"
		"    --hold seconds.  A node without a peer has nothing to hand over.\n"
		"\n"
		"    Progress goes to stderr; the verdict to stdout: safe, verdict,\n"
		"    role, sync (the sync channel's state), seconds.\n"
		"    Exit status 0: safe to stop; 1: not within --timeout (the\n"
		"    reason is printed; a step-down is undone).\n",
		"    --timeout SECONDS\n"
		"        Bound of the whole command.  Default 120.\n"
		"    --stable SECONDS\n"
		"        How long the pair must have been in sync.  Default 3.\n"
		"    --hold SECONDS\n"
		"        Bound of the step-down of a master (10..3600).  Default 300.\n",
		parse_handover, run_handover,
	},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *
command_find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void
global_help(void)
{
	printf("NAME\n    uplinkctl - control uplinkd, the multi-provider NAT "
	    "gateway daemon\n\n");
	printf("SYNOPSIS\n    uplinkctl [-s SOCKET] [--json] COMMAND [ARGS]\n"
	    "    uplinkctl COMMAND --help\n\n");
	printf("DESCRIPTION\n"
	    "    Sends COMMAND to uplinkd over its control socket and prints the\n"
	    "    answer: aligned text for people, or JSON with --json.\n\n");
	printf("COMMANDS\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		printf("    %-36s %s\n", commands[i].synopsis, commands[i].summary);
	printf("\nOPTIONS\n%s\n", global_options_text);
	printf("ENVIRONMENT\n"
	    "    UPLINKD_SOCKET  control socket used when -s is not given\n\n");
	printf("%s", exit_status_text);
}

/* Prints text, if any, and makes sure it ends in a newline. */
static void
print_body(FILE *f, const char *prefix, const char *body)
{
	size_t len = strlen(body);

	if (len == 0 && prefix[0] == '\0')
		return;
	fprintf(f, "%s%s", prefix, body);
	if (len == 0 || body[len - 1] != '\n')
		fputc('\n', f);
}

int
main(int argc, char **argv)
{
	const char *socket_path = getenv("UPLINKD_SOCKET");
	const struct command *cmd;
	struct request_args args = { 0 };
	enum parse_result pr;
	bool json = false;
	uint32_t status;
	char *body;
	int i;

	if (socket_path == NULL || socket_path[0] == '\0')
		socket_path = CTL_DEFAULT_SOCKET;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i], *v;
		int rc;

		if (arg[0] != '-' || strcmp(arg, "-") == 0)
			break;
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (is_help(arg)) {
			global_help();
			return EXIT_OK;
		}
		if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
			printf("uplinkctl %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		}
		if (is_json(arg)) {
			json = true;
			continue;
		}
		if (strncmp(arg, "-s", 2) == 0 && arg[2] != '\0') {
			socket_path = arg + 2;
			continue;
		}
		if ((rc = option_value(NULL, argc, argv, &i, "--socket", "-s",
		    &v)) != 0) {
			if (rc == -1)
				return EXIT_USAGE;
			socket_path = v;
			continue;
		}
		usage_error(NULL, "unknown option \"%s\"", arg);
		return EXIT_USAGE;
	}
	if (i >= argc) {
		usage_error(NULL, "missing command");
		return EXIT_USAGE;
	}
	if (strcmp(argv[i], "help") == 0) {
		if (i + 1 >= argc) {
			global_help();
			return EXIT_OK;
		}
		if ((cmd = command_find(argv[i + 1])) == NULL) {
			usage_error(NULL, "unknown command \"%s\"", argv[i + 1]);
			return EXIT_USAGE;
		}
		command_help(cmd);
		return EXIT_OK;
	}
	if ((cmd = command_find(argv[i])) == NULL) {
		usage_error(NULL, "unknown command \"%s\"", argv[i]);
		return EXIT_USAGE;
	}
	pr = cmd->parse(cmd, argc - i - 1, argv + i + 1, &args, &json);
	if (pr == PARSE_HELP)
		return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
	if (pr == PARSE_USAGE)
		return EXIT_USAGE;
	if (socket_path[0] == '\0') {
		usage_error(NULL, "empty socket path");
		return EXIT_USAGE;
	}
	if (!check_socket(NULL, "socket path", socket_path))
		return EXIT_USAGE;

	if (cmd->run_here != NULL)
		return cmd->run_here(&args, socket_path, json);
	if (ctl_call(socket_path, cmd->type, json ? CTL_F_JSON : 0, args.argc,
	    args.argv, UPLINKCTL_TIMEOUT_MS, &status, &body) == -1) {
		fprintf(stderr, "uplinkctl: cannot reach uplinkd at %s: %s\n",
		    socket_path, errno == EPROTO ? "malformed reply" :
		    strerror(errno));
		return EXIT_UNREACHABLE;
	}
	switch (status) {
	case CTL_OK:
		print_body(stdout, "", body);
		free(body);
		if (fflush(stdout) != 0 || ferror(stdout)) {
			fprintf(stderr, "uplinkctl: writing the answer: %s\n",
			    strerror(errno));
			return EXIT_FAILED;
		}
		return EXIT_OK;
	case CTL_USAGE:
		print_body(stderr, "uplinkctl: ", body);
		free(body);
		return EXIT_USAGE;
	default:
		print_body(stderr, "uplinkctl: ", body);
		free(body);
		return EXIT_FAILED;
	}
}
