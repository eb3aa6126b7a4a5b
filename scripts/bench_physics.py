#!/usr/bin/env python
"""Benchmark of the half-cell physics: DOFs, steps, Newton and Krylov iterations per step, s/step,
CPU seconds, machine load and memory per DOF, over mesh refinements.

Usage (serial or under MPI)::

    .venv/bin/python scripts/bench_physics.py                        # built-in box cells, 3 refinements
    .venv/bin/python scripts/bench_physics.py --demo-coarsen 4,2,1 --steps 4 --solver iterative
    .venv/bin/python scripts/bench_physics.py --mesh a.xdmf,b.xdmf --c-rate 1     # full discharges
    mpirun -n 2 .venv/bin/python scripts/bench_physics.py --demo-coarsen 1 --steps 4 --full-newton 250
    for n in 1 2 4 8; do mpirun -n $n .venv/bin/python scripts/bench_physics.py --weak --sizes 12 --steps 4 \
        --solver iterative; done                                       # weak scaling on a cluster node
    .venv/bin/python scripts/bench_physics.py --reference a23c53a --demo-coarsen 4 --solver iterative
    .venv/bin/python scripts/bench_physics.py --reference a23c53a --demo-coarsen 2 --ranks 2   # the demo mesh

``--reference COMMIT`` runs the code of COMMIT and the current code side by side, alternately, each in
a fresh interpreter (under ``mpirun -n RANKS``), on the same meshes (written by the reference code),
and prints the speed-up of the time loop (wall and CPU seconds), the relative difference of the
delivered capacity and the RMS difference of the voltage curves (see scripts/bench_reference.py).

``--demo-coarsen`` meshes the demo preset electrode (30 x 20 x 20 um at 0.5 um, 25 um separator) by
the voxel route at the given block sizes: 4, 2, 1 give 12.6 k, 96 k and 758 k tets, three refinements
of the same electrode. ``--steps N`` times N steps of a 1C-type discharge (0.2 %, 1 %, then 2 % DoD,
the step sizes the adaptive discharge settles at) instead of a full discharge to the cut-off; with
``--full-newton K`` (the Newton total of a full discharge, measured on a coarser mesh: the step
control does not depend on the mesh) it also prints an EXTRAPOLATED full-discharge time, labelled so.
Timings on a shared machine are noisy: the load average and the CPU seconds are printed with them.
Krylov and Newton counts do not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import resource
import tempfile
import time
from pathlib import Path

import tomocell.fem  # noqa: F401
import dolfinx  # noqa: F401  (PETSc initialises collectively on import: never first on one rank only)
from mpi4py import MPI


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fixed_steps(m, p, c_rate: float, steps: int, label: str = "") -> tuple[int, int, dict]:
    """N steps of a 1C-type discharge (0.2 %, 1 %, then 2 % DoD) from the charged state:
    (Newton iterations, Krylov iterations, voltage curve {t_s, voltage_V})."""
    x0, _ = p.theta_limits()
    m.set_state(x0)
    m.set_current_A(c_rate * m.one_c_current_A())
    t_1c = 3600.0 / c_rate
    dts = [0.002 * t_1c, 0.01 * t_1c] + [0.02 * t_1c] * max(steps - 2, 0)
    newton = krylov = 0
    curve = {"t_s": [0.0], "voltage_V": [m.quantities()["voltage_V"]]}
    for dt in dts[:steps]:
        ok, its, kits = m.solve_step(dt)
        if not ok:
            raise SystemExit(f"{label}: step failed")
        m.accept_step()
        newton += its
        krylov += kits
        curve["t_s"].append(curve["t_s"][-1] + dt)
        curve["voltage_V"].append(m.quantities()["voltage_V"])
    return newton, krylov, curve


def bench(make, label: str, args: argparse.Namespace) -> dict:
    from tomocell.physics.discharge import make_model, simulate_discharge
    from tomocell.physics.parameters import load_parameters

    comm = MPI.COMM_WORLD
    p = load_parameters(args.params)
    rss0 = rss_mb()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    inp = make()
    m = make_model(inp, p, linear_solver=args.solver, lu_lag=args.lu_lag)
    t_setup = time.perf_counter() - t0
    cells = inp.mesh.topology.index_map(3).size_global
    dofs = m.dof_count()
    out: dict = {"label": label, "ranks": comm.size, "tets": cells, "dofs": dofs, "solver": m.linear_solver,
                 "setup_s": t_setup}
    from petsc4py import PETSc

    jac0 = PETSc.Log.Event("SNESJacobianEval").getPerfInfo()["count"]
    cpu1 = time.process_time()
    t1 = time.perf_counter()
    if args.steps:
        newton, krylov, curve = fixed_steps(m, p, args.c_rate, args.steps, label)
        wall = time.perf_counter() - t1
        out.update(steps=args.steps, newton_per_step=newton / args.steps, krylov_per_newton=krylov / max(newton, 1),
                   s_per_step=wall / args.steps, s_per_newton=wall / max(newton, 1), solve_wall_s=wall,
                   voltage_V=m.quantities()["voltage_V"])
        if args.full_newton:
            out["EXTRAPOLATED_full_discharge_wall_s"] = args.full_newton * wall / max(newton, 1)
    else:
        res = simulate_discharge(None, args.c_rate, model=m)
        wall = time.perf_counter() - t1
        out.update(steps=res.steps, newton_per_step=res.newton_per_step, newton_total=res.newton_total,
                   krylov_per_newton=res.krylov_total / max(res.newton_total, 1), s_per_step=wall / max(res.steps, 1),
                   solve_wall_s=wall, capacity_Ah=res.capacity_Ah, capacity_mAh_g=res.capacity_mAh_g, utilisation=res.utilisation,
                   final_V=res.final_voltage_V)
        curve = {"t_s": [r["t_s"] for r in res.rows], "voltage_V": [r["voltage_V"] for r in res.rows]}
    # assembled Jacobians: the SNES callback's calls, unless the model reuses Jacobians (then it counts them)
    reused = getattr(m, "jacobians_assembled", lambda: -1)()
    out["jacobians"] = reused if reused >= 0 else PETSc.Log.Event("SNESJacobianEval").getPerfInfo()["count"] - jac0
    out["solve_cpu_s_all_ranks"] = comm.allreduce(time.process_time() - cpu1, op=MPI.SUM)
    out["total_cpu_s_all_ranks"] = comm.allreduce(time.process_time() - cpu0, op=MPI.SUM)
    out["load_avg_1min"] = os.getloadavg()[0]
    out["peak_rss_MB_all_ranks"] = comm.allreduce(rss_mb(), op=MPI.SUM)
    out["peak_rss_MB_max_rank"] = comm.allreduce(rss_mb(), op=MPI.MAX)
    out["dofs_per_rank"] = dofs / comm.size
    grown = comm.allreduce(rss_mb() - rss0, op=MPI.SUM)
    # ru_maxrss is a peak: run the refinements from small to large so each one raises it
    out["kB_per_dof_peak_growth"] = 1024.0 * grown / dofs
    out["kB_per_dof_peak_total"] = 1024.0 * out["peak_rss_MB_all_ranks"] / dofs
    out["curve"] = curve
    return out


def fmt(r: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items() if k != "curve")


def side_by_side(args: argparse.Namespace, wd: Path) -> None:
    """--reference: the reference commit and the current code, alternately, on the same meshes (serial parent)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_reference import compare, reference_tree, run_worker, staging_dir, verdict

    stage = staging_dir(reference_tree(args.reference, wd))
    common = ["--c-rate", str(args.c_rate), "--solver", args.solver, "--params", args.params, "--lu-lag",
              str(args.lu_lag), "--steps", str(args.steps)]
    if args.demo_coarsen:  # meshed by the reference code: the current code reads its layout, not always vice versa
        run_worker(["--demo-coarsen", args.demo_coarsen, "--workdir", str(wd / "meshes"), "--mesh-only"], 1, stage,
                   wd / "meshes.json")
        meshes = [str(wd / "meshes" / f"c{int(c)}" / "mesh.xdmf") for c in args.demo_coarsen.split(",")]
    else:
        meshes = args.mesh.split(",")
    print(f"# side by side: reference {args.reference} ({stage}) vs current ({Path(__file__).parents[1]}), "
          f"{args.ranks} rank(s), {args.rounds} round(s), cores {os.cpu_count()}, load average {os.getloadavg()}",
          flush=True)
    for mesh in meshes:
        for k in range(args.rounds):
            ref = run_worker(["--mesh", mesh, *common], args.ranks, stage, wd / "ref.json")
            print(f"reference {args.reference} round {k + 1}: {fmt(ref)}", flush=True)
            new = run_worker(["--mesh", mesh, *common], args.ranks, None, wd / "new.json")
            print(f"current round {k + 1}: {fmt(new)}", flush=True)
            c = compare(ref, new)
            print(f"COMPARISON {mesh} round {k + 1}: {fmt(c)}", flush=True)
            print(f"  {verdict(c)}", flush=True)


