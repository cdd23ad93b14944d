/*
 * test_notify: the notify module against a fake service manager, a
 * datagram socket named by NOTIFY_SOCKET the way systemd passes it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"
#include "tap.h"

/* The next datagram, or "" after 1 s without one. */
static void
next_msg(int fd, char *buf, size_t len)
{
	struct timeval tv = { .tv_sec = 1 };
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = recv(fd, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
}

int
main(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char buf[256];
	int fd, ok;

#ifndef HAVE_SYSTEMD
	printf("1..0 # SKIP built without libsystemd: the notify calls do nothing\n");
	return 0;
#endif
	snprintf(sun.sun_path, sizeof(sun.sun_path), "/tmp/test_notify.%ld", (long)getpid());
	unlink(sun.sun_path);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		perror("test_notify: socket");
		return 1;
	}
	setenv("NOTIFY_SOCKET", sun.sun_path, 1);

	notify_ready();
	next_msg(fd, buf, sizeof(buf));
	tap_ok(strcmp(buf, "READY=1") == 0, "ready sends READY=1 (got \"%s\")", buf);

	notify_reloading();
	next_msg(fd, buf, sizeof(buf));
	ok = strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0 &&
	    strtoull(buf + 27, NULL, 10) > 0;
	buf[strcspn(buf, "\n")] = ' ';	/* one TAP line */
	tap_ok(ok, "reloading sends RELOADING=1 with MONOTONIC_USEC (got \"%s\")", buf);

	notify_stopping();
	next_msg(fd, buf, sizeof(buf));
	tap_ok(strcmp(buf, "STOPPING=1") == 0, "stopping sends STOPPING=1 (got \"%s\")", buf);

	/* Outside systemd the calls must be harmless. */
	unsetenv("NOTIFY_SOCKET");
	notify_ready();
	tap_ok(1, "without NOTIFY_SOCKET the calls return");

	close(fd);
	unlink(sun.sun_path);
	return tap_done();
}
