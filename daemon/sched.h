/*
 * sched: which provider carries a new connection.
 *
 * Algorithms (ARCHITECTURE.md "balance.algorithm"):
 *   wrr          smooth weighted round-robin (nginx's), exact weight ratios
 *   wlc          fewest active flows per unit of weight (counts from flows)
 *   source-hash  the same internal host goes to the same provider while it
 *                is usable (weighted rendezvous hashing over the source)
 *   maglev       Maglev lookup table over the usable providers, built only
 *                from provider names and weights, so two nodes with the
 *                same config pick the same provider for the same tuple
 * Optional `sticky`: once an internal host got a provider it keeps getting
 * it while that provider is usable and the host was seen within the
 * timeout (bounded table, least recently used entry evicted when full).
 *
 * Only usable providers (health up and not draining) are chosen, and never
 * one that config_provider_balanced() says carries no connections.  When none
 * is usable the scheduler picks from the last set that was usable ("last
 * known good") and sched_degraded() says so: dropping traffic is worse
 * than trying a provider that may have come back.
 *
 * Not thread-safe; one per daemon.
 */
#ifndef UPLINKD_SCHED_H
#define UPLINKD_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct sched;

/* What the scheduler may look at for one new connection. */
struct sched_tuple {
	uint8_t family;		/* AF_INET or AF_INET6 */
	uint8_t proto;		/* IPPROTO_TCP, ... */
	uint16_t sport, dport;	/* host byte order */
	uint8_t src[16], dst[16];	/* IPv4 in the first 4 bytes */
};

/* Takes algorithm, sticky timeout, provider names and weights from cfg;
 * all providers start usable.  NULL with errno on failure. */
struct sched *sched_create(const struct config *cfg);
void sched_destroy(struct sched *s);

void sched_set_usable(struct sched *s, size_t provider, bool usable);
bool sched_usable(const struct sched *s, size_t provider);

/*
 * Picks a provider index for a new connection.  `flows_per_provider` holds
 * the current flow count of each provider (used by wlc; may be NULL for the
 * others).  `now_ms` is a monotonic clock for sticky expiry.
 */
size_t sched_pick(struct sched *s, const struct sched_tuple *t,
    const uint64_t *flows_per_provider, int64_t now_ms);

/* True while no provider is usable and picks come from last known good. */
bool sched_degraded(const struct sched *s);
/* Entries currently in the sticky table. */
size_t sched_sticky_count(const struct sched *s);

#endif
