/*
 * pool.c - a thread pool for data-parallel kernels.
 *
 * kn_pool_run() hands one function to every thread and waits for all of
 * them. The forward pass calls it hundreds of times per token, so the
 * hand-off between consecutive calls must cost well under a microsecond:
 * after each job a worker spins on the job counter for a short while
 * (SPIN_NS; no syscall while a step is running), then sleeps on a futex, so
 * that an idle pool leaves the CPU to other threads (HTTP, the OS). The
 * caller takes part as thread 0 and waits for the others the same way: a
 * short spin, then a futex sleep that the last worker to finish wakes.
 * Sleeping and waking are the Dekker pattern over seq_cst atomics (the
 * sleeper announces itself, then re-checks; the waker publishes, then looks
 * for sleepers), and the futex re-checks the value in the kernel, so no
 * wake-up is lost. One job at a time owns the pool: concurrent callers of
 * kn_pool_run from different threads are serialized by a mutex (a sleeping
 * lock, so a waiting caller never spins on a descheduled owner).
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kernels.h"

#define SPIN_NS 100000 /* how long a worker or the caller spins before it sleeps */

typedef struct {
    struct kn_pool *pool;
    int ith;
} worker_arg;

struct kn_pool {
    int n;
    pthread_t *threads;
    worker_arg *args;
    pthread_mutex_t run_mu; /* one kn_pool_run at a time */
    _Alignas(64) _Atomic uint32_t gen; /* bumped once per job; futex word of idle workers */
    _Atomic int sleepers;              /* workers in (or about to enter) the gen futex */
    _Atomic bool stop;
    _Alignas(64) _Atomic uint32_t pending; /* workers not done yet; futex word of the caller */
    _Atomic int waiting;                   /* the caller sleeps (or is about to) on pending */
    _Alignas(64) kn_task_fn fn; /* written before gen is bumped, read after it is seen */
    void *ctx;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
    /* returns at once with EAGAIN if *w != val; spurious wake-ups are fine */
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w, int n)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Spins until *w != val or SPIN_NS have passed; returns the last value. */
static uint32_t spin_while(_Atomic uint32_t *w, uint32_t val)
{
    uint32_t v = atomic_load_explicit(w, memory_order_acquire);
    int64_t t0 = 0;
    for (unsigned i = 1; v == val; i++) {
        cpu_relax();
        if ((i & 255) == 0) { /* the clock costs ~20 ns: read it now and then */
            int64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > SPIN_NS)
                break;
        }
        v = atomic_load_explicit(w, memory_order_acquire);
    }
    return v;
}

static void *worker_main(void *p)
{
    worker_arg *a = p;
    struct kn_pool *pool = a->pool;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g = spin_while(&pool->gen, seen);
        while (g == seen && !atomic_load(&pool->stop)) {
            atomic_fetch_add(&pool->sleepers, 1); /* seq_cst: before re-reading gen */
            if ((g = atomic_load(&pool->gen)) == seen && !atomic_load(&pool->stop))
                futex_wait(&pool->gen, seen);
            atomic_fetch_sub(&pool->sleepers, 1);
            g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        }
        if (atomic_load(&pool->stop))
            return NULL;
        seen = g;
        pool->fn(pool->ctx, a->ith, pool->n);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1 &&
            atomic_load(&pool->waiting)) /* seq_cst after the decrement */
            futex_wake(&pool->pending, 1);
    }
}

kn_pool *kn_pool_create(int n_threads)
{
    if (n_threads < 1 || n_threads > 1024) {
        vt_fail(VT_ERR_INVALID, "thread count %d out of range [1, 1024]", n_threads);
        return NULL;
    }
    size_t size = (sizeof(struct kn_pool) + 63) / 64 * 64;
    struct kn_pool *p = aligned_alloc(64, size); /* the struct has cache-line members */
    if (!p)
        goto oom;
    memset(p, 0, size);
    p->n = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    p->args = calloc((size_t)n_threads, sizeof *p->args);
    if (!p->threads || !p->args)
        goto oom;
    pthread_mutex_init(&p->run_mu, NULL);
    for (int i = 1; i < n_threads; i++) {
        p->args[i] = (worker_arg){p, i};
        int rc = pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]);
        if (rc != 0) {
            p->n = i; /* join only the threads that exist */
            kn_pool_destroy(p);
            vt_fail(VT_ERR_NOMEM, "cannot start thread %d: %s", i, strerror(rc));
            return NULL;
        }
    }
    return p;
oom:
    if (p) {
        free(p->threads);
        free(p->args);
        free(p);
    }
    vt_fail(VT_ERR_NOMEM, "out of memory creating a thread pool");
    return NULL;
}

void kn_pool_destroy(kn_pool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    futex_wake(&p->gen, INT_MAX);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->run_mu);
    free(p->threads);
    free(p->args);
    free(p);
}

int kn_pool_size(const kn_pool *p)
{
    return p ? p->n : 1;
}

void kn_pool_run(kn_pool *p, kn_task_fn fn, void *ctx)
{
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->run_mu);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, (uint32_t)(p->n - 1), memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes fn/ctx, pairs with the sleepers check */
    if (atomic_load(&p->sleepers) > 0)
        futex_wake(&p->gen, INT_MAX);
    fn(ctx, 0, p->n);
    /* The workers usually finish within microseconds of the caller; if not
     * (a core shared with other work), sleep until the last one is done. */
    int64_t t0 = 0;
    for (unsigned i = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if ((i & 255) != 0)
            continue;
        int64_t t = now_ns();
        if (!t0) {
            t0 = t;
            continue;
        }
        if (t - t0 <= SPIN_NS)
            continue;
        atomic_store(&p->waiting, 1); /* seq_cst: before re-reading pending */
        uint32_t left;
        while ((left = atomic_load(&p->pending)) > 0)
            futex_wait(&p->pending, left);
        atomic_store(&p->waiting, 0);
        break;
    }
    pthread_mutex_unlock(&p->run_mu);
}
