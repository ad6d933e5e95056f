/*
 * grammar_parse.c - the GBNF parser: llama.cpp's grammar dialect (rules
 * `name ::= alternatives`, `|`, groups, `*` `+` `?` `{m}` `{m,}` `{m,n}`,
 * string literals, character classes with ranges and `^` negation, `.`,
 * escapes \x.. \u.... \U........ \t \r \n \\ \" \[ \] \- , `#` comments,
 * newlines ending a rule except inside groups or after `|`) into the flat
 * element table of grammar_int.h.
 *
 * Groups become generated rules (named after their parent, "parent#N");
 * repetitions are rewritten right-recursively (x* : R ::= x R | ), bounded
 * ones as a chain of optional rules, so the matcher never needs left
 * recursion, which is refused (as llama.cpp does) with the rule named. Every
 * error says where: "line L, column C: ...". Input size, nesting and
 * repetition counts are bounded (grammar_int.h) so hostile text cannot make
 * the parser run away.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>

#include "sample/grammar_int.h"
#include "util/util.h"

typedef struct {
    gr_el *v;
    uint32_t n, cap;
} elvec;

typedef struct {
    char *name;
    elvec body; /* alternatives, each ended by GR_END */
    bool defined;
    uint32_t ref_at; /* byte offset of the first reference (for errors) */
    uint32_t n_gen;  /* generated children so far */
} prule;

typedef struct {
    const char *s;
    size_t n, i;
    prule *rules;
    uint32_t n_rules, cap_rules;
    gr_range *ranges;
    uint32_t n_ranges, cap_ranges;
    gr_class *classes;
    uint32_t n_classes, cap_classes;
    uint32_t *hash; /* open addressing over rule ids + 1; 0 = empty */
    uint32_t hash_cap;
    uint64_t total_el;
    int depth;
    vt_err err;
    char msg[256];
} parser;

static void where(const parser *p, size_t at, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t k = 0; k < at && k < p->n; k++) {
        if (p->s[k] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)p->s[k] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

__attribute__((format(printf, 3, 4))) static bool fail_at(parser *p, size_t at, const char *fmt,
                                                          ...)
{
    if (p->err)
        return false;
    int l, c;
    where(p, at, &l, &c);
    char m[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    snprintf(p->msg, sizeof p->msg, "grammar: line %d, column %d: %s", l, c, m);
    p->err = VT_ERR_FORMAT;
    return false;
}

static bool nomem(parser *p)
{
    if (!p->err) {
        p->err = VT_ERR_NOMEM;
        snprintf(p->msg, sizeof p->msg, "grammar: out of memory");
    }
    return false;
}

static bool push_el(parser *p, elvec *v, uint32_t kind, uint32_t arg)
{
    if (++p->total_el > GR_MAX_ELEMENTS)
        return fail_at(p, p->i, "the grammar expands to more than %u elements", GR_MAX_ELEMENTS);
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 16;
        gr_el *nv = realloc(v->v, cap * sizeof *nv);
        if (!nv)
            return nomem(p);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = (gr_el){kind, arg};
    return true;
}

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t k = 0; k < n; k++)
        h = (h ^ (unsigned char)s[k]) * 16777619u;
    return h;
}

static bool hash_insert(parser *p, uint32_t r)
{
    if ((p->n_rules + 1) * 2 > p->hash_cap) {
        uint32_t cap = p->hash_cap ? p->hash_cap * 2 : 64;
        uint32_t *h = calloc(cap, sizeof *h);
        if (!h)
            return nomem(p);
        for (uint32_t k = 0; k < p->hash_cap; k++) {
            if (!p->hash[k])
                continue;
            const char *nm = p->rules[p->hash[k] - 1].name;
            uint32_t j = name_hash(nm, strlen(nm)) & (cap - 1);
            while (h[j])
                j = (j + 1) & (cap - 1);
            h[j] = p->hash[k];
        }
        free(p->hash);
        p->hash = h;
        p->hash_cap = cap;
    }
    const char *nm = p->rules[r].name;
    uint32_t j = name_hash(nm, strlen(nm)) & (p->hash_cap - 1);
    while (p->hash[j])
        j = (j + 1) & (p->hash_cap - 1);
    p->hash[j] = r + 1;
    return true;
}

