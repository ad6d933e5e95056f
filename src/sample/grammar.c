/*
 * grammar.c - the grammar matcher (grammar.h): vocabularies and their token
 * trie, compiled grammars with their mask cache, per-sequence states.
 *
 * A state is a set of stacks. A stack is a list of positions in the element
 * table (grammar_int.h): return positions, bottom first, then the top, which
 * is always a GR_CLASS element (expansion runs eagerly after every step),
 * plus the partial UTF-8 character matched so far against that class. A
 * reference whose return position is a GR_END is not pushed (tail calls),
 * so right recursion (x* and friends) keeps stacks flat. A set that holds
 * the "done" flag means the whole grammar can end here.
 *
 * Masks. A context is a stack's top, its partial character and its nearest
 * GR_CTX_FRAMES return positions. For each context the vocabulary trie is
 * walked once, depth first, carrying the set of stacks that started from the
 * context alone ("exact" stacks) and pruning a subtree as soon as the set is
 * empty. A token that an exact stack can take completely is accepted in every
 * real stack with that context. A token whose paths all leave the context
 * (pop past its bottom frame) is "uncertain": from there the walk goes on
 * "approximately", through every place the finished rule is used (its follow
 * positions), and only tokens some such path survives are kept as
 * uncertain; the rest are rejected everywhere. At run time a mask is the
 * union of the contexts' accepted sets plus the uncertain tokens checked
 * against the real stack, walked in trie order so that shared prefixes are
 * matched once.
 *
 * Both walks step through a lazy DFA: every distinct set of stacks a walk
 * meets is interned once per grammar with its successor for each byte
 * filled on first use, so walking the ~350,000 trie nodes of a 128k
 * vocabulary costs a table lookup per node once the sets along the way are
 * known (a JSON string's contents are a handful of sets).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"
#include "sample/grammar_int.h"
#include "util/util.h"

#define GR_MAX_STACK 512     /* positions in one stack; deeper paths die */
#define GR_MAX_SET 4096      /* stacks in one set; more is refused */
#define GR_CTX_FRAMES 4      /* return frames in a context key */
#define GR_MAX_TOKEN 1024    /* longer tokens are never allowed */
#define GR_MAX_CONTEXTS 2048 /* cached contexts per grammar (a dense one is n_vocab bits) */
#define GR_VOCAB_CACHE 8     /* compiled grammars kept per vocabulary */

enum { M_REAL = 0, M_EXACT = 1, M_APPROX = 2 };

/* ---- sets of stacks ---- */

/* Each stack: [len, mode, partial, frames[len]] (top = frames[len-1]). */
typedef struct {
    uint32_t *w;
    size_t n_w, cap_w;
    uint32_t n;       /* stacks */
    uint32_t n_exact; /* stacks in M_EXACT (or M_REAL) */
    uint32_t n_approx;
    bool done;        /* M_REAL: the grammar is complete; M_EXACT: the context finished */
    bool approx_done; /* an approximate path reached the end of the grammar */
    bool overflow;    /* a path was dropped for depth or set size */
    uint64_t *hash;   /* [n] for deduplication */
    size_t cap_hash;
} sset;

static void sset_clear(sset *s)
{
    s->n_w = 0;
    s->n = s->n_exact = s->n_approx = 0;
    s->done = s->approx_done = s->overflow = false;
}

static void sset_free(sset *s)
{
    free(s->w);
    free(s->hash);
    memset(s, 0, sizeof *s);
}

static bool sset_empty(const sset *s)
{
    return s->n == 0 && !s->done && !s->approx_done;
}

static uint64_t hash_words(const uint32_t *w, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t k = 0; k < n; k++)
        h = (h ^ w[k]) * 0x100000001B3ull, h ^= h >> 29;
    return h;
}

/* Adds a stack (deduplicated). false on OOM only. */
static bool sset_add(sset *s, uint32_t mode, uint32_t partial, const uint32_t *fr, uint32_t len,
                     uint32_t top)
{
    uint32_t hdr[3] = {len + 1, mode, partial};
    uint64_t h = hash_words(hdr, 3) ^ (hash_words(fr, len) * 31) ^ ((uint64_t)top << 32);
    size_t off = 0;
    for (uint32_t k = 0; k < s->n; k++) {
        uint32_t l = s->w[off];
        if (s->hash[k] == h && l == len + 1 && s->w[off + 1] == mode && s->w[off + 2] == partial &&
            s->w[off + 3 + len] == top && !memcmp(s->w + off + 3, fr, len * sizeof *fr))
            return true;
        off += 3 + l;
    }
    if (s->n >= GR_MAX_SET) {
        s->overflow = true;
        return true;
    }
    size_t need = s->n_w + 4 + len;
    if (need > s->cap_w) {
        size_t cap = VT_MAX(need * 2, (size_t)64);
        uint32_t *nw = realloc(s->w, cap * sizeof *nw);
        if (!nw)
            return false;
        s->w = nw;
        s->cap_w = cap;
    }
    if (s->n + 1 > s->cap_hash) {
        size_t cap = VT_MAX((size_t)s->n * 2 + 2, (size_t)16);
        uint64_t *nh = realloc(s->hash, cap * sizeof *nh);
        if (!nh)
            return false;
        s->hash = nh;
        s->cap_hash = cap;
    }
    uint32_t *d = s->w + s->n_w;
    d[0] = len + 1;
    d[1] = mode;
    d[2] = partial;
    memcpy(d + 3, fr, len * sizeof *fr);
    d[3 + len] = top;
    s->n_w = need;
    s->hash[s->n++] = h;
    if (mode == M_APPROX)
        s->n_approx++;
    else
        s->n_exact++;
    return true;
}

