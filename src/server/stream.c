/*
 * stream.c - generation requests (/v1/completions, /v1/chat/completions):
 * the body validated by oai.h, one engine request per prompt submitted with
 * the server's on_event as its wake-up (and the key's user, if any, as the
 * request's user and cache salt), then either collected into one response
 * (the connection suspended while the engine works, resumed by on_event) or
 * streamed as server-sent events: a content reader that hands libmicrohttpd
 * what is queued and, when nothing is, suspends the connection until the
 * next event; `data: {chunk}\n\n` per chunk, the usage chunk when asked,
 * and `data: [DONE]\n\n`. A client that goes away is noticed at the next
 * wake-up (each engine step that brings its request an event): its
 * connection is closed and the completed callback frees (aborts) its
 * requests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server_int.h"
#include "util/util.h"

static uint64_t salt_of(const char *user)
{
    uint64_t h = 1469598103934665603ull;
    for (; *user; user++)
        h = (h ^ (uint8_t)*user) * 1099511628211ull;
    return h | 1;
}

static bool out_append(srv_conn *k, const char *s, size_t n)
{
    if (k->out_len + n > k->out_cap) {
        size_t cap = VT_MAX(k->out_cap * 2, k->out_len + n + 256);
        char *nb = realloc(k->out, cap);
        if (!nb)
            return false;
        k->out = nb;
        k->out_cap = cap;
    }
    memcpy(k->out + k->out_len, s, n);
    k->out_len += n;
    return true;
}

static bool sse(srv_conn *k, const json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT);
    bool ok = t && out_append(k, "data: ", 6) && out_append(k, t, strlen(t)) &&
              out_append(k, "\n\n", 2);
    free(t);
    return ok;
}

static bool sse_array(srv_conn *k, json_t *a)
{
    bool ok = a != NULL;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) ok = ok && sse(k, v);
    json_decref(a);
    return ok;
}

/* Reads every queued event of k's requests (into the response, or as stream
 * bytes). False on OOM. */
static bool drain(srv_conn *k, bool stream)
{
    srv_conn_begin_drain(k);
    bool ok = true;
    for (int32_t i = 0; i < k->n_reqs; i++) {
        vt_event ev;
        while (!k->req_done[i] && vt_request_next(k->reqs[i], &ev, 0) > 0) {
            if (stream)
                ok = sse_array(k, oai_stream_event(k->resp, i, &ev)) && ok;
            else
                ok = oai_response_add(k->resp, i, &ev) == VT_OK && ok;
            if (ev.kind == VT_EV_ERROR && stream) {
                oai_error err;
                oai_error_set(&err, 500, "internal_error", NULL, NULL, "%s", ev.text);
                json_t *j = oai_error_json(&err);
                ok = j && sse(k, j) && ok;
                json_decref(j);
            }
            if (ev.kind == VT_EV_DONE) {
                k->req_done[i] = true;
                k->n_done++;
                k->completion_tokens += ev.usage.completion_tokens;
                srv_metrics_usage(k->s->metrics, &ev.usage, k->rq->params.n);
            }
        }
    }
    if (k->n_done == k->n_reqs && k->inflight)
        srv_conn_settle(k);
    if (k->n_done == k->n_reqs)
        srv_memory_finish(k); /* the user's turn goes to memory (once) */
    return ok;
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    srv_conn *k = cls;
    for (;;) {
        if (k->out_off < k->out_len) {
            size_t n = VT_MIN(max, k->out_len - k->out_off);
            memcpy(buf, k->out + k->out_off, n);
            k->out_off += n;
            if (k->out_off == k->out_len)
                k->out_off = k->out_len = 0;
            return (ssize_t)n;
        }
        if (k->stream_end)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!drain(k, true))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (k->n_done == k->n_reqs && srv_memory_store_pending(k)) {
            if (srv_conn_gone(k))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            if (srv_conn_wait(k))
                return 0; /* the memory thread wakes us once the turn is stored */
            continue;
        }
        if (k->n_done == k->n_reqs) {
            json_t *u = oai_stream_usage(k->resp);
            bool ok = !u || sse(k, u);
            json_decref(u);
            if (!ok || !out_append(k, "data: [DONE]\n\n", 14))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            k->stream_end = true;
            continue;
        }
        if (k->out_len)
            continue;
        if (srv_conn_gone(k))
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the completed callback aborts */
        if (srv_conn_wait(k))
            return 0; /* suspended: on_event resumes us */
    }
}

