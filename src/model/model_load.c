/*
 * model_load.c - reading hyperparameters from GGUF metadata and binding the
 * tensors of each supported architecture, with every shape and type checked
 * so that the forward pass can trust them.
 *
 * Tensor names follow llama.cpp's GGUF convention (token_embd, blk.N.attn_q,
 * blk.N.ffn_gate_exps, ...). Metadata keys are prefixed by the architecture
 * name ("qwen3moe.embedding_length").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "model.h"

static const struct {
    const char *name;
    md_arch arch;
    md_rope_type rope;
} arch_table[] = {
    {"llama", MD_ARCH_LLAMA, MD_ROPE_NORM},
    {"qwen2", MD_ARCH_QWEN2, MD_ROPE_NEOX},
    {"qwen3", MD_ARCH_QWEN3, MD_ROPE_NEOX},
    {"qwen2moe", MD_ARCH_QWEN2MOE, MD_ROPE_NEOX},
    {"qwen3moe", MD_ARCH_QWEN3MOE, MD_ROPE_NEOX},
};

const char *md_arch_name(md_arch a)
{
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (arch_table[i].arch == a)
            return arch_table[i].name;
    return "?";
}

/* ---- metadata ---- */

static bool get_int(const gguf_file *f, const md_hparams *hp, const char *suffix, int64_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", hp->arch_name, suffix);
    return gguf_get_i64(f, key, out);
}

static vt_err need_int(const gguf_file *f, const md_hparams *hp, const char *suffix, int64_t lo,
                       int64_t hi, int64_t *out)
{
    if (!get_int(f, hp, suffix, out)) {
        char key[128];
        snprintf(key, sizeof key, "%s.%s", hp->arch_name, suffix);
        int64_t i = gguf_find_key(f, key);
        if (i < 0)
            return vt_fail(VT_ERR_FORMAT, "missing metadata key %s (an integer)", key);
        const gguf_value *v = gguf_kv_value(f, i);
        return vt_fail(VT_ERR_FORMAT, "metadata key %s has type %s, expected an integer%s", key,
                       gguf_vtype_name(v->type),
                       v->type == GGUF_T_UINT64 ? " (this one does not fit in int64)" : "");
    }
    if (*out < lo || *out > hi)
        return vt_fail(VT_ERR_RANGE, "%s.%s = %lld is outside [%lld, %lld]", hp->arch_name, suffix,
                       (long long)*out, (long long)lo, (long long)hi);
    return VT_OK;
}

static vt_err opt_int(const gguf_file *f, const md_hparams *hp, const char *suffix, int64_t lo,
                      int64_t hi, int64_t dflt, int64_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", hp->arch_name, suffix);
    if (gguf_find_key(f, key) < 0) {
        *out = dflt;
        return VT_OK;
    }
    return need_int(f, hp, suffix, lo, hi, out);
}

static vt_err opt_float(const gguf_file *f, const md_hparams *hp, const char *suffix, float dflt,
                        float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", hp->arch_name, suffix);
    if (gguf_find_key(f, key) < 0) {
        *out = dflt;
        return VT_OK;
    }
    if (!gguf_get_f32(f, key, out))
        return vt_fail(VT_ERR_FORMAT, "metadata key %s has type %s, expected a number", key,
                       gguf_vtype_name(gguf_kv_value(f, gguf_find_key(f, key))->type));
    if (!isfinite(*out))
        return vt_fail(VT_ERR_FORMAT, "metadata key %s = %g, expected a finite number", key,
                       (double)*out);
    return VT_OK;
}

#define LIM (1 << 20)

