/*
 * chat.h - OpenAI-style messages to prompt tokens: the model's chat template
 * (or one given in a file), the bos/eos token texts it may print, and the
 * model's BOS rule. Shared by `vitamin chat` and the server.
 *
 * A chat_fmt is compiled once per model and is immutable afterwards, so any
 * number of threads may render with it at once. The messages are a jansson
 * array of {"role","content",...} objects as OpenAI's API takes them; extra
 * template variables (tools, enable_thinking, ...) come as a JSON object.
 *
 * Errors are vt_err values with vt_last_error() explaining: VT_ERR_NOT_FOUND
 * for a model without a template (the message names --template),
 * VT_ERR_IO for an unreadable file, the template's own errors (template.h)
 * for compile and render failures, VT_ERR_NOMEM.
 */
#ifndef VT_CHAT_H
#define VT_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/toolcall.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "vitamin.h"

typedef struct chat_fmt chat_fmt;

/* The template source: the file at `path` if not NULL, else the model's
 * tokenizer.chat_template from f. *src is malloc'd and NUL-terminated (the
 * caller frees), *len its length. */
vt_err chat_template_source(const gguf_file *f, const char *path, char **src, size_t *len);

/* Compiles src[0..len) for the tokenizer tok (borrowed; it must outlive the
 * chat_fmt). *out is NULL on failure. */
vt_err chat_fmt_create(const tok_tokenizer *tok, const char *src, size_t len, chat_fmt **out);
/* Both steps: the file at path if not NULL, else the model's template. */
vt_err chat_fmt_load(const gguf_file *f, const tok_tokenizer *tok, const char *path,
                     chat_fmt **out);
void chat_fmt_destroy(chat_fmt *c); /* NULL is a no-op */

/* The tool-call format of the template (toolcall.h). */
chat_tool_family chat_fmt_tool_family(const chat_fmt *c);

/* Renders messages (with the generation prompt when add_generation_prompt)
 * to text: *text malloc'd, NUL-terminated, *len its length. Tool calls in
 * the messages are checked and prepared as chat_tool_messages does (an
 * error there is VT_ERR_INVALID naming the field); an assistant message
 * with null content is given "" when the template fails on null. */
vt_err chat_render(const chat_fmt *c, const json_t *messages, bool add_generation_prompt,
                   const json_t *extra, char **text, size_t *len);

/* Renders and tokenizes: special-token text in the rendering is parsed as
 * special tokens, and BOS is put in front when the model's rule asks for it
 * and the template did not write it. *ids malloc'd (the caller frees), *n
 * its length (>= 0). */
vt_err chat_prompt(const chat_fmt *c, const json_t *messages, bool add_generation_prompt,
                   const json_t *extra, int32_t **ids, size_t *n);
/* chat_prompt with suffix (NULL: none) appended to the rendering before
 * tokenizing (a forced start of the reply, e.g. a tool call's opening). */
vt_err chat_prompt_suffix(const chat_fmt *c, const json_t *messages, bool add_generation_prompt,
                          const json_t *extra, const char *suffix, int32_t **ids, size_t *n);

/* Appends {"role": role, "content": content[0..len)} to the array messages.
 * JSON strings must be UTF-8, so each byte of content that is not part of a
 * well-formed sequence (RFC 3629; a model may generate any bytes) becomes
 * U+FFFD. False on allocation failure (messages unchanged). */
bool chat_add_message(json_t *messages, const char *role, const char *content, size_t len);

/* Length of the well-formed UTF-8 sequence at s[0..n) (n >= 1), or 0. */
size_t chat_utf8_len(const unsigned char *s, size_t n);

#endif
