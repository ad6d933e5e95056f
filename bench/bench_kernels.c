/*
 * bench_kernels.c - single-thread micro-benchmark of the per-type kernels:
 * for every weight type and ISA level, vec_dot and vec_dot_rows over a
 * weight matrix far larger than the caches (memory-bound, like decode: GB/s
 * of weights read) and over one that stays in L2 (compute-bound, like
 * prefill: G weights/s), the tiled vec_dot_n, plus the activation
 * quantizers. Not a test; prints tables.
 *
 * Then the decode GEMV as the model runs it: kn_matmul with one token over
 * ~256 MB of weights (memory-bound: GB/s of weights read), with a pool of
 * one and of two threads, once as one big matrix (rows of --cols, default
 * 2048: TinyLlama's width) and once cut into MoE-expert-sized matrices of
 * 768 x 1024 multiplied in a shuffled order (where per-call costs and
 * stream starts show); "read" is the roofline, a plain read of the buffer.
 * Medians of --reps passes at the ISA level of VT_ISA / --isa.
 *
 *   cc -O2 ... bench/bench_kernels.c libvitamin.a -lm -lpthread
 *   bench_kernels [--isa scalar|avx2|avx512] [--nt N] [--no-mem] [--gemv-only]
 *                 [--cols N] [--mb N] [--reps N] [--tok N] [type ...]
 *     (default: all levels, tiles of 8 rows, all types; --no-mem skips the
 *     slow memory-bound columns, the quantizers and the GEMV table, for quick
 *     A/B runs of the compute-bound kernels; --gemv-only prints only the GEMV
 *     table; --mb sets the GEMV weights' size, default 256; --tok N multiplies
 *     N tokens at a time there, as batched decode does: GB/s of weights)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "vitamin.h"
#include "util/util.h"

static const vt_type types[] = {
    VT_TYPE_F32,  VT_TYPE_F16,  VT_TYPE_BF16, VT_TYPE_Q8_0, VT_TYPE_Q4_0, VT_TYPE_Q4_1, VT_TYPE_Q5_0,
    VT_TYPE_Q5_1, VT_TYPE_Q2_K, VT_TYPE_Q3_K, VT_TYPE_Q4_K, VT_TYPE_Q5_K, VT_TYPE_Q6_K,
};
static const char *isa_name[] = {"scalar", "avx2", "avx512", "amx"};

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

/* Seconds per pass of vec_dot_rows over `rows` rows, best of a few. */
static double time_rows(const kn_traits *tr, const void *w, size_t row_bytes, int64_t rows,
                        int64_t cols, const void *a, float *out, int reps)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = vt_now();
        for (int64_t i = 0; i < rows; i += 1024)
            tr->vec_dot_rows(cols, (const char *)w + (size_t)i * row_bytes, row_bytes,
                             (int)(rows - i < 1024 ? rows - i : 1024), a, out);
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median GB/s of `reps` passes of kn_matmul (one token) over `total` rows
 * of `cols`, in matrices of `mrows` rows each, taken in a shuffled order
 * (as a mixture of experts picks them: no stream runs on from one matrix
 * into the next). */
static int64_t gemv_tok = 1; /* --tok: tokens per multiplication (batched decode) */

static double gemv_gbs(kn_pool *p, vt_type t, const char *w, int64_t total, int64_t cols,
                       int64_t mrows, const float *x, float *y, int reps)
{
    (void)y;
    float *yb = malloc((size_t)(mrows * gemv_tok) * sizeof(float));
    const size_t rb = vt_row_size(t, cols);
    const int64_t nm = total / mrows;
    int64_t *order = malloc((size_t)nm * sizeof *order);
    if (!order) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    vt_rng rng = {99};
    for (int64_t m = 0; m < nm; m++)
        order[m] = m;
    for (int64_t m = nm - 1; m > 0; m--) {
        int64_t k = (int64_t)(vt_rng_next(&rng) % (uint64_t)(m + 1)), tmp = order[m];
        order[m] = order[k];
        order[k] = tmp;
    }
    double tm[64];
    reps = reps > 64 ? 64 : reps;
    for (int r = -1; r < reps; r++) { /* one warm-up pass */
        double t0 = vt_now();
        for (int64_t m = 0; m < nm; m++)
            if (kn_matmul(p, t, w + (size_t)(order[m] * mrows) * rb, mrows, cols, x, gemv_tok, yb,
                          mrows) != VT_OK) {
                fprintf(stderr, "kn_matmul: %s\n", vt_last_error());
                exit(1);
            }
        if (r >= 0)
            tm[r] = vt_now() - t0;
        sink = yb[0];
    }
    free(order);
    free(yb);
    qsort(tm, (size_t)reps, sizeof tm[0], cmp_double);
    return (double)rb * (double)(nm * mrows) / tm[reps / 2] * 1e-9;
}

/* The roofline: one 64-bit word of every 64-byte line of the buffer summed
 * (the memory system moves whole lines), one contiguous part per thread (as
 * kn_matmul splits rows for decode). */
typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum[2][8];
} read_job;

