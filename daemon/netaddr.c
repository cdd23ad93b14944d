#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"

int
netaddr_parse(const char *s, struct netaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, s, out->a) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out->a) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	errno = EINVAL;
	return -1;
}

size_t
netaddr_len(const struct netaddr *a)
{
	return a->family == AF_INET ? 4 : a->family == AF_INET6 ? 16 : 0;
}

static bool
netaddr_host_bits_clear(const struct netaddr *a, unsigned len)
{
	size_t n = netaddr_len(a);

	for (size_t bit = len; bit < n * 8; bit++)
		if (a->a[bit / 8] & (0x80 >> (bit % 8)))
			return false;
	return true;
}

int
netprefix_parse(const char *s, struct netprefix *out)
{
	char buf[NETADDR_STRLEN + 8], *slash, *end;
	unsigned long len;

	if (strlen(s) >= sizeof(buf))
		goto bad;
	strcpy(buf, s);
	if ((slash = strchr(buf, '/')) == NULL)
		goto bad;
	*slash = '\0';
	if (netaddr_parse(buf, &out->addr) == -1)
		goto bad;
	errno = 0;
	if (slash[1] < '0' || slash[1] > '9')
		goto bad;
	len = strtoul(slash + 1, &end, 10);
	if (errno || *end != '\0' || len > netaddr_len(&out->addr) * 8)
		goto bad;
	out->len = (uint8_t)len;
	if (!netaddr_host_bits_clear(&out->addr, out->len))
		goto bad;
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

int
netendpoint_parse(const char *s, struct netendpoint *out)
{
	char buf[NETENDPOINT_STRLEN], *colon, *host, *end;
	unsigned long port;

	if (strlen(s) >= sizeof(buf))
		goto bad;
	strcpy(buf, s);
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');
		if (close == NULL || close[1] != ':')
			goto bad;
		*close = '\0';
		host = buf + 1;
		colon = close + 1;
		if (netaddr_parse(host, &out->addr) == -1 || out->addr.family != AF_INET6)
			goto bad;
	} else {
		if ((colon = strrchr(buf, ':')) == NULL)
			goto bad;
		*colon = '\0';
		host = buf;
		if (netaddr_parse(host, &out->addr) == -1 || out->addr.family != AF_INET)
			goto bad;
	}
	if (colon[1] < '0' || colon[1] > '9')
		goto bad;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end != '\0' || port == 0 || port > 65535)
		goto bad;
	out->port = (uint16_t)port;
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

const char *
netaddr_str(const struct netaddr *a, char *buf, size_t len)
{
	if (a->family == 0 || inet_ntop(a->family, a->a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "-");
	return buf;
}

const char *
netprefix_str(const struct netprefix *p, char *buf, size_t len)
{
	char addr[NETADDR_STRLEN];

	snprintf(buf, len, "%s/%u", netaddr_str(&p->addr, addr, sizeof(addr)), p->len);
	return buf;
}

const char *
netendpoint_str(const struct netendpoint *e, char *buf, size_t len)
{
	char addr[NETADDR_STRLEN];

	netaddr_str(&e->addr, addr, sizeof(addr));
	if (e->addr.family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", addr, e->port);
	else
		snprintf(buf, len, "%s:%u", addr, e->port);
	return buf;
}

bool
netaddr_eq(const struct netaddr *x, const struct netaddr *y)
{
	return x->family == y->family && memcmp(x->a, y->a, sizeof(x->a)) == 0;
}

enum netaddr_class
netaddr_classify(const struct netaddr *a)
{
	static const uint8_t loop6[16] = { [15] = 1 }, zero6[16] = { 0 };

	if (a->family == AF_INET) {
		if (a->a[0] == 0)
			return NETADDR_UNSPECIFIED;
		if (a->a[0] == 127)
			return NETADDR_LOOPBACK;
		if ((a->a[0] & 0xf0) == 224)
			return NETADDR_MULTICAST;
		if (a->a[0] == 255 && a->a[1] == 255 && a->a[2] == 255 && a->a[3] == 255)
			return NETADDR_BROADCAST;
		return NETADDR_UNICAST;
	}
	if (memcmp(a->a, zero6, 16) == 0)
		return NETADDR_UNSPECIFIED;
	if (memcmp(a->a, loop6, 16) == 0)
		return NETADDR_LOOPBACK;
	if (a->a[0] == 0xff)
		return NETADDR_MULTICAST;
	return NETADDR_UNICAST;
}

const char *
netaddr_class_name(enum netaddr_class c)
{
	switch (c) {
	case NETADDR_UNICAST:
		return "a unicast address";
	case NETADDR_UNSPECIFIED:
		return "the unspecified address";
	case NETADDR_LOOPBACK:
		return "a loopback address";
	case NETADDR_MULTICAST:
		return "a multicast address";
	case NETADDR_BROADCAST:
		return "the broadcast address";
	}
	return "an address";
}

static bool
netaddr_match_bits(const struct netaddr *x, const struct netaddr *y, unsigned len)
{
	unsigned full = len / 8, rest = len % 8;

	if (memcmp(x->a, y->a, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (x->a[full] & mask) == (y->a[full] & mask);
}

bool
netprefix_contains(const struct netprefix *p, const struct netaddr *a)
{
	return p->addr.family == a->family && netaddr_match_bits(&p->addr, a, p->len);
}

bool
netprefix_overlap(const struct netprefix *x, const struct netprefix *y)
{
	if (x->addr.family != y->addr.family)
		return false;
	return netaddr_match_bits(&x->addr, &y->addr, x->len < y->len ? x->len : y->len);
}