static bool sset_copy(sset *d, const sset *s)
{
    sset_clear(d);
    if (s->n_w > d->cap_w) {
        uint32_t *nw = realloc(d->w, s->n_w * sizeof *nw);
        if (!nw)
            return false;
        d->w = nw;
        d->cap_w = s->n_w;
    }
    if (s->n > d->cap_hash) {
        uint64_t *nh = realloc(d->hash, s->n * sizeof *nh);
        if (!nh)
            return false;
        d->hash = nh;
        d->cap_hash = s->n;
    }
    if (s->n_w)
        memcpy(d->w, s->w, s->n_w * sizeof *d->w);
    if (s->n)
        memcpy(d->hash, s->hash, s->n * sizeof *d->hash);
    d->n_w = s->n_w;
    d->n = s->n;
    d->n_exact = s->n_exact;
    d->n_approx = s->n_approx;
    d->done = s->done;
    d->approx_done = s->approx_done;
    d->overflow = s->overflow;
    return true;
}

/* ---- vocabulary ---- */

typedef struct {
    uint8_t byte;
    uint16_t depth;   /* bytes from the root, >= 1 */
    uint32_t end;     /* first node after this subtree */
    uint32_t tok_first, tok_n; /* tokens ending here: sorted[tok_first ..] */
} trie_node;

typedef struct {
    smp_grammar_kind kind;
    char *text;
    size_t len;
    smp_grammar *g;
    uint64_t used;
} cache_entry;

struct smp_grammar_vocab {
    int32_t n_vocab;
    uint32_t *off; /* [n_vocab + 1] */
    uint8_t *bytes;
    int32_t *sorted; /* non-empty tokens in byte order */
    uint32_t n_sorted;
    trie_node *node;
    uint32_t n_nodes;
    uint32_t max_len;
    pthread_mutex_t mu;
    cache_entry cache[GR_VOCAB_CACHE];
    uint64_t clock;
};

static const smp_grammar_vocab *sort_vocab; /* qsort has no context argument */

static int cmp_tok(const void *a, const void *b)
{
    const smp_grammar_vocab *v = sort_vocab;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = v->off[x + 1] - v->off[x], ly = v->off[y + 1] - v->off[y];
    int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], VT_MIN(lx, ly));
    if (c)
        return c;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;

vt_err smp_grammar_vocab_create(int32_t n_vocab, const char *const *piece, const size_t *len,
                                smp_grammar_vocab **out)
{
    *out = NULL;
    if (n_vocab <= 0 || !piece || !len)
        return vt_fail(VT_ERR_INVALID, "grammar vocabulary: %d tokens", (int)n_vocab);
    smp_grammar_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return vt_fail(VT_ERR_NOMEM, "grammar vocabulary: out of memory");
    pthread_mutex_init(&v->mu, NULL);
    v->n_vocab = n_vocab;
    size_t total = 0;
    for (int32_t i = 0; i < n_vocab; i++)
        if (len[i] <= GR_MAX_TOKEN)
            total += len[i];
    if (total > UINT32_MAX / 2)
        goto nomem;
    v->off = malloc(sizeof *v->off * ((size_t)n_vocab + 1));
    v->bytes = malloc(total + 1);
    v->sorted = malloc(sizeof *v->sorted * (size_t)n_vocab);
    if (!v->off || !v->bytes || !v->sorted)
        goto nomem;
    uint32_t o = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        v->off[i] = o;
        if (len[i] > 0 && len[i] <= GR_MAX_TOKEN && piece[i]) {
            memcpy(v->bytes + o, piece[i], len[i]);
            o += (uint32_t)len[i];
            v->sorted[v->n_sorted++] = i;
            v->max_len = VT_MAX(v->max_len, (uint32_t)len[i]);
        }
    }
    v->off[n_vocab] = o;
    pthread_mutex_lock(&sort_mu);
    sort_vocab = v;
    qsort(v->sorted, v->n_sorted, sizeof *v->sorted, cmp_tok);
    pthread_mutex_unlock(&sort_mu);
    /* the trie in depth-first order: a token adds nodes past its common
     * prefix with the previous one */
    size_t cap = (size_t)total + 1;
    v->node = malloc(sizeof *v->node * cap);
    uint32_t *open = malloc(sizeof *open * ((size_t)v->max_len + 2));
    if (!v->node || !open) {
        free(open);
        goto nomem;
    }
    uint32_t n = 0, depth = 0; /* open[0..depth) = nodes on the current path */
    const uint8_t *prev = NULL;
    uint32_t prev_len = 0;
    for (uint32_t k = 0; k < v->n_sorted; k++) {
        int32_t t = v->sorted[k];
        const uint8_t *b = v->bytes + v->off[t];
        uint32_t l = v->off[t + 1] - v->off[t], lcp = 0;
        while (prev && lcp < l && lcp < prev_len && b[lcp] == prev[lcp])
            lcp++;
        if (prev && lcp == l && l == prev_len) { /* the same bytes again */
            v->node[open[depth - 1]].tok_n++;
            continue;
        }
        while (depth > lcp)
            v->node[open[--depth]].end = n;
        for (uint32_t d = lcp; d < l; d++) {
            v->node[n] = (trie_node){.byte = b[d], .depth = (uint16_t)(d + 1)};
            open[depth++] = n++;
        }
        v->node[n - 1].tok_first = k;
        v->node[n - 1].tok_n = 1;
        prev = b;
        prev_len = l;
    }
    while (depth > 0)
        v->node[open[--depth]].end = n;
    free(open);
    v->n_nodes = n;
    *out = v;
    return VT_OK;
nomem:
    smp_grammar_vocab_destroy(v);
    return vt_fail(VT_ERR_NOMEM, "grammar vocabulary: out of memory");
}

void smp_grammar_vocab_destroy(smp_grammar_vocab *v)
{
    if (!v)
        return;
    for (int k = 0; k < GR_VOCAB_CACHE; k++) {
        free(v->cache[k].text);
        smp_grammar_unref(v->cache[k].g);
    }
    pthread_mutex_destroy(&v->mu);
    free(v->off);
    free(v->bytes);
    free(v->sorted);
    free(v->node);
    free(v);
}

int32_t smp_grammar_vocab_size(const smp_grammar_vocab *v)
{
    return v->n_vocab;
}

/* ---- compiled grammars ---- */

typedef struct {
    uint32_t *key; /* [n_key] */
    uint32_t n_key;
    uint64_t h;
    uint64_t *acc_bits; /* dense accepted set, or NULL */
    int32_t *acc;       /* sparse accepted ids (when acc_bits is NULL) */
    uint32_t n_acc;
    int32_t *unc;       /* uncertain ids, in trie order */
    uint32_t n_unc;
} ctx_entry;

