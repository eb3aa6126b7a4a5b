"""Coarsening and quality remeshing of the multi-patch interface surface (compiled with numba).

The surface is one triangle set whose patches (one label pair and region pair, or one box plane)
share vertices along patch borders: triple lines, phase lines on box faces, box edges. gmsh keeps
every surface triangle as a tet face, so this surface sets both the number of tetrahedra and their
worst quality. Three local operations bring it to the target edge length ``h`` with good triangles:

* **half-edge collapse** (v -> w, v removed, w kept in place), shortest edges first, of edges
  shorter than 0.8 h and of the shortest edge of every triangle below quality 0.2, when the new
  edges stay below 1.6 h. A vertex inside a patch may collapse onto any neighbour. A vertex on a
  patch border (a *curve* vertex: its patches meet along exactly two border edges with the same
  patch set) collapses only along its border onto a border neighbour, so every triple line and box
  edge is coarsened as a line and stays shared by all its patches. Junctions of borders and box
  corners never move. Because a collapse only removes a vertex and keeps the others where they
  are, box faces and the electrode|separator plane stay exactly planar. A collapse is refused when
  it breaks the link condition (it would glue the surface), turns a triangle by more than
  ``max_bend_deg``, lowers the worst quality of the star below ``min_quality``, or when the removed
  vertex lies further than the error bound from the new triangles (or, on a border, from the new
  border segment); errors accumulate on the kept vertex (as in vtkDecimatePro's AccumulateError)
  so phase volumes do not drift. This is a heuristic, not a strict bound: the points a removed
  vertex stood for are not followed when a neighbour of the kept vertex collapses later. On a
  remeshed ball (0.3 voxel per collapse) the input points end up to 0.48 voxel from the new surface;
  following them onto every neighbour keeps them within 0.31 voxel but leaves 60 % more triangles
  (118 k instead of 72 k on the 100^3 phantom). Phase volumes and areas are what the fidelity
  report checks.
* **edge flip** inside one patch, between two nearly coplanar triangles, when it raises the worse
  of the two qualities;
* **tangential relaxation** of patch-interior vertices towards the centroid of their neighbours,
  in their tangent plane (a vertex whose neighbours all share a coordinate keeps it: box planes),
  accepted when the worst quality of the star rises.

No operation makes a new edge between two border vertices (a chord across a patch, e.g. lying in a
box plane, cuts the patch next to it), and each is undone if a changed triangle then folds onto a
neighbour (dihedral below ``min_dihedral_deg``). In a pass, a vertex whose index list is stale (the
kept vertex of a collapse, the four of a flip, the neighbours of a moved vertex) is left for the
next pass; the vertex-to-triangle index is rebuilt between passes.
The compiled kernels (geometry, vertex classes, relaxation, indices) are in :mod:`tomocell.meshing.remesh_kernels`.
Written here rather than taken
from a library because none of the installed ones (VTK's vtkDecimatePro, fast-simplification,
pyacvd, gmsh's remesher) coarsens a non-manifold multi-patch surface while keeping its patch borders
shared: VTK freezes the borders (the voxel-spaced border vertices then stand next to coarse
triangles and make needles), the others treat the surface as one manifold, and gmsh needs a
parametrisable manifold per patch.
"""

from __future__ import annotations

import math
import time

import numba
import numpy as np

from tomocell.log import get_logger
from tomocell.meshing.remesh_kernels import (
    CURVE, INTERIOR, PINNED, adjacent, classify_vertices, cos_between, point_segment_distance,
    point_triangle_distance, relax_pass, short_edges, tri_normal, tri_qualities, tri_quality, triangle_creases, vertex_index,
)

log = get_logger("meshing.remesh")



