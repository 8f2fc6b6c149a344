/* LayerNorm over the last axis of dense float32 rows (Ba et al., "Layer Normalization", 2016):
 *   y = (x - mean) / sqrt(var + eps) * w + b,  mean and (biased) var over the C values of a row,
 * optionally also s = SiLU(y) = y / (1 + exp(-y)) (the input of the BRWKV modulation, Linear(SiLU(h))).
 * y may be x (in place): each value is read before it is overwritten.
 * Rows [row0, row1) of x [N, C] (row stride C) -> y [N, C] (and s). Two passes over a row (mean, then the
 * centred variance) in float32, as PyTorch's CPU kernel; x may also be bfloat16 (layer_norm_bf16); with AVX-512 and C % 16 == 0 a row is held in
 * registers (C <= 64) and the reductions are vector trees, else plain loops with double accumulators.
 */
#include <math.h>
#include <stdint.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include "../simd_exp.h"

static void row_generic(const float *x, float *y, float *s, const float *w, const float *b, int64_t C, float eps)
{
    double sum = 0.0;
    for (int64_t c = 0; c < C; c++) sum += x[c];
    const float mean = (float)(sum / (double)C);
    double sq = 0.0;
    for (int64_t c = 0; c < C; c++) { const float d = x[c] - mean; sq += (double)d * d; }
    const float rstd = 1.0f / sqrtf((float)(sq / (double)C) + eps);
    for (int64_t c = 0; c < C; c++) {
        const float h = (x[c] - mean) * rstd * w[c] + b[c];
        y[c] = h;
        if (s) s[c] = h / (1.0f + expf(-h));
    }
}

#ifdef __AVX512F__
/* exp(x) in float32 for the SiLU and GELU (simd_exp.h), clamped to [-87, 88] so 2^n stays a normal number
 * (SiLU of |y| > 87 is y or 0 to float precision). */
static inline __m512 exp512(__m512 x)
{
    return exp512_core(_mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-87.0f)));
}

#define MAXV 4   /* C <= 64 held in registers */
static inline __m512 load16(const float *x) { return _mm512_loadu_ps(x); }
static inline __m512 load16_bf16(const uint16_t *x)   /* bfloat16 bits are the top half of a float32 */
{
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)x));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

static inline void store16_bf16(uint16_t *p, __m512 v)  /* round to nearest even (finite values) */
{
    __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(u));
}

/* the row v[0..nv) -> h (and SiLU(h) when want_s) in registers */
static inline void row_avx512(__m512 *v, __m512 *h, __m512 *sv, const int want_s, const float *w, const float *b,
                              const int nv, const float invC, const float eps)
{
    __m512 acc = _mm512_setzero_ps();
    for (int j = 0; j < nv; j++) acc = _mm512_add_ps(acc, v[j]);
    const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(acc) * invC);
    acc = _mm512_setzero_ps();
    for (int j = 0; j < nv; j++) { v[j] = _mm512_sub_ps(v[j], mean); acc = _mm512_fmadd_ps(v[j], v[j], acc); }
    const __m512 rstd = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(acc) * invC + eps));
    for (int j = 0; j < nv; j++) {
        h[j] = _mm512_fmadd_ps(_mm512_mul_ps(v[j], rstd), _mm512_loadu_ps(w + 16 * j), _mm512_loadu_ps(b + 16 * j));
        if (want_s) {
            const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), h[j]));
            sv[j] = _mm512_div_ps(h[j], _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        }
    }
}
#endif

/* channel counts the vector path takes: multiples of this up to 4x it (0: no vector path in this build) */
int layer_norm_vector_width(void)
{
#ifdef __AVX512F__
    return 16;
#else
    return 0;
#endif
}

