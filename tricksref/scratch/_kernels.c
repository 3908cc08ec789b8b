/*
 * Fused CPU kernels of tricksref.scratch: batch normalization (forward and the closed-form backward),
 * dropout (the mask drawn from a counter-based generator, applied in the same pass) and inter-channel local
 * response normalization (forward and the closed-form backward). float32 only.
 *
 * Why C: the torch path makes each of these several passes over tensors that do not fit in the caches.
 * Batch norm here works one channel at a time: a channel of AlexNet's (64, 96, 27, 27) batch is 186 KB,
 * so its first pass reads it from memory and the following passes find it in L2. Dropout draws its random
 * bits, compares them and scales in one pass. LRN works on all channels of 128 positions at a time, whose
 * window sums then come from the caches. No Python, no torch headers: the loader (_native.py, through
 * tricksref/_native_build.py) compiles this file, after tricksref/_parallel.h (tr_parallel_for), with the
 * system C compiler and calls it through ctypes with the data pointers of contiguous CPU tensors.
 *
 * The formulas are the ones in batchnorm.py, dropout.py and lrn.py beside this file, whose torch paths are
 * the reference the tests hold these kernels to.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* bumped whenever a signature below changes; checked by the loader */
#define TR_ABI_VERSION 2

int tr_abi_version(void) { return TR_ABI_VERSION; }

/* ------------------------------------------------------------------------------------------------------ */
/* batch normalization on x of shape (N, C, L), contiguous; channel c is the N rows x[n, c, :] */

#define LANES 32  /* independent float partial sums per row: vectorizes without reassociating anything */

/*
 * Each row's LANES float partial sums are added, lane by lane, into LANES double sums of the channel (a
 * vectorized add, no serial chain per row); only the channel's total adds the lanes up one by one
 * (lanes_total). The row's last len % LANES values go to the first lanes.
 */

/* S1[k] += lane k of sum_i (r_i - shift), S2[k] += lane k of sum_i (r_i - shift)^2 */
static void row_moments(const float *restrict r, int64_t len, float shift, double *restrict S1,
                        double *restrict S2)
{
    float a1[LANES] = {0}, a2[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int k = 0; k < LANES; k++) {
            float d = r[i + k] - shift;
            a1[k] += d;
            a2[k] += d * d;
        }
    for (int k = 0; i + k < len; k++) {
        float d = r[i + k] - shift;
        a1[k] += d;
        a2[k] += d * d;
    }
    for (int k = 0; k < LANES; k++) {
        S1[k] += a1[k];
        S2[k] += a2[k];
    }
}

/* S[k] += lane k of sum_i r_i */
static void row_sum(const float *restrict r, int64_t len, double *restrict S)
{
    float a[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int k = 0; k < LANES; k++)
            a[k] += r[i + k];
    for (int k = 0; i + k < len; k++)
        a[k] += r[i + k];
    for (int k = 0; k < LANES; k++)
        S[k] += a[k];
}

/* S1[k] += lane k of sum_i g_i, S2[k] += lane k of sum_i g_i (x_i - mu) */
static void row_grad_sums(const float *restrict xr, const float *restrict gr, int64_t len, float mu,
                          double *restrict S1, double *restrict S2)
{
    float a1[LANES] = {0}, a2[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int k = 0; k < LANES; k++) {
            a1[k] += gr[i + k];
            a2[k] += gr[i + k] * (xr[i + k] - mu);
        }
    for (int k = 0; i + k < len; k++) {
        a1[k] += gr[i + k];
        a2[k] += gr[i + k] * (xr[i + k] - mu);
    }
    for (int k = 0; k < LANES; k++) {
        S1[k] += a1[k];
        S2[k] += a2[k];
    }
}

