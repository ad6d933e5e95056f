/*
 * test_tokenizer.c - the tokenizer against llama.cpp: llama.cpp's own test
 * vectors (ggml-vocab-*.gguf.inp/.out), more cases made with the oracle
 * (tests/data/tokenizer: Korean, Japanese, Chinese, emoji, mixed scripts,
 * whitespace runs, code, special-token markup, invalid UTF-8 bytes,
 * add_special, detokenization, single pieces), the streaming detokenizer,
 * the Unicode tables, synthetic vocabularies (merge order, byte fallback,
 * scores) and malformed metadata. The small llama-spm and gpt-2 vocabularies
 * are in tests/data/vocab; the other 11 of the 13 expected ones (all_vocabs)
 * are read from ../shared/fixtures/vocab. A missing one is named: a skip of
 * the test that needs it, or a failure when CI is set (test_skip_missing).
 * test_vocab_list checks that the list is the folders' contents.
 */
#include <dirent.h>
#include <jansson.h>
#include <string.h>
#include <sys/wait.h>

#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/util.h"

static const char *const all_vocabs[] = {
    "llama-spm", "gpt-2", "llama-bpe", "qwen2", "qwen35", "phi-3", "falcon",
    "starcoder", "refact", "command-r", "mpt", "deepseek-llm", "deepseek-coder",
};
#define N_VOCABS (sizeof all_vocabs / sizeof all_vocabs[0])
/* The ones with llama.cpp's test vectors (ggml-vocab-NAME.gguf.inp/.out). */
static const char *const vector_vocabs[] = {
    "llama-spm", "gpt-2", "llama-bpe", "qwen2", "phi-3", "falcon", "starcoder", "command-r",
    "deepseek-llm",
};

#define DATA "tests/data/tokenizer"

/* ---- helpers ---- */

/* Path of a vocabulary file: tests/data/vocab first, then ../shared. */
static bool vocab_path(const char *name, const char *suffix, char *out, size_t cap)
{
    snprintf(out, cap, "tests/data/vocab/ggml-vocab-%s.gguf%s", name, suffix);
    FILE *f = fopen(out, "rb");
    if (f) {
        fclose(f);
        return true;
    }
    const char *sh = test_shared_dir();
    if (!sh)
        return false;
    snprintf(out, cap, "%s/fixtures/vocab/ggml-vocab-%s.gguf%s", sh, name, suffix);
    f = fopen(out, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* Where vocab_path looked, for messages. */
static const char *vocab_dirs(void)
{
    static char buf[1200];
    const char *sh = test_shared_dir(), *env = getenv("VT_SHARED");
    snprintf(buf, sizeof buf, "tests/data/vocab and %s/fixtures/vocab%s",
             sh ? sh : env && *env ? env : "../shared", sh ? "" : " (absent)");
    return buf;
}

/* The tokenizer of an expected vocabulary; NULL after a failure, or after
 * test_skip_missing naming the vocabulary when its file is not found. */
static tok_tokenizer *load_vocab(const char *name)
{
    char path[1024];
    if (!vocab_path(name, "", path, sizeof path)) {
        test_skip_missing("vocabulary %s (ggml-vocab-%s.gguf) not found in %s", name, name,
                          vocab_dirs());
        return NULL;
    }
    gguf_file *g;
    if (gguf_open(path, &g)) {
        test_fail_at(__FILE__, __LINE__, "gguf_open %s: %s", path, vt_last_error());
        return NULL;
    }
    tok_tokenizer *t = NULL;
    vt_err e = tok_load(g, &t);
    gguf_close(g); /* the tokenizer must not need it any more */
    if (e)
        test_fail_at(__FILE__, __LINE__, "tok_load %s: %s", path, vt_last_error());
    return t;
}

/* Splits llama.cpp's .inp format into cases (pointers into buf, which is
 * modified). Returns the count. */
static size_t split_cases(char *buf, size_t len, char **cases, size_t *lens, size_t max)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t n = 0;
    char *p = buf, *end = buf + len;
    while (p <= end && n < max) {
        char *q = memmem(p, (size_t)(end - p), sep, sizeof sep - 1);
        if (!q) {
            if (p < end) {
                cases[n] = p;
                lens[n++] = (size_t)(end - p);
            }
            break;
        }
        cases[n] = p;
        lens[n++] = (size_t)(q - p);
        p = q + sizeof sep - 1;
    }
    return n;
}

/* Parses one line of space-separated ids; returns the count. */
static size_t parse_ids(const char *line, size_t len, int32_t *ids, size_t max)
{
    size_t n = 0;
    const char *p = line, *end = line + len;
    while (p < end && n < max) {
        while (p < end && *p == ' ')
            p++;
        if (p >= end)
            break;
        ids[n++] = (int32_t)strtol(p, (char **)&p, 10);
    }
    return n;
}

static bool same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

static void fmt_ids(char *out, size_t cap, const int32_t *ids, size_t n)
{
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && o + 16 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, " %d", ids[i]);
}

/* Runs every case of inp against the lines of out; returns passed count. */
static int run_vectors(const tok_tokenizer *t, const char *name, const char *inp_path,
                       const char *out_path, bool parse_special, int *n_cases)
{
    size_t li, lo;
    char *inp = test_read_file(inp_path, &li), *out = test_read_file(out_path, &lo);
    int passed = 0;
    *n_cases = 0;
    if (!inp || !out) {
        test_fail_at(__FILE__, __LINE__, "cannot read %s / %s", inp_path, out_path);
        free(inp);
        free(out);
        return 0;
    }
    static char *cases[512];
    static size_t lens[512];
    size_t nc = split_cases(inp, li, cases, lens, 512);
    char *line = out;
    static int32_t want[8192];
    for (size_t c = 0; c < nc; c++) {
        char *nl = memchr(line, '\n', (size_t)(out + lo - line));
        if (!nl) {
            test_fail_at(__FILE__, __LINE__, "%s: %s has fewer lines than cases", name, out_path);
            break;
        }
        size_t nw = parse_ids(line, (size_t)(nl - line), want, 8192);
        line = nl + 1;
        int32_t *ids;
        size_t n;
        vt_err e = tok_encode(t, cases[c], lens[c], false, parse_special, &ids, &n);
        (*n_cases)++;
        if (e == VT_OK && same_ids(ids, n, want, nw)) {
            passed++;
        } else {
            char a[512], b[512];
            fmt_ids(a, sizeof a, want, nw);
            fmt_ids(b, sizeof b, ids, n);
            test_fail_at(__FILE__, __LINE__, "%s case %zu '%.*s'\n    want%s\n    got %s", name, c,
                         (int)VT_MIN(lens[c], 60), cases[c], a, b);
        }
        free(ids);
    }
    free(inp);
    free(out);
    return passed;
}

