"""Run an expanded experiment (:mod:`.experiment`) on the half-cell model, step after step.

This is the one time loop of ``tomocell simulate``: the plain discharge (``--c-rate``, ``--rest-min``,
``--charge-c-rate``) is the experiment of :func:`tomocell.physics.discharge.shortcut_steps` run here.

Every step starts from the state the previous one left. The time step is adaptive
(:mod:`tomocell.physics.solver`), starts each step at 0.2 % of the step's 1C-equivalent time, is capped
so a step changes the depth of discharge by at most ``max_ddod`` (steps without a current of their own,
rest and hold, use the fastest current step's cap), and is cut to land exactly on a step's duration, on
drive-cycle breakpoints and on the depths of discharge of field snapshots. Voltage terminations are
located in time (regula falsi on the step length, within ``event_tol_V``), and so is the end current of
a voltage hold (within 0.1 % of it). A power or resistance step sets the current from the voltage of the
last accepted time step (I = P / V, I = V / R: explicit).

A step that cannot be reached is skipped with a warning and recorded as such in steps.csv: a discharge
to a voltage at or above the present one, a charge to one at or below it, a hold whose end current is
already met. Every current step also ends at the safety limits (``voltage_min`` - 0.5 V and
``voltage_max`` + 0.1 V of the parameter set) so a step with only a duration never runs the electrode
into exhaustion. Outputs: timeseries.csv (``protocol_step`` is the 0-based index of the step in the
expanded experiment; ``segment`` is discharge / charge / rest / hold / profile, or the step's label),
steps.csv, field snapshots at depths of discharge (``dod_snapshots``; the first time the discharged
charge reaches each, in whichever step), checkpoints every ``checkpoint_every`` time steps and on
SIGINT/SIGTERM; ``resume=True`` continues from the checkpoint inside the step it was written in, with the
same result as an uninterrupted run.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from tomocell.errors import InputError, Interrupted, SolverError
from tomocell.log import get_logger
from tomocell.physics import checkpoint as ckpt
from tomocell.physics.model import HalfCellModel
from tomocell.physics.outputs import TIMESERIES_COLUMNS, OutputWriter, write_csv_rows
from tomocell.physics.parameters import FARADAY
from tomocell.physics.protocols.experiment import Step
from tomocell.physics.solver import StepControl, locate_event, next_step_size, try_step, voltage_error_estimate

log = get_logger("physics.protocols")

COLUMNS = TIMESERIES_COLUMNS
STEP_COLUMNS = ("protocol_step", "text", "kind", "status", "reason", "t_start_s", "t_end_s", "duration_s",
                "v_start_V", "v_end_V", "current_start_A", "current_end_A", "charge_Ah", "energy_Wh", "steps",
                "li_balance_max")


@dataclass
class ExperimentResult:
    """What an experiment did: one summary a step (``steps``, as in steps.csv) and every time step (``rows``)."""

    steps: list[dict[str, Any]]
    one_c_current_A: float
    dofs: int
    wall_s: float
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    snapshots: list[float] = field(default_factory=list)
    newton_total: int = 0
    krylov_total: int = 0
    #: phase -> {volume_um3, inert_volume_um3, inert_fraction}: material excluded as disconnected
    inert: dict[str, dict[str, float]] = field(default_factory=dict)
    mass_g: float = float("nan")
    mass_total_g: float = float("nan")
    area_cm2: float = float("nan")
    linear_solver: str = ""
    solver_switches: list[dict[str, Any]] = field(default_factory=list)
    #: the model's reacting interface area [um^2] (facets against the separator or a porous CBD
    #: weighted by their porosity) and its CBD model ("dense" / "porous")
    reacting_area_um2: float = float("nan")
    cbd: str = ""

    def summary(self) -> dict[str, Any]:
        return {"experiment_steps": self.steps, "one_c_current_A": self.one_c_current_A, "dofs": self.dofs,
                "wall_s": self.wall_s, "time_steps": len(self.rows) - 1, "snapshots": self.snapshots,
                "newton_total": self.newton_total, "krylov_total": self.krylov_total, "inert": self.inert,
                "final_voltage_V": self.rows[-1]["voltage_V"] if self.rows else float("nan"),
                "linear_solver": self.linear_solver, "solver_switches": self.solver_switches,
                "reacting_area_um2": self.reacting_area_um2, "cbd": self.cbd}


def _value_current(kind: str, val: float, v: float, i1c: float, area_m2: float, scale: float) -> float:
    if kind == "current":
        return val * scale
    if kind == "c_rate":
        return val * i1c
    if kind == "current_density":
        return val * area_m2
    if kind == "power":
        return val * scale / v
    if kind == "power_density":
        return val * area_m2 / v
    if kind == "resistance":  # the mesh carries its share of the cell's current: R_mesh = R / scale
        return v * scale / val
    return 0.0


def _imposed(step: Step, t_in: float, v_last: float, i1c: float, area_m2: float, scale: float) -> float:
    """Cell current [A] (+ discharge) of a current-like step ``t_in`` s into it; ``scale`` multiplies
    absolute currents, powers and conductances (the mesh's share of the user's cell)."""
    kind, val = step.kind, step.value
    if kind == "profile":
        ts, vs = step.profile
        val = vs[max(0, int(np.searchsorted(ts, t_in + 1e-9, side="right")) - 1)]
        kind = step.profile_unit
    return _value_current(kind, val, v_last, i1c, area_m2, scale)


def _rate(step: Step, v_ref: float, i1c: float, area_m2: float, scale: float) -> float | None:
    """The step's largest current in C (None for rest and hold: no current of their own)."""
    if step.kind in ("rest", "voltage"):
        return None
    vals = step.profile[1] if step.kind == "profile" else (step.value,)
    kind = step.profile_unit if step.kind == "profile" else step.kind
    r = max(abs(_value_current(kind, v, v_ref, i1c, area_m2, scale)) for v in vals) / i1c
    return r if r > 0 else None


