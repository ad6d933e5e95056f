/*
 * cmd_template.c - `vitamin template`: renders a chat template for a context
 * and prints the result as one JSON string and a newline, exactly the output
 * of ../shared/oracle/template.mjs (JSON.stringify of the rendering), so the
 * two can be compared byte for byte. The template comes from a file
 * (--template) or from a model's `tokenizer.chat_template` (-m). The
 * context is a JSON object read from a file ("-" for stdin); numbers are
 * read as JavaScript reads them (all as doubles).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gguf/gguf.h"
#include "template/template.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vitamin template (-m MODEL.gguf | --template FILE.jinja) --context CONTEXT.json\n"
            "                        [--now SECONDS]\n"
            "\n"
            "Renders a chat template for a context and prints the result as a JSON string\n"
            "(the output format of ../shared/oracle/template.mjs).\n"
            "\n"
            "  -m, --model FILE     read the template from the model's tokenizer.chat_template\n"
            "  --template FILE      read the template from a file\n"
            "  --context FILE       JSON object of variables: messages, add_generation_prompt,\n"
            "                       bos_token, eos_token, tools, ... ('-' reads stdin)\n"
            "  --now SECONDS        the clock of strftime_now(), as Unix seconds (default: now)\n"
            "  -h, --help           this help\n");
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (n < cap) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
            }
            break;
        }
        char *nb = realloc(buf, cap *= 2);
        if (!nb)
            free(buf);
        buf = nb;
    }
    if (f != stdin)
        fclose(f);
    if (buf)
        *len = n;
    return buf;
}

static char *template_from_model(const char *path, size_t *len)
{
    gguf_file *g;
    vt_err e = gguf_open(path, &g);
    if (e) {
        fprintf(stderr, "vitamin template: %s: %s\n", path, vt_last_error());
        return NULL;
    }
    gguf_str s;
    char *res = NULL;
    if (!gguf_get_str(g, "tokenizer.chat_template", &s)) {
        fprintf(stderr, "vitamin template: %s has no tokenizer.chat_template\n", path);
    } else if ((res = malloc(s.len + 1))) {
        memcpy(res, s.ptr, s.len);
        res[s.len] = 0;
        *len = s.len;
    } else {
        fprintf(stderr, "vitamin template: out of memory\n");
    }
    gguf_close(g);
    return res;
}

int cmd_template(int argc, char **argv)
{
    const char *model = NULL, *tfile = NULL, *cfile = NULL;
    tpl_options opt = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        bool takes = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--template") ||
                     !strcmp(a, "--context") || !strcmp(a, "--now");
        if (!takes) {
            fprintf(stderr, "vitamin template: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!cli_need_value(argc, argv, i))
            return 2;
        const char *v = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--template"))
            tfile = v;
        else if (!strcmp(a, "--context"))
            cfile = v;
        else {
            long now;
            if (!cli_parse_int(a, v, 1, 253402300799L, &now))
                return 2;
            opt.now = now;
        }
    }
    if (!model == !tfile) {
        fprintf(stderr, "vitamin template: give exactly one of -m MODEL.gguf or --template FILE\n");
        return 2;
    }
    if (!cfile) {
        fprintf(stderr, "vitamin template: --context CONTEXT.json is required\n");
        return 2;
    }
    size_t len = 0;
    char *src = model ? template_from_model(model, &len) : read_all(tfile, &len);
    if (!src) {
        if (tfile)
            fprintf(stderr, "vitamin template: cannot read %s: %s\n", tfile, strerror(errno));
        return 1;
    }
    json_error_t jerr;
    json_t *ctx = !strcmp(cfile, "-")
                      ? json_loadf(stdin, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr)
                      : json_load_file(cfile, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
    int rc = 1;
    tpl_template *t = NULL;
    char *out = NULL, *quoted = NULL;
    size_t out_len = 0, qlen = 0;
    if (!ctx) {
        fprintf(stderr, "vitamin template: %s: line %d: %s\n", cfile, jerr.line, jerr.text);
    } else if (!json_is_object(ctx)) {
        fprintf(stderr, "vitamin template: %s: the context must be a JSON object\n", cfile);
    } else if (tpl_compile(src, len, &t)) {
        fprintf(stderr, "vitamin template: %s: %s\n", model ? model : tfile, vt_last_error());
    } else {
        vt_err e = tpl_render(t, ctx, &opt, &out, &out_len);
        if (e == VT_ERR_INVALID)
            fprintf(stderr, "vitamin template: the template raised an error: %s\n", vt_last_error());
        else if (e)
            fprintf(stderr, "vitamin template: %s\n", vt_last_error());
        else if (!(quoted = tpl_json_quote(out, out_len, &qlen)))
            fprintf(stderr, "vitamin template: out of memory\n");
        else if (fwrite(quoted, 1, qlen, stdout) != qlen || putchar('\n') == EOF ||
                 fflush(stdout))
            fprintf(stderr, "vitamin template: cannot write the output\n");
        else
            rc = 0;
    }
    free(quoted);
    free(out);
    tpl_destroy(t);
    json_decref(ctx);
    free(src);
    return rc;
}