/* ---- llama.cpp's vectors and the oracle's cases ---- */

static void test_ggml_vectors(void)
{
    for (size_t v = 0; v < VT_ARRAY_LEN(vector_vocabs); v++) {
        const char *name = vector_vocabs[v];
        char inp[1024], out[1024];
        if (!vocab_path(name, ".inp", inp, sizeof inp) ||
            !vocab_path(name, ".out", out, sizeof out)) {
            test_skip_missing("llama.cpp's vectors for %s (ggml-vocab-%s.gguf.inp/.out) not found "
                              "in %s", name, name, vocab_dirs());
            continue;
        }
        tok_tokenizer *t = load_vocab(name);
        if (!t)
            continue;
        int n, ok = run_vectors(t, name, inp, out, false, &n);
        if (getenv("VT_TEST_VERBOSE"))
            fprintf(stderr, "    %-15s llama.cpp vectors: %d/%d\n", name, ok, n);
        CHECK(n > 0);
        tok_destroy(t);
    }
}

/* all_vocabs is what the folders hold: every expected vocabulary is there
 * (else named), and no vocabulary file there is left out of the list. */
static void test_vocab_list(void)
{
    for (size_t v = 0; v < N_VOCABS; v++) {
        char path[1024];
        if (!vocab_path(all_vocabs[v], "", path, sizeof path))
            test_skip_missing("vocabulary %s (ggml-vocab-%s.gguf) not found in %s", all_vocabs[v],
                              all_vocabs[v], vocab_dirs());
    }
    char shared_dir[1100];
    const char *sh = test_shared_dir();
    snprintf(shared_dir, sizeof shared_dir, "%s/fixtures/vocab", sh ? sh : "");
    const char *dirs[] = {"tests/data/vocab", sh ? shared_dir : NULL};
    for (size_t i = 0; i < 2; i++) {
        DIR *d = dirs[i] ? opendir(dirs[i]) : NULL;
        struct dirent *e;
        while (d && (e = readdir(d))) {
            size_t n = strlen(e->d_name);
            if (strncmp(e->d_name, "ggml-vocab-", 11) || n < 16 || strcmp(e->d_name + n - 5, ".gguf"))
                continue;
            bool listed = false;
            for (size_t v = 0; v < N_VOCABS && !listed; v++)
                listed = n - 16 == strlen(all_vocabs[v]) &&
                         !strncmp(e->d_name + 11, all_vocabs[v], n - 16);
            CHECKF(listed, "%s/%s is not in all_vocabs", dirs[i], e->d_name);
        }
        if (d)
            closedir(d);
    }
}

static void test_oracle_cases(void)
{
    for (size_t v = 0; v < N_VOCABS; v++) {
        tok_tokenizer *t = load_vocab(all_vocabs[v]);
        if (!t)
            continue;
        char out[256];
        int n1, n2;
        snprintf(out, sizeof out, DATA "/%s.cases.out", all_vocabs[v]);
        int ok1 = run_vectors(t, all_vocabs[v], DATA "/cases.inp", out, false, &n1);
        snprintf(out, sizeof out, DATA "/%s.special.out", all_vocabs[v]);
        int ok2 = run_vectors(t, all_vocabs[v], DATA "/special.inp", out, true, &n2);
        CHECK(n1 >= 50 && n2 >= 12);
        if (getenv("VT_TEST_VERBOSE"))
            fprintf(stderr, "    %-15s oracle cases: %d/%d, with specials: %d/%d\n", all_vocabs[v],
                    ok1, n1, ok2, n2);
        tok_destroy(t);
    }
}

static size_t unhex(const char *h, char *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    return n;
}

static size_t json_ids(json_t *arr, int32_t *ids, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(arr) && n < max; i++)
        ids[n++] = (int32_t)json_integer_value(json_array_get(arr, i));
    return n;
}

/* Raw bytes (invalid UTF-8), add_special, detokenization and pieces, from
 * llama.cpp's C API (oracle_bytes.py). */
