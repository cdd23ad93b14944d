/*
 * udpflood: sends datagrams as fast as the kernel takes them, each one a
 * new flow (a fresh source address / destination port pair), to measure
 * how many new flows per second a gateway delivers.
 *
 *   udpflood --to IP --count N [--src-from IP --src-count K] [--port-base P]
 *
 * Flow i goes from source (src-from + i % K) to IP:(port-base + i / K), so
 * N must not exceed K * (65536 - port-base).  Prints one line:
 * "udpflood sent=... seconds=... rate=...".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define UDPFLOOD_MAX_SRC 256
#define UDPFLOOD_BATCH 64

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'n' },
		{ "src-from", required_argument, NULL, 's' },
		{ "src-count", required_argument, NULL, 'k' },
		{ "port-base", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	struct in_addr to = { 0 }, src = { 0 };
	unsigned long count = 10000, nsrc = 1, port_base = 1024, sent = 0;
	int fds[UDPFLOOD_MAX_SRC], ch;
	char payload[32] = "udpflood";
	double t0, t1;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (inet_pton(AF_INET, optarg, &to) != 1)
				goto usage;
			break;
		case 'n':
			count = strtoul(optarg, NULL, 10);
			break;
		case 's':
			if (inet_pton(AF_INET, optarg, &src) != 1)
				goto usage;
			break;
		case 'k':
			nsrc = strtoul(optarg, NULL, 10);
			break;
		case 'p':
			port_base = strtoul(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (to.s_addr == 0 || nsrc == 0 || nsrc > UDPFLOOD_MAX_SRC || port_base == 0 ||
	    port_base > 65535 || count > nsrc * (65536 - port_base))
		goto usage;
	for (unsigned long i = 0; i < nsrc; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		int sndbuf = 4 << 20;

		if ((fds[i] = socket(AF_INET, SOCK_DGRAM, 0)) == -1) {
			perror("udpflood: socket");
			return 1;
		}
		setsockopt(fds[i], SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
		if (src.s_addr) {
			sa.sin_addr.s_addr = htonl(ntohl(src.s_addr) + (uint32_t)i);
			if (bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) == -1) {
				perror("udpflood: bind");
				return 1;
			}
		}
	}
	t0 = now_s();
	/* Rounds of UDPFLOOD_BATCH ports, each source in turn, so that every
	 * (source, port) pair is sent once. */
	for (unsigned long j = 0; sent < count; j += UDPFLOOD_BATCH) {
		for (unsigned long s = 0; s < nsrc && sent < count; s++) {
			struct mmsghdr msgs[UDPFLOOD_BATCH];
			struct sockaddr_in dst[UDPFLOOD_BATCH];
			struct iovec iov = { payload, sizeof(payload) };
			unsigned long n = count - sent < UDPFLOOD_BATCH ? count - sent : UDPFLOOD_BATCH;
			unsigned long done = 0;

			if (port_base + j + n > 65536)
				n = 65536 - port_base - j;
			memset(msgs, 0, sizeof(msgs));
			for (unsigned long i = 0; i < n; i++) {
				dst[i].sin_family = AF_INET;
				dst[i].sin_addr = to;
				dst[i].sin_port = htons((uint16_t)(port_base + j + i));
				msgs[i].msg_hdr.msg_name = &dst[i];
				msgs[i].msg_hdr.msg_namelen = sizeof(dst[i]);
				msgs[i].msg_hdr.msg_iov = &iov;
				msgs[i].msg_hdr.msg_iovlen = 1;
			}
			while (done < n) {
				int r = sendmmsg(fds[s], msgs + done, (unsigned)(n - done), 0);

				if (r < 0) {
					/* Local queue full: try again. */
					if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR)
						continue;
					perror("udpflood: sendmmsg");
					return 1;
				}
				done += (unsigned long)r;
			}
			sent += n;
		}
	}
	t1 = now_s();
	printf("udpflood sent=%lu seconds=%.3f rate=%.0f\n", sent, t1 - t0, (double)sent / (t1 - t0));
	return 0;
usage:
	fprintf(stderr, "usage: udpflood --to IP --count N [--src-from IP --src-count K] "
	    "[--port-base P]\n");
	return 2;
}
