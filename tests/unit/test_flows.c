#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "flows.h"
#include "tap.h"

/* xorshift64*: a fixed-seed PRNG so every run does the same operations. */
static uint64_t rng_state = 0x853c49e6748fea9bULL;

static uint64_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/* Flow number n: distinct n give distinct keys (n up to 2^32). */
static struct flow
mkflow(uint32_t n, uint8_t provider, uint8_t origin)
{
	struct flow f;

	memset(&f, 0, sizeof(f));
	f.key.family = AF_INET;
	f.key.proto = IPPROTO_TCP;
	f.key.src[0] = 10;
	f.key.src[1] = (uint8_t)(n >> 24);
	f.key.src[2] = (uint8_t)(n >> 16);
	f.key.src[3] = (uint8_t)(n >> 8);
	f.key.dst[0] = 192;
	f.key.dst[3] = 1;
	f.key.sport = (uint16_t)(1024 + (n & 0xff));
	f.key.dport = 443;
	f.nat_src[0] = 198;
	f.nat_port = (uint16_t)n;
	f.provider = provider;
	f.origin = origin;
	f.l4state = FLOW_L4_ESTABLISHED;
	f.mark = 0x100u * (provider + 1u);
	f.created = n;
	f.updated = n;
	return f;
}

static int
count_cb(const struct flow *f, void *data)
{
	(void)f;
	(*(size_t *)data)++;
	return 0;
}

static int
stop_cb(const struct flow *f, void *data)
{
	(void)f;
	return ++(*(size_t *)data) == 3 ? 42 : 0;
}

static bool
keep_mod(const struct flow *f, void *data)
{
	return f->created % *(const unsigned *)data == 0;
}

static void
test_basic(void)
{
	struct flows *ft = flows_create(0);
	struct flow a = mkflow(1, 0, FLOW_OWN), b = mkflow(2, 1, FLOW_PEER), old;
	const struct flow *p;

	tap_ok(ft != NULL, "create");
	tap_ok(flows_lookup(ft, &a.key) == NULL, "lookup in empty table");
	tap_ok(flows_upsert(ft, &a) == 1, "insert returns 1");
	tap_ok(flows_upsert(ft, &b) == 1, "second insert returns 1");
	p = flows_lookup(ft, &a.key);
	tap_ok(p != NULL && memcmp(p, &a, sizeof(a)) == 0, "lookup finds the record");
	tap_ok(flows_count(ft) == 2, "count 2");
	tap_ok(flows_count_provider(ft, 0) == 1 && flows_count_provider(ft, 1) == 1,
	    "per-provider counts");
	tap_ok(flows_count_origin(ft, FLOW_OWN) == 1 &&
	    flows_count_origin(ft, FLOW_PEER) == 1, "per-origin counts");

	/* Replace moving the flow to provider 1 and origin PEER. */
	a.provider = 1;
	a.origin = FLOW_PEER;
	a.l4state = FLOW_L4_FIN_WAIT;
	tap_ok(flows_upsert(ft, &a) == 0, "replace returns 0");
	p = flows_lookup(ft, &a.key);
	tap_ok(p != NULL && p->provider == 1 && p->l4state == FLOW_L4_FIN_WAIT,
	    "replace updated the record");
	tap_ok(flows_count(ft) == 2, "replace keeps count");
	tap_ok(flows_count_provider(ft, 0) == 0 && flows_count_provider(ft, 1) == 2,
	    "replace moved the provider count");
	tap_ok(flows_provider_counts(ft)[1] == 2, "provider count array");
	tap_ok(flows_count_origin(ft, FLOW_OWN) == 0 &&
	    flows_count_origin(ft, FLOW_PEER) == 2, "replace moved the origin count");

	tap_ok(flows_delete(ft, &a.key, &old) == 0 && memcmp(&old, &a, sizeof(a)) == 0,
	    "delete returns the old record");
	tap_ok(flows_lookup(ft, &a.key) == NULL, "deleted flow is gone");
	tap_ok(flows_delete(ft, &a.key, NULL) == -1 && errno == ENOENT,
	    "delete of a missing key: ENOENT");
	tap_ok(flows_count(ft) == 1 && flows_count_provider(ft, 1) == 1 &&
	    flows_count_origin(ft, FLOW_PEER) == 1, "counts after delete");
	tap_ok(flows_lookup(ft, &b.key) != NULL, "other flow still there");

	b.provider = FLOWS_MAX_PROVIDERS;
	tap_ok(flows_upsert(ft, &b) == -1 && errno == EINVAL, "bad provider: EINVAL");
	tap_ok(flows_count_provider(ft, 99) == 0, "out-of-range provider count is 0");

	tap_ok(strcmp(flow_l4state_name(FLOW_L4_NONE), "NONE") == 0 &&
	    strcmp(flow_l4state_name(FLOW_L4_ESTABLISHED), "ESTABLISHED") == 0 &&
	    strcmp(flow_l4state_name(FLOW_L4_CLOSE), "CLOSE") == 0 &&
	    strcmp(flow_l4state_name(FLOW_L4_TIME_WAIT), "TIME_WAIT") == 0,
	    "l4 state names");
	a = mkflow(7, 0, 0);
	b = mkflow(7, 0, 0);
	tap_ok(flow_key_hash(&a.key) == flow_key_hash(&b.key), "hash: equal keys agree");
	b.key.sport++;
	tap_ok(flow_key_hash(&a.key) != flow_key_hash(&b.key), "hash: port matters");
	tap_diag("flow_key_hash(flow 7) = %016llx, sizeof(struct flow) = %zu",
	    (unsigned long long)flow_key_hash(&a.key), sizeof(struct flow));
	flows_destroy(ft);
	flows_destroy(NULL);
}

