/*
 * cmd_gen_model.c - `vitamin gen-model`: writes a GGUF model of a given
 * architecture and shape with deterministic random weights and the tokenizer
 * of a vocabulary GGUF, for tests and benchmarks (the same arguments always
 * give the same bytes). Each tensor draws from its own generator, seeded
 * from the seed and the tensor's name, and is produced while the file is
 * written, so a multi-gigabyte model never sits in memory.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "util/util.h"

typedef struct {
    char name[96];
    uint32_t n_dims;
    int64_t ne[3];
    vt_type type;
    float mean, std;
    bool lognormal; /* values exp(mean + std * normal) (positive), else mean + std * normal */
} gen_tensor;

typedef struct {
    gen_tensor *t;
    int n, cap;
    uint64_t seed;
} gen_spec;

static void help(FILE *out)
{
    fprintf(out,
            "usage: vitamin gen-model --arch ARCH --vocab VOCAB.gguf -o OUT.gguf [shape options]\n\n"
            "Writes a model with deterministic random weights and the tokenizer (all\n"
            "tokenizer.* metadata) of VOCAB.gguf, for tests and benchmarks.\n\n"
            "options:\n"
            "  --arch NAME          llama, qwen2, qwen3, qwen2moe or qwen3moe (required)\n"
            "  --vocab FILE         GGUF file to take the tokenizer from (required)\n"
            "  -o, --output FILE    output GGUF (required)\n"
            "  --dim N              embedding length (default 256)\n"
            "  --layers N           blocks (default 2)\n"
            "  --heads N            attention heads (default 8)\n"
            "  --kv-heads N         key/value heads (default: heads)\n"
            "  --head-dim N         per-head dimension (default: dim/heads)\n"
            "  --ff N               feed-forward length (default 4*dim; dense models)\n"
            "  --experts N          experts (MoE; llama with N>0 is Mixtral-style)\n"
            "  --experts-used N     experts per token (default 2)\n"
            "  --expert-ff N        expert feed-forward length (default ff)\n"
            "  --shared-ff N        shared-expert feed-forward length (qwen2moe; default ff)\n"
            "  --ctx N              context_length metadata (default 4096)\n"
            "  --rope-base F        rope frequency base (default 10000)\n"
            "  --rope-freqs F       write rope_freqs.weight (Llama 3.1 style per-pair\n"
            "                       frequency factors; random, mostly in [1, F]; llama only,\n"
            "                       as llama.cpp reads the tensor only there)\n"
            "  --rope-linear F      linear rope scaling: rope.scaling.type = linear,\n"
            "                       rope.scaling.factor = F\n"
            "  --tied               no output.weight (output shares token_embd)\n"
            "  --embd-std F         standard deviation of token_embd (default 1); with --tied\n"
            "                       a small one keeps the output from being the input token's\n"
            "                       own embedding coming back\n"
            "  --type T             tensor type of matrices: f32, f16, bf16 or any quantized\n"
            "                       type vitamin can write (default f16)\n"
            "  --seed N             random seed (default 1)\n"
            "  --chat-template FILE store FILE (Jinja) as tokenizer.chat_template, replacing\n"
            "                       the vocabulary's\n"
            "  --pooling P          write <arch>.pooling_type: none, mean, cls or last\n"
            "                       (default: no key; vitamin's embeddings then pool by mean)\n"
            "  -h, --help           this help\n");
}

static bool add(gen_spec *s, vt_type type, float mean, float std, uint32_t nd, int64_t a,
                int64_t b, int64_t c, const char *fmt, int layer)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        gen_tensor *t = realloc(s->t, sizeof *t * (size_t)cap);
        if (!t)
            return false;
        s->t = t;
        s->cap = cap;
    }
    gen_tensor *t = &s->t[s->n++];
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->n_dims = nd;
    t->ne[0] = a;
    t->ne[1] = b;
    t->ne[2] = c;
    t->type = nd == 1 ? VT_TYPE_F32 : type;
    t->mean = mean;
    t->std = std;
    t->lognormal = false;
    return true;
}

