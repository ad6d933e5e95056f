/*
 * gguf.c - the GGUF reader: maps a file (or borrows a buffer), parses the
 * header, the metadata key/values and the tensor infos of a GGUF v2/v3 file,
 * and validates every count, length, type, shape and offset against the
 * bytes actually present before it is used, so that a hostile file yields
 * VT_ERR_FORMAT/VT_ERR_UNSUPPORTED with a message, never a crash, a hang or a
 * huge allocation. Nothing is copied out of the file except tensor names
 * (NUL-terminated) and small index tables: O(1) lookup of keys and tensors
 * by name (open-addressing hash tables), O(1) access to the elements of
 * string arrays (offsets precomputed in one pass) and of arrays of arrays (a
 * tree of nodes built at parse time, so that the handle is read-only and can
 * be shared between threads afterwards).
 *
 * Layout of a file (all little-endian): "GGUF", u32 version, u64 n_tensors,
 * u64 n_kv; n_kv times { string key, u32 value type, value }; n_tensors times
 * { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }; padding
 * to the alignment (`general.alignment`, default 32); the tensor data. A
 * string is u64 length + bytes; an array is u32 element type, u64 count, and
 * the elements (which are themselves arrays for arrays of arrays).
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "util/types.h"
#include "util/util.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

#define MAX_DEPTH 8     /* levels of arrays (an array of arrays is 2) */
#define SHOW 64         /* characters of a key or name quoted in messages */
#define MIN_KV 14       /* smallest kv: key length, 1 byte of key, type, a u8 */
#define MIN_TINFO 33    /* smallest tensor info: name length + 1 byte, n_dims, ne, type, offset */
#define MAX_COUNT 0x7fffffffull /* more kvs or tensors than this is absurd */

/* Elements of an array value. Strings are found through offs[] (offset of
 * element j's length prefix from p), arrays of arrays through kids[]. */
typedef struct arr_node {
    const uint8_t *p; /* first element in the file */
    gguf_vtype type;
    uint64_t n;
    const uint64_t *offs;        /* GGUF_T_STRING */
    const struct arr_node *kids; /* GGUF_T_ARRAY */
} arr_node;

typedef struct {
    gguf_str key;
    gguf_value val;
} kv_entry;

/* Bump allocator for the nodes and offsets of arrays; freed all at once. */
typedef struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    max_align_t data[];
} arena_blk;

typedef struct {
    uint32_t *slots; /* index + 1, 0 = empty */
    uint64_t mask;
} htab;

struct gguf_file {
    const uint8_t *base;
    uint64_t size;
    void *map; /* the mapping when opened from a path */
    size_t map_len;
    uint32_t version;
    uint64_t alignment, data_offset;
    int64_t n_kv, n_tensors;
    kv_entry *kvs;
    gguf_tensor *tensors;
    htab kv_tab, t_tab;
    uint64_t seed; /* of the hash tables */
    arena_blk *arena;
};

/* ---- allocation ----------------------------------------------------- */

static void *arena_alloc(gguf_file *f, size_t n)
{
    n = (n + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
    arena_blk *b = f->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = VT_MAX(n, (size_t)64 << 10);
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        if (f->arena && n > ((size_t)64 << 10) / 2) {
            /* a big block of its own: keep bumping in the current one */
            b->next = f->arena->next;
            f->arena->next = b;
        } else {
            b->next = f->arena;
            f->arena = b;
        }
    }
    void *p = (unsigned char *)b->data + b->used;
    b->used += n;
    return p;
}

static void arena_free(arena_blk *b)
{
    while (b) {
        arena_blk *next = b->next;
        free(b);
        b = next;
    }
}

/* ---- hashing ---------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A keyed hash (8 bytes at a time through a bijective mixer): with a seed
 * drawn per file, a hostile file cannot be built to make every key collide
 * and turn lookups quadratic. */
static uint64_t hash_bytes(uint64_t seed, const void *p, uint64_t n)
{
    const unsigned char *s = p;
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull), w;
    for (; n >= 8; n -= 8, s += 8) {
        memcpy(&w, s, 8);
        h = mix64(h ^ w);
    }
    w = 0;
    memcpy(&w, s, (size_t)n);
    return mix64(h ^ w ^ ((uint64_t)n << 56));
}

typedef gguf_str (*key_at_fn)(const gguf_file *f, uint32_t i);

static gguf_str kv_key_at(const gguf_file *f, uint32_t i)
{
    return f->kvs[i].key;
}

