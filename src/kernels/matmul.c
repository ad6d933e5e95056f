/*
 * matmul.c - y = x · Wᵀ for a weight matrix in any supported type.
 *
 * The activations are first converted to the weight type's dot_type (Q8_0,
 * Q8_K, F16, ...) exactly as ggml does, once per call, in parallel. The
 * output is then split into chunks of weight rows handed out dynamically to
 * the pool's threads; a chunk runs over the tokens in tiles, so that a weight
 * row is read from memory once per tile of tokens and stays in L1 while it is
 * dotted with every activation row of the tile: through the type's gemm
 * kernel where the level has one (register-blocked rows x tokens), else
 * vec_dot_n row by row. A single token (decode) runs whole chunks of rows
 * through vec_dot_rows; one to three tokens split the rows into one
 * contiguous part per thread (see below).
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "kernels.h"
#include "util/util.h"

#define ROW_CHUNK 16
#define TOK_TILE 32
/* vec_dot_n: tokens per call. The kernels decode a row's weights once per
 * eight tokens (quants_avx512.c), so a call of eight is as fast per token
 * as one of 32, and the chunk's rows then all meet the same eight tokens'
 * activations (18 KB for 2048 columns of Q8_K), which stay in L1; 32
 * tokens' (74 KB) came from L2 again for every row (prefill +8% on Zen 4). */
#define DOTN_TOK_TILE 8

/* From this many tokens a multiplication packs its activations for the
 * level's packed GEMM, the AMX tiles or the VNNI outer product (fewer: the
 * level's gemm, one decode GEMV per token). */
#define PACK_MIN_TOK 4

typedef struct {
    const kn_traits *tr;
    const char *a;
    size_t a_row, gsz;
    int64_t cols, ntok;
    char *dst;
} pack_job;

static void pack_task(void *ctx, int ith, int nth)
{
    pack_job *j = ctx;
    for (int64_t g = ith; g * 16 < j->ntok; g += nth) {
        int nt = j->ntok - g * 16 < 16 ? (int)(j->ntok - g * 16) : 16;
        j->tr->pack(j->cols, j->a + (size_t)(g * 16) * j->a_row, j->a_row, nt,
                    j->dst + (size_t)g * j->gsz);
    }
}

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

/* Decoding (one to three tokens) is a memory stream, and it streams best
 * when each thread walks one contiguous range of rows: the hardware
 * prefetchers follow long runs, and two threads reading interleaved chunks
 * of the same region fetch lines twice (16-row chunks handed out in turn:
 * -40% at two threads). So each thread owns a contiguous part of the rows
 * and takes it from the front, a quarter of what is left at a time (each
 * grab is a locked instruction, which waits for the loads in flight); a
 * thread done with its part takes grabs of about GRAB_BYTES of weights from
 * the back of the others' parts, so that a thread slowed down (by a
 * neighbour on its core, a late wake-up) is helped instead of waited for. */
#define MAX_PARTS 64
#define GRAB_BYTES 16384

typedef struct {
    _Alignas(64) _Atomic uint64_t range; /* rows [next, end) of a part: next | end << 32 */
} mm_part;

typedef struct {
    const kn_traits *tr;
    const char *w;
    size_t w_row;
    const char *a;
    size_t a_row;
    int64_t rows, cols, ntok, ldy;
    int64_t chunk; /* rows per grab: small enough to balance, big enough to amortize */
    bool parts;    /* decode: per-thread parts (else one shared counter) */
    const void *pk; /* the activations packed for gemm_packed (tiles, VNNI), or NULL */
    float *y;
    _Alignas(64) _Atomic int64_t next; /* own cache line: no false sharing with the fields */
    mm_part part[MAX_PARTS];
} mm_job;

/* Takes up to g rows from the front (own part) or the back (someone
 * else's) of a part into [*r0, *r1); false once the part is empty. */
