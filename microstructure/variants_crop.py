"""Lateral sub-volumes: the same electrode, cut to a narrower column (for representativeness studies).

An electrode volume has its depth (separator -> current collector) along axis 0. A *lateral crop*
keeps the full depth and cuts axes 1 and 2 to a square (or rectangular) window of ``width_um``, placed
by ``offset``: fractions in [0, 1] of the free lateral range (0 = the low edge, 0.5 = centred,
1 = the high edge). Crops of growing width at several offsets are how one asks whether a simulated
column is a representative volume (:mod:`tomocell.studies.rve_capacity`): a column one particle wide
samples a few particles, and its porosity, tortuosity and capacity depend on where it was cut.

Particle ids are cropped with the labels (a particle cut by the window keeps its id; ids of particles
that fall outside the window simply do not occur). Nothing is resampled: the crop is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.microstructure.variants_common import derived, provenance
from tomocell.microstructure.volume import Volume

#: narrowest crop, in voxels per lateral axis (a meshable column of 1 um blocks at 0.5 um voxels)
MIN_VOXELS = 4


def _pair(value: Any, what: str) -> tuple[float, float]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise InputError(f"{what} must be one number or two (axes 1 and 2), got {value!r}")
        a, b = value
    else:
        a = b = value
    try:
        return float(a), float(b)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be numbers, got {value!r}") from None


def lateral_window(shape: tuple[int, int, int], voxel_size_um: tuple[float, float, float], width_um: Any,
                   offset: Any = 0.5) -> tuple[slice, slice, slice]:
    """The index window (full depth, lateral ``width_um`` at ``offset``) of a volume of ``shape``.

    The width is rounded to whole voxels; InputError when it is not positive, below
    :data:`MIN_VOXELS` voxels, or wider than the volume, or when an offset is outside [0, 1].
    """
    widths = _pair(width_um, "crop width_um")
    offs = _pair(offset, "crop offset")
    sl: list[slice] = [slice(0, shape[0])]
    for k, (w_um, f) in enumerate(zip(widths, offs), start=1):
        n_total, vs = shape[k], voxel_size_um[k]
        if not (np.isfinite(w_um) and w_um > 0):
            raise InputError(f"crop width_um must be a positive length in um, got {w_um}")
        if not (np.isfinite(f) and 0.0 <= f <= 1.0):
            raise InputError(f"crop offset must be a fraction in [0, 1], got {f}")
        n = int(round(w_um / vs))
        if n > n_total:
            raise InputError(f"crop width {w_um:g} um is wider than the volume along axis {k} "
                             f"({n_total * vs:g} um)")
        if n < MIN_VOXELS:
            raise InputError(f"crop width {w_um:g} um is {n} voxels along axis {k}; at least {MIN_VOXELS} are needed")
        start = int(round(f * (n_total - n)))
        sl.append(slice(start, start + n))
    return sl[0], sl[1], sl[2]


def lateral_crop(volume: Volume, width_um: Any, offset: Any = 0.5, labels: np.ndarray | None = None
                 ) -> tuple[Volume, np.ndarray | None, dict[str, Any]]:
    """``volume`` cut to a lateral window (see the module docstring); returns (volume, ids, report).

    ``labels``: per-voxel particle ids of ``volume`` (cropped alike), or None. The report gives the
    window (origin and width, um) and the crop's phase fractions next to the input's.
    """
    sl = lateral_window(volume.shape, volume.voxel_size_um, width_um, offset)
    params = {"width_um": list(_pair(width_um, "crop width_um")), "offset": list(_pair(offset, "crop offset"))}
    out = derived(volume, np.ascontiguousarray(volume.labels[sl]), "lateral_crop", params)
    ids = None if labels is None else np.ascontiguousarray(np.asarray(labels)[sl])
    vs = volume.voxel_size_um
    report = {
        "origin_um": [0.0, sl[1].start * vs[1], sl[2].start * vs[2]],
        "extent_um": [float(e) for e in out.extent_um],
        "fractions": out.fractions(),
        "input_fractions": volume.fractions(),
        "provenance": provenance(volume, "lateral_crop", params),
    }
    return out, ids, report
