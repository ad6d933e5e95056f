/*
 * bench_kv.c - `make bench-kv`: the KV-efficiency benchmark of issue 7.
 * A seeded mixed-length workload (log-normal prompt and output lengths,
 * Poisson arrivals faster than any configuration serves them, so that the
 * pool is the limit) runs over one KV pool of C token slots two ways:
 * vitamin's real scheduler and block manager (sched/ + kv/, no model: the
 * memory accounting does not depend on the math), and a per-slot cache as
 * llama.cpp's server gives it with `-np N -c C` (each slot C/N tokens, a
 * longer request fails), with N chosen so that the workload's longest
 * request fits and, second, so that its 95th-percentile one does (the rest
 * fail). Per step it measures allocated-but-unused KV slots and running
 * sequences (kvsim.c), and prints a markdown table and one JSON line per
 * configuration. Then a shorter workload runs through the real engine on a
 * tiny gen-model model, and the engine's own counters (running, waiting,
 * blocks used, preemptions after every step) are compared with the
 * simulation's. Targets: unused < 4% with 16-token blocks; concurrency >= 2x
 * the per-slot cache's. Not a test (tests/test_kv_efficiency.c is).
 *
 *   bench_kv [--vitamin PATH] [--vocab GGUF] [--requests N] [--seed N]
 *            [--no-engine] [--quick]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvsim.h"

typedef struct {
    const char *name;
    kvs_workload_cfg w;
    int64_t pool_tokens;
    int32_t block_size;
} config;

static void print_workload(const char *name, const kvs_workload *w)
{
    const kvs_workload_cfg *c = &w->cfg;
    printf("workload %s: seed %" PRIu64 ", %d requests, Poisson arrivals %.2f/step; prompts "
           "log-normal median %.0f sigma %.2f in [%d, %d] (p50 %" PRId64 ", p95 %" PRId64
           ", max %" PRId64 "); outputs median %.0f sigma %.2f in [%d, %d] (p50 %" PRId64
           ", p95 %" PRId64 ", max %" PRId64 "); KV need per request p50 %" PRId64
           ", p95 %" PRId64 ", max %" PRId64 "\n",
           name, c->seed, c->n_requests, c->rate, c->prompt_median, c->prompt_sigma, c->prompt_min,
           c->prompt_max, kvs_quantile(w, 0, 0.5), kvs_quantile(w, 0, 0.95),
           kvs_quantile(w, 0, 1), c->output_median, c->output_sigma, c->output_min,
           c->output_max, kvs_quantile(w, 1, 0.5), kvs_quantile(w, 1, 0.95),
           kvs_quantile(w, 1, 1), kvs_quantile(w, 2, 0.5), kvs_quantile(w, 2, 0.95),
           kvs_quantile(w, 2, 1));
}

static void row(const char *wl, int64_t pool, int32_t bs, const char *sys, const kvs_result *r,
                int32_t n_req)
{
    char n[32] = "-";
    if (r->n_slots)
        snprintf(n, sizeof n, "%" PRId64 " x %" PRId64, r->n_slots, r->pool_slots / r->n_slots);
    printf("| %s | %" PRId64 " | %d | %s | %s | %.1f%% | %.2f%% | %.1f%% | %.1f%% | %.1f%% | %.1f | "
           "%.1f | %" PRId64 " | %" PRId64 " | %" PRId64 " | %.1f%% |\n",
           wl, pool, bs, sys, n, 100.0 * r->failed / n_req, 100 * r->unused_mean,
           100 * r->unused_max_loaded, 100 * r->unused_max, 100 * r->util_mean,
           r->running_mean_loaded, r->running_mean, r->running_peak, r->steps, r->preemptions,
           r->tokens_computed ? 100.0 * r->tokens_recomputed / r->tokens_computed : 0.0);
}

static void json_result(const char *key, const kvs_result *r, int32_t n_req, bool comma)
{
    printf("\"%s\":{\"slots\":%" PRId64 ",\"slot_tokens\":%" PRId64 ",\"failed\":%" PRId64
           ",\"failed_frac\":%.4f,\"completed\":%" PRId64 ",\"unused_mean\":%.5f,"
           "\"unused_max\":%.5f,\"unused_max_loaded\":%.5f,\"unused_agg\":%.5f,"
           "\"unused_occupied\":%.5f,\"pool_util_mean\":%.5f,\"running_mean_loaded\":%.3f,"
           "\"running_mean\":%.3f,\"running_peak\":%" PRId64 ",\"steps\":%" PRId64
           ",\"loaded_steps\":%" PRId64 ",\"preemptions\":%" PRId64 ",\"tokens_computed\":%" PRId64
           ",\"tokens_recomputed\":%" PRId64 ",\"accounting_errors\":%" PRId64 "}%s",
           key, r->n_slots, r->n_slots ? r->pool_slots / r->n_slots : 0, r->failed,
           (double)r->failed / n_req, r->completed, r->unused_mean, r->unused_max,
           r->unused_max_loaded, r->unused_agg, r->unused_occupied, r->util_mean,
           r->running_mean_loaded, r->running_mean, r->running_peak, r->steps, r->loaded_steps,
           r->preemptions, r->tokens_computed, r->tokens_recomputed, r->accounting_errors,
           comma ? "," : "");
}

typedef struct {
    const config *cfg;
    kvs_result v, s_max, s_p95;
    int32_t n_max, n_p95;
    int64_t need_max, need_p95;
    double ratio, ratio_p95;
} outcome;

static int run_config(const config *c, outcome *o)
{
    kvs_workload w;
    if (kvs_workload_make(&c->w, &w)) {
        fprintf(stderr, "bench_kv: %s\n", vt_last_error());
        return 1;
    }
    o->cfg = c;
    kvs_paged_cfg pc = {.pool_tokens = c->pool_tokens, .block_size = c->block_size};
    int64_t max_need = kvs_quantile(&w, 2, 1), p95 = kvs_quantile(&w, 2, 0.95);
    o->need_max = max_need;
    o->need_p95 = p95;
    o->n_max = (int32_t)(c->pool_tokens / max_need);
    o->n_p95 = (int32_t)(c->pool_tokens / p95);
    int rc = 0;
    if (kvs_run_paged(&w, &pc, NULL, NULL, &o->v) ||
        (o->n_max >= 1 && kvs_run_slots(&w, c->pool_tokens, o->n_max, 0, &o->s_max)) ||
        (o->n_p95 >= 1 && kvs_run_slots(&w, c->pool_tokens, o->n_p95, 0, &o->s_p95))) {
        fprintf(stderr, "bench_kv: %s: %s\n", c->name, vt_last_error());
        rc = 1;
    }
    o->ratio = o->s_max.running_mean_loaded > 0
                   ? o->v.running_mean_loaded / o->s_max.running_mean_loaded
                   : 0;
    o->ratio_p95 = o->s_p95.running_mean_loaded > 0
                       ? o->v.running_mean_loaded / o->s_p95.running_mean_loaded
                       : 0;
    kvs_workload_free(&w);
    return rc;
}

/* The shorter workload through the engine, against the simulation. */
static int run_engine_check(const char *vitamin, const char *vocab, uint64_t seed)
{
    kvs_workload_cfg wc = {.seed = seed,
                           .n_requests = 64,
                           .prompt_median = 150,
                           .prompt_sigma = 0.9,
                           .prompt_min = 20,
                           .prompt_max = 1000,
                           .output_median = 40,
                           .output_sigma = 0.8,
                           .output_min = 10,
                           .output_max = 300,
                           .rate = 0.5,
                           .vocab = 32000};
    kvs_paged_cfg pc = {.pool_tokens = 4096, .block_size = 16};
    char path[] = "/tmp/bench-kv-XXXXXX";
    if (!mkdtemp(path)) {
        perror("bench_kv: mkdtemp");
        return 1;
    }
    char model[256];
    snprintf(model, sizeof model, "%s/tiny.gguf", path);
    md_model *m = NULL;
    tok_tokenizer *tok = NULL;
    kvs_workload w = {0};
    kvs_trace ts = {0}, te = {0};
    kvs_result rs, re;
    int rc = 1;
    if (kvs_tiny_model(vitamin, vocab, model, &m, &tok)) {
        fprintf(stderr, "bench_kv: the engine model: %s\n", vt_last_error());
        goto out;
    }
    wc.vocab = (int32_t)m->hp.n_vocab;
    if (kvs_workload_make(&wc, &w) || kvs_run_paged(&w, &pc, kvs_trace_push, &ts, &rs) ||
        kvs_run_engine(m, tok, NULL, &w, &pc, kvs_trace_push, &te, &re)) {
        fprintf(stderr, "bench_kv: engine check: %s\n", vt_last_error());
        goto out;
    }
    printf("\n## The engine's own counters (vt_engine, tiny gen-model llama, 1 thread)\n\n");
    print_workload("engine", &w);
    int64_t diff = kvs_trace_diff(&ts, &te);
    /* unused from the engine's blocks and the simulation's stored tokens
     * (meaningful where the traces agree) */
    double un_sum = 0, un_max = 0;
    int64_t un_n = 0;
    for (int64_t i = 0; i < te.n && i < ts.n; i++) {
        int64_t alloc = te.v[i].blocks_used * pc.block_size;
        if (alloc <= 0)
            continue;
        double u = (double)(alloc - ts.v[i].stored) / (double)alloc;
        un_sum += u;
        un_n++;
        if (u > un_max)
            un_max = u;
    }
    double bsum_s = 0, bsum_e = 0;
    for (int64_t i = 0; i < ts.n; i++)
        bsum_s += (double)ts.v[i].blocks_used;
    for (int64_t i = 0; i < te.n; i++)
        bsum_e += (double)te.v[i].blocks_used;
    printf("\npool %" PRId64 " tokens, %d-token blocks, 512 tokens/step\n\n", pc.pool_tokens,
           pc.block_size);
    printf("| run | steps | completed | failed | running mean | peak | blocks used mean | "
           "preemptions | unused mean | seconds |\n|---|---|---|---|---|---|---|---|---|---|\n");
    printf("| simulation (sched/ + kv/) | %" PRId64 " | %" PRId64 " | %" PRId64 " | %.2f | %" PRId64
           " | %.1f | %" PRId64 " | %.2f%% | %.2f |\n",
           rs.steps, rs.completed, rs.failed, rs.running_mean, rs.running_peak,
           ts.n ? bsum_s / (double)ts.n : 0.0, rs.preemptions, 100 * rs.unused_mean, rs.seconds);
    printf("| engine (eng_counters) | %" PRId64 " | %" PRId64 " | %" PRId64 " | %.2f | %" PRId64
           " | %.1f | %" PRId64 " | %.2f%% | %.2f |\n\n",
           re.steps, re.completed, re.failed, re.running_mean, re.running_peak,
           te.n ? bsum_e / (double)te.n : 0.0, re.preemptions,
           un_n ? 100 * un_sum / (double)un_n : 0.0, re.seconds);
    if (diff < 0)
        printf("per-step trace (running, waiting, blocks used, preemptions): identical over all "
               "%" PRId64 " steps\n",
               te.n);
    else
        printf("per-step trace DIFFERS first at step %" PRId64 ": simulation running %" PRId64
               " waiting %" PRId64 " blocks %" PRId64 " preemptions %" PRId64
               "; engine running %" PRId64 " waiting %" PRId64 " blocks %" PRId64
               " preemptions %" PRId64 "\n",
               diff, diff < ts.n ? ts.v[diff].running : -1, diff < ts.n ? ts.v[diff].waiting : -1,
               diff < ts.n ? ts.v[diff].blocks_used : -1,
               diff < ts.n ? ts.v[diff].preemptions : -1, diff < te.n ? te.v[diff].running : -1,
               diff < te.n ? te.v[diff].waiting : -1, diff < te.n ? te.v[diff].blocks_used : -1,
               diff < te.n ? te.v[diff].preemptions : -1);
    printf("{\"bench\":\"kv_engine\",\"seed\":%" PRIu64 ",\"requests\":%d,\"pool_tokens\":%" PRId64
           ",\"block_size\":%d,\"steps_sim\":%" PRId64 ",\"steps_engine\":%" PRId64
           ",\"trace_identical\":%s,\"first_diff\":%" PRId64 ",\"running_mean_sim\":%.3f,"
           "\"running_mean_engine\":%.3f,\"running_peak_engine\":%" PRId64
           ",\"blocks_used_mean_engine\":%.2f,\"preemptions_engine\":%" PRId64
           ",\"unused_mean_sim\":%.5f,\"unused_mean_engine_blocks\":%.5f,"
           "\"unused_max_engine_blocks\":%.5f,\"completed_engine\":%" PRId64
           ",\"failed_engine\":%" PRId64 ",\"seconds_engine\":%.3f}\n",
           seed, w.n, pc.pool_tokens, pc.block_size, rs.steps, re.steps,
           diff < 0 ? "true" : "false", diff, rs.running_mean, re.running_mean, re.running_peak,
           te.n ? bsum_e / (double)te.n : 0.0, re.preemptions, rs.unused_mean,
           un_n ? un_sum / (double)un_n : 0.0, un_max, re.completed, re.failed, re.seconds);
    rc = diff < 0 && re.failed == 0 && re.completed == w.n && !ts.oom && !te.oom ? 0 : 1;
out:
    kvs_trace_free(&ts);
    kvs_trace_free(&te);
    kvs_workload_free(&w);
    tok_destroy(tok);
    md_destroy(m);
    unlink(model);
    rmdir(path);
    return rc;
}

