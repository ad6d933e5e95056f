/*
 * cmd_run.c - `vitamin run`: generates text from a prompt. The prompt is
 * tokenized with the model's BOS rule (special-token text parsed, as
 * llama.cpp does) and submitted to the engine as one request, and the
 * continuation is streamed to stdout piece by piece (never half a UTF-8
 * character; nothing else is written to stdout, and no newline is added
 * unless stdout is a terminal) until an end-of-generation token, a stop
 * string, -n tokens or the end of the context. Speeds go to stderr, on a
 * line of their own. --grammar, --json-schema and --regex constrain the
 * output (the engine's grammar-constrained sampling).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

static void help(FILE *out)
{
    fprintf(out,
            "usage: vitamin run -m MODEL.gguf -p TEXT [options]\n\n"
            "Continues TEXT with the model and streams the generated text to stdout; prints the\n"
            "prompt and generation speeds to stderr at the end. The prompt gets the model's\n"
            "BOS token if the model asks for one, and special-token text in it (such as\n"
            "<|im_start|>) is recognised.\n\n"
            "options:\n"
            "  -m, --model FILE       GGUF model file (required)\n"
            "  -p, --prompt TEXT      the prompt; '-' reads standard input (required)\n"
            "  -t, --threads N        threads (default: all cores)\n"
            "  --ctx N                context size in tokens (default: the model's, at most %d)\n"
            "  --no-bos               never add a BOS token\n"
            "  --grammar FILE         the output follows this GBNF grammar (llama.cpp's syntax)\n"
            "  --json-schema FILE     the output is JSON valid under this JSON Schema\n"
            "  --regex RE             the output matches this regular expression\n"
            "  -v, --verbose          print the prompt's token count and the seed to stderr\n"
            "  -h, --help             this help\n"
            "%s"
            "\n-n defaults to 256 here.\n",
            4096, cli_sampling_help);
}

static char *read_stdin(size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                break;
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) {
            if (ferror(stdin))
                break;
            *len = n;
            return buf;
        }
    }
    free(buf);
    return NULL;
}

/* A whole file as a NUL-terminated string (caller frees); NULL after
 * printing why. */
