/* New CARN's head conv and residual body (13 blocks of 8 channels, 8 anchors) in one call.
 *
 * Why native: each block is eight tiny tensor operations in torch (1x1 regressors, 3x3 anchor
 * similarities, softmax, an 8-term mix, a 3x3 feature conv, an add) on 8-channel images. oneDNN runs
 * an 8 -> 8 3x3 convolution at about a third of this CPU's peak, and the other operations are memory
 * passes and dispatch. Here a block is two passes over the image, each pixel's 8 channels one AVX2
 * vector, with no intermediate tensor but the mixed regression.
 *
 * Layout: NHWC, channels innermost (8 floats = one vector). For block b, with x updated in place:
 *   pass 1 (regression) r = sum_k softmax_k(S * x + s) * (W_k x + w_k)        S: 3x3 anchor conv
 *   pass 2 (features)   x = x + F * r + f                                      F: 3x3 feature conv
 * Zero padding at the image borders, as torch's padding=1: both buffers carry a one-pixel zero
 * border. Weights are packed by the caller (engine/fast/native/__init__.py) so that the innermost
 * index is the output channel:
 *   reg_w [b][k][i][c], reg_b [b][k][c], sim_w [b][ty][tx][i][a], sim_b [b][a],
 *   feat_w [b][ty][tx][i][o], feat_b [b][o].
 * Rows of all images are split among `threads` OpenMP threads, with a barrier between passes. The
 * library links libgomp.so.1 by soname, so inside torch (which loads its own libgomp.so.1 first)
 * it shares torch's thread pool: a second pool would fight torch's threads, which spin for a few
 * milliseconds after each parallel operation (that made 2 threads no faster than 1 at 80^2).
 */

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Compiled for any x86-64; the loops below for AVX2 + FMA, which the caller checks first. */
int medsr_native_supported(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 1; /* other architectures: built for the host's own vector unit */
#endif
}

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma")
#endif

#define D 8 /* inner channels */
#define M 8 /* anchors */

typedef struct {
    float *x, *r;
    int n, h, w, blocks;
    const float *reg_w, *reg_b, *sim_w, *sim_b, *feat_w, *feat_b;
} job_t;

static inline __m256 set1(float v) { return _mm256_set1_ps(v); }

