#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include "ct.h"
#include "log.h"

#define CT_EVENT_RCVBUF (32 << 20)

#define CT_MSG_MAX 512		/* bytes of one create, update or delete */
#define CT_WRITE_BATCH 256	/* messages per sendmsg */

enum ct_write_op {
	CT_OP_CREATE_FIRST,	/* create; on EEXIST update */
	CT_OP_UPDATE_FIRST,	/* update; on ENOENT create */
	CT_OP_DELETE,
	CT_OP_DONE,		/* a retry: no further fallback */
};

struct ct_write_item {
	struct flow flow;
	uint8_t op;		/* enum ct_write_op */
	uint8_t kind;		/* enum ct_msg of the message sent */
};

struct ct {
	struct ev_loop *loop;
	const struct config *cfg;
	ct_event_cb cb;
	void *data;
	struct mnl_socket *ev;
	int evfd;
	struct ct_stats st;
	char buf[32768];

	struct mnl_socket *wr;
	int wrfd;
	uint32_t wr_seq;	/* of wr_items[0] */
	size_t wr_n, wr_len;
	struct ct_write_item wr_items[CT_WRITE_BATCH];
	char wr_buf[CT_WRITE_BATCH * CT_MSG_MAX];
	struct ct_write_stats wst;
	bool new_left;		/* the event socket is out of the NEW group */
	bool new_warned;
};

static const uint8_t ct_l4_map[] = {
	[TCP_CONNTRACK_NONE] = FLOW_L4_NONE,
	[TCP_CONNTRACK_SYN_SENT] = FLOW_L4_SYN_SENT,
	[TCP_CONNTRACK_SYN_RECV] = FLOW_L4_SYN_RECV,
	[TCP_CONNTRACK_ESTABLISHED] = FLOW_L4_ESTABLISHED,
	[TCP_CONNTRACK_FIN_WAIT] = FLOW_L4_FIN_WAIT,
	[TCP_CONNTRACK_CLOSE_WAIT] = FLOW_L4_CLOSE_WAIT,
	[TCP_CONNTRACK_LAST_ACK] = FLOW_L4_LAST_ACK,
	[TCP_CONNTRACK_TIME_WAIT] = FLOW_L4_TIME_WAIT,
	[TCP_CONNTRACK_CLOSE] = FLOW_L4_CLOSE,
};

static int
ct_provider_of_mark(const struct config *cfg, uint32_t mark)
{
	for (size_t i = 0; i < cfg->nproviders; i++)
		if ((mark & cfg->mark_mask) == cfg->providers[i].mark)
			return (int)i;
	return -1;
}

/* Returns 0 and fills *f, 1 when the entry has no provider mark, -1 when
 * the message could not be read. */
