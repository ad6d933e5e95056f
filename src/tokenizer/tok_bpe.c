/*
 * tok_bpe.c - byte-level BPE (tokenizer.ggml.model "gpt2"): the merge table
 * and the encoding of one raw-text fragment.
 *
 * GPT-2's byte encoding maps every byte to a printable code point and
 * vocabulary texts are written in those code points; llama.cpp merges the
 * encoded text of each word pair by pair, lowest merge rank first (leftmost
 * first among equal ranks), then looks every resulting piece up as a token.
 * Here the same is done on raw bytes: every string that can occur as a piece
 * (token texts, decoded back to bytes, and the two halves and the result of
 * every merge) gets a symbol id ("sid": the token id where the string is a
 * token, an id past the vocabulary otherwise), and the merge table maps a
 * pair of sids to (rank, merged sid). A piece that ends up not being a token
 * falls back, as in llama.cpp, to the tokens of the single bytes of its
 * encoded text, where such tokens exist.
 *
 * Pre-tokenization (tok_pretok.c) runs on code points decoded the way
 * llama.cpp decodes (unicode.h), and a word's bytes are those code points
 * re-encoded: invalid bytes become U+FFFD's three bytes.
 */
#include <stdlib.h>

#include "tok_internal.h"
#include "unicode.h"

/* ---- GPT-2 byte encoding ---- */

static bool byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

/* The 68 others, in order (0x00-0x20, 0x7F-0xA0, 0xAD), become 256.. */
uint32_t tok_byte_to_cpt(uint8_t b)
{
    if (byte_is_printable(b))
        return b;
    if (b <= 0x20)
        return 256u + b;
    if (b >= 0x7F && b <= 0xA0)
        return 256u + 33u + (uint32_t)(b - 0x7F);
    return 256u + 67u; /* 0xAD */
}

int tok_cpt_to_byte(uint32_t cpt)
{
    if (cpt < 256)
        return byte_is_printable(cpt) ? (int)cpt : -1;
    cpt -= 256;
    if (cpt < 33)
        return (int)cpt;
    if (cpt < 67)
        return (int)(0x7F + cpt - 33);
    return cpt == 67 ? 0xAD : -1;
}

/* Decodes byte-encoded text into raw bytes at dst (room for len bytes: a
 * raw string is never longer than its encoding); false if some code point
 * does not stand for a byte. */
static bool decode_raw(const int16_t *cpt2byte, const char *text, size_t len, uint8_t *dst,
                       size_t *out_len)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0, o = 0;
    while (i < len) {
        size_t adv;
        uint32_t c = tok_utf8_decode(s + i, len - i, &adv);
        if (c >= 512 || cpt2byte[c] < 0)
            return false;
        dst[o++] = (uint8_t)cpt2byte[c];
        i += adv;
    }
    *out_len = o;
    return true;
}

/* Makes room for n more bytes in the raw arena. */
static vt_err raw_reserve(tok_tokenizer *t, size_t n)
{
    if (t->raw_len + n <= t->raw_cap)
        return VT_OK;
    size_t cap = t->raw_cap ? t->raw_cap : 1 << 16;
    while (cap < t->raw_len + n)
        cap *= 2;
    if (cap > UINT32_MAX)
        return vt_fail(VT_ERR_FORMAT, "tokenizer: vocabulary and merges too large");
    char *a = realloc(t->raw_arena, cap);
    if (!a)
        return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory");
    t->raw_arena = a;
    t->raw_cap = cap;
    return VT_OK;
}

/* The sid of a raw string: an existing one, or a new one past the
 * vocabulary (the string is copied into the arena). -1 with *err set. */
static int32_t sid_of(tok_tokenizer *t, const uint8_t *raw, size_t len, vt_err *err)
{
    int32_t sid = tok_map_get(&t->raw_map, t->raw_arena, raw, len);
    if (sid >= 0)
        return sid;
    if ((*err = raw_reserve(t, len)))
        return -1;
    if (t->n_sids >= (uint32_t)INT32_MAX) {
        *err = vt_fail(VT_ERR_FORMAT, "tokenizer: too many merge symbols");
        return -1;
    }
    uint32_t off = (uint32_t)t->raw_len;
    memcpy(t->raw_arena + off, raw, len);
    t->raw_len += len;
    sid = (int32_t)t->n_sids;
    if (tok_map_put(&t->raw_map, t->raw_arena, off, (uint32_t)len, sid) != sid) {
        *err = vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory");
        return -1;
    }
    t->n_sids++;
    return sid;
}

