/*
 * json_schema.c - JSON Schema to GBNF (grammar.h's smp_json_schema_to_gbnf):
 * the grammar of the JSON texts valid under a schema, so that a
 * grammar-constrained model can only write such texts.
 *
 * Supported: type (one or a list), properties / required /
 * additionalProperties (absent means none are generated: a valid subset),
 * enum, const, items / prefixItems (and draft-7 tuple items with
 * additionalItems), minItems / maxItems, anyOf, oneOf (as anyOf: branches
 * should be disjoint), allOf with one schema, local $ref (#, #/$defs/..,
 * #/definitions/.., any JSON pointer; recursion allowed), strings with
 * minLength / maxLength, pattern (through regex.c; unanchored sides get at
 * most 8 free characters) or format (date, time, date-time, uuid, email,
 * ipv4), integers with minimum / maximum / exclusive bounds (any sign),
 * numbers with integral bounds >= 0. Annotations (title, description,
 * default, examples, $schema, $id, $comment, deprecated, readOnly,
 * writeOnly) are ignored; any other keyword is VT_ERR_UNSUPPORTED naming it
 * and where it is, never silently dropped.
 *
 * Whitespace between tokens is at most one space (or none), so a bounded
 * schema gives bounded output; numbers have at most 16 integer digits, 15
 * fraction digits and a 2-digit exponent (valid subsets of JSON numbers).
 * Strings never contain lone surrogate escapes, so lengths count the same
 * for the grammar and for validators.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"
#include "sample/grammar_int.h"

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sb;

static void put(sb *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void puts_(sb *b, const char *s)
{
    put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void putf(sb *b, const char *fmt, ...)
{
    char t[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(b, t, (size_t)(n < (int)sizeof t - 1 ? n : (int)sizeof t - 1));
}

/* A GBNF string literal matching bytes s[0..n) exactly. */
static void lit(sb *b, const char *s, size_t n)
{
    puts_(b, "\"");
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\') {
            char t[3] = {'\\', (char)c, 0};
            puts_(b, t);
        } else if (c < 0x20 || c == 0x7F) {
            putf(b, "\\x%02X", c);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
    puts_(b, "\"");
}

typedef struct {
    char *ref;
    char name[24];
} ref_rule;

typedef struct {
    json_t *root;
    sb rules;
    unsigned n_rules;
    ref_rule *refs;
    size_t n_refs, cap_refs;
    ref_rule *interned; /* (expression, rule) pairs: one rule per distinct expression */
    size_t n_interned, cap_interned;
    int depth;
    bool need_value;
    char path[256];
    vt_err err;
    char msg[600];
} js;

