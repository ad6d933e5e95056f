/*
 * request.c - a request's handle and event queue (vitamin.h): the engine
 * thread pushes events, any client thread reads them with vt_request_next,
 * aborts with vt_request_abort and lets go with vt_request_free (an
 * embedding event owns a copy of its vector). The handle
 * is reference-counted (the client's reference and the engine's, dropped
 * when the request ends there), so either side may finish first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine_int.h"

vt_request *eng_request_new(void)
{
    vt_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_mutex_init(&r->mu, NULL)) {
        free(r);
        return NULL;
    }
    if (pthread_cond_init(&r->cv, &ca)) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
    atomic_init(&r->abort_req, false);
    r->refs = 2; /* the client's and the engine's */
    r->slot = -1;
    return r;
}

bool eng_request_push(vt_request *r, const vt_event *ev, const char *text, size_t len)
{
    ev_node *n = calloc(1, sizeof *n);
    if (!n)
        return false;
    n->ev = *ev;
    if (text && len) {
        if (!(n->text = malloc(len + 1))) {
            free(n);
            return false;
        }
        memcpy(n->text, text, len);
        n->text[len] = 0;
    }
    n->ev.text = n->text ? n->text : "";
    n->ev.len = n->text ? len : 0;
    n->ev.embedding = NULL;
    if (ev->kind == VT_EV_EMBEDDING && ev->embedding && ev->n_embd > 0) {
        if (!(n->vec = malloc(sizeof *n->vec * (size_t)ev->n_embd))) {
            free(n->text);
            free(n);
            return false;
        }
        memcpy(n->vec, ev->embedding, sizeof *n->vec * (size_t)ev->n_embd);
        n->ev.embedding = n->vec;
    }
    pthread_mutex_lock(&r->mu);
    if (r->tail)
        r->tail->next = n;
    else
        r->head = n;
    r->tail = n;
    if (ev->kind == VT_EV_DONE)
        r->done_queued = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return true;
}

void eng_request_notify(vt_request *r)
{
    if (r->on_event)
        r->on_event(r->on_event_ctx);
}

static void free_node(ev_node *n)
{
    if (n) {
        free(n->text);
        free(n->vec);
        free(n);
    }
}

void eng_request_free_engine_side(vt_request *r)
{
    if (r->c) {
        for (int32_t i = 0; i < r->p.n; i++) {
            smp_destroy(r->c[i].smp);
            tok_stream_destroy(r->c[i].ts);
        }
        free(r->c);
        r->c = NULL;
    }
    free(r->prompt);
    r->prompt = NULL;
    free(r->emb);
    r->emb = NULL;
    free(r->bias);
    r->bias = NULL;
    if (r->stops) {
        for (int32_t i = 0; i < r->p.n_stop; i++)
            free(r->stops[i]);
        free(r->stops);
        r->stops = NULL;
    }
}

static void destroy(vt_request *r)
{
    eng_request_free_engine_side(r);
    for (ev_node *n = r->head, *next; n; n = next) {
        next = n->next;
        free_node(n);
    }
    free_node(r->cur);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void eng_request_unref(vt_request *r)
{
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left == 0)
        destroy(r);
}

vt_err eng_request_copy_params(vt_request *r, const vt_request_params *p)
{
    r->p = *p;
    r->p.prompt = NULL;
    r->p.logit_bias = NULL;
    r->p.stop = NULL;
    r->p.n_stop = 0;
    if (!(r->prompt = malloc(sizeof *r->prompt * (size_t)p->n_prompt)))
        goto oom;
    memcpy(r->prompt, p->prompt, sizeof *r->prompt * (size_t)p->n_prompt);
    r->p.prompt = r->prompt;
    if (p->n_logit_bias > 0) {
        if (!(r->bias = malloc(sizeof *r->bias * (size_t)p->n_logit_bias)))
            goto oom;
        memcpy(r->bias, p->logit_bias, sizeof *r->bias * (size_t)p->n_logit_bias);
        r->p.logit_bias = r->bias;
    }
    if (p->n_stop > 0) {
        if (!(r->stops = calloc((size_t)p->n_stop, sizeof *r->stops)))
            goto oom;
        for (int32_t i = 0; i < p->n_stop; i++) {
            if (!(r->stops[i] = strdup(p->stop[i])))
                goto oom;
            r->p.n_stop = i + 1;
        }
        r->p.stop = (const char *const *)r->stops;
    }
    return VT_OK;
oom:
    return vt_fail(VT_ERR_NOMEM, "out of memory copying the request");
}

int vt_request_next(vt_request *r, vt_event *ev, int timeout_ms)
{
    struct timespec until;
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&r->mu);
    free_node(r->cur);
    r->cur = NULL;
    int rc;
    for (;;) {
        if (r->head) {
            ev_node *n = r->head;
            r->head = n->next;
            if (!r->head)
                r->tail = NULL;
            r->cur = n;
            *ev = n->ev;
            if (n->ev.kind == VT_EV_DONE)
                r->done_read = true;
            rc = 1;
            break;
        }
        if (r->done_read) {
            rc = -1;
            break;
        }
        if (timeout_ms == 0) {
            rc = 0;
            break;
        }
        int w = timeout_ms < 0 ? pthread_cond_wait(&r->cv, &r->mu)
                               : pthread_cond_timedwait(&r->cv, &r->mu, &until);
        if (w == ETIMEDOUT && !r->head) {
            rc = r->done_read ? -1 : 0;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void vt_request_abort(vt_request *r)
{
    if (!r)
        return;
    /* r->mu is held throughout: the engine queues VT_EV_DONE under it and
     * ends every request before it goes away, so while DONE is not queued
     * the engine is alive. Lock order: a request's mu, then the engine's. */
    pthread_mutex_lock(&r->mu);
    if (!r->done_queued && !atomic_exchange(&r->abort_req, true)) {
        vt_engine *e = r->e;
        pthread_mutex_lock(&e->mu);
        e->abort_pending = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_unlock(&r->mu);
}

void vt_request_free(vt_request *r)
{
    if (!r)
        return;
    vt_request_abort(r);
    eng_request_unref(r);
}
