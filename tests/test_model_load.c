/*
 * test_model_load.c - md_load's validation: small models of every supported
 * architecture (dense and mixture-of-experts, biases, q/k norms, shared
 * experts, tied embeddings, rope_freqs) are built here with the GGUF writer
 * and must load with the hyperparameters they were built with; then each is
 * broken in one way (a tensor missing, a dimension or rank wrong, a type the
 * engine cannot compute with, a metadata key missing, of the wrong type,
 * negative, absurd or inconsistent with another) and md_load must fail with
 * the right vt_err and a message that names the tensor or key and says what
 * was expected and what was found.
 *
 * With VT_MODEL_CORPUS=DIR set, the binary instead writes the valid models
 * without their tensor data (header only: fuzz/fuzz_model makes up the data)
 * into DIR as a seed corpus for fuzz/fuzz_model and exits (fuzz/README.md).
 */
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf/gguf.h"
#include "model/model.h"
#include "test.h"

/* ---- a model builder ----------------------------------------------------- */

typedef struct {
    const char *arch;
    int64_t dim, layers, heads, kv_heads, head_dim, ff, experts, used, eff, sff, vocab;
    bool tied, rope_freqs, key_length; /* key_length: write attention.key_length */
} shape;

/* One change to the model the builder writes. */
typedef struct {
    const char *drop_tensor;  /* this tensor is left out */
    const char *tensor;       /* this tensor gets n_dims/ne (if n_dims) and/or type */
    uint32_t n_dims;
    int64_t ne[3];
    int type;                 /* -1: unchanged */
    void (*kv)(gguf_writer *w, const shape *s); /* edits the metadata last */
} change;

typedef struct {
    int n;
    char name[64][96];
    uint32_t n_dims[64];
    int64_t ne[64][3];
} tlist;

static void add(tlist *t, uint32_t n_dims, int64_t a, int64_t b, int64_t c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name[t->n], sizeof t->name[0], fmt, ap);
    va_end(ap);
    t->n_dims[t->n] = n_dims;
    t->ne[t->n][0] = a;
    t->ne[t->n][1] = b;
    t->ne[t->n][2] = c;
    t->n++;
}

static bool is(const shape *s, const char *arch)
{
    return !strcmp(s->arch, arch);
}

static void tensors_of(const shape *s, tlist *t)
{
    int64_t hd = s->head_dim ? s->head_dim : s->dim / s->heads;
    int64_t kvh = s->kv_heads ? s->kv_heads : s->heads;
    t->n = 0;
    add(t, 2, s->dim, s->vocab, 1, "token_embd.weight");
    add(t, 1, s->dim, 1, 1, "output_norm.weight");
    if (!s->tied)
        add(t, 2, s->dim, s->vocab, 1, "output.weight");
    if (s->rope_freqs)
        add(t, 1, hd / 2, 1, 1, "rope_freqs.weight");
    for (int l = 0; l < s->layers; l++) {
        add(t, 1, s->dim, 1, 1, "blk.%d.attn_norm.weight", l);
        add(t, 2, s->dim, s->heads * hd, 1, "blk.%d.attn_q.weight", l);
        add(t, 2, s->dim, kvh * hd, 1, "blk.%d.attn_k.weight", l);
        add(t, 2, s->dim, kvh * hd, 1, "blk.%d.attn_v.weight", l);
        add(t, 2, s->heads * hd, s->dim, 1, "blk.%d.attn_output.weight", l);
        add(t, 1, s->dim, 1, 1, "blk.%d.ffn_norm.weight", l);
        if (is(s, "qwen2") || is(s, "qwen2moe")) {
            add(t, 1, s->heads * hd, 1, 1, "blk.%d.attn_q.bias", l);
            add(t, 1, kvh * hd, 1, 1, "blk.%d.attn_k.bias", l);
            add(t, 1, kvh * hd, 1, 1, "blk.%d.attn_v.bias", l);
        }
        if (is(s, "qwen3") || is(s, "qwen3moe")) {
            add(t, 1, hd, 1, 1, "blk.%d.attn_q_norm.weight", l);
            add(t, 1, hd, 1, 1, "blk.%d.attn_k_norm.weight", l);
        }
        if (!s->experts) {
            add(t, 2, s->dim, s->ff, 1, "blk.%d.ffn_gate.weight", l);
            add(t, 2, s->dim, s->ff, 1, "blk.%d.ffn_up.weight", l);
            add(t, 2, s->ff, s->dim, 1, "blk.%d.ffn_down.weight", l);
            continue;
        }
        add(t, 2, s->dim, s->experts, 1, "blk.%d.ffn_gate_inp.weight", l);
        add(t, 3, s->dim, s->eff, s->experts, "blk.%d.ffn_gate_exps.weight", l);
        add(t, 3, s->dim, s->eff, s->experts, "blk.%d.ffn_up_exps.weight", l);
        add(t, 3, s->eff, s->dim, s->experts, "blk.%d.ffn_down_exps.weight", l);
        if (is(s, "qwen2moe")) {
            add(t, 1, s->dim, 1, 1, "blk.%d.ffn_gate_inp_shexp.weight", l);
            add(t, 2, s->dim, s->sff, 1, "blk.%d.ffn_gate_shexp.weight", l);
            add(t, 2, s->dim, s->sff, 1, "blk.%d.ffn_up_shexp.weight", l);
            add(t, 2, s->sff, s->dim, 1, "blk.%d.ffn_down_shexp.weight", l);
        }
    }
}

