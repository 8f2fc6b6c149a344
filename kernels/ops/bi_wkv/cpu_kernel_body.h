/* Bi-WKV recurrences for one I/O type; included by cpu_kernel.c with TY (float|double), SFX and VEXP defined.
 * e = exp(k - max k) is formed in the kernel, never stored: in float64 (exp_nonpos, cpu_kernel.c), or with
 * VEXP (float32 I/O, AVX-512, full blocks) for the 16 channels at once in float32 (exp16_f32).
 * The reverse states are stored in the outputs (y, d in the forward; gv, gk in the backward) and combined
 * with the forward states in the second sweep. NC is the number of channels of a work item (a constant
 * CB for full blocks, so the channel loops are unrolled onto SIMD registers).
 */
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)

#if VEXP
#define EXP_SETUP double ev[CB]; const int vx = NC == CB; \
    const __m512 mf = vx ? max16_ps(m) : _mm512_setzero_ps();
#define EXP_STEP(kp) if (vx) exp16_f32((const float *)(kp), mf, ev);
#define EXP_AT(c, kx) (vx ? ev[c] : exp_nonpos((double)(kx) - m[c]))
#else
#define EXP_SETUP
#define EXP_STEP(kp)
#define EXP_AT(c, kx) exp_nonpos((double)(kx) - m[c])
#endif

static inline __attribute__((always_inline)) void CAT(fwd_item_, SFX)(
    const TY *restrict k, const TY *restrict v, TY *restrict y, TY *restrict d, const double *restrict m,
    const double *restrict r, const double *restrict eu, const int NC,
    int64_t T1, int64_t T2, int64_t s1, int64_t s2)
{
    double bn[CB], bd[CB], fn[CB], fd[CB];
    EXP_SETUP
    for (int c = 0; c < NC; c++) { bn[c] = 0.0; bd[c] = 0.0; fn[c] = 0.0; fd[c] = 0.0; }
    for (int64_t t1 = T1 - 1; t1 >= 0; t1--) {
        for (int64_t t2 = T2 - 1; t2 >= 0; t2--) {                 /* reverse sweep: B into (y, d) */
            const int64_t o = t1 * s1 + t2 * s2;
            if (t2 >= PD) { const int64_t q = o - PD * s2; PF(k + q); PF(v + q); PFW(y + q); PFW(d + q); }
            EXP_STEP(k + o)
            for (int c = 0; c < NC; c++) {
                const double ec = EXP_AT(c, k[o + c]);
                y[o + c] = (TY)bn[c];
                d[o + c] = (TY)bd[c];
                bn[c] = r[c] * bn[c] + ec * (double)v[o + c];
                bd[c] = r[c] * bd[c] + ec;
            }
        }
    }
    for (int64_t t1 = 0; t1 < T1; t1++) {
        for (int64_t t2 = 0; t2 < T2; t2++) {                      /* forward sweep: combine */
            const int64_t o = t1 * s1 + t2 * s2;
            if (t2 + PD < T2) { const int64_t q = o + PD * s2; PF(k + q); PF(v + q); PFW(y + q); PFW(d + q); }
            EXP_STEP(k + o)
            for (int c = 0; c < NC; c++) {
                const double ec = EXP_AT(c, k[o + c]), z = ec * (double)v[o + c];
                const double num = fn[c] + (double)y[o + c] + eu[c] * z;
                const double den = fd[c] + (double)d[o + c] + eu[c] * ec;
                y[o + c] = (TY)num / (TY)den;                              /* TY division: fp32 round-off */
                d[o + c] = (TY)den;
                fn[c] = r[c] * fn[c] + z;
                fd[c] = r[c] * fd[c] + ec;
            }
        }
    }
}

void CAT(bi_wkv_fwd_, SFX)(const TY *k, const TY *v, TY *y, TY *d, const double *mx, const double *w, const double *u,
                           int64_t B, int64_t T1, int64_t T2, int64_t C, int64_t sb, int64_t s1, int64_t s2,
                           int64_t item0, int64_t item1)
{
    const int64_t nblk = (C + CB - 1) / CB;
    const double T = (double)(T1 * T2);
    for (int64_t it = item0; it < item1; it++) {
        const int64_t b = it / nblk, c0 = (it % nblk) * CB;
        const int nc = (int)(C - c0 < CB ? C - c0 : CB);
        double r[CB], eu[CB];
        for (int c = 0; c < nc; c++) { r[c] = exp(-w[c0 + c] / T); eu[c] = exp(u[c0 + c]); }
        const int64_t o = b * sb + c0;
        const double *m = mx + b * C + c0;
        if (nc == CB) CAT(fwd_item_, SFX)(k + o, v + o, y + o, d + o, m, r, eu, CB, T1, T2, s1, s2);
        else CAT(fwd_item_, SFX)(k + o, v + o, y + o, d + o, m, r, eu, nc, T1, T2, s1, s2);
    }
}

