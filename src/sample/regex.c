/*
 * regex.c - regular expressions to GBNF (grammar.h's smp_regex_to_gbnf, and
 * gr_regex_expr for JSON Schema "pattern"): the common subset - literals,
 * escapes (\d \w \s and their negations, \t \n \r \f \v \0 \xHH \uHHHH, an
 * escaped punctuation character), classes with ranges and negation, '.',
 * groups (capturing, (?:...) and (?<name>...)), alternation, the
 * quantifiers * + ? {m} {m,} {m,n} (lazy and possessive suffixes accepted:
 * the language is the same), and anchors ^ at the start and $ at the end
 * (the whole output must match anyway). Back-references, lookaround, word
 * boundaries, flags and anchors elsewhere are a clear VT_ERR_UNSUPPORTED.
 *
 * Classes are turned into code point ranges and written back as GBNF
 * classes, so that in JSON-string mode the characters a JSON string cannot
 * hold raw (", \, controls) can be taken out of them; a literal " or \ is
 * then written in its escaped form.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"
#include "sample/grammar_int.h"

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
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

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

typedef struct {
    const char *s;
    size_t n, i;
    bool json; /* inside a JSON string: no raw ", \ or controls */
    sbuf out;
    int depth;
    vt_err err;
    char msg[200];
} rx;

__attribute__((format(printf, 3, 4))) static bool rx_fail(rx *r, vt_err e, const char *fmt, ...)
{
    if (r->err)
        return false;
    char m[150];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    snprintf(r->msg, sizeof r->msg, "regex: at offset %zu: %s", r->i, m);
    r->err = e;
    return false;
}

/* ---- code point ranges ---- */

typedef struct {
    gr_range *r;
    uint32_t n, cap;
} rset;

static bool rs_add(rset *s, uint32_t lo, uint32_t hi)
{
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 8;
        gr_range *nr = realloc(s->r, cap * sizeof *nr);
        if (!nr)
            return false;
        s->r = nr;
        s->cap = cap;
    }
    s->r[s->n++] = (gr_range){lo, hi};
    return true;
}

static int cmp_r(const void *a, const void *b)
{
    const gr_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorts and merges; with negate, the complement over all code points. */
static bool rs_norm(rset *s, bool negate)
{
    qsort(s->r, s->n, sizeof *s->r, cmp_r);
    uint32_t m = 0;
    for (uint32_t k = 0; k < s->n; k++) {
        if (m && s->r[k].lo <= s->r[m - 1].hi + 1) {
            if (s->r[k].hi > s->r[m - 1].hi)
                s->r[m - 1].hi = s->r[k].hi;
        } else {
            s->r[m++] = s->r[k];
        }
    }
    s->n = m;
    if (!negate)
        return true;
    rset c = {0};
    uint32_t next = 0;
    for (uint32_t k = 0; k < s->n; k++) {
        if (s->r[k].lo > next && !rs_add(&c, next, s->r[k].lo - 1))
            goto oom;
        next = s->r[k].hi + 1;
    }
    if (next <= 0x10FFFF && !rs_add(&c, next, 0x10FFFF))
        goto oom;
    free(s->r);
    *s = c;
    return true;
oom:
    free(c.r);
    return false;
}

/* Removes what a JSON string cannot hold raw. */
static bool rs_json_safe(rset *s)
{
    rset c = {0};
    static const gr_range bad[] = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}, {0x7F, 0x7F}};
    for (uint32_t k = 0; k < s->n; k++) {
        uint32_t lo = s->r[k].lo, hi = s->r[k].hi;
        for (size_t b = 0; b < sizeof bad / sizeof *bad && lo <= hi; b++) {
            if (bad[b].hi < lo || bad[b].lo > hi)
                continue;
            if (bad[b].lo > lo && !rs_add(&c, lo, bad[b].lo - 1))
                goto oom;
            lo = bad[b].hi + 1;
        }
        if (lo <= hi && !rs_add(&c, lo, hi))
            goto oom;
    }
    free(s->r);
    *s = c;
    return true;
oom:
    free(c.r);
    return false;
}

static void put_cp(sbuf *b, uint32_t cp)
{
    char t[16];
    if (cp >= 0x20 && cp < 0x7F && cp != '"' && cp != '\\' && cp != ']' && cp != '[' &&
        cp != '-' && cp != '^')
        snprintf(t, sizeof t, "%c", (char)cp);
    else if (cp < 0x100)
        snprintf(t, sizeof t, "\\x%02X", cp);
    else if (cp < 0x10000)
        snprintf(t, sizeof t, "\\u%04X", cp);
    else
        snprintf(t, sizeof t, "\\U%08X", cp);
    sb_str(b, t);
}

