"""Self-intersection test of a triangle surface (compiled with numba).

Which triangles of a surface cross another triangle they share no edge with (two triangles with
one common vertex cross when the edge of either opposite that vertex pierces the other). Candidate pairs come
from a uniform grid of triangle bounding boxes; a pair met in several grid cells is tested only in
the cell that holds the low corner of the two boxes' overlap, and each pair by the six
edge-against-triangle crossings (Moller-Trumbore; coplanar overlaps are the job of
:func:`tomocell.meshing.surface.folded_triangles`).

Written here because no installed library answers this for an open, non-manifold multi-label
surface with per-triangle results (VTK's vtkIntersectionPolyDataFilter takes two separate closed
meshes; trimesh/manifold need watertight manifolds). The earlier numpy version compared every pair
of a grid cell in Python-level passes and took ~25 % of the surface route's time.
"""

from __future__ import annotations

import numba
import numpy as np

_TOL = 1e-9  #: barycentric / segment-parameter margin: touching at an edge or vertex is not a crossing
_EPS = 1e-12  #: relative determinant below which segment and triangle are taken as parallel


@numba.njit(cache=True, inline="always")
def _seg_hits(px, py, pz, qx, qy, qz, ax, ay, az, bx, by, bz, cx, cy, cz) -> bool:
    dx, dy, dz = qx - px, qy - py, qz - pz
    e1x, e1y, e1z = bx - ax, by - ay, bz - az
    e2x, e2y, e2z = cx - ax, cy - ay, cz - az
    hx, hy, hz = dy * e2z - dz * e2y, dz * e2x - dx * e2z, dx * e2y - dy * e2x
    det = e1x * hx + e1y * hy + e1z * hz
    scale = (e1x * e1x + e1y * e1y + e1z * e1z) * np.sqrt(dx * dx + dy * dy + dz * dz)
    if abs(det) <= _EPS * scale:
        return False
    inv = 1.0 / det
    sx, sy, sz = px - ax, py - ay, pz - az
    u = (sx * hx + sy * hy + sz * hz) * inv
    if u <= _TOL:
        return False
    qx_, qy_, qz_ = sy * e1z - sz * e1y, sz * e1x - sx * e1z, sx * e1y - sy * e1x
    v = (dx * qx_ + dy * qy_ + dz * qz_) * inv
    if v <= _TOL or u + v >= 1.0 - _TOL:
        return False
    t = (e2x * qx_ + e2y * qy_ + e2z * qz_) * inv
    return t > _TOL and t < 1.0 - _TOL


@numba.njit(cache=True)
def _tri_pair_crosses(P, T, i, j) -> bool:
    for k in range(3):
        a, b = T[i, k], T[i, (k + 1) % 3]
        if _seg_hits(P[a, 0], P[a, 1], P[a, 2], P[b, 0], P[b, 1], P[b, 2],
                     P[T[j, 0], 0], P[T[j, 0], 1], P[T[j, 0], 2], P[T[j, 1], 0], P[T[j, 1], 1], P[T[j, 1], 2],
                     P[T[j, 2], 0], P[T[j, 2], 1], P[T[j, 2], 2]):
            return True
        a, b = T[j, k], T[j, (k + 1) % 3]
        if _seg_hits(P[a, 0], P[a, 1], P[a, 2], P[b, 0], P[b, 1], P[b, 2],
                     P[T[i, 0], 0], P[T[i, 0], 1], P[T[i, 0], 2], P[T[i, 1], 0], P[T[i, 1], 1], P[T[i, 1], 2],
                     P[T[i, 2], 0], P[T[i, 2], 1], P[T[i, 2], 2]):
            return True
    return False


@numba.njit(cache=True)
def _edge_crosses(P, T, i, k0, k1, j) -> bool:
    """Does edge (T[i, k0], T[i, k1]) cross triangle j strictly inside?"""
    a, b = T[i, k0], T[i, k1]
    return _seg_hits(P[a, 0], P[a, 1], P[a, 2], P[b, 0], P[b, 1], P[b, 2],
                     P[T[j, 0], 0], P[T[j, 0], 1], P[T[j, 0], 2], P[T[j, 1], 0], P[T[j, 1], 1], P[T[j, 1], 2],
                     P[T[j, 2], 0], P[T[j, 2], 1], P[T[j, 2], 2])