__attribute__((format(printf, 3, 4))) static bool fail(js *j, vt_err e, const char *fmt, ...)
{
    if (j->err)
        return false;
    char m[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    snprintf(j->msg, sizeof j->msg, "json schema: at %s: %s", j->path[0] ? j->path : "/", m);
    j->err = e;
    return false;
}

/* A fresh rule name into out[24]. */
static void new_name(js *j, char *out)
{
    snprintf(out, 24, "r%u", ++j->n_rules);
}

static void def_rule(js *j, const char *name, const char *expr)
{
    puts_(&j->rules, name);
    puts_(&j->rules, " ::= ");
    puts_(&j->rules, expr);
    puts_(&j->rules, "\n");
}

/* name_out = the rule of expression expr, one rule per distinct expression
 * (identical sub-schemas share their rule, and so their cached masks). */
static void intern_rule(js *j, const char *expr, char *name_out)
{
    for (size_t k = 0; k < j->n_interned; k++)
        if (!strcmp(j->interned[k].ref, expr)) {
            memcpy(name_out, j->interned[k].name, 24);
            return;
        }
    new_name(j, name_out);
    def_rule(j, name_out, expr);
    if (j->n_interned == j->cap_interned) {
        size_t cap = j->cap_interned ? j->cap_interned * 2 : 16;
        ref_rule *n = realloc(j->interned, cap * sizeof *n);
        if (!n)
            return; /* still correct, only not shared */
        j->interned = n;
        j->cap_interned = cap;
    }
    char *c = strdup(expr);
    if (c) {
        j->interned[j->n_interned].ref = c;
        memcpy(j->interned[j->n_interned++].name, name_out, 24);
    }
}

/* ---- shared primitives ---- */

static const char *prim_rules =
    "ws ::= | \" \"\n"
    "char ::= [^\"\\\\\\x00-\\x1F\\x7F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-CefEF] "
    "[0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))\n"
    "string ::= \"\\\"\" char* \"\\\"\"\n"
    "integer ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15})\n"
    "number ::= integer (\".\" [0-9]{1,15})? ([eE] [-+]? [1-9] [0-9]?)?\n"
    "boolean ::= \"true\" | \"false\"\n"
    "null ::= \"null\"\n"
    "value ::= object | array | string | number | boolean | null\n"
    "object ::= \"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* "
    ")? \"}\"\n"
    "array ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"\n";

/* ---- numbers ---- */

#define MAX_UINT 999999999999999ull /* 15 digits: the largest bound handled */

static void digits_of(uint64_t v, char *out, int width)
{
    for (int k = width - 1; k >= 0; k--) {
        out[k] = (char)('0' + v % 10);
        v /= 10;
    }
    out[width] = 0;
}

static int n_digits(uint64_t v)
{
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* Fixed-width digit strings between a and z (same length k, a <= z). */
static void range_fixed(sb *b, const char *a, const char *z, int k)
{
    if (k == 0) {
        puts_(b, "\"\"");
        return;
    }
    if (!strncmp(a, z, (size_t)k)) {
        lit(b, a, (size_t)k);
        return;
    }
    if (k == 1) {
        putf(b, "[%c-%c]", a[0], z[0]);
        return;
    }
    char nines[20], zeros[20];
    memset(nines, '9', (size_t)k - 1);
    memset(zeros, '0', (size_t)k - 1);
    nines[k - 1] = zeros[k - 1] = 0;
    if (a[0] == z[0]) {
        putf(b, "\"%c\" (", a[0]);
        range_fixed(b, a + 1, z + 1, k - 1);
        puts_(b, ")");
        return;
    }
    bool low_full = !strncmp(a + 1, zeros, (size_t)k - 1);
    bool high_full = !strncmp(z + 1, nines, (size_t)k - 1);
    char m_lo = low_full ? a[0] : (char)(a[0] + 1), m_hi = high_full ? z[0] : (char)(z[0] - 1);
    bool first = true;
    puts_(b, "(");
    if (!low_full) {
        putf(b, "\"%c\" (", a[0]);
        range_fixed(b, a + 1, nines, k - 1);
        puts_(b, ")");
        first = false;
    }
    if (m_lo <= m_hi) {
        putf(b, "%s[%c-%c] [0-9]{%d}", first ? "" : " | ", m_lo, m_hi, k - 1);
        first = false;
    }
    if (!high_full) {
        putf(b, "%s\"%c\" (", first ? "" : " | ", z[0]);
        range_fixed(b, zeros, z + 1, k - 1);
        puts_(b, ")");
    }
    puts_(b, ")");
}

/* Decimal integers in [lo, hi] without leading zeros (0 <= lo <= hi <= MAX_UINT). */
static void uint_range(sb *b, uint64_t lo, uint64_t hi)
{
    puts_(b, "(");
    bool first = true;
    for (int d = n_digits(lo); d <= n_digits(hi); d++) {
        uint64_t p = 1;
        for (int k = 1; k < d; k++)
            p *= 10;
        uint64_t a = lo > (d == 1 ? 0 : p) ? lo : (d == 1 ? 0 : p), z = p * 10 - 1;
        if (z > hi)
            z = hi;
        char sa[20], sz[20];
        digits_of(a, sa, d);
        digits_of(z, sz, d);
        if (!first)
            puts_(b, " | ");
        range_fixed(b, sa, sz, d);
        first = false;
    }
    puts_(b, ")");
}

/* Integers in [lo, hi], either side possibly open (then +-MAX_UINT). */
static bool int_range(js *j, sb *b, bool has_lo, int64_t lo, bool has_hi, int64_t hi)
{
    if (!has_lo || lo < -(int64_t)MAX_UINT)
        lo = -(int64_t)MAX_UINT;
    if (!has_hi || hi > (int64_t)MAX_UINT)
        hi = (int64_t)MAX_UINT;
    if (lo > hi)
        return fail(j, VT_ERR_UNSUPPORTED, "the bounds leave no integer (%lld > %lld)",
                    (long long)lo, (long long)hi);
    puts_(b, "(");
    bool first = true;
    if (lo < 0) {
        int64_t nhi = hi < -1 ? hi : -1;
        puts_(b, "\"-\" ");
        uint_range(b, (uint64_t)(-nhi), (uint64_t)(-lo));
        first = false;
    }
    if (hi >= 0) {
        if (!first)
            puts_(b, " | ");
        uint_range(b, (uint64_t)(lo > 0 ? lo : 0), (uint64_t)hi);
    }
    puts_(b, ")");
    return true;
}

/* Reads a numeric keyword: false if absent; fails for a non-number. */
static bool num_kw(js *j, json_t *s, const char *kw, double *v, bool *present)
{
    json_t *x = json_object_get(s, kw);
    *present = false;
    if (!x)
        return true;
    if (json_is_boolean(x)) /* draft-4 exclusive flags: the caller reads them */
        return true;
    if (!json_is_number(x))
        return fail(j, VT_ERR_FORMAT, "'%s' must be a number", kw);
    *v = json_number_value(x);
    *present = true;
    if (!isfinite(*v) || fabs(*v) > 9e15)
        return fail(j, VT_ERR_UNSUPPORTED, "'%s' = %g is beyond the supported range", kw, *v);
    return true;
}

typedef struct {
    bool has_lo, lo_excl, has_hi, hi_excl;
    double lo, hi;
} bounds;

static bool read_bounds(js *j, json_t *s, bounds *bd)
{
    memset(bd, 0, sizeof *bd);
    double emin = 0, emax = 0;
    bool has_emin, has_emax;
    if (!num_kw(j, s, "minimum", &bd->lo, &bd->has_lo) ||
        !num_kw(j, s, "maximum", &bd->hi, &bd->has_hi) ||
        !num_kw(j, s, "exclusiveMinimum", &emin, &has_emin) ||
        !num_kw(j, s, "exclusiveMaximum", &emax, &has_emax))
        return false;
    if (json_is_true(json_object_get(s, "exclusiveMinimum")))
        bd->lo_excl = bd->has_lo;
    if (json_is_true(json_object_get(s, "exclusiveMaximum")))
        bd->hi_excl = bd->has_hi;
    if (has_emin && (!bd->has_lo || emin >= bd->lo)) {
        bd->has_lo = bd->lo_excl = true;
        bd->lo = emin;
    }
    if (has_emax && (!bd->has_hi || emax <= bd->hi)) {
        bd->has_hi = bd->hi_excl = true;
        bd->hi = emax;
    }
    return true;
}

static bool integer_expr(js *j, json_t *s, sb *b)
{
    bounds bd;
    if (!read_bounds(j, s, &bd))
        return false;
    if (!bd.has_lo && !bd.has_hi) {
        puts_(b, "integer");
        return true;
    }
    int64_t lo = 0, hi = 0;
    if (bd.has_lo)
        lo = bd.lo_excl ? (int64_t)floor(bd.lo) + 1 : (int64_t)ceil(bd.lo);
    if (bd.has_hi)
        hi = bd.hi_excl ? (int64_t)ceil(bd.hi) - 1 : (int64_t)floor(bd.hi);
    return int_range(j, b, bd.has_lo, lo, bd.has_hi, hi);
}

static bool number_expr(js *j, json_t *s, sb *b)
{
    bounds bd;
    if (!read_bounds(j, s, &bd))
        return false;
    if (!bd.has_lo && !bd.has_hi) {
        puts_(b, "number");
        return true;
    }
    if (!bd.has_lo || bd.lo < 0 || bd.lo != floor(bd.lo) || (bd.has_hi && bd.hi != floor(bd.hi)))
        return fail(j, VT_ERR_UNSUPPORTED, "minimum/maximum on a number: only integral bounds "
                    "with a lower bound >= 0 are supported (use type integer, or such bounds)");
    uint64_t L = (uint64_t)bd.lo, U = bd.has_hi ? (uint64_t)bd.hi : MAX_UINT;
    if (U > MAX_UINT)
        U = MAX_UINT;
    const char *frac = "(\".\" [0-9]{1,15})";
    bool first = true, open_hi = !bd.has_hi;
    char t[24];
    puts_(b, "(");
    uint64_t top = open_hi ? U : U - 1; /* integer parts with any fraction: (L, top] */
    if (U > L && L + 1 <= top) {
        uint_range(b, L + 1, top);
        putf(b, " %s?", frac);
        first = false;
    }
    snprintf(t, sizeof t, "%llu", (unsigned long long)L);
    if (open_hi || L < U) { /* the integer part L */
        if (!first)
            puts_(b, " | ");
        lit(b, t, strlen(t));
        if (bd.lo_excl)
            puts_(b, " \".\" [0-9]{0,14} [1-9]");
        else
            putf(b, " %s?", frac);
        first = false;
    } else if (L == U && !bd.lo_excl && !bd.hi_excl) {
        lit(b, t, strlen(t));
        puts_(b, " (\".\" \"0\"{1,3})?");
        first = false;
    }
    if (!open_hi && U > L && !bd.hi_excl) { /* exactly U */
        snprintf(t, sizeof t, "%llu", (unsigned long long)U);
        if (!first)
            puts_(b, " | ");
        lit(b, t, strlen(t));
        puts_(b, " (\".\" \"0\"{1,3})?");
        first = false;
    }
    puts_(b, ")");
    if (first)
        return fail(j, VT_ERR_UNSUPPORTED, "the bounds leave no number");
    return true;
}

/* ---- strings ---- */

static const char *fmt_date =
    "[0-9]{4} \"-\" ((\"0\" [13578] | \"1\" [02]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01]) | "
    "(\"0\" [469] | \"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\") | \"02-\" (\"0\" [1-9] | "
    "\"1\" [0-9] | \"2\" [0-8]))";
static const char *fmt_time =
    "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? (\"Z\" | "
    "[+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])";
static const char *fmt_uuid =
    "[0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{12}";
static const char *fmt_email = /* domain labels neither start nor end with '-' */
    "[a-z0-9] [a-z0-9_+-]{0,15} (\".\" [a-z0-9_+-]{1,8})? \"@\" [a-z0-9] ([a-z0-9-]{0,14} "
    "[a-z0-9])? \".\" [a-z]{2,6}";
static const char *fmt_ipv4 =
    "(\"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9]? [0-9]) (\".\" (\"25\" [0-5] | "
    "\"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9]? [0-9])){3}";

static bool uint_kw(js *j, json_t *s, const char *kw, long long *v)
{
    json_t *x = json_object_get(s, kw);
    *v = -1;
    if (!x)
        return true;
    double d = json_number_value(x);
    if (!json_is_number(x) || d < 0 || d != floor(d))
        return fail(j, VT_ERR_FORMAT, "'%s' must be a non-negative integer", kw);
    if (d > GR_MAX_REPEAT)
        return fail(j, VT_ERR_UNSUPPORTED, "'%s' = %.0f is past the supported %u", kw, d,
                    GR_MAX_REPEAT);
    *v = (long long)d;
    return true;
}

static bool string_expr(js *j, json_t *s, sb *b)
{
    long long mn, mx;
    if (!uint_kw(j, s, "minLength", &mn) || !uint_kw(j, s, "maxLength", &mx))
        return false;
    json_t *fmt = json_object_get(s, "format"), *pat = json_object_get(s, "pattern");
    if ((fmt || pat) && (mn >= 0 || mx >= 0))
        return fail(j, VT_ERR_UNSUPPORTED, "minLength/maxLength together with %s",
                    fmt ? "format" : "pattern");
    if (fmt && pat)
        return fail(j, VT_ERR_UNSUPPORTED, "format together with pattern");
    if (mx >= 0 && mn > mx)
        return fail(j, VT_ERR_UNSUPPORTED, "minLength %lld > maxLength %lld", mn, mx);
    puts_(b, "\"\\\"\" ");
    if (fmt) {
        const char *f = json_string_value(fmt);
        if (!f)
            return fail(j, VT_ERR_FORMAT, "'format' must be a string");
        if (!strcmp(f, "date"))
            puts_(b, fmt_date);
        else if (!strcmp(f, "time"))
            puts_(b, fmt_time);
        else if (!strcmp(f, "date-time"))
            putf(b, "%s \"T\" %s", fmt_date, fmt_time);
        else if (!strcmp(f, "uuid"))
            puts_(b, fmt_uuid);
        else if (!strcmp(f, "email"))
            puts_(b, fmt_email);
        else if (!strcmp(f, "ipv4"))
            puts_(b, fmt_ipv4);
        else
            return fail(j, VT_ERR_UNSUPPORTED, "format '%.60s' is not supported (supported: "
                        "date, time, date-time, uuid, email, ipv4)", f);
    } else if (pat) {
        const char *p = json_string_value(pat);
        if (!p)
            return fail(j, VT_ERR_FORMAT, "'pattern' must be a string");
        size_t n = strlen(p);
        bool start = n > 0 && p[0] == '^';
        bool end = n > 0 && p[n - 1] == '$' && (n < 2 || p[n - 2] != '\\');
        char *e;
        vt_err err = gr_regex_expr(p, n, true, &e);
        if (err)
            return fail(j, err, "pattern: %s", vt_last_error());
        if (!start)
            puts_(b, "char{0,8} ");
        puts_(b, e);
        if (!end)
            puts_(b, " char{0,8}");
        free(e);
    } else if (mn < 0 && mx < 0) {
        puts_(b, "char*"); /* interned: every such string shares one rule */
    } else if (mx < 0) {
        putf(b, "char{%lld,}", mn);
    } else {
        putf(b, "char{%lld,%lld}", mn < 0 ? 0 : mn, mx);
    }
    puts_(b, " \"\\\"\"");
    return true;
}

/* ---- schemas ---- */

static bool visit(js *j, json_t *s, char *name_out);

static const char *const annotations[] = {"title", "description", "default", "examples",
                                          "$schema", "$id", "id", "$comment", "deprecated",
                                          "readOnly", "writeOnly", "$defs", "definitions",
                                          NULL};
static const char *const known[] = {
    "type", "properties", "required", "additionalProperties", "enum", "const", "items",
    "prefixItems", "additionalItems", "minItems", "maxItems", "anyOf", "oneOf", "allOf", "$ref",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", NULL};

static bool in_list(const char *k, const char *const *l)
{
    for (; *l; l++)
        if (!strcmp(k, *l))
            return true;
    return false;
}

/* A path segment pushed onto j->path (returns the old length to restore). */
static size_t path_push(js *j, const char *a, const char *b)
{
    size_t old = strlen(j->path);
    snprintf(j->path + old, sizeof j->path - old, "/%s%s%.40s", a, b ? "/" : "", b ? b : "");
    return old;
}

static bool json_literal(js *j, json_t *v, sb *b)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t)
        return fail(j, VT_ERR_NOMEM, "out of memory");
    lit(b, t, strlen(t));
    free(t);
    return true;
}

/* Keys other than the listed ones (restricted to characters needing no
 * escape): a trie over the listed keys' code points, each node a rule. */
static bool other_key(js *j, const char **keys, size_t n, size_t depth, char *name)
{
    new_name(j, name);
    sb e = {0};
    puts_(&e, "(");
    /* the code points at this depth among keys that share the prefix */
    bool any = false, ends_here = false;
    sb excl = {0};
    for (size_t k = 0; k < n; k++) {
        size_t l = strlen(keys[k]);
        if (l == depth) {
            ends_here = true;
            continue;
        }
        if (l < depth)
            continue;
        /* one byte at a time is enough: the class below excludes bytes of
         * ASCII; non-ASCII first bytes branch as groups */
        unsigned char c = (unsigned char)keys[k][depth];
        bool seen = false;
        for (size_t q = 0; q < k; q++)
            if (strlen(keys[q]) > depth && (unsigned char)keys[q][depth] == c) {
                seen = true;
                break;
            }
        if (seen)
            continue;
        if (c >= 0x80)
            return free(e.s), free(excl.s),
                   fail(j, VT_ERR_UNSUPPORTED, "additionalProperties next to non-ASCII "
                        "property names");
        putf(&excl, "\\x%02X", c);
        const char *sub[256];
        size_t m = 0;
        for (size_t q = 0; q < n && m < 256; q++)
            if (strlen(keys[q]) > depth && (unsigned char)keys[q][depth] == c)
                sub[m++] = keys[q];
        char child[24];
        if (!other_key(j, sub, m, depth + 1, child)) {
            free(e.s);
            free(excl.s);
            return false;
        }
        char ch[2] = {(char)c, 0};
        if (any)
            puts_(&e, " | ");
        lit(&e, ch, 1);
        putf(&e, " %s", child);
        any = true;
    }
    if (any)
        puts_(&e, " | ");
    putf(&e, "[^\"\\\\\\x00-\\x1F\\x7F%s] [^\"\\\\\\x00-\\x1F\\x7F]*", excl.s ? excl.s : "");
    if (!ends_here && depth > 0)
        puts_(&e, " | \"\"");
    puts_(&e, ")");
    free(excl.s);
    if (e.oom)
        return free(e.s), fail(j, VT_ERR_NOMEM, "out of memory");
    def_rule(j, name, e.s);
    free(e.s);
    return true;
}

static bool object_expr(js *j, json_t *s, sb *b)
{
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return fail(j, VT_ERR_FORMAT, "'properties' must be an object");
    if (req && !json_is_array(req))
        return fail(j, VT_ERR_FORMAT, "'required' must be an array");
    size_t np = props ? json_object_size(props) : 0, nr = req ? json_array_size(req) : 0;
    size_t cap = np + nr + 1;
    const char **keys = calloc(cap, sizeof *keys);
    char(*vals)[24] = calloc(cap, sizeof *vals);
    bool *required = calloc(cap, sizeof *required);
    bool ok = keys && vals && required;
    if (!ok)
        fail(j, VT_ERR_NOMEM, "out of memory");
    size_t n = 0;
    const char *k;
    json_t *v;
    if (ok && props) {
        json_object_foreach(props, k, v) {
            size_t old = path_push(j, "properties", k);
            keys[n] = k;
            ok = visit(j, v, vals[n]);
            j->path[old] = 0;
            if (!ok)
                break;
            n++;
        }
    }
    for (size_t r = 0; ok && r < nr; r++) {
        const char *rk = json_string_value(json_array_get(req, r));
        if (!rk) {
            ok = fail(j, VT_ERR_FORMAT, "'required' must hold strings");
            break;
        }
        size_t q = 0;
        while (q < n && strcmp(keys[q], rk))
            q++;
        if (q == n) { /* required but not described: any value */
            keys[n] = rk;
            j->need_value = true;
            snprintf(vals[n], sizeof vals[n], "value");
            n++;
        }
        required[q] = true;
    }
    char extra[24] = "";
    if (ok && addl && !json_is_false(addl)) {
        char kname[24], vname[24];
        if (json_is_true(addl) || (json_is_object(addl) && json_object_size(addl) == 0)) {
            j->need_value = true;
            snprintf(vname, sizeof vname, "value");
        } else {
            size_t old = path_push(j, "additionalProperties", NULL);
            ok = visit(j, addl, vname);
            j->path[old] = 0;
        }
        if (ok)
            ok = other_key(j, keys, n, 0, kname);
        if (ok) {
            new_name(j, extra);
            sb e = {0};
            putf(&e, "\"\\\"\" %s \"\\\"\" ws \":\" ws %s ws", kname, vname);
            def_rule(j, extra, e.s ? e.s : "\"\"");
            free(e.s);
        }
    }
    if (ok) {
        /* A[i]: items i.. with no comma before the first; B[i]: after one */
        char a_next[24], b_next[24];
        new_name(j, a_next);
        new_name(j, b_next);
        if (extra[0]) {
            sb e = {0};
            putf(&e, "( %s ( \",\" ws %s )* )?", extra, extra);
            def_rule(j, a_next, e.s);
            free(e.s);
            e = (sb){0};
            putf(&e, "( \",\" ws %s )*", extra);
            def_rule(j, b_next, e.s);
            free(e.s);
        } else {
            def_rule(j, a_next, "\"\"");
            def_rule(j, b_next, "\"\"");
        }
        for (size_t i = n; i-- > 0;) {
            sb kv = {0};
            json_t *ks = json_string(keys[i]);
            if (!ks) {
                ok = fail(j, VT_ERR_FORMAT, "a property name that is not UTF-8");
                break;
            }
            json_literal(j, ks, &kv);
            json_decref(ks);
            putf(&kv, " ws \":\" ws %s ws", vals[i]);
            char an[24], bn[24];
            new_name(j, an);
            new_name(j, bn);
            sb ea = {0}, eb = {0};
            putf(&ea, "%s %s", kv.s, b_next);
            putf(&eb, "\",\" ws %s %s", kv.s, b_next);
            if (!required[i]) {
                putf(&ea, " | %s", a_next);
                putf(&eb, " | %s", b_next);
            }
            def_rule(j, an, ea.s);
            def_rule(j, bn, eb.s);
            free(kv.s);
            free(ea.s);
            free(eb.s);
            memcpy(a_next, an, sizeof an);
            memcpy(b_next, bn, sizeof bn);
        }
        if (ok)
            putf(b, "\"{\" ws %s \"}\"", a_next);
    }
    free(keys);
    free(vals);
    free(required);
    return ok;
}

static bool array_expr(js *j, json_t *s, sb *b)
{
    long long mn, mx;
    if (!uint_kw(j, s, "minItems", &mn) || !uint_kw(j, s, "maxItems", &mx))
        return false;
    if (mn < 0)
        mn = 0;
    if (mx >= 0 && mn > mx)
        return fail(j, VT_ERR_UNSUPPORTED, "minItems %lld > maxItems %lld", mn, mx);
    json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    json_t *addl = json_object_get(s, "additionalItems");
    json_t *tuple = prefix ? prefix : (json_is_array(items) ? items : NULL);
    json_t *rest = prefix ? items : (tuple ? addl : items); /* schema of items past the tuple */
    if (prefix && !json_is_array(prefix))
        return fail(j, VT_ERR_FORMAT, "'prefixItems' must be an array");
    char item[24] = "";
    bool rest_allowed = true;
    if (rest && json_is_false(rest)) {
        rest_allowed = false;
    } else if (rest && !json_is_true(rest)) {
        size_t old = path_push(j, prefix ? "items" : (tuple ? "additionalItems" : "items"), NULL);
        bool ok = visit(j, rest, item);
        j->path[old] = 0;
        if (!ok)
            return false;
    } else {
        j->need_value = true;
        snprintf(item, sizeof item, "value");
        if (tuple && !rest)
            rest_allowed = false; /* generate the tuple alone */
    }
    puts_(b, "\"[\" ws ");
    size_t nt = tuple ? json_array_size(tuple) : 0;
    if (nt) {
        if (mx >= 0 && (long long)nt > mx)
            return fail(j, VT_ERR_UNSUPPORTED, "a tuple longer than maxItems");
        for (size_t i = 0; i < nt; i++) {
            char nm[24], idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            size_t old = path_push(j, prefix ? "prefixItems" : "items", idx);
            bool ok = visit(j, json_array_get(tuple, i), nm);
            j->path[old] = 0;
            if (!ok)
                return false;
            putf(b, "%s%s ws ", i ? "\",\" ws " : "", nm);
        }
        long long more_min = mn > (long long)nt ? mn - (long long)nt : 0;
        if (more_min > 0 && !rest_allowed)
            return fail(j, VT_ERR_UNSUPPORTED, "minItems longer than a closed tuple");
        if (rest_allowed && (more_min > 0 || mx < 0 || mx > (long long)nt)) {
            if (mx >= 0)
                putf(b, "( \",\" ws %s ws ){%lld,%lld} ", item, more_min, mx - (long long)nt);
            else
                putf(b, "( \",\" ws %s ws ){%lld,} ", item, more_min);
        }
    } else if (!rest_allowed) {
        if (mn > 0)
            return fail(j, VT_ERR_UNSUPPORTED, "minItems with no items allowed");
    } else if (mx == 0) {
        /* nothing */
    } else {
        bool opt = mn == 0;
        if (opt)
            puts_(b, "( ");
        putf(b, "%s ws ", item);
        long long lo = mn > 0 ? mn - 1 : 0;
        if (mx >= 0)
            putf(b, "( \",\" ws %s ws ){%lld,%lld} ", item, lo, mx - 1);
        else
            putf(b, "( \",\" ws %s ws ){%lld,} ", item, lo);
        if (opt)
            puts_(b, ")? ");
    }
    puts_(b, "\"]\"");
    return true;
}

/* The expression of one type name under schema s. */
static bool type_expr(js *j, json_t *s, const char *t, sb *b)
{
    if (!strcmp(t, "string"))
        return string_expr(j, s, b);
    if (!strcmp(t, "integer"))
        return integer_expr(j, s, b);
    if (!strcmp(t, "number"))
        return number_expr(j, s, b);
    if (!strcmp(t, "boolean"))
        return puts_(b, "boolean"), true;
    if (!strcmp(t, "null"))
        return puts_(b, "null"), true;
    if (!strcmp(t, "object"))
        return object_expr(j, s, b);
    if (!strcmp(t, "array"))
        return array_expr(j, s, b);
    return fail(j, VT_ERR_FORMAT, "unknown type '%.40s'", t);
}

/* Resolves a local reference to its schema. */
static json_t *resolve(js *j, const char *ref)
{
    if (ref[0] != '#')
        return fail(j, VT_ERR_UNSUPPORTED, "$ref '%.80s': only local references (#...) are "
                    "supported", ref), NULL;
    json_t *cur = j->root;
    const char *p = ref + 1;
    while (*p == '/') {
        p++;
        char seg[256];
        size_t n = 0;
        while (*p && *p != '/' && n + 1 < sizeof seg) {
            if (p[0] == '~' && p[1] == '0')
                seg[n++] = '~', p += 2;
            else if (p[0] == '~' && p[1] == '1')
                seg[n++] = '/', p += 2;
            else
                seg[n++] = *p++;
        }
        seg[n] = 0;
        if (json_is_object(cur)) {
            cur = json_object_get(cur, seg);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long idx = strtoul(seg, &end, 10);
            cur = *end ? NULL : json_array_get(cur, idx);
        } else {
            cur = NULL;
        }
        if (!cur)
            break;
    }
    if (!cur || *p)
        return fail(j, VT_ERR_FORMAT, "$ref '%.80s' points to nothing", ref), NULL;
    return cur;
}

static bool visit_ref(js *j, const char *ref, char *name_out)
{
    for (size_t k = 0; k < j->n_refs; k++)
        if (!strcmp(j->refs[k].ref, ref)) {
            memcpy(name_out, j->refs[k].name, 24);
            return true;
        }
    json_t *target = resolve(j, ref);
    if (!target)
        return false;
    if (j->n_refs == j->cap_refs) {
        size_t cap = j->cap_refs ? j->cap_refs * 2 : 8;
        ref_rule *nr = realloc(j->refs, cap * sizeof *nr);
        if (!nr)
            return fail(j, VT_ERR_NOMEM, "out of memory");
        j->refs = nr;
        j->cap_refs = cap;
    }
    ref_rule *rr = &j->refs[j->n_refs];
    if (!(rr->ref = strdup(ref)))
        return fail(j, VT_ERR_NOMEM, "out of memory");
    new_name(j, rr->name);
    memcpy(name_out, rr->name, 24);
    j->n_refs++;
    char inner[24];
    size_t old = path_push(j, "$ref", NULL);
    bool ok = visit(j, target, inner);
    j->path[old] = 0;
    if (ok)
        def_rule(j, name_out, inner);
    return ok;
}

/* ---- oneOf: accepted only when no value can match two branches ---- */

enum { T_NULL = 1, T_BOOL = 2, T_OBJECT = 4, T_ARRAY = 8, T_NUMBER = 16, T_STRING = 32,
       T_ALL = 63 };

static unsigned type_bit(const char *t)
{
    return !strcmp(t, "null") ? T_NULL : !strcmp(t, "boolean") ? T_BOOL
           : !strcmp(t, "object") ? T_OBJECT : !strcmp(t, "array") ? T_ARRAY
           : !strcmp(t, "number") || !strcmp(t, "integer") ? T_NUMBER
           : !strcmp(t, "string") ? T_STRING : T_ALL;
}

static unsigned value_bit(json_t *v)
{
    return json_is_null(v) ? T_NULL : json_is_boolean(v) ? T_BOOL : json_is_object(v) ? T_OBJECT
           : json_is_array(v) ? T_ARRAY : json_is_number(v) ? T_NUMBER : T_STRING;
}

/* A branch's possible values: a list (enum/const, *vals) or type bits. */
static unsigned branch_types(js *j, json_t *b, json_t **vals, int depth)
{
    *vals = NULL;
    if (!json_is_object(b))
        return T_ALL;
    json_t *ref = json_object_get(b, "$ref");
    if (ref && json_is_string(ref) && depth < 8) {
        json_t *t = resolve(j, json_string_value(ref));
        j->err = VT_OK; /* a bad reference is reported when visited */
        return t ? branch_types(j, t, vals, depth + 1) : T_ALL;
    }
    json_t *c = json_object_get(b, "const"), *e = json_object_get(b, "enum");
    if (c || (e && json_is_array(e))) {
        *vals = c ? c : e;
        return 0;
    }
    json_t *t = json_object_get(b, "type");
    if (json_is_string(t))
        return type_bit(json_string_value(t));
    if (json_is_array(t)) {
        unsigned bits = 0;
        for (size_t i = 0; i < json_array_size(t); i++) {
            const char *n = json_string_value(json_array_get(t, i));
            bits |= n ? type_bit(n) : T_ALL;
        }
        return bits;
    }
    return T_ALL;
}

static bool values_meet(json_t *a, bool a_one, json_t *b, bool b_one)
{
    size_t na = a_one ? 1 : json_array_size(a), nb = b_one ? 1 : json_array_size(b);
    for (size_t x = 0; x < na; x++)
        for (size_t y = 0; y < nb; y++)
            if (json_equal(a_one ? a : json_array_get(a, x), b_one ? b : json_array_get(b, y)))
                return true;
    return false;
}

static bool types_meet(json_t *vals, bool one, unsigned bits)
{
    size_t n = one ? 1 : json_array_size(vals);
    for (size_t x = 0; x < n; x++)
        if (value_bit(one ? vals : json_array_get(vals, x)) & bits)
            return true;
    return false;
}

/* True when two branches of alts can match one value (as far as can be told). */
static bool branches_overlap(js *j, json_t *alts, size_t *bi, size_t *bk)
{
    size_t n = json_array_size(alts);
    for (size_t x = 0; x < n; x++)
        for (size_t y = x + 1; y < n; y++) {
            json_t *vx, *vy;
            unsigned tx = branch_types(j, json_array_get(alts, x), &vx, 0);
            unsigned ty = branch_types(j, json_array_get(alts, y), &vy, 0);
            bool ox = vx && !json_is_array(vx), oy = vy && !json_is_array(vy);
            if (json_is_object(json_array_get(alts, x)) &&
                json_object_get(json_array_get(alts, x), "const"))
                ox = true;
            if (json_is_object(json_array_get(alts, y)) &&
                json_object_get(json_array_get(alts, y), "const"))
                oy = true;
            bool meet = vx && vy   ? values_meet(vx, ox, vy, oy)
                        : vx       ? types_meet(vx, ox, ty)
                        : vy       ? types_meet(vy, oy, tx)
                                   : (tx & ty) != 0;
            if (meet) {
                *bi = x;
                *bk = y;
                return true;
            }
        }
    return false;
}

static bool visit(js *j, json_t *s, char *name_out)
{
    if (j->err)
        return false;
    if (++j->depth > GR_MAX_NEST)
        return fail(j, VT_ERR_UNSUPPORTED, "schemas nested deeper than %d", GR_MAX_NEST);
    bool ok = true;
    sb e = {0};
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) {
        j->need_value = true;
        snprintf(name_out, 24, "value");
        j->depth--;
        return true;
    }
    if (json_is_false(s)) {
        j->depth--;
        return fail(j, VT_ERR_UNSUPPORTED, "the schema false matches nothing");
    }
    if (!json_is_object(s)) {
        j->depth--;
        return fail(j, VT_ERR_FORMAT, "a schema must be an object or a boolean");
    }
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (!in_list(k, known) && !in_list(k, annotations)) {
            j->depth--;
            return fail(j, VT_ERR_UNSUPPORTED, "keyword '%.60s' is not supported", k);
        }
    }
    json_t *ref = json_object_get(s, "$ref"), *en = json_object_get(s, "enum");
    json_t *cn = json_object_get(s, "const"), *any = json_object_get(s, "anyOf");
    json_t *one = json_object_get(s, "oneOf"), *all = json_object_get(s, "allOf");
    json_t *type = json_object_get(s, "type");
    if (ref) {
        const char *r = json_string_value(ref);
        ok = r ? visit_ref(j, r, name_out) : fail(j, VT_ERR_FORMAT, "'$ref' must be a string");
        j->depth--;
        return ok;
    }
    if (cn) {
        ok = json_literal(j, cn, &e);
    } else if (en) {
        if (!json_is_array(en) || json_array_size(en) == 0) {
            ok = fail(j, VT_ERR_FORMAT, "'enum' must be a non-empty array");
        } else {
            puts_(&e, "(");
            for (size_t i = 0; ok && i < json_array_size(en); i++) {
                if (i)
                    puts_(&e, " | ");
                ok = json_literal(j, json_array_get(en, i), &e);
            }
            puts_(&e, ")");
        }
    } else if (any || one) {
        json_t *alts = any ? any : one;
        if (any && one)
            ok = fail(j, VT_ERR_UNSUPPORTED, "anyOf together with oneOf");
        else if (type || json_object_get(s, "properties"))
            ok = fail(j, VT_ERR_UNSUPPORTED, "%s next to type or properties (put them in each "
                      "branch)", any ? "anyOf" : "oneOf");
        else if (!json_is_array(alts) || json_array_size(alts) == 0)
            ok = fail(j, VT_ERR_FORMAT, "'%s' must be a non-empty array", any ? "anyOf" : "oneOf");
        size_t bx, by;
        if (ok && one && branches_overlap(j, alts, &bx, &by))
            ok = fail(j, VT_ERR_UNSUPPORTED, "oneOf branches %zu and %zu may match the same value "
                      "(only branches of distinct types or distinct constants are supported; "
                      "anyOf works)", bx, by);
        for (size_t i = 0; ok && i < json_array_size(alts); i++) {
            char nm[24], idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            size_t old = path_push(j, any ? "anyOf" : "oneOf", idx);
            ok = visit(j, json_array_get(alts, i), nm);
            j->path[old] = 0;
            putf(&e, "%s%s", i ? " | " : "", nm);
        }
    } else if (all) {
        if (!json_is_array(all) || json_array_size(all) != 1) {
            ok = fail(j, VT_ERR_UNSUPPORTED, "allOf with more than one schema");
        } else {
            char nm[24];
            size_t old = path_push(j, "allOf", "0");
            ok = visit(j, json_array_get(all, 0), nm);
            j->path[old] = 0;
            puts_(&e, nm);
        }
    } else if (type) {
        if (json_is_string(type)) {
            ok = type_expr(j, s, json_string_value(type), &e);
        } else if (json_is_array(type) && json_array_size(type) > 0) {
            puts_(&e, "(");
            for (size_t i = 0; ok && i < json_array_size(type); i++) {
                const char *t = json_string_value(json_array_get(type, i));
                if (i)
                    puts_(&e, " | ");
                ok = t ? type_expr(j, s, t, &e) : fail(j, VT_ERR_FORMAT, "'type' must hold "
                                                       "strings");
            }
            puts_(&e, ")");
        } else {
            ok = fail(j, VT_ERR_FORMAT, "'type' must be a string or a non-empty array");
        }
    } else if (json_object_get(s, "properties") || json_object_get(s, "required") ||
               json_object_get(s, "additionalProperties")) {
        ok = object_expr(j, s, &e);
    } else if (json_object_get(s, "items") || json_object_get(s, "prefixItems") ||
               json_object_get(s, "minItems") || json_object_get(s, "maxItems")) {
        ok = array_expr(j, s, &e);
    } else if (json_object_get(s, "minLength") || json_object_get(s, "maxLength") ||
               json_object_get(s, "pattern") || json_object_get(s, "format")) {
        ok = string_expr(j, s, &e);
    } else if (json_object_get(s, "minimum") || json_object_get(s, "maximum") ||
               json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum")) {
        ok = number_expr(j, s, &e);
    } else {
        j->need_value = true;
        puts_(&e, "value");
    }
    if (ok && e.oom)
        ok = fail(j, VT_ERR_NOMEM, "out of memory");
    if (ok) {
        intern_rule(j, e.s, name_out);
    }
    free(e.s);
    j->depth--;
    return ok;
}

