/*
 * rules: the kernel datapath that uplinkd owns (ARCHITECTURE.md "Datapath").
 *
 *  - iptables (mangle, nat): chains named UPLINKD-*, loaded atomically per
 *    table with `iptables-restore --noflush`; the jumps from the built-in
 *    chains are removed before they are added, so a restart or a start
 *    after a crash never duplicates them.
 *  - nft: table `ip uplinkd`, the leak guard after NAT (postrouting,
 *    priority 200) that drops anything leaving towards a provider with an
 *    internal source.  Replaced atomically in one `nft -f` transaction.
 *  - policy routing: one `ip rule fwmark MARK/MASK lookup TABLE` and one
 *    table with a default route per provider, through `ip -batch`.
 *
 * The text of all three is rendered from the config alone (plus which
 * providers are usable, for the kernel fallback mark), so `uplinkd
 * --print-rules` shows exactly what start installs, and rules_check() can
 * tell whether it is all still there.
 *
 * Functions that run commands return 0, or -1 with a message in err naming
 * the command and quoting what it printed.
 */
#ifndef UPLINKD_RULES_H
#define UPLINKD_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

/* Chain and table names, also used by tests. */
#define RULES_CHAIN_PRE "UPLINKD-PRE"
#define RULES_CHAIN_NATPRE "UPLINKD-NATPRE"
#define RULES_CHAIN_FALLBACK "UPLINKD-FALLBACK"
#define RULES_CHAIN_POST "UPLINKD-POST"
#define RULES_NFT_TABLE "uplinkd"
#define RULES_NFT_LEAK_COUNTER "leaked"	/* the leak guard's drops */
#define RULES_PREF_BASE 10000	/* ip rule priority of provider 0 */
/* Most HMARK buckets the fallback uses; weights are scaled down to fit. */
#define RULES_MAX_BUCKETS 64

/* Rendered texts, malloc'ed; NULL with errno ENOMEM.  `usable` has one
 * entry per provider (NULL: all usable). */
char *rules_render_iptables(const struct config *cfg, const bool *usable);
char *rules_render_fallback(const struct config *cfg, const bool *usable);
char *rules_render_nft(const struct config *cfg);
char *rules_render_routes(const struct config *cfg);

/* Writes all three texts with headers saying which tool consumes them. */
int rules_print(const struct config *cfg, FILE *out);

/*
 * Installs routes, nft and iptables rules over whatever is there: our
 * chains are flushed and refilled in one transaction per table, jumps that
 * exist are kept, so neither a restart nor a reload leaves a moment
 * without rules, and nothing is ever duplicated.
 */
int rules_install(const struct config *cfg, const bool *usable, char *err,
    size_t errlen);
/* Rewrites only the fallback chain (atomic). */
int rules_set_fallback(const struct config *cfg, const bool *usable, char *err,
    size_t errlen);
/* Re-adds a provider's default route (after its link came back). */
int rules_route_provider(const struct config *cfg, size_t provider, char *err,
    size_t errlen);
/* After a reload: removes the policy rules and routing tables `old` had
 * that `cur` does not use. */
void rules_remove_stale(const struct config *old, const struct config *cur);
/* Removes everything uplinkd installs; best effort, -1 if anything failed
 * that existed. */
int rules_remove(const struct config *cfg, char *err, size_t errlen);
/* Packets the leak guard dropped since its table was installed; -1 with
 * errno (ENOENT: the table is not there) when it cannot be read. */
int rules_leak_guard_dropped(uint64_t *packets);
/*
 * Whether what rules_install() put in place is still there: in each of
 * our iptables chains and in the leak guard's chain as many rules as it
 * installed, and the jumps to them from the built-in chains; each
 * provider's policy rule, and the default route in its table while its
 * interface is up and link_up (NULL: all) says so too: the caller's view
 * of the link, which lags the kernel's, is the one that re-adds routes
 * after the kernel deleted them with the link.  Read over nfnetlink and
 * rtnetlink, so it sees iptables rules where iptables is iptables-nft
 * (Debian's default); with iptables-legacy they look absent.  Returns 0
 * when all is there, 1 with what is missing in `what`, -1 with errno when
 * it cannot look.
 */
int rules_check(const struct config *cfg, const bool *usable, const bool *link_up, char *what,
    size_t len);

/*
 * Fallback buckets: providers' weights reduced (gcd, then scaled so the sum
 * fits RULES_MAX_BUCKETS, each usable provider keeping at least one).
 * Fills bucket_provider[] and returns the number of buckets, 0 when no
 * provider is usable.
 */
size_t rules_fallback_buckets(const struct config *cfg, const bool *usable,
    size_t bucket_provider[RULES_MAX_BUCKETS]);

#endif
