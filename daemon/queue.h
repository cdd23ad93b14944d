/*
 * queue: the NFQUEUE sockets through which the first packet of every new
 * LAN connection reaches uplinkd (libnetfilter_queue on libmnl).
 *
 * One netlink socket binds queues first..first+count-1 with fail-open
 * (NFQA_CFG_F_FAIL_OPEN: when the queue is full the kernel accepts instead
 * of dropping, and the kernel fallback mark takes over).  Only the headers
 * are copied to userspace.  Each readable event drains up to
 * QUEUE_BURST packets, asks the owner for a verdict per packet, and sends
 * all verdicts of the burst in one sendmsg().
 */
#ifndef UPLINKD_QUEUE_H
#define UPLINKD_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "ev.h"
#include "sched.h"

#define QUEUE_BURST 64
#define QUEUE_COPY_RANGE 128	/* IPv6 header + TCP header with options */

/* What the owner sees of a queued packet. */
struct queue_packet {
	struct sched_tuple tuple;
	uint32_t indev;		/* input ifindex, 0 if unknown */
	uint16_t queue_num;
	uint8_t tcp_flags;	/* TH_SYN etc., 0 for other protocols */
	bool parsed;		/* false: headers could not be read */
};

enum queue_verdict {
	QUEUE_ACCEPT,		/* with `mark` set on the packet */
	QUEUE_DROP,
};

struct queue_decision {
	enum queue_verdict verdict;
	uint32_t mark;		/* full packet mark to set (ACCEPT only) */
};

typedef struct queue_decision (*queue_decide_cb)(const struct queue_packet *pkt,
    void *data);

struct queue_stats {
	uint64_t packets;
	uint64_t accepted;
	uint64_t dropped;
	uint64_t unparsed;	/* accepted unmarked: kernel fallback */
	uint64_t verdict_errors;
	uint64_t recv_errors;
	uint64_t enobufs;
	uint64_t batches;	/* verdict sendmsg() calls */
	/* From /proc/net/netfilter/nfnetlink_queue (kernel's view). */
	uint64_t kernel_queue_dropped;	/* queue full: failed open */
	uint64_t kernel_user_dropped;	/* netlink buffer full */
	uint64_t kernel_queued;		/* waiting now */
};

/* NULL with errno on failure (EPERM without CAP_NET_ADMIN, EBUSY when
 * another process holds a queue). */
struct queue *queue_create(struct ev_loop *loop, unsigned first, unsigned count,
    queue_decide_cb decide, void *data);
void queue_destroy(struct queue *q);
/* Fills *out; the kernel figures are read fresh. */
void queue_get_stats(const struct queue *q, struct queue_stats *out);

/* Header parser, exposed for unit tests: returns false if the packet is
 * not an IPv4/IPv6 packet with readable L4 ports where they exist. */
bool queue_parse(const uint8_t *pkt, size_t len, uint16_t hw_proto,
    struct queue_packet *out);

#endif
