/*
 * The table is two arrays:
 *
 *   ent[]   the flows themselves, dense: ent[0 .. count-1], fixed-size
 *           records, grown by doubling (realloc) up to max_flows;
 *   slot[]  an open-addressed index (linear probing, power-of-two size,
 *           load <= 3/4) of 8-byte slots: dense position + 1 (0 = empty)
 *           and the low 32 bits of the key's hash.
 *
 * Why not the records themselves in the open-addressed table: the table's
 * slack (between 1/4 and 5/8 of it empty, because it doubles) would then
 * cost 72 bytes per empty slot.  Here an empty slot costs 8 bytes and the
 * dense array's unused tail is never touched, so it is not resident; a
 * flow costs 72 + 11..22 bytes of RSS whatever the count.  The stored hash
 * bits let a probe skip non-matching slots without touching ent[], and let
 * the index be rebuilt on growth without rehashing any key.
 *
 * Deletion moves the last record into the hole (one slot update) and
 * closes the gap in the index by backward shift, so there are no
 * tombstones and probe lengths never degrade with churn.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "flows.h"
#include "hash.h"

#define FLOWS_DEFAULT_MAX	(4u * 1024 * 1024)
/* Slot positions are 32-bit and the stored hash is 32 bits wide, which
 * covers an index of up to 2^32 slots: 2^30 flows leaves room. */
#define FLOWS_LIMIT		(1u << 30)
#define FLOWS_INITIAL		1024
#define FLOWS_SEED		0x75706c696e6b6431ULL	/* fixed: the peer hashes too */

struct flows_slot {
	uint32_t pos;		/* dense position + 1; 0 marks an empty slot */
	uint32_t hash;		/* low bits of flow_key_hash() */
};

struct flows {
	struct flow *ent;
	size_t count;
	size_t cap;		/* records allocated in ent */
	size_t max;
	struct flows_slot *slot;
	size_t nslots;		/* power of two */
	uint64_t prov[FLOWS_MAX_PROVIDERS];
	size_t origin[2];
};

static const char *const flows_l4names[] = {
	[FLOW_L4_NONE] = "NONE",
	[FLOW_L4_SYN_SENT] = "SYN_SENT",
	[FLOW_L4_SYN_RECV] = "SYN_RECV",
	[FLOW_L4_ESTABLISHED] = "ESTABLISHED",
	[FLOW_L4_FIN_WAIT] = "FIN_WAIT",
	[FLOW_L4_CLOSE_WAIT] = "CLOSE_WAIT",
	[FLOW_L4_LAST_ACK] = "LAST_ACK",
	[FLOW_L4_TIME_WAIT] = "TIME_WAIT",
	[FLOW_L4_CLOSE] = "CLOSE",
};

const char *
flow_l4state_name(enum flow_l4state s)
{
	if ((size_t)s >= sizeof(flows_l4names) / sizeof(flows_l4names[0]))
		return "UNKNOWN";
	return flows_l4names[s];
}

uint64_t
flow_key_hash(const struct flow_key *key)
{
	uint8_t buf[38];

	/* A fixed serialisation (ports little-endian) rather than the struct's
	 * bytes, so that the value does not depend on the host's byte order
	 * or on the struct's layout. */
	memcpy(buf, key->src, 16);
	memcpy(buf + 16, key->dst, 16);
	buf[32] = key->sport & 0xff;
	buf[33] = key->sport >> 8;
	buf[34] = key->dport & 0xff;
	buf[35] = key->dport >> 8;
	buf[36] = key->family;
	buf[37] = key->proto;
	return hash64(buf, sizeof(buf), FLOWS_SEED);
}

static int
flows_key_eq(const struct flow_key *a, const struct flow_key *b)
{
	return memcmp(a->src, b->src, sizeof(a->src)) == 0 &&
	    memcmp(a->dst, b->dst, sizeof(a->dst)) == 0 &&
	    a->sport == b->sport && a->dport == b->dport &&
	    a->family == b->family && a->proto == b->proto;
}

struct flows *
flows_create(size_t max_flows)
{
	struct flows *ft;

	if (max_flows == 0)
		max_flows = FLOWS_DEFAULT_MAX;
	if (max_flows > FLOWS_LIMIT) {
		errno = EINVAL;
		return NULL;
	}
	if ((ft = calloc(1, sizeof(*ft))) == NULL)
		return NULL;
	ft->max = max_flows;
	ft->cap = max_flows < FLOWS_INITIAL ? max_flows : FLOWS_INITIAL;
	ft->nslots = 2 * FLOWS_INITIAL;
	ft->ent = calloc(ft->cap, sizeof(*ft->ent));
	ft->slot = calloc(ft->nslots, sizeof(*ft->slot));
	if (ft->ent == NULL || ft->slot == NULL) {
		flows_destroy(ft);
		errno = ENOMEM;
		return NULL;
	}
	return ft;
}

