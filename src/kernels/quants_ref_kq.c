/*
 * quants_ref_kq.c - reference weight quantizers for the K super-block types
 * (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K). They follow the method of ggml's reference
 * quantizers (what llama-quantize uses without an importance matrix): each
 * 16- or 32-element sub-block gets its own scale (and min) from a small
 * weighted least-squares search over candidate grids, then the sub-block
 * scales are themselves quantized against one fp16 super-block scale, and
 * finally every value is re-rounded against the scale it will actually be
 * decoded with. Deterministic, and byte for byte what ggml's reference
 * quantizers give (the float expressions are evaluated in the same order);
 * layouts are described in quants.h.
 */
#include <math.h>

#include "kernels/quants.h"
#include "util/util.h"

#define EPS_GROUP 1e-15f

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static inline float h2f(uint16_t h)
{
    return vt_fp16_to_fp32(h);
}

/*
 * Affine fit x ~ scale*L - mn with L in [0, nmax] and mn >= 0 (the grid
 * always covers 0 so that small values stay representable). Starts from the
 * plain min/max grid, then tries nstep+1 stretched grids (nmax + rmin +
 * rdelta*k levels across the range); for each it solves the weighted least-
 * squares scale and offset for the rounded levels and keeps the one with
 * the smallest weighted error (absolute or squared). A grid starts at the
 * offset of the best fit so far (so it moves once a fit beats the plain
 * grid), as ggml's does. Products are evaluated as (w*l)*l, (w*l)*x and
 * w*(e*e), which decides near-ties the way ggml does. Returns scale, *mn.
 */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *mn, float rmin, float rdelta, int nstep, int use_abs)
{
    float lo = x[0], hi = x[0], sw = 0, swx = 0;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        sw += w[i];
        swx += w[i] * x[i];
    }
    if (lo > 0)
        lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *mn = -lo;
        return 0;
    }
    float inv = (float)nmax / (hi - lo), scale = 1 / inv, off = lo;
    float best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(kn_nearest_int(inv * (x[i] - lo)), 0, nmax);
        float e = scale * L[i] + lo - x[i];
        best += w[i] * (use_abs ? fabsf(e) : e * e);
    }
    uint8_t cand[32];
    for (int k = 0; k <= nstep; k++) {
        float ci = (rmin + rdelta * (float)k + (float)nmax) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(kn_nearest_int(ci * (x[i] - lo)), 0, nmax);
            cand[i] = (uint8_t)l;
            sl += w[i] * (float)l;
            sl2 += w[i] * (float)l * (float)l;
            sxl += w[i] * (float)l * x[i];
        }
        float det = sw * sl2 - sl * sl;
        if (!(det > 0))
            continue;
        float s = (sw * sxl - swx * sl) / det;
        float o = (sl2 * swx - sl * sxl) / det;
        if (o > 0) { /* the offset must stay <= 0: refit the scale alone */
            o = 0;
            s = sxl / sl2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float e = s * cand[i] + o - x[i];
            err += w[i] * (use_abs ? fabsf(e) : e * e);
        }
        if (err < best) {
            best = err;
            memcpy(L, cand, (size_t)n);
            scale = s;
            off = lo = o; /* later grids start from the new offset */
        }
    }
    *mn = -off;
    return scale;
}

/*
 * Symmetric fit x ~ scale*(L - nmax), L in [0, 2*nmax), weighting each value
 * by x^2: the grid is anchored on the value of largest magnitude (mapped to
 * -nmax) and 19 slightly stretched or shrunk anchors are tried; each gets the
 * least-squares scale for its rounded levels, the best fit wins. The scale
 * is signed.
 */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < EPS_GROUP) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float best_scale = 0, best = -1;
    for (int k = 0; k <= 18; k++) {
        /* k == 0 is the plain grid; then -9..-1, 1..9 tenths of a level */
        int t = k == 0 ? 0 : k <= 9 ? k - 10 : k - 9;
        float inv = -((float)nmax + 0.1f * (float)t) / max;
        float sxl = 0, sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(kn_nearest_int(inv * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sxl += w * x[i] * (float)l;
            sl2 += w * (float)l * (float)l;
        }
        if (!(sl2 > 0))
            continue;
        /* the fit is better when sxl^2/sl2 (explained energy) is larger */
        if (best < 0 || sxl * sxl > best * sl2) {
            best_scale = sxl / sl2;
            best = best_scale * sxl;
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(clampi(kn_nearest_int(inv * x[i]), -nmax, nmax - 1) + nmax);
        }
    }
    if (best < 0) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    return best_scale;
}

