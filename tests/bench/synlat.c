/*
 * synlat: how long a gateway holds the first packet of each TCP connection,
 * measured on the gateway itself.  It timestamps every SYN as it arrives on
 * the ingress interface and again as it leaves through an egress interface
 * (the kernel's packet-socket timestamps, both on this host's clock), pairs
 * them by sequence number (NAT leaves it alone) and prints the distribution.
 * Unlike a client's connect time, this leaves out the end hosts and their
 * wake-ups: it is the gateway's forwarding delay, queue included.
 *
 *   synlat --in IFNAME --out IFNAME[,IFNAME...] --count N [--timeout S]
 *
 * Exits after N pairs, or after S seconds (default 120), or on SIGTERM or
 * SIGINT, and prints one line:
 * "synlat pairs=... unmatched=... p50_us=... p99_us=... max_us=...".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SYNLAT_MAX_OUT 8
#define SYNLAT_PENDING 256	/* SYNs seen coming in, not yet going out */

struct synlat_pending {
	uint32_t seq;
	bool used;
	int64_t ns;
};

static volatile sig_atomic_t synlat_stop;

static void
synlat_on_signal(int sig)
{
	(void)sig;
	synlat_stop = 1;
}

/* Accepts IPv4 TCP segments with only SYN set, first fragments only. */
static int
synlat_attach_filter(int fd)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 7),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 5),
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 3, 0),
		BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),
		BPF_STMT(BPF_LD | BPF_B | BPF_IND, 13),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, 0),
		BPF_STMT(BPF_RET | BPF_K, 128),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };

	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
}

static int
synlat_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static double
synlat_pct(const int64_t *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);

	return n ? (double)v[i] / 1000.0 : 0.0;
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	static struct synlat_pending pending[SYNLAT_PENDING];
	unsigned in_if = 0, out_if[SYNLAT_MAX_OUT], nout = 0;
	unsigned long count = 0, timeout_s = 120, unmatched = 0;
	size_t next = 0, npairs = 0;
	int64_t *lat;
	time_t deadline;
	int fd, ch, on = 1;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'i':
			if ((in_if = if_nametoindex(optarg)) == 0) {
				fprintf(stderr, "synlat: no interface %s\n", optarg);
				return 1;
			}
			break;
		case 'o':
			for (char *name = strtok(optarg, ","); name; name = strtok(NULL, ",")) {
				if (nout == SYNLAT_MAX_OUT ||
				    (out_if[nout++] = if_nametoindex(name)) == 0) {
					fprintf(stderr, "synlat: no interface %s (or more than %d)\n",
					    name, SYNLAT_MAX_OUT);
					return 1;
				}
			}
			break;
		case 'n':
			count = strtoul(optarg, NULL, 10);
			break;
		case 't':
			timeout_s = strtoul(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (in_if == 0 || nout == 0 || count == 0)
		goto usage;
	if ((lat = calloc(count, sizeof(*lat))) == NULL)
		return 1;
	/* ETH_P_ALL: a socket for one protocol sees only what comes in. */
	fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (fd == -1 || synlat_attach_filter(fd) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) == -1) {
		perror("synlat: packet socket");
		return 1;
	}
	signal(SIGTERM, synlat_on_signal);
	signal(SIGINT, synlat_on_signal);
	/* Tells a script that the socket is open. */
	printf("synlat ready\n");
	fflush(stdout);
	deadline = time(NULL) + (time_t)timeout_s;
	while (!synlat_stop && npairs < count && time(NULL) < deadline) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		uint8_t pkt[128];
		char ctl[CMSG_SPACE(sizeof(struct timespec))];
		struct sockaddr_ll sll;
		struct iovec iov = { pkt, sizeof(pkt) };
		struct msghdr msg = { &sll, sizeof(sll), &iov, 1, ctl, sizeof(ctl), 0 };
		struct cmsghdr *c;
		int64_t ns = -1;
		uint32_t seq;
		ssize_t n;
		size_t ihl;
		bool out = false;

		if (poll(&pfd, 1, 200) <= 0)
			continue;
		if ((n = recvmsg(fd, &msg, MSG_DONTWAIT)) < 0)
			continue;
		for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
				struct timespec ts;

				memcpy(&ts, CMSG_DATA(c), sizeof(ts));
				ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
			}
		}
		ihl = (size_t)(pkt[0] & 0x0f) * 4;
		if (ns < 0 || (size_t)n < ihl + 8)
			continue;
		memcpy(&seq, pkt + ihl + 4, sizeof(seq));
		for (unsigned k = 0; k < nout; k++)
			out |= (unsigned)sll.sll_ifindex == out_if[k];
		if ((unsigned)sll.sll_ifindex == in_if && sll.sll_pkttype != PACKET_OUTGOING) {
			/* A retransmission keeps the first arrival. */
			bool known = false;

			for (size_t k = 0; k < SYNLAT_PENDING && !known; k++)
				known = pending[k].used && pending[k].seq == seq;
			if (known)
				continue;
			unmatched += pending[next].used;
			pending[next] = (struct synlat_pending){ seq, true, ns };
			next = (next + 1) % SYNLAT_PENDING;
		} else if (out && sll.sll_pkttype == PACKET_OUTGOING) {
			for (size_t k = 0; k < SYNLAT_PENDING; k++) {
				if (pending[k].used && pending[k].seq == seq) {
					lat[npairs++] = ns - pending[k].ns;
					pending[k].used = false;
					break;
				}
			}
		}
	}
	for (size_t k = 0; k < SYNLAT_PENDING; k++)
		unmatched += pending[k].used;
	qsort(lat, npairs, sizeof(*lat), synlat_cmp);
	printf("synlat pairs=%zu unmatched=%lu p50_us=%.1f p99_us=%.1f max_us=%.1f\n", npairs,
	    unmatched, synlat_pct(lat, npairs, 0.50), synlat_pct(lat, npairs, 0.99),
	    npairs ? (double)lat[npairs - 1] / 1000.0 : 0.0);
	free(lat);
	close(fd);
	return 0;
usage:
	fprintf(stderr, "usage: synlat --in IFNAME --out IFNAME[,IFNAME...] --count N "
	    "[--timeout SECONDS]\n");
	return 2;
}
