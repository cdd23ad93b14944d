#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "sched.h"
#include "tap.h"

#define NPICKS 10000

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static const char *const names[] = { "isp-a", "isp-b", "isp-c", "isp-d" };

/* A config filled by hand: config_load() is not what is tested here. */
static struct config *
mkcfg(enum cfg_algorithm alg, uint32_t sticky_ms, const unsigned *w, size_t n)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	size_t i;

	cfg->nproviders = n;
	cfg->balance.algorithm = alg;
	cfg->balance.sticky_ms = sticky_ms;
	for (i = 0; i < n; i++) {
		strcpy(cfg->providers[i].name, names[i]);	/* short literals */
		cfg->providers[i].weight = w[i];
		cfg->providers[i].source.family = AF_INET;
	}
	return cfg;
}

static struct sched *
mksched(enum cfg_algorithm alg, uint32_t sticky_ms, const unsigned *w, size_t n)
{
	struct config *cfg = mkcfg(alg, sticky_ms, w, n);
	struct sched *s = sched_create(cfg);

	free(cfg);
	return s;
}

static struct sched_tuple
rand_tuple(void)
{
	struct sched_tuple t;
	uint64_t r = rng();

	memset(&t, 0, sizeof(t));
	t.family = AF_INET;
	t.proto = (r & 1) ? IPPROTO_TCP : IPPROTO_UDP;
	t.src[0] = 10;
	t.src[1] = (uint8_t)(r >> 8);
	t.src[2] = (uint8_t)(r >> 16);
	t.src[3] = (uint8_t)(r >> 24);
	r = rng();
	memcpy(t.dst, &r, 4);
	t.sport = (uint16_t)(r >> 32);
	t.dport = (uint16_t)(r >> 48);
	return t;
}

static struct sched_tuple
host_tuple(uint32_t host, uint16_t sport)
{
	struct sched_tuple t;

	memset(&t, 0, sizeof(t));
	t.family = AF_INET;
	t.proto = IPPROTO_TCP;
	t.src[0] = 10;
	t.src[1] = (uint8_t)(host >> 16);
	t.src[2] = (uint8_t)(host >> 8);
	t.src[3] = (uint8_t)host;
	t.dst[0] = 203;
	t.dst[3] = (uint8_t)(sport * 7);
	t.sport = sport;
	t.dport = 443;
	return t;
}

static const char *const algs[] = { "wrr", "wlc", "source-hash", "maglev" };

static void
test_weights(enum cfg_algorithm alg, const unsigned *w, size_t n)
{
	struct sched *s = mksched(alg, 0, w, n);
	uint64_t cnt[CFG_MAX_PROVIDERS] = { 0 };
	struct sched_tuple t;
	unsigned wsum = 0;
	double dev, worst = 0;
	size_t i, p;
	int ok = 1;

	for (i = 0; i < n; i++)
		wsum += w[i];
	for (i = 0; i < NPICKS; i++) {
		t = rand_tuple();
		p = sched_pick(s, &t, cnt, 0);
		if (p >= n) {
			ok = 0;
			break;
		}
		cnt[p]++;	/* for wlc: flows that never end */
	}
	for (i = 0; i < n; i++) {
		dev = (double)cnt[i] / NPICKS - (double)w[i] / wsum;
		if (dev < 0)
			dev = -dev;
		if (dev > worst)
			worst = dev;
	}
	tap_ok(ok && worst <= 0.02, "%s weights %u:%u%s%.0u: shares within 2%% "
	    "(%llu/%llu/%llu, worst %.4f)", algs[alg], w[0], w[1], n > 2 ? ":" : "",
	    n > 2 ? w[2] : 0, (unsigned long long)cnt[0], (unsigned long long)cnt[1],
	    (unsigned long long)cnt[2], worst);
	sched_destroy(s);
}

static void
test_wrr_exact(void)
{
	const unsigned w[] = { 3, 2, 1 };
	struct sched *s = mksched(CFG_ALG_WRR, 0, w, 3);
	struct sched_tuple t = host_tuple(1, 1);
	unsigned cnt[3], cycle, i, bad = 0, run = 0, maxrun = 0;
	size_t p, prev = 9;

	for (cycle = 0; cycle < 50; cycle++) {
		memset(cnt, 0, sizeof(cnt));
		for (i = 0; i < 6; i++) {
			p = sched_pick(s, &t, NULL, 0);
			cnt[p]++;
			run = p == prev ? run + 1 : 1;
			if (run > maxrun)
				maxrun = run;
			prev = p;
		}
		bad += cnt[0] != 3 || cnt[1] != 2 || cnt[2] != 1;
	}
	tap_ok(bad == 0, "wrr 3:2:1 exact in each of 50 cycles of 6 picks");
	tap_ok(maxrun <= 2, "wrr is smooth (longest run of one provider %u)", maxrun);
	sched_destroy(s);
}

