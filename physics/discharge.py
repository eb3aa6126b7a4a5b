"""The operation: galvanostatic half-cell discharge from the charged state to the voltage cut-off.

:func:`simulate_discharge` is the library entry point (the CLI and the demo call it):
start at equilibrium at ``voltage_max`` (4.25 V for NMC111), discharge at ``c_rate`` x 1C (1C =
the active material's capacity between the stoichiometries at ``voltage_max`` and ``voltage_min``
on the OCV, delivered in one hour), locate the ``voltage_min`` (3.0 V) crossing in time, then
optionally rest at zero current. Depth-of-discharge snapshots (default 25/50/70 %) are hit exactly.
Output layout: see :mod:`tomocell.physics.outputs`.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from tomocell.errors import InputError, Interrupted, SolverError
from tomocell.log import get_logger
from tomocell.physics import checkpoint as ckpt
from tomocell.physics.model import HalfCellModel, MeshInput
from tomocell.physics.outputs import OutputWriter, write_timeseries
from tomocell.physics.parameters import FARADAY, Parameters, load_parameters
from tomocell.physics.solver import StepControl, locate_event, next_step_size, try_step

log = get_logger("physics.discharge")

# Above this the iterative solver is cheaper: on the demo electrode (voxel route) a full 1C discharge
# took the same CPU time with both at 7.8 k DOFs, and 4 steps took 20 (iterative) vs 36 (MUMPS) CPU s
# at 51 k DOFs; MUMPS's cost then grows superlinearly, the iterative one linearly.
DIRECT_DOF_LIMIT = 20_000


@dataclass
class DischargeResult:
    """What a discharge delivered. Capacities are per active-material mass and per projected area.

    Active material cut off from the collector (or behind closed pores) is set inert by the model
    (:func:`tomocell.physics.topology.analyse_mesh`) and carries no current: ``capacity_mAh_g`` and
    ``utilisation_total`` are per *all* active material in the mesh (what a cell made of this
    electrode would deliver per coated mass), ``capacity_mAh_g_connected`` and ``utilisation`` per the
    connected part only (the nominal capacity and the 1C current are the connected part's).
    ``inert`` gives the excluded fraction of every phase.
    """

    c_rate: float
    capacity_Ah: float
    capacity_mAh_g: float
    capacity_mAh_cm2: float
    nominal_capacity_Ah: float
    nominal_capacity_mAh_g: float
    utilisation: float
    one_c_current_A: float
    final_voltage_V: float
    mean_voltage_V: float
    energy_Wh: float
    discharge_time_s: float
    reason: str
    steps: int
    newton_total: int
    krylov_total: int
    newton_per_step: float
    snapshots: list[float]
    dofs: int
    cells: int
    mpi_size: int
    wall_s: float
    charge_Ah: float = 0.0
    #: per all active material (connected or not) in the mesh; utilisation_total likewise
    capacity_mAh_g_connected: float = float("nan")
    utilisation_total: float = float("nan")
    #: phase -> {volume_um3, inert_volume_um3, inert_fraction}: material excluded as disconnected
    inert: dict[str, dict[str, float]] = field(default_factory=dict)
    linear_solver: str = ""
    #: switches from the iterative solver to LU after a failed linear solve (time, step length)
    solver_switches: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("rows")
        return d


#: keys of a parameter file that document a value without changing it (ignored by --resume)
_DOC_KEYS = {"source", "sources", "unit", "units", "description", "note", "notes", "reference", "doi", "name",
             "material", "comment"}


def flat_parameters(raw: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted name -> value of every answer-changing entry of a parameter mapping."""
    out: dict[str, Any] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            if str(k) in _DOC_KEYS:
                continue
            out.update(flat_parameters(v, f"{prefix}{k}."))
    elif isinstance(raw, (list, tuple)):
        out[prefix[:-1]] = [flat_parameters(v) if isinstance(v, dict) else v for v in raw]
    else:
        out[prefix[:-1]] = raw
    return out


def _fingerprint(model: HalfCellModel, settings: dict[str, Any]) -> dict[str, Any]:
    """Everything a checkpoint must share with the run that resumes it: the mesh (size, active volume,
    a checksum of this rank's node coordinates and cell tags), every parameter, and the operating and
    time-stepping settings (``settings``). Not the linear solver: it changes the answer only at its
    tolerance, and the iterative solver may switch to LU mid-run anyway."""
    msh = model.inp.mesh
    n_nodes = msh.geometry.index_map().size_local
    xs = np.asarray(msh.geometry.x[:n_nodes], dtype=float)
    n_own = msh.topology.index_map(3).size_local
    local = float(np.sum(xs * np.array([1.0, 1.0001, 1.0002]))) + float(np.sum(model.topo.cell_tag[:n_own] * 1e-3))
    checksums = model.comm.allgather(round(local, 6))
    return {"dofs": model.dof_count(), "cells": msh.topology.index_map(3).size_global,
            "active_volume_um3": round(model.vol["active"], 6), "mesh_checksum": checksums,
            "parameters": flat_parameters(model.p.raw), "li_kinetics": model.li_kinetics, **settings}


def make_model(inp: MeshInput, params: Parameters, *, li_kinetics: str = "butler-volmer",
               linear_solver: str = "auto", lu_lag: int = 3, direct_dof_limit: int = DIRECT_DOF_LIMIT,
               solver_options: dict[str, Any] | None = None) -> HalfCellModel:
    """The model with the linear solver chosen by size.

    ``linear_solver``: "direct" (MUMPS LU), "iterative" (GMRES + field-split AMG, see
    :func:`tomocell.physics.newton.iterative_options`) or "auto": direct below ``direct_dof_limit``
    DOFs (estimated as 0.5 per tet, the ratio of the voxel-route meshes), iterative above.
    ``solver_options``: PETSc options (without prefix) that override the defaults, e.g.
    ``{"fieldsplit_ps_pc_gamg_threshold": 0.05}``.
    """
    if linear_solver == "auto":
        ncell = inp.mesh.topology.index_map(3).size_global
        linear_solver = "direct" if ncell * 0.5 < direct_dof_limit else "iterative"
    return HalfCellModel(inp, params, li_kinetics=li_kinetics, linear_solver=linear_solver, lu_lag=lu_lag,
                         solver_options=solver_options)


def simulate_discharge(
    inp: MeshInput | None,
    c_rate: float,
    *,
    params: Parameters | str | Path | None = None,
    out_dir: str | Path | None = None,
    dod_snapshots: tuple[float, ...] = (0.25, 0.5, 0.7),
    rest_s: float = 0.0,
    charge_c_rate: float | None = None,
    cv_cutoff_c_rate: float = 0.05,
    li_kinetics: str = "butler-volmer",
    linear_solver: str = "auto",
    max_ddod: float = 0.02,
    event_tol_V: float = 1e-4,
    checkpoint_every: int = 25,
    resume: bool = False,
    max_inert_fraction: float | None = None,
    model: HalfCellModel | None = None,
    control: StepControl | None = None,
    max_steps: int = 100_000,
) -> DischargeResult:
    """Galvanostatic discharge to the cut-off (then an optional rest); outputs under ``out_dir``.

    ``inp``: mesh with tags (ignored when ``model`` is given). Returns a :class:`DischargeResult`
    (same on every rank). ``max_inert_fraction``: refuse (InputError) a mesh in which a larger
    fraction of the active material is disconnected (None: run it, with a warning). Raises
    InputError before any solve on bad input, SolverError when the time stepping cannot continue,
    :class:`~tomocell.errors.Interrupted` after writing a checkpoint on SIGINT/SIGTERM.
    """
    t_wall = time.perf_counter()
    if not (isinstance(c_rate, (int, float)) and np.isfinite(c_rate) and c_rate > 0):
        raise InputError(f"C-rate must be a finite number > 0, got {c_rate}")
    if max_inert_fraction is not None and not 0 <= max_inert_fraction <= 1:
        raise InputError(f"max_inert_fraction must lie in [0, 1], got {max_inert_fraction}")
    if not 0 < max_ddod <= 0.5:
        raise InputError(f"max_ddod must lie in (0, 0.5], got {max_ddod}")
    if rest_s < 0:
        raise InputError(f"rest duration must be >= 0 s, got {rest_s}")
    if charge_c_rate is not None and not (np.isfinite(charge_c_rate) and charge_c_rate > 0):
        raise InputError(f"charge C-rate must be a finite number > 0, got {charge_c_rate}")
    if not cv_cutoff_c_rate > 0:
        raise InputError(f"CV cut-off C-rate must be > 0, got {cv_cutoff_c_rate}")
    if charge_c_rate is not None and li_kinetics == "ideal":
        raise InputError("CC-CV charge needs the Butler-Volmer Li electrode (li_kinetics='butler-volmer')")
    snaps = sorted(float(d) for d in dod_snapshots)
    if any(not 0 < d < 1 for d in snaps):
        raise InputError(f"DoD snapshots must lie in (0, 1), got {dod_snapshots}")
    if model is None:
        p = params if isinstance(params, Parameters) else load_parameters(params)
        if inp is None:
            raise InputError("simulate_discharge needs a mesh or a model")
        model = make_model(inp, p, li_kinetics=li_kinetics, linear_solver=linear_solver)
    p = model.p
    comm = model.comm
    out = Path(out_dir) if out_dir is not None else None
    ctl = control or StepControl()
    x0, x1 = p.theta_limits()
    i1c = model.one_c_current_A()
    q_nom = i1c * 3600.0  # C
    current = c_rate * i1c
    t_1c = 3600.0 / c_rate
    ctl.dt_max_s = min(ctl.dt_max_s, max_ddod * t_1c)
    inert = _report_inert(model, max_inert_fraction)
    mass_g = p.density * model.vol["active"] * model.ell**3 * 1e3  # connected active material
    mass_total_g = p.density * (model.vol["active"] + inert["active"]["inert_volume_um3"]) * model.ell**3 * 1e3
    area_cm2 = model.area_cc * model.ell**2 * 1e4
    fp = _fingerprint(model, {
        "c_rate": float(c_rate), "dod_snapshots": snaps, "rest_s": float(rest_s),
        "charge_c_rate": None if charge_c_rate is None else float(charge_c_rate),
        "cv_cutoff_c_rate": float(cv_cutoff_c_rate), "max_ddod": float(max_ddod), "event_tol_V": float(event_tol_V),
        "step_control": {k: v for k, v in vars(ctl).items() if isinstance(v, (int, float, bool, str))}})
    if resume:
        if out is None:
            raise InputError("--resume needs the output directory of the interrupted run")
        arrays, meta = ckpt.read_checkpoint(comm, out, fp)  # InputError naming any mismatch, before writing
    writer = OutputWriter(model, out) if out is not None else None

    # ---- state: fresh or from checkpoint ----------------------------------------------------------
    rows: list[dict[str, Any]] = []
    segment, t, q_dis, step, dt = "discharge", 0.0, 0.0, 0, 2e-3 * t_1c
    done_snaps: list[float] = []
    seg_t0 = 0.0
    q_chg = 0.0
    if resume:
        model.restore(arrays)
        rows = meta["rows"]
        segment, t, q_dis, step, dt = meta["segment"], meta["t"], meta["q"], meta["step"], meta["dt"]
        q_chg = meta.get("q_chg", 0.0)
        done_snaps, seg_t0 = meta["snapshots"], meta["seg_t0"]
        if writer is not None:
            writer.sol_columns = meta.get("sol_columns", [])
            writer.particle_sol = {k: np.asarray(v) for k, v in meta.get("particle_sol", {}).items()}
        log.info("resumed at step %d, t = %.1f s, segment %s", step, t, segment)
    else:
        model.set_state(x0, 1.0, 0.0)
    q_prev = model.quantities()
    li_prev = q_prev["li_solid_mol"] + q_prev["li_electrolyte_mol"]

    def row(dt_: float, cur: float, q: dict[str, float], st: Any, li_bal: float) -> dict[str, Any]:
        return {"step": step, "t_s": t, "dt_s": dt_, "segment": segment, "voltage_V": q["voltage_V"], "current_A": cur,
                "current_density_A_m2": cur / (model.area_cc * model.ell**2), "capacity_Ah": q_dis / 3600.0,
                "capacity_mAh_g": q_dis / 3.6 / mass_total_g, "capacity_mAh_cm2": q_dis / 3.6 / area_cm2,
                "dod": q_dis / q_nom, "mean_stoichiometry": q["mean_stoichiometry"], "li_solid_mol": q["li_solid_mol"],
                "li_electrolyte_mol": q["li_electrolyte_mol"], "li_total_mol": q["li_solid_mol"] + q["li_electrolyte_mol"],
                "li_balance_rel": li_bal, "interface_current_A": q["interface_current_A"],
                "c_e_min_mol_m3": q["c_e_min"], "phi_e_li_V": q["phi_e_li_V"],
                "newton_its": getattr(st, "newton", 0), "krylov_its": getattr(st, "krylov", 0),
                "retries": getattr(st, "retries", 0)}

    if not rows:
        rows.append(row(0.0, 0.0, q_prev, None, 0.0))
    reason = "running"
    newton_total = sum(int(r["newton_its"]) for r in rows)
    krylov_total = sum(int(r["krylov_its"]) for r in rows)
    n_steps_loop = 0

    def save_checkpoint() -> None:
        if out is None:
            return
        meta = {"segment": segment, "t": t, "q": q_dis, "q_chg": q_chg, "step": step, "dt": dt, "snapshots": done_snaps,
                "seg_t0": seg_t0, "rows": rows, "fingerprint": fp,
                "sol_columns": writer.sol_columns if writer else [],
                "particle_sol": {k: v.tolist() for k, v in (writer.particle_sol.items() if writer else [])}}
        ckpt.write_checkpoint(comm, out, model.snapshot(), meta)
        write_timeseries(comm, out, rows)

    with ckpt.TermFlag() as term:
        while segment != "done":
            if n_steps_loop >= max_steps:
                raise SolverError(f"no cut-off after {max_steps} steps")
            cur = {"discharge": current, "rest": 0.0, "charge_cc": -(charge_c_rate or 0.0) * i1c}.get(segment, 0.0)
            model.set_potentiostatic(p.voltage_max if segment == "charge_cv" else None)
            model.set_current_A(cur)
            dt_try = min(dt, ctl.dt_max_s)
            pending = [d for d in snaps if d not in done_snaps and d * q_nom > q_dis + 1e-9 * q_nom]
            if segment == "discharge" and pending:
                remaining = (pending[0] * q_nom - q_dis) / cur
                # land on the snapshot without leaving a sliver of a step behind
                dt_try = remaining if remaining < 1.5 * dt_try else dt_try
            if segment == "rest":
                dt_try = min(dt_try, seg_t0 + rest_s - t)
            pre = model.snapshot()
            v_before = q_prev["voltage_V"]
            # the first step after a change of operation (start, rest, charge) jumps by the ohmic and
            # kinetic response: not a slope, so it must not cap the next step (it cut 0.72 s to 0.12 s)
            first_in_segment = rows[-1]["step"] == 0 or rows[-1]["segment"] != segment
            n_switch = len(model.solver_switches)
            st = try_step(model, dt_try, ctl)
            dt_try = st.dt
            for sw in model.solver_switches[n_switch:]:
                sw.update({"t_s": t, "step": step + 1})
            q = model.quantities()
            event = False
            crossed = ((segment == "discharge" and q["voltage_V"] < p.voltage_min)
                       or (segment == "charge_cc" and q["voltage_V"] > p.voltage_max))
            if crossed:
                sign, limit = (1.0, p.voltage_min) if segment == "discharge" else (-1.0, p.voltage_max)
                g_lo = sign * (q_prev["voltage_V"] - limit)

                def g() -> float:
                    return sign * (model.quantities()["voltage_V"] - limit)

                model.restore(pre)
                dt_try, st2 = locate_event(model, g, dt_try, g_lo, sign * (q["voltage_V"] - limit), ctl, event_tol_V)
                st.newton += st2.newton
                st.krylov += st2.krylov
                q = model.quantities()
                event = True
            model.accept_step()
            if segment == "charge_cv":
                cur = q.get("li_face_current_A", -q["interface_current_A"])
            t += dt_try
            q_dis += cur * dt_try
            if cur < 0:
                q_chg -= cur * dt_try
            step += 1
            n_steps_loop += 1
            li_now = q["li_solid_mol"] + q["li_electrolyte_mol"]
            passed = cur * dt_try / FARADAY
            li_bal = (li_now - li_prev - passed) / (abs(passed) if passed else max(abs(li_now), 1e-300))
            li_prev = li_now
            newton_total += st.newton
            krylov_total += st.krylov
            rows.append(row(dt_try, cur, q, st, li_bal))
            q_prev = q
            if segment == "discharge" and pending and abs(q_dis - pending[0] * q_nom) <= 1e-9 * q_nom:
                done_snaps.append(pending[0])
                if writer is not None:
                    writer.write_snapshot(pending[0], {"t_s": t, "dod": pending[0], "voltage_V": q["voltage_V"],
                                                       "capacity_Ah": q_dis / 3600.0})
            # step-size control
            dt = next_step_size(min(dt, ctl.dt_max_s), dt_try, st.newton, st.retries, ctl,
                                dvoltage_V=0.0 if first_in_segment else q["voltage_V"] - v_before)
            after_rest = "charge_cc" if charge_c_rate else "done"
            if event and segment == "discharge":
                reason = "cut-off"
                segment = "rest" if rest_s > 0 else after_rest
                seg_t0 = t
                dt = 2e-3 * t_1c
            elif event and segment == "charge_cc":
                segment, seg_t0 = "charge_cv", t
            elif segment == "charge_cv" and abs(cur) < cv_cutoff_c_rate * i1c:
                segment = "done"
            elif segment == "rest" and t >= seg_t0 + rest_s - 1e-9:
                segment = after_rest
            if out is not None and (step % max(checkpoint_every, 1) == 0):
                save_checkpoint()
            signum = int(comm.allreduce(term.signum, op=MPI.MAX))
            if signum:
                save_checkpoint()
                name = signal.Signals(signum).name
                raise Interrupted(f"stopped by {name} at step {step}, t = {t:.1f} s; checkpoint written"
                                  + (f", continue with --resume (same settings, --out {out})" if out is not None else ""),
                                  signum)
            if step % 10 == 0:
                log.info("step %d t=%.1f s V=%.4f V DoD=%.3f dt=%.3g s newton=%d", step, t, q["voltage_V"],
                         q_dis / q_nom, dt_try, st.newton)
    dis = [r for r in rows if r["segment"] == "discharge" and r["step"] > 0]
    energy = sum(r["voltage_V"] * r["current_A"] * r["dt_s"] for r in dis) / 3600.0
    cap = sum(r["current_A"] * r["dt_s"] for r in dis) / 3600.0
    res = DischargeResult(
        c_rate=float(c_rate), capacity_Ah=cap, capacity_mAh_g=cap * 1e3 / mass_total_g,
        capacity_mAh_cm2=cap * 1e3 / area_cm2, capacity_mAh_g_connected=cap * 1e3 / mass_g,
        # of the discharge segment alone (after a CC-CV charge the net charge is ~0)
        nominal_capacity_Ah=q_nom / 3600.0, nominal_capacity_mAh_g=q_nom / 3.6 / mass_g, utilisation=cap * 3600.0 / q_nom,
        utilisation_total=cap * 3600.0 / q_nom * mass_g / mass_total_g, inert=inert,
        one_c_current_A=i1c, final_voltage_V=float(dis[-1]["voltage_V"]) if dis else float("nan"),
        mean_voltage_V=energy / cap if cap > 0 else float("nan"), energy_Wh=energy,
        discharge_time_s=float(dis[-1]["t_s"]) if dis else 0.0, reason=reason, steps=step,
        newton_total=newton_total, krylov_total=krylov_total, newton_per_step=newton_total / max(step, 1),
        snapshots=done_snaps, dofs=model.dof_count(), cells=model.inp.mesh.topology.index_map(3).size_global,
        mpi_size=comm.size, wall_s=time.perf_counter() - t_wall, rows=rows, charge_Ah=q_chg / 3600.0,
        linear_solver=model.linear_solver, solver_switches=list(model.solver_switches),
    )
    if out is not None:
        write_timeseries(comm, out, rows)
    return res


def _report_inert(model: HalfCellModel, max_inert_fraction: float | None) -> dict[str, dict[str, float]]:
    """The inert (disconnected) share of every phase: a warning when any, InputError above the limit."""
    inert = {k: dict(v) for k, v in (model.topo.inert or {}).items()}
    if not inert:  # a model built without the accounting (should not happen): nothing excluded known
        inert = {"active": {"volume_um3": model.vol["active"], "inert_volume_um3": 0.0, "inert_fraction": 0.0}}
    fa = inert["active"]["inert_fraction"]
    parts = [f"{name} {100 * v['inert_fraction']:.1f} %" for name, v in inert.items() if v["inert_fraction"] > 0]
    if parts and model.comm.rank == 0:  # the same figures on every rank: said once
        c = model.topo.counts
        log.warning("disconnected material set inert (carries no current): %s of each phase's volume "
                    "(%d active, %d CBD, %d electrolyte cells). Capacities are given per all active material "
                    "(capacity_mAh_g) and per its connected part (capacity_mAh_g_connected); the C-rate is "
                    "relative to the connected part.", ", ".join(parts), c.get("isolated_active_cells", 0),
                    c.get("isolated_cbd_cells", 0), c.get("isolated_electrolyte_cells", 0))
    if max_inert_fraction is not None and fa > max_inert_fraction:
        raise InputError(f"{100 * fa:.1f} % of the active material is disconnected from the current collector or "
                         f"the electrolyte (limit {100 * max_inert_fraction:.1f} %, --max-inert): check the mesh "
                         "(`tomocell mesh` reports percolation per phase)")
    return inert
