#!/usr/bin/env python
"""Benchmark of the smoothed voxel route (meshing/smoothed.py); figures printed, no asserts.

    .venv/bin/python scripts/bench_smoothed.py --phantoms                 # areas vs the analytic truth
    .venv/bin/python scripts/bench_smoothed.py electrode.tif --coarsen 1 2  # a volume (tomocell generate)

Phantoms (1 um voxels, centres off the grid): spheres of radius 5 / 8 / 12 voxels, z-cylinders of radius
5 / 8 / 12 (lateral area; the cylinder runs through the box, its ends are box faces) and the CBD-shell
phantoms of scripts/bench_mmg_levelset.py. For each: the area of the voxel staircase, of binary and
sigma-0.7 marching cubes and of the smoothed mesh against the truth. For a volume: CPU seconds, tets,
phase volumes vs the (coarsened) voxels and vs the original voxels, interface areas vs binary and
smoothed marching cubes, min SICN and tets below 0.05, pore tau on the mesh (P1 FE) vs characterise.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tomocell  # noqa: F401  (HDF5 / PETSc order)
from tomocell.meshing.fidelity import fidelity_report, marching_cubes_areas
from tomocell.meshing.smoothed import smoothed_mesh
from tomocell.microstructure.volume import ACTIVE, PORE, Volume


def sphere_or_cylinder(r: float, cylinder: bool) -> tuple[Volume, dict[str, float]]:
    n = int(2 * r + 6)
    z, y, x = np.mgrid[:n, :n, :n] + 0.5
    c = n / 2 + 0.17
    rho2 = (x - c - 0.11) ** 2 + (y - c + 0.07) ** 2 + (0 if cylinder else (z - c) ** 2)
    lab = np.where(rho2 < r * r, ACTIVE, PORE).astype(np.uint8)
    area = 2 * np.pi * r * n if cylinder else 4 * np.pi * r * r
    return Volume(lab, 1.0), {"active|pore": area, "active|cbd": 0.0, "cbd|pore": 0.0}


def phantom_rows() -> None:
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location("bml", pathlib.Path(__file__).with_name("bench_mmg_levelset.py"))
    bml = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bml)  # shell_phantom only (mmgpy is imported lazily there? see below)
    cases = [(f"sphere r{r}", *sphere_or_cylinder(r, False)) for r in (5, 8, 12)]
    cases += [(f"cylinder r{r}", *sphere_or_cylinder(r, True)) for r in (5, 8, 12)]
    cases += [(f"shell r{r} t{t}{' half' if h else ''}", *bml.shell_phantom(r, t, h))
              for r, t, h in ((8, 2, False), (8, 2, True), (12, 3, True))]
    print("| phantom | interface | voxel staircase | binary MC | MC sigma 0.7 | smoothed mesh | min SICN |")
    print("|---|---|---|---|---|---|---|")
    for name, vol, truth in cases:
        mb, ms = marching_cubes_areas(vol), marching_cubes_areas(vol, 0.7)
        stair = smoothed_mesh(vol, separator_um=0.0, iterations=0)
        m = smoothed_mesh(vol, separator_um=0.0)
        rs, rm = fidelity_report(stair, vol, mc_reference=mb), fidelity_report(m, vol, mc_reference=mb)
        for k, a in truth.items():
            if a > 0:
                f = lambda v: f"{100 * (v / a - 1):+.1f} %"  # noqa: E731
                print(f"| {name} | {k} | {f(rs['interface_areas'][k]['mesh_um2'])} | {f(mb[k])} | {f(ms[k])} | "
                      f"{f(rm['interface_areas'][k]['mesh_um2'])} | {rm['quality_sicn']['min']:.3f} |")


def volume_rows(path: str, coarsens: list[int]) -> None:
    from tomocell.meshing.pipeline import _coarse_reference_volume
    from tomocell.meshing.coarsen import block_mode
    from tomocell.meshing.transport import transport_comparison
    from tomocell.microstructure.io import read_volume

    vol = read_volume(path)
    mb = marching_cubes_areas(vol)
    for c in coarsens:
        t0 = time.process_time()
        m = smoothed_mesh(vol, coarsen=c)
        cpu = time.process_time() - t0
        ref = vol if c == 1 else _coarse_reference_volume(vol, block_mode(vol.labels, c), c)
        rep = fidelity_report(m, vol, mc_reference=mb)
        rc = fidelity_report(m, ref, mc_reference=mb)
        tr = transport_comparison(m, vol)
        print(f"{path} coarsen {c}: {cpu:.1f} CPU-s, {rep['tets']} tets, min SICN {rep['quality_sicn']['min']:.3f}, "
              f"{rep['slivers']} below 0.05, conformal {rep['conformity'].get('ok')}")
        print("  volumes vs (coarse) voxels: " + ", ".join(f"{k} {100 * v['rel_error']:+.2f} %" for k, v in rc["phase_volumes"].items()))
        print("  volumes vs original voxels: " + ", ".join(f"{k} {100 * v['rel_error']:+.2f} %" for k, v in rep["phase_volumes"].items()))
        print("  areas vs binary MC: " + ", ".join(f"{k} {100 * v['rel_error']:+.1f} %" for k, v in rep["interface_areas"].items()))
        print("  areas vs MC sigma 0.7: " + ", ".join(f"{k} {100 * v['rel_error_vs_smoothed']:+.1f} %"
                                                   for k, v in rep["interface_areas"].items() if v["rel_error_vs_smoothed"] is not None))
        print(f"  transport: {tr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volume", nargs="?")
    ap.add_argument("--coarsen", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--phantoms", action="store_true")
    a = ap.parse_args()
    if a.phantoms:
        phantom_rows()
    elif a.volume:
        volume_rows(a.volume, a.coarsen)
    else:
        ap.error("give a volume or --phantoms")


if __name__ == "__main__":
    main()