static inline uint64_t merge_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDull;
    key ^= key >> 33;
    return key;
}

static inline const tok_merge_slot *merge_find(const tok_tokenizer *t, int32_t l, int32_t r)
{
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint64_t i = merge_hash(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const tok_merge_slot *s = &t->merges[i];
        if (s->key == key)
            return s;
        if (s->key == UINT64_MAX)
            return NULL;
    }
}

vt_err tok_bpe_build(tok_tokenizer *t, const gguf_value *merges)
{
    vt_err err = VT_OK;
    int16_t cpt2byte[512];
    for (int c = 0; c < 512; c++)
        cpt2byte[c] = (int16_t)tok_cpt_to_byte((uint32_t)c);

    uint64_t n_merges = merges ? merges->arr_n : 0;
    if (!tok_map_init(&t->raw_map, t->n_tokens + 1024))
        return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory");
    t->n_sids = t->n_tokens;

    /* every token whose text decodes to bytes keeps its id as sid */
    for (uint32_t id = 0; id < t->n_tokens; id++) {
        if ((err = raw_reserve(t, t->text_len[id])))
            return err;
        size_t n;
        uint8_t *dst = (uint8_t *)t->raw_arena + t->raw_len;
        if (!decode_raw(cpt2byte, t->text_arena + t->text_off[id], t->text_len[id], dst, &n))
            continue;
        if (tok_map_put(&t->raw_map, t->raw_arena, (uint32_t)t->raw_len, (uint32_t)n,
                        (int32_t)id) == (int32_t)id)
            t->raw_len += n;
    }

    /* single bytes */
    for (int b = 0; b < 256; b++) {
        uint8_t enc[4], raw = (uint8_t)b;
        size_t n = tok_utf8_encode(tok_byte_to_cpt((uint8_t)b), enc);
        if ((t->byte_sid[b] = sid_of(t, &raw, 1, &err)) < 0)
            return err;
        for (size_t k = 0; k < 2; k++)
            t->byte_fallback[b][k] =
                k < n ? tok_map_get(&t->text_map, t->text_arena, enc + k, 1) : TOK_NULL;
    }

    /* the merge table */
    uint64_t cap = 16;
    while (cap < n_merges + n_merges / 2 + 16)
        cap *= 2;
    t->merges = malloc(cap * sizeof *t->merges);
    if (!t->merges)
        return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory (%llu merges)",
                       (unsigned long long)n_merges);
    for (uint64_t i = 0; i < cap; i++)
        t->merges[i].key = UINT64_MAX;
    t->merge_mask = cap - 1;

    uint8_t *tmp = NULL;
    size_t tmp_cap = 0;
    for (uint64_t i = 0; i < n_merges; i++) {
        gguf_value v;
        if (!gguf_arr_get(merges, i, &v) || v.type != GGUF_T_STRING) {
            err = vt_fail(VT_ERR_FORMAT, "tokenizer.ggml.merges[%llu] is not a string",
                          (unsigned long long)i);
            break;
        }
        const char *s = v.v.str.ptr;
        size_t len = (size_t)v.v.str.len;
        /* llama.cpp splits at the first space after the first byte */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp || sp + 1 == s + len)
            continue;
        if (len > tmp_cap) {
            free(tmp);
            tmp_cap = len * 2;
            if (!(tmp = malloc(tmp_cap))) {
                err = vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory");
                break;
            }
        }
        size_t la, lb;
        if (!decode_raw(cpt2byte, s, (size_t)(sp - s), tmp, &la) ||
            !decode_raw(cpt2byte, sp + 1, len - (size_t)(sp - s) - 1, tmp + la, &lb))
            continue; /* not byte-encoded: can never apply */
        int32_t sid_a = sid_of(t, tmp, la, &err);
        int32_t sid_b = sid_a < 0 ? -1 : sid_of(t, tmp + la, lb, &err);
        int32_t sid_m = sid_b < 0 ? -1 : sid_of(t, tmp, la + lb, &err);
        if (sid_m < 0)
            break;
        uint64_t key = (uint64_t)(uint32_t)sid_a << 32 | (uint32_t)sid_b;
        for (uint64_t j = merge_hash(key) & t->merge_mask;; j = (j + 1) & t->merge_mask) {
            tok_merge_slot *slot = &t->merges[j];
            if (slot->key == key)
                break; /* the first rank wins, as in llama.cpp */
            if (slot->key == UINT64_MAX) {
                slot->key = key;
                slot->rank = (uint32_t)i;
                slot->merged = sid_m;
                break;
            }
        }
    }
    free(tmp);
    return err;
}

