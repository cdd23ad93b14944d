/*
 * test_ct: the conntrack message parser reads what libnetfilter_conntrack
 * writes (an independent encoder), IPv4 and IPv6, TCP and UDP, and turns
 * every truncated or malformed message into an error, never a read past
 * its end.  The message builder writes what libnetfilter_conntrack writes
 * for the same entry (the same attribute tree, in any order).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <stdlib.h>
#include <string.h>

#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include "ct.h"
#include "tap.h"

#define MARK_A 0x100
#define MARK_B 0x200
#define CT_MSG_MAX_TEST 64	/* under what one message needs */

static struct config cfg;

/* The test flow's addresses: the internal host, the server, and the
 * provider source it is translated to. */
static void
test_addrs(int family, uint8_t *src, uint8_t *dst, uint8_t *nat)
{
	bool v4 = family == AF_INET;

	inet_pton(family, v4 ? "10.0.0.7" : "fd00::7", src);
	inet_pton(family, v4 ? "203.0.113.9" : "2001:db8::9", dst);
	inet_pton(family, v4 ? "198.51.100.10" : "2001:db8:a::10", nat);
}

/* Ends a message libnetfilter_conntrack builds; bails out if it cannot. */
static size_t
nfct_finish(struct nlmsghdr *nlh, struct nf_conntrack *c, const char *what)
{
	if (nfct_nlmsg_build(nlh, c) != 0) {
		printf("Bail out! libnetfilter_conntrack could not build %s\n", what);
		exit(1);
	}
	nfct_destroy(c);
	return nlh->nlmsg_len;
}

/* A NEW event as the kernel sends it for a SNAT'd flow: the reply tuple
 * carries the translated source as its destination. */
static size_t
build(char *buf, int family, uint8_t proto, uint32_t mark)
{
	struct nf_conntrack *c = nfct_new();
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfh;
	uint8_t src[16], dst[16], nat[16];

	test_addrs(family, src, dst, nat);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = (uint8_t)family;
	nfct_set_attr_u8(c, ATTR_L3PROTO, (uint8_t)family);
	nfct_set_attr_u8(c, ATTR_L4PROTO, proto);
	nfct_set_attr_u8(c, ATTR_REPL_L3PROTO, (uint8_t)family);
	nfct_set_attr_u8(c, ATTR_REPL_L4PROTO, proto);
	if (family == AF_INET) {
		uint32_t a;

		memcpy(&a, src, 4);
		nfct_set_attr_u32(c, ATTR_ORIG_IPV4_SRC, a);
		memcpy(&a, dst, 4);
		nfct_set_attr_u32(c, ATTR_ORIG_IPV4_DST, a);
		nfct_set_attr_u32(c, ATTR_REPL_IPV4_SRC, a);
		memcpy(&a, nat, 4);
		nfct_set_attr_u32(c, ATTR_REPL_IPV4_DST, a);
	} else {
		nfct_set_attr(c, ATTR_ORIG_IPV6_SRC, src);
		nfct_set_attr(c, ATTR_ORIG_IPV6_DST, dst);
		nfct_set_attr(c, ATTR_REPL_IPV6_SRC, dst);
		nfct_set_attr(c, ATTR_REPL_IPV6_DST, nat);
	}
	nfct_set_attr_u16(c, ATTR_ORIG_PORT_SRC, htons(40001));
	nfct_set_attr_u16(c, ATTR_ORIG_PORT_DST, htons(443));
	nfct_set_attr_u16(c, ATTR_REPL_PORT_SRC, htons(443));
	nfct_set_attr_u16(c, ATTR_REPL_PORT_DST, htons(61000));
	nfct_set_attr_u32(c, ATTR_MARK, mark);
	nfct_set_attr_u32(c, ATTR_TIMEOUT, 120);
	nfct_set_attr_u32(c, ATTR_STATUS, IPS_SRC_NAT | IPS_CONFIRMED);
	if (proto == IPPROTO_TCP)
		nfct_set_attr_u8(c, ATTR_TCP_STATE, TCP_CONNTRACK_SYN_SENT);
	return nfct_finish(nlh, c, "the test message");
}

