/*
 * bench_kernels.c - single-thread micro-benchmark of the per-type kernels:
 * for every weight type and ISA level, vec_dot over a weight matrix far
 * larger than the caches (memory-bound, like decode: GB/s of weights read)
 * and over one that stays in L2 (compute-bound, like prefill: G weights/s),
 * plus the activation quantizers. Not a test; prints a table.
 *
 *   cc -O2 ... bench/bench_kernels.c libvitamin.a -lm -lpthread
 *   bench_kernels [--isa scalar|avx2|avx512] [--nt N] [--no-mem] [type ...]
 *     (default: all levels, tiles of 8 rows, all types; --no-mem skips the
 *     slow memory-bound column and the quantizers, for quick A/B runs of the
 *     compute-bound kernels)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "util/util.h"

static const vt_type types[] = {
    VT_TYPE_F32,  VT_TYPE_F16,  VT_TYPE_BF16, VT_TYPE_Q8_0, VT_TYPE_Q4_0, VT_TYPE_Q4_1, VT_TYPE_Q5_0,
    VT_TYPE_Q5_1, VT_TYPE_Q2_K, VT_TYPE_Q3_K, VT_TYPE_Q4_K, VT_TYPE_Q5_K, VT_TYPE_Q6_K,
};
static const char *isa_name[] = {"scalar", "avx2", "avx512"};

static volatile float sink;

/* Seconds per pass of vec_dot_n (nt activation rows) over `rows` rows. */
static double time_tile(const kn_traits *tr, const void *w, size_t row_bytes, int64_t rows,
                        int64_t cols, const void *a, size_t as, int nt, int reps)
{
    double best = 1e30;
    float out[64];
    for (int r = 0; r < reps; r++) {
        double t0 = vt_now();
        for (int64_t i = 0; i < rows; i++)
            tr->vec_dot_n(cols, (const char *)w + (size_t)i * row_bytes, a, as, nt, out, 1);
        double t = vt_now() - t0;
        sink = out[0];
        if (t < best)
            best = t;
    }
    return best;
}