/* Sets ARCH.suffix (an unsigned integer). */
static void set_u32(gguf_writer *w, const shape *s, const char *suffix, uint32_t v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", s->arch, suffix);
    CHECK(gguf_writer_set_u32(w, key, v) == VT_OK);
}

static void metadata_of(gguf_writer *w, const shape *s)
{
    CHECK(gguf_writer_set_str(w, "general.architecture", s->arch) == VT_OK);
    CHECK(gguf_writer_set_str(w, "general.name", "test_model_load") == VT_OK);
    set_u32(w, s, "embedding_length", (uint32_t)s->dim);
    set_u32(w, s, "block_count", (uint32_t)s->layers);
    set_u32(w, s, "attention.head_count", (uint32_t)s->heads);
    set_u32(w, s, "attention.head_count_kv", (uint32_t)(s->kv_heads ? s->kv_heads : s->heads));
    set_u32(w, s, "context_length", 256);
    if (s->key_length) {
        set_u32(w, s, "attention.key_length", (uint32_t)s->head_dim);
        set_u32(w, s, "attention.value_length", (uint32_t)s->head_dim);
    }
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", s->arch);
    CHECK(gguf_writer_set_f32(w, key, 1e-6f) == VT_OK);
    snprintf(key, sizeof key, "%s.rope.freq_base", s->arch);
    CHECK(gguf_writer_set_f32(w, key, 10000.0f) == VT_OK);
    if (!s->experts) {
        set_u32(w, s, "feed_forward_length", (uint32_t)s->ff);
    } else {
        set_u32(w, s, "expert_count", (uint32_t)s->experts);
        set_u32(w, s, "expert_used_count", (uint32_t)s->used);
        set_u32(w, s, "expert_feed_forward_length", (uint32_t)s->eff);
        if (s->sff)
            set_u32(w, s, "expert_shared_feed_forward_length", (uint32_t)s->sff);
    }
}

static vt_err zero_fill(void *ctx, const char *name, void *dst, uint64_t nbytes)
{
    (void)ctx;
    (void)name;
    memset(dst, 0, nbytes);
    return VT_OK;
}