static inline __attribute__((always_inline)) void CAT(bwd_item_, SFX)(
    const TY *restrict k, const TY *restrict v, const TY *restrict y, const TY *restrict d,
    const TY *restrict gy, TY *restrict gk, TY *restrict gv, const double *restrict m, const double *restrict r,
    const double *restrict eu, const int NC, int64_t T1, int64_t T2, int64_t s1, int64_t s2,
    double *restrict pu, double *restrict pw)
{
    double sa[CB], sg[CB];
    double fa[CB], fb[CB], Gn[CB], Gd[CB], Fz[CB], Gz[CB], Fe[CB], Ge[CB];
    double accu[CB], accw[CB];
    EXP_SETUP
    for (int c = 0; c < NC; c++) {
        sa[c] = sg[c] = fa[c] = fb[c] = 0.0;
        Gn[c] = Gd[c] = Fz[c] = Gz[c] = Fe[c] = Ge[c] = 0.0;
        accu[c] = accw[c] = 0.0;
    }
    for (int64_t t1 = T1 - 1; t1 >= 0; t1--) {
        for (int64_t t2 = T2 - 1; t2 >= 0; t2--) {                 /* reverse sweep: W gN, W gD (later) */
            const int64_t o = t1 * s1 + t2 * s2;
            if (t2 >= PD) { const int64_t q = o - PD * s2; PF(gy + q); PF(d + q); PF(y + q); PFW(gv + q); PFW(gk + q); }
            for (int c = 0; c < NC; c++) {
                const double gn = (double)(gy[o + c] / d[o + c]);
                const double gd = -gn * (double)y[o + c];
                gv[o + c] = (TY)sa[c];
                gk[o + c] = (TY)sg[c];
                sa[c] = r[c] * sa[c] + gn;
                sg[c] = r[c] * sg[c] + gd;
            }
        }
    }
    for (int64_t t1 = 0; t1 < T1; t1++) {
        for (int64_t t2 = 0; t2 < T2; t2++) {                      /* forward sweep */
            const int64_t o = t1 * s1 + t2 * s2;
            if (t2 + PD < T2) {
                const int64_t q = o + PD * s2;
                PF(k + q); PF(v + q); PF(gy + q); PF(d + q); PF(y + q); PFW(gv + q); PFW(gk + q);
            }
            EXP_STEP(k + o)
            for (int c = 0; c < NC; c++) {
                const double ec = EXP_AT(c, k[o + c]), vc = (double)v[o + c], z = ec * vc;
                const double gn = (double)(gy[o + c] / d[o + c]);
                const double gd = -gn * (double)y[o + c];
                const double A = fa[c] + (double)gv[o + c] + eu[c] * gn;     /* (W gN)_t */
                const double Bm = fb[c] + (double)gk[o + c] + eu[c] * gd;    /* (W gD)_t */
                gv[o + c] = (TY)(ec * A);
                gk[o + c] = (TY)(ec * (vc * A + Bm));
                accu[c] += gn * z + gd * ec;
                /* pairs i < t, both orders: X_t G^Y_t + Y_t G^X_t with (X, Y) in {(gN, z), (gD, e)};
                 * fa, fb double as F^gN, F^gD */
                accw[c] += gn * Gz[c] + z * Gn[c] + gd * Ge[c] + ec * Gd[c];
                Gn[c] = r[c] * (Gn[c] + fa[c]);
                Gd[c] = r[c] * (Gd[c] + fb[c]);
                Gz[c] = r[c] * (Gz[c] + Fz[c]);
                Ge[c] = r[c] * (Ge[c] + Fe[c]);
                fa[c] = r[c] * fa[c] + gn;
                fb[c] = r[c] * fb[c] + gd;
                Fz[c] = r[c] * Fz[c] + z;
                Fe[c] = r[c] * Fe[c] + ec;
            }
        }
    }
    for (int c = 0; c < NC; c++) { pu[c] = accu[c]; pw[c] = accw[c]; }
}

void CAT(bi_wkv_bwd_, SFX)(const TY *k, const TY *v, const TY *y, const TY *d, const TY *gy, TY *gk, TY *gv,
                           const double *mx, const double *w, const double *u, double *pu, double *pw,
                           int64_t B, int64_t T1, int64_t T2, int64_t C, int64_t sb, int64_t s1, int64_t s2,
                           int64_t item0, int64_t item1)
{
    const int64_t nblk = (C + CB - 1) / CB;
    const double T = (double)(T1 * T2);
    for (int64_t it = item0; it < item1; it++) {
        const int64_t b = it / nblk, c0 = (it % nblk) * CB;
        const int nc = (int)(C - c0 < CB ? C - c0 : CB);
        double r[CB], eu[CB];
        for (int c = 0; c < nc; c++) { r[c] = exp(-w[c0 + c] / T); eu[c] = exp(u[c0 + c]); }
        const int64_t o = b * sb + c0;
        double *pub = pu + b * C + c0, *pwb = pw + b * C + c0;
        const double *m = mx + b * C + c0;
        if (nc == CB) CAT(bwd_item_, SFX)(k + o, v + o, y + o, d + o, gy + o, gk + o, gv + o, m, r, eu, CB,
                                          T1, T2, s1, s2, pub, pwb);
        else CAT(bwd_item_, SFX)(k + o, v + o, y + o, d + o, gy + o, gk + o, gv + o, m, r, eu, nc,
                                 T1, T2, s1, s2, pub, pwb);
    }
}

#undef CAT
#undef CAT2
#undef EXP_SETUP
#undef EXP_STEP
#undef EXP_AT
