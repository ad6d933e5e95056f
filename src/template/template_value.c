/*
 * template_value.c - runtime values of the template interpreter: the render
 * heap (reference counting, the list of live objects swept at the end of a
 * render, memory accounting against tpl_options.max_memory), strings that
 * double as growable buffers, lists, insertion-ordered dicts (with a hash
 * index once they grow), scopes, the conversion of the JSON context into
 * values (with JavaScript's key order: integer-like keys first), and the
 * value semantics the oracle defines: what a value prints as, its JSON form
 * (tojson), truthiness, loose (==) and strict equality, and the ordering
 * used by sort.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/template_int.h"

/* ---------------------------------------------------------------- errors */

int tpl_fail(trender *r, vt_err e, int line, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        vt_fail(e, "template line %d: %s", line, msg);
    else
        vt_fail(e, "template: %s", msg);
    r->err = e;
    return -1;
}

int tpl_nomem(trender *r)
{
    r->err = vt_fail(VT_ERR_NOMEM, "template: out of memory");
    return -1;
}

/* ---------------------------------------------------------------- heap */

void tpl_heap_init(trender *r, const tpl_options *opt)
{
    memset(r, 0, sizeof *r);
    r->live.prev = r->live.next = &r->live;
    r->max_out = opt && opt->max_output ? opt->max_output : (size_t)64 << 20;
    r->max_mem = opt && opt->max_memory ? opt->max_memory : (size_t)512 << 20;
    r->max_steps = opt && opt->max_steps ? opt->max_steps : 50000000u;
    r->max_depth = opt && opt->max_depth > 0 ? opt->max_depth : 256;
    r->now = opt ? opt->now : 0;
}

/* Accounts for `delta` more bytes held by o (negative: fewer). */
static int account(trender *r, tobj *o, size_t add, size_t sub)
{
    if (add > sub && r->mem + (add - sub) > r->max_mem)
        return tpl_fail(r, VT_ERR_RANGE, 0, "memory limit of %zu bytes exceeded", r->max_mem);
    r->mem = r->mem + add - sub;
    o->bytes = o->bytes + add - sub;
    return 0;
}

static void *obj_alloc(trender *r, size_t size, int kind)
{
    if (r->mem + size > r->max_mem) {
        tpl_fail(r, VT_ERR_RANGE, 0, "memory limit of %zu bytes exceeded", r->max_mem);
        return NULL;
    }
    tobj *o = calloc(1, size);
    if (!o) {
        tpl_nomem(r);
        return NULL;
    }
    o->bytes = size;
    o->rc = 1;
    o->kind = (uint8_t)kind;
    o->prev = r->live.prev;
    o->next = &r->live;
    r->live.prev->next = o;
    r->live.prev = o;
    r->mem += size;
    return o;
}

/* Frees o's own memory (not its children). */
static void obj_release(trender *r, tobj *o)
{
    r->mem -= o->bytes;
    switch (o->kind) {
    case TO_STR: free(((tstr *)o)->p); break;
    case TO_LIST: free(((tlist *)o)->v); break;
    case TO_DICT: {
        tdict *d = (tdict *)o;
        free(d->k);
        free(d->v);
        free(d->ix);
        break;
    }
    default: break;
    }
    free(o);
}

void tpl_heap_free_all(trender *r)
{
    tobj *o = r->live.next;
    while (o != &r->live) {
        tobj *nx = o->next;
        obj_release(r, o);
        o = nx;
    }
    r->live.prev = r->live.next = &r->live;
}

void tpl_incref(tval v)
{
    if (tv_is_obj(v) && !v.u.o->immortal)
        v.u.o->rc++;
}

/* Dropping the last reference frees iteratively (a chain of nested lists
 * must not recurse once per level): dead objects wait on a stack threaded
 * through their `prev` links. */