static void
test_wlc(void)
{
	const unsigned w[] = { 1, 1, 2 };
	struct sched *s = mksched(CFG_ALG_WLC, 0, w, 3);
	struct sched *r = mksched(CFG_ALG_WRR, 0, w, 3);
	uint64_t cnt[CFG_MAX_PROVIDERS] = { 10, 3, 8 };
	struct sched_tuple t = host_tuple(1, 1);
	size_t i, same = 0;

	tap_ok(sched_pick(s, &t, cnt, 0) == 1, "wlc picks the least loaded per weight");
	cnt[1] = 4;	/* 4/1 == 8/2: a tie, broken after the previous winner */
	tap_ok(sched_pick(s, &t, cnt, 0) == 2, "wlc tie rotates past the last winner");
	for (i = 0; i < 100; i++)
		same += sched_pick(s, &t, NULL, 0) == sched_pick(r, &t, NULL, 0);
	sched_destroy(s);
	s = mksched(CFG_ALG_WLC, 0, w, 3);
	for (i = 0, same = 0; i < 100; i++)
		same += sched_pick(s, &t, NULL, 0) == sched_pick(r, &t, NULL, 0);
	tap_ok(same == 100, "wlc without counts behaves like wrr");
	sched_destroy(s);
	sched_destroy(r);
}

static void
test_unusable(enum cfg_algorithm alg)
{
	const unsigned w[] = { 1, 3, 1 };
	struct sched *s = mksched(alg, 0, w, 3);
	uint64_t cnt[CFG_MAX_PROVIDERS] = { 0 };
	struct sched_tuple t;
	size_t i, p, hits = 0, bad = 0;

	sched_set_usable(s, 1, false);
	tap_ok(!sched_usable(s, 1) && sched_usable(s, 0) && !sched_degraded(s),
	    "%s: provider 1 unusable, not degraded", algs[alg]);
	for (i = 0; i < 5000; i++) {
		t = rand_tuple();
		p = sched_pick(s, &t, cnt, 0);
		cnt[p]++;
		hits += p == 1;
	}
	tap_ok(hits == 0 && cnt[0] > 0 && cnt[2] > 0,
	    "%s: unusable provider never picked", algs[alg]);

	sched_set_usable(s, 0, false);	/* last good set: {2} */
	sched_set_usable(s, 2, false);
	tap_ok(sched_degraded(s), "%s: all unusable: degraded", algs[alg]);
	for (i = 0; i < 1000; i++) {
		t = rand_tuple();
		bad += sched_pick(s, &t, cnt, 0) != 2;
	}
	tap_ok(bad == 0, "%s: degraded picks come from the last known good set",
	    algs[alg]);
	sched_set_usable(s, 0, true);
	for (i = 0, bad = 0; i < 1000; i++) {
		t = rand_tuple();
		bad += sched_pick(s, &t, cnt, 0) != 0;
	}
	tap_ok(!sched_degraded(s) && bad == 0, "%s: recovery ends degraded mode",
	    algs[alg]);
	sched_destroy(s);
}

static void
test_source_hash(void)
{
	enum { HOSTS = 10000 };
	const unsigned w[] = { 1, 1, 1 };
	struct sched *s = mksched(CFG_ALG_SOURCE_HASH, 0, w, 3);
	uint8_t *map = malloc(HOSTS);
	struct sched_tuple t;
	size_t h, i, p, first, varied = 0, moved_other = 0, moved_own = 0, on1 = 0;
	size_t back = 0;

	for (h = 0; h < 100; h++) {
		t = host_tuple((uint32_t)h, 1000);
		first = sched_pick(s, &t, NULL, 0);
		for (i = 0; i < 100; i++) {
			t = host_tuple((uint32_t)h, (uint16_t)(2000 + i));
			t.dport = (uint16_t)rng();
			varied += sched_pick(s, &t, NULL, 0) != first;
		}
	}
	tap_ok(varied == 0, "source-hash: same host, same provider over 10000 picks "
	    "with varying ports and destinations");

	for (h = 0; h < HOSTS; h++) {
		t = host_tuple((uint32_t)h, 1);
		map[h] = (uint8_t)sched_pick(s, &t, NULL, 0);
	}
	sched_set_usable(s, 1, false);
	for (h = 0; h < HOSTS; h++) {
		t = host_tuple((uint32_t)h, 1);
		p = sched_pick(s, &t, NULL, 0);
		if (map[h] == 1) {
			on1++;
			moved_own += p != 1;
		} else
			moved_other += p != map[h];
	}
	tap_ok(moved_other == 0 && moved_own == on1 && on1 > 0,
	    "source-hash: removing a provider moves only its %zu hosts", on1);
	sched_set_usable(s, 1, true);
	for (h = 0; h < HOSTS; h++) {
		t = host_tuple((uint32_t)h, 1);
		back += sched_pick(s, &t, NULL, 0) == map[h];
	}
	tap_ok(back == HOSTS, "source-hash: restoring brings every host back");
	free(map);
	sched_destroy(s);
}

