/*
 * cmd_serve.c - `vitamin serve`: loads a model, starts the engine and the
 * OpenAI-compatible HTTP server (server/) on it, prints its URL once it is
 * ready, and runs until SIGINT or SIGTERM; then it stops accepting, lets
 * running requests finish for --shutdown-grace seconds, aborts the rest and
 * exits 0. The signals are blocked in every thread and taken by sigwait on
 * the main thread, so no handler runs inside the engine or the server.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "cli.h"
#include "engine/engine.h"
#include "memory/memory.h"
#include "server/server.h"
#include "util/util.h"

static void help(FILE *out)
{
    fprintf(out,
            "usage: vitamin serve -m MODEL.gguf [options]\n\n"
            "Serves the model over HTTP with OpenAI's API: GET /v1/models, POST\n"
            "/v1/completions and /v1/chat/completions (streaming too), POST /tokenize and\n"
            "/detokenize, GET /health and GET /metrics (Prometheus). SIGINT/SIGTERM stop it.\n\n"
            "options:\n"
            "  -m, --model FILE         GGUF model file (required)\n"
            "  --host ADDR              address to listen on (default 127.0.0.1)\n"
            "  --port N                 port (default 8080; 0: any free port)\n"
            "  --model-name NAME        the model's name in the API (default: the file's\n"
            "                           name without .gguf)\n"
            "  --api-key-file FILE      keys: one `KEY USER [admin]` per line, # comments;\n"
            "                           requests then need `Authorization: Bearer KEY`\n"
            "  --chat-template FILE     a Jinja chat template instead of the model's\n"
            "  -t, --threads N          threads (default: all cores)\n"
            "  --ctx N                  longest sequence, prompt and output (default: the\n"
            "                           model's context, at most the KV pool)\n"
            "  --kv-mem SIZE            KV pool size (e.g. 512M, 2G; default: --ctx tokens,\n"
            "                           at least 4096)\n"
            "  --max-seqs N             sequences per forward pass (default 256, at most\n"
            "                           --max-batch-tokens)\n"
            "  --max-batch-tokens N     tokens per forward pass (default 512)\n"
            "  --kv-drawer DIR          keep the K/V of finished conversations' prefixes in\n"
            "                           DIR and load them back for a later request with the\n"
            "                           same prefix, also after a restart (default: off)\n"
            "  --kv-drawer-size SIZE    the drawer's cap on disk (default 4G)\n"
            "  --memory-db URI          the long-term memory store: a SQLite file (default\n"
            "                           $XDG_DATA_HOME/vitamin/memory.db) or postgresql://...\n"
            "  --no-memory              no long-term memory: no recall, nothing stored,\n"
            "                           no /v1/memories\n"
            "  --memory-budget N        tokens of recalled memories in a chat prompt\n"
            "                           (default 512)\n"
            "  --memory-user NAME       without --api-key-file: the one user (default\n"
            "                           \"default\")\n"
            "  --memory-embeddings      recall by meaning too: embed turns and queries with\n"
            "                           the served model (its /v1/embeddings pooling)\n"
            "  --embedding-model FILE   ... or with this GGUF model (loaded beside the served one)\n"
            "  --max-queue N            engine requests held at once, running and waiting;\n"
            "                           more get 429 (default 1024)\n"
            "  --max-connections N      open connections (default 512)\n"
            "  --max-body SIZE          request body limit (default 8M; more: 413)\n"
            "  --idle-timeout SECONDS   close idle connections after this (default 60)\n"
            "  --shutdown-grace SECONDS time running requests get at shutdown (default 5)\n"
            "  --quiet                  no log line per request\n"
            "  -h, --help               this help\n");
}

/* The file's name without folders and ".gguf". */
static char *default_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf"))
        n -= 5;
    return strndup(b, n);
}

