/*
 * test_sampler.c - the sampler (src/sample/sampler.c) and the stop-string
 * matcher (src/sample/stop.c): parameter validation, reproducible seeds, greedy
 * argmax, that top-k/top-p/min-p never leave their set and draw each allowed
 * token with its renormalised probability (chi-square over many draws), exact
 * candidate sets against a full-sort reference on a 151,936-token vocabulary,
 * exact penalty and bias arithmetic, logprobs, stop strings split across
 * pieces (bytes, UTF-8, false starts, several strings, random chunkings), and
 * the end-of-generation rules of smp_accept().
 */
#include <float.h>
#include <string.h>

#include "sample/sampler.h"
#include "test.h"
#include "util/util.h"

#define BIG_VOCAB 151936

static smp_state *make(const smp_params *p, int32_t n_vocab)
{
    smp_state *s = NULL;
    vt_err e = smp_create(p, n_vocab, NULL, 0, &s);
    CHECKF(e == VT_OK, "smp_create: %s", vt_last_error());
    return s;
}

/* logits = log(p) */
static void logits_of(const double *p, int n, float *out)
{
    for (int i = 0; i < n; i++)
        out[i] = p[i] > 0 ? (float)log(p[i]) : -INFINITY;
}

/* Draws n times from s and checks every draw is allowed (expect[i] > 0) and
 * the frequencies fit expect[] (chi-square below a bound far above its
 * expected value, dof = allowed - 1, yet far below what a wrong distribution
 * gives at this n). */
static void check_draws(smp_state *s, const float *logits, int n_vocab, const double *expect,
                        int n_draws)
{
    int counts[64] = {0};
    int outside = 0;
    for (int i = 0; i < n_draws; i++) {
        int32_t t = smp_sample(s, logits, n_vocab, NULL, 0, NULL);
        if (t < 0 || t >= n_vocab || expect[t] <= 0)
            outside++;
        else
            counts[t]++;
    }
    CHECKF(outside == 0, "%d of %d draws outside the allowed set", outside, n_draws);
    double chi2 = 0;
    int dof = -1;
    for (int i = 0; i < n_vocab; i++) {
        if (expect[i] <= 0)
            continue;
        double e = expect[i] * n_draws;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
        dof++;
        CHECKF(counts[i] > 0, "allowed token %d (p=%g) never drawn", i, expect[i]);
    }
    double bound = dof + 6 * sqrt(2.0 * (dof > 0 ? dof : 1)) + 6;
    CHECKF(chi2 < bound, "chi-square %.1f (dof %d) above %.1f", chi2, dof, bound);
}

/* ---- validation and lifecycle ---- */

static void expect_invalid(const smp_params *p, int32_t n_vocab, const char *needle)
{
    vt_err e = smp_params_validate(p, n_vocab);
    CHECKF(e == VT_ERR_INVALID, "expected VT_ERR_INVALID for '%s', got %d", needle, (int)e);
    CHECKF(strstr(vt_last_error(), needle) != NULL, "message '%s' lacks '%s'", vt_last_error(),
           needle);
    smp_state *s = (smp_state *)1;
    CHECK(smp_create(p, n_vocab, NULL, 0, &s) == VT_ERR_INVALID);
    CHECK(s == NULL);
}

static void test_validation(void)
{
    smp_params d = smp_params_default(), p;
    CHECK(smp_params_validate(&d, 100) == VT_OK);
    CHECK(d.temperature == 1.0f && d.top_p == 1.0f && d.top_k == 0 && d.min_p == 0.0f);
    CHECK(d.seed == SMP_SEED_RANDOM && d.max_tokens == -1 && d.penalty_last_n == 64);

    /* accepted edges */
    p = d; p.temperature = 0; CHECK(smp_params_validate(&p, 100) == VT_OK);
    p = d; p.top_k = -1; CHECK(smp_params_validate(&p, 100) == VT_OK);
    p = d; p.top_k = 1000; CHECK(smp_params_validate(&p, 100) == VT_OK);
    p = d; p.min_p = 1; CHECK(smp_params_validate(&p, 100) == VT_OK);
    p = d; p.presence_penalty = -2; p.frequency_penalty = 2; CHECK(smp_params_validate(&p, 100) == VT_OK);
    smp_bias ok_bias[] = {{0, -INFINITY}, {99, 100}, {5, -100}};
    p = d; p.logit_bias = ok_bias; p.n_logit_bias = 3; CHECK(smp_params_validate(&p, 100) == VT_OK);

    p = d; p.temperature = -0.1f; expect_invalid(&p, 100, "temperature");
    p = d; p.temperature = NAN; expect_invalid(&p, 100, "temperature");
    p = d; p.temperature = INFINITY; expect_invalid(&p, 100, "temperature");
    p = d; p.top_p = 0; expect_invalid(&p, 100, "top_p");
    p = d; p.top_p = 1.5f; expect_invalid(&p, 100, "top_p");
    p = d; p.top_p = NAN; expect_invalid(&p, 100, "top_p");
    p = d; p.top_k = -2; expect_invalid(&p, 100, "top_k");
    p = d; p.min_p = -0.01f; expect_invalid(&p, 100, "min_p");
    p = d; p.min_p = 1.01f; expect_invalid(&p, 100, "min_p");
    p = d; p.repetition_penalty = 0; expect_invalid(&p, 100, "repetition_penalty");
    p = d; p.presence_penalty = 2.5f; expect_invalid(&p, 100, "presence_penalty");
    p = d; p.frequency_penalty = -3; expect_invalid(&p, 100, "frequency_penalty");
    p = d; p.penalty_last_n = -2; expect_invalid(&p, 100, "penalty_last_n");
    smp_bias bad_id[] = {{3, 1}, {100, 1}};
    p = d; p.logit_bias = bad_id; p.n_logit_bias = 2; expect_invalid(&p, 100, "outside the vocabulary");
    smp_bias neg_id[] = {{-1, 1}};
    p = d; p.logit_bias = neg_id; p.n_logit_bias = 1; expect_invalid(&p, 100, "logit_bias");
    smp_bias big[] = {{1, 101}};
    p = d; p.logit_bias = big; p.n_logit_bias = 1; expect_invalid(&p, 100, "[-100, 100]");
    smp_bias nan_bias[] = {{1, NAN}};
    p = d; p.logit_bias = nan_bias; p.n_logit_bias = 1; expect_invalid(&p, 100, "logit_bias");
    p = d; p.max_tokens = 0; expect_invalid(&p, 100, "max_tokens");
    p = d; p.max_tokens = -5; expect_invalid(&p, 100, "max_tokens");
    const char *empty[] = {"ok", ""};
    p = d; p.stop = empty; p.n_stop = 2; expect_invalid(&p, 100, "stop[1]");
    char longstop[SMP_MAX_STOP_LEN + 2];
    memset(longstop, 'x', sizeof longstop - 1);
    longstop[sizeof longstop - 1] = 0;
    const char *toolong[] = {longstop};
    p = d; p.stop = toolong; p.n_stop = 1; expect_invalid(&p, 100, "stop[0]");
    const char *many[SMP_MAX_STOP + 1];
    for (int i = 0; i <= SMP_MAX_STOP; i++)
        many[i] = "s";
    p = d; p.stop = many; p.n_stop = SMP_MAX_STOP + 1; expect_invalid(&p, 100, "stop");
    p = d; p.top_logprobs = SMP_MAX_TOP_LOGPROBS + 1; expect_invalid(&p, 100, "top_logprobs");
    CHECK(smp_params_validate(&d, 0) == VT_ERR_INVALID);

    /* end tokens are checked too */
    smp_state *s = NULL;
    int32_t ends[] = {5, 100};
    CHECK(smp_create(&d, 100, ends, 2, &s) == VT_ERR_INVALID && s == NULL);
    CHECK(strstr(vt_last_error(), "100") != NULL);
}