/* Appends a rule named name[0..len); UINT32_MAX on OOM. */
static uint32_t new_rule(parser *p, const char *name, size_t len, size_t at)
{
    if (p->n_rules == p->cap_rules) {
        uint32_t cap = p->cap_rules ? p->cap_rules * 2 : 32;
        prule *nr = realloc(p->rules, cap * sizeof *nr);
        if (!nr)
            return nomem(p), UINT32_MAX;
        p->rules = nr;
        p->cap_rules = cap;
    }
    char *nm = malloc(len + 1);
    if (!nm)
        return nomem(p), UINT32_MAX;
    memcpy(nm, name, len);
    nm[len] = 0;
    p->rules[p->n_rules] = (prule){.name = nm, .ref_at = (uint32_t)at};
    if (!hash_insert(p, p->n_rules)) {
        free(nm);
        return UINT32_MAX;
    }
    return p->n_rules++;
}

/* The rule named name[0..len), created undefined when new; UINT32_MAX on OOM. */
static uint32_t rule_id(parser *p, const char *name, size_t len, size_t at)
{
    if (p->hash_cap) {
        uint32_t j = name_hash(name, len) & (p->hash_cap - 1);
        for (; p->hash[j]; j = (j + 1) & (p->hash_cap - 1)) {
            const char *nm = p->rules[p->hash[j] - 1].name;
            if (strlen(nm) == len && !memcmp(nm, name, len))
                return p->hash[j] - 1;
        }
    }
    return new_rule(p, name, len, at);
}

/* A new generated rule "parent#N" ('#' never appears in a written name). */
static uint32_t gen_rule(parser *p, uint32_t parent)
{
    char nm[96];
    snprintf(nm, sizeof nm, "%.60s#%u", p->rules[parent].name, ++p->rules[parent].n_gen);
    uint32_t r = new_rule(p, nm, strlen(nm), p->i);
    if (r != UINT32_MAX)
        p->rules[r].defined = true;
    return r;
}

/* ---- characters ---- */

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static void skip_space(parser *p, bool newline_ok)
{
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\t') {
            p->i++;
        } else if (c == '#') {
            while (p->i < p->n && p->s[p->i] != '\n')
                p->i++;
        } else if (newline_ok && (c == '\n' || c == '\r')) {
            p->i++;
        } else {
            break;
        }
    }
}