/* Scratch for walks and expansions (one per user: the grammar's own for
 * filling the cache under its lock, one per state for run-time checks). */
typedef struct {
    int32_t *lvl; /* [max_len + 2] DFA state ids along the current trie path */
    uint32_t n_lvl;
    sset tmp;     /* a step's result before it is interned */
    uint64_t *bits; /* [n_vocab / 64] scratch of a context's accepted tokens */
    uint32_t fr[GR_MAX_STACK + 1];
    uint32_t *stamp; /* [n_rules] visit marks of approximate pops */
    uint32_t cur_stamp;
    bool truncated; /* the context being walked had frames cut off */
    bool nomem;
} walker;

struct smp_grammar {
    atomic_int refs;
    gr_ir ir;
    const smp_grammar_vocab *v;
    uint32_t *fol_first, *fol; /* follow positions of each rule: fol[fol_first[r] ..] */
    pthread_mutex_t mu;        /* guards everything below */
    ctx_entry *ctx;
    uint32_t n_ctx, cap_ctx;
    uint32_t *slot; /* open addressing over ctx indices + 1 */
    uint32_t n_slot;
    uint64_t n_unc_total;
    walker w;
    /* the lazy DFA over sets of stacks: each distinct set met by a walk, its
     * flags, and its successors by byte (filled on first use) */
    struct dfa_state *ds;
    uint32_t n_ds, cap_ds;
    uint32_t *ds_slot; /* open addressing over ds ids + 1 */
    uint32_t n_ds_slot;
    bool too_complex; /* a walk met more than DFA_HARD_MAX sets */
};

#define DFA_DEAD (-2)    /* the empty set */
#define DFA_UNKNOWN (-1) /* not computed yet */
#define DFA_MAX_STATES 4096 /* the cache is emptied past this (between walks): ~1 KiB each */
#define DFA_HARD_MAX 65536  /* more within one walk: the grammar is refused as too complex */

typedef struct dfa_state {
    sset s;
    uint64_t h;
    bool truncated; /* expansions of M_EXACT stacks go on approximately */
    int32_t next[256];
} dfa_state;

static void dfa_clear(smp_grammar *g);

static bool walker_init(walker *w, const smp_grammar *g)
{
    memset(w, 0, sizeof *w);
    w->n_lvl = (g->v ? g->v->max_len : 0) + 2;
    w->lvl = calloc(w->n_lvl + 1, sizeof *w->lvl);
    w->stamp = calloc(g->ir.n_rules + 1, sizeof *w->stamp);
    return w->lvl && w->stamp;
}

static void walker_free(walker *w)
{
    free(w->lvl);
    free(w->bits);
    sset_free(&w->tmp);
    free(w->stamp);
    memset(w, 0, sizeof *w);
}

/* ---- expansion and byte steps ---- */

static void expand(const smp_grammar *g, walker *w, sset *out, uint32_t len, uint32_t pos,
                   uint32_t mode);

/* A stack popped past its bottom at the end of rule r. */
static void pop_bottom(const smp_grammar *g, walker *w, sset *out, uint32_t r, uint32_t mode)
{
    if (mode == M_REAL) {
        out->done = true;
        return;
    }
    if (mode == M_EXACT) {
        out->done = true;
        if (!w->truncated)
            return; /* the whole real stack ended: the grammar is complete */
    }
    if (w->stamp[r] == w->cur_stamp)
        return;
    w->stamp[r] = w->cur_stamp;
    if (r == g->ir.root)
        out->approx_done = true;
    for (uint32_t k = g->fol_first[r]; k < g->fol_first[r + 1]; k++)
        expand(g, w, out, 0, g->fol[k], M_APPROX);
}

/* Adds to out every stack reachable from frames w->fr[0..len) and position
 * pos without consuming input. */
static void expand(const smp_grammar *g, walker *w, sset *out, uint32_t len, uint32_t pos,
                   uint32_t mode)
{
    const gr_el *el = g->ir.el;
    switch (el[pos].kind) {
    case GR_CLASS:
        if (!sset_add(out, mode, 0, w->fr, len, pos))
            w->nomem = true;
        return;
    case GR_REF: {
        uint32_t nlen = len;
        if (el[pos + 1].kind != GR_END) {
            if (len >= GR_MAX_STACK) {
                out->overflow = true;
                return;
            }
            w->fr[len] = pos + 1;
            nlen = len + 1;
        }
        const gr_rule *r = &g->ir.rules[el[pos].arg];
        for (uint32_t a = 0; a < r->n_alts; a++) {
            if (nlen > len)
                w->fr[len] = pos + 1; /* a pop below may have reused the slot */
            expand(g, w, out, nlen, g->ir.alt_start[r->first_alt + a], mode);
        }
        return;
    }
    default: /* GR_END */
        if (len > 0) {
            uint32_t ret = w->fr[len - 1];
            expand(g, w, out, len - 1, ret, mode);
            w->fr[len - 1] = ret;
        } else {
            pop_bottom(g, w, out, g->ir.rule_of[pos], mode);
        }
        return;
    }
}

/* A top-level expansion (fresh visit marks). */
static void expand_root(const smp_grammar *g, walker *w, sset *out, uint32_t len, uint32_t pos,
                        uint32_t mode)
{
    if (++w->cur_stamp == 0) {
        memset(w->stamp, 0, sizeof *w->stamp * (g->ir.n_rules + 1));
        w->cur_stamp = 1;
    }
    expand(g, w, out, len, pos, mode);
}

#define PART(total, need, val) (((uint32_t)(total) << 28) | ((uint32_t)(need) << 24) | (val))

