/*
 * bench_flows: insert and lookup rates of the flow table, and what a flow
 * costs in memory, at 100k and 1M flows.  RSS is read from /proc/self/statm
 * before the table is created and after it is filled.
 * Usage: bench_flows [N ...]   (default: 100000 1000000)
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "flows.h"

static long
rss_bytes(void)
{
	FILE *fp = fopen("/proc/self/statm", "r");
	long size = 0, resident = 0;

	if (fp == NULL)
		return -1;
	if (fscanf(fp, "%ld %ld", &size, &resident) != 2)
		resident = -1;
	fclose(fp);
	return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Flow i: 2^16 internal hosts talking to scattered servers. */
static void
mkflow(uint32_t i, struct flow *f)
{
	uint32_t x = i * 2654435761u;

	memset(f, 0, sizeof(*f));
	f->key.family = AF_INET;
	f->key.proto = (i & 7) ? IPPROTO_TCP : IPPROTO_UDP;
	f->key.src[0] = 10;
	f->key.src[2] = (uint8_t)(i >> 8);
	f->key.src[3] = (uint8_t)i;
	f->key.dst[0] = (uint8_t)(x >> 24);
	f->key.dst[1] = (uint8_t)(x >> 16);
	f->key.dst[2] = (uint8_t)(x >> 8);
	f->key.dst[3] = (uint8_t)(i >> 16);
	f->key.sport = (uint16_t)(32768 + (x & 0x7fff));
	f->key.dport = 443;
	f->nat_port = (uint16_t)x;
	f->provider = (uint8_t)(i % 3);
	f->l4state = FLOW_L4_ESTABLISHED;
	f->mark = 0x100;
	f->created = f->updated = i;
}

static int
bench(size_t n)
{
	struct flows *ft;
	struct flow f;
	long rss0, rss1;
	double t0, t1, t2;
	size_t i, found = 0;

	rss0 = rss_bytes();
	if ((ft = flows_create(0)) == NULL) {
		perror("flows_create");
		return -1;
	}
	t0 = now_s();
	for (i = 0; i < n; i++) {
		mkflow((uint32_t)i, &f);
		if (flows_upsert(ft, &f) != 1) {
			perror("flows_upsert");
			flows_destroy(ft);
			return -1;
		}
	}
	t1 = now_s();
	for (i = 0; i < n; i++) {
		mkflow((uint32_t)((i * 7919) % n), &f);
		found += flows_lookup(ft, &f.key) != NULL;
	}
	t2 = now_s();
	rss1 = rss_bytes();
	if (found != n)
		fprintf(stderr, "only %zu of %zu flows found\n", found, n);
	printf("flows=%zu inserts/s: %.0f\n", n, n / (t1 - t0));
	printf("flows=%zu lookups/s: %.0f\n", n, n / (t2 - t1));
	printf("flows=%zu rss bytes/flow: %.1f\n", n, (double)(rss1 - rss0) / n);
	printf("flows=%zu flows_memory bytes/flow: %.1f\n", n,
	    (double)flows_memory(ft) / n);
	flows_destroy(ft);
	return found == n ? 0 : -1;
}

int
main(int argc, char **argv)
{
	int i, rc = 0;

	printf("sizeof(struct flow): %zu\n", sizeof(struct flow));
	if (argc < 2)
		return bench(100000) || bench(1000000) ? 1 : 0;
	for (i = 1; i < argc; i++)
		if (bench(strtoul(argv[i], NULL, 10)) != 0)
			rc = 1;
	return rc;
}
