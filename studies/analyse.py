"""Discharge analysis of one or several simulation runs (paper section "Microstructure and
performance correlation", Fig. 3-5 and Supplementary Fig. 6-9): :func:`analyse_runs`.

For runs of one electrode at several C-rates (``tomocell simulate --out`` directories) it writes into
``out_dir`` (atomically: the directory appears complete or not at all):

* ``voltage_capacity.png`` + ``discharge_summary.csv``: V vs capacity (mAh/g, mAh/cm^2), cut-off,
  capacity, energy, mean voltage per rate;
* ``fields_render.png``: SoL, c_e, |N|, J_ct at the DoD, one column per rate, fixed colour ranges;
* ``particle_sol_depth.png``, ``sol_histograms.png``, ``intraparticle.png`` + ``particles_<rate>.csv``,
  ``sol_peaks.csv``, ``sol_spread.csv``, ``intraparticle.csv``: per-particle SoL (Fig. 4);
* ``charge_transfer.png`` + ``charge_transfer.csv``: J_ct vs i0 / eta_act, eta decomposition (Fig. 5a-c);
* ``transport_path.png`` + ``transport.csv`` (with a characterisation directory): phi_e vs travel
  distance, local tortuosity vs depth (Fig. 5d-i);
* ``profiles.png`` + ``profiles.csv``: through-thickness SoL, c_e, J_ct;
* ``biot.png`` (Biot numbers in ``particles_<rate>.csv``);
* ``report.md`` / ``report.html`` tying them together, and ``run.json`` (when called from the CLI).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.atomic import atomic_dir
from tomocell.errors import InputError
from tomocell.log import get_logger, progress
from tomocell.studies import analysis_compute as ac
from tomocell.studies import analysis_figures as af
from tomocell.studies.analysis_report import write_csv, write_report
from tomocell.studies.analysis_run import RunData, load_run
from tomocell.studies.runner import Figure

log = get_logger("studies.analyse")


@dataclass
class AnalysisResult:
    out_dir: Path
    dod: float
    runs: list[str]  #: run names (rate labels) in C-rate order
    summary: list[dict[str, Any]]  #: discharge table rows
    spread: list[dict[str, Any]]  #: SoL spread rows (rate x DoD)
    conclusions: list[str]
    figures: list[Figure] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    governs_j: dict[str, str] = field(default_factory=dict)  #: rate -> 'eta_act' | 'i0'
    spread_grows_with_rate: bool | None = None
    render_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


def load_runs(run_dirs: Sequence[str | Path]) -> list[RunData]:
    if not run_dirs:
        raise InputError("no run directories given")
    runs = [load_run(d) for d in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise InputError(f"several runs at the same C-rate ({', '.join(names)}): give one run per rate")
    return sorted(runs, key=lambda r: r.c_rate)


def analyse_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, *, dod: float = 0.5,
                 characterisation_dir: str | Path | None = None, render: bool = True,
                 peak_bandwidth: float | None = None) -> AnalysisResult:
    """Analyse the runs at depth of discharge ``dod`` (0-1); see the module docstring for the outputs.
    ``peak_bandwidth``: kernel bandwidth (SoL units) of the SoL-histogram peak search (default: Scott's rule)."""
    if not 0 < dod < 1:
        raise InputError(f"depth of discharge must lie in (0, 1), got {dod}")
    if peak_bandwidth is not None and not 0 < peak_bandwidth < 1:
        raise InputError(f"peak bandwidth must lie in (0, 1) (SoL units), got {peak_bandwidth}")
    runs = load_runs(run_dirs)
    for r in runs:
        r.snapshot(dod)  # InputError before anything is written
    if render:
        from tomocell.studies.analysis_render import check_same_mesh

        check_same_mesh(runs)
    ch = ac.load_characterisation(characterisation_dir) if characterisation_dir is not None else None
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        res = _analyse(runs, tmp, dod, ch, render, peak_bandwidth)
    res.out_dir = out
    return res


def _analyse(runs: list[RunData], out: Path, dod: float, ch: ac.Characterisation | None, render: bool,
             bw: float | None = None) -> AnalysisResult:
    figs: list[Figure] = []
    tables: list[str] = []
    conclusions: list[str] = []
    notes: list[str] = []

    def table(name: str, rows: list[dict[str, Any]], cols: Sequence[str] | None = None) -> None:
        write_csv(out / name, rows, cols)
        tables.append(name)

    # voltage vs capacity
    summary = [ac.discharge_summary(r) for r in runs]
    table("discharge_summary.csv", summary)
    figs.append(af.voltage_capacity(runs, summary, out))

    # renders (Fig. 3)
    ranges: dict[str, tuple[float, float]] = {}
    if render:
        from tomocell.studies.analysis_render import render_fields

        ranges = render_fields(runs, dod, out / "fields_render.png")
        figs.append(Figure("fields_render.png",
                           f"Fields at {100 * dod:.0f} % DoD, one column per C-rate (cf. Fig. 3): state of lithiation in "
                           "the particles, salt concentration c_e and |Li+ flux| in the pores of the electrode, and the "
                           "Butler-Volmer current density J_ct on the particle surfaces (grey: no reaction facet). "
                           "Separator side on top; colour ranges fixed per row across rates (render_ranges.csv): min-max of SoL and c_e, 1-99 % quantiles of |N| and J_ct over all rates."))
        table("render_ranges.csv", [{"field": k, "min": v[0], "max": v[1]} for k, v in ranges.items()])

    # per-particle SoL at every DoD any run reached (Fig. 4a-c)
    dods = sorted({s.dod for r in runs for s in r.snapshots.values()})
    ps_all: dict[tuple[str, str], ac.ParticleSoL] = {}
    spread: list[dict[str, Any]] = []
    for r in progress(runs, desc="per-particle SoL"):
        for d in dods:
            if any(abs(s.dod - d) < 1e-9 for s in r.snapshots.values()):
                p = ac.particle_sol(r, d, bw)
                ps_all[(r.name, f"{d:.2f}")] = p
                spread.append({"c_rate": r.c_rate, "dod": d, **ac.sol_spread(p)})
    table("sol_spread.csv", spread)
    inert = {r.name: ps_all[(r.name, f"{dod:.2f}")].n_inert for r in runs}
    if any(inert.values()):
        notes.append("Particles left out of the per-particle analyses because the simulation set them inert (no "
                     "electronic path to the current collector): " + ", ".join(f"{k}: {v}" for k, v in inert.items()) + ".")
    figs.append(af.particle_sol_depth(runs, ps_all, dods, out))
    ps = {r.name: ps_all[(r.name, f"{dod:.2f}")] for r in runs}
    figs.append(af.sol_histograms(runs, ps, dod, out))
    table("sol_peaks.csv", [{"c_rate": r.c_rate, "dod": dod, "peak": k + 1, "position": pk.position, "lower": pk.lower,
                             "upper": pk.upper, "volume_fraction": pk.weight_fraction,
                             "n_particles": int(np.sum(ps[r.name].peak_of == k)),
                             "particles": " ".join(str(int(i)) for i in ps[r.name].particle[ps[r.name].peak_of == k])}
                            for r in runs for k, pk in enumerate(ps[r.name].peaks)])
    if render:
        from tomocell.studies.analysis_render import render_peak_particles

        peak_of = {r.name: {int(k): int(v) for k, v in zip(ps[r.name].particle, ps[r.name].peak_of)} for r in runs}
        peak_sol = {r.name: [float(pk.position) for pk in ps[r.name].peaks] for r in runs}
        if render_peak_particles(runs, peak_of, dod, out / "peak_particles.png", peak_sol=peak_sol):
            figs.append(Figure("peak_particles.png",
                               "The particles of each SoL-histogram peak (colours as in the histograms), rendered from "
                               "the mesh's particle tags; separator side on top - cf. the inset of Fig. 4e."))
        else:
            notes.append("The runs name no mesh file with particle tags, so the particles of each peak are listed "
                         "(sol_peaks.csv) but not rendered.")
    at = [s for s in spread if abs(s["dod"] - dod) < 1e-9]
    grows: bool | None = None
    if len(at) > 1:
        sds = [s["std"] for s in at]
        grows = bool(all(b > a for a, b in zip(sds, sds[1:])))
        conclusions.append(
            f"Particle-to-particle SoL spread at {100 * dod:.0f} % DoD (volume-weighted sd): "
            + ", ".join(f"{s['c_rate']:g}C {s['std']:.4f}" for s in at)
            + (": it grows with C-rate." if grows else ": it does NOT grow monotonically with C-rate."))

    # intra-particle spread
    intra = {r.name: ac.intraparticle(r, dod, ps[r.name]) for r in progress(runs, desc="intra-particle")}
    table("intraparticle.csv", [{"c_rate": r.c_rate, "distance_from_surface_um": x, "sol_mean": m, "nodes": n}
                                for r in runs for x, m, n in zip(intra[r.name]["distance_um"], intra[r.name]["sol_mean"],
                                                                 intra[r.name]["node_count"])])
    figs.append(af.intraparticle(runs, intra, ps, dod, out))
    conclusions.append("Surface minus core SoL (active phase): " + ", ".join(
        f"{r.c_rate:g}C {intra[r.name]['surface_node_sol'] - intra[r.name]['core_sol']:+.4f}" for r in runs) + ".")

    # charge transfer (Fig. 5a-c, Supplementary Fig. 9)
    ct = {r.name: ac.charge_transfer(r, dod) for r in progress(runs, desc="charge transfer")}
    table("charge_transfer.csv", [{
        "c_rate": r.c_rate, "pearson_J_i0": c.j_vs_i0.pearson, "spearman_J_i0": c.j_vs_i0.spearman,
        "pearson_J_eta": c.j_vs_eta.pearson, "spearman_J_eta": c.j_vs_eta.spearman, "sd_eta_V": c.decomposition.sd_eta,
        "sd_U_V": c.decomposition.sd_U, "sd_phi_e_V": c.decomposition.sd_phi_e, "sd_phi_s_V": c.decomposition.sd_phi_s,
        "sd_ln_i0": c.sd_ln_i0, "sd_ln_J_over_i0": c.sd_ln_j_over_i0, "J_governed_by": c.governs_j, "eta_governed_by": c.decomposition.governing, "n_facets": c.j_vs_eta.n}
        for r, c in ((r, ct[r.name]) for r in runs)])
    figs.append(af.charge_transfer(runs, ct, dod, out))
    conclusions += [ct[r.name].conclusion for r in runs]

    # transport path (Fig. 5d-i)
    if ch is not None:
        tp = {r.name: ac.transport_path(r, dod, ch) for r in progress(runs, desc="transport path")}
        table("transport.csv", [{"c_rate": r.c_rate, "pearson_travel_phi_e": tp[r.name]["corr_phi_e"].pearson,
                                 "spearman_travel_phi_e": tp[r.name]["corr_phi_e"].spearman,
                                 "pearson_travel_J": tp[r.name]["corr_J"].pearson,
                                 "spearman_travel_J": tp[r.name]["corr_J"].spearman,
                                 "mapped_fraction": tp[r.name]["mapped_fraction"]} for r in runs])
        figs.append(af.transport(runs, tp, ch.sites, dod, out))
        conclusions.append("phi_e at the reaction sites vs travel distance from the separator (Pearson): " + ", ".join(
            f"{r.c_rate:g}C {tp[r.name]['corr_phi_e'].pearson:+.2f}" for r in runs) + ".")
    else:
        notes.append("No characterisation directory given: the transport-path analysis (phi_e vs travel distance, "
                     "local tortuosity) was skipped; pass --characterisation DIR from `tomocell characterise`.")

    # through-thickness profiles
    edges = ac.common_depth_edges(runs, dod)
    prof = {r.name: ac.depth_profiles(r, dod, edges) for r in progress(runs, desc="profiles")}
    table("profiles.csv", [{"c_rate": r.c_rate, "depth_um": prof[r.name]["depth_um"][i],
                            **{k: prof[r.name][k][i] for k in ("sol", "c_e_mol_m3", "phi_e_V", "J_ct_A_m2")}}
                           for r in runs for i in range(prof[r.name]["depth_um"].size)])
    figs.append(af.profiles(runs, prof, max(r.thickness_um for r in runs), dod, out))

    # Biot numbers and the per-particle table
    bi = {r.name: ac.biot(r, dod, ps[r.name]) for r in runs}
    figs.append(af.biot(runs, bi, dod, out))
    for r in runs:
        p, b, it = ps[r.name], bi[r.name], intra[r.name]
        rows = []
        for i in range(p.particle.size):
            row = {"particle": int(p.particle[i]), "depth_um": p.depth_um[i], "radius_um": p.radius_um[i],
                   "volume_um3": p.volume_um3[i]}
            for d in dods:
                q = ps_all.get((r.name, f"{d:.2f}"))
                if q is not None:
                    hit = np.nonzero(q.particle == p.particle[i])[0]
                    row[f"sol_dod{int(round(100 * d)):03d}"] = q.sol[hit[0]] if hit.size else float("nan")
            row.update({"peak": int(p.peak_of[i]) + 1, "surface_sol": it["surface_sol"][i],
                        "surface_minus_mean": it["surface_minus_mean"][i], "flux_mol_m2_s": b["flux_mol_m2_s"][i],
                        "biot": b["biot"][i]})
            rows.append(row)
        table(f"particles_{r.name}.csv", rows)
    conclusions.append("Median electrochemical Biot number: " + ", ".join(
        f"{r.c_rate:g}C {np.nanmedian(bi[r.name]['biot']):.3g}" for r in runs) + ".")

    res = AnalysisResult(out, dod, [r.name for r in runs], summary, spread, conclusions, figs, tables,
                         {r.name: ct[r.name].governs_j for r in runs}, grows, ranges)
    write_report(out, runs=runs, dod=dod, summary=summary, spread=at, conclusions=conclusions, figures=figs,
                 tables=tables, notes=notes)
    return res
