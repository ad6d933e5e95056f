/*
 * parity.h - comparing vitamin's logits with llama.cpp's reference files
 * (the JSON of ../shared/oracle/logits.mjs), shared by the parity tests.
 */
#ifndef VT_TEST_PARITY_H
#define VT_TEST_PARITY_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/kernels.h"
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

/* A probe that cannot fail: llama.cpp's top-1 is the input token itself at
 * more than half the positions (the output is the token's own embedding
 * coming back, as with tied embeddings and a small residual), or some
 * logit's magnitude is past PARITY_MAX_LOGIT (then a tolerance relative to
 * |ref| is loose). Returns true, with the reason in why, if r is such a
 * probe. */
#define PARITY_MAX_LOGIT 32.0
bool parity_probe_degenerate(const ref_logits *r, char *why, size_t why_size);

/* The whole test of one reference file: runs it, records failures with the
 * test harness (CHECK) and prints one summary line labelled `label`. */
void parity_test_file(const md_model *m, kn_pool *pool, const char *ref_path, const char *label);

/* ---- the ISA levels ----
 * A parity program runs its full set at the level kn_init() picked, then
 * itself again as "PROGRAM --isa LEVEL" (VT_ISA=LEVEL) for every other level
 * the CPU has, where it runs a subset. */
extern const char *const parity_isa_names[KN_ISA_COUNT];

/* The level asked for by "--isa LEVEL" in argv, or -1 if this is not a
 * child run. */
int parity_isa_child(int argc, char **argv);

/* In a child run: records a failure unless kn_init() picked `level`. */
void parity_isa_check_child(kn_isa level);

/* In the parent, one test per level: nothing to do if `level` is the active
 * one (the full set ran at it); a skip naming the level if the CPU lacks it;
 * otherwise this program (/proc/self/exe, argv0 as its name) runs again with
 * "--isa LEVEL" and VT_ISA=LEVEL, and its failure is a failure here. */
void parity_isa_level(const char *argv0, kn_isa level);

/* The level of this child run, or -1 in the parent (set by parity_main). */
extern int parity_child;

/* main() of a parity program: starts *pool (2 threads), runs models (named
 * test_name) at the level kn_init() picked - in a child run after checking
 * the level, over the program's subset - and in the parent one test per
 * other ISA level (parity_isa_level); prints the summary as `suite` (a
 * child: suite_LEVEL) and returns the exit status. */
int parity_main(int argc, char **argv, const char *suite, const char *test_name,
                void (*models)(void), kn_pool **pool);

#endif