/*
 * Symmetric fit for 3-bit values (L in [-nmax, nmax), returned offset by
 * +nmax): start from the max-anchored grid, then up to 5 rounds of
 * coordinate descent, moving single values to the level that maximizes the
 * explained weighted energy (weights x^2) with the scale refitted.
 */
static float fit_q3(int n, int nmax, const float *x, int8_t *L)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < EPS_GROUP) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float inv = -(float)nmax / max, sxl = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(kn_nearest_int(inv * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sxl += w * x[i] * (float)l;
        sl2 += w * (float)l * (float)l;
    }
    for (int round = 0; round < 5; round++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float rx = sxl - w * x[i] * (float)L[i];
            if (!(rx > 0))
                continue;
            float r2 = sl2 - w * (float)L[i] * (float)L[i];
            int l = clampi(kn_nearest_int(x[i] * r2 / rx), -nmax, nmax - 1);
            if (l == L[i])
                continue;
            float nx = rx + w * x[i] * (float)l, n2 = r2 + w * (float)l * (float)l;
            if (n2 > 0 && nx * nx * sl2 > sxl * sxl * n2) {
                L[i] = (int8_t)l;
                sxl = nx;
                sl2 = n2;
                changed++;
            }
        }
        if (!changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return sl2 > 0 ? sxl / sl2 : 0;
}

/* Packs four 2-bit planes: qs[32h + l] holds elements 128h + 32k + l. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(p[0] | (p[32] << 2) | (p[64] << 4) | (p[96] << 6));
        }
}

/* ---- Q2_K --------------------------------------------------------------- */

void kn_ref_quantize_q2_K(const float *x, void *y, int64_t n)
{
    block_q2_K *b = y;
    uint8_t L[256];
    float w[16], sc[16], mn[16];
    for (int64_t i = 0; i < n / KN_QK_K; i++, x += KN_QK_K) {
        float max_sc = 0, max_mn = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++)
                w[l] = fabsf(x[16 * j + l]);
            sc[j] = fit_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mn[j], -0.5f, 0.1f, 15, 1);
            max_sc = fmaxf(max_sc, sc[j]);
            max_mn = fmaxf(max_mn, mn[j]);
        }
        memset(b[i].scales, 0, 16);
        b[i].d = vt_fp32_to_fp16(max_sc > 0 ? max_sc / 15 : 0);
        b[i].dmin = vt_fp32_to_fp16(max_mn > 0 ? max_mn / 15 : 0);
        for (int j = 0; j < 16; j++) {
            int ls = max_sc > 0 ? clampi(kn_nearest_int(15 / max_sc * sc[j]), 0, 15) : 0;
            int lm = max_mn > 0 ? clampi(kn_nearest_int(15 / max_mn * mn[j]), 0, 15) : 0;
            b[i].scales[j] = (uint8_t)(ls | (lm << 4));
        }
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)(b[i].scales[j] & 0xF);
            if (dl == 0)
                continue; /* keeps the levels of the fit */
            float ml = dmin * (float)(b[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)clampi(kn_nearest_int((x[16 * j + l] + ml) / dl), 0, 3);
        }
        pack_2bit(L, b[i].qs);
    }
}

/* ---- Q3_K --------------------------------------------------------------- */

void kn_ref_quantize_q3_K(const float *x, void *y, int64_t n)
{
    block_q3_K *b = y;
    int8_t L[256], scq[16];
    float sc[16];
    for (int64_t i = 0; i < n / KN_QK_K; i++, x += KN_QK_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = fit_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(sc[j]) > amax) {
                amax = fabsf(sc[j]);
                max = sc[j];
            }
        }
        memset(b[i].scales, 0, 12);
        if (max != 0) {
            float inv = -32.f / max;
            for (int j = 0; j < 16; j++) {
                int l = clampi(kn_nearest_int(inv * sc[j]), -32, 31) + 32;
                if (j < 8)
                    b[i].scales[j] = (uint8_t)(l & 0xF);
                else
                    b[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                b[i].scales[8 + (j & 3)] |= (uint8_t)((l >> 4) << (2 * (j >> 2)));
            }
            b[i].d = vt_fp32_to_fp16(1 / inv);
        } else {
            b[i].d = 0;
        }
        kn_q3k_scales(b[i].scales, scq);
        float d = h2f(b[i].d);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)scq[j];
            if (dl == 0)
                continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clampi(kn_nearest_int(x[16 * j + l] / dl), -4, 3) + 4);
        }
        uint8_t low[256];
        memset(b[i].hmask, 0, 32);
        for (int e = 0; e < 256; e++) {
            int v = L[e];
            if (v > 3) {
                b[i].hmask[e % 32] |= (uint8_t)(1u << (e / 32));
                v -= 4;
            }
            low[e] = (uint8_t)v;
        }
        pack_2bit(low, b[i].qs);
    }
}