void layer_norm_f32(const float *x, float *y, float *s, const float *w, const float *b, int64_t C, float eps,
                    int64_t row0, int64_t row1)
{
#ifdef __AVX512F__
    if (C % 16 == 0 && C <= 16 * MAXV) {
        const int nv = (int)(C / 16);
        const float invC = 1.0f / (float)C;
        for (int64_t r = row0; r < row1; r++) {
            __m512 v[MAXV], h[MAXV], sv[MAXV];
            for (int j = 0; j < nv; j++) v[j] = load16(x + r * C + 16 * j);
            row_avx512(v, h, sv, s != 0, w, b, nv, invC, eps);
            for (int j = 0; j < nv; j++) {
                _mm512_storeu_ps(y + r * C + 16 * j, h[j]);
                if (s) _mm512_storeu_ps(s + r * C + 16 * j, sv[j]);
            }
        }
        return;
    }
#endif
    for (int64_t r = row0; r < row1; r++) row_generic(x + r * C, y + r * C, s ? s + r * C : 0, w, b, C, eps);
}

/* the same for bfloat16 x, y and s (as PyTorch's LayerNorm under bf16 autocast on CPU: float32 arithmetic,
 * outputs rounded to bfloat16); only the vector path (the caller checks layer_norm_vector_width) */
void layer_norm_bf16(const uint16_t *x, uint16_t *y, uint16_t *s, const float *w, const float *b, int64_t C,
                     float eps, int64_t row0, int64_t row1)
{
#ifdef __AVX512F__
    const int nv = (int)(C / 16);
    const float invC = 1.0f / (float)C;
    for (int64_t r = row0; r < row1; r++) {
        __m512 v[MAXV], h[MAXV], sv[MAXV];
        for (int j = 0; j < nv; j++) v[j] = load16_bf16(x + r * C + 16 * j);
        row_avx512(v, h, sv, s != 0, w, b, nv, invC, eps);
        for (int j = 0; j < nv; j++) {
            store16_bf16(y + r * C + 16 * j, h[j]);
            if (s) store16_bf16(s + r * C + 16 * j, sv[j]);
        }
    }
#else
    (void)x; (void)y; (void)s; (void)w; (void)b; (void)C; (void)eps; (void)row0; (void)row1;
#endif
}

/* Modulated LayerNorm of a BRWKV half-layer (main paper sec. 3), inference:
 *   h = LN(x) (w, b),  m = SiLU(h) P^T  (P [3C, C]: the (scale, shift, gate) rows of the modulation Linear),
 *   z = (1 + m_scale) * h + m_shift,  g = m_gate
 * rows [row0, row1) of x [N, C] -> z [N, C] and g [N, C] (either may be 0: not written). Pt is P transposed,
 * [C, 3C] (row c: the 3C outputs' weights of input channel c), so that the product is C broadcast-FMAs per
 * output vector; two rows share each load of Pt. Vector path only (C % 16 == 0, C <= 64: the caller checks). */
#define MODR 2
void modulated_layer_norm_f32(const float *x, float *z, float *g, const float *w, const float *b, const float *Pt,
                              int64_t C, float eps, int64_t row0, int64_t row1)
{
#ifdef __AVX512F__
    const int nv = (int)(C / 16), no = 3 * nv;
    const float invC = 1.0f / (float)C;
    float sbuf[MODR][16 * MAXV];
    for (int64_t r0 = row0; r0 < row1; r0 += MODR) {
        const int nr = (int)(row1 - r0 < MODR ? row1 - r0 : MODR);
        __m512 h[MODR][MAXV], acc[MODR][3 * MAXV];
        for (int i = 0; i < nr; i++) {
            __m512 v[MAXV], sv[MAXV];
            for (int j = 0; j < nv; j++) v[j] = load16(x + (r0 + i) * C + 16 * j);
            row_avx512(v, h[i], sv, 1, w, b, nv, invC, eps);
            for (int j = 0; j < nv; j++) _mm512_storeu_ps(sbuf[i] + 16 * j, sv[j]);
            for (int k = 0; k < no; k++) acc[i][k] = _mm512_setzero_ps();
        }
        for (int64_t c = 0; c < C; c++) {
            const float *p = Pt + c * 3 * C;
            if (nr == MODR) {
                const __m512 s0 = _mm512_set1_ps(sbuf[0][c]), s1 = _mm512_set1_ps(sbuf[1][c]);
                for (int k = 0; k < no; k++) {
                    const __m512 pk = _mm512_loadu_ps(p + 16 * k);
                    acc[0][k] = _mm512_fmadd_ps(s0, pk, acc[0][k]);
                    acc[1][k] = _mm512_fmadd_ps(s1, pk, acc[1][k]);
                }
            } else {
                const __m512 s0 = _mm512_set1_ps(sbuf[0][c]);
                for (int k = 0; k < no; k++) acc[0][k] = _mm512_fmadd_ps(s0, _mm512_loadu_ps(p + 16 * k), acc[0][k]);
            }
        }
        for (int i = 0; i < nr; i++) {
            for (int j = 0; j < nv; j++) {
                const int64_t o = (r0 + i) * C + 16 * j;
                if (z) {
                    const __m512 scale1 = _mm512_add_ps(_mm512_set1_ps(1.0f), acc[i][j]);
                    _mm512_storeu_ps(z + o, _mm512_add_ps(_mm512_mul_ps(scale1, h[i][j]), acc[i][nv + j]));
                }
                if (g) _mm512_storeu_ps(g + o, acc[i][2 * nv + j]);
            }
        }
    }
#else
    (void)x; (void)z; (void)g; (void)w; (void)b; (void)Pt; (void)C; (void)eps; (void)row0; (void)row1;
#endif
}

