/*
 * unicode.h - the Unicode character data the tokenizer needs: one flag byte
 * per code point (general category N/L/M/P/S/Z/C, and White_Space), simple
 * lowercase mapping, and UTF-8 decoding the way llama.cpp decodes it.
 *
 * The tables come from the Unicode Character Database 15.0.0 (Debian's
 * unicode-data package), generated into unicode_tables.c by
 * tools/gen_unicode.py; tok_unicode_version names the version at run time.
 * Unassigned code points (Cn) have no category bit; so do values above
 * 0x10FFFF. Everything here is thread-safe: the lookup table behind
 * tok_uc_flags() is built once, on first use, under pthread_once.
 */
#ifndef VT_TOK_UNICODE_H
#define VT_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Flag bits (one category bit at most, plus TOK_UC_WS). */
#define TOK_UC_NUMBER 0x01u /* \p{N}: Nd Nl No */
#define TOK_UC_LETTER 0x02u /* \p{L}: Lu Ll Lt Lm Lo */
#define TOK_UC_MARK 0x04u   /* \p{M}: Mn Mc Me */
#define TOK_UC_PUNCT 0x08u  /* \p{P}: Pc Pd Ps Pe Pi Pf Po */
#define TOK_UC_SYMBOL 0x10u /* \p{S}: Sm Sc Sk So */
#define TOK_UC_SEP 0x20u    /* \p{Z}: Zs Zl Zp */
#define TOK_UC_CTRL 0x40u   /* \p{C} less Cn: Cc Cf Cs Co */
#define TOK_UC_WS 0x80u     /* White_Space property (PropList.txt) */

/* Returned by the decoder for a byte that does not start a sequence. */
#define TOK_UC_REPLACEMENT 0xFFFDu

extern const char tok_unicode_version[]; /* e.g. "15.0.0" */

/* Generated data (unicode_tables.c). */
extern const uint32_t tok_uc_n_ranges;
extern const uint32_t tok_uc_ranges[][2]; /* {first code point, flags}, ascending */
extern const uint32_t tok_uc_n_lower;
extern const uint32_t tok_uc_lower[][2]; /* {code point, simple lowercase}, ascending */

/* Flags of a code point (0 for unassigned ones and for values > 0x10FFFF). */
uint8_t tok_uc_flags(uint32_t cpt);

/* Simple lowercase mapping (the code point itself if it has none). */
uint32_t tok_uc_tolower(uint32_t cpt);

/* Length llama.cpp gives a UTF-8 sequence from its first byte alone:
 * 1 for 0x00-0xBF, 2 for 0xC0-0xDF, 3 for 0xE0-0xEF, 4 for 0xF0-0xFF. */
static inline size_t tok_utf8_len(uint8_t lead)
{
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[lead >> 4];
}

/* Decodes one code point from s[0..n) (n >= 1) as llama.cpp does: a lead
 * byte with the right number of continuation bytes is accepted even when the
 * sequence is overlong or a surrogate. A byte that does not start such a
 * sequence, or a 4-byte sequence above 0x10FFFF (where llama.cpp would throw
 * an exception), yields TOK_UC_REPLACEMENT and *adv = 1. */
uint32_t tok_utf8_decode(const uint8_t *s, size_t n, size_t *adv);

/* Encodes cpt (<= 0x10FFFF) into out; returns the length (1..4). */
size_t tok_utf8_encode(uint32_t cpt, uint8_t out[4]);

/* Length of the longest prefix of s[0..n) that holds only complete UTF-8
 * sequences, i.e. where a stream may be cut without splitting a character:
 * an incomplete sequence at the end (a lead byte whose continuation bytes
 * have not all arrived yet) is left out. Invalid bytes count as complete. */
size_t tok_utf8_complete_prefix(const uint8_t *s, size_t n);

#endif
