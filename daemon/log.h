/*
 * log: the one logging module of uplinkd and uplinkctl.
 *
 * Meanings follow OpenBSD's log.c: log_warn() appends strerror(errno),
 * log_warnx() does not; log_debug() prints only when verbose; fatal() and
 * fatalx() log and exit(1) and are for start-up failures or broken
 * invariants only.  Output goes to stderr in the foreground and to syslog
 * (which journald collects) otherwise.
 */
#ifndef UPLINKD_LOG_H
#define UPLINKD_LOG_H

#include <stdarg.h>

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

void log_init(const char *ident, int foreground, int verbose);
void log_set_verbose(int verbose);
int log_get_verbose(void);

void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void fatal(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));

#endif
