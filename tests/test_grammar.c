/*
 * test_grammar.c - the grammar engine (src/sample/grammar*.c): the GBNF
 * parser (every llama.cpp grammar compiles; errors carry line and column;
 * escapes, classes, repetitions), the matcher (strings accepted and refused,
 * UTF-8 split across steps, completion), and token masks on the Llama-3 and
 * Qwen2 vocabularies checked token by token against a brute-force reference
 * (each token's bytes fed to a cloned state) along random walks; the JSON
 * Schema and regex converters (accepted and refused texts, errors naming
 * the keyword); the sampler hook (smp_params.grammar) on a small vocabulary.
 */
#include <dirent.h>
#include <string.h>

#include "gguf/gguf.h"
#include "sample/sampler.h"
#include "sample/grammar.h"
#include "serve_proc.h"
#include "test.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

static smp_grammar *compile(const char *text)
{
    smp_grammar *g = NULL;
    vt_err e = smp_grammar_compile(SMP_GRAMMAR_GBNF, text, strlen(text), NULL, &g);
    CHECKF(e == VT_OK, "compile: %s\n%s", vt_last_error(), text);
    return g;
}

static bool matches(smp_grammar *g, const char *s)
{
    smp_grammar_state *st = NULL;
    if (smp_grammar_state_create(g, &st))
        return false;
    bool ok = smp_grammar_matches(st, s, strlen(s));
    smp_grammar_state_destroy(st);
    return ok;
}

/* Is s a prefix of some sentence (every byte accepted)? */
static bool prefix_ok(smp_grammar *g, const char *s)
{
    smp_grammar_state *st = NULL;
    if (smp_grammar_state_create(g, &st))
        return false;
    bool ok = smp_grammar_accept_bytes(st, s, strlen(s)) == VT_OK;
    smp_grammar_state_destroy(st);
    return ok;
}

static void test_basic_match(void)
{
    smp_grammar *g = compile("root ::= \"ab\" [c-e]+ (\"x\" | \"yz\")? \"!\"\n");
    if (!g)
        return;
    CHECK(matches(g, "abc!"));
    CHECK(matches(g, "abcdex!"));
    CHECK(matches(g, "abeyz!"));
    CHECK(!matches(g, "ab!"));
    CHECK(!matches(g, "abcx"));
    CHECK(!matches(g, "abcxyz!"));
    CHECK(prefix_ok(g, "abcd"));
    CHECK(!prefix_ok(g, "abf"));
    smp_grammar_unref(g);

    g = compile("root ::= x{2,4} y{3} z{1,} w{0,2}\nx ::= \"a\"\ny ::= [0-9]\nz ::= \"z\"\n"
                "w ::= \"w\"\n");
    if (!g)
        return;
    CHECK(matches(g, "aa123z"));
    CHECK(matches(g, "aaaa123zzzww"));
    CHECK(!matches(g, "a123z"));
    CHECK(!matches(g, "aaaaa123z"));
    CHECK(!matches(g, "aa12z"));
    CHECK(!matches(g, "aa123zwww"));
    smp_grammar_unref(g);

    /* negated classes, escapes, any char, UTF-8 */
    g = compile("root ::= [^a-c\\x00-\\x1F] \"\\u00e9\" . \"\\U0001F600\" [\\]\\-x]\n");
    if (!g)
        return;
    CHECK(matches(g, "d\xc3\xa9z\xf0\x9f\x98\x80]"));
    CHECK(matches(g, "\xe4\xb8\x80\xc3\xa9\xe4\xb8\x80\xf0\x9f\x98\x80-"));
    CHECK(!matches(g, "b\xc3\xa9z\xf0\x9f\x98\x80]"));
    CHECK(!matches(g, "\n\xc3\xa9z\xf0\x9f\x98\x80x!"));
    CHECK(!matches(g, "d\xc3\xa9z\xf0\x9f\x98\x81]"));
    /* an invalid UTF-8 byte is refused even where '.' is allowed */
    CHECK(!prefix_ok(g, "d\xc3\xa9\xff"));
    CHECK(!prefix_ok(g, "d\xc3\xa9\xed\xa0\x80")); /* a surrogate */
    CHECK(!prefix_ok(g, "d\xc3\xa9\xc0\x80"));     /* overlong */
    smp_grammar_unref(g);

    /* comments, newlines inside groups, alternatives on new lines */
    g = compile("# a comment\nroot ::= (\n  \"a\" # inside\n  | \"b\"\n) tail\n"
                "tail ::=\n  \"1\" |\n  \"2\"\n");
    if (!g)
        return;
    CHECK(matches(g, "a1"));
    CHECK(matches(g, "b2"));
    CHECK(!matches(g, "c1"));
    smp_grammar_unref(g);

    /* nullable root: the empty text is complete */
    g = compile("root ::= \"a\"*\n");
    if (!g)
        return;
    CHECK(matches(g, ""));
    CHECK(matches(g, "aaaa"));
    smp_grammar_unref(g);
}

