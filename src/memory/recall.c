/*
 * recall.c - finding the memories that matter for a query (mem_search) and
 * putting them into a prompt (mem_format_block).
 *
 * mem_search asks the backend for two ranked lists, full-text (BM25 over the
 * query's terms, see text.c) and, when the query has an embedding, cosine
 * similarity, and fuses them by reciprocal rank: score = sum over lists of
 * 1 / (60 + rank). With a recency weight w, a third list ranks the
 * candidates by time (newest first) and adds w / (60 + rank). A name of one
 * of the user's speakers in the query is taken out of its terms (it would
 * match every greeting of that person) and that speaker's memories get their
 * score times 1.3 instead. Memories with
 * the same normalised text count once (the best), and each hit that is a
 * turn of a conversation carries its neighbouring turns as context. The
 * fusion lives here, above the backend table, so every backend recalls the
 * same way.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory_int.h"

#define RRF_K 60.0
/* a memory said by a speaker the query names: its fused score times 1.3 */
#define SPEAKER_BOOST 0.3

void mem_query_init(mem_query *q)
{
    memset(q, 0, sizeof *q);
    q->top_k = 10;
}

void mem_hits_free(mem_hit *h, size_t n)
{
    for (size_t i = 0; h && i < n; i++) {
        mem_memory_clear(&h[i].m);
        mem_memories_free(h[i].context, h[i].n_context);
    }
    free(h);
}

typedef struct {
    int64_t seq;
    size_t idx; /* its memory in the candidates read */
    double score;
    int32_t lex_rank, vec_rank;
    double sim;
    int64_t t;
} fused;

static fused *find_or_add(fused *f, size_t *n, int64_t seq)
{
    for (size_t i = 0; i < *n; i++)
        if (f[i].seq == seq)
            return &f[i];
    fused *x = &f[(*n)++];
    memset(x, 0, sizeof *x);
    x->seq = seq;
    return x;
}

static int by_score(const void *a, const void *b)
{
    const fused *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0; /* newer first on ties */
}

static int by_time(const void *a, const void *b)
{
    const fused *x = *(fused *const *)a, *y = *(fused *const *)b;
    return x->t < y->t ? 1 : x->t > y->t ? -1 : 0;
}

