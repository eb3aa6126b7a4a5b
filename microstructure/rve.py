"""Representativeness: scalar metrics on growing sub-volumes (is the volume an RVE?).

Cubes (as far as the box allows) centred in the volume, with edges a growing fraction of the box,
each get porosity, phase fractions, specific active/pore area (voxel faces: cheap and, for a
convergence study, as good as any), mean pore size (the full volume's local-thickness field restricted
to the cube: local thickness is a local property, so this is the sub-volume's own value up to pores
cut by the cube faces), particle D50 (particles whose centroid lies in the cube) and, optionally, the
pore tortuosity factor along axis 0. A metric whose relative change over the last two sizes is
small is converged; the table lets a person judge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tomocell.log import progress
from tomocell.microstructure.particles import volume_weighted_diameters
from tomocell.microstructure.tortuosity import tortuosity_factor
from tomocell.microstructure.volume import ACTIVE, PORE, Volume


def rve_fractions(n_steps: int = 5, smallest: float = 0.25) -> list[float]:
    return [float(f) for f in np.linspace(smallest, 1.0, n_steps)]


def _faces_active_pore(lab: np.ndarray, vs: tuple[float, float, float]) -> float:
    farea = (vs[1] * vs[2], vs[0] * vs[2], vs[0] * vs[1])
    tot = 0.0
    for k in range(3):
        a = np.moveaxis(lab, k, 0)
        x, y = a[:-1], a[1:]
        tot += farea[k] * float(np.count_nonzero(((x == ACTIVE) & (y == PORE)) | ((x == PORE) & (y == ACTIVE))))
    return tot


def rve_study(volume: Volume, *, fractions: list[float] | None = None, local_thickness_um: np.ndarray | None = None,
              particle_table: dict[str, np.ndarray] | None = None, with_tortuosity: bool = True,
              full_tau: Any = None, **solver_kw: Any) -> dict[str, list[Any]]:
    """Columns: edge_fraction, edge_um (three), n_voxels, porosity, active/cbd fraction,
    active_pore_area_faces_per_um, mean_pore_diameter_um, particle_d50_um, tau_pore_axis0.
    ``full_tau``: TortuosityResult of the whole volume along axis 0, reused for the full size."""
    fr = fractions or rve_fractions()
    vs = volume.voxel_size_um
    rows: dict[str, list[Any]] = {k: [] for k in (
        "edge_fraction", "edge0_um", "edge1_um", "edge2_um", "n_voxels", "porosity", "active_fraction", "cbd_fraction",
        "active_pore_area_faces_per_um", "mean_pore_diameter_um", "particle_d50_um", "tau_pore_axis0")}
    side = min(volume.shape)
    for f in progress(fr, desc="RVE study"):
        edge = [max(4, int(round(f * side))) if f < 1.0 else n for n in volume.shape]
        lo = [(n - e) // 2 for n, e in zip(volume.shape, edge)]
        sl = tuple(slice(a, a + e) for a, e in zip(lo, edge))
        sub = volume.subvolume(sl)
        fr_sub = sub.fractions()
        rows["edge_fraction"].append(f)
        for k in range(3):
            rows[f"edge{k}_um"].append(edge[k] * vs[k])
        rows["n_voxels"].append(int(sub.labels.size))
        rows["porosity"].append(fr_sub["pore"])
        rows["active_fraction"].append(fr_sub["active"])
        rows["cbd_fraction"].append(fr_sub["cbd"])
        rows["active_pore_area_faces_per_um"].append(_faces_active_pore(sub.labels, vs) / float(np.prod(sub.extent_um)))
        if local_thickness_um is not None:
            lt = local_thickness_um[sl][sub.labels == PORE]
            rows["mean_pore_diameter_um"].append(float(lt.mean()) if lt.size else None)
        else:
            rows["mean_pore_diameter_um"].append(None)
        if particle_table is not None and len(particle_table["label"]):
            c = [np.asarray(particle_table[k]) for k in ("centroid_depth_um", "centroid_1_um", "centroid_2_um")]
            inside = np.ones(c[0].size, bool)
            for k in range(3):
                inside &= (c[k] >= lo[k] * vs[k]) & (c[k] < (lo[k] + edge[k]) * vs[k])
            if inside.any():
                sub_table = {k: np.asarray(particle_table[k])[inside] for k in ("equivalent_diameter_um", "volume_um3")}
                rows["particle_d50_um"].append(volume_weighted_diameters(sub_table, (0.5,))["d50_um"])
            else:
                rows["particle_d50_um"].append(None)
        else:
            rows["particle_d50_um"].append(None)
        if with_tortuosity and full_tau is not None and f >= 1.0:  # the whole volume: already solved
            rows["tau_pore_axis0"].append(full_tau.tau)
        elif with_tortuosity and fr_sub["pore"] > 0:
            rows["tau_pore_axis0"].append(tortuosity_factor(sub, "pore", 0, raise_if_not_percolating=False, **solver_kw).tau)
        else:
            rows["tau_pore_axis0"].append(None)
    return rows