static void test_split_utf8(void)
{
    smp_grammar *g = compile("root ::= [\\u0400-\\u04FF]+ \"!\"\n");
    if (!g)
        return;
    smp_grammar_state *st = NULL;
    CHECK(smp_grammar_state_create(g, &st) == VT_OK);
    const char *s = "\xd0\x96\xd0\x96!"; /* ЖЖ! one byte at a time */
    for (size_t k = 0; k < strlen(s); k++)
        CHECKF(smp_grammar_accept_bytes(st, s + k, 1) == VT_OK, "byte %zu", k);
    CHECK(smp_grammar_accepts_eos(st));
    CHECK(smp_grammar_finished(st));
    /* a lead byte whose characters are all outside the class */
    smp_grammar_state *st2 = NULL;
    CHECK(smp_grammar_state_create(g, &st2) == VT_OK);
    CHECK(smp_grammar_accept_bytes(st2, "\xd0", 1) == VT_OK);
    CHECK(smp_grammar_accept_bytes(st2, "\xe4", 1) == VT_ERR_INVALID);
    smp_grammar_state *c = smp_grammar_state_clone(st2);
    CHECK(c != NULL);
    CHECK(smp_grammar_accept_bytes(c, "\x96", 1) == VT_OK);
    CHECK(!smp_grammar_accepts_eos(c));
    CHECK(smp_grammar_accept_bytes(st2, "\xd0", 1) == VT_ERR_INVALID);
    smp_grammar_state_destroy(c);
    smp_grammar_state_destroy(st2);
    smp_grammar_state_destroy(st);
    smp_grammar_unref(g);
}

static void expect_error(const char *text, const char *needle)
{
    smp_grammar *g = NULL;
    vt_err e = smp_grammar_compile(SMP_GRAMMAR_GBNF, text, strlen(text), NULL, &g);
    CHECKF(e != VT_OK && g == NULL, "accepted: %s", text);
    if (e != VT_OK)
        CHECKF(strstr(vt_last_error(), needle), "error for %s: '%s' lacks '%s'", text,
               vt_last_error(), needle);
    smp_grammar_unref(g);
}

static void test_errors(void)
{
    expect_error("root ::= \"a\" b\n", "undefined rule 'b'");
    expect_error("root ::= \"a\" b\n", "line 1, column 14");
    expect_error("x ::= \"a\"\n", "no 'root' rule");
    expect_error("root ::= \"abc\n", "unterminated string");
    expect_error("root ::= [abc\n", "unterminated character class");
    expect_error("root ::= (\"a\"\n", "expecting ')'");
    expect_error("root ::= \"a\" )\n", "line 1, column 14");
    expect_error("root ::= *\n", "nothing before it");
    expect_error("root ::= \"a\"{3,1}\n", "below the minimum");
    expect_error("root ::= \"a\"{99999}\n", "repetition count");
    expect_error("root ::= root \"a\"\n", "left-recursive");
    expect_error("root ::= x\nx ::= y? root\ny ::= \"b\"\n", "left-recursive");
    expect_error("root ::= \"\\q\"\n", "unknown escape");
    expect_error("root ::= \"\\x4\"\n", "hex digits");
    expect_error("root ::= [z-a]\n", "before its start");
    expect_error("root ::= \"a\"\nroot ::= \"b\"\n", "defined twice");
    expect_error("root = \"a\"\n", "expecting '::='");
    expect_error("\n\nroot ::= \"a\"\n  \"b\"\n", "line 4, column 3");
    expect_error("root ::= \"\xff\"\n", "invalid UTF-8");
    /* deeply nested groups are refused, not a stack overflow */
    char deep[2000] = "root ::= ";
    for (int k = 0; k < 600; k++)
        strcat(deep, "(");
    expect_error(deep, "nested deeper");
}

