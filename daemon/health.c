/*
 * health: ICMP probes per provider and link state from rtnetlink.
 *
 * Each provider runs one timer that alternates between two phases: SEND
 * opens a round and sends one echo to every target, EVAL (`timeout` later)
 * closes the round, counts the in-time replies and feeds the result to the
 * hysteresis (health_fsm_step).  One timer per provider and no allocation
 * per round.
 *
 * Raw ICMP sockets receive every echo reply that arrives on their device,
 * including replies to other programs' pings, so a reply only counts when
 * its identifier (unique per provider in this process), sequence, source
 * address and payload cookie all match a probe of the open round.
 *
 * Link state: the interface is known by name (an ifindex does not survive
 * a re-creation).  A dump at start learns the current state; RTMGRP_LINK
 * events keep it current; a lost event (ENOBUFS) triggers a new dump.  A
 * provider interface absent from a complete dump is down.
 *
 * The owner's callback runs from inside the loop; it must not destroy the
 * health object.
 */
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/icmp.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

#include "health.h"
#include "log.h"
#include "nlmsg.h"

#define HEALTH_PAYLOAD 16		/* cookie (8) + send time (8) */
#define HEALTH_PKT_MAX 1500
#define HEALTH_READ_BATCH 64		/* packets per read callback */
#define HEALTH_NL_BATCH 32		/* netlink reads per callback */
#define HEALTH_NL_RCVBUF (1 << 20)

enum health_phase {
	PHASE_SEND,
	PHASE_EVAL,
};

struct health_target {
	struct netaddr addr;
	uint16_t seq;
	int64_t sent_us;
	bool pending;		/* sent in the open round, no reply yet */
	bool replied;		/* replied in the open round */
};

struct health_prov {
	struct health *h;
	size_t idx;
	const struct cfg_provider *cp;
	int fd4, fd6;
	unsigned bound_ifindex;		/* the ifindex the sockets are bound to */
	uint16_t ident;
	uint16_t seq;
	struct ev_timer *timer;
	enum health_phase phase;
	struct health_target targets[CFG_MAX_TARGETS];
	size_t ntargets;
	unsigned round_replies;
	bool round_spoiled;		/* the link went down during the round */
	struct health_fsm fsm;
	bool link_up;
	unsigned ifindex;		/* 0 when the interface is unknown */
	bool seen_in_dump;
	bool bind_fallback_logged;
	bool open_failed_logged;
	bool send_failed_logged;
	/* Reopen the sockets at the next round: their source binding may
	 * be stale (a VIP that left, or one that arrived). */
	bool rebind;
	uint64_t ignored;		/* replies that matched nothing */
	uint64_t ignored_logged;
	struct health_stats st;
};

struct health {
	struct ev_loop *loop;
	const struct config *cfg;
	health_cb cb;
	void *data;
	uint64_t cookie;
	struct mnl_socket *nl;
	int nlfd;
	uint32_t dump_seq;		/* seq of the dump in flight, 0 if none */
	uint32_t next_seq;
	bool dump_wanted;		/* a dump must be (re)started */
	bool first_dump;
	uint64_t nl_overruns;
	struct health_prov prov[CFG_MAX_PROVIDERS];
	size_t nprov;
};

bool
health_fsm_step(struct health_fsm *fsm, bool round_good, unsigned fall,
    unsigned rise)
{
	if (fall == 0)
		fall = 1;
	if (rise == 0)
		rise = 1;
	if (round_good) {
		fsm->bad_run = 0;
		if (fsm->good_run < UINT32_MAX)
			fsm->good_run++;
		if (!fsm->up && fsm->good_run >= rise) {
			fsm->up = true;
			fsm->good_run = 0;
		}
	} else {
		fsm->good_run = 0;
		if (fsm->bad_run < UINT32_MAX)
			fsm->bad_run++;
		if (fsm->up && fsm->bad_run >= fall) {
			fsm->up = false;
			fsm->bad_run = 0;
		}
	}
	return fsm->up;
}

/* 1 - prod(1 - a_i): the chance that at least one of n independent
 * providers is up. */
static double
health_combine(const double *avail, size_t n)
{
	double none = 1.0;

	for (size_t i = 0; i < n; i++) {
		double a = avail[i];

		if (a < 0.0)
			a = 0.0;
		if (a > 1.0)
			a = 1.0;
		none *= 1.0 - a;
	}
	return 1.0 - none;
}