static void
test_growth(void)
{
	struct flows *ft = flows_create(0);
	size_t mem0 = flows_memory(ft), i, missing = 0, wrong = 0, n = 0;
	const size_t N = 200000;	/* from 1024 records: eight doublings */
	const struct flow *p;
	struct flow f;

	for (i = 0; i < N; i++) {
		f = mkflow((uint32_t)i, (uint8_t)(i % 3), (uint8_t)(i % 2));
		if (flows_upsert(ft, &f) != 1)
			break;
	}
	tap_ok(i == N && flows_count(ft) == N, "%zu inserts across doublings", N);
	tap_ok(flows_memory(ft) > 8 * mem0, "memory grew (%zu -> %zu bytes)", mem0,
	    flows_memory(ft));
	for (i = 0; i < N; i++) {
		f = mkflow((uint32_t)i, 0, 0);
		flows_prefetch(ft, &f.key);
		p = flows_lookup(ft, &f.key);
		if (p == NULL)
			missing++;
		else if (p->provider != i % 3 || p->created != i)
			wrong++;
	}
	tap_ok(missing == 0 && wrong == 0, "all entries found after growth "
	    "(missing %zu, wrong %zu)", missing, wrong);
	tap_ok(flows_count_provider(ft, 0) == (N + 2) / 3 &&
	    flows_count_provider(ft, 2) == N / 3, "provider counts after growth");
	tap_ok(flows_count_origin(ft, FLOW_OWN) == N / 2, "origin counts after growth");
	flows_foreach(ft, count_cb, &n);
	tap_ok(n == N, "foreach visits every flow");
	n = 0;
	tap_ok(flows_foreach(ft, stop_cb, &n) == 42 && n == 3,
	    "foreach stops on non-zero and returns it");

	/* OWN flows are the even numbers, PEER the odd ones. */
	n = flows_sweep(ft, FLOW_OWN, keep_mod, &(unsigned){ 4 });
	tap_ok(n == N / 4 && flows_count_origin(ft, FLOW_OWN) == N / 4 &&
	    flows_count_origin(ft, FLOW_PEER) == N / 2,
	    "sweep of OWN deletes only the OWN flows keep() rejects");
	n = flows_sweep(ft, FLOW_PEER, keep_mod, &(unsigned){ 2 });
	tap_ok(n == N / 2 && flows_count(ft) == N / 4 &&
	    flows_count_origin(ft, FLOW_PEER) == 0, "sweep of PEER deletes them all");
	for (i = 0, missing = 0; i < N; i++) {
		f = mkflow((uint32_t)i, 0, 0);
		p = flows_lookup(ft, &f.key);
		if ((p == NULL) != (i % 4 != 0))
			missing++;
	}
	tap_ok(missing == 0, "after sweeps exactly the kept flows are found");
	tap_ok(flows_count_provider(ft, 0) + flows_count_provider(ft, 1) +
	    flows_count_provider(ft, 2) == N / 4, "provider counts after sweep");
	n = flows_sweep(ft, FLOW_OWN, NULL, NULL);
	tap_ok(n == N / 4 && flows_count(ft) == 0 && flows_count_provider(ft, 0) == 0 &&
	    flows_count_provider(ft, 1) == 0 && flows_count_provider(ft, 2) == 0,
	    "sweep with keep == NULL deletes all of the origin");
	f = mkflow(5, 1, FLOW_OWN);
	tap_ok(flows_upsert(ft, &f) == 1 && flows_lookup(ft, &f.key) != NULL,
	    "table usable after sweeping empty");
	flows_destroy(ft);
}

