/*
 * metrics.c - the counters behind `GET /metrics` and their Prometheus text
 * exposition (format 0.0.4): requests by endpoint and status, prompt and
 * generated tokens, histograms of time to first token, time per output token
 * and end-to-end latency (from each engine request's usage), and, read from
 * the engine at scrape time, the running and waiting sequences, KV blocks
 * (used by live requests, kept by the prefix cache, total), preemptions,
 * prefix-cache queries and hits, and the histogram of tokens per step.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

#define MAX_BUCKETS 24
#define MAX_SERIES 128

typedef struct {
    int n;
    double bound[MAX_BUCKETS];
    int64_t count[MAX_BUCKETS + 1]; /* per bucket (not cumulative); last: +Inf */
    double sum;
    int64_t total;
} histogram;

typedef struct {
    char endpoint[32];
    int status;
    int64_t count;
} series;

struct srv_metrics {
    pthread_mutex_t mu;
    series req[MAX_SERIES];
    int n_req;
    int64_t prompt_tokens, generation_tokens;
    histogram ttft, tpot, e2e;
};

static void hist_init(histogram *h, const double *b, int n)
{
    memset(h, 0, sizeof *h);
    h->n = n;
    memcpy(h->bound, b, sizeof *b * (size_t)n);
}

static void hist_add(histogram *h, double v)
{
    int i = 0;
    while (i < h->n && v > h->bound[i])
        i++;
    h->count[i]++;
    h->sum += v;
    h->total++;
}

srv_metrics *srv_metrics_create(void)
{
    static const double ttft[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                  0.75,  1.0,   2.5,  5.0,  7.5,  10,   20,   40,  80};
    static const double tpot[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15,
                                  0.2,   0.3,   0.4,  0.5,   0.75, 1.0,   2.5};
    static const double e2e[] = {0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0,
                                 10,   15,   20,  30,  40,  50,  60,  120, 300};
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m || pthread_mutex_init(&m->mu, NULL)) {
        free(m);
        return NULL;
    }
    hist_init(&m->ttft, ttft, (int)(sizeof ttft / sizeof ttft[0]));
    hist_init(&m->tpot, tpot, (int)(sizeof tpot / sizeof tpot[0]));
    hist_init(&m->e2e, e2e, (int)(sizeof e2e / sizeof e2e[0]));
    return m;
}

void srv_metrics_destroy(srv_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void srv_metrics_request(srv_metrics *m, const char *endpoint, int status, double seconds,
                         bool generation)
{
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_req && (m->req[i].status != status || strcmp(m->req[i].endpoint, endpoint)))
        i++;
    if (i == m->n_req && m->n_req < MAX_SERIES) {
        snprintf(m->req[i].endpoint, sizeof m->req[i].endpoint, "%s", endpoint);
        m->req[i].status = status;
        m->req[i].count = 0;
        m->n_req++;
    }
    if (i < m->n_req)
        m->req[i].count++;
    if (generation && status == 200)
        hist_add(&m->e2e, seconds);
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_usage(srv_metrics *m, const vt_usage *u, int32_t n)
{
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += u->prompt_tokens;
    m->generation_tokens += u->completion_tokens;
    if (u->completion_tokens > 0)
        hist_add(&m->ttft, u->time_to_first_token);
    int64_t per_seq = n > 0 ? u->completion_tokens / n : 0;
    if (per_seq > 1)
        hist_add(&m->tpot, (u->total_time - u->time_to_first_token) / (double)(per_seq - 1));
    pthread_mutex_unlock(&m->mu);
}

static void put_hist(FILE *f, const char *name, const char *help, const histogram *h)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    int64_t cum = 0;
    for (int i = 0; i < h->n; i++) {
        cum += h->count[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %lld\n", name, h->bound[i], (long long)cum);
    }
    cum += h->count[h->n];
    fprintf(f, "%s_bucket{le=\"+Inf\"} %lld\n%s_sum %.9g\n%s_count %lld\n", name, (long long)cum,
            name, h->sum, name, (long long)h->total);
}

static void put_one(FILE *f, const char *name, const char *type, const char *help, int64_t v)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", name, help, name, type, name,
            (long long)v);
}

