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
#include <string.h>

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
 * level's gemm, the few-token GEMV), unless the type's traits say
 * otherwise (pack_min). */
#define PACK_MIN_TOK 4

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


/* Items of one kn_matmul_multi call handled per pass (more: several passes). */
#define MM_PASS 256

typedef struct {
    _Alignas(64) _Atomic uint64_t range; /* rows [next, end) of a part: next | end << 32 */
} mm_part;

/* One matrix of a job, resolved: its activations in the dot type. */
typedef struct {
    const kn_traits *tr;
    const char *w;
    size_t w_row;
    const char *a;  /* its first activation row (a_row bytes apart) */
    const void *pk; /* the same packed for gemm_packed (tiles, VNNI), or NULL */
    int64_t ntok, ldy;
    int64_t r_end; /* one past its last row in the job's row space */
    float *y;
} mm_item;

typedef struct {
    const mm_item *it;
    int nit;
    size_t a_row;
    int64_t rows, cols; /* rows: all the items' */
    int64_t chunk;      /* rows per grab: small enough to balance, big enough to amortize */
    bool parts;         /* decode: per-thread parts (else one shared counter) */
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

/* y rows [r0, r1) of one matrix for all its tokens. */
static void item_rows(const mm_item *c, size_t a_row, int64_t cols, int64_t r0, int64_t r1)
{
    if (c->ntok == 1 && c->tr->vec_dot_rows) {
        for (int64_t r = r0, n; r < r1; r += n) {
            n = r1 - r < INT32_MAX ? r1 - r : INT32_MAX;
            c->tr->vec_dot_rows(cols, c->w + (size_t)r * c->w_row, c->w_row, (int)n, c->a,
                                c->y + r);
        }
        return;
    }
    if (c->pk) { /* the packed GEMM (AMX tiles, VNNI outer product): all tokens at once */
        c->tr->gemm_packed(cols, c->w + (size_t)r0 * c->w_row, c->w_row, (int)(r1 - r0), c->a,
                           a_row, c->pk, (int)c->ntok, c->y + r0, (size_t)c->ldy);
        return;
    }
    if (c->tr->gemm) { /* register-blocked tiles of rows x tokens */
        for (int64_t t0 = 0; t0 < c->ntok; t0 += TOK_TILE) {
            int64_t nt = c->ntok - t0 < TOK_TILE ? c->ntok - t0 : TOK_TILE;
            c->tr->gemm(cols, c->w + (size_t)r0 * c->w_row, c->w_row, (int)(r1 - r0),
                        c->a + (size_t)t0 * a_row, a_row, (int)nt, c->y + t0 * c->ldy + r0,
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
                dotn(cols, wr, c->a + (size_t)t0 * a_row, a_row, (int)(t1 - t0),
                     c->y + t0 * c->ldy + r, (size_t)c->ldy);
                continue;
            }
            for (int64_t t = t0; t < t1; t++)
                c->y[t * c->ldy + r] = dot(cols, wr, c->a + (size_t)t * a_row);
        }
    }
}

/* Rows [r0, r1) of the job's row space: the parts of the items they cover. */
static void mm_rows(const mm_job *j, int64_t r0, int64_t r1)
{
    int lo = 0, hi = j->nit - 1; /* the first item ending after r0 */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (j->it[mid].r_end > r0)
            hi = mid;
        else
            lo = mid + 1;
    }
    for (int i = lo; r0 < r1; i++) {
        const int64_t base = i ? j->it[i - 1].r_end : 0, e = VT_MIN(r1, j->it[i].r_end);
        item_rows(&j->it[i], j->a_row, j->cols, r0 - base, e - base);
        r0 = e;
    }
}

static void mm_task(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    int64_t r0, r1;
    if (j->parts) {
        while (take(&j->part[ith], j->chunk, true, &r0, &r1))
            mm_rows(j, r0, r1);
        for (int k = 1; k < nth; k++)
            while (take(&j->part[(ith + k) % nth], j->chunk, false, &r0, &r1))
                mm_rows(j, r0, r1);
        return;
    }
    for (;;) {
        r0 = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
        if (r0 >= j->rows)
            return;
        mm_rows(j, r0, r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows);
    }
}

/* Rows per grab for batches (compute-bound: smaller grabs balance the
 * threads, ROW_CHUNK at least). */
static int64_t row_chunk(int64_t rows, int nth)
{
    int64_t c = (rows / (nth * 8) + ROW_CHUNK - 1) / ROW_CHUNK * ROW_CHUNK;
    return VT_MAX(ROW_CHUNK, c);
}

typedef struct {
    const kn_traits *dt;
    const float *x;
    char *xq;
    size_t a_row;
    int64_t cols, nx;
} quant_job;

static void quant_task(void *ctx, int ith, int nth)
{
    quant_job *j = ctx;
    for (int64_t t = ith; t < j->nx; t += nth)
        j->dt->from_float(j->x + t * j->cols, j->xq + (size_t)t * j->a_row, j->cols);
}

/* Gathering an item's activation rows (its token list) together and packing
 * them, one group of 16 tokens per unit. */