def _cell_current(model: HalfCellModel, q: dict[str, float], cv: bool) -> float:
    return q.get("li_face_current_A", -q["interface_current_A"]) if cv else model.applied_current_A


def _voltage_ends(step: Step) -> list[tuple[float, float]]:
    """(voltage, sign) of the step's voltage terminations: the step ends when sign * (V - voltage) <= 0.
    Without an operator a discharge ends below, a charge above the voltage (PyBaMM's rule)."""
    out = []
    for u in step.until:
        if u.kind != "voltage":
            continue
        op = u.operator or ("<" if step.direction == "discharge" else ">" if step.direction == "charge" else "")
        out.append((u.value, 1.0 if op == "<" else -1.0 if op == ">" else 0.0))
    return out


def _unreachable(step: Step, v: float) -> str:
    for lim, sign in _voltage_ends(step):
        if step.kind != "voltage" and sign and sign * (v - lim) <= 0:
            word = {"discharge": "discharge", "charge": "charge"}.get(step.direction, "step")
            return f"{word} to {lim} V but the voltage is already {v:.4f} V"
    return ""


def _current_ends(step: Step, i1c: float, area: float, scale: float) -> list[tuple[float, str | None]]:
    """(current [A], operator) of the step's current terminations."""
    return [({"current": u.value * scale, "c_rate": u.value * i1c, "current_density": u.value * area}[u.kind], u.operator)
            for u in step.until if u.kind != "voltage"]


def _g_current(i: float, lim: float, op: str | None) -> float:
    """> 0 before a current end, <= 0 at it: |I| < lim (no operator), I < lim, I > lim (signed)."""
    return abs(i) - lim if op is None else (i - lim if op == "<" else lim - i)


def _step_fingerprint(steps: list[Step]) -> list[Any]:
    return [[s.kind, s.value, s.duration_s, [[u.kind, u.value, u.operator] for u in s.until], s.label,
             [list(a) for a in s.profile] if s.profile else None, s.profile_unit] for s in steps]


def report_inert(model: HalfCellModel, max_inert_fraction: float | None) -> dict[str, dict[str, float]]:
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
    n_dry = model.topo.counts.get("dry_cbd_cells", 0)
    if n_dry and model.comm.rank == 0:
        log.info("porous CBD: %d CBD cells whose pores are cut off from the separator hold no electrolyte "
                 "(they still conduct electrons)", n_dry)
    if max_inert_fraction is not None and fa > max_inert_fraction:
        raise InputError(f"{100 * fa:.1f} % of the active material is disconnected from the current collector or "
                         f"the electrolyte (limit {100 * max_inert_fraction:.1f} %, --max-inert): check the mesh "
                         "(`tomocell mesh` reports percolation per phase)")
    return inert


