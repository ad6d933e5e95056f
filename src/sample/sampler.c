/*
 * sampler.c - per-sequence token sampling and end-of-generation decisions
 * (see sampler.h for the contract).
 *
 * A step copies the logits into a scratch buffer (NaN -> -inf), adds the logit
 * bias, then applies the penalties to the tokens of the window, counted in a
 * small hash table so a step costs O(window) beyond the O(n_vocab) passes. The
 * candidate set is never a full sort of the vocabulary: top-k keeps a min-heap
 * of k entries (most tokens are rejected by one comparison with its root);
 * top-p over a sorted top-k set walks it; top-p over the whole vocabulary puts
 * every token into one of 256 buckets by its distance to the largest logit
 * (1/8 of a logit wide), adds the probability mass per bucket, keeps every
 * bucket before the one where the cumulative mass reaches top_p, refines that
 * edge bucket into sub-buckets while it is large and sorts only what is left
 * of it; min-p is a threshold on the logit. Weights exp((logit - max) / T) come
 * from a vectorised exp (4-lane GCC/clang vector extensions, so plain SSE2 or
 * any target) and are summed in blocks of 64, so the draw - a uniform double
 * from the state's RNG against the cumulative weight - walks block sums first.
 * Scratch memory (about 16 bytes per vocabulary entry) is allocated at the
 * first smp_sample() of a state, so a state that waits in a queue costs little.
 */
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sample/sampler.h"
#include "util/util.h"

typedef struct {
    float logit;
    int32_t id;
} cand;

#define BLOCK 64 /* weights per partial sum (see exp_shifted) */

/* Open-addressing counts of the tokens in the penalty window. */
typedef struct {
    int32_t *ids; /* -1 = empty */
    int32_t *counts;
    size_t cap;   /* power of two */
} window_counts;

struct smp_state {
    smp_params p; /* logit_bias and stop point to the copies below */
    smp_bias *bias;
    char *stop_text[SMP_MAX_STOP];
    int32_t n_vocab;
    int32_t *end_ids;
    int32_t n_end;
    uint64_t seed;
    vt_rng rng;
    smp_stop *stop;
    int32_t n_generated;
    bool finished;
    bool greedy; /* temperature 0, or so small that 1/T overflows */
    smp_grammar_state *gs; /* with params.grammar */
    uint64_t *gmask;       /* [(n_vocab + 63) / 64] allowed tokens */
    int32_t g_allowed;     /* tokens the mask allows this step (end tokens included) */

    /* scratch, allocated by the first step */
    float *buf;   /* [n_vocab] logits after bias and penalties */
    float *w;     /* [n_vocab] weights of the candidates */
    double *blocks; /* [n_vocab / BLOCK + 1] sums of w per block */
    cand *cand;   /* [n_vocab] explicit candidates */
    window_counts wc;
    /* the candidate set of the current step */
    bool all;       /* every token (ids = positions in buf), else cand[0..n_cand) */
    int32_t n_cand;
    float max_logit;
    int32_t argmax;
};

smp_params smp_params_default(void)
{
    return (smp_params){
        .temperature = 1.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .repetition_penalty = 1.0f,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .penalty_last_n = 64,
        .logit_bias = NULL,
        .n_logit_bias = 0,
        .seed = SMP_SEED_RANDOM,
        .max_tokens = -1,
        .stop = NULL,
        .n_stop = 0,
        .ignore_eos = false,
        .top_logprobs = 0,
        .min_tokens = 0,
    };
}

