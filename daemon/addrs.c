/*
 * One rtnetlink socket in the address groups carries both the events and,
 * after an overrun, the dump that re-reads the table.  Dump replies and
 * events are applied in the order they arrive, which converges on the
 * kernel's state: a dump part is generated when it is read, so an event
 * queued before it is older than what it shows, and an event queued after
 * it describes a later change.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>

#include "addrs.h"
#include "log.h"
#include "nlmsg.h"

#define ADDRS_RCVBUF (1 << 20)
#define ADDRS_DUMP_TIMEOUT_MS 2000
#define ADDRS_DUMP_TRIES 3
#define ADDRS_READ_BATCH 64	/* receive calls per drain */
/* The kernel sizes a dump's datagrams by the reader's largest buffer, up
 * to 32 KiB: this one always fits. */
#define ADDRS_BUF (32u << 10)

struct addrs_entry {
	int ifindex;
	struct netaddr addr;
};

struct addrs {
	struct ev_loop *loop;
	struct mnl_socket *nl;
	int fd;
	uint32_t seq;
	bool known;		/* false: events were lost, a dump is due */
	struct addrs_entry *ent;
	size_t n, cap;
	char buf[ADDRS_BUF];
};

static ssize_t
addrs_find(const struct addrs *a, int ifindex, const struct netaddr *addr)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->ent[i].ifindex == ifindex && netaddr_eq(&a->ent[i].addr, addr))
			return (ssize_t)i;
	return -1;
}

static void
addrs_add(struct addrs *a, int ifindex, const struct netaddr *addr)
{
	if (addrs_find(a, ifindex, addr) >= 0)
		return;
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 16;
		struct addrs_entry *e = realloc(a->ent, cap * sizeof(*e));

		if (e == NULL) {
			/* Not knowing an address is not knowing the table. */
			log_warn("addrs: remembering an address");
			a->known = false;
			return;
		}
		a->ent = e;
		a->cap = cap;
	}
	a->ent[a->n].ifindex = ifindex;
	a->ent[a->n].addr = *addr;
	a->n++;
}

static void
addrs_del(struct addrs *a, int ifindex, const struct netaddr *addr)
{
	ssize_t i = addrs_find(a, ifindex, addr);

	if (i >= 0)
		a->ent[i] = a->ent[--a->n];
}

/* An RTM_NEWADDR or RTM_DELADDR, from the dump or an event. */
static void
addrs_apply(struct addrs *a, const struct nlmsghdr *nlh)
{
	const size_t attrs = MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct ifaddrmsg));
	const struct ifaddrmsg *ifa;
	const struct nlattr *at, *local = NULL, *address = NULL;
	struct netaddr addr = { 0 };
	size_t alen, left;

	if (nlh->nlmsg_len < attrs)
		return;
	ifa = mnl_nlmsg_get_payload(nlh);
	if (ifa->ifa_family == AF_INET)
		alen = 4;
	else if (ifa->ifa_family == AF_INET6)
		alen = 16;
	else
		return;
	nlattr_for_each(at, left, (const struct nlattr *)(const void *)((const char *)nlh + attrs),
	    nlh->nlmsg_len - attrs) {
		if (nlattr_data_len(at) != alen)
			continue;
		if (nlattr_type(at) == IFA_LOCAL)
			local = at;
		else if (nlattr_type(at) == IFA_ADDRESS)
			address = at;
	}
	/* IFA_LOCAL is the interface's own address where the two differ (a
	 * point-to-point link's IFA_ADDRESS is the far end), as in
	 * getifaddrs(). */
	if (local == NULL && (local = address) == NULL)
		return;
	addr.family = ifa->ifa_family;
	memcpy(addr.a, nlattr_data(local), alen);
	if (nlh->nlmsg_type == RTM_NEWADDR)
		addrs_add(a, (int)ifa->ifa_index, &addr);
	else
		addrs_del(a, (int)ifa->ifa_index, &addr);
}

/*
 * Applies the messages of one datagram.  Returns 1 when it held the end
 * of dump `seq` (0: no dump), -1 when it held that dump's error, else 0.
 */
static int
addrs_apply_all(struct addrs *a, size_t len, uint32_t seq)
{
	int left = (int)len, rc = 0;

	for (const struct nlmsghdr *nlh = (const void *)a->buf; nlmsg_ok(nlh, left);
	    nlh = mnl_nlmsg_next(nlh, &left)) {
		bool ours = seq != 0 && nlh->nlmsg_seq == seq;

		switch (nlh->nlmsg_type) {
		case NLMSG_DONE:
			if (ours)
				rc = 1;
			break;
		case NLMSG_ERROR:
			if (ours)
				rc = -1;
			break;
		case RTM_NEWADDR:
		case RTM_DELADDR:
			addrs_apply(a, nlh);
			break;
		}
	}
	return rc;
}

