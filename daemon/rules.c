#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <endian.h>
#include <linux/fib_rules.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/rtnetlink.h>
#include <linux/netfilter/nfnetlink.h>
#include <libmnl/libmnl.h>

#include "log.h"
#include "rules.h"

#define RULES_CMD_TIMEOUT_MS 10000
#define RULES_HMARK_OFFSET 0x7f000000u	/* scratch range for HMARK buckets */

static bool
rules_is_usable(const bool *usable, size_t i)
{
	return usable == NULL || usable[i];
}

static unsigned
rules_gcd(unsigned a, unsigned b)
{
	while (b) {
		unsigned t = a % b;
		a = b;
		b = t;
	}
	return a;
}

size_t
rules_fallback_buckets(const struct config *cfg, const bool *usable,
    size_t bucket_provider[RULES_MAX_BUCKETS])
{
	unsigned w[CFG_MAX_PROVIDERS] = { 0 }, g = 0, sum = 0;
	bool any = false, balanced = false;
	size_t n = 0;

	for (size_t i = 0; i < cfg->nproviders; i++) {
		balanced |= config_provider_balanced(cfg, i);
		any |= config_provider_balanced(cfg, i) && rules_is_usable(usable, i);
	}
	/* With nothing usable, spread over all the providers that carry
	 * connections: the kernel fallback must never leave traffic
	 * unmarked, nor mark it for a provider with no IPv4 SNAT. */
	for (size_t i = 0; i < cfg->nproviders; i++) {
		if (balanced && !config_provider_balanced(cfg, i))
			continue;
		if (any && !rules_is_usable(usable, i))
			continue;
		w[i] = cfg->providers[i].weight;
		g = rules_gcd(g, w[i]);
	}
	for (size_t i = 0; i < cfg->nproviders; i++) {
		w[i] = g ? w[i] / g : 0;
		sum += w[i];
	}
	if (sum > RULES_MAX_BUCKETS) {
		unsigned scaled = 0;

		for (size_t i = 0; i < cfg->nproviders; i++) {
			if (w[i] == 0)
				continue;
			w[i] = (unsigned)((uint64_t)w[i] * (RULES_MAX_BUCKETS - cfg->nproviders) / sum);
			if (w[i] == 0)
				w[i] = 1;
			scaled += w[i];
		}
		sum = scaled;
	}
	for (size_t i = 0; i < cfg->nproviders; i++)
		for (unsigned k = 0; k < w[i] && n < RULES_MAX_BUCKETS; k++)
			bucket_provider[n++] = i;
	return n;
}

static void
rules_lan_returns(FILE *f, const struct config *cfg, const char *chain)
{
	char pfx[NETADDR_STRLEN + 8];

	/* Traffic between internal networks and to the gateway itself is not
	 * balanced. */
	for (size_t i = 0; i < cfg->lan.nnetworks; i++) {
		if (cfg->lan.networks[i].addr.family != AF_INET)
			continue;
		fprintf(f, "-A %s -d %s -j RETURN\n", chain,
		    netprefix_str(&cfg->lan.networks[i], pfx, sizeof(pfx)));
	}
	fprintf(f, "-A %s -m addrtype --dst-type LOCAL -j RETURN\n", chain);
}

static void
rules_fallback_body(FILE *f, const struct config *cfg, const bool *usable)
{
	size_t bucket[RULES_MAX_BUCKETS];
	size_t n = rules_fallback_buckets(cfg, usable, bucket);

	rules_lan_returns(f, cfg, RULES_CHAIN_FALLBACK);
	fprintf(f, "-A %s -j HMARK --hmark-tuple src,dst,sport,dport,proto "
	    "--hmark-mod %zu --hmark-offset 0x%x --hmark-rnd 0x75706c6b\n",
	    RULES_CHAIN_FALLBACK, n, RULES_HMARK_OFFSET);
	for (size_t k = 0; k < n; k++)
		fprintf(f, "-A %s -m mark --mark 0x%x -j MARK --set-mark 0x%x\n",
		    RULES_CHAIN_FALLBACK, (unsigned)(RULES_HMARK_OFFSET + k),
		    cfg->providers[bucket[k]].mark);
}

