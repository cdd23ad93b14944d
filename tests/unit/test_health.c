/*
 * Unit tests for health: no network.  The module's internals (round
 * evaluation, reply matching, rtnetlink message handling) are exercised
 * directly by including the source, with hand-made packets and messages.
 */
#include "health.c"

#include <math.h>

#include "tap.h"

#define MAX_EVENTS 32

struct recorded {
	size_t provider;
	enum health_event ev;
	char reason[64];
};

static struct recorded events[MAX_EVENTS];
static size_t nevents;

static void
record(size_t provider, enum health_event ev, const char *reason, void *data)
{
	(void)data;
	if (nevents == MAX_EVENTS)
		return;
	events[nevents].provider = provider;
	events[nevents].ev = ev;
	snprintf(events[nevents].reason, sizeof(events[nevents].reason), "%s",
	    reason);
	nevents++;
}

static bool
event_is(size_t i, size_t provider, enum health_event ev, const char *reason)
{
	return i < nevents && events[i].provider == provider &&
	    events[i].ev == ev && strcmp(events[i].reason, reason) == 0;
}

static bool
near(double a, double b)
{
	return fabs(a - b) < 1e-9;
}

static void
test_fsm(void)
{
	struct health_fsm f = { .up = true };
	bool up;

	up = health_fsm_step(&f, false, 3, 2);
	tap_ok(up, "fsm: up, 1 bad of fall 3: still up");
	up = health_fsm_step(&f, false, 3, 2);
	tap_ok(up && f.bad_run == 2, "fsm: 2 bad: still up");
	up = health_fsm_step(&f, false, 3, 2);
	tap_ok(!up && !f.up, "fsm: third bad: down");
	tap_ok(f.bad_run == 0 && f.good_run == 0, "fsm: counters reset on change");
	up = health_fsm_step(&f, false, 3, 2);
	tap_ok(!up, "fsm: bad while down: stays down");
	up = health_fsm_step(&f, true, 3, 2);
	tap_ok(!up && f.good_run == 1, "fsm: 1 good of rise 2: still down");
	up = health_fsm_step(&f, false, 3, 2);
	tap_ok(!up && f.good_run == 0, "fsm: bad interrupts the good run");
	up = health_fsm_step(&f, true, 3, 2);
	tap_ok(!up, "fsm: good run restarts from 1");
	up = health_fsm_step(&f, true, 3, 2);
	tap_ok(up, "fsm: second good in a row: up");

	/* A bad run interrupted by a good round starts over. */
	health_fsm_step(&f, false, 3, 2);
	health_fsm_step(&f, false, 3, 2);
	health_fsm_step(&f, true, 3, 2);
	up = health_fsm_step(&f, false, 3, 2);
	tap_ok(up && f.bad_run == 1, "fsm: good round resets the bad run");
	health_fsm_step(&f, false, 3, 2);
	up = health_fsm_step(&f, false, 3, 2);
	tap_ok(!up, "fsm: three bad in a row after reset: down");

	f = (struct health_fsm){ .up = true };
	up = health_fsm_step(&f, true, 3, 2);
	tap_ok(up, "fsm: good while up stays up");
	up = health_fsm_step(&f, false, 1, 1);
	tap_ok(!up, "fsm: fall 1 goes down at once");
	up = health_fsm_step(&f, true, 0, 0);
	tap_ok(up, "fsm: rise 0 treated as 1");
}

static void
test_combine(void)
{
	double a[3] = { 0.9, 0.8, 0.5 };
	double one[1] = { 1.0 };
	double zero[2] = { 0.0, 0.0 };

	tap_ok(near(health_combine(a, 2), 0.98), "combined 0.9, 0.8 = 0.98 (%f)",
	    health_combine(a, 2));
	tap_ok(near(health_combine(a, 3), 0.99), "combined 0.9, 0.8, 0.5 = 0.99");
	tap_ok(near(health_combine(one, 1), 1.0), "combined of one perfect = 1");
	tap_ok(near(health_combine(zero, 2), 0.0), "combined of dead = 0");
	tap_ok(near(health_combine(a, 0), 0.0), "combined of none = 0");
}

