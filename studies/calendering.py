"""Calendering structure study (Lu et al. 2020, Fig. 9d-k): structure metrics against strain.

For each strain (default 0, 7, 15, 22.5 %) the input electrode is compressed with the geometric
model of :mod:`tomocell.microstructure.variants_calendering` (rigid particles, bonded CBD moving
with them, pore and free CBD compacting; *not* DEM: see that module's docstring), and the
calendered volume is characterised with the characterisation functions:

* porosity and phase fractions;
* pore-size distribution: local thickness of the pore phase (diameter of the largest inscribed
  sphere, um), volume weighted, with D10/D50/D90 (Fig. 9j);
* tortuosity factor of the pore phase through the thickness (steady diffusion, TauFactor
  convention) and the Bruggeman exponent ``p = -ln(tau) / ln(eps)`` (``tau = eps^-p``; the
  MacMullen number is ``eps^-(1+p)``) (Fig. 9k);
* active/pore specific interface area (um^-1 = um^2 per um^3 of electrode);
* crushed CBD volume (Fig. 9j inset), compacted free CBD, deformed active volume.

Outputs (study runner layout): ``runs/strain-<s>pct/{run.json,calendered.tif}``, ``results.csv``,
``summary.csv``, ``figures/*.png``, ``report.md``. The electrochemical half of the paper's Fig. 9l
(rate capability of calendered electrodes) needs the physics and is not part of this module.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tomocell import mpi
from tomocell.errors import InputError, NotPercolatingError
from tomocell.log import get_logger
from tomocell.microstructure.variants_calendering import PAPER_STRAINS, calender
from tomocell.microstructure.volume import ACTIVE, PORE, Volume
from tomocell.studies.inputs import load_volume_cached
from tomocell.studies.runner import Figure, RunOutcome, RunSpec, save_figure

log = get_logger(__name__)

NAME = "calendering"
DESCRIPTION = (
    "Calendering structure study (paper Fig. 9j-k): the electrode compressed along its thickness with "
    "tomocell's geometric calendering model (rigid particles that deform only when packed, bonded CBD "
    "moving with its particle, pore and free CBD compacting; not a DEM simulation), characterised at "
    "each strain."
)


def run_name(strain: float) -> str:
    return f"strain-{100 * strain:g}pct"


def plan(config: dict[str, Any]) -> list[RunSpec]:
    """One run per strain (``strains``, default 0 plus the paper's 7, 15, 22.5 %)."""
    strains = config.get("strains", [0.0, *PAPER_STRAINS])
    if not isinstance(strains, (list, tuple)) or not strains:
        raise InputError(f"strains must be a non-empty list of numbers in [0, 0.9), got {strains!r}")
    vals = []
    for s in strains:
        try:
            v = float(s)
        except (TypeError, ValueError):
            raise InputError(f"strain {s!r} is not a number") from None
        if not 0.0 <= v < 0.9:
            raise InputError(f"strain {v} is outside [0, 0.9)")
        vals.append(v)
    if "volume" not in config:
        raise InputError("the calendering study needs a [volume] table (synthetic = {...} or path = ...)")
    common = {"volume": config["volume"], "cbd_attach_um": float(config.get("cbd_attach_um", 1.0)),
              "axis": int(config.get("axis", 0)), "seed": int(config.get("seed", 0)),
              "psd_bin_um": float(config.get("psd_bin_um", 0.0))}
    if common["psd_bin_um"] < 0:
        raise InputError(f"psd_bin_um = {common['psd_bin_um']} must be >= 0 (0: one bin per voxel width)")
    return [RunSpec(run_name(v), {"strain": v, **common}) for v in vals]


# ------------------------------------------------------------------ metrics
def bruggeman_exponent(tau: float | None, eps: float) -> float | None:
    """``p`` in ``tau = eps^-p`` (None when tau is undefined or eps is 0 or 1)."""
    if tau is None or not (0.0 < eps < 1.0) or not tau > 0:
        return None
    return -math.log(tau) / math.log(eps)


def pore_size_distribution(volume: Volume, bin_um: float = 0.0) -> dict[str, Any]:
    """Volume-weighted local-thickness distribution of the pore phase (um), from the
    characterisation's :func:`~tomocell.microstructure.poresize.local_thickness`.

    ``bin_um``: histogram bin width in um; 0 uses the smallest voxel edge (one bin per
    local-thickness level), so every strain step is binned alike and the curves compare."""
    from tomocell.microstructure.poresize import local_thickness, size_distribution

    lt = local_thickness(volume, "pore")
    d = size_distribution(lt, volume.labels == PORE, bin_um or None)
    edges = np.asarray(d.pop("bin_edges_um"))
    d["bin_centre_um"] = (0.5 * (edges[:-1] + edges[1:])).tolist()
    d["volume_fraction"] = np.asarray(d["volume_fraction"]).tolist()
    return d


def active_pore_area(volume: Volume) -> tuple[float, str]:
    """Active/pore specific interface area (um^-1) and how it was measured.

    The characterisation's :func:`~tomocell.microstructure.interfaces.specific_areas` (marching
    cubes) when that module is installed; otherwise the voxel-face count, which overestimates a
    smooth interface (by ~1.5 for spheres) but is exact for the voxel geometry and fine for trends.
    """
    try:
        from tomocell.microstructure.interfaces import specific_areas
    except ImportError:
        return voxel_face_area(volume, ACTIVE, PORE), "voxel faces"
    return float(specific_areas(volume)["active_pore"]["marching_cubes_per_um"]), "marching cubes"


def voxel_face_area(volume: Volume, a: int, b: int) -> float:
    """Area of the voxel faces between phases ``a`` and ``b`` per electrode volume (um^-1)."""
    lab = volume.labels
    d0, d1, d2 = volume.voxel_size_um
    face = (d1 * d2, d0 * d2, d0 * d1)
    total = 0.0
    for ax in range(3):
        lo = np.take(lab, range(lab.shape[ax] - 1), axis=ax)
        hi = np.take(lab, range(1, lab.shape[ax]), axis=ax)
        total += face[ax] * int(np.count_nonzero(((lo == a) & (hi == b)) | ((lo == b) & (hi == a))))
    return total / (lab.size * volume.voxel_volume_um3)


def structure_metrics(volume: Volume, axis: int = 0, psd_bin_um: float = 0.0) -> dict[str, Any]:
    """The Fig. 9k metrics of one volume (see module docstring)."""
    from tomocell.microstructure.tortuosity import tortuosity_factor

    fr = volume.fractions()
    area, area_method = active_pore_area(volume)
    try:
        tr = tortuosity_factor(volume, "pore", axis, raise_if_not_percolating=False)
        tau, percolating = tr.tau, tr.percolating
    except NotPercolatingError:
        tau, percolating = None, False
    return {
        "porosity": fr["pore"],
        "active_fraction": fr["active"],
        "cbd_fraction": fr["cbd"],
        "tortuosity_factor": tau,
        "pore_percolating": bool(percolating),
        "bruggeman_exponent": bruggeman_exponent(tau, fr["pore"]),
        "active_pore_area_per_um": area,
        "area_method": area_method,
        "pore_size": pore_size_distribution(volume, psd_bin_um),
    }


def run_one(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Calender the input to ``params['strain']``, save it, characterise it."""
    vol, ids, source = load_volume_cached(params["volume"], run_dir.parent.parent / "inputs")
    cal, rep = calender(vol, params["strain"], labels=ids, seed=params.get("seed", 0),
                        cbd_attach_um=params.get("cbd_attach_um", 1.0))
    if mpi.is_root():
        from tomocell.microstructure.io import write_volume

        write_volume(cal, run_dir / "calendered.tif")
    res: dict[str, Any] = {
        "achieved_strain": rep["strain"],
        "thickness_um": rep["thickness_um"],
        "shape": list(cal.shape),
        "input": source,
        "particle_identity": "generator ids" if ids is not None and "synthetic" in source else
                             ("watershed labels" if ids is not None else "6-connected components"),
        "particles_contact_limited": rep["particles_contact_limited"],
        "particles_deformed": rep["particles_deformed"],
        "deformed_active_volume_um3": rep["deformed_active_volume_um3"],
        "cbd_crushed_volume_um3": rep["cbd_crushed_volume_um3"],
        "cbd_crushed_fraction": rep["cbd_crushed_fraction"],
        "cbd_compacted_volume_um3": rep["cbd_compacted_volume_um3"],
        "active_voxels": rep["active_voxels"],
        "pore_open_to_separator": rep["pore_open_to_separator"],
    }
    res.update(structure_metrics(cal, int(params.get("axis", 0)), float(params.get("psd_bin_um", 0.0))))
    return res


# ------------------------------------------------------------------ figures
def figures(outcomes: list[RunOutcome], fig_dir: Path) -> list[Figure]:
    """Fig. 9k-like metric panels, Fig. 9j-like pore-size distributions, Fig. 9d-f-like slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = sorted((o for o in outcomes if o.succeeded), key=lambda o: o.results["achieved_strain"])
    study_dir = fig_dir.parent
    strain = np.array([100 * o.results["achieved_strain"] for o in ok])

    def series(key: str) -> np.ndarray:
        return np.array([np.nan if o.results.get(key) is None else float(o.results[key]) for o in ok])

    out: list[Figure] = []
    panels = [("porosity", "porosity (-)", 1.0), ("tortuosity_factor", "pore tortuosity factor (-)", 1.0),
              ("bruggeman_exponent", "Bruggeman exponent p (-)", 1.0),
              ("active_pore_area_per_um", "active/pore area (um$^{-1}$)", 1.0),
              ("cbd_crushed_fraction", "crushed CBD (% of input CBD)", 100.0)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0))
    for ax, (key, label, scale) in zip(axes, panels):
        ax.plot(strain, scale * series(key), "o-")
        ax.set_xlabel("compressive strain (%)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.append(save_figure(fig, fig_dir / "metrics_vs_strain.png",
                           "Structure metrics against calendering strain (cf. paper Fig. 9k): porosity, pore "
                           "tortuosity factor through the thickness, Bruggeman exponent p (tau = eps^-p), "
                           "active/pore specific area and crushed CBD volume as a share of the input CBD. "
                           "Geometric calendering model, not DEM.", study_dir))

    # local thickness on a voxel grid takes a few discrete values: empty bins between them are dropped
    # (a line through the zeros made a comb); the cumulative curve on the right compares the steps directly
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for i, o in enumerate(ok):
        ps = o.results.get("pore_size") or {}
        if ps.get("bin_centre_um"):
            x = np.asarray(ps["bin_centre_um"], float)
            f = 100 * np.asarray(ps["volume_fraction"], float)
            keep = f > 0
            lab = f"{100 * o.results['achieved_strain']:.1f} %  (D50 {ps['d50_um']:.2f} um)"
            axes[0].plot(x[keep], f[keep], "-o", ms=3, color=f"C{i}", label=lab)
            axes[1].step(x, np.cumsum(f), where="mid", color=f"C{i}", label=lab)
    axes[0].set_xlabel("pore diameter, local thickness (um)")
    axes[0].set_ylabel("pore volume (%)")
    axes[1].set_xlabel("pore diameter, local thickness (um)")
    axes[1].set_ylabel("cumulative pore volume (%)")
    axes[1].legend(title="strain", fontsize=8, loc="lower right")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.append(save_figure(fig, fig_dir / "pore_size_distribution.png",
                           "Volume-weighted pore-size distribution (local thickness) at each calendering step, "
                           "left per size level, right cumulative (cf. paper Fig. 9j).", study_dir))

    slices = []
    for o in ok:
        p = o.run_dir / "calendered.tif"
        if p.is_file():
            from tomocell.microstructure.io import read_volume

            v = read_volume(p)
            slices.append((o.results["achieved_strain"], v.labels[:, v.shape[1] // 2, :], v.voxel_size_um))
    if slices:
        # shared depth axis: the compressed electrodes are drawn thinner, as they are
        fig, axes = plt.subplots(1, len(slices), figsize=(3.0 * len(slices), 3.8), squeeze=False, sharey=True)
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        cmap = ListedColormap(["#1f1f1f", "#c9a227", "#4aa3df"])  # pore, active, CBD
        for ax, (s, sl, vs) in zip(axes[0], slices):
            ax.imshow(sl, cmap=cmap, vmin=0, vmax=2, interpolation="nearest",
                      extent=(0, sl.shape[1] * vs[2], sl.shape[0] * vs[0], 0))
            ax.set_title(f"strain {100 * s:.1f} %")
            ax.set_xlabel("in-plane (um)")
        axes[0][0].set_ylabel("depth from separator (um)")
        axes[0][0].set_ylim(max(sl.shape[0] * vs[0] for _, sl, vs in slices), 0)  # imshow set each axis's own
        fig.legend([Patch(color=c) for c in cmap.colors], ["pore", "active (NMC)", "CBD"], loc="lower center",
                   ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        out.append(save_figure(fig, fig_dir / "slices.png",
                               "Through-thickness slices of the calendered volumes (separator at the top, "
                               "current collector at the bottom; black pore, gold NMC, blue CBD; cf. paper "
                               "Fig. 9d-f).", study_dir))
    return out


if __name__ == "__main__":
    import sys

    from tomocell.studies.runner import study_main

    raise SystemExit(study_main(sys.modules[__name__]))
