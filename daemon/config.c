/*
 * config: YAML file -> validated struct config.
 *
 * libyaml's document API builds the whole node tree before we look at it.
 * That costs a little memory (the file is bounded to CFG_FILE_MAX) but every
 * node keeps its start mark, so even cross-field checks done late (duplicate
 * marks, timeout vs interval) can point at the line and column of the value
 * that is wrong rather than at the end of the file.
 *
 * Every scalar is taken as a string whatever its YAML style or tag: the
 * schema, not YAML's implicit typing, decides what a value means.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#include "config.h"
#include "log.h"

#define CFG_FILE_MAX (1024 * 1024)
#define CFG_KEYPATH_MAX 128		/* "providers[15].health.interval" */
#define CFG_QUOTE_MAX LOG_QUOTE_MAX
#define CFG_FSPATH_MAX 4096		/* PATH_MAX, incl. NUL */
#define CFG_DEFAULT_SOCKET "/run/uplinkd/uplinkd.sock"
#define CFG_MAXKEYS 8
#define CFG_MAX_DEPTH 16		/* collections inside collections; the schema has 5 */

struct cfg_ctx {
	const char *name;
	yaml_document_t *doc;
	char *err;
	size_t errlen;
	struct config *cfg;
};

struct cfg_key {
	const char *name;
	bool required;
};

/* The nodes of one provider that later cross-provider checks point at. */
struct cfg_pnodes {
	yaml_node_t *name, *interface, *gateway, *source, *mark, *table;
};

static const char *const cfg_alg_names[] = {
	[CFG_ALG_WRR] = "wrr",
	[CFG_ALG_WLC] = "wlc",
	[CFG_ALG_SOURCE_HASH] = "source-hash",
	[CFG_ALG_MAGLEV] = "maglev",
};
#define CFG_NALGS (sizeof(cfg_alg_names) / sizeof(cfg_alg_names[0]))

/* ---- messages ---- */

static void
cfg_report(char *err, size_t errlen, const char *name, size_t line, size_t col,
    const char *path, const char *msg)
{
	if (err == NULL || errlen == 0)
		return;
	if (path != NULL && *path != '\0')
		snprintf(err, errlen, "%s:%zu:%zu: %s: %s", name, line, col, path, msg);
	else
		snprintf(err, errlen, "%s:%zu:%zu: %s", name, line, col, msg);
}

__attribute__((format(printf, 4, 5))) static int
cfg_error(struct cfg_ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
	char msg[CFG_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cfg_report(c->err, c->errlen, c->name, n ? n->start_mark.line + 1 : 1,
	    n ? n->start_mark.column + 1 : 1, path, msg);
	errno = EINVAL;
	return -1;
}

static const char *
cfg_type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return n->data.scalar.length == 0 &&
		    n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ?
		    "an empty value" : "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a sequence";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

static const char *
cfg_family_name(uint8_t family)
{
	return family == AF_INET ? "IPv4" : "IPv6";
}

/*
 * Key paths are built from schema key names and indices, so they stay far
 * below CFG_KEYPATH_MAX; a cut path would still be a usable message.
 */
static void
cfg_path_key(char *out, size_t len, const char *parent, const char *key)
{
	int r;

	if (*parent != '\0')
		r = snprintf(out, len, "%s.%s", parent, key);
	else
		r = snprintf(out, len, "%s", key);
	if (r < 0)
		out[0] = '\0';
}

static void
cfg_path_index(char *out, size_t len, const char *parent, size_t i)
{
	if (snprintf(out, len, "%s[%zu]", parent, i) < 0)
		out[0] = '\0';
}

/* ---- node access ---- */

static int
cfg_expect(struct cfg_ctx *c, const yaml_node_t *n, const char *path, yaml_node_type_t type)
{
	static const char *const want[] = {
		[YAML_SCALAR_NODE] = "a scalar",
		[YAML_SEQUENCE_NODE] = "a sequence",
		[YAML_MAPPING_NODE] = "a mapping",
	};

	if (n->type == type)
		return 0;
	return cfg_error(c, n, path, "expected %s, found %s", want[type], cfg_type_name(n));
}

static int
cfg_scalar(struct cfg_ctx *c, const yaml_node_t *n, const char *path, const char **out)
{
	const char *v;

	if (cfg_expect(c, n, path, YAML_SCALAR_NODE) == -1)
		return -1;
	v = (const char *)n->data.scalar.value;
	if (strlen(v) != n->data.scalar.length)
		return cfg_error(c, n, path, "value contains a NUL character");
	*out = v;
	return 0;
}

static size_t
cfg_seq_len(const yaml_node_t *seq)
{
	return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

static yaml_node_t *
cfg_seq_item(struct cfg_ctx *c, const yaml_node_t *seq, size_t i)
{
	return yaml_document_get_node(c->doc, seq->data.sequence.items.start[i]);
}

/*
 * Checks a mapping against its keys: every key known, none twice, the
 * required ones present.  vals[i] gets the value of keys[i] or NULL.
 */
static int
cfg_map(struct cfg_ctx *c, yaml_node_t *map, const char *path,
    const struct cfg_key *keys, size_t nkeys, yaml_node_t **vals)
{
	char kpath[CFG_KEYPATH_MAX], q[CFG_QUOTE_MAX];
	yaml_node_pair_t *pair;
	size_t i;

	if (cfg_expect(c, map, path, YAML_MAPPING_NODE) == -1)
		return -1;
	for (i = 0; i < nkeys; i++)
		vals[i] = NULL;
	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, pair->value);
		const char *name;

		if (k->type != YAML_SCALAR_NODE)
			return cfg_error(c, k, path, "keys must be scalars, found %s",
			    cfg_type_name(k));
		name = (const char *)k->data.scalar.value;
		for (i = 0; i < nkeys; i++)
			if (strlen(name) == k->data.scalar.length &&
			    strcmp(name, keys[i].name) == 0)
				break;
		if (i == nkeys)
			return cfg_error(c, k, path, "unknown key %s",
			    log_quote(name, q, sizeof(q)));
		cfg_path_key(kpath, sizeof(kpath), path, keys[i].name);
		if (vals[i] != NULL)
			return cfg_error(c, k, kpath, "duplicate key");
		vals[i] = v;
	}
	for (i = 0; i < nkeys; i++) {
		if (keys[i].required && vals[i] == NULL) {
			cfg_path_key(kpath, sizeof(kpath), path, keys[i].name);
			return cfg_error(c, map, kpath, "required key is missing");
		}
	}
	return 0;
}

