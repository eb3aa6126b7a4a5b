"""Default route: smoothed multi-label surface -> one gmsh volume with every interface embedded.

The box (electrode + separator slab) is one discrete gmsh volume bounded by its six planar faces;
all interface triangles (active|pore, active|CBD, CBD|pore and the electrode|separator plane) are
embedded in it, so gmsh's Delaunay mesher (HXT fails with embedded surfaces) recovers them as tet
faces: the mesh is conformal at every interface and triple line by construction. Sizes grow from
``h_interface`` at the interfaces to ``h_bulk`` inside particles and pores (distance threshold
field). Before gmsh, the coarsened surface's needle and cap triangles (each one becomes a face of
a flat tet) are removed per patch by :mod:`tomocell.meshing.surface_quality`. gmsh still leaves
near-flat tets against box faces and interfaces; a local topological pass
(:mod:`tomocell.meshing.improve`: edge removal, interface flips, node moves) removes most of them,
keeping every interface conformal. Phases are
assigned afterwards: tets connected through non-interface faces form regions,
each region takes the majority phase of the voxels under its tet centroids. The facet tags and the
conformity checks then come from :mod:`tomocell.meshing.tagging`.
"""

from __future__ import annotations

import os
import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from tomocell.errors import InputError, TomocellError
from tomocell.log import get_logger
from tomocell.meshing import tags
from tomocell.meshing.coarsen import coarsen_surface_checked
from tomocell.meshing.separator import layer_thicknesses
from tomocell.meshing.surface import Surface, surface_of_volume
from tomocell.meshing.tagging import face_keys, face_table, tag_facets
from tomocell.meshing.tetmesh import TetMesh
from tomocell.microstructure.volume import Volume

log = get_logger("meshing.gmsh")


