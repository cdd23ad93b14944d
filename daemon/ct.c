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
#include "nlmsg.h"

#define CT_EVENT_RCVBUF (32 << 20)
#define CT_EVENT_VLEN 64	/* events per recvmmsg */
#define CT_EVENT_ROUNDS 16	/* recvmmsg calls per wake-up at most */
#define CT_EVENT_MSG_MAX 4096	/* one event; a dump's buffer is all of buf */
#define CT_EVENT_HOLD_MS 5
#define CT_DUMP_READS 8		/* recv() calls per wake-up of an asynchronous dump */

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
	struct ev_timer *hold;	/* the event socket rests until it fires */
	char buf[CT_EVENT_VLEN][CT_EVENT_MSG_MAX];
	/* Set up once: recvmmsg() writes only msg_len and msg_flags. */
	struct mmsghdr mm[CT_EVENT_VLEN];
	struct iovec iov[CT_EVENT_VLEN];

	struct mnl_socket *wr;
	int wrfd;
	uint32_t wr_seq;	/* of wr_items[0] */
	size_t wr_n, wr_len;
	struct ct_write_item wr_items[CT_WRITE_BATCH];
	char wr_buf[CT_WRITE_BATCH * CT_MSG_MAX];
	struct ct_write_stats wst;
	bool new_left;		/* the event socket is out of the NEW group */
	bool new_warned;
	bool behind;		/* overrun, and not read empty since */
	struct ct_dump *dump;	/* the asynchronous dump running, if any */
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

int
ct_provider_of_mark(const struct config *cfg, uint32_t mark)
{
	for (size_t i = 0; i < cfg->nproviders; i++)
		if ((mark & cfg->mark_mask) == cfg->providers[i].mark)
			return (int)i;
	return -1;
}

/*
 * The parser: only the attributes a flow needs, read straight from the
 * message.  The kernel's event is trusted for its content, not for its
 * shape: every attribute's length is checked before it is read.
 */
struct ct_tuple {
	uint8_t src[16], dst[16];
	uint16_t sport, dport;	/* host order */
	uint8_t proto;
	bool has_src, has_dst, has_proto, has_ports;
};

static bool
ct_attr_copy(const struct nlattr *a, void *out, size_t len)
{
	if (nlattr_data_len(a) != len)
		return false;
	memcpy(out, nlattr_data(a), len);
	return true;
}

static int
ct_parse_tuple(const struct nlattr *nest, uint8_t family, struct ct_tuple *t)
{
	const struct nlattr *a, *b;
	size_t alen = family == AF_INET ? 4 : 16, aleft, bleft;

	nlattr_for_each_nested(a, aleft, nest) {
		switch (nlattr_type(a)) {
		case CTA_TUPLE_IP:
			nlattr_for_each_nested(b, bleft, a) {
				uint16_t type = nlattr_type(b);

				if (type == (family == AF_INET ? CTA_IP_V4_SRC : CTA_IP_V6_SRC)) {
					if (!(t->has_src = ct_attr_copy(b, t->src, alen)))
						return -1;
				} else if (type == (family == AF_INET ? CTA_IP_V4_DST :
				    CTA_IP_V6_DST)) {
					if (!(t->has_dst = ct_attr_copy(b, t->dst, alen)))
						return -1;
				}
			}
			break;
		case CTA_TUPLE_PROTO:
			nlattr_for_each_nested(b, bleft, a) {
				uint16_t port;

				switch (nlattr_type(b)) {
				case CTA_PROTO_NUM:
					if (!(t->has_proto = ct_attr_copy(b, &t->proto, 1)))
						return -1;
					break;
				case CTA_PROTO_SRC_PORT:
					if (!ct_attr_copy(b, &port, 2))
						return -1;
					t->sport = ntohs(port);
					t->has_ports = true;
					break;
				case CTA_PROTO_DST_PORT:
					if (!ct_attr_copy(b, &port, 2))
						return -1;
					t->dport = ntohs(port);
					break;
				}
			}
			break;
		}
	}
	return 0;
}

