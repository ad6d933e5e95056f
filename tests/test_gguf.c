/*
 * test_gguf.c - the GGUF reader and writer: round trips of every value type,
 * nested arrays and tensors (borrowed and filled); every real file under
 * ../shared/fixtures parsed and checked against values read independently;
 * hostile files built from a valid one (each corruption must fail cleanly
 * with VT_ERR_FORMAT/UNSUPPORTED and a message naming the problem); every
 * prefix of a valid file; and thousands of seeded random mutations (run
 * under sanitizers, these catch any read out of bounds).
 *
 * With VT_GGUF_CORPUS=DIR set, the binary instead writes a small seed corpus
 * for fuzz/fuzz_gguf into DIR and exits (see fuzz/README.md).
 */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "test.h"
#include "util/util.h"

/* ---- helpers ------------------------------------------------------------- */

/* A byte builder for files the writer cannot produce. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} raw;

static void raw_put(raw *r, const void *p, size_t n)
{
    if (r->n + n > r->cap) {
        r->cap = (r->n + n) * 2 + 64;
        r->p = realloc(r->p, r->cap);
        if (!r->p)
            abort();
    }
    memcpy(r->p + r->n, p, n);
    r->n += n;
}

static void raw_u8(raw *r, uint8_t x)
{
    raw_put(r, &x, 1);
}

static void raw_u16(raw *r, uint16_t x)
{
    raw_put(r, &x, 2);
}

static void raw_u32(raw *r, uint32_t x)
{
    raw_put(r, &x, 4);
}

static void raw_u64(raw *r, uint64_t x)
{
    raw_put(r, &x, 8);
}

static void raw_f64(raw *r, double x)
{
    raw_put(r, &x, 8);
}

static void raw_str(raw *r, const char *s)
{
    raw_u64(r, strlen(s));
    raw_put(r, s, strlen(s));
}

static void raw_header(raw *r, uint32_t version, uint64_t n_t, uint64_t n_kv)
{
    raw_put(r, "GGUF", 4);
    raw_u32(r, version);
    raw_u64(r, n_t);
    raw_u64(r, n_kv);
}

/* The payload of `levels` arrays nested in each other, the innermost being
 * three uint16 (1, 2, 3). */
static void raw_nested(raw *r, int levels)
{
    if (levels == 1) {
        raw_u32(r, GGUF_T_UINT16);
        raw_u64(r, 3);
        for (uint16_t i = 1; i <= 3; i++)
            raw_u16(r, i);
        return;
    }
    raw_u32(r, GGUF_T_ARRAY);
    raw_u64(r, 1);
    raw_nested(r, levels - 1);
}

static char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", test_tmpdir(), name);
    return p;
}

/* Writes w to a temporary file and reads it back into memory. */
static uint8_t *write_and_load(gguf_writer *w, const char *name, size_t *len)
{
    const char *path = tmp_path(name);
    vt_err e = gguf_writer_write(w, path);
    CHECKF(e == VT_OK, "write %s: %s", path, vt_last_error());
    if (e != VT_OK)
        return NULL;
    return (uint8_t *)test_read_file(path, len);
}

/* Parses an exact-size heap copy of buf (so that the sanitizer sees any read
 * past its end). On success *copy must be freed after gguf_close. */
static vt_err open_copy(const uint8_t *buf, size_t len, gguf_file **f, uint8_t **copy)
{
    *copy = malloc(len ? len : 1);
    if (len)
        memcpy(*copy, buf, len);
    vt_err e = gguf_open_memory(*copy, len, f);
    if (e != VT_OK) {
        free(*copy);
        *copy = NULL;
    }
    return e;
}

/* Reads every byte the file exposes: all kvs (recursively) and all tensors. */
static uint64_t walk_value(const gguf_value *v, int depth)
{
    uint64_t h = (uint64_t)v->type;
    if (v->type == GGUF_T_STRING) {
        for (uint64_t i = 0; i < v->v.str.len; i++)
            h = h * 31 + (uint8_t)v->v.str.ptr[i];
    } else if (v->type == GGUF_T_ARRAY) {
        CHECK(depth < 16);
        const uint8_t *raw = gguf_arr_raw(v);
        uint64_t size = gguf_vtype_size(v->arr_type);
        if (raw) {
            for (uint64_t i = 0; i < v->arr_n * size; i++)
                h = h * 31 + raw[i];
        }
        gguf_value el;
        for (uint64_t j = 0; j < v->arr_n; j++) {
            if (!gguf_arr_get(v, j, &el)) {
                CHECK(!"arr_get in range failed");
                break;
            }
            CHECK(el.type == v->arr_type);
            h = h * 31 + walk_value(&el, depth + 1);
        }
        CHECK(!gguf_arr_get(v, v->arr_n, &el));
    } else {
        h = h * 31 + v->v.u64;
    }
    return h;
}

static uint64_t walk_file(const gguf_file *f)
{
    uint64_t h = 0;
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        gguf_str k = gguf_kv_key(f, i);
        char key[4096];
        if (k.len < sizeof key) {
            memcpy(key, k.ptr, k.len);
            key[k.len] = 0;
            CHECK(gguf_find_key(f, key) == i);
        }
        h = h * 31 + walk_value(gguf_kv_value(f, i), 0);
    }
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(gguf_find_tensor(f, t->name) == t);
        const uint8_t *d = t->data;
        h = h * 31 + d[0] + d[t->nbytes - 1];
    }
    return h;
}

/* Deep equality of two values (arrays elementwise). */
static bool value_eq(const gguf_value *a, const gguf_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case GGUF_T_STRING:
        return a->v.str.len == b->v.str.len &&
               memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len) == 0;
    case GGUF_T_BOOL: return a->v.b == b->v.b;
    case GGUF_T_FLOAT32:
    case GGUF_T_FLOAT64: return memcmp(&a->v.f64, &b->v.f64, 8) == 0;
    case GGUF_T_ARRAY: {
        if (a->arr_type != b->arr_type || a->arr_n != b->arr_n)
            return false;
        gguf_value x, y;
        for (uint64_t j = 0; j < a->arr_n; j++)
            if (!gguf_arr_get(a, j, &x) || !gguf_arr_get(b, j, &y) || !value_eq(&x, &y))
                return false;
        return true;
    }
    default: return a->v.u64 == b->v.u64;
    }
}

static bool str_eq(gguf_str s, const char *c)
{
    return s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0;
}

/* ---- the round trip ---------------------------------------------------------- */

static vt_err fill_pattern(void *ctx, const char *name, void *dst, uint64_t nbytes)
{
    int *calls = ctx;
    (*calls)++;
    uint8_t *d = dst;
    for (uint64_t i = 0; i < nbytes; i++)
        d[i] = (uint8_t)(i * 7 + (uint8_t)name[0]);
    return VT_OK;
}

static vt_err fill_fails(void *ctx, const char *name, void *dst, uint64_t nbytes)
{
    (void)ctx, (void)dst, (void)nbytes;
    return vt_fail(VT_ERR_IO, "fill of %s refused", name);
}

