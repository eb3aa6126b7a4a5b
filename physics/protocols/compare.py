"""``tomocell compare RUN MEASURED.csv``: a measured voltage curve against a simulation run.

The simulated voltage (RUN/timeseries.csv) is interpolated onto the measured times where both exist;
reported are the RMSE and the largest deviation of the voltage [mV] over that overlap, and the
capacity difference: the measured end capacity (``--capacity-col``, in the unit of the run's column
``capacity_mAh_g`` unless ``--sim-capacity-col`` says otherwise) minus the simulated one, or without a
capacity column the difference of the curves' durations. With ``--step K`` the measured curve is one
step of the run's experiment (``protocol_step`` K of timeseries.csv, see steps.csv): the run's time and
capacity are then counted from that step's start.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.cliutil import existing_file
from tomocell.errors import InputError

HELP = "compare a measured voltage curve with a simulation run (RMSE, capacity difference)"
DESCRIPTION = __doc__.split("\n\n", 1)[1]
EPILOG = """examples:
  tomocell compare results/1C measured.csv --time-col time_s --voltage-col Ewe_V
  tomocell compare results/1C measured.csv --capacity-col "Q_mAh_g" --json cmp.json
  tomocell compare results/exp discharge.csv --step 2 --time-col "Time (h)" --time-scale 3600   # one step
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a `tomocell simulate` output directory (with timeseries.csv)")
    parser.add_argument("measured", metavar="MEASURED", help="CSV of the measured curve")
    parser.add_argument("--time-col", default="time_s", help="measured time column [s] (default time_s)")
    parser.add_argument("--voltage-col", default="voltage_V", help="measured voltage column [V] (default voltage_V)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply the measured times by this to get seconds")
    parser.add_argument("--capacity-col", default=None, help="measured capacity column (optional)")
    parser.add_argument("--sim-capacity-col", default="capacity_mAh_g",
                        help="run column the measured capacity is compared with (default capacity_mAh_g)")
    parser.add_argument("--step", type=int, default=None, metavar="K",
                        help="compare with experiment step K of the run only (protocol_step in timeseries.csv; "
                             "time and capacity from its start); default: the whole run")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the numbers to FILE")
    parser.add_argument("--figure", type=Path, default=Path("compare.png"), metavar="FILE",
                        help="overlay figure: voltage vs time (and vs capacity with --capacity-col), measured and "
                             "simulated, and their difference (default compare.png)")