static void test_oracle_bytes(void)
{
    static char text[1 << 16], want[1 << 16];
    static int32_t ids[8192];
    for (size_t v = 0; v < N_VOCABS; v++) {
        const char *name = all_vocabs[v];
        tok_tokenizer *t = load_vocab(name);
        if (!t)
            continue;
        char path[256];
        snprintf(path, sizeof path, DATA "/%s.bytes.json", name);
        json_error_t jerr;
        json_t *root = json_load_file(path, 0, &jerr);
        CHECKF(root, "%s: %s", path, jerr.text);
        if (!root) {
            tok_destroy(t);
            continue;
        }
        json_t *enc = json_object_get(root, "encode"), *det = json_object_get(root, "detokenize");
        json_t *pcs = json_object_get(root, "pieces");
        CHECK(json_array_size(enc) > 30 && json_array_size(det) > 100 && json_array_size(pcs) > 100);
        int ok_enc = 0, ok_det = 0, ok_pc = 0;
        for (size_t i = 0; i < json_array_size(enc); i++) {
            json_t *e = json_array_get(enc, i);
            size_t len = unhex(json_string_value(json_object_get(e, "hex")), text);
            size_t nw = json_ids(json_object_get(e, "ids"), ids, 8192);
            bool as = json_is_true(json_object_get(e, "add_special"));
            bool ps = json_is_true(json_object_get(e, "parse_special"));
            int32_t *got;
            size_t n;
            CHECK(tok_encode(t, text, len, as, ps, &got, &n) == VT_OK);
            if (same_ids(got, n, ids, nw)) {
                ok_enc++;
            } else {
                char a[512], b[512];
                fmt_ids(a, sizeof a, ids, nw);
                fmt_ids(b, sizeof b, got, n);
                test_fail_at(__FILE__, __LINE__, "%s bytes %s (add %d, special %d)\n    want%s\n    got %s",
                             name, json_string_value(json_object_get(e, "hex")), as, ps, a, b);
            }
            free(got);
        }
        for (size_t i = 0; i < json_array_size(det); i++) {
            json_t *e = json_array_get(det, i);
            size_t nw = unhex(json_string_value(json_object_get(e, "hex")), want);
            size_t n = json_ids(json_object_get(e, "ids"), ids, 8192);
            bool rs = json_is_true(json_object_get(e, "remove_special"));
            bool us = json_is_true(json_object_get(e, "unparse_special"));
            char *got;
            size_t len;
            CHECK(tok_detokenize(t, ids, n, rs, us, &got, &len) == VT_OK);
            if (got && len == nw && !memcmp(got, want, nw))
                ok_det++;
            else
                test_fail_at(__FILE__, __LINE__, "%s detokenize #%zu (remove %d, unparse %d): '%.*s' vs '%.*s'",
                             name, i, rs, us, (int)VT_MIN(nw, 80), want, (int)VT_MIN(len, 80),
                             got ? got : "");
            free(got);
        }
        for (size_t i = 0; i < json_array_size(pcs); i++) {
            json_t *e = json_array_get(pcs, i);
            int32_t id = (int32_t)json_integer_value(json_array_get(e, 0));
            bool all = true;
            for (int sp = 0; sp < 2; sp++) {
                size_t nw = unhex(json_string_value(json_array_get(e, 1 + (size_t)sp)), want);
                size_t len;
                const char *p = tok_piece(t, id, sp == 0, &len);
                if (len != nw || memcmp(p, want, nw)) {
                    all = false;
                    test_fail_at(__FILE__, __LINE__, "%s piece of %d (special %d)", name, id, sp == 0);
                }
            }
            ok_pc += all;
        }
        if (getenv("VT_TEST_VERBOSE"))
            fprintf(stderr, "    %-15s bytes: encode %d/%zu, detokenize %d/%zu, pieces %d/%zu\n", name,
                    ok_enc, json_array_size(enc), ok_det, json_array_size(det), ok_pc,
                    json_array_size(pcs));
        json_decref(root);
        tok_destroy(t);
    }
}

/* Special ids as llama.cpp reports them (node-llama-cpp's model.tokens). */
static void test_special_ids(void)
{
    static const struct {
        const char *name;
        int32_t bos, eos, eot, nl;
    } want[] = {
        {"llama-bpe", 128000, 128001, 128009, 198}, {"qwen2", 151643, 151643, 151645, 198},
        {"phi-3", 1, 32000, 32007, 13},             {"gpt-2", 50256, 50256, 50256, 198},
        {"command-r", 5, 255001, TOK_NULL, 206},    {"deepseek-llm", 100000, 100001, 100001, 185},
        {"llama-spm", 1, 2, TOK_NULL, 13},          {"mpt", 0, 0, 0, 187},
    };
    for (size_t i = 0; i < VT_ARRAY_LEN(want); i++) {
        tok_tokenizer *t = load_vocab(want[i].name);
        if (!t)
            continue;
        CHECKF(tok_bos(t) == want[i].bos && tok_eos(t) == want[i].eos && tok_eot(t) == want[i].eot &&
                   tok_nl(t) == want[i].nl,
               "%s: bos %d eos %d eot %d nl %d", want[i].name, tok_bos(t), tok_eos(t), tok_eot(t),
               tok_nl(t));
        CHECK(tok_is_eog(t, want[i].eos));
        if (want[i].eot >= 0)
            CHECK(tok_is_eog(t, want[i].eot));
        tok_destroy(t);
    }
}

/* Byte-level BPE vocabularies that do not clean up spaces give the input
 * back exactly; the others differ only by llama.cpp's clean-up. */
static void test_roundtrip(void)
{
    size_t len;
    char *inp = test_read_file(DATA "/cases.inp", &len);
    CHECK(inp);
    if (!inp)
        return;
    static char *cases[512];
    static size_t lens[512];
    size_t nc = split_cases(inp, len, cases, lens, 512);
    static const char *const exact[] = {"qwen2", "qwen35", "deepseek-llm", "deepseek-coder",
                                        "command-r"};
    for (size_t v = 0; v < VT_ARRAY_LEN(exact); v++) {
        tok_tokenizer *t = load_vocab(exact[v]);
        if (!t)
            continue;
        for (size_t c = 0; c < nc; c++) {
            int32_t *ids;
            size_t n, tl;
            char *text;
            CHECK(tok_encode(t, cases[c], lens[c], false, false, &ids, &n) == VT_OK);
            CHECK(tok_detokenize(t, ids, n, false, false, &text, &tl) == VT_OK);
            CHECKF(tl == lens[c] && !memcmp(text, cases[c], tl), "%s: round trip of case %zu",
                   exact[v], c);
            free(ids);
            free(text);
        }
        tok_destroy(t);
    }
    free(inp);
}

/* ---- streaming detokenization ---- */

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

/* Pushes ids one by one: all chunks plus the flush must give the pieces
 * concatenated, and no chunk may end inside a well-formed character. */
