"""The numbers behind the discharge analyses (paper Fig. 3-5, Supplementary Fig. 6-9), per run.

Each function takes a loaded :class:`~tomocell.studies.analysis_run.RunData` (and a DoD) and returns
plain arrays/dicts that the figures, the report and the CSV files share, so the tests check exactly
what is plotted. The statistics themselves live in :mod:`tomocell.studies.analysis_stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.studies import analysis_stats as st
from tomocell.studies.analysis_run import FARADAY, RunData, Snapshot


# ----------------------------------------------------------------------------- voltage vs capacity
def discharge_segment(run: RunData) -> dict[str, np.ndarray]:
    """Rows of the discharge segment (from the initial state to the cut-off)."""
    ts = run.timeseries
    seg = ts.get("segment")
    sel = np.ones(ts["t_s"].size, bool) if seg is None else np.array([str(s) == "discharge" for s in seg])
    if sel.sum() < 2:
        raise InputError(f"{run.path}/timeseries.csv has fewer than two discharge rows")
    return {k: v[sel] for k, v in ts.items() if v.dtype != object}


def discharge_summary(run: RunData) -> dict[str, float]:
    """Delivered capacity, energy (trapezoid of V over capacity) and mean voltage of the discharge.

    Energy E = integral of V dQ by the trapezoidal rule over the timeseries rows; mean voltage = E / Q.
    Specific energy (Wh/kg of active material) = integral of V d(mAh/g).
    """
    d = discharge_segment(run)
    v, q_ah = d["voltage_V"], d["capacity_Ah"]
    q_g, q_cm2 = d["capacity_mAh_g"], d["capacity_mAh_cm2"]
    e_wh = float(np.trapezoid(v, q_ah))
    cap = float(q_ah[-1] - q_ah[0])
    return {
        "c_rate": run.c_rate,
        "capacity_mAh_g": float(q_g[-1] - q_g[0]),
        "capacity_mAh_cm2": float(q_cm2[-1] - q_cm2[0]),
        "capacity_Ah": cap,
        "energy_Wh": e_wh,
        "specific_energy_Wh_kg": float(np.trapezoid(v, q_g)),
        "areal_energy_mWh_cm2": float(np.trapezoid(v, q_cm2)),
        "mean_voltage_V": e_wh / cap if cap > 0 else float("nan"),
        "final_voltage_V": float(v[-1]),
        "utilisation": float(run.results.get("utilisation", float("nan"))),
        "cut_off_V": cut_off_voltage(run),
    }


def cut_off_voltage(run: RunData) -> float:
    spec = run.material.get("voltage_min")
    if isinstance(spec, dict) and "value" in spec:
        return float(spec["value"])
    if isinstance(spec, (int, float)):
        return float(spec)
    return float("nan")


# ----------------------------------------------------------------------------- per-particle SoL
@dataclass
class ParticleSoL:
    particle: np.ndarray  #: labels
    depth_um: np.ndarray  #: centroid distance from the separator
    radius_um: np.ndarray  #: volume-equivalent radius
    volume_um3: np.ndarray
    sol: np.ndarray  #: mean c_s/c_max
    peaks: list[st.Peak]
    peak_of: np.ndarray  #: index of the histogram peak each particle belongs to
    n_inert: int = 0  #: particles left out: set inert by the physics (not connected to the collector)


def particle_sol(run: RunData, dod: float, bandwidth: float | None = None) -> ParticleSoL:
    """Per-particle mean SoL at ``dod`` with its histogram peaks (volume-weighted, Fig. 4d-e); ``bandwidth``
    (SoL units) of the kernel density, default Scott's rule (which smooths close modes into one)."""
    p = run.particles
    col = f"sol_{run.snapshot(dod).label}"
    if not p or col not in p:
        raise InputError(f"{run.path}/particles.csv has no column {col} (per-particle SoL at {100 * dod:.0f} % DoD)")
    sol = np.asarray(p[col], float)
    vol = np.asarray(p["volume_um3"], float)
    # particles the physics set inert (connected = 0: no electronic path to the collector) carry NaN
    keep = np.isfinite(sol) & np.isfinite(vol) & (vol > 0)
    if "connected" in p:
        keep &= np.asarray(p["connected"], float) != 0
    if not keep.any():
        raise InputError(f"{run.path}/particles.csv: no connected particle with a finite SoL in {col}")
    sol, vol = sol[keep], vol[keep]
    peaks, member = st.histogram_peaks(sol, vol, bandwidth=bandwidth)
    return ParticleSoL(np.asarray(p["particle"]).astype(int)[keep], run.depth_um(np.asarray(p["centroid_z_um"], float)[keep]),
                       run.particle_radius_um()[keep], vol, sol, peaks, member, int((~keep).sum()))


