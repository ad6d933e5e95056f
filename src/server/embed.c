/*
 * embed.c - POST /v1/embeddings in OpenAI's shape: `input` as a string, a
 * list of strings, a token array or a list of token arrays (strings get the
 * model's tokenization with its BOS/EOS rule, as /tokenize gives it), each
 * input one engine embedding request (vt_request_params.embed: batched with
 * every other request, pooled and L2-normalised by the engine), all
 * submitted at once with the server's on_event as their wake-up; the
 * connection is suspended until they are done, then answered with
 * {"object":"list","data":[{"object":"embedding","index":i,"embedding":...}],
 * "model","usage":{"prompt_tokens","total_tokens"}}. `encoding_format`
 * "float" (default) gives JSON numbers, "base64" the little-endian float32
 * bytes in base64 (what the openai clients decode); `dimensions` must equal
 * the model's (no truncation). Errors are OpenAI error objects: 400 for a
 * missing, empty or mistyped input, a token outside the vocabulary, an input
 * past the context, a bad encoding_format or dimensions; 404 for another
 * model; 429 when the queue is full.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

#define EMB_MAX_INPUTS 2048

struct srv_embed {
    int32_t n;     /* inputs */
    int32_t dim;
    float *vecs;   /* [n][dim] */
    bool *have;    /* [n] the vector arrived */
    bool base64;
    char err[512]; /* an engine error of some input */
};

static uint64_t user_salt(const char *user)
{
    uint64_t h = 1469598103934665603ull;
    for (; *user; user++)
        h = (h ^ (uint8_t)*user) * 1099511628211ull;
    return h | 1;
}

#define BAD(...) srv_send_errorf(k, 400, "invalid_request_error", __VA_ARGS__)

/* Token ids of one input (a JSON string or an array of ids); *ids malloc'd. */
static enum MHD_Result input_ids(srv_conn *k, const json_t *in, size_t at, int32_t **ids,
                                 size_t *n, bool *ok)
{
    srv_server *s = k->s;
    int32_t nv = vt_engine_n_vocab(s->e);
    *ok = false;
    *ids = NULL;
    if (json_is_string(in)) {
        if (json_string_length(in) == 0)
            return BAD("input", NULL, "input[%zu] is an empty string", at);
        if (vt_tokenize(s->e, json_string_value(in), json_string_length(in), true, true, ids, n))
            return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "%s", vt_last_error());
        *ok = true;
        return MHD_YES;
    }
    size_t m = json_array_size(in);
    if (m == 0)
        return BAD("input", NULL, "input[%zu] is an empty token array", at);
    if (!(*ids = malloc(sizeof **ids * m)))
        return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < m; i++) {
        json_t *v = json_array_get(in, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= nv) {
            free(*ids);
            *ids = NULL;
            return BAD("input", NULL, "input[%zu][%zu] must be a token id in [0, %d)", at, i,
                       (int)nv);
        }
        (*ids)[i] = (int32_t)json_integer_value(v);
    }
    *n = m;
    *ok = true;
    return MHD_YES;
}

/* The inputs of body's `input` as a list (a borrowed array, or *one set to
 * the single input). */
static bool inputs_of(const json_t *input, const json_t **one, size_t *n)
{
    *one = NULL;
    if (json_is_string(input)) {
        *one = input;
        *n = 1;
        return true;
    }
    if (!json_is_array(input) || json_array_size(input) == 0)
        return false;
    const json_t *first = json_array_get(input, 0);
    if (json_is_integer(first)) { /* one token array */
        *one = input;
        *n = 1;
        return true;
    }
    *n = json_array_size(input);
    for (size_t i = 0; i < *n; i++) {
        const json_t *v = json_array_get(input, i);
        if (!json_is_string(v) && !json_is_array(v))
            return false;
    }
    return true;
}