/* Merge of a spatial mix's row and column scans with its output gate (main paper sec. 3.4), inference:
 *   out = (LN(y) + LN(yc)) * scale * act(gl),  act = SiLU (silu != 0) or sigmoid,
 * one LayerNorm (w, b) for both scans; scale = 1/K (2/K for K = 4, whose reversed scans repeat the two).
 * Rows [row0, row1) of y, yc, gl [N, C]; out may be y (each row is read before it is written).
 * Vector path only (C % 16 == 0, C <= 64: the caller checks). */
void merge_gate_f32(const float *y, const float *yc, const float *gl, float *out, const float *w, const float *b,
                    int64_t C, float eps, float scale, int silu, int64_t row0, int64_t row1)
{
#ifdef __AVX512F__
    const int nv = (int)(C / 16);
    const float invC = 1.0f / (float)C;
    const __m512 one = _mm512_set1_ps(1.0f), sc = _mm512_set1_ps(scale);
    for (int64_t r = row0; r < row1; r++) {
        __m512 v[MAXV], hy[MAXV], hc[MAXV];
        for (int j = 0; j < nv; j++) v[j] = load16(y + r * C + 16 * j);
        row_avx512(v, hy, 0, 0, w, b, nv, invC, eps);
        for (int j = 0; j < nv; j++) v[j] = load16(yc + r * C + 16 * j);
        row_avx512(v, hc, 0, 0, w, b, nv, invC, eps);
        for (int j = 0; j < nv; j++) {
            const __m512 g = load16(gl + r * C + 16 * j);
            const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
            const __m512 act = silu ? _mm512_mul_ps(g, sg) : sg;
            _mm512_storeu_ps(out + r * C + 16 * j, _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(hy[j], hc[j]), sc), act));
        }
    }
#else
    (void)y; (void)yc; (void)gl; (void)out; (void)w; (void)b; (void)C; (void)eps; (void)scale; (void)silu;
    (void)row0; (void)row1;
#endif
}

/* Channel-mix activations of a BRWKV layer (main paper sec. 3), inference: for rows of kr [N, Hd + C] (the key
 * and receptance products side by side) and the layer's gate [N, C]:
 *   hidden = relu(kr[:, :Hd])^2 [N, Hd],  rg = sigmoid(kr[:, Hd:]) * gate [N, C]
 * so that the layer's residual is t + rg * (hidden value^T). Vector path only (Hd, C multiples of 16). */
