/*
 * test_frame: every message type survives encode + stream decode with all
 * fields; chunking does not change what is decoded; each malformed class
 * bumps exactly its own counter; unknown fields are tolerated; flows
 * convert to the wire and back (IPv4, IPv6, provider by name).
 *
 * `test_frame --write-seeds DIR` writes the fuzz seed corpus instead
 * (tests/fuzz/corpus/fuzz_frame).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "frame.h"
#include "tap.h"

#define NTYPES (FRAME_TYPE_MAX - 1)

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static const char cfg_a_text[] =
    "node: gw1\n"
    "lan:\n  interface: lan0\n  networks: [10.0.0.0/24]\n"
    "providers:\n"
    "  - name: isp-a\n    interface: wan0\n    gateway: 198.51.100.1\n"
    "    source: 198.51.100.10\n    mark: 0x100\n"
    "  - name: isp-b\n    interface: wan1\n    gateway: 203.0.113.1\n"
    "    source: 203.0.113.10\n    mark: 0x200\n"
    "sync:\n  listen: 10.255.0.1:7410\n  peer: 10.255.0.2:7410\n"
    "  tls:\n    ca: /ca.pem\n    cert: /gw1.pem\n    key: /gw1.key\n"
    "    peer_name: gw2\n";

/* The peer's view: providers in the other order, one extra, other marks. */
static const char cfg_b_text[] =
    "node: gw2\n"
    "lan:\n  interface: lan0\n  networks: [10.0.0.0/24]\n"
    "providers:\n"
    "  - name: isp-c\n    interface: wan2\n    gateway: 192.0.2.1\n"
    "    source: 192.0.2.10\n    mark: 0x100\n"
    "  - name: isp-b\n    interface: wan1\n    gateway: 203.0.113.1\n"
    "    source: 203.0.113.10\n    mark: 0x200\n"
    "  - name: isp-a\n    interface: wan0\n    gateway: 198.51.100.1\n"
    "    source: 198.51.100.10\n    mark: 0x300\n";

/* cfg_a with the providers listed the other way round. */
static const char cfg_a_rev_text[] =
    "node: gw1\n"
    "lan:\n  interface: lan0\n  networks: [10.0.0.0/24]\n"
    "providers:\n"
    "  - name: isp-b\n    interface: wan1\n    gateway: 203.0.113.1\n"
    "    source: 203.0.113.10\n    mark: 0x200\n"
    "  - name: isp-a\n    interface: wan0\n    gateway: 198.51.100.1\n"
    "    source: 198.51.100.10\n    mark: 0x100\n";

static struct config *
load(const char *text)
{
	char err[CFG_ERR_MAX];
	struct config *cfg = config_parse("t.yaml", text, strlen(text), err,
	    sizeof(err));

	if (cfg == NULL) {
		fprintf(stderr, "config: %s\n", err);
		exit(1);
	}
	return cfg;
}

/* --- messages with every field set ------------------------------------- */

static uint8_t boot_id[FRAME_BOOT_ID_LEN] = {
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
};

static struct flow
mkflow(uint32_t n, int family)
{
	struct flow f;

	memset(&f, 0, sizeof(f));
	f.key.family = (uint8_t)family;
	f.key.proto = n % 2 ? IPPROTO_UDP : IPPROTO_TCP;
	if (family == AF_INET) {
		f.key.src[0] = 10;
		f.key.src[2] = (uint8_t)(n >> 8);
		f.key.src[3] = (uint8_t)n;
		f.key.dst[0] = 192;
		f.key.dst[3] = 7;
		f.nat_src[0] = 198;
		f.nat_src[1] = 51;
		f.nat_src[2] = 100;
		f.nat_src[3] = 10;
	} else {
		f.key.src[0] = 0xfd;
		f.key.src[14] = (uint8_t)(n >> 8);
		f.key.src[15] = (uint8_t)n;
		f.key.dst[0] = 0x20;
		f.key.dst[1] = 0x01;
		f.key.dst[15] = 7;
		f.nat_src[0] = 0x20;
		f.nat_src[1] = 0x01;
		f.nat_src[2] = 0x0d;
		f.nat_src[3] = 0xb8;
		f.nat_src[15] = 10;
	}
	f.key.sport = (uint16_t)(1024 + n);
	f.key.dport = 443;
	f.nat_port = (uint16_t)(40000 + n);
	f.provider = (uint8_t)(n % 2);
	f.l4state = FLOW_L4_ESTABLISHED;
	f.origin = FLOW_OWN;
	f.mark = 0x100u * (f.provider + 1u) | 0x1;
	f.created = 1700000000u + n;
	f.updated = 1700000100u + n;
	return f;
}

/* A message of each type, every field set; storage lives in the struct. */
struct samples {
	Uplinkd__Hello hello;
	Uplinkd__Batch batch;
	Uplinkd__BulkBegin bulk_begin;
	Uplinkd__BulkEnd bulk_end;
	Uplinkd__Ack ack;
	Uplinkd__Heartbeat heartbeat;
	Uplinkd__Providers providers;
	struct frame_flow_pb fpb[3];
	Uplinkd__Flow *fptr[3];
	struct frame_flowkey_pb kpb[2];
	Uplinkd__FlowKey *kptr[2];
	Uplinkd__ProviderState ps[2];
	Uplinkd__ProviderState *psptr[2];
	char node[8];
	char pname[2][8];
};

