/*
 * gguf.h - reading (over mmap, validated) and writing GGUF v2/v3 files.
 *
 * A gguf_file is opened once and is read-only afterwards, so it may be shared
 * between threads. Everything returned from it (strings, tensor infos, tensor
 * data) points into the file's mapping or the handle's own tables and stays
 * valid until gguf_close(). Strings inside the file are NOT NUL-terminated:
 * they come back as gguf_str views (ptr, len).
 *
 * Every size, count and offset read from the file is checked before use: a
 * malformed file yields VT_ERR_FORMAT (or VT_ERR_UNSUPPORTED for a valid but
 * unknown version/type) with a message naming the problem, never a crash.
 */
#ifndef VT_GGUF_H
#define VT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vitamin.h"

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef enum {
    GGUF_T_UINT8 = 0,
    GGUF_T_INT8 = 1,
    GGUF_T_UINT16 = 2,
    GGUF_T_INT16 = 3,
    GGUF_T_UINT32 = 4,
    GGUF_T_INT32 = 5,
    GGUF_T_FLOAT32 = 6,
    GGUF_T_BOOL = 7,
    GGUF_T_STRING = 8,
    GGUF_T_ARRAY = 9,
    GGUF_T_UINT64 = 10,
    GGUF_T_INT64 = 11,
    GGUF_T_FLOAT64 = 12,
    GGUF_T_COUNT
} gguf_vtype;

/* Bytes of one element of a fixed-size type (1, 2, 4 or 8); 0 for strings,
 * arrays and invalid types. */
uint64_t gguf_vtype_size(gguf_vtype t);
/* "uint8", ..., "array"; "?" for an invalid type. Static, never NULL. */
const char *gguf_vtype_name(gguf_vtype t);

typedef struct {
    const char *ptr; /* not NUL-terminated */
    uint64_t len;
} gguf_str;

/* A metadata value (or an element of an array value). */
typedef struct {
    gguf_vtype type;
    /* scalars (filled according to type; integers are also widened into i64/u64) */
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
        bool b;
        gguf_str str;
    } v;
    /* arrays: element type, count, and an opaque handle for element access */
    gguf_vtype arr_type;
    uint64_t arr_n;
    const void *arr_impl;
} gguf_value;

typedef struct {
    const char *name; /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous dimension; unused dims are 1 */
    uint32_t type;             /* vt_type id */
    uint64_t offset;           /* relative to the data section */
    uint64_t nbytes;
    const void *data; /* into the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Opens and validates `path` (mmap, read-only). On failure *out is NULL. */
vt_err gguf_open(const char *path, gguf_file **out);

/* Parses a buffer in memory (not copied: it must outlive the handle). */
vt_err gguf_open_memory(const void *data, size_t size, gguf_file **out);

void gguf_close(gguf_file *f); /* NULL is a no-op */

uint32_t gguf_version(const gguf_file *f);
uint64_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f); /* start of the tensor data section */
uint64_t gguf_size(const gguf_file *f);        /* bytes in the file */

/* ---- metadata ---- */
int64_t gguf_n_kv(const gguf_file *f);
/* Index of key, or -1. */
int64_t gguf_find_key(const gguf_file *f, const char *key);
gguf_str gguf_kv_key(const gguf_file *f, int64_t i);
/* The value of kv i (for arrays: type, element type and count). */
const gguf_value *gguf_kv_value(const gguf_file *f, int64_t i);
/* Element j of an array value (element arrays of arrays come back as arrays).
 * Returns false if j is out of range. */
bool gguf_arr_get(const gguf_value *arr, uint64_t j, gguf_value *out);
/* Pointer to the raw little-endian elements of a numeric array (may be
 * unaligned; read with memcpy) or NULL for string/array element types. */
const void *gguf_arr_raw(const gguf_value *arr);

/* Typed getters by key. They return false if the key is absent or the value
 * cannot be represented in the requested type (e.g. negative to unsigned,
 * string to number). Integer getters accept any integer type; float getters
 * accept float32/float64 and integers. */
bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
bool gguf_get_f32(const gguf_file *f, const char *key, float *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* An array by key: its value, or NULL if absent or not an array. */
const gguf_value *gguf_get_arr(const gguf_file *f, const char *key);

/* ---- tensors ---- */
int64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);
/* NULL if absent. O(1) average (hash table). */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* ---- writer ---- */
typedef struct gguf_writer gguf_writer;

/* Fills dst with the tensor's nbytes of data (for tensors added without a
 * buffer, so that huge files can be produced tensor by tensor). */
typedef vt_err (*gguf_fill_fn)(void *ctx, const char *name, void *dst, uint64_t nbytes);

gguf_writer *gguf_writer_create(void); /* v3, alignment 32; NULL on OOM */
void gguf_writer_destroy(gguf_writer *w);

/* Setting a key that already exists replaces its value. Strings are copied. */
vt_err gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
vt_err gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
vt_err gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
vt_err gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
vt_err gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
vt_err gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Numeric array: n elements of elem_type, little-endian, copied. */
vt_err gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype elem_type, const void *data,
                           uint64_t n);
vt_err gguf_writer_set_arr_str(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n);
/* Copies kv i of src (any type, nested arrays included). */
vt_err gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src, int64_t i);
/* Removes a key if present. */
void gguf_writer_remove(gguf_writer *w, const char *key);

/* Adds a tensor. data (nbytes, borrowed until gguf_writer_write returns) may
 * be NULL: then fill(ctx, ...) is called for it at write time. */
vt_err gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                              const int64_t *ne, const void *data, gguf_fill_fn fill, void *ctx);

/* Writes the file atomically (to path.tmp, then rename). */
vt_err gguf_writer_write(gguf_writer *w, const char *path);

#endif