static uint64_t name_hash(const char *s, uint64_t seed)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static vt_err fill(void *ctx, const char *name, void *dst, uint64_t nbytes)
{
    gen_spec *s = ctx;
    const gen_tensor *t = NULL;
    for (int i = 0; i < s->n && !t; i++)
        if (!strcmp(s->t[i].name, name))
            t = &s->t[i];
    if (!t)
        return vt_fail(VT_ERR_INTERNAL, "no generator for tensor %s", name);
    vt_rng rng = {name_hash(name, s->seed)};
    int64_t cols = t->ne[0], rows = (int64_t)(nbytes / vt_row_size(t->type, cols));
    float *row = malloc(sizeof *row * (size_t)cols);
    if (!row)
        return vt_fail(VT_ERR_NOMEM, "out of memory generating %s", name);
    size_t rs = vt_row_size(t->type, cols);
    vt_err e = VT_OK;
    for (int64_t r = 0; r < rows && !e; r++) {
        for (int64_t i = 0; i < cols; i++) {
            row[i] = t->mean + t->std * vt_rng_normal(&rng);
            if (t->lognormal)
                row[i] = expf(row[i]);
        }
        e = kn_quantize_ref(t->type, row, (char *)dst + (size_t)r * rs, cols);
    }
    free(row);
    return e;
}

typedef struct {
    const char *arch, *vocab, *out, *chat_template;
    long pooling; /* -1: no key */
    long dim, layers, heads, kv_heads, head_dim, ff, experts, used, eff, sff, ctx, seed;
    double rope_base, embd_std, rope_freqs, rope_linear;
    bool tied;
    int type;
} gen_args;

static bool build_spec(const gen_args *a, int64_t n_vocab, gen_spec *s)
{
    bool moe = a->experts > 0, qwen2 = !strncmp(a->arch, "qwen2", 5);
    bool qk_norm = !strncmp(a->arch, "qwen3", 5);
    vt_type T = (vt_type)a->type;
    int64_t d = a->dim, hd = a->head_dim, q = a->heads * hd, k = a->kv_heads * hd;
    float ws = 1.0f / sqrtf((float)d);
    bool ok = add(s, T, 0, (float)a->embd_std, 2, d, n_vocab, 1, "token_embd.weight", 0) &&
              add(s, T, 1, 0.1f, 1, d, 1, 1, "output_norm.weight", 0);
    if (!a->tied)
        ok = ok && add(s, T, 0, ws * 3, 2, d, n_vocab, 1, "output.weight", 0);
    if (ok && a->rope_freqs > 0) { /* factors mostly in [1, F], median sqrt(F) */
        float lf = logf((float)a->rope_freqs);
        ok = add(s, VT_TYPE_F32, lf / 2, lf / 4, 1, a->head_dim / 2, 1, 1, "rope_freqs.weight", 0);
        if (ok)
            s->t[s->n - 1].lognormal = true;
    }
    for (int l = 0; ok && l < a->layers; l++) {
        ok = add(s, T, 1, 0.1f, 1, d, 1, 1, "blk.%d.attn_norm.weight", l) &&
             add(s, T, 0, ws, 2, d, q, 1, "blk.%d.attn_q.weight", l) &&
             add(s, T, 0, ws, 2, d, k, 1, "blk.%d.attn_k.weight", l) &&
             add(s, T, 0, ws, 2, d, k, 1, "blk.%d.attn_v.weight", l) &&
             add(s, T, 0, 1.0f / sqrtf((float)q), 2, q, d, 1, "blk.%d.attn_output.weight", l) &&
             add(s, T, 1, 0.1f, 1, d, 1, 1, "blk.%d.ffn_norm.weight", l);
        if (ok && qwen2)
            ok = add(s, T, 0, 0.5f, 1, q, 1, 1, "blk.%d.attn_q.bias", l) &&
                 add(s, T, 0, 0.5f, 1, k, 1, 1, "blk.%d.attn_k.bias", l) &&
                 add(s, T, 0, 0.5f, 1, k, 1, 1, "blk.%d.attn_v.bias", l);
        if (ok && qk_norm)
            ok = add(s, T, 1, 0.1f, 1, hd, 1, 1, "blk.%d.attn_q_norm.weight", l) &&
                 add(s, T, 1, 0.1f, 1, hd, 1, 1, "blk.%d.attn_k_norm.weight", l);
        if (!ok)
            break;
        if (!moe) {
            ok = add(s, T, 0, ws, 2, d, a->ff, 1, "blk.%d.ffn_gate.weight", l) &&
                 add(s, T, 0, ws, 2, d, a->ff, 1, "blk.%d.ffn_up.weight", l) &&
                 add(s, T, 0, 1.0f / sqrtf((float)a->ff), 2, a->ff, d, 1,
                     "blk.%d.ffn_down.weight", l);
            continue;
        }
        ok = add(s, VT_TYPE_F32, 0, ws * 2, 2, d, a->experts, 1, "blk.%d.ffn_gate_inp.weight", l) &&
             add(s, T, 0, ws, 3, d, a->eff, a->experts, "blk.%d.ffn_gate_exps.weight", l) &&
             add(s, T, 0, ws, 3, d, a->eff, a->experts, "blk.%d.ffn_up_exps.weight", l) &&
             add(s, T, 0, 1.0f / sqrtf((float)a->eff), 3, a->eff, d, a->experts,
                 "blk.%d.ffn_down_exps.weight", l);
        if (ok && !strcmp(a->arch, "qwen2moe"))
            ok = add(s, T, 0, ws, 1, d, 1, 1, "blk.%d.ffn_gate_inp_shexp.weight", l) &&
                 add(s, T, 0, ws, 2, d, a->sff, 1, "blk.%d.ffn_gate_shexp.weight", l) &&
                 add(s, T, 0, ws, 2, d, a->sff, 1, "blk.%d.ffn_up_shexp.weight", l) &&
                 add(s, T, 0, 1.0f / sqrtf((float)a->sff), 2, a->sff, d, 1,
                     "blk.%d.ffn_down_shexp.weight", l);
    }
    return ok;
}