static void test_roundtrip(void)
{
    gguf_writer *w = gguf_writer_create();
    CHECK(w != NULL);
    CHECK(gguf_writer_set_str(w, "general.architecture", "test") == VT_OK);
    CHECK(gguf_writer_set_u32(w, "k.u32", 4000000000u) == VT_OK);
    CHECK(gguf_writer_set_i32(w, "k.i32", -123456) == VT_OK);
    CHECK(gguf_writer_set_u64(w, "k.u64", 0xfedcba9876543210ull) == VT_OK);
    CHECK(gguf_writer_set_f32(w, "k.f32", 1.5e-3f) == VT_OK);
    CHECK(gguf_writer_set_bool(w, "k.bool", true) == VT_OK);
    CHECK(gguf_writer_set_bool(w, "k.false", false) == VT_OK);
    CHECK(gguf_writer_set_str(w, "k.str", "h\xc3\xa9llo") == VT_OK);
    CHECK(gguf_writer_set_str(w, "k.empty", "") == VT_OK);
    CHECK(gguf_writer_set_u32(w, "k.replaced", 1) == VT_OK);
    CHECK(gguf_writer_set_str(w, "k.replaced", "now a string") == VT_OK);
    CHECK(gguf_writer_set_u32(w, "k.removed", 1) == VT_OK);
    gguf_writer_remove(w, "k.removed");
    gguf_writer_remove(w, "k.never-there");

    const uint8_t a_u8[] = {0, 1, 255};
    const int8_t a_i8[] = {-128, 0, 127};
    const uint16_t a_u16[] = {0, 65535, 12345};
    const int16_t a_i16[] = {-32768, 32767, -1};
    const uint32_t a_u32[] = {0, 4294967295u, 7};
    const int32_t a_i32[] = {INT32_MIN, INT32_MAX, -5};
    const float a_f32[] = {-0.0f, 3.25f, 1e30f};
    const uint8_t a_bool[] = {1, 0, 1};
    const uint64_t a_u64[] = {0, UINT64_MAX, 1ull << 40};
    const int64_t a_i64[] = {INT64_MIN, INT64_MAX, -2};
    const double a_f64[] = {1e-300, -2.5, 1e300};
    struct {
        const char *key;
        gguf_vtype t;
        const void *data;
    } arrs[] = {
        {"a.u8", GGUF_T_UINT8, a_u8},   {"a.i8", GGUF_T_INT8, a_i8},
        {"a.u16", GGUF_T_UINT16, a_u16}, {"a.i16", GGUF_T_INT16, a_i16},
        {"a.u32", GGUF_T_UINT32, a_u32}, {"a.i32", GGUF_T_INT32, a_i32},
        {"a.f32", GGUF_T_FLOAT32, a_f32}, {"a.bool", GGUF_T_BOOL, a_bool},
        {"a.u64", GGUF_T_UINT64, a_u64}, {"a.i64", GGUF_T_INT64, a_i64},
        {"a.f64", GGUF_T_FLOAT64, a_f64},
    };
    for (size_t i = 0; i < VT_ARRAY_LEN(arrs); i++)
        CHECK(gguf_writer_set_arr(w, arrs[i].key, arrs[i].t, arrs[i].data, 3) == VT_OK);
    CHECK(gguf_writer_set_arr(w, "a.empty", GGUF_T_INT32, NULL, 0) == VT_OK);
    const gguf_str strs[] = {{"alpha", 5}, {"", 0}, {"nul\0inside", 10}, {"\xe2\x96\x81x", 4}};
    CHECK(gguf_writer_set_arr_str(w, "a.str", strs, 4) == VT_OK);
    /* invalid arguments */
    CHECK(gguf_writer_set_arr(w, "a.bad", GGUF_T_STRING, a_u8, 3) == VT_ERR_INVALID);
    const uint8_t bad_bool[] = {0, 2};
    CHECK(gguf_writer_set_arr(w, "a.bad", GGUF_T_BOOL, bad_bool, 2) == VT_ERR_INVALID);
    CHECK(gguf_writer_set_u32(w, "", 1) == VT_ERR_INVALID);
    CHECK(gguf_writer_set_str(w, "a.bad", NULL) == VT_ERR_INVALID);

    /* tensors of several types and ranks, borrowed and filled */
    float t_f32[8];
    for (int i = 0; i < 8; i++)
        t_f32[i] = (float)i * 0.5f - 1.0f;
    uint16_t t_f16[4 * 3];
    for (int i = 0; i < 12; i++)
        t_f16[i] = vt_fp32_to_fp16((float)i);
    int32_t t_i32[2 * 3 * 4 * 5];
    for (int i = 0; i < 120; i++)
        t_i32[i] = i * 1000 - 7;
    int calls = 0;
    const int64_t ne_f32[] = {8}, ne_f16[] = {4, 3}, ne_q8[] = {64, 3}, ne_q4k[] = {256, 2, 2},
                  ne_i32[] = {2, 3, 4, 5};
    CHECK(gguf_writer_add_tensor(w, "t.f32", VT_TYPE_F32, 1, ne_f32, t_f32, NULL, NULL) == VT_OK);
    CHECK(gguf_writer_add_tensor(w, "t.f16", VT_TYPE_F16, 2, ne_f16, t_f16, NULL, NULL) == VT_OK);
    CHECK(gguf_writer_add_tensor(w, "t.q8_0", VT_TYPE_Q8_0, 2, ne_q8, NULL, fill_pattern,
                                 &calls) == VT_OK);
    CHECK(gguf_writer_add_tensor(w, "t.q4_K", VT_TYPE_Q4_K, 3, ne_q4k, NULL, fill_pattern,
                                 &calls) == VT_OK);
    CHECK(gguf_writer_add_tensor(w, "t.i32", VT_TYPE_I32, 4, ne_i32, t_i32, NULL, NULL) == VT_OK);
    /* invalid tensors */
    const int64_t ne_bad[] = {33}, ne_zero[] = {0};
    CHECK(gguf_writer_add_tensor(w, "t.f32", VT_TYPE_F32, 1, ne_f32, t_f32, NULL, NULL) ==
          VT_ERR_INVALID);
    CHECK(gguf_writer_add_tensor(w, "t.x", VT_TYPE_Q8_0, 1, ne_bad, t_f32, NULL, NULL) ==
          VT_ERR_INVALID);
    CHECK(gguf_writer_add_tensor(w, "t.x", VT_TYPE_F32, 1, ne_zero, t_f32, NULL, NULL) ==
          VT_ERR_INVALID);
    CHECK(gguf_writer_add_tensor(w, "t.x", VT_TYPE_F32, 5, ne_i32, t_f32, NULL, NULL) ==
          VT_ERR_INVALID);
    CHECK(gguf_writer_add_tensor(w, "t.x", 4, 1, ne_f32, t_f32, NULL, NULL) == VT_ERR_INVALID);
    CHECK(gguf_writer_add_tensor(w, "t.x", VT_TYPE_F32, 1, ne_f32, NULL, NULL, NULL) ==
          VT_ERR_INVALID);

    const char *path = tmp_path("roundtrip.gguf");
    CHECKF(gguf_writer_write(w, path) == VT_OK, "%s", vt_last_error());
    CHECK_EQ_INT(calls, 2);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
    gguf_writer_destroy(w);

    gguf_file *f = NULL;
    vt_err e = gguf_open(path, &f);
    CHECKF(e == VT_OK, "%s", vt_last_error());
    if (e != VT_OK)
        return;
    CHECK_EQ_INT(gguf_version(f), 3);
    CHECK_EQ_INT(gguf_alignment(f), 32);
    CHECK_EQ_INT(gguf_data_offset(f) % 32, 0);
    CHECK_EQ_INT(gguf_n_kv(f), 10 + 13);
    /* kvs come back in insertion order; the replaced one kept its place */
    CHECK(str_eq(gguf_kv_key(f, 0), "general.architecture"));
    CHECK(str_eq(gguf_kv_key(f, 9), "k.replaced"));
    CHECK(str_eq(gguf_kv_key(f, 10), "a.u8"));
    CHECK(gguf_kv_key(f, 99).ptr == NULL && gguf_kv_value(f, -1) == NULL);

    uint32_t u32 = 0;
    int64_t i64 = 0;
    float f32 = 0;
    bool b = false;
    gguf_str s = {0};
    CHECK(gguf_get_u32(f, "k.u32", &u32) && u32 == 4000000000u);
    CHECK(gguf_get_i64(f, "k.u32", &i64) && i64 == 4000000000);
    CHECK(gguf_get_i64(f, "k.i32", &i64) && i64 == -123456);
    CHECK(!gguf_get_u32(f, "k.i32", &u32)); /* negative */
    CHECK(!gguf_get_i64(f, "k.u64", &i64)); /* beyond int64 */
    CHECK(!gguf_get_u32(f, "k.u64", &u32));
    CHECK(gguf_get_f32(f, "k.f32", &f32) && f32 == 1.5e-3f);
    CHECK(gguf_get_f32(f, "k.i32", &f32) && f32 == -123456.0f);
    CHECK(!gguf_get_f32(f, "k.str", &f32));
    CHECK(gguf_get_bool(f, "k.bool", &b) && b);
    CHECK(gguf_get_bool(f, "k.false", &b) && !b);
    CHECK(!gguf_get_bool(f, "k.u32", &b));
    CHECK(gguf_get_str(f, "k.str", &s) && str_eq(s, "h\xc3\xa9llo"));
    CHECK(gguf_get_str(f, "k.empty", &s) && s.len == 0);
    CHECK(gguf_get_str(f, "k.replaced", &s) && str_eq(s, "now a string"));
    CHECK(!gguf_get_str(f, "k.u32", &s));
    CHECK(gguf_find_key(f, "k.removed") < 0 && gguf_find_key(f, "nope") < 0);
    CHECK(!gguf_get_u32(f, "nope", &u32) && gguf_get_arr(f, "k.u32") == NULL);
    const gguf_value *v = gguf_kv_value(f, gguf_find_key(f, "k.u64"));
    CHECK(v && v->type == GGUF_T_UINT64 && v->v.u64 == 0xfedcba9876543210ull);

    for (size_t i = 0; i < VT_ARRAY_LEN(arrs); i++) {
        const gguf_value *a = gguf_get_arr(f, arrs[i].key);
        CHECKF(a && a->arr_type == arrs[i].t && a->arr_n == 3, "%s", arrs[i].key);
        if (!a)
            continue;
        uint64_t size = gguf_vtype_size(arrs[i].t);
        const void *raw = gguf_arr_raw(a);
        CHECKF(raw && memcmp(raw, arrs[i].data, 3 * size) == 0, "%s raw", arrs[i].key);
        for (int j = 0; j < 3; j++) {
            gguf_value el;
            CHECK(gguf_arr_get(a, (uint64_t)j, &el) && el.type == arrs[i].t);
            const uint8_t *src = (const uint8_t *)arrs[i].data + j * size;
            switch (arrs[i].t) {
            case GGUF_T_UINT8: CHECK(el.v.u64 == a_u8[j]); break;
            case GGUF_T_INT8: CHECK(el.v.i64 == a_i8[j]); break;
            case GGUF_T_UINT16: CHECK(el.v.u64 == a_u16[j]); break;
            case GGUF_T_INT16: CHECK(el.v.i64 == a_i16[j]); break;
            case GGUF_T_UINT32: CHECK(el.v.u64 == a_u32[j]); break;
            case GGUF_T_INT32: CHECK(el.v.i64 == a_i32[j]); break;
            case GGUF_T_FLOAT32: CHECK(memcmp(&(float){(float)el.v.f64}, src, 4) == 0); break;
            case GGUF_T_BOOL: CHECK(el.v.b == (a_bool[j] != 0)); break;
            case GGUF_T_UINT64: CHECK(el.v.u64 == a_u64[j]); break;
            case GGUF_T_INT64: CHECK(el.v.i64 == a_i64[j]); break;
            case GGUF_T_FLOAT64: CHECK(el.v.f64 == a_f64[j]); break;
            default: CHECK(0);
            }
        }
        gguf_value el;
        CHECK(!gguf_arr_get(a, 3, &el));
    }
    const gguf_value *a = gguf_get_arr(f, "a.empty");
    CHECK(a && a->arr_n == 0 && a->arr_type == GGUF_T_INT32);
    a = gguf_get_arr(f, "a.str");
    CHECK(a && a->arr_type == GGUF_T_STRING && a->arr_n == 4 && gguf_arr_raw(a) == NULL);
    for (uint64_t j = 0; a && j < 4; j++) {
        gguf_value el;
        CHECK(gguf_arr_get(a, j, &el) && el.type == GGUF_T_STRING && el.v.str.len == strs[j].len &&
              memcmp(el.v.str.ptr, strs[j].ptr, strs[j].len) == 0);
    }

    CHECK_EQ_INT(gguf_n_tensors(f), 5);
    const char *names[] = {"t.f32", "t.f16", "t.q8_0", "t.q4_K", "t.i32"};
    uint64_t prev_end = 0;
    for (int i = 0; i < 5; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(t && strcmp(t->name, names[i]) == 0 && gguf_find_tensor(f, names[i]) == t);
        CHECK(t->offset % 32 == 0 && t->offset >= prev_end);
        CHECK((const uint8_t *)t->data - (const uint8_t *)gguf_tensor_at(f, 0)->data ==
              (ptrdiff_t)t->offset);
        prev_end = t->offset + t->nbytes;
    }
    const gguf_tensor *t = gguf_find_tensor(f, "t.f32");
    CHECK(t->n_dims == 1 && t->ne[0] == 8 && t->ne[1] == 1 && t->type == VT_TYPE_F32 &&
          t->nbytes == 32 && memcmp(t->data, t_f32, 32) == 0);
    t = gguf_find_tensor(f, "t.f16");
    CHECK(t->n_dims == 2 && t->ne[0] == 4 && t->ne[1] == 3 && t->nbytes == 24 &&
          memcmp(t->data, t_f16, 24) == 0);
    t = gguf_find_tensor(f, "t.q8_0");
    CHECK(t->type == VT_TYPE_Q8_0 && t->nbytes == 2 * 34 * 3);
    const uint8_t *d = t->data;
    for (uint64_t i = 0; i < t->nbytes; i++)
        if (d[i] != (uint8_t)(i * 7 + 't')) {
            CHECK(!"filled q8_0 data differs");
            break;
        }
    t = gguf_find_tensor(f, "t.q4_K");
    CHECK(t->n_dims == 3 && t->ne[2] == 2 && t->nbytes == 144 * 4);
    t = gguf_find_tensor(f, "t.i32");
    CHECK(t->n_dims == 4 && t->ne[3] == 5 && t->nbytes == 480 &&
          memcmp(t->data, t_i32, 480) == 0);
    CHECK(gguf_find_tensor(f, "t.none") == NULL && gguf_tensor_at(f, 5) == NULL);

    /* the same bytes parsed from memory give the same answers */
    size_t len = 0;
    uint8_t *buf = (uint8_t *)test_read_file(path, &len);
    gguf_file *g = NULL;
    CHECK(buf && gguf_open_memory(buf, len, &g) == VT_OK);
    if (g) {
        CHECK(gguf_size(g) == len && gguf_size(f) == len);
        CHECK(walk_file(f) == walk_file(g));
        CHECK(gguf_data_offset(f) == gguf_data_offset(g));
    }
    gguf_close(g);
    free(buf);
    gguf_close(f);
}