static void stream_check(const tok_tokenizer *t, const int32_t *ids, size_t n, const char *name)
{
    tok_stream *s = tok_stream_create(t, false, false);
    CHECK(s);
    if (!s)
        return;
    static char all[1 << 16], want[1 << 16];
    static size_t cuts[1 << 14];
    size_t na = 0, nw = 0, nc = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *p;
        size_t len;
        if (i < n)
            CHECK(tok_stream_push(s, ids[i], &p, &len) == VT_OK);
        else
            tok_stream_flush(s, &p, &len);
        if (na + len < sizeof all) {
            memcpy(all + na, p, len);
            na += len;
        }
        if (nc < VT_ARRAY_LEN(cuts))
            cuts[nc++] = na;
        if (i < n) {
            p = tok_piece(t, ids[i], false, &len);
            if (nw + len < sizeof want) {
                memcpy(want + nw, p, len);
                nw += len;
            }
        }
    }
    CHECKF(na == nw && !memcmp(all, want, na), "%s: stream differs from the pieces", name);
    size_t c = 0;
    for (size_t i = 0; i < na;) {
        size_t k = seq_len((const uint8_t *)all + i, na - i);
        while (c < nc && cuts[c] <= i)
            c++;
        CHECKF(c == nc || cuts[c] >= i + k, "%s: a chunk ends inside the character at %zu", name, i);
        i += k;
    }
    tok_stream_destroy(s);
}

static void test_stream(void)
{
    size_t len;
    char *inp = test_read_file(DATA "/cases.inp", &len);
    CHECK(inp);
    if (!inp)
        return;
    static char *cases[512];
    static size_t lens[512];
    size_t nc = split_cases(inp, len, cases, lens, 512);
    static const char *const names[] = {"llama-spm", "gpt-2", "qwen2", "llama-bpe"};
    for (size_t v = 0; v < VT_ARRAY_LEN(names); v++) {
        tok_tokenizer *t = load_vocab(names[v]);
        if (!t)
            continue;
        for (size_t c = 0; c < nc; c++) {
            int32_t *ids;
            size_t n;
            CHECK(tok_encode(t, cases[c], lens[c], false, false, &ids, &n) == VT_OK);
            stream_check(t, ids, n, names[v]);
            free(ids);
        }
        /* emoji as SPM byte tokens: nothing until the 4th byte */
        if (tok_type(t) == TOK_VOCAB_SPM) {
            int32_t b[4] = {tok_find(t, "<0xF0>", 6), tok_find(t, "<0x9F>", 6),
                            tok_find(t, "<0x98>", 6), tok_find(t, "<0x80>", 6)};
            tok_stream *s = tok_stream_create(t, false, false);
            const char *p;
            size_t l;
            for (int i = 0; i < 3; i++) {
                CHECK(tok_stream_push(s, b[i], &p, &l) == VT_OK);
                CHECK_EQ_INT(l, 0);
            }
            CHECK(tok_stream_push(s, b[3], &p, &l) == VT_OK);
            CHECK(l == 4 && !memcmp(p, "\xf0\x9f\x98\x80", 4));
            /* an incomplete character is held until flush, then given as is */
            CHECK(tok_stream_push(s, b[0], &p, &l) == VT_OK && l == 0);
            tok_stream_flush(s, &p, &l);
            CHECK(l == 1 && (uint8_t)p[0] == 0xF0);
            /* invalid bytes pass straight through */
            CHECK(tok_stream_push(s, tok_find(t, "<0xFF>", 6), &p, &l) == VT_OK);
            CHECK(l == 1 && (uint8_t)p[0] == 0xFF);
            CHECK(tok_stream_push(s, -5, &p, &l) == VT_ERR_RANGE);
            tok_stream_destroy(s);
            /* the first piece's leading space, dropped on request */
            s = tok_stream_create(t, false, true);
            int32_t hello = tok_find(t, "\xe2\x96\x81Hello", 8);
            CHECK(hello >= 0);
            CHECK(tok_stream_push(s, hello, &p, &l) == VT_OK && l == 5 && !memcmp(p, "Hello", 5));
            CHECK(tok_stream_push(s, hello, &p, &l) == VT_OK && l == 6 && !memcmp(p, " Hello", 6));
            tok_stream_destroy(s);
        }
        tok_destroy(t);
    }
    free(inp);
}

/* ---- Unicode tables and UTF-8 ---- */

