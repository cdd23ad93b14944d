#include <stdlib.h>
#include <string.h>

#include "rules.h"
#include "tap.h"

static void
provider(struct config *cfg, size_t i, const char *name, const char *ifname,
    const char *gw, const char *src, unsigned weight)
{
	struct cfg_provider *p = &cfg->providers[i];

	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->interface, sizeof(p->interface), "%s", ifname);
	netaddr_parse(gw, &p->gateway);
	netaddr_parse(src, &p->source);
	p->weight = weight;
	p->mark = 0x100 * (unsigned)(i + 1);
	p->table = 100 + (unsigned)i;
}

static struct config *
make_config(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	snprintf(cfg->node, sizeof(cfg->node), "gw1");
	snprintf(cfg->lan.interface, sizeof(cfg->lan.interface), "lan0");
	netprefix_parse("10.0.0.0/24", &cfg->lan.networks[0]);
	cfg->lan.nnetworks = 1;
	cfg->queue.count = 1;
	provider(cfg, 0, "isp-a", "wan0", "198.51.100.1", "198.51.100.10", 2);
	provider(cfg, 1, "isp-b", "wan1", "203.0.113.1", "203.0.113.10", 1);
	cfg->nproviders = 2;
	cfg->mark_mask = 0x300;
	return cfg;
}

