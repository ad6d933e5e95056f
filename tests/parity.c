/*
 * parity.c - implementation of parity.h: reading llama.cpp's reference
 * logits, comparing a model's logits with them, and running a test program
 * again at each ISA level (VT_ISA) in a child process.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "parity.h"
#include "test.h"

bool ref_load(const char *path, ref_logits *r)
{
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    memset(r, 0, sizeof *r);
    if (!root) {
        fprintf(stderr, "%s: %s (line %d)\n", path, err.text, err.line);
        return false;
    }
    json_t *toks = json_object_get(root, "tokens"), *pos = json_object_get(root, "positions");
    bool ok = json_is_array(toks) && json_is_array(pos) && json_array_size(pos) > 0;
    if (ok) {
        r->n_tokens = (int)json_array_size(toks);
        r->n_pos = (int)json_array_size(pos);
        r->n_top = (int)json_array_size(json_object_get(json_array_get(pos, 0), "top"));
        r->tokens = calloc((size_t)r->n_tokens + 1, sizeof *r->tokens);
        r->pos = calloc((size_t)r->n_pos, sizeof *r->pos);
        r->ids = calloc((size_t)(r->n_pos * r->n_top) + 1, sizeof *r->ids);
        r->vals = calloc((size_t)(r->n_pos * r->n_top) + 1, sizeof *r->vals);
        ok = r->tokens && r->pos && r->ids && r->vals;
    }
    for (int i = 0; ok && i < r->n_tokens; i++)
        r->tokens[i] = (int32_t)json_integer_value(json_array_get(toks, (size_t)i));
    for (int p = 0; ok && p < r->n_pos; p++) {
        json_t *e = json_array_get(pos, (size_t)p), *top = json_object_get(e, "top");
        r->pos[p] = (int)json_integer_value(json_object_get(e, "pos"));
        ok = json_is_array(top) && (int)json_array_size(top) == r->n_top && r->pos[p] >= 0 &&
             r->pos[p] < r->n_tokens;
        for (int k = 0; ok && k < r->n_top; k++) {
            json_t *pair = json_array_get(top, (size_t)k);
            r->ids[p * r->n_top + k] = (int32_t)json_integer_value(json_array_get(pair, 0));
            r->vals[p * r->n_top + k] = json_number_value(json_array_get(pair, 1));
        }
    }
    json_decref(root);
    if (!ok) {
        fprintf(stderr, "%s: not a logits reference file\n", path);
        ref_free(r);
    }
    return ok;
}

void ref_free(ref_logits *r)
{
    free(r->tokens);
    free(r->pos);
    free(r->ids);
    free(r->vals);
    memset(r, 0, sizeof *r);
}

bool model_is_quantized(const md_model *m)
{
    const md_weight *ws[] = {&m->output, &m->layers[0].wq, &m->layers[0].ffn_down,
                             &m->layers[0].down_exps, &m->tok_embd};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        if (ws[i]->data && ws[i]->type != VT_TYPE_F32 && ws[i]->type != VT_TYPE_F16 &&
            ws[i]->type != VT_TYPE_BF16)
            return true;
    return false;
}

bool parity_check(const md_model *m, kn_pool *pool, const ref_logits *r, double tol,
                  parity_result *out)
{
    float *logits = NULL, *margins = NULL;
    memset(out, 0, sizeof *out);
    if (md_eval(m, pool, r->tokens, r->n_tokens, true, &logits, &margins)) {
        fprintf(stderr, "forward pass failed: %s\n", vt_last_error());
        return false;
    }
    int64_t nv = m->hp.n_vocab;
    int k_check = r->n_top < 10 ? r->n_top : 10;
    for (int p = 0; p < r->n_pos; p++) {
        const float *l = logits + (size_t)r->pos[p] * (size_t)nv;
        const int32_t *ids = r->ids + p * r->n_top;
        const double *vals = r->vals + p * r->n_top;
        bool tie = margins && margins[r->pos[p]] < PARITY_TIE_MARGIN;
        int bad = 0, checked = 0;
        double worst = 0;
        for (int k = 0; k < k_check; k++) {
            double rel = ids[k] >= 0 && ids[k] < nv ? fabs(l[ids[k]] - vals[k]) / (1 + fabs(vals[k]))
                                                   : INFINITY;
            worst = rel > worst ? rel : worst;
            checked++;
            bad += rel > tol;
        }
        bool top1_bad = false, top1_checked = false;
        if (r->n_top >= 2 && vals[0] - vals[1] > 2 * tol * (1 + fabs(vals[0]))) {
            int64_t best = 0;
            for (int64_t i = 1; i < nv; i++)
                best = l[i] > l[best] ? i : best;
            top1_checked = true;
            top1_bad = best != ids[0];
        }
        if (tie && (bad || top1_bad)) {
            out->ties++; /* a routing near-tie decided differently: either choice is right */
            continue;
        }
        out->max_rel = worst > out->max_rel ? worst : out->max_rel;
        out->checked += checked;
        out->bad += bad;
        out->top1_checked += top1_checked;
        out->top1_bad += top1_bad;
    }
    free(logits);
    free(margins);
    return true;
}

bool parity_probe_degenerate(const ref_logits *r, char *why, size_t why_size)
{
    int self = 0;
    double mx = 0;
    for (int p = 0; p < r->n_pos; p++) {
        self += r->n_top > 0 && r->ids[p * r->n_top] == r->tokens[r->pos[p]];
        for (int k = 0; k < r->n_top; k++)
            mx = fabs(r->vals[p * r->n_top + k]) > mx ? fabs(r->vals[p * r->n_top + k]) : mx;
    }
    if (2 * self > r->n_pos) {
        snprintf(why, why_size, "llama.cpp's top-1 is the input token at %d of %d positions", self,
                 r->n_pos);
        return true;
    }
    if (mx > PARITY_MAX_LOGIT) {
        snprintf(why, why_size, "a logit of magnitude %.1f (bound %.0f)", mx, PARITY_MAX_LOGIT);
        return true;
    }
    return false;
}

