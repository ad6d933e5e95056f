/*
 * cmd_chat.c - `vitamin chat`: an interactive multi-turn chat. Each user
 * line joins the conversation, which is rendered with the model's chat
 * template (tokenizer.chat_template, or --template FILE) with
 * add_generation_prompt and tokenized (special-token text parsed, BOS added
 * by the model's rule unless the template wrote it), and each turn is one
 * request to the engine. The engine's prefix cache keeps the KV blocks of
 * the conversation so far: only the tokens after the longest cached run of
 * full blocks are computed (normally just the new turn; a template that
 * rewrites earlier turns costs more). The reply
 * streams to stdout and is appended to the conversation as the assistant's
 * message. A model without a chat template is an error naming --template;
 * there is no silent fallback format.
 *
 * Long-term memory (memory/, on unless --no-memory): before each turn the
 * best memories of the user (--memory-user, "default" - the same one user
 * as a `vitamin serve` without keys) are recalled into the conversation
 * (mem_recall_messages: the system message on the first turn, in front of
 * the new message later, where they stay so that the prefix cache keeps
 * working), and after the reply the user's line is stored as a message
 * memory of this conversation.
 *
 * Input: one message per line from stdin; a "> " marker when stdin is a
 * terminal; "/exit", "/quit" or end of input quits, "/reset" starts over.
 * On a terminal, Ctrl-C during a reply ends the reply, at the prompt quits.
 * Replies end with a newline. With -v each turn reports on stderr how many
 * tokens were reused from the cache and how many were processed.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat/chat.h"
#include "cli.h"
#include "engine/engine.h"
#include "memory/memory.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

static void help(FILE *out)
{
    fprintf(out,
            "usage: vitamin chat -m MODEL.gguf [--system TEXT] [options]\n\n"
            "An interactive chat with the model, formatted by its chat template. Type a message\n"
            "per line; /reset starts a new conversation, /exit (or end of input) quits. Works\n"
            "with piped input too (one message per line; replies end with a newline).\n\n"
            "options:\n"
            "  -m, --model FILE       GGUF model file (required)\n"
            "  --system TEXT          a system message opening the conversation\n"
            "  --template FILE        a Jinja chat template to use instead of the model's\n"
            "                         (required when the model has none)\n"
            "  -t, --threads N        threads (default: all cores)\n"
            "  --ctx N                context size in tokens (default: the model's, at most %d)\n"
            "  -v, --verbose          per turn on stderr: tokens reused from the cache, tokens\n"
            "                         processed, generated, speeds and memories recalled\n"
            "  --memory-db URI        the long-term memory store (default\n"
            "                         $XDG_DATA_HOME/vitamin/memory.db, or postgresql://...)\n"
            "  --no-memory            no recall, nothing stored\n"
            "  --memory-budget N      tokens of recalled memories per turn (default 512)\n"
            "  --memory-user NAME     whose memories (default \"default\")\n"
            "  --memory-embeddings    recall by meaning too: embed turns and queries with the\n"
            "                         chat model (its mean-pooled hidden states)\n"
            "  --embedding-model FILE ... or with this GGUF model\n"
            "  -h, --help             this help\n"
            "%s"
            "\n-n defaults to -1 here (a reply ends at the model's end-of-turn token).\n",
            4096, cli_sampling_help);
}


static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static bool on_text(void *user, const char *text, size_t len)
{
    vt_buf_add(user, text, len);
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return true;
}

typedef struct {
    const tok_tokenizer *tok;
    vt_engine *e;
    chat_fmt *fmt;
    json_t *messages;
    size_t n_keep; /* messages kept by /reset (the system message) */
    cli_sampling *smp;
    bool verbose;
    int turn;
    mem_store *mem; /* NULL: memory off */
    vt_engine *embedder; /* embeddings of turns and queries (NULL: none) */
    const char *mem_user;
    size_t mem_budget;
    char conv[64]; /* this conversation's id in the memory */
} chat;

static size_t count_tokens(void *ctx, const char *text, size_t len)
{
    return tok_count(ctx, text, len);
}

static void new_conversation(chat *c)
{
    snprintf(c->conv, sizeof c->conv, "chat-%lld-%d", (long long)mem_time_now(), (int)getpid());
}

/* One user message: 0 to go on, 1 on a fatal error. *emb: the message's
 * embedding, made here when there is an embedder (the caller frees it). */
