/*
 * cmd_bench.c - `vitamin bench`: prefill and decode speed, measured the way
 * ../shared/oracle/bench.py measures llama.cpp (and llama-bench does): after
 * a warm-up run, one prompt of P random tokens in one forward pass, then N
 * single-token decode steps on random tokens, no sampling in the timed loop.
 * Prints one JSON line with prefill_tok_s and decode_tok_s. With --parallel
 * N (> 1): N sequences in one KV store, each with its own block table, each
 * prefilled with its own random prompt (one forward pass per sequence, in
 * chunks of max(512, N) tokens as bench.py does), then -n steps that each
 * decode one token of every sequence in one flattened batch with logits for
 * all of them; prints prefill_tok_s (all prompts) and batched_decode_tok_s
 * (aggregate). The multi-request engine will take this over; until then it
 * drives md_forward directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model/model.h"
#include "util/util.h"

static void help(FILE *out)
{
    fprintf(out, "usage: vitamin bench -m MODEL.gguf [-t N] [-p 512] [-n 128] [--parallel N]\n\n"
                 "Measures prompt processing (one batch of -p random tokens) and generation\n"
                 "(-n single-token steps after it), after one warm-up run. Prints JSON:\n"
                 "{\"model\":..,\"threads\":..,\"prompt\":..,\"gen\":..,\"prefill_tok_s\":..,"
                 "\"decode_tok_s\":..}\n"
                 "With --parallel N: N sequences, each prefilled with its own -p tokens, then\n"
                 "-n steps decoding one token of every sequence in one batch; prints\n"
                 "\"parallel\":N, \"prefill_tok_s\" and \"batched_decode_tok_s\" (aggregate).\n\n"
                 "options:\n"
                 "  -m, --model FILE   GGUF model file (required)\n"
                 "  -t, --threads N    threads (default: all cores)\n"
                 "  -p, --prompt N     prompt tokens (default 512)\n"
                 "  -n, --gen N        generated tokens (default 128)\n"
                 "      --parallel N   sequences decoded together (default 1)\n"
                 "  -h, --help         this help\n");
}

typedef struct {
    const md_model *m;
    md_ctx *ctx;
    md_kv *kv;
    md_seq seq;
    float *logits; /* n_vocab floats per sequence */
    vt_rng rng;
    int par;      /* --parallel */
    md_seq *seqs; /* [par] block tables, for par > 1 */
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

/* One run of --parallel: every sequence prefilled on its own (chunks of
 * max(512, par) tokens), then n steps of one token per sequence. */
static vt_err run_parallel(bench_state *s, int p, int n, double *t_pp, double *t_tg)
{
    const int par = s->par, chunk = par > 512 ? par : 512;
    const int cap = chunk > par ? chunk : par;
    int32_t *toks = malloc(sizeof *toks * (size_t)cap), *pos = malloc(sizeof *pos * (size_t)cap);
    int32_t *seq = malloc(sizeof *seq * (size_t)cap);
    bool *want = malloc(sizeof *want * (size_t)cap);
    vt_err e = VT_OK;
    if (!toks || !pos || !seq || !want) {
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
        goto done;
    }
    double t0 = vt_now();
    for (int sq = 0; sq < par && !e; sq++) {
        for (int c = 0; c < p && !e; c += chunk) {
            int len = p - c < chunk ? p - c : chunk;
            for (int i = 0; i < len; i++) {
                toks[i] = rand_token(s);
                pos[i] = c + i;
                seq[i] = sq;
            }
            md_batch b = {.n_tokens = len, .tokens = toks, .pos = pos, .seq = seq,
                          .n_seqs = par, .seqs = s->seqs}; /* logits of the last token */
            e = md_forward(s->ctx, s->kv, &b, s->logits);
        }
    }
    *t_pp = vt_now() - t0;
    t0 = vt_now();
    for (int g = 0; g < n && !e; g++) {
        for (int sq = 0; sq < par; sq++) {
            toks[sq] = rand_token(s);
            pos[sq] = p + g;
            seq[sq] = sq;
            want[sq] = true;
        }
        md_batch d = {.n_tokens = par, .tokens = toks, .pos = pos, .seq = seq, .logits = want,
                      .n_seqs = par, .seqs = s->seqs};
        e = md_forward(s->ctx, s->kv, &d, s->logits);
    }
    *t_tg = vt_now() - t0;
done:
    free(toks);
    free(pos);
    free(seq);
    free(want);
    return e;
}