static int
ct_to_flow(const struct ct *ct, const struct nlmsghdr *nlh, struct flow *f)
{
	struct nf_conntrack *c = nfct_new();
	int provider, rc = -1;
	uint8_t l3;

	if (c == NULL)
		return -1;
	if (nfct_nlmsg_parse(nlh, c) < 0 || !nfct_attr_is_set(c, ATTR_L3PROTO))
		goto out;
	memset(f, 0, sizeof(*f));
	f->mark = nfct_attr_is_set(c, ATTR_MARK) ? nfct_get_attr_u32(c, ATTR_MARK) : 0;
	if ((provider = ct_provider_of_mark(ct->cfg, f->mark)) < 0) {
		rc = 1;
		goto out;
	}
	f->provider = (uint8_t)provider;
	l3 = nfct_get_attr_u8(c, ATTR_L3PROTO);
	f->key.family = l3;
	f->key.proto = nfct_get_attr_u8(c, ATTR_L4PROTO);
	if (l3 == AF_INET) {
		uint32_t a;

		a = nfct_get_attr_u32(c, ATTR_ORIG_IPV4_SRC);
		memcpy(f->key.src, &a, 4);
		a = nfct_get_attr_u32(c, ATTR_ORIG_IPV4_DST);
		memcpy(f->key.dst, &a, 4);
		a = nfct_get_attr_u32(c, ATTR_REPL_IPV4_DST);
		memcpy(f->nat_src, &a, 4);
	} else if (l3 == AF_INET6) {
		memcpy(f->key.src, nfct_get_attr(c, ATTR_ORIG_IPV6_SRC), 16);
		memcpy(f->key.dst, nfct_get_attr(c, ATTR_ORIG_IPV6_DST), 16);
		memcpy(f->nat_src, nfct_get_attr(c, ATTR_REPL_IPV6_DST), 16);
	} else
		goto out;
	if (nfct_attr_is_set(c, ATTR_ORIG_PORT_SRC)) {
		f->key.sport = ntohs(nfct_get_attr_u16(c, ATTR_ORIG_PORT_SRC));
		f->key.dport = ntohs(nfct_get_attr_u16(c, ATTR_ORIG_PORT_DST));
		f->nat_port = ntohs(nfct_get_attr_u16(c, ATTR_REPL_PORT_DST));
	}
	if (f->key.proto == IPPROTO_TCP && nfct_attr_is_set(c, ATTR_TCP_STATE)) {
		uint8_t s = nfct_get_attr_u8(c, ATTR_TCP_STATE);
		f->l4state = s < sizeof(ct_l4_map) ? ct_l4_map[s] : FLOW_L4_NONE;
	}
	f->origin = FLOW_OWN;
	rc = 0;
out:
	nfct_destroy(c);
	return rc;
}

static void
ct_on_event(int fd, void *data)
{
	struct ct *ct = data;

	(void)fd;
	/* Bounded per wake-up so the queue is never starved. */
	for (int i = 0; i < 256; i++) {
		ssize_t n = recv(ct->evfd, ct->buf, sizeof(ct->buf), MSG_DONTWAIT);
		const struct nlmsghdr *nlh;
		int len;

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			if (errno == ENOBUFS) {
				ct->st.enobufs++;
				ct->cb(CT_OVERRUN, NULL, ct->data);
				continue;
			}
			log_warn("ct: reading conntrack events");
			return;
		}
		len = (int)n;
		for (nlh = (const struct nlmsghdr *)(const void *)ct->buf; mnl_nlmsg_ok(nlh, len);
		    nlh = mnl_nlmsg_next(nlh, &len)) {
			struct flow f;
			int type = NFNL_MSG_TYPE(nlh->nlmsg_type);
			int rc;

			if (type != IPCTNL_MSG_CT_NEW && type != IPCTNL_MSG_CT_DELETE)
				continue;
			rc = ct_to_flow(ct, nlh, &f);
			if (rc < 0) {
				ct->st.parse_errors++;
				continue;
			}
			if (rc > 0) {
				ct->st.ignored++;
				continue;
			}
			if (type == IPCTNL_MSG_CT_NEW) {
				ct->st.events_new++;
				ct->cb(CT_NEW, &f, ct->data);
			} else {
				ct->st.events_destroy++;
				ct->cb(CT_DESTROY, &f, ct->data);
			}
		}
	}
}

static int
ct_attach_filter(const struct config *cfg, int fd)
{
	struct nfct_filter *filter = nfct_filter_create();
	int rc;

	if (filter == NULL)
		return -1;
	for (size_t i = 0; i < cfg->nproviders; i++) {
		struct nfct_filter_dump_mark m = { cfg->providers[i].mark, cfg->mark_mask };

		nfct_filter_add_attr(filter, NFCT_FILTER_MARK, &m);
	}
	nfct_filter_set_logic(filter, NFCT_FILTER_MARK, NFCT_FILTER_LOGIC_POSITIVE);
	rc = nfct_filter_attach(fd, filter);
	nfct_filter_destroy(filter);
	return rc;
}