/*
 * A sweep in steps while the table changes between them, the way the
 * resync after an overrun runs: flows 0..N-1 are own, keep() keeps the
 * multiples of 3.  Between steps flows are deleted (those kept and those
 * not, which moves the last flow into the holes) and new flows N.. are
 * added (also kept: created % 3 == 0).  At the end every flow that stayed
 * throughout is where keep() says it should be.
 */
static void
test_sweep_steps(void)
{
	enum { N = 30000, STEP = 1000 };
	struct flows *ft = flows_create(0);
	static bool deleted[N];
	size_t cursor, steps = 0, swept = 0, wrong = 0, added = 0;
	struct flow f;
	uint32_t next_del = 5;

	for (uint32_t i = 0; i < N; i++) {
		f = mkflow(i, 0, FLOW_OWN);
		flows_upsert(ft, &f);
	}
	cursor = flows_count(ft);
	while (cursor > 0 && steps < 10 * N) {
		swept += flows_sweep_step(ft, &cursor, STEP, FLOW_OWN, keep_mod, &(unsigned){ 3 });
		steps++;
		/* Changes between steps: two deletes and a (kept) add. */
		for (int k = 0; k < 2 && next_del < N; k++, next_del += 7) {
			f = mkflow(next_del, 0, FLOW_OWN);
			if (flows_delete(ft, &f.key, NULL) == 0)
				deleted[next_del] = true;
		}
		f = mkflow((uint32_t)(N + 3 * added++), 0, FLOW_OWN);
		f.created = 0;
		flows_upsert(ft, &f);
	}
	for (uint32_t i = 0; i < N; i++) {
		bool want = !deleted[i] && i % 3 == 0;

		f = mkflow(i, 0, FLOW_OWN);
		if ((flows_lookup(ft, &f.key) != NULL) != want)
			wrong++;
	}
	for (size_t a = 0; a < added; a++) {
		f = mkflow((uint32_t)(N + 3 * a), 0, FLOW_OWN);
		if (flows_lookup(ft, &f.key) == NULL)
			wrong++;
	}
	tap_ok(cursor == 0 && steps >= N / STEP, "stepwise sweep completes (%zu steps)", steps);
	tap_ok(wrong == 0, "stepwise sweep with deletes and adds between steps: "
	    "%zu flows wrong, %zu swept", wrong, swept);
	tap_ok(flows_count(ft) == flows_count_origin(ft, FLOW_OWN),
	    "origin count agrees with the table (%zu)", flows_count(ft));
	flows_destroy(ft);
}

