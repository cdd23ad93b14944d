#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "emit.h"
#include "tap.h"

/* The status answer of ARCHITECTURE.md, trimmed, in both renderings. */
static void
fill_status(struct emit *e)
{
	emit_str(e, "node", "gw1");
	emit_str(e, "role", "master");
	emit_bool(e, "in_sync", true);
	emit_array_begin(e, "providers");
	emit_object_begin(e, NULL);
	emit_str(e, "name", "isp-a");
	emit_str(e, "state", "up");
	emit_u64(e, "weight", 1);
	emit_u64(e, "flows", 120);
	emit_object_begin(e, "health");	/* nested: skipped in the table */
	emit_u64(e, "rtt_us", 800);
	emit_object_end(e);
	emit_object_end(e);
	emit_object_begin(e, NULL);
	emit_str(e, "name", "isp-bbbbbb");
	emit_str(e, "state", "draining");
	emit_u64(e, "flows", 7);	/* out of order, weight missing */
	emit_object_end(e);
	emit_array_end(e);
	emit_object_begin(e, "flows");
	emit_u64(e, "total", 240);
	emit_i64(e, "delta", -3);
	emit_object_begin(e, "rejected");
	emit_u64(e, "auth", 0);
	emit_object_end(e);
	emit_object_end(e);
	emit_object_begin(e, "sync");
	emit_double(e, "lag_ms", 0.8, 1);
	emit_bool(e, "authenticated", false);
	emit_null(e, "peer_name");
	emit_object_end(e);
	emit_array_begin(e, "targets");
	emit_str(e, NULL, "198.51.100.1");
	emit_str(e, NULL, "198.51.100.2");
	emit_array_end(e);
	emit_array_begin(e, "empty");
	emit_array_end(e);
}

static void
check(enum emit_format fmt, void (*fill)(struct emit *), const char *want,
    const char *what)
{
	struct emit *e = emit_create(fmt);
	const char *got;
	size_t len = 0;

	fill(e);
	got = emit_finish(e, &len);
	if (!tap_ok(got != NULL && strcmp(got, want) == 0 && len == strlen(want),
	    "%s", what))
		tap_diag("got:\n%s\n# want:\n%s", got ? got : "(null)", want);
	emit_destroy(e);
}

static void
fill_escapes(struct emit *e)
{
	emit_str(e, "q\"k", "a\"b\\c/d");
	emit_str(e, "ctl", "\x01\n\t\x1f\x7f");
	emit_str(e, "utf8", "gr\xc3\xbc\xc3\x9f \xe2\x82\xac");
	emit_str(e, "bad", "a\xff" "b\xc3");
	emit_str(e, "nul", NULL);
}

static void
fill_numbers(struct emit *e)
{
	emit_u64(e, "u", UINT64_MAX);
	emit_i64(e, "i", INT64_MIN);
	emit_double(e, "d0", 2.5, 0);
	emit_double(e, "d3", -1.0 / 3.0, 3);
	emit_double(e, "nan", NAN, 2);
	emit_double(e, "inf", -INFINITY, 2);
	emit_double(e, "neg_decimals", 1.25, -4);
}

static void
fill_nothing(struct emit *e)
{
	(void)e;
}

static void
fill_nested_arrays(struct emit *e)
{
	emit_array_begin(e, "a");
	emit_u64(e, NULL, 1);
	emit_array_begin(e, NULL);	/* nested array: JSON only */
	emit_u64(e, NULL, 2);
	emit_array_end(e);
	emit_bool(e, NULL, true);
	emit_array_end(e);
	emit_array_begin(e, "rows");
	emit_object_begin(e, NULL);
	emit_array_begin(e, "deep");
	emit_object_begin(e, NULL);
	emit_str(e, "x", "y");
	emit_object_end(e);
	emit_array_end(e);
	emit_str(e, "k", "v");
	emit_object_end(e);
	emit_array_end(e);
	emit_object_begin(e, "o");
	emit_array_begin(e, "t");
	emit_object_begin(e, NULL);
	emit_u64(e, "n", 1);
	emit_object_end(e);
	emit_array_end(e);
	emit_object_end(e);
}

