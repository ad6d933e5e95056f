/*
 * kernels.h - tensor element types (ggml's numbering and block layouts),
 * dequantization, quantization, dot products, matrix multiplication and the
 * thread pool that runs them.
 *
 * Types: the ids are ggml's (they are what GGUF files store). A quantized type
 * packs `blck` elements into `size` bytes; the block structs in quants.h are
 * byte-identical to ggml's. Every supported type has a scalar reference
 * implementation; SIMD variants (AVX2, AVX-512) are selected at run time by
 * kn_init() from cpuid and are tested against the scalar ones.
 *
 * Dot products pair a weight row with an activation row quantized to the
 * weight type's `dot_type` (ggml's pairing: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for
 * Q4_1/Q5_1, Q8_K for the K-quants, F16 for F16, BF16 for BF16, F32 for F32),
 * so that results match llama.cpp's numerics.
 */
#ifndef VT_KERNELS_H
#define VT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/types.h"
#include "vitamin.h"

/* The tensor types (vt_type) and their storage facts live in util/types.h,
 * where the GGUF reader can use them without the kernels. */


/* Instruction-set levels for kernel selection. */
/* KN_ISA_AMX: the AVX-512 level plus Intel AMX tiles for Q8_0 and Q4_K, with
 * those types' numerics made tile-friendly (quants_canon.c, amx.c). */
typedef enum {
    KN_ISA_SCALAR = 0,
    KN_ISA_AVX2 = 1,
    KN_ISA_AVX512 = 2,
    KN_ISA_AMX = 3,
    KN_ISA_COUNT
} kn_isa;

/* Arithmetic for one type; a NULL function pointer means "not available". */
typedef struct {
    vt_type type;
    vt_type dot_type; /* the activation format vec_dot expects */
    /* y[0..n) = dequantized x; n a multiple of blck. */
    void (*to_float)(const void *x, float *y, int64_t n);
    /* Quantize n floats into blocks (used for activations; may be SIMD). */
    void (*from_float)(const float *x, void *y, int64_t n);
    /* sum_i w[i]*a[i] over n elements; w of this type, a of dot_type. */
    float (*vec_dot)(int64_t n, const void *w, const void *a);
    /* One weight row against nt activation rows (the prefill / batched kernel):
     * out[k * out_stride] = vec_dot(n, w, a + k * a_stride) for k < nt, with
     * a_stride in bytes and out_stride in floats. The weights are decoded once
     * for a group of rows, so this is much faster than nt vec_dot calls. Set
     * wherever vec_dot is; equal to vec_dot up to float summation order. */
    void (*vec_dot_n)(int64_t n, const void *w, const void *a, size_t a_stride, int nt,
                      float *out, size_t out_stride);
    /* nr weight rows against one activation row (the decode GEMV kernel):
     * out[i] = vec_dot(n, w + i * w_stride, a) for i < nr (nr >= 0, any
     * size; w_stride in bytes). Several rows are streamed side by side with
     * the activation block loaded once for all of them, the next rows
     * prefetched and the horizontal sums done together. Set wherever vec_dot
     * is; every result is bit-identical to vec_dot's. */
    void (*vec_dot_rows)(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                         float *out);
    /* nr weight rows against nt activation rows (the GEMM tile of prefill
     * and batched decode): out[k * out_stride + i] = vec_dot(n, w + i *
     * w_stride, a + k * a_stride) for i < nr, k < nt (strides in bytes, out
     * in floats; any nr, nt >= 0). Register-blocked over rows and tokens, so
     * each weight block loaded serves several tokens and each activation
     * block several rows. Every result is bit-identical to vec_dot's. NULL
     * where a level has no such kernel for the type (kn_matmul then uses
     * vec_dot_n). */
    void (*gemm)(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                 size_t a_stride, int nt, float *out, size_t out_stride);
    /* The AMX tiles (NULL elsewhere): the activations of a multiplication are
     * packed once, per group of 16 tokens (pack_size(n) bytes each; pack
     * takes nt <= 16 rows of dot_type, the missing ones packed as zeros),
     * then gemm_packed does nr rows x nt tokens like gemm, reading the
     * groups from packed (a is the same activations unpacked, for the rows
     * that do not fill a tile). Bit-identical to vec_dot. */
    size_t (*pack_size)(int64_t n);
    void (*pack)(int64_t n, const void *a, size_t a_stride, int nt, void *dst);
    void (*gemm_packed)(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                        size_t a_stride, const void *packed, int nt, float *out,
                        size_t out_stride);
    /* From this many tokens kn_matmul takes gemm_packed (0: its default);
     * fewer, gemm. */
    int pack_min;
} kn_traits;