def _columns(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(f"{path}: no data rows")
    missing = [n for n in names if n not in rows[0]]
    if missing:
        raise InputError(f"{path}: no column {', '.join(map(repr, missing))} (columns: {', '.join(rows[0])})")
    try:
        return {n: np.array([float(r[n]) for r in rows]) for n in names}
    except ValueError as e:
        raise InputError(f"{path}: a value is not a number ({e})") from None


def select_step(sim: dict[str, np.ndarray], k: int, what: str) -> dict[str, np.ndarray]:
    """The rows of experiment step ``k`` (``sim["protocol_step"]``) from the row it starts at (the previous
    step's last, or the initial state), with time and capacity columns counted from that start."""
    ps = sim["protocol_step"]
    idx = np.nonzero(ps[1:] == k)[0] + 1
    if idx.size == 0:
        raise InputError(f"{what}: no time steps of experiment step {k} (the run has steps 0-{int(ps.max())})")
    out = {n: v[idx[0] - 1: idx[-1] + 1].copy() for n, v in sim.items()}
    for n in out:
        if n == "t_s" or n.startswith("capacity_"):
            out[n] -= out[n][0]
    return out


def compare(run_dir: str | Path, measured: str | Path, **kw: Any) -> dict[str, Any]:
    """The numbers `tomocell compare` prints (see the module docstring)."""
    return _compare(run_dir, measured, **kw)[0]


def _compare(run_dir: str | Path, measured: str | Path, *, time_col: str = "time_s", voltage_col: str = "voltage_V",
             time_scale: float = 1.0, capacity_col: str | None = None,
             sim_capacity_col: str = "capacity_mAh_g", step: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    ts = Path(run_dir) / "timeseries.csv"
    if not ts.is_file():
        raise InputError(f"{run_dir}: no timeseries.csv (not a `tomocell simulate` run)")
    sim = _columns(ts, ["t_s", "voltage_V", sim_capacity_col] + (["protocol_step"] if step is not None else []))
    if step is not None:
        sim = select_step(sim, step, str(ts))
    meas = _columns(existing_file(str(measured), "measured curve"),
                    [time_col, voltage_col] + ([capacity_col] if capacity_col else []))
    tm = meas[time_col] * time_scale
    if np.any(np.diff(tm) < 0):
        raise InputError(f"{measured}: the times of {time_col!r} must not decrease")
    lo, hi = max(tm[0], sim["t_s"][0]), min(tm[-1], sim["t_s"][-1])
    sel = (tm >= lo) & (tm <= hi)
    if sel.sum() < 2:
        raise InputError(f"the measured times ({tm[0]:g}-{tm[-1]:g} s) and the run's ({sim['t_s'][0]:g}-"
                         f"{sim['t_s'][-1]:g} s) overlap in fewer than 2 points; check --time-col/--time-scale")
    dv = np.interp(tm[sel], sim["t_s"], sim["voltage_V"]) - meas[voltage_col][sel]
    out: dict[str, Any] = {"points": int(sel.sum()), "overlap_s": [float(lo), float(hi)],
                           "rmse_mV": float(1e3 * math.sqrt(np.mean(dv**2))), "max_abs_mV": float(1e3 * np.max(np.abs(dv))),
                           "mean_mV": float(1e3 * np.mean(dv)), "duration_difference_s": float(sim["t_s"][-1] - tm[-1])}
    curves = {"sim": sim, "meas": meas, "tm": tm, "sel": sel, "dv": dv}
    if capacity_col:
        cm, cs = float(meas[capacity_col][-1]), float(sim[sim_capacity_col][-1])
        out.update({"capacity_measured": cm, "capacity_simulated": cs, "capacity_difference": cs - cm,
                    "capacity_difference_rel": (cs - cm) / cm if cm else float("nan"), "capacity_unit": sim_capacity_col})
    return out, curves


def plot_overlay(res: dict[str, Any], c: dict[str, Any], path: Path, voltage_col: str, capacity_col: str | None,
                 sim_capacity_col: str) -> None:
    """Measured and simulated voltage against time (and capacity), and their difference over the overlap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim, meas, tm = c["sim"], c["meas"], c["tm"]
    n = 3 if capacity_col else 2
    fig, ax = plt.subplots(1, n, figsize=(4.6 * n, 4))
    ax[0].plot(sim["t_s"] / 3600.0, sim["voltage_V"], label="simulated")
    ax[0].plot(tm / 3600.0, meas[voltage_col], "--", label="measured")
    ax[0].set_xlabel("time [h]")
    ax[0].set_ylabel("voltage [V]")
    ax[0].legend()
    ax[0].set_title(f"RMSE {res['rmse_mV']:.1f} mV")
    if capacity_col:
        unit = sim_capacity_col.split("_", 1)[1].replace("_", "/") if "_" in sim_capacity_col else ""
        ax[1].plot(sim[sim_capacity_col], sim["voltage_V"], label="simulated")
        ax[1].plot(meas[capacity_col], meas[voltage_col], "--", label="measured")
        ax[1].set_xlabel(f"capacity [{unit}]")
        ax[1].set_ylabel("voltage [V]")
        ax[1].legend()
        ax[1].set_title(f"capacity difference {100 * res['capacity_difference_rel']:+.2f} %")
    ax[-1].plot(tm[c["sel"]] / 3600.0, 1e3 * c["dv"])
    ax[-1].axhline(0.0, color="0.6", lw=0.8)
    ax[-1].set_xlabel("time [h]")
    ax[-1].set_ylabel("simulated - measured voltage [mV]")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    res, curves = _compare(args.run, args.measured, time_col=args.time_col, voltage_col=args.voltage_col,
                           time_scale=args.time_scale, capacity_col=args.capacity_col,
                           sim_capacity_col=args.sim_capacity_col, step=args.step)
    line = (f"tomocell compare: voltage RMSE {res['rmse_mV']:.2f} mV (max {res['max_abs_mV']:.2f} mV, mean "
            f"{res['mean_mV']:+.2f} mV) over {res['points']} points; duration difference {res['duration_difference_s']:+.1f} s")
    if "capacity_difference" in res:
        line += f"; capacity difference {res['capacity_difference']:+.4g} ({100 * res['capacity_difference_rel']:+.2f} %)"
    plot_overlay(res, curves, args.figure, args.voltage_col, args.capacity_col, args.sim_capacity_col)
    print(line + f"; overlay in {args.figure}")
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=1))
    return 0