static void test_lifecycle(void)
{
    smp_destroy(NULL);
    smp_stop_destroy(NULL);
    smp_params p = smp_params_default();
    const char *stops[] = {"a", "bc"};
    smp_bias b[] = {{1, 2}};
    p.stop = stops;
    p.n_stop = 2;
    p.logit_bias = b;
    p.n_logit_bias = 1;
    smp_state *s = make(&p, 10); /* never samples: no scratch */
    smp_destroy(s);
    s = make(&p, 10);
    float l[10] = {0};
    CHECK(smp_sample(s, l, 10, NULL, 0, NULL) >= 0);
    CHECK(smp_sample(s, l, 9, NULL, 0, NULL) == -1); /* wrong vocabulary size */
    CHECK(strstr(vt_last_error(), "vocabulary") != NULL);
    int32_t bad_hist[] = {3, 10};
    p.repetition_penalty = 1.1f;
    smp_state *s2 = make(&p, 10);
    CHECK(smp_sample(s2, l, 10, bad_hist, 2, NULL) == -1);
    CHECK(strstr(vt_last_error(), "history") != NULL);
    smp_destroy(s2);
    smp_destroy(s);
}

/* ---- seeds ---- */

static void run_seq(smp_state *s, const float *l, int n, int32_t *out, int len)
{
    for (int i = 0; i < len; i++)
        out[i] = smp_sample(s, l, n, NULL, 0, NULL);
}

static void test_seed_reproducible(void)
{
    enum { N = 50, LEN = 400 };
    float l[N];
    vt_rng r = {7};
    for (int i = 0; i < N; i++)
        l[i] = vt_rng_normal(&r);
    smp_params p = smp_params_default();
    p.seed = 1234;
    int32_t a[LEN], b[LEN], c[LEN];
    smp_state *sa = make(&p, N), *sb = make(&p, N);
    p.seed = 1235;
    smp_state *sc = make(&p, N);
    CHECK(smp_seed(sa) == 1234);
    run_seq(sa, l, N, a, LEN);
    run_seq(sb, l, N, b, LEN);
    run_seq(sc, l, N, c, LEN);
    CHECK(memcmp(a, b, sizeof a) == 0);
    int diff = 0;
    for (int i = 0; i < LEN; i++)
        diff += a[i] != c[i];
    CHECKF(diff > LEN / 2, "seeds 1234 and 1235 agree on %d of %d draws", LEN - diff, LEN);

    /* no seed: a fresh one each time, reported, and reproducible through it */
    p.seed = SMP_SEED_RANDOM;
    smp_state *r1 = make(&p, N), *r2 = make(&p, N);
    CHECK(smp_seed(r1) != smp_seed(r2));
    CHECK(smp_seed(r1) != SMP_SEED_RANDOM);
    p.seed = smp_seed(r1);
    smp_state *r3 = make(&p, N);
    run_seq(r1, l, N, a, LEN);
    run_seq(r3, l, N, b, LEN);
    CHECK(memcmp(a, b, sizeof a) == 0);
    smp_destroy(sa);
    smp_destroy(sb);
    smp_destroy(sc);
    smp_destroy(r1);
    smp_destroy(r2);
    smp_destroy(r3);
}

/* ---- greedy ---- */

static void test_greedy(void)
{
    enum { N = 1000 };
    float l[N];
    vt_rng r = {99};
    smp_params p = smp_params_default();
    p.temperature = 0;
    p.seed = 5;
    smp_state *s = make(&p, N);
    for (int round = 0; round < 20; round++) {
        int am = 0;
        for (int i = 0; i < N; i++) {
            l[i] = 3 * vt_rng_normal(&r);
            if (l[i] > l[am])
                am = i;
        }
        CHECK_EQ_INT(smp_sample(s, l, N, NULL, 0, NULL), am);
    }
    /* ties go to the lowest id */
    for (int i = 0; i < N; i++)
        l[i] = 0;
    l[700] = 5;
    l[300] = 5;
    l[900] = 5;
    CHECK_EQ_INT(smp_sample(s, l, N, NULL, 0, NULL), 300);
    int32_t ids[N];
    float probs[N];
    CHECK_EQ_INT(smp_candidates(s, l, N, NULL, 0, ids, probs), 1);
    CHECK(ids[0] == 300 && probs[0] == 1.0f);
    smp_destroy(s);

    /* truncation settings do not change greedy; a subnormal temperature is greedy too */
    p.top_k = 3;
    p.top_p = 0.3f;
    p.min_p = 0.5f;
    p.temperature = 1e-40f;
    s = make(&p, N);
    l[300] = 4.99f;
    for (int k = 0; k < 5; k++)
        CHECK_EQ_INT(smp_sample(s, l, N, NULL, 0, NULL), 700);
    smp_destroy(s);

    /* the argmax is taken after the penalties */
    p = smp_params_default();
    p.temperature = 0;
    p.repetition_penalty = 3;
    s = make(&p, N);
    int32_t hist[] = {700, 700};
    CHECK_EQ_INT(smp_sample(s, l, N, hist, 2, NULL), 900);
    smp_destroy(s);
}

