"""What the simulation sees: effective transport of a phase computed on the mesh itself.

The physics uses P1 elements on the tets of each phase, so a phase network is whatever the tets
connect: on a voxel mesh, two voxels that touch only along an edge share mesh nodes and carry flux,
where `characterise` (finite volumes, 6-connected voxels) sees a wall. :func:`mesh_tortuosity`
solves the same steady diffusion problem as :mod:`tomocell.microstructure.tortuosity`, but with P1
finite elements on the mesh tets of the phase: c = 1 on the current-collector plane (z = 0), c = 0
on the electrode/separator plane (z = L), no flux elsewhere; only the nodes connected to both
planes (through tets of the phase) are unknowns. Then

    D_eff / D0 = J L / (A_cross * dc),   tau = eps * D0 / D_eff

with ``J`` the flux through the outlet plane (the reaction of the stiffness matrix at its nodes),
``A_cross`` the box cross-section and ``eps`` the phase volume fraction of the mesh's electrode
(dead ends included, as in `characterise`). :func:`transport_comparison` puts these next to the
voxel values for the fidelity report; :func:`simulated_vs_characterised` gathers the phase fractions,
interface areas and tau of the mesh next to their voxel values, and :func:`geometry_changes` lists
what moved beyond the bounds (the ``warnings`` of ``fidelity.json``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tomocell.errors import NotPercolatingError
from tomocell.meshing import tags
from tomocell.meshing.tetmesh import TetMesh

#: mesh tags of each transporting phase ('solid' = electronic path through active + CBD)
PHASE_TAGS: dict[str, tuple[int, ...]] = {"pore": (tags.PORE,), "solid": (tags.ACTIVE, tags.CBD)}
#: bounds of the geometry check (issue 16): phase fractions 1 % (CBD 2 %), interface areas 5 %
FRACTION_TOL = {"pore": 0.01, "active": 0.01, "cbd": 0.02}
AREA_TOL = 0.05
AREA_MIN_SHARE = 0.02  #: interfaces below this share of the total area are reported, not checked
#: bound on the through-thickness tau of the mesh vs `characterise`. 5 %: tau sets the electrolyte's
#: effective conductivity and diffusivity (eps / tau) linearly, as the interface area sets the
#: Butler-Volmer exchange, so it gets the same bound as the areas; the two solvers agree to 1e-6 where
#: the geometry is the same for both (straight channels, tests/test_mesh_transport.py), so a change
#: beyond 5 % is the mesh's geometry (coarsening, edge-only voxel contacts, smoothing), not the solvers.
TAU_TOL = 0.05


def _p1_stiffness(points: np.ndarray, tets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and values of the P1 Laplace stiffness matrix (COO, duplicates summed later)."""
    p = points[tets]
    J = np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]], axis=1)  # rows = edges
    det = np.linalg.det(J)
    vol = np.abs(det) / 6.0
    Jinv = np.linalg.inv(J)  # columns of Jinv are the gradients of barycentric coordinates 1..3
    g = np.concatenate([-Jinv.sum(axis=2, keepdims=True), Jinv], axis=2)  # (M, 3, 4)
    K = np.einsum("mik,mil->mkl", g, g) * vol[:, None, None]
    rows = np.repeat(tets, 4, axis=1).ravel()
    cols = np.tile(tets, (1, 4)).ravel()
    return rows, cols, K.ravel()


