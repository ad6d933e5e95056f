/*
 * test_template.c - chat templates against the oracle (@huggingface/jinja).
 *
 * Fixtures: every template in ../shared/fixtures/templates rendered for
 * every context there equals the expected file byte for byte (gemma-2 with
 * a system message fails with the template's own message); the same over
 * this repository's copy in tests/data/templates, which adds contexts of
 * our own (tools, parallel tool calls, string arguments, thinking,
 * enable_thinking false, empty content, prefill, odd JSON values,
 * documents, role alternation errors) whose expected files or error
 * messages come from the oracle (tests/data/templates/regen.sh).
 * Language: tests/data/templates/language.json, a list of small templates
 * with the oracle's output (or error), plus hand-written cases for what the
 * oracle lacks and for compile errors that must name the construct and line.
 *
 * Error cases compare the message, not only that rendering failed. Each one
 * says how (errors.txt for the folder's MODEL.CONTEXT.error.txt, "match" in
 * language.json): "exact" - a raise_exception() text, which vitamin's
 * message equals byte for byte (VT_ERR_INVALID); "line" - an interpreter
 * error worded as the oracle words it, vitamin's message being "template
 * line N: " and the oracle's (VT_ERR_FORMAT); "class" - worded differently (the oracle
 * names no operator for null operands, calls a filter "ArrayValue filter",
 * or crashes on an unclosed block): the error class, and required parts
 * (errors.txt: each in both messages; language.json's "error": in
 * vitamin's, the oracle's wording being unrelated).
 * Then the API (render_chat, json_quote, reuse across threads), limits on
 * hostile templates, and the `vitamin template` command (--template and -m).
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "test.h"
#include "template/template.h"

#define NOW 1795867200 /* 2026-11-28T12:00:00Z: the day the fixtures were rendered */
#define LOCAL_DIR "tests/data/templates"

static tpl_options opts(void)
{
    tpl_options o = {.now = NOW};
    return o;
}

static json_t *load_json(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &e);
    if (!j)
        test_fail_at(__FILE__, __LINE__, "%s: %s (line %d)", path, e.text, e.line);
    return j;
}

