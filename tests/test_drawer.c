/*
 * test_drawer.c - the KV drawer (src/kv/drawer.c) as the block pool's
 * backing store: blocks a freed sequence leaves are written to the folder;
 * after a "restart" (a new pool and drawer over the same folder, the K/V
 * memory wiped) a sequence with the same prompt gets them back with the
 * right bytes; a prompt that diverges gets only the common blocks; another
 * model's pool gets none; a corrupted, truncated or foreign file is
 * rejected and deleted, never loaded (and the block, computed again, is
 * stored anew); the folder stays under its cap
 * (least recently used files go first, also across a restart); leftover
 * temporary files are removed; a second drawer on the same folder is
 * refused. Then the engine: a second turn after a restart through the
 * drawer gives exactly the tokens and logprobs of recomputing it, with the
 * prefix counted as cached.
 *
 * The fake K/V of the unit tests: block b's part i holds bytes derived from
 * what the block stands for (its tokens' fingerprint, its place, the part),
 * written by the test after each commit as a forward pass would.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "kv/drawer.h"
#include "test.h"
#include "util/util.h"

#define NB 64     /* blocks in the pool */
#define BS 16     /* tokens per block */
#define NPART 3   /* parts per block */
#define PLEN 200  /* bytes per part */

static uint8_t kvmem[NB][NPART][PLEN];

static void *part_fn(void *ctx, int32_t b, int32_t part, size_t *len)
{
    (void)ctx;
    *len = PLEN;
    if (b < 0 || b >= NB || part < 0 || part >= NPART)
        return NULL;
    return kvmem[b][part];
}

/* What block `index` of a prompt should hold: bytes of a hash of the
 * prompt's tokens up to the block's end. */
static void expected(const int32_t *prompt, int64_t index, uint8_t out[NPART][PLEN])
{
    uint64_t h = vt_hash64(prompt, (size_t)(index + 1) * BS * sizeof *prompt, 77);
    for (int p = 0; p < NPART; p++)
        for (int i = 0; i < PLEN; i++)
            out[p][i] = (uint8_t)(vt_hash64(&h, sizeof h, (uint64_t)(p * PLEN + i)) >> 13);
}

static char dir[512];

static kv_pool *mk_pool(uint64_t salt)
{
    kv_config c = {.n_blocks = NB, .block_size = BS, .prefix_caching = true, .salt = salt};
    kv_pool *p = kv_pool_create(&c);
    CHECKF(p != NULL, "kv_pool_create: %s", vt_last_error());
    return p;
}

static kv_drawer *mk_drawer(int64_t cap, uint64_t model)
{
    kv_drawer_config c = {.dir = dir, .cap_bytes = cap, .model_id = model, .block_size = BS,
                          .n_parts = NPART, .part = part_fn};
    kv_drawer *d = NULL;
    vt_err e = kv_drawer_open(&c, &d);
    CHECKF(e == VT_OK && d, "kv_drawer_open %s: %s", dir, vt_last_error());
    return d;
}

/* Runs prompt[0..n) through pool p as a prefill would (cached blocks
 * skipped, new ones written with their expected bytes), then frees it.
 * Returns the tokens found cached. */
static int64_t run_prompt(kv_pool *p, const int32_t *prompt, int64_t n)
{
    int64_t cached = -1;
    kv_seq *s = kv_seq_create(p, prompt, n, 0, &cached);
    CHECK(s != NULL);
    if (!s)
        return -1;
    int64_t nb = 0;
    const int32_t *table = kv_seq_blocks(s, &nb);
    /* the attached blocks hold the right bytes */
    for (int64_t i = 0; i < cached / BS; i++) {
        uint8_t want[NPART][PLEN];
        expected(prompt, i, want);
        CHECKF(memcmp(kvmem[table[i]], want, sizeof want) == 0,
               "block %lld (physical %d) came back with other bytes", (long long)i, table[i]);
    }
    int64_t rest = n - cached;
    CHECK(kv_append_slots(p, s, rest, NULL, NULL) == VT_OK);
    table = kv_seq_blocks(s, &nb);
    for (int64_t i = cached / BS; i < n / BS; i++)
        expected(prompt, i, kvmem[table[i]]);
    CHECK(kv_commit(p, s, prompt + cached, rest) == VT_OK);
    CHECKF(kv_check(p) == VT_OK, "kv_check: %s", vt_last_error());
    kv_seq_free(p, s);
    CHECKF(kv_check(p) == VT_OK, "kv_check: %s", vt_last_error());
    return cached;
}

