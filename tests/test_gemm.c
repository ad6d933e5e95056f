/*
 * test_gemm.c - the GEMM tiles (traits gemm, kernels/gemm_*.c): at every ISA
 * level the CPU has, for every type with a gemm kernel there, each output of
 * gemm is bit-identical (memcmp) to vec_dot of that row and activation row,
 * over tile shapes with ragged tails of rows and tokens, row lengths with
 * and without leftover blocks, strided activations and outputs; and
 * kn_matmul over batches of 2..70 tokens (the gemm path) equals vec_dot too,
 * with one and two threads. Weights are random values quantized with the
 * reference quantizers, activations random values quantized with the level's
 * from_float.
 *
 * The AMX level (amx.c): for Q8_0, Q4_K and Q6_K every kernel of the level --
 * vec_dot, vec_dot_rows, gemm and the tiles (pack + gemm_packed) -- equals
 * the scalar canonical dot (quants_canon.c) bit for bit, over row counts
 * around the 16-row tiles and token counts around the 16-token groups; and
 * the canonical dot stays within float rounding of the reference vec_dot
 * (llama.cpp's numerics).
 */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "test.h"
#include "util/util.h"

static const vt_type types[] = {VT_TYPE_Q8_0, VT_TYPE_Q4_K, VT_TYPE_Q6_K, VT_TYPE_Q4_0,
                                VT_TYPE_Q5_0, VT_TYPE_Q5_K, VT_TYPE_F16};

static void fill_random(vt_rng *rng, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * ((float)(vt_rng_next(rng) % 20001) / 10000.0f - 1.0f);
}

/* Random weights (rows x cols, type t) and activations (nt x cols, t's
 * dot_type at level tr); the caller frees *w and *a. */
static bool make_data(const kn_traits *tr, vt_type t, int64_t rows, int64_t cols, int nt,
                      vt_rng *rng, char **w, size_t *w_row, char **a, size_t *a_row)
{
    const kn_traits *dt = kn_traits_isa(tr->dot_type, KN_ISA_SCALAR);
    *w_row = vt_row_size(t, cols);
    *a_row = vt_row_size(tr->dot_type, cols);
    float *f = malloc(sizeof(float) * (size_t)(cols * (rows > nt ? rows : nt)));
    *w = malloc(*w_row * (size_t)rows);
    *a = malloc(*a_row * (size_t)nt);
    if (!f || !*w || !*a || !dt || !dt->from_float) {
        free(f);
        return false;
    }
    for (int64_t r = 0; r < rows; r++) {
        fill_random(rng, f, cols, 1.0f + (float)(r % 5));
        if (kn_quantize_ref(t, f, *w + (size_t)r * *w_row, cols) != VT_OK) {
            free(f);
            return false;
        }
    }
    for (int k = 0; k < nt; k++) {
        fill_random(rng, f, cols, 0.5f + (float)(k % 3));
        dt->from_float(f, *a + (size_t)k * *a_row, cols);
    }
    free(f);
    return true;
}

static int levels_with_gemm;