static bool take(mm_part *p, int64_t g, bool front, int64_t *r0, int64_t *r1)
{
    uint64_t v = atomic_load_explicit(&p->range, memory_order_relaxed);
    for (;;) {
        uint64_t lo = v & 0xffffffffu, hi = v >> 32;
        if (lo >= hi)
            return false;
        uint64_t want = front ? VT_MAX((uint64_t)g, (hi - lo) / 4 / 4 * 4) : (uint64_t)g;
        uint64_t n = hi - lo < want ? hi - lo : want;
        uint64_t nv = front ? (lo + n) | hi << 32 : lo | (hi - n) << 32;
        if (atomic_compare_exchange_weak_explicit(&p->range, &v, nv, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *r0 = (int64_t)(front ? lo : hi - n);
            *r1 = *r0 + (int64_t)n;
            return true;
        }
    }
}

/* y rows [r0, r1) for every token. */
static void mm_rows(const mm_job *c, int64_t r0, int64_t r1)
{
    if (c->ntok == 1 && c->tr->vec_dot_rows) {
        for (int64_t r = r0, n; r < r1; r += n) {
            n = r1 - r < INT32_MAX ? r1 - r : INT32_MAX;
            c->tr->vec_dot_rows(c->cols, c->w + (size_t)r * c->w_row, c->w_row, (int)n, c->a,
                                c->y + r);
        }
        return;
    }
    if (c->pk) { /* the packed GEMM (AMX tiles, VNNI outer product): all tokens at once */
        c->tr->gemm_packed(c->cols, c->w + (size_t)r0 * c->w_row, c->w_row, (int)(r1 - r0), c->a,
                           c->a_row, c->pk, (int)c->ntok, c->y + r0, (size_t)c->ldy);
        return;
    }
    if (c->tr->gemm) { /* register-blocked tiles of rows x tokens */
        for (int64_t t0 = 0; t0 < c->ntok; t0 += TOK_TILE) {
            int64_t nt = c->ntok - t0 < TOK_TILE ? c->ntok - t0 : TOK_TILE;
            c->tr->gemm(c->cols, c->w + (size_t)r0 * c->w_row, c->w_row, (int)(r1 - r0),
                        c->a + (size_t)t0 * c->a_row, c->a_row, (int)nt, c->y + t0 * c->ldy + r0,
                        (size_t)c->ldy);
        }
        return;
    }
    float (*dot)(int64_t, const void *, const void *) = c->tr->vec_dot;
    void (*dotn)(int64_t, const void *, const void *, size_t, int, float *, size_t) =
        c->tr->vec_dot_n;
    for (int64_t t0 = 0; t0 < c->ntok; t0 += DOTN_TOK_TILE) {
        int64_t t1 = t0 + DOTN_TOK_TILE < c->ntok ? t0 + DOTN_TOK_TILE : c->ntok;
        for (int64_t r = r0; r < r1; r++) {
            const char *wr = c->w + (size_t)r * c->w_row;
            if (dotn && t1 - t0 > 1) {
                dotn(c->cols, wr, c->a + (size_t)t0 * c->a_row, c->a_row, (int)(t1 - t0),
                     c->y + t0 * c->ldy + r, (size_t)c->ldy);
                continue;
            }
            for (int64_t t = t0; t < t1; t++)
                c->y[t * c->ldy + r] = dot(c->cols, wr, c->a + (size_t)t * c->a_row);
        }
    }
}

static void mm_task(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    const mm_job c = {.tr = j->tr, .w = j->w, .w_row = j->w_row, .a = j->a, .a_row = j->a_row,
                      .rows = j->rows, .cols = j->cols, .ntok = j->ntok, .ldy = j->ldy,
                      .chunk = j->chunk, .parts = j->parts, .pk = j->pk,
                      .y = j->y}; /* read once */
    int64_t r0, r1;
    if (c.parts) {
        while (take(&j->part[ith], c.chunk, true, &r0, &r1))
            mm_rows(&c, r0, r1);
        for (int k = 1; k < nth; k++)
            while (take(&j->part[(ith + k) % nth], c.chunk, false, &r0, &r1))
                mm_rows(&c, r0, r1);
        return;
    }
    for (;;) {
        r0 = atomic_fetch_add_explicit(&j->next, c.chunk, memory_order_relaxed);
        if (r0 >= c.rows)
            return;
        mm_rows(&c, r0, r0 + c.chunk < c.rows ? r0 + c.chunk : c.rows);
    }
}

/* Rows per grab for batches (compute-bound: smaller grabs balance the
 * threads, ROW_CHUNK at least). */
static int64_t row_chunk(int64_t rows, int nth)
{
    int64_t c = (rows / (nth * 8) + ROW_CHUNK - 1) / ROW_CHUNK * ROW_CHUNK;
    return VT_MAX(ROW_CHUNK, c);
}

void kn_ws_free(kn_ws *ws)
{
    if (ws) {
        free(ws->p);
        ws->p = NULL;
        ws->cap = 0;
    }
}

vt_err kn_matmul(kn_pool *p, vt_type wtype, const void *w, int64_t rows, int64_t cols,
                 const float *x, int64_t ntok, float *y, int64_t ldy)
{
    return kn_matmul_ws(p, NULL, wtype, w, rows, cols, x, ntok, y, ldy);
}

vt_err kn_matmul_ws(kn_pool *p, kn_ws *ws, vt_type wtype, const void *w, int64_t rows,
                    int64_t cols, const float *x, int64_t ntok, float *y, int64_t ldy)
{
    const kn_traits *tr = kn_traits_get(wtype);
    const vt_type_info *ti = vt_type_get((uint32_t)wtype);
    if (!tr || !tr->vec_dot || !ti)
        return vt_fail(VT_ERR_UNSUPPORTED, "no matrix multiplication for tensor type %s",
                       ti ? ti->name : "?");
    const kn_traits *dt = kn_traits_get(tr->dot_type);
    const vt_type_info *di = vt_type_get((uint32_t)tr->dot_type);
    if (cols % ti->blck || cols % di->blck)
        return vt_fail(VT_ERR_INVALID, "row length %lld is not a multiple of the %s block size",
                       (long long)cols, ti->name);
    if (rows <= 0 || ntok <= 0)
        return VT_OK;

    void *xq = NULL;
    const char *a = (const char *)x;
    size_t a_row = (size_t)cols * sizeof(float);
    const bool packed = tr->gemm_packed && ntok >= PACK_MIN_TOK && tr->dot_type != VT_TYPE_F32;
    size_t pk_off = 0, gsz = 0;
    if (tr->dot_type != VT_TYPE_F32) {
        if (!dt || !dt->from_float)
            return vt_fail(VT_ERR_UNSUPPORTED, "no activation quantizer for %s", di->name);
        a_row = vt_row_size(tr->dot_type, cols);
        size_t need = a_row * (size_t)ntok;
        if (packed) { /* the packed groups after the quantized rows, 64-byte aligned */
            gsz = tr->pack_size(cols);
            pk_off = (need + 63) / 64 * 64;
            need = pk_off + gsz * (size_t)((ntok + 15) / 16) + 64;
        }
        if (ws && ws->cap < need) {
            void *np = realloc(ws->p, need);
            if (!np)
                return vt_fail(VT_ERR_NOMEM, "out of memory quantizing activations");
            ws->p = np;
            ws->cap = need;
        }
        xq = ws ? ws->p : malloc(need);
        if (!xq)
            return vt_fail(VT_ERR_NOMEM, "out of memory quantizing activations");
        quant_job qj = {dt, x, xq, a_row, cols, ntok};
        if (ntok > 1)
            kn_pool_run(p, quant_task, &qj);
        else
            quant_task(&qj, 0, 1);
        a = xq;
    }
    const char *pk = NULL;
    if (packed) {
        char *base = (char *)xq + pk_off;
        base += (64 - (uintptr_t)base % 64) % 64;
        pack_job pj = {tr, a, a_row, gsz, cols, ntok, base};
        kn_pool_run(p, pack_task, &pj);
        pk = base;
    }
    const int nth = kn_pool_size(p);
    const size_t w_row = vt_row_size(wtype, cols);
    mm_job j = {.tr = tr,
                .w = w,
                .w_row = w_row,
                .a = a,
                .a_row = a_row,
                .rows = rows,
                .cols = cols,
                .ntok = ntok,
                .ldy = ldy,
                .chunk = row_chunk(rows, nth),
                .parts = ntok < 4 && nth <= MAX_PARTS && rows <= INT32_MAX,
                .pk = pk,
                .y = y};
    atomic_init(&j.next, 0);
    if (j.parts) {
        /* grabs of ~GRAB_BYTES, whole groups of 16 rows (the decode kernels
         * stream rows in groups of up to 16); parts on 16-row bounds */
        j.chunk = VT_MAX(16, (int64_t)(GRAB_BYTES / w_row + 15) / 16 * 16);
        for (int i = 0; i < nth; i++) {
            uint64_t lo = (uint64_t)(rows * i / nth) & ~(uint64_t)15;
            uint64_t hi = (uint64_t)(rows * (i + 1) / nth) & ~(uint64_t)15;
            atomic_init(&j.part[i].range, lo | (i + 1 == nth ? (uint64_t)rows : hi) << 32);
        }
    }
    kn_pool_run(p, mm_task, &j);
    if (!ws)
        free(xq);
    return VT_OK;
}