static void fill_prompt(int32_t *t, int64_t n, int32_t seed)
{
    for (int64_t i = 0; i < n; i++)
        t[i] = (int32_t)((i * 7919 + seed * 104729) % 30000);
}

/* .kvb files and their bytes under dir */
static int64_t disk_files(int64_t *bytes)
{
    int64_t n = 0, b = 0;
    DIR *top = opendir(dir);
    if (!top)
        return -1;
    struct dirent *de;
    char sub[1024], path[1400];
    while ((de = readdir(top))) {
        if (de->d_name[0] == '.' || strlen(de->d_name) != 2)
            continue;
        snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name);
        DIR *sd = opendir(sub);
        struct dirent *fe;
        while (sd && (fe = readdir(sd))) {
            size_t l = strlen(fe->d_name);
            if (l > 4 && !strcmp(fe->d_name + l - 4, ".kvb")) {
                struct stat sb;
                snprintf(path, sizeof path, "%s/%s", sub, fe->d_name);
                if (stat(path, &sb) == 0) {
                    n++;
                    b += sb.st_size;
                }
            }
        }
        if (sd)
            closedir(sd);
    }
    closedir(top);
    if (bytes)
        *bytes = b;
    return n;
}

static void fresh_dir(const char *name)
{
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), name);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_restart_roundtrip(void)
{
    fresh_dir("drawer-rt");
    int32_t prompt[5 * BS + 3];
    fill_prompt(prompt, 5 * BS + 3, 1);
    kv_pool *p = mk_pool(11);
    kv_drawer *d = mk_drawer(1 << 20, 11);
    if (!p || !d)
        goto out;
    kv_set_backing(p, kv_drawer_backing(), d);
    CHECK_EQ_INT(run_prompt(p, prompt, 5 * BS + 3), 0);
    kv_drawer_flush(d);
    kv_drawer_stats st;
    kv_drawer_get_stats(d, &st);
    CHECK_EQ_INT(st.stored, 5); /* the full blocks; the partial one is not named */
    CHECK_EQ_INT(st.files, 5);
    CHECK_EQ_INT(disk_files(NULL), 5);
    /* still in the pool: a hit from memory, nothing loaded */
    CHECK_EQ_INT(run_prompt(p, prompt, 5 * BS + 3), 5 * BS);
    kv_drawer_get_stats(d, &st);
    CHECK_EQ_INT(st.loaded, 0);
    kv_pool_destroy(p);
    kv_drawer_close(d);

    /* restart: new pool, new drawer, K/V memory wiped */
    memset(kvmem, 0, sizeof kvmem);
    p = mk_pool(11);
    d = mk_drawer(1 << 20, 11);
    if (!p || !d)
        goto out;
    kv_set_backing(p, kv_drawer_backing(), d);
    CHECK_EQ_INT(run_prompt(p, prompt, 5 * BS + 3), 5 * BS);
    kv_drawer_get_stats(d, &st);
    CHECK_EQ_INT(st.loaded, 5);
    kv_stats ks;
    kv_get_stats(p, &ks);
    CHECK_EQ_INT(ks.backing_hits, 5 * BS);
    CHECK_EQ_INT(ks.prefix_hits, 5 * BS);
    /* a prompt of exactly 5 full blocks attaches 4 (the last is computed) */
    kv_pool_destroy(p);
    memset(kvmem, 0, sizeof kvmem);
    p = mk_pool(11);
    if (!p)
        goto out;
    kv_set_backing(p, kv_drawer_backing(), d);
    CHECK_EQ_INT(run_prompt(p, prompt, 5 * BS), 4 * BS);
    /* a prompt diverging inside block 3 gets blocks 0-2 */
    int32_t other[5 * BS + 3];
    memcpy(other, prompt, sizeof other);
    other[3 * BS + 5] ^= 1;
    kv_pool_destroy(p);
    memset(kvmem, 0, sizeof kvmem);
    p = mk_pool(11);
    if (!p)
        goto out;
    kv_set_backing(p, kv_drawer_backing(), d);
    CHECK_EQ_INT(run_prompt(p, other, 5 * BS + 3), 3 * BS);
    kv_pool_destroy(p);
    /* another model (pool salt): nothing */
    p = mk_pool(12);
    if (!p)
        goto out;
    kv_set_backing(p, kv_drawer_backing(), d);
    CHECK_EQ_INT(run_prompt(p, prompt, 5 * BS + 3), 0);
out:
    kv_pool_destroy(p);
    kv_drawer_close(d);
}

