/*
 * Fused colour ops of tricksref.augment.color: brightness, contrast, saturation and hue on a batch of
 * (B, C, H, W) images, float32 in [0, 1] or uint8 in [0, 255], each image in its own order of the ops.
 *
 * Why C: the torch path makes ~28 passes over the whole batch and ~300 torch calls per ColorJitter call;
 * here each image (3 x 32 x 32 floats = 12 KB) is loaded once into a float buffer that stays in L1, all
 * its ops run on it in that image's order, and it is stored once. No Python, no torch headers: the loader
 * (_native.py) compiles this file, after tricksref/_parallel.h (tr_parallel_for), with the system C
 * compiler and calls it through ctypes with the data pointers of contiguous CPU tensors.
 *
 * Arithmetic: float32, op for op the torch path of color.py (torchvision v2 semantics), with fmaf exactly
 * where torch's AVX2 kernels fuse (add with alpha, addcmul) and no other contraction (-ffp-contract=off), so
 * the result does not depend on what the compiler fuses. With x the image, f the factor, bound = 1 (float)
 * or 255 (uint8 levels) and gray = 0.2989 R + 0.587 G + 0.114 B (floored for uint8; x itself when C = 1):
 *
 *   brightness: x <- clamp(f x, 0, bound)
 *   contrast:   x <- clamp(f x + (1 - f) mean(gray), 0, bound)
 *   saturation: x <- clamp(f x + (1 - f) gray, 0, bound)
 *   hue:        H <- (H + f) mod 1 in HSV, S and V kept (see hue() below)
 *
 * uint8 images hold integer levels in float between the ops: every blend truncates (floor, values >= 0),
 * the hue works on x / 255 and returns floor(255.999 rgb), as torchvision does.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* bumped whenever the signature of tr_color_ops changes; checked by the loader */
#define TR_ABI_VERSION 1

enum { BRIGHTNESS = 0, CONTRAST = 1, SATURATION = 2, HUE = 3 };

/* the constants as torch sees them: Python doubles rounded to float32 (not the decimal rounded directly) */
#define GRAY_R ((float)0.2989)
#define GRAY_G ((float)0.587)
#define GRAY_B ((float)0.114)

/* clamp(v, 0, bound), truncated for uint8 levels; NaN passes through, as in torch.clamp */
static inline float finish(float v, float bound, int integer)
{
    v = v < 0.0f ? 0.0f : v;
    v = v > bound ? bound : v;
    return integer ? floorf(v) : v;
}

/* gray = 0.2989 R + 0.587 G + 0.114 B, in torch's order: r w_r, then two fused multiply-adds */
static inline float gray3(float r, float g, float b, int integer)
{
    float y = fmaf(b, GRAY_B, fmaf(g, GRAY_G, r * GRAY_R));
    return integer ? floorf(y) : y;
}

/* brightness: x <- clamp(f x, 0, bound), all n = C H W values */
static void brightness(float *restrict x, int64_t n, float f, float bound, int integer)
{
    for (int64_t p = 0; p < n; p++)
        x[p] = finish(x[p] * f, bound, integer);
}

/* contrast: x <- clamp(f x + (1 - f) mean(gray), 0, bound), with mean(gray) = sum / (H W).
 * The sum runs in double over 8 fixed lanes: deterministic, exact for uint8 levels (as torch's float32 sum
 * is below 2^24), within an ulp of torch's float32 cascade sum for float images. */
static void contrast(float *restrict x, int64_t channels, int64_t hw, float f, float bound, int integer)
{
    const float *r = x, *g = x + hw, *b = x + 2 * hw;
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t p = 0;
    if (channels == 3) {
        for (; p + 8 <= hw; p += 8) {
            float y[8];
            for (int k = 0; k < 8; k++)
                y[k] = gray3(r[p + k], g[p + k], b[p + k], integer);
            for (int k = 0; k < 8; k++)
                lane[k] += y[k];
        }
        for (; p < hw; p++)
            lane[0] += gray3(r[p], g[p], b[p], integer);
    } else {
        for (; p + 8 <= hw; p += 8)
            for (int k = 0; k < 8; k++)
                lane[k] += r[p + k];
        for (; p < hw; p++)
            lane[0] += r[p];
    }
    double sum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    float mean = (float)sum / (float)hw;
    float m = mean * (1.0f - f);  /* (1 - f) mean: the flat partner image */
    for (int64_t q = 0; q < channels * hw; q++)
        x[q] = finish(fmaf(x[q], f, m), bound, integer);
}