/* Writes the model of s with change c (may be NULL) to a scratch file. */
static const char *build(const shape *s, const change *c)
{
    static char path[1024];
    static int serial;
    snprintf(path, sizeof path, "%s/m%d.gguf", test_tmpdir(), serial++);
    gguf_writer *w = gguf_writer_create();
    if (!w) {
        CHECK(!"gguf_writer_create");
        return path;
    }
    metadata_of(w, s);
    tlist *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    tensors_of(s, t);
    for (int i = 0; i < t->n; i++) {
        if (c && c->drop_tensor && !strcmp(c->drop_tensor, t->name[i]))
            continue;
        uint32_t type = VT_TYPE_F32, n_dims = t->n_dims[i];
        int64_t *ne = t->ne[i];
        if (c && c->tensor && !strcmp(c->tensor, t->name[i])) {
            if (c->n_dims) {
                n_dims = c->n_dims;
                ne = (int64_t *)c->ne;
            }
            if (c->type >= 0)
                type = (uint32_t)c->type;
        }
        int64_t ne4[GGUF_MAX_DIMS] = {1, 1, 1, 1};
        memcpy(ne4, ne, 3 * sizeof *ne);
        CHECKF(gguf_writer_add_tensor(w, t->name[i], type, n_dims, ne4, NULL, zero_fill, NULL) ==
                   VT_OK,
               "add %s: %s", t->name[i], vt_last_error());
    }
    if (c && c->kv)
        c->kv(w, s);
    CHECKF(gguf_writer_write(w, path) == VT_OK, "write: %s", vt_last_error());
    gguf_writer_destroy(w);
    free(t);
    return path;
}

/* The shapes every test starts from. */
static const shape llama = {"llama", 64, 2, 4, 2, 0, 96, 0, 0, 0, 0, 40, false, false, false};
static const shape llama_tied = {"llama", 64, 1, 4, 4, 0, 96, 0, 0, 0, 0, 40, true, true, false};
static const shape mixtral = {"llama", 64, 2, 4, 2, 0, 0, 4, 2, 32, 0, 40, false, false, false};
static const shape mqa = {"llama", 64, 1, 4, 1, 0, 96, 0, 0, 0, 0, 40, false, false, false};
static const shape qwen2 = {"qwen2", 64, 2, 4, 2, 0, 96, 0, 0, 0, 0, 40, false, false, false};
static const shape qwen3 = {"qwen3", 64, 2, 4, 2, 32, 96, 0, 0, 0, 0, 40, true, false, true};
static const shape qwen2moe = {"qwen2moe", 64, 2, 4, 2, 0, 0, 4, 2, 32, 64, 40, false, false,
                               false};
static const shape qwen3moe = {"qwen3moe", 64, 2, 4, 2, 32, 0, 8, 3, 32, 0, 40, true, false, true};

/* Loads path, expecting failure with code want and every one of the NULL-
 * terminated substrings in the message. */
static void expect_fail(const char *what, const char *path, vt_err want, ...)
{
    md_model *m = (md_model *)1;
    vt_err e = md_load(path, &m);
    const char *msg = vt_last_error();
    CHECKF(e == want, "%s: md_load returned %d (%s), expected %d", what, (int)e,
           e ? msg : "success", (int)want);
    CHECKF(m == NULL, "%s: *out not NULL on failure", what);
    if (!e) {
        md_destroy(m);
        return;
    }
    va_list ap;
    va_start(ap, want);
    for (const char *sub; (sub = va_arg(ap, const char *));)
        CHECKF(strstr(msg, sub), "%s: message \"%s\" does not contain \"%s\"", what, msg, sub);
    va_end(ap);
    CHECKF(strstr(msg, path), "%s: message \"%s\" does not name the file", what, msg);
}

/* ---- valid models --------------------------------------------------------- */