static vt_err read_hparams(const gguf_file *f, md_hparams *hp)
{
    gguf_str arch;
    vt_err e;
    if (!gguf_get_str(f, "general.architecture", &arch))
        return vt_fail(VT_ERR_FORMAT, "missing metadata key general.architecture");
    size_t i;
    for (i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strlen(arch_table[i].name) == arch.len && !memcmp(arch_table[i].name, arch.ptr, arch.len))
            break;
    if (i == sizeof arch_table / sizeof arch_table[0])
        return vt_fail(VT_ERR_UNSUPPORTED,
                       "architecture '%.*s' is not supported (supported: llama, qwen2, qwen3, "
                       "qwen2moe, qwen3moe)",
                       (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    hp->arch = arch_table[i].arch;
    hp->rope_type = arch_table[i].rope;
    snprintf(hp->arch_name, sizeof hp->arch_name, "%s", arch_table[i].name);

    if ((e = need_int(f, hp, "embedding_length", 1, LIM, &hp->dim)) ||
        (e = need_int(f, hp, "block_count", 1, 4096, &hp->n_layers)) ||
        (e = need_int(f, hp, "attention.head_count", 1, 4096, &hp->n_heads)) ||
        (e = opt_int(f, hp, "attention.head_count_kv", 1, hp->n_heads, hp->n_heads,
                     &hp->n_kv_heads)) ||
        (e = opt_int(f, hp, "context_length", 1, INT32_MAX, 4096, &hp->n_ctx_train)) ||
        (e = opt_int(f, hp, "expert_count", 0, 4096, 0, &hp->n_experts)) ||
        (e = opt_int(f, hp, "expert_used_count", 0, 4096, 0, &hp->n_experts_used)))
        return e;
    int64_t pool = MD_POOL_MEAN;
    if ((e = opt_int(f, hp, "pooling_type", 0, 4, MD_POOL_MEAN, &pool)))
        return e;
    if (pool == 4)
        return vt_fail(VT_ERR_UNSUPPORTED, "%s.pooling_type = 4 (rank) is not supported",
                       hp->arch_name);
    hp->pooling = pool == MD_POOL_NONE ? MD_POOL_MEAN : (md_pooling)pool;
    if (hp->n_experts_used > hp->n_experts)
        return vt_fail(VT_ERR_RANGE, "%s.expert_used_count = %lld exceeds %s.expert_count = %lld",
                       hp->arch_name, (long long)hp->n_experts_used, hp->arch_name,
                       (long long)hp->n_experts);
    if (hp->n_heads % hp->n_kv_heads)
        return vt_fail(VT_ERR_FORMAT,
                       "%s.attention.head_count = %lld is not a multiple of "
                       "%s.attention.head_count_kv = %lld",
                       hp->arch_name, (long long)hp->n_heads, hp->arch_name,
                       (long long)hp->n_kv_heads);
    char kl[128];
    snprintf(kl, sizeof kl, "%s.attention.key_length", hp->arch_name);
    if (hp->dim % hp->n_heads && gguf_find_key(f, kl) < 0)
        return vt_fail(VT_ERR_FORMAT,
                       "%s.embedding_length = %lld is not a multiple of "
                       "%s.attention.head_count = %lld, and %s (the head size) is not given",
                       hp->arch_name, (long long)hp->dim, hp->arch_name, (long long)hp->n_heads,
                       kl);
    int64_t hd = hp->dim / hp->n_heads;
    if ((e = opt_int(f, hp, "attention.key_length", 1, MD_MAX_HEAD_DIM, hd, &hp->head_dim)) ||
        (e = opt_int(f, hp, "attention.value_length", 1, MD_MAX_HEAD_DIM, hp->head_dim, &hp->head_dim_v)) ||
        (e = opt_int(f, hp, "rope.dimension_count", 2, hp->head_dim, hp->head_dim, &hp->rope_dim)))
        return e;
    if (hp->rope_dim % 2)
        return vt_fail(VT_ERR_FORMAT, "%s.rope.dimension_count = %lld is odd (expected even)",
                       hp->arch_name, (long long)hp->rope_dim);
    if ((e = opt_float(f, hp, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps)) ||
        (e = opt_float(f, hp, "rope.freq_base", 10000.0f, &hp->rope_base)))
        return e;
    if (hp->norm_eps <= 0)
        return vt_fail(VT_ERR_RANGE, "%s.attention.layer_norm_rms_epsilon = %g, expected > 0",
                       hp->arch_name, (double)hp->norm_eps);
    if (hp->rope_base <= 0)
        return vt_fail(VT_ERR_RANGE, "%s.rope.freq_base = %g, expected > 0", hp->arch_name,
                       (double)hp->rope_base);

    hp->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", hp->arch_name);
    gguf_str st;
    if (gguf_get_str(f, key, &st) && !(st.len == 4 && !memcmp(st.ptr, "none", 4))) {
        float factor = 1.0f;
        if (!(st.len == 6 && !memcmp(st.ptr, "linear", 6)))
            return vt_fail(VT_ERR_UNSUPPORTED, "rope scaling type '%.*s' is not supported",
                           (int)(st.len > 32 ? 32 : st.len), st.ptr);
        if ((e = opt_float(f, hp, "rope.scaling.factor", 1.0f, &factor)))
            return e;
        if (factor <= 0)
            return vt_fail(VT_ERR_RANGE, "%s.rope.scaling.factor = %g, expected > 0",
                           hp->arch_name, (double)factor);
        hp->rope_freq_scale = 1.0f / factor;
    }

    bool moe = hp->arch == MD_ARCH_QWEN2MOE || hp->arch == MD_ARCH_QWEN3MOE ||
               (hp->arch == MD_ARCH_LLAMA && hp->n_experts > 0);
    if (moe && (hp->n_experts < 1 || hp->n_experts_used < 1))
        return vt_fail(VT_ERR_FORMAT,
                       "a %s mixture-of-experts model needs %s.expert_count >= 1 and "
                       "%s.expert_used_count >= 1 (found %lld and %lld)",
                       hp->arch_name, hp->arch_name, hp->arch_name, (long long)hp->n_experts,
                       (long long)hp->n_experts_used);
    if (!moe && (hp->arch == MD_ARCH_QWEN2 || hp->arch == MD_ARCH_QWEN3))
        hp->n_experts = hp->n_experts_used = 0;
    hp->expert_norm = hp->arch == MD_ARCH_LLAMA || hp->arch == MD_ARCH_QWEN3MOE;
    return VT_OK;
}

/* ---- tensors ---- */

typedef struct {
    const gguf_file *f;
    int layer; /* -1 for global tensors */
} binder;

/* "[64, 32, 8]" ("*" for a dimension that may be anything). */
static void shape_str(char *buf, size_t n, const int64_t *ne, int nd)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < nd && k < n; d++)
        k += (size_t)(ne[d] < 0 ? snprintf(buf + k, n - k, "%s*", d ? ", " : "")
                                : snprintf(buf + k, n - k, "%s%lld", d ? ", " : "",
                                           (long long)ne[d]));
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

/* Binds `name` (with "%d" replaced by the layer). Expected dims: a value < 0
 * means "any" (the actual value is stored back). n_dims is the tensor's rank. */
static vt_err bind(binder *b, md_weight *w, const char *fmt, bool required, int n_dims,
                   int64_t *ne0, int64_t *ne1, int64_t *ne2)
{
    char name[128];
    snprintf(name, sizeof name, fmt, b->layer);
    const gguf_tensor *t = gguf_find_tensor(b->f, name);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (required)
            return vt_fail(VT_ERR_NOT_FOUND, "tensor %s is missing", name);
        return VT_OK;
    }
    int64_t *want[3] = {ne0, ne1, ne2}, exp[3] = {0};
    bool bad_rank = false;
    int bad_dim = -1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        if (d < n_dims) {
            exp[d] = *want[d];
            if (bad_dim < 0 && exp[d] >= 0 && t->ne[d] != exp[d])
                bad_dim = d;
        } else if (t->ne[d] != 1) {
            bad_rank = true;
        }
    }
    if (bad_rank || bad_dim >= 0) {
        char hs[128], ws[128];
        shape_str(hs, sizeof hs, t->ne, (int)t->n_dims);
        shape_str(ws, sizeof ws, exp, n_dims);
        if (bad_rank)
            return vt_fail(VT_ERR_FORMAT,
                           "tensor %s has shape %s, expected %s (%u dimensions, expected %d)",
                           name, hs, ws, t->n_dims, n_dims);
        return vt_fail(VT_ERR_FORMAT,
                       "tensor %s has shape %s, expected %s (dimension %d = %lld, expected %lld)",
                       name, hs, ws, bad_dim, (long long)t->ne[bad_dim], (long long)exp[bad_dim]);
    }
    for (int d = 0; d < n_dims; d++)
        *want[d] = t->ne[d];
    w->data = t->data;
    w->type = (vt_type)t->type;
    w->cols = t->ne[0];
    w->rows = n_dims >= 2 ? t->ne[1] : 1;
    w->stride = vt_row_size(w->type, w->cols) * (size_t)w->rows;
    const vt_type_info *ti = vt_type_get(t->type);
    const kn_traits *tr = kn_traits_get(w->type);
    if (n_dims == 1) {
        if (w->type != VT_TYPE_F32)
            return vt_fail(VT_ERR_UNSUPPORTED, "tensor %s has type %s; vectors must be f32", name,
                           ti ? ti->name : "?");
    } else if (!tr || !tr->vec_dot || !tr->to_float) {
        return vt_fail(VT_ERR_UNSUPPORTED, "tensor %s has type %s, which vitamin cannot compute with",
                       name, ti ? ti->name : "?");
    }
    return VT_OK;
}