char *
rules_render_fallback(const struct config *cfg, const bool *usable)
{
	char *text = NULL;
	size_t len;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	fprintf(f, "*nat\n:%s - [0:0]\n", RULES_CHAIN_FALLBACK);
	rules_fallback_body(f, cfg, usable);
	fprintf(f, "COMMIT\n");
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

char *
rules_render_iptables(const struct config *cfg, const bool *usable)
{
	char *text = NULL, pfx[NETADDR_STRLEN + 8], src[NETADDR_STRLEN];
	const char *lan = cfg->lan.interface;
	uint32_t m = cfg->mark_mask;
	size_t len;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	/*
	 * Every packet of every forwarded connection passes this chain, so
	 * the common cases leave it early: a LAN packet of a known
	 * connection after the second rule, anything else that is not NEW
	 * (replies above all) after the third.
	 */
	fprintf(f, "*mangle\n:%s - [0:0]\n", RULES_CHAIN_PRE);
	/* Restore only on LAN ingress: restoring on provider ingress would
	 * route replies back out through the provider's table. */
	fprintf(f, "-A %s -i %s -m connmark ! --mark 0/0x%x -j CONNMARK --restore-mark "
	    "--nfmask 0x%x --ctmask 0x%x\n", RULES_CHAIN_PRE, lan, m, m, m);
	fprintf(f, "-A %s -m mark ! --mark 0/0x%x -j RETURN\n", RULES_CHAIN_PRE, m);
	fprintf(f, "-A %s -m conntrack ! --ctstate NEW -j RETURN\n", RULES_CHAIN_PRE);
	/*
	 * Provider side, after a takeover: a mid-stream packet from the far
	 * end to a SNAT address whose entry is not (yet) in this kernel would
	 * become a local connection of its own (a TCP RST from the gateway, a
	 * bogus entry whose reply tuple then blocks the replicated entry with
	 * EEXIST).  Dropped instead: the next one finds the entry that the
	 * takeover check or the LAN side's safety net writes.  Nothing
	 * legitimate starts that way: SNAT addresses carry outbound
	 * connections only.
	 */
	for (size_t i = 0; i < cfg->nproviders; i++) {
		const struct cfg_provider *p = &cfg->providers[i];

		if (p->source.family != AF_INET)
			continue;
		netaddr_str(&p->source, pfx, sizeof(pfx));
		fprintf(f, "-A %s -i %s -d %s -p tcp ! --syn -j DROP\n",
		    RULES_CHAIN_PRE, p->interface, pfx);
		fprintf(f, "-A %s -i %s -d %s -p udp -j DROP\n", RULES_CHAIN_PRE, p->interface, pfx);
	}
	fprintf(f, "-A %s ! -i %s -j RETURN\n", RULES_CHAIN_PRE, lan);
	rules_lan_returns(f, cfg, RULES_CHAIN_PRE);
	for (size_t i = 0; i < cfg->lan.nnetworks; i++) {
		if (cfg->lan.networks[i].addr.family != AF_INET)
			continue;
		fprintf(f, "-A %s -s %s -m conntrack --ctstate NEW -j NFQUEUE ",
		    RULES_CHAIN_PRE, netprefix_str(&cfg->lan.networks[i], pfx, sizeof(pfx)));
		if (cfg->queue.count > 1)
			fprintf(f, "--queue-balance %u:%u", cfg->queue.first,
			    cfg->queue.first + cfg->queue.count - 1);
		else
			fprintf(f, "--queue-num %u", cfg->queue.first);
		/* Fail open: with no daemon bound, packets go on to the
		 * kernel fallback below instead of being dropped. */
		fprintf(f, " --queue-bypass\n");
	}
	fprintf(f, "-I PREROUTING 1 -j %s\nCOMMIT\n", RULES_CHAIN_PRE);

	fprintf(f, "*nat\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n", RULES_CHAIN_NATPRE,
	    RULES_CHAIN_FALLBACK, RULES_CHAIN_POST);
	for (size_t i = 0; i < cfg->lan.nnetworks; i++) {
		if (cfg->lan.networks[i].addr.family != AF_INET)
			continue;
		fprintf(f, "-A %s -i %s -s %s -m mark --mark 0/0x%x -j %s\n", RULES_CHAIN_NATPRE,
		    lan, netprefix_str(&cfg->lan.networks[i], pfx, sizeof(pfx)), m,
		    RULES_CHAIN_FALLBACK);
	}
	/*
	 * The mark, the daemon's or the fallback's, goes into the connection
	 * here: the verdict's ACCEPT skips the rest of the queueing chain,
	 * and a nat chain sees only the first packet of a connection, where
	 * a mangle chain would test every packet.
	 */
	fprintf(f, "-A %s -i %s -m mark ! --mark 0/0x%x -j CONNMARK --save-mark "
	    "--nfmask 0x%x --ctmask 0x%x\n", RULES_CHAIN_NATPRE, lan, m, m, m);
	rules_fallback_body(f, cfg, usable);
	for (size_t i = 0; i < cfg->nproviders; i++) {
		const struct cfg_provider *p = &cfg->providers[i];

		if (p->source.family != AF_INET)
			continue;
		fprintf(f, "-A %s -o %s -m connmark --mark 0x%x/0x%x -j SNAT --to-source %s\n",
		    RULES_CHAIN_POST, p->interface, p->mark, m,
		    netaddr_str(&p->source, src, sizeof(src)));
	}
	fprintf(f, "-I PREROUTING 1 -j %s\n-I POSTROUTING 1 -j %s\nCOMMIT\n",
	    RULES_CHAIN_NATPRE, RULES_CHAIN_POST);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

char *
rules_render_nft(const struct config *cfg)
{
	char *text = NULL, pfx[NETADDR_STRLEN + 8];
	size_t len;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	/* Declaring the table first makes the delete succeed when it does not
	 * exist yet; the whole file is one transaction. */
	fprintf(f, "table ip %s\ndelete table ip %s\ntable ip %s {\n", RULES_NFT_TABLE,
	    RULES_NFT_TABLE, RULES_NFT_TABLE);
	/* A named counter, so that the daemon reads it by name. */
	fprintf(f, "\tcounter %s { }\n", RULES_NFT_LEAK_COUNTER);
	fprintf(f, "\tchain leakguard {\n\t\ttype filter hook postrouting priority 200; policy accept;\n");
	/* The source test first: nearly every packet here is translated or
	 * headed for the LAN and fails it with one compare, before the
	 * interface set's lookup. */
	fprintf(f, "\t\tip saddr {");
	for (size_t i = 0, n = 0; i < cfg->lan.nnetworks; i++) {
		if (cfg->lan.networks[i].addr.family != AF_INET)
			continue;
		fprintf(f, "%s %s", n++ ? "," : "",
		    netprefix_str(&cfg->lan.networks[i], pfx, sizeof(pfx)));
	}
	fprintf(f, " } oifname {");
	for (size_t i = 0; i < cfg->nproviders; i++)
		fprintf(f, "%s \"%s\"", i ? "," : "", cfg->providers[i].interface);
	fprintf(f, " } counter name \"%s\" drop comment \"untranslated LAN source towards a provider\"\n",
	    RULES_NFT_LEAK_COUNTER);
	fprintf(f, "\t}\n}\n");
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static void
rules_route_line(FILE *f, const struct cfg_provider *p)
{
	char gw[NETADDR_STRLEN];

	/* ip takes the family from the gateway: a "-6" has no place in a
	 * batch line (it fails the line, and the table stays empty). */
	fprintf(f, "route replace default via %s dev %s table %u\n",
	    netaddr_str(&p->gateway, gw, sizeof(gw)), p->interface, p->table);
}

char *
rules_render_routes(const struct config *cfg)
{
	char *text = NULL;
	size_t len;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->nproviders; i++) {
		const struct cfg_provider *p = &cfg->providers[i];

		fprintf(f, "rule add pref %zu fwmark 0x%x/0x%x lookup %u\n", RULES_PREF_BASE + i,
		    p->mark, cfg->mark_mask, p->table);
		rules_route_line(f, p);
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

int
rules_print(const struct config *cfg, FILE *out)
{
	char *ipt = rules_render_iptables(cfg, NULL);
	char *nft = rules_render_nft(cfg);
	char *routes = rules_render_routes(cfg);
	int rc = -1;

	if (ipt && nft && routes) {
		fprintf(out, "# iptables-restore --noflush\n%s\n# nft -f -\n%s\n# ip -batch -\n%s",
		    ipt, nft, routes);
		rc = ferror(out) ? -1 : 0;
	}
	free(ipt);
	free(nft);
	free(routes);
	return rc;
}

/*
 * Runs argv with `input` on stdin.  On success `out` holds what it printed
 * (the tail that fits); on failure a message naming the command with that
 * output folded onto one line.  Bounded in time: a hung iptables must not
 * hang the daemon forever.
 */
static int
rules_run(const char *const argv[], const char *input, char *err, size_t errlen)
{
	int in[2], out[2], status = 0;
	char output[2048];
	size_t got = 0, inlen = input ? strlen(input) : 0, sent = 0;
	pid_t pid;
	int64_t waited = 0;

	if (pipe2(in, O_CLOEXEC) == -1)
		goto syserr;
	if (pipe2(out, O_CLOEXEC) == -1) {
		close(in[0]);
		close(in[1]);
		goto syserr;
	}
	pid = fork();
	if (pid == -1) {
		close(in[0]); close(in[1]); close(out[0]); close(out[1]);
		goto syserr;
	}
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], (char *const *)(uintptr_t)argv);
		fprintf(stderr, "exec: %s\n", strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	if (inlen == 0) {
		close(in[1]);
		in[1] = -1;
	}
	for (;;) {
		struct pollfd pfd[2] = { { out[0], POLLIN, 0 }, { in[1], POLLOUT, 0 } };
		int n = poll(pfd, in[1] >= 0 ? 2 : 1, 100);

		if (n == -1 && errno != EINTR)
			break;
		if (n == 0 && (waited += 100) > RULES_CMD_TIMEOUT_MS) {
			kill(pid, SIGKILL);
			snprintf(output, sizeof(output), "timed out after %d ms", RULES_CMD_TIMEOUT_MS);
			got = strlen(output);
			break;
		}
		if (in[1] >= 0 && (pfd[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t w = write(in[1], input + sent, inlen - sent);
			if (w > 0)
				sent += (size_t)w;
			if (w < 0 && errno != EAGAIN) {
				close(in[1]);
				in[1] = -1;
			} else if (sent == inlen) {
				close(in[1]);
				in[1] = -1;
			}
		}
		if (pfd[0].revents & (POLLIN | POLLHUP)) {
			char tmp[512];
			ssize_t r = read(out[0], tmp, sizeof(tmp));
			if (r <= 0)
				break;
			/* Keep the tail: the error is usually at the end. */
			for (ssize_t k = 0; k < r; k++) {
				if (got == sizeof(output) - 1) {
					memmove(output, output + 512, got - 512);
					got -= 512;
				}
				output[got++] = tmp[k];
			}
		}
	}
	output[got] = '\0';
	if (in[1] >= 0)
		close(in[1]);
	close(out[0]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		snprintf(err, errlen, "%s", output);
		return 0;
	}
	while (got > 0 && (output[got - 1] == '\n' || output[got - 1] == ' '))
		output[--got] = '\0';
	for (char *nl; (nl = strchr(output, '\n')) != NULL;)
		*nl = ' ';
	snprintf(err, errlen, "%s: %s%s", argv[0],
	    WIFEXITED(status) ? "" : "killed; ", got ? output : "failed without a message");
	errno = EIO;
	return -1;
syserr:
	snprintf(err, errlen, "%s: %s", argv[0], strerror(errno));
	return -1;
}

/* Deletes a jump from a built-in chain as often as it is there. */
static void
rules_unjump(const char *table, const char *builtin, const char *chain)
{
	const char *argv[] = { "iptables", "-w", "5", "-t", table, "-D", builtin, "-j", chain, NULL };
	char err[256];

	for (int i = 0; i < 16 && rules_run(argv, NULL, err, sizeof(err)) == 0; i++)
		;
}

static void
rules_drop_chain(const char *table, const char *chain)
{
	const char *flush[] = { "iptables", "-w", "5", "-t", table, "-F", chain, NULL };
	const char *del[] = { "iptables", "-w", "5", "-t", table, "-X", chain, NULL };
	char err[256];

	if (rules_run(flush, NULL, err, sizeof(err)) == 0)
		rules_run(del, NULL, err, sizeof(err));
}

/* Empties a provider's table: `route flush` is IPv4 only, and an IPv6
 * provider's default route goes by its prefix.  Errors are ignored: the
 * routes may be gone already. */
static void
rules_flush_table(const struct cfg_provider *p)
{
	const char *argv[] = { "ip", "-batch", "-", NULL };
	char cmd[64], e[256];

	snprintf(cmd, sizeof(cmd), "route flush table %u\n", p->table);
	rules_run(argv, cmd, e, sizeof(e));
	if (p->gateway.family == AF_INET6) {
		snprintf(cmd, sizeof(cmd), "route del ::/0 table %u\n", p->table);
		rules_run(argv, cmd, e, sizeof(e));
	}
}

int
rules_remove(const struct config *cfg, char *err, size_t errlen)
{
	char cmd[128];
	int rc = 0;

	rules_unjump("mangle", "PREROUTING", RULES_CHAIN_PRE);
	rules_unjump("nat", "PREROUTING", RULES_CHAIN_NATPRE);
	rules_unjump("nat", "POSTROUTING", RULES_CHAIN_POST);
	rules_drop_chain("mangle", RULES_CHAIN_PRE);
	rules_drop_chain("nat", RULES_CHAIN_NATPRE);
	rules_drop_chain("nat", RULES_CHAIN_FALLBACK);
	rules_drop_chain("nat", RULES_CHAIN_POST);
	{
		const char *argv[] = { "nft", "-f", "-", NULL };
		char text[128];

		snprintf(text, sizeof(text), "table ip %s\ndelete table ip %s\n", RULES_NFT_TABLE,
		    RULES_NFT_TABLE);
		if (rules_run(argv, text, err, errlen) == -1)
			rc = -1;
	}
	for (size_t i = 0; i < cfg->nproviders; i++) {
		const char *argv[] = { "ip", "-batch", "-", NULL };
		char e[256];

		/* Both may legitimately be absent: ignore their errors. */
		snprintf(cmd, sizeof(cmd), "rule del pref %zu\n", RULES_PREF_BASE + i);
		rules_run(argv, cmd, e, sizeof(e));
		rules_flush_table(&cfg->providers[i]);
	}
	return rc;
}

void
rules_remove_stale(const struct config *old, const struct config *cur)
{
	const char *argv[] = { "ip", "-batch", "-", NULL };
	char cmd[64], e[256];

	for (size_t i = cur->nproviders; i < old->nproviders; i++) {
		snprintf(cmd, sizeof(cmd), "rule del pref %zu\n", RULES_PREF_BASE + i);
		rules_run(argv, cmd, e, sizeof(e));
	}
	for (size_t i = 0; i < old->nproviders; i++) {
		bool used = false;

		for (size_t j = 0; j < cur->nproviders; j++)
			used |= cur->providers[j].table == old->providers[i].table;
		if (used)
			continue;
		rules_flush_table(&old->providers[i]);
	}
}

int
rules_route_provider(const struct config *cfg, size_t provider, char *err, size_t errlen)
{
	const char *argv[] = { "ip", "-batch", "-", NULL };
	char *text = NULL;
	size_t len;
	FILE *f = open_memstream(&text, &len);
	int rc;

	if (f == NULL)
		return -1;
	rules_route_line(f, &cfg->providers[provider]);
	if (fclose(f) != 0) {
		free(text);
		return -1;
	}
	rc = rules_run(argv, text, err, errlen);
	free(text);
	return rc;
}

int
rules_set_fallback(const struct config *cfg, const bool *usable, char *err, size_t errlen)
{
	const char *argv[] = { "iptables-restore", "-w", "5", "--noflush", NULL };
	char *text = rules_render_fallback(cfg, usable);
	int rc;

	if (text == NULL) {
		snprintf(err, errlen, "rendering the fallback chain: %s", strerror(errno));
		return -1;
	}
	rc = rules_run(argv, text, err, errlen);
	free(text);
	return rc;
}

/*
 * Drops the "-I BUILTIN 1 -j UPLINKD-..." lines whose jump is already
 * there, so that installing over a running (or crashed) instance's rules
 * neither duplicates a jump nor removes anything first: iptables-restore
 * --noflush flushes and refills our chains in one transaction per table,
 * and established connections never see a moment without their rules.
 */
static char *
rules_without_present_jumps(const char *text)
{
	char *out = NULL, table[16] = "", line[512];
	size_t len;
	FILE *f = open_memstream(&out, &len);

	if (f == NULL)
		return NULL;
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\n");
		char builtin[32], chain[32];

		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		p += n + (p[n] == '\n');
		if (line[0] == '*')
			snprintf(table, sizeof(table), "%.15s", line + 1);
		if (sscanf(line, "-I %31s 1 -j %31s", builtin, chain) == 2) {
			const char *argv[] = { "iptables", "-w", "5", "-t", table, "-C", builtin,
			    "-j", chain, NULL };
			char e[256];

			if (rules_run(argv, NULL, e, sizeof(e)) == 0)
				continue;
		}
		fprintf(f, "%s\n", line);
	}
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* Policy rules that are already as wanted stay; others are replaced. */
static char *
rules_routes_to_apply(const struct config *cfg)
{
	char *out = NULL;
	size_t len;
	FILE *f = open_memstream(&out, &len);

	if (f == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->nproviders; i++) {
		const struct cfg_provider *p = &cfg->providers[i];
		const char *argv[] = { "ip", "rule", "list", "pref", NULL, NULL };
		char pref[16], want[64], have[512];

		snprintf(pref, sizeof(pref), "%zu", RULES_PREF_BASE + i);
		argv[4] = pref;
		snprintf(want, sizeof(want), "fwmark 0x%x/0x%x lookup %u", p->mark, cfg->mark_mask,
		    p->table);
		if (rules_run(argv, NULL, have, sizeof(have)) == -1 || strstr(have, want) == NULL ||
		    strchr(have, '\n') != strrchr(have, '\n')) {
			if (have[0] != '\0' && strstr(have, "lookup") != NULL)
				fprintf(f, "rule del pref %s\n", pref);
			fprintf(f, "rule add pref %s %s\n", pref, want);
		}
		rules_route_line(f, p);
	}
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

int
rules_install(const struct config *cfg, const bool *usable, char *err, size_t errlen)
{
	const char *ipt_argv[] = { "iptables-restore", "-w", "5", "--noflush", NULL };
	const char *nft_argv[] = { "nft", "-f", "-", NULL };
	const char *ip_argv[] = { "ip", "-force", "-batch", "-", NULL };
	char *full = rules_render_iptables(cfg, usable);
	char *ipt = full ? rules_without_present_jumps(full) : NULL;
	char *nft = rules_render_nft(cfg);
	char *routes = rules_routes_to_apply(cfg);
	int rc = -1;

	if (ipt == NULL || nft == NULL || routes == NULL) {
		snprintf(err, errlen, "rendering rules: %s", strerror(errno));
		goto out;
	}
	/* A provider whose link is down cannot take its route now; the
	 * route is added again when the link comes up, so -force goes on. */
	if (rules_run(ip_argv, routes, err, errlen) == -1)
		log_warnx("policy routing: %s (routes of providers that are down are "
		    "added when their link comes up)", err);
	/* The leak guard before the rules that translate. */
	if (rules_run(nft_argv, nft, err, errlen) == -1)
		goto out;
	if (rules_run(ipt_argv, ipt, err, errlen) == -1)
		goto out;
	rc = 0;
out:
	free(full);
	free(ipt);
	free(nft);
	free(routes);
	return rc;
}

/* Fills *packets from the NEWOBJ answer. */
static int
rules_counter_cb(const struct nlmsghdr *nlh, void *data)
{
	struct nlattr *a, *n;
	uint64_t *packets = data;

	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(a) != NFTA_OBJ_DATA)
			continue;
		mnl_attr_for_each_nested(n, a)
			if (mnl_attr_get_type(n) == NFTA_COUNTER_PACKETS &&
			    mnl_attr_validate(n, MNL_TYPE_U64) == 0) {
				*packets = be64toh(mnl_attr_get_u64(n));
				return MNL_CB_OK;
			}
	}
	errno = EPROTO;
	return MNL_CB_ERROR;
}

/* A netlink socket of `bus` for one request and its answers. */
static struct mnl_socket *
rules_nl_open(int bus)
{
	struct mnl_socket *nl = mnl_socket_open2(bus, SOCK_CLOEXEC);
	int saved;

	if (nl != NULL && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		saved = errno;
		mnl_socket_close(nl);
		errno = saved;
		return NULL;
	}
	return nl;
}

/* An nf_tables request for the ip family. */
static struct nlmsghdr *
rules_nft_request(char *buf, uint16_t type, uint16_t flags, uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfg;

	nlh->nlmsg_type = (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | type);
	nlh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
	nlh->nlmsg_seq = seq;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = NFPROTO_IPV4;
	nfg->version = NFNETLINK_V0;
	return nlh;
}

int
rules_leak_guard_dropped(uint64_t *packets)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct mnl_socket *nl;
	struct nlmsghdr *nlh;
	uint32_t seq = 1, portid;
	ssize_t n;
	int ret = -1, saved;

	if ((nl = rules_nl_open(NETLINK_NETFILTER)) == NULL)
		return -1;
	portid = mnl_socket_get_portid(nl);
	nlh = rules_nft_request(buf, NFT_MSG_GETOBJ, 0, seq);
	mnl_attr_put_strz(nlh, NFTA_OBJ_TABLE, RULES_NFT_TABLE);
	mnl_attr_put_strz(nlh, NFTA_OBJ_NAME, RULES_NFT_LEAK_COUNTER);
	mnl_attr_put_u32(nlh, NFTA_OBJ_TYPE, htonl(NFT_OBJECT_COUNTER));
	/* The kernel answers within sendto(): the object, or an error. */
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0 ||
	    (n = mnl_socket_recvfrom(nl, buf, sizeof(buf))) < 0)
		goto out;
	*packets = UINT64_MAX;
	if (mnl_cb_run(buf, (size_t)n, seq, portid, rules_counter_cb, packets) == MNL_CB_ERROR)
		goto out;
	if (*packets == UINT64_MAX) {
		errno = EPROTO;
		goto out;
	}
	ret = 0;
out:
	saved = errno;
	mnl_socket_close(nl);
	errno = saved;
	return ret;
}

/* One chain's rules as rules_check() sees them. */
struct rules_seen {
	const char *jump_to;	/* a jump to look for, or NULL */
	bool jump_found;
	unsigned rules;
};

/* Whether an expression list holds a jump to chain. */
static bool
rules_expr_jumps(const struct nlattr *list, const char *chain)
{
	const struct nlattr *e, *a, *d, *v, *x;

	mnl_attr_for_each_nested(e, list) {
		const struct nlattr *name = NULL, *data = NULL;

		mnl_attr_for_each_nested(a, e) {
			if (mnl_attr_get_type(a) == NFTA_EXPR_NAME)
				name = a;
			else if (mnl_attr_get_type(a) == NFTA_EXPR_DATA)
				data = a;
		}
		if (name == NULL || data == NULL || mnl_attr_validate(name, MNL_TYPE_NUL_STRING) < 0 ||
		    strcmp(mnl_attr_get_str(name), "immediate") != 0)
			continue;
		mnl_attr_for_each_nested(d, data) {
			if (mnl_attr_get_type(d) != NFTA_IMMEDIATE_DATA)
				continue;
			mnl_attr_for_each_nested(v, d) {
				if (mnl_attr_get_type(v) != NFTA_DATA_VERDICT)
					continue;
				mnl_attr_for_each_nested(x, v)
					if (mnl_attr_get_type(x) == NFTA_VERDICT_CHAIN &&
					    mnl_attr_validate(x, MNL_TYPE_NUL_STRING) == 0 &&
					    strcmp(mnl_attr_get_str(x), chain) == 0)
						return true;
			}
		}
	}
	return false;
}

static int
rules_rule_cb(const struct nlmsghdr *nlh, void *data)
{
	struct rules_seen *seen = data;
	const struct nlattr *a;

	seen->rules++;
	if (seen->jump_to == NULL || seen->jump_found)
		return MNL_CB_OK;
	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg))
		if (mnl_attr_get_type(a) == NFTA_RULE_EXPRESSIONS &&
		    rules_expr_jumps(a, seen->jump_to))
			seen->jump_found = true;
	return MNL_CB_OK;
}

