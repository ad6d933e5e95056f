/*
 * model_internal.h - structures shared by the files of model/ only.
 */
#ifndef VT_MODEL_INTERNAL_H
#define VT_MODEL_INTERNAL_H

#include "model.h"
#include "util/util.h"

struct md_kv {
    int64_t n_layers, n_blocks;
    int block_size;
    int64_t k_dim, v_dim; /* floats per token slot: n_kv_heads * head_dim(_v) */
    vt_fp16 **k, **v;     /* [layer] -> [n_blocks * block_size * k_dim] */
};

#endif
