/*
 * unicode.c - lookups over the generated Unicode tables (unicode_tables.c)
 * and the UTF-8 helpers of unicode.h. The run list is expanded once into a
 * flat table for the Basic Multilingual Plane (64 KiB, built under
 * pthread_once); code points above it, which are rare in text, are found by
 * binary search over the runs.
 */
#include <pthread.h>

#include "unicode.h"

static uint8_t bmp_flags[0x10000];
static pthread_once_t bmp_once = PTHREAD_ONCE_INIT;

static void bmp_build(void)
{
    for (uint32_t i = 0; i < tok_uc_n_ranges; i++) {
        uint32_t lo = tok_uc_ranges[i][0];
        uint32_t hi = i + 1 < tok_uc_n_ranges ? tok_uc_ranges[i + 1][0] : 0x110000u;
        if (lo >= 0x10000u)
            break;
        if (hi > 0x10000u)
            hi = 0x10000u;
        for (uint32_t c = lo; c < hi; c++)
            bmp_flags[c] = (uint8_t)tok_uc_ranges[i][1];
    }
}

uint8_t tok_uc_flags(uint32_t cpt)
{
    if (cpt < 0x10000u) {
        pthread_once(&bmp_once, bmp_build);
        return bmp_flags[cpt];
    }
    if (cpt > 0x10FFFFu)
        return 0;
    /* last run starting at or before cpt */
    uint32_t lo = 0, hi = tok_uc_n_ranges;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (tok_uc_ranges[mid][0] <= cpt)
            lo = mid;
        else
            hi = mid;
    }
    return (uint8_t)tok_uc_ranges[lo][1];
}

uint32_t tok_uc_tolower(uint32_t cpt)
{
    uint32_t lo = 0, hi = tok_uc_n_lower;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (tok_uc_lower[mid][0] < cpt)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < tok_uc_n_lower && tok_uc_lower[lo][0] == cpt ? tok_uc_lower[lo][1] : cpt;
}

static inline int is_cont(uint8_t b)
{
    return (b & 0xC0u) == 0x80u;
}

uint32_t tok_utf8_decode(const uint8_t *s, size_t n, size_t *adv)
{
    uint8_t b0 = s[0];
    *adv = 1;
    if (b0 < 0x80u)
        return b0;
    if (b0 < 0xC0u) /* stray continuation byte */
        return TOK_UC_REPLACEMENT;
    if (b0 < 0xE0u) {
        if (n < 2 || !is_cont(s[1]))
            return TOK_UC_REPLACEMENT;
        *adv = 2;
        return ((uint32_t)(b0 & 0x1Fu) << 6) | (s[1] & 0x3Fu);
    }
    if (b0 < 0xF0u) {
        if (n < 3 || !is_cont(s[1]) || !is_cont(s[2]))
            return TOK_UC_REPLACEMENT;
        *adv = 3;
        return ((uint32_t)(b0 & 0x0Fu) << 12) | ((uint32_t)(s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
    }
    if (b0 < 0xF8u) {
        if (n < 4 || !is_cont(s[1]) || !is_cont(s[2]) || !is_cont(s[3]))
            return TOK_UC_REPLACEMENT;
        uint32_t c = ((uint32_t)(b0 & 0x07u) << 18) | ((uint32_t)(s[1] & 0x3Fu) << 12) |
                     ((uint32_t)(s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        if (c > 0x10FFFFu)
            return TOK_UC_REPLACEMENT;
        *adv = 4;
        return c;
    }
    return TOK_UC_REPLACEMENT;
}

size_t tok_utf8_encode(uint32_t cpt, uint8_t out[4])
{
    if (cpt < 0x80u) {
        out[0] = (uint8_t)cpt;
        return 1;
    }
    if (cpt < 0x800u) {
        out[0] = (uint8_t)(0xC0u | (cpt >> 6));
        out[1] = (uint8_t)(0x80u | (cpt & 0x3Fu));
        return 2;
    }
    if (cpt < 0x10000u) {
        out[0] = (uint8_t)(0xE0u | (cpt >> 12));
        out[1] = (uint8_t)(0x80u | ((cpt >> 6) & 0x3Fu));
        out[2] = (uint8_t)(0x80u | (cpt & 0x3Fu));
        return 3;
    }
    out[0] = (uint8_t)(0xF0u | ((cpt >> 18) & 0x07u));
    out[1] = (uint8_t)(0x80u | ((cpt >> 12) & 0x3Fu));
    out[2] = (uint8_t)(0x80u | ((cpt >> 6) & 0x3Fu));
    out[3] = (uint8_t)(0x80u | (cpt & 0x3Fu));
    return 4;
}

size_t tok_utf8_complete_prefix(const uint8_t *s, size_t n)
{
    /* Find the last lead byte among the final 3 bytes. */
    size_t back = 0;
    while (back < 3 && back < n && is_cont(s[n - 1 - back]))
        back++;
    if (back == n)
        return n; /* only continuation bytes: nothing can complete them */
    size_t i = n - 1 - back;
    uint8_t b0 = s[i];
    size_t need;
    if (b0 >= 0xC2u && b0 <= 0xDFu)
        need = 2;
    else if (b0 >= 0xE0u && b0 <= 0xEFu)
        need = 3;
    else if (b0 >= 0xF0u && b0 <= 0xF4u)
        need = 4;
    else
        return n; /* ASCII, or a byte that never starts a valid sequence */
    size_t have = back + 1;
    if (have >= need)
        return n;
    if (have >= 2) { /* the second byte must be able to continue this lead */
        uint8_t b1 = s[i + 1];
        uint8_t lo = 0x80u, hi = 0xBFu;
        if (b0 == 0xE0u)
            lo = 0xA0u;
        else if (b0 == 0xEDu)
            hi = 0x9Fu;
        else if (b0 == 0xF0u)
            lo = 0x90u;
        else if (b0 == 0xF4u)
            hi = 0x8Fu;
        if (b1 < lo || b1 > hi)
            return n;
    }
    return i;
}
