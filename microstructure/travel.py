"""Travel distance of Li+ through the pores from the separator, and local tortuosity at each
reaction site (paper Fig. 5d-i).

The geodesic distance L(x) from the separator plane (the face at axis-0 index -1/2) through the pore
phase is computed by fast marching (``scikit-fmm``) with the solid phases as obstacles. The same
march carries the in-plane coordinates of the separator-plane point each path starts from, by
extending them along the characteristics (``skfmm.extension_velocities``: grad f . grad L = 0); so at
every point we also know where its shortest path left the separator. At each reaction site (pore
voxel sharing a face with active material):

* tau_pore = L / |x - x_start| (geodesic over straight line from the path's start, Fig. 5h red);
* tau_electrode = L / depth (geodesic over vertical distance to the separator plane, Fig. 5h green).

Pore voxels not connected to the separator plane through the pore get NaN (they cannot be reached).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.microstructure.volume import ACTIVE, PORE, Volume


def _reachable_pore(pore: np.ndarray) -> np.ndarray:
    import cc3d

    lab = cc3d.connected_components(pore, connectivity=6)
    top = np.unique(lab[0])
    top = top[top > 0]
    return np.isin(lab, top)


def travel_fields(volume: Volume, *, with_start: bool = True) -> dict[str, np.ndarray]:
    """Geodesic distance (um, float32, NaN outside the reachable pore) and, if ``with_start``, the
    in-plane coordinates (um) of each path's start on the separator plane."""
    import skfmm

    pore = volume.labels == PORE
    if not pore.any():
        raise InputError("volume has no pore phase: no travel distance")
    reach = _reachable_pore(pore)
    if not reach.any():
        raise InputError("no pore voxel touches the separator face (axis 0, index 0): no travel distance")
    del pore
    vs = volume.voxel_size_um
    n0, n1, n2 = volume.shape
    # one extra slab of "separator" before index 0: phi < 0 there, > 0 in the pore; zero level at -1/2
    phi = np.ones((n0 + 1, n1, n2), dtype=np.float64)
    phi[0] = -1.0
    obstacle = np.zeros(phi.shape, dtype=bool)
    obstacle[1:] = ~reach
    phi_m = np.ma.MaskedArray(phi, obstacle)
    out: dict[str, np.ndarray] = {}
    if with_start:
        c1 = (np.arange(n1) + 0.5) * vs[1]
        c2 = (np.arange(n2) + 0.5) * vs[2]
        starts = []
        dist = None
        for coord, ax in ((c1, 1), (c2, 2)):
            speed = np.ascontiguousarray(np.broadcast_to(coord.reshape([-1 if a == ax else 1 for a in range(3)]), phi.shape), dtype=np.float64)
            d, ext = skfmm.extension_velocities(phi_m, speed, dx=list(vs), order=2)
            dist = d
            starts.append(np.ma.filled(ext, np.nan)[1:].astype(np.float32))
        out["start_1_um"], out["start_2_um"] = starts
    else:
        dist = skfmm.distance(phi_m, dx=list(vs), order=2)
    # the march measures from the zero level (index -1/2) already
    L = np.ma.filled(dist, np.nan)[1:].astype(np.float32)
    L[~reach] = np.nan
    out["travel_distance_um"] = L
    return out


def travel_distance(volume: Volume) -> np.ndarray:
    """Geodesic distance (um, float32) through the pore from the separator plane; NaN where unreachable."""
    return travel_fields(volume, with_start=False)["travel_distance_um"]


def reaction_sites(volume: Volume) -> np.ndarray:
    """Boolean mask of pore voxels that share a face with active material."""
    pore = volume.labels == PORE
    act = volume.labels == ACTIVE
    touch = np.zeros_like(pore)
    for k in range(3):
        a = np.moveaxis(act, k, 0)
        t = np.moveaxis(touch, k, 0)
        t[:-1] |= a[1:]
        t[1:] |= a[:-1]
    return pore & touch


def reaction_site_tortuosity(volume: Volume, travel: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """Table (columns) of every reachable reaction site: depth, L, straight distance, tau_pore,
    tau_electrode. ``travel`` is the dict of :func:`travel_fields` (needed for tau_pore); a bare
    distance array gives tau_electrode only (tau_pore NaN)."""
    fields = travel if isinstance(travel, dict) else {"travel_distance_um": travel}
    L = fields["travel_distance_um"]
    if L.shape != volume.shape:
        raise InputError(f"travel distance shape {L.shape} differs from the volume {volume.shape}")
    sites = reaction_sites(volume) & np.isfinite(L)
    if not sites.any():
        raise InputError("no reachable reaction site (pore voxel touching active material)")
    idx = np.nonzero(sites)
    vs = volume.voxel_size_um
    depth = (idx[0] + 0.5) * vs[0]
    length = L[idx].astype(np.float64)
    if "start_1_um" in fields:
        p1 = (idx[1] + 0.5) * vs[1]
        p2 = (idx[2] + 0.5) * vs[2]
        straight = np.sqrt(depth**2 + (p1 - fields["start_1_um"][idx]) ** 2 + (p2 - fields["start_2_um"][idx]) ** 2)
        tau_pore = length / straight
    else:
        straight = np.full(depth.shape, np.nan)
        tau_pore = np.full(depth.shape, np.nan)
    return {
        "i0": idx[0], "i1": idx[1], "i2": idx[2], "depth_um": depth, "travel_um": length,
        "straight_um": straight, "tau_pore": tau_pore, "tau_electrode": length / depth,
    }


def depth_binned(table: dict[str, np.ndarray], bin_um: float, n_bins: int | None = None) -> dict[str, np.ndarray]:
    """Mean and 10/90 % quantiles of tau_pore and tau_electrode in depth bins of ``bin_um``."""
    depth = table["depth_um"]
    nb = n_bins or int(np.ceil(depth.max() / bin_um))
    b = np.minimum((depth / bin_um).astype(int), nb - 1)
    out: dict[str, Any] = {"depth_um": (np.arange(nb) + 0.5) * bin_um, "count": np.bincount(b, minlength=nb)}
    for name in ("tau_pore", "tau_electrode", "travel_um"):
        v = table[name]
        mean = np.full(nb, np.nan)
        p10 = np.full(nb, np.nan)
        p90 = np.full(nb, np.nan)
        for i in range(nb):
            s = v[b == i]
            s = s[np.isfinite(s)]
            if s.size:
                mean[i] = s.mean()
                p10[i], p90[i] = np.quantile(s, (0.1, 0.9))
        out[f"{name}_mean"], out[f"{name}_p10"], out[f"{name}_p90"] = mean, p10, p90
    return out
