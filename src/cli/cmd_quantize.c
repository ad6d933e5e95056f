/*
 * cmd_quantize.c - `vitamin quantize IN.gguf OUT.gguf TYPE`: rewrites a model
 * with its matrices in another tensor type, giving the file llama.cpp's
 * quantizer (llama_model_quantize without an importance matrix) writes for the
 * same input and type. Per tensor it makes the choices llama.cpp's mixes make
 * (measured against llama.cpp, see tests/test_quantize.c): the output matrix,
 * attn_v, attn_k, attn_output and ffn_down get more bits depending on the mix,
 * the layer, grouped-query attention and the expert count; rows whose length
 * does not fit a K-quant's 256-element block fall back to a 32-element type.
 * 1-D tensors and MoE routers are copied. Tensors are written in llama.cpp's
 * order (by layer, then by name) and the metadata is the input's with
 * general.quantization_version and general.file_type moved to the end, so the
 * whole file is byte for byte llama.cpp's. Tensors are converted while the
 * file is written, in parallel over rows, so memory stays small.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

/* llama.cpp's llama_ftype values, written to general.file_type. */
enum {
    FT_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13, FT_Q4_K_S = 14,
    FT_Q4_K_M = 15, FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_BF16 = 32
};

typedef struct {
    const char *name;
    uint32_t ftype;
    vt_type base; /* the type of the matrices no rule gives more bits */
} qmix;

/* q3_k, q4_k and q5_k are llama-quantize's aliases of the _m mixes. */
static const qmix mixes[] = {
    {"f32", FT_F32, VT_TYPE_F32},       {"f16", FT_F16, VT_TYPE_F16},
    {"bf16", FT_BF16, VT_TYPE_BF16},    {"q8_0", FT_Q8_0, VT_TYPE_Q8_0},
    {"q4_0", FT_Q4_0, VT_TYPE_Q4_0},    {"q4_1", FT_Q4_1, VT_TYPE_Q4_1},
    {"q5_0", FT_Q5_0, VT_TYPE_Q5_0},    {"q5_1", FT_Q5_1, VT_TYPE_Q5_1},
    {"q2_k", FT_Q2_K, VT_TYPE_Q2_K},    {"q3_k_s", FT_Q3_K_S, VT_TYPE_Q3_K},
    {"q3_k_m", FT_Q3_K_M, VT_TYPE_Q3_K}, {"q3_k_l", FT_Q3_K_L, VT_TYPE_Q3_K},
    {"q4_k_s", FT_Q4_K_S, VT_TYPE_Q4_K}, {"q4_k_m", FT_Q4_K_M, VT_TYPE_Q4_K},
    {"q5_k_s", FT_Q5_K_S, VT_TYPE_Q5_K}, {"q5_k_m", FT_Q5_K_M, VT_TYPE_Q5_K},
    {"q6_k", FT_Q6_K, VT_TYPE_Q6_K},    {"q3_k", FT_Q3_K_M, VT_TYPE_Q3_K},
    {"q4_k", FT_Q4_K_M, VT_TYPE_Q4_K},  {"q5_k", FT_Q5_K_M, VT_TYPE_Q5_K},
};

static void help(FILE *out)
{
    fprintf(out, "usage: vitamin quantize [-t N] IN.gguf OUT.gguf TYPE\n\n"
                 "Writes IN's model with its matrices converted to TYPE, one of:\n ");
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++)
        fprintf(out, " %s", mixes[i].name);
    fprintf(out, "\n(case-insensitive; q3_k, q4_k, q5_k are q3_k_m, q4_k_m, q5_k_m). The file is\n"
                 "the one llama.cpp's quantizer writes for the same input and type (without an\n"
                 "importance matrix): the same mixes (output, attn_v, attn_k, attn_output and\n"
                 "ffn_down get more bits in some layers), the same fallback types for rows\n"
                 "that are not a multiple of 256, the same bytes. 1-D tensors and MoE routers\n"
                 "are copied; a quantized input is dequantized first.\n\n"
                 "options:\n"
                 "  -t, --threads N    threads (default: all cores)\n"
                 "  -h, --help         this help\n");
}

/* What the per-tensor rules look at. */
typedef struct {
    int n_layers, n_expert;
    int64_t n_gqa;   /* query heads per key/value head */
    bool has_output; /* false: token_embd is also the output matrix */
    bool is_70b;     /* llama.cpp's 70B size class: 80 layers, llama with GQA or qwen2 */
} qmodel;