static void
make_config(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->nproviders = 2;
	for (size_t i = 0; i < 2; i++) {
		struct cfg_provider *cp = &cfg->providers[i];

		snprintf(cp->name, sizeof(cp->name), "isp-%c", (char)('a' + i));
		snprintf(cp->interface, sizeof(cp->interface), "hltx%zu", i);
		netaddr_parse(i == 0 ? "198.51.100.1" : "203.0.113.1", &cp->gateway);
		cp->mark = (uint32_t)(0x100 * (i + 1));
		cp->health.require = 1;
		cp->health.interval_ms = 200;
		cp->health.timeout_ms = 150;
		cp->health.fall = 3;
		cp->health.rise = 2;
	}
	/* isp-a: two explicit targets, isp-b: the gateway by default. */
	netaddr_parse("192.0.2.1", &cfg->providers[0].health.targets[0]);
	netaddr_parse("192.0.2.2", &cfg->providers[0].health.targets[1]);
	cfg->providers[0].health.ntargets = 2;
}

/* A health object with no sockets: enough for everything but I/O. */
static struct health *
fake_health(struct ev_loop *loop, const struct config *cfg)
{
	struct health *h = calloc(1, sizeof(*h));

	h->loop = loop;
	h->cfg = cfg;
	h->cb = record;
	h->nlfd = -1;
	h->nprov = cfg->nproviders;
	h->first_dump = true;
	h->cookie = 0x0123456789abcdefULL;
	for (size_t i = 0; i < h->nprov; i++)
		health_prov_init(h, i, 0x4240);
	return h;
}

static void
round_with(struct health_prov *p, unsigned replies)
{
	p->round_spoiled = false;
	p->round_replies = replies;
	prov_round_end(p);
}