/* The whole of a text file, NUL-terminated (malloc'd); NULL on failure
 * (vt_last_error). */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        vt_fail(VT_ERR_IO, "cannot open %s", path);
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (len < cap - 1)
            break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        vt_fail(bad ? VT_ERR_IO : VT_ERR_NOMEM, "cannot read %s", path);
        return NULL;
    }
    buf[len] = 0;
    return buf;
}

static vt_err write_model(const gen_args *a)
{
    gguf_file *vf = NULL;
    gguf_writer *w = NULL;
    gen_spec spec = {.seed = (uint64_t)a->seed};
    vt_err e = gguf_open(a->vocab, &vf);
    if (e)
        return e;
    const gguf_value *toks = gguf_get_arr(vf, "tokenizer.ggml.tokens");
    if (!toks || toks->arr_type != GGUF_T_STRING || toks->arr_n == 0) {
        e = vt_fail(VT_ERR_FORMAT, "%s has no tokenizer.ggml.tokens array", a->vocab);
        goto done;
    }
    if (!(w = gguf_writer_create())) {
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
        goto done;
    }
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, a->arch), key)
    if ((e = gguf_writer_set_str(w, "general.architecture", a->arch)) ||
        (e = gguf_writer_set_str(w, "general.name", "vitamin gen-model")) ||
        (e = gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)a->ctx)) ||
        (e = gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)a->dim)) ||
        (e = gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)a->layers)) ||
        (e = gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)a->ff)) ||
        (e = gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)a->heads)) ||
        (e = gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)a->kv_heads)) ||
        (e = gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)a->head_dim)) ||
        (e = gguf_writer_set_f32(w, KEY("rope.freq_base"), (float)a->rope_base)) ||
        (e = gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f)) ||
        (e = gguf_writer_set_u32(w, "general.file_type", a->type == VT_TYPE_F32 ? 0 : 1)))
        goto done;
    if (a->head_dim != a->dim / a->heads &&
        ((e = gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)a->head_dim)) ||
         (e = gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)a->head_dim))))
        goto done;
    if (a->experts > 0 &&
        ((e = gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)a->experts)) ||
         (e = gguf_writer_set_u32(w, KEY("expert_used_count"), (uint32_t)a->used)) ||
         (e = gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)a->eff))))
        goto done;
    if (!strcmp(a->arch, "qwen2moe") &&
        (e = gguf_writer_set_u32(w, KEY("expert_shared_feed_forward_length"), (uint32_t)a->sff)))
        goto done;
    if (a->rope_linear > 0 &&
        ((e = gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear")) ||
         (e = gguf_writer_set_f32(w, KEY("rope.scaling.factor"), (float)a->rope_linear))))
        goto done;
    if (a->pooling >= 0 &&
        (e = gguf_writer_set_u32(w, KEY("pooling_type"), (uint32_t)a->pooling)))
        goto done;
#undef KEY
    for (int64_t i = 0; i < gguf_n_kv(vf); i++) {
        gguf_str k = gguf_kv_key(vf, i);
        bool tpl = k.len == 23 && !memcmp(k.ptr, "tokenizer.chat_template", 23);
        if (k.len > 10 && !memcmp(k.ptr, "tokenizer.", 10) && !(tpl && a->chat_template) &&
            (e = gguf_writer_copy_kv(w, vf, i)))
            goto done;
    }
    if (a->chat_template) {
        char *t = read_text(a->chat_template);
        e = t ? gguf_writer_set_str(w, "tokenizer.chat_template", t) : VT_ERR_IO;
        free(t);
        if (e)
            goto done;
    }
    if (!build_spec(a, (int64_t)toks->arr_n, &spec)) {
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < spec.n; i++) {
        const gen_tensor *t = &spec.t[i];
        const vt_type_info *ti = vt_type_get(t->type);
        if (t->ne[0] % ti->blck) {
            e = vt_fail(VT_ERR_INVALID, "%s: row length %lld is not a multiple of the %s block "
                        "size %lld", t->name, (long long)t->ne[0], ti->name, (long long)ti->blck);
            goto done;
        }
        if ((e = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, NULL, fill, &spec)))
            goto done;
    }
    e = gguf_writer_write(w, a->out);
