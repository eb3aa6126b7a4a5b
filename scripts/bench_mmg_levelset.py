#!/usr/bin/env python
"""Level-set route (tomocell.meshing.levelset: Mmg multi-material discretisation of a smoothed,
volume-matched label field) on a volume or on analytic CBD-shell phantoms, with tomocell's fidelity
report (figures printed, no asserts; needs ``pip install mmgpy``, LGPL).

    .venv/bin/python scripts/bench_mmg_levelset.py electrode.tif --hausd 0.2 --separator 5
    .venv/bin/python scripts/bench_mmg_levelset.py --phantoms      # areas against the analytic truth

The phantoms are one sphere (radius r voxels) with a CBD shell (thickness t voxels), whole or on the
upper half only, in pore: their interface areas are known exactly, so they show how far the mesh and
the two marching-cubes references of tomocell.meshing.fidelity (binary mask; Gaussian sigma 0.7 at
level 0.5) are from the truth on one- and two-voxel CBD films.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tomocell  # noqa: F401  (HDF5 / PETSc order)
from tomocell.meshing.fidelity import fidelity_report, marching_cubes_areas
from tomocell.meshing.levelset import levelset_mesh
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


def shell_phantom(r: float, t: float, half: bool) -> tuple[Volume, dict[str, float]]:
    """Sphere of radius r with a CBD shell of thickness t (voxels; 1 um voxels) and its exact areas."""
    n = int(2 * (r + t) + 6)
    z, y, x = np.mgrid[:n, :n, :n] + 0.5
    c = n / 2 + 0.17  # off the voxel grid
    rho = np.sqrt((x - c - 0.11) ** 2 + (y - c + 0.07) ** 2 + (z - c) ** 2)
    lab = np.full((n, n, n), PORE, np.uint8)
    lab[(rho < r + t) & ((z > c) if half else True)] = CBD
    lab[rho < r] = ACTIVE
    if half:
        truth = {"active|pore": 2 * np.pi * r * r, "active|cbd": 2 * np.pi * r * r,
                 "cbd|pore": 2 * np.pi * (r + t) ** 2 + np.pi * ((r + t) ** 2 - r * r)}
    else:
        truth = {"active|pore": 0.0, "active|cbd": 4 * np.pi * r * r, "cbd|pore": 4 * np.pi * (r + t) ** 2}
    return Volume(lab, 1.0), truth


def report(vol: Volume, a, truth: dict[str, float] | None = None) -> None:
    t0 = time.perf_counter()
    mesh = levelset_mesh(vol, separator_um=a.separator, sigma_vox=a.sigma, h_max_um=a.hmax,
                         h_min_vox=a.hmin, hausd_vox=a.hausd, hgrad=a.hgrad, improve=not a.no_improve,
                         mmg_options={"ar": a.ar} if a.ar is not None else None)
    wall = time.perf_counter() - t0
    rep = fidelity_report(mesh, vol)
    q = rep["quality_sicn"]
    print(f"level-set: {wall:.1f} s (split {mesh.info['time_split_s']:.1f} s), {rep['tets']} tets, SICN min "
          f"{q['min']:.2e} p01 {q['p01']:.3f}, slivers {rep['slivers']}, conformal {rep['conformity'].get('ok')}")
    print("  phase volumes: " + ", ".join(f"{k} {100 * v['rel_error']:+.2f} %" for k, v in rep["phase_volumes"].items()))
    print("  areas vs binary marching cubes: " + ", ".join(f"{k} {100 * v['rel_error']:+.1f} %"
                                                          for k, v in rep["interface_areas"].items()))
    if truth:
        mcb, mcs = marching_cubes_areas(vol), marching_cubes_areas(vol, 0.7)
        for k, v in rep["interface_areas"].items():
            if truth[k] > 0:
                print(f"  {k}: truth {truth[k]:.1f} um2; mesh {100 * (v['mesh_um2'] / truth[k] - 1):+.1f} %, binary MC "
                      f"{100 * (mcb[k] / truth[k] - 1):+.1f} %, smoothed MC {100 * (mcs[k] / truth[k] - 1):+.1f} %")


def main() -> None:
    from tomocell.microstructure.io import read_volume

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volume", nargs="?")
    ap.add_argument("--phantoms", action="store_true", help="run the analytic CBD-shell phantoms instead")
    ap.add_argument("--sigma", type=float, default=0.7, help="Gaussian smoothing of the indicators, voxels")
    ap.add_argument("--hmax", type=float, default=None, help="largest edge, um (default 4 voxels)")
    ap.add_argument("--hmin", type=float, default=0.3, help="smallest edge, voxels")
    ap.add_argument("--hausd", type=float, default=0.2, help="Hausdorff distance, voxels")
    ap.add_argument("--hgrad", type=float, default=1.4, help="size gradation")
    ap.add_argument("--separator", type=float, default=5.0, help="separator slab, um")
    ap.add_argument("--ar", type=float, default=None,
                    help="Mmg ridge-detection angle, degrees (Mmg's default 45; 85 keeps the box edges as ridges "
                         "but lets the interfaces' kinks be smoothed; 0 = no ridges, which moves nodes off the box)")
    ap.add_argument("--no-improve", action="store_true", help="skip the local sliver pass after Mmg")
    a = ap.parse_args()
    if a.phantoms:
        a.separator = 0.0
        for r, t, half in [(6, 1, False), (6, 1, True), (8, 1.5, True), (5, 2, True)]:
            print(f"phantom: sphere r {r}, CBD shell {t} voxels, {'upper half' if half else 'whole'}")
            vol, truth = shell_phantom(r, t, half)
            report(vol, a, truth)
    elif a.volume:
        report(read_volume(a.volume), a)
    else:
        ap.error("give a volume or --phantoms")


if __name__ == "__main__":
    main()
