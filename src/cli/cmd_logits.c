/*
 * cmd_logits.c - `vitamin logits`: the top next-token logits after each
 * position of a token list, printed as the JSON that ../shared/oracle/
 * logits.mjs prints for llama.cpp, so the two can be compared directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "model/model.h"

static void help(FILE *out)
{
    fprintf(out,
            "usage: vitamin logits -m MODEL.gguf --tokens ID,ID,... [options]\n\n"
            "Runs the token list through the model in one batch and prints the top next-token\n"
            "logits as JSON: {\"tokens\":[...],\"positions\":[{\"pos\":i,\"top\":[[id,logit],...]}]}\n\n"
            "options:\n"
            "  -m, --model FILE   GGUF model file (required)\n"
            "  --tokens LIST      comma-separated token ids (required)\n"
            "  --top N            logits per position (default 20)\n"
            "  --all              every position, not only the last\n"
            "  -t, --threads N    threads (default: all cores)\n"
            "  -h, --help         this help\n");
}

int cli_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

static void print_top(const float *l, int64_t nv, int top)
{
    int *idx = malloc(sizeof *idx * (size_t)top);
    int k = 0;
    if (!idx)
        return;
    for (int64_t i = 0; i < nv; i++) { /* insertion into a small sorted list */
        if (k == top && l[i] <= l[idx[k - 1]])
            continue;
        int j = k < top ? k++ : k - 1;
        while (j > 0 && l[idx[j - 1]] < l[i]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = (int)i;
    }
    for (int j = 0; j < k; j++)
        printf("%s[%d,%.9g]", j ? "," : "", idx[j], l[idx[j]]);
    free(idx);
}

int cmd_logits(int argc, char **argv)
{
    const char *model = NULL;
    int32_t *tokens = NULL;
    int n = 0, rc = 2; /* usage errors exit 2, run-time errors 1 */
    long top = 20, threads = cli_default_threads();
    bool all = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            free(tokens);
            return 0;
        } else if (!strcmp(a, "--all")) {
            all = true;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && cli_need_value(argc, argv, i)) {
            model = argv[++i];
        } else if (!strcmp(a, "--tokens") && cli_need_value(argc, argv, i)) {
            free(tokens);
            if (!cli_parse_int_list(a, argv[++i], &tokens, &n))
                return 2;
        } else if (!strcmp(a, "--top") && cli_need_value(argc, argv, i)) {
            if (!cli_parse_int(a, argv[++i], 1, 1000000, &top))
                goto out;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && cli_need_value(argc, argv, i)) {
            if (!cli_parse_int(a, argv[++i], 1, 1024, &threads))
                goto out;
        } else {
            if (a[0] != '-' || !(!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--tokens") ||
                                 !strcmp(a, "--top") || !strcmp(a, "-t") || !strcmp(a, "--threads")))
                fprintf(stderr, "vitamin logits: unknown argument '%s' (see --help)\n", a);
            goto out;
        }
    }
    if (!model || !tokens) {
        fprintf(stderr, "vitamin logits: %s is required (see --help)\n", !model ? "-m MODEL" : "--tokens");
        goto out;
    }
    md_model *m = NULL;
    kn_pool *pool = NULL;
    float *logits = NULL;
    rc = 1;
    vt_err e = md_load(model, &m);
    if (!e && !(pool = kn_pool_create((int)threads)))
        e = VT_ERR_NOMEM;
    if (!e)
        e = md_eval(m, pool, tokens, n, all, &logits, NULL);
    if (e) {
        fprintf(stderr, "vitamin logits: %s\n", vt_last_error());
    } else {
        printf("{\"tokens\":[");
        for (int i = 0; i < n; i++)
            printf("%s%d", i ? "," : "", tokens[i]);
        printf("],\"positions\":[");
        int first = all ? 0 : n - 1;
        for (int i = first; i < n; i++) {
            printf("%s{\"pos\":%d,\"top\":[", i > first ? "," : "", i);
            print_top(logits + (size_t)(i - first) * (size_t)m->hp.n_vocab, m->hp.n_vocab,
                      (int)top);
            printf("]}");
        }
        printf("]}\n");
        rc = 0;
    }
    free(logits);
    kn_pool_destroy(pool);
    md_destroy(m);
out:
    free(tokens);
    return rc;
}
