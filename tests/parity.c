/*
 * parity.c - implementation of parity.h.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void parity_test_file(const md_model *m, kn_pool *pool, const char *ref_path, const char *label)
{
    double tol = model_is_quantized(m) ? 0.03 : 0.01;
    ref_logits r;
    if (!ref_load(ref_path, &r)) {
        test_fail_at(__FILE__, __LINE__, "cannot read %s", ref_path);
        return;
    }
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
