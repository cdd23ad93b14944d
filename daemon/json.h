/*
 * json: a small JSON reader for uplinkctl, which has to look inside the
 * daemon's --json answers when it runs a drill (roles, flow lists).
 *
 * json_parse() builds the whole document in one arena owned by the
 * returned handle; every value pointer stays valid until json_destroy().
 * It accepts RFC 8259 JSON (strings with every escape, \u surrogate
 * pairs turned into UTF-8) nested at most JSON_MAX_DEPTH deep, and
 * nothing else: no comments, no trailing commas, nothing after the value.
 *
 * Lookups never fail loudly: a missing key, an index out of range or a
 * value of the wrong type gives NULL / false, so callers check once.
 *
 * Errors: json_parse returns NULL with errno EINVAL (and a message with
 * the byte offset in err) on bad input, or ENOMEM.
 */
#ifndef UPLINKD_JSON_H
#define UPLINKD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64

enum json_type {
	JSON_NULL,
	JSON_FALSE,
	JSON_TRUE,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT,
};

struct json;
struct json_value;

struct json *json_parse(const char *text, size_t len, char *err, size_t errlen);
void json_destroy(struct json *j);	/* NULL is a no-op */

const struct json_value *json_root(const struct json *j);
enum json_type json_type(const struct json_value *v);

/* A member by a dotted path of keys ("sync.in_sync"); NULL when any step
 * is missing or not an object.  v may be NULL. */
const struct json_value *json_get(const struct json_value *v, const char *path);

/* Typed reads of json_get(v, path); false / NULL when missing or of
 * another type.  json_u64 also refuses negative and fractional numbers. */
const char *json_str(const struct json_value *v, const char *path);
bool json_bool(const struct json_value *v, const char *path, bool *out);
bool json_num(const struct json_value *v, const char *path, double *out);
bool json_u64(const struct json_value *v, const char *path, uint64_t *out);

/* Arrays and objects: the number of elements, and iteration in order
 * (json_first of an empty or scalar value is NULL). */
size_t json_count(const struct json_value *v);
const struct json_value *json_first(const struct json_value *v);
const struct json_value *json_next(const struct json_value *v);
/* The member name of an object's member (from json_first/json_next), or
 * NULL for an array element. */
const char *json_key(const struct json_value *v);

#endif
