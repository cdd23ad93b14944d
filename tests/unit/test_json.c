/*
 * test_json: the reader uplinkctl's drill uses on the daemon's answers;
 * valid documents (including what emit writes), every escape, and the
 * inputs it must refuse with an offset.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "emit.h"
#include "json.h"
#include "tap.h"

static struct json *
parse(const char *text, char *err, size_t len)
{
	return json_parse(text, strlen(text), err, len);
}

static void
test_values(void)
{
	const char *text = " {\"node\":\"gw1\",\"in_sync\":true,\"n\":-12.5e1,\"big\":"
	    "18446744073709551615000,\"z\":null,\"a\":[1,2,{\"x\":0}],\"o\":{\"p\":{\"q\":7}},"
	    "\"e\":{},\"l\":[]} ";
	const struct json_value *r, *a, *k;
	char err[128];
	struct json *j = parse(text, err, sizeof(err));
	uint64_t u = 0;
	double d = 0;
	bool b = false;
	size_t n = 0;

	if (!tap_ok(j != NULL, "a document with every type parses (%s)", j ? "" : err))
		return;
	r = json_root(j);
	tap_ok(json_type(r) == JSON_OBJECT && json_count(r) == 9, "root object, 9 members");
	tap_ok(json_str(r, "node") && strcmp(json_str(r, "node"), "gw1") == 0, "string member");
	tap_ok(json_bool(r, "in_sync", &b) && b, "boolean member");
	tap_ok(json_num(r, "n", &d) && d == -125.0, "number with fraction and exponent");
	tap_ok(!json_u64(r, "n", &u), "a negative number is no u64");
	tap_ok(!json_u64(r, "big", &u), "a number past 2^64 is no u64");
	tap_ok(json_get(r, "z") && json_type(json_get(r, "z")) == JSON_NULL, "null member");
	tap_ok(json_u64(r, "o.p.q", &u) && u == 7, "dotted path");
	tap_ok(json_get(r, "o.p.missing") == NULL && json_get(r, "node.x") == NULL &&
	    json_str(r, "in_sync") == NULL, "missing keys and wrong types give NULL");
	a = json_get(r, "a");
	for (k = json_first(a); k != NULL; k = json_next(k))
		n++;
	tap_ok(json_count(a) == 3 && n == 3 && json_key(json_first(a)) == NULL,
	    "array: count and iteration agree");
	tap_ok(json_count(json_get(r, "e")) == 0 && json_first(json_get(r, "l")) == NULL,
	    "empty object and array");
	tap_ok(strcmp(json_key(json_first(r)), "node") == 0, "member keys in order");
	json_destroy(j);
}

static void
test_strings(void)
{
	char err[128];
	struct json *j = parse("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u20ac\\ud83d\\ude00\"]",
	    err, sizeof(err));
	const struct json_value *v;

	if (!tap_ok(j != NULL, "escapes parse (%s)", j ? "" : err))
		return;
	v = json_first(json_root(j));
	tap_ok(strcmp(json_str(v, ""), "a\"b\\c/d\b\f\n\r\t") == 0, "simple escapes decoded");
	tap_ok(strcmp(json_str(json_next(v), ""), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80") == 0,
	    "\\u escapes and a surrogate pair become UTF-8");
	json_destroy(j);
	/* The smallest and largest of each length, as raw bytes. */
	j = parse("\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xef\xbf\xbf\xf0\x90\x80\x80"
	    "\xf4\x8f\xbf\xbf\"", err, sizeof(err));
	tap_ok(j != NULL && strcmp(json_str(json_root(j), ""), "\xc2\x80\xdf\xbf\xe0\xa0\x80"
	    "\xed\x9f\xbf\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf") == 0,
	    "raw UTF-8 of every length passes through (%s)", j ? "" : err);
	json_destroy(j);
}