static enum MHD_Result generate_body(srv_conn *k, oai_endpoint ep, json_t *body, json_t *plain);

enum MHD_Result srv_generate_resume(srv_conn *k)
{
    if (k->route == R_EMBEDDINGS)
        return srv_embed_resume(k);
    while (srv_memory_recall_pending(k)) { /* waiting for the memory thread */
        if (srv_memory_recall_done(k)) {
            json_t *plain = NULL;
            json_t *body = srv_memory_finish_recall(k, &plain);
            return generate_body(k, k->route == R_CHAT ? OAI_CHAT : OAI_COMPLETIONS, body,
                                 plain);
        }
        if (srv_conn_gone(k))
            return MHD_NO; /* the completed callback lets go of the job */
        if (srv_conn_wait(k))
            return MHD_YES;
    }
    for (;;) {
        if (!drain(k, false))
            return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
        if (k->n_done == k->n_reqs && srv_memory_store_pending(k)) {
            if (srv_conn_gone(k))
                return MHD_NO;
            if (srv_conn_wait(k))
                return MHD_YES;
            continue;
        }
        if (k->n_done == k->n_reqs) {
            oai_error err;
            json_t *body = oai_response_body(k->resp, &err);
            srv_memory_annotate(k, body);
            return body ? srv_send_json(k, 200, body) : srv_send_error(k, &err);
        }
        if (srv_conn_gone(k))
            return MHD_NO; /* closes it; the completed callback aborts the requests */
        if (srv_conn_wait(k))
            return MHD_YES;
    }
}

enum MHD_Result srv_generate(srv_conn *k, oai_endpoint ep)
{
    srv_server *s = k->s;
    oai_error err;
    /* Tokenizing runs on the server's one thread: a body far past anything
     * the context could hold (256 bytes per token) is refused unread. */
    int64_t ctx = vt_engine_max_seq_len(s->e);
    if ((double)k->len > (double)ctx * 256 + 65536)
        return srv_send_errorf(k, 400, "invalid_request_error", NULL, "context_length_exceeded",
                               "This model's maximum context length is %lld tokens; the request "
                               "body (%zu bytes) is far longer than that.",
                               (long long)ctx, k->len);
    json_t *body = NULL;
    if (oai_json_load(k->body ? k->body : "", k->len, &body, &err))
        return srv_send_error(k, &err);
    if (ep == OAI_CHAT && json_is_object(body) && s->mem) {
        /* recall goes into the messages, on the memory thread: the
         * connection waits for it (counted as one request in flight) */
        bool handled = false;
        enum MHD_Result res = srv_memory_prepare(k, body, &handled);
        if (handled) {
            json_decref(body);
            return res;
        }
        if (srv_memory_recall_pending(k)) {
            if (!srv_conn_track(k, 1)) {
                json_decref(body);
                return srv_send_errorf(k, 429, "rate_limit_error", NULL, "queue_full",
                                       "the server is busy (%d requests held at most); try "
                                       "again later",
                                       s->cfg.max_queue);
            }
            if (!srv_memory_start_recall(k, body)) { /* it keeps body */
                srv_conn_settle(k);
                return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
            }
            k->phase = PH_WAIT;
            return srv_generate_resume(k);
        }
    }
    return generate_body(k, ep, body, NULL);
}

/* Validates the (recalled-into) body and submits its requests; plain is the
 * body as the client sent it (NULL: no recall changed it). Both stolen. */
