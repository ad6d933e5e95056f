/*
 * tok_spm.c - SentencePiece-style encoding (tokenizer.ggml.model "llama"),
 * as llama.cpp's llm_tokenizer_spm does it: spaces become U+2581, the text is
 * cut into characters (by the length its lead byte announces, without
 * further validation), and the adjacent pair whose concatenation is the
 * vocabulary token with the highest score is merged, again and again (ties:
 * the leftmost pair). A piece that is a token is emitted as such; any other
 * piece (an unknown character, invalid bytes) falls back to one <0xNN> token
 * per byte.
 */
#include "tok_internal.h"
#include "unicode.h"

static bool try_pair(const tok_tokenizer *t, tok_scratch *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return true;
    const char *text = (const char *)s->bytes + s->sym_start[l];
    size_t len = s->sym_len[l] + s->sym_len[r];
    int32_t id = tok_map_get(&t->text_map, t->text_arena, text, len);
    if (id < 0)
        return true;
    tok_pair p = {t->score[id], 0, (uint32_t)l, (uint32_t)r, s->sym_len[l], s->sym_len[r], id};
    return tok_heap_push(s, &p, true);
}

static bool emit_piece(const tok_tokenizer *t, const uint8_t *p, size_t len, int32_t id,
                       tok_idvec *out)
{
    if (id < 0)
        id = tok_map_get(&t->text_map, t->text_arena, p, len);
    if (id >= 0)
        return tok_idvec_push(out, id);
    for (size_t i = 0; i < len; i++) {
        int32_t b = t->spm_byte_tok[p[i]];
        if (b < 0) /* no byte token (llama.cpp would throw): the unknown token */
            b = t->unk;
        if (b >= 0 && !tok_idvec_push(out, b))
            return false;
    }
    return true;
}

bool tok_spm_encode(const tok_tokenizer *t, tok_scratch *s, const uint8_t *text, size_t len,
                    bool space_prefix, tok_idvec *out)
{
    /* escape: ' ' -> U+2581 (3 bytes) */
    if (!tok_scratch_bytes(s, 3 * len + 3))
        return false;
    size_t n = 0;
    if (space_prefix) {
        memcpy(s->bytes, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s->bytes + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            s->bytes[n++] = text[i];
        }
    }
    if (n == 0)
        return true;
    if (!tok_scratch_syms(s, n))
        return false;
    size_t m = 0;
    for (size_t off = 0; off < n; m++) {
        size_t l = VT_MIN(tok_utf8_len(s->bytes[off]), n - off);
        s->sym_start[m] = (uint32_t)off;
        s->sym_len[m] = (uint32_t)l;
        s->sym_id[m] = -1; /* looked up when emitted unless merged */
        s->sym_prev[m] = (int32_t)m - 1;
        off += l;
        s->sym_next[m] = off < n ? (int32_t)m + 1 : -1;
    }
    s->n_heap = 0;
    for (size_t i = 1; i < m; i++)
        if (!try_pair(t, s, (int32_t)i - 1, (int32_t)i))
            return false;
    while (s->n_heap) {
        tok_pair p = tok_heap_pop(s, true);
        uint32_t ll = s->sym_len[p.left], rl = s->sym_len[p.right];
        if (ll == 0 || rl == 0 || ll + rl != p.llen + p.rlen)
            continue; /* stale */
        s->sym_len[p.left] = ll + rl;
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
        if (!emit_piece(t, s->bytes + s->sym_start[i], s->sym_len[i], s->sym_id[i], out))
            return false;
    return true;
}
