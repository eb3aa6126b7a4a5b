"""Shared pieces of the structure variants (graded particle, graded porosity, thick, calendering).

* depth bands along axis 0 (index 0 = separator side) in micrometres;
* the morphological distance convention: a voxel lies within ``r`` of a phase boundary when its
  centre is within ``r`` of the boundary *surface*; the surface runs through the voxel faces, so
  with a centre-to-centre Euclidean distance transform ``D`` that is ``D - h < r`` with ``h`` half
  the smallest voxel edge (``D - h <= r``, ties convert). At a 126 nm voxel a 250 nm dilation is
  therefore 2 voxel layers, at 0.39-0.5 um 1 layer, and at voxels coarser than ``2 r`` none: the
  variants report the effective layer count and warn when it is zero;
* particle identity: watershed labels when given, else 6-connected components of the active phase;
* the provenance record every variant returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.microstructure.volume import ACTIVE, Volume


def depth_centres_um(volume: Volume) -> np.ndarray:
    """Depth of each axis-0 slice centre below the separator face, micrometres."""
    d0 = volume.voxel_size_um[0]
    return (np.arange(volume.shape[0]) + 0.5) * d0


def band_indices(volume: Volume, start_um: float, end_um: float) -> slice:
    """Axis-0 slice of the voxels whose centre depth lies in ``[start_um, end_um)``.

    Raises InputError for an empty or inverted band, or one that starts beyond the volume.
    """
    if not (np.isfinite(start_um) and start_um >= 0):
        raise InputError(f"band start must be a finite depth >= 0 um, got {start_um}")
    if not end_um > start_um:
        raise InputError(f"band [{start_um}, {end_um}) um is empty: end must exceed start")
    depth = depth_centres_um(volume)
    inside = np.flatnonzero((depth >= start_um) & (depth < end_um))
    if inside.size == 0:
        raise InputError(
            f"band [{start_um}, {end_um}) um holds no voxel of a volume {volume.extent_um[0]:.3g} um thick "
            f"(voxel {volume.voxel_size_um[0]} um along axis 0)"
        )
    return slice(int(inside[0]), int(inside[-1]) + 1)


def distance_to_other_um(labels: np.ndarray, voxel_size_um: tuple[float, float, float]) -> np.ndarray:
    """Centre-to-centre Euclidean distance (um) of each voxel to the nearest voxel of another label.

    Multi-label EDT (the ``edt`` package): every distinct value is its own region; the array border
    is not a boundary (a particle cut by the box face is not eroded from that face).
    Voxels of label 0 get 0.
    """
    lab = np.ascontiguousarray(labels)
    return np.asarray(edt_call(lab, voxel_size_um), dtype=np.float64)


def edt_call(lab: np.ndarray, voxel_size_um: tuple[float, float, float]) -> np.ndarray:
    import edt

    return edt.edt(lab, anisotropy=tuple(float(v) for v in voxel_size_um), black_border=False)


def within_of_boundary(distance_um: np.ndarray, r_um: float, voxel_size_um: tuple[float, float, float]) -> np.ndarray:
    """Voxels whose centre lies within ``r_um`` of the boundary surface (see module docstring)."""
    half = 0.5 * min(voxel_size_um)
    # tolerance: the EDT is float32; a tie (centre exactly at r) must convert at any voxel size
    return (distance_um > 0) & (distance_um - half <= r_um + 1e-5 * half)


def layers_within(r_um: float, voxel_size_um: tuple[float, float, float]) -> int:
    """Voxel layers (along the finest axis) that :func:`within_of_boundary` selects for ``r_um``."""
    d = min(voxel_size_um)
    return int(np.floor((r_um + 0.5e-5 * d + 0.5 * d) / d))


def particle_labels(volume: Volume, labels: np.ndarray | None = None) -> np.ndarray:
    """Particle identity: the given label array (checked) or 6-connected components of ACTIVE."""
    active = volume.labels == ACTIVE
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != volume.shape:
            raise InputError(f"particle labels have shape {lab.shape}, the volume {volume.shape}")
        if np.any((lab > 0) != active):
            raise InputError("particle labels must be > 0 exactly on the active voxels of the volume")
        return lab.astype(np.int32, copy=False)
    import cc3d

    return cc3d.connected_components(active, connectivity=6).astype(np.int32)


#: metadata that describes the input's exact geometry and is wrong for a modified volume
STALE_METADATA = ("particles", "particle_ids")


def derived(volume: Volume, labels: np.ndarray, operation: str, params: dict[str, Any]) -> Volume:
    """A variant of ``volume``: new labels, same voxel size, metadata with the variant appended to
    ``metadata['variants']`` (so chains such as calendered-then-graded stay traceable) and the
    input's per-particle ground truth dropped (it no longer describes the geometry)."""
    md = {k: v for k, v in volume.metadata.items() if k not in STALE_METADATA}
    md["variants"] = list(volume.metadata.get("variants", [])) + [{"operation": operation, **params}]
    return Volume(labels, volume.voxel_size_um, md)


def provenance(volume: Volume, operation: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Provenance record of a variant: the operation, its parameters and the input's description."""
    rec: dict[str, Any] = {
        "operation": operation,
        "parameters": dict(params),
        "input": {
            "shape": list(volume.shape),
            "voxel_size_um": list(volume.voxel_size_um),
            "fractions": volume.fractions(),
            "source": volume.metadata.get("source") or volume.metadata.get("generator"),
        },
    }
    rec.update(extra)
    return rec


def check_positive_um(length_um: float, what: str) -> None:
    """InputError when ``length_um`` is not positive."""
    if not (np.isfinite(length_um) and length_um > 0):
        raise InputError(f"{what} must be a positive length in um, got {length_um}")