static void check_loads(const shape *s)
{
    const char *path = build(s, NULL);
    md_model *m = NULL;
    vt_err e = md_load(path, &m);
    CHECKF(e == VT_OK, "%s: %s", s->arch, vt_last_error());
    if (e)
        return;
    const md_hparams *hp = &m->hp;
    int64_t hd = s->head_dim ? s->head_dim : s->dim / s->heads;
    CHECK(!strcmp(hp->arch_name, s->arch));
    CHECK_EQ_INT(hp->dim, s->dim);
    CHECK_EQ_INT(hp->n_layers, s->layers);
    CHECK_EQ_INT(hp->n_heads, s->heads);
    CHECK_EQ_INT(hp->n_kv_heads, s->kv_heads ? s->kv_heads : s->heads);
    CHECK_EQ_INT(hp->head_dim, hd);
    CHECK_EQ_INT(hp->head_dim_v, hd);
    CHECK_EQ_INT(hp->n_vocab, s->vocab);
    CHECK_EQ_INT(hp->n_ctx_train, 256);
    CHECK_EQ_INT(hp->n_experts, s->experts);
    CHECK_EQ_INT(hp->n_experts_used, s->used);
    CHECK_NEAR(hp->norm_eps, 1e-6, 1e-12);
    if (s->experts) {
        CHECK_EQ_INT(hp->ff_exp, s->eff);
        CHECK(m->layers[s->layers - 1].gate_exps.data != NULL);
    } else {
        CHECK_EQ_INT(hp->ff, s->ff);
        CHECK(m->layers[s->layers - 1].ffn_down.data != NULL);
    }
    if (s->sff)
        CHECK_EQ_INT(hp->ff_shexp, s->sff);
    CHECK(m->tok_embd.data != NULL);
    CHECK(s->tied ? m->output.data == m->tok_embd.data : m->output.data != m->tok_embd.data);
    CHECK(s->rope_freqs ? m->rope_freqs.data != NULL : m->rope_freqs.data == NULL);
    bool bias = is(s, "qwen2") || is(s, "qwen2moe"), qkn = is(s, "qwen3") || is(s, "qwen3moe");
    CHECK((m->layers[0].bq.data != NULL) == bias);
    CHECK((m->layers[0].q_norm.data != NULL) == qkn);
    md_destroy(m);
}

static void test_valid_models(void)
{
    const shape *all[] = {&llama, &llama_tied, &mixtral, &qwen2, &qwen3, &qwen2moe, &qwen3moe};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        check_loads(all[i]);
}

/* ---- tensors --------------------------------------------------------------- */

