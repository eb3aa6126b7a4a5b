"""Representative volume study: how wide must a simulated column be?

The design studies simulate a column of electrode: full thickness, a narrow lateral window. A window
about one large particle wide holds a handful of particles, and its porosity, pore tortuosity,
interface area and capacity depend on where it was cut. This study cuts lateral windows of growing
width (``widths_um``) out of one electrode (the ``crop`` variant,
:mod:`tomocell.microstructure.variants_crop`), at ``samples`` lateral positions each (corners and
centre of the free range along the diagonal; one position for a window as wide as the electrode),
meshes each window with the study's mesh route and discharges it at every ``c_rates`` rate.

Per run (``summary.csv``): porosity (voxels), pore tortuosity factor along the depth (the voxels'
finite volumes, as ``characterise``; and the mesh's own P1 solve, what the physics sees), active|pore
interface area of the mesh per electrode volume, and the accessible capacity. Per width
(``rve.csv``): mean, sample standard deviation and range of each metric over the positions.
``rve_convergence.csv`` gives each metric's *representative width*: the narrowest width from which
on every mean lies within ``tolerance`` (relative) of the widest window's value and the positions
agree within ``tolerance`` of it (half their range). The widest window is the reference, so the
answer is only as good as the electrode is wide: a representative width equal to the widest one
means "not converged within this volume".

Config (``studies/configs/rve.toml``): ``widths_um``, ``samples``, ``c_rates``, ``tolerance``,
``[volume]``, ``[mesh]``, ``[simulate]`` as the other electrochemical studies.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.atomic import atomic_path
from tomocell.errors import InputError
from tomocell.studies.electrochem import reuse_option, run_discharge, sim_options, structure_params
from tomocell.studies.rate_capability import c_rate_list
from tomocell.studies.runner import Figure, RunOutcome, RunSpec, save_figure

NAME = "rve"
CONFIG_NAME = "rve"
DESCRIPTION = (
    "Representative volume study: lateral windows of growing width cut from one electrode at several positions, "
    "each meshed and discharged; porosity, pore tortuosity, interface area and capacity against window width, and "
    "the width from which they stop changing."
)

#: metrics of a run: (results key, axis label, table column)
METRICS: tuple[tuple[str, str], ...] = (
    ("porosity", "porosity (-)"),
    ("tau_pore_voxels", "pore tortuosity factor, voxels (-)"),
    ("tau_pore_mesh", "pore tortuosity factor, mesh (-)"),
    ("active_pore_area_per_um", "active|pore area per volume (um$^{-1}$)"),
)


def _widths(config: dict[str, Any]) -> list[float]:
    w = config.get("widths_um")
    if not isinstance(w, (list, tuple)) or not w:
        raise InputError(f"widths_um must be a non-empty list of lateral widths (um), got {w!r}")
    try:
        out = sorted(float(v) for v in w)
    except (TypeError, ValueError):
        raise InputError(f"widths_um must hold numbers, got {w!r}") from None
    if any(not v > 0 for v in out) or len(set(out)) != len(out):
        raise InputError(f"widths_um must be distinct positive lengths, got {out}")
    return out


def _samples(config: dict[str, Any]) -> int:
    n = config.get("samples", 3)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"samples must be a positive integer (lateral positions per width), got {n!r}")
    return n


def tolerance(config: dict[str, Any]) -> float:
    tol = config.get("tolerance", 0.02)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise InputError(f"tolerance must be a relative tolerance in (0, 1), got {tol!r}")
    return float(tol)


def offsets(n: int) -> list[float]:
    """Lateral positions of ``n`` windows: fractions of the free range, corners and centre first."""
    return [0.5] if n == 1 else [float(f) for f in np.linspace(0.0, 1.0, n)]


def _lateral_extent_um(volume_cfg: dict[str, Any]) -> float | None:
    syn = volume_cfg.get("synthetic") if isinstance(volume_cfg, dict) else None
    if isinstance(syn, dict) and isinstance(syn.get("box_um"), (list, tuple)) and len(syn["box_um"]) == 3:
        return float(min(syn["box_um"][1], syn["box_um"][2]))
    return None


def plan(config: dict[str, Any]) -> list[RunSpec]:
    """Widths (ascending) x positions x C-rates (ascending); one position for a full-width window."""
    widths, n, rates = _widths(config), _samples(config), sorted(c_rate_list(config))
    tolerance(config)
    vol = config.get("volume")
    full = _lateral_extent_um(vol) if isinstance(vol, dict) else None
    if full is not None and widths[-1] > full + 1e-9:
        raise InputError(f"widths_um: {widths[-1]:g} um is wider than the electrode ({full:g} um)")
    sim = sim_options(config.get("simulate"))
    runs = []
    for w in widths:
        whole = full is not None and abs(w - full) < 1e-9
        for k, f in enumerate(offsets(1 if whole else n)):
            step = {"kind": "crop", "width_um": w, "offset": [f, f]}
            sp = structure_params(vol, [step], config.get("mesh"), config.get("seed", 0))
            for c in rates:
                runs.append(RunSpec(f"w{w:g}um-p{k}-{c:g}C", {"width_um": w, "position": k, "offset": f, "c_rate": c,
                                                              "structure": sp, "simulate": sim, **reuse_option(config)}))
    return runs


def geometry_metrics(fidelity: dict[str, Any], info: dict[str, Any], lateral_um: list[float]) -> dict[str, Any]:
    """Porosity, voxel and mesh pore tortuosity (depth axis) and the mesh's active|pore area per
    electrode volume (um^-1) of one structure, from its fidelity report and structure description."""
    tr = (fidelity.get("transport") or {}).get("pore") or {}
    area = ((fidelity.get("interface_areas") or {}).get("active|pore") or {}).get("mesh_um2")
    vol_um3 = float(info["thickness_um"]) * float(lateral_um[0]) * float(lateral_um[1])
    return {
        "porosity": float(info["porosity"]),
        "tau_pore_voxels": (tr.get("voxels") or {}).get("tau"),
        "tau_pore_mesh": (tr.get("mesh") or {}).get("tau"),
        "active_pore_area_per_um": None if area is None else float(area) / vol_um3,
    }


def run_one(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    out = run_discharge(params, run_dir)
    sdir = run_dir.parent.parent / "structures" / out["structure"]["key"]
    info = json.loads((sdir / "structure.json").read_text())
    fid = json.loads((sdir / "fidelity.json").read_text())
    crop = next(r for r in info["variants"] if r["kind"] == "crop")
    out.update(geometry_metrics(fid, info, crop["extent_um"][1:]))
    out["lateral_extent_um"] = crop["extent_um"][1:]
    return out


# ------------------------------------------------------------------ tables
def _metric_names(outcomes: list[RunOutcome]) -> list[tuple[str, str]]:
    names = list(METRICS)
    for c in sorted({float(o.params["c_rate"]) for o in outcomes}):
        names.append((f"capacity_{c:g}C", f"capacity at {c:g}C (mAh g$^{{-1}}$)"))
    return names


def _value(o: RunOutcome, key: str) -> float | None:
    if key.startswith("capacity_"):
        return float(o.results["capacity_mAh_g"])
    v = o.results.get(key)
    return None if v is None else float(v)


def width_table(outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    """One row per width x metric: n, mean, std (ddof 1), min, max over the positions."""
    ok = [o for o in outcomes if o.succeeded]
    rows = []
    for key, _ in _metric_names(ok):
        for w in sorted({float(o.params["width_um"]) for o in ok}):
            sel = [o for o in ok if float(o.params["width_um"]) == w]
            if key.startswith("capacity_"):
                c = float(key[len("capacity_"):-1])
                sel = [o for o in sel if float(o.params["c_rate"]) == c]
            else:  # geometry: once per structure (the first C-rate's run)
                first = min(float(o.params["c_rate"]) for o in sel) if sel else None
                sel = [o for o in sel if float(o.params["c_rate"]) == first]
            v = np.array([x for x in (_value(o, key) for o in sel) if x is not None], float)
            if v.size:
                rows.append({"metric": key, "width_um": w, "n": int(v.size), "mean": float(v.mean()),
                             "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                             "min": float(v.min()), "max": float(v.max())})
    return rows


def representative_widths(rows: list[dict[str, Any]], tol: float) -> list[dict[str, Any]]:
    """Per metric: the narrowest width from which every mean is within ``tol`` of the widest window's
    and the positions' half-range is within ``tol`` of it (None when even the widest-but-one fails)."""
    out = []
    for key in dict.fromkeys(r["metric"] for r in rows):
        rs = sorted((r for r in rows if r["metric"] == key), key=lambda r: r["width_um"])
        ref = rs[-1]["mean"]
        good = [abs(r["mean"] - ref) <= tol * abs(ref) and 0.5 * (r["max"] - r["min"]) <= tol * abs(ref) for r in rs]
        w = None
        for i in range(len(rs) - 1, -1, -1):
            if not good[i]:
                break
            w = rs[i]["width_um"]
        narrow = rs[0]
        out.append({"metric": key, "reference_width_um": rs[-1]["width_um"], "reference_value": ref,
                    "representative_width_um": w if w is not None and w < rs[-1]["width_um"] else None,
                    "narrowest_width_um": narrow["width_um"],
                    "narrowest_mean_rel_dev": (narrow["mean"] - ref) / ref if ref else None,
                    "narrowest_range_rel": (narrow["max"] - narrow["min"]) / abs(ref) if ref else None,
                    "tolerance": tol})
    return out