static int
count_lines(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

int
main(void)
{
	struct config *cfg = make_config();
	size_t bucket[RULES_MAX_BUCKETS];
	bool usable[CFG_MAX_PROVIDERS] = { true, true };
	char *ipt, *nft, *routes, *fb;
	size_t n;

	n = rules_fallback_buckets(cfg, NULL, bucket);
	tap_ok(n == 3 && bucket[0] == 0 && bucket[1] == 0 && bucket[2] == 1,
	    "weights 2:1 give three buckets, two for isp-a (%zu)", n);
	usable[0] = false;
	n = rules_fallback_buckets(cfg, usable, bucket);
	tap_ok(n == 1 && bucket[0] == 1, "an unusable provider gets no bucket");
	usable[1] = false;
	n = rules_fallback_buckets(cfg, usable, bucket);
	tap_ok(n == 3, "nothing usable: all providers share the fallback");
	cfg->providers[0].weight = 1000;
	cfg->providers[1].weight = 3;
	n = rules_fallback_buckets(cfg, NULL, bucket);
	tap_ok(n <= RULES_MAX_BUCKETS && bucket[n - 1] == 1,
	    "large weights are scaled into %d buckets, small ones keep one (%zu)",
	    RULES_MAX_BUCKETS, n);
	cfg->providers[0].weight = 4;
	cfg->providers[1].weight = 6;
	n = rules_fallback_buckets(cfg, NULL, bucket);
	tap_ok(n == 5, "weights reduced by their gcd (%zu)", n);
	cfg->providers[0].weight = 2;
	cfg->providers[1].weight = 1;
	/* An IPv6 provider has no IPv4 SNAT: the fallback never marks for it. */
	provider(cfg, 2, "v6-c", "wan2", "2001:db8::1", "2001:db8::10", 5);
	cfg->nproviders = 3;
	n = rules_fallback_buckets(cfg, NULL, bucket);
	tap_ok(n == 3 && bucket[0] == 0 && bucket[1] == 0 && bucket[2] == 1,
	    "an IPv6 provider gets no fallback bucket (%zu)", n);
	usable[0] = usable[1] = false;
	usable[2] = true;
	n = rules_fallback_buckets(cfg, usable, bucket);
	tap_ok(n == 3 && bucket[2] == 1, "... not even when it is the only one usable");
	{
		char *routes6 = rules_render_routes(cfg);

		/* ip -batch refuses a line that starts with "-6": the family
		 * comes from the gateway. */
		tap_ok(routes6 && strstr(routes6, "route replace default via 2001:db8::1 dev wan2 "
		    "table 102\n") != NULL && strstr(routes6, "-6") == NULL,
		    "an IPv6 provider's default route is a plain batch line");
		free(routes6);
	}
	cfg->nproviders = 2;

	ipt = rules_render_iptables(cfg, NULL);
	tap_ok(ipt != NULL, "iptables rules render");
	tap_ok(strstr(ipt, "-A UPLINKD-PRE -i lan0 -m connmark ! --mark 0/0x300 -j CONNMARK "
	    "--restore-mark --nfmask 0x300 --ctmask 0x300\n") != NULL,
	    "connmark restored on LAN ingress only");
	tap_ok(strstr(ipt, "-A UPLINKD-PRE -s 10.0.0.0/24 -m conntrack --ctstate NEW -j NFQUEUE "
	    "--queue-num 0 --queue-bypass\n") != NULL, "new LAN connections are queued with bypass");
	tap_ok(strstr(ipt, "-A UPLINKD-PRE -m conntrack ! --ctstate NEW -j RETURN\n") != NULL &&
	    strstr(ipt, "! --ctstate NEW") < strstr(ipt, "-i wan0 -d 198.51.100.10 -p tcp ! --syn -j DROP"),
	    "packets of known connections leave the chain before the provider-side rules");
	tap_ok(strstr(ipt, "-A UPLINKD-NATPRE -i lan0 -m mark ! --mark 0/0x300 -j CONNMARK "
	    "--save-mark --nfmask 0x300 --ctmask 0x300\n") != NULL &&
	    strstr(ipt, "-j CONNMARK --save-mark") > strstr(ipt, "-j UPLINKD-FALLBACK\n"),
	    "mark saved in nat PREROUTING, after the fallback");
	tap_ok(strstr(ipt, "-A UPLINKD-POST -o wan0 -m connmark --mark 0x100/0x300 -j SNAT "
	    "--to-source 198.51.100.10\n") != NULL, "SNAT per provider mark");
	tap_ok(count_lines(ipt, "-j MARK --set-mark") == 3, "fallback maps three buckets");
	tap_ok(count_lines(ipt, "-I PREROUTING 1") == 2 && count_lines(ipt, "-I POSTROUTING 1") == 1 &&
	    count_lines(ipt, "FORWARD") == 0, "one jump per built-in chain, none in FORWARD");
	tap_ok(count_lines(ipt, "COMMIT\n") == 2, "two tables, each committed");
	cfg->queue.first = 4;
	cfg->queue.count = 2;
	free(ipt);
	ipt = rules_render_iptables(cfg, NULL);
	tap_ok(strstr(ipt, "--queue-balance 4:5 --queue-bypass") != NULL, "several queues balanced");
	free(ipt);

	nft = rules_render_nft(cfg);
	tap_ok(nft && strstr(nft, "hook postrouting priority 200") != NULL,
	    "leak guard runs after NAT");
	tap_ok(nft && strstr(nft, "ip saddr { 10.0.0.0/24 } oifname { \"wan0\", \"wan1\" } "
	    "counter name \"leaked\" drop") != NULL && strstr(nft, "\tcounter leaked { }\n")
	    != NULL, "leak guard drops internal sources towards providers");
	tap_ok(nft && strncmp(nft, "table ip uplinkd\ndelete table ip uplinkd\n", 40) == 0,
	    "nft table replaced in one transaction");
	free(nft);

	routes = rules_render_routes(cfg);
	tap_ok(routes && strstr(routes, "rule add pref 10000 fwmark 0x100/0x300 lookup 100\n"),
	    "policy rule per provider");
	tap_ok(routes && strstr(routes, "route replace default via 203.0.113.1 dev wan1 table 101\n"),
	    "default route per provider table");
	free(routes);

	usable[0] = false;
	usable[1] = true;
	fb = rules_render_fallback(cfg, usable);
	tap_ok(fb && strncmp(fb, "*nat\n:UPLINKD-FALLBACK - [0:0]\n", 31) == 0 &&
	    count_lines(fb, "--set-mark 0x200") == 1 && count_lines(fb, "--set-mark 0x100") == 0,
	    "fallback chain alone follows usability");
	free(fb);
	free(cfg);
	return tap_done();
}