static void
samples_init(struct samples *s, const struct config *cfg)
{
	Uplinkd__Hello hello = UPLINKD__HELLO__INIT;
	Uplinkd__Batch batch = UPLINKD__BATCH__INIT;
	Uplinkd__BulkBegin bb = UPLINKD__BULK_BEGIN__INIT;
	Uplinkd__BulkEnd be = UPLINKD__BULK_END__INIT;
	Uplinkd__Ack ack = UPLINKD__ACK__INIT;
	Uplinkd__Heartbeat hb = UPLINKD__HEARTBEAT__INIT;
	Uplinkd__Providers pr = UPLINKD__PROVIDERS__INIT;
	Uplinkd__ProviderState ps = UPLINKD__PROVIDER_STATE__INIT;
	size_t i;

	memset(s, 0, sizeof(*s));
	snprintf(s->node, sizeof(s->node), "gw1");
	s->hello = hello;
	s->hello.node = s->node;
	s->hello.has_major = 1;
	s->hello.major = FRAME_MAJOR;
	s->hello.has_minor = 1;
	s->hello.minor = FRAME_MINOR;
	s->hello.has_capabilities = 1;
	s->hello.capabilities = FRAME_CAPS;
	s->hello.has_boot_id = 1;
	s->hello.boot_id.data = boot_id;
	s->hello.boot_id.len = sizeof(boot_id);
	s->hello.has_config_fingerprint = 1;
	s->hello.config_fingerprint = frame_config_fingerprint(cfg);
	s->hello.has_master = 1;
	s->hello.master = 1;

	for (i = 0; i < 3; i++) {
		struct flow f = mkflow((uint32_t)i, i == 1 ? AF_INET6 : AF_INET);

		if (frame_flow_to_pb(&f, cfg, &s->fpb[i]) == -1)
			abort();
		s->fptr[i] = &s->fpb[i].pb;
	}
	for (i = 0; i < 2; i++) {
		struct flow f = mkflow((uint32_t)(i + 10), i ? AF_INET6 : AF_INET);

		if (frame_flowkey_to_pb(&f.key, &s->kpb[i]) == -1)
			abort();
		s->kptr[i] = &s->kpb[i].pb;
	}
	s->batch = batch;
	s->batch.has_seq = 1;
	s->batch.seq = 42;
	s->batch.n_upserts = 3;
	s->batch.upserts = s->fptr;
	s->batch.n_deletes = 2;
	s->batch.deletes = s->kptr;
	s->batch.has_sent_ms = 1;
	s->batch.sent_ms = 1700000000123ULL;

	s->bulk_begin = bb;
	s->bulk_begin.has_epoch = 1;
	s->bulk_begin.epoch = 7;
	s->bulk_begin.has_expected = 1;
	s->bulk_begin.expected = 100000;
	s->bulk_end = be;
	s->bulk_end.has_epoch = 1;
	s->bulk_end.epoch = 7;
	s->bulk_end.has_count = 1;
	s->bulk_end.count = 99999;
	s->ack = ack;
	s->ack.has_seq = 1;
	s->ack.seq = 42;
	s->ack.has_echo_ms = 1;
	s->ack.echo_ms = 1700000000123ULL;
	s->ack.has_bulk_epoch = 1;
	s->ack.bulk_epoch = 3;
	s->ack.has_held_us = 1;
	s->ack.held_us = 17250;
	s->heartbeat = hb;
	s->heartbeat.has_unix_ms = 1;
	s->heartbeat.unix_ms = 1700000000999ULL;
	s->heartbeat.has_flows_own = 1;
	s->heartbeat.flows_own = 12345;
	s->heartbeat.has_seq_sent = 1;
	s->heartbeat.seq_sent = 43;
	s->heartbeat.has_seq_acked = 1;
	s->heartbeat.seq_acked = 41;
	s->heartbeat.has_flows_peer = 1;
	s->heartbeat.flows_peer = 678;
	s->heartbeat.has_want_bulk = 1;
	s->heartbeat.want_bulk = 1;
	s->heartbeat.has_master = 1;
	s->heartbeat.master = 1;

	for (i = 0; i < 2; i++) {
		s->ps[i] = ps;
		snprintf(s->pname[i], sizeof(s->pname[i]), "isp-%c", (char)('a' + i));
		s->ps[i].name = s->pname[i];
		s->ps[i].has_state = 1;
		s->ps[i].state = i ? UPLINKD__PROVIDER_HEALTH__PROVIDER_DOWN :
		    UPLINKD__PROVIDER_HEALTH__PROVIDER_UP;
		s->ps[i].has_draining = 1;
		s->ps[i].draining = (protobuf_c_boolean)i;
		s->ps[i].has_weight = 1;
		s->ps[i].weight = (uint32_t)(i + 1);
		s->psptr[i] = &s->ps[i];
	}
	s->providers = pr;
	s->providers.n_providers = 2;
	s->providers.providers = s->psptr;
}

static const ProtobufCMessage *
sample(const struct samples *s, enum frame_type t)
{
	switch (t) {
	case FRAME_HELLO: return &s->hello.base;
	case FRAME_BATCH: return &s->batch.base;
	case FRAME_BULK_BEGIN: return &s->bulk_begin.base;
	case FRAME_BULK_END: return &s->bulk_end.base;
	case FRAME_ACK: return &s->ack.base;
	case FRAME_HEARTBEAT: return &s->heartbeat.base;
	case FRAME_PROVIDERS: return &s->providers.base;
	default: return NULL;
	}
}

/* Every field of every (sub)message present: has_ flags, strings,
 * repeated counts.  Walks the descriptors, so a new field is covered. */
static bool
all_fields_set(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	unsigned i;

	for (i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		const char *base = (const char *)m;

		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(const void *)(base + fd->quantifier_offset);
			ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)
			    (const void *)(base + fd->offset);
			size_t j;

			if (n == 0)
				return false;
			if (fd->type == PROTOBUF_C_TYPE_MESSAGE)
				for (j = 0; j < n; j++)
					if (!all_fields_set(v[j]))
						return false;
		} else if (fd->type == PROTOBUF_C_TYPE_STRING) {
			if (*(const char *const *)(const void *)(base + fd->offset) == NULL)
				return false;
		} else if (!*(const protobuf_c_boolean *)(const void *)
		    (base + fd->quantifier_offset)) {
			return false;
		}
	}
	return true;
}

/* Packs m; caller frees. */
static uint8_t *
pack(const ProtobufCMessage *m, size_t *len)
{
	uint8_t *b;

	*len = protobuf_c_message_get_packed_size(m);
	if ((b = malloc(*len + 1)) == NULL)
		abort();
	protobuf_c_message_pack(m, b);
	return b;
}

static bool
same_message(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
	size_t la, lb;
	uint8_t *pa = pack(a, &la), *pb = pack(b, &lb);
	bool same = la == lb && memcmp(pa, pb, la) == 0;

	free(pa);
	free(pb);
	return same;
}

