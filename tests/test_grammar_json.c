/*
 * test_grammar_json.c - grammar-constrained generation end to end: JSON
 * Schemas (tests/grammar/schemas.json, vitamin's own, plus the schemas of
 * the json-schema-test-suite npm package that ajv compiles) converted to
 * grammars, many seeded completions of each generated through the engine on
 * a random-weight model with the Llama-3 vocabulary (so the grammar does
 * all the work), each output validated by ajv (tests/grammar/validate.mjs).
 * A bounded schema (finite language) must end by itself: hitting max_tokens
 * fails there. Suite schemas the converter does not support must be refused
 * with VT_ERR_UNSUPPORTED or VT_ERR_FORMAT naming the problem (listed).
 *
 * Then every grammar of llama.cpp's grammars/ folder generates too, and
 * llama.cpp's own grammar parser (node-llama-cpp's LlamaGrammar,
 * tests/grammar/llama_check.mjs) judges each output: a complete one as a
 * whole text, one cut at max_tokens token by token through llama.cpp's
 * grammar state on the same model (every token must be one llama.cpp's
 * sampler could have allowed).
 *
 * VT_GRAMMAR_GENS sets the completions per schema: 40 in the suite (about a
 * minute on 2 cores; 10 under AddressSanitizer), 200 with `make test-grammar`; VT_GRAMMAR_SCHEMAS
 * limits the number of schemas (for quick runs).
 */
#include <dirent.h>
#include <jansson.h>
#include <string.h>
#include <time.h>

#include "sample/grammar.h"
#include "serve_proc.h"
#include "test.h"
#include "util/util.h"
#include "vitamin.h"

static char model_path[600];
static const char *node_dir;

static bool make_model(void)
{
    if (model_path[0])
        return true;
    const char *sh = test_need_shared("grammar-constrained generation");
    if (!sh || !test_need_vitamin())
        return false;
    char vocab[700], cmd[2048];
    snprintf(vocab, sizeof vocab, "%s/fixtures/vocab/ggml-vocab-llama-bpe.gguf", sh);
    if (!test_need_file(vocab, "grammar-constrained generation"))
        return false;
    snprintf(model_path, sizeof model_path, "%s/l3-tiny.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s gen-model --arch llama --vocab %s -o %s --dim 32 --layers 1 "
             "--heads 2 --ff 64 --tied --type f16 > /dev/null", test_vitamin_bin(), vocab, model_path);
    int rc = system(cmd);
    if (rc != 0) {
        test_fail_at(__FILE__, __LINE__, "`%s` exited with %d", cmd, rc);
        model_path[0] = 0;
        return false;
    }
    return true;
}