/* saturation: x <- clamp(f x + (1 - f) gray, 0, bound), RGB only */
static void saturation(float *restrict x, int64_t hw, float f, float bound, int integer)
{
    float *restrict r = x, *restrict g = x + hw, *restrict b = x + 2 * hw;
    const float c = 1.0f - f;
    for (int64_t p = 0; p < hw; p++) {
        float y = gray3(r[p], g[p], b[p], integer) * c;
        r[p] = finish(fmaf(r[p], f, y), bound, integer);
        g[p] = finish(fmaf(g[p], f, y), bound, integer);
        b[p] = finish(fmaf(b[p], f, y), bound, integer);
    }
}

/* frac(v) = v - trunc(v), as torch.frac */
static inline float frac(float v) { return v - truncf(v); }

static inline float max2(float a, float b) { return a > b ? a : b; }
static inline float min2(float a, float b) { return a < b ? a : b; }

/* one channel of the turned pixel: clamp(V - 2c + 6c D, V - c, V), D = |frac(H' + shift) - 1/2| */
static inline float hue_channel(float h6, float shift, float low, float c6, float vmin, float vmax)
{
    float d = fabsf(frac(fmaf(h6, (float)(1.0 / 6.0), shift)) - 0.5f);
    float v = fmaf(c6, d, low);
    return min2(max2(v, vmin), vmax);
}

/* hue: RGB -> HSV, H <- (H + f) mod 1, back to RGB, pixel by pixel, branchless.
 *
 * With V = max(R, G, B), c = V - min(R, G, B) and m the largest channel (red wins ties, then green; the
 * candidates of tied channels agree mod 6 c, and the larger is taken):
 *     6 H c + c = (G - B) + c,  (B - R) + 3 c,  (R - G) + 5 c   for m = R, G, B,
 * so h6 = 6 H + 1 (0 for grey pixels, where c = 0). Each channel n = 5, 3, 1 (R, G, B) of the turned pixel
 * is V - c clamp(min(k, 4 - k), 0, 1), k = (n + 6 (H + f)) mod 6, written as
 *     clamp(V - 2 c + 6 c D, V - c, V),  D = |frac(h6 / 6 + frac(f + n / 6 + 1)) - 1/2|,
 * the distance in turns from the middle of the channel's dark third. S and V are kept, so the clamp keeps
 * every channel within [min, max] exactly.
 */