struct ct *
ct_create(struct ev_loop *loop, const struct config *cfg, ct_event_cb cb, void *data)
{
	struct ct *ct = calloc(1, sizeof(*ct));
	int rcvbuf = CT_EVENT_RCVBUF, saved;

	if (ct == NULL)
		return NULL;
	ct->loop = loop;
	ct->cfg = cfg;
	ct->cb = cb;
	ct->data = data;
	if ((ct->ev = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC)) == NULL)
		goto fail;
	if (mnl_socket_bind(ct->ev, NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_DESTROY,
	    MNL_SOCKET_AUTOPID) < 0)
		goto fail;
	ct->evfd = mnl_socket_get_fd(ct->ev);
	if (setsockopt(ct->evfd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) == -1)
		setsockopt(ct->evfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (ct_attach_filter(cfg, ct->evfd) == -1) {
		log_warn("ct: attaching the mark filter");
		goto fail;
	}
	/* Writes have a socket of their own, so that their answers never
	 * mix with events.  Answers to a full batch must fit its buffer. */
	if ((ct->wr = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC)) == NULL ||
	    mnl_socket_bind(ct->wr, 0, MNL_SOCKET_AUTOPID) < 0)
		goto fail;
	ct->wrfd = mnl_socket_get_fd(ct->wr);
	rcvbuf = 4 << 20;
	if (setsockopt(ct->wrfd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) == -1)
		setsockopt(ct->wrfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	ct->wr_seq = (uint32_t)time(NULL);
	if (ev_fd_add(loop, ct->evfd, ct_on_event, NULL, ct) == -1)
		goto fail;
	return ct;
fail:
	saved = errno;
	if (ct->ev)
		mnl_socket_close(ct->ev);
	if (ct->wr)
		mnl_socket_close(ct->wr);
	free(ct);
	errno = saved;
	return NULL;
}

void
ct_destroy(struct ct *ct)
{
	if (ct == NULL)
		return;
	ct_write_flush(ct);
	ev_fd_del(ct->loop, ct->evfd);
	mnl_socket_close(ct->ev);
	mnl_socket_close(ct->wr);
	free(ct);
}

struct ct_dump_ctx {
	struct ct *ct;
	ct_dump_cb cb;
	void *data;
	long count;
};

static int
ct_dump_one(const struct nlmsghdr *nlh, void *data)
{
	struct ct_dump_ctx *ctx = data;
	struct flow f;
	int rc = ct_to_flow(ctx->ct, nlh, &f);

	if (rc < 0)
		ctx->ct->st.parse_errors++;
	else if (rc == 0) {
		ctx->count++;
		ctx->cb(&f, ctx->data);
	}
	return MNL_CB_OK;
}

/* One dump per provider mark: the kernel filters by mark/mask. */
static int
ct_dump_mark(struct ct *ct, struct mnl_socket *nl, uint32_t mark, struct ct_dump_ctx *ctx)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(ct->buf);
	struct nfgenmsg *nfh;
	unsigned portid = mnl_socket_get_portid(nl);
	uint32_t seq = (uint32_t)time(NULL);
	ssize_t n;
	int rc;

	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = AF_UNSPEC;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	mnl_attr_put_u32(nlh, CTA_MARK, htonl(mark));
	mnl_attr_put_u32(nlh, CTA_MARK_MASK, htonl(ct->cfg->mark_mask));
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -1;
	do {
		n = mnl_socket_recvfrom(nl, ct->buf, sizeof(ct->buf));
		if (n < 0)
			return -1;
		rc = mnl_cb_run(ct->buf, (size_t)n, seq, portid, ct_dump_one, ctx);
	} while (rc > MNL_CB_STOP);
	return rc < 0 ? -1 : 0;
}

