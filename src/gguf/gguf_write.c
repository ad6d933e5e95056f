/*
 * gguf_write.c - the GGUF writer: collects metadata key/values (each kept
 * already encoded, as its value type followed by the value's bytes, so that a
 * kv copied from another file, nested arrays included, costs one encoding)
 * and tensors (borrowed buffers, or fill callbacks that produce the data at
 * write time, one tensor at a time), then writes a GGUF v3 file: header,
 * kvs in insertion order, tensor infos, and the tensors' data in insertion
 * order, each at an offset that is a multiple of the alignment (32, or
 * `general.alignment` when set with gguf_writer_set_u32). The file is written
 * to PATH.tmp and renamed over PATH only once complete, so a reader never
 * sees a partial file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "util/types.h"
#include "util/util.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF writer assumes a little-endian host"
#endif

/* A growable byte buffer; `failed` is sticky so that encoders can append
 * freely and check once. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool failed;
} bbuf;

typedef struct {
    char *key;
    bbuf val; /* u32 value type, then the value */
} wkv;

typedef struct {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
    const void *data;
    gguf_fill_fn fill;
    void *ctx;
} wtensor;

struct gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *ts;
    size_t n_t, cap_t;
};

/* ---- byte buffers -------------------------------------------------------- */

static void bb_put(bbuf *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->failed = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void bb_u32(bbuf *b, uint32_t x)
{
    bb_put(b, &x, 4);
}

static void bb_u64(bbuf *b, uint64_t x)
{
    bb_put(b, &x, 8);
}

static void bb_str(bbuf *b, const char *p, uint64_t n)
{
    bb_u64(b, n);
    bb_put(b, p, (size_t)n);
}

static void bb_free(bbuf *b)
{
    free(b->p);
    *b = (bbuf){0};
}

/* ---- create / destroy ------------------------------------------------------ */

gguf_writer *gguf_writer_create(void)
{
    return calloc(1, sizeof(gguf_writer));
}

void gguf_writer_destroy(gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        bb_free(&w->kvs[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++)
        free(w->ts[i].name);
    free(w->kvs);
    free(w->ts);
    free(w);
}

/* ---- metadata ---------------------------------------------------------------- */

static wkv *find_kv(const gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0)
            return &w->kvs[i];
    return NULL;
}

/* Stores an encoded value under key (replacing an existing one); takes the
 * buffer in all cases. */
static vt_err put_kv(gguf_writer *w, const char *key, bbuf *val)
{
    vt_err e;
    char *copy = NULL;
    if (!w || !key || !*key) {
        e = vt_fail(VT_ERR_INVALID, "gguf writer: %s", !w ? "NULL writer" : "empty or NULL key");
        goto fail;
    }
    if (val->failed) {
        e = vt_fail(VT_ERR_NOMEM, "gguf writer: out of memory for the value of '%s'", key);
        goto fail;
    }
    wkv *kv = find_kv(w, key);
    if (kv) {
        bb_free(&kv->val);
        kv->val = *val;
        return VT_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *k = realloc(w->kvs, cap * sizeof *k);
        if (!k) {
            e = vt_fail(VT_ERR_NOMEM, "gguf writer: out of memory");
            goto fail;
        }
        w->kvs = k;
        w->cap_kv = cap;
    }
    if (!(copy = strdup(key))) {
        e = vt_fail(VT_ERR_NOMEM, "gguf writer: out of memory");
        goto fail;
    }
    w->kvs[w->n_kv++] = (wkv){copy, *val};
    return VT_OK;
fail:
    bb_free(val);
    return e;
}

static vt_err set_scalar(gguf_writer *w, const char *key, gguf_vtype t, const void *bytes)
{
    bbuf b = {0};
    bb_u32(&b, t);
    bb_put(&b, bytes, (size_t)gguf_vtype_size(t));
    return put_kv(w, key, &b);
}

vt_err gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v)
{
    return set_scalar(w, key, GGUF_T_UINT32, &v);
}

