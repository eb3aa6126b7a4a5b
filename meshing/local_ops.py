"""Local operations of the sliver pass (:mod:`tomocell.meshing.improve`) on a tagged tet mesh.

Each operation works on a few tets around a bad one and returns the new tets (or a move) only if it
raises the worst SICN of the tets it touches and keeps every tagged facet: edge removal (the best
triangulation of an edge's ring), 2-3 face swap, interface flip, node insertion into a star-shaped
cavity, node collapse, snapping a node onto a box plane, and node smoothing (within a box face or an
interface sheet). The module docstring of :mod:`tomocell.meshing.improve` says when each is used.
Pure numpy on the mesh's arrays; ``inc`` is the node -> tet incidence of :class:`Incidence`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tomocell.meshing.fidelity import cross3


def orient(p: np.ndarray) -> np.ndarray:
    """Six times the signed volume of tets given as (n, 4, 3) coordinates."""
    a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
    return np.einsum("ij,ij->i", a, cross3(b, c))


@lru_cache(maxsize=None)
def _polygon_triangulations(m: int) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """All triangulations of a convex m-gon with vertices 0..m-1 (each as a tuple of triangles)."""

    def rec(i: int, j: int) -> list[list[tuple[int, int, int]]]:
        if j - i < 2:
            return [[]]
        out = []
        for k in range(i + 1, j):
            for left in rec(i, k):
                for right in rec(k, j):
                    out.append(left + [(i, k, j)] + right)
        return out

    return tuple(tuple(t) for t in rec(0, m - 1))


def edge_keys(e: np.ndarray, n: int) -> np.ndarray:
    e = np.sort(e, axis=1)
    return e[:, 0].astype(np.int64) * n + e[:, 1]


class Incidence:
    """node -> tets incidence (CSR) over the live tets."""

    def __init__(self, tets: np.ndarray, alive: np.ndarray, n_nodes: int):
        live = np.flatnonzero(alive)
        flat = tets[live].ravel()
        order = np.argsort(flat, kind="stable")
        self.tet_of = np.repeat(live, 4)[order]
        self.start = np.searchsorted(flat[order], np.arange(n_nodes + 1))

    def tets_of(self, v: int) -> np.ndarray:
        return self.tet_of[self.start[v] : self.start[v + 1]]


def interface_flip(pts, tets, ct, pt, q, t, inc, alive, touched, con_faces, con_count, n, max_ring):
    """Flat tet abcd of phase A whose faces abc and abd lie on one A|B interface, ab on no other facet.

    The interface there is retriangulated from (abc, abd) to (acd, bcd) (its edge ab flipped to cd):
    the tet changes to phase B, edge ab is then inside B and is removed by :func:`remove_edge`. The
    interface moves by the tet's volume, which is tiny (the tet is flat), and stays conformal.
    Returns (shell of ab, new tets, phase B, particle tag, (a, b, c, d)) or None.
    """
    T4 = tets[t]
    faces = [tuple(sorted(int(x) for x in T4[[i for i in range(4) if i != j]])) for j in range(4)]
    tagged = [j for j in range(4) if faces[j] in con_faces]
    if len(tagged) != 2:
        return None
    j1, j2 = tagged
    c, d = int(T4[j1]), int(T4[j2])
    a, b = (int(T4[i]) for i in range(4) if i not in (j1, j2))
    if con_count(edge_keys(np.array([[a, b], [c, d]]), n)).tolist() != [2, 0]:
        return None
    ta = inc.tets_of(a)
    shell = ta[alive[ta] & np.any(tets[ta] == b, axis=1)]
    others = shell[shell != t]
    if len(shell) > max_ring or touched[shell].any() or not len(others):
        return None
    phases = np.unique(ct[others])
    if len(phases) != 1 or phases[0] == ct[t]:
        return None
    ct_t = ct[t]
    ct[t] = phases[0]
    try:
        res = remove_edge(pts, tets, shell, a, b, q)
    finally:
        ct[t] = ct_t
    if res is None:
        return None
    return shell, res[0], phases[0], int(np.max(pt[others])), (a, b, c, d)


def face_swap(pts, tets, t: int, nb: int) -> np.ndarray | None:
    """The 2-3 flip of tets t and nb (sharing a face): three positively oriented tets around the
    edge joining their opposite nodes, or None when that edge does not cross the shared face's
    interior (then the two tets' union is not convex there and cannot be retiled so)."""
    a, b = tets[t], tets[nb]
    u = int(a[~np.isin(a, b)][0])
    w = int(b[~np.isin(b, a)][0])
    f = [int(x) for x in a if x != u]
    new = np.array([[f[i], f[(i + 1) % 3], u, w] for i in range(3)])
    o = orient(pts[new])
    scale = float(np.abs(orient(pts[np.array([a, b])])).sum())
    if np.all(o > 1e-12 * scale):
        return new
    if np.all(o < -1e-12 * scale):
        return new[:, [1, 0, 2, 3]]
    return None


def face_neighbours(tets, t, inc, alive, con_faces) -> list[int] | None:
    """Live tets across the faces of tet t that are not tagged facets."""
    out = []
    T4 = tets[t]
    for j in range(4):
        f = [int(x) for k, x in enumerate(T4) if k != j]
        if tuple(sorted(f)) in con_faces:
            continue
        c = inc.tets_of(f[0])
        c = c[alive[c] & (c != t) & np.any(tets[c] == f[1], axis=1) & np.any(tets[c] == f[2], axis=1)]
        out.extend(int(x) for x in c)
    return out


def insert_node_near(pts, tets, ct, q, t, inc, alive, touched, con_faces):
    """Star a new node into the cavity of tet t and its face neighbours of the same phase (then, if
    that fails, their neighbours too): (cavity tets, new tets with -1 for the new node, its position)
    or None. The cavity's boundary faces are kept, so tagged facets and phase volumes do not change.
    """
    cav = [int(t)]
    for _level in range(2):
        nb = set()
        for c in cav:
            nb.update(face_neighbours(tets, c, inc, alive, con_faces))
        nb = [x for x in nb if x not in cav]
        if any(ct[x] != ct[t] for x in nb):
            nb = [x for x in nb if ct[x] == ct[t]]
        cav = cav + nb
        c_arr = np.asarray(cav)
        if touched[c_arr].any():
            return None
        res = _insert_node(pts, tets, c_arr, q)
        if res is not None:
            return (c_arr,) + res
    return None


def _insert_node(pts, tets, cav, q):
    """Best position of one new node starring the cavity ``cav`` (tet indices): (new tets, position)."""
    from tomocell.meshing.fidelity import sicn

    st = tets[cav]
    loc = np.array([[1, 3, 2], [0, 2, 3], [0, 3, 1], [0, 1, 2]])  # face opposite node j, (face, j) even
    f = st[:, loc].reshape(-1, 3)
    opp = st.reshape(-1)
    key = np.sort(f, axis=1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    bnd = cnt[inv.ravel()] == 1
    fb = f[bnd]
    ob = opp[bnd]
    if len(fb) < 4:
        return None
    old_q = float(q[cav].min())
    old_vol = float(orient(pts[st]).sum())
    nodes = np.unique(st)
    cen = pts[st].mean(axis=1)
    c0 = pts[nodes].mean(axis=0)
    cand = np.concatenate([[c0], cen, 0.5 * (cen + c0)])
    # reference side: the cavity's own node opposite each boundary face is inside
    o_ref = orient(pts[np.column_stack([fb, ob])])
    if np.any(o_ref == 0):
        return None
    fb = np.where((o_ref < 0)[:, None], fb[:, [0, 2, 1]], fb)
    centre = _kernel_centre(pts[fb])
    if centre is not None:
        cand = np.concatenate([cand, centre[None]])
    k = len(cand)
    P = np.repeat(pts[fb][None], k, axis=0)  # (k, B, 3, 3)
    P = np.concatenate([P, np.repeat(cand[:, None, None, :], len(fb), axis=1)], axis=2)  # (k, B, 4, 3)
    o = orient(P.reshape(-1, 4, 3)).reshape(k, -1)
    ok = np.all(o > 1e-12 * np.abs(old_vol), axis=1) & (np.abs(o.sum(axis=1) - old_vol) <= 1e-9 * abs(old_vol))
    if not np.any(ok):
        return None
    flat = P.reshape(-1, 3)
    qs = sicn(flat, np.arange(len(flat)).reshape(-1, 4)).reshape(k, -1).min(axis=1)
    qs[~ok] = -1.0
    best = int(np.argmax(qs))
    if qs[best] <= old_q:
        return None
    tn = np.column_stack([fb, np.full(len(fb), -1)])
    return tn, cand[best]


def _kernel_centre(faces: np.ndarray) -> np.ndarray | None:
    """Chebyshev centre of the kernel of a cavity: the point furthest from the planes of its
    boundary faces ``faces`` (B, 3, 3), each oriented with the cavity on its positive side, among
    the points that see every face from inside (a linear programme; None if the kernel is empty).
    Starring the cavity from this point makes its flattest new tet as tall as it can be."""
    from scipy.optimize import linprog

    nrm = cross3(faces[:, 1] - faces[:, 0], faces[:, 2] - faces[:, 0])
    ln = np.linalg.norm(nrm, axis=1)
    if np.any(ln == 0):
        return None
    nrm /= ln[:, None]
    # maximise s subject to n_f . (x - p_f) >= s for every face f
    a_ub = np.column_stack([-nrm, np.ones(len(nrm))])
    b_ub = -np.einsum("ij,ij->i", nrm, faces[:, 0])
    res = linprog(np.array([0.0, 0.0, 0.0, -1.0]), A_ub=a_ub, b_ub=b_ub,
                  bounds=[(None, None)] * 3 + [(None, float(np.ptp(faces.reshape(-1, 3), axis=0).max()))],
                  method="highs")
    if not res.success or res.x[3] <= 0:
        return None
    return res.x[:3]


def _ring(tets: np.ndarray, shell: np.ndarray, u: int, v: int) -> list[int] | None:
    """Ordered ring of nodes around edge (u, v) from its shell, or None if it is not a closed cycle."""
    others = []
    for t in shell:
        o = [int(x) for x in tets[t] if x != u and x != v]
        if len(o) != 2:
            return None
        others.append(o)
    adj: dict[int, list[int]] = {}
    for a, b in others:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    if any(len(x) != 2 for x in adj.values()) or len(adj) != len(shell):
        return None
    start = others[0][0]
    ring, prev, cur = [start], None, start
    while True:
        a, b = adj[cur]
        nxt = a if a != prev else b
        if nxt == start:
            break
        ring.append(nxt)
        prev, cur = cur, nxt
    return ring if len(ring) == len(shell) else None


def remove_edge(pts, tets, shell, u, v, q):
    """Best retiling of the shell of edge (u, v) without that edge: (new tets, their min SICN) or None.

    All triangulations of the ring are evaluated in one vectorised call.
    """
    from tomocell.meshing.fidelity import sicn

    ring = _ring(tets, shell, u, v)
    if ring is None:
        return None
    m = len(ring)
    old_q = float(q[shell].min())
    old_vol = float(np.abs(orient(pts[tets[shell]])).sum())
    tri = _triangulation_array(m)  # (K, m-2, 3)
    T = np.asarray(ring)[tri]
    K, nt = T.shape[:2]
    # each ring triangle (a, b, c) gives (a, b, c, u) and (a, c, b, v): both positive for one ring
    # direction, both negative for the other (then every tet is flipped)
    cand = np.concatenate([np.concatenate([T, np.full((K, nt, 1), u)], axis=2),
                           np.concatenate([T[:, :, [0, 2, 1]], np.full((K, nt, 1), v)], axis=2)], axis=1)
    o = orient(pts[cand.reshape(-1, 4)]).reshape(K, 2 * nt)
    if np.all(o < 0):
        cand = cand[:, :, [0, 2, 1, 3]]
        o = -o
    ok = np.all(o > 0, axis=1) & (np.abs(o.sum(axis=1) - old_vol) <= 1e-9 * old_vol)
    if not np.any(ok):
        return None
    cand = cand[ok]
    qn = sicn(pts, cand.reshape(-1, 4)).reshape(len(cand), -1).min(axis=1)
    k = int(np.argmax(qn))
    if qn[k] <= old_q:
        return None
    return cand[k], float(qn[k])


@lru_cache(maxsize=None)
def _triangulation_array(m: int) -> np.ndarray:
    return np.asarray(_polygon_triangulations(m), dtype=np.int64)


def snap_to_plane(pts, tets, star, v, plane, on_plane, q):
    """Move free node v onto a box plane; mask of the star's tets that became flat (to drop) or None.

    Accepted when every other tet of the star stays positive and better than the star's worst, and
    every flat tet has its four nodes on the plane (its faces then tile the same piece of the face).
    """
    from tomocell.meshing.fidelity import sicn

    ax, val = plane
    old = pts[v].copy()
    q0 = float(q[star].min())
    h = float(np.mean(np.linalg.norm(pts[np.unique(tets[star])] - old, axis=1)))
    if abs(old[ax] - val) > 0.25 * h:
        return None
    pts[v, ax] = val
    st = tets[star]
    o = orient(pts[st])
    onp = on_plane[st] | (st == v)
    flat = np.all(onp, axis=1)
    rest = ~flat
    ok = np.all(o[rest] > 1e-12 * h**3) and np.any(flat)
    if ok:
        qs = sicn(pts, st[rest])
        ok = float(qs.min()) > q0
    if not ok:
        pts[v] = old
        return None
    q[star[rest]] = qs
    return flat


def collapse_node(pts, tets, star, v, q):
    """Merge free node v into the neighbour that gives the best star; (kept star rows, new tets, min SICN).

    Tets holding both v and w vanish, v becomes w in the others. Valid when every new tet is positive
    and the star's volume is kept; v lies on no tagged facet, so no tagged facet changes.
    """
    from tomocell.meshing.fidelity import sicn

    st = tets[star]
    nb = np.unique(st)
    nb = nb[nb != v]
    old_q = float(q[star].min())
    old_vol = float(orient(pts[st]).sum())
    best = None
    for w in nb:
        keep = ~np.any(st == w, axis=1)
        tn = np.where(st[keep] == v, w, st[keep])
        o = orient(pts[tn])
        if not np.all(o > 0) or abs(o.sum() - old_vol) > 1e-9 * old_vol:
            continue
        qn = float(sicn(pts, tn).min())
        if qn > old_q and (best is None or qn > best[2]):
            best = (keep, tn, qn)
    return best


def sheet_nodes(pts: np.ndarray, f: np.ndarray, n: int, box_um) -> np.ndarray:
    """Nodes whose facets form one closed fan (every fan edge in exactly two of them) with no facet
    on a box plane: interior nodes of a single interface sheet (not on a triple line or the box)."""
    out = np.zeros(n, dtype=bool)
    if not len(f):
        return out
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    ue, cnt = np.unique(e[:, 0].astype(np.int64) * n + e[:, 1], return_counts=True)
    odd = ue[cnt != 2]
    out[np.unique(f)] = True
    out[np.unique(np.concatenate([odd // n, odd % n]))] = False  # on an edge of 1, 3 or 4 facets
    if box_um is not None:
        tol = 1e-9 * max(box_um)
        for ax in range(3):
            for val in (0.0, float(box_um[ax])):
                on = np.abs(pts[f, ax] - val) <= tol  # (F, 3)
                out[np.unique(f[on.all(axis=1)])] = False  # nodes of facets on a box face
    return out


def sheet_normal(pts: np.ndarray, fan: np.ndarray, v: int) -> np.ndarray:
    """Unit normal of the sheet at v: the sum of its fan's facet normals, each turned to agree with
    the first (facet orientation is not consistent across a sheet)."""
    nrm = cross3(pts[fan[:, 1]] - pts[fan[:, 0]], pts[fan[:, 2]] - pts[fan[:, 0]])
    sgn = np.where(nrm @ nrm[0] < 0, -1.0, 1.0)
    m = (nrm * sgn[:, None]).sum(axis=0)
    return m / max(float(np.linalg.norm(m)), 1e-300)


def smooth_node(pts, tets, star, v, q, fixed_axis: int = -1, plane_normal: np.ndarray | None = None) -> bool:
    """Relocate free node v to raise the minimum SICN of its star (tets around it).

    Candidates: towards the centroid of its neighbours, and away from the face opposite v in its
    worst tet (the usual cure for a node sitting almost on that face); the best is kept if it beats
    the current minimum. ``fixed_axis`` >= 0: v is on a box plane normal to that axis and moves
    only within it.
    """
    from tomocell.meshing.fidelity import sicn

    st = tets[star]
    nb = np.unique(st)
    nb = nb[nb != v]
    old = pts[v].copy()
    q0 = float(q[star].min())
    target = pts[nb].mean(axis=0)
    worst = st[int(np.argmin(q[star]))]
    a, b, c = [pts[x] for x in worst if x != v]
    nrm = cross3(b - a, c - a)
    nrm /= max(np.linalg.norm(nrm), 1e-300)
    if np.dot(old - a, nrm) < 0:
        nrm = -nrm
    h = float(np.mean(np.linalg.norm(pts[nb] - old, axis=1)))
    moves = [w * (target - old) for w in (1.0, 0.6, 0.3, 0.15)]
    moves += [s * h * nrm for s in (0.05, 0.1, 0.2, 0.35)]
    moves += [0.5 * (target - old) + s * h * nrm for s in (0.1, 0.25)]
    moves = np.asarray(moves)
    if fixed_axis >= 0:
        moves[:, fixed_axis] = 0.0
    if plane_normal is not None:
        # within the tangent plane, and short: the sheet's shape changes by |move|^2 * curvature / 2
        moves -= np.outer(moves @ plane_normal, plane_normal)
        ln = np.linalg.norm(moves, axis=1)
        moves *= np.minimum(1.0, 0.25 * h / np.maximum(ln, 1e-300))[:, None]
    cand = old + moves
    k = len(cand)
    P = np.repeat(pts[st][None], k, axis=0)  # (k, ns, 4, 3)
    where = st == v
    P[:, where] = cand[:, None, :]
    P = P.reshape(-1, 4, 3)
    o = orient(P).reshape(k, -1)
    flat = P.reshape(-1, 3)
    qs = sicn(flat, np.arange(len(flat)).reshape(-1, 4)).reshape(k, -1)
    qs[~np.all(o > 0, axis=1)] = -1.0
    best = int(np.argmax(qs.min(axis=1)))
    if qs[best].min() > q0:
        pts[v] = cand[best]
        q[star] = qs[best]
        return True
    return False


__all__ = ["remove_slivers"]
