/*
 * health_probe: runs the health module alone, for the namespace lab test.
 *
 * Builds a config by hand from flags, runs the event loop for a given
 * time and prints one line per callback event:
 *
 *	<ms since start> EVENT <provider> <DOWN|UP|LINK_DOWN|LINK_UP> <reason>
 *
 * then a STATS line per provider.  Stops early on SIGTERM/SIGINT.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "config.h"
#include "ev.h"
#include "health.h"
#include "log.h"

struct probe {
	struct ev_loop *loop;
	const struct config *cfg;
	int64_t start_ms;
	int sigfd;
};

static const char *
event_name(enum health_event ev)
{
	switch (ev) {
	case HEALTH_DOWN:
		return "DOWN";
	case HEALTH_UP:
		return "UP";
	case HEALTH_LINK_DOWN:
		return "LINK_DOWN";
	case HEALTH_LINK_UP:
		return "LINK_UP";
	}
	return "?";
}

static void
on_event(size_t provider, enum health_event ev, const char *reason, void *data)
{
	struct probe *pr = data;

	printf("%lld EVENT %s %s %s\n",
	    (long long)(ev_clock_us() / 1000 - pr->start_ms),
	    pr->cfg->providers[provider].name, event_name(ev), reason);
	fflush(stdout);
}

static int64_t
on_deadline(void *data)
{
	struct probe *pr = data;

	ev_stop(pr->loop);
	return EV_TIMER_STOP;
}

static void
on_signal(int fd, void *data)
{
	struct probe *pr = data;
	struct signalfd_siginfo si;

	if (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		ev_stop(pr->loop);
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: health_probe [-v] [-d ms] [-i ms] [-t ms] [-f fall] [-r rise]\n"
	    "           [-q require] -p name,iface,gateway,source,mark,target[+target...] ...\n");
	exit(2);
}

static unsigned long
num(const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0' || v > max) {
		fprintf(stderr, "health_probe: bad number \"%s\"\n", s);
		exit(2);
	}
	return v;
}

/* name,iface,gateway,source,mark,targets (targets joined by '+'). */
static void
parse_provider(struct cfg_provider *cp, const char *arg)
{
	char buf[512], *field[6], *save = NULL, *s, *t;
	size_t n = 0;

	if (strlen(arg) >= sizeof(buf))
		usage();
	memcpy(buf, arg, strlen(arg) + 1);
	for (s = strtok_r(buf, ",", &save); s != NULL && n < 6;
	    s = strtok_r(NULL, ",", &save))
		field[n++] = s;
	if (n != 6 || s != NULL)
		usage();
	if (strlen(field[0]) >= sizeof(cp->name) ||
	    strlen(field[1]) >= sizeof(cp->interface))
		usage();
	memcpy(cp->name, field[0], strlen(field[0]) + 1);
	memcpy(cp->interface, field[1], strlen(field[1]) + 1);
	if (netaddr_parse(field[2], &cp->gateway) == -1 ||
	    netaddr_parse(field[3], &cp->source) == -1) {
		fprintf(stderr, "health_probe: bad address in \"%s\"\n", arg);
		exit(2);
	}
	cp->mark = (uint32_t)num(field[4], UINT32_MAX);
	cp->weight = 1;
	save = NULL;
	for (t = strtok_r(field[5], "+", &save); t != NULL;
	    t = strtok_r(NULL, "+", &save)) {
		if (cp->health.ntargets == CFG_MAX_TARGETS ||
		    netaddr_parse(t, &cp->health.targets[cp->health.ntargets]) == -1) {
			fprintf(stderr, "health_probe: bad target \"%s\"\n", t);
			exit(2);
		}
		cp->health.ntargets++;
	}
}

int
main(int argc, char **argv)
{
	static struct config cfg;
	struct probe pr = { 0 };
	struct health *h;
	struct health_stats st;
	uint32_t duration = 10000, interval = 200, timeout = 150;
	unsigned fall = 3, rise = 2, require = 1;
	int verbose = 0, c;
	sigset_t mask;

	while ((c = getopt(argc, argv, "vd:i:t:f:r:q:p:")) != -1) {
		switch (c) {
		case 'v':
			verbose++;
			break;
		case 'd':
			duration = (uint32_t)num(optarg, 3600000);
			break;
		case 'i':
			interval = (uint32_t)num(optarg, 3600000);
			break;
		case 't':
			timeout = (uint32_t)num(optarg, 3600000);
			break;
		case 'f':
			fall = (unsigned)num(optarg, 1000);
			break;
		case 'r':
			rise = (unsigned)num(optarg, 1000);
			break;
		case 'q':
			require = (unsigned)num(optarg, CFG_MAX_TARGETS);
			break;
		case 'p':
			if (cfg.nproviders == CFG_MAX_PROVIDERS)
				usage();
			parse_provider(&cfg.providers[cfg.nproviders++], optarg);
			break;
		default:
			usage();
		}
	}
	if (cfg.nproviders == 0 || optind != argc || timeout > interval)
		usage();
	for (size_t i = 0; i < cfg.nproviders; i++) {
		struct cfg_health *hc = &cfg.providers[i].health;

		hc->interval_ms = interval;
		hc->timeout_ms = timeout;
		hc->fall = fall;
		hc->rise = rise;
		hc->require = require;
		cfg.providers[i].table = (uint32_t)(100 + i);
		cfg.mark_mask |= cfg.providers[i].mark;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	log_init("health_probe", 1, verbose);

	if ((pr.loop = ev_create()) == NULL)
		fatal("ev_create");
	pr.cfg = &cfg;
	pr.start_ms = ev_clock_us() / 1000;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if ((pr.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) == -1 ||
	    ev_fd_add(pr.loop, pr.sigfd, on_signal, NULL, &pr) == -1)
		fatal("signalfd");
	if (ev_timer_add(pr.loop, duration, on_deadline, &pr) == NULL)
		fatal("timer");
	if ((h = health_create(pr.loop, &cfg, on_event, &pr)) == NULL)
		fatal("health_create");
	printf("%lld START", (long long)(ev_clock_us() / 1000 - pr.start_ms));
	for (size_t i = 0; i < cfg.nproviders; i++)
		printf(" %s=%s", cfg.providers[i].name,
		    health_up(h, i) ? "up" : "down");
	printf("\n");

	if (ev_run(pr.loop) == -1)
		log_warn("ev_run");

	for (size_t i = 0; i < cfg.nproviders; i++) {
		health_get(h, i, &st);
		printf("STATS %s up=%d link=%d rounds=%llu good=%llu sent=%llu "
		    "replies=%llu timeouts=%llu send_errors=%llu rtt_avg=%.3f "
		    "avail=%.3f\n", cfg.providers[i].name, st.up, st.link_up,
		    (unsigned long long)st.rounds,
		    (unsigned long long)st.rounds_good,
		    (unsigned long long)st.probes_sent,
		    (unsigned long long)st.replies,
		    (unsigned long long)st.timeouts,
		    (unsigned long long)st.send_errors, st.rtt_ms_avg,
		    health_availability(h, i));
	}
	printf("COMBINED %.4f\n", health_combined_availability(h));
	health_destroy(h);
	ev_fd_del(pr.loop, pr.sigfd);
	close(pr.sigfd);
	ev_destroy(pr.loop);
	return 0;
}