/* ---- truncation: draws ---- */

static const double P6[6] = {0.4, 0.25, 0.15, 0.1, 0.05, 0.05};

static void test_top_k_draws(void)
{
    float l[10];
    double p10[10] = {0.02, 0.3, 0.05, 0.2, 0.01, 0.15, 0.12, 0.05, 0.06, 0.04};
    logits_of(p10, 10, l);
    smp_params p = smp_params_default();
    p.top_k = 3;
    p.seed = 11;
    smp_state *s = make(&p, 10);
    double z = 0.3 + 0.2 + 0.15, expect[10] = {0};
    expect[1] = 0.3 / z;
    expect[3] = 0.2 / z;
    expect[5] = 0.15 / z;
    check_draws(s, l, 10, expect, 30000);
    smp_destroy(s);

    /* ties at the cut: the lower ids stay */
    float flat[6] = {1, 1, 1, 1, 1, 1};
    p.top_k = 2;
    s = make(&p, 6);
    double e2[6] = {0.5, 0.5, 0, 0, 0, 0};
    check_draws(s, flat, 6, e2, 4000);
    smp_destroy(s);
}

static void test_top_p_draws(void)
{
    float l[6];
    logits_of(P6, 6, l);
    smp_params p = smp_params_default();
    p.top_p = 0.75f; /* 0.4 + 0.25 = 0.65 < 0.75 <= 0.8 */
    p.seed = 12;
    smp_state *s = make(&p, 6);
    double expect[6] = {0.4 / 0.8, 0.25 / 0.8, 0.15 / 0.8, 0, 0, 0};
    check_draws(s, l, 6, expect, 30000);
    smp_destroy(s);

    /* after top-k = 5 the mass is renormalised over 0.95: 0.75 * 0.95 = 0.7125 */
    p.top_k = 5;
    s = make(&p, 6);
    check_draws(s, l, 6, expect, 20000);
    smp_destroy(s);

    /* a top_p reached by the first token alone */
    p.top_k = 0;
    p.top_p = 0.3f;
    s = make(&p, 6);
    double one[6] = {1, 0, 0, 0, 0, 0};
    check_draws(s, l, 6, one, 2000);
    smp_destroy(s);
}

static void test_min_p_draws(void)
{
    float l[6];
    logits_of(P6, 6, l);
    smp_params p = smp_params_default();
    p.min_p = 0.2f; /* keeps p >= 0.08 */
    p.seed = 13;
    smp_state *s = make(&p, 6);
    double expect[6] = {0.4 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0.1 / 0.9, 0, 0};
    check_draws(s, l, 6, expect, 30000);
    smp_destroy(s);
}

static void test_temperature_draws(void)
{
    float l[5] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f};
    for (int k = 0; k < 2; k++) {
        float t = k == 0 ? 2.0f : 0.5f;
        smp_params p = smp_params_default();
        p.temperature = t;
        p.seed = 14 + (uint64_t)k;
        smp_state *s = make(&p, 5);
        double expect[5], z = 0;
        for (int i = 0; i < 5; i++)
            z += expect[i] = exp(l[i] / t);
        for (int i = 0; i < 5; i++)
            expect[i] /= z;
        check_draws(s, l, 5, expect, 30000);
        smp_destroy(s);
    }
    /* the whole chain: top-k 5 (mass 0.93), top-p 0.85 (0.79 of it) -> {0,1,2,3},
     * min-p 0.3 (p >= 0.105) -> {0,1,2}, T = 0.7 */
    float l6[6];
    double p6[6] = {0.35, 0.25, 0.15, 0.1, 0.08, 0.07};
    logits_of(p6, 6, l6);
    smp_params p = smp_params_default();
    p.top_k = 5;
    p.top_p = 0.85f;
    p.min_p = 0.3f;
    p.temperature = 0.7f;
    p.seed = 16;
    smp_state *s = make(&p, 6);
    double expect[6] = {0}, z = 0;
    for (int i = 0; i < 3; i++)
        z += expect[i] = pow(p6[i], 1 / 0.7);
    for (int i = 0; i < 3; i++)
        expect[i] /= z;
    check_draws(s, l6, 6, expect, 30000);
    smp_destroy(s);
}

/* ---- truncation: exact sets on a large vocabulary, against a full sort ---- */

typedef struct {
    float l;
    int32_t id;
} ref_item;

