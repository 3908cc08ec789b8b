/*
 * Fused CPU kernels of tricksref.scratch: batch normalization (forward and the closed-form backward) and
 * dropout (the mask drawn from a counter-based generator, applied in the same pass). float32 only.
 *
 * Why C: the torch path makes each of these several passes over tensors that do not fit in the caches.
 * Batch norm here works one channel at a time: a channel of AlexNet's (64, 96, 27, 27) batch is 186 KB,
 * so its first pass reads it from memory and the following passes find it in L2. Dropout draws its random
 * bits, compares them and scales in one pass. No Python, no torch headers: the loader (_native.py, through
 * tricksref/_native_build.py) compiles this file with the system C compiler and calls it through ctypes
 * with the data pointers of contiguous CPU tensors.
 *
 * The formulas are the ones in batchnorm.py and dropout.py beside this file, whose torch paths are the
 * reference the tests hold these kernels to.
 */

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* bumped whenever a signature below changes; checked by the loader */
#define TR_ABI_VERSION 1

int tr_abi_version(void) { return TR_ABI_VERSION; }

/* ------------------------------------------------------------------------------------------------------ */
/* a parallel for over [0, n): `threads` contiguous blocks, the first run by the calling thread */

typedef void (*range_fn)(void *arg, int64_t begin, int64_t end);

struct job {
    range_fn fn;
    void *arg;
    int64_t begin, end;
};

static void *run_job(void *p)
{
    struct job *j = (struct job *)p;
    j->fn(j->arg, j->begin, j->end);
    return NULL;
}

#define MAX_THREADS 64

