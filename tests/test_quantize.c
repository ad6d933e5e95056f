/*
 * test_quantize.c - `vitamin quantize` against llama.cpp's quantizer, byte for
 * byte. For each model of tests/data/quantize/models.txt (made here with
 * `vitamin gen-model` and the 256-token vocabulary next to it) and each
 * listed type, vitamin's output file must be the file llama.cpp's
 * llama_model_quantize wrote for the same input (no importance matrix):
 * tools/make_quant_refs.sh recorded its SHA-256, and per tensor its name,
 * type, offset and data hash (plus hashes of 16 KiB chunks) in NAME.json.
 * A mismatch is explained: metadata keys or general.file_type that differ,
 * and per tensor a different name/order, type or offset, or data that differ
 * (in how many chunks, so roughly how many blocks). The input's hash is
 * checked first, so that a change in gen-model is not taken for a quantizer
 * bug. Needs only the vitamin binary; nothing of llama.cpp.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "test.h"
#include "util/util.h"

#define DIR "tests/data/quantize"
#define MAX_REPORT 8 /* tensor lines printed per mismatching file */

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------ */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static inline uint32_t ror(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], s[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(s, h, sizeof s);
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = s[7] + (ror(s[4], 6) ^ ror(s[4], 11) ^ ror(s[4], 25)) +
                      ((s[4] & s[5]) ^ (~s[4] & s[6])) + K256[i] + w[i];
        uint32_t t2 = (ror(s[0], 2) ^ ror(s[0], 13) ^ ror(s[0], 22)) +
                      ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
        memmove(s + 1, s, 7 * sizeof s[0]);
        s[4] += t1;
        s[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++)
        h[i] += s[i];
}

/* The SHA-256 of n bytes as 64 lowercase hex digits (out: 65 bytes). */
static void sha256_hex(const void *data, size_t n, char out[65])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const uint8_t *p = data;
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        sha256_block(h, p + i);
    uint8_t tail[128] = {0};
    size_t r = n - i, tn = r + 9 <= 64 ? 64 : 128;
    memcpy(tail, p + i, r);
    tail[r] = 0x80;
    for (int k = 0; k < 8; k++)
        tail[tn - 1 - k] = (uint8_t)(((uint64_t)n * 8) >> (8 * k));
    sha256_block(h, tail);
    if (tn == 128)
        sha256_block(h, tail + 64);
    for (int k = 0; k < 8; k++)
        snprintf(out + 8 * k, 9, "%08x", h[k]);
}

/* ---- the models ---------------------------------------------------------- */

typedef struct {
    char name[64], input[8], types[256], args[512];
} qmodel;

static qmodel models[32];
static int n_models, cur;

static void read_models(void)
{
    FILE *f = fopen(DIR "/models.txt", "r");
    CHECKF(f != NULL, "cannot read %s/models.txt", DIR);
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f) && n_models < (int)(sizeof models / sizeof models[0])) {
        qmodel *m = &models[n_models];
        int off = 0;
        if (line[0] == '#' || sscanf(line, "%63s %7s %255s %n", m->name, m->input, m->types,
                                     &off) != 3)
            continue;
        snprintf(m->args, sizeof m->args, "%s", line + off);
        m->args[strcspn(m->args, "\n")] = 0;
        n_models++;
    }
    fclose(f);
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "  command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* Which of the reference's 8-hex-digit chunk hashes the data fails (count). */
static int chunks_differing(const uint8_t *data, size_t n, const char *ref, int *total)
{
    int bad = 0, k = 0;
    size_t len = strlen(ref);
    for (size_t off = 0; off < n; off += 16384, k++) {
        char h[65];
        sha256_hex(data + off, n - off < 16384 ? n - off : 16384, h);
        if ((size_t)(8 * k + 8) > len || memcmp(h, ref + 8 * k, 8))
            bad++;
    }
    *total = k;
    return bad;
}