static int ref_cmp(const void *a, const void *b)
{
    const ref_item *x = a, *y = b;
    if (x->l != y->l)
        return x->l > y->l ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The candidate ids (ascending) by the textbook chain over a full sort. */
static int32_t ref_candidates(const float *l, int32_t n, const smp_params *p, ref_item *tmp,
                              int32_t *ids)
{
    for (int32_t i = 0; i < n; i++)
        tmp[i] = (ref_item){l[i], i};
    qsort(tmp, (size_t)n, sizeof *tmp, ref_cmp);
    int32_t k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    float mx = tmp[0].l;
    if (p->top_p < 1) {
        double z = 0, cum = 0;
        for (int32_t j = 0; j < k; j++)
            z += exp((double)tmp[j].l - mx);
        for (int32_t j = 0; j < k; j++) {
            cum += exp((double)tmp[j].l - mx);
            if (cum >= p->top_p * z) {
                k = j + 1;
                break;
            }
        }
    }
    int32_t m = 0;
    for (int32_t j = 0; j < k; j++)
        if (p->min_p <= 0 || tmp[j].l >= mx + logf(p->min_p))
            ids[m++] = tmp[j].id;
    qsort(ids, (size_t)m, sizeof *ids, cmp_i32);
    return m;
}

static void test_large_vocab_sets(void)
{
    const int32_t n = BIG_VOCAB;
    float *l = malloc(n * sizeof *l), *probs = malloc(n * sizeof *probs);
    int32_t *ids = malloc(n * sizeof *ids), *ref = malloc(n * sizeof *ref);
    ref_item *tmp = malloc(n * sizeof *tmp);
    vt_rng r = {2024};
    struct {
        float sigma; /* logit spread; 0 = all equal */
        int top_k;
        float top_p, min_p;
    } cases[] = {
        {2, 0, 0.9f, 0},    {5, 0, 0.95f, 0},  {0.3f, 0, 0.5f, 0}, {8, 0, 0.99f, 0},
        {2, 40, 0.9f, 0},   {3, 1000, 0.7f, 0}, {2, 0, 1, 0.05f},  {4, 0, 0.9f, 0.01f},
        {0, 0, 0.5f, 0},    {0, 100, 1, 0},     {1, 0, 0.2f, 0},   {6, 50000, 0.999f, 0.001f},
    };
    for (size_t c = 0; c < VT_ARRAY_LEN(cases); c++) {
        for (int32_t i = 0; i < n; i++)
            l[i] = cases[c].sigma * vt_rng_normal(&r);
        if (cases[c].sigma > 0) { /* a few exact ties and banned tokens */
            for (int i = 0; i < 50; i++)
                l[vt_rng_next(&r) % n] = l[vt_rng_next(&r) % n];
            for (int i = 0; i < 50; i++)
                l[vt_rng_next(&r) % n] = -INFINITY;
        }
        smp_params p = smp_params_default();
        p.top_k = cases[c].top_k;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        p.temperature = 0.8f;
        p.seed = c;
        smp_state *s = make(&p, n);
        int32_t m = smp_candidates(s, l, n, NULL, 0, ids, probs);
        int32_t mr = ref_candidates(l, n, &p, tmp, ref);
        CHECKF(m == mr, "case %zu: %d candidates, reference %d", c, (int)m, (int)mr);
        if (m == mr)
            CHECKF(memcmp(ids, ref, (size_t)m * sizeof *ids) == 0, "case %zu: sets differ", c);
        double sum = 0;
        for (int32_t j = 0; j < m; j++)
            sum += probs[j];
        CHECK_NEAR(sum, 1.0, 1e-4);
        /* and draws land in the set */
        int outside = 0;
        for (int d = 0; d < 20; d++) {
            int32_t t = smp_sample(s, l, n, NULL, 0, NULL);
            outside += bsearch(&t, ref, (size_t)mr, sizeof *ref, cmp_i32) == NULL;
        }
        CHECK(outside == 0);
        smp_destroy(s);
    }
    free(l);
    free(probs);
    free(ids);
    free(ref);
    free(tmp);
}

/* Not a benchmark: a guard against a full sort sneaking back in. */
static void test_large_vocab_speed(void)
{
    const int32_t n = BIG_VOCAB;
    float *l = malloc(n * sizeof *l);
    vt_rng r = {77};
    for (int32_t i = 0; i < n; i++)
        l[i] = 2.5f * vt_rng_normal(&r);
    int32_t hist[256];
    for (int i = 0; i < 256; i++)
        hist[i] = (int32_t)(vt_rng_next(&r) % (uint64_t)n);
    struct { int top_k; float top_p; } cases[] = {{0, 1}, {40, 0.95f}, {0, 0.9f}};
    for (size_t c = 0; c < VT_ARRAY_LEN(cases); c++) {
        smp_params p = smp_params_default();
        p.top_k = cases[c].top_k;
        p.top_p = cases[c].top_p;
        p.repetition_penalty = 1.1f;
        p.seed = 1;
        smp_state *s = make(&p, n);
        smp_logprobs lp;
        double t0 = vt_now();
        for (int i = 0; i < 30; i++)
            CHECK(smp_sample(s, l, n, hist, 256, i % 2 ? &lp : NULL) >= 0);
        double ms = (vt_now() - t0) / 30 * 1e3;
        fprintf(stderr, "  [info] vocab %d, top_k %d, top_p %.2f: %.2f ms per token\n", (int)n,
                cases[c].top_k, (double)cases[c].top_p, ms);
        CHECKF(ms < 60, "%.1f ms per token", ms);
        smp_destroy(s);
    }
    free(l);
}

/* ---- penalties and bias ---- */

static void test_penalties_exact(void)
{
    const float base[10] = {2, -1, 0, 3, 1.5f, -2, 0.5f, 4, -0.5f, -INFINITY};
    float x[10];
    /* the window of the last 7 tokens: 3 (x3), 0, 5, 2, 9 */
    int32_t hist[] = {8, 1, 3, 3, 0, 3, 5, 2, 9};
    smp_params p = smp_params_default();
    p.repetition_penalty = 1.5f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    p.penalty_last_n = 7;
    memcpy(x, base, sizeof x);
    CHECK(smp_apply_penalties(&p, x, 10, hist, VT_ARRAY_LEN(hist)) == VT_OK);
    const float rp = 1.5f, pp = 0.5f, fp = 0.25f;
    float want[10];
    memcpy(want, base, sizeof want);
    want[3] = 3.0f / rp - (3.0f * fp + pp);
    want[0] = 2.0f / rp - (1.0f * fp + pp);
    want[5] = -2.0f * rp - (1.0f * fp + pp);
    want[2] = 0.0f * rp - (1.0f * fp + pp); /* 0 counts as non-positive: multiplied */
    /* 9 stays -inf; 8 and 1 are outside the window */
    for (int i = 0; i < 10; i++)
        CHECKF(memcmp(&x[i], &want[i], sizeof(float)) == 0, "token %d: %.9g, want %.9g", i,
               (double)x[i], (double)want[i]);

    /* whole history */
    p.penalty_last_n = -1;
    memcpy(x, base, sizeof x);
    CHECK(smp_apply_penalties(&p, x, 10, hist, VT_ARRAY_LEN(hist)) == VT_OK);
    CHECK(x[8] == -0.5f * rp - (fp + pp));
    CHECK(x[1] == -1.0f * rp - (fp + pp));
    CHECK(x[3] == want[3] && x[7] == base[7] && x[4] == base[4] && x[6] == base[6]);

    /* window 0, or neutral values: nothing changes */
    p.penalty_last_n = 0;
    memcpy(x, base, sizeof x);
    CHECK(smp_apply_penalties(&p, x, 10, hist, VT_ARRAY_LEN(hist)) == VT_OK);
    CHECK(memcmp(x, base, sizeof x) == 0);
    p = smp_params_default();
    memcpy(x, base, sizeof x);
    CHECK(smp_apply_penalties(&p, x, 10, hist, VT_ARRAY_LEN(hist)) == VT_OK);
    CHECK(memcmp(x, base, sizeof x) == 0);

    /* presence alone, frequency alone (negative values encourage) */
    p.presence_penalty = -1.0f;
    memcpy(x, base, sizeof x);
    CHECK(smp_apply_penalties(&p, x, 10, hist, VT_ARRAY_LEN(hist)) == VT_OK);
    CHECK(x[3] == 4.0f && x[0] == 3.0f && x[1] == 0.0f && x[7] == 4.0f);
    p.presence_penalty = 0;
    p.frequency_penalty = 1.0f;
    memcpy(x, base, sizeof x);
    CHECK(smp_apply_penalties(&p, x, 10, hist, VT_ARRAY_LEN(hist)) == VT_OK);
    CHECK(x[3] == 0.0f && x[0] == 1.0f && x[8] == -1.5f && x[4] == 1.5f);

    /* bias first, then the penalty (llama.cpp's order); repeated ids add up */
    smp_bias b[] = {{3, -1}, {4, 1}, {4, 0.5f}, {7, -INFINITY}};
    p = smp_params_default();
    p.repetition_penalty = 1.5f;
    p.logit_bias = b;
    p.n_logit_bias = 4;
    memcpy(x, base, sizeof x);
    CHECK(smp_apply_penalties(&p, x, 10, hist, VT_ARRAY_LEN(hist)) == VT_OK);
    CHECK(x[3] == (3.0f - 1.0f) / rp);
    CHECK(x[4] == 3.0f);
    CHECK(x[7] == -INFINITY);
    CHECK(x[6] == base[6]);

    /* a bad history id is an error */
    int32_t bad[] = {1, 10};
    CHECK(smp_apply_penalties(&p, x, 10, bad, 2) == VT_ERR_INVALID);

    /* overflow stays finite: FLT_MAX + 100 or / 0.5 */
    float big[3] = {FLT_MAX, 0, FLT_MAX};
    smp_bias up[] = {{0, 100}};
    p = smp_params_default();
    p.logit_bias = up;
    p.n_logit_bias = 1;
    p.repetition_penalty = 0.5f;
    int32_t h2[] = {2};
    CHECK(smp_apply_penalties(&p, big, 3, h2, 1) == VT_OK);
    CHECK(big[0] == FLT_MAX && big[2] == FLT_MAX);
}

static void test_logit_bias_sampling(void)
{
    enum { N = 100 };
    float l[N] = {0};
    smp_bias force[] = {{42, 100}};
    smp_params p = smp_params_default();
    p.logit_bias = force;
    p.n_logit_bias = 1;
    p.seed = 3;
    smp_state *s = make(&p, N);
    int hits = 0;
    for (int i = 0; i < 2000; i++)
        hits += smp_sample(s, l, N, NULL, 0, NULL) == 42;
    CHECK_EQ_INT(hits, 2000);
    smp_destroy(s);

    /* -inf bans the argmax in greedy mode; banning everything is an error */
    l[10] = 5;
    l[20] = 4;
    smp_bias ban[] = {{10, -INFINITY}};
    p.logit_bias = ban;
    p.temperature = 0;
    s = make(&p, N);
    CHECK_EQ_INT(smp_sample(s, l, N, NULL, 0, NULL), 20);
    smp_destroy(s);
    float tiny[2] = {1, 2};
    smp_bias both[] = {{0, -INFINITY}, {1, -INFINITY}};
    p.logit_bias = both;
    p.n_logit_bias = 2;
    s = make(&p, 2);
    CHECK_EQ_INT(smp_sample(s, tiny, 2, NULL, 0, NULL), -1);
    CHECK(strstr(vt_last_error(), "finite") != NULL);
    smp_destroy(s);

    /* NaN logits count as -inf, at any temperature */
    float nanl[4] = {NAN, 1, NAN, 0.5f};
    p = smp_params_default();
    p.seed = 4;
    s = make(&p, 4);
    double expect[4] = {0, 1 / (1 + exp(-0.5)), 0, exp(-0.5) / (1 + exp(-0.5))};
    check_draws(s, nanl, 4, expect, 5000);
    smp_destroy(s);
}

/* ---- logprobs ---- */

static void test_logprobs(void)
{
    float l[4] = {1, 2, 3, 0};
    double lz = log(exp(1.0) + exp(2.0) + exp(3.0) + exp(0.0));
    smp_params p = smp_params_default();
    p.temperature = 0;
    p.top_logprobs = 3;
    smp_state *s = make(&p, 4);
    smp_logprobs lp;
    CHECK_EQ_INT(smp_sample(s, l, 4, NULL, 0, &lp), 2);
    CHECK_EQ_INT(lp.token, 2);
    CHECK_NEAR(lp.logprob, 3 - lz, 1e-6);
    CHECK_EQ_INT(lp.n_top, 3);
    CHECK(lp.top[0].token == 2 && lp.top[1].token == 1 && lp.top[2].token == 0);
    CHECK_NEAR(lp.top[0].logprob, 3 - lz, 1e-6);
    CHECK_NEAR(lp.top[1].logprob, 2 - lz, 1e-6);
    CHECK_NEAR(lp.top[2].logprob, 1 - lz, 1e-6);
    smp_destroy(s);

    /* before truncation and temperature: top_k 1, T 0.3 change nothing */
    p.temperature = 0.3f;
    p.top_k = 1;
    p.top_logprobs = 20;
    s = make(&p, 4);
    CHECK_EQ_INT(smp_sample(s, l, 4, NULL, 0, &lp), 2);
    CHECK_NEAR(lp.logprob, 3 - lz, 1e-6);
    CHECK_EQ_INT(lp.n_top, 4);
    CHECK(lp.top[3].token == 3);
    CHECK_NEAR(lp.top[3].logprob, 0 - lz, 1e-6);
    smp_destroy(s);

    /* after penalties and bias: token 2 pushed down by a bias of -2 */
    smp_bias b[] = {{2, -2}};
    p = smp_params_default();
    p.logit_bias = b;
    p.n_logit_bias = 1;
    p.top_logprobs = 2;
    p.seed = 8;
    s = make(&p, 4);
    int32_t t = smp_sample(s, l, 4, NULL, 0, &lp);
    double lz2 = log(exp(1.0) + exp(2.0) + exp(1.0) + exp(0.0));
    double want[4] = {1 - lz2, 2 - lz2, 1 - lz2, 0 - lz2};
    CHECK(t >= 0 && t < 4 && lp.token == t);
    if (t >= 0 && t < 4)
        CHECK_NEAR(lp.logprob, want[t], 1e-6);
    CHECK(lp.top[0].token == 1 && lp.top[1].token == 0); /* tie 0/2 -> lower id */
    CHECK_NEAR(lp.top[1].logprob, want[0], 1e-6);
    smp_destroy(s);

    /* sums to one over a 20-token vocabulary; the chosen token is among them */
    float l20[20];
    vt_rng r = {5};
    for (int i = 0; i < 20; i++)
        l20[i] = 4 * vt_rng_normal(&r);
    p = smp_params_default();
    p.top_logprobs = 20;
    p.seed = 9;
    s = make(&p, 20);
    for (int k = 0; k < 50; k++) {
        t = smp_sample(s, l20, 20, NULL, 0, &lp);
        double sum = 0;
        bool found = false;
        for (int j = 0; j < lp.n_top; j++) {
            sum += exp(lp.top[j].logprob);
            if (lp.top[j].token == t)
                found = lp.top[j].logprob == lp.logprob;
            if (j)
                CHECK(lp.top[j].logprob <= lp.top[j - 1].logprob);
        }
        CHECK_NEAR(sum, 1.0, 1e-5);
        CHECK(found);
    }
    smp_destroy(s);
}

/* ---- stop strings ---- */

typedef struct {
    char out[1024];
    size_t len;
    int32_t matched;
} collect;

static void feed(smp_stop *m, collect *c, const char *piece, size_t n)
{
    const char *t;
    size_t tl;
    CHECK(smp_stop_feed(m, piece, n, false, &t, &tl, &c->matched) == VT_OK);
    CHECK(t != NULL);
    if (c->len + tl < sizeof c->out) {
        memcpy(c->out + c->len, t, tl);
        c->len += tl;
        c->out[c->len] = 0;
    }
}

static void flush(smp_stop *m, collect *c)
{
    const char *t;
    size_t tl;
    smp_stop_flush(m, &t, &tl);
    if (c->len + tl < sizeof c->out) {
        memcpy(c->out + c->len, t, tl);
        c->len += tl;
        c->out[c->len] = 0;
    }
}

static smp_stop *stopper(const char *const *stops, int n)
{
    smp_stop *m = NULL;
    CHECK(smp_stop_create(stops, n, &m) == VT_OK);
    return m;
}

static void test_stop_split(void)
{
    const char *stops[] = {"###END"};
    smp_stop *m = stopper(stops, 1);
    collect c = {.matched = -1};
    const char *pieces[] = {"Hello ", "#", "##E", "N", "D and more", "ignored"};
    for (size_t i = 0; i < VT_ARRAY_LEN(pieces); i++) {
        feed(m, &c, pieces[i], strlen(pieces[i]));
        CHECKF(strchr(c.out, '#') == NULL, "part of the stop string emitted: '%s'", c.out);
        if (i < 4)
            CHECK(c.matched == -1);
    }
    CHECK(strcmp(c.out, "Hello ") == 0);
    CHECK_EQ_INT(c.matched, 0);
    CHECK_EQ_INT(smp_stop_matched(m), 0);
    flush(m, &c);
    CHECK(strcmp(c.out, "Hello ") == 0);
    smp_stop_destroy(m);

    /* inside one piece, with text after it */
    m = stopper(stops, 1);
    c = (collect){.matched = -1};
    feed(m, &c, "abc###ENDdef", 12);
    CHECK(strcmp(c.out, "abc") == 0 && c.matched == 0);
    smp_stop_destroy(m);
}

static void test_stop_false_start(void)
{
    const char *stops[] = {"STOP"};
    smp_stop *m = stopper(stops, 1);
    collect c = {.matched = -1};
    feed(m, &c, "ab", 2);
    CHECK(strcmp(c.out, "ab") == 0);
    feed(m, &c, "ST", 2);
    CHECK(strcmp(c.out, "ab") == 0); /* "ST" held back */
    feed(m, &c, "O", 1);
    CHECK(strcmp(c.out, "ab") == 0);
    feed(m, &c, "x", 1);
    CHECK(strcmp(c.out, "abSTOx") == 0); /* diverged: released in full */
    feed(m, &c, "yzS", 3);
    CHECK(strcmp(c.out, "abSTOxyz") == 0);
    flush(m, &c); /* end of text: the held "S" comes out */
    CHECK(strcmp(c.out, "abSTOxyzS") == 0);
    CHECK_EQ_INT(c.matched, -1);
    smp_stop_destroy(m);

    /* a false start that overlaps the real one */
    const char *ab[] = {"abab"};
    m = stopper(ab, 1);
    c = (collect){.matched = -1};
    feed(m, &c, "xaba", 4);
    CHECK(strcmp(c.out, "x") == 0);
    feed(m, &c, "cab", 3); /* "abac" diverges; "ab" may start again */
    CHECK(strcmp(c.out, "xabac") == 0);
    feed(m, &c, "a", 1);
    feed(m, &c, "b!", 2);
    CHECK(strcmp(c.out, "xabac") == 0 && c.matched == 0);
    smp_stop_destroy(m);

    const char *ss[] = {"SSTOP"};
    m = stopper(ss, 1);
    c = (collect){.matched = -1};
    feed(m, &c, "SS", 2);
    feed(m, &c, "SSTO", 4);
    CHECK(strcmp(c.out, "SS") == 0);
    feed(m, &c, "P", 1);
    CHECK(strcmp(c.out, "SS") == 0 && c.matched == 0);
    smp_stop_destroy(m);
}

static void test_stop_multiple(void)
{
    const char *stops[] = {"\n\n", "User:", "<|im_end|>"};
    smp_stop *m = stopper(stops, 3);
    collect c = {.matched = -1};
    feed(m, &c, "Hi there", 8);
    feed(m, &c, "\nUs", 3);
    CHECK(strcmp(c.out, "Hi there\n") == 0);
    feed(m, &c, "er:", 3);
    CHECK(strcmp(c.out, "Hi there\n") == 0);
    CHECK_EQ_INT(c.matched, 1);
    smp_stop_destroy(m);

    m = stopper(stops, 3);
    c = (collect){.matched = -1};
    feed(m, &c, "ok<|im_", 7);
    CHECK(strcmp(c.out, "ok") == 0);
    feed(m, &c, "end|>\n\n", 7);
    CHECK(strcmp(c.out, "ok") == 0 && c.matched == 2);
    smp_stop_destroy(m);

    /* the string completing first wins, the longest on a tie */
    const char *s2[] = {"xabc", "ab"};
    m = stopper(s2, 2);
    c = (collect){.matched = -1};
    feed(m, &c, "zxabc", 5);
    CHECK(strcmp(c.out, "zx") == 0 && c.matched == 1);
    smp_stop_destroy(m);
    const char *s3[] = {"c", "abc"};
    m = stopper(s3, 2);
    c = (collect){.matched = -1};
    feed(m, &c, "za", 2);
    feed(m, &c, "bc", 2);
    CHECK(strcmp(c.out, "z") == 0 && c.matched == 1);
    smp_stop_destroy(m);
}

static void test_stop_utf8(void)
{
    const char *stops[] = {"停止", "🛑"};
    const char *text = "你好停止了";
    smp_stop *m = stopper(stops, 2);
    collect c = {.matched = -1};
    for (size_t i = 0; i < strlen(text); i++) /* byte by byte, splitting characters */
        feed(m, &c, text + i, 1);
    CHECK(strcmp(c.out, "你好") == 0 && c.matched == 0);
    smp_stop_destroy(m);

    /* whole characters in: only whole characters out, even while holding */
    m = stopper(stops, 2);
    c = (collect){.matched = -1};
    feed(m, &c, "é", strlen("é"));
    feed(m, &c, "停", strlen("停"));
    CHECK(strcmp(c.out, "é") == 0);
    feed(m, &c, "车", strlen("车")); /* "停车": a false start */
    CHECK(strcmp(c.out, "é停车") == 0);
    const char *stopsign = "🛑";
    feed(m, &c, stopsign, 2);
    feed(m, &c, stopsign + 2, 2);
    CHECK(strcmp(c.out, "é停车") == 0 && c.matched == 1);
    smp_stop_destroy(m);

    /* emoji prefix that diverges in its last byte */
    m = stopper(stops, 2);
    c = (collect){.matched = -1};
    feed(m, &c, "\xf0\x9f\x9b", 3);
    CHECK(c.len == 0);
    feed(m, &c, "\x91", 1); /* U+1F6D1 is ...\x91; \x91 here completes it */
    CHECK(c.matched == 1 && c.len == 0);
    smp_stop_destroy(m);
    m = stopper(stops, 2);
    c = (collect){.matched = -1};
    feed(m, &c, "\xf0\x9f\x9b", 3);
    feed(m, &c, "\x92", 1); /* U+1F6D2, a shopping cart */
    CHECK(strcmp(c.out, "🛒") == 0 && c.matched == -1);
    smp_stop_destroy(m);
}

/* Reference: the stop string ending first (longest on a tie) in the whole text. */
static void ref_stop(const char *text, const char *const *stops, int n, size_t *out_len,
                     int *which)
{
    size_t len = strlen(text);
    for (size_t end = 1; end <= len; end++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            size_t sl = strlen(stops[i]);
            if (sl <= end && memcmp(text + end - sl, stops[i], sl) == 0 &&
                (best < 0 || sl > strlen(stops[best])))
                best = i;
        }
        if (best >= 0) {
            *out_len = end - strlen(stops[best]);
            *which = best;
            return;
        }
    }
    *out_len = len;
    *which = -1;
}