int cmd_serve(int argc, char **argv)
{
    const char *path = NULL, *tfile = NULL, *name = NULL;
    long threads = cli_default_threads(), n_ctx = 0, max_seqs = 0, max_batch = 512, port = 8080;
    long max_queue = 1024, max_conn = 512, idle = 60;
    int64_t kv_mem = 0, max_body = 8 << 20, drawer_size = 0;
    const char *drawer = NULL, *memory_db = NULL;
    bool no_memory = false, self_embed = false;
    const char *emb_path = NULL;
    md_model *em = NULL;
    tok_tokenizer *etok = NULL;
    kn_pool *epool = NULL;
    vt_engine *ee = NULL;
    long mem_budget = 512;
    mem_store *mem = NULL;
    char *mem_default = NULL;
    double grace = 5;
    srv_config cfg = {.host = "127.0.0.1", .log = true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            cfg.log = false;
            continue;
        }
        if (!strcmp(a, "--no-memory")) {
            no_memory = true;
            continue;
        }
        if (!strcmp(a, "--memory-embeddings")) {
            self_embed = true;
            continue;
        }
        static const char *const opts[] = {
            "-m", "--model", "--host", "--port", "--model-name", "--api-key-file",
            "--chat-template", "-t", "--threads", "--ctx", "--kv-mem", "--max-seqs",
            "--max-batch-tokens", "--max-queue", "--max-connections", "--max-body",
            "--idle-timeout", "--shutdown-grace", "--kv-drawer", "--kv-drawer-size",
            "--memory-db", "--memory-budget", "--memory-user", "--embedding-model"};
        size_t k = 0;
        while (k < sizeof opts / sizeof opts[0] && strcmp(a, opts[k]))
            k++;
        if (k == sizeof opts / sizeof opts[0]) {
            fprintf(stderr, "vitamin serve: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!cli_need_value(argc, argv, i))
            return 2;
        const char *v = argv[++i];
        bool ok = true;
        switch (k) {
        case 0:
        case 1: path = v; break;
        case 2: cfg.host = v; break;
        case 3: ok = cli_parse_int(a, v, 0, 65535, &port); break;
        case 4: name = v; break;
        case 5: cfg.api_key_file = v; break;
        case 6: tfile = v; break;
        case 7:
        case 8: ok = cli_parse_int(a, v, 1, 1024, &threads); break;
        case 9: ok = cli_parse_int(a, v, 1, 1L << 24, &n_ctx); break;
        case 10: ok = cli_parse_size(a, v, &kv_mem); break;
        case 11: ok = cli_parse_int(a, v, 1, 4096, &max_seqs); break;
        case 12: ok = cli_parse_int(a, v, 1, 1L << 20, &max_batch); break;
        case 13: ok = cli_parse_int(a, v, 1, 1L << 20, &max_queue); break;
        case 14: ok = cli_parse_int(a, v, 1, 65536, &max_conn); break;
        case 15: ok = cli_parse_size(a, v, &max_body) && max_body <= (1LL << 32); break;
        case 16: ok = cli_parse_int(a, v, 1, 86400, &idle); break;
        case 17:
            ok = cli_parse_float(a, v, &grace) && grace >= 0 && grace <= 3600;
            if (!ok)
                fprintf(stderr, "vitamin serve: --shutdown-grace: seconds in [0, 3600]\n");
            break;
        case 18: drawer = v; break;
        case 19: ok = cli_parse_size(a, v, &drawer_size); break;
        case 20: memory_db = v; break;
        case 21: ok = cli_parse_int(a, v, 1, 1000000, &mem_budget); break;
        case 22: cfg.memory_user = v; break;
        default: emb_path = v; break;
        }
        if (!ok)
            return 2;
    }
    if (!path) {
        fprintf(stderr, "vitamin serve: -m MODEL is required (see --help)\n");
        return 2;
    }
    if (self_embed && emb_path) {
        fprintf(stderr, "vitamin serve: --memory-embeddings and --embedding-model exclude each "
                        "other\n");
        return 2;
    }
    /* SIGINT/SIGTERM are taken by sigwait below: blocked before any thread
     * starts, so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    md_model *m = NULL;
    tok_tokenizer *tok = NULL;
    kn_pool *pool = NULL;
    vt_engine *e = NULL;
    chat_fmt *chat = NULL;
    srv_server *srv = NULL;
    char *dname = name ? NULL : default_name(path);
    int rc = 1;
    vt_engine_config ec = {.kv_mem = kv_mem,
                            .kv_tokens = kv_mem ? 0 : VT_MAX(n_ctx, 4096),
                            .max_seq_len = n_ctx,
                            .max_seqs = (int32_t)max_seqs,
                            .max_batch_tokens = (int32_t)max_batch,
                            .kv_drawer = drawer,
                            .kv_drawer_bytes = drawer_size};
    vt_err err;
    if (!no_memory) {
        if (!memory_db && !(memory_db = mem_default = cli_memory_default_db())) {
            fprintf(stderr, "vitamin serve: no --memory-db given and neither XDG_DATA_HOME nor "
                            "HOME is set (or use --no-memory)\n");
            goto done;
        }
        if ((err = mem_open(memory_db, NULL, &mem))) {
            fprintf(stderr, "vitamin serve: memory store: %s\n", vt_last_error());
            goto done;
        }
    }
    cfg.memory = mem;
    cfg.memory_uri = memory_db;
    cfg.memory_budget = (size_t)mem_budget;
    if (cli_engine_open("serve", path, threads, &ec, &m, &tok, &pool, &e))
        goto done;
    if (mem && emb_path) {
        vt_engine_config ecfg = {.kv_tokens = 2048};
        if (cli_engine_open("serve", emb_path, threads, &ecfg, &em, &etok, &epool, &ee))
            goto done;
    }
    cfg.memory_embedder = !mem ? NULL : ee ? ee : self_embed ? e : NULL;
    err = chat_fmt_load(m->file, tok, tfile, &chat);
    if (err == VT_ERR_NOT_FOUND && !tfile) {
        chat = NULL;
        fprintf(stderr, "vitamin serve: %s has no chat template: /v1/chat/completions is off "
                        "(give one with --chat-template)\n", path);
    } else if (err) {
        fprintf(stderr, "vitamin serve: %s: %s\n", tfile ? tfile : path, vt_last_error());
        goto done;
    }
    cfg.port = (int)port;
    cfg.model_name = name ? name : dname;
    cfg.max_body = (size_t)max_body;
    cfg.max_queue = (int)max_queue;
    cfg.max_connections = (int)max_conn;
    cfg.idle_timeout = (int)idle;
    cfg.shutdown_grace = grace;
    if (!cfg.model_name || !(srv = srv_start(&cfg, e, chat))) {
        fprintf(stderr, "vitamin serve: %s\n", cfg.model_name ? vt_last_error() : "out of memory");
        goto done;
    }
    const char *h = cfg.host;
    bool v6 = strchr(h, ':') != NULL;
    printf("vitamin serve: listening on http://%s%s%s:%d (model %s)\n", v6 ? "[" : "", h,
           v6 ? "]" : "", srv_port(srv), cfg.model_name);
    fflush(stdout);
    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    fprintf(stderr, "vitamin serve: %s: shutting down (grace %.3g s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", grace);
    srv_stop(srv);
    rc = 0;
done:
    cli_engine_close(m, tok, pool, e); /* first: it may still wake the server */
    srv_free(srv);
    cli_engine_close(em, etok, epool, ee); /* the memory thread stopped with the server */
    chat_fmt_destroy(chat);
    mem_close(mem); /* after the server: it stores turns until it stops */
    free(mem_default);
    free(dname);
    return rc;
}