static void
check_parse(int family, uint8_t proto, const char *what)
{
	char buf[2048];
	struct flow f;
	uint8_t src[16] = { 0 }, dst[16] = { 0 }, nat[16] = { 0 };
	size_t alen = family == AF_INET ? 4 : 16;

	build(buf, family, proto, MARK_B | 0x5);
	test_addrs(family, src, dst, nat);
	tap_ok(ct_parse_flow((void *)buf, &cfg, &f) == 0, "%s: parsed", what);
	tap_ok(f.key.family == family && f.key.proto == proto, "%s: family and protocol", what);
	tap_ok(memcmp(f.key.src, src, alen) == 0 && memcmp(f.key.dst, dst, alen) == 0,
	    "%s: original addresses", what);
	tap_ok(f.key.sport == 40001 && f.key.dport == 443, "%s: original ports", what);
	tap_ok(memcmp(f.nat_src, nat, alen) == 0 && f.nat_port == 61000,
	    "%s: translated source from the reply tuple", what);
	tap_ok(f.mark == (MARK_B | 0x5) && f.provider == 1, "%s: mark and provider", what);
	tap_ok(f.l4state == (proto == IPPROTO_TCP ? FLOW_L4_SYN_SENT : FLOW_L4_NONE) &&
	    f.origin == FLOW_OWN, "%s: state and origin", what);
}

/* The reference: the entry as libnetfilter_conntrack encodes it. */
static size_t
build_nfct(char *buf, const struct flow *f, uint32_t timeout, enum ct_msg kind)
{
	struct nf_conntrack *c = nfct_new();
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfh;
	uint8_t flags = IP_CT_TCP_FLAG_BE_LIBERAL | IP_CT_TCP_FLAG_SACK_PERM;

	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) |
	    (kind == CT_MSG_DELETE ? IPCTNL_MSG_CT_DELETE : IPCTNL_MSG_CT_NEW);
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = f->key.family;
	nfct_set_attr_u8(c, ATTR_L3PROTO, f->key.family);
	nfct_set_attr_u8(c, ATTR_L4PROTO, f->key.proto);
	if (f->key.family == AF_INET) {
		uint32_t a;

		memcpy(&a, f->key.src, 4);
		nfct_set_attr_u32(c, ATTR_ORIG_IPV4_SRC, a);
		memcpy(&a, f->key.dst, 4);
		nfct_set_attr_u32(c, ATTR_ORIG_IPV4_DST, a);
		memcpy(&a, f->nat_src, 4);
		if (kind == CT_MSG_CREATE)
			nfct_set_attr_u32(c, ATTR_SNAT_IPV4, a);
	} else {
		nfct_set_attr(c, ATTR_ORIG_IPV6_SRC, f->key.src);
		nfct_set_attr(c, ATTR_ORIG_IPV6_DST, f->key.dst);
		if (kind == CT_MSG_CREATE)
			nfct_set_attr(c, ATTR_SNAT_IPV6, f->nat_src);
	}
	nfct_set_attr_u16(c, ATTR_ORIG_PORT_SRC, htons(f->key.sport));
	nfct_set_attr_u16(c, ATTR_ORIG_PORT_DST, htons(f->key.dport));
	if (kind == CT_MSG_CREATE) {
		if (f->nat_port)
			nfct_set_attr_u16(c, ATTR_SNAT_PORT, htons(f->nat_port));
		nfct_setobjopt(c, NFCT_SOPT_SETUP_REPLY);
		nfct_set_attr_u32(c, ATTR_STATUS, IPS_SEEN_REPLY | IPS_ASSURED);
	}
	if (kind != CT_MSG_DELETE) {
		nfct_set_attr_u32(c, ATTR_MARK, f->mark);
		nfct_set_attr_u32(c, ATTR_TIMEOUT, timeout);
		if (f->key.proto == IPPROTO_TCP) {
			nfct_set_attr_u8(c, ATTR_TCP_STATE, TCP_CONNTRACK_ESTABLISHED);
			nfct_set_attr_u8(c, ATTR_TCP_FLAGS_ORIG, flags);
			nfct_set_attr_u8(c, ATTR_TCP_MASK_ORIG, flags);
			nfct_set_attr_u8(c, ATTR_TCP_FLAGS_REPL, flags);
			nfct_set_attr_u8(c, ATTR_TCP_MASK_REPL, flags);
		}
	}
	return nfct_finish(nlh, c, "the reference");
}