char *srv_metrics_render(srv_metrics *m, vt_engine *e, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        return NULL;
    eng_counters c;
    eng_get_counters(e, &c);
    pthread_mutex_lock(&m->mu);
    fprintf(f, "# HELP vitamin_requests_total HTTP requests by endpoint and status.\n"
               "# TYPE vitamin_requests_total counter\n");
    for (int i = 0; i < m->n_req; i++)
        fprintf(f, "vitamin_requests_total{endpoint=\"%s\",status=\"%d\"} %lld\n",
                m->req[i].endpoint, m->req[i].status, (long long)m->req[i].count);
    put_one(f, "vitamin_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
            m->prompt_tokens);
    put_one(f, "vitamin_generation_tokens_total", "counter",
            "Tokens generated for finished requests.", m->generation_tokens);
    put_hist(f, "vitamin_time_to_first_token_seconds", "Seconds from submit to the first token.",
             &m->ttft);
    put_hist(f, "vitamin_time_per_output_token_seconds",
             "Seconds per generated token after the first.", &m->tpot);
    put_hist(f, "vitamin_e2e_request_latency_seconds",
             "Seconds from receiving a generation request to its end.", &m->e2e);
    pthread_mutex_unlock(&m->mu);
    put_one(f, "vitamin_num_requests_running", "gauge", "Sequences running in the engine.",
            c.running);
    put_one(f, "vitamin_num_requests_waiting", "gauge", "Sequences waiting for the engine.",
            c.waiting);
    put_one(f, "vitamin_kv_blocks_used", "gauge",
            "KV blocks held by live requests (blocks kept only by the prefix cache are free).",
            c.kv.blocks_used);
    put_one(f, "vitamin_kv_blocks_cached", "gauge",
            "Free KV blocks whose contents the prefix cache keeps.", c.kv.blocks_cached);
    put_one(f, "vitamin_kv_blocks_total", "gauge", "KV blocks in the pool.", c.kv.blocks_total);
    put_one(f, "vitamin_num_preemptions_total", "counter", "Sequences preempted.",
            c.preemptions);
    put_one(f, "vitamin_prefix_cache_queries_total", "counter",
            "Prompt tokens looked up in the prefix cache.", c.kv.prefix_queries);
    put_one(f, "vitamin_prefix_cache_hits_total", "counter",
            "Prompt tokens found in the prefix cache.", c.kv.prefix_hits);
    put_one(f, "vitamin_prefix_deferred_total", "counter",
            "Admissions that waited a step for a shared prompt prefix another request was "
            "computing (instead of computing it too).",
            c.prefix_deferred);
    put_one(f, "vitamin_kv_drawer_hit_tokens_total", "counter",
            "Of the prefix cache hits, tokens loaded from the KV drawer (--kv-drawer).",
            c.kv.backing_hits);
    put_one(f, "vitamin_kv_drawer_blocks_stored_total", "counter",
            "KV blocks written to the drawer.", c.drawer.stored);
    put_one(f, "vitamin_kv_drawer_blocks_loaded_total", "counter",
            "KV blocks loaded from the drawer.", c.drawer.loaded);
    put_one(f, "vitamin_kv_drawer_blocks_dropped_total", "counter",
            "KV blocks not written (the write queue was full, or a write failed).",
            c.drawer.dropped);
    put_one(f, "vitamin_kv_drawer_files_rejected_total", "counter",
            "Drawer files deleted because a check failed (never loaded).", c.drawer.rejected);
    put_one(f, "vitamin_kv_drawer_bytes", "gauge", "Bytes the drawer's files take on disk.",
            c.drawer.bytes);
    put_one(f, "vitamin_kv_drawer_cap_bytes", "gauge", "The drawer's cap (0: no drawer).",
            c.drawer.cap_bytes);
    static const int64_t bounds[ENG_STEP_HIST_N] = ENG_STEP_BOUNDS;
    const char *name = "vitamin_tokens_per_step";
    fprintf(f, "# HELP %s Tokens in each forward pass.\n# TYPE %s histogram\n", name, name);
    int64_t cum = 0;
    for (int i = 0; i < ENG_STEP_HIST_N; i++) {
        cum += c.step_hist[i];
        fprintf(f, "%s_bucket{le=\"%lld\"} %lld\n", name, (long long)bounds[i], (long long)cum);
    }
    cum += c.step_hist[ENG_STEP_HIST_N];
    fprintf(f, "%s_bucket{le=\"+Inf\"} %lld\n%s_sum %lld\n%s_count %lld\n", name, (long long)cum,
            name, (long long)(c.prompt_tokens + c.decode_tokens), name, (long long)c.steps);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}