vt_err mem_search(mem_store *s, const char *user, const mem_query *q, mem_hit **hits, size_t *n)
{
    *hits = NULL;
    *n = 0;
    vt_err e = mem_valid_key(user, "user", MEM_USER_MAX);
    if (e)
        return e;
    if (!q || (!q->text && !q->embedding))
        return vt_fail(VT_ERR_INVALID, "search: no query text or embedding");
    if (q->text) {
        size_t len = strlen(q->text);
        if (len > MEM_TEXT_MAX)
            return vt_fail(VT_ERR_RANGE, "search: query of %zu bytes, at most %d", len,
                           MEM_TEXT_MAX);
        if (!mem_utf8_valid(q->text, len))
            return vt_fail(VT_ERR_INVALID, "search: query is not valid UTF-8");
    }
    int32_t top = q->top_k ? q->top_k : 10;
    if (top < 1 || top > MEM_TOP_MAX)
        return vt_fail(VT_ERR_RANGE, "search: top_k %d, expected 1..%d", top, MEM_TOP_MAX);
    float *qe = NULL;
    if (q->embedding) {
        if (q->n_embd < 1 || q->n_embd > MEM_EMBD_MAX)
            return vt_fail(VT_ERR_RANGE, "search: embedding of %d dimensions, expected 1..%d",
                           q->n_embd, MEM_EMBD_MAX);
        double ss = 0;
        for (int32_t i = 0; i < q->n_embd; i++) {
            if (!isfinite(q->embedding[i]))
                return vt_fail(VT_ERR_INVALID, "search: embedding value %d is not finite", i);
            ss += (double)q->embedding[i] * q->embedding[i];
        }
        if (!(ss > 0))
            return vt_fail(VT_ERR_INVALID, "search: embedding is all zeros");
        if (!(qe = malloc(sizeof *qe * (size_t)q->n_embd)))
            return vt_fail(VT_ERR_NOMEM, "search: out of memory");
        for (int32_t i = 0; i < q->n_embd; i++)
            qe[i] = (float)(q->embedding[i] / sqrt(ss));
    }
    int32_t limit = top * 5 < 50 ? 50 : top * 5;
    const double speaker_boost = SPEAKER_BOOST;
    mem_term *terms = NULL;
    size_t nt = 0, nl = 0, nv = 0, nf = 0, nh = 0, nsp = 0;
    mem_cand *lex = NULL, *vec = NULL;
    fused *f = NULL;
    mem_memory *mems = NULL;
    mem_hit *h = NULL;
    char **keys = NULL, **speakers = NULL;
    bool *named = NULL;
    if (q->text && s->be->speakers && (e = s->be->speakers(s, user, &speakers, &nsp)))
        goto out;
    if (nsp && !(named = calloc(nsp, sizeof *named))) {
        e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
        goto out;
    }
    if ((e = mem_query_terms_named(q->text, speakers, nsp, named, &terms, &nt)))
        goto out;
    if (nt && (e = s->be->lexical(s, user, terms, nt, limit, &lex, &nl)))
        goto out;
    if (qe && (e = s->be->vector(s, user, qe, q->n_embd, limit, &vec, &nv)))
        goto out;
    if (!nl && !nv)
        goto out;
    f = calloc(nl + nv, sizeof *f);
    mems = calloc(nl + nv, sizeof *mems);
    if (!f || !mems) {
        e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nl; i++) {
        fused *x = find_or_add(f, &nf, lex[i].seq);
        x->lex_rank = (int32_t)i + 1;
        x->score += 1.0 / (RRF_K + (double)i + 1);
    }
    for (size_t i = 0; i < nv; i++) {
        fused *x = find_or_add(f, &nf, vec[i].seq);
        x->vec_rank = (int32_t)i + 1;
        x->sim = vec[i].score;
        x->score += 1.0 / (RRF_K + (double)i + 1);
    }
    /* read the candidates (a memory deleted meanwhile drops out) */
    size_t kept = 0;
    for (size_t i = 0; i < nf; i++) {
        if (s->be->get_seq(s, user, f[i].seq, &mems[kept]))
            continue;
        f[kept] = f[i];
        f[kept].idx = kept;
        f[kept].t = mems[kept].event_time != MEM_TIME_NONE ? mems[kept].event_time
                                                           : mems[kept].updated;
        kept++;
    }
    nf = kept;
    /* the person the query names said it, more likely than not */
    for (size_t i = 0; i < nf && speaker_boost > 0; i++) {
        const char *sp = mems[i].speaker;
        for (size_t k = 0; sp && k < nsp; k++)
            if (named[k] && !strcmp(speakers[k], sp)) {
                f[i].score *= 1.0 + speaker_boost;
                break;
            }
    }
    if (q->recency_weight > 0) {
        fused **order = malloc(sizeof *order * nf);
        if (!order) {
            e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
            goto out;
        }
        for (size_t i = 0; i < nf; i++)
            order[i] = &f[i];
        qsort(order, nf, sizeof *order, by_time);
        for (size_t i = 0; i < nf; i++)
            order[i]->score += q->recency_weight / (RRF_K + (double)i + 1);
        free(order);
    }
    qsort(f, nf, sizeof *f, by_score);
    h = calloc((size_t)top, sizeof *h);
    keys = calloc((size_t)top, sizeof *keys);
    if (!h || !keys) {
        e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
        goto out;
    }
    int32_t radius = q->context < 0 ? 0 : q->context == 0 ? 1 : q->context;
    for (size_t i = 0; i < nf && nh < (size_t)top; i++) {
        mem_memory *m = &mems[f[i].idx];
        char *key = mem_dedup_key(m->text);
        if (!key) {
            e = vt_fail(VT_ERR_NOMEM, "search: out of memory");
            goto out;
        }
        bool dup = false;
        for (size_t k = 0; k < nh && !dup; k++)
            dup = !strcmp(keys[k], key);
        if (dup) {
            free(key);
            continue;
        }
        mem_hit *x = &h[nh];
        keys[nh] = key;
        x->m = *m;
        memset(m, 0, sizeof *m); /* moved */
        x->score = f[i].score;
        x->lexical_rank = f[i].lex_rank;
        x->vector_rank = f[i].vec_rank;
        x->similarity = f[i].sim;
        nh++;
        if (radius && x->m.conversation && x->m.message_index >= 0 &&
            (e = s->be->neighbours(s, user, x->m.conversation, x->m.message_index, radius,
                                   &x->context, &x->n_context)))
            goto out;
    }
out:
    if (e) {
        mem_hits_free(h, nh);
        h = NULL;
        nh = 0;
    }
    for (size_t k = 0; keys && k < nh; k++)
        free(keys[k]);
    free(keys);
    free(qe);
    free(named);
    mem_terms_free(terms, nt);
    mem_memories_free(mems, nl + nv);
    free(lex);
    free(vec);
    free(f);
    if (!e) {
        *hits = h;
        *n = nh;
        if (!nh) {
            free(h);
            *hits = NULL;
        }
    }
    return e;
}