static int
ct_parse_tcp_state(const struct nlattr *protoinfo, uint8_t *state)
{
	const struct nlattr *a, *b;
	size_t aleft, bleft;

	nlattr_for_each_nested(a, aleft, protoinfo) {
		if (nlattr_type(a) != CTA_PROTOINFO_TCP)
			continue;
		nlattr_for_each_nested(b, bleft, a)
			if (nlattr_type(b) == CTA_PROTOINFO_TCP_STATE &&
			    !ct_attr_copy(b, state, 1))
				return -1;
	}
	return 0;
}

int
ct_parse_flow(const struct nlmsghdr *nlh, const struct config *cfg, struct flow *f)
{
	struct ct_tuple orig = { 0 }, repl = { 0 };
	const struct nfgenmsg *nfg;
	const size_t attrs = MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(*nfg));
	const struct nlattr *a;
	uint8_t family, tcp_state = TCP_CONNTRACK_NONE;
	uint32_t mark = 0;
	int provider;
	size_t alen, left;

	if (nlh->nlmsg_len < attrs)
		return -1;
	nfg = mnl_nlmsg_get_payload(nlh);
	family = nfg->nfgen_family;
	if (family != AF_INET && family != AF_INET6)
		return -1;
	nlattr_for_each(a, left, (const struct nlattr *)(const void *)((const char *)nlh + attrs),
	    nlh->nlmsg_len - attrs) {
		int rc = 0;

		switch (nlattr_type(a)) {
		case CTA_TUPLE_ORIG:
			rc = ct_parse_tuple(a, family, &orig);
			break;
		case CTA_TUPLE_REPLY:
			rc = ct_parse_tuple(a, family, &repl);
			break;
		case CTA_MARK:
			if (ct_attr_copy(a, &mark, 4))
				mark = ntohl(mark);
			else
				rc = -1;
			break;
		case CTA_PROTOINFO:
			rc = ct_parse_tcp_state(a, &tcp_state);
			break;
		}
		if (rc < 0)
			return -1;
	}
	if (!orig.has_src || !orig.has_dst || !orig.has_proto)
		return -1;
	if ((provider = ct_provider_of_mark(cfg, mark)) < 0)
		return 1;
	memset(f, 0, sizeof(*f));
	f->mark = mark;
	f->provider = (uint8_t)provider;
	f->key.family = family;
	f->key.proto = orig.proto;
	alen = family == AF_INET ? 4 : 16;
	memcpy(f->key.src, orig.src, alen);
	memcpy(f->key.dst, orig.dst, alen);
	memcpy(f->nat_src, repl.dst, alen);
	if (orig.has_ports) {
		f->key.sport = orig.sport;
		f->key.dport = orig.dport;
		f->nat_port = repl.dport;
	}
	if (f->key.proto == IPPROTO_TCP)
		f->l4state = tcp_state < sizeof(ct_l4_map) ? ct_l4_map[tcp_state] : FLOW_L4_NONE;
	f->origin = FLOW_OWN;
	return 0;
}

/* One run's events, parsed before any is delivered (CT_PREFETCH). */
struct ct_run {
	size_t n;
	enum ct_event ev[CT_EVENT_VLEN];
	struct flow f[CT_EVENT_VLEN];
};

static void
ct_run_deliver(struct ct *ct, struct ct_run *run)
{
	for (size_t i = 0; i < run->n; i++)
		ct->cb(CT_PREFETCH, &run->f[i], ct->data);
	for (size_t i = 0; i < run->n; i++)
		ct->cb(run->ev[i], &run->f[i], ct->data);
	run->n = 0;
}

