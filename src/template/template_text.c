/*
 * template_text.c - the text primitives of the template interpreter, each
 * matching what JavaScript does, since the oracle is a JavaScript program:
 * UTF-8 decoding with U+FFFD for bad bytes (WHATWG's rule, as Node reads a
 * file), JavaScript's whitespace class (trim, \s), lengths and ordering in
 * UTF-16 code units, simple case mapping (ASCII, Latin, Greek, Cyrillic,
 * Armenian, fullwidth; ß upper-cases to SS), Number::toString and the
 * string-to-number conversions (ToNumber, parseInt, parseFloat), and
 * JSON.stringify's quoting of strings.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/template_int.h"

int tpl_utf8_decode(const char *str, size_t n, size_t *i)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t p = *i;
    unsigned c = s[p];
    if (c < 0x80) {
        *i = p + 1;
        return (int)c;
    }
    int need;
    unsigned lo = 0x80, hi = 0xbf;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        cp = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        cp = c & 0x07;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else {
        *i = p + 1;
        return 0xfffd;
    }
    p++;
    for (int k = 0; k < need; k++) {
        if (p >= n || s[p] < lo || s[p] > hi) {
            *i = p;
            return 0xfffd;
        }
        cp = (cp << 6) | (s[p] & 0x3f);
        p++;
        lo = 0x80;
        hi = 0xbf;
    }
    *i = p;
    return (int)cp;
}

int tpl_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

bool tpl_js_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000 || c == 0xfeff;
}

int64_t tpl_u16_len(tstr *s)
{
    if (s->u16 >= 0)
        return s->u16;
    int64_t k = 0;
    for (size_t i = 0; i < s->len;) {
        int cp = tpl_utf8_decode(s->p, s->len, &i);
        k += cp >= 0x10000 ? 2 : 1;
    }
    if (!s->h.immortal)
        s->u16 = k; /* immortal strings are shared between threads: never written */
    return k;
}

size_t tpl_trim_start(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        if (!tpl_js_space((uint32_t)tpl_utf8_decode(s, n, &j)))
            break;
        i = j;
    }
    return i;
}

size_t tpl_trim_end(const char *s, size_t n)
{
    while (n > 0) {
        size_t st = n - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xc0) == 0x80 && n - st < 4)
            st--;
        size_t j = st;
        int cp = tpl_utf8_decode(s, n, &j);
        if (j != n || !tpl_js_space((uint32_t)cp))
            break;
        n = st;
    }
    return n;
}

/* Simple (one to one) case pairs by range: [lo, hi] maps to lo+delta, and
 * for "alternating" ranges even code points are upper case, odd lower. */
uint32_t tpl_cp_upper(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') ? c - 32 : c;
    if ((c >= 0xe0 && c <= 0xfe && c != 0xf7))
        return c - 32;
    if (c == 0xff)
        return 0x178;
    if (c == 0xb5)
        return 0x39c;
    if (c == 0x131)
        return 'I';
    if (c == 0x17f)
        return 'S';
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177))
        return c & 1 ? c - 1 : c;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
        return c & 1 ? c : c - 1;
    if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2)
        return c - 32;
    if (c == 0x3c2)
        return 0x3a3;
    if (c == 0x3ac)
        return 0x386;
    if (c >= 0x3ad && c <= 0x3af)
        return c - 37;
    if (c == 0x3cc)
        return 0x38c;
    if (c == 0x3cd || c == 0x3ce)
        return c - 63;
    if (c >= 0x430 && c <= 0x44f)
        return c - 32;
    if (c >= 0x450 && c <= 0x45f)
        return c - 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x52f))
        return c & 1 ? c - 1 : c;
    if (c >= 0x561 && c <= 0x586)
        return c - 48;
    if ((c >= 0x1e00 && c <= 0x1e95) || (c >= 0x1ea0 && c <= 0x1eff))
        return c & 1 ? c - 1 : c;
    if (c >= 0xff41 && c <= 0xff5a)
        return c - 32;
    return c;
}

