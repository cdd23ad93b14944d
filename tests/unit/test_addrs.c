/*
 * test_addrs: the address watcher against a real kernel, in a network
 * namespace of its own (so it needs root, as the whole suite does): the
 * dump at start, events for IPv4 and IPv6 additions and removals, an
 * address on two interfaces, and a dump of more addresses than one
 * receive buffer holds.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addrs.h"
#include "ev.h"
#include "log.h"
#include "tap.h"

static struct netaddr
addr(const char *s)
{
	struct netaddr a;

	if (netaddr_parse(s, &a) == -1) {
		fprintf(stderr, "test_addrs: bad address %s\n", s);
		exit(1);
	}
	return a;
}

static bool
has(struct addrs *a, const char *s)
{
	struct netaddr x = addr(s);

	return addrs_refresh(a) == 0 && addrs_has(a, &x);
}

/*
 * The kernel announces a new IPv6 address from its address-configuration
 * work queue (where DAD would run, even with nodad), not inside the
 * `ip addr add` call: on a loaded machine the event may come after the
 * command returned.  Wait for it, bounded (CI once found it missing).
 */
static bool
has_soon(struct addrs *a, const char *s)
{
	for (int i = 0; i < 250; i++) {
		if (has(a, s))
			return true;
		usleep(20 * 1000);
	}
	return false;
}

static int
sh(const char *cmd)
{
	int rc = system(cmd);

	if (rc != 0)
		tap_diag("command failed (%d): %s", rc, cmd);
	return rc;
}

int
main(void)
{
	struct ev_loop *loop;
	struct addrs *a, *b;
	FILE *batch;
	bool all = true;

	log_init("test_addrs", 1, 0);
	if (unshare(CLONE_NEWNET) == -1) {
		printf("1..0 # SKIP needs root for a network namespace of its own\n");
		return 0;
	}
	if (sh("ip link set lo up && ip link add ta0 type veth peer name ta1 && ip link set ta0 up && ip link set ta1 up") != 0)
		return 1;
	loop = ev_create();
	a = addrs_create(loop);
	tap_ok(a != NULL, "created");
	if (a == NULL)
		return tap_done();
	tap_ok(has(a, "127.0.0.1") && has(a, "::1"), "the dump at start found lo's addresses");
	tap_ok(!has(a, "192.0.2.7"), "an address that is not there is not held");

	sh("ip addr add 192.0.2.7/32 dev ta0");
	tap_ok(has(a, "192.0.2.7"), "an added IPv4 address is held at the next refresh");
	sh("ip -6 addr add 2001:db8::7/128 dev ta0 nodad");
	tap_ok(has_soon(a, "2001:db8::7"), "an added IPv6 address is held");
	sh("ip addr add 192.0.2.7/32 dev lo");
	sh("ip addr del 192.0.2.7/32 dev ta0");
	tap_ok(has(a, "192.0.2.7"), "an address on two interfaces stays held when one drops it");
	sh("ip addr del 192.0.2.7/32 dev lo");
	tap_ok(!has(a, "192.0.2.7"), "and goes when the last one drops it");
	sh("ip -6 addr del 2001:db8::7/128 dev ta0");
	tap_ok(!has(a, "2001:db8::7"), "a removed IPv6 address goes");
	sh("ip addr add 198.51.100.1/24 peer 198.51.100.2 dev ta0");
	tap_ok(has(a, "198.51.100.1") && !has(a, "198.51.100.2"),
	    "point-to-point: the local address counts, not the far end");

	/* 600 addresses: a dump of several receive buffers. */
	if ((batch = popen("ip -batch -", "w")) == NULL)
		return 1;
	for (int i = 0; i < 600; i++)
		fprintf(batch, "addr add 10.9.%d.%d/32 dev ta0\n", i / 250, i % 250 + 1);
	pclose(batch);
	b = addrs_create(loop);
	tap_ok(b != NULL, "a second watcher starts over 600 addresses");
	for (int i = 0; b != NULL && i < 600; i++) {
		char s[32];

		snprintf(s, sizeof(s), "10.9.%d.%d", i / 250, i % 250 + 1);
		all &= has(b, s) && has(a, s);
	}
	tap_ok(all, "both hold all 600 (one from its dump, one from events)");
	sh("ip link del ta0");
	tap_ok(!has(a, "10.9.0.1") && !has(a, "198.51.100.1") && has(a, "127.0.0.1"),
	    "an interface's deletion takes its addresses along");
	addrs_destroy(b);
	addrs_destroy(a);
	ev_destroy(loop);
	return tap_done();
}