/* The folder of llama.cpp's grammars (node-llama-cpp's copy), or NULL. */
static const char *grammars_dir(void)
{
    static char buf[1200];
    const char *nd = serve_node_dir("node-llama-cpp");
    if (!nd) {
        test_skip_missing("node-llama-cpp (.ci/node or /root/oracle): llama.cpp's grammars not "
                          "checked");
        return NULL;
    }
    snprintf(buf, sizeof buf, "%s/node_modules/node-llama-cpp/llama/grammars", nd);
    return buf;
}

static void test_llama_grammars(void)
{
    const char *dir = grammars_dir();
    if (!dir)
        return;
    DIR *d = opendir(dir);
    CHECKF(d, "cannot open %s", dir);
    if (!d)
        return;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".gbnf"))
            continue;
        char path[1500];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        size_t len;
        char *text = test_read_file(path, &len);
        CHECKF(text, "read %s", path);
        if (!text)
            continue;
        smp_grammar *g = NULL;
        vt_err e = smp_grammar_compile(SMP_GRAMMAR_GBNF, text, len, NULL, &g);
        CHECKF(e == VT_OK, "%s: %s", de->d_name, vt_last_error());
        if (g && !strcmp(de->d_name, "json.gbnf")) {
            CHECK(matches(g, "{\"a\": [1, 2.5e3, \"x\\u00e9\"], \"b\": {\"c\": null}}"));
            CHECK(matches(g, "{}"));
            CHECK(!matches(g, "[1]"));
            CHECK(!matches(g, "{\"a\" 1}"));
        }
        if (g && !strcmp(de->d_name, "arithmetic.gbnf")) {
            CHECK(matches(g, "1+2*(3-4)=7\n"));
        }
        if (g && !strcmp(de->d_name, "chess.gbnf"))
            CHECK(prefix_ok(g, "1. e4 e5\n2. Nf3"));
        smp_grammar_unref(g);
        free(text);
        n++;
    }
    closedir(d);
    CHECKF(n >= 8, "only %d grammars in %s", n, dir);
}

/* ---- masks on real vocabularies ---- */

static smp_grammar_vocab *load_vocab(const char *name, tok_tokenizer **tok_out)
{
    const char *sh = test_need_shared("grammar masks on real vocabularies");
    if (!sh)
        return NULL;
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/vocab/%s", sh, name);
    if (!test_need_file(path, "grammar masks"))
        return NULL;
    gguf_file *f = NULL;
    tok_tokenizer *t = NULL;
    if (gguf_open(path, &f) || tok_load(f, &t)) {
        test_fail_at(__FILE__, __LINE__, "load %s: %s", path, vt_last_error());
        gguf_close(f);
        return NULL;
    }
    int32_t n = tok_n_vocab(t);
    const char **pieces = malloc(sizeof *pieces * (size_t)n);
    size_t *lens = malloc(sizeof *lens * (size_t)n);
    for (int32_t i = 0; i < n; i++)
        pieces[i] = tok_piece(t, i, false, &lens[i]);
    smp_grammar_vocab *v = NULL;
    vt_err e = smp_grammar_vocab_create(n, pieces, lens, &v);
    CHECKF(e == VT_OK, "vocab: %s", vt_last_error());
    free(pieces);
    free(lens);
    gguf_close(f);
    if (tok_out)
        *tok_out = t;
    else
        tok_destroy(t);
    return v;
}

/* Random walks under g: at every step the mask must equal the brute-force
 * set (each token tried on a clone), and the chosen token is one of it. */
static void walk_and_compare(smp_grammar *g, smp_grammar_vocab *v, int walks, int steps,
                             uint64_t seed)
{
    int32_t n = smp_grammar_vocab_size(v);
    size_t nw = ((size_t)n + 63) / 64;
    uint64_t *mask = malloc(nw * 8);
    int32_t *allowed = malloc(sizeof *allowed * (size_t)n);
    vt_rng rng = {.s = seed};
    for (int w = 0; w < walks; w++) {
        smp_grammar_state *st = NULL;
        CHECK(smp_grammar_state_create(g, &st) == VT_OK);
        for (int k = 0; k < steps && st; k++) {
            int32_t cnt = smp_grammar_mask(st, mask);
            CHECK(cnt >= 0);
            int32_t m = 0, bad = 0;
            for (int32_t t = 0; t < n; t++) {
                bool ok = smp_grammar_can_take(st, t);
                bool in = mask[t >> 6] >> (t & 63) & 1;
                if (ok != in && bad++ < 3)
                    test_fail_at(__FILE__, __LINE__, "walk %d step %d token %d: mask %d, "
                                 "brute force %d", w, k, (int)t, in, ok);
                if (ok)
                    allowed[m++] = t;
            }
            CHECK_EQ_INT(cnt, m);
            if (m == 0 || (smp_grammar_accepts_eos(st) && vt_rng_next(&rng) % 4 == 0))
                break;
            int32_t t = allowed[vt_rng_next(&rng) % (uint64_t)m];
            CHECK(smp_grammar_accept_token(st, t) == VT_OK);
        }
        smp_grammar_state_destroy(st);
    }
    free(mask);
    free(allowed);
}