static void
health_notify(struct health_prov *p, enum health_event ev, const char *reason)
{
	struct health *h = p->h;

	snprintf(p->st.last_reason, sizeof(p->st.last_reason), "%s", reason);
	if (ev == HEALTH_UP || ev == HEALTH_DOWN) {
		p->st.last_change_ms = ev_now_ms(h->loop);
		if (p->st.last_change_ms == 0)
			p->st.last_change_ms = 1;
		log_info("health: %s is %s: %s", p->cp->name,
		    ev == HEALTH_UP ? "up" : "down", reason);
	} else {
		log_info("health: %s: link %s: %s", p->cp->name,
		    ev == HEALTH_LINK_UP ? "up" : "down", reason);
	}
	if (h->cb != NULL)
		h->cb(p->idx, ev, reason, h->data);
}

/* `require` as configured, kept within 1..ntargets so that a round can be
 * good at all. */
static unsigned
prov_require(const struct health_prov *p)
{
	unsigned r = p->cp->health.require;

	if (r > p->ntargets)
		r = (unsigned)p->ntargets;
	return r ? r : 1;
}

/* Closes the current round: counts it, steps the hysteresis, and tells
 * the owner when the state changed. */
static void
prov_round_end(struct health_prov *p)
{
	const struct cfg_health *hc = &p->cp->health;
	bool good, was_up = p->fsm.up;
	char reason[64];

	for (size_t i = 0; i < p->ntargets; i++) {
		if (p->targets[i].pending)
			p->st.timeouts++;
		p->targets[i].pending = false;
		p->targets[i].replied = false;
	}
	good = p->link_up && !p->round_spoiled &&
	    p->round_replies >= prov_require(p);
	p->st.rounds++;
	if (good)
		p->st.rounds_good++;
	if (p->ignored != p->ignored_logged) {
		log_debug("health: %s: %" PRIu64 " unmatched replies ignored",
		    p->cp->name, p->ignored - p->ignored_logged);
		p->ignored_logged = p->ignored;
	}
	/* While the link is down the provider is already down and the rise
	 * count starts only when the carrier is back. */
	if (!p->link_up)
		return;
	health_fsm_step(&p->fsm, good, hc->fall, hc->rise);
	p->st.up = p->fsm.up;
	if (was_up && !p->fsm.up) {
		snprintf(reason, sizeof(reason), "%u rounds without %u of %zu replies",
		    hc->fall ? hc->fall : 1, prov_require(p), p->ntargets);
		health_notify(p, HEALTH_DOWN, reason);
	} else if (!was_up && p->fsm.up) {
		snprintf(reason, sizeof(reason), "%u good rounds",
		    hc->rise ? hc->rise : 1);
		health_notify(p, HEALTH_UP, reason);
	}
}

/* The carrier of the provider's interface changed (or it appeared or
 * vanished). */
static void
prov_link_change(struct health_prov *p, bool up, const char *why)
{
	if (up == p->link_up)
		return;
	p->link_up = up;
	p->st.link_up = up;
	p->fsm.bad_run = 0;
	p->fsm.good_run = 0;
	if (up) {
		health_notify(p, HEALTH_LINK_UP, why);
		return;
	}
	p->round_spoiled = true;
	health_notify(p, HEALTH_LINK_DOWN, why);
	if (p->fsm.up) {
		p->fsm.up = false;
		p->st.up = false;
		health_notify(p, HEALTH_DOWN, "link down");
	}
}

/* ---- ICMP ---- */