/* Re-reads the table, waiting for the dump (bounded).  Returns 0 or -1. */
static int
addrs_dump(struct addrs *a)
{
	for (int attempt = 0; attempt < ADDRS_DUMP_TRIES; attempt++) {
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(a->buf);
		struct ifaddrmsg *ifa;
		int64_t deadline = ev_clock_us() / 1000 + ADDRS_DUMP_TIMEOUT_MS;
		int rc = 0;

		nlh->nlmsg_type = RTM_GETADDR;
		nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		if (++a->seq == 0)
			a->seq = 1;
		nlh->nlmsg_seq = a->seq;
		ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
		ifa->ifa_family = AF_UNSPEC;
		if (mnl_socket_sendto(a->nl, nlh, nlh->nlmsg_len) == -1) {
			log_warn("addrs: address dump request");
			return -1;
		}
		a->n = 0;
		while (rc == 0) {
			struct pollfd pfd = { a->fd, POLLIN, 0 };
			int64_t wait = deadline - ev_clock_us() / 1000;
			ssize_t got;

			if (wait <= 0 || poll(&pfd, 1, (int)wait) <= 0) {
				log_warnx("addrs: no answer to the address dump in %d ms",
				    ADDRS_DUMP_TIMEOUT_MS);
				return -1;
			}
			got = recv(a->fd, a->buf, sizeof(a->buf), MSG_DONTWAIT);
			if (got < 0) {
				if (errno == EAGAIN || errno == EINTR)
					continue;
				/* ENOBUFS: events were lost meanwhile; again. */
				rc = errno == ENOBUFS ? -2 : -1;
				if (rc == -1)
					log_warn("addrs: reading the address dump");
				break;
			}
			rc = addrs_apply_all(a, (size_t)got, a->seq);
		}
		if (rc == 1) {
			a->known = true;
			return 0;
		}
		if (rc == -1)
			return -1;
	}
	log_warnx("addrs: the address dump kept overrunning");
	return -1;
}

/* Applies what waits in the socket; an overrun leaves the table unknown. */
static void
addrs_drain(struct addrs *a)
{
	for (int i = 0; i < ADDRS_READ_BATCH; i++) {
		ssize_t got = recv(a->fd, a->buf, sizeof(a->buf), MSG_DONTWAIT);

		if (got < 0) {
			if (errno == ENOBUFS) {
				a->known = false;
				continue;
			}
			if (errno != EAGAIN && errno != EINTR)
				log_warn("addrs: rtnetlink recv");
			return;
		}
		addrs_apply_all(a, (size_t)got, 0);
	}
}

static void
addrs_on_read(int fd, void *data)
{
	struct addrs *a = data;

	(void)fd;
	addrs_drain(a);
	if (!a->known)
		addrs_dump(a);
}

int
addrs_refresh(struct addrs *a)
{
	addrs_drain(a);
	if (!a->known && addrs_dump(a) == -1)
		return -1;
	return 0;
}

bool
addrs_has(const struct addrs *a, const struct netaddr *addr)
{
	for (size_t i = 0; i < a->n; i++)
		if (netaddr_eq(&a->ent[i].addr, addr))
			return true;
	return false;
}

struct addrs *
addrs_create(struct ev_loop *loop)
{
	struct addrs *a = calloc(1, sizeof(*a));
	int rcvbuf = ADDRS_RCVBUF, saved;

	if (a == NULL)
		return NULL;
	a->loop = loop;
	a->fd = -1;
	if ((a->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK)) == NULL)
		goto fail;
	a->fd = mnl_socket_get_fd(a->nl);
	/* Room for a burst of changes (a VRRP transition moves a handful,
	 * a flapping setup more); an overrun costs a dump, nothing else. */
	if (setsockopt(a->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) == -1)
		setsockopt(a->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (mnl_socket_bind(a->nl, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
	    MNL_SOCKET_AUTOPID) == -1)
		goto fail;
	if (addrs_dump(a) == -1) {
		errno = EIO;
		goto fail;
	}
	if (ev_fd_add(loop, a->fd, addrs_on_read, NULL, a) == -1)
		goto fail;
	return a;
fail:
	saved = errno;
	if (a->nl != NULL)
		mnl_socket_close(a->nl);
	free(a->ent);
	free(a);
	errno = saved;
	return NULL;
}

void
addrs_destroy(struct addrs *a)
{
	if (a == NULL)
		return;
	ev_fd_del(a->loop, a->fd);
	mnl_socket_close(a->nl);
	free(a->ent);
	free(a);
}