void
flows_destroy(struct flows *ft)
{
	if (ft == NULL)
		return;
	free(ft->ent);
	free(ft->slot);
	free(ft);
}

/*
 * Slot holding `key`, or (when absent) the empty slot where it would go,
 * with *found saying which.
 */
static size_t
flows_find(const struct flows *ft, const struct flow_key *key, uint32_t h,
    int *found)
{
	size_t mask = ft->nslots - 1, i = h & mask;
	const struct flows_slot *s;

	for (;;) {
		s = &ft->slot[i];
		if (s->pos == 0) {
			*found = 0;
			return i;
		}
		if (s->hash == h && flows_key_eq(&ft->ent[s->pos - 1].key, key)) {
			*found = 1;
			return i;
		}
		i = (i + 1) & mask;
	}
}

/* Slot that points at dense position `pos` (which must be indexed). */
static size_t
flows_slot_of(const struct flows *ft, size_t pos)
{
	size_t mask = ft->nslots - 1;
	uint32_t h = (uint32_t)flow_key_hash(&ft->ent[pos].key);
	size_t i = h & mask;

	while (ft->slot[i].pos != pos + 1)
		i = (i + 1) & mask;
	return i;
}

static int
flows_grow_index(struct flows *ft)
{
	size_t n = ft->nslots * 2, mask = n - 1, i, j;
	struct flows_slot *ns;

	if ((ns = calloc(n, sizeof(*ns))) == NULL)
		return -1;
	for (i = 0; i < ft->nslots; i++) {
		if (ft->slot[i].pos == 0)
			continue;
		j = ft->slot[i].hash & mask;
		while (ns[j].pos != 0)
			j = (j + 1) & mask;
		ns[j] = ft->slot[i];
	}
	free(ft->slot);
	ft->slot = ns;
	ft->nslots = n;
	return 0;
}

static int
flows_grow_records(struct flows *ft)
{
	size_t n = ft->cap * 2;
	struct flow *ne;

	if (n > ft->max)
		n = ft->max;
	/* No zeroing of the new tail: untouched pages stay out of RSS. */
	if ((ne = realloc(ft->ent, n * sizeof(*ne))) == NULL)
		return -1;
	ft->ent = ne;
	ft->cap = n;
	return 0;
}

static void
flows_account(struct flows *ft, const struct flow *f, int64_t d)
{
	ft->prov[f->provider] += (uint64_t)d;
	ft->origin[f->origin] += (size_t)d;
}

const struct flow *
flows_put(struct flows *ft, const struct flow *f, bool *inserted)
{
	uint32_t h;
	size_t i, pos;
	int found;

	if (f->provider >= FLOWS_MAX_PROVIDERS || f->origin > FLOW_PEER) {
		errno = EINVAL;
		return NULL;
	}
	h = (uint32_t)flow_key_hash(&f->key);
	i = flows_find(ft, &f->key, h, &found);
	if (found) {
		pos = ft->slot[i].pos - 1;
		flows_account(ft, &ft->ent[pos], -1);
		ft->ent[pos] = *f;
		flows_account(ft, f, 1);
		*inserted = false;
		return &ft->ent[pos];
	}
	if (ft->count >= ft->max) {
		errno = ENOSPC;
		return NULL;
	}
	/* Both allocations happen before anything changes, so a failure
	 * leaves the table as it was. */
	if (ft->count == ft->cap && flows_grow_records(ft) == -1) {
		errno = ENOMEM;
		return NULL;
	}
	if ((ft->count + 1) * 4 > ft->nslots * 3) {
		if (flows_grow_index(ft) == -1) {
			errno = ENOMEM;
			return NULL;
		}
		i = flows_find(ft, &f->key, h, &found);
	}
	pos = ft->count++;
	ft->ent[pos] = *f;
	ft->slot[i].pos = (uint32_t)(pos + 1);
	ft->slot[i].hash = h;
	flows_account(ft, f, 1);
	*inserted = true;
	return &ft->ent[pos];
}

int
flows_upsert(struct flows *ft, const struct flow *f)
{
	bool inserted;

	if (flows_put(ft, f, &inserted) == NULL)
		return -1;
	return inserted ? 1 : 0;
}

