/*
 * test_kv_efficiency.c - issue 7's KV-efficiency targets, bounded for the
 * suite (the full benchmark is `make bench-kv`, bench/bench_kv.c; both run
 * the simulation of bench/kvsim.c). A small fixed-seed mixed-length
 * workload (log-normal prompts 20..4000 tokens, outputs 10..1000, Poisson
 * arrivals faster than the pool serves them) runs on the real sched/ + kv/
 * over a pool of C = 16384 token slots in 16-token blocks, and on a
 * per-slot cache as llama.cpp's `-np N -c C` gives it (slots of C/N
 * tokens; N so that the longest request fits, and N so that the
 * 95th-percentile one does, the rest failing). Asserted: allocated but
 * unused KV slots < 4% (mean over steps, and at every step where requests
 * wait); at least 2x the per-slot cache's running sequences while requests
 * wait; kv/'s blocks-used count equals the blocks the stored tokens need
 * at every step; every request completes and every token position is
 * computed (recomputation after preemption counted apart). Controls show
 * that the measures can fail: 256-token blocks waste > 4%, and a scheduler
 * capped at the per-slot cache's N sequences gets no 2x. Then a shorter
 * workload runs through the real engine (a tiny gen-model model) and its
 * own counters (running, waiting, blocks used, preemptions) must equal the
 * simulation's after every step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../bench/kvsim.h"
#include "test.h"

#define POOL 16384
#define BLOCK 16

static kvs_workload_cfg mixed_cfg(void)
{
    return kvs_mixed(7, 400);
}

static int64_t total_need(const kvs_workload *w)
{
    int64_t t = 0;
    for (int32_t i = 0; i < w->n; i++)
        t += kvs_need(&w->reqs[i]);
    return t;
}

/* Every request ran to its end, kv/ agreed with the stored tokens, and each
 * token position was computed (once, plus recomputation). */
static void check_paged_run(const kvs_workload *w, const kvs_result *r, const char *what)
{
    CHECKF(r->completed == w->n && r->failed == 0, "%s: %lld of %d requests completed, %lld failed",
           what, (long long)r->completed, w->n, (long long)r->failed);
    CHECKF(r->accounting_errors == 0,
           "%s: at %lld steps kv/'s blocks used were not the blocks the stored tokens need", what,
           (long long)r->accounting_errors);
    CHECKF(r->tokens_computed - r->tokens_recomputed == total_need(w),
           "%s: %lld token positions computed first-time, the workload has %lld", what,
           (long long)(r->tokens_computed - r->tokens_recomputed), (long long)total_need(w));
}

