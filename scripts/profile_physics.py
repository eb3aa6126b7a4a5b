#!/usr/bin/env python
"""Where the time of a discharge goes: set-up (mesh, forms, solver), Newton (Jacobian and residual
assembly, preconditioner set-up, Krylov), the per-step Python work (outputs, snapshots, step control).

Usage (serial or under MPI)::

    .venv/bin/python scripts/profile_physics.py --mesh mesh.xdmf --solver iterative        # 1C discharge
    .venv/bin/python scripts/profile_physics.py --mesh mesh.xdmf --c-rate 3 --steps 20     # 20 steps only
    mpirun -n 2 .venv/bin/python scripts/profile_physics.py --mesh mesh.xdmf

Timings come from PETSc's event log (SNESJacobianEval, SNESFunctionEval, KSPSolve, PCSetUp, PCApply;
max over ranks) and from timers wrapped around the model's per-step methods. On a shared machine the
seconds are noisy; the shares and the iteration counts are what to compare.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import tomocell.fem  # noqa: F401
import dolfinx  # noqa: F401  (PETSc initialises collectively on import)
from mpi4py import MPI
from petsc4py import PETSc

PETSC_EVENTS = ("SNESSolve", "SNESJacobianEval", "SNESFunctionEval", "KSPSolve", "PCSetUp", "PCApply", "MatMult")
PY_METHODS = ("quantities", "snapshot", "restore", "accept_step", "min_scaled_electrolyte_concentration",
              "_predict")


def wrap_timers(model, names: tuple[str, ...]) -> dict[str, list[float]]:
    """Time the model's methods ``names`` (bound-method wrappers on the instance): name -> [seconds, calls]."""
    acc: dict[str, list[float]] = {}
    for name in names:
        f = getattr(model, name, None)
        if f is None:
            continue
        acc[name] = [0.0, 0]

        @functools.wraps(f)
        def timed(*a, _f=f, _slot=acc[name], **kw):
            t0 = time.perf_counter()
            try:
                return _f(*a, **kw)
            finally:
                _slot[0] += time.perf_counter() - t0
                _slot[1] += 1

        setattr(model, name, timed)
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", required=True, help="XDMF mesh from `tomocell mesh`")
    ap.add_argument("--c-rate", type=float, default=1.0)
    ap.add_argument("--solver", choices=("auto", "direct", "iterative"), default="auto")
    ap.add_argument("--params", default="nmc111")
    ap.add_argument("--steps", type=int, default=0, help="time N steps (0.2 %%, 1 %%, then 2 %% DoD) instead of "
                                                          "a full discharge")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="PETSc solver option (without prefix), e.g. ksp_rtol=1e-2; repeatable")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    PETSc.Log.begin()
    from tomocell.physics.cli import load_mesh
    from tomocell.physics.discharge import make_model, simulate_discharge
    from tomocell.physics.parameters import load_parameters

    t0 = time.perf_counter()
    inp = load_mesh(args.mesh, comm)
    t_mesh = time.perf_counter() - t0
    p = load_parameters(args.params)
    m = make_model(inp, p, linear_solver=args.solver, solver_options=dict(o.split("=", 1) for o in args.option))
    t_model = time.perf_counter() - t0 - t_mesh
    m.compile_quantities()
    t_setup = time.perf_counter() - t0
    ev0 = {e: PETSc.Log.Event(e).getPerfInfo() for e in PETSC_EVENTS}
    py = wrap_timers(m, PY_METHODS)
    t1 = time.perf_counter()
    if args.steps:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_physics import fixed_steps

        newton, krylov, _ = fixed_steps(m, p, args.c_rate, args.steps)
        steps, extra = args.steps, {}
    else:
        res = simulate_discharge(None, args.c_rate, model=m)
        steps, newton, krylov = res.steps, res.newton_total, res.krylov_total
        extra = {"capacity_mAh_g": res.capacity_mAh_g, "final_V": res.final_voltage_V}
    wall = time.perf_counter() - t1
    ev = {}
    for e in PETSC_EVENTS:
        info = PETSc.Log.Event(e).getPerfInfo()
        ev[e] = (comm.allreduce(info["time"] - ev0[e]["time"], op=MPI.MAX), info["count"] - ev0[e]["count"])
    if comm.rank != 0:
        return
    cells = inp.mesh.topology.index_map(3).size_global
    print(f"# {args.mesh}: {cells} tets, {m.dof_count()} DOFs, {comm.size} rank(s), solver {m.linear_solver}, "
          f"{args.c_rate:g}C, load average {os.getloadavg()[0]:.2f}")
    print(f"set-up {t_setup:.2f} s (mesh {t_mesh:.2f}, model incl. form compilation {t_model:.2f}, outputs "
          f"{t_setup - t_mesh - t_model:.2f})")
    print(f"time loop {wall:.2f} s: {steps} steps, {newton} Newton ({newton / max(steps, 1):.2f}/step), "
          f"{krylov} Krylov ({krylov / max(newton, 1):.1f}/Newton) " + " ".join(f"{k}={v:.5g}" for k, v in extra.items()))
    jac, res_, ksp, pcs, snes = (ev[e][0] for e in ("SNESJacobianEval", "SNESFunctionEval", "KSPSolve", "PCSetUp",
                                                    "SNESSolve"))
    rows = [("Jacobian assembly (SNESJacobianEval)", jac, ev["SNESJacobianEval"][1]),
            ("residual assembly (SNESFunctionEval)", res_, ev["SNESFunctionEval"][1]),
            ("PC set-up (PCSetUp)", pcs, ev["PCSetUp"][1]),
            ("Krylov without PC set-up (KSPSolve - PCSetUp)", ksp - pcs, ev["KSPSolve"][1]),
            ("  of which PC apply", ev["PCApply"][0], ev["PCApply"][1]),
            ("SNES other (line search, norms, copies)", snes - jac - res_ - ksp, ev["SNESSolve"][1])]
    rows += [(f"python {k}()", v[0], v[1]) for k, v in py.items()]
    accounted = snes + sum(v[0] for k, v in py.items())
    rows.append(("rest of the time loop (step control, events, rows)", wall - accounted, steps))
    print(f"{'where':55s} {'s':>9s} {'share':>7s} {'calls':>7s}")
    for name, s, n in rows:
        print(f"{name:55s} {s:9.2f} {100 * s / wall:6.1f}% {n:7d}")


if __name__ == "__main__":
    main()
