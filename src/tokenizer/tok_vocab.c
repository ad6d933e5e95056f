/*
 * tok_vocab.c - loading a tokenizer from GGUF metadata (tokenizer.ggml.*),
 * validated, with the same defaults and fix-ups llama.cpp applies on load:
 * default special ids per model type, add_bos/add_eos/add_space_prefix,
 * the per-pre-tokenizer flags (merges ignored for whole-word tokens by
 * Llama-3, space clean-up on detokenization), end-of-generation and FIM
 * tokens recognised by their text (and made control tokens), Phi-3's
 * right-stripping special tokens. Also the string hash map the module uses.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include "tok_internal.h"
#include "unicode.h"

/* ---- string map ---- */

bool tok_map_init(tok_strmap *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected + expected / 2 + 16)
        cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots)
        return false;
    memset(m->slots, 0xFF, cap * sizeof *m->slots); /* val = -1: empty */
    m->mask = (uint32_t)(cap - 1);
    m->count = 0;
    return true;
}

void tok_map_free(tok_strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->mask = m->count = 0;
}

int32_t tok_map_get(const tok_strmap *m, const char *arena, const void *key, size_t len)
{
    if (!m->slots)
        return -1;
    uint32_t h = (uint32_t)tok_hash(key, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const tok_slot *s = &m->slots[i];
        if (s->val < 0)
            return -1;
        if (s->hash == h && s->len == len && !memcmp(arena + s->off, key, len))
            return s->val;
    }
}

