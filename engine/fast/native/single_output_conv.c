/* Direct k x k convolution to ONE output channel (a network's last layer, at HR resolution), which
 * oneDNN runs far below peak: bench/models.py measured SRGAN's 48 -> 1 9x9 tail at 320^2 at
 * 17 GFLOP/s, 46 ms of an 80 ms x4 upscale.
 *
 * NHWC input (what the channels_last networks hold), zero-padded by the caller to (h+k-1, w+k-1):
 * for one tap row ty, the k taps of output pixel x read the k*cin floats X[y+ty, x..x+k-1, :], which
 * are contiguous, and the weights w[ty][tx][c] are too. So a pixel is k dot products of length k*cin,
 * vectorised by the compiler (omp simd reductions), four pixels at a time sharing each weight load.
 * Compiled for AVX-512, AVX2 + FMA and plain x86-64, the best chosen at load time (target_clones).
 * Output rows are split among `threads` OpenMP threads (torch's pool: see new_carn.c).
 */

#include <omp.h>
#include <stddef.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define CLONES
#endif

CLONES static void conv_row(const float *restrict x, size_t row_stride, int cin, int k,
                            const float *restrict w, float bias, float *restrict out, int width) {
    const int span = k * cin; /* one tap row of one pixel */
    int j = 0;
    for (; j + 4 <= width; j += 4) {
        float s0 = bias, s1 = bias, s2 = bias, s3 = bias;
        for (int ty = 0; ty < k; ty++) {
            const float *restrict a = x + ty * row_stride + (size_t)j * cin;
            const float *restrict wt = w + (size_t)ty * span;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
            for (int i = 0; i < span; i++) {
                const float wi = wt[i];
                s0 += a[i] * wi;
                s1 += a[i + cin] * wi;
                s2 += a[i + 2 * cin] * wi;
                s3 += a[i + 3 * cin] * wi;
            }
        }
        out[j] = s0, out[j + 1] = s1, out[j + 2] = s2, out[j + 3] = s3;
    }
    for (; j < width; j++) {
        float s = bias;
        for (int ty = 0; ty < k; ty++) {
            const float *restrict a = x + ty * row_stride + (size_t)j * cin;
            const float *restrict wt = w + (size_t)ty * span;
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < span; i++) s += a[i] * wt[i];
        }
        out[j] = s;
    }
}

/* x (n, h+k-1, w+k-1, cin) NHWC, weight [ty][tx][c], out (n, h, w). Returns 0, or -1 on bad sizes. */
int medsr_single_output_conv(const float *x, int n, int cin, int h, int w, int k, const float *weight,
                             float bias, float *out, int threads) {
    if (n < 1 || cin < 1 || h < 1 || w < 1 || k < 1) return -1;
    const size_t row_stride = ((size_t)w + k - 1) * cin, image = row_stride * (h + k - 1);
    const long rows = (long)n * h;
    if (threads < 1) threads = 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        const int y = (int)(r % h), b = (int)(r / h);
        conv_row(x + (size_t)b * image + (size_t)y * row_stride, row_stride, cin, k, weight, bias,
                 out + ((size_t)b * h + y) * w, w);
    }
    return 0;
}