/* Renders src with ctx; returns the text (caller frees) or NULL with *err. */
static char *render(const char *src, size_t len, const json_t *ctx, vt_err *err, size_t *out_len)
{
    tpl_template *t;
    tpl_options o = opts();
    *err = tpl_compile(src, len, &t);
    if (*err)
        return NULL;
    char *out;
    *err = tpl_render(t, ctx, &o, &out, out_len);
    tpl_destroy(t);
    return *err ? NULL : out;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* True if msg is "template line N: " followed by want. */
static bool line_then(const char *msg, const char *want)
{
    static const char pre[] = "template line ";
    size_t k = sizeof pre - 1;
    if (strncmp(msg, pre, k) || msg[k] < '0' || msg[k] > '9')
        return false;
    const char *p = msg + k;
    while (*p >= '0' && *p <= '9')
        p++;
    return p[0] == ':' && p[1] == ' ' && !strcmp(p + 2, want);
}

static vt_err code_of(const char *s)
{
    return !strcmp(s, "INVALID") ? VT_ERR_INVALID : !strcmp(s, "RANGE") ? VT_ERR_RANGE
                                                                          : VT_ERR_FORMAT;
}

/* Checks that vitamin's failure (err, msg) matches the oracle's message as
 * `match` says ("exact", "line" or "class"; see the top of this file). For
 * "class": err must be `code` and each of parts occur in msg (and in the
 * oracle's message too if parts_in_oracle). src: the template, where an
 * "exact" message must be raised (raise_exception). */
static void check_error(const char *label, const char *src, vt_err err, const char *msg,
                        const char *oracle, const char *match, vt_err code,
                        const char *const *parts, int n_parts, bool parts_in_oracle)
{
    if (!match) {
        test_fail_at(__FILE__, __LINE__, "%s: no expectation for the error (oracle: '%s')", label,
                     oracle);
    } else if (!strcmp(match, "exact")) {
        CHECKF(strstr(src, "raise_exception"), "%s: 'exact' but the template raises nothing",
               label);
        CHECKF(err == VT_ERR_INVALID && !strcmp(msg, oracle),
               "%s: error %s '%s', the oracle's (raise_exception) '%s'", label, vt_strerror(err),
               msg, oracle);
    } else if (!strcmp(match, "line")) {
        CHECKF(err == VT_ERR_FORMAT && line_then(msg, oracle),
               "%s: error %s '%s', want \"template line N: %s\"", label, vt_strerror(err), msg, oracle);
    } else if (!strcmp(match, "class")) {
        CHECKF(err == code, "%s: error class %s, want %s ('%s')", label, vt_strerror(err),
               vt_strerror(code), msg);
        CHECKF(n_parts > 0, "%s: 'class' with no required part", label);
        for (int i = 0; i < n_parts; i++) {
            CHECKF(strstr(msg, parts[i]), "%s: error '%s' lacks '%s'", label, msg, parts[i]);
            if (parts_in_oracle)
                CHECKF(strstr(oracle, parts[i]), "%s: the oracle's error '%s' lacks '%s'", label,
                       oracle, parts[i]);
        }
    } else {
        test_fail_at(__FILE__, __LINE__, "%s: unknown match '%s'", label, match);
    }
}

/* errors.txt: how each error case of the folder is compared. */
typedef struct {
    char name[160], match[8], code[12];
    char parts[4][120];
    int n_parts;
    bool used;
} error_rule;

static error_rule rules[64];
static int n_rules = -1;

static void load_rules(void)
{
    if (n_rules >= 0)
        return;
    n_rules = 0;
    FILE *f = fopen(LOCAL_DIR "/errors.txt", "r");
    if (!f) {
        test_fail_at(__FILE__, __LINE__, "cannot read " LOCAL_DIR "/errors.txt");
        return;
    }
    char line[1024];
    while (fgets(line, sizeof line, f) && n_rules < 64) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '#' || !line[0])
            continue;
        error_rule *r = &rules[n_rules];
        int off = 0;
        if (sscanf(line, "%159s %7s %n", r->name, r->match, &off) < 2) {
            test_fail_at(__FILE__, __LINE__, "errors.txt: bad line '%s'", line);
            continue;
        }
        if (!strcmp(r->match, "class")) {
            int off2 = 0;
            if (sscanf(line + off, "%11s %n", r->code, &off2) < 1) {
                test_fail_at(__FILE__, __LINE__, "errors.txt: no class in '%s'", line);
                continue;
            }
            for (char *p = line + off + off2; *p && r->n_parts < 4;) {
                char *bar = strstr(p, " | ");
                size_t n = bar ? (size_t)(bar - p) : strlen(p);
                snprintf(r->parts[r->n_parts++], sizeof r->parts[0], "%.*s", (int)n, p);
                p = bar ? bar + 3 : p + n;
            }
        }
        n_rules++;
    }
    fclose(f);
}

static error_rule *rule_for(const char *name)
{
    load_rules();
    for (int i = 0; i < n_rules; i++)
        if (!strcmp(rules[i].name, name)) {
            rules[i].used = true;
            return &rules[i];
        }
    return NULL;
}

typedef struct {
    int compared, errors_checked, skipped_missing;
} dir_stats;

