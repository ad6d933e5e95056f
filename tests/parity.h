/*
 * parity.h - comparing vitamin's logits with llama.cpp's reference files
 * (the JSON of ../shared/oracle/logits.mjs), shared by the parity tests.
 */
#ifndef VT_TEST_PARITY_H
#define VT_TEST_PARITY_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"

typedef struct {
    int n_tokens;
    int32_t *tokens;
    int n_pos;
    int *pos;     /* [n_pos] */
    int n_top;    /* entries per position */
    int32_t *ids; /* [n_pos][n_top] */
    double *vals; /* [n_pos][n_top] */
} ref_logits;

/* Loads a reference file; false (with a message on stderr) on failure. */
bool ref_load(const char *path, ref_logits *r);
void ref_free(ref_logits *r);

/* An MoE position whose expert choice was decided by less than this relative
 * probability gap (1%, the size of the numeric noise between two correct
 * implementations on quantized models), and whose logits then differ, is
 * excused (and counted):
 * flipping such a choice is within the numeric noise of any two
 * implementations (see md_ctx_route_margins). */
#define PARITY_TIE_MARGIN 1e-2

typedef struct {
    int ties;             /* positions excused as routing near-ties */
    double max_rel;       /* max |logit - ref| / (1 + |ref|) over the top-10 */
    int checked, bad, top1_checked, top1_bad;
} parity_result;

/* True if the model has any quantized matrix (then the looser tolerance
 * applies). */
bool model_is_quantized(const md_model *m);

/* Runs r's tokens through m (one batch, all positions) and compares the
 * top-10 of every position with tolerance tol. Returns false if the run
 * itself failed. */
bool parity_check(const md_model *m, kn_pool *pool, const ref_logits *r, double tol,
                  parity_result *out);

/* The whole test of one reference file: runs it, records failures with the
 * test harness (CHECK) and prints one summary line labelled `label`. */
void parity_test_file(const md_model *m, kn_pool *pool, const char *ref_path, const char *label);

#endif
