/*
 * json: recursive descent over the text, values bump-allocated from a
 * chain of blocks (a flow list of 100 000 entries is a million values:
 * one malloc each would cost more than the parse).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define JSON_BLOCK (64 * 1024)

struct json_value {
	enum json_type type;
	const char *key;		/* member name inside an object */
	struct json_value *next;	/* next element or member */
	union {
		double num;
		const char *str;
		struct {
			struct json_value *first;
			size_t count;
		} kids;
	} u;
};

struct json_block {
	struct json_block *next;
	size_t used, size;
	_Alignas(max_align_t) unsigned char data[];
};

struct json {
	struct json_block *blocks;
	struct json_value *root;
};

struct parser {
	struct json *j;
	const char *p, *start, *end;
	char *err;
	size_t errlen;
	int depth;
	bool nomem;
};

static void *
arena_alloc(struct parser *ps, size_t size)
{
	struct json_block *b = ps->j->blocks;
	size_t need = (size + 7) & ~(size_t)7;

	if (b == NULL || b->size - b->used < need) {
		size_t bsize = need > JSON_BLOCK ? need : JSON_BLOCK;

		if ((b = malloc(sizeof(*b) + bsize)) == NULL) {
			ps->nomem = true;
			return NULL;
		}
		b->size = bsize;
		b->used = 0;
		b->next = ps->j->blocks;
		ps->j->blocks = b;
	}
	b->used += need;
	return b->data + b->used - need;
}

static void perror_at(struct parser *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
perror_at(struct parser *ps, const char *fmt, ...)
{
	char msg[128];
	va_list ap;

	if (ps->err == NULL || ps->err[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->err, ps->errlen, "offset %td: %s", ps->p - ps->start, msg);
}

static void
skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
	    *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int
hex4(struct parser *ps, unsigned *out)
{
	unsigned v = 0;

	if (ps->end - ps->p < 4) {
		perror_at(ps, "truncated \\u escape");
		return -1;
	}
	for (int i = 0; i < 4; i++) {
		char c = *ps->p++;

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else {
			perror_at(ps, "bad hex digit in \\u escape");
			return -1;
		}
	}
	*out = v;
	return 0;
}

static size_t
utf8_put(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0.  Names
 * from a request end up in replies and logs, which must stay UTF-8. */
static size_t
utf8_valid(const unsigned char *p, const unsigned char *end)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* At the opening quote.  The decoded text is never longer than the
 * escaped one, so one allocation of the raw length suffices. */
static const char *
parse_string(struct parser *ps)
{
	const char *q = ps->p + 1;
	char *out, *o;

	while (q < ps->end && *q != '"')
		q += *q == '\\' ? 2 : 1;
	if (q >= ps->end) {
		perror_at(ps, "unterminated string");
		return NULL;
	}
	if ((o = out = arena_alloc(ps, (size_t)(q - ps->p))) == NULL)
		return NULL;
	ps->p++;
	while (*ps->p != '"') {
		unsigned char c = (unsigned char)*ps->p++;
		unsigned cp, lo;

		if (c < 0x20) {
			ps->p--;
			perror_at(ps, "control character in string");
			return NULL;
		}
		if (c >= 0x80) {
			size_t n = utf8_valid((const unsigned char *)ps->p - 1,
			    (const unsigned char *)ps->end);

			if (n == 0) {
				ps->p--;
				perror_at(ps, "invalid UTF-8 in string");
				return NULL;
			}
			memcpy(o, ps->p - 1, n);
			o += n;
			ps->p += n - 1;
			continue;
		}
		if (c != '\\') {
			*o++ = (char)c;
			continue;
		}
		switch (*ps->p++) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			if (hex4(ps, &cp) == -1)
				return NULL;
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				perror_at(ps, "lone low surrogate");
				return NULL;
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u') {
					perror_at(ps, "high surrogate without its low half");
					return NULL;
				}
				ps->p += 2;
				if (hex4(ps, &lo) == -1)
					return NULL;
				if (lo < 0xdc00 || lo > 0xdfff) {
					perror_at(ps, "high surrogate without its low half");
					return NULL;
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0) {
				perror_at(ps, "\\u0000 in string");
				return NULL;
			}
			o += utf8_put(o, cp);
			break;
		default:
			ps->p--;
			perror_at(ps, "bad escape");
			return NULL;
		}
	}
	ps->p++;
	*o = '\0';
	return out;
}

static int
parse_number(struct parser *ps, double *out)
{
	const char *q = ps->p;
	char buf[64], *endp;

	/* The JSON grammar, checked before strtod (which takes more:
	 * hex, inf, leading '+'). */
	if (q < ps->end && *q == '-')
		q++;
	if (q < ps->end && *q == '0')
		q++;
	else if (q < ps->end && *q >= '1' && *q <= '9')
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	else
		goto bad;
	if (q < ps->end && *q == '.') {
		if (++q >= ps->end || *q < '0' || *q > '9')
			goto bad;
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < ps->end && (*q == 'e' || *q == 'E')) {
		q++;
		if (q < ps->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= ps->end || *q < '0' || *q > '9')
			goto bad;
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	if ((size_t)(q - ps->p) >= sizeof(buf)) {
		perror_at(ps, "number too long");
		return -1;
	}
	memcpy(buf, ps->p, (size_t)(q - ps->p));
	buf[q - ps->p] = '\0';
	errno = 0;
	*out = strtod(buf, &endp);
	if (*endp != '\0' || (errno == ERANGE && isinf(*out))) {
		perror_at(ps, "number out of range");
		return -1;
	}
	ps->p = q;
	return 0;
bad:
	perror_at(ps, "bad number");
	return -1;
}

static int
literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
		perror_at(ps, "unexpected character");
		return -1;
	}
	ps->p += n;
	return 0;
}

