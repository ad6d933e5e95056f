/*
 * postgres_bm25.c - full-text ranking of a big user's memories in memory, for
 * the PostgreSQL backend. PostgreSQL's own ranking (ts_rank_cd in
 * postgres_recall.c) scores every row that matches one of the query's words,
 * which for a user with 100,000 memories and a common word is tens of
 * thousands of rows per search. A user with more than MEM_PG_BM25_MIN_DOCS
 * memories is therefore ranked here instead: the handle keeps an inverted
 * index of that user's tsvectors (the lexemes PostgreSQL made, so stemming is
 * the server's) and scores with BM25 as SQLite's FTS5 does (k1 1.2, b 0.75;
 * a term's frequency is its count in the memory's own words plus 0.35 times
 * its count in the context; idf log((N - n + 0.5) / (n + 0.5)), at least
 * 1e-6). The index follows the user's generations like the vector cache: rows
 * whose rev is newer replace their old document (a tombstone), a delete
 * anywhere reloads it, and so does a pile of tombstones. The query's terms go
 * through to_tsquery on the server, so they are normalised the same way.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "memory/postgres_int.h"

#define MEM_PG_BM25_MIN_DOCS 2000
#define PAGE 8192
#define K1 1.2
#define B 0.75
#define CTX_WEIGHT 0.35

typedef struct {
    uint32_t doc;
    uint16_t tf_body, tf_ctx;
} posting;

typedef struct {
    char *lex; /* NULL: an empty slot */
    uint32_t hash;
    posting *p;
    uint32_t n, cap;
} term;

struct mem_pg_bm25 {
    char *user;
    int64_t gen, delgen;
    /* documents: seq and length (positions) of each; dead: replaced */
    int64_t *seq;
    uint32_t *len;
    uint8_t *dead;
    uint32_t n_docs, cap_docs, n_dead;
    uint64_t total_len;
    /* seq -> document, open addressing (seq 0: empty) */
    int64_t *map_seq;
    uint32_t *map_doc;
    size_t map_cap;
    /* lexeme -> postings, open addressing */
    term *terms;
    size_t n_terms, terms_cap;
};

static uint32_t hash_str(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static void bm_free(struct mem_pg_bm25 *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->terms_cap; i++) {
        free(x->terms[i].lex);
        free(x->terms[i].p);
    }
    free(x->terms);
    free(x->user);
    free(x->seq);
    free(x->len);
    free(x->dead);
    free(x->map_seq);
    free(x->map_doc);
    free(x);
}

void mem_pg_bm25_clear(mem_pg *d)
{
    bm_free(d->bm);
    d->bm = NULL;
}

static bool map_grow(struct mem_pg_bm25 *x)
{
    size_t cap = x->map_cap ? x->map_cap * 2 : 4096;
    int64_t *ms = calloc(cap, sizeof *ms);
    uint32_t *md = calloc(cap, sizeof *md);
    if (!ms || !md) {
        free(ms);
        free(md);
        return false;
    }
    for (size_t i = 0; i < x->map_cap; i++) {
        if (!x->map_seq[i])
            continue;
        size_t k = (size_t)((uint64_t)x->map_seq[i] * 0x9e3779b97f4a7c15ULL >> 20) & (cap - 1);
        while (ms[k])
            k = (k + 1) & (cap - 1);
        ms[k] = x->map_seq[i];
        md[k] = x->map_doc[i];
    }
    free(x->map_seq);
    free(x->map_doc);
    x->map_seq = ms;
    x->map_doc = md;
    x->map_cap = cap;
    return true;
}

/* the slot of seq in the map (empty if absent) */
static size_t map_slot(const struct mem_pg_bm25 *x, int64_t seq)
{
    size_t k = (size_t)((uint64_t)seq * 0x9e3779b97f4a7c15ULL >> 20) & (x->map_cap - 1);
    while (x->map_seq[k] && x->map_seq[k] != seq)
        k = (k + 1) & (x->map_cap - 1);
    return k;
}

static bool terms_grow(struct mem_pg_bm25 *x)
{
    size_t cap = x->terms_cap ? x->terms_cap * 2 : 4096;
    term *t = calloc(cap, sizeof *t);
    if (!t)
        return false;
    for (size_t i = 0; i < x->terms_cap; i++) {
        if (!x->terms[i].lex)
            continue;
        size_t k = x->terms[i].hash & (cap - 1);
        while (t[k].lex)
            k = (k + 1) & (cap - 1);
        t[k] = x->terms[i];
    }
    free(x->terms);
    x->terms = t;
    x->terms_cap = cap;
    return true;
}