def mesh_tortuosity(mesh: TetMesh, phase: str = "pore") -> dict[str, Any]:
    """Through-thickness D_eff/D0 and tau of ``phase`` ('pore' or 'solid') on the mesh (P1 FE).

    Raises :class:`NotPercolatingError` when the phase's tets do not connect z = 0 to z = L."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import spsolve

    if phase not in PHASE_TAGS:
        raise ValueError(f"unknown phase {phase!r} (choose from {sorted(PHASE_TAGS)})")
    L = mesh.electrode_thickness_um
    x1, y1, _ = mesh.box_um
    sel = np.isin(mesh.cell_tags, PHASE_TAGS[phase])
    electrode = ~np.isin(mesh.cell_tags, (tags.SEPARATOR,))
    vols = mesh.tet_volumes_um3()
    eps = float(vols[sel].sum() / vols[electrode].sum())
    tets = mesh.tets[sel]
    z = mesh.points[:, 2]
    tol = 1e-9 * max(L, 1.0)
    inlet, outlet = np.abs(z) < tol, np.abs(z - L) < tol
    n = mesh.num_nodes
    # node graph through the phase's tets: keep the components touching both planes
    a = np.repeat(tets, 4, axis=1).ravel()
    b = np.tile(tets, (1, 4)).ravel()
    graph = sp.coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n)).tocsr()
    _, comp = connected_components(graph, directed=False)
    used = np.zeros(n, bool)
    used[tets.ravel()] = True
    good = np.intersect1d(np.unique(comp[used & inlet]), np.unique(comp[used & outlet]))
    if len(good) == 0:
        raise NotPercolatingError(f"{phase}: the mesh's {phase} tets do not connect z = 0 to z = {L:g} um")
    keep_nodes = used & np.isin(comp, good)
    tets = tets[keep_nodes[tets[:, 0]]]
    r, c, v = _p1_stiffness(mesh.points, tets)
    K = sp.coo_matrix((v, (r, c)), shape=(n, n)).tocsr()
    fixed = keep_nodes & (inlet | outlet)
    free = np.flatnonzero(keep_nodes & ~fixed)
    u = np.zeros(n)
    u[keep_nodes & inlet] = 1.0
    if len(free):
        rhs = -(K[free][:, np.flatnonzero(fixed)] @ u[fixed])
        u[free] = spsolve(K[free][:, free].tocsc(), rhs)
    flux = K @ u  # reaction: the flux leaving through each fixed node
    j_in, j_out = float(flux[keep_nodes & inlet].sum()), -float(flux[keep_nodes & outlet].sum())
    d_eff = j_out * L / (x1 * y1 * 1.0)
    return {"phase": phase, "eps": eps, "D_eff_over_D0": d_eff, "tau": eps / d_eff,
            "flux_balance": abs(j_in - j_out) / max(abs(j_out), 1e-300), "unknowns": int(len(free))}


def voxel_tortuosity(volume: Any, phase: str = "pore") -> dict[str, Any] | None:
    """`characterise`'s through-thickness value (axis 0, finite volumes); None if not percolating."""
    from petsc4py import PETSc

    from tomocell.microstructure.tortuosity import tortuosity_factor

    # one rank: the mesh (and this report) is built on one rank
    r = tortuosity_factor(volume, phase, axis=0, raise_if_not_percolating=False, comm=PETSc.COMM_SELF)
    if not r.percolating:
        return None
    return {"phase": phase, "eps": float(r.eps), "D_eff_over_D0": float(r.d_eff_over_d0), "tau": float(r.tau)}


def transport_comparison(mesh: TetMesh, volume: Any, phases: tuple[str, ...] = ("pore",)) -> dict[str, Any]:
    """Mesh and voxel tau side by side, with the relative change of D_eff (mesh vs voxels)."""
    out: dict[str, Any] = {"method": "mesh: P1 FE on the phase's tets; voxels: finite volumes (characterise)"}
    for ph in phases:
        try:
            m = mesh_tortuosity(mesh, ph)
        except NotPercolatingError:
            m = None
        vx = voxel_tortuosity(volume, ph)
        rel = None
        if m is not None and vx is not None:
            rel = m["D_eff_over_D0"] / vx["D_eff_over_D0"] - 1.0
        elif (m is None) != (vx is None):
            rel = float("inf")
        out[ph] = {"mesh": m, "voxels": vx, "D_eff_rel_change": rel}
    return out