static uint16_t
health_cksum(const void *buf, size_t len)
{
	const uint8_t *b = buf;
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)b[i] << 8 | b[i + 1];
	if (len & 1)
		sum += (uint32_t)b[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

static bool
addr_is_v6_linklocal(const struct netaddr *a)
{
	return a->family == AF_INET6 && a->a[0] == 0xfe && (a->a[1] & 0xc0) == 0x80;
}

static void
prov_close(struct health_prov *p)
{
	if (p->fd4 != -1) {
		ev_fd_del(p->h->loop, p->fd4);
		close(p->fd4);
		p->fd4 = -1;
	}
	if (p->fd6 != -1) {
		ev_fd_del(p->h->loop, p->fd6);
		close(p->fd6);
		p->fd6 = -1;
	}
	p->bound_ifindex = 0;
}

static void prov_read(int fd, void *data);
static void health_nl_dump(struct health *h);

static int
prov_open_one(struct health_prov *p, int family)
{
	const struct cfg_provider *cp = p->cp;
	int fd, proto = family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;
	int saved;

	fd = socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
	if (fd == -1)
		return -1;
	if (family == AF_INET) {
		struct icmp_filter filt = { .data = ~(1U << ICMP_ECHOREPLY) };

		if (setsockopt(fd, SOL_RAW, ICMP_FILTER, &filt, sizeof(filt)) == -1)
			goto fail;
	} else {
		struct icmp6_filter filt;

		/* The kernel computes and checks ICMPv6 checksums itself. */
		ICMP6_FILTER_SETBLOCKALL(&filt);
		ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filt);
		if (setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filt,
		    sizeof(filt)) == -1)
			goto fail;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, cp->interface,
	    (socklen_t)strnlen(cp->interface, sizeof(cp->interface))) == -1)
		goto fail;
	if (cp->mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &cp->mark,
	    sizeof(cp->mark)) == -1)
		goto fail;
	if (cp->source.family == family) {
		struct sockaddr_storage ss = { 0 };
		socklen_t sl;

		if (family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, cp->source.a, 4);
			sl = sizeof(*sin);
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, cp->source.a, 16);
			if (addr_is_v6_linklocal(&cp->source))
				sin6->sin6_scope_id = p->ifindex;
			sl = sizeof(*sin6);
		}
		if (bind(fd, (struct sockaddr *)&ss, sl) == -1) {
			if (errno != EADDRNOTAVAIL)
				goto fail;
			/* The SNAT address is a VIP the other node may hold:
			 * let the kernel pick the interface's address. */
			if (!p->bind_fallback_logged) {
				log_debug("health: %s: source address not assigned "
				    "here, probing from the interface address",
				    cp->name);
				p->bind_fallback_logged = true;
			}
		}
	}
	if (ev_fd_add(p->h->loop, fd, prov_read, NULL, p) == -1)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/* Opens the sockets the provider's targets need.  Returns 0, or -1 with
 * errno (ENODEV while the interface does not exist). */
static int
prov_open(struct health_prov *p)
{
	bool want4 = false, want6 = false, was_closed;
	int rc = 0, err = 0;

	for (size_t i = 0; i < p->ntargets; i++) {
		if (p->targets[i].addr.family == AF_INET)
			want4 = true;
		else if (p->targets[i].addr.family == AF_INET6)
			want6 = true;
	}
	was_closed = p->fd4 == -1 && p->fd6 == -1;
	if (want4 && p->fd4 == -1 && (p->fd4 = prov_open_one(p, AF_INET)) == -1) {
		err = errno;
		rc = -1;
	}
	if (want6 && p->fd6 == -1 && (p->fd6 = prov_open_one(p, AF_INET6)) == -1) {
		if (rc == 0)
			err = errno;
		rc = -1;
	}
	if (was_closed && (p->fd4 != -1 || p->fd6 != -1))
		p->bound_ifindex = p->ifindex;
	errno = err;
	return rc;
}

static void
prov_send(struct health_prov *p, struct health_target *t)
{
	uint8_t pkt[8 + HEALTH_PAYLOAD];
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	uint16_t id = htons(p->ident), seq;
	int64_t now = ev_clock_us();
	int fd;
	ssize_t n;

	seq = ++p->seq;
	memset(pkt, 0, sizeof(pkt));
	pkt[0] = t->addr.family == AF_INET ? ICMP_ECHO : ICMP6_ECHO_REQUEST;
	memcpy(pkt + 4, &id, 2);
	pkt[6] = (uint8_t)(seq >> 8);
	pkt[7] = (uint8_t)seq;
	memcpy(pkt + 8, &p->h->cookie, 8);
	memcpy(pkt + 16, &now, 8);
	if (t->addr.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		uint16_t sum;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, t->addr.a, 4);
		sl = sizeof(*sin);
		sum = health_cksum(pkt, sizeof(pkt));
		memcpy(pkt + 2, &sum, 2);
		fd = p->fd4;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, t->addr.a, 16);
		if (addr_is_v6_linklocal(&t->addr))
			sin6->sin6_scope_id = p->ifindex;
		sl = sizeof(*sin6);
		fd = p->fd6;	/* the kernel fills in the checksum */
	}
	if (fd == -1) {
		p->st.send_errors++;
		return;
	}
	n = sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&ss, sl);
	if (n != (ssize_t)sizeof(pkt)) {
		p->st.send_errors++;
		/* A socket bound to a VIP that has moved to the peer fails
		 * every send (ENETUNREACH): fresh sockets bind again, to the
		 * interface's address if the VIP is not here. */
		p->rebind = true;
		if (!p->send_failed_logged) {
			char a[NETADDR_STRLEN];

			log_warn("health: %s: probe to %s", p->cp->name,
			    netaddr_str(&t->addr, a, sizeof(a)));
			p->send_failed_logged = true;
		}
		return;
	}
	p->send_failed_logged = false;
	p->st.probes_sent++;
	t->seq = seq;
	t->sent_us = now;
	t->pending = true;
}