void channel_act_f32(const float *kr, const float *gate, float *hidden, float *rg, int64_t Hd, int64_t C,
                     int64_t row0, int64_t row1)
{
#ifdef __AVX512F__
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    const int64_t W = Hd + C;
    for (int64_t r = row0; r < row1; r++) {
        const float *p = kr + r * W;
        for (int64_t j = 0; j < Hd; j += 16) {
            const __m512 k = _mm512_max_ps(_mm512_loadu_ps(p + j), zero);
            _mm512_storeu_ps(hidden + r * Hd + j, _mm512_mul_ps(k, k));
        }
        for (int64_t j = 0; j < C; j += 16) {
            const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(zero, _mm512_loadu_ps(p + Hd + j)))));
            _mm512_storeu_ps(rg + r * C + j, _mm512_mul_ps(s, _mm512_loadu_ps(gate + r * C + j)));
        }
    }
#else
    (void)kr; (void)gate; (void)hidden; (void)rg; (void)Hd; (void)C; (void)row0; (void)row1;
#endif
}

/* GELU, tanh approximation, in place over rows of C float32 values (C % 16 == 0: the caller checks):
 * 0.5 x (1 + tanh(a)) = x / (1 + exp(-2a)),  a = sqrt(2/pi) (x + 0.044715 x^3). PyTorch's CPU kernel for the
 * tanh form is ~4x slower than its erf form; this one is one pass at the speed of a copy. */
void gelu_tanh_f32(float *x, int64_t C, int64_t row0, int64_t row1)
{
#ifdef __AVX512F__
    const __m512 one = _mm512_set1_ps(1.0f), c0 = _mm512_set1_ps(-1.5957691216057308f),  /* -2 sqrt(2/pi) */
                 c1 = _mm512_set1_ps(0.044715f);
    for (int64_t i = row0 * C; i < row1 * C; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m512 a = _mm512_mul_ps(_mm512_mul_ps(c0, v), _mm512_fmadd_ps(_mm512_mul_ps(c1, v), v, one));
        _mm512_storeu_ps(x + i, _mm512_div_ps(v, _mm512_add_ps(one, exp512(a))));
    }
#else
    (void)x; (void)C; (void)row0; (void)row1;
#endif
}

/* Training LayerNorm over rows of C float32 values, optionally with s = SiLU(h): forward and backward.
 * Forward: h = (x - mean) * rstd * w + b (and s), mean and rstd per row stored for the backward.
 * Backward, with g = gh + gs * SiLU'(h) (gs may be 0), xhat = (x - mean) * rstd, dxh = g * w:
 *   gx = rstd * (dxh - mean(dxh) - xhat * mean(dxh * xhat)),  gw = sum_rows g * xhat,  gb = sum_rows g.
 * Work items are blocks of LN_BLOCK rows; block i writes its parameter-gradient partial sums (float32 within
 * the block, stored as float64) to gwp[i * C], gbp[i * C], summed by the caller. Vector path only (C % 16 == 0,
 * C <= 64: the caller checks). */
#define LN_BLOCK 1024
void layer_norm_train_fwd_f32(const float *x, float *h, float *s, float *mean, float *rstd, const float *w,
                              const float *b, int64_t N, int64_t C, float eps, int64_t blk0, int64_t blk1)
{
#ifdef __AVX512F__
    const int nv = (int)(C / 16);
    const float invC = 1.0f / (float)C;
    const int64_t r1 = blk1 * LN_BLOCK < N ? blk1 * LN_BLOCK : N;
    for (int64_t r = blk0 * LN_BLOCK; r < r1; r++) {
        __m512 v[MAXV], acc = _mm512_setzero_ps();
        for (int j = 0; j < nv; j++) { v[j] = load16(x + r * C + 16 * j); acc = _mm512_add_ps(acc, v[j]); }
        const float mu = _mm512_reduce_add_ps(acc) * invC;
        acc = _mm512_setzero_ps();
        for (int j = 0; j < nv; j++) {
            v[j] = _mm512_sub_ps(v[j], _mm512_set1_ps(mu));
            acc = _mm512_fmadd_ps(v[j], v[j], acc);
        }
        const float rs = 1.0f / sqrtf(_mm512_reduce_add_ps(acc) * invC + eps);
        mean[r] = mu;
        rstd[r] = rs;
        for (int j = 0; j < nv; j++) {
            const __m512 hv = _mm512_fmadd_ps(_mm512_mul_ps(v[j], _mm512_set1_ps(rs)), _mm512_loadu_ps(w + 16 * j),
                                              _mm512_loadu_ps(b + 16 * j));
            _mm512_storeu_ps(h + r * C + 16 * j, hv);
            if (s) {
                const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), hv));
                _mm512_storeu_ps(s + r * C + 16 * j, _mm512_div_ps(hv, _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
            }
        }
    }
