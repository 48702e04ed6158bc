/* New CARN's head conv and residual body for CPUs with AVX-512: the same computation as new_carn.c,
 * laid out for 16-wide vectors; and CARN's regression body (3x3 regressors) in the same layout.
 *
 * Why a second layout: new_carn.c keeps a pixel's 8 channels in one AVX2 vector, which is the
 * natural width there but only half an AVX-512 register, so on an AVX-512 CPU it reaches at most half
 * of the matmul peak. Here images are planar (N, 8, h+2, w+2), zero-padded by one pixel, and a vector
 * holds 16 neighbouring pixels of one channel:
 *   - a 3x3 convolution 8 -> 8 at 16 pixels is 8 accumulators x 72 FMAs, each weight a broadcast
 *     scalar and each input a (shifted, unaligned) row load shared by the 8 outputs;
 *   - the softmax over the 8 anchors is element-wise across 8 vectors: no horizontal operations.
 * Pass 1 reads x and writes r, pass 2 reads r and adds into x, as in new_carn.c; rows are split among
 * `threads` OpenMP threads (torch's pool) with a barrier between passes. The last group of a row is
 * masked, so any width works and the zero border is never written.
 * Weights in torch's own layouts: head_w [c][ty][tx], sim_w [b][a][i][ty][tx], reg_w [b][k][c][i]
 * (the 1x1 regressors' output channel k*8 + c), feat_w [b][o][i][ty][tx].
 */

#include <immintrin.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>

int medsr_team_size(int threads, int rows); /* new_carn.c */

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx512f,avx512dq,fma")

#define D 8 /* inner channels */
#define M 8 /* anchors */
#define V 16

int medsr_native_avx512_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}

typedef struct {
    float *x, *r;
    int h, w, blocks;
    const float *reg_w, *reg_b, *sim_w, *sim_b, *feat_w, *feat_b;
} job512_t;

static inline __m512 set1(float v) { return _mm512_set1_ps(v); }

