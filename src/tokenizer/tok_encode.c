/*
 * tok_encode.c - tok_encode(): special-token partitioning, then SPM or BPE
 * on each stretch of plain text, plus BOS/EOS; and the shared machinery of
 * the merge loops (working memory, the pair heap, the output vector).
 *
 * Partitioning follows llama.cpp's tokenizer_st_partition exactly: special
 * tokens are taken one after another, longest first, and each splits every
 * remaining stretch of plain text at its leftmost non-overlapping
 * occurrences (dropping whitespace beside it for tokens marked LSTRIP or
 * RSTRIP). That is computed here in one scan of the text that collects every
 * occurrence of every candidate token (indexed by their first two bytes),
 * followed by a pass over the occurrences in that same order, accepting an
 * occurrence when none of its bytes has been taken yet. Text without any
 * candidate is a single stretch at the cost of the scan.
 */
#include <stdlib.h>

#include "tok_internal.h"

/* ---- output vector ---- */

bool tok_idvec_push(tok_idvec *v, int32_t id)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *ids = realloc(v->ids, cap * sizeof *ids);
        if (!ids)
            return false;
        v->ids = ids;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return true;
}

/* ---- working memory ---- */

static bool grow(void **p, size_t need, size_t elem)
{
    void *np = realloc(*p, need * elem);
    if (!np)
        return false;
    *p = np;
    return true;
}

bool tok_scratch_cpts(tok_scratch *s, size_t n)
{
    if (n + 1 <= s->cap_cpt)
        return true;
    size_t cap = n + 1 + n / 2;
    if (!grow((void **)&s->cpt, cap, sizeof *s->cpt) ||
        !grow((void **)&s->off, cap, sizeof *s->off) ||
        !grow((void **)&s->ends, cap, sizeof *s->ends) ||
        !grow((void **)&s->ends2, cap, sizeof *s->ends2) ||
        !grow((void **)&s->fl, cap, sizeof *s->fl))
        return false;
    s->cap_cpt = cap;
    return true;
}

bool tok_scratch_bytes(tok_scratch *s, size_t n)
{
    if (n <= s->cap_bytes)
        return true;
    size_t cap = n + n / 2;
    if (!grow((void **)&s->bytes, cap, 1))
        return false;
    s->cap_bytes = cap;
    return true;
}

bool tok_scratch_syms(tok_scratch *s, size_t n)
{
    if (n <= s->cap_sym)
        return true;
    size_t cap = n + n / 2 + 16;
    if (!grow((void **)&s->sym_id, cap, sizeof *s->sym_id) ||
        !grow((void **)&s->sym_start, cap, sizeof *s->sym_start) ||
        !grow((void **)&s->sym_len, cap, sizeof *s->sym_len) ||
        !grow((void **)&s->sym_prev, cap, sizeof *s->sym_prev) ||
        !grow((void **)&s->sym_next, cap, sizeof *s->sym_next))
        return false;
    s->cap_sym = cap;
    return true;
}

void tok_scratch_free(tok_scratch *s)
{
    free(s->cpt);
    free(s->off);
    free(s->ends);
    free(s->ends2);
    free(s->fl);
    free(s->bytes);
    free(s->sym_id);
    free(s->sym_start);
    free(s->sym_len);
    free(s->sym_prev);
    free(s->sym_next);
    free(s->heap);
    memset(s, 0, sizeof *s);
}

/* ---- the pair heap: SPM pops the highest score, BPE the lowest rank; ties
 * go to the leftmost pair ---- */

static inline bool before(const tok_pair *a, const tok_pair *b, bool spm)
{
    if (spm) {
        if (a->key != b->key)
            return a->key > b->key;
    } else if (a->rank != b->rank) {
        return a->rank < b->rank;
    }
    return a->left < b->left;
}

bool tok_heap_push(tok_scratch *s, const tok_pair *p, bool spm)
{
    if (s->n_heap == s->cap_heap) {
        size_t cap = s->cap_heap ? s->cap_heap * 2 : 64;
        tok_pair *h = realloc(s->heap, cap * sizeof *h);
        if (!h)
            return false;
        s->heap = h;
        s->cap_heap = cap;
    }
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(p, &s->heap[parent], spm))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = *p;
    return true;
}

tok_pair tok_heap_pop(tok_scratch *s, bool spm)
{
    tok_pair top = s->heap[0];
    tok_pair last = s->heap[--s->n_heap];
    size_t n = s->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(&s->heap[c + 1], &s->heap[c], spm))
            c++;
        if (!before(&s->heap[c], &last, spm))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n)
        s->heap[i] = last;
    return top;
}

/* ---- special-token partitioning ---- */

typedef struct {
    uint32_t order; /* index in t->special: the order llama.cpp tries them */
    uint32_t pos;
} occurrence;