static void
ct_event_msg(struct ct *ct, const struct nlmsghdr *nlh, struct ct_run *run)
{
	int type = NFNL_MSG_TYPE(nlh->nlmsg_type);
	int rc;

	if (type != IPCTNL_MSG_CT_NEW && type != IPCTNL_MSG_CT_DELETE)
		return;
	if (run->n == CT_EVENT_VLEN)
		ct_run_deliver(ct, run);
	rc = ct_parse_flow(nlh, ct->cfg, &run->f[run->n]);
	if (rc < 0) {
		ct->st.parse_errors++;
		return;
	}
	if (rc > 0) {
		ct->st.ignored++;
		return;
	}
	if (type == IPCTNL_MSG_CT_NEW) {
		ct->st.events_new++;
		run->ev[run->n++] = CT_NEW;
	} else {
		ct->st.events_destroy++;
		run->ev[run->n++] = CT_DESTROY;
	}
}

/* Reads what the event socket holds, a bounded amount; returns the
 * number of messages read. */
static size_t
ct_read_events(struct ct *ct)
{
	struct ct_run run;
	size_t got = 0;

	run.n = 0;
	for (int round = 0; round < CT_EVENT_ROUNDS; round++) {
		struct mmsghdr *mm = ct->mm;
		int n;

		n = recvmmsg(ct->evfd, mm, CT_EVENT_VLEN, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EAGAIN) {
				ct->behind = false;
				break;
			}
			if (errno == EINTR)
				break;
			if (errno == ENOBUFS) {
				ct->st.enobufs++;
				ct->behind = true;
				ct->cb(CT_OVERRUN, NULL, ct->data);
				continue;
			}
			log_warn("ct: reading conntrack events");
			break;
		}
		for (int i = 0; i < n; i++) {
			int len = (int)mm[i].msg_len;

			if (mm[i].msg_hdr.msg_flags & MSG_TRUNC) {
				ct->st.parse_errors++;
				continue;
			}
			for (const struct nlmsghdr *nlh = (const void *)ct->buf[i];
			    nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len))
				ct_event_msg(ct, nlh, &run);
		}
		ct_run_deliver(ct, &run);
		got += (size_t)n;
		if (n < CT_EVENT_VLEN)
			break;
	}
	return got;
}

/* A full read leaves more waiting (a burst, the end of an overrun): the
 * next comes as soon as the loop has served the rest. */
static int
ct_hold_ms(size_t got)
{
	return got == CT_EVENT_ROUNDS * CT_EVENT_VLEN ? 1 : CT_EVENT_HOLD_MS;
}

/*
 * Events are read in runs: once a wake-up has found some, the socket is
 * left alone for CT_EVENT_HOLD_MS and what arrives meanwhile waits in its
 * buffer, to be read in one go when the hold ends.  Under a steady stream
 * of new connections that turns a wake-up, and a sync flush, per kernel
 * batch into one per hold, for a delay of at most the hold; a lone event
 * is read at once.  While the stream lasts, the hold's timer reads each
 * run itself, so the socket's epoll interest stays off until a hold finds
 * nothing.
 */
static int64_t
ct_on_hold_end(void *data)
{
	struct ct *ct = data;
	size_t got = ct_read_events(ct);

	if (got > 0)
		return ct_hold_ms(got);
	ct->hold = NULL;
	if (ev_fd_want_read(ct->loop, ct->evfd, true) == -1)
		log_warn("ct: epoll on the event socket");
	return EV_TIMER_STOP;
}

