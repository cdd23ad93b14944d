/*
 * test_config: the golden files under tests/config plus unit checks.
 *
 * Runs from $top_srcdir/tests/config and passes paths relative to it
 * ("invalid/weight-zero.yaml"), which is how the .err files name them.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"

static const char *const base_yaml =
    "node: gw1\n"
    "lan:\n"
    "  interface: lan0\n"
    "  networks: [10.0.0.0/24]\n"
    "providers:\n"
    "  - {name: isp-a, interface: wan0, gateway: 198.51.100.1, source: 198.51.100.10}\n"
    "  - name: isp-b\n"
    "    interface: wan1\n"
    "    gateway: 203.0.113.1\n"
    "    source: 203.0.113.10\n";

static char *
read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long len;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == -1 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) == -1 ||
	    (buf = malloc((size_t)len + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		fclose(f);
		return NULL;
	}
	buf[len] = '\0';
	fclose(f);
	return buf;
}

/* config_print into a malloc'ed string, or NULL. */
static char *
print_text(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	if (config_print(cfg, f) == -1) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	return buf;
}

static int
yaml_filter(const struct dirent *d)
{
	size_t len = strlen(d->d_name);

	return len > 5 && strcmp(d->d_name + len - 5, ".yaml") == 0;
}

static void
check_valid(const char *path)
{
	char err[CFG_ERR_MAX] = "", err2[CFG_ERR_MAX] = "";
	struct config *cfg, *again = NULL;
	char *text = NULL, *text2 = NULL;

	cfg = config_load(path, err, sizeof(err));
	if (!tap_ok(cfg != NULL, "%s loads", path)) {
		tap_diag("%s", err);
		return;
	}
	text = print_text(cfg);
	tap_ok(text != NULL, "%s prints", path);
	if (text != NULL)
		again = config_parse("printed", text, strlen(text), err2, sizeof(err2));
	if (!tap_ok(again != NULL, "%s: printed config parses", path))
		tap_diag("%s", err2);
	tap_ok(again != NULL && config_equal(cfg, again), "%s: print/parse round trip is equal",
	    path);
	if (again != NULL)
		text2 = print_text(again);
	tap_ok(text != NULL && text2 != NULL && strcmp(text, text2) == 0,
	    "%s: print(parse(print(x))) == print(x)", path);
	free(text);
	free(text2);
	config_free(again);
	config_free(cfg);
}

static void
check_invalid(const char *path)
{
	char err[CFG_ERR_MAX] = "", errpath[512], *want;
	struct config *cfg;
	size_t len;

	snprintf(errpath, sizeof(errpath), "%.*s.err", (int)(strlen(path) - 5), path);
	want = read_text(errpath);
	if (!tap_ok(want != NULL, "%s has a .err file", path))
		return;
	len = strlen(want);
	while (len > 0 && want[len - 1] == '\n')
		want[--len] = '\0';
	errno = 0;
	cfg = config_load(path, err, sizeof(err));
	tap_ok(cfg == NULL && errno == EINVAL, "%s is rejected with EINVAL", path);
	if (!tap_ok(strcmp(err, want) == 0, "%s: message matches", path)) {
		tap_diag("got:  %s", err);
		tap_diag("want: %s", want);
	}
	config_free(cfg);
	free(want);
}

static int
walk(const char *dir, void (*check)(const char *))
{
	struct dirent **names;
	char path[512];
	int n;

	if ((n = scandir(dir, &names, yaml_filter, alphasort)) < 0) {
		tap_ok(0, "scandir %s: %s", dir, strerror(errno));
		return 0;
	}
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		check(path);
		free(names[i]);
	}
	free(names);
	return n;
}

