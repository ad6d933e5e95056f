/*
 * sqlite_recall.c - the SQLite backend's recall lists: full-text candidates
 * (FTS5 bm25 over the user's tagged tokens, own words weighted 1 and a turn's
 * context CTX_WEIGHT), cosine candidates over the user's vectors kept in
 * memory as int8 rows with a scale each (loaded on first use, kept up to date
 * row by row with this handle's commits, reloaded when another connection
 * changed the file; a scan of more
 * than 4M values runs on two threads, each keeping its best), the user's
 * speakers (cached the same way) and the neighbouring turns of a hit.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memory/sqlite_int.h"

/* bm25 weight of a turn's context (its neighbours, its date) beside its own words */
#define CTX_WEIGHT 0.35

vt_err mem_sq_lexical(mem_store *s, const char *user, const mem_term *t, size_t nt, int32_t limit,
                      mem_cand **c, size_t *n)
{
    sq *d = mem_sq(s);
    *c = NULL;
    *n = 0;
    if (!nt)
        return VT_OK;
    /* each term a quoted FTS5 string ("" inside doubled) behind the user's
     * tag, OR-ed: no query text is ever FTS5 syntax */
    char tag[MEM_TAG_LEN + 1];
    mem_sqlite_user_tag(user, tag);
    vt_buf q = {0};
    for (size_t i = 0; i < nt; i++) {
        if (i)
            vt_buf_add(&q, " OR ", 4);
        vt_buf_add(&q, "\"\x01", 2);
        vt_buf_add(&q, tag, MEM_TAG_LEN);
        vt_buf_add(&q, "\x01", 1);
        for (const char *p = t[i].text; *p; p++) {
            vt_buf_add(&q, p, 1);
            if (*p == '"')
                vt_buf_add(&q, "\"", 1);
        }
        vt_buf_add(&q, t[i].prefix ? "\"*" : "\"", t[i].prefix ? 2 : 1);
    }
    if (q.oom) {
        free(q.p);
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    }
    sqlite3_stmt *st = d->q[Q_LEXICAL];
    sqlite3_bind_text(st, 1, q.p, (int)q.len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, limit);
    sqlite3_bind_double(st, 4, CTX_WEIGHT);
    vt_err e = VT_OK;
    mem_cand *a = malloc(sizeof *a * (size_t)limit);
    if (!a)
        e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
    int rc = SQLITE_DONE;
    while (!e && *n < (size_t)limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        a[*n].seq = sqlite3_column_int64(st, 0);
        a[(*n)++].score = sqlite3_column_double(st, 1);
    }
    if (!e && rc != SQLITE_DONE && rc != SQLITE_ROW)
        e = mem_sq_fail(d, "search");
    mem_sq_done(st);
    free(q.p);
    if (e) {
        free(a);
        *n = 0;
        return e;
    }
    *c = a;
    return VT_OK;
}

static void vc_clear(sq *d)
{
    free(d->vc.user);
    free(d->vc.seq);
    free(d->vc.v);
    free(d->vc.scale);
    memset(&d->vc, 0, sizeof d->vc);
}

static void sc_clear(sq *d)
{
    for (size_t i = 0; i < d->sc.n; i++)
        free(d->sc.names[i]);
    free(d->sc.names);
    free(d->sc.user);
    memset(&d->sc, 0, sizeof d->sc);
}

void mem_sq_caches_clear(sq *d)
{
    vc_clear(d);
    sc_clear(d);
}

/* loads the user's vectors of dimension dim as int8 rows */
static vt_err vc_load(sq *d, const char *user, int32_t dim, int64_t dv)
{
    vc_clear(d);
    if (!(d->vc.user = strdup(user)))
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    d->vc.dim = dim;
    d->vc.data_version = dv;
    sqlite3_stmt *st = d->q[Q_VECTORS];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, dim * 2);
    size_t cap = 0;
    vt_err e = VT_OK;
    float *row = malloc(sizeof(float) * (size_t)dim);
    if (!row)
        e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
    while (!e && sqlite3_step(st) == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(st, 1);
        if (sqlite3_column_bytes(st, 1) != dim * 2 || !b)
            continue;
        if (d->vc.n == cap) {
            cap = cap ? cap * 2 : 1024;
            int64_t *ns = realloc(d->vc.seq, cap * sizeof *ns);
            if (ns)
                d->vc.seq = ns;
            float *nf = realloc(d->vc.scale, cap * sizeof *nf);
            if (nf)
                d->vc.scale = nf;
            int8_t *nv = realloc(d->vc.v, cap * (size_t)dim);
            if (nv)
                d->vc.v = nv;
            if (!ns || !nf || !nv) {
                e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
                break;
            }
        }
        for (int32_t i = 0; i < dim; i++)
            row[i] = vt_fp16_to_fp32((vt_fp16)(b[2 * i] | b[2 * i + 1] << 8));
        d->vc.scale[d->vc.n] = mem_quantize_i8(row, dim, d->vc.v + d->vc.n * (size_t)dim);
        d->vc.seq[d->vc.n++] = sqlite3_column_int64(st, 0);
    }
    mem_sq_done(st);
    free(row);
    d->vc.cap = cap;
    if (e)
        vc_clear(d);
    return e;
}

