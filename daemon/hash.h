/*
 * hash: a stable 64-bit hash of a byte string.
 *
 * "Stable" is the point: the result depends only on the bytes, the length
 * and the seed (no per-process random key, no host byte order), because
 * both nodes of a pair must agree on it (flow keys, Maglev tables).  It is
 * not meant to resist hash flooding by a chosen-input attacker.
 */
#ifndef UPLINKD_HASH_H
#define UPLINKD_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash64(const void *data, size_t len, uint64_t seed);
/* The finaliser alone: a bijective mix of one 64-bit word. */
uint64_t hash64_mix(uint64_t x);

#endif
