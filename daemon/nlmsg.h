/*
 * nlmsg: walking netlink messages in a receive buffer without trusting
 * their lengths.
 *
 * libmnl's mnl_nlmsg_ok() compares nlmsg_len with the bytes left as an
 * int, so a length of 2^31 or more passes as negative and the walk
 * leaves the buffer (found by tests/fuzz/fuzz_ct).  The kernel sends no
 * such message, but a walk over a buffer must not depend on that.
 */
#ifndef UPLINKD_NLMSG_H
#define UPLINKD_NLMSG_H

#include <stdbool.h>

#include <libmnl/libmnl.h>

/* Whether a whole message starts at nlh with len bytes left: the
 * condition of the loop `for (; nlmsg_ok(nlh, len); nlh =
 * mnl_nlmsg_next(nlh, &len))`. */
static inline bool
nlmsg_ok(const struct nlmsghdr *nlh, int len)
{
	return len >= (int)sizeof(*nlh) && nlh->nlmsg_len >= sizeof(*nlh) &&
	    nlh->nlmsg_len <= (unsigned)len;
}

#endif