vt_err smp_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf)
{
    *gbnf = NULL;
    js j = {0};
    char top[24];
    if (!schema) { /* any JSON object */
        snprintf(top, sizeof top, "object");
    } else {
        json_error_t je;
        j.root = json_loadb(schema, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (!j.root)
            return vt_fail(VT_ERR_FORMAT, "json schema: not valid JSON (line %d, column %d: %s)",
                           je.line, je.column, je.text);
        if (!visit(&j, j.root, top) && !j.err)
            fail(&j, VT_ERR_INTERNAL, "conversion failed");
    }
    sb out = {0};
    if (!j.err) {
        putf(&out, "root ::= %s ws\n", top);
        puts_(&out, prim_rules);
        if (j.rules.s)
            puts_(&out, j.rules.s);
        if (out.oom || j.rules.oom)
            fail(&j, VT_ERR_NOMEM, "out of memory");
    }
    for (size_t k = 0; k < j.n_refs; k++)
        free(j.refs[k].ref);
    free(j.refs);
    for (size_t k = 0; k < j.n_interned; k++)
        free(j.interned[k].ref);
    free(j.interned);
    free(j.rules.s);
    json_decref(j.root);
    if (j.err) {
        free(out.s);
        return vt_fail(j.err, "%s", j.msg);
    }
    *gbnf = out.s;
    return VT_OK;
}
