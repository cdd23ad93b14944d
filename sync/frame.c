/*
 * frame: header checks, the incremental stream decoder, structural
 * validation of decoded messages and the flow <-> wire conversions.
 *
 * The decoder's input path, for each frame:
 *
 *   header complete? -> magic -> major -> type -> flags -> length    (fatal)
 *   payload complete? -> wire scan (item bound) -> protobuf-c unpack
 *                     -> frame_message_valid()                  (skipped)
 *
 * Complete frames are decoded in place from the caller's chunk; only an
 * incomplete frame at the end of a chunk is copied, and it is completed
 * from the next chunk with exactly the bytes it still lacks.
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
#include "hash.h"

#define FRAME_BUF_LEN		(FRAME_HDR_LEN + FRAME_MAX_PAYLOAD)
#define FRAME_FP_SEED		0x75706c73667072ULL	/* fixed: both nodes hash */

struct frame_decoder {
	struct frame_stats *st;
	uint8_t *buf;			/* an incomplete frame */
	size_t cap;			/* allocated, <= FRAME_BUF_LEN */
	size_t len;			/* bytes of it held */
	size_t need;			/* its full length once the header is in */
	const uint8_t *in;		/* borrowed chunk */
	size_t inlen;
	bool fatal;
};

static const char *const frame_names[FRAME_TYPE_MAX] = {
	[FRAME_HELLO] = "HELLO",
	[FRAME_BATCH] = "BATCH",
	[FRAME_BULK_BEGIN] = "BULK_BEGIN",
	[FRAME_BULK_END] = "BULK_END",
	[FRAME_ACK] = "ACK",
	[FRAME_HEARTBEAT] = "HEARTBEAT",
	[FRAME_PROVIDERS] = "PROVIDERS",
};

static const ProtobufCMessageDescriptor *const frame_descs[FRAME_TYPE_MAX] = {
	[FRAME_HELLO] = &uplinkd__hello__descriptor,
	[FRAME_BATCH] = &uplinkd__batch__descriptor,
	[FRAME_BULK_BEGIN] = &uplinkd__bulk_begin__descriptor,
	[FRAME_BULK_END] = &uplinkd__bulk_end__descriptor,
	[FRAME_ACK] = &uplinkd__ack__descriptor,
	[FRAME_HEARTBEAT] = &uplinkd__heartbeat__descriptor,
	[FRAME_PROVIDERS] = &uplinkd__providers__descriptor,
};

/* The wire enum is numbered like the flow table's; keep them in step. */
_Static_assert((int)UPLINKD__L4_STATE__L4_CLOSE == (int)FLOW_L4_CLOSE &&
    (int)UPLINKD__L4_STATE__L4_ESTABLISHED == (int)FLOW_L4_ESTABLISHED,
    "L4State and enum flow_l4state differ");
_Static_assert(FRAME_HDR_LEN == 12, "header layout in frame.h");

const char *
frame_type_name(enum frame_type type)
{
	if ((unsigned)type >= FRAME_TYPE_MAX || frame_names[type] == NULL)
		return "UNKNOWN";
	return frame_names[type];
}

const ProtobufCMessageDescriptor *
frame_type_descriptor(enum frame_type type)
{
	if ((unsigned)type >= FRAME_TYPE_MAX)
		return NULL;
	return frame_descs[type];
}

/* --- encoding --------------------------------------------------------- */

static void
frame_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
frame_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

size_t
frame_encoded_size(const ProtobufCMessage *msg)
{
	return FRAME_HDR_LEN + protobuf_c_message_get_packed_size(msg);
}

ssize_t
frame_encode(enum frame_type type, const ProtobufCMessage *msg, uint8_t *buf,
    size_t cap)
{
	const ProtobufCMessageDescriptor *desc = frame_type_descriptor(type);
	size_t plen;

	if (desc == NULL || msg == NULL || msg->descriptor != desc) {
		errno = EINVAL;
		return -1;
	}
	plen = protobuf_c_message_get_packed_size(msg);
	if (plen > FRAME_MAX_PAYLOAD) {
		errno = EMSGSIZE;
		return -1;
	}
	if (cap < FRAME_HDR_LEN + plen) {
		errno = ENOBUFS;
		return -1;
	}
	frame_put32(buf, FRAME_MAGIC);
	buf[4] = FRAME_MAJOR;
	buf[5] = (uint8_t)type;
	buf[6] = 0;
	buf[7] = 0;
	frame_put32(buf + 8, (uint32_t)plen);
	if (protobuf_c_message_pack(msg, buf + FRAME_HDR_LEN) != plen) {
		errno = EINVAL;		/* a broken message (bad pointers) */
		return -1;
	}
	return (ssize_t)(FRAME_HDR_LEN + plen);
}

