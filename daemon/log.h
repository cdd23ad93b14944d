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
#include <stddef.h>

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

/*
 * A value someone else chose (a config value, a request's argument), in
 * double quotes for a message: quotes, backslashes and control characters
 * escaped, long values cut at a UTF-8 character boundary, so that what is
 * printed cannot forge a line or drive a terminal.  Returns buf; len of
 * at least 8.
 */
#define LOG_QUOTE_MAX 80
const char *log_quote(const char *s, char *buf, size_t len);

#endif
