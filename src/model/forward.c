/*
 * forward.c - the transformer forward pass over a flattened batch.
 *
 * For each layer, in the order the model's math reads:
 *   h = rmsnorm(x) * attn_norm
 *   q, k, v = h·Wqᵀ (+bq), h·Wkᵀ (+bk), h·Wvᵀ (+bv)   [qwen3: rmsnorm per head of q, k]
 *   rope(q, k) at each token's position; k, v -> the paged KV cache (F16)
 *   a = softmax(q·Kᵀ / sqrt(head_dim)) · V   over the token's own sequence, positions <= its own
 *   x += a·Woᵀ
 *   h = rmsnorm(x) * ffn_norm
 *   x += W2(silu(W1 h) * W3 h)                 dense, or
 *   x += Σ_k w_k · expert_k(h) (+ σ(h·g)·shared(h))   mixture of experts
 * then logits = (rmsnorm(x) * output_norm)·Woutᵀ for the tokens that ask,
 * and the hidden state rmsnorm(x) * output_norm itself for those that want it
 * (embeddings).
 *
 * Tokens of all sequences go through every matrix multiplication together;
 * only attention looks at sequences. For MoE layers the tokens are grouped
 * by expert so that each routed expert's weights are read once per step and
 * experts no token chose are never touched.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "attention.h"
#include "model_internal.h"

struct md_ctx {
    const md_model *m;
    kn_pool *pool;
    kn_ws ws; /* quantized activations of the multiplications */
    int64_t cap; /* tokens the buffers hold */
    float *x, *xn, *q, *k, *v, *att, *tmp, *g, *u, *router, *ys, *acc;
    kn_mm *mm;                  /* [2 n_experts] the experts' matrices of a step */
    float *rope_cos, *rope_sin; /* [cap][rope_dim/2] */
    int32_t *exp_ids;           /* [cap][n_experts_used] */
    float *exp_w;               /* [cap][n_experts_used] */
    int32_t *list;              /* tokens grouped by expert */
    float *list_w;
    int64_t *counts;            /* [n_experts + 1] */
    float *route_margin;        /* [cap] smallest routing margin over the layers */
    float *scores;              /* [threads][score_cap] */
    md_attn_fn attn_f16acc, attn_f32;
    int64_t score_cap;
};

/* ---- small math ---------------------------------------------------- */

static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

static inline float silu(float x)
{
    return x / (1.0f + expf(-x));
}

/* Row-wise work spread over the pool when a batch is big enough to pay for
 * the hand-off (each row's numerics as the serial loop's). */
#define PAR_MIN_ELEMS 32768

typedef struct {
    float *out;
    const float *x, *w;
    int64_t rows, dim;
    float eps;
} norm_job;

static void norm_task(void *ctx, int ith, int nth)
{
    norm_job *j = ctx;
    for (int64_t t = ith; t < j->rows; t += nth)
        rmsnorm(j->out + t * j->dim, j->x + t * j->dim, j->w, j->dim, j->eps);
}

/* out[t] = rmsnorm(x[t]) * w for t < rows. */
static void rmsnorm_rows(kn_pool *pool, float *out, const float *x, const float *w, int64_t rows,
                         int64_t dim, float eps)
{
    norm_job j = {out, x, w, rows, dim, eps};
    if (rows * dim >= PAR_MIN_ELEMS && rows > 1)
        kn_pool_run(pool, norm_task, &j);
    else
        norm_task(&j, 0, 1);
}

typedef struct {
    float *g;
    const float *u;
    int64_t n;
} swiglu_job;

static void swiglu_task(void *ctx, int ith, int nth)
{
    swiglu_job *j = ctx;
    int64_t per = (j->n + nth - 1) / nth, lo = per * ith, hi = lo + per < j->n ? lo + per : j->n;
    for (int64_t i = lo; i < hi; i++)
        j->g[i] = silu(j->g[i]) * j->u[i];
}

