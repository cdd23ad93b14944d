#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <string.h>

#include "queue.h"
#include "tap.h"

int
main(void)
{
	uint8_t v4[40] = {
		0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0,
		10, 0, 0, 100, 192, 0, 2, 10,
		0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02,
	};
	uint8_t v6[48] = { 0x60, 0, 0, 0, 0, 8, IPPROTO_UDP, 64 };
	struct queue_packet p;

	tap_ok(queue_parse(v4, sizeof(v4), ETH_P_IP, &p) && p.parsed, "tcp/ipv4 parses");
	tap_ok(p.tuple.family == AF_INET && p.tuple.proto == IPPROTO_TCP, "family and proto");
	tap_ok(p.tuple.sport == 40000 && p.tuple.dport == 443, "ports in host order");
	tap_ok(p.tuple.src[0] == 10 && p.tuple.src[3] == 100 && p.tuple.dst[0] == 192,
	    "addresses");
	tap_ok(p.tcp_flags == 0x02, "SYN flag");
	tap_ok(!queue_parse(v4, 30, ETH_P_IP, &p), "truncated TCP header refused");
	tap_ok(!queue_parse(v4, 10, ETH_P_IP, &p), "truncated IP header refused");
	v4[0] = 0x44;
	tap_ok(!queue_parse(v4, sizeof(v4), ETH_P_IP, &p), "IHL below 5 refused");
	v4[0] = 0x45;
	v4[6] = 0x00;
	v4[7] = 0x10;
	tap_ok(queue_parse(v4, sizeof(v4), ETH_P_IP, &p) && p.tuple.sport == 0,
	    "non-first fragment: no ports");
	v6[8] = 0xfd;
	v6[24] = 0x20;
	v6[40] = 0x13;
	v6[41] = 0x88;
	v6[42] = 0x00;
	v6[43] = 0x35;
	tap_ok(queue_parse(v6, sizeof(v6), ETH_P_IPV6, &p) && p.tuple.family == AF_INET6 &&
	    p.tuple.sport == 5000 && p.tuple.dport == 53, "udp/ipv6 parses");
	tap_ok(!queue_parse(v6, 20, ETH_P_IPV6, &p), "truncated ipv6 refused");
	tap_ok(!queue_parse(v6, sizeof(v6), 0x0806, &p), "ARP refused");
	return tap_done();
}
