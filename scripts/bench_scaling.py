#!/usr/bin/env python
"""Strong and weak MPI scaling of the half-cell physics: wall and CPU seconds, peak memory per rank,
Newton / Krylov / Jacobian counts and the parallel efficiency against the 1-rank run.

Usage::

    # strong scaling on this machine: runs mpirun -n 1, then -n 2 itself (serial parent), same mesh
    .venv/bin/python scripts/bench_scaling.py --ranks 1,2 --steps 4 --workdir /tmp/scal
    # on a cluster: one run per rank count, results appended to one file (efficiency printed from the
    # 1-rank entry of the same mesh and mode)
    for n in 1 2 4 8 16; do mpirun -n $n .venv/bin/python scripts/bench_scaling.py --workdir $SCRATCH/scal \
        --results $SCRATCH/scal/strong.jsonl; done
    for n in 1 2 4 8 16; do mpirun -n $n .venv/bin/python scripts/bench_scaling.py --weak --workdir $SCRATCH/scal \
        --results $SCRATCH/scal/weak.jsonl; done

Meshes: ``--mesh FILE.xdmf`` (any `tomocell mesh` output), or by default the demo preset electrode
(30 x 20 x 20 um at 0.5 um voxels, 25 um separator) meshed by the voxel route at ``--demo-coarsen``
(default 1: native resolution, 758 k tets). ``--weak`` meshes the demo volume tiled N times across
(mirrored copies along axis 1, so the structure stays continuous) on N ranks: N times the tets, the
same tets per rank (default block 2: 96 k tets per rank). Meshes are written once into ``--workdir``
(rank 0) and reused.

Each run times ``--steps`` steps of a 1C-type discharge (0.2 %, 1 %, then 2 % DoD: the step sizes the
adaptive discharge settles at; default 4, about 2-4 min on 2 idle cores at 758 k tets), or with
``--steps 0`` a full discharge. Efficiency: strong T1 / (N TN), weak T1 / TN, from the time loop's wall
seconds (CPU seconds printed beside them). ``--partitioner`` picks the graph partitioner of the mesh
distribution among those this DOLFINx build offers (default, scotch, kahip, parmetis; tomocell.meshing.meshfile.read_mesh);
the default ``xdmf`` is DOLFINx's XDMF reader with its built-in default (the first one it was built with).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomocell.fem  # noqa: F401
import dolfinx  # noqa: F401  (PETSc initialises collectively on import: never first on one rank only)
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).parent))
from bench_physics import bench  # noqa: E402

from tomocell.meshing.meshfile import available_partitioners  # noqa: E402
from tomocell.mpi import PARTITIONERS  # noqa: E402


def tiled_demo(copies: int, coarsen: int, path: Path) -> None:
    """The demo electrode tiled ``copies`` times along axis 1 (mirrored), voxel route, written to path (serial)."""
    import numpy as np

    from tomocell.meshing.pipeline import mesh_volume, write_outputs
    from tomocell.microstructure.synthetic import generate_electrode

    vol = generate_electrode(preset="demo", seed=0)
    if copies > 1:
        tiles = [vol.labels if k % 2 == 0 else vol.labels[:, ::-1, :] for k in range(copies)]
        vol.labels = np.ascontiguousarray(np.concatenate(tiles, axis=1))
        vol.metadata = {**vol.metadata, "tiled_axis1": copies}
    res = mesh_volume(vol, route="voxel", coarsen=coarsen, separator_um=25.0)
    write_outputs(res, path.parent, write_msh=False, comm=MPI.COMM_SELF)


def mesh_path(args: argparse.Namespace, comm: MPI.Comm) -> Path:
    if args.mesh:
        return Path(args.mesh)
    wd = Path(comm.bcast(str(Path(args.workdir or tempfile.mkdtemp(prefix="tomocell-scal-")).resolve()), root=0))
    copies = comm.size if args.weak else 1
    coarsen = args.demo_coarsen if args.demo_coarsen else (2 if args.weak else 1)
    path = wd / f"demo_c{coarsen}_x{copies}" / "mesh.xdmf"
    if comm.rank == 0 and not path.is_file():
        t0 = time.perf_counter()
        tiled_demo(copies, coarsen, path)
        print(f"# meshed {path} in {time.perf_counter() - t0:.1f} s", flush=True)
    comm.barrier()
    return path


def efficiency(r: dict, results: Path) -> float | None:
    """Parallel efficiency of r against the 1-rank entry of the same mode (and mesh, strong) in results."""
    if not results.is_file():
        return None
    one = [e for e in map(json.loads, results.read_text().splitlines())
           if e["ranks"] == 1 and e["mode"] == r["mode"] and (r["mode"] == "weak" or e["mesh"] == r["mesh"])
           and e["steps"] == r["steps"]]
    if not one:
        return None
    t1 = one[-1]["solve_wall_s"]
    return t1 / (r["ranks"] * r["solve_wall_s"]) if r["mode"] == "strong" else t1 / r["solve_wall_s"]


def run(args: argparse.Namespace) -> dict:
    """One measurement on COMM_WORLD (all ranks); the result on rank 0."""
    from tomocell.physics.cli import load_mesh

    comm = MPI.COMM_WORLD
    path = mesh_path(args, comm)
    cpu0 = time.process_time()
    make = lambda: load_mesh(str(path), comm, args.partitioner)  # noqa: E731
    r = bench(make, str(path), args)
    r.pop("curve", None)
    r["mode"] = "weak" if args.weak else "strong"
    r["mesh"] = str(path)
    offered = ",".join(available_partitioners())
    r["partitioner"] = f"{args.partitioner}; offered {offered}"
    r["cpu_s_max_rank"] = comm.allreduce(time.process_time() - cpu0, op=MPI.MAX)
    r["tets_per_rank"] = r["tets"] / comm.size
    r["load_avg_1min"] = os.getloadavg()[0]
    return r


def report(r: dict, results: Path | None) -> None:
    e = efficiency(r, results) if results else None
    if results:
        with open(results, "a") as fh:
            fh.write(json.dumps(r) + "\n")
    print(f"{r['mode']} ranks={r['ranks']} tets={r['tets']} dofs={r['dofs']} steps={r['steps']} "
          f"newton={r['newton_per_step'] * r['steps']:.0f} krylov/newton={r['krylov_per_newton']:.1f} "
          f"jacobians={r['jacobians']} wall_s={r['solve_wall_s']:.2f} cpu_s_all_ranks={r['solve_cpu_s_all_ranks']:.2f} "
          f"peak_rss_MB_max_rank={r['peak_rss_MB_max_rank']:.0f} V_end={r.get('voltage_V', r.get('final_V', float('nan'))):.9f} load={r['load_avg_1min']:.2f} "
          f"efficiency={'n/a (no 1-rank entry)' if e is None else f'{e:.3f}'} partitioner={r['partitioner']}",
          flush=True)


def driver(args: argparse.Namespace, argv: list[str]) -> None:
    """--ranks 1,2,...: start mpirun -n k for each k (serial parent), same mesh files, one results file."""
    ranks = [int(v) for v in args.ranks.split(",")]
    wd = Path(args.workdir or tempfile.mkdtemp(prefix="tomocell-scal-")).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    results = Path(args.results or wd / f"{'weak' if args.weak else 'strong'}.jsonl")
    rest, skip = [], False
    for a in argv:  # the child's arguments: ours without --ranks/--workdir/--results
        if skip:
            skip = False
            continue
        if a in ("--ranks", "--workdir", "--results"):
            skip = True
            continue
        if not a.startswith(("--ranks=", "--workdir=", "--results=")):
            rest.append(a)
    mpirun = Path(sys.executable).parent / "mpirun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ranks:
        cmd = [str(mpirun), "-n", str(k), sys.executable, __file__, *rest, "--workdir", str(wd), "--results",
               str(results)]
        print(f"# {' '.join(cmd)}", flush=True)
        if subprocess.run(cmd, env=env).returncode != 0:
            raise SystemExit(f"the {k}-rank run failed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", default=None, help="XDMF mesh from `tomocell mesh` (strong scaling only)")
    ap.add_argument("--demo-coarsen", type=int, default=0,
                    help="voxel block of the demo mesh (default 1 strong = 758 k tets, 2 weak = 96 k tets/rank)")
    ap.add_argument("--weak", action="store_true", help="weak scaling: the demo volume tiled N times on N ranks")
    ap.add_argument("--steps", type=int, default=4, help="time N steps (0: a full discharge)")
    ap.add_argument("--c-rate", type=float, default=1.0)
    ap.add_argument("--solver", choices=("auto", "direct", "iterative"), default="iterative")
    ap.add_argument("--params", default="nmc111")
    ap.add_argument("--lu-lag", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--full-newton", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--partitioner", default="default", choices=PARTITIONERS,
                    help="graph partitioner of the mesh distribution (default: DOLFINx's, SCOTCH in its pip build)")
    ap.add_argument("--workdir", default=None, help="where generated meshes (and by default results) go")
    ap.add_argument("--results", default=None, help="JSON-lines file the run is appended to (efficiency from it)")
    ap.add_argument("--ranks", default=None, help="serial parent: run mpirun -n K for each K of this list")
    args = ap.parse_args()
    if args.mesh and args.weak:
        raise SystemExit("--weak builds its own meshes (the demo volume tiled N times); drop --mesh")
    if args.mesh and not Path(args.mesh).is_file():
        print(f"error: mesh {args.mesh} not found", file=sys.stderr)
        raise SystemExit(2)
    if args.partitioner not in available_partitioners():
        print(f"error: partitioner {args.partitioner} is not in this DOLFINx build (available: "
              f"{', '.join(available_partitioners())})", file=sys.stderr)
        raise SystemExit(2)
    comm = MPI.COMM_WORLD
    if args.ranks:
        if comm.size > 1:
            raise SystemExit("--ranks starts mpirun itself: run it without mpirun")
        driver(args, sys.argv[1:])
        return
    from petsc4py import PETSc

    PETSc.Log.begin()  # Jacobian event counts
    r = run(args)
    if comm.rank == 0:
        report(r, Path(args.results) if args.results else None)


if __name__ == "__main__":
    main()