static void
prov_round_start(struct health_prov *p)
{
	p->round_replies = 0;
	p->round_spoiled = false;
	for (size_t i = 0; i < p->ntargets; i++) {
		p->targets[i].pending = false;
		p->targets[i].replied = false;
	}
	/* No probes while the link is down: they could only fail, and the
	 * round counts as bad anyway. */
	if (!p->link_up)
		return;
	/* Sockets bound to an ifindex that no longer exists never work
	 * again. */
	if ((p->bound_ifindex != 0 && p->ifindex != 0 &&
	    p->bound_ifindex != p->ifindex) || p->rebind)
		prov_close(p);
	p->rebind = false;
	/* Targets whose socket could not be opened count as send errors.  A
	 * missing interface is reported by the link dump instead. */
	if (prov_open(p) == -1) {
		if (errno != ENODEV && !p->open_failed_logged) {
			log_warn("health: %s: probe socket on %s", p->cp->name,
			    p->cp->interface);
			p->open_failed_logged = true;
		}
	} else
		p->open_failed_logged = false;
	for (size_t i = 0; i < p->ntargets; i++)
		prov_send(p, &p->targets[i]);
}

/*
 * Matches one echo reply against the open round.  `icmp` points at the
 * ICMP header.  Returns true when it was a reply to one of our probes.
 */
static bool
prov_match(struct health_prov *p, const struct netaddr *from,
    const uint8_t *icmp, size_t len, int64_t now_us)
{
	uint8_t want_type = from->family == AF_INET ? ICMP_ECHOREPLY :
	    ICMP6_ECHO_REPLY;
	uint16_t id, seq;
	double rtt;

	if (len < 8 + HEALTH_PAYLOAD || icmp[0] != want_type || icmp[1] != 0)
		return false;
	if (from->family == AF_INET && health_cksum(icmp, len) != 0)
		return false;
	id = (uint16_t)(icmp[4] << 8 | icmp[5]);
	seq = (uint16_t)(icmp[6] << 8 | icmp[7]);
	if (id != p->ident || memcmp(icmp + 8, &p->h->cookie, 8) != 0)
		return false;
	for (size_t i = 0; i < p->ntargets; i++) {
		struct health_target *t = &p->targets[i];

		if (!t->pending || t->seq != seq || !netaddr_eq(&t->addr, from))
			continue;
		t->pending = false;
		t->replied = true;
		p->round_replies++;
		p->st.replies++;
		rtt = (double)(now_us - t->sent_us) / 1000.0;
		p->st.rtt_ms_last = rtt;
		p->st.rtt_ms_avg = p->st.rtt_ms_avg < 0 ? rtt :
		    p->st.rtt_ms_avg * 0.875 + rtt * 0.125;
		return true;
	}
	return false;
}

/* Strips the IPv4 header a raw socket delivers.  Returns the ICMP part or
 * NULL. */
static const uint8_t *
icmp4_payload(const uint8_t *buf, size_t n, size_t *len)
{
	size_t hl;

	if (n < sizeof(struct iphdr))
		return NULL;
	hl = (size_t)(buf[0] & 0x0f) * 4;
	if ((buf[0] >> 4) != 4 || hl < sizeof(struct iphdr) || hl > n ||
	    buf[9] != IPPROTO_ICMP)
		return NULL;
	*len = n - hl;
	return buf + hl;
}

