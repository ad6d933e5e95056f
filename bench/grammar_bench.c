/*
 * grammar_bench.c - make bench-grammar: the time grammar masks cost per
 * generated token, vitamin beside llama.cpp, on the Llama-3 (128,256) and
 * Qwen2 (151,936) vocabularies, for a JSON Schema of nested objects
 * (bench/grammar_schema.json, through vitamin's converter) and for
 * llama.cpp's json.gbnf.
 *
 * For each vocabulary a random-weight model is made (vitamin gen-model) and
 * node-llama-cpp generates with it under each grammar and without one
 * (bench/grammar_llama.mjs, the same run): llama.cpp's cost per token is the
 * difference. vitamin then computes its masks along exactly the token
 * sequences llama.cpp generated (each token also checked to be in vitamin's
 * mask): "cold" with a freshly compiled grammar (the per-context cache
 * filling as it goes, as a first request would), "warm" the same sequences
 * again (a later request with the same grammar). A seeded random walk over
 * vitamin's own masks (uniform among the allowed tokens, fresh grammar)
 * shows the cost on varied states too. Times are CPU time (this thread's for
 * vitamin, node's process time for llama.cpp), not wall time, so that other
 * processes on the machine do not count.
 *
 * usage: grammar_bench --vitamin BIN --node-dir DIR [--shared DIR] [--runs N] [--tokens N]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "sample/grammar.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

/* This thread's CPU time: the machine is shared, and a preempted mask would
 * otherwise count the other processes' time. */
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        *len = (size_t)n;
    }
    return b;
}

typedef struct {
    double us_per_token;
    long tokens;
    long refused; /* tokens llama.cpp chose that vitamin's mask did not allow */
} vt_result;

/* Masks (and accepts) along the sequences; seqs is a JSON array of arrays. */
static vt_result replay(smp_grammar *g, json_t *seqs, int32_t n_vocab, uint64_t *mask)
{
    vt_result r = {0};
    double t = 0;
    size_t i;
    json_t *s;
    json_array_foreach(seqs, i, s) {
        smp_grammar_state *st = NULL;
        if (smp_grammar_state_create(g, &st))
            break;
        size_t k;
        json_t *tok;
        json_array_foreach(s, k, tok) {
            int32_t id = (int32_t)json_integer_value(tok);
            if (id < 0 || id >= n_vocab)
                continue;
            double t0 = now();
            int32_t n = smp_grammar_mask(st, mask);
            double t1 = now();
            bool in = n > 0 && (mask[id >> 6] >> (id & 63) & 1);
            if (!in) {
                if (smp_grammar_accepts_eos(st))
                    break; /* an end token where the grammar is complete */
                r.refused++;
                break;
            }
            double t2 = now();
            smp_grammar_accept_token(st, id);
            t += (t1 - t0) + (now() - t2);
            r.tokens++;
        }
        smp_grammar_state_destroy(st);
    }
    r.us_per_token = r.tokens ? t / (double)r.tokens * 1e6 : 0;
    return r;
}

/* A seeded walk: uniform among the allowed tokens, ends where EOS is
 * allowed with probability 1/4 or after max tokens. */
static vt_result walk(smp_grammar *g, int runs, int max, int32_t n_vocab, uint64_t *mask)
{
    vt_result r = {0};
    int32_t *allowed = malloc(sizeof *allowed * (size_t)n_vocab);
    vt_rng rng = {.s = 42};
    double t = 0;
    for (int w = 0; w < runs; w++) {
        smp_grammar_state *st = NULL;
        if (smp_grammar_state_create(g, &st))
            break;
        for (int k = 0; k < max; k++) {
            double t0 = now();
            int32_t n = smp_grammar_mask(st, mask);
            t += now() - t0;
            if (n <= 0 || (smp_grammar_accepts_eos(st) && vt_rng_next(&rng) % 4 == 0))
                break;
            int32_t m = 0;
            for (int32_t id = 0; id < n_vocab; id++)
                if (mask[id >> 6] >> (id & 63) & 1)
                    allowed[m++] = id;
            int32_t id = allowed[vt_rng_next(&rng) % (uint64_t)m];
            double t2 = now();
            smp_grammar_accept_token(st, id);
            t += now() - t2;
            r.tokens++;
        }
        smp_grammar_state_destroy(st);
    }
    free(allowed);
    r.us_per_token = r.tokens ? t / (double)r.tokens * 1e6 : 0;
    return r;
}

