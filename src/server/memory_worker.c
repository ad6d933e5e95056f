/*
 * memory_worker.c - the server's memory thread: recall for chat requests
 * and storing their turns, on its own store handle, computing embeddings
 * with the configured embedder (the served engine or a model of its own)
 * when there is one. The HTTP thread hands it a job and goes on serving;
 * a recall job wakes its connection (srv_on_event) when done, a store job is
 * fire-and-forget (every job still queued at shutdown is done before the
 * thread ends, so no acknowledged turn is lost on a clean stop).
 *
 * A job is shared by the connection and the worker (a reference each); the
 * last one to let go frees it, so a client that leaves mid-recall costs
 * nothing but the wasted work. The messages of a recall job belong to the
 * worker until `done` is set, then to the connection again.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory.h"
#include "server/server_int.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

struct srv_mjob {
    srv_mjob_kind kind;
    atomic_int refs;
    atomic_bool done;
    srv_mjob *next;
    char user[MEM_USER_MAX + 8];
    char conversation[MEM_ID_MAX + 8];
    int64_t index;
    char *text;      /* store: the turn */
    json_t *messages; /* recall: the conversation, changed in place */
    size_t budget;
    void *wake;      /* recall: the connection's srv_on_event ctx */
    json_t *used;    /* recall: the ids put in (a new array) */
    int32_t n_embd;  /* recall: the query embedding's length, 0 without */
};

struct srv_memwork {
    pthread_t thread;
    bool started, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_mjob *head, *tail;
    mem_store *store;
    vt_engine *embedder;
    const tok_tokenizer *tok;
    atomic_llong recalls, stores, failures;
};

static void job_unref(srv_mjob *j)
{
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1)
        return;
    free(j->text);
    json_decref(j->messages);
    json_decref(j->used);
    free(j);
}

static size_t count_tokens(void *ctx, const char *text, size_t len)
{
    return tok_count(ctx, text, len);
}

static uint64_t user_salt(const char *user)
{
    return vt_hash64(user, strlen(user), 0x6d656d) | 1;
}

/* The embedding of text, or NULL (no embedder, or it failed: logged). */
static float *embed(srv_memwork *w, const char *user, const char *text, int32_t *n)
{
    *n = 0;
    if (!w->embedder || !text || !*text)
        return NULL;
    float *v = NULL;
    if (eng_embed_text(w->embedder, text, strlen(text), user_salt(user), &v, n) != VT_OK) {
        fprintf(stderr, "vitamin serve: memory embedding failed: %s\n", vt_last_error());
        atomic_fetch_add(&w->failures, 1);
        return NULL;
    }
    return v;
}

static void run_recall(srv_memwork *w, srv_mjob *j)
{
    size_t last;
    char *query = mem_last_user_text(j->messages, &last);
    int32_t n = 0;
    float *q = embed(w, j->user, query, &n);
    free(query);
    j->n_embd = n;
    if (mem_recall_messages(w->store, j->user, j->messages, j->budget, q, n, count_tokens,
                            (void *)w->tok, &j->used) != VT_OK) {
        /* recall failing never fails the chat: it goes on without memories */
        fprintf(stderr, "vitamin serve: memory recall for %s failed: %s\n", j->user,
                vt_last_error());
        atomic_fetch_add(&w->failures, 1);
    }
    free(q);
    atomic_fetch_add(&w->recalls, 1);
}

static void run_store(srv_memwork *w, srv_mjob *j)
{
    int32_t n = 0;
    float *v = embed(w, j->user, j->text, &n);
    if (mem_store_turn_embedded(w->store, j->user, j->conversation, j->index, "user", j->text,
                                mem_time_now(), v, n, NULL) != VT_OK) {
        fprintf(stderr, "vitamin serve: storing a turn of %s failed: %s\n", j->user,
                vt_last_error());
        atomic_fetch_add(&w->failures, 1);
    } else {
        atomic_fetch_add(&w->stores, 1);
    }
    free(v);
}

static void *worker_main(void *arg)
{
    srv_memwork *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        srv_mjob *j = w->head;
        if (!j)
            break; /* stopping, and the queue is drained */
        w->head = j->next;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        if (j->kind == SRV_MJOB_RECALL) {
            if (atomic_load(&j->refs) > 1) /* the connection still waits */
                run_recall(w, j);
            atomic_store(&j->done, true);
            if (j->wake)
                srv_on_event(j->wake);
        } else {
            run_store(w, j);
            atomic_store(&j->done, true);
            if (j->wake)
                srv_on_event(j->wake);
        }
        job_unref(j);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

srv_memwork *srv_memwork_start(const char *uri, vt_engine *embedder, const tok_tokenizer *tok)
{
    srv_memwork *w = calloc(1, sizeof *w);
    if (!w) {
        vt_fail(VT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->embedder = embedder;
    w->tok = tok;
    if (mem_open(uri, NULL, &w->store) != VT_OK) {
        srv_memwork_stop(w);
        return NULL;
    }
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        vt_fail(VT_ERR_NOMEM, "cannot start the memory thread");
        srv_memwork_stop(w);
        return NULL;
    }
    w->started = true;
    return w;
}

void srv_memwork_stop(srv_memwork *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL); /* after the queue is drained */
    }
    mem_close(w->store);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static bool submit(srv_memwork *w, srv_mjob *j)
{
    pthread_mutex_lock(&w->mu);
    bool ok = !w->stop;
    if (ok) {
        if (w->tail)
            w->tail->next = j;
        else
            w->head = j;
        w->tail = j;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return ok;
}

srv_mjob *srv_memwork_recall(srv_memwork *w, const char *user, json_t *messages, size_t budget,
                             void *wake)
{
    srv_mjob *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->kind = SRV_MJOB_RECALL;
    atomic_init(&j->refs, 2);
    atomic_init(&j->done, false);
    snprintf(j->user, sizeof j->user, "%s", user);
    j->messages = messages; /* stolen */
    j->budget = budget;
    j->wake = wake;
    if (!submit(w, j)) {
        atomic_store(&j->refs, 1);
        atomic_store(&j->done, true); /* nothing recalled */
    }
    return j;
}

bool srv_mjob_done(const srv_mjob *j)
{
    return atomic_load(&j->done);
}

json_t *srv_mjob_take_messages(srv_mjob *j, json_t **used)
{
    json_t *m = j->messages;
    j->messages = NULL;
    *used = j->used;
    j->used = NULL;
    return m;
}

void srv_mjob_release(srv_mjob *j)
{
    job_unref(j);
}

srv_mjob *srv_memwork_store(srv_memwork *w, const char *user, const char *conversation,
                            int64_t index, const char *text, void *wake)
{
    srv_mjob *j = calloc(1, sizeof *j);
    if (!j || !(j->text = strdup(text))) {
        free(j);
        fprintf(stderr, "vitamin serve: out of memory storing a turn\n");
        return NULL;
    }
    j->kind = SRV_MJOB_STORE;
    j->wake = wake;
    atomic_init(&j->refs, 2);
    atomic_init(&j->done, false);
    snprintf(j->user, sizeof j->user, "%s", user);
    snprintf(j->conversation, sizeof j->conversation, "%s", conversation);
    j->index = index;
    if (!submit(w, j)) {
        fprintf(stderr, "vitamin serve: a turn of %s arrived after the memory thread stopped\n",
                user);
        atomic_store(&j->refs, 1);
        atomic_store(&j->done, true);
    }
    return j;
}