static void
prov_read(int fd, void *data)
{
	struct health_prov *p = data;
	uint8_t buf[HEALTH_PKT_MAX];

	for (int i = 0; i < HEALTH_READ_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct netaddr from = { 0 };
		const uint8_t *icmp;
		size_t len = 0;
		ssize_t n;

		n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&ss, &sl);
		if (n == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("health: %s: recvfrom", p->cp->name);
			return;
		}
		if (ss.ss_family == AF_INET && fd == p->fd4) {
			from.family = AF_INET;
			memcpy(from.a, &((struct sockaddr_in *)&ss)->sin_addr, 4);
			icmp = icmp4_payload(buf, (size_t)n, &len);
		} else if (ss.ss_family == AF_INET6 && fd == p->fd6) {
			from.family = AF_INET6;
			memcpy(from.a, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
			icmp = buf;
			len = (size_t)n;
		} else
			icmp = NULL;
		if (icmp == NULL || !prov_match(p, &from, icmp, len, ev_clock_us()))
			p->ignored++;
	}
}

static int64_t
prov_timer(void *data)
{
	struct health_prov *p = data;
	const struct cfg_health *hc = &p->cp->health;
	int64_t interval = hc->interval_ms ? hc->interval_ms : 1000;
	int64_t timeout = hc->timeout_ms ? hc->timeout_ms : interval / 2;

	if (timeout > interval)
		timeout = interval;
	/* A dump that could not be requested is retried here. */
	if (p->h->dump_wanted && p->h->dump_seq == 0)
		health_nl_dump(p->h);
	if (p->phase == PHASE_SEND) {
		prov_round_start(p);
		p->phase = PHASE_EVAL;
		return timeout;
	}
	/* Replies already queued count: they arrived before the deadline
	 * even if the loop has not read them yet. */
	if (p->fd4 != -1)
		prov_read(p->fd4, p);
	if (p->fd6 != -1)
		prov_read(p->fd6, p);
	prov_round_end(p);
	p->phase = PHASE_SEND;
	return interval - timeout;
}

/* ---- rtnetlink ---- */

struct link_attrs {
	const char *name;
	bool has_operstate;
	uint8_t operstate;
};

static int
link_attr_cb(const struct nlattr *attr, void *data)
{
	struct link_attrs *la = data;

	switch (mnl_attr_get_type(attr)) {
	case IFLA_IFNAME:
		if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
			la->name = mnl_attr_get_str(attr);
		break;
	case IFLA_OPERSTATE:
		if (mnl_attr_validate(attr, MNL_TYPE_U8) == 0) {
			la->has_operstate = true;
			la->operstate = mnl_attr_get_u8(attr);
		}
		break;
	}
	return MNL_CB_OK;
}

/* One RTM_NEWLINK or RTM_DELLINK message. */
static void
health_nl_link(struct health *h, const struct nlmsghdr *nlh)
{
	const struct ifinfomsg *ifi;
	struct link_attrs la = { 0 };
	bool gone = nlh->nlmsg_type == RTM_DELLINK, up;

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifi)))
		return;
	ifi = mnl_nlmsg_get_payload(nlh);
	if (mnl_attr_parse(nlh, sizeof(*ifi), link_attr_cb, &la) != MNL_CB_OK)
		return;
	/* IFF_RUNNING is the kernel's summary of carrier and operstate (UP
	 * or UNKNOWN, for devices that do not report one). */
	up = !gone && (ifi->ifi_flags & IFF_UP) && (ifi->ifi_flags & IFF_RUNNING);
	if (up && la.has_operstate && la.operstate != IF_OPER_UP &&
	    la.operstate != IF_OPER_UNKNOWN)
		up = false;
	for (size_t i = 0; i < h->nprov; i++) {
		struct health_prov *p = &h->prov[i];
		bool named = la.name != NULL && strncmp(la.name, p->cp->interface,
		    sizeof(p->cp->interface)) == 0;

		if (named && !gone) {
			if (nlh->nlmsg_seq != 0 && nlh->nlmsg_seq == h->dump_seq)
				p->seen_in_dump = true;
			p->ifindex = (unsigned)ifi->ifi_index;
			prov_link_change(p, up, up ? "link up" : "link down");
		} else if ((gone && named) || (p->ifindex != 0 &&
		    p->ifindex == (unsigned)ifi->ifi_index)) {
			/* Deleted, or renamed away from the provider's name. */
			if (p->link_up)
				log_warnx("health: %s: interface %s is gone",
				    p->cp->name, p->cp->interface);
			p->ifindex = 0;
			prov_link_change(p, false, "interface gone");
		}
	}
}

