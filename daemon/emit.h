/*
 * emit: one writer, two renderings.  Control-socket handlers describe their
 * answer once (objects, arrays, typed values) and emit renders it either as
 * JSON (for --json and programs) or as aligned human text, so both always
 * carry the same fields.
 *
 * Human rendering: "key: value" lines, nested objects indented by two
 * spaces; an array of objects is printed as a table whose columns are the
 * scalar keys of its first element (nested values inside table rows are
 * skipped in human output); an array of scalars as a comma-separated list.
 *
 * Errors are sticky: after an allocation failure every call is a no-op and
 * emit_finish() returns NULL with errno ENOMEM.  Misnesting is a
 * programming error and aborts.
 */
#ifndef UPLINKD_EMIT_H
#define UPLINKD_EMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct emit;

enum emit_format {
	EMIT_HUMAN,
	EMIT_JSON,
};

struct emit *emit_create(enum emit_format format);
void emit_destroy(struct emit *e);

/* The top level is an implicit object.  `key` is NULL inside arrays. */
void emit_object_begin(struct emit *e, const char *key);
void emit_object_end(struct emit *e);
void emit_array_begin(struct emit *e, const char *key);
void emit_array_end(struct emit *e);

void emit_str(struct emit *e, const char *key, const char *value);	/* NULL -> null */
void emit_u64(struct emit *e, const char *key, uint64_t value);
void emit_i64(struct emit *e, const char *key, int64_t value);
void emit_double(struct emit *e, const char *key, double value, int decimals);
void emit_bool(struct emit *e, const char *key, bool value);
void emit_null(struct emit *e, const char *key);

/*
 * Raw text appended as it is (for Prometheus metrics, which have their own
 * format); only valid when nothing else was emitted.
 */
void emit_raw(struct emit *e, const char *text, size_t len);

/* Closes the top level and returns the text (owned by e, NUL-terminated,
 * *len without the NUL).  NULL with errno ENOMEM after a failure. */
const char *emit_finish(struct emit *e, size_t *len);

#endif