/* Path of the file of the block holding prompt's block 0, found on disk. */
static bool first_file(char *out, size_t cap)
{
    DIR *top = opendir(dir);
    struct dirent *de;
    bool found = false;
    while (top && !found && (de = readdir(top))) {
        if (strlen(de->d_name) != 2)
            continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name);
        DIR *sd = opendir(sub);
        struct dirent *fe;
        while (sd && !found && (fe = readdir(sd)))
            if (strstr(fe->d_name, ".kvb")) {
                snprintf(out, cap, "%s/%s", sub, fe->d_name);
                found = true;
            }
        if (sd)
            closedir(sd);
    }
    if (top)
        closedir(top);
    return found;
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    uint8_t c;
    CHECK(pread(fd, &c, 1, at) == 1);
    c ^= 0x40;
    CHECK(pwrite(fd, &c, 1, at) == 1);
    close(fd);
}

static void test_corruption_rejected(void)
{
    int32_t prompt[BS + 1];
    fill_prompt(prompt, BS + 1, 2);
    /* a flipped data byte, a flipped header byte, a truncated file, a file
     * of another model written under the right name */
    for (int mode = 0; mode < 4; mode++) {
        fresh_dir("drawer-bad");
        kv_pool *p = mk_pool(21);
        kv_drawer *d = mk_drawer(1 << 20, mode == 3 ? 99 : 21);
        if (!p || !d) {
            kv_pool_destroy(p);
            kv_drawer_close(d);
            return;
        }
        kv_set_backing(p, kv_drawer_backing(), d);
        run_prompt(p, prompt, BS + 1);
        kv_drawer_close(d);
        kv_pool_destroy(p);
        char path[1400];
        CHECK(first_file(path, sizeof path));
        if (mode == 0)
            flip_byte(path, 96 + BS * 4 + 3 * PLEN / 2);
        else if (mode == 1)
            flip_byte(path, 40);
        else if (mode == 2)
            CHECK(truncate(path, 96 + BS * 4 + PLEN) == 0);
        memset(kvmem, 0, sizeof kvmem);
        p = mk_pool(21);
        d = mk_drawer(1 << 20, 21);
        if (!p || !d) {
            kv_pool_destroy(p);
            kv_drawer_close(d);
            return;
        }
        kv_set_backing(p, kv_drawer_backing(), d);
        CHECKF(run_prompt(p, prompt, BS + 1) == 0, "mode %d: a bad file was loaded", mode);
        kv_drawer_stats st;
        kv_drawer_get_stats(d, &st);
        CHECKF(st.rejected == 1 && st.loaded == 0, "mode %d: rejected %lld loaded %lld", mode,
               (long long)st.rejected, (long long)st.loaded);
        kv_drawer_close(d);
        kv_pool_destroy(p);
        /* the block was computed again and stored anew over the bad file:
         * a new pool gets it back with the right bytes */
        memset(kvmem, 0, sizeof kvmem);
        p = mk_pool(21);
        d = mk_drawer(1 << 20, 21);
        if (!p || !d) {
            kv_pool_destroy(p);
            kv_drawer_close(d);
            return;
        }
        kv_set_backing(p, kv_drawer_backing(), d);
        CHECKF(run_prompt(p, prompt, BS + 1) == BS, "mode %d: the block stored again", mode);
        kv_drawer_get_stats(d, &st);
        CHECK(st.rejected == 0 && st.loaded == 1);
        kv_drawer_close(d);
        kv_pool_destroy(p);
    }
}

