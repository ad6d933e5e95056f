/*
 * template_methods.c - what a value offers through `.name` and `[index]`,
 * and the built-in functions. Dicts: their keys, then the methods get,
 * items, keys, values, dictsort. Lists: elements by (negative) index, and
 * `length`. Strings: characters by UTF-16 index, `length`, and the methods
 * upper, lower, strip, lstrip, rstrip (all three ignore their argument and
 * strip whitespace, as the oracle does), title, capitalize, startswith,
 * endswith (a string or a tuple), split (Python's rules), replace (with an
 * optional count). Other values have no attributes: the result is undefined.
 * Globals: true/false/none (and True/False/None), namespace(), range(),
 * raise_exception() and strftime_now() (%Y %m %d %b %B %H %M %%, English
 * month names, local time of tpl_options.now). Also slicing ([a:b:c] on
 * lists and on strings by code point) and string replace.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "template/template_int.h"

static const char *const str_methods[] = {"upper", "lower", "strip", "title", "capitalize",
                                          "rstrip", "lstrip", "startswith", "endswith", "split",
                                          "replace"};
static const char *const dict_methods[] = {"get", "items", "keys", "values", "dictsort"};

static int find_name(const char *const *names, int n, tstr *s)
{
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == s->len && !memcmp(names[i], s->p, s->len))
            return i;
    return -1;
}

static int method(trender *r, tval self, int id, tval *out)
{
    tfunc *f = tpl_func_new(r, FN_METHOD, id);
    if (!f)
        return -1;
    tpl_incref(self);
    f->self = self;
    *out = tv_func(f);
    return 0;
}

/* The UTF-16 unit at index i of s as a one-character string (half of a
 * surrogate pair reads as U+FFFD); undefined when out of range. */
static int str_at(trender *r, tstr *s, double idx, tval *out)
{
    int64_t n = tpl_u16_len(s);
    if (isnan(idx))
        idx = 0;
    idx = trunc(idx);
    if (idx < 0)
        idx += (double)n;
    if (idx < 0 || idx >= (double)n) {
        *out = tv_undef();
        return 0;
    }
    int64_t want = (int64_t)idx, k = 0;
    for (size_t i = 0; i < s->len;) {
        size_t st = i;
        int cp = tpl_utf8_decode(s->p, s->len, &i);
        int w = cp >= 0x10000 ? 2 : 1;
        if (want < k + w) {
            tstr *c = w == 2 ? tpl_str_new(r, "\xef\xbf\xbd", 3) : tpl_str_new(r, s->p + st, i - st);
            if (!c)
                return -1;
            *out = tv_str(c);
            return 0;
        }
        k += w;
    }
    *out = tv_undef();
    return 0;
}

int tpl_member(trender *r, tval obj, tval prop, tval *out, int line)
{
    if (obj.t == TV_DICT || obj.t == TV_NS) {
        if (prop.t != TV_STR)
            return tpl_fail(r, VT_ERR_FORMAT, line, "Cannot access property with non-string: got %s",
                            tpl_type_name(prop));
        tval *v = tpl_dict_get(obj.u.d, prop.u.s->p, prop.u.s->len);
        if (v) {
            *out = *v;
            tpl_incref(*v);
            return 0;
        }
        int m = obj.t == TV_DICT ? find_name(dict_methods, 5, prop.u.s) : -1;
        if (m >= 0)
            return method(r, obj, M_GET + m, out);
        *out = tv_undef();
        return 0;
    }
    if (obj.t == TV_LIST || obj.t == TV_STR) {
        if (prop.t == TV_INT) {
            if (obj.t == TV_STR)
                return str_at(r, obj.u.s, prop.u.n, out);
            double idx = isnan(prop.u.n) ? 0 : trunc(prop.u.n), n = (double)obj.u.l->n;
            if (idx < 0)
                idx += n;
            *out = idx >= 0 && idx < n ? obj.u.l->v[(size_t)idx] : tv_undef();
            tpl_incref(*out);
            return 0;
        }
        if (prop.t != TV_STR)
            return tpl_fail(r, VT_ERR_FORMAT, line,
                            "Cannot access property with non-string/non-number: got %s",
                            tpl_type_name(prop));
        if (prop.u.s->len == 6 && !memcmp(prop.u.s->p, "length", 6)) {
            *out = tv_int(obj.t == TV_LIST ? (double)obj.u.l->n : (double)tpl_u16_len(obj.u.s));
            return 0;
        }
        int m = obj.t == TV_STR ? find_name(str_methods, M_STR_END, prop.u.s) : -1;
        if (m >= 0)
            return method(r, obj, m, out);
        *out = tv_undef();
        return 0;
    }
    if (prop.t != TV_STR)
        return tpl_fail(r, VT_ERR_FORMAT, line, "Cannot access property with non-string: got %s",
                        tpl_type_name(prop));
    *out = tv_undef();
    return 0;
}