def _write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        if rows:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return path


def figures(outcomes: list[RunOutcome], fig_dir: Path, config: dict[str, Any] | None = None) -> list[Figure]:
    """rve.csv, rve_convergence.csv and one panel per metric against window width (``config``: the
    study's, for its ``tolerance``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study_dir = fig_dir.parent
    rows = width_table(outcomes)
    if not rows:
        return []
    tol = tolerance(config or {})
    conv = representative_widths(rows, tol)
    _write_csv(rows, study_dir / "rve.csv")
    _write_csv(conv, study_dir / "rve_convergence.csv")
    names = [(k, lab) for k, lab in _metric_names([o for o in outcomes if o.succeeded])
             if any(r["metric"] == k for r in rows)]
    ncol = 3
    nrow = (len(names) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.0 * ncol, 3.1 * nrow), squeeze=False)
    for ax, (key, label) in zip(axes.flat, names):
        rs = sorted((r for r in rows if r["metric"] == key), key=lambda r: r["width_um"])
        w = np.array([r["width_um"] for r in rs])
        ref = rs[-1]["mean"]
        ax.axhspan(ref * (1 - tol), ref * (1 + tol), color="0.85", label=f"widest window $\\pm${tol:.0%}")
        ax.fill_between(w, [r["min"] for r in rs], [r["max"] for r in rs], color="tab:blue", alpha=0.25,
                        label="range over positions")
        ax.plot(w, [r["mean"] for r in rs], "o-", color="tab:blue", label="mean over positions")
        c = next(c for c in conv if c["metric"] == key)
        if c["representative_width_um"] is not None:
            ax.axvline(c["representative_width_um"], color="tab:red", ls="--", lw=1,
                       label=f"representative from {c['representative_width_um']:g} um")
        ax.set_xlabel("lateral window width (um)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    return [save_figure(fig, fig_dir / "rve_convergence.png",
                        "Metrics of lateral windows against window width (full electrode thickness): mean and range "
                        f"over the window positions; grey band: the widest window's value +/- {tol:.0%}; dashed "
                        "red: the width from which the metric stays in the band (rve_convergence.csv).", study_dir)]


if __name__ == "__main__":
    import sys

    from tomocell.studies.runner import study_main

    raise SystemExit(study_main(sys.modules[__name__]))
