/*
 * template_lex.c - from template source to tokens, as @huggingface/jinja
 * reads a template. First the source is preprocessed the way the oracle's
 * Environment does it: invalid UTF-8 becomes U+FFFD, one trailing newline is
 * dropped, blanks before a block tag at the start of a line are stripped
 * (lstrip_blocks: `{%`, `{#`, and also `{-`), the newline after `%}`, `#}`
 * or `-}` is removed (trim_blocks), and transformers' `{% generation %}` /
 * `{% endgeneration %}` tags are deleted (honouring their `-`). Then the text
 * is cut into tokens: text between tags, comments, and inside `{% %}` and
 * `{{ }}` identifiers, numbers (a sign after an operator belongs to the
 * number), strings (with \n \t \r \b \f \v \' \" \\ \xHH \uHHHH escapes) and
 * operators. `{%-`, `{{-`, `{#-` strip the whitespace before the tag, `-%}`,
 * `-}}`, `-#}` the whitespace after it. Every token keeps the line (of the
 * original source) where it starts. Also the compile-time arena lives here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/template_int.h"

/* ---------------------------------------------------------------- arena */

struct tpl_ablock {
    struct tpl_ablock *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
};

void *tpl_arena_alloc(tpl_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    tpl_ablock *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        if (a->head && n > 16384) { /* a big block goes behind the current one */
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
        a->bytes += cap;
    }
    void *p = b->mem + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void tpl_arena_free(tpl_arena *a)
{
    tpl_ablock *b = a->head;
    while (b) {
        tpl_ablock *nx = b->next;
        free(b);
        b = nx;
    }
    a->head = NULL;
    a->bytes = 0;
}

/* ---------------------------------------------------------------- preprocessing */

typedef struct {
    char *p;
    int *line; /* line of each byte */
    size_t n;
} text;

static bool at_ws(const text *t, size_t i, size_t *next)
{
    size_t j = i;
    int cp = tpl_utf8_decode(t->p, t->n, &j);
    if (!tpl_js_space((uint32_t)cp))
        return false;
    if (next)
        *next = j;
    return true;
}

/* Start of the code point that ends at byte `end`. */
static size_t prev_cp(const char *p, size_t end)
{
    size_t st = end - 1;
    while (st > 0 && ((unsigned char)p[st] & 0xc0) == 0x80 && end - st < 4)
        st--;
    return st;
}

static bool line_start(const text *t, size_t i)
{
    if (i == 0)
        return true;
    char c = t->p[i - 1];
    if (c == '\n' || c == '\r')
        return true;
    return i >= 3 && (unsigned char)t->p[i - 3] == 0xe2 && (unsigned char)t->p[i - 2] == 0x80 &&
           ((unsigned char)c == 0xa8 || (unsigned char)c == 0xa9);
}

static void put(text *d, const text *s, size_t i, size_t n)
{
    memcpy(d->p + d->n, s->p + i, n);
    memcpy(d->line + d->n, s->line + i, n * sizeof(int));
    d->n += n;
}

/* lstrip_blocks: ^[ \t]*({[#%-]) with the multiline flag */
static void lstrip_blocks(const text *s, text *d)
{
    d->n = 0;
    for (size_t i = 0; i < s->n;) {
        if (line_start(s, i)) {
            size_t j = i;
            while (j < s->n && (s->p[j] == ' ' || s->p[j] == '\t'))
                j++;
            if (j + 1 < s->n && s->p[j] == '{' && strchr("#%-", s->p[j + 1]) && s->p[j + 1]) {
                put(d, s, j, 2);
                i = j + 2;
                continue;
            }
        }
        put(d, s, i, 1);
        i++;
    }
}

/* trim_blocks: ([#%-]})\n -> $1 */
static void trim_blocks(const text *s, text *d)
{
    d->n = 0;
    for (size_t i = 0; i < s->n;) {
        if (i + 2 < s->n && s->p[i] && strchr("#%-", s->p[i]) && s->p[i + 1] == '}' &&
            s->p[i + 2] == '\n') {
            put(d, s, i, 2);
            i += 3;
            continue;
        }
        put(d, s, i, 1);
        i++;
    }
}

/* Is there a {% [-] [end]generation [-] %} tag at i? Sets its end and flags. */
static bool generation_tag(const text *s, size_t i, size_t *end, bool *lstrip, bool *rstrip)
{
    if (i + 1 >= s->n || s->p[i] != '{' || s->p[i + 1] != '%')
        return false;
    size_t j = i + 2, k;
    *lstrip = j < s->n && s->p[j] == '-';
    if (*lstrip)
        j++;
    while (j < s->n && at_ws(s, j, &k))
        j = k;
    if (s->n - j >= 3 && !memcmp(s->p + j, "end", 3) && s->n - j >= 13 &&
        !memcmp(s->p + j + 3, "generation", 10))
        j += 3;
    if (s->n - j < 10 || memcmp(s->p + j, "generation", 10))
        return false;
    j += 10;
    while (j < s->n && at_ws(s, j, &k))
        j = k;
    *rstrip = j < s->n && s->p[j] == '-';
    if (*rstrip)
        j++;
    if (j + 1 >= s->n || s->p[j] != '%' || s->p[j + 1] != '}')
        return false;
    *end = j + 2;
    return true;
}

static void generation_tags(const text *s, text *d)
{
    d->n = 0;
    size_t mark = 0; /* output before this was consumed by an earlier match */
    for (size_t i = 0; i < s->n;) {
        size_t end;
        bool ls, rs;
        if (generation_tag(s, i, &end, &ls, &rs)) {
            if (ls) { /* drop the whitespace run before the tag */
                while (d->n > mark) {
                    size_t st = prev_cp(d->p, d->n);
                    if (st < mark || !at_ws(d, st, NULL))
                        break;
                    d->n = st;
                }
            }
            i = end;
            size_t k;
            while (i < s->n && at_ws(s, i, &k)) {
                if (!rs)
                    put(d, s, i, k - i);
                i = k;
            }
            mark = d->n;
            continue;
        }
        put(d, s, i, 1);
        i++;
    }
}

static vt_err preprocess(const char *src, size_t len, tpl_arena *a, text *out)
{
    size_t cap = 1; /* the size once bad bytes become U+FFFD (3 bytes each) */
    for (size_t i = 0; i < len;) {
        size_t st = i;
        cap += tpl_utf8_decode(src, len, &i) == 0xfffd ? 3 : i - st;
    }
    text t[2];
    for (int k = 0; k < 2; k++) {
        t[k].p = tpl_arena_alloc(a, cap);
        t[k].line = tpl_arena_alloc(a, cap * sizeof(int));
        t[k].n = 0;
        if (!t[k].p || !t[k].line)
            return vt_fail(VT_ERR_NOMEM, "template: out of memory");
    }
    /* UTF-8 with U+FFFD for bad bytes, and line numbers */
    int line = 1;
    for (size_t i = 0; i < len;) {
        size_t st = i;
        int cp = tpl_utf8_decode(src, len, &i);
        char enc[4];
        int k = cp == 0xfffd ? tpl_utf8_encode(0xfffd, enc) : 0;
        const char *from = k ? enc : src + st;
        size_t n = k ? (size_t)k : i - st;
        memcpy(t[0].p + t[0].n, from, n);
        for (size_t j = 0; j < n; j++)
            t[0].line[t[0].n + j] = line;
        t[0].n += n;
        if (cp == '\n')
            line++;
    }
    if (t[0].n && t[0].p[t[0].n - 1] == '\n')
        t[0].n--;
    lstrip_blocks(&t[0], &t[1]);
    trim_blocks(&t[1], &t[0]);
    generation_tags(&t[0], &t[1]);
    *out = t[1];
    return VT_OK;
}

/* ---------------------------------------------------------------- tokens */

typedef struct {
    const text *s;
    size_t c;
    ttoken *tok;
    int n, cap;
    tpl_arena *a;
    int curly;
} lexer;

static vt_err lex_err(const lexer *L, size_t at, const char *msg)
{
    int line = at < L->s->n ? L->s->line[at] : (L->s->n ? L->s->line[L->s->n - 1] : 1);
    return vt_fail(VT_ERR_FORMAT, "template line %d: %s", line, msg);
}

static vt_err push(lexer *L, int type, size_t at, const char *p, size_t len)
{
    if (L->n == L->cap) {
        int cap = L->cap ? L->cap * 2 : 256;
        ttoken *nt = realloc(L->tok, (size_t)cap * sizeof *nt);
        if (!nt)
            return vt_fail(VT_ERR_NOMEM, "template: out of memory");
        L->tok = nt;
        L->cap = cap;
    }
    int line = at < L->s->n ? L->s->line[at] : (L->s->n ? L->s->line[L->s->n - 1] : 1);
    L->tok[L->n++] = (ttoken){(uint8_t)type, line, p, len};
    return VT_OK;
}

static int last_type(const lexer *L)
{
    return L->n ? L->tok[L->n - 1].type : -1;
}

static void strip_trailing_ws(lexer *L)
{
    if (L->n && L->tok[L->n - 1].type == TK_TEXT) {
        ttoken *t = &L->tok[L->n - 1];
        t->len = tpl_trim_end(t->p, t->len);
        if (t->len == 0)
            L->n--;
    }
}

static void skip_ws(lexer *L)
{
    size_t k;
    while (L->c < L->s->n && at_ws(L->s, L->c, &k))
        L->c = k;
}

static bool starts(const lexer *L, const char *lit)
{
    size_t n = strlen(lit);
    return L->s->n - L->c >= n && !memcmp(L->s->p + L->c, lit, n);
}

static bool is_word(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
static bool is_dig(char c) { return c >= '0' && c <= '9'; }

/* consumeWhile's rule: running into the end of the source is an error. */
static vt_err consume_digits(lexer *L)
{
    while (L->c < L->s->n && is_dig(L->s->p[L->c]))
        if (++L->c >= L->s->n)
            return lex_err(L, L->c - 1, "unexpected end of template");
    return VT_OK;
}

static int hexval(char c)
{
    return is_dig(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
           : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}

/* Appends UTF-16 unit u to the literal, pairing surrogates (a lone one is U+FFFD). */
static void put_unit(char *out, size_t *o, uint32_t u, uint32_t *pend)
{
    if (*pend) {
        if (u >= 0xdc00 && u <= 0xdfff) {
            *o += (size_t)tpl_utf8_encode(0x10000 + ((*pend - 0xd800) << 10) + (u - 0xdc00), out + *o);
            *pend = 0;
            return;
        }
        *o += (size_t)tpl_utf8_encode(0xfffd, out + *o);
        *pend = 0;
    }
    if (u >= 0xd800 && u <= 0xdbff)
        *pend = u;
    else
        *o += (size_t)tpl_utf8_encode(u >= 0xdc00 && u <= 0xdfff ? 0xfffd : u, out + *o);
}

static vt_err lex_string(lexer *L)
{
    const text *s = L->s;
    char q = s->p[L->c];
    size_t at = L->c++, end = L->c;
    while (end < s->n && s->p[end] != q) /* the literal's extent bounds its decoded size */
        end += s->p[end] == '\\' ? 2 : 1;
    char *out = tpl_arena_alloc(L->a, (end < s->n ? end : s->n) - L->c + 4);
    if (!out)
        return vt_fail(VT_ERR_NOMEM, "template: out of memory");
    size_t o = 0;
    uint32_t pend = 0;
    while (L->c < s->n && s->p[L->c] != q) {
        char c = s->p[L->c];
        if (c == '\\') {
            if (++L->c >= s->n)
                return lex_err(L, at, "unexpected end of template in a string");
            char e = s->p[L->c++];
            if (e == 'x' || e == 'u') {
                int k = e == 'x' ? 2 : 4;
                uint32_t v = 0;
                for (int i = 0; i < k; i++) {
                    int h = L->c + (size_t)i < s->n ? hexval(s->p[L->c + (size_t)i]) : -1;
                    if (h < 0)
                        return lex_err(L, at, "invalid hexadecimal escape in a string");
                    v = v * 16 + (uint32_t)h;
                }
                L->c += (size_t)k;
                put_unit(out, &o, v, &pend);
                continue;
            }
            const char *from = "ntrbfv'\"\\", *to = "\n\t\r\b\f\v'\"\\";
            const char *f = strchr(from, e);
            if (!f || !e) {
                char msg[64];
                snprintf(msg, sizeof msg, "unknown escape '\\%c' in a string",
                         e > 32 && e < 127 ? e : '?');
                return lex_err(L, at, msg);
            }
            put_unit(out, &o, (unsigned char)to[f - from], &pend);
            continue;
        }
        size_t st = L->c;
        if (pend) { /* a high surrogate not followed by a low one */
            o += (size_t)tpl_utf8_encode(0xfffd, out + o);
            pend = 0;
        }
        tpl_utf8_decode(s->p, s->n, &L->c);
        memcpy(out + o, s->p + st, L->c - st);
        o += L->c - st;
        if (L->c >= s->n)
            return lex_err(L, at, "unexpected end of template in a string");
    }
    if (pend)
        o += (size_t)tpl_utf8_encode(0xfffd, out + o);
    if (L->c >= s->n)
        return lex_err(L, at, "unterminated string");
    L->c++; /* closing quote */
    return push(L, TK_STR, at, out, o);
}

static const struct {
    const char *lit;
    int type;
} table[] = {
    {"{%", TK_OPEN_STMT}, {"%}", TK_CLOSE_STMT}, {"{{", TK_OPEN_EXPR}, {"}}", TK_CLOSE_EXPR},
    {"(", TK_LPAREN},     {")", TK_RPAREN},      {"{", TK_LBRACE},     {"}", TK_RBRACE},
    {"[", TK_LBRACKET},   {"]", TK_RBRACKET},    {",", TK_COMMA},      {".", TK_DOT},
    {":", TK_COLON},      {"|", TK_PIPE},        {"<=", TK_CMP},       {">=", TK_CMP},
    {"==", TK_CMP},       {"!=", TK_CMP},        {"<", TK_CMP},        {">", TK_CMP},
    {"+", TK_ADD},        {"-", TK_ADD},         {"~", TK_ADD},        {"**", TK_POW},
    {"*", TK_MUL},        {"//", TK_MUL},        {"/", TK_MUL},        {"%", TK_MUL},
    {"=", TK_EQUALS},
};

static vt_err lex_step(lexer *L)
{
    const text *s = L->s;
    int lt = last_type(L);
    if (lt < 0 || lt == TK_CLOSE_STMT || lt == TK_CLOSE_EXPR || lt == TK_COMMENT) {
        size_t st = L->c;
        while (L->c < s->n && !(s->p[L->c] == '{' && L->c + 1 < s->n &&
                                (s->p[L->c + 1] == '%' || s->p[L->c + 1] == '{' ||
                                 s->p[L->c + 1] == '#')))
            L->c++;
        if (L->c > st)
            return push(L, TK_TEXT, st, s->p + st, L->c - st);
    }
    if (starts(L, "{#")) {
        size_t at = L->c;
        L->c += 2;
        bool before = L->c < s->n && s->p[L->c] == '-';
        if (before)
            L->c++;
        size_t st = L->c;
        while (!(L->c + 1 < s->n && s->p[L->c] == '#' && s->p[L->c + 1] == '}')) {
            if (L->c + 2 >= s->n)
                return lex_err(L, at, "unterminated comment");
            L->c++;
        }
        size_t len = L->c - st;
        bool after = len > 0 && s->p[st + len - 1] == '-';
        if (after)
            len--;
        if (before)
            strip_trailing_ws(L);
        vt_err e = push(L, TK_COMMENT, at, s->p + st, len);
        L->c += 2;
        if (after)
            skip_ws(L);
        return e;
    }
    if (starts(L, "{%-") || starts(L, "{{-")) {
        strip_trailing_ws(L);
        int type = s->p[L->c + 1] == '%' ? TK_OPEN_STMT : TK_OPEN_EXPR;
        if (type == TK_OPEN_EXPR)
            L->curly = 0;
        vt_err e = push(L, type, L->c, s->p + L->c, 2);
        L->c += 3;
        return e;
    }
    /* whitespace inside a tag */
    size_t k;
    while (L->c < s->n && at_ws(s, L->c, &k)) {
        L->c = k;
        if (L->c >= s->n)
            return lex_err(L, L->c - 1, "unexpected end of template");
    }
    if (starts(L, "-%}") || starts(L, "-}}")) {
        int type = s->p[L->c + 1] == '%' ? TK_CLOSE_STMT : TK_CLOSE_EXPR;
        vt_err e = push(L, type, L->c, s->p + L->c + 1, 2);
        L->c += 3;
        skip_ws(L);
        return e;
    }
    char ch = s->p[L->c];
    if (ch == '-' || ch == '+') {
        lt = last_type(L);
        if (lt < 0 || lt == TK_TEXT)
            return lex_err(L, L->c, "unexpected sign");
        if (lt != TK_IDENT && lt != TK_NUM && lt != TK_STR && lt != TK_RPAREN &&
            lt != TK_RBRACKET) {
            size_t st = L->c++;
            vt_err e = consume_digits(L);
            if (e)
                return e;
            if (L->c > st + 1 && L->c + 1 < s->n && s->p[L->c] == '.' && is_dig(s->p[L->c + 1])) {
                L->c++;
                if ((e = consume_digits(L)))
                    return e;
            }
            return push(L, L->c > st + 1 ? TK_NUM : TK_UNARY, st, s->p + st, L->c - st);
        }
    }
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].type == TK_CLOSE_EXPR && L->curly > 0)
            continue;
        if (starts(L, table[i].lit)) {
            size_t n = strlen(table[i].lit);
            vt_err e = push(L, table[i].type, L->c, s->p + L->c, n);
            if (table[i].type == TK_OPEN_EXPR)
                L->curly = 0;
            else if (table[i].type == TK_LBRACE)
                L->curly++;
            else if (table[i].type == TK_RBRACE)
                L->curly--;
            L->c += n;
            return e;
        }
    }
    if (ch == '\'' || ch == '"')
        return lex_string(L);
    if (is_dig(ch)) {
        size_t st = L->c;
        vt_err e = consume_digits(L);
        if (e)
            return e;
        if (last_type(L) != TK_DOT && L->c + 1 < s->n && s->p[L->c] == '.' &&
            is_dig(s->p[L->c + 1])) {
            L->c++;
            if ((e = consume_digits(L)))
                return e;
        }
        return push(L, TK_NUM, st, s->p + st, L->c - st);
    }
    if (is_word(ch)) {
        size_t st = L->c;
        while (L->c < s->n && is_word(s->p[L->c]))
            if (++L->c >= s->n)
                return lex_err(L, L->c - 1, "unexpected end of template");
        return push(L, TK_IDENT, st, s->p + st, L->c - st);
    }
    char msg[64];
    if ((unsigned char)ch >= 32 && (unsigned char)ch < 127)
        snprintf(msg, sizeof msg, "unexpected character '%c'", ch);
    else
        snprintf(msg, sizeof msg, "unexpected character (byte 0x%02x)", (unsigned char)ch);
    return lex_err(L, L->c, msg);
}

vt_err tpl_lex(const char *src, size_t len, tpl_arena *a, ttoken **toks, int *ntoks)
{
    *toks = NULL;
    *ntoks = 0;
    if (len > (size_t)256 << 20)
        return vt_fail(VT_ERR_RANGE, "template: source larger than 256 MiB");
    text s;
    vt_err e = preprocess(src, len, a, &s);
    if (e)
        return e;
    lexer L = {.s = &s, .a = a};
    while (L.c < s.n)
        if ((e = lex_step(&L))) {
            free(L.tok);
            return e;
        }
    if ((e = push(&L, TK_EOF, s.n, "", 0))) {
        free(L.tok);
        return e;
    }
    *toks = L.tok;
    *ntoks = L.n;
    return VT_OK;
}