static void
test_bad_utf8(void)
{
	static const char *const bad[] = {
		"\"\x80\"",		/* a continuation byte alone */
		"\"\xc3\"",		/* a lead byte without its continuation */
		"\"\xc3(\"",		/* ... followed by ASCII */
		"\"\xc0\xaf\"",	/* overlong '/' */
		"\"\xe0\x80\xaf\"",	/* overlong, three bytes */
		"\"\xf0\x80\x80\xaf\"",	/* overlong, four bytes */
		"\"\xed\xa0\x80\"",	/* a surrogate, U+D800 */
		"\"\xf4\x90\x80\x80\"",	/* above U+10FFFF */
		"\"\xf5\x80\x80\x80\"",	/* no such lead byte */
		"\"\xff\"",
		"\"ok\xe2\x82\"",		/* cut short before the quote */
	};
	char err[128];
	size_t refused = 0;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json *j = parse(bad[i], err, sizeof(err));

		if (j == NULL && strstr(err, "invalid UTF-8") != NULL)
			refused++;
		else
			tap_diag("accepted or unexplained (%s): case %zu", j ? "accepted" : err, i);
		json_destroy(j);
	}
	tap_ok(refused == sizeof(bad) / sizeof(bad[0]), "%zu strings of invalid UTF-8 refused",
	    refused);
}

static void
test_refused(void)
{
	static const char *const bad[] = {
		"", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1 2]", "01", "1.",
		"-", "1e", "+1", "tru", "nul", "\"abc", "\"a\\x\"", "\"\\u12\"", "\"\\ud800\"",
		"\"\\udc00\"", "\"\\u0000\"", "\"a\tb\"", "[1] x", "1e999", "NaN", "[\"\\\"]",
	};
	char deep[JSON_MAX_DEPTH + 3];
	char err[128];
	size_t refused = 0;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json *j = parse(bad[i], err, sizeof(err));

		if (j == NULL && errno == EINVAL && strncmp(err, "offset ", 7) == 0)
			refused++;
		else
			tap_diag("accepted or unexplained: \"%s\"", bad[i]);
		json_destroy(j);
	}
	tap_ok(refused == sizeof(bad) / sizeof(bad[0]), "%zu malformed documents refused "
	    "with an offset", refused);
	memset(deep, '[', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = '\0';
	tap_ok(parse(deep, err, sizeof(err)) == NULL && strstr(err, "nested deeper") != NULL,
	    "nesting past JSON_MAX_DEPTH refused: %s", err);
	json_destroy(NULL);
	tap_ok(1, "json_destroy(NULL) is a no-op");
}

/* What the daemon writes, read back. */
static void
test_emit_roundtrip(void)
{
	struct emit *e = emit_create(EMIT_JSON);
	const char *text;
	struct json *j;
	char err[128];
	size_t len;
	uint64_t n = 0;

	emit_str(e, "node", "gw\"1\n");
	emit_array_begin(e, "flows");
	for (int i = 0; i < 1000; i++) {
		emit_object_begin(e, NULL);
		emit_u64(e, "sport", (uint64_t)i);
		emit_double(e, "age_s", i / 3.0, 2);
		emit_object_end(e);
	}
	emit_array_end(e);
	text = emit_finish(e, &len);
	j = json_parse(text, len, err, sizeof(err));
	tap_ok(j != NULL && strcmp(json_str(json_root(j), "node"), "gw\"1\n") == 0 &&
	    json_count(json_get(json_root(j), "flows")) == 1000, "emit's JSON reads back (%s)",
	    j ? "" : err);
	if (j != NULL) {
		const struct json_value *last = json_first(json_get(json_root(j), "flows"));

		while (json_next(last) != NULL)
			last = json_next(last);
		tap_ok(json_u64(last, "sport", &n) && n == 999, "... down to the last element");
	}
	json_destroy(j);
	emit_destroy(e);
}

int
main(void)
{
	test_values();
	test_strings();
	test_bad_utf8();
	test_refused();
	test_emit_roundtrip();
	return tap_done();
}