static int turn_with(chat *c, const char *line, size_t len, float **emb_out)
{
    if (!chat_add_message(c->messages, "user", line, len)) {
        fprintf(stderr, "vitamin chat: out of memory\n");
        return 1;
    }
    size_t user_index = json_array_size(c->messages) - 1, n_recalled = 0;
    float *emb = NULL;
    int32_t n_embd = 0;
    if (c->mem) {
        json_t *used = NULL;
        if (c->embedder && eng_embed_text(c->embedder, line, len, 0, emb_out, &n_embd))
            fprintf(stderr, "vitamin chat: the message's embedding failed: %s\n",
                    vt_last_error());
        emb = *emb_out;
        if (mem_recall_messages(c->mem, c->mem_user, c->messages, c->mem_budget, emb, n_embd,
                                count_tokens, (void *)c->tok, &used))
            fprintf(stderr, "vitamin chat: memory recall failed: %s\n", vt_last_error());
        n_recalled = json_array_size(used);
        json_decref(used);
        user_index = json_array_size(c->messages) - 1; /* a system message may have come first */
    }
    int32_t *ids = NULL;
    size_t n = 0;
    vt_err e = chat_prompt(c->fmt, c->messages, true, NULL, &ids, &n);
    if (e) {
        fprintf(stderr, "vitamin chat: the chat template failed: %s\n", vt_last_error());
        free(ids);
        return 1;
    }
    vt_request *r = NULL;
    if (n == 0)
        e = vt_fail(VT_ERR_INVALID, "the chat template rendered nothing");
    else {
        c->smp->p.prompt = ids;
        c->smp->p.n_prompt = (int64_t)n;
        e = vt_submit(c->e, &c->smp->p, &r);
    }
    free(ids);
    if (e) {
        fprintf(stderr, "vitamin chat: %s%s\n", vt_last_error(),
                e == VT_ERR_RANGE ? "; /reset starts over" : "");
        json_array_remove(c->messages, json_array_size(c->messages) - 1);
        return 0;
    }
    vt_buf reply = {0};
    vt_usage u;
    interrupted = 0;
    vt_finish f = cli_stream("chat", r, on_text, &reply, &interrupted, &u);
    vt_request_free(r);
    fputc('\n', stdout);
    fflush(stdout);
    if (f == VT_FINISH_NONE) {
        free(reply.p);
        return 1;
    }
    if (reply.oom ||
        !chat_add_message(c->messages, "assistant", reply.p ? reply.p : "", reply.len)) {
        fprintf(stderr, "vitamin chat: out of memory\n");
        free(reply.p);
        return 1;
    }
    free(reply.p);
    c->turn++;
    if (c->mem) {
        char *text = strndup(line, len);
        if (!text || mem_store_turn_embedded(c->mem, c->mem_user, c->conv, (int64_t)user_index,
                                             "user", text, mem_time_now(), emb, n_embd, NULL))
            fprintf(stderr, "vitamin chat: storing the turn failed: %s\n",
                    text ? vt_last_error() : "out of memory");
        free(text);
    }
    int64_t max_len = vt_engine_max_seq_len(c->e);
    if (f == VT_FINISH_LENGTH && u.prompt_tokens + u.completion_tokens >= max_len)
        fprintf(stderr, "vitamin chat: the context of %lld tokens is full; /reset starts over\n",
                (long long)max_len);
    if (c->verbose) {
        double tp = u.time_to_first_token, tg = u.total_time - u.time_to_first_token;
        int64_t np = u.prompt_tokens - u.cached_tokens;
        fprintf(stderr,
                "[turn %d: %lld tokens reused from the cache, %lld processed (%.2f tok/s), "
                "%lld generated (%.2f tok/s), finish: %s, %zu memories recalled]\n",
                c->turn, (long long)u.cached_tokens, (long long)np,
                tp > 0 ? (double)np / tp : 0.0, (long long)u.completion_tokens,
                tg > 0 && u.completion_tokens > 1 ? (double)(u.completion_tokens - 1) / tg : 0.0,
                vt_finish_reason(f), n_recalled);
    }
    return 0;
}

static int turn(chat *c, const char *line, size_t len)
{
    float *emb = NULL;
    int rc = turn_with(c, line, len, &emb);
    free(emb);
    return rc;
}

static int loop(chat *c)
{
    bool tty = isatty(STDIN_FILENO);
    if (tty) { /* no SA_RESTART: Ctrl-C at the prompt ends getline */
        struct sigaction sa = {.sa_handler = on_sigint};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t got = getline(&line, &cap, stdin);
        if (got < 0)
            break;
        size_t len = (size_t)got;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0)
            continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit"))
            break;
        if (!strcmp(line, "/reset")) {
            while (json_array_size(c->messages) > c->n_keep)
                json_array_remove(c->messages, json_array_size(c->messages) - 1);
            c->turn = 0;
            new_conversation(c);
            fprintf(stderr, "(a new conversation)\n");
            continue;
        }
        if ((rc = turn(c, line, len)))
            break;
    }
    if (tty && rc == 0)
        fputc('\n', stdout);
    free(line);
    return rc;
}

