/* Bi-WKV (Eq. 2 of the RWKVFusion paper, u not divided by T) as two linear recurrences per channel.
 *
 * Per channel, with e_t = exp(k_t - max k) (max over the sequence, from the caller) and r = exp(-w/T):
 *   N_t = F^N_t + B^N_t + exp(u) e_t v_t,   D_t = F^D_t + B^D_t + exp(u) e_t,   y_t = N_t / D_t
 *   F_t = sum_{i<t} r^(t-1-i) x_i   (F_0 = 0, F_{t+1} = r F_t + x_t)        -- earlier tokens
 *   B_t = sum_{i>t} r^(i-t-1) x_i   (B_{T-1} = 0, B_{t-1} = r B_t + x_t)    -- later tokens
 * with x = e*v for N and x = e for D. Every term is formed exactly as in Eq. 2 (no subtraction), the
 * states are carried in float64. One reverse sweep stores B into the outputs (the scratch), one forward
 * sweep combines; memory is the output itself.
 *
 * Backward (W symmetric): gN = gy/D, gD = -gN*y, A = W gN, Bm = W gD (the same recurrences),
 *   gv = e*A, gk = e*(v*A + Bm), gu = exp(u) sum_t e_t (gN_t v_t + gD_t),
 *   gw = -1/T sum_{t != i} (|t-i|-1) W_ti (gN_t z_i + gD_t e_i),  z = e*v,
 * the last via the distance-weighted forward state G_t = sum_{i<t} (t-1-i) r^(t-1-i) x_i,
 * G_{t+1} = r (G_t + F_t): sum over pairs i<t of both orders is sum_t (X_t G^Y_t + Y_t G^X_t).
 *
 * Layout: element (b, t1, t2, c) at b*sb + t1*s1 + t2*s2 + c (channels contiguous), the sequence index is
 * t = t1*T2 + t2, so a column scan of a [B, H, W, C] image is read in place (T1 = W, T2 = H). All tensors
 * of one call share the strides. Work items are (batch, block of CB channels); the caller runs item
 * ranges on several threads. The reverse states are stored in the outputs; float32 outputs hold them
 * for max|w| <= 50 (the caller switches to the float64 entry points beyond).
 */
#include <math.h>
#include <stdint.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include "../simd_exp.h"

#define CB 16
/* software prefetch PD sequence steps ahead: the steps of a column scan are a row (W*C values) apart,
 * beyond the reach of the hardware prefetchers, which stop at page boundaries */
#define PD 8
#define PF(p) __builtin_prefetch((const void *)(p), 0, 3)
#define PFW(p) __builtin_prefetch((const void *)(p), 1, 3)

/* exp(x) for x <= 0 in float64, vectorisable (no libm call): x = n ln2 + r with |r| <= ln2/2 (Cody-Waite
 * split of ln2), exp(r) by its Taylor polynomial to degree 13 (truncation < 1e-17 relative), times 2^n
 * built in the exponent bits. x < -708 gives 0 (exp underflows there anyway); NaN stays NaN. */
static inline __attribute__((always_inline)) double exp_nonpos(double x)
{
    const double xc = x < -708.0 ? -708.0 : x;
    const double n = __builtin_nearbyint(xc * 1.4426950408889634);
    const double r = (xc - n * 0.693145751953125) - n * 1.4286068203094172e-06;
    double p = 1.0 / 6227020800.0;                                   /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    union { double d; int64_t i; } s;
    s.i = ((int64_t)n + 1023) << 52;
    return x < -708.0 ? 0.0 : p * s.d;
}


#ifdef __AVX512F__
/* exp(x) of 16 float32 values x <= 0 (simd_exp.h; NaN stays NaN), 0 below x = -104. The float32 kernels form
 * e = exp(k - max k) this way: k is float32, so e needs no more precision than that; the recurrences stay in
 * float64. Six times fewer instructions than exp_nonpos over 16 channels. */
static inline __attribute__((always_inline)) __m512 exp_nonpos_ps(__m512 x)
{
    return exp512_core(_mm512_max_ps(_mm512_set1_ps(-200.0f), x));   /* max(-200, NaN) is NaN in this order */
}

/* max k of a 16-channel block as float32 (exact: it is the max of float32 values) */
static inline __attribute__((always_inline)) __m512 max16_ps(const double *m)
{
    const __m256 lo = _mm512_cvtpd_ps(_mm512_loadu_pd(m)), hi = _mm512_cvtpd_ps(_mm512_loadu_pd(m + 8));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

/* e[c] = exp(k[c] - m[c]) (as float64) for the 16 channels of a float32 block */
static inline __attribute__((always_inline)) void exp16_f32(const float *k, const __m512 mf, double *e)
{
    const __m512 x = exp_nonpos_ps(_mm512_sub_ps(_mm512_loadu_ps(k), mf));
    _mm512_storeu_pd(e, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
    _mm512_storeu_pd(e + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)));
}
#define VEXP_F32 1
#else
#define VEXP_F32 0
#endif

#define TY float
#define SFX f32
#define VEXP VEXP_F32
#include "cpu_kernel_body.h"
#undef TY
#undef SFX
#undef VEXP

#define TY double
#define SFX f64
#define VEXP 0
#include "cpu_kernel_body.h"
#undef TY
#undef SFX
