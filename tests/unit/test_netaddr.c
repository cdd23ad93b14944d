#include <arpa/inet.h>
#include <string.h>

#include "netaddr.h"
#include "tap.h"

int
main(void)
{
	struct netaddr a;
	struct netprefix p, q;
	struct netendpoint e;
	char buf[NETENDPOINT_STRLEN];

	tap_ok(netaddr_parse("192.0.2.1", &a) == 0 && a.family == AF_INET, "ipv4 parses");
	tap_ok(netaddr_parse("2001:db8::1", &a) == 0 && a.family == AF_INET6, "ipv6 parses");
	tap_ok(netaddr_parse("192.0.2.256", &a) == -1, "bad octet rejected");
	tap_ok(netaddr_parse("", &a) == -1, "empty rejected");
	tap_ok(netprefix_parse("10.0.0.0/24", &p) == 0 && p.len == 24, "prefix parses");
	tap_ok(netprefix_parse("10.0.0.1/24", &p) == -1, "host bits rejected");
	tap_ok(netprefix_parse("10.0.0.0/33", &p) == -1, "long prefix rejected");
	tap_ok(netprefix_parse("10.0.0.0/", &p) == -1, "empty length rejected");
	tap_ok(netprefix_parse("10.0.0.0", &p) == -1, "missing length rejected");
	netprefix_parse("10.0.0.0/8", &p);
	netprefix_parse("10.1.0.0/16", &q);
	tap_ok(netprefix_overlap(&p, &q), "overlap detected");
	netaddr_parse("10.200.1.1", &a);
	tap_ok(netprefix_contains(&p, &a), "contains");
	netaddr_parse("11.0.0.1", &a);
	tap_ok(!netprefix_contains(&p, &a), "does not contain");
	tap_ok(netendpoint_parse("10.255.0.1:7410", &e) == 0 && e.port == 7410, "endpoint v4");
	tap_ok(netendpoint_parse("[2001:db8::1]:7410", &e) == 0 && e.addr.family == AF_INET6,
	    "endpoint v6");
	tap_ok(strcmp(netendpoint_str(&e, buf, sizeof(buf)), "[2001:db8::1]:7410") == 0,
	    "endpoint v6 prints back");
	tap_ok(netendpoint_parse("10.255.0.1:0", &e) == -1, "port 0 rejected");
	tap_ok(netendpoint_parse("10.255.0.1:65536", &e) == -1, "port 65536 rejected");
	tap_ok(netendpoint_parse("10.255.0.1", &e) == -1, "missing port rejected");
	tap_ok(netendpoint_parse("2001:db8::1:80", &e) == -1, "unbracketed v6 rejected");

	{
		static const struct { const char *addr; enum netaddr_class want; } cases[] = {
			{ "198.51.100.1", NETADDR_UNICAST }, { "0.0.0.0", NETADDR_UNSPECIFIED },
			{ "0.1.2.3", NETADDR_UNSPECIFIED }, { "127.0.0.1", NETADDR_LOOPBACK },
			{ "127.255.0.9", NETADDR_LOOPBACK }, { "224.0.0.1", NETADDR_MULTICAST },
			{ "239.255.255.255", NETADDR_MULTICAST }, { "240.0.0.1", NETADDR_UNICAST },
			{ "255.255.255.255", NETADDR_BROADCAST }, { "2001:db8::1", NETADDR_UNICAST },
			{ "::", NETADDR_UNSPECIFIED }, { "::1", NETADDR_LOOPBACK },
			{ "ff02::1", NETADDR_MULTICAST }, { "::2", NETADDR_UNICAST },
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
			tap_ok(netaddr_parse(cases[i].addr, &a) == 0 &&
			    netaddr_classify(&a) == cases[i].want, "%s is %s", cases[i].addr,
			    netaddr_class_name(cases[i].want));
	}
	return tap_done();
}