static uint8_t *
encode(enum frame_type t, const ProtobufCMessage *m, size_t *len)
{
	uint8_t *out;

	if (frame_encode_alloc(t, m, &out, len) == -1) {
		fprintf(stderr, "encode %s: %s\n", frame_type_name(t), strerror(errno));
		abort();
	}
	return out;
}

/* --- round trip -------------------------------------------------------- */

static void
test_round_trip(const struct samples *s)
{
	enum frame_type t;

	for (t = FRAME_HELLO; t < FRAME_TYPE_MAX; t++) {
		struct frame_stats st = { 0 };
		struct frame_decoder *d = frame_decoder_create(&st);
		const ProtobufCMessage *m = sample(s, t);
		struct frame_msg out;
		enum frame_result r;
		size_t len;
		uint8_t *buf;

		tap_ok(all_fields_set(m), "%s sample has every field set",
		    frame_type_name(t));
		buf = encode(t, m, &len);
		tap_ok(len == frame_encoded_size(m) && buf[5] == t,
		    "%s encodes to %zu bytes", frame_type_name(t), len);
		frame_decoder_feed(d, buf, len);
		r = frame_decoder_next(d, &out);
		tap_ok(r == FRAME_OK && out.type == t && out.msg != NULL &&
		    out.msg->descriptor == frame_type_descriptor(t),
		    "%s decodes as its type", frame_type_name(t));
		if (r == FRAME_OK) {
			tap_ok(all_fields_set(out.msg) && same_message(m, out.msg),
			    "%s: every field survives", frame_type_name(t));
			frame_msg_free(&out);
		}
		tap_ok(frame_decoder_next(d, &out) == FRAME_NEED_MORE &&
		    st.frames == 1 && frame_decoder_pending(d) == 0,
		    "%s: one frame counted, nothing left", frame_type_name(t));
		free(buf);
		frame_decoder_destroy(d);
	}
	/* A few spot checks through the typed structs, not only bytes. */
	{
		struct frame_stats st = { 0 };
		struct frame_decoder *d = frame_decoder_create(&st);
		struct frame_msg out;
		size_t len;
		uint8_t *buf = encode(FRAME_BATCH, &s->batch.base, &len);
		const Uplinkd__Batch *b;

		frame_decoder_feed(d, buf, len);
		if (frame_decoder_next(d, &out) == FRAME_OK) {
			b = (const Uplinkd__Batch *)out.msg;
			tap_ok(b->seq == 42 && b->n_upserts == 3 && b->n_deletes == 2 &&
			    b->upserts[1]->family == 6 && b->upserts[1]->src.len == 16 &&
			    strcmp(b->upserts[0]->provider, "isp-a") == 0 &&
			    strcmp(b->upserts[0]->origin_node, "gw1") == 0 &&
			    b->upserts[2]->nat_port == 40002,
			    "batch fields read back");
			frame_msg_free(&out);
		} else {
			tap_ok(0, "batch fields read back");
		}
		free(buf);
		frame_decoder_destroy(d);
	}
}

/* --- chunking ---------------------------------------------------------- */

/* A stream of every type several times, with a large batch in it. */
struct stream {
	uint8_t *buf;
	size_t len;
	enum frame_type types[64];
	uint8_t *payloads[64];		/* packed expected payloads */
	size_t plens[64];
	size_t n;
};

static void
stream_add(struct stream *st, enum frame_type t, const ProtobufCMessage *m)
{
	size_t len;
	uint8_t *f = encode(t, m, &len);

	st->buf = realloc(st->buf, st->len + len);
	if (st->buf == NULL)
		abort();
	memcpy(st->buf + st->len, f, len);
	st->len += len;
	st->types[st->n] = t;
	st->payloads[st->n] = pack(m, &st->plens[st->n]);
	st->n++;
	free(f);
}

static void
stream_build(struct stream *st, const struct samples *s, const struct config *cfg)
{
	enum frame_type t;
	int round;
	struct frame_flow_pb *big = calloc(5000, sizeof(*big));
	Uplinkd__Flow **ptr = calloc(5000, sizeof(*ptr));
	Uplinkd__Batch b = s->batch;
	size_t i;

	if (big == NULL || ptr == NULL)
		abort();
	memset(st, 0, sizeof(*st));
	for (round = 0; round < 3; round++)
		for (t = FRAME_HELLO; t < FRAME_TYPE_MAX; t++)
			stream_add(st, t, sample(s, t));
	for (i = 0; i < 5000; i++) {
		struct flow f = mkflow((uint32_t)i, i % 3 ? AF_INET : AF_INET6);

		frame_flow_to_pb(&f, cfg, &big[i]);
		ptr[i] = &big[i].pb;
	}
	b.n_upserts = 5000;
	b.upserts = ptr;
	stream_add(st, FRAME_BATCH, &b.base);
	stream_add(st, FRAME_ACK, &s->ack.base);
	free(big);
	free(ptr);
}

static void
stream_free(struct stream *st)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		free(st->payloads[i]);
	free(st->buf);
}

/* Feeds the stream in chunks (chunk == 0: random sizes 1..max); true when
 * exactly the expected frames come out.  Each chunk is a fresh copy that
 * is freed right after it was drained, so ASan catches any read of a
 * chunk the decoder should no longer borrow. */
static bool
stream_check(const struct stream *st, size_t chunk, size_t max)
{
	struct frame_stats stats = { 0 };
	struct frame_decoder *d = frame_decoder_create(&stats);
	size_t off = 0, got = 0;
	bool ok = true;

	while (off < st->len && ok) {
		size_t n = chunk ? chunk : 1 + (size_t)(rng() % max);
		struct frame_msg m;
		enum frame_result r;
		uint8_t *copy;

		if (n > st->len - off)
			n = st->len - off;
		if ((copy = malloc(n)) == NULL)
			abort();
		memcpy(copy, st->buf + off, n);
		off += n;
		if (frame_decoder_feed(d, copy, n) == -1)
			ok = false;
		while (ok && (r = frame_decoder_next(d, &m)) != FRAME_NEED_MORE) {
			size_t plen;
			uint8_t *p;

			if (r != FRAME_OK || got >= st->n || m.type != st->types[got]) {
				ok = false;
				break;
			}
			p = pack(m.msg, &plen);
			ok = plen == st->plens[got] &&
			    memcmp(p, st->payloads[got], plen) == 0;
			free(p);
			frame_msg_free(&m);
			got++;
		}
		free(copy);
	}
	ok = ok && got == st->n && stats.frames == st->n &&
	    frame_decoder_pending(d) == 0 && !frame_decoder_eof(d) &&
	    stats.truncated == 0 && stats.undecodable == 0;
	frame_decoder_destroy(d);
	return ok;
}

