/*
 * fuzz_vocab.c - libFuzzer harness for tok_load over fuzzed vocabulary
 * metadata: the input is a GGUF file (tokenizer.ggml.* keys), parsed from
 * memory and loaded as a tokenizer; a tokenizer that loads must then encode
 * a fixed text (with and without special tokens) into ids inside the
 * vocabulary, detokenize them, and give a piece and a text for its first
 * ids. On failure tok_load must leave *out NULL. Any crash, leak or
 * undefined behaviour stops the run.
 *
 * Seeds: real vocabularies shrunk to a few hundred tokens (the first ones,
 * then the non-normal ones: control, user-defined, byte; special token ids
 * remapped) and their first merges, so that each is a few kilobytes. The
 * harness writes them itself when VT_FUZZ_VOCAB_SEEDS=DIR is set, from
 * tests/data/vocab/ and $VT_SHARED/fixtures/vocab/ (default ../shared), then
 * exits. See fuzz/README.md.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static const char text[] = "Hello world!  It's 2026: 12345 tokens\n\tünïcödé 한국어 テスト 🎉 "
                           "<s></s><|im_start|>user<|im_end|><|endoftext|> <0x41> ▁x";

static void encode(const tok_tokenizer *t, bool add_special, bool parse_special)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok_encode(t, text, sizeof text - 1, add_special, parse_special, &ids, &n) != VT_OK) {
        ASSERT(ids == NULL);
        return;
    }
    int32_t nv = tok_n_vocab(t);
    for (size_t i = 0; i < n; i++)
        ASSERT(ids[i] >= 0 && ids[i] < nv);
    char *out = NULL;
    size_t len = 0;
    if (tok_detokenize(t, ids, n, false, true, &out, &len) == VT_OK)
        free(out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *g = NULL;
    if (gguf_open_memory(data, size, &g) != VT_OK)
        return 0;
    tok_tokenizer *t = (tok_tokenizer *)1;
    if (tok_load(g, &t) != VT_OK) {
        ASSERT(t == NULL);
        gguf_close(g);
        return 0;
    }
    gguf_close(g); /* the tokenizer copies what it needs */
    int32_t nv = tok_n_vocab(t);
    ASSERT(nv > 0);
    for (int32_t id = 0; id < nv && id < 512; id++) {
        size_t len;
        ASSERT(tok_text(t, id, &len) != NULL);
        ASSERT(tok_piece(t, id, true, &len) != NULL);
    }
    encode(t, false, false);
    encode(t, true, true);
    tok_destroy(t);
    return 0;
}

/* ---- seeds ---------------------------------------------------------------- */

#define KEEP_FIRST 320
#define KEEP_SPECIAL 160
#define KEEP_MERGES 400

