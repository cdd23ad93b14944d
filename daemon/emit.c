#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emit.h"

/*
 * JSON is written straight into the output buffer as calls arrive, so a
 * reply of a million flows costs its text and nothing more.  Human output
 * is streamed too, except for an array of objects: its column widths are
 * known only at the end, so its cells go into one table (a string arena
 * plus offsets) and are laid out at emit_array_end().  Only one table can
 * be open at a time because containers nested inside table rows are not
 * rendered in human output.
 */

#define EMIT_MAX_DEPTH 32
#define EMIT_MAX_OUTPUT (256u << 20)	/* a reply beyond this is a bug */
#define EMIT_NONE ((size_t)-1)

enum emit_frame_kind {
	EF_OBJECT,	/* an object rendered as key: value lines */
	EF_ARRAY,	/* an array, its human form decided by its first element */
	EF_ROW,		/* an object that is a table row (human) */
	EF_SKIP,	/* a container not rendered (human) */
};

enum emit_array_mode {
	EA_EMPTY,	/* no element yet */
	EA_SCALARS,	/* "key: a, b, c" */
	EA_TABLE,	/* array of objects */
};

struct emit_frame {
	enum emit_frame_kind kind;
	bool json_object;	/* JSON: object (keys) or array */
	bool first;		/* JSON: no member written yet */
	enum emit_array_mode mode;
	int indent;
	char *key;		/* human: deferred array header */
};

struct emit_buf {
	char *p;
	size_t len, cap;
};

struct emit_table {
	struct emit_buf arena;	/* NUL-terminated cells and column names */
	size_t *cols;		/* arena offsets of the column names */
	size_t ncols, capcols;
	size_t *cells;		/* nrows * ncols arena offsets, EMIT_NONE if absent */
	size_t ncells, capcells;
	size_t nrows;
};

struct emit {
	enum emit_format format;
	bool failed;
	bool started;		/* something other than raw text was emitted */
	bool raw;
	bool finished;
	struct emit_buf out;
	struct emit_frame stack[EMIT_MAX_DEPTH];
	int depth;		/* stack[0] is the implicit top-level object */
	struct emit_table table;
};

static void
emit_misuse(const char *what)
{
	fprintf(stderr, "emit: programming error: %s\n", what);
	abort();
}

static bool
emit_buf_reserve(struct emit *e, struct emit_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (e->failed)
		return false;
	if (more > EMIT_MAX_OUTPUT || b->len > EMIT_MAX_OUTPUT - more)
		goto fail;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL)
		goto fail;
	b->p = p;
	b->cap = cap;
	return true;
fail:
	e->failed = true;
	return false;
}

