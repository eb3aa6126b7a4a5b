"""Phase volume fractions and slice-by-slice profiles along the three axes (paper Fig. 2k).

The profiles are per slice normal to each axis: the porosity of the slice and, given the local
thickness field (:mod:`tomocell.microstructure.poresize`), the mean pore diameter of the slice's pore
voxels. Positions are the slice centres in micrometres from the first face (axis 0: from the
separator side).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tomocell.microstructure.volume import PHASE_CODES, Volume


def phase_fractions(volume: Volume) -> dict[str, float]:
    """Volume fraction of pore, active and CBD (they sum to 1)."""
    return volume.fractions()


def slice_profiles(volume: Volume, local_thickness_um: np.ndarray | None = None) -> dict[int, dict[str, np.ndarray]]:
    """For each axis: slice centre position (um), porosity, active and CBD fraction, mean pore size (um).

    Mean pore size is the mean local thickness of the slice's pore voxels (NaN for a slice without
    pore, or when no local-thickness field is given).
    """
    out: dict[int, dict[str, np.ndarray]] = {}
    lab = volume.labels
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        n_slice = lab.shape[other[0]] * lab.shape[other[1]]
        prof: dict[str, np.ndarray] = {
            "position_um": (np.arange(lab.shape[ax]) + 0.5) * volume.voxel_size_um[ax],
        }
        for name, code in PHASE_CODES.items():
            prof[f"{name}_fraction"] = (lab == code).sum(axis=other) / n_slice
        if local_thickness_um is not None:
            pore = lab == PHASE_CODES["pore"]
            s = np.where(pore, local_thickness_um, 0.0).sum(axis=other, dtype=np.float64)
            cnt = pore.sum(axis=other)
            with np.errstate(invalid="ignore", divide="ignore"):
                prof["mean_pore_diameter_um"] = np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)
        else:
            prof["mean_pore_diameter_um"] = np.full(lab.shape[ax], np.nan)
        out[ax] = prof
    return out


def profile_summary(profiles: dict[int, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Spread of the slice porosity per axis (min, max, std): a heterogeneity indicator."""
    res: dict[str, Any] = {}
    for ax, p in profiles.items():
        e = p["pore_fraction"]
        res[f"axis{ax}"] = {"porosity_min": float(e.min()), "porosity_max": float(e.max()), "porosity_std": float(e.std())}
    return res