uint32_t tpl_cp_lower(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if ((c >= 0xc0 && c <= 0xde && c != 0xd7))
        return c + 32;
    if (c == 0x178)
        return 0xff;
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177))
        return c & 1 ? c : c + 1;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
        return c & 1 ? c + 1 : c;
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
        return c + 32;
    if (c == 0x386)
        return 0x3ac;
    if (c >= 0x388 && c <= 0x38a)
        return c + 37;
    if (c == 0x38c)
        return 0x3cc;
    if (c == 0x38e || c == 0x38f)
        return c + 63;
    if (c >= 0x410 && c <= 0x42f)
        return c + 32;
    if (c >= 0x400 && c <= 0x40f)
        return c + 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x52f))
        return c & 1 ? c : c + 1;
    if (c >= 0x531 && c <= 0x556)
        return c + 48;
    if ((c >= 0x1e00 && c <= 0x1e95) || (c >= 0x1ea0 && c <= 0x1eff))
        return c & 1 ? c : c + 1;
    if (c >= 0xff21 && c <= 0xff3a)
        return c + 32;
    return c;
}

int tpl_case_map(trender *r, const char *s, size_t n, bool upper, tstr *buf)
{
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t cp = (uint32_t)tpl_utf8_decode(s, n, &i);
        char enc[8];
        int k;
        if (upper && cp == 0xdf) {
            memcpy(enc, "SS", 2);
            k = 2;
        } else if (!upper && cp == 0x130) {
            k = tpl_utf8_encode('i', enc);
            k += tpl_utf8_encode(0x307, enc + k);
        } else {
            uint32_t m = upper ? tpl_cp_upper(cp) : tpl_cp_lower(cp);
            if (m == cp) {
                if (tpl_buf_put(r, buf, s + st, i - st))
                    return -1;
                continue;
            }
            k = tpl_utf8_encode(m, enc);
        }
        if (tpl_buf_put(r, buf, enc, (size_t)k))
            return -1;
    }
    return 0;
}