/* Empties slot i and shifts later members of its probe run back. */
static void
flows_unslot(struct flows *ft, size_t i)
{
	size_t mask = ft->nslots - 1, j = i, home;

	for (;;) {
		j = (j + 1) & mask;
		if (ft->slot[j].pos == 0)
			break;
		home = ft->slot[j].hash & mask;
		/* The entry at j may fill the hole at i only if its home is not
		 * in the cyclic range (i, j]; otherwise it would become
		 * unreachable from its home. */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		ft->slot[i] = ft->slot[j];
		i = j;
	}
	ft->slot[i].pos = 0;
	ft->slot[i].hash = 0;
}

/* Removes the flow indexed by slot i. */
static void
flows_remove(struct flows *ft, size_t i)
{
	size_t pos = ft->slot[i].pos - 1, last = ft->count - 1;

	flows_account(ft, &ft->ent[pos], -1);
	flows_unslot(ft, i);
	if (pos != last) {
		ft->slot[flows_slot_of(ft, last)].pos = (uint32_t)(pos + 1);
		ft->ent[pos] = ft->ent[last];
	}
	ft->count--;
}

int
flows_delete(struct flows *ft, const struct flow_key *key, struct flow *old)
{
	uint32_t h = (uint32_t)flow_key_hash(key);
	size_t i;
	int found;

	i = flows_find(ft, key, h, &found);
	if (!found) {
		errno = ENOENT;
		return -1;
	}
	if (old != NULL)
		*old = ft->ent[ft->slot[i].pos - 1];
	flows_remove(ft, i);
	return 0;
}

const struct flow *
flows_lookup(const struct flows *ft, const struct flow_key *key)
{
	uint32_t h = (uint32_t)flow_key_hash(key);
	size_t i;
	int found;

	i = flows_find(ft, key, h, &found);
	return found ? &ft->ent[ft->slot[i].pos - 1] : NULL;
}

void
flows_prefetch(const struct flows *ft, const struct flow_key *key)
{
	uint32_t h = (uint32_t)flow_key_hash(key);

	__builtin_prefetch(&ft->slot[h & (ft->nslots - 1)]);
}

size_t
flows_count(const struct flows *ft)
{
	return ft->count;
}

size_t
flows_capacity(const struct flows *ft)
{
	return ft->max;
}

size_t
flows_count_origin(const struct flows *ft, enum flow_origin origin)
{
	if ((unsigned)origin > FLOW_PEER)
		return 0;
	return ft->origin[origin];
}

uint64_t
flows_count_provider(const struct flows *ft, size_t provider)
{
	if (provider >= FLOWS_MAX_PROVIDERS)
		return 0;
	return ft->prov[provider];
}

const uint64_t *
flows_provider_counts(const struct flows *ft)
{
	return ft->prov;
}

int
flows_foreach(const struct flows *ft, flows_iter_cb cb, void *data)
{
	size_t i;
	int r;

	for (i = 0; i < ft->count; i++)
		if ((r = cb(&ft->ent[i], data)) != 0)
			return r;
	return 0;
}

const struct flow *
flows_at(const struct flows *ft, size_t i)
{
	return i < ft->count ? &ft->ent[i] : NULL;
}

size_t
flows_sweep(struct flows *ft, enum flow_origin origin,
    bool (*keep)(const struct flow *f, void *data), void *data)
{
	size_t cursor = ft->count;

	return flows_sweep_step(ft, &cursor, SIZE_MAX, origin, keep, data);
}

size_t
flows_sweep_step(struct flows *ft, size_t *cursor, size_t budget,
    enum flow_origin origin, bool (*keep)(const struct flow *f, void *data), void *data)
{
	size_t i = *cursor < ft->count ? *cursor : ft->count, n = 0;

	for (; i > 0 && budget > 0; budget--) {
		const struct flow *f = &ft->ent[--i];

		/* A delete moves the last flow, one looked at already, into
		 * position i. */
		if (f->origin == origin && (keep == NULL || !keep(f, data))) {
			flows_remove(ft, flows_slot_of(ft, i));
			n++;
		}
	}
	*cursor = i;
	return n;
}

size_t
flows_adopt(struct flows *ft, enum flow_origin from, enum flow_origin to,
    void (*cb)(const struct flow *f, void *data), void *data)
{
	size_t n = 0;

	if ((unsigned)from > FLOW_PEER || (unsigned)to > FLOW_PEER || from == to)
		return 0;
	for (size_t i = 0; i < ft->count; i++) {
		if (ft->ent[i].origin == from) {
			ft->ent[i].origin = (uint8_t)to;
			n++;
			if (cb != NULL)
				cb(&ft->ent[i], data);
		}
	}
	ft->origin[from] -= n;
	ft->origin[to] += n;
	return n;
}

size_t
flows_memory(const struct flows *ft)
{
	return sizeof(*ft) + ft->cap * sizeof(*ft->ent) +
	    ft->nslots * sizeof(*ft->slot);
}
