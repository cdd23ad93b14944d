#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#include "log.h"
#include "nlmsg.h"
#include "queue.h"

#define QUEUE_MAXLEN 8192		/* packets waiting per queue in the kernel */
#define QUEUE_RCVBUF (8 << 20)
/* One verdict message: nlmsghdr + nfgenmsg + verdict + mark attributes. */
#define QUEUE_VERDICT_SPACE 64

struct queue {
	struct ev_loop *loop;
	struct mnl_socket *nl;
	int fd;
	unsigned portid;
	unsigned first, count;
	queue_decide_cb decide;
	void *data;
	struct queue_stats st;
	size_t rxsize;
	char *rx;
	/* Set up once: recvmmsg() writes only msg_len and msg_flags. */
	struct mmsghdr mm[QUEUE_BURST];
	struct iovec iov[QUEUE_BURST];
	size_t txlen;
	char tx[QUEUE_BURST * QUEUE_VERDICT_SPACE];
};

bool
queue_parse(const uint8_t *p, size_t len, uint16_t hw_proto, struct queue_packet *out)
{
	size_t l4off;
	uint8_t proto;

	memset(&out->tuple, 0, sizeof(out->tuple));
	out->tcp_flags = 0;
	out->parsed = false;
	if (hw_proto == ETH_P_IP || (hw_proto == 0 && len > 0 && p[0] >> 4 == 4)) {
		size_t ihl;

		if (len < 20 || p[0] >> 4 != 4)
			return false;
		ihl = (size_t)(p[0] & 0x0f) * 4;
		if (ihl < 20 || len < ihl)
			return false;
		out->tuple.family = AF_INET;
		proto = p[9];
		memcpy(out->tuple.src, p + 12, 4);
		memcpy(out->tuple.dst, p + 16, 4);
		/* A non-first fragment has no ports. */
		if ((ntohs(*(const uint16_t *)(const void *)(p + 6)) & 0x1fff) != 0) {
			out->tuple.proto = proto;
			out->parsed = true;
			return true;
		}
		l4off = ihl;
	} else if (hw_proto == ETH_P_IPV6 || (hw_proto == 0 && len > 0 && p[0] >> 4 == 6)) {
		if (len < 40 || p[0] >> 4 != 6)
			return false;
		out->tuple.family = AF_INET6;
		memcpy(out->tuple.src, p + 8, 16);
		memcpy(out->tuple.dst, p + 24, 16);
		proto = p[6];
		l4off = 40;
		/* Walk a bounded number of extension headers. */
		for (int i = 0; i < 8; i++) {
			if (proto == IPPROTO_HOPOPTS || proto == IPPROTO_ROUTING ||
			    proto == IPPROTO_DSTOPTS) {
				if (len < l4off + 8)
					return false;
				proto = p[l4off];
				l4off += ((size_t)p[l4off + 1] + 1) * 8;
			} else if (proto == IPPROTO_FRAGMENT) {
				if (len < l4off + 8)
					return false;
				proto = p[l4off];
				if ((ntohs(*(const uint16_t *)(const void *)(p + l4off + 2)) & 0xfff8) != 0) {
					out->tuple.proto = proto;
					out->parsed = true;
					return true;
				}
				l4off += 8;
			} else
				break;
		}
	} else
		return false;
	out->tuple.proto = proto;
	switch (proto) {
	case IPPROTO_TCP:
		if (len < l4off + 14)
			return false;
		out->tcp_flags = p[l4off + 13];
		/* FALLTHROUGH */
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
	case IPPROTO_DCCP:
		if (len < l4off + 4)
			return false;
		out->tuple.sport = (uint16_t)(p[l4off] << 8 | p[l4off + 1]);
		out->tuple.dport = (uint16_t)(p[l4off + 2] << 8 | p[l4off + 3]);
		break;
	default:
		break;
	}
	out->parsed = true;
	return true;
}

static int
queue_config(struct queue *q, unsigned num, uint8_t cmd, bool params)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, num);
	int ret;

	nlh->nlmsg_flags |= NLM_F_ACK;
	if (cmd)
		nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, cmd);
	if (params) {
		nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, QUEUE_COPY_RANGE);
		nfq_nlmsg_cfg_put_qmaxlen(nlh, QUEUE_MAXLEN);
		mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_FAIL_OPEN));
		mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN));
	}
	if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0)
		return -1;
	ret = (int)mnl_socket_recvfrom(q->nl, buf, sizeof(buf));
	if (ret < 0)
		return -1;
	return mnl_cb_run(buf, (size_t)ret, 0, q->portid, NULL, NULL) < 0 ? -1 : 0;
}

static void
queue_flush(struct queue *q)
{
	if (q->txlen == 0)
		return;
	if (mnl_socket_sendto(q->nl, q->tx, q->txlen) < 0) {
		/* The kernel still holds those packets; with no verdict they
		 * wait until the socket closes (then they are accepted). */
		q->st.verdict_errors++;
		log_warn("queue: sending verdicts");
	}
	q->st.batches++;
	q->txlen = 0;
}

static void
queue_verdict(struct queue *q, unsigned num, uint32_t id, const struct queue_decision *d)
{
	struct nlmsghdr *nlh;

	if (q->txlen + QUEUE_VERDICT_SPACE > sizeof(q->tx))
		queue_flush(q);
	nlh = nfq_nlmsg_put(q->tx + q->txlen, NFQNL_MSG_VERDICT, num);
	if (d->verdict == QUEUE_ACCEPT) {
		nfq_nlmsg_verdict_put(nlh, (int)id, NF_ACCEPT);
		if (d->mark)
			nfq_nlmsg_verdict_put_mark(nlh, d->mark);
		q->st.accepted++;
	} else {
		nfq_nlmsg_verdict_put(nlh, (int)id, NF_DROP);
		q->st.dropped++;
	}
	q->txlen += NLMSG_ALIGN(nlh->nlmsg_len);
}

