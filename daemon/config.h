/*
 * config: the YAML configuration (libyaml) parsed into a validated struct.
 *
 * The struct is plain data: once config_load() returns it, nothing in it
 * changes.  A reload parses a fresh one and swaps it in only when it is
 * valid, so a bad file never disturbs the running daemon.  The schema and
 * its keys are fixed by ARCHITECTURE.md; every error names
 * file:line:column, the key and the problem, quoting the bad value.
 */
#ifndef UPLINKD_CONFIG_H
#define UPLINKD_CONFIG_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "netaddr.h"

#define CFG_NAME_MAX 32		/* node and provider names, incl. NUL */
#define CFG_MAX_PROVIDERS 16
#define CFG_MAX_TARGETS 8
#define CFG_MAX_NETWORKS 64
#define CFG_ERR_MAX 512

enum cfg_algorithm {
	CFG_ALG_WRR,
	CFG_ALG_WLC,
	CFG_ALG_SOURCE_HASH,
	CFG_ALG_MAGLEV,
};

struct cfg_health {
	struct netaddr targets[CFG_MAX_TARGETS];	/* default: the gateway */
	size_t ntargets;
	unsigned require;		/* 1..ntargets, default 1 */
	uint32_t interval_ms;		/* default 1000 */
	uint32_t timeout_ms;		/* default 500, must be <= interval */
	unsigned fall;			/* default 3 */
	unsigned rise;			/* default 2 */
};

struct cfg_provider {
	char name[CFG_NAME_MAX];
	char interface[IF_NAMESIZE];
	struct netaddr gateway;
	struct netaddr source;		/* SNAT address */
	unsigned weight;		/* 1..1000, default 1 */
	uint32_t mark;			/* default 0x100 * (index + 1) */
	uint32_t table;			/* default 100 + index */
	struct cfg_health health;
};

struct cfg_tls {
	char *ca;
	char *cert;
	char *key;
	char peer_name[CFG_NAME_MAX];
};

struct config {
	char *path;			/* the file it came from */
	char node[CFG_NAME_MAX];
	struct {
		char interface[IF_NAMESIZE];
		struct netprefix networks[CFG_MAX_NETWORKS];
		size_t nnetworks;
	} lan;
	struct {
		unsigned first;		/* 0..65535 */
		unsigned count;		/* 1..64, first + count <= 65536 */
	} queue;
	struct cfg_provider providers[CFG_MAX_PROVIDERS];
	size_t nproviders;		/* >= 2 */
	struct {
		enum cfg_algorithm algorithm;	/* default wrr */
		uint32_t sticky_ms;		/* 0 = off */
	} balance;
	bool has_sync;
	struct {
		struct netendpoint listen;
		struct netendpoint peer;
		struct cfg_tls tls;
	} sync;
	struct {
		char *socket;		/* default /run/uplinkd/uplinkd.sock */
	} control;
	/* Derived: the contiguous bit range covering every provider mark.  The
	 * daemon's rules only ever look at these bits of the packet and
	 * connection marks. */
	uint32_t mark_mask;
};

/*
 * Parses and validates `path`.  Returns an owned config, or NULL with the
 * first problem written to err ("file:line:column: key: problem") and errno
 * set (EINVAL for content, or the errno of a failed open/read).
 */
struct config *config_load(const char *path, char *err, size_t errlen);
/* The same, from a buffer; `name` stands for the file in messages. */
struct config *config_parse(const char *name, const char *text, size_t len,
    char *err, size_t errlen);
void config_free(struct config *cfg);

/* Writes the effective config (defaults filled in) as YAML that
 * config_parse() reads back to an equal config.  Returns 0 or -1/errno. */
int config_print(const struct config *cfg, FILE *out);
/* True when both describe the same configuration (path ignored). */
bool config_equal(const struct config *a, const struct config *b);
/* Node name and sync section equal (the sync channel can stay up). */
bool config_sync_equal(const struct config *a, const struct config *b);

const char *config_algorithm_name(enum cfg_algorithm alg);
/* Parses "500ms", "3s", "10m", "1h" (a bare number is an error).  Returns 0
 * or -1 with errno EINVAL/ERANGE. */
int config_parse_duration(const char *s, uint32_t *ms);
/* Index of the provider with this name, or -1. */
int config_provider_index(const struct config *cfg, const char *name);
/* Whether new connections may be given provider i: uplinkd queues and
 * translates IPv4 connections only (rules.c), so an IPv6 provider has
 * its health checked and its routes kept but carries none of them. */
bool config_provider_balanced(const struct config *cfg, size_t i);

#endif