/* ---- values ---- */

static bool
cfg_name_valid(const char *s)
{
	size_t len = strlen(s);

	if (len < 1 || len >= CFG_NAME_MAX)
		return false;
	for (; *s != '\0'; s++) {
		char ch = *s;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

static int
cfg_name(struct cfg_ctx *c, const yaml_node_t *n, const char *path, char out[CFG_NAME_MAX])
{
	char q[CFG_QUOTE_MAX];
	const char *v;

	if (cfg_scalar(c, n, path, &v) == -1)
		return -1;
	if (!cfg_name_valid(v))
		return cfg_error(c, n, path, "%s is not a valid name (1..%d characters "
		    "of A-Z a-z 0-9 . _ -)", log_quote(v, q, sizeof(q)), CFG_NAME_MAX - 1);
	memcpy(out, v, strlen(v) + 1);
	return 0;
}

/* What the kernel's dev_valid_name() accepts, limited to printable ASCII. */
static bool
cfg_ifname_valid(const char *s)
{
	size_t len = strlen(s);

	if (len < 1 || len >= IF_NAMESIZE || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (; *s != '\0'; s++)
		if (*s <= ' ' || *s > '~' || *s == '/' || *s == ':')
			return false;
	return true;
}

static int
cfg_ifname(struct cfg_ctx *c, const yaml_node_t *n, const char *path, char out[IF_NAMESIZE])
{
	char q[CFG_QUOTE_MAX];
	const char *v;

	if (cfg_scalar(c, n, path, &v) == -1)
		return -1;
	if (!cfg_ifname_valid(v))
		return cfg_error(c, n, path, "%s is not a valid interface name (1..%d "
		    "printable characters, no '/', ':' or space)", log_quote(v, q, sizeof(q)),
		    IF_NAMESIZE - 1);
	memcpy(out, v, strlen(v) + 1);
	return 0;
}

static int
cfg_addr(struct cfg_ctx *c, const yaml_node_t *n, const char *path, struct netaddr *out)
{
	char q[CFG_QUOTE_MAX];
	const char *v;

	if (cfg_scalar(c, n, path, &v) == -1)
		return -1;
	if (netaddr_parse(v, out) == -1)
		return cfg_error(c, n, path, "%s is not an IP address", log_quote(v, q, sizeof(q)));
	return 0;
}

/* A gateway, a source or a probe target: an address of a host elsewhere. */
static int
cfg_host_addr(struct cfg_ctx *c, const yaml_node_t *n, const char *path, struct netaddr *out)
{
	enum netaddr_class kind;
	char q[CFG_QUOTE_MAX];

	if (cfg_addr(c, n, path, out) == -1)
		return -1;
	if ((kind = netaddr_classify(out)) != NETADDR_UNICAST)
		return cfg_error(c, n, path, "%s is %s, not a host's address",
		    log_quote((const char *)n->data.scalar.value, q, sizeof(q)),
		    netaddr_class_name(kind));
	return 0;
}

static int
cfg_prefix(struct cfg_ctx *c, const yaml_node_t *n, const char *path, struct netprefix *out)
{
	char q[CFG_QUOTE_MAX], buf[NETADDR_STRLEN + 8], fix[NETADDR_STRLEN + 8], *slash, *end;
	const char *v;
	struct netprefix p;
	unsigned long len;

	if (cfg_scalar(c, n, path, &v) == -1)
		return -1;
	if (netprefix_parse(v, out) == 0)
		return 0;
	log_quote(v, q, sizeof(q));
	/* Host bits are the common mistake and the fix is obvious: say it. */
	if (strlen(v) < sizeof(buf)) {
		memcpy(buf, v, strlen(v) + 1);
		if ((slash = strchr(buf, '/')) != NULL) {
			*slash = '\0';
			errno = 0;
			len = strtoul(slash + 1, &end, 10);
			if (netaddr_parse(buf, &p.addr) == 0 && slash[1] >= '0' &&
			    slash[1] <= '9' && *end == '\0' && errno == 0 &&
			    len <= netaddr_len(&p.addr) * 8) {
				p.len = (uint8_t)len;
				for (size_t bit = len; bit < netaddr_len(&p.addr) * 8; bit++)
					p.addr.a[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
				return cfg_error(c, n, path, "%s has host bits set (did you "
				    "mean %s?)", q, netprefix_str(&p, fix, sizeof(fix)));
			}
		}
	}
	return cfg_error(c, n, path, "%s is not a network prefix (address/length)", q);
}

static int
cfg_endpoint(struct cfg_ctx *c, const yaml_node_t *n, const char *path, struct netendpoint *out)
{
	char q[CFG_QUOTE_MAX];
	const char *v;

	if (cfg_scalar(c, n, path, &v) == -1)
		return -1;
	if (netendpoint_parse(v, out) == -1)
		return cfg_error(c, n, path, "%s is not an endpoint (address:port or "
		    "[IPv6-address]:port, port 1..65535)", log_quote(v, q, sizeof(q)));
	return 0;
}

/* Decimal, or with `hex` also 0x-prefixed hexadecimal; no sign, no spaces. */
static int
cfg_uint(struct cfg_ctx *c, const yaml_node_t *n, const char *path, bool hex,
    uint64_t min, uint64_t max, uint64_t *out)
{
	char q[CFG_QUOTE_MAX];
	const char *v, *p;
	uint64_t val = 0;
	unsigned base = 10;
	bool over = false;

	if (cfg_scalar(c, n, path, &v) == -1)
		return -1;
	p = v;
	if (hex && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	if (*p == '\0')
		goto bad;
	for (; *p != '\0'; p++) {
		unsigned d;

		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			goto bad;
		if (val > (UINT64_MAX - d) / base)
			over = true;
		else
			val = val * base + d;
	}
	if (over || val < min || val > max) {
		if (hex)
			return cfg_error(c, n, path, "%s is out of range 0x%llx..0x%llx",
			    log_quote(v, q, sizeof(q)), (unsigned long long)min,
			    (unsigned long long)max);
		return cfg_error(c, n, path, "%s is out of range %llu..%llu",
		    log_quote(v, q, sizeof(q)), (unsigned long long)min, (unsigned long long)max);
	}
	*out = val;
	return 0;
bad:
	return cfg_error(c, n, path, "%s is not %s", log_quote(v, q, sizeof(q)),
	    hex ? "an integer (decimal or 0x-prefixed hex)" : "an integer");
}

static int
cfg_unsigned(struct cfg_ctx *c, const yaml_node_t *n, const char *path,
    unsigned min, unsigned max, unsigned *out)
{
	uint64_t v;

	if (cfg_uint(c, n, path, false, min, max, &v) == -1)
		return -1;
	*out = (unsigned)v;
	return 0;
}

int
config_parse_duration(const char *s, uint32_t *ms)
{
	static const struct {
		const char *unit;
		uint64_t mult;
	} units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60 * 1000 }, { "h", 3600 * 1000 },
	};
	uint64_t val = 0;
	const char *p = s;
	bool over = false;

	if (s == NULL || *p < '0' || *p > '9')
		goto bad;
	for (; *p >= '0' && *p <= '9'; p++) {
		val = val * 10 + (uint64_t)(*p - '0');
		if (val > UINT32_MAX)
			over = true, val = UINT32_MAX + (uint64_t)1;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].unit) != 0)
			continue;
		if (over || val * units[i].mult > UINT32_MAX) {
			errno = ERANGE;
			return -1;
		}
		*ms = (uint32_t)(val * units[i].mult);
		return 0;
	}
bad:
	errno = EINVAL;
	return -1;
}

