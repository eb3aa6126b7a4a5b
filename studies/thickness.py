"""Thick electrode study (Lu et al. 2020, Fig. 8, green curve): a 50 um electrode against a 75 um one.

The 75 um electrode is made from the 50 um input by the ``thick`` structure variant
(:func:`tomocell.microstructure.variants_thick.thick_electrode`: mirror stacking, or a new synthetic
electrode of the same statistics with ``method = "generate"``), so the two differ only in thickness
and mass loading. Both are discharged at every C-rate of ``c_rates``; the runs, tables and Ragone /
capacity figures are those of :mod:`tomocell.studies.rate_capability`, plus the areal capacity
(mAh/cm^2) against C-rate, where the thicker electrode's extra loading shows at low rate and its
transport limitation at high rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tomocell.studies import rate_capability as rc
from tomocell.studies.runner import Figure, RunOutcome, RunSpec, save_figure

NAME = "thickness"
DESCRIPTION = (
    "Thick electrode study (paper Fig. 8, 50 vs 75 um): the input electrode and a 75 um electrode of the same "
    "statistics (thick variant) discharged at each C-rate; specific and areal capacity against C-rate, Ragone "
    "plot with knee points."
)


def plan(config: dict[str, Any]) -> list[RunSpec]:
    return rc.plan(config)


def run_one(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    return rc.run_one(params, run_dir)


def areal_figure(outcomes: list[RunOutcome], fig_dir: Path, what: str = "electrode") -> Figure:
    """Areal capacity (mAh/cm^2) against C-rate per design, thickness in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for design, runs in rc.by_design(outcomes).items():
        t = runs[0].results["structure"]["thickness_um"]
        ax.plot([float(o.params["c_rate"]) for o in runs], [o.results["capacity_mAh_cm2"] for o in runs], "o-",
                label=f"{design} ({t:.0f} um, {runs[0].results['structure']['active_loading_mg_cm2']:.1f} mg/cm$^2$)")
    rc.log_axes(ax, "C-rate", "accessible capacity (mAh cm$^{-2}$)", legend_size=7)
    fig.tight_layout()
    return save_figure(fig, fig_dir / "areal_capacity_vs_c_rate.png",
                       f"Accessible areal capacity against C-rate for each {what} (legend: thickness and active "
                       "mass loading).", fig_dir.parent)


def figures(outcomes: list[RunOutcome], fig_dir: Path) -> list[Figure]:
    return [*rc.rate_figures(outcomes, fig_dir, what="thickness"), areal_figure(outcomes, fig_dir)]


if __name__ == "__main__":
    import sys

    from tomocell.studies.runner import study_main

    raise SystemExit(study_main(sys.modules[__name__]))
