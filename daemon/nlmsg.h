/*
 * nlmsg: walking netlink messages and their attributes in a receive
 * buffer without trusting their lengths, and building them inline.
 *
 * libmnl's mnl_nlmsg_ok() compares nlmsg_len with the bytes left as an
 * int, so a length of 2^31 or more passes as negative and the walk
 * leaves the buffer (found by tests/fuzz/fuzz_ct).  The kernel sends no
 * such message, but a walk over a buffer must not depend on that.
 */
#ifndef UPLINKD_NLMSG_H
#define UPLINKD_NLMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/*
 * Attributes, the same way, and inline: libmnl's accessors are calls into
 * a shared library, a handful per attribute, and a conntrack event has
 * about thirty attributes.  The walk:
 *
 *	const struct nlattr *a;
 *	size_t left;
 *
 *	nlattr_for_each(a, left, first, len)	 (or nlattr_for_each_nested)
 *		switch (nlattr_type(a)) ...
 */
static inline bool
nlattr_ok(const struct nlattr *a, size_t left)
{
	return left >= sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= left;
}

static inline const struct nlattr *
nlattr_next(const struct nlattr *a, size_t *left)
{
	size_t step = MNL_ALIGN(a->nla_len);

	if (step >= *left) {
		*left = 0;
		return a;
	}
	*left -= step;
	return (const struct nlattr *)(const void *)((const char *)a + step);
}

static inline uint16_t
nlattr_type(const struct nlattr *a)
{
	return a->nla_type & NLA_TYPE_MASK;
}

static inline const void *
nlattr_data(const struct nlattr *a)
{
	return (const char *)a + MNL_ATTR_HDRLEN;
}

/* Valid once nlattr_ok() said so. */
static inline size_t
nlattr_data_len(const struct nlattr *a)
{
	return a->nla_len - MNL_ATTR_HDRLEN;
}

#define nlattr_for_each(a, left, first, len) \
	for ((left) = (len), (a) = (first); nlattr_ok((a), (left)); (a) = nlattr_next((a), &(left)))

#define nlattr_for_each_nested(a, left, nest) \
	nlattr_for_each(a, left, (const struct nlattr *)nlattr_data(nest), nlattr_data_len(nest))

/*
 * Building, inline for the same reason: a conntrack create has about
 * twenty attributes.  The caller makes sure of the room once, for the
 * whole message (it has a fixed largest size), as with libmnl's puts.
 */
static inline struct nlattr *
nlattr_put(struct nlmsghdr *nlh, uint16_t type, size_t len, const void *data)
{
	struct nlattr *a = (struct nlattr *)(void *)((char *)nlh + nlh->nlmsg_len);
	size_t padded = MNL_ALIGN(MNL_ATTR_HDRLEN + len);

	a->nla_type = type;
	a->nla_len = (uint16_t)(MNL_ATTR_HDRLEN + len);
	memcpy((char *)a + MNL_ATTR_HDRLEN, data, len);
	memset((char *)a + MNL_ATTR_HDRLEN + len, 0, padded - MNL_ATTR_HDRLEN - len);
	nlh->nlmsg_len += (uint32_t)padded;
	return a;
}

static inline void
nlattr_put_u8(struct nlmsghdr *nlh, uint16_t type, uint8_t v)
{
	nlattr_put(nlh, type, sizeof(v), &v);
}

static inline void
nlattr_put_u16(struct nlmsghdr *nlh, uint16_t type, uint16_t v)
{
	nlattr_put(nlh, type, sizeof(v), &v);
}

static inline void
nlattr_put_u32(struct nlmsghdr *nlh, uint16_t type, uint32_t v)
{
	nlattr_put(nlh, type, sizeof(v), &v);
}

/* A nest's length is known at its end. */
static inline struct nlattr *
nlattr_nest_start(struct nlmsghdr *nlh, uint16_t type)
{
	struct nlattr *a = (struct nlattr *)(void *)((char *)nlh + nlh->nlmsg_len);

	a->nla_type = type | NLA_F_NESTED;
	a->nla_len = MNL_ATTR_HDRLEN;
	nlh->nlmsg_len += MNL_ATTR_HDRLEN;
	return a;
}

static inline void
nlattr_nest_end(struct nlmsghdr *nlh, struct nlattr *nest)
{
	nest->nla_len = (uint16_t)((char *)nlh + nlh->nlmsg_len - (char *)nest);
}

#endif