static void test_unicode(void)
{
    CHECK(!strcmp(tok_unicode_version, "15.0.0"));
    static const struct {
        uint32_t cpt;
        uint8_t flags;
    } cases[] = {
        {'A', TOK_UC_LETTER}, {0xE9, TOK_UC_LETTER}, {0xDF, TOK_UC_LETTER},
        {0xAC00, TOK_UC_LETTER}, {0x4E2D, TOK_UC_LETTER}, {0x30FC, TOK_UC_LETTER},
        {0x20000, TOK_UC_LETTER}, {0x2B739, TOK_UC_LETTER}, {'5', TOK_UC_NUMBER},
        {0x663, TOK_UC_NUMBER}, {0xBD, TOK_UC_NUMBER}, {0x216B, TOK_UC_NUMBER},
        {0x1D7D9, TOK_UC_NUMBER}, {0x301, TOK_UC_MARK}, {0x93F, TOK_UC_MARK},
        {0x20DD, TOK_UC_MARK}, {'!', TOK_UC_PUNCT}, {0x300C, TOK_UC_PUNCT},
        {'_', TOK_UC_PUNCT}, {'$', TOK_UC_SYMBOL}, {'~', TOK_UC_SYMBOL},
        {'`', TOK_UC_SYMBOL}, {0x20AC, TOK_UC_SYMBOL}, {0x1F600, TOK_UC_SYMBOL},
        {' ', TOK_UC_SEP | TOK_UC_WS}, {'\t', TOK_UC_CTRL | TOK_UC_WS},
        {0x3000, TOK_UC_SEP | TOK_UC_WS}, {0xA0, TOK_UC_SEP | TOK_UC_WS},
        {0x85, TOK_UC_CTRL | TOK_UC_WS}, {0x2028, TOK_UC_SEP | TOK_UC_WS},
        {0x1C, TOK_UC_CTRL}, {0x200B, TOK_UC_CTRL}, {0xE000, TOK_UC_CTRL},
        {0xD800, TOK_UC_CTRL}, {0xF0000, TOK_UC_CTRL}, {0xE0001, TOK_UC_CTRL},
        {0x378, 0}, {0x10FFFF, 0}, {0x110000, 0}, {0xFFFFFFFF, 0},
    };
    for (size_t i = 0; i < VT_ARRAY_LEN(cases); i++)
        CHECKF(tok_uc_flags(cases[i].cpt) == cases[i].flags, "U+%04X: flags 0x%02x, want 0x%02x",
               cases[i].cpt, tok_uc_flags(cases[i].cpt), cases[i].flags);
    /* at most one category per code point; whitespace exactly White_Space */
    int n_ws = 0;
    for (uint32_t c = 0; c < 0x110000; c++) {
        uint8_t f = tok_uc_flags(c) & 0x7F;
        CHECKF((f & (f - 1)) == 0, "U+%04X has several categories", c);
        n_ws += (tok_uc_flags(c) & TOK_UC_WS) != 0;
    }
    CHECK_EQ_INT(n_ws, 25);
    CHECK_EQ_INT(tok_uc_tolower('A'), 'a');
    CHECK_EQ_INT(tok_uc_tolower('a'), 'a');
    CHECK_EQ_INT(tok_uc_tolower(0x3A3), 0x3C3);
    CHECK_EQ_INT(tok_uc_tolower(0x130), 'i');
    CHECK_EQ_INT(tok_uc_tolower(0x212A), 'k');
    CHECK_EQ_INT(tok_uc_tolower(0x10400), 0x10428);
    CHECK_EQ_INT(tok_uc_tolower(0x4E2D), 0x4E2D);

    /* llama.cpp's lenient decoding */
    size_t adv;
    CHECK(tok_utf8_decode((const uint8_t *)"\xc0\x80", 2, &adv) == 0 && adv == 2);
    CHECK(tok_utf8_decode((const uint8_t *)"\xed\xa0\x80", 3, &adv) == 0xD800 && adv == 3);
    CHECK(tok_utf8_decode((const uint8_t *)"\xf4\x90\x80\x80", 4, &adv) == 0xFFFD && adv == 1);
    CHECK(tok_utf8_decode((const uint8_t *)"\xe2\x82", 2, &adv) == 0xFFFD && adv == 1);
    CHECK(tok_utf8_decode((const uint8_t *)"\x80", 1, &adv) == 0xFFFD && adv == 1);
    CHECK(tok_utf8_decode((const uint8_t *)"\xf8\x88\x80\x80", 4, &adv) == 0xFFFD && adv == 1);
    CHECK(tok_utf8_decode((const uint8_t *)"\xf0\x9f\x98\x80", 4, &adv) == 0x1F600 && adv == 4);
    for (uint32_t c = 0; c < 0x110000; c += 97) {
        uint8_t buf[4];
        size_t n = tok_utf8_encode(c, buf);
        CHECK(tok_utf8_decode(buf, n, &adv) == c && adv == n);
    }
    /* where a stream may be cut */
    CHECK_EQ_INT(tok_utf8_complete_prefix((const uint8_t *)"ab\xe2\x82", 4), 2);
    CHECK_EQ_INT(tok_utf8_complete_prefix((const uint8_t *)"ab\xe2\x82\xac", 5), 5);
    CHECK_EQ_INT(tok_utf8_complete_prefix((const uint8_t *)"\xf0\x9f\x98", 3), 0);
    CHECK_EQ_INT(tok_utf8_complete_prefix((const uint8_t *)"a\xff", 2), 2);
    CHECK_EQ_INT(tok_utf8_complete_prefix((const uint8_t *)"a\xe0\x80", 3), 3); /* can't complete */
    CHECK_EQ_INT(tok_utf8_complete_prefix((const uint8_t *)"\x80\x80", 2), 2);
    CHECK_EQ_INT(tok_utf8_complete_prefix((const uint8_t *)"", 0), 0);

    /* GPT-2's byte encoding: printable bytes stand for themselves, the 68
     * others for U+0100.. in order (space is U+0120 'Ġ', newline 'Ċ') */
    uint8_t seen[512] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t c = tok_byte_to_cpt((uint8_t)b);
        CHECK(c < 256 + 68 && !seen[c]);
        seen[c] = 1;
        CHECK_EQ_INT(tok_cpt_to_byte(c), b);
    }
    CHECK_EQ_INT(tok_byte_to_cpt(' '), 0x120);
    CHECK_EQ_INT(tok_byte_to_cpt('\n'), 0x10A);
    CHECK_EQ_INT(tok_byte_to_cpt(0xAD), 0x143);
    CHECK_EQ_INT(tok_byte_to_cpt('a'), 'a');
    CHECK_EQ_INT(tok_cpt_to_byte(0x144), -1);
    CHECK_EQ_INT(tok_cpt_to_byte(0x4E2D), -1);
}

/* ---- synthetic vocabularies ---- */

static void set_strs(gguf_writer *w, const char *key, const char *const *s, size_t n)
{
    gguf_str *v = calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (gguf_str){s[i], strlen(s[i])};
    CHECK(gguf_writer_set_arr_str(w, key, v, n) == VT_OK);
    free(v);
}

/* Writes w to a file, opens it and loads a tokenizer (NULL on failure, the
 * error in *err). */