static void test_gemm_bit_identical(void)
{
    const int row_counts[] = {1, 2, 3, 4, 5, 7, 8, 9};
    const int tok_counts[] = {1, 2, 3, 4, 5, 6, 8, 13};
    vt_rng rng = {42};
    for (int isa = 0; isa < KN_ISA_COUNT; isa++) {
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            const kn_traits *tr = kn_traits_isa(types[ti], (kn_isa)isa);
            if (!tr || !tr->gemm)
                continue;
            levels_with_gemm++;
            const int64_t blck = vt_type_get(types[ti])->blck;
            /* lengths with 0..3 blocks past a multiple of four */
            const int64_t lens[] = {blck * (blck == 32 ? 8 : 1), blck * (blck == 32 ? 9 : 2),
                                    blck * (blck == 32 ? 7 : 3), blck * (blck == 32 ? 66 : 8)};
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                const int64_t cols = lens[li];
                char *w = NULL, *a = NULL;
                size_t w_row, a_row;
                CHECK(make_data(tr, types[ti], 9, cols, 13, &rng, &w, &w_row, &a, &a_row));
                if (!w || !a) {
                    free(w);
                    free(a);
                    return;
                }
                int bad = 0;
                for (size_t ri = 0; ri < sizeof row_counts / sizeof row_counts[0]; ri++)
                    for (size_t ki = 0; ki < sizeof tok_counts / sizeof tok_counts[0]; ki++) {
                        const int nr = row_counts[ri], nt = tok_counts[ki];
                        const size_t os = (size_t)nr + 3; /* a strided output */
                        float out[16 * 16], want[16 * 16];
                        memset(out, 0, sizeof out);
                        memset(want, 0, sizeof want);
                        for (int k = 0; k < nt; k++)
                            for (int i = 0; i < nr; i++)
                                want[(size_t)k * os + i] = tr->vec_dot(
                                    cols, w + (size_t)i * w_row, a + (size_t)k * a_row);
                        tr->gemm(cols, w, w_row, nr, a, a_row, nt, out, os);
                        if (memcmp(out, want, sizeof out)) {
                            if (bad++ < 3)
                                test_fail_at(__FILE__, __LINE__,
                                             "%s at level %d: gemm %d x %d over %lld values "
                                             "differs from vec_dot",
                                             vt_type_get(types[ti])->name, isa, nr, nt,
                                             (long long)cols);
                        }
                    }
                free(w);
                free(a);
            }
        }
    }
    /* the kernels of this file must exist where the CPU can run them */
    if (kn_traits_isa(VT_TYPE_Q8_0, KN_ISA_AVX512)) {
        CHECK(kn_traits_isa(VT_TYPE_Q8_0, KN_ISA_AVX512)->gemm != NULL);
    }
}

/* kn_matmul over batches (the gemm path of the active level) against
 * vec_dot, bit for bit. */
static void test_matmul_batches(void)
{
    const int toks[] = {2, 3, 4, 5, 17, 32, 33, 70};
    kn_pool *pool2 = kn_pool_create(2);
    CHECK(pool2 != NULL);
    vt_rng rng = {7};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const vt_type t = types[ti];
        const kn_traits *tr = kn_traits_get(t);
        const kn_traits *dt = tr ? kn_traits_get(tr->dot_type) : NULL;
        if (!tr || !dt)
            continue;
        const int64_t rows = 37, cols = vt_type_get(t)->blck == 32 ? 32 * 11 : 256 * 2;
        const size_t w_row = vt_row_size(t, cols), a_row = vt_row_size(tr->dot_type, cols);
        float *f = malloc(sizeof(float) * (size_t)(cols * 70));
        float *y = malloc(sizeof(float) * (size_t)(rows * 70));
        char *w = malloc(w_row * (size_t)rows), *aq = malloc(a_row);
        CHECK(f && y && w && aq);
        if (!f || !y || !w || !aq) {
            free(f);
            free(y);
            free(w);
            free(aq);
            break;
        }
        for (int64_t r = 0; r < rows; r++) {
            fill_random(&rng, f, cols, 1.0f);
            CHECK(kn_quantize_ref(t, f, w + (size_t)r * w_row, cols) == VT_OK);
        }
        fill_random(&rng, f, cols * 70, 2.0f);
        for (int p = 0; p < 2; p++)
            for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
                const int nt = toks[k];
                memset(y, 0, sizeof(float) * (size_t)(rows * 70));
                CHECK(kn_matmul(p ? pool2 : NULL, t, w, rows, cols, f, nt, y, rows) == VT_OK);
                int bad = 0;
                for (int j = 0; j < nt; j++) {
                    dt->from_float(f + (size_t)j * cols, aq, cols);
                    for (int64_t r = 0; r < rows; r++) {
                        float want = tr->vec_dot(cols, w + (size_t)r * w_row, aq);
                        bad += memcmp(&want, &y[(size_t)j * rows + r], sizeof want) != 0;
                    }
                }
                CHECKF(bad == 0, "%s: kn_matmul with %d tokens (%d threads): %d results differ "
                                 "from vec_dot", vt_type_get(t)->name, nt, p + 1, bad);
            }
        free(f);
        free(y);
        free(w);
        free(aq);
    }
    kn_pool_destroy(pool2);
}