long
ct_dump(struct ct *ct, ct_dump_cb cb, void *data)
{
	struct ct_dump_ctx ctx = { ct, cb, data, 0 };
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	int saved, rcvbuf = 4 << 20;

	if (nl == NULL)
		return -1;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		goto fail;
	setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	for (size_t i = 0; i < ct->cfg->nproviders; i++)
		if (ct_dump_mark(ct, nl, ct->cfg->providers[i].mark, &ctx) == -1)
			goto fail;
	mnl_socket_close(nl);
	ct->st.dumps++;
	ct->st.dumped += (uint64_t)ctx.count;
	return ctx.count;
fail:
	saved = errno;
	mnl_socket_close(nl);
	errno = saved;
	return -1;
}

/*
 * One ctnetlink message about f's entry.  CT_MSG_CREATE carries
 * everything (see ct.h); CT_MSG_UPDATE what the kernel lets an existing
 * entry change (mark, timeout, TCP state: NAT and status cannot change
 * after creation); CT_MSG_DELETE the original tuple alone.
 */
enum ct_msg {
	CT_MSG_CREATE,
	CT_MSG_UPDATE,
	CT_MSG_DELETE,
};

static int
ct_put_msg(void *buf, size_t space, const struct flow *f, uint32_t timeout_s,
    uint32_t seq, enum ct_msg kind)
{
	struct nf_conntrack *c;
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;
	int rc = -1;

	/* The largest message is well under CT_MSG_MAX bytes. */
	if (space < CT_MSG_MAX) {
		errno = ENOSPC;
		return -1;
	}
	if ((c = nfct_new()) == NULL)
		return -1;
	nfct_set_attr_u8(c, ATTR_L3PROTO, f->key.family);
	nfct_set_attr_u8(c, ATTR_L4PROTO, f->key.proto);
	if (f->key.family == AF_INET) {
		uint32_t a;

		memcpy(&a, f->key.src, 4);
		nfct_set_attr_u32(c, ATTR_ORIG_IPV4_SRC, a);
		memcpy(&a, f->key.dst, 4);
		nfct_set_attr_u32(c, ATTR_ORIG_IPV4_DST, a);
		if (kind == CT_MSG_CREATE) {
			memcpy(&a, f->nat_src, 4);
			nfct_set_attr_u32(c, ATTR_SNAT_IPV4, a);
		}
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
		/* The reply tuple mirrors the original; SNAT rewrites it in
		 * the kernel. */
		nfct_setobjopt(c, NFCT_SOPT_SETUP_REPLY);
		nfct_set_attr_u32(c, ATTR_STATUS, IPS_SEEN_REPLY | IPS_ASSURED);
	}
	if (kind != CT_MSG_DELETE) {
		nfct_set_attr_u32(c, ATTR_MARK, f->mark);
		nfct_set_attr_u32(c, ATTR_TIMEOUT, timeout_s);
		if (f->key.proto == IPPROTO_TCP) {
			uint8_t flags = IP_CT_TCP_FLAG_BE_LIBERAL | IP_CT_TCP_FLAG_SACK_PERM;

			nfct_set_attr_u8(c, ATTR_TCP_STATE, TCP_CONNTRACK_ESTABLISHED);
			nfct_set_attr_u8(c, ATTR_TCP_FLAGS_ORIG, flags);
			nfct_set_attr_u8(c, ATTR_TCP_MASK_ORIG, flags);
			nfct_set_attr_u8(c, ATTR_TCP_FLAGS_REPL, flags);
			nfct_set_attr_u8(c, ATTR_TCP_MASK_REPL, flags);
		}
	}
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) |
	    (kind == CT_MSG_DELETE ? IPCTNL_MSG_CT_DELETE : IPCTNL_MSG_CT_NEW);
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	if (kind == CT_MSG_CREATE)
		nlh->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
	nlh->nlmsg_seq = seq;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = f->key.family;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	if (nfct_nlmsg_build(nlh, c) == 0)
		rc = (int)nlh->nlmsg_len;
	nfct_destroy(c);
	return rc;
}

int
ct_put_create(void *buf, size_t space, const struct flow *f, uint32_t timeout_s,
    uint32_t seq)
{
	return ct_put_msg(buf, space, f, timeout_s, seq, CT_MSG_CREATE);
}

