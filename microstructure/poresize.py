"""Local thickness of a phase (pore size, paper Fig. 2c) and its volume-weighted distribution.

Local thickness at a point = diameter of the largest ball that contains the point and fits in the
phase (Hildebrand & Ruegsegger 1997; Fiji "Local Thickness"). We compute it from the exact Euclidean
distance transform ``dt`` (the ``edt`` package, physical units, anisotropic voxels supported) with a
level-set form of the sphere painting: because ``dt`` is 1-Lipschitz, a point x lies in some
maximal ball of radius >= r iff it lies within r of the set {dt >= r}; so

    LT(x) >= 2r  <=>  dist(x, {dt >= r}) <= r,

one more EDT per radius level. Levels are 0.5 voxel apart up to 20 voxels, then 2.5 % apart, so the
diameter is exact to one voxel for the pore sizes of electrodes (< 40 voxels) and within 5 % beyond.
Why not porespy.local_thickness: porespy (3.2) pins edt < 3.1 (we ship 3.1.2) and pulls numba,
dask and pandas; its default uses 25 coarse bins, which is not exact to a voxel. Why not a
hand-written EDT: ``edt`` is exact, multi-threaded and tested. Memory: three float32 fields and two
boolean masks of the volume (about 14 bytes/voxel), no float64 copy.
"""

from __future__ import annotations

from typing import Any

import edt
import numpy as np

from tomocell.errors import InputError
from tomocell.log import progress
from tomocell.microstructure.volume import PHASE_CODES, Volume


def _threads() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def distance_um(mask: np.ndarray, voxel_size_um: tuple[float, float, float]) -> np.ndarray:
    """Exact Euclidean distance (um, float32) from each True voxel to the nearest False voxel centre.

    The volume boundary is *not* treated as background (``black_border=False``): the sample continues
    beyond the box, which is the right assumption for an interior sub-volume.
    """
    return edt.edt(np.ascontiguousarray(mask), anisotropy=tuple(float(v) for v in voxel_size_um),
                   black_border=False, parallel=_threads()).astype(np.float32, copy=False)


def _levels(r_max: float, h: float) -> np.ndarray:
    """Radius levels (um): h/2 steps up to 20 voxels, then geometric 2.5 % steps."""
    lev = list(np.arange(h, min(r_max, 20 * h) + 1e-9, 0.5 * h))
    r = lev[-1] if lev else h
    while r < r_max:
        r = r * 1.025
        lev.append(min(r, r_max))
    if not lev or lev[-1] < r_max:
        lev.append(r_max)
    return np.unique(np.asarray(lev, dtype=np.float64))


def _grown_box(core: np.ndarray, r: float, vs: tuple[float, float, float]) -> tuple[slice, ...]:
    """Bounding box of the True voxels of ``core`` grown by ``r`` (um) on every side, clipped."""
    box = []
    for k in range(3):
        other = tuple(j for j in range(3) if j != k)
        hit = np.flatnonzero(core.any(axis=other))
        g = int(np.ceil(r / vs[k])) + 1
        box.append(slice(max(int(hit[0]) - g, 0), min(int(hit[-1]) + g + 1, core.shape[k])))
    return tuple(box)


def local_thickness(volume: Volume, phase: str = "pore") -> np.ndarray:
    """Local thickness (diameter, um, float32) of ``phase``; 0 outside it."""
    if phase not in PHASE_CODES:
        raise InputError(f"unknown phase {phase!r} (pore, active, cbd)")
    mask = volume.labels == PHASE_CODES[phase]
    if not mask.any():
        raise InputError(f"volume has no {phase} phase: no local thickness")
    vs = volume.voxel_size_um
    h = min(vs)
    dt = distance_um(mask, vs)
    r_max = float(dt.max())
    radius = np.zeros(mask.shape, dtype=np.float32)
    # every phase voxel is at least the smallest half-voxel ball: start from the smallest level
    for r in progress(_levels(r_max, h), desc=f"local thickness ({phase})"):
        core = dt >= np.float32(r - 1e-6)
        if not core.any():
            break
        # distance to the nearest core voxel (edt of the complement of the core), only inside the
        # bounding box of the core grown by r: no voxel outside it is within r of the core
        box = _grown_box(core, r, vs)
        d = edt.edt(~core[box], anisotropy=tuple(float(v) for v in vs), black_border=False, parallel=_threads())
        covered = (d <= np.float32(r + 1e-6)) & mask[box]
        radius[box][covered] = np.float32(r)
        del d, covered, core
    # voxels whose dt is below the first level (only possible with anisotropic voxels): their own dt
    small = mask & (radius == 0)
    radius[small] = dt[small]
    return 2.0 * radius


def size_distribution(lt_um: np.ndarray, mask: np.ndarray, bin_um: float | None = None) -> dict[str, Any]:
    """Volume-weighted distribution of local thickness over ``mask`` voxels and D10/D50/D90 (um).

    ``bin_um``: histogram bin width; default the smallest voxel edge, with bins centred on its
    multiples, which are the values local thickness takes up to 20 voxels (one bin per level)."""
    vals = lt_um[mask]
    if vals.size == 0:
        raise InputError("no voxels for a size distribution")
    d10, d50, d90 = (float(q) for q in np.quantile(vals, (0.1, 0.5, 0.9)))
    vmax = float(vals.max())
    w = float(bin_um) if bin_um else max(vmax / 200.0, float(np.min(vals)) / 2.0, 1e-12)
    edges = (np.arange(int(np.ceil(vmax / w + 0.5)) + 1) + 0.5) * w
    edges = np.concatenate([[0.0], edges])
    hist, edges = np.histogram(vals, bins=edges)
    return {
        "d10_um": d10, "d50_um": d50, "d90_um": d90, "mean_um": float(vals.mean(dtype=np.float64)),
        "max_um": vmax,
        "bin_edges_um": edges, "volume_fraction": hist / vals.size,
    }
