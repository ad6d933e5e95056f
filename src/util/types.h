/*
 * types.h - the tensor types of GGUF files: ggml's type ids (what the files
 * store) and, for every id ggml defines, its name, elements per block and
 * bytes per block. Shared by the GGUF reader/writer (which must size any
 * tensor of a valid file, also of types vitamin has no arithmetic for) and
 * the kernels (whose traits add the arithmetic).
 */
#ifndef VT_TYPES_H
#define VT_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    VT_TYPE_F32 = 0,
    VT_TYPE_F16 = 1,
    VT_TYPE_Q4_0 = 2,
    VT_TYPE_Q4_1 = 3,
    VT_TYPE_Q5_0 = 6,
    VT_TYPE_Q5_1 = 7,
    VT_TYPE_Q8_0 = 8,
    VT_TYPE_Q8_1 = 9,
    VT_TYPE_Q2_K = 10,
    VT_TYPE_Q3_K = 11,
    VT_TYPE_Q4_K = 12,
    VT_TYPE_Q5_K = 13,
    VT_TYPE_Q6_K = 14,
    VT_TYPE_Q8_K = 15,
    VT_TYPE_IQ2_XXS = 16,
    VT_TYPE_IQ2_XS = 17,
    VT_TYPE_IQ3_XXS = 18,
    VT_TYPE_IQ1_S = 19,
    VT_TYPE_IQ4_NL = 20,
    VT_TYPE_IQ3_S = 21,
    VT_TYPE_IQ2_S = 22,
    VT_TYPE_IQ4_XS = 23,
    VT_TYPE_I8 = 24,
    VT_TYPE_I16 = 25,
    VT_TYPE_I32 = 26,
    VT_TYPE_I64 = 27,
    VT_TYPE_F64 = 28,
    VT_TYPE_IQ1_M = 29,
    VT_TYPE_BF16 = 30,
    VT_TYPE_TQ1_0 = 34,
    VT_TYPE_TQ2_0 = 35,
    VT_TYPE_MXFP4 = 39,
    VT_TYPE_COUNT = 40,
} vt_type;

/* Storage facts about a type id; known for every id ggml defines. */
typedef struct {
    const char *name; /* "q4_K", ... (NULL for ids ggml does not define) */
    int64_t blck;     /* elements per block */
    size_t size;      /* bytes per block */
} vt_type_info;

/* NULL if `t` is not a type id ggml defines. */
const vt_type_info *vt_type_get(uint32_t t);

/* Type id by name, case-insensitive ("q8_0", "Q4_K", "f16"); -1 if unknown. */
int vt_type_from_name(const char *name);

/* Bytes of a row of n elements (n must be a multiple of the block size). */
size_t vt_row_size(vt_type t, int64_t n);

#endif