/* ---------------------------------------------------------------- strings */

int tpl_str_replace(trender *r, tstr *s, tstr *from, tstr *to, double count, tval *out)
{
    if (count == 0) {
        tpl_incref(tv_str(s));
        *out = tv_str(s);
        return 0;
    }
    double left = count < 0 || isnan(count) ? INFINITY : count;
    tstr *b = tpl_buf_new(r, s->len);
    if (!b)
        return -1;
    if (from->len == 0) { /* an empty pattern matches at every code point boundary */
        for (size_t i = 0;;) {
            if (left > 0) {
                left--;
                if (tpl_buf_put(r, b, to->p, to->len))
                    return -1;
            }
            if (i >= s->len)
                break;
            size_t st = i;
            tpl_utf8_decode(s->p, s->len, &i);
            if (tpl_buf_put(r, b, s->p + st, i - st))
                return -1;
        }
    } else {
        size_t i = 0;
        while (i < s->len) {
            const char *hit = left > 0 ? memmem(s->p + i, s->len - i, from->p, from->len) : NULL;
            size_t end = hit ? (size_t)(hit - s->p) : s->len;
            if (tpl_buf_put(r, b, s->p + i, end - i))
                return -1;
            if (!hit)
                break;
            if (tpl_buf_put(r, b, to->p, to->len))
                return -1;
            left--;
            i = end + from->len;
        }
    }
    *out = tv_str(b);
    return 0;
}

static int str_title(trender *r, tstr *s, tval *out)
{
    tstr *b = tpl_str_new(r, s->p, s->len);
    if (!b)
        return -1;
    for (size_t i = 0; i < b->len; i++) {
        char c = b->p[i], prev = i ? b->p[i - 1] : ' ';
        bool w = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        bool pw = (prev >= 'a' && prev <= 'z') || (prev >= 'A' && prev <= 'Z') ||
                  (prev >= '0' && prev <= '9') || prev == '_';
        if (w && !pw && c >= 'a' && c <= 'z')
            b->p[i] = (char)(c - 32);
    }
    *out = tv_str(b);
    return 0;
}

static int str_capitalize(trender *r, tstr *s, tval *out)
{
    tstr *b = tpl_buf_new(r, s->len + 2);
    if (!b)
        return -1;
    size_t i = 0;
    if (s->len) {
        int cp = tpl_utf8_decode(s->p, s->len, &i);
        if (cp >= 0x10000 ? tpl_buf_put(r, b, s->p, i) : tpl_case_map(r, s->p, i, true, b))
            return -1;
    }
    if (tpl_buf_put(r, b, s->p + i, s->len - i))
        return -1;
    *out = tv_str(b);
    return 0;
}

static bool affix(tstr *s, tstr *a, bool start)
{
    if (a->len > s->len)
        return false;
    return !memcmp(start ? s->p : s->p + s->len - a->len, a->p, a->len);
}