/* Sends the dump request nlh and runs cb on every answer until the end. */
static int
rules_nl_dump(struct mnl_socket *nl, const struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	char buf[32768];	/* a dump message batch is at most 32 KiB */
	uint32_t seq = nlh->nlmsg_seq;
	ssize_t n;
	int r;

	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -1;
	while ((n = mnl_socket_recvfrom(nl, buf, sizeof(buf))) > 0) {
		r = mnl_cb_run(buf, (size_t)n, seq, mnl_socket_get_portid(nl), cb, data);
		if (r == MNL_CB_STOP)
			return 0;
		if (r == MNL_CB_ERROR)
			return -1;
	}
	return -1;
}

/* Dumps the rules of one chain (none when the chain or table is not
 * there). */
static int
rules_dump_chain(struct mnl_socket *nl, uint32_t seq, const char *table, const char *chain,
    struct rules_seen *seen)
{
	char req[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = rules_nft_request(req, NFT_MSG_GETRULE, NLM_F_DUMP, seq);

	mnl_attr_put_strz(nlh, NFTA_RULE_TABLE, table);
	mnl_attr_put_strz(nlh, NFTA_RULE_CHAIN, chain);
	if (rules_nl_dump(nl, nlh, rules_rule_cb, seen) == -1)
		return errno == ENOENT ? 0 : -1;
	return 0;
}

/* What one routing dump looks for. */
struct rules_route_seen {
	const struct config *cfg;
	bool found[CFG_MAX_PROVIDERS];	/* policy rules */
	bool default_route;		/* in the one table dumped */
};

static int
rules_fib_rule_cb(const struct nlmsghdr *nlh, void *data)
{
	struct rules_route_seen *seen = data;
	const struct fib_rule_hdr *frh = mnl_nlmsg_get_payload(nlh);
	uint32_t pref = 0, mark = 0, mask = UINT32_MAX, table = frh->table;
	const struct nlattr *a;

	if (nlh->nlmsg_type != RTM_NEWRULE || frh->action != FR_ACT_TO_TBL)
		return MNL_CB_OK;
	mnl_attr_for_each(a, nlh, sizeof(*frh)) {
		if (mnl_attr_validate(a, MNL_TYPE_U32) < 0)
			continue;
		switch (mnl_attr_get_type(a)) {
		case FRA_PRIORITY: pref = mnl_attr_get_u32(a); break;
		case FRA_FWMARK: mark = mnl_attr_get_u32(a); break;
		case FRA_FWMASK: mask = mnl_attr_get_u32(a); break;
		case FRA_TABLE: table = mnl_attr_get_u32(a); break;
		default: break;
		}
	}
	for (size_t i = 0; i < seen->cfg->nproviders; i++) {
		const struct cfg_provider *p = &seen->cfg->providers[i];

		if (pref == RULES_PREF_BASE + i && mark == p->mark &&
		    mask == seen->cfg->mark_mask && table == p->table)
			seen->found[i] = true;
	}
	return MNL_CB_OK;
}

static int
rules_route_cb(const struct nlmsghdr *nlh, void *data)
{
	struct rules_route_seen *seen = data;
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);