#define ANY (-1)

static vt_err bind_layer(const gguf_file *f, md_hparams *hp, int il, md_layer *L)
{
    binder b = {f, il};
    vt_err e;
    int64_t dim = hp->dim;
    int64_t q_out = hp->n_heads * hp->head_dim, k_out = hp->n_kv_heads * hp->head_dim;
    int64_t v_out = hp->n_kv_heads * hp->head_dim_v, o_in = hp->n_heads * hp->head_dim_v;
    int64_t hd = hp->head_dim;
    if ((e = bind(&b, &L->attn_norm, "blk.%d.attn_norm.weight", true, 1, &dim, NULL, NULL)) ||
        (e = bind(&b, &L->wq, "blk.%d.attn_q.weight", true, 2, &dim, &q_out, NULL)) ||
        (e = bind(&b, &L->wk, "blk.%d.attn_k.weight", true, 2, &dim, &k_out, NULL)) ||
        (e = bind(&b, &L->wv, "blk.%d.attn_v.weight", true, 2, &dim, &v_out, NULL)) ||
        (e = bind(&b, &L->wo, "blk.%d.attn_output.weight", true, 2, &o_in, &dim, NULL)) ||
        (e = bind(&b, &L->ffn_norm, "blk.%d.ffn_norm.weight", true, 1, &dim, NULL, NULL)))
        return e;
    bool bias = hp->arch == MD_ARCH_QWEN2 || hp->arch == MD_ARCH_QWEN2MOE;
    if ((e = bind(&b, &L->bq, "blk.%d.attn_q.bias", bias, 1, &q_out, NULL, NULL)) ||
        (e = bind(&b, &L->bk, "blk.%d.attn_k.bias", bias, 1, &k_out, NULL, NULL)) ||
        (e = bind(&b, &L->bv, "blk.%d.attn_v.bias", bias, 1, &v_out, NULL, NULL)))
        return e;
    bool qk_norm = hp->arch == MD_ARCH_QWEN3 || hp->arch == MD_ARCH_QWEN3MOE;
    if ((e = bind(&b, &L->q_norm, "blk.%d.attn_q_norm.weight", qk_norm, 1, &hd, NULL, NULL)) ||
        (e = bind(&b, &L->k_norm, "blk.%d.attn_k_norm.weight", qk_norm, 1, &hd, NULL, NULL)))
        return e;

    if (hp->n_experts == 0) {
        int64_t ff = hp->ff ? hp->ff : ANY;
        if ((e = bind(&b, &L->ffn_gate, "blk.%d.ffn_gate.weight", true, 2, &dim, &ff, NULL)) ||
            (e = bind(&b, &L->ffn_up, "blk.%d.ffn_up.weight", true, 2, &dim, &ff, NULL)) ||
            (e = bind(&b, &L->ffn_down, "blk.%d.ffn_down.weight", true, 2, &ff, &dim, NULL)))
            return e;
        hp->ff = ff;
        return VT_OK;
    }
    int64_t ne = hp->n_experts, ffe = hp->ff_exp ? hp->ff_exp : ANY;
    if ((e = bind(&b, &L->gate_inp, "blk.%d.ffn_gate_inp.weight", true, 2, &dim, &ne, NULL)) ||
        (e = bind(&b, &L->gate_exps, "blk.%d.ffn_gate_exps.weight", true, 3, &dim, &ffe, &ne)) ||
        (e = bind(&b, &L->up_exps, "blk.%d.ffn_up_exps.weight", true, 3, &dim, &ffe, &ne)) ||
        (e = bind(&b, &L->down_exps, "blk.%d.ffn_down_exps.weight", true, 3, &ffe, &dim, &ne)))
        return e;
    hp->ff_exp = ffe;
    if (hp->arch == MD_ARCH_QWEN2MOE) {
        int64_t ffs = hp->ff_shexp ? hp->ff_shexp : ANY;
        if ((e = bind(&b, &L->gate_inp_shexp, "blk.%d.ffn_gate_inp_shexp.weight", true, 1, &dim,
                      NULL, NULL)) ||
            (e = bind(&b, &L->gate_shexp, "blk.%d.ffn_gate_shexp.weight", true, 2, &dim, &ffs,
                      NULL)) ||
            (e = bind(&b, &L->up_shexp, "blk.%d.ffn_up_shexp.weight", true, 2, &dim, &ffs, NULL)) ||
            (e = bind(&b, &L->down_shexp, "blk.%d.ffn_down_shexp.weight", true, 2, &ffs, &dim,
                      NULL)))
            return e;
        hp->ff_shexp = ffs;
    }
    return VT_OK;
}