static void
test_full(void)
{
	struct flows *ft = flows_create(1000);
	struct flow f;
	size_t i;
	int ok = 1;

	for (i = 0; i < 1000; i++) {
		f = mkflow((uint32_t)i, 0, 0);
		ok &= flows_upsert(ft, &f) == 1;
	}
	tap_ok(ok && flows_count(ft) == 1000, "fills to max_flows");
	f = mkflow(1000, 0, 0);
	tap_ok(flows_upsert(ft, &f) == -1 && errno == ENOSPC, "new key at max: ENOSPC");
	f = mkflow(999, 2, 0);
	tap_ok(flows_upsert(ft, &f) == 0, "replace at max still works");
	tap_ok(flows_delete(ft, &f.key, NULL) == 0, "delete at max");
	f = mkflow(1000, 0, 0);
	tap_ok(flows_upsert(ft, &f) == 1, "insert after delete");
	flows_destroy(ft);
	errno = 0;
	tap_ok(flows_create((size_t)1 << 31) == NULL && errno == EINVAL,
	    "absurd max_flows: EINVAL");
}

/*
 * Random inserts, replaces and deletes checked against a plain array
 * indexed by flow number.  A small key space (20 000) makes deletes of
 * present keys frequent, which is what exercises the backward shift.
 */
static void
test_random(void)
{
	enum { KEYS = 20000, OPS = 100000 };
	struct flows *ft = flows_create(0);
	int16_t *ref = malloc(KEYS * sizeof(*ref));	/* provider, -1 absent */
	uint64_t prov[4] = { 0 };
	size_t i, k, count = 0, bad = 0, present = 0;
	const struct flow *p;
	struct flow f;
	int r;

	for (k = 0; k < KEYS; k++)
		ref[k] = -1;
	for (i = 0; i < OPS; i++) {
		k = rng() % KEYS;
		f = mkflow((uint32_t)k, (uint8_t)(rng() % 4), FLOW_OWN);
		if (rng() % 100 < 55) {
			r = flows_upsert(ft, &f);
			if (r != (ref[k] < 0 ? 1 : 0))
				bad++;
			if (ref[k] >= 0)
				prov[ref[k]]--;
			else
				count++;
			ref[k] = f.provider;
			prov[f.provider]++;
		} else {
			r = flows_delete(ft, &f.key, NULL);
			if (r != (ref[k] < 0 ? -1 : 0))
				bad++;
			if (ref[k] >= 0) {
				prov[ref[k]]--;
				count--;
				ref[k] = -1;
			}
		}
		if (i % 10000 == 9999) {
			for (k = 0; k < KEYS; k++) {
				f = mkflow((uint32_t)k, 0, 0);
				p = flows_lookup(ft, &f.key);
				if ((p == NULL) != (ref[k] < 0) ||
				    (p != NULL && p->provider != ref[k]))
					bad++;
			}
		}
	}
	for (k = 0; k < KEYS; k++)
		present += ref[k] >= 0;
	tap_ok(bad == 0, "%d random ops agree with the reference (%zu mismatches)",
	    OPS, bad);
	tap_ok(flows_count(ft) == count && count == present, "count matches reference");
	tap_ok(flows_count_provider(ft, 0) == prov[0] && flows_count_provider(ft, 1) ==
	    prov[1] && flows_count_provider(ft, 2) == prov[2] &&
	    flows_count_provider(ft, 3) == prov[3], "provider counts match reference");
	free(ref);
	flows_destroy(ft);
}

int
main(void)
{
	test_basic();
	test_growth();
	test_sweep_steps();
	test_full();
	test_random();
	return tap_done();
}
