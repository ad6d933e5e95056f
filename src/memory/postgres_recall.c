/*
 * postgres_recall.c - recall over the PostgreSQL backend: full-text
 * candidates (the query's terms as a tsquery of quoted lexemes, OR-ed, passed
 * as a parameter to to_tsquery('english', $2) and ranked by ts_rank_cd with
 * body 1.0 and its context 0.35), vector candidates (cosine over an int8 copy
 * of the user's vectors kept in memory and brought up to date by the user's
 * generations before each search: only rows whose rev is newer are read,
 * and a delete means a full reload), the user's speakers (cached the same
 * way) and the neighbouring turns of a hit.
 */
#include <endian.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "memory/postgres_int.h"

#define MEM_PG_VECTOR_PAGE 8192

/* the tsquery text of the terms: each a quoted lexeme (' doubled, \
 * escaped), a prefix one with :*, OR-ed; to_tsquery normalises the words
 * (stems them) and reads nothing else as syntax */
static char *tsquery_of(const mem_term *t, size_t nt)
{
    vt_buf q = {0};
    for (size_t i = 0; i < nt; i++) {
        if (i)
            vt_buf_add(&q, " | ", 3);
        vt_buf_add(&q, "'", 1);
        for (const char *c = t[i].text; *c; c++) {
            if (*c == '\'' || *c == '\\')
                vt_buf_add(&q, *c == '\'' ? "'" : "\\", 1);
            vt_buf_add(&q, c, 1);
        }
        vt_buf_add(&q, t[i].prefix ? "':*" : "'", t[i].prefix ? 3 : 1);
    }
    if (q.oom || !q.p) {
        free(q.p);
        return NULL;
    }
    return q.p;
}

vt_err mem_pg_lexical(mem_store *s, const char *user, const mem_term *t, size_t nt,
                         int32_t limit, mem_cand **c, size_t *n)
{
    mem_pg *d = P(s);
    *c = NULL;
    *n = 0;
    if (!nt)
        return VT_OK;
    vt_err e = mem_pg_alive(s);
    if (e)
        return e;
    char *q = tsquery_of(t, nt);
    if (!q)
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    bool handled;
    if ((e = mem_pg_bm25_lexical(d, user, q, limit, c, n, &handled)) || handled) {
        free(q);
        return e;
    }
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    mem_pg_p_text(&p, q);
    mem_pg_p_int(&p, limit);
    PGresult *r = mem_pg_run(d, Q_LEXICAL, &p, false, "search", &e);
    free(q);
    if (!r)
        return e;
    int rows = PQntuples(r);
    if (rows > limit)
        rows = limit;
    mem_cand *a = rows ? malloc(sizeof *a * (size_t)rows) : NULL;
    if (rows && !a) {
        PQclear(r);
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    }
    for (int i = 0; i < rows; i++) {
        a[i].seq = mem_pg_int(r, i, 0);
        a[i].score = -strtod(PQgetvalue(r, i, 1), NULL); /* lower is better, as bm25 */
    }
    PQclear(r);
    *c = a;
    *n = (size_t)rows;
    return VT_OK;
}

static void vc_clear(mem_pg *d)
{
    free(d->vc.user);
    free(d->vc.seq);
    free(d->vc.v);
    free(d->vc.scale);
    memset(&d->vc, 0, sizeof d->vc);
}

static int64_t bin_int8(const PGresult *r, int row, int col)
{
    uint64_t x;
    memcpy(&x, PQgetvalue(r, row, col), 8);
    return (int64_t)be64toh(x);
}

/* quantises one binary16 row to int8 at slot i */
static void vc_set(mem_pg *d, size_t i, const uint8_t *b)
{
    int32_t dim = d->vc.dim;
    float mx = 0;
    int8_t *dst = d->vc.v + i * (size_t)dim;
    for (int32_t k = 0; k < dim; k++)
        mx = fmaxf(mx, fabsf(vt_fp16_to_fp32((vt_fp16)(b[2 * k] | b[2 * k + 1] << 8))));
    float sc = mx > 0 ? mx / 127.0f : 1.0f, inv = 1.0f / sc;
    for (int32_t k = 0; k < dim; k++)
        dst[k] = (int8_t)lrintf(vt_fp16_to_fp32((vt_fp16)(b[2 * k] | b[2 * k + 1] << 8)) * inv);
    d->vc.scale[i] = sc;
}