vt_err gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v)
{
    return set_scalar(w, key, GGUF_T_INT32, &v);
}

vt_err gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v)
{
    return set_scalar(w, key, GGUF_T_UINT64, &v);
}

vt_err gguf_writer_set_f32(gguf_writer *w, const char *key, float v)
{
    return set_scalar(w, key, GGUF_T_FLOAT32, &v);
}

vt_err gguf_writer_set_bool(gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, GGUF_T_BOOL, &b);
}

vt_err gguf_writer_set_str(gguf_writer *w, const char *key, const char *v)
{
    if (!v)
        return vt_fail(VT_ERR_INVALID, "gguf writer: NULL string for '%s'", key ? key : "(null)");
    bbuf b = {0};
    bb_u32(&b, GGUF_T_STRING);
    bb_str(&b, v, strlen(v));
    return put_kv(w, key, &b);
}

vt_err gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype elem_type, const void *data,
                           uint64_t n)
{
    const char *k = key ? key : "(null)";
    uint64_t size = gguf_vtype_size(elem_type), total;
    if (!size)
        return vt_fail(VT_ERR_INVALID,
                       "gguf writer: '%s': element type %s is not numeric (use "
                       "gguf_writer_set_arr_str for strings)",
                       k, gguf_vtype_name(elem_type));
    if (!data && n)
        return vt_fail(VT_ERR_INVALID, "gguf writer: '%s': NULL data for %llu elements", k,
                       (unsigned long long)n);
    if (!vt_mul_u64(n, size, &total) || total > SIZE_MAX / 2)
        return vt_fail(VT_ERR_RANGE, "gguf writer: '%s': %llu elements are too many", k,
                       (unsigned long long)n);
    if (elem_type == GGUF_T_BOOL)
        for (uint64_t j = 0; j < n; j++)
            if (((const uint8_t *)data)[j] > 1)
                return vt_fail(VT_ERR_INVALID, "gguf writer: '%s': bool element %llu is %u", k,
                               (unsigned long long)j, ((const uint8_t *)data)[j]);
    bbuf b = {0};
    bb_u32(&b, GGUF_T_ARRAY);
    bb_u32(&b, elem_type);
    bb_u64(&b, n);
    bb_put(&b, data, (size_t)total);
    return put_kv(w, key, &b);
}

vt_err gguf_writer_set_arr_str(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n)
{
    const char *k = key ? key : "(null)";
    if (!strs && n)
        return vt_fail(VT_ERR_INVALID, "gguf writer: '%s': NULL strings for %llu elements", k,
                       (unsigned long long)n);
    bbuf b = {0};
    bb_u32(&b, GGUF_T_ARRAY);
    bb_u32(&b, GGUF_T_STRING);
    bb_u64(&b, n);
    for (uint64_t j = 0; j < n && !b.failed; j++) {
        if (!strs[j].ptr && strs[j].len) {
            bb_free(&b);
            return vt_fail(VT_ERR_INVALID, "gguf writer: '%s': string %llu is NULL", k,
                           (unsigned long long)j);
        }
        bb_str(&b, strs[j].ptr, strs[j].len);
    }
    return put_kv(w, key, &b);
}

/* Appends the bytes of value v without its type tag (the encoding of an
 * array element). */
