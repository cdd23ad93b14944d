/*
 * frame: the sync channel's framing.  Every message between the two nodes
 * is one frame: a fixed header, then one protobuf message (proto/
 * uplinkd.proto) whose type the header names.
 *
 *    0               4       5       6               8              12
 *   +---------------+-------+-------+---------------+---------------+----------
 *   | magic "UPLS"  | major | type  | flags (0)     | length        | payload
 *   | u32 BE        | u8    | u8    | u16 BE        | u32 BE        | length B
 *   +---------------+-------+-------+---------------+---------------+----------
 *
 * The decoder never trusts `length` before checking it against
 * FRAME_MAX_PAYLOAD, and never decodes protobuf before the header passed:
 * wrong magic, an unknown major version, an unknown type or an oversized
 * length is a protocol violation after which the stream cannot be
 * resynchronised, so the caller drops the connection.  Each rejection
 * reason has its own counter.
 */
#ifndef UPLINKD_FRAME_H
#define UPLINKD_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "config.h"
#include "flows.h"
#include "uplinkd.pb-c.h"

#define FRAME_MAGIC 0x55504c53u		/* "UPLS" */
#define FRAME_MAJOR 1
#define FRAME_HDR_LEN 12
#define FRAME_MAX_PAYLOAD (1u << 20)	/* 1 MiB */

enum frame_type {
	FRAME_HELLO = 1,
	FRAME_BATCH = 2,		/* flow upserts and deletes */
	FRAME_BULK_BEGIN = 3,
	FRAME_BULK_END = 4,
	FRAME_ACK = 5,
	FRAME_HEARTBEAT = 6,
	FRAME_PROVIDERS = 7,		/* provider health and drain state */
	FRAME_TYPE_MAX,
};

/* Why frames were rejected; shown by `uplinkctl sync`. */
struct frame_stats {
	uint64_t frames;		/* accepted */
	uint64_t bad_magic;
	uint64_t bad_version;
	uint64_t bad_type;
	uint64_t oversized;
	uint64_t truncated;		/* stream ended inside a frame */
	uint64_t undecodable;		/* header fine, protobuf not */
	uint64_t out_of_order;		/* sequence went backwards or skipped */
};


/*
 * Design decisions beyond the header checks above:
 *
 * - Non-zero flags are counted as bad_version and are fatal.  Flags are
 *   reserved for framing changes (compression, a different payload
 *   encoding); a peer that sets one expects us to read the payload in a
 *   way we do not know, which is a version mismatch, not a bad frame.
 *
 * - A payload that protobuf-c cannot unpack, or that unpacks but fails the
 *   structural checks below (frame_*_valid), is counted as undecodable and
 *   skipped; it is NOT fatal.  The header already told us where the next
 *   frame starts, so the stream is still in step, and what a lost frame
 *   costs is the session's call: a lost Heartbeat or Providers is repaired
 *   by the next one, a lost Batch leaves a sequence gap that the session
 *   sees (out_of_order) and repairs with a bulk resync.  Dropping the
 *   connection would cost a reconnect and the same resync.  The session
 *   learns the lost frame's type from frame_decoder_next().
 *
 * - Messages are validated structurally (presence of the fields a receiver
 *   cannot do without, address lengths matching the family, ports and
 *   enums in range, names of sane length) before they reach the caller.
 *   Whether a flow's provider exists in the local config is not structural:
 *   frame_flow_from_pb() reports that (ENOENT) and the session counts it.
 */

/* Protocol minor announced in Hello; informational (see proto/uplinkd.proto). */
#define FRAME_MINOR 0
/* Capabilities this build implements (Uplinkd__Capability bits). */
#define FRAME_CAPS (UPLINKD__CAPABILITY__CAP_BULK | \
	UPLINKD__CAPABILITY__CAP_ACK_ECHO | UPLINKD__CAPABILITY__CAP_PROVIDERS | \
	UPLINKD__CAPABILITY__CAP_ACK_HELD)
#define FRAME_BOOT_ID_LEN 16

/* "HELLO", "BATCH", ...; "UNKNOWN" out of range. */
const char *frame_type_name(enum frame_type type);
/* The message type a frame type carries, or NULL when the type is unknown. */
const ProtobufCMessageDescriptor *frame_type_descriptor(enum frame_type type);

/*
 * Encoding.  frame_encode() writes header and payload into buf (cap
 * bytes) and returns the frame's length, or -1 with errno EINVAL (unknown
 * type, or msg is not the type's message), EMSGSIZE (payload over
 * FRAME_MAX_PAYLOAD: split the batch) or ENOBUFS (cap too small;
 * frame_encoded_size() says how much is needed).  frame_encode_alloc()
 * returns a malloc'd frame in *out (caller frees) and its length in *len;
 * 0 or -1 with the same errno values, or ENOMEM.
 */
size_t frame_encoded_size(const ProtobufCMessage *msg);
ssize_t frame_encode(enum frame_type type, const ProtobufCMessage *msg,
    uint8_t *buf, size_t cap);
int frame_encode_alloc(enum frame_type type, const ProtobufCMessage *msg,
    uint8_t **out, size_t *len);