@numba.njit(cache=True)
def _try_collapse(v, w, P, T, pid, alive, vstart, vtri, vclass, cn, err, locked, h_hi2, cos_bend,
                  min_quality, max_err, q_of, cos_crease):
    if vclass[v] == PINNED or locked[v] or locked[w]:
        return False
    u_other = -1
    if vclass[v] == CURVE:
        if cn[v, 0] == w:
            u_other = cn[v, 1]
        elif cn[v, 1] == w:
            u_other = cn[v, 0]
        else:
            return False
    if u_other >= 0 and locked[u_other]:
        return False  # the border neighbour may have been collapsed away in this pass
    s0, s1 = vstart[v], vstart[v + 1]
    # Only v and w need to be untouched in this pass: the index lists of every other vertex still
    # hold exactly its triangles (a collapse renames v to w inside them), only w's list is stale.
    n_removed = 0
    q_old = 1.0
    for k in range(s0, s1):
        t = vtri[k]
        if not alive[t]:
            continue
        has_w = False
        for j in range(3):
            x = T[t, j]
            if x == w:
                has_w = True
        if has_w:
            n_removed += 1
        q_old = min(q_old, q_of[t])
    if n_removed == 0:
        return False
    if vclass[v] == INTERIOR and n_removed != 2:
        return False
    # link condition: the common neighbours of v and w are exactly the opposite vertices of the
    # removed triangles
    n_common = 0
    for k in range(s0, s1):
        t = vtri[k]
        if not alive[t]:
            continue
        for j in range(3):
            x = T[t, j]
            if x == v or x == w:
                continue
            # is x a neighbour of w?  (count each x once: only from its first triangle in v's star)
            first = True
            for k2 in range(s0, k):
                t2 = vtri[k2]
                if alive[t2] and (T[t2, 0] == x or T[t2, 1] == x or T[t2, 2] == x):
                    first = False
                    break
            if not first:
                continue
            for k3 in range(vstart[w], vstart[w + 1]):
                t3 = vtri[k3]
                if alive[t3] and (T[t3, 0] == x or T[t3, 1] == x or T[t3, 2] == x):
                    n_common += 1
                    break
    if n_common != n_removed:
        return False
    # geometry of the kept triangles after v -> w
    q_new = 1.0
    dist = 1e300 if vclass[v] == INTERIOR else 0.0
    pv = P[v].copy()
    for k in range(s0, s1):
        t = vtri[k]
        if not alive[t]:
            continue
        a, b, c = T[t, 0], T[t, 1], T[t, 2]
        if a == w or b == w or c == w:
            continue
        na = a if a != v else w
        nb_ = b if b != v else w
        nc = c if c != v else w
        ox, oy, oz = tri_normal(P, a, b, c)
        nx, ny, nz = tri_normal(P, na, nb_, nc)
        if cos_between(ox, oy, oz, nx, ny, nz) < cos_bend:
            return False
        q_new = min(q_new, tri_quality(P, na, nb_, nc))
        for x in (a, b, c):
            if x != v:
                d2 = 0.0
                for d in range(3):
                    d2 += (P[x, d] - P[w, d]) ** 2
                if d2 > h_hi2:
                    return False
                # no new edge between two border vertices (a chord across a patch, e.g. along a
                # box plane, would cut the neighbouring patch), except the border itself
                if vclass[w] != INTERIOR and vclass[x] != INTERIOR and x != u_other and x != w:
                    if not adjacent(T, alive, vstart, vtri, w, x):
                        return False
        # the new triangle must not exist already around w (it would be doubled)
        for k3 in range(vstart[w], vstart[w + 1]):
            t3 = vtri[k3]
            if not alive[t3]:
                continue
            m = 0
            for j in range(3):
                y = T[t3, j]
                if y == na or y == nb_ or y == nc:
                    m += 1
            if m == 3:
                return False
        if vclass[v] == INTERIOR:
            dist = min(dist, point_triangle_distance(pv, P[na], P[nb_], P[nc]))
    if q_new < min(min_quality, q_old):
        return False
    if vclass[v] == CURVE:
        dist = point_segment_distance(pv, P[w], P[u_other])
    if err[v] + dist > max_err:
        return False
    # apply, then undo if a changed triangle folds onto a neighbour
    star = vtri[s0:s1]
    was_alive = alive[star].copy()
    rows = T[star].copy()
    for k in range(s0, s1):
        t = vtri[k]
        if not alive[t]:
            continue
        a, b, c = T[t, 0], T[t, 1], T[t, 2]
        if a == w or b == w or c == w:
            alive[t] = False
            continue
        for j in range(3):
            if T[t, j] == v:
                T[t, j] = w
    for k in range(s0, s1):
        t = vtri[k]
        if alive[t] and triangle_creases(P, T, alive, vstart, vtri, t, cos_crease):
            for i in range(len(star)):
                alive[star[i]] = was_alive[i]
                T[star[i], 0], T[star[i], 1], T[star[i], 2] = rows[i, 0], rows[i, 1], rows[i, 2]
            return False
    for k in range(s0, s1):
        t = vtri[k]
        if alive[t]:
            q_of[t] = tri_quality(P, T[t, 0], T[t, 1], T[t, 2])
    e = err[v] + dist
    if e > err[w]:
        err[w] = e
    locked[v] = True
    locked[w] = True
    return True