static void encode_payload(bbuf *b, const gguf_value *v)
{
    uint64_t size = gguf_vtype_size(v->type);
    switch (v->type) {
    case GGUF_T_FLOAT32: {
        float x = (float)v->v.f64;
        bb_put(b, &x, 4);
        break;
    }
    case GGUF_T_FLOAT64: bb_put(b, &v->v.f64, 8); break;
    case GGUF_T_BOOL: {
        uint8_t x = v->v.b ? 1 : 0;
        bb_put(b, &x, 1);
        break;
    }
    case GGUF_T_STRING: bb_str(b, v->v.str.ptr, v->v.str.len); break;
    case GGUF_T_ARRAY: {
        bb_u32(b, v->arr_type);
        bb_u64(b, v->arr_n);
        const void *raw = gguf_arr_raw(v);
        if (raw) {
            bb_put(b, raw, (size_t)(v->arr_n * gguf_vtype_size(v->arr_type)));
            break;
        }
        gguf_value el;
        for (uint64_t j = 0; j < v->arr_n && !b->failed; j++) {
            if (!gguf_arr_get(v, j, &el)) {
                b->failed = true;
                break;
            }
            encode_payload(b, &el);
        }
        break;
    }
    default:
        /* integers: the low bytes of the widened value (little-endian) */
        if (size)
            bb_put(b, &v->v.u64, (size_t)size);
        else
            b->failed = true;
        break;
    }
}

vt_err gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src, int64_t i)
{
    const gguf_value *v = src ? gguf_kv_value(src, i) : NULL;
    if (!v)
        return vt_fail(VT_ERR_INVALID, "gguf writer: no kv %lld to copy", (long long)i);
    gguf_str k = gguf_kv_key(src, i);
    char *key = malloc((size_t)k.len + 1);
    if (!key)
        return vt_fail(VT_ERR_NOMEM, "gguf writer: out of memory");
    memcpy(key, k.ptr, (size_t)k.len);
    key[k.len] = 0;
    bbuf b = {0};
    bb_u32(&b, v->type);
    encode_payload(&b, v);
    vt_err e = put_kv(w, key, &b);
    free(key);
    return e;
}

void gguf_writer_remove(gguf_writer *w, const char *key)
{
    wkv *kv = w && key ? find_kv(w, key) : NULL;
    if (!kv)
        return;
    free(kv->key);
    bb_free(&kv->val);
    size_t i = (size_t)(kv - w->kvs);
    memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - i - 1) * sizeof *w->kvs);
    w->n_kv--;
}

/* ---- tensors ------------------------------------------------------------------ */

vt_err gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                              const int64_t *ne, const void *data, gguf_fill_fn fill, void *ctx)
{
    if (!w || !name || !*name)
        return vt_fail(VT_ERR_INVALID, "gguf writer: %s", !w ? "NULL writer" : "empty tensor name");
    const vt_type_info *ti = vt_type_get(type);
    if (!ti)
        return vt_fail(VT_ERR_INVALID, "gguf writer: tensor '%s': unknown type %u", name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return vt_fail(VT_ERR_INVALID, "gguf writer: tensor '%s': n_dims %u (must be 1 to %d)",
                       name, n_dims, GGUF_MAX_DIMS);
    if (!data && !fill)
        return vt_fail(VT_ERR_INVALID, "gguf writer: tensor '%s': neither data nor fill", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return vt_fail(VT_ERR_INVALID, "gguf writer: duplicate tensor name '%s'", name);
    wtensor t = {.type = type, .n_dims = n_dims, .data = data, .fill = fill, .ctx = ctx};
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 1)
            return vt_fail(VT_ERR_INVALID, "gguf writer: tensor '%s': dimension %u is %lld", name,
                           d, (long long)t.ne[d]);
        if (!vt_mul_u64(nel, (uint64_t)t.ne[d], &nel) || nel > (uint64_t)INT64_MAX)
            return vt_fail(VT_ERR_RANGE, "gguf writer: tensor '%s': element count overflows",
                           name);
    }
    if (t.ne[0] % ti->blck != 0)
        return vt_fail(VT_ERR_INVALID,
                       "gguf writer: tensor '%s': ne[0] = %lld is not a multiple of the block "
                       "size %lld of %s",
                       name, (long long)t.ne[0], (long long)ti->blck, ti->name);
    uint64_t row;
    if (!vt_mul_u64((uint64_t)(t.ne[0] / ti->blck), ti->size, &row) ||
        !vt_mul_u64(row, nel / (uint64_t)t.ne[0], &t.nbytes) || t.nbytes > (uint64_t)INT64_MAX)
        return vt_fail(VT_ERR_RANGE, "gguf writer: tensor '%s': size overflows", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 16;
        wtensor *ts = realloc(w->ts, cap * sizeof *ts);
        if (!ts)
            return vt_fail(VT_ERR_NOMEM, "gguf writer: out of memory");
        w->ts = ts;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name)))
        return vt_fail(VT_ERR_NOMEM, "gguf writer: out of memory");
    w->ts[w->n_t++] = t;
    return VT_OK;
}