@numba.njit(cache=True, parallel=True)
def _crossing_kernel(P, T, lo, hi, org, cell, dims, starts, members, bad):
    ncell = len(starts) - 1
    for c in numba.prange(ncell):
        s, e = starts[c], starts[c + 1]
        for ii in range(s, e):
            i = members[ii]
            for jj in range(ii + 1, e):
                j = members[jj]
                if bad[i] and bad[j]:
                    continue
                overlap = True
                for d in range(3):
                    if lo[i, d] > hi[j, d] or lo[j, d] > hi[i, d]:
                        overlap = False
                        break
                if not overlap:
                    continue
                # test the pair once: in the cell of the low corner of the boxes' overlap
                ref = 0
                for d in range(3):
                    m = max(lo[i, d], lo[j, d])
                    ci = min(int(np.floor((m - org[d]) / cell)), dims[d] - 1)
                    ref = ref * dims[d] + ci
                if ref != c:
                    continue
                n_shared = 0
                si = -1
                sj = -1
                for a in range(3):
                    for b in range(3):
                        if T[i, a] == T[j, b]:
                            n_shared += 1
                            si = a
                            sj = b
                if n_shared >= 2:
                    continue  # neighbours across an edge: folds are folded_triangles' job
                if n_shared == 1:
                    hit = _edge_crosses(P, T, i, (si + 1) % 3, (si + 2) % 3, j) or \
                        _edge_crosses(P, T, j, (sj + 1) % 3, (sj + 2) % 3, i)
                else:
                    hit = _tri_pair_crosses(P, T, i, j)
                if hit:
                    bad[i] = True
                    bad[j] = True


def intersecting_triangles(points: np.ndarray, tris: np.ndarray, cell_um: float | None = None) -> np.ndarray:
    """Boolean mask of triangles that cross another triangle they share no edge with.

    ``cell_um``: grid cell size (default twice the median triangle extent).
    """
    P = np.ascontiguousarray(points, dtype=np.float64)
    T = np.ascontiguousarray(tris, dtype=np.int64)
    n = len(T)
    if n < 2:
        return np.zeros(n, dtype=bool)
    p = P[T]
    lo, hi = p.min(axis=1), p.max(axis=1)
    if cell_um is None:
        cell_um = float(np.median((hi - lo).max(axis=1))) * 2.0 + 1e-12
    org = lo.min(axis=0) - 1e-9 * cell_um
    dims = (np.floor((hi.max(axis=0) - org) / cell_um).astype(np.int64) + 1)
    clo = np.minimum(np.floor((lo - org) / cell_um).astype(np.int64), dims - 1)
    chi = np.minimum(np.floor((hi - org) / cell_um).astype(np.int64), dims - 1)
    span = chi - clo + 1
    cnt = span.prod(axis=1)
    owner = np.repeat(np.arange(n, dtype=np.int64), cnt)
    off = np.arange(len(owner)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    sp = span[owner]
    dz = off % sp[:, 2]
    dy = (off // sp[:, 2]) % sp[:, 1]
    dx = off // (sp[:, 2] * sp[:, 1])
    c = clo[owner] + np.column_stack([dx, dy, dz])
    cid = (c[:, 0] * dims[1] + c[:, 1]) * dims[2] + c[:, 2]
    order = np.argsort(cid, kind="stable")
    members = owner[order]
    starts = np.searchsorted(cid[order], np.arange(int(np.prod(dims)) + 1)).astype(np.int64)
    bad = np.zeros(n, dtype=np.bool_)
    _crossing_kernel(P, T, lo, hi, org.astype(np.float64), float(cell_um), dims.astype(np.int64), starts,
                     members, bad)
    return bad


__all__ = ["intersecting_triangles"]