static int
cfg_duration(struct cfg_ctx *c, const yaml_node_t *n, const char *path, bool zero_ok,
    uint32_t *out)
{
	char q[CFG_QUOTE_MAX];
	const char *v;

	if (cfg_scalar(c, n, path, &v) == -1)
		return -1;
	log_quote(v, q, sizeof(q));
	if (config_parse_duration(v, out) == -1) {
		if (errno == ERANGE)
			return cfg_error(c, n, path, "%s is out of range (at most %ums)", q,
			    (unsigned)UINT32_MAX);
		return cfg_error(c, n, path, "%s is not a duration (a number and a unit: "
		    "ms, s, m or h)", q);
	}
	if (*out == 0 && !zero_ok)
		return cfg_error(c, n, path, "%s must be greater than zero", q);
	return 0;
}

/* An owned copy of a file system path: non-empty, no control characters. */
static int
cfg_fspath(struct cfg_ctx *c, const yaml_node_t *n, const char *path, size_t max, char **out)
{
	char q[CFG_QUOTE_MAX];
	const char *v;

	if (cfg_scalar(c, n, path, &v) == -1)
		return -1;
	if (*v == '\0')
		return cfg_error(c, n, path, "path is empty");
	if (strlen(v) >= max)
		return cfg_error(c, n, path, "%s is too long (at most %zu bytes)",
		    log_quote(v, q, sizeof(q)), max - 1);
	for (const char *p = v; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return cfg_error(c, n, path, "%s contains a control character",
			    log_quote(v, q, sizeof(q)));
	if ((*out = strdup(v)) == NULL) {
		cfg_error(c, n, path, "out of memory");
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/* ---- sections ---- */

static int
cfg_parse_lan(struct cfg_ctx *c, yaml_node_t *n, const char *path)
{
	static const struct cfg_key keys[] = {
		{ "interface", true }, { "networks", true },
	};
	struct config *cfg = c->cfg;
	char kpath[CFG_KEYPATH_MAX], ipath[CFG_KEYPATH_MAX], other[NETADDR_STRLEN + 8];
	char q[CFG_QUOTE_MAX];
	yaml_node_t *v[2], *nets;
	size_t count;

	if (cfg_map(c, n, path, keys, 2, v) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "interface");
	if (cfg_ifname(c, v[0], kpath, cfg->lan.interface) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "networks");
	nets = v[1];
	if (cfg_expect(c, nets, kpath, YAML_SEQUENCE_NODE) == -1)
		return -1;
	count = cfg_seq_len(nets);
	if (count == 0)
		return cfg_error(c, nets, kpath, "at least one network is required");
	if (count > CFG_MAX_NETWORKS) {
		cfg_path_index(ipath, sizeof(ipath), kpath, CFG_MAX_NETWORKS);
		return cfg_error(c, cfg_seq_item(c, nets, CFG_MAX_NETWORKS), ipath,
		    "too many networks (at most %d)", CFG_MAX_NETWORKS);
	}
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *item = cfg_seq_item(c, nets, i);
		struct netprefix *p = &cfg->lan.networks[i];

		cfg_path_index(ipath, sizeof(ipath), kpath, i);
		if (cfg_prefix(c, item, ipath, p) == -1)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (netprefix_overlap(p, &cfg->lan.networks[j]))
				return cfg_error(c, item, ipath, "%s overlaps %s[%zu] (%s)",
				    log_quote((const char *)item->data.scalar.value, q,
				    sizeof(q)), kpath, j,
				    netprefix_str(&cfg->lan.networks[j], other, sizeof(other)));
		cfg->lan.nnetworks = i + 1;
	}
	return 0;
}

static int
cfg_parse_queue(struct cfg_ctx *c, yaml_node_t *n, const char *path)
{
	static const struct cfg_key keys[] = { { "first", false }, { "count", false } };
	struct config *cfg = c->cfg;
	char kpath[CFG_KEYPATH_MAX];
	yaml_node_t *v[2];

	if (cfg_map(c, n, path, keys, 2, v) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "first");
	if (v[0] != NULL && cfg_unsigned(c, v[0], kpath, 0, 65535, &cfg->queue.first) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "count");
	if (v[1] != NULL && cfg_unsigned(c, v[1], kpath, 1, 64, &cfg->queue.count) == -1)
		return -1;
	/* The default count of 1 always fits, so an overflow has an explicit count. */
	if (cfg->queue.first + cfg->queue.count > 65536)
		return cfg_error(c, v[1], kpath, "queues %u..%u go past 65535",
		    cfg->queue.first, cfg->queue.first + cfg->queue.count - 1);
	return 0;
}

static const char *
cfg_duration_str(uint32_t ms, char *buf, size_t len)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, len, "%uh", ms / 3600000);
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, len, "%um", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%us", ms / 1000);
	else
		snprintf(buf, len, "%ums", ms);
	return buf;
}