/* ---- Q4_K / Q5_K -------------------------------------------------------- */

/* Fits 8 sub-blocks of 32 with levels 0..nmax, stores d, dmin and the packed
 * 6-bit scales/mins, and leaves the final levels in L. */
static void quantize_k4(const float *x, int nmax, float rmin, int nstep, uint16_t *d16,
                        uint16_t *dmin16, uint8_t *scales, uint8_t *L)
{
    float w[32], sc[8], mn[8], max_sc = 0, max_mn = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float s2 = 0;
        for (int l = 0; l < 32; l++)
            s2 += xs[l] * xs[l];
        float av = sqrtf(s2 / 32);
        for (int l = 0; l < 32; l++)
            w[l] = av + fabsf(xs[l]);
        sc[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mn[j], rmin, 0.1f, nstep, 0);
        max_sc = fmaxf(max_sc, sc[j]);
        max_mn = fmaxf(max_mn, mn[j]);
    }
    float inv_sc = max_sc > 0 ? 63.f / max_sc : 0, inv_mn = max_mn > 0 ? 63.f / max_mn : 0;
    memset(scales, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = clampi(kn_nearest_int(inv_sc * sc[j]), 0, 63);
        int lm = clampi(kn_nearest_int(inv_mn * mn[j]), 0, 63);
        if (j < 4) {
            scales[j] = (uint8_t)ls;
            scales[j + 4] = (uint8_t)lm;
        } else {
            scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d16 = vt_fp32_to_fp16(max_sc / 63.f);
    *dmin16 = vt_fp32_to_fp16(max_mn / 63.f);
    float d = h2f(*d16), dmin = h2f(*dmin16);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        kn_k4_scale_min(j, scales, &s, &m);
        float dl = d * (float)s;
        if (dl == 0)
            continue;
        float ml = dmin * (float)m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(kn_nearest_int((x[32 * j + l] + ml) / dl), 0, nmax);
    }
}

void kn_ref_quantize_q4_K(const float *x, void *y, int64_t n)
{
    block_q4_K *b = y;
    uint8_t L[256];
    for (int64_t i = 0; i < n / KN_QK_K; i++, x += KN_QK_K) {
        quantize_k4(x, 15, -1.f, 20, &b[i].d, &b[i].dmin, b[i].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void kn_ref_quantize_q5_K(const float *x, void *y, int64_t n)
{
    block_q5_K *b = y;
    uint8_t L[256];
    for (int64_t i = 0; i < n / KN_QK_K; i++, x += KN_QK_K) {
        quantize_k4(x, 31, -0.5f, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
        memset(b[i].qh, 0, 32);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                b[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
                b[i].qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            }
    }
}

/* ---- Q6_K --------------------------------------------------------------- */

void kn_ref_quantize_q6_K(const float *x, void *y, int64_t n)
{
    block_q6_K *b = y;
    int8_t L[256];
    float sc[16];
    for (int64_t i = 0; i < n / KN_QK_K; i++, x += KN_QK_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(sc[j]) > amax) {
                amax = fabsf(sc[j]);
                max = sc[j];
            }
        }
        if (amax < EPS_GROUP) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float inv = -128.f / max;
        b[i].d = vt_fp32_to_fp16(1 / inv);
        for (int j = 0; j < 16; j++)
            b[i].scales[j] = (int8_t)clampi(kn_nearest_int(inv * sc[j]), -128, 127);
        float d = h2f(b[i].d);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)b[i].scales[j];
            if (dl == 0)
                continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clampi(kn_nearest_int(x[16 * j + l] / dl), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int8_t *p = L + 128 * h + l;
                b[i].ql[64 * h + l] = (uint8_t)((p[0] & 0xF) | ((p[64] & 0xF) << 4));
                b[i].ql[64 * h + 32 + l] = (uint8_t)((p[32] & 0xF) | ((p[96] & 0xF) << 4));
                b[i].qh[32 * h + l] = (uint8_t)((p[0] >> 4) | ((p[32] >> 4) << 2) |
                                                ((p[64] >> 4) << 4) | ((p[96] >> 4) << 6));
            }
    }
}
