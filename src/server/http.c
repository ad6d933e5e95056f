/*
 * http.c - the server's libmicrohttpd plumbing: the daemon (one internal
 * polling thread, epoll where there is one, suspend/resume), binding,
 * limits (connections, idle timeout, header memory, body size), the access
 * handler that reads a request's headers and body and hands it to its route,
 * errors decided from the headers alone (unknown route 404, wrong method
 * 405, missing or wrong key 401, a declared body over the limit 413,
 * shutting down 503), the response helpers, the wake-up slots through which
 * the engine's on_event resumes a suspended connection, the one log line per
 * request, and the shutdown sequence.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/server_int.h"
#include "util/util.h"

/* ---- responses ---- */

static enum MHD_Result queue(srv_conn *k, int status, struct MHD_Response *r)
{
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    if (status == 405) {
        const char *m = NULL, *l;
        bool a;
        srv_route_find(k->path, &m, &l, &a);
        if (m)
            MHD_add_response_header(r, "Allow", m);
    }
    if (status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result res = MHD_queue_response(k->c, (unsigned)status, r);
    MHD_destroy_response(r);
    if (res == MHD_YES) {
        k->status = status;
        k->phase = PH_DONE;
    }
    return res;
}

enum MHD_Result srv_send_response(srv_conn *k, int status, struct MHD_Response *r)
{
    return queue(k, status, r);
}

enum MHD_Result srv_send_text(srv_conn *k, int status, const char *type, char *text, size_t len)
{
    struct MHD_Response *r =
        text ? MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    return queue(k, status, r);
}

enum MHD_Result srv_send_json(srv_conn *k, int status, json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"internal_error\",\"param\":null,\"code\":null}}";
        struct MHD_Response *r = MHD_create_response_from_buffer(
            sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        if (r)
            MHD_add_response_header(r, "Content-Type", "application/json");
        return queue(k, 500, r);
    }
    return srv_send_text(k, status, "application/json", text, strlen(text));
}

enum MHD_Result srv_send_error(srv_conn *k, const oai_error *err)
{
    return srv_send_json(k, err->status, oai_error_json(err));
}

enum MHD_Result srv_send_errorf(srv_conn *k, int status, const char *type, const char *param,
                                const char *code, const char *fmt, ...)
{
    oai_error e;
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof e.message];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    oai_error_set(&e, status, type, param, code, "%s", msg);
    return srv_send_error(k, &e);
}

/* ---- wake-ups ---- */

#define SLOT_BITS 20

void *srv_conn_event_ctx(const srv_conn *k)
{
    const srv_waker *w = &k->s->wakers[k->waker];
    return (void *)(uintptr_t)((w->gen << SLOT_BITS) | (uint64_t)k->waker);
}

/* The server whose wakers srv_on_event reads: one server per process. */
static srv_server *_Atomic g_server;