/*
 * Whether two attribute streams hold the same tree: every attribute of a
 * has one of the same type in b with the same payload (nested ones
 * compared the same way), and both have as many.  Nests are the types
 * that libnetfilter_conntrack marks NLA_F_NESTED.
 */
static bool
attrs_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	size_t na = 0, nb = 0;

	for (const struct nlattr *x = a; mnl_attr_ok(x, (int)(alen - (size_t)((const char *)x - (const char *)a)));
	    x = mnl_attr_next(x)) {
		bool found = false;

		na++;
		for (const struct nlattr *y = b; mnl_attr_ok(y, (int)(blen - (size_t)((const char *)y - (const char *)b)));
		    y = mnl_attr_next(y)) {
			if (mnl_attr_get_type(x) != mnl_attr_get_type(y) ||
			    (x->nla_type & NLA_F_NESTED) != (y->nla_type & NLA_F_NESTED))
				continue;
			if (x->nla_type & NLA_F_NESTED)
				found = attrs_equal(mnl_attr_get_payload(x), mnl_attr_get_payload_len(x),
				    mnl_attr_get_payload(y), mnl_attr_get_payload_len(y));
			else
				found = mnl_attr_get_payload_len(x) == mnl_attr_get_payload_len(y) &&
				    memcmp(mnl_attr_get_payload(x), mnl_attr_get_payload(y),
				    mnl_attr_get_payload_len(x)) == 0;
			if (found)
				break;
		}
		if (!found)
			return false;
	}
	for (const struct nlattr *y = b; mnl_attr_ok(y, (int)(blen - (size_t)((const char *)y - (const char *)b)));
	    y = mnl_attr_next(y))
		nb++;
	return na == nb;
}

static void
check_build(int family, uint8_t proto, uint16_t nat_port, const char *what)
{
	static const char *const kinds[] = { "create", "update", "delete" };
	struct flow f = { 0 };
	char mine[1024], ref[1024];

	f.key.family = (uint8_t)family;
	f.key.proto = proto;
	test_addrs(family, f.key.src, f.key.dst, f.nat_src);
	f.key.sport = 40001;
	f.key.dport = 443;
	f.nat_port = nat_port;
	f.mark = MARK_B;
	for (int kind = CT_MSG_CREATE; kind <= CT_MSG_DELETE; kind++) {
		int n = ct_put_msg(mine, sizeof(mine), &f, 432000, 7, (enum ct_msg)kind);
		size_t r = build_nfct(ref, &f, 432000, (enum ct_msg)kind);
		const struct nlmsghdr *a = (const void *)mine, *b = (const void *)ref;
		size_t off = MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct nfgenmsg));

		tap_ok(n > 0 && a->nlmsg_type == b->nlmsg_type && a->nlmsg_seq == 7 &&
		    ((const struct nfgenmsg *)mnl_nlmsg_get_payload(a))->nfgen_family == family &&
		    attrs_equal(mine + off, (size_t)n - off, ref + off, r - off) &&
		    attrs_equal(ref + off, r - off, mine + off, (size_t)n - off),
		    "%s %s: the message libnetfilter_conntrack builds", what, kinds[kind]);
	}
}

/* An IPv4 message whose original tuple has a source address of srclen
 * bytes and, with_proto, a protocol (no ports: as for ICMP). */
static struct nlmsghdr *
bad_tuple(char *buf, size_t srclen, bool with_proto)
{
	struct nlmsghdr *m = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfh;
	struct nlattr *t, *ip;

	m->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	nfh = mnl_nlmsg_put_extra_header(m, sizeof(*nfh));
	nfh->nfgen_family = AF_INET;
	t = mnl_attr_nest_start(m, CTA_TUPLE_ORIG);
	ip = mnl_attr_nest_start(m, CTA_TUPLE_IP);
	mnl_attr_put(m, CTA_IP_V4_SRC, srclen, "\x0a\x00\x00\x01");
	mnl_attr_put_u32(m, CTA_IP_V4_DST, 0x01020304);
	mnl_attr_nest_end(m, ip);
	if (with_proto) {
		struct nlattr *proto = mnl_attr_nest_start(m, CTA_TUPLE_PROTO);

		mnl_attr_put_u8(m, CTA_PROTO_NUM, IPPROTO_TCP);
		mnl_attr_nest_end(m, proto);
	}
	mnl_attr_nest_end(m, t);
	mnl_attr_put_u32(m, CTA_MARK, htonl(MARK_A));
	return m;
}