static bool need_node(const char *pkg)
{
    if (!serve_have_node()) {
        test_skip_missing("node is not installed: outputs not validated");
        return false;
    }
    node_dir = serve_node_dir(pkg);
    if (!node_dir) {
        test_skip_missing("the npm package %s (install tests/serve/package.json into .ci/node)",
                          pkg);
        return false;
    }
    return true;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct {
    vt_request *r;
    int32_t n;
    char **text; /* [n] */
    size_t *len;
    json_t **toks; /* [n] token ids */
    vt_finish *fin;
    bool done, error;
    char err[300];
} gen_req;

static void append(char **s, size_t *n, const char *t, size_t l)
{
    if (!l)
        return;
    char *ns = realloc(*s, *n + l + 1);
    if (!ns)
        return;
    memcpy(ns + *n, t, l);
    *n += l;
    ns[*n] = 0;
    *s = ns;
}

static void drain(gen_req *q)
{
    vt_event ev;
    while (!q->done && vt_request_next(q->r, &ev, 0) == 1) {
        if (ev.kind == VT_EV_TOKEN || ev.kind == VT_EV_FINISH)
            append(&q->text[ev.index], &q->len[ev.index], ev.text, ev.len);
        if (ev.kind == VT_EV_TOKEN && ev.token != 128001 && ev.token != 128009)
            json_array_append_new(q->toks[ev.index], json_integer(ev.token));
        if (ev.kind == VT_EV_FINISH)
            q->fin[ev.index] = ev.finish;
        if (ev.kind == VT_EV_ERROR) {
            q->error = true;
            snprintf(q->err, sizeof q->err, "%s", ev.text);
        }
        if (ev.kind == VT_EV_DONE)
            q->done = true;
    }
}

/* Generates gens completions under (kind, text) in batches of up to 50
 * per request, all requests at once; writes one JSON line per output to f
 * ({"case": idx, "out": ..., "finish": ...}). Returns false (after a
 * failure) if the engine fails; *lengths counts max_tokens endings. */
static bool generate(vt_engine *e, vt_grammar_kind kind, const char *text, int gens, int idx,
                     int max_tokens, uint64_t seed, FILE *f, int *lengths, int *stops,
                     float eos_bias)
{
    /* Llama-3's end tokens, favoured with eos_bias where the grammar allows
     * them: outputs then end as soon as they are complete */
    vt_logit_bias bias[2] = {{128001, eos_bias}, {128009, eos_bias}};
    int n_req = (gens + 49) / 50;
    gen_req *q = calloc((size_t)n_req, sizeof *q);
    int32_t prompt[2] = {128000, 1734}; /* <|begin_of_text|> and a word */
    bool ok = true;
    for (int i = 0; i < n_req; i++) {
        q[i].n = VT_MIN(50, gens - i * 50);
        q[i].text = calloc((size_t)q[i].n, sizeof *q[i].text);
        q[i].len = calloc((size_t)q[i].n, sizeof *q[i].len);
        q[i].fin = calloc((size_t)q[i].n, sizeof *q[i].fin);
        q[i].toks = calloc((size_t)q[i].n, sizeof *q[i].toks);
        for (int32_t c = 0; c < q[i].n; c++)
            q[i].toks[c] = json_array();
        vt_request_params p = vt_request_params_default();
        p.prompt = prompt;
        p.n_prompt = 2;
        p.n = q[i].n;
        p.max_tokens = max_tokens;
        p.seed = seed + (uint64_t)i * 1000;
        p.grammar_kind = kind;
        p.grammar = text;
        if (eos_bias != 0) {
            p.logit_bias = bias;
            p.n_logit_bias = 2;
        }
        if (vt_submit(e, &p, &q[i].r)) {
            test_fail_at(__FILE__, __LINE__, "case %d: vt_submit: %s", idx, vt_last_error());
            ok = false;
        }
    }
    bool busy = ok;
    while (busy) {
        if (vt_engine_step(e, &busy)) {
            test_fail_at(__FILE__, __LINE__, "step: %s", vt_last_error());
            ok = false;
            break;
        }
        for (int i = 0; i < n_req; i++)
            if (q[i].r)
                drain(&q[i]);
    }
    for (int i = 0; i < n_req; i++) {
        if (q[i].r)
            drain(&q[i]);
        if (q[i].r && (!q[i].done || q[i].error)) {
            test_fail_at(__FILE__, __LINE__, "case %d: request %d %s: %s", idx, i,
                         q[i].error ? "failed" : "did not end", q[i].err);
            ok = false;
        }
        for (int32_t c = 0; c < q[i].n; c++) {
            const char *fin = q[i].fin[c] == VT_FINISH_LENGTH ? "length" : "stop";
            if (q[i].fin[c] == VT_FINISH_LENGTH)
                (*lengths)++;
            else if (q[i].fin[c] == VT_FINISH_EOS || q[i].fin[c] == VT_FINISH_STOP)
                (*stops)++;
            json_t *o = json_pack("{s:i,s:s%,s:s,s:O}", "case", idx, "out",
                                  q[i].text[c] ? q[i].text[c] : "", q[i].len[c], "finish", fin,
                                  "tokens", q[i].toks[c]);
            if (!o && q[i].fin[c] != VT_FINISH_LENGTH) {
                test_fail_at(__FILE__, __LINE__, "case %d: a complete output that is not UTF-8",
                             idx);
                ok = false;
            }
            if (!o) /* cut in the middle of a character at max_tokens */
                o = json_pack("{s:i,s:s,s:s,s:O}", "case", idx, "out", "", "finish", fin,
                              "tokens", q[i].toks[c]);
            char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
            if (line && f)
                fprintf(f, "%s\n", line);
            free(line);
            json_decref(o);
            json_decref(q[i].toks[c]);
            free(q[i].text[c]);
        }
        free(q[i].toks);
        free(q[i].text);
        free(q[i].len);
        free(q[i].fin);
        vt_request_free(q[i].r);
    }
    free(q);
    return ok;
}

/* Under AddressSanitizer everything runs several times slower: fewer
 * generations by default there (the environment still decides). */
#if defined(__SANITIZE_ADDRESS__)
#define SAN_SCALE 4
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAN_SCALE 4
#endif
#endif
#ifndef SAN_SCALE
#define SAN_SCALE 1
#endif

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static vt_engine *open_engine(void)
{
    vt_engine_config cfg = {.model_path = model_path, .kv_tokens = 32768, .max_batch_tokens = 512,
                            .max_seqs = 256, .manual_step = true,
                            .n_threads = env_int("VT_ENGINE_THREADS", 0)};
    vt_engine *e = vt_engine_create(&cfg);
    CHECKF(e, "vt_engine_create: %s", vt_last_error());
    return e;
}

static void test_json_schemas(void)
{
    if (!make_model() || !need_node("ajv"))
        return;
    /* the cases: ours, then the suite's */
    char cmd[2400], suite_path[700], cases_path[700], out_path[700];
    snprintf(suite_path, sizeof suite_path, "%s/suite.json", test_tmpdir());
    snprintf(cmd, sizeof cmd, "VT_NODE_DIR='%s' node tests/grammar/suite.mjs > %s", node_dir,
             suite_path);
    int rc = system(cmd);
    CHECKF(rc == 0, "`%s`: %d", cmd, rc);
    json_error_t je;
    json_t *ours = json_load_file("tests/grammar/schemas.json", 0, &je);
    json_t *suite = json_load_file(suite_path, 0, &je);
    CHECKF(ours && json_is_array(ours), "tests/grammar/schemas.json: %s", je.text);
    CHECKF(suite && json_is_array(suite), "%s: %s", suite_path, je.text);
    if (!ours || !suite) {
        json_decref(ours);
        json_decref(suite);
        return;
    }
    json_t *cases = json_array();
    int n_ours = 0, n_suite = 0, n_refused = 0;
    size_t i;
    json_t *c;
    json_t *all = json_copy(ours);
    json_array_extend(all, suite);
    int limit = env_int("VT_GRAMMAR_SCHEMAS", 1 << 30);
    json_array_foreach(all, i, c) {
        char *schema = json_dumps(json_object_get(c, "schema"), JSON_COMPACT | JSON_ENCODE_ANY);
        const char *name = json_string_value(json_object_get(c, "name"));
        char *gbnf = NULL;
        vt_err e = smp_json_schema_to_gbnf(schema, strlen(schema), &gbnf);
        bool is_suite = i >= json_array_size(ours);
        if (e) {
            CHECKF(is_suite, "%s: %s", name, vt_last_error());
            CHECKF(e == VT_ERR_UNSUPPORTED || e == VT_ERR_FORMAT, "%s: error %d: %s", name, e,
                   vt_last_error());
            fprintf(stderr, "    refused %s: %s\n", name, vt_last_error());
            n_refused++;
        } else if ((int)json_array_size(cases) < limit) {
            json_array_append(cases, c);
            n_ours += !is_suite;
            n_suite += is_suite;
        }
        free(gbnf);
        free(schema);
    }
    json_decref(all);
    fprintf(stderr, "    %d schemas of ours, %d of the suite (%d suite schemas refused)\n", n_ours,
            n_suite, n_refused);
    CHECKF(n_ours + n_suite >= 50 || limit < 50, "only %d schemas", n_ours + n_suite);
    snprintf(cases_path, sizeof cases_path, "%s/cases.json", test_tmpdir());
    snprintf(out_path, sizeof out_path, "%s/outputs.jsonl", test_tmpdir());
    json_dump_file(cases, cases_path, JSON_COMPACT);
    vt_engine *e = open_engine();
    FILE *f = fopen(out_path, "w");
    int gens = env_int("VT_GRAMMAR_GENS", 40 / SAN_SCALE), total_len = 0, total_stop = 0;
    double t0 = now();
    json_array_foreach(cases, i, c) {
        if (!e || !f)
            break;
        char *schema = json_dumps(json_object_get(c, "schema"), JSON_COMPACT | JSON_ENCODE_ANY);
        const char *name = json_string_value(json_object_get(c, "name"));
        char *gbnf = NULL;
        smp_grammar *g = NULL;
        bool bounded = false;
        if (!smp_json_schema_to_gbnf(schema, strlen(schema), &gbnf) &&
            !smp_grammar_compile(SMP_GRAMMAR_GBNF, gbnf, strlen(gbnf), NULL, &g))
            bounded = smp_grammar_bounded(g);
        smp_grammar_unref(g);
        free(gbnf);
        int lengths = 0, stops = 0;
        /* bounded: room to end by itself; unbounded: short */
        generate(e, VT_GRAMMAR_JSON_SCHEMA, schema, gens, (int)i, bounded ? 256 : 32, 1000 + i,
                 f, &lengths, &stops, 0);
        CHECKF(!bounded || lengths == 0, "%s: a bounded schema, but %d of %d outputs reached "
               "max_tokens", name, lengths, gens);
        total_len += lengths;
        total_stop += stops;
        free(schema);
    }
    double secs = now() - t0;
    if (f)
        fclose(f);
    vt_engine_destroy(e);
    fprintf(stderr, "    %zu schemas x %d generations in %.1f s: %d ended by the grammar, %d at "
            "max_tokens (unbounded schemas)\n", json_array_size(cases), gens, secs, total_stop,
            total_len);
    snprintf(cmd, sizeof cmd, "VT_NODE_DIR='%s' node tests/grammar/validate.mjs %s %s > %s.log "
             "2>&1", node_dir, cases_path, out_path, out_path);
    rc = system(cmd);
    char logp[800];
    snprintf(logp, sizeof logp, "%s.log", out_path);
    size_t ll;
    char *log = test_read_file(logp, &ll);
    if (rc != 0 || !log || test_ci() || getenv("VT_VERBOSE"))
        fprintf(stderr, "%s", log ? log : "(no log)\n");
    else if (log) {
        const char *last = strstr(log, "validate.mjs:");
        fprintf(stderr, "    %s", last ? last : "");
    }
    CHECKF(rc == 0, "ajv refused outputs (see above)");
    free(log);
    json_decref(cases);
    json_decref(ours);
    json_decref(suite);
}

/* Every grammar of llama.cpp's grammars/ folder: outputs generated under
 * it, and llama.cpp's own parser judging the complete ones. */
static void test_llama_grammars(void)
{
    if (!make_model() || !need_node("node-llama-cpp"))
        return;
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/node_modules/node-llama-cpp/llama/grammars", node_dir);
    DIR *d = opendir(dir);
    CHECKF(d, "cannot open %s", dir);
    if (!d)
        return;
    char *names[64];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 64) {
        size_t l = strlen(de->d_name);
        if (l > 5 && !strcmp(de->d_name + l - 5, ".gbnf"))
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    CHECKF(n >= 8, "only %d grammars in %s", n, dir);
    vt_engine *e = open_engine();
    json_t *cases = json_array();
    char out_path[700], cases_path[700];
    snprintf(out_path, sizeof out_path, "%s/llama-outputs.jsonl", test_tmpdir());
    snprintf(cases_path, sizeof cases_path, "%s/llama-cases.json", test_tmpdir());
    int gens = env_int("VT_GRAMMAR_LLAMA_GENS", 30 / SAN_SCALE);
    for (int k = 0; k < n && e; k++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        size_t len;
        char *text = test_read_file(path, &len);
        CHECKF(text, "read %s", path);
        if (!text)
            continue;
        FILE *f = fopen(out_path, "w");
        int lengths = 0, stops = 0;
        generate(e, VT_GRAMMAR_GBNF, text, gens, k, 128, 77 + (uint64_t)k, f, &lengths, &stops,
                 20);
        if (f)
            fclose(f);
        /* the complete outputs go to llama.cpp */
        json_t *texts = json_array(), *seqs = json_array();
        FILE *in = fopen(out_path, "r");
        char line[1 << 16];
        while (in && fgets(line, sizeof line, in)) {
            json_t *o = json_loads(line, 0, NULL);
            if (o && !strcmp(json_string_value(json_object_get(o, "finish")), "stop"))
                json_array_append(texts, json_object_get(o, "out"));
            else if (o)
                json_array_append(seqs, json_object_get(o, "tokens"));
            json_decref(o);
        }
        if (in)
            fclose(in);
        fprintf(stderr, "    %s: %d of %d outputs complete (the rest reached max_tokens 128)\n",
                names[k], stops, gens);
        json_array_append_new(cases, json_pack("{s:s,s:s,s:o,s:o}", "name", names[k], "grammar",
                                               text, "texts", texts, "seqs", seqs));
        free(text);
    }
    vt_engine_destroy(e);
    json_dump_file(cases, cases_path, JSON_COMPACT);
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "VT_NODE_DIR='%s' node tests/grammar/llama_check.mjs %s %s > %s.log "
             "2>&1", node_dir, cases_path, model_path, cases_path);
    int rc = system(cmd);
    char logp[800];
    snprintf(logp, sizeof logp, "%s.log", cases_path);
    size_t ll;
    char *log = test_read_file(logp, &ll);
    for (char *line = log ? strtok(log, "\n") : NULL; line; line = strtok(NULL, "\n"))
        fprintf(stderr, "    %s\n", line);
    free(log);
    CHECKF(rc == 0, "llama.cpp refused outputs (see above)");
    json_decref(cases);
    for (int k = 0; k < n; k++)
        free(names[k]);
}

