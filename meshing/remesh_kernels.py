"""Compiled (numba) kernels of the surface remesher (:mod:`tomocell.meshing.remesh`).

Triangle geometry (normal, quality, point-triangle and point-segment distances), the vertex
classification (INTERIOR inside one patch, CURVE along a patch border, PINNED at corners), crease
tests, the tangential relaxation pass, and the vertex-to-triangle index and short-edge list the
passes are driven by. All work in place on the remesher's arrays: ``P`` points, ``T`` triangles,
``alive`` flags, ``vstart``/``vtri`` the CSR vertex -> triangle index.
"""

from __future__ import annotations

import math

import numba
import numpy as np

INTERIOR, CURVE, PINNED = 0, 1, 2


# -- small geometry ------------------------------------------------------------------------------

@numba.njit(cache=True, inline="always")
def tri_normal(P, a, b, c):
    ux, uy, uz = P[b, 0] - P[a, 0], P[b, 1] - P[a, 1], P[b, 2] - P[a, 2]
    vx, vy, vz = P[c, 0] - P[a, 0], P[c, 1] - P[a, 1], P[c, 2] - P[a, 2]
    return uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx


@numba.njit(cache=True, inline="always")
def tri_quality(P, a, b, c):
    """4 sqrt(3) area / sum of squared edge lengths (1 equilateral, 0 degenerate)."""
    nx, ny, nz = tri_normal(P, a, b, c)
    area = 0.5 * math.sqrt(nx * nx + ny * ny + nz * nz)
    l2 = 0.0
    for (i, j) in ((a, b), (b, c), (c, a)):
        for d in range(3):
            l2 += (P[j, d] - P[i, d]) ** 2
    if l2 <= 0.0:
        return 0.0
    return 4.0 * math.sqrt(3.0) * area / l2


@numba.njit(cache=True, inline="always")
def cos_between(ax, ay, az, bx, by, bz):
    na = math.sqrt(ax * ax + ay * ay + az * az)
    nb = math.sqrt(bx * bx + by * by + bz * bz)
    if na == 0.0 or nb == 0.0:
        return -1.0
    return (ax * bx + ay * by + az * bz) / (na * nb)


@numba.njit(cache=True)
def _closest_on_triangle(p, a, b, c):
    """Closest point to p on triangle abc, by its Voronoi regions (Ericson, Real-Time Collision
    Detection, 5.1.5)."""
    ab, ac = b - a, c - a
    d1, d2 = ab @ (p - a), ac @ (p - a)
    if d1 <= 0.0 and d2 <= 0.0:
        return a  # vertex region a
    d3, d4 = ab @ (p - b), ac @ (p - b)
    if d3 >= 0.0 and d4 <= d3:
        return b
    vc = d1 * d4 - d3 * d2
    if vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
        return a + (d1 / (d1 - d3)) * ab  # edge region ab
    d5, d6 = ab @ (p - c), ac @ (p - c)
    if d6 >= 0.0 and d5 <= d6:
        return c
    vb = d5 * d2 - d1 * d6
    if vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
        return a + (d2 / (d2 - d6)) * ac  # edge region ac
    va = d3 * d6 - d5 * d4
    if va <= 0.0 and d4 >= d3 and d5 >= d6:
        return b + ((d4 - d3) / ((d4 - d3) + (d5 - d6))) * (c - b)  # edge region bc
    den = 1.0 / (va + vb + vc)
    return a + ab * (vb * den) + ac * (vc * den)  # inside the face


@numba.njit(cache=True)
def point_triangle_distance(p, a, b, c):
    r = p - _closest_on_triangle(p, a, b, c)
    return math.sqrt(r @ r)


@numba.njit(cache=True)
def point_segment_distance(p, a, b):
    ab = b - a
    den = ab @ ab
    t = 0.0 if den == 0.0 else min(1.0, max(0.0, ((p - a) @ ab) / den))
    r = p - (a + t * ab)
    return math.sqrt(r @ r)


# -- vertex classification -----------------------------------------------------------------------