/* Decodes one UTF-8 character of the source; false (error set) if invalid. */
static bool utf8_char(parser *p, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)p->s + p->i;
    size_t left = p->n - p->i;
    unsigned char b = s[0];
    uint32_t v;
    size_t n;
    if (b < 0x80) {
        v = b;
        n = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
        v = b & 0x1F;
        n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        v = b & 0x0F;
        n = 3;
    } else if (b >= 0xF0 && b <= 0xF4) {
        v = b & 0x07;
        n = 4;
    } else {
        return fail_at(p, p->i, "invalid UTF-8 byte 0x%02X", b);
    }
    if (left < n)
        return fail_at(p, p->i, "truncated UTF-8 character");
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return fail_at(p, p->i, "invalid UTF-8 sequence");
        v = (v << 6) | (s[k] & 0x3F);
    }
    static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_of[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return fail_at(p, p->i, "invalid UTF-8 sequence");
    p->i += n;
    *cp = v;
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One character of a literal or class, escapes decoded. */
static bool parse_char(parser *p, uint32_t *cp)
{
    if (p->i >= p->n)
        return fail_at(p, p->i, "unexpected end of input");
    if (p->s[p->i] != '\\')
        return utf8_char(p, cp);
    size_t at = p->i++;
    if (p->i >= p->n)
        return fail_at(p, at, "unfinished escape");
    char c = p->s[p->i++];
    int digits = 0;
    switch (c) {
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    case 't': *cp = '\t'; return true;
    case 'r': *cp = '\r'; return true;
    case 'n': *cp = '\n'; return true;
    case '\\': case '"': case '[': case ']': case '-': case '^': case '/': case '\'':
        *cp = (uint32_t)(unsigned char)c;
        return true;
    default:
        return fail_at(p, at, "unknown escape '\\%c'", c >= 32 && c < 127 ? c : '?');
    }
    uint32_t v = 0;
    for (int k = 0; k < digits; k++) {
        int h = p->i < p->n ? hexval(p->s[p->i]) : -1;
        if (h < 0)
            return fail_at(p, at, "escape '\\%c' needs %d hex digits", c, digits);
        v = (v << 4) | (uint32_t)h;
        p->i++;
    }
    if (v > 0x10FFFF)
        return fail_at(p, at, "code point U+%X is past U+10FFFF", v);
    *cp = v;
    return true;
}

/* ---- classes ---- */

static int cmp_range(const void *a, const void *b)
{
    const gr_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static bool push_range(parser *p, uint32_t lo, uint32_t hi)
{
    if (p->n_ranges == p->cap_ranges) {
        uint32_t cap = p->cap_ranges ? p->cap_ranges * 2 : 64;
        gr_range *nr = realloc(p->ranges, cap * sizeof *nr);
        if (!nr)
            return nomem(p);
        p->ranges = nr;
        p->cap_ranges = cap;
    }
    p->ranges[p->n_ranges++] = (gr_range){lo, hi};
    return true;
}

static void set_lead(uint64_t *lead, uint32_t b)
{
    lead[b >> 6] |= 1ull << (b & 63);
}

/* Marks the lead bytes of the UTF-8 encodings of [lo, hi]. */
static void lead_bytes(uint64_t *lead, uint32_t lo, uint32_t hi)
{
    static const uint32_t top[4] = {0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
    uint32_t a = lo;
    for (int n = 0; n < 4 && a <= hi; n++) {
        if (a > top[n])
            continue;
        uint32_t b = VT_MIN(hi, top[n]);
        uint32_t la, lb;
        if (n == 0) {
            la = a;
            lb = b;
        } else if (n == 1) {
            la = 0xC0 | (a >> 6);
            lb = 0xC0 | (b >> 6);
        } else if (n == 2) {
            la = 0xE0 | (a >> 12);
            lb = 0xE0 | (b >> 12);
        } else {
            la = 0xF0 | (a >> 18);
            lb = 0xF0 | (b >> 18);
        }
        for (uint32_t x = la; x <= lb; x++)
            set_lead(lead, x);
        a = top[n] + 1;
    }
}

/* Turns ranges[first..] (unsorted, maybe overlapping) into a class. */
static bool finish_class(parser *p, uint32_t first, bool negate, uint32_t *out)
{
    uint32_t n = p->n_ranges - first;
    gr_range *r = n ? p->ranges + first : NULL;
    if (n)
        qsort(r, n, sizeof *r, cmp_range);
    uint32_t m = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (m > 0 && r[k].lo <= r[m - 1].hi + 1) {
            if (r[k].hi > r[m - 1].hi)
                r[m - 1].hi = r[k].hi;
        } else {
            r[m++] = r[k];
        }
    }
    p->n_ranges = first + m;
    if (negate) {
        gr_range *tmp = malloc((m + 1) * sizeof *tmp);
        if (!tmp)
            return nomem(p);
        uint32_t t = 0, next = 0;
        for (uint32_t k = 0; k < m; k++) {
            if (r[k].lo > next)
                tmp[t++] = (gr_range){next, r[k].lo - 1};
            next = r[k].hi + 1;
        }
        if (next <= 0x10FFFF)
            tmp[t++] = (gr_range){next, 0x10FFFF};
        p->n_ranges = first;
        for (uint32_t k = 0; k < t; k++)
            if (!push_range(p, tmp[k].lo, tmp[k].hi)) {
                free(tmp);
                return false;
            }
        free(tmp);
    }
    if (p->n_classes == p->cap_classes) {
        uint32_t cap = p->cap_classes ? p->cap_classes * 2 : 64;
        gr_class *nc = realloc(p->classes, cap * sizeof *nc);
        if (!nc)
            return nomem(p);
        p->classes = nc;
        p->cap_classes = cap;
    }
    gr_class c = {.first = first, .n = p->n_ranges - first};
    for (uint32_t k = 0; k < c.n; k++)
        lead_bytes(c.lead, p->ranges[first + k].lo, p->ranges[first + k].hi);
    p->classes[p->n_classes] = c;
    *out = p->n_classes++;
    return true;
}

static bool char_el(parser *p, elvec *v, uint32_t lo, uint32_t hi)
{
    uint32_t first = p->n_ranges, c;
    return push_range(p, lo, hi) && finish_class(p, first, false, &c) && push_el(p, v, GR_CLASS, c);
}

/* After '[': the class up to and including ']'. */
static bool parse_class(parser *p, elvec *v)
{
    size_t at = p->i - 1;
    bool negate = false;
    if (p->i < p->n && p->s[p->i] == '^') {
        negate = true;
        p->i++;
    }
    uint32_t first = p->n_ranges;
    for (;;) {
        if (p->i >= p->n)
            return fail_at(p, at, "unterminated character class");
        if (p->s[p->i] == ']') {
            p->i++;
            break;
        }
        uint32_t lo, hi;
        if (!parse_char(p, &lo))
            return false;
        hi = lo;
        if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            p->i++;
            size_t rat = p->i;
            if (!parse_char(p, &hi))
                return false;
            if (hi < lo)
                return fail_at(p, rat, "range end U+%04X is before its start U+%04X", hi, lo);
        }
        if (!push_range(p, lo, hi))
            return false;
    }
    uint32_t c;
    if (p->n_ranges == first && !negate)
        return fail_at(p, at, "an empty character class matches nothing");
    return finish_class(p, first, negate, &c) && push_el(p, v, GR_CLASS, c);
}

/* ---- rules ---- */

static bool parse_alternates(parser *p, uint32_t rule, bool nested);

/* Appends el[0..n) to rule's body v (by index: bodies may move). */
static bool append_els(parser *p, uint32_t rule, const gr_el *el, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++)
        if (!push_el(p, &p->rules[rule].body, el[k].kind, el[k].arg))
            return false;
    return true;
}