vt_err md_load_gguf(gguf_file *f, md_model **out)
{
    vt_err e;
    *out = NULL;
    kn_init();
    md_model *m = calloc(1, sizeof *m);
    if (!m)
        return vt_fail(VT_ERR_NOMEM, "out of memory loading the model");
    m->file = f;
    md_hparams *hp = &m->hp;
    if ((e = read_hparams(f, hp)))
        goto fail;
    int64_t v;
    if ((e = opt_int(f, hp, "feed_forward_length", 1, LIM, 0, &v)))
        goto fail;
    hp->ff = hp->n_experts ? 0 : v;
    if ((e = opt_int(f, hp, "expert_feed_forward_length", 1, LIM, 0, &hp->ff_exp)) ||
        (e = opt_int(f, hp, "expert_shared_feed_forward_length", 1, LIM, 0, &hp->ff_shexp)))
        goto fail;

    binder b = {f, -1};
    int64_t dim = hp->dim, nv = ANY, half = hp->rope_dim / 2;
    if ((e = bind(&b, &m->tok_embd, "token_embd.weight", true, 2, &dim, &nv, NULL)) ||
        (e = bind(&b, &m->output_norm, "output_norm.weight", true, 1, &dim, NULL, NULL)) ||
        (e = bind(&b, &m->output, "output.weight", false, 2, &dim, &nv, NULL)) ||
        (e = bind(&b, &m->rope_freqs, "rope_freqs.weight", false, 1, &half, NULL, NULL)))
        goto fail;
    hp->n_vocab = nv;
    if (!m->output.data)
        m->output = m->tok_embd; /* tied embeddings */

    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->layers) {
        e = vt_fail(VT_ERR_NOMEM, "out of memory loading the model");
        goto fail;
    }
    for (int il = 0; il < hp->n_layers; il++)
        if ((e = bind_layer(f, hp, il, &m->layers[il])))
            goto fail;
    *out = m;
    return VT_OK;
fail:
    m->file = NULL;
    md_destroy(m);
    return e;
}

vt_err md_load(const char *path, md_model **out)
{
    gguf_file *f;
    vt_err e = gguf_open(path, &f);
    *out = NULL;
    if (e)
        return e;
    if ((e = md_load_gguf(f, out))) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", vt_last_error());
        gguf_close(f);
        return vt_fail(e, "%s: %s", path, msg);
    }
    (*out)->owns_file = true;
    return VT_OK;
}

void md_destroy(md_model *m)
{
    if (!m)
        return;
    if (m->owns_file)
        gguf_close(m->file);
    free(m->layers);
    free(m);
}