/* the term of lexeme s[0..n), added when add is set; NULL if absent or OOM */
static term *term_get(struct mem_pg_bm25 *x, const char *s, size_t n, bool add)
{
    if (add && (x->n_terms + 1) * 2 > x->terms_cap && !terms_grow(x))
        return NULL;
    if (!x->terms_cap)
        return NULL;
    uint32_t h = hash_str(s, n);
    size_t k = h & (x->terms_cap - 1);
    while (x->terms[k].lex) {
        if (x->terms[k].hash == h && !strncmp(x->terms[k].lex, s, n) && !x->terms[k].lex[n])
            return &x->terms[k];
        k = (k + 1) & (x->terms_cap - 1);
    }
    if (!add || !(x->terms[k].lex = strndup(s, n)))
        return NULL;
    x->terms[k].hash = h;
    x->n_terms++;
    return &x->terms[k];
}

/* reads one quoted lexeme of tsvector/tsquery text at *p ('' a quote, \\ a
 * backslash) into buf; false at the end or on malformed text */
static bool lexeme(const char **p, char *buf, size_t size, size_t *n)
{
    const char *s = *p;
    while (*s == ' ' || *s == '|' || *s == '&' || *s == '!' || *s == '(' || *s == ')' ||
           *s == '<' || *s == '>' || *s == '-' || (*s >= '0' && *s <= '9'))
        s++;
    if (*s != '\'')
        return false;
    s++;
    *n = 0;
    for (;; s++) {
        if (!*s)
            return false;
        if (*s == '\\' && s[1]) {
            s++;
        } else if (*s == '\'') {
            if (s[1] != '\'')
                break;
            s++;
        }
        if (*n + 1 < size)
            buf[(*n)++] = *s;
    }
    buf[*n] = 0;
    *p = s + 1;
    return true;
}

/* adds one document (a row's seq and tsvector text) */
static vt_err add_doc(struct mem_pg_bm25 *x, int64_t seq, const char *tsv)
{
    if (x->n_docs == x->cap_docs) {
        uint32_t cap = x->cap_docs ? x->cap_docs * 2 : 1024;
        int64_t *ns = realloc(x->seq, cap * sizeof *ns);
        if (ns)
            x->seq = ns;
        uint32_t *nl = realloc(x->len, cap * sizeof *nl);
        if (nl)
            x->len = nl;
        uint8_t *nd = realloc(x->dead, cap);
        if (nd)
            x->dead = nd;
        if (!ns || !nl || !nd)
            return vt_fail(VT_ERR_NOMEM, "search: out of memory");
        x->cap_docs = cap;
    }
    if ((x->n_docs + 1) * 2 > x->map_cap && !map_grow(x))
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    uint32_t doc = x->n_docs, len = 0;
    char lex[2048];
    size_t n;
    const char *p = tsv;
    while (lexeme(&p, lex, sizeof lex, &n)) {
        uint32_t tb = 0, tc = 0;
        if (*p == ':') {
            /* positions: 12A,13B,14 (no letter: D) */
            p++;
            for (;;) {
                while (*p >= '0' && *p <= '9')
                    p++;
                if (*p == 'A')
                    tb++;
                else if (*p == 'B')
                    tc++;
                if (*p >= 'A' && *p <= 'D')
                    p++;
                if (*p != ',')
                    break;
                p++;
            }
        }
        if (!tb && !tc)
            continue;
        len += tb + tc;
        term *t = term_get(x, lex, n, true);
        if (!t)
            return vt_fail(VT_ERR_NOMEM, "search: out of memory");
        if (t->n == t->cap) {
            uint32_t cap = t->cap ? t->cap * 2 : 4;
            posting *np = realloc(t->p, cap * sizeof *np);
            if (!np)
                return vt_fail(VT_ERR_NOMEM, "search: out of memory");
            t->p = np;
            t->cap = cap;
        }
        t->p[t->n++] = (posting){doc, (uint16_t)VT_MIN(tb, 65535u), (uint16_t)VT_MIN(tc, 65535u)};
    }
    x->seq[doc] = seq;
    x->len[doc] = len;
    x->dead[doc] = 0;
    x->total_len += len;
    x->n_docs++;
    size_t k = map_slot(x, seq);
    if (x->map_seq[k]) {
        /* the row changed: its old document is a tombstone */
        uint32_t old = x->map_doc[k];
        if (!x->dead[old]) {
            x->dead[old] = 1;
            x->n_dead++;
            x->total_len -= x->len[old];
        }
    }
    x->map_seq[k] = seq;
    x->map_doc[k] = doc;
    return VT_OK;
}

