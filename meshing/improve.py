"""Sliver removal on a tagged tet mesh that keeps every tagged facet (box faces and interfaces).

gmsh's Delaunay mesher leaves flat tets where four surface points are (nearly) co-spherical: on
planar voxel-grid patches of box faces and interfaces. Its own optimiser cannot remove them (the
nodes are on embedded surfaces and the faces are constrained; Netgen's optimiser crashes with
embedded surfaces, MMG3D with ``-nosurf`` keeps ~0.7 % slivers and doubles the tets). This pass is
the standard local topological improvement (Klingner & Shewchuk 2007), written here because no
installed library does it under these constraints:

* **edge removal**: for a bad tet, each of its edges that lies on no tagged facet is removed: the
  shell of tets around it is replaced by the best triangulation of its ring of nodes joined to the
  edge's two ends (a 3-2 flip for a ring of three). The shell's union is retiled exactly (checked by
  orientation and by volume), so phase volumes and tagged facets do not change;
* **2-3 flip**: a bad tet and a face neighbour of the same phase become three tets around the edge
  joining their opposite nodes, where that edge crosses their shared face (the cure for a tet
  spanning a thin CBD layer whose edges' shells are too large or mixed for edge removal);
* **node collapse**: a node on no tagged facet (typically squeezed into a thin CBD layer) is merged
  into the neighbour that gives the best tets around it;
* **node smoothing**: otherwise such a node is moved (towards the centroid of its neighbours or away
  from the face opposite it in its worst tet) when that raises the worst quality of its tets; a node
  on one box face and on no interface slides within that face (the box faces stay planar);
* **interface flip**: a flat tet lying with two faces on one nearly flat A|B interface (the usual
  gmsh sliver on a slightly concave patch) moves to phase B, the interface's edge between those
  faces is flipped, and that edge, now inside B, is removed as above; the phase volumes change by
  the flat tet's volume only;
* **node insertion**: when all four nodes of a bad tet are on tagged facets (a wedge at a triple
  line, a tet spanning a thin CBD layer), nothing may move; a new free node is starred into the tet
  and its face neighbours of the same phase (then their neighbours too) at the candidate position
  with the best worst tet. The cavity's boundary faces stay, so nothing tagged changes;
* **sheet slide** (last resort): a node inside one interface sheet (its facets a closed fan off
  the box) of a bad tet moves within the sheet's tangent plane by at most a quarter of its edges;
  the interface keeps its shape to second order (|move|^2 x curvature / 2), both phases move with
  it, and the change is kept only if the worst tet around the node improves;
* **snap to a box face**: a free node almost on a box face is moved onto it and the flat tets this
  leaves are dropped (a flat tet with four nodes on one box face is dropped too).

Quality is gmsh's SICN (:func:`tomocell.meshing.fidelity.sicn`). A change is accepted only if it
raises the minimum quality of the tets it touches. The operations are in :mod:`tomocell.meshing.local_ops`;
:func:`remove_slivers` here decides which to try on which tet.
"""

from __future__ import annotations

import numpy as np

from tomocell.log import get_logger
from tomocell.meshing.local_ops import (
    Incidence, collapse_node, edge_keys, face_neighbours, face_swap, insert_node_near, interface_flip, orient,
    remove_edge, sheet_nodes, sheet_normal, smooth_node, snap_to_plane,
)

log = get_logger("meshing.improve")