/* out = in after byte b (out cleared first). */
static void step(const smp_grammar *g, walker *w, const sset *in, uint8_t b, sset *out)
{
    sset_clear(out);
    size_t off = 0;
    for (uint32_t k = 0; k < in->n; k++) {
        const uint32_t *st = in->w + off;
        uint32_t l = st[0], mode = st[1], part = st[2];
        const uint32_t *fr = st + 3;
        uint32_t top = fr[l - 1], cls = g->ir.el[top].arg;
        off += 3 + l;
        uint32_t total, need, val;
        if (part == 0) {
            if (!(g->ir.classes[cls].lead[b >> 6] >> (b & 63) & 1))
                continue;
            if (b < 0x80) {
                total = 1, need = 0, val = b;
            } else if (b >= 0xC2 && b <= 0xDF) {
                total = 2, need = 1, val = b & 0x1F;
            } else if (b >= 0xE0 && b <= 0xEF) {
                total = 3, need = 2, val = b & 0x0F;
            } else if (b >= 0xF0 && b <= 0xF4) {
                total = 4, need = 3, val = b & 0x07;
            } else {
                continue;
            }
        } else {
            if ((b & 0xC0) != 0x80)
                continue;
            total = part >> 28;
            need = ((part >> 24) & 0xF) - 1;
            val = ((part & 0xFFFFFF) << 6) | (b & 0x3F);
        }
        static const uint32_t lo_of[5] = {0, 0, 0x80, 0x800, 0x10000};
        static const uint32_t hi_of[5] = {0, 0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
        if (need > 0) {
            uint32_t lo = val << (6 * need), hi = lo | ((1u << (6 * need)) - 1);
            lo = VT_MAX(lo, lo_of[total]);
            hi = VT_MIN(hi, hi_of[total]);
            if (lo > hi || !gr_class_meets(&g->ir, cls, lo, hi))
                continue;
            if (!sset_add(out, mode, PART(total, need, val), fr, l - 1, top))
                w->nomem = true;
            continue;
        }
        if (val < lo_of[total] || (val >= 0xD800 && val <= 0xDFFF) ||
            !gr_class_has(&g->ir, cls, val))
            continue;
        memcpy(w->fr, fr, (l - 1) * sizeof *fr);
        expand_root(g, w, out, l - 1, top + 1, mode);
    }
}

/* ---- compiling ---- */

static vt_err build_follow(smp_grammar *g)
{
    const gr_ir *ir = &g->ir;
    g->fol_first = calloc(ir->n_rules + 2, sizeof *g->fol_first);
    uint32_t n = 0;
    if (!g->fol_first)
        return vt_fail(VT_ERR_NOMEM, "grammar: out of memory");
    for (uint32_t q = 0; q < ir->n_el; q++)
        if (ir->el[q].kind == GR_REF) {
            g->fol_first[ir->el[q].arg + 1]++;
            n++;
        }
    for (uint32_t r = 0; r < ir->n_rules; r++)
        g->fol_first[r + 1] += g->fol_first[r];
    g->fol = malloc(sizeof *g->fol * (n + 1));
    uint32_t *fill = malloc(sizeof *fill * (ir->n_rules + 1));
    if (!g->fol || !fill) {
        free(fill);
        return vt_fail(VT_ERR_NOMEM, "grammar: out of memory");
    }
    memcpy(fill, g->fol_first, sizeof *fill * ir->n_rules);
    for (uint32_t q = 0; q < ir->n_el; q++)
        if (ir->el[q].kind == GR_REF)
            g->fol[fill[ir->el[q].arg]++] = q + 1;
    free(fill);
    return VT_OK;
}

static vt_err compile_gbnf(const char *text, size_t len, const smp_grammar_vocab *v,
                           smp_grammar **out)
{
    smp_grammar *g = calloc(1, sizeof *g);
    if (!g)
        return vt_fail(VT_ERR_NOMEM, "grammar: out of memory");
    atomic_init(&g->refs, 1);
    pthread_mutex_init(&g->mu, NULL);
    g->v = v;
    vt_err e = gr_parse(text, len, &g->ir);
    if (!e)
        e = build_follow(g);
    if (!e && !walker_init(&g->w, g))
        e = vt_fail(VT_ERR_NOMEM, "grammar: out of memory");
    if (e) {
        smp_grammar_unref(g);
        return e;
    }
    *out = g;
    return VT_OK;
}

vt_err smp_grammar_compile(smp_grammar_kind kind, const char *text, size_t len,
                           const smp_grammar_vocab *v, smp_grammar **out)
{
    *out = NULL;
    char *gbnf = NULL;
    vt_err e;
    switch (kind) {
    case SMP_GRAMMAR_GBNF:
        if (!text && len)
            return vt_fail(VT_ERR_INVALID, "grammar: no text");
        return compile_gbnf(text ? text : "", len, v, out);
    case SMP_GRAMMAR_JSON_SCHEMA:
        if (!text)
            return vt_fail(VT_ERR_INVALID, "json schema: no text");
        e = smp_json_schema_to_gbnf(text, len, &gbnf);
        break;
    case SMP_GRAMMAR_JSON_OBJECT:
        e = smp_json_schema_to_gbnf(NULL, 0, &gbnf);
        break;
    case SMP_GRAMMAR_REGEX:
        if (!text)
            return vt_fail(VT_ERR_INVALID, "regex: no text");
        e = smp_regex_to_gbnf(text, len, &gbnf);
        break;
    default:
        return vt_fail(VT_ERR_INVALID, "grammar: unknown kind %d", (int)kind);
    }
    if (e)
        return e;
    e = compile_gbnf(gbnf, strlen(gbnf), v, out);
    if (e)
        e = vt_fail(VT_ERR_INTERNAL, "grammar: the generated GBNF does not compile: %s",
                    vt_last_error());
    free(gbnf);
    return e;
}

smp_grammar *smp_grammar_ref(smp_grammar *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void smp_grammar_unref(smp_grammar *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    for (uint32_t k = 0; k < g->n_ctx; k++) {
        free(g->ctx[k].key);
        free(g->ctx[k].acc_bits);
        free(g->ctx[k].acc);
        free(g->ctx[k].unc);
    }
    free(g->ctx);
    free(g->slot);
    dfa_clear(g);
    free(g->ds);
    free(g->ds_slot);
    walker_free(&g->w);
    free(g->fol_first);
    free(g->fol);
    gr_ir_free(&g->ir);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

bool smp_grammar_bounded(const smp_grammar *g)
{
    /* a cycle among the rules reachable from the root: iterative DFS, colour
     * 1 = on the path, 2 = done; edges are the GR_REF elements of a rule */
    const gr_ir *ir = &g->ir;
    uint8_t *col = calloc(ir->n_rules, 1);
    uint32_t *stack = malloc(sizeof *stack * (ir->n_rules + 1));
    uint32_t *at = malloc(sizeof *at * (ir->n_rules + 1));
    bool bounded = col && stack && at;
    if (bounded) {
        uint32_t sp = 0;
        stack[0] = ir->root;
        at[0] = ir->alt_start[ir->rules[ir->root].first_alt];
        col[ir->root] = 1;
        while (bounded) {
            uint32_t r = stack[sp], q = at[sp];
            /* the next GR_REF of r's alternatives from q on (they are contiguous) */
            uint32_t last = ir->rules[r].n_alts
                                ? ir->alt_start[ir->rules[r].first_alt + ir->rules[r].n_alts - 1]
                                : q;
            while (q < ir->n_el && !(ir->el[q].kind == GR_REF) &&
                   !(ir->el[q].kind == GR_END && q >= last))
                q++;
            if (q >= ir->n_el || ir->el[q].kind == GR_END) {
                col[r] = 2;
                if (sp == 0)
                    break;
                sp--;
                continue;
            }
            at[sp] = q + 1;
            uint32_t c = ir->el[q].arg;
            if (col[c] == 1)
                bounded = false;
            else if (col[c] == 0) {
                col[c] = 1;
                stack[++sp] = c;
                at[sp] = ir->alt_start[ir->rules[c].first_alt];
            }
        }
    }
    free(col);
    free(stack);
    free(at);
    return bounded;
}

int32_t smp_grammar_n_vocab(const smp_grammar *g)
{
    return g->v ? g->v->n_vocab : -1;
}

uint32_t smp_grammar_n_rules(const smp_grammar *g)
{
    return g->ir.n_rules;
}

void smp_grammar_cache_stats(const smp_grammar *g, uint32_t *contexts, uint64_t *unc_tokens)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)&g->mu;
    pthread_mutex_lock(mu);
    *contexts = g->n_ctx;
    *unc_tokens = g->n_unc_total;
    pthread_mutex_unlock(mu);
}

vt_err smp_grammar_vocab_get(smp_grammar_vocab *v, smp_grammar_kind kind, const char *text,
                             size_t len, smp_grammar **out)
{
    *out = NULL;
    if (kind == SMP_GRAMMAR_JSON_OBJECT)
        text = "", len = 0;
    if (!text)
        return vt_fail(VT_ERR_INVALID, "grammar: no text");
    pthread_mutex_lock(&v->mu);
    for (int k = 0; k < GR_VOCAB_CACHE; k++) {
        cache_entry *c = &v->cache[k];
        if (c->g && c->kind == kind && c->len == len && !memcmp(c->text, text, len)) {
            c->used = ++v->clock;
            *out = smp_grammar_ref(c->g);
            pthread_mutex_unlock(&v->mu);
            return VT_OK;
        }
    }
    pthread_mutex_unlock(&v->mu);
    smp_grammar *g;
    vt_err e = smp_grammar_compile(kind, text, len, v, &g);
    if (e)
        return e;
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = 0;
        pthread_mutex_lock(&v->mu);
        int victim = 0;
        for (int k = 1; k < GR_VOCAB_CACHE; k++)
            if (v->cache[k].used < v->cache[victim].used)
                victim = k;
        cache_entry *c = &v->cache[victim];
        free(c->text);
        smp_grammar_unref(c->g);
        *c = (cache_entry){kind, copy, len, smp_grammar_ref(g), ++v->clock};
        pthread_mutex_unlock(&v->mu);
    }
    *out = g;
    return VT_OK;
}

