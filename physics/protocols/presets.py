"""``tomocell simulate --experiment-preset gitt|hppc``: the GITT or HPPC experiment of :mod:`.pulses`, and
its derived table and figure written next to the run.

gitt.csv: one row a pulse: SOC after the pulse, mean stoichiometry, pulse length, dE_s, dE_t, the sqrt(t)
slope and the Weppner-Huggins apparent diffusivity D_app [m2/s] (V/S of the mesh: connected active volume
over the active/electrolyte interface area). hppc.csv: one row a pulse: direction, SOC, current, the rest
voltage and the 10 s pulse resistance [Ohm and Ohm cm2 of projected area]. gitt.png / hppc.png: the
voltage against time and the derived quantity against SOC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tomocell.errors import InputError
from tomocell.physics.outputs import write_csv_rows
from tomocell.physics.protocols.pulses import analyse_gitt, analyse_hppc, gitt_experiment, hppc_experiment

PRESETS = ("gitt", "hppc")
GITT_COLUMNS = ("pulse_step", "soc", "mean_stoichiometry", "t_start_s", "tau_s", "current_A", "dE_s_V", "dE_t_V",
                "slope_V_per_sqrt_s", "D_app_m2_s", "valid_tau_ratio")
HPPC_COLUMNS = ("pulse_step", "direction", "soc", "mean_stoichiometry", "t_start_s", "current_A", "v_rest_V",
                "v_10s_V", "R_10s_ohm", "R_10s_ohm_cm2", "R_first_step_ohm", "first_step_s")


def preset_experiment(name: str) -> list[str]:
    """The step strings of a preset (GITT: C/10 pulses of 30 min, 1 h rests, 18 pulses: 90 % of the nominal
    capacity in steps of 5 %; HPPC: 1C pulses of 10 s with 40 s rests at 5 SOC levels 10 % apart, 1 h
    relaxation before each)."""
    if name == "gitt":
        return gitt_experiment(0.1, 1800.0, 3600.0, 18)
    if name == "hppc":
        return hppc_experiment()
    raise InputError(f"--experiment-preset {name!r}: expected one of {', '.join(PRESETS)}")


def write_preset_outputs(name: str, model: Any, rows: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """Analyse the run of preset ``name`` and write its table (gitt.csv / hppc.csv) and figure into ``out``."""
    x0, x1 = model.p.theta_limits()

    def soc(theta: float) -> float:
        return (x1 - theta) / (x1 - x0)

    if name == "gitt":
        v_over_s = model.vol["active"] / model.area_iface * model.ell
        table = [{**g, "soc": soc(g["mean_stoichiometry"]), "D_app_m2_s": g["D_m2_s"]} for g in analyse_gitt(rows, v_over_s)]
        cols, ycol, ylabel, log = GITT_COLUMNS, "D_app_m2_s", "apparent diffusivity D_app [m$^2$/s]", True
    else:
        area_cm2 = model.area_cc * model.ell**2 * 1e4
        table = [{**h, "soc": soc(h["mean_stoichiometry"]), "R_10s_ohm_cm2": h["R_10s_ohm"] * area_cm2}
                 for h in analyse_hppc(rows)]
        cols, ycol, ylabel, log = HPPC_COLUMNS, "R_10s_ohm_cm2", "10 s pulse resistance [$\\Omega$ cm$^2$]", False
    if model.comm.rank != 0:
        return table
    write_csv_rows(out / f"{name}.csv", cols, table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot([r["t_s"] / 3600.0 for r in rows], [r["voltage_V"] for r in rows], lw=1)
    a.set_xlabel("time [h]")
    a.set_ylabel("cell voltage vs Li/Li$^+$ [V]")
    a.set_title(f"{name.upper()} experiment")
    for direction, marker in (("discharge", "o"), ("charge", "s")) if name == "hppc" else ((None, "o"),):
        sel = [r for r in table if direction is None or r["direction"] == direction]
        b.plot([r["soc"] for r in sel], [r[ycol] for r in sel], marker=marker, label=direction or None)
    if name == "hppc":
        b.legend()
    if log:
        b.set_yscale("log")
    b.set_xlabel("state of charge [-]")
    b.set_ylabel(ylabel)
    b.set_title("per pulse")
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=120)
    plt.close(fig)
    return table
