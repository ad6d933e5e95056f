/*
 * test_pool.c - the thread pool (kernels/pool.c): every thread index runs
 * exactly once per job, many back-to-back jobs, jobs after the workers went
 * to sleep, two threads calling kn_pool_run on one pool at the same time
 * (serialized: results correct, never two jobs inside the pool at once), and
 * that waiting costs no CPU: neither idle workers nor a caller waiting for a
 * slow worker spin. Run it under ThreadSanitizer with `make test-tsan`.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "test.h"

static double cpu_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- each index once ---- */

typedef struct {
    _Atomic int hits[16];
    _Atomic int nth_seen;
} once_job;

static void once_task(void *ctx, int ith, int nth)
{
    once_job *j = ctx;
    atomic_fetch_add(&j->hits[ith], 1);
    atomic_store(&j->nth_seen, nth);
}

static void test_each_index_once(void)
{
    for (int n = 1; n <= 4; n++) {
        kn_pool *p = kn_pool_create(n);
        CHECK(p != NULL);
        CHECK_EQ_INT(kn_pool_size(p), n);
        for (int rep = 0; rep < 200; rep++) {
            once_job j;
            memset(&j, 0, sizeof j);
            kn_pool_run(p, once_task, &j);
            CHECK_EQ_INT(atomic_load(&j.nth_seen), n);
            for (int i = 0; i < 16; i++)
                CHECK_EQ_INT(atomic_load(&j.hits[i]), i < n ? 1 : 0);
        }
        kn_pool_destroy(p);
    }
    once_job j;
    memset(&j, 0, sizeof j);
    kn_pool_run(NULL, once_task, &j); /* no pool: the caller alone */
    CHECK_EQ_INT(atomic_load(&j.hits[0]), 1);
    CHECK_EQ_INT(atomic_load(&j.nth_seen), 1);
    kn_pool_destroy(NULL);
    CHECK(kn_pool_create(0) == NULL);
}

/* ---- a sum split over the threads (plain writes to per-thread slots) ---- */

typedef struct {
    const int *v;
    int n;
    long part[8];
    kn_pool *p;
    _Atomic int *inside; /* jobs running inside the pool right now */
    _Atomic int overlap; /* times a job saw another one inside */
    long total_checked;
} sum_job;

static void sum_task(void *ctx, int ith, int nth)
{
    sum_job *j = ctx;
    if (ith == 0 && atomic_fetch_add(j->inside, 1) != 0)
        atomic_fetch_add(&j->overlap, 1);
    long s = 0;
    for (int i = ith; i < j->n; i += nth)
        s += j->v[i];
    j->part[ith] = s;
    if (ith == 0)
        atomic_fetch_sub(j->inside, 1);
}

static long run_sum(kn_pool *p, const int *v, int n, _Atomic int *inside, int *overlaps)
{
    sum_job j = {.v = v, .n = n, .p = p, .inside = inside};
    kn_pool_run(p, sum_task, &j);
    long s = 0;
    for (int i = 0; i < kn_pool_size(p); i++)
        s += j.part[i];
    *overlaps += atomic_load(&j.overlap);
    return s;
}

static int values[4096];
static long values_sum;

static void test_back_to_back_and_after_sleep(void)
{
    kn_pool *p = kn_pool_create(3);
    CHECK(p != NULL);
    _Atomic int inside = 0;
    int overlaps = 0, bad = 0;
    for (int rep = 0; rep < 5000; rep++) /* the fast hand-off path */
        bad += run_sum(p, values, 4096, &inside, &overlaps) != values_sum;
    for (int rep = 0; rep < 5; rep++) { /* the workers asleep on the futex */
        sleep_ms(3);
        bad += run_sum(p, values, 4096, &inside, &overlaps) != values_sum;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(overlaps, 0);
    kn_pool_destroy(p);
}

/* ---- two callers at once ---- */

typedef struct {
    kn_pool *p;
    _Atomic int *inside;
    int reps, bad, overlaps;
    int offset; /* each caller sums a different slice */
} caller_arg;

static void *caller_main(void *arg)
{
    caller_arg *c = arg;
    long want = 0;
    for (int i = 0; i < 2048; i++)
        want += values[c->offset + i];
    for (int rep = 0; rep < c->reps; rep++) {
        if (rep % 500 == 250)
            sleep_ms(2); /* also meet the other caller with the workers asleep */
        c->bad += run_sum(c->p, values + c->offset, 2048, c->inside, &c->overlaps) != want;
    }
    return NULL;
}

static void test_two_callers(void)
{
    kn_pool *p = kn_pool_create(2);
    CHECK(p != NULL);
    _Atomic int inside = 0;
    caller_arg a[2] = {{p, &inside, 2000, 0, 0, 0}, {p, &inside, 2000, 0, 0, 2048}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        CHECK(pthread_create(&th[k], NULL, caller_main, &a[k]) == 0);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    CHECK_EQ_INT(a[0].bad + a[1].bad, 0);
    CHECK_EQ_INT(a[0].overlaps + a[1].overlaps, 0);
    kn_pool_destroy(p);
}

/* ---- waiting costs no CPU ---- */

static void slow_task(void *ctx, int ith, int nth)
{
    (void)nth;
    if (ith == 1)
        sleep_ms(*(int *)ctx); /* a worker that is late (descheduled, slow) */
}

static void test_waiting_sleeps(void)
{
    kn_pool *p = kn_pool_create(2);
    CHECK(p != NULL);
    int ms = 200;
    kn_pool_run(p, slow_task, &ms); /* warm */
    /* the caller waiting for a late worker sleeps instead of spinning */
    double c0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
    kn_pool_run(p, slow_task, &ms);
    double used = cpu_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    CHECKF(used < 0.05, "caller used %.3f s of CPU waiting 0.2 s for a worker", used);
    /* idle workers sleep: the process uses (almost) no CPU while nothing runs */
    ms = 0;
    kn_pool_run(p, slow_task, &ms);
    c0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
    sleep_ms(200);
    used = cpu_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    CHECKF(used < 0.05, "idle pool used %.3f s of CPU in 0.2 s", used);
    kn_pool_destroy(p);
}

int main(void)
{
    for (int i = 0; i < 4096; i++) {
        values[i] = (i * 7919) % 1000 - 500;
        values_sum += values[i];
    }
    RUN_TEST(test_each_index_once);
    RUN_TEST(test_back_to_back_and_after_sleep);
    RUN_TEST(test_two_callers);
    RUN_TEST(test_waiting_sleeps);
    return test_finish("test_pool");
}