static void read_task(void *ctx, int ith, int nth)
{
    read_job *j = ctx;
    size_t lo = j->n * (size_t)ith / (size_t)nth / 8 * 8;
    size_t hi = j->n * (size_t)(ith + 1) / (size_t)nth / 8 * 8;
    uint64_t s[8] = {0};
    for (size_t i = lo; i + 64 <= hi; i += 64)
        for (int k = 0; k < 8; k++)
            s[k] += j->p[i + 8 * k];
    memcpy(j->sum[ith & 1], s, sizeof s);
}

static double read_gbs(kn_pool *p, const void *buf, size_t bytes, int reps)
{
    read_job j = {.p = buf, .n = bytes / 8};
    double tm[64];
    reps = reps > 64 ? 64 : reps;
    for (int r = -1; r < reps; r++) {
        double t0 = vt_now();
        kn_pool_run(p, read_task, &j);
        if (r >= 0)
            tm[r] = vt_now() - t0;
        sink = (float)j.sum[0][0];
    }
    qsort(tm, (size_t)reps, sizeof tm[0], cmp_double);
    return (double)(bytes / 64 * 64) / tm[reps / 2] * 1e-9;
}

/* A ~256 MB weight buffer of rows of `cols`: 64 quantized rows repeated. */
static char *make_weights(vt_type t, int64_t cols, size_t bytes, int64_t *rows_out, vt_rng *rng)
{
    size_t rb = vt_row_size(t, cols);
    int64_t rows = (int64_t)(bytes / rb);
    char *w = malloc(rb * (size_t)rows);
    float *rowf = malloc((size_t)cols * sizeof(float));
    if (!w || !rowf) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t r = 0; r < 64 && r < rows; r++) {
        for (int64_t i = 0; i < cols; i++)
            rowf[i] = 0.02f * vt_rng_normal(rng);
        kn_quantize_ref(t, rowf, w + (size_t)r * rb, cols);
    }
    for (int64_t r = 64; r < rows; r++)
        memcpy(w + (size_t)r * rb, w + (size_t)(r % 64) * rb, rb);
    free(rowf);
    *rows_out = rows;
    return w;
}

static void gemv_table(const vt_type *ts, size_t nts, const char **want, int n_want,
                       int64_t cols, int reps, size_t bytes)
{
    const int64_t mcols = 1024, mrows = 768; /* a Qwen3-MoE expert matrix */
    kn_pool *p1 = kn_pool_create(1), *p2 = kn_pool_create(2);
    float *x = malloc((size_t)((cols > mcols ? cols : mcols) * gemv_tok) * sizeof(float));
    float *y = malloc(((size_t)bytes / 16 + 1024) * sizeof(float));
    vt_rng rng = {7};
    if (!p1 || !p2 || !x || !y) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < (cols > mcols ? cols : mcols) * gemv_tok; i++)
        x[i] = vt_rng_normal(&rng);
    static const char *isa_names[] = {"scalar", "avx2", "avx512", "amx"};
    printf("\nGEMV from memory (kn_matmul, %lld token(s), %s), GB/s of weights, median of %d\n",
           (long long)gemv_tok, isa_names[kn_active_isa()], reps);
    printf("%-6s %12s %12s %14s %14s\n", "type", "1T", "2T", "1T 768x1024", "2T 768x1024");
    {
        int64_t rows;
        char *w = make_weights(VT_TYPE_Q8_0, 1024, bytes, &rows, &rng);
        size_t n = vt_row_size(VT_TYPE_Q8_0, 1024) * (size_t)rows;
        printf("%-6s %12.2f %12.2f\n", "read", read_gbs(p1, w, n, reps), read_gbs(p2, w, n, reps));
        free(w);
    }
    for (size_t ti = 0; ti < nts; ti++) {
        vt_type t = ts[ti];
        const kn_traits *tr = kn_traits_get(t);
        if (!tr || !tr->vec_dot || t == VT_TYPE_F32 || t == VT_TYPE_BF16)
            continue;
        if (n_want > 0) {
            bool ok = false;
            for (int k = 0; k < n_want; k++)
                ok |= vt_type_from_name(want[k]) == (int)t;
            if (!ok)
                continue;
        }
        int64_t rows;
        char *w = make_weights(t, cols, bytes, &rows, &rng);
        double g1 = gemv_gbs(p1, t, w, rows, cols, rows, x, y, reps);
        double g2 = gemv_gbs(p2, t, w, rows, cols, rows, x, y, reps);
        free(w);
        w = make_weights(t, mcols, bytes, &rows, &rng);
        double s1 = gemv_gbs(p1, t, w, rows, mcols, mrows, x, y, reps);
        double s2 = gemv_gbs(p2, t, w, rows, mcols, mrows, x, y, reps);
        free(w);
        printf("%-6s %12.2f %12.2f %14.2f %14.2f\n", vt_type_get((uint32_t)t)->name, g1, g2, s1,
               s2);
        fflush(stdout);
    }
    kn_pool_destroy(p1);
    kn_pool_destroy(p2);
    free(x);
    free(y);
}