def sol_spread(ps: ParticleSoL) -> dict[str, float]:
    """Volume-weighted spread of the per-particle SoL: std, 5-95 % range, max-min."""
    w = ps.volume_um3 / ps.volume_um3.sum()
    m = float(np.sum(w * ps.sol))
    order = np.argsort(ps.sol)
    cw = np.cumsum(w[order])
    q05, q95 = (float(ps.sol[order][min(np.searchsorted(cw, q), cw.size - 1)]) for q in (0.05, 0.95))
    return {"mean": m, "std": float(np.sqrt(np.sum(w * (ps.sol - m) ** 2))), "p05_p95": q95 - q05,
            "range": float(ps.sol.max() - ps.sol.min()), "n_peaks": len(ps.peaks)}


# ----------------------------------------------------------------------------- intra-particle spread
def _boundary_nodes(fd: Any, box_lo: np.ndarray, box_hi: np.ndarray, tol: float) -> np.ndarray:
    """Nodes on the surface of the active phase, not counting faces on the box walls / collector."""
    c = fd.cells
    faces = np.concatenate([c[:, [1, 2, 3]], c[:, [0, 2, 3]], c[:, [0, 1, 3]], c[:, [0, 1, 2]]])
    faces = np.sort(faces, axis=1)
    uniq, cnt = np.unique(faces, axis=0, return_counts=True)
    ext = uniq[cnt == 1]
    X = fd.points_um[ext]  # (F, 3, 3)
    on_wall = np.zeros(ext.shape[0], bool)
    for ax in range(3):
        for bound in (box_lo[ax], box_hi[ax]):
            on_wall |= np.all(np.abs(X[:, :, ax] - bound) < tol, axis=1)
    return np.unique(ext[~on_wall])


def intraparticle(run: RunData, dod: float, ps: ParticleSoL, n_bins: int = 12) -> dict[str, Any]:
    """Core vs surface lithiation.

    * profile: SoL of the active-phase nodes against their distance to the particle surface (distance
      to the nearest surface node of the active submesh; faces on the box walls do not count), binned;
    * per particle: area-weighted SoL on its reaction surface (interface table) minus its volume mean.
    """
    snap = run.snapshot(dod)
    fd = snap.field("active")
    if "SoL" not in fd.point_data:
        raise InputError(f"{snap.path}/active.xdmf has no SoL field")
    from scipy.spatial import cKDTree

    ref = snap.field("electrolyte").points_um
    lo = np.minimum(fd.points_um.min(0), ref.min(0))
    hi = np.maximum(fd.points_um.max(0), ref.max(0))
    hi[2] = max(hi[2], run.thickness_um)
    tol = 1e-6 * float(np.max(hi - lo))
    bnodes = _boundary_nodes(fd, lo, hi, tol)
    if bnodes.size == 0:
        raise InputError(f"{snap.path}/active.xdmf: the active phase has no surface")
    dist, _ = cKDTree(fd.points_um[bnodes]).query(fd.points_um)
    sol = fd.point_data["SoL"]
    edges = np.linspace(0.0, float(dist.max()) + 1e-12, n_bins + 1)
    centres, mean, wsum = st.depth_profile(dist, sol, edges=edges)
    tab = snap.interface()
    labels = tab["particle"].astype(int)
    area = tab["area_um2"]
    nlab = int(max(labels.max(initial=0), ps.particle.max(initial=0))) + 1
    a = np.bincount(labels, weights=area, minlength=nlab)
    s = np.bincount(labels, weights=area * tab["sol"], minlength=nlab)
    with np.errstate(invalid="ignore", divide="ignore"):
        surf = np.where(a > 0, s / a, np.nan)[ps.particle]
    return {"distance_um": centres, "sol_mean": mean, "node_count": wsum,
            "surface_sol": surf, "surface_minus_mean": surf - ps.sol,
            "surface_node_sol": float(sol[bnodes].mean()),
            "core_sol": float(sol[dist >= 0.5 * dist.max()].mean())}