static gguf_str tensor_key_at(const gguf_file *f, uint32_t i)
{
    const char *name = f->tensors[i].name;
    return (gguf_str){name, strlen(name)};
}

/* The slot holding key (p, n), or the empty slot where it would go. */
static uint64_t htab_slot(const gguf_file *f, const htab *t, key_at_fn key_at, const char *p,
                          uint64_t n)
{
    uint64_t i = hash_bytes(f->seed, p, n) & t->mask;
    for (;;) {
        uint32_t s = t->slots[i];
        if (!s)
            return i;
        gguf_str k = key_at(f, s - 1);
        if (k.len == n && memcmp(k.ptr, p, n) == 0)
            return i;
        i = (i + 1) & t->mask;
    }
}

static vt_err htab_init(htab *t, uint64_t n)
{
    uint64_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots)
        return vt_fail(VT_ERR_NOMEM, "gguf: out of memory for a hash table of %llu entries",
                       (unsigned long long)n);
    t->mask = cap - 1;
    return VT_OK;
}

/* ---- the cursor --------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    uint64_t size, pos;
    char ctx[SHOW + 32]; /* "header", "key 'x'", "tensor 'y'": prefix of messages */
    gguf_file *f;
} rd;

static uint64_t rd_left(const rd *r)
{
    return r->size - r->pos;
}

static vt_err rd_short(const rd *r, uint64_t n, const char *what)
{
    return vt_fail(VT_ERR_FORMAT,
                   "gguf: %s: %s (%llu bytes at offset %llu) runs past the end of the file "
                   "(%llu bytes): truncated",
                   r->ctx, what, (unsigned long long)n, (unsigned long long)r->pos,
                   (unsigned long long)r->size);
}

static vt_err rd_bytes(rd *r, uint64_t n, const char *what, const uint8_t **out)
{
    if (n > rd_left(r))
        return rd_short(r, n, what);
    *out = r->p + r->pos;
    r->pos += n;
    return VT_OK;
}

static vt_err rd_u32(rd *r, const char *what, uint32_t *out)
{
    const uint8_t *b = NULL;
    vt_err e = rd_bytes(r, 4, what, &b);
    if (e == VT_OK)
        memcpy(out, b, 4);
    return e;
}

static vt_err rd_u64(rd *r, const char *what, uint64_t *out)
{
    const uint8_t *b = NULL;
    vt_err e = rd_bytes(r, 8, what, &b);
    if (e == VT_OK)
        memcpy(out, b, 8);
    return e;
}

static vt_err rd_str(rd *r, const char *what, gguf_str *out)
{
    uint64_t len;
    vt_err e = rd_u64(r, what, &len);
    if (e != VT_OK)
        return e;
    if (len > rd_left(r))
        return vt_fail(VT_ERR_FORMAT,
                       "gguf: %s: %s length %llu at offset %llu runs past the end of the file "
                       "(%llu bytes)",
                       r->ctx, what, (unsigned long long)len, (unsigned long long)(r->pos - 8),
                       (unsigned long long)r->size);
    out->ptr = (const char *)r->p + r->pos;
    out->len = len;
    r->pos += len;
    return VT_OK;
}

/* ---- values ------------------------------------------------------------ */