int main(int argc, char **argv)
{
    int only_isa = -1, nt = 8, reps = 9;
    int64_t gemv_cols = 2048;
    size_t gemv_mb = 256;
    bool mem = true, gemv_only = false;
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
        } else if (!strcmp(argv[k], "--tok") && k + 1 < argc) {
            gemv_tok = atoll(argv[++k]);
            if (gemv_tok < 1 || gemv_tok > 256) {
                fprintf(stderr, "--tok: 1..256\n");
                return 2;
            }
        } else if (!strcmp(argv[k], "--gemv-only")) {
            gemv_only = true;
        } else if (!strcmp(argv[k], "--cols") && k + 1 < argc) {
            gemv_cols = atoll(argv[++k]);
            if (gemv_cols < 256 || gemv_cols % 256 || gemv_cols > (1 << 20)) {
                fprintf(stderr, "--cols: a multiple of 256\n");
                return 1;
            }
        } else if (!strcmp(argv[k], "--mb") && k + 1 < argc) {
            gemv_mb = (size_t)atoll(argv[++k]);
            if (gemv_mb < 16 || gemv_mb > 4096) {
                fprintf(stderr, "--mb: 16..4096\n");
                return 1;
            }
        } else if (!strcmp(argv[k], "--reps") && k + 1 < argc) {
            reps = atoi(argv[++k]);
            if (reps < 1 || reps > 64) {
                fprintf(stderr, "--reps: 1..64\n");
                return 1;
            }
        } else if (n_want < 64) {
            want_types[n_want++] = argv[k];
        }
    }
    /* the GEMV table runs at the level kn_init picks: cap it like --isa */
    if (only_isa >= 0)
        setenv("VT_ISA", isa_name[only_isa], 1);
    kn_init();
    if (gemv_only) {
        gemv_table(types, sizeof types / sizeof types[0], want_types, n_want, gemv_cols, reps,
                   gemv_mb << 20);
        return 0;
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
    printf("%-6s %-7s %10s %10s %12s %14s %14s %12s\n", "type", "isa", "mem GB/s", "mem Gw/s",
           "L2 Gw/s", tile_col, "rows mem GB/s", "rows L2 Gw/s");
    float *rout = malloc(1024 * sizeof(float));
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        vt_type t = types[ti];
        const char *name = vt_type_get((uint32_t)t)->name;
        if (n_want > 0) {
            bool want = false;
            for (int k = 0; k < n_want; k++)
                want |= vt_type_from_name(want_types[k]) == (int)t;
            if (!want)
                continue;
        }
        size_t rb = vt_row_size(t, cols);
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
            size_t as = vt_row_size(tr->dot_type, cols);
            char *a = malloc(as * (size_t)nt + 64);
            for (int k = 0; k < nt; k++)
                dt->from_float(x, a + (size_t)k * as, cols);
            int64_t rows = isa == 0 ? big_rows / 8 : big_rows;
            double tm = mem ? time_dots(tr, w, rb, rows, cols, a, 3) : 0;
            double ts = time_dots(tr, w, rb, small_rows, cols, a, 200);
            double tt = time_tile(tr, w, rb, small_rows, cols, a, as, nt, 100);
            double trm = mem ? time_rows(tr, w, rb, rows, cols, a, rout, 3) : 0;
            double trs = time_rows(tr, w, rb, small_rows, cols, a, rout, 200);
            printf("%-6s %-7s %10.2f %10.2f %12.2f %14.2f %14.2f %12.2f\n", name, isa_name[isa],
                   mem ? (double)rb * (double)rows / tm * 1e-9 : 0.0,
                   mem ? (double)cols * (double)rows / tm * 1e-9 : 0.0,
                   (double)cols * (double)small_rows / ts * 1e-9,
                   (double)cols * (double)small_rows * nt / tt * 1e-9,
                   mem ? (double)rb * (double)rows / trm * 1e-9 : 0.0,
                   (double)cols * (double)small_rows / trs * 1e-9);
            fflush(stdout);
            free(a);
        }
        free(w);
    }

    free(rowf);
    free(rout);
    if (!mem) {
        free(x);
        return 0;
    }
    gemv_table(types, sizeof types / sizeof types[0], want_types, n_want, gemv_cols, reps,
                   gemv_mb << 20);
    /* activation quantizers */
    printf("\n%-6s %-7s %14s\n", "act", "isa", "G floats/s");
    const vt_type acts[] = {VT_TYPE_Q8_0, VT_TYPE_Q8_1, VT_TYPE_Q8_K, VT_TYPE_F16, VT_TYPE_BF16};
    for (size_t ai = 0; ai < sizeof acts / sizeof acts[0]; ai++) {
        void *out = malloc(vt_row_size(acts[ai], cols) + 64);
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
            printf("%-6s %-7s %14.2f\n", vt_type_get((uint32_t)acts[ai])->name, isa_name[isa],
                   (double)cols / best * 1e-9);
        }
        free(out);
    }
    free(x);
    return 0;
}