static void test_writer_alignment_and_errors(void)
{
    const int64_t ne[] = {4};
    const float x[4] = {1, 2, 3, 4};
    gguf_writer *w = gguf_writer_create();
    CHECK(gguf_writer_set_u32(w, "general.alignment", 64) == VT_OK);
    CHECK(gguf_writer_add_tensor(w, "a", VT_TYPE_F32, 1, ne, x, NULL, NULL) == VT_OK);
    CHECK(gguf_writer_add_tensor(w, "b", VT_TYPE_F32, 1, ne, x, NULL, NULL) == VT_OK);
    size_t len = 0;
    uint8_t *buf = write_and_load(w, "align64.gguf", &len);
    gguf_file *f = NULL;
    CHECK(buf && gguf_open_memory(buf, len, &f) == VT_OK);
    if (f) {
        CHECK_EQ_INT(gguf_alignment(f), 64);
        CHECK_EQ_INT(gguf_data_offset(f) % 64, 0);
        CHECK_EQ_INT(gguf_find_tensor(f, "b")->offset, 64);
    }
    gguf_close(f);
    free(buf);

    /* an alignment that is not a power of two, or not a u32, is refused */
    CHECK(gguf_writer_set_u32(w, "general.alignment", 48) == VT_OK);
    CHECK(gguf_writer_write(w, tmp_path("bad.gguf")) == VT_ERR_INVALID);
    CHECK(strstr(vt_last_error(), "power of two") != NULL);
    CHECK(gguf_writer_set_i32(w, "general.alignment", 64) == VT_OK);
    CHECK(gguf_writer_write(w, tmp_path("bad.gguf")) == VT_ERR_INVALID);
    gguf_writer_remove(w, "general.alignment");

    /* I/O errors name the cause; a failed write leaves no file behind */
    vt_err e = gguf_writer_write(w, "/nonexistent-dir/x.gguf");
    CHECK(e == VT_ERR_IO && strstr(vt_last_error(), "No such file") != NULL);
    CHECK(gguf_writer_add_tensor(w, "c", VT_TYPE_F32, 1, ne, NULL, fill_fails, NULL) == VT_OK);
    const char *path = tmp_path("failed.gguf");
    CHECK(gguf_writer_write(w, path) == VT_ERR_IO && strstr(vt_last_error(), "refused"));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(path, F_OK) != 0 && access(tmp, F_OK) != 0);
    gguf_writer_destroy(w);
    gguf_writer_destroy(NULL);
    gguf_close(NULL);

    /* open errors */
    f = (gguf_file *)1;
    CHECK(gguf_open(tmp_path("missing.gguf"), &f) == VT_ERR_NOT_FOUND && f == NULL);
    CHECK(gguf_open(test_tmpdir(), &f) == VT_ERR_IO && f == NULL);
    CHECK(gguf_open_memory(NULL, 0, &f) == VT_ERR_FORMAT && f == NULL);
}

