/*
 * fuzz_frame: libFuzzer target for the sync frame decoder (sync/frame.c).
 *
 * The input is a byte stream as the channel would deliver it.  It is
 * decoded twice: in one chunk, and in chunks whose sizes come from a hash
 * of the input (so a seed corpus of plain frames works and every input
 * always gets the same chunking).  Both runs must produce the same results
 * in the same order: chunking must never change what is decoded.  Every
 * accepted message is validated, its flows converted with a fixed config,
 * re-encoded and decoded again, and freed.  Each chunk lives in its own
 * allocation, freed right after it was drained, so ASan sees any read of
 * a chunk the decoder should no longer hold.
 *
 * Run: tests/fuzz/run.sh (see there for the longer run).
 *
 * FUZZ_SOURCES: sync/frame.c daemon/config.c daemon/netaddr.c daemon/hash.c daemon/log.c proto/uplinkd.pb-c.c
 * FUZZ_PKGS: libprotobuf-c yaml-0.1
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RESULTS 4096

struct outcome {
	enum frame_result r;
	enum frame_type type;
	uint64_t digest;	/* of the re-packed message */
};

struct run {
	struct outcome o[MAX_RESULTS];
	size_t n;
	bool eof;
	struct frame_stats st;
};

static const char fuzz_cfg_text[] =
    "node: gw2\n"
    "lan:\n  interface: lan0\n  networks: [10.0.0.0/24]\n"
    "providers:\n"
    "  - name: isp-b\n    interface: wan1\n    gateway: 203.0.113.1\n"
    "    source: 203.0.113.10\n"
    "  - name: isp-a\n    interface: wan0\n    gateway: 198.51.100.1\n"
    "    source: 198.51.100.10\n";

static struct config *fuzz_cfg;

static uint64_t
fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	while (n-- > 0)
		h = (h ^ *p++) * 0x100000001b3ULL;
	return h;
}

/* Everything a session would do with an accepted message. */
static uint64_t
use(const struct frame_msg *m)
{
	size_t len = protobuf_c_message_get_packed_size(m->msg), i;
	uint8_t *buf = malloc(FRAME_HDR_LEN + len + 1), *again;
	ProtobufCMessage *m2;
	ssize_t n;
	uint64_t digest;

	if (!frame_message_valid(m->type, m->msg))
		abort();
	if (m->type == FRAME_BATCH) {
		const Uplinkd__Batch *b = (const Uplinkd__Batch *)m->msg;
		struct flow f;
		struct flow_key k;

		for (i = 0; i < b->n_upserts; i++)
			if (frame_flow_from_pb(b->upserts[i], fuzz_cfg, &f) == 0) {
				struct frame_flow_pb pb;

				f.origin = FLOW_OWN;
				if (frame_flow_to_pb(&f, fuzz_cfg, &pb) != 0 ||
				    !frame_flow_valid(&pb.pb))
					abort();
			}
		for (i = 0; i < b->n_deletes; i++)
			if (frame_flowkey_from_pb(b->deletes[i], &k) != 0)
				abort();
	} else if (m->type == FRAME_HELLO) {
		char why[128];

		(void)frame_hello_check((const Uplinkd__Hello *)m->msg, why,
		    sizeof(why));
	}

	/* Re-encoded, a valid message decodes to the same bytes. */
	n = frame_encode(m->type, m->msg, buf, FRAME_HDR_LEN + len + 1);
	if (n < 0 || (size_t)n != FRAME_HDR_LEN + len)
		abort();
	digest = fnv(buf + FRAME_HDR_LEN, len);
	m2 = protobuf_c_message_unpack(frame_type_descriptor(m->type), NULL, len,
	    buf + FRAME_HDR_LEN);
	if (m2 == NULL || !frame_message_valid(m->type, m2))
		abort();
	again = malloc(len + 1);
	if (protobuf_c_message_pack(m2, again) != len || fnv(again, len) != digest)
		abort();
	free(again);
	protobuf_c_message_free_unpacked(m2, NULL);
	free(buf);
	return digest;
}

static void
decode(const uint8_t *data, size_t size, bool chunked, struct run *run)
{
	struct frame_decoder *d = frame_decoder_create(&run->st);
	uint64_t rng = fnv(data, size) | 1;
	size_t off = 0;
	bool dead = false;

	if (d == NULL)
		abort();
	while (off < size && !dead) {
		size_t n = size - off;
		struct frame_msg m;
		enum frame_result r;
		uint8_t *chunk;

		if (chunked) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			/* Mostly small chunks, sometimes large ones. */
			n = 1 + (size_t)(rng % ((rng & 0x30) ? 16 : 4096));
			if (n > size - off)
				n = size - off;
		}
		chunk = malloc(n);
		memcpy(chunk, data + off, n);
		off += n;
		if (frame_decoder_feed(d, chunk, n) != 0)
			abort();
		while ((r = frame_decoder_next(d, &m)) != FRAME_NEED_MORE) {
			struct outcome *o = &run->o[run->n < MAX_RESULTS ?
			    run->n++ : MAX_RESULTS - 1];

			o->r = r;
			o->type = m.type;
			o->digest = r == FRAME_OK ? use(&m) : 0;
			frame_msg_free(&m);
			if (r == FRAME_FATAL) {
				dead = true;
				break;
			}
		}
		free(chunk);
	}
	run->eof = frame_decoder_eof(d);
	frame_decoder_destroy(d);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run whole, chunked;
	char err[CFG_ERR_MAX];

	if (fuzz_cfg == NULL &&
	    (fuzz_cfg = config_parse("fuzz.yaml", fuzz_cfg_text,
	    strlen(fuzz_cfg_text), err, sizeof(err))) == NULL)
		abort();
	memset(&whole, 0, sizeof(whole));
	memset(&chunked, 0, sizeof(chunked));
	decode(data, size, false, &whole);
	decode(data, size, true, &chunked);
	if (whole.n != chunked.n || whole.eof != chunked.eof ||
	    memcmp(whole.o, chunked.o, whole.n * sizeof(whole.o[0])) != 0 ||
	    memcmp(&whole.st, &chunked.st, sizeof(whole.st)) != 0)
		abort();
	return 0;
}