/* Rewrites body[start..] of rule (the last item) as repeated min..max times
 * (max UINT32_MAX: unbounded). */
static bool repeat(parser *p, uint32_t rule, uint32_t start, uint32_t min, uint32_t max)
{
    elvec *b = &p->rules[rule].body;
    uint32_t n = b->n - start;
    if (n == 0)
        return true; /* repeating nothing is nothing */
    gr_el item;
    if (n == 1) {
        item = b->v[start];
    } else { /* a multi-character literal: its own rule */
        uint32_t sub = gen_rule(p, rule);
        if (sub == UINT32_MAX)
            return false;
        b = &p->rules[rule].body;
        gr_el *tmp = malloc(n * sizeof *tmp);
        if (!tmp)
            return nomem(p);
        memcpy(tmp, b->v + start, n * sizeof *tmp);
        bool ok = append_els(p, sub, tmp, n) && push_el(p, &p->rules[sub].body, GR_END, 0);
        free(tmp);
        if (!ok)
            return false;
        item = (gr_el){GR_REF, sub};
    }
    p->rules[rule].body.n = start;
    p->total_el -= n;
    for (uint32_t k = 0; k < min; k++)
        if (!push_el(p, &p->rules[rule].body, item.kind, item.arg))
            return false;
    if (max == min)
        return true;
    if (max == UINT32_MAX) { /* R ::= item R | */
        uint32_t r = gen_rule(p, rule);
        if (r == UINT32_MAX)
            return false;
        elvec *rb = &p->rules[r].body;
        if (!push_el(p, rb, item.kind, item.arg) || !push_el(p, rb, GR_REF, r) ||
            !push_el(p, rb, GR_END, 0) || !push_el(p, rb, GR_END, 0))
            return false;
        return push_el(p, &p->rules[rule].body, GR_REF, r);
    }
    /* R1 ::= item | ; Rk ::= item R(k-1) | */
    uint32_t prev = UINT32_MAX;
    for (uint32_t k = 0; k < max - min; k++) {
        uint32_t r = gen_rule(p, rule);
        if (r == UINT32_MAX)
            return false;
        elvec *rb = &p->rules[r].body;
        if (!push_el(p, rb, item.kind, item.arg))
            return false;
        if (prev != UINT32_MAX && !push_el(p, rb, GR_REF, prev))
            return false;
        if (!push_el(p, rb, GR_END, 0) || !push_el(p, rb, GR_END, 0))
            return false;
        prev = r;
    }
    return push_el(p, &p->rules[rule].body, GR_REF, prev);
}