static void
check_duration(void)
{
	static const struct {
		const char *s;
		int err;
		uint32_t ms;
	} cases[] = {
		{ "500ms", 0, 500 }, { "3s", 0, 3000 }, { "10m", 0, 600000 },
		{ "1h", 0, 3600000 }, { "0ms", 0, 0 }, { "0s", 0, 0 }, { "007s", 0, 7000 },
		{ "4294967295ms", 0, 4294967295u }, { "1193h", 0, 4294800000u },
		{ "4294967296ms", ERANGE, 0 }, { "1194h", ERANGE, 0 },
		{ "99999999999999999999999s", ERANGE, 0 },
		{ "5", EINVAL, 0 }, { "", EINVAL, 0 }, { "ms", EINVAL, 0 },
		{ "1.5s", EINVAL, 0 }, { " 1s", EINVAL, 0 }, { "1s ", EINVAL, 0 },
		{ "-1s", EINVAL, 0 }, { "+1s", EINVAL, 0 }, { "1H", EINVAL, 0 },
		{ "1d", EINVAL, 0 }, { "1h30m", EINVAL, 0 }, { "1 s", EINVAL, 0 },
	};
	uint32_t ms;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r;

		ms = 12345;
		errno = 0;
		r = config_parse_duration(cases[i].s, &ms);
		if (cases[i].err == 0)
			tap_ok(r == 0 && ms == cases[i].ms, "duration \"%s\" = %u ms",
			    cases[i].s, cases[i].ms);
		else
			tap_ok(r == -1 && errno == cases[i].err, "duration \"%s\" fails with %s",
			    cases[i].s, cases[i].err == ERANGE ? "ERANGE" : "EINVAL");
	}
}

static void
check_defaults(void)
{
	char err[CFG_ERR_MAX];
	struct config *cfg = config_load("valid/minimal.yaml", err, sizeof(err));
	int ok = 1;

	if (!tap_ok(cfg != NULL, "minimal loads for defaults")) {
		tap_diag("%s", err);
		return;
	}
	tap_ok(strcmp(cfg->path, "valid/minimal.yaml") == 0, "path kept");
	tap_ok(strcmp(cfg->node, "gw1") == 0 && strcmp(cfg->lan.interface, "lan0") == 0 &&
	    cfg->lan.nnetworks == 1 && cfg->lan.networks[0].len == 24, "node and lan");
	tap_ok(cfg->queue.first == 0 && cfg->queue.count == 1, "queue defaults 0/1");
	tap_ok(cfg->nproviders == 2, "two providers");
	for (size_t i = 0; i < cfg->nproviders; i++) {
		const struct cfg_provider *p = &cfg->providers[i];
		const struct cfg_health *h = &p->health;

		ok &= p->weight == 1 && p->mark == 0x100 * (i + 1) && p->table == 100 + i;
		ok &= h->ntargets == 1 && netaddr_eq(&h->targets[0], &p->gateway);
		ok &= h->require == 1 && h->interval_ms == 1000 && h->timeout_ms == 500 &&
		    h->fall == 3 && h->rise == 2;
	}
	tap_ok(ok, "provider and health defaults");
	tap_ok(cfg->balance.algorithm == CFG_ALG_WRR && cfg->balance.sticky_ms == 0,
	    "balance defaults wrr, sticky off");
	tap_ok(!cfg->has_sync, "no sync");
	tap_ok(strcmp(cfg->control.socket, "/run/uplinkd/uplinkd.sock") == 0, "socket default");
	tap_ok(cfg->mark_mask == 0x300, "mark mask 0x300");
	tap_ok(config_provider_index(cfg, "isp-b") == 1 && config_provider_index(cfg, "isp-a") == 0,
	    "provider index");
	tap_ok(config_provider_index(cfg, "nope") == -1 && config_provider_index(cfg, "") == -1,
	    "unknown provider index is -1");
	config_free(cfg);
}