static int
cfg_parse_health(struct cfg_ctx *c, yaml_node_t *n, const char *path, struct cfg_provider *p)
{
	static const struct cfg_key keys[] = {
		{ "targets", false }, { "require", false }, { "interval", false },
		{ "timeout", false }, { "fall", false }, { "rise", false },
	};
	struct cfg_health *h = &p->health;
	char kpath[CFG_KEYPATH_MAX], ipath[CFG_KEYPATH_MAX], q[CFG_QUOTE_MAX], d[16];
	yaml_node_t *v[6];

	h->targets[0] = p->gateway;
	h->ntargets = 1;
	h->require = 1;
	h->interval_ms = 1000;
	h->timeout_ms = 500;
	h->fall = 3;
	h->rise = 2;
	if (n == NULL)
		return 0;
	if (cfg_map(c, n, path, keys, 6, v) == -1)
		return -1;

	if (v[0] != NULL) {
		size_t count;

		cfg_path_key(kpath, sizeof(kpath), path, "targets");
		if (cfg_expect(c, v[0], kpath, YAML_SEQUENCE_NODE) == -1)
			return -1;
		count = cfg_seq_len(v[0]);
		if (count == 0)
			return cfg_error(c, v[0], kpath, "at least one target is required");
		if (count > CFG_MAX_TARGETS) {
			cfg_path_index(ipath, sizeof(ipath), kpath, CFG_MAX_TARGETS);
			return cfg_error(c, cfg_seq_item(c, v[0], CFG_MAX_TARGETS), ipath,
			    "too many targets (at most %d)", CFG_MAX_TARGETS);
		}
		for (size_t i = 0; i < count; i++) {
			yaml_node_t *item = cfg_seq_item(c, v[0], i);
			struct netaddr *a = &h->targets[i];

			cfg_path_index(ipath, sizeof(ipath), kpath, i);
			if (cfg_host_addr(c, item, ipath, a) == -1)
				return -1;
			log_quote((const char *)item->data.scalar.value, q, sizeof(q));
			/* Probes leave through the provider with its source address. */
			if (a->family != p->gateway.family)
				return cfg_error(c, item, ipath, "%s is %s but the gateway is %s",
				    q, cfg_family_name(a->family),
				    cfg_family_name(p->gateway.family));
			for (size_t j = 0; j < i; j++)
				if (netaddr_eq(a, &h->targets[j]))
					return cfg_error(c, item, ipath, "%s is listed twice", q);
		}
		h->ntargets = count;
	}
	cfg_path_key(kpath, sizeof(kpath), path, "require");
	if (v[1] != NULL &&
	    cfg_unsigned(c, v[1], kpath, 1, (unsigned)h->ntargets, &h->require) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "interval");
	if (v[2] != NULL && cfg_duration(c, v[2], kpath, false, &h->interval_ms) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "timeout");
	if (v[3] != NULL && cfg_duration(c, v[3], kpath, false, &h->timeout_ms) == -1)
		return -1;
	if (h->timeout_ms > h->interval_ms) {
		/* With both defaulted this cannot happen; blame the one given. */
		if (v[3] != NULL)
			return cfg_error(c, v[3], kpath, "%s is longer than the interval (%s)",
			    log_quote((const char *)v[3]->data.scalar.value, q, sizeof(q)),
			    cfg_duration_str(h->interval_ms, d, sizeof(d)));
		cfg_path_key(kpath, sizeof(kpath), path, "interval");
		return cfg_error(c, v[2], kpath, "%s is shorter than the timeout (%s)",
		    log_quote((const char *)v[2]->data.scalar.value, q, sizeof(q)),
		    cfg_duration_str(h->timeout_ms, d, sizeof(d)));
	}
	cfg_path_key(kpath, sizeof(kpath), path, "fall");
	if (v[4] != NULL && cfg_unsigned(c, v[4], kpath, 1, 100, &h->fall) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "rise");
	if (v[5] != NULL && cfg_unsigned(c, v[5], kpath, 1, 100, &h->rise) == -1)
		return -1;
	return 0;
}

/* How a value that may be defaulted shows in a duplicate message. */
static const char *
cfg_value_text(const yaml_node_t *n, uint32_t val, bool hex, char *buf, size_t len)
{
	if (n != NULL)
		return log_quote((const char *)n->data.scalar.value, buf, len);
	snprintf(buf, len, hex ? "0x%x (the default)" : "%u (the default)", val);
	return buf;
}

/*
 * Checks provider i against those before it.  When a clash involves a
 * defaulted mark or table, the message points at the explicit one.
 */
static int
cfg_check_provider(struct cfg_ctx *c, size_t i, const struct cfg_pnodes *pn)
{
	const struct cfg_provider *p = &c->cfg->providers[i];
	char path[CFG_KEYPATH_MAX], q[CFG_QUOTE_MAX], q2[CFG_QUOTE_MAX];

	for (size_t j = 0; j < i; j++) {
		const struct cfg_provider *o = &c->cfg->providers[j];
		size_t at, other;

		if (strcmp(p->name, o->name) == 0) {
			snprintf(path, sizeof(path), "providers[%zu].name", i);
			return cfg_error(c, pn[i].name, path, "duplicate provider name %s "
			    "(also providers[%zu])", log_quote(p->name, q, sizeof(q)), j);
		}
		if (strcmp(p->interface, o->interface) == 0 && netaddr_eq(&p->gateway, &o->gateway)) {
			snprintf(path, sizeof(path), "providers[%zu].gateway", i);
			return cfg_error(c, pn[i].gateway, path, "%s on %s is already the "
			    "gateway of providers[%zu] (%s)",
			    log_quote((const char *)pn[i].gateway->data.scalar.value, q, sizeof(q)),
			    log_quote(p->interface, q2, sizeof(q2)), j, o->name);
		}
		/* The source selects the provider's routing table for the
		 * daemon's own packets (probes) and is the address keepalived
		 * moves: two providers cannot share it. */
		if (netaddr_eq(&p->source, &o->source)) {
			snprintf(path, sizeof(path), "providers[%zu].source", i);
			return cfg_error(c, pn[i].source, path, "%s is also the source of "
			    "providers[%zu] (%s)",
			    log_quote((const char *)pn[i].source->data.scalar.value, q, sizeof(q)),
			    j, o->name);
		}
		if (p->mark == o->mark) {
			at = pn[i].mark != NULL ? i : j;
			other = at == i ? j : i;
			snprintf(path, sizeof(path), "providers[%zu].mark", at);
			return cfg_error(c, pn[at].mark, path, "%s is also the mark of "
			    "providers[%zu] (%s)",
			    cfg_value_text(pn[at].mark, p->mark, true, q, sizeof(q)),
			    other, c->cfg->providers[other].name);
		}
		if (p->table == o->table) {
			at = pn[i].table != NULL ? i : j;
			other = at == i ? j : i;
			snprintf(path, sizeof(path), "providers[%zu].table", at);
			return cfg_error(c, pn[at].table, path, "%s is also the table of "
			    "providers[%zu] (%s)",
			    cfg_value_text(pn[at].table, p->table, false, q, sizeof(q)),
			    other, c->cfg->providers[other].name);
		}
	}
	return 0;
}

