/*
 * fuzz_ctl: libFuzzer target for the control socket's request validation
 * (ctl_request_parse(), what the server runs before any handler sees a
 * request).  The input is the bytes a client sent: header and payload.
 *
 * Beyond "no crash", it checks what handlers rely on: every accepted
 * request has at most CTL_MAX_ARGS arguments, each a NUL-terminated string
 * inside the payload, back to back and covering it exactly; and the header
 * check alone agrees with the full parse.  Built by tests/fuzz/build.sh.
 *
 * FUZZ_SOURCES: daemon/ctl.c daemon/ev.c daemon/emit.c daemon/log.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz_ctl: %s\n", what);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t hlen = sizeof(struct ctl_req_hdr);
	struct ctl_request req;
	struct ctl_req_hdr h;
	enum ctl_reject why = CTL_REJECT_NONE, hwhy = CTL_REJECT_NONE;
	char err[256];
	const char *p;
	int hrc;

	err[0] = '\0';
	if (ctl_request_parse(data, size, &req, err, sizeof(err), &why) == -1) {
		if (why == CTL_REJECT_NONE || err[0] == '\0')
			fuzz_fail("rejected without a reason or a message");
		if (size >= hlen) {
			memcpy(&h, data, hlen);
			hrc = ctl_request_check_header(&h, err, sizeof(err), &hwhy);
			/* A header that fails alone fails the same way whole. */
			if (hrc == -1 && hwhy != why)
				fuzz_fail("header check and parse disagree");
		}
		return 0;
	}
	if (why != CTL_REJECT_NONE || size < hlen)
		fuzz_fail("accepted with a reason, or without a header");
	memcpy(&h, data, hlen);
	if (ctl_request_check_header(&h, err, sizeof(err), &hwhy) == -1)
		fuzz_fail("accepted a request whose header fails alone");
	if (size - hlen != h.length || (int)req.type != h.type ||
	    req.flags != h.flags)
		fuzz_fail("request does not match its header");
	if (req.argc < 0 || req.argc > CTL_MAX_ARGS)
		fuzz_fail("argc out of range");
	p = (const char *)data + hlen;
	for (int i = 0; i < req.argc; i++) {
		size_t left = (size_t)((const char *)data + size - p);

		if (req.argv[i] != p || memchr(p, '\0', left) == NULL)
			fuzz_fail("argument not in place or not terminated");
		p += strlen(p) + 1;
	}
	if (p != (const char *)data + size)
		fuzz_fail("arguments do not cover the payload");
	return 0;
}
