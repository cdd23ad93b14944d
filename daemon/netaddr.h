/*
 * netaddr: IPv4/IPv6 addresses, prefixes and endpoints as plain values.
 *
 * IPv4 addresses live in a[0..3] in network byte order, the rest zero, so
 * that two equal addresses compare equal with memcmp().  Parsers return 0,
 * or -1 with errno EINVAL and leave *out unspecified.
 */
#ifndef UPLINKD_NETADDR_H
#define UPLINKD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NETADDR_STRLEN 46	/* INET6_ADDRSTRLEN */
#define NETENDPOINT_STRLEN (NETADDR_STRLEN + 8)

struct netaddr {
	uint8_t family;		/* AF_INET, AF_INET6, or 0 when unset */
	uint8_t a[16];
};

struct netprefix {
	struct netaddr addr;
	uint8_t len;
};

struct netendpoint {
	struct netaddr addr;
	uint16_t port;		/* host byte order */
};

int netaddr_parse(const char *s, struct netaddr *out);
/* Rejects host bits set below the prefix length ("10.0.0.1/24"). */
int netprefix_parse(const char *s, struct netprefix *out);
/* "192.0.2.1:7410" or "[2001:db8::1]:7410"; the port must be 1..65535. */
int netendpoint_parse(const char *s, struct netendpoint *out);

const char *netaddr_str(const struct netaddr *a, char *buf, size_t len);
const char *netprefix_str(const struct netprefix *p, char *buf, size_t len);
const char *netendpoint_str(const struct netendpoint *e, char *buf, size_t len);

bool netaddr_eq(const struct netaddr *x, const struct netaddr *y);
bool netprefix_contains(const struct netprefix *p, const struct netaddr *a);
bool netprefix_overlap(const struct netprefix *x, const struct netprefix *y);
/* Length in bytes of the address (4 or 16), 0 when unset. */
size_t netaddr_len(const struct netaddr *a);

/* What an address is for routing: a host's address, or one that cannot
 * be a gateway, a source or a probe target. */
enum netaddr_class {
	NETADDR_UNICAST,
	NETADDR_UNSPECIFIED,	/* 0.0.0.0/8, :: */
	NETADDR_LOOPBACK,	/* 127.0.0.0/8, ::1 */
	NETADDR_MULTICAST,	/* 224.0.0.0/4, ff00::/8 */
	NETADDR_BROADCAST,	/* 255.255.255.255 */
};
enum netaddr_class netaddr_classify(const struct netaddr *a);
/* "the unspecified address" and so on, for messages. */
const char *netaddr_class_name(enum netaddr_class c);

#endif