static int str_affix(trender *r, tstr *s, tlist *args, bool start, tval *out, int line)
{
    const char *name = start ? "startswith" : "endswith";
    if (args->n == 0)
        return tpl_fail(r, VT_ERR_FORMAT, line, "%s() requires at least one argument", name);
    tval p = args->v[0];
    if (p.t == TV_STR) {
        *out = tv_bool(affix(s, p.u.s, start));
        return 0;
    }
    if (p.t != TV_LIST)
        return tpl_fail(r, VT_ERR_FORMAT, line,
                        "%s() argument must be a string or tuple of strings", name);
    for (size_t i = 0; i < p.u.l->n; i++) {
        if (p.u.l->v[i].t != TV_STR)
            return tpl_fail(r, VT_ERR_FORMAT, line, "%s() tuple elements must be strings", name);
        if (affix(s, p.u.l->v[i].u.s, start)) {
            *out = tv_bool(true);
            return 0;
        }
    }
    *out = tv_bool(false);
    return 0;
}

static int push_str(trender *r, tlist *l, const char *p, size_t n)
{
    tstr *s = tpl_str_new(r, p, n);
    return !s || tpl_list_push(r, l, tv_str(s)) ? -1 : 0;
}

static int str_split(trender *r, tstr *s, tlist *args, tdict *kw, tval *out, int line)
{
    tval sep = args->n > 0 ? args->v[0] : tv_none();
    tval max = args->n > 1 ? args->v[1] : tv_int(-1);
    if (kw && args->n < 2) /* the oracle sees the keyword arguments as one more argument */
        return tpl_fail(r, VT_ERR_FORMAT, line,
                        args->n == 0 ? "sep argument must be a string or null"
                                     : "maxsplit argument must be a number");
    if (sep.t != TV_STR && sep.t != TV_NONE)
        return tpl_fail(r, VT_ERR_FORMAT, line, "sep argument must be a string or null");
    if (max.t != TV_INT)
        return tpl_fail(r, VT_ERR_FORMAT, line, "maxsplit argument must be a number");
    double m = max.u.n;
    tlist *l = tpl_list_new(r, 4);
    if (!l)
        return -1;
    *out = tv_list(l);
    if (sep.t == TV_NONE) {
        size_t i = tpl_trim_start(s->p, s->len);
        while (i < s->len) {
            size_t st = i, k;
            while (i < s->len) { /* a run of non-whitespace */
                k = i;
                if (tpl_js_space((uint32_t)tpl_utf8_decode(s->p, s->len, &k)))
                    break;
                i = k;
            }
            if (m != -1 && (double)l->n >= m)
                return push_str(r, l, s->p + st, s->len - st);
            if (push_str(r, l, s->p + st, i - st))
                return -1;
            i += tpl_trim_start(s->p + i, s->len - i);
        }
        return 0;
    }
    tstr *sp = sep.u.s;
    if (sp->len == 0)
        return tpl_fail(r, VT_ERR_FORMAT, line, "empty separator");
    /* split everything, then (as JavaScript's splice) join the tail back */
    size_t nparts = 1;
    for (const char *p = s->p, *e = s->p + s->len; (p = memmem(p, (size_t)(e - p), sp->p, sp->len));
         p += sp->len)
        nparts++;
    double keep = (double)nparts;
    if (m != -1 && (double)nparts > m)
        keep = m < 0 ? fmax((double)nparts + m, 0) : fmin(m, (double)nparts);
    size_t i = 0;
    for (size_t part = 0; part < nparts; part++) {
        if ((double)part >= keep)
            return push_str(r, l, s->p + i, s->len - i);
        const char *hit = memmem(s->p + i, s->len - i, sp->p, sp->len);
        size_t end = hit ? (size_t)(hit - s->p) : s->len;
        if (push_str(r, l, s->p + i, end - i))
            return -1;
        i = end + sp->len;
    }
    return 0;
}

