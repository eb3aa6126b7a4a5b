"""Triangle-quality improvement of the multi-label interface surface before gmsh meshes the volume.

Why: gmsh recovers every embedded surface triangle as a tet face, so a tet standing on a needle or a
cap triangle is itself flat, whatever gmsh's optimiser does. Smoothing clipped at 0.45 voxel and
vtkDecimatePro leave ~1 % of the triangles with quality (4 sqrt(3) A / sum l^2) below 0.1; those
triangles are the root cause of most slivers of the surface route. This pass is the usual local
surface remeshing (edge flip, edge collapse, tangential relocation), written here because the
installed libraries (VTK, gmsh) cannot do it while keeping a non-manifold multi-patch surface
conformal: gmsh's remesher needs a manifold surface per patch with parametrisable curves, and VTK's
filters treat the surface as one manifold.

Rules that keep the mesh conformal and the phases in place:

* every operation stays inside one patch (one label pair, or one box plane); vertices shared by two
  patches (triple lines, junctions, box edges) never move and are never removed, and an edge is
  flipped only if exactly two triangles of one patch share it, so triple lines are kept exactly;
* a flip needs the two triangles to be nearly coplanar (dihedral below ``max_bend_deg``), a collapse
  removes a vertex lying within ``max_deviation_vox`` voxel of the triangles that replace its star and a relocation moves a vertex in its tangent
  plane only; vertices on an axis-aligned plane patch (box faces, the electrode|separator plane) keep
  that coordinate exactly;
* a change is accepted only if it raises the worst triangle quality of the triangles it touches and
  no triangle turns over; the result is checked for folded or intersecting triangles, and vertices
  near a defect are frozen and the pass redone (at worst the input surface is returned).
"""

from __future__ import annotations

import numpy as np

from tomocell.log import get_logger
from tomocell.meshing.fidelity import cross3

log = get_logger("meshing.surface_quality")