static void test_stop_random_chunking(void)
{
    const char *stops[] = {"abca", "bb", "cacac", "aaaa"};
    vt_rng r = {31337};
    int mismatches = 0, leaks = 0, matches = 0;
    for (int iter = 0; iter < 400; iter++) {
        char text[160];
        size_t len = 20 + vt_rng_next(&r) % 130;
        for (size_t i = 0; i < len; i++)
            text[i] = "abcab"[vt_rng_next(&r) % (iter % 3 == 0 ? 5 : 3)];
        text[len] = 0;
        int nst = 1 + (int)(vt_rng_next(&r) % 4);
        size_t want_len;
        int want;
        ref_stop(text, stops, nst, &want_len, &want);
        matches += want >= 0;
        for (int ch = 0; ch < 4; ch++) {
            smp_stop *m = stopper(stops, nst);
            collect c = {.matched = -1};
            size_t pos = 0;
            while (pos < len) {
                size_t n = 1 + vt_rng_next(&r) % 6;
                if (n > len - pos)
                    n = len - pos;
                feed(m, &c, text + pos, n);
                pos += n;
                if (c.len > want_len || memcmp(c.out, text, c.len) != 0)
                    leaks++;
            }
            flush(m, &c);
            if (c.len != want_len || memcmp(c.out, text, want_len) != 0 || c.matched != want)
                mismatches++;
            smp_stop_destroy(m);
        }
    }
    CHECK_EQ_INT(mismatches, 0);
    CHECK_EQ_INT(leaks, 0);
    CHECKF(matches > 100, "only %d texts contain a stop string", matches);
}

