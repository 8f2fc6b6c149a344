"""The six fusion tasks and how they split: image fusion of two sources vs spectral sharpening."""
from __future__ import annotations

FUSION_TASKS: tuple[str, ...] = ("vif", "mif", "mef", "mff")  # visible-infrared, medical, multi-exposure, multi-focus
SPECTRAL_TASKS: tuple[str, ...] = ("pan", "hmif")             # pansharpening, hyperspectral-multispectral
TASKS: tuple[str, ...] = FUSION_TASKS + SPECTRAL_TASKS
# resolution ratio LRMS -> PAN (HS -> HR-MSI) of the reduced-resolution data (PanCollection WV3/GF2/QB, Chikusei)
SPECTRAL_RATIO = 4