/* keeps the best `limit` candidates in a min-heap on score */
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

/* one thread's share of the scan: rows [lo, hi) into its own heap */
typedef struct {
    const sq *d;
    const int8_t *q;
    float qs;
    int32_t dim;
    size_t lo, hi, limit, n;
    mem_cand *h;
} scan_job;

static void *scan(void *p)
{
    scan_job *j = p;
    const sq *d = j->d;
    for (size_t i = j->lo; i < j->hi; i++) {
        float sim = (float)mem_dot_i8(j->q, d->vc.v + i * (size_t)j->dim, j->dim) * j->qs *
                    d->vc.scale[i];
        heap_push(j->h, &j->n, j->limit, (mem_cand){d->vc.seq[i], sim});
    }
    return NULL;
}

/* rows x dimensions above which the scan is split over two threads */
#define SCAN_SPLIT (4 << 20)

vt_err mem_sq_vector(mem_store *s, const char *user, const float *q, int32_t dim, int32_t limit,
                     mem_cand **c, size_t *n)
{
    sq *d = mem_sq(s);
    *c = NULL;
    *n = 0;
    int64_t dv = mem_sq_data_version(d);
    if (!d->vc.user || strcmp(d->vc.user, user) || d->vc.dim != dim || d->vc.data_version != dv) {
        vt_err e = vc_load(d, user, dim, dv);
        if (e)
            return e;
    }
    mem_cand *h = malloc(sizeof *h * (size_t)limit * 2);
    int8_t *qi = malloc((size_t)dim);
    if (!h || !qi) {
        free(h);
        free(qi);
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    }
    float qs = mem_quantize_i8(q, dim, qi);
    scan_job j[2] = {{d, qi, qs, dim, 0, d->vc.n, (size_t)limit, 0, h},
                     {d, qi, qs, dim, d->vc.n, d->vc.n, (size_t)limit, 0, h + limit}};
    pthread_t t;
    bool split = d->vc.n * (size_t)dim >= SCAN_SPLIT && sysconf(_SC_NPROCESSORS_ONLN) > 1;
    if (split) {
        j[0].hi = j[1].lo = d->vc.n / 2;
        if (pthread_create(&t, NULL, scan, &j[1])) {
            split = false;
            j[0].hi = d->vc.n;
            j[1].lo = d->vc.n;
        }
    }
    scan(&j[0]);
    if (split)
        pthread_join(t, NULL);
    /* the second heap into the first */
    size_t nh = j[0].n;
    for (size_t i = 0; i < j[1].n; i++)
        heap_push(h, &nh, (size_t)limit, h[limit + i]);
    free(qi);
    qsort(h, nh, sizeof *h, cand_desc);
    *c = h;
    *n = nh;
    return VT_OK;
}

vt_err mem_sq_speakers(mem_store *s, const char *user, char ***names, size_t *n)
{
    sq *d = mem_sq(s);
    *names = NULL;
    *n = 0;
    int64_t dv = mem_sq_data_version(d);
    if (!d->sc.user || strcmp(d->sc.user, user) || d->sc.data_version != dv) {
        sc_clear(d);
        if (!(d->sc.user = strdup(user)) || !(d->sc.names = calloc(256, sizeof *d->sc.names))) {
            sc_clear(d);
            return vt_fail(VT_ERR_NOMEM, "search: out of memory");
        }
        d->sc.data_version = dv;
        sqlite3_stmt *st = d->q[Q_SPEAKERS];
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        while (d->sc.n < 256 && sqlite3_step(st) == SQLITE_ROW) {
            char *nm = mem_sq_col_str(st, 0);
            if (!nm) {
                mem_sq_done(st);
                sc_clear(d);
                return vt_fail(VT_ERR_NOMEM, "search: out of memory");
            }
            d->sc.names[d->sc.n++] = nm;
        }
        mem_sq_done(st);
    }
    *names = d->sc.names;
    *n = d->sc.n;
    return VT_OK;
}