/* A file with every kind of nested array, written byte by byte. */
static raw nested_file(void)
{
    raw r = {0};
    raw_header(&r, 3, 0, 5);
    raw_str(&r, "nest.strs"); /* [["a", "bc"], [], ["xyz"]] */
    raw_u32(&r, GGUF_T_ARRAY);
    raw_u32(&r, GGUF_T_ARRAY);
    raw_u64(&r, 3);
    raw_u32(&r, GGUF_T_STRING);
    raw_u64(&r, 2);
    raw_str(&r, "a");
    raw_str(&r, "bc");
    raw_u32(&r, GGUF_T_STRING);
    raw_u64(&r, 0);
    raw_u32(&r, GGUF_T_STRING);
    raw_u64(&r, 1);
    raw_str(&r, "xyz");
    raw_str(&r, "nest.deep"); /* 8 levels, the most allowed */
    raw_u32(&r, GGUF_T_ARRAY);
    raw_nested(&r, 8);
    raw_str(&r, "nest.mixed"); /* [[1, 2] u8, [3.5] f64, [true] bool] */
    raw_u32(&r, GGUF_T_ARRAY);
    raw_u32(&r, GGUF_T_ARRAY);
    raw_u64(&r, 3);
    raw_u32(&r, GGUF_T_UINT8);
    raw_u64(&r, 2);
    raw_u8(&r, 1);
    raw_u8(&r, 2);
    raw_u32(&r, GGUF_T_FLOAT64);
    raw_u64(&r, 1);
    raw_f64(&r, 3.5);
    raw_u32(&r, GGUF_T_BOOL);
    raw_u64(&r, 1);
    raw_u8(&r, 1);
    raw_str(&r, "nest.empty"); /* an empty array of arrays */
    raw_u32(&r, GGUF_T_ARRAY);
    raw_u32(&r, GGUF_T_ARRAY);
    raw_u64(&r, 0);
    raw_str(&r, "general.name");
    raw_u32(&r, GGUF_T_STRING);
    raw_str(&r, "nested");
    return r;
}

static void check_nested(const gguf_file *f)
{
    const gguf_value *a = gguf_get_arr(f, "nest.strs");
    gguf_value x, y;
    CHECK(a && a->arr_type == GGUF_T_ARRAY && a->arr_n == 3 && gguf_arr_raw(a) == NULL);
    if (!a)
        return;
    CHECK(gguf_arr_get(a, 0, &x) && x.type == GGUF_T_ARRAY && x.arr_type == GGUF_T_STRING &&
          x.arr_n == 2);
    CHECK(gguf_arr_get(&x, 1, &y) && str_eq(y.v.str, "bc"));
    CHECK(gguf_arr_get(a, 1, &x) && x.arr_n == 0 && !gguf_arr_get(&x, 0, &y));
    CHECK(gguf_arr_get(a, 2, &x) && gguf_arr_get(&x, 0, &y) && str_eq(y.v.str, "xyz"));
    CHECK(!gguf_arr_get(a, 3, &x));

    a = gguf_get_arr(f, "nest.deep");
    CHECK(a != NULL);
    x = a ? *a : (gguf_value){0};
    for (int level = 1; a && level < 8; level++) {
        CHECK(x.arr_type == GGUF_T_ARRAY && x.arr_n == 1);
        CHECK(gguf_arr_get(&x, 0, &y));
        x = y;
    }
    CHECK(x.arr_type == GGUF_T_UINT16 && x.arr_n == 3);
    CHECK(gguf_arr_get(&x, 2, &y) && y.type == GGUF_T_UINT16 && y.v.u64 == 3);

    a = gguf_get_arr(f, "nest.mixed");
    CHECK(a && a->arr_n == 3);
    if (a) {
        CHECK(gguf_arr_get(a, 0, &x) && x.arr_type == GGUF_T_UINT8 && gguf_arr_get(&x, 1, &y) &&
              y.v.u64 == 2);
        CHECK(gguf_arr_get(a, 1, &x) && x.arr_type == GGUF_T_FLOAT64 && gguf_arr_get(&x, 0, &y) &&
              y.v.f64 == 3.5);
        CHECK(gguf_arr_get(a, 2, &x) && x.arr_type == GGUF_T_BOOL && gguf_arr_get(&x, 0, &y) &&
              y.v.b);
    }
    a = gguf_get_arr(f, "nest.empty");
    CHECK(a && a->arr_type == GGUF_T_ARRAY && a->arr_n == 0);
}

/* Copies every kv of src through the writer and checks the copy is equal. */
static void check_copy_all(const gguf_file *src, const char *name)
{
    gguf_writer *w = gguf_writer_create();
    for (int64_t i = 0; i < gguf_n_kv(src); i++)
        CHECKF(gguf_writer_copy_kv(w, src, i) == VT_OK, "%s", vt_last_error());
    size_t len = 0;
    uint8_t *buf = write_and_load(w, name, &len);
    gguf_writer_destroy(w);
    gguf_file *g = NULL;
    CHECK(buf && gguf_open_memory(buf, len, &g) == VT_OK);
    if (g) {
        CHECK_EQ_INT(gguf_n_kv(g), gguf_n_kv(src));
        for (int64_t i = 0; i < gguf_n_kv(src) && i < gguf_n_kv(g); i++) {
            gguf_str a = gguf_kv_key(src, i), b = gguf_kv_key(g, i);
            CHECK(a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0);
            CHECKF(value_eq(gguf_kv_value(src, i), gguf_kv_value(g, i)), "kv %lld of %s",
                   (long long)i, name);
        }
    }
    gguf_close(g);
    free(buf);
}

static void test_nested_arrays(void)
{
    raw r = nested_file();
    gguf_file *f = NULL;
    uint8_t *copy = NULL;
    vt_err e = open_copy(r.p, r.n, &f, &copy);
    CHECKF(e == VT_OK, "%s", vt_last_error());
    if (f) {
        CHECK_EQ_INT(gguf_n_kv(f), 5);
        CHECK_EQ_INT(gguf_n_tensors(f), 0);
        check_nested(f);
        check_copy_all(f, "nested-copy.gguf");
        /* and the copy reads back with the same structure */
        size_t len;
        uint8_t *buf = (uint8_t *)test_read_file(tmp_path("nested-copy.gguf"), &len);
        gguf_file *g = NULL;
        CHECK(buf && gguf_open_memory(buf, len, &g) == VT_OK);
        if (g)
            check_nested(g);
        gguf_close(g);
        free(buf);
    }
    gguf_close(f);
    free(copy);
    free(r.p);
}

/* A big vocabulary-like string array and many tensors: lookups are hashed
 * and element access is O(1), so this is fast even under sanitizers. */
