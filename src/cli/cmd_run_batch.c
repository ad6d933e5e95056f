/*
 * cmd_run_batch.c - `vitamin run-batch`: runs an OpenAI Batch API input file
 * (JSONL: {"custom_id", "method": "POST", "url": "/v1/completions" or
 * "/v1/chat/completions", "body": {...}}) through the engine at full batch
 * and writes one output line per input line, in input order: {"id":
 * "batch_req_...", "custom_id", "response": {"status_code": 200,
 * "request_id", "body": {...OpenAI-shaped...}}, "error": null}. A line that
 * is not a request (invalid JSON, no custom_id, a duplicate custom_id, an
 * unknown url, a method other than POST) gets "response": null and "error":
 * {"code", "message"}; a request whose body is invalid gets the status and
 * OpenAI error body the server would send. Requests are read and submitted
 * as a bounded window (4 x max_seqs lines in flight), so memory stays
 * bounded for any file size; completions that finish out of order wait in
 * the window until the lines before them are written. Progress goes to
 * stderr: a redrawn line on a terminal, plain summary lines otherwise.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat/chat.h"
#include "cli.h"
#include "engine/engine.h"
#include "server/oai.h"
#include "util/util.h"

static void help(FILE *out)
{
    fprintf(out,
            "usage: vitamin run-batch -m MODEL.gguf -i IN.jsonl -o OUT.jsonl [options]\n\n"
            "Runs every request of an OpenAI Batch API input file through the engine, all\n"
            "in flight together, and writes one output line per input line in input order\n"
            "(a bad line becomes an error line). Each line is {\"custom_id\", \"method\": \"POST\",\n"
            "\"url\": \"/v1/completions\" or \"/v1/chat/completions\", \"body\": {...}}.\n\n"
            "options:\n"
            "  -m, --model FILE        GGUF model file (required)\n"
            "  -i, --input FILE        the input JSONL file ('-': standard input) (required)\n"
            "  -o, --output FILE       the output JSONL file (required)\n"
            "  -t, --threads N         threads (default: all cores)\n"
            "  --ctx N                 longest sequence, prompt and output (default: the\n"
            "                          model's context, at most the KV pool)\n"
            "  --kv-mem SIZE           KV pool size (e.g. 512M, 2G; default: --ctx tokens,\n"
            "                          at least 4096)\n"
            "  --max-seqs N            sequences per forward pass (default 256)\n"
            "  --max-batch-tokens N    tokens per forward pass (default 512)\n"
            "  --chat-template FILE    a Jinja chat template instead of the model's\n"
            "  -h, --help              this help\n");
}

/* One input line in the window. */
typedef struct {
    int64_t line;        /* 1-based line number */
    json_t *out;         /* the finished output line; NULL while running */
    char *custom_id;
    oai_request *rq;
    oai_response *resp;
    vt_request **reqs;   /* one per prompt */
    int32_t n_reqs;
} slot;

typedef struct {
    vt_engine *e;
    oai_ctx ctx;
    const tok_tokenizer *tok;
    json_t *seen;        /* custom_ids so far (an object used as a set) */
    uint64_t id_seed;
    uint64_t id_counter;
    int64_t n_ok, n_err, gen_tokens;
    /* the engine thread's wake-up: a counter of event batches */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t events;
} batch;

/* vt_request_params.on_event: runs on the engine thread. */
static void on_event(void *ctx)
{
    batch *b = ctx;
    pthread_mutex_lock(&b->mu);
    b->events++;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* Waits until events arrived after `seen` was read (or timeout_ms). */
static void wait_events(batch *b, uint64_t seen, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)timeout_ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&b->mu);
    while (b->events == seen)
        if (pthread_cond_timedwait(&b->cv, &b->mu, &ts))
            break;
    pthread_mutex_unlock(&b->mu);
}

static uint64_t events_now(batch *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t n = b->events;
    pthread_mutex_unlock(&b->mu);
    return n;
}

static void make_id(batch *b, const char *prefix, char *buf, size_t n)
{
    uint64_t x = b->id_seed + ++b->id_counter * 0x9e3779b97f4a7c15ull;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    snprintf(buf, n, "%s%016llx", prefix, (unsigned long long)x);
}

static json_t *out_line(batch *b, const char *custom_id, json_t *response, json_t *error)
{
    char id[48];
    make_id(b, "batch_req_", id, sizeof id);
    return json_pack("{s:s,s:o,s:o,s:o}", "id", id, "custom_id",
                     custom_id ? json_string(custom_id) : json_null(), "response",
                     response ? response : json_null(), "error", error ? error : json_null());
}