static bool map_grow(tok_strmap *m)
{
    size_t cap = ((size_t)m->mask + 1) * 2;
    if (cap > ((size_t)1 << 31))
        return false;
    tok_slot *ns = malloc(cap * sizeof *ns);
    if (!ns)
        return false;
    for (size_t i = 0; i < cap; i++)
        ns[i].val = -1;
    for (size_t i = 0; i <= m->mask; i++) {
        if (m->slots[i].val < 0)
            continue;
        size_t j = m->slots[i].hash & (cap - 1);
        while (ns[j].val >= 0)
            j = (j + 1) & (cap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->mask = (uint32_t)(cap - 1);
    return true;
}

int32_t tok_map_put(tok_strmap *m, const char *arena, uint32_t off, uint32_t len, int32_t val)
{
    if ((size_t)(m->count + 1) * 3 > ((size_t)m->mask + 1) * 2 && !map_grow(m))
        return INT32_MIN;
    uint32_t h = (uint32_t)tok_hash(arena + off, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        tok_slot *s = &m->slots[i];
        if (s->val < 0) {
            s->hash = h;
            s->len = len;
            s->off = off;
            s->val = val;
            m->count++;
            return val;
        }
        if (s->hash == h && s->len == len && !memcmp(arena + s->off, arena + off, len))
            return s->val;
    }
}

/* ---- pre-tokenizer names ---- */

typedef struct {
    const char *name;
    tok_pre_kind kind;
    bool clean_spaces, ignore_merges, add_bos;
} pre_def;

/* The names llama.cpp maps to each regex set, with the flags it sets. */
static const pre_def pre_defs[] = {
    {"default", TOK_PRE_DEFAULT, true, false, false},
    {"llama3", TOK_PRE_LLAMA3, true, true, true},
    {"llama-v3", TOK_PRE_LLAMA3, true, true, true},
    {"llama-bpe", TOK_PRE_LLAMA3, true, true, true},
    {"falcon3", TOK_PRE_LLAMA3, true, true, true},
    {"falcon-h1", TOK_PRE_LLAMA3, true, true, true},
    {"pixtral", TOK_PRE_LLAMA3, true, true, true},
    {"midm-2.0", TOK_PRE_LLAMA3, true, true, true},
    {"lfm2", TOK_PRE_LLAMA3, true, true, true},
    {"deepseek-llm", TOK_PRE_DEEPSEEK_LLM, false, false, false},
    {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER, false, false, false},
    {"falcon", TOK_PRE_FALCON, true, false, false},
    {"mpt", TOK_PRE_GPT2, true, false, false},
    {"starcoder", TOK_PRE_STARCODER, true, false, false},
    {"gpt-2", TOK_PRE_GPT2, true, false, false},
    {"phi-2", TOK_PRE_GPT2, true, false, false},
    {"refact", TOK_PRE_STARCODER, true, false, false},
    {"command-r", TOK_PRE_STARCODER, false, false, false},
    {"qwen2", TOK_PRE_QWEN2, false, false, false},
    {"deepseek-r1-qwen", TOK_PRE_QWEN2, false, false, false},
    {"qwen35", TOK_PRE_QWEN35, false, false, false},
};

/* ---- helpers ---- */

static bool str_eq(gguf_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && !memcmp(s.ptr, lit, n);
}

/* An optional token-id key: absent -> keep *id; present -> must be an
 * integer; out of range -> ignored (llama.cpp warns and keeps the default). */
static vt_err read_id(const gguf_file *f, const char *key, uint32_t n, int32_t *id)
{
    int64_t k = gguf_find_key(f, key);
    if (k < 0)
        return VT_OK;
    int64_t v;
    if (!gguf_get_i64(f, key, &v))
        return vt_fail(VT_ERR_FORMAT, "%s: expected an integer token id", key);
    if (v >= 0 && v < (int64_t)n)
        *id = (int32_t)v;
    return VT_OK;
}

static vt_err read_bool(const gguf_file *f, const char *key, bool *b)
{
    if (gguf_find_key(f, key) < 0)
        return VT_OK;
    if (!gguf_get_bool(f, key, b))
        return vt_fail(VT_ERR_FORMAT, "%s: expected a boolean", key);
    return VT_OK;
}

static int32_t find_lit(const tok_tokenizer *t, const char *lit)
{
    return tok_map_get(&t->text_map, t->text_arena, lit, strlen(lit));
}

/* Marks a token found by its text as a control token (llama.cpp does so for
 * tokens that look like end-of-turn/FIM markers but were typed otherwise). */
static void make_control(tok_tokenizer *t, int32_t id)
{
    if (id >= 0)
        t->attr[id] |= TOK_ATTR_CONTROL;
}

/* If *slot is unset, sets it to the first of the texts (in the list's
 * order) that is a token, and makes that token a control token. (llama.cpp
 * takes the first it meets in hash-map order; the list order gives the same
 * choice on the vocabularies tested, e.g. <|eot_id|> over <|end_of_text|>,
 * <|im_end|> and <|end|> over <|endoftext|>.) */
static void detect(tok_tokenizer *t, int32_t *slot, const char *const *texts, size_t n)
{
    if (*slot != TOK_NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        int32_t id = find_lit(t, texts[i]);
        if (id >= 0) {
            *slot = id;
            make_control(t, id);
            return;
        }
    }
}

static void fixups(tok_tokenizer *t, int32_t fim[6])
{
    static const char *const eot_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
        "<\uff5cend\u2581of\u2581sentence\uff5c>", "<end_of_utterance>"};
    static const char *const eom_texts[] = {"<|eom_id|>"};
    static const char *const fim_texts[6][8] = {
        {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uff5cfim\u2581begin\uff5c>",
         "<PRE>", "\u2581<PRE>", "<|code_prefix|>", "<|prefix|>"},
        {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uff5cfim\u2581hole\uff5c>",
         "<SUF>", "\u2581<SUF>", "<|code_suffix|>", "<|suffix|>"},
        {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uff5cfim\u2581end\uff5c>",
         "<MID>", "\u2581<MID>", "<|code_middle|>", "<|middle|>"},
        {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"},
        {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"},
        {"<|file_sep|>"},
    };
    static const char *const eog_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~["};

    detect(t, &t->eot, eot_texts, VT_ARRAY_LEN(eot_texts));
    detect(t, &t->eom, eom_texts, VT_ARRAY_LEN(eom_texts));
    for (int k = 0; k < 6; k++) {
        size_t n = 0;
        while (n < 8 && fim_texts[k][n])
            n++;
        detect(t, &fim[k], fim_texts[k], n);
    }

    /* control tokens whose text says "unused" */
    for (uint32_t id = 0; id < t->n_tokens; id++) {
        const char *s = t->text_arena + t->text_off[id];
        if ((t->attr[id] & TOK_ATTR_CONTROL) && memmem(s, t->text_len[id], "unused", 6))
            t->attr[id] |= TOK_ATTR_UNUSED;
    }

    /* end of generation */
    for (int k = 3; k < 6; k++)
        if (fim[k] >= 0)
            t->eog[fim[k]] = 1;
    for (size_t i = 0; i < VT_ARRAY_LEN(eog_texts); i++) {
        int32_t id = find_lit(t, eog_texts[i]);
        if (id >= 0) {
            t->eog[id] = 1;
            make_control(t, id);
        }
    }
    static const char *const always_rendered[] = {"<|channel|>", "<|message|>", "<|start|>",
                                                  "<|constrain|>"};
    for (size_t i = 0; i < VT_ARRAY_LEN(always_rendered); i++) {
        int32_t id = find_lit(t, always_rendered[i]);
        if (id >= 0)
            t->attr[id] = TOK_ATTR_USER_DEFINED;
    }
    if (t->eos >= 0)
        t->eog[t->eos] = 1;
    if (t->eot >= 0)
        t->eog[t->eot] = 1;
    if (t->eom >= 0)
        t->eog[t->eom] = 1;
    /* <|end|> is not the end when <|return|> and <|call|> exist (gpt-oss,
     * solar-open); </s> is not for gemma-4 (has <|tool_response>) */
    int32_t ret = find_lit(t, "<|return|>"), call = find_lit(t, "<|call|>");
    int32_t calls = find_lit(t, "<|calls|>"), flush = find_lit(t, "<|flush|>");
    int32_t end = find_lit(t, "<|end|>");
    bool has_call = (call >= 0 && t->eog[call]) || (calls >= 0 && t->eog[calls]);
    if (end >= 0 && t->eog[end] &&
        ((ret >= 0 && t->eog[ret] && has_call) || (has_call && flush >= 0 && t->eog[flush]))) {
        t->eog[end] = 0;
        t->attr[end] = TOK_ATTR_USER_DEFINED;
    }
    int32_t tr = find_lit(t, "<|tool_response>"), s_end = find_lit(t, "</s>");
    if (tr >= 0 && t->eog[tr] && s_end >= 0 && t->eog[s_end]) {
        t->eog[s_end] = 0;
        t->attr[s_end] = TOK_ATTR_NORMAL;
    }
}

/* Special tokens for partitioning: control, user-defined and unknown ones,
 * longest first (then by id), indexed by their first two bytes. */
static int cmp_special(const void *a, const void *b, void *ctx)
{
    const tok_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->text_len[x] != t->text_len[y])
        return t->text_len[x] > t->text_len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static vt_err build_specials(tok_tokenizer *t)
{
    const uint32_t mask = TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN;
    uint32_t n = 0;
    for (uint32_t id = 0; id < t->n_tokens; id++)
        n += (t->attr[id] & mask) != 0;
    t->special = malloc(sizeof *t->special * (n ? n : 1));
    t->special_next = malloc(sizeof *t->special_next * (n ? n : 1));
    t->special_head2 = malloc(sizeof *t->special_head2 * 65536);
    if (!t->special || !t->special_next || !t->special_head2)
        return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory");
    n = 0;
    for (uint32_t id = 0; id < t->n_tokens; id++)
        if (t->attr[id] & mask)
            t->special[n++] = (int32_t)id;
    qsort_r(t->special, n, sizeof *t->special, cmp_special, t);
    t->n_special = n;
    for (int i = 0; i < 65536; i++)
        t->special_head2[i] = -1;
    for (int i = 0; i < 256; i++)
        t->special_head1[i] = -1;
    /* build the bucket lists back to front so that each stays in order */
    for (uint32_t k = n; k-- > 0;) {
        int32_t id = t->special[k];
        const uint8_t *s = (const uint8_t *)t->text_arena + t->text_off[id];
        int32_t *head = t->text_len[id] >= 2 ? &t->special_head2[s[0] << 8 | s[1]]
                                             : &t->special_head1[s[0]];
        t->special_next[k] = *head;
        *head = (int32_t)k;
    }
    return VT_OK;
}

void tok_destroy(tok_tokenizer *t)
{
    if (!t)
        return;
    free(t->text_arena);
    free(t->text_off);
    free(t->text_len);
    free(t->score);
    free(t->attr);
    free(t->eog);
    tok_map_free(&t->text_map);
    free(t->piece_arena);
    free(t->piece_off);
    free(t->piece_len);
    free(t->special);
    free(t->special_next);
    free(t->special_head2);
    free(t->raw_arena);
    tok_map_free(&t->raw_map);
    free(t->merges);
    free(t);
}

/* Copies the token texts into one arena (each NUL-terminated) and builds
 * the text -> id map. */
static vt_err load_texts(tok_tokenizer *t, const gguf_value *toks)
{
    uint32_t n = t->n_tokens;
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        gguf_value v;
        if (!gguf_arr_get(toks, i, &v) || v.type != GGUF_T_STRING)
            return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.tokens[%u] is not a string", i);
        if (v.v.str.len > (1u << 20))
            return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.tokens[%u] is %llu bytes long", i,
                           (unsigned long long)v.v.str.len);
        total += (size_t)v.v.str.len + 24; /* room for "[EMPTY_n]" and a NUL */
    }
    if (total > UINT32_MAX)
        return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.tokens: texts too large");
    t->text_arena = malloc(total);
    t->text_off = malloc(sizeof *t->text_off * n);
    t->text_len = malloc(sizeof *t->text_len * n);
    if (!t->text_arena || !t->text_off || !t->text_len || !tok_map_init(&t->text_map, n))
        return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory (%u tokens)", n);
    size_t o = 0;
    for (uint32_t i = 0; i < n; i++) {
        gguf_value v;
        gguf_arr_get(toks, i, &v);
        size_t len = (size_t)v.v.str.len;
        if (len == 0) /* llama.cpp renames empty tokens */
            len = (size_t)snprintf(t->text_arena + o, 24, "[EMPTY_%u]", i);
        else
            memcpy(t->text_arena + o, v.v.str.ptr, len);
        t->text_arena[o + len] = 0;
        t->text_off[i] = (uint32_t)o;
        t->text_len[i] = (uint32_t)len;
        int32_t got = tok_map_put(&t->text_map, t->text_arena, (uint32_t)o, (uint32_t)len, (int32_t)i);
        if (got == INT32_MIN)
            return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory");
        if (got != (int32_t)i)
            return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.tokens: token %u repeats the text of token %d",
                           i, got);
        o += len + 1;
    }
    return VT_OK;
}

static vt_err load_scores_types(tok_tokenizer *t, const gguf_file *f)
{
    uint32_t n = t->n_tokens;
    t->score = calloc(n, sizeof *t->score);
    t->attr = malloc(sizeof *t->attr * n);
    t->eog = calloc(n, 1);
    if (!t->score || !t->attr || !t->eog)
        return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory");
    if (gguf_find_key(f, "tokenizer.ggml.scores") >= 0) {
        const gguf_value *sc = gguf_get_arr(f, "tokenizer.ggml.scores");
        if (!sc || (sc->arr_type != GGUF_T_FLOAT32 && sc->arr_type != GGUF_T_INT32))
            return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.scores: expected an array of float32");
        if (sc->arr_n < n)
            return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.scores: %llu scores for %u tokens",
                           (unsigned long long)sc->arr_n, n);
        const uint8_t *raw = gguf_arr_raw(sc);
        if (!raw)
            return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.scores: unreadable");
        for (uint32_t i = 0; i < n; i++) {
            if (sc->arr_type == GGUF_T_FLOAT32) {
                memcpy(&t->score[i], raw + 4 * (size_t)i, 4);
            } else {
                int32_t v;
                memcpy(&v, raw + 4 * (size_t)i, 4);
                t->score[i] = (float)v;
            }
        }
    }
    for (uint32_t i = 0; i < n; i++)
        t->attr[i] = TOK_ATTR_NORMAL;
    if (gguf_find_key(f, "tokenizer.ggml.token_type") >= 0) {
        const gguf_value *tt = gguf_get_arr(f, "tokenizer.ggml.token_type");
        if (!tt || tt->arr_type != GGUF_T_INT32)
            return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.token_type: expected an array of int32");
        if (tt->arr_n < n)
            return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.token_type: %llu types for %u tokens",
                           (unsigned long long)tt->arr_n, n);
        const uint8_t *raw = gguf_arr_raw(tt);
        if (!raw)
            return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.token_type: unreadable");
        static const uint32_t by_type[7] = {TOK_ATTR_UNDEFINED, TOK_ATTR_NORMAL, TOK_ATTR_UNKNOWN,
                                            TOK_ATTR_CONTROL, TOK_ATTR_USER_DEFINED, TOK_ATTR_UNUSED,
                                            TOK_ATTR_BYTE};
        for (uint32_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, raw + 4 * (size_t)i, 4);
            t->attr[i] = v >= 0 && v < 7 ? by_type[v] : TOK_ATTR_UNDEFINED;
        }
    }
    return VT_OK;
}