static void
ct_on_event(int fd, void *data)
{
	struct ct *ct = data;
	size_t got;

	(void)fd;
	/* During a hold only an error (an overrun) wakes us. */
	if ((got = ct_read_events(ct)) == 0 || ct->hold != NULL)
		return;
	if ((ct->hold = ev_timer_add(ct->loop, ct_hold_ms(got), ct_on_hold_end, ct)) == NULL)
		return;
	if (ev_fd_want_read(ct->loop, ct->evfd, false) == -1) {
		log_warn("ct: epoll on the event socket");
		ev_timer_del(ct->loop, ct->hold);
		ct->hold = NULL;
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
	for (int i = 0; i < CT_EVENT_VLEN; i++) {
		ct->iov[i].iov_base = ct->buf[i];
		ct->iov[i].iov_len = sizeof(ct->buf[i]);
		ct->mm[i].msg_hdr.msg_iov = &ct->iov[i];
		ct->mm[i].msg_hdr.msg_iovlen = 1;
	}
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
	ct_dump_cancel(ct->dump);
	ct_write_flush(ct);
	ev_timer_del(ct->loop, ct->hold);
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
	int rc = ct_parse_flow(nlh, ctx->ct->cfg, &f);

	if (rc < 0)
		ctx->ct->st.parse_errors++;
	else if (rc == 0) {
		ctx->count++;
		ctx->cb(&f, ctx->data);
	}
	return MNL_CB_OK;
}

/* Asks for the entries with one provider's mark: the kernel filters by
 * mark and mask. */
static int
ct_dump_request(struct ct *ct, struct mnl_socket *nl, uint32_t mark, uint32_t seq)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header((void *)ct->buf);
	struct nfgenmsg *nfh;

	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = AF_UNSPEC;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	nlattr_put_u32(nlh, CTA_MARK, htonl(mark));
	nlattr_put_u32(nlh, CTA_MARK_MASK, htonl(ct->cfg->mark_mask));
	return mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0 ? -1 : 0;
}

static struct mnl_socket *
ct_dump_socket(void)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	int saved, rcvbuf = 4 << 20;

	if (nl == NULL)
		return NULL;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		saved = errno;
		mnl_socket_close(nl);
		errno = saved;
		return NULL;
	}
	setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	return nl;
}

struct ct_dump {
	struct ct *ct;
	struct mnl_socket *nl;
	int fd;
	unsigned portid;
	uint32_t seq;		/* of the request being answered */
	size_t provider;	/* whose entries are being answered */
	struct ct_dump_ctx ctx;
	ct_dump_done_cb done;	/* asynchronous dumps only */
};

/* The socket, and the first provider's request.  0, or -1 with errno. */
static int
ct_dump_open(struct ct_dump *dp, struct ct *ct, ct_dump_cb cb, void *data)
{
	int saved;

	dp->ct = ct;
	dp->ctx = (struct ct_dump_ctx){ ct, cb, data, 0 };
	dp->seq = (uint32_t)time(NULL);
	dp->provider = 0;
	if ((dp->nl = ct_dump_socket()) == NULL)
		return -1;
	dp->fd = mnl_socket_get_fd(dp->nl);
	dp->portid = mnl_socket_get_portid(dp->nl);
	if (ct_dump_request(ct, dp->nl, ct->cfg->providers[0].mark, dp->seq) == -1) {
		saved = errno;
		mnl_socket_close(dp->nl);
		errno = saved;
		return -1;
	}
	return 0;
}

/* One answer (recv flags as given): 1 while more are to come, 0 when the
 * last provider's is complete, -1 with errno (EAGAIN: none waiting). */
static int
ct_dump_read(struct ct_dump *dp, int flags)
{
	struct ct *ct = dp->ct;
	ssize_t n = recv(dp->fd, ct->buf, sizeof(ct->buf), flags);
	int rc;

	if (n < 0)
		return -1;
	rc = mnl_cb_run(ct->buf, (size_t)n, dp->seq, dp->portid, ct_dump_one, &dp->ctx);
	if (rc < 0)
		return -1;
	if (rc != MNL_CB_STOP)
		return 1;
	if (++dp->provider == ct->cfg->nproviders) {
		ct->st.dumps++;
		ct->st.dumped += (uint64_t)dp->ctx.count;
		return 0;
	}
	return ct_dump_request(ct, dp->nl, ct->cfg->providers[dp->provider].mark,
	    ++dp->seq) == -1 ? -1 : 1;
}