/* ---- output ------------------------------------------------------------------ */

typedef struct {
    int fd;
    const char *path;
    uint8_t buf[1 << 16];
    size_t n;
    uint64_t pos; /* bytes of the file so far */
} wout;

static vt_err write_all(wout *o, const void *p, size_t n)
{
    const uint8_t *s = p;
    while (n) {
        ssize_t k = write(o->fd, s, VT_MIN(n, (size_t)1 << 30));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return vt_fail(VT_ERR_IO, "gguf writer: writing '%s': %s", o->path,
                           k < 0 ? strerror(errno) : "no progress");
        s += k;
        n -= (size_t)k;
    }
    return VT_OK;
}

static vt_err out_flush(wout *o)
{
    vt_err e = write_all(o, o->buf, o->n);
    o->n = 0;
    return e;
}

static vt_err out_put(wout *o, const void *p, size_t n)
{
    o->pos += n;
    if (n <= sizeof o->buf - o->n) {
        memcpy(o->buf + o->n, p, n);
        o->n += n;
        return VT_OK;
    }
    vt_err e = out_flush(o);
    if (e != VT_OK)
        return e;
    if (n >= sizeof o->buf)
        return write_all(o, p, n);
    memcpy(o->buf, p, n);
    o->n = n;
    return VT_OK;
}

static vt_err out_u32(wout *o, uint32_t x)
{
    return out_put(o, &x, 4);
}

static vt_err out_u64(wout *o, uint64_t x)
{
    return out_put(o, &x, 8);
}

static vt_err out_str(wout *o, const char *s)
{
    size_t n = strlen(s);
    vt_err e = out_u64(o, n);
    return e != VT_OK ? e : out_put(o, s, n);
}

/* Zeros up to the next multiple of a. */
static vt_err out_pad(wout *o, uint64_t a)
{
    static const uint8_t zeros[256];
    vt_err e = VT_OK;
    while (e == VT_OK && o->pos % a)
        e = out_put(o, zeros, (size_t)VT_MIN(a - o->pos % a, (uint64_t)sizeof zeros));
    return e;
}

/* The alignment the file will use: 32 or a valid general.alignment. */
static vt_err writer_alignment(const gguf_writer *w, uint64_t *out)
{
    *out = GGUF_DEFAULT_ALIGNMENT;
    const wkv *kv = find_kv(w, "general.alignment");
    if (!kv)
        return VT_OK;
    uint32_t t, a;
    memcpy(&t, kv->val.p, 4);
    if (t != GGUF_T_UINT32)
        return vt_fail(VT_ERR_INVALID, "gguf writer: general.alignment must be a uint32 (it is %s)",
                       gguf_vtype_name((gguf_vtype)t));
    memcpy(&a, kv->val.p + 4, 4);
    if (a == 0 || (a & (a - 1)))
        return vt_fail(VT_ERR_INVALID, "gguf writer: general.alignment %u is not a power of two",
                       a);
    *out = a;
    return VT_OK;
}