static int call_str_method(trender *r, tfunc *f, tlist *args, tdict *kw, tval *out, int line)
{
    tstr *s = f->self.u.s, *b;
    switch (f->id) {
    case M_UPPER:
    case M_LOWER:
        if (!(b = tpl_buf_new(r, s->len)) || tpl_case_map(r, s->p, s->len, f->id == M_UPPER, b))
            return -1;
        *out = tv_str(b);
        return 0;
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP: {
        size_t a = f->id == M_RSTRIP ? 0 : tpl_trim_start(s->p, s->len);
        size_t e = f->id == M_LSTRIP ? s->len : tpl_trim_end(s->p, s->len);
        if (e < a)
            e = a;
        if (!(b = tpl_str_new(r, s->p + a, e - a)))
            return -1;
        *out = tv_str(b);
        return 0;
    }
    case M_TITLE: return str_title(r, s, out);
    case M_CAPITALIZE: return str_capitalize(r, s, out);
    case M_STARTSWITH:
    case M_ENDSWITH: return str_affix(r, s, args, f->id == M_STARTSWITH, out, line);
    case M_SPLIT: return str_split(r, s, args, kw, out, line);
    case M_REPLACE: {
        size_t n = args->n + (kw ? 1 : 0);
        if (n < 2)
            return tpl_fail(r, VT_ERR_FORMAT, line, "replace() requires at least two arguments");
        if (args->n < 2 || args->v[0].t != TV_STR || args->v[1].t != TV_STR)
            return tpl_fail(r, VT_ERR_FORMAT, line, "replace() arguments must be strings");
        tval count = tv_none();
        if (args->n > 2) {
            count = args->v[2];
        } else if (kw) {
            tval *c = tpl_dict_get(kw, "count", 5);
            count = c ? *c : tv_none();
        }
        if (count.t != TV_INT && count.t != TV_NONE)
            return tpl_fail(r, VT_ERR_FORMAT, line, "replace() count argument must be a number or null");
        return tpl_str_replace(r, s, args->v[0].u.s, args->v[1].u.s,
                               count.t == TV_INT ? count.u.n : -1, out);
    }
    }
    return tpl_fail(r, VT_ERR_INTERNAL, line, "unknown string method");
}

/* ---------------------------------------------------------------- dicts */

static int pair(trender *r, tstr *k, tval v, tval *out)
{
    tlist *p = tpl_list_new(r, 2);
    if (!p)
        return -1;
    tpl_incref(tv_str(k));
    tpl_incref(v);
    if (tpl_list_push(r, p, tv_str(k)) || tpl_list_push(r, p, v))
        return -1;
    *out = tv_list(p);
    return 0;
}

/* Stable merge sort of values with a comparator that may fail. */
typedef struct {
    trender *r;
    int line;
    bool cs, rev;
    int index; /* dictsort: element of the pair compared; -1: the value itself */
    const char *attr; /* sort(attribute=...): dotted path, NULL if none */
    size_t attr_len;
} sortctx;

static tval sort_key(const sortctx *c, tval v);

static int merge_sort(const sortctx *c, tval *v, tval *tmp, size_t n)
{
    if (n < 2)
        return 0;
    size_t h = n / 2;
    if (merge_sort(c, v, tmp, h) || merge_sort(c, v + h, tmp, n - h))
        return -1;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int res;
        if (tpl_compare(c->r, sort_key(c, v[j]), sort_key(c, v[i]), c->cs, &res, c->line))
            return -1;
        if (c->rev)
            res = -res;
        tmp[k++] = res < 0 ? v[j++] : v[i++];
    }
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
    return 0;
}