def simulated_vs_characterised(report: dict) -> dict[str, Any]:
    """The geometric inputs of the physics measured on the mesh next to their voxel values.

    Phase fractions of the electrode (vs the original voxels, also after coarsening), interface
    areas (vs the checked marching-cubes reference of :mod:`tomocell.meshing.fidelity`) and the
    through-thickness transport of :func:`transport_comparison` (``report['transport']``), each with
    its relative change, its bound and whether it is checked.
    """
    vols = report.get("phase_volumes_vs_original_voxels", report["phase_volumes"])
    tot_m = sum(v["mesh_um3"] for v in vols.values()) or 1.0
    tot_v = sum(v["voxels_um3"] for v in vols.values()) or 1.0
    fractions = {}
    for name, v in vols.items():
        fm, fv = v["mesh_um3"] / tot_m, v["voxels_um3"] / tot_v
        fractions[name] = {"mesh": fm, "voxels": fv, "rel_change": _rel(fm, fv),
                           "bound": FRACTION_TOL.get(name, 0.01), "checked": fv > 0}
    ia = report.get("interface_areas", {})
    total = sum(max(v["marching_cubes_um2"], 0.0) for v in ia.values())
    areas = {name: {"mesh_um2": v["mesh_um2"], "reference_um2": v["marching_cubes_um2"],
                    "rel_change": v["rel_error"], "bound": AREA_TOL,
                    # below 2 % of the total area the reference's pair split at triple lines dominates
                    "checked": v["marching_cubes_um2"] > AREA_MIN_SHARE * total}
             for name, v in ia.items()}
    transport = {}
    for ph, t in report.get("transport", {}).items():
        if not isinstance(t, dict) or "mesh" not in t:
            continue
        m, vx = t["mesh"], t["voxels"]
        row: dict[str, Any] = {"mesh_tau": None if m is None else m["tau"], "voxels_tau": None if vx is None else vx["tau"],
                               "mesh_D_eff_over_D0": None if m is None else m["D_eff_over_D0"],
                               "voxels_D_eff_over_D0": None if vx is None else vx["D_eff_over_D0"],
                               "D_eff_rel_change": t.get("D_eff_rel_change"), "bound": TAU_TOL, "checked": True}
        row["tau_rel_change"] = (_rel(m["tau"], vx["tau"]) if m is not None and vx is not None
                                 else (None if m is None and vx is None else float("inf")))
        transport[ph] = row
    return {"phase_fractions": fractions, "interface_areas": areas, "transport": transport,
            "references": {"phase_fractions": "voxel counts of the original volume",
                           "interface_areas": "marching cubes of the binary phase masks (the checked reference; it "
                                              "overstates smooth bodies by 8-12 %, see docs/meshing.md)",
                           "transport": "characterise's finite-volume solver on the original voxels (axis 0)"}}


def _rel(a: float, b: float) -> float:
    return (a - b) / b if b > 0 else (0.0 if a == 0 else float("inf"))


def geometry_changes(report: dict, *, tau_tol: float = TAU_TOL, area_tol: float = AREA_TOL) -> list[str]:
    """What the mesh changed beyond the bounds: phase fractions (vs the original voxels), interface
    areas (vs the marching-cubes reference) and the transport tau (vs `characterise`)."""
    cmp = simulated_vs_characterised(report)
    out = []
    for name, f in cmp["phase_fractions"].items():
        if f["checked"] and abs(f["rel_change"]) > f["bound"]:
            out.append(f"{name} fraction {f['mesh']:.4f} on the mesh vs {f['voxels']:.4f} in the voxels "
                       f"({100 * f['rel_change']:+.1f} %, bound {100 * f['bound']:.0f} %)")
    for name, a in cmp["interface_areas"].items():
        if a["checked"] and abs(a["rel_change"]) > area_tol:
            out.append(f"{name} area {a['mesh_um2']:.4g} um2 on the mesh vs {a['reference_um2']:.4g} um2 from marching "
                       f"cubes ({100 * a['rel_change']:+.0f} %, bound {100 * area_tol:.0f} %)")
    for ph, t in cmp["transport"].items():
        rel = t["tau_rel_change"]
        if rel is None:
            continue
        if not np.isfinite(rel):
            out.append(f"{ph} percolation differs between the mesh and the voxels "
                       f"(through-thickness tau {t['mesh_tau']} on the mesh, {t['voxels_tau']} in characterise)")
        elif abs(rel) > tau_tol:
            out.append(f"{ph} tau {t['mesh_tau']:.3f} on the mesh vs {t['voxels_tau']:.3f} in characterise "
                       f"({100 * rel:+.0f} %, bound {100 * tau_tol:.0f} %, D_eff/D0 {t['mesh_D_eff_over_D0']:.4f} vs "
                       f"{t['voxels_D_eff_over_D0']:.4f})")
    return out