static int
cfg_parse_provider(struct cfg_ctx *c, yaml_node_t *n, const char *path, size_t i,
    struct cfg_pnodes *pn)
{
	static const struct cfg_key keys[] = {
		{ "name", true }, { "interface", true }, { "gateway", true },
		{ "source", true }, { "weight", false }, { "mark", false },
		{ "table", false }, { "health", false },
	};
	struct cfg_provider *p = &c->cfg->providers[i];
	char kpath[CFG_KEYPATH_MAX], q[CFG_QUOTE_MAX];
	yaml_node_t *v[8];
	uint64_t val;

	if (cfg_map(c, n, path, keys, 8, v) == -1)
		return -1;
	pn->name = v[0];
	pn->interface = v[1];
	pn->gateway = v[2];
	pn->source = v[3];
	pn->mark = v[5];
	pn->table = v[6];

	cfg_path_key(kpath, sizeof(kpath), path, "name");
	if (cfg_name(c, v[0], kpath, p->name) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "interface");
	if (cfg_ifname(c, v[1], kpath, p->interface) == -1)
		return -1;
	if (strcmp(p->interface, c->cfg->lan.interface) == 0)
		return cfg_error(c, v[1], kpath, "%s is the LAN interface",
		    log_quote(p->interface, q, sizeof(q)));
	cfg_path_key(kpath, sizeof(kpath), path, "gateway");
	if (cfg_host_addr(c, v[2], kpath, &p->gateway) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "source");
	if (cfg_host_addr(c, v[3], kpath, &p->source) == -1)
		return -1;
	if (p->source.family != p->gateway.family)
		return cfg_error(c, v[3], kpath, "%s is %s but the gateway is %s",
		    log_quote((const char *)v[3]->data.scalar.value, q, sizeof(q)),
		    cfg_family_name(p->source.family), cfg_family_name(p->gateway.family));

	p->weight = 1;
	cfg_path_key(kpath, sizeof(kpath), path, "weight");
	if (v[4] != NULL && cfg_unsigned(c, v[4], kpath, 1, 1000, &p->weight) == -1)
		return -1;
	p->mark = 0x100 * (uint32_t)(i + 1);
	cfg_path_key(kpath, sizeof(kpath), path, "mark");
	if (v[5] != NULL) {
		if (cfg_uint(c, v[5], kpath, true, 1, UINT32_MAX, &val) == -1)
			return -1;
		p->mark = (uint32_t)val;
	}
	p->table = 100 + (uint32_t)i;
	cfg_path_key(kpath, sizeof(kpath), path, "table");
	if (v[6] != NULL) {
		if (cfg_uint(c, v[6], kpath, false, 1, INT32_MAX, &val) == -1)
			return -1;
		/* default, main and local belong to the system. */
		if (val >= 253 && val <= 255)
			return cfg_error(c, v[6], kpath, "%s is a reserved routing table "
			    "(253..255)", log_quote((const char *)v[6]->data.scalar.value, q,
			    sizeof(q)));
		p->table = (uint32_t)val;
	}
	cfg_path_key(kpath, sizeof(kpath), path, "health");
	return cfg_parse_health(c, v[7], kpath, p);
}

static int
cfg_parse_providers(struct cfg_ctx *c, yaml_node_t *n, const char *path)
{
	struct cfg_pnodes pn[CFG_MAX_PROVIDERS];
	char ipath[CFG_KEYPATH_MAX];
	bool lan4 = false, provider4 = false;
	size_t count;

	if (cfg_expect(c, n, path, YAML_SEQUENCE_NODE) == -1)
		return -1;
	count = cfg_seq_len(n);
	if (count > CFG_MAX_PROVIDERS) {
		cfg_path_index(ipath, sizeof(ipath), path, CFG_MAX_PROVIDERS);
		return cfg_error(c, cfg_seq_item(c, n, CFG_MAX_PROVIDERS), ipath,
		    "too many providers (at most %d)", CFG_MAX_PROVIDERS);
	}
	for (size_t i = 0; i < count; i++) {
		cfg_path_index(ipath, sizeof(ipath), path, i);
		if (cfg_parse_provider(c, cfg_seq_item(c, n, i), ipath, i, &pn[i]) == -1)
			return -1;
		c->cfg->nproviders = i + 1;
		if (cfg_check_provider(c, i, pn) == -1)
			return -1;
	}
	if (count < 2)
		return cfg_error(c, n, path, "at least 2 providers are required, found %zu",
		    count);
	for (size_t i = 0; i < c->cfg->lan.nnetworks; i++)
		lan4 |= c->cfg->lan.networks[i].addr.family == AF_INET;
	for (size_t i = 0; i < count; i++)
		provider4 |= config_provider_balanced(c->cfg, i);
	if (lan4 && !provider4)
		return cfg_error(c, n, path, "no provider is IPv4, but lan.networks has IPv4 "
		    "prefixes: uplinkd balances and translates IPv4 connections only");
	return 0;
}

static int
cfg_parse_balance(struct cfg_ctx *c, yaml_node_t *n, const char *path)
{
	static const struct cfg_key keys[] = { { "algorithm", false }, { "sticky", false } };
	struct config *cfg = c->cfg;
	char kpath[CFG_KEYPATH_MAX], q[CFG_QUOTE_MAX];
	yaml_node_t *v[2];
	const char *s;
	size_t i;

	if (cfg_map(c, n, path, keys, 2, v) == -1)
		return -1;
	if (v[0] != NULL) {
		cfg_path_key(kpath, sizeof(kpath), path, "algorithm");
		if (cfg_scalar(c, v[0], kpath, &s) == -1)
			return -1;
		for (i = 0; i < CFG_NALGS; i++)
			if (strcmp(s, cfg_alg_names[i]) == 0)
				break;
		if (i == CFG_NALGS)
			return cfg_error(c, v[0], kpath, "%s is not an algorithm (wrr, wlc, "
			    "source-hash or maglev)", log_quote(s, q, sizeof(q)));
		cfg->balance.algorithm = (enum cfg_algorithm)i;
	}
	cfg_path_key(kpath, sizeof(kpath), path, "sticky");
	if (v[1] != NULL && cfg_duration(c, v[1], kpath, true, &cfg->balance.sticky_ms) == -1)
		return -1;
	return 0;
}