static const char *isa_tag = ""; /* " @LEVEL" in a child run */

void parity_test_file(const md_model *m, kn_pool *pool, const char *ref_path, const char *label0)
{
    char label[300];
    snprintf(label, sizeof label, "%s%s", label0, isa_tag);
    double tol = model_is_quantized(m) ? 0.03 : 0.01;
    ref_logits r;
    if (!ref_load(ref_path, &r)) {
        test_fail_at(__FILE__, __LINE__, "cannot read %s", ref_path);
        return;
    }
    char why[160];
    CHECKF(!parity_probe_degenerate(&r, why, sizeof why), "%s: a degenerate probe: %s", label, why);
    parity_result pr;
    CHECKF(parity_check(m, pool, &r, tol, &pr), "%s: forward failed", label);
    CHECKF(pr.bad == 0, "%s: %d of %d logits off by more than %g (max %.4f)", label, pr.bad,
           pr.checked, tol, pr.max_rel);
    CHECKF(pr.top1_bad == 0, "%s: top-1 differs at %d of %d clear positions", label, pr.top1_bad,
           pr.top1_checked);
    CHECKF(pr.ties <= 1 + r.n_pos / 20, "%s: %d routing near-ties is too many", label, pr.ties);
    fprintf(stderr, "  parity %-40s tokens %3d  max rel err %.5f (tol %.2f)  top-1 %d/%d", label,
            r.n_tokens, pr.max_rel, tol, pr.top1_checked - pr.top1_bad, pr.top1_checked);
    if (pr.ties)
        fprintf(stderr, "  routing near-ties excused: %d", pr.ties);
    fputc('\n', stderr);
    ref_free(&r);
}

/* ---- the ISA levels --------------------------------------------------- */

const char *const parity_isa_names[KN_ISA_COUNT] = {"scalar", "avx2", "avx512", "amx"};

int parity_isa_child(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--isa"))
        return -1;
    static char tag[16];
    for (int l = 0; l < KN_ISA_COUNT; l++)
        if (!strcmp(argv[2], parity_isa_names[l])) {
            snprintf(tag, sizeof tag, " @%s", parity_isa_names[l]);
            isa_tag = tag;
            return l;
        }
    return -1;
}

void parity_isa_check_child(kn_isa level)
{
    CHECKF(kn_active_isa() == level, "asked for VT_ISA=%s, running at %s",
           parity_isa_names[level], parity_isa_names[kn_active_isa()]);
}

extern char **environ;

/* Runs "/proc/self/exe --isa NAME" with VT_ISA=NAME, its stdout joined to
 * stderr (so that the parent's summary line is the last one); returns its
 * wait status, or -1 if it could not be started. */
static int spawn_level(const char *argv0, const char *name)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env), isa[64];
    if (!env)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "VT_ISA=", 7))
            env[k++] = environ[i];
    snprintf(isa, sizeof isa, "VT_ISA=%s", name);
    env[k++] = isa;
    env[k] = NULL;
    char *args[] = {(char *)argv0, "--isa", (char *)name, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    fflush(NULL);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, args, env), st = -1;
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    if (rc) {
        fprintf(stderr, "  cannot start %s --isa %s: %s\n", argv0, name, strerror(rc));
        return -1;
    }
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return st;
}

void parity_isa_level(const char *argv0, kn_isa level)
{
    const char *name = parity_isa_names[level];
    if (!kn_traits_isa(VT_TYPE_F32, level)) {
        test_skip_hw("%s: parity at VT_ISA=%s not run", name, name);
        return;
    }
    if (kn_active_isa() == level) {
        fprintf(stderr, "  isa %s: the full set above ran at this level\n", name);
        return;
    }
    fprintf(stderr, "  isa %s: the subset, in a child process with VT_ISA=%s\n", name, name);
    int st = spawn_level(argv0, name);
    CHECKF(st == 0, "the run at VT_ISA=%s failed (wait status %d)", name, st);
}

int parity_child = -1;
static const char *parity_argv0;

static void test_isa_level(void)
{
    parity_isa_check_child((kn_isa)parity_child);
}
static void test_scalar(void)
{
    parity_isa_level(parity_argv0, KN_ISA_SCALAR);
}
static void test_avx2(void)
{
    parity_isa_level(parity_argv0, KN_ISA_AVX2);
}
static void test_avx512(void)
{
    parity_isa_level(parity_argv0, KN_ISA_AVX512);
}

int parity_main(int argc, char **argv, const char *suite, const char *test_name,
                void (*models)(void), kn_pool **pool)
{
    parity_argv0 = argv[0];
    parity_child = parity_isa_child(argc, argv);
    *pool = kn_pool_create(2);
    char name[128];
    if (parity_child >= 0) {
        test_run("test_isa_level", test_isa_level);
        test_run(test_name, models);
        snprintf(name, sizeof name, "%s_%s", suite, parity_isa_names[parity_child]);
    } else {
        fprintf(stderr, "  full set at %s\n", parity_isa_names[kn_active_isa()]);
        test_run(test_name, models);
        test_run("test_scalar", test_scalar);
        test_run("test_avx2", test_avx2);
        test_run("test_avx512", test_avx512);
        snprintf(name, sizeof name, "%s", suite);
    }
    kn_pool_destroy(*pool);
    *pool = NULL;
    return test_finish(name);
}
