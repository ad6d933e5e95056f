/*
 * cmd_info.c - `vitamin info`: what a GGUF file holds (architecture,
 * hyperparameters, tensor types) and the memory needed to run it.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model/model.h"

static void help(FILE *out)
{
    fprintf(out, "usage: vitamin info -m MODEL.gguf [--ctx N]\n\n"
                 "Prints the model's architecture, hyperparameters, tensor types and the memory\n"
                 "needed to run it with a context of N tokens (default: the training context).\n\n"
                 "options:\n"
                 "  -m, --model FILE   GGUF model file (required)\n"
                 "  --ctx N            context length for the KV-cache estimate\n"
                 "  -h, --help         this help\n");
}

static void print_str_key(const gguf_file *f, const char *label, const char *key)
{
    gguf_str s;
    if (gguf_get_str(f, key, &s))
        printf("%-22s %.*s\n", label, (int)(s.len > 200 ? 200 : s.len), s.ptr);
}

static void human(double bytes, char *buf, size_t n)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4) {
        bytes /= 1024;
        i++;
    }
    snprintf(buf, n, "%.2f %s", bytes, u[i]);
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    long ctx = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            help(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) &&
                   cli_need_value(argc, argv, i)) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--ctx") && cli_need_value(argc, argv, i)) {
            if (!cli_parse_int("--ctx", argv[++i], 1, 1 << 24, &ctx))
                return 2;
        } else {
            if (strcmp(argv[i], "-m") && strcmp(argv[i], "--model") && strcmp(argv[i], "--ctx"))
                fprintf(stderr, "vitamin info: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "vitamin info: -m MODEL is required (see --help)\n");
        return 2;
    }
    gguf_file *f;
    if (gguf_open(path, &f)) {
        fprintf(stderr, "vitamin info: %s\n", vt_last_error());
        return 1;
    }
    char b1[32], b2[32];
    human((double)gguf_size(f), b1, sizeof b1);
    printf("%-22s %s\n", "file", path);
    printf("%-22s GGUF v%u, %s, %lld tensors, %lld metadata keys\n", "format", gguf_version(f), b1,
           (long long)gguf_n_tensors(f), (long long)gguf_n_kv(f));
    print_str_key(f, "name", "general.name");
    print_str_key(f, "architecture", "general.architecture");
    print_str_key(f, "tokenizer", "tokenizer.ggml.model");

    uint64_t per_type[VT_TYPE_COUNT] = {0}, n_type[VT_TYPE_COUNT] = {0}, weights = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        per_type[t->type] += t->nbytes;
        n_type[t->type]++;
        weights += t->nbytes;
    }
    printf("%-22s", "tensor types");
    for (int t = 0; t < VT_TYPE_COUNT; t++)
        if (n_type[t]) {
            human((double)per_type[t], b1, sizeof b1);
            printf(" %s: %llu (%s)", vt_type_get((uint32_t)t)->name,
                   (unsigned long long)n_type[t], b1);
        }
    printf("\n");

    md_model *m = NULL;
    int rc = 0;
    if (md_load_gguf(f, &m)) {
        printf("%-22s no: %s\n", "runnable", vt_last_error());
        rc = 1;
    } else {
        const md_hparams *hp = &m->hp;
        printf("%-22s yes\n", "runnable");
        printf("%-22s %lld\n", "vocabulary", (long long)hp->n_vocab);
        printf("%-22s %lld\n", "embedding", (long long)hp->dim);
        printf("%-22s %lld\n", "layers", (long long)hp->n_layers);
        printf("%-22s %lld query, %lld key/value (head dim %lld, value dim %lld)\n", "heads",
               (long long)hp->n_heads, (long long)hp->n_kv_heads, (long long)hp->head_dim,
               (long long)hp->head_dim_v);
        if (hp->n_experts)
            printf("%-22s %lld experts, %lld used per token, expert ff %lld%s\n", "mixture",
                   (long long)hp->n_experts, (long long)hp->n_experts_used, (long long)hp->ff_exp,
                   hp->ff_shexp ? ", shared expert" : "");
        else
            printf("%-22s %lld\n", "feed-forward", (long long)hp->ff);
        printf("%-22s %s, base %g, dims %lld%s\n", "rope",
               hp->rope_type == MD_ROPE_NEOX ? "neox" : "normal", hp->rope_base,
               (long long)hp->rope_dim, m->rope_freqs.data ? ", frequency factors" : "");
        printf("%-22s %g\n", "rms norm epsilon", hp->norm_eps);
        printf("%-22s %lld\n", "training context", (long long)hp->n_ctx_train);
        printf("%-22s %s\n", "output", m->output.data == m->tok_embd.data ? "tied to embeddings"
                                                                           : "own matrix");
        long n_ctx = ctx ? ctx : (long)hp->n_ctx_train;
        double kvb = (double)md_kv_block_bytes(hp, 1);
        human(kvb, b1, sizeof b1);
        human(kvb * (double)n_ctx, b2, sizeof b2);
        printf("%-22s %s per token; %s for %ld tokens (F16)\n", "KV cache", b1, b2, n_ctx);
        human((double)weights, b1, sizeof b1);
        human((double)weights + kvb * (double)n_ctx, b2, sizeof b2);
        printf("%-22s %s of weights (mapped, not copied); about %s with the KV cache\n", "memory",
               b1, b2);
    }
    md_destroy(m);
    gguf_close(f);
    return rc;
}