static bool emit_set(rx *r, rset *s)
{
    if (r->json && !rs_json_safe(s))
        return rx_fail(r, VT_ERR_NOMEM, "out of memory");
    if (s->n == 0)
        return rx_fail(r, VT_ERR_UNSUPPORTED, "a character class that matches nothing");
    sb_str(&r->out, "[");
    for (uint32_t k = 0; k < s->n; k++) {
        put_cp(&r->out, s->r[k].lo);
        if (s->r[k].hi != s->r[k].lo) {
            sb_str(&r->out, "-");
            put_cp(&r->out, s->r[k].hi);
        }
    }
    sb_str(&r->out, "]");
    return true;
}

/* A literal code point. */
static bool emit_char(rx *r, uint32_t cp)
{
    if (r->json && (cp < 0x20 || cp == '"' || cp == '\\' || cp == 0x7F)) {
        char t[16];
        if (cp == '"')
            sb_str(&r->out, "\"\\\\\\\"\"");
        else if (cp == '\\')
            sb_str(&r->out, "\"\\\\\\\\\"");
        else {
            snprintf(t, sizeof t, "\"\\\\u%04X\"", cp);
            sb_str(&r->out, t);
        }
        return true;
    }
    rset s = {0};
    bool ok = rs_add(&s, cp, cp) && emit_set(r, &s);
    free(s.r);
    return ok || rx_fail(r, VT_ERR_NOMEM, "out of memory");
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool utf8(rx *r, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)r->s + r->i;
    size_t left = r->n - r->i, n;
    uint32_t v;
    if (s[0] < 0x80)
        v = s[0], n = 1;
    else if (s[0] >= 0xC2 && s[0] <= 0xDF)
        v = s[0] & 0x1F, n = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        v = s[0] & 0x0F, n = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        v = s[0] & 0x07, n = 4;
    else
        return rx_fail(r, VT_ERR_FORMAT, "invalid UTF-8");
    if (left < n)
        return rx_fail(r, VT_ERR_FORMAT, "invalid UTF-8");
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return rx_fail(r, VT_ERR_FORMAT, "invalid UTF-8");
        v = v << 6 | (s[k] & 0x3F);
    }
    r->i += n;
    *cp = v;
    return true;
}

/* Adds the class of a shorthand escape (d w s D W S) to s; false if c is none. */
static bool shorthand(char c, rset *s, bool *neg_needed, bool *ok)
{
    rset t = {0};
    bool neg = c == 'D' || c == 'W' || c == 'S';
    char l = (char)(c | 0x20);
    *ok = true;
    if (l == 'd')
        *ok = rs_add(&t, '0', '9');
    else if (l == 'w')
        *ok = rs_add(&t, '0', '9') && rs_add(&t, 'A', 'Z') && rs_add(&t, 'a', 'z') &&
              rs_add(&t, '_', '_');
    else if (l == 's')
        *ok = rs_add(&t, '\t', '\r') && rs_add(&t, ' ', ' ');
    else
        return false;
    if (*ok && neg)
        *ok = rs_norm(&t, true);
    for (uint32_t k = 0; *ok && k < t.n; k++)
        *ok = rs_add(s, t.r[k].lo, t.r[k].hi);
    free(t.r);
    (void)neg_needed;
    return true;
}

/* After a backslash (outside or inside a class): one code point in *cp, or
 * a shorthand class added to set (then *is_set). */