int
frame_encode_alloc(enum frame_type type, const ProtobufCMessage *msg,
    uint8_t **out, size_t *len)
{
	const ProtobufCMessageDescriptor *desc = frame_type_descriptor(type);
	size_t need;
	uint8_t *buf;
	ssize_t n;

	if (desc == NULL || msg == NULL || msg->descriptor != desc) {
		errno = EINVAL;
		return -1;
	}
	need = frame_encoded_size(msg);
	if (need > FRAME_BUF_LEN) {
		errno = EMSGSIZE;
		return -1;
	}
	if ((buf = malloc(need)) == NULL)
		return -1;
	if ((n = frame_encode(type, msg, buf, need)) == -1) {
		free(buf);
		return -1;
	}
	*out = buf;
	*len = (size_t)n;
	return 0;
}

/* --- decoding --------------------------------------------------------- */

struct frame_decoder *
frame_decoder_create(struct frame_stats *stats)
{
	struct frame_decoder *d;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->st = stats;
	return d;
}

void
frame_decoder_destroy(struct frame_decoder *d)
{
	if (d == NULL)
		return;
	free(d->buf);
	free(d);
}

int
frame_decoder_feed(struct frame_decoder *d, const uint8_t *buf, size_t len)
{
	if (d->fatal) {
		errno = EPIPE;
		return -1;
	}
	if (d->inlen > 0) {
		errno = EBUSY;
		return -1;
	}
	d->in = buf;
	d->inlen = len;
	return 0;
}

/* Checks a complete header; on success *plen is the payload length.  The
 * order matters: the length is looked at only once the rest proved this
 * is a frame of ours. */
static bool
frame_header_ok(struct frame_decoder *d, const uint8_t *h, size_t *plen)
{
	uint32_t len;

	if (frame_get32(h) != FRAME_MAGIC) {
		d->st->bad_magic++;
		return false;
	}
	if (h[4] != FRAME_MAJOR) {
		d->st->bad_version++;
		return false;
	}
	if (h[5] == 0 || h[5] >= FRAME_TYPE_MAX) {
		d->st->bad_type++;
		return false;
	}
	if (h[6] != 0 || h[7] != 0) {
		d->st->bad_version++;	/* see frame.h: reserved for framing changes */
		return false;
	}
	len = frame_get32(h + 8);
	if (len > FRAME_MAX_PAYLOAD) {
		d->st->oversized++;
		return false;
	}
	*plen = len;
	return true;
}

/* A header check failed: errno EPROTO for the caller's log. */
static bool
frame_header_check(struct frame_decoder *d, const uint8_t *h, size_t *plen)
{
	if (frame_header_ok(d, h, plen))
		return true;
	errno = EPROTO;
	return false;
}

