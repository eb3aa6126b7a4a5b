"""Matplotlib figures of the discharge analysis (paper Fig. 4-5, Supplementary Fig. 6-9).

Every function draws from numbers computed in :mod:`tomocell.studies.analysis_compute`, saves one
PNG atomically under ``out`` and returns its :class:`~tomocell.studies.runner.Figure` entry
(path relative to ``out`` + caption). Depth is the distance from the separator (um), so the
separator side is on the left of depth axes (and at the top of the renders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tomocell.studies.analysis_compute import ChargeTransfer, ParticleSoL
from tomocell.studies.analysis_run import RunData
from tomocell.studies.runner import Figure, save_figure

PEAK_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, rows: int = 1, w: float = 4.2, h: float = 3.6) -> tuple[Any, np.ndarray]:
    plt = _plt()
    fig, ax = plt.subplots(rows, n, figsize=(w * n, h * rows), squeeze=False, layout="constrained")
    return fig, ax


def voltage_capacity(runs: list[RunData], summary: list[dict[str, float]], out: Path) -> Figure:
    from tomocell.studies.analysis_compute import discharge_segment

    fig, ax = _grid(2, w=5.2)
    for run in runs:
        d = discharge_segment(run)
        for a, col in zip(ax[0], ("capacity_mAh_g", "capacity_mAh_cm2")):
            a.plot(d[col], d["voltage_V"], label=f"{run.c_rate:g}C")
    cut = [s["cut_off_V"] for s in summary if np.isfinite(s["cut_off_V"])]
    for a, xl in zip(ax[0], ("capacity (mAh/g of active material)", "capacity (mAh/cm$^2$)")):
        if cut:
            a.axhline(cut[0], color="k", ls="--", lw=0.8, label=f"cut-off {cut[0]:g} V")
        a.set_xlabel(xl)
        a.set_ylabel("cell voltage (V vs Li/Li$^+$)")
        a.grid(alpha=0.3)
    ax[0, 0].legend()
    caps = "; ".join(f"{s['c_rate']:g}C: {s['capacity_mAh_g']:.1f} mAh/g, {s['mean_voltage_V']:.3f} V mean" for s in summary)
    return save_figure(fig, out / "voltage_capacity.png",
                       "Voltage vs delivered capacity per active-material mass (left) and per projected area (right) for "
                       f"each C-rate, discharge to the cut-off (dashed) - cf. Supplementary Fig. 6. {caps}.", out)


def particle_sol_depth(runs: list[RunData], ps: dict[tuple[str, str], ParticleSoL], dods: list[float], out: Path) -> Figure:
    """Fig. 4a-c: per-particle SoL vs distance from the separator, colour and size = particle size."""
    fig, ax = _grid(len(runs), rows=len(dods))
    rmax = max(float(np.nanmax(p.radius_um)) for p in ps.values())
    rmin = min(float(np.nanmin(p.radius_um)) for p in ps.values())
    sc = None
    ylo = min(float(np.nanmin(p.sol)) for p in ps.values())
    yhi = max(float(np.nanmax(p.sol)) for p in ps.values())
    pad = max(0.005, 0.05 * (yhi - ylo))
    for j, run in enumerate(runs):
        for i, dod in enumerate(dods):
            a = ax[i, j]
            p = ps.get((run.name, f"{dod:.2f}"))
            if p is None:
                a.text(0.5, 0.5, f"{100 * dod:.0f} % DoD\nnot reached", ha="center", va="center", transform=a.transAxes)
                a.set_axis_off()
                continue
            sc = a.scatter(p.depth_um, p.sol, c=p.radius_um, s=8 + 120 * (p.radius_um / rmax) ** 2, cmap="viridis",
                           vmin=rmin, vmax=rmax, edgecolors="k", linewidths=0.3)
            a.set_title(f"{run.c_rate:g}C, {100 * dod:.0f} % DoD")
            a.set_xlabel("distance from separator (um)")
            a.set_ylabel("particle mean SoL")
            a.set_ylim(ylo - pad, yhi + pad)  # one SoL scale for every panel, so rates and DoDs compare
            a.grid(alpha=0.3)
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="equivalent radius (um)", shrink=0.8)
    return save_figure(fig, out / "particle_sol_depth.png",
                       "Mean state of lithiation of every particle against the distance of its centroid from the "
                       "separator, per C-rate (columns) and depth of discharge (rows); colour and symbol size = "
                       "volume-equivalent particle radius (blue large, red small) - cf. Fig. 4a-c.", out)


def sol_histograms(runs: list[RunData], ps: dict[str, ParticleSoL], dod: float, out: Path) -> Figure:
    """Fig. 4d-e: volume-weighted SoL histograms with the peaks found, and which particles form each peak."""
    fig, ax = _grid(len(runs), rows=2)
    lo = min(float(p.sol.min()) for p in ps.values())
    hi = max(float(p.sol.max()) for p in ps.values())
    pad = max(0.01, 0.05 * (hi - lo))
    bins = np.linspace(lo - pad, hi + pad, 40)
    for j, run in enumerate(runs):
        p = ps[run.name]
        a = ax[0, j]
        w = p.volume_um3 / p.volume_um3.sum()
        for k, pk in enumerate(p.peaks):
            sel = p.peak_of == k
            a.hist(p.sol[sel], bins=bins, weights=w[sel], color=PEAK_COLOURS[k % len(PEAK_COLOURS)], alpha=0.8,
                   label=f"peak {k + 1}: SoL {pk.position:.3f} ({100 * pk.weight_fraction:.0f} %)")
            a.axvline(pk.position, color=PEAK_COLOURS[k % len(PEAK_COLOURS)], ls="--", lw=1)
        a.set_title(f"{run.c_rate:g}C, {100 * dod:.0f} % DoD")
        a.set_xlabel("particle mean SoL")
        a.set_ylabel("active volume fraction")
        a.legend(fontsize=7)
        b = ax[1, j]
        for k, _pk in enumerate(p.peaks):
            sel = p.peak_of == k
            b.scatter(p.depth_um[sel], p.radius_um[sel], s=10 + 60 * p.sol[sel] ** 4, color=PEAK_COLOURS[k % len(PEAK_COLOURS)],
                      label=f"peak {k + 1} ({sel.sum()} particles)", edgecolors="k", linewidths=0.3)
        b.set_xlabel("distance from separator (um)")
        b.set_ylabel("equivalent radius (um)")
        b.legend(fontsize=7)
        b.grid(alpha=0.3)
    return save_figure(fig, out / "sol_histograms.png",
                       "Top: histogram of the particle mean SoL weighted by particle volume, with the peaks found by "
                       "kernel density (dashed) and the particles of each peak coloured. Bottom: where the particles "
                       "of each peak are (depth) and how large they are - cf. Fig. 4d-e.", out)


def intraparticle(runs: list[RunData], intra: dict[str, dict[str, Any]], ps: dict[str, ParticleSoL], dod: float,
                  out: Path) -> Figure:
    fig, ax = _grid(2, w=5.0)
    for run in runs:
        d = intra[run.name]
        ok = np.isfinite(d["sol_mean"])
        ax[0, 0].plot(d["distance_um"][ok], d["sol_mean"][ok], "o-", label=f"{run.c_rate:g}C")
        p = ps[run.name]
        ax[0, 1].scatter(p.radius_um, d["surface_minus_mean"], s=10, label=f"{run.c_rate:g}C")
    ax[0, 0].set_xlabel("distance from the particle surface (um)")
    ax[0, 0].set_ylabel("mean SoL")
    ax[0, 0].set_title(f"surface to core, {100 * dod:.0f} % DoD")
    ax[0, 1].axhline(0, color="k", lw=0.6)
    ax[0, 1].set_xlabel("equivalent radius (um)")
    ax[0, 1].set_ylabel("surface SoL - particle mean SoL")
    for a in ax[0]:
        a.grid(alpha=0.3)
        a.legend()
    return save_figure(fig, out / "intraparticle.png",
                       "Intra-particle heterogeneity. Left: SoL of the active phase against the distance to the particle "
                       "surface (core = largest distances). Right: per particle, SoL on its reaction surface minus its "
                       "volume mean, against particle size: solid diffusion limits large particles at high rates.", out)


def charge_transfer(runs: list[RunData], ct: dict[str, ChargeTransfer], dod: float, out: Path) -> Figure:
    _plt()
    from matplotlib.colors import LogNorm

    fig, ax = _grid(len(runs), rows=3, h=3.4)
    for j, run in enumerate(runs):
        c = ct[run.name]
        jv = c.data["J_ct_A_m2"]
        for i, (corr, key, xl) in enumerate(((c.j_vs_i0, "i0_A_m2", "i$_0$ (A/m$^2$)"),
                                             (c.j_vs_eta, "eta_V", r"$\eta_{act}$ (V)"))):
            a = ax[i, j]
            # drawn over the 0.5-99.5 % range of each variable so a few extreme facets do not squash the plot
            xv = c.data[key]
            ok = np.isfinite(xv) & np.isfinite(jv)
            rng = [np.quantile(xv[ok], (0.005, 0.995)), np.quantile(jv[ok], (0.005, 0.995))]
            rng = [(lo, hi) if hi > lo else (lo - 1e-12, hi + 1e-12) for lo, hi in rng]
            h, xe, ye = np.histogram2d(xv[ok], jv[ok], bins=50, range=rng, weights=c.data["area_um2"][ok])
            pm = a.pcolormesh(xe, ye, np.where(h > 0, h, np.nan).T, norm=LogNorm(), cmap="viridis")
            fig.colorbar(pm, ax=a, label="interface area per bin (um$^2$)")
            a.set_xlabel(xl)
            a.set_ylabel("J$_{ct}$ (A/m$^2$)")
            a.set_title(f"{run.c_rate:g}C: Pearson {corr.pearson:+.2f}, Spearman {corr.spearman:+.2f}", fontsize=9)
        a = ax[2, j]
        d = c.decomposition
        names = [r"$\eta_{act}$", "U(c$_s$)", r"$\phi_e$", r"$\phi_s$"]
        vals = [1e3 * d.sd_eta, 1e3 * d.sd_U, 1e3 * d.sd_phi_e, 1e3 * d.sd_phi_s]
        a.bar(names, vals, color=["grey", "tab:orange", "tab:blue", "tab:green"])
        a.set_ylabel("spread over the interface, sd (mV)")
        a.set_title(f"{run.c_rate:g}C: J$_{{ct}}$ governed by {c.governs_j}; $\\eta$ by {d.governing}", fontsize=9)
    return save_figure(fig, out / "charge_transfer.png",
                       f"Charge-transfer heterogeneity at {100 * dod:.0f} % DoD: area-weighted 2D histograms of the "
                       "Butler-Volmer current density J_ct (< 0 on discharge) against the exchange current density i0 "
                       "(row 1) and the activation overpotential eta_act (row 2), with correlation coefficients; row 3: "
                       "spread of eta_act and of its parts U(c_s), phi_e, phi_s - cf. Fig. 5a-c and Supplementary Fig. 9.",
                       out)


def transport(runs: list[RunData], tp: dict[str, dict[str, Any]], sites: dict[str, np.ndarray] | None, dod: float,
              out: Path) -> Figure:
    _plt()
    from matplotlib.colors import LogNorm

    n = len(runs) + (1 if sites is not None else 0)
    fig, ax = _grid(n)
    for j, run in enumerate(runs):
        c = tp[run.name]["corr_phi_e"]
        a = ax[0, j]
        h = np.where(c.hist > 0, c.hist, np.nan)
        pm = a.pcolormesh(c.x_edges, c.y_edges, h.T, norm=LogNorm(), cmap="viridis")
        fig.colorbar(pm, ax=a, label="reaction sites per bin")
        a.set_xlabel("travel distance from separator (um)")
        a.set_ylabel(r"$\phi_e$ at reaction site (V)")
        a.set_title(f"{run.c_rate:g}C: Pearson {c.pearson:+.2f}, Spearman {c.spearman:+.2f}", fontsize=9)
    if sites is not None:
        a = ax[0, -1]
        a.scatter(sites["depth_um"], sites["tau_electrode"], s=1, alpha=0.3, label=r"$\tau_{electrode}$")
        a.scatter(sites["depth_um"], sites["tau_pore"], s=1, alpha=0.3, label=r"$\tau_{pore}$")
        from tomocell.studies.analysis_stats import depth_profile

        for key, col in (("tau_electrode", "C0"), ("tau_pore", "C1")):
            cen, m, _ = depth_profile(sites["depth_um"], sites[key], edges=15)
            a.plot(cen, m, color=col, lw=2)
        hi = np.nanquantile(np.r_[sites["tau_electrode"], sites["tau_pore"]], 0.995)
        a.set_ylim(0.95, max(float(hi), 1.5))
        a.set_xlabel("distance from separator (um)")
        a.set_ylabel("local tortuosity at reaction sites")
        a.legend(markerscale=8)
        a.grid(alpha=0.3)
    return save_figure(fig, out / "transport_path.png",
                       f"Transport path at {100 * dod:.0f} % DoD: electrolyte potential at the reaction facets against "
                       "the Li+ travel distance through the pores from the separator (fast marching, characterisation), "
                       "with correlation coefficients (cf. Fig. 5e-f); last panel: local tortuosities tau_electrode and "
                       "tau_pore of every reaction site against depth, lines = slice means (cf. Fig. 5i).", out)


def profiles(runs: list[RunData], prof: dict[str, dict[str, np.ndarray]], L_um: float, dod: float, out: Path) -> Figure:
    fig, ax = _grid(3, w=4.6)
    for run in runs:
        p = prof[run.name]
        for a, key in zip(ax[0], ("sol", "c_e_mol_m3", "J_ct_A_m2")):
            ok = np.isfinite(p[key])
            a.plot(p["depth_um"][ok], p[key][ok], "o-", ms=3, label=f"{run.c_rate:g}C")
    x0 = min(float(p["depth_um"].min()) for p in prof.values())
    for a, yl in zip(ax[0], ("mean SoL", "c$_e$ (mol/m$^3$)", "J$_{ct}$ (A/m$^2$)")):
        a.set_xlim(x0 - 0.5, L_um + 0.5)
        a.axvline(0, color="k", lw=0.8, ls=":")
        a.axvline(L_um, color="k", lw=0.8, ls=":")
        a.set_xlabel("distance from separator (um)")
        a.set_ylabel(yl)
        a.grid(alpha=0.3)
    ax[0, 0].legend()
    return save_figure(fig, out / "profiles.png",
                       f"Through-thickness profiles at {100 * dod:.0f} % DoD: slice means of the SoL (active volume), the "
                       "salt concentration c_e (electrolyte volume; negative depth = separator) and J_ct (interface area) "
                       "against the distance from the separator (dotted: separator plane and current collector).", out)


def biot(runs: list[RunData], bi: dict[str, dict[str, np.ndarray]], dod: float, out: Path) -> Figure:
    fig, ax = _grid(2, w=5.0)
    for run in runs:
        b = bi[run.name]
        ok = np.isfinite(b["biot"]) & (b["biot"] > 0)
        ax[0, 0].scatter(b["radius_um"][ok], b["biot"][ok], s=10, label=f"{run.c_rate:g}C")
        ax[0, 1].scatter(b["depth_um"][ok], b["biot"][ok], s=10, label=f"{run.c_rate:g}C")
    for a, xl in zip(ax[0], ("equivalent radius (um)", "distance from separator (um)")):
        a.set_yscale("log")
        a.axhline(1.0, color="k", ls="--", lw=0.8)
        a.set_xlabel(xl)
        a.set_ylabel("electrochemical Biot number")
        a.grid(alpha=0.3)
        a.legend()
    return save_figure(fig, out / "biot.png",
                       f"Electrochemical Biot number Bi = |j| R / (D_s c_max) of every particle at {100 * dod:.0f} % DoD "
                       "(j = mean intercalation flux over its reaction surface, R = volume-equivalent radius): Bi > 1 "
                       "(dashed) means solid diffusion cannot keep up with the reaction - cf. Supplementary Fig. 8.", out)