/*
 * The writer.  ctnetlink handles a request inside sendmsg() and queues its
 * acknowledgement before sendmsg() returns, so a batch is sent and its
 * answers read at once, without blocking: the loop never waits on the
 * kernel, and no state outlives a flush except the retries it produced.
 */
static int
ct_write_put(struct ct *ct, const struct flow *f, enum ct_write_op op)
{
	struct ct_write_item *it;
	enum ct_msg kind = op == CT_OP_DELETE ? CT_MSG_DELETE :
	    op == CT_OP_UPDATE_FIRST ? CT_MSG_UPDATE : CT_MSG_CREATE;
	int n;

	if (ct->wr_n == CT_WRITE_BATCH || sizeof(ct->wr_buf) - ct->wr_len < CT_MSG_MAX)
		ct_write_flush(ct);
	n = ct_put_msg(ct->wr_buf + ct->wr_len, sizeof(ct->wr_buf) - ct->wr_len, f,
	    CT_WRITE_TIMEOUT, ct->wr_seq + (uint32_t)ct->wr_n, kind);
	if (n < 0) {
		ct->wst.failed++;
		return -1;
	}
	it = &ct->wr_items[ct->wr_n++];
	it->flow = *f;
	it->op = op;
	it->kind = kind;
	ct->wr_len += (size_t)n;
	return 0;
}

int
ct_write_upsert(struct ct *ct, const struct flow *f, bool expect_exists)
{
	return ct_write_put(ct, f, expect_exists ? CT_OP_UPDATE_FIRST : CT_OP_CREATE_FIRST);
}

int
ct_write_delete(struct ct *ct, const struct flow_key *key)
{
	struct flow f;

	memset(&f, 0, sizeof(f));
	f.key = *key;
	return ct_write_put(ct, &f, CT_OP_DELETE);
}

/* What an answer means for item it; may queue the other half of an
 * upsert (create <-> update). */
static void
ct_write_answer(struct ct *ct, const struct ct_write_item *it, int err,
    struct ct_write_item *retry, size_t *nretry)
{
	if (err == 0) {
		if (it->kind == CT_MSG_CREATE)
			ct->wst.created++;
		else if (it->kind == CT_MSG_UPDATE)
			ct->wst.updated++;
		else
			ct->wst.deleted++;
		return;
	}
	if (it->kind == CT_MSG_DELETE) {
		if (err == -ENOENT)
			ct->wst.not_found++;
		else
			ct->wst.failed++;
		return;
	}
	/* The first half of an upsert found the other case: try it. */
	if ((it->kind == CT_MSG_CREATE && err == -EEXIST && it->op == CT_OP_CREATE_FIRST) ||
	    (it->kind == CT_MSG_UPDATE && err == -ENOENT && it->op == CT_OP_UPDATE_FIRST)) {
		retry[*nretry] = *it;
		retry[*nretry].kind = it->kind == CT_MSG_CREATE ? CT_MSG_UPDATE : CT_MSG_CREATE;
		(*nretry)++;
		return;
	}
	/*
	 * The second half failed too: the original tuple is free but its
	 * translated reply tuple is another entry's (EEXIST on create after
	 * ENOENT on update, or ENOENT on update after EEXIST on create, when
	 * the entry went away in between).  The NAT port is taken.
	 */
	if (err == -EEXIST || err == -ENOENT)
		ct->wst.conflicts++;
	else
		ct->wst.failed++;
	ct->wst.last_errno = -err;
}

/*
 * The NEW events of our own writes are of no use: they are the peer's
 * flows, which the owner ignores.  But the kernel builds an event for each
 * create while anyone listens to the group, about 40 % of the cost of a
 * create, so the event socket leaves the group for the write and joins it
 * again right after.  No own flow can be confirmed meanwhile: own flows
 * are NFQUEUE decisions, whose packets the kernel reinjects, and confirms,
 * inside this thread's verdict calls.  (A RELATED entry, which inherits
 * its master's mark in softirq, would be missed in that window.)  When the
 * join fails, the events since are unknown: the owner is told to resync.
 */