static tok_tokenizer *load_writer(gguf_writer *w, vt_err *err)
{
    char path[512];
    snprintf(path, sizeof path, "%s/synth.gguf", test_tmpdir());
    CHECK(gguf_writer_write(w, path) == VT_OK);
    gguf_writer_destroy(w);
    gguf_file *g;
    if (gguf_open(path, &g)) {
        test_fail_at(__FILE__, __LINE__, "gguf_open: %s", vt_last_error());
        *err = VT_ERR_IO;
        return NULL;
    }
    tok_tokenizer *t = NULL;
    *err = tok_load(g, &t);
    gguf_close(g);
    return t;
}

static const char *const bpe_toks[] = {"a", "b", "c", "ab", "bc", "abc", "aa", "x", "y", "z",
                                       "xyz", "\xc4\xa0", "\xc4\xa0" "a", "<|end|>", "cc!"};
static const char *const bpe_merges[] = {"a b", "b c", "ab c", "a a", "c c", "\xc4\xa0 a",
                                         "junk", "\xe4\xb8\xad x"};

static gguf_writer *bpe_writer(const char *pre)
{
    gguf_writer *w = gguf_writer_create();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (pre)
        gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    set_strs(w, "tokenizer.ggml.tokens", bpe_toks, VT_ARRAY_LEN(bpe_toks));
    set_strs(w, "tokenizer.ggml.merges", bpe_merges, VT_ARRAY_LEN(bpe_merges));
    int32_t types[VT_ARRAY_LEN(bpe_toks)];
    for (size_t i = 0; i < VT_ARRAY_LEN(bpe_toks); i++)
        types[i] = 1;
    types[13] = 3; /* <|end|>: control */
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, types, VT_ARRAY_LEN(types));
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 13);
    return w;
}

static void expect(const tok_tokenizer *t, const char *text, bool special, const int32_t *want,
                   size_t nw)
{
    int32_t *ids;
    size_t n;
    CHECK(tok_encode(t, text, strlen(text), false, special, &ids, &n) == VT_OK);
    char a[256], b[256];
    fmt_ids(a, sizeof a, want, nw);
    fmt_ids(b, sizeof b, ids, n);
    CHECKF(same_ids(ids, n, want, nw), "'%s': want%s, got%s", text, a, b);
    free(ids);
}

static void test_synthetic_bpe(void)
{
    vt_err err;
    tok_tokenizer *t = load_writer(bpe_writer("gpt-2"), &err);
    CHECKF(t, "load: %s", vt_last_error());
    if (!t)
        return;
    expect(t, "abc", false, (int32_t[]){5}, 1);        /* a+b (rank 0), then ab+c */
    expect(t, "aaa", false, (int32_t[]){6, 0}, 2);     /* equal ranks: leftmost first */
    expect(t, "cc", false, (int32_t[]){2, 2}, 2);      /* "cc" is no token: bytes */
    expect(t, "ad", false, (int32_t[]){0}, 1);         /* no token for "d" at all */
    expect(t, "xyz", false, (int32_t[]){7, 8, 9}, 3);  /* no merges */
    expect(t, "a a", false, (int32_t[]){0, 12}, 2);    /* Ġ+a */
    expect(t, "<|end|>", true, (int32_t[]){13}, 1);
    CHECK_EQ_INT(tok_eos(t), 13);
    CHECK(tok_is_eog(t, 13) && !tok_is_eog(t, 0));
    CHECK(!strcmp(tok_pre_name(t), "gpt-2"));
    size_t len;
    CHECK(!memcmp(tok_piece(t, 12, false, &len), " a", 2) && len == 2);
    CHECK(tok_piece(t, 13, false, &len) && len == 0);
    CHECK(!memcmp(tok_piece(t, 13, true, &len), "<|end|>", 7) && len == 7);
    CHECK(tok_piece(t, 99, true, &len) && len == 0);
    tok_destroy(t);

    /* Llama-3's pre-tokenizer takes a whole word that is a token as is */
    t = load_writer(bpe_writer("llama-bpe"), &err);
    CHECKF(t, "load: %s", vt_last_error());
    if (t) {
        expect(t, "xyz", false, (int32_t[]){10}, 1);
        expect(t, "abc", false, (int32_t[]){5}, 1);
        CHECK(tok_add_bos(t));
        tok_destroy(t);
    }
}

static void test_synthetic_spm(void)
{
    static const char *toks[3 + 256 + 11];
    static char bytes[256][8];
    static float scores[VT_ARRAY_LEN(toks)];
    static int32_t types[VT_ARRAY_LEN(toks)];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = 2, types[1] = types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[3 + b] = bytes[b];
        types[3 + b] = 6;
    }
    static const char *const words[] = {"\xe2\x96\x81", "h", "e", "l", "o", "\xe2\x96\x81h",
                                        "he", "ll", "lo", "hell", "hello"};
    static const float ws[] = {-10, -10, -10, -10, -10, -3, -1, -2, -2.5f, -0.5f, -0.4f};
    for (size_t i = 0; i < VT_ARRAY_LEN(words); i++) {
        toks[259 + i] = words[i];
        scores[259 + i] = ws[i];
        types[259 + i] = 1;
    }
    gguf_writer *w = gguf_writer_create();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    set_strs(w, "tokenizer.ggml.tokens", toks, VT_ARRAY_LEN(toks));
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_T_FLOAT32, scores, VT_ARRAY_LEN(toks));
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, types, VT_ARRAY_LEN(toks));
    vt_err err;
    tok_tokenizer *t = load_writer(w, &err);
    CHECKF(t, "load: %s", vt_last_error());
    if (!t)
        return;
    const int32_t sp = 259, h = 260, hello = 269, sp_h = 264;
    /* he(-1), ll(-2), hell(-0.5), hello(-0.4): "▁" stays alone */
    expect(t, "hello", false, (int32_t[]){sp, hello}, 2);
    /* é has no token: its two bytes */
    expect(t, "h\xc3\xa9", false, (int32_t[]){sp_h, 3 + 0xC3, 3 + 0xA9}, 3);
    /* invalid UTF-8: a lead byte swallows what follows as one character */
    expect(t, "h\xe2o", false, (int32_t[]){sp_h, 3 + 0xE2, 3 + 'o'}, 3);
    /* no space prefix after nothing; one after a special token */
    expect(t, "<s>h", true, (int32_t[]){1, sp_h}, 2);
    expect(t, "<s>h", false, (int32_t[]){sp, 3 + '<', 3 + 's', 3 + '>', h}, 5);
    int32_t *ids;
    size_t n;
    CHECK(tok_encode(t, "", 0, true, false, &ids, &n) == VT_OK && n == 1 && ids[0] == 1);
    free(ids);
    CHECK(tok_encode(t, "", 0, false, false, &ids, &n) == VT_OK && n == 0);
    free(ids);
    char *text;
    size_t len;
    int32_t seq[] = {1, sp_h, 3 + 0xC3, 3 + 0xA9, 2};
    CHECK(tok_detokenize(t, seq, 5, false, false, &text, &len) == VT_OK);
    CHECK(len == 4 && !memcmp(text, " h\xc3\xa9", 4)); /* BOS before: the space stays */
    free(text);
    CHECK(tok_detokenize(t, seq + 1, 3, false, false, &text, &len) == VT_OK);
    CHECK(len == 3 && !memcmp(text, "h\xc3\xa9", 3)); /* first token: space dropped */
    free(text);
    CHECK(tok_detokenize(t, seq, 5, true, true, &text, &len) == VT_OK);
    CHECK(len == 8 && !memcmp(text, " h\xc3\xa9</s>", 8)); /* BOS removed, EOS printed */
    free(text);
    int32_t bad = 9999;
    CHECK(tok_detokenize(t, &bad, 1, false, false, &text, &len) == VT_ERR_RANGE && !text);
    CHECK_EQ_INT(tok_nl(t), 3 + '\n');
    tok_destroy(t);
}

