/*
 * The parallel for of every tricksref kernel; tricksref/_native_build.py puts this file in front of each
 * kernel's source before compiling it (and hashes both into the cache key).
 *
 * tr_parallel_for(n, threads, fn, arg) splits [0, n) into `threads` contiguous blocks (fewer when n is
 * smaller), calls fn(arg, begin, end) once per block, and returns the OR of what the calls return (0 for
 * success). A kernel's result must not depend on the split.
 *
 * Built with OpenMP (-fopenmp, the first flags tried), the blocks run on the OpenMP thread pool. The loader
 * links libgomp by its soname, libgomp.so.1, which is the copy the torch wheel has already loaded, so these
 * kernels share torch's own worker threads: no thread is created per call, and none competes with torch's
 * workers, which spin for a while after each of torch's parallel regions (on a 2-core machine a new
 * pthread beside them ran batch norm 1.8x slower right after a torch op). Without OpenMP, one pthread per
 * block beyond the first, which the calling thread runs.
 */

#include <stdint.h>

typedef int (*tr_range_fn)(void *arg, int64_t begin, int64_t end);

/* 1 where this library was built with OpenMP (tested: the kernels must not run beside torch's threads) */
int tr_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#define TR_MAX_THREADS 256

static int64_t tr_clamp_threads(int64_t n, int64_t threads)
{
    if (threads > n)
        threads = n;
    if (threads > TR_MAX_THREADS)
        threads = TR_MAX_THREADS;
    return threads < 1 ? 1 : threads;
}

#ifdef _OPENMP
#include <omp.h>

static int tr_parallel_for(int64_t n, int64_t threads, tr_range_fn fn, void *arg)
{
    threads = tr_clamp_threads(n, threads);
    if (threads <= 1 || omp_in_parallel())
        return fn(arg, 0, n);
    int status = 0;
#pragma omp parallel num_threads((int)threads) reduction(| : status)
    {
        const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        status |= fn(arg, n * t / T, n * (t + 1) / T);
    }
    return status;
}

#else
#include <pthread.h>

struct tr_block {
    tr_range_fn fn;
    void *arg;
    int64_t begin, end;
    int status;
};

static void *tr_run_block(void *p)
{
    struct tr_block *b = (struct tr_block *)p;
    b->status = b->fn(b->arg, b->begin, b->end);
    return NULL;
}

static int tr_parallel_for(int64_t n, int64_t threads, tr_range_fn fn, void *arg)
{
    threads = tr_clamp_threads(n, threads);
    if (threads <= 1)
        return fn(arg, 0, n);
    pthread_t tid[TR_MAX_THREADS];
    int started[TR_MAX_THREADS];
    struct tr_block blocks[TR_MAX_THREADS];
    for (int64_t t = 0; t < threads; t++) {
        struct tr_block b = {fn, arg, n * t / threads, n * (t + 1) / threads, 0};
        blocks[t] = b;
    }
    for (int64_t t = 1; t < threads; t++)  /* a thread that cannot start runs its block here instead */
        started[t] = pthread_create(&tid[t], NULL, tr_run_block, &blocks[t]) == 0;
    tr_run_block(&blocks[0]);
    int status = blocks[0].status;
    for (int64_t t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            tr_run_block(&blocks[t]);
        status |= blocks[t].status;
    }
    return status;
}
#endif