/* getAttributeValue: a dotted path through dicts (keys) and lists (indices). */
tval tpl_attr_path(tval item, const char *path, size_t len)
{
    size_t i = 0;
    while (i <= len) {
        const char *dot = memchr(path + i, '.', len - i);
        size_t e = dot ? (size_t)(dot - path) : len;
        if (item.t == TV_DICT || item.t == TV_NS) {
            tval *v = tpl_dict_get(item.u.d, path + i, e - i);
            item = v ? *v : tv_undef();
        } else if (item.t == TV_LIST) {
            double idx = tpl_js_parse_int(path + i, e - i);
            if (isnan(idx) || idx < 0 || idx >= (double)item.u.l->n)
                return tv_undef();
            item = item.u.l->v[(size_t)idx];
        } else {
            return tv_undef();
        }
        i = e + 1;
    }
    return item;
}

static tval sort_key(const sortctx *c, tval v)
{
    if (c->index >= 0)
        return v.u.l->v[c->index];
    if (c->attr)
        return tpl_attr_path(v, c->attr, c->attr_len);
    return v;
}

int tpl_sort_values(trender *r, tval *v, size_t n, bool cs, bool rev, const char *attr,
                    size_t attr_len, int index, int line)
{
    sortctx c = {r, line, cs, rev, index, attr, attr_len};
    tval *tmp = n ? malloc(n * sizeof *tmp) : NULL;
    if (n && !tmp)
        return tpl_nomem(r);
    int rc = merge_sort(&c, v, tmp, n);
    free(tmp);
    return rc;
}

static int arg_or_kw(tlist *args, size_t i, tdict *kw, const char *name, tval def, tval *out)
{
    if (args->n > i) {
        *out = args->v[i];
        return 0;
    }
    tval *v = kw ? tpl_dict_get(kw, name, strlen(name)) : NULL;
    *out = v ? *v : def;
    return 0;
}

static int call_dict_method(trender *r, tfunc *f, tlist *args, tdict *kw, tval *out, int line)
{
    tdict *d = f->self.u.d;
    switch (f->id) {
    case M_GET: {
        if (args->n == 0 || args->v[0].t != TV_STR)
            return tpl_fail(r, VT_ERR_FORMAT, line, "Object key must be a string: got %s",
                            args->n ? tpl_type_name(args->v[0]) : "nothing");
        tval *v = tpl_dict_get(d, args->v[0].u.s->p, args->v[0].u.s->len);
        *out = v ? *v : args->n > 1 ? args->v[1] : kw ? tv_dict(kw) : tv_none();
        tpl_incref(*out);
        return 0;
    }
    case M_ITEMS:
    case M_KEYS:
    case M_VALUES: {
        tlist *l = tpl_list_new(r, d->n);
        if (!l)
            return -1;
        *out = tv_list(l);
        for (size_t i = 0; i < d->n; i++) {
            tval v;
            if (f->id == M_ITEMS) {
                if (pair(r, d->k[i], d->v[i], &v))
                    return -1;
            } else {
                v = f->id == M_KEYS ? tv_str(d->k[i]) : d->v[i];
                tpl_incref(v);
            }
            if (tpl_list_push(r, l, v))
                return -1;
        }
        return 0;
    }
    case M_DICTSORT: {
        tval cs, by, rev;
        arg_or_kw(args, 0, kw, "case_sensitive", tv_bool(false), &cs);
        arg_or_kw(args, 1, kw, "by", tv_undef(), &by);
        arg_or_kw(args, 2, kw, "reverse", tv_bool(false), &rev);
        if (cs.t != TV_BOOL)
            return tpl_fail(r, VT_ERR_FORMAT, line, "case_sensitive must be a boolean");
        int index = 0;
        if (by.t != TV_UNDEF) {
            if (by.t != TV_STR)
                return tpl_fail(r, VT_ERR_FORMAT, line, "by must be a string");
            if (by.u.s->len == 5 && !memcmp(by.u.s->p, "value", 5))
                index = 1;
            else if (by.u.s->len != 3 || memcmp(by.u.s->p, "key", 3))
                return tpl_fail(r, VT_ERR_FORMAT, line, "by must be either 'key' or 'value'");
        }
        if (rev.t != TV_BOOL)
            return tpl_fail(r, VT_ERR_FORMAT, line, "reverse must be a boolean");
        tlist *l = tpl_list_new(r, d->n);
        if (!l)
            return -1;
        *out = tv_list(l);
        for (size_t i = 0; i < d->n; i++) {
            tval v;
            if (pair(r, d->k[i], d->v[i], &v) || tpl_list_push(r, l, v))
                return -1;
        }
        return tpl_sort_values(r, l->v, l->n, cs.u.b, rev.u.b, NULL, 0, index, line);
    }
    }
    return tpl_fail(r, VT_ERR_INTERNAL, line, "unknown dict method");
}

