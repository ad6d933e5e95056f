/*
 * template.c - the public face of the template interpreter (template.h):
 * compile = preprocess + tokenize (template_lex.c) + parse
 * (template_parse.c) into an arena owned by the template; render = a fresh
 * heap and global scope (built-ins, then the context's keys as the oracle
 * declares them: a key that names a built-in is an error), run the tree
 * (template_eval.c), copy the text out, sweep the heap. Also the chat
 * convenience and JSON.stringify-style quoting for callers.
 */
#include <stdlib.h>
#include <string.h>

#include "template/template_int.h"

vt_err tpl_compile(const char *src, size_t len, tpl_template **out)
{
    *out = NULL;
    if (!src && len)
        return vt_fail(VT_ERR_INVALID, "template: NULL source");
    tpl_template *t = calloc(1, sizeof *t);
    if (!t)
        return vt_fail(VT_ERR_NOMEM, "template: out of memory");
    ttoken *toks;
    int n;
    vt_err e = tpl_lex(src ? src : "", len, &t->arena, &toks, &n);
    if (!e) {
        e = tpl_parse(toks, n, &t->arena, &t->root);
        free(toks);
    }
    if (e) {
        tpl_destroy(t);
        return e;
    }
    *out = t;
    return VT_OK;
}

void tpl_destroy(tpl_template *t)
{
    if (!t)
        return;
    tpl_arena_free(&t->arena);
    free(t);
}

static int declare_context(trender *r, tenv *g, const json_t *ctx)
{
    const char *key;
    size_t keylen;
    json_t *val;
    /* JavaScript would declare integer-like keys first; the order is only
     * visible in which duplicate is reported, so plain order is kept. */
    json_object_keylen_foreach((json_t *)ctx, key, keylen, val)
    {
        if (tpl_dict_get(g->vars, key, keylen)) {
            r->err = vt_fail(VT_ERR_FORMAT, "template: Variable already declared: %s", key);
            return -1;
        }
        tval v;
        tstr *k = tpl_str_new(r, key, keylen);
        if (!k || tpl_from_json(r, val, &v, 0) || tpl_dict_set(r, g->vars, k, v))
            return -1;
        tpl_obj_decref(r, &k->h);
    }
    return 0;
}

vt_err tpl_render(const tpl_template *t, const json_t *context, const tpl_options *opt,
                  char **out, size_t *out_len)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!t)
        return vt_fail(VT_ERR_INVALID, "template: NULL template");
    if (context && !json_is_object(context))
        return vt_fail(VT_ERR_INVALID, "template: the context must be a JSON object");
    trender r;
    tpl_heap_init(&r, opt);
    tenv *g = tpl_env_new(&r, NULL);
    tstr *buf = NULL;
    int rc = !g || tpl_define_globals(&r, g) || (context && declare_context(&r, g, context)) ||
             !(buf = tpl_buf_new(&r, 4096));
    if (!rc) {
        rc = tpl_exec_block(&r, g, &t->root->l1, buf);
        if (rc > 0)
            rc = tpl_fail(&r, VT_ERR_FORMAT, 0, "'break' or 'continue' outside of a loop");
    }
    if (!rc) {
        char *s = malloc(buf->len + 1);
        if (s) {
            memcpy(s, buf->p, buf->len + 1);
            *out = s;
            if (out_len)
                *out_len = buf->len;
        } else {
            rc = tpl_nomem(&r);
        }
    }
    vt_err e = rc ? (r.err ? r.err : VT_ERR_INTERNAL) : VT_OK;
    tpl_heap_free_all(&r);
    return e;
}

vt_err tpl_render_chat(const tpl_template *t, const json_t *messages, bool add_generation_prompt,
                       const char *bos_token, const char *eos_token, const json_t *extra,
                       const tpl_options *opt, char **out, size_t *out_len)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!messages || !json_is_array(messages))
        return vt_fail(VT_ERR_INVALID, "template: messages must be a JSON array");
    if (extra && !json_is_object(extra))
        return vt_fail(VT_ERR_INVALID, "template: extra variables must be a JSON object");
    json_t *ctx = json_object();
    if (!ctx || json_object_set(ctx, "messages", (json_t *)messages) ||
        json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt)) ||
        (bos_token && json_object_set_new(ctx, "bos_token", json_string(bos_token))) ||
        (eos_token && json_object_set_new(ctx, "eos_token", json_string(eos_token))) ||
        (extra && json_object_update(ctx, (json_t *)extra))) {
        json_decref(ctx);
        return vt_fail(VT_ERR_NOMEM, "template: cannot build the context (out of memory or "
                                     "tokens not UTF-8)");
    }
    vt_err e = tpl_render(t, ctx, opt, out, out_len);
    json_decref(ctx);
    return e;
}

char *tpl_json_quote(const char *s, size_t len, size_t *out_len)
{
    trender r;
    tpl_options o = {.max_output = len * 6 + 16, .max_memory = len * 16 + 4096};
    tpl_heap_init(&r, &o);
    tstr *b = tpl_buf_new(&r, len + 16);
    char *res = NULL;
    if (b && !tpl_json_quote_into(&r, s, len, false, b) && (res = malloc(b->len + 1))) {
        memcpy(res, b->p, b->len + 1);
        if (out_len)
            *out_len = b->len;
    }
    tpl_heap_free_all(&r);
    return res;
}
