"""Qabf: Xydeas & Petrovic gradient-based edge-preservation metric (VIFB ``metricsQabf``)."""
from __future__ import annotations

import numpy as np

from ._common import conv2_same, memo_by_content

# Constants of the toolbox (L = 1)
TG, KG, DG = 0.9994, -15.0, 0.5
TA, KA, DA = 0.9879, -22.0, 0.8
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
_SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)


@memo_by_content()
def _strength_orientation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sx = conv2_same(x, _SOBEL_X)
    sy = conv2_same(x, _SOBEL_Y)
    g = np.sqrt(sx * sx + sy * sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(sx == 0, np.pi / 2, np.arctan(sy / np.where(sx == 0, 1.0, sx)))
    g.setflags(write=False)
    alpha.setflags(write=False)
    return g, alpha


def _edge_preservation(gx: np.ndarray, ax: np.ndarray, gf: np.ndarray, af: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        g_xf = np.where(gx > gf, gf / np.where(gx > gf, gx, 1.0),
                        np.where(gx == gf, gf, gx / np.where(gf == 0, 1.0, gf)))
    a_xf = 1 - np.abs(ax - af) / (np.pi / 2)
    return TG / (1 + np.exp(KG * (g_xf - DG))) * TA / (1 + np.exp(KA * (a_xf - DA)))


def qabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qabf = sum(Q_AF gA + Q_BF gB) / sum(gA + gB) (Xydeas & Petrovic 2000; VIFB code, L = 1).

    Sobel by MATLAB ``conv2(.., 'same')`` (zero padding), g = sqrt(sx^2 + sy^2), alpha = atan(sy/sx)
    (not atan2; pi/2 where sx == 0). G_XF = gF/gX where gX > gF, **gF where gX == gF** (toolbox quirk,
    kept), else gX/gF; A_XF = 1 - |alpha_X - alpha_F| / (pi/2); sigmoids with Tg = 0.9994, kg = -15,
    Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8. Because of the constants and the quirk
    F == A == B gives at most Tg Ta / (1 + exp(ka (1 - Da))) ~= 0.9753, not 1.
    """
    ga, aa = _strength_orientation(a)
    gb, ab = _strength_orientation(b)
    gf, af = _strength_orientation(f)
    q_af = _edge_preservation(ga, aa, gf, af)
    q_bf = _edge_preservation(gb, ab, gf, af)
    den = float((ga + gb).sum())
    return float((q_af * ga + q_bf * gb).sum() / den) if den > 0 else float("nan")