/* ---- malformed metadata ---- */

static void expect_fail(gguf_writer *w, vt_err want, const char *needle)
{
    vt_err err;
    tok_tokenizer *t = load_writer(w, &err);
    CHECKF(!t && err == want, "want %s, got %s (%s)", vt_strerror(want), vt_strerror(err),
           vt_last_error());
    if (needle)
        CHECKF(strstr(vt_last_error(), needle), "message '%s' lacks '%s'", vt_last_error(), needle);
    tok_destroy(t);
}

static void test_malformed(void)
{
    gguf_writer *w = bpe_writer("gpt-2");
    gguf_writer_remove(w, "tokenizer.ggml.model");
    expect_fail(w, VT_ERR_NOT_FOUND, "tokenizer.ggml.model");

    w = bpe_writer("gpt-2");
    gguf_writer_set_str(w, "tokenizer.ggml.model", "bert");
    expect_fail(w, VT_ERR_UNSUPPORTED, "bert");

    expect_fail(bpe_writer("no-such-pre"), VT_ERR_UNSUPPORTED, "no-such-pre");

    w = bpe_writer("gpt-2");
    gguf_writer_set_u32(w, "tokenizer.ggml.pre", 3);
    expect_fail(w, VT_ERR_FORMAT, "tokenizer.ggml.pre");

    w = bpe_writer("gpt-2");
    gguf_writer_remove(w, "tokenizer.ggml.tokens");
    expect_fail(w, VT_ERR_NOT_FOUND, "tokenizer.ggml.tokens");

    w = bpe_writer("gpt-2");
    uint32_t nums[3] = {1, 2, 3};
    gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_T_UINT32, nums, 3);
    expect_fail(w, VT_ERR_FORMAT, "tokenizer.ggml.tokens");

    w = bpe_writer("gpt-2");
    set_strs(w, "tokenizer.ggml.tokens", bpe_toks, 0);
    expect_fail(w, VT_ERR_FORMAT, "tokenizer.ggml.tokens");

    w = bpe_writer("gpt-2");
    float sc[2] = {0, 0};
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_T_FLOAT32, sc, 2);
    expect_fail(w, VT_ERR_FORMAT, "tokenizer.ggml.scores");

    w = bpe_writer("gpt-2");
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_FLOAT32, sc, 2);
    expect_fail(w, VT_ERR_FORMAT, "tokenizer.ggml.token_type");

    w = bpe_writer("gpt-2");
    int32_t few[2] = {1, 1};
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, few, 2);
    expect_fail(w, VT_ERR_FORMAT, "tokenizer.ggml.token_type");

    w = bpe_writer("gpt-2");
    static const char *const dup[] = {"a", "b", "a"};
    set_strs(w, "tokenizer.ggml.tokens", dup, 3);
    gguf_writer_remove(w, "tokenizer.ggml.token_type");
    expect_fail(w, VT_ERR_FORMAT, "repeats");

    w = bpe_writer("gpt-2");
    gguf_writer_remove(w, "tokenizer.ggml.merges");
    expect_fail(w, VT_ERR_NOT_FOUND, "tokenizer.ggml.merges");

    w = bpe_writer("gpt-2");
    gguf_writer_set_arr(w, "tokenizer.ggml.merges", GGUF_T_INT32, few, 2);
    expect_fail(w, VT_ERR_FORMAT, "tokenizer.ggml.merges");

    w = bpe_writer("gpt-2");
    gguf_writer_set_str(w, "tokenizer.ggml.bos_token_id", "one");
    expect_fail(w, VT_ERR_FORMAT, "bos_token_id");

    w = bpe_writer("gpt-2");
    gguf_writer_set_u32(w, "tokenizer.ggml.add_bos_token", 1);
    expect_fail(w, VT_ERR_FORMAT, "add_bos_token");

    /* out-of-range ids are ignored, as llama.cpp does */
    w = bpe_writer("gpt-2");
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1000000);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 1000000);
    vt_err err;
    tok_tokenizer *t = load_writer(w, &err);
    CHECKF(t, "%s", vt_last_error());
    if (t) {
        CHECK_EQ_INT(tok_bos(t), 11);  /* gpt2's default, in range here */
        CHECK_EQ_INT(tok_eos(t), 11);
        tok_destroy(t);
    }
    /* missing pre-tokenizer: "default"; empty token texts are renamed */
    w = bpe_writer(NULL);
    static const char *const empty[] = {"a", "", "b"};
    set_strs(w, "tokenizer.ggml.tokens", empty, 3);
    gguf_writer_remove(w, "tokenizer.ggml.token_type");
    gguf_writer_remove(w, "tokenizer.ggml.eos_token_id");
    t = load_writer(w, &err);
    CHECKF(t, "%s", vt_last_error());
    if (t) {
        CHECK(!strcmp(tok_pre_name(t), "default"));
        CHECK_EQ_INT(tok_find(t, "[EMPTY_1]", 9), 1);
        CHECK_EQ_INT(tok_bos(t), TOK_NULL); /* default 11 is out of range */
        tok_destroy(t);
    }
    CHECK(tok_load(NULL, &t) == VT_ERR_INVALID && !t);
}