/*
 * Decoding a byte stream.  One decoder per connection; the stats it
 * counts into belong to the caller and may outlive it (the session keeps
 * its counters across reconnects).
 *
 * Usage, for each chunk the channel delivers:
 *
 *	frame_decoder_feed(d, buf, len);
 *	while ((r = frame_decoder_next(d, &m)) != FRAME_NEED_MORE) {
 *		if (r == FRAME_FATAL) { drop the connection; break; }
 *		if (r == FRAME_OK) { handle m.type/m.msg; frame_msg_free(&m); }
 *		(FRAME_SKIPPED: m.type says what was lost; nothing to free)
 *	}
 *
 * The decoder borrows buf until next() returns FRAME_NEED_MORE or
 * FRAME_FATAL: complete frames are unpacked straight from it, and only
 * the bytes of a frame that is not complete yet are copied into the
 * decoder's own buffer, which grows as far as such a frame needs and never
 * past FRAME_HDR_LEN + FRAME_MAX_PAYLOAD.  When the stream ends, call
 * frame_decoder_eof() to count a partial frame as truncated.
 *
 * A payload may hold at most FRAME_MAX_ITEMS top-level fields (in a
 * Batch: upserts + deletes); more is undecodable.  Without that bound a
 * 1 MiB frame of empty sub-messages would make protobuf-c allocate some
 * 70 times its size.  Senders split batches by this count as well as by
 * FRAME_MAX_PAYLOAD.  What a payload unpacks to is bounded too (16 times
 * its size plus 1 MiB), for the fields nested in a Batch's flows that
 * this count does not see.
 */
#define FRAME_MAX_ITEMS 32768
enum frame_result {
	FRAME_NEED_MORE = 0,	/* input used up: feed the next chunk */
	FRAME_OK,		/* msg->msg holds a valid message, caller owns it */
	FRAME_SKIPPED,		/* undecodable payload, counted and skipped */
	FRAME_FATAL,		/* header violation, counted: drop the connection */
};

struct frame_arena_block;

struct frame_msg {
	enum frame_type type;
	ProtobufCMessage *msg;	/* of frame_type_descriptor(type) */
	struct frame_arena_block *arena;	/* msg's memory (frame.c) */
};

struct frame_decoder;

/* NULL with errno ENOMEM.  stats must outlive the decoder. */
struct frame_decoder *frame_decoder_create(struct frame_stats *stats);
void frame_decoder_destroy(struct frame_decoder *d);
/* Hands over the next chunk.  0, or -1 with errno EBUSY when the previous
 * chunk was not drained (next() has not returned FRAME_NEED_MORE), or
 * EPIPE after a fatal error. */
int frame_decoder_feed(struct frame_decoder *d, const uint8_t *buf, size_t len);
/* The next frame of the stream; see enum frame_result.  After FRAME_FATAL
 * every call returns FRAME_FATAL again.  errno then says why:
 * EPROTO for a header violation (counted), ENOMEM when the buffer could
 * not grow (not a protocol counter: the caller logs it). */
enum frame_result frame_decoder_next(struct frame_decoder *d, struct frame_msg *out);
/* Bytes of an incomplete frame held by the decoder. */
size_t frame_decoder_pending(const struct frame_decoder *d);
/* The stream ended.  Returns true (and counts `truncated`) when a partial
 * frame was held; the decoder is then empty again. */
bool frame_decoder_eof(struct frame_decoder *d);
/* Frees a message from frame_decoder_next() and clears *m; NULL-safe. */
void frame_msg_free(struct frame_msg *m);

/*
 * Structural checks, run by the decoder on every message (a failure is
 * undecodable) and usable on their own.  True when valid.
 */
bool frame_flow_valid(const Uplinkd__Flow *f);
bool frame_flowkey_valid(const Uplinkd__FlowKey *k);
bool frame_message_valid(enum frame_type type, const ProtobufCMessage *msg);
/*
 * The session's check of a peer's Hello: 0, or -1 with a reason in why
 * (e.g. "unsupported protocol major 2 (we speak 1)") when the peer must be
 * refused.
 */
int frame_hello_check(const Uplinkd__Hello *h, char *why, size_t whylen);

/*
 * A stable hash of what both nodes must agree on for flows to mean the
 * same thing on both: provider names and their marks, in name order (the
 * order in the file does not matter).
 */
uint64_t frame_config_fingerprint(const struct config *cfg);

/*
 * Conversions between the flow table and the wire.
 *
 * frame_flow_to_pb() fills out->pb from f for sending; the message points
 * into *out (the addresses are copied there, so f may change afterwards)
 * and at names in cfg, which must outlive it; nothing needs freeing.  The
 * provider goes by name from cfg; origin_node is cfg->node for own flows
 * and the peer's name otherwise.  -1 with errno EINVAL when f's family or
 * provider index is not valid for cfg.
 *
 * frame_flow_from_pb() fills *f from a received flow: the provider is
 * found by NAME in the local cfg (the peer's index is ignored), the mark
 * is the local provider's mark in cfg->mark_mask with the peer's other
 * bits kept, origin is FLOW_PEER, times are clamped to 32 bits.  -1 with
 * errno EINVAL (not frame_flow_valid) or ENOENT (provider unknown here).
 */
struct frame_flow_pb {
	Uplinkd__Flow pb;
	uint8_t src[16], dst[16], nat_src[16];
};

struct frame_flowkey_pb {
	Uplinkd__FlowKey pb;
	uint8_t src[16], dst[16];
};

int frame_flow_to_pb(const struct flow *f, const struct config *cfg,
    struct frame_flow_pb *out);
int frame_flow_from_pb(const Uplinkd__Flow *pb, const struct config *cfg,
    struct flow *f);
int frame_flowkey_to_pb(const struct flow_key *k, struct frame_flowkey_pb *out);
int frame_flowkey_from_pb(const Uplinkd__FlowKey *pb, struct flow_key *k);

#endif