uint64_t gguf_vtype_size(gguf_vtype t)
{
    switch (t) {
    case GGUF_T_UINT8:
    case GGUF_T_INT8:
    case GGUF_T_BOOL: return 1;
    case GGUF_T_UINT16:
    case GGUF_T_INT16: return 2;
    case GGUF_T_UINT32:
    case GGUF_T_INT32:
    case GGUF_T_FLOAT32: return 4;
    case GGUF_T_UINT64:
    case GGUF_T_INT64:
    case GGUF_T_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_vtype_name(gguf_vtype t)
{
    static const char *const names[GGUF_T_COUNT] = {
        "uint8", "int8",   "uint16", "int16", "uint32", "int32",  "float32",
        "bool",  "string", "array",  "uint64", "int64", "float64",
    };
    return (unsigned)t < GGUF_T_COUNT ? names[t] : "?";
}

static void decode_scalar(gguf_vtype t, const uint8_t *p, gguf_value *v)
{
    memset(v, 0, sizeof *v);
    v->type = t;
    switch (t) {
    case GGUF_T_UINT8: v->v.u64 = p[0]; break;
    case GGUF_T_INT8: v->v.i64 = (int8_t)p[0]; break;
    case GGUF_T_BOOL: v->v.b = p[0] != 0; break;
    case GGUF_T_UINT16: {
        uint16_t x;
        memcpy(&x, p, 2);
        v->v.u64 = x;
        break;
    }
    case GGUF_T_INT16: {
        int16_t x;
        memcpy(&x, p, 2);
        v->v.i64 = x;
        break;
    }
    case GGUF_T_UINT32: {
        uint32_t x;
        memcpy(&x, p, 4);
        v->v.u64 = x;
        break;
    }
    case GGUF_T_INT32: {
        int32_t x;
        memcpy(&x, p, 4);
        v->v.i64 = x;
        break;
    }
    case GGUF_T_FLOAT32: {
        float x;
        memcpy(&x, p, 4);
        v->v.f64 = x;
        break;
    }
    case GGUF_T_UINT64: memcpy(&v->v.u64, p, 8); break;
    case GGUF_T_INT64: memcpy(&v->v.i64, p, 8); break;
    case GGUF_T_FLOAT64: memcpy(&v->v.f64, p, 8); break;
    default: break;
    }
}

static vt_err bad_bool(const rd *r, uint8_t b, uint64_t at)
{
    return vt_fail(VT_ERR_FORMAT, "gguf: %s: invalid bool byte %u at offset %llu (must be 0 or 1)",
                   r->ctx, b, (unsigned long long)at);
}

static vt_err bad_type(const rd *r, uint32_t t, const char *what)
{
    return vt_fail(VT_ERR_FORMAT, "gguf: %s: invalid %s %u at offset %llu (types are 0 to %d)",
                   r->ctx, what, t, (unsigned long long)(r->pos - 4), GGUF_T_COUNT - 1);
}

/* Parses the array that starts at the cursor (element type, count,
 * elements) into node; depth is 1 for an array that is a kv's value. */
static vt_err parse_array(rd *r, arr_node *node, int depth)
{
    if (depth > MAX_DEPTH)
        return vt_fail(VT_ERR_FORMAT,
                       "gguf: %s: arrays nested too deep (more than %d levels) at offset %llu",
                       r->ctx, MAX_DEPTH, (unsigned long long)r->pos);
    uint32_t et;
    uint64_t n;
    vt_err e = rd_u32(r, "array element type", &et);
    if (e != VT_OK)
        return e;
    if (et >= GGUF_T_COUNT)
        return bad_type(r, et, "array element type");
    if ((e = rd_u64(r, "array count", &n)) != VT_OK)
        return e;
    /* the fewest bytes an element takes: a string's length, an array's type and count */
    uint64_t min = et == GGUF_T_STRING  ? 8
                   : et == GGUF_T_ARRAY ? 12
                                        : gguf_vtype_size((gguf_vtype)et);
    if (n > rd_left(r) / min)
        return vt_fail(VT_ERR_FORMAT,
                       "gguf: %s: array count %llu at offset %llu needs at least %llu bytes per "
                       "element but only %llu bytes remain",
                       r->ctx, (unsigned long long)n, (unsigned long long)(r->pos - 8),
                       (unsigned long long)min, (unsigned long long)rd_left(r));
    node->p = r->p + r->pos;
    node->type = (gguf_vtype)et;
    node->n = n;
    node->offs = NULL;
    node->kids = NULL;
    if (et == GGUF_T_STRING) {
        uint64_t *offs = arena_alloc(r->f, (size_t)n * sizeof *offs);
        if (!offs && n)
            return vt_fail(VT_ERR_NOMEM, "gguf: %s: out of memory for %llu string offsets",
                           r->ctx, (unsigned long long)n);
        const uint64_t start = r->pos;
        for (uint64_t j = 0; j < n; j++) {
            gguf_str s;
            offs[j] = r->pos - start;
            if ((e = rd_str(r, "array string", &s)) != VT_OK)
                return e;
        }
        node->offs = offs;
    } else if (et == GGUF_T_ARRAY) {
        arr_node *kids = arena_alloc(r->f, (size_t)n * sizeof *kids);
        if (!kids && n)
            return vt_fail(VT_ERR_NOMEM, "gguf: %s: out of memory for %llu nested arrays", r->ctx,
                           (unsigned long long)n);
        for (uint64_t j = 0; j < n; j++)
            if ((e = parse_array(r, &kids[j], depth + 1)) != VT_OK)
                return e;
        node->kids = kids;
    } else {
        if (et == GGUF_T_BOOL)
            for (uint64_t j = 0; j < n; j++)
                if (node->p[j] > 1)
                    return bad_bool(r, node->p[j], r->pos + j);
        r->pos += n * min;
    }
    return VT_OK;
}

/* Parses one value of type t (already checked to be < GGUF_T_COUNT). */
static vt_err parse_value(rd *r, gguf_vtype t, gguf_value *v)
{
    vt_err e;
    memset(v, 0, sizeof *v);
    v->type = t;
    if (t == GGUF_T_STRING)
        return rd_str(r, "string value", &v->v.str);
    if (t == GGUF_T_ARRAY) {
        arr_node *node = arena_alloc(r->f, sizeof *node);
        if (!node)
            return vt_fail(VT_ERR_NOMEM, "gguf: out of memory");
        if ((e = parse_array(r, node, 1)) != VT_OK)
            return e;
        v->arr_type = node->type;
        v->arr_n = node->n;
        v->arr_impl = node;
        return VT_OK;
    }
    const uint8_t *b = NULL;
    if ((e = rd_bytes(r, gguf_vtype_size(t), "value", &b)) != VT_OK)
        return e;
    if (t == GGUF_T_BOOL && b[0] > 1)
        return bad_bool(r, b[0], r->pos - 1);
    decode_scalar(t, b, v);
    return VT_OK;
}

/* ---- the whole file ------------------------------------------------------ */

static void set_ctx(rd *r, const char *what, const char *p, uint64_t n)
{
    snprintf(r->ctx, sizeof r->ctx, "%s '%.*s%s'", what, (int)VT_MIN(n, (uint64_t)SHOW), p,
             n > SHOW ? "..." : "");
}

static vt_err parse_header(rd *r, gguf_file *f, uint64_t *n_tensors, uint64_t *n_kv)
{
    vt_err e;
    const uint8_t *magic;
    if (r->size < 4 || memcmp(r->p, "GGUF", 4) != 0)
        return vt_fail(VT_ERR_FORMAT, "gguf: not a GGUF file (bad magic)");
    (void)rd_bytes(r, 4, "magic", &magic);
    if ((e = rd_u32(r, "version", &f->version)) != VT_OK)
        return e;
    uint32_t v = f->version;
    if (v == 1)
        return vt_fail(VT_ERR_UNSUPPORTED,
                       "gguf: version 1 files are not supported (only 2 and 3)");
    if (v == 0x02000000u || v == 0x03000000u)
        return vt_fail(VT_ERR_UNSUPPORTED, "gguf: big-endian GGUF files are not supported (version "
                                           "%u byte-swapped)", __builtin_bswap32(v));
    if (v == 0)
        return vt_fail(VT_ERR_FORMAT, "gguf: invalid version 0");
    if (v != 2 && v != 3)
        return vt_fail(VT_ERR_UNSUPPORTED, "gguf: unknown version %u (only 2 and 3 are supported)",
                       v);
    if ((e = rd_u64(r, "tensor count", n_tensors)) != VT_OK ||
        (e = rd_u64(r, "kv count", n_kv)) != VT_OK)
        return e;
    uint64_t left = rd_left(r);
    if (*n_kv > MAX_COUNT || *n_kv > left / MIN_KV)
        return vt_fail(VT_ERR_FORMAT,
                       "gguf: kv count %llu is impossible: the %llu bytes after the header hold "
                       "at most %llu",
                       (unsigned long long)*n_kv, (unsigned long long)left,
                       (unsigned long long)(left / MIN_KV));
    if (*n_tensors > MAX_COUNT || *n_tensors > (left - *n_kv * MIN_KV) / MIN_TINFO)
        return vt_fail(VT_ERR_FORMAT,
                       "gguf: tensor count %llu is impossible: the %llu bytes after the header "
                       "hold at most %llu",
                       (unsigned long long)*n_tensors, (unsigned long long)left,
                       (unsigned long long)((left - *n_kv * MIN_KV) / MIN_TINFO));
    return VT_OK;
}

static vt_err parse_kvs(rd *r, gguf_file *f, uint64_t n_kv)
{
    vt_err e;
    /* the array grows with what is parsed: a count is never trusted */
    uint64_t cap = VT_MIN(n_kv, (uint64_t)256);
    f->kvs = malloc(VT_MAX(cap, (uint64_t)1) * sizeof *f->kvs);
    if (!f->kvs)
        return vt_fail(VT_ERR_NOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < n_kv; i++) {
        if (i == cap) {
            cap = VT_MIN(cap * 2, n_kv);
            kv_entry *k = realloc(f->kvs, cap * sizeof *k);
            if (!k)
                return vt_fail(VT_ERR_NOMEM, "gguf: out of memory for %llu kvs",
                               (unsigned long long)cap);
            f->kvs = k;
        }
        kv_entry *kv = &f->kvs[i];
        uint32_t t;
        snprintf(r->ctx, sizeof r->ctx, "kv %llu", (unsigned long long)i);
        if ((e = rd_str(r, "key", &kv->key)) != VT_OK)
            return e;
        if (kv->key.len == 0)
            return vt_fail(VT_ERR_FORMAT, "gguf: kv %llu: empty key at offset %llu",
                           (unsigned long long)i, (unsigned long long)(r->pos - 8));
        if (memchr(kv->key.ptr, 0, kv->key.len))
            return vt_fail(VT_ERR_FORMAT, "gguf: kv %llu: key contains a NUL byte",
                           (unsigned long long)i);
        set_ctx(r, "key", kv->key.ptr, kv->key.len);
        if ((e = rd_u32(r, "value type", &t)) != VT_OK)
            return e;
        if (t >= GGUF_T_COUNT)
            return bad_type(r, t, "value type");
        if ((e = parse_value(r, (gguf_vtype)t, &kv->val)) != VT_OK)
            return e;
        f->n_kv = (int64_t)i + 1;
    }
    /* index by key; duplicates are an error */
    if ((e = htab_init(&f->kv_tab, n_kv)) != VT_OK)
        return e;
    for (int64_t i = 0; i < f->n_kv; i++) {
        gguf_str k = f->kvs[i].key;
        uint64_t s = htab_slot(f, &f->kv_tab, kv_key_at, k.ptr, k.len);
        if (f->kv_tab.slots[s])
            return vt_fail(VT_ERR_FORMAT, "gguf: duplicate key '%.*s' (kvs %u and %lld)",
                           (int)VT_MIN(k.len, (uint64_t)SHOW), k.ptr, f->kv_tab.slots[s] - 1,
                           (long long)i);
        f->kv_tab.slots[s] = (uint32_t)i + 1;
    }
    /* the alignment of the data section */
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t a = gguf_find_key(f, "general.alignment");
    if (a >= 0) {
        const gguf_value *v = &f->kvs[a].val;
        if (v->type != GGUF_T_UINT32)
            return vt_fail(VT_ERR_FORMAT, "gguf: general.alignment must be a uint32 (it is %s)",
                           gguf_vtype_name(v->type));
        if (v->v.u64 == 0 || (v->v.u64 & (v->v.u64 - 1)))
            return vt_fail(VT_ERR_FORMAT,
                           "gguf: general.alignment %llu is not a nonzero power of two",
                           (unsigned long long)v->v.u64);
        f->alignment = v->v.u64;
    }
    return VT_OK;
}

static vt_err parse_tensor_info(rd *r, gguf_file *f, int64_t i, gguf_tensor *t)
{
    vt_err e;
    gguf_str name;
    uint64_t ne[GGUF_MAX_DIMS], off;
    uint32_t type;
    snprintf(r->ctx, sizeof r->ctx, "tensor %lld", (long long)i);
    if ((e = rd_str(r, "tensor name", &name)) != VT_OK)
        return e;
    if (name.len == 0)
        return vt_fail(VT_ERR_FORMAT, "gguf: tensor %lld: empty name", (long long)i);
    if (memchr(name.ptr, 0, name.len))
        return vt_fail(VT_ERR_FORMAT, "gguf: tensor %lld: name contains a NUL byte", (long long)i);
    set_ctx(r, "tensor", name.ptr, name.len);
    char *copy = arena_alloc(f, (size_t)name.len + 1);
    if (!copy)
        return vt_fail(VT_ERR_NOMEM, "gguf: out of memory");
    memcpy(copy, name.ptr, name.len);
    copy[name.len] = 0;
    t->name = copy;
    if ((e = rd_u32(r, "n_dims", &t->n_dims)) != VT_OK)
        return e;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return vt_fail(VT_ERR_FORMAT, "gguf: %s: n_dims is %u (must be 1 to %d)", r->ctx, t->n_dims,
                       GGUF_MAX_DIMS);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        ne[d] = 1;
        if (d < t->n_dims && (e = rd_u64(r, "dimension", &ne[d])) != VT_OK)
            return e;
        if (ne[d] < 1 || ne[d] > (uint64_t)INT64_MAX)
            return vt_fail(VT_ERR_FORMAT,
                           "gguf: %s: dimension %u is %llu (must be at least 1 and below 2^63)",
                           r->ctx, d, (unsigned long long)ne[d]);
        if (!vt_mul_u64(nel, ne[d], &nel) || nel > (uint64_t)INT64_MAX)
            return vt_fail(VT_ERR_FORMAT, "gguf: %s: element count overflows 64 bits", r->ctx);
        t->ne[d] = (int64_t)ne[d];
    }
    if ((e = rd_u32(r, "tensor type", &type)) != VT_OK)
        return e;
    const vt_type_info *ti = vt_type_get(type);
    if (!ti)
        return vt_fail(VT_ERR_UNSUPPORTED, "gguf: %s: unknown tensor type %u", r->ctx, type);
    t->type = type;
    if (ne[0] % (uint64_t)ti->blck != 0)
        return vt_fail(VT_ERR_FORMAT,
                       "gguf: %s: ne[0] = %llu is not a multiple of the block size %lld of %s",
                       r->ctx, (unsigned long long)ne[0], (long long)ti->blck, ti->name);
    uint64_t row;
    if (!vt_mul_u64(ne[0] / (uint64_t)ti->blck, ti->size, &row) ||
        !vt_mul_u64(row, nel / ne[0], &t->nbytes))
        return vt_fail(VT_ERR_FORMAT, "gguf: %s: size in bytes overflows 64 bits", r->ctx);
    if ((e = rd_u64(r, "tensor offset", &off)) != VT_OK)
        return e;
    t->offset = off;
    t->data = NULL;
    return VT_OK;
}

typedef struct {
    uint64_t start, end;
    int64_t i;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start ? 1 : (x->i > y->i) - (x->i < y->i);
}

static vt_err parse_tensors(rd *r, gguf_file *f, uint64_t n_t)
{
    vt_err e;
    uint64_t cap = VT_MIN(n_t, (uint64_t)256);
    f->tensors = malloc(VT_MAX(cap, (uint64_t)1) * sizeof *f->tensors);
    if (!f->tensors)
        return vt_fail(VT_ERR_NOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < n_t; i++) {
        if (i == cap) {
            cap = VT_MIN(cap * 2, n_t);
            gguf_tensor *t = realloc(f->tensors, cap * sizeof *t);
            if (!t)
                return vt_fail(VT_ERR_NOMEM, "gguf: out of memory for %llu tensors",
                               (unsigned long long)cap);
            f->tensors = t;
        }
        if ((e = parse_tensor_info(r, f, (int64_t)i, &f->tensors[i])) != VT_OK)
            return e;
        f->n_tensors = (int64_t)i + 1;
    }
    if ((e = htab_init(&f->t_tab, n_t)) != VT_OK)
        return e;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name;
        uint64_t s = htab_slot(f, &f->t_tab, tensor_key_at, name, strlen(name));
        if (f->t_tab.slots[s])
            return vt_fail(VT_ERR_FORMAT,
                           "gguf: duplicate tensor name '%.64s' (tensors %u and %lld)", name,
                           f->t_tab.slots[s] - 1, (long long)i);
        f->t_tab.slots[s] = (uint32_t)i + 1;
    }

    /* the data section starts at the next multiple of the alignment */
    uint64_t a = f->alignment;
    f->data_offset = (r->pos + a - 1) / a * a; /* pos <= size < 2^63: no overflow */

    span *sp = malloc(VT_MAX((uint64_t)f->n_tensors, (uint64_t)1) * sizeof *sp);
    if (!sp)
        return vt_fail(VT_ERR_NOMEM, "gguf: out of memory");
    e = VT_OK;
    for (int64_t i = 0; i < f->n_tensors && e == VT_OK; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t start, end;
        if (t->offset % a != 0)
            e = vt_fail(VT_ERR_FORMAT,
                        "gguf: tensor '%.64s': offset %llu is not a multiple of the alignment %llu",
                        t->name, (unsigned long long)t->offset, (unsigned long long)a);
        else if (!vt_add_u64(f->data_offset, t->offset, &start) ||
                 !vt_add_u64(start, t->nbytes, &end) || end > f->size)
            e = vt_fail(VT_ERR_FORMAT,
                        "gguf: tensor '%.64s': data (%llu bytes at offset %llu of the data "
                        "section) is beyond the end of the file (%llu bytes)",
                        t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                        (unsigned long long)f->size);
        else {
            t->data = f->base + start;
            sp[i] = (span){t->offset, t->offset + t->nbytes, i};
        }
    }
    if (e == VT_OK && f->n_tensors > 1) {
        qsort(sp, (size_t)f->n_tensors, sizeof *sp, span_cmp);
        for (int64_t k = 1; k < f->n_tensors; k++)
            if (sp[k].start < sp[k - 1].end) {
                e = vt_fail(VT_ERR_FORMAT, "gguf: tensors '%.64s' and '%.64s' overlap",
                            f->tensors[sp[k - 1].i].name, f->tensors[sp[k].i].name);
                break;
            }
    }
    free(sp);
    return e;
}

