"""A simple X-ray CT forward model: labelled volume -> greyscale scan with known truth.

Greyscale = per-phase attenuation (the paper's Fig. 2a: grey values proportional to attenuation; NMC
bright, CBD dark grey, pore black), blurred by a Gaussian point-spread function and with additive
Gaussian noise. Enough to test segmentation and DSS end to end against the voxel truth; it does not
model reconstruction artefacts (rings, beam hardening, phase contrast).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from tomocell.errors import InputError
from tomocell.microstructure.volume import PHASE_CODES, Volume

#: relative attenuation per phase (NMC = 1); CBD (carbon + PVDF) absorbs far less than NMC at 5.4 keV
DEFAULT_ATTENUATION: dict[str, float] = {"pore": 0.0, "cbd": 0.35, "active": 1.0}


def forward_ct(
    volume: Volume,
    *,
    attenuation: Mapping[str, float] | None = None,
    blur_sigma_um: float | None = None,
    noise_sd: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """Greyscale float32 scan of ``volume``.

    Args:
        attenuation: grey value per phase name (default :data:`DEFAULT_ATTENUATION`).
        blur_sigma_um: Gaussian PSF standard deviation in um (default half a voxel, per axis).
        noise_sd: standard deviation of additive Gaussian noise, in the same units as ``attenuation``.
        seed: noise seed.
    """
    att = dict(DEFAULT_ATTENUATION)
    if attenuation:
        unknown = set(attenuation) - set(PHASE_CODES)
        if unknown:
            raise InputError(f"attenuation for unknown phase(s) {sorted(unknown)} (phases: pore, active, cbd)")
        att.update({k: float(v) for k, v in attenuation.items()})
    if noise_sd < 0 or not np.isfinite(noise_sd):
        raise InputError(f"noise_sd must be >= 0, got {noise_sd}")
    lut = np.zeros(3, dtype=np.float32)
    for name, code in PHASE_CODES.items():
        lut[code] = att[name]
    grey = lut[volume.labels]
    vs = np.asarray(volume.voxel_size_um)
    sigma = 0.5 * np.ones(3) if blur_sigma_um is None else np.full(3, float(blur_sigma_um)) / vs
    if np.any(sigma < 0):
        raise InputError(f"blur_sigma_um must be >= 0, got {blur_sigma_um}")
    if np.any(sigma > 0):
        ndimage.gaussian_filter(grey, sigma=sigma, output=grey, mode="nearest")
    if noise_sd > 0:
        rng = np.random.default_rng(seed)
        grey += rng.normal(0.0, noise_sd, size=grey.shape).astype(np.float32)
    return grey
