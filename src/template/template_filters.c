/*
 * template_filters.c - filters (`x | name(args)`) and tests (`x is name`).
 *
 * Filters, by the operand's type as the oracle dispatches them: any value:
 * safe, tojson(indent, ensure_ascii, sort_keys, separators), default/d;
 * lists: list, first, last, length/count, reverse, sort(reverse,
 * case_sensitive, attribute), join(sep), string, unique, map(attribute=,
 * default=) or map(filter), selectattr/rejectattr(attr, test, value),
 * select/reject(test, value), min, max, sum; strings: length/count, upper,
 * lower, title, capitalize, trim, indent(width, first, blank), replace,
 * join, string, int, float, list, first, last, reverse, wordcount,
 * escape/e; numbers: abs, int, float, string, round; booleans: bool, int,
 * float, string; dicts: items, length, and their methods (keys, values, get,
 * dictsort). `int` and `float` with parentheses return a number operand
 * unchanged, without them `int` floors it: the oracle's two code paths.
 * Tests: defined, undefined, none, boolean, true, false, string, number,
 * integer, float, iterable, sequence, mapping, callable, odd, even, lower,
 * upper, equalto/eq, ne, lt/le/gt/ge, divisibleby, in, sameas.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/template_int.h"

typedef struct {
    trender *r;
    tenv *env;
    const tnode *node;
    tval x;   /* operand (borrowed) */
    tlist *a; /* positional arguments */
    tdict *kw;
    bool parens;
    int line;
    const char *name;
} fctx;

static bool is_name(const char *name, const char *s) { return !strcmp(name, s); }
static int filter_apply(const fctx *c, tval *out);

static tval arg(const fctx *c, size_t i, const char *kwname, tval def)
{
    if (c->a->n > i)
        return c->a->v[i];
    tval *v = c->kw && kwname ? tpl_dict_get(c->kw, kwname, strlen(kwname)) : NULL;
    return v ? *v : def;
}

static tval kwarg(const fctx *c, const char *kwname, tval def)
{
    tval *v = c->kw ? tpl_dict_get(c->kw, kwname, strlen(kwname)) : NULL;
    return v ? *v : def;
}

static int fail_type(const fctx *c)
{
    return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "Cannot apply filter \"%s\" to type: %s", c->name,
                    tpl_type_name(c->x));
}

static int ret_str(const fctx *c, tstr *s, tval *out)
{
    (void)c;
    if (!s)
        return -1;
    *out = tv_str(s);
    return 0;
}

static int ret_same(const fctx *c, tval *out)
{
    tpl_incref(c->x);
    *out = c->x;
    return 0;
}

/* ---------------------------------------------------------------- tojson, default */

static int f_tojson(const fctx *c, tval *out)
{
    tjson_opts o = {.undef_as_null = true};
    tval ind = kwarg(c, "indent", tv_none()), asc = kwarg(c, "ensure_ascii", tv_bool(false));
    tval sk = kwarg(c, "sort_keys", tv_bool(false)), sep = kwarg(c, "separators", tv_none());
    if (ind.t != TV_INT && ind.t != TV_NONE)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "If set, indent must be a number");
    if (ind.t == TV_INT) {
        if (ind.u.n < 0 || ind.u.n > 64)
            return tpl_fail(c->r, VT_ERR_RANGE, c->line, "tojson: indent %g out of range", ind.u.n);
        o.indent = (int)ind.u.n;
    }
    if (asc.t != TV_BOOL)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "If set, ensure_ascii must be a boolean");
    if (sk.t != TV_BOOL)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "If set, sort_keys must be a boolean");
    o.ensure_ascii = asc.u.b;
    o.sort_keys = sk.u.b;
    if (sep.t == TV_LIST) {
        if (sep.u.l->n != 2 || sep.u.l->v[0].t != TV_STR || sep.u.l->v[1].t != TV_STR)
            return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "separators must be a tuple of two strings");
        o.item_sep = sep.u.l->v[0].u.s->p;
        o.item_sep_len = sep.u.l->v[0].u.s->len;
        o.key_sep = sep.u.l->v[1].u.s->p;
        o.key_sep_len = sep.u.l->v[1].u.s->len;
    } else if (sep.t != TV_NONE) {
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "If set, separators must be a tuple of two strings");
    }
    tstr *b = tpl_buf_new(c->r, 64);
    if (!b || tpl_to_json(c->r, c->x, &o, b, 0, c->line))
        return -1;
    *out = tv_str(b);
    return 0;
}