static enum MHD_Result submit(srv_conn *k, const json_t *input, const json_t *one, size_t n)
{
    srv_server *s = k->s;
    for (size_t i = 0; i < n; i++) {
        const json_t *in = one ? one : json_array_get(input, i);
        int32_t *ids = NULL;
        size_t m = 0;
        bool ok;
        enum MHD_Result res = input_ids(k, in, i, &ids, &m, &ok);
        if (!ok)
            return res;
        vt_request_params p = vt_request_params_default();
        p.embed = true;
        p.prompt = ids;
        p.n_prompt = (int64_t)m;
        p.on_event = srv_on_event;
        p.on_event_ctx = srv_conn_event_ctx(k);
        if (k->user[0])
            p.cache_salt = user_salt(k->user);
        vt_err e = vt_submit(s->e, &p, &k->reqs[i]);
        free(ids);
        if (e) {
            bool oom = e == VT_ERR_NOMEM;
            return srv_send_errorf(k, oom ? 500 : 400,
                                   oom ? "internal_error" : "invalid_request_error",
                                   oom ? NULL : "input", NULL, "input[%zu]: %s", i,
                                   vt_last_error());
        }
        k->prompt_tokens += (int64_t)m;
        pthread_mutex_lock(&s->mu); /* srv_stop reads reqs[0..n_reqs) under it */
        k->n_reqs = (int32_t)i + 1;
        pthread_mutex_unlock(&s->mu);
    }
    return MHD_YES;
}

enum MHD_Result srv_embed(srv_conn *k)
{
    srv_server *s = k->s;
    oai_error err;
    json_t *body = NULL;
    enum MHD_Result res;
    if (oai_json_load(k->body ? k->body : "", k->len, &body, &err))
        return srv_send_error(k, &err);
    if (!json_is_object(body)) {
        res = BAD(NULL, NULL, "the request body must be a JSON object");
        goto done;
    }
    json_t *model = json_object_get(body, "model");
    if (model && !json_is_null(model) && !json_is_string(model)) {
        res = BAD("model", NULL, "'model' must be a string");
        goto done;
    }
    if (json_is_string(model) && strcmp(json_string_value(model), s->model_name)) {
        res = srv_send_errorf(k, 404, "invalid_request_error", "model", "model_not_found",
                              "The model `%.200s` does not exist.", json_string_value(model));
        goto done;
    }
    json_t *fmt = json_object_get(body, "encoding_format");
    bool b64 = false;
    if (fmt && !json_is_null(fmt)) {
        if (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") &&
                                     strcmp(json_string_value(fmt), "base64"))) {
            res = BAD("encoding_format", NULL, "'encoding_format' must be \"float\" or \"base64\"");
            goto done;
        }
        b64 = !strcmp(json_string_value(fmt), "base64");
    }
    int32_t dim = vt_engine_n_embd(s->e);
    json_t *dims = json_object_get(body, "dimensions");
    if (dims && !json_is_null(dims) &&
        (!json_is_integer(dims) || json_integer_value(dims) != dim)) {
        res = BAD("dimensions", NULL,
                  "'dimensions' must be the model's embedding length (%d): this model's "
                  "embeddings cannot be shortened",
                  (int)dim);
        goto done;
    }
    json_t *user = json_object_get(body, "user");
    if (user && !json_is_null(user) && !json_is_string(user)) {
        res = BAD("user", NULL, "'user' must be a string");
        goto done;
    }
    json_t *input = json_object_get(body, "input");
    const json_t *one;
    size_t n;
    if (!input) {
        res = BAD("input", NULL, "'input' is required");
        goto done;
    }
    if (!inputs_of(input, &one, &n)) {
        res = BAD("input", NULL,
                  "'input' must be a non-empty string, array of strings, array of token ids "
                  "or array of token id arrays");
        goto done;
    }
    if (n > EMB_MAX_INPUTS) {
        res = BAD("input", NULL, "at most %d inputs per request, got %zu", EMB_MAX_INPUTS, n);
        goto done;
    }
    if (!srv_conn_track(k, (int)n)) {
        res = srv_send_errorf(k, 429, "rate_limit_error", NULL, "queue_full",
                              "the server is busy (%d requests held at most); try again later",
                              s->cfg.max_queue);
        goto done;
    }
    struct srv_embed *em = calloc(1, sizeof *em);
    k->emb = em;
    if (em) {
        em->n = (int32_t)n;
        em->dim = dim;
        em->base64 = b64;
        em->vecs = malloc(sizeof *em->vecs * n * (size_t)dim);
        em->have = calloc(n, sizeof *em->have);
    }
    if (!em || !em->vecs || !em->have || !(k->reqs = calloc(n, sizeof *k->reqs)) ||
        !(k->req_done = calloc(n, sizeof *k->req_done))) {
        srv_conn_settle(k);
        res = srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
        goto done;
    }
    res = submit(k, input, one, n);
    if (k->n_reqs < (int32_t)n) { /* refused: answered already */
        srv_generate_free(k);
        srv_conn_settle(k);
        goto done;
    }
    k->phase = PH_WAIT;
    json_decref(body);
    return srv_embed_resume(k);
