/*
 * matmul.c - y = x · Wᵀ for a weight matrix in any supported type.
 *
 * The activations are first converted to the weight type's dot_type (Q8_0,
 * Q8_K, F16, ...) exactly as ggml does, once per call, in parallel. The
 * output is then split into chunks of weight rows handed out dynamically to
 * the pool's threads; a chunk runs over the tokens in tiles, so that a weight
 * row is read from memory once per tile of tokens and stays in L1 while it is
 * dotted with every activation row of the tile.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "kernels.h"
#include "util/util.h"

#define ROW_CHUNK 16
#define TOK_TILE 32



typedef struct {
    const kn_traits *tr;
    const float *x;
    void *xq;
    size_t xq_row;
    int64_t cols, ntok;
} quant_job;

static void quant_task(void *ctx, int ith, int nth)
{
    quant_job *j = ctx;
    for (int64_t t = ith; t < j->ntok; t += nth)
        j->tr->from_float(j->x + t * j->cols, (char *)j->xq + (size_t)t * j->xq_row, j->cols);
}

typedef struct {
    const kn_traits *tr;
    const char *w;
    size_t w_row;
    const char *a;
    size_t a_row;
    int64_t rows, cols, ntok, ldy;
    int64_t chunk; /* rows per grab: small enough to balance, big enough to amortize */
    float *y;
    _Alignas(64) _Atomic int64_t next; /* own cache line: no false sharing with the fields */
} mm_job;

static void mm_task(void *ctx, int ith, int nth)
{
    (void)ith;
    (void)nth;
    mm_job *j = ctx;
    const mm_job c = {.tr = j->tr, .w = j->w, .w_row = j->w_row, .a = j->a, .a_row = j->a_row,
                      .rows = j->rows, .cols = j->cols, .ntok = j->ntok, .ldy = j->ldy,
                      .chunk = j->chunk, .y = j->y}; /* read once, keep in registers */
    float (*dot)(int64_t, const void *, const void *) = c.tr->vec_dot;
    void (*dotn)(int64_t, const void *, const void *, size_t, int, float *, size_t) =
        c.tr->vec_dot_n;
    for (;;) {
        int64_t r0 = atomic_fetch_add_explicit(&j->next, c.chunk, memory_order_relaxed);
        if (r0 >= c.rows)
            return;
        int64_t r1 = r0 + c.chunk < c.rows ? r0 + c.chunk : c.rows;
        for (int64_t t0 = 0; t0 < c.ntok; t0 += TOK_TILE) {
            int64_t t1 = t0 + TOK_TILE < c.ntok ? t0 + TOK_TILE : c.ntok;
            for (int64_t r = r0; r < r1; r++) {
                const char *wr = c.w + (size_t)r * c.w_row;
                if (dotn && t1 - t0 > 1) {
                    dotn(c.cols, wr, c.a + (size_t)t0 * c.a_row, c.a_row, (int)(t1 - t0),
                         c.y + t0 * c.ldy + r, (size_t)c.ldy);
                    continue;
                }
                for (int64_t t = t0; t < t1; t++)
                    c.y[t * c.ldy + r] = dot(c.cols, wr, c.a + (size_t)t * c.a_row);
            }
        }
    }
}

/* Rows per grab. Decoding (few tokens) is a memory stream: one contiguous
 * range per thread keeps the hardware prefetchers on long runs. Larger
 * batches are compute-bound: smaller grabs balance the threads. */
static int64_t row_chunk(int64_t rows, int64_t ntok, int nth)
{
    int64_t per = ntok < 4 ? 1 : 8;
    int64_t c = (rows / (nth * per) + ROW_CHUNK - 1) / ROW_CHUNK * ROW_CHUNK;
    return VT_MAX(ROW_CHUNK, c);
}

vt_err kn_matmul(kn_pool *p, vt_type wtype, const void *w, int64_t rows, int64_t cols,
                 const float *x, int64_t ntok, float *y, int64_t ldy)
{
    const kn_traits *tr = kn_traits_get(wtype);
    const kn_type_info *ti = kn_type_get((uint32_t)wtype);
    if (!tr || !tr->vec_dot || !ti)
        return vt_fail(VT_ERR_UNSUPPORTED, "no matrix multiplication for tensor type %s",
                       ti ? ti->name : "?");
    const kn_traits *dt = kn_traits_get(tr->dot_type);
    const kn_type_info *di = kn_type_get((uint32_t)tr->dot_type);
    if (cols % ti->blck || cols % di->blck)
        return vt_fail(VT_ERR_INVALID, "row length %lld is not a multiple of the %s block size",
                       (long long)cols, ti->name);
    if (rows <= 0 || ntok <= 0)
        return VT_OK;

    void *xq = NULL;
    const char *a = (const char *)x;
    size_t a_row = (size_t)cols * sizeof(float);
    if (tr->dot_type != VT_TYPE_F32) {
        if (!dt || !dt->from_float)
            return vt_fail(VT_ERR_UNSUPPORTED, "no activation quantizer for %s", di->name);
        a_row = kn_row_size(tr->dot_type, cols);
        xq = malloc(a_row * (size_t)ntok);
        if (!xq)
            return vt_fail(VT_ERR_NOMEM, "out of memory quantizing activations");
        quant_job qj = {dt, x, xq, a_row, cols, ntok};
        if (ntok > 1)
            kn_pool_run(p, quant_task, &qj);
        else
            quant_task(&qj, 0, 1);
        a = xq;
    }
    mm_job j = {.tr = tr,
                .w = w,
                .w_row = kn_row_size(wtype, cols),
                .a = a,
                .a_row = a_row,
                .rows = rows,
                .cols = cols,
                .ntok = ntok,
                .ldy = ldy,
                .chunk = row_chunk(rows, ntok, kn_pool_size(p)),
                .y = y};
    atomic_init(&j.next, 0);
    kn_pool_run(p, mm_task, &j);
    free(xq);
    return VT_OK;
}