static int f_default(const fctx *c, tval *out)
{
    tval def = c->a->n > 0 ? c->a->v[0] : tv_undef();
    tval boolean = arg(c, 1, "boolean", tv_bool(false));
    if (boolean.t != TV_BOOL)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "`default` filter flag must be a boolean");
    if (c->x.t == TV_UNDEF || (boolean.u.b && !tpl_truthy(c->x))) {
        if (def.t == TV_UNDEF && c->a->n == 0)
            return ret_str(c, tpl_str_new(c->r, "", 0), out);
        tpl_incref(def);
        *out = def;
        return 0;
    }
    return ret_same(c, out);
}

/* ---------------------------------------------------------------- lists */

static int f_join(const fctx *c, tval *out)
{
    tval sep = arg(c, 0, "separator", tv_undef());
    if (sep.t != TV_UNDEF && sep.t != TV_STR)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "separator must be a string");
    tstr *b = tpl_buf_new(c->r, 64);
    if (!b)
        return -1;
    if (c->x.t == TV_STR) { /* the code points, joined */
        tstr *s = c->x.u.s;
        for (size_t i = 0; i < s->len;) {
            size_t st = i;
            tpl_utf8_decode(s->p, s->len, &i);
            if ((st && sep.t == TV_STR && tpl_buf_put(c->r, b, sep.u.s->p, sep.u.s->len)) ||
                tpl_buf_put(c->r, b, s->p + st, i - st))
                return -1;
        }
    } else {
        tlist *l = c->x.u.l;
        for (size_t i = 0; i < l->n; i++) {
            if (i && sep.t == TV_STR && tpl_buf_put(c->r, b, sep.u.s->p, sep.u.s->len))
                return -1;
            tval v = l->v[i];
            if (v.t != TV_NONE && v.t != TV_UNDEF && tpl_to_raw_string(c->r, v, b, c->line))
                return -1;
        }
    }
    *out = tv_str(b);
    return 0;
}

static int f_sort(const fctx *c, tval *out)
{
    tval rev = arg(c, 0, "reverse", tv_bool(false)), cs = arg(c, 1, "case_sensitive", tv_bool(false));
    tval at = arg(c, 2, "attribute", tv_none());
    if (rev.t != TV_BOOL)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "reverse must be a boolean");
    if (cs.t != TV_BOOL)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "case_sensitive must be a boolean");
    if (at.t != TV_STR && at.t != TV_INT && at.t != TV_NONE)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "attribute must be a string, integer, or null");
    char num[48];
    const char *path = NULL;
    size_t plen = 0;
    if (at.t == TV_STR) {
        path = at.u.s->p;
        plen = at.u.s->len;
    } else if (at.t == TV_INT) {
        plen = (size_t)tpl_js_number(at.u.n, num);
        path = num;
    }
    tlist *src = c->x.u.l, *l = tpl_list_new(c->r, src->n);
    if (!l)
        return -1;
    for (size_t i = 0; i < src->n; i++) {
        tpl_incref(src->v[i]);
        l->v[l->n++] = src->v[i];
    }
    *out = tv_list(l);
    return tpl_sort_values(c->r, l->v, l->n, cs.u.b, rev.u.b, path, plen, -1, c->line);
}