done:
    free(spec.t);
    gguf_writer_destroy(w);
    gguf_close(vf);
    return e;
}

int cmd_gen_model(int argc, char **argv)
{
    gen_args a = {.dim = 256, .layers = 2, .heads = 8, .ctx = 4096, .seed = 1, .used = 2,
                  .rope_base = 10000, .embd_std = 1, .type = VT_TYPE_F16, .pooling = -1};
    static const struct {
        const char *opt;
        size_t off;
        long lo, hi;
    } ints[] = {
        {"--dim", offsetof(gen_args, dim), 1, 1 << 16},
        {"--layers", offsetof(gen_args, layers), 1, 1024},
        {"--heads", offsetof(gen_args, heads), 1, 1024},
        {"--kv-heads", offsetof(gen_args, kv_heads), 1, 1024},
        {"--head-dim", offsetof(gen_args, head_dim), 2, 1024},
        {"--ff", offsetof(gen_args, ff), 1, 1 << 18},
        {"--experts", offsetof(gen_args, experts), 0, 1024},
        {"--experts-used", offsetof(gen_args, used), 1, 1024},
        {"--expert-ff", offsetof(gen_args, eff), 1, 1 << 18},
        {"--shared-ff", offsetof(gen_args, sff), 1, 1 << 18},
        {"--ctx", offsetof(gen_args, ctx), 1, 1 << 24},
        {"--seed", offsetof(gen_args, seed), 0, 0x7fffffff},
    };
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        size_t k;
        for (k = 0; k < sizeof ints / sizeof ints[0]; k++)
            if (!strcmp(o, ints[k].opt))
                break;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            help(stdout);
            return 0;
        } else if (!strcmp(o, "--tied")) {
            a.tied = true;
        } else if (i + 1 >= argc || o[0] != '-') {
            fprintf(stderr, "vitamin gen-model: unexpected argument '%s' (see --help)\n", o);
            return 2;
        } else if (k < sizeof ints / sizeof ints[0]) {
            if (!cli_parse_int(o, argv[++i], ints[k].lo, ints[k].hi,
                               (long *)((char *)&a + ints[k].off)))
                return 2;
        } else if (!strcmp(o, "--arch")) {
            a.arch = argv[++i];
        } else if (!strcmp(o, "--chat-template")) {
            a.chat_template = argv[++i];
        } else if (!strcmp(o, "--pooling")) {
            static const char *const names[] = {"none", "mean", "cls", "last"};
            const char *v = argv[++i];
            a.pooling = -2;
            for (long j = 0; j < 4; j++)
                if (!strcmp(v, names[j]))
                    a.pooling = j;
            if (a.pooling < 0) {
                fprintf(stderr, "vitamin gen-model: --pooling must be none, mean, cls or last\n");
                return 2;
            }
        } else if (!strcmp(o, "--vocab")) {
            a.vocab = argv[++i];
        } else if (!strcmp(o, "-o") || !strcmp(o, "--output")) {
            a.out = argv[++i];
        } else if (!strcmp(o, "--rope-base")) {
            if (!cli_parse_float(o, argv[++i], &a.rope_base) || a.rope_base <= 0)
                return 2;
        } else if (!strcmp(o, "--rope-freqs") || !strcmp(o, "--rope-linear")) {
            double v;
            if (!cli_parse_float(o, argv[++i], &v) || !(v >= 1)) {
                fprintf(stderr, "vitamin gen-model: %s must be at least 1\n", o);
                return 2;
            }
            *(!strcmp(o, "--rope-freqs") ? &a.rope_freqs : &a.rope_linear) = v;
        } else if (!strcmp(o, "--embd-std")) {
            if (!cli_parse_float(o, argv[++i], &a.embd_std) || !(a.embd_std > 0)) {
                fprintf(stderr, "vitamin gen-model: --embd-std must be positive\n");
                return 2;
            }
        } else if (!strcmp(o, "--type")) {
            a.type = vt_type_from_name(argv[++i]);
            if (a.type < 0) {
                fprintf(stderr, "vitamin gen-model: unknown type '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "vitamin gen-model: unknown option '%s' (see --help)\n", o);
            return 2;
        }
    }
    if (!a.arch || !a.vocab || !a.out) {
        fprintf(stderr, "vitamin gen-model: --arch, --vocab and -o are required (see --help)\n");
        return 2;
    }
    const char *archs[] = {"llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe"};
    bool known = false;
    for (size_t i = 0; i < 5; i++)
        known |= !strcmp(a.arch, archs[i]);
    if (!known) {
        fprintf(stderr, "vitamin gen-model: unknown architecture '%s' (llama, qwen2, qwen3, "
                        "qwen2moe, qwen3moe)\n", a.arch);
        return 2;
    }
    if (a.rope_freqs > 0 && strcmp(a.arch, "llama")) {
        fprintf(stderr, "vitamin gen-model: --rope-freqs is for --arch llama only\n");
        return 2;
    }
    bool moe_arch = strstr(a.arch, "moe") != NULL;
    if (moe_arch && a.experts == 0)
        a.experts = 4;
    if (!moe_arch && strcmp(a.arch, "llama"))
        a.experts = 0;
    if (a.used > a.experts && a.experts)
        a.used = a.experts;
    if (!a.kv_heads)
        a.kv_heads = a.heads;
    if (!a.head_dim)
        a.head_dim = a.dim / a.heads;
    if (!a.ff)
        a.ff = 4 * a.dim;
    if (!a.eff)
        a.eff = a.ff;
    if (!a.sff)
        a.sff = a.ff;
    if (a.heads % a.kv_heads || a.head_dim % 2) {
        fprintf(stderr, "vitamin gen-model: heads must be a multiple of kv-heads and head-dim even\n");
        return 2;
    }
    kn_init();
    vt_err e = write_model(&a);
    if (e) {
        fprintf(stderr, "vitamin gen-model: %s\n", vt_last_error());
        return 1;
    }
    return 0;
}
