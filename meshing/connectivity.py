"""Percolation of each phase of a tagged tet mesh, as the physics will see it.

The half-cell model (:func:`tomocell.physics.model.analyse_mesh`) sets inert whatever cannot carry
current: solid (active + CBD) not in the face-connected solid cluster that touches the current
collector and holds the most active material, and electrolyte (pore + separator) not connected to
the Li face. :func:`phase_connectivity` applies the same rule to a :class:`TetMesh` right after
meshing, so ``tomocell mesh`` reports how much of each phase a discharge would lose before anyone
runs one. Face adjacency and components by scipy.sparse.csgraph (no hand-written graph search).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tomocell.meshing import tags as T
from tomocell.meshing.tetmesh import TetMesh

_FACES = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


def _face_pairs(tets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tet a, tet b) of every interior face, (tet, face index) of every boundary face, and the faces."""
    f = np.sort(tets[:, _FACES].reshape(-1, 3), axis=1)
    owner = np.repeat(np.arange(len(tets)), 4)
    _, inv, counts = np.unique(f, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    inv_s = inv[order]
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    two = counts == 2
    a = owner[order[starts[two]]]
    b = owner[order[starts[two] + 1]]
    one = counts == 1
    bnd = order[starts[one]]
    assert np.all(inv_s[starts] == np.arange(counts.size))
    return a, b, np.stack([owner[bnd], bnd], axis=1), f


def phase_connectivity(mesh: TetMesh) -> dict[str, dict[str, float]]:
    """Per phase: volume_um3, connected_volume_um3, inert_fraction (what the physics would set inert).

    Seeds: boundary faces tagged CURRENT_COLLECTOR for the solid, LI_FACE for the electrolyte (by
    position: z = 0 and z = top, the convention of :mod:`tomocell.meshing.tags`).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    tets, ct, x = mesh.tets, mesh.cell_tags, mesh.points
    p0 = x[tets[:, 0]]
    vol = np.abs(np.einsum("ij,ij->i", np.cross(x[tets[:, 1]] - p0, x[tets[:, 2]] - p0), x[tets[:, 3]] - p0)) / 6.0
    a, b, bnd, faces = _face_pairs(tets)
    z = x[:, 2]
    tol = 1e-9 * max(1.0, float(np.ptp(z)))
    fz = z[faces[bnd[:, 1]]]
    on_cc = np.all(np.abs(fz - z.min()) <= tol, axis=1)
    on_li = np.all(np.abs(fz - z.max()) <= tol, axis=1)
    live = np.zeros(len(tets), dtype=bool)
    for group, seed_faces in ((T.SOLID_CELLS, on_cc), (T.ELECTROLYTE_CELLS, on_li)):
        inside = np.isin(ct, group)
        keep = inside[a] & inside[b]
        n = len(tets)
        g = coo_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])), shape=(n, n))
        _, comp = connected_components(g, directed=False)
        seeds = bnd[seed_faces, 0]
        seeds = seeds[inside[seeds]]
        cand = np.unique(comp[seeds])
        if group == T.SOLID_CELLS:
            # the physics keeps the one collector cluster holding the most active material
            act = np.bincount(comp[ct == T.ACTIVE], weights=vol[ct == T.ACTIVE], minlength=comp.max() + 1)
            cand = cand[[int(np.argmax(act[cand]))]] if cand.size else cand
        live |= inside & np.isin(comp, cand)
    out: dict[str, dict[str, float]] = {}
    for name, tag in T.CELL_TAGS.items():
        sel = ct == tag
        tot = float(vol[sel].sum())
        conn = float(vol[sel & live].sum())
        if tot > 0:
            out[name] = {"volume_um3": tot, "connected_volume_um3": conn, "inert_fraction": 1.0 - conn / tot}
    return out


def describe(report: dict[str, dict[str, float]]) -> str:
    """'active 100.0 %, cbd 97.1 %, ...' connected shares."""
    return ", ".join(f"{k} {100 * (1 - v['inert_fraction']):.1f} %" for k, v in report.items())


def percolation_warning(report: dict[str, Any]) -> str | None:
    bad = {k: v["inert_fraction"] for k, v in report.items() if v["inert_fraction"] > 0}
    if not bad:
        return None
    return ("disconnected material (a discharge sets it inert): " + ", ".join(f"{k} {100 * f:.1f} %" for k, f in bad.items())
            + " of the phase's volume is not connected (solid to the current collector, electrolyte to the separator)")