int main(int argc, char **argv)
{
    const char *vitamin = getenv("VT_BIN") ? getenv("VT_BIN") : "build/vitamin";
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    int32_t n_requests = 2000;
    uint64_t seed = 1;
    bool engine = true, quick = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "--vitamin") && more)
            vitamin = argv[++i];
        else if (!strcmp(a, "--vocab") && more)
            vocab = argv[++i];
        else if (!strcmp(a, "--requests") && more)
            n_requests = atoi(argv[++i]);
        else if (!strcmp(a, "--seed") && more)
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--no-engine"))
            engine = false;
        else if (!strcmp(a, "--quick"))
            quick = true;
        else {
            fprintf(stderr, "usage: bench_kv [--vitamin PATH] [--vocab GGUF] [--requests N] "
                            "[--seed N] [--no-engine] [--quick]\n");
            return 2;
        }
    }
    if (n_requests < 1)
        n_requests = 1;
    if (quick && n_requests > 300)
        n_requests = 300;
    /* "mixed": chat/completion-like lengths, long-tailed; "short": the worst
     * case for 16-token blocks, where a partial last block is a large part
     * of a sequence */
    kvs_workload_cfg mixed = kvs_mixed(seed, n_requests);
    kvs_workload_cfg shortw = mixed;
    shortw.prompt_median = 50;
    shortw.prompt_sigma = 0.7;
    shortw.prompt_max = 400;
    shortw.output_median = 25;
    shortw.output_sigma = 0.7;
    shortw.output_max = 200;
    shortw.rate = 8.0;
    const config configs[] = {
        {"mixed", mixed, 16384, 16}, {"mixed", mixed, 32768, 16}, {"mixed", mixed, 65536, 16},
        {"mixed", mixed, 32768, 8},  {"mixed", mixed, 32768, 32}, {"short", shortw, 16384, 16},
        {"short", shortw, 16384, 8},
    };
    int n_configs = (int)(sizeof configs / sizeof configs[0]);

    printf("# KV efficiency: vitamin's paged pool (sched/ + kv/) vs a per-slot cache "
           "(llama.cpp -np N -c C)\n\n");
    printf("One step = one forward pass of at most 512 tokens (decodes first, then prompt "
           "chunks, FCFS). Unused = allocated KV slots not holding a token (paged: blocks "
           "held x block size - tokens stored; per-slot: N x C/N - tokens stored), over "
           "allocated, measured after every step. \"loaded\" = the steps with a request "
           "waiting (the pool, not demand, is the limit). Per-slot N: the longest request "
           "fits (N = floor(C / max need)) or the 95th-percentile one does (longer ones "
           "fail).\n\n");
    kvs_workload w;
    const kvs_workload_cfg *seen[2] = {&mixed, &shortw};
    for (int i = 0; i < 2; i++) {
        if (kvs_workload_make(seen[i], &w) == VT_OK) {
            print_workload(i ? "short" : "mixed", &w);
            kvs_workload_free(&w);
        }
    }
    printf("\n| workload | C | block | system | slots | failed | unused mean | unused max "
           "(loaded) | unused max (all) | pool util | running (loaded) | running (all) | peak | "
           "steps | preempt | recomputed |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    outcome *oc = calloc((size_t)n_configs, sizeof *oc);
    int rc = 0;
    for (int i = 0; i < n_configs; i++) {
        const config *c = &configs[i];
        outcome *o = &oc[i];
        rc |= run_config(c, o);
        row(c->name, c->pool_tokens, c->block_size, "vitamin paged", &o->v, c->w.n_requests);
        if (o->n_max >= 1)
            row(c->name, c->pool_tokens, c->block_size, "per-slot, max fits", &o->s_max,
                c->w.n_requests);
        if (o->n_p95 >= 1)
            row(c->name, c->pool_tokens, c->block_size, "per-slot, p95 fits", &o->s_p95,
                c->w.n_requests);
        fflush(stdout);
    }
    printf("\n| workload | C | block | unused < 4%% | running vs per-slot (max fits) | "
           "running vs per-slot (p95 fits, %% failed) | ratio >= 2x | steps vs per-slot (max fits) |\n"
           "|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_configs; i++) {
        const outcome *o = &oc[i];
        printf("| %s | %" PRId64 " | %d | %s (%.2f%%) | %.2fx (%.1f vs %.1f, N=%d) | %.2fx (N=%d, "
               "%.1f%%) | %s | %.2fx fewer |\n",
               o->cfg->name, o->cfg->pool_tokens, o->cfg->block_size,
               o->v.unused_mean < 0.04 ? "yes" : "NO", 100 * o->v.unused_mean, o->ratio,
               o->v.running_mean_loaded, o->s_max.running_mean_loaded, o->n_max, o->ratio_p95,
               o->n_p95, 100.0 * o->s_p95.failed / o->cfg->w.n_requests,
               o->ratio >= 2 ? "yes" : "NO",
               o->v.steps ? (double)o->s_max.steps / (double)o->v.steps : 0.0);
    }
    printf("\n");
    for (int i = 0; i < n_configs; i++) {
        const outcome *o = &oc[i];
        const config *c = o->cfg;
        printf("{\"bench\":\"kv\",\"workload\":\"%s\",\"seed\":%" PRIu64 ",\"requests\":%d,"
               "\"pool_tokens\":%" PRId64 ",\"block_size\":%d,\"max_batch_tokens\":512,"
               "\"need_max\":%" PRId64 ",\"need_p95\":%" PRId64 ",",
               c->name, c->w.seed, c->w.n_requests, c->pool_tokens, c->block_size, o->need_max,
               o->need_p95);
        json_result("vitamin", &o->v, c->w.n_requests, true);
        json_result("per_slot_max", &o->s_max, c->w.n_requests, true);
        json_result("per_slot_p95", &o->s_p95, c->w.n_requests, true);
        printf("\"concurrency_ratio\":%.3f,\"concurrency_ratio_p95\":%.3f,"
               "\"unused_target_met\":%s,\"ratio_target_met\":%s}\n",
               o->ratio, o->ratio_p95, o->v.unused_mean < 0.04 ? "true" : "false",
               o->ratio >= 2 ? "true" : "false");
    }
    free(oc);
    fflush(stdout);
    if (engine)
        rc |= run_engine_check(vitamin, vocab, seed);
    return rc;
}
