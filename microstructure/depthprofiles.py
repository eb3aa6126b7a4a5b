"""Tortuosity of growing slabs from the separator plane and the Bruggeman exponent (Fig. 2j, 2l).

For depths z_1 < z_2 < ... the slab between the separator plane (axis-0 index 0) and depth z_k is
cut out, and its pore tortuosity factor solved along each requested direction (axis 0 = through the
slab's thickness, axes 1/2 = in-plane through the same slab). The Bruggeman exponent of the slab is
p = -ln(tau) / ln(eps) (tau = eps^-p). A slab whose pore does not percolate in a direction gets
tau = None (not a number) and p = None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tomocell.log import progress
from tomocell.microstructure.tortuosity import tortuosity_factor
from tomocell.microstructure.volume import Volume


def bruggeman_exponent(tau: float | None, eps: float) -> float | None:
    """p in tau = eps^-p; None when tau is None or eps is 0 or 1 (undefined)."""
    if tau is None or not (0.0 < eps < 1.0) or tau <= 0:
        return None
    return float(-np.log(tau) / np.log(eps))


def slab_depths(n0: int, n_steps: int, min_voxels: int = 4) -> list[int]:
    """Slab thicknesses (voxels), roughly evenly spaced, ending at the full thickness."""
    steps = np.unique(np.linspace(0, n0, n_steps + 1)[1:].round().astype(int))
    return [int(s) for s in steps if s >= min(min_voxels, n0)]


def depth_profile(volume: Volume, *, directions: tuple[int, ...] = (0, 1, 2), n_steps: int = 8,
                  phase: str = "pore", full: dict[int, Any] | None = None, **solver_kw: Any) -> dict[str, Any]:
    """Columns: depth_um, eps, and per direction tau_axisK, p_axisK (None where not percolating).

    ``full``: {axis: TortuosityResult} of the whole volume, reused for the full-depth slab."""
    vs = volume.voxel_size_um
    depths = slab_depths(volume.shape[0], n_steps)
    rows: dict[str, list[Any]] = {"depth_um": [], "eps": []}
    for ax in directions:
        rows[f"tau_axis{ax}"] = []
        rows[f"p_axis{ax}"] = []
    for nz in progress(depths, desc="depth profile"):
        slab = volume.subvolume((slice(0, nz), slice(None), slice(None)))
        rows["depth_um"].append(nz * vs[0])
        eps = float((slab.labels == 0).mean()) if phase == "pore" else float("nan")
        rows["eps"].append(eps)
        for ax in directions:
            if eps == 0.0:
                tau = None
            elif full is not None and ax in full and nz == volume.shape[0]:
                tau, eps = full[ax].tau, full[ax].eps
            else:
                r = tortuosity_factor(slab, phase, ax, raise_if_not_percolating=False, **solver_kw)
                tau = r.tau
                eps = r.eps
            rows[f"tau_axis{ax}"].append(tau)
            rows[f"p_axis{ax}"].append(bruggeman_exponent(tau, eps))
    return rows