/* ---------------------------------------------------------------- globals */

static int g_namespace(trender *r, tlist *args, tdict *kw, tval *out, int line)
{
    if (args->n > 1)
        return tpl_fail(r, VT_ERR_FORMAT, line, "namespace expected at most 1 argument, got %zu",
                        args->n);
    tdict *ns = tpl_dict_new(r, true);
    if (!ns)
        return -1;
    *out = tv_dict(ns);
    if (args->n == 1) {
        tval src = args->v[0];
        if (src.t == TV_DICT) {
            for (size_t i = 0; i < src.u.d->n; i++) {
                tpl_incref(src.u.d->v[i]);
                if (tpl_dict_set(r, ns, src.u.d->k[i], src.u.d->v[i]))
                    return -1;
            }
        } else if (src.t == TV_LIST) {
            for (size_t i = 0; i < src.u.l->n; i++) {
                tval p = src.u.l->v[i];
                if (p.t != TV_LIST || p.u.l->n != 2)
                    return tpl_fail(r, VT_ERR_FORMAT, line,
                                    "namespace expected an object or an iterable of [key, value] pairs");
                if (p.u.l->v[0].t != TV_STR)
                    return tpl_fail(r, VT_ERR_FORMAT, line, "namespace keys must be strings");
                tpl_incref(p.u.l->v[1]);
                if (tpl_dict_set(r, ns, p.u.l->v[0].u.s, p.u.l->v[1]))
                    return -1;
            }
        } else {
            return tpl_fail(r, VT_ERR_FORMAT, line, "'%s' object is not iterable", tpl_type_name(src));
        }
    }
    for (size_t i = 0; kw && i < kw->n; i++) {
        tpl_incref(kw->v[i]);
        if (tpl_dict_set(r, ns, kw->k[i], kw->v[i]))
            return -1;
    }
    return 0;
}

static int g_raise(trender *r, tlist *args, tdict *kw, int line)
{
    tstr *msg = tpl_buf_new(r, 64);
    if (!msg)
        return -1;
    if (args->n > 0 && args->v[0].t != TV_UNDEF) {
        if (tpl_to_raw_string(r, args->v[0], msg, line))
            return -1;
    } else if (args->n == 0 && kw) {
        if (tpl_buf_put(r, msg, "[object Map]", 12))
            return -1;
    }
    r->err = vt_fail(VT_ERR_INVALID, "%s", msg->p);
    return -1;
}