/* min_tokens: the end tokens cannot be drawn (nor be the argmax) until that
 * many tokens were accepted; afterwards they can again. */
static void test_min_tokens(void)
{
    smp_params p = smp_params_default();
    p.temperature = 0;
    p.min_tokens = 2;
    int32_t ends[] = {3, 7};
    float l[10] = {0, 1, 2, 9, 0, 0, 0, 8, 5, 0}; /* 3, then 7, are the best */
    smp_state *s = NULL;
    CHECK(smp_create(&p, 10, ends, 2, &s) == VT_OK);
    smp_emit out;
    smp_logprobs lp;
    for (int k = 0; k < 2; k++) {
        int32_t t = smp_sample(s, l, 10, NULL, 0, &lp);
        CHECK_EQ_INT(t, 8);
        CHECK(smp_accept(s, t, "x", 1, &out) == VT_OK && out.finish == SMP_CONTINUE);
    }
    CHECK_EQ_INT(smp_sample(s, l, 10, NULL, 0, NULL), 3);
    smp_destroy(s);
    /* sampled draws never hit an end token early either */
    p.temperature = 1;
    p.seed = 5;
    p.min_tokens = 50;
    CHECK(smp_create(&p, 10, ends, 2, &s) == VT_OK);
    for (int k = 0; k < 50; k++) {
        int32_t t = smp_sample(s, l, 10, NULL, 0, NULL);
        CHECKF(t != 3 && t != 7, "draw %d is end token %d", k, (int)t);
        smp_accept(s, t, "x", 1, &out);
    }
    smp_destroy(s);
    /* validation: negative, or above max_tokens */
    smp_params q = smp_params_default();
    q.min_tokens = -1;
    expect_invalid(&q, 10, "min_tokens");
    q.min_tokens = 5;
    q.max_tokens = 4;
    expect_invalid(&q, 10, "min_tokens");
    q.max_tokens = 5;
    CHECK(smp_params_validate(&q, 10) == VT_OK);
}