/* A line that is not a request: response null, error {code, message}. */
static json_t *line_error(batch *b, const char *custom_id, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static json_t *line_error(batch *b, const char *custom_id, const char *code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->n_err++;
    json_t *m = json_string(msg);
    return out_line(b, custom_id, NULL,
                    json_pack("{s:s,s:o}", "code", code, "message", m ? m : json_string("?")));
}

/* A request the API would answer with an error status. */
static json_t *status_line(batch *b, const char *custom_id, const oai_error *err)
{
    char rid[48];
    make_id(b, "req_", rid, sizeof rid);
    b->n_err++;
    return out_line(b, custom_id,
                    json_pack("{s:i,s:s,s:o}", "status_code", err->status, "request_id", rid,
                              "body", oai_error_json(err)),
                    NULL);
}

static void slot_clear(slot *s)
{
    for (int32_t i = 0; i < s->n_reqs; i++)
        vt_request_free(s->reqs[i]);
    free(s->reqs);
    oai_response_free(s->resp);
    oai_request_free(s->rq);
    free(s->custom_id);
    json_decref(s->out);
    memset(s, 0, sizeof *s);
}

/* True if an earlier line had this custom_id; else remembers it. */
static bool seen_before(batch *b, const char *custom_id)
{
    if (json_object_get(b->seen, custom_id))
        return true;
    json_object_set_new(b->seen, custom_id, json_true());
    return false;
}

/* Sets s up from one input line: either s->out is the error line, or its
 * requests are submitted. */
static void slot_start(batch *b, slot *s, const char *text, size_t len, int64_t line)
{
    memset(s, 0, sizeof *s);
    s->line = line;
    json_t *j = NULL;
    oai_error err;
    if (oai_json_load(text, len, &j, &err)) {
        s->out = line_error(b, NULL, "invalid_json", "line %lld: %s", (long long)line,
                            err.message);
        return;
    }
    json_t *cid = json_object_get(j, "custom_id");
    const char *url = json_string_value(json_object_get(j, "url"));
    const char *method = json_string_value(json_object_get(j, "method"));
    json_t *body = json_object_get(j, "body");
    if (!json_is_object(j)) {
        s->out = line_error(b, NULL, "invalid_request", "line %lld: not a JSON object",
                            (long long)line);
    } else if (!json_is_string(cid) || !json_string_length(cid)) {
        s->out = line_error(b, NULL, "missing_custom_id",
                            "line %lld: 'custom_id' must be a non-empty string", (long long)line);
    } else if (!(s->custom_id = strdup(json_string_value(cid)))) {
        s->out = line_error(b, NULL, "internal_error", "out of memory");
    } else if (seen_before(b, s->custom_id)) {
        s->out = line_error(b, s->custom_id, "duplicate_custom_id",
                            "line %lld: the custom_id '%.200s' was already used by an earlier line",
                            (long long)line, s->custom_id);
    } else if (!method || strcmp(method, "POST")) {
        s->out = line_error(b, s->custom_id, "invalid_method",
                            "line %lld: 'method' must be \"POST\"", (long long)line);
    } else if (!url || (strcmp(url, "/v1/completions") && strcmp(url, "/v1/chat/completions"))) {
        s->out = line_error(b, s->custom_id, "invalid_url",
                            "line %lld: 'url' must be \"/v1/completions\" or "
                            "\"/v1/chat/completions\"", (long long)line);
    } else if (!json_is_object(body)) {
        s->out = line_error(b, s->custom_id, "invalid_request",
                            "line %lld: 'body' must be a JSON object", (long long)line);
    } else {
        oai_endpoint ep = strcmp(url, "/v1/completions") ? OAI_CHAT : OAI_COMPLETIONS;
        if (oai_request_parse(ep, body, &b->ctx, &s->rq, &err)) {
            s->out = status_line(b, s->custom_id, &err);
        } else if (s->rq->stream) {
            oai_error_set(&err, 400, "invalid_request_error", "stream", NULL,
                          "'stream' is not supported in a batch");
            s->out = status_line(b, s->custom_id, &err);
        } else if (!(s->resp = oai_response_create(s->rq, b->tok, NULL, (int64_t)time(NULL))) ||
                   !(s->reqs = calloc((size_t)s->rq->n_prompts, sizeof *s->reqs))) {
            s->out = line_error(b, s->custom_id, "internal_error", "out of memory");
        } else {
            for (int32_t i = 0; i < s->rq->n_prompts; i++) {
                vt_request_params p = oai_request_params(s->rq, i);
                p.on_event = on_event;
                p.on_event_ctx = b;
                if (vt_submit(b->e, &p, &s->reqs[i])) {
                    oai_error_set(&err, 400, "invalid_request_error", NULL, NULL, "%s",
                                  vt_last_error());
                    for (int32_t k = 0; k < s->n_reqs; k++)
                        vt_request_free(s->reqs[k]);
                    s->n_reqs = 0;
                    s->out = status_line(b, s->custom_id, &err);
                    break;
                }
                s->n_reqs = i + 1;
            }
        }
    }
    json_decref(j);
    if (!s->out && !s->resp) /* every path above sets one of them */
        s->out = line_error(b, s->custom_id, "internal_error", "out of memory");
}

/* Drains the events of a running slot (waiting up to timeout_ms for the
 * first); true if anything happened. Builds s->out once every request is
 * done. */
static bool slot_poll(batch *b, slot *s, int timeout_ms)
{
    bool any = false;
    for (int32_t i = 0; i < s->n_reqs; i++) {
        vt_event ev;
        int rc;
        while ((rc = vt_request_next(s->reqs[i], &ev, timeout_ms)) > 0) {
            timeout_ms = 0;
            any = true;
            if (ev.kind == VT_EV_TOKEN)
                b->gen_tokens++;
            if (oai_response_add(s->resp, i, &ev))
                break;
        }
    }
    if (oai_response_done(s->resp)) {
        oai_error err;
        json_t *body = oai_response_body(s->resp, &err);
        if (body) {
            char rid[48];
            make_id(b, "req_", rid, sizeof rid);
            s->out = out_line(b, s->custom_id,
                              json_pack("{s:i,s:s,s:o}", "status_code", 200, "request_id", rid,
                                        "body", body),
                              NULL);
            b->n_ok++;
        } else {
            s->out = status_line(b, s->custom_id, &err);
        }
        if (!s->out)
            s->out = line_error(b, s->custom_id, "internal_error", "out of memory");
        any = true;
    }
    return any;
}

static void progress(const batch *b, int64_t done, int64_t total, double t0, bool tty, bool last)
{
    double dt = vt_now() - t0;
    double rps = dt > 0 ? (double)done / dt : 0, tps = dt > 0 ? (double)b->gen_tokens / dt : 0;
    if (tty) {
        int width = 30, fill = total > 0 ? (int)(width * done / total) : 0;
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r[%s] %lld/%lld requests, %.1f req/s, %.1f tok/s \033[K", bar,
                (long long)done, (long long)total, rps, tps);
        if (last)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "run-batch: %lld/%lld lines done, %.1f req/s, %.1f tok/s\n",
                (long long)done, (long long)total, rps, tps);
    }
}

