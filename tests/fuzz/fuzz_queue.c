/*
 * fuzz_queue: libFuzzer target for the packet parser behind every NFQUEUE
 * decision (queue_parse in daemon/queue.c).  Its input is the first
 * packet of a connection as a LAN host sent it: network input, not the
 * kernel's.
 *
 * The input is the queue message's hardware protocol (2 bytes, network
 * order, 0 for "unknown") and then the packet, copied to an allocation of
 * exactly its size so that ASan sees a read past the end.  A packet that
 * parses is IPv4 or IPv6, long enough for its fixed header, and its
 * addresses are the header's; one that does not leaves parsed false.
 *
 * Seeds: tests/fuzz/corpus/fuzz_queue (a TCP SYN over IPv4, a UDP
 * datagram over IPv6 behind a hop-by-hop header, a later IPv4 fragment).
 *
 * FUZZ_SOURCES: daemon/queue.c daemon/ev.c daemon/log.c
 * FUZZ_PKGS: libmnl libnetfilter_queue
 */
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_packet pkt;
	uint16_t hw_proto;
	uint8_t *p;
	size_t len;
	bool ok;

	if (size < 2 || size > 65537)
		return 0;
	hw_proto = (uint16_t)(data[0] << 8 | data[1]);
	len = size - 2;
	if ((p = malloc(len ? len : 1)) == NULL)
		return 0;
	memcpy(p, data + 2, len);
	memset(&pkt, 0xa5, sizeof(pkt));
	ok = queue_parse(p, len, hw_proto, &pkt);
	if (ok != pkt.parsed)
		abort();
	if (ok) {
		if (pkt.tuple.family == AF_INET) {
			if (len < 20 || memcmp(pkt.tuple.src, p + 12, 4) != 0 ||
			    memcmp(pkt.tuple.dst, p + 16, 4) != 0 ||
			    (hw_proto != 0 && hw_proto != ETH_P_IP))
				abort();
		} else if (pkt.tuple.family == AF_INET6) {
			if (len < 40 || memcmp(pkt.tuple.src, p + 8, 16) != 0 ||
			    memcmp(pkt.tuple.dst, p + 24, 16) != 0 ||
			    (hw_proto != 0 && hw_proto != ETH_P_IPV6))
				abort();
		} else
			abort();
		if (pkt.tuple.proto != IPPROTO_TCP && pkt.tcp_flags != 0)
			abort();
	}
	free(p);
	return 0;
}
