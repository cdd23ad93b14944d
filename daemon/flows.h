/*
 * flows: the flow table.  Original tuple -> provider, translated source
 * (NAT address and port), mark, L4 state, timestamps and origin (learned
 * from this node's conntrack, or replicated from the peer).
 *
 * Memory matters: a busy edge holds millions of flows on each node, so
 * entries are fixed-size records in one dense array, found through an
 * open-addressed index of 8-byte slots (no per-entry malloc).  The table grows by doubling up to `max_flows`; past that,
 * upserts of new keys fail with ENOSPC and are counted by the caller.
 *
 * Pointers returned by lookups stay valid only until the next upsert or
 * delete.
 */
#ifndef UPLINKD_FLOWS_H
#define UPLINKD_FLOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLOWS_MAX_PROVIDERS 16

enum flow_origin {
	FLOW_OWN = 0,		/* learned from this node's conntrack */
	FLOW_PEER = 1,		/* replicated from the peer */
};

/* L4 state as far as takeover cares. */
enum flow_l4state {
	FLOW_L4_NONE = 0,	/* UDP, ICMP, ... */
	FLOW_L4_SYN_SENT,
	FLOW_L4_SYN_RECV,
	FLOW_L4_ESTABLISHED,
	FLOW_L4_FIN_WAIT,
	FLOW_L4_CLOSE_WAIT,
	FLOW_L4_LAST_ACK,
	FLOW_L4_TIME_WAIT,
	FLOW_L4_CLOSE,
};

/* The original-direction tuple.  Ports in host byte order. */
struct flow_key {
	uint8_t src[16];
	uint8_t dst[16];
	uint16_t sport;
	uint16_t dport;
	uint8_t family;		/* AF_INET or AF_INET6 */
	uint8_t proto;
};

struct flow {
	struct flow_key key;
	uint8_t nat_src[16];	/* translated source address (same family) */
	uint16_t nat_port;	/* translated source port, host byte order */
	uint8_t provider;	/* index into the config's providers */
	uint8_t l4state;	/* enum flow_l4state */
	uint8_t origin;		/* enum flow_origin */
	uint8_t aux;		/* the table's owner's to use (it sits in what
				 * would be padding); the table ignores it */
	uint32_t mark;
	uint32_t created;	/* seconds, caller's clock */
	uint32_t updated;
};

struct flows;

/* `max_flows` bounds the table (0: 4M).  NULL with errno on failure. */
struct flows *flows_create(size_t max_flows);
void flows_destroy(struct flows *ft);

/*
 * Inserts or replaces the flow with f->key.  Returns 1 when inserted, 0
 * when an existing entry was replaced, -1 with errno ENOSPC (table full)
 * or ENOMEM.  Per-provider counts follow the entry's provider and origin.
 */
int flows_upsert(struct flows *ft, const struct flow *f);
/* The same, returning the stored entry (valid until the table changes)
 * and in *inserted which case it was; NULL with errno. */
const struct flow *flows_put(struct flows *ft, const struct flow *f, bool *inserted);
/* Returns 0, or -1 with errno ENOENT.  The removed entry is copied to
 * *old when old is not NULL. */
int flows_delete(struct flows *ft, const struct flow_key *key, struct flow *old);
const struct flow *flows_lookup(const struct flows *ft, const struct flow_key *key);
/* Starts loading the index slot where a lookup of key begins, so that a
 * run of lookups waits for memory once rather than once each. */
void flows_prefetch(const struct flows *ft, const struct flow_key *key);

size_t flows_count(const struct flows *ft);
/* The most flows the table holds (max_flows of flows_create). */
size_t flows_capacity(const struct flows *ft);
size_t flows_count_origin(const struct flows *ft, enum flow_origin origin);
/* Flows of either origin on this provider. */
uint64_t flows_count_provider(const struct flows *ft, size_t provider);
/* Array of FLOWS_MAX_PROVIDERS counts (both origins), for sched_pick(). */
const uint64_t *flows_provider_counts(const struct flows *ft);

/*
 * Calls cb for each flow until it returns non-zero; returns that value or
 * 0.  The callback must not upsert or delete.
 */
typedef int (*flows_iter_cb)(const struct flow *f, void *data);
int flows_foreach(const struct flows *ft, flows_iter_cb cb, void *data);

/*
 * The flow at dense position i (0 <= i < flows_count()), for iteration that
 * must survive changes between steps.  Walk it downwards: a delete moves
 * the last flow into the hole, so a descending walk never misses a flow
 * that stays in the table (it may see one twice).
 */
const struct flow *flows_at(const struct flows *ft, size_t i);

/* Deletes every flow of `origin` for which keep(f, data) is false; returns
 * how many were deleted.  keep == NULL deletes them all. */
size_t flows_sweep(struct flows *ft, enum flow_origin origin,
    bool (*keep)(const struct flow *f, void *data), void *data);
/* The same over at most `budget` flows, walking down from *cursor (start
 * it at flows_count(); the walk is complete when it reaches 0).  The table
 * may change between steps: every flow that stays in it throughout is
 * looked at; one added meanwhile may not be, one moved by a delete may be
 * looked at twice. */
size_t flows_sweep_step(struct flows *ft, size_t *cursor, size_t budget,
    enum flow_origin origin, bool (*keep)(const struct flow *f, void *data), void *data);

/* Every flow of origin `from` becomes `to` (a takeover adopts the peer's
 * flows; a node that becomes backup hands its own to the peer); cb, when
 * not NULL, sees each changed flow and must not upsert or delete.
 * Returns how many changed. */
size_t flows_adopt(struct flows *ft, enum flow_origin from, enum flow_origin to,
    void (*cb)(const struct flow *f, void *data), void *data);

/* Bytes allocated by the table (for status and the memory benchmark). */
size_t flows_memory(const struct flows *ft);

/* Hash of a key (stable across nodes and runs). */
uint64_t flow_key_hash(const struct flow_key *key);
const char *flow_l4state_name(enum flow_l4state s);

#endif