def remove_slivers(
    points: np.ndarray,
    tets: np.ndarray,
    cell_tags: np.ndarray,
    particle_tags: np.ndarray,
    facets: np.ndarray,
    *,
    box_um: tuple[float, float, float] | None = None,
    threshold: float = 0.1,
    passes: int = 10,
    max_ring: int = 7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Improve tets with SICN below ``threshold`` without touching ``facets`` (see module docstring).

    ``facets`` (F, 3) are all constrained triangles (box faces and interfaces). With ``box_um`` the
    box faces (planes x = 0, X, y = 0, Y, z = 0, Z) may be retriangulated: a free node almost on a
    box face is snapped onto it and the flat tets this leaves are dropped. Returns new (points, tets,
    cell_tags, particle_tags, figures); node indices are unchanged (unused nodes may remain).
    """
    from tomocell.meshing.fidelity import sicn

    from tomocell.meshing.fidelity import sicn as _sicn

    tets = np.array(tets, dtype=np.int64, copy=True)
    # room for the nodes that node insertion may add (index space fixed: edge keys use it)
    n_used = len(points)
    n_bad_in = int(np.count_nonzero(_sicn(np.asarray(points, dtype=np.float64), tets) < threshold))
    pts = np.zeros((n_used + 4 * n_bad_in + 16, 3))
    pts[:n_used] = points
    ct = np.array(cell_tags, copy=True)
    pt = np.array(particle_tags, copy=True)
    n = len(pts)
    # orient all tets positively so orientation tests have one sign
    neg = orient(pts[tets]) < 0
    tets[neg] = tets[neg][:, [0, 2, 1, 3]]
    f = np.asarray(facets, dtype=np.int64)
    con_edges, con_edge_count = np.unique(edge_keys(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), n),
                                          return_counts=True)
    # constrained faces and edges changed by interface flips (overrides of the arrays above)
    con_faces = set(map(tuple, np.sort(f, axis=1).tolist()))
    edge_override: dict[int, int] = {}  # edge key -> number of constrained faces holding it now

    def con_count(ek: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(con_edges, ek), len(con_edges) - 1)
        cnt = np.where(con_edges[pos] == ek, con_edge_count[pos], 0)
        if edge_override:
            cnt = np.array([edge_override.get(int(k), c) for k, c in zip(ek, cnt)])
        return cnt
    con_node = np.zeros(n, dtype=bool)
    con_node[f.ravel()] = True
    # interface nodes inside one sheet (their facets form a closed fan off the box faces) may slide
    # within it as a last resort; nodes of interface flips are left alone (their fans changed)
    f_flat = f.ravel()
    f_order = np.argsort(f_flat, kind="stable")
    f_of = f_order // 3
    f_start = np.searchsorted(f_flat[f_order], np.arange(n + 1))
    sheet_node = sheet_nodes(pts, f, n, box_um)
    flipped_node = np.zeros(n, dtype=bool)
    q = sicn(pts, tets)
    q_min0, n_bad0 = float(q.min()), int(np.count_nonzero(q < threshold))
    new_t: list[np.ndarray] = []
    alive = np.ones(len(tets), dtype=bool)
    stats = {"interface_flips": 0, "edge_removals": 0, "face_swaps": 0, "surface_nodes_slid": 0, "node_collapses": 0,
             "nodes_moved": 0, "nodes_snapped_to_box": 0, "nodes_inserted": 0}
    planes = []
    if box_um is not None:
        tol = 1e-9 * max(box_um)
        for ax in range(3):
            planes += [(ax, 0.0), (ax, float(box_um[ax]))]
        plane_of = np.full((n, 6), False)
        for i, (ax, val) in enumerate(planes):
            plane_of[:, i] = np.abs(pts[:, ax] - val) <= tol
        plane_of[n_used:] = False  # room for inserted nodes (zeros until then), not on any plane
        # a tet with its four nodes on one box plane is flat and lies on the box face: dropping it
        # leaves its other faces as boundary faces covering the same piece of that plane
        on_one = np.zeros(len(tets), dtype=bool)
        for i in range(6):
            on_one |= plane_of[tets, i].all(axis=1)
        alive[on_one] = False
        stats["flat_box_tets_dropped"] = int(np.count_nonzero(on_one))
        # nodes on exactly one box plane and on no interface may slide within that plane
        f_box = np.zeros(len(f), dtype=bool)
        for i in range(6):
            f_box |= plane_of[f, i].all(axis=1)
        on_iface = np.zeros(n, dtype=bool)
        on_iface[f[~f_box].ravel()] = True
        slide_axis = np.where((plane_of.sum(axis=1) == 1) & ~on_iface,
                              np.argmax(plane_of, axis=1) // 2, -1)
    else:
        slide_axis = np.full(n, -1)
    local_edges = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
    for _ in range(passes):
        bad = np.flatnonzero(alive & (q < threshold))
        if not len(bad):
            break
        inc = Incidence(tets, alive, n)
        touched = np.zeros(len(tets), dtype=bool)
        changed = 0
        for t in bad[np.argsort(q[bad])]:
            if touched[t] or not alive[t]:
                continue
            done = False
            # 0) a free node almost on a box face: snap it onto the face, drop the flat tets
            if planes:
                on = plane_of[tets[t]]  # (4, 6)
                for i in np.flatnonzero(on.sum(axis=0) == 3):
                    v = int(tets[t][~on[:, i]][0])
                    if con_node[v]:
                        continue
                    star = inc.tets_of(v)
                    if touched[star].any():
                        continue
                    flat = snap_to_plane(pts, tets, star, v, planes[i], plane_of[:, i], q)
                    if flat is not None:
                        alive[star[flat]] = False
                        touched[star] = True
                        plane_of[v, i] = True
                        con_node[v] = True
                        stats["nodes_snapped_to_box"] += 1
                        changed += 1
                        done = True
                        break
            # 1) edge removal over the free edges of t, best result first
            e = tets[t][local_edges]
            ek = edge_keys(e, n)
            free = con_count(ek) == 0
            best = None
            for u, v in e[free]:
                tu = inc.tets_of(u)
                shell = tu[np.any(tets[tu] == v, axis=1)]
                if len(shell) > max_ring or touched[shell].any() or len(np.unique(ct[shell])) != 1:
                    continue
                res = remove_edge(pts, tets, shell, int(u), int(v), q)
                if res is not None and (best is None or res[1] > best[1]):
                    best = (shell, res[1], res[0])
            if not done and best is not None:
                shell, qn, tn = best
                alive[shell] = False
                touched[shell] = True
                new_t.append(np.column_stack([tn, np.full(len(tn), ct[shell[0]]),
                                              np.full(len(tn), np.max(pt[shell]))]))
                stats["edge_removals"] += 1
                changed += 1
                done = True
            # 1b) a 2-3 flip with a face neighbour of the same phase (the tet spanning a thin layer
            # whose edges' shells are too large or mixed for edge removal)
            if not done:
                best = None
                for nb in face_neighbours(tets, t, inc, alive, con_faces):
                    if ct[nb] != ct[t] or touched[nb]:
                        continue
                    res = face_swap(pts, tets, t, nb)
                    if res is not None:
                        qn = float(sicn(pts, res).min())
                        if qn > min(q[t], q[nb]) + 1e-6 and (best is None or qn > best[1]):
                            best = (nb, qn, res)
                if best is not None:
                    nb, qn, tn = best
                    pair = np.array([t, nb])
                    alive[pair] = False
                    touched[pair] = True
                    new_t.append(np.column_stack([tn, np.full(3, ct[t]), np.full(3, max(pt[t], pt[nb]))]))
                    stats["face_swaps"] += 1
                    changed += 1
                    done = True
            # 2) failing that, a flat tet lying on a nearly flat interface with two of its faces: flip the interface
            if not done:
                res = interface_flip(pts, tets, ct, pt, q, t, inc, alive, touched, con_faces, con_count, n, max_ring + 1)
                if res is not None:
                    shell, tn, b_phase, b_part, (a_, b_, c_, d_) = res
                    alive[shell] = False
                    touched[shell] = True
                    new_t.append(np.column_stack([tn, np.full(len(tn), b_phase), np.full(len(tn), b_part)]))
                    for old in ((a_, b_, c_), (a_, b_, d_)):
                        con_faces.discard(tuple(sorted(old)))
                    for new in ((a_, c_, d_), (b_, c_, d_)):
                        con_faces.add(tuple(sorted(new)))
                    eab, ecd = (int(k) for k in edge_keys(np.array([[a_, b_], [c_, d_]]), n))
                    edge_override[eab] = 0
                    edge_override[ecd] = 2
                    stats["interface_flips"] += 1
                    flipped_node[[a_, b_, c_, d_]] = True
                    changed += 1
                    done = True
            # 3) collapse of a free node onto a neighbour, else 4) smoothing of its free nodes
            def free_stars(tet, slide=False):
                for v in tet:
                    if not con_node[v] or (slide and slide_axis[v] >= 0):
                        star = inc.tets_of(v)
                        if not touched[star].any():
                            yield int(v), star

            if not done:
                for v, star in free_stars(tets[t]):
                    res = collapse_node(pts, tets, star, v, q)
                    if res is not None:
                        keep, tn, _qn = res
                        alive[star] = False
                        touched[star] = True
                        new_t.append(np.column_stack([tn, ct[star[keep]], pt[star[keep]]]))
                        stats["node_collapses"] += 1
                        changed += 1
                        done = True
                        break
            # 4) a new free node inside the tet and its face neighbours (the cure when all four nodes
            # are on interfaces: wedges at triple lines, tets spanning a thin CBD layer)
            if not done and n_used < n:
                res = insert_node_near(pts, tets, ct, q, t, inc, alive, touched, con_faces)
                if res is not None:
                    cav, tn, p_new = res
                    pts[n_used] = p_new
                    tn = np.where(tn < 0, n_used, tn)
                    n_used += 1
                    alive[cav] = False
                    touched[cav] = True
                    new_t.append(np.column_stack([tn, np.full(len(tn), ct[cav[0]]), np.full(len(tn), np.max(pt[cav]))]))
                    stats["nodes_inserted"] += 1
                    changed += 1
                    done = True
            if not done:
                for v, star in free_stars(tets[t], slide=True):
                    if smooth_node(pts, tets, star, v, q, fixed_axis=int(slide_axis[v])):
                        touched[star] = True
                        stats["nodes_moved"] += 1
                        changed += 1
                        done = True
                        break
            # 5) last resort, for a tet whose nodes all lie on interfaces: slide one of them within
            # its sheet (tangent plane, at most a quarter of its edges): the interface keeps its
            # shape to second order and both sides move with it, so the mesh stays conformal
            if not done:
                for v in tets[t]:
                    v = int(v)
                    if not con_node[v] or flipped_node[v] or not sheet_node[v]:
                        continue
                    star = inc.tets_of(v)
                    if touched[star].any():
                        continue
                    fan = f[f_of[f_start[v]:f_start[v + 1]]]
                    if smooth_node(pts, tets, star, v, q, plane_normal=sheet_normal(pts, fan, v)):
                        touched[star] = True
                        stats["surface_nodes_slid"] += 1
                        changed += 1
                        break
        if new_t:
            add = np.concatenate(new_t)
            new_t = []
            tets = np.concatenate([tets, add[:, :4]])
            ct = np.concatenate([ct, add[:, 4].astype(ct.dtype)])
            pt = np.concatenate([pt, add[:, 5].astype(pt.dtype)])
            alive = np.concatenate([alive, np.ones(len(add), dtype=bool)])
            q = np.concatenate([q, sicn(pts, add[:, :4])])
        # smoothing changed qualities in place (q updated by smooth_node)
        if not changed:
            break
    tets, ct, pt = tets[alive], ct[alive], pt[alive]
    q = sicn(pts, tets)
    stats.update(sicn_min_before=q_min0, below_threshold_before=n_bad0, sicn_min_after=float(q.min()),
                 below_threshold_after=int(np.count_nonzero(q < threshold)), threshold=threshold)
    log.info("sliver removal: %d edge removals, %d face swaps, %d nodes inserted, %d nodes moved, %d interface "
             "nodes slid; min SICN %.3g -> %.3g, below %.2f: %d -> %d", stats["edge_removals"], stats["face_swaps"],
             stats["nodes_inserted"], stats["nodes_moved"], stats["surface_nodes_slid"], q_min0,
             stats["sicn_min_after"], threshold, n_bad0, stats["below_threshold_after"])
    return pts, tets, ct, pt, stats
