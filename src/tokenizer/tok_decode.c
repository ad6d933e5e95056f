/*
 * tok_decode.c - token ids back to text: the piece of each token (computed
 * once at load, as llama.cpp caches token_to_piece), whole-sequence
 * detokenization with llama.cpp's leading-space removal and space clean-up,
 * and the streaming detokenizer that holds back incomplete UTF-8.
 */
#include <stdlib.h>

#include "tok_internal.h"
#include "unicode.h"

/* Appends to a growing byte buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} buf;

static bool buf_put(buf *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return false;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    return true;
}

/* The byte of a <0xNN> token: llama.cpp parses the two characters after
 * "<0x" with strtol (base 16). */
static uint8_t byte_token_value(const char *text, size_t len)
{
    char hex[3] = {0};
    for (size_t i = 0; i < 2 && 3 + i < len; i++)
        hex[i] = text[3 + i];
    return (uint8_t)strtol(hex, NULL, 16);
}

/* GPT-2 byte decoding of a token text (llama_decode_text): every code
 * point that stands for a byte becomes that byte; any other is written as
 * "[UNK_BYTE_0x<its UTF-8 in hex><the whole text>]", as llama.cpp does. */
static bool decode_bpe_text(const char *text, size_t len, buf *out)
{
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        size_t adv;
        uint32_t c = tok_utf8_decode(s + i, len - i, &adv);
        int b = tok_cpt_to_byte(c);
        if (b >= 0) {
            uint8_t byte = (uint8_t)b;
            if (!buf_put(out, &byte, 1))
                return false;
        } else {
            uint8_t enc[4];
            size_t n = tok_utf8_encode(c, enc);
            char hex[16];
            if (!buf_put(out, "[UNK_BYTE_0x", 12))
                return false;
            for (size_t k = 0; k < n; k++) {
                static const char digits[] = "0123456789abcdef";
                hex[2 * k] = digits[enc[k] >> 4];
                hex[2 * k + 1] = digits[enc[k] & 15];
            }
            if (!buf_put(out, hex, 2 * n) || !buf_put(out, text, len) || !buf_put(out, "]", 1))
                return false;
        }
        i += adv;
    }
    return true;
}

vt_err tok_pieces_build(tok_tokenizer *t)
{
    buf b = {0};
    t->piece_off = malloc(sizeof *t->piece_off * t->n_tokens);
    t->piece_len = malloc(sizeof *t->piece_len * t->n_tokens);
    if (!t->piece_off || !t->piece_len)
        return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory");
    for (uint32_t id = 0; id < t->n_tokens; id++) {
        const char *text = t->text_arena + t->text_off[id];
        size_t len = t->text_len[id];
        uint32_t a = t->attr[id];
        size_t start = b.n;
        bool ok = true;
        if (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) {
            ok = buf_put(&b, text, len);
        } else if (a & TOK_ATTR_NORMAL) {
            if (t->type == TOK_VOCAB_SPM) {
                for (size_t i = 0; ok && i < len;) {
                    if (i + 3 <= len && !memcmp(text + i, "\xe2\x96\x81", 3)) {
                        ok = buf_put(&b, " ", 1);
                        i += 3;
                    } else {
                        ok = buf_put(&b, text + i, 1);
                        i++;
                    }
                }
            } else {
                ok = decode_bpe_text(text, len, &b);
            }
        } else if ((a & TOK_ATTR_BYTE) && len >= 3) {
            uint8_t v = byte_token_value(text, len);
            ok = buf_put(&b, &v, 1);
        }
        if (!ok || b.n > UINT32_MAX) {
            free(b.p);
            return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory (pieces)");
        }
        t->piece_off[id] = (uint32_t)start;
        t->piece_len[id] = (uint32_t)(b.n - start);
    }
    t->piece_arena = b.p ? b.p : malloc(1);
    if (!t->piece_arena)
        return vt_fail(VT_ERR_NOMEM, "tokenizer: out of memory");
    return VT_OK;
}

const char *tok_piece(const tok_tokenizer *t, int32_t id, bool special, size_t *len)
{
    if (id < 0 || (uint32_t)id >= t->n_tokens ||
        (!special && (t->attr[id] & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL)))) {
        *len = 0;
        return "";
    }
    *len = t->piece_len[id];
    return t->piece_arena + t->piece_off[id];
}

