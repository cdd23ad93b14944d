/*
 * Provider choice.  Everything that decides a pick is derived from the
 * config (names, weights, algorithm) and from the set of usable providers,
 * never from pointers, random seeds or start-up time, so that both nodes of
 * a pair, given the same config and health, make the same choices where
 * the algorithm is a pure function of the tuple (source-hash, maglev).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "flows.h"
#include "hash.h"
#include "sched.h"

#if CFG_MAX_PROVIDERS > 32 || CFG_MAX_PROVIDERS > FLOWS_MAX_PROVIDERS
#error "sched keeps provider sets in a uint32_t and reads flows' counts"
#endif

/* A prime well above 100 x the provider count, as the Maglev paper asks,
 * so that a change moves little beyond the entries that must move. */
#define SCHED_MAGLEV_SIZE	65537
#define SCHED_SEED_OFFSET	0x6d61676c65762d6fULL
#define SCHED_SEED_SKIP		0x6d61676c65762d73ULL
#define SCHED_SEED_NAME		0x7372632d68617368ULL
#define SCHED_SEED_SOURCE	0x736f757263652d68ULL
#define SCHED_SEED_STICKY	0x737469636b792d74ULL

/*
 * Sticky table: set-associative, 8 ways per bucket.  A host only ever
 * lives in its bucket, so a lookup and an eviction look at 8 entries; the
 * entry evicted when the bucket is full is the least recently seen of the
 * 8 (an approximation of a global LRU that needs no list pointers).
 */
#define SCHED_STICKY_SIZE	65536
#define SCHED_STICKY_WAYS	8

struct sched_sticky {
	int64_t seen;		/* now_ms of the last pick */
	uint8_t addr[16];
	uint8_t family;		/* 0: empty */
	uint8_t provider;
};

struct sched {
	enum cfg_algorithm alg;
	uint32_t sticky_ms;
	size_t n;
	unsigned weight[CFG_MAX_PROVIDERS];
	uint64_t name_hash[CFG_MAX_PROVIDERS];	/* HRW per-provider seed */
	uint64_t offset[CFG_MAX_PROVIDERS];	/* Maglev permutation */
	uint64_t skip[CFG_MAX_PROVIDERS];
	uint8_t by_name[CFG_MAX_PROVIDERS];	/* indexes sorted by name */

	uint32_t eligible;	/* may carry connections at all (config_provider_balanced) */
	uint32_t usable;	/* eligible, health up and not draining */
	uint32_t good;		/* last non-empty usable set */
	uint32_t active;	/* what picks choose from: usable, or good */

	int64_t wrr_cur[CFG_MAX_PROVIDERS];
	size_t wlc_next;	/* where ties start, rotating */

	uint8_t *maglev;	/* SCHED_MAGLEV_SIZE provider indexes */
	uint32_t maglev_set;	/* the set it was built for; 0: not built */

	struct sched_sticky *sticky;
	size_t sticky_count;
};

static void sched_update(struct sched *s);