static void
check_full(void)
{
	char err[CFG_ERR_MAX], buf[NETENDPOINT_STRLEN];
	struct config *a = config_load("valid/full.yaml", err, sizeof(err));
	struct config *b = config_load("valid/maglev-sticky.yaml", err, sizeof(err));
	struct config *c = config_load("valid/full.yaml", err, sizeof(err));

	if (!tap_ok(a != NULL && b != NULL && c != NULL, "full and maglev load")) {
		config_free(a);
		config_free(b);
		config_free(c);
		return;
	}
	tap_ok(a->has_sync && strcmp(netendpoint_str(&a->sync.peer, buf, sizeof(buf)),
	    "10.255.0.2:7410") == 0, "sync peer");
	tap_ok(strcmp(a->sync.tls.ca, "/etc/uplinkd/ca.pem") == 0 &&
	    strcmp(a->sync.tls.key, "/etc/uplinkd/gw1.key") == 0 &&
	    strcmp(a->sync.tls.peer_name, "gw2") == 0, "sync tls");
	tap_ok(a->providers[1].health.ntargets == 3 && a->providers[1].health.require == 2 &&
	    a->providers[1].health.interval_ms == 2000 && a->providers[1].health.timeout_ms == 1000,
	    "explicit health");
	tap_ok(a->balance.sticky_ms == 600000, "sticky 10m");
	tap_ok(b->balance.algorithm == CFG_ALG_MAGLEV && b->balance.sticky_ms == 3600000,
	    "maglev, sticky 1h");
	tap_ok(b->providers[0].mark == 0x10000 && b->providers[2].mark == 0x40000,
	    "decimal and hex marks");
	tap_ok(b->mark_mask == 0x70000, "mark mask spans the marks");
	tap_ok(b->providers[2].table == 102, "defaulted table by position");
	tap_ok(config_equal(a, c) && !config_equal(a, b), "config_equal");
	c->providers[1].health.targets[2].a[3]++;
	tap_ok(!config_equal(a, c), "config_equal sees a changed target");
	tap_ok(config_equal(NULL, NULL) && !config_equal(a, NULL), "config_equal NULL");
	config_free(a);
	config_free(b);
	config_free(c);
}

/* Parses base_yaml with `extra` appended and compares the message. */
static void
check_text(const char *what, const char *text, const char *want)
{
	char err[CFG_ERR_MAX] = "";
	struct config *cfg = config_parse("t.yaml", text, strlen(text), err, sizeof(err));

	if (want == NULL) {
		if (!tap_ok(cfg != NULL, "%s: accepted", what))
			tap_diag("%s", err);
	} else if (!tap_ok(cfg == NULL && errno == EINVAL && strcmp(err, want) == 0,
	    "%s: rejected", what)) {
		tap_diag("got:  %s", err);
		tap_diag("want: %s", want);
	}
	config_free(cfg);
}

static char *
with_providers(size_t n)
{
	size_t cap = 256 + n * 160, off;
	char *s = malloc(cap);

	off = (size_t)snprintf(s, cap, "node: gw1\nlan: {interface: lan0, networks: [10.0.0.0/8]}\n"
	    "providers:\n");
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(s + off, cap - off, "  - {name: p%zu, interface: wan%zu, "
		    "gateway: 192.0.2.%zu, source: 198.51.100.%zu}\n", i, i, i + 1, i + 1);
	return s;
}

static char *
with_networks(size_t n)
{
	size_t cap = 512 + n * 24, off;
	char *s = malloc(cap);

	off = (size_t)snprintf(s, cap, "node: gw1\nlan:\n  interface: lan0\n  networks:\n");
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(s + off, cap - off, "    - 10.%zu.0.0/16\n", i);
	snprintf(s + off, cap - off, "providers:\n"
	    "  - {name: isp-a, interface: wan0, gateway: 198.51.100.1, source: 198.51.100.10}\n"
	    "  - {name: isp-b, interface: wan1, gateway: 203.0.113.1, source: 203.0.113.10}\n");
	return s;
}