vt_err smp_params_validate(const smp_params *p, int32_t n_vocab)
{
    if (!p)
        return vt_fail(VT_ERR_INVALID, "sampling parameters missing");
    if (n_vocab <= 0)
        return vt_fail(VT_ERR_INVALID, "n_vocab must be positive, got %d", (int)n_vocab);
    if (!isfinite(p->temperature) || p->temperature < 0)
        return vt_fail(VT_ERR_INVALID, "temperature must be a finite number >= 0, got %g",
                       (double)p->temperature);
    if (p->top_k < -1)
        return vt_fail(VT_ERR_INVALID, "top_k must be >= 0 (0 or -1 = off), got %d", (int)p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return vt_fail(VT_ERR_INVALID, "top_p must be in (0, 1], got %g", (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return vt_fail(VT_ERR_INVALID, "min_p must be in [0, 1], got %g", (double)p->min_p);
    if (!isfinite(p->repetition_penalty) || p->repetition_penalty <= 0)
        return vt_fail(VT_ERR_INVALID, "repetition_penalty must be a finite number > 0, got %g",
                       (double)p->repetition_penalty);
    if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
        return vt_fail(VT_ERR_INVALID, "presence_penalty must be in [-2, 2], got %g",
                       (double)p->presence_penalty);
    if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
        return vt_fail(VT_ERR_INVALID, "frequency_penalty must be in [-2, 2], got %g",
                       (double)p->frequency_penalty);
    if (p->penalty_last_n < -1)
        return vt_fail(VT_ERR_INVALID, "penalty_last_n must be >= -1 (-1 = whole history), got %d",
                       (int)p->penalty_last_n);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return vt_fail(VT_ERR_INVALID, "logit_bias: bad count %d", (int)p->n_logit_bias);
    for (int32_t i = 0; i < p->n_logit_bias; i++) {
        const smp_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return vt_fail(VT_ERR_INVALID, "logit_bias: token id %d is outside the vocabulary [0, %d)",
                           (int)b->token, (int)n_vocab);
        if (!(b->bias == -INFINITY || (b->bias >= -100 && b->bias <= 100)))
            return vt_fail(VT_ERR_INVALID,
                           "logit_bias: bias for token %d must be in [-100, 100] or -inf, got %g",
                           (int)b->token, (double)b->bias);
    }
    if (p->max_tokens == 0 || p->max_tokens < -1)
        return vt_fail(VT_ERR_INVALID, "max_tokens must be >= 1 (or -1 = no limit), got %d",
                       (int)p->max_tokens);
    if (p->n_stop < 0 || p->n_stop > SMP_MAX_STOP)
        return vt_fail(VT_ERR_INVALID, "stop: at most %d stop strings, got %d", SMP_MAX_STOP,
                       (int)p->n_stop);
    if (p->n_stop > 0 && !p->stop)
        return vt_fail(VT_ERR_INVALID, "stop: %d stop strings but no array", (int)p->n_stop);
    for (int32_t i = 0; i < p->n_stop; i++) {
        size_t n = p->stop[i] ? strnlen(p->stop[i], SMP_MAX_STOP_LEN + 1) : 0;
        if (n == 0 || n > SMP_MAX_STOP_LEN)
            return vt_fail(VT_ERR_INVALID, "stop[%d] must be a non-empty string of at most %d bytes",
                           (int)i, SMP_MAX_STOP_LEN);
    }
    if (p->top_logprobs < 0 || p->top_logprobs > SMP_MAX_TOP_LOGPROBS)
        return vt_fail(VT_ERR_INVALID, "top_logprobs must be in [0, %d], got %d",
                       SMP_MAX_TOP_LOGPROBS, (int)p->top_logprobs);
    if (p->min_tokens < 0 || (p->max_tokens > 0 && p->min_tokens > p->max_tokens))
        return vt_fail(VT_ERR_INVALID, "min_tokens must be in [0, max_tokens (%d)], got %d",
                       (int)p->max_tokens, (int)p->min_tokens);
    return VT_OK;
}

/* ---- seeds ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t random_seed(const void *salt)
{
    static atomic_uint_fast64_t counter;
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t z = mix64((uint64_t)a.tv_sec * 1000000007ull + (uint64_t)a.tv_nsec);
    z = mix64(z ^ ((uint64_t)b.tv_nsec << 17) ^ (uint64_t)b.tv_sec);
    z = mix64(z ^ (uint64_t)(uintptr_t)salt ^ atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull);
    return z == SMP_SEED_RANDOM ? z - 1 : z; /* always a seed one can pass back */
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform53(vt_rng *r)
{
    return (double)(vt_rng_next(r) >> 11) * 0x1p-53;
}

/* ---- lifecycle ---- */

vt_err smp_create(const smp_params *params, int32_t n_vocab, const int32_t *end_ids,
                  int32_t n_end, smp_state **out)
{
    *out = NULL;
    vt_err e = smp_params_validate(params, n_vocab);
    if (e)
        return e;
    if (n_end < 0 || (n_end > 0 && !end_ids))
        return vt_fail(VT_ERR_INVALID, "end tokens: bad count %d", (int)n_end);
    for (int32_t i = 0; i < n_end; i++)
        if (end_ids[i] < 0 || end_ids[i] >= n_vocab)
            return vt_fail(VT_ERR_INVALID, "end token id %d is outside the vocabulary [0, %d)",
                           (int)end_ids[i], (int)n_vocab);

    smp_state *s = calloc(1, sizeof *s);
    if (!s)
        return vt_fail(VT_ERR_NOMEM, "sampler: out of memory");
    s->p = *params;
    s->n_vocab = n_vocab;
    s->p.logit_bias = NULL;
    s->p.stop = NULL;
    if (params->n_logit_bias > 0) {
        s->bias = malloc((size_t)params->n_logit_bias * sizeof *s->bias);
        if (!s->bias)
            goto nomem;
        memcpy(s->bias, params->logit_bias, (size_t)params->n_logit_bias * sizeof *s->bias);
        s->p.logit_bias = s->bias;
    }
    for (int32_t i = 0; i < params->n_stop; i++) {
        s->stop_text[i] = strdup(params->stop[i]);
        if (!s->stop_text[i])
            goto nomem;
    }
    if (params->n_stop > 0)
        s->p.stop = (const char *const *)s->stop_text;
    if (n_end > 0) {
        s->end_ids = malloc((size_t)n_end * sizeof *s->end_ids);
        if (!s->end_ids)
            goto nomem;
        memcpy(s->end_ids, end_ids, (size_t)n_end * sizeof *s->end_ids);
        s->n_end = n_end;
    }
    e = smp_stop_create(s->p.stop, s->p.n_stop, &s->stop);
    if (!e && params->grammar) {
        if (smp_grammar_n_vocab(params->grammar) != n_vocab)
            e = vt_fail(VT_ERR_INVALID, "sampler: the grammar is for a vocabulary of %d tokens, "
                        "not %d", (int)smp_grammar_n_vocab(params->grammar), (int)n_vocab);
        else if (!(e = smp_grammar_state_create(params->grammar, &s->gs)) &&
                 !(s->gmask = malloc(((size_t)n_vocab + 63) / 64 * sizeof *s->gmask)))
            e = vt_fail(VT_ERR_NOMEM, "sampler: out of memory");
    }
    s->p.grammar = NULL; /* the state holds the reference */
    if (e) {
        smp_destroy(s);
        return e;
    }
    s->greedy = s->p.temperature <= 0 || !(1.0f / s->p.temperature < INFINITY);
    s->seed = params->seed == SMP_SEED_RANDOM ? random_seed(s) : params->seed;
    s->rng.s = mix64(s->seed);
    *out = s;
    return VT_OK;
nomem:
    smp_destroy(s);
    return vt_fail(VT_ERR_NOMEM, "sampler: out of memory");
}

void smp_destroy(smp_state *s)
{
    if (!s)
        return;
    free(s->bias);
    for (int i = 0; i < SMP_MAX_STOP; i++)
        free(s->stop_text[i]);
    free(s->end_ids);
    smp_stop_destroy(s->stop);
    smp_grammar_state_destroy(s->gs);
    free(s->gmask);
    free(s->buf);
    free(s->w);
    free(s->blocks);
    free(s->cand);
    free(s->wc.ids);
    free(s->wc.counts);
    free(s);
}

uint64_t smp_seed(const smp_state *s)
{
    return s->seed;
}

int32_t smp_n_generated(const smp_state *s)
{
    return s->n_generated;
}

/* ---- vector helpers (GCC/clang vector extensions, 4 lanes: plain SSE2) ---- */

typedef float vf4 __attribute__((vector_size(16)));
typedef int32_t vi4 __attribute__((vector_size(16)));

/* exp(v) per lane for v <= 0: Cody-Waite reduction to r in [-ln2/2, ln2/2],
 * a degree-7 Taylor polynomial (relative error below 1e-7), times 2^n built
 * in the exponent bits. Lanes below -87 (where exp would go subnormal), -inf
 * and NaN give exactly 0. */
static inline vf4 exp_nonpos4(vf4 v)
{
    vi4 live = v >= -87.0f;
    v = (vf4)((vi4)v & live); /* dead lanes compute exp(0) and are masked */
    vf4 n = (v * 1.44269504f + 12582912.0f) - 12582912.0f; /* round(v / ln2) */
    vf4 r = v - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    vf4 p = r * (1.0f / 5040) + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    vi4 e = (__builtin_convertvector(n, vi4) + 127) << 23; /* n in [-126, 0] */
    return (vf4)((vi4)(p * (vf4)e) & live);
}

/* out[i] = exp((x[i] - shift) * scale) for i < n, where every x[i] <= shift
 * and scale > 0; x and out may be the same array. Returns the sum of out,
 * added up per BLOCK entries; block, if not NULL, receives those partial sums
 * (the total is their sum in order, so a walk over them reproduces it). */
static double exp_shifted(const float *x, float *out, int32_t n, float shift, float scale,
                          double *block)
{
    double total = 0;
    for (int32_t b0 = 0; b0 < n; b0 += BLOCK) {
        int32_t m = VT_MIN(BLOCK, n - b0), j = 0;
        vf4 acc = {0, 0, 0, 0};
        for (; j + 4 <= m; j += 4) {
            vf4 v;
            memcpy(&v, x + b0 + j, sizeof v);
            v = exp_nonpos4((v - shift) * scale);
            memcpy(out + b0 + j, &v, sizeof v);
            acc += v;
        }
        if (j < m) { /* the last 1-3 of the array; padding lanes give 0 */
            vf4 v = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
            for (int32_t k = 0; k < m - j; k++)
                v[k] = x[b0 + j + k];
            v = exp_nonpos4((v - shift) * scale);
            for (int32_t k = 0; k < m - j; k++)
                out[b0 + j + k] = v[k];
            acc += v;
        }
        double sum = ((double)acc[0] + (double)acc[1]) + ((double)acc[2] + (double)acc[3]);
        if (block)
            block[b0 / BLOCK] = sum;
        total += sum;
    }
    return total;
}

static inline vf4 select4(vi4 mask, vf4 a, vf4 b)
{
    return (vf4)(((vi4)a & mask) | ((vi4)b & ~mask));
}

static inline vf4 splat4(float f)
{
    return (vf4){f, f, f, f};
}

/* out = in with NaN as -inf and +inf as FLT_MAX. */
static void sanitize(const float *in, float *out, int32_t n)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        vf4 v;
        memcpy(&v, in + i, sizeof v);
        v = select4(v == v, v, splat4(-INFINITY));
        v = select4(v > FLT_MAX, splat4(FLT_MAX), v);
        memcpy(out + i, &v, sizeof v);
    }
    for (; i < n; i++)
        out[i] = isnan(in[i]) ? -INFINITY : in[i] > FLT_MAX ? FLT_MAX : in[i];
}

/* Index of the largest of x[0..n) (no NaN), the lowest on ties. */
static int32_t argmax_of(const float *x, int32_t n)
{
    vf4 m = splat4(-INFINITY);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        vf4 v;
        memcpy(&v, x + i, sizeof v);
        m = select4(v > m, v, m);
    }
    float mx = VT_MAX(VT_MAX(m[0], m[1]), VT_MAX(m[2], m[3]));
    for (; i < n; i++)
        mx = VT_MAX(mx, x[i]);
    for (i = 0; i + 4 <= n; i += 4) {
        vf4 v;
        memcpy(&v, x + i, sizeof v);
        vi4 eq = v == mx;
        if (eq[0] | eq[1] | eq[2] | eq[3])
            break;
    }
    while (i < n - 1 && x[i] != mx)
        i++;
    return i;
}