static vt_err parse(gguf_file *f)
{
    rd r = {.p = f->base, .size = f->size, .pos = 0, .f = f};
    uint64_t n_t, n_kv;
    vt_err e;
    snprintf(r.ctx, sizeof r.ctx, "header");
    if ((e = parse_header(&r, f, &n_t, &n_kv)) != VT_OK)
        return e;
    if ((e = parse_kvs(&r, f, n_kv)) != VT_OK)
        return e;
    return parse_tensors(&r, f, n_t);
}

/* ---- open / close ---------------------------------------------------------- */

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->map_len);
    free(f->kvs);
    free(f->tensors);
    free(f->kv_tab.slots);
    free(f->t_tab.slots);
    arena_free(f->arena);
    free(f);
}

vt_err gguf_open_memory(const void *data, size_t size, gguf_file **out)
{
    *out = NULL;
    if (!data && size)
        return vt_fail(VT_ERR_INVALID, "gguf: NULL buffer of %zu bytes", size);
    gguf_file *f = calloc(1, sizeof *f);
    if (!f)
        return vt_fail(VT_ERR_NOMEM, "gguf: out of memory");
    f->base = data;
    f->size = size;
    f->seed = mix64((uint64_t)(uintptr_t)f ^ (uint64_t)(vt_now() * 1e9));
    vt_err e = parse(f);
    if (e != VT_OK)
        goto fail;
    *out = f;
    return VT_OK;
fail:
    gguf_close(f);
    return e;
}

