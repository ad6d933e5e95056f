/*
 * hash.c - vt_hash64 (util.h): a fast non-cryptographic 64-bit hash of a
 * byte string, for checksums of files this program writes itself (the KV
 * drawer) and for fingerprints (a model's identity). Four independent lanes
 * of multiply-rotate over 32-byte stripes (several GB/s on one core), the
 * tail folded in 8 bytes at a time, then a SplitMix64-style finalizer over
 * the lanes and the length. Not for adversarial inputs: nobody chooses these
 * bytes to collide.
 */
#include "util/util.h"

#define P1 UINT64_C(0x9e3779b185ebca87)
#define P2 UINT64_C(0xc2b2ae3d27d4eb4f)
#define P3 UINT64_C(0x165667b19e3779f9)

static inline uint64_t rotl64(uint64_t x, int r)
{
    return x << r | x >> (64 - r);
}

static inline uint64_t lane(uint64_t acc, uint64_t w)
{
    return rotl64(acc + w * P2, 31) * P1;
}

static inline uint64_t fin(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

uint64_t vt_hash64(const void *data, size_t n, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t a = seed + P1 + P2, b = seed + P2, c = seed, d = seed - P1;
    size_t len = n;
    for (; n >= 32; p += 32, n -= 32) {
        uint64_t w[4];
        memcpy(w, p, 32);
        a = lane(a, w[0]);
        b = lane(b, w[1]);
        c = lane(c, w[2]);
        d = lane(d, w[3]);
    }
    uint64_t h = rotl64(a, 1) + rotl64(b, 7) + rotl64(c, 12) + rotl64(d, 18);
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = rotl64(h ^ lane(0, w), 27) * P1 + P3;
    }
    if (n > 0) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = rotl64(h ^ lane(0, w ^ (uint64_t)n << 56), 23) * P2 + P3;
    }
    return fin(h ^ (uint64_t)len);
}