/* The layers whose attn_v / ffn_down get more bits in the _m mixes: the first
 * and last eighth and every third layer between. */
static bool more_bits(int layer, int n_layers)
{
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

/* A row length the type's blocks do not divide: a 32-element type of about
 * as many bits, else f16. */
static vt_type fallback(vt_type t, int64_t cols)
{
    if (cols % vt_type_get((uint32_t)t)->blck == 0)
        return t;
    vt_type f = t == VT_TYPE_Q4_K ? VT_TYPE_Q5_0 : t == VT_TYPE_Q5_K ? VT_TYPE_Q5_1
                : t == VT_TYPE_Q6_K ? VT_TYPE_Q8_0 : t == VT_TYPE_Q2_K || t == VT_TYPE_Q3_K
                ? VT_TYPE_Q4_0 : VT_TYPE_F16;
    return cols % vt_type_get((uint32_t)f)->blck == 0 ? f : VT_TYPE_F16;
}

static bool has(const char *name, const char *part)
{
    return strstr(name, part) != NULL;
}

/* The type of a quantized mix's matrix (llama.cpp's rules, as measured). */
static vt_type mix_type(const qmix *mx, const qmodel *m, const char *n, int layer)
{
    uint32_t ft = mx->ftype;
    vt_type t = mx->base;
    if (!strcmp(n, "output.weight") || (!m->has_output && !strcmp(n, "token_embd.weight")))
        return t == VT_TYPE_Q8_0 ? VT_TYPE_Q8_0 : VT_TYPE_Q6_K;
    if (layer < 0)
        return t;
    if (has(n, "attn_v.weight")) {
        if (ft == FT_Q2_K)
            t = m->n_gqa >= 4 ? VT_TYPE_Q4_K : VT_TYPE_Q3_K;
        else if (ft == FT_Q3_K_M)
            t = layer < 2 ? VT_TYPE_Q5_K : VT_TYPE_Q4_K;
        else if (ft == FT_Q3_K_L)
            t = VT_TYPE_Q5_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && more_bits(layer, m->n_layers))
            t = VT_TYPE_Q6_K;
        else if (ft == FT_Q4_K_S && layer < 4)
            t = VT_TYPE_Q5_K;
        if (m->is_70b && (t == VT_TYPE_Q3_K || t == VT_TYPE_Q4_K))
            t = VT_TYPE_Q5_K;
        return m->n_expert == 8 ? VT_TYPE_Q8_0 : t;
    }
    if (has(n, "attn_k.weight"))
        return m->n_expert == 8 ? VT_TYPE_Q8_0 : t;
    if (has(n, "ffn_down")) {
        if (ft == FT_Q2_K)
            t = VT_TYPE_Q3_K;
        else if (ft == FT_Q3_K_M)
            t = layer < m->n_layers / 16 ? VT_TYPE_Q5_K : VT_TYPE_Q4_K;
        else if (ft == FT_Q3_K_L)
            t = VT_TYPE_Q5_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && more_bits(layer, m->n_layers))
            t = VT_TYPE_Q6_K;
        else if (ft == FT_Q4_K_S && layer < m->n_layers / 8)
            t = VT_TYPE_Q5_K;
        return t;
    }
    if (has(n, "attn_output.weight")) {
        if (m->n_expert == 8)
            return ft == FT_Q2_K || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_Q4_K_S ||
                   ft == FT_Q4_K_M ? VT_TYPE_Q5_K : t;
        return ft == FT_Q2_K ? VT_TYPE_Q3_K : ft == FT_Q3_K_M ? VT_TYPE_Q4_K
               : ft == FT_Q3_K_L ? VT_TYPE_Q5_K : t;
    }
    return t;
}

static int layer_of(const char *name)
{
    int l;
    return sscanf(name, "blk.%d.", &l) == 1 ? l : -1;
}