static void test_paged_vs_per_slot(void)
{
    kvs_workload_cfg wc = mixed_cfg();
    kvs_workload w;
    if (kvs_workload_make(&wc, &w)) {
        test_fail_at(__FILE__, __LINE__, "workload: %s", vt_last_error());
        return;
    }
    int64_t max_need = kvs_quantile(&w, 2, 1), p95 = kvs_quantile(&w, 2, 0.95);
    int32_t n_max = (int32_t)(POOL / max_need), n_p95 = (int32_t)(POOL / p95);
    printf("  workload: %d requests, need p50 %lld p95 %lld max %lld; per-slot N %d (max fits), "
           "%d (p95 fits)\n",
           w.n, (long long)kvs_quantile(&w, 2, 0.5), (long long)p95, (long long)max_need, n_max,
           n_p95);
    CHECKF(n_max >= 1 && n_p95 > n_max, "per-slot N: %d (max fits), %d (p95 fits)", n_max, n_p95);
    kvs_paged_cfg pc = {.pool_tokens = POOL, .block_size = BLOCK};
    kvs_result v, smax, sp95;
    vt_err e = kvs_run_paged(&w, &pc, NULL, NULL, &v);
    CHECKF(e == VT_OK, "paged run: %s", vt_last_error());
    e = kvs_run_slots(&w, POOL, n_max, 0, &smax);
    CHECKF(e == VT_OK, "per-slot run: %s", vt_last_error());
    e = kvs_run_slots(&w, POOL, n_p95, 0, &sp95);
    CHECKF(e == VT_OK, "per-slot run: %s", vt_last_error());
    printf("  vitamin: unused mean %.2f%%, max %.2f%% (loaded steps), running %.1f (loaded), peak "
           "%lld, %lld steps, %lld preemptions, %.1f%% recomputed\n",
           100 * v.unused_mean, 100 * v.unused_max_loaded, v.running_mean_loaded,
           (long long)v.running_peak, (long long)v.steps, (long long)v.preemptions,
           100.0 * (double)v.tokens_recomputed / (double)v.tokens_computed);
    printf("  per-slot %d x %lld: unused %.1f%%, running %.1f; %d x %lld: unused %.1f%%, running "
           "%.1f, %lld failed\n",
           n_max, (long long)(POOL / n_max), 100 * smax.unused_mean, smax.running_mean_loaded,
           n_p95, (long long)(POOL / n_p95), 100 * sp95.unused_mean, sp95.running_mean_loaded,
           (long long)sp95.failed);

    check_paged_run(&w, &v, "paged");
    /* the model of the per-slot cache: what it must do to be a fair baseline */
    CHECKF(smax.completed == w.n && smax.failed == 0 && smax.running_peak == n_max,
           "per-slot (max fits): %lld completed, %lld failed, peak %lld of %d slots",
           (long long)smax.completed, (long long)smax.failed, (long long)smax.running_peak, n_max);
    CHECK_EQ_INT(smax.tokens_computed, total_need(&w));
    CHECK_EQ_INT(sp95.failed, kvs_count_longer(&w, POOL / n_p95));
    CHECK_EQ_INT(sp95.completed + sp95.failed, w.n);
    CHECKF(smax.loaded_steps > smax.steps / 2 && v.loaded_steps > v.steps / 2,
           "the workload does not load the pool (loaded steps: paged %lld of %lld, per-slot %lld "
           "of %lld)",
           (long long)v.loaded_steps, (long long)v.steps, (long long)smax.loaded_steps,
           (long long)smax.steps);

    /* the targets */
    CHECKF(v.unused_mean < 0.04, "allocated but unused KV: %.2f%% (mean over steps), target < 4%%",
           100 * v.unused_mean);
    CHECKF(v.unused_max_loaded < 0.04,
           "allocated but unused KV reached %.2f%% at a step with requests waiting (target < 4%%)",
           100 * v.unused_max_loaded);
    double ratio = v.running_mean_loaded / smax.running_mean_loaded;
    double ratio95 = v.running_mean_loaded / sp95.running_mean_loaded;
    CHECKF(ratio >= 2.0, "running sequences %.1f vs the per-slot cache's %.1f (N=%d): %.2fx, "
           "target >= 2x", v.running_mean_loaded, smax.running_mean_loaded, n_max, ratio);
    CHECKF(ratio95 >= 2.0, "running sequences %.1f vs the per-slot cache's %.1f (N=%d, p95 "
           "fits): %.2fx, target >= 2x", v.running_mean_loaded, sp95.running_mean_loaded, n_p95,
           ratio95);
    CHECKF(v.steps * 2 <= smax.steps, "the workload took %lld steps, the per-slot cache %lld",
           (long long)v.steps, (long long)smax.steps);

    /* controls: the measures can fail */
    kvs_paged_cfg big = pc;
    big.block_size = 256;
    kvs_result vb;
    if (kvs_run_paged(&w, &big, NULL, NULL, &vb) == VT_OK) {
        check_paged_run(&w, &vb, "256-token blocks");
        CHECKF(vb.unused_mean > 0.04, "256-token blocks waste only %.2f%%: the measure is blind",
               100 * vb.unused_mean);
    } else {
        test_fail_at(__FILE__, __LINE__, "paged run, 256-token blocks: %s", vt_last_error());
    }
    kvs_paged_cfg capped = pc;
    capped.max_seqs = n_max;
    kvs_result vc;
    if (kvs_run_paged(&w, &capped, NULL, NULL, &vc) == VT_OK) {
        check_paged_run(&w, &vc, "max_seqs = N");
        CHECKF(vc.running_mean_loaded <= n_max && vc.running_mean_loaded / smax.running_mean_loaded < 2,
               "a scheduler capped at %d sequences still runs %.1f", n_max, vc.running_mean_loaded);
    } else {
        test_fail_at(__FILE__, __LINE__, "paged run, max_seqs %d: %s", n_max, vt_last_error());
    }
    kvs_workload_free(&w);
}