/* exp(t) for t <= 0, the same polynomial as new_carn.c (|rel err| < 2e-7) */
static inline __m512 exp_nonpositive(__m512 t) {
    t = _mm512_max_ps(t, set1(-87.0f));
    const __m512 nf = _mm512_roundscale_ps(_mm512_fmadd_ps(t, set1(1.44269504f), set1(0.5f)),
                                           _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(nf, set1(0.693359375f), t);
    r = _mm512_fmadd_ps(nf, set1(2.12194440e-4f), r);
    __m512 p = set1(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, set1(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, set1(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, set1(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, set1(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, set1(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, set1(1.0f)));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(nf), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

/* acc[o] += sum_{i, ty, tx} k[o][i][ty][tx] * src[i][ty][tx + lane], 16 lanes (masked). src points
 * at the top-left neighbour of the first pixel in channel 0; plane: floats per channel. */
static inline __attribute__((always_inline)) void conv3x3(const float *src, size_t stride, size_t plane,
                                                          const float *k, __m512 acc[D], __mmask16 m) {
    for (int i = 0; i < D; i++)
        for (int ty = 0; ty < 3; ty++)
            for (int tx = 0; tx < 3; tx++) {
                const __m512 v = _mm512_maskz_loadu_ps(m, src + i * plane + ty * stride + tx);
                const float *kk = k + i * 9 + ty * 3 + tx;
                for (int o = 0; o < D; o++) acc[o] = _mm512_fmadd_ps(set1(kk[o * D * 9]), v, acc[o]);
            }
}

static inline __mmask16 lanes(int x0, int w) {
    const int n = w - x0 >= V ? V : w - x0;
    return (__mmask16)((1u << n) - 1u);
}

/* s[a] = exp(S * x + s - max) for the 8 anchors at 16 pixels; returns 1 / sum_a s[a] (the softmax
 * weights are s[a] times it). src: the top-left neighbour of the first pixel in channel 0. */
static inline __attribute__((always_inline)) __m512 anchor_softmax(const float *src, size_t stride,
        size_t plane, const float *sim_w, const float *sim_b, __mmask16 m, __m512 s[M]) {
    for (int a = 0; a < M; a++) s[a] = set1(sim_b[a]);
    conv3x3(src, stride, plane, sim_w, s, m);
    __m512 top = s[0];
    for (int a = 1; a < M; a++) top = _mm512_max_ps(top, s[a]);
    __m512 total = _mm512_setzero_ps();
    for (int a = 0; a < M; a++) {
        s[a] = exp_nonpositive(_mm512_sub_ps(s[a], top));
        total = _mm512_add_ps(total, s[a]);
    }
    return _mm512_div_ps(set1(1.0f), total);
}

/* pass 1 on image row y (interior coordinates) of image `img` */
static void regress_row(const job512_t *j, int b, float *x, float *r, int y) {
    const size_t stride = (size_t)j->w + 2, plane = stride * (j->h + 2);
    const float *reg_w = j->reg_w + (size_t)b * M * D * D, *reg_b = j->reg_b + (size_t)b * M * D;
    const float *sim_w = j->sim_w + (size_t)b * M * D * 9, *sim_b = j->sim_b + (size_t)b * M;
    for (int x0 = 0; x0 < j->w; x0 += V) {
        const __mmask16 m = lanes(x0, j->w);
        __m512 s[M];
        const __m512 inv = anchor_softmax(x + (size_t)y * stride + x0, stride, plane, sim_w, sim_b, m, s);
        const size_t centre = (size_t)(y + 1) * stride + x0 + 1;
        __m512 xc[D], out[D];
        for (int i = 0; i < D; i++) {
            xc[i] = _mm512_maskz_loadu_ps(m, x + i * plane + centre);
            out[i] = _mm512_setzero_ps();
        }
        for (int k = 0; k < M; k++) {
            const __m512 weight = _mm512_mul_ps(s[k], inv);
            for (int c = 0; c < D; c++) {
                const float *wk = reg_w + (k * D + c) * D;
                __m512 reg = set1(reg_b[k * D + c]);
                for (int i = 0; i < D; i++) reg = _mm512_fmadd_ps(set1(wk[i]), xc[i], reg);
                out[c] = _mm512_fmadd_ps(weight, reg, out[c]);
            }
        }
        for (int c = 0; c < D; c++) _mm512_mask_storeu_ps(r + c * plane + centre, m, out[c]);
    }
}

/* pass 2 on image row y: x += F * r + f */
static void feature_row(const job512_t *j, int b, float *x, const float *r, int y) {
    const size_t stride = (size_t)j->w + 2, plane = stride * (j->h + 2);
    const float *feat_w = j->feat_w + (size_t)b * D * D * 9, *feat_b = j->feat_b + (size_t)b * D;
    for (int x0 = 0; x0 < j->w; x0 += V) {
        const __mmask16 m = lanes(x0, j->w);
        __m512 acc[D];
        for (int o = 0; o < D; o++) acc[o] = set1(feat_b[o]);
        conv3x3(r + (size_t)y * stride + x0, stride, plane, feat_w, acc, m);
        const size_t centre = (size_t)(y + 1) * stride + x0 + 1;
        for (int o = 0; o < D; o++) {
            float *dst = x + o * plane + centre;
            _mm512_mask_storeu_ps(dst, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), acc[o]));
        }
    }
}

/* head conv (1 -> D, 3x3) of row y from the zero-padded input image (h+2) x (w+2) */
static void head_row(const job512_t *j, const float *img, const float *head_w, const float *head_b,
                     float *x, int y) {
    const size_t stride = (size_t)j->w + 2, plane = stride * (j->h + 2);
    for (int x0 = 0; x0 < j->w; x0 += V) {
        const __mmask16 m = lanes(x0, j->w);
        __m512 acc[D];
        for (int c = 0; c < D; c++) acc[c] = set1(head_b[c]);
        for (int ty = 0; ty < 3; ty++)
            for (int tx = 0; tx < 3; tx++) {
                const __m512 v = _mm512_maskz_loadu_ps(m, img + (size_t)(y + ty) * stride + x0 + tx);
                for (int c = 0; c < D; c++) acc[c] = _mm512_fmadd_ps(set1(head_w[c * 9 + ty * 3 + tx]), v, acc[c]);
            }
        const size_t centre = (size_t)(y + 1) * stride + x0 + 1;
        for (int c = 0; c < D; c++) _mm512_mask_storeu_ps(x + c * plane + centre, m, acc[c]);
    }
}

/* One CARN block (3x3 regressors) on image row y: y_out = x + sum_k softmax_k(S * x + s) *
 * (R_k * x + r_k). The block reads x's neighbourhood, so it writes another buffer. reg_w [k][c][i][ty][tx]
 * (torch's (M*D, D, 3, 3), output channel k*D + c), sim_w [a][i][ty][tx]. */
static void carn_block_row(int h, int w, const float *x, float *out_img, int y, const float *reg_w,
                           const float *reg_b, const float *sim_w, const float *sim_b) {
    const size_t stride = (size_t)w + 2, plane = stride * (h + 2);
    for (int x0 = 0; x0 < w; x0 += V) {
        const __mmask16 m = lanes(x0, w);
        const float *src = x + (size_t)y * stride + x0;
        __m512 s[M];
        const __m512 inv = anchor_softmax(src, stride, plane, sim_w, sim_b, m, s);
        const size_t centre = (size_t)(y + 1) * stride + x0 + 1;
        __m512 out[D];
        for (int c = 0; c < D; c++) out[c] = _mm512_maskz_loadu_ps(m, x + c * plane + centre);
        for (int k = 0; k < M; k++) {
            __m512 acc[D];
            for (int c = 0; c < D; c++) acc[c] = set1(reg_b[k * D + c]);
            conv3x3(src, stride, plane, reg_w + (size_t)k * D * D * 9, acc, m);
            const __m512 weight = _mm512_mul_ps(s[k], inv);
            for (int c = 0; c < D; c++) out[c] = _mm512_fmadd_ps(weight, acc[c], out[c]);
        }
        for (int c = 0; c < D; c++) _mm512_mask_storeu_ps(out_img + c * plane + centre, m, out[c]);
    }
}


/* CARN's regression body (blocks of 8 channels, 8 anchors, 3x3 regressors): a and b are zeroed
 * (n, D, h+2, w+2) buffers, a holding the body's input in its interior; blocks alternate between
 * them, so the output is in a after an even number of blocks, in b after an odd one. Returns 0, -1
 * for bad sizes, -2 without AVX-512. */
int medsr_carn_body_planar(float *a, float *b, int n, int h, int w, int blocks, const float *reg_w,
                           const float *reg_b, const float *sim_w, const float *sim_b, int threads) {
    if (n < 1 || h < 1 || w < 1 || blocks < 0) return -1;
    if (!medsr_native_avx512_supported()) return -2;
    const int rows = n * h;
    threads = medsr_team_size(threads, rows);
    const size_t volume = (size_t)(h + 2) * (w + 2) * D;
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        const int row0 = (int)((long)rows * t / used), row1 = (int)((long)rows * (t + 1) / used);
        for (int blk = 0; blk < blocks; blk++) {
            const float *src = blk % 2 ? b : a;
            float *dst = blk % 2 ? a : b;
            const float *rw = reg_w + (size_t)blk * M * D * D * 9, *rb = reg_b + (size_t)blk * M * D;
            const float *sw = sim_w + (size_t)blk * M * D * 9, *sb = sim_b + (size_t)blk * M;
            for (int row = row0; row < row1; row++)
                carn_block_row(h, w, src + (row / h) * volume, dst + (row / h) * volume, row % h, rw, rb,
                               sw, sb);
#pragma omp barrier
        }
    }
    return 0;
}

/* img: n zero-padded single-channel images (h+2) x (w+2); x, r: zeroed (n, D, h+2, w+2) buffers,
 * x gets the trunk's output in its interior. Returns 0, -1 for bad sizes, -2 without AVX-512. */
int medsr_new_carn_trunk_planar(const float *img, float *x, float *r, int n, int h, int w,
                                const float *head_w, const float *head_b, int blocks,
                                const float *reg_w, const float *reg_b, const float *sim_w,
                                const float *sim_b, const float *feat_w, const float *feat_b,
                                int threads) {
    if (n < 1 || h < 1 || w < 1 || blocks < 0) return -1;
    if (!medsr_native_avx512_supported()) return -2;
    const int rows = n * h;
    threads = medsr_team_size(threads, rows);
    const size_t image = (size_t)(h + 2) * (w + 2), volume = image * D;
    const job512_t job = {.x = x, .r = r, .h = h, .w = w, .blocks = blocks, .reg_w = reg_w,
                          .reg_b = reg_b, .sim_w = sim_w, .sim_b = sim_b, .feat_w = feat_w,
                          .feat_b = feat_b};
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        const int row0 = (int)((long)rows * t / used), row1 = (int)((long)rows * (t + 1) / used);
        for (int row = row0; row < row1; row++)
            head_row(&job, img + (row / h) * image, head_w, head_b, x + (row / h) * volume, row % h);
#pragma omp barrier
        for (int b = 0; b < blocks; b++) {
            for (int row = row0; row < row1; row++)
                regress_row(&job, b, x + (row / h) * volume, r + (row / h) * volume, row % h);
#pragma omp barrier
            for (int row = row0; row < row1; row++)
                feature_row(&job, b, x + (row / h) * volume, r + (row / h) * volume, row % h);
#pragma omp barrier
        }
    }
    return 0;
}

#else
int medsr_native_avx512_supported(void) { return 0; }
int medsr_carn_body_planar(float *a, float *b, int n, int h, int w, int blocks, const float *reg_w,
                           const float *reg_b, const float *sim_w, const float *sim_b, int threads) {
    return -2;
}
int medsr_new_carn_trunk_planar(const float *img, float *x, float *r, int n, int h, int w,
                                const float *head_w, const float *head_b, int blocks,
                                const float *reg_w, const float *reg_b, const float *sim_w,
                                const float *sim_b, const float *feat_w, const float *feat_b,
                                int threads) {
    return -2;
}
#endif