static void
test_chunking(const struct samples *s, const struct config *cfg)
{
	struct stream st;
	int i;

	stream_build(&st, s, cfg);
	tap_ok(st.len > 200000, "test stream: %zu frames, %zu bytes", st.n, st.len);
	tap_ok(stream_check(&st, st.len, 0), "stream fed at once");
	tap_ok(stream_check(&st, 1, 0), "stream fed byte by byte");
	tap_ok(stream_check(&st, FRAME_HDR_LEN, 0), "stream fed header-sized");
	for (i = 0; i < 4; i++)
		tap_ok(stream_check(&st, 0, i < 2 ? 40 : 70000),
		    "stream fed in random chunks (pass %d)", i);
	stream_free(&st);
}

/* --- malformed frames -------------------------------------------------- */

static bool
stats_eq(const struct frame_stats *a, const struct frame_stats *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

/* Feeds bytes to a fresh decoder; returns the first result other than
 * FRAME_OK (NEED_MORE when all went through) and the stats. */
static enum frame_result
feed_all(const uint8_t *buf, size_t len, struct frame_stats *st, bool eof,
    bool *eof_ret)
{
	struct frame_decoder *d = frame_decoder_create(st);
	struct frame_msg m;
	enum frame_result r;

	frame_decoder_feed(d, buf, len);
	while ((r = frame_decoder_next(d, &m)) == FRAME_OK)
		frame_msg_free(&m);
	if (r == FRAME_SKIPPED) {
		/* Skipping is not fatal: drain the rest too. */
		enum frame_result r2;

		while ((r2 = frame_decoder_next(d, &m)) != FRAME_NEED_MORE &&
		    r2 != FRAME_FATAL)
			frame_msg_free(&m);
		if (r2 == FRAME_FATAL)
			r = r2;
	}
	if (eof)
		*eof_ret = frame_decoder_eof(d);
	frame_decoder_destroy(d);
	return r;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* One bad frame after a good one: exactly one counter moves. */
static void
malformed(const char *what, const uint8_t *good, size_t glen,
    void (*spoil)(uint8_t *f, size_t *len), enum frame_result want,
    size_t counter_off)
{
	uint8_t *buf = malloc(2 * glen + 64);
	struct frame_stats st = { 0 }, exp = { 0 };
	enum frame_result r;
	size_t blen = glen;
	bool e = false;

	memcpy(buf, good, glen);
	memcpy(buf + glen, good, glen);
	spoil(buf + glen, &blen);
	r = feed_all(buf, glen + blen, &st, false, &e);
	exp.frames = 1;
	(*(uint64_t *)(void *)((char *)&exp + counter_off))++;
	tap_ok(r == want && stats_eq(&st, &exp),
	    "%s: %s, only its counter bumped", what,
	    want == FRAME_FATAL ? "fatal" : "skipped");
	free(buf);
}

static void spoil_magic(uint8_t *f, size_t *len) { (void)len; f[0] = 'X'; }
static void spoil_major(uint8_t *f, size_t *len) { (void)len; f[4] = FRAME_MAJOR + 1; }
static void spoil_major0(uint8_t *f, size_t *len) { (void)len; f[4] = 0; }
static void spoil_type0(uint8_t *f, size_t *len) { (void)len; f[5] = 0; }
static void spoil_typemax(uint8_t *f, size_t *len) { (void)len; f[5] = FRAME_TYPE_MAX; }
static void spoil_type255(uint8_t *f, size_t *len) { (void)len; f[5] = 255; }
static void spoil_flags(uint8_t *f, size_t *len) { (void)len; f[7] = 1; }
static void spoil_flags_hi(uint8_t *f, size_t *len) { (void)len; f[6] = 0x80; }
static void spoil_len(uint8_t *f, size_t *len) { (void)len; put32(f + 8, FRAME_MAX_PAYLOAD + 1); }
static void spoil_len_max(uint8_t *f, size_t *len) { (void)len; put32(f + 8, 0xffffffffu); }

/* Payload of garbage: a varint that never ends. */
static void
spoil_payload(uint8_t *f, size_t *len)
{
	size_t plen = *len - FRAME_HDR_LEN;

	memset(f + FRAME_HDR_LEN, 0xff, plen);
}

/* A wire-valid payload with a group (wire type 3). */
static void
spoil_group(uint8_t *f, size_t *len)
{
	f[FRAME_HDR_LEN] = (1 << 3) | 3;
	*len = FRAME_HDR_LEN + 1;
	put32(f + 8, 1);
}

/* A length-delimited field running past the payload. */
static void
spoil_overrun(uint8_t *f, size_t *len)
{
	f[FRAME_HDR_LEN] = (2 << 3) | 2;
	f[FRAME_HDR_LEN + 1] = 100;
	*len = FRAME_HDR_LEN + 2;
	put32(f + 8, 2);
}

static void
test_malformed(const struct samples *s)
{
	size_t glen, blen;
	uint8_t *good = encode(FRAME_HEARTBEAT, &s->heartbeat.base, &glen);
	struct frame_stats st = { 0 }, exp = { 0 };
	struct frame_msg m;
	struct frame_decoder *d;
	uint8_t hdr[FRAME_HDR_LEN], *buf;
	bool e = false;

#define OFF(f) offsetof(struct frame_stats, f)
	malformed("bad magic", good, glen, spoil_magic, FRAME_FATAL, OFF(bad_magic));
	malformed("major + 1", good, glen, spoil_major, FRAME_FATAL, OFF(bad_version));
	malformed("major 0", good, glen, spoil_major0, FRAME_FATAL, OFF(bad_version));
	malformed("type 0", good, glen, spoil_type0, FRAME_FATAL, OFF(bad_type));
	malformed("type FRAME_TYPE_MAX", good, glen, spoil_typemax, FRAME_FATAL, OFF(bad_type));
	malformed("type 255", good, glen, spoil_type255, FRAME_FATAL, OFF(bad_type));
	malformed("flags 1", good, glen, spoil_flags, FRAME_FATAL, OFF(bad_version));
	malformed("flags 0x8000", good, glen, spoil_flags_hi, FRAME_FATAL, OFF(bad_version));
	malformed("length max + 1", good, glen, spoil_len, FRAME_FATAL, OFF(oversized));
	malformed("length 2^32 - 1", good, glen, spoil_len_max, FRAME_FATAL, OFF(oversized));
	malformed("garbage protobuf", good, glen, spoil_payload, FRAME_SKIPPED, OFF(undecodable));
	malformed("protobuf group", good, glen, spoil_group, FRAME_SKIPPED, OFF(undecodable));
	malformed("field past payload", good, glen, spoil_overrun, FRAME_SKIPPED, OFF(undecodable));

	/* Truncated: a whole frame, then all but its last byte, then EOF. */
	buf = malloc(2 * glen);
	memcpy(buf, good, glen);
	memcpy(buf + glen, good, glen);
	memset(&st, 0, sizeof(st));
	tap_ok(feed_all(buf, 2 * glen - 1, &st, true, &e) == FRAME_NEED_MORE && e,
	    "truncated frame: not fatal until EOF, then reported");
	exp.frames = 1;
	exp.truncated = 1;
	tap_ok(stats_eq(&st, &exp), "truncated: only its counter bumped");
	memset(&st, 0, sizeof(st));
	memset(&exp, 0, sizeof(exp));
	tap_ok(feed_all(buf, 5, &st, true, &e) == FRAME_NEED_MORE && e &&
	    st.truncated == 1, "truncated inside the header");
	memset(&st, 0, sizeof(st));
	exp.frames = 1;
	tap_ok(feed_all(buf, glen, &st, true, &e) == FRAME_NEED_MORE && !e &&
	    stats_eq(&st, &exp), "clean EOF after a whole frame counts nothing");
	free(buf);

	/* The length is checked before anything waits for the payload: a
	 * header alone announcing too much is fatal at once. */
	memcpy(hdr, good, FRAME_HDR_LEN);
	put32(hdr + 8, FRAME_MAX_PAYLOAD + 1);
	memset(&st, 0, sizeof(st));
	tap_ok(feed_all(hdr, FRAME_HDR_LEN, &st, false, &e) == FRAME_FATAL &&
	    st.oversized == 1, "oversized header alone is fatal");
	/* Exactly the maximum is allowed: it waits for the payload. */
	put32(hdr + 8, FRAME_MAX_PAYLOAD);
	memset(&st, 0, sizeof(st));
	memset(&exp, 0, sizeof(exp));
	tap_ok(feed_all(hdr, FRAME_HDR_LEN, &st, false, &e) == FRAME_NEED_MORE &&
	    stats_eq(&st, &exp), "length == FRAME_MAX_PAYLOAD waits for more");

	/* Undecodable is not fatal: the next frame still decodes. */
	{
		uint8_t *b2 = malloc(2 * glen);

		memcpy(b2, good, glen);
		spoil_payload(b2, &glen);
		memcpy(b2 + glen, good, glen);
		memset(&st, 0, sizeof(st));
		d = frame_decoder_create(&st);
		frame_decoder_feed(d, b2, 2 * glen);
		tap_ok(frame_decoder_next(d, &m) == FRAME_SKIPPED &&
		    m.type == FRAME_HEARTBEAT && m.msg == NULL,
		    "undecodable frame skipped, its type reported");
		tap_ok(frame_decoder_next(d, &m) == FRAME_OK && st.frames == 1 &&
		    st.undecodable == 1, "the frame after it decodes");
		frame_msg_free(&m);
		frame_decoder_destroy(d);
		free(b2);
	}

	/* Protobuf fine, content not: an IPv4 flow with a 5-byte address, a
	 * port over 65535, an unknown L4 state, a Batch without seq, a Hello
	 * with a short boot id. */
	{
		struct samples bad;
		size_t flen;
		uint8_t *f;
		uint8_t five[5] = { 1, 2, 3, 4, 5 };
		int k;

		for (k = 0; k < 7; k++) {
			enum frame_type t = FRAME_BATCH;
			const char *what = "";
			struct frame_flow_pb *fp;

			memcpy(&bad, s, sizeof(bad));
			/* The copy's pointers still point into s: re-point them. */
			bad.batch.upserts = bad.fptr;
			bad.batch.deletes = bad.kptr;
			bad.fptr[0] = &bad.fpb[0].pb;
			fp = &bad.fpb[0];
			switch (k) {
			case 0:
				fp->pb.src.data = five;
				fp->pb.src.len = 5;
				what = "IPv4 flow with a 5-byte address";
				break;
			case 1:
				fp->pb.sport = 70000;
				what = "port over 65535";
				break;
			case 2:
				fp->pb.l4state = (Uplinkd__L4State)9;
				what = "unknown L4 state";
				break;
			case 3:
				bad.batch.has_seq = 0;
				what = "batch without seq";
				break;
			case 4:
				fp->pb.family = 5;
				what = "family 5";
				break;
			case 5:
				fp->pb.provider = (char *)(uintptr_t)"isp a";
				what = "provider name with a space";
				break;
			default:
				t = FRAME_HELLO;
				bad.hello.boot_id.len = 8;
				what = "hello with an 8-byte boot id";
				break;
			}
			f = encode(t, sample(&bad, t), &flen);
			memset(&st, 0, sizeof(st));
			memset(&exp, 0, sizeof(exp));
			exp.undecodable = 1;
			tap_ok(feed_all(f, flen, &st, false, &e) == FRAME_SKIPPED &&
			    stats_eq(&st, &exp), "%s: undecodable", what);
			free(f);
		}
	}

	/* A Providers frame that names one provider twice: the receiver
	 * counts the peer's usable providers per entry. */
	{
		Uplinkd__ProviderState *twice[2] = { s->psptr[0], s->psptr[0] };
		Uplinkd__Providers p = s->providers;
		size_t flen;
		uint8_t *f;

		p.providers = twice;
		tap_ok(!frame_message_valid(FRAME_PROVIDERS, &p.base),
		    "providers naming isp-a twice: not valid");
		f = encode(FRAME_PROVIDERS, &p.base, &flen);
		memset(&st, 0, sizeof(st));
		tap_ok(feed_all(f, flen, &st, false, &e) == FRAME_SKIPPED && st.undecodable == 1,
		    "... and undecodable");
		free(f);
	}

	/* More than FRAME_MAX_ITEMS top-level fields (empty deletes). */
	{
		size_t n = FRAME_MAX_ITEMS + 1, plen = 2 * n + 2, i;
		uint8_t *f = calloc(1, FRAME_HDR_LEN + plen);

		memcpy(f, good, FRAME_HDR_LEN);
		f[5] = FRAME_BATCH;
		put32(f + 8, (uint32_t)plen);
		f[FRAME_HDR_LEN] = 1 << 3;	/* seq = 1 */
		f[FRAME_HDR_LEN + 1] = 1;
		for (i = 0; i < n; i++) {
			f[FRAME_HDR_LEN + 2 + 2 * i] = (3 << 3) | 2;
			f[FRAME_HDR_LEN + 3 + 2 * i] = 0;
		}
		memset(&st, 0, sizeof(st));
		tap_ok(feed_all(f, FRAME_HDR_LEN + plen, &st, false, &e) == FRAME_SKIPPED &&
		    st.undecodable == 1, "more than FRAME_MAX_ITEMS items: undecodable");
		free(f);
	}

	/* Unknown fields inside a Batch's flow escape that count; each costs
	 * protobuf-c some 250 bytes: a few are tolerated (a newer peer), a
	 * frame full of them is undecodable (the arena's bound). */
	for (int full = 0; full <= 1; full++) {
		const Uplinkd__Flow *flow = &s->fpb[0].pb;
		size_t packed = uplinkd__flow__get_packed_size(flow);
		size_t nunk = full ? (FRAME_MAX_PAYLOAD - packed - 16) / 3 : 100;
		size_t inner = packed + 3 * nunk, off = FRAME_HDR_LEN, v;
		uint8_t *f = malloc(FRAME_HDR_LEN + FRAME_MAX_PAYLOAD);

		memcpy(f, good, FRAME_HDR_LEN);
		f[5] = FRAME_BATCH;
		f[off++] = 1 << 3;	/* seq = 1 */
		f[off++] = 1;
		f[off++] = (2 << 3) | 2;	/* one upsert */
		for (v = inner; v >= 0x80; v >>= 7)
			f[off++] = (uint8_t)(v | 0x80);
		f[off++] = (uint8_t)v;
		off += uplinkd__flow__pack(flow, f + off);
		for (size_t i = 0; i < nunk; i++) {
			f[off++] = 0x80;	/* field 32, varint 0 */
			f[off++] = 0x02;
			f[off++] = 0;
		}
		put32(f + 8, (uint32_t)(off - FRAME_HDR_LEN));
		memset(&st, 0, sizeof(st));
		if (full)
			tap_ok(feed_all(f, off, &st, false, &e) == FRAME_SKIPPED &&
			    st.undecodable == 1,
			    "a flow with %zu unknown fields (a %zu-byte frame): undecodable", nunk,
			    off - FRAME_HDR_LEN);
		else
			tap_ok(feed_all(f, off, &st, false, &e) == FRAME_NEED_MORE && st.frames == 1 &&
			    st.undecodable == 0,
			    "a flow with %zu unknown fields: decoded", nunk);
		free(f);
	}

	/* A fatal decoder stays dead; feeding an undrained one is refused. */
	memset(&st, 0, sizeof(st));
	d = frame_decoder_create(&st);
	blen = glen;
	buf = malloc(glen);
	memcpy(buf, good, glen);
	frame_decoder_feed(d, buf, glen);
	errno = 0;
	tap_ok(frame_decoder_feed(d, buf, glen) == -1 && errno == EBUSY,
	    "feed before draining: EBUSY");
	tap_ok(frame_decoder_next(d, &m) == FRAME_OK, "then the frame decodes");
	frame_msg_free(&m);
	tap_ok(frame_decoder_next(d, &m) == FRAME_NEED_MORE, "and the chunk is drained");
	spoil_magic(buf, &blen);
	frame_decoder_feed(d, buf, glen);
	tap_ok(frame_decoder_next(d, &m) == FRAME_FATAL &&
	    frame_decoder_next(d, &m) == FRAME_FATAL, "fatal stays fatal");
	errno = 0;
	tap_ok(frame_decoder_feed(d, good, glen) == -1 && errno == EPIPE,
	    "feed after fatal: EPIPE");
	frame_decoder_destroy(d);
	frame_decoder_destroy(NULL);
	frame_msg_free(NULL);
	free(buf);
	free(good);
#undef OFF
}

/* --- encoder limits ---------------------------------------------------- */

static void
test_encode_errors(const struct samples *s)
{
	uint8_t small[16], *big, *out = NULL;
	Uplinkd__Hello h = s->hello;
	size_t len = 0;

	errno = 0;
	tap_ok(frame_encode(FRAME_ACK, &s->hello.base, small, sizeof(small)) == -1 &&
	    errno == EINVAL, "message of the wrong type: EINVAL");
	errno = 0;
	tap_ok(frame_encode((enum frame_type)0, &s->hello.base, small, sizeof(small)) == -1 &&
	    errno == EINVAL, "unknown frame type: EINVAL");
	errno = 0;
	tap_ok(frame_encode(FRAME_HELLO, &s->hello.base, small, sizeof(small)) == -1 &&
	    errno == ENOBUFS, "buffer too small: ENOBUFS");
	big = calloc(1, FRAME_MAX_PAYLOAD);
	h.boot_id.data = big;
	h.boot_id.len = FRAME_MAX_PAYLOAD;
	errno = 0;
	tap_ok(frame_encode_alloc(FRAME_HELLO, &h.base, &out, &len) == -1 &&
	    errno == EMSGSIZE && out == NULL, "payload over the maximum: EMSGSIZE");
	free(big);
}

/* --- unknown fields ---------------------------------------------------- */

static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Appends fields 100 (varint), 101 (bytes), 102 (fixed32) to a payload. */
static size_t
add_unknown(uint8_t *p)
{
	size_t n = 0;

	n += put_varint(p + n, (100 << 3) | 0);
	n += put_varint(p + n, 123456789);
	n += put_varint(p + n, (101 << 3) | 2);
	n += put_varint(p + n, 3);
	memcpy(p + n, "new", 3);
	n += 3;
	n += put_varint(p + n, (102 << 3) | 5);
	memset(p + n, 0xab, 4);
	n += 4;
	return n;
}

static void
test_unknown_fields(const struct samples *s)
{
	enum frame_type t;

	for (t = FRAME_HELLO; t < FRAME_TYPE_MAX; t++) {
		const ProtobufCMessage *m = sample(s, t);
		size_t len;
		uint8_t *f = encode(t, m, &len), *g = malloc(len + 64);
		struct frame_stats st = { 0 };
		struct frame_decoder *d = frame_decoder_create(&st);
		struct frame_msg out;
		size_t extra;

		memcpy(g, f, len);
		extra = add_unknown(g + len);
		put32(g + 8, (uint32_t)(len - FRAME_HDR_LEN + extra));
		frame_decoder_feed(d, g, len + extra);
		if (frame_decoder_next(d, &out) == FRAME_OK) {
			/* Known fields intact: compare them field by field
			 * through a copy without the unknown ones. */
			size_t n_unknown = out.msg->n_unknown_fields;

			out.msg->n_unknown_fields = 0;
			tap_ok(n_unknown == 3 && same_message(m, out.msg),
			    "%s with unknown fields 100-102: accepted, known fields intact",
			    frame_type_name(t));
			out.msg->n_unknown_fields = n_unknown;
			frame_msg_free(&out);
		} else {
			tap_ok(0, "%s with unknown fields accepted", frame_type_name(t));
		}
		frame_decoder_destroy(d);
		free(f);
		free(g);
	}

	/* ... and inside a nested Flow of a Batch. */
	{
		Uplinkd__Batch b = UPLINKD__BATCH__INIT;
		uint8_t flow[512], pl[600], fr[700];
		size_t flen, n = 0, extra;
		struct frame_stats st = { 0 };
		struct frame_decoder *d = frame_decoder_create(&st);
		struct frame_msg out;

		flen = protobuf_c_message_pack(&s->fpb[1].pb.base, flow);
		extra = add_unknown(flow + flen);
		b.has_seq = 1;
		b.seq = 9;
		n = protobuf_c_message_pack(&b.base, pl);
		n += put_varint(pl + n, (2 << 3) | 2);
		n += put_varint(pl + n, flen + extra);
		memcpy(pl + n, flow, flen + extra);
		n += flen + extra;
		put32(fr, FRAME_MAGIC);
		fr[4] = FRAME_MAJOR;
		fr[5] = FRAME_BATCH;
		fr[6] = fr[7] = 0;
		put32(fr + 8, (uint32_t)n);
		memcpy(fr + FRAME_HDR_LEN, pl, n);
		frame_decoder_feed(d, fr, FRAME_HDR_LEN + n);
		if (frame_decoder_next(d, &out) == FRAME_OK) {
			const Uplinkd__Batch *ob = (const Uplinkd__Batch *)out.msg;

			tap_ok(ob->n_upserts == 1 && ob->upserts[0]->base.n_unknown_fields == 3 &&
			    ob->upserts[0]->nat_port == s->fpb[1].pb.nat_port,
			    "unknown fields inside a nested Flow tolerated");
			frame_msg_free(&out);
		} else {
			tap_ok(0, "unknown fields inside a nested Flow tolerated");
		}
		frame_decoder_destroy(d);
	}

	/* Field number 0 is no field: protobuf-c keeps it as unknown when the
	 * tag is padded (80 00) inside a sub-message, and could not re-read
	 * it after packing.  Refused as undecodable. */
	{
		Uplinkd__Batch b = UPLINKD__BATCH__INIT;
		uint8_t flow[512], fr[700];
		size_t flen, n;
		struct frame_stats st = { 0 }, exp = { 0 };
		bool e;

		flen = protobuf_c_message_pack(&s->fpb[0].pb.base, flow);
		memcpy(flow + flen, "\x80\x00\x05", 3);
		flen += 3;
		b.has_seq = 1;
		b.seq = 9;
		n = protobuf_c_message_pack(&b.base, fr + FRAME_HDR_LEN);
		n += put_varint(fr + FRAME_HDR_LEN + n, (2 << 3) | 2);
		n += put_varint(fr + FRAME_HDR_LEN + n, flen);
		memcpy(fr + FRAME_HDR_LEN + n, flow, flen);
		n += flen;
		put32(fr, FRAME_MAGIC);
		fr[4] = FRAME_MAJOR;
		fr[5] = FRAME_BATCH;
		fr[6] = fr[7] = 0;
		put32(fr + 8, (uint32_t)n);
		exp.undecodable = 1;
		tap_ok(feed_all(fr, FRAME_HDR_LEN + n, &st, false, &e) == FRAME_SKIPPED &&
		    stats_eq(&st, &exp), "field number 0 in a nested Flow: undecodable");
	}
}

/* --- hello, fingerprint ------------------------------------------------ */

static void
test_hello(const struct samples *s)
{
	Uplinkd__Hello h = s->hello;
	char why[128] = "";

	tap_ok(frame_hello_check(&h, why, sizeof(why)) == 0, "our hello accepted");
	h.major = FRAME_MAJOR + 1;
	tap_ok(frame_hello_check(&h, why, sizeof(why)) == -1 &&
	    strstr(why, "major 2") != NULL, "hello with major 2 refused: %s", why);
	h = s->hello;
	h.node = NULL;
	tap_ok(frame_hello_check(&h, why, sizeof(why)) == -1, "hello without node refused");
}

static void
test_fingerprint(void)
{
	struct config *a = load(cfg_a_text), *r = load(cfg_a_rev_text),
	    *b = load(cfg_b_text);

	tap_ok(frame_config_fingerprint(a) == frame_config_fingerprint(r),
	    "fingerprint ignores provider order");
	tap_ok(frame_config_fingerprint(a) != frame_config_fingerprint(b),
	    "fingerprint differs for other names/marks");
	config_free(a);
	config_free(r);
	config_free(b);
}

/* --- flow conversion --------------------------------------------------- */

static bool
flow_eq(const struct flow *a, const struct flow *b)
{
	return memcmp(&a->key, &b->key, sizeof(a->key)) == 0 &&
	    memcmp(a->nat_src, b->nat_src, 16) == 0 && a->nat_port == b->nat_port &&
	    a->provider == b->provider && a->l4state == b->l4state &&
	    a->mark == b->mark && a->created == b->created && a->updated == b->updated;
}

static void
test_flow_conversion(void)
{
	struct config *a = load(cfg_a_text), *r = load(cfg_a_rev_text),
	    *b = load(cfg_b_text);
	int fam;

	for (fam = 0; fam < 2; fam++) {
		int family = fam ? AF_INET6 : AF_INET;
		const char *fn = fam ? "IPv6" : "IPv4";
		struct flow f = mkflow(fam ? 77 : 76, family), back;
		struct frame_flow_pb pb;
		struct frame_flowkey_pb kpb;
		Uplinkd__Flow *up;
		Uplinkd__FlowKey *kp;
		struct flow_key k;
		uint8_t wire[512];
		size_t n;

		f.l4state = FLOW_L4_SYN_SENT;
		tap_ok(frame_flow_to_pb(&f, a, &pb) == 0 && frame_flow_valid(&pb.pb),
		    "%s: to_pb gives a valid message", fn);
		/* The message must not depend on f after the call. */
		memset(&f.key.src, 0xee, sizeof(f.key.src));
		f = mkflow(fam ? 77 : 76, family);
		f.l4state = FLOW_L4_SYN_SENT;
		n = protobuf_c_message_pack(&pb.pb.base, wire);
		up = uplinkd__flow__unpack(NULL, n, wire);
		tap_ok(up != NULL && frame_flow_from_pb(up, a, &back) == 0 &&
		    flow_eq(&f, &back) && back.origin == FLOW_PEER,
		    "%s: round trip through the wire, same config", fn);
		/* Same providers listed the other way round: by name. */
		tap_ok(up != NULL && frame_flow_from_pb(up, r, &back) == 0 &&
		    strcmp(r->providers[back.provider].name,
		    a->providers[f.provider].name) == 0 &&
		    back.provider != f.provider && back.mark == f.mark,
		    "%s: provider found by name in a reordered config", fn);
		/* Other marks there: the local mark wins, other bits kept. */
		tap_ok(up != NULL && frame_flow_from_pb(up, b, &back) == 0 &&
		    strcmp(b->providers[back.provider].name,
		    a->providers[f.provider].name) == 0 &&
		    back.mark == (b->providers[back.provider].mark | 0x1),
		    "%s: local provider mark applied", fn);
		/* A flow a FlowKey parse of the same bytes gives the key. */
		kp = uplinkd__flow_key__unpack(NULL, n, wire);
		tap_ok(kp != NULL && frame_flowkey_from_pb(kp, &k) == 0 &&
		    memcmp(&k, &f.key, sizeof(k)) == 0,
		    "%s: a Flow's bytes parse as its FlowKey", fn);
		if (kp != NULL)
			uplinkd__flow_key__free_unpacked(kp, NULL);
		tap_ok(frame_flowkey_to_pb(&f.key, &kpb) == 0 &&
		    frame_flowkey_from_pb(&kpb.pb, &k) == 0 &&
		    memcmp(&k, &f.key, sizeof(k)) == 0, "%s: flow key round trip", fn);
		if (up != NULL)
			uplinkd__flow__free_unpacked(up, NULL);
	}

	/* A provider the local config lacks. */
	{
		struct flow f = mkflow(5, AF_INET), back;
		struct frame_flow_pb pb;

		f.provider = 0;		/* isp-c in b */
		frame_flow_to_pb(&f, b, &pb);
		errno = 0;
		tap_ok(frame_flow_from_pb(&pb.pb, a, &back) == -1 && errno == ENOENT,
		    "unknown provider: ENOENT");
		f.provider = 9;
		errno = 0;
		tap_ok(frame_flow_to_pb(&f, a, &pb) == -1 && errno == EINVAL,
		    "provider index outside the config: EINVAL");
		f.provider = 0;
		f.key.family = AF_UNIX;
		errno = 0;
		tap_ok(frame_flow_to_pb(&f, a, &pb) == -1 && errno == EINVAL,
		    "unknown family: EINVAL");
	}
	config_free(a);
	config_free(r);
	config_free(b);
}

/* --- seeds for the fuzzer ---------------------------------------------- */

static int
write_file(const char *dir, const char *name, const uint8_t *b, size_t len)
{
	char path[4096];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fp = fopen(path, "wb")) == NULL || fwrite(b, 1, len, fp) != len) {
		perror(path);
		if (fp != NULL)
			fclose(fp);
		return -1;
	}
	return fclose(fp);
}

