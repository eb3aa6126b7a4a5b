"""Graded electrode designs at one high rate (Lu et al. 2020, Fig. 6-7): as prepared vs graded particle
vs graded porosity R1/R2/R3 vs high porosity (global pore dilation), default 3.75C.

Per design (a named list of structure variants, as in :mod:`tomocell.studies.rate_capability`) one
discharge at ``c_rate``; on top of the numbers of :func:`tomocell.studies.electrochem.run_discharge`
each run records, from its DoD snapshots:

* ``sol_profile``: volume-weighted mean state of lithiation (SoL) of the particles against depth
  from the separator (particle centroids binned; ``particles.csv`` of the run), per snapshot;
* ``ce_bands``: per band (default the paper's R1 0-11, R2 11-22.5, R3 22.5-34, R4 34+ um from the
  separator) the volume-weighted mean electrolyte concentration and its gradient through the
  thickness (least-squares slope of c_e against depth over the band's pore cells, mol m^-3 um^-1)
  at the ``gradient_dod`` snapshot (default 50 %; paper Fig. 7k);
* ``accessible DoD`` = utilisation at the cut-off (paper Fig. 7d-f).

Figures: voltage curves (Fig. 6i/7l), accessible DoD, porosity against depth with the bands (Fig. 7j),
SoL depth profiles, c_e gradient per band (Fig. 7k) and particle SoL maps (Fig. 6j-l/7d-f).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.microstructure.variants_graded_porosity import PAPER_BANDS_UM
from tomocell.studies.electrochem import reuse_option, run_discharge, sim_options, structure_params
from tomocell.studies.rate_capability import designs
from tomocell.studies.runner import Figure, RunOutcome, RunSpec, save_figure

log = get_logger(__name__)

NAME = "graded-designs"
CONFIG_NAME = "graded_designs"
DESCRIPTION = (
    "Graded electrode designs (paper Fig. 6-7): the as-prepared electrode against graded-particle, graded-porosity "
    "(R1, R2, R3: pores enlarged by 250 nm at the expense of CBD in one band) and high-porosity (all bands) "
    "variants, discharged at one high C-rate (3.75C): voltage curves, accessible depth of discharge, SoL "
    "through the thickness and per particle, electrolyte concentration gradient per band at 50 % DoD."
)


def bands_from(config: dict[str, Any]) -> dict[str, list[float]]:
    """``[bands]`` table name -> [start_um, end_um] (depth from separator); default the paper's R1-R4."""
    raw = config.get("bands") or {k: [a, b] for k, (a, b) in PAPER_BANDS_UM.items()}
    out = {}
    for name, v in raw.items():
        try:
            a, b = (float(x) for x in v)
        except (TypeError, ValueError):
            raise InputError(f"band {name}: expected [start_um, end_um], got {v!r}") from None
        if not (0 <= a < b):
            raise InputError(f"band {name}: need 0 <= start < end, got {v!r}")
        out[str(name)] = [a, b if math.isfinite(b) else 1e9]
    return out


def plan(config: dict[str, Any]) -> list[RunSpec]:
    c = float(config.get("c_rate", 3.75))
    if not c > 0:
        raise InputError(f"c_rate must be > 0, got {c}")
    sim = sim_options(config.get("simulate"))
    gdod = float(config.get("gradient_dod", 0.5))
    if gdod not in sim["dod_snapshots"]:
        sim["dod_snapshots"] = sorted({*sim["dod_snapshots"], gdod})
    bands = bands_from(config)
    runs = []
    for name, steps, labels in designs(config):
        sp = structure_params(config.get("volume"), steps, config.get("mesh"), config.get("seed", 0))
        runs.append(RunSpec(name, {"design": name, **labels, "c_rate": c, "structure": sp, "simulate": sim,
                                   "gradient_dod": gdod, "bands": bands,
                                   "profile_bin_um": float(config.get("profile_bin_um", 5.0)),
                                   **reuse_option(config)}))
    return runs