static const char *json_gbnf =
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "object ::= \"{\" ws ( string \":\" ws value (\",\" ws string \":\" ws value)* )? \"}\" ws\n"
    "array  ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\bfnrt] | \"u\" "
    "[0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] "
    "[1-9]{0,15})? ws\n"
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

static void test_masks_llama3(void)
{
    smp_grammar_vocab *v = load_vocab("ggml-vocab-llama-bpe.gguf", NULL);
    if (!v)
        return;
    smp_grammar *g = NULL;
    CHECK(smp_grammar_compile(SMP_GRAMMAR_GBNF, json_gbnf, strlen(json_gbnf), v, &g) == VT_OK);
    if (g)
        walk_and_compare(g, v, 3, 12, 7);
    smp_grammar_unref(g);
    const char *small = "root ::= (\"ab\" | [0-9]{1,3} | \"\\u00e9\" | \"\\u4e00\")+ \".\"\n";
    CHECK(smp_grammar_compile(SMP_GRAMMAR_GBNF, small, strlen(small), v, &g) == VT_OK);
    if (g)
        walk_and_compare(g, v, 3, 10, 11);
    smp_grammar_unref(g);
    smp_grammar_vocab_destroy(v);
}

static smp_grammar *compile_kind(smp_grammar_kind k, const char *text)
{
    smp_grammar *g = NULL;
    vt_err e = smp_grammar_compile(k, text, text ? strlen(text) : 0, NULL, &g);
    CHECKF(e == VT_OK, "compile %s: %s", text ? text : "(null)", vt_last_error());
    return g;
}

