/*
 * health: is each provider usable?
 *
 * Per provider, every `interval` one ICMP echo goes to each health target
 * through that provider: a raw socket bound to the provider's interface
 * (SO_BINDTODEVICE) with the provider's mark (SO_MARK, so policy routing
 * sends it out through the provider's table) and, when it is assigned on
 * this node, the provider's source address.  A round is good when at least
 * `require` targets answered within `timeout`.  `fall` bad rounds in a row
 * take an up provider down; `rise` good rounds bring it back.  The link
 * state comes from rtnetlink (RTMGRP_LINK): carrier loss takes the
 * provider down at once, carrier back starts the rise count.
 *
 * Providers start up: at daemon start, traffic should flow at once rather
 * than wait `rise` rounds; a dead provider is found within fall*interval.
 *
 * The owner is told of every up/down change (and of link changes, so it
 * can re-install routes the kernel deleted with the link) through the
 * callback, from inside the event loop.
 */
#ifndef UPLINKD_HEALTH_H
#define UPLINKD_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ev.h"

struct health;

enum health_event {
	HEALTH_DOWN,		/* provider became unusable */
	HEALTH_UP,		/* provider became usable */
	HEALTH_LINK_DOWN,	/* carrier lost (HEALTH_DOWN follows if it was up) */
	HEALTH_LINK_UP,		/* carrier back: re-install routes */
};

/* `reason` is a short human text ("3 of 3 rounds lost", "link down"). */
typedef void (*health_cb)(size_t provider, enum health_event ev,
    const char *reason, void *data);

struct health_stats {
	bool up;
	bool link_up;
	uint64_t rounds;		/* completed probe rounds */
	uint64_t rounds_good;
	uint64_t probes_sent;
	uint64_t replies;
	uint64_t timeouts;
	uint64_t send_errors;
	double rtt_ms_last;		/* of the last reply, -1 if none */
	double rtt_ms_avg;		/* EWMA over replies, -1 if none */
	int64_t last_change_ms;		/* monotonic, 0 if never changed */
	char last_reason[64];
};

/*
 * Opens one probe socket per provider and starts the rounds.  cfg must
 * outlive the health object.  NULL with errno on failure.
 */
struct health *health_create(struct ev_loop *loop, const struct config *cfg,
    health_cb cb, void *data);
void health_destroy(struct health *h);

/* The providers' SNAT addresses moved (a role change): each provider's
 * next round opens new probe sockets, bound to its SNAT address when this
 * node holds it and to the interface's address when not. */
void health_rebind(struct health *h);
bool health_up(const struct health *h, size_t provider);
/* Sets the state a provider starts from without a callback: a reload
 * carries each provider's state over instead of assuming it is up. */
void health_assume(struct health *h, size_t provider, bool up);
void health_get(const struct health *h, size_t provider, struct health_stats *out);
/* Fraction of completed rounds that were good since start (1.0 before the
 * first round). */
double health_availability(const struct health *h, size_t provider);
/* 1 - prod(1 - a_i) over all providers: the chance that at least one is up. */
double health_combined_availability(const struct health *h);

/*
 * Pure hysteresis step, exposed for unit tests: given the current state,
 * the run counters and a round's result, returns the new state.
 */
struct health_fsm {
	bool up;
	unsigned bad_run;
	unsigned good_run;
};
bool health_fsm_step(struct health_fsm *fsm, bool round_good, unsigned fall,
    unsigned rise);

#endif
