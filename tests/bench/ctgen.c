/*
 * ctgen: creates N conntrack entries that look like uplinkd's own flows
 * (TCP ESTABLISHED, source-NATed to a provider address, provider mark) in
 * the current network namespace, in batches of ctnetlink messages.  Used by
 * the benchmarks as the event source and as the raw kernel create rate.
 *
 *   ctgen -n N [-b BATCH] [-t TIMEOUT_S] [--marks 0x100,0x200]
 *         [--snat 198.51.100.10,203.0.113.10] [--udp] [--offset K]
 *         [--rate R] [--stamps FILE] [--listen]
 *
 * --rate paces the creation at R entries/s: batch k is sent at
 * t0 + k*BATCH/R (absolute schedule, so a late batch does not shift the
 * rest; use a small BATCH for a steady stream).  --stamps writes one line
 * per batch, "FIRST COUNT T_US": the batch's first entry (0-based, without
 * the offset), its size, and CLOCK_MONOTONIC in microseconds just before
 * the batch was sent.  The kernel emits the entries' NEW events while it
 * processes that sendmsg, so T_US is at or before each entry's event.
 *
 * --listen holds a second socket subscribed to conntrack NEW and DESTROY
 * events (32 MB buffer, never read), as a daemon's event socket is: with
 * a listener the kernel builds an event message for every entry created,
 * which costs the creates their share (tests/bench/bench_ha.sh).
 *
 * Entry i: 10.64.0.0+i:40000+(i%20000) -> 192.0.2.10:(1000+i/60000), SNAT
 * to provider (i % providers) port 1024+(i%60000), so reply tuples never
 * collide.  Prints one line: "ctgen n=... created=... exists=... failed=...
 * seconds=... rate=...".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <linux/netfilter/nfnetlink.h>

#include <libmnl/libmnl.h>

#include "ct.h"
#include "ev.h"

#define CTGEN_MAX_PROVIDERS 8

static int
parse_list_u32(char *s, uint32_t *out, int max)
{
	int n = 0;

	for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
		out[n++] = (uint32_t)strtoul(tok, NULL, 0);
	return n;
}

static int
parse_list_addr(char *s, struct netaddr *out, int max)
{
	int n = 0;

	for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
		if (netaddr_parse(tok, &out[n++]) == -1) {
			fprintf(stderr, "ctgen: bad address \"%s\"\n", tok);
			exit(2);
		}
	return n;
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "marks", required_argument, NULL, 'm' },
		{ "snat", required_argument, NULL, 's' },
		{ "udp", no_argument, NULL, 'u' },
		{ "offset", required_argument, NULL, 'o' },
		{ "rate", required_argument, NULL, 'r' },
		{ "stamps", required_argument, NULL, 'S' },
		{ "listen", no_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	uint32_t marks[CTGEN_MAX_PROVIDERS] = { 0x100, 0x200 };
	struct netaddr snat[CTGEN_MAX_PROVIDERS];
	int nmarks = 2, nsnat = 2, ch, udp = 0, listen = 0;
	unsigned long n = 1000, batch = 256, timeout = 600, offset = 0;
	unsigned long created = 0, exists = 0, failed = 0;
	struct mnl_socket *nl, *listener = NULL;
	static char buf[256 * 1024], rbuf[256 * 1024];
	int64_t t0, t1;
	unsigned portid;
	int rcvbuf = 8 << 20;
	double rate = 0;
	const char *stamps_path = NULL;
	FILE *stamps = NULL;

	netaddr_parse("198.51.100.10", &snat[0]);
	netaddr_parse("203.0.113.10", &snat[1]);
	while ((ch = getopt_long(argc, argv, "n:b:t:", opts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			n = strtoul(optarg, NULL, 0);
			break;
		case 'b':
			batch = strtoul(optarg, NULL, 0);
			break;
		case 't':
			timeout = strtoul(optarg, NULL, 0);
			break;
		case 'm':
			nmarks = parse_list_u32(optarg, marks, CTGEN_MAX_PROVIDERS);
			break;
		case 's':
			nsnat = parse_list_addr(optarg, snat, CTGEN_MAX_PROVIDERS);
			break;
		case 'u':
			udp = 1;
			break;
		case 'o':
			offset = strtoul(optarg, NULL, 0);
			break;
		case 'r':
			rate = strtod(optarg, NULL);
			break;
		case 'S':
			stamps_path = optarg;
			break;
		case 'l':
			listen = 1;
			break;
		default:
			fprintf(stderr, "usage: ctgen -n N [-b BATCH] [-t TIMEOUT] [--marks LIST] "
			    "[--snat LIST] [--udp] [--offset K] [--rate R] [--stamps FILE] "
			    "[--listen]\n");
			return 2;
		}
	}
	if (batch == 0 || batch > 400 || nmarks == 0 || nsnat < nmarks || rate < 0) {
		fprintf(stderr, "ctgen: batch must be 1..400, the rate >= 0, and every mark "
		    "needs an SNAT address\n");
		return 2;
	}
	if (stamps_path != NULL && (stamps = fopen(stamps_path, "w")) == NULL) {
		fprintf(stderr, "ctgen: %s: %s\n", stamps_path, strerror(errno));
		return 1;
	}
	if ((nl = mnl_socket_open(NETLINK_NETFILTER)) == NULL ||
	    mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		perror("ctgen: netlink");
		return 1;
	}
	setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	if (listen) {
		int evbuf = 32 << 20;

		if ((listener = mnl_socket_open(NETLINK_NETFILTER)) == NULL ||
		    mnl_socket_bind(listener, NF_NETLINK_CONNTRACK_NEW |
		    NF_NETLINK_CONNTRACK_DESTROY, MNL_SOCKET_AUTOPID) < 0) {
			perror("ctgen: event listener");
			return 1;
		}
		setsockopt(mnl_socket_get_fd(listener), SOL_SOCKET, SO_RCVBUFFORCE, &evbuf,
		    sizeof(evbuf));
	}
	portid = mnl_socket_get_portid(nl);
	t0 = ev_clock_us();
	for (unsigned long i = 0; i < n;) {
		size_t len = 0;
		unsigned long first = i, acks = 0, want;
		int64_t sent_us;

		if (rate > 0) {
			int64_t due = t0 + (int64_t)((double)i * 1e6 / rate);
			struct timespec ts = { .tv_sec = due / 1000000,
			    .tv_nsec = (due % 1000000) * 1000 };

			/* Absolute: behind schedule means no sleep at all. */
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
		}
		for (; i < n && i - first < batch; i++) {
			unsigned long k = i + offset;
			struct flow f = { 0 };
			uint32_t src = htonl(0x0a400000u + (uint32_t)k);
			uint32_t dst = htonl(0xc000020au);
			int p = (int)(k % (unsigned long)nmarks), w;

			f.key.family = AF_INET;
			f.key.proto = udp ? IPPROTO_UDP : IPPROTO_TCP;
			memcpy(f.key.src, &src, 4);
			memcpy(f.key.dst, &dst, 4);
			f.key.sport = (uint16_t)(40000 + k % 20000);
			f.key.dport = (uint16_t)(1000 + k / 60000);
			memcpy(f.nat_src, snat[p].a, 4);
			f.nat_port = (uint16_t)(1024 + k % 60000);
			f.mark = marks[p];
			w = ct_put_msg(buf + len, sizeof(buf) - len, &f, (uint32_t)timeout,
			    (uint32_t)i, CT_MSG_CREATE);
			if (w < 0) {
				perror("ctgen: building message");
				return 1;
			}
			/* Every create acknowledged, as in the anchor's ctgen. */
			((struct nlmsghdr *)(void *)(buf + len))->nlmsg_flags |= NLM_F_ACK;
			len += (size_t)w;
		}
		want = i - first;
		sent_us = ev_clock_us();
		if (mnl_socket_sendto(nl, buf, len) < 0) {
			perror("ctgen: send");
			return 1;
		}
		if (stamps != NULL)
			fprintf(stamps, "%lu %lu %lld\n", first, want, (long long)sent_us);
		while (acks < want) {
			ssize_t r = mnl_socket_recvfrom(nl, rbuf, sizeof(rbuf));
			int rl = (int)r;

			if (r < 0) {
				perror("ctgen: recv");
				return 1;
			}
			for (const struct nlmsghdr *h = (const void *)rbuf; mnl_nlmsg_ok(h, rl);
			    h = mnl_nlmsg_next(h, &rl)) {
				const struct nlmsgerr *e;

				if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_pid != portid)
					continue;
				e = mnl_nlmsg_get_payload(h);
				acks++;
				if (e->error == 0)
					created++;
				else if (e->error == -EEXIST)
					exists++;
				else {
					if (failed++ == 0)
						fprintf(stderr, "ctgen: create: %s\n", strerror(-e->error));
				}
			}
		}
	}
	t1 = ev_clock_us();
	printf("ctgen n=%lu created=%lu exists=%lu failed=%lu seconds=%.3f rate=%.0f\n", n, created,
	    exists, failed, (double)(t1 - t0) / 1e6,
	    (double)n / ((double)(t1 - t0) / 1e6 + 1e-9));
	mnl_socket_close(nl);
	if (listener != NULL)
		mnl_socket_close(listener);
	if (stamps != NULL && fclose(stamps) == EOF) {
		fprintf(stderr, "ctgen: %s: %s\n", stamps_path, strerror(errno));
		return 1;
	}
	return failed ? 1 : 0;
}
