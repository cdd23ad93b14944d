/*
 * test_log: log_quote(), which every message uses for a value someone
 * else chose (config values, control requests' arguments).
 */
#include <string.h>

#include "log.h"
#include "tap.h"

static int
quotes_to(const char *in, size_t len, const char *want)
{
	char buf[LOG_QUOTE_MAX];
	const char *got = log_quote(in, buf, len);

	if (strcmp(got, want) != 0) {
		tap_diag("got  %s", got);
		tap_diag("want %s", want);
		return 0;
	}
	return 1;
}

int
main(void)
{
	char longv[200];

	tap_ok(quotes_to("isp-a", LOG_QUOTE_MAX, "\"isp-a\""), "a plain value in quotes");
	tap_ok(quotes_to("a\"b\\c", LOG_QUOTE_MAX, "\"a\\\"b\\\\c\""),
	    "quotes and backslashes escaped");
	tap_ok(quotes_to("\x1b[2J\nfake line\r\x7f", LOG_QUOTE_MAX,
	    "\"\\x1b[2J\\x0afake line\\x0d\\x7f\""),
	    "terminal escapes, newlines and DEL cannot reach the reader");
	tap_ok(quotes_to("", LOG_QUOTE_MAX, "\"\""), "empty");
	memset(longv, 'x', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	tap_ok(quotes_to(longv, 12, "\"xxxxxx...\""), "a long value cut to the buffer");
	tap_ok(quotes_to("ab\xc3\xa9\xc3\xa9\xc3\xa9", 12, "\"ab\xc3\xa9\xc3\xa9...\""),
	    "a cut keeps whole UTF-8 characters");
	tap_ok(quotes_to("abc\xc3\xa9\xc3\xa9\xc3\xa9", 12, "\"abc\xc3\xa9...\""),
	    "... and drops one it would cut inside");
	tap_ok(quotes_to("a\xe2\x82\xac\xe2\x82\xac", 12, "\"a\xe2\x82\xac...\""),
	    "... of three bytes too");
	tap_ok(quotes_to("\x01\x01\x01\x01", 12, "\"\\x01...\""),
	    "an escape is never cut in half");
	return tap_done();
}