static void test_big_tables(void)
{
    enum { N_STR = 150000, N_T = 1000 };
    gguf_writer *w = gguf_writer_create();
    gguf_str *strs = malloc(N_STR * sizeof *strs);
    char *pool = malloc(N_STR * 16);
    for (int i = 0; i < N_STR; i++) {
        int n = snprintf(pool + i * 16, 16, "tok%d", i);
        strs[i] = (gguf_str){pool + i * 16, (uint64_t)n};
    }
    CHECK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, N_STR) == VT_OK);
    float *scores = malloc(N_STR * sizeof *scores);
    for (int i = 0; i < N_STR; i++)
        scores[i] = -(float)i;
    CHECK(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_T_FLOAT32, scores, N_STR) ==
          VT_OK);
    const int64_t ne[] = {32};
    static uint8_t zeros[N_T * 34];
    for (int i = 0; i < N_T; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.weight", i);
        CHECK(gguf_writer_add_tensor(w, name, VT_TYPE_Q8_0, 1, ne, zeros + i * 34, NULL, NULL) ==
              VT_OK);
    }
    size_t len = 0;
    uint8_t *buf = write_and_load(w, "big.gguf", &len);
    gguf_writer_destroy(w);
    double t0 = vt_now();
    gguf_file *f = NULL;
    CHECK(buf && gguf_open_memory(buf, len, &f) == VT_OK);
    double dt = vt_now() - t0;
    CHECKF(dt < 1.0, "parsing took %.3f s", dt);
    if (f) {
        const gguf_value *a = gguf_get_arr(f, "tokenizer.ggml.tokens");
        CHECK(a && a->arr_n == N_STR);
        gguf_value el;
        for (int i = 0; a && i < N_STR; i += 997)
            CHECK(gguf_arr_get(a, (uint64_t)i, &el) && el.v.str.len == strs[i].len &&
                  memcmp(el.v.str.ptr, strs[i].ptr, el.v.str.len) == 0);
        CHECK(a && gguf_arr_get(a, N_STR - 1, &el) && str_eq(el.v.str, "tok149999"));
        a = gguf_get_arr(f, "tokenizer.ggml.scores");
        CHECK(a && gguf_arr_get(a, 1234, &el) && el.v.f64 == -1234.0);
        CHECK_EQ_INT(gguf_n_tensors(f), N_T);
        for (int i = 0; i < N_T; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.weight", i);
            const gguf_tensor *t = gguf_find_tensor(f, name);
            CHECK(t && t == gguf_tensor_at(f, i));
        }
        CHECK(gguf_find_tensor(f, "blk.1000.weight") == NULL);
    }
    gguf_close(f);
    free(buf);
    free(strs);
    free(pool);
    free(scores);
}

/* ---- real files ---------------------------------------------------------------- */

/* Values read from the fixtures by an independent parser. */
static const struct {
    const char *file, *arch;
    int n_kv, n_tensors, n_tokens;
} known[] = {
    {"llama-dense.Q4_K_M.gguf", "llama", 24, 20, 32000},
    {"llama-dense.Q8_0.gguf", "llama", 24, 20, 32000},
    {"llama-dense.f16.gguf", "llama", 23, 20, 32000},
    {"llama3-dense.Q8_0.gguf", "llama", 21, 20, 128256},
    {"mixtral-moe.Q4_K_M.gguf", "llama", 26, 22, 32000},
    {"mixtral-moe.Q8_0.gguf", "llama", 26, 22, 32000},
    {"qwen2-dense.Q8_0.gguf", "qwen2", 21, 26, 151936},
    {"qwen2-moe.Q8_0.gguf", "qwen2moe", 26, 37, 32000},
    {"qwen3-moe.Q8_0.gguf", "qwen3moe", 27, 26, 32000},
    {"ggml-vocab-command-r.gguf", "command-r", 27, 0, 256000},
    {"ggml-vocab-deepseek-coder.gguf", "llama", 25, 0, 32256},
    {"ggml-vocab-deepseek-llm.gguf", "llama", 23, 0, 102400},
    {"ggml-vocab-falcon.gguf", "falcon", 18, 0, 65024},
    {"ggml-vocab-gpt-2.gguf", "gpt2", 16, 0, 50257},
    {"ggml-vocab-llama-bpe.gguf", "llama", 20, 0, 128256},
    {"ggml-vocab-llama-spm.gguf", "llama", 22, 0, 32000},
    {"ggml-vocab-mpt.gguf", "mpt", 17, 0, 50432},
    {"ggml-vocab-phi-3.gguf", "phi3", 26, 0, 32064},
    {"ggml-vocab-qwen2.gguf", "qwen2", 20, 0, 151936},
    {"ggml-vocab-qwen35.gguf", "qwen2", 20, 0, 151936},
    {"ggml-vocab-refact.gguf", "refact", 18, 0, 49216},
    {"ggml-vocab-starcoder.gguf", "starcoder2", 19, 0, 49152},
};

static void check_real_file(const char *dir, const char *name, int *n_known)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gguf_file *f = NULL;
    vt_err e = gguf_open(path, &f);
    CHECKF(e == VT_OK, "%s: %s", path, vt_last_error());
    if (e != VT_OK)
        return;
    gguf_str arch = {0};
    CHECKF(gguf_get_str(f, "general.architecture", &arch) && arch.len > 0, "%s: architecture",
           name);
    CHECK(gguf_version(f) >= 2);
    const gguf_value *tok = gguf_get_arr(f, "tokenizer.ggml.tokens");
    for (size_t k = 0; k < VT_ARRAY_LEN(known); k++) {
        if (strcmp(known[k].file, name) != 0)
            continue;
        (*n_known)++;
        CHECKF(str_eq(arch, known[k].arch), "%s: architecture %.*s", name, (int)arch.len,
               arch.ptr);
        CHECK_EQ_INT(gguf_n_kv(f), known[k].n_kv);
        CHECK_EQ_INT(gguf_n_tensors(f), known[k].n_tensors);
        CHECK(tok && tok->arr_type == GGUF_T_STRING && tok->arr_n == (uint64_t)known[k].n_tokens);
    }
    /* every tensor lies inside the file and is found by name */
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(gguf_find_tensor(f, t->name) == t);
        CHECK(t->offset % gguf_alignment(f) == 0);
        CHECK(gguf_data_offset(f) + t->offset + t->nbytes <= gguf_size(f));
        CHECK(t->nbytes == vt_row_size(t->type, t->ne[0]) * (uint64_t)(t->ne[1] * t->ne[2] *
                                                                       t->ne[3]));
    }
    if (gguf_n_tensors(f) > 0) {
        /* the embedding's shape agrees with the hyperparameters */
        char key[128];
        uint32_t dim = 0;
        snprintf(key, sizeof key, "%.*s.embedding_length", (int)arch.len, arch.ptr);
        const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
        CHECKF(emb && gguf_get_u32(f, key, &dim) && emb->ne[0] == dim, "%s: token_embd", name);
        CHECK(emb && tok && emb->ne[1] == (int64_t)tok->arr_n);
    }
    /* SPM vocabularies begin with <unk> <s> </s> */
    gguf_str model;
    gguf_value el;
    if (tok && gguf_get_str(f, "tokenizer.ggml.model", &model) && str_eq(model, "llama") &&
        tok->arr_n == 32000) {
        CHECK(gguf_arr_get(tok, 1, &el) && str_eq(el.v.str, "<s>"));
        CHECK(gguf_arr_get(tok, 2, &el) && str_eq(el.v.str, "</s>"));
    }
    walk_file(f);
    gguf_close(f);
}