static void test_json_schema(void)
{
    static const struct {
        const char *schema, *yes[4], *no[4];
    } cases[] = {
        {"{\"type\":\"integer\",\"minimum\":-12,\"maximum\":345}",
         {"-12", "0", "345", "99"},
         {"-13", "346", "007", "1.5"}},
        {"{\"type\":\"integer\",\"exclusiveMinimum\":9,\"exclusiveMaximum\":100}",
         {"10", "99", "55", NULL},
         {"9", "100", "-5", NULL}},
        {"{\"type\":\"number\",\"minimum\":1,\"exclusiveMaximum\":3}",
         {"1", "2.999", "1.5", NULL},
         {"3", "0.5", "3.0", NULL}},
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}",
         {"\"ab\"", "\"\\u00e9\\n\"", "\"\xc3\xa9\xc3\xa9\"", NULL},
         {"\"a\"", "\"abcd\"", "\"\\ud800\"", NULL}},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"},\"b\":{"
         "\"type\":\"null\"}},\"required\":[\"b\"]}",
         {"{\"a\":true,\"b\":null}", "{\"b\": null}", "{ \"a\": false, \"b\": null }", NULL},
         {"{\"a\":true}", "{}", "{\"b\":null,\"a\":true}", "{\"b\":null,\"c\":1}"}},
        {"{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"integer\"}},"
         "\"additionalProperties\":{\"type\":\"boolean\"}}",
         {"{\"k\":1,\"kk\":true}", "{\"x\":false}", "{}", NULL},
         {"{\"k\":1,\"k\":true}", "{\"x\":1}", NULL, NULL}},
        {"{\"type\":\"array\",\"items\":{\"enum\":[1,\"a\",null]},\"minItems\":1,"
         "\"maxItems\":2}",
         {"[1]", "[\"a\", null]", "[ null ]", NULL},
         {"[]", "[1,1,1]", "[2]", NULL}},
        {"{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"c\":{\"type\":"
         "\"array\",\"items\":{\"$ref\":\"#/$defs/n\"}}},\"required\":[\"c\"]}},"
         "\"$ref\":\"#/$defs/n\"}",
         {"{\"c\":[]}", "{\"c\":[{\"c\":[]},{\"c\":[{\"c\":[]}]}]}", NULL, NULL},
         {"{\"c\":[{}]}", "{}", NULL, NULL}},
        {"{\"type\":\"string\",\"format\":\"date-time\"}",
         {"\"2024-02-28T23:59:59Z\"", "\"1999-12-31T00:00:00.5+05:30\"", NULL, NULL},
         {"\"2024-02-30T00:00:00Z\"", "\"2024-13-01T00:00:00Z\"", "\"2024-01-01\"", NULL}},
        {"{\"type\":\"string\",\"pattern\":\"^a\\\\d+\\\"$\"}",
         {"\"a12\\\"\"", NULL, NULL, NULL},
         {"\"a\\\"\"", "\"b1\\\"\"", NULL, NULL}},
        {"{\"type\":\"string\",\"format\":\"email\"}",
         {"\"a.b@qq.com\"", "\"x+y@a-b.io\"", NULL, NULL},
         {"\"a@qq-.com\"", "\"a@-q.com\"", "\"@q.com\"", NULL}},
        {"{\"anyOf\":[{\"const\":\"x\"},{\"type\":\"integer\",\"minimum\":0,\"maximum\":"
         "5}]}",
         {"\"x\"", "5", NULL, NULL},
         {"\"y\"", "6", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        smp_grammar *g = compile_kind(SMP_GRAMMAR_JSON_SCHEMA, cases[i].schema);
        if (!g)
            continue;
        for (int k = 0; k < 4; k++) {
            if (cases[i].yes[k])
                CHECKF(matches(g, cases[i].yes[k]), "%s should accept %s", cases[i].schema,
                       cases[i].yes[k]);
            if (cases[i].no[k])
                CHECKF(!matches(g, cases[i].no[k]), "%s should refuse %s", cases[i].schema,
                       cases[i].no[k]);
        }
        CHECK(!smp_grammar_bounded(g) || i != 7); /* the recursive one is unbounded */
        smp_grammar_unref(g);
    }
    /* json_object mode: any object */
    smp_grammar *g = compile_kind(SMP_GRAMMAR_JSON_OBJECT, NULL);
    if (g) {
        CHECK(matches(g, "{\"a\": [1, {\"b\": null}], \"c\": \"d\"}"));
        CHECK(!matches(g, "[1]"));
        CHECK(!matches(g, "\"s\""));
        smp_grammar_unref(g);
    }
    /* what is not supported is named */
    static const struct {
        const char *schema, *needle;
        vt_err e;
    } bad[] = {
        {"{\"type\":\"array\",\"uniqueItems\":true}", "'uniqueItems'", VT_ERR_UNSUPPORTED},
        {"{\"properties\":{\"a\":{\"not\":{}}}}", "/properties/a: keyword 'not'",
         VT_ERR_UNSUPPORTED},
        {"{\"type\":\"string\",\"format\":\"hostname\"}", "format 'hostname'",
         VT_ERR_UNSUPPORTED},
        {"{\"$ref\":\"http://x/y.json\"}", "only local references", VT_ERR_UNSUPPORTED},
        {"{\"$ref\":\"#/$defs/missing\"}", "points to nothing", VT_ERR_FORMAT},
        {"{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "may match the same",
         VT_ERR_UNSUPPORTED},
        {"{\"type\":\"number\",\"minimum\":-1.5}", "minimum/maximum on a number",
         VT_ERR_UNSUPPORTED},
        {"{\"type\":\"strin\"}", "unknown type 'strin'", VT_ERR_FORMAT},
        {"{\"type\":", "not valid JSON", VT_ERR_FORMAT},
        {"{\"type\":\"string\",\"pattern\":\"(?=a)\"}", "lookaround", VT_ERR_UNSUPPORTED},
        {"false", "matches nothing", VT_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *gbnf = NULL;
        vt_err e = smp_json_schema_to_gbnf(bad[i].schema, strlen(bad[i].schema), &gbnf);
        CHECKF(e == bad[i].e && !gbnf, "%s: error %d, expected %d", bad[i].schema, e, bad[i].e);
        if (e)
            CHECKF(strstr(vt_last_error(), bad[i].needle), "%s: '%s' lacks '%s'", bad[i].schema,
                   vt_last_error(), bad[i].needle);
        free(gbnf);
    }
}

static void test_regex(void)
{
    static const struct {
        const char *re, *yes[3], *no[3];
    } cases[] = {
        {"^[A-Z]{2}-\\d{3,5}$", {"AB-123", "ZZ-00000", NULL}, {"A-123", "AB-12", "ab-123"}},
        {"(cat|dog)s?", {"cat", "dogs", NULL}, {"cats!", "do", NULL}},
        {"a.c", {"abc", "a-c", NULL}, {"a\nc", "ac", NULL}},
        {"[^a-c]+x*", {"dxx", "\xc3\xa9", NULL}, {"a", "", NULL}},
        {"(?:ab){2}|\\w\\s\\W", {"abab", "z !", NULL}, {"ab", "zz!", NULL}},
        {"x{2,}y?", {"xx", "xxxxy", NULL}, {"x", "xyy", NULL}},
        {"\\x41\\u00e9\\.\\*", {"A\xc3\xa9.*", NULL, NULL}, {"A\xc3\xa9x*", NULL, NULL}},
        {"a{,3}", {"a{,3}", NULL, NULL}, {"aaa", NULL, NULL}}, /* not a quantifier: literal */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        smp_grammar *g = compile_kind(SMP_GRAMMAR_REGEX, cases[i].re);
        if (!g)
            continue;
        for (int k = 0; k < 3; k++) {
            if (cases[i].yes[k])
                CHECKF(matches(g, cases[i].yes[k]), "/%s/ should accept '%s'", cases[i].re,
                       cases[i].yes[k]);
            if (cases[i].no[k])
                CHECKF(!matches(g, cases[i].no[k]), "/%s/ should refuse '%s'", cases[i].re,
                       cases[i].no[k]);
        }
        smp_grammar_unref(g);
    }
    static const char *const bad[][2] = {
        {"(a", "without its ')'"},  {"a)", "without its '('"},  {"\\1", "back-references"},
        {"\\bx", "word boundaries"}, {"a^b", "'^' is supported only"}, {"*a", "nothing to repeat"},
        {"[b-a]", "out of order"},   {"a**", "after a quantifier"}, {"(?i)a", "not supported"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *gbnf = NULL;
        vt_err e = smp_regex_to_gbnf(bad[i][0], strlen(bad[i][0]), &gbnf);
        CHECKF(e != VT_OK && !gbnf, "/%s/ accepted", bad[i][0]);
        if (e)
            CHECKF(strstr(vt_last_error(), bad[i][1]), "/%s/: '%s' lacks '%s'", bad[i][0],
                   vt_last_error(), bad[i][1]);
        free(gbnf);
    }
}

/* The sampler hook on a vocabulary of single characters plus a few words
 * and an end token: every sampled sequence follows the grammar, the end
 * token comes exactly when it is complete, and the sequence ends when
 * nothing can follow. */
static void test_sampler_hook(void)
{
    static const char *const extra[] = {"ab", "ba", "abc", "\xc3\xa9"};
    enum { NB = 128, NV = NB + 4 + 1 };
    const char *pieces[NV];
    size_t lens[NV];
    static char bytes[NB];
    for (int b = 0; b < NB; b++) {
        bytes[b] = (char)b;
        pieces[b] = &bytes[b];
        lens[b] = 1;
    }
    for (int k = 0; k < 4; k++) {
        pieces[NB + k] = extra[k];
        lens[NB + k] = strlen(extra[k]);
    }
    pieces[NV - 1] = "";
    lens[NV - 1] = 0;
    int32_t end = NV - 1;
    smp_grammar_vocab *v = NULL;
    CHECK(smp_grammar_vocab_create(NV, pieces, lens, &v) == VT_OK);
    if (!v)
        return;
    const char *text = "root ::= (\"a\" | \"b\")+ (\"c\" | \"\u00e9\")?\n";
    smp_grammar *g = NULL;
    CHECK(smp_grammar_compile(SMP_GRAMMAR_GBNF, text, strlen(text), v, &g) == VT_OK);
    float logits[NV];
    vt_rng rng = {.s = 5};
    int ended_eos = 0, ended_done = 0;
    for (int run = 0; run < 200 && g; run++) {
        smp_params p = smp_params_default();
        p.seed = (uint64_t)run;
        p.grammar = g;
        p.max_tokens = 40;
        smp_state *s = NULL;
        CHECK(smp_create(&p, NV, &end, 1, &s) == VT_OK);
        smp_grammar_state *ref = NULL;
        CHECK(smp_grammar_state_create(g, &ref) == VT_OK);
        char out[256];
        size_t n = 0;
        for (int k = 0; k < 40 && s; k++) {
            for (int i = 0; i < NV; i++)
                logits[i] = vt_rng_uniform(&rng) * 4;
            logits[end] += 1;
            int32_t t = smp_sample(s, logits, NV, NULL, 0, NULL);
            CHECKF(t >= 0, "sample: %s", vt_last_error());
            if (t < 0)
                break;
            if (t == end) {
                CHECK(smp_grammar_accepts_eos(ref));
            } else {
                CHECKF(smp_grammar_accept_token(ref, t) == VT_OK, "token %d refused", (int)t);
                memcpy(out + n, pieces[t], lens[t]);
                n += lens[t];
            }
            smp_emit em;
            CHECK(smp_accept(s, t, t == end ? NULL : pieces[t], t == end ? 0 : lens[t], &em) ==
                  VT_OK);
            if (em.finish != SMP_CONTINUE) {
                CHECK(em.finish == SMP_FINISH_EOS);
                if (t == end)
                    ended_eos++;
                else {
                    ended_done++;
                    CHECK(smp_grammar_finished(ref));
                }
                break;
            }
        }
        CHECKF(smp_grammar_matches(ref, "", 0) || n == 0, "output '%.*s' is incomplete", (int)n,
               out);
        smp_grammar_state_destroy(ref);
        smp_destroy(s);
    }
    CHECK(ended_eos > 0);
    CHECK(ended_done > 0); /* "c" and "é" leave nothing to follow */
    /* a grammar for another vocabulary size is refused */
    smp_params p = smp_params_default();
    p.grammar = g;
    smp_state *s = NULL;
    CHECK(smp_create(&p, NV + 1, &end, 1, &s) == VT_ERR_INVALID && !s);
    /* nothing allowed: a clear error */
    const char *dead = "root ::= \"\\x80\"\n"; /* a lone continuation byte: no token */
    smp_grammar *gd = NULL;
    CHECK(smp_grammar_compile(SMP_GRAMMAR_GBNF, dead, strlen(dead), v, &gd) == VT_OK);
    p.grammar = gd;
    CHECK(smp_create(&p, NV, &end, 1, &s) == VT_OK);
    if (s) {
        for (int i = 0; i < NV; i++)
            logits[i] = 0;
        CHECK(smp_sample(s, logits, NV, NULL, 0, NULL) < 0);
        CHECKF(strstr(vt_last_error(), "grammar"), "%s", vt_last_error());
    }
    smp_destroy(s);
    smp_grammar_unref(gd);
    smp_grammar_unref(g);
    smp_grammar_vocab_destroy(v);
}

static void test_masks_qwen2(void)
{
    smp_grammar_vocab *v = load_vocab("ggml-vocab-qwen2.gguf", NULL);
    if (!v)
        return;
    char *gbnf = NULL;
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
                         "\"maxLength\":6},\"n\":{\"type\":\"integer\",\"minimum\":-5,"
                         "\"maximum\":500},\"t\":{\"enum\":[\"\u4e00\u4e8c\",\"x\"]}},"
                         "\"required\":[\"name\",\"n\",\"t\"]}";
    smp_grammar *g = NULL;
    CHECK(smp_grammar_vocab_get(v, SMP_GRAMMAR_JSON_SCHEMA, schema, strlen(schema), &g) == VT_OK);
    if (g)
        walk_and_compare(g, v, 3, 14, 3);
    smp_grammar *g2 = NULL; /* the cache gives the same compiled grammar */
    CHECK(smp_grammar_vocab_get(v, SMP_GRAMMAR_JSON_SCHEMA, schema, strlen(schema), &g2) == VT_OK);
    CHECK(g2 == g);
    smp_grammar_unref(g2);
    smp_grammar_unref(g);
    free(gbnf);
    smp_grammar_vocab_destroy(v);
}

int main(void)
{
    RUN_TEST(test_basic_match);
    RUN_TEST(test_split_utf8);
    RUN_TEST(test_errors);
    RUN_TEST(test_llama_grammars);
    RUN_TEST(test_masks_llama3);
    RUN_TEST(test_masks_qwen2);
    RUN_TEST(test_json_schema);
    RUN_TEST(test_regex);
    RUN_TEST(test_sampler_hook);
    return test_finish("test_grammar");
}
