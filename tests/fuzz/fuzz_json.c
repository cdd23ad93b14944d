/*
 * fuzz_json: libFuzzer target for the JSON reader (daemon/json.c) that
 * uplinkctl's drill runs on the daemons' answers and on a traffic
 * command's output.  Beyond "no crash": a document that parses can be
 * walked to its last value, every string in it is NUL-terminated inside
 * the arena (ASan sees a read past it), and typed reads agree with the
 * type.  Built by tests/fuzz/build.sh.
 *
 * FUZZ_SOURCES: daemon/json.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
walk(const struct json_value *v, int depth)
{
	size_t n = 1;
	double d;
	bool b;

	if (depth > JSON_MAX_DEPTH + 1)
		abort();
	switch (json_type(v)) {
	case JSON_STRING:
		n += strlen(json_str(v, ""));
		break;
	case JSON_NUMBER:
		if (!json_num(v, "", &d))
			abort();
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		if (!json_bool(v, "", &b) || b != (json_type(v) == JSON_TRUE))
			abort();
		break;
	case JSON_ARRAY:
	case JSON_OBJECT: {
		size_t kids = 0;

		for (const struct json_value *k = json_first(v); k != NULL; k = json_next(k)) {
			if ((json_key(k) != NULL) != (json_type(v) == JSON_OBJECT))
				abort();
			n += walk(k, depth + 1);
			kids++;
		}
		if (kids != json_count(v))
			abort();
		break;
	}
	case JSON_NULL:
		break;
	}
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[128];
	struct json *j = json_parse((const char *)data, size, err, sizeof(err));

	if (j == NULL) {
		if (strncmp(err, "offset ", 7) != 0 && strcmp(err, "out of memory") != 0) {
			fprintf(stderr, "fuzz_json: refusal without an offset: %s\n", err);
			abort();
		}
		return 0;
	}
	walk(json_root(j), 0);
	json_destroy(j);
	return 0;
}