/* Every MODEL.jinja x every context file with the prefix, in dir. */
static void check_dir(const char *dir, const char *ctx_prefix, dir_stats *st)
{
    DIR *d = opendir(dir);
    if (!d) {
        test_fail_at(__FILE__, __LINE__, "cannot open %s", dir);
        return;
    }
    char *tpls[64], *ctxs[64];
    int nt = 0, nc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (has_suffix(e->d_name, ".jinja") && nt < 64)
            tpls[nt++] = strdup(e->d_name);
        else if (!strncmp(e->d_name, ctx_prefix, strlen(ctx_prefix)) &&
                 has_suffix(e->d_name, ".json") && !strstr(e->d_name, "expected") && nc < 64)
            ctxs[nc++] = strdup(e->d_name);
    }
    closedir(d);
    for (int i = 0; i < nt; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, tpls[i]);
        size_t slen;
        char *src = test_read_file(path, &slen);
        CHECKF(src, "cannot read %s", path);
        if (!src)
            continue;
        size_t ml = strlen(tpls[i]) - strlen(".jinja");
        for (int j = 0; j < nc; j++) {
            size_t cl = strlen(ctxs[j]) - strlen(".json");
            char exp_path[1024], err_path[1024];
            snprintf(path, sizeof path, "%s/%s", dir, ctxs[j]);
            snprintf(exp_path, sizeof exp_path, "%s/%.*s.%.*s.expected.json", dir, (int)ml, tpls[i],
                     (int)cl, ctxs[j]);
            snprintf(err_path, sizeof err_path, "%s/%.*s.%.*s.error.txt", dir, (int)ml, tpls[i],
                     (int)cl, ctxs[j]);
            json_t *ctx = load_json(path);
            if (!ctx)
                continue;
            vt_err err;
            size_t out_len;
            char *out = render(src, slen, ctx, &err, &out_len);
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", out ? "" : vt_last_error());
            char *exp = test_read_file(exp_path, NULL);
            char *exp_err = exp ? NULL : test_read_file(err_path, NULL);
            if (!exp && !exp_err) {
                /* ../shared has no error files: this folder's copy */
                snprintf(err_path, sizeof err_path, LOCAL_DIR "/%.*s.%.*s.error.txt", (int)ml,
                         tpls[i], (int)cl, ctxs[j]);
                exp_err = test_read_file(err_path, NULL);
            }
            if (exp) {
                CHECKF(out, "%s: %s failed: %s", tpls[i], ctxs[j], msg);
                if (out) {
                    size_t ql;
                    char *q = tpl_json_quote(out, out_len, &ql);
                    size_t el = strlen(exp);
                    bool same = q && el == ql + 1 && !memcmp(exp, q, ql) && exp[ql] == '\n';
                    CHECKF(same, "%s %s:\n  got      %.600s\n  expected %.600s", tpls[i], ctxs[j],
                           q ? q : "(null)", exp);
                    free(q);
                }
                st->compared++;
            } else if (exp_err) {
                /* the oracle threw: ours must fail too, with the message
                 * errors.txt says */
                exp_err[strcspn(exp_err, "\n")] = 0;
                char name[200];
                snprintf(name, sizeof name, "%.*s.%.*s", (int)ml, tpls[i], (int)cl, ctxs[j]);
                CHECKF(!out, "%s: rendered, but the oracle failed with '%s'", name, exp_err);
                const error_rule *r = rule_for(name);
                if (!out) {
                    const char *parts[4];
                    for (int k = 0; r && k < r->n_parts; k++)
                        parts[k] = r->parts[k];
                    check_error(name, src, err, msg, exp_err, r ? r->match : NULL,
                                r && r->code[0] ? code_of(r->code) : VT_ERR_FORMAT, parts,
                                r ? r->n_parts : 0, true);
                }
                st->errors_checked++;
            } else {
                st->skipped_missing++;
            }
            free(exp);
            free(exp_err);
            free(out);
            json_decref(ctx);
        }
        free(src);
    }
    for (int i = 0; i < nt; i++)
        free(tpls[i]);
    for (int j = 0; j < nc; j++)
        free(ctxs[j]);
}

static void test_shared_fixtures(void)
{
    const char *sh = test_need_shared("the shared template fixtures (the local copy is checked)");
    if (!sh)
        return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fixtures/templates", sh);
    dir_stats st = {0};
    check_dir(dir, "conv-", &st);
    CHECKF(st.compared >= 25, "only %d fixture renderings compared", st.compared);
    CHECK_EQ_INT(st.skipped_missing, 0);

    /* gemma-2 rejects a system message with its own words */
    char path[1100];
    snprintf(path, sizeof path, "%s/google-gemma-2-2b-it.jinja", dir);
    size_t len;
    char *src = test_read_file(path, &len);
    snprintf(path, sizeof path, "%s/conv-multiturn.json", dir);
    json_t *ctx = load_json(path);
    CHECK(src && ctx);
    if (src && ctx) {
        vt_err err;
        char *out = render(src, len, ctx, &err, NULL);
        CHECK(!out);
        CHECK_EQ_INT(err, VT_ERR_INVALID);
        CHECKF(!strcmp(vt_last_error(), "System role not supported"), "message: %s",
               vt_last_error());
        free(out);
    }
    free(src);
    json_decref(ctx);
}