/* The short workload through the engine: its counters equal the simulation's. */
static void test_engine_counters(void)
{
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    if (!test_need_vitamin() || !test_need_file(vocab, "the engine's KV counters"))
        return;
    char path[512];
    snprintf(path, sizeof path, "%s/kv-tiny.gguf", test_tmpdir());
    md_model *m = NULL;
    tok_tokenizer *tok = NULL;
    if (kvs_tiny_model(test_vitamin_bin(), vocab, path, &m, &tok)) {
        test_fail_at(__FILE__, __LINE__, "tiny model: %s", vt_last_error());
        return;
    }
    kvs_workload_cfg wc = {.seed = 3,
                           .n_requests = 24,
                           .prompt_median = 100,
                           .prompt_sigma = 0.9,
                           .prompt_min = 20,
                           .prompt_max = 600,
                           .output_median = 20,
                           .output_sigma = 0.7,
                           .output_min = 10,
                           .output_max = 100,
                           .rate = 0.5,
                           .vocab = (int32_t)m->hp.n_vocab};
    /* admission on the first chunk (no headroom), so that the small pool
     * preempts and the engine's recompute path is compared too */
    kvs_paged_cfg pc = {.pool_tokens = 1024, .block_size = BLOCK, .max_batch_tokens = 128,
                        .no_admit_headroom = true};
    kvs_workload w = {0};
    kvs_trace ts = {0}, te = {0};
    kvs_result rs, re;
    if (kvs_workload_make(&wc, &w) || kvs_run_paged(&w, &pc, kvs_trace_push, &ts, &rs) ||
        kvs_run_engine(m, tok, NULL, &w, &pc, kvs_trace_push, &te, &re)) {
        test_fail_at(__FILE__, __LINE__, "%s", vt_last_error());
        goto out;
    }
    CHECK(!ts.oom && !te.oom);
    check_paged_run(&w, &rs, "simulation");
    CHECKF(re.completed == w.n && re.failed == 0,
           "engine: %lld of %d requests gave their n_output tokens, %lld did not",
           (long long)re.completed, w.n, (long long)re.failed);
    CHECKF(rs.preemptions > 0, "the small pool forced no preemption (%lld steps)",
           (long long)rs.steps);
    int64_t d = kvs_trace_diff(&ts, &te);
    if (d >= 0) {
        const kvs_point *a = d < ts.n ? &ts.v[d] : NULL, *b = d < te.n ? &te.v[d] : NULL;
        test_fail_at(__FILE__, __LINE__,
                     "step %lld: simulation running %lld waiting %lld blocks %lld preemptions "
                     "%lld; engine running %lld waiting %lld blocks %lld preemptions %lld",
                     (long long)d, a ? (long long)a->running : -1, a ? (long long)a->waiting : -1,
                     a ? (long long)a->blocks_used : -1, a ? (long long)a->preemptions : -1,
                     b ? (long long)b->running : -1, b ? (long long)b->waiting : -1,
                     b ? (long long)b->blocks_used : -1, b ? (long long)b->preemptions : -1);
    }
    printf("  engine: %lld steps, running mean %.2f peak %lld, %lld preemptions, %.2f s; "
           "simulation: %lld steps, unused mean %.2f%%\n",
           (long long)re.steps, re.running_mean, (long long)re.running_peak,
           (long long)re.preemptions, re.seconds, (long long)rs.steps, 100 * rs.unused_mean);
out:
    kvs_trace_free(&ts);
    kvs_trace_free(&te);
    kvs_workload_free(&w);
    tok_destroy(tok);
    md_destroy(m);
    unlink(path);
}

int main(void)
{
    RUN_TEST(test_paged_vs_per_slot);
    RUN_TEST(test_engine_counters);
    return test_finish("test_kv_efficiency");
}