void tpl_obj_decref(trender *r, tobj *o)
{
    if (!o || o->immortal || --o->rc > 0)
        return;
    tobj *stack = NULL;
#define DEAD(x)                                                                                    \
    do {                                                                                           \
        tobj *x_ = (x);                                                                            \
        if (x_ && !x_->immortal && --x_->rc == 0) {                                                \
            x_->prev->next = x_->next;                                                             \
            x_->next->prev = x_->prev;                                                             \
            x_->prev = stack;                                                                      \
            stack = x_;                                                                            \
        }                                                                                          \
    } while (0)
    o->rc = 1;
    DEAD(o);
    while (stack) {
        tobj *x = stack;
        stack = x->prev;
        switch (x->kind) {
        case TO_LIST: {
            tlist *l = (tlist *)x;
            for (size_t i = 0; i < l->n; i++)
                if (tv_is_obj(l->v[i]))
                    DEAD(l->v[i].u.o);
            break;
        }
        case TO_DICT: {
            tdict *d = (tdict *)x;
            for (size_t i = 0; i < d->n; i++) {
                DEAD(&d->k[i]->h);
                if (tv_is_obj(d->v[i]))
                    DEAD(d->v[i].u.o);
            }
            break;
        }
        case TO_FUNC: {
            tfunc *f = (tfunc *)x;
            if (tv_is_obj(f->self))
                DEAD(f->self.u.o);
            if (f->env)
                DEAD(&f->env->h);
            break;
        }
        case TO_ENV: {
            tenv *e = (tenv *)x;
            if (e->parent)
                DEAD(&e->parent->h);
            DEAD(&e->vars->h);
            break;
        }
        default: break;
        }
        x->prev = x->next = x; /* unlinked */
        obj_release(r, x);
    }
#undef DEAD
}

void tpl_decref(trender *r, tval v)
{
    if (tv_is_obj(v))
        tpl_obj_decref(r, v.u.o);
}

int tpl_check_steps(trender *r, int line)
{
    if (++r->steps > r->max_steps)
        return tpl_fail(r, VT_ERR_RANGE, line, "evaluation step limit (%llu) exceeded",
                        (unsigned long long)r->max_steps);
    return 0;
}

/* ---------------------------------------------------------------- strings */

tstr *tpl_buf_new(trender *r, size_t cap)
{
    tstr *s = obj_alloc(r, sizeof *s, TO_STR);
    if (!s)
        return NULL;
    if (cap < 15)
        cap = 15;
    if (account(r, &s->h, cap + 1, 0))
        return NULL;
    s->p = malloc(cap + 1);
    if (!s->p) {
        tpl_nomem(r);
        return NULL;
    }
    s->p[0] = 0;
    s->cap = cap;
    s->u16 = -1;
    return s;
}