class MeshingError(TomocellError):
    """gmsh failed or produced a mesh that does not pass the checks."""


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
) -> TetMesh:
    """Conformal tagged tet mesh of ``volume`` by the smoothed-surface + gmsh route (see module doc).

    ``improve``: run :func:`tomocell.meshing.improve.remove_slivers` on gmsh's output (gmsh leaves
    near-flat tets against box faces and interfaces that its optimiser cannot remove).
    ``gmsh_options``: extra gmsh options (name -> number), for experiments.
    """
    import gmsh

    t0 = time.perf_counter()
    volume.require_phases("pore", "active")
    n0, n1, n2 = volume.shape
    d = volume.voxel_size_um
    if min(volume.shape) < 2:
        raise InputError(f"volume {volume.shape} is too thin to mesh (needs >= 2 voxels per axis)")
    if h_interface_um <= 0 or h_bulk_um < h_interface_um:
        raise InputError(f"need 0 < h_interface ({h_interface_um}) <= h_bulk ({h_bulk_um}) um")
    L = n0 * d[0]
    X, Y = n2 * d[2], n1 * d[1]
    sep = separator_um > 0
    surf = surface_of_volume(volume, separator=sep, iterations=smoothing_iterations)
    t_surf = time.perf_counter() - t0
    # group triangles: box faces by plane, interfaces by label pair
    groups: dict[tuple, np.ndarray] = {}
    bf = surf.box_face
    for plane in range(6):
        sel = bf == plane
        if np.any(sel):
            groups[("box", plane)] = surf.triangles[sel]
    internal = bf < 0
    pr = surf.pairs[internal]
    tri_int = surf.triangles[internal]
    for a, b in np.unique(pr, axis=0):
        groups[("iface", int(a), int(b))] = tri_int[(pr[:, 0] == a) & (pr[:, 1] == b)]
    points = surf.points
    if sep:
        extra, patches = _separator_patch(surf, L, (X, Y), d, separator_um, n1, n2)
        points = np.concatenate([points, extra])
        for plane, tri in patches:
            key = ("box", plane)
            groups[key] = np.concatenate([groups[key], tri]) if key in groups else tri
    keys = list(groups)
    points, tri_lists = _merge_duplicates(points, [groups[k] for k in keys], 1e-6 * min(d))
    groups = dict(zip(keys, tri_lists))
    groups, coarsen_info = coarsen_surface_checked(points, groups, voxel_um=float(np.mean(d)),
                                           target_edge_um=h_interface_um * coarsen_factor)
    surface_quality_info: dict = {}
    if improve:
        from tomocell.meshing.surface_quality import improve_surface

        points, groups, surface_quality_info = improve_surface(points, groups, voxel_um=float(np.mean(d)))
    # keep only nodes used by the (coarsened) surface, renumbered
    used_s = np.unique(np.concatenate(list(groups.values())))
    ren = np.full(len(points), -1, dtype=np.int64)
    ren[used_s] = np.arange(len(used_s))
    points = points[used_s]
    groups = {k: ren[t] for k, t in groups.items()}
    z_top = L + (separator_um if sep else 0.0)
    box = (float(X), float(Y), float(z_top))

    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", int(os.environ.get("TOMOCELL_GMSH_VERBOSE", "0")))
        gmsh.option.setNumber("General.NumThreads", threads)
        gmsh.model.add("tomocell")
        node_tags = np.arange(1, len(points) + 1, dtype=np.uint64)
        surf_tags: dict[tuple, int] = {}
        first = True
        for i, (k, tri) in enumerate(groups.items(), start=1):
            gmsh.model.addDiscreteEntity(2, i)
            if first:
                gmsh.model.mesh.addNodes(2, i, node_tags, points.ravel())
                first = False
            gmsh.model.mesh.addElementsByType(i, 2, [], (tri + 1).astype(np.uint64).ravel())
            surf_tags[k] = i
        box_tags = [t for k, t in surf_tags.items() if k[0] == "box"]
        iface_tags = [t for k, t in surf_tags.items() if k[0] == "iface"]
        # a geo volume over the discrete (pre-meshed) box faces: gmsh meshes only its interior
        loop = gmsh.model.geo.addSurfaceLoop(box_tags)
        vtag = gmsh.model.geo.addVolume([loop])
        gmsh.model.geo.synchronize()
        if iface_tags:
            gmsh.model.mesh.embed(2, iface_tags, 3, vtag)
        f_d = gmsh.model.mesh.field.add("Distance")
        gmsh.model.mesh.field.setNumbers(f_d, "SurfacesList", iface_tags)
        f_t = gmsh.model.mesh.field.add("Threshold")
        gmsh.model.mesh.field.setNumber(f_t, "InField", f_d)
        gmsh.model.mesh.field.setNumber(f_t, "SizeMin", h_interface_um)
        gmsh.model.mesh.field.setNumber(f_t, "SizeMax", h_bulk_um)
        gmsh.model.mesh.field.setNumber(f_t, "DistMin", 0.5 * h_interface_um)
        gmsh.model.mesh.field.setNumber(f_t, "DistMax", 2.0 * h_bulk_um)
        gmsh.model.mesh.field.setAsBackgroundMesh(f_t)
        gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
        gmsh.option.setNumber("Mesh.Algorithm3D", 1)
        gmsh.option.setNumber("Mesh.Optimize", 1)
        for name, val in (gmsh_options or {}).items():
            gmsh.option.setNumber(name, val)
        try:
            gmsh.model.mesh.generate(3)
        except Exception as exc:
            raise MeshingError(f"gmsh volume meshing failed: {exc} (try --route voxel)") from exc
        ntags, coords, _ = gmsh.model.mesh.getNodes()
        etypes, _, enodes = gmsh.model.mesh.getElements(3)
        if 4 not in list(etypes):
            raise MeshingError("gmsh produced no tetrahedra (try --route voxel)")
        tet_nodes = np.asarray(enodes[list(etypes).index(4)], dtype=np.int64).reshape(-1, 4)
    finally:
        gmsh.finalize()
    t_gmsh = time.perf_counter() - t0 - t_surf
    ntags = np.asarray(ntags, dtype=np.int64)
    lut = np.full(ntags.max() + 1, -1, dtype=np.int64)
    lut[ntags] = np.arange(len(ntags))
    pts = np.asarray(coords).reshape(-1, 3)
    tets = lut[tet_nodes]
    # gmsh occasionally emits the same tet twice (seen after its optimiser); drop exact copies.
    # Anything else that overlaps is caught by the volume and face-sharing checks.
    _, ui = np.unique(np.sort(tets, axis=1), axis=0, return_index=True)
    n_dup = len(tets) - len(ui)
    if n_dup:
        log.warning("gmsh returned %d duplicated tets; removed", n_dup)
        tets = tets[np.sort(ui)]
    used, inv = np.unique(tets, return_inverse=True)
    pts, tets = pts[used], inv.reshape(-1, 4)
    # interface triangles in the final node numbering (surface nodes keep gmsh tags 1..N)
    iface_tris = np.concatenate([t for k, t in groups.items() if k[0] == "iface"])
    iface_tris = np.searchsorted(used, lut[iface_tris + 1])
    cell_tags, ptags, disagree = _assign_phases(pts, tets, iface_tris, volume, particle_labels, L)
    facets, ftags, _ = tag_facets(pts, tets, cell_tags, box, tol_um=1e-6 * max(box))
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
            "smoothing_iterations": smoothing_iterations, "surface_coarsening": coarsen_info,
            "surface_quality": surface_quality_info, "duplicate_tets_removed": int(n_dup), "sliver_removal": sliver_info,
            "repaired_vertices": int(getattr(surf, "repaired_vertices", 0)), "centroid_phase_disagreement": disagree,
            "time_surface_s": t_surf, "time_gmsh_s": t_gmsh, "time_s": time.perf_counter() - t0,
            "voxel_size_um": list(d), "volume_shape": list(volume.shape),
        },
    )
    log.info("surface route: %d tets, %d nodes in %.1f s (surface %.1f s, gmsh %.1f s)",
             mesh.num_tets, mesh.num_nodes, mesh.info["time_s"], t_surf, t_gmsh)
    return mesh


def _assign_phases(pts, tets, iface_tris, volume: Volume, particle_labels, L: float):
    """Phase per tet: regions bounded by the embedded interface faces take their majority voxel phase.

    Tets joined through faces that are not interface triangles form a region; each region gets the
    most frequent phase of the voxels under its tets' centroids (the separator above z = L). Returns
    (cell_tags, particle_tags, fraction of tets whose own centroid voxel has another phase).
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
    votes = np.zeros((ncomp, 4), dtype=np.int64)
    np.add.at(votes, (comp, seed), 1)
    region_phase = np.argmax(votes, axis=1)
    phase = region_phase[comp]
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
