/*
 * addrs: the IP addresses on this host's interfaces, kept current from
 * rtnetlink's address events, with a dump at start and after an overrun.
 *
 * The HA tick asks five times a second whether the providers' SNAT
 * addresses are here (keepalived moves them with the role).  Asking the
 * kernel each time, as getifaddrs() does with two netlink dumps, was about
 * a third of an idle daemon's CPU; this answers from memory and costs
 * nothing while the addresses do not change.
 */
#ifndef UPLINKD_ADDRS_H
#define UPLINKD_ADDRS_H

#include <stdbool.h>

#include "ev.h"
#include "netaddr.h"

struct addrs;

/* Subscribes and reads the current addresses.  NULL with errno. */
struct addrs *addrs_create(struct ev_loop *loop);
void addrs_destroy(struct addrs *a);

/*
 * Reads the events that wait in the socket, so that the answers reflect
 * every change the kernel made before the call (keepalived adds the
 * addresses before it runs a notify script).  Returns 0, or -1 when the
 * addresses are not known (a dump failed; the next call tries again).
 */
int addrs_refresh(struct addrs *a);
/* Whether addr is on some interface, as of the last refresh or event. */
bool addrs_has(const struct addrs *a, const struct netaddr *addr);

#endif