static int
cfg_parse_tls(struct cfg_ctx *c, yaml_node_t *n, const char *path)
{
	static const struct cfg_key keys[] = {
		{ "ca", true }, { "cert", true }, { "key", true }, { "peer_name", true },
	};
	struct cfg_tls *tls = &c->cfg->sync.tls;
	char kpath[CFG_KEYPATH_MAX], q[CFG_QUOTE_MAX];
	yaml_node_t *v[4];

	if (cfg_map(c, n, path, keys, 4, v) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "ca");
	if (cfg_fspath(c, v[0], kpath, CFG_FSPATH_MAX, &tls->ca) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "cert");
	if (cfg_fspath(c, v[1], kpath, CFG_FSPATH_MAX, &tls->cert) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "key");
	if (cfg_fspath(c, v[2], kpath, CFG_FSPATH_MAX, &tls->key) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "peer_name");
	if (cfg_name(c, v[3], kpath, tls->peer_name) == -1)
		return -1;
	if (strcmp(tls->peer_name, c->cfg->node) == 0)
		return cfg_error(c, v[3], kpath, "%s is this node's own name",
		    log_quote(tls->peer_name, q, sizeof(q)));
	return 0;
}

static int
cfg_parse_sync(struct cfg_ctx *c, yaml_node_t *n, const char *path)
{
	static const struct cfg_key keys[] = {
		{ "listen", true }, { "peer", true }, { "tls", true },
	};
	struct config *cfg = c->cfg;
	char kpath[CFG_KEYPATH_MAX], q[CFG_QUOTE_MAX];
	enum netaddr_class kind;
	yaml_node_t *v[3];

	if (cfg_map(c, n, path, keys, 3, v) == -1)
		return -1;
	cfg->has_sync = true;
	cfg_path_key(kpath, sizeof(kpath), path, "listen");
	if (cfg_endpoint(c, v[0], kpath, &cfg->sync.listen) == -1)
		return -1;
	cfg_path_key(kpath, sizeof(kpath), path, "peer");
	if (cfg_endpoint(c, v[1], kpath, &cfg->sync.peer) == -1)
		return -1;
	log_quote((const char *)v[1]->data.scalar.value, q, sizeof(q));
	/* Loopback is fine: two daemons on one host (tests, a lab). */
	kind = netaddr_classify(&cfg->sync.peer.addr);
	if (kind != NETADDR_UNICAST && kind != NETADDR_LOOPBACK)
		return cfg_error(c, v[1], kpath, "%s is %s, not the peer's address", q,
		    netaddr_class_name(kind));
	if (cfg->sync.peer.addr.family != cfg->sync.listen.addr.family)
		return cfg_error(c, v[1], kpath, "%s is %s but sync.listen is %s", q,
		    cfg_family_name(cfg->sync.peer.addr.family),
		    cfg_family_name(cfg->sync.listen.addr.family));
	if (netaddr_eq(&cfg->sync.peer.addr, &cfg->sync.listen.addr) &&
	    cfg->sync.peer.port == cfg->sync.listen.port)
		return cfg_error(c, v[1], kpath, "%s is this node's own listen address", q);
	cfg_path_key(kpath, sizeof(kpath), path, "tls");
	return cfg_parse_tls(c, v[2], kpath);
}

static int
cfg_parse_control(struct cfg_ctx *c, yaml_node_t *n, const char *path)
{
	static const struct cfg_key keys[] = { { "socket", false } };
	struct sockaddr_un sun;
	char kpath[CFG_KEYPATH_MAX];
	yaml_node_t *v[1];
	char *s;

	if (n != NULL) {
		if (cfg_map(c, n, path, keys, 1, v) == -1)
			return -1;
		if (v[0] != NULL) {
			cfg_path_key(kpath, sizeof(kpath), path, "socket");
			return cfg_fspath(c, v[0], kpath, sizeof(sun.sun_path),
			    &c->cfg->control.socket);
		}
	}
	if ((s = strdup(CFG_DEFAULT_SOCKET)) == NULL) {
		cfg_error(c, n, path, "out of memory");
		errno = ENOMEM;
		return -1;
	}
	c->cfg->control.socket = s;
	return 0;
}

static uint32_t
cfg_mark_mask(const struct config *cfg)
{
	uint32_t all = 0, low, high;

	for (size_t i = 0; i < cfg->nproviders; i++)
		all |= cfg->providers[i].mark;
	if (all == 0)
		return 0;
	low = all & (0u - all);
	high = 1u << (31 - __builtin_clz(all));
	/* Every bit from the lowest to the highest one, inclusive. */
	return (high - low) | high;
}

static int
cfg_parse_root(struct cfg_ctx *c, yaml_node_t *root)
{
	static const struct cfg_key keys[] = {
		{ "node", true }, { "lan", true }, { "queue", false },
		{ "providers", true }, { "balance", false }, { "sync", false },
		{ "control", false },
	};
	struct config *cfg = c->cfg;
	yaml_node_t *v[7];

	if (cfg_map(c, root, "", keys, 7, v) == -1)
		return -1;
	if (cfg_name(c, v[0], "node", cfg->node) == -1)
		return -1;
	if (cfg_parse_lan(c, v[1], "lan") == -1)
		return -1;
	cfg->queue.first = 0;
	cfg->queue.count = 1;
	if (v[2] != NULL && cfg_parse_queue(c, v[2], "queue") == -1)
		return -1;
	if (cfg_parse_providers(c, v[3], "providers") == -1)
		return -1;
	cfg->balance.algorithm = CFG_ALG_WRR;
	cfg->balance.sticky_ms = 0;
	if (v[4] != NULL && cfg_parse_balance(c, v[4], "balance") == -1)
		return -1;
	if (v[5] != NULL && cfg_parse_sync(c, v[5], "sync") == -1)
		return -1;
	if (cfg_parse_control(c, v[6], "control") == -1)
		return -1;
	cfg->mark_mask = cfg_mark_mask(cfg);
	return 0;
}

/* ---- entry points ---- */