static void
test_rounds(struct ev_loop *loop)
{
	struct config cfg;
	struct health *h;
	struct health_prov *a, *b;
	struct health_stats st;

	make_config(&cfg);
	h = fake_health(loop, &cfg);
	a = &h->prov[0];
	b = &h->prov[1];
	nevents = 0;

	tap_ok(a->ntargets == 2 && b->ntargets == 1 &&
	    netaddr_eq(&b->targets[0].addr, &cfg.providers[1].gateway),
	    "targets: explicit list, or the gateway by default");
	tap_ok(a->ident != b->ident, "identifiers differ per provider");
	tap_ok(health_up(h, 0) && health_up(h, 1), "providers start up");
	tap_ok(near(health_availability(h, 0), 1.0) &&
	    near(health_combined_availability(h), 1.0),
	    "availability 1.0 before the first round");
	tap_ok(!health_up(h, 7), "unknown provider index is not up");

	round_with(a, 0);
	round_with(a, 0);
	tap_ok(nevents == 0 && health_up(h, 0), "2 bad rounds: no event");
	round_with(a, 0);
	tap_ok(nevents == 1 && event_is(0, 0, HEALTH_DOWN,
	    "3 rounds without 1 of 2 replies"), "third bad round: DOWN (%s)",
	    nevents ? events[0].reason : "none");
	tap_ok(!health_up(h, 0) && health_up(h, 1), "isp-a down, isp-b still up");
	health_get(h, 0, &st);
	tap_ok(!st.up && st.rounds == 3 && st.rounds_good == 0 &&
	    st.last_change_ms != 0 &&
	    strcmp(st.last_reason, "3 rounds without 1 of 2 replies") == 0,
	    "stats after going down");
	round_with(a, 1);
	tap_ok(nevents == 1, "one good round: still down");
	round_with(a, 2);
	tap_ok(nevents == 2 && event_is(1, 0, HEALTH_UP, "2 good rounds"),
	    "second good round: UP");

	/* require 2 of 2 */
	cfg.providers[0].health.require = 2;
	round_with(a, 1);
	round_with(a, 1);
	round_with(a, 1);
	tap_ok(nevents == 3 && event_is(2, 0, HEALTH_DOWN,
	    "3 rounds without 2 of 2 replies"), "1 of 2 replies with require 2 is bad");
	cfg.providers[0].health.require = 1;

	/* availability: isp-a so far 8 rounds, 2 good */
	tap_ok(near(health_availability(h, 0), 2.0 / 8.0),
	    "availability = good/rounds (%f)", health_availability(h, 0));

	/* isp-b: 9 of 10 good, and isp-a reset to 8 of 10 for the combined */
	for (int i = 0; i < 10; i++)
		round_with(b, i == 4 ? 0 : 1);
	a->st.rounds = 10;
	a->st.rounds_good = 8;
	tap_ok(near(health_availability(h, 1), 0.9), "isp-b availability 0.9");
	tap_ok(near(health_combined_availability(h), 0.98),
	    "combined availability of 0.8 and 0.9 is 0.98 (%f)",
	    health_combined_availability(h));
	tap_ok(health_up(h, 1), "isp-b stayed up through one bad round");

	/* link down while up: LINK_DOWN then DOWN at once */
	nevents = 0;
	prov_link_change(b, false, "link down");
	tap_ok(nevents == 2 && event_is(0, 1, HEALTH_LINK_DOWN, "link down") &&
	    event_is(1, 1, HEALTH_DOWN, "link down"), "carrier loss: LINK_DOWN, DOWN");
	prov_link_change(b, false, "link down");
	tap_ok(nevents == 2, "repeated link down: no event");
	round_with(b, 1);
	round_with(b, 1);
	round_with(b, 1);
	tap_ok(nevents == 2 && !health_up(h, 1),
	    "rounds while the link is down do not bring it up");
	health_get(h, 1, &st);
	tap_ok(!st.link_up && st.rounds == 13 && st.rounds_good == 9,
	    "rounds while the link is down count as bad");
	prov_link_change(b, true, "link up");
	tap_ok(nevents == 3 && event_is(2, 1, HEALTH_LINK_UP, "link up") &&
	    !health_up(h, 1), "carrier back: LINK_UP, still down");
	round_with(b, 1);
	tap_ok(nevents == 3, "first good round after link up: still down");
	round_with(b, 1);
	tap_ok(nevents == 4 && event_is(3, 1, HEALTH_UP, "2 good rounds"),
	    "rise rounds after link up: UP");

	/* link down while already down by probes: no second DOWN */
	nevents = 0;
	tap_ok(!health_up(h, 0), "isp-a is down");
	prov_link_change(a, false, "link down");
	tap_ok(nevents == 1 && event_is(0, 0, HEALTH_LINK_DOWN, "link down"),
	    "link down of a down provider: only LINK_DOWN");

	/* a round spoiled by a link flap is bad */
	prov_link_change(a, true, "link up");
	a->round_replies = 2;
	a->round_spoiled = true;
	prov_round_end(a);
	a->round_spoiled = false;
	round_with(a, 2);
	tap_ok(nevents == 2 && !health_up(h, 0),
	    "a round during which the link went down is bad");
	free(h);
}

/* Builds an echo reply as the kernel hands it to an ICMPv4 raw socket. */
static size_t
make_reply4(uint8_t *buf, uint16_t id, uint16_t seq, uint64_t cookie,
    bool bad_sum)
{
	uint8_t *icmp = buf + 20;
	uint16_t sum;

	memset(buf, 0, 20 + 8 + HEALTH_PAYLOAD);
	buf[0] = 0x45;
	buf[9] = IPPROTO_ICMP;
	icmp[0] = ICMP_ECHOREPLY;
	icmp[4] = (uint8_t)(id >> 8);
	icmp[5] = (uint8_t)id;
	icmp[6] = (uint8_t)(seq >> 8);
	icmp[7] = (uint8_t)seq;
	memcpy(icmp + 8, &cookie, 8);
	sum = health_cksum(icmp, 8 + HEALTH_PAYLOAD);
	if (bad_sum)
		sum ^= 1;
	memcpy(icmp + 2, &sum, 2);
	return 20 + 8 + HEALTH_PAYLOAD;
}

static bool
feed4(struct health_prov *p, const char *from, const uint8_t *buf, size_t n)
{
	struct netaddr src;
	const uint8_t *icmp;
	size_t len = 0;

	netaddr_parse(from, &src);
	if ((icmp = icmp4_payload(buf, n, &len)) == NULL)
		return false;
	return prov_match(p, &src, icmp, len, p->targets[0].sent_us + 1500);
}