static struct json_value *parse_value(struct parser *ps);

/* At '[' or '{'. */
static int
parse_container(struct parser *ps, struct json_value *v)
{
	char close = *ps->p == '[' ? ']' : '}';
	struct json_value **tail = &v->u.kids.first;

	if (++ps->depth > JSON_MAX_DEPTH) {
		perror_at(ps, "nested deeper than %d", JSON_MAX_DEPTH);
		return -1;
	}
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		ps->depth--;
		return 0;
	}
	for (;;) {
		const char *key = NULL;
		struct json_value *kid;

		skip_ws(ps);
		if (v->type == JSON_OBJECT) {
			if (ps->p >= ps->end || *ps->p != '"') {
				perror_at(ps, "expected a member name");
				return -1;
			}
			if ((key = parse_string(ps)) == NULL)
				return -1;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				perror_at(ps, "expected ':'");
				return -1;
			}
			ps->p++;
		}
		if ((kid = parse_value(ps)) == NULL)
			return -1;
		kid->key = key;
		*tail = kid;
		tail = &kid->next;
		v->u.kids.count++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			ps->depth--;
			return 0;
		}
		perror_at(ps, "expected ',' or '%c'", close);
		return -1;
	}
}

static struct json_value *
parse_value(struct parser *ps)
{
	struct json_value *v;

	skip_ws(ps);
	if (ps->p >= ps->end) {
		perror_at(ps, "unexpected end of input");
		return NULL;
	}
	if ((v = arena_alloc(ps, sizeof(*v))) == NULL)
		return NULL;
	memset(v, 0, sizeof(*v));
	switch (*ps->p) {
	case '{':
	case '[':
		v->type = *ps->p == '{' ? JSON_OBJECT : JSON_ARRAY;
		return parse_container(ps, v) == 0 ? v : NULL;
	case '"':
		v->type = JSON_STRING;
		return (v->u.str = parse_string(ps)) != NULL ? v : NULL;
	case 't':
		v->type = JSON_TRUE;
		return literal(ps, "true") == 0 ? v : NULL;
	case 'f':
		v->type = JSON_FALSE;
		return literal(ps, "false") == 0 ? v : NULL;
	case 'n':
		v->type = JSON_NULL;
		return literal(ps, "null") == 0 ? v : NULL;
	default:
		v->type = JSON_NUMBER;
		return parse_number(ps, &v->u.num) == 0 ? v : NULL;
	}
}

struct json *
json_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct parser ps = { NULL, text, text, text + len, err, errlen, 0, false };

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if ((ps.j = calloc(1, sizeof(*ps.j))) == NULL)
		return NULL;
	ps.j->root = parse_value(&ps);
	if (ps.j->root != NULL) {
		skip_ws(&ps);
		if (ps.p != ps.end) {
			perror_at(&ps, "trailing characters after the value");
			ps.j->root = NULL;
		}
	}
	if (ps.j->root == NULL) {
		if (ps.nomem && err != NULL && errlen > 0)
			snprintf(err, errlen, "out of memory");
		json_destroy(ps.j);
		errno = ps.nomem ? ENOMEM : EINVAL;
		return NULL;
	}
	return ps.j;
}

void
json_destroy(struct json *j)
{
	struct json_block *b, *next;

	if (j == NULL)
		return;
	for (b = j->blocks; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	free(j);
}

const struct json_value *
json_root(const struct json *j)
{
	return j->root;
}

enum json_type
json_type(const struct json_value *v)
{
	return v->type;
}

const struct json_value *
json_get(const struct json_value *v, const char *path)
{
	while (v != NULL && *path != '\0') {
		const char *dot = strchr(path, '.');
		size_t n = dot ? (size_t)(dot - path) : strlen(path);
		const struct json_value *kid;

		if (v->type != JSON_OBJECT)
			return NULL;
		for (kid = v->u.kids.first; kid != NULL; kid = kid->next)
			if (strncmp(kid->key, path, n) == 0 && kid->key[n] == '\0')
				break;
		v = kid;
		path += n + (dot != NULL);
	}
	return v;
}

const char *
json_str(const struct json_value *v, const char *path)
{
	v = json_get(v, path);
	return v != NULL && v->type == JSON_STRING ? v->u.str : NULL;
}

bool
json_bool(const struct json_value *v, const char *path, bool *out)
{
	v = json_get(v, path);
	if (v == NULL || (v->type != JSON_TRUE && v->type != JSON_FALSE))
		return false;
	*out = v->type == JSON_TRUE;
	return true;
}

bool
json_num(const struct json_value *v, const char *path, double *out)
{
	v = json_get(v, path);
	if (v == NULL || v->type != JSON_NUMBER)
		return false;
	*out = v->u.num;
	return true;
}

bool
json_u64(const struct json_value *v, const char *path, uint64_t *out)
{
	double d;

	if (!json_num(v, path, &d) || d < 0 || d != floor(d) || d >= 18446744073709551616.0)
		return false;
	*out = (uint64_t)d;
	return true;
}

size_t
json_count(const struct json_value *v)
{
	return v != NULL && (v->type == JSON_ARRAY || v->type == JSON_OBJECT) ?
	    v->u.kids.count : 0;
}

const struct json_value *
json_first(const struct json_value *v)
{
	return v != NULL && (v->type == JSON_ARRAY || v->type == JSON_OBJECT) ?
	    v->u.kids.first : NULL;
}

const struct json_value *
json_next(const struct json_value *v)
{
	return v != NULL ? v->next : NULL;
}

const char *
json_key(const struct json_value *v)
{
	return v != NULL ? v->key : NULL;
}