int cmd_chat(int argc, char **argv)
{
    const char *path = NULL, *system = NULL, *tfile = NULL, *memory_db = NULL;
    const char *mem_user = "default";
    long threads = cli_default_threads(), n_ctx = 0, mem_budget = 512;
    bool verbose = false, no_memory = false, self_embed = false;
    const char *emb_path = NULL;
    cli_sampling smp;
    cli_sampling_init(&smp, -1);
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
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "--no-memory")) {
            no_memory = true;
        } else if (!strcmp(a, "--memory-embeddings")) {
            self_embed = true;
        } else if (!strcmp(a, "--embedding-model") && cli_need_value(argc, argv, i)) {
            emb_path = argv[++i];
        } else if (!strcmp(a, "--memory-db") && cli_need_value(argc, argv, i)) {
            memory_db = argv[++i];
        } else if (!strcmp(a, "--memory-user") && cli_need_value(argc, argv, i)) {
            mem_user = argv[++i];
        } else if (!strcmp(a, "--memory-budget") && cli_need_value(argc, argv, i)) {
            if (!cli_parse_int(a, argv[++i], 1, 1000000, &mem_budget))
                return 2;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && cli_need_value(argc, argv, i)) {
            path = argv[++i];
        } else if (!strcmp(a, "--system") && cli_need_value(argc, argv, i)) {
            system = argv[++i];
        } else if (!strcmp(a, "--template") && cli_need_value(argc, argv, i)) {
            tfile = argv[++i];
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && cli_need_value(argc, argv, i)) {
            if (!cli_parse_int(a, argv[++i], 1, 1024, &threads))
                return 2;
        } else if (!strcmp(a, "--ctx") && cli_need_value(argc, argv, i)) {
            if (!cli_parse_int(a, argv[++i], 1, 1L << 24, &n_ctx))
                return 2;
        } else {
            bool known = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--system") ||
                         !strcmp(a, "--template") || !strcmp(a, "-t") ||
                         !strcmp(a, "--threads") || !strcmp(a, "--ctx") ||
                         !strcmp(a, "--memory-db") || !strcmp(a, "--memory-user") ||
                         !strcmp(a, "--memory-budget") || !strcmp(a, "--embedding-model");
            if (!known) /* a known one without its value has been reported */
                fprintf(stderr, "vitamin chat: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "vitamin chat: -m MODEL is required (see --help)\n");
        return 2;
    }
    if (self_embed && emb_path) {
        fprintf(stderr, "vitamin chat: --memory-embeddings and --embedding-model exclude each "
                        "other\n");
        return 2;
    }
    mem_store *mem = NULL;
    if (!no_memory) {
        char *dflt = NULL;
        if (!memory_db && !(memory_db = dflt = cli_memory_default_db())) {
            fprintf(stderr, "vitamin chat: no --memory-db given and neither XDG_DATA_HOME nor "
                            "HOME is set (or use --no-memory)\n");
            return 1;
        }
        vt_err me = mem_open(memory_db, NULL, &mem);
        free(dflt);
        if (me) {
            fprintf(stderr, "vitamin chat: memory store: %s\n", vt_last_error());
            return 1;
        }
    }
    md_model *m;
    tok_tokenizer *tok;
    kn_pool *pool;
    vt_engine *eng;
    vt_engine_config cfg = {.kv_tokens = n_ctx, .max_seq_len = n_ctx};
    if (cli_engine_open("chat", path, threads, &cfg, &m, &tok, &pool, &eng)) {
        mem_close(mem);
        return 1;
    }
    md_model *em = NULL;
    tok_tokenizer *etok = NULL;
    kn_pool *epool = NULL;
    vt_engine *ee = NULL;
    chat c = {.tok = tok, .e = eng, .smp = &smp, .verbose = verbose, .mem = mem,
              .mem_user = mem_user, .mem_budget = (size_t)mem_budget};
    if (mem && emb_path) {
        vt_engine_config ecfg = {.kv_tokens = 2048};
        if (cli_engine_open("chat", emb_path, threads, &ecfg, &em, &etok, &epool, &ee)) {
            cli_engine_close(m, tok, pool, eng);
            mem_close(mem);
            return 1;
        }
    }
    c.embedder = !mem ? NULL : ee ? ee : self_embed ? eng : NULL;
    new_conversation(&c);
    int rc = 1;
    vt_err e = chat_fmt_load(m->file, tok, tfile, &c.fmt);
    if (e) {
        if (e == VT_ERR_NOT_FOUND)
            fprintf(stderr, "vitamin chat: %s: %s\n", path, vt_last_error());
        else if (e == VT_ERR_IO || e == VT_ERR_NOMEM)
            fprintf(stderr, "vitamin chat: %s\n", vt_last_error());
        else
            fprintf(stderr, "vitamin chat: %s: %s\n", tfile ? tfile : "the chat template",
                    vt_last_error());
        goto done;
    }
    int32_t probe = 0;
    smp.p.prompt = &probe;
    smp.p.n_prompt = 1;
    if ((e = vt_request_check(eng, &smp.p))) {
        fprintf(stderr, "vitamin chat: %s\n", vt_last_error());
        goto done;
    }
    if (!(c.messages = json_array()) ||
        (system && !chat_add_message(c.messages, "system", system, strlen(system)))) {
        fprintf(stderr, "vitamin chat: out of memory\n");
        goto done;
    }
    c.n_keep = json_array_size(c.messages);
    rc = loop(&c);
done:
    json_decref(c.messages);
    chat_fmt_destroy(c.fmt);
    cli_engine_close(m, tok, pool, eng);
    cli_engine_close(em, etok, epool, ee);
    mem_close(mem);
    return rc;
}
