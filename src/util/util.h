/*
 * util.h - small helpers shared by every module: half/bfloat conversions,
 * checked arithmetic, a monotonic clock and a few allocation helpers.
 * Everything here is header-only and side-effect free, except vt_hash64
 * (hash.c).
 */
#ifndef VT_UTIL_H
#define VT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vitamin.h"

#define VT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define VT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VT_MAX(a, b) ((a) > (b) ? (a) : (b))

typedef uint16_t vt_fp16; /* IEEE binary16 bits */
typedef uint16_t vt_bf16; /* bfloat16 bits */

/* binary16 -> binary32, exact. */
static inline float vt_fp16_to_fp32(vt_fp16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, x;
    if (exp == 0) {
        float f = (float)mant * 0x1p-24f; /* zero or subnormal */
        memcpy(&x, &f, 4);
        x |= sign;
    } else if (exp == 31) {
        x = sign | 0x7f800000u | (mant << 13);
    } else {
        x = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* binary32 -> binary16, round to nearest even (as the F16C instruction does). */
static inline vt_fp16 vt_fp32_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan (keeps nan quiet) */
        return (vt_fp16)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0u));
    if (ax >= 0x477ff000u) /* rounds past 65504 */
        return (vt_fp16)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below 2^-14: subnormal half; let the FPU round */
        float a;
        memcpy(&a, &ax, 4);
        a += 0.5f;
        uint32_t r;
        memcpy(&r, &a, 4);
        return (vt_fp16)(sign | (r - 0x3f000000u));
    }
    ax += 0xc8000fffu + ((ax >> 13) & 1u);
    return (vt_fp16)(sign | (ax >> 13));
}

static inline float vt_bf16_to_fp32(vt_bf16 h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* binary32 -> bfloat16, round to nearest even; nan stays a quiet nan. */
static inline vt_bf16 vt_fp32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (vt_bf16)((x >> 16) | 64u);
    return (vt_bf16)((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}

/* a*b into *out; false on overflow. */
static inline bool vt_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static inline bool vt_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* Seconds on a monotonic clock. */
static inline double vt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Deterministic PRNG (splitmix64 seeding xorshift-style state). */
typedef struct { uint64_t s; } vt_rng;

static inline uint64_t vt_rng_next(vt_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline float vt_rng_uniform(vt_rng *r)
{
    return (float)(vt_rng_next(r) >> 40) * 0x1p-24f;
}

/* Standard normal (Box-Muller; one value per call). */
float vt_rng_normal(vt_rng *r);

/* A growable byte buffer, always NUL-terminated once non-empty. An
 * allocation failure sets oom and makes later adds no-ops, so a caller
 * checks once at the end. Free p with free(). */
typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} vt_buf;

static inline void vt_buf_add(vt_buf *b, const char *s, size_t n)
{
    if (b->oom || !n)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* A fast non-cryptographic 64-bit hash of data[0..n) (hash.c): checksums of
 * files vitamin writes itself, fingerprints. Equal inputs and seeds give
 * equal hashes on every run and machine (little-endian). */
uint64_t vt_hash64(const void *data, size_t n, uint64_t seed);

#endif