static void test_real_files(void)
{
    const char *shared = test_need_shared("the real GGUF fixtures");
    if (!shared)
        return;
    int n_files = 0, n_known = 0;
    const char *subs[] = {"fixtures/models", "fixtures/vocab"};
    for (size_t s = 0; s < VT_ARRAY_LEN(subs); s++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", shared, subs[s]);
        DIR *d = opendir(dir);
        CHECKF(d != NULL, "cannot open %s", dir);
        if (!d)
            continue;
        struct dirent *ent;
        while ((ent = readdir(d))) {
            size_t n = strlen(ent->d_name);
            if (n < 5 || strcmp(ent->d_name + n - 5, ".gguf") != 0)
                continue;
            check_real_file(dir, ent->d_name, &n_known);
            n_files++;
        }
        closedir(d);
    }
    CHECKF(n_files >= (int)VT_ARRAY_LEN(known), "only %d fixture files found", n_files);
    CHECK_EQ_INT(n_known, VT_ARRAY_LEN(known));
}

static void test_real_copy(void)
{
    const char *shared = test_need_shared("copying a real GGUF file");
    if (!shared)
        return;
    /* a 152k-token BPE vocabulary with its merges, copied kv by kv */
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/vocab/ggml-vocab-qwen2.gguf", shared);
    if (!test_need_file(path, "copying a real GGUF file"))
        return;
    gguf_file *f = NULL;
    vt_err e = gguf_open(path, &f);
    CHECKF(e == VT_OK, "%s", vt_last_error());
    if (f)
        check_copy_all(f, "qwen2-copy.gguf");
    gguf_close(f);
}

/* ---- hostile files ------------------------------------------------------------- */

/* The valid file every corruption starts from. */
static uint8_t *base_file(size_t *len)
{
    gguf_writer *w = gguf_writer_create();
    const uint32_t arr[] = {1, 2, 3};
    const uint8_t bools[] = {1, 0, 1};
    const gguf_str strs[] = {{"one", 3}, {"two", 3}};
    gguf_writer_set_str(w, "general.architecture", "test");
    gguf_writer_set_u32(w, "general.alignment", 32);
    gguf_writer_set_bool(w, "test.bool", true);
    gguf_writer_set_str(w, "test.str", "hello");
    gguf_writer_set_arr(w, "test.arr", GGUF_T_UINT32, arr, 3);
    gguf_writer_set_arr(w, "test.bools", GGUF_T_BOOL, bools, 3);
    gguf_writer_set_arr_str(w, "test.strs", strs, 2);
    gguf_writer_set_u32(w, "dup.aaa", 1);
    gguf_writer_set_u32(w, "dup.aab", 2);
    static float data[64];
    for (int i = 0; i < 64; i++)
        data[i] = (float)i;
    const int64_t ne8[] = {8}, ne2d[] = {4, 2}, ne32[] = {32};
    gguf_writer_add_tensor(w, "tensor.one", VT_TYPE_F32, 1, ne8, data, NULL, NULL);
    gguf_writer_add_tensor(w, "tensor.two", VT_TYPE_F32, 1, ne8, data, NULL, NULL);
    gguf_writer_add_tensor(w, "tensor.2d", VT_TYPE_F32, 2, ne2d, data, NULL, NULL);
    gguf_writer_add_tensor(w, "tensor.q8", VT_TYPE_Q8_0, 1, ne32, data, NULL, NULL);
    uint8_t *buf = write_and_load(w, "base.gguf", len);
    gguf_writer_destroy(w);
    return buf;
}

static size_t find(const uint8_t *buf, size_t len, const char *s)
{
    const uint8_t *p = memmem(buf, len, s, strlen(s));
    if (!p) {
        CHECKF(0, "'%s' not in the base file", s);
        abort();
    }
    return (size_t)(p - buf);
}

/* Offset of the byte right after the key or name s (its type / n_dims). */
static size_t after(const uint8_t *buf, size_t len, const char *s)
{
    return find(buf, len, s) + strlen(s);
}

static void put32(uint8_t *buf, size_t at, uint32_t x)
{
    memcpy(buf + at, &x, 4);
}

static void put64(uint8_t *buf, size_t at, uint64_t x)
{
    memcpy(buf + at, &x, 8);
}

static uint64_t get64(const uint8_t *buf, size_t at)
{
    uint64_t x;
    memcpy(&x, buf + at, 8);
    return x;
}

/* Where the fields of a tensor info are. */
typedef struct {
    size_t n_dims, ne, type, offset;
} tinfo;

static tinfo tensor_fields(const uint8_t *buf, size_t len, const char *name)
{
    tinfo t;
    t.n_dims = after(buf, len, name);
    uint32_t nd;
    memcpy(&nd, buf + t.n_dims, 4);
    t.ne = t.n_dims + 4;
    t.type = t.ne + 8 * nd;
    t.offset = t.type + 4;
    return t;
}

/* Parses a corrupted copy: it must fail with e1 or e2 and a message
 * containing word. */
static void expect_fail_at(int line, const uint8_t *buf, size_t len, vt_err e1, vt_err e2,
                           const char *word)
{
    gguf_file *f = (gguf_file *)1;
    uint8_t *copy = NULL;
    vt_err e = open_copy(buf, len, &f, &copy);
    if (e == VT_OK) {
        test_fail_at(__FILE__, line, "corrupt file ('%s') was accepted", word);
        gguf_close(f);
        free(copy);
        return;
    }
    if (f != NULL)
        test_fail_at(__FILE__, line, "*out not NULL after a failure");
    if (e != e1 && e != e2)
        test_fail_at(__FILE__, line, "error %s (%s), expected %s", vt_strerror(e),
                     vt_last_error(), vt_strerror(e1));
    if (!strstr(vt_last_error(), word))
        test_fail_at(__FILE__, line, "message '%s' lacks '%s'", vt_last_error(), word);
    if (getenv("VT_TEST_VERBOSE"))
        fprintf(stderr, "    %-20s -> %s\n", word, vt_last_error());
}

#define EXPECT_FAIL(buf, len, e, word) expect_fail_at(__LINE__, buf, len, e, e, word)
#define EXPECT_FORMAT(buf, len, word) EXPECT_FAIL(buf, len, VT_ERR_FORMAT, word)

/* A fresh copy of the base file to corrupt. */
static uint8_t *mut(const uint8_t *base, size_t len)
{
    uint8_t *m = malloc(len);
    memcpy(m, base, len);
    return m;
}

static void test_hostile_header(void)
{
    size_t len = 0;
    uint8_t *base = base_file(&len), *m;
    if (!base)
        return;
    gguf_file *f = NULL;
    uint8_t *copy = NULL;
    CHECKF(open_copy(base, len, &f, &copy) == VT_OK, "base: %s", vt_last_error());
    gguf_close(f);
    free(copy);

    m = mut(base, len);
    m[0] = 'X';
    EXPECT_FORMAT(m, len, "magic");
    EXPECT_FORMAT(m, 0, "magic");
    EXPECT_FORMAT(base, 3, "magic");
    put32(m, 0, 0x47475546u); /* "FUGG": byte-reversed */
    EXPECT_FORMAT(m, len, "magic");
    memcpy(m, base, len);
    put32(m, 4, 1);
    EXPECT_FAIL(m, len, VT_ERR_UNSUPPORTED, "version 1");
    put32(m, 4, 99);
    EXPECT_FAIL(m, len, VT_ERR_UNSUPPORTED, "version 99");
    put32(m, 4, 0);
    EXPECT_FORMAT(m, len, "version 0");
    put32(m, 4, 0x03000000u);
    EXPECT_FAIL(m, len, VT_ERR_UNSUPPORTED, "big-endian");
    memcpy(m, base, len);
    put64(m, 16, 1ull << 40); /* n_kv */
    EXPECT_FORMAT(m, len, "kv count");
    put64(m, 16, UINT64_MAX);
    EXPECT_FORMAT(m, len, "kv count");
    memcpy(m, base, len);
    put64(m, 8, 1ull << 33); /* n_tensors */
    EXPECT_FORMAT(m, len, "tensor count");
    put64(m, 8, UINT64_MAX / 2);
    EXPECT_FORMAT(m, len, "tensor count");
    memcpy(m, base, len);
    put64(m, 16, get64(base, 16) + 1); /* one kv more than there is: parses tensor infos as kvs */
    EXPECT_FAIL(m, len, VT_ERR_FORMAT, "gguf");
    free(m);
    free(base);
}