static int f_map(const fctx *c, tval *out)
{
    tlist *src = c->x.u.l, *l = tpl_list_new(c->r, src->n);
    if (!l)
        return -1;
    *out = tv_list(l);
    tval at = kwarg(c, "attribute", tv_undef());
    if (at.t == TV_UNDEF && c->a->n > 0 && c->a->v[0].t == TV_STR) {
        /* map('filter', args...): apply a filter to every item */
        const char *fname = c->a->v[0].u.s->p;
        for (size_t i = 0; i < src->n; i++) {
            tlist *rest = tpl_list_new(c->r, c->a->n);
            if (!rest)
                return -1;
            for (size_t j = 1; j < c->a->n; j++) {
                tpl_incref(c->a->v[j]);
                if (tpl_list_push(c->r, rest, c->a->v[j]))
                    return -1;
            }
            fctx sub = *c;
            sub.x = src->v[i];
            sub.a = rest;
            sub.kw = NULL;
            sub.parens = c->a->n > 1;
            sub.name = fname;
            tval v;
            if (filter_apply(&sub, &v) || tpl_list_push(c->r, l, v))
                return -1;
            tpl_obj_decref(c->r, &rest->h);
        }
        return 0;
    }
    if (at.t == TV_UNDEF)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line,
                        "`map` expressions without `attribute` set are not currently supported.");
    if (at.t != TV_STR)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "attribute must be a string");
    tval def = kwarg(c, "default", tv_undef());
    for (size_t i = 0; i < src->n; i++) {
        tval it = src->v[i];
        if (it.t != TV_DICT && it.t != TV_NS)
            return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "items in map must be an object");
        tval v = tpl_attr_path(it, at.u.s->p, at.u.s->len);
        if (v.t == TV_UNDEF)
            v = def;
        tpl_incref(v);
        if (tpl_list_push(c->r, l, v))
            return -1;
    }
    return 0;
}

/* selectattr/rejectattr (attr, test, value) and select/reject (test, value) */
static int f_select(const fctx *c, bool by_attr, bool keep, tval *out)
{
    tlist *src = c->x.u.l, *l = tpl_list_new(c->r, 0);
    if (!l)
        return -1;
    *out = tv_list(l);
    size_t k = by_attr ? 1 : 0;
    if (by_attr && (c->a->n < 1 || c->a->v[0].t != TV_STR))
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "arguments of `%s` must be strings", c->name);
    tval test = c->a->n > k ? c->a->v[k] : tv_undef();
    if (test.t != TV_UNDEF && test.t != TV_STR)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "the test of `%s` must be a string", c->name);
    const tval *targs = c->a->n > k + 1 ? &c->a->v[k + 1] : NULL;
    int ntargs = c->a->n > k + 1 ? (int)(c->a->n - k - 1) : 0;
    for (size_t i = 0; i < src->n; i++) {
        tval it = src->v[i], v = it;
        bool res;
        if (by_attr) {
            if (it.t != TV_DICT && it.t != TV_NS)
                return tpl_fail(c->r, VT_ERR_FORMAT, c->line,
                                "`%s` can only be applied to array of objects", c->name);
            tval *a = tpl_dict_get(it.u.d, c->a->v[0].u.s->p, c->a->v[0].u.s->len);
            if (!a) {
                res = false;
                goto decided;
            }
            v = *a;
        }
        if (test.t == TV_UNDEF)
            res = tpl_truthy(v);
        else if (tpl_test_named(c->r, c->line, test.u.s->p, v, targs, ntargs, &res))
            return -1;
    decided:
        if (res == keep) {
            tpl_incref(it);
            if (tpl_list_push(c->r, l, it))
                return -1;
        }
    }
    return 0;
}

static int f_unique(const fctx *c, tval *out)
{
    tlist *src = c->x.u.l, *l = tpl_list_new(c->r, 0);
    if (!l)
        return -1;
    *out = tv_list(l);
    for (size_t i = 0; i < src->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < l->n && !seen; j++) {
            if (tpl_check_steps(c->r, c->line))
                return -1;
            seen = tpl_strict_eq(l->v[j], src->v[i]) ||
                   (tv_is_num(l->v[j]) && tv_is_num(src->v[i]) && isnan(l->v[j].u.n) &&
                    isnan(src->v[i].u.n));
        }
        if (!seen) {
            tpl_incref(src->v[i]);
            if (tpl_list_push(c->r, l, src->v[i]))
                return -1;
        }
    }
    return 0;
}

