/*
 * types.c - the storage table of ggml's tensor types: name, elements per
 * block and bytes per block, for every type id ggml defines (including types
 * vitamin has no arithmetic for, so that any valid GGUF file can be parsed and
 * described).
 */
#include <strings.h>

#include "util/types.h"

static const vt_type_info type_table[VT_TYPE_COUNT] = {
    [VT_TYPE_F32] = {"f32", 1, 4},
    [VT_TYPE_F16] = {"f16", 1, 2},
    [VT_TYPE_Q4_0] = {"q4_0", 32, 18},
    [VT_TYPE_Q4_1] = {"q4_1", 32, 20},
    [VT_TYPE_Q5_0] = {"q5_0", 32, 22},
    [VT_TYPE_Q5_1] = {"q5_1", 32, 24},
    [VT_TYPE_Q8_0] = {"q8_0", 32, 34},
    [VT_TYPE_Q8_1] = {"q8_1", 32, 36},
    [VT_TYPE_Q2_K] = {"q2_K", 256, 84},
    [VT_TYPE_Q3_K] = {"q3_K", 256, 110},
    [VT_TYPE_Q4_K] = {"q4_K", 256, 144},
    [VT_TYPE_Q5_K] = {"q5_K", 256, 176},
    [VT_TYPE_Q6_K] = {"q6_K", 256, 210},
    [VT_TYPE_Q8_K] = {"q8_K", 256, 292},
    [VT_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66},
    [VT_TYPE_IQ2_XS] = {"iq2_xs", 256, 74},
    [VT_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98},
    [VT_TYPE_IQ1_S] = {"iq1_s", 256, 50},
    [VT_TYPE_IQ4_NL] = {"iq4_nl", 32, 18},
    [VT_TYPE_IQ3_S] = {"iq3_s", 256, 110},
    [VT_TYPE_IQ2_S] = {"iq2_s", 256, 82},
    [VT_TYPE_IQ4_XS] = {"iq4_xs", 256, 136},
    [VT_TYPE_I8] = {"i8", 1, 1},
    [VT_TYPE_I16] = {"i16", 1, 2},
    [VT_TYPE_I32] = {"i32", 1, 4},
    [VT_TYPE_I64] = {"i64", 1, 8},
    [VT_TYPE_F64] = {"f64", 1, 8},
    [VT_TYPE_IQ1_M] = {"iq1_m", 256, 56},
    [VT_TYPE_BF16] = {"bf16", 1, 2},
    [VT_TYPE_TQ1_0] = {"tq1_0", 256, 54},
    [VT_TYPE_TQ2_0] = {"tq2_0", 256, 66},
    [VT_TYPE_MXFP4] = {"mxfp4", 32, 17},
};

const vt_type_info *vt_type_get(uint32_t t)
{
    if (t >= VT_TYPE_COUNT || type_table[t].name == NULL)
        return NULL;
    return &type_table[t];
}

int vt_type_from_name(const char *name)
{
    for (int t = 0; t < VT_TYPE_COUNT; t++)
        if (type_table[t].name && strcasecmp(type_table[t].name, name) == 0)
            return t;
    return -1;
}

size_t vt_row_size(vt_type t, int64_t n)
{
    const vt_type_info *ti = vt_type_get((uint32_t)t);
    return ti ? (size_t)(n / ti->blck) * ti->size : 0;
}
