"""Default route: smoothed multi-label surface -> gmsh tetrahedra of every phase region.

The surface is cut into patches: one per interface between two regions and one per region on each
box face, where a region is a face-connected component of one phase (the separator slab is one).
The surface is then coarsened to ``h_interface`` with good triangles by :mod:`tomocell.meshing.remesh`,
which thins patch borders (triple lines, phase lines on box faces, box edges) along themselves and
keeps them shared by all their patches. gmsh then meshes each region as its own volume bounded by
its patches (``formulation="regions"``), by HXT (Algorithm3D 10) or Delaunay (1), a few regions at a time in
child processes (:func:`tomocell.meshing.gmsh_pool.gmsh_tets`). Every surface triangle is kept as a tet face (checked per
region), so neighbouring regions share their interface nodes and faces: the mesh is conformal at
every interface and triple line by construction, and each tet's phase is its region's. Sizes grow
from ``h_interface`` at the interfaces to ``h_bulk`` inside particles and pores (distance threshold
field). A region whose HXT run fails, or kills its process, is redone by Delaunay; if that fails
too, the former formulation (one box volume with every interface embedded, Delaunay only: HXT
cannot mesh embedded surfaces, and gmsh's volume step was ~30x slower that way) is used and the
reason is logged and kept in ``info['gmsh']``.

A region left with a tet below SICN 0.05 by gmsh's optimiser gets a second, wider optimisation;
then a local pass (:mod:`tomocell.meshing.improve`: edge removal, 2-3 flips, interface flips, node
collapse, moves and insertion) works on what is left, keeping every interface conformal. The facet tags and the
conformity checks then come from :mod:`tomocell.meshing.tagging`.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.meshing import tags
from tomocell.meshing.gmsh_pool import MeshingError, gmsh_tets
from tomocell.meshing.remesh import remesh_surface
from tomocell.meshing.separator import layer_thicknesses
from tomocell.meshing.surface import SEPARATOR_LABEL, Surface, fix_checkerboard_edges, surface_of_volume
from tomocell.meshing.tagging import NonConformalMeshError, face_keys, face_table, tag_facets
from tomocell.meshing.tetmesh import TetMesh
from tomocell.microstructure.volume import Volume

log = get_logger("meshing.gmsh")


#: gmsh problem formulations of the surface route (see :func:`surface_mesh`)
FORMULATIONS = ("regions", "embedded", "tetgen")  # tetgen: optional, see meshing/tetgen_volume.py
#: the embedded formulation is tried as a fallback only up to this many surface triangles: gmsh's
#: volume step with embedded interfaces was measured at ~1,900 tets/s (a 100^3 volume, ~100 k
#: triangles, was stopped after 30 CPU-min); above it a failure goes to the caller (the voxel route)
EMBEDDED_FALLBACK_MAX_TRIANGLES = 50_000


def _grid_quads(n_u: int, n_v: int) -> np.ndarray:
    """Quads (as index pairs into an (n_u, n_v) node grid) of a structured patch."""
    iu, iv = np.meshgrid(np.arange(n_u - 1), np.arange(n_v - 1), indexing="ij")
    a = (iu * n_v + iv).ravel()
    return np.column_stack([a, a + n_v, a + n_v + 1, a + 1])


def _separator_patch(surf: Surface, L: float, box_xy: tuple[float, float], d: tuple[float, float, float],
                     sep_um: float, n1: int, n2: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Nodes and triangles of the separator slab's four sides and top (Li face).

    The bottom row of each side reuses the surface's vertices on the box's top edges (they are pinned,
    so they sit exactly on the grid), which keeps the box boundary closed.
    """
    X, Y = box_xy
    hz = layer_thicknesses(sep_um, first_um=d[0], max_um=3.0 * max(d[1], d[2]))
    zs = L + np.cumsum(hz)
    xs = np.arange(n2 + 1) * d[2]
    ys = np.arange(n1 + 1) * d[1]
    xs[-1], ys[-1] = X, Y
    # lookup of existing top-plane vertices (z == L) by (x, y) grid index
    top = np.flatnonzero(np.isclose(surf.points[:, 2], L, atol=1e-9 * L + 1e-12))
    gi = np.rint(surf.points[top, 0] / d[2]).astype(int)
    gj = np.rint(surf.points[top, 1] / d[1]).astype(int)
    top_id = -np.ones((n1 + 1, n2 + 1), dtype=np.int64)
    on_grid = np.isclose(surf.points[top, 0], gi * d[2]) & np.isclose(surf.points[top, 1], gj * d[1])
    top_id[gj[on_grid], gi[on_grid]] = top[on_grid]
    new_pts: list[np.ndarray] = []
    base = len(surf.points)

    def add(p: np.ndarray) -> np.ndarray:
        nonlocal base
        ids = np.arange(base, base + len(p))
        base += len(p)
        new_pts.append(p)
        return ids

    patches: list[tuple[int, np.ndarray]] = []
    # sides: (plane id, fixed axis value, running coordinate, bottom vertex ids)
    for plane, xy_fixed, along in ((0, ("x", 0.0), ys), (1, ("x", X), ys), (2, ("y", 0.0), xs), (3, ("y", Y), xs)):
        axis, val = xy_fixed
        bottom = top_id[:, 0 if val == 0.0 else n2] if axis == "x" else top_id[0 if val == 0.0 else n1, :]
        if np.any(bottom < 0):
            raise MeshingError("surface vertices missing on the electrode's top edges")
        U, Z = np.meshgrid(along, zs, indexing="ij")
        if axis == "x":
            p = np.column_stack([np.full(U.size, val), U.ravel(), Z.ravel()])
        else:
            p = np.column_stack([U.ravel(), np.full(U.size, val), Z.ravel()])
        ids = np.column_stack([bottom, add(p).reshape(len(along), len(zs))])  # (n_along, 1 + nz)
        q = _grid_quads(*ids.shape)
        flat = ids.ravel()
        tri = np.concatenate([flat[q[:, [0, 1, 2]]], flat[q[:, [0, 2, 3]]]])
        patches.append((plane, tri))
    # top (Li face): reuse side nodes on its rim
    Xg, Yg = np.meshgrid(xs, ys, indexing="xy")  # (n1+1, n2+1)
    ztop = np.full(Xg.size, zs[-1])
    tid = add(np.column_stack([Xg.ravel(), Yg.ravel(), ztop])).reshape(n1 + 1, n2 + 1)
    q = _grid_quads(n1 + 1, n2 + 1)
    flat = tid.ravel()
    patches.append((5, np.concatenate([flat[q[:, [0, 1, 2]]], flat[q[:, [0, 2, 3]]]])))
    pts = np.concatenate(new_pts) if new_pts else np.zeros((0, 3))
    # merge duplicated rim nodes (the top's rim coincides with the sides' top rows)
    return pts, patches


