/*
 * fuzz_gguf.c - libFuzzer harness for the GGUF reader: every input is parsed
 * with gguf_open_memory(); when it is accepted, every kv (nested arrays
 * included, element by element and through the raw pointer), every key and
 * tensor lookup and every tensor's first and last data byte are touched, and
 * the reader's promises (tensor data inside the input, aligned offsets,
 * lookups that find what is listed) are checked with __builtin_trap(). Built
 * with ASan+UBSan by fuzz/fuzz.mk; see fuzz/README.md.
 */
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static uint64_t walk_value(const gguf_value *v, int depth)
{
    uint64_t h = (uint64_t)v->type;
    ASSERT(depth <= 16);
    if (v->type == GGUF_T_STRING) {
        for (uint64_t i = 0; i < v->v.str.len; i++)
            h = h * 31 + (uint8_t)v->v.str.ptr[i];
    } else if (v->type == GGUF_T_ARRAY) {
        const uint8_t *raw = gguf_arr_raw(v);
        uint64_t size = gguf_vtype_size(v->arr_type);
        ASSERT((raw != NULL) == (size != 0));
        if (raw)
            for (uint64_t i = 0; i < v->arr_n * size; i++)
                h = h * 31 + raw[i];
        gguf_value el;
        for (uint64_t j = 0; j < v->arr_n; j++) {
            ASSERT(gguf_arr_get(v, j, &el));
            ASSERT(el.type == v->arr_type);
            h = h * 31 + walk_value(&el, depth + 1);
        }
        ASSERT(!gguf_arr_get(v, v->arr_n, &el));
    } else {
        h = h * 31 + v->v.u64;
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    if (gguf_open_memory(data, size, &f) != VT_OK) {
        ASSERT(f == NULL);
        return 0;
    }
    volatile uint64_t sink = 0;
    uint64_t align = gguf_alignment(f);
    ASSERT(align && (align & (align - 1)) == 0);
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        gguf_str k = gguf_kv_key(f, i);
        char key[256];
        ASSERT(k.len > 0);
        if (k.len < sizeof key) {
            memcpy(key, k.ptr, k.len);
            key[k.len] = 0;
            ASSERT(gguf_find_key(f, key) == i);
            uint32_t u32;
            int64_t i64;
            float f32;
            bool b;
            gguf_str s;
            sink += gguf_get_u32(f, key, &u32) + gguf_get_i64(f, key, &i64) +
                    gguf_get_f32(f, key, &f32) + gguf_get_bool(f, key, &b) +
                    gguf_get_str(f, key, &s) + (gguf_get_arr(f, key) != NULL);
        }
        sink += walk_value(gguf_kv_value(f, i), 0);
    }
    const uint8_t *end = data + size;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *d = t->data;
        ASSERT(gguf_find_tensor(f, t->name) == t);
        ASSERT(t->nbytes > 0 && t->offset % align == 0);
        ASSERT(d >= data && d <= end && t->nbytes <= (uint64_t)(end - d));
        sink += d[0] + d[t->nbytes - 1];
    }
    (void)sink;
    gguf_close(f);
    return 0;
}