@numba.njit(cache=True)
def _collapse_pass(P, T, pid, alive, vstart, vtri, vclass, cn, err, edges, h_hi2, cos_bend,
                   min_quality, max_err, q_of, cos_crease):
    locked = np.zeros(len(vstart) - 1, dtype=np.bool_)
    n = 0
    for i in range(len(edges)):
        a, b = edges[i, 0], edges[i, 1]
        if locked[a] or locked[b]:
            continue
        # remove the vertex that is freer to move (interior before border)
        if vclass[a] > vclass[b]:
            a, b = b, a
        if _try_collapse(a, b, P, T, pid, alive, vstart, vtri, vclass, cn, err, locked, h_hi2, cos_bend,
                         min_quality, max_err, q_of, cos_crease):
            n += 1
        elif _try_collapse(b, a, P, T, pid, alive, vstart, vtri, vclass, cn, err, locked, h_hi2, cos_bend,
                           min_quality, max_err, q_of, cos_crease):
            n += 1
    return n


# -- flip ----------------------------------------------------------------------------------------

@numba.njit(cache=True)
def _flip_pass(P, T, pid, alive, vstart, vtri, vclass, cos_bend, q_of, q_target, cos_crease):
    nv = len(vstart) - 1
    locked = np.zeros(nv, dtype=np.bool_)
    n = 0
    for t in range(len(T)):
        if not alive[t] or q_of[t] >= q_target:
            continue
        best_gain = 1e-3
        best_s = -1
        best_i = -1
        for i in range(3):
            a, b, c = T[t, i], T[t, (i + 1) % 3], T[t, (i + 2) % 3]
            if locked[a] or locked[b] or locked[c]:
                break
            # triangles on edge (a, b)
            s = -1
            m = 0
            for k in range(vstart[a], vstart[a + 1]):
                t2 = vtri[k]
                if t2 == t or not alive[t2]:
                    continue
                if T[t2, 0] == b or T[t2, 1] == b or T[t2, 2] == b:
                    s = t2
                    m += 1
            if m != 1 or pid[s] != pid[t]:
                continue
            d = T[s, 0] + T[s, 1] + T[s, 2] - a - b
            if d == c or locked[d]:
                continue
            if vclass[c] != INTERIOR and vclass[d] != INTERIOR:
                continue  # the new edge would be a chord between two border vertices
            exists = False
            for k in range(vstart[c], vstart[c + 1]):
                t2 = vtri[k]
                if alive[t2] and (T[t2, 0] == d or T[t2, 1] == d or T[t2, 2] == d):
                    exists = True
                    break
            if exists:
                continue
            n1x, n1y, n1z = tri_normal(P, a, b, c)
            n2x, n2y, n2z = tri_normal(P, b, a, d)
            if cos_between(n1x, n1y, n1z, n2x, n2y, n2z) < cos_bend:
                continue
            rx, ry, rz = n1x + n2x, n1y + n2y, n1z + n2z
            ax_, ay_, az_ = tri_normal(P, a, d, c)
            bx_, by_, bz_ = tri_normal(P, d, b, c)
            if ax_ * rx + ay_ * ry + az_ * rz <= 0.0 or bx_ * rx + by_ * ry + bz_ * rz <= 0.0:
                continue
            gain = min(tri_quality(P, a, d, c), tri_quality(P, d, b, c)) - min(q_of[t], q_of[s])
            if gain > best_gain:
                best_gain = gain
                best_s = s
                best_i = i
        if best_s < 0:
            continue
        s = best_s
        a, b, c = T[t, best_i], T[t, (best_i + 1) % 3], T[t, (best_i + 2) % 3]
        d = T[s, 0] + T[s, 1] + T[s, 2] - a - b
        # keep s's own orientation: s ran b -> a if it was oriented like t
        s_like_t = False
        for j in range(3):
            if T[s, j] == b and T[s, (j + 1) % 3] == a:
                s_like_t = True
        rt0, rt1, rt2 = T[t, 0], T[t, 1], T[t, 2]
        rs0, rs1, rs2 = T[s, 0], T[s, 1], T[s, 2]
        T[t, 0], T[t, 1], T[t, 2] = a, d, c
        if s_like_t:
            T[s, 0], T[s, 1], T[s, 2] = d, b, c
        else:
            T[s, 0], T[s, 1], T[s, 2] = c, b, d
        if (triangle_creases(P, T, alive, vstart, vtri, t, cos_crease)
                or triangle_creases(P, T, alive, vstart, vtri, s, cos_crease)):
            T[t, 0], T[t, 1], T[t, 2] = rt0, rt1, rt2
            T[s, 0], T[s, 1], T[s, 2] = rs0, rs1, rs2
            continue
        q_of[t] = tri_quality(P, T[t, 0], T[t, 1], T[t, 2])
        q_of[s] = tri_quality(P, T[s, 0], T[s, 1], T[s, 2])
        locked[a] = True
        locked[b] = True
        locked[c] = True
        locked[d] = True
        n += 1
    return n


