/* Bicubic upscale of a box of the output (engine/fast/resample.py, bicubic_resize_box) in one call.
 *
 * The same coordinates and weights as engine.models.blocks.bicubic_axis: output pixel i of an axis
 * reads input position ((2i + 1) in - out) / (2 out), Keys a = -0.75, taps clamped to the input,
 * weights computed in double and rounded to float. Columns first, over only the input rows the box
 * reads (4 gathered taps per value), then rows: each output row is 4 contiguous rows of that buffer
 * times their weights, which the compiler vectorises. The torch path needs ~40 small operations for
 * the same box, and each gives the interpreter back to other threads: on the viewer's GUI thread,
 * beside a worker, that wait was most of the zoom placeholder's tail.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma")
#endif

static void axis_taps(int in_size, int out_size, int start, int stop, int *taps, float *weights) {
    const double a = -0.75;
    const int64_t den = 2 * (int64_t)out_size;
    for (int i = start; i < stop; i++) {
        int64_t num = (2 * (int64_t)i + 1) * in_size - out_size;
        int64_t base = num >= 0 ? num / den : -((-num + den - 1) / den); /* floor division */
        double t = (double)(num - base * den) / (double)den;
        double d[4] = {t + 1.0, t, 1.0 - t, 2.0 - t};
        for (int k = 0; k < 4; k++) {
            double x = fabs(d[k]);
            double wk = x <= 1.0 ? ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                                 : ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
            int64_t tap = base - 1 + k;
            tap = tap < 0 ? 0 : tap > in_size - 1 ? in_size - 1 : tap;
            taps[(i - start) * 4 + k] = (int)tap;
            weights[(i - start) * 4 + k] = (float)wk;
        }
    }
}

/* x: (planes, h, w) contiguous; out: (planes, y1 - y0, x1 - x0). With `shown` not NULL, it gets the
 * same values windowed for display: (v - lo) * 255 / (hi - lo), clipped to 0..255 and truncated, as
 * pyqtgraph maps a float image through its levels. Returns 0, or -1 on bad sizes, -2 if memory ran
 * out. */
int medsr_bicubic_box(const float *x, int planes, int h, int w, int out_h, int out_w, int y0, int x0,
                      int y1, int x1, float *out, float lo, float hi, uint8_t *shown) {
    if (planes < 1 || h < 1 || w < 1 || out_h < 1 || out_w < 1 || y0 < 0 || x0 < 0 || y1 > out_h ||
        x1 > out_w || y1 <= y0 || x1 <= x0)
        return -1;
    const int bh = y1 - y0, bw = x1 - x0;
    const float gain = 255.0f / (hi != lo ? hi - lo : 1.0f);
    int *row_taps = malloc(sizeof(int) * 4 * (size_t)bh);
    int *col_taps = malloc(sizeof(int) * 4 * (size_t)bw);
    float *row_w = malloc(sizeof(float) * 4 * (size_t)bh);
    float *col_w = malloc(sizeof(float) * 4 * (size_t)bw);
    float *along_x = NULL;
    int status = -2;
    if (!row_taps || !col_taps || !row_w || !col_w) goto done;
    axis_taps(h, out_h, y0, y1, row_taps, row_w);
    axis_taps(w, out_w, x0, x1, col_taps, col_w);
    int r_lo = row_taps[0], r_hi = row_taps[0];
    for (int i = 0; i < 4 * bh; i++) {
        r_lo = row_taps[i] < r_lo ? row_taps[i] : r_lo;
        r_hi = row_taps[i] > r_hi ? row_taps[i] : r_hi;
    }
    const int rows = r_hi - r_lo + 1;
    along_x = malloc(sizeof(float) * (size_t)rows * (size_t)bw);
    if (!along_x) goto done;
    for (int p = 0; p < planes; p++) {
        const float *img = x + (size_t)p * h * w;
        float *dst = out + (size_t)p * bh * bw;
        for (int r = 0; r < rows; r++) {
            const float *src = img + (size_t)(r_lo + r) * w;
            float *line = along_x + (size_t)r * bw;
            for (int j = 0; j < bw; j++) {
                const int *t = col_taps + 4 * j;
                const float *c = col_w + 4 * j;
                line[j] = c[0] * src[t[0]] + c[1] * src[t[1]] + c[2] * src[t[2]] + c[3] * src[t[3]];
            }
        }
        for (int i = 0; i < bh; i++) {
            const int *t = row_taps + 4 * i;
            const float *c = row_w + 4 * i;
            const float *a0 = along_x + (size_t)(t[0] - r_lo) * bw, *a1 = along_x + (size_t)(t[1] - r_lo) * bw;
            const float *a2 = along_x + (size_t)(t[2] - r_lo) * bw, *a3 = along_x + (size_t)(t[3] - r_lo) * bw;
            float *o = dst + (size_t)i * bw;
            for (int j = 0; j < bw; j++) o[j] = c[0] * a0[j] + c[1] * a1[j] + c[2] * a2[j] + c[3] * a3[j];
            if (!shown) continue;
            uint8_t *s = shown + ((size_t)p * bh + i) * bw;
            for (int j = 0; j < bw; j++) {
                float v = (o[j] - lo) * gain;
                s[j] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
            }
        }
    }
    status = 0;
done:
    free(row_taps);
    free(col_taps);
    free(row_w);
    free(col_w);
    free(along_x);
    return status;
}
