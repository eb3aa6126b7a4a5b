"""Dual-scan superimposition (DSS, Lu et al. 2020, Fig. 1e-g).

Inputs:

* a **particle scan** (e.g. 126 nm voxels) segmented into active material, macro-pores and one *blurry
  mixed phase* where CBD and its micro-pores cannot be told apart. It is a :class:`Volume` in which the
  blurry phase carries one of the phase codes, named by ``blurry_phase`` (default ``'cbd'``; for a
  two-phase scan whose pores and CBD share one value, map that value to ``'pore'`` and pass
  ``blurry_phase='pore'``). On the command line the user marks it directly:
  ``--particle-labels 0=pore,128=active,64=blurry``;
* a **CBD scan**: a higher-resolution scan (e.g. 63 nm) of stand-alone CBD segmented into CBD solid
  (``cbd``) and micro-pores (``pore``).

The CBD scan's solid indicator is resampled to the particle scan's voxel size with an anti-aliasing
Gaussian (sigma = (1/zoom - 1)/2 voxels, as scikit-image's rescale) and linear interpolation, mirrored-
tiled (no seams) or cropped to the particle scan's shape, and thresholded inside the blurry phase only:
by default at the quantile that keeps the CBD scan's porosity exactly (a fixed 0.5 cut would shift it by
the partial-volume bias of the coarser grid). Voxels outside the blurry phase (active particles and
macro-pores) are copied unchanged, and this is verified voxel for voxel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.microstructure.volume import ACTIVE, CBD, PHASE_CODES, PORE, Volume

log = get_logger("microstructure.superimpose")

#: the name a user gives the blurry mixed phase in a particle scan's label mapping (CLI only)
BLURRY = "blurry"


def split_blurry_labels(mapping: dict[int, str] | None) -> tuple[dict[int, str] | None, list[int]]:
    """Split a {value: name} map with 'blurry' entries into (phase map with blurry -> 'cbd', blurry values).

    For the CLI: ``0=pore,128=active,64=blurry`` reads the blurry value as CBD code, then
    :func:`superimpose_dss` is called with ``blurry_phase='cbd'``. If the scan also has a real 'cbd'
    value, that is an error (the particle scan cannot resolve CBD, otherwise DSS is not needed).
    """
    if mapping is None:
        return None, []
    blurry = [v for v, n in mapping.items() if n == BLURRY]
    if not blurry:
        raise InputError("particle-scan labels must mark the blurry CBD+micro-pore phase, e.g. 0=pore,128=active,64=blurry")
    if any(n == "cbd" for n in mapping.values()):
        raise InputError("a particle scan for DSS has no resolved CBD: map that value to 'blurry', not 'cbd'")
    return {v: ("cbd" if n == BLURRY else n) for v, n in mapping.items()}, blurry


def parse_labels_with_blurry(spec: str | None) -> dict[int, str] | None:
    """Parse '0=pore,128=active,64=blurry' (tomocell.config.parse_labels plus the name 'blurry')."""
    from tomocell.config import parse_labels

    if spec is None:
        return None
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    blurry: dict[int, str] = {}
    rest = []
    for part in parts:
        k, _, v = part.partition("=")
        if v.strip().lower() == BLURRY:
            try:
                blurry[int(k)] = BLURRY
            except ValueError:
                raise InputError(f"--particle-labels: label value {k!r} is not an integer") from None
        else:
            rest.append(part)
    out = dict(parse_labels(",".join(rest))) if rest else {}
    dup = set(out) & set(blurry)
    if dup:
        raise InputError(f"--particle-labels: value(s) {sorted(dup)} given twice")
    out.update(blurry)
    return out


def resample_fraction(cbd_scan: Volume, target_voxel_um: tuple[float, float, float]) -> tuple[np.ndarray, dict[str, Any]]:
    """CBD-solid indicator of ``cbd_scan`` resampled to ``target_voxel_um`` (float32 in [0, 1])."""
    f = (cbd_scan.labels == CBD).astype(np.float32)
    zoom = np.asarray(cbd_scan.voxel_size_um) / np.asarray(target_voxel_um)
    sigma = np.maximum(0.0, (1.0 / zoom - 1.0) / 2.0)
    if np.any(sigma > 0):
        ndimage.gaussian_filter(f, sigma=sigma, output=f, mode="mirror")
    if np.any(zoom > 1.0 + 1e-9):
        log.warning("CBD scan voxels (%s um) are coarser than the particle scan's (%s um): upsampling it adds no detail",
                    cbd_scan.voxel_size_um, target_voxel_um)
    out_shape = tuple(max(1, int(round(n * z))) for n, z in zip(f.shape, zoom))
    if out_shape != f.shape:
        f = ndimage.zoom(f, np.asarray(out_shape) / np.asarray(f.shape), order=1, mode="mirror", grid_mode=True)
    np.clip(f, 0.0, 1.0, out=f)
    return f, {"zoom": zoom.tolist(), "antialias_sigma_voxels": sigma.tolist(), "resampled_shape": list(f.shape)}


def _tile(field: np.ndarray, shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Mirror-tile (seamless) or crop ``field`` to ``shape``, at a random offset."""
    reps = [int(np.ceil(s / n)) for s, n in zip(shape, field.shape)]
    pad = [(0, max(0, r * n - n)) for r, n in zip(reps, field.shape)]
    big = np.pad(field, pad, mode="symmetric") if any(p[1] for p in pad) else field
    offs = [int(rng.integers(0, b - s + 1)) for b, s in zip(big.shape, shape)]
    sl = tuple(slice(o, o + s) for o, s in zip(offs, shape))
    return np.ascontiguousarray(big[sl]), {"tiles_per_axis": reps, "offset_voxels": offs}


