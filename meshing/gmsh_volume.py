"""Default route: smoothed multi-label surface -> gmsh tetrahedra of every phase region.

The surface is cut into patches: one per interface between two regions and one per region on each
box face, where a region is a face-connected component of one phase (the separator slab is one).
The surface is then coarsened to ``h_interface`` with good triangles by :mod:`tomocell.meshing.remesh`,
which thins patch borders (triple lines, phase lines on box faces, box edges) along themselves and
keeps them shared by all their patches. gmsh then meshes each region as its own volume bounded by
its patches (``formulation="regions"``), by HXT (Algorithm3D 10) or Delaunay (1), a few regions at a time in
child processes (:func:`_gmsh_tets`). Every surface triangle is kept as a tet face (checked per
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

import os
import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from tomocell.errors import InputError, TomocellError
from tomocell.log import get_logger
from tomocell.meshing import tags
from tomocell.meshing.remesh import remesh_surface
from tomocell.meshing.separator import layer_thicknesses
from tomocell.meshing.surface import SEPARATOR_LABEL, Surface, fix_checkerboard_edges, surface_of_volume
from tomocell.meshing.tagging import NonConformalMeshError, face_keys, face_table, tag_facets
from tomocell.meshing.tetmesh import TetMesh
from tomocell.microstructure.volume import Volume

log = get_logger("meshing.gmsh")


#: a region whose tets are worse than this after gmsh's own optimiser gets a second, wider one
RETRY_OPTIMIZE_SICN = 0.05


class MeshingError(TomocellError):
    """gmsh failed or produced a mesh that does not pass the checks."""


#: gmsh problem formulations of the surface route (see :func:`surface_mesh`)
FORMULATIONS = ("regions", "embedded", "tetgen")  # tetgen: optional, see meshing/tetgen_volume.py
#: the embedded formulation is tried as a fallback only up to this many surface triangles: gmsh's
#: volume step with embedded interfaces was measured at ~1,900 tets/s (a 100^3 volume, ~100 k
#: triangles, was stopped after 30 CPU-min); above it a failure goes to the caller (the voxel route)
EMBEDDED_FALLBACK_MAX_TRIANGLES = 50_000
#: surface label of each region's phase -> phase index used by :func:`_assign_phases` (3 = separator)
_REGION_PHASE = {0: 0, 1: 1, 2: 2, SEPARATOR_LABEL: 3}


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
                pts, tets, region_phase, gmsh_info = _gmsh_tets(
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


def _region_table(groups: dict) -> dict[tuple[int, int], list]:
    """(phase label, region id) -> keys of the patches bounding that region (see :func:`surface_mesh`)."""
    out: dict[tuple[int, int], list] = {}
    for k in groups:
        sides = ((k[1], k[3]), (k[2], k[4])) if k[0] == "iface" else ((k[2], k[3]),)
        for reg in sides:
            out.setdefault((int(reg[0]), int(reg[1])), []).append(k)
    if not {lab for lab, _ in out} <= set(_REGION_PHASE):
        raise MeshingError(f"unexpected region labels {sorted(out)} in the surface")
    return out


def _gmsh_tets(points: np.ndarray, groups: dict, *, formulation: str, h_interface_um: float, h_bulk_um: float,
               threads: int = 1, algorithm3d: int | None = None, gmsh_options: dict[str, float] | None = None):
    """Tetrahedra over the patch surface ``groups`` (nodes ``points``) by gmsh, in child processes.

    ``"regions"``: every region (face-connected component of one phase, bounded by its own patches)
    is meshed on its own, by HXT (``algorithm3d`` 10) or Delaunay (1), up to ``threads`` regions at
    a time in separate processes. gmsh keeps every surface triangle as a tet face (checked per
    region), so the regions' meshes share their interface nodes and faces: the union is conformal.
    A region whose mesher fails or kills its process (HXT can: a glibc heap assertion after its
    boundary recovery split a surface edge) is redone with the other algorithm; the count is
    reported. ``"embedded"``: the former formulation, one box volume with every interface embedded,
    Delaunay (HXT cannot mesh embedded surfaces), one process.

    Returns (points, tets, phase index per tet or None, figures); surface node ``i`` keeps index ``i``.
    """
    import json
    import subprocess
    import sys
    import tempfile

    algo = int(algorithm3d if algorithm3d is not None else (10 if formulation == "regions" else 1))
    if formulation == "embedded" and algo == 10:
        raise MeshingError("HXT (Algorithm3D 10) cannot mesh embedded surfaces; use the regions formulation")
    t0 = time.perf_counter()
    keys = list(groups)
    kidx = {k: i for i, k in enumerate(keys)}
    params = {"h_interface_um": h_interface_um, "h_bulk_um": h_bulk_um, "gmsh_options": gmsh_options or {}}
    if formulation == "regions":
        table = _region_table(groups)
        regions = sorted(table)
        jobs = [{"region": list(r), "patches": [kidx[k] for k in table[r]]} for r in regions]
        size = np.array([sum(len(groups[k]) for k in table[r]) for r in regions], dtype=np.int64)
        n_proc = max(1, min(int(threads), len(jobs)))
        per_proc_threads = max(1, int(threads) // n_proc)
    else:
        jobs = [{"region": None, "patches": list(range(len(keys)))}]
        size = np.array([1])
        n_proc, per_proc_threads = 1, int(threads)
    algos = [algo] + ([1 if algo != 1 else 10] if formulation == "regions" else [])
    tries = np.zeros(len(jobs), dtype=np.int64)  # index into algos
    done: dict[int, dict] = {}
    failures: list[str] = []
    cpu_children = 0.0
    peak_child = 0.0
    with tempfile.TemporaryDirectory(prefix="tomocell-gmsh-") as td:
        np.savez(os.path.join(td, "in.npz"), points=np.asarray(points, dtype=np.float64),
                 tris=np.concatenate([groups[k] for k in keys]).astype(np.int64),
                 counts=np.array([len(groups[k]) for k in keys], dtype=np.int64))
        with open(os.path.join(td, "keys.json"), "w") as fh:
            json.dump([list(k) for k in keys], fh)
        keep = os.environ.get("TOMOCELL_GMSH_KEEP")  # debugging: keep the gmsh input of the last call
        if keep:
            import shutil

            os.makedirs(keep, exist_ok=True)
            for name in ("in.npz", "keys.json"):
                shutil.copy(os.path.join(td, name), os.path.join(keep, name))
        for round_ in range(len(jobs) * len(algos) + 2):
            pending = [j for j in range(len(jobs)) if j not in done]
            if not pending:
                break
            # largest first, dealt round-robin to the processes (one big region dominates anyway)
            pending.sort(key=lambda j: -size[j])
            lists = [pending[w::n_proc] for w in range(n_proc)]
            procs = []
            for w, lst in enumerate(lists):
                if not lst:
                    continue
                spec = {"formulation": formulation, "params": params, "threads": per_proc_threads,
                        "jobs": [dict(jobs[j], job=j, algo=algos[tries[j]]) for j in lst], "worker": w}
                path = os.path.join(td, f"spec{round_}_{w}.json")
                with open(path, "w") as fh:
                    json.dump(spec, fh)
                procs.append((w, lst, subprocess.Popen([sys.executable, "-m", "tomocell.meshing.gmsh_volume", td, path],
                                                       stderr=subprocess.PIPE, text=True)))
            for w, lst, pr in procs:
                _, err = pr.communicate()
                for j in lst:
                    res = os.path.join(td, f"job{j}.npz")
                    if os.path.exists(res) and j not in done:
                        with np.load(res) as z:
                            done[j] = {k: z[k] for k in z.files}
                        cpu_children += float(done[j]["cpu_s"])
                        peak_child = max(peak_child, float(done[j]["peak_rss_mb"]))
                cur = os.path.join(td, f"current{w}.txt")
                crashed = None
                if pr.returncode != 0 and os.path.exists(cur):
                    crashed = int(open(cur).read().strip())
                for j in lst:
                    errf = os.path.join(td, f"job{j}.err")
                    why = None
                    if os.path.exists(errf):
                        why = open(errf).read().strip()
                        os.remove(errf)
                    elif j == crashed and j not in done:
                        tail = " | ".join(ln for ln in err.strip().splitlines()[-2:] if ln.strip())
                        why = f"gmsh process died (exit code {pr.returncode}): {tail}"
                    if why is None:
                        continue
                    failures.append(f"region {jobs[j]['region']} Algorithm3D {algos[tries[j]]}: {why}")
                    tries[j] += 1
                    if tries[j] >= len(algos):
                        raise MeshingError(f"gmsh failed ({formulation}): " + "; ".join(failures[-3:]))
                if pr.returncode != 0 and crashed is None:
                    raise MeshingError(f"gmsh process died before meshing (exit code {pr.returncode}): {err.strip()[-300:]}")
        else:
            raise MeshingError(f"gmsh ({formulation}) did not finish: " + "; ".join(failures[-3:]))
    # assemble: surface nodes keep their index, each job's new nodes are appended
    n_s = len(points)
    all_pts = [np.asarray(points, dtype=np.float64)]
    tets_l, phase_l = [], []
    nxt = n_s
    for j in range(len(jobs)):
        r = done[j]
        lut_new = np.arange(nxt, nxt + len(r["new_points"]))
        nxt += len(r["new_points"])
        all_pts.append(r["new_points"])
        t = r["tets"]  # >= 0: surface node index; < 0: -(new node local index) - 1
        tets_l.append(np.where(t >= 0, t, lut_new[np.maximum(-t - 1, 0)] if len(lut_new) else t))
        if jobs[j]["region"] is not None:
            phase_l.append(np.full(len(t), _REGION_PHASE[jobs[j]["region"][0]], dtype=np.int64))
    pts = np.concatenate(all_pts)
    tets = np.concatenate(tets_l)
    region_phase = np.concatenate(phase_l) if phase_l else None
    if np.any(tets < 0):
        raise MeshingError("gmsh returned tets with unknown nodes")
    used = np.zeros(len(pts), dtype=bool)
    used[tets.ravel()] = True
    if not used[:n_s].all():
        raise MeshingError(f"{int(np.count_nonzero(~used[:n_s]))} surface nodes are in no tet ({formulation})")
    used_algos = [algos[tries[j]] for j in range(len(jobs))]
    info = {"algorithm3d": algo, "processes": n_proc, "threads_per_process": per_proc_threads,
            "regions": len(jobs) if formulation == "regions" else 0, "tets": int(len(tets)),
            "regions_redone": len(failures), "redo_reasons": failures[:10],
            "regions_by_algorithm": {str(a): used_algos.count(a) for a in sorted(set(used_algos))},
            "time_s": time.perf_counter() - t0, "children_cpu_s": cpu_children, "children_peak_rss_mb": peak_child,
            "gmsh_3d_wall_s": float(sum(float(done[j]["gmsh_wall_s"]) for j in done)),
            "tets_per_s": float(len(tets) / max(time.perf_counter() - t0, 1e-9))}
    if failures:
        log.warning("gmsh: %d region(s) redone with the other algorithm (%s)", len(failures), failures[0])
    log.info("gmsh %s (Algorithm3D %d, %d process(es) x %d thread(s)): %d regions, %d tets in %.1f s "
             "(%.0f tets/s, children %.1f CPU s)", formulation, algo, n_proc, per_proc_threads, len(jobs), len(tets),
             info["time_s"], info["tets_per_s"], cpu_children)
    return pts, tets, region_phase, info


def _worker(workdir: str, spec_path: str) -> int:
    """Child side of :func:`_gmsh_tets`: mesh each job of the spec, one result file per job.

    Before each job its number is written to ``current<worker>.txt`` so that the parent knows which
    job was running if gmsh kills the process."""
    import json
    import resource

    import gmsh

    with open(spec_path) as fh:
        spec = json.load(fh)
    with open(os.path.join(workdir, "keys.json")) as fh:
        keys = [tuple(k) for k in json.load(fh)]
    with np.load(os.path.join(workdir, "in.npz")) as inp:
        points, tris, counts = inp["points"], inp["tris"], inp["counts"]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        for job in spec["jobs"]:
            j = job["job"]
            with open(os.path.join(workdir, f"current{spec['worker']}.txt"), "w") as fh:
                fh.write(str(j))
            groups = {keys[i]: tris[bounds[i]:bounds[i + 1]] for i in job["patches"]}
            # fault injection for the tests of the recovery paths: "abort:10,1" kills this process
            # (as HXT sometimes does) before meshing a job with one of those algorithms
            fault = os.environ.get("TOMOCELL_GMSH_FAULT", "")
            if fault.startswith("abort:") and str(job["algo"]) in fault[6:].split(","):
                os.abort()
            c0, ru0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            try:
                tets, new_pts = _gmsh_job(gmsh, points, groups, formulation=spec["formulation"], algo=job["algo"],
                                          threads=spec["threads"], **spec["params"])
            except MeshingError as exc:
                with open(os.path.join(workdir, f"job{j}.err"), "w") as fh:
                    fh.write(str(exc))
                continue
            ru = resource.getrusage(resource.RUSAGE_SELF)
            np.savez(os.path.join(workdir, f"job{j}.npz"), tets=tets, new_points=new_pts,
                     cpu_s=(ru.ru_utime + ru.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
                     peak_rss_mb=ru.ru_maxrss / 1024, gmsh_wall_s=time.perf_counter() - c0)
    finally:
        gmsh.finalize()
    return 0


def _gmsh_job(gmsh, points: np.ndarray, groups: dict, *, formulation: str, algo: int, threads: int,
              h_interface_um: float, h_bulk_um: float, gmsh_options: dict[str, float]):
    """One gmsh volume mesh (one region, or the whole box with embedded interfaces) in the current
    gmsh session. Surface nodes are given to gmsh with tag = global index + 1. Returns (tets with
    surface nodes as their global index and new nodes as -(local index) - 1, new node coordinates);
    raises :class:`MeshingError` if gmsh fails or any of the given triangles is not a tet face."""
    gmsh.clear()  # one model per job; options are set again below
    gmsh.option.setNumber("General.Terminal", int(os.environ.get("TOMOCELL_GMSH_VERBOSE", "0")))
    gmsh.option.setNumber("General.NumThreads", threads)
    gmsh.model.add("tomocell")
    allt = np.concatenate(list(groups.values()))
    used, loc = np.unique(allt, return_inverse=True)
    loc = loc.reshape(-1, 3)
    surf_tags: dict[tuple, int] = {}
    start = 0
    for i, (k, tri) in enumerate(groups.items(), start=1):
        gmsh.model.addDiscreteEntity(2, i)
        if i == 1:
            gmsh.model.mesh.addNodes(2, 1, np.arange(1, len(used) + 1, dtype=np.uint64), points[used].ravel())
        gmsh.model.mesh.addElementsByType(i, 2, [], (loc[start:start + len(tri)] + 1).astype(np.uint64).ravel())
        start += len(tri)
        surf_tags[k] = i
    iface_tags = [t for k, t in surf_tags.items() if k[0] == "iface"]
    if formulation == "regions":
        # a geo volume over the discrete patches (gmsh does not mesh discrete volumes)
        gmsh.model.geo.addVolume([gmsh.model.geo.addSurfaceLoop(list(surf_tags.values()))])
        gmsh.model.geo.synchronize()
    else:
        box_tags = [t for k, t in surf_tags.items() if k[0] == "box"]
        vt = gmsh.model.geo.addVolume([gmsh.model.geo.addSurfaceLoop(box_tags)])
        gmsh.model.geo.synchronize()
        if iface_tags:
            gmsh.model.mesh.embed(2, iface_tags, 3, vt)
    if iface_tags:
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
    gmsh.option.setNumber("Mesh.MeshSizeMax", h_bulk_um)
    gmsh.option.setNumber("Mesh.Algorithm3D", algo)
    gmsh.option.setNumber("Mesh.Optimize", 1)
    gmsh.option.setNumber("Mesh.OptimizeThreshold", 0.1)
    for name, val in (gmsh_options or {}).items():
        gmsh.option.setNumber(name, val)
    try:
        gmsh.model.mesh.generate(3)
        # a wider optimisation pass only where slivers are left: with threshold 0.3 on every region
        # the 200^3 phantom's gmsh stage took 67 instead of 15-20 s (its two slivers were then gone)
        etags, _ = gmsh.model.mesh.getElementsByType(4)
        if len(etags) and float(np.min(gmsh.model.mesh.getElementQualities(etags, "minSICN"))) < RETRY_OPTIMIZE_SICN:
            gmsh.option.setNumber("Mesh.OptimizeThreshold", 0.3)
            gmsh.model.mesh.optimize("", niter=2)
    except Exception as exc:
        raise MeshingError(f"gmsh volume meshing failed: {exc}") from exc
    ntags, coords, _ = gmsh.model.mesh.getNodes()
    _, enodes = gmsh.model.mesh.getElementsByType(4)
    if len(enodes) == 0:
        raise MeshingError("gmsh produced no tetrahedra")
    ntags = np.asarray(ntags, dtype=np.int64)
    coords = np.asarray(coords).reshape(-1, 3)
    # gmsh renumbers nodes after meshing but keeps the given ones first, in order: checked here
    is_new = ntags > len(used)
    if np.count_nonzero(~is_new) != len(used) or not np.array_equal(coords[~is_new][np.argsort(ntags[~is_new])],
                                                                      points[used]):
        raise MeshingError("gmsh moved or renumbered the surface nodes")
    lut = np.zeros(ntags.max() + 1, dtype=np.int64)
    lut[ntags[~is_new]] = used[ntags[~is_new] - 1]
    lut[ntags[is_new]] = -np.arange(1, np.count_nonzero(is_new) + 1)
    tet_nodes = np.asarray(enodes, dtype=np.int64).reshape(-1, 4)
    # gmsh occasionally emits the same tet twice (seen after its optimiser); drop exact copies
    _, ui = np.unique(np.sort(tet_nodes, axis=1), axis=0, return_index=True)
    tets = lut[tet_nodes[np.sort(ui)]]
    # every given triangle must be a face of the tets (no Steiner point on the surface)
    key_t = np.sort(np.where(tets >= 0, tets, len(points) - tets), axis=1)
    faces = np.sort(key_t[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3), axis=1)
    st = np.sort(allt, axis=1)
    fv = np.ascontiguousarray(faces).view(np.dtype((np.void, 24))).ravel()
    sv = np.ascontiguousarray(st).view(np.dtype((np.void, 24))).ravel()
    lost = ~np.isin(sv, fv)
    if np.any(lost):
        err = MeshingError(f"{int(np.count_nonzero(lost))} of {len(st)} surface triangles are not tet faces "
                           "(Steiner points on the surface)")
        err.missing_triangles = allt[lost]  # type: ignore[attr-defined]
        raise err
    return tets, coords[is_new]


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


if __name__ == "__main__":
    import sys

    sys.exit(_worker(sys.argv[1], sys.argv[2]))