# ----------------------------------------------------------------------------- charge transfer
@dataclass
class ChargeTransfer:
    j_vs_i0: st.Correlation2D
    j_vs_eta: st.Correlation2D
    decomposition: st.OverpotentialSpread
    governs_j: str  #: 'eta_act' or 'i0'
    sd_ln_i0: float  #: area-weighted sd of ln i0 over the interface
    sd_ln_j_over_i0: float  #: area-weighted sd of ln|J_ct / i0| (the eta_act term)
    conclusion: str
    data: dict[str, np.ndarray]  #: J_ct_A_m2, i0_A_m2, eta_V, area_um2 of the facets (for plotting)


def charge_transfer(run: RunData, dod: float, bins: int = 50) -> ChargeTransfer:
    """2D histograms of J_ct against i0 and eta_act (area-weighted), correlations and the conclusion.

    Which of i0 and eta_act governs J_ct: ln|J_ct| = ln i0 + ln|J_ct/i0| holds identically, and with
    Butler-Volmer kinetics J_ct/i0 is a function of eta_act alone; the part with the larger
    (area-weighted) spread over the interface governs the spread of J_ct. (Correlation coefficients
    alone cannot decide it: the surface lithiation that J_ct drives lowers i0 where J_ct is high, so
    J_ct correlates with i0 as a consequence.) eta_act is decomposed into U(c_s) and phi_e by the
    spread of each part.
    """
    tab = run.snapshot(dod).interface()
    w = tab["area_um2"]
    j, i0, eta = tab["J_ct_A_m2"], tab["i0_A_m2"], tab["eta_V"]
    c_i0 = st.correlation_2d(i0, j, bins=bins, weights=w)
    c_eta = st.correlation_2d(eta, j, bins=bins, weights=w)
    dec = st.overpotential_decomposition(tab["phi_s_V"], tab["phi_e_V"], tab["U_V"], w)

    ok = np.isfinite(j) & np.isfinite(i0) & (np.abs(j) > 0) & (i0 > 0) & np.isfinite(w)
    if ok.sum() < 3:
        raise InputError(f"{run.path}: fewer than 3 reaction facets with finite J_ct and i0 > 0")
    ln_i0 = np.log(i0[ok])
    ln_f = np.log(np.abs(j[ok])) - ln_i0

    def wsd(a: np.ndarray) -> float:
        return float(np.sqrt(np.average((a - np.average(a, weights=w[ok])) ** 2, weights=w[ok])))

    sd_ln_i0, sd_ln_f = wsd(ln_i0), wsd(ln_f)
    gov = "eta_act" if sd_ln_f >= sd_ln_i0 else "i0"
    part = {"phi_e": "the electrolyte potential phi_e", "U": "the equilibrium potential U(c_s)",
            "phi_s": "the solid potential phi_s"}[dec.governing]
    concl = (f"At {run.c_rate:g}C, {100 * dod:.0f} % DoD, J_ct is governed by "
             f"{'the activation overpotential eta_act' if gov == 'eta_act' else 'the exchange current density i0'} "
             f"(spread of ln|J_ct|: {sd_ln_f:.3f} from the eta_act term ln|J_ct/i0| vs {sd_ln_i0:.3f} from ln i0; "
             f"Spearman rho J_ct~eta_act {c_eta.spearman:+.2f}, J_ct~i0 {c_i0.spearman:+.2f}; Pearson "
             f"{c_eta.pearson:+.2f} / {c_i0.pearson:+.2f}); the spread of eta_act (sd {1e3 * dec.sd_eta:.1f} mV) "
             f"comes mainly from {part} (sd phi_e {1e3 * dec.sd_phi_e:.1f} mV, sd U {1e3 * dec.sd_U:.1f} mV, "
             f"sd phi_s {1e3 * dec.sd_phi_s:.1f} mV).")
    return ChargeTransfer(c_i0, c_eta, dec, gov, sd_ln_i0, sd_ln_f, concl, {"J_ct_A_m2": j, "i0_A_m2": i0, "eta_V": eta, "area_um2": w})