vt_err gguf_open(const char *path, gguf_file **out)
{
    vt_err e;
    struct stat st;
    void *map = NULL;
    gguf_file *f = NULL;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vt_fail(errno == ENOENT ? VT_ERR_NOT_FOUND : VT_ERR_IO, "gguf: cannot open '%s': %s",
                       path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        e = vt_fail(VT_ERR_IO, "gguf: cannot stat '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        e = vt_fail(VT_ERR_IO, "gguf: '%s' is not a regular file", path);
        goto fail;
    }
    if (st.st_size < 4) {
        e = vt_fail(VT_ERR_FORMAT, "gguf: '%s' is not a GGUF file (%lld bytes, bad magic)", path,
                    (long long)st.st_size);
        goto fail;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        map = NULL;
        e = vt_fail(VT_ERR_IO, "gguf: cannot map '%s': %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    if ((e = gguf_open_memory(map, (size_t)st.st_size, &f)) != VT_OK) {
        /* prefix the path to the message */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", vt_last_error());
        vt_fail(e, "%s: %s", path, msg);
        goto fail;
    }
    f->map = map;
    f->map_len = (size_t)st.st_size;
    *out = f;
    return VT_OK;
fail:
    if (map)
        munmap(map, (size_t)st.st_size);
    if (fd >= 0)
        close(fd);
    return e;
}

/* ---- accessors ----------------------------------------------------------------- */

uint32_t gguf_version(const gguf_file *f)
{
    return f->version;
}

uint64_t gguf_alignment(const gguf_file *f)
{
    return f->alignment;
}

uint64_t gguf_data_offset(const gguf_file *f)
{
    return f->data_offset;
}

uint64_t gguf_size(const gguf_file *f)
{
    return f->size;
}

int64_t gguf_n_kv(const gguf_file *f)
{
    return f->n_kv;
}

int64_t gguf_find_key(const gguf_file *f, const char *key)
{
    if (!f || !key || !f->kv_tab.slots)
        return -1;
    uint32_t s = f->kv_tab.slots[htab_slot(f, &f->kv_tab, kv_key_at, key, strlen(key))];
    return (int64_t)s - 1;
}

gguf_str gguf_kv_key(const gguf_file *f, int64_t i)
{
    if (i < 0 || i >= f->n_kv)
        return (gguf_str){NULL, 0};
    return f->kvs[i].key;
}

const gguf_value *gguf_kv_value(const gguf_file *f, int64_t i)
{
    if (i < 0 || i >= f->n_kv)
        return NULL;
    return &f->kvs[i].val;
}

bool gguf_arr_get(const gguf_value *arr, uint64_t j, gguf_value *out)
{
    if (!arr || arr->type != GGUF_T_ARRAY || !arr->arr_impl)
        return false;
    const arr_node *node = arr->arr_impl;
    if (j >= node->n)
        return false;
    if (node->type == GGUF_T_STRING) {
        uint64_t len;
        memcpy(&len, node->p + node->offs[j], 8);
        memset(out, 0, sizeof *out);
        out->type = GGUF_T_STRING;
        out->v.str = (gguf_str){(const char *)node->p + node->offs[j] + 8, len};
    } else if (node->type == GGUF_T_ARRAY) {
        const arr_node *kid = &node->kids[j];
        memset(out, 0, sizeof *out);
        out->type = GGUF_T_ARRAY;
        out->arr_type = kid->type;
        out->arr_n = kid->n;
        out->arr_impl = kid;
    } else {
        decode_scalar(node->type, node->p + j * gguf_vtype_size(node->type), out);
    }
    return true;
}

const void *gguf_arr_raw(const gguf_value *arr)
{
    if (!arr || arr->type != GGUF_T_ARRAY || !arr->arr_impl)
        return NULL;
    const arr_node *node = arr->arr_impl;
    return gguf_vtype_size(node->type) ? node->p : NULL;
}

/* ---- typed getters ---- */

static bool is_signed_int(gguf_vtype t)
{
    return t == GGUF_T_INT8 || t == GGUF_T_INT16 || t == GGUF_T_INT32 || t == GGUF_T_INT64;
}

static bool is_unsigned_int(gguf_vtype t)
{
    return t == GGUF_T_UINT8 || t == GGUF_T_UINT16 || t == GGUF_T_UINT32 || t == GGUF_T_UINT64;
}

static const gguf_value *value_of(const gguf_file *f, const char *key)
{
    int64_t i = gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kvs[i].val;
}

bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out)
{
    const gguf_value *v = value_of(f, key);
    if (!v)
        return false;
    if (is_unsigned_int(v->type) && v->v.u64 <= UINT32_MAX) {
        *out = (uint32_t)v->v.u64;
        return true;
    }
    if (is_signed_int(v->type) && v->v.i64 >= 0 && v->v.i64 <= (int64_t)UINT32_MAX) {
        *out = (uint32_t)v->v.i64;
        return true;
    }
    return false;
}

bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out)
{
    const gguf_value *v = value_of(f, key);
    if (!v)
        return false;
    if (is_signed_int(v->type)) {
        *out = v->v.i64;
        return true;
    }
    if (is_unsigned_int(v->type) && v->v.u64 <= (uint64_t)INT64_MAX) {
        *out = (int64_t)v->v.u64;
        return true;
    }
    return false;
}