static void
test_maglev(void)
{
	const unsigned w[] = { 3, 2, 1 };
	struct config *cfg = mkcfg(CFG_ALG_MAGLEV, 0, w, 3), *rev;
	struct sched *a = sched_create(cfg), *b = sched_create(cfg), *c;
	struct sched_tuple *tv = malloc(NPICKS * sizeof(*tv));
	uint8_t *map = malloc(NPICKS);
	size_t i, p, agree = 0, agree_rev = 0, others = 0, churn = 0, on1 = 0;
	size_t left1 = 0, back = 0;

	/* The same providers listed in reverse order on the "peer". */
	rev = mkcfg(CFG_ALG_MAGLEV, 0, w, 3);
	for (i = 0; i < 3; i++) {
		strcpy(rev->providers[i].name, cfg->providers[2 - i].name);
		rev->providers[i].weight = cfg->providers[2 - i].weight;
	}
	c = sched_create(rev);
	for (i = 0; i < NPICKS; i++) {
		tv[i] = rand_tuple();
		map[i] = (uint8_t)sched_pick(a, &tv[i], NULL, 0);
		agree += sched_pick(b, &tv[i], NULL, 0) == map[i];
		agree_rev += 2 - sched_pick(c, &tv[i], NULL, 0) == map[i];
	}
	tap_ok(agree == NPICKS, "maglev: two schedulers from equal configs agree "
	    "on %d tuples", NPICKS);
	tap_ok(agree_rev == NPICKS, "maglev: provider order in the config does not "
	    "matter, names do");

	sched_set_usable(a, 1, false);
	for (i = 0; i < NPICKS; i++) {
		p = sched_pick(a, &tv[i], NULL, 0);
		if (map[i] == 1) {
			on1++;
			left1 += p != 1;
		} else {
			others++;
			churn += p != map[i];
		}
	}
	tap_diag("maglev: removing isp-b moved %zu of %zu tuples not on it "
	    "(%.3f%%); it had %zu", churn, others, 100.0 * churn / others, on1);
	tap_ok(left1 == on1 && churn * 100 <= others,
	    "maglev: removal moves the removed provider's tuples, <= 1%% of others");
	sched_set_usable(a, 1, true);
	for (i = 0; i < NPICKS; i++)
		back += sched_pick(a, &tv[i], NULL, 0) == map[i];
	tap_ok(back == NPICKS, "maglev: restoring brings back the original mapping");
	free(tv);
	free(map);
	free(cfg);
	free(rev);
	sched_destroy(a);
	sched_destroy(b);
	sched_destroy(c);
}