static bool
frame_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	unsigned shift;

	for (shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

/*
 * Walks the payload's top-level fields without decoding them: false when
 * the wire structure is broken or there are more than FRAME_MAX_ITEMS
 * fields.  Groups (wire types 3 and 4) are refused: nothing of ours uses
 * them.
 */
static bool
frame_scan(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	size_t items = 0;
	uint64_t key, v;

	while (p < end) {
		if (++items > FRAME_MAX_ITEMS)
			return false;
		if (!frame_varint(&p, end, &key) || (key >> 3) == 0)
			return false;
		switch (key & 7) {
		case 0:
			if (!frame_varint(&p, end, &v))
				return false;
			break;
		case 1:
			if (end - p < 8)
				return false;
			p += 8;
			break;
		case 2:
			if (!frame_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return false;
			p += v;
			break;
		case 5:
			if (end - p < 4)
				return false;
			p += 4;
			break;
		default:
			return false;
		}
	}
	return true;
}

/*
 * An unpacked message lives in an arena of its own: protobuf-c asks for a
 * few allocations per flow, which for a Batch of thousands of flows were
 * as many malloc/free pairs as the rest of the receive path costs.  The
 * first block is sized from the payload (unpacked is about 3x packed);
 * more are chained when it runs out.  frame_msg_free releases them all.
 */
struct frame_arena_block {
	struct frame_arena_block *next;
	size_t used, cap;
	max_align_t data[];
};

struct frame_arena {
	struct frame_arena_block *head;
	size_t first;		/* bytes of the first block */
	size_t total, limit;	/* bytes taken, and the most it may take */
};

/*
 * What a payload may unpack to: about 3x its size for our messages, and
 * some 5x for a Batch of 32768 empty flows (FRAME_MAX_ITEMS), but
 * unknown fields nested in a Batch's flows escape that count, and each
 * costs protobuf-c far more than its 2 or 3 bytes (a 1 MiB frame of them
 * took 88 MB).  Beyond the bound the frame is undecodable.
 */
#define FRAME_ARENA_FACTOR 16
#define FRAME_ARENA_SLACK (1u << 20)

static void *
frame_arena_alloc(void *data, size_t size)
{
	struct frame_arena *a = data;
	struct frame_arena_block *b = a->head;
	size_t align = sizeof(max_align_t);
	void *p;

	if (size > SIZE_MAX / 2)
		return NULL;
	size = (size + align - 1) / align * align;
	if (b == NULL || b->cap - b->used < size) {
		size_t cap = b != NULL ? b->cap * 2 : a->first;

		if (cap < size)
			cap = size;
		if (cap > a->limit - a->total)
			cap = a->limit - a->total;
		if (cap < size || (b = malloc(sizeof(*b) + cap)) == NULL)
			return NULL;
		a->total += cap;
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
	}
	p = (char *)b->data + b->used;
	b->used += size;
	return p;
}

/* Pieces are released with their arena. */
static void
frame_arena_nofree(void *data, void *p)
{
	(void)data;
	(void)p;
}

static void
frame_arena_release(struct frame_arena_block *b)
{
	while (b != NULL) {
		struct frame_arena_block *next = b->next;

		free(b);
		b = next;
	}
}

/* Decodes one complete frame whose header already passed. */
static enum frame_result
frame_decode(struct frame_decoder *d, const uint8_t *frame, size_t plen,
    struct frame_msg *out)
{
	enum frame_type type = (enum frame_type)frame[5];
	const uint8_t *payload = frame + FRAME_HDR_LEN;
	ProtobufCMessage *msg = NULL;
	struct frame_arena a = { NULL, 3 * plen + 256, 0,
		FRAME_ARENA_FACTOR * plen + FRAME_ARENA_SLACK };
	ProtobufCAllocator alloc = { frame_arena_alloc, frame_arena_nofree, &a };

	out->type = type;
	out->msg = NULL;
	out->arena = NULL;
	if (frame_scan(payload, plen))
		msg = protobuf_c_message_unpack(frame_descs[type], &alloc, plen, payload);
	if (msg == NULL || !frame_message_valid(type, msg)) {
		frame_arena_release(a.head);
		d->st->undecodable++;
		return FRAME_SKIPPED;
	}
	d->st->frames++;
	out->msg = msg;
	out->arena = a.head;
	return FRAME_OK;
}

/*
 * Makes room for a frame of `need` bytes.  The buffer grows by doubling
 * from 4 KiB, and only when a frame is split across chunks: most frames
 * are small or arrive whole, so an idle connection costs little, and one
 * large frame does not reallocate at every chunk.
 */
static int
frame_reserve(struct frame_decoder *d, size_t need)
{
	size_t cap = d->cap ? d->cap : 4096;
	uint8_t *nb;

	if (need <= d->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if (cap > FRAME_BUF_LEN)
		cap = FRAME_BUF_LEN;
	if ((nb = realloc(d->buf, cap)) == NULL)
		return -1;
	d->buf = nb;
	d->cap = cap;
	return 0;
}

/* Moves up to `want` bytes of input into the buffer (room for them was
 * reserved); true when all came. */
static bool
frame_take(struct frame_decoder *d, size_t want)
{
	size_t n = want < d->inlen ? want : d->inlen;

	memcpy(d->buf + d->len, d->in, n);
	d->len += n;
	d->in += n;
	d->inlen -= n;
	return n == want;
}

static enum frame_result
frame_fail(struct frame_decoder *d)
{
	d->fatal = true;
	d->in = NULL;
	d->inlen = 0;
	d->len = 0;
	return FRAME_FATAL;
}

enum frame_result
frame_decoder_next(struct frame_decoder *d, struct frame_msg *out)
{
	size_t plen;

	out->type = 0;
	out->msg = NULL;
	out->arena = NULL;
	if (d->fatal)
		return FRAME_FATAL;

	if (d->len > 0) {
		/* Complete the buffered frame first. */
		if (d->len < FRAME_HDR_LEN) {
			if (!frame_take(d, FRAME_HDR_LEN - d->len))
				return FRAME_NEED_MORE;
			if (!frame_header_check(d, d->buf, &plen))
				return frame_fail(d);
			d->need = FRAME_HDR_LEN + plen;
			if (frame_reserve(d, d->need) == -1)
				return frame_fail(d);
		}
		if (!frame_take(d, d->need - d->len))
			return FRAME_NEED_MORE;
		d->len = 0;
		return frame_decode(d, d->buf, d->need - FRAME_HDR_LEN, out);
	}

	if (d->inlen == 0) {
		d->in = NULL;
		return FRAME_NEED_MORE;
	}
	if (d->inlen < FRAME_HDR_LEN) {
		if (frame_reserve(d, FRAME_HDR_LEN) == -1)
			return frame_fail(d);
		frame_take(d, d->inlen);
		return FRAME_NEED_MORE;
	}
	if (!frame_header_check(d, d->in, &plen))
		return frame_fail(d);
	if (d->inlen < FRAME_HDR_LEN + plen) {
		d->need = FRAME_HDR_LEN + plen;
		if (frame_reserve(d, d->need) == -1)
			return frame_fail(d);
		frame_take(d, d->inlen);
		return FRAME_NEED_MORE;
	}
	{
		const uint8_t *frame = d->in;

		d->in += FRAME_HDR_LEN + plen;
		d->inlen -= FRAME_HDR_LEN + plen;
		return frame_decode(d, frame, plen, out);
	}
}

size_t
frame_decoder_pending(const struct frame_decoder *d)
{
	return d->len;
}

bool
frame_decoder_eof(struct frame_decoder *d)
{
	if (d->len == 0)
		return false;
	d->st->truncated++;
	d->len = 0;
	d->need = 0;
	return true;
}

void
frame_msg_free(struct frame_msg *m)
{
	if (m == NULL || m->msg == NULL)
		return;
	frame_arena_release(m->arena);
	m->msg = NULL;
	m->arena = NULL;
}

/* --- validation ------------------------------------------------------- */

/*
 * protobuf-c keeps an unknown field numbered 0 when its tag is a padded
 * varint (80 00), although 0 is no valid field number, and packs it back
 * as a plain 00 that it then refuses.  Such a message is malformed.
 */
static bool
frame_unknown_ok(const ProtobufCMessage *m)
{
	unsigned i;

	for (i = 0; i < m->n_unknown_fields; i++)
		if (m->unknown_fields[i].tag == 0)
			return false;
	return true;
}

/* The config's rule for node and provider names: 1..31 of [A-Za-z0-9._-]. */
static bool
frame_name_ok(const char *s)
{
	size_t n;

	if (s == NULL)
		return false;
	for (n = 0; s[n] != '\0'; n++) {
		char c = s[n];

		if (n >= CFG_NAME_MAX - 1)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return n > 0;
}

/* Address length for a wire family, 0 when the family is not 4 or 6. */
static size_t
frame_alen(protobuf_c_boolean has, uint32_t family)
{
	if (!has)
		return 0;
	return family == 4 ? 4 : family == 6 ? 16 : 0;
}

static bool
frame_addr_ok(protobuf_c_boolean has, const ProtobufCBinaryData *a, size_t alen)
{
	return has && a->len == alen && a->data != NULL;
}

static bool
frame_tuple_ok(protobuf_c_boolean has_family, uint32_t family,
    protobuf_c_boolean has_proto, uint32_t proto,
    protobuf_c_boolean has_src, const ProtobufCBinaryData *src,
    protobuf_c_boolean has_dst, const ProtobufCBinaryData *dst,
    protobuf_c_boolean has_sport, uint32_t sport,
    protobuf_c_boolean has_dport, uint32_t dport)
{
	size_t alen = frame_alen(has_family, family);

	return alen != 0 && has_proto && proto <= 255 &&
	    frame_addr_ok(has_src, src, alen) &&
	    frame_addr_ok(has_dst, dst, alen) &&
	    has_sport && sport <= 65535 && has_dport && dport <= 65535;
}

bool
frame_flow_valid(const Uplinkd__Flow *f)
{
	if (f == NULL || !frame_unknown_ok(&f->base))
		return false;
	if (!frame_tuple_ok(f->has_family, f->family, f->has_proto, f->proto,
	    f->has_src, &f->src, f->has_dst, &f->dst, f->has_sport, f->sport,
	    f->has_dport, f->dport))
		return false;
	if (!frame_addr_ok(f->has_nat_src, &f->nat_src,
	    frame_alen(f->has_family, f->family)))
		return false;
	if (!f->has_nat_port || f->nat_port > 65535)
		return false;
	if (!frame_name_ok(f->provider))
		return false;
	if (f->has_provider_index && f->provider_index >= CFG_MAX_PROVIDERS)
		return false;
	/* protobuf-c stores any enum number it reads: check the range. */
	if (f->has_l4state && ((int)f->l4state < 0 ||
	    (int)f->l4state > (int)UPLINKD__L4_STATE__L4_CLOSE))
		return false;
	if (f->origin_node != NULL && !frame_name_ok(f->origin_node))
		return false;
	return true;
}

bool
frame_flowkey_valid(const Uplinkd__FlowKey *k)
{
	return k != NULL && frame_unknown_ok(&k->base) &&
	    frame_tuple_ok(k->has_family, k->family,
	    k->has_proto, k->proto, k->has_src, &k->src, k->has_dst, &k->dst,
	    k->has_sport, k->sport, k->has_dport, k->dport);
}

static bool
frame_hello_valid(const Uplinkd__Hello *h)
{
	return frame_name_ok(h->node) && h->has_major && h->has_minor &&
	    h->has_boot_id && h->boot_id.len == FRAME_BOOT_ID_LEN;
}

static bool
frame_batch_valid(const Uplinkd__Batch *b)
{
	size_t i;

	if (!b->has_seq || b->seq == 0)
		return false;
	for (i = 0; i < b->n_upserts; i++)
		if (!frame_flow_valid(b->upserts[i]))
			return false;
	for (i = 0; i < b->n_deletes; i++)
		if (!frame_flowkey_valid(b->deletes[i]))
			return false;
	return true;
}

static bool
frame_providers_valid(const Uplinkd__Providers *p)
{
	size_t i;

	if (p->n_providers > CFG_MAX_PROVIDERS)
		return false;
	for (i = 0; i < p->n_providers; i++) {
		const Uplinkd__ProviderState *s = p->providers[i];

		if (!frame_unknown_ok(&s->base) || !frame_name_ok(s->name) ||
		    !s->has_state ||
		    (int)s->state < 0 ||
		    (int)s->state > (int)UPLINKD__PROVIDER_HEALTH__PROVIDER_DOWN)
			return false;
		if (s->has_weight && s->weight > 1000)
			return false;
		/* The receiver counts the peer's usable providers per entry,
		 * and HA compares that with its own: one name twice would
		 * count twice. */
		for (size_t j = 0; j < i; j++)
			if (strcmp(p->providers[j]->name, s->name) == 0)
				return false;
	}
	return true;
}

bool
frame_message_valid(enum frame_type type, const ProtobufCMessage *msg)
{
	if (msg == NULL || frame_type_descriptor(type) == NULL ||
	    msg->descriptor != frame_descs[type] || !frame_unknown_ok(msg))
		return false;
	switch (type) {
	case FRAME_HELLO:
		return frame_hello_valid((const Uplinkd__Hello *)msg);
	case FRAME_BATCH:
		return frame_batch_valid((const Uplinkd__Batch *)msg);
	case FRAME_BULK_BEGIN:
		return ((const Uplinkd__BulkBegin *)msg)->has_epoch &&
		    ((const Uplinkd__BulkBegin *)msg)->has_expected;
	case FRAME_BULK_END:
		return ((const Uplinkd__BulkEnd *)msg)->has_epoch &&
		    ((const Uplinkd__BulkEnd *)msg)->has_count;
	case FRAME_ACK:
		return ((const Uplinkd__Ack *)msg)->has_seq;
	case FRAME_HEARTBEAT:
		return ((const Uplinkd__Heartbeat *)msg)->has_unix_ms;
	case FRAME_PROVIDERS:
		return frame_providers_valid((const Uplinkd__Providers *)msg);
	default:
		return false;
	}
}

int
frame_hello_check(const Uplinkd__Hello *h, char *why, size_t whylen)
{
	if (h == NULL || !frame_hello_valid(h)) {
		snprintf(why, whylen, "malformed hello");
		return -1;
	}
	if (h->major != FRAME_MAJOR) {
		snprintf(why, whylen, "unsupported protocol major %u (we speak %u)",
		    h->major, FRAME_MAJOR);
		return -1;
	}
	return 0;
}

uint64_t
frame_config_fingerprint(const struct config *cfg)
{
	uint8_t buf[CFG_MAX_PROVIDERS * (CFG_NAME_MAX + 4)];
	size_t order[CFG_MAX_PROVIDERS], n = cfg->nproviders, i, j, off = 0;

	if (n > CFG_MAX_PROVIDERS)
		n = CFG_MAX_PROVIDERS;
	for (i = 0; i < n; i++) {
		size_t k = i;

		for (j = i; j > 0 && strcmp(cfg->providers[order[j - 1]].name,
		    cfg->providers[k].name) > 0; j--)
			order[j] = order[j - 1];
		order[j] = k;
	}
	/* Each name with its NUL, then the mark little-endian: no two
	 * different configs serialise to the same bytes. */
	for (i = 0; i < n; i++) {
		const struct cfg_provider *p = &cfg->providers[order[i]];
		size_t len = strnlen(p->name, CFG_NAME_MAX - 1);

		memcpy(buf + off, p->name, len);
		off += len;
		buf[off++] = 0;
		buf[off++] = (uint8_t)p->mark;
		buf[off++] = (uint8_t)(p->mark >> 8);
		buf[off++] = (uint8_t)(p->mark >> 16);
		buf[off++] = (uint8_t)(p->mark >> 24);
	}
	return hash64(buf, off, FRAME_FP_SEED);
}

/* --- conversions ------------------------------------------------------ */

static int
frame_family_to_wire(uint8_t family, uint32_t *wire, size_t *alen)
{
	if (family == AF_INET) {
		*wire = 4;
		*alen = 4;
	} else if (family == AF_INET6) {
		*wire = 6;
		*alen = 16;
	} else {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

static void
frame_bytes(protobuf_c_boolean *has, ProtobufCBinaryData *b, uint8_t *store,
    const uint8_t *from, size_t alen)
{
	memcpy(store, from, alen);
	*has = 1;
	b->data = store;
	b->len = alen;
}

int
frame_flowkey_to_pb(const struct flow_key *k, struct frame_flowkey_pb *out)
{
	Uplinkd__FlowKey init = UPLINKD__FLOW_KEY__INIT;
	size_t alen;

	out->pb = init;
	if (frame_family_to_wire(k->family, &out->pb.family, &alen) == -1)
		return -1;
	out->pb.has_family = 1;
	out->pb.has_proto = 1;
	out->pb.proto = k->proto;
	frame_bytes(&out->pb.has_src, &out->pb.src, out->src, k->src, alen);
	frame_bytes(&out->pb.has_dst, &out->pb.dst, out->dst, k->dst, alen);
	out->pb.has_sport = 1;
	out->pb.sport = k->sport;
	out->pb.has_dport = 1;
	out->pb.dport = k->dport;
	return 0;
}

/* protobuf-c's string fields are not const, but packing only reads them. */
static char *
frame_str(const char *s)
{
	return (char *)(uintptr_t)s;
}

int
frame_flow_to_pb(const struct flow *f, const struct config *cfg,
    struct frame_flow_pb *out)
{
	Uplinkd__Flow init = UPLINKD__FLOW__INIT;
	const char *origin;
	Uplinkd__Flow *pb = &out->pb;
	size_t alen;

	*pb = init;
	if (frame_family_to_wire(f->key.family, &pb->family, &alen) == -1)
		return -1;
	if (f->provider >= cfg->nproviders) {
		errno = EINVAL;
		return -1;
	}
	pb->has_family = 1;
	pb->has_proto = 1;
	pb->proto = f->key.proto;
	frame_bytes(&pb->has_src, &pb->src, out->src, f->key.src, alen);
	frame_bytes(&pb->has_dst, &pb->dst, out->dst, f->key.dst, alen);
	pb->has_sport = 1;
	pb->sport = f->key.sport;
	pb->has_dport = 1;
	pb->dport = f->key.dport;
	frame_bytes(&pb->has_nat_src, &pb->nat_src, out->nat_src, f->nat_src, alen);
	pb->has_nat_port = 1;
	pb->nat_port = f->nat_port;
	pb->has_mark = 1;
	pb->mark = f->mark;
	pb->provider = frame_str(cfg->providers[f->provider].name);
	pb->has_provider_index = 1;
	pb->provider_index = f->provider;
	pb->has_l4state = 1;
	pb->l4state = (Uplinkd__L4State)f->l4state;
	pb->has_created = 1;
	pb->created = f->created;
	pb->has_updated = 1;
	pb->updated = f->updated;
	origin = f->origin == FLOW_OWN ? cfg->node :
	    cfg->has_sync ? cfg->sync.tls.peer_name : "";
	if (origin[0] != '\0')
		pb->origin_node = frame_str(origin);
	return 0;
}

static void
frame_tuple_from_pb(struct flow_key *k, uint32_t family, uint32_t proto,
    const ProtobufCBinaryData *src, const ProtobufCBinaryData *dst,
    uint32_t sport, uint32_t dport)
{
	memset(k, 0, sizeof(*k));
	k->family = family == 4 ? AF_INET : AF_INET6;
	k->proto = (uint8_t)proto;
	memcpy(k->src, src->data, src->len);
	memcpy(k->dst, dst->data, dst->len);
	k->sport = (uint16_t)sport;
	k->dport = (uint16_t)dport;
}

int
frame_flowkey_from_pb(const Uplinkd__FlowKey *pb, struct flow_key *k)
{
	if (!frame_flowkey_valid(pb)) {
		errno = EINVAL;
		return -1;
	}
	frame_tuple_from_pb(k, pb->family, pb->proto, &pb->src, &pb->dst,
	    pb->sport, pb->dport);
	return 0;
}

int
frame_flow_from_pb(const Uplinkd__Flow *pb, const struct config *cfg,
    struct flow *f)
{
	int idx;

	if (!frame_flow_valid(pb)) {
		errno = EINVAL;
		return -1;
	}
	if ((idx = config_provider_index(cfg, pb->provider)) < 0 ||
	    idx >= FLOWS_MAX_PROVIDERS) {
		errno = ENOENT;
		return -1;
	}
	memset(f, 0, sizeof(*f));
	frame_tuple_from_pb(&f->key, pb->family, pb->proto, &pb->src, &pb->dst,
	    pb->sport, pb->dport);
	memcpy(f->nat_src, pb->nat_src.data, pb->nat_src.len);
	f->nat_port = (uint16_t)pb->nat_port;
	f->provider = (uint8_t)idx;
	f->l4state = pb->has_l4state ? (uint8_t)pb->l4state : FLOW_L4_NONE;
	f->origin = FLOW_PEER;
	/* Our rules match our marks: the provider's bits are ours, any other
	 * bits the peer's connection carried are kept. */
	f->mark = (pb->has_mark ? pb->mark & ~cfg->mark_mask : 0) |
	    cfg->providers[idx].mark;
	/* XXX: struct flow keeps 32-bit seconds, enough until 2106. */
	f->created = pb->created > UINT32_MAX ? UINT32_MAX : (uint32_t)pb->created;
	f->updated = pb->updated > UINT32_MAX ? UINT32_MAX : (uint32_t)pb->updated;
	return 0;
}