bool gguf_get_f32(const gguf_file *f, const char *key, float *out)
{
    const gguf_value *v = value_of(f, key);
    double d;
    if (!v)
        return false;
    if (v->type == GGUF_T_FLOAT32 || v->type == GGUF_T_FLOAT64)
        d = v->v.f64;
    else if (is_signed_int(v->type))
        d = (double)v->v.i64;
    else if (is_unsigned_int(v->type))
        d = (double)v->v.u64;
    else
        return false;
    if (isfinite(d) && fabs(d) > FLT_MAX) /* too large for a float */
        return false;
    *out = (float)d;
    return true;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out)
{
    const gguf_value *v = value_of(f, key);
    if (!v || v->type != GGUF_T_BOOL)
        return false;
    *out = v->v.b;
    return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out)
{
    const gguf_value *v = value_of(f, key);
    if (!v || v->type != GGUF_T_STRING)
        return false;
    *out = v->v.str;
    return true;
}

const gguf_value *gguf_get_arr(const gguf_file *f, const char *key)
{
    const gguf_value *v = value_of(f, key);
    return v && v->type == GGUF_T_ARRAY ? v : NULL;
}

/* ---- tensors ---- */

int64_t gguf_n_tensors(const gguf_file *f)
{
    return f->n_tensors;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i)
{
    if (i < 0 || i >= f->n_tensors)
        return NULL;
    return &f->tensors[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    if (!f || !name || !f->t_tab.slots)
        return NULL;
    uint32_t s = f->t_tab.slots[htab_slot(f, &f->t_tab, tensor_key_at, name, strlen(name))];
    return s ? &f->tensors[s - 1] : NULL;
}