typedef struct {
    const kn_mm *mm;
    mm_item *it;
    const int *unit_end; /* one past each item's last unit (units of all items in a row) */
    const char *xq;      /* every row of x in the dot type */
    char **gat;          /* where an item's rows are gathered (NULL: they are in place) */
    const size_t *gsz;   /* an item's bytes per packed group */
    size_t a_row;
    int64_t cols;
    int nit, units;
} prep_job;

static void prep_task(void *ctx, int ith, int nth)
{
    prep_job *j = ctx;
    int i = 0;
    for (int u = ith; u < j->units; u += nth) {
        while (j->unit_end[i] <= u)
            i++;
        const int g = u - (i ? j->unit_end[i - 1] : 0);
        const kn_mm *m = &j->mm[i];
        mm_item *it = &j->it[i];
        const int64_t t0 = 16 * (int64_t)g, nt = VT_MIN(16, it->ntok - t0);
        if (j->gat[i])
            for (int64_t t = t0; t < t0 + nt; t++)
                memcpy(j->gat[i] + (size_t)t * j->a_row, j->xq + (size_t)m->tok[t] * j->a_row,
                       j->a_row);
        if (it->pk)
            it->tr->pack(j->cols, it->a + (size_t)t0 * j->a_row, j->a_row, (int)nt,
                         (char *)it->pk + (size_t)g * j->gsz[i]);
    }
}

static vt_err ws_reserve(kn_ws *ws, size_t need)
{
    if (ws->cap >= need)
        return VT_OK;
    void *np = realloc(ws->p, need);
    if (!np)
        return vt_fail(VT_ERR_NOMEM, "out of memory quantizing activations");
    ws->p = np;
    ws->cap = need;
    return VT_OK;
}

#define ALIGN64(s) (((s) + 63) / 64 * 64)

/* One pass: n <= MM_PASS matrices of one dot type dt (the others skipped). */
static vt_err mm_pass(kn_pool *p, kn_ws *ws, const float *x, int64_t nx, int64_t cols, int n,
                      const kn_mm *mm, vt_type dt)
{
    const kn_traits *dtr = kn_traits_get(dt);
    const bool f32 = dt == VT_TYPE_F32;
    const size_t a_row = f32 ? (size_t)cols * sizeof(float) : vt_row_size(dt, cols);
    mm_item it[MM_PASS];
    kn_mm pick[MM_PASS];
    char *gat[MM_PASS];
    int unit_end[MM_PASS];
    bool packed[MM_PASS];
    size_t gat_off[MM_PASS], pk_off[MM_PASS], gsz[MM_PASS];
    int nit = 0, units = 0;
    /* the workspace: x in the dot type, then the gathered rows and the packs */
    size_t need = f32 ? 0 : ALIGN64(a_row * (size_t)nx);
    int64_t rows = 0, max_tok = 0;
    size_t max_wrow = 0;
    for (int i = 0; i < n; i++) {
        const kn_traits *tr = kn_traits_get(mm[i].type);
        if (tr->dot_type != dt || mm[i].rows <= 0 || mm[i].ntok <= 0)
            continue;
        pick[nit] = mm[i];
        const bool gather = mm[i].tok && mm[i].ntok > 1;
        packed[nit] = tr->gemm_packed && mm[i].ntok >= (tr->pack_min ? tr->pack_min : PACK_MIN_TOK) &&
                      !f32;
        gat_off[nit] = pk_off[nit] = gsz[nit] = 0;
        if (gather) {
            gat_off[nit] = need;
            need += ALIGN64(a_row * (size_t)mm[i].ntok);
        }
        if (packed[nit]) {
            gsz[nit] = tr->pack_size(cols);
            pk_off[nit] = need;
            need += ALIGN64(gsz[nit] * (size_t)((mm[i].ntok + 15) / 16));
        }
        units += gather || packed[nit] ? (int)((mm[i].ntok + 15) / 16) : 0;
        unit_end[nit] = units;
        const size_t w_row = vt_row_size(mm[i].type, cols);
        rows += mm[i].rows;
        it[nit] = (mm_item){.tr = tr, .w = mm[i].w, .w_row = w_row, .ntok = mm[i].ntok,
                            .ldy = mm[i].ldy, .r_end = rows, .y = mm[i].y};
        max_tok = VT_MAX(max_tok, mm[i].ntok);
        max_wrow = VT_MAX(max_wrow, w_row);
        nit++;
    }
    if (!nit)
        return VT_OK;
    if (rows > INT32_MAX)
        return vt_fail(VT_ERR_INVALID, "matrix multiplication of %lld rows", (long long)rows);
    kn_ws local = {0};
    kn_ws *w = ws ? ws : &local;
    vt_err e = ws_reserve(w, need + 64);
    if (e)
        return e;
    char *base = (char *)w->p + (64 - (uintptr_t)w->p % 64) % 64;
    const char *xq = f32 ? (const char *)x : base;
    if (!f32) {
        quant_job qj = {dtr, x, base, a_row, cols, nx};
        if (nx > 1)
            kn_pool_run(p, quant_task, &qj);
        else
            quant_task(&qj, 0, 1);
    }
    for (int i = 0; i < nit; i++) {
        const kn_mm *m = &pick[i];
        gat[i] = m->tok && m->ntok > 1 ? base + gat_off[i] : NULL;
        it[i].a = gat[i] ? gat[i] : xq + (size_t)(m->tok ? m->tok[0] : m->first) * a_row;
        it[i].pk = packed[i] ? base + pk_off[i] : NULL;
    }
    if (units) {
        prep_job pj = {.mm = pick, .it = it, .unit_end = unit_end, .xq = xq, .gat = gat,
                       .a_row = a_row, .gsz = gsz, .cols = cols, .nit = nit, .units = units};
        if (units > 1)
            kn_pool_run(p, prep_task, &pj);
        else
            prep_task(&pj, 0, 1);
    }
    const int nth = kn_pool_size(p);
    mm_job j = {.it = it, .nit = nit, .a_row = a_row, .rows = rows, .cols = cols,
                .chunk = row_chunk(rows, nth), .parts = max_tok < 4 && nth <= MAX_PARTS};
    atomic_init(&j.next, 0);
    if (j.parts) {
        /* grabs of ~GRAB_BYTES, whole groups of 16 rows (the decode kernels
         * stream rows in groups of up to 16); parts on 16-row bounds */
        j.chunk = VT_MAX(16, (int64_t)(GRAB_BYTES / max_wrow + 15) / 16 * 16);
        for (int i = 0; i < nth; i++) {
            uint64_t lo = (uint64_t)(rows * i / nth) & ~(uint64_t)15;
            uint64_t hi = (uint64_t)(rows * (i + 1) / nth) & ~(uint64_t)15;
            atomic_init(&j.part[i].range, lo | (i + 1 == nth ? (uint64_t)rows : hi) << 32);
        }
    }
    kn_pool_run(p, mm_task, &j);
    kn_ws_free(&local);
    return VT_OK;
}