/* ---- edge cases ---- */

static void test_edges(void)
{
    static const char *const names[] = {"llama-spm", "gpt-2", "llama-bpe", "qwen2"};
    vt_rng rng = {42};
    size_t big = 1 << 18;
    char *junk = malloc(big);
    for (size_t i = 0; i < big; i++)
        junk[i] = (char)(vt_rng_next(&rng) & 0xFF);
    char *spaces = malloc(200000);
    memset(spaces, ' ', 200000);
    for (size_t v = 0; v < VT_ARRAY_LEN(names); v++) {
        tok_tokenizer *t = load_vocab(names[v]);
        if (!t)
            continue;
        int32_t *ids;
        size_t n;
        CHECK(tok_encode(t, "", 0, false, false, &ids, &n) == VT_OK && n == 0);
        free(ids);
        CHECK(tok_encode(t, NULL, 0, false, true, &ids, &n) == VT_OK && n == 0);
        free(ids);
        CHECK(tok_encode(t, junk, big, false, true, &ids, &n) == VT_OK && n > 0);
        char *text;
        size_t len;
        CHECK(tok_detokenize(t, ids, n, false, true, &text, &len) == VT_OK);
        free(text);
        free(ids);
        CHECK(tok_encode(t, spaces, 200000, false, false, &ids, &n) == VT_OK && n > 0);
        CHECK(tok_detokenize(t, ids, n, false, false, &text, &len) == VT_OK);
        if (tok_type(t) == TOK_VOCAB_BPE)
            CHECKF(len == 200000, "%s: %zu spaces back", names[v], len);
        free(text);
        free(ids);
        CHECK(tok_encode(t, "a\0b", 3, false, false, &ids, &n) == VT_OK && n >= 2);
        free(ids);
        CHECK(tok_encode(t, "x", 1, false, false, NULL, &n) == VT_ERR_INVALID);
        tok_destroy(t);
    }
    free(junk);
    free(spaces);
}

/* ---- the CLI ---- */

static char *run_cmd(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    static char out[1 << 16];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

static void test_cli(void)
{
    if (!test_need_vitamin())
        return;
    const char *bin = test_vitamin_bin();
    const char *m = "tests/data/vocab/ggml-vocab-gpt-2.gguf";
    char cmd[1024];
    int st;
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s --ids 'Hello world' 2>&1", bin, m);
    char *out = run_cmd(cmd, &st);
    CHECKF(out && st == 0 && !strcmp(out, "15496 995\n"), "got '%s' (%d)", out ? out : "", st);
    /* stdin, byte for byte (the newline is kept) */
    snprintf(cmd, sizeof cmd, "printf 'Hello world\\n' | %s tokenize -m %s --ids - 2>&1", bin, m);
    out = run_cmd(cmd, &st);
    CHECKF(out && st == 0 && !strcmp(out, "15496 995 198\n"), "got '%s' (%d)", out ? out : "", st);
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s '<|endoftext|>a' 2>&1", bin, m);
    out = run_cmd(cmd, &st);
    CHECKF(out && st == 0 && strstr(out, "'<'") && strstr(out, "'a'"), "got '%s'", out ? out : "");
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s --special --ids '<|endoftext|>a' 2>&1", bin, m);
    out = run_cmd(cmd, &st);
    CHECKF(out && st == 0 && !strcmp(out, "50256 64\n"), "got '%s'", out ? out : "");
    snprintf(cmd, sizeof cmd, "%s tokenize -m tests/data/vocab/ggml-vocab-llama-spm.gguf "
                              "--add-special --ids 'Hello' 2>&1", bin);
    out = run_cmd(cmd, &st);
    CHECKF(out && st == 0 && !strcmp(out, "1 15043\n"), "got '%s'", out ? out : "");
    snprintf(cmd, sizeof cmd, "%s tokenize -m /nonexistent.gguf 'x' 2>&1", bin);
    out = run_cmd(cmd, &st);
    CHECKF(out && st != 0 && strchr(out, '\n') == out + strlen(out) - 1, "got '%s' (%d)",
           out ? out : "", st);
    snprintf(cmd, sizeof cmd, "%s tokenize --help 2>&1", bin);
    out = run_cmd(cmd, &st);
    CHECK(out && st == 0 && strstr(out, "--special"));
}

int main(void)
{
    RUN_TEST(test_unicode);
    RUN_TEST(test_synthetic_bpe);
    RUN_TEST(test_synthetic_spm);
    RUN_TEST(test_malformed);
    RUN_TEST(test_vocab_list);
    RUN_TEST(test_ggml_vectors);
    RUN_TEST(test_oracle_cases);
    RUN_TEST(test_oracle_bytes);
    RUN_TEST(test_roundtrip);
    RUN_TEST(test_special_ids);
    RUN_TEST(test_stream);
    RUN_TEST(test_edges);
    RUN_TEST(test_cli);
    return test_finish("test_tokenizer");
}