int tpl_buf_put(trender *r, tstr *s, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (n > r->max_out || s->len > r->max_out - n)
        return tpl_fail(r, VT_ERR_RANGE, 0, "a string or the output exceeds %zu bytes", r->max_out);
    if (s->len + n > s->cap) {
        size_t cap = s->cap * 2;
        if (cap < s->len + n)
            cap = s->len + n;
        if (cap > r->max_out)
            cap = r->max_out;
        if (account(r, &s->h, cap + 1, s->cap + 1))
            return -1;
        char *np = realloc(s->p, cap + 1);
        if (!np)
            return tpl_nomem(r);
        s->p = np;
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = 0;
    s->u16 = -1;
    return 0;
}

int tpl_buf_putc(trender *r, tstr *s, char c)
{
    return tpl_buf_put(r, s, &c, 1);
}

tstr *tpl_str_new(trender *r, const char *p, size_t n)
{
    if (n > r->max_out) {
        tpl_fail(r, VT_ERR_RANGE, 0, "a string or the output exceeds %zu bytes", r->max_out);
        return NULL;
    }
    tstr *s = tpl_buf_new(r, n);
    if (s && tpl_buf_put(r, s, p, n))
        return NULL;
    return s;
}

tstr *tpl_str_immortal(tpl_arena *a, const char *p, size_t n)
{
    tstr *s = tpl_arena_alloc(a, sizeof *s + n + 1);
    if (!s)
        return NULL;
    s->h.immortal = 1;
    s->h.kind = TO_STR;
    s->h.rc = 1;
    s->p = (char *)(s + 1);
    if (n)
        memcpy(s->p, p, n);
    s->p[n] = 0;
    s->len = s->cap = n;
    s->u16 = -1;
    return s;
}

/* ---------------------------------------------------------------- lists, dicts */

tlist *tpl_list_new(trender *r, size_t cap)
{
    tlist *l = obj_alloc(r, sizeof *l, TO_LIST);
    if (!l)
        return NULL;
    if (cap) {
        if (cap > r->max_mem / sizeof(tval) || account(r, &l->h, cap * sizeof(tval), 0)) {
            if (!r->err)
                tpl_fail(r, VT_ERR_RANGE, 0, "memory limit of %zu bytes exceeded", r->max_mem);
            return NULL;
        }
        l->v = malloc(cap * sizeof(tval));
        if (!l->v) {
            tpl_nomem(r);
            return NULL;
        }
        l->cap = cap;
    }
    return l;
}

int tpl_list_push(trender *r, tlist *l, tval v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        if (cap > r->max_mem / sizeof(tval))
            return tpl_fail(r, VT_ERR_RANGE, 0, "memory limit of %zu bytes exceeded", r->max_mem);
        if (account(r, &l->h, cap * sizeof(tval), l->cap * sizeof(tval)))
            return -1;
        tval *nv = realloc(l->v, cap * sizeof(tval));
        if (!nv)
            return tpl_nomem(r);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return 0;
}

tdict *tpl_dict_new(trender *r, bool ns)
{
    tdict *d = obj_alloc(r, sizeof *d, TO_DICT);
    if (d)
        d->ns = ns;
    return d;
}

static uint32_t hash_bytes(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static bool key_eq(const tstr *k, const char *p, size_t n)
{
    return k->len == n && (n == 0 || !memcmp(k->p, p, n));
}

static int dict_find(const tdict *d, const char *p, size_t n)
{
    if (!d->ix) {
        for (size_t i = 0; i < d->n; i++)
            if (key_eq(d->k[i], p, n))
                return (int)i;
        return -1;
    }
    size_t m = d->ixcap - 1;
    for (size_t s = hash_bytes(p, n) & m;; s = (s + 1) & m) {
        uint32_t e = d->ix[s];
        if (!e)
            return -1;
        if (key_eq(d->k[e - 1], p, n))
            return (int)(e - 1);
    }
}

static int dict_reindex(trender *r, tdict *d)
{
    size_t cap = 16;
    while (cap < d->n * 2 + 2)
        cap *= 2;
    if (account(r, &d->h, cap * 4, d->ixcap * 4))
        return -1;
    uint32_t *ix = calloc(cap, 4);
    if (!ix)
        return tpl_nomem(r);
    free(d->ix);
    d->ix = ix;
    d->ixcap = cap;
    for (size_t i = 0; i < d->n; i++) {
        size_t s = hash_bytes(d->k[i]->p, d->k[i]->len) & (cap - 1);
        while (ix[s])
            s = (s + 1) & (cap - 1);
        ix[s] = (uint32_t)(i + 1);
    }
    return 0;
}

tval *tpl_dict_get(const tdict *d, const char *k, size_t n)
{
    int i = dict_find(d, k, n);
    return i < 0 ? NULL : &d->v[i];
}

int tpl_dict_set(trender *r, tdict *d, tstr *key, tval v)
{
    int i = dict_find(d, key->p, key->len);
    if (i >= 0) {
        tval old = d->v[i];
        d->v[i] = v;
        tpl_decref(r, old);
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        if (cap > UINT32_MAX / 2 || cap > r->max_mem / sizeof(tval))
            return tpl_fail(r, VT_ERR_RANGE, 0, "memory limit of %zu bytes exceeded", r->max_mem);
        if (account(r, &d->h, cap * (sizeof(tval) + sizeof(tstr *)),
                    d->cap * (sizeof(tval) + sizeof(tstr *))))
            return -1;
        tstr **nk = realloc(d->k, cap * sizeof *nk);
        if (!nk)
            return tpl_nomem(r);
        d->k = nk;
        tval *nv = realloc(d->v, cap * sizeof *nv);
        if (!nv)
            return tpl_nomem(r);
        d->v = nv;
        d->cap = cap;
    }
    tpl_incref(tv_str(key));
    d->k[d->n] = key;
    d->v[d->n] = v;
    d->n++;
    if (d->ix && d->n * 2 + 2 <= d->ixcap) {
        size_t m = d->ixcap - 1, s = hash_bytes(key->p, key->len) & m;
        while (d->ix[s])
            s = (s + 1) & m;
        d->ix[s] = (uint32_t)d->n;
    } else if (d->n > 16) {
        return dict_reindex(r, d);
    }
    return 0;
}

bool tpl_dict_del(trender *r, tdict *d, const char *k, size_t n)
{
    int i = dict_find(d, k, n);
    if (i < 0)
        return false;
    tstr *key = d->k[i];
    tval v = d->v[i];
    memmove(d->k + i, d->k + i + 1, (d->n - (size_t)i - 1) * sizeof *d->k);
    memmove(d->v + i, d->v + i + 1, (d->n - (size_t)i - 1) * sizeof *d->v);
    d->n--;
    if (d->ix) { /* lookups scan until the next insertion rebuilds the index */
        free(d->ix);
        r->mem -= d->ixcap * 4;
        d->h.bytes -= d->ixcap * 4;
        d->ix = NULL;
        d->ixcap = 0;
    }
    tpl_decref(r, tv_str(key));
    tpl_decref(r, v);
    return true;
}

tfunc *tpl_func_new(trender *r, int kind, int id)
{
    tfunc *f = obj_alloc(r, sizeof *f, TO_FUNC);
    if (f) {
        f->kind = (uint8_t)kind;
        f->id = id;
    }
    return f;
}

tenv *tpl_env_new(trender *r, tenv *parent)
{
    tenv *e = obj_alloc(r, sizeof *e, TO_ENV);
    if (!e)
        return NULL;
    e->vars = tpl_dict_new(r, false);
    if (!e->vars)
        return NULL;
    e->parent = parent;
    if (parent)
        parent->h.rc++;
    return e;
}

tval *tpl_env_lookup(tenv *e, const char *k, size_t n)
{
    for (; e; e = e->parent) {
        tval *v = tpl_dict_get(e->vars, k, n);
        if (v)
            return v;
    }
    return NULL;
}

/* ---------------------------------------------------------------- JSON context */

/* "0" or [1-9][0-9]* below 2^32-1: JavaScript orders these keys first. */
static bool array_index_key(const char *k, size_t n, double *val)
{
    if (n == 0 || n > 10 || (n > 1 && k[0] == '0'))
        return false;
    double v = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9')
            return false;
        v = v * 10 + (k[i] - '0');
    }
    *val = v;
    return v < 4294967295.0;
}

typedef struct {
    const char *k;
    size_t n;
    double idx;
    json_t *v;
} jkey;

static int jkey_cmp(const void *a, const void *b)
{
    double x = ((const jkey *)a)->idx, y = ((const jkey *)b)->idx;
    return x < y ? -1 : x > y;
}

int tpl_from_json(trender *r, const json_t *j, tval *out, int depth)
{
    if (depth > 1000)
        return tpl_fail(r, VT_ERR_RANGE, 0, "context nested more than 1000 levels deep");
    switch (json_typeof(j)) {
    case JSON_NULL: *out = tv_none(); return 0;
    case JSON_TRUE: *out = tv_bool(true); return 0;
    case JSON_FALSE: *out = tv_bool(false); return 0;
    case JSON_INTEGER: *out = tv_int((double)json_integer_value(j)); return 0;
    case JSON_REAL: {
        double x = json_real_value(j);
        *out = isfinite(x) && x == floor(x) ? tv_int(x) : tv_float(x);
        return 0;
    }
    case JSON_STRING: {
        tstr *s = tpl_str_new(r, json_string_value(j), json_string_length(j));
        if (!s)
            return -1;
        *out = tv_str(s);
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        tlist *l = tpl_list_new(r, n);
        if (!l)
            return -1;
        *out = tv_list(l);
        for (size_t i = 0; i < n; i++) {
            tval v;
            if (tpl_from_json(r, json_array_get(j, i), &v, depth + 1) || tpl_list_push(r, l, v))
                return -1;
        }
        return 0;
    }
    case JSON_OBJECT: {
        tdict *d = tpl_dict_new(r, false);
        if (!d)
            return -1;
        *out = tv_dict(d);
        size_t n = json_object_size(j), k = 0, nidx = 0;
        jkey *keys = n ? malloc(n * sizeof *keys) : NULL;
        if (n && !keys)
            return tpl_nomem(r);
        const char *key;
        size_t keylen;
        json_t *val;
        json_object_keylen_foreach((json_t *)j, key, keylen, val)
        {
            if (k == n)
                break;
            keys[k] = (jkey){key, keylen, 0, val};
            if (array_index_key(key, keys[k].n, &keys[k].idx)) {
                jkey t = keys[k];
                memmove(keys + nidx + 1, keys + nidx, (k - nidx) * sizeof *keys);
                keys[nidx++] = t;
            }
            k++;
        }
        if (nidx > 1)
            qsort(keys, nidx, sizeof *keys, jkey_cmp);
        int rc = 0;
        for (size_t i = 0; i < k && !rc; i++) {
            tval v;
            tstr *ks = tpl_str_new(r, keys[i].k, keys[i].n);
            rc = !ks || tpl_from_json(r, keys[i].v, &v, depth + 1) || tpl_dict_set(r, d, ks, v);
            if (ks)
                tpl_obj_decref(r, &ks->h);
        }
        free(keys);
        return rc ? -1 : 0;
    }
    }
    return tpl_fail(r, VT_ERR_INVALID, 0, "unknown JSON value type");
}

/* ---------------------------------------------------------------- printing */

const char *tpl_type_name(tval v)
{
    switch (v.t) {
    case TV_UNDEF: return "UndefinedValue";
    case TV_NONE: return "NullValue";
    case TV_BOOL: return "BooleanValue";
    case TV_INT: return "IntegerValue";
    case TV_FLOAT: return "FloatValue";
    case TV_STR: return "StringValue";
    case TV_LIST: return v.u.l->tuple ? "TupleValue" : "ArrayValue";
    case TV_DICT: return v.u.d->kwargs ? "KeywordArgumentsValue" : "ObjectValue";
    case TV_NS: return "NamespaceValue";
    default: return "FunctionValue";
    }
}

static int put_num(trender *r, double x, tstr *buf)
{
    char tmp[48];
    int k = tpl_js_number(x, tmp);
    return tpl_buf_put(r, buf, tmp, (size_t)k);
}

int tpl_to_string(trender *r, tval v, tstr *buf, int line)
{
    switch (v.t) {
    case TV_UNDEF: return tpl_buf_put(r, buf, "undefined", 9);
    case TV_NONE: return tpl_buf_put(r, buf, "null", 4);
    case TV_BOOL: return v.u.b ? tpl_buf_put(r, buf, "true", 4) : tpl_buf_put(r, buf, "false", 5);
    case TV_INT: return put_num(r, v.u.n, buf);
    case TV_FLOAT: {
        double x = v.u.n;
        if (x == 0 && signbit(x))
            return tpl_buf_put(r, buf, "-0.0", 4);
        if (isfinite(x) && x == floor(x) && fabs(x) < 1e21) {
            char tmp[64];
            int k = snprintf(tmp, sizeof tmp, "%.1f", x);
            return tpl_buf_put(r, buf, tmp, (size_t)k);
        }
        return put_num(r, x, buf);
    }
    case TV_STR: return tpl_buf_put(r, buf, v.u.s->p, v.u.s->len);
    case TV_LIST:
    case TV_DICT:
    case TV_NS: {
        tjson_opts o = {0};
        return tpl_to_json(r, v, &o, buf, 0, line);
    }
    default: return tpl_fail(r, VT_ERR_FORMAT, line, "cannot convert a function to a string");
    }
}

int tpl_to_raw_string(trender *r, tval v, tstr *buf, int line)
{
    switch (v.t) {
    case TV_INT:
    case TV_FLOAT: return put_num(r, v.u.n, buf);
    case TV_LIST:
        for (size_t i = 0; i < v.u.l->n; i++)
            if ((i && tpl_buf_putc(r, buf, ',')) || tpl_to_string(r, v.u.l->v[i], buf, line))
                return -1;
        return 0;
    case TV_DICT:
    case TV_NS: return tpl_buf_put(r, buf, "[object Map]", 12);
    default: return tpl_to_string(r, v, buf, line);
    }
}

static int put_spaces(trender *r, tstr *buf, long n)
{
    static const char sp[] = "                                ";
    while (n > 0) {
        long k = n < 32 ? n : 32;
        if (tpl_buf_put(r, buf, sp, (size_t)k))
            return -1;
        n -= k;
    }
    return 0;
}

/* localeCompare, approximated: case-insensitive first, then lower case
 * before upper case, then UTF-16 order. */
static int locale_cmp(tstr *a, tstr *b)
{
    size_t i = 0, j = 0;
    int tert = 0;
    while (i < a->len && j < b->len) {
        uint32_t ca = (uint32_t)tpl_utf8_decode(a->p, a->len, &i);
        uint32_t cb = (uint32_t)tpl_utf8_decode(b->p, b->len, &j);
        uint32_t la = tpl_cp_lower(ca), lb = tpl_cp_lower(cb);
        if (la != lb)
            return la < lb ? -1 : 1;
        if (!tert && ca != cb)
            tert = ca == la ? -1 : 1;
    }
    if (i < a->len)
        return 1;
    if (j < b->len)
        return -1;
    return tert;
}

static int json_entry(trender *r, tval v, const tjson_opts *o, tstr *buf, int depth, int line,
                      tstr *key, const char *pad, size_t padn)
{
    if (pad && tpl_buf_put(r, buf, pad, padn))
        return -1;
    if (key) {
        if (tpl_json_quote_into(r, key->p, key->len, o->ensure_ascii, buf))
            return -1;
        if (o->key_sep ? tpl_buf_put(r, buf, o->key_sep, o->key_sep_len)
                       : tpl_buf_put(r, buf, ": ", 2))
            return -1;
    }
    return tpl_to_json(r, v, o, buf, depth + 1, line);
}

int tpl_to_json(trender *r, tval v, const tjson_opts *o, tstr *buf, int depth, int line)
{
    if (depth > 512)
        return tpl_fail(r, VT_ERR_RANGE, line, "tojson: value nested too deeply");
    switch (v.t) {
    case TV_UNDEF:
        return o->undef_as_null ? tpl_buf_put(r, buf, "null", 4)
                                : tpl_buf_put(r, buf, "undefined", 9);
    case TV_NONE: return tpl_buf_put(r, buf, "null", 4);
    case TV_BOOL: return tpl_to_string(r, v, buf, line);
    case TV_INT:
    case TV_FLOAT: return isfinite(v.u.n) ? put_num(r, v.u.n, buf) : tpl_buf_put(r, buf, "null", 4);
    case TV_STR: return tpl_json_quote_into(r, v.u.s->p, v.u.s->len, o->ensure_ascii, buf);
    case TV_FUNC:
        return tpl_fail(r, VT_ERR_FORMAT, line, "Cannot convert to JSON: FunctionValue");
    default: break;
    }
    if (v.t == TV_LIST && v.u.l->tuple) /* as the oracle: tuples have no JSON form */
        return tpl_fail(r, VT_ERR_FORMAT, line, "Cannot convert to JSON: TupleValue");
    bool is_list = v.t == TV_LIST;
    size_t n = is_list ? v.u.l->n : v.u.d->n;
    const char *isep = o->item_sep ? o->item_sep : o->indent > 0 ? "," : ", ";
    size_t isepn = o->item_sep ? o->item_sep_len : strlen(isep);
    bool ind = o->indent > 0 && n > 0;
    /* padding: "\n" + indent * depth spaces (base), + indent more (children) */
    tstr *pad = NULL;
    if (o->indent > 0) {
        pad = tpl_buf_new(r, 16);
        if (!pad || tpl_buf_putc(r, pad, '\n') ||
            put_spaces(r, pad, (long)o->indent * (depth + 1)))
            return -1;
    }
    size_t childn = pad ? pad->len : 0, basen = pad ? pad->len - (size_t)o->indent : 0;
    size_t *order = NULL;
    if (!is_list && o->sort_keys && n > 1) {
        order = malloc(n * sizeof *order);
        if (!order)
            return tpl_nomem(r);
        for (size_t i = 0; i < n; i++) { /* insertion sort: stable, keys are few */
            size_t j = i;
            while (j > 0 && locale_cmp(v.u.d->k[order[j - 1]], v.u.d->k[i]) > 0) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = i;
        }
    }
    int rc = tpl_buf_putc(r, buf, is_list ? '[' : '{');
    for (size_t i = 0; i < n && !rc; i++) {
        size_t e = order ? order[i] : i;
        if (i)
            rc = tpl_buf_put(r, buf, isep, isepn);
        if (!rc)
            rc = json_entry(r, is_list ? v.u.l->v[e] : v.u.d->v[e], o, buf, depth, line,
                            is_list ? NULL : v.u.d->k[e], ind ? pad->p : NULL, childn);
    }
    free(order);
    if (!rc && ind)
        rc = tpl_buf_put(r, buf, pad->p, basen);
    if (!rc)
        rc = tpl_buf_putc(r, buf, is_list ? ']' : '}');
    if (pad)
        tpl_obj_decref(r, &pad->h);
    return rc;
}

/* ---------------------------------------------------------------- semantics */

bool tpl_truthy(tval v)
{
    switch (v.t) {
    case TV_UNDEF:
    case TV_NONE: return false;
    case TV_BOOL: return v.u.b;
    case TV_INT:
    case TV_FLOAT: return v.u.n != 0 && !isnan(v.u.n);
    case TV_STR: return v.u.s->len > 0;
    case TV_LIST: return v.u.l->n > 0;
    case TV_DICT: return v.u.d->n > 0;
    default: return true;
    }
}

bool tpl_raw_truthy(tval v)
{
    if (v.t == TV_LIST || v.t == TV_DICT)
        return true;
    return tpl_truthy(v);
}

/* JavaScript's categories of raw values */
enum { C_UNDEF, C_NULL, C_BOOL, C_NUM, C_STR, C_OBJ };

static int cat(tval v)
{
    switch (v.t) {
    case TV_UNDEF: return C_UNDEF;
    case TV_NONE: return C_NULL;
    case TV_BOOL: return C_BOOL;
    case TV_INT:
    case TV_FLOAT: return C_NUM;
    case TV_STR: return C_STR;
    default: return C_OBJ;
    }
}

bool tpl_strict_eq(tval a, tval b)
{
    int ca = cat(a), cb = cat(b);
    if (ca != cb)
        return false;
    switch (ca) {
    case C_BOOL: return a.u.b == b.u.b;
    case C_NUM: return a.u.n == b.u.n;
    case C_STR: return a.u.s->len == b.u.s->len && !memcmp(a.u.s->p, b.u.s->p, a.u.s->len);
    case C_OBJ: return a.u.o == b.u.o;
    default: return true;
    }
}

int tpl_loose_eq(trender *r, tval a, tval b, bool *res)
{
    tstr *tmp = NULL; /* ToPrimitive of an object operand */
    *res = false;
    for (int round = 0; round < 4; round++) {
        int ca = cat(a), cb = cat(b);
        if (ca == cb) {
            *res = tpl_strict_eq(a, b);
            break;
        }
        if ((ca == C_UNDEF || ca == C_NULL) || (cb == C_UNDEF || cb == C_NULL)) {
            *res = (ca == C_UNDEF || ca == C_NULL) && (cb == C_UNDEF || cb == C_NULL);
            break;
        }
        if (ca == C_NUM && cb == C_STR) {
            *res = a.u.n == tpl_js_to_number(b.u.s->p, b.u.s->len);
            break;
        }
        if (ca == C_STR && cb == C_NUM) {
            *res = b.u.n == tpl_js_to_number(a.u.s->p, a.u.s->len);
            break;
        }
        if (ca == C_BOOL) {
            a = tv_int(a.u.b);
            continue;
        }
        if (cb == C_BOOL) {
            b = tv_int(b.u.b);
            continue;
        }
        /* an object against a number or a string: compare its string form */
        tval *obj = ca == C_OBJ ? &a : &b;
        if (obj->t == TV_FUNC || tmp)
            break;
        tmp = tpl_buf_new(r, 16);
        if (!tmp || tpl_to_raw_string(r, *obj, tmp, 0))
            return -1;
        *obj = tv_str(tmp);
    }
    if (tmp)
        tpl_obj_decref(r, &tmp->h);
    return 0;
}

static bool numeric_like(tval v) { return v.t == TV_INT || v.t == TV_FLOAT || v.t == TV_BOOL; }
static double numeric_value(tval v) { return v.t == TV_BOOL ? (double)v.u.b : v.u.n; }

int tpl_compare(trender *r, tval a, tval b, bool case_sensitive, int *res, int line)
{
    if (a.t == TV_NONE && b.t == TV_NONE) {
        *res = 0;
        return 0;
    }
    if (a.t == TV_UNDEF && b.t == TV_UNDEF) {
        *res = 0;
        return 0;
    }
    if (a.t == TV_NONE || b.t == TV_NONE || a.t == TV_UNDEF || b.t == TV_UNDEF)
        return tpl_fail(r, VT_ERR_FORMAT, line, "Cannot compare %s with %s", tpl_type_name(a),
                        tpl_type_name(b));
    if (numeric_like(a) && numeric_like(b)) {
        double x = numeric_value(a), y = numeric_value(b);
        *res = x < y ? -1 : x > y ? 1 : 0;
        return 0;
    }
    if (strcmp(tpl_type_name(a), tpl_type_name(b)))
        return tpl_fail(r, VT_ERR_FORMAT, line, "Cannot compare different types: %s and %s",
                        tpl_type_name(a), tpl_type_name(b));
    if (a.t != TV_STR)
        return tpl_fail(r, VT_ERR_FORMAT, line, "Cannot compare type: %s", tpl_type_name(a));
    if (case_sensitive) {
        *res = tpl_u16_cmp(a.u.s->p, a.u.s->len, b.u.s->p, b.u.s->len);
        return 0;
    }
    tstr *la = tpl_buf_new(r, a.u.s->len), *lb = la ? tpl_buf_new(r, b.u.s->len) : NULL;
    if (!lb || tpl_case_map(r, a.u.s->p, a.u.s->len, false, la) ||
        tpl_case_map(r, b.u.s->p, b.u.s->len, false, lb))
        return -1;
    *res = tpl_u16_cmp(la->p, la->len, lb->p, lb->len);
    tpl_obj_decref(r, &la->h);
    tpl_obj_decref(r, &lb->h);
    return 0;
}
