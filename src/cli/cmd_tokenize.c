/*
 * cmd_tokenize.c - `vitamin tokenize`: prints the token ids of a text under
 * a model's vocabulary, either space-separated (--ids) or one token per line
 * as `ID 'PIECE'`, the piece quoted and escaped (\n, \t, \r, \\, \', other
 * control and invalid bytes as \xNN). By default no BOS/EOS is added and
 * special-token text is not parsed, as llama.cpp's tokenizer tests do. The
 * hidden --bench FILE option measures tokenization speed instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vitamin tokenize -m MODEL.gguf [--special] [--add-special] [--ids] TEXT\n"
            "\n"
            "Prints the tokens of TEXT under the model's vocabulary: one `ID 'PIECE'` per line,\n"
            "or with --ids the ids on one line, space-separated.\n"
            "\n"
            "  -m, --model FILE  GGUF file with a tokenizer (weights are not read)\n"
            "  --special         recognise special-token text such as <|im_start|>\n"
            "  --add-special     add BOS/EOS as the model's add_bos/add_eos flags say\n"
            "  --ids             print only the ids\n"
            "  TEXT              the text; '-' reads standard input byte for byte\n");
}

/* Reads all of a stream; NULL on failure. */
static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static void print_piece(const char *p, size_t len)
{
    const uint8_t *s = (const uint8_t *)p;
    putchar('\'');
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        if (c == '\n' || c == '\t' || c == '\r' || c == '\\' || c == '\'') {
            printf("\\%c", c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : (char)c);
            i++;
        } else if (c >= 0x20 && c < 0x7F) {
            putchar(c);
            i++;
        } else {
            size_t adv;
            uint32_t cpt = tok_utf8_decode(s + i, len - i, &adv);
            bool ok = adv > 1 && cpt >= 0x80 && !(cpt >= 0xD800 && cpt <= 0xDFFF);
            if (ok) { /* reject overlong forms too: re-encoding must give the same bytes */
                uint8_t enc[4];
                ok = tok_utf8_encode(cpt, enc) == adv && !memcmp(enc, s + i, adv);
            }
            if (ok)
                fwrite(s + i, 1, adv, stdout);
            else
                printf("\\x%02x", c);
            i += ok ? adv : 1;
        }
    }
    putchar('\'');
}

static int bench(const tok_tokenizer *t, const char *path, long repeat, bool special)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "vitamin: %s: cannot open\n", path);
        return 1;
    }
    size_t len;
    char *text = read_all(f, &len);
    fclose(f);
    if (!text) {
        fprintf(stderr, "vitamin: %s: cannot read\n", path);
        return 1;
    }
    int32_t *ids;
    size_t n = 0;
    if (tok_encode(t, text, len, false, special, &ids, &n)) { /* warm-up */
        fprintf(stderr, "vitamin: %s\n", vt_last_error());
        free(text);
        return 1;
    }
    free(ids);
    double best = 1e30;
    for (long r = 0; r < repeat; r++) {
        double t0 = vt_now();
        if (tok_encode(t, text, len, false, special, &ids, &n)) {
            fprintf(stderr, "vitamin: %s\n", vt_last_error());
            free(text);
            return 1;
        }
        double dt = vt_now() - t0;
        free(ids);
        if (dt < best)
            best = dt;
    }
    printf("{\"bytes\":%zu,\"tokens\":%zu,\"seconds\":%.6f,\"mb_per_s\":%.3f}\n", len, n, best,
           (double)len / 1e6 / best);
    free(text);
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *bench_file = NULL;
    bool special = false, add_special = false, ids_only = false;
    long repeat = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!cli_need_value(argc, argv, i))
                return 2;
            model = argv[++i];
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--add-special")) {
            add_special = true;
        } else if (!strcmp(a, "--ids")) {
            ids_only = true;
        } else if (!strcmp(a, "--bench")) { /* hidden: tokenization speed */
            if (!cli_need_value(argc, argv, i))
                return 2;
            bench_file = argv[++i];
        } else if (!strcmp(a, "--repeat")) {
            if (!cli_need_value(argc, argv, i) || !cli_parse_int(a, argv[++i], 1, 1000000, &repeat))
                return 2;
        } else if (a[0] == '-' && a[1] != 0) {
            fprintf(stderr, "vitamin tokenize: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (!text) {
            text = a;
        } else {
            fprintf(stderr, "vitamin tokenize: more than one TEXT (quote it)\n");
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "vitamin tokenize: -m MODEL.gguf is required (see --help)\n");
        return 2;
    }
    if (!text && !bench_file) {
        fprintf(stderr, "vitamin tokenize: no TEXT given ('-' reads standard input)\n");
        return 2;
    }

    gguf_file *g;
    if (gguf_open(model, &g)) {
        fprintf(stderr, "vitamin: %s\n", vt_last_error()); /* names the file */
        return 1;
    }
    tok_tokenizer *t;
    vt_err e = tok_load(g, &t);
    gguf_close(g);
    if (e) {
        fprintf(stderr, "vitamin: %s: %s\n", model, vt_last_error());
        return 1;
    }
    if (bench_file) {
        int rc = bench(t, bench_file, repeat, special);
        tok_destroy(t);
        return rc;
    }

    char *buf = NULL;
    size_t len = strlen(text);
    if (!strcmp(text, "-")) {
        if (!(buf = read_all(stdin, &len))) {
            fprintf(stderr, "vitamin: cannot read standard input\n");
            tok_destroy(t);
            return 1;
        }
        text = buf;
    }
    int32_t *ids;
    size_t n;
    e = tok_encode(t, text, len, add_special, special, &ids, &n);
    free(buf);
    if (e) {
        fprintf(stderr, "vitamin: %s\n", vt_last_error());
        tok_destroy(t);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids_only) {
            printf(i ? " %d" : "%d", ids[i]);
        } else {
            size_t pl;
            const char *p = tok_piece(t, ids[i], true, &pl);
            printf("%6d ", ids[i]);
            print_piece(p, pl);
            putchar('\n');
        }
    }
    if (ids_only)
        putchar('\n');
    free(ids);
    tok_destroy(t);
    return fflush(stdout) ? 1 : 0;
}