static void test_local_fixtures(void)
{
    dir_stats st = {0};
    check_dir(LOCAL_DIR, "conv-", &st);
    check_dir(LOCAL_DIR, "ctx-", &st);
    CHECKF(st.compared >= 120, "only %d renderings compared", st.compared);
    CHECKF(st.errors_checked >= 15, "only %d oracle errors checked", st.errors_checked);
    CHECK_EQ_INT(st.skipped_missing, 0);
    for (int i = 0; i < n_rules; i++)
        CHECKF(rules[i].used, "errors.txt: %s has no error case", rules[i].name);
}

/* The local copy of the fixtures is the shared one. */
static void test_local_copy_matches_shared(void)
{
    const char *sh = test_need_shared("the local copy of the template fixtures against it");
    if (!sh)
        return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fixtures/templates", sh);
    DIR *d = opendir(dir);
    CHECK(d);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char a[1300], b[1300];
        snprintf(a, sizeof a, "%s/%s", dir, e->d_name);
        snprintf(b, sizeof b, "%s/%s", LOCAL_DIR, e->d_name);
        size_t la, lb;
        char *x = test_read_file(a, &la), *y = test_read_file(b, &lb);
        CHECKF(x && y && la == lb && !memcmp(x, y, la), "%s differs from ../shared", b);
        free(x);
        free(y);
        n++;
    }
    if (d)
        closedir(d);
    CHECK(n >= 30);
}

/* ---------------------------------------------------------------- language */

static void test_language_cases(void)
{
    json_t *cases = load_json(LOCAL_DIR "/language.json");
    if (!cases)
        return;
    json_t *std = json_object_get(json_array_get(cases, 0), "std");
    CHECK(std);
    size_t i, nout = 0, nerr = 0;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        if (i == 0)
            continue;
        json_t *t = json_object_get(c, "t"), *ctx = json_object_get(c, "c");
        if (json_is_string(ctx))
            ctx = std;
        const char *want = json_string_value(json_object_get(c, "out"));
        const char *oracle_err = json_string_value(json_object_get(c, "oracle_error"));
        const char *want_err = json_string_value(json_object_get(c, "error"));
        const char *code = json_string_value(json_object_get(c, "code"));
        vt_err err;
        size_t len;
        char *out = render(json_string_value(t), json_string_length(t), ctx, &err, &len);
        if (want) {
            size_t wl = json_string_length(json_object_get(c, "out"));
            CHECKF(out && len == wl && !memcmp(out, want, wl), "%s\n    got      [%s]%s\n    expected [%s]",
                   json_string_value(t), out ? out : "", out ? "" : vt_last_error(), want);
            nout++;
        } else {
            CHECKF(!out, "%s: rendered [%s] but must fail (oracle: %s)", json_string_value(t), out,
                   oracle_err ? oracle_err : "-");
            const char *match = json_string_value(json_object_get(c, "match"));
            if (!out) {
                char msg[1024];
                snprintf(msg, sizeof msg, "%s", vt_last_error());
                CHECKF(code, "%s: no \"code\"", json_string_value(t));
                CHECKF(oracle_err || json_is_false(json_object_get(c, "oracle")),
                       "%s: no oracle_error (run regen-language.mjs)", json_string_value(t));
                check_error(json_string_value(t), json_string_value(t), err, msg,
                            oracle_err ? oracle_err : "", match, code ? code_of(code) : VT_OK,
                            &want_err, want_err ? 1 : 0, false);
                if (match && !strcmp(match, "exact") && want_err)
                    CHECKF(!strcmp(want_err, oracle_err ? oracle_err : ""),
                           "%s: \"error\" differs from the oracle's", json_string_value(t));
            }
            nerr++;
        }
        free(out);
    }
    CHECKF(nout > 250 && nerr > 25, "%zu outputs, %zu errors", nout, nerr);
    json_decref(cases);
}