def demo_meshes(coarsen: list[int], workdir: Path, comm: MPI.Comm) -> list[tuple[str, Path]]:
    """Voxel-route meshes of the demo preset electrode at the given block sizes (rank 0 writes)."""
    paths = [(f"demo voxel coarsen {c}", workdir / f"c{c}" / "mesh.xdmf") for c in coarsen]
    if comm.rank == 0:
        from tomocell.meshing.pipeline import mesh_volume, write_outputs
        from tomocell.microstructure.synthetic import generate_electrode

        vol = generate_electrode(preset="demo", seed=0)
        for c, (_, path) in zip(coarsen, paths):
            if not path.is_file():
                res = mesh_volume(vol, route="voxel", coarsen=c, separator_um=25.0)
                write_outputs(res, path.parent, write_msh=False, comm=MPI.COMM_SELF)  # meshed on rank 0 only
    comm.barrier()
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", default=None, help="comma-separated XDMF meshes from `tomocell mesh`")
    ap.add_argument("--demo-coarsen", default=None, help="comma-separated voxel block sizes of the demo electrode")
    ap.add_argument("--workdir", default=None, help="where --demo-coarsen meshes are written (default: a temp dir)")
    ap.add_argument("--c-rate", type=float, default=1.0)
    ap.add_argument("--solver", choices=("auto", "direct", "iterative"), default="auto")
    ap.add_argument("--params", default="nmc111")
    ap.add_argument("--lu-lag", type=int, default=3, help="refactorise the LU every N Jacobians (direct solver)")
    ap.add_argument("--steps", type=int, default=0, help="time N steps instead of a full discharge")
    ap.add_argument("--full-newton", type=int, default=0,
                    help="with --steps: Newton total of a full discharge, to print an extrapolated full time")
    ap.add_argument("--reference", default=None, metavar="COMMIT",
                    help="run the code of COMMIT and the current code side by side on the same meshes")
    ap.add_argument("--ranks", type=int, default=1, help="with --reference: MPI ranks of each run")
    ap.add_argument("--rounds", type=int, default=1, help="with --reference: alternate reference/current N times")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # JSON result file of one run
    ap.add_argument("--mesh-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="6,9,13", help="box refinements (cells across) without --mesh")
    ap.add_argument("--weak", action="store_true",
                    help="weak scaling: the box gets N x more cells along x on N ranks (same DOFs per rank); "
                         "compare solve_wall_s across `mpirun -n 1, 2, 4, ...` runs (ideal: constant)")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    from petsc4py import PETSc

    PETSc.Log.begin()  # event counts (Jacobian assemblies)
    runs = []
    from tomocell.physics.cli import load_mesh

    if args.reference:
        if comm.size > 1:
            raise SystemExit("--reference runs serially and starts each run with mpirun -n RANKS itself")
        if not (args.mesh or args.demo_coarsen):
            raise SystemExit("--reference needs --mesh or --demo-coarsen")
        side_by_side(args, Path(args.workdir or tempfile.mkdtemp(prefix="tomocell-bench-")).resolve())
        return
    if args.demo_coarsen:
        wd = Path(args.workdir or tempfile.mkdtemp(prefix="tomocell-bench-"))
        wd = Path(comm.bcast(str(wd), root=0))
        made = demo_meshes([int(v) for v in args.demo_coarsen.split(",")], wd, comm)
        if args.mesh_only:
            if comm.rank == 0 and args.worker:
                Path(args.worker).write_text(json.dumps([str(p) for _, p in made]))
            return
        for label, path in made:
            runs.append((label, lambda path=path: load_mesh(str(path), comm)))
    elif args.mesh:
        for spec in args.mesh.split(","):
            runs.append((spec, lambda spec=spec: load_mesh(spec, comm)))
    else:
        from tomocell.physics.synthetic import box_cell

        kx = comm.size if args.weak else 1
        for n in (int(v) for v in args.sizes.split(",")):
            runs.append((f"box n={n}" + (f" x{kx} (weak)" if args.weak else ""),
                         lambda n=n: box_cell(comm, n=(n * kx, n, int(1.3 * n)), n_sep=max(2, n // 3))))
    if comm.rank == 0:
        print(f"# ranks {comm.size}, cores {os.cpu_count()}, load average {os.getloadavg()}, c-rate {args.c_rate}, "
              f"solver {args.solver} (timings on a shared machine are noisy; iteration counts are not)", flush=True)
    for label, make in runs:
        r = bench(make, label, args)
        if comm.rank == 0:
            if args.worker:
                import tomocell.physics

                r["code"] = str(Path(tomocell.physics.__file__).parents[1])
                Path(args.worker).write_text(json.dumps(r))
            else:
                print(fmt(r), flush=True)


if __name__ == "__main__":
    main()
