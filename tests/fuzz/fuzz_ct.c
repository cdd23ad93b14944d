/*
 * fuzz_ct: libFuzzer target for the conntrack message parser
 * (ct_parse_flow in daemon/ct.c), the code that reads every conntrack
 * event and dump the kernel sends.
 *
 * The input is a receive buffer as ct_on_event gets it: netlink messages
 * back to back, walked with mnl_nlmsg_ok/mnl_nlmsg_next, each parsed
 * against a fixed config of two providers.  The buffer is copied to an
 * allocation of exactly its size (aligned as the kernel's would be), so
 * ASan sees any read past the end.  A parsed flow must be IPv4 or IPv6,
 * of a configured provider and our own.
 *
 * Seeds: tests/fuzz/corpus/fuzz_ct (NEW events of TCP and UDP flows, IPv4
 * and IPv6, as libnetfilter_conntrack encodes them).
 *
 * FUZZ_SOURCES: daemon/ct.c daemon/ev.c daemon/log.c
 * FUZZ_PKGS: libmnl libnetfilter_conntrack
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>

#include "ct.h"
#include "nlmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config cfg;
	uint8_t *buf;
	int len = (int)size;

	if (size > 65536)
		return 0;
	cfg.nproviders = 2;
	cfg.providers[0].mark = 0x100;
	cfg.providers[1].mark = 0x200;
	cfg.mark_mask = 0xf00;
	if ((buf = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	for (const struct nlmsghdr *nlh = (const void *)buf; nlmsg_ok(nlh, len);
	    nlh = mnl_nlmsg_next(nlh, &len)) {
		struct flow f;

		if (ct_parse_flow(nlh, &cfg, &f) == 0 &&
		    ((f.key.family != AF_INET && f.key.family != AF_INET6) ||
		    f.provider >= cfg.nproviders || f.origin != FLOW_OWN))
			abort();
	}
	free(buf);
	return 0;
}
