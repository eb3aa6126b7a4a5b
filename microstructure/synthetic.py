"""Synthetic NMC cathodes: ellipsoidal secondary particles + carbon-binder domain (CBD) at necks.

Defaults follow Lu et al., Nat. Commun. 11, 2079 (2020):

* particle size: volume-weighted D50 = 5 um and D90 = 10 um (their Supplementary Fig. 11, quoted in the
  calendering section), log-normal, truncated to 2-15 um (Fig. 2g: sizes scatter "between 2 and 15 um");
  the truncation is accounted for when the distribution's parameters are solved, so the truncated
  distribution has the requested D50/D90;
* shape: sphericity = minor/major axis of the best-fit ellipsoid (their Methods), broad, larger particles
  more spherical (Fig. 2h): truncated normal, mean 0.75 + 0.05 ln(d/D50), sd 0.12, in [0.4, 1]; the
  intermediate axis lies between minor and major; orientations uniformly random (Fig. 2i);
* fractions: active 0.55, CBD 0.15, pore 0.30. The electrode is 90:5:5 wt% NMC111 : C65 : PVDF (Methods);
  with densities 4.7, 1.9 and 1.78 g/cm3 the CBD:NMC solid volume ratio is 0.28, i.e. 0.155 CBD for
  0.55 NMC; a porosity of ~30 % sits below the paper's "high porosity" variant (approx. 33 %, Fig. 7l).
  The CBD is nano-porous below the voxel size; its internal porosity is recorded as metadata
  (``cbd_nanoporosity``, default 0.5) for the physics, not resolved.

Geometry: axis 0 is the thickness; index 0 is the separator face and the last index the current
collector (CC). Both axis-0 faces are walls (the separator and the foil): particles may be flattened
into them by at most ``wall_penetration`` of their extent, as calendering does. The side faces cut
particles like a sub-volume of a larger electrode; as particle centres lie inside the box, the outer
~1 um at the side faces is ~5 % more porous than the interior. ``periodic_inplane=True`` removes that
(particles crossing a side face continue at the opposite one) at the cost of particles whose voxels
sit at two opposite faces (their ids and ground truth then describe one wrapped particle). CBD fills particle necks and coats surfaces and the
CC foil (it is where the binder goes as the slurry dries), ranked by a Gaussian-smoothed solid density
with a little spatial texture; the CBD fraction is then exact to one voxel.

Packing (:mod:`.packing`): particles are drawn as a stratified sample of the volume-weighted size distribution (so even a
small box reproduces D50/D90), placed largest first at points of free space (a coarse distance map,
refreshed every few particles) and accepted if they share at most ``max_overlap`` of their own voxels
and of every neighbour's voxels (if the box jams before the target, the bound is raised in steps of 0.05
up to ``max_overlap_relax_to``, and the value used is recorded); stamped in their own bounding box (no whole-volume work per particle).
Finally isolated pores are filled and floating solid removed (:mod:`.checks`), then the CBD is topped
up to its target. Deterministic for a given seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import cc3d
import numpy as np
from scipy import ndimage

from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.microstructure.packing import pack_particles, size_distribution
from tomocell.microstructure.particles import volume_weighted_quantiles
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume, _check_voxel_size

log = get_logger("microstructure.synthetic")

#: named parameter sets; "demo" keeps meshing and physics of the demo within minutes on 2 cores
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {"box_um": (30.0, 20.0, 20.0), "voxel_size_um": 0.5},
    "small": {"box_um": (30.0, 20.0, 20.0), "voxel_size_um": 0.25},
    "paper": {"box_um": (50.0, 43.0, 43.0), "voxel_size_um": 0.126},
    # the whole chain in about a minute (the default test suite runs it): 8 x 6 x 6 um, small particles
    "tiny": {"box_um": (8.0, 6.0, 6.0), "voxel_size_um": 0.5, "d50_um": 2.5, "d90_um": 3.5, "d_min_um": 1.5,
             "d_max_um": 4.0, "active_fraction": 0.45},
}


@dataclass
class GeneratorParams:
    box_um: tuple[float, float, float] = (30.0, 20.0, 20.0)
    voxel_size_um: float | tuple[float, float, float] = 0.25
    active_fraction: float = 0.55
    cbd_fraction: float = 0.15
    d50_um: float = 5.0
    d90_um: float = 10.0
    d_min_um: float = 2.0
    d_max_um: float = 15.0
    sphericity: tuple[float, float] = (0.75, 0.12)
    sphericity_size_trend: float = 0.05
    sphericity_range: tuple[float, float] = (0.4, 1.0)
    max_overlap: float = 0.15
    max_overlap_relax_to: float = 0.3
    periodic_inplane: bool = False
    wall_penetration: float = 0.15
    cbd_neck_sigma_um: float = 0.6
    cbd_texture: float = 0.15
    cbd_nanoporosity: float = 0.5
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- CBD
def _cbd_score(active: np.ndarray, vs: np.ndarray, p: GeneratorParams, rng: np.random.Generator) -> np.ndarray:
    """Solid density smoothed at the neck scale (+ texture): high in necks and at the CC foil."""
    sig = p.cbd_neck_sigma_um / vs
    pad = int(math.ceil(4 * sig[0]))
    f = np.zeros((active.shape[0] + pad,) + active.shape[1:], dtype=np.float32)
    f[: active.shape[0]] = active
    f[active.shape[0]:] = 1.0  # the current-collector foil is solid the binder wets
    side = "wrap" if p.periodic_inplane else "reflect"
    ndimage.gaussian_filter(f, sigma=sig, output=f, mode=("nearest", side, side), truncate=3.0)
    score = f[: active.shape[0]]
    if p.cbd_texture > 0:
        noise = rng.standard_normal(active.shape, dtype=np.float32)
        ndimage.gaussian_filter(noise, sigma=np.maximum(0.3 / vs, 0.5), output=noise, mode="wrap", truncate=3.0)
        noise *= p.cbd_texture / max(float(noise.std()), 1e-12)
        score += noise * np.float32(0.5)
    return score


def _set_top(labels: np.ndarray, score: np.ndarray, candidates: np.ndarray, n: int, value: int) -> None:
    """Set ``value`` on the ``n`` candidate voxels with the highest score."""
    idx = np.flatnonzero(candidates)
    if n <= 0 or idx.size == 0:
        return
    n = min(n, idx.size)
    s = score.ravel()[idx]
    top = idx[np.argpartition(s, idx.size - n)[idx.size - n:]]
    labels.ravel()[top] = value


def _connected_to_face(mask: np.ndarray, face: int) -> np.ndarray:
    """Voxels of ``mask`` in 6-connected clusters touching axis-0 index ``face`` (0 or -1)."""
    lab = cc3d.connected_components(mask.astype(np.uint8), connectivity=6)
    ids = np.unique(lab[face])
    return np.isin(lab, ids[ids > 0])


def _place_cbd(labels: np.ndarray, score: np.ndarray, n_target: int, *, first: bool = False) -> None:
    """Bring the CBD voxel count to ``n_target``: add at the highest score, remove at the lowest.

    The first placement ranks all pore voxels (so CBD can bridge a particle to its neighbours). Top-ups
    add only next to solid connected to the current collector (no floating specks) and remove only next
    to pore connected to the separator (no new enclosed pores); a few passes, as each pass can grow or
    shrink the CBD by one voxel layer only.
    """
    if first:
        _set_top(labels, score, labels == PORE, n_target - int(np.count_nonzero(labels == CBD)), CBD)
        return
    face6 = ndimage.generate_binary_structure(3, 1)
    for _ in range(30):
        diff = n_target - int(np.count_nonzero(labels == CBD))
        if diff == 0:
            return
        if diff > 0:
            near = ndimage.binary_dilation(_connected_to_face(labels != PORE, -1), structure=face6)
            cand = (labels == PORE) & near
            _set_top(labels, score, cand, min(diff, int(cand.sum())), CBD)
        else:
            near = ndimage.binary_dilation(_connected_to_face(labels == PORE, 0), structure=face6)
            cand = (labels == CBD) & near
            _set_top(labels, -score, cand, min(-diff, int(cand.sum())), PORE)
        if not cand.any():
            return


# ----------------------------------------------------------------------------- public API
def _resolve(preset: str | None, kwargs: dict[str, Any]) -> GeneratorParams:
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
        base.update(PRESETS[preset])
    base.update({k: v for k, v in kwargs.items() if v is not None})
    known = set(GeneratorParams.__dataclass_fields__)
    unknown = set(base) - known
    if unknown:
        raise InputError(f"unknown generator parameter(s): {', '.join(sorted(unknown))}")
    p = GeneratorParams(**base)
    box = np.asarray(p.box_um, dtype=float)
    if box.shape != (3,) or not np.all(np.isfinite(box)) or np.any(box <= 0):
        raise InputError(f"box_um must be three positive lengths (um), got {p.box_um}")
    if not (0 < p.active_fraction < 1 and 0 <= p.cbd_fraction < 1 and p.active_fraction + p.cbd_fraction < 1):
        raise InputError(f"need 0 < active_fraction, 0 <= cbd_fraction, sum < 1; got {p.active_fraction}, {p.cbd_fraction}")
    if p.active_fraction > 0.75:
        raise InputError(f"active_fraction {p.active_fraction} is above what bounded-overlap packing reaches (<= 0.75)")
    mean, sd = p.sphericity
    lo, hi = p.sphericity_range
    if not (0 < lo <= mean <= hi <= 1 and sd >= 0):
        raise InputError(f"sphericity (mean, sd) = {p.sphericity} must have mean in range {p.sphericity_range} and sd >= 0")
    if not 0 <= p.max_overlap < 0.5 or not p.max_overlap <= p.max_overlap_relax_to < 0.5:
        raise InputError(f"need 0 <= max_overlap <= max_overlap_relax_to < 0.5, got {p.max_overlap}, {p.max_overlap_relax_to}")
    if not 0 <= p.cbd_nanoporosity < 1:
        raise InputError(f"cbd_nanoporosity must be in [0, 1), got {p.cbd_nanoporosity}")
    p.box_um = tuple(float(b) for b in box)  # type: ignore[assignment]
    p.sphericity = (float(mean), float(sd))
    return p


#: peak memory of generate_electrode per voxel, with margin: measured 34 and 32 bytes/voxel (peak RSS
#: growth) at 0.77 M and 3.5 M voxels (demo box at 0.25 and 0.15 um)
GENERATE_BYTES_PER_VOXEL = 40


def generate_electrode(
    *,
    preset: str | None = None,
    box_um: tuple[float, float, float] | None = None,
    voxel_size_um: float | tuple[float, float, float] | None = None,
    active_fraction: float | None = None,
    cbd_fraction: float | None = None,
    d50_um: float | None = None,
    d90_um: float | None = None,
    sphericity: tuple[float, float] | None = None,
    seed: int = 0,
    return_particle_ids: bool = False,
    **more: Any,
) -> Volume | tuple[Volume, np.ndarray]:
    """Generate a synthetic NMC cathode (see module docstring for the model and its sources).

    Args:
        preset: 'demo' (30 x 20 x 20 um at 0.5 um: 60 x 40 x 40 voxels), 'small' (same box at 0.25 um),
            'paper' (50 x 43 x 43 um at 0.126 um, the paper's volume); explicit arguments override it.
        box_um: edge lengths along axes (0 = thickness, 1, 2) in um (default 30 x 20 x 20).
        voxel_size_um: voxel edge (um), one value or three (default 0.25).
        active_fraction, cbd_fraction: target volume fractions (default 0.55, 0.15).
        d50_um, d90_um: volume-weighted particle diameters (default 5, 10 um).
        sphericity: (mean, sd) of minor/major axis ratio at D50 (default (0.75, 0.12)).
        seed: random seed (deterministic output).
        return_particle_ids: also return an int32 array of particle ids (0 = none; overlaps keep the
            first particle's id), matching ``metadata['particles']`` order (id = index + 1).
        **more: other :class:`GeneratorParams` fields (d_min_um, d_max_um, max_overlap, ...).

    Returns:
        Volume with ``metadata['generator']`` (all parameters, achieved fractions and size quantiles) and
        ``metadata['particles']`` (ground truth: centre_um, semi_axes_um major->minor, axes = rotation
        matrix whose columns are the major/intermediate/minor directions in (axis0, axis1, axis2)
        coordinates, d_eq_um, voxels). Particle centres are in um with voxel i centred at i * voxel size.
    """
    t0 = time.perf_counter()
    p = _resolve(preset, dict(box_um=box_um, voxel_size_um=voxel_size_um, active_fraction=active_fraction,
                              cbd_fraction=cbd_fraction, d50_um=d50_um, d90_um=d90_um, sphericity=sphericity,
                              seed=seed, **more))
    vs = np.asarray(_check_voxel_size(p.voxel_size_um))
    shape = tuple(int(round(b / v)) for b, v in zip(p.box_um, vs))
    if min(shape) < 4:
        raise InputError(f"box {p.box_um} um at voxel {tuple(vs)} um is under 4 voxels along an axis")
    from tomocell.memory import check_memory

    n_vox = float(np.prod([float(s) for s in shape]))
    check_memory(GENERATE_BYTES_PER_VOXEL * n_vox, f"generating {shape[0]} x {shape[1]} x {shape[2]} voxels "
                 f"({n_vox:.3g}) at {tuple(float(v) for v in vs)} um",
                 "choose a larger --voxel-size or a smaller --box-um")
    if max(p.box_um[1], p.box_um[2]) < p.d50_um or p.box_um[0] < p.d50_um:
        raise InputError(f"box {p.box_um} um is smaller than D50 = {p.d50_um} um")
    rng = np.random.default_rng(p.seed)
    mu, sigma = size_distribution(p.d50_um, p.d90_um, p.d_min_um, p.d_max_um)
    # A first placement on a coarse grid (>= 0.5 um, cheap) learns how many voxels a nominal particle volume
    # yields in this box (overlaps, side cuts, walls); the real placement then draws its whole sample in one
    # round, so large particles are placed while there is room (later top-up rounds could only fit small ones).
    vs_pilot = np.maximum(vs, 0.5)
    shape_pilot = tuple(max(4, int(round(b / v))) for b, v in zip(p.box_um, vs_pilot))
    _, _, pilot = pack_particles(p, shape_pilot, vs_pilot, np.random.default_rng(p.seed), mu, sigma,  # type: ignore[arg-type]
                        strict=False)
    eff0 = pilot["efficiency_first_round"] or 1.0
    packer, truth, pack_stats = pack_particles(p, shape, vs, rng, mu, sigma, efficiency=eff0)  # type: ignore[arg-type]
    t_pack = time.perf_counter() - t0
    labels = np.where(packer.ids > 0, np.uint8(ACTIVE), np.uint8(PORE))
    n_total = labels.size
    score = _cbd_score(labels == ACTIVE, vs, p, rng)
    n_cbd = int(round(p.cbd_fraction * n_total))
    _place_cbd(labels, score, n_cbd, first=True)
    # connectivity: fill enclosed pores, drop floating solid, top CBD back up to its target
    from tomocell.microstructure.checks import find_isolated_clusters, remove_isolated_clusters

    # enclosed pores become CBD (binder-filled pockets), so the active phase stays exactly the particles
    vol = Volume(labels, tuple(vs))
    cleaned = remove_isolated_clusters(vol, pore_fill="cbd")
    labels = cleaned.labels
    removed = cleaned.metadata["isolated_clusters_removed"]
    _place_cbd(labels, score, n_cbd)
    vol = Volume(labels, tuple(vs))
    check = find_isolated_clusters(vol)
    for _ in range(3):
        # topping up the CBD can enclose a pocket or strand a CBD speck again: clean and top up again
        if not (check["pore"]["n_isolated"] or check["solid"]["n_isolated"]):
            break
        labels = remove_isolated_clusters(vol, pore_fill="cbd").labels
        _place_cbd(labels, score, n_cbd)
        vol = Volume(labels, tuple(vs))
        check = find_isolated_clusters(vol)
    if check["pore"]["n_isolated"] or check["solid"]["n_isolated"]:
        vol = remove_isolated_clusters(vol, pore_fill="cbd")  # final clean: accept the small CBD deviation
        check = find_isolated_clusters(vol)
    del score
    fr = vol.fractions()
    for name, want in (("active", p.active_fraction), ("cbd", p.cbd_fraction)):
        if abs(fr[name] - want) > 0.01:
            log.warning("%s fraction %.4f misses its target %.4f by more than 0.01 (dense packing: enclosed pores "
                        "were filled with CBD, floating solid removed)", name, fr[name], want)
    # ground truth and ids: drop particles removed as floating, renumber ids to list order (id = index + 1)
    ids = packer.ids
    ids[vol.labels != ACTIVE] = 0
    left = np.bincount(ids.ravel(), minlength=len(truth["d_eq_um"]) + 1)[1:]
    keep = left > 0
    if not keep.all():
        lut = np.zeros(keep.size + 1, dtype=np.int32)
        lut[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        ids = lut[ids]
        truth = {k: [x for x, kp in zip(vals, keep) if kp] for k, vals in truth.items()}
    removed["floating_particles_removed"] = int((~keep).sum())
    fr = vol.fractions()
    d_eq = np.asarray(truth["d_eq_um"])
    d10, d50, d90 = volume_weighted_quantiles(d_eq) if d_eq.size else (float("nan"),) * 3
    gen = asdict(p)
    gen.update({
        "model": "ellipsoids (truncated log-normal, stratified) + CBD at necks; see tomocell.microstructure.synthetic",
        "shape": list(shape),
        "lognormal_volume_weighted_mu_sigma": [mu, sigma],
        "achieved": {**fr, "d10_um": d10, "d50_um": d50, "d90_um": d90, "n_particles": int(d_eq.size)},
        "packing": pack_stats,
        "isolated_removed": removed,
        "isolated_after": {"pore": check["pore"]["n_isolated"], "solid": check["solid"]["n_isolated"]},
        "time_s": {"packing": round(t_pack, 3), "total": round(time.perf_counter() - t0, 3)},
    })
    gen.pop("extra", None)
    meta = {"generator": gen, "particles": truth, "cbd_nanoporosity": p.cbd_nanoporosity}
    out = Volume(vol.labels, tuple(vs), meta)
    log.info("generated %s voxels: pore %.3f active %.3f cbd %.3f, %d particles, D50 %.2f D90 %.2f um in %.1f s",
             shape, fr["pore"], fr["active"], fr["cbd"], d_eq.size, d50, d90, time.perf_counter() - t0)
    if return_particle_ids:
        return out, ids
    return out


def generate_cbd_scan(
    shape: tuple[int, int, int], voxel_size_um: float | tuple[float, float, float], *,
    porosity: float = 0.5, feature_um: float = 0.25, seed: int = 0,
) -> Volume:
    """A stand-alone CBD scan (CBD solid + micro-pores) like the paper's 63 nm scan, for DSS tests.

    Gaussian-filtered white noise (correlation length ``feature_um``) thresholded at the quantile that
    gives exactly ``porosity``. Codes: CBD = solid, PORE = micro-pore.
    """
    if not 0 < porosity < 1:
        raise InputError(f"CBD porosity must be in (0, 1), got {porosity}")
    vs = np.asarray(_check_voxel_size(voxel_size_um))
    rng = np.random.default_rng(seed)
    f = rng.standard_normal(shape, dtype=np.float32)
    ndimage.gaussian_filter(f, sigma=feature_um / vs, output=f, mode="wrap")
    n_pore = int(round(porosity * f.size))
    labels = np.full(shape, CBD, dtype=np.uint8)
    flat = f.ravel()
    idx = np.argpartition(flat, n_pore)[:n_pore]
    labels.ravel()[idx] = PORE
    return Volume(labels, tuple(vs), {"generator": {"model": "thresholded Gaussian random field", "porosity": porosity,
                                                    "feature_um": feature_um, "seed": seed}})
