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

#endif
