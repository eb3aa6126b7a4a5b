"""Level-set route: Mmg multi-material discretisation of a smoothed, volume-matched label field.

1. Each phase indicator is Gaussian-smoothed (``sigma_vox``, default 0.7 voxel: the smoothing under
   which marching cubes gives sphere areas within 0.3 %, see :mod:`tomocell.meshing.fidelity`).
2. Background: the dual grid (nodes at the voxel centres plus the box faces, so node values are the
   smoothed voxel values themselves), 6 Kuhn tets per cell, and the separator slab.
3. Two level sets, discretised by Mmg (``mmg3d -ls`` with multi-material references) without
   remeshing: pore | solid (``F_pore - t1``) in the electrode, then CBD | active
   (``F_cbd - F_active - t2``) inside the solid only. Each threshold is set by bisection so that the
   exact volume of the piecewise-linear level set equals the phase's voxel volume: the smoothing
   rounds the shapes but does not shrink thin CBD or fatten particles.
4. One Mmg remeshing pass of the multi-domain mesh (interfaces between references are kept as
   surfaces within ``hausd``; sizes from ``hmin`` to ``hmax`` graded by ``hgrad``), which removes
   the slivers of the split and sets the element count.
5. Points are snapped back onto the box planes, facet tags follow from the cell tags, and particle
   tags are taken from the voxel at each active tet's centroid; the local pass of
   :mod:`tomocell.meshing.improve` (as on the surface route) then works on the last flat tets.

Mmg (LGPL-3.0) comes from the ``mmgpy`` wheel.
"""

from __future__ import annotations

import time

import numpy as np

from tomocell.errors import InputError, TomocellError
from tomocell.log import get_logger
from tomocell.meshing import tags
from tomocell.meshing.separator import layer_thicknesses
from tomocell.meshing.tagging import tag_facets
from tomocell.meshing.tetmesh import TetMesh
from tomocell.meshing.voxel import rectilinear_tets
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume

log = get_logger("meshing.levelset")

SOLID = 50  # temporary Mmg reference of active + CBD between the two discretisations
ELECTRODE = 1  # temporary reference of the electrode before the first discretisation


class LevelSetMeshError(TomocellError):
    """Mmg failed on the level-set route."""


def negative_volume(points: np.ndarray, tets: np.ndarray, ls: np.ndarray) -> float:
    """Exact volume of {ls < 0} for the piecewise-linear ``ls`` on ``tets``.

    Uses the CDF of a linear function over a uniform tetrahedron, P(f <= 0) =
    sum_i (-v_i)_+^3 / prod_{j != i} (v_j - v_i), with the values nudged apart where two coincide.
    """
    p = points[tets]
    vol = np.abs(np.einsum("ij,ij->i", p[:, 1] - p[:, 0], np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))) / 6.0
    v = ls[tets].astype(np.float64)
    neg = v < 0
    nneg = neg.sum(axis=1)
    out = np.where(nneg == 4, vol, 0.0).sum()
    cut = (nneg > 0) & (nneg < 4)
    v, vol = v[cut], vol[cut]
    scale = np.abs(v).max(axis=1, keepdims=True) + 1e-300
    v = v / scale + np.array([0.0, 1.0, 2.0, 3.0]) * 1e-7  # keep values distinct
    frac = np.zeros(len(v))
    for i in range(4):
        den = np.ones(len(v))
        for j in range(4):
            if j != i:
                den *= v[:, j] - v[:, i]
        frac += np.where(v[:, i] < 0, (-v[:, i]) ** 3, 0.0) / den
    return float(out + (np.clip(frac, 0.0, 1.0) * vol).sum())


def _bisect(fn, target: float, lo: float, hi: float, rtol: float = 2e-4) -> float:
    """t in [lo, hi] with fn(t) = target, fn decreasing."""
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        f = fn(mid)
        if abs(f - target) <= rtol * max(target, 1e-300):
            return mid
        lo, hi = (mid, hi) if f > target else (lo, mid)
    return 0.5 * (lo + hi)