#define NT 150
static void test_amx_canonical(void)
{
    /* Without AMX, an AVX-512 CPU still runs the level's decode GEMV, its
     * vec_dot and its gemm (AVX-512 code): those are checked from the
     * level's table built here, and only the tiles are left out. */
    const bool tiles = kn_traits_isa(VT_TYPE_Q8_0, KN_ISA_AMX) != NULL;
    static kn_traits amx_tab[VT_TYPE_COUNT];
    if (!tiles) {
        if (!kn_traits_isa(VT_TYPE_Q8_0, KN_ISA_AVX512)) {
            test_skip_hw("AVX-512 (F, BW, VL, DQ, VNNI, BF16): the AMX level is not run");
            return;
        }
        for (int t = 0; t < VT_TYPE_COUNT; t++) {
            const kn_traits *l = kn_traits_isa((vt_type)t, KN_ISA_AVX512);
            if (l)
                amx_tab[t] = *l;
        }
        kn_amx_fill(amx_tab);
        /* the packed GEMM where the AVX-512 level has one with these
         * numerics (Q4_K's VNNI kernel), never the tiles */
        for (int t = 0; t < VT_TYPE_COUNT; t++) {
            const kn_traits *l = kn_traits_isa((vt_type)t, KN_ISA_AVX512);
            amx_tab[t].gemm_packed = l ? l->gemm_packed : NULL;
            if (l && l->gemm_packed) { /* with its own packing */
                amx_tab[t].pack = l->pack;
                amx_tab[t].pack_size = l->pack_size;
            }
        }
        test_skip_hw("AMX (AMX-TILE, AMX-INT8): the tile kernels are not run (the level's "
                     "AVX-512 kernels are)");
    }
    /* the last three: the AVX-512 level's (its VNNI GEMM), where the tiles
     * took the first three */
    const vt_type ts[] = {VT_TYPE_Q8_0, VT_TYPE_Q4_K, VT_TYPE_Q6_K,
                          VT_TYPE_Q8_0, VT_TYPE_Q4_K, VT_TYPE_Q6_K};
    const int nrs[] = {1, 15, 16, 17, 31, 32, 33, 48, 50};
    const int nts[] = {1, 4, 15, 16, 17, 33, 40, 150}; /* 150: more groups than one pass */
    vt_rng rng = {99};
    for (size_t ti = 0; ti < 6; ti++) {
        const vt_type t = ts[ti];
        if (ti >= 3 && !tiles)
            break;
        const kn_traits *tr = ti >= 3 ? kn_traits_isa(t, KN_ISA_AVX512)
                              : tiles ? kn_traits_isa(t, KN_ISA_AMX)
                                      : &amx_tab[t];
        const kn_traits *ref = kn_traits_isa(t, KN_ISA_SCALAR);
        float (*canon)(int64_t, const void *, const void *) =
            t == VT_TYPE_Q8_0 ? kn_canon_dot_q8_0
            : t == VT_TYPE_Q4_K ? kn_canon_dot_q4_K
                                : kn_canon_dot_q6_K;
        CHECK(tr->pack && tr->pack_size && tr->gemm && tr->vec_dot_rows);
        CHECK(tr->gemm_packed); /* AVX-512 VNNI or the tiles */
        const int64_t cols = t == VT_TYPE_Q8_0 ? 32 * 67 : 256 * 5;
        char *w = NULL, *a = NULL;
        size_t w_row, a_row;
        CHECK(make_data(tr, t, 50, cols, NT, &rng, &w, &w_row, &a, &a_row));
        const size_t gsz = tr->pack_size(cols);
        char *pk = aligned_alloc(64, (gsz * 10 + 63) / 64 * 64);
        float *want = malloc(sizeof(float) * 50 * NT), *out = malloc(sizeof(float) * 50 * NT);
        if (!w || !a || !pk || !want || !out) {
            CHECK(false);
            free(w), free(a), free(pk), free(want), free(out);
            return;
        }
        int bad = 0, far = 0;
        for (int k = 0; k < NT; k++)
            for (int i = 0; i < 50; i++) {
                const char *wi = w + (size_t)i * w_row, *ak = a + (size_t)k * a_row;
                float c = canon(cols, wi, ak), v = tr->vec_dot(cols, wi, ak);
                want[k * 50 + i] = c;
                bad += memcmp(&c, &v, sizeof c) != 0;
                float r = ref->vec_dot(cols, wi, ak);
                far += fabsf(r - c) > 1e-5f * (1.0f + fabsf(r)) * (float)cols / 256;
            }
        CHECKF(bad == 0, "%s: %d AMX-level vec_dot results differ from the canonical dot",
               vt_type_get(t)->name, bad);
        CHECKF(far == 0, "%s: %d canonical dots far from the reference vec_dot",
               vt_type_get(t)->name, far);
        for (int k = 0, b2 = 0; k < 3; k++, b2 = 0) { /* decode: rows against one token */
            tr->vec_dot_rows(cols, w, w_row, 50, a + (size_t)k * a_row, out);
            for (int i = 0; i < 50; i++)
                b2 += memcmp(&out[i], &want[k * 50 + i], sizeof(float)) != 0;
            CHECKF(b2 == 0, "%s: vec_dot_rows differs from the canonical dot in %d rows",
                   vt_type_get(t)->name, b2);
        }
        for (size_t ri = 0; ri < sizeof nrs / sizeof nrs[0]; ri++)
            for (size_t ki = 0; ki < sizeof nts / sizeof nts[0]; ki++) {
                const int nr = nrs[ri], nt = nts[ki];
                for (int g = 0; g * 16 < nt; g++)
                    tr->pack(cols, a + (size_t)(16 * g) * a_row, a_row,
                             nt - 16 * g < 16 ? nt - 16 * g : 16, pk + (size_t)g * gsz);
                for (int via = 0; via < 2; via++) {
                    for (int i = 0; i < 50 * NT; i++)
                        out[i] = -1.0f;
                    if (via)
                        tr->gemm(cols, w, w_row, nr, a, a_row, nt, out, 50);
                    else
                        tr->gemm_packed(cols, w, w_row, nr, a, a_row, pk, nt, out, 50);
                    int b3 = 0, spill = 0;
                    for (int k = 0; k < NT; k++)
                        for (int i = 0; i < 50; i++) {
                            if (k < nt && i < nr)
                                b3 += memcmp(&out[k * 50 + i], &want[k * 50 + i], 4) != 0;
                            else
                                spill += out[k * 50 + i] != -1.0f;
                        }
                    CHECKF(b3 == 0 && spill == 0,
                           "%s: %s %d rows x %d tokens: %d results differ from the canonical "
                           "dot, %d written outside",
                           vt_type_get(t)->name, via ? "gemm" : "gemm_packed", nr, nt, b3,
                           spill);
                }
            }
        free(w), free(a), free(pk), free(want), free(out);
    }
}

#undef NT

int main(void)
{
    kn_init();
    RUN_TEST(test_gemm_bit_identical);
    RUN_TEST(test_amx_canonical);
    RUN_TEST(test_matmul_batches);
    printf("test_gemm: %d (type, level) pairs with a gemm kernel\n", levels_with_gemm);
    return test_finish("test_gemm");
}