static vt_err apply(struct mem_pg_bm25 *x, const PGresult *r)
{
    for (int i = 0; i < PQntuples(r); i++) {
        vt_err e = add_doc(x, mem_pg_int(r, i, 0), PQgetvalue(r, i, 1));
        if (e)
            return e;
    }
    return VT_OK;
}

/* brings the index of user up to date (building it when it is another
 * user's, or none) */
static vt_err sync(mem_pg *d, const char *user, int64_t gen, int64_t delgen)
{
    struct mem_pg_bm25 *x = d->bm;
    vt_err e = VT_OK;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, user);
    bool resync = d->bm_resync;
    d->bm_resync = false;
    if (x && !d->bm_stale && !strcmp(x->user, user) && x->delgen == delgen) {
        if (x->gen == gen && !resync)
            return VT_OK;
        mem_pg_p_int(&p, resync && gen - 1 < x->gen ? gen - 1 : x->gen);
        PGresult *r = mem_pg_run(d, Q_BM25_SINCE, &p, false, "search", &e);
        if (!r)
            return e;
        e = apply(x, r);
        PQclear(r);
        if (e) {
            mem_pg_bm25_clear(d);
            return e;
        }
        x->gen = gen;
        if (x->n_dead * 2 <= x->n_docs + 64)
            return VT_OK;
        p.n = 1; /* too many tombstones: build it again */
    }
    mem_pg_bm25_clear(d);
    d->bm_stale = false;
    if (!(x = d->bm = calloc(1, sizeof *x)) || !(x->user = strdup(user))) {
        mem_pg_bm25_clear(d);
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    }
    x->gen = gen;
    x->delgen = delgen;
    int64_t after = 0;
    for (;;) {
        p.n = 1;
        mem_pg_p_int(&p, after);
        mem_pg_p_int(&p, PAGE);
        PGresult *r = mem_pg_run(d, Q_BM25_ALL, &p, false, "search", &e);
        if (!r)
            break;
        int rows = PQntuples(r);
        e = apply(x, r);
        if (rows)
            after = mem_pg_int(r, rows - 1, 0);
        PQclear(r);
        if (e || rows < PAGE)
            break;
    }
    if (e)
        mem_pg_bm25_clear(d);
    return e;
}

/* the query's lexemes: to_tsquery's text ('appl' | 'bi':* ...) read back;
 * prefix[i] for a :* one. *lex is one malloc'd block. */
static vt_err query_lexemes(mem_pg *d, const char *tsquery, char ***lex, bool **prefix,
                            size_t *n)
{
    vt_err e;
    mem_pg_params p = {.n = 0};
    mem_pg_p_text(&p, tsquery);
    PGresult *r = mem_pg_run(d, Q_BM25_QUERY, &p, false, "search", &e);
    *lex = NULL;
    *prefix = NULL;
    *n = 0;
    if (!r)
        return e;
    const char *t = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "";
    size_t len = strlen(t), max = len / 2 + 1;
    char **a = calloc(max, sizeof *a);
    bool *pf = calloc(max, sizeof *pf);
    char *buf = malloc(len + max + 1), *w = buf;
    if (!a || !pf || !buf) {
        free(a);
        free(pf);
        free(buf);
        PQclear(r);
        return vt_fail(VT_ERR_NOMEM, "search: out of memory");
    }
    size_t k = 0, m;
    while (k < max && lexeme(&t, w, len + 1, &m)) {
        bool dup = false;
        bool pre = t[0] == ':' && t[1] == '*';
        if (pre)
            t += 2;
        for (size_t i = 0; i < k && !dup; i++)
            dup = pf[i] == pre && !strcmp(a[i], w);
        if (dup)
            continue;
        a[k] = w;
        pf[k++] = pre;
        w += m + 1;
    }
    PQclear(r);
    if (!k) {
        free(a);
        free(pf);
        free(buf);
        return VT_OK;
    }
    /* a[0] is buf: freeing a[0] frees the strings */
    *lex = a;
    *prefix = pf;
    *n = k;
    return VT_OK;
}

static int cand_by_score(const void *a, const void *b)
{
    double x = ((const mem_cand *)a)->score, y = ((const mem_cand *)b)->score;
    if (x != y)
        return x < y ? -1 : 1;
    int64_t s = ((const mem_cand *)a)->seq, t = ((const mem_cand *)b)->seq;
    return s < t ? 1 : s > t ? -1 : 0; /* newer first on ties */
}

/* accumulates the weighted frequencies of term t into f, noting touched docs */
static void gather(const struct mem_pg_bm25 *x, const term *t, float *f, uint32_t *touched,
                   size_t *nt)
{
    for (uint32_t i = 0; i < t->n; i++) {
        const posting *q = &t->p[i];
        if (x->dead[q->doc])
            continue;
        if (f[q->doc] == 0)
            touched[(*nt)++] = q->doc;
        f[q->doc] += (float)(q->tf_body + CTX_WEIGHT * q->tf_ctx);
    }
}