/* the row of seq in the vector cache, or where it would go */
static size_t vc_find(const sq *d, int64_t seq, bool *found)
{
    size_t lo = 0, hi = d->vc.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->vc.seq[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < d->vc.n && d->vc.seq[lo] == seq;
    return lo;
}

/* one committed row into the vector cache: its vector (blob of nb bytes,
 * NULL: none) replaces, joins or leaves the rows; false on OOM */
static bool vc_apply(sq *d, int64_t seq, const uint8_t *blob, int nb, float *row)
{
    int32_t dim = d->vc.dim;
    bool found;
    size_t at = vc_find(d, seq, &found);
    if (!blob || nb != dim * 2) {
        if (found) {
            size_t tail = d->vc.n - at - 1;
            memmove(d->vc.seq + at, d->vc.seq + at + 1, tail * sizeof *d->vc.seq);
            memmove(d->vc.scale + at, d->vc.scale + at + 1, tail * sizeof *d->vc.scale);
            memmove(d->vc.v + at * (size_t)dim, d->vc.v + (at + 1) * (size_t)dim,
                    tail * (size_t)dim);
            d->vc.n--;
        }
        return true;
    }
    if (!found) {
        if (d->vc.n == d->vc.cap) {
            size_t cap = d->vc.cap ? d->vc.cap * 2 : 1024;
            int64_t *ns = realloc(d->vc.seq, cap * sizeof *ns);
            if (ns)
                d->vc.seq = ns;
            float *nf = realloc(d->vc.scale, cap * sizeof *nf);
            if (nf)
                d->vc.scale = nf;
            int8_t *nv = realloc(d->vc.v, cap * (size_t)dim);
            if (nv)
                d->vc.v = nv;
            if (!ns || !nf || !nv)
                return false;
            d->vc.cap = cap;
        }
        size_t tail = d->vc.n - at;
        memmove(d->vc.seq + at + 1, d->vc.seq + at, tail * sizeof *d->vc.seq);
        memmove(d->vc.scale + at + 1, d->vc.scale + at, tail * sizeof *d->vc.scale);
        memmove(d->vc.v + (at + 1) * (size_t)dim, d->vc.v + at * (size_t)dim, tail * (size_t)dim);
        d->vc.n++;
        d->vc.seq[at] = seq;
    }
    for (int32_t i = 0; i < dim; i++)
        row[i] = vt_fp16_to_fp32((vt_fp16)(blob[2 * i] | blob[2 * i + 1] << 8));
    d->vc.scale[at] = mem_quantize_i8(row, dim, d->vc.v + at * (size_t)dim);
    return true;
}

void mem_sq_caches_apply(sq *d)
{
    if ((!d->vc.user && !d->sc.user) || !d->n_dirty)
        return;
    float *row = d->vc.user ? malloc(sizeof(float) * (size_t)d->vc.dim) : NULL;
    if (d->vc.user && !row) {
        vc_clear(d);
        return;
    }
    sqlite3_stmt *st = d->q[Q_CACHE_ROW];
    for (size_t i = 0; i < d->n_dirty; i++) {
        const sq_dirty *x = &d->dirty[i];
        bool v = d->vc.user && !strcmp(d->vc.user, x->user);
        bool sp = d->sc.user && !strcmp(d->sc.user, x->user);
        if (!v && !sp)
            continue;
        sqlite3_bind_text(st, 1, x->user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, x->seq);
        bool have = sqlite3_step(st) == SQLITE_ROW;
        const uint8_t *blob = have ? sqlite3_column_blob(st, 0) : NULL;
        int nb = have ? sqlite3_column_bytes(st, 0) : 0;
        if (v && !vc_apply(d, x->seq, blob, nb, row))
            vc_clear(d); /* reloaded at the next search */
        const char *name = have ? (const char *)sqlite3_column_text(st, 1) : NULL;
        if (sp && name) {
            bool known = false;
            for (size_t k = 0; k < d->sc.n && !known; k++)
                known = !strcmp(d->sc.names[k], name);
            if (!known && d->sc.n < 256 && !(d->sc.names[d->sc.n] = strdup(name)))
                sc_clear(d);
            else if (!known && d->sc.n < 256)
                d->sc.n++;
        }
        mem_sq_done(st);
    }
    free(row);
}

vt_err mem_sq_neighbours(mem_store *s, const char *user, const char *conv, int64_t index,
                         int32_t radius, mem_memory **items, size_t *n)
{
    sq *d = mem_sq(s);
    sqlite3_stmt *st = d->q[Q_NEIGHBOURS];
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, conv, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, index - radius);
    sqlite3_bind_int64(st, 4, index + radius);
    sqlite3_bind_int64(st, 5, index);
    return mem_sq_read_rows(d, st, -1, items, n, NULL);
}
