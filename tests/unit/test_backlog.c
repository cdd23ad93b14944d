/*
 * test_backlog: the hot standby's queue of kernel writes keeps arrival
 * order through growth and wrap-around, and gives its memory back.
 */
#include <string.h>

#include "backlog.h"
#include "tap.h"

static struct flow_key
key(unsigned i)
{
	struct flow_key k;

	memset(&k, 0, sizeof(k));
	k.family = 2;
	k.proto = 6;
	k.sport = (uint16_t)i;
	k.dport = (uint16_t)(i >> 16);
	return k;
}

int
main(void)
{
	struct backlog *b = backlog_create();
	struct flow_key k;
	enum backlog_op op;
	unsigned i, next = 0, bad = 0;

	tap_ok(b != NULL && backlog_len(b) == 0 && !backlog_pop(b, &k, &op), "empty at first");
	/* Interleaved: the ring wraps before it grows. */
	for (i = 0; i < 3000; i++) {
		if (backlog_push(b, &(struct flow_key){ 0 }, BACKLOG_UPSERT) == -1)
			bad++;
		(void)backlog_pop(b, &k, &op);
	}
	tap_ok(bad == 0 && backlog_len(b) == 0, "push and pop in turn leave it empty");
	for (i = 0; i < 700; i++)
		backlog_push(b, &(struct flow_key){ 0 }, BACKLOG_DELETE);
	for (i = 0; i < 700; i++)
		backlog_pop(b, &k, &op);
	/* head is mid-ring now: a million entries grow it across the wrap. */
	for (i = 0; i < 1000000; i++) {
		k = key(i);
		if (backlog_push(b, &k, i % 3 ? BACKLOG_UPSERT : BACKLOG_DELETE) == -1)
			bad++;
		if (i % 4 == 0) {
			struct flow_key got;

			backlog_pop(b, &got, &op);
			if (memcmp(&got, &(struct flow_key){ 0 }, sizeof(got)) != 0) {
				struct flow_key want = key(next);

				if (memcmp(&got, &want, sizeof(got)) != 0 ||
				    op != (next % 3 ? BACKLOG_UPSERT : BACKLOG_DELETE))
					bad++;
				next++;
			}
		}
	}
	tap_ok(bad == 0 && backlog_len(b) == 1000000 - 250000, "a million pushed, a quarter "
	    "popped meanwhile: order and ops kept (%zu left)", backlog_len(b));
	{
		size_t want = 0;

		for (i = next; i < 1000000; i++)
			want += i % 3 != 0;
		tap_ok(backlog_upserts(b) == want, "upserts among them counted (%zu of %zu)",
		    backlog_upserts(b), want);
	}
	while (backlog_pop(b, &k, &op)) {
		struct flow_key want = key(next);

		if (memcmp(&k, &want, sizeof(k)) != 0 ||
		    op != (next % 3 ? BACKLOG_UPSERT : BACKLOG_DELETE))
			bad++;
		next++;
	}
	tap_ok(bad == 0 && next == 1000000 && backlog_len(b) == 0 && backlog_upserts(b) == 0,
	    "drained in arrival order (%u)", next);
	tap_ok(backlog_push(b, &k, BACKLOG_UPSERT) == 0 && backlog_len(b) == 1 &&
	    backlog_upserts(b) == 1,
	    "usable again after it gave its ring back");
	backlog_destroy(b);
	backlog_destroy(NULL);
	return tap_done();
}
