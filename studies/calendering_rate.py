"""Rate capability of calendered vs uncalendered electrodes at three mass loadings (Lu et al. 2020, Fig. 9l).

The paper cycled electrodes of three mass loadings (1, 2, 3 mAh/cm^2: 30, 50, 85 um uncalendered)
uncalendered and calendered by 20 % (24, 40, 68 um). Here each *loading* is the input electrode
cropped or mirror-stacked to its uncalendered thickness (``thick`` variant), and its calendered twin
is the same electrode compressed by ``strain`` with tomocell's geometric calendering model
(:mod:`tomocell.microstructure.variants_calendering`: rigid particles, bonded CBD moving with them, pore
and free CBD compacting; active mass unchanged). Every electrode is discharged at every C-rate.

Figures: specific capacity against C-rate per loading, calendered vs uncalendered (Fig. 9l), the
volumetric capacity (mAh per cm^3 of electrode, what calendering is meant to raise) against C-rate,
and the Ragone plot of all electrodes. The structure metrics of calendering (porosity, tortuosity)
against strain are the ``calendering`` study.

The input must be an UNCALENDERED electrode (the default configs generate one: the bundled synthetic
composition diluted by 1/(1 - strain), porosity 0.44). Calendering an already calendered electrode
(porosity 0.30) by another 20 % closes most of its pore network, and such an electrode collapses at
any rate; every calendered run records ``pore_open_to_separator`` so this shows in the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tomocell.errors import InputError
from tomocell.studies import rate_capability as rc
from tomocell.studies.electrochem import reuse_option, run_discharge, sim_options, structure_params
from tomocell.studies.runner import Figure, RunOutcome, RunSpec, save_figure

NAME = "calendering-rate"
CONFIG_NAME = "calendering_rate"
DESCRIPTION = (
    "Rate capability of calendered vs uncalendered electrodes at three mass loadings (paper Fig. 9l): each loading "
    "(input electrode cropped/stacked to 30, 50, 85 um) discharged uncalendered and calendered by 20 % "
    "(geometric calendering model, active mass unchanged) at each C-rate."
)

PAPER_LOADINGS = [{"name": "low", "thickness_um": 30.0}, {"name": "mid", "thickness_um": 50.0},
                  {"name": "high", "thickness_um": 85.0}]


def loadings(config: dict[str, Any]) -> list[dict[str, Any]]:
    ls = config.get("loadings", PAPER_LOADINGS)
    if not isinstance(ls, list) or not ls:
        raise InputError("loadings must be a non-empty list of {name = ..., thickness_um = ...}")
    out = []
    for entry in ls:
        try:
            name, t = str(entry["name"]), float(entry["thickness_um"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"a loading needs name and thickness_um, got {entry!r}") from None
        if not t > 0:
            raise InputError(f"loading {name}: thickness_um must be > 0, got {t}")
        out.append({"name": name, "thickness_um": t, "method": str(entry.get("method", "mirror"))})
    if len({d["name"] for d in out}) != len(out):
        raise InputError("loading names must be unique")
    return out


def plan(config: dict[str, Any]) -> list[RunSpec]:
    """Loadings x (uncalendered, calendered) x C-rates."""
    rates = sorted(rc.c_rate_list(config))
    strain = float(config.get("strain", 0.2))
    if not 0 < strain < 0.9:
        raise InputError(f"strain must lie in (0, 0.9), got {strain}")
    sim = sim_options(config.get("simulate"))
    # bodies: watershed particles (explicit, so structures calendered with the old connected-component
    # bodies are not reused from a cache)
    cal = {"kind": "calender", "strain": strain, "cbd_attach_um": float(config.get("cbd_attach_um", 1.0)),
           "bodies": "watershed"}
    runs = []
    for ld in loadings(config):
        thick = {"kind": "thick", "thickness_um": ld["thickness_um"], "method": ld["method"]}
        for state, steps in (("uncalendered", [thick]), ("calendered", [thick, cal])):
            design = f"{ld['name']}-{state}"
            sp = structure_params(config.get("volume"), steps, config.get("mesh"), config.get("seed", 0))
            for c in rates:
                runs.append(RunSpec(rc.run_name(design, c), {
                    "design": design, "loading": ld["name"], "state": state, "strain": strain if state == "calendered" else 0.0,
                    "c_rate": c, "structure": sp, "simulate": sim, **reuse_option(config)}))
    return runs


def run_one(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    res = run_discharge(params, run_dir)
    t_cm = res["structure"]["thickness_um"] * 1e-4
    res["volumetric_capacity_mAh_cm3"] = res["capacity_mAh_cm2"] / t_cm
    return res


def figures(outcomes: list[RunOutcome], fig_dir: Path) -> list[Figure]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study_dir = fig_dir.parent
    groups = rc.by_design(outcomes)
    names = list(dict.fromkeys(str(runs[0].params["loading"]) for runs in groups.values()))
    out: list[Figure] = []
    for key, label, fname, cap in (
            ("capacity_mAh_g", "capacity (mAh g$^{-1}$ active)", "capacity_by_loading.png",
             "Accessible specific capacity against C-rate, calendered (solid) vs uncalendered (dashed), one panel per "
             "mass loading (cf. paper Fig. 9l); legend: electrode thickness, active loading."),
            ("volumetric_capacity_mAh_cm3", "capacity (mAh cm$^{-3}$ electrode)", "volumetric_capacity_by_loading.png",
             "Accessible volumetric capacity (per cm^3 of electrode coating) against C-rate, calendered (solid) vs "
             "uncalendered (dashed), per mass loading.")):
        fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4), squeeze=False)
        for ax, ld in zip(axes[0], names):
            for design, runs in groups.items():
                if str(runs[0].params["loading"]) != ld:
                    continue
                st = runs[0].results["structure"]
                ax.plot([float(o.params["c_rate"]) for o in runs], [o.results[key] for o in runs],
                        "o-" if runs[0].params["state"] == "calendered" else "s--",
                        label=f"{runs[0].params['state']} ({st['thickness_um']:.0f} um, "
                              f"{st['active_loading_mg_cm2']:.1f} mg/cm$^2$, eps {st['porosity']:.2f})")
            ax.set_title(f"loading: {ld}", fontsize=9)
            rc.log_axes(ax, "C-rate", label if ld == names[0] else "", legend_size=6)
        fig.tight_layout()
        out.append(save_figure(fig, fig_dir / fname, cap, study_dir))
    out.extend(f for f in rc.rate_figures(outcomes, fig_dir, what="electrode") if "ragone" in f.path)
    return out


if __name__ == "__main__":
    import sys

    from tomocell.studies.runner import study_main

    raise SystemExit(study_main(sys.modules[__name__]))
