"""Rate capability and Ragone study (Lu et al. 2020, Fig. 8): designs x C-rates.

Every *design* (a named list of structure variants applied to the study's input volume: as
prepared, graded particle, graded porosity R1..R3, high porosity, thick, calendered, ...) is
discharged at every C-rate of ``c_rates``. Per run: accessible specific capacity, specific energy
(integral of V dQ to the cut-off, Wh/kg active material) and specific power (energy / discharge
time, W/kg); see :mod:`tomocell.studies.electrochem`.

Figures: accessible capacity against C-rate (Fig. 8b), the Ragone plot specific energy against
specific power per kg of active material (Fig. 8a) with the knee point of each curve marked (Kneedle
on log-log axes, :func:`tomocell.studies.analysis_stats.ragone_knee`: the highest power before the
energy collapses), and the voltage curves. ``ragone.csv`` lists each design's knee. Each finished
discharge is also run through its homogenised PyBaMM DFN twin (``twin.csv``,
``figures/twin_vs_resolved.png``; :mod:`tomocell.studies.rate_twin`).

Config (``studies/configs/rate_capability.toml``)::

    c_rates = [0.5, 1.0, 2.5, 5.0]
    [volume.synthetic]  ...             # or path = "..." (see tomocell.studies.inputs)
    [mesh]      route, coarsen, separator_um
    [simulate]  params, overrides, max_ddod, dod_snapshots, linear_solver
    [[designs]] name = "as-prepared", variants = []
    [[designs]] name = "graded-particle", variants = [{kind = "graded_particle", band_um = 12.0}]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.atomic import atomic_path
from tomocell.errors import InputError
from tomocell.studies.electrochem import reuse_option, run_discharge, sim_options, structure_params
from tomocell.studies.runner import Figure, RunOutcome, RunSpec, save_figure

NAME = "rate-capability"
CONFIG_NAME = "rate_capability"
DESCRIPTION = (
    "Rate capability and Ragone study (paper Fig. 8): each electrode design discharged at each C-rate; "
    "accessible specific capacity against C-rate, and specific energy (integral of V dQ to the 3.0 V cut-off) "
    "against specific power (energy / discharge time), both per kg of active material, with the knee point "
    "of every Ragone curve marked."
)

_DESIGN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,60}$")


def c_rate_list(config: dict[str, Any], key: str = "c_rates") -> list[float]:
    vals = config.get(key)
    if not isinstance(vals, (list, tuple)) or not vals:
        raise InputError(f"{key} must be a non-empty list of C-rates (> 0), got {vals!r}")
    try:
        out = [float(v) for v in vals]
    except (TypeError, ValueError):
        raise InputError(f"{key} must hold numbers, got {vals!r}") from None
    if any(not v > 0 for v in out):
        raise InputError(f"{key}: every C-rate must be > 0, got {out}")
    if len(set(out)) != len(out):
        raise InputError(f"{key}: a C-rate appears twice in {out}")
    return out


def designs(config: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """The ``[[designs]]`` entries as (name, variant steps, extra labels) in config order."""
    ds = config.get("designs")
    if not isinstance(ds, list) or not ds:
        raise InputError("the study needs a non-empty [[designs]] list (name = ..., variants = [...])")
    out = []
    for d in ds:
        if not isinstance(d, dict) or "name" not in d:
            raise InputError(f"every [[designs]] entry needs a name, got {d!r}")
        name = str(d["name"])
        if not _DESIGN_RE.match(name):
            raise InputError(f"design name {name!r} must be letters, digits, '.', '_', '+', '-'")
        steps = d.get("variants", [])
        if isinstance(steps, dict):
            steps = [steps]
        labels = {k: v for k, v in d.items() if k not in ("name", "variants")}
        out.append((name, list(steps), labels))
    names = [n for n, _, _ in out]
    if len(set(names)) != len(names):
        raise InputError(f"design names must be unique, got {names}")
    return out


def run_name(design: str, c_rate: float) -> str:
    return f"{design}-{c_rate:g}C"


def plan(config: dict[str, Any]) -> list[RunSpec]:
    """One run per design x C-rate (designs outer, C-rates ascending inner)."""
    rates = sorted(c_rate_list(config))
    sim = sim_options(config.get("simulate"))
    runs = []
    for name, steps, labels in designs(config):
        sp = structure_params(config.get("volume"), steps, config.get("mesh"), config.get("seed", 0))
        for c in rates:
            runs.append(RunSpec(run_name(name, c), {"design": name, **labels, "c_rate": c, "structure": sp,
                                                    "simulate": sim, **reuse_option(config)}))
    return runs


def run_one(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    return run_discharge(params, run_dir)


# ------------------------------------------------------------------ tables and figures
def by_design(outcomes: list[RunOutcome]) -> dict[str, list[RunOutcome]]:
    """Finished runs grouped by design (config order), each sorted by C-rate."""
    groups: dict[str, list[RunOutcome]] = {}
    for o in outcomes:
        if o.succeeded:
            groups.setdefault(str(o.params["design"]), []).append(o)
    return {k: sorted(v, key=lambda o: float(o.params["c_rate"])) for k, v in groups.items()}


#: fewest Ragone points per curve for a knee point to be reported
KNEE_MIN_POINTS = 4


def knee_table(outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    """Per design: the Ragone points and the knee (index into the design's C-rate-sorted runs)."""
    from tomocell.studies.analysis_stats import ragone_knee

    rows = []
    for design, runs in by_design(outcomes).items():
        p = np.array([o.results["specific_power_W_kg"] for o in runs], float)
        e = np.array([o.results["specific_energy_Wh_kg"] for o in runs], float)
        ok = np.isfinite(p) & np.isfinite(e) & (p > 0) & (e > 0)
        k = None
        # with 3 points the middle one is always "the knee" of a concave curve: it takes >= 4 to mean anything
        if ok.sum() >= KNEE_MIN_POINTS:
            idx = np.nonzero(ok)[0]
            k = int(idx[ragone_knee(p[ok], e[ok])])
        rows.append({"design": design, "c_rates": [float(o.params["c_rate"]) for o in runs], "power": p, "energy": e,
                     "capacity": np.array([o.results["capacity_mAh_g"] for o in runs], float), "knee": k,
                     "knee_c_rate": None if k is None else float(runs[k].params["c_rate"]),
                     "knee_power_W_kg": None if k is None else float(p[k]),
                     "knee_energy_Wh_kg": None if k is None else float(e[k])})
    return rows


def write_knees(rows: list[dict[str, Any]], path: Path) -> Path:
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["design", "knee_c_rate", "knee_power_W_kg", "knee_energy_Wh_kg", "points"])
        for r in rows:
            w.writerow([r["design"], r["knee_c_rate"] if r["knee_c_rate"] is not None else "",
                        "" if r["knee_power_W_kg"] is None else f"{r['knee_power_W_kg']:.6g}",
                        "" if r["knee_energy_Wh_kg"] is None else f"{r['knee_energy_Wh_kg']:.6g}", len(r["c_rates"])])
    return path


