/*
 * template.h - chat templates: a Jinja-subset interpreter that renders a
 * model's `tokenizer.chat_template` byte for byte as @huggingface/jinja (the
 * Jinja implementation of transformers.js) does.
 *
 * A template is compiled once (tpl_compile) into an immutable tree that may be
 * rendered any number of times, from any number of threads at once
 * (tpl_render keeps all of its state on the caller's side). The context is a
 * JSON object whose keys become the template's variables.
 *
 * Semantics follow the oracle, including its departures from Python's Jinja:
 * the environment trims blocks and strips their leading blanks (trim_blocks,
 * lstrip_blocks) and drops one trailing newline of the template; booleans
 * print as true/false; lists and dicts print as JSON; `==` is JavaScript's
 * loose equality (containers compare by identity); strings measure their
 * length in UTF-16 code units; `strip`/`lstrip`/`rstrip` ignore their
 * argument and strip all whitespace; `+` and `~` on an undefined value is an
 * error. A few filters and tests the oracle lacks (select, reject, round,
 * count, escape, divisibleby, ...) are supported with Jinja's meaning.
 *
 * Errors: a syntax error or a construct the interpreter does not handle is
 * VT_ERR_FORMAT from tpl_compile, with a message naming the construct and the
 * template line. At render time, `raise_exception(msg)` in the template yields
 * VT_ERR_INVALID with vt_last_error() equal to msg exactly; a type error or an
 * unknown filter/test/method is VT_ERR_FORMAT naming it and its line; going
 * past a limit (tpl_options) is VT_ERR_RANGE; VT_ERR_NOMEM on allocation
 * failure.
 */
#ifndef VT_TEMPLATE_H
#define VT_TEMPLATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vitamin.h"

typedef struct tpl_template tpl_template;

/* Render limits, so that a hostile template can neither hang nor exhaust
 * memory. A zero field takes its default. */
typedef struct {
    size_t max_output;  /* bytes of the rendering and of any one string (default 64 MiB) */
    size_t max_memory;  /* bytes of live values during one render (default 512 MiB) */
    uint64_t max_steps; /* evaluation steps; each loop iteration is one or more (default 50M) */
    int max_depth;      /* nesting of evaluation, macro recursion included (default 256) */
    int64_t now;        /* strftime_now's clock in Unix seconds, read in the local time
                           zone (default: the current time) */
} tpl_options;

/* Compiles len bytes of template source (need not be NUL-terminated;
 * invalid UTF-8 is read as U+FFFD, as the oracle reads files). On success
 * *out is a new template for tpl_destroy(); on failure *out is NULL and the
 * error is VT_ERR_FORMAT (syntax, unsupported construct) or VT_ERR_NOMEM. */
vt_err tpl_compile(const char *src, size_t len, tpl_template **out);

void tpl_destroy(tpl_template *t); /* NULL is a no-op */

/* Renders with the variables of `context` (a JSON object, or NULL for none).
 * opt may be NULL for the defaults. On success *out is a malloc'd,
 * NUL-terminated string the caller frees, and *out_len (if not NULL) its
 * length (the text may itself contain NUL bytes from the context). On failure
 * *out is NULL; see the header comment for the error classes. */
vt_err tpl_render(const tpl_template *t, const json_t *context, const tpl_options *opt,
                  char **out, size_t *out_len);

/* The engine's convenience: renders `messages` (a JSON array of
 * {"role","content",...} objects) with add_generation_prompt, bos_token and
 * eos_token (NULL leaves the variable undefined) and the keys of `extra` (a
 * JSON object or NULL: tools, enable_thinking, documents, ...; its keys win
 * over the four above). Same results and ownership as tpl_render. */
vt_err tpl_render_chat(const tpl_template *t, const json_t *messages, bool add_generation_prompt,
                       const char *bos_token, const char *eos_token, const json_t *extra,
                       const tpl_options *opt, char **out, size_t *out_len);

/* Encodes len bytes of UTF-8 text as a JSON string literal exactly as
 * JavaScript's JSON.stringify does (quotes included; control characters as
 * \b \f \n \r \t or \u00xx, everything else verbatim). Returns a malloc'd,
 * NUL-terminated string (length in *out_len if not NULL), or NULL on OOM. */
char *tpl_json_quote(const char *s, size_t len, size_t *out_len);

#endif
