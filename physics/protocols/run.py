"""Run an expanded experiment (:mod:`.experiment`) on the half-cell model, step after step.

Every step starts from the state the previous one left; the time step is adaptive (the same control as
:func:`tomocell.physics.discharge.simulate_discharge`) and is cut to land exactly on a step's duration
and on drive-cycle breakpoints. Voltage terminations are located in time (regula falsi on the step
length, within ``event_tol_V``), and so is the end current of a voltage hold (within 0.1 % of it).
A power step sets the current from the voltage of the last accepted time step (I = P / V, explicit).

A step that cannot be reached is skipped with a warning and recorded as such in steps.csv: a discharge
to a voltage at or above the present one, a charge to one at or below it, a hold whose end current is
already met. Every current step also ends at the safety limits (``voltage_min`` - 0.5 V and
``voltage_max`` + 0.1 V of the parameter set) so a step with only a duration never runs the electrode
into exhaustion. Outputs: timeseries.csv (with ``protocol_step``, the 0-based index of the step in the
expanded experiment; ``segment`` is discharge / charge / rest / hold / profile) and steps.csv.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.errors import InputError, SolverError
from tomocell.log import get_logger
from tomocell.physics.model import HalfCellModel
from tomocell.physics.outputs import TIMESERIES_COLUMNS, write_csv_rows
from tomocell.physics.parameters import FARADAY
from tomocell.physics.protocols.experiment import Step
from tomocell.physics.solver import StepControl, locate_event, next_step_size, try_step

log = get_logger("physics.protocols")

COLUMNS = TIMESERIES_COLUMNS[:4] + ("protocol_step",) + TIMESERIES_COLUMNS[4:]
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

    def summary(self) -> dict[str, Any]:
        return {"experiment_steps": self.steps, "one_c_current_A": self.one_c_current_A, "dofs": self.dofs,
                "wall_s": self.wall_s, "time_steps": len(self.rows) - 1,
                "final_voltage_V": self.rows[-1]["voltage_V"] if self.rows else float("nan")}


def _imposed(step: Step, t_in: float, v_last: float, i1c: float, area_m2: float, scale: float) -> float:
    """Cell current [A] (+ discharge) of a current-like step ``t_in`` s into it; ``scale`` multiplies
    absolute currents and powers (the mesh's share of the user's cell)."""
    kind, val = step.kind, step.value
    if kind == "profile":
        ts, vs = step.profile
        val = vs[max(0, int(np.searchsorted(ts, t_in + 1e-9, side="right")) - 1)]
        kind = step.profile_unit
    if kind == "current":
        return val * scale
    if kind == "c_rate":
        return val * i1c
    if kind == "current_density":
        return val * area_m2
    if kind == "power":
        return val * scale / v_last
    if kind == "power_density":
        return val * area_m2 / v_last
    return 0.0


def _cell_current(model: HalfCellModel, q: dict[str, float], cv: bool) -> float:
    return q.get("li_face_current_A", -q["interface_current_A"]) if cv else model.applied_current_A


def _unreachable(step: Step, v: float) -> str:
    for u in step.until:
        if u.kind == "voltage" and step.kind != "voltage":
            if step.value > 0 and v <= u.value:
                return f"discharge to {u.value} V but the voltage is already {v:.4f} V"
            if step.value < 0 and v >= u.value:
                return f"charge to {u.value} V but the voltage is already {v:.4f} V"
    return ""


def _end_current(u: Any, i1c: float, area: float, scale: float) -> float:
    return {"current": u.value * scale, "c_rate": u.value * i1c, "current_density": u.value * area}.get(u.kind, np.nan)


def run_experiment(model: HalfCellModel, steps: list[Step], *, out_dir: str | Path | None = None,
                   control: StepControl | None = None, event_tol_V: float = 1e-4, max_ddod: float = 0.02,
                   max_steps: int = 200_000, initial_theta: float | None = None,
                   cell_area_m2: float | None = None) -> ExperimentResult:
    """Run ``steps`` from equilibrium at ``initial_theta`` (default: the charged state at voltage_max).

    ``cell_area_m2``: the electrode area of the cell the absolute currents and powers of the experiment
    are meant for ("Discharge at 2 mA" on a 1 cm2 cell); the mesh, a sub-volume, then carries its share
    (mesh collector area / cell area). None: absolute values apply to the mesh as given.

    Writes timeseries.csv and steps.csv into ``out_dir`` when given. Raises InputError before any solve
    when a step needs what the model lacks (a hold needs the Butler-Volmer Li electrode), SolverError when
    the time stepping cannot continue.
    """
    t_wall = time.perf_counter()
    p = model.p
    if any(s.kind == "voltage" for s in steps) and model.li_kinetics != "butler-volmer":
        raise InputError("a voltage hold needs the Butler-Volmer Li electrode (li_kinetics='butler-volmer')")
    ctl = control or StepControl()
    i1c = model.one_c_current_A()
    area = model.area_cc * model.ell**2
    if cell_area_m2 is not None and not (np.isfinite(cell_area_m2) and cell_area_m2 > 0):
        raise InputError(f"the cell area must be > 0, got {cell_area_m2}")
    scale = 1.0 if cell_area_m2 is None else area / cell_area_m2
    mass_g = p.density * model.vol["active"] * model.ell**3 * 1e3
    ctl.dt_max_s = min(ctl.dt_max_s, max_ddod * 3600.0)
    v_lo, v_hi = p.voltage_min - 0.5, p.voltage_max + 0.1
    x0, _ = p.theta_limits()
    model.set_state(x0 if initial_theta is None else initial_theta, 1.0, 0.0)
    model.set_potentiostatic(None)
    model.set_current_A(0.0)
    q_prev = model.quantities()
    li_prev = q_prev["li_solid_mol"] + q_prev["li_electrolyte_mol"]
    t, q_dis, n = 0.0, 0.0, 0
    summaries: list[dict[str, Any]] = []

    def row(k: int, seg: str, dt_: float, cur: float, q: dict[str, float], st: Any, bal: float) -> dict[str, Any]:
        return {"step": n, "t_s": t, "dt_s": dt_, "segment": seg, "protocol_step": k, "voltage_V": q["voltage_V"],
                "current_A": cur, "current_density_A_m2": cur / area, "capacity_Ah": q_dis / 3600.0,
                "capacity_mAh_g": q_dis / 3.6 / mass_g, "capacity_mAh_cm2": q_dis / 3.6 / (area * 1e4),
                "dod": q_dis / (i1c * 3600.0), "mean_stoichiometry": q["mean_stoichiometry"],
                "li_solid_mol": q["li_solid_mol"], "li_electrolyte_mol": q["li_electrolyte_mol"],
                "li_total_mol": q["li_solid_mol"] + q["li_electrolyte_mol"], "li_balance_rel": bal,
                "interface_current_A": q["interface_current_A"], "c_e_min_mol_m3": q["c_e_min"],
                "phi_e_li_V": q["phi_e_li_V"], "newton_its": getattr(st, "newton", 0),
                "krylov_its": getattr(st, "krylov", 0), "retries": getattr(st, "retries", 0)}

    rows = [row(0, steps[0].direction, 0.0, 0.0, q_prev, None, 0.0)]
    for k, step in enumerate(steps):
        seg = step.direction
        cv = step.kind == "voltage"
        t0, v0, n0, qd0 = t, q_prev["voltage_V"], n, q_dis
        i_end = [_end_current(u, i1c, area, scale) for u in step.until if u.kind != "voltage"]
        v_ends = [u.value for u in step.until if u.kind == "voltage"]
        why = _unreachable(step, v0)
        if why:
            log.warning("experiment step %d (%s) skipped: %s", k, step.text, why)
            summaries.append(_summary(k, step, "skipped", why, rows[-1:], t0, v0, 0.0))
            continue
        model.set_potentiostatic(step.value if cv else None)
        dt = max(ctl.dt_min_s, min(ctl.dt_init_s, 2e-3 * 3600.0, (step.duration_s or np.inf) / 20))
        reason, first = "", True
        while not reason:
            if n - n0 >= max_steps:
                raise SolverError(f"experiment step {k} ({step.text!r}) did not end after {max_steps} time steps")
            t_in = t - t0
            dt_try = min(dt, ctl.dt_max_s)
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
            if not cv:
                model.set_current_A(cur)
            pre = model.snapshot()
            st = try_step(model, dt_try, ctl)
            dt_try = st.dt
            q = model.quantities()
            # terminations, located in time: g > 0 before, <= 0 at the end
            limits = [(v, 1.0 if cur > 0 else -1.0) for v in v_ends] if not cv else []
            if not cv and cur != 0.0:
                limits.append((v_lo, 1.0) if cur > 0 else (v_hi, -1.0))
            hit = None
            for lim, sign in limits:
                if sign * (q["voltage_V"] - lim) < 0 <= sign * (q_prev["voltage_V"] - lim):
                    hit = ("voltage", lim, sign)
                    break
            if cv and i_end:
                i_now = abs(_cell_current(model, q, True))
                if i_now < max(i_end):
                    hit = ("current", max(i_end), 1.0)
            if hit is not None:
                kind, lim, sign = hit
                g_hi = sign * (q["voltage_V"] - lim) if kind == "voltage" else abs(_cell_current(model, q, True)) - lim

                def g(kind: str = kind, lim: float = lim, sign: float = sign) -> float:
                    qq = model.quantities()
                    return sign * (qq["voltage_V"] - lim) if kind == "voltage" else abs(_cell_current(model, qq, True)) - lim

                g_lo = (sign * (q_prev["voltage_V"] - lim) if kind == "voltage"
                        else abs(rows[-1]["current_A"]) - lim if not first else np.inf)
                if np.isfinite(g_lo) and g_lo > 0:
                    model.restore(pre)
                    tol = event_tol_V if kind == "voltage" else 1e-3 * lim
                    dt_try, st2 = locate_event(model, g, dt_try, g_lo, g_hi, ctl, tol)
                    st.newton += st2.newton
                    q = model.quantities()
                reason = (f"{lim:g} V" if kind == "voltage" else f"{lim:.4g} A") + (
                    " (safety limit)" if kind == "voltage" and lim in (v_lo, v_hi) and lim not in v_ends else "")
            model.accept_step()
            if cv:
                cur = _cell_current(model, q, True)
            t += dt_try
            q_dis += cur * dt_try
            n += 1
            li_now = q["li_solid_mol"] + q["li_electrolyte_mol"]
            passed = cur * dt_try / FARADAY
            bal = (li_now - li_prev - passed) / (abs(passed) if passed else max(abs(li_now), 1e-300))
            li_prev = li_now
            rows.append(row(k, seg, dt_try, cur, q, st, bal))
            dv = 0.0 if first else q["voltage_V"] - q_prev["voltage_V"]
            q_prev = q
            dt = next_step_size(min(dt, ctl.dt_max_s), dt_try, st.newton, st.retries, ctl, dvoltage_V=dv)
            first = False
            if not reason and step.duration_s is not None and t - t0 >= step.duration_s - 1e-9 * max(1.0, step.duration_s):
                reason = "duration"
        summaries.append(_summary(k, step, "done", reason, rows[n0:], t0, v0, (q_dis - qd0) / 3600.0))
        log.info("experiment step %d (%s): %s at t = %.1f s, V = %.4f V", k, step.text, reason, t, q_prev["voltage_V"])
    res = ExperimentResult(summaries, i1c, model.dof_count(), time.perf_counter() - t_wall, rows)
    if out_dir is not None and model.comm.rank == 0:
        out = Path(out_dir)
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