void kn_ws_free(kn_ws *ws)
{
    if (ws) {
        free(ws->p);
        ws->p = NULL;
        ws->cap = 0;
    }
}

vt_err kn_matmul_multi(kn_pool *p, kn_ws *ws, const float *x, int64_t nx, int64_t cols, int n,
                       const kn_mm *mm)
{
    vt_type dts[8];
    int ndt = 0;
    for (int i = 0; i < n; i++) {
        const kn_mm *m = &mm[i];
        const kn_traits *tr = kn_traits_get(m->type);
        const vt_type_info *ti = vt_type_get((uint32_t)m->type);
        if (!tr || !tr->vec_dot || !ti)
            return vt_fail(VT_ERR_UNSUPPORTED, "no matrix multiplication for tensor type %s",
                           ti ? ti->name : "?");
        const kn_traits *dt = kn_traits_get(tr->dot_type);
        const vt_type_info *di = vt_type_get((uint32_t)tr->dot_type);
        if (tr->dot_type != VT_TYPE_F32 && (!dt || !dt->from_float))
            return vt_fail(VT_ERR_UNSUPPORTED, "no activation quantizer for %s", di->name);
        if (cols % ti->blck || cols % di->blck)
            return vt_fail(VT_ERR_INVALID, "row length %lld is not a multiple of the %s block size",
                           (long long)cols, ti->name);
        if (m->ntok > 0 && (m->tok ? false : m->first < 0 || m->first + m->ntok > nx))
            return vt_fail(VT_ERR_INVALID, "matrix multiplication past the activations");
        for (int64_t t = 0; m->tok && t < m->ntok; t++)
            if (m->tok[t] < 0 || m->tok[t] >= nx)
                return vt_fail(VT_ERR_INVALID, "matrix multiplication past the activations");
        int k = 0;
        while (k < ndt && dts[k] != tr->dot_type)
            k++;
        if (k == ndt) {
            if (ndt == (int)(sizeof dts / sizeof dts[0]))
                return vt_fail(VT_ERR_UNSUPPORTED, "too many activation types in one call");
            dts[ndt++] = tr->dot_type;
        }
    }
    for (int k = 0; k < ndt; k++)
        for (int i0 = 0; i0 < n; i0 += MM_PASS) {
            vt_err e = mm_pass(p, ws, x, nx, cols, VT_MIN(MM_PASS, n - i0), mm + i0, dts[k]);
            if (e)
                return e;
        }
    return VT_OK;
}

vt_err kn_matmul(kn_pool *p, vt_type wtype, const void *w, int64_t rows, int64_t cols,
                 const float *x, int64_t ntok, float *y, int64_t ldy)
{
    return kn_matmul_ws(p, NULL, wtype, w, rows, cols, x, ntok, y, ldy);
}

vt_err kn_matmul_ws(kn_pool *p, kn_ws *ws, vt_type wtype, const void *w, int64_t rows,
                    int64_t cols, const float *x, int64_t ntok, float *y, int64_t ldy)
{
    const kn_mm m = {.type = wtype, .w = w, .rows = rows, .ntok = ntok, .y = y, .ldy = ldy};
    return kn_matmul_multi(p, ws, x, ntok, cols, 1, &m);
}