/* ---- states ---- */

struct smp_grammar_state {
    smp_grammar *g;
    sset cur, tmp, tmp2;
    walker w;
    uint32_t *seen; /* contexts already OR-ed into the current mask: stamps */
    uint32_t n_seen, seen_stamp;
};

vt_err smp_grammar_state_create(smp_grammar *g, smp_grammar_state **out)
{
    *out = NULL;
    smp_grammar_state *s = calloc(1, sizeof *s);
    if (!s || !walker_init(&s->w, g)) {
        if (s)
            walker_free(&s->w);
        free(s);
        return vt_fail(VT_ERR_NOMEM, "grammar: out of memory");
    }
    s->g = smp_grammar_ref(g);
    const gr_rule *root = &g->ir.rules[g->ir.root];
    for (uint32_t a = 0; a < root->n_alts; a++)
        expand_root(g, &s->w, &s->cur, 0, g->ir.alt_start[root->first_alt + a], M_REAL);
    if (s->w.nomem) {
        smp_grammar_state_destroy(s);
        return vt_fail(VT_ERR_NOMEM, "grammar: out of memory");
    }
    *out = s;
    return VT_OK;
}

smp_grammar_state *smp_grammar_state_clone(const smp_grammar_state *s)
{
    smp_grammar_state *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (!walker_init(&c->w, s->g) || !sset_copy(&c->cur, &s->cur)) {
        walker_free(&c->w);
        sset_free(&c->cur);
        free(c);
        return NULL;
    }
    c->g = smp_grammar_ref(s->g);
    return c;
}

void smp_grammar_state_destroy(smp_grammar_state *s)
{
    if (!s)
        return;
    sset_free(&s->cur);
    sset_free(&s->tmp);
    sset_free(&s->tmp2);
    walker_free(&s->w);
    free(s->seen);
    smp_grammar_unref(s->g);
    free(s);
}

bool smp_grammar_accepts_eos(const smp_grammar_state *s)
{
    return s->cur.done;
}

bool smp_grammar_finished(const smp_grammar_state *s)
{
    return s->cur.done && s->cur.n == 0;
}

/* Runs b[0..n) from s->cur into s->tmp (s->cur unchanged). 1: alive, 0: refused
 * (*at = the byte), -1: OOM. */
