/*
 * session.c - what `vitamin run` and `vitamin chat` share: the sampling
 * options (parsed into smp_params, with llama.cpp's defaults) and opening a
 * model, its tokenizer, a thread pool and a generation session in one step,
 * with one-line errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "tokenizer/tokenizer.h"

/* llama.cpp's defaults for its command-line tools. */
void cli_sampling_init(cli_sampling *c, int32_t max_tokens)
{
    memset(c, 0, sizeof *c);
    c->p = smp_params_default();
    c->p.temperature = 0.8f;
    c->p.top_k = 40;
    c->p.top_p = 0.95f;
    c->p.min_p = 0.05f;
    c->p.max_tokens = max_tokens;
    c->p.stop = c->stops;
}

const char *const cli_sampling_help =
    "sampling:\n"
    "  -n, --n-predict N      tokens to generate at most (-1: until the context is full)\n"
    "  --temp T               temperature (default 0.8; 0 = greedy, the argmax)\n"
    "  --top-k K              keep the K most likely tokens (default 40; 0 = off)\n"
    "  --top-p P              keep the most likely tokens adding up to P (default 0.95)\n"
    "  --min-p P              drop tokens less likely than P times the best (default 0.05)\n"
    "  --repeat-penalty F     penalise tokens of the last --repeat-last-n (default 1 = off)\n"
    "  --repeat-last-n N      the penalty window (default 64; -1 = everything)\n"
    "  --presence-penalty F   OpenAI-style presence penalty (default 0)\n"
    "  --frequency-penalty F  OpenAI-style frequency penalty (default 0)\n"
    "  --seed S               random seed (default: a fresh one each run)\n"
    "  --stop STR             stop before STR (repeatable, up to 16)\n"
    "  --ignore-eos           do not stop at end-of-generation tokens\n";

/* If argv[i] is a sampling option, parses it (and its value) and returns the
 * number of arguments used; 0 if it is not one; -1 after printing an error. */
int cli_sampling_option(cli_sampling *c, int argc, char **argv, int i)
{
    const char *a = argv[i];
    if (!strcmp(a, "--ignore-eos")) {
        c->p.ignore_eos = true;
        return 1;
    }
    static const char *const with_value[] = {
        "-n", "--n-predict", "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
        "--repeat-last-n", "--presence-penalty", "--frequency-penalty", "--seed", "--stop"};
    size_t k = 0;
    while (k < sizeof with_value / sizeof with_value[0] && strcmp(a, with_value[k]))
        k++;
    if (k == sizeof with_value / sizeof with_value[0])
        return 0;
    if (!cli_need_value(argc, argv, i))
        return -1;
    const char *v = argv[i + 1];
    long n;
    double f;
    if (!strcmp(a, "--stop")) {
        if (c->p.n_stop == SMP_MAX_STOP) {
            fprintf(stderr, "vitamin: at most %d --stop strings\n", SMP_MAX_STOP);
            return -1;
        }
        c->stops[c->p.n_stop++] = v;
    } else if (k <= 1 || !strcmp(a, "--top-k") || !strcmp(a, "--repeat-last-n") ||
               !strcmp(a, "--seed")) {
        long lo = !strcmp(a, "--top-k") ? 0 : -1;
        if (!cli_parse_int(a, v, lo, k <= 1 || !strcmp(a, "--seed") ? 0x7fffffffL : 1L << 30, &n))
            return -1;
        if (k <= 1)
            c->p.max_tokens = (int32_t)n;
        else if (!strcmp(a, "--top-k"))
            c->p.top_k = (int32_t)n;
        else if (!strcmp(a, "--repeat-last-n"))
            c->p.penalty_last_n = (int32_t)n;
        else
            c->p.seed = n < 0 ? SMP_SEED_RANDOM : (uint64_t)n;
    } else {
        if (!cli_parse_float(a, v, &f))
            return -1;
        if (!strcmp(a, "--temp"))
            c->p.temperature = (float)f;
        else if (!strcmp(a, "--top-p"))
            c->p.top_p = (float)f;
        else if (!strcmp(a, "--min-p"))
            c->p.min_p = (float)f;
        else if (!strcmp(a, "--repeat-penalty"))
            c->p.repetition_penalty = (float)f;
        else if (!strcmp(a, "--presence-penalty"))
            c->p.presence_penalty = (float)f;
        else
            c->p.frequency_penalty = (float)f;
    }
    return 2;
}

/* Loads the model and its tokenizer and makes a session; on failure prints
 * one line naming cmd and path, frees what it made and returns 1. */
int cli_session_open(const char *cmd, const char *path, long threads, long n_ctx, md_model **m,
                     tok_tokenizer **tok, kn_pool **pool, eng_session **s)
{
    *m = NULL;
    *tok = NULL;
    *pool = NULL;
    *s = NULL;
    vt_err e = md_load(path, m);
    if (!e)
        e = tok_load((*m)->file, tok);
    if (!e && !(*pool = kn_pool_create((int)threads)))
        e = vt_fail(VT_ERR_NOMEM, "cannot start %ld threads", threads);
    if (!e) {
        eng_options o = {.n_ctx = n_ctx, .pool = *pool};
        e = eng_session_create(*m, *tok, &o, s);
    }
    if (!e)
        return 0;
    fprintf(stderr, "vitamin %s: %s: %s\n", cmd, path, vt_last_error());
    cli_session_close(*m, *tok, *pool, *s);
    *m = NULL;
    *tok = NULL;
    *pool = NULL;
    *s = NULL;
    return 1;
}

void cli_session_close(md_model *m, tok_tokenizer *tok, kn_pool *pool, eng_session *s)
{
    eng_session_destroy(s);
    kn_pool_destroy(pool);
    tok_destroy(tok);
    md_destroy(m);
}

/* ---- vitamin run ---- */