static void
test_sticky(void)
{
	const unsigned w[] = { 1, 1 };
	struct sched *s = mksched(CFG_ALG_WRR, 0, w, 2);
	struct sched_tuple a = host_tuple(1, 1000), o;
	size_t i, p0, p, kept = 0;

	tap_ok(sched_pick(s, &a, NULL, 0) != sched_pick(s, &a, NULL, 0) &&
	    sched_sticky_count(s) == 0, "without sticky wrr alternates, table empty");
	sched_destroy(s);

	s = mksched(CFG_ALG_WRR, 1000, w, 2);
	p0 = sched_pick(s, &a, NULL, 0);
	for (i = 0; i < 100; i++) {
		o = host_tuple((uint32_t)(100 + i % 3), (uint16_t)i);
		sched_pick(s, &o, NULL, (int64_t)i * 9);
		a.sport = (uint16_t)(2000 + i);
		kept += sched_pick(s, &a, NULL, (int64_t)i * 9) == p0;
	}
	tap_ok(kept == 100, "sticky: host keeps its provider across picks");
	tap_ok(sched_sticky_count(s) == 4, "sticky: one entry per host (%zu)",
	    sched_sticky_count(s));
	/* Last seen at 891. */
	tap_ok(sched_pick(s, &a, NULL, 891 + 999) == p0, "sticky: still kept just "
	    "before expiry");
	/* Four hosts made four 1:1 wrr picks; one more new host takes p0, so
	 * the algorithm's next answer is the other provider. */
	o = host_tuple(999, 1);
	tap_ok(sched_pick(s, &o, NULL, 1890) == p0, "sticky: a new host follows wrr");
	p = sched_pick(s, &a, NULL, 1890 + 1000);
	tap_ok(p != p0, "sticky: lost after expiry (was %zu, now %zu)", p0, p);
	tap_ok(sched_pick(s, &a, NULL, 2891) == p, "sticky: new provider recorded");
	sched_set_usable(s, p, false);
	tap_ok(sched_pick(s, &a, NULL, 2892) == p0, "sticky: lost when its provider "
	    "becomes unusable");
	sched_set_usable(s, p, true);
	tap_ok(sched_pick(s, &a, NULL, 2893) == p0, "sticky: and stays on the new one");
	tap_ok(sched_sticky_count(s) == 5, "sticky: count unchanged by re-picks");

	for (i = 0; i < 200000; i++) {
		o = host_tuple((uint32_t)(1000 + i), 1);
		sched_pick(s, &o, NULL, 3000);
	}
	tap_ok(sched_sticky_count(s) <= 65536 && sched_sticky_count(s) > 60000,
	    "sticky table bounded (%zu entries after 200000 hosts)",
	    sched_sticky_count(s));
	p = sched_pick(s, &o, NULL, 3001);
	tap_ok(sched_pick(s, &o, NULL, 3002) == p, "sticky: most recent host kept "
	    "when full");
	sched_destroy(s);
}

/* IPv4 connections only are queued and translated: an IPv6 provider
 * never gets one, not even from last known good. */
static void
test_ipv6_provider(enum cfg_algorithm alg)
{
	const unsigned w[] = { 1, 5, 1 };
	struct config *cfg = mkcfg(alg, alg == CFG_ALG_WRR ? 60000 : 0, w, 3);
	struct sched *s;
	uint64_t flows[3] = { 0 };
	int on_v6 = 0, picks[3] = { 0 };

	cfg->providers[1].source.family = AF_INET6;
	s = sched_create(cfg);
	free(cfg);
	for (int i = 0; i < 3000; i++) {
		struct sched_tuple t = rand_tuple();
		size_t p = sched_pick(s, &t, flows, i);

		picks[p]++;
		flows[p]++;
	}
	on_v6 += picks[1];
	sched_set_usable(s, 1, true);
	tap_ok(!sched_usable(s, 1), "%s: an IPv6 provider is never usable", algs[alg]);
	sched_set_usable(s, 0, false);
	sched_set_usable(s, 2, false);
	for (int i = 0; i < 1000; i++) {
		struct sched_tuple t = rand_tuple();

		on_v6 += sched_pick(s, &t, flows, 10000 + i) == 1;
	}
	tap_ok(on_v6 == 0 && picks[0] > 0 && picks[2] > 0 && sched_degraded(s),
	    "%s: IPv6 provider (weight 5 of 7) got no IPv4 connection, also degraded "
	    "(%d/%d/%d, then %d)", algs[alg], picks[0], picks[1], picks[2], on_v6);
	sched_destroy(s);
}

int
main(void)
{
	const unsigned w21[] = { 2, 1 }, w321[] = { 3, 2, 1 };
	struct config *cfg;
	enum cfg_algorithm alg;

	cfg = mkcfg(CFG_ALG_WRR, 0, w21, 0);
	errno = 0;
	tap_ok(sched_create(cfg) == NULL && errno == EINVAL, "no providers: EINVAL");
	free(cfg);
	sched_destroy(NULL);

	for (alg = CFG_ALG_WRR; alg <= CFG_ALG_MAGLEV; alg++) {
		test_weights(alg, w21, 2);
		test_weights(alg, w321, 3);
	}
	test_wrr_exact();
	test_wlc();
	for (alg = CFG_ALG_WRR; alg <= CFG_ALG_MAGLEV; alg++)
		test_unusable(alg);
	test_source_hash();
	test_maglev();
	test_sticky();
	for (alg = CFG_ALG_WRR; alg <= CFG_ALG_MAGLEV; alg++)
		test_ipv6_provider(alg);
	return tap_done();
}
