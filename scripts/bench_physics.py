#!/usr/bin/env python
"""Benchmark of the half-cell physics: DOFs, steps, Newton/Krylov iterations, s/step, memory.

Usage (serial or under MPI)::

    .venv/bin/python scripts/bench_physics.py                       # built-in box cells, 3 refinements
    .venv/bin/python scripts/bench_physics.py --mesh mesh.xdmf --c-rate 1 [--solver iterative]
    mpirun -n 2 .venv/bin/python scripts/bench_physics.py --mesh mesh.xdmf --steps 10

``--steps N`` times N fixed-size steps (dt = 1 % DoD) instead of a full discharge; without it a full
discharge to the cut-off runs. Figures are printed on rank 0; the machine's load is printed too,
because timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import tomocell.fem  # noqa: F401
from mpi4py import MPI


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(inp, label: str, args: argparse.Namespace) -> dict:
    from tomocell.physics.discharge import make_model, simulate_discharge
    from tomocell.physics.parameters import load_parameters

    comm = MPI.COMM_WORLD
    p = load_parameters(args.params)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    m = make_model(inp, p, linear_solver=args.solver, lu_lag=args.lu_lag)
    t_setup = time.perf_counter() - t0
    cells = inp.mesh.topology.index_map(3).size_global
    dofs = m.dof_count()
    out: dict = {"label": label, "cells": cells, "dofs": dofs, "solver": m.linear_solver, "setup_s": t_setup}
    if args.steps:
        x0, _ = p.theta_limits()
        m.set_state(x0)
        m.set_current_A(args.c_rate * m.one_c_current_A())
        dt = 0.01 * 3600.0 / args.c_rate
        newton = krylov = 0
        t1 = time.perf_counter()
        for _ in range(args.steps):
            ok, its, kits = m.solve_step(dt)
            if not ok:
                raise SystemExit(f"{label}: step failed")
            m.accept_step()
            newton += its
            krylov += kits
        wall = time.perf_counter() - t1
        out.update(steps=args.steps, newton_per_step=newton / args.steps, krylov_per_newton=krylov / max(newton, 1),
                   s_per_step=wall / args.steps, total_s=wall, voltage_V=m.quantities()["voltage_V"])
    else:
        t1 = time.perf_counter()
        res = simulate_discharge(None, args.c_rate, model=m)
        wall = time.perf_counter() - t1
        out.update(steps=res.steps, newton_per_step=res.newton_per_step,
                   krylov_per_newton=res.krylov_total / max(res.newton_total, 1), s_per_step=wall / max(res.steps, 1),
                   total_s=wall, capacity_mAh_g=res.capacity_mAh_g, capacity_mAh_cm2=res.capacity_mAh_cm2,
                   utilisation=res.utilisation, final_V=res.final_voltage_V)
    mem = comm.allreduce(rss_mb() - rss0, op=MPI.SUM)
    out["rss_MB_total"] = comm.allreduce(rss_mb(), op=MPI.SUM)
    out["delta_rss_MB"] = mem
    out["kB_per_dof"] = 1024.0 * mem / dofs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", default=None, help="XDMF mesh from `tomocell mesh` (default: built-in box cells)")
    ap.add_argument("--c-rate", type=float, default=1.0)
    ap.add_argument("--solver", choices=("auto", "direct", "iterative"), default="auto")
    ap.add_argument("--params", default="nmc111")
    ap.add_argument("--lu-lag", type=int, default=3, help="refactorise the LU every N Jacobians (direct solver)")
    ap.add_argument("--steps", type=int, default=0, help="time N fixed steps instead of a full discharge")
    ap.add_argument("--sizes", default="6,9,13", help="box refinements (cells across) without --mesh")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    runs = []
    if args.mesh:
        from tomocell.physics.cli import load_mesh

        runs.append((args.mesh, lambda: load_mesh(args.mesh, comm)))
    else:
        from tomocell.physics.synthetic import box_cell

        for n in (int(v) for v in args.sizes.split(",")):
            runs.append((f"box n={n}", lambda n=n: box_cell(comm, n=(n, n, int(1.3 * n)), n_sep=max(2, n // 3))))
    if comm.rank == 0:
        print(f"# ranks {comm.size}, load average {os.getloadavg()}, c-rate {args.c_rate}, solver {args.solver}")
    for label, make in runs:
        r = bench(make(), label, args)
        if comm.rank == 0:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
