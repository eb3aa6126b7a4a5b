"""Graded-porosity variants (Lu et al. 2020, Fig. 7 and Methods "Morphological operation").

The pore phase is dilated by ``dilation_um`` (paper: 250 nm) inside a depth band, at the expense
of the carbon-binder domain only: active voxels are locked, so the active mass is unchanged
*exactly* (the output's active voxels are bit-identical to the input's). CBD voxels whose centre
lies within ``dilation_um`` of the pore/solid boundary surface become pore (convention in
:mod:`tomocell.microstructure.variants_common`: at a 0.39 um voxel this is one voxel layer, at
126 nm two).

Bands (decided from the paper). The paper enlarges the pores "11 um (R1), 22.5 um (R2) and 34 um
(R3) away from the separator", draws the "boundaries of the three processed zones" as dashed lines,
and calls the global dilation "R1 + R2 + R3 + R4" on its 50 um electrode. Four contiguous zones
that tile the electrode fit all of this: the quoted distances are the far edges of equal ~11.3 um
wide zones (11.25, 22.5, 33.75 ~ 34 um), R4 is the remainder to the current collector. Hence
``PAPER_BANDS_UM``: R1 [0, 11), R2 [11, 22.5), R3 [22.5, 34), R4 [34, end). A voxel belongs to a
band when its centre depth lies in the half-open interval; distances are measured over the whole
volume, so the band edges are exact (a CBD voxel just outside a band is never touched).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.microstructure.variants_common import (
    derived,
    band_indices,
    check_positive_um,
    distance_to_other_um,
    layers_within,
    provenance,
    within_of_boundary,
)
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume

#: The paper's processed zones (depth from the separator, um; half-open).
PAPER_BANDS_UM: dict[str, tuple[float, float]] = {
    "R1": (0.0, 11.0),
    "R2": (11.0, 22.5),
    "R3": (22.5, 34.0),
    "R4": (34.0, math.inf),
}
PAPER_DILATION_UM = 0.25


def resolve_band(band: str | tuple[float, float] | None) -> tuple[float, float]:
    """'R1'..'R4', 'global'/None (whole electrode) or an explicit (start_um, end_um)."""
    if band is None or (isinstance(band, str) and band.lower() in ("global", "all", "high-porosity")):
        return (0.0, math.inf)
    if isinstance(band, str):
        key = band.upper()
        if key not in PAPER_BANDS_UM:
            raise InputError(f"unknown band {band!r}: use R1, R2, R3, R4, global or (start_um, end_um)")
        return PAPER_BANDS_UM[key]
    try:
        start, end = (float(b) for b in band)
    except (TypeError, ValueError):
        raise InputError(f"band must be a name or (start_um, end_um), got {band!r}") from None
    return (start, end)


def graded_porosity(
    volume: Volume,
    band: str | tuple[float, float] | None = "R1",
    dilation_um: float = PAPER_DILATION_UM,
) -> tuple[Volume, dict[str, Any]]:
    """Dilate the pore phase by ``dilation_um`` into the CBD inside ``band`` (active locked).

    Args:
        volume: input electrode.
        band: 'R1'..'R4', 'global' (or None) for all depths, or (start_um, end_um) depths from the
            separator face.
        dilation_um: how far the pore/solid boundary is pushed, micrometres (paper: 0.25).

    Returns:
        (new volume, report) where report holds the band in um and voxels, the number of CBD voxels
        turned to pore, porosity before/after (global and in the band), and the provenance.
    """
    check_positive_um(dilation_um, "dilation")
    volume.require_phases("pore")
    start, end = resolve_band(band)
    sl = band_indices(volume, start, end)
    lab = volume.labels
    # distance of every voxel to the pore phase (pore = 0 in this binary map)
    not_pore = (lab != PORE).astype(np.uint8)
    dist = distance_to_other_um(not_pore, volume.voxel_size_um)
    grow = within_of_boundary(dist, dilation_um, volume.voxel_size_um) & (lab == CBD)
    in_band = np.zeros(volume.shape[0], dtype=bool)
    in_band[sl] = True
    grow &= in_band[:, None, None]
    out = lab.copy()
    out[grow] = PORE
    n_changed = int(grow.sum())
    layers = layers_within(dilation_um, volume.voxel_size_um)
    d0 = volume.voxel_size_um[0]
    band_voxels = lab[sl].size
    report: dict[str, Any] = {
        "band_name": band if isinstance(band, str) else None,
        "band_um": [start, min(end, volume.extent_um[0])],
        "band_index": [sl.start, sl.stop],
        "band_voxel_depth_um": [sl.start * d0, sl.stop * d0],
        "dilation_um": dilation_um,
        "dilation_layers_voxels": layers,
        "effective_dilation_um": layers * min(volume.voxel_size_um),
        "cbd_voxels_to_pore": n_changed,
        "porosity_before": float((lab == PORE).mean()),
        "porosity_after": float((out == PORE).mean()),
        "band_porosity_before": float((lab[sl] == PORE).sum() / band_voxels),
        "band_porosity_after": float((out[sl] == PORE).sum() / band_voxels),
        "active_voxels": int((out == ACTIVE).sum()),
    }
    if layers == 0:
        report["warning"] = (f"voxel {min(volume.voxel_size_um)} um is coarser than twice the dilation "
                             f"{dilation_um} um: nothing changed")
    elif n_changed == 0:
        report["warning"] = "no CBD voxel touches the pore phase in this band: nothing changed"
    report["provenance"] = provenance(volume, "graded_porosity", {"band": [start, end], "dilation_um": dilation_um})
    new = derived(volume, out, "graded_porosity", report["provenance"]["parameters"])
    return new, report