static char *read_text_file(const char *opt, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "vitamin run: %s: cannot open '%s'\n", opt, path);
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap < (64u << 20) ? realloc(buf, cap *= 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    bool bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        fprintf(stderr, "vitamin run: %s: cannot read '%s'\n", opt, path);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

static bool print_piece(void *user, const char *text, size_t len)
{
    (void)user;
    if (len) {
        if (fwrite(text, 1, len, stdout) != len)
            return false; /* stdout closed: stop generating */
        fflush(stdout);
    }
    return true;
}

/* Tokenizes the prompt: BOS by the model's rule unless no_bos, specials
 * parsed. Caller frees *ids. */
static vt_err encode_prompt(const tok_tokenizer *tok, const char *text, size_t len, bool no_bos,
                            int32_t **ids, size_t *n)
{
    int32_t *body;
    size_t nb;
    vt_err e = tok_encode(tok, text, len, false, true, &body, &nb);
    if (e)
        return e;
    bool bos = !no_bos && tok_add_bos(tok) && tok_bos(tok) != TOK_NULL;
    *ids = malloc(sizeof **ids * (nb + 1));
    if (!*ids) {
        free(body);
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    }
    if (bos)
        (*ids)[0] = tok_bos(tok);
    if (nb)
        memcpy(*ids + bos, body, sizeof *body * nb);
    *n = nb + bos;
    free(body);
    return VT_OK;
}

int cmd_run(int argc, char **argv)
{
    const char *path = NULL, *prompt = NULL;
    long threads = cli_default_threads(), n_ctx = 0;
    bool no_bos = false, verbose = false;
    const char *grammar_opt = NULL, *grammar_arg = NULL;
    vt_grammar_kind grammar_kind = VT_GRAMMAR_NONE;
    cli_sampling smp;
    cli_sampling_init(&smp, 256);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int used = cli_sampling_option(&smp, argc, argv, i);
        if (used < 0)
            return 2;
        if (used) {
            i += used - 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return 0;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && cli_need_value(argc, argv, i)) {
            path = argv[++i];
        } else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && cli_need_value(argc, argv, i)) {
            prompt = argv[++i];
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && cli_need_value(argc, argv, i)) {
            if (!cli_parse_int(a, argv[++i], 1, 1024, &threads))
                return 2;
        } else if (!strcmp(a, "--ctx") && cli_need_value(argc, argv, i)) {
            if (!cli_parse_int(a, argv[++i], 1, 1L << 24, &n_ctx))
                return 2;
        } else if ((!strcmp(a, "--grammar") || !strcmp(a, "--json-schema") ||
                    !strcmp(a, "--regex")) &&
                   cli_need_value(argc, argv, i)) {
            if (grammar_opt) {
                fprintf(stderr, "vitamin run: %s and %s: one grammar at a time\n", grammar_opt, a);
                return 2;
            }
            grammar_opt = a;
            grammar_arg = argv[++i];
            grammar_kind = !strcmp(a, "--grammar")       ? VT_GRAMMAR_GBNF
                           : !strcmp(a, "--json-schema") ? VT_GRAMMAR_JSON_SCHEMA
                                                         : VT_GRAMMAR_REGEX;
        } else {
            bool known = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-p") ||
                         !strcmp(a, "--prompt") || !strcmp(a, "-t") || !strcmp(a, "--threads") ||
                         !strcmp(a, "--ctx") || !strcmp(a, "--grammar") ||
                         !strcmp(a, "--json-schema") || !strcmp(a, "--regex");
            if (!known) /* a known one without its value has been reported */
                fprintf(stderr, "vitamin run: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!path || !prompt) {
        fprintf(stderr, "vitamin run: %s is required (see --help)\n", !path ? "-m MODEL" : "-p TEXT");
        return 2;
    }
    char *grammar_text = NULL;
    if (grammar_kind == VT_GRAMMAR_GBNF || grammar_kind == VT_GRAMMAR_JSON_SCHEMA) {
        if (!(grammar_text = read_text_file(grammar_opt, grammar_arg)))
            return 1;
        grammar_arg = grammar_text;
    }
    smp.p.grammar_kind = grammar_kind;
    smp.p.grammar = grammar_arg;
    char *text = NULL;
    size_t text_len = strlen(prompt);
    if (!strcmp(prompt, "-")) {
        if (!(text = read_stdin(&text_len))) {
            fprintf(stderr, "vitamin run: cannot read the prompt from stdin\n");
            free(grammar_text);
            return 1;
        }
        prompt = text;
    }

    md_model *m;
    tok_tokenizer *tok;
    kn_pool *pool;
    vt_engine *eng;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = 1;
    vt_engine_config cfg = {.kv_tokens = n_ctx, .max_seq_len = n_ctx};
    if (cli_engine_open("run", path, threads, &cfg, &m, &tok, &pool, &eng)) {
        free(text);
        free(grammar_text);
        return 1;
    }
    vt_err e = encode_prompt(tok, prompt, text_len, no_bos, &ids, &n_ids);
    if (!e && n_ids == 0)
        e = vt_fail(VT_ERR_INVALID, "the prompt is empty");
    vt_request *r = NULL;
    if (smp.p.seed == SMP_SEED_RANDOM) /* drawn here, so that -v can tell it */
        smp.p.seed = ((uint64_t)(vt_now() * 1e6) ^ (uint64_t)getpid() << 20) & 0x7fffffff;
    if (!e) {
        smp.p.prompt = ids;
        smp.p.n_prompt = (int64_t)n_ids;
        e = vt_submit(eng, &smp.p, &r);
    }
    if (e) {
        fprintf(stderr, "vitamin run: %s\n", vt_last_error());
    } else {
        vt_usage u;
        vt_finish f = cli_stream("run", r, print_piece, NULL, NULL, &u);
        if (isatty(STDOUT_FILENO) && u.completion_tokens)
            putchar('\n');
        fflush(stdout);
        bool full = f == VT_FINISH_LENGTH &&
                    u.prompt_tokens + u.completion_tokens >= vt_engine_max_seq_len(eng);
        if (f != VT_FINISH_NONE) {
            if (verbose)
                fprintf(stderr, "prompt: %lld tokens; seed: %llu; finish: %s%s\n",
                        (long long)n_ids, (unsigned long long)smp.p.seed, vt_finish_reason(f),
                        full ? " (context full)" : "");
            else if (full)
                fprintf(stderr,
                        "vitamin run: stopped: the context of %lld tokens is full (--ctx)\n",
                        (long long)vt_engine_max_seq_len(eng));
            cli_print_speeds(&u);
            rc = 0;
        }
    }
    vt_request_free(r);
    free(ids);
    free(text);
    free(grammar_text);
    cli_engine_close(m, tok, pool, eng);
    return rc;
}