static int f_minmax_sum(const fctx *c, tval *out)
{
    tlist *l = c->x.u.l;
    if (is_name(c->name, "sum")) {
        double s = 0;
        bool fl = false;
        for (size_t i = 0; i < l->n; i++) {
            if (!tv_is_num(l->v[i]))
                return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "sum: %s is not a number",
                                tpl_type_name(l->v[i]));
            s += l->v[i].u.n;
            fl |= l->v[i].t == TV_FLOAT;
        }
        *out = fl ? tv_float(s) : tv_int(s);
        return 0;
    }
    bool mx = is_name(c->name, "max");
    tval best = tv_undef();
    for (size_t i = 0; i < l->n; i++) {
        int res = 0;
        if (i && tpl_compare(c->r, l->v[i], best, false, &res, c->line))
            return -1;
        if (i == 0 || (mx ? res > 0 : res < 0))
            best = l->v[i];
    }
    tpl_incref(best);
    *out = best;
    return 0;
}

static int f_reverse(const fctx *c, tval *out)
{
    if (c->x.t == TV_STR) {
        tstr *s = c->x.u.s, *b = tpl_buf_new(c->r, s->len);
        if (!b)
            return -1;
        for (size_t e = s->len; e > 0;) {
            size_t st = e - 1;
            while (st > 0 && ((unsigned char)s->p[st] & 0xc0) == 0x80)
                st--;
            if (tpl_buf_put(c->r, b, s->p + st, e - st))
                return -1;
            e = st;
        }
        *out = tv_str(b);
        return 0;
    }
    tlist *src = c->x.u.l, *l = tpl_list_new(c->r, src->n);
    if (!l)
        return -1;
    for (size_t i = src->n; i-- > 0;) {
        tpl_incref(src->v[i]);
        l->v[l->n++] = src->v[i];
    }
    *out = tv_list(l);
    return 0;
}

/* ---------------------------------------------------------------- strings */

static int f_indent(const fctx *c, tval *out)
{
    tval w = arg(c, 0, "width", tv_int(4)), first = arg(c, 1, "first", tv_bool(false));
    tval blank = arg(c, 2, "blank", tv_bool(false));
    if (w.t != TV_INT)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "width must be a number");
    if (w.u.n < 0 || w.u.n > 1024)
        return tpl_fail(c->r, VT_ERR_RANGE, c->line, "indent width %g out of range", w.u.n);
    int width = (int)w.u.n;
    bool f = tpl_raw_truthy(first), bl = tpl_raw_truthy(blank);
    tstr *s = c->x.u.s, *b = tpl_buf_new(c->r, s->len + 16);
    if (!b)
        return -1;
    size_t i = 0, line = 0;
    for (;;) {
        const char *nl = memchr(s->p + i, '\n', s->len - i);
        size_t e = nl ? (size_t)(nl - s->p) : s->len;
        if (!((!f && line == 0) || (!bl && e == i)))
            for (int k = 0; k < width; k++)
                if (tpl_buf_putc(c->r, b, ' '))
                    return -1;
        if (tpl_buf_put(c->r, b, s->p + i, e - i))
            return -1;
        if (!nl)
            break;
        if (tpl_buf_putc(c->r, b, '\n'))
            return -1;
        i = e + 1;
        line++;
    }
    *out = tv_str(b);
    return 0;
}

static bool in_chars(tstr *set, uint32_t cp)
{
    for (size_t i = 0; i < set->len;)
        if ((uint32_t)tpl_utf8_decode(set->p, set->len, &i) == cp)
            return true;
    return false;
}

static int f_trim(const fctx *c, tval *out)
{
    tstr *s = c->x.u.s;
    tval chars = arg(c, 0, "chars", tv_none());
    size_t a, e;
    if (chars.t == TV_STR) {
        for (a = 0; a < s->len;) {
            size_t k = a;
            if (!in_chars(chars.u.s, (uint32_t)tpl_utf8_decode(s->p, s->len, &k)))
                break;
            a = k;
        }
        for (e = s->len; e > a;) {
            size_t st = e - 1;
            while (st > a && ((unsigned char)s->p[st] & 0xc0) == 0x80)
                st--;
            size_t k = st;
            if (!in_chars(chars.u.s, (uint32_t)tpl_utf8_decode(s->p, s->len, &k)))
                break;
            e = st;
        }
    } else {
        a = tpl_trim_start(s->p, s->len);
        e = tpl_trim_end(s->p, s->len);
        if (e < a)
            e = a;
    }
    return ret_str(c, tpl_str_new(c->r, s->p + a, e - a), out);
}

