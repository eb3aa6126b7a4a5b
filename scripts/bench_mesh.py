#!/usr/bin/env python
"""Benchmark of the meshing routes on synthetic three-phase volumes (figures printed, no asserts).

    .venv/bin/python scripts/bench_mesh.py --sizes 100 200 --voxel 0.1 --h-interface 0.3 --h-bulk 1.0

Prints per size: route used, wall time, peak RSS, tets, nodes, min/1st-percentile SICN, slivers,
phase-volume and interface-area errors, and the growth exponent of time and tets between sizes
with a projection to the paper's 340 x 340 x 400 voxels. The machine is shared: timings are noisy.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np

from tomocell.meshing.phantoms import sphere_pack_volume
from tomocell.meshing.pipeline import mesh_volume


def electrode(n: int, voxel_um: float, seed: int = 0):
    """n^3 synthetic three-phase electrode: tomocell.microstructure.synthetic.generate_electrode
    (box n * voxel, D50 scaled to the box so it fits) or, if that fails, spheres with a CBD shell."""
    try:
        from tomocell.microstructure.synthetic import generate_electrode

        box = n * voxel_um
        d50 = min(5.0, 0.45 * box)
        vol, part = generate_electrode(box_um=(box, box, box), voxel_size_um=voxel_um, d50_um=d50,
                                       d90_um=1.8 * d50, d_min_um=0.4 * d50, d_max_um=2.5 * d50, seed=seed,
                                       return_particle_ids=True)
        return vol, part
    except Exception as exc:  # noqa: BLE001 - the bench must run on any checkout
        print(f"  (generate_electrode unavailable: {exc}; using meshing.phantoms)")
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
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        vol, part = electrode(n, args.voxel)
        t0 = time.perf_counter()
        res = mesh_volume(vol, route=args.route, h_interface_um=args.h_interface, h_bulk_um=args.h_bulk,
                          separator_um=args.separator, coarsen=args.coarsen, particle_labels=part,
                          area_tol=None, min_sicn=0.0)  # report the surface route's figures, do not fall back
        dt = time.perf_counter() - t0
        r = res.report
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append((n, dt, r["tets"]))
        print(f"n={n}^3 voxel={args.voxel} um fractions={ {k: round(v, 3) for k, v in vol.fractions().items()} }")
        print(f"  route={res.mesh.info.get('route')} fallback={res.mesh.info.get('fallback')}")
        print(f"  time={dt:.1f} s  peak_rss={rss:.0f} MB  tets={r['tets']}  nodes={r['nodes']}")
        q = r["quality_sicn"]
        print(f"  SICN min={q['min']:.4f} p01={q['p01']:.3f} median={q['median']:.3f} slivers(<{r['sliver_threshold_sicn']})={r['slivers']}")
        print("  phase volume error: " + ", ".join(f"{k} {100 * v['rel_error']:+.2f} %" for k, v in r["phase_volumes"].items()))
        print("  interface area vs marching cubes: " + ", ".join(f"{k} {100 * v['rel_error']:+.1f} %" for k, v in r["interface_areas"].items()))
        print(f"  info: { {k: v for k, v in res.mesh.info.items() if k.startswith('time') or k in ('surface_triangles', 'surface_coarsening', 'sliver_removal')} }", flush=True)
    if len(rows) >= 2:
        (n0, t0_, m0), (n1, t1, m1) = rows[0], rows[-1]
        et = math.log(t1 / t0_) / math.log(n1 / n0)
        em = math.log(m1 / m0) / math.log(n1 / n0)
        scale = (340 * 340 * 400) ** (1 / 3) / n1
        print(f"growth {n0}^3 -> {n1}^3: time ~ n^{et:.2f}, tets ~ n^{em:.2f}")
        print(f"projection to 340x340x400 voxels: ~{t1 * scale**et:.0f} s, ~{m1 * scale**em / 1e6:.2f} M tets")


if __name__ == "__main__":
    main()