/* Seconds per pass of vec_dot over `rows` rows of `cols`, best of a few. */
static double time_dots(const kn_traits *tr, const void *w, size_t row_bytes, int64_t rows,
                        int64_t cols, const void *a, int reps)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = vt_now();
        float s = 0;
        for (int64_t i = 0; i < rows; i++)
            s += tr->vec_dot(cols, (const char *)w + (size_t)i * row_bytes, a);
        double t = vt_now() - t0;
        sink = s;
        if (t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    kn_init();
    int only_isa = -1, nt = 8;
    bool mem = true;
    const char *want_types[64];
    int n_want = 0;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--isa") && k + 1 < argc) {
            k++;
            for (int l = 0; l < KN_ISA_COUNT; l++)
                if (!strcmp(argv[k], isa_name[l]))
                    only_isa = l;
            if (only_isa < 0) {
                fprintf(stderr, "--isa: scalar, avx2 or avx512\n");
                return 1;
            }
        } else if (!strcmp(argv[k], "--nt") && k + 1 < argc) {
            nt = atoi(argv[++k]);
            if (nt < 1 || nt > 64) {
                fprintf(stderr, "--nt: 1..64\n");
                return 1;
            }
        } else if (!strcmp(argv[k], "--no-mem")) {
            mem = false;
        } else if (n_want < 64) {
            want_types[n_want++] = argv[k];
        }
    }
    const int64_t cols = 4096;
    const size_t big_bytes = (size_t)256 << 20; /* far beyond any cache */
    const int64_t small_rows = 32;   /* <= 512 KB: in L2 */
    float *x = malloc((size_t)cols * 4);
    vt_rng rng = {1};
    for (int64_t i = 0; i < cols; i++)
        x[i] = vt_rng_normal(&rng);
    float *rowf = malloc((size_t)cols * 4);

    char tile_col[32];
    snprintf(tile_col, sizeof tile_col, "L2 x%d GMAC/s", nt);
    printf("%-6s %-7s %10s %10s %12s %14s\n", "type", "isa", "mem GB/s", "mem Gw/s", "L2 Gw/s",
           tile_col);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        vt_type t = types[ti];
        const char *name = kn_type_get((uint32_t)t)->name;
        if (n_want > 0) {
            bool want = false;
            for (int k = 0; k < n_want; k++)
                want |= kn_type_from_name(want_types[k]) == (int)t;
            if (!want)
                continue;
        }
        size_t rb = kn_row_size(t, cols);
        const int64_t big_rows = mem ? (int64_t)(big_bytes / rb) : 64;
        char *w = malloc(rb * (size_t)big_rows);
        if (!w) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        /* quantize a few distinct rows and replicate them */
        for (int64_t r = 0; r < 64; r++) {
            for (int64_t i = 0; i < cols; i++)
                rowf[i] = 0.02f * vt_rng_normal(&rng);
            kn_quantize_ref(t, rowf, w + (size_t)r * rb, cols);
        }
        for (int64_t r = 64; r < big_rows; r++)
            memcpy(w + (size_t)r * rb, w + (size_t)(r % 64) * rb, rb);
        for (int isa = 0; isa < KN_ISA_COUNT; isa++) {
            const kn_traits *tr = kn_traits_isa(t, (kn_isa)isa);
            if (!tr || (only_isa >= 0 && isa != only_isa))
                continue;
            const kn_traits *dt = kn_traits_isa(tr->dot_type, (kn_isa)isa);
            size_t as = kn_row_size(tr->dot_type, cols);
            char *a = malloc(as * (size_t)nt + 64);
            for (int k = 0; k < nt; k++)
                dt->from_float(x, a + (size_t)k * as, cols);
            int64_t rows = isa == 0 ? big_rows / 8 : big_rows;
            double tm = mem ? time_dots(tr, w, rb, rows, cols, a, 3) : 0;
            double ts = time_dots(tr, w, rb, small_rows, cols, a, 200);
            double tt = time_tile(tr, w, rb, small_rows, cols, a, as, nt, 100);
            printf("%-6s %-7s %10.2f %10.2f %12.2f %14.2f\n", name, isa_name[isa],
                   mem ? (double)rb * (double)rows / tm * 1e-9 : 0.0,
                   mem ? (double)cols * (double)rows / tm * 1e-9 : 0.0,
                   (double)cols * (double)small_rows / ts * 1e-9,
                   (double)cols * (double)small_rows * nt / tt * 1e-9);
            fflush(stdout);
            free(a);
        }
        free(w);
    }

    free(rowf);
    if (!mem) {
        free(x);
        return 0;
    }
    /* activation quantizers */
    printf("\n%-6s %-7s %14s\n", "act", "isa", "G floats/s");
    const vt_type acts[] = {VT_TYPE_Q8_0, VT_TYPE_Q8_1, VT_TYPE_Q8_K, VT_TYPE_F16, VT_TYPE_BF16};
    for (size_t ai = 0; ai < sizeof acts / sizeof acts[0]; ai++) {
        void *out = malloc(kn_row_size(acts[ai], cols) + 64);
        for (int isa = 0; isa < KN_ISA_COUNT; isa++) {
            const kn_traits *tr = kn_traits_isa(acts[ai], (kn_isa)isa);
            if (!tr)
                continue;
            double best = 1e30;
            for (int r = 0; r < 200; r++) {
                double t0 = vt_now();
                tr->from_float(x, out, cols);
                double t = vt_now() - t0;
                if (t < best)
                    best = t;
            }
            printf("%-6s %-7s %14.2f\n", kn_type_get((uint32_t)acts[ai])->name, isa_name[isa],
                   (double)cols / best * 1e-9);
        }
        free(out);
    }
    free(x);
    return 0;
}
