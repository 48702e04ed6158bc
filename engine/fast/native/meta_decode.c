/* Meta-Upscale decode of one box (engine/fast/meta_upscale.py, "pixelwise" in one pass).
 *
 * For output pixel (i, j) of the box, with LR pixel p = (row_pixel[i], col_pixel[j]) and offsets
 * oy = row_off[i], ox = col_off[j]:
 *   out[i, j] += Qy(p) oy + Qx(p) ox + Qs(p) / scale + Q0(p) + sum_m max(u[i, m], mv[j, m]) * G(p, m)
 * where q = (Qy, Qx, Qs, Q0) per LR pixel (linear units, bias and column terms folded), u (per
 * output row) and mv (minus v, per output column) the mixed units' row and column terms, G the
 * mixed units' maps. `out` holds the bicubic skip on entry. The sum over m is one AVX2 vector
 * per 8 units (the last one masked), so a pixel costs about 2 M / 8 loads and M / 8 max + FMA,
 * where torch needs a gather, a maximum, a multiply and a sum pass over a band of memory.
 * Output rows are split among `threads` OpenMP threads (torch's pool: see new_carn.c).
 */

#include <immintrin.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma")
#endif

#define MAX_UNITS 256

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

int medsr_meta_decode(const float *q, float inv_scale, const float *g, int h, int w, int units,
                      const int64_t *row_pixel, const float *row_off, int bh,
                      const int64_t *col_pixel, const float *col_off, int bw, const float *u,
                      const float *mv, float *out, int threads) {
    if (h < 1 || w < 1 || bh < 1 || bw < 1 || units < 0 || units > MAX_UNITS) return -1;
    for (int i = 0; i < bh; i++)
        if (row_pixel[i] < 0 || row_pixel[i] >= h) return -1;
    for (int j = 0; j < bw; j++)
        if (col_pixel[j] < 0 || col_pixel[j] >= w) return -1;
    if (threads < 1) threads = 1;
    if (threads > bh) threads = bh;
    const int full = units / 8, rest = units % 8;
    int lanes[8];
    for (int k = 0; k < 8; k++) lanes[k] = k < rest ? -1 : 0;
    const __m256i tail = _mm256_loadu_si256((const __m256i *)lanes);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < bh; i++) {
        const size_t lr_row = (size_t)row_pixel[i] * w;
        const float oy = row_off[i];
        const float *ui = u + (size_t)i * units;
        __m256 urow[MAX_UNITS / 8 + 1];
        for (int b = 0; b < full; b++) urow[b] = _mm256_loadu_ps(ui + 8 * b);
        if (rest) urow[full] = _mm256_maskload_ps(ui + 8 * full, tail);
        float *o = out + (size_t)i * bw;
        for (int j = 0; j < bw; j++) {
            const size_t p = lr_row + (size_t)col_pixel[j];
            const float *gp = g + p * units, *mj = mv + (size_t)j * units;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
            int b = 0;
            for (; b + 1 < full; b += 2) {
                acc0 = _mm256_fmadd_ps(_mm256_max_ps(urow[b], _mm256_loadu_ps(mj + 8 * b)),
                                       _mm256_loadu_ps(gp + 8 * b), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_max_ps(urow[b + 1], _mm256_loadu_ps(mj + 8 * b + 8)),
                                       _mm256_loadu_ps(gp + 8 * b + 8), acc1);
            }
            if (b < full)
                acc0 = _mm256_fmadd_ps(_mm256_max_ps(urow[b], _mm256_loadu_ps(mj + 8 * b)),
                                       _mm256_loadu_ps(gp + 8 * b), acc0);
            if (rest)
                acc1 = _mm256_fmadd_ps(_mm256_max_ps(urow[full], _mm256_maskload_ps(mj + 8 * full, tail)),
                                       _mm256_maskload_ps(gp + 8 * full, tail), acc1);
            const float *qp = q + p * 4;
            o[j] += qp[0] * oy + qp[1] * col_off[j] + qp[2] * inv_scale + qp[3] + hsum(_mm256_add_ps(acc0, acc1));
        }
    }
    return 0;
}
