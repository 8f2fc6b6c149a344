/* exp in float32 over 16 lanes (AVX-512), shared by the C kernels of kernels/ops (included, no symbols).
 * exp512_core(x): x = n ln2 + r (ln2 split in two parts, Cody-Waite), exp(r) by its degree-6 Taylor polynomial
 * (relative error < 2e-7, about float32 rounding), times 2^n by scalef (0 once 2^n underflows). Callers clamp x
 * to the range they need; NaN propagates. */
#ifndef RWKVFUSION_SIMD_EXP_H
#define RWKVFUSION_SIMD_EXP_H
#ifdef __AVX512F__
#include <immintrin.h>

static inline __attribute__((always_inline)) __m512 exp512_core(__m512 x)
{
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}
#endif
#endif