static void hue(float *restrict x, int64_t hw, float f, int integer)
{
    float *restrict r = x, *restrict g = x + hw, *restrict b = x + 2 * hw;
    /* frac(f + n / 6 + 1) per channel, f >= -0.5, as color._hue_shift computes it */
    const float shift_r = frac((f + (float)(5.0 / 6.0)) + 1.0f);
    const float shift_g = frac((f + (float)(3.0 / 6.0)) + 1.0f);
    const float shift_b = frac((f + (float)(1.0 / 6.0)) + 1.0f);
    const float scale_in = integer ? (float)(1.0 / 255.0) : 1.0f;
    for (int64_t p = 0; p < hw; p++) {
        float R = r[p] * scale_in, G = g[p] * scale_in, B = b[p] * scale_in;  /* exact for float: * 1 */
        float vmax = max2(max2(R, G), B), vmin = min2(min2(R, G), B);
        float c = vmax - vmin;
        float cand_r = R == vmax ? fmaf(c, 1.0f, G - B) : 0.0f;
        float cand_g = G == vmax ? fmaf(c, 3.0f, B - R) : 0.0f;
        float cand_b = B == vmax ? fmaf(c, 5.0f, R - G) : 0.0f;
        float h6 = max2(max2(cand_r, cand_g), cand_b) / c;
        h6 = h6 == h6 ? h6 : 0.0f;  /* grey: 0 / 0 */
        float low = vmax - 2.0f * c, c6 = 6.0f * c;
        R = hue_channel(h6, shift_r, low, c6, vmin, vmax);
        G = hue_channel(h6, shift_g, low, c6, vmin, vmax);
        B = hue_channel(h6, shift_b, low, c6, vmin, vmax);
        if (integer) {  /* torchvision's float -> uint8: times 256 - 1e-3, truncated */
            R = floorf(R * (float)255.999);
            G = floorf(G * (float)255.999);
            B = floorf(B * (float)255.999);
        }
        r[p] = R;
        g[p] = G;
        b[p] = B;
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* driver */

typedef struct {
    const void *x;
    void *out;
    int u8;
    int64_t channels, hw;
    const int64_t *order;
    int64_t order_stride, rounds;
    const float *factor[4];
} job_t;

/* images first .. last - 1; 1 when the buffer could not be allocated */
static int color_range(void *arg, int64_t first, int64_t last)
{
    const job_t *job = (const job_t *)arg;
    const int64_t n = job->channels * job->hw;
    float *buf = NULL;
    if (job->u8 && n > 0) {
        buf = (float *)malloc((size_t)n * sizeof(float));
        if (!buf)
            return 1;
    }
    const float bound = job->u8 ? 255.0f : 1.0f;
    for (int64_t i = first; i < last; i++) {
        if (job->u8) {
            const uint8_t *src = (const uint8_t *)job->x + i * n;
            for (int64_t p = 0; p < n; p++)
                buf[p] = (float)src[p];
        } else {
            buf = (float *)job->out + i * n;
            memcpy(buf, (const float *)job->x + i * n, (size_t)n * sizeof(float));
        }
        const int64_t *ops = job->order + i * job->order_stride;
        for (int64_t k = 0; k < job->rounds; k++) {
            int64_t op = ops[k];
            if (op < 0 || op > 3 || !job->factor[op])
                continue;  /* an op that is off */
            float f = job->factor[op][i];
            switch (op) {
            case BRIGHTNESS: brightness(buf, n, f, bound, job->u8); break;
            case CONTRAST: contrast(buf, job->channels, job->hw, f, bound, job->u8); break;
            case SATURATION: saturation(buf, job->hw, f, bound, job->u8); break;
            case HUE: hue(buf, job->hw, f, job->u8); break;
            }
        }
        if (job->u8) {  /* integer levels in [0, 255]: the cast is exact */
            uint8_t *dst = (uint8_t *)job->out + i * n;
            for (int64_t p = 0; p < n; p++)
                dst[p] = (uint8_t)buf[p];
        }
    }
    if (job->u8)
        free(buf);
    return 0;
}

int tr_abi_version(void) { return TR_ABI_VERSION; }

/*
 * Apply the colour ops to `batch` images of `channels` x `hw` values (C = 1 or 3; saturation and hue need
 * C = 3, which the caller checks), reading x and writing out (both contiguous, the same dtype: uint8 when
 * u8, else float32; out must not overlap x). Image i runs op order[i * order_stride + k] for k < rounds
 * (0 brightness, 1 contrast, 2 saturation, 3 hue), with factor[op][i]; an op whose factor pointer is NULL,
 * or an id outside 0..3, is skipped. order_stride 0 gives every image the same order. Images are split
 * over `threads` threads in contiguous blocks; every image's result is the same whatever the split.
 * Returns 0, or 1 when a buffer could not be allocated.
 */
int tr_color_ops(const void *x, void *out, int u8, int64_t batch, int64_t channels, int64_t hw,
                 const int64_t *order, int64_t order_stride, int64_t rounds,
                 const float *brightness_f, const float *contrast_f, const float *saturation_f,
                 const float *hue_f, int64_t threads)
{
    job_t job = {x, out, u8, channels, hw, order, order_stride, rounds,
                 {brightness_f, contrast_f, saturation_f, hue_f}};
    return tr_parallel_for(batch, threads, color_range, &job);
}
