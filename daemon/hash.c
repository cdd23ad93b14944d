#include <endian.h>
#include <string.h>

#include "hash.h"

#define HASH_K1 0xa0761d6478bd642fULL
#define HASH_K2 0xe7037ed1a0b428dbULL
#define HASH_K3 0x8ebc6af09c88c6e3ULL

/* Little-endian load of up to 8 bytes, so big-endian hosts agree. */
static uint64_t
hash_load(const uint8_t *p, size_t n)
{
	uint64_t w = 0;
	size_t i;

	if (n == 8) {
		memcpy(&w, p, 8);
		return le64toh(w);
	}
	for (i = 0; i < n; i++)
		w |= (uint64_t)p[i] << (8 * i);
	return w;
}

uint64_t
hash64_mix(uint64_t x)
{
	/* xorshift-multiply rounds: each step is invertible, so distinct
	 * inputs stay distinct, and every input bit reaches every output bit. */
	x ^= x >> 31;
	x *= HASH_K1;
	x ^= x >> 29;
	x *= HASH_K2;
	x ^= x >> 32;
	return x;
}

uint64_t
hash64(const void *data, size_t len, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = hash64_mix(seed ^ HASH_K3);
	size_t left = len;

	/* Every word goes through a full mix with the running state: slower
	 * than a multiply-accumulate, but keys here are short (<= 40 bytes)
	 * and the low bits, which index tables, must be as good as the high. */
	while (left >= 8) {
		h = hash64_mix(h ^ hash_load(p, 8)) + HASH_K3;
		p += 8;
		left -= 8;
	}
	if (left > 0)
		h = hash64_mix(h ^ hash_load(p, left)) + HASH_K3;
	return hash64_mix(h ^ ((uint64_t)len * HASH_K1));
}