static void parallel_for(int64_t n, int64_t threads, range_fn fn, void *arg)
{
    if (threads > n)
        threads = n;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads <= 1) {
        fn(arg, 0, n);
        return;
    }
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS];
    struct job jobs[MAX_THREADS];
    for (int64_t t = 0; t < threads; t++) {
        jobs[t].fn = fn;
        jobs[t].arg = arg;
        jobs[t].begin = n * t / threads;
        jobs[t].end = n * (t + 1) / threads;
    }
    for (int64_t t = 1; t < threads; t++)  /* a thread that cannot start runs its block here instead */
        started[t] = pthread_create(&tid[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int64_t t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            run_job(&jobs[t]);
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* batch normalization on x of shape (N, C, L), contiguous; channel c is the N rows x[n, c, :] */

#define LANES 16  /* independent float partial sums per row: vectorizes without reassociating anything */

/* sum_i (r_i - shift) and sum_i (r_i - shift)^2 over one row; float lanes, the row total in double */
static void row_moments(const float *restrict r, int64_t len, float shift, double *s1, double *s2)
{
    float a1[LANES] = {0}, a2[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int k = 0; k < LANES; k++) {
            float d = r[i + k] - shift;
            a1[k] += d;
            a2[k] += d * d;
        }
    double t1 = 0.0, t2 = 0.0;
    for (; i < len; i++) {
        double d = (double)(r[i] - shift);
        t1 += d;
        t2 += d * d;
    }
    for (int k = 0; k < LANES; k++) {
        t1 += a1[k];
        t2 += a2[k];
    }
    *s1 += t1;
    *s2 += t2;
}

static double row_sum(const float *restrict r, int64_t len)
{
    float a[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int k = 0; k < LANES; k++)
            a[k] += r[i + k];
    double t = 0.0;
    for (; i < len; i++)
        t += r[i];
    for (int k = 0; k < LANES; k++)
        t += a[k];
    return t;
}

struct bn_args {
    const float *x, *g, *weight, *bias, *mean_in, *rstd_in;
    float *y, *dx, *mean, *var, *rstd, *sum_g, *sum_gxhat;
    int64_t N, C, L;
    int training;
    double eps;
};

/*
 * Forward, per channel: in training mu = mean(x) and sigma^2 = mean((x - mu)^2) (biased), the latter as the
 * corrected two-pass sum, mean(d^2) - mean(d)^2 with d = x - mu rounded to float; in evaluation mu and
 * rstd come in. Then y = gamma rstd (x - mu) + beta, written as y = x scale + shift.
 */
static void bn_forward_range(void *p, int64_t c0, int64_t c1)
{
    const struct bn_args *a = (const struct bn_args *)p;
    const int64_t N = a->N, C = a->C, L = a->L;
    const double m = (double)N * (double)L;
    for (int64_t c = c0; c < c1; c++) {
        double mu, rstd;
        if (a->training) {
            double s = 0.0;
            for (int64_t n = 0; n < N; n++)
                s += row_sum(a->x + (n * C + c) * L, L);
            mu = s / m;
            double s1 = 0.0, s2 = 0.0;
            for (int64_t n = 0; n < N; n++)
                row_moments(a->x + (n * C + c) * L, L, (float)mu, &s1, &s2);
            double var = s2 / m - (s1 / m) * (s1 / m);
            if (var < 0.0)
                var = 0.0;
            rstd = 1.0 / sqrt(var + a->eps);
            a->mean[c] = (float)mu;
            a->var[c] = (float)var;
            a->rstd[c] = (float)rstd;
        } else {
            mu = a->mean_in[c];
            rstd = a->rstd_in[c];
        }
        const double sc = a->weight ? a->weight[c] * rstd : rstd;
        const float scale = (float)sc;
        const float shift = (float)((a->bias ? a->bias[c] : 0.0) - mu * sc);
        for (int64_t n = 0; n < N; n++) {
            const float *restrict xr = a->x + (n * C + c) * L;
            float *restrict yr = a->y + (n * C + c) * L;
            for (int64_t i = 0; i < L; i++)
                yr[i] = xr[i] * scale + shift;
        }
    }
}

/*
 * Backward, per channel, with g = dL/dy and x-hat = (x - mu) rstd:
 *   dbeta = sum g,  dgamma = sum g x-hat,
 *   dx = (gamma rstd / m) (m g - sum g - x-hat sum(g x-hat))   (training)
 *   dx = gamma rstd g                                          (evaluation)
 * The training dx is computed as k1 g + k2 (x - mu) + k3 with per-channel constants, centring x first so
 * that a large |mu| costs no digits.
 */
static void bn_backward_range(void *p, int64_t c0, int64_t c1)
{
    const struct bn_args *a = (const struct bn_args *)p;
    const int64_t N = a->N, C = a->C, L = a->L;
    const double m = (double)N * (double)L;
    for (int64_t c = c0; c < c1; c++) {
        const float mu = a->mean_in[c];
        const double rstd = a->rstd_in[c];
        double sg = 0.0, sgc = 0.0;  /* sum g, sum g (x - mu) */
        for (int64_t n = 0; n < N; n++) {
            const float *restrict xr = a->x + (n * C + c) * L;
            const float *restrict gr = a->g + (n * C + c) * L;
            float a1[LANES] = {0}, a2[LANES] = {0};
            int64_t i = 0;
            for (; i + LANES <= L; i += LANES)
                for (int k = 0; k < LANES; k++) {
                    a1[k] += gr[i + k];
                    a2[k] += gr[i + k] * (xr[i + k] - mu);
                }
            double t1 = 0.0, t2 = 0.0;
            for (; i < L; i++) {
                t1 += gr[i];
                t2 += (double)gr[i] * (double)(xr[i] - mu);
            }
            for (int k = 0; k < LANES; k++) {
                t1 += a1[k];
                t2 += a2[k];
            }
            sg += t1;
            sgc += t2;
        }
        const double sgxhat = sgc * rstd;
        a->sum_g[c] = (float)sg;
        a->sum_gxhat[c] = (float)sgxhat;
        if (!a->dx)
            continue;
        const double k1 = a->weight ? a->weight[c] * rstd : rstd;
        const float f1 = (float)k1;
        if (a->training) {
            const float f2 = (float)(-k1 * rstd * sgxhat / m);
            const float f3 = (float)(-k1 * sg / m);
            for (int64_t n = 0; n < N; n++) {
                const float *restrict xr = a->x + (n * C + c) * L;
                const float *restrict gr = a->g + (n * C + c) * L;
                float *restrict dr = a->dx + (n * C + c) * L;
                for (int64_t i = 0; i < L; i++)
                    dr[i] = (f1 * gr[i] + f2 * (xr[i] - mu)) + f3;
            }
        } else {
            for (int64_t n = 0; n < N; n++) {
                const float *restrict gr = a->g + (n * C + c) * L;
                float *restrict dr = a->dx + (n * C + c) * L;
                for (int64_t i = 0; i < L; i++)
                    dr[i] = f1 * gr[i];
            }
        }
    }
}

/* training: mean_out, var_out (biased), rstd_out are written; evaluation: mean_in and rstd_in are read */
int tr_bn_forward(const float *x, float *y, int64_t N, int64_t C, int64_t L, const float *weight,
                  const float *bias, int training, const float *mean_in, const float *rstd_in, double eps,
                  float *mean_out, float *var_out, float *rstd_out, int64_t threads)
{
    struct bn_args a = {0};
    a.x = x;
    a.y = y;
    a.N = N;
    a.C = C;
    a.L = L;
    a.weight = weight;
    a.bias = bias;
    a.training = training;
    a.mean_in = mean_in;
    a.rstd_in = rstd_in;
    a.eps = eps;
    a.mean = mean_out;
    a.var = var_out;
    a.rstd = rstd_out;
    parallel_for(C, threads, bn_forward_range, &a);
    return 0;
}

/* dx may be NULL (only dgamma and dbeta wanted); sum_g and sum_gxhat are always written */
int tr_bn_backward(const float *x, const float *g, float *dx, int64_t N, int64_t C, int64_t L,
                   const float *weight, const float *mean, const float *rstd, int training, float *sum_g,
                   float *sum_gxhat, int64_t threads)
{
    struct bn_args a = {0};
    a.x = x;
    a.g = g;
    a.dx = dx;
    a.N = N;
    a.C = C;
    a.L = L;
    a.weight = weight;
    a.mean_in = mean;
    a.rstd_in = rstd;
    a.training = training;
    a.sum_g = sum_g;
    a.sum_gxhat = sum_gxhat;
    parallel_for(C, threads, bn_backward_range, &a);
    return 0;
}

/* ------------------------------------------------------------------------------------------------------ */
/* dropout */

/* SplitMix64's output function (Steele, Lea and Flood 2014): word w of the stream is mix(seed + (w+1) G) */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ULL

struct dropout_args {
    const float *x;
    float *y;
    uint8_t *keep;
    int64_t n;
    uint64_t seed;
    uint64_t threshold;  /* a unit is dropped iff its r < threshold */
    int bits;            /* 8: one byte of a word per unit, 32: half a word per unit */
    float scale;
};

/* one unit: keep it iff r >= threshold; y = x * scale or x * 0 (a dropped NaN or inf is NaN, as in torch) */
#define UNIT(i, r)                                                         \
    do {                                                                   \
        uint8_t k_ = (r) >= thr;                                           \
        keep[i] = k_;                                                      \
        if (y)                                                             \
            y[i] = x[i] * (k_ ? scale : 0.0f);                             \
    } while (0)

/* blocks of whole words, so a thread's units never share a word with another thread's; the pointers are
 * copied into restrict locals, so that the byte stores into keep do not make the compiler reload them */
static void dropout_range(void *p, int64_t w0, int64_t w1)
{
    const struct dropout_args *a = (const struct dropout_args *)p;
    const float *restrict x = a->x;
    float *restrict y = a->y;
    uint8_t *restrict keep = a->keep;
    const uint64_t thr = a->threshold, seed = a->seed;
    const float scale = a->scale;
    const int64_t n = a->n;
    const int per = 64 / a->bits;
    for (int64_t w = w0; w < w1; w++) {
        const uint64_t r = mix64(seed + (uint64_t)(w + 1) * GOLDEN);
        const int64_t base = w * per;
        if (a->bits == 8 && base + 8 <= n) {
            for (int j = 0; j < 8; j++)
                UNIT(base + j, (r >> (8 * j)) & 0xffULL);
        } else if (a->bits == 32 && base + 2 <= n) {
            UNIT(base, r & 0xffffffffULL);
            UNIT(base + 1, r >> 32);
        } else {  /* the last, partial word */
            const uint64_t mask = a->bits == 8 ? 0xffULL : 0xffffffffULL;
            for (int64_t j = 0; base + j < n; j++)
                UNIT(base + j, (r >> (a->bits * j)) & mask);
        }
    }
}

/* keep[i] in {0, 1}; y = x * keep * scale, or only the mask when x and y are NULL */
int tr_dropout(const float *x, float *y, uint8_t *keep, int64_t n, uint64_t seed, uint64_t threshold,
               int bits, float scale, int64_t threads)
{
    if (bits != 8 && bits != 32)
        return 1;
    struct dropout_args a;
    a.x = x;
    a.y = y;
    a.keep = keep;
    a.n = n;
    a.seed = seed;
    a.threshold = threshold;
    a.bits = bits;
    a.scale = scale;
    int64_t per = 64 / bits;
    parallel_for((n + per - 1) / per, threads, dropout_range, &a);
    return 0;
}

/* dx = g * keep * scale (the backward of the above, and of the torch path's mask) */
struct mask_args {
    const float *g;
    const uint8_t *keep;
    float *dx;
    float scale;
};

static void apply_mask_range(void *p, int64_t i0, int64_t i1)
{
    const struct mask_args *a = (const struct mask_args *)p;
    for (int64_t i = i0; i < i1; i++)
        a->dx[i] = a->g[i] * (a->keep[i] ? a->scale : 0.0f);
}

int tr_apply_mask(const float *g, const uint8_t *keep, float *dx, int64_t n, float scale, int64_t threads)
{
    struct mask_args a;
    a.g = g;
    a.keep = keep;
    a.dx = dx;
    a.scale = scale;
    parallel_for(n, n < (1 << 16) ? 1 : threads, apply_mask_range, &a);
    return 0;
}