static bool parse_uint(parser *p, uint32_t *v)
{
    size_t at = p->i;
    uint64_t x = 0;
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
        return fail_at(p, at, "expecting a number");
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        x = x * 10 + (uint64_t)(p->s[p->i++] - '0');
        if (x > GR_MAX_REPEAT)
            return fail_at(p, at, "repetition count past %u", GR_MAX_REPEAT);
    }
    *v = (uint32_t)x;
    return true;
}

static bool parse_sequence(parser *p, uint32_t rule, bool nested)
{
    uint32_t last = UINT32_MAX; /* start of the last item in the body */
    for (;;) {
        if (p->err)
            return false;
        if (p->i >= p->n)
            return true;
        char c = p->s[p->i];
        size_t at = p->i;
        uint32_t start = p->rules[rule].body.n;
        if (c == '"') {
            p->i++;
            for (;;) {
                if (p->i >= p->n)
                    return fail_at(p, at, "unterminated string literal");
                if (p->s[p->i] == '"') {
                    p->i++;
                    break;
                }
                uint32_t cp;
                if (!parse_char(p, &cp) || !char_el(p, &p->rules[rule].body, cp, cp))
                    return false;
            }
            last = start;
        } else if (c == '[') {
            p->i++;
            if (!parse_class(p, &p->rules[rule].body))
                return false;
            last = start;
        } else if (c == '.') {
            p->i++;
            if (!char_el(p, &p->rules[rule].body, 0, 0x10FFFF))
                return false;
            last = start;
        } else if (is_name_char(c)) {
            size_t b = p->i;
            while (p->i < p->n && is_name_char(p->s[p->i]))
                p->i++;
            uint32_t r = rule_id(p, p->s + b, p->i - b, b);
            if (r == UINT32_MAX || !push_el(p, &p->rules[rule].body, GR_REF, r))
                return false;
            last = start;
        } else if (c == '(') {
            p->i++;
            if (++p->depth > GR_MAX_NEST)
                return fail_at(p, at, "groups nested deeper than %d", GR_MAX_NEST);
            uint32_t sub = gen_rule(p, rule);
            if (sub == UINT32_MAX)
                return false;
            skip_space(p, true);
            if (!parse_alternates(p, sub, true))
                return false;
            p->depth--;
            if (p->i >= p->n || p->s[p->i] != ')')
                return fail_at(p, at, "expecting ')' to close this group");
            p->i++;
            if (!push_el(p, &p->rules[rule].body, GR_REF, sub))
                return false;
            last = start;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last == UINT32_MAX)
                return fail_at(p, at, "'%c' with nothing before it to repeat", c);
            p->i++;
            uint32_t min = 0, max = UINT32_MAX;
            if (c == '+')
                min = 1;
            else if (c == '?')
                max = 1;
            else if (c == '{') {
                skip_space(p, false);
                if (!parse_uint(p, &min))
                    return false;
                skip_space(p, false);
                max = min;
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    skip_space(p, false);
                    max = UINT32_MAX;
                    if (p->i < p->n && p->s[p->i] != '}') {
                        if (!parse_uint(p, &max))
                            return false;
                        if (max < min)
                            return fail_at(p, at, "repetition {%u,%u}: the maximum is below the "
                                                  "minimum", min, max);
                    }
                    skip_space(p, false);
                }
                if (p->i >= p->n || p->s[p->i] != '}')
                    return fail_at(p, at, "expecting '}' to close the repetition");
                p->i++;
            }
            if (!repeat(p, rule, last, min, max))
                return false;
            last = UINT32_MAX;
        } else {
            return true; /* '|', ')', a newline, or something the caller judges */
        }
        skip_space(p, nested);
    }
}

static bool parse_alternates(parser *p, uint32_t rule, bool nested)
{
    if (!parse_sequence(p, rule, nested))
        return false;
    while (p->i < p->n && p->s[p->i] == '|') {
        if (!push_el(p, &p->rules[rule].body, GR_END, 0))
            return false;
        p->i++;
        skip_space(p, true);
        if (!parse_sequence(p, rule, nested))
            return false;
    }
    return push_el(p, &p->rules[rule].body, GR_END, 0);
}

