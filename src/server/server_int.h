/*
 * server_int.h - what the server's files share (http.c: libmicrohttpd,
 * connections, wake-ups; routes.c: the routes and the simple endpoints;
 * stream.c: generation requests, non-streaming and as server-sent events;
 * metrics.c; auth.c). Everything runs on libmicrohttpd's one polling thread
 * except the engine's on_event callback (srv_on_event), srv_stop, and the
 * metrics' counters, which take their own locks.
 */
#ifndef VT_SERVER_INT_H
#define VT_SERVER_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "engine/engine.h"
#include "server/oai.h"
#include "server/server.h"

typedef enum { SRV_MJOB_RECALL, SRV_MJOB_STORE } srv_mjob_kind;
typedef struct srv_mjob srv_mjob;
typedef struct srv_memwork srv_memwork; /* memory_worker.c */

/* ---- auth.c ---- */
typedef struct srv_auth srv_auth;
/* The key file; NULL *out and the error (vt_last_error) on failure. */
vt_err srv_auth_load(const char *path, srv_auth **out);
void srv_auth_free(srv_auth *a); /* NULL is a no-op */
/* The user of the key equal to token[0..len) (borrowed), or NULL; every key
 * is compared, each in constant time. */
const char *srv_auth_check(const srv_auth *a, const char *token, size_t len, bool *admin);

/* ---- metrics.c ---- */
typedef struct srv_metrics srv_metrics;
srv_metrics *srv_metrics_create(void); /* NULL on OOM */
void srv_metrics_destroy(srv_metrics *m);
/* One HTTP request ended (generation: a completions/chat request, whose
 * seconds go to the e2e histogram when it succeeded). */
void srv_metrics_request(srv_metrics *m, const char *endpoint, int status, double seconds,
                         bool generation);
/* One engine request ended with usage u over n completions. */
void srv_metrics_usage(srv_metrics *m, const vt_usage *u, int32_t n);
/* The Prometheus text (malloc'd, *len bytes), or NULL on OOM. */
char *srv_metrics_render(srv_metrics *m, vt_engine *e, size_t *len);

/* ---- http.c ---- */
typedef enum {
    R_NONE = 0,
    R_HEALTH,
    R_METRICS,
    R_MODELS,
    R_MODEL,
    R_COMPLETIONS,
    R_CHAT,
    R_TOKENIZE,
    R_DETOKENIZE,
    R_EMBEDDINGS,
    R_MEMORIES,
    R_ROOT,
} srv_route;

typedef enum { PH_NEW = 0, PH_BODY, PH_WAIT, PH_STREAM, PH_DONE } srv_phase;

typedef struct srv_conn srv_conn;

/* Where the engine's on_event finds a request's connection: slots owned by
 * connections, named by (slot, generation) so that a late callback for a
 * connection that is gone finds nothing. */
typedef struct {
    uint64_t gen;
    srv_conn *conn; /* NULL: free */
    bool suspended; /* we suspended conn and nobody resumed it yet */
    bool pending;   /* events arrived since the connection last looked */
    int next_free;
} srv_waker;

struct srv_server {
    srv_config cfg;
    char *host, *model_name;
    vt_engine *e;
    const tok_tokenizer *tok;
    const chat_fmt *chat;
    oai_ctx octx;
    struct MHD_Daemon *d;
    int port;
    srv_auth *auth;
    srv_metrics *metrics;
    struct mem_store *mem; /* cfg.memory (the HTTP thread's handle) */
    srv_memwork *memw;     /* the memory thread (with its own handle) */
    int64_t created;
    atomic_bool stopping;
    pthread_mutex_t mu; /* wakers, the live list, n_inflight */
    srv_waker *wakers;
    int n_wakers, free_waker;
    srv_conn *live;     /* connections holding engine requests */
    int n_inflight;     /* engine requests not yet done */
};

struct srv_conn {
    srv_server *s;
    struct MHD_Connection *c;
    double t0;
    char method[16], path[160];
    srv_route route;
    const char *label; /* the endpoint label in metrics */
    srv_phase phase;
    int status;        /* of the response queued */
    bool has_early;    /* an error decided from the headers */
    oai_error early;
    char *body;
    size_t len, cap;
    bool too_big;
    char user[136];
    bool admin;
    /* generation (stream.c) */
    oai_request *rq;
    oai_response *resp;
    vt_request **reqs;
    bool *req_done;
    int32_t n_reqs, n_done;
    int inflight;      /* engine requests counted in s->n_inflight */
    int waker;         /* slot, or -1 */
    int64_t prompt_tokens, completion_tokens;
    char *out;         /* stream bytes not yet sent */
    size_t out_len, out_off, out_cap;
    bool stream_end;
    struct srv_embed *emb; /* /v1/embeddings (embed.c) */
    struct srv_mem_req *mem; /* a chat request's recall and turn (memory.c) */
    srv_conn *next, *prev;
    bool listed;
};

/* Queue a JSON body (v stolen) / an error object / a formatted error, and
 * mark the connection answered. MHD_NO if MHD refused the response. */
