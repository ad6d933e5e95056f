/*
 * fuzz_grammar.c - libFuzzer harness for the grammar engine: the first byte
 * of the input picks what the rest is (GBNF, a JSON Schema, a regular
 * expression), which is compiled; when it compiles, a state walks a few
 * steps over a small built-in vocabulary (every single byte, some UTF-8
 * characters and words), each step's mask checked against the tokens the
 * state can take one by one, so that hostile grammars must end in an output
 * or a clear error, never a crash, a hang, a leak or undefined behaviour.
 *   make -f fuzz/fuzz.mk build-fuzz/fuzz_grammar
 *   build-fuzz/fuzz_grammar -max_total_time=600 CORPUS_DIR fuzz/seeds-grammar
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"

static smp_grammar_vocab *vocab;
static int32_t n_vocab;

static const char *const words[] = {
    "\"", "{", "}", "[", "]", ":", ",", " ", "\n", "true", "false", "null", "\"a\"", "\":",
    "\",", "{\"", "12", "3.5", "-", "e+", "\xc3\xa9", "\xe4\xb8\x80", "\xf0\x9f\x98\x80", "\xc3",
    "\xa9", "ab", "abc", "\\", "\\u00", "x", "root", "::=", "  ", "\"}", "]}", "0", "1", "9"};

static void make_vocab(void)
{
    enum { N_WORDS = sizeof words / sizeof *words };
    static char bytes[256];
    const char *pieces[256 + N_WORDS + 2];
    size_t lens[256 + N_WORDS + 2];
    int32_t n = 0;
    for (int b = 0; b < 256; b++) {
        bytes[b] = (char)b;
        pieces[n] = &bytes[b];
        lens[n++] = 1;
    }
    for (size_t k = 0; k < N_WORDS; k++) {
        pieces[n] = words[k];
        lens[n++] = strlen(words[k]);
    }
    pieces[n] = "";
    lens[n++] = 0; /* an end token */
    if (smp_grammar_vocab_create(n, pieces, lens, &vocab))
        abort();
    n_vocab = n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!vocab)
        make_vocab();
    if (size < 1)
        return 0;
    smp_grammar_kind kind = data[0] % 3 == 0   ? SMP_GRAMMAR_GBNF
                            : data[0] % 3 == 1 ? SMP_GRAMMAR_JSON_SCHEMA
                                               : SMP_GRAMMAR_REGEX;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char *gbnf = NULL;
    if (kind == SMP_GRAMMAR_JSON_SCHEMA) {
        if (smp_json_schema_to_gbnf(text, len, &gbnf) == VT_OK && !gbnf)
            abort();
    } else if (kind == SMP_GRAMMAR_REGEX) {
        if (smp_regex_to_gbnf(text, len, &gbnf) == VT_OK && !gbnf)
            abort();
    }
    free(gbnf);
    smp_grammar *g = NULL;
    if (smp_grammar_compile(kind, text, len, vocab, &g) != VT_OK) {
        if (g)
            abort();
        return 0;
    }
    (void)smp_grammar_bounded(g);
    smp_grammar_state *st = NULL;
    if (smp_grammar_state_create(g, &st) == VT_OK) {
        uint64_t mask[8];
        uint32_t pick = data[0];
        for (int step = 0; step < 8; step++) {
            int32_t n = smp_grammar_mask(st, mask);
            if (n < 0)
                break;
            int32_t allowed[512], m = 0;
            for (int32_t t = 0; t < n_vocab; t++) {
                bool in = mask[t >> 6] >> (t & 63) & 1;
                if (in != smp_grammar_can_take(st, t))
                    abort(); /* the mask and the matcher disagree */
                if (in)
                    allowed[m++] = t;
            }
            if (m != n)
                abort();
            if (m == 0)
                break;
            pick = pick * 1103515245u + 12345u;
            if (smp_grammar_accept_token(st, allowed[pick % (uint32_t)m]) != VT_OK)
                abort();
            smp_grammar_state *c = smp_grammar_state_clone(st);
            smp_grammar_state_destroy(st);
            st = c;
            if (!st)
                break;
        }
        (void)smp_grammar_matches(st, text, len > 64 ? 64 : len);
    }
    smp_grammar_state_destroy(st);
    smp_grammar_unref(g);
    return 0;
}