static int f_escape(const fctx *c, tval *out)
{
    tstr *src = c->x.t == TV_STR ? c->x.u.s : tpl_buf_new(c->r, 16);
    if (!src || (c->x.t != TV_STR && tpl_to_string(c->r, c->x, src, c->line)))
        return -1;
    tstr *b = tpl_buf_new(c->r, src->len + 16);
    if (!b)
        return -1;
    for (size_t i = 0; i < src->len; i++) {
        const char *rep = NULL;
        switch (src->p[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&#34;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        if (rep ? tpl_buf_put(c->r, b, rep, strlen(rep)) : tpl_buf_putc(c->r, b, src->p[i]))
            return -1;
    }
    if (src != c->x.u.s)
        tpl_obj_decref(c->r, &src->h);
    *out = tv_str(b);
    return 0;
}

static int f_wordcount(const fctx *c, tval *out)
{
    tstr *s = c->x.u.s;
    double n = 0;
    bool in = false;
    for (size_t i = 0; i < s->len; i++) {
        unsigned char ch = (unsigned char)s->p[i];
        bool w = ch >= 0x80 || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch >= '0' && ch <= '9') || ch == '_';
        if (w && !in)
            n++;
        in = w;
    }
    *out = tv_int(n);
    return 0;
}

static int codepoints(const fctx *c, tval *out, int which) /* 0 all, 1 first, 2 last */
{
    tstr *s = c->x.u.s;
    tlist *l = which ? NULL : tpl_list_new(c->r, s->len);
    if (!which && !l)
        return -1;
    size_t lastst = 0, i = 0;
    while (i < s->len) {
        size_t st = i;
        tpl_utf8_decode(s->p, s->len, &i);
        lastst = st;
        if (which == 1)
            return ret_str(c, tpl_str_new(c->r, s->p + st, i - st), out);
        if (!which) {
            tstr *ch = tpl_str_new(c->r, s->p + st, i - st);
            if (!ch || tpl_list_push(c->r, l, tv_str(ch)))
                return -1;
        }
    }
    if (which == 2) {
        if (!s->len) {
            *out = tv_undef();
            return 0;
        }
        return ret_str(c, tpl_str_new(c->r, s->p + lastst, s->len - lastst), out);
    }
    if (which == 1) {
        *out = tv_undef();
        return 0;
    }
    *out = tv_list(l);
    return 0;
}

/* ---------------------------------------------------------------- numbers */

static int f_number(const fctx *c, bool to_int, tval *out)
{
    tval def = c->parens ? arg(c, 0, "default", to_int ? tv_int(0) : tv_float(0))
                         : (to_int ? tv_int(0) : tv_float(0));
    switch (c->x.t) {
    case TV_STR: {
        double v = to_int ? tpl_js_parse_int(c->x.u.s->p, c->x.u.s->len)
                          : tpl_js_parse_float(c->x.u.s->p, c->x.u.s->len);
        if (isnan(v)) {
            tpl_incref(def);
            *out = def;
        } else {
            *out = to_int ? tv_int(v) : tv_float(v);
        }
        return 0;
    }
    case TV_INT:
    case TV_FLOAT:
        if (c->parens)
            return ret_same(c, out);
        *out = to_int ? tv_int(floor(c->x.u.n)) : tv_float(c->x.u.n);
        return 0;
    case TV_BOOL: *out = to_int ? tv_int(c->x.u.b) : tv_float(c->x.u.b); return 0;
    default: return fail_type(c);
    }
}

static int f_round(const fctx *c, tval *out)
{
    tval prec = arg(c, 0, "precision", tv_int(0)), meth = arg(c, 1, "method", tv_undef());
    if (!tv_is_num(prec) || prec.u.n < 0 || prec.u.n > 15)
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "round: bad precision");
    double m = pow(10, prec.u.n), x = c->x.u.n * m;
    if (meth.t == TV_STR && !strcmp(meth.u.s->p, "ceil"))
        x = ceil(x);
    else if (meth.t == TV_STR && !strcmp(meth.u.s->p, "floor"))
        x = floor(x);
    else if (meth.t == TV_UNDEF || (meth.t == TV_STR && !strcmp(meth.u.s->p, "common")))
        x = round(x);
    else
        return tpl_fail(c->r, VT_ERR_FORMAT, c->line, "round: method must be common, ceil or floor");
    *out = tv_float(x / m);
    return 0;
}

