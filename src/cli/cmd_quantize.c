/*
 * cmd_quantize.c - `vitamin quantize IN.gguf OUT.gguf TYPE`: rewrites a model
 * with its matrices in another tensor type. Metadata is copied; 1-D tensors
 * and MoE router matrices stay F32; mixes (Q4_K_M, Q5_K_M) give the tensors
 * that matter most (output, attn_v, ffn_down of some layers) more bits, the
 * way llama.cpp's mixes do. Tensors are converted while the file is written,
 * in parallel over rows, so memory stays small.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

typedef struct {
    const char *name;
    vt_type base;  /* most matrices */
    vt_type more;  /* output / attn_v / ffn_down of the "more bits" layers */
    uint32_t ftype; /* general.file_type */
} qmix;

static const qmix mixes[] = {
    {"f32", VT_TYPE_F32, VT_TYPE_F32, 0},       {"f16", VT_TYPE_F16, VT_TYPE_F16, 1},
    {"bf16", VT_TYPE_BF16, VT_TYPE_BF16, 32},   {"q8_0", VT_TYPE_Q8_0, VT_TYPE_Q8_0, 7},
    {"q4_0", VT_TYPE_Q4_0, VT_TYPE_Q4_0, 2},    {"q4_1", VT_TYPE_Q4_1, VT_TYPE_Q4_1, 3},
    {"q5_0", VT_TYPE_Q5_0, VT_TYPE_Q5_0, 8},    {"q5_1", VT_TYPE_Q5_1, VT_TYPE_Q5_1, 9},
    {"q2_k", VT_TYPE_Q2_K, VT_TYPE_Q2_K, 10},   {"q3_k", VT_TYPE_Q3_K, VT_TYPE_Q3_K, 11},
    {"q4_k", VT_TYPE_Q4_K, VT_TYPE_Q4_K, 14},   {"q5_k", VT_TYPE_Q5_K, VT_TYPE_Q5_K, 16},
    {"q6_k", VT_TYPE_Q6_K, VT_TYPE_Q6_K, 18},   {"q4_k_m", VT_TYPE_Q4_K, VT_TYPE_Q6_K, 15},
    {"q5_k_m", VT_TYPE_Q5_K, VT_TYPE_Q6_K, 17},
};

static void help(FILE *out)
{
    fprintf(out, "usage: vitamin quantize [-t N] IN.gguf OUT.gguf TYPE\n\n"
                 "Writes IN's model with its matrices converted to TYPE, one of:\n ");
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++)
        fprintf(out, " %s", mixes[i].name);
    fprintf(out, "\n(case-insensitive). 1-D tensors and MoE router matrices stay f32; q4_k_m and\n"
                 "q5_k_m use q6_k for the output matrix and for attn_v/ffn_down of the first and\n"
                 "last eighth of the layers and every third layer between.\n\n"
                 "options:\n"
                 "  -t, --threads N    threads (default: all cores)\n"
                 "  -h, --help         this help\n");
}