/* Small checks written out here, for the reader. */
static void expect(const char *src, const char *ctx_json, const char *want)
{
    json_t *ctx = ctx_json ? json_loads(ctx_json, JSON_DECODE_INT_AS_REAL, NULL) : NULL;
    vt_err err;
    char *out = render(src, strlen(src), ctx, &err, NULL);
    CHECKF(out && !strcmp(out, want), "%s\n    got      [%s] %s\n    expected [%s]", src,
           out ? out : "", out ? "" : vt_last_error(), want);
    free(out);
    json_decref(ctx);
}

static void expect_error_opt(const char *src, const tpl_options *o, vt_err want, const char *substr)
{
    vt_err err;
    char *out = NULL;
    tpl_template *t;
    err = tpl_compile(src, strlen(src), &t);
    if (!err) {
        err = tpl_render(t, NULL, o, &out, NULL);
        tpl_destroy(t);
    }
    CHECKF(!out && err == want && strstr(vt_last_error(), substr),
           "%.80s: got %s (%s), want %s containing '%s'", src, out ? "output" : vt_strerror(err),
           out ? out : vt_last_error(), vt_strerror(want), substr);
    free(out);
}

static void expect_error(const char *src, vt_err want, const char *substr)
{
    tpl_options o = opts();
    expect_error_opt(src, &o, want, substr);
}

static void test_language_basics(void)
{
    /* loop variables, else, filters in for, unpacking */
    expect("{% for x in ['a','b','c'] %}{{ loop.index }}{{ x }}{{ '|' if not loop.last }}{% endfor %}",
           NULL, "1a|2b|3c");
    expect("{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }} {% endfor %}", NULL, "x=1 y=2 ");
    expect("{% for x in [1,2,3,4] if x is even %}{{ x }}/{{ loop.length }} {% endfor %}", NULL,
           "2/2 4/2 ");
    expect("{% for x in [] %}a{% else %}none{% endfor %}", NULL, "none");
    /* whitespace control and the oracle's trim_blocks/lstrip_blocks */
    expect("a\n  {% if true %}\n  b\n  {% endif %}\nc", NULL, "a\n  b\nc");
    expect("a  {%- if true -%}  b  {%- endif -%}  c", NULL, "abc");
    expect("x\n", NULL, "x");
    /* namespace, set block, macros with defaults, call/caller */
    expect("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}"
           "{{ ns.n }}",
           NULL, "6");
    expect("{% set x %}[{{ 1 + 1 }}]{% endset %}{{ x }}", NULL, "[2]");
    expect("{% macro m(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ m('A') }}{{ m('A', b='b') }}", NULL,
           "ABAb");
    expect("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}in{% endcall %}", NULL, "<in>");
    /* printing follows JavaScript: booleans, floats, lists and dicts as JSON */
    expect("{{ true }} {{ 1.0 }} {{ 2.50 }} {{ [1, 'a', none] }} {{ {'k': 'v'} }} {{ none }}|", NULL,
           "true 1.0 2.5 [1, \"a\", null] {\"k\": \"v\"} |");
    expect("{{ x|tojson(indent=2) }}", "{\"x\": {\"a\": [1, 2.5], \"b\": {}}}",
           "{\n  \"a\": [\n    1,\n    2.5\n  ],\n  \"b\": {}\n}");
    /* undefined: prints nothing, attribute of it is undefined, arithmetic is an error */
    expect("[{{ nope }}][{{ nope.x.y }}][{{ nope is defined }}]", NULL, "[][][false]");
    expect_error("{{ nope + 1 }}", VT_ERR_FORMAT, "line 1: Cannot perform operation + on undefined");
    /* strings: UTF-16 length, slicing by code point, methods */
    expect("{{ s|length }} {{ s[::-1] }} {{ s.upper() }}", "{\"s\": \"a😊b\"}", "4 b😊a A😊B");
    expect("{{ '  x  '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'x'.replace('x', 'y') }}", NULL,
           "x|[\"a\", \"b\"]|y");
}

