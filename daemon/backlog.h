/*
 * backlog: the peer's flow changes waiting to be written into this node's
 * kernel table (hot standby), in arrival order.
 *
 * The sync session takes the peer's flows into the flow table at the
 * protocol's speed; the kernel takes them at its create rate, several
 * times slower.  The owner pushes each change here and writes a slice per
 * loop iteration, so a bulk of a million flows neither stalls the loop
 * nor holds the sync channel back.  An entry is a key and what to do;
 * the flow itself is read from the table when the entry is written, so a
 * flow changed twice meanwhile is written as it is then.
 *
 * The ring grows by doubling and a large one is freed when it runs empty.
 * Errors: -1 with errno ENOMEM (the change is not queued: the caller
 * counts it).
 */
#ifndef UPLINKD_BACKLOG_H
#define UPLINKD_BACKLOG_H

#include <stdbool.h>
#include <stddef.h>

#include "flows.h"

enum backlog_op {
	BACKLOG_UPSERT,
	BACKLOG_DELETE,
};

struct backlog;

struct backlog *backlog_create(void);
void backlog_destroy(struct backlog *b);	/* NULL is a no-op */

int backlog_push(struct backlog *b, const struct flow_key *key, enum backlog_op op);
/* The oldest entry into *key and *op; false when empty. */
bool backlog_pop(struct backlog *b, struct flow_key *key, enum backlog_op *op);
size_t backlog_len(const struct backlog *b);
/* Of those, the upserts: flows the kernel lacks or holds in an older state. */
size_t backlog_upserts(const struct backlog *b);

#endif