	if (nlh->nlmsg_type == RTM_NEWROUTE && rtm->rtm_dst_len == 0 &&
	    rtm->rtm_type == RTN_UNICAST)
		seen->default_route = true;
	return MNL_CB_OK;
}

/* Whether the interface is up (set down, it loses its routes, which
 * come back through health when it is set up again). */
static bool
rules_if_up(const char *name)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool up = false;

	if (fd == -1)
		return false;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0)
		up = (ifr.ifr_flags & IFF_UP) != 0;
	close(fd);
	return up;
}

static struct nlmsghdr *
rules_rt_dump_request(char *buf, uint16_t type, uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	return nlh;
}

/* Each provider's policy rule, and the default route in its table while
 * its interface is up. */
static int
rules_check_routing(const struct config *cfg, const bool *link_up, char *what, size_t len)
{
	char req[MNL_SOCKET_BUFFER_SIZE];
	struct rules_route_seen seen = { .cfg = cfg };
	struct mnl_socket *nl = rules_nl_open(NETLINK_ROUTE);
	struct nlmsghdr *nlh;
	struct fib_rule_hdr *frh;
	uint32_t seq = 1;
	int one = 1, ret = -1, saved;

	if (nl == NULL)
		return -1;
	/* Strict checking lets the kernel filter the route dump by table:
	 * a router's main table may hold a million routes. */
	if (setsockopt(mnl_socket_get_fd(nl), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one,
	    sizeof(one)) == -1)
		goto out;
	nlh = rules_rt_dump_request(req, RTM_GETRULE, seq++);
	frh = mnl_nlmsg_put_extra_header(nlh, sizeof(*frh));
	frh->family = AF_INET;
	if (rules_nl_dump(nl, nlh, rules_fib_rule_cb, &seen) == -1)
		goto out;
	*what = '\0';
	for (size_t i = 0; i < cfg->nproviders && *what == '\0'; i++) {
		const struct cfg_provider *p = &cfg->providers[i];
		struct rtmsg *rtm;

		if (!seen.found[i]) {
			snprintf(what, len, "no policy rule fwmark 0x%x/0x%x lookup %u for %s",
			    p->mark, cfg->mark_mask, p->table, p->name);
			continue;
		}
		if ((link_up != NULL && !link_up[i]) || !rules_if_up(p->interface))
			continue;
		nlh = rules_rt_dump_request(req, RTM_GETROUTE, seq++);
		rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
		rtm->rtm_family = p->gateway.family;
		mnl_attr_put_u32(nlh, RTA_TABLE, p->table);
		seen.default_route = false;
		if (rules_nl_dump(nl, nlh, rules_route_cb, &seen) == -1)
			goto out;
		if (!seen.default_route)
			snprintf(what, len, "no default route in table %u for %s", p->table, p->name);
	}
	ret = *what != '\0';
out:
	saved = errno;
	mnl_socket_close(nl);
	errno = saved;
	return ret;
}

