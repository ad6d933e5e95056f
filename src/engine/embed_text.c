/*
 * embed_text.c - eng_embed_text (engine.h): one text's embedding through an
 * engine, for callers outside the engine thread that want it synchronously
 * (the memory store's writer and recall, vitamin chat): tokenized with the
 * model's BOS rule, submitted as an embedding request (batched with
 * whatever else the engine runs), waited for.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

vt_err eng_embed_text(vt_engine *e, const char *text, size_t len, uint64_t salt, float **out,
                      int32_t *n_embd)
{
    *out = NULL;
    *n_embd = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    vt_err err = vt_tokenize(e, text, len, true, false, &ids, &n);
    if (err)
        return err;
    if (n == 0) {
        free(ids);
        return vt_fail(VT_ERR_INVALID, "nothing to embed: the text has no tokens");
    }
    int64_t max = vt_engine_max_seq_len(e);
    if ((int64_t)n > max)
        n = (size_t)max; /* the beginning of a text longer than the context */
    vt_request_params p = vt_request_params_default();
    p.prompt = ids;
    p.n_prompt = (int64_t)n;
    p.embed = true;
    p.cache_salt = salt;
    vt_request *r = NULL;
    err = vt_submit(e, &p, &r);
    free(ids);
    if (err)
        return err;
    vt_event ev;
    err = VT_ERR_INTERNAL;
    vt_fail(VT_ERR_INTERNAL, "the engine ended the embedding request without a vector");
    while (vt_request_next(r, &ev, -1) == 1) {
        if (ev.kind == VT_EV_EMBEDDING && !*out) {
            if (!(*out = malloc(sizeof **out * (size_t)ev.n_embd))) {
                err = vt_fail(VT_ERR_NOMEM, "out of memory");
                break;
            }
            memcpy(*out, ev.embedding, sizeof **out * (size_t)ev.n_embd);
            *n_embd = ev.n_embd;
            err = VT_OK;
        } else if (ev.kind == VT_EV_ERROR) {
            err = vt_fail(ev.error ? ev.error : VT_ERR_INTERNAL, "%.*s", (int)ev.len, ev.text);
        } else if (ev.kind == VT_EV_DONE) {
            break;
        }
    }
    vt_request_free(r);
    if (err) {
        free(*out);
        *out = NULL;
        *n_embd = 0;
    }
    return err;
}