static void
check_generated(void)
{
	char text[2048], err[CFG_ERR_MAX], tiny[8];
	struct config *cfg;
	char *s;

	s = with_providers(16);
	cfg = config_parse("t.yaml", s, strlen(s), err, sizeof(err));
	tap_ok(cfg != NULL && cfg->nproviders == 16 && cfg->providers[15].mark == 0x1000 &&
	    cfg->providers[15].table == 115 && cfg->mark_mask == 0x1f00,
	    "16 providers: marks 0x100..0x1000, mask 0x1f00");
	config_free(cfg);
	free(s);
	s = with_providers(17);
	check_text("17 providers", s, "t.yaml:20:5: providers[16]: too many providers (at most 16)");
	free(s);
	s = with_networks(64);
	check_text("64 networks", s, NULL);
	free(s);
	s = with_networks(65);
	check_text("65 networks", s, "t.yaml:69:7: lan.networks[64]: too many networks (at most 64)");
	free(s);

	snprintf(text, sizeof(text), "%s    health: {targets: [192.0.2.1, 192.0.2.2, 192.0.2.3, "
	    "192.0.2.4, 192.0.2.5, 192.0.2.6, 192.0.2.7, 192.0.2.8], require: 8}\n", base_yaml);
	check_text("8 targets, require 8", text, NULL);
	snprintf(text, sizeof(text), "%s    health: {targets: [192.0.2.1, 192.0.2.2, 192.0.2.3, "
	    "192.0.2.4, 192.0.2.5, 192.0.2.6, 192.0.2.7, 192.0.2.8, 192.0.2.9]}\n", base_yaml);
	check_text("9 targets", text, "t.yaml:11:112: providers[1].health.targets[8]: "
	    "too many targets (at most 8)");
	snprintf(text, sizeof(text), "node: abcdefghijklmnopqrstuvwxyz01234\n%s", base_yaml + 10);
	check_text("31-char name", text, NULL);
	snprintf(text, sizeof(text), "node: abcdefghijklmnopqrstuvwxyz012345\n%s",
	    base_yaml + 10);
	check_text("32-char name", text, "t.yaml:1:7: node: \"abcdefghijklmnopqrstuvwxyz012345\" "
	    "is not a valid name (1..31 characters of A-Z a-z 0-9 . _ -)");
	snprintf(text, sizeof(text), "node: \"gw\\0x\"\n%s", base_yaml + 10);
	check_text("NUL in a value", text, "t.yaml:1:7: node: value contains a NUL character");
	check_text("invalid UTF-8", "node: gw1\nlan: \xff\n",
	    "t.yaml:2:6: invalid leading UTF-8 octet");
	check_text("15-char interface", "node: gw1\n"
	    "lan: {interface: abcdefghijklmno, networks: [10.0.0.0/24]}\n"
	    "providers:\n"
	    "  - {name: isp-a, interface: wan0, gateway: 198.51.100.1, source: 198.51.100.10}\n"
	    "  - {name: isp-b, interface: wan1, gateway: 203.0.113.1, source: 203.0.113.10}\n",
	    NULL);
	check_text("missing source", "node: gw1\n"
	    "lan: {interface: lan0, networks: [10.0.0.0/24]}\n"
	    "providers:\n"
	    "  - {name: isp-a, interface: wan0, gateway: 198.51.100.1}\n",
	    "t.yaml:4:5: providers[0].source: required key is missing");
	snprintf(text, sizeof(text), "%s    table: 0x10\n", base_yaml);
	check_text("hex table", text, "t.yaml:11:12: providers[1].table: \"0x10\" is not an integer");
	check_text("top-level list", "- node: gw1\n", "t.yaml:1:1: expected a mapping, found a sequence");
	check_text("mapping as key", "{a: b}: c\n", "t.yaml:1:1: keys must be scalars, found a mapping");
	snprintf(text, sizeof(text), "%sbalance: {sticky: 4294967296ms}\n", base_yaml);
	check_text("sticky overflow", text, "t.yaml:11:19: balance.sticky: \"4294967296ms\" is out "
	    "of range (at most 4294967295ms)");
	snprintf(text, sizeof(text), "%sbalance:\n", base_yaml);
	check_text("empty section", text, "t.yaml:11:9: balance: expected a mapping, found an "
	    "empty value");
	snprintf(text, sizeof(text), "%ssync: {listen: \"[2001:db8::1]:7410\", peer: "
	    "10.0.0.2:7410, tls: {ca: a, cert: b, key: c, peer_name: gw2}}\n", base_yaml);
	check_text("sync family mismatch", text, "t.yaml:11:44: sync.peer: \"10.0.0.2:7410\" is "
	    "IPv4 but sync.listen is IPv6");
	snprintf(text, sizeof(text), "%s\"a\\\"b\\tc%s\": 1\n", base_yaml,
	    "0123456789012345678901234567890123456789012345678901234567890123456789");
	check_text("unknown key quoted and cut", text, "t.yaml:11:1: unknown key "
	    "\"a\\\"b\\x09c01234567890123456789012345678901234567890123456789012345678901234...\"");
	check_text("anchors and aliases", "node: &n gw1\n"
	    "lan: {interface: lan0, networks: [10.0.0.0/24]}\n"
	    "providers:\n"
	    "  - &p {name: isp-a, interface: wan0, gateway: 198.51.100.1, source: 198.51.100.10}\n"
	    "  - *p\n",
	    "t.yaml:4:15: providers[1].name: duplicate provider name \"isp-a\" (also providers[0])");
	/*
	 * libyaml's scanner takes time quadratic in the nesting depth of
	 * flow collections: 20 000 unclosed '[' took a second, so the 1 MiB
	 * a file may have would take about half an hour, in the daemon's
	 * loop on a reload.  The schema is 5 levels deep.
	 */
	s = malloc(strlen(base_yaml) + 9 + 20000 + 1);
	memcpy(s, base_yaml, strlen(base_yaml));
	memcpy(s + strlen(base_yaml), "balance: ", 9);
	memset(s + strlen(base_yaml) + 9, '[', 20000);
	s[strlen(base_yaml) + 9 + 20000] = '\0';
	check_text("20000 unclosed flow sequences", s,
	    "t.yaml:11:25: nested deeper than 16 levels");
	free(s);
	snprintf(text, sizeof(text), "%sbalance: [[[[[[[[[[[[[[[]]]]]]]]]]]]]]]\n", base_yaml);
	check_text("16 levels: the schema's own message", text,
	    "t.yaml:11:10: balance: expected a mapping, found a sequence");
	snprintf(text, sizeof(text), "%sbalance: [[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]\n", base_yaml);
	check_text("17 levels", text, "t.yaml:11:25: nested deeper than 16 levels");

	/* Messages are cut to the buffer and a NULL buffer is allowed. */
	cfg = config_parse("t.yaml", "x", 1, tiny, sizeof(tiny));
	tap_ok(cfg == NULL && strcmp(tiny, "t.yaml:") == 0, "message cut to the buffer");
	cfg = config_parse("t.yaml", "x", 1, NULL, 0);
	tap_ok(cfg == NULL && errno == EINVAL, "NULL error buffer");
	config_free(NULL);
	tap_ok(1, "config_free(NULL)");
}