void srv_on_event(void *ctx)
{
    srv_server *s = g_server;
    uint64_t v = (uint64_t)(uintptr_t)ctx;
    int slot = (int)(v & ((1u << SLOT_BITS) - 1));
    uint64_t gen = v >> SLOT_BITS;
    if (!s || slot >= s->n_wakers)
        return;
    pthread_mutex_lock(&s->mu);
    srv_waker *w = &s->wakers[slot];
    if (w->conn && w->gen == gen) {
        w->pending = true;
        if (w->suspended) {
            w->suspended = false;
            MHD_resume_connection(w->conn->c);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

bool srv_conn_track(srv_conn *k, int n)
{
    srv_server *s = k->s;
    bool ok = false;
    pthread_mutex_lock(&s->mu);
    if (k->waker >= 0) { /* tracked already (a recall first): n in flight now */
        ok = s->n_inflight - k->inflight + n <= s->cfg.max_queue;
        if (ok) {
            s->n_inflight += n - k->inflight;
            k->inflight = n;
        }
    } else if (s->n_inflight + n <= s->cfg.max_queue && s->free_waker >= 0) {
        int slot = s->free_waker;
        srv_waker *w = &s->wakers[slot];
        s->free_waker = w->next_free;
        w->gen = (w->gen + 1) & ((1ull << (63 - SLOT_BITS)) - 1);
        w->conn = k;
        w->suspended = w->pending = false;
        k->waker = slot;
        k->inflight = n;
        s->n_inflight += n;
        k->next = s->live;
        k->prev = NULL;
        if (s->live)
            s->live->prev = k;
        s->live = k;
        k->listed = true;
        ok = true;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void srv_conn_settle(srv_conn *k)
{
    pthread_mutex_lock(&k->s->mu);
    k->s->n_inflight -= k->inflight;
    k->inflight = 0;
    pthread_mutex_unlock(&k->s->mu);
}

static void untrack(srv_conn *k)
{
    srv_server *s = k->s;
    pthread_mutex_lock(&s->mu);
    s->n_inflight -= k->inflight;
    k->inflight = 0;
    if (k->listed) {
        if (k->prev)
            k->prev->next = k->next;
        else
            s->live = k->next;
        if (k->next)
            k->next->prev = k->prev;
        k->listed = false;
    }
    if (k->waker >= 0) {
        srv_waker *w = &s->wakers[k->waker];
        w->conn = NULL;
        w->suspended = w->pending = false;
        w->next_free = s->free_waker;
        s->free_waker = k->waker;
        k->waker = -1;
    }
    pthread_mutex_unlock(&s->mu);
}

void srv_conn_begin_drain(srv_conn *k)
{
    pthread_mutex_lock(&k->s->mu);
    k->s->wakers[k->waker].pending = false;
    pthread_mutex_unlock(&k->s->mu);
}

bool srv_conn_wait(srv_conn *k)
{
    srv_server *s = k->s;
    pthread_mutex_lock(&s->mu);
    srv_waker *w = &s->wakers[k->waker];
    bool wait = !w->pending;
    w->pending = false;
    if (wait) {
        w->suspended = true;
        MHD_suspend_connection(k->c);
    }
    pthread_mutex_unlock(&s->mu);
    return wait;
}

/* ---- connections ---- */

bool srv_conn_gone(srv_conn *k)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(k->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static const char *bearer(struct MHD_Connection *c, size_t *len)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7))
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    *len = strlen(h);
    while (*len && h[*len - 1] == ' ')
        (*len)--;
    return h;
}

/* Is method one of want's ("GET" or "GET|POST|DELETE"; HEAD goes with GET)? */
static bool method_ok(const char *method, const char *want)
{
    size_t n = strlen(method);
    for (const char *w = want; *w;) {
        size_t l = strcspn(w, "|");
        if ((l == n && !strncmp(w, method, n)) || (l == 3 && !strncmp(w, "GET", 3) &&
                                                   !strcmp(method, "HEAD")))
            return true;
        w += l + (w[l] == '|');
    }
    return false;
}

/* The error the headers alone decide, if any (true: *err filled). */
static bool early_error(srv_conn *k, const char *method, oai_error *err)
{
    srv_server *s = k->s;
    const char *want = NULL;
    bool auth = false;
    k->route = srv_route_find(k->path, &want, &k->label, &auth);
    if (atomic_load(&s->stopping)) {
        oai_error_set(err, 503, "service_unavailable", NULL, NULL, "the server is shutting down");
        return true;
    }
    if (k->route == R_NONE) {
        oai_error_set(err, 404, "not_found_error", NULL, NULL, "no route for %s %.100s", method,
                      k->path);
        return true;
    }
    if (!method_ok(method, want)) {
        oai_error_set(err, 405, "invalid_request_error", NULL, "method_not_allowed",
                      "%.100s takes %s, not %.16s", k->path, want, method);
        return true;
    }
    if (auth && s->auth) {
        size_t n = 0;
        const char *tok = bearer(k->c, &n);
        bool admin = false;
        const char *user = tok ? srv_auth_check(s->auth, tok, n, &admin) : NULL;
        if (!user) {
            oai_error_set(err, 401, "invalid_request_error", NULL, "invalid_api_key",
                          tok ? "Incorrect API key provided."
                              : "You didn't provide an API key (Authorization: Bearer KEY).");
            return true;
        }
        snprintf(k->user, sizeof k->user, "%s", user);
        k->admin = admin;
    }
    const char *cl = MHD_lookup_connection_value(k->c, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long v = strtoull(cl, &end, 10);
        if (end == cl || v > s->cfg.max_body) {
            oai_error_set(err, 413, "invalid_request_error", NULL, "request_too_large",
                          "the request body is over the limit of %zu bytes", s->cfg.max_body);
            return true;
        }
    }
    return false;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)version;
    srv_server *s = cls;
    srv_conn *k = *con_cls;
    if (!k) {
        if (!(k = calloc(1, sizeof *k)))
            return MHD_NO;
        *con_cls = k;
        k->s = s;
        k->c = c;
        k->t0 = vt_now();
        k->waker = -1;
        k->label = "other";
        snprintf(k->method, sizeof k->method, "%s", method ? method : "?");
        snprintf(k->path, sizeof k->path, "%s", url ? url : "/");
        k->phase = PH_BODY;
        if (early_error(k, k->method, &k->early)) {
            k->has_early = true;
            /* answered now if MHD takes a response before the body (it then
             * closes the connection), else once the body has been read */
            srv_send_error(k, &k->early);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (k->phase != PH_BODY || k->has_early || k->too_big)
            return MHD_YES;
        if (k->len + n > s->cfg.max_body) {
            k->too_big = true;
            free(k->body);
            k->body = NULL;
            k->len = k->cap = 0;
            return MHD_YES;
        }
        if (k->len + n + 1 > k->cap) {
            size_t cap = VT_MAX(k->cap * 2, k->len + n + 1);
            char *nb = realloc(k->body, cap);
            if (!nb)
                return MHD_NO;
            k->body = nb;
            k->cap = cap;
        }
        memcpy(k->body + k->len, upload, n);
        k->len += n;
        k->body[k->len] = 0;
        return MHD_YES;
    }
    switch (k->phase) {
    case PH_BODY:
        break;
    case PH_WAIT:
        return srv_generate_resume(k);
    default:
        return MHD_YES;
    }
    if (k->has_early)
        return srv_send_error(k, &k->early);
    if (k->too_big)
        return srv_send_errorf(k, 413, "invalid_request_error", NULL, "request_too_large",
                               "the request body is over the limit of %zu bytes",
                               s->cfg.max_body);
    return srv_route_handle(k);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    srv_conn *k = *con_cls;
    if (!k)
        return;
    *con_cls = NULL;
    srv_server *s = k->s;
    untrack(k);
    double dt = vt_now() - k->t0;
    int status = k->status ? k->status : 499; /* nothing sent: the client went away */
    bool gen = k->route == R_COMPLETIONS || k->route == R_CHAT;
    srv_metrics_request(s->metrics, k->label, status, dt,
                        gen && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (s->cfg.log)
        fprintf(stderr, "vitamin serve: %s %s %d%s prompt=%lld completion=%lld %.1f ms%s%s\n",
                k->method, k->path, status,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)",
                (long long)k->prompt_tokens, (long long)k->completion_tokens, dt * 1e3,
                k->user[0] ? " user=" : "", k->user);
    srv_generate_free(k);
    free(k->body);
    free(k);
}

static void quiet_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    (void)fmt;
    (void)ap;
}

/* ---- start and stop ---- */

srv_server *srv_start(const srv_config *cfg, vt_engine *e, const chat_fmt *chat)
{
    srv_server *s = calloc(1, sizeof *s);
    if (!s) {
        vt_fail(VT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    if (!s->cfg.max_body)
        s->cfg.max_body = 8u << 20;
    if (s->cfg.max_queue <= 0)
        s->cfg.max_queue = 1024;
    if (s->cfg.max_connections <= 0)
        s->cfg.max_connections = 512;
    if (s->cfg.idle_timeout <= 0)
        s->cfg.idle_timeout = 60;
    if (!s->cfg.memory_budget)
        s->cfg.memory_budget = 512;
    if (!s->cfg.memory_user)
        s->cfg.memory_user = "default";
    s->mem = cfg->memory;
    s->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
    s->model_name = strdup(cfg->model_name ? cfg->model_name : "vitamin");
    s->e = e;
    s->tok = eng_tokenizer(e);
    s->chat = chat;
    s->octx = (oai_ctx){.engine = e, .chat = chat, .model_name = s->model_name};
    s->created = (int64_t)time(NULL);
    atomic_init(&s->stopping, false);
    s->n_wakers = s->cfg.max_connections + 8;
    s->wakers = calloc((size_t)s->n_wakers, sizeof *s->wakers);
    s->metrics = srv_metrics_create();
    if (!s->host || !s->model_name || !s->wakers || !s->metrics ||
        pthread_mutex_init(&s->mu, NULL)) {
        vt_fail(VT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < s->n_wakers; i++)
        s->wakers[i].next_free = i + 1 < s->n_wakers ? i + 1 : -1;
    s->free_waker = 0;
    if (cfg->api_key_file && srv_auth_load(cfg->api_key_file, &s->auth))
        goto fail;
    if (s->mem && (!cfg->memory_uri ||
                   !(s->memw = srv_memwork_start(cfg->memory_uri, cfg->memory_embedder, s->tok)))) {
        if (!cfg->memory_uri)
            vt_fail(VT_ERR_INVALID, "a memory store without its URI");
        goto fail;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int gai = getaddrinfo(s->host, port, &hints, &ai);
    if (gai || !ai) {
        vt_fail(VT_ERR_INVALID, "cannot resolve --host %s: %s", s->host, gai_strerror(gai));
        goto fail;
    }
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, VT_MIN(ai->ai_addrlen, sizeof addr));
    bool v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    g_server = s;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    s->d = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_access, s, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->cfg.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)s->cfg.idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 256u, MHD_OPTION_EXTERNAL_LOGGER, quiet_log, NULL,
        MHD_OPTION_END);
    if (!s->d) {
        vt_fail(VT_ERR_IO, "cannot listen on %s:%d (in use, or not an address of this machine)",
                s->host, cfg->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    return s;
fail:
    if (g_server == s)
        g_server = NULL;
    srv_memwork_stop(s->memw);
    srv_auth_free(s->auth);
    srv_metrics_destroy(s->metrics);
    free(s->wakers);
    free(s->host);
    free(s->model_name);
    free(s);
    return NULL;
}

int srv_port(const srv_server *s)
{
    return s->port;
}

static void nap(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

void srv_stop(srv_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    double end = vt_now() + s->cfg.shutdown_grace;
    for (;;) { /* the grace period: running requests may finish */
        pthread_mutex_lock(&s->mu);
        int n = s->n_inflight;
        pthread_mutex_unlock(&s->mu);
        if (n == 0 || vt_now() >= end)
            break;
        nap(0.01);
    }
    /* then abort the rest; their ends resume their connections */
    pthread_mutex_lock(&s->mu);
    for (srv_conn *k = s->live; k; k = k->next)
        for (int32_t i = 0; i < k->n_reqs; i++)
            vt_request_abort(k->reqs[i]);
    pthread_mutex_unlock(&s->mu);
    for (end = vt_now() + 30.0; vt_now() < end;) { /* bounded: each engine step ends */
        bool any = false;
        pthread_mutex_lock(&s->mu);
        any = s->n_inflight > 0;
        for (int i = 0; i < s->n_wakers; i++) {
            srv_waker *w = &s->wakers[i];
            if (w->conn && w->suspended) { /* whatever is still suspended gets to finish */
                w->suspended = false;
                w->pending = true;
                MHD_resume_connection(w->conn->c);
                any = true;
            }
        }
        pthread_mutex_unlock(&s->mu);
        if (!any)
            break;
        nap(0.01);
    }
    MHD_stop_daemon(s->d);
    s->d = NULL;
    srv_memwork_stop(s->memw); /* the turns still queued are stored first */
    s->memw = NULL;
}

void srv_free(srv_server *s)
{
    if (!s)
        return;
    if (s->d)
        srv_stop(s);
    g_server = NULL;
    srv_auth_free(s->auth);
    srv_metrics_destroy(s->metrics);
    pthread_mutex_destroy(&s->mu);
    free(s->wakers);
    free(s->host);
    free(s->model_name);
    free(s);
}
