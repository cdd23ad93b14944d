/*
 * ct: the kernel conntrack table as uplinkd sees it (libnetfilter_conntrack
 * on libmnl).
 *
 * Events: one netlink socket subscribed to conntrack NEW and DESTROY, with
 * a BPF filter in the kernel that passes only entries carrying one of the
 * provider marks, so unrelated connections cost nothing in userspace.  The
 * NEW event fires when the connection is confirmed, after SNAT, so its
 * reply tuple already carries the translated source address and port.
 *
 * Events are read in runs, at most CT_EVENT_HOLD_MS (ct.c) after the
 * kernel queued them, so that a steady stream costs one wake-up per run.
 *
 * Overruns: when the kernel could not queue an event (ENOBUFS), events
 * were lost; the owner is told (CT_OVERRUN) and answers with a resync from
 * a dump.  Dumps are filtered by mark in the kernel, one per provider.
 * The one at start is synchronous; the one after an overrun runs in the
 * event loop (ct_dump_start), because a million entries take seconds and
 * the queue, the sync channel and the control socket must not wait.
 */
#ifndef UPLINKD_CT_H
#define UPLINKD_CT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ev.h"
#include "flows.h"

enum ct_event {
	CT_NEW,
	CT_DESTROY,
	CT_OVERRUN,		/* events were lost: resync (flow is NULL) */
	/* Sent for each flow of a run before its CT_NEW or CT_DESTROY, so the
	 * owner can prefetch what those will touch: the run's memory
	 * latencies then overlap instead of following one another. */
	CT_PREFETCH,
};

/* `f` is only valid during the call.  f->created/updated are 0: the owner
 * stamps them with its clock. */
typedef void (*ct_event_cb)(enum ct_event ev, const struct flow *f, void *data);
typedef void (*ct_dump_cb)(const struct flow *f, void *data);

struct ct_stats {
	uint64_t events_new;
	uint64_t events_destroy;
	uint64_t ignored;	/* no provider mark (filter raced a reload) */
	uint64_t parse_errors;
	uint64_t enobufs;
	uint64_t dumps;
	uint64_t dumped;	/* entries read by dumps */
};

struct ct;

/* cfg must outlive ct (a reload creates a new one).  NULL with errno. */
struct ct *ct_create(struct ev_loop *loop, const struct config *cfg,
    ct_event_cb cb, void *data);
void ct_destroy(struct ct *ct);

/* One conntrack message (event or dump) as a flow of ours: 0 and *f
 * filled, 1 when it carries no provider mark of cfg, -1 when it is
 * malformed or of a family other than IPv4/IPv6. */
struct nlmsghdr;
int ct_parse_flow(const struct nlmsghdr *nlh, const struct config *cfg, struct flow *f);

/* The provider whose mark `mark` carries under the mask, or -1. */
int ct_provider_of_mark(const struct config *cfg, uint32_t mark);

/* Calls cb for every kernel entry with a provider mark.  Returns the number
 * of entries, or -1 with errno. */
long ct_dump(struct ct *ct, ct_dump_cb cb, void *data);

/*
 * The same dump, read from the event loop a few answers per wake-up; the
 * loop serves everything else meanwhile, events included, so an entry
 * may be seen both as an event and in the dump, in either order (the
 * owner decides which is newer).  done(count, data) is called once at
 * the end, with -1 and errno on failure; the dump is gone after it.  One
 * dump at a time per ct (EBUSY).  ct_dump_cancel() stops one that has not
 * finished, without calling done (NULL: nothing); ct_destroy() cancels
 * too.  NULL with errno.
 */
typedef void (*ct_dump_done_cb)(long count, void *data);
struct ct_dump;
struct ct_dump *ct_dump_start(struct ct *ct, ct_dump_cb cb, ct_dump_done_cb done, void *data);
void ct_dump_cancel(struct ct_dump *dump);

/*
 * True from an overrun until the event socket has next been read empty.
 * The kernel reports one overrun per congestion, which lasts until then:
 * events it drops meanwhile raise no new error, so a resync's dump must
 * not start before.
 */
bool ct_events_behind(const struct ct *ct);

/* Delivers the events waiting in the socket now (a reload reads the old
 * socket's before closing it: they are not all in the new one). */
void ct_drain(struct ct *ct);