static void
test_match(struct ev_loop *loop)
{
	struct config cfg;
	struct health *h;
	struct health_prov *a;
	uint8_t buf[128];
	size_t n;
	uint64_t cookie = 0x0123456789abcdefULL;

	make_config(&cfg);
	h = fake_health(loop, &cfg);
	a = &h->prov[0];
	/* as if prov_round_start had sent seq 7 and 8 */
	a->targets[0].pending = true;
	a->targets[0].seq = 7;
	a->targets[0].sent_us = 1000000;
	a->targets[1].pending = true;
	a->targets[1].seq = 8;
	a->targets[1].sent_us = 1000000;

	n = make_reply4(buf, a->ident, 7, cookie, false);
	tap_ok(!feed4(a, "192.0.2.9", buf, n), "reply from a stranger ignored");
	tap_ok(!feed4(a, "192.0.2.2", buf, n), "reply with the other target's seq ignored");
	n = make_reply4(buf, (uint16_t)(a->ident + 1), 7, cookie, false);
	tap_ok(!feed4(a, "192.0.2.1", buf, n), "other identifier ignored");
	n = make_reply4(buf, a->ident, 7, cookie ^ 1, false);
	tap_ok(!feed4(a, "192.0.2.1", buf, n), "other cookie ignored");
	n = make_reply4(buf, a->ident, 7, cookie, true);
	tap_ok(!feed4(a, "192.0.2.1", buf, n), "bad checksum ignored");
	n = make_reply4(buf, a->ident, 7, cookie, false);
	tap_ok(!feed4(a, "192.0.2.1", buf, n - 1), "truncated reply ignored");
	buf[9] = IPPROTO_UDP;
	tap_ok(!feed4(a, "192.0.2.1", buf, n), "non-ICMP packet ignored");
	buf[9] = IPPROTO_ICMP;
	buf[0] = 0x4f;
	tap_ok(!feed4(a, "192.0.2.1", buf, n), "IP header longer than packet ignored");
	buf[0] = 0x45;
	tap_ok(feed4(a, "192.0.2.1", buf, n), "matching reply accepted");
	tap_ok(a->round_replies == 1 && a->st.replies == 1 &&
	    near(a->st.rtt_ms_last, 1.5) && near(a->st.rtt_ms_avg, 1.5),
	    "reply counted, RTT measured (%f ms)", a->st.rtt_ms_last);
	tap_ok(!feed4(a, "192.0.2.1", buf, n), "duplicate reply ignored");
	n = make_reply4(buf, a->ident, 8, cookie, false);
	tap_ok(feed4(a, "192.0.2.2", buf, n) && a->round_replies == 2,
	    "second target's reply accepted");

	nevents = 0;
	prov_round_end(a);
	tap_ok(a->st.rounds_good == 1 && a->st.timeouts == 0 && nevents == 0,
	    "round with replies is good");
	a->targets[0].pending = true;
	a->targets[0].seq = 9;
	a->round_replies = 0;
	prov_round_end(a);
	tap_ok(a->st.timeouts == 1 && !a->targets[0].pending,
	    "unanswered probe counts as a timeout");
	n = make_reply4(buf, a->ident, 9, cookie, false);
	tap_ok(!feed4(a, "192.0.2.1", buf, n), "late reply after the round ignored");
	free(h);
}

static size_t
make_link(char *buf, uint16_t type, uint32_t seq, int ifindex,
    const char *name, unsigned flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifi;

	nlh->nlmsg_type = type;
	nlh->nlmsg_seq = seq;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_index = ifindex;
	ifi->ifi_flags = flags;
	if (name != NULL)
		mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	return nlh->nlmsg_len;
}