def _merge_duplicates(points: np.ndarray, tri_lists: list[np.ndarray], tol: float) -> tuple[np.ndarray, list[np.ndarray]]:
    key = np.rint(points / tol).astype(np.int64)
    _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    remap = np.empty(len(first), dtype=np.int64)
    remap[order] = np.arange(len(first))
    new_id = remap[inv.ravel()]
    return points[first[order]], [new_id[t] for t in tri_lists]


def surface_mesh(
    volume: Volume,
    *,
    h_interface_um: float = 0.3,
    h_bulk_um: float = 1.0,
    separator_um: float = 25.0,
    particle_labels: np.ndarray | None = None,
    smoothing_iterations: int = 12,
    coarsen_factor: float = 1.0,
    threads: int = 1,
    gmsh_options: dict[str, float] | None = None,
    improve: bool = True,
    formulation: str = "regions",
    algorithm3d: int | None = None,
) -> TetMesh:
    """Conformal tagged tet mesh of ``volume`` by the smoothed-surface + gmsh route (see module doc).

    ``improve``: run :func:`tomocell.meshing.improve.remove_slivers` on gmsh's output (gmsh leaves
    near-flat tets against box faces and interfaces that its optimiser cannot remove).
    ``gmsh_options``: extra gmsh options (name -> number), for experiments.
    ``formulation``: ``"regions"`` (default) gives gmsh one discrete volume per phase, bounded by that
    phase's interface and box patches, meshed by HXT (``algorithm3d`` 10, multi-threaded) unless told
    otherwise; if it fails, the ``"embedded"`` formulation (one box volume with every interface
    embedded, Delaunay, much slower) is used and the reason is logged and kept in
    ``info['gmsh']['formulation_fallback']``.
    """
    if formulation not in FORMULATIONS:
        raise InputError(f"unknown gmsh formulation {formulation!r} (choose from {', '.join(FORMULATIONS)})")
    if formulation == "embedded" and algorithm3d == 10:
        raise InputError("HXT (gmsh Algorithm3D 10) cannot mesh embedded surfaces: use the regions formulation")
    if formulation == "tetgen":
        from tomocell.meshing.tetgen_volume import INSTALL_HINT, tetgen_available

        if not tetgen_available():
            raise InputError(INSTALL_HINT)
    t0 = time.perf_counter()
    volume.require_phases("pore", "active")
    n0, n1, n2 = volume.shape
    d = volume.voxel_size_um
    if min(volume.shape) < 2:
        raise InputError(f"volume {volume.shape} is too thin to mesh (needs >= 2 voxels per axis)")
    if threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    if h_interface_um <= 0 or h_bulk_um < h_interface_um:
        raise InputError(f"need 0 < h_interface ({h_interface_um}) <= h_bulk ({h_bulk_um}) um")
    L = n0 * d[0]
    X, Y = n2 * d[2], n1 * d[1]
    sep = separator_um > 0
    # voxel edges with one phase on a diagonal only make the surface non-manifold (pinches that gmsh
    # may fail to recover after coarsening): those few voxels are relabelled first
    fixed, n_fixed = fix_checkerboard_edges(volume.labels)
    if n_fixed:
        log.info("surface route: %d voxels relabelled to remove one-diagonal (checkerboard) edges", n_fixed)
    surf = surface_of_volume(volume.with_labels(fixed) if n_fixed else volume, separator=sep,
                             iterations=smoothing_iterations, regions=True)
    t_surf = time.perf_counter() - t0
    # group triangles: box faces by plane, interfaces by label pair
    # patches: ("box", plane, phase, region) and ("iface", phase a, phase b, region a, region b), where
    # a region is a face-connected component of one phase (0: separator). Patch borders (triple lines,
    # phase lines on box faces) are kept exactly by coarsening and the quality pass, and every region
    # is closed by its own patches: the per-region gmsh formulation needs each region to be the only
    # one bounded by its set of patches.
    groups: dict[tuple, np.ndarray] = {}
    bf = surf.box_face
    sr = surf.side_regions
    key = np.column_stack([bf, surf.pairs, sr])
    ukeys, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(ukeys) + 1))
    for i, (plane, a, b, ra, rb) in enumerate(ukeys.tolist()):
        tri = surf.triangles[order[bounds[i]:bounds[i + 1]]]
        if plane >= 0:
            groups[("box", plane, a, ra)] = tri  # pairs are sorted: the phase is a (b is OUTSIDE)
        else:
            groups[("iface", a, b, ra, rb)] = tri
    points = surf.points
    if sep:
        extra, patches = _separator_patch(surf, L, (X, Y), d, separator_um, n1, n2)
        points = np.concatenate([points, extra])
        for plane, tri in patches:
            groups[("box", plane, SEPARATOR_LABEL, 0)] = tri
    keys = list(groups)
    points, tri_lists = _merge_duplicates(points, [groups[k] for k in keys], 1e-6 * min(d))
    groups = dict(zip(keys, tri_lists))
    t1 = time.perf_counter()
    # coarsening and triangle quality in one pass (patch borders coarsened as lines, never split)
    points, groups, remesh_info = remesh_surface(points, groups, voxel_um=float(np.mean(d)),
                                                  target_edge_um=h_interface_um * coarsen_factor)
    remesh_info["time_s"] = time.perf_counter() - t1
    groups, bubbles = _drop_closed_bubbles(groups)
    if bubbles["components"]:
        log.info("surface route: %d tiny closed shells (%d triangles) dropped from their patches",
                 bubbles["components"], bubbles["triangles"])
    # keep only nodes used by the (coarsened) surface, renumbered
    used_s = np.unique(np.concatenate(list(groups.values())))
    ren = np.full(len(points), -1, dtype=np.int64)
    ren[used_s] = np.arange(len(used_s))
    points = points[used_s]
    groups = {k: ren[t] for k, t in groups.items()}
    z_top = L + (separator_um if sep else 0.0)
    box = (float(X), float(Y), float(z_top))

    t_prep = time.perf_counter() - t0 - t_surf
    n_tri = int(sum(len(t) for t in groups.values()))
    formulations = [formulation]
    if formulation == "regions" and n_tri <= EMBEDDED_FALLBACK_MAX_TRIANGLES:
        formulations.append("embedded")
    gmsh_info: dict = {}
    for form in formulations:
        try:
            t1 = time.perf_counter()
            if form == "tetgen":
                from tomocell.meshing.tetgen_volume import tetgen_tets

                pts, tets, gmsh_info = tetgen_tets(points, groups, h_bulk_um=h_bulk_um)
                region_phase = None  # phases from the regions between interfaces
            else:
                pts, tets, region_phase, gmsh_info = gmsh_tets(
                    points, groups, formulation=form, h_interface_um=h_interface_um, h_bulk_um=h_bulk_um,
                    threads=threads, algorithm3d=algorithm3d if form == formulation else None,
                    gmsh_options=gmsh_options if form == formulation else None)
            t_gmsh = time.perf_counter() - t1
            t1 = time.perf_counter()
            iface_tris = np.concatenate([t for k, t in groups.items() if k[0] == "iface"])
            cell_tags, ptags, disagree = _assign_phases(pts, tets, iface_tris, volume, particle_labels, L,
                                                        region_phase=region_phase)
            facets, ftags, _ = tag_facets(pts, tets, cell_tags, box, tol_um=1e-6 * max(box))
            t_tags = time.perf_counter() - t1
            break
        except (MeshingError, NonConformalMeshError) as exc:
            if form == formulations[-1]:
                if form == "regions":
                    raise MeshingError(f"{exc}; the embedded formulation is not tried on {n_tri} surface triangles "
                                       f"(> {EMBEDDED_FALLBACK_MAX_TRIANGLES}: gmsh would take tens of minutes)") from exc
                raise
            log.warning("gmsh %s formulation failed (%s); falling back to one volume with embedded "
                        "interfaces (Delaunay)", form, exc)
            gmsh_info = {}
            formulation_fallback = f"{form}: {exc}"
    else:  # pragma: no cover - loop always breaks or raises
        raise MeshingError("no gmsh formulation ran")
    gmsh_info["formulation"] = form
    if form != formulation:
        gmsh_info["formulation_fallback"] = formulation_fallback
    sliver_info: dict = {}
    if improve:
        from tomocell.meshing.improve import remove_slivers

        t1 = time.perf_counter()
        pts, tets, cell_tags, ptags, sliver_info = remove_slivers(pts, tets, cell_tags, ptags, facets, box_um=box)
        used, inv = np.unique(tets, return_inverse=True)
        pts, tets = pts[used], inv.reshape(-1, 4)
        facets, ftags, _ = tag_facets(pts, tets, cell_tags, box, tol_um=1e-6 * max(box))
        sliver_info["time_s"] = time.perf_counter() - t1
    mesh = TetMesh(
        points=pts, tets=tets, cell_tags=cell_tags, facets=facets, facet_tags=ftags, particle_tags=ptags,
        box_um=box, electrode_thickness_um=float(L),
        info={
            "route": "surface", "h_interface_um": h_interface_um, "h_bulk_um": h_bulk_um,
            "separator_um": float(separator_um), "surface_triangles": int(sum(len(t) for t in groups.values())),
            "smoothing_iterations": smoothing_iterations, "surface_remeshing": remesh_info,
            "sliver_removal": sliver_info,
            "repaired_vertices": int(getattr(surf, "repaired_vertices", 0)), "checkerboard_voxels_relabelled": n_fixed, "closed_bubbles_dropped": bubbles, "centroid_phase_disagreement": disagree,
            "gmsh": gmsh_info, "time_surface_s": t_surf, "time_surface_prep_s": t_prep, "time_gmsh_s": t_gmsh, "time_tags_s": t_tags,
            "time_s": time.perf_counter() - t0,
            "voxel_size_um": list(d), "volume_shape": list(volume.shape),
        },
    )
    log.info("surface route (%s, gmsh algorithm %s): %d tets, %d nodes in %.1f s (surface %.1f s, "
             "surface remeshing %.1f s, gmsh %.1f s, slivers %.1f s)", form, gmsh_info.get("algorithm3d"),
             mesh.num_tets, mesh.num_nodes, mesh.info["time_s"], t_surf, t_prep, t_gmsh, sliver_info.get("time_s", 0.0))
    return mesh