/* Lines with anything but whitespace (the progress bar's total). */
static int64_t count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int64_t n = 0;
    bool content = false;
    int c;
    while ((c = getc(f)) != EOF) {
        if (c == '\n') {
            n += content;
            content = false;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            content = true;
        }
    }
    fclose(f);
    return n + content;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static int run(batch *b, FILE *in, FILE *out, const char *in_path, const char *out_path,
               int window)
{
    slot *w = calloc((size_t)window, sizeof *w);
    if (!w) {
        fprintf(stderr, "vitamin run-batch: out of memory\n");
        return 1;
    }
    bool tty = isatty(STDERR_FILENO);
    int64_t total = in == stdin ? 0 : count_lines(in_path), line = 0, done = 0;
    int head = 0, count = 0, rc = 0;
    bool eof = false;
    char *buf = NULL;
    size_t cap = 0;
    double t0 = vt_now(), last_shown = t0;
    while (!eof || count > 0) {
        while (!eof && count < window) { /* fill the window */
            ssize_t n = getline(&buf, &cap, in);
            if (n < 0) {
                if (ferror(in)) {
                    fprintf(stderr, "vitamin run-batch: %s: read error: %s\n", in_path,
                            strerror(errno));
                    rc = 1;
                }
                eof = true;
                break;
            }
            line++;
            if (blank(buf, (size_t)n))
                continue;
            slot_start(b, &w[(head + count) % window], buf, (size_t)n, line);
            count++;
        }
        if (rc)
            break;
        /* collect: poll everything; sleep until the engine has news if idle */
        uint64_t seen = events_now(b);
        bool any = false;
        for (int k = 0; k < count; k++) {
            slot *s = &w[(head + k) % window];
            if (!s->out)
                any |= slot_poll(b, s, 0);
        }
        if (!any && count > 0 && !w[head].out)
            wait_events(b, seen, 100);
        /* write what is ready, in order */
        while (count > 0 && w[head].out) {
            char *text = json_dumps(w[head].out, JSON_COMPACT);
            bool ok = text && fputs(text, out) >= 0 && fputc('\n', out) != EOF;
            free(text);
            if (!ok) {
                fprintf(stderr, "vitamin run-batch: %s: write error: %s\n", out_path,
                        strerror(errno));
                rc = 1;
                break;
            }
            slot_clear(&w[head]);
            head = (head + 1) % window;
            count--;
            done++;
        }
        if (rc)
            break;
        if (vt_now() - last_shown > (tty ? 0.2 : 10.0)) {
            /* standard input: the lines read so far (and one more to come) */
            int64_t shown = in == stdin ? done + count + !eof : VT_MAX(total, done);
            progress(b, done, shown, t0, tty, false);
            last_shown = vt_now();
        }
    }
    for (int k = 0; k < count; k++)
        slot_clear(&w[(head + k) % window]);
    free(w);
    free(buf);
    if (!rc) {
        progress(b, done, done, t0, tty, true);
        fprintf(stderr, "run-batch: %lld lines: %lld succeeded, %lld errors; %lld tokens generated\n",
                (long long)done, (long long)b->n_ok, (long long)b->n_err,
                (long long)b->gen_tokens);
    }
    return rc;
}