static int f_string(const fctx *c, tval *out)
{
    tstr *b = tpl_buf_new(c->r, 16);
    if (!b)
        return -1;
    if (c->x.t == TV_LIST) {
        tjson_opts o = {0};
        if (tpl_to_json(c->r, c->x, &o, b, 0, c->line))
            return -1;
    } else if (tpl_to_string(c->r, c->x, b, c->line)) {
        return -1;
    }
    *out = tv_str(b);
    return 0;
}

/* ---------------------------------------------------------------- dispatch */

static const char *const known[] = {
    "safe", "tojson", "default", "d", "list", "first", "last", "length", "count", "reverse",
    "sort", "join", "string", "unique", "map", "selectattr", "rejectattr", "select", "reject",
    "min", "max", "sum", "upper", "lower", "title", "capitalize", "trim", "indent", "replace",
    "int", "float", "abs", "round", "bool", "items", "keys", "values", "get", "dictsort",
    "escape", "e", "wordcount", NULL};

static bool any_of(const char *name, const char *const *set)
{
    for (; *set; set++)
        if (!strcmp(name, *set))
            return true;
    return false;
}

static int filter_apply(const fctx *c, tval *out)
{
    const char *n = c->name;
    trender *r = c->r;
    if (is_name(n, "safe"))
        return ret_same(c, out);
    if (is_name(n, "tojson"))
        return f_tojson(c, out);
    if (is_name(n, "default") || is_name(n, "d"))
        return f_default(c, out);
    if (!any_of(n, known))
        return tpl_fail(r, VT_ERR_FORMAT, c->line, "unknown filter '%s'", n);
    switch (c->x.t) {
    case TV_LIST:
        if (is_name(n, "list"))
            return ret_same(c, out);
        if (is_name(n, "first") || is_name(n, "last")) {
            tlist *l = c->x.u.l;
            *out = l->n ? l->v[is_name(n, "first") ? 0 : l->n - 1] : tv_undef();
            tpl_incref(*out);
            return 0;
        }
        if (is_name(n, "length") || is_name(n, "count")) {
            *out = tv_int((double)c->x.u.l->n);
            return 0;
        }
        if (is_name(n, "reverse"))
            return f_reverse(c, out);
        if (is_name(n, "sort"))
            return f_sort(c, out);
        if (is_name(n, "join"))
            return f_join(c, out);
        if (is_name(n, "string"))
            return f_string(c, out);
        if (is_name(n, "unique"))
            return f_unique(c, out);
        if (is_name(n, "map"))
            return f_map(c, out);
        if (is_name(n, "selectattr") || is_name(n, "rejectattr"))
            return f_select(c, true, n[0] == 's', out);
        if (is_name(n, "select") || is_name(n, "reject"))
            return f_select(c, false, n[0] == 's' && n[2] == 'l', out);
        if (is_name(n, "min") || is_name(n, "max") || is_name(n, "sum"))
            return f_minmax_sum(c, out);
        break;
    case TV_STR: {
        tstr *s = c->x.u.s, *b;
        if (is_name(n, "length") || is_name(n, "count")) {
            *out = tv_int((double)tpl_u16_len(s));
            return 0;
        }
        if (is_name(n, "upper") || is_name(n, "lower")) {
            if (!(b = tpl_buf_new(r, s->len)) || tpl_case_map(r, s->p, s->len, n[0] == 'u', b))
                return -1;
            *out = tv_str(b);
            return 0;
        }
        if (is_name(n, "title") || is_name(n, "capitalize")) {
            tfunc f = {.kind = FN_METHOD, .id = n[0] == 't' ? M_TITLE : M_CAPITALIZE, .self = c->x};
            return tpl_call_builtin(r, &f, c->a, NULL, out, c->line);
        }
        if (is_name(n, "trim"))
            return f_trim(c, out);
        if (is_name(n, "indent"))
            return f_indent(c, out);
        if (is_name(n, "join"))
            return f_join(c, out);
        if (is_name(n, "string"))
            return ret_same(c, out);
        if (is_name(n, "int") || is_name(n, "float"))
            return f_number(c, n[0] == 'i', out);
        if (is_name(n, "replace")) {
            tfunc f = {.kind = FN_METHOD, .id = M_REPLACE, .self = c->x};
            return tpl_call_builtin(r, &f, c->a, c->kw, out, c->line);
        }
        if (is_name(n, "list"))
            return codepoints(c, out, 0);
        if (is_name(n, "first") || is_name(n, "last"))
            return codepoints(c, out, n[0] == 'f' ? 1 : 2);
        if (is_name(n, "reverse"))
            return f_reverse(c, out);
        if (is_name(n, "wordcount"))
            return f_wordcount(c, out);
        if (is_name(n, "escape") || is_name(n, "e"))
            return f_escape(c, out);
        break;
    }
    case TV_INT:
    case TV_FLOAT:
        if (is_name(n, "abs")) {
            *out = c->x.t == TV_INT ? tv_int(fabs(c->x.u.n)) : tv_float(fabs(c->x.u.n));
            return 0;
        }
        if (is_name(n, "int") || is_name(n, "float"))
            return f_number(c, n[0] == 'i', out);
        if (is_name(n, "string"))
            return f_string(c, out);
        if (is_name(n, "round"))
            return f_round(c, out);
        if (is_name(n, "escape") || is_name(n, "e"))
            return f_escape(c, out);
        break;
    case TV_BOOL:
        if (is_name(n, "bool"))
            return ret_same(c, out);
        if (is_name(n, "int") || is_name(n, "float"))
            return f_number(c, n[0] == 'i', out);
        if (is_name(n, "string"))
            return ret_str(c, tpl_str_new(r, c->x.u.b ? "true" : "false", c->x.u.b ? 4 : 5), out);
        break;
    case TV_DICT:
        if (is_name(n, "length") || is_name(n, "count")) {
            *out = tv_int((double)c->x.u.d->n);
            return 0;
        }
        static const char *const dm[] = {"get", "items", "keys", "values", "dictsort"};
        for (int i = 0; i < 5; i++) /* the methods themselves: keys never shadow them */
            if (is_name(n, dm[i]) || (i == 2 && is_name(n, "list"))) {
                tfunc f = {.kind = FN_METHOD, .id = M_GET + i, .self = c->x};
                return tpl_call_builtin(r, &f, c->a, c->kw, out, c->line);
            }
        break;
    default: break;
    }
    return fail_type(c);
}

