/*
 * fuzz_tokenizer.c - libFuzzer harness for the tokenizer: arbitrary bytes are
 * encoded (the first byte picks the vocabulary, add_special and
 * parse_special; the rest is the text), the ids decoded whole, piece by
 * piece and through the streaming detokenizer, and invariants are checked
 * with __builtin_trap(): ids inside the vocabulary; the stream never ends a
 * chunk inside a well-formed UTF-8 character and gives exactly the pieces;
 * on valid UTF-8 text, detokenize(encode(x)) == x for the SPM vocabulary
 * (byte fallback covers every character; x without U+2581) and for Qwen2
 * (byte-level, no space clean-up).
 *
 * Vocabularies, loaded once: tests/data/vocab/ggml-vocab-{llama-spm,gpt-2}.gguf
 * and, if present, ggml-vocab-qwen2.gguf from $VT_SHARED/fixtures/vocab
 * (default ../shared). VT_FUZZ_VOCAB_DIR replaces tests/data/vocab. Run from
 * the repository root; see fuzz/README.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static tok_tokenizer *vocabs[3]; /* llama-spm, gpt-2, qwen2 (may be NULL) */
static int n_vocabs;

static tok_tokenizer *load(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", dir, name);
    gguf_file *g;
    if (gguf_open(path, &g))
        return NULL;
    tok_tokenizer *t = NULL;
    if (tok_load(g, &t))
        t = NULL;
    gguf_close(g);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("VT_FUZZ_VOCAB_DIR");
    if (!dir || !*dir)
        dir = "tests/data/vocab";
    vocabs[0] = load(dir, "llama-spm");
    vocabs[1] = load(dir, "gpt-2");
    if (!vocabs[0] || !vocabs[1]) {
        fprintf(stderr, "fuzz_tokenizer: cannot load the vocabularies in %s (run from the "
                        "repository root or set VT_FUZZ_VOCAB_DIR)\n", dir);
        exit(1);
    }
    const char *sh = getenv("VT_SHARED");
    char sdir[1024];
    snprintf(sdir, sizeof sdir, "%s/fixtures/vocab", sh && *sh ? sh : "../shared");
    vocabs[2] = load(sdir, "qwen2");
    n_vocabs = vocabs[2] ? 3 : 2;
    fprintf(stderr, "fuzz_tokenizer: %d vocabularies\n", n_vocabs);
    return 0;
}

static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t c = tok_utf8_decode(s + i, n - i, &adv);
        if (c == TOK_UC_REPLACEMENT && !(adv == 3 && s[i] == 0xEF))
            return false;
        uint8_t enc[4];
        if (tok_utf8_encode(c, enc) != adv || memcmp(enc, s + i, adv) ||
            (c >= 0xD800 && c <= 0xDFFF))
            return false; /* overlong or surrogate */
        i += adv;
    }
    return true;
}

/* Length of the well-formed multi-byte UTF-8 sequence at s, or 1. */
static size_t seq_len(const uint8_t *s, size_t n)
{
    size_t adv;
    uint32_t c = tok_utf8_decode(s, n, &adv);
    uint8_t enc[4];
    if (adv < 2 || tok_utf8_encode(c, enc) != adv || memcmp(enc, s, adv) ||
        (c >= 0xD800 && c <= 0xDFFF))
        return 1;
    return adv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    const tok_tokenizer *t = vocabs[(mode & 3) % n_vocabs];
    bool add_special = mode & 4, parse_special = mode & 8, unparse = mode & 16;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    int32_t *ids;
    size_t n;
    ASSERT(tok_encode(t, text, len, add_special, parse_special, &ids, &n) == VT_OK);
    ASSERT(n == 0 || ids);
    int32_t nv = tok_n_vocab(t);
    for (size_t i = 0; i < n; i++)
        ASSERT(ids[i] >= 0 && ids[i] < nv);

    char *back;
    size_t blen;
    ASSERT(tok_detokenize(t, ids, n, false, unparse, &back, &blen) == VT_OK);
    ASSERT(back && back[blen] == 0);
    /* round trips: SPM (no U+2581 in the text: it reads back as a space)
     * and Qwen2, on valid UTF-8 (an invalid lead byte takes the bytes after
     * it into one "character", spaces included, as in llama.cpp) */
    if (!add_special && !parse_special && !unparse && valid_utf8((const uint8_t *)text, len) &&
        ((tok_type(t) == TOK_VOCAB_SPM && !memmem(text, len, "\xe2\x96\x81", 3)) || t == vocabs[2]))
        ASSERT(blen == len && !memcmp(back, text, len));
    free(back);

    /* the stream gives the pieces, and never cuts inside a well-formed
     * character of its output */
    tok_stream *s = tok_stream_create(t, unparse, false);
    ASSERT(s);
    size_t total = 0, want = 0, cap = 256;
    uint8_t *all = malloc(cap), *pcs = malloc(cap);
    size_t *cuts = malloc(sizeof *cuts * (n + 1));
    ASSERT(all && pcs && cuts);
    for (size_t i = 0; i <= n; i++) {
        const char *p, *q;
        size_t l, pl = 0;
        if (i < n) {
            ASSERT(tok_stream_push(s, ids[i], &p, &l) == VT_OK);
            q = tok_piece(t, ids[i], unparse, &pl);
        } else {
            tok_stream_flush(s, &p, &l);
            q = "";
        }
        while (total + l > cap || want + pl > cap) {
            cap *= 2;
            all = realloc(all, cap);
            pcs = realloc(pcs, cap);
            ASSERT(all && pcs);
        }
        memcpy(all + total, p, l);
        total += l;
        memcpy(pcs + want, q, pl);
        want += pl;
        cuts[i] = total;
    }
    ASSERT(total == want && !memcmp(all, pcs, total));
    size_t c = 0;
    for (size_t i = 0; i < total;) {
        size_t k = seq_len(all + i, total - i);
        while (c <= n && cuts[c] <= i)
            c++;
        ASSERT(c > n || cuts[c] >= i + k); /* no cut strictly inside [i, i+k) */
        i += k;
    }
    tok_stream_destroy(s);
    free(all);
    free(pcs);
    free(cuts);
    free(ids);
    return 0;
}
