/*
 * cmd_bench.c - `vitamin bench`: prefill and decode speed, measured the way
 * ../shared/oracle/bench.py measures llama.cpp (and llama-bench does): after
 * a warm-up run, one prompt of P random tokens in one forward pass, then N
 * single-token decode steps on random tokens, no sampling in the timed loop.
 * Prints one JSON line with prefill_tok_s and decode_tok_s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model/model.h"
#include "util/util.h"

static void help(FILE *out)
{
    fprintf(out, "usage: vitamin bench -m MODEL.gguf [-t N] [-p 512] [-n 128]\n\n"
                 "Measures prompt processing (one batch of -p random tokens) and generation\n"
                 "(-n single-token steps after it), after one warm-up run. Prints JSON:\n"
                 "{\"model\":..,\"threads\":..,\"prompt\":..,\"gen\":..,\"prefill_tok_s\":..,"
                 "\"decode_tok_s\":..}\n\n"
                 "options:\n"
                 "  -m, --model FILE   GGUF model file (required)\n"
                 "  -t, --threads N    threads (default: all cores)\n"
                 "  -p, --prompt N     prompt tokens (default 512)\n"
                 "  -n, --gen N        generated tokens (default 128)\n"
                 "  -h, --help         this help\n");
}

typedef struct {
    const md_model *m;
    md_ctx *ctx;
    md_kv *kv;
    md_seq seq;
    float *logits;
    vt_rng rng;
} bench_state;

static int32_t rand_token(bench_state *s)
{
    int64_t nv = s->m->hp.n_vocab;
    return (int32_t)(nv > 200 ? 100 + (int64_t)(vt_rng_next(&s->rng) % (uint64_t)(nv - 100))
                              : (int64_t)(vt_rng_next(&s->rng) % (uint64_t)nv));
}

/* One prefill + decode run; times in seconds. */
static vt_err run_once(bench_state *s, int p, int n, double *t_pp, double *t_tg)
{
    int32_t *toks = malloc(sizeof *toks * (size_t)p), *pos = malloc(sizeof *pos * (size_t)p);
    int32_t *seq = calloc((size_t)p, sizeof *seq);
    vt_err e = VT_OK;
    if (!toks || !pos || !seq) {
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < p; i++) {
        toks[i] = rand_token(s);
        pos[i] = i;
    }
    md_batch b = {.n_tokens = p, .tokens = toks, .pos = pos, .seq = seq, .n_seqs = 1,
                  .seqs = &s->seq};
    double t0 = vt_now();
    if ((e = md_forward(s->ctx, s->kv, &b, s->logits)))
        goto done;
    *t_pp = vt_now() - t0;
    t0 = vt_now();
    for (int g = 0; g < n; g++) {
        int32_t tok = rand_token(s), ps = p + g, sq = 0;
        md_batch d = {.n_tokens = 1, .tokens = &tok, .pos = &ps, .seq = &sq, .n_seqs = 1,
                      .seqs = &s->seq};
        if ((e = md_forward(s->ctx, s->kv, &d, s->logits)))
            goto done;
    }
    *t_tg = vt_now() - t0;
done:
    free(toks);
    free(pos);
    free(seq);
    return e;
}

int cmd_bench(int argc, char **argv)
{
    const char *path = NULL;
    long threads = cli_default_threads(), p = 512, n = 128;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return 0;
        }
        if (i + 1 >= argc || a[0] != '-') {
            fprintf(stderr, "vitamin bench: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            path = v;
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) &&
                 cli_parse_int(a, v, 1, 1024, &threads))
            continue;
        else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) &&
                 cli_parse_int(a, v, 1, 1 << 20, &p))
            continue;
        else if ((!strcmp(a, "-n") || !strcmp(a, "--gen")) && cli_parse_int(a, v, 0, 1 << 20, &n))
            continue;
        else {
            if (strcmp(a, "-t") && strcmp(a, "-p") && strcmp(a, "-n") && strcmp(a, "--threads") &&
                strcmp(a, "--prompt") && strcmp(a, "--gen"))
                fprintf(stderr, "vitamin bench: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "vitamin bench: -m MODEL is required (see --help)\n");
        return 2;
    }
    md_model *m = NULL;
    kn_pool *pool = NULL;
    bench_state s = {.rng = {1234}};
    int32_t *table = NULL;
    const int bs = 16;
    int64_t nb = (p + n + bs - 1) / bs;
    vt_err e = md_load(path, &m);
    if (!e && !(pool = kn_pool_create((int)threads)))
        e = VT_ERR_NOMEM;
    if (!e && !(table = malloc(sizeof *table * (size_t)nb)))
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
    if (!e) {
        for (int64_t i = 0; i < nb; i++)
            table[i] = (int32_t)i;
        s.m = m;
        s.seq = (md_seq){table, nb};
        if (!(s.logits = malloc(sizeof(float) * (size_t)m->hp.n_vocab)))
            e = vt_fail(VT_ERR_NOMEM, "out of memory");
    }
    if (!e)
        e = md_kv_create(m, nb, bs, &s.kv);
    if (!e)
        e = md_ctx_create(m, pool, &s.ctx);
    double t_pp = 0, t_tg = 0;
    for (int run = 0; run < 2 && !e; run++) /* warm-up, then measured */
        e = run_once(&s, (int)p, (int)n, &t_pp, &t_tg);
    int rc = 0;
    if (e) {
        fprintf(stderr, "vitamin bench: %s\n", vt_last_error());
        rc = 1;
    } else {
        const char *base = strrchr(path, '/');
        printf("{\"model\":\"%s\",\"threads\":%ld,\"prompt\":%ld,\"gen\":%ld,"
               "\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f}\n",
               base ? base + 1 : path, threads, p, n, (double)p / t_pp,
               n ? (double)n / t_tg : 0.0);
    }
    md_ctx_destroy(s.ctx);
    md_kv_destroy(s.kv);
    free(s.logits);
    free(table);
    kn_pool_destroy(pool);
    md_destroy(m);
    return rc;
}
