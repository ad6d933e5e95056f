/*
 * memory.c - `make bench-memory`: the memory store's speed.
 *
 *   import: memories/s into a fresh store through mem_upsert in batches of
 *           5,000 (what `vitamin memory import` does), without embeddings,
 *           and through the `vitamin memory import` command on a JSONL file
 *           of the same memories (JSON parsing included);
 *   search: latency of mem_search for one user with 100,000 memories, each
 *           with a 1,024-dimensional embedding, in a store of 1,000,000
 *           memories (the other 900,000: 900 users of 1,000 text memories
 *           each), for hybrid (text + embedding), full text only and vector
 *           only queries: p50, p95, max over 300 queries each, and the first
 *           query alone (it loads the user's vectors).
 *
 * The texts are chat turns of 6..24 words drawn from a Zipf-distributed
 * vocabulary of 20,000 made-up words, in sessions of 20 turns; a query is 3..8
 * such words, and its embedding a stored memory's with noise. The 1M store
 * is built once (about a minute or two) and kept in .bench/ (gitignored);
 * --rebuild makes it again. Prints a table; exits 1 if a target is missed
 * (import >= 10,000/s, search p95 <= 20 ms).
 *
 * usage: bench_memory [--vitamin BIN] [--dir .bench] [--rebuild] [--small]
 *   --small: 100,000 memories, 10,000 of the user (a quick look; not the target)
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memory/memory.h"
#include "util/util.h"

#define VOCAB 20000
#define DIM 1024
#define NQ 300

static char *words[VOCAB];
static double zipf_cdf[VOCAB];

static void make_vocab(vt_rng *r)
{
    static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "pa", "qu",
                                "do", "fe", "gi", "ho", "ju", "ky", "la", "mo", "ni", "or", "pe",
                                "ri", "su", "ta", "un", "ve", "wa", "xi", "yo"};
    /* real text is Zipfian with function words on top: the 100 most frequent
     * words here are English stop words (dropped from queries, as search
     * drops them), the rest made up */
    static const char *stop[] = {
        "the", "a", "and", "to", "of", "i", "you", "it", "in", "is", "that", "was", "for", "on",
        "my", "with", "me", "we", "so", "but", "have", "be", "this", "at", "just", "like", "not",
        "are", "they", "do", "he", "she", "what", "all", "about", "or", "if", "there", "your",
        "from", "out", "up", "can", "had", "when", "one", "get", "did", "really", "then", "were",
        "our", "been", "would", "them", "some", "how", "has", "will", "an", "by", "more", "now",
        "very", "her", "his", "know", "too", "their", "as", "no", "yes", "oh", "here", "going",
        "go", "which", "who", "could", "should", "than", "also", "because", "into", "over",
        "again", "any", "these", "those", "him", "us", "its", "am", "being", "where", "why",
        "off", "down", "most", "much"};
    int nstop = (int)VT_ARRAY_LEN(stop);
    double sum = 0;
    for (int i = 0; i < VOCAB; i++) {
        if (i < nstop) {
            words[i] = strdup(stop[i]);
            sum += 1.0 / (i + 1.0);
            zipf_cdf[i] = sum;
            continue;
        }
        char w[32] = "";
        int n = 2 + (int)(vt_rng_next(r) % 3);
        for (int k = 0; k < n; k++)
            strcat(w, syl[vt_rng_next(r) % VT_ARRAY_LEN(syl)]);
        char num[8];
        snprintf(num, sizeof num, "%c", 'a' + i % 26); /* keep them distinct-ish */
        strcat(w, num);
        words[i] = strdup(w);
        sum += 1.0 / (i + 1.0);
        zipf_cdf[i] = sum;
    }
    for (int i = 0; i < VOCAB; i++)
        zipf_cdf[i] /= sum;
}

static const char *zipf_word(vt_rng *r)
{
    double u = vt_rng_uniform(r);
    int lo = 0, hi = VOCAB - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return words[lo];
}