static bool escape(rx *r, uint32_t *cp, rset *set, bool *is_set)
{
    *is_set = false;
    if (r->i >= r->n)
        return rx_fail(r, VT_ERR_FORMAT, "a trailing backslash");
    char c = r->s[r->i++];
    bool ok;
    if (shorthand(c, set, NULL, &ok)) {
        *is_set = true;
        return ok || rx_fail(r, VT_ERR_NOMEM, "out of memory");
    }
    int digits = 0;
    switch (c) {
    case 't': *cp = '\t'; return true;
    case 'n': *cp = '\n'; return true;
    case 'r': *cp = '\r'; return true;
    case 'f': *cp = '\f'; return true;
    case 'v': *cp = '\v'; return true;
    case '0': *cp = 0; return true;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'b': case 'B':
        return rx_fail(r, VT_ERR_UNSUPPORTED, "word boundaries (\\%c) are not supported", c);
    default:
        if (c >= '1' && c <= '9')
            return rx_fail(r, VT_ERR_UNSUPPORTED, "back-references are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            return rx_fail(r, VT_ERR_UNSUPPORTED, "the escape \\%c is not supported", c);
        r->i--;
        return utf8(r, cp); /* an escaped punctuation (or any other) character */
    }
    uint32_t v = 0;
    for (int k = 0; k < digits; k++) {
        int h = r->i < r->n ? hexv(r->s[r->i]) : -1;
        if (h < 0)
            return rx_fail(r, VT_ERR_FORMAT, "\\%c needs %d hex digits", c, digits);
        v = v << 4 | (uint32_t)h;
        r->i++;
    }
    *cp = v;
    return true;
}

static bool parse_class(rx *r)
{
    rset s = {0};
    bool neg = false, ok = true;
    if (r->i < r->n && r->s[r->i] == '^') {
        neg = true;
        r->i++;
    }
    bool first = true;
    for (;;) {
        if (r->i >= r->n) {
            ok = rx_fail(r, VT_ERR_FORMAT, "an unterminated character class");
            break;
        }
        if (r->s[r->i] == ']' && !first) {
            r->i++;
            break;
        }
        first = false;
        uint32_t lo, hi;
        bool is_set = false;
        if (r->s[r->i] == '\\') {
            r->i++;
            if (!(ok = escape(r, &lo, &s, &is_set)))
                break;
        } else if (r->s[r->i] == '[' && r->i + 1 < r->n && r->s[r->i + 1] == ':') {
            ok = rx_fail(r, VT_ERR_UNSUPPORTED, "POSIX classes ([:name:]) are not supported");
            break;
        } else if (!(ok = utf8(r, &lo))) {
            break;
        }
        if (is_set)
            continue;
        hi = lo;
        if (r->i + 1 < r->n && r->s[r->i] == '-' && r->s[r->i + 1] != ']') {
            r->i++;
            if (r->s[r->i] == '\\') {
                r->i++;
                if (!(ok = escape(r, &hi, &s, &is_set)))
                    break;
                if (is_set) {
                    ok = rx_fail(r, VT_ERR_FORMAT, "a range ending in a class escape");
                    break;
                }
            } else if (!(ok = utf8(r, &hi))) {
                break;
            }
            if (hi < lo) {
                ok = rx_fail(r, VT_ERR_FORMAT, "a range out of order");
                break;
            }
        }
        if (!(ok = rs_add(&s, lo, hi) || rx_fail(r, VT_ERR_NOMEM, "out of memory")))
            break;
    }
    if (ok)
        ok = (rs_norm(&s, neg) || rx_fail(r, VT_ERR_NOMEM, "out of memory")) && emit_set(r, &s);
    free(s.r);
    return ok;
}

static bool parse_alt(rx *r);

static bool parse_uint(rx *r, uint32_t *v)
{
    uint64_t x = 0;
    size_t at = r->i;
    while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') {
        x = x * 10 + (uint64_t)(r->s[r->i++] - '0');
        if (x > GR_MAX_REPEAT)
            return rx_fail(r, VT_ERR_UNSUPPORTED, "a repetition count past %u", GR_MAX_REPEAT);
    }
    if (r->i == at)
        return false;
    *v = (uint32_t)x;
    return true;
}

/* A quantifier after an atom (written right after it); a '{' that does not
 * start one is a literal, as in most engines. */
static bool parse_quant(rx *r)
{
    if (r->i >= r->n)
        return true;
    char c = r->s[r->i];
    if (c == '*' || c == '+' || c == '?') {
        r->i++;
        char t[2] = {c, 0};
        sb_str(&r->out, t);
    } else if (c == '{') {
        size_t save = r->i++;
        uint32_t m = 0, n = 0;
        bool has_n = true;
        if (!parse_uint(r, &m)) {
            if (r->err)
                return false;
            r->i = save;
            return true;
        }
        if (r->i < r->n && r->s[r->i] == ',') {
            r->i++;
            if (!parse_uint(r, &n)) {
                if (r->err)
                    return false;
                has_n = false;
            }
        } else {
            n = m;
        }
        if (r->i >= r->n || r->s[r->i] != '}') {
            r->i = save;
            return true;
        }
        r->i++;
        if (has_n && n < m)
            return rx_fail(r, VT_ERR_FORMAT, "{%u,%u}: the maximum is below the minimum", m, n);
        char t[48];
        if (has_n)
            snprintf(t, sizeof t, "{%u,%u}", m, n);
        else
            snprintf(t, sizeof t, "{%u,}", m);
        sb_str(&r->out, t);
    } else {
        return true;
    }
    if (r->i < r->n && (r->s[r->i] == '?' || r->s[r->i] == '+'))
        r->i++; /* lazy / possessive: the same language */
    if (r->i < r->n && (r->s[r->i] == '*' || r->s[r->i] == '+' || r->s[r->i] == '?'))
        return rx_fail(r, VT_ERR_FORMAT, "a quantifier after a quantifier");
    return true;
}