static int g_range(trender *r, tlist *args, tval *out, int line)
{
    double a[3] = {0, 0, 1};
    if (args->n < 1 || args->n > 3)
        return tpl_fail(r, VT_ERR_FORMAT, line, "range() takes 1 to 3 numbers, got %zu", args->n);
    for (size_t i = 0; i < args->n; i++) {
        if (!tv_is_num(args->v[i]))
            return tpl_fail(r, VT_ERR_FORMAT, line, "range() arguments must be numbers, got %s",
                            tpl_type_name(args->v[i]));
        a[i] = args->v[i].u.n;
    }
    double start = args->n == 1 ? 0 : a[0], stop = args->n == 1 ? a[0] : a[1], step = a[2];
    if (step == 0)
        return tpl_fail(r, VT_ERR_FORMAT, line, "range() step must not be zero");
    double count = isnan(start) || isnan(stop) || isnan(step) ? 0 : ceil((stop - start) / step);
    if (!(count <= (double)(r->max_mem / sizeof(tval))))
        return tpl_fail(r, VT_ERR_RANGE, line, "range() of %g numbers is too long", count);
    tlist *l = tpl_list_new(r, count > 0 ? (size_t)count : 0);
    if (!l)
        return -1;
    *out = tv_list(l);
    for (double x = start; step > 0 ? x < stop : x > stop; x += step) {
        if (tpl_check_steps(r, line) ||
            tpl_list_push(r, l, x == floor(x) && isfinite(x) ? tv_int(x) : tv_float(x)))
            return -1;
    }
    return 0;
}

static int g_strftime(trender *r, tlist *args, tval *out, int line)
{
    static const char *const months[] = {"January", "February", "March", "April", "May", "June",
                                         "July", "August", "September", "October", "November",
                                         "December"};
    if (args->n < 1 || args->v[0].t != TV_STR)
        return tpl_fail(r, VT_ERR_FORMAT, line, "strftime_now() takes a format string");
    time_t now = r->now ? (time_t)r->now : time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm))
        return tpl_fail(r, VT_ERR_RANGE, line, "strftime_now(): time out of range");
    tstr *f = args->v[0].u.s, *b = tpl_buf_new(r, f->len + 16);
    if (!b)
        return -1;
    for (size_t i = 0; i < f->len; i++) {
        char tmp[32];
        const char *put = NULL;
        int k = 0;
        if (f->p[i] == '%' && i + 1 < f->len) {
            switch (f->p[i + 1]) {
            case 'Y': k = snprintf(tmp, sizeof tmp, "%d", tm.tm_year + 1900); break;
            case 'm': k = snprintf(tmp, sizeof tmp, "%02d", tm.tm_mon + 1); break;
            case 'd': k = snprintf(tmp, sizeof tmp, "%02d", tm.tm_mday); break;
            case 'H': k = snprintf(tmp, sizeof tmp, "%02d", tm.tm_hour); break;
            case 'M': k = snprintf(tmp, sizeof tmp, "%02d", tm.tm_min); break;
            case 'B': put = months[tm.tm_mon]; break;
            case 'b': k = snprintf(tmp, sizeof tmp, "%.3s", months[tm.tm_mon]); break;
            case '%': put = "%"; break;
            default: break;
            }
        }
        if (put || k) {
            if (put ? tpl_buf_put(r, b, put, strlen(put)) : tpl_buf_put(r, b, tmp, (size_t)k))
                return -1;
            i++;
        } else if (tpl_buf_putc(r, b, f->p[i])) {
            return -1;
        }
    }
    *out = tv_str(b);
    return 0;
}

int tpl_call_builtin(trender *r, tfunc *f, tlist *args, tdict *kw, tval *out, int line)
{
    if (f->kind == FN_METHOD)
        return f->id < M_STR_END ? call_str_method(r, f, args, kw, out, line)
                                 : call_dict_method(r, f, args, kw, out, line);
    switch (f->id) {
    case G_NAMESPACE: return g_namespace(r, args, kw, out, line);
    case G_RAISE: return g_raise(r, args, kw, line);
    case G_RANGE: return g_range(r, args, out, line);
    case G_STRFTIME: return g_strftime(r, args, out, line);
    }
    return tpl_fail(r, VT_ERR_INTERNAL, line, "unknown function");
}