/* llama.cpp's clean_up_tokenization_spaces, in its three passes. */
static size_t clean_spaces(char *text, size_t total)
{
    /* " ?", " !", " .", " ," lose the space */
    size_t n = total ? 1 : 0;
    for (size_t i = 1; i < total; i++) {
        char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
            n--;
        text[n++] = x;
    }
    /* " ' " becomes "'" */
    total = n;
    n = total ? 1 : 0;
    for (size_t i = 1; i < total; i++) {
        char x = text[i];
        if (x == '\'' && i + 1 < total && text[i - 1] == ' ' && text[i + 1] == ' ') {
            n--;
            text[++i] = '\0';
        }
        text[n++] = x;
    }
    /* " 's", " 'm", " 're", " 've" lose the space */
    total = n;
    n = total ? 1 : 0;
    for (size_t i = 1; i < total; i++) {
        char x = text[i];
        if (text[i - 1] == ' ' && x == '\'' && i + 1 < total) {
            char x1 = text[i + 1];
            if (x1 == 's' || x1 == 'm')
                n--;
            else if (i + 2 < total && ((x1 == 'r' && text[i + 2] == 'e') ||
                                       (x1 == 'v' && text[i + 2] == 'e')))
                n--;
        }
        text[n++] = x;
    }
    return n;
}

vt_err tok_detokenize(const tok_tokenizer *t, const int32_t *ids, size_t n_ids, bool remove_special,
                      bool unparse_special, char **text, size_t *len)
{
    if (!text || !len || !t || (!ids && n_ids))
        return vt_fail(VT_ERR_INVALID, "tok_detokenize: NULL argument");
    *text = NULL;
    *len = 0;
    bool remove_space = t->add_space_prefix;
    if (remove_special && t->add_bos && n_ids > 0 && ids[0] == t->bos) {
        remove_space = false;
        ids++;
        n_ids--;
    }
    if (remove_special && t->add_eos && n_ids > 0 && ids[n_ids - 1] == t->eos)
        n_ids--;
    buf b = {0};
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= t->n_tokens) {
            free(b.p);
            return vt_fail(VT_ERR_RANGE, "tok_detokenize: token %d outside the vocabulary (%u)",
                           ids[i], t->n_tokens);
        }
        size_t n;
        const char *p = tok_piece(t, ids[i], unparse_special, &n);
        if (remove_space && n && *p == ' ') {
            p++;
            n--;
        }
        remove_space = false;
        if (!buf_put(&b, p, n)) {
            free(b.p);
            return vt_fail(VT_ERR_NOMEM, "tok_detokenize: out of memory");
        }
    }
    if (!buf_put(&b, "", 0)) {
        free(b.p);
        return vt_fail(VT_ERR_NOMEM, "tok_detokenize: out of memory");
    }
    if (t->clean_spaces)
        b.n = clean_spaces(b.p, b.n);
    b.p[b.n] = 0;
    *text = b.p;
    *len = b.n;
    return VT_OK;
}

/* ---- streaming ---- */

struct tok_stream {
    const tok_tokenizer *t;
    bool special, strip, first;
    buf out;   /* what the last call returned */
    buf held;  /* an incomplete UTF-8 sequence kept for the next call */
};

tok_stream *tok_stream_create(const tok_tokenizer *t, bool special, bool strip_leading_space)
{
    tok_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->t = t;
    s->special = special;
    s->strip = strip_leading_space;
    s->first = true;
    return s;
}

void tok_stream_destroy(tok_stream *s)
{
    if (!s)
        return;
    free(s->out.p);
    free(s->held.p);
    free(s);
}

vt_err tok_stream_push(tok_stream *s, int32_t id, const char **text, size_t *len)
{
    *text = "";
    *len = 0;
    if (id < 0 || (uint32_t)id >= s->t->n_tokens)
        return vt_fail(VT_ERR_RANGE, "tok_stream_push: token %d outside the vocabulary (%u)", id,
                       s->t->n_tokens);
    size_t n;
    const char *p = tok_piece(s->t, id, s->special, &n);
    if (s->first && s->strip && n && *p == ' ') {
        p++;
        n--;
    }
    s->first = false;
    /* out = held + piece; then keep the incomplete tail back */
    s->out.n = 0;
    if (!buf_put(&s->out, s->held.p, s->held.n) || !buf_put(&s->out, p, n))
        return vt_fail(VT_ERR_NOMEM, "tok_stream_push: out of memory");
    size_t ready = tok_utf8_complete_prefix((const uint8_t *)s->out.p, s->out.n);
    s->held.n = 0;
    if (!buf_put(&s->held, s->out.p + ready, s->out.n - ready))
        return vt_fail(VT_ERR_NOMEM, "tok_stream_push: out of memory");
    s->out.n = ready;
    *text = s->out.p;
    *len = ready;
    return VT_OK;
}

void tok_stream_flush(tok_stream *s, const char **text, size_t *len)
{
    /* swap: hand out what was held, keep the other buffer for later */
    buf tmp = s->out;
    s->out = s->held;
    s->held = tmp;
    s->held.n = 0;
    s->first = true;
    *text = s->out.p ? s->out.p : "";
    *len = s->out.n;
}