/* The model type and pre-tokenizer with their defaults. */
static vt_err load_kind(tok_tokenizer *t, const gguf_file *f)
{
    gguf_str model, pre;
    if (gguf_find_key(f, "tokenizer.ggml.model") < 0)
        return vt_fail(VT_ERR_NOT_FOUND, "tokenizer.ggml.model: missing (no tokenizer in this file)");
    if (!gguf_get_str(f, "tokenizer.ggml.model", &model))
        return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.model: expected a string");
    bool has_pre = gguf_find_key(f, "tokenizer.ggml.pre") >= 0;
    if (has_pre && !gguf_get_str(f, "tokenizer.ggml.pre", &pre))
        return vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.pre: expected a string");
    snprintf(t->pre_name, sizeof t->pre_name, "default");
    t->eot = t->eom = t->pad = t->nl = TOK_NULL;
    if (str_eq(model, "llama")) {
        t->type = TOK_VOCAB_SPM;
        t->pre = TOK_PRE_NONE;
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
        t->add_space_prefix = true;
        t->add_bos = true;
        return VT_OK;
    }
    if (!str_eq(model, "gpt2"))
        return vt_fail(VT_ERR_UNSUPPORTED, "tokenizer.ggml.model '%.*s' is not supported (llama, gpt2)",
                       (int)VT_MIN(model.len, 64), model.ptr);
    t->type = TOK_VOCAB_BPE;
    t->bos = t->eos = 11;
    t->unk = TOK_NULL;
    if (!has_pre)
        pre = (gguf_str){"default", 7};
    for (size_t i = 0; i < VT_ARRAY_LEN(pre_defs); i++) {
        if (str_eq(pre, pre_defs[i].name)) {
            t->pre = pre_defs[i].kind;
            t->clean_spaces = pre_defs[i].clean_spaces;
            t->ignore_merges = pre_defs[i].ignore_merges;
            t->add_bos = pre_defs[i].add_bos;
            snprintf(t->pre_name, sizeof t->pre_name, "%s", pre_defs[i].name);
            return VT_OK;
        }
    }
    return vt_fail(VT_ERR_UNSUPPORTED, "tokenizer.ggml.pre '%.*s': unknown pre-tokenizer",
                   (int)VT_MIN(pre.len, 64), pre.ptr);
}