def _mmg(points, tets, refs, *, ls=None, materials=None, opts):
    try:
        import mmgpy
    except ImportError as exc:
        raise LevelSetMeshError("the level-set route needs Mmg: pip install mmgpy (LGPL-3.0)") from exc

    m = mmgpy.MmgMesh3D()
    m.set_mesh_size(vertices=len(points), tetrahedra=len(tets))
    m.set_vertices(np.ascontiguousarray(points, np.float64))
    m.set_tetrahedra(np.ascontiguousarray(tets, np.int32), np.ascontiguousarray(refs, np.int32))
    try:
        if ls is not None:
            m.set_multi_materials([{"ref": r, "split": int(s), "ref_minus": a, "ref_plus": b}
                                   for r, s, a, b in materials])
            m.remesh_levelset(np.ascontiguousarray(ls, np.float64).reshape(-1, 1), **opts)
        else:
            m.remesh(**opts)
    except Exception as exc:  # mmgpy raises RuntimeError on an Mmg failure
        raise LevelSetMeshError(f"Mmg failed: {exc}") from exc
    t, r = m.get_tetrahedra_with_refs()
    return np.asarray(m.get_vertices(), np.float64), np.asarray(t, np.int64), np.asarray(r, np.int32)


def _dual_axis(n: int, d: float) -> np.ndarray:
    return np.concatenate([[0.0], (np.arange(n) + 0.5) * d, [n * d]])


def _node_index(n: int) -> np.ndarray:
    return np.clip(np.arange(n + 2) - 1, 0, n - 1)


