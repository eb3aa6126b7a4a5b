#!/usr/bin/env python
"""Benchmark of `tomocell characterise` on the shared 256^3 GAN volume (or a crop / a synthetic one).

Prints wall times (tortuosity in one and three directions, local thickness, particles, travel
distance, full characterisation with all files) and peak resident memory (ru_maxrss). No asserts:
the machine is shared, figures are for people. Run as

    .venv/bin/python scripts/bench_characterise.py [--crop N] [--volume PATH] [--skip-full]
    mpirun -n 2 .venv/bin/python scripts/bench_characterise.py --only-tau   # tau solve split over 2 ranks
    .venv/bin/python scripts/bench_characterise.py --compare /tmp/ref/bin/python [--crop 128] [--only-lt]

``--compare PY``: tomocell, TauFactor and PoreSpy side by side on the same volume (pore tortuosity
along axis 0, pore local thickness), each in its own process so that each peak memory is its own.
PY is the interpreter of a throwaway venv holding them (never a tomocell dependency), e.g.
``python3.11 -m venv /tmp/ref && /tmp/ref/bin/pip install taufactor porespy tifffile`` (torch:
the CPU wheel).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GAN = REPO.parent / "shared" / "data" / "nmc_gan_3phase_256.tif"


def cpu_s() -> float:
    """CPU seconds of this process (user + system, all threads): less noisy than wall time on a busy machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volume", type=Path, default=GAN)
    ap.add_argument("--labels", default="0=pore,85=active,170=cbd")
    ap.add_argument("--voxel-size", default="0.390625")
    ap.add_argument("--crop", type=int, default=None, help="use the first N^3 voxels")
    ap.add_argument("--only-tau", action="store_true", help="only the tortuosity solves")
    ap.add_argument("--skip-full", action="store_true", help="skip the full characterisation")
    ap.add_argument("--only-full", action="store_true", help="only the full characterisation")
    ap.add_argument("--scaling", action="store_true",
                    help="tau along axis 0 on growing cubic crops: growth exponents of time and memory, projection to 500^3")
    ap.add_argument("--compare", metavar="PY", default=None,
                    help="python of a venv with taufactor and porespy: side-by-side comparison")
    ap.add_argument("--only-lt", action="store_true", help="--compare: only local thickness (tomocell and PoreSpy)")
    ap.add_argument("--with-gamg", action="store_true", help="--compare: also tomocell's assembled CG + GAMG (3.7 GB)")
    ap.add_argument("--tf-conv", type=float, default=1e-3, help="TauFactor convergence criterion (default 1e-3)")
    args = ap.parse_args()
    if args.compare:
        from bench_compare import compare

        return compare(args)

    from tomocell import mpi
    from tomocell.config import parse_labels, parse_voxel_size
    from tomocell.log import setup_logging
    from tomocell.microstructure.characterise import characterise
    from tomocell.microstructure.io import read_volume
    from tomocell.microstructure.tortuosity import tortuosity_factor

    setup_logging(-1)
    root = mpi.rank() == 0

    def say(msg: str) -> None:
        if root:
            print(msg, flush=True)

    if not args.volume.is_file():
        say(f"volume {args.volume} is absent (../shared/data not beside this checkout): nothing to do")
        return 0
    vol = read_volume(args.volume, voxel_size_um=parse_voxel_size(args.voxel_size), labels=parse_labels(args.labels))
    if args.crop:
        n = args.crop
        vol = vol.subvolume((slice(0, n), slice(0, n), slice(0, n)))
    say(f"volume {vol.shape} ({vol.labels.size / 1e6:.1f} M voxels), voxel {vol.voxel_size_um[0]} um, "
        f"fractions {({k: round(v, 3) for k, v in vol.fractions().items()})}; MPI ranks {mpi.size()}")
    say(f"peak RSS after reading: {peak_mb():.0f} MB; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.scaling:
        scaling(vol, say)
        return 0
    t_all = 0.0
    for ax in () if args.only_full else (0, 1, 2):
        t0, c0 = time.perf_counter(), cpu_s()
        r = tortuosity_factor(vol, "pore", ax)
        dt = time.perf_counter() - t0
        t_all += dt
        say(f"tau_pore axis {ax}: {r.tau:.4f} (eps {r.eps:.3f}, {r.n_unknowns / 1e6:.2f} M unknowns, {r.iterations} CG its, "
            f"flux balance {r.flux_balance_error:.1e}) in {dt:.1f} s wall, {cpu_s() - c0:.1f} s CPU; peak RSS {peak_mb():.0f} MB")
    if not args.only_full:
        say(f"tau_pore, three directions: {t_all:.1f} s")
    if args.only_tau:
        return 0
    if not args.only_full and mpi.size() == 1:
        parts(vol, say)
    if not args.skip_full:
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), cpu_s()
            res = characterise(vol, Path(tmp) / "char")
            say(f"full characterisation (3 directions, depth profile, RVE, all files): {time.perf_counter() - t0:.1f} s wall, "
                f"{cpu_s() - c0:.1f} s CPU; peak RSS {peak_mb():.0f} MB")
            say("step timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res.metrics["timings_s"].items()))
    say(f"load average now {os.getloadavg()[0]:.1f}: wall times on a shared machine are noisy (CPU times less so)")
    return 0


def scaling(vol, say) -> None:
    """tau (axis 0) on crops of 96^3 .. the whole volume; fits time ~ N^a and memory ~ N^b in the
    number of unknowns N and projects a 500^3 volume of the same porosity."""
    import numpy as np

    from tomocell import mpi
    from tomocell.microstructure.tortuosity import tortuosity_factor

    n_max = min(vol.shape)
    rows = []
    for n in sorted({96, 128, 192, n_max} & set(range(1, n_max + 1))):
        sub = vol.subvolume((slice(0, n), slice(0, n), slice(0, n)))
        base = peak_mb()
        t0, c0 = time.perf_counter(), cpu_s()
        r = tortuosity_factor(sub, "pore", 0)
        rows.append((r.n_unknowns, cpu_s() - c0, time.perf_counter() - t0, peak_mb()))
        say(f"crop {n}^3: {r.n_unknowns / 1e6:.2f} M unknowns, {r.iterations} CG its, {rows[-1][1]:.1f} s CPU per rank, "
            f"{rows[-1][2]:.1f} s wall, peak RSS {rows[-1][3]:.0f} MB (was {base:.0f} MB before)")
    N = np.array([r[0] for r in rows], float)
    T = np.array([r[1] for r in rows], float)
    a = float(np.polyfit(np.log(N), np.log(T), 1)[0])
    eps = float(vol.fractions()["pore"])
    n500 = eps * 500**3
    t500 = T[-1] * (n500 / N[-1]) ** a
    mem500 = 450.0 * n500 / mpi.size()  # GAMG peak, bytes per unknown (measured, see tortuosity.py)
    say(f"CPU time per rank grows as N^{a:.2f} (N = unknowns, {mpi.size()} rank(s)); a 500^3 volume at porosity {eps:.2f} "
        f"({n500 / 1e6:.0f} M unknowns) projects to ~{t500:.0f} s per direction per rank and ~{mem500 / 1e9:.0f} GB per rank "
        f"for GAMG; with less memory tomocell switches to incomplete Cholesky, or run on more ranks")


def parts(vol, say) -> None:
    from tomocell.microstructure import particles, poresize, travel

    t0 = time.perf_counter()
    lt = poresize.local_thickness(vol)
    say(f"local thickness: {time.perf_counter() - t0:.1f} s; peak RSS {peak_mb():.0f} MB")
    del lt
    t0 = time.perf_counter()
    lab = particles.label_particles(vol)
    tab = particles.particle_table(vol, lab)
    say(f"particles: {len(tab['label'])} in {time.perf_counter() - t0:.1f} s; peak RSS {peak_mb():.0f} MB")
    del lab, tab
    t0 = time.perf_counter()
    f = travel.travel_fields(vol)
    sites = travel.reaction_site_tortuosity(vol, f)
    say(f"travel distance + {sites['depth_um'].size} reaction sites: {time.perf_counter() - t0:.1f} s; peak RSS {peak_mb():.0f} MB")
    del f, sites


if __name__ == "__main__":
    sys.exit(main())