static void test_errors_name_construct(void)
{
    expect_error("hello\n{% include 'other.jinja' %}", VT_ERR_FORMAT,
                 "line 2: unsupported statement '{% include %}'");
    expect_error("{% for x in y %}\n\n", VT_ERR_FORMAT, "missing {% endfor %} for the 'for' on line 1");
    expect_error("{{ 1 + }}", VT_ERR_FORMAT, "line 1: unexpected '}}' in an expression");
    expect_error("a\n{{ x|groupby('k') }}", VT_ERR_FORMAT, "line 2: unknown filter 'groupby'");
    expect_error("{{ x is sameish }}", VT_ERR_FORMAT, "Unknown test: sameish");
    expect_error("{{ raise_exception('Only user and assistant roles are supported!') }}",
                 VT_ERR_INVALID, "Only user and assistant roles are supported!");
    /* raise_exception's message is exactly the template's, nothing added */
    vt_err err;
    const char *src = "{% if true %}{{ raise_exception('No system role') }}{% endif %}";
    char *out = render(src, strlen(src), NULL, &err, NULL);
    CHECK(!out && err == VT_ERR_INVALID && !strcmp(vt_last_error(), "No system role"));
    free(out);
}

/* ---------------------------------------------------------------- limits */

static void test_hostile_templates(void)
{
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    /* a loop of loops: stopped by the step limit (default 50M steps, a few
     * seconds; a smaller one here) */
    tpl_options small = {.max_steps = 1000000};
    expect_error_opt("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                     &small, VT_ERR_RANGE, "step limit");
    /* a string doubling each iteration: stopped by the output/string cap */
    expect_error("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(64) %}"
                 "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
                 VT_ERR_RANGE, "exceeds");
    /* unbounded recursion: stopped by the depth limit */
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", VT_ERR_RANGE, "nesting");
    /* a huge range: refused before allocating */
    expect_error("{{ range(1000000000000)|length }}", VT_ERR_RANGE, "range");
    /* deep nesting in the source: a compile error, not a stack overflow */
    char *deep = malloc(200000);
    size_t k = 0;
    k += (size_t)sprintf(deep, "{{ ");
    for (int i = 0; i < 50000; i++)
        deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 50000; i++)
        deep[k++] = ')';
    strcpy(deep + k, " }}");
    expect_error(deep, VT_ERR_FORMAT, "nested more than");
    /* a long chain of operators nests at run time: the depth limit holds */
    k = (size_t)sprintf(deep, "{{ 1");
    for (int i = 0; i < 20000; i++)
        k += (size_t)sprintf(deep + k, " + 1");
    strcpy(deep + k, " }}");
    expect_error(deep, VT_ERR_RANGE, "nesting");
    k = (size_t)sprintf(deep, "{{ x");
    for (int i = 0; i < 20000; i++)
        k += (size_t)sprintf(deep + k, "|trim");
    strcpy(deep + k, " }}");
    expect_error(deep, VT_ERR_RANGE, "nesting");
    free(deep);
    /* a namespace that holds itself renders and frees (no leak under ASan) */
    expect("{% set ns = namespace() %}{% set ns.me = ns %}{% set ns.l = [ns, ns] %}ok", NULL, "ok");
    /* lists nested a million deep are freed without recursion */
    expect("{% set ns = namespace(l=[]) %}{% for i in range(200000) %}{% set ns.l = [ns.l] %}"
           "{% endfor %}{{ ns.l|length }}",
           NULL, "1");
    /* tight limits apply as given */
    tpl_template *t;
    const char *loop = "{% for i in range(1000) %}{{ i }}{% endfor %}";
    CHECK(!tpl_compile(loop, strlen(loop), &t));
    tpl_options o = {.max_steps = 100};
    char *out;
    CHECK_EQ_INT(tpl_render(t, NULL, &o, &out, NULL), VT_ERR_RANGE);
    o = (tpl_options){.max_output = 100};
    CHECK_EQ_INT(tpl_render(t, NULL, &o, &out, NULL), VT_ERR_RANGE);
    o = (tpl_options){.max_memory = 4096};
    CHECK_EQ_INT(tpl_render(t, NULL, &o, &out, NULL), VT_ERR_RANGE);
    CHECK_EQ_INT(tpl_render(t, NULL, NULL, &out, NULL), VT_OK);
    CHECK(out && strlen(out) == 2890);
    free(out);
    tpl_destroy(t);
    double dt = (double)clock() / CLOCKS_PER_SEC - t0;
    CHECKF(dt < 15, "hostile templates took %.1f s", dt);
}

