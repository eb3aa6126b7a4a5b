#!/usr/bin/env python
"""Mmg multi-material level-set discretisation of a labelled volume, with tomocell's fidelity report
(figures printed, no asserts; needs ``pip install mmgpy``, LGPL, which tomocell does not install).

    .venv/bin/python scripts/bench_mmg_levelset.py electrode.tif --sigma 0 --hausd 0.5 --hmax 1.0 --separator 5

Background mesh: the exact voxel mesh (tomocell.meshing.voxel, with its separator slab), on a grid
``--refine`` times finer than the voxels. Pass 1
discretises pore | solid (level 0.5 of the pore indicator, trilinear at the nodes, optionally
Gaussian-smoothed by ``--sigma`` voxels) inside the electrode, the separator unsplit; pass 2
discretises active | CBD (sign of indicator_active - indicator_CBD) inside the solid only, pore and
separator unsplit, so the triple lines stay shared. Mmg remeshes after each pass with ``--hmax``
(um), ``--hmin`` and ``--hausd`` (fractions of the voxel). Facet tags come from the cell tags
(tomocell.meshing.tagging), then the report of tomocell.meshing.fidelity and the mesh's own pore
transport against `characterise` (tomocell.meshing.transport).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tomocell  # noqa: F401  (HDF5 / PETSc order)
from tomocell.meshing import tags
from tomocell.meshing.fidelity import fidelity_report
from tomocell.meshing.tagging import tag_facets
from tomocell.meshing.tetmesh import TetMesh
from tomocell.meshing.transport import transport_comparison
from tomocell.meshing.voxel import voxel_mesh
from tomocell.microstructure.io import read_volume
from tomocell.microstructure.volume import ACTIVE, CBD, PORE

SOLID = 50  # temporary reference of active + CBD between the two passes


def _pass(points, tets, refs, ls, materials, opts):
    import mmgpy

    m = mmgpy.MmgMesh3D()
    m.set_mesh_size(vertices=len(points), tetrahedra=len(tets))
    m.set_vertices(points)
    m.set_tetrahedra(tets.astype(np.int32), refs.astype(np.int32))
    m.set_multi_materials([{"ref": r, "split": int(s), "ref_minus": a, "ref_plus": b} for r, s, a, b in materials])
    m.remesh_levelset(ls.reshape(-1, 1), verbose=-1, **opts)
    t, r = m.get_tetrahedra_with_refs()
    return m.get_vertices(), np.asarray(t, np.int64), np.asarray(r, np.int32)


def main() -> None:
    from scipy.ndimage import gaussian_filter, map_coordinates

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volume")
    ap.add_argument("--sigma", type=float, default=0.0, help="Gaussian smoothing of the indicators, voxels")
    ap.add_argument("--hmax", type=float, default=1.0, help="largest edge, um")
    ap.add_argument("--hmin", type=float, default=0.3, help="smallest edge, voxels")
    ap.add_argument("--hausd", type=float, default=0.5, help="Hausdorff distance, voxels")
    ap.add_argument("--separator", type=float, default=5.0, help="separator slab, um")
    ap.add_argument("--refine", type=int, default=1,
                    help="background voxel mesh on an N-times finer grid (2: nodes also at voxel centres)")
    a = ap.parse_args()
    vol = read_volume(a.volume)
    d = vol.voxel_size_um
    t0 = time.perf_counter()
    fine = vol
    if a.refine > 1:
        from tomocell.microstructure.volume import Volume

        lab = vol.labels
        for ax in range(3):
            lab = np.repeat(lab, a.refine, axis=ax)
        fine = Volume(lab, tuple(v / a.refine for v in d))
    bg = voxel_mesh(fine, separator_um=a.separator)
    L = bg.electrode_thickness_um

    def indicator(code, pts):  # mesh z grows from the collector; volume axis 0 from the separator
        f = (vol.labels == code).astype(np.float64)
        if a.sigma > 0:
            f = gaussian_filter(f, a.sigma, mode="nearest")
        c = np.stack([(L - pts[:, 2]) / d[0] - 0.5, pts[:, 1] / d[1] - 0.5, pts[:, 0] / d[2] - 0.5])
        return map_coordinates(f, c, order=1, mode="nearest")

    opts = {"hmax": a.hmax, "hmin": a.hmin * d[0], "hausd": a.hausd * d[0]}
    sep = tags.SEPARATOR
    refs = np.where(bg.cell_tags == sep, sep, 1)
    ls1 = 0.5 - indicator(PORE, bg.points)
    ls1[bg.points[:, 2] > L + 1e-9] = 1.0
    p1, t1, r1 = _pass(bg.points, bg.tets, refs, ls1, [(sep, 0, 0, 0), (1, 1, tags.PORE, SOLID)], opts)
    t_pass1 = time.perf_counter() - t0
    ls2 = indicator(ACTIVE, p1) - indicator(CBD, p1)
    p2, t2, r2 = _pass(p1, t1, r1, ls2, [(sep, 0, 0, 0), (tags.PORE, 0, 0, 0), (SOLID, 1, tags.CBD, tags.ACTIVE)], opts)
    wall = time.perf_counter() - t0
    facets, ftags, _ = tag_facets(p2, t2, r2, bg.box_um)
    mesh = TetMesh(p2, t2, r2, facets, ftags, None, bg.box_um, L, {"route": "mmg-levelset", **opts})
    rep = fidelity_report(mesh, vol)
    tp = transport_comparison(mesh, vol)["pore"]
    q = rep["quality_sicn"]
    print(f"mmg level-set: {wall:.1f} s (pass 1 {t_pass1:.1f} s), {rep['tets']} tets, SICN min {q['min']:.2e} "
          f"p01 {q['p01']:.3f}, slivers {rep['slivers']}, conformal {rep['conformity'].get('ok')}")
    print("  phase volumes: " + ", ".join(f"{k} {100 * v['rel_error']:+.2f} %" for k, v in rep["phase_volumes"].items()))
    print("  interface areas vs marching cubes: " + ", ".join(f"{k} {100 * v['rel_error']:+.1f} %"
                                                             for k, v in rep["interface_areas"].items()))
    if tp["mesh"] and tp["voxels"]:
        print(f"  pore D_eff/D0: mesh {tp['mesh']['D_eff_over_D0']:.4f}, voxels {tp['voxels']['D_eff_over_D0']:.4f} "
              f"({100 * tp['D_eff_rel_change']:+.0f} %)")


if __name__ == "__main__":
    main()