static void
queue_handle(struct queue *q, const struct nlmsghdr *nlh)
{
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };
	struct nfqnl_msg_packet_hdr *ph;
	struct nfgenmsg *nfg;
	struct queue_packet pkt = { 0 };
	struct queue_decision d = { QUEUE_ACCEPT, 0 };
	uint32_t id;

	if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == NULL) {
		q->st.recv_errors++;
		return;
	}
	nfg = mnl_nlmsg_get_payload(nlh);
	ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	id = ntohl(ph->packet_id);
	pkt.queue_num = ntohs(nfg->res_id);
	if (attr[NFQA_IFINDEX_INDEV])
		pkt.indev = ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV]));
	q->st.packets++;
	if (attr[NFQA_PAYLOAD] == NULL ||
	    !queue_parse(mnl_attr_get_payload(attr[NFQA_PAYLOAD]),
	    mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]), ntohs(ph->hw_protocol), &pkt)) {
		/* Unmarked accept: the kernel fallback balances it. */
		q->st.unparsed++;
	} else
		d = q->decide(&pkt, q->data);
	queue_verdict(q, pkt.queue_num, id, &d);
}

/*
 * One recvmmsg() takes what is waiting, up to QUEUE_BURST packets: a lone
 * packet costs one receive call instead of two (the second one to find
 * the socket empty).
 */
static void
queue_on_read(int fd, void *data)
{
	struct queue *q = data;
	int n;

	(void)fd;
	n = recvmmsg(q->fd, q->mm, QUEUE_BURST, MSG_DONTWAIT, NULL);
	if (n < 0) {
		if (errno == ENOBUFS)
			q->st.enobufs++;	/* fail-open accepted what did not fit */
		else if (errno != EAGAIN && errno != EINTR) {
			q->st.recv_errors++;
			log_warn("queue: recv");
		}
		return;
	}
	for (int i = 0; i < n; i++) {
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)(const void *)q->iov[i].iov_base;
		int len = (int)q->mm[i].msg_len;

		for (; nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_type == NLMSG_ERROR || nlh->nlmsg_type == NLMSG_DONE)
				continue;
			queue_handle(q, nlh);
		}
	}
	queue_flush(q);
}

struct queue *
queue_create(struct ev_loop *loop, unsigned first, unsigned count,
    queue_decide_cb decide, void *data)
{
	struct queue *q = calloc(1, sizeof(*q));
	int rcvbuf = QUEUE_RCVBUF, saved;

	if (q == NULL)
		return NULL;
	q->loop = loop;
	q->first = first;
	q->count = count;
	q->decide = decide;
	q->data = data;
	q->fd = -1;
	q->rxsize = QUEUE_COPY_RANGE + 512;
	if ((q->rx = malloc(QUEUE_BURST * q->rxsize)) == NULL)
		goto fail;
	for (int i = 0; i < QUEUE_BURST; i++) {
		q->iov[i].iov_base = q->rx + (size_t)i * q->rxsize;
		q->iov[i].iov_len = q->rxsize;
		q->mm[i].msg_hdr.msg_iov = &q->iov[i];
		q->mm[i].msg_hdr.msg_iovlen = 1;
	}
	if ((q->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC)) == NULL)
		goto fail;
	if (mnl_socket_bind(q->nl, 0, MNL_SOCKET_AUTOPID) < 0)
		goto fail;
	q->portid = mnl_socket_get_portid(q->nl);
	q->fd = mnl_socket_get_fd(q->nl);
	if (setsockopt(q->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) == -1)
		setsockopt(q->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	for (unsigned n = first; n < first + count; n++) {
		if (queue_config(q, n, NFQNL_CFG_CMD_BIND, false) == -1) {
			saved = errno;
			log_warn("queue: binding NFQUEUE %u", n);
			errno = saved;
			goto fail;
		}
		if (queue_config(q, n, 0, true) == -1) {
			saved = errno;
			log_warn("queue: configuring NFQUEUE %u", n);
			errno = saved;
			goto fail;
		}
	}
	if (ev_fd_add(loop, q->fd, queue_on_read, NULL, q) == -1)
		goto fail;
	return q;
fail:
	saved = errno;
	if (q->nl)
		mnl_socket_close(q->nl);
	free(q->rx);
	free(q);
	errno = saved;
	return NULL;
}

void
queue_destroy(struct queue *q)
{
	if (q == NULL)
		return;
	queue_flush(q);
	ev_fd_del(q->loop, q->fd);
	for (unsigned n = q->first; n < q->first + q->count; n++)
		queue_config(q, n, NFQNL_CFG_CMD_UNBIND, false);
	mnl_socket_close(q->nl);
	free(q->rx);
	free(q);
}

void
queue_get_stats(const struct queue *q, struct queue_stats *out)
{
	FILE *f = fopen("/proc/net/netfilter/nfnetlink_queue", "r");
	unsigned num, portid, total, mode, range, qdrop, udrop, seq, one;

	*out = q->st;
	if (f == NULL)
		return;
	while (fscanf(f, "%u %u %u %u %u %u %u %u %u", &num, &portid, &total, &mode,
	    &range, &qdrop, &udrop, &seq, &one) == 9) {
		if (num < q->first || num >= q->first + q->count || portid != q->portid)
			continue;
		out->kernel_queue_dropped += qdrop;
		out->kernel_user_dropped += udrop;
		out->kernel_queued += total;
	}
	fclose(f);
}