/* Writes a shrunk copy of vocabulary src into out; returns 0 on success. */
static int shrink(const char *src, const char *out)
{
    gguf_file *g;
    if (gguf_open(src, &g))
        return 1;
    const gguf_value *toks = gguf_get_arr(g, "tokenizer.ggml.tokens");
    const gguf_value *types = gguf_get_arr(g, "tokenizer.ggml.token_type");
    const gguf_value *scores = gguf_get_arr(g, "tokenizer.ggml.scores");
    if (!toks || toks->arr_type != GGUF_T_STRING) {
        gguf_close(g);
        return 1;
    }
    uint64_t n = toks->arr_n;
    int64_t *map = malloc(n * sizeof *map); /* old id -> new id or -1 */
    uint64_t *keep = malloc(n * sizeof *keep);
    gguf_str *strs = malloc(n * sizeof *strs);
    float *sc = malloc(n * sizeof *sc);
    int32_t *ty = malloc(n * sizeof *ty);
    gguf_writer *w = gguf_writer_create();
    if (!map || !keep || !strs || !sc || !ty || !w)
        abort();
    uint64_t k = 0, n_special = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_value v;
        int32_t type = 1;
        if (types && types->arr_type == GGUF_T_INT32 && gguf_arr_get(types, i, &v))
            type = (int32_t)v.v.i64;
        map[i] = -1;
        if (i < KEEP_FIRST || (type != 1 && n_special++ < KEEP_SPECIAL)) {
            map[i] = (int64_t)k;
            keep[k] = i;
            gguf_arr_get(toks, i, &v);
            strs[k] = v.v.str;
            ty[k] = type;
            sc[k] = scores && scores->arr_type == GGUF_T_FLOAT32 && gguf_arr_get(scores, i, &v)
                        ? (float)v.v.f64
                        : 0.0f;
            k++;
        }
    }
    int rc = 0;
    for (int64_t i = 0; i < gguf_n_kv(g) && !rc; i++) {
        gguf_str key = gguf_kv_key(g, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(key.len < 255 ? key.len : 255), key.ptr);
        const gguf_value *v = gguf_kv_value(g, i);
        size_t nl = strlen(name);
        if (!strcmp(name, "tokenizer.ggml.tokens")) {
            rc = gguf_writer_set_arr_str(w, name, strs, k) != VT_OK;
        } else if (!strcmp(name, "tokenizer.ggml.token_type")) {
            rc = gguf_writer_set_arr(w, name, GGUF_T_INT32, ty, k) != VT_OK;
        } else if (!strcmp(name, "tokenizer.ggml.scores")) {
            rc = gguf_writer_set_arr(w, name, GGUF_T_FLOAT32, sc, k) != VT_OK;
        } else if (!strcmp(name, "tokenizer.ggml.merges") && v->type == GGUF_T_ARRAY &&
                   v->arr_type == GGUF_T_STRING) {
            uint64_t m = v->arr_n < KEEP_MERGES ? v->arr_n : KEEP_MERGES;
            gguf_str *ms = malloc((m + 1) * sizeof *ms);
            if (!ms)
                abort();
            for (uint64_t j = 0; j < m; j++) {
                gguf_value e;
                gguf_arr_get(v, j, &e);
                ms[j] = e.v.str;
            }
            rc = gguf_writer_set_arr_str(w, name, ms, m) != VT_OK;
            free(ms);
        } else if (!strncmp(name, "tokenizer.ggml.", 15) && nl > 9 &&
                   !strcmp(name + nl - 9, "_token_id") && v->type != GGUF_T_ARRAY) {
            /* a special token id: remapped, or dropped with its token */
            if (v->v.u64 < n && map[v->v.u64] >= 0)
                rc = gguf_writer_set_u32(w, name, (uint32_t)map[v->v.u64]) != VT_OK;
        } else if (!strncmp(name, "tokenizer.", 10) || !strcmp(name, "general.architecture")) {
            rc = gguf_writer_copy_kv(w, g, i) != VT_OK;
        }
    }
    if (!rc)
        rc = gguf_writer_write(w, out) != VT_OK;
    if (rc)
        fprintf(stderr, "%s: %s\n", src, vt_last_error());
    gguf_writer_destroy(w);
    gguf_close(g);
    free(map);
    free(keep);
    free(strs);
    free(sc);
    free(ty);
    return rc;
}

static int seeds_from(const char *dir, const char *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".gguf"))
            continue;
        char src[1024], dst[1024];
        snprintf(src, sizeof src, "%s/%s", dir, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", out, e->d_name);
        if (shrink(src, dst) == 0)
            n++;
    }
    closedir(d);
    return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *out = getenv("VT_FUZZ_VOCAB_SEEDS");
    if (!out || !*out)
        return 0;
    mkdir(out, 0755);
    const char *sh = getenv("VT_SHARED");
    char shared[1024];
    snprintf(shared, sizeof shared, "%s/fixtures/vocab", sh && *sh ? sh : "../shared");
    int n = seeds_from("tests/data/vocab", out) + seeds_from(shared, out);
    fprintf(stderr, "fuzz_vocab: wrote %d seeds into %s\n", n, out);
    exit(n > 0 ? 0 : 1);
}