static void
test_netlink(struct ev_loop *loop)
{
	struct config cfg;
	struct health *h;
	struct health_prov *a, *b;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	const unsigned on = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;

	make_config(&cfg);
	h = fake_health(loop, &cfg);
	a = &h->prov[0];
	b = &h->prov[1];
	nevents = 0;

	/* a dump that shows isp-a's interface up and lacks isp-b's */
	h->dump_seq = 5;
	make_link(buf, RTM_NEWLINK, 5, 1, "lo", IFF_UP | IFF_RUNNING);
	health_nl_link(h, (struct nlmsghdr *)buf);
	make_link(buf, RTM_NEWLINK, 5, 41, "hltx0", on);
	health_nl_link(h, (struct nlmsghdr *)buf);
	tap_ok(nevents == 0 && a->ifindex == 41 && a->seen_in_dump,
	    "dump: present and up interface, no event");
	health_nl_dump_done(h);
	tap_ok(nevents == 2 && event_is(0, 1, HEALTH_LINK_DOWN, "interface missing") &&
	    event_is(1, 1, HEALTH_DOWN, "link down") && h->dump_seq == 0,
	    "dump: missing interface is link down");

	/* it appears later */
	make_link(buf, RTM_NEWLINK, 0, 42, "hltx1", IFF_UP);
	health_nl_link(h, (struct nlmsghdr *)buf);
	tap_ok(nevents == 2 && b->ifindex == 42,
	    "interface appears without carrier: still link down");
	make_link(buf, RTM_NEWLINK, 0, 42, "hltx1", on);
	health_nl_link(h, (struct nlmsghdr *)buf);
	tap_ok(nevents == 3 && event_is(2, 1, HEALTH_LINK_UP, "link up") &&
	    !health_up(h, 1), "carrier: LINK_UP, rise counting starts");

	/* carrier loss on isp-a: IFF_RUNNING cleared */
	make_link(buf, RTM_NEWLINK, 0, 41, "hltx0", IFF_UP);
	health_nl_link(h, (struct nlmsghdr *)buf);
	tap_ok(nevents == 5 && event_is(3, 0, HEALTH_LINK_DOWN, "link down") &&
	    event_is(4, 0, HEALTH_DOWN, "link down"), "carrier loss: LINK_DOWN, DOWN");
	make_link(buf, RTM_NEWLINK, 0, 41, "hltx0", on);
	health_nl_link(h, (struct nlmsghdr *)buf);
	tap_ok(nevents == 6 && event_is(5, 0, HEALTH_LINK_UP, "link up"),
	    "carrier back: LINK_UP");

	/* other interfaces do not matter */
	make_link(buf, RTM_NEWLINK, 0, 77, "eth9", 0);
	health_nl_link(h, (struct nlmsghdr *)buf);
	make_link(buf, RTM_DELLINK, 0, 77, "eth9", 0);
	health_nl_link(h, (struct nlmsghdr *)buf);
	tap_ok(nevents == 6, "other interfaces ignored");

	/* deletion and renaming */
	make_link(buf, RTM_DELLINK, 0, 42, "hltx1", 0);
	health_nl_link(h, (struct nlmsghdr *)buf);
	tap_ok(nevents == 7 && event_is(6, 1, HEALTH_LINK_DOWN, "interface gone") &&
	    b->ifindex == 0, "deleted interface: LINK_DOWN");
	make_link(buf, RTM_NEWLINK, 0, 41, "renamed", on);
	health_nl_link(h, (struct nlmsghdr *)buf);
	tap_ok(nevents == 8 && event_is(7, 0, HEALTH_LINK_DOWN, "interface gone"),
	    "renamed interface: LINK_DOWN");

	/* a truncated message is dropped */
	make_link(buf, RTM_NEWLINK, 0, 41, "hltx0", on);
	((struct nlmsghdr *)buf)->nlmsg_len = sizeof(struct nlmsghdr) + 2;
	health_nl_link(h, (struct nlmsghdr *)buf);
	tap_ok(nevents == 8, "truncated link message ignored");
	free(h);
}

static void
test_api_null(void)
{
	struct health_stats st;

	health_destroy(NULL);
	tap_ok(!health_up(NULL, 0), "health_up(NULL) is false");
	health_get(NULL, 0, &st);
	tap_ok(st.rounds == 0 && st.rtt_ms_last < 0, "health_get(NULL) zeroes");
	errno = 0;
	tap_ok(health_create(NULL, NULL, NULL, NULL) == NULL && errno == EINVAL,
	    "health_create without loop or config: EINVAL");
}

int
main(void)
{
	struct ev_loop *loop;

	log_init("test_health", 1, 0);
	loop = ev_create();
	test_fsm();
	test_combine();
	test_rounds(loop);
	test_match(loop);
	test_netlink(loop);
	test_api_null();
	ev_destroy(loop);
	return tap_done();
}