def _drop_closed_bubbles(groups: dict, max_triangles: int = 64) -> tuple[dict, dict]:
    """Remove the small edge-connected pieces of a patch that are closed surfaces on their own.

    Smoothing and coarsening can pinch a one-voxel neck, leaving a tiny closed shell (4-8 triangles
    seen at 200^3) inside a patch, almost touching the rest; gmsh then cannot recover its faces
    without splitting them (the region fails with both HXT and Delaunay). A closed piece bounds a
    pocket by itself, so dropping it from its patch leaves every region closed: the pocket goes to
    the region around it, the same on both sides, and the mesh stays conformal. A whole region
    enclosed by one small closed patch (a blob of a few voxels) goes the same way. The phase volume
    changes by the pocket's volume only (reported by the fidelity check).
    """
    out: dict = {}
    n_comp = n_tri = 0
    for k, tri in groups.items():
        m = len(tri)
        if m == 0:
            continue
        e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
        ek = e[:, 0].astype(np.int64) * (int(tri.max()) + 1) + e[:, 1]
        tid = np.tile(np.arange(m), 3)
        order = np.argsort(ek, kind="stable")
        ks, ts = ek[order], tid[order]
        # triangles are linked across manifold edges only (two triangles of the patch): a shell that
        # touches the rest of its patch along a non-manifold edge is a piece of its own
        start = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        cnt_e = np.diff(np.r_[start, len(ks)])
        link = start[cnt_e == 2]
        g = sp.coo_matrix((np.ones(len(link)), (ts[link], ts[link + 1])), shape=(m, m))
        ncomp, comp = connected_components(g, directed=False)
        if ncomp == 1 and m > max_triangles:
            out[k] = tri
            continue
        size = np.bincount(comp, minlength=ncomp)
        # closed: every edge of the piece is in exactly two of its triangles
        pair = comp[tid].astype(np.int64) * (int(ek.max()) + 1) + ek
        _, inv, cnt = np.unique(pair, return_inverse=True, return_counts=True)
        open_comp = np.zeros(ncomp, dtype=bool)
        open_comp[comp[tid][cnt[inv.ravel()] != 2]] = True
        drop = ~open_comp & (size <= max_triangles)
        if np.any(drop):
            n_comp += int(np.count_nonzero(drop))
            n_tri += int(size[drop].sum())
            keep = ~drop[comp]
            if np.any(keep):
                out[k] = tri[keep]
        else:
            out[k] = tri
    return out, {"components": n_comp, "triangles": n_tri}