static bool vc_grow(mem_pg *d)
{
    if (d->vc.n < d->vc.cap)
        return true;
    size_t cap = d->vc.cap ? d->vc.cap * 2 : 1024;
    int64_t *ns = realloc(d->vc.seq, cap * sizeof *ns);
    if (ns)
        d->vc.seq = ns;
    float *nf = realloc(d->vc.scale, cap * sizeof *nf);
    if (nf)
        d->vc.scale = nf;
    int8_t *nv = realloc(d->vc.v, cap * (size_t)d->vc.dim);
    if (nv)
        d->vc.v = nv;
    if (!ns || !nf || !nv)
        return false;
    d->vc.cap = cap;
    return true;
}

/* slot of seq in the cache, or -1 */
static ptrdiff_t vc_find(mem_pg *d, int64_t seq)
{
    size_t lo = 0, hi = d->vc.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (d->vc.seq[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->vc.n && d->vc.seq[lo] == seq ? (ptrdiff_t)lo : -1;
}

/* applies a binary result of (seq, embedding) rows, ordered by seq; false
 * when the cache cannot take them in place (a full reload is needed) */
static bool vc_apply(mem_pg *d, const PGresult *r, vt_err *e)
{
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        int64_t seq = bin_int8(r, i, 0);
        bool has = !PQgetisnull(r, i, 1) && PQgetlength(r, i, 1) == d->vc.dim * 2;
        ptrdiff_t at = vc_find(d, seq);
        if (at >= 0) {
            if (!has)
                return false; /* no longer comparable */
            vc_set(d, (size_t)at, (const uint8_t *)PQgetvalue(r, i, 1));
            continue;
        }
        if (!has)
            continue;
        if (d->vc.n && d->vc.seq[d->vc.n - 1] > seq)
            return false; /* not at the end */
        if (!vc_grow(d)) {
            *e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
            return false;
        }
        vc_set(d, d->vc.n, (const uint8_t *)PQgetvalue(r, i, 1));
        d->vc.seq[d->vc.n++] = seq;
    }
    return true;
}

/* the user's generations: of the last write, and of the last delete (0, 0
 * for a user without a row) */
vt_err mem_pg_user_gen(mem_pg *d, const char *user, int64_t *gen, int64_t *delgen)
{
    vt_err e;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    PGresult *r = mem_pg_run(d, Q_GEN, &p, false, "search", &e);
    *gen = *delgen = 0;
    if (r && PQntuples(r) == 1) {
        *gen = mem_pg_int(r, 0, 0);
        *delgen = mem_pg_int(r, 0, 1);
    }
    PQclear(r);
    return e;
}

/* brings the cache of the user's vectors of dimension dim up to date */
static vt_err vc_sync(mem_pg *d, const char *user, int32_t dim)
{
    int64_t gen, delgen;
    vt_err e = mem_pg_user_gen(d, user, &gen, &delgen);
    if (e)
        return e;
    PGresult *r;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    bool same = d->vc.user && !strcmp(d->vc.user, user) && d->vc.dim == dim && !d->vc.stale;
    bool resync = d->vc.resync;
    d->vc.resync = false;
    if (same && d->vc.gen == gen && d->vc.delgen == delgen && !resync)
        return VT_OK;
    if (same && d->vc.delgen == delgen) {
        /* only new or changed rows since the cached generation (rows of this
         * handle's batch carry the batch's generation, which may be the
         * cached one) */
        mem_pg_p_int(&p, resync && gen - 1 < d->vc.gen ? gen - 1 : d->vc.gen);
        r = mem_pg_run(d, Q_VECTORS_SINCE, &p, true, "search", &e);
        if (!r)
            return e;
        bool ok = vc_apply(d, r, &e);
        PQclear(r);
        if (e) {
            vc_clear(d);
            return e;
        }
        if (ok) {
            d->vc.gen = gen;
            return VT_OK;
        }
        p.n = 1;
    }
    vc_clear(d);
    if (!(d->vc.user = strdup(user)))
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    d->vc.dim = dim;
    d->vc.gen = gen;
    d->vc.delgen = delgen;
    mem_pg_p_int(&p, (int64_t)dim * 2);
    /* in pages of MEM_PG_VECTOR_PAGE rows by seq, so a big user's vectors
     * never sit in one result as well as in the cache */
    int64_t after = 0;
    for (;;) {
        p.n = 2;
        mem_pg_p_int(&p, after);
        mem_pg_p_int(&p, MEM_PG_VECTOR_PAGE);
        if (!(r = mem_pg_run(d, Q_VECTORS, &p, true, "search", &e)))
            break;
        int rows = PQntuples(r);
        bool ok = vc_apply(d, r, &e);
        if (rows)
            after = bin_int8(r, rows - 1, 0);
        PQclear(r);
        if (!ok && !e)
            e = vt_fail(VT_ERR_INTERNAL, "search: vectors out of order");
        if (e || rows < MEM_PG_VECTOR_PAGE)
            break;
    }
    if (e)
        vc_clear(d);
    return e;
}

/* keeps the best `limit` of (score, seq) in a min-heap */
static void heap_push(mem_cand *h, size_t *n, size_t limit, mem_cand c)
{
    if (*n < limit) {
        size_t i = (*n)++;
        h[i] = c;
        while (i && h[(i - 1) / 2].score > h[i].score) {
            mem_cand t = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (c.score <= h[0].score)
        return;
    h[0] = c;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && h[l].score < h[m].score)
            m = l;
        if (r < *n && h[r].score < h[m].score)
            m = r;
        if (m == i)
            break;
        mem_cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cand_desc(const void *a, const void *b)
{
    double x = ((const mem_cand *)a)->score, y = ((const mem_cand *)b)->score;
    return x < y ? 1 : x > y ? -1 : 0;
}

vt_err mem_pg_vector(mem_store *s, const char *user, const float *q, int32_t dim,
                        int32_t limit, mem_cand **c, size_t *n)
{
    mem_pg *d = P(s);
    *c = NULL;
    *n = 0;
    vt_err e = mem_pg_alive(s);
    if (e || (e = vc_sync(d, user, dim)))
        return e;
    mem_cand *h = malloc(sizeof *h * (size_t)limit);
    int8_t *qi = malloc((size_t)dim);
    if (!h || !qi) {
        free(h);
        free(qi);
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    }
    /* the query as int8 too: int8 x int8 dot products (VNNI / AVX2) */
    float qs = mem_quantize_i8(q, dim, qi);
    size_t nh = 0;
    for (size_t i = 0; i < d->vc.n; i++) {
        float sim = (float)mem_dot_i8(qi, d->vc.v + i * (size_t)dim, dim) * qs * d->vc.scale[i];
        heap_push(h, &nh, (size_t)limit, (mem_cand){d->vc.seq[i], sim});
    }
    free(qi);
    qsort(h, nh, sizeof *h, cand_desc);
    *c = h;
    *n = nh;
    return VT_OK;
}

static void sc_clear(mem_pg *d)
{
    for (size_t i = 0; i < d->sc.n; i++)
        free(d->sc.names[i]);
    free(d->sc.names);
    free(d->sc.user);
    memset(&d->sc, 0, sizeof d->sc);
}

vt_err mem_pg_speakers(mem_store *s, const char *user, char ***names, size_t *n)
{
    mem_pg *d = P(s);
    *names = NULL;
    *n = 0;
    int64_t gen, delgen;
    vt_err e = mem_pg_alive(s);
    if (e || (e = mem_pg_user_gen(d, user, &gen, &delgen)))
        return e;
    if (!d->sc.user || strcmp(d->sc.user, user) || d->sc.stale || d->sc.gen != gen ||
        d->sc.delgen != delgen) {
        sc_clear(d);
        mem_pg_params p = {.n = 0};
        mem_pg_p_text(&p, user);
        PGresult *r = mem_pg_run(d, Q_SPEAKERS, &p, false, "search", &e);
        if (!r)
            return e;
        int rows = PQntuples(r) < 256 ? PQntuples(r) : 256;
        if (!(d->sc.user = strdup(user)) || !(d->sc.names = calloc(256, sizeof *d->sc.names)))
            e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
        for (int i = 0; !e && i < rows; i++) {
            if (!(d->sc.names[i] = mem_pg_str(r, i, 0)))
                e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
            else
                d->sc.n++;
        }
        PQclear(r);
        if (e) {
            sc_clear(d);
            return e;
        }
        d->sc.gen = gen;
        d->sc.delgen = delgen;
    }
    *names = d->sc.names;
    *n = d->sc.n;
    return VT_OK;
}

vt_err mem_pg_neighbours(mem_store *s, const char *user, const char *conv, int64_t index,
                            int32_t radius, mem_memory **items, size_t *n)
{
    mem_pg *d = P(s);
    *items = NULL;
    *n = 0;
    vt_err e = mem_pg_alive(s);
    if (e)
        return e;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    mem_pg_p_text(&p, conv);
    mem_pg_p_int(&p, index - radius);
    mem_pg_p_int(&p, index + radius);
    mem_pg_p_int(&p, index);
    PGresult *r = mem_pg_run(d, Q_NEIGHBOURS, &p, false, "neighbours", &e);
    if (!r)
        return e;
    e = mem_pg_read_rows(r, -1, items, n, NULL);
    PQclear(r);
    return e;
}

void mem_pg_recall_clear(mem_pg *d)
{
    vc_clear(d);
    sc_clear(d);
    mem_pg_bm25_clear(d);
}