@numba.njit(cache=True)
def classify_vertices(T, pid, alive, vstart, vtri, pinned_in, vclass, cn):
    """vclass[v]: INTERIOR (one patch, closed fan), CURVE (exactly two border edges whose triangle
    patch set equals v's patch set, every other edge an interior edge of one patch) or PINNED;
    cn[v] = the two border neighbours of a CURVE vertex."""
    nv = len(vstart) - 1
    nb = np.empty(256, dtype=np.int64)
    cnt = np.empty(256, dtype=np.int64)
    pset = np.empty(32, dtype=np.int64)
    eps_ = np.empty((256, 8), dtype=np.int64)
    neps = np.empty(256, dtype=np.int64)
    for v in range(nv):
        cn[v, 0] = -1
        cn[v, 1] = -1
        if pinned_in[v]:
            vclass[v] = PINNED
            continue
        nn = 0
        npset = 0
        ok = True
        for k in range(vstart[v], vstart[v + 1]):
            t = vtri[k]
            if not alive[t]:
                continue
            p = pid[t]
            found = False
            for i in range(npset):
                if pset[i] == p:
                    found = True
            if not found:
                if npset == 32:
                    ok = False
                    break
                pset[npset] = p
                npset += 1
            for j in range(3):
                u = T[t, j]
                if u == v:
                    continue
                idx = -1
                for i in range(nn):
                    if nb[i] == u:
                        idx = i
                        break
                if idx < 0:
                    if nn == 256:
                        ok = False
                        break
                    idx = nn
                    nb[nn] = u
                    cnt[nn] = 0
                    neps[nn] = 0
                    nn += 1
                cnt[idx] += 1
                # patches of the triangles on edge (v, u)
                f2 = False
                for i in range(neps[idx]):
                    if eps_[idx, i] == p:
                        f2 = True
                if not f2:
                    if neps[idx] == 8:
                        ok = False
                        break
                    eps_[idx, neps[idx]] = p
                    neps[idx] += 1
            if not ok:
                break
        if not ok or nn == 0:
            vclass[v] = PINNED
            continue
        if npset == 1:
            closed = True
            for i in range(nn):
                if cnt[i] != 2:
                    closed = False
            vclass[v] = INTERIOR if closed else PINNED
            continue
        ncurve = 0
        good = True
        for i in range(nn):
            if neps[i] == npset and cnt[i] == npset:
                if ncurve < 2:
                    cn[v, ncurve] = nb[i]
                ncurve += 1
            elif not (neps[i] == 1 and cnt[i] == 2):
                good = False
        if good and ncurve == 2:
            vclass[v] = CURVE
        else:
            vclass[v] = PINNED
            cn[v, 0] = -1
            cn[v, 1] = -1


@numba.njit(cache=True)
def _edge_crease(P, T, alive, vstart, vtri, t, x, y, o, cos_min):
    """True if a triangle other than t on edge (x, y) folds onto t: the directions from the edge to
    the two opposite vertices (o for t) make an angle below acos(cos_min). Both endpoints' index
    lists are scanned with a membership test, so a list that is stale after an operation is safe."""
    ex, ey, ez = P[y, 0] - P[x, 0], P[y, 1] - P[x, 1], P[y, 2] - P[x, 2]
    el = math.sqrt(ex * ex + ey * ey + ez * ez)
    if el == 0.0:
        return True
    ex, ey, ez = ex / el, ey / el, ez / el
    wx, wy, wz = P[o, 0] - P[x, 0], P[o, 1] - P[x, 1], P[o, 2] - P[x, 2]
    pr = wx * ex + wy * ey + wz * ez
    wx, wy, wz = wx - pr * ex, wy - pr * ey, wz - pr * ez
    wl = math.sqrt(wx * wx + wy * wy + wz * wz)
    if wl <= 1e-9 * el:
        return True  # degenerate triangle
    for end in (x, y):
        for k in range(vstart[end], vstart[end + 1]):
            t2 = vtri[k]
            if t2 == t or not alive[t2]:
                continue
            hx = hy = False
            o2 = -1
            for j in range(3):
                z = T[t2, j]
                if z == x:
                    hx = True
                elif z == y:
                    hy = True
                else:
                    o2 = z
            if not (hx and hy) or o2 < 0:
                continue
            ux, uy, uz = P[o2, 0] - P[x, 0], P[o2, 1] - P[x, 1], P[o2, 2] - P[x, 2]
            pr = ux * ex + uy * ey + uz * ez
            ux, uy, uz = ux - pr * ex, uy - pr * ey, uz - pr * ez
            ul = math.sqrt(ux * ux + uy * uy + uz * uz)
            if ul <= 1e-9 * el:
                return True
            if (ux * wx + uy * wy + uz * wz) / (ul * wl) > cos_min:
                return True
    return False