#else
    (void)x; (void)h; (void)s; (void)mean; (void)rstd; (void)w; (void)b; (void)N; (void)C; (void)eps;
    (void)blk0; (void)blk1;
#endif
}

void layer_norm_train_bwd_f32(const float *x, const float *mean, const float *rstd, const float *w, const float *b,
                              const float *gh, const float *gs, float *gx, double *gwp, double *gbp,
                              int64_t N, int64_t C, int64_t blk0, int64_t blk1)
{
#ifdef __AVX512F__
    const int nv = (int)(C / 16);
    const float invC = 1.0f / (float)C;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t blk = blk0; blk < blk1; blk++) {
        __m512 gwa[MAXV], gba[MAXV];
        for (int j = 0; j < nv; j++) { gwa[j] = _mm512_setzero_ps(); gba[j] = _mm512_setzero_ps(); }
        const int64_t r1 = (blk + 1) * LN_BLOCK < N ? (blk + 1) * LN_BLOCK : N;
        for (int64_t r = blk * LN_BLOCK; r < r1; r++) {
            const __m512 mu = _mm512_set1_ps(mean[r]), rs = _mm512_set1_ps(rstd[r]);
            __m512 xh[MAXV], d[MAXV], a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps();
            for (int j = 0; j < nv; j++) {
                const int64_t o = r * C + 16 * j;
                xh[j] = _mm512_mul_ps(_mm512_sub_ps(load16(x + o), mu), rs);
                const __m512 wj = _mm512_loadu_ps(w + 16 * j);
                __m512 g = gh ? load16(gh + o) : _mm512_setzero_ps();
                if (gs) {
                    const __m512 hv = _mm512_fmadd_ps(xh[j], wj, _mm512_loadu_ps(b + 16 * j));
                    const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), hv))));
                    const __m512 ds = _mm512_mul_ps(sg, _mm512_fmadd_ps(hv, _mm512_sub_ps(one, sg), one));
                    g = _mm512_fmadd_ps(load16(gs + o), ds, g);
                }
                gwa[j] = _mm512_fmadd_ps(g, xh[j], gwa[j]);
                gba[j] = _mm512_add_ps(gba[j], g);
                d[j] = _mm512_mul_ps(g, wj);
                a1 = _mm512_add_ps(a1, d[j]);
                a2 = _mm512_fmadd_ps(d[j], xh[j], a2);
            }
            const __m512 m1 = _mm512_set1_ps(_mm512_reduce_add_ps(a1) * invC);
            const __m512 m2 = _mm512_set1_ps(_mm512_reduce_add_ps(a2) * invC);
            for (int j = 0; j < nv; j++)
                _mm512_storeu_ps(gx + r * C + 16 * j,
                                 _mm512_mul_ps(rs, _mm512_sub_ps(_mm512_sub_ps(d[j], m1), _mm512_mul_ps(xh[j], m2))));
        }
        float tw[16], tb[16];
        for (int j = 0; j < nv; j++) {
            _mm512_storeu_ps(tw, gwa[j]);
            _mm512_storeu_ps(tb, gba[j]);
            for (int c = 0; c < 16; c++) { gwp[blk * C + 16 * j + c] = tw[c]; gbp[blk * C + 16 * j + c] = tb[c]; }
        }
    }
#else
    (void)x; (void)mean; (void)rstd; (void)w; (void)b; (void)gh; (void)gs; (void)gx; (void)gwp; (void)gbp; (void)N;
    (void)C; (void)blk0; (void)blk1;
#endif
}