def triangle_quality(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """4 sqrt(3) area / (sum of squared edge lengths): 1 for equilateral, 0 for degenerate."""
    p = points[tris]
    c = cross3(p[..., 1, :] - p[..., 0, :], p[..., 2, :] - p[..., 0, :])
    a = 0.5 * np.sqrt(np.sum(c * c, axis=-1))
    l2 = sum(np.sum((p[..., (i + 1) % 3, :] - p[..., i, :]) ** 2, axis=-1) for i in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(4.0 * np.sqrt(3.0) * a / l2)


def _normal(p: np.ndarray) -> np.ndarray:
    return cross3(p[..., 1, :] - p[..., 0, :], p[..., 2, :] - p[..., 0, :])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300)


class _Pass:
    def __init__(self, P, T, pid, frozen, hold, voxel_um, threshold, max_bend_deg, max_deviation_vox):
        self.P, self.T, self.pid, self.frozen, self.hold = P, T, pid, frozen, hold
        self.alive = np.ones(len(T), dtype=bool)
        self.thr = threshold
        self.cos_bend = float(np.cos(np.deg2rad(max_bend_deg)))
        self.max_dev = max_deviation_vox * voxel_um
        self.max_move = 0.5 * voxel_um
        self.stats = {"flips": 0, "collapses": 0, "moves": 0}

    def _index(self):
        live = np.flatnonzero(self.alive)
        flat = self.T[live].ravel()
        order = np.argsort(flat, kind="stable")
        self.tri_of = np.repeat(live, 3)[order]
        self.start = np.searchsorted(flat[order], np.arange(len(self.P) + 1))

    def star(self, v):
        return self.tri_of[self.start[v] : self.start[v + 1]]

    def run(self, rounds: int) -> None:
        T, P = self.T, self.P
        for _ in range(rounds):
            q = triangle_quality(P, T)
            bad = np.flatnonzero(self.alive & (q < self.thr))
            if not len(bad):
                break
            self._index()
            locked = self.hold.copy()  # vertices near a defect of an earlier attempt are left alone
            changed = 0
            for t in bad[np.argsort(q[bad])]:
                if not self.alive[t] or locked[T[t]].any():
                    continue
                if self._collapse(t, q, locked) or self._flip(t, q, locked) or self._move(t, q, locked):
                    changed += 1
            if not changed:
                break

    # -- edge flip ---------------------------------------------------------------------------------
    def _flip(self, t, q, locked) -> bool:
        T, P = self.T, self.P
        best = None
        for i in range(3):
            a, b, c = (int(x) for x in T[t][[i, (i + 1) % 3, (i + 2) % 3]])
            sa = self.star(a)
            sh = sa[np.any(T[sa] == b, axis=1)]
            if len(sh) != 2:
                continue
            s = int(sh[0] if sh[1] == t else sh[1])
            if self.pid[s] != self.pid[t]:
                continue
            d = int(T[s][(T[s] != a) & (T[s] != b)][0])
            if locked[[c, d]].any() or c == d:
                continue
            sc = self.star(c)
            if np.any(T[sc] == d):
                continue  # edge cd exists already
            n1 = _normal(P[[a, b, c]])
            n2 = _normal(P[[b, a, d]])
            if np.dot(_unit(n1), _unit(n2)) < self.cos_bend:
                continue
            new = np.array([[a, d, c], [d, b, c]])
            nn = _normal(P[new])
            ref = n1 + n2
            if np.any(nn @ ref <= 0):
                continue
            qn = float(triangle_quality(P, new).min())
            qo = min(q[t], q[s])
            if qn > qo + 1e-3 and (best is None or qn > best[0]):
                best = (qn, s, new, (a, b, c, d), bool(np.dot(_normal(P[T[s]]), n2) < 0))
        if best is None:
            return False
        qn, s, new, (a, b, c, d), s_reversed = best
        T[t] = new[0]
        T[s] = new[1][::-1] if s_reversed else new[1]
        q[[t, s]] = triangle_quality(P, T[[t, s]])
        locked[[a, b, c, d]] = True
        self.stats["flips"] += 1
        return True

    # -- edge collapse -----------------------------------------------------------------------------
    def _collapse(self, t, q, locked) -> bool:
        T, P = self.T, self.P
        tri = T[t]
        lens = [np.linalg.norm(P[tri[(i + 1) % 3]] - P[tri[i]]) for i in range(3)]
        for i in np.argsort(lens):
            e = (int(tri[i]), int(tri[(i + 1) % 3]))
            for v, w in (e, e[::-1]):
                if self.frozen[v]:
                    continue
                st = self.star(v)
                ring = np.unique(T[st])
                if locked[ring].any() or len(ring) - 1 != len(st):
                    continue
                # v interior: every edge (v, x) in exactly two triangles of its star
                others = T[st][T[st] != v].reshape(-1, 2)
                if np.any(np.bincount(others.ravel(), minlength=0)[np.unique(others)] != 2):
                    continue
                sw = self.star(w)
                ring_w = np.unique(T[sw])
                common = np.intersect1d(ring, ring_w)
                if len(common) != 4:  # v, w and the two opposite vertices
                    continue
                keep = ~np.any(T[st] == w, axis=1)
                old = T[st][keep]
                new = np.where(old == v, w, old)
                n_old = _unit(_normal(P[old]))
                n_new = _unit(_normal(P[new]))
                if np.any(np.einsum("ij,ij->i", n_old, n_new) < self.cos_bend):
                    continue
                # geometric error: distance of the removed vertex from the new triangles' planes
                if np.abs(np.einsum("ij,ij->i", P[v] - P[new[:, 0]], n_new)).max() > self.max_dev:
                    continue
                qn = float(triangle_quality(P, new).min())
                if qn <= float(q[st].min()) + 1e-3:
                    continue
                self.alive[st[~keep]] = False
                T[st[keep]] = new
                q[st[keep]] = triangle_quality(P, new)
                locked[ring] = True
                self.stats["collapses"] += 1
                return True
        return False

    # -- tangential relocation ---------------------------------------------------------------------
    def _move(self, t, q, locked) -> bool:
        T, P = self.T, self.P
        for v in T[t]:
            v = int(v)
            if self.frozen[v]:
                continue
            st = self.star(v)
            ring = np.unique(T[st])
            if locked[ring].any():
                continue
            nb = ring[ring != v]
            n_old = _unit(_normal(P[T[st]]))
            sgn = np.where(n_old @ n_old[0] < 0, -1.0, 1.0)
            n_avg = _unit((n_old * sgn[:, None]).sum(axis=0))
            disp = P[nb].mean(axis=0) - P[v]
            disp -= np.dot(disp, n_avg) * n_avg
            nd = np.linalg.norm(disp)
            if nd > self.max_move:
                disp *= self.max_move / nd
            exact = np.all(P[nb] == P[v], axis=0)  # axis-aligned plane patch: keep that coordinate
            disp[exact] = 0.0
            old = P[v].copy()
            q0 = float(q[st].min())
            for w in (1.0, 0.5, 0.25):
                P[v] = old + w * disp
                n_new = _unit(_normal(P[T[st]]))
                if np.all(np.einsum("ij,ij->i", n_old, n_new) > self.cos_bend):
                    qs = triangle_quality(P, T[st])
                    if qs.min() > q0 + 1e-3:
                        q[st] = qs
                        locked[ring] = True
                        self.stats["moves"] += 1
                        return True
            P[v] = old
        return False


def improve_surface(
    points: np.ndarray,
    groups: dict,
    *,
    voxel_um: float,
    threshold: float = 0.35,
    rounds: int = 12,
    max_bend_deg: float = 20.0,
    max_deviation_vox: float = 0.05,
    max_restarts: int = 6,
) -> tuple[np.ndarray, dict, dict]:
    """Raise the worst triangle quality of a multi-patch surface (see module docstring).

    ``groups`` maps a patch key to its (T, 3) triangles into ``points``. Returns (points, groups,
    figures); the inputs are not modified. Triangles below ``threshold`` are worked on.
    """
    from tomocell.meshing.surface import defective_triangles

    keys = list(groups)
    T0 = np.concatenate([groups[k] for k in keys]).astype(np.int64)
    pid = np.concatenate([np.full(len(groups[k]), i) for i, k in enumerate(keys)])
    nv = len(points)
    vp = np.unique(np.column_stack([T0.ravel(), np.repeat(pid, 3)]), axis=0)
    frozen = np.bincount(vp[:, 0], minlength=nv) > 1
    for i in range(len(keys)):
        tri = T0[pid == i]
        e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
        ue, c = np.unique(e, axis=0, return_counts=True)
        frozen[ue[c > 2].ravel()] = True
    q_in = triangle_quality(points, T0)
    hold = np.zeros(nv, dtype=bool)
    info = {"min_quality_before": float(q_in.min()), "below_0.1_before": int(np.count_nonzero(q_in < 0.1))}
    for r in range(max_restarts + 1):
        ps = _Pass(np.array(points, dtype=np.float64, copy=True), T0.copy(), pid, frozen, hold, voxel_um,
                   threshold, max_bend_deg, max_deviation_vox)
        ps.run(rounds)
        alive = ps.alive
        bad = defective_triangles(ps.P, ps.T[alive])
        if not np.any(bad):
            break
        # freeze the defect's vertices and their one-rings in the input and in the result, then redo
        v = np.unique(ps.T[alive][bad])
        for tri in (T0, ps.T[alive]):
            hold[np.unique(tri[np.isin(tri, v).any(axis=1)])] = True
    else:
        info["fallback"] = "defects remained after the restarts; input surface kept"
        return points, groups, info
    T = ps.T
    out = {k: T[alive & (pid == i)] for i, k in enumerate(keys)}
    q_out = triangle_quality(ps.P, T[alive])
    info.update(ps.stats, restarts=r, min_quality_after=float(q_out.min()),
                **{"below_0.1_after": int(np.count_nonzero(q_out < 0.1))})
    log.info("surface quality: %d flips, %d collapses, %d moves; min %.3g -> %.3g, below 0.1: %d -> %d",
             ps.stats["flips"], ps.stats["collapses"], ps.stats["moves"], info["min_quality_before"],
             info["min_quality_after"], info["below_0.1_before"], info["below_0.1_after"])
    return ps.P, out, info


__all__ = ["improve_surface", "triangle_quality"]
