/*
 * notify: sd_notify() for Type=notify units; see notify.h.
 */
#include <stdio.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "notify.h"

static void
notify_send(const char *state)
{
#ifdef HAVE_SYSTEMD
	(void)sd_notify(0, state);
#else
	(void)state;
#endif
}

void
notify_ready(void)
{
	notify_send("READY=1");
}

/*
 * MONOTONIC_USEC is what systemd 253's Type=notify-reload requires with
 * RELOADING=1 (to tell this reload from an older one); older managers
 * ignore the field.
 */
void
notify_reloading(void)
{
	struct timespec ts;
	char msg[64];

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1) {
		notify_send("RELOADING=1");
		return;
	}
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	notify_send(msg);
}

void
notify_stopping(void)
{
	notify_send("STOPPING=1");
}