static void sentence(vt_rng *r, char *out, size_t size, int min, int max)
{
    int n = min + (int)(vt_rng_next(r) % (uint64_t)(max - min + 1));
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n && len + 40 < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%s", i ? " " : "", zipf_word(r));
}

static void vector(vt_rng *r, float *v)
{
    for (int i = 0; i < DIM; i++)
        v[i] = vt_rng_normal(r);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* CPU seconds (user + system) of this process or of its waited-for children */
static double cpu_seconds(int who)
{
    struct rusage u;
    getrusage(who, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec +
           u.ru_stime.tv_usec * 1e-6;
}

/* CPU seconds of this process, all threads (a search may scan on two) */
static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void remove_db(const char *p)
{
    char b[1100];
    unlink(p);
    snprintf(b, sizeof b, "%s-wal", p);
    unlink(b);
    snprintf(b, sizeof b, "%s-shm", p);
    unlink(b);
}

/* adds n memories of user (sessions of 20 turns), embeddings if emb */
static int fill(mem_store *s, const char *user, long n, bool emb, vt_rng *r, const char *jsonl)
{
    FILE *jf = jsonl ? fopen(jsonl, "w") : NULL;
    char text[512], id[64], sess[32];
    float *v = emb ? malloc(sizeof(float) * DIM) : NULL;
    if (mem_begin(s))
        return 1;
    for (long i = 0; i < n; i++) {
        sentence(r, text, sizeof text, 6, 24);
        snprintf(sess, sizeof sess, "S%ld", i / 20);
        snprintf(id, sizeof id, "%s:%ld", sess, i % 20);
        mem_input in;
        mem_input_init(&in);
        in.id = id;
        in.text = text;
        in.kind = MEM_KIND_MESSAGE;
        in.conversation = sess;
        in.speaker = i % 2 ? "assistant" : "user";
        in.event_time = 1680000000000LL + i * 60000;
        if (v) {
            vector(r, v);
            in.embedding = v;
            in.n_embd = DIM;
        }
        if (jf) {
            char t[40];
            mem_time_format(in.event_time, t, sizeof t);
            fprintf(jf, "{\"id\":\"%s\",\"text\":\"%s\",\"speaker\":\"%s\",\"time\":\"%s\","
                        "\"session\":\"%s\"}\n", id, text, in.speaker, t, sess);
        } else if (mem_upsert(s, user, &in, NULL, NULL)) {
            fprintf(stderr, "bench_memory: %s\n", vt_last_error());
            return 1;
        }
        if ((i + 1) % 5000 == 0 && (mem_commit(s) || mem_begin(s)))
            return 1;
    }
    free(v);
    if (jf)
        fclose(jf);
    return mem_commit(s) ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *vitamin = NULL, *dir = ".bench";
    bool rebuild = false, small = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vitamin") && i + 1 < argc)
            vitamin = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--rebuild"))
            rebuild = true;
        else if (!strcmp(argv[i], "--small"))
            small = true;
        else {
            fprintf(stderr, "usage: bench_memory [--vitamin BIN] [--dir DIR] [--rebuild] [--small]\n");
            return 2;
        }
    }
    mkdir(dir, 0755);
    vt_rng r = {20261201};
    make_vocab(&r);
    int rc = 0;

    /* ---- import ---- */
    long n_import = 100000;
    char path[1024], jsonl[1024];
    snprintf(path, sizeof path, "%s/memory-import.db", dir);
    snprintf(jsonl, sizeof jsonl, "%s/memory-import.jsonl", dir);
    remove_db(path);
    mem_store *s;
    if (mem_open(path, NULL, &s)) {
        fprintf(stderr, "bench_memory: %s\n", vt_last_error());
        return 1;
    }
    vt_rng ri = {7};
    double t0 = vt_now(), c0 = cpu_seconds(RUSAGE_SELF);
    if (fill(s, "importer", n_import, false, &ri, NULL))
        return 1;
    double lib_rate = n_import / (vt_now() - t0);
    double lib_cpu_rate = n_import / (cpu_seconds(RUSAGE_SELF) - c0);
    mem_close(s);
    remove_db(path);
    double cli_rate = 0, cli_cpu_rate = 0;
    if (vitamin) {
        vt_rng rj = {7};
        if (mem_open(path, NULL, &s) || fill(s, "importer", n_import, false, &rj, jsonl))
            return 1;
        mem_close(s);
        remove_db(path);
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "%s memory --db %s --user importer import %s 2>/dev/null",
                 vitamin, path, jsonl);
        t0 = vt_now();
        c0 = cpu_seconds(RUSAGE_CHILDREN);
        int st = system(cmd);
        double dt = vt_now() - t0;
        cli_cpu_rate = n_import / (cpu_seconds(RUSAGE_CHILDREN) - c0);
        if (st != 0) {
            fprintf(stderr, "bench_memory: %s failed (%d)\n", cmd, st);
            rc = 1;
        } else {
            cli_rate = n_import / dt;
        }
        remove_db(path);
        unlink(jsonl);
    }

    /* ---- the big store ---- */
    long n_user = small ? 10000 : 100000, n_others = small ? 90 : 900, per_other = 1000;
    snprintf(path, sizeof path, "%s/memory-%s.db", dir, small ? "100k" : "1m");
    if (rebuild)
        remove_db(path);
    bool built = false;
    double t_build = 0;
    if (!exists(path)) {
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s.building", path);
        remove_db(tmp);
        if (mem_open(tmp, NULL, &s)) {
            fprintf(stderr, "bench_memory: %s\n", vt_last_error());
            return 1;
        }
        fprintf(stderr, "bench_memory: building %s (%ld memories; once)...\n", path,
                n_user + n_others * per_other);
        t0 = vt_now();
        vt_rng rb = {99};
        /* the others first and last around the user, so its rows are not all at one end */
        for (long u = 0; u < n_others; u++) {
            char user[32];
            snprintf(user, sizeof user, "other%04ld", u);
            if (fill(s, user, per_other, false, &rb, NULL))
                return 1;
            if (u == n_others / 2) {
                vt_rng rv = {1234};
                if (fill(s, "big", n_user, true, &rv, NULL))
                    return 1;
            }
        }
        mem_close(s);
        t_build = vt_now() - t0;
        if (rename(tmp, path)) {
            fprintf(stderr, "bench_memory: rename: %s\n", strerror(errno));
            return 1;
        }
        built = true;
    }
    if (mem_open(path, NULL, &s)) {
        fprintf(stderr, "bench_memory: %s\n", vt_last_error());
        return 1;
    }
    int64_t count;
    mem_count(s, "big", &count);
    /* queries: words from the distribution, embeddings near stored ones */
    vt_rng rq = {555};
    char (*qtext)[256] = malloc(sizeof *qtext * NQ);
    float *qemb = malloc(sizeof(float) * DIM * NQ);
    int *target = malloc(sizeof(int) * NQ);
    {
        /* the vectors of the user are those of fill(): replay its generator */
        vt_rng rv = {1234};
        char text[512];
        float *v = malloc(sizeof(float) * DIM);
        for (int q = 0; q < NQ; q++)
            target[q] = (int)(vt_rng_next(&rq) % (uint64_t)n_user);
        for (long i = 0, q_done = 0; i < n_user && q_done < NQ; i++) {
            sentence(&rv, text, sizeof text, 6, 24);
            vector(&rv, v);
            for (int q = 0; q < NQ; q++)
                if (target[q] == i) {
                    for (int k = 0; k < DIM; k++)
                        qemb[q * DIM + k] = v[k] + 0.5f * vt_rng_normal(&rq);
                    q_done++;
                }
        }
        free(v);
        for (int q = 0; q < NQ; q++)
            sentence(&rq, qtext[q], sizeof qtext[q], 3, 8);
    }
    const char *modes[3] = {"hybrid", "full text", "vector"};
    double p50[3], p95[3], pmax[3], first[3], c50[3], c95[3];
    int found[3] = {0};
    double *lat = malloc(sizeof(double) * NQ), *cpu = malloc(sizeof(double) * NQ);
    for (int mode = 0; mode < 3; mode++) {
        for (int q = 0; q < NQ; q++) {
            mem_query mq;
            mem_query_init(&mq);
            mq.top_k = 10;
            mq.text = mode == 2 ? NULL : qtext[q];
            if (mode != 1) {
                mq.embedding = qemb + q * DIM;
                mq.n_embd = DIM;
            }
            mem_hit *h;
            size_t nh;
            double t = vt_now(), c = thread_cpu();
            if (mem_search(s, "big", &mq, &h, &nh)) {
                fprintf(stderr, "bench_memory: search: %s\n", vt_last_error());
                return 1;
            }
            lat[q] = (vt_now() - t) * 1000;
            cpu[q] = (thread_cpu() - c) * 1000;
            char want[64];
            snprintf(want, sizeof want, "S%d:%d", target[q] / 20, target[q] % 20);
            for (size_t i = 0; i < nh && mode != 1; i++)
                found[mode] += !strcmp(h[i].m.id, want);
            mem_hits_free(h, nh);
        }
        first[mode] = lat[0];
        qsort(lat, NQ, sizeof *lat, cmp_double);
        qsort(cpu, NQ, sizeof *cpu, cmp_double);
        c50[mode] = cpu[NQ / 2];
        c95[mode] = cpu[(int)(NQ * 0.95)];
        p50[mode] = lat[NQ / 2];
        p95[mode] = lat[(int)(NQ * 0.95)];
        pmax[mode] = lat[NQ - 1];
    }
    mem_close(s);
    struct stat st;
    stat(path, &st);

    double load[3] = {0};
    getloadavg(load, 3);
    printf("memory store speed (SQLite WAL synchronous=FULL, %s; load average %.1f on %ld CPUs: "
           "wall times include waiting for them, the CPU times do not)\n\n",
           path, load[0], sysconf(_SC_NPROCESSORS_ONLN));
    if (built)
        printf("built the %ld-memory store in %.1f s (%.0f memories/s with %ld embeddings)\n\n",
               n_user + n_others * per_other, t_build,
               (n_user + n_others * per_other) / t_build, n_user);
    printf("| measure | value | target |\n|---|---|---|\n");
    printf("| import, library (mem_upsert, batches of 5,000), %ld memories | %.0f /s (%.0f per CPU-second) | >= 10,000 /s |\n",
           n_import, lib_rate, lib_cpu_rate);
    if (vitamin)
        printf("| import, `vitamin memory import` JSONL, %ld memories | %.0f /s (%.0f per CPU-second) | >= 10,000 /s |\n",
               n_import, cli_rate, cli_cpu_rate);
    printf("| store | %lld memories of the user (%d-dim embeddings), %ld in all, %.0f MiB | |\n",
           (long long)count, DIM, n_user + n_others * per_other, st.st_size / 1048576.0);
    for (int m = 0; m < 3; m++)
        printf("| search %s, top 10: p50 / p95 / max (first) | %.2f / %.2f / %.2f ms (%.1f); CPU p50 / p95 %.2f / %.2f ms | p95 <= 20 ms |\n",
               modes[m], p50[m], p95[m], pmax[m], first[m], c50[m], c95[m]);
    printf("| nearest stored vector in the top 10 (hybrid / vector) | %d / %d of %d | |\n", found[0],
           found[2], NQ);
    if (lib_rate < 10000 || (vitamin && cli_rate < 10000))
        rc = 1;
    for (int m = 0; m < 3; m++)
        if (p95[m] > 20 && !small)
            rc = 1;
    if (rc)
        printf("\na target was missed\n");
    free(lat);
    free(cpu);
    free(qtext);
    free(qemb);
    free(target);
    for (int i = 0; i < VOCAB; i++)
        free(words[i]);
    return rc;
}