enum MHD_Result srv_send_json(srv_conn *k, int status, json_t *v);
enum MHD_Result srv_send_error(srv_conn *k, const oai_error *err);
enum MHD_Result srv_send_errorf(srv_conn *k, int status, const char *type, const char *param,
                                const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
enum MHD_Result srv_send_text(srv_conn *k, int status, const char *type, char *text, size_t len);
/* Queues a response r made by the caller (destroyed here, whatever happens). */
enum MHD_Result srv_send_response(srv_conn *k, int status, struct MHD_Response *r);

/* Takes a waker slot and lists k as live with n engine requests in
 * flight; false when n would exceed --max-queue (or no slot is free). */
bool srv_conn_track(srv_conn *k, int n);
/* k's engine requests are all done: no longer counted in flight. */
void srv_conn_settle(srv_conn *k);
/* Before reading k's events: forget earlier wake-ups. */
void srv_conn_begin_drain(srv_conn *k);
/* Nothing left to read: suspends k until the next event (true), or false if
 * an event arrived meanwhile (read again). */
bool srv_conn_wait(srv_conn *k);
/* The client closed its end (a read would give EOF or an error): every
 * wake-up checks, so a client gone mid-request is noticed at the next
 * engine step. */
bool srv_conn_gone(srv_conn *k);
/* The engine's on_event (ctx: a waker's slot and generation). */
void srv_on_event(void *ctx);
void *srv_conn_event_ctx(const srv_conn *k);

/* ---- routes.c ---- */
/* The route of a path; *method the method it takes, *label its metrics
 * label, *auth whether it needs a key. */
srv_route srv_route_find(const char *path, const char **method, const char **label, bool *auth);
/* Answers a complete request (body read). */
enum MHD_Result srv_route_handle(srv_conn *k);
/* k's body as a JSON object (empty_ok: no body is an empty object); else
 * the error is sent and *out is NULL. */
enum MHD_Result srv_body_object(srv_conn *k, bool empty_ok, json_t **out);

/* ---- page.c ---- */
/* GET /: the chat page (page.h), with its Content-Security-Policy. */
enum MHD_Result srv_page_send(srv_conn *k);

/* ---- stream.c ---- */
/* Validates and submits a completions/chat request; answers it (errors, or
 * at once when done) or leaves k waiting (non-streaming) or streaming. */
enum MHD_Result srv_generate(srv_conn *k, oai_endpoint ep);
/* A waiting non-streaming request was resumed: collect, answer or wait. */
enum MHD_Result srv_generate_resume(srv_conn *k);
/* Frees k's generation state (its engine requests are freed, aborting them). */
void srv_generate_free(srv_conn *k);

/* ---- memory_worker.c: the memory thread ---- */
/* Opens its own handle on the store at uri and starts the thread; embedder
 * (NULL: none) computes the embeddings of turns and queries. NULL on
 * failure (vt_last_error). */
srv_memwork *srv_memwork_start(const char *uri, vt_engine *embedder, const tok_tokenizer *tok);
/* Does every job still queued, then stops. NULL: no-op. */
void srv_memwork_stop(srv_memwork *w);
/* Queues recall into messages (stolen) for user; wake (srv_on_event's ctx)
 * is called when it is done. NULL on OOM. Release with srv_mjob_release. */
srv_mjob *srv_memwork_recall(srv_memwork *w, const char *user, json_t *messages, size_t budget,
                             void *wake);
bool srv_mjob_done(const srv_mjob *j);
/* Once done: the messages with the block in (a reference, NULL if none)
 * and the ids used (*used, a reference). */
json_t *srv_mjob_take_messages(srv_mjob *j, json_t **used);
void srv_mjob_release(srv_mjob *j); /* NULL: no-op */
/* Queues storing a user turn (with its embedding when there is an
 * embedder); wake (srv_on_event's ctx, may be NULL) is called when it is
 * stored. NULL on OOM; release with srv_mjob_release. */
srv_mjob *srv_memwork_store(srv_memwork *w, const char *user, const char *conversation,
                            int64_t index, const char *text, void *wake);

/* ---- memory.c, memory_api.c ---- */
/* Chat requests, before the body is validated: recall into body's messages
 * (changed in place) and note the turn to store. *handled: an error was
 * sent (return the result). */
enum MHD_Result srv_memory_prepare(srv_conn *k, json_t *body, bool *handled);
/* Adds the "vitamin" extension (memories used, conversation, prompt) to a
 * response body or a first stream chunk. */
void srv_memory_annotate(srv_conn *k, json_t *obj);
/* After srv_memory_prepare: is there a recall to run first? */
bool srv_memory_recall_pending(const srv_conn *k);
/* Hands it to the memory thread; body (stolen) waits in k. False on OOM. */
bool srv_memory_start_recall(srv_conn *k, json_t *body);
bool srv_memory_recall_done(const srv_conn *k);
/* The body with the recalled block in (a reference), and *plain the body
 * without it (NULL when nothing was recalled). */
json_t *srv_memory_finish_recall(srv_conn *k, json_t **plain);
/* The recalled block was left out after all (the prompt was too long). */
void srv_memory_forget_recall(srv_conn *k);
/* The request is done: stores its user turn (on the memory thread). */
void srv_memory_finish(srv_conn *k);
/* Is that turn not stored yet? The response ends only once it is, so a
 * client that has its answer finds the turn in memory (on every server
 * sharing the store). */
bool srv_memory_store_pending(const srv_conn *k);
void srv_memory_req_free(srv_conn *k);
/* The user a memory request acts for (*out NULL after sending the error). */
enum MHD_Result srv_memory_user(srv_conn *k, const json_t *body, const char **out);
/* /v1/memories and below. */
enum MHD_Result srv_memories(srv_conn *k);

/* ---- embed.c ---- */
/* Validates and submits a /v1/embeddings request; answers it (errors, or at
 * once when done) or leaves k waiting. */
enum MHD_Result srv_embed(srv_conn *k);
/* A waiting embeddings request was resumed: collect, answer or wait. */
enum MHD_Result srv_embed_resume(srv_conn *k);
/* Frees k's embedding state (srv_generate_free calls it). */
void srv_embed_free(srv_conn *k);

#endif