int main(int argc, char **argv)
{
    const char *vitamin = "build/vitamin", *node_dir = ".ci/node", *shared = "../shared";
    int runs = 5, tokens = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--vitamin"))
            vitamin = argv[i + 1];
        else if (!strcmp(argv[i], "--node-dir"))
            node_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--shared"))
            shared = argv[i + 1];
        else if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens"))
            tokens = atoi(argv[i + 1]);
    }
    const char *vocabs[2][2] = {{"Llama-3", "ggml-vocab-llama-bpe.gguf"},
                                {"Qwen2", "ggml-vocab-qwen2.gguf"}};
    char json_gbnf[1024], schema_gbnf[] = ".bench/grammar-schema.gbnf";
    snprintf(json_gbnf, sizeof json_gbnf, "%s/node_modules/node-llama-cpp/llama/grammars/json.gbnf",
             node_dir);
    if (system("mkdir -p .bench"))
        return 1;
    size_t sl;
    char *schema = slurp("bench/grammar_schema.json", &sl), *gb = NULL;
    if (!schema || smp_json_schema_to_gbnf(schema, sl, &gb)) {
        fprintf(stderr, "grammar_bench: bench/grammar_schema.json: %s\n",
                schema ? vt_last_error() : "cannot read");
        return 1;
    }
    FILE *f = fopen(schema_gbnf, "w");
    if (!f)
        return 1;
    fputs(gb, f);
    fclose(f);
    free(gb);
    printf("grammar masks, microseconds per generated token (mask + advance); %d runs of up to "
           "%d tokens\n", runs, tokens);
    printf("%-8s %-12s %10s %10s %10s %12s %8s %8s %s\n", "vocab", "grammar", "vt cold", "vt warm",
           "vt walk", "llama.cpp", "ratio", "tokens", "notes");
    int rc = 0;
    for (int v = 0; v < 2; v++) {
        char vocab[1024], model[256], cmd[4096];
        snprintf(vocab, sizeof vocab, "%s/fixtures/vocab/%s", shared, vocabs[v][1]);
        snprintf(model, sizeof model, ".bench/grammar-%s.gguf", vocabs[v][0]);
        snprintf(cmd, sizeof cmd, "%s gen-model --arch llama --vocab %s -o %s --dim 32 --layers 1 "
                 "--heads 2 --ff 64 --tied > /dev/null", vitamin, vocab, model);
        if (system(cmd)) {
            fprintf(stderr, "grammar_bench: `%s` failed\n", cmd);
            return 1;
        }
        gguf_file *gf = NULL;
        tok_tokenizer *tok = NULL;
        if (gguf_open(vocab, &gf) || tok_load(gf, &tok)) {
            fprintf(stderr, "grammar_bench: %s: %s\n", vocab, vt_last_error());
            return 1;
        }
        int32_t n = tok_n_vocab(tok);
        const char **pieces = malloc(sizeof *pieces * (size_t)n);
        size_t *lens = malloc(sizeof *lens * (size_t)n);
        for (int32_t i = 0; i < n; i++)
            pieces[i] = tok_piece(tok, i, false, &lens[i]);
        smp_grammar_vocab *gv = NULL;
        double tv = now();
        if (smp_grammar_vocab_create(n, pieces, lens, &gv)) {
            fprintf(stderr, "grammar_bench: %s\n", vt_last_error());
            return 1;
        }
        tv = now() - tv;
        uint64_t *mask = malloc(((size_t)n + 63) / 64 * 8);
        const char *gnames[2] = {"nested-json", "json.gbnf"};
        const char *gpaths[2] = {schema_gbnf, json_gbnf};
        for (int gi = 0; gi < 2; gi++) {
            char out[256];
            snprintf(out, sizeof out, ".bench/grammar-%s-%d.json", vocabs[v][0], gi);
            snprintf(cmd, sizeof cmd, "VT_NODE_DIR='%s' node bench/grammar_llama.mjs %s %s %d %d "
                     "%s > %s", node_dir, model, gpaths[gi], runs, tokens,
                     gi == 0 ? "--schema bench/grammar_schema.json" : "", out);
            if (system(cmd)) {
                fprintf(stderr, "grammar_bench: `%s` failed\n", cmd);
                rc = 1;
                continue;
            }
            json_error_t je;
            json_t *res = json_load_file(out, 0, &je);
            size_t gl;
            char *gtext = slurp(gpaths[gi], &gl);
            smp_grammar *g = NULL;
            double tc = now();
            if (!res || !gtext || smp_grammar_compile(SMP_GRAMMAR_GBNF, gtext, gl, gv, &g)) {
                fprintf(stderr, "grammar_bench: %s: %s\n", out, res ? vt_last_error() : je.text);
                rc = 1;
                free(gtext);
                json_decref(res);
                continue;
            }
            tc = now() - tc;
            json_t *seqs = json_object_get(res, "seqs");
            vt_result cold = replay(g, seqs, n, mask);
            vt_result warm = replay(g, seqs, n, mask);
            smp_grammar_unref(g);
            smp_grammar_compile(SMP_GRAMMAR_GBNF, gtext, gl, gv, &g);
            vt_result wk = walk(g, runs * 4, tokens, n, mask);
            uint32_t n_ctx;
            uint64_t n_unc;
            smp_grammar_cache_stats(g, &n_ctx, &n_unc);
            smp_grammar_unref(g);
            json_t *w = json_object_get(res, "with"), *wo = json_object_get(res, "without");
            double lw = (double)json_integer_value(json_object_get(w, "ns")) /
                        (double)VT_MAX(1, json_integer_value(json_object_get(w, "tokens")));
            double lo = (double)json_integer_value(json_object_get(wo, "ns")) /
                        (double)VT_MAX(1, json_integer_value(json_object_get(wo, "tokens")));
            double llama_us = (lw - lo) / 1e3;
            printf("%-8s %-12s %10.1f %10.1f %10.1f %12.1f %7.0fx %8ld compile %.1f ms, vocab "
                   "%.0f ms, %u contexts; llama.cpp %.0f us/token with, %.0f without%s\n",
                   vocabs[v][0], gnames[gi], cold.us_per_token, warm.us_per_token,
                   wk.us_per_token, llama_us,
                   cold.us_per_token > 0 ? llama_us / cold.us_per_token : 0, cold.tokens,
                   tc * 1e3, tv * 1e3, n_ctx, lw / 1e3, lo / 1e3,
                   cold.refused ? " (TOKENS REFUSED)" : "");
            json_t *own = json_object_get(res, "own");
            if (own) {
                double lown = (double)json_integer_value(json_object_get(own, "ns")) /
                              (double)VT_MAX(1, json_integer_value(json_object_get(own, "tokens")));
                printf("%-8s %-12s %10s %10s %10s %12.1f %8s %8s llama.cpp's own schema "
                       "converter (createGrammarForJsonSchema)\n", vocabs[v][0], "", "", "", "",
                       (lown - lo) / 1e3, "", "");
            }
            if (cold.refused)
                rc = 1;
            free(gtext);
            json_decref(res);
        }
        free(mask);
        free(pieces);
        free(lens);
        smp_grammar_vocab_destroy(gv);
        tok_destroy(tok);
        gguf_close(gf);
        fflush(stdout);
    }
    printf("ratio = llama.cpp / vitamin cold. llama.cpp: per-token CPU time with the grammar minus "
           "without it (node-llama-cpp, the same model, 1 thread).\n");
    free(schema);
    return rc;
}
