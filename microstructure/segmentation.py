"""Greyscale scan -> three-phase Volume, by the paper's thresholding workflow.

Optional denoising (3x3x3 median, or non-local means), then thresholds between the three grey-value
classes: multi-Otsu (scikit-image) unless the user gives them. Classes by increasing grey value are
pore < CBD < active (NMC attenuates most, carbon and binder little: Lu et al. 2020, Fig. 2a). With
``classes=2`` (a scan where CBD and micro-pores form one blurry phase), the lower class is labelled pore
and must be treated as the blurry mixed phase by ``tomocell superimpose``.

The report holds the histogram, the thresholds, the phase fractions, and the fractions when each
threshold moves by +/- ``sensitivity_levels`` grey levels (one level = 1/255 of the grey range for float
data, one unit for integer data), so users see how much their fractions depend on the thresholds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume

log = get_logger("microstructure.segmentation")

DENOISERS = (None, "none", "median", "nlmeans")


def denoise_greyscale(grey: np.ndarray, method: str | None) -> np.ndarray:
    """Median (3x3x3) or non-local means (scikit-image, noise level estimated) denoising."""
    if method in (None, "none"):
        return grey
    if method == "median":
        return ndimage.median_filter(grey, size=3, mode="nearest")
    if method == "nlmeans":
        from skimage.restoration import denoise_nl_means

        if grey.size > 50_000_000:
            log.warning("non-local means on %d voxels will take long; consider --denoise median", grey.size)
        # noise level from the median absolute neighbour difference (robust to edges); written here because
        # skimage's estimate_sigma needs PyWavelets, a dependency for one number
        diff = np.diff(grey, axis=2).ravel()
        sigma = float(np.median(np.abs(diff - np.median(diff))) / (0.6745 * np.sqrt(2.0)))
        return denoise_nl_means(grey, patch_size=3, patch_distance=3, h=0.8 * sigma, sigma=sigma,
                                fast_mode=True, preserve_range=True).astype(np.float32)
    raise InputError(f"unknown denoising {method!r} (choose none, median, nlmeans)")


def _classify(grey: np.ndarray, thresholds: list[float]) -> np.ndarray:
    cls = np.digitize(grey, thresholds).astype(np.uint8)  # 0 .. len(thresholds)
    codes = np.array([PORE, CBD, ACTIVE] if len(thresholds) == 2 else [PORE, ACTIVE], dtype=np.uint8)
    return codes[cls]


def _fractions_at(grey: np.ndarray, thresholds: list[float]) -> dict[str, float]:
    """Exact phase fractions for given thresholds (same rule as :func:`_classify`), by counting voxels."""
    n = grey.size
    below = [int(np.count_nonzero(grey < t)) for t in thresholds]
    if len(thresholds) == 2:
        return {"pore": below[0] / n, "cbd": (below[1] - below[0]) / n, "active": (n - below[1]) / n}
    return {"pore": below[0] / n, "active": (n - below[0]) / n}


def segment_greyscale(
    grey: np.ndarray,
    voxel_size_um: Any,
    *,
    denoise: str | None = None,  # noqa: A002 (name agreed in the API)
    thresholds: tuple[float, ...] | list[float] | None = None,
    classes: int = 3,
    sensitivity_levels: float = 3.0,
    nbins: int = 256,
) -> tuple[Volume, dict[str, Any]]:
    """Segment a greyscale scan into pore / CBD / active (or pore / active with ``classes=2``).

    Args:
        grey: 3D array (any real dtype), axis 0 = through-thickness.
        voxel_size_um: voxel size in um (one or three values); required.
        denoise: None, 'median' or 'nlmeans'.
        thresholds: manual thresholds in grey values (``classes - 1`` increasing values); default multi-Otsu.
        classes: 3 (pore, CBD, active) or 2 (pore-or-blurry, active).
        sensitivity_levels: threshold shift, in grey levels, for the sensitivity table.
        nbins: histogram bins (multi-Otsu and report).

    Returns:
        (Volume, report dict with histogram, thresholds, fractions, sensitivity, denoising).
    """
    from skimage.filters import threshold_multiotsu

    arr = np.asarray(grey)
    if arr.ndim != 3:
        raise InputError(f"greyscale must be 3D, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"greyscale must be numeric, got dtype {arr.dtype}")
    if classes not in (2, 3):
        raise InputError(f"classes must be 2 or 3, got {classes}")
    integer_input = np.issubdtype(arr.dtype, np.integer)
    g = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(g)):
        raise InputError(f"greyscale has {int(np.count_nonzero(~np.isfinite(g)))} NaN/inf voxels")
    lo, hi = float(g.min()), float(g.max())
    if lo == hi:
        raise InputError(f"greyscale is constant ({lo}): only one phase, nothing to segment")
    if denoise not in DENOISERS:
        raise InputError(f"unknown denoising {denoise!r} (choose none, median, nlmeans)")
    g = denoise_greyscale(g, denoise)
    lo, hi = float(g.min()), float(g.max())
    counts, edges = np.histogram(g, bins=nbins, range=(lo, hi))
    if thresholds is None:
        try:
            th = [float(t) for t in threshold_multiotsu(hist=(counts, 0.5 * (edges[:-1] + edges[1:])), classes=classes)]
        except ValueError as exc:
            raise InputError(f"multi-Otsu found no {classes} classes in this histogram ({exc}); give --thresholds") from exc
        method = "multi-otsu"
    else:
        th = [float(t) for t in thresholds]
        if len(th) != classes - 1:
            raise InputError(f"{classes} classes need {classes - 1} thresholds, got {len(th)}: {th}")
        if any(b <= a for a, b in zip(th, th[1:])):
            raise InputError(f"thresholds must increase, got {th}")
        method = "manual"
    if th[0] <= lo or th[-1] >= hi:
        raise InputError(f"thresholds {th} lie outside the grey range ({lo:.4g}, {hi:.4g}): a phase would be empty")
    labels = _classify(g, th)
    vol = Volume(labels, voxel_size_um, {"segmentation": {"method": method, "thresholds": th, "denoise": denoise or "none",
                                                          "classes": classes}})
    fr = vol.fractions()
    names = ["pore", "cbd", "active"] if classes == 3 else ["pore", "active"]
    empty = [n for n in names if fr[n] == 0.0]
    if empty:
        raise InputError(f"segmentation left phase(s) {empty} empty (thresholds {th}); check the thresholds")
    level = 1.0 if integer_input and denoise in (None, "none") else (hi - lo) / 255.0
    delta = sensitivity_levels * level
    sens = []
    for i in range(len(th)):
        for sgn in (-1, 1):
            t2 = list(th)
            t2[i] += sgn * delta
            if any(b <= a for a, b in zip(t2, t2[1:])):
                continue
            f2 = _fractions_at(g, t2)
            sens.append({"threshold": i, "shift_grey": sgn * delta, "fractions": f2,
                         "change": {k: f2[k] - fr[k] for k in f2}})
    max_change = {n: max((abs(s["change"][n]) for s in sens), default=0.0) for n in names}
    report = {
        "method": method,
        "classes": classes,
        "class_order": "pore < cbd < active (increasing grey value)" if classes == 3
        else "pore-or-blurry < active (increasing grey value)",
        "denoise": denoise or "none",
        "thresholds": th,
        "fractions": fr,
        "grey_range": [lo, hi],
        "histogram": {"counts": counts.tolist(), "bin_edges": edges.tolist()},
        "sensitivity": {"levels": sensitivity_levels, "grey_per_level": level, "shifts": sens,
                        "max_abs_fraction_change": max_change},
    }
    log.info("segmented (%s, thresholds %s): %s", method, [round(t, 4) for t in th], {k: round(v, 4) for k, v in fr.items()})
    return vol, report