def levelset_mesh(
    volume: Volume,
    *,
    separator_um: float = 25.0,
    sigma_vox: float = 0.7,
    h_max_um: float | None = None,
    h_min_vox: float = 0.3,
    hausd_vox: float = 0.1,
    hgrad: float = 1.4,
    mmg_options: dict | None = None,
    improve: bool = True,
    particle_labels: np.ndarray | None = None,
    verbose: int = -1,
) -> TetMesh:
    """Conformal tagged tet mesh of ``volume`` by the level-set route (module docstring).

    ``h_max_um``: largest edge (default: 4 voxels); ``h_min_vox``, ``hausd_vox``: smallest edge and
    Hausdorff distance of the interfaces, in voxels; ``hgrad``: size gradation; ``mmg_options``: more
    keyword options of ``mmgpy.MmgMesh3D.remesh`` for the final pass.
    Raises :class:`InputError` for a volume thinner than 2 voxels, :class:`LevelSetMeshError` when
    Mmg fails or is not installed.
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    t0 = time.perf_counter()
    lab = volume.labels
    n0, n1, n2 = lab.shape
    d0, d1, d2 = volume.voxel_size_um
    dmin = min(d0, d1, d2)
    if min(lab.shape) < 2:
        raise InputError(f"volume {lab.shape} is too thin to mesh (at least 2 voxels along every axis)")
    L = n0 * d0
    fields = {}
    for code in (PORE, ACTIVE, CBD):
        f = (lab == code).astype(np.float32)
        fields[code] = gaussian_filter(f, sigma_vox, mode="nearest") if sigma_vox > 0 else f
    # node grid: z from the collector, volume axis 0 reversed
    xs, ys = _dual_axis(n2, d2), _dual_axis(n1, d1)
    zs_el = L - _dual_axis(n0, d0)[::-1]
    iz = _node_index(n0)[::-1]
    seps = layer_thicknesses(separator_um, first_um=d0, max_um=3.0 * max(d1, d2) * 2, growth=1.3)
    zs = np.concatenate([zs_el, L + np.cumsum(seps)])
    points, tets = rectilinear_tets(xs, ys, zs)
    n_el_cells = n0 + 1
    ncell_layer = (len(ys) - 1) * (len(xs) - 1)
    refs = np.repeat(np.where(np.arange(len(zs) - 1) < n_el_cells, ELECTRODE, tags.SEPARATOR), 6 * ncell_layer)
    grid = np.ix_(iz, _node_index(n1), _node_index(n2))
    n_el_nodes = len(zs_el) * len(ys) * len(xs)

    def nodal(code):
        v = np.full(len(points), 1.0)
        v[:n_el_nodes] = fields[code][grid].ravel()
        return v

    vv = volume.voxel_volume_um3
    counts = np.bincount(lab.ravel(), minlength=3)
    el = refs == ELECTRODE
    no_remesh = {"noinsert": 1, "noswap": 1, "nomove": 1, "verbose": verbose, "hausd": 10.0 * L}
    # pass 1: pore | solid
    fp = nodal(PORE)
    sep_nodes = points[:, 2] > L + 1e-9 * L
    target = counts[PORE] * vv
    t1 = _bisect(lambda t: negative_volume(points, tets[el], np.where(sep_nodes, 1.0, t - fp)),
                 target, 0.0, 1.0) if 0 < counts[PORE] < lab.size else 0.5
    ls1 = np.where(sep_nodes, 1.0, t1 - fp)
    mats1 = [(tags.SEPARATOR, 0, 0, 0), (ELECTRODE, 1, tags.PORE, SOLID)]
    p1, k1, r1 = _mmg(points, tets, refs, ls=ls1, materials=mats1, opts=no_remesh)
    t_split1 = time.perf_counter() - t0
    # pass 2: CBD | active in the solid, the level set interpolated at the split mesh's nodes
    sample = np.stack([(L - p1[:, 2]) / d0 - 0.5, p1[:, 1] / d1 - 0.5, p1[:, 0] / d2 - 0.5])
    g = map_coordinates(fields[CBD] - fields[ACTIVE], sample, order=1, mode="nearest")
    if counts[CBD] > 0:
        solid = r1 == SOLID
        t2 = _bisect(lambda t: negative_volume(p1, k1[solid], t - g), counts[CBD] * vv, -1.0, 1.0)
        mats2 = [(tags.SEPARATOR, 0, 0, 0), (tags.PORE, 0, 0, 0), (SOLID, 1, tags.CBD, tags.ACTIVE)]
        p2, k2, r2 = _mmg(p1, k1, r1, ls=t2 - g, materials=mats2, opts=no_remesh)
    else:
        t2 = None
        p2, k2, r2 = p1, k1, np.where(r1 == SOLID, tags.ACTIVE, r1).astype(np.int32)
    t_split = time.perf_counter() - t0
    hmax = h_max_um if h_max_um is not None else 4.0 * dmin
    opts = {"hmax": hmax, "hmin": h_min_vox * dmin, "hausd": hausd_vox * dmin, "hgrad": hgrad, "verbose": verbose,
            **(mmg_options or {})}
    p3, k3, r3 = _mmg(p2, k2, r2, opts=opts)
    box = (float(xs[-1]), float(ys[-1]), float(zs[-1]))
    p3 = _snap_to_box(p3, box, L, 1e-6 * dmin)
    facets, ftags, _ = tag_facets(p3, k3, r3, box, tol_um=1e-9 * max(box))
    ptags = _particle_tags(p3, k3, r3, particle_labels, volume)
    sliver_info: dict = {}
    if improve:  # the same local pass as the surface route, on Mmg's last flat tets
        from tomocell.meshing.improve import remove_slivers

        t_imp = time.perf_counter()
        p3, k3, r3, ptags, sliver_info = remove_slivers(p3, k3, r3, ptags, facets, box_um=box)
        used, inv = np.unique(k3, return_inverse=True)
        p3, k3 = p3[used], inv.reshape(-1, 4)
        facets, ftags, _ = tag_facets(p3, k3, r3, box, tol_um=1e-6 * max(box))
        sliver_info["time_s"] = time.perf_counter() - t_imp
    mesh = TetMesh(p3, k3, r3, facets, ftags, ptags, box, float(L), info={
        "route": "levelset", "separator_um": float(separator_um), "sigma_vox": sigma_vox,
        "thresholds": {"pore": float(t1), "cbd_minus_active": None if t2 is None else float(t2)},
        "mmg": {k: v for k, v in opts.items() if k != "verbose"}, "sliver_removal": sliver_info,
        "voxel_size_um": list(volume.voxel_size_um), "volume_shape": list(lab.shape),
        "time_split_s": t_split, "time_split_pore_s": t_split1, "time_s": time.perf_counter() - t0,
    })
    log.info("level-set route: %d tets, %d nodes in %.1f s (split %.1f s)", mesh.num_tets, mesh.num_nodes,
             mesh.info["time_s"], t_split)
    return mesh


def _snap_to_box(p: np.ndarray, box, L: float, tol: float) -> np.ndarray:
    p = p.copy()
    for ax in range(3):
        for val in (0.0, box[ax]) if ax < 2 else (0.0, L, box[2]):
            near = np.abs(p[:, ax] - val) < tol
            p[near, ax] = val
    return p


def _particle_tags(points, tets, cell_tags, particle_labels, volume: Volume) -> np.ndarray:
    out = np.zeros(len(tets), np.int32)
    if particle_labels is None:
        return out
    act = cell_tags == tags.ACTIVE
    c = points[tets[act]].mean(axis=1)
    d0, d1, d2 = volume.voxel_size_um
    n0, n1, n2 = volume.shape
    L = n0 * d0
    i0 = np.clip(((L - c[:, 2]) / d0).astype(np.int64), 0, n0 - 1)
    i1 = np.clip((c[:, 1] / d1).astype(np.int64), 0, n1 - 1)
    i2 = np.clip((c[:, 0] / d2).astype(np.int64), 0, n2 - 1)
    out[act] = np.asarray(particle_labels)[i0, i1, i2]
    return out
