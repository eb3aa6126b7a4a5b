#!/usr/bin/env python
"""Benchmark of the meshing routes on synthetic three-phase volumes (figures printed, no asserts).

    .venv/bin/python scripts/bench_mesh.py --sizes 100 200 --voxel 0.1 --threads 2

Prints per size: route and gmsh formulation used, wall and CPU time per stage (surface build,
coarsening, surface quality pass, gmsh volume meshing, phase assignment and facet tags, sliver pass,
fidelity report), tets, nodes, tets per second of the gmsh stage and of the whole route, min /
1st-percentile / median SICN and slivers (SICN < 0.05), phase-volume and interface-area errors, the
load average while it ran and peak memory (this process and the gmsh child processes), and the
growth exponents of time and tets between the smallest and largest sizes with a projection to the
paper's 340 x 340 x 400 voxels. The machine is shared: timings are noisy, CPU seconds less so.

The volume is the same sphere-pack phantom at every size (particles 3-7 um, a 1.5-voxel CBD shell:
the hardest case for slivers, thin CBD layers everywhere), so the growth exponent compares like
with like; ``--generator`` uses tomocell.microstructure.synthetic.generate_electrode instead
(it cannot pack a 10 um box at its default fractions); ``--gan-path`` meshes N^3 crops of a labelled
TIFF such as the shared GAN volume (``--gan-voxel`` its voxel size), e.g.

    .venv/bin/python scripts/bench_mesh.py --gan-path ../shared/data/nmc_gan_3phase_256.tif --sizes 128 256 \
        --h-interface 0.8 --h-bulk 2.0
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


def electrode(n: int, voxel_um: float, seed: int = 0, generator: bool = False,
              shape: tuple[int, int, int] | None = None):
    """n^3 synthetic three-phase electrode: spheres with a CBD shell, or (``generator``)
    tomocell.microstructure.synthetic.generate_electrode (box n * voxel, D50 scaled to the box).
    ``shape`` (phantom only): another box in voxels, (thickness, y, x)."""
    if generator:
        from tomocell.microstructure.synthetic import generate_electrode

        box = n * voxel_um
        d50 = min(5.0, 0.45 * box)
        return generate_electrode(box_um=(box, box, box), voxel_size_um=voxel_um, d50_um=d50, d90_um=1.8 * d50,
                                  d_min_um=0.4 * d50, d_max_um=2.5 * d50, seed=seed, return_particle_ids=True)
    shape = shape or (n, n, n)
    r0, r1 = 1.5 / voxel_um, 3.5 / voxel_um
    ns = max(3, int(0.9 * math.prod(shape) / (4 / 3 * math.pi * ((r0 + r1) / 2) ** 3)))
    return sphere_pack_volume(shape, voxel_um, n_spheres=ns, radius_vox=(r0, r1), cbd_shell_vox=1.5, seed=seed)


def gan_crop(path: str, n: int, voxel_um: float):
    """N^3 crop of a labelled TIFF stored as the shared GAN volume is (0 pore, 85 active, 170 CBD)."""
    import tifffile

    from tomocell.microstructure.volume import Volume

    arr = tifffile.imread(path)
    s = tuple(slice(0, min(n, m)) for m in arr.shape)
    return Volume.from_stored_labels(np.ascontiguousarray(arr[s]), voxel_um, {0: "pore", 85: "active", 170: "cbd"}), None


def _cpu(ru) -> float:
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--voxel", type=float, default=0.1)
    ap.add_argument("--h-interface", type=float, default=0.3)
    ap.add_argument("--h-bulk", type=float, default=1.0)
    ap.add_argument("--separator", type=float, default=5.0)
    ap.add_argument("--route", default="surface")
    ap.add_argument("--coarsen", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="gmsh processes at once (default 2)")
    ap.add_argument("--formulation", default="regions", help="gmsh formulation: regions (default) or embedded")
    ap.add_argument("--algorithm", type=int, default=None, help="gmsh Algorithm3D (default: 10 = HXT for regions)")
    ap.add_argument("--generator", action="store_true", help="generate_electrode instead of the phantom")
    ap.add_argument("--paper-size", action="store_true",
                    help="also mesh the phantom at the paper's 400 x 340 x 340 voxels (about 10 min, 12 GB)")
    ap.add_argument("--gan-path", default=None, help="labelled volume to crop instead of a phantom (N^3 crops)")
    ap.add_argument("--gan-voxel", type=float, default=0.390625, help="its voxel size, um (the shared GAN volume's)")
    args = ap.parse_args()
    rows = []
    sizes: list = list(args.sizes) + (["paper"] if args.paper_size else [])
    for n in sizes:
        if args.gan_path:
            vol, part = gan_crop(args.gan_path, n, args.gan_voxel)
        else:
            vol, part = (electrode(0, args.voxel, shape=(400, 340, 340)) if n == "paper"
                         else electrode(n, args.voxel, generator=args.generator))
        label = "400x340x340 (the paper's size)" if n == "paper" else f"{n}^3"
        t0 = time.perf_counter()
        ru0, rc0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            # the surface route's own figures: no fallback (the voxel route at 200^3 would need ~25 GB)
            res = mesh_volume(vol, route=args.route, h_interface_um=args.h_interface, h_bulk_um=args.h_bulk,
                              separator_um=args.separator, coarsen=args.coarsen, particle_labels=part,
                              area_tol=None, min_sicn=0.0, threads=args.threads, gmsh_formulation=args.formulation,
                              gmsh_algorithm=args.algorithm, fallback=False)
        except Exception as exc:  # report and go on: a failure is a result too
            ru = resource.getrusage(resource.RUSAGE_SELF)
            print(f"n={label} FAILED after {time.perf_counter() - t0:.1f} s (peak_rss {ru.ru_maxrss / 1024:.0f} MB): "
                  f"{type(exc).__name__}: {exc}", flush=True)
            continue
        dt = time.perf_counter() - t0
        ru1, rc1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_self, cpu_child = _cpu(ru1) - _cpu(ru0), _cpu(rc1) - _cpu(rc0)
        cpu = cpu_self + cpu_child
        load = os.getloadavg()
        r = res.report
        info = res.mesh.info
        rss, rss_c = ru1.ru_maxrss / 1024, rc1.ru_maxrss / 1024
        if n != "paper":  # the growth fit uses the cubes only
            rows.append((n, dt, r["tets"], cpu))
        print(f"n={label} voxel={vol.voxel_size_um[0]} um fractions={ {k: round(v, 3) for k, v in vol.fractions().items()} }")
        g = info.get("gmsh", {})
        print(f"  route={info.get('route')} fallback={info.get('fallback')} formulation={g.get('formulation')} "
              f"algorithm3d={g.get('algorithm3d')} regions={g.get('regions')} by algorithm={g.get('regions_by_algorithm')} "
              f"redone={g.get('regions_redone')} processes={g.get('processes')} "
              f"formulation_fallback={g.get('formulation_fallback')}")
        print(f"  wall={dt:.1f} s  cpu={cpu:.1f} s (this process {cpu_self:.1f}, gmsh children {cpu_child:.1f})  "
              f"load(1,5,15 min)={load[0]:.1f},{load[1]:.1f},{load[2]:.1f} on {os.cpu_count()} cores  "
              f"peak_rss={rss:.0f} MB (largest gmsh child {rss_c:.0f} MB)")
        if info.get("route") == "surface":
            sc, sl = info.get("surface_remeshing", {}), info.get("sliver_removal", {})
            t_fid = dt - info["time_s"]
            print("  stages wall s: surface {:.1f} | surface remeshing {:.1f} | gmsh {:.1f} | "
                  "phases+tags {:.1f} | slivers {:.1f} | fidelity report {:.1f}".format(
                      info["time_surface_s"], sc.get("time_s", 0.0), info["time_gmsh_s"],
                      info.get("time_tags_s", 0.0), sl.get("time_s", 0.0), t_fid))
            print(f"  surface remeshing: {sc.get('collapses')} collapses, {sc.get('flips')} flips, {sc.get('moves')} "
                  f"moves, {sc.get('defect_rounds')} defect rounds, triangle quality min {sc.get('min_quality_in', 0):.3g} "
                  f"-> {sc.get('min_quality_out', 0):.3g}{', FALLBACK: ' + sc['fallback'] if 'fallback' in sc else ''}")
            print(f"  surface triangles={info.get('surface_triangles')} (before coarsening {sc.get('triangles_in')})  "
                  f"gmsh: {g.get('tets')} tets, {g.get('tets_per_s', 0):.0f} tets/s of its stage; "
                  f"route: {r['tets'] / max(info['time_s'], 1e-9):.0f} tets/s")
        print(f"  tets={r['tets']}  nodes={r['nodes']}")
        q = r["quality_sicn"]
        print(f"  SICN min={q['min']:.4f} p01={q['p01']:.3f} median={q['median']:.3f} "
              f"slivers(<{r['sliver_threshold_sicn']})={r['slivers']} ({100 * r['slivers'] / r['tets']:.3f} %)")
        print("  phase volume error: " + ", ".join(f"{k} {100 * v['rel_error']:+.2f} %" for k, v in r["phase_volumes"].items()))
        ia = r["interface_areas"]
        tot = sum(max(v["marching_cubes_um2"], 0.0) for v in ia.values())
        # as in the fidelity check: a pair whose reference is under 2 % of all interface area (here
        # active|pore, the particles being wrapped in CBD) has no meaningful relative error
        print("  interface area vs marching cubes: " + ", ".join(
            f"{k} {100 * v['rel_error']:+.1f} %" if v["marching_cubes_um2"] > 0.02 * tot else
            f"{k} {v['mesh_um2']:.1f} um2 vs {v['marching_cubes_um2']:.1f} um2 (under 2 % of all, not compared)"
            for k, v in ia.items()))
        if (tp := r.get("transport", {}).get("pore")):
            fmt = lambda t: "not percolating" if t is None else f"D_eff/D0 {t['D_eff_over_D0']:.4f} (tau {t['tau']:.2f})"
            print(f"  pore transport: mesh {fmt(tp['mesh'])}, voxels {fmt(tp['voxels'])}; "
                  f"changes beyond bounds: {r.get('warnings') or 'none'}")
        print(f"  conformity: {r['conformity']}", flush=True)
    if len(rows) >= 2:
        (n0, t0_, m0, c0), (n1, t1, m1, c1) = rows[0], rows[-1]
        g = math.log(n1 / n0)
        et, ec, em = math.log(t1 / t0_) / g, math.log(c1 / c0) / g, math.log(m1 / m0) / g
        scale = (340 * 340 * 400) ** (1 / 3) / n1
        print(f"growth {n0}^3 -> {n1}^3: wall x{t1 / t0_:.1f} (~ n^{et:.2f}), cpu x{c1 / c0:.1f} (~ n^{ec:.2f}), "
              f"tets x{m1 / m0:.1f} (~ n^{em:.2f})")
        print(f"projection to 340x340x400 voxels: ~{t1 * scale**et:.0f} s wall, ~{c1 * scale**ec:.0f} s cpu, "
              f"~{m1 * scale**em / 1e6:.2f} M tets")


if __name__ == "__main__":
    main()