static bool parse_seq(rx *r)
{
    bool any = false;
    sb_str(&r->out, "(");
    while (r->i < r->n && !r->err) {
        char c = r->s[r->i];
        if (c == '|' || c == ')')
            break;
        sb_str(&r->out, " ");
        if (c == '(') {
            r->i++;
            if (r->i < r->n && r->s[r->i] == '?') {
                if (r->i + 1 < r->n && r->s[r->i + 1] == ':') {
                    r->i += 2;
                } else if (r->i + 2 < r->n && r->s[r->i + 1] == '<' && r->s[r->i + 2] != '=' &&
                           r->s[r->i + 2] != '!') {
                    r->i += 2;
                    while (r->i < r->n && r->s[r->i] != '>')
                        r->i++;
                    if (r->i >= r->n)
                        return rx_fail(r, VT_ERR_FORMAT, "an unterminated group name");
                    r->i++;
                } else {
                    return rx_fail(r, VT_ERR_UNSUPPORTED, "(?%c...) groups (lookaround, flags) "
                                   "are not supported", r->i + 1 < r->n ? r->s[r->i + 1] : ' ');
                }
            }
            if (++r->depth > GR_MAX_NEST)
                return rx_fail(r, VT_ERR_UNSUPPORTED, "groups nested deeper than %d",
                               GR_MAX_NEST);
            if (!parse_alt(r))
                return false;
            r->depth--;
            if (r->i >= r->n || r->s[r->i] != ')')
                return rx_fail(r, VT_ERR_FORMAT, "a '(' without its ')'");
            r->i++;
        } else if (c == '[') {
            r->i++;
            if (!parse_class(r))
                return false;
        } else if (c == '.') {
            r->i++;
            rset s = {0};
            bool ok = rs_add(&s, '\n', '\n') && rs_norm(&s, true);
            ok = ok ? emit_set(r, &s) : rx_fail(r, VT_ERR_NOMEM, "out of memory");
            free(s.r);
            if (!ok)
                return false;
        } else if (c == '^') {
            if (r->i != 0)
                return rx_fail(r, VT_ERR_UNSUPPORTED, "'^' is supported only at the start");
            r->i++;
            sb_str(&r->out, "\"\"");
            continue;
        } else if (c == '$') {
            if (r->i + 1 != r->n)
                return rx_fail(r, VT_ERR_UNSUPPORTED, "'$' is supported only at the end");
            r->i++;
            sb_str(&r->out, "\"\"");
            continue;
        } else if (c == '*' || c == '+' || c == '?') {
            return rx_fail(r, VT_ERR_FORMAT, "'%c' with nothing to repeat", c);
        } else if (c == '\\') {
            r->i++;
            uint32_t cp;
            rset s = {0};
            bool is_set;
            bool ok = escape(r, &cp, &s, &is_set);
            if (ok)
                ok = is_set ? (rs_norm(&s, false) && emit_set(r, &s)) : emit_char(r, cp);
            free(s.r);
            if (!ok)
                return false;
        } else {
            uint32_t cp;
            if (!utf8(r, &cp) || !emit_char(r, cp))
                return false;
        }
        any = true;
        if (!parse_quant(r))
            return false;
    }
    if (!any)
        sb_str(&r->out, " \"\"");
    sb_str(&r->out, " )");
    return !r->err;
}

static bool parse_alt(rx *r)
{
    sb_str(&r->out, "(");
    if (!parse_seq(r))
        return false;
    while (r->i < r->n && r->s[r->i] == '|') {
        r->i++;
        sb_str(&r->out, " | ");
        if (!parse_seq(r))
            return false;
    }
    sb_str(&r->out, ")");
    return true;
}

vt_err gr_regex_expr(const char *re, size_t len, bool json, char **expr)
{
    *expr = NULL;
    if (!re && len)
        return vt_fail(VT_ERR_INVALID, "regex: no text");
    if (len > GR_MAX_TEXT)
        return vt_fail(VT_ERR_FORMAT, "regex: %zu bytes is past the limit", len);
    rx r = {.s = re ? re : "", .n = len, .json = json};
    if (parse_alt(&r) && r.i < r.n)
        rx_fail(&r, VT_ERR_FORMAT, "a ')' without its '('");
    if (!r.err && r.out.oom)
        rx_fail(&r, VT_ERR_NOMEM, "out of memory");
    if (r.err) {
        free(r.out.s);
        return vt_fail(r.err, "%s", r.msg);
    }
    *expr = r.out.s;
    return VT_OK;
}

vt_err smp_regex_to_gbnf(const char *re, size_t len, char **gbnf)
{
    *gbnf = NULL;
    char *e;
    vt_err err = gr_regex_expr(re, len, false, &e);
    if (err)
        return err;
    size_t n = strlen(e) + 16;
    *gbnf = malloc(n);
    if (!*gbnf) {
        free(e);
        return vt_fail(VT_ERR_NOMEM, "regex: out of memory");
    }
    snprintf(*gbnf, n, "root ::= %s\n", e);
    free(e);
    return VT_OK;
}