/* vt_submit refuses a grammar that does not compile, with the compiler's
 * message; `vitamin run --regex` / --json-schema / --grammar constrain the
 * CLI's output. */
static void test_submit_and_cli(void)
{
    if (!make_model())
        return;
    vt_engine *e = open_engine();
    if (!e)
        return;
    int32_t prompt[2] = {128000, 1734};
    vt_request_params p = vt_request_params_default();
    p.prompt = prompt;
    p.n_prompt = 2;
    p.max_tokens = 8;
    p.grammar_kind = VT_GRAMMAR_GBNF;
    p.grammar = "root ::= \"a\" undefined-rule\n";
    vt_request *r = NULL;
    CHECK(vt_submit(e, &p, &r) == VT_ERR_INVALID && !r);
    CHECKF(strstr(vt_last_error(), "undefined rule 'undefined-rule'"), "%s", vt_last_error());
    p.grammar_kind = VT_GRAMMAR_JSON_SCHEMA;
    p.grammar = "{\"type\":\"array\",\"uniqueItems\":true}";
    CHECK(vt_submit(e, &p, &r) == VT_ERR_INVALID && !r);
    CHECKF(strstr(vt_last_error(), "uniqueItems"), "%s", vt_last_error());
    p.grammar_kind = VT_GRAMMAR_REGEX;
    p.grammar = NULL;
    CHECK(vt_submit(e, &p, &r) == VT_ERR_INVALID && !r);
    vt_engine_destroy(e);

    char cmd[2048], schema_path[700];
    snprintf(schema_path, sizeof schema_path, "%s/cli-schema.json", test_tmpdir());
    FILE *f = fopen(schema_path, "w");
    if (f) {
        fputs("{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"}},"
              "\"required\":[\"ok\"]}", f);
        fclose(f);
    }
    static const char *const runs[][2] = {
        {"--regex '[0-9]{3}-[a-z]{2}'", "regex"},
        {"--json-schema SCHEMA", "schema"},
    };
    for (int k = 0; k < 2; k++) {
        char opt[800];
        snprintf(opt, sizeof opt, "%s", runs[k][0]);
        char *at = strstr(opt, "SCHEMA");
        if (at)
            snprintf(at, sizeof opt - (size_t)(at - opt), "%s", schema_path);
        snprintf(cmd, sizeof cmd, "%s run -m %s -p hello -n 64 --seed %d -t 1 %s 2>/dev/null",
                 test_vitamin_bin(), model_path, 3 + k, opt);
        int status = 0;
        char *out = serve_capture(cmd, &status);
        CHECKF(out && status == 0, "`%s`: status %d", cmd, status);
        if (out && k == 0) {
            bool good = strlen(out) == 6;
            for (int i = 0; i < 6 && good; i++)
                good = i < 3 ? (out[i] >= '0' && out[i] <= '9')
                             : i == 3 ? out[i] == '-' : (out[i] >= 'a' && out[i] <= 'z');
            CHECKF(good, "--regex output '%s'", out);
        }
        if (out && k == 1) {
            json_error_t je;
            json_t *v = json_loads(out, 0, &je);
            CHECKF(v && json_is_boolean(json_object_get(v, "ok")), "--json-schema output '%s'",
                   out);
            json_decref(v);
        }
        free(out);
    }
    snprintf(cmd, sizeof cmd, "%s run -m %s -p hello -n 4 --regex '(' > /dev/null 2>&1",
             test_vitamin_bin(), model_path);
    CHECK(system(cmd) != 0);
}

int main(void)
{
    RUN_TEST(test_submit_and_cli);
    RUN_TEST(test_json_schemas);
    RUN_TEST(test_llama_grammars);
    return test_finish("test_grammar_json");
}