def run_experiment(model: HalfCellModel, steps: list[Step], *, out_dir: str | Path | None = None,
                   control: StepControl | None = None, event_tol_V: float = 1e-4, max_ddod: float = 0.02,
                   max_steps: int = 200_000, initial_theta: float | None = None,
                   cell_area_m2: float | None = None, dod_snapshots: tuple[float, ...] = (),
                   checkpoint_every: int = 25, resume: bool = False, max_inert_fraction: float | None = None,
                   settings: dict[str, Any] | None = None) -> ExperimentResult:
    """Run ``steps`` from equilibrium at ``initial_theta`` (default: the charged state at voltage_max).

    ``cell_area_m2``: the electrode area of the cell the absolute currents, powers and resistances of the
    experiment are meant for ("Discharge at 2 mA" on a 1 cm2 cell); the mesh, a sub-volume, then carries
    its share (mesh collector area / cell area). None: absolute values apply to the mesh as given.
    ``dod_snapshots``: depths of discharge (fractions of the nominal capacity) at which fields are written.
    ``settings``: extra entries of the checkpoint fingerprint (what the caller's options were), checked
    before the experiment's own on ``resume``.

    Writes timeseries.csv, steps.csv, snapshots and checkpoints into ``out_dir`` when given. Raises
    InputError before any solve on bad input (a hold needs the Butler-Volmer Li electrode; a resume whose
    settings differ from the checkpoint's), SolverError when the time stepping cannot continue,
    :class:`~tomocell.errors.Interrupted` after writing a checkpoint on SIGINT/SIGTERM.
    """
    t_wall = time.perf_counter()
    p = model.p
    comm = model.comm
    if not steps:
        raise InputError("the experiment has no steps")
    if any(s.kind == "voltage" for s in steps) and model.li_kinetics != "butler-volmer":
        raise InputError("a voltage hold needs the Butler-Volmer Li electrode (li_kinetics='butler-volmer')")
    if not 0 < max_ddod <= 0.5:
        raise InputError(f"max_ddod must lie in (0, 0.5], got {max_ddod}")
    if max_inert_fraction is not None and not 0 <= max_inert_fraction <= 1:
        raise InputError(f"max_inert_fraction must lie in [0, 1], got {max_inert_fraction}")
    snaps = sorted(float(d) for d in dod_snapshots)
    if any(not 0 < d < 1 for d in snaps):
        raise InputError(f"DoD snapshots must lie in (0, 1), got {dod_snapshots}")
    if cell_area_m2 is not None and not (np.isfinite(cell_area_m2) and cell_area_m2 > 0):
        raise InputError(f"the cell area must be > 0, got {cell_area_m2}")
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise InputError("--resume needs the output directory of the interrupted run")
    ctl = control or StepControl()
    i1c = model.one_c_current_A()
    q_nom = i1c * 3600.0
    area = model.area_cc * model.ell**2
    scale = 1.0 if cell_area_m2 is None else area / cell_area_m2
    inert = report_inert(model, max_inert_fraction)
    mass_g = p.density * model.vol["active"] * model.ell**3 * 1e3  # connected active material
    mass_total_g = p.density * (model.vol["active"] + inert["active"]["inert_volume_um3"]) * model.ell**3 * 1e3
    rates = [_rate(s, p.voltage_min, i1c, area, scale) for s in steps]
    r_max = max((r for r in rates if r), default=1.0)
    v_lo, v_hi = p.voltage_min - 0.5, p.voltage_max + 0.1
    fp = ckpt.fingerprint(model, {
        **(settings or {}), "experiment": _step_fingerprint(steps), "dod_snapshots": snaps,
        "max_ddod": float(max_ddod), "event_tol_V": float(event_tol_V), "initial_theta": initial_theta,
        "cell_area_m2": cell_area_m2,
        "step_control": {k: v for k, v in vars(ctl).items() if isinstance(v, (int, float, bool, str))}})
    if resume:
        arrays, meta = ckpt.read_checkpoint(comm, out, fp)  # InputError naming any mismatch, before writing
    writer = OutputWriter(model, out) if out is not None and snaps else None

    def row(k: int, seg: str, dt_: float, cur: float, q: dict[str, float], st: Any, bal: float) -> dict[str, Any]:
        return {"step": S["n"], "t_s": S["t"], "dt_s": dt_, "segment": seg, "protocol_step": k,
                "voltage_V": q["voltage_V"], "current_A": cur, "current_density_A_m2": cur / area,
                "capacity_Ah": S["q_dis"] / 3600.0, "capacity_mAh_g": S["q_dis"] / 3.6 / mass_total_g,
                "capacity_mAh_cm2": S["q_dis"] / 3.6 / (area * 1e4), "dod": S["q_dis"] / q_nom,
                "mean_stoichiometry": q["mean_stoichiometry"], "li_solid_mol": q["li_solid_mol"],
                "li_electrolyte_mol": q["li_electrolyte_mol"], "li_total_mol": q["li_solid_mol"] + q["li_electrolyte_mol"],
                "li_balance_rel": bal, "interface_current_A": q["interface_current_A"],
                "li_face_current_A": q.get("li_face_current_A", float("nan")),
                "charge_balance_rel": (cur + q["interface_current_A"]) / i1c, "c_e_min_mol_m3": q["c_e_min"],
                "phi_e_li_V": q["phi_e_li_V"], "newton_its": getattr(st, "newton", 0),
                "krylov_its": getattr(st, "krylov", 0), "retries": getattr(st, "retries", 0)}

    # S: everything the loop carries from one time step to the next (a checkpoint saves it whole)
    if resume:
        model.restore(arrays)
        S = meta["state"]
        if writer is not None:
            writer.sol_columns = meta.get("sol_columns", [])
            writer.particle_sol = {k: np.asarray(v) for k, v in meta.get("particle_sol", {}).items()}
        model.solver_switches.extend(S.get("solver_switches", []))
        log.info("resumed at time step %d, t = %.1f s, experiment step %d", S["n"], S["t"], S["k"])
    else:
        model.set_state(p.theta_limits()[0] if initial_theta is None else initial_theta, 1.0, 0.0)
        model.set_potentiostatic(None)
        model.set_current_A(0.0)
        q0 = model.quantities()
        S = {"k": 0, "local": None, "t": 0.0, "q_dis": 0.0, "n": 0, "summaries": [], "snaps": [], "q_prev": q0,
             "newton": 0, "krylov": 0}
        S["rows"] = [row(0, steps[0].label or steps[0].direction, 0.0, 0.0, q0, None, 0.0)]
    rows, summaries = S["rows"], S["summaries"]

    def save_checkpoint() -> None:
        if out is None:
            return
        S["solver_switches"] = list(model.solver_switches)
        meta = {"step": S["n"], "t": S["t"], "protocol_step": S["k"], "state": S, "fingerprint": fp, "sol_columns": writer.sol_columns if writer else [],
                "particle_sol": {k: v.tolist() for k, v in (writer.particle_sol.items() if writer else [])}}
        ckpt.write_checkpoint(comm, out, model.snapshot(), meta)
        if comm.rank == 0:
            write_csv_rows(out / "timeseries.csv", COLUMNS, rows)

    n_loop = 0
    with ckpt.TermFlag() as term:
        while S["k"] < len(steps):
            k = S["k"]
            step = steps[k]
            seg = step.label or step.direction
            cv = step.kind == "voltage"
            q_prev = S["q_prev"]
            rate = rates[k] or r_max
            dt_cap = min(ctl.dt_max_s, max_ddod * 3600.0 / rate)
            v_ends = _voltage_ends(step)
            i_ends = _current_ends(step, i1c, area, scale)
            if S["local"] is None:  # the step starts
                why = _unreachable(step, q_prev["voltage_V"])
                if not why and cv and len(rows) > 1 and rows[-1]["voltage_V"] == step.value and any(
                        _g_current(rows[-1]["current_A"], lim, op) <= 0 for lim, op in i_ends):
                    why = f"hold at {step.value} V: its end current is already met"
                if why:
                    log.warning("experiment step %d (%s) skipped: %s", k, step.text, why)
                    summaries.append(_summary(k, step, "skipped", why, rows[-1:], S["t"], q_prev["voltage_V"], 0.0))
                    S["k"] += 1
                    continue
                dt0 = 2e-3 * 3600.0 / rate
                if step.duration_s is not None and step.kind != "rest":
                    dt0 = min(dt0, step.duration_s / 20)
                S["local"] = {"t0": S["t"], "v0": q_prev["voltage_V"], "n0": S["n"], "qd0": S["q_dis"],
                              "dt": max(ctl.dt_min_s, min(dt0, dt_cap)), "first": True}
            L = S["local"]
            if n_loop >= max_steps:
                raise SolverError(f"experiment step {k} ({step.text!r}): no cut-off after {max_steps} time steps")
            model.set_potentiostatic(step.value if cv else None)
            t_in = S["t"] - L["t0"]
            dt_try = min(L["dt"], dt_cap)
            if step.duration_s is not None and step.kind != "rest":  # pulses resolved: >= 20 steps
                dt_try = min(dt_try, step.duration_s / 20)
            if step.duration_s is not None:
                left = step.duration_s - t_in
                dt_try = left if left < 1.5 * dt_try else dt_try
            if step.kind == "profile":
                ts = step.profile[0]
                nxt = ts[min(len(ts) - 1, int(np.searchsorted(ts, t_in + 1e-9, side="right")))]
                dt_try = min(dt_try, nxt - t_in) if nxt > t_in + 1e-9 else dt_try
            cur = 0.0 if cv else _imposed(step, t_in, q_prev["voltage_V"], i1c, area, scale)
            pending = [d for d in snaps if d not in S["snaps"] and d * q_nom > S["q_dis"] + 1e-9 * q_nom]
            if pending and cur > 0:  # land on the snapshot without leaving a sliver of a step behind
                remaining = (pending[0] * q_nom - S["q_dis"]) / cur
                dt_try = remaining if remaining < 1.5 * dt_try else dt_try
            if not cv:
                model.set_current_A(cur)
            pre = model.snapshot()
            n_switch = len(model.solver_switches)
            st = try_step(model, dt_try, ctl)
            dt_try = st.dt
            for sw in model.solver_switches[n_switch:]:
                sw.update({"t_s": S["t"], "step": S["n"] + 1})
            q = model.quantities()
            # terminations, located in time: g > 0 before, <= 0 at the end
            limits = [] if cv else [(v, sg or (1.0 if cur > 0 else -1.0)) for v, sg in v_ends if sg or cur != 0.0]
            if not cv and cur != 0.0:
                limits.append((v_lo, 1.0) if cur > 0 else (v_hi, -1.0))
            hit = None
            for lim, sign in limits:
                if sign * (q["voltage_V"] - lim) < 0 <= sign * (q_prev["voltage_V"] - lim):
                    hit = ("voltage", lim, sign)
                    break
            i_now = _cell_current(model, q, True) if cv else cur
            for lim, op in (i_ends if hit is None else []):
                if _g_current(i_now, lim, op) < 0:
                    hit = ("current", lim, op)
                    break
            reason = ""
            if hit is not None:
                kind, lim, sign = hit

                def g(kind: str = kind, lim: float = lim, sign: Any = sign) -> float:
                    qq = model.quantities()
                    return (sign * (qq["voltage_V"] - lim) if kind == "voltage"
                            else _g_current(_cell_current(model, qq, True), lim, sign))

                g_hi = sign * (q["voltage_V"] - lim) if kind == "voltage" else _g_current(i_now, lim, sign)
                g_lo = (sign * (q_prev["voltage_V"] - lim) if kind == "voltage"
                        else _g_current(rows[-1]["current_A"], lim, sign) if cv and not L["first"] else np.inf)
                if np.isfinite(g_lo) and g_lo > 0:
                    model.restore(pre)
                    tol = event_tol_V if kind == "voltage" else 1e-3 * abs(lim)
                    dt_try, st2 = locate_event(model, g, dt_try, g_lo, g_hi, ctl, tol)
                    st.newton += st2.newton
                    st.jacobians += st2.jacobians if st.jacobians >= 0 and st2.jacobians >= 0 else 0
                    st.krylov += st2.krylov
                    q = model.quantities()
                reason = (f"{lim:g} V" if kind == "voltage" else f"{sign or ''}{lim:.4g} A".strip()) + (
                    " (safety limit)" if kind == "voltage" and lim in (v_lo, v_hi) and lim not in [v for v, _ in v_ends] else "")
            model.accept_step()
            if cv:
                cur = _cell_current(model, q, True)
            S["t"] += dt_try
            S["q_dis"] += cur * dt_try
            S["n"] += 1
            n_loop += 1
            passed = cur * dt_try / FARADAY  # Li change of the step (integrated from c - c_old) vs charge / F
            bal = (q["dli_mol"] - passed) / (abs(passed) if passed else
                                             max(abs(q["li_solid_mol"] + q["li_electrolyte_mol"]), 1e-300))
            S["newton"] += st.newton
            S["krylov"] += st.krylov
            rows.append(row(k, seg, dt_try, cur, q, st, bal))
            dv = 0.0 if L["first"] else q["voltage_V"] - q_prev["voltage_V"]
            prev = L.get("prev")  # (dt, dV, current) of the step before, same experiment step
            verr = voltage_error_estimate(dt_try, dv, prev[0], prev[1]) if prev and prev[2] == cur else 0.0
            L["prev"] = None if L["first"] else [dt_try, dv, cur]
            S["q_prev"] = q
            if pending and abs(S["q_dis"] - pending[0] * q_nom) <= 1e-9 * q_nom:
                S["snaps"].append(pending[0])
                if writer is not None:
                    writer.write_snapshot(pending[0], {"t_s": S["t"], "dod": pending[0], "voltage_V": q["voltage_V"],
                                                       "capacity_Ah": S["q_dis"] / 3600.0, "protocol_step": k})
            L["dt"] = next_step_size(min(L["dt"], dt_cap), dt_try, st.effort, st.retries, ctl, dvoltage_V=dv,
                                     verror_V=verr)
            L["first"] = False
            if not reason and step.duration_s is not None and \
                    S["t"] - L["t0"] >= step.duration_s - 1e-9 * max(1.0, step.duration_s):
                reason = "duration"
            if reason:
                summaries.append(_summary(k, step, "done", reason, rows[L["n0"]:], L["t0"], L["v0"],
                                          (S["q_dis"] - L["qd0"]) / 3600.0))
                log.info("experiment step %d (%s): %s at t = %.1f s, V = %.4f V", k, step.text, reason, S["t"],
                         q["voltage_V"])
                S["k"], S["local"] = k + 1, None
            if out is not None and S["n"] % max(checkpoint_every, 1) == 0:
                save_checkpoint()
            signum = int(comm.allreduce(term.signum, op=MPI.MAX))
            if signum:
                save_checkpoint()
                name = signal.Signals(signum).name
                raise Interrupted(f"stopped by {name} at step {S['n']}, t = {S['t']:.1f} s; checkpoint written"
                                  + (f", continue with --resume (same settings, --out {out})" if out is not None else ""),
                                  signum)
            if S["n"] % 10 == 0:
                log.info("step %d t=%.1f s V=%.4f V DoD=%.3f dt=%.3g s newton=%d (experiment step %d)", S["n"], S["t"],
                         q["voltage_V"], S["q_dis"] / q_nom, dt_try, st.newton, k)
    res = ExperimentResult(summaries, i1c, model.dof_count(), time.perf_counter() - t_wall, rows, list(S["snaps"]),
                           S["newton"], S["krylov"], inert, mass_g, mass_total_g, area * 1e4, model.linear_solver,
                           list(model.solver_switches), float(model.area_iface) * (model.ell / 1e-6) ** 2,
                           getattr(model, "cbd", "dense"))
    if out is not None and comm.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_csv_rows(out / "timeseries.csv", COLUMNS, rows)
        write_csv_rows(out / "steps.csv", STEP_COLUMNS, summaries)
    return res


def _summary(k: int, step: Step, status: str, reason: str, rows: list[dict[str, Any]], t0: float, v0: float,
             charge_Ah: float) -> dict[str, Any]:
    """One line of steps.csv; ``rows`` from the step's start row (the previous step's last) to its end."""
    body = rows[1:]
    return {"protocol_step": k, "text": step.text, "kind": step.kind, "status": status, "reason": reason,
            "t_start_s": t0, "t_end_s": rows[-1]["t_s"], "duration_s": rows[-1]["t_s"] - t0, "v_start_V": v0,
            "v_end_V": rows[-1]["voltage_V"], "current_start_A": body[0]["current_A"] if body else 0.0,
            "current_end_A": body[-1]["current_A"] if body else 0.0, "charge_Ah": charge_Ah,
            "energy_Wh": sum(r["voltage_V"] * r["current_A"] * r["dt_s"] for r in body) / 3600.0,
            "steps": len(body), "li_balance_max": max((abs(r["li_balance_rel"]) for r in body), default=0.0)}