static bool parse_rule(parser *p)
{
    size_t at = p->i;
    while (p->i < p->n && is_name_char(p->s[p->i]))
        p->i++;
    if (p->i == at)
        return fail_at(p, at, "expecting a rule name");
    size_t name_end = p->i;
    skip_space(p, false);
    if (p->n - p->i < 3 || memcmp(p->s + p->i, "::=", 3))
        return fail_at(p, p->i, "expecting '::=' after the rule name");
    p->i += 3;
    uint32_t r = rule_id(p, p->s + at, name_end - at, at);
    if (r == UINT32_MAX)
        return false;
    if (p->rules[r].defined)
        return fail_at(p, at, "rule '%.*s' is defined twice", (int)(name_end - at), p->s + at);
    p->rules[r].defined = true;
    skip_space(p, true);
    if (!parse_alternates(p, r, false))
        return false;
    if (p->i < p->n && p->s[p->i] != '\n' && p->s[p->i] != '\r') {
        char c = p->s[p->i];
        if (c == ')')
            return fail_at(p, p->i, "')' without a '(' before it");
        return fail_at(p, p->i, "unexpected '%c' (expecting a newline or the end of the rule)",
                       c >= 32 && c < 127 ? c : '?');
    }
    return true;
}

/* ---- checks on the finished table ---- */

/* Left recursion: a rule that can reach itself at the start of one of its
 * alternatives through rules that may match nothing. */
static bool check_left_recursion(parser *p, gr_ir *ir)
{
    uint32_t R = ir->n_rules;
    bool *nullable = calloc(R, 1);
    uint8_t *mark = calloc(R, 1);
    uint32_t *stack = malloc(sizeof *stack * (R + 1)), *iter = malloc(sizeof *iter * (R + 1));
    bool ok = true;
    if (!nullable || !mark || !stack || !iter) {
        ok = nomem(p);
        goto out;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (uint32_t r = 0; r < R; r++) {
            if (nullable[r])
                continue;
            for (uint32_t a = 0; a < ir->rules[r].n_alts && !nullable[r]; a++) {
                uint32_t q = ir->alt_start[ir->rules[r].first_alt + a];
                while (ir->el[q].kind == GR_REF && nullable[ir->el[q].arg])
                    q++;
                if (ir->el[q].kind == GR_END) {
                    nullable[r] = true;
                    changed = true;
                }
            }
        }
    }
    /* depth-first search over "starts with" edges; mark 1 = on the path */
    for (uint32_t s = 0; s < R && ok; s++) {
        if (mark[s])
            continue;
        uint32_t sp = 0;
        stack[sp] = s;
        iter[sp] = 0;
        mark[s] = 1;
        while (sp != UINT32_MAX && ok) {
            uint32_t r = stack[sp];
            /* the iter-th edge of r: walk alternatives and their nullable prefixes */
            uint32_t k = iter[sp]++, seen = 0, next = UINT32_MAX;
            for (uint32_t a = 0; a < ir->rules[r].n_alts && next == UINT32_MAX; a++) {
                for (uint32_t q = ir->alt_start[ir->rules[r].first_alt + a];
                     ir->el[q].kind == GR_REF; q++) {
                    if (seen++ == k) {
                        next = ir->el[q].arg;
                        break;
                    }
                    if (!nullable[ir->el[q].arg])
                        break;
                }
            }
            if (next == UINT32_MAX) {
                mark[r] = 2;
                sp = sp == 0 ? UINT32_MAX : sp - 1;
            } else if (mark[next] == 1) {
                snprintf(p->msg, sizeof p->msg, "grammar: rule '%s' is left-recursive (it can "
                         "begin with itself)", ir->rules[next].name);
                p->err = VT_ERR_FORMAT;
                ok = false;
            } else if (mark[next] == 0) {
                mark[next] = 1;
                stack[++sp] = next;
                iter[sp] = 0;
            }
        }
    }
out:
    free(nullable);
    free(mark);
    free(stack);
    free(iter);
    return ok;
}