/* exp(t) for t <= 0 (softmax after subtracting the maximum): 2^n * p(r), |rel err| < 2e-7. */
static inline __m256 exp_nonpositive(__m256 t) {
    t = _mm256_max_ps(t, set1(-87.0f));
    const __m256 nf = _mm256_floor_ps(_mm256_fmadd_ps(t, set1(1.44269504f), set1(0.5f)));
    __m256 r = _mm256_fnmadd_ps(nf, set1(0.693359375f), t); /* ln 2 = 0.693359375 - 2.12194440e-4 */
    r = _mm256_fmadd_ps(nf, set1(2.12194440e-4f), r);
    __m256 p = set1(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, set1(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, set1(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, set1(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, set1(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, set1(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, set1(1.0f)));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(nf), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* every lane: the maximum (or sum) of the 8 lanes */
static inline __m256 all_max(__m256 v) {
    v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 1));
    v = _mm256_max_ps(v, _mm256_shuffle_ps(v, v, 0x4e));
    return _mm256_max_ps(v, _mm256_shuffle_ps(v, v, 0xb1));
}
static inline __m256 all_sum(__m256 v) {
    v = _mm256_add_ps(v, _mm256_permute2f128_ps(v, v, 1));
    v = _mm256_add_ps(v, _mm256_shuffle_ps(v, v, 0x4e));
    return _mm256_add_ps(v, _mm256_shuffle_ps(v, v, 0xb1));
}

/* acc[p] += 3x3 conv (D in, 8 out) at P neighbouring pixels; src: the top-left neighbour of the
 * first pixel in the zero-padded image, stride: floats per padded row. P independent chains hide
 * the FMA latency; each weight vector is loaded once for all P. */
static inline __attribute__((always_inline)) void conv3x3(const float *src, size_t stride,
                                                          const float *k, __m256 *acc, const int P) {
    for (int ty = 0; ty < 3; ty++)
        for (int tx = 0; tx < 3; tx++) {
            const float *base = src + ty * stride + tx * D;
            const float *kk = k + (ty * 3 + tx) * D * 8;
            for (int i = 0; i < D; i++) {
                const __m256 wv = _mm256_loadu_ps(kk + i * 8);
                for (int p = 0; p < P; p++)
                    acc[p] = _mm256_fmadd_ps(_mm256_broadcast_ss(base + p * D + i), wv, acc[p]);
            }
        }
}

/* pass 1 at P pixels: r = sum_k softmax_k(S * x + s) * (W_k x + w_k) */
static inline __attribute__((always_inline)) void regress_pixels(const float *x, float *r, size_t stride,
        const float *reg_w, const float *reg_b, const float *sim_w, const float *sim_b, const int P) {
    __m256 s[8];
    for (int p = 0; p < P; p++) s[p] = _mm256_loadu_ps(sim_b);
    conv3x3(x - stride - D, stride, sim_w, s, P);
    for (int p = 0; p < P; p++) {
        const __m256 e = exp_nonpositive(_mm256_sub_ps(s[p], all_max(s[p])));
        float weight[M];
        _mm256_storeu_ps(weight, _mm256_div_ps(e, all_sum(e)));
        const float *c = x + p * D;
        __m256 xb[D];
        for (int i = 0; i < D; i++) xb[i] = _mm256_broadcast_ss(c + i);
        __m256 out = _mm256_setzero_ps();
        for (int k = 0; k < M; k++) {
            __m256 reg = _mm256_loadu_ps(reg_b + k * D);
            for (int i = 0; i < D; i++) reg = _mm256_fmadd_ps(xb[i], _mm256_loadu_ps(reg_w + (k * D + i) * D), reg);
            out = _mm256_fmadd_ps(_mm256_set1_ps(weight[k]), reg, out);
        }
        _mm256_storeu_ps(r + p * D, out);
    }
}

/* pass 2 at P pixels: x += F * r + f */
static inline __attribute__((always_inline)) void feature_pixels(float *x, const float *r, size_t stride,
        const float *feat_w, const float *feat_b, const int P) {
    __m256 acc[8];
    for (int p = 0; p < P; p++) acc[p] = _mm256_loadu_ps(feat_b);
    conv3x3(r - stride - D, stride, feat_w, acc, P);
    for (int p = 0; p < P; p++) _mm256_storeu_ps(x + p * D, _mm256_add_ps(_mm256_loadu_ps(x + p * D), acc[p]));
}

/* Images are zero-padded by one pixel on every side (the caller's layout): no border cases. */
static inline size_t pixel(const job_t *j, int row, int xx) {
    const int img = row / j->h, y = row % j->h;
    return (((size_t)img * (j->h + 2) + y + 1) * (j->w + 2) + xx + 1) * D;
}

static void regress_rows(const job_t *j, int b, int row0, int row1) {
    const size_t stride = (size_t)(j->w + 2) * D;
    const float *reg_w = j->reg_w + (size_t)b * M * D * D, *reg_b = j->reg_b + (size_t)b * M * D;
    const float *sim_w = j->sim_w + (size_t)b * 9 * D * M, *sim_b = j->sim_b + (size_t)b * M;
    for (int row = row0; row < row1; row++) {
        int xx = 0;
        for (; xx + 8 <= j->w; xx += 8) {
            const size_t at = pixel(j, row, xx);
            regress_pixels(j->x + at, j->r + at, stride, reg_w, reg_b, sim_w, sim_b, 8);
        }
        for (; xx + 4 <= j->w; xx += 4) {
            const size_t at = pixel(j, row, xx);
            regress_pixels(j->x + at, j->r + at, stride, reg_w, reg_b, sim_w, sim_b, 4);
        }
        for (; xx < j->w; xx++) {
            const size_t at = pixel(j, row, xx);
            regress_pixels(j->x + at, j->r + at, stride, reg_w, reg_b, sim_w, sim_b, 1);
        }
    }
}

static void feature_rows(const job_t *j, int b, int row0, int row1) {
    const size_t stride = (size_t)(j->w + 2) * D;
    const float *feat_w = j->feat_w + (size_t)b * 9 * D * D, *feat_b = j->feat_b + (size_t)b * D;
    for (int row = row0; row < row1; row++) {
        int xx = 0;
        for (; xx + 8 <= j->w; xx += 8) {
            const size_t at = pixel(j, row, xx);
            feature_pixels(j->x + at, j->r + at, stride, feat_w, feat_b, 8);
        }
        for (; xx + 4 <= j->w; xx += 4) {
            const size_t at = pixel(j, row, xx);
            feature_pixels(j->x + at, j->r + at, stride, feat_w, feat_b, 4);
        }
        for (; xx < j->w; xx++) {
            const size_t at = pixel(j, row, xx);
            feature_pixels(j->x + at, j->r + at, stride, feat_w, feat_b, 1);
        }
    }
}

/* CARN's block (3x3 regressors) at P pixels: y = x + sum_k softmax_k(S * x + s) * (R_k * x + r_k).
 * reg_w [k][ty][tx][i][c], reg_b [k][c]; sim_w / sim_b as in pass 1 above. */
static inline __attribute__((always_inline)) void carn_pixels(const float *x, float *y, size_t stride,
        const float *reg_w, const float *reg_b, const float *sim_w, const float *sim_b, const int P) {
    __m256 s[4], acc[4], out[4];
    float weight[4][M];
    for (int p = 0; p < P; p++) s[p] = _mm256_loadu_ps(sim_b);
    conv3x3(x - stride - D, stride, sim_w, s, P);
    for (int p = 0; p < P; p++) {
        const __m256 e = exp_nonpositive(_mm256_sub_ps(s[p], all_max(s[p])));
        _mm256_storeu_ps(weight[p], _mm256_div_ps(e, all_sum(e)));
        out[p] = _mm256_loadu_ps(x + p * D);
    }
    for (int k = 0; k < M; k++) {
        for (int p = 0; p < P; p++) acc[p] = _mm256_loadu_ps(reg_b + k * D);
        conv3x3(x - stride - D, stride, reg_w + (size_t)k * 9 * D * D, acc, P);
        for (int p = 0; p < P; p++) out[p] = _mm256_fmadd_ps(_mm256_set1_ps(weight[p][k]), acc[p], out[p]);
    }
    for (int p = 0; p < P; p++) _mm256_storeu_ps(y + p * D, out[p]);
}

static void carn_rows(const job_t *src, float *dst, int b, int row0, int row1) {
    const size_t stride = (size_t)(src->w + 2) * D;
    const float *reg_w = src->reg_w + (size_t)b * M * 9 * D * D, *reg_b = src->reg_b + (size_t)b * M * D;
    const float *sim_w = src->sim_w + (size_t)b * 9 * D * M, *sim_b = src->sim_b + (size_t)b * M;
    for (int row = row0; row < row1; row++) {
        int xx = 0;
        for (; xx + 4 <= src->w; xx += 4) {
            const size_t at = pixel(src, row, xx);
            carn_pixels(src->x + at, dst + at, stride, reg_w, reg_b, sim_w, sim_b, 4);
        }
        for (; xx < src->w; xx++) {
            const size_t at = pixel(src, row, xx);
            carn_pixels(src->x + at, dst + at, stride, reg_w, reg_b, sim_w, sim_b, 1);
        }
    }
}

#define MAX_THREADS 64

int medsr_new_carn_channels(void) { return D * 100 + M; }

/* OpenMP threads for a kernel over `rows` image rows: the caller's count, at least 1, at most
 * MAX_THREADS and one per row (also used by new_carn_avx512.c). */
int medsr_team_size(int threads, int rows) {
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > rows) threads = rows;
    return threads < 1 ? 1 : threads;
}

/* CARN's regression body (AVX2, NHWC): a and b zeroed (n, h+2, w+2, D) buffers, a holding the input
 * in its interior; blocks alternate between them (output in a after an even number, b after an odd
 * one). Returns 0, or -1 for bad sizes. */
int medsr_carn_body(float *a, float *b, int n, int h, int w, int blocks, const float *reg_w,
                    const float *reg_b, const float *sim_w, const float *sim_b, int threads) {
    if (n < 1 || h < 1 || w < 1 || blocks < 0) return -1;
    const int rows = n * h;
    threads = medsr_team_size(threads, rows);
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        const int row0 = (int)((long)rows * t / used), row1 = (int)((long)rows * (t + 1) / used);
        for (int blk = 0; blk < blocks; blk++) {
            const job_t src = {.x = blk % 2 ? b : a, .n = n, .h = h, .w = w, .reg_w = reg_w,
                               .reg_b = reg_b, .sim_w = sim_w, .sim_b = sim_b};
            carn_rows(&src, blk % 2 ? a : b, blk, row0, row1);
#pragma omp barrier
        }
    }
    return 0;
}

/* The head conv (1 -> D channels, 3x3, zero padding) of image rows row0..row1-1 into x's interior. */
static void head_rows(const job_t *j, const float *img, const float *head_w, const float *head_b,
                      int row0, int row1) {
    const int h = j->h, w = j->w;
    const __m256 bias = _mm256_loadu_ps(head_b);
    for (int row = row0; row < row1; row++) {
        const int n = row / h, y = row % h;
        const float *src = img + (size_t)n * h * w;
        for (int xx = 0; xx < w; xx++) {
            __m256 acc = bias;
            for (int dy = -1; dy <= 1; dy++) {
                if (y + dy < 0 || y + dy >= h) continue;
                for (int dx = -1; dx <= 1; dx++) {
                    if (xx + dx < 0 || xx + dx >= w) continue;
                    acc = _mm256_fmadd_ps(_mm256_broadcast_ss(src + (size_t)(y + dy) * w + xx + dx),
                                          _mm256_loadu_ps(head_w + ((dy + 1) * 3 + dx + 1) * D), acc);
                }
            }
            _mm256_storeu_ps(j->x + pixel(j, row, xx), acc);
        }
    }
}

/* New CARN's head and body: img (n x h x w, one channel) -> x, n images of h x w pixels, NHWC with
 * D channels, each zero-padded to (h+2) x (w+2). x and r (scratch of the same size) must come
 * zeroed: their padding stays zero. head_w [ty][tx][c], head_b [c]. Returns 0, or -1 for bad sizes. */
int medsr_new_carn_trunk(const float *img, float *x, float *r, int n, int h, int w, const float *head_w,
                         const float *head_b, int blocks, const float *reg_w, const float *reg_b,
                         const float *sim_w, const float *sim_b, const float *feat_w,
                         const float *feat_b, int threads) {
    if (n < 1 || h < 1 || w < 1 || blocks < 0) return -1;
    const int rows = n * h;
    threads = medsr_team_size(threads, rows);
    const job_t job = {.x = x, .r = r, .n = n, .h = h, .w = w, .blocks = blocks, .reg_w = reg_w,
                       .reg_b = reg_b, .sim_w = sim_w, .sim_b = sim_b, .feat_w = feat_w,
                       .feat_b = feat_b};
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        const int row0 = (int)((long)rows * t / used), row1 = (int)((long)rows * (t + 1) / used);
        head_rows(&job, img, head_w, head_b, row0, row1);
#pragma omp barrier
        for (int b = 0; b < blocks; b++) {
            regress_rows(&job, b, row0, row1);
#pragma omp barrier
            feature_rows(&job, b, row0, row1);
#pragma omp barrier
        }
    }
    return 0;
}
