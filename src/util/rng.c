/*
 * rng.c - the normal distribution for vt_rng (the uniform generator is inline
 * in util.h). Deterministic across platforms for a given seed.
 */
#include <math.h>

#include "util.h"

float vt_rng_normal(vt_rng *r)
{
    float u1 = vt_rng_uniform(r), u2 = vt_rng_uniform(r);
    if (u1 < 1e-7f)
        u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}