static void test_hostile_kvs(void)
{
    size_t len = 0;
    uint8_t *base = base_file(&len), *m;
    if (!base)
        return;
    m = mut(base, len);

    /* a string value longer than the file */
    size_t at = after(m, len, "test.str") + 4;
    put64(m, at, 1ull << 40);
    EXPECT_FORMAT(m, len, "length");
    put64(m, at, UINT64_MAX);
    EXPECT_FORMAT(m, len, "length");
    put64(m, at, len); /* plausible, but still past the end */
    EXPECT_FORMAT(m, len, "length");
    /* a key longer than the file */
    memcpy(m, base, len);
    put64(m, 24, UINT64_MAX - 3);
    EXPECT_FORMAT(m, len, "length");
    /* an array count beyond the file */
    memcpy(m, base, len);
    at = after(m, len, "test.arr") + 8;
    put64(m, at, 1ull << 62);
    EXPECT_FORMAT(m, len, "count");
    put64(m, at, UINT64_MAX); /* count * 4 would wrap around */
    EXPECT_FORMAT(m, len, "count");
    memcpy(m, base, len);
    put64(m, after(m, len, "test.strs") + 8, 1ull << 60); /* strings: 8 bytes each at least */
    EXPECT_FORMAT(m, len, "count");
    /* invalid value types */
    memcpy(m, base, len);
    put32(m, after(m, len, "test.bool"), 13);
    EXPECT_FORMAT(m, len, "invalid value type");
    put32(m, after(m, len, "test.bool"), 0xffffffffu);
    EXPECT_FORMAT(m, len, "invalid value type");
    memcpy(m, base, len);
    put32(m, after(m, len, "test.arr") + 4, 77);
    EXPECT_FORMAT(m, len, "element type");
    /* bools other than 0 and 1 */
    memcpy(m, base, len);
    m[after(m, len, "test.bool") + 4] = 2;
    EXPECT_FORMAT(m, len, "bool");
    memcpy(m, base, len);
    m[after(m, len, "test.bools") + 4 + 4 + 8 + 1] = 0xff;
    EXPECT_FORMAT(m, len, "bool");
    /* duplicate keys */
    memcpy(m, base, len);
    m[after(m, len, "dup.aab") - 1] = 'a';
    EXPECT_FORMAT(m, len, "duplicate key 'dup.aaa'");
    /* a NUL inside a key */
    memcpy(m, base, len);
    m[find(m, len, "test.str")] = 0;
    EXPECT_FORMAT(m, len, "NUL");
    /* general.alignment: zero, not a power of two, not a u32 */
    size_t al = after(base, len, "general.alignment");
    memcpy(m, base, len);
    put32(m, al + 4, 0);
    EXPECT_FORMAT(m, len, "power of two");
    put32(m, al + 4, 48);
    EXPECT_FORMAT(m, len, "power of two");
    put32(m, al + 4, 0x80000001u);
    EXPECT_FORMAT(m, len, "power of two");
    memcpy(m, base, len);
    put32(m, al, GGUF_T_INT32);
    EXPECT_FORMAT(m, len, "uint32");
    free(m);
    free(base);

    /* an empty key */
    raw r = {0};
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "");
    raw_u32(&r, GGUF_T_UINT8);
    raw_u8(&r, 1);
    raw_u64(&r, 0); /* (so that the kv count is plausible) */
    EXPECT_FORMAT(r.p, r.n, "empty key");
    free(r.p);
    /* arrays nested one level too deep (8 are fine: see test_nested_arrays) */
    r = (raw){0};
    raw_header(&r, 2, 0, 1);
    raw_str(&r, "deep");
    raw_u32(&r, GGUF_T_ARRAY);
    raw_nested(&r, 9);
    EXPECT_FORMAT(r.p, r.n, "too deep");
    free(r.p);
    /* ... and a deep chain of arrays of arrays that never ends */
    r = (raw){0};
    raw_header(&r, 3, 0, 1);
    raw_str(&r, "chain");
    raw_u32(&r, GGUF_T_ARRAY);
    for (int i = 0; i < 10000; i++) {
        raw_u32(&r, GGUF_T_ARRAY);
        raw_u64(&r, 1);
    }
    EXPECT_FORMAT(r.p, r.n, "too deep");
    free(r.p);
    /* a version 2 file with a valid kv parses */
    r = (raw){0};
    raw_header(&r, 2, 0, 1);
    raw_str(&r, "k");
    raw_u32(&r, GGUF_T_INT8);
    raw_u8(&r, 0xff);
    gguf_file *f = NULL;
    CHECK(gguf_open_memory(r.p, r.n, &f) == VT_OK);
    int64_t i64 = 0;
    CHECK(f && gguf_version(f) == 2 && gguf_get_i64(f, "k", &i64) && i64 == -1);
    gguf_close(f);
    free(r.p);
}

static void test_hostile_tensors(void)
{
    size_t len = 0;
    uint8_t *base = base_file(&len), *m;
    if (!base)
        return;
    m = mut(base, len);
    tinfo one = tensor_fields(base, len, "tensor.one");
    tinfo two = tensor_fields(base, len, "tensor.two");
    tinfo d2 = tensor_fields(base, len, "tensor.2d");
    tinfo q8 = tensor_fields(base, len, "tensor.q8");

    put32(m, one.n_dims, 5);
    EXPECT_FORMAT(m, len, "n_dims");
    put32(m, one.n_dims, 0);
    EXPECT_FORMAT(m, len, "n_dims");
    put32(m, one.n_dims, 0xffffffffu);
    EXPECT_FORMAT(m, len, "n_dims");
    memcpy(m, base, len);
    put64(m, one.ne, 0);
    EXPECT_FORMAT(m, len, "dimension 0");
    memcpy(m, base, len);
    put64(m, d2.ne + 8, 0);
    EXPECT_FORMAT(m, len, "dimension 1");
    put64(m, d2.ne + 8, 1ull << 63);
    EXPECT_FORMAT(m, len, "dimension 1");
    /* element count overflow: 2^32 * 2^32 */
    memcpy(m, base, len);
    put64(m, d2.ne, 1ull << 32);
    put64(m, d2.ne + 8, 1ull << 32);
    EXPECT_FORMAT(m, len, "overflow");
    /* byte count overflow: 2^62 floats */
    memcpy(m, base, len);
    put64(m, one.ne, 1ull << 62);
    EXPECT_FORMAT(m, len, "overflow");
    /* a plausible but huge tensor runs past the end */
    memcpy(m, base, len);
    put64(m, one.ne, 1ull << 30);
    EXPECT_FORMAT(m, len, "beyond");
    /* unknown types (4 and 5 were removed from ggml) */
    memcpy(m, base, len);
    put32(m, one.type, 4);
    EXPECT_FAIL(m, len, VT_ERR_UNSUPPORTED, "unknown tensor type 4");
    put32(m, one.type, 1000);
    EXPECT_FAIL(m, len, VT_ERR_UNSUPPORTED, "unknown tensor type 1000");
    /* ne[0] not a multiple of the block size */
    memcpy(m, base, len);
    put64(m, q8.ne, 33);
    EXPECT_FORMAT(m, len, "block size");
    memcpy(m, base, len);
    put32(m, one.type, VT_TYPE_Q4_K); /* 8 elements of a 256-element block */
    EXPECT_FORMAT(m, len, "block size");
    /* misaligned offset */
    memcpy(m, base, len);
    put64(m, two.offset, get64(base, two.offset) + 4);
    EXPECT_FORMAT(m, len, "alignment");
    /* data beyond the end of the file; offsets that wrap around */
    memcpy(m, base, len);
    put64(m, q8.offset, 1ull << 40);
    EXPECT_FORMAT(m, len, "beyond");
    put64(m, q8.offset, UINT64_MAX - 31);
    EXPECT_FORMAT(m, len, "beyond");
    /* the file cut inside the last tensor's data */
    gguf_file *f = NULL;
    uint8_t *copy = NULL;
    CHECK(open_copy(base, len, &f, &copy) == VT_OK);
    if (f) {
        const gguf_tensor *t = gguf_find_tensor(f, "tensor.q8");
        size_t end = (size_t)(gguf_data_offset(f) + t->offset + t->nbytes);
        CHECK(end < len); /* followed by padding */
        EXPECT_FORMAT(base, end - 1, "beyond");
    }
    gguf_close(f);
    free(copy);
    /* overlapping tensors */
    memcpy(m, base, len);
    put64(m, two.offset, get64(base, one.offset));
    EXPECT_FORMAT(m, len, "overlap");
    memcpy(m, base, len);
    put64(m, q8.offset, get64(base, d2.offset)); /* q8 (34 bytes) starts where 2d (32) starts */
    EXPECT_FORMAT(m, len, "overlap");
    /* duplicate tensor names */
    memcpy(m, base, len);
    memcpy(m + find(m, len, "tensor.two"), "tensor.one", 10);
    EXPECT_FORMAT(m, len, "duplicate tensor name 'tensor.one'");
    /* a NUL in a tensor name */
    memcpy(m, base, len);
    m[find(m, len, "tensor.two") + 3] = 0;
    EXPECT_FORMAT(m, len, "NUL");
    /* an empty tensor name */
    memcpy(m, base, len);
    size_t name_len_at = find(m, len, "tensor.one") - 8;
    put64(m, name_len_at, 0);
    EXPECT_FORMAT(m, len, "empty name");
    free(m);
    free(base);
}

