/* Bi-WKV (Eq. 2 of the RWKVFusion paper, u not divided by T) as two linear recurrences per channel.
 *
 * Per channel, with e_t = exp(k_t - max k) (computed by the caller) and r = exp(-w/T):
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

#define CB 16

#define TY float
#define SFX f32
#include "cpu_kernel_body.h"
#undef TY
#undef SFX

#define TY double
#define SFX f64
#include "cpu_kernel_body.h"
#undef TY
#undef SFX