static vt_err write_body(gguf_writer *w, wout *o, uint64_t align)
{
    vt_err e;
    void *scratch = NULL; /* for fill callbacks, grown to the largest tensor */
    uint64_t scratch_n = 0;
    if ((e = out_put(o, "GGUF", 4)) || (e = out_u32(o, 3)) || (e = out_u64(o, w->n_t)) ||
        (e = out_u64(o, w->n_kv)))
        return e;
    for (size_t i = 0; i < w->n_kv; i++)
        if ((e = out_str(o, w->kvs[i].key)) || (e = out_put(o, w->kvs[i].val.p, w->kvs[i].val.n)))
            return e;
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->ts[i];
        off = (off + align - 1) / align * align;
        t->offset = off;
        off += t->nbytes;
        if ((e = out_str(o, t->name)) || (e = out_u32(o, t->n_dims)))
            return e;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((e = out_u64(o, (uint64_t)t->ne[d])))
                return e;
        if ((e = out_u32(o, t->type)) || (e = out_u64(o, t->offset)))
            return e;
    }
    if ((e = out_pad(o, align)))
        return e;
    const uint64_t data_start = o->pos;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->ts[i];
        if ((e = out_pad(o, align)))
            goto fail;
        if (o->pos - data_start != t->offset) {
            e = vt_fail(VT_ERR_INTERNAL, "gguf writer: tensor '%s' landed at the wrong offset",
                        t->name);
            goto fail;
        }
        const void *src = t->data;
        if (!src) {
            if (t->nbytes > SIZE_MAX) {
                e = vt_fail(VT_ERR_NOMEM, "gguf writer: tensor '%s' is too big", t->name);
                goto fail;
            }
            if (t->nbytes > scratch_n) {
                free(scratch);
                scratch_n = 0;
                if (!(scratch = malloc((size_t)t->nbytes))) {
                    e = vt_fail(VT_ERR_NOMEM, "gguf writer: out of memory for tensor '%s' (%llu "
                                              "bytes)", t->name, (unsigned long long)t->nbytes);
                    goto fail;
                }
                scratch_n = t->nbytes;
            }
            if ((e = t->fill(t->ctx, t->name, scratch, t->nbytes)) != VT_OK)
                goto fail;
            src = scratch;
        }
        if ((e = out_put(o, src, (size_t)t->nbytes)))
            goto fail;
    }
    if ((e = out_pad(o, align)) || (e = out_flush(o)))
        goto fail;
    free(scratch);
    return VT_OK;
fail:
    free(scratch);
    return e;
}

vt_err gguf_writer_write(gguf_writer *w, const char *path)
{
    vt_err e;
    uint64_t align;
    wout *o = NULL;
    char *tmp = NULL;
    if (!w || !path || !*path)
        return vt_fail(VT_ERR_INVALID, "gguf writer: NULL writer or empty path");
    if ((e = writer_alignment(w, &align)) != VT_OK)
        return e;
    size_t n = strlen(path);
    if (!(tmp = malloc(n + 5)) || !(o = malloc(sizeof *o))) {
        e = vt_fail(VT_ERR_NOMEM, "gguf writer: out of memory");
        goto fail;
    }
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    o->path = tmp;
    o->n = 0;
    o->pos = 0;
    o->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        e = vt_fail(VT_ERR_IO, "gguf writer: cannot create '%s': %s", tmp, strerror(errno));
        goto fail;
    }
    if ((e = write_body(w, o, align)) != VT_OK)
        goto fail_unlink;
    if (fsync(o->fd) != 0 && errno != EINVAL && errno != EROFS) {
        e = vt_fail(VT_ERR_IO, "gguf writer: syncing '%s': %s", tmp, strerror(errno));
        goto fail_unlink;
    }
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0) {
        e = vt_fail(VT_ERR_IO, "gguf writer: closing '%s': %s", tmp, strerror(errno));
        goto fail_unlink;
    }
    if (rename(tmp, path) != 0) {
        e = vt_fail(VT_ERR_IO, "gguf writer: renaming '%s' to '%s': %s", tmp, path,
                    strerror(errno));
        goto fail_unlink;
    }
    free(o);
    free(tmp);
    return VT_OK;
fail_unlink:
    if (o->fd >= 0)
        close(o->fd);
    unlink(tmp);
fail:
    free(o);
    free(tmp);
    return e;
}