/*
 * Whether a flow key is the whole conntrack tuple of its protocol, so that
 * the kernel's entry can be named (and written) from it: false for ICMP
 * and ICMPv6 (the echo id, type and code are not in the key) and GRE (its
 * keys).  Such flows are tracked and replicated, never written.
 */
bool ct_key_is_tuple(uint8_t proto);

/*
 * Writes into buf one ctnetlink message about f's entry, for the kernel:
 *   CT_MSG_CREATE  the entry as it was on the node that owned it: the
 *                  original tuple, source NAT to nat_src:nat_port (the
 *                  kernel derives the reply tuple from it, which is what
 *                  makes the translation real), the mark, SEEN_REPLY|
 *                  ASSURED, and for TCP the ESTABLISHED state with liberal
 *                  window tracking on both sides (the injected entry never
 *                  saw the window);
 *   CT_MSG_UPDATE  what the kernel lets an existing entry change: mark,
 *                  timeout, TCP state (NAT and status are fixed at
 *                  creation);
 *   CT_MSG_DELETE  the original tuple alone.
 * The message asks for no acknowledgement (the kernel answers errors only;
 * a caller that wants one sets NLM_F_ACK).  Returns the message length, or
 * -1 with errno ENOSPC (buf too small) or EAFNOSUPPORT.
 */
enum ct_msg {
	CT_MSG_CREATE,
	CT_MSG_UPDATE,
	CT_MSG_DELETE,
};

int ct_put_msg(void *buf, size_t space, const struct flow *f, uint32_t timeout_s,
    uint32_t seq, enum ct_msg kind);
void ct_get_stats(const struct ct *ct, struct ct_stats *out);

/*
 * Writing the peer's flows into the kernel table (hot standby, takeover).
 * The event socket is out of the NEW group while the kernel handles a
 * batch: no events of these writes, which the kernel would otherwise build
 * at a high cost (see ct.c).
 * ct_write_upsert() and ct_write_delete() queue one ctnetlink message each;
 * ct_write_flush() (the owner's before-sleep hook; also whenever a batch of
 * CT_WRITE_BATCH fills up) sends them in one sendmsg and reads the answers
 * (errors only), which the kernel has queued by then: nothing blocks,
 * nothing stays in flight.
 *
 * An upsert creates the entry (CT_MSG_CREATE); when the original tuple
 * exists already (EEXIST) it updates mark, timeout and TCP state instead.  With expect_exists it tries the update first and
 * creates on ENOENT (the takeover pass, where hot standby put nearly all
 * entries in already).  When both halves fail, the translated reply tuple
 * is another entry's: a NAT conflict, counted, never remapped.
 *
 * Timeout: CT_WRITE_TIMEOUT for every protocol (the kernel's own for TCP
 * ESTABLISHED).  The standby's kernel sees no packet of these entries, and
 * the peer replicates no refresh, only the end of a flow: the copy must
 * last as long as the replicated flow, which replication ends (a delete, a
 * bulk's sweep, the peer's expiry), and the timeout is only the backstop
 * for a delete that never came.  A UDP flow that outlived a short timeout
 * would be missing from the standby's kernel at the takeover.  The first
 * real packet after a takeover sets the kernel's policy again.
 *
 * 0, or -1 with errno when the message could not be built (counted as
 * failed) or the flow's protocol cannot be written (EPROTONOSUPPORT,
 * counted as unwritable).
 */
#define CT_WRITE_TIMEOUT 432000

struct ct_write_stats {
	uint64_t created, updated, deleted;
	uint64_t conflicts;	/* NAT reply tuple held by another entry */
	uint64_t not_found;	/* delete of an entry the kernel did not have */
	uint64_t failed;	/* any other error */
	uint64_t unwritable;	/* not tried: !ct_key_is_tuple() */
	uint64_t enobufs;	/* error answers lost (socket buffer) */
	uint64_t cpu_ns;	/* this thread's CPU time in the writes */
	int last_errno;
};

int ct_write_upsert(struct ct *ct, const struct flow *f, bool expect_exists);
int ct_write_delete(struct ct *ct, const struct flow_key *key);
void ct_write_flush(struct ct *ct);
/* f's entry created (or updated) at once, what was queued before sent
 * first: 0 when the kernel holds it afterwards, -1 when it refused. */
int ct_write_now(struct ct *ct, const struct flow *f);
void ct_get_write_stats(const struct ct *ct, struct ct_write_stats *out);

#endif