/* ---- the prompt block ---- */

static size_t default_count(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    (void)text;
    return (len + 3) / 4;
}

/* one "- [date] who: text" line (newlines as spaces) */
static void memory_line(vt_buf *b, const mem_memory *m)
{
    vt_buf_add(b, "- ", 2);
    if (m->event_time != MEM_TIME_NONE) {
        char iso[40];
        mem_time_format(m->event_time, iso, sizeof iso);
        vt_buf_add(b, "[", 1);
        vt_buf_add(b, iso, 10);
        vt_buf_add(b, "] ", 2);
    }
    const char *who = m->speaker ? m->speaker : mem_kind_name(m->kind);
    vt_buf_add(b, who, strlen(who));
    vt_buf_add(b, ": ", 2);
    for (const char *p = m->text; *p; p++)
        vt_buf_add(b, *p == '\n' || *p == '\r' || *p == '\t' ? " " : p, 1);
    vt_buf_add(b, "\n", 1);
}

vt_err mem_format_block(const char *profile, const mem_hit *hits, size_t n, size_t budget,
                        mem_count_fn count, void *ctx, char **block, const char ***used,
                        size_t *n_used)
{
    *block = NULL;
    *used = NULL;
    *n_used = 0;
    if (!count)
        count = default_count;
    static const char head[] = "<memory>\n", tail[] = "</memory>\n",
                      mhead[] = "Memories (most relevant first):\n", phead[] = "Profile:\n";
    vt_buf b = {0};
    const char **ids = n ? malloc(sizeof *ids * n) : NULL;
    if (n && !ids)
        return vt_fail(VT_ERR_NOMEM, "memory block: out of memory");
    size_t used_tokens = count(ctx, head, sizeof head - 1) + count(ctx, tail, sizeof tail - 1);
    vt_buf_add(&b, head, sizeof head - 1);
    bool any = false;
    if (profile && *profile) {
        vt_buf p = {0};
        vt_buf_add(&p, phead, sizeof phead - 1);
        vt_buf_add(&p, profile, strlen(profile));
        if (p.len && p.p[p.len - 1] != '\n')
            vt_buf_add(&p, "\n", 1);
        size_t t = p.oom ? SIZE_MAX : count(ctx, p.p, p.len);
        if (!p.oom && used_tokens + t <= budget) {
            vt_buf_add(&b, p.p, p.len);
            used_tokens += t;
            any = true;
        }
        free(p.p);
    }
    size_t mh = count(ctx, mhead, sizeof mhead - 1);
    bool header = false;
    for (size_t i = 0; i < n; i++) {
        vt_buf line = {0};
        memory_line(&line, &hits[i].m);
        if (line.oom) {
            free(line.p);
            break;
        }
        size_t t = count(ctx, line.p, line.len) + (header ? 0 : mh);
        if (used_tokens + t > budget) {
            free(line.p);
            continue; /* a shorter one further down may still fit */
        }
        if (!header) {
            vt_buf_add(&b, mhead, sizeof mhead - 1);
            header = true;
        }
        vt_buf_add(&b, line.p, line.len);
        free(line.p);
        used_tokens += t;
        ids[(*n_used)++] = hits[i].m.id;
        any = true;
    }
    vt_buf_add(&b, tail, sizeof tail - 1);
    if (b.oom) {
        free(b.p);
        free(ids);
        *n_used = 0;
        return vt_fail(VT_ERR_NOMEM, "memory block: out of memory");
    }
    if (!any || used_tokens > budget) {
        free(b.p);
        free(ids);
        *n_used = 0;
        if (!(*block = strdup("")))
            return vt_fail(VT_ERR_NOMEM, "memory block: out of memory");
        return VT_OK;
    }
    *block = b.p;
    *used = ids;
    if (!*n_used) {
        free(ids);
        *used = NULL;
    }
    return VT_OK;
}