static void
health_nl_dump_done(struct health *h)
{
	h->dump_seq = 0;
	for (size_t i = 0; i < h->nprov; i++) {
		struct health_prov *p = &h->prov[i];

		if (p->seen_in_dump)
			continue;
		if (p->link_up || h->first_dump)
			log_warnx("health: %s: interface %s does not exist",
			    p->cp->name, p->cp->interface);
		p->ifindex = 0;
		prov_link_change(p, false, "interface missing");
	}
	h->first_dump = false;
}

/* Starts a full RTM_GETLINK dump.  On failure the next round retries. */
static void
health_nl_dump(struct health *h)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;

	if (h->dump_seq != 0) {
		/* One dump at a time: restart when this one is done. */
		h->dump_wanted = true;
		return;
	}
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	if (++h->next_seq == 0)
		h->next_seq = 1;
	nlh->nlmsg_seq = h->next_seq;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	if (mnl_socket_sendto(h->nl, nlh, nlh->nlmsg_len) == -1) {
		log_warn("health: link dump request");
		h->dump_wanted = true;
		return;
	}
	h->dump_wanted = false;
	h->dump_seq = nlh->nlmsg_seq;
	for (size_t i = 0; i < h->nprov; i++)
		h->prov[i].seen_in_dump = false;
}