static void test_missing_tensor(void)
{
    static const struct {
        const shape *s;
        const char *tensor;
    } cases[] = {
        {&llama, "token_embd.weight"},
        {&llama, "output_norm.weight"},
        {&llama, "blk.1.attn_k.weight"},
        {&llama, "blk.0.attn_output.weight"},
        {&llama, "blk.1.ffn_down.weight"},
        {&mixtral, "blk.1.ffn_gate_inp.weight"},
        {&mixtral, "blk.0.ffn_up_exps.weight"},
        {&qwen2, "blk.1.attn_v.bias"},
        {&qwen3, "blk.0.attn_k_norm.weight"},
        {&qwen2moe, "blk.1.ffn_down_shexp.weight"},
        {&qwen2moe, "blk.0.ffn_gate_inp_shexp.weight"},
        {&qwen3moe, "blk.1.ffn_gate_exps.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        change c = {.drop_tensor = cases[i].tensor, .type = -1};
        expect_fail(cases[i].tensor, build(cases[i].s, &c), VT_ERR_NOT_FOUND, cases[i].tensor,
                    "missing", NULL);
    }
    /* an optional tensor absent is fine: output.weight (tied) */
    change c = {.drop_tensor = "output.weight", .type = -1};
    md_model *m = NULL;
    CHECKF(md_load(build(&llama, &c), &m) == VT_OK, "%s", vt_last_error());
    CHECK(m && m->output.data == m->tok_embd.data);
    md_destroy(m);
}

static void test_wrong_shape(void)
{
    static const struct {
        const shape *s;
        change c;
        const char *msg[3];
    } cases[] = {
        /* q has heads * head_dim = 64 rows */
        {&llama, {.tensor = "blk.0.attn_q.weight", .n_dims = 2, .ne = {64, 63}, .type = -1},
         {"blk.0.attn_q.weight", "dimension 1 = 63", "expected 64"}},
        /* k: kv_heads * head_dim = 32 */
        {&llama, {.tensor = "blk.1.attn_k.weight", .n_dims = 2, .ne = {64, 64}, .type = -1},
         {"blk.1.attn_k.weight", "dimension 1 = 64", "expected 32"}},
        {&llama, {.tensor = "blk.0.attn_output.weight", .n_dims = 2, .ne = {32, 64}, .type = -1},
         {"blk.0.attn_output.weight", "dimension 0 = 32", "expected 64"}},
        /* a vector given as a matrix */
        {&llama, {.tensor = "blk.1.attn_norm.weight", .n_dims = 2, .ne = {64, 2}, .type = -1},
         {"blk.1.attn_norm.weight", "2 dimensions", "expected 1"}},
        {&llama, {.tensor = "output_norm.weight", .n_dims = 1, .ne = {65}, .type = -1},
         {"output_norm.weight", "= 65", "expected 64"}},
        /* feed_forward_length = 96 */
        {&llama, {.tensor = "blk.0.ffn_up.weight", .n_dims = 2, .ne = {64, 128}, .type = -1},
         {"blk.0.ffn_up.weight", "dimension 1 = 128", "expected 96"}},
        {&llama, {.tensor = "blk.1.ffn_down.weight", .n_dims = 2, .ne = {96, 32}, .type = -1},
         {"blk.1.ffn_down.weight", "dimension 1 = 32", "expected 64"}},
        /* output has another vocabulary size than token_embd */
        {&llama, {.tensor = "output.weight", .n_dims = 2, .ne = {64, 41}, .type = -1},
         {"output.weight", "dimension 1 = 41", "expected 40"}},
        /* 4 experts */
        {&mixtral, {.tensor = "blk.0.ffn_gate_exps.weight", .n_dims = 3, .ne = {64, 32, 3},
                    .type = -1},
         {"blk.0.ffn_gate_exps.weight", "dimension 2 = 3", "expected 4"}},
        {&mixtral, {.tensor = "blk.1.ffn_gate_inp.weight", .n_dims = 2, .ne = {64, 5}, .type = -1},
         {"blk.1.ffn_gate_inp.weight", "dimension 1 = 5", "expected 4"}},
        {&mixtral, {.tensor = "blk.1.ffn_down_exps.weight", .n_dims = 2, .ne = {32, 64},
                    .type = -1},
         {"blk.1.ffn_down_exps.weight", "shape [32, 64]", "expected [32, 64, 4]"}},
        /* expert_feed_forward_length = 32 */
        {&qwen3moe, {.tensor = "blk.0.ffn_up_exps.weight", .n_dims = 3, .ne = {64, 48, 8},
                     .type = -1},
         {"blk.0.ffn_up_exps.weight", "dimension 1 = 48", "expected 32"}},
        /* head_dim 32 (key_length) */
        {&qwen3, {.tensor = "blk.1.attn_q_norm.weight", .n_dims = 1, .ne = {16}, .type = -1},
         {"blk.1.attn_q_norm.weight", "dimension 0 = 16", "expected 32"}},
        {&qwen2, {.tensor = "blk.0.attn_q.bias", .n_dims = 1, .ne = {32}, .type = -1},
         {"blk.0.attn_q.bias", "dimension 0 = 32", "expected 64"}},
        /* expert_shared_feed_forward_length = 64 */
        {&qwen2moe, {.tensor = "blk.0.ffn_up_shexp.weight", .n_dims = 2, .ne = {64, 32},
                     .type = -1},
         {"blk.0.ffn_up_shexp.weight", "dimension 1 = 32", "expected 64"}},
        /* rope_freqs has rope_dim / 2 = 8 entries */
        {&llama_tied, {.tensor = "rope_freqs.weight", .n_dims = 1, .ne = {16}, .type = -1},
         {"rope_freqs.weight", "dimension 0 = 16", "expected 8"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_fail(cases[i].c.tensor, build(cases[i].s, &cases[i].c), VT_ERR_FORMAT,
                    cases[i].msg[0], cases[i].msg[1], cases[i].msg[2], NULL);
}

static void test_wrong_type(void)
{
    /* vectors must be F32 */
    change c1 = {.tensor = "blk.0.ffn_norm.weight", .type = VT_TYPE_F16};
    expect_fail("f16 norm", build(&llama, &c1), VT_ERR_UNSUPPORTED, "blk.0.ffn_norm.weight",
                "type f16", "must be f32", NULL);
    change c2 = {.tensor = "blk.1.attn_k.bias", .type = VT_TYPE_Q8_0};
    expect_fail("q8_0 bias", build(&qwen2, &c2), VT_ERR_UNSUPPORTED, "blk.1.attn_k.bias",
                "type q8_0", "must be f32", NULL);
    /* matrices: a type without a dot product (q8_1, q8_K are activation formats) */
    change c3 = {.tensor = "blk.0.attn_q.weight", .type = VT_TYPE_Q8_1};
    expect_fail("q8_1 matrix", build(&llama, &c3), VT_ERR_UNSUPPORTED, "blk.0.attn_q.weight",
                "type q8_1", "cannot compute", NULL);
    change c4 = {.tensor = "token_embd.weight", .n_dims = 2, .ne = {256, 40}, .type = VT_TYPE_Q8_K};
    shape wide = llama;
    wide.dim = 256;
    wide.ff = 256;
    expect_fail("q8_K matrix", build(&wide, &c4), VT_ERR_UNSUPPORTED, "token_embd.weight",
                "type q8_K", "cannot compute", NULL);
    /* quantized matrices the engine computes with load */
    change ok = {.tensor = "blk.1.ffn_gate.weight", .type = VT_TYPE_Q8_0};
    md_model *m = NULL;
    CHECKF(md_load(build(&llama, &ok), &m) == VT_OK, "%s", vt_last_error());
    CHECK(m && m->layers[1].ffn_gate.type == VT_TYPE_Q8_0);
    md_destroy(m);
}

/* ---- metadata --------------------------------------------------------------- */

static const shape *kv_shape;
static const char *kv_key;   /* ARCH-relative suffix, or a full key with a '/' prefix */
static int kv_mode;          /* 0 remove, 1 u32, 2 i32, 3 f32, 4 str */
static int64_t kv_int;
static float kv_f32;

static void kv_edit(gguf_writer *w, const shape *s)
{
    char key[128];
    if (kv_key[0] == '/')
        snprintf(key, sizeof key, "%s", kv_key + 1);
    else
        snprintf(key, sizeof key, "%s.%s", s->arch, kv_key);
    switch (kv_mode) {
    case 0: gguf_writer_remove(w, key); break;
    case 1: CHECK(gguf_writer_set_u32(w, key, (uint32_t)kv_int) == VT_OK); break;
    case 2: CHECK(gguf_writer_set_i32(w, key, (int32_t)kv_int) == VT_OK); break;
    case 3: CHECK(gguf_writer_set_f32(w, key, kv_f32) == VT_OK); break;
    default: CHECK(gguf_writer_set_str(w, key, "sixty-four") == VT_OK); break;
    }
}

/* Builds s with one key edited and expects md_load to fail with want and the
 * given substrings (NULL-terminated). */
static void kv_case(const shape *s, const char *key, int mode, int64_t iv, float fv, vt_err want,
                    const char *m1, const char *m2, const char *m3)
{
    kv_shape = s;
    kv_key = key;
    kv_mode = mode;
    kv_int = iv;
    kv_f32 = fv;
    change c = {.type = -1, .kv = kv_edit};
    char what[160];
    snprintf(what, sizeof what, "%s %s (mode %d, %lld, %g)", s->arch, key, mode, (long long)iv,
             (double)fv);
    expect_fail(what, build(s, &c), want, m1, m2, m3, NULL);
}

static void test_missing_key(void)
{
    kv_case(&llama, "/general.architecture", 0, 0, 0, VT_ERR_FORMAT, "general.architecture",
            "missing", NULL);
    kv_case(&llama, "embedding_length", 0, 0, 0, VT_ERR_FORMAT, "llama.embedding_length",
            "missing", NULL);
    kv_case(&qwen3, "block_count", 0, 0, 0, VT_ERR_FORMAT, "qwen3.block_count", "missing", NULL);
    kv_case(&qwen2, "attention.head_count", 0, 0, 0, VT_ERR_FORMAT, "qwen2.attention.head_count",
            "missing", NULL);
    /* MoE architectures need their expert counts */
    kv_case(&qwen3moe, "expert_count", 0, 0, 0, VT_ERR_RANGE, "qwen3moe.expert_used_count = 3",
            "exceeds", "qwen3moe.expert_count = 0");
    kv_case(&qwen2moe, "expert_used_count", 0, 0, 0, VT_ERR_FORMAT,
            "qwen2moe.expert_used_count", ">= 1", "found 4 and 0");
}

static void test_wrong_key_type(void)
{
    kv_case(&llama, "embedding_length", 4, 0, 0, VT_ERR_FORMAT, "llama.embedding_length",
            "type string", "expected an integer");
    kv_case(&qwen3, "attention.head_count", 3, 0, 4.0f, VT_ERR_FORMAT,
            "qwen3.attention.head_count", "type float32", "expected an integer");
    kv_case(&llama, "attention.layer_norm_rms_epsilon", 4, 0, 0, VT_ERR_FORMAT,
            "llama.attention.layer_norm_rms_epsilon", "type string", "expected a number");
    kv_case(&llama, "rope.freq_base", 3, 0, INFINITY, VT_ERR_FORMAT, "llama.rope.freq_base",
            "= inf", "expected a finite number");
    kv_case(&llama, "/general.architecture", 4, 0, 0, VT_ERR_UNSUPPORTED, "sixty-four",
            "not supported", "supported: llama");
}

static void test_bad_values(void)
{
    /* negative, zero and absurd values: the message names the key, the value and the range */
    kv_case(&llama, "block_count", 2, -1, 0, VT_ERR_RANGE, "llama.block_count", "= -1",
            "outside [1, 4096]");
    kv_case(&llama, "embedding_length", 1, 0, 0, VT_ERR_RANGE, "llama.embedding_length", "= 0",
            "outside [1, ");
    kv_case(&llama, "embedding_length", 1, 1u << 31, 0, VT_ERR_RANGE, "llama.embedding_length",
            "= 2147483648", "outside");
    kv_case(&qwen2, "attention.head_count", 2, -8, 0, VT_ERR_RANGE, "qwen2.attention.head_count",
            "= -8", "outside");
    kv_case(&llama, "context_length", 2, -5, 0, VT_ERR_RANGE, "llama.context_length", "= -5",
            "outside");
    kv_case(&qwen3, "attention.key_length", 1, 100000, 0, VT_ERR_RANGE,
            "qwen3.attention.key_length", "= 100000", "outside");
    kv_case(&llama, "expert_count", 1, 100000, 0, VT_ERR_RANGE, "llama.expert_count", "= 100000",
            "outside [0, 4096]");
    kv_case(&llama, "attention.layer_norm_rms_epsilon", 3, 0, -1e-5f, VT_ERR_RANGE,
            "llama.attention.layer_norm_rms_epsilon", "= -1e-05", "expected > 0");
    kv_case(&qwen2, "rope.freq_base", 3, 0, 0.0f, VT_ERR_RANGE, "qwen2.rope.freq_base", "= 0",
            "expected > 0");
    kv_case(&llama, "feed_forward_length", 2, -96, 0, VT_ERR_RANGE, "llama.feed_forward_length",
            "= -96", "outside");
}

static void test_inconsistent_values(void)
{
    /* head_count_kv must divide head_count (4) and not exceed it */
    kv_case(&llama, "attention.head_count_kv", 1, 3, 0, VT_ERR_FORMAT,
            "llama.attention.head_count = 4", "not a multiple of",
            "llama.attention.head_count_kv = 3");
    kv_case(&qwen3, "attention.head_count_kv", 1, 8, 0, VT_ERR_RANGE,
            "qwen3.attention.head_count_kv = 8", "outside [1, 4]", NULL);
    /* more experts used than there are */
    kv_case(&mixtral, "expert_used_count", 1, 5, 0, VT_ERR_RANGE, "llama.expert_used_count = 5",
            "exceeds", "llama.expert_count = 4");
    /* embedding_length (64) not a multiple of head_count with no key_length given */
    kv_case(&mqa, "attention.head_count", 1, 5, 0, VT_ERR_FORMAT, "llama.embedding_length = 64",
            "not a multiple of llama.attention.head_count = 5", "key_length");
    /* key_length given but the tensors have another head size */
    kv_case(&qwen3, "attention.key_length", 1, 16, 0, VT_ERR_FORMAT, "blk.0.attn_q.weight",
            "dimension 1 = 128", "expected 64");
    /* value_length disagrees with the tensors */
    kv_case(&qwen3, "attention.value_length", 1, 8, 0, VT_ERR_FORMAT, "blk.0.attn_v.weight",
            "dimension 1 = 64", "expected 16");
    /* feed_forward_length disagrees with the tensors */
    kv_case(&llama, "feed_forward_length", 1, 64, 0, VT_ERR_FORMAT, "blk.0.ffn_gate.weight",
            "dimension 1 = 96", "expected 64");
    /* embedding_length disagrees with the tensors */
    kv_case(&qwen2, "embedding_length", 1, 128, 0, VT_ERR_FORMAT, "token_embd.weight",
            "dimension 0 = 64", "expected 128");
    /* block_count larger than the tensors there are */
    kv_case(&qwen2moe, "block_count", 1, 3, 0, VT_ERR_NOT_FOUND, "blk.2.attn_norm.weight",
            "missing", NULL);
    /* rope dimension: odd, or larger than the head */
    kv_case(&llama, "rope.dimension_count", 1, 15, 0, VT_ERR_FORMAT, "llama.rope.dimension_count",
            "= 15", "odd");
    kv_case(&llama, "rope.dimension_count", 1, 32, 0, VT_ERR_RANGE, "llama.rope.dimension_count",
            "= 32", "outside [2, 16]");
    kv_case(&llama, "expert_feed_forward_length", 2, -1, 0, VT_ERR_RANGE,
            "llama.expert_feed_forward_length", "= -1", "outside");
}

static void test_rope_scaling_keys(void)
{
    /* unknown scaling type: the string is the value */
    kv_case(&llama, "rope.scaling.type", 4, 0, 0, VT_ERR_UNSUPPORTED, "rope scaling type",
            "sixty-four", "not supported");
}

/* ---- seed corpus for fuzz/fuzz_model --------------------------------------- */

/* Writes each valid model up to the end of its tensor infos (the data is left
 * out: the harness makes it up). Returns 0 on success. */
static int write_corpus(const char *dir)
{
    mkdir(dir, 0755);
    const shape *all[] = {&llama, &llama_tied, &mixtral, &qwen2, &qwen3, &qwen2moe, &qwen3moe};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        shape s = *all[i];
        s.layers = 1;
        const char *path = build(&s, NULL);
        gguf_file *g;
        if (gguf_open(path, &g)) {
            fprintf(stderr, "%s: %s\n", path, vt_last_error());
            return 1;
        }
        size_t n = (size_t)gguf_data_offset(g);
        size_t len;
        char *bytes = test_read_file(path, &len);
        gguf_close(g);
        if (!bytes || len < n)
            return 1;
        char out[1024];
        snprintf(out, sizeof out, "%s/model-%zu-%s.gguf", dir, i, s.arch);
        FILE *fp = fopen(out, "wb");
        if (!fp || fwrite(bytes, 1, n, fp) != n || fclose(fp)) {
            fprintf(stderr, "cannot write %s\n", out);
            return 1;
        }
        free(bytes);
    }
    return 0;
}

int main(void)
{
    const char *corpus = getenv("VT_MODEL_CORPUS");
    if (corpus && *corpus) {
        RUN_TEST(test_valid_models);
        int rc = write_corpus(corpus);
        test_finish("test_model_load");
        return rc;
    }
    RUN_TEST(test_valid_models);
    RUN_TEST(test_missing_tensor);
    RUN_TEST(test_wrong_shape);
    RUN_TEST(test_wrong_type);
    RUN_TEST(test_missing_key);
    RUN_TEST(test_wrong_key_type);
    RUN_TEST(test_bad_values);
    RUN_TEST(test_inconsistent_values);
    RUN_TEST(test_rope_scaling_keys);
    return test_finish("test_model_load");
}