vt_err tok_load(const gguf_file *f, tok_tokenizer **out)
{
    vt_err err;
    if (!out)
        return vt_fail(VT_ERR_INVALID, "tok_load: out is NULL");
    *out = NULL;
    if (!f)
        return vt_fail(VT_ERR_INVALID, "tok_load: no file");
    tok_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory");
    int32_t fim[6] = {TOK_NULL, TOK_NULL, TOK_NULL, TOK_NULL, TOK_NULL, TOK_NULL};

    if ((err = load_kind(t, f)))
        goto fail;
    if ((err = read_bool(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix)))
        goto fail;

    const gguf_value *toks = gguf_get_arr(f, "tokenizer.ggml.tokens");
    if (!toks) {
        err = gguf_find_key(f, "tokenizer.ggml.tokens") < 0
                  ? vt_fail(VT_ERR_NOT_FOUND, "tokenizer.ggml.tokens: missing")
                  : vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.tokens: expected an array of strings");
        goto fail;
    }
    if (toks->arr_type != GGUF_T_STRING || toks->arr_n == 0 || toks->arr_n > (uint64_t)INT32_MAX / 2) {
        err = vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.tokens: expected a non-empty array of strings "
                                     "(type %d, %llu elements)",
                      (int)toks->arr_type, (unsigned long long)toks->arr_n);
        goto fail;
    }
    t->n_tokens = (uint32_t)toks->arr_n;
    if ((err = load_texts(t, toks)) || (err = load_scores_types(t, f)))
        goto fail;

    /* special ids: defaults out of range are dropped, then the file's */
    int32_t *ids[] = {&t->bos, &t->eos, &t->eot, &t->eom, &t->unk, &t->pad,
                      &fim[0], &fim[1], &fim[2], &fim[3], &fim[4], &fim[5],
                      &fim[0], &fim[1], &fim[2]};
    static const char *const keys[] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id",
        "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id",
        "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.fim_pad_token_id",
        "tokenizer.ggml.fim_rep_token_id", "tokenizer.ggml.fim_sep_token_id",
        "tokenizer.ggml.prefix_token_id", "tokenizer.ggml.suffix_token_id",
        "tokenizer.ggml.middle_token_id"};
    for (size_t i = 0; i < VT_ARRAY_LEN(keys); i++) {
        if (*ids[i] >= (int32_t)t->n_tokens)
            *ids[i] = TOK_NULL;
        if ((err = read_id(f, keys[i], t->n_tokens, ids[i])))
            goto fail;
    }
    if ((err = read_bool(f, "tokenizer.ggml.add_bos_token", &t->add_bos)) ||
        (err = read_bool(f, "tokenizer.ggml.add_eos_token", &t->add_eos)))
        goto fail;

    if (t->type == TOK_VOCAB_BPE) {
        const gguf_value *merges = gguf_get_arr(f, "tokenizer.ggml.merges");
        if (!merges) {
            err = gguf_find_key(f, "tokenizer.ggml.merges") < 0
                      ? vt_fail(VT_ERR_NOT_FOUND, "tokenizer.ggml.merges: missing (needed by gpt2)")
                      : vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.merges: expected an array of strings");
            goto fail;
        }
        if (merges->arr_type != GGUF_T_STRING || merges->arr_n > UINT32_MAX) {
            err = vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.merges: expected an array of strings");
            goto fail;
        }
        if ((err = tok_bpe_build(t, merges)))
            goto fail;
    } else {
        static const char hex[] = "0123456789ABCDEF";
        for (int b = 0; b < 256; b++) {
            char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
            char one = (char)b;
            int32_t id = tok_map_get(&t->text_map, t->text_arena, buf, 6);
            t->spm_byte_tok[b] = id >= 0 ? id : tok_map_get(&t->text_map, t->text_arena, &one, 1);
        }
    }

    fixups(t, fim);

    /* Phi-3 strips whitespace right of its special tokens */
    gguf_str name;
    if (gguf_get_str(f, "general.name", &name)) {
        char low[256];
        size_t n = VT_MIN(name.len, sizeof low - 1);
        for (size_t i = 0; i < n; i++)
            low[i] = (char)tolower((unsigned char)name.ptr[i]);
        low[n] = 0;
        if (strstr(low, "phi-3") || strstr(low, "phi3")) {
            const uint32_t mask = TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN;
            for (uint32_t id = 0; id < t->n_tokens; id++)
                if (t->attr[id] & mask)
                    t->attr[id] |= TOK_ATTR_RSTRIP;
            int32_t id = find_lit(t, "</s>");
            if (id >= 0)
                t->attr[id] |= TOK_ATTR_RSTRIP;
            static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
            for (size_t i = 0; i < VT_ARRAY_LEN(keep); i++)
                if ((id = find_lit(t, keep[i])) >= 0)
                    t->attr[id] &= ~TOK_ATTR_RSTRIP;
        }
    }

    if ((err = build_specials(t)) || (err = tok_pieces_build(t)))
        goto fail;

    /* the newline token */
    if (t->type == TOK_VOCAB_SPM) {
        t->nl = t->spm_byte_tok['\n'] >= 0 ? t->spm_byte_tok['\n'] : t->pad;
    } else {
        int32_t *nl = NULL;
        size_t n_nl = 0;
        if ((err = tok_encode(t, "\n", 1, false, false, &nl, &n_nl)))
            goto fail;
        t->nl = n_nl ? nl[0] : t->pad;
        free(nl);
    }
    *out = t;
    return VT_OK;