# ----------------------------------------------------------------------------- depth profiles
def depth_profiles(run: RunData, dod: float, edges_um: np.ndarray) -> dict[str, np.ndarray]:
    """Slice averages vs depth from the separator: SoL (active volume-weighted), c_e (electrolyte
    volume-weighted, negative depths = separator) and J_ct (interface area-weighted)."""
    snap = run.snapshot(dod)
    out: dict[str, np.ndarray] = {}
    act = snap.field("active")
    cen, out["sol"], _ = st.depth_profile(run.depth_um(act.cell_centres_um()[:, 2]), act.cell_values("SoL"),
                                          act.cell_volumes_um3(), edges=edges_um)
    ele = snap.field("electrolyte")
    _, out["c_e_mol_m3"], _ = st.depth_profile(run.depth_um(ele.cell_centres_um()[:, 2]), ele.cell_values("c_e"),
                                               ele.cell_volumes_um3(), edges=edges_um)
    _, out["phi_e_V"], _ = st.depth_profile(run.depth_um(ele.cell_centres_um()[:, 2]), ele.cell_values("phi_e"),
                                            ele.cell_volumes_um3(), edges=edges_um)
    tab = snap.interface()
    _, out["J_ct_A_m2"], _ = st.depth_profile(run.depth_um(tab["z_um"]), tab["J_ct_A_m2"], tab["area_um2"], edges=edges_um)
    out["depth_um"] = cen
    return out


def common_depth_edges(runs: list[RunData], dod: float, n_bins: int = 20) -> np.ndarray:
    """Bin edges from the separator slab (negative depth) to the collector, shared by all runs."""
    L = max(r.thickness_um for r in runs)
    zmax = max(float(r.snapshot(dod).field("electrolyte").points_um[:, 2].max()) for r in runs)
    sep = max(zmax - L, 0.0)
    step = L / n_bins
    n_sep = int(math.ceil(sep / step - 1e-9))
    if n_sep == 0:
        return np.linspace(0.0, L, n_bins + 1)
    # the separator gets its own equal bins ending at its top, so no bin is half empty
    return np.concatenate([np.linspace(-sep, 0.0, n_sep + 1), np.linspace(0.0, L, n_bins + 1)[1:]])


# ----------------------------------------------------------------------------- Biot number
def biot(run: RunData, dod: float, ps: ParticleSoL) -> dict[str, np.ndarray]:
    """Electrochemical Biot number per particle: mean intercalation flux over its reaction surface
    (area-weighted J_ct / F) x equivalent radius / (D_s(mean SoL) c_max)."""
    tab = run.snapshot(dod).interface()
    labels = tab["particle"].astype(int)
    nlab = int(max(labels.max(initial=0), ps.particle.max(initial=0))) + 1
    a = np.bincount(labels, weights=tab["area_um2"], minlength=nlab)
    jsum = np.bincount(labels, weights=tab["area_um2"] * tab["J_ct_A_m2"], minlength=nlab)
    with np.errstate(invalid="ignore", divide="ignore"):
        jmean = np.where(a > 0, jsum / a, np.nan)[ps.particle]
    flux = jmean / FARADAY
    has = np.isfinite(flux)
    bi = np.full(flux.shape, np.nan)
    if has.any():
        D = run.solid_diffusivity(np.clip(ps.sol[has], 1e-6, 1 - 1e-6))
        bi[has] = st.electrochemical_biot(ps.radius_um[has] * 1e-6, flux[has], D, run.c_max())
    return {"particle": ps.particle, "radius_um": ps.radius_um, "depth_um": ps.depth_um, "flux_mol_m2_s": flux,
            "biot": bi, "surface_area_um2": a[ps.particle]}