# ------------------------------------------------------------------ per-run post-processing
def read_particles(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", "nan") else np.nan for r in rows]) for k in rows[0]}


def sol_depth_profile(depth_um: np.ndarray, sol: np.ndarray, weight: np.ndarray, edges_um: np.ndarray
                      ) -> list[float | None]:
    """Weighted mean of ``sol`` in each depth bin (None for empty bins or no finite values)."""
    out: list[float | None] = []
    ok = np.isfinite(sol) & np.isfinite(weight) & (weight > 0)
    for a, b in zip(edges_um[:-1], edges_um[1:]):
        m = ok & (depth_um >= a) & (depth_um < b)
        out.append(float(np.average(sol[m], weights=weight[m])) if m.any() else None)
    return out


def band_gradients(depth_um: np.ndarray, value: np.ndarray, weight: np.ndarray, bands: dict[str, list[float]]
                   ) -> dict[str, dict[str, float | None]]:
    """Per band: weighted mean of ``value`` and its weighted least-squares slope against depth (per um)."""
    out: dict[str, dict[str, float | None]] = {}
    for name, (a, b) in bands.items():
        m = (depth_um >= a) & (depth_um < b) & np.isfinite(value) & (weight > 0)
        if m.sum() < 2 or np.ptp(depth_um[m]) == 0:
            out[name] = {"mean": float(np.average(value[m], weights=weight[m])) if m.any() else None, "slope_per_um": None}
            continue
        x, y, w = depth_um[m], value[m], weight[m]
        xm, ym = np.average(x, weights=w), np.average(y, weights=w)
        slope = float(np.sum(w * (x - xm) * (y - ym)) / np.sum(w * (x - xm) ** 2))
        out[name] = {"mean": float(ym), "slope_per_um": slope}
    return out


def post_process(params: dict[str, Any], run_dir: Path, res: dict[str, Any]) -> dict[str, Any]:
    from tomocell.physics.outputs import dod_label
    from tomocell.studies.analysis_run import read_snapshot, separator_bottom_um

    sim_dir = run_dir / "discharge"
    mesh_xdmf = run_dir.parent.parent / "structures" / res["structure"]["key"] / "mesh.xdmf"
    top = separator_bottom_um(mesh_xdmf) or float(res["structure"]["thickness_um"])
    step = float(params.get("profile_bin_um", 5.0))
    edges = np.arange(0.0, top + step, step)
    edges[-1] = max(edges[-1], top + 1e-6)
    extra: dict[str, Any] = {"electrode_top_um": top, "accessible_dod": res["utilisation"],
                             "profile_depth_um": (0.5 * (edges[:-1] + edges[1:])).tolist()}
    parts = read_particles(sim_dir / "particles.csv") if (sim_dir / "particles.csv").is_file() else {}
    profiles: dict[str, list[float | None]] = {}
    if parts:
        depth = top - parts["centroid_z_um"]
        w = np.where(parts.get("connected", np.ones_like(depth)) > 0, parts["volume_um3"], 0.0)
        for col in sorted(k for k in parts if k.startswith("sol_dod")):
            profiles[col.removeprefix("sol_")] = sol_depth_profile(depth, parts[col], w, edges)
    extra["sol_profile"] = profiles
    el = sim_dir / "fields" / dod_label(float(params["gradient_dod"])) / "electrolyte.h5"
    if el.is_file() or el.with_suffix(".xdmf").is_file():
        fd = read_snapshot(el.parent, "electrolyte")
        cz = fd.cell_centres_um()
        inside = cz[:, 2] < top
        ce = fd.cell_values("c_e")[inside]
        extra["ce_bands"] = band_gradients(top - cz[inside, 2], ce, fd.cell_volumes_um3()[inside], params["bands"])
    else:
        log.warning("run %s: no %s snapshot (cut-off reached before it): no c_e gradients", run_dir.name, el.parent.name)
        extra["ce_bands"] = {}
    return extra


def run_one(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    res = run_discharge(params, run_dir)
    res.update(post_process(params, run_dir, res))
    return res


# ------------------------------------------------------------------ figures
def figures(outcomes: list[RunOutcome], fig_dir: Path) -> list[Figure]:
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study_dir = fig_dir.parent
    ok = [o for o in outcomes if o.succeeded]
    out: list[Figure] = []
    c = ok[0].params["c_rate"]
    # one colour per design in every figure; the as-prepared baseline in black (grey in the paper)
    colour = {o.name: ("k" if o.name == "as-prepared" else f"C{i}") for i, o in enumerate(ok)}

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.6, 1]})
    for o in ok:
        vc = o.results["voltage_curve"]
        axes[0].plot(vc["capacity_mAh_g"], vc["voltage_V"], label=o.name, color=colour[o.name], lw=1.2)
    axes[0].set_xlabel("capacity (mAh g$^{-1}$ active)")
    axes[0].set_ylabel("voltage (V vs Li/Li$^+$)")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    # the designs differ by a few % DoD: points with their values on a zoomed axis (bars from 0 hide it)
    dod = [100 * o.results["accessible_dod"] for o in ok]
    for i, (o, v) in enumerate(zip(ok, dod)):
        axes[1].plot(i, v, "o", color=colour[o.name], ms=7)
        axes[1].annotate(f"{v:.1f}", (i, v), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    span = max(max(dod) - min(dod), 1.0)
    axes[1].set_ylim(min(dod) - 0.4 * span, max(dod) + 0.4 * span)
    axes[1].set_xlim(-0.6, len(ok) - 0.4)
    axes[1].set_xticks(range(len(ok)), [o.name for o in ok], rotation=40, ha="right", fontsize=8)
    axes[1].set_ylabel("accessible DoD at cut-off (%)")
    axes[1].grid(alpha=0.3, axis="y")
    fig.tight_layout()
    out.append(save_figure(fig, fig_dir / "voltage_and_dod.png",
                           f"Discharge curves at {c:g}C and accessible depth of discharge at the 3.0 V cut-off "
                           "(right: zoomed axis, values in %; cf. paper Fig. 6i, 7d-f, 7l).", study_dir))

    bands = ok[0].params["bands"]
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    # the baseline last, thin and dashed: the variants coincide with it outside their bands
    for o in sorted(ok, key=lambda o: o.name == "as-prepared"):
        sj = study_dir / "structures" / o.results["structure"]["key"] / "structure.json"
        if sj.is_file():
            info = json.loads(sj.read_text())
            base = o.name == "as-prepared"
            ax.plot(info["depth_um"], info["depth_porosity"], label=o.name, color=colour[o.name],
                    lw=0.9 if base else 1.3, ls="--" if base else "-", zorder=3 if base else 2)
    for name, (a, b) in bands.items():
        if a > 0:
            ax.axvline(a, color="grey", ls=":", lw=0.8)
        ax.text(0.5 * (a + min(b, ax.get_xlim()[1])), 0.98, name, transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=8, color="grey")
    ax.set_xlabel("depth from separator (um)")
    ax.set_ylabel("porosity of 1 um slabs (-)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    out.append(save_figure(fig, fig_dir / "porosity_profiles.png",
                           "Porosity against depth from the separator for every design (as-prepared: black dashed), "
                           "dotted: band boundaries (cf. paper Fig. 7j).", study_dir))

    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    pct = int(round(100 * ok[0].params["gradient_dod"]))
    gd = f"dod{pct:03d}"
    for o in ok:
        prof = o.results.get("sol_profile", {}).get(gd)
        if prof:
            y = [np.nan if v is None else v for v in prof]
            ax.plot(o.results["profile_depth_um"], y, "o-", ms=3, label=o.name, color=colour[o.name])
    ax.set_xlabel("depth from separator (um)")
    ax.set_ylabel(f"mean particle SoL at {pct} % DoD (-)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    out.append(save_figure(fig, fig_dir / "sol_profiles.png",
                           f"Volume-weighted mean state of lithiation of the particles against depth at {pct} % DoD, "
                           f"{c:g}C (particle centroids binned).", study_dir))

    names = list(bands)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / max(len(ok), 1)
    for i, o in enumerate(ok):
        cb = o.results.get("ce_bands") or {}
        vals = [np.nan if (cb.get(b) or {}).get("slope_per_um") is None else cb[b]["slope_per_um"] for b in names]
        ax.bar(np.arange(len(names)) + i * width, vals, width, label=o.name, color=colour[o.name])
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2,
                  [f"{n}\n{a:g}-{b:g} um" if b < 1e8 else f"{n}\n> {a:g} um" for n, (a, b) in bands.items()])
    ax.set_ylabel("dc$_e$/d(depth) (mol m$^{-3}$ um$^{-1}$)")
    ax.axhline(0, color="k", lw=0.5)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    out.append(save_figure(fig, fig_dir / "ce_gradient_bands.png",
                           f"Electrolyte concentration gradient through the thickness in each band at {pct} % DoD, "
                           f"{c:g}C (least-squares slope over the band's pore cells; negative: c_e falls with depth; "
                           "cf. paper Fig. 7k).", study_dir))

    maps = []
    for o in ok:
        p = o.run_dir / "discharge" / "particles.csv"
        if p.is_file():
            maps.append((o, read_particles(p)))
    col = f"sol_{gd}"
    maps = [(o, d) for o, d in maps if d and col in d]
    if maps:
        fig, axes = plt.subplots(1, len(maps), figsize=(2.6 * len(maps), 4.0), squeeze=False, sharey=True)
        sc = None
        # one colour range for all designs, from the data (2-98 %): a fixed 0.3-1 range hid the differences
        every = np.concatenate([d[col][np.isfinite(d[col])] for _, d in maps])
        lo, hi = (np.percentile(every, [2, 98]) if every.size else (0.0, 1.0))
        if not hi > lo:
            lo, hi = lo - 0.01, hi + 0.01
        for ax, (o, d) in zip(axes[0], maps):
            top = o.results["electrode_top_um"]
            size = 4.0 * np.cbrt(np.nan_to_num(d["volume_um3"], nan=0.0)) ** 2
            sc = ax.scatter(d["centroid_x_um"], top - d["centroid_z_um"], c=d[col], s=size, cmap="viridis",
                            vmin=lo, vmax=hi, edgecolors="k", linewidths=0.3)
            ax.set_title(o.name, fontsize=8)
            ax.set_xlabel("x (um)")
        axes[0][0].set_ylabel("depth from separator (um)")
        axes[0][0].invert_yaxis()
        fig.colorbar(sc, ax=axes[0].tolist(), label="particle SoL (-)")
        out.append(save_figure(fig, fig_dir / "sol_maps.png",
                               f"Per-particle mean SoL at {pct} % DoD, {c:g}C, projected on x-depth (marker area "
                               "~ particle size; separator at the top; cf. paper Fig. 6j-l, 7d-f).", study_dir))
    return out


if __name__ == "__main__":
    import sys

    from tomocell.studies.runner import study_main

    raise SystemExit(study_main(sys.modules[__name__]))