int tpl_define_globals(trender *r, tenv *g)
{
    static const struct {
        const char *name;
        int t;
        bool b;
    } consts[] = {{"false", TV_BOOL, false}, {"true", TV_BOOL, true}, {"none", TV_NONE, 0},
                  {"True", TV_BOOL, true},   {"False", TV_BOOL, false}, {"None", TV_NONE, 0}};
    static const char *const fns[] = {"namespace", "raise_exception", "range", "strftime_now"};
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
        tstr *k = tpl_str_new(r, consts[i].name, strlen(consts[i].name));
        tval v = consts[i].t == TV_BOOL ? tv_bool(consts[i].b) : tv_none();
        if (!k || tpl_dict_set(r, g->vars, k, v))
            return -1;
        tpl_obj_decref(r, &k->h);
    }
    static const int ids[] = {G_NAMESPACE, G_RAISE, G_RANGE, G_STRFTIME};
    for (int i = 0; i < 4; i++) {
        tstr *k = tpl_str_new(r, fns[i], strlen(fns[i]));
        tfunc *f = tpl_func_new(r, FN_GLOBAL, ids[i]);
        if (!k || !f || tpl_dict_set(r, g->vars, k, tv_func(f)))
            return -1;
        tpl_obj_decref(r, &k->h);
    }
    return 0;
}

/* ---------------------------------------------------------------- slices */

int tpl_slice(trender *r, tval obj, tval start, tval stop, tval step, tval *out, int line)
{
    if (obj.t != TV_LIST && obj.t != TV_STR)
        return tpl_fail(r, VT_ERR_FORMAT, line, "Slice object must be an array or string");
    const char *names[3] = {"start", "stop", "step"};
    tval parts[3] = {start, stop, step};
    for (int i = 0; i < 3; i++)
        if (parts[i].t != TV_INT && parts[i].t != TV_UNDEF)
            return tpl_fail(r, VT_ERR_FORMAT, line, "Slice %s must be numeric or undefined",
                            names[i]);
    /* code point offsets of a string */
    size_t n, *offs = NULL;
    if (obj.t == TV_STR) {
        tstr *s = obj.u.s;
        if (!(offs = malloc((s->len + 1) * sizeof *offs)))
            return tpl_nomem(r);
        n = 0;
        for (size_t i = 0; i < s->len;) {
            offs[n++] = i;
            tpl_utf8_decode(s->p, s->len, &i);
        }
        offs[n] = s->len;
    } else {
        n = obj.u.l->n;
    }
    double len = (double)n, st = step.t == TV_INT ? step.u.n : 1;
    double dir = isnan(st) ? NAN : st > 0 ? 1 : st < 0 ? -1 : 0, a, b;
    if (dir >= 0) {
        a = start.t == TV_INT ? start.u.n : 0;
        b = stop.t == TV_INT ? stop.u.n : len;
        a = a < 0 ? fmax(len + a, 0) : fmin(a, len);
        b = b < 0 ? fmax(len + b, 0) : fmin(b, len);
    } else {
        a = start.t == TV_INT ? start.u.n : len - 1;
        b = stop.t == TV_INT ? stop.u.n : -1;
        a = a < 0 ? fmax(len + a, -1) : fmin(a, len - 1);
        b = b < -1 ? fmax(len + b, -1) : fmin(b, len - 1);
    }
    tlist *l = NULL;
    tstr *sb = NULL;
    if (obj.t == TV_LIST ? !(l = tpl_list_new(r, 0)) : !(sb = tpl_buf_new(r, 16))) {
        free(offs);
        return -1;
    }
    int rc = 0;
    for (double i = a; dir * i < dir * b && !rc; i += st) {
        size_t k = (size_t)i;
        if (l) {
            tpl_incref(obj.u.l->v[k]);
            rc = tpl_list_push(r, l, obj.u.l->v[k]);
        } else {
            rc = tpl_buf_put(r, sb, obj.u.s->p + offs[k], offs[k + 1] - offs[k]);
        }
    }
    free(offs);
    if (rc)
        return -1;
    *out = l ? tv_list(l) : tv_str(sb);
    return 0;
}