static void
cfg_yaml_error(const yaml_parser_t *parser, const char *name, const char *text,
    size_t len, char *err, size_t errlen)
{
	size_t line = parser->problem_mark.line + 1, col = parser->problem_mark.column + 1;
	const char *problem = parser->problem != NULL ? parser->problem : "YAML error";
	char msg[CFG_ERR_MAX];

	if (parser->error == YAML_MEMORY_ERROR) {
		cfg_report(err, errlen, name, 1, 1, NULL, "out of memory");
		errno = ENOMEM;
		return;
	}
	if (parser->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a mark. */
		line = col = 1;
		for (size_t i = 0; i < parser->problem_offset && i < len; i++) {
			if (text[i] == '\n')
				line++, col = 1;
			else
				col++;
		}
	}
	if (parser->context != NULL)
		snprintf(msg, sizeof(msg), "%s (%s)", problem, parser->context);
	else
		snprintf(msg, sizeof(msg), "%s", problem);
	cfg_report(err, errlen, name, line, col, NULL, msg);
	errno = EINVAL;
}

/*
 * libyaml's scanner spends time quadratic in the depth of nested flow
 * collections (it revisits every open level for each token): a 1 MiB file
 * of '[' would keep the parser, and the daemon's loop on a reload, busy
 * for half an hour.  So the events are walked first and the document is
 * built only when it is no deeper than the schema could ever use.
 */
static int
cfg_check_depth(const char *name, const char *text, size_t len, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	char msg[64];
	int depth = 0, rc = 0;
	bool end = false;

	if (!yaml_parser_initialize(&parser)) {
		cfg_report(err, errlen, name, 1, 1, NULL, "out of memory");
		errno = ENOMEM;
		return -1;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	while (!end && rc == 0) {
		if (!yaml_parser_parse(&parser, &ev)) {
			cfg_yaml_error(&parser, name, text, len, err, errlen);
			rc = -1;
			break;
		}
		if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) {
			if (++depth > CFG_MAX_DEPTH) {
				snprintf(msg, sizeof(msg), "nested deeper than %d levels",
				    CFG_MAX_DEPTH);
				cfg_report(err, errlen, name, ev.start_mark.line + 1,
				    ev.start_mark.column + 1, NULL, msg);
				errno = EINVAL;
				rc = -1;
			}
		} else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT)
			depth--;
		end = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	return rc;
}

struct config *
config_parse(const char *name, const char *text, size_t len, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	struct cfg_ctx c = { .name = name, .doc = &doc, .err = err, .errlen = errlen };
	struct config *cfg = NULL;
	yaml_node_t *root;
	int saved;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if ((c.cfg = calloc(1, sizeof(*c.cfg))) == NULL ||
	    (c.cfg->path = strdup(name)) == NULL) {
		cfg_report(err, errlen, name, 1, 1, NULL, "out of memory");
		free(c.cfg);
		errno = ENOMEM;
		return NULL;
	}
	if (cfg_check_depth(name, text, len, err, errlen) == -1) {
		saved = errno;
		config_free(c.cfg);
		errno = saved;
		return NULL;
	}
	if (!yaml_parser_initialize(&parser)) {
		cfg_report(err, errlen, name, 1, 1, NULL, "out of memory");
		config_free(c.cfg);
		errno = ENOMEM;
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		cfg_yaml_error(&parser, name, text, len, err, errlen);
		goto out_parser;
	}
	if ((root = yaml_document_get_root_node(&doc)) == NULL) {
		cfg_report(err, errlen, name, 1, 1, NULL, "the file is empty");
		errno = EINVAL;
		goto out_doc;
	}
	/* A second document would be silently ignored otherwise. */
	if (!yaml_parser_load(&parser, &extra)) {
		cfg_yaml_error(&parser, name, text, len, err, errlen);
		goto out_doc;
	}
	if (yaml_document_get_root_node(&extra) != NULL) {
		cfg_error(&c, yaml_document_get_root_node(&extra), NULL,
		    "only one YAML document is allowed");
		yaml_document_delete(&extra);
		goto out_doc;
	}
	yaml_document_delete(&extra);
	if (cfg_parse_root(&c, root) == 0) {
		cfg = c.cfg;
		c.cfg = NULL;
	}
out_doc:
	yaml_document_delete(&doc);
out_parser:
	yaml_parser_delete(&parser);
	saved = errno;
	config_free(c.cfg);
	errno = saved;
	return cfg;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct config *cfg;
	char *buf = NULL, *nbuf;
	size_t len = 0, cap = 0;
	ssize_t r;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		goto fail;
	for (;;) {
		if (len == cap) {
			/* One byte past the limit tells "too large" from "exactly full". */
			if (cap > CFG_FILE_MAX) {
				errno = EFBIG;
				goto fail;
			}
			cap = cap == 0 ? 4096 : cap * 2;
			if (cap > CFG_FILE_MAX + 1)
				cap = CFG_FILE_MAX + 1;
			if ((nbuf = realloc(buf, cap)) == NULL)
				goto fail;
			buf = nbuf;
		}
		r = read(fd, buf + len, cap - len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			goto fail;
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	cfg = config_parse(path, buf != NULL ? buf : "", len, err, errlen);
	saved = errno;
	free(buf);
	errno = saved;
	return cfg;
fail:
	saved = errno;
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: %s", path, saved == EFBIG ?
		    "file is larger than 1 MiB" : strerror(saved));
	if (fd != -1)
		close(fd);
	free(buf);
	errno = saved;
	return NULL;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->sync.tls.ca);
	free(cfg->sync.tls.cert);
	free(cfg->sync.tls.key);
	free(cfg->control.socket);
	free(cfg);
}

/* ---- printing ---- */

/*
 * Plain when it cannot be mistaken for YAML syntax, double-quoted
 * otherwise.  Values are never read back as anything but strings, so
 * "null" or "1" may stay plain.
 */
static void
cfg_print_str(FILE *out, const char *s)
{
	bool plain = *s != '\0';

	for (const char *p = s; *p != '\0' && plain; p++) {
		char ch = *p;
		bool word = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '_' || ch == '/';

		if (!word && (p == s || (ch != '.' && ch != '-')))
			plain = false;
	}
	if (plain) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(out, "\\x%02x", ch);
		else
			fputc(ch, out);
	}
	fputc('"', out);
}

static void
cfg_print_kv(FILE *out, const char *indent, const char *key, const char *val)
{
	fprintf(out, "%s%s: ", indent, key);
	cfg_print_str(out, val);
	fputc('\n', out);
}