static double lanes_total(const double *S)
{
    double t = 0.0;
    for (int k = 0; k < LANES; k++)
        t += S[k];
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
static int bn_forward_range(void *p, int64_t c0, int64_t c1)
{
    const struct bn_args *a = (const struct bn_args *)p;
    const int64_t N = a->N, C = a->C, L = a->L;
    const double m = (double)N * (double)L;
    for (int64_t c = c0; c < c1; c++) {
        double mu, rstd;
        if (a->training) {
            double S[LANES] = {0}, S1[LANES] = {0}, S2[LANES] = {0};
            for (int64_t n = 0; n < N; n++)
                row_sum(a->x + (n * C + c) * L, L, S);
            mu = lanes_total(S) / m;
            for (int64_t n = 0; n < N; n++)
                row_moments(a->x + (n * C + c) * L, L, (float)mu, S1, S2);
            const double s1 = lanes_total(S1), s2 = lanes_total(S2);
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
    return 0;
}

/*
 * Backward, per channel, with g = dL/dy and x-hat = (x - mu) rstd:
 *   dbeta = sum g,  dgamma = sum g x-hat,
 *   dx = (gamma rstd / m) (m g - sum g - x-hat sum(g x-hat))   (training)
 *   dx = gamma rstd g                                          (evaluation)
 * The training dx is computed as k1 g + k2 (x - mu) + k3 with per-channel constants, centring x first so
 * that a large |mu| costs no digits.
 */
static int bn_backward_range(void *p, int64_t c0, int64_t c1)
{
    const struct bn_args *a = (const struct bn_args *)p;
    const int64_t N = a->N, C = a->C, L = a->L;
    const double m = (double)N * (double)L;
    for (int64_t c = c0; c < c1; c++) {
        const float mu = a->mean_in[c];
        const double rstd = a->rstd_in[c];
        double S1[LANES] = {0}, S2[LANES] = {0};  /* sum g, sum g (x - mu) */
        for (int64_t n = 0; n < N; n++)
            row_grad_sums(a->x + (n * C + c) * L, a->g + (n * C + c) * L, L, mu, S1, S2);
        const double sg = lanes_total(S1), sgc = lanes_total(S2);
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
    return 0;
}

/* training: mean_out, var_out (biased), rstd_out are written; evaluation: mean_in and rstd_in are read */
int tr_bn_forward(const float *x, float *y, int64_t N, int64_t C, int64_t L, const float *weight,
                  const float *bias, int training, const float *mean_in, const float *rstd_in, double eps,
                  float *mean_out, float *var_out, float *rstd_out, int64_t threads)
{
    struct bn_args a = {.x = x, .y = y, .N = N, .C = C, .L = L, .weight = weight, .bias = bias,
        .training = training, .mean_in = mean_in, .rstd_in = rstd_in, .eps = eps, .mean = mean_out,
        .var = var_out, .rstd = rstd_out};
    return tr_parallel_for(C, threads, bn_forward_range, &a);
}

/* dx may be NULL (only dgamma and dbeta wanted); sum_g and sum_gxhat are always written */
int tr_bn_backward(const float *x, const float *g, float *dx, int64_t N, int64_t C, int64_t L,
                   const float *weight, const float *mean, const float *rstd, int training, float *sum_g,
                   float *sum_gxhat, int64_t threads)
{
    struct bn_args a = {.x = x, .g = g, .dx = dx, .N = N, .C = C, .L = L, .weight = weight,
        .mean_in = mean, .rstd_in = rstd, .training = training, .sum_g = sum_g, .sum_gxhat = sum_gxhat};
    return tr_parallel_for(C, threads, bn_backward_range, &a);
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

#define DROP_WORDS 256  /* words per block: their bits wait in a small buffer in L1 */

/*
 * Blocks of whole words, so a thread's units never share a word with another thread's. Per block: the
 * words, split into units (byte j or half j of word w is (r >> (bits j)) & mask, low bits first, on any
 * endianness); keep = r >= threshold; y = x * scale or x * 0 (a dropped NaN or inf stays NaN, as in
 * torch). Three plain loops over arrays, which the compiler vectorizes; the pointers are restrict locals,
 * so that the byte stores into keep do not make it reload them.
 */
static int dropout_range(void *p, int64_t w0, int64_t w1)
{
    const struct dropout_args *a = (const struct dropout_args *)p;
    const float *restrict x = a->x;
    float *restrict y = a->y;
    uint8_t *restrict keep = a->keep;
    const uint64_t thr = a->threshold, seed = a->seed;
    const float scale = a->scale;
    const int64_t n = a->n;
    const int bits = a->bits, per = 64 / bits;
    uint8_t r8[DROP_WORDS * 8];
    uint32_t r32[DROP_WORDS * 2];
    for (int64_t wb = w0; wb < w1; wb += DROP_WORDS) {
        const int64_t nw = w1 - wb < DROP_WORDS ? w1 - wb : DROP_WORDS;
        const int64_t u0 = wb * per;
        const int64_t m = ((wb + nw) * per < n ? (wb + nw) * per : n) - u0;  /* the last word may be partial */
        uint8_t *restrict kp = keep + u0;
        if (bits == 8) {
            const unsigned t8 = (unsigned)thr;  /* < 256: p < 1 */
            for (int64_t k = 0; k < nw; k++) {
                const uint64_t r = mix64(seed + (uint64_t)(wb + k + 1) * GOLDEN);
                for (int j = 0; j < 8; j++)
                    r8[8 * k + j] = (uint8_t)(r >> (8 * j));
            }
            for (int64_t i = 0; i < m; i++)
                kp[i] = r8[i] >= t8;
        } else {
            for (int64_t k = 0; k < nw; k++) {
                const uint64_t r = mix64(seed + (uint64_t)(wb + k + 1) * GOLDEN);
                r32[2 * k] = (uint32_t)r;
                r32[2 * k + 1] = (uint32_t)(r >> 32);
            }
            for (int64_t i = 0; i < m; i++)  /* thr may be 2^32 (p within 2^-33 of 1): all dropped */
                kp[i] = (uint64_t)r32[i] >= thr;
        }
        if (y) {
            const float *restrict xp = x + u0;
            float *restrict yp = y + u0;
            for (int64_t i = 0; i < m; i++)
                yp[i] = xp[i] * (kp[i] ? scale : 0.0f);
        }
    }
    return 0;
}

/* keep[i] in {0, 1}; y = x * keep * scale, or only the mask when x and y are NULL */
int tr_dropout(const float *x, float *y, uint8_t *keep, int64_t n, uint64_t seed, uint64_t threshold,
               int bits, float scale, int64_t threads)
{
    if (bits != 8 && bits != 32)
        return 1;
    struct dropout_args a = {.x = x, .y = y, .keep = keep, .n = n, .seed = seed, .threshold = threshold,
        .bits = bits, .scale = scale};
    int64_t per = 64 / bits;
    return tr_parallel_for((n + per - 1) / per, threads, dropout_range, &a);
}

/* dx = g * keep * scale (the backward of the above, and of the torch path's mask) */
struct mask_args {
    const float *g;
    const uint8_t *keep;
    float *dx;
    float scale;
};

static int apply_mask_range(void *p, int64_t i0, int64_t i1)
{
    const struct mask_args *a = (const struct mask_args *)p;
    const float *restrict g = a->g;
    const uint8_t *restrict keep = a->keep;
    float *restrict dx = a->dx;
    const float scale = a->scale;
    for (int64_t i = i0; i < i1; i++)  /* restrict locals: through a-> every store could alias a's fields */
        dx[i] = g[i] * (keep[i] ? scale : 0.0f);
    return 0;
}

int tr_apply_mask(const float *g, const uint8_t *keep, float *dx, int64_t n, float scale, int64_t threads)
{
    struct mask_args a = {.g = g, .keep = keep, .dx = dx, .scale = scale};
    return tr_parallel_for(n, n < (1 << 16) ? 1 : threads, apply_mask_range, &a);
}

/* ------------------------------------------------------------------------------------------------------ */
/* local response normalization across channels */

/*
 * a of shape (N, C, L), contiguous; the window of channel c is c - before .. c + after, clipped, and
 * alpha is alpha' (alpha / n in torch's convention, see scratch/lrn.py):
 *
 *   s_c = k + alpha' sum_{j in W(c)} a_j^2,   b_c = a_c s_c^-beta
 *   da_m = t_m + a_m sum_{i: m in W(i)} (-2 alpha' beta) t_i a_i / s_i,   t = g s^-beta
 *
 * summed in the torch path's order (the centre, then the taps before, then those after). One work unit is
 * one sample and a block of LRN_BLOCK positions across all C channels (C x 512 bytes, in L2; 128 timed
 * faster than 32, 64 or 256 on AlexNet's shape), so the forward reads a and writes b, the backward reads a
 * and g and writes da, and nothing else goes through memory: s is recomputed in the backward instead of
 * kept, and 1 / s comes from the roots of s^-beta.
 *
 * beta_kind 1: beta = 0.75, as s^-1/4 cubed (the torch path's rounding); 2: beta = 0.5, rsqrt;
 * 0: any other non-integer beta, exp(-beta log s). Integer exponents stay on the torch path.
 */

#define LRN_BLOCK 128

struct lrn_args {
    const float *a, *g;
    float *out;
    int64_t C, L, before, after, blocks;
    float alpha, beta, k;
    int beta_kind;
};

/* s[i] = k + alpha sum_{j in W(c)} a_j[i]^2 for the block of positions at `an` (channel rows L apart) */
static void lrn_window(const float *restrict an, int64_t C, int64_t L, int64_t c, int64_t before,
                       int64_t after, float alpha, float k, int64_t bl, float *restrict s)
{
    const float *restrict r = an + c * L;
    for (int64_t i = 0; i < bl; i++)
        s[i] = k + alpha * r[i] * r[i];
    for (int64_t j = 1; j <= before && c - j >= 0; j++) {
        r = an + (c - j) * L;
        for (int64_t i = 0; i < bl; i++)
            s[i] += alpha * r[i] * r[i];
    }
    for (int64_t j = 1; j <= after && c + j < C; j++) {
        r = an + (c + j) * L;
        for (int64_t i = 0; i < bl; i++)
            s[i] += alpha * r[i] * r[i];
    }
}

/* s[i] <- s[i]^-beta */
static void lrn_pow_neg(float *restrict s, int64_t bl, float beta, int kind)
{
    if (kind == 1) {
        for (int64_t i = 0; i < bl; i++) {
            const float r = 1.0f / sqrtf(sqrtf(s[i]));
            s[i] = r * r * r;
        }
    } else if (kind == 2) {
        for (int64_t i = 0; i < bl; i++)
            s[i] = 1.0f / sqrtf(s[i]);
    } else {
        for (int64_t i = 0; i < bl; i++)
            s[i] = expf(-beta * logf(s[i]));
    }
}

/* sc[i] = s[i]^-beta and s[i] <- 1 / s[i], the latter from the roots already taken where there are some
 * (s^-1 = (s^-1/4)^4 or (s^-1/2)^2): a division less per value in the backward */
static void lrn_pow_neg_inv(float *restrict s, float *restrict sc, int64_t bl, float beta, int kind)
{
    if (kind == 1) {
        for (int64_t i = 0; i < bl; i++) {
            const float r = 1.0f / sqrtf(sqrtf(s[i])), r2 = r * r;
            sc[i] = r2 * r;
            s[i] = r2 * r2;
        }
    } else if (kind == 2) {
        for (int64_t i = 0; i < bl; i++) {
            const float r = 1.0f / sqrtf(s[i]);
            sc[i] = r;
            s[i] = r * r;
        }
    } else {
        for (int64_t i = 0; i < bl; i++) {
            sc[i] = expf(-beta * logf(s[i]));
            s[i] = 1.0f / s[i];
        }
    }
}

static int lrn_forward_range(void *p, int64_t u0, int64_t u1)
{
    const struct lrn_args *a = (const struct lrn_args *)p;
    const int64_t C = a->C, L = a->L;
    float s[LRN_BLOCK];
    for (int64_t u = u0; u < u1; u++) {
        const int64_t n = u / a->blocks, l0 = (u % a->blocks) * LRN_BLOCK;
        const int64_t bl = L - l0 < LRN_BLOCK ? L - l0 : LRN_BLOCK;
        const float *restrict an = a->a + n * C * L + l0;
        float *restrict bn = a->out + n * C * L + l0;
        for (int64_t c = 0; c < C; c++) {
            lrn_window(an, C, L, c, a->before, a->after, a->alpha, a->k, bl, s);
            lrn_pow_neg(s, bl, a->beta, a->beta_kind);
            const float *restrict ac = an + c * L;
            float *restrict bc = bn + c * L;
            for (int64_t i = 0; i < bl; i++)
                bc[i] = ac[i] * s[i];
        }
    }
    return 0;
}

/* 1 when the scratch buffer could not be allocated */
static int lrn_backward_range(void *p, int64_t u0, int64_t u1)
{
    const struct lrn_args *a = (const struct lrn_args *)p;
    const int64_t C = a->C, L = a->L;
    const float coef = -2.0f * a->alpha * a->beta;
    float *buf = (float *)malloc((size_t)(2 * C * LRN_BLOCK) * sizeof(float));
    if (!buf)
        return 1;
    float *restrict T = buf;                  /* t_c = g_c s_c^-beta */
    float *restrict U = buf + C * LRN_BLOCK;  /* u_c = -2 alpha' beta t_c a_c / s_c */
    float s[LRN_BLOCK], sc[LRN_BLOCK], v[LRN_BLOCK];
    for (int64_t u = u0; u < u1; u++) {
        const int64_t n = u / a->blocks, l0 = (u % a->blocks) * LRN_BLOCK;
        const int64_t bl = L - l0 < LRN_BLOCK ? L - l0 : LRN_BLOCK;
        const float *restrict an = a->a + n * C * L + l0;
        const float *restrict gn = a->g + n * C * L + l0;
        float *restrict dn = a->out + n * C * L + l0;
        for (int64_t c = 0; c < C; c++) {
            lrn_window(an, C, L, c, a->before, a->after, a->alpha, a->k, bl, s);
            lrn_pow_neg_inv(s, sc, bl, a->beta, a->beta_kind);  /* sc = s^-beta, s <- 1 / s */
            const float *restrict ac = an + c * L, *restrict gc = gn + c * L;
            float *restrict tc = T + c * LRN_BLOCK, *restrict uc = U + c * LRN_BLOCK;
            for (int64_t i = 0; i < bl; i++) {
                tc[i] = gc[i] * sc[i];
                uc[i] = coef * tc[i] * (ac[i] * s[i]);
            }
        }
        /* the i whose window holds m: m - after .. m + before (the window mirrored) */
        for (int64_t m = 0; m < C; m++) {
            const float *restrict um = U + m * LRN_BLOCK;
            for (int64_t i = 0; i < bl; i++)
                v[i] = um[i];
            for (int64_t j = 1; j <= a->after && m - j >= 0; j++) {
                const float *restrict ur = U + (m - j) * LRN_BLOCK;
                for (int64_t i = 0; i < bl; i++)
                    v[i] += ur[i];
            }
            for (int64_t j = 1; j <= a->before && m + j < C; j++) {
                const float *restrict ur = U + (m + j) * LRN_BLOCK;
                for (int64_t i = 0; i < bl; i++)
                    v[i] += ur[i];
            }
            const float *restrict am = an + m * L, *restrict tm = T + m * LRN_BLOCK;
            float *restrict dm = dn + m * L;
            for (int64_t i = 0; i < bl; i++)
                dm[i] = tm[i] + am[i] * v[i];
        }
    }
    free(buf);
    return 0;
}

static int lrn_run(const float *a, const float *g, float *out, int64_t N, int64_t C, int64_t L,
                   int64_t before, int64_t after, float alpha, float beta, float k, int beta_kind,
                   int64_t threads, tr_range_fn fn)
{
    struct lrn_args args = {.a = a, .g = g, .out = out, .C = C, .L = L, .before = before, .after = after,
        .blocks = (L + LRN_BLOCK - 1) / LRN_BLOCK, .alpha = alpha, .beta = beta, .k = k,
        .beta_kind = beta_kind};
    return tr_parallel_for(N * args.blocks, threads, fn, &args);
}

/* b = a s^-beta */
int tr_lrn_forward(const float *a, float *b, int64_t N, int64_t C, int64_t L, int64_t before, int64_t after,
                   float alpha, float beta, float k, int beta_kind, int64_t threads)
{
    return lrn_run(a, NULL, b, N, C, L, before, after, alpha, beta, k, beta_kind, threads,
                   lrn_forward_range);
}

/* da from a and g = dL/db; 1 when memory ran out */
int tr_lrn_backward(const float *a, const float *g, float *da, int64_t N, int64_t C, int64_t L,
                    int64_t before, int64_t after, float alpha, float beta, float k, int beta_kind,
                    int64_t threads)
{
    return lrn_run(a, g, da, N, C, L, before, after, alpha, beta, k, beta_kind, threads,
                   lrn_backward_range);
}