static enum MHD_Result generate_body(srv_conn *k, oai_endpoint ep, json_t *body, json_t *plain)
{
    srv_server *s = k->s;
    oai_error err;
    if (atomic_load(&s->stopping)) { /* it waited for its recall meanwhile */
        json_decref(body);
        json_decref(plain);
        return srv_send_errorf(k, 503, "service_unavailable", NULL, NULL,
                               "the server is shutting down");
    }
    int status = oai_request_parse(ep, body, &s->octx, &k->rq, &err);
    if (status == 400 && plain && !strcmp(err.code, "context_length_exceeded")) {
        /* the recalled memories made it too long: without them, then */
        srv_memory_forget_recall(k);
        status = oai_request_parse(ep, plain, &s->octx, &k->rq, &err);
    }
    json_decref(body);
    json_decref(plain);
    if (status)
        return srv_send_error(k, &err);
    oai_request *rq = k->rq;
    if (k->user[0]) { /* the key's user is the request's */
        free(rq->user);
        rq->user = strdup(k->user);
    }
    for (int32_t i = 0; i < rq->n_prompts; i++)
        k->prompt_tokens += rq->prompts[i].n;
    if (!srv_conn_track(k, rq->n_prompts))
        return srv_send_errorf(k, 429, "rate_limit_error", NULL, "queue_full",
                               "the server is busy (%d requests held at most); try again later",
                               s->cfg.max_queue);
    if (!(k->resp = oai_response_create(rq, s->tok, NULL, (int64_t)time(NULL))) ||
        !(k->reqs = calloc((size_t)rq->n_prompts, sizeof *k->reqs)) ||
        !(k->req_done = calloc((size_t)rq->n_prompts, sizeof *k->req_done)))
        return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
    for (int32_t i = 0; i < rq->n_prompts; i++) {
        vt_request_params p = oai_request_params(rq, i);
        p.on_event = srv_on_event;
        p.on_event_ctx = srv_conn_event_ctx(k);
        if (k->user[0])
            p.cache_salt = salt_of(k->user);
        vt_err e = vt_submit(s->e, &p, &k->reqs[i]);
        if (e) {
            srv_generate_free(k);
            srv_conn_settle(k);
            return srv_send_errorf(k, e == VT_ERR_NOMEM ? 500 : 400,
                                   e == VT_ERR_NOMEM ? "internal_error" : "invalid_request_error",
                                   NULL, NULL, "%s", vt_last_error());
        }
        pthread_mutex_lock(&s->mu); /* srv_stop reads reqs[0..n_reqs) under it */
        k->n_reqs = i + 1;
        pthread_mutex_unlock(&s->mu);
    }
    if (!rq->stream) {
        k->phase = PH_WAIT;
        return srv_generate_resume(k);
    }
    json_t *first = oai_stream_begin(k->resp);
    srv_memory_annotate(k, json_array_get(first, 0));
    if (!sse_array(k, first))
        return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, reader,
                                                               k, NULL);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    k->phase = PH_STREAM;
    enum MHD_Result res = MHD_queue_response(k->c, 200, r);
    MHD_destroy_response(r);
    if (res == MHD_YES)
        k->status = 200;
    return res;
}

void srv_generate_free(srv_conn *k)
{
    /* the requests first: their handles are only read on this thread and
     * srv_stop aborts them under the server's lock, from which k is gone */
    pthread_mutex_lock(&k->s->mu);
    vt_request **reqs = k->reqs;
    int32_t n = k->n_reqs;
    k->reqs = NULL;
    k->n_reqs = 0;
    pthread_mutex_unlock(&k->s->mu);
    for (int32_t i = 0; i < n; i++)
        vt_request_free(reqs[i]);
    free(reqs);
    free(k->req_done);
    k->req_done = NULL;
    k->n_done = 0;
    oai_response_free(k->resp);
    k->resp = NULL;
    oai_request_free(k->rq);
    k->rq = NULL;
    free(k->out);
    k->out = NULL;
    srv_embed_free(k);
    srv_memory_req_free(k);
}