/* ---- encoding ---- */

static bool emit_sid(const tok_tokenizer *t, const uint8_t *bytes, size_t len, int32_t sid,
                     tok_idvec *out)
{
    if (sid >= 0 && (uint32_t)sid < t->n_tokens)
        return tok_idvec_push(out, sid);
    for (size_t i = 0; i < len; i++)
        for (int k = 0; k < 2; k++)
            if (t->byte_fallback[bytes[i]][k] >= 0 &&
                !tok_idvec_push(out, t->byte_fallback[bytes[i]][k]))
                return false;
    return true;
}

static bool try_pair(const tok_tokenizer *t, tok_scratch *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return true;
    const tok_merge_slot *m = merge_find(t, s->sym_id[l], s->sym_id[r]);
    if (!m)
        return true;
    tok_pair p = {0.0f, m->rank, (uint32_t)l, (uint32_t)r, s->sym_len[l], s->sym_len[r], m->merged};
    return tok_heap_push(s, &p, false);
}

static bool bpe_word(const tok_tokenizer *t, tok_scratch *s, const uint8_t *w, size_t m,
                     tok_idvec *out)
{
    if (m == 1)
        return emit_sid(t, w, 1, t->byte_sid[w[0]], out);
    if (t->ignore_merges) {
        int32_t sid = tok_map_get(&t->raw_map, t->raw_arena, w, m);
        if (sid >= 0 && (uint32_t)sid < t->n_tokens)
            return tok_idvec_push(out, sid);
    }
    if (!tok_scratch_syms(s, m))
        return false;
    for (size_t i = 0; i < m; i++) {
        s->sym_id[i] = t->byte_sid[w[i]];
        s->sym_start[i] = (uint32_t)i;
        s->sym_len[i] = 1;
        s->sym_prev[i] = (int32_t)i - 1;
        s->sym_next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    s->n_heap = 0;
    for (size_t i = 1; i < m; i++)
        if (!try_pair(t, s, (int32_t)i - 1, (int32_t)i))
            return false;
    while (s->n_heap) {
        tok_pair p = tok_heap_pop(s, false);
        if (s->sym_len[p.left] != p.llen || s->sym_len[p.right] != p.rlen)
            continue; /* stale: one side changed since */
        s->sym_len[p.left] += s->sym_len[p.right];
        s->sym_len[p.right] = 0;
        s->sym_id[p.left] = p.id;
        int32_t nx = s->sym_next[p.right];
        s->sym_next[p.left] = nx;
        if (nx >= 0)
            s->sym_prev[nx] = (int32_t)p.left;
        if (!try_pair(t, s, s->sym_prev[p.left], (int32_t)p.left) ||
            !try_pair(t, s, (int32_t)p.left, nx))
            return false;
    }
    for (int32_t i = 0; i >= 0; i = s->sym_next[i])
        if (!emit_sid(t, w + s->sym_start[i], s->sym_len[i], s->sym_id[i], out))
            return false;
    return true;
}

bool tok_bpe_encode(const tok_tokenizer *t, tok_scratch *s, const uint8_t *text, size_t len,
                    tok_idvec *out)
{
    if (len == 0)
        return true;
    if (!tok_scratch_cpts(s, len) || !tok_scratch_bytes(s, 3 * len))
        return false;
    /* decode (llama.cpp's way) and re-encode */
    size_t n = 0, o = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        uint32_t c;
        if (text[i] < 0x80) {
            c = text[i];
            adv = 1;
            s->bytes[o] = text[i];
            s->off[n] = (uint32_t)o++;
        } else {
            c = tok_utf8_decode(text + i, len - i, &adv);
            s->off[n] = (uint32_t)o;
            o += tok_utf8_encode(c, s->bytes + o);
        }
        s->cpt[n] = c;
        s->fl[n] = tok_uc_flags(c);
        n++;
        i += adv;
    }
    s->off[n] = (uint32_t)o;
    size_t n_words = tok_pretok_split(t->pre, s->cpt, s->fl, n, s->ends, s->ends2);
    uint32_t start = 0;
    for (size_t k = 0; k < n_words; k++) {
        uint32_t end = s->ends[k];
        const uint8_t *w = s->bytes + s->off[start];
        size_t wl = s->off[end] - s->off[start];
        if (wl && !bpe_word(t, s, w, wl, out))
            return false;
        start = end;
    }
    return true;
}