@numba.njit(cache=True)
def triangle_creases(P, T, alive, vstart, vtri, t, cos_min):
    a, b, c = T[t, 0], T[t, 1], T[t, 2]
    return (_edge_crease(P, T, alive, vstart, vtri, t, a, b, c, cos_min)
            or _edge_crease(P, T, alive, vstart, vtri, t, b, c, a, cos_min)
            or _edge_crease(P, T, alive, vstart, vtri, t, c, a, b, cos_min))


# -- collapse ------------------------------------------------------------------------------------

@numba.njit(cache=True)
def adjacent(T, alive, vstart, vtri, a, b) -> bool:
    for k in range(vstart[a], vstart[a + 1]):
        t = vtri[k]
        if alive[t] and (T[t, 0] == b or T[t, 1] == b or T[t, 2] == b):
            return True
    return False


@numba.njit(cache=True)
def relax_pass(P, T, alive, vstart, vtri, vclass, cos_bend, q_of, max_move, q_target, cos_crease):
    nv = len(vstart) - 1
    locked = np.zeros(nv, dtype=np.bool_)
    n = 0
    for v in range(nv):
        if vclass[v] != INTERIOR or locked[v]:
            continue
        s0, s1 = vstart[v], vstart[v + 1]
        q0 = 1.0
        busy = False
        for k in range(s0, s1):
            t = vtri[k]
            if alive[t]:
                q0 = min(q0, q_of[t])
                for j in range(3):
                    if locked[T[t, j]]:
                        busy = True
        if busy or q0 >= q_target:
            continue
        # consistent star normal (orientation may differ between triangles of a patch)
        rx = ry = rz = 0.0
        cx = cy = cz = 0.0
        m = 0
        same = np.ones(3, dtype=np.bool_)
        for k in range(s0, s1):
            t = vtri[k]
            if not alive[t]:
                continue
            nx, ny, nz = tri_normal(P, T[t, 0], T[t, 1], T[t, 2])
            if m > 0 and nx * rx + ny * ry + nz * rz < 0.0:
                nx, ny, nz = -nx, -ny, -nz
            rx += nx
            ry += ny
            rz += nz
            for j in range(3):
                x = T[t, j]
                if x != v:
                    cx += P[x, 0]
                    cy += P[x, 1]
                    cz += P[x, 2]
                    for d in range(3):
                        if P[x, d] != P[v, d]:
                            same[d] = False
            m += 2
        if m == 0:
            continue
        nr = math.sqrt(rx * rx + ry * ry + rz * rz)
        if nr == 0.0:
            continue
        rx, ry, rz = rx / nr, ry / nr, rz / nr
        dx, dy, dz = cx / m - P[v, 0], cy / m - P[v, 1], cz / m - P[v, 2]
        dn = dx * rx + dy * ry + dz * rz
        dx, dy, dz = dx - dn * rx, dy - dn * ry, dz - dn * rz
        if same[0]:
            dx = 0.0
        if same[1]:
            dy = 0.0
        if same[2]:
            dz = 0.0
        L = math.sqrt(dx * dx + dy * dy + dz * dz)
        if L == 0.0:
            continue
        if L > max_move:
            dx, dy, dz = dx * max_move / L, dy * max_move / L, dz * max_move / L
        old0, old1, old2 = P[v, 0], P[v, 1], P[v, 2]
        for wgt in (1.0, 0.5, 0.25):
            # old normals
            ok = True
            qn = 1.0
            P[v, 0], P[v, 1], P[v, 2] = old0, old1, old2
            # store old normals by recomputing per triangle with the old position
            for k in range(s0, s1):
                t = vtri[k]
                if not alive[t]:
                    continue
                P[v, 0], P[v, 1], P[v, 2] = old0, old1, old2
                ox, oy, oz = tri_normal(P, T[t, 0], T[t, 1], T[t, 2])
                P[v, 0], P[v, 1], P[v, 2] = old0 + wgt * dx, old1 + wgt * dy, old2 + wgt * dz
                nx, ny, nz = tri_normal(P, T[t, 0], T[t, 1], T[t, 2])
                if cos_between(ox, oy, oz, nx, ny, nz) < cos_bend:
                    ok = False
                    break
                qn = min(qn, tri_quality(P, T[t, 0], T[t, 1], T[t, 2]))
            if ok and qn > q0 + 1e-3:
                P[v, 0], P[v, 1], P[v, 2] = old0 + wgt * dx, old1 + wgt * dy, old2 + wgt * dz
                for k in range(s0, s1):
                    t = vtri[k]
                    if alive[t] and triangle_creases(P, T, alive, vstart, vtri, t, cos_crease):
                        ok = False
                        break
            if ok and qn > q0 + 1e-3:
                for k in range(s0, s1):
                    t = vtri[k]
                    if alive[t]:
                        q_of[t] = tri_quality(P, T[t, 0], T[t, 1], T[t, 2])
                        for j in range(3):
                            locked[T[t, j]] = True
                n += 1
                break
            P[v, 0], P[v, 1], P[v, 2] = old0, old1, old2
    return n


