"""Checks every volume gets: phase fractions and isolated clusters.

An electrode can only use what is connected:

* a **pore** cluster that does not touch the separator face (axis 0, index 0) holds electrolyte that no
  Li+ can reach from the separator;
* a **solid** (active + CBD) cluster that does not touch the current-collector face (axis 0, last index)
  has no electronic path: its particles cannot take part in a discharge.

Clusters are found with ``cc3d`` (face connectivity 6 by default: two voxels touching only along an
edge or a corner share no area through which current could flow in a conformal mesh).
:func:`remove_isolated_clusters` turns isolated solid into pore and fills isolated pores with the solid
phase they touch most (so the volume's active material changes only by the isolated particles).
"""

from __future__ import annotations

from typing import Any

import cc3d
import numpy as np

from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume

log = get_logger("microstructure.checks")

_CONNECTIVITY = (6, 18, 26)


def phase_fractions(volume: Volume) -> dict[str, float]:
    """Volume fraction of each phase ('pore', 'active', 'cbd'); they sum to 1."""
    return volume.fractions()


def _isolated_mask(mask: np.ndarray, face_index: int, connectivity: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(cluster labels, boolean 'cluster id is isolated' table, n clusters) for one phase mask."""
    if connectivity not in _CONNECTIVITY:
        raise InputError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    lab, n = cc3d.connected_components(mask.astype(np.uint8, copy=False), connectivity=connectivity, return_N=True)
    touching = np.unique(lab[face_index])
    isolated = np.ones(n + 1, dtype=bool)
    isolated[0] = False
    isolated[touching] = False
    return lab, isolated, int(n)


def _summarise(lab: np.ndarray, isolated: np.ndarray, n: int, voxel_um3: float, total: int) -> dict[str, Any]:
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    iso_ids = np.flatnonzero(isolated)
    iso_sizes = sizes[iso_ids]
    order = np.argsort(iso_sizes)[::-1]
    return {
        "n_clusters": n,
        "n_isolated": int(iso_ids.size),
        "isolated_voxels": int(iso_sizes.sum()),
        "isolated_fraction_of_volume": float(iso_sizes.sum()) / total,
        "isolated_fraction_of_phase": float(iso_sizes.sum()) / max(1, int(sizes[1:].sum())),
        "largest_isolated_um3": float(iso_sizes.max() * voxel_um3) if iso_sizes.size else 0.0,
        "isolated_sizes_voxels_top10": [int(s) for s in iso_sizes[order][:10]],
    }


def find_isolated_clusters(volume: Volume, *, connectivity: int = 6) -> dict[str, Any]:
    """Report pore clusters cut off from the separator face and solid clusters cut off from the current collector.

    Returns a JSON-serialisable dict: ``fractions``, ``pore`` and ``solid`` summaries (cluster counts,
    isolated voxels and fractions, largest isolated cluster in um^3), the connectivity used, and the
    faces (``separator_face``: axis 0 index 0, ``current_collector_face``: axis 0 last index).
    """
    pore = volume.labels == PORE
    solid = ~pore
    total = volume.labels.size
    vv = volume.voxel_volume_um3
    plab, piso, pn = _isolated_mask(pore, 0, connectivity)
    slab, siso, sn = _isolated_mask(solid, -1, connectivity)
    return {
        "fractions": volume.fractions(),
        "connectivity": connectivity,
        "separator_face": "axis 0, index 0",
        "current_collector_face": f"axis 0, index {volume.shape[0] - 1}",
        "pore": _summarise(plab, piso, pn, vv, total),
        "solid": _summarise(slab, siso, sn, vv, total),
    }


def _majority_solid_neighbour(lab: np.ndarray, isolated_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each pore cluster id, the solid phase (ACTIVE or CBD) sharing most faces with it."""
    n = lab.max() + 1 if lab.size else 1
    counts = np.zeros((int(n), 3), dtype=np.int64)
    for axis in range(3):
        for fwd in (True, False):
            a = [slice(None)] * 3
            b = [slice(None)] * 3
            a[axis] = slice(0, -1) if fwd else slice(1, None)
            b[axis] = slice(1, None) if fwd else slice(0, -1)
            src = lab[tuple(a)]
            nb = labels[tuple(b)]
            sel = (src > 0) & (nb != PORE)
            np.add.at(counts, (src[sel].astype(np.int64), nb[sel].astype(np.int64)), 1)
    choice = np.where(counts[:, CBD] > counts[:, ACTIVE], CBD, ACTIVE).astype(np.uint8)
    return choice


def remove_isolated_clusters(
    volume: Volume, *, connectivity: int = 6, pores: bool = True, solids: bool = True, pore_fill: str = "neighbour"
) -> Volume:
    """A copy of ``volume`` with isolated clusters removed.

    Isolated solid (active or CBD not connected to the current collector) becomes pore; isolated pore
    (not connected to the separator) becomes the solid phase it touches most (``pore_fill='neighbour'``)
    or always 'cbd' / 'active'. The report of what was
    removed is stored in ``metadata['isolated_clusters_removed']``. Pores are handled after solids, so
    pore created by removing a floating particle is itself checked.
    """
    labels = volume.labels.copy()
    removed: dict[str, Any] = {"connectivity": connectivity}
    if solids:
        slab, siso, _ = _isolated_mask(labels != PORE, -1, connectivity)
        kill = siso[slab]
        removed["solid_voxels_to_pore"] = int(kill.sum())
        removed["active_voxels_removed"] = int(np.count_nonzero(kill & (labels == ACTIVE)))
        labels[kill] = PORE
    if pores:
        plab, piso, _ = _isolated_mask(labels == PORE, 0, connectivity)
        fill = piso[plab]
        removed["pore_voxels_filled"] = int(fill.sum())
        if fill.any():
            if pore_fill == "neighbour":
                relab = np.where(fill, plab, 0)
                choice = _majority_solid_neighbour(relab, np.flatnonzero(piso), labels)
                labels[fill] = choice[plab[fill]]
            elif pore_fill in ("cbd", "active"):
                labels[fill] = CBD if pore_fill == "cbd" else ACTIVE
            else:
                raise InputError(f"pore_fill must be 'neighbour', 'cbd' or 'active', got {pore_fill!r}")
    if labels.size and not (labels != PORE).any():
        raise InputError("removing isolated clusters left no solid connected to the current collector")
    log.info("isolated clusters removed: %s", removed)
    return volume.with_labels(labels, isolated_clusters_removed=removed)