static int run_bytes(smp_grammar_state *s, const uint8_t *b, size_t n, size_t *at)
{
    if (!sset_copy(&s->tmp, &s->cur))
        return -1;
    for (size_t k = 0; k < n; k++) {
        step(s->g, &s->w, &s->tmp, b[k], &s->tmp2);
        sset t = s->tmp;
        s->tmp = s->tmp2;
        s->tmp2 = t;
        if (s->w.nomem) {
            s->w.nomem = false;
            return -1;
        }
        if (sset_empty(&s->tmp)) {
            *at = k;
            return 0;
        }
    }
    return 1;
}

vt_err smp_grammar_accept_bytes(smp_grammar_state *s, const char *b, size_t n)
{
    if (n == 0)
        return VT_OK;
    if (!b)
        return vt_fail(VT_ERR_INVALID, "grammar: no bytes");
    size_t at = 0;
    int r = run_bytes(s, (const uint8_t *)b, n, &at);
    if (r < 0)
        return vt_fail(VT_ERR_NOMEM, "grammar: out of memory");
    if (r == 0)
        return vt_fail(VT_ERR_INVALID, "grammar: the text cannot continue with byte %zu of %zu "
                       "(0x%02X)", at + 1, n, (uint8_t)b[at]);
    sset t = s->cur;
    s->cur = s->tmp;
    s->tmp = t;
    return VT_OK;
}

bool smp_grammar_can_take(smp_grammar_state *s, int32_t token)
{
    const smp_grammar_vocab *v = s->g->v;
    if (!v || token < 0 || token >= v->n_vocab || v->off[token + 1] == v->off[token])
        return false;
    size_t at;
    return run_bytes(s, v->bytes + v->off[token], v->off[token + 1] - v->off[token], &at) == 1;
}

vt_err smp_grammar_accept_token(smp_grammar_state *s, int32_t token)
{
    const smp_grammar_vocab *v = s->g->v;
    if (!v)
        return vt_fail(VT_ERR_INVALID, "grammar: compiled without a vocabulary");
    if (token < 0 || token >= v->n_vocab)
        return vt_fail(VT_ERR_INVALID, "grammar: token %d is outside the vocabulary", (int)token);
    uint32_t l = v->off[token + 1] - v->off[token];
    if (l == 0)
        return vt_fail(VT_ERR_INVALID, "grammar: token %d has no text the grammar could take",
                       (int)token);
    vt_err e = smp_grammar_accept_bytes(s, (const char *)v->bytes + v->off[token], l);
    if (e == VT_ERR_INVALID)
        return vt_fail(VT_ERR_INVALID, "grammar: token %d is not allowed here", (int)token);
    return e;
}

bool smp_grammar_matches(const smp_grammar_state *s, const char *b, size_t n)
{
    smp_grammar_state *c = smp_grammar_state_clone(s);
    if (!c)
        return false;
    bool ok = smp_grammar_accept_bytes(c, b, n) == VT_OK && c->cur.done;
    smp_grammar_state_destroy(c);
    return ok;
}

/* ---- masks ---- */

static bool grow(void **p, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap)
        return true;
    uint32_t c = VT_MAX(need, *cap * 2 + 16);
    void *n = realloc(*p, (size_t)c * size);
    if (!n)
        return false;
    *p = n;
    *cap = c;
    return true;
}

static uint64_t sset_hash(const sset *a, bool truncated)
{
    return hash_words(a->w, a->n_w) ^ ((uint64_t)a->done << 61) ^ ((uint64_t)a->approx_done << 62) ^
           ((uint64_t)a->overflow << 63) ^ ((uint64_t)truncated << 60);
}

static bool sset_same(const sset *a, const sset *b)
{
    return a->n_w == b->n_w && a->done == b->done && a->approx_done == b->approx_done &&
           a->overflow == b->overflow && (a->n_w == 0 || !memcmp(a->w, b->w, a->n_w * sizeof *a->w));
}

static void dfa_clear(smp_grammar *g)
{
    for (uint32_t k = 0; k < g->n_ds; k++)
        sset_free(&g->ds[k].s);
    g->n_ds = 0;
    if (g->ds_slot)
        memset(g->ds_slot, 0, sizeof *g->ds_slot * g->n_ds_slot);
}

/* The id of set a (copied in when new); -3 on OOM. */
static int32_t dfa_intern(smp_grammar *g, const sset *a, bool truncated)
{
    uint64_t h = sset_hash(a, truncated);
    if (g->n_ds_slot)
        for (uint32_t j = (uint32_t)h & (g->n_ds_slot - 1); g->ds_slot[j];
             j = (j + 1) & (g->n_ds_slot - 1)) {
            dfa_state *d = &g->ds[g->ds_slot[j] - 1];
            if (d->h == h && d->truncated == truncated && sset_same(&d->s, a))
                return (int32_t)(g->ds_slot[j] - 1);
        }
    if (g->n_ds >= DFA_HARD_MAX) {
        g->too_complex = true;
        return -3;
    }
    if (!grow((void **)&g->ds, &g->cap_ds, g->n_ds + 1, sizeof *g->ds))
        return -3;
    if ((g->n_ds + 1) * 2 > g->n_ds_slot) {
        uint32_t ns = g->n_ds_slot ? g->n_ds_slot * 2 : 1024;
        uint32_t *sl = calloc(ns, sizeof *sl);
        if (!sl)
            return -3;
        for (uint32_t k = 0; k < g->n_ds; k++) {
            uint32_t j = (uint32_t)g->ds[k].h & (ns - 1);
            while (sl[j])
                j = (j + 1) & (ns - 1);
            sl[j] = k + 1;
        }
        free(g->ds_slot);
        g->ds_slot = sl;
        g->n_ds_slot = ns;
    }
    dfa_state *d = &g->ds[g->n_ds];
    memset(&d->s, 0, sizeof d->s);
    if (!sset_copy(&d->s, a)) {
        sset_free(&d->s);
        return -3;
    }
    d->h = h;
    d->truncated = truncated;
    for (int b = 0; b < 256; b++)
        d->next[b] = DFA_UNKNOWN;
    uint32_t j = (uint32_t)h & (g->n_ds_slot - 1);
    while (g->ds_slot[j])
        j = (j + 1) & (g->n_ds_slot - 1);
    g->ds_slot[j] = g->n_ds + 1;
    return (int32_t)g->n_ds++;
}