int tpl_filter(trender *r, tenv *env, const tnode *f, tval operand, tval *out)
{
    fctx c = {.r = r, .env = env, .node = f, .x = operand, .parens = f->flag != 0,
              .line = f->line, .name = f->s->p};
    if (tpl_eval_args(r, env, &f->l1, &c.a, &c.kw) || filter_apply(&c, out))
        return -1;
    tpl_obj_decref(r, &c.a->h);
    if (c.kw)
        tpl_obj_decref(r, &c.kw->h);
    return 0;
}

/* ---------------------------------------------------------------- tests */

int tpl_test_named(trender *r, int line, const char *name, tval a, const tval *args, int nargs,
                   bool *res)
{
    tval b = nargs > 0 ? args[0] : tv_undef();
#define T(s) (!strcmp(name, s))
    if (T("defined")) *res = a.t != TV_UNDEF;
    else if (T("undefined")) *res = a.t == TV_UNDEF;
    else if (T("none")) *res = a.t == TV_NONE;
    else if (T("boolean")) *res = a.t == TV_BOOL;
    else if (T("true")) *res = a.t == TV_BOOL && a.u.b;
    else if (T("false")) *res = a.t == TV_BOOL && !a.u.b;
    else if (T("string")) *res = a.t == TV_STR;
    else if (T("number")) *res = tv_is_num(a);
    else if (T("integer")) *res = a.t == TV_INT;
    else if (T("float")) *res = a.t == TV_FLOAT;
    else if (T("iterable")) *res = (a.t == TV_LIST && !a.u.l->tuple) || a.t == TV_STR;
    else if (T("sequence")) *res = a.t == TV_LIST || a.t == TV_DICT || a.t == TV_STR;
    else if (T("mapping")) *res = a.t == TV_DICT;
    else if (T("callable")) *res = a.t == TV_FUNC;
    else if (T("odd") || T("even")) {
        if (a.t != TV_INT)
            return tpl_fail(r, VT_ERR_FORMAT, line, "cannot %s on %s", name, tpl_type_name(a));
        *res = (fmod(a.u.n, 2) != 0) == T("odd");
    } else if (T("lower") || T("upper")) {
        if (a.t != TV_STR) {
            *res = false;
            return 0;
        }
        tstr *m = tpl_buf_new(r, a.u.s->len);
        if (!m || tpl_case_map(r, a.u.s->p, a.u.s->len, T("upper"), m))
            return -1;
        *res = m->len == a.u.s->len && !memcmp(m->p, a.u.s->p, m->len);
        tpl_obj_decref(r, &m->h);
    } else if (T("equalto") || T("eq") || T("sameas")) {
        *res = tpl_strict_eq(a, b);
    } else if (T("ne")) {
        *res = !tpl_strict_eq(a, b);
    } else if (T("lt") || T("le") || T("gt") || T("ge") || T("lessthan") || T("greaterthan")) {
        if (!tv_is_num(a) || !tv_is_num(b))
            return tpl_fail(r, VT_ERR_FORMAT, line, "test '%s' needs two numbers", name);
        double x = a.u.n, y = b.u.n;
        *res = T("lt") || T("lessthan") ? x < y : T("le") ? x <= y : T("gt") || T("greaterthan") ? x > y : x >= y;
    } else if (T("divisibleby")) {
        if (!tv_is_num(a) || !tv_is_num(b))
            return tpl_fail(r, VT_ERR_FORMAT, line, "test 'divisibleby' needs two numbers");
        *res = b.u.n != 0 && fmod(a.u.n, b.u.n) == 0;
    } else if (T("in")) {
        if (b.t == TV_LIST) {
            *res = false;
            for (size_t i = 0; i < b.u.l->n && !*res; i++)
                *res = tpl_strict_eq(b.u.l->v[i], a);
        } else if (b.t == TV_STR && a.t == TV_STR) {
            *res = a.u.s->len == 0 || memmem(b.u.s->p, b.u.s->len, a.u.s->p, a.u.s->len);
        } else if (b.t == TV_DICT && a.t == TV_STR) {
            *res = tpl_dict_get(b.u.d, a.u.s->p, a.u.s->len) != NULL;
        } else {
            return tpl_fail(r, VT_ERR_FORMAT, line, "test 'in' needs a list, string or dict");
        }
    } else {
        return tpl_fail(r, VT_ERR_FORMAT, line, "Unknown test: %s", name);
    }
#undef T
    return 0;
}

int tpl_test(trender *r, tenv *env, const tnode *t, tval operand, bool *res)
{
    tlist *args;
    tdict *kw;
    if (tpl_eval_args(r, env, &t->l1, &args, &kw) ||
        tpl_test_named(r, t->line, t->s->p, operand, args->v, (int)args->n, res))
        return -1;
    tpl_obj_decref(r, &args->h);
    if (kw)
        tpl_obj_decref(r, &kw->h);
    return 0;
}
