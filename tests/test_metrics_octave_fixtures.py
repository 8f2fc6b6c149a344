"""Toolbox metrics on real images against values computed independently: the toolboxes' own MATLAB code
(VIFB ``metrics/``, MEFB ``metrics/``, Vivone's pansharpening toolbox) run in GNU Octave 7.3 (image 2.14,
signal) on the same inputs. Inputs are built deterministically from ../shared/data (fused = floor of the
source average, so no fusion method is involved).

Octave ran the MATLAB code with these replacements for Octave gaps: ``fwind1``/``fsamp2`` (absent from
Octave) transcribed from MATLAB's source; MATLAB's Sobel ``edge`` thinning (Octave's ``edge`` thins
differently) written out from MATLAB's ``computeEdgesWithThinning``; in ``D_s.m`` ``blockproc`` as explicit
block loops and ``cov(x, y)`` as ``cov([x y])`` (Octave's differ from MATLAB's).
"""
from __future__ import annotations

import numpy as np
import pytest

from fusion.metrics import (
    cross_entropy,
    edge_intensity,
    fmi,
    hqnr_toolbox,
    mef_ssim,
    mefb_suite,
    nmi,
    psnr_vifb,
    q_index,
    qc,
    qncie,
    qp,
    qw,
    rgb2gray,
    rmse_vifb,
    spatial_frequency,
    tsallis_entropy,
    viff,
)
from fusion.metrics.mtf import imresize_bicubic, mtf_filter_toolbox

pytestmark = pytest.mark.realdata  # conftest skips these when ../shared/data is absent

# TNO pair 05 (ir, vi), fused = (ir + vi) // 2, full 475 x 575 images
OCTAVE_TNO05 = {
    "SF": 6.9909299853092914, "PSNR_vifb": 61.080699105815611, "RMSE_vifb": 0.050700290797339648,
    "EI": 32.789487936601, "CE": 0.586576467213595, "NMI": 0.171694531447735, "Qncie": 0.802802289504762,
    "TE": 25.551181976493, "Qc": 0.604632391405896, "Qw": 0.497086693416293, "VIFF": 0.262106149302126,
    "Qp": 0.238643750422315,
}
TOLERANCE = {"Qp": 1e-4, "VIFF": 1e-4}

# RoadScene FLIR_00211 (colour visible, grey infrared), fused = (vi + ir) // 2 per channel: VIFB's
# metrics*.m with their per-channel wrappers and SF's side-by-side view of the colour image
OCTAVE_VIFB_ROADSCENE = {"AG": 2.6008655317017251, "CE": 1.548653488979167, "EI": 27.55846871434855, "EN": 6.3791181525453817, "MI": 2.0468643571140706, "Qabf": 0.35154326429803051, "Qcb": 0.49091233185472261, "Qcv": 1286.6272615194957, "PSNR": 56.390877476787466, "RMSE": 0.14944608054441699, "SF": 7.0631737199793401, "SSIM": 1.4260528756490933, "SD": 22.638978931006449}