static void
emit_buf_add(struct emit *e, struct emit_buf *b, const char *s, size_t n)
{
	if (!emit_buf_reserve(e, b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
emit_buf_str(struct emit *e, struct emit_buf *b, const char *s)
{
	emit_buf_add(e, b, s, strlen(s));
}

static void
emit_buf_pad(struct emit *e, struct emit_buf *b, size_t n)
{
	if (!emit_buf_reserve(e, b, n))
		return;
	memset(b->p + b->len, ' ', n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Length of a valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t
emit_utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* A JSON string: quotes, backslashes and control characters escaped;
 * bytes that are not UTF-8 become U+FFFD so the document stays valid. */
static void
emit_json_string(struct emit *e, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	emit_buf_add(e, &e->out, "\"", 1);
	while (n > 0) {
		size_t run = 0, l;

		/* Copy the longest run that needs no escape in one go. */
		while (run < n && p[run] >= 0x20 && p[run] != '"' &&
		    p[run] != '\\' && (l = emit_utf8_len(p + run, n - run)) > 0)
			run += l;
		if (run > 0) {
			emit_buf_add(e, &e->out, (const char *)p, run);
			p += run;
			n -= run;
			continue;
		}
		if (*p == '"')
			emit_buf_add(e, &e->out, "\\\"", 2);
		else if (*p == '\\')
			emit_buf_add(e, &e->out, "\\\\", 2);
		else if (*p < 0x20) {
			char esc[8];

			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			emit_buf_add(e, &e->out, esc, 6);
		} else
			emit_buf_add(e, &e->out, "\\ufffd", 6);
		p++;
		n--;
	}
	emit_buf_add(e, &e->out, "\"", 1);
}

/* Human text: control characters would break the layout (or the
 * terminal), so they are shown as '?'. */
static void
emit_human_text(struct emit *e, struct emit_buf *b, const char *s)
{
	size_t start = b->len, n = strlen(s);

	emit_buf_add(e, b, s, n);
	if (e->failed)
		return;
	for (size_t i = start; i < b->len; i++)
		if ((unsigned char)b->p[i] < 0x20 || b->p[i] == 0x7f)
			b->p[i] = '?';
}

struct emit *
emit_create(enum emit_format format)
{
	struct emit *e;

	if (format != EMIT_HUMAN && format != EMIT_JSON) {
		errno = EINVAL;
		return NULL;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->format = format;
	e->stack[0].kind = EF_OBJECT;
	e->stack[0].json_object = true;
	e->stack[0].first = true;
	return e;
}

static void
emit_table_reset(struct emit_table *t)
{
	free(t->arena.p);
	free(t->cols);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

void
emit_destroy(struct emit *e)
{
	if (e == NULL)
		return;
	for (int i = 0; i <= e->depth; i++)
		free(e->stack[i].key);
	emit_table_reset(&e->table);
	free(e->out.p);
	free(e);
}

/* --- JSON --- */

static void
emit_json_member(struct emit *e, const char *key)
{
	struct emit_frame *f = &e->stack[e->depth];

	if (!e->started) {
		emit_buf_add(e, &e->out, "{", 1);
		e->started = true;
	}
	if (!f->first)
		emit_buf_add(e, &e->out, ", ", 2);
	f->first = false;
	if (f->json_object) {
		emit_json_string(e, key);
		emit_buf_add(e, &e->out, ": ", 2);
	}
}

/* --- human --- */

static const char *
emit_table_str(const struct emit_table *t, size_t off)
{
	return off == EMIT_NONE ? "-" : t->arena.p + off;
}

static size_t
emit_table_intern(struct emit *e, const char *s)
{
	size_t off = e->table.arena.len;

	emit_human_text(e, &e->table.arena, s);
	emit_buf_add(e, &e->table.arena, "", 1);
	return e->failed ? EMIT_NONE : off;
}

static bool
emit_grow(struct emit *e, size_t **v, size_t *cap, size_t need)
{
	size_t ncap;
	size_t *p;

	if (need <= *cap)
		return true;
	ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	if (ncap > EMIT_MAX_OUTPUT / sizeof(size_t) ||
	    (p = realloc(*v, ncap * sizeof(size_t))) == NULL) {
		e->failed = true;
		return false;
	}
	*v = p;
	*cap = ncap;
	return true;
}

/* A scalar inside a table row: row 0 defines the columns, later rows fill
 * the cells whose column names match. */
static void
emit_table_cell(struct emit *e, const char *key, const char *text)
{
	struct emit_table *t = &e->table;
	size_t row = t->nrows - 1, off;

	if (key == NULL)
		return;
	if (row == 0) {
		if (!emit_grow(e, &t->cols, &t->capcols, t->ncols + 1) ||
		    !emit_grow(e, &t->cells, &t->capcells, t->ncols + 1))
			return;
		t->cols[t->ncols] = emit_table_intern(e, key);
		t->cells[t->ncols] = emit_table_intern(e, text);
		t->ncols++;
		t->ncells = t->ncols;
		return;
	}
	for (size_t c = 0; c < t->ncols; c++) {
		if (strcmp(t->arena.p + t->cols[c], key) != 0)
			continue;
		if ((off = emit_table_intern(e, text)) != EMIT_NONE)
			t->cells[row * t->ncols + c] = off;
		return;
	}
}

static void
emit_table_row_begin(struct emit *e)
{
	struct emit_table *t = &e->table;

	if (t->nrows > 0) {
		if (!emit_grow(e, &t->cells, &t->capcells, t->ncells + t->ncols))
			return;
		for (size_t c = 0; c < t->ncols; c++)
			t->cells[t->ncells + c] = EMIT_NONE;
		t->ncells += t->ncols;
	}
	t->nrows++;
}

static void
emit_table_render(struct emit *e, int indent)
{
	struct emit_table *t = &e->table;
	size_t *width;

	if (t->ncols == 0 || e->failed)
		return;
	if ((width = calloc(t->ncols, sizeof(*width))) == NULL) {
		e->failed = true;
		return;
	}
	for (size_t c = 0; c < t->ncols; c++) {
		width[c] = strlen(emit_table_str(t, t->cols[c]));
		for (size_t r = 0; r < t->nrows; r++) {
			size_t w = strlen(emit_table_str(t, t->cells[r * t->ncols + c]));
			if (w > width[c])
				width[c] = w;
		}
	}
	for (size_t r = 0; r <= t->nrows; r++) {
		emit_buf_pad(e, &e->out, (size_t)indent);
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s;
			size_t w;

			if (r == 0) {
				/* Upper-case headers tell them from the data. */
				char *h;

				s = emit_table_str(t, t->cols[c]);
				w = strlen(s);
				emit_buf_add(e, &e->out, s, w);
				if (e->failed)
					break;
				h = e->out.p + e->out.len - w;
				for (size_t i = 0; i < w; i++)
					if (h[i] >= 'a' && h[i] <= 'z')
						h[i] = (char)(h[i] - 'a' + 'A');
			} else {
				s = emit_table_str(t, t->cells[(r - 1) * t->ncols + c]);
				w = strlen(s);
				emit_buf_add(e, &e->out, s, w);
			}
			if (c + 1 < t->ncols)
				emit_buf_pad(e, &e->out, width[c] - w + 2);
		}
		emit_buf_add(e, &e->out, "\n", 1);
	}
	free(width);
}

static void
emit_human_key_line(struct emit *e, int indent, const char *key)
{
	emit_buf_pad(e, &e->out, (size_t)indent);
	emit_human_text(e, &e->out, key);
	emit_buf_add(e, &e->out, ":", 1);
}

/* A scalar already formatted as text, in human output. */
static void
emit_human_scalar(struct emit *e, const char *key, const char *text)
{
	struct emit_frame *f = &e->stack[e->depth];

	e->started = true;
	switch (f->kind) {
	case EF_OBJECT:
		emit_human_key_line(e, f->indent, key);
		emit_buf_add(e, &e->out, " ", 1);
		emit_human_text(e, &e->out, text);
		emit_buf_add(e, &e->out, "\n", 1);
		break;
	case EF_ROW:
		emit_table_cell(e, key, text);
		break;
	case EF_ARRAY:
		if (f->mode == EA_EMPTY) {
			f->mode = EA_SCALARS;
			emit_human_key_line(e, f->indent, f->key);
			emit_buf_add(e, &e->out, " ", 1);
		} else if (f->mode == EA_SCALARS)
			emit_buf_add(e, &e->out, ", ", 2);
		else
			break;	/* a scalar among table rows: not rendered */
		emit_human_text(e, &e->out, text);
		break;
	case EF_SKIP:
		break;
	}
}

/* --- common --- */

static void
emit_check_key(struct emit *e, const char *key)
{
	if (e->raw || e->finished)
		emit_misuse("value after emit_raw() or emit_finish()");
	if (e->stack[e->depth].json_object && key == NULL)
		emit_misuse("NULL key inside an object");
}

static void
emit_scalar(struct emit *e, const char *key, const char *json, const char *human,
    bool json_is_string)
{
	if (e->failed)
		return;
	emit_check_key(e, key);
	if (!e->stack[e->depth].json_object)
		key = NULL;
	if (e->format == EMIT_JSON) {
		emit_json_member(e, key);
		if (json_is_string)
			emit_json_string(e, json);
		else
			emit_buf_str(e, &e->out, json);
	} else
		emit_human_scalar(e, key, human);
}

static void
emit_push(struct emit *e, const char *key, bool object)
{
	struct emit_frame *parent, *f;

	if (e->failed)
		return;
	emit_check_key(e, key);
	if (e->depth + 1 >= EMIT_MAX_DEPTH)
		emit_misuse("nesting too deep");
	parent = &e->stack[e->depth];
	if (!parent->json_object)
		key = NULL;
	if (e->format == EMIT_JSON) {
		emit_json_member(e, key);
		emit_buf_add(e, &e->out, object ? "{" : "[", 1);
	}
	f = &e->stack[++e->depth];
	memset(f, 0, sizeof(*f));
	f->json_object = object;
	f->first = true;
	f->indent = parent->indent;
	if (e->format == EMIT_JSON)
		return;

	e->started = true;
	f->kind = EF_SKIP;
	if (parent->kind == EF_OBJECT) {
		if (object) {
			f->kind = EF_OBJECT;
			f->indent = parent->indent + 2;
			emit_human_key_line(e, parent->indent, key);
			emit_buf_add(e, &e->out, "\n", 1);
		} else {
			f->kind = EF_ARRAY;
			f->mode = EA_EMPTY;
			if ((f->key = strdup(key)) == NULL)
				e->failed = true;
		}
	} else if (parent->kind == EF_ARRAY && object &&
	    (parent->mode == EA_EMPTY || parent->mode == EA_TABLE)) {
		parent->mode = EA_TABLE;
		f->kind = EF_ROW;
		emit_table_row_begin(e);
	}
}

static void
emit_pop(struct emit *e, bool object)
{
	struct emit_frame *f;

	if (e->failed)
		return;
	f = &e->stack[e->depth];
	if (e->depth == 0 || f->json_object != object)
		emit_misuse(object ? "emit_object_end() without an open object" :
		    "emit_array_end() without an open array");
	if (e->format == EMIT_JSON)
		emit_buf_add(e, &e->out, object ? "}" : "]", 1);
	else if (f->kind == EF_ARRAY) {
		switch (f->mode) {
		case EA_EMPTY:
			emit_human_key_line(e, f->indent, f->key);
			emit_buf_str(e, &e->out, " (none)\n");
			break;
		case EA_SCALARS:
			emit_buf_add(e, &e->out, "\n", 1);
			break;
		case EA_TABLE:
			emit_human_key_line(e, f->indent, f->key);
			emit_buf_add(e, &e->out, "\n", 1);
			emit_table_render(e, f->indent + 2);
			emit_table_reset(&e->table);
			break;
		}
	}
	free(f->key);
	f->key = NULL;
	e->depth--;
}

void
emit_object_begin(struct emit *e, const char *key)
{
	emit_push(e, key, true);
}

void
emit_object_end(struct emit *e)
{
	emit_pop(e, true);
}

void
emit_array_begin(struct emit *e, const char *key)
{
	emit_push(e, key, false);
}

void
emit_array_end(struct emit *e)
{
	emit_pop(e, false);
}

void
emit_str(struct emit *e, const char *key, const char *value)
{
	if (value == NULL)
		emit_scalar(e, key, "null", "-", false);
	else
		emit_scalar(e, key, value, value, true);
}

void
emit_u64(struct emit *e, const char *key, uint64_t value)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64, value);
	emit_scalar(e, key, buf, buf, false);
}

void
emit_i64(struct emit *e, const char *key, int64_t value)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, value);
	emit_scalar(e, key, buf, buf, false);
}

void
emit_double(struct emit *e, const char *key, double value, int decimals)
{
	char buf[400];	/* %f of DBL_MAX has 309 digits before the point */

	if (!isfinite(value)) {
		emit_scalar(e, key, "null", "-", false);
		return;
	}
	if (decimals < 0)
		decimals = 0;
	if (decimals > 17)
		decimals = 17;
	snprintf(buf, sizeof(buf), "%.*f", decimals, value);
	emit_scalar(e, key, buf, buf, false);
}

void
emit_bool(struct emit *e, const char *key, bool value)
{
	emit_scalar(e, key, value ? "true" : "false", value ? "yes" : "no", false);
}

void
emit_null(struct emit *e, const char *key)
{
	emit_scalar(e, key, "null", "-", false);
}

void
emit_raw(struct emit *e, const char *text, size_t len)
{
	if (e->failed)
		return;
	if (e->started || e->depth != 0 || e->finished)
		emit_misuse("emit_raw() after structured output");
	e->raw = true;
	emit_buf_add(e, &e->out, text, len);
}

const char *
emit_finish(struct emit *e, size_t *len)
{
	if (e->failed) {
		errno = ENOMEM;
		return NULL;
	}
	if (e->depth != 0)
		emit_misuse("emit_finish() with open containers");
	if (e->format == EMIT_JSON && !e->raw && !e->finished) {
		if (!e->started) {
			emit_buf_add(e, &e->out, "{", 1);
			e->started = true;
		}
		emit_buf_add(e, &e->out, "}", 1);
	}
	e->finished = true;
	if (!emit_buf_reserve(e, &e->out, 0)) {
		errno = ENOMEM;
		return NULL;
	}
	e->out.p[e->out.len] = '\0';
	if (len != NULL)
		*len = e->out.len;
	return e->out.p;
}
