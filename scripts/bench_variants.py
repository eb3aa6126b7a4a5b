#!/usr/bin/env python
"""Benchmark of the structure variants (issue 8) on a synthetic electrode.

    .venv/bin/python scripts/bench_variants.py [--box 50 20 20] [--voxel 0.25] [--seed 1]

Prints wall time and peak resident memory (resource.getrusage) per variant, plus the key numbers
of each report. No asserts: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--box", type=float, nargs=3, default=(50.0, 20.0, 20.0), help="box (um), axis 0 first")
    ap.add_argument("--voxel", type=float, default=0.25, help="voxel size (um)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from tomocell.log import setup_logging
    from tomocell.microstructure.synthetic import generate_electrode
    from tomocell.microstructure.variants_calendering import calender
    from tomocell.microstructure.variants_graded_particle import graded_particle
    from tomocell.microstructure.variants_graded_porosity import graded_porosity
    from tomocell.microstructure.variants_thick import thick_electrode
    from tomocell.microstructure.volume import ACTIVE

    setup_logging(-1)
    t = time.perf_counter()
    vol, ids = generate_electrode(box_um=tuple(args.box), voxel_size_um=args.voxel, seed=args.seed,
                                  return_particle_ids=True)
    ids = np.where(vol.labels == ACTIVE, ids, 0)
    print(f"volume {vol.shape} = {vol.labels.size / 1e6:.1f} Mvoxel at {args.voxel} um, generated in "
          f"{time.perf_counter() - t:.1f} s; fractions {vol.fractions()}")
    lonely = (vol.labels == ACTIVE) & (ids == 0)
    ids[lonely] = ids.max() + 1 + np.arange(int(lonely.sum()))

    def run(name, fn, keys):
        t0 = time.perf_counter()
        _, rep = fn()
        dt = time.perf_counter() - t0
        print(f"{name:28s} {dt:7.2f} s  peak RSS {peak_mb():7.0f} MB  " + ", ".join(f"{k}={rep[k]}" for k in keys))

    run("graded porosity R1", lambda: graded_porosity(vol, "R1"),
        ("band_index", "cbd_voxels_to_pore", "band_porosity_before", "band_porosity_after"))
    run("graded porosity global", lambda: graded_porosity(vol, "global"), ("porosity_before", "porosity_after"))
    run("graded particle 12 um", lambda: graded_particle(vol, labels=ids),
        ("band_active_relative_error", "small_particles_placed", "placement_failures"))
    run("thick 75 um (mirror)", lambda: thick_electrode(vol, 75.0), ("thickness_um", "fractions_output"))
    for s in (0.07, 0.15, 0.225):
        run(f"calender {s:.3f}", lambda s=s: calender(vol, s, labels=ids),
            ("strain", "porosity", "particles_deformed", "cbd_crushed_fraction"))


if __name__ == "__main__":
    main()