/* ---- bias and penalties ---- */

/* Counts the tokens of the window into wc (grown as needed). */
static vt_err count_window(window_counts *wc, const int32_t *win, size_t n, int32_t n_vocab)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    if (cap > wc->cap) {
        int32_t *ids = realloc(wc->ids, cap * sizeof *ids);
        if (!ids)
            return vt_fail(VT_ERR_NOMEM, "sampler: out of memory");
        wc->ids = ids;
        int32_t *counts = realloc(wc->counts, cap * sizeof *counts);
        if (!counts)
            return vt_fail(VT_ERR_NOMEM, "sampler: out of memory");
        wc->counts = counts;
        wc->cap = cap;
    }
    memset(wc->ids, 0xff, wc->cap * sizeof *wc->ids); /* all -1 */
    size_t mask = wc->cap - 1;
    for (size_t i = 0; i < n; i++) {
        int32_t t = win[i];
        if (t < 0 || t >= n_vocab)
            return vt_fail(VT_ERR_INVALID, "history token id %d is outside the vocabulary [0, %d)",
                           (int)t, (int)n_vocab);
        size_t h = (size_t)mix64((uint64_t)t) & mask;
        while (wc->ids[h] != -1 && wc->ids[h] != t)
            h = (h + 1) & mask;
        if (wc->ids[h] == -1) {
            wc->ids[h] = t;
            wc->counts[h] = 0;
        }
        wc->counts[h]++;
    }
    return VT_OK;
}