/* llama.cpp's rule for the layers whose attn_v/ffn_down get more bits. */
static bool more_bits(int layer, int n_layers)
{
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

static vt_type fallback(vt_type t, int64_t cols)
{
    const kn_type_info *ti = kn_type_get((uint32_t)t);
    if (cols % ti->blck == 0)
        return t;
    vt_type f = t == VT_TYPE_Q4_K ? VT_TYPE_Q5_0 : t == VT_TYPE_Q5_K ? VT_TYPE_Q5_1
                : t == VT_TYPE_Q6_K ? VT_TYPE_Q8_0 : t == VT_TYPE_Q2_K || t == VT_TYPE_Q3_K
                ? VT_TYPE_Q4_0 : VT_TYPE_F16;
    return cols % kn_type_get((uint32_t)f)->blck == 0 ? f : VT_TYPE_F16;
}

static vt_type target_type(const qmix *mx, const gguf_tensor *t, bool tied, int n_layers)
{
    const char *n = t->name;
    if (t->n_dims < 2 || strstr(n, "ffn_gate_inp") || (t->type != VT_TYPE_F32 &&
        t->type != VT_TYPE_F16 && t->type != VT_TYPE_BF16 && !kn_traits_get((vt_type)t->type)))
        return (vt_type)t->type; /* keep vectors, routers and types we cannot read */
    vt_type want = mx->base;
    int layer = -1;
    if (sscanf(n, "blk.%d.", &layer) != 1)
        layer = -1;
    if (!strcmp(n, "output.weight") || (tied && !strcmp(n, "token_embd.weight")))
        want = mx->more;
    else if (layer >= 0 && (strstr(n, "attn_v.") || strstr(n, "ffn_down")) &&
             more_bits(layer, n_layers))
        want = mx->more;
    return fallback(want, t->ne[0]);
}

typedef struct {
    const gguf_file *in;
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
    size_t srow = kn_row_size((vt_type)j->src->type, j->cols);
    size_t drow = kn_row_size(j->dst_type, j->cols);
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
    vt_type *types;
    int64_t done, total;
} qctx;

static vt_err fill(void *ctx, const char *name, void *dst, uint64_t nbytes)
{
    qctx *q = ctx;
    const gguf_tensor *t = gguf_find_tensor(q->in, name);
    int64_t idx = 0;
    while (gguf_tensor_at(q->in, idx) != t)
        idx++;
    vt_type to = q->types[idx];
    fprintf(stderr, "\r[%4lld/%4lld] %-40s %6s -> %-6s", (long long)++q->done,
            (long long)q->total, name, kn_type_get(t->type)->name, kn_type_get(to)->name);
    if ((vt_type)t->type == to) {
        memcpy(dst, t->data, nbytes);
        return VT_OK;
    }
    qjob j = {q->in, t, to, dst, (int64_t)(t->nbytes / kn_row_size((vt_type)t->type, t->ne[0])),
              t->ne[0], VT_OK};
    kn_pool_run(q->pool, quant_rows, &j);
    if (j.err)
        return vt_fail(j.err, "cannot convert %s to %s", name, kn_type_get(to)->name);
    return VT_OK;
}

static vt_err quantize(const char *in_path, const char *out_path, const qmix *mx, kn_pool *pool)
{
    gguf_file *in = NULL;
    gguf_writer *w = NULL;
    vt_type *types = NULL;
    vt_err e = gguf_open(in_path, &in);
    if (e)
        return e;
    int64_t nt = gguf_n_tensors(in);
    if (!(w = gguf_writer_create()) || !(types = calloc((size_t)nt + 1, sizeof *types))) {
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
        goto done;
    }
    int64_t n_layers = 0;
    bool tied = !gguf_find_tensor(in, "output.weight");
    for (int64_t i = 0; i < nt; i++) {
        int l;
        if (sscanf(gguf_tensor_at(in, i)->name, "blk.%d.", &l) == 1 && l + 1 > n_layers)
            n_layers = l + 1;
    }
    qctx q = {in, pool, types, 0, nt};
    for (int64_t i = 0; i < gguf_n_kv(in); i++)
        if ((e = gguf_writer_copy_kv(w, in, i)))
            goto done;
    if ((e = gguf_writer_set_u32(w, "general.file_type", mx->ftype)) ||
        (e = gguf_writer_set_u32(w, "general.quantization_version", 2)))
        goto done;
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(in, i);
        types[i] = target_type(mx, t, tied, (int)n_layers);
        if (types[i] != (vt_type)t->type && !kn_traits_get((vt_type)t->type)) {
            e = vt_fail(VT_ERR_UNSUPPORTED, "cannot read tensor %s of type %s", t->name,
                        kn_type_get(t->type)->name);
            goto done;
        }
        if ((e = gguf_writer_add_tensor(w, t->name, types[i], t->n_dims, t->ne, NULL, fill, &q)))
            goto done;
    }
    e = gguf_writer_write(w, out_path);
    fprintf(stderr, "\n");
done:
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
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++)
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
