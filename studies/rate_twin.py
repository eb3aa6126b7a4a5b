"""The homogenised PyBaMM DFN twin of every finished discharge of a rate study (issue 21).

For each finished run whose ``runs/<run>/discharge/`` is a ``tomocell simulate`` run, the report step
builds its twin (:func:`tomocell.physics.twin_compare.twin_of_run`: the structure's measured geometry,
the through-thickness tortuosity factor measured on the structure's voxels at meshing, PyBaMM's
particle-size distribution) into ``runs/<run>/twin/`` (reused while the discharge's run.json is the
one it was built from), and writes

* ``twin.csv``: per design and C-rate the capacity of the resolved model and of the twin, their
  difference (%), the voltage RMSE of the twin against the resolved curve (mV, common capacity range,
  and its first 90 %: without the steep end of discharge), both mean voltages, tau (image) and tau (mesh), the electrode's Bruggeman exponent and the area
  factor; a run that is not a simulate run (or whose twin failed) is a row with only ``note`` set;
* ``figures/twin_vs_resolved.png``: voltage against capacity, both models, every C-rate.

Runs that are not ``tomocell simulate`` runs (a stand-in discharge in the tests) are skipped with a
note; PyBaMM missing (no ``tomocell[dfn]``) skips them all with the extra named.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.atomic import atomic_path
from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.studies.runner import Figure, RunOutcome, save_figure

log = get_logger(__name__)

TWIN_CSV = "twin.csv"
COLUMNS = ("design", "c_rate", "capacity_resolved_mAh_g", "capacity_twin_mAh_g", "capacity_diff_pct",
           "voltage_rmse_mV", "voltage_rmse_90pct_mV", "mean_voltage_resolved_V", "mean_voltage_twin_V", "tau", "tau_mesh",
           "bruggeman_electrode", "area_factor", "note")


def _recorded_twin(twin_dir: Path, sim_dir: Path) -> dict[str, Any] | None:
    """The results of a finished twin built from this very discharge (same run.json), else None."""
    from tomocell.manifest import sha256_of

    try:
        man = json.loads((twin_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    rec = (man.get("inputs") or {}).get("simulate_run") or {}
    if man.get("status") != "ok" or rec.get("sha256") != sha256_of(sim_dir / "run.json"):
        return None
    if not (twin_dir / "timeseries.csv").is_file():
        return None
    return man.get("results")


def twin_of_outcome(o: RunOutcome) -> tuple[dict[str, Any] | None, str]:
    """(twin results, "") of one finished run, or (None, why it was skipped)."""
    from mpi4py import MPI

    from tomocell.physics.twin_compare import read_run, twin_of_run

    sim_dir, twin_dir = o.run_dir / "discharge", o.run_dir / "twin"
    try:
        read_run(sim_dir)
    except InputError as exc:
        return None, f"skipped: {exc}"
    done = _recorded_twin(twin_dir, sim_dir)
    if done is not None:
        return done, ""
    try:
        twin_of_run(sim_dir, twin_dir, comm=MPI.COMM_SELF)
    except Exception as exc:  # noqa: BLE001 - one failed twin must not lose the study's figures
        log.warning("twin of %s failed: %s: %s", o.name, type(exc).__name__, exc)
        return None, f"twin failed: {type(exc).__name__}: {exc}"
    return json.loads((twin_dir / "run.json").read_text())["results"], ""


def twin_rows(outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    """One row of :data:`COLUMNS` per finished run (design order, C-rates ascending)."""
    from tomocell.physics.twin_compare import voltage_rmse

    rows = []
    for o in sorted((o for o in outcomes if o.succeeded), key=lambda o: float(o.params["c_rate"])):
        res, note = twin_of_outcome(o)
        row: dict[str, Any] = {k: None for k in COLUMNS}
        row.update(design=o.params.get("design", ""), c_rate=float(o.params["c_rate"]), note=note, run=o.name)
        if res is not None:
            q, v = _curve(o.run_dir / "discharge" / "timeseries.csv")
            qt, vt = _curve(o.run_dir / "twin" / "timeseries.csv")
            row["voltage_rmse_90pct_mV"] = 1e3 * voltage_rmse(q, v, qt, vt, upto=0.9)
            row.update(capacity_resolved_mAh_g=res["resolved"]["capacity_mAh_g"],
                       capacity_twin_mAh_g=res["dfn"]["capacity_mAh_g"],
                       capacity_diff_pct=100.0 * res["capacity_diff_rel"], voltage_rmse_mV=res["voltage_rmse_mV"],
                       mean_voltage_resolved_V=res["resolved"]["mean_voltage_V"],
                       mean_voltage_twin_V=res["dfn"]["mean_voltage_V"], tau=res.get("tau"),
                       tau_mesh=res.get("tau_mesh"), bruggeman_electrode=res.get("bruggeman_electrode"),
                       area_factor=res.get("area_factor"))
        rows.append(row)
    order = list(dict.fromkeys(str(o.params.get("design", "")) for o in outcomes))
    return sorted(rows, key=lambda r: (order.index(str(r["design"])) if r["design"] in order else 0, r["c_rate"]))


def write_twin_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    def fmt(v: Any) -> str:
        return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([fmt(r[c]) for c in COLUMNS])
    return path


def _curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from tomocell.physics.twin_compare import read_timeseries

    ts = read_timeseries(path)
    return ts["capacity_mAh_g"], ts["voltage_V"]


def twin_figure(rows: list[dict[str, Any]], outcomes: list[RunOutcome], fig_dir: Path) -> Figure | None:
    """Voltage against capacity of the resolved runs (solid) and their twins (dashed), one colour per
    C-rate, one panel per design; None when no run has a twin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    by_name = {o.name: o for o in outcomes}
    done = [r for r in rows if not r["note"]]
    if not done:
        return None
    designs = list(dict.fromkeys(r["design"] for r in done))
    rates = sorted({r["c_rate"] for r in done})
    colours = {c: plt.cm.viridis(i / max(1, len(rates) - 1) * 0.9) for i, c in enumerate(rates)}
    fig, axes = plt.subplots(1, len(designs), figsize=(5.6 * len(designs), 4.2), squeeze=False, sharey=True)
    for ax, design in zip(axes[0], designs):
        for r in (x for x in done if x["design"] == design):
            o = by_name[r["run"]]
            q, v = _curve(o.run_dir / "discharge" / "timeseries.csv")
            qt, vt = _curve(o.run_dir / "twin" / "timeseries.csv")
            ax.plot(q, v, "-", color=colours[r["c_rate"]], lw=1.6)
            ax.plot(qt, vt, "--", color=colours[r["c_rate"]], lw=1.4)
        handles = [Line2D([], [], color=colours[c], lw=2, label=f"{c:g}C") for c in rates]
        handles += [Line2D([], [], color="k", ls="-", label="resolved (tomocell)"),
                    Line2D([], [], color="k", ls="--", label="DFN twin (PyBaMM)")]
        ax.legend(handles=handles, fontsize=8, loc="lower left", framealpha=0.9)
        ax.set_title(str(design), fontsize=10)
        ax.set_xlabel("capacity (mAh g$^{-1}$ active material)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("voltage (V vs Li/Li$^+$)")
    fig.tight_layout()
    skipped = [r for r in rows if r["note"]]
    note = f" Not twinned: {', '.join(r['run'] + ' (' + r['note'] + ')' for r in skipped)}." if skipped else ""
    return save_figure(fig, fig_dir / "twin_vs_resolved.png",
                       "Resolved model (solid) against its homogenised PyBaMM DFN twin (dashed; image-measured "
                       "porosity, tortuosity factor, interface area and particle-size distribution) at every "
                       f"C-rate; numbers in twin.csv.{note}", fig_dir.parent)


def twin_figures(outcomes: list[RunOutcome], fig_dir: Path) -> list[Figure]:
    """twin.csv and twin_vs_resolved.png of a rate study (the figures step, rank 0)."""
    rows = twin_rows(outcomes)
    for r in rows:
        if r["note"]:
            log.info("twin: run %s %s", r["run"], r["note"])
    write_twin_csv(rows, fig_dir.parent / TWIN_CSV)
    fig = twin_figure(rows, outcomes, fig_dir)
    return [fig] if fig is not None else []


def read_twin_csv(path: str | Path) -> list[dict[str, Any]]:
    """The twinned rows of a ``twin.csv`` (rows with a note left out), numbers parsed."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if not r.get("note")]
    out = []
    for r in rows:
        out.append({k: (v if k in ("design", "note") else (float(v) if v != "" else None)) for k, v in r.items()})
    return out
