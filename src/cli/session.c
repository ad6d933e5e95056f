/*
 * session.c - what `vitamin run` and `vitamin chat` share: the sampling
 * options (parsed into vt_request_params, with llama.cpp's defaults),
 * opening a model, its tokenizer, a thread pool and the engine in one step
 * with one-line errors, and streaming one request's text.
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
    c->p = vt_request_params_default();
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

int cli_engine_open(const char *cmd, const char *path, long threads, const vt_engine_config *cfg,
                    md_model **m, tok_tokenizer **tok, kn_pool **pool, vt_engine **e)
{
    *m = NULL;
    *tok = NULL;
    *pool = NULL;
    *e = NULL;
    vt_err err = md_load(path, m);
    if (!err)
        err = tok_load((*m)->file, tok);
    if (!err && !(*pool = kn_pool_create((int)threads)))
        err = vt_fail(VT_ERR_NOMEM, "cannot start %ld threads", threads);
    if (!err && !(*e = eng_create(*m, *tok, *pool, cfg)))
        err = VT_ERR_INVALID;
    if (!err)
        return 0;
    fprintf(stderr, "vitamin %s: %s: %s\n", cmd, path, vt_last_error());
    cli_engine_close(*m, *tok, *pool, *e);
    *m = NULL;
    *tok = NULL;
    *pool = NULL;
    *e = NULL;
    return 1;
}

void cli_engine_close(md_model *m, tok_tokenizer *tok, kn_pool *pool, vt_engine *e)
{
    vt_engine_destroy(e);
    kn_pool_destroy(pool);
    tok_destroy(tok);
    md_destroy(m);
}

vt_finish cli_stream(const char *cmd, vt_request *r, bool (*on_text)(void *, const char *, size_t),
                     void *user, volatile sig_atomic_t *interrupted, vt_usage *usage)
{
    vt_finish finish = VT_FINISH_NONE;
    bool failed = false, aborted = false;
    vt_event ev;
    int rc;
    memset(usage, 0, sizeof *usage);
    while ((rc = vt_request_next(r, &ev, 100)) >= 0) {
        if (rc == 0) {
            if (interrupted && *interrupted && !aborted) {
                vt_request_abort(r);
                aborted = true;
            }
            continue;
        }
        if ((ev.kind == VT_EV_TOKEN || ev.kind == VT_EV_FINISH) && ev.index == 0 && ev.len &&
            !aborted && !on_text(user, ev.text, ev.len)) {
            vt_request_abort(r);
            aborted = true;
        }
        if (ev.kind == VT_EV_FINISH && ev.index == 0)
            finish = ev.finish;
        if (ev.kind == VT_EV_ERROR) {
            fprintf(stderr, "vitamin %s: %.*s\n", cmd, (int)ev.len, ev.text);
            failed = true;
        }
        if (ev.kind == VT_EV_DONE)
            *usage = ev.usage;
        if (interrupted && *interrupted && !aborted) {
            vt_request_abort(r);
            aborted = true;
        }
    }
    return failed ? VT_FINISH_NONE : finish;
}

void cli_print_speeds(const vt_usage *u)
{
    int64_t computed = u->prompt_tokens - u->cached_tokens;
    double tp = u->time_to_first_token, tg = u->total_time - u->time_to_first_token;
    fprintf(stderr, "prompt: %lld tokens", (long long)u->prompt_tokens);
    if (u->cached_tokens)
        fprintf(stderr, " (%lld from the cache)", (long long)u->cached_tokens);
    fprintf(stderr, ", %.2f tok/s; generated: %lld tokens, %.2f tok/s\n",
            tp > 0 ? (double)computed / tp : 0.0, (long long)u->completion_tokens,
            tg > 0 && u->completion_tokens > 1 ? (double)(u->completion_tokens - 1) / tg : 0.0);
}

/* ---- vitamin run ---- */