def superimpose_dss(
    particle_scan: Volume,
    cbd_scan: Volume,
    *,
    blurry_phase: str = "cbd",
    preserve_porosity: bool = True,
    seed: int = 0,
) -> tuple[Volume, dict[str, Any]]:
    """Replace the blurry phase of ``particle_scan`` with the structure of ``cbd_scan`` (see module doc).

    Args:
        particle_scan: Volume whose ``blurry_phase`` code marks the blurry CBD + micro-pore phase.
        cbd_scan: Volume of stand-alone CBD: codes CBD (solid) and PORE (micro-pores), finer voxels.
        blurry_phase: 'cbd' (default) or 'pore' (two-phase scan: every non-active voxel is blurry).
        preserve_porosity: threshold at the quantile that keeps the CBD scan's porosity inside the blurry
            phase (default); False: cut the resampled solid fraction at 0.5.
        seed: random tiling offset.

    Returns:
        (Volume with pore, active and CBD; report with fractions, CBD porosities, resampling, checks).
    """
    if not isinstance(particle_scan, Volume) or not isinstance(cbd_scan, Volume):
        raise InputError("superimpose_dss needs two Volumes (particle scan, CBD scan)")
    if blurry_phase not in ("cbd", "pore"):
        raise InputError(f"blurry_phase must be 'cbd' or 'pore', got {blurry_phase!r}")
    bcode = PHASE_CODES[blurry_phase]
    blurry = particle_scan.labels == bcode
    n_blurry = int(blurry.sum())
    if n_blurry == 0:
        raise InputError(f"the particle scan has no blurry phase (code of {blurry_phase!r} absent): nothing to superimpose")
    particle_scan.require_phases("active")
    if np.any(cbd_scan.labels == ACTIVE):
        raise InputError("the CBD scan contains active material: it must be a stand-alone CBD sample (cbd + pore only)")
    cbd_scan.require_phases("cbd", "pore")
    porosity_scan = float(np.mean(cbd_scan.labels == PORE))
    field, rs = resample_fraction(cbd_scan, particle_scan.voxel_size_um)
    rng = np.random.default_rng(seed)
    tiled, tl = _tile(field, particle_scan.shape, rng)
    vals = tiled[blurry]
    if preserve_porosity:
        n_solid = int(round((1.0 - porosity_scan) * n_blurry))
        solid = np.zeros(n_blurry, dtype=bool)
        if n_solid > 0:
            solid[np.argpartition(-vals, n_solid - 1)[:n_solid]] = True
        rule = "quantile (CBD-scan porosity kept)"
    else:
        solid = vals >= 0.5
        rule = "fraction >= 0.5"
    out = particle_scan.labels.copy()
    out[blurry] = np.where(solid, CBD, PORE).astype(np.uint8)
    untouched = bool(np.array_equal(out[~blurry], particle_scan.labels[~blurry]))
    if not untouched:  # pragma: no cover - guards the invariant DSS promises
        raise RuntimeError("DSS changed voxels outside the blurry phase")
    porosity_after = float(1.0 - solid.mean())
    vol = particle_scan.with_labels(out)
    fr = vol.fractions()
    macro = float(np.mean(particle_scan.labels == PORE)) if blurry_phase == "cbd" else 0.0
    report = {
        "fractions": fr,
        "blurry_phase": blurry_phase,
        "blurry_fraction": n_blurry / out.size,
        "macro_pore_fraction": macro,
        "micro_pore_fraction": n_blurry * porosity_after / out.size,
        "cbd_scan_porosity": porosity_scan,
        "cbd_porosity_after": porosity_after,
        "cbd_porosity_difference": porosity_after - porosity_scan,
        "threshold_rule": rule,
        "particle_voxel_um": list(particle_scan.voxel_size_um),
        "cbd_voxel_um": list(cbd_scan.voxel_size_um),
        **rs, **tl,
        "active_and_macropores_identical": untouched,
    }
    vol.metadata["dss"] = {k: v for k, v in report.items() if k != "fractions"}
    log.info("DSS: fractions %s, CBD porosity %.4f (scan %.4f)", {k: round(v, 4) for k, v in fr.items()},
             porosity_after, porosity_scan)
    return vol, report
