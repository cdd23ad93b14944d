#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backlog.h"

#define BACKLOG_MIN 1024

struct backlog_item {
	struct flow_key key;
	unsigned char op;
};

struct backlog {
	struct backlog_item *ring;
	size_t cap, head, len;		/* cap: a power of two, or 0 */
	size_t upserts;			/* of len */
};

struct backlog *
backlog_create(void)
{
	return calloc(1, sizeof(struct backlog));
}

void
backlog_destroy(struct backlog *b)
{
	if (b == NULL)
		return;
	free(b->ring);
	free(b);
}

static int
backlog_grow(struct backlog *b)
{
	size_t cap = b->cap ? b->cap * 2 : BACKLOG_MIN, first;
	struct backlog_item *ring;

	if (cap < b->cap || cap > SIZE_MAX / sizeof(*ring)) {
		errno = ENOMEM;
		return -1;
	}
	if ((ring = malloc(cap * sizeof(*ring))) == NULL)
		return -1;
	/* Unwrapped into the new ring, oldest first. */
	first = b->cap - b->head < b->len ? b->cap - b->head : b->len;
	if (b->len > 0) {
		memcpy(ring, b->ring + b->head, first * sizeof(*ring));
		memcpy(ring + first, b->ring, (b->len - first) * sizeof(*ring));
	}
	free(b->ring);
	b->ring = ring;
	b->cap = cap;
	b->head = 0;
	return 0;
}

int
backlog_push(struct backlog *b, const struct flow_key *key, enum backlog_op op)
{
	struct backlog_item *it;

	if (b->len == b->cap && backlog_grow(b) == -1)
		return -1;
	it = &b->ring[(b->head + b->len) & (b->cap - 1)];
	it->key = *key;
	it->op = (unsigned char)op;
	b->len++;
	b->upserts += op == BACKLOG_UPSERT;
	return 0;
}

bool
backlog_pop(struct backlog *b, struct flow_key *key, enum backlog_op *op)
{
	const struct backlog_item *it;

	if (b->len == 0)
		return false;
	it = &b->ring[b->head];
	*key = it->key;
	*op = (enum backlog_op)it->op;
	b->upserts -= *op == BACKLOG_UPSERT;
	b->head = (b->head + 1) & (b->cap - 1);
	/* A bulk's ring is large: give it back once drained. */
	if (--b->len == 0 && b->cap > BACKLOG_MIN) {
		free(b->ring);
		b->ring = NULL;
		b->cap = b->head = 0;
	}
	return true;
}

size_t
backlog_len(const struct backlog *b)
{
	return b->len;
}

size_t
backlog_upserts(const struct backlog *b)
{
	return b->upserts;
}