def triangle_quality(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """4 sqrt(3) area / (sum of squared edge lengths) of each triangle: 1 equilateral, 0 degenerate."""
    return tri_qualities(np.ascontiguousarray(points, dtype=np.float64), np.ascontiguousarray(tris, dtype=np.int64))


@numba.njit(cache=True)
def tri_qualities(P, T):
    q = np.empty(len(T))
    for t in range(len(T)):
        q[t] = tri_quality(P, T[t, 0], T[t, 1], T[t, 2])
    return q


# -- driver --------------------------------------------------------------------------------------

@numba.njit(cache=True)
def vertex_index(T, alive, nv):
    """Vertex -> alive triangles (CSR), by counting sort."""
    vstart = np.zeros(nv + 1, dtype=np.int64)
    for t in range(len(T)):
        if alive[t]:
            for j in range(3):
                vstart[T[t, j] + 1] += 1
    for v in range(nv):
        vstart[v + 1] += vstart[v]
    fill = vstart[:-1].copy()
    vtri = np.empty(vstart[nv], dtype=np.int64)
    for t in range(len(T)):
        if alive[t]:
            for j in range(3):
                v = T[t, j]
                vtri[fill[v]] = t
                fill[v] += 1
    return vstart, vtri


@numba.njit(cache=True)
def short_edges(P, T, alive, h_lo, q_of, q_bad):
    """Collapse candidates, shortest first: edges shorter than h_lo, and the shortest edge of every
    triangle of quality below q_bad (a needle's short edge can be longer than h_lo where the target
    is about the voxel size). An edge shared by k triangles appears up to k times; the repeats are
    skipped by the collapse pass as their vertices are then locked."""
    m = 0
    for t in range(len(T)):
        if alive[t]:
            m += 3
    e = np.empty((m, 2), dtype=np.int64)
    ln = np.empty(m)
    n = 0
    h2 = h_lo * h_lo
    for t in range(len(T)):
        if not alive[t]:
            continue
        shortest = 0
        best = 1e300
        for j in range(3):
            a, b = T[t, j], T[t, (j + 1) % 3]
            d2 = 0.0
            for d in range(3):
                d2 += (P[a, d] - P[b, d]) ** 2
            if d2 < best:
                best = d2
                shortest = j
        for j in range(3):
            a, b = T[t, j], T[t, (j + 1) % 3]
            d2 = 0.0
            for d in range(3):
                d2 += (P[a, d] - P[b, d]) ** 2
            if d2 < h2 or (j == shortest and q_of[t] < q_bad):
                e[n, 0] = a
                e[n, 1] = b
                ln[n] = d2
                n += 1
    order = np.argsort(ln[:n])
    return e[:n][order]