def _assign_phases(pts, tets, iface_tris, volume: Volume, particle_labels, L: float,
                   region_phase: np.ndarray | None = None):
    """Phase per tet: regions bounded by the embedded interface faces take their majority voxel phase.

    Tets joined through faces that are not interface triangles form a region; each region gets the
    most frequent phase of the voxels under its tets' centroids (the separator above z = L). Returns
    (cell_tags, particle_tags, fraction of tets whose own centroid voxel has another phase).
    ``region_phase`` (per tet, 0 pore, 1 active, 2 CBD, 3 separator): the phase gmsh gave each tet
    (per-region formulation); it is checked to be constant on every region, then used as is.
    """
    n0, n1, n2 = volume.shape
    d = volume.voxel_size_um
    c = pts[tets].mean(axis=1)
    i = np.clip(((L - c[:, 2]) / d[0]).astype(np.int64), 0, n0 - 1)
    j = np.clip((c[:, 1] / d[1]).astype(np.int64), 0, n1 - 1)
    k = np.clip((c[:, 0] / d[2]).astype(np.int64), 0, n2 - 1)
    seed = np.where(c[:, 2] > L, 3, volume.labels[i, j, k].astype(np.int64))  # 3 = separator
    ft = face_table(tets, len(pts))
    inner = np.flatnonzero(ft.counts == 2)
    fk = face_keys(ft.faces[inner], len(pts))
    ik = face_keys(np.sort(iface_tris, axis=1), len(pts))
    is_iface = np.isin(fk, ik)
    n_found = int(np.count_nonzero(is_iface))
    if n_found != len(np.unique(ik)):
        raise MeshingError(
            f"gmsh did not recover {len(np.unique(ik)) - n_found} of {len(np.unique(ik))} embedded interface "
            "triangles (self-intersecting surface?); use --route voxel"
        )
    a, b = ft.cells[inner[~is_iface], 0], ft.cells[inner[~is_iface], 1]
    g = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(len(tets), len(tets)))
    ncomp, comp = connected_components(g, directed=False)
    if region_phase is None:
        votes = np.zeros((ncomp, 4), dtype=np.int64)
        np.add.at(votes, (comp, seed), 1)
        phase = np.argmax(votes, axis=1)[comp]
    else:
        phase = np.asarray(region_phase, dtype=np.int64)
        lo = np.full(ncomp, 99, dtype=np.int64)
        hi = np.full(ncomp, -1, dtype=np.int64)
        np.minimum.at(lo, comp, phase)
        np.maximum.at(hi, comp, phase)
        if np.any(lo != hi):
            raise MeshingError(f"{int(np.count_nonzero(lo != hi))} regions between interfaces hold tets of two "
                               "gmsh volumes (a phase boundary that is not an interface)")
    disagree = float(np.mean(phase != seed))
    lut = np.array([tags.PORE, tags.ACTIVE, tags.CBD, tags.SEPARATOR], dtype=np.int32)
    cell_tags = lut[phase]
    if particle_labels is not None:
        ptags = np.where(cell_tags == tags.ACTIVE, np.asarray(particle_labels)[i, j, k], 0).astype(np.int32)
        # centroids of boundary tets can fall in a neighbouring voxel: take the region's label there
        ptags_vote = np.zeros(ncomp, dtype=np.int64)
        pos = ptags > 0
        if np.any(pos):
            order = np.lexsort((ptags[pos], comp[pos]))
            cc, pp = comp[pos][order], ptags[pos][order]
            ptags_vote[cc] = pp  # last (largest) label of the region; refined below where it matters
        ptags = np.where((cell_tags == tags.ACTIVE) & (ptags == 0), ptags_vote[comp], ptags).astype(np.int32)
    else:
        ptags = np.zeros(len(tets), dtype=np.int32)
    return cell_tags, ptags, disagree