/* Explains how out (vitamin's file) differs from ref (llama.cpp's). */
static void explain(const char *label, const char *path, json_t *ref)
{
    gguf_file *g = NULL;
    if (gguf_open(path, &g)) {
        test_fail_at(__FILE__, __LINE__, "%s: vitamin's output does not open: %s", label,
                     vt_last_error());
        return;
    }
    json_t *keys = json_object_get(ref, "kv_keys");
    size_t nk = json_array_size(keys);
    for (size_t i = 0; i < nk || (int64_t)i < gguf_n_kv(g); i++) {
        const char *want = i < nk ? json_string_value(json_array_get(keys, i)) : "(none)";
        gguf_str k = (int64_t)i < gguf_n_kv(g) ? gguf_kv_key(g, (int64_t)i)
                                                 : (gguf_str){"(none)", 6};
        if (strlen(want) != k.len || memcmp(want, k.ptr, k.len)) {
            test_fail_at(__FILE__, __LINE__, "%s: metadata key %zu is %.*s, llama.cpp has %s",
                         label, i, (int)k.len, k.ptr, want);
            break;
        }
    }
    uint32_t ft = 0;
    json_int_t want_ft = json_integer_value(json_object_get(ref, "file_type"));
    if (!gguf_get_u32(g, "general.file_type", &ft) || ft != (uint32_t)want_ft)
        test_fail_at(__FILE__, __LINE__, "%s: general.file_type %u, llama.cpp wrote %lld", label,
                     ft, (long long)want_ft);
    json_t *ts = json_object_get(ref, "tensors");
    size_t nt = json_array_size(ts);
    if ((int64_t)nt != gguf_n_tensors(g))
        test_fail_at(__FILE__, __LINE__, "%s: %lld tensors, llama.cpp wrote %zu", label,
                     (long long)gguf_n_tensors(g), nt);
    int reported = 0, more = 0;
    bool moved = false; /* a tensor out of order or of another size moved those after it */
    for (size_t i = 0; i < nt; i++) {
        json_t *r = json_array_get(ts, i);
        const char *name = json_string_value(json_array_get(r, 0));
        const char *type = json_string_value(json_array_get(r, 1));
        uint64_t off = (uint64_t)json_integer_value(json_array_get(r, 2));
        const char *digest = json_string_value(json_array_get(r, 3));
        const char *chunks = json_string_value(json_array_get(r, 4));
        const gguf_tensor *t = gguf_find_tensor(g, name);
        char msg[512] = "";
        if (!t) {
            snprintf(msg, sizeof msg, "%s: missing", name);
        } else if ((int64_t)i >= gguf_n_tensors(g) || gguf_tensor_at(g, (int64_t)i) != t) {
            if (!moved) /* the first one out of order */
                snprintf(msg, sizeof msg, "tensor order: llama.cpp has %s at %zu, vitamin %s",
                         name, i, (int64_t)i < gguf_n_tensors(g)
                                      ? gguf_tensor_at(g, (int64_t)i)->name : "nothing");
            moved = true;
        }
        if (msg[0]) { /* missing or out of order: said once, then the tensor itself */
            if (reported < MAX_REPORT) {
                test_fail_at(__FILE__, __LINE__, "%s: %s", label, msg);
                reported++;
            } else {
                more++;
            }
            msg[0] = 0;
        }
        const vt_type_info *ti = t ? vt_type_get(t->type) : NULL;
        if (!t)
            continue;
        if (strcmp(ti->name, type)) {
            snprintf(msg, sizeof msg, "%s: type %s, llama.cpp chose %s", name, ti->name, type);
            moved = true;
        } else {
            char h[65];
            sha256_hex(t->data, t->nbytes, h);
            if (memcmp(h, digest, 16)) {
                int total = 1, bad = 1;
                if (chunks && chunks[0])
                    bad = chunks_differing(t->data, t->nbytes, chunks, &total);
                long long blocks = (long long)(t->nbytes / ti->size);
                long long per = (16384 + (long long)ti->size - 1) / (long long)ti->size;
                snprintf(msg, sizeof msg, "%s (%s): data differ in %d of %d 16 KiB chunks "
                         "(%d to %lld of its %lld blocks)", name, type, bad, total, bad,
                         VT_MIN((long long)bad * per, blocks), blocks);
            } else if (t->offset != off && !moved)
                snprintf(msg, sizeof msg, "%s: at offset %llu, llama.cpp at %llu", name,
                         (unsigned long long)t->offset, (unsigned long long)off);
        }
        if (msg[0] && reported < MAX_REPORT) {
            test_fail_at(__FILE__, __LINE__, "%s: %s", label, msg);
            reported++;
        } else if (msg[0])
            more++;
    }
    if (more)
        test_fail_at(__FILE__, __LINE__, "%s: and %d more tensors differ", label, more);
    if (!reported && !more)
        test_fail_at(__FILE__, __LINE__, "%s: every tensor is llama.cpp's, but the file is not "
                     "(metadata values or padding differ)", label);
    gguf_close(g);
}