static int
write_seeds(const char *dir, const struct samples *s)
{
	enum frame_type t;
	uint8_t all[8192];
	size_t alen = 0;

	for (t = FRAME_HELLO; t < FRAME_TYPE_MAX; t++) {
		char name[64];
		size_t len;
		uint8_t *f = encode(t, sample(s, t), &len);

		snprintf(name, sizeof(name), "%d-%s", (int)t, frame_type_name(t));
		if (write_file(dir, name, f, len) == -1)
			return 1;
		if (alen + len <= sizeof(all)) {
			memcpy(all + alen, f, len);
			alen += len;
		}
		free(f);
	}
	return write_file(dir, "stream-all-types", all, alen) == -1;
}

int
main(int argc, char **argv)
{
	struct config *cfg = load(cfg_a_text);
	struct samples *s = malloc(sizeof(*s));
	int rc;

	samples_init(s, cfg);
	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
		rc = write_seeds(argv[2], s);
		free(s);
		config_free(cfg);
		return rc;
	}
	test_round_trip(s);
	test_chunking(s, cfg);
	test_malformed(s);
	test_encode_errors(s);
	test_unknown_fields(s);
	test_hello(s);
	test_fingerprint();
	test_flow_conversion();
	free(s);
	config_free(cfg);
	return tap_done();
}
