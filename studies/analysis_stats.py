"""Statistics behind the discharge analyses (paper Fig. 4, 5, 8; Supplementary Fig. 8-9).

Pure numpy/scipy functions on arrays, independent of how a simulation stores its results, so each
one is tested on constructed cases with known answers:

* :func:`histogram_peaks` - peaks of a (weighted) distribution and which samples belong to each
  (SoL histograms of Fig. 4d-e: "the particles of each peak");
* :func:`correlation_2d` - 2D histogram plus Pearson and Spearman coefficients (J_ct against i0 and
  against eta_act, Supplementary Fig. 9);
* :func:`overpotential_decomposition` - which of U(c_s) and phi_e drives the spread of eta_act;
* :func:`depth_profile` - weighted slice averages against depth (through-thickness profiles);
* :func:`electrochemical_biot` - reaction vs solid-diffusion rate per particle (Supplementary Fig. 8);
* :func:`ragone_knee` - the knee point of a Ragone curve (Fig. 8a).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal, stats

from tomocell.errors import InputError


def _finite(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    arrs = [np.asarray(a, dtype=float).ravel() for a in arrays]
    n = arrs[0].size
    if any(a.size != n for a in arrs):
        raise InputError(f"arrays of different lengths: {[a.size for a in arrs]}")
    ok = np.all([np.isfinite(a) for a in arrs], axis=0)
    return tuple(a[ok] for a in arrs)


@dataclass
class Peak:
    position: float  #: value at the peak (e.g. SoL)
    density: float  #: smoothed density at the peak
    lower: float  #: left boundary of the peak's basin (valley or data minimum)
    upper: float  #: right boundary of the peak's basin
    weight_fraction: float  #: share of the total weight in the basin


def histogram_peaks(
    values: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    bandwidth: float | None = None,
    min_prominence: float = 0.05,
    grid_points: int = 512,
) -> tuple[list[Peak], np.ndarray]:
    """Peaks of the weighted distribution of ``values`` and the peak index of every sample.

    The distribution is a weighted Gaussian kernel density (bandwidth ``bandwidth`` in units of the
    values; default Scott's rule, floored at 1 % of the range so a near-constant field gives one peak).
    Peaks with a prominence below ``min_prominence`` times the highest density are ignored. Each
    sample belongs to the basin of the peak between the neighbouring valleys.

    Returns:
        (peaks sorted by position, int array of the peak index of each sample; -1 for non-finite).
    """
    v = np.asarray(values, dtype=float).ravel()
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float).ravel()
    if v.size != w.size:
        raise InputError("values and weights differ in length")
    ok = np.isfinite(v) & np.isfinite(w) & (w > 0)
    if not ok.any():
        raise InputError("no finite values with positive weight")
    vv, ww = v[ok], w[ok]
    lo, hi = float(vv.min()), float(vv.max())
    span = hi - lo
    membership = np.full(v.size, -1, dtype=int)
    if span == 0 or vv.size < 3:
        membership[ok] = 0
        return [Peak(lo if span == 0 else float(np.average(vv, weights=ww)), 1.0, lo, hi, 1.0)], membership
    wn = ww / ww.sum()
    mean = float(np.sum(wn * vv))
    sd = float(np.sqrt(np.sum(wn * (vv - mean) ** 2)))
    n_eff = 1.0 / float(np.sum(wn**2))
    bw = bandwidth if bandwidth is not None else max(1.06 * sd * n_eff ** (-0.2), 0.01 * span)
    grid = np.linspace(lo - 3 * bw, hi + 3 * bw, grid_points)
    # weighted KDE on a grid: binned then convolved (exact enough on a fine grid, O(n + grid^2))
    hist, edges = np.histogram(vv, bins=grid_points, range=(grid[0], grid[-1]), weights=wn)
    centres = 0.5 * (edges[:-1] + edges[1:])
    step = centres[1] - centres[0]
    half = int(np.ceil(4 * bw / step))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * step / bw) ** 2)
    density = np.convolve(hist, kernel / (kernel.sum() * step), mode="same")
    idx, _ = signal.find_peaks(density, prominence=min_prominence * density.max())
    if idx.size == 0:
        idx = np.array([int(np.argmax(density))])
    # basins: split at the density minimum between consecutive peaks
    bounds = [centres[0] - step]
    for a, b in zip(idx[:-1], idx[1:]):
        bounds.append(float(centres[a + int(np.argmin(density[a : b + 1]))]))
    bounds.append(centres[-1] + step)
    which = np.clip(np.searchsorted(bounds, vv, side="right") - 1, 0, idx.size - 1)
    membership[ok] = which
    peaks = []
    for k, i in enumerate(idx):
        sel = which == k
        peaks.append(Peak(float(centres[i]), float(density[i]), max(bounds[k], lo), min(bounds[k + 1], hi),
                          float(wn[sel].sum())))
    return peaks, membership


@dataclass
class Correlation2D:
    hist: np.ndarray  #: counts, shape (bins_x, bins_y)
    x_edges: np.ndarray
    y_edges: np.ndarray
    pearson: float
    spearman: float
    n: int


def correlation_2d(x: np.ndarray, y: np.ndarray, *, bins: int = 60, weights: np.ndarray | None = None) -> Correlation2D:
    """2D histogram of (x, y) with Pearson and Spearman correlation coefficients (non-finite pairs dropped)."""
    if weights is None:
        xs, ys = _finite(x, y)
        ws = None
    else:
        xs, ys, ws = _finite(x, y, weights)
    if xs.size < 3:
        raise InputError("need at least 3 finite pairs to correlate")
    hist, xe, ye = np.histogram2d(xs, ys, bins=bins, weights=ws)
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        r = rho = float("nan")
    else:
        r = float(stats.pearsonr(xs, ys).statistic)
        rho = float(stats.spearmanr(xs, ys).statistic)
    return Correlation2D(hist, xe, ye, r, rho, int(xs.size))


@dataclass
class OverpotentialSpread:
    sd_eta: float  #: spread (std) of eta_act, V
    sd_U: float  #: spread of the equilibrium potential U(c_s), V
    sd_phi_e: float  #: spread of the electrolyte potential at the interface, V
    sd_phi_s: float  #: spread of the solid potential at the interface, V
    governing: str  #: 'phi_e' or 'U' (or 'phi_s'): the component with the largest spread


def overpotential_decomposition(
    phi_s: np.ndarray, phi_e: np.ndarray, U: np.ndarray, weights: np.ndarray | None = None
) -> OverpotentialSpread:
    """Decompose eta_act = phi_s - phi_e - U into the spread of its parts (paper Supplementary Fig. 9e-f).

    Spreads are weighted standard deviations (weights: facet areas, say). The governing part is the one
    whose spread is largest; the paper finds phi_e (0.080 V) over U (0.025 V) at 5C.
    """
    if weights is None:
        ps, pe, u = _finite(phi_s, phi_e, U)
        w = np.ones_like(ps)
    else:
        ps, pe, u, w = _finite(phi_s, phi_e, U, weights)

    def sd(a: np.ndarray) -> float:
        m = np.average(a, weights=w)
        return float(np.sqrt(np.average((a - m) ** 2, weights=w)))

    parts = {"phi_e": sd(pe), "U": sd(u), "phi_s": sd(ps)}
    return OverpotentialSpread(sd(ps - pe - u), parts["U"], parts["phi_e"], parts["phi_s"], max(parts, key=parts.get))


def depth_profile(
    depth: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None, *, edges: np.ndarray | int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted mean of ``values`` in depth bins.

    Returns (bin centres, weighted means (nan where a bin is empty), total weight per bin).
    """
    if weights is None:
        d, v = _finite(depth, values)
        w = np.ones_like(d)
    else:
        d, v, w = _finite(depth, values, weights)
    if d.size == 0:
        raise InputError("no finite samples for a depth profile")
    e = np.linspace(d.min(), d.max(), int(edges) + 1) if np.isscalar(edges) else np.asarray(edges, float)
    idx = np.clip(np.searchsorted(e, d, side="right") - 1, 0, e.size - 2)
    wsum = np.bincount(idx, weights=w, minlength=e.size - 1)
    vsum = np.bincount(idx, weights=w * v, minlength=e.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(wsum > 0, vsum / wsum, np.nan)
    return 0.5 * (e[:-1] + e[1:]), mean, wsum


def electrochemical_biot(
    radius_m: np.ndarray, flux_mol_m2_s: np.ndarray, D_s_m2_s: float | np.ndarray, c_max_mol_m3: float
) -> np.ndarray:
    """Electrochemical Biot number Bi = |j| R / (D_s c_max), per particle.

    ``j`` is the mean intercalation flux through the particle surface (mol m^-2 s^-1), ``R`` the
    volume-equivalent radius. Bi << 1: solid diffusion keeps up and the particle lithiates uniformly;
    Bi >~ 1: a surface-to-core gradient builds up (the paper's Supplementary Fig. 8).
    """
    r = np.asarray(radius_m, dtype=float)
    j = np.asarray(flux_mol_m2_s, dtype=float)
    d = np.asarray(D_s_m2_s, dtype=float)
    if np.any(r <= 0) or np.any(d <= 0) or c_max_mol_m3 <= 0:
        raise InputError("radius, D_s and c_max must be positive")
    return np.abs(j) * r / (d * c_max_mol_m3)


def ragone_knee(power: np.ndarray, energy: np.ndarray) -> int:
    """Index of the knee point of a Ragone curve: the highest power before the energy collapses.

    Kneedle method (Satopaa et al., ICDCS Workshops 2011) on log-log axes: with ln P and ln E scaled
    to [0, 1], the knee is the point farthest above the chord from the lowest-power to the
    highest-power point. On a curve that is flat and then falls steeply, that is the last point of
    the plateau. Returns the index into the arrays as given (any order).
    """
    p, e = _finite(power, energy)
    if p.size < 3:
        raise InputError("a Ragone knee needs at least 3 points")
    if np.any(p <= 0) or np.any(e <= 0):
        raise InputError("power and energy must be positive")
    order = np.argsort(p)
    lp, le = np.log(p[order]), np.log(e[order])
    if np.ptp(lp) == 0 or np.ptp(le) == 0:
        k = 0
    else:
        x = (lp - lp[0]) / np.ptp(lp)
        y = (le - le.min()) / np.ptp(le)
        chord = y[0] + (y[-1] - y[0]) * x
        k = int(np.argmax(y - chord))
    original = np.nonzero(np.isfinite(np.asarray(power, float)) & np.isfinite(np.asarray(energy, float)))[0]
    return int(original[order[k]])