def log_axes(ax: Any, xlabel: str, ylabel: str, *, logy: bool = False, legend_size: float = 8) -> None:
    """Log x (and optionally y) axes with labels, grid and legend: the look of every rate plot."""
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=legend_size)
    plain_log_ticks(ax)


def plain_log_ticks(ax: Any) -> None:
    """Plain numbers on log axes, no minor-tick labels (matplotlib's 3x10^2 4x10^2 ... labels overlapped)."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(StrMethodFormatter("{x:g}"))
            axis.set_minor_formatter(NullFormatter())


def rate_figures(outcomes: list[RunOutcome], fig_dir: Path, what: str = "design") -> list[Figure]:
    """Capacity vs C-rate, Ragone with knees, voltage curves per design (shared by the rate studies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study_dir = fig_dir.parent
    rows = knee_table(outcomes)
    write_knees(rows, study_dir / "ragone.csv")
    out: list[Figure] = []
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for r in rows:
        ax.plot(r["c_rates"], r["capacity"], "o-", label=r["design"])
    log_axes(ax, "C-rate", "accessible capacity (mAh g$^{-1}$ active)")
    fig.tight_layout()
    out.append(save_figure(fig, fig_dir / "capacity_vs_c_rate.png",
                           f"Accessible specific capacity (to the 3.0 V cut-off) against C-rate for each {what} "
                           "(cf. paper Fig. 8b).", study_dir))
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for r in rows:
        line, = ax.plot(r["power"], r["energy"], "o-", label=r["design"])
        if r["knee"] is not None:
            k = r["knee"]
            ax.plot([r["power"][k]], [r["energy"][k]], marker="*", ms=14, mfc="none", mec="red", mew=1.5,
                    color=line.get_color())  # an explicit colour keeps the next curve's place in the cycle
            ax.annotate(f"knee {r['knee_c_rate']:g}C", (r["power"][k], r["energy"][k]), textcoords="offset points",
                        xytext=(-10, -4), ha="right", va="top", fontsize=7, color=line.get_color())
    log_axes(ax, "specific power (W kg$^{-1}$ active)", "specific energy (Wh kg$^{-1}$ active)", logy=True)
    fig.tight_layout()
    out.append(save_figure(fig, fig_dir / "ragone.png",
                           "Ragone plot (cf. paper Fig. 8a): specific energy (integral of V dQ to the cut-off) "
                           "against specific power (energy / discharge time) per kg of active material; red stars: "
                           "knee point of each curve (Kneedle on log-log axes; needs >= 4 C-rates), also listed "
                           "in ragone.csv.", study_dir))
    groups = by_design(outcomes)
    fig, axes = plt.subplots(1, len(groups), figsize=(3.4 * len(groups), 3.2), squeeze=False, sharey=True)
    for ax, (design, runs) in zip(axes[0], groups.items()):
        for o in runs:
            vc = o.results.get("voltage_curve") or {}
            if vc.get("capacity_mAh_g"):
                ax.plot(vc["capacity_mAh_g"], vc["voltage_V"], label=f"{float(o.params['c_rate']):g}C")
        ax.set_title(design, fontsize=9)
        ax.set_xlabel("capacity (mAh g$^{-1}$)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("voltage (V vs Li/Li$^+$)")
    fig.tight_layout()
    out.append(save_figure(fig, fig_dir / "voltage_curves.png",
                           f"Discharge curves of every {what} at every C-rate.", study_dir))
    return out


def figures(outcomes: list[RunOutcome], fig_dir: Path) -> list[Figure]:
    """The rate figures, then the DFN twin of every finished simulate run (twin.csv, twin_vs_resolved.png)."""
    from tomocell.studies.rate_twin import twin_figures

    return rate_figures(outcomes, fig_dir) + twin_figures(outcomes, fig_dir)


if __name__ == "__main__":
    import sys

    from tomocell.studies.runner import study_main

    raise SystemExit(study_main(sys.modules[__name__]))