static bool flatten(parser *p, gr_ir *ir)
{
    uint64_t n_el = 0, n_alt = 0;
    for (uint32_t r = 0; r < p->n_rules; r++) {
        n_el += p->rules[r].body.n;
        for (uint32_t k = 0; k < p->rules[r].body.n; k++)
            n_alt += p->rules[r].body.v[k].kind == GR_END;
    }
    ir->el = malloc(sizeof *ir->el * (n_el + 1));
    ir->rule_of = malloc(sizeof *ir->rule_of * (n_el + 1));
    ir->alt_start = malloc(sizeof *ir->alt_start * (n_alt + 1));
    ir->rules = calloc(p->n_rules + 1, sizeof *ir->rules);
    if (!ir->el || !ir->rule_of || !ir->alt_start || !ir->rules)
        return nomem(p);
    uint32_t e = 0, a = 0;
    for (uint32_t r = 0; r < p->n_rules; r++) {
        prule *pr = &p->rules[r];
        ir->rules[r].name = pr->name;
        pr->name = NULL;
        ir->rules[r].first_alt = a;
        bool at_start = true;
        for (uint32_t k = 0; k < pr->body.n; k++) {
            if (at_start)
                ir->alt_start[a++] = e;
            at_start = pr->body.v[k].kind == GR_END;
            ir->rule_of[e] = r;
            ir->el[e++] = pr->body.v[k];
        }
        ir->rules[r].n_alts = a - ir->rules[r].first_alt;
    }
    ir->n_el = e;
    ir->n_alt = a;
    ir->n_rules = p->n_rules;
    ir->ranges = p->ranges;
    ir->n_ranges = p->n_ranges;
    ir->classes = p->classes;
    ir->n_classes = p->n_classes;
    p->ranges = NULL;
    p->classes = NULL;
    return true;
}

vt_err gr_parse(const char *text, size_t len, gr_ir *ir)
{
    memset(ir, 0, sizeof *ir);
    if (!text && len)
        return vt_fail(VT_ERR_INVALID, "grammar: no text");
    if (len > GR_MAX_TEXT)
        return vt_fail(VT_ERR_FORMAT, "grammar: %zu bytes is past the limit of %u", len,
                       GR_MAX_TEXT);
    parser p = {.s = text, .n = len};
    for (;;) {
        skip_space(&p, true);
        if (p.i >= p.n || p.err)
            break;
        if (!parse_rule(&p))
            break;
    }
    uint32_t root = UINT32_MAX;
    if (!p.err) {
        for (uint32_t r = 0; r < p.n_rules; r++) {
            if (!p.rules[r].defined) {
                fail_at(&p, p.rules[r].ref_at, "undefined rule '%s'", p.rules[r].name);
                break;
            }
            if (!strcmp(p.rules[r].name, "root"))
                root = r;
        }
    }
    if (!p.err && root == UINT32_MAX) {
        p.err = VT_ERR_FORMAT;
        snprintf(p.msg, sizeof p.msg, "grammar: no 'root' rule");
    }
    if (!p.err && flatten(&p, ir))
        check_left_recursion(&p, ir);
    ir->root = root;
    for (uint32_t r = 0; r < p.n_rules; r++) {
        free(p.rules[r].name);
        free(p.rules[r].body.v);
    }
    free(p.rules);
    free(p.hash);
    free(p.ranges);
    free(p.classes);
    if (p.err) {
        gr_ir_free(ir);
        return vt_fail(p.err, "%s", p.msg);
    }
    return VT_OK;
}

void gr_ir_free(gr_ir *ir)
{
    if (ir->rules)
        for (uint32_t r = 0; r < ir->n_rules; r++)
            free(ir->rules[r].name);
    free(ir->rules);
    free(ir->el);
    free(ir->rule_of);
    free(ir->alt_start);
    free(ir->ranges);
    free(ir->classes);
    memset(ir, 0, sizeof *ir);
}

bool gr_class_meets(const gr_ir *ir, uint32_t c, uint32_t lo, uint32_t hi)
{
    const gr_range *r = ir->ranges + ir->classes[c].first;
    uint32_t a = 0, b = ir->classes[c].n;
    while (a < b) { /* the first range whose hi >= lo */
        uint32_t m = (a + b) / 2;
        if (r[m].hi < lo)
            a = m + 1;
        else
            b = m;
    }
    return a < ir->classes[c].n && r[a].lo <= hi;
}

bool gr_class_has(const gr_ir *ir, uint32_t c, uint32_t cp)
{
    return gr_class_meets(ir, c, cp, cp);
}