long
ct_dump(struct ct *ct, ct_dump_cb cb, void *data)
{
	struct ct_dump dp;
	int rc, saved;

	if (ct_dump_open(&dp, ct, cb, data) == -1)
		return -1;
	while ((rc = ct_dump_read(&dp, 0)) == 1 || (rc == -1 && errno == EINTR))
		;
	saved = errno;
	mnl_socket_close(dp.nl);
	errno = saved;
	return rc == 0 ? dp.ctx.count : -1;
}

static void
ct_dump_close(struct ct_dump *dp)
{
	ev_fd_del(dp->ct->loop, dp->fd);
	mnl_socket_close(dp->nl);
	dp->ct->dump = NULL;
	free(dp);
}

static void
ct_dump_finish(struct ct_dump *dp, long count)
{
	ct_dump_done_cb done = dp->done;
	void *data = dp->ctx.data;
	int saved = errno;

	ct_dump_close(dp);
	errno = saved;
	done(count, data);
}

/* A few answers per wake-up: the kernel builds the next part of a dump
 * only when the last one has been read, so the socket holds little and
 * the loop's other work waits at most CT_DUMP_READS reads. */
static void
ct_dump_on_read(int fd, void *data)
{
	struct ct_dump *dp = data;

	(void)fd;
	for (int i = 0; i < CT_DUMP_READS; i++) {
		int rc = ct_dump_read(dp, MSG_DONTWAIT);

		if (rc == 1)
			continue;
		if (rc == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		ct_dump_finish(dp, rc == 0 ? dp->ctx.count : -1);
		return;
	}
}

struct ct_dump *
ct_dump_start(struct ct *ct, ct_dump_cb cb, ct_dump_done_cb done, void *data)
{
	struct ct_dump *dp;
	int saved;

	if (ct->dump != NULL) {
		errno = EBUSY;
		return NULL;
	}
	if ((dp = calloc(1, sizeof(*dp))) == NULL)
		return NULL;
	dp->done = done;
	if (ct_dump_open(dp, ct, cb, data) == -1) {
		free(dp);
		return NULL;
	}
	if (ev_fd_add(ct->loop, dp->fd, ct_dump_on_read, NULL, dp) == -1) {
		saved = errno;
		mnl_socket_close(dp->nl);
		free(dp);
		errno = saved;
		return NULL;
	}
	ct->dump = dp;
	return dp;
}

void
ct_dump_cancel(struct ct_dump *dp)
{
	if (dp != NULL)
		ct_dump_close(dp);
}

bool
ct_events_behind(const struct ct *ct)
{
	return ct->behind;
}

void
ct_drain(struct ct *ct)
{
	/* Bounded: what a full socket buffer holds, and then some. */
	for (int i = 0; i < 256 && ct_read_events(ct) > 0; i++)
		;
}

static bool
ct_has_ports(uint8_t proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE ||
	    proto == IPPROTO_SCTP || proto == IPPROTO_DCCP;
}

bool
ct_key_is_tuple(uint8_t proto)
{
	return proto != IPPROTO_ICMP && proto != IPPROTO_ICMPV6 && proto != IPPROTO_GRE;
}

/* A tuple from src:sport to dst:dport (network-order ports). */
static void
ct_put_tuple(struct nlmsghdr *nlh, uint16_t type, const struct flow_key *k,
    const uint8_t *src, const uint8_t *dst, uint16_t sport, uint16_t dport)
{
	struct nlattr *tuple = nlattr_nest_start(nlh, type), *nest;
	bool v4 = k->family == AF_INET;

	nest = nlattr_nest_start(nlh, CTA_TUPLE_IP);
	nlattr_put(nlh, v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, v4 ? 4 : 16, src);
	nlattr_put(nlh, v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, v4 ? 4 : 16, dst);
	nlattr_nest_end(nlh, nest);
	nest = nlattr_nest_start(nlh, CTA_TUPLE_PROTO);
	nlattr_put_u8(nlh, CTA_PROTO_NUM, k->proto);
	if (ct_has_ports(k->proto)) {
		nlattr_put_u16(nlh, CTA_PROTO_SRC_PORT, sport);
		nlattr_put_u16(nlh, CTA_PROTO_DST_PORT, dport);
	}
	nlattr_nest_end(nlh, nest);
	nlattr_nest_end(nlh, tuple);
}

int
ct_put_msg(void *buf, size_t space, const struct flow *f, uint32_t timeout_s,
    uint32_t seq, enum ct_msg kind)
{
	const struct flow_key *k = &f->key;
	uint16_t sport = htons(k->sport), dport = htons(k->dport);
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;
	struct nlattr *nest, *tcp;

	/* The largest message is well under CT_MSG_MAX bytes. */
	if (space < CT_MSG_MAX) {
		errno = ENOSPC;
		return -1;
	}
	if (k->family != AF_INET && k->family != AF_INET6) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) |
	    (kind == CT_MSG_DELETE ? IPCTNL_MSG_CT_DELETE : IPCTNL_MSG_CT_NEW);
	/* No NLM_F_ACK: the kernel answers errors only (see ct_write_send). */
	nlh->nlmsg_flags = NLM_F_REQUEST;
	if (kind == CT_MSG_CREATE)
		nlh->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
	nlh->nlmsg_seq = seq;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = k->family;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	ct_put_tuple(nlh, CTA_TUPLE_ORIG, k, k->src, k->dst, sport, dport);
	if (kind == CT_MSG_DELETE)
		return (int)nlh->nlmsg_len;
	if (kind == CT_MSG_CREATE) {
		/* The reply tuple mirrors the original; source NAT to one
		 * address and port rewrites it in the kernel. */
		ct_put_tuple(nlh, CTA_TUPLE_REPLY, k, k->dst, k->src, dport, sport);
		nest = nlattr_nest_start(nlh, CTA_NAT_SRC);
		/* Without a maximum the range is the minimum alone. */
		if (k->family == AF_INET)
			nlattr_put(nlh, CTA_NAT_V4_MINIP, 4, f->nat_src);
		else
			nlattr_put(nlh, CTA_NAT_V6_MINIP, 16, f->nat_src);
		if (f->nat_port != 0) {
			struct nlattr *proto = nlattr_nest_start(nlh, CTA_NAT_PROTO);

			nlattr_put_u16(nlh, CTA_PROTONAT_PORT_MIN, htons(f->nat_port));
			nlattr_put_u16(nlh, CTA_PROTONAT_PORT_MAX, htons(f->nat_port));
			nlattr_nest_end(nlh, proto);
		}
		nlattr_nest_end(nlh, nest);
		/* CONFIRMED as libnetfilter_conntrack sends it (the kernel
		 * keeps that bit to itself). */
		nlattr_put_u32(nlh, CTA_STATUS,
		    htonl(IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED));
	}
	nlattr_put_u32(nlh, CTA_TIMEOUT, htonl(timeout_s));
	nlattr_put_u32(nlh, CTA_MARK, htonl(f->mark));
	if (k->proto == IPPROTO_TCP) {
		struct nf_ct_tcp_flags fl = {
			.flags = IP_CT_TCP_FLAG_BE_LIBERAL | IP_CT_TCP_FLAG_SACK_PERM,
			.mask = IP_CT_TCP_FLAG_BE_LIBERAL | IP_CT_TCP_FLAG_SACK_PERM,
		};

		nest = nlattr_nest_start(nlh, CTA_PROTOINFO);
		tcp = nlattr_nest_start(nlh, CTA_PROTOINFO_TCP);
		nlattr_put_u8(nlh, CTA_PROTOINFO_TCP_STATE, TCP_CONNTRACK_ESTABLISHED);
		nlattr_put(nlh, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, sizeof(fl), &fl);
		nlattr_put(nlh, CTA_PROTOINFO_TCP_FLAGS_REPLY, sizeof(fl), &fl);
		nlattr_nest_end(nlh, tcp);
		nlattr_nest_end(nlh, nest);
	}
	return (int)nlh->nlmsg_len;
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

	/* The kernel would refuse them (EINVAL), and a delete could name
	 * another of the same key's entries. */
	if (!ct_key_is_tuple(f->key.proto)) {
		ct->wst.unwritable++;
		errno = EPROTONOSUPPORT;
		return -1;
	}
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
 * again right after.  Own flows are NFQUEUE decisions, whose packets the
 * kernel reinjects, and confirms, inside this thread's verdict calls, so
 * none is missed that way; what the kernel confirms in softirq meanwhile
 * is (a RELATED entry, which inherits its master's mark; a connection
 * that failed open with the fallback mark): rare on a standby, which
 * forwards little, and a new master resyncs after its takeover's writes
 * (main.c).  When the join fails, the events since are unknown: the owner
 * is told to resync.
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

/* The kernel does a write's work in our system calls: this thread's CPU
 * time around them is the write's cost (kernel_writes.cpu_ms). */
static uint64_t
ct_thread_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Sends wr_buf and reads the answers.  The messages ask for no
 * acknowledgement, so the kernel answers only those that failed, each
 * with its sequence number: an acknowledgement per success would cost a
 * socket buffer and a recv() per entry, a fifth of the write.  ctnetlink
 * has handled the whole batch, and queued its errors, when sendmsg()
 * returns, so the socket holds every answer there will be; an item
 * without one succeeded.  (Errors lost to a full receive buffer, counted
 * in enobufs, are taken for successes: the takeover's check repairs
 * what is missing.)  Returns the number of items that must be sent again
 * in their second form (left in retry[]).
 */
static size_t
ct_write_send(struct ct *ct, struct ct_write_item *retry)
{
	bool failed[CT_WRITE_BATCH] = { false };
	size_t nretry = 0;
	uint64_t t0;
	char rbuf[16384];
	ssize_t sent;
	int saved;

	if (ct->wr_n == 0)
		return 0;
	t0 = ct_thread_cpu_ns();
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
	/* Bounded: the answers of one batch, and an overrun or two. */
	for (int reads = 0; reads < CT_WRITE_BATCH + 8; reads++) {
		ssize_t r = recv(ct->wrfd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
		int len = (int)r;

		if (r < 0) {
			/* The answers queued after the overrun are still there. */
			if (errno == ENOBUFS) {
				ct->wst.enobufs++;
				continue;
			}
			break;
		}
		for (const struct nlmsghdr *h = (const void *)rbuf; nlmsg_ok(h, len);
		    h = mnl_nlmsg_next(h, &len)) {
			const struct nlmsgerr *e;
			uint32_t idx;

			if (h->nlmsg_type != NLMSG_ERROR ||
			    h->nlmsg_len < MNL_NLMSG_HDRLEN + sizeof(*e))
				continue;
			e = mnl_nlmsg_get_payload(h);
			idx = e->msg.nlmsg_seq - ct->wr_seq;
			if (idx >= ct->wr_n || e->error == 0 || failed[idx])
				continue;
			failed[idx] = true;
			ct_write_answer(ct, &ct->wr_items[idx], e->error, retry, &nretry);
		}
	}
	for (size_t i = 0; i < ct->wr_n; i++)
		if (!failed[i])
			ct_write_answer(ct, &ct->wr_items[i], 0, retry, &nretry);
done:
	ct->wst.cpu_ns += ct_thread_cpu_ns() - t0;
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

int
ct_write_now(struct ct *ct, const struct flow *f)
{
	uint64_t before;

	ct_write_flush(ct);
	before = ct->wst.created + ct->wst.updated;
	if (ct_write_put(ct, f, CT_OP_CREATE_FIRST) == -1)
		return -1;
	ct_write_flush(ct);
	return ct->wst.created + ct->wst.updated > before ? 0 : -1;
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