static void softmax(float *x, int64_t n)
{
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

/* ---- context ------------------------------------------------------- */

static void free_buffers(md_ctx *c)
{
    float **fs[] = {&c->x,   &c->xn,     &c->q,      &c->k,  &c->v,  &c->att,
                    &c->tmp, &c->g,      &c->u,      &c->router, &c->ys,
                    &c->acc, &c->rope_cos, &c->rope_sin, &c->exp_w, &c->list_w, &c->route_margin};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
        free(*fs[i]);
        *fs[i] = NULL;
    }
    free(c->exp_ids);
    free(c->mm);
    c->mm = NULL;
    free(c->list);
    free(c->counts);
    c->exp_ids = c->list = NULL;
    c->counts = NULL;
    c->cap = 0;
}

static vt_err reserve(md_ctx *c, int64_t n)
{
    if (n <= c->cap)
        return VT_OK;
    const md_hparams *hp = &c->m->hp;
    free_buffers(c);
    size_t N = (size_t)n;
    int64_t ku = hp->n_experts_used ? hp->n_experts_used : 1;
    /* g and u hold a token's ff values, or its ku experts' (one per pair) */
    int64_t ffmax = VT_MAX(hp->ff, VT_MAX(ku * hp->ff_exp, hp->ff_shexp));
    int64_t qd = hp->n_heads * hp->head_dim, kd = hp->n_kv_heads * hp->head_dim;
    int64_t vd = hp->n_kv_heads * hp->head_dim_v, ad = hp->n_heads * hp->head_dim_v;
    c->x = malloc(N * (size_t)hp->dim * sizeof(float));
    c->xn = malloc(N * (size_t)hp->dim * sizeof(float));
    c->tmp = malloc(N * (size_t)hp->dim * sizeof(float));
    c->acc = malloc(N * (size_t)hp->dim * sizeof(float));
    c->q = malloc(N * (size_t)qd * sizeof(float));
    c->k = malloc(N * (size_t)kd * sizeof(float));
    c->v = malloc(N * (size_t)vd * sizeof(float));
    c->att = malloc(N * (size_t)ad * sizeof(float));
    c->g = malloc(N * (size_t)ffmax * sizeof(float));
    c->u = malloc(N * (size_t)ffmax * sizeof(float));
    c->rope_cos = malloc(N * (size_t)(hp->rope_dim / 2) * sizeof(float));
    c->rope_sin = malloc(N * (size_t)(hp->rope_dim / 2) * sizeof(float));
    c->router = malloc(N * (size_t)(hp->n_experts ? hp->n_experts : 1) * sizeof(float));
    c->ys = malloc(N * (size_t)(ku * hp->dim) * sizeof(float));
    c->mm = malloc((size_t)(2 * hp->n_experts + 1) * sizeof(kn_mm));
    c->exp_ids = malloc(N * (size_t)ku * sizeof(int32_t));
    c->exp_w = malloc(N * (size_t)ku * sizeof(float));
    c->list = malloc(N * (size_t)ku * sizeof(int32_t));
    c->list_w = malloc(N * (size_t)ku * sizeof(float));
    c->counts = malloc((size_t)(hp->n_experts + 2) * sizeof(int64_t));
    c->route_margin = malloc(N * sizeof(float));
    if (!c->x || !c->xn || !c->tmp || !c->acc || !c->q || !c->k || !c->v || !c->att || !c->g ||
        !c->u || !c->rope_cos || !c->rope_sin || !c->router || !c->mm || !c->ys || !c->exp_ids ||
        !c->exp_w || !c->list || !c->list_w || !c->counts || !c->route_margin) {
        free_buffers(c);
        return vt_fail(VT_ERR_NOMEM, "out of memory for a batch of %lld tokens", (long long)n);
    }
    c->cap = n;
    return VT_OK;
}

vt_err md_ctx_create(const md_model *m, kn_pool *pool, md_ctx **out)
{
    md_ctx *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c)
        return vt_fail(VT_ERR_NOMEM, "out of memory creating a model context");
    c->m = m;
    c->pool = pool;
    md_attn_select(m->hp.head_dim, m->hp.head_dim_v, &c->attn_f16acc, &c->attn_f32);
    *out = c;
    return VT_OK;
}