/* The successor of DFA state id by byte b: an id, DFA_DEAD, or -3 on OOM. */
static int32_t dfa_next(smp_grammar *g, walker *w, int32_t id, uint8_t b)
{
    int32_t n = g->ds[id].next[b];
    if (n != DFA_UNKNOWN)
        return n;
    bool truncated = g->ds[id].truncated;
    w->truncated = truncated;
    step(g, w, &g->ds[id].s, b, &w->tmp);
    if (w->nomem) {
        w->nomem = false;
        return -3;
    }
    n = sset_empty(&w->tmp) ? DFA_DEAD : dfa_intern(g, &w->tmp, truncated);
    if (n >= DFA_DEAD)
        g->ds[id].next[b] = n; /* ds may have moved: index again */
    return n;
}

/* Before a walk: keeps the DFA cache bounded (ids stay valid during one). */
static void dfa_bound(smp_grammar *g)
{
    if (g->n_ds > DFA_MAX_STATES)
        dfa_clear(g);
}

/* Walks the whole trie from the context key[] (frames bottom first, then
 * the top position, then the partial character) and fills e. */
static bool fill_context(smp_grammar *g, const uint32_t *key, uint32_t n_key, bool truncated,
                         ctx_entry *e)
{
    const smp_grammar_vocab *v = g->v;
    walker *w = &g->w;
    uint32_t nfr = n_key - 1, part = key[n_key - 1];
    dfa_bound(g);
    sset_clear(&w->tmp);
    if (!sset_add(&w->tmp, M_EXACT, part, key, nfr - 1, key[nfr - 1]))
        return false;
    int32_t *lvl = w->lvl;
    lvl[0] = dfa_intern(g, &w->tmp, truncated);
    if (lvl[0] < 0)
        return false;
    size_t nw = ((size_t)v->n_vocab + 63) / 64;
    if (!w->bits && !(w->bits = malloc(nw * sizeof *w->bits)))
        return false;
    uint64_t *bits = w->bits; /* accepted tokens, set directly */
    memset(bits, 0, nw * sizeof *bits);
    uint32_t cap_unc = 0, n_acc = 0;
    e->unc = NULL;
    e->n_unc = 0;
    for (uint32_t i = 0; i < v->n_nodes;) {
        const trie_node *nd = &v->node[i];
        int32_t id = dfa_next(g, w, lvl[nd->depth - 1], nd->byte);
        if (id == -3)
            goto nomem;
        if (id == DFA_DEAD) {
            i = nd->end;
            continue;
        }
        lvl[nd->depth] = id;
        const sset *cur = &g->ds[id].s;
        if (nd->tok_n) {
            bool exact = cur->n_exact > 0 || cur->done;
            bool approx = cur->n_approx > 0 || cur->approx_done || cur->overflow;
            if (exact) {
                for (uint32_t t = 0; t < nd->tok_n; t++) {
                    int32_t tok = v->sorted[nd->tok_first + t];
                    bits[tok >> 6] |= 1ull << (tok & 63);
                }
                n_acc += nd->tok_n;
            } else if (approx) {
                if (!grow((void **)&e->unc, &cap_unc, e->n_unc + nd->tok_n, sizeof *e->unc))
                    goto nomem;
                for (uint32_t t = 0; t < nd->tok_n; t++)
                    e->unc[e->n_unc++] = v->sorted[nd->tok_first + t];
            }
        }
        i = cur->n > 0 ? i + 1 : nd->end;
    }
    e->acc = NULL;
    e->acc_bits = NULL;
    if ((uint64_t)n_acc * 32 >= (uint64_t)v->n_vocab) { /* dense: the bits */
        if (!(e->acc_bits = malloc(nw * sizeof *e->acc_bits)))
            goto nomem;
        memcpy(e->acc_bits, bits, nw * sizeof *bits);
    } else if (n_acc) { /* sparse: the ids */
        if (!(e->acc = malloc(n_acc * sizeof *e->acc)))
            goto nomem;
        uint32_t k = 0;
        for (size_t j = 0; j < nw; j++)
            for (uint64_t m = bits[j]; m; m &= m - 1)
                e->acc[k++] = (int32_t)(j * 64) + __builtin_ctzll(m);
    }
    e->n_acc = n_acc;
    return true;
nomem:
    free(e->unc);
    e->unc = NULL;
    return false;
}

/* The context entry of one stack (computed on first use); NULL on OOM. With
 * the cache full, *tmp receives an uncached entry the caller frees. */
static const ctx_entry *context_of(smp_grammar *g, const uint32_t *st, ctx_entry *tmp)
{
    uint32_t l = st[0], part = st[2];
    const uint32_t *fr = st + 3;
    uint32_t keep = VT_MIN(l, (uint32_t)GR_CTX_FRAMES + 1);
    bool truncated = keep < l;
    uint32_t key[GR_CTX_FRAMES + 3];
    memcpy(key, fr + (l - keep), keep * sizeof *key);
    key[keep] = part;
    key[keep + 1] = truncated;
    uint32_t n_key = keep + 2;
    uint64_t h = hash_words(key, n_key);
    if (g->n_slot) {
        for (uint32_t j = (uint32_t)h & (g->n_slot - 1); g->slot[j]; j = (j + 1) & (g->n_slot - 1)) {
            const ctx_entry *c = &g->ctx[g->slot[j] - 1];
            if (c->h == h && c->n_key == n_key && !memcmp(c->key, key, n_key * sizeof *key))
                return c;
        }
    }
    ctx_entry e = {.n_key = n_key, .h = h};
    if (!fill_context(g, key, n_key - 1, truncated, &e))
        return NULL;
    g->n_unc_total += e.n_unc;
    if (g->n_ctx >= GR_MAX_CONTEXTS)
        goto uncached;
    if (!grow((void **)&g->ctx, &g->cap_ctx, g->n_ctx + 1, sizeof *g->ctx))
        goto uncached;
    if ((g->n_ctx + 1) * 2 > g->n_slot) {
        uint32_t ns = g->n_slot ? g->n_slot * 2 : 256;
        uint32_t *sl = calloc(ns, sizeof *sl);
        if (!sl)
            goto uncached;
        for (uint32_t k = 0; k < g->n_ctx; k++) {
            uint32_t j = (uint32_t)g->ctx[k].h & (ns - 1);
            while (sl[j])
                j = (j + 1) & (ns - 1);
            sl[j] = k + 1;
        }
        free(g->slot);
        g->slot = sl;
        g->n_slot = ns;
    }
    e.key = malloc(n_key * sizeof *key);
    if (!e.key)
        goto uncached;
    memcpy(e.key, key, n_key * sizeof *key);
    g->ctx[g->n_ctx] = e;
    uint32_t j = (uint32_t)h & (g->n_slot - 1);
    while (g->slot[j])
        j = (j + 1) & (g->n_slot - 1);
    g->slot[j] = ++g->n_ctx;
    return &g->ctx[g->n_ctx - 1];
uncached:
    *tmp = e;
    return tmp;
}