/* Every prefix of a valid file fails cleanly (the file ends with the last
 * tensor's data, so no prefix is itself valid). */
static void test_every_prefix(void)
{
    gguf_writer *w = gguf_writer_create();
    const uint16_t u16[] = {1, 2};
    const gguf_str strs[] = {{"x", 1}, {"yy", 2}};
    gguf_writer_set_str(w, "general.architecture", "tiny");
    gguf_writer_set_arr(w, "a", GGUF_T_UINT16, u16, 2);
    gguf_writer_set_arr_str(w, "s", strs, 2);
    gguf_writer_set_f32(w, "f", 2.0f);
    static const float x[16];
    const int64_t ne[] = {8}, ne2[] = {8, 2};
    gguf_writer_add_tensor(w, "w1", VT_TYPE_F32, 1, ne, x, NULL, NULL);
    /* 64 bytes at offset 32: the file ends with the data, no padding */
    gguf_writer_add_tensor(w, "w2", VT_TYPE_F32, 2, ne2, x, NULL, NULL);
    size_t len = 0;
    uint8_t *buf = write_and_load(w, "tiny.gguf", &len);
    gguf_writer_destroy(w);
    if (!buf)
        return;
    int accepted = 0;
    for (size_t n = 0; n < len; n++) {
        gguf_file *f = NULL;
        uint8_t *copy = NULL;
        vt_err e = open_copy(buf, n, &f, &copy);
        if (e == VT_OK) {
            accepted++;
            gguf_close(f);
            free(copy);
        } else {
            CHECKF(e == VT_ERR_FORMAT && vt_last_error()[0], "prefix %zu: %s", n,
                   vt_last_error());
        }
    }
    CHECK_EQ_INT(accepted, 0);
    gguf_file *f = NULL;
    uint8_t *copy = NULL;
    CHECK(open_copy(buf, len, &f, &copy) == VT_OK);
    gguf_close(f);
    free(copy);
    free(buf);
}

/* Seeded random corruptions of a valid file: none may crash or read out of
 * bounds; whatever is accepted must be walkable. */
static void test_random_mutations(void)
{
    size_t len = 0;
    uint8_t *base = base_file(&len);
    if (!base)
        return;
    raw nested = nested_file();
    vt_rng rng = {20240601};
    int accepted = 0, n_iter = 4000;
    for (int it = 0; it < n_iter; it++) {
        const uint8_t *src = it % 4 == 3 ? nested.p : base;
        size_t n = it % 4 == 3 ? nested.n : len;
        uint8_t *m = malloc(n);
        memcpy(m, src, n);
        int kind = (int)(vt_rng_next(&rng) % 4);
        int edits = 1 + (int)(vt_rng_next(&rng) % 4);
        for (int k = 0; k < edits; k++) {
            size_t at = (size_t)(vt_rng_next(&rng) % n);
            uint64_t r = vt_rng_next(&rng);
            if (kind == 0) {
                m[at] = (uint8_t)r; /* a random byte */
            } else if (kind == 1) {
                m[at] ^= (uint8_t)(1u << (r % 8)); /* a bit flip */
            } else if (kind == 2 && at + 8 <= n) {
                static const uint64_t special[] = {0, 1, 2, 8, 12, 31, 32, 255, 0x7fffffff,
                                                   0xffffffff, 1ull << 32, 1ull << 63,
                                                   UINT64_MAX, UINT64_MAX - 7};
                put64(m, at, special[r % VT_ARRAY_LEN(special)]); /* an interesting u64 */
            } else if (at + 4 <= n) {
                put32(m, at, (uint32_t)(r % 16)); /* a small u32: types, n_dims */
            }
        }
        size_t cut = vt_rng_next(&rng) % 8 == 0 ? (size_t)(vt_rng_next(&rng) % n) : n;
        gguf_file *f = NULL;
        uint8_t *copy = NULL;
        vt_err e = open_copy(m, cut, &f, &copy);
        if (e == VT_OK) {
            accepted++;
            walk_file(f);
            gguf_close(f);
            free(copy);
        } else {
            CHECKF(e == VT_ERR_FORMAT || e == VT_ERR_UNSUPPORTED, "iteration %d: %s (%s)", it,
                   vt_strerror(e), vt_last_error());
            CHECK(f == NULL && vt_last_error()[0]);
        }
        free(m);
    }
    /* some mutations hit data bytes and are harmless; most must be rejected */
    CHECKF(accepted > 0 && accepted < n_iter, "%d of %d accepted", accepted, n_iter);
    free(base);
    free(nested.p);
}

/* ---- seed corpus ---------------------------------------------------------------- */

static int write_corpus(const char *dir)
{
    mkdir(dir, 0755);
    size_t len = 0;
    uint8_t *base = base_file(&len);
    raw nested = nested_file();
    struct {
        const char *name;
        const uint8_t *p;
        size_t n;
    } seeds[] = {{"base.gguf", base, len}, {"nested.gguf", nested.p, nested.n}};
    int rc = 0;
    for (size_t i = 0; i < VT_ARRAY_LEN(seeds); i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, seeds[i].name);
        FILE *fp = fopen(path, "wb");
        if (!fp || !seeds[i].p || fwrite(seeds[i].p, 1, seeds[i].n, fp) != seeds[i].n) {
            fprintf(stderr, "cannot write %s\n", path);
            rc = 1;
        }
        if (fp)
            fclose(fp);
    }
    const char *extra[] = {"roundtrip.gguf", "tiny.gguf", "align64.gguf"};
    for (size_t i = 0; i < VT_ARRAY_LEN(extra); i++) {
        size_t n;
        char *p = test_read_file(tmp_path(extra[i]), &n);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, extra[i]);
        FILE *fp = p ? fopen(path, "wb") : NULL;
        if (fp) {
            fwrite(p, 1, n, fp);
            fclose(fp);
        }
        free(p);
    }
    free(base);
    free(nested.p);
    printf("wrote the gguf seed corpus to %s\n", dir);
    return rc;
}

int main(void)
{
    RUN_TEST(test_roundtrip);
    RUN_TEST(test_writer_alignment_and_errors);
    RUN_TEST(test_nested_arrays);
    RUN_TEST(test_big_tables);
    RUN_TEST(test_real_files);
    RUN_TEST(test_real_copy);
    RUN_TEST(test_hostile_header);
    RUN_TEST(test_hostile_kvs);
    RUN_TEST(test_hostile_tensors);
    RUN_TEST(test_every_prefix);
    RUN_TEST(test_random_mutations);
    const char *corpus = getenv("VT_GGUF_CORPUS");
    if (corpus && *corpus && write_corpus(corpus) != 0)
        return 1;
    return test_finish("test_gguf");
}