int tpl_js_number(double x, char *buf)
{
    if (isnan(x))
        return sprintf(buf, "NaN");
    if (isinf(x))
        return sprintf(buf, x < 0 ? "-Infinity" : "Infinity");
    if (x == 0)
        return sprintf(buf, "0");
    char tmp[40], digits[24];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    if (p > 17)
        p = 17;
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
    /* tmp: [-]d[.ddd]e[+-]xx */
    const char *q = tmp;
    int neg = 0, k = 0;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9')
            digits[k++] = *q;
    int e10 = atoi(q + 1);
    while (k > 1 && digits[k - 1] == '0')
        k--;
    digits[k] = 0;
    int n = e10 + 1, o = 0;
    if (neg)
        buf[o++] = '-';
    if (k <= n && n <= 21) {
        memcpy(buf + o, digits, (size_t)k);
        o += k;
        for (int i = 0; i < n - k; i++)
            buf[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(buf + o, digits, (size_t)n);
        o += n;
        buf[o++] = '.';
        memcpy(buf + o, digits + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        buf[o++] = '0';
        buf[o++] = '.';
        for (int i = 0; i < -n; i++)
            buf[o++] = '0';
        memcpy(buf + o, digits, (size_t)k);
        o += k;
    } else {
        buf[o++] = digits[0];
        if (k > 1) {
            buf[o++] = '.';
            memcpy(buf + o, digits + 1, (size_t)(k - 1));
            o += k - 1;
        }
        o += sprintf(buf + o, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
    }
    buf[o] = 0;
    return o;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Length of the longest prefix of s that is a StrDecimalLiteral (sign,
 * digits, fraction, exponent; "Infinity"), 0 if none. */
static size_t decimal_prefix(const char *s, size_t n, bool *inf)
{
    size_t i = 0;
    *inf = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    if (n - i >= 8 && !memcmp(s + i, "Infinity", 8)) {
        *inf = true;
        return i + 8;
    }
    size_t d0 = i;
    while (i < n && is_digit(s[i]))
        i++;
    size_t nd = i - d0;
    if (i < n && s[i] == '.') {
        size_t f0 = ++i;
        while (i < n && is_digit(s[i]))
            i++;
        nd += i - f0;
        if (nd == 0)
            return 0;
    }
    if (nd == 0)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            j++;
        size_t e0 = j;
        while (j < n && is_digit(s[j]))
            j++;
        if (j > e0)
            i = j;
    }
    return i;
}

static double strtod_n(const char *s, size_t n)
{
    char small[64], *b = n < sizeof small ? small : malloc(n + 1);
    if (!b)
        return NAN;
    memcpy(b, s, n);
    b[n] = 0;
    double v = strtod(b, NULL);
    if (b != small)
        free(b);
    return v;
}

double tpl_js_to_number(const char *s, size_t n)
{
    size_t a = tpl_trim_start(s, n);
    n = tpl_trim_end(s, n);
    if (a >= n)
        return 0;
    s += a;
    n -= a;
    if (n > 2 && s[0] == '0' && strchr("xXoObB", s[1])) {
        int base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;
        double v = 0;
        for (size_t i = 2; i < n; i++) {
            int d = is_digit(s[i]) ? s[i] - '0'
                    : (s[i] >= 'a' && s[i] <= 'f') ? s[i] - 'a' + 10
                    : (s[i] >= 'A' && s[i] <= 'F') ? s[i] - 'A' + 10
                                                   : 99;
            if (d >= base)
                return NAN;
            v = v * base + d;
        }
        return v;
    }
    bool inf;
    size_t k = decimal_prefix(s, n, &inf);
    if (k != n)
        return NAN;
    if (inf)
        return s[0] == '-' ? -INFINITY : INFINITY;
    return strtod_n(s, n);
}

double tpl_js_parse_int(const char *s, size_t n)
{
    size_t i = tpl_trim_start(s, n);
    size_t st = i;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    size_t d0 = i;
    while (i < n && is_digit(s[i]))
        i++;
    if (i == d0)
        return NAN;
    return strtod_n(s + st, i - st);
}

double tpl_js_parse_float(const char *s, size_t n)
{
    size_t i = tpl_trim_start(s, n);
    bool inf;
    size_t k = decimal_prefix(s + i, n - i, &inf);
    if (k == 0)
        return NAN;
    if (inf)
        return s[i] == '-' ? -INFINITY : INFINITY;
    return strtod_n(s + i, k);
}

int tpl_json_quote_into(trender *r, const char *s, size_t n, bool ascii, tstr *buf)
{
    static const char hex[] = "0123456789abcdef";
    if (tpl_buf_putc(r, buf, '"'))
        return -1;
    size_t run = 0; /* start of bytes not yet copied */
    for (size_t i = 0; i < n;) {
        size_t st = i;
        uint32_t cp = (uint32_t)tpl_utf8_decode(s, n, &i);
        char esc[16];
        int k = 0;
        if (cp == '"' || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            k = 2;
        } else if (cp < 0x20) {
            const char *named = cp == '\b' ? "\\b" : cp == '\f' ? "\\f" : cp == '\n' ? "\\n"
                              : cp == '\r' ? "\\r" : cp == '\t' ? "\\t" : NULL;
            if (named) {
                memcpy(esc, named, 2);
                k = 2;
            } else {
                k = sprintf(esc, "\\u%04x", cp);
            }
        } else if (ascii && cp >= 0x7f) {
            uint32_t u[2];
            int nu = 1;
            if (cp >= 0x10000) {
                u[0] = 0xd800 + ((cp - 0x10000) >> 10);
                u[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
                nu = 2;
            } else {
                u[0] = cp;
            }
            for (int j = 0; j < nu; j++) {
                esc[k++] = '\\';
                esc[k++] = 'u';
                for (int sh = 12; sh >= 0; sh -= 4)
                    esc[k++] = hex[(u[j] >> sh) & 15];
            }
        } else {
            continue;
        }
        if (tpl_buf_put(r, buf, s + run, st - run) || tpl_buf_put(r, buf, esc, (size_t)k))
            return -1;
        run = i;
    }
    if (tpl_buf_put(r, buf, s + run, n - run))
        return -1;
    return tpl_buf_putc(r, buf, '"');
}

int tpl_u16_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i = 0, j = 0;
    while (i < an && j < bn) {
        uint32_t ca = (uint32_t)tpl_utf8_decode(a, an, &i);
        uint32_t cb = (uint32_t)tpl_utf8_decode(b, bn, &j);
        if (ca == cb)
            continue;
        uint32_t ka = ca >= 0x10000 ? 0xd800 : ca, kb = cb >= 0x10000 ? 0xd800 : cb;
        if (ka != kb)
            return ka < kb ? -1 : 1;
        return ca < cb ? -1 : 1;
    }
    if (i < an)
        return 1;
    if (j < bn)
        return -1;
    return 0;
}