int
rules_check(const struct config *cfg, const bool *usable, const bool *link_up, char *what,
    size_t len)
{
	static const struct {
		const char *table, *chain, *builtin;
	} ours[] = {
		{ "mangle", RULES_CHAIN_PRE, "PREROUTING" },
		{ "nat", RULES_CHAIN_NATPRE, "PREROUTING" },
		{ "nat", RULES_CHAIN_FALLBACK, NULL },
		{ "nat", RULES_CHAIN_POST, "POSTROUTING" },
		{ RULES_NFT_TABLE, "leakguard", NULL },
	};
	unsigned want[sizeof(ours) / sizeof(ours[0])] = { 0 };
	char *ipt = rules_render_iptables(cfg, usable), *nft = rules_render_nft(cfg);
	struct mnl_socket *nl = NULL;
	int ret = -1, saved;
	uint32_t seq = 1;

	if (ipt == NULL || nft == NULL || (nl = rules_nl_open(NETLINK_NETFILTER)) == NULL)
		goto out;
	/* As many rules in each chain as the text that installed them has. */
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
		char prefix[64];
		const char *text = strcmp(ours[i].table, RULES_NFT_TABLE) == 0 ? nft : ipt;

		if (text == nft) {
			want[i] = 1;	/* the guard's one rule */
			continue;
		}
		snprintf(prefix, sizeof(prefix), "-A %s ", ours[i].chain);
		for (const char *p = text; (p = strstr(p, prefix)) != NULL; p++)
			if (p == text || p[-1] == '\n')
				want[i]++;
	}
	*what = '\0';
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
		struct rules_seen chain = { NULL, false, 0 }, builtin = { ours[i].chain, false, 0 };

		if (rules_dump_chain(nl, seq++, ours[i].table, ours[i].chain, &chain) == -1 ||
		    (ours[i].builtin != NULL &&
		    rules_dump_chain(nl, seq++, ours[i].table, ours[i].builtin, &builtin) == -1))
			goto out;
		if (chain.rules != want[i])
			snprintf(what, len, "table %s chain %s holds %u rules instead of %u",
			    ours[i].table, ours[i].chain, chain.rules, want[i]);
		else if (ours[i].builtin != NULL && !builtin.jump_found)
			snprintf(what, len, "table %s chain %s does not jump to %s",
			    ours[i].table, ours[i].builtin, ours[i].chain);
		if (*what != '\0')
			break;
	}
	ret = *what != '\0' ? 1 : rules_check_routing(cfg, link_up, what, len);
out:
	saved = errno;
	if (nl != NULL)
		mnl_socket_close(nl);
	free(ipt);
	free(nft);
	errno = saved;
	return ret;
}