static void check_model(void)
{
    const qmodel *m = &models[cur];
    if (!test_need_vitamin())
        return;
    char refpath[256], in[512], out[512], cmd[2048], h[65];
    snprintf(refpath, sizeof refpath, "%s/%s.json", DIR, m->name);
    json_error_t jerr;
    json_t *ref = json_load_file(refpath, 0, &jerr);
    if (!ref) {
        test_fail_at(__FILE__, __LINE__, "%s: %s (run tools/make_quant_refs.sh)", refpath,
                     jerr.text);
        return;
    }
    const char *dir = test_tmpdir();
    snprintf(in, sizeof in, "%s/%s.gguf", dir, m->name);
    snprintf(cmd, sizeof cmd, "%s gen-model %s --type %s --vocab %s/vocab-256.gguf -o %s",
             test_vitamin_bin(), m->args, m->input, DIR, in);
    size_t n = 0;
    char *bytes = run(cmd) == 0 ? test_read_file(in, &n) : NULL;
    if (!bytes) {
        test_fail_at(__FILE__, __LINE__, "%s: gen-model failed", m->name);
        json_decref(ref);
        return;
    }
    sha256_hex(bytes, n, h);
    free(bytes);
    const char *want_in = json_string_value(json_object_get(ref, "input_sha256"));
    if (!want_in || strcmp(h, want_in)) {
        test_fail_at(__FILE__, __LINE__, "%s: gen-model wrote another input than the one the "
                     "references were made from (sha256 %s, expected %s): gen-model changed, "
                     "rerun tools/make_quant_refs.sh", m->name, h, want_in ? want_in : "?");
        json_decref(ref);
        remove(in);
        return;
    }
    json_t *outs = json_object_get(ref, "outputs");
    char types[256];
    snprintf(types, sizeof types, "%s", m->types);
    int same = 0, checked = 0;
    for (char *sv = NULL, *t = strtok_r(types, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
        char label[128];
        snprintf(label, sizeof label, "%s %s", m->name, t);
        json_t *r = json_object_get(outs, t);
        if (!r) {
            test_fail_at(__FILE__, __LINE__, "%s: no reference in %s", label, refpath);
            continue;
        }
        snprintf(out, sizeof out, "%s/%s.%s.gguf", dir, m->name, t);
        snprintf(cmd, sizeof cmd, "%s quantize -t 2 %s %s %s 2>/dev/null", test_vitamin_bin(),
                 in, out, t);
        checked++;
        if (run(cmd) != 0 || !(bytes = test_read_file(out, &n))) {
            test_fail_at(__FILE__, __LINE__, "%s: vitamin quantize failed", label);
            continue;
        }
        sha256_hex(bytes, n, h);
        free(bytes);
        const char *want = json_string_value(json_object_get(r, "sha256"));
        json_int_t want_n = json_integer_value(json_object_get(r, "size"));
        if (want && !strcmp(h, want) && (json_int_t)n == want_n)
            same++;
        else {
            test_fail_at(__FILE__, __LINE__, "%s: not llama.cpp's file (sha256 %.16s..., %zu "
                         "bytes; llama.cpp's: %.16s..., %lld bytes)", label, h, n,
                         want ? want : "?", (long long)want_n);
            explain(label, out, r);
        }
        remove(out);
    }
    printf("  %-12s %s input: %d of %d types byte-identical to llama.cpp\n", m->name, m->input,
           same, checked);
    remove(in);
    json_decref(ref);
}

/* The test's own check: the SHA-256 above is the standard one. */
static void test_sha256(void)
{
    char h[65];
    sha256_hex("", 0, h);
    CHECK(!strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    sha256_hex("abc", 3, h);
    CHECK(!strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    const char *s56 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(s56, strlen(s56), h);
    CHECK(!strcmp(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

int main(void)
{
    RUN_TEST(test_sha256);
    read_models();
    CHECKF(n_models > 0, "no models in %s/models.txt", DIR);
    for (cur = 0; cur < n_models; cur++)
        test_run(models[cur].name, check_model);
    return test_finish("quantize");
}