def _grey(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")).astype(np.int64)


@pytest.fixture(scope="module")
def tno05(shared_data):
    a = _grey(shared_data / "vif/tno/ir/05.png")
    b = _grey(shared_data / "vif/tno/vi/05.png")
    return a.astype(np.float64), b.astype(np.float64), ((a + b) // 2).astype(np.float64)


@pytest.mark.parametrize("name", list(OCTAVE_TNO05))
def test_equals_toolbox_code_on_tno(tno05, name):
    a, b, f = tno05
    fns = {"SF": lambda: spatial_frequency(f), "PSNR_vifb": lambda: psnr_vifb(f, a, b),
           "RMSE_vifb": lambda: rmse_vifb(f, a, b), "EI": lambda: edge_intensity(f),
           "CE": lambda: cross_entropy(f, a, b), "NMI": lambda: nmi(f, a, b), "Qncie": lambda: qncie(f, a, b),
           "TE": lambda: tsallis_entropy(f, a, b), "Qc": lambda: qc(f, a, b), "Qw": lambda: qw(f, a, b),
           "VIFF": lambda: viff(f, a, b), "Qp": lambda: qp(f, a, b)}
    assert fns[name]() == pytest.approx(OCTAVE_TNO05[name], rel=TOLERANCE.get(name, 1e-6))


def test_vifb_suite_equals_toolbox_code_on_a_colour_roadscene_triple(shared_data):
    from PIL import Image

    from fusion.metrics import vifb_suite

    d = shared_data / "vif/roadscene"
    vi = np.asarray(Image.open(d / "vi/FLIR_00211.jpg").convert("RGB")).astype(np.int64)
    ir = np.asarray(Image.open(d / "ir/FLIR_00211.jpg").convert("L")).astype(np.int64)
    f = ((vi + ir[..., None]) // 2).astype(np.uint8)
    got = vifb_suite(f, vi.astype(np.uint8), ir.astype(np.uint8))
    assert set(got) == set(OCTAVE_VIFB_ROADSCENE)
    for name, want in OCTAVE_VIFB_ROADSCENE.items():
        assert got[name] == pytest.approx(want, rel=1e-6), name


# MEFB dataset1 pair 1 (under/over exposed, colour), crop [150:310, 250:450], fused = (ue + oe) // 2: MEFB's
# wrappers (per RGB channel) and metricsMEF_SSIM (rgb2gray). Qc is left out: this crop has saturated 7 x 7
# windows, where the MATLAB code's Qc is decided by rounding noise (see ``qc``); Octave and numpy differ by 0.9%.
OCTAVE_MEFB_COLOUR = {"CE": 2.1477548960471409, "NMI": 0.92379371165087998, "Qncie": 0.81637953613874947, "TE": 734.55338195868535, "EI": 38.333073061352223, "SF": 16.143033520686252, "PSNR": 51.521480255442292, "Qw": 0.75230477619960434, "VIF": 0.59403327993160371, "Qp": 0.70277064327155758, "EN": 6.0062820211290324, "SD": 27.413320605004674, "MEF_SSIM": 0.95335226613855439}


def test_mefb_suite_equals_toolbox_code_on_a_colour_exposure_pair(shared_data):
    from PIL import Image

    d = shared_data / "mef/u2fusion/dataset1"
    ue = np.asarray(Image.open(d / "ue/1.jpg").convert("RGB"))[150:310, 250:450]
    oe = np.asarray(Image.open(d / "oe/1.jpg").convert("RGB"))[150:310, 250:450]
    f = ((ue.astype(np.int64) + oe) // 2).astype(np.uint8)
    got = mefb_suite(f, ue, oe, list(OCTAVE_MEFB_COLOUR))
    for name, want in OCTAVE_MEFB_COLOUR.items():
        assert got[name] == pytest.approx(want, rel=TOLERANCE.get(name.replace("VIF", "VIFF"), 1e-6)), name


def test_fmi_equals_toolbox_code_on_a_tno_crop(tno05):
    a, b, f = (x[200:280, 250:350] for x in tno05)  # the MATLAB loops are slow: an 80 x 100 crop
    assert fmi(f, a, b) == pytest.approx(0.83105428886497679, rel=1e-6)


def test_mef_ssim_equals_toolbox_code_on_a_mef_crop(shared_data):
    from PIL import Image

    d = shared_data / "mef/u2fusion/dataset1"
    ue = np.asarray(Image.open(d / "ue/1.jpg").convert("RGB"))[200:328, 300:460]
    oe = np.asarray(Image.open(d / "oe/1.jpg").convert("RGB"))[200:328, 300:460]
    ga, gb = rgb2gray(ue).astype(np.int64), rgb2gray(oe).astype(np.int64)
    f = ((ga + gb) // 2).astype(np.float64)
    assert mef_ssim(f, ga.astype(np.float64), gb.astype(np.float64)) == pytest.approx(0.95605910026493923,
                                                                                      rel=1e-6)


def test_pan_toolbox_pieces_equal_toolbox_code_on_worldview2(shared_data):
    import scipy.io

    from rwkvfusion_io.wald import interp23tap

    d = scipy.io.loadmat(shared_data / "pan/imgWV2.mat")
    ms = d["I_MS"][100:164, 120:184].astype(np.float64)
    pan = d["I_PAN"][400:656, 480:736].astype(np.float64)
    g = interp23tap(ms, 4)
    f = 0.8 * g + 0.2 * pan[:, :, None]
    lp = mtf_filter_toolbox(f, "WV2", 4)  # MTF.m with genMTF's fwind1 kernels
    assert lp.sum() == pytest.approx(173959082.45958608, rel=1e-12)
    assert lp[0, 0, 7] == pytest.approx(213.30498085335054, rel=1e-12)
    small = imresize_bicubic(pan, 0.25)  # imresize(PAN, 1/4), antialiased bicubic
    assert small.sum() == pytest.approx(1252571.6875, rel=1e-12)
    assert small[0, 0] == pytest.approx(288.5669709444046, rel=1e-12)
    assert q_index(g, f) == pytest.approx(0.98142560703775439, rel=1e-9)  # Q.m (img_qi, 32 px sliding)
    # HQNR.m with D_lambda_K (q2n of interp23tap(MS) vs MTF(F)) and D_s (imresize-degraded PAN), S = 32
    hq, dl, ds = hqnr_toolbox(f, ms, pan, 4, "WV2")
    assert dl == pytest.approx(0.079952745479862974, rel=1e-6)
    assert ds == pytest.approx(0.02073214654187075, rel=1e-6)
    assert hq == pytest.approx(0.90097270001397967, rel=1e-6)
