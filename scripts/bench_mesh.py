#!/usr/bin/env python
"""Benchmark of the meshing routes on synthetic three-phase volumes (figures printed, no asserts).

    .venv/bin/python scripts/bench_mesh.py --sizes 100 200 --voxel 0.1 --h-interface 0.3 --h-bulk 1.0

Prints per size: route used, wall and CPU time (this process, gmsh threads included), the load
average while it ran, peak RSS, tets, nodes, min/1st-percentile SICN, slivers, phase-volume and
interface-area errors, and the growth exponent of time and tets between sizes with a projection to
the paper's 340 x 340 x 400 voxels. The machine is shared: timings are noisy, CPU seconds less so.

The volume is the same sphere-pack phantom at every size (particles 3-7 um, a 1.5-voxel CBD shell:
the hardest case for slivers, thin CBD layers everywhere), so the growth exponent compares like
with like; ``--generator`` uses tomocell.microstructure.synthetic.generate_electrode instead
(it cannot pack a 10 um box at its default fractions).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time

import numpy as np

from tomocell.meshing.phantoms import sphere_pack_volume
from tomocell.meshing.pipeline import mesh_volume


def electrode(n: int, voxel_um: float, seed: int = 0, generator: bool = False):
    """n^3 synthetic three-phase electrode: spheres with a CBD shell, or (``generator``)
    tomocell.microstructure.synthetic.generate_electrode (box n * voxel, D50 scaled to the box)."""
    if generator:
        from tomocell.microstructure.synthetic import generate_electrode

        box = n * voxel_um
        d50 = min(5.0, 0.45 * box)
        return generate_electrode(box_um=(box, box, box), voxel_size_um=voxel_um, d50_um=d50, d90_um=1.8 * d50,
                                  d_min_um=0.4 * d50, d_max_um=2.5 * d50, seed=seed, return_particle_ids=True)
    r0, r1 = 1.5 / voxel_um, 3.5 / voxel_um
    ns = max(3, int(0.9 * n**3 / (4 / 3 * math.pi * ((r0 + r1) / 2) ** 3)))
    return sphere_pack_volume((n, n, n), voxel_um, n_spheres=ns, radius_vox=(r0, r1), cbd_shell_vox=1.5, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--voxel", type=float, default=0.1)
    ap.add_argument("--h-interface", type=float, default=0.3)
    ap.add_argument("--h-bulk", type=float, default=1.0)
    ap.add_argument("--separator", type=float, default=5.0)
    ap.add_argument("--route", default="surface")
    ap.add_argument("--coarsen", type=int, default=1)
    ap.add_argument("--generator", action="store_true", help="generate_electrode instead of the phantom")
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        vol, part = electrode(n, args.voxel, generator=args.generator)
        t0 = time.perf_counter()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        res = mesh_volume(vol, route=args.route, h_interface_um=args.h_interface, h_bulk_um=args.h_bulk,
                          separator_um=args.separator, coarsen=args.coarsen, particle_labels=part,
                          area_tol=None, min_sicn=0.0)  # report the surface route's figures, do not fall back
        dt = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        load = os.getloadavg()
        r = res.report
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append((n, dt, r["tets"], cpu))
        print(f"n={n}^3 voxel={args.voxel} um fractions={ {k: round(v, 3) for k, v in vol.fractions().items()} }")
        print(f"  route={res.mesh.info.get('route')} fallback={res.mesh.info.get('fallback')}")
        print(f"  wall={dt:.1f} s  cpu={cpu:.1f} s  load(1,5,15 min)={load[0]:.1f},{load[1]:.1f},{load[2]:.1f} "
              f"on {os.cpu_count()} cores  peak_rss={rss:.0f} MB  tets={r['tets']}  nodes={r['nodes']}")
        q = r["quality_sicn"]
        print(f"  SICN min={q['min']:.4f} p01={q['p01']:.3f} median={q['median']:.3f} slivers(<{r['sliver_threshold_sicn']})={r['slivers']}")
        print("  phase volume error: " + ", ".join(f"{k} {100 * v['rel_error']:+.2f} %" for k, v in r["phase_volumes"].items()))
        print("  interface area vs marching cubes: " + ", ".join(f"{k} {100 * v['rel_error']:+.1f} %" for k, v in r["interface_areas"].items()))
        print(f"  info: { {k: v for k, v in res.mesh.info.items() if k.startswith('time') or k in ('surface_triangles', 'surface_coarsening', 'surface_quality', 'sliver_removal')} }", flush=True)
    if len(rows) >= 2:
        (n0, t0_, m0, c0), (n1, t1, m1, c1) = rows[0], rows[-1]
        g = math.log(n1 / n0)
        et, ec, em = math.log(t1 / t0_) / g, math.log(c1 / c0) / g, math.log(m1 / m0) / g
        scale = (340 * 340 * 400) ** (1 / 3) / n1
        print(f"growth {n0}^3 -> {n1}^3: wall ~ n^{et:.2f}, cpu ~ n^{ec:.2f}, tets ~ n^{em:.2f}")
        print(f"projection to 340x340x400 voxels: ~{t1 * scale**et:.0f} s wall, ~{c1 * scale**ec:.0f} s cpu, "
              f"~{m1 * scale**em / 1e6:.2f} M tets")


if __name__ == "__main__":
    main()