int
main(void)
{
	char buf[2048], copy[2048];
	struct nlmsghdr *nlh = (void *)buf;
	struct flow f;
	size_t len;
	unsigned wrong = 0, accepted = 0;

	cfg.nproviders = 2;
	cfg.providers[0].mark = MARK_A;
	cfg.providers[1].mark = MARK_B;
	cfg.mark_mask = 0xf00;

	check_parse(AF_INET, IPPROTO_TCP, "IPv4 TCP");
	check_parse(AF_INET, IPPROTO_UDP, "IPv4 UDP");
	check_parse(AF_INET6, IPPROTO_TCP, "IPv6 TCP");
	check_parse(AF_INET6, IPPROTO_UDP, "IPv6 UDP");
	check_build(AF_INET, IPPROTO_TCP, 61000, "IPv4 TCP");
	check_build(AF_INET, IPPROTO_UDP, 61000, "IPv4 UDP");
	check_build(AF_INET, IPPROTO_TCP, 0, "IPv4 TCP without a NAT port");
	check_build(AF_INET6, IPPROTO_TCP, 61000, "IPv6 TCP");
	check_build(AF_INET6, IPPROTO_UDP, 61000, "IPv6 UDP");
	{
		struct flow g = { 0 };
		char small[CT_MSG_MAX_TEST];

		g.key.family = AF_INET;
		tap_ok(ct_put_msg(small, sizeof(small), &g, 1, 1, CT_MSG_CREATE) == -1 &&
		    errno == ENOSPC, "a buffer too small: ENOSPC");
		g.key.family = AF_UNSPEC;
		tap_ok(ct_put_msg(copy, sizeof(copy), &g, 1, 1, CT_MSG_CREATE) == -1 &&
		    errno == EAFNOSUPPORT, "a family other than IPv4/IPv6: EAFNOSUPPORT");
	}

	build(buf, AF_INET, IPPROTO_TCP, 0x300);
	tap_ok(ct_parse_flow(nlh, &cfg, &f) == 1, "a mark of no provider is not ours");
	build(buf, AF_INET, IPPROTO_TCP, 0);
	tap_ok(ct_parse_flow(nlh, &cfg, &f) == 1, "no mark is not ours");

	len = build(buf, AF_INET, IPPROTO_TCP, MARK_A);
	((struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->nfgen_family = AF_UNSPEC;
	tap_ok(ct_parse_flow(nlh, &cfg, &f) == -1, "a family other than IPv4/IPv6 is an error");

	/* Every shorter length of the same message: the parser sees only
	 * nlmsg_len bytes (as mnl_nlmsg_ok lets through), and either finds
	 * the attributes it needs or says the message is malformed. */
	len = build(buf, AF_INET6, IPPROTO_TCP, MARK_A);
	for (size_t n = 0; n < len; n++) {
		int rc;

		memcpy(copy, buf, len);
		((struct nlmsghdr *)(void *)copy)->nlmsg_len = (uint32_t)n;
		rc = ct_parse_flow((void *)copy, &cfg, &f);
		if (rc == 0) {
			accepted++;
			/* Whatever is accepted is the whole original tuple. */
			if (f.key.sport != 40001 || f.key.dport != 443 || f.provider != 0)
				wrong++;
		} else if (rc != -1 && rc != 1) {
			wrong++;
		}
	}
	tap_ok(wrong == 0, "truncated messages: an error, not ours, or the right flow");
	/* The mark comes after both tuples: only cuts behind it can succeed. */
	tap_ok(accepted < len / 2, "truncated messages are mostly refused (%u of %zu accepted)",
	    accepted, len);

	/* A wrong attribute length (an address of 3 bytes) is refused, and
	 * so is a tuple without its protocol. */
	tap_ok(ct_parse_flow(bad_tuple(copy, 4, true), &cfg, &f) == 0 && f.provider == 0,
	    "the hand-built message, well formed, is a flow");
	tap_ok(ct_parse_flow(bad_tuple(copy, 3, true), &cfg, &f) == -1,
	    "an address of the wrong length is an error");
	tap_ok(ct_parse_flow(bad_tuple(copy, 4, false), &cfg, &f) == -1,
	    "a tuple without a protocol is an error");
	return tap_done();
}