/* ---- ending generation ---- */

static void test_accept(void)
{
    const char *stops[] = {"END"};
    int32_t ends[] = {2, 7};
    smp_params p = smp_params_default();
    p.stop = stops;
    p.n_stop = 1;
    p.max_tokens = 4;
    smp_state *s = NULL;
    CHECK(smp_create(&p, 10, ends, 2, &s) == VT_OK);
    smp_emit e;
    CHECK(smp_accept(s, 5, "foo E", 5, &e) == VT_OK);
    CHECK(e.len == 4 && memcmp(e.text, "foo ", 4) == 0 && e.finish == SMP_CONTINUE);
    CHECK(smp_accept(s, 7, "<eot>", 5, &e) == VT_OK); /* end token: releases the held "E" */
    CHECK(e.finish == SMP_FINISH_EOS && e.len == 1 && e.text[0] == 'E' && e.stop_index == -1);
    CHECK(strcmp(smp_finish_reason(e.finish), "stop") == 0);
    CHECK(smp_accept(s, 5, "x", 1, &e) == VT_ERR_INVALID);
    CHECK_EQ_INT(smp_n_generated(s), 2);
    smp_destroy(s);

    /* max_tokens: the last piece and anything held come out */
    CHECK(smp_create(&p, 10, ends, 2, &s) == VT_OK);
    const char *pieces[] = {"a", "b", "c", "E"};
    for (int i = 0; i < 4; i++) {
        CHECK(smp_accept(s, 1, pieces[i], 1, &e) == VT_OK);
        CHECK(e.finish == (i == 3 ? SMP_FINISH_LENGTH : SMP_CONTINUE));
    }
    CHECK(e.len == 1 && e.text[0] == 'E');
    CHECK(strcmp(smp_finish_reason(e.finish), "length") == 0);
    CHECK(smp_finish_reason(SMP_CONTINUE) == NULL);
    smp_destroy(s);

    /* a stop string on the last allowed token is "stop" */
    CHECK(smp_create(&p, 10, ends, 2, &s) == VT_OK);
    CHECK(smp_accept(s, 1, "x", 1, &e) == VT_OK);
    CHECK(smp_accept(s, 1, "xx", 2, &e) == VT_OK);
    CHECK(smp_accept(s, 1, "E", 1, &e) == VT_OK && e.len == 0);
    CHECK(smp_accept(s, 1, "ND", 2, &e) == VT_OK);
    CHECK(e.finish == SMP_FINISH_STOP && e.stop_index == 0 && e.len == 0);
    smp_destroy(s);

    /* ignore_eos: end tokens are text like any other */
    p.ignore_eos = true;
    p.max_tokens = -1;
    CHECK(smp_create(&p, 10, ends, 2, &s) == VT_OK);
    CHECK(smp_accept(s, 2, "</s>", 4, &e) == VT_OK);
    CHECK(e.finish == SMP_CONTINUE && e.len == 4);
    for (int i = 0; i < 100; i++)
        CHECK(smp_accept(s, 2, "", 0, &e) == VT_OK && e.finish == SMP_CONTINUE);
    CHECK(smp_accept(s, 3, "EN", 2, &e) == VT_OK && e.len == 0);
    smp_flush(s, &e); /* cancelled: the held text comes out */
    CHECK(e.len == 2 && memcmp(e.text, "EN", 2) == 0);
    CHECK(smp_accept(s, 3, "x", 1, &e) == VT_ERR_INVALID);
    smp_destroy(s);
}

int main(void)
{
    RUN_TEST(test_validation);
    RUN_TEST(test_lifecycle);
    RUN_TEST(test_seed_reproducible);
    RUN_TEST(test_greedy);
    RUN_TEST(test_top_k_draws);
    RUN_TEST(test_top_p_draws);
    RUN_TEST(test_min_p_draws);
    RUN_TEST(test_temperature_draws);
    RUN_TEST(test_large_vocab_sets);
    RUN_TEST(test_large_vocab_speed);
    RUN_TEST(test_penalties_exact);
    RUN_TEST(test_logit_bias_sampling);
    RUN_TEST(test_logprobs);
    RUN_TEST(test_stop_split);
    RUN_TEST(test_stop_false_start);
    RUN_TEST(test_stop_multiple);
    RUN_TEST(test_stop_utf8);
    RUN_TEST(test_stop_random_chunking);
    RUN_TEST(test_accept);
    RUN_TEST(test_min_tokens);
    return test_finish("sampler");
}