static vt_type target_type(const qmix *mx, const qmodel *m, const gguf_tensor *t)
{
    const char *n = t->name;
    size_t len = strlen(n);
    if (t->n_dims < 2 || len < 6 || strcmp(n + len - 6, "weight") || has(n, "ffn_gate_inp") ||
        (t->type != VT_TYPE_F32 && t->type != VT_TYPE_F16 && t->type != VT_TYPE_BF16 &&
         !kn_traits_get((vt_type)t->type)))
        return (vt_type)t->type; /* keep vectors, routers and types we cannot read */
    bool quantized = mx->base != VT_TYPE_F32 && mx->base != VT_TYPE_F16 &&
                     mx->base != VT_TYPE_BF16;
    vt_type want = quantized ? mix_type(mx, m, n, layer_of(n)) : mx->base;
    return fallback(want, t->ne[0]);
}

typedef struct {
    const gguf_tensor *src;
    vt_type dst_type;
    char *dst;
    int64_t rows, cols;
    vt_err err;
} qjob;

static void quant_rows(void *ctx, int ith, int nth)
{
    qjob *j = ctx;
    const kn_traits *st = kn_traits_get((vt_type)j->src->type);
    size_t srow = vt_row_size((vt_type)j->src->type, j->cols);
    size_t drow = vt_row_size(j->dst_type, j->cols);
    float *buf = malloc(sizeof(float) * (size_t)j->cols);
    if (!buf) {
        j->err = VT_ERR_NOMEM;
        return;
    }
    int64_t r0 = j->rows * ith / nth, r1 = j->rows * (ith + 1) / nth;
    for (int64_t r = r0; r < r1; r++) {
        st->to_float((const char *)j->src->data + (size_t)r * srow, buf, j->cols);
        if (kn_quantize_ref(j->dst_type, buf, j->dst + (size_t)r * drow, j->cols))
            j->err = VT_ERR_UNSUPPORTED;
    }
    free(buf);
}

typedef struct {
    const gguf_file *in;
    kn_pool *pool;
    vt_type *types; /* by input tensor index */
    int64_t done, total;
    bool tty; /* stderr is a terminal: one redrawn line; else a line per tensor */
} qctx;

static vt_err fill(void *ctx, const char *name, void *dst, uint64_t nbytes)
{
    qctx *q = ctx;
    const gguf_tensor *t = gguf_find_tensor(q->in, name);
    int64_t idx = 0;
    while (gguf_tensor_at(q->in, idx) != t)
        idx++;
    vt_type to = q->types[idx];
    fprintf(stderr, q->tty ? "\r[%4lld/%4lld] %-40s %6s -> %-6s\033[K" : "[%4lld/%4lld] %s %s -> %s\n",
            (long long)++q->done, (long long)q->total, name, vt_type_get(t->type)->name,
            vt_type_get(to)->name);
    if ((vt_type)t->type == to) {
        memcpy(dst, t->data, nbytes);
        return VT_OK;
    }
    qjob j = {t, to, dst, (int64_t)(t->nbytes / vt_row_size((vt_type)t->type, t->ne[0])),
              t->ne[0], VT_OK};
    kn_pool_run(q->pool, quant_rows, &j);
    if (j.err)
        return vt_fail(j.err, "cannot convert %s to %s", name, vt_type_get(to)->name);
    return VT_OK;
}

/* llama.cpp's tensor order: by layer (tensors outside blocks first), then by
 * name. */
typedef struct {
    int layer;
    const char *name;
    int64_t idx;
} qorder;

static int by_layer_name(const void *a, const void *b)
{
    const qorder *x = a, *y = b;
    return x->layer != y->layer ? (x->layer < y->layer ? -1 : 1) : strcmp(x->name, y->name);
}

static uint32_t arch_u32(const gguf_file *f, const char *arch, const char *key, uint32_t dflt)
{
    char k[160];
    uint32_t v;
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return gguf_get_u32(f, k, &v) ? v : dflt;
}

static qmodel model_facts(const gguf_file *in)
{
    qmodel m = {.has_output = gguf_find_tensor(in, "output.weight") != NULL};
    char arch[64] = "";
    gguf_str a;
    if (gguf_get_str(in, "general.architecture", &a) && a.len < sizeof arch) {
        memcpy(arch, a.ptr, a.len);
        arch[a.len] = 0;
    }
    for (int64_t i = 0; i < gguf_n_tensors(in); i++) {
        int l = layer_of(gguf_tensor_at(in, i)->name);
        if (l + 1 > m.n_layers)
            m.n_layers = l + 1;
    }
    m.n_layers = (int)arch_u32(in, arch, "block_count", (uint32_t)m.n_layers);
    m.n_expert = (int)arch_u32(in, arch, "expert_count", 0);
    uint32_t heads = arch_u32(in, arch, "attention.head_count", 1);
    uint32_t kv = arch_u32(in, arch, "attention.head_count_kv", heads);
    m.n_gqa = kv ? heads / kv : 1;
    m.is_70b = m.n_layers == 80 &&
               ((!strcmp(arch, "llama") && heads != kv) || !strcmp(arch, "qwen2"));
    return m;
}