/* Selects SIMD kernels for this CPU (idempotent, thread-safe). The environment
 * variable VT_ISA=scalar|avx2|avx512|amx caps the level (for tests/benchmarks). */
void kn_init(void);

/* The ISA level kn_init() chose. */
kn_isa kn_active_isa(void);

/* Traits for t with the active kernels; NULL if the type has no arithmetic. */
const kn_traits *kn_traits_get(vt_type t);

/* Traits for t at one specific ISA level (for tests that compare levels);
 * NULL if that level has no kernels for t or the CPU lacks the ISA. */
const kn_traits *kn_traits_isa(vt_type t, kn_isa isa);

/* Reference quantization of weights (scalar, deterministic): n floats, n a
 * multiple of the block size. Returns VT_ERR_UNSUPPORTED for types that have
 * no quantizer. */
vt_err kn_quantize_ref(vt_type t, const float *x, void *y, int64_t n);

/* ---- thread pool ---------------------------------------------------- */

typedef struct kn_pool kn_pool;

/* A pool of n_threads workers including the caller (n_threads >= 1).
 * Returns NULL on failure (vt_last_error says why). */
kn_pool *kn_pool_create(int n_threads);
void kn_pool_destroy(kn_pool *p); /* NULL is a no-op */
int kn_pool_size(const kn_pool *p);

/* Runs fn(ctx, ith, nth) on every thread of the pool (ith = 0..nth-1, the
 * caller is ith 0) and returns when all have finished. p may be NULL: then fn
 * runs once on the caller with nth = 1. */
typedef void (*kn_task_fn)(void *ctx, int ith, int nth);
void kn_pool_run(kn_pool *p, kn_task_fn fn, void *ctx);

/* ---- matrix multiplication ------------------------------------------- */

/* y[t][r] = sum_c W[r][c] * x[t][c] for t < ntok, r < rows.
 * W: rows x cols in type wtype (row-major, rows of vt_row_size(wtype, cols));
 * x: ntok x cols floats; y: ntok x rows floats (row stride `ldy`).
 * Activations are quantized to the weight's dot_type first, as ggml does. */
vt_err kn_matmul(kn_pool *p, vt_type wtype, const void *w, int64_t rows, int64_t cols,
                 const float *x, int64_t ntok, float *y, int64_t ldy);

/* A caller-owned workspace for the quantized activations, so that a model
 * runner does not allocate on every multiplication: it grows to the largest
 * need seen. Zero-initialize; kn_ws_free releases it. One workspace must not
 * be used by two multiplications at once. */
typedef struct {
    void *p;
    size_t cap;
} kn_ws;
void kn_ws_free(kn_ws *ws);

/* kn_matmul with a workspace (ws NULL: allocate for this call). */
vt_err kn_matmul_ws(kn_pool *p, kn_ws *ws, vt_type wtype, const void *w, int64_t rows,
                    int64_t cols, const float *x, int64_t ntok, float *y, int64_t ldy);

/* Several matrices of one row length in one call, each over its own rows
 * of x (nx rows of cols floats): x is quantized once for them all, and one
 * pass of the pool runs every matrix's rows, so that small matrices (a
 * mixture's experts, Q K V, gate and up) cost one hand-off, not one each.
 * Matrix i: y[k * ldy + r] = W[r] . x[row k], for the rows of x listed in
 * tok (NULL: rows first .. first + ntok - 1). Every result equals
 * kn_matmul's for the same weights and activation row. */
typedef struct {
    vt_type type;
    const void *w;
    int64_t rows;
    const int32_t *tok;
    int64_t first, ntok;
    float *y;
    int64_t ldy;
} kn_mm;
vt_err kn_matmul_multi(kn_pool *p, kn_ws *ws, const float *x, int64_t nx, int64_t cols, int n,
                       const kn_mm *mm);

#endif