static bool penalties_active(const smp_params *p)
{
    return p->penalty_last_n != 0 &&
           (p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f ||
            p->frequency_penalty != 0.0f);
}

/* Bias and penalties may push a large logit past FLT_MAX; keep it finite so
 * that differences with the largest logit stay numbers. */
static inline float clamp_max(float v)
{
    return v > FLT_MAX ? FLT_MAX : v;
}

/* Bias, then penalties over the window of history; wc is scratch. */
static vt_err bias_and_penalize(const smp_params *p, float *x, int32_t n_vocab,
                                const int32_t *history, size_t n_history, window_counts *wc)
{
    bool pen = penalties_active(p) && n_history > 0;
    if (pen) {
        size_t n = n_history;
        if (p->penalty_last_n > 0 && (size_t)p->penalty_last_n < n)
            n = (size_t)p->penalty_last_n;
        vt_err e = count_window(wc, history + (n_history - n), n, n_vocab);
        if (e)
            return e;
    }
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        x[p->logit_bias[i].token] = clamp_max(x[p->logit_bias[i].token] + p->logit_bias[i].bias);
    if (!pen)
        return VT_OK;
    for (size_t h = 0; h < wc->cap; h++) {
        if (wc->ids[h] < 0)
            continue;
        float *l = &x[wc->ids[h]];
        if (*l <= 0)
            *l *= p->repetition_penalty;
        else
            *l = clamp_max(*l / p->repetition_penalty);
        *l = clamp_max(*l - ((float)wc->counts[h] * p->frequency_penalty + p->presence_penalty));
    }
    return VT_OK;
}

vt_err smp_apply_penalties(const smp_params *params, float *logits, int32_t n_vocab,
                           const int32_t *history, size_t n_history)
{
    vt_err e = smp_params_validate(params, n_vocab);
    if (e)
        return e;
    window_counts wc = {0};
    e = bias_and_penalize(params, logits, n_vocab, history, n_history, &wc);
    free(wc.ids);
    free(wc.counts);
    return e;
}

/* ---- candidate selection ---- */