int cmd_run_batch(int argc, char **argv)
{
    const char *path = NULL, *in_path = NULL, *out_path = NULL, *tfile = NULL;
    long threads = cli_default_threads(), n_ctx = 0, max_seqs = 256, max_batch = 512;
    int64_t kv_mem = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return 0;
        }
        static const char *const with_value[] = {
            "-m", "--model", "-i", "--input", "-o", "--output", "-t", "--threads", "--ctx",
            "--kv-mem", "--max-seqs", "--max-batch-tokens", "--chat-template"};
        size_t k = 0;
        while (k < sizeof with_value / sizeof with_value[0] && strcmp(a, with_value[k]))
            k++;
        if (k == sizeof with_value / sizeof with_value[0]) {
            fprintf(stderr, "vitamin run-batch: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!cli_need_value(argc, argv, i))
            return 2;
        const char *v = argv[++i];
        bool ok = true;
        if (k <= 1)
            path = v;
        else if (k <= 3)
            in_path = v;
        else if (k <= 5)
            out_path = v;
        else if (k <= 7)
            ok = cli_parse_int(a, v, 1, 1024, &threads);
        else if (k == 8)
            ok = cli_parse_int(a, v, 1, 1L << 24, &n_ctx);
        else if (k == 9)
            ok = cli_parse_size(a, v, &kv_mem);
        else if (k == 10)
            ok = cli_parse_int(a, v, 1, 4096, &max_seqs);
        else if (k == 11)
            ok = cli_parse_int(a, v, 1, 1L << 20, &max_batch);
        else
            tfile = v;
        if (!ok)
            return 2;
    }
    if (!path || !in_path || !out_path) {
        fprintf(stderr, "vitamin run-batch: %s is required (see --help)\n",
                !path ? "-m MODEL" : !in_path ? "-i IN.jsonl" : "-o OUT.jsonl");
        return 2;
    }
    FILE *in = strcmp(in_path, "-") ? fopen(in_path, "r") : stdin;
    if (!in) {
        fprintf(stderr, "vitamin run-batch: %s: %s\n", in_path, strerror(errno));
        return 1;
    }
    md_model *m = NULL;
    tok_tokenizer *tok = NULL;
    kn_pool *pool = NULL;
    vt_engine *e = NULL;
    chat_fmt *chat = NULL;
    FILE *out = NULL;
    int rc = 1;
    vt_engine_config cfg = {.kv_mem = kv_mem,
                            .kv_tokens = kv_mem ? 0 : VT_MAX(n_ctx, 4096),
                            .max_seq_len = n_ctx,
                            .max_seqs = (int32_t)max_seqs,
                            .max_batch_tokens = (int32_t)max_batch};
    if (cli_engine_open("run-batch", path, threads, &cfg, &m, &tok, &pool, &e))
        goto done;
    vt_err err;
    err = chat_fmt_load(m->file, tok, tfile, &chat);
    if (err == VT_ERR_NOT_FOUND && !tfile) {
        chat = NULL; /* no template: chat lines get an error each */
    } else if (err) {
        fprintf(stderr, "vitamin run-batch: %s: %s\n", tfile ? tfile : path, vt_last_error());
        goto done;
    }
    if (!(out = fopen(out_path, "w"))) {
        fprintf(stderr, "vitamin run-batch: %s: %s\n", out_path, strerror(errno));
        goto done;
    }
    batch b = {.e = e, .ctx = {.engine = e, .chat = chat}, .tok = tok, .seen = json_object(),
               .id_seed = (uint64_t)(vt_now() * 1e6) ^ ((uint64_t)getpid() << 32),
               .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    if (!b.seen) {
        fprintf(stderr, "vitamin run-batch: out of memory\n");
        goto done;
    }
    rc = run(&b, in, out, in_path, out_path, (int)VT_MIN(4 * max_seqs, 4096));
    json_decref(b.seen);
    if (fclose(out) && !rc) {
        fprintf(stderr, "vitamin run-batch: %s: write error: %s\n", out_path, strerror(errno));
        rc = 1;
    }
    out = NULL;
done:
    if (out)
        fclose(out);
    if (in != stdin)
        fclose(in);
    chat_fmt_destroy(chat);
    cli_engine_close(m, tok, pool, e);
    return rc;
}