struct sched *
sched_create(const struct config *cfg)
{
	struct sched *s;
	const char *name;
	size_t i, j, len;
	uint8_t t;

	if (cfg->nproviders == 0 || cfg->nproviders > CFG_MAX_PROVIDERS) {
		errno = EINVAL;
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->alg = cfg->balance.algorithm;
	s->sticky_ms = cfg->balance.sticky_ms;
	s->n = cfg->nproviders;
	for (i = 0; i < s->n; i++) {
		name = cfg->providers[i].name;
		len = strnlen(name, CFG_NAME_MAX);
		/* The config guarantees 1..1000; 0 would starve the provider
		 * in wrr and divide by zero in HRW. */
		s->weight[i] = cfg->providers[i].weight ? cfg->providers[i].weight : 1;
		s->name_hash[i] = hash64(name, len, SCHED_SEED_NAME);
		s->offset[i] = hash64(name, len, SCHED_SEED_OFFSET) % SCHED_MAGLEV_SIZE;
		s->skip[i] = hash64(name, len, SCHED_SEED_SKIP) %
		    (SCHED_MAGLEV_SIZE - 1) + 1;
		s->by_name[i] = (uint8_t)i;
	}
	/* Maglev fills its table in name order, so that listing the providers
	 * in another order on the peer does not change the table. */
	for (i = 1; i < s->n; i++)
		for (j = i; j > 0; j--) {
			if (strncmp(cfg->providers[s->by_name[j - 1]].name,
			    cfg->providers[s->by_name[j]].name, CFG_NAME_MAX) <= 0)
				break;
			t = s->by_name[j];
			s->by_name[j] = s->by_name[j - 1];
			s->by_name[j - 1] = t;
		}
	if (s->alg == CFG_ALG_MAGLEV &&
	    (s->maglev = malloc(SCHED_MAGLEV_SIZE)) == NULL)
		goto fail;
	if (s->sticky_ms > 0 &&
	    (s->sticky = calloc(SCHED_STICKY_SIZE, sizeof(*s->sticky))) == NULL)
		goto fail;
	for (i = 0; i < s->n; i++)
		if (config_provider_balanced(cfg, i))
			s->eligible |= 1u << i;
	/* Nothing is queued then (rules.c queues IPv4 only), but a pick must
	 * still name a provider. */
	if (s->eligible == 0)
		s->eligible = (uint32_t)((1ULL << s->n) - 1);
	s->usable = s->eligible;
	sched_update(s);
	return s;
fail:
	sched_destroy(s);
	errno = ENOMEM;
	return NULL;
}

void
sched_destroy(struct sched *s)
{
	if (s == NULL)
		return;
	free(s->maglev);
	free(s->sticky);
	free(s);
}

/* Recomputes the set picks choose from after a usability change. */
static void
sched_update(struct sched *s)
{
	uint32_t active;

	if (s->usable != 0)
		s->good = s->usable;
	active = s->usable != 0 ? s->usable : s->good;
	if (active != s->active) {
		/* A fresh smooth-wrr round: the old credits were earned
		 * against a different total. */
		memset(s->wrr_cur, 0, sizeof(s->wrr_cur));
		s->active = active;
	}
}

void
sched_set_usable(struct sched *s, size_t provider, bool usable)
{
	if (provider >= s->n)
		return;
	if (usable && (s->eligible & (1u << provider)))
		s->usable |= 1u << provider;
	else
		s->usable &= ~(1u << provider);
	sched_update(s);
}

bool
sched_usable(const struct sched *s, size_t provider)
{
	return provider < s->n && (s->usable & (1u << provider)) != 0;
}

bool
sched_degraded(const struct sched *s)
{
	return s->usable == 0;
}

size_t
sched_sticky_count(const struct sched *s)
{
	return s->sticky_count;
}

static size_t
sched_addr_len(uint8_t family)
{
	return family == AF_INET ? 4 : 16;
}

/* nginx's smooth weighted round-robin: every member earns its weight each
 * pick, the richest wins and pays the total.  Over sum(weights) picks each
 * member is chosen exactly weight times, interleaved rather than bunched. */
static size_t
sched_wrr(struct sched *s)
{
	int64_t total = 0;
	size_t i, best = s->n;

	for (i = 0; i < s->n; i++) {
		if (!(s->active & (1u << i)))
			continue;
		s->wrr_cur[i] += s->weight[i];
		total += s->weight[i];
		if (best == s->n || s->wrr_cur[i] > s->wrr_cur[best])
			best = i;
	}
	s->wrr_cur[best] -= total;
	return best;
}

static size_t
sched_wlc(struct sched *s, const uint64_t *flows)
{
	size_t k, i, best = s->n;

	/* flows[i] / weight[i] compared by cross-multiplication: exact, and
	 * no overflow while counts stay below 2^54 (weights <= 1000).  Ties
	 * go to the first candidate after the previous winner, so that equal
	 * providers share new flows evenly instead of the lowest index
	 * taking every tie. */
	for (k = 0; k < s->n; k++) {
		i = (s->wlc_next + k) % s->n;
		if (!(s->active & (1u << i)))
			continue;
		if (best == s->n ||
		    flows[i] * s->weight[best] < flows[best] * s->weight[i])
			best = i;
	}
	s->wlc_next = (best + 1) % s->n;
	return best;
}

/*
 * Weighted rendezvous hashing: each provider scores w / -ln(u) with u a
 * uniform (0,1) draw from hash(source, provider); the highest score wins.
 * A provider wins with probability w / sum(w), and removing one moves
 * only the hosts it had.  XXX: log() may differ in the last bit between
 * libm versions, so two nodes with different libcs could split a near-tie
 * differently; nothing requires source-hash to agree across nodes (maglev
 * is the algorithm that does, and it uses integers only).
 */
static size_t
sched_source_hash(const struct sched *s, const struct sched_tuple *t)
{
	uint8_t key[17];
	uint64_t h, x;
	double u, score, best_score = 0;
	size_t i, len = sched_addr_len(t->family), best = s->n;

	key[0] = t->family;
	memcpy(key + 1, t->src, len);
	h = hash64(key, len + 1, SCHED_SEED_SOURCE);
	for (i = 0; i < s->n; i++) {
		if (!(s->active & (1u << i)))
			continue;
		x = hash64_mix(h ^ s->name_hash[i]);
		u = ((double)(x >> 11) + 0.5) / 9007199254740992.0;	/* 2^53 */
		score = (double)s->weight[i] / -log(u);
		if (best == s->n || score > best_score) {
			best = i;
			best_score = score;
		}
	}
	return best;
}

/*
 * Fills the Maglev table for the active set.  Each provider walks its own
 * permutation of the table (offset + j * skip mod a prime) and claims the
 * next free entry when it is its turn.  Weights decide the turns: in pass
 * p a provider of weight w takes floor((p+1)w/wmax) - floor(pw/wmax)
 * entries (0 or 1), so shares converge to w / sum(w).
 */
static void
sched_maglev_build(struct sched *s)
{
	uint64_t pos[CFG_MAX_PROVIDERS];
	unsigned wmax = 0;
	size_t k, i, filled = 0;
	uint64_t p;
	unsigned turns;

	memset(s->maglev, 0xff, SCHED_MAGLEV_SIZE);
	for (i = 0; i < s->n; i++) {
		pos[i] = s->offset[i];
		if ((s->active & (1u << i)) && s->weight[i] > wmax)
			wmax = s->weight[i];
	}
	for (p = 0; filled < SCHED_MAGLEV_SIZE; p++) {
		for (k = 0; k < s->n && filled < SCHED_MAGLEV_SIZE; k++) {
			i = s->by_name[k];
			if (!(s->active & (1u << i)))
				continue;
			turns = (unsigned)((p + 1) * s->weight[i] / wmax -
			    p * s->weight[i] / wmax);
			if (turns == 0)
				continue;
			while (s->maglev[pos[i]] != 0xff)
				pos[i] = (pos[i] + s->skip[i]) % SCHED_MAGLEV_SIZE;
			s->maglev[pos[i]] = (uint8_t)i;
			pos[i] = (pos[i] + s->skip[i]) % SCHED_MAGLEV_SIZE;
			filled++;
		}
	}
	s->maglev_set = s->active;
}

static size_t
sched_maglev(struct sched *s, const struct sched_tuple *t)
{
	struct flow_key k;

	if (s->maglev_set != s->active)
		sched_maglev_build(s);
	/* The tuple is hashed as a flow key: one canonical tuple hash for
	 * the whole daemon and its peer. */
	memset(&k, 0, sizeof(k));
	memcpy(k.src, t->src, sizeof(k.src));
	memcpy(k.dst, t->dst, sizeof(k.dst));
	k.sport = t->sport;
	k.dport = t->dport;
	k.family = t->family;
	k.proto = t->proto;
	return s->maglev[flow_key_hash(&k) % SCHED_MAGLEV_SIZE];
}

static size_t
sched_algorithm(struct sched *s, const struct sched_tuple *t,
    const uint64_t *flows)
{
	switch (s->alg) {
	case CFG_ALG_WLC:
		if (flows != NULL)
			return sched_wlc(s, flows);
		break;
	case CFG_ALG_SOURCE_HASH:
		return sched_source_hash(s, t);
	case CFG_ALG_MAGLEV:
		return sched_maglev(s, t);
	case CFG_ALG_WRR:
		break;
	}
	return sched_wrr(s);
}

/* The host's sticky entry, or NULL with *slot the entry to (re)use. */
static struct sched_sticky *
sched_sticky_find(struct sched *s, const struct sched_tuple *t, int64_t now_ms,
    struct sched_sticky **slot)
{
	size_t len = sched_addr_len(t->family), b, i;
	uint8_t key[17];
	struct sched_sticky *e, *victim = NULL, *empty = NULL;

	key[0] = t->family;
	memcpy(key + 1, t->src, len);
	b = (size_t)(hash64(key, len + 1, SCHED_SEED_STICKY) %
	    (SCHED_STICKY_SIZE / SCHED_STICKY_WAYS)) * SCHED_STICKY_WAYS;
	for (i = 0; i < SCHED_STICKY_WAYS; i++) {
		e = &s->sticky[b + i];
		if (e->family == 0) {
			if (empty == NULL)
				empty = e;
			continue;
		}
		if (e->family == t->family && memcmp(e->addr, t->src, len) == 0)
			return e;
		/* Expired entries go first, then the least recently seen. */
		if (now_ms - e->seen >= (int64_t)s->sticky_ms && empty == NULL)
			empty = e;
		if (victim == NULL || e->seen < victim->seen)
			victim = e;
	}
	*slot = empty != NULL ? empty : victim;
	return NULL;
}

size_t
sched_pick(struct sched *s, const struct sched_tuple *t,
    const uint64_t *flows_per_provider, int64_t now_ms)
{
	struct sched_sticky *e, *slot = NULL;
	size_t p;

	/* family 0 marks a free sticky entry, so such a tuple is not kept. */
	if (s->sticky == NULL || t->family == 0)
		return sched_algorithm(s, t, flows_per_provider);
	e = sched_sticky_find(s, t, now_ms, &slot);
	if (e != NULL && now_ms - e->seen < (int64_t)s->sticky_ms &&
	    (s->usable & (1u << e->provider))) {
		e->seen = now_ms;
		return e->provider;
	}
	p = sched_algorithm(s, t, flows_per_provider);
	/* A degraded pick is a guess, not an affinity worth keeping. */
	if (sched_degraded(s)) {
		if (e != NULL) {
			e->family = 0;
			s->sticky_count--;
		}
		return p;
	}
	if (e == NULL) {
		e = slot;
		if (e->family == 0)
			s->sticky_count++;
		e->family = t->family;
		memset(e->addr, 0, sizeof(e->addr));
		memcpy(e->addr, t->src, sched_addr_len(t->family));
	}
	e->provider = (uint8_t)p;
	e->seen = now_ms;
	return p;
}