int
main(void)
{
	struct emit *e;
	const char *got;
	size_t len;

	check(EMIT_JSON, fill_status,
	    "{\"node\": \"gw1\", \"role\": \"master\", \"in_sync\": true, "
	    "\"providers\": [{\"name\": \"isp-a\", \"state\": \"up\", \"weight\": 1, "
	    "\"flows\": 120, \"health\": {\"rtt_us\": 800}}, "
	    "{\"name\": \"isp-bbbbbb\", \"state\": \"draining\", \"flows\": 7}], "
	    "\"flows\": {\"total\": 240, \"delta\": -3, \"rejected\": {\"auth\": 0}}, "
	    "\"sync\": {\"lag_ms\": 0.8, \"authenticated\": false, \"peer_name\": null}, "
	    "\"targets\": [\"198.51.100.1\", \"198.51.100.2\"], \"empty\": []}",
	    "JSON: nested objects, arrays of objects and scalars");
	check(EMIT_HUMAN, fill_status,
	    "node: gw1\n"
	    "role: master\n"
	    "in_sync: yes\n"
	    "providers:\n"
	    "  NAME        STATE     WEIGHT  FLOWS\n"
	    "  isp-a       up        1       120\n"
	    "  isp-bbbbbb  draining  -       7\n"
	    "flows:\n"
	    "  total: 240\n"
	    "  delta: -3\n"
	    "  rejected:\n"
	    "    auth: 0\n"
	    "sync:\n"
	    "  lag_ms: 0.8\n"
	    "  authenticated: no\n"
	    "  peer_name: -\n"
	    "targets: 198.51.100.1, 198.51.100.2\n"
	    "empty: (none)\n",
	    "human: key lines, indentation, aligned table, scalar list");

	check(EMIT_JSON, fill_escapes,
	    "{\"q\\\"k\": \"a\\\"b\\\\c/d\", "
	    "\"ctl\": \"\\u0001\\u000a\\u0009\\u001f\x7f\", "
	    "\"utf8\": \"gr\xc3\xbc\xc3\x9f \xe2\x82\xac\", "
	    "\"bad\": \"a\\ufffdb\\ufffd\", \"nul\": null}",
	    "JSON: quotes, backslashes, control chars, UTF-8, invalid bytes");
	check(EMIT_HUMAN, fill_escapes,
	    "q\"k: a\"b\\c/d\n"
	    "ctl: ?????\n"
	    "utf8: gr\xc3\xbc\xc3\x9f \xe2\x82\xac\n"
	    "bad: a\xff" "b\xc3\n"
	    "nul: -\n",
	    "human: control chars neutralised, text otherwise as is");

	check(EMIT_JSON, fill_numbers,
	    "{\"u\": 18446744073709551615, \"i\": -9223372036854775808, "
	    "\"d0\": 2, \"d3\": -0.333, \"nan\": null, \"inf\": null, "
	    "\"neg_decimals\": 1}",
	    "JSON: integer limits, decimals, non-finite as null");
	check(EMIT_HUMAN, fill_numbers,
	    "u: 18446744073709551615\n"
	    "i: -9223372036854775808\n"
	    "d0: 2\n"
	    "d3: -0.333\n"
	    "nan: -\n"
	    "inf: -\n"
	    "neg_decimals: 1\n",
	    "human: numbers");

	check(EMIT_JSON, fill_nothing, "{}", "JSON: empty top level is {}");
	check(EMIT_HUMAN, fill_nothing, "", "human: empty top level is empty");

	check(EMIT_JSON, fill_nested_arrays,
	    "{\"a\": [1, [2], true], \"rows\": [{\"deep\": [{\"x\": \"y\"}], "
	    "\"k\": \"v\"}], \"o\": {\"t\": [{\"n\": 1}]}}",
	    "JSON: arrays in arrays, containers in rows");
	check(EMIT_HUMAN, fill_nested_arrays,
	    "a: 1, yes\n"
	    "rows:\n"
	    "  K\n"
	    "  v\n"
	    "o:\n"
	    "  t:\n"
	    "    N\n"
	    "    1\n",
	    "human: nested arrays skipped, table inside a nested object");

	e = emit_create(EMIT_JSON);
	emit_raw(e, "# HELP x\nx 1\n", 14);
	got = emit_finish(e, &len);
	tap_ok(got && strcmp(got, "# HELP x\nx 1\n") == 0 && len == 14,
	    "raw text passes through unchanged (JSON emitter)");
	got = emit_finish(e, &len);
	tap_ok(got && len == 14, "emit_finish twice returns the same text");
	emit_destroy(e);

	e = emit_create(EMIT_HUMAN);
	emit_raw(e, "a\0b", 3);
	got = emit_finish(e, &len);
	tap_ok(got && len == 3 && memcmp(got, "a\0b", 4) == 0,
	    "raw text keeps its length and gets a NUL");
	emit_destroy(e);

	/* A big array stays linear and correct. */
	e = emit_create(EMIT_HUMAN);
	emit_array_begin(e, "flows");
	for (int i = 0; i < 100000; i++) {
		emit_object_begin(e, NULL);
		emit_u64(e, "id", (uint64_t)i);
		emit_object_end(e);
	}
	emit_array_end(e);
	got = emit_finish(e, &len);
	tap_ok(got && strncmp(got, "flows:\n  ID\n  0\n  1\n", 19) == 0 &&
	    len > 100000 * 3 && strcmp(got + len - 8, "  99999\n") == 0,
	    "human table of 100000 rows");
	emit_destroy(e);

	emit_destroy(NULL);
	tap_ok(1, "emit_destroy(NULL) is a no-op");
	return tap_done();
}