# ----------------------------------------------------------------------------- transport path
@dataclass
class Characterisation:
    """What the analysis needs from a ``tomocell characterise`` output directory."""

    path: Path
    travel_um: np.ndarray  #: geodesic distance from the separator on the voxel grid (NaN off the pore)
    voxel_um: tuple[float, float, float]
    sites: dict[str, np.ndarray]  #: reaction-site table (depth_um, tau_pore, tau_electrode, travel_um)


def load_characterisation(path: str | Path) -> Characterisation:
    d = Path(path)
    vti, npz = d / "fields.vti", d / "reaction_sites.npz"
    if not d.is_dir() or not vti.exists() or not npz.exists():
        raise InputError(f"{d} is not a `tomocell characterise` output with the travel step (needs fields.vti "
                         "and reaction_sites.npz)")
    import pyvista as pv

    grid = pv.read(str(vti))
    if "travel_distance_um" not in grid.cell_data:
        raise InputError(f"{vti} has no travel_distance_um field (characterise ran without the travel step)")
    shape = tuple(int(n) - 1 for n in grid.dimensions)
    travel = np.asarray(grid.cell_data["travel_distance_um"], dtype=np.float32).reshape(shape, order="F")
    with np.load(npz) as z:
        sites = {k: np.asarray(z[k]) for k in z.files}
    return Characterisation(d, travel, tuple(float(s) for s in grid.spacing), sites)


def travel_at_points(ch: Characterisation, run: RunData, x_um: np.ndarray, y_um: np.ndarray, z_um: np.ndarray,
                     max_gap_vox: float = 2.0) -> np.ndarray:
    """Travel distance (um) at mesh points: the voxel containing the point (axis 0 = depth from the
    separator, axis 1 = y, axis 2 = x), or the nearest pore voxel within ``max_gap_vox`` voxels
    (reaction facets lie on the pore boundary, their own voxel may be solid); NaN beyond."""
    from scipy import ndimage

    vs = ch.voxel_um
    T = ch.travel_um
    extent0 = T.shape[0] * vs[0]
    if abs(extent0 - run.thickness_um) > 1.01 * vs[0] * 2:
        raise InputError(f"characterisation {ch.path} is {extent0:.2f} um thick but run {run.path} has an electrode "
                         f"of {run.thickness_um:.2f} um: not the same electrode")
    i0 = np.clip(np.floor(run.depth_um(z_um) / vs[0]).astype(int), 0, T.shape[0] - 1)
    i1 = np.clip(np.floor(np.asarray(y_um) / vs[1]).astype(int), 0, T.shape[1] - 1)
    i2 = np.clip(np.floor(np.asarray(x_um) / vs[2]).astype(int), 0, T.shape[2] - 1)
    finite = np.isfinite(T)
    # nearest finite voxel of every voxel (exact Euclidean distance transform with indices)
    dist, idx = ndimage.distance_transform_edt(~finite, sampling=vs, return_indices=True)
    j0, j1, j2 = idx[0][i0, i1, i2], idx[1][i0, i1, i2], idx[2][i0, i1, i2]
    val = T[j0, j1, j2].astype(float)
    val[dist[i0, i1, i2] > max_gap_vox * max(vs)] = np.nan
    return val


def transport_path(run: RunData, dod: float, ch: Characterisation, bins: int = 50) -> dict[str, Any]:
    """phi_e at reaction sites vs travel distance from the separator (Fig. 5e-f) with the correlation."""
    tab = run.snapshot(dod).interface()
    travel = travel_at_points(ch, run, tab["x_um"], tab["y_um"], tab["z_um"])
    ok = np.isfinite(travel)
    if ok.sum() < 3:
        raise InputError(f"fewer than 3 reaction facets of {run.path} map to reachable pore voxels of {ch.path}")
    corr = st.correlation_2d(travel, tab["phi_e_V"], bins=bins, weights=tab["area_um2"])
    corr_j = st.correlation_2d(travel, tab["J_ct_A_m2"], bins=bins, weights=tab["area_um2"])
    return {"travel_um": travel, "phi_e_V": tab["phi_e_V"], "J_ct_A_m2": tab["J_ct_A_m2"], "corr_phi_e": corr,
            "corr_J": corr_j, "mapped_fraction": float(ok.mean())}
