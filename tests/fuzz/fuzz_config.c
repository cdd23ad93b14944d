/*
 * fuzz_config: libFuzzer target for the config parser.
 *
 * Any input must come back as a config or as NULL with a message; a config
 * that parses must also print, parse back and compare equal (the promise
 * of config_print() that "uplinkd --print-config" relies on).  Built by
 * tests/fuzz/build.sh.
 *
 * FUZZ_SOURCES: daemon/config.c daemon/netaddr.c daemon/log.c
 * FUZZ_PKGS: yaml-0.1
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise is a crash, so that libFuzzer keeps the input. */
static void
fuzz_fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_config: %s%s%s\n", what, detail ? ": " : "",
	    detail ? detail : "");
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg, *again;
	char err[512], err2[512];
	char *printed = NULL;
	size_t plen = 0;
	FILE *f;

	err[0] = '\0';
	cfg = config_parse("fuzz.yaml", (const char *)data, size, err,
	    sizeof(err));
	if (cfg == NULL) {
		if (err[0] == '\0')
			fuzz_fail("rejected without a message", NULL);
		if (memchr(err, '\0', sizeof(err)) == NULL)
			fuzz_fail("message not terminated", NULL);
		return 0;
	}
	if ((f = open_memstream(&printed, &plen)) == NULL)
		abort();
	if (config_print(cfg, f) == -1)
		fuzz_fail("config_print failed", NULL);
	if (fclose(f) != 0)
		abort();
	err2[0] = '\0';
	again = config_parse("printed.yaml", printed, plen, err2, sizeof(err2));
	if (again == NULL) {
		fprintf(stderr, "--- printed config:\n%s---\n", printed);
		fuzz_fail("printed config does not parse", err2);
	}
	if (!config_equal(cfg, again)) {
		fprintf(stderr, "--- printed config:\n%s---\n", printed);
		fuzz_fail("printed config parses to a different one", NULL);
	}
	config_free(again);
	config_free(cfg);
	free(printed);
	return 0;
}