static void test_cap_and_lru(void)
{
    fresh_dir("drawer-cap");
    int64_t file = 96 + BS * 4 + NPART * PLEN;
    int64_t cap = 3 * file + file / 2; /* room for 3 files */
    kv_pool *p = mk_pool(31);
    kv_drawer *d = mk_drawer(cap, 31);
    if (!p || !d)
        goto out;
    kv_set_backing(p, kv_drawer_backing(), d);
    int32_t a[2 * BS + 1], b[2 * BS + 1], c[2 * BS + 1];
    fill_prompt(a, 2 * BS + 1, 3);
    fill_prompt(b, 2 * BS + 1, 4);
    fill_prompt(c, 2 * BS + 1, 5);
    run_prompt(p, a, 2 * BS + 1);
    kv_drawer_flush(d);
    sleep(1); /* distinct modification times across the restart */
    run_prompt(p, b, 2 * BS + 1);
    kv_drawer_flush(d);
    kv_drawer_stats st;
    kv_drawer_get_stats(d, &st);
    int64_t bytes = 0;
    CHECK_EQ_INT(disk_files(&bytes), 3);
    CHECKF(bytes <= cap && st.bytes == bytes, "drawer %lld bytes (index %lld), cap %lld",
           (long long)bytes, (long long)st.bytes, (long long)cap);
    CHECK_EQ_INT(st.evicted, 1); /* a's first block, the oldest */
    kv_pool_destroy(p);
    kv_drawer_close(d);
    /* after a restart b is all there and a's second block survived */
    memset(kvmem, 0, sizeof kvmem);
    p = mk_pool(31);
    d = mk_drawer(cap, 31);
    if (!p || !d)
        goto out;
    kv_set_backing(p, kv_drawer_backing(), d);
    CHECK_EQ_INT(run_prompt(p, b, 2 * BS + 1), 2 * BS);
    /* c's two blocks evict the two least recently used: a's last block and
     * then b's first (b was just loaded, but its first block was written
     * before its second) */
    run_prompt(p, c, 2 * BS + 1);
    kv_drawer_flush(d);
    CHECK_EQ_INT(disk_files(&bytes), 3);
    CHECK(bytes <= cap);
    kv_drawer_get_stats(d, &st);
    CHECKF(st.bytes <= cap && st.files == 3, "files %lld bytes %lld", (long long)st.files,
           (long long)st.bytes);
    /* a cap below the folder's size at open deletes down to it */
    kv_pool_destroy(p);
    kv_drawer_close(d);
    p = NULL;
    d = mk_drawer(file + 1, 31);
    CHECK_EQ_INT(disk_files(&bytes), 1);
out:
    kv_pool_destroy(p);
    kv_drawer_close(d);
}

static void test_folder(void)
{
    fresh_dir("drawer-dir/a/b");
    /* made with its parents; leftovers of a killed write are removed */
    kv_drawer *d = mk_drawer(1 << 20, 1);
    kv_drawer_close(d);
    char sub[700], tmp[800];
    snprintf(sub, sizeof sub, "%s/ab", dir);
    CHECK(mkdir(sub, 0755) == 0);
    snprintf(tmp, sizeof tmp, "%s/ab00000000000000.tmp", sub);
    FILE *f = fopen(tmp, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("half a block", f);
        fclose(f);
    }
    d = mk_drawer(1 << 20, 1);
    CHECK(access(tmp, F_OK) != 0);
    /* one process at a time */
    kv_drawer_config c = {.dir = dir, .cap_bytes = 1 << 20, .block_size = BS, .n_parts = NPART,
                          .part = part_fn};
    kv_drawer *d2 = NULL;
    CHECK(kv_drawer_open(&c, &d2) == VT_ERR_IO && d2 == NULL);
    CHECKF(strstr(vt_last_error(), "in use"), "message: %s", vt_last_error());
    kv_drawer_close(d);
    /* a file where the folder should be */
    char file[700];
    snprintf(file, sizeof file, "%s/plain", dir);
    f = fopen(file, "w");
    if (f)
        fclose(f);
    c.dir = file;
    CHECK(kv_drawer_open(&c, &d2) == VT_ERR_IO && d2 == NULL);
    CHECK(strstr(vt_last_error(), file) != NULL);
    c.dir = dir;
    c.cap_bytes = 0;
    CHECK(kv_drawer_open(&c, &d2) == VT_ERR_INVALID);
}

/* ---- through the engine ---- */

enum { N1 = 300, G = 24, N2 = N1 + G + 40 };

typedef struct {
    int32_t tok[G];
    float lp[G];
    vt_usage usage;
} turn;

/* One greedy request of prompt[0..n) on manual-step engine e. */
static void run_turn(vt_engine *e, const int32_t *prompt, int64_t n, turn *t)
{
    memset(t, 0, sizeof *t);
    vt_request_params p = vt_request_params_default();
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = G;
    p.temperature = 0;
    p.ignore_eos = true;
    p.logprobs = true;
    vt_request *r = NULL;
    CHECK(vt_submit(e, &p, &r) == VT_OK);
    bool busy = true;
    int k = 0;
    vt_event ev;
    while (busy && vt_engine_step(e, &busy) == VT_OK)
        while (r && vt_request_next(r, &ev, 0) == 1) {
            if (ev.kind == VT_EV_TOKEN && k < G) {
                t->tok[k] = ev.token;
                t->lp[k++] = ev.logprob;
            }
            if (ev.kind == VT_EV_DONE)
                t->usage = ev.usage;
        }
    CHECK_EQ_INT(k, G);
    vt_request_free(r);
}