fail:
    tok_destroy(t);
    return err;
}

/* ---- accessors ---- */

static inline bool valid(const tok_tokenizer *t, int32_t id)
{
    return id >= 0 && (uint32_t)id < t->n_tokens;
}

int32_t tok_n_vocab(const tok_tokenizer *t) { return (int32_t)t->n_tokens; }
tok_vocab_type tok_type(const tok_tokenizer *t) { return t->type; }
const char *tok_pre_name(const tok_tokenizer *t) { return t->pre_name; }
int32_t tok_bos(const tok_tokenizer *t) { return t->bos; }
int32_t tok_eos(const tok_tokenizer *t) { return t->eos; }
int32_t tok_eot(const tok_tokenizer *t) { return t->eot; }
int32_t tok_eom(const tok_tokenizer *t) { return t->eom; }
int32_t tok_pad(const tok_tokenizer *t) { return t->pad; }
int32_t tok_unk(const tok_tokenizer *t) { return t->unk; }
int32_t tok_nl(const tok_tokenizer *t) { return t->nl; }
bool tok_add_bos(const tok_tokenizer *t) { return t->add_bos; }
bool tok_add_eos(const tok_tokenizer *t) { return t->add_eos; }
bool tok_add_space_prefix(const tok_tokenizer *t) { return t->add_space_prefix; }
bool tok_is_eog(const tok_tokenizer *t, int32_t id) { return valid(t, id) && t->eog[id]; }
uint32_t tok_attr(const tok_tokenizer *t, int32_t id) { return valid(t, id) ? t->attr[id] : 0; }
float tok_score(const tok_tokenizer *t, int32_t id) { return valid(t, id) ? t->score[id] : 0.0f; }

const char *tok_text(const tok_tokenizer *t, int32_t id, size_t *len)
{
    if (!valid(t, id)) {
        *len = 0;
        return NULL;
    }
    *len = t->text_len[id];
    return t->text_arena + t->text_off[id];
}

int32_t tok_find(const tok_tokenizer *t, const char *text, size_t len)
{
    int32_t id = tok_map_get(&t->text_map, t->text_arena, text, len);
    return id >= 0 ? id : TOK_NULL;
}
