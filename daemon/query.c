#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query.h"

struct json *
query_json(const char *socket, enum ctl_type type, int argc, char **argv, int timeout_ms,
    char *why, size_t len, bool *unreachable)
{
	char perr[128];
	uint32_t status;
	struct json *j;
	char *body;

	if (unreachable)
		*unreachable = false;
	if (ctl_call(socket, type, CTL_F_JSON, argc, argv, timeout_ms, &status, &body) == -1) {
		snprintf(why, len, "cannot reach uplinkd at %s: %s", socket, strerror(errno));
		if (unreachable)
			*unreachable = true;
		return NULL;
	}
	if (status != CTL_OK) {
		snprintf(why, len, "uplinkd at %s: %s", socket, body);
		free(body);
		return NULL;
	}
	j = json_parse(body, strlen(body), perr, sizeof(perr));
	if (j == NULL)
		snprintf(why, len, "uplinkd at %s: unreadable answer: %s", socket, perr);
	free(body);
	return j;
}

void
query_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}