static void
ct_new_events(struct ct *ct, bool join)
{
	int group = NFNLGRP_CONNTRACK_NEW;

	if (join != ct->new_left)
		return;
	if (setsockopt(ct->evfd, SOL_NETLINK, join ? NETLINK_ADD_MEMBERSHIP :
	    NETLINK_DROP_MEMBERSHIP, &group, sizeof(group)) == 0) {
		ct->new_left = !join;
		return;
	}
	if (!ct->new_warned)
		log_warn("ct: %s the conntrack NEW event group", join ? "joining" : "leaving");
	ct->new_warned = true;
	if (join)
		ct->cb(CT_OVERRUN, NULL, ct->data);
}

/* Sends wr_buf and reads every answer.  Returns the number of items that
 * must be sent again in their second form (left in retry[]). */
static size_t
ct_write_send(struct ct *ct, struct ct_write_item *retry)
{
	size_t answered = 0, nretry = 0;
	char rbuf[16384];
	ssize_t sent;
	int saved;

	if (ct->wr_n == 0)
		return 0;
	ct_new_events(ct, false);
	sent = mnl_socket_sendto(ct->wr, ct->wr_buf, ct->wr_len);
	saved = errno;
	ct_new_events(ct, true);
	if (sent < 0) {
		ct->wst.failed += ct->wr_n;
		ct->wst.last_errno = saved;
		errno = saved;
		log_warn("ct: writing %zu entries to the kernel", ct->wr_n);
		goto done;
	}
	while (answered < ct->wr_n) {
		ssize_t r = recv(ct->wrfd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
		int len = (int)r;

		if (r < 0) {
			/* ENOBUFS: answers were lost; count what is missing. */
			if (errno == ENOBUFS)
				ct->wst.enobufs++;
			break;
		}
		for (const struct nlmsghdr *h = (const void *)rbuf; mnl_nlmsg_ok(h, len);
		    h = mnl_nlmsg_next(h, &len)) {
			const struct nlmsgerr *e;
			uint32_t idx;

			if (h->nlmsg_type != NLMSG_ERROR)
				continue;
			e = mnl_nlmsg_get_payload(h);
			idx = e->msg.nlmsg_seq - ct->wr_seq;
			if (idx >= ct->wr_n)
				continue;
			answered++;
			ct_write_answer(ct, &ct->wr_items[idx], e->error, retry, &nretry);
		}
	}
	if (answered < ct->wr_n)
		ct->wst.unanswered += ct->wr_n - answered;
done:
	ct->wr_seq += (uint32_t)ct->wr_n;
	ct->wr_n = 0;
	ct->wr_len = 0;
	return nretry;
}

void
ct_write_flush(struct ct *ct)
{
	struct ct_write_item retry[CT_WRITE_BATCH];
	size_t nretry = ct_write_send(ct, retry);

	if (nretry == 0)
		return;
	for (size_t i = 0; i < nretry; i++) {
		int n = ct_put_msg(ct->wr_buf + ct->wr_len, sizeof(ct->wr_buf) - ct->wr_len,
		    &retry[i].flow, CT_WRITE_TIMEOUT,
		    ct->wr_seq + (uint32_t)ct->wr_n, retry[i].kind);

		if (n < 0) {
			ct->wst.failed++;
			continue;
		}
		ct->wr_items[ct->wr_n++] = retry[i];
		/* Second halves never retry: op is done. */
		ct->wr_items[ct->wr_n - 1].op = CT_OP_DONE;
		ct->wr_len += (size_t)n;
	}
	/* Second halves produce no further retries. */
	ct_write_send(ct, retry);
}

void
ct_get_write_stats(const struct ct *ct, struct ct_write_stats *out)
{
	*out = ct->wst;
}

void
ct_get_stats(const struct ct *ct, struct ct_stats *out)
{
	*out = ct->st;
}