/* Sets the bits of the uncertain tokens unc[0..n) (trie order) that the
 * real stack st can take (under g->mu: the grammar's DFA and walker). */
static bool check_uncertain(smp_grammar *g, const uint32_t *st, const int32_t *unc, uint32_t n,
                            uint64_t *mask)
{
    if (n == 0)
        return true;
    const smp_grammar_vocab *v = g->v;
    walker *w = &g->w;
    dfa_bound(g);
    sset_clear(&w->tmp);
    if (!sset_add(&w->tmp, M_REAL, st[2], st + 3, st[0] - 1, st[3 + st[0] - 1]))
        return false;
    int32_t *lvl = w->lvl;
    lvl[0] = dfa_intern(g, &w->tmp, false);
    if (lvl[0] < 0)
        return false;
    const uint8_t *prev = NULL;
    uint32_t prev_len = 0, valid = 0; /* lvl[0..valid] hold prev's prefix */
    for (uint32_t k = 0; k < n; k++) {
        int32_t t = unc[k];
        if (mask[t >> 6] >> (t & 63) & 1)
            continue;
        const uint8_t *b = v->bytes + v->off[t];
        uint32_t l = v->off[t + 1] - v->off[t], lcp = 0;
        while (prev && lcp < l && lcp < prev_len && lcp < valid && b[lcp] == prev[lcp])
            lcp++;
        uint32_t d = lcp;
        bool dead = false;
        for (; d < l; d++) {
            int32_t id = dfa_next(g, w, lvl[d], b[d]);
            if (id == -3)
                return false;
            if (id == DFA_DEAD) {
                dead = true;
                break;
            }
            lvl[d + 1] = id;
        }
        valid = d;
        prev = b;
        prev_len = l;
        if (!dead)
            mask[t >> 6] |= 1ull << (t & 63);
    }
    return true;
}

/* Set bits of mask[0..nw): the hardware instruction where there is one (the
 * portable builtin is a library call per word, most of a warm mask's time). */
#if defined(__x86_64__)
__attribute__((target("popcnt"))) static int32_t count_hw(const uint64_t *m, size_t nw)
{
    int64_t c = 0;
    for (size_t j = 0; j < nw; j++)
        c += __builtin_popcountll(m[j]);
    return (int32_t)c;
}
#endif

static int32_t count_bits(const uint64_t *m, size_t nw)
{
#if defined(__x86_64__)
    static int have = -1;
    if (have < 0)
        have = __builtin_cpu_supports("popcnt") ? 1 : 0;
    if (have)
        return count_hw(m, nw);
#endif
    int64_t c = 0;
    for (size_t j = 0; j < nw; j++)
        c += __builtin_popcountll(m[j]);
    return (int32_t)c;
}

int32_t smp_grammar_mask(smp_grammar_state *s, uint64_t *mask)
{
    smp_grammar *g = s->g;
    const smp_grammar_vocab *v = g->v;
    if (!v) {
        vt_fail(VT_ERR_INVALID, "grammar: compiled without a vocabulary");
        return -1;
    }
    size_t nw = ((size_t)v->n_vocab + 63) / 64;
    memset(mask, 0, nw * sizeof *mask);
    int32_t count;
    pthread_mutex_lock(&g->mu);
    if (!grow((void **)&s->seen, &s->n_seen, g->n_ctx + s->cur.n + 1, sizeof *s->seen))
        goto nomem;
    memset(s->seen, 0, sizeof *s->seen * s->n_seen);
    size_t off = 0;
    for (uint32_t k = 0; k < s->cur.n; k++) {
        const uint32_t *st = s->cur.w + off;
        off += 3 + st[0];
        ctx_entry tmp = {0};
        const ctx_entry *e = context_of(g, st, &tmp);
        if (!e)
            goto nomem;
        uint32_t idx = e == &tmp ? UINT32_MAX : (uint32_t)(e - g->ctx);
        if (idx != UINT32_MAX && !grow((void **)&s->seen, &s->n_seen, idx + 1, sizeof *s->seen))
            goto nomem;
        if (idx == UINT32_MAX || !s->seen[idx]) {
            if (idx != UINT32_MAX)
                s->seen[idx] = 1;
            if (e->acc_bits) {
                for (size_t j = 0; j < nw; j++)
                    mask[j] |= e->acc_bits[j];
            } else {
                for (uint32_t j = 0; j < e->n_acc; j++)
                    mask[e->acc[j] >> 6] |= 1ull << (e->acc[j] & 63);
            }
        }
        bool ok = check_uncertain(g, st, e->unc, e->n_unc, mask);
        if (e == &tmp) {
            free(tmp.acc_bits);
            free(tmp.acc);
            free(tmp.unc);
        }
        if (!ok)
            goto nomem;
    }
    pthread_mutex_unlock(&g->mu);
    count = count_bits(mask, nw);
    return count;
nomem:;
    bool complex = g->too_complex;
    g->too_complex = false;
    dfa_clear(g);
    pthread_mutex_unlock(&g->mu);
    s->w.nomem = false;
    if (complex)
        vt_fail(VT_ERR_UNSUPPORTED, "grammar: too complex for token masks (one step meets more "
                "than %d distinct parser states)", DFA_HARD_MAX);
    else
        vt_fail(VT_ERR_NOMEM, "grammar: out of memory computing a mask");
    return -1;
}