static int cmp_occ(const void *a, const void *b)
{
    const occurrence *x = a, *y = b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_pos(const void *a, const void *b)
{
    const occurrence *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static inline bool usable(const tok_tokenizer *t, int32_t id, bool parse_special)
{
    return parse_special || !(t->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN));
}

static inline bool c_isspace(uint8_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* A fragment: plain text [start, end), or a token (id >= 0). */
typedef struct {
    uint32_t start, end;
    int32_t id;
} fragment;

/* Splits text into fragments; *frags is malloc'ed (caller frees). */
static bool partition(const tok_tokenizer *t, const uint8_t *text, size_t len, bool parse_special,
                      fragment **frags, size_t *n_frags)
{
    *frags = NULL;
    *n_frags = 0;
    occurrence *occ = NULL;
    size_t n_occ = 0, cap_occ = 0;
    for (size_t p = 0; p < len; p++) {
        int32_t heads[2] = {t->special_head1[text[p]],
                            p + 1 < len ? t->special_head2[text[p] << 8 | text[p + 1]] : -1};
        for (int h = 0; h < 2; h++) {
            for (int32_t k = heads[h]; k >= 0; k = t->special_next[k]) {
                int32_t id = t->special[k];
                uint32_t l = t->text_len[id];
                if (l > len - p || !usable(t, id, parse_special) ||
                    memcmp(text + p, t->text_arena + t->text_off[id], l))
                    continue;
                if (n_occ == cap_occ) {
                    cap_occ = cap_occ ? cap_occ * 2 : 16;
                    occurrence *o = realloc(occ, cap_occ * sizeof *o);
                    if (!o) {
                        free(occ);
                        return false;
                    }
                    occ = o;
                }
                occ[n_occ++] = (occurrence){(uint32_t)k, (uint32_t)p};
            }
        }
    }
    if (n_occ == 0) {
        free(occ);
        if (len == 0)
            return true;
        if (!(*frags = malloc(sizeof **frags)))
            return false;
        (*frags)[0] = (fragment){0, (uint32_t)len, -1};
        *n_frags = 1;
        return true;
    }
    qsort(occ, n_occ, sizeof *occ, cmp_occ);
    /* taken[i]: 0 plain, 1 inside a token, 2 start of a token, 3 stripped */
    uint8_t *taken = calloc(len, 1);
    occurrence *acc = malloc(sizeof *acc * n_occ); /* accepted: {id, pos} */
    fragment *f = NULL;
    size_t n_acc = 0;
    if (!taken || !acc)
        goto oom;
    for (size_t i = 0; i < n_occ; i++) {
        int32_t id = t->special[occ[i].order];
        size_t p = occ[i].pos, l = t->text_len[id];
        size_t j = p;
        while (j < p + l && !taken[j])
            j++;
        if (j < p + l)
            continue;
        memset(taken + p, 1, l);
        taken[p] = 2;
        acc[n_acc++] = (occurrence){(uint32_t)id, (uint32_t)p};
        if (t->attr[id] & TOK_ATTR_LSTRIP)
            for (size_t q = p; q > 0 && !taken[q - 1] && c_isspace(text[q - 1]); q--)
                taken[q - 1] = 3;
        if (t->attr[id] & TOK_ATTR_RSTRIP)
            for (size_t q = p + l; q < len && !taken[q] && c_isspace(text[q]); q++)
                taken[q] = 3;
    }
    /* in text order, at most one plain fragment before each token and one
     * at the end */
    qsort(acc, n_acc, sizeof *acc, cmp_pos);
    if (!(f = malloc(sizeof *f * (2 * n_acc + 1))))
        goto oom;
    size_t nf = 0, k = 0;
    for (size_t p = 0; p < len;) {
        if (taken[p] == 0) {
            size_t q = p;
            while (q < len && taken[q] == 0)
                q++;
            f[nf++] = (fragment){(uint32_t)p, (uint32_t)q, -1};
            p = q;
        } else if (taken[p] == 2) {
            int32_t id = (int32_t)acc[k++].order;
            f[nf++] = (fragment){(uint32_t)p, (uint32_t)(p + t->text_len[id]), id};
            p += t->text_len[id];
        } else {
            p++;
        }
    }
    free(occ);
    free(taken);
    free(acc);
    *frags = f;
    *n_frags = nf;
    return true;
oom:
    free(occ);
    free(taken);
    free(acc);
    return false;
}

vt_err tok_encode(const tok_tokenizer *t, const char *text, size_t len, bool add_special,
                  bool parse_special, int32_t **ids, size_t *n_ids)
{
    if (!ids || !n_ids)
        return vt_fail(VT_ERR_INVALID, "tok_encode: NULL output");
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len))
        return vt_fail(VT_ERR_INVALID, "tok_encode: NULL argument");
    if (len > UINT32_MAX / 4)
        return vt_fail(VT_ERR_INVALID, "tok_encode: text of %zu bytes is too long", len);
    const uint8_t *s = (const uint8_t *)text;
    tok_idvec out = {0};
    tok_scratch sc = {0};
    fragment *fr = NULL;
    size_t nf = 0;
    bool ok = partition(t, s, len, parse_special, &fr, &nf);
    if (ok && add_special && t->add_bos && t->bos >= 0)
        ok = tok_idvec_push(&out, t->bos);
    bool prev_special = true; /* SPM: prefix a space at the start and after specials */
    for (size_t i = 0; ok && i < nf; i++) {
        if (fr[i].id >= 0) {
            ok = tok_idvec_push(&out, fr[i].id);
            prev_special = true;
            continue;
        }
        const uint8_t *p = s + fr[i].start;
        size_t l = fr[i].end - fr[i].start;
        if (t->type == TOK_VOCAB_SPM)
            ok = tok_spm_encode(t, &sc, p, l, t->add_space_prefix && prev_special, &out);
        else
            ok = tok_bpe_encode(t, &sc, p, l, &out);
        prev_special = false;
    }
    if (ok && add_special && t->add_eos && t->eos >= 0)
        ok = tok_idvec_push(&out, t->eos);
    free(fr);
    tok_scratch_free(&sc);
    if (!ok) {
        free(out.ids);
        return vt_fail(VT_ERR_NOMEM, "tok_encode: out of memory (%zu bytes of text)", len);
    }
    *ids = out.ids;
    *n_ids = out.n;
    return VT_OK;
}

size_t tok_count(const tok_tokenizer *t, const char *text, size_t len)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok_encode(t, text, len, false, false, &ids, &n) != VT_OK)
        return len / 2 + 1;
    free(ids);
    return n;
}