static vt_err quantize(const char *in_path, const char *out_path, const qmix *mx, kn_pool *pool)
{
    gguf_file *in = NULL;
    gguf_writer *w = NULL;
    vt_type *types = NULL;
    qorder *order = NULL;
    vt_err e = gguf_open(in_path, &in);
    if (e)
        return e;
    int64_t nt = gguf_n_tensors(in);
    if (!(w = gguf_writer_create()) || !(types = calloc((size_t)nt + 1, sizeof *types)) ||
        !(order = calloc((size_t)nt + 1, sizeof *order))) {
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
        goto done;
    }
    qmodel m = model_facts(in);
    qctx q = {in, pool, types, 0, nt, isatty(STDERR_FILENO)};
    for (int64_t i = 0; i < gguf_n_kv(in); i++) {
        gguf_str k = gguf_kv_key(in, i);
        bool moved = (k.len == 28 && !memcmp(k.ptr, "general.quantization_version", 28)) ||
                     (k.len == 17 && !memcmp(k.ptr, "general.file_type", 17));
        if (!moved && (e = gguf_writer_copy_kv(w, in, i)))
            goto done;
    }
    if ((e = gguf_writer_set_u32(w, "general.quantization_version", 2)) ||
        (e = gguf_writer_set_u32(w, "general.file_type", mx->ftype)))
        goto done;
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(in, i);
        order[i] = (qorder){layer_of(t->name), t->name, i};
        types[i] = target_type(mx, &m, t);
        if (types[i] != (vt_type)t->type && !kn_traits_get((vt_type)t->type)) {
            e = vt_fail(VT_ERR_UNSUPPORTED, "cannot read tensor %s of type %s", t->name,
                        vt_type_get(t->type)->name);
            goto done;
        }
    }
    qsort(order, (size_t)nt, sizeof *order, by_layer_name);
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(in, order[i].idx);
        if ((e = gguf_writer_add_tensor(w, t->name, types[order[i].idx], t->n_dims, t->ne, NULL,
                                        fill, &q)))
            goto done;
    }
    e = gguf_writer_write(w, out_path);
    if (q.tty)
        fprintf(stderr, "\n");
done:
    free(order);
    free(types);
    gguf_writer_destroy(w);
    gguf_close(in);
    return e;
}

int cmd_quantize(int argc, char **argv)
{
    const char *pos[3];
    int np = 0;
    long threads = cli_default_threads();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            help(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) {
            if (!cli_need_value(argc, argv, i) ||
                !cli_parse_int(argv[i], argv[i + 1], 1, 1024, &threads))
                return 2;
            i++;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "vitamin quantize: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        } else if (np < 3) {
            pos[np++] = argv[i];
        } else {
            fprintf(stderr, "vitamin quantize: too many arguments (see --help)\n");
            return 2;
        }
    }
    if (np != 3) {
        fprintf(stderr, "vitamin quantize: usage: vitamin quantize IN.gguf OUT.gguf TYPE\n");
        return 2;
    }
    const qmix *mx = NULL;
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0] && !mx; i++)
        if (!strcasecmp(pos[2], mixes[i].name))
            mx = &mixes[i];
    if (!mx) {
        fprintf(stderr, "vitamin quantize: unknown type '%s' (see --help)\n", pos[2]);
        return 2;
    }
    kn_init();
    kn_pool *pool = kn_pool_create((int)threads);
    if (!pool) {
        fprintf(stderr, "vitamin quantize: %s\n", vt_last_error());
        return 1;
    }
    vt_err e = quantize(pos[0], pos[1], mx, pool);
    kn_pool_destroy(pool);
    if (e) {
        fprintf(stderr, "vitamin quantize: %s\n", vt_last_error());
        return 1;
    }
    return 0;
}