static void
check_misc(void)
{
	char err[CFG_ERR_MAX];
	struct config *cfg;
	FILE *full;

	errno = 0;
	cfg = config_load("valid/does-not-exist.yaml", err, sizeof(err));
	tap_ok(cfg == NULL && errno == ENOENT &&
	    strcmp(err, "valid/does-not-exist.yaml: No such file or directory") == 0,
	    "missing file: ENOENT");
	errno = 0;
	cfg = config_load("valid", err, sizeof(err));
	tap_ok(cfg == NULL && errno == EISDIR, "directory: EISDIR");
	tap_ok(strcmp(config_algorithm_name(CFG_ALG_WRR), "wrr") == 0 &&
	    strcmp(config_algorithm_name(CFG_ALG_WLC), "wlc") == 0 &&
	    strcmp(config_algorithm_name(CFG_ALG_SOURCE_HASH), "source-hash") == 0 &&
	    strcmp(config_algorithm_name(CFG_ALG_MAGLEV), "maglev") == 0, "algorithm names");
	if ((full = fopen("/dev/full", "w")) != NULL) {
		cfg = config_load("valid/full.yaml", err, sizeof(err));
		tap_ok(cfg != NULL && config_print(cfg, full) == -1 && errno == ENOSPC,
		    "config_print reports a failed write");
		fclose(full);
		config_free(cfg);
	}
}

int
main(void)
{
	const char *top = getenv("top_srcdir");
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s/tests/config", top != NULL ? top : ".");
	if (chdir(dir) == -1) {
		tap_ok(0, "chdir %s: %s", dir, strerror(errno));
		return tap_done();
	}
	tap_ok(walk("valid", check_valid) >= 4, "at least 4 valid files");
	tap_ok(walk("invalid", check_invalid) >= 25, "at least 25 invalid files");
	check_duration();
	check_defaults();
	check_full();
	check_generated();
	check_misc();
	return tap_done();
}