/* ---------------------------------------------------------------- API */

static void test_render_chat(void)
{
    const char *src = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                      "{% if add_generation_prompt %}<assistant>{% endif %}{{ tools|default([])|length }}"
                      "{{ enable_thinking }}";
    tpl_template *t;
    CHECK(!tpl_compile(src, strlen(src), &t));
    json_t *msgs = json_loads("[{\"role\":\"user\",\"content\":\"hi\"}]", 0, NULL);
    json_t *extra = json_loads("{\"tools\": [1, 2], \"enable_thinking\": false}", 0, NULL);
    char *out;
    size_t n;
    CHECK(!tpl_render_chat(t, msgs, true, "<s>", "</s>", extra, NULL, &out, &n));
    CHECK(out && !strcmp(out, "<s><user>hi<assistant>2false") && n == strlen(out));
    free(out);
    CHECK(!tpl_render_chat(t, msgs, false, NULL, NULL, NULL, NULL, &out, NULL));
    CHECK(out && !strcmp(out, "<user>hi0"));
    free(out);
    CHECK_EQ_INT(tpl_render_chat(t, extra, true, NULL, NULL, NULL, NULL, &out, NULL), VT_ERR_INVALID);
    CHECK(!out);
    /* a context key that names a built-in is an error, as in the oracle */
    json_t *bad = json_loads("{\"range\": 1}", 0, NULL);
    CHECK_EQ_INT(tpl_render(t, bad, NULL, &out, NULL), VT_ERR_FORMAT);
    CHECK(strstr(vt_last_error(), "already declared"));
    json_decref(bad);
    json_decref(msgs);
    json_decref(extra);
    tpl_destroy(t);
    tpl_destroy(NULL);
}

static void test_json_quote(void)
{
    size_t n;
    const char *in = "a\"b\\c\n\t\x01\x7f\xc3\xa9\xf0\x9f\x98\x8a";
    char *q = tpl_json_quote(in, strlen(in), &n);
    CHECK(q && !strcmp(q, "\"a\\\"b\\\\c\\n\\t\\u0001\x7f\xc3\xa9\xf0\x9f\x98\x8a\"") && n == strlen(q));
    free(q);
    q = tpl_json_quote("a\0b", 3, &n);
    CHECK(q && !strcmp(q, "\"a\\u0000b\""));
    free(q);
}

static void test_invalid_utf8_source(void)
{
    /* bad bytes read as U+FFFD, as Node reads a file */
    expect("a\xff" "b\xe2\x82{{ 'c\xc3' }}", NULL, "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd");
}

typedef struct {
    tpl_template *t;
    json_t *ctx;
    const char *want;
    int bad;
} thread_job;

static void *render_many(void *arg)
{
    thread_job *j = arg;
    for (int i = 0; i < 200; i++) {
        char *out;
        tpl_options o = {.now = NOW};
        if (tpl_render(j->t, j->ctx, &o, &out, NULL) || strcmp(out, j->want))
            j->bad++;
        else
            free(out);
    }
    return NULL;
}