# -- tangential relaxation -----------------------------------------------------------------------

def remesh_patches(
    points: np.ndarray,
    T: np.ndarray,
    pid: np.ndarray,
    *,
    target_edge_um: float,
    max_error_um: float,
    pinned: np.ndarray | None = None,
    max_bend_deg: float = 30.0,
    flip_bend_deg: float = 15.0,
    min_quality: float = 0.3,
    bad_quality: float = 0.2,
    min_dihedral_deg: float = 25.0,
    relax_target: float = 0.6,
    max_passes: int = 40,
    long_edge_factor: float = 1.6,
    min_progress: float = 5e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Coarsen and improve a multi-patch triangle surface (see module docstring).

    ``T`` (M, 3) triangles into ``points``, ``pid`` (M,) their patch ids; ``pinned`` (N,) vertices
    that must stay. Returns (points, triangles, patch ids, figures); inputs are not modified.
    """
    t0 = time.perf_counter()
    P = np.array(points, dtype=np.float64, copy=True)
    T = np.array(T, dtype=np.int64, copy=True)
    pid = np.ascontiguousarray(pid, dtype=np.int64)
    nv, m = len(P), len(T)
    alive = np.ones(m, dtype=np.bool_)
    pin = np.zeros(nv, dtype=np.bool_) if pinned is None else np.array(pinned, dtype=np.bool_, copy=True)
    err = np.zeros(nv)
    q_of = tri_qualities(P, T)
    q_min_in = float(q_of.min()) if m else 1.0
    h_lo, h_hi = 0.8 * target_edge_um, long_edge_factor * target_edge_um
    cos_bend, cos_flip = math.cos(math.radians(max_bend_deg)), math.cos(math.radians(flip_bend_deg))
    cos_crease = math.cos(math.radians(min_dihedral_deg))
    vclass = np.zeros(nv, dtype=np.int8)
    cn = np.zeros((nv, 2), dtype=np.int64)
    stats = {"collapses": 0, "flips": 0, "moves": 0, "passes": 0}
    for p in range(max_passes):
        vstart, vtri = vertex_index(T, alive, nv)
        classify_vertices(T, pid, alive, vstart, vtri, pin, vclass, cn)
        edges = short_edges(P, T, alive, h_lo, q_of, bad_quality)
        nc = _collapse_pass(P, T, pid, alive, vstart, vtri, vclass, cn, err, edges, h_hi * h_hi,
                            cos_bend, min_quality, max_error_um, q_of, cos_crease) if len(edges) else 0
        vstart, vtri = vertex_index(T, alive, nv)
        classify_vertices(T, pid, alive, vstart, vtri, pin, vclass, cn)
        nf = _flip_pass(P, T, pid, alive, vstart, vtri, vclass, cos_flip, q_of, relax_target, cos_crease)
        if nf:
            vstart, vtri = vertex_index(T, alive, nv)
            classify_vertices(T, pid, alive, vstart, vtri, pin, vclass, cn)
        nm = relax_pass(P, T, alive, vstart, vtri, vclass, cos_bend, q_of, 0.25 * target_edge_um, relax_target,
                         cos_crease)
        stats["collapses"] += int(nc)
        stats["flips"] += int(nf)
        stats["moves"] += int(nm)
        stats["passes"] = p + 1
        if time.perf_counter() - t0 > 10.0:  # progress on large surfaces (minutes at the paper's size)
            log.info("surface remeshing pass %d: %d triangles left (%d collapses, %d flips, %d moves), %.0f s",
                     p + 1, int(alive.sum()), nc, nf, nm, time.perf_counter() - t0)
        if nc + nf < min_progress * alive.sum():  # relaxation alone goes on making tiny gains
            break
    T, pid = T[alive], pid[alive]
    q = q_of[alive]
    stats.update(triangles_in=int(m), triangles_out=int(len(T)), min_quality_in=q_min_in,
                 min_quality_out=float(q.min()) if len(q) else 1.0,
                 below_0_1_out=int(np.count_nonzero(q < 0.1)), max_error_um=float(max_error_um),
                 accumulated_error_max_um=float(err.max()) if nv else 0.0, time_s=time.perf_counter() - t0)
    return P, T, pid, stats


def remesh_surface(
    points: np.ndarray,
    groups: dict,
    *,
    voxel_um: float,
    target_edge_um: float,
    max_error_vox: float = 0.3,
    max_rounds: int = 4,
    **kwargs,
) -> tuple[np.ndarray, dict, dict]:
    """:func:`remesh_patches` on a surface given as patch key -> (T, 3) triangles, then a check for
    folded, degenerate or self-intersecting triangles; where there are any, their vertices and the
    vertices next to them are pinned and the remeshing is redone from the input. If defects remain
    after ``max_rounds`` the input surface is returned with ``info['fallback']`` set.

    ``max_error_vox``: bound (in voxels) on the distance of a removed vertex from the triangles that
    replace it, accumulated on the kept vertex (see the module docstring for what this guarantees).
    Returns (points, groups, figures); the inputs are not modified.
    """
    from tomocell.meshing.surface import defective_triangles

    keys = list(groups)
    T0 = np.concatenate([groups[k] for k in keys]).astype(np.int64)
    pid0 = np.concatenate([np.full(len(groups[k]), i, dtype=np.int64) for i, k in enumerate(keys)])
    pinned = np.zeros(len(points), dtype=bool)
    t0 = time.perf_counter()
    for r in range(max_rounds + 1):
        P, T, pid, info = remesh_patches(points, T0, pid0, target_edge_um=target_edge_um,
                                         max_error_um=max_error_vox * voxel_um, pinned=pinned, **kwargs)
        bad = defective_triangles(P, T)
        info["defect_rounds"] = r
        if not np.any(bad):
            break
        info["defects_last_round"] = int(bad.sum())
        v = np.unique(T[bad])
        for tri in (T0, T):
            ring = np.isin(tri, v).any(axis=1)
            pinned[np.unique(tri[ring])] = True
    else:
        info = {"fallback": f"remeshing still left {int(bad.sum())} defective triangles after {max_rounds} rounds",
                "triangles_in": int(len(T0)), "triangles_out": int(len(T0))}
        log.warning("surface remeshing: %s; the input surface is kept", info["fallback"])
        return points, groups, info
    out = {k: T[pid == i] for i, k in enumerate(keys)}
    out = {k: t for k, t in out.items() if len(t)}
    info["pinned_vertices"] = int(pinned.sum())
    info["time_s"] = time.perf_counter() - t0
    log.info("surface remeshing: %d -> %d triangles (%d collapses, %d flips, %d moves, %d passes, %d defect "
             "rounds), min quality %.3g -> %.3g, %.1f s", info["triangles_in"], info["triangles_out"],
             info["collapses"], info["flips"], info["moves"], info["passes"], r, info["min_quality_in"],
             info["min_quality_out"], info["time_s"])
    return P, out, info


__all__ = ["remesh_patches", "remesh_surface", "triangle_quality", "INTERIOR", "CURVE", "PINNED"]