int
config_print(const struct config *cfg, FILE *out)
{
	char buf[NETENDPOINT_STRLEN], dur[16];

	cfg_print_kv(out, "", "node", cfg->node);
	fprintf(out, "lan:\n");
	cfg_print_kv(out, "  ", "interface", cfg->lan.interface);
	fprintf(out, "  networks:\n");
	for (size_t i = 0; i < cfg->lan.nnetworks; i++) {
		fprintf(out, "    - ");
		cfg_print_str(out, netprefix_str(&cfg->lan.networks[i], buf, sizeof(buf)));
		fputc('\n', out);
	}
	fprintf(out, "queue:\n  first: %u\n  count: %u\n", cfg->queue.first, cfg->queue.count);
	fprintf(out, "providers:\n");
	for (size_t i = 0; i < cfg->nproviders; i++) {
		const struct cfg_provider *p = &cfg->providers[i];
		const struct cfg_health *h = &p->health;

		cfg_print_kv(out, "  - ", "name", p->name);
		cfg_print_kv(out, "    ", "interface", p->interface);
		cfg_print_kv(out, "    ", "gateway", netaddr_str(&p->gateway, buf, sizeof(buf)));
		cfg_print_kv(out, "    ", "source", netaddr_str(&p->source, buf, sizeof(buf)));
		fprintf(out, "    weight: %u\n    mark: 0x%x\n    table: %u\n",
		    p->weight, p->mark, p->table);
		fprintf(out, "    health:\n      targets:\n");
		for (size_t j = 0; j < h->ntargets; j++) {
			fprintf(out, "        - ");
			cfg_print_str(out, netaddr_str(&h->targets[j], buf, sizeof(buf)));
			fputc('\n', out);
		}
		fprintf(out, "      require: %u\n", h->require);
		fprintf(out, "      interval: %s\n",
		    cfg_duration_str(h->interval_ms, dur, sizeof(dur)));
		fprintf(out, "      timeout: %s\n",
		    cfg_duration_str(h->timeout_ms, dur, sizeof(dur)));
		fprintf(out, "      fall: %u\n      rise: %u\n", h->fall, h->rise);
	}
	fprintf(out, "balance:\n  algorithm: %s\n  sticky: %s\n",
	    config_algorithm_name(cfg->balance.algorithm),
	    cfg_duration_str(cfg->balance.sticky_ms, dur, sizeof(dur)));
	if (cfg->has_sync) {
		fprintf(out, "sync:\n");
		cfg_print_kv(out, "  ", "listen", netendpoint_str(&cfg->sync.listen, buf, sizeof(buf)));
		cfg_print_kv(out, "  ", "peer", netendpoint_str(&cfg->sync.peer, buf, sizeof(buf)));
		fprintf(out, "  tls:\n");
		cfg_print_kv(out, "    ", "ca", cfg->sync.tls.ca);
		cfg_print_kv(out, "    ", "cert", cfg->sync.tls.cert);
		cfg_print_kv(out, "    ", "key", cfg->sync.tls.key);
		cfg_print_kv(out, "    ", "peer_name", cfg->sync.tls.peer_name);
	}
	fprintf(out, "control:\n");
	cfg_print_kv(out, "  ", "socket", cfg->control.socket);
	if (fflush(out) == EOF || ferror(out)) {
		if (errno == 0)
			errno = EIO;
		return -1;
	}
	return 0;
}

/* ---- queries ---- */

static bool
cfg_streq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool
cfg_health_equal(const struct cfg_health *a, const struct cfg_health *b)
{
	if (a->ntargets != b->ntargets || a->require != b->require ||
	    a->interval_ms != b->interval_ms || a->timeout_ms != b->timeout_ms ||
	    a->fall != b->fall || a->rise != b->rise)
		return false;
	for (size_t i = 0; i < a->ntargets; i++)
		if (!netaddr_eq(&a->targets[i], &b->targets[i]))
			return false;
	return true;
}

static bool
cfg_endpoint_equal(const struct netendpoint *a, const struct netendpoint *b)
{
	return netaddr_eq(&a->addr, &b->addr) && a->port == b->port;
}

bool
config_equal(const struct config *a, const struct config *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (strcmp(a->node, b->node) != 0 ||
	    strcmp(a->lan.interface, b->lan.interface) != 0 ||
	    a->lan.nnetworks != b->lan.nnetworks ||
	    a->queue.first != b->queue.first || a->queue.count != b->queue.count ||
	    a->nproviders != b->nproviders ||
	    a->balance.algorithm != b->balance.algorithm ||
	    a->balance.sticky_ms != b->balance.sticky_ms ||
	    a->has_sync != b->has_sync ||
	    !cfg_streq(a->control.socket, b->control.socket) ||
	    a->mark_mask != b->mark_mask)
		return false;
	for (size_t i = 0; i < a->lan.nnetworks; i++)
		if (a->lan.networks[i].len != b->lan.networks[i].len ||
		    !netaddr_eq(&a->lan.networks[i].addr, &b->lan.networks[i].addr))
			return false;
	for (size_t i = 0; i < a->nproviders; i++) {
		const struct cfg_provider *p = &a->providers[i], *q = &b->providers[i];

		if (strcmp(p->name, q->name) != 0 || strcmp(p->interface, q->interface) != 0 ||
		    !netaddr_eq(&p->gateway, &q->gateway) ||
		    !netaddr_eq(&p->source, &q->source) || p->weight != q->weight ||
		    p->mark != q->mark || p->table != q->table ||
		    !cfg_health_equal(&p->health, &q->health))
			return false;
	}
	return config_sync_equal(a, b);
}

bool
config_sync_equal(const struct config *a, const struct config *b)
{
	if (strcmp(a->node, b->node) != 0 || a->has_sync != b->has_sync)
		return false;
	return !a->has_sync ||
	    (cfg_endpoint_equal(&a->sync.listen, &b->sync.listen) &&
	    cfg_endpoint_equal(&a->sync.peer, &b->sync.peer) &&
	    cfg_streq(a->sync.tls.ca, b->sync.tls.ca) &&
	    cfg_streq(a->sync.tls.cert, b->sync.tls.cert) &&
	    cfg_streq(a->sync.tls.key, b->sync.tls.key) &&
	    strcmp(a->sync.tls.peer_name, b->sync.tls.peer_name) == 0);
}

const char *
config_algorithm_name(enum cfg_algorithm alg)
{
	if ((size_t)alg >= CFG_NALGS)
		return "unknown";
	return cfg_alg_names[alg];
}

int
config_provider_index(const struct config *cfg, const char *name)
{
	if (cfg == NULL || name == NULL)
		return -1;
	for (size_t i = 0; i < cfg->nproviders; i++)
		if (strcmp(cfg->providers[i].name, name) == 0)
			return (int)i;
	return -1;
}

bool
config_provider_balanced(const struct config *cfg, size_t i)
{
	return i < cfg->nproviders && cfg->providers[i].source.family == AF_INET;
}
