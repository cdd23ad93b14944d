/*
 * query: one control-socket request from a client (uplinkctl's drill and
 * handover), its JSON answer parsed.
 *
 * Errors: NULL, with the reason in why: "cannot reach uplinkd at ...",
 * the daemon's refusal, or an unreadable answer.  *unreachable (when not
 * NULL) tells the first apart, for the exit status.
 */
#ifndef UPLINKD_QUERY_H
#define UPLINKD_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "ctl.h"
#include "json.h"

struct json *query_json(const char *socket, enum ctl_type type, int argc, char **argv,
    int timeout_ms, char *why, size_t len, bool *unreachable);

/* Sleeps ms milliseconds, through signals. */
void query_sleep_ms(int ms);

#endif