/* a ranks above b: larger logit, then lower id. */
static inline bool better(cand a, cand b)
{
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

/* Restores the heap (root = the worst entry) below position i of h[0..n). */
static void sift_down(cand *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, worst = i;
        if (l < n && better(h[worst], h[l]))
            worst = l;
        if (r < n && better(h[worst], h[r]))
            worst = r;
        if (worst == i)
            return;
        cand t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

/* The k best of x[0..n) into out[0..k), best first. Returns min(k, n). */
static int32_t select_top(const float *x, int32_t n, int32_t k, cand *out)
{
    int32_t m = 0;
    if (k <= 0)
        return 0;
    for (int32_t i = 0; i < n; i++) {
        cand c = {x[i], i};
        if (m < k) {
            int32_t j = m++;
            while (j > 0 && better(out[(j - 1) / 2], c)) {
                out[j] = out[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            out[j] = c;
        } else if (better(c, out[0])) {
            out[0] = c;
            sift_down(out, m, 0);
        }
    }
    for (int32_t end = m - 1; end > 0; end--) {
        cand t = out[0];
        out[0] = out[end];
        out[end] = t;
        sift_down(out, end, 0);
    }
    return m;
}

static int cmp_better_first(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return better(*x, *y) ? -1 : better(*y, *x) ? 1 : 0;
}

static int cmp_id(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Top-p over a candidate list sorted best first. */
static void top_p_sorted(smp_state *s, float top_p)
{
    for (int32_t j = 0; j < s->n_cand; j++)
        s->w[j] = s->cand[j].logit;
    double z = exp_shifted(s->w, s->w, s->n_cand, s->max_logit, 1.0f, NULL);
    double target = top_p * z, cum = 0;
    for (int32_t j = 0; j < s->n_cand; j++) {
        cum += s->w[j];
        if (cum >= target) {
            s->n_cand = j + 1;
            return;
        }
    }
}

#define NBUCKET 256
#define BUCKET_SCALE 8.0f /* buckets per unit of logit distance: 256 / 8 = 32 logits */

/* gap = max - logit >= 0; the far tail and -inf go to the last bucket. The
 * vector loop in top_p_all computes the same. */
static inline int bucket_of(float gap)
{
    float g = gap * BUCKET_SCALE;
    return g < (float)(NBUCKET - 1) ? (int)g : NBUCKET - 1;
}

#define NSUB 64          /* sub-buckets when an edge bucket is refined */
#define SORT_BELOW 512   /* an edge bucket this small is simply sorted */

/* Sub-bucket of gap within [lo, lo + NSUB / scale): monotonic in gap. */
static inline int sub_of(float gap, float lo, float scale)
{
    float g = (gap - lo) * scale;
    return g < (float)(NSUB - 1) ? (g > 0 ? (int)g : 0) : NSUB - 1;
}

/* Top-p over the whole vocabulary without sorting it (see the top comment):
 * a histogram over the gap to the largest logit finds the bucket where the
 * cumulative mass reaches top_p * total; everything before it is kept. A
 * large edge bucket is refined into NSUB sub-buckets the same way, a few
 * times, and only what remains is sorted. */
static void top_p_all(smp_state *s, float top_p)
{
    const float *x = s->buf, mx = s->max_logit;
    const float *w = s->w;
    int32_t n = s->n_vocab;
    /* four histograms, one per lane, so consecutive updates do not wait on
     * each other; added up in a fixed order */
    double mass4[4][NBUCKET] = {{0}}, mass[NBUCKET];
    int32_t count4[4][NBUCKET] = {{0}}, count[NBUCKET];
    exp_shifted(x, s->w, n, mx, 1.0f, NULL);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        vf4 v, wv;
        memcpy(&v, x + i, sizeof v);
        memcpy(&wv, w + i, sizeof wv);
        vf4 g = (mx - v) * BUCKET_SCALE;
        g = select4(g < (float)(NBUCKET - 1), g, splat4((float)(NBUCKET - 1)));
        vi4 b = __builtin_convertvector(g, vi4);
        for (int k = 0; k < 4; k++) {
            mass4[k][b[k]] += wv[k];
            count4[k][b[k]]++;
        }
    }
    for (; i < n; i++) {
        int b = bucket_of(mx - x[i]);
        mass4[0][b] += w[i];
        count4[0][b]++;
    }
    double z = 0;
    for (int b = 0; b < NBUCKET; b++) {
        mass[b] = (mass4[0][b] + mass4[1][b]) + (mass4[2][b] + mass4[3][b]);
        count[b] = count4[0][b] + count4[1][b] + count4[2][b] + count4[3][b];
        z += mass[b];
    }
    double target = top_p * z, cum = 0;
    int edge = NBUCKET - 1;
    int32_t e0 = 0; /* tokens in the buckets before the edge */
    for (int b = 0; b < NBUCKET; b++) {
        if (cum + mass[b] >= target) {
            edge = b;
            break;
        }
        cum += mass[b];
        e0 += count[b];
    }
    /* cand[0, e0): kept; cand[e0, e1): the edge bucket */
    int32_t nk = 0, e1 = e0;
    float lim = edge < NBUCKET - 1 ? (float)(edge + 1) : INFINITY; /* bucket <= edge */
    for (i = 0; i < n; i++) {
        if (!((mx - x[i]) * BUCKET_SCALE < lim))
            continue;
        int b = bucket_of(mx - x[i]);
        if (b < edge)
            s->cand[nk++] = (cand){x[i], i};
        else if (b == edge)
            s->cand[e1++] = (cand){x[i], i};
    }

    /* refine the edge bucket (not the open-ended last one) while it is large */
    float lo = (float)edge / BUCKET_SCALE, width = 1.0f / BUCKET_SCALE;
    for (int level = 0; level < 4 && edge < NBUCKET - 1 && e1 - e0 > SORT_BELOW; level++) {
        float scale = (float)NSUB / width;
        double sm[NSUB] = {0};
        int32_t sc[NSUB] = {0};
        for (int32_t j = e0; j < e1; j++) {
            int b = sub_of(mx - s->cand[j].logit, lo, scale);
            sm[b] += w[s->cand[j].id];
            sc[b]++;
        }
        int sedge = NSUB - 1;
        for (int b = 0; b < NSUB; b++) {
            if (cum + sm[b] >= target) {
                sedge = b;
                break;
            }
            cum += sm[b];
        }
        /* three-way partition of [e0, e1): before the sub-edge, in it, after */
        int32_t lt = e0, j = e0, gt = e1;
        while (j < gt) {
            int b = sub_of(mx - s->cand[j].logit, lo, scale);
            cand c = s->cand[j];
            if (b < sedge) {
                s->cand[j++] = s->cand[lt];
                s->cand[lt++] = c;
            } else if (b > sedge) {
                s->cand[j] = s->cand[--gt];
                s->cand[gt] = c;
            } else {
                j++;
            }
        }
        e0 = lt;
        e1 = gt;
        width /= NSUB;
        lo += (float)sedge * width;
    }
    qsort(s->cand + e0, (size_t)(e1 - e0), sizeof(cand), cmp_better_first);
    int32_t keep = e1;
    for (int32_t j = e0; j < e1; j++) {
        cum += w[s->cand[j].id];
        if (cum >= target) {
            keep = j + 1;
            break;
        }
    }
    s->all = false;
    s->n_cand = keep;
}

static void min_p_filter(smp_state *s, float min_p)
{
    float thr = s->max_logit + logf(min_p);
    int32_t m = 0;
    if (s->all) {
        for (int32_t i = 0; i < s->n_vocab; i++)
            if (s->buf[i] >= thr)
                s->cand[m++] = (cand){s->buf[i], i};
        s->all = false;
    } else {
        for (int32_t j = 0; j < s->n_cand; j++)
            if (s->cand[j].logit >= thr)
                s->cand[m++] = s->cand[j];
    }
    s->n_cand = m;
}

/* The grammar's mask: disallowed tokens get -inf; the end tokens keep their
 * logits exactly when the grammar is complete. */
static vt_err apply_grammar(smp_state *s, float *x)
{
    int32_t n = smp_grammar_mask(s->gs, s->gmask);
    if (n < 0)
        return VT_ERR_NOMEM;
    bool eos = smp_grammar_accepts_eos(s->gs);
    float keep[8];
    int32_t n_keep = VT_MIN(s->n_end, 8);
    for (int32_t i = 0; i < n_keep; i++)
        keep[i] = x[s->end_ids[i]];
    size_t nw = ((size_t)s->n_vocab + 63) / 64;
    for (size_t w = 0; w < nw; w++) {
        uint64_t m = s->gmask[w];
        if (m == ~0ull)
            continue;
        int32_t base = (int32_t)(w * 64), lim = VT_MIN(64, s->n_vocab - base);
        if (m == 0) {
            for (int32_t j = 0; j < lim; j++)
                x[base + j] = -INFINITY;
            continue;
        }
        for (int32_t j = 0; j < lim; j++)
            if (!(m >> j & 1))
                x[base + j] = -INFINITY;
    }
    bool end_ok = false;
    if (eos)
        for (int32_t i = 0; i < n_keep; i++) {
            x[s->end_ids[i]] = keep[i];
            end_ok |= keep[i] > -INFINITY;
        }
    if (n == 0 && !end_ok)
        return vt_fail(VT_ERR_INVALID, eos ? "grammar: the output is complete but the end tokens "
                                             "are banned (min_tokens or logit_bias)"
                                           : "grammar: no token of the vocabulary can continue "
                                             "the output here");
    for (int32_t i = 0; i < n_keep && !eos; i++)
        x[s->end_ids[i]] = -INFINITY;
    s->g_allowed = n + (end_ok ? n_keep : 0);
    return VT_OK;
}

/* With a grammar that allows few tokens: the candidates are the allowed
 * tokens with a finite logit (the mask's bits and the end tokens), so the
 * steps after this one never scan the whole vocabulary. */
static void grammar_candidates(smp_state *s)
{
    const float *x = s->buf;
    int32_t m = 0;
    size_t nw = ((size_t)s->n_vocab + 63) / 64;
    for (size_t w = 0; w < nw; w++)
        for (uint64_t b = s->gmask[w]; b; b &= b - 1) {
            int32_t id = (int32_t)(w * 64) + __builtin_ctzll(b);
            if (x[id] > -INFINITY)
                s->cand[m++] = (cand){x[id], id};
        }
    for (int32_t i = 0; i < VT_MIN(s->n_end, 8); i++) {
        int32_t id = s->end_ids[i];
        if (x[id] > -INFINITY && !(s->gmask[id >> 6] >> (id & 63) & 1))
            s->cand[m++] = (cand){x[id], id};
    }
    s->all = false;
    s->n_cand = m;
}

/* Bias, penalties and truncation: leaves the candidate set in s. */
static vt_err prepare(smp_state *s, const float *logits, int32_t n_vocab, const int32_t *history,
                      size_t n_history)
{
    if (n_vocab != s->n_vocab)
        return vt_fail(VT_ERR_INVALID, "sampler: %d logits for a vocabulary of %d", (int)n_vocab,
                       (int)s->n_vocab);
    if (n_history > 0 && !history)
        return vt_fail(VT_ERR_INVALID, "sampler: %zu history tokens but no array", n_history);
    if (!s->buf) {
        size_t n = (size_t)n_vocab;
        s->buf = malloc(n * sizeof *s->buf);
        s->w = malloc(n * sizeof *s->w);
        s->blocks = malloc((n / BLOCK + 1) * sizeof *s->blocks);
        s->cand = malloc(n * sizeof *s->cand);
        if (!s->buf || !s->w || !s->blocks || !s->cand) {
            free(s->buf);
            free(s->w);
            free(s->blocks);
            free(s->cand);
            s->buf = s->w = NULL;
            s->blocks = NULL;
            s->cand = NULL;
            return vt_fail(VT_ERR_NOMEM, "sampler: out of memory for %d logits", (int)n_vocab);
        }
    }
    float *x = s->buf;
    sanitize(logits, x, n_vocab);
    vt_err e = bias_and_penalize(&s->p, x, n_vocab, history, n_history, &s->wc);
    if (e)
        return e;
    if (s->n_generated < s->p.min_tokens) /* too early to end */
        for (int32_t i = 0; i < s->n_end; i++)
            x[s->end_ids[i]] = -INFINITY;
    if (s->gs && (e = apply_grammar(s, x)))
        return e;

    int32_t am = argmax_of(x, n_vocab);
    if (x[am] == -INFINITY)
        return vt_fail(VT_ERR_INVALID, "sampler: no token has a finite logit");
    s->argmax = am;
    s->max_logit = x[am];

    if (s->greedy) { /* the argmax alone */
        s->all = false;
        s->cand[0] = (cand){x[am], am};
        s->n_cand = 1;
        return VT_OK;
    }
    bool sorted = false;
    s->all = true;
    s->n_cand = n_vocab;
    bool trunc = (s->p.top_k > 0 && s->p.top_k < n_vocab) || s->p.top_p < 1.0f;
    if (s->gs && s->g_allowed <= (trunc ? 4096 : n_vocab / 4)) {
        grammar_candidates(s);
        if (trunc) {
            qsort(s->cand, (size_t)s->n_cand, sizeof *s->cand, cmp_better_first);
            if (s->p.top_k > 0 && s->p.top_k < s->n_cand)
                s->n_cand = s->p.top_k;
            if (s->p.top_p < 1.0f)
                top_p_sorted(s, s->p.top_p);
        }
        if (s->p.min_p > 0.0f)
            min_p_filter(s, s->p.min_p);
        return VT_OK;
    }
    if (s->p.top_k > 0 && s->p.top_k < n_vocab) {
        s->n_cand = select_top(x, n_vocab, s->p.top_k, s->cand);
        s->all = false;
        sorted = true;
    }
    if (s->p.top_p < 1.0f) {
        if (sorted)
            top_p_sorted(s, s->p.top_p);
        else
            top_p_all(s, s->p.top_p);
    }
    if (s->p.min_p > 0.0f)
        min_p_filter(s, s->p.min_p);
    return VT_OK;
}

/* Weights exp((logit - max) / T) of the candidates into s->w (indexed like
 * the candidates) and their block sums into s->blocks; returns their sum. */
static double weigh(smp_state *s)
{
    float inv_t = s->greedy ? 1.0f : 1.0f / s->p.temperature;
    if (s->all)
        return exp_shifted(s->buf, s->w, s->n_vocab, s->max_logit, inv_t, s->blocks);
    for (int32_t j = 0; j < s->n_cand; j++)
        s->w[j] = s->cand[j].logit;
    return exp_shifted(s->w, s->w, s->n_cand, s->max_logit, inv_t, s->blocks);
}

/* Walks the block sums, then the weights of one block, to the point where the
 * cumulative weight passes a uniform draw in [0, total). */
static int32_t draw(smp_state *s)
{
    double total = weigh(s);
    double u = uniform53(&s->rng) * total, cum = 0;
    int32_t n = s->all ? s->n_vocab : s->n_cand, nb = (n + BLOCK - 1) / BLOCK, b = 0;
    for (; b < nb - 1 && !(u < cum + s->blocks[b]); b++)
        cum += s->blocks[b];
    int32_t pick = -1;
    for (int32_t j = b * BLOCK; j < VT_MIN(n, (b + 1) * BLOCK); j++) {
        if (s->w[j] > 0) {
            cum += s->w[j];
            pick = j;
            if (u < cum)
                break;
        }
    }
    /* only after rounding trouble: the largest logit always has weight 1 */
    for (int32_t j = n - 1; pick < 0 && j >= 0; j--)
        if (s->w[j] > 0)
            pick = j;
    return s->all ? pick : s->cand[pick].id;
}

static void fill_logprobs(smp_state *s, int32_t token, smp_logprobs *lp)
{
    const float *x = s->buf;
    double z = exp_shifted(x, s->w, s->n_vocab, s->max_logit, 1.0f, NULL);
    double base = (double)s->max_logit + log(z);
    lp->token = token;
    lp->logprob = (float)((double)x[token] - base);
    int32_t k = VT_MIN(s->p.top_logprobs, s->n_vocab);
    cand top[SMP_MAX_TOP_LOGPROBS];
    lp->n_top = select_top(x, s->n_vocab, k, top);
    for (int32_t j = 0; j < lp->n_top; j++)
        lp->top[j] = (smp_token_logprob){top[j].id, (float)((double)top[j].logit - base)};
}

int32_t smp_sample(smp_state *s, const float *logits, int32_t n_vocab, const int32_t *history,
                   size_t n_history, smp_logprobs *lp)
{
    if (prepare(s, logits, n_vocab, history, n_history))
        return -1;
    int32_t tok = s->greedy ? s->argmax : draw(s);
    if (lp)
        fill_logprobs(s, tok, lp);
    return tok;
}

int32_t smp_candidates(smp_state *s, const float *logits, int32_t n_vocab,
                       const int32_t *history, size_t n_history, int32_t *ids, float *probs)
{
    if (prepare(s, logits, n_vocab, history, n_history))
        return -1;
    if (!s->all)
        qsort(s->cand, (size_t)s->n_cand, sizeof(cand), cmp_id);
    double total = weigh(s);
    for (int32_t j = 0; j < s->n_cand; j++) {
        if (ids)
            ids[j] = s->all ? j : s->cand[j].id;
        if (probs)
            probs[j] = (float)(s->w[j] / total);
    }
    return s->n_cand;
}

/* ---- ending ---- */

const char *smp_finish_reason(smp_finish f)
{
    switch (f) {
    case SMP_CONTINUE: return NULL;
    case SMP_FINISH_EOS:
    case SMP_FINISH_STOP: return "stop";
    case SMP_FINISH_LENGTH: return "length";
    }
    return NULL;
}

static bool is_end(const smp_state *s, int32_t token)
{
    for (int32_t i = 0; i < s->n_end; i++)
        if (s->end_ids[i] == token)
            return true;
    return false;
}

vt_err smp_accept(smp_state *s, int32_t token, const char *piece, size_t len, smp_emit *out)
{
    out->text = "";
    out->len = 0;
    out->finish = SMP_CONTINUE;
    out->stop_index = -1;
    if (s->finished)
        return vt_fail(VT_ERR_INVALID, "sampler: the sequence has already finished");
    if (len > 0 && !piece)
        return vt_fail(VT_ERR_INVALID, "sampler: %zu bytes of text but no pointer", len);
    bool end = is_end(s, token);
    if (s->gs && !end) {
        vt_err ge = smp_grammar_accept_token(s->gs, token);
        if (ge)
            return ge;
    }
    s->n_generated++;
    if (!s->p.ignore_eos && end) {
        smp_stop_flush(s->stop, &out->text, &out->len);
        out->finish = SMP_FINISH_EOS;
        s->finished = true;
        return VT_OK;
    }
    bool at_limit = s->p.max_tokens > 0 && s->n_generated >= s->p.max_tokens;
    bool gdone = s->gs && !s->p.ignore_eos && smp_grammar_finished(s->gs);
    int32_t matched;
    vt_err e = smp_stop_feed(s->stop, piece, len, at_limit || gdone, &out->text, &out->len,
                             &matched);
    if (e)
        return e;
    if (matched >= 0) {
        out->finish = SMP_FINISH_STOP;
        out->stop_index = matched;
        s->finished = true;
    } else if (at_limit) {
        out->finish = SMP_FINISH_LENGTH;
        s->finished = true;
    } else if (gdone) { /* nothing can follow: an end token would be the only choice */
        out->finish = SMP_FINISH_EOS;
        s->finished = true;
    }
    return VT_OK;
}

void smp_flush(smp_state *s, smp_emit *out)
{
    smp_stop_flush(s->stop, &out->text, &out->len);
    out->finish = SMP_CONTINUE;
    out->stop_index = -1;
    s->finished = true;
}