static vt_engine *engine(md_model *m, tok_tokenizer *tok, bool drawer, bool caching)
{
    vt_engine_config cfg = {.kv_tokens = 2048, .manual_step = true,
                            .kv_drawer = drawer ? dir : NULL, .no_prefix_cache = !caching};
    vt_engine *e = eng_create(m, tok, NULL, &cfg);
    CHECKF(e != NULL, "eng_create: %s", vt_last_error());
    return e;
}

static bool same(const turn *a, const turn *b)
{
    return memcmp(a->tok, b->tok, sizeof a->tok) == 0 && memcmp(a->lp, b->lp, sizeof a->lp) == 0;
}

static void test_engine_second_turn(void)
{
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    if (!test_need_vitamin() || !test_need_file(vocab, "the drawer's engine test"))
        return;
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/drawer-model.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s gen-model --arch llama --dim 128 --layers 2 --heads 4 --kv-heads 2 --ff 256 "
             "--type q8_0 --vocab %s -o %s",
             test_vitamin_bin(), vocab, path);
    CHECKF(system(cmd) == 0, "%s", cmd);
    md_model *m = NULL;
    tok_tokenizer *tok = NULL;
    if (md_load(path, &m) || tok_load(m->file, &tok)) {
        test_fail_at(__FILE__, __LINE__, "cannot load %s: %s", path, vt_last_error());
        md_destroy(m);
        return;
    }
    fresh_dir("drawer-engine");
    int32_t prompt[N2], regen[N1 + 20];
    fill_prompt(prompt, N2, 9);
    for (int i = 0; i < N2; i++)
        prompt[i] = 3 + prompt[i] % 31000;
    turn t1, t2, ref1, ref2, r3, ref3;
    eng_counters ec;
    /* turn 1 with the drawer; the engine stops (a restart) */
    vt_engine *e = engine(m, tok, true, true);
    if (!e)
        goto out;
    run_turn(e, prompt, N1, &t1);
    vt_engine_destroy(e);
    memcpy(prompt + N1, t1.tok, sizeof t1.tok); /* turn 2 goes on from turn 1's reply */
    /* turn 2 in a new engine: turn 1's blocks come from the drawer */
    if (!(e = engine(m, tok, true, true)))
        goto out;
    run_turn(e, prompt, N2, &t2);
    eng_get_counters(e, &ec);
    vt_engine_destroy(e);
    /* everything turn 1 left in full blocks (its prompt and reply, but not
     * the last token, never fed back) */
    CHECK_EQ_INT(t2.usage.cached_tokens, (N1 + G - 1) / 16 * 16);
    CHECK_EQ_INT(ec.drawer.loaded, (N1 + G - 1) / 16);
    CHECK_EQ_INT(ec.kv.backing_hits, ec.drawer.loaded * 16);
    /* the same two turns in one engine without a drawer or restart: the
     * prefix cache in memory serves turn 2, and the numbers are the same
     * to the bit */
    if (!(e = engine(m, tok, false, true)))
        goto out;
    run_turn(e, prompt, N1, &ref1);
    run_turn(e, prompt, N2, &ref2);
    vt_engine_destroy(e);
    CHECK(same(&t1, &ref1));
    CHECK_EQ_INT(ref2.usage.cached_tokens, t2.usage.cached_tokens);
    CHECK(same(&t2, &ref2));
    /* a new request sharing only turn 1's prompt (computed as a prompt):
     * after a restart, the drawer's blocks give what recomputing gives */
    memcpy(regen, prompt, sizeof regen);
    for (int i = N1; i < N1 + 20; i++)
        regen[i] = 5 + i;
    if (!(e = engine(m, tok, true, true)))
        goto out;
    run_turn(e, regen, N1 + 20, &r3);
    vt_engine_destroy(e);
    CHECK_EQ_INT(r3.usage.cached_tokens, N1 / 16 * 16);
    if (!(e = engine(m, tok, false, false)))
        goto out;
    run_turn(e, regen, N1 + 20, &ref3);
    vt_engine_destroy(e);
    CHECK_EQ_INT(ref3.usage.cached_tokens, 0);
    CHECK(same(&r3, &ref3));
    CHECK(disk_files(NULL) > 0);
out:
    tok_destroy(tok);
    md_destroy(m);
}

int main(void)
{
    RUN_TEST(test_restart_roundtrip);
    RUN_TEST(test_corruption_rejected);
    RUN_TEST(test_cap_and_lru);
    RUN_TEST(test_folder);
    RUN_TEST(test_engine_second_turn);
    return test_finish("test_drawer");
}
