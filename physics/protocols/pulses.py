"""GITT and HPPC: the experiments as PyBaMM step strings, and their derived quantities from a run.

GITT (galvanostatic intermittent titration, Weppner & Huggins, J. Electrochem. Soc. 124 (1977) 1569):
current pulses of length tau, each followed by a rest to equilibrium. For a pulse short against the
diffusion time (tau << (V/S)^2 / D) the surface concentration grows with sqrt(t) (semi-infinite
diffusion), and

    D = 4 / (pi tau^2) (V/S)^2 (dE_s / s)^2,    s = dE/dsqrt(t) during the pulse,

with dE_s the change of the relaxed voltage across the pulse and V/S the active volume over its
electrolyte interface (for a sphere R/3). With s * sqrt(tau) = dE_t this is Weppner-Huggins' 4/(pi tau)
(V/S)^2 (dE_s/dE_t)^2; the slope is fitted over the later part of the pulse (``fit_from``, default the
last 3/4), so the ohmic and kinetic jump at the pulse start drops out.

HPPC (hybrid pulse power characterisation, US DOE/INL FreedomCAR manual): a discharge and a charge
pulse from rest; the pulse resistance is R(t) = |V(t0 + t) - V(t0)| / |I| at t = 10 s into each pulse
(and at the first time step, the ohmic part).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tomocell.errors import InputError


def gitt_experiment(c_rate: float = 0.1, pulse_s: float = 600.0, rest_s: float = 3600.0, pulses: int = 10) -> list[str]:
    """GITT as one repeated block: (Discharge at X C for pulse_s s, Rest for rest_s s) x pulses."""
    if not (c_rate > 0 and pulse_s > 0 and rest_s > 0 and pulses >= 1):
        raise InputError("GITT needs a C-rate, pulse and rest durations > 0 and at least one pulse")
    return [f"(Discharge at {c_rate:g}C for {pulse_s:g} seconds, Rest for {rest_s:g} seconds) x {int(pulses)}"]


def hppc_experiment(c_rate: float = 1.0, pulse_s: float = 10.0, rest_s: float = 40.0, soc_step_c_rate: float = 1.0,
                    soc_step_s: float = 360.0, relax_s: float = 3600.0, levels: int = 5) -> list[str]:
    """HPPC: at each SoC level a discharge pulse, a rest, a charge pulse (same current), then a move of
    the SoC (discharge) and a rest to equilibrium."""
    if not (c_rate > 0 and pulse_s > 0 and rest_s > 0 and soc_step_s > 0 and relax_s > 0 and levels >= 1):
        raise InputError("HPPC needs positive rates and durations and at least one level")
    return [f"(Rest for {relax_s:g} seconds, Discharge at {c_rate:g}C for {pulse_s:g} seconds, "
            f"Rest for {rest_s:g} seconds, Charge at {c_rate:g}C for {pulse_s:g} seconds, Rest for {rest_s:g} seconds, "
            f"Discharge at {soc_step_c_rate:g}C for {soc_step_s:g} seconds) x {int(levels)}"]


def _by_step(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows[1:]:
        out.setdefault(int(r["protocol_step"]), []).append(r)
    return out


def _f(r: dict[str, Any], k: str) -> float:
    return float(r[k])


def analyse_gitt(rows: list[dict[str, Any]], v_over_s_m: float, fit_from: float = 0.25) -> list[dict[str, Any]]:
    """One row a GITT pulse (a current step followed by a rest): dE_s, sqrt(t) slope, dE_t, D [m2/s].

    ``rows``: the time series (timeseries.csv rows or ExperimentResult.rows); ``v_over_s_m``: active
    volume over interface area [m]. A pulse whose relaxed voltage does not move gives D = nan.
    """
    if not v_over_s_m > 0:
        raise InputError(f"GITT analysis needs V/S > 0, got {v_over_s_m}")
    steps = _by_step(rows)
    keys = sorted(steps)
    out = []
    for a, b in zip(keys, keys[1:]):
        pulse, rest = steps[a], steps[b]
        if not (abs(_f(pulse[-1], "current_A")) > 0 and all(_f(r, "current_A") == 0.0 for r in rest)):
            continue
        prev = [r for r in rows if int(r["protocol_step"]) < a] or rows[:1]
        t0, e0 = _f(prev[-1], "t_s"), _f(prev[-1], "voltage_V")
        t = np.array([_f(r, "t_s") for r in pulse]) - t0
        e = np.array([_f(r, "voltage_V") for r in pulse])
        tau = float(t[-1])
        sel = t >= fit_from * tau
        if sel.sum() < 3:
            raise InputError(f"GITT pulse {a}: fewer than 3 time steps in the fitted part of the pulse; "
                             "shorten --max-ddod or lengthen the pulse")
        slope = float(np.polyfit(np.sqrt(t[sel]), e[sel], 1)[0])
        de_s = _f(rest[-1], "voltage_V") - e0
        d = 4.0 / (math.pi * tau**2) * v_over_s_m**2 * (de_s / slope) ** 2 if slope != 0 and de_s != 0 else float("nan")
        out.append({"pulse_step": a, "t_start_s": t0, "tau_s": tau, "current_A": _f(pulse[-1], "current_A"),
                    "mean_stoichiometry": _f(rest[-1], "mean_stoichiometry"), "dE_s_V": de_s,
                    "slope_V_per_sqrt_s": slope, "dE_t_V": slope * math.sqrt(tau), "D_m2_s": d,
                    "valid_tau_ratio": tau * d / v_over_s_m**2 if math.isfinite(d) else float("nan")})
    return out


def analyse_hppc(rows: list[dict[str, Any]], at_s: float = 10.0, max_pulse_s: float = 30.0) -> list[dict[str, Any]]:
    """One row a pulse (a current step from rest, ``at_s`` to ``max_pulse_s`` long; longer ones move the SoC):
    R at ``at_s`` (interpolated) and at the first time step [Ohm]."""
    steps = _by_step(rows)
    out = []
    for k in sorted(steps):
        pulse = steps[k]
        prev = [r for r in rows if int(r["protocol_step"]) < k]
        if not prev or _f(prev[-1], "current_A") != 0.0 or _f(pulse[0], "current_A") == 0.0:
            continue
        t0, v0 = _f(prev[-1], "t_s"), _f(prev[-1], "voltage_V")
        t = np.array([0.0] + [_f(r, "t_s") - t0 for r in pulse])
        v = np.array([v0] + [_f(r, "voltage_V") for r in pulse])
        i = _f(pulse[-1], "current_A")
        if not at_s - 1e-9 <= t[-1] <= max_pulse_s:
            continue
        v_at = float(np.interp(at_s, t, v))
        out.append({"pulse_step": k, "direction": "discharge" if i > 0 else "charge", "t_start_s": t0,
                    "mean_stoichiometry": _f(prev[-1], "mean_stoichiometry"), "current_A": i, "v_rest_V": v0,
                    f"v_{at_s:g}s_V": v_at, f"R_{at_s:g}s_ohm": abs(v_at - v0) / abs(i),
                    "R_first_step_ohm": abs(float(v[1]) - v0) / abs(i), "first_step_s": float(t[1])})
    return out