int cmd_bench(int argc, char **argv)
{
    const char *path = NULL;
    long threads = cli_default_threads(), p = 512, n = 128, par = 1;
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
        else if (!strcmp(a, "--parallel") && cli_parse_int(a, v, 1, 4096, &par))
            continue;
        else {
            if (strcmp(a, "-t") && strcmp(a, "-p") && strcmp(a, "-n") && strcmp(a, "--threads") &&
                strcmp(a, "--prompt") && strcmp(a, "--gen") && strcmp(a, "--parallel"))
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
    bench_state s = {.rng = {1234}, .par = (int)par};
    int32_t *table = NULL;
    const int bs = 16;
    const int64_t nb = (p + n + bs - 1) / bs; /* blocks per sequence */
    vt_err e = md_load(path, &m);
    if (!e && !(pool = kn_pool_create((int)threads)))
        e = VT_ERR_NOMEM;
    if (!e && !(table = malloc(sizeof *table * (size_t)(nb * par))))
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
    if (!e && !(s.seqs = malloc(sizeof *s.seqs * (size_t)par)))
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
    if (!e) {
        for (int64_t i = 0; i < nb * par; i++) /* sequence k owns blocks k, k + par, ... */
            table[i] = (int32_t)((i % nb) * par + i / nb);
        for (long k = 0; k < par; k++)
            s.seqs[k] = (md_seq){table + k * nb, nb};
        s.m = m;
        s.seq = s.seqs[0];
        if (!(s.logits = malloc(sizeof(float) * (size_t)m->hp.n_vocab * (size_t)par)))
            e = vt_fail(VT_ERR_NOMEM, "out of memory");
    }
    if (!e)
        e = md_kv_create(m, nb * par, bs, &s.kv);
    if (!e)
        e = md_ctx_create(m, pool, &s.ctx);
    double t_pp = 0, t_tg = 0;
    for (int run = 0; run < 2 && !e; run++) /* warm-up, then measured */
        e = par > 1 ? run_parallel(&s, (int)p, (int)n, &t_pp, &t_tg)
                    : run_once(&s, (int)p, (int)n, &t_pp, &t_tg);
    int rc = 0;
    if (e) {
        fprintf(stderr, "vitamin bench: %s\n", vt_last_error());
        rc = 1;
    } else {
        const char *base = strrchr(path, '/');
        if (par > 1)
            printf("{\"model\":\"%s\",\"threads\":%ld,\"prompt\":%ld,\"gen\":%ld,"
                   "\"parallel\":%ld,\"prefill_tok_s\":%.2f,\"batched_decode_tok_s\":%.2f}\n",
                   base ? base + 1 : path, threads, p, n, par, (double)(p * par) / t_pp,
                   n ? (double)(n * par) / t_tg : 0.0);
        else
            printf("{\"model\":\"%s\",\"threads\":%ld,\"prompt\":%ld,\"gen\":%ld,"
                   "\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f}\n",
                   base ? base + 1 : path, threads, p, n, (double)p / t_pp,
                   n ? (double)n / t_tg : 0.0);
    }
    md_ctx_destroy(s.ctx);
    md_kv_destroy(s.kv);
    free(s.logits);
    free(s.seqs);
    free(table);
    kn_pool_destroy(pool);
    md_destroy(m);
    return rc;
}