vt_err mem_pg_bm25_lexical(mem_pg *d, const char *user, const char *tsquery, int32_t limit,
                           mem_cand **c, size_t *n, bool *handled)
{
    *c = NULL;
    *n = 0;
    *handled = false;
    int64_t gen, delgen;
    vt_err e = mem_pg_user_gen(d, user, &gen, &delgen);
    if (e)
        return e;
    if (!d->bm || strcmp(d->bm->user, user)) {
        /* is the user big enough to be worth an index? */
        mem_pg_params p = {.n = 0};
        mem_pg_p_text(&p, user);
        mem_pg_p_int(&p, MEM_PG_BM25_MIN_DOCS + 1);
        PGresult *r = mem_pg_run(d, Q_COUNT_UPTO, &p, false, "search", &e);
        if (!r)
            return e;
        int64_t docs = PQntuples(r) == 1 ? mem_pg_int(r, 0, 0) : 0;
        PQclear(r);
        if (docs <= MEM_PG_BM25_MIN_DOCS)
            return VT_OK;
    }
    if ((e = sync(d, user, gen, delgen)))
        return e;
    *handled = true;
    char **lex;
    bool *prefix;
    size_t nl;
    if ((e = query_lexemes(d, tsquery, &lex, &prefix, &nl)) || !nl)
        return e;
    struct mem_pg_bm25 *x = d->bm;
    uint32_t live = x->n_docs - x->n_dead;
    double avgdl = live ? (double)x->total_len / live : 1.0;
    float *f = calloc(x->n_docs ? x->n_docs : 1, sizeof *f);
    double *score = calloc(x->n_docs ? x->n_docs : 1, sizeof *score);
    uint32_t *touched = malloc(sizeof *touched * (x->n_docs ? x->n_docs : 1));
    uint32_t *hit = malloc(sizeof *hit * (x->n_docs ? x->n_docs : 1));
    size_t nhit = 0;
    if (!f || !score || !touched || !hit) {
        e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nl; i++) {
        size_t nt = 0;
        if (prefix[i]) {
            size_t len = strlen(lex[i]);
            for (size_t k = 0; k < x->terms_cap; k++)
                if (x->terms[k].lex && !strncmp(x->terms[k].lex, lex[i], len))
                    gather(x, &x->terms[k], f, touched, &nt);
        } else {
            term *t = term_get(x, lex[i], strlen(lex[i]), false);
            if (t)
                gather(x, t, f, touched, &nt);
        }
        double idf = log(((double)live - (double)nt + 0.5) / ((double)nt + 0.5));
        if (idf <= 0)
            idf = 1e-6;
        for (size_t k = 0; k < nt; k++) {
            uint32_t doc = touched[k];
            double tf = f[doc];
            f[doc] = 0;
            if (score[doc] == 0)
                hit[nhit++] = doc;
            score[doc] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * x->len[doc] / avgdl));
        }
    }
    /* the best `limit` (a heap whose top is the worst kept), then sorted;
     * scores negated: lower is better, as bm25() */
    size_t keep = nhit < (size_t)limit ? nhit : (size_t)limit, nk = 0;
    mem_cand *a = keep ? malloc(sizeof *a * keep) : NULL;
    if (keep && !a) {
        e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
        goto out;
    }
    for (size_t k = 0; k < nhit; k++) {
        mem_cand cd = {x->seq[hit[k]], -score[hit[k]]};
        size_t i;
        if (nk < keep) {
            for (i = nk++; i && cand_by_score(&a[(i - 1) / 2], &cd) < 0; i = (i - 1) / 2)
                a[i] = a[(i - 1) / 2];
            a[i] = cd;
            continue;
        }
        if (cand_by_score(&cd, &a[0]) >= 0)
            continue; /* no better than the worst kept */
        for (i = 0;;) {
            size_t l = 2 * i + 1, r = l + 1, m = i;
            const mem_cand *mc = &cd;
            if (l < nk && cand_by_score(&a[l], mc) > 0)
                m = l, mc = &a[l];
            if (r < nk && cand_by_score(&a[r], mc) > 0)
                m = r;
            if (m == i)
                break;
            a[i] = a[m];
            i = m;
        }
        a[i] = cd;
    }
    if (nk)
        qsort(a, nk, sizeof *a, cand_by_score);
    *c = a;
    *n = nk;
out:
    free(f);
    free(score);
    free(touched);
    free(hit);
    free(lex[0]);
    free(lex);
    free(prefix);
    return e;
}