done:
    json_decref(body);
    return res;
}

static void drain(srv_conn *k)
{
    struct srv_embed *em = k->emb;
    srv_conn_begin_drain(k);
    for (int32_t i = 0; i < k->n_reqs; i++) {
        vt_event ev;
        while (!k->req_done[i] && vt_request_next(k->reqs[i], &ev, 0) > 0) {
            if (ev.kind == VT_EV_EMBEDDING && ev.n_embd == em->dim && ev.embedding) {
                memcpy(em->vecs + (size_t)i * (size_t)em->dim, ev.embedding,
                       sizeof *em->vecs * (size_t)em->dim);
                em->have[i] = true;
            } else if (ev.kind == VT_EV_ERROR && !em->err[0]) {
                snprintf(em->err, sizeof em->err, "input[%d]: %.400s", (int)i,
                         ev.text ? ev.text : "");
            } else if (ev.kind == VT_EV_DONE) {
                k->req_done[i] = true;
                k->n_done++;
                srv_metrics_usage(k->s->metrics, &ev.usage, 1);
            }
        }
    }
    if (k->n_done == k->n_reqs && k->inflight)
        srv_conn_settle(k);
}

static char *base64_of(const void *data, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = 0;
    return out;
}

static json_t *vector_json(const struct srv_embed *em, int32_t i)
{
    const float *v = em->vecs + (size_t)i * (size_t)em->dim;
    if (em->base64) {
        unsigned char *le = malloc(sizeof(float) * (size_t)em->dim);
        if (!le)
            return NULL;
        for (int32_t j = 0; j < em->dim; j++) {
            uint32_t u;
            memcpy(&u, &v[j], 4);
            for (int b = 0; b < 4; b++)
                le[4 * j + b] = (unsigned char)(u >> (8 * b));
        }
        char *t = base64_of(le, sizeof(float) * (size_t)em->dim);
        free(le);
        json_t *s = t ? json_string(t) : NULL;
        free(t);
        return s;
    }
    json_t *a = json_array();
    for (int32_t j = 0; a && j < em->dim; j++)
        if (json_array_append_new(a, json_real((double)v[j]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *response(srv_conn *k)
{
    struct srv_embed *em = k->emb;
    json_t *data = json_array();
    for (int32_t i = 0; data && i < em->n; i++) {
        json_t *vec = vector_json(em, i);
        json_t *o = vec ? json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", (int)i,
                                    "embedding", vec)
                        : NULL;
        if (!o || json_array_append_new(data, o)) {
            json_decref(data);
            return NULL;
        }
    }
    if (!data)
        return NULL;
    return json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", data, "model",
                     k->s->model_name, "usage", "prompt_tokens", (json_int_t)k->prompt_tokens,
                     "total_tokens", (json_int_t)k->prompt_tokens);
}

enum MHD_Result srv_embed_resume(srv_conn *k)
{
    for (;;) {
        drain(k);
        if (k->n_done == k->n_reqs) {
            struct srv_embed *em = k->emb;
            bool all = true;
            for (int32_t i = 0; i < em->n; i++)
                all = all && em->have[i];
            if (!all)
                return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "%s",
                                       em->err[0] ? em->err : "an embedding request was aborted");
            json_t *body = response(k);
            if (!body)
                return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
            return srv_send_json(k, 200, body);
        }
        if (srv_conn_gone(k))
            return MHD_NO; /* closes it; the completed callback aborts the requests */
        if (srv_conn_wait(k))
            return MHD_YES;
    }
}

void srv_embed_free(srv_conn *k)
{
    struct srv_embed *em = k->emb;
    if (!em)
        return;
    free(em->vecs);
    free(em->have);
    free(em);
    k->emb = NULL;
}