static void
health_nl_read(int fd, void *data)
{
	struct health *h = data;
	char buf[MNL_SOCKET_BUFFER_SIZE];

	(void)fd;
	for (int i = 0; i < HEALTH_NL_BATCH; i++) {
		ssize_t n = mnl_socket_recvfrom(h->nl, buf, sizeof(buf));
		const struct nlmsghdr *nlh;
		int left;

		if (n == -1) {
			if (errno == ENOBUFS) {
				/* Events were lost: the state is only known
				 * again after a fresh dump. */
				h->nl_overruns++;
				log_debug("health: rtnetlink overrun, re-dumping links");
				health_nl_dump(h);
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("health: rtnetlink recv");
			return;
		}
		left = (int)n;
		for (nlh = (const struct nlmsghdr *)buf; nlmsg_ok(nlh, left);
		    nlh = mnl_nlmsg_next(nlh, &left)) {
			bool ours = h->dump_seq != 0 && nlh->nlmsg_seq == h->dump_seq;

			if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
				h->dump_wanted = true;
			switch (nlh->nlmsg_type) {
			case NLMSG_DONE:
				if (ours) {
					health_nl_dump_done(h);
					if (h->dump_wanted)
						health_nl_dump(h);
				}
				break;
			case NLMSG_ERROR:
				if (ours) {
					log_warnx("health: link dump failed");
					h->dump_seq = 0;
					h->dump_wanted = true;
				}
				break;
			case RTM_NEWLINK:
			case RTM_DELLINK:
				health_nl_link(h, nlh);
				break;
			}
		}
	}
}

static int
health_nl_open(struct health *h)
{
	int rcvbuf = HEALTH_NL_RCVBUF;

	if ((h->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK)) == NULL)
		return -1;
	h->nlfd = mnl_socket_get_fd(h->nl);
	/* Bigger than the default so that a burst of link events (a switch
	 * reboot) rarely overruns; an overrun is handled by a re-dump. */
	(void)setsockopt(h->nlfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (mnl_socket_bind(h->nl, RTMGRP_LINK, MNL_SOCKET_AUTOPID) == -1)
		return -1;
	if (ev_fd_add(h->loop, h->nlfd, health_nl_read, NULL, h) == -1)
		return -1;
	return 0;
}

/* ---- object ---- */

static void
health_prov_init(struct health *h, size_t i, uint16_t ident_base)
{
	struct health_prov *p = &h->prov[i];
	const struct cfg_provider *cp = &h->cfg->providers[i];

	p->h = h;
	p->idx = i;
	p->cp = cp;
	p->fd4 = p->fd6 = -1;
	/* Unique per provider in this process (at most 16 providers). */
	p->ident = (uint16_t)(ident_base + i);
	p->phase = PHASE_SEND;
	if (cp->health.ntargets > 0) {
		p->ntargets = cp->health.ntargets > CFG_MAX_TARGETS ?
		    CFG_MAX_TARGETS : cp->health.ntargets;
		for (size_t t = 0; t < p->ntargets; t++)
			p->targets[t].addr = cp->health.targets[t];
	} else if (cp->gateway.family != 0) {
		p->ntargets = 1;
		p->targets[0].addr = cp->gateway;
	}
	/* Providers start up; the link dump corrects this if needed. */
	p->fsm.up = true;
	p->link_up = true;
	p->ifindex = if_nametoindex(cp->interface);
	p->st.up = true;
	p->st.link_up = true;
	p->st.rtt_ms_last = -1;
	p->st.rtt_ms_avg = -1;
}

struct health *
health_create(struct ev_loop *loop, const struct config *cfg, health_cb cb,
    void *data)
{
	struct health *h;
	uint16_t ident_base;
	int saved;

	if (loop == NULL || cfg == NULL || cfg->nproviders > CFG_MAX_PROVIDERS) {
		errno = EINVAL;
		return NULL;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->loop = loop;
	h->cfg = cfg;
	h->cb = cb;
	h->data = data;
	h->nlfd = -1;
	h->nprov = cfg->nproviders;
	h->first_dump = true;
	if (getrandom(&h->cookie, sizeof(h->cookie), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(h->cookie))
		h->cookie = (uint64_t)ev_clock_us() ^ ((uint64_t)getpid() << 32);
	ident_base = (uint16_t)(((unsigned)getpid() << 4) ^ (unsigned)(h->cookie >> 48));
	ident_base &= 0xfff0;
	for (size_t i = 0; i < h->nprov; i++)
		health_prov_init(h, i, ident_base);

	if (health_nl_open(h) == -1) {
		log_warn("health: rtnetlink socket");
		goto fail;
	}
	health_nl_dump(h);
	for (size_t i = 0; i < h->nprov; i++) {
		struct health_prov *p = &h->prov[i];

		/* A missing interface (ENODEV) is no error: the dump reports
		 * it down and the sockets are opened when it appears. */
		if (prov_open(p) == -1 && errno != ENODEV) {
			log_warn("health: %s: probe socket on %s", p->cp->name,
			    p->cp->interface);
			goto fail;
		}
		if ((p->timer = ev_timer_add(loop, 0, prov_timer, p)) == NULL)
			goto fail;
	}
	return h;
fail:
	saved = errno;
	health_destroy(h);
	errno = saved;
	return NULL;
}

void
health_destroy(struct health *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->nprov; i++) {
		prov_close(&h->prov[i]);
		ev_timer_del(h->loop, h->prov[i].timer);
	}
	if (h->nl != NULL) {
		if (h->nlfd != -1)
			ev_fd_del(h->loop, h->nlfd);
		mnl_socket_close(h->nl);
	}
	free(h);
}

void
health_rebind(struct health *h)
{
	for (size_t i = 0; i < h->nprov; i++)
		h->prov[i].rebind = true;
}

bool
health_up(const struct health *h, size_t provider)
{
	if (h == NULL || provider >= h->nprov)
		return false;
	return h->prov[provider].fsm.up;
}

void
health_assume(struct health *h, size_t provider, bool up)
{
	struct health_prov *p;

	if (h == NULL || provider >= h->nprov)
		return;
	p = &h->prov[provider];
	p->fsm.up = up;
	p->fsm.bad_run = 0;
	p->fsm.good_run = 0;
	p->st.up = up;
}

void
health_get(const struct health *h, size_t provider, struct health_stats *out)
{
	if (h == NULL || provider >= h->nprov) {
		memset(out, 0, sizeof(*out));
		out->rtt_ms_last = out->rtt_ms_avg = -1;
		return;
	}
	*out = h->prov[provider].st;
	out->up = h->prov[provider].fsm.up;
	out->link_up = h->prov[provider].link_up;
}

double
health_availability(const struct health *h, size_t provider)
{
	const struct health_stats *st;

	if (h == NULL || provider >= h->nprov)
		return 0.0;
	st = &h->prov[provider].st;
	if (st->rounds == 0)
		return 1.0;
	return (double)st->rounds_good / (double)st->rounds;
}

double
health_combined_availability(const struct health *h)
{
	double a[CFG_MAX_PROVIDERS];

	if (h == NULL)
		return 0.0;
	for (size_t i = 0; i < h->nprov; i++)
		a[i] = health_availability(h, i);
	return health_combine(a, h->nprov);
}
