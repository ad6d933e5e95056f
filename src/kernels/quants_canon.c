/*
 * quants_canon.c - the AMX level's numerics, in scalar C: the reference the
 * AMX kernels (amx.c) are tested against bit for bit.
 *
 * AMX multiplies int8 tiles and gives exact int32 sums of whole blocks; the
 * float work that follows can only be per block. So at the AMX level every
 * kernel of a type (vec_dot, vec_dot_rows, gemm, the AMX tiles) computes one
 * dot product the same way, defined here: the integer sum of each block is
 * exact, and the float accumulation runs block by block, in order, with one
 * fused multiply-add per term. Any arrangement of the integer work and any
 * grouping of rows or tokens then gives the same bits, which is what lets a
 * batched step (AMX tiles) equal the same request decoded alone (one row of
 * weights against one token, AVX-512).
 *
 * Q8_0 x Q8_0: eight chains, block b going to chain b % 8:
 *   acc[b % 8] = fma(dw * da, (float)sum_i w_i a_i, acc[b % 8]) per block of 32,
 *   the result ((acc0 + acc1) + (acc2 + acc3)) + ((acc4 + acc5) + (acc6 + acc7))
 * (so that decode sums eight blocks' integers in one vector and needs one
 * fused multiply-add per eight blocks).
 * Q4_K x Q8_K, per super-block of 256 (d, dmin from the weights, da from the
 * activations):
 *   isum = sum_j sc_j * sum_{i in j} q_i a_i     (eight sub-blocks of 32)
 *   msum = sum_j m_j * (bsums[2j] + bsums[2j+1])
 *   acc = fma(d * da, (float)isum, acc); acc = fma(-(dmin * da), (float)msum, acc)
 * in eight chains as for Q8_0 (super-block b in chain b % 8), added up the
 * same way.
 * Both are llama.cpp's formulas; only the order of float additions differs
 * from its kernels (within the parity tolerance, tests/test_kernels.c).
 */
#include <math.h>

#include "kernels/quants.h"
#include "util/util.h"

float kn_canon_dot_q8_0(int64_t n, const void *w, const void *a)
{
    const block_q8_0 *x = w, *y = a;
    float acc[8] = {0};
    for (int64_t b = 0; b < n / 32; b++) {
        int32_t s = 0;
        for (int i = 0; i < 32; i++)
            s += x[b].qs[i] * y[b].qs[i];
        float d = vt_fp16_to_fp32(x[b].d) * vt_fp16_to_fp32(y[b].d);
        acc[b % 8] = fmaf(d, (float)s, acc[b % 8]);
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

float kn_canon_dot_q4_K(int64_t n, const void *w, const void *a)
{
    const block_q4_K *x = w;
    const block_q8_K *y = a;
    float acc[8] = {0};
    for (int64_t b = 0; b < n / 256; b++) {
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            kn_k4_scale_min(j, x[b].scales, &sc, &m);
            const uint8_t *q = x[b].qs + 32 * (j / 2);
            int32_t s = 0;
            for (int i = 0; i < 32; i++)
                s += ((j & 1) ? q[i] >> 4 : q[i] & 15) * y[b].qs[32 * j + i];
            isum += sc * s;
            msum += m * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
        }
        float d = vt_fp16_to_fp32(x[b].d) * y[b].d;
        float dm = vt_fp16_to_fp32(x[b].dmin) * y[b].d;
        acc[b % 8] = fmaf(d, (float)isum, acc[b % 8]);
        acc[b % 8] = fmaf(-dm, (float)msum, acc[b % 8]);
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Q6_K x Q8_K, per super-block (d from the weights, da from the
 * activations; q_i = 6-bit value - 32, sixteen sub-blocks of 16 with int8
 * scales): isum = sum_j sc_j * sum_{i in j} q_i a_i,
 * acc[b % 8] = fma(d * da, (float)isum, acc[b % 8]), added up as for Q8_0. */
float kn_canon_dot_q6_K(int64_t n, const void *w, const void *a)
{
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    float acc[8] = {0};
    for (int64_t b = 0; b < n / 256; b++) {
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t s = 0;
            for (int i = 0; i < 16; i++) {
                int e = 16 * j + i, h = e / 128, r = e % 128, g = r / 32, l = r % 32;
                uint8_t lb = x[b].ql[64 * h + l + (g & 1) * 32];
                int u = (g < 2 ? lb & 15 : lb >> 4) | ((x[b].qh[32 * h + l] >> (2 * g)) & 3) << 4;
                s += (u - 32) * y[b].qs[e];
            }
            isum += x[b].scales[j] * s;
        }
        float d = vt_fp16_to_fp32(x[b].d) * y[b].d;
        acc[b % 8] = fmaf(d, (float)isum, acc[b % 8]);
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