void md_ctx_destroy(md_ctx *c)
{
    if (!c)
        return;
    free_buffers(c);
    free(c->scores);
    kn_ws_free(&c->ws);
    free(c);
}

/* ---- rope ---------------------------------------------------------- */

/* cos/sin of every rotated pair for every token, computed the way ggml
 * does: theta starts at pos (times the linear scale) and is multiplied by
 * base^(-2/rope_dim) per pair, divided by the pair's frequency factor. */
static void rope_tables(md_ctx *c, const md_batch *b)
{
    const md_hparams *hp = &c->m->hp;
    int64_t half = hp->rope_dim / 2;
    float theta_scale = powf(hp->rope_base, -2.0f / (float)hp->rope_dim);
    const float *ff = c->m->rope_freqs.data;
    for (int64_t t = 0; t < b->n_tokens; t++) {
        float theta = (float)b->pos[t];
        for (int64_t i = 0; i < half; i++) {
            float th = theta * hp->rope_freq_scale / (ff ? ff[i] : 1.0f);
            c->rope_cos[t * half + i] = cosf(th);
            c->rope_sin[t * half + i] = sinf(th);
            theta *= theta_scale;
        }
    }
}

static void rope_apply(const md_hparams *hp, float *v, int64_t n_heads, const float *cs,
                       const float *sn)
{
    int64_t half = hp->rope_dim / 2, hd = hp->head_dim;
    for (int64_t h = 0; h < n_heads; h++) {
        float *x = v + h * hd;
        for (int64_t i = 0; i < half; i++) {
            int64_t i0 = hp->rope_type == MD_ROPE_NEOX ? i : 2 * i;
            int64_t i1 = hp->rope_type == MD_ROPE_NEOX ? i + half : 2 * i + 1;
            float x0 = x[i0], x1 = x[i1];
            x[i0] = x0 * cs[i] - x1 * sn[i];
            x[i1] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

/* ---- attention ----------------------------------------------------- */

typedef struct {
    md_ctx *c;
    const md_kv *kv;
    const md_batch *b;
    int64_t il;
    float scale;
    _Alignas(64) _Atomic int64_t next; /* own cache line: no false sharing with the fields */
} attn_job;

static inline size_t slot_of(const md_kv *kv, const md_seq *s, int64_t pos)
{
    return (size_t)s->block_table[pos / kv->block_size] * (size_t)kv->block_size +
           (size_t)(pos % kv->block_size);
}

/* Batches of at least this many tokens use the F32 recipe (ggml switches to
 * its tiled kernel there); smaller ones, decoding included, the F16 one. */
#define ATTN_TILED_MIN 64

static void attn_task(void *ctx, int ith, int nth)
{
    (void)nth;
    attn_job *j = ctx;
    md_ctx *c = j->c;
    const md_hparams *hp = &c->m->hp;
    const md_kv *kv = j->kv;
    int64_t nh = hp->n_heads, hd = hp->head_dim, hdv = hp->head_dim_v;
    int64_t group = hp->n_heads / hp->n_kv_heads;
    float *sc = c->scores + (size_t)ith * (size_t)c->score_cap;
    md_attn_fn by_size = j->b->n_tokens >= ATTN_TILED_MIN ? c->attn_f32 : c->attn_f16acc;
    int64_t nkv = hp->n_kv_heads;
    for (;;) {
        int64_t item = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (item >= j->b->n_tokens * nkv)
            return;
        int64_t t = item / nkv, kvh = item % nkv, h = kvh * group;
        md_attn_fn fn = !j->b->attn_f32  ? by_size
                        : j->b->attn_f32[t] ? c->attn_f32
                                            : c->attn_f16acc;
        const md_seq *s = &j->b->seqs[j->b->seq[t]];
        md_attn_args a = {.k = kv->k[j->il] + kvh * hd,
                          .v = kv->v[j->il] + kvh * hdv,
                          .k_stride = (size_t)kv->k_dim,
                          .v_stride = (size_t)kv->v_dim,
                          .block_table = s->block_table,
                          .block_size = kv->block_size,
                          .npos = j->b->pos[t] + 1,
                          .hd = hd,
                          .hdv = hdv,
                          .scale = j->scale};
        fn(&a, (int)group, c->q + t * nh * hd + h * hd, c->att + t * nh * hdv + h * hdv, sc);
    }
}

/* ---- layers -------------------------------------------------------- */

static vt_err matmul(md_ctx *c, const md_weight *w, const void *data, const float *x, int64_t n,
                     float *y)
{
    return kn_matmul_ws(c->pool, &c->ws, w->type, data, w->rows, w->cols, x, n, y, w->rows);
}

/* One matrix of a kn_matmul_multi call over all n rows of its input. */
static kn_mm mm_all(const md_weight *w, const void *data, int64_t n, float *y)
{
    return (kn_mm){.type = w->type, .w = data, .rows = w->rows, .ntok = n, .y = y, .ldy = w->rows};
}

static void add_bias(float *y, const md_weight *b, int64_t n, int64_t d)
{
    if (!b->data)
        return;
    const float *bb = b->data;
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < d; i++)
            y[t * d + i] += bb[i];
}

static vt_err attention(md_ctx *c, md_kv *kv, const md_batch *b, int64_t il)
{
    const md_hparams *hp = &c->m->hp;
    const md_layer *L = &c->m->layers[il];
    int64_t n = b->n_tokens, dim = hp->dim, hd = hp->head_dim;
    int64_t qd = hp->n_heads * hd, kd = kv->k_dim, vd = kv->v_dim;
    vt_err e;
    rmsnorm_rows(c->pool, c->xn, c->x, L->attn_norm.data, n, dim, hp->norm_eps);
    const kn_mm qkv[3] = {mm_all(&L->wq, L->wq.data, n, c->q), mm_all(&L->wk, L->wk.data, n, c->k),
                          mm_all(&L->wv, L->wv.data, n, c->v)};
    if ((e = kn_matmul_multi(c->pool, &c->ws, c->xn, n, dim, 3, qkv)))
        return e;
    add_bias(c->q, &L->bq, n, qd);
    add_bias(c->k, &L->bk, n, kd);
    add_bias(c->v, &L->bv, n, vd);
    int64_t half = hp->rope_dim / 2;
    for (int64_t t = 0; t < n; t++) {
        float *q = c->q + t * qd, *k = c->k + t * kd;
        if (L->q_norm.data) {
            for (int64_t h = 0; h < hp->n_heads; h++)
                rmsnorm(q + h * hd, q + h * hd, L->q_norm.data, hd, hp->norm_eps);
            for (int64_t h = 0; h < hp->n_kv_heads; h++)
                rmsnorm(k + h * hd, k + h * hd, L->k_norm.data, hd, hp->norm_eps);
        }
        rope_apply(hp, q, hp->n_heads, c->rope_cos + t * half, c->rope_sin + t * half);
        rope_apply(hp, k, hp->n_kv_heads, c->rope_cos + t * half, c->rope_sin + t * half);
        const md_seq *s = &b->seqs[b->seq[t]];
        size_t slot = slot_of(kv, s, b->pos[t]);
        vt_fp16 *kc = kv->k[il] + slot * (size_t)kd, *vc = kv->v[il] + slot * (size_t)vd;
        for (int64_t i = 0; i < kd; i++)
            kc[i] = vt_fp32_to_fp16(k[i]);
        for (int64_t i = 0; i < vd; i++)
            vc[i] = vt_fp32_to_fp16(c->v[t * vd + i]);
    }
    attn_job j = {.c = c, .kv = kv, .b = b, .il = il, .scale = 1.0f / sqrtf((float)hd)};
    atomic_init(&j.next, 0);
    kn_pool_run(c->pool, attn_task, &j);
    if ((e = matmul(c, &L->wo, L->wo.data, c->att, n, c->tmp)))
        return e;
    for (int64_t i = 0; i < n * dim; i++)
        c->x[i] += c->tmp[i];
    return VT_OK;
}

static void swiglu(md_ctx *c, int64_t n)
{
    swiglu_job sj = {c->g, c->u, n};
    if (n >= PAR_MIN_ELEMS)
        kn_pool_run(c->pool, swiglu_task, &sj);
    else
        swiglu_task(&sj, 0, 1);
}

/* out[n][dim] = W2(silu(W1 x) * W3 x), W1 and W3 in one call. */
static vt_err ffn(md_ctx *c, const md_weight *w1, const void *d1, const md_weight *w3,
                  const void *d3, const md_weight *w2, const void *d2, const float *x, int64_t n,
                  float *out)
{
    const kn_mm gu[2] = {mm_all(w1, d1, n, c->g), mm_all(w3, d3, n, c->u)};
    vt_err e = kn_matmul_multi(c->pool, &c->ws, x, n, w1->cols, 2, gu);
    if (e)
        return e;
    swiglu(c, n * w1->rows);
    return matmul(c, w2, d2, c->g, n, out);
}

static vt_err moe(md_ctx *c, const md_layer *L, int64_t n)
{
    const md_hparams *hp = &c->m->hp;
    int64_t ne = hp->n_experts, k = hp->n_experts_used, dim = hp->dim;
    vt_err e;
    if ((e = matmul(c, &L->gate_inp, L->gate_inp.data, c->xn, n, c->router)))
        return e;
    memset(c->counts, 0, (size_t)(ne + 2) * sizeof(int64_t));
    for (int64_t t = 0; t < n; t++) {
        float *p = c->router + t * ne;
        softmax(p, ne);
        float wsum = 0;
        for (int64_t s = 0; s < k; s++) { /* top-k by repeated selection (k is small) */
            int64_t best = -1;
            for (int64_t x = 0; x < ne; x++) {
                bool taken = false;
                for (int64_t r = 0; r < s; r++)
                    taken |= c->exp_ids[t * k + r] == x;
                if (!taken && (best < 0 || p[x] > p[best]))
                    best = x;
            }
            c->exp_ids[t * k + s] = (int32_t)best;
            c->exp_w[t * k + s] = p[best];
            wsum += p[best];
            c->counts[best + 2]++;
        }
        if (hp->expert_norm)
            for (int64_t s = 0; s < k; s++)
                c->exp_w[t * k + s] /= wsum;
        /* how close the last chosen expert came to losing its place */
        float last = p[c->exp_ids[t * k + k - 1]], next = 0;
        for (int64_t x = 0; x < ne; x++) {
            bool taken = false;
            for (int64_t r = 0; r < k; r++)
                taken |= c->exp_ids[t * k + r] == x;
            if (!taken && p[x] > next)
                next = p[x];
        }
        float margin = k < ne ? (last - next) / last : 1.0f;
        if (margin < c->route_margin[t])
            c->route_margin[t] = margin;
    }
    /* group the (token, weight) pairs by expert: counts[e+1] = start of e */
    for (int64_t x = 0; x < ne; x++)
        c->counts[x + 2] += c->counts[x + 1];
    for (int64_t t = 0; t < n; t++)
        for (int64_t s = 0; s < k; s++) {
            int64_t at = c->counts[c->exp_ids[t * k + s] + 1]++;
            c->list[at] = (int32_t)t;
            c->list_w[at] = c->exp_w[t * k + s];
        }
    /* every routed (token, expert) pair at once: gate and up of all the
     * experts chosen in one call, then down; pair i of expert x is row
     * counts[x] + i of g, u and ys */
    const int64_t ff = L->gate_exps.rows, pairs = n * k;
    kn_mm *mm = c->mm;
    int nm = 0;
    for (int64_t x = 0; x < ne; x++) {
        int64_t lo = c->counts[x], cnt = c->counts[x + 1] - lo;
        if (cnt == 0)
            continue;
        const char *g = (const char *)L->gate_exps.data + (size_t)x * L->gate_exps.stride;
        const char *u = (const char *)L->up_exps.data + (size_t)x * L->up_exps.stride;
        mm[nm++] = (kn_mm){.type = L->gate_exps.type, .w = g, .rows = ff, .tok = c->list + lo,
                           .ntok = cnt, .y = c->g + lo * ff, .ldy = ff};
        mm[nm++] = (kn_mm){.type = L->up_exps.type, .w = u, .rows = ff, .tok = c->list + lo,
                           .ntok = cnt, .y = c->u + lo * ff, .ldy = ff};
    }
    if ((e = kn_matmul_multi(c->pool, &c->ws, c->xn, n, dim, nm, mm)))
        return e;
    swiglu(c, pairs * ff);
    nm = 0;
    for (int64_t x = 0; x < ne; x++) {
        int64_t lo = c->counts[x], cnt = c->counts[x + 1] - lo;
        if (cnt == 0)
            continue;
        const char *d = (const char *)L->down_exps.data + (size_t)x * L->down_exps.stride;
        mm[nm++] = (kn_mm){.type = L->down_exps.type, .w = d, .rows = dim, .first = lo,
                           .ntok = cnt, .y = c->ys + lo * dim, .ldy = dim};
    }
    if ((e = kn_matmul_multi(c->pool, &c->ws, c->g, pairs, ff, nm, mm)))
        return e;
    memset(c->acc, 0, (size_t)(n * dim) * sizeof(float));
    for (int64_t i = 0; i < pairs; i++) { /* each token's experts in the order of their ids */
        float w = c->list_w[i], *acc = c->acc + (int64_t)c->list[i] * dim;
        const float *y = c->ys + i * dim;
        for (int64_t j = 0; j < dim; j++)
            acc[j] += w * y[j];
    }
    if (L->gate_shexp.data) {
        if ((e = ffn(c, &L->gate_shexp, L->gate_shexp.data, &L->up_shexp, L->up_shexp.data,
                     &L->down_shexp, L->down_shexp.data, c->xn, n, c->tmp)))
            return e;
        const float *gw = L->gate_inp_shexp.data;
        for (int64_t t = 0; t < n; t++) {
            float gl = 0;
            for (int64_t j = 0; j < dim; j++)
                gl += c->xn[t * dim + j] * gw[j];
            float gate = 1.0f / (1.0f + expf(-gl));
            for (int64_t j = 0; j < dim; j++)
                c->acc[t * dim + j] += gate * c->tmp[t * dim + j];
        }
    }
    for (int64_t i = 0; i < n * dim; i++)
        c->x[i] += c->acc[i];
    return VT_OK;
}

static vt_err feed_forward(md_ctx *c, int64_t il, int64_t n)
{
    const md_hparams *hp = &c->m->hp;
    const md_layer *L = &c->m->layers[il];
    int64_t dim = hp->dim;
    rmsnorm_rows(c->pool, c->xn, c->x, L->ffn_norm.data, n, dim, hp->norm_eps);
    if (hp->n_experts)
        return moe(c, L, n);
    vt_err e = ffn(c, &L->ffn_gate, L->ffn_gate.data, &L->ffn_up, L->ffn_up.data, &L->ffn_down,
                   L->ffn_down.data, c->xn, n, c->tmp);
    if (e)
        return e;
    for (int64_t i = 0; i < n * dim; i++)
        c->x[i] += c->tmp[i];
    return VT_OK;
}

/* ---- the pass ------------------------------------------------------ */

static vt_err check_batch(const md_ctx *c, const md_kv *kv, const md_batch *b, int64_t *maxpos)
{
    const md_hparams *hp = &c->m->hp;
    if (b->n_tokens < 1 || !b->tokens || !b->pos || !b->seq || !b->seqs || b->n_seqs < 1)
        return vt_fail(VT_ERR_INVALID, "empty or incomplete batch");
    if (kv->n_layers != hp->n_layers || kv->k_dim != hp->n_kv_heads * hp->head_dim)
        return vt_fail(VT_ERR_INVALID, "KV cache was made for another model");
    *maxpos = 0;
    for (int64_t t = 0; t < b->n_tokens; t++) {
        if (b->tokens[t] < 0 || b->tokens[t] >= hp->n_vocab)
            return vt_fail(VT_ERR_RANGE, "token id %d is outside the vocabulary (0..%lld)",
                           b->tokens[t], (long long)hp->n_vocab - 1);
        if (b->seq[t] < 0 || b->seq[t] >= b->n_seqs)
            return vt_fail(VT_ERR_INVALID, "token %lld names sequence %d of %lld", (long long)t,
                           b->seq[t], (long long)b->n_seqs);
        const md_seq *s = &b->seqs[b->seq[t]];
        if (b->pos[t] < 0 || b->pos[t] / kv->block_size >= s->n_blocks)
            return vt_fail(VT_ERR_RANGE, "position %d has no KV block in its sequence",
                           b->pos[t]);
        *maxpos = VT_MAX(*maxpos, (int64_t)b->pos[t]);
    }
    for (int64_t i = 0; i < b->n_seqs; i++)
        for (int64_t j = 0; j < b->seqs[i].n_blocks; j++)
            if (b->seqs[i].block_table[j] < 0 || b->seqs[i].block_table[j] >= kv->n_blocks)
                return vt_fail(VT_ERR_RANGE, "block %d is outside the KV cache",
                               b->seqs[i].block_table[j]);
    return VT_OK;
}

vt_err md_forward(md_ctx *c, md_kv *kv, const md_batch *b, float *out_logits)
{
    const md_model *m = c->m;
    const md_hparams *hp = &m->hp;
    int64_t n = b->n_tokens, dim = hp->dim, maxpos = 0;
    vt_err e;
    if ((e = check_batch(c, kv, b, &maxpos)) || (e = reserve(c, n)))
        return e;
    int nth = kn_pool_size(c->pool);
    int64_t need = (int64_t)MD_ATTN_SCRATCH(hp->n_heads / hp->n_kv_heads, maxpos + 1);
    if (need > c->score_cap) {
        float *s = realloc(c->scores, (size_t)nth * (size_t)need * sizeof(float));
        if (!s)
            return vt_fail(VT_ERR_NOMEM, "out of memory for attention scores");
        c->scores = s;
        c->score_cap = need;
    }
    const kn_traits *et = kn_traits_get(m->tok_embd.type);
    size_t erow = vt_row_size(m->tok_embd.type, dim);
    for (int64_t t = 0; t < n; t++)
        et->to_float((const char *)m->tok_embd.data + (size_t)b->tokens[t] * erow, c->x + t * dim,
                     dim);
    rope_tables(c, b);
    for (int64_t t = 0; t < n; t++)
        c->route_margin[t] = 1.0f;
    for (int64_t il = 0; il < hp->n_layers; il++)
        if ((e = attention(c, kv, b, il)) || (e = feed_forward(c, il, n)))
            return e;
    /* final norm and the output matrix, only for the tokens that want logits */
    if (b->hidden && b->out_hidden) {
        int64_t nh = 0;
        for (int64_t t = 0; t < n; t++)
            if (b->hidden[t])
                rmsnorm(b->out_hidden + (nh++) * dim, c->x + t * dim, m->output_norm.data, dim,
                        hp->norm_eps);
    }
    int64_t n_out = 0;
    for (int64_t t = 0; t < n; t++) {
        bool want = b->logits ? b->logits[t] : t == n - 1;
        if (want)
            rmsnorm(c->xn + (n_out++) * dim, c->x + t * dim, m->output_norm.data, dim,
                    hp->norm_eps);
    }
    if (n_out)
        return kn_matmul_ws(c->pool, &c->ws, m->output.type, m->output.data, hp->n_vocab, dim,
                            c->xn, n_out, out_logits, hp->n_vocab);
    return VT_OK;
}

const float *md_ctx_route_margins(const md_ctx *c)
{
    return c->m->hp.n_experts ? c->route_margin : NULL;
}
