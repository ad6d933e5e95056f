/*
 * pool.c - a thread pool for data-parallel kernels.
 *
 * kn_pool_run() hands one function to every thread and waits for all of
 * them. The forward pass calls it hundreds of times per token, so dispatch
 * must cost well under a microsecond: workers spin on a generation counter
 * for a while after each job (no syscall while the model is running) and only
 * sleep on a condition variable once the pool has been idle for some time.
 * The caller takes part as thread 0.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define SPIN_ROUNDS (1 << 16) /* ~ tens of microseconds of pause before sleeping */

typedef struct {
    struct kn_pool *pool;
    int ith;
} worker_arg;

struct kn_pool {
    int n;
    pthread_t *threads;
    worker_arg *args;
    _Alignas(64) _Atomic uint64_t gen; /* bumped once per job; read by spinning workers */
    _Alignas(64) _Atomic int pending;  /* workers not done yet; written by each worker */
    _Atomic int sleepers;   /* workers blocked (or about to block) on cv */
    _Atomic bool stop;
    _Alignas(64) kn_task_fn fn;
    void *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p)
{
    worker_arg *a = p;
    struct kn_pool *pool = a->pool;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        for (int spin = 0; g == seen && spin < SPIN_ROUNDS; spin++) {
            cpu_relax();
            g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1);
            while ((g = atomic_load(&pool->gen)) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop))
            return NULL;
        seen = g;
        pool->fn(pool->ctx, a->ith, pool->n);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

static void wake_all(struct kn_pool *p)
{
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
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
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
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
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
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
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: pairs with the sleepers check */
    wake_all(p);
    fn(ctx, 0, p->n);
    /* The workers usually finish within microseconds of the caller. If they
     * do not, a core is probably shared with other work: yield it to them. */
    for (long spin = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spin++) {
        if (spin < SPIN_ROUNDS / 4)
            cpu_relax();
        else
            sched_yield();
    }
}
