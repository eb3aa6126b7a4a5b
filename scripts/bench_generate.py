#!/usr/bin/env python
"""Benchmark of the synthetic electrode generator (and the volume steps that follow it).

Prints wall time and peak memory (resource.getrusage) for the paper's box (50 x 43 x 43 um at 0.126 um,
~46 M voxels; target <= 2 min and <= 6 GB) and for the demo preset. Timings on a shared machine are noisy.

    .venv/bin/python scripts/bench_generate.py                 # paper box + demo
    .venv/bin/python scripts/bench_generate.py --preset demo   # one preset only
    .venv/bin/python scripts/bench_generate.py --with-ct       # also forward CT + segmentation of the demo
"""

from __future__ import annotations

import argparse
import resource
import time


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", choices=("paper", "small", "demo"), default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--with-ct", action="store_true")
    args = ap.parse_args()

    from tomocell.log import setup_logging
    from tomocell.microstructure.synthetic import generate_electrode

    setup_logging(-1)
    for preset in args.preset or ["paper", "demo"]:
        t0 = time.perf_counter()
        v = generate_electrode(preset=preset, seed=args.seed)
        dt = time.perf_counter() - t0
        g = v.metadata["generator"]
        a = g["achieved"]
        print(f"{preset:6s} shape {v.shape} = {v.labels.size / 1e6:.1f} M voxels: {dt:6.1f} s "
              f"(packing {g['time_s']['packing']:.1f} s), peak RSS so far {peak_gb():.2f} GB; "
              f"pore {a['pore']:.4f} active {a['active']:.4f} cbd {a['cbd']:.4f}; {a['n_particles']} particles, "
              f"D50 {a['d50_um']:.2f} um, D90 {a['d90_um']:.2f} um; packing {g['packing']}")
        if args.with_ct:
            from tomocell.microstructure.ctmodel import forward_ct
            from tomocell.microstructure.segmentation import segment_greyscale
            from tomocell.microstructure.superimpose import superimpose_dss
            from tomocell.microstructure.synthetic import generate_cbd_scan

            t0 = time.perf_counter()
            grey = forward_ct(v, seed=args.seed)
            t1 = time.perf_counter()
            seg, _ = segment_greyscale(grey, v.voxel_size_um)
            acc = float((seg.labels == v.labels).mean())
            del grey
            print(f"{preset:6s} forward CT {t1 - t0:.1f} s, multi-Otsu segmentation + sensitivity "
                  f"{time.perf_counter() - t1:.1f} s, voxel accuracy {acc:.4f}; peak RSS so far {peak_gb():.2f} GB")
            cbd = generate_cbd_scan((200, 200, 200), v.voxel_size_um[0] / 2, porosity=0.45, seed=args.seed)
            t0 = time.perf_counter()
            _, rep = superimpose_dss(v, cbd, seed=args.seed)
            print(f"{preset:6s} DSS with a 200^3 CBD scan at half the voxel size: {time.perf_counter() - t0:.1f} s, "
                  f"CBD porosity {rep['cbd_porosity_after']:.4f} (scan {rep['cbd_scan_porosity']:.4f}); "
                  f"peak RSS so far {peak_gb():.2f} GB")


if __name__ == "__main__":
    main()