/* One compiled template rendered by two threads at once. */
static void test_threads_share_template(void)
{
    char *src = test_read_file(LOCAL_DIR "/Qwen-Qwen3-0.6B.jinja", NULL);
    json_t *ctx = load_json(LOCAL_DIR "/ctx-thinking.json");
    char *want = test_read_file(LOCAL_DIR "/Qwen-Qwen3-0.6B.ctx-thinking.expected.json", NULL);
    if (!src || !ctx || !want) {
        test_fail_at(__FILE__, __LINE__, "missing test data in " LOCAL_DIR);
        free(src);
        free(want);
        json_decref(ctx);
        return;
    }
    json_t *wj = json_loads(want, JSON_DECODE_ANY, NULL);
    tpl_template *t;
    CHECK(!tpl_compile(src, strlen(src), &t));
    thread_job jobs[2] = {{t, ctx, json_string_value(wj), 0}, {t, ctx, json_string_value(wj), 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, render_many, &jobs[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(jobs[0].bad + jobs[1].bad, 0);
    tpl_destroy(t);
    json_decref(wj);
    json_decref(ctx);
    free(src);
    free(want);
}

/* ---------------------------------------------------------------- CLI */

static void test_cli(void)
{
    if (!test_need_vitamin())
        return;
    const char *bin = test_vitamin_bin();
    const char *tmp = test_tmpdir();
    char cmd[2048], outp[1024];
    snprintf(outp, sizeof outp, "%s/tpl.out", tmp);
    snprintf(cmd, sizeof cmd, "%s template --help > %s 2>&1", bin, outp);
    if (system(cmd) != 0) {
        test_fail_at(__FILE__, __LINE__, "%s has no template command (stale build?)", bin);
        return;
    }
    snprintf(cmd, sizeof cmd,
             "TZ=UTC %s template --template " LOCAL_DIR "/ibm-granite-granite-3.3-2B-Instruct.jinja"
             " --context " LOCAL_DIR "/conv-basic.json --now %d > %s 2>&1",
             bin, NOW, outp);
    CHECK(system(cmd) == 0);
    char *got = test_read_file(outp, NULL);
    char *want = test_read_file(LOCAL_DIR "/ibm-granite-granite-3.3-2B-Instruct.conv-basic.expected.json", NULL);
    CHECKF(got && want && !strcmp(got, want), "vitamin template printed [%s]", got ? got : "");
    free(got);
    free(want);
    /* the template's own error, non-zero exit */
    snprintf(cmd, sizeof cmd,
             "%s template --template " LOCAL_DIR "/google-gemma-2-2b-it.jinja --context " LOCAL_DIR
             "/conv-korean.json > %s 2>&1",
             bin, outp);
    CHECK(system(cmd) != 0);
    got = test_read_file(outp, NULL);
    CHECKF(got && strstr(got, "System role not supported"), "stderr: %s", got ? got : "");
    free(got);
    /* -m: the template inside a model (its expected rendering made by the
     * oracle from the template text extracted from the GGUF) */
    const char *sh = test_need_shared("`vitamin template -m` on fixture models");
    if (sh) {
        snprintf(cmd, sizeof cmd,
                 "%s template -m %s/fixtures/models/qwen2-dense.Q8_0.gguf --context " LOCAL_DIR
                 "/conv-multiturn.json > %s 2>&1",
                 bin, sh, outp);
        CHECK(system(cmd) == 0);
        got = test_read_file(outp, NULL);
        want = test_read_file(LOCAL_DIR "/gguf-qwen2-dense.Q8_0.conv-multiturn.expected.json", NULL);
        CHECKF(got && want && !strcmp(got, want), "vitamin template -m printed [%s]", got ? got : "");
        free(got);
        free(want);
        snprintf(cmd, sizeof cmd,
                 "%s template -m %s/fixtures/models/llama-dense.f16.gguf --context " LOCAL_DIR
                 "/conv-basic.json > %s 2>&1",
                 bin, sh, outp);
        CHECK(system(cmd) != 0);
        got = test_read_file(outp, NULL);
        CHECKF(got && strstr(got, "no tokenizer.chat_template"), "stderr: %s", got ? got : "");
        free(got);
    }
    /* usage errors */
    snprintf(cmd, sizeof cmd, "%s template --context x.json > %s 2>&1", bin, outp);
    CHECK(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "%s template --template /nonexistent.jinja --context x.json > %s 2>&1",
             bin, outp);
    CHECK(system(cmd) != 0);
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    RUN_TEST(test_shared_fixtures);
    RUN_TEST(test_local_fixtures);
    RUN_TEST(test_local_copy_matches_shared);
    RUN_TEST(test_language_cases);
    RUN_TEST(test_language_basics);
    RUN_TEST(test_errors_name_construct);
    RUN_TEST(test_hostile_templates);
    RUN_TEST(test_render_chat);
    RUN_TEST(test_json_quote);
    RUN_TEST(test_invalid_utf8_source);
    RUN_TEST(test_threads_share_template);
    RUN_TEST(test_cli);
    return test_finish("test_template");
}
