"""Calendering variant: compress an electrode along its thickness (Lu et al. 2020, Fig. 9).

This is a *geometric* model, not a discrete-element (DEM) or finite-element simulation: there are no
forces, friction, particle rotation or elastic recovery. It turns a volume and a strain into a
plausible calendered volume with these rules (the paper's observations, Fig. 9d-f: particles move
as bodies, roll, and deform horizontally only once constrained; pores and CBD take the strain):

1. **Thickness.** The current collector (last axis-0 index) is fixed; the roll pushes the
   separator face (index 0) down. The output has ``n' = round(n (1 - strain))`` slices of the same
   voxel size, so the achieved strain ``1 - n'/n`` is exact in voxels and within half a voxel of
   the request (reported).
2. **CBD bonded to a particle** (within ``cbd_attach_um`` of its surface, assigned to the nearest
   particle) moves rigidly with that particle. **Free CBD** (farther from every particle) and the
   **pore** are the compressible phases: they follow the affine map ``h' = (1 - strain) h``
   (h: height above the collector), sampled nearest-neighbour along axis 0; the free CBD volume
   lost to this uniform compaction (CBD carries its own nano-porosity) is ``cbd_compacted``.
3. **Particles** (watershed labels if given, else 6-connected active components) are rigid bodies
   translated along axis 0 only (no lateral motion, no rotation) by the affine displacement of
   their centroid, rounded to whole voxels and limited so they stay between the collector and the
   roll. They are placed from the collector upwards; a particle that would overlap one already
   placed moves by the nearest shift that avoids contact (it comes to rest on its neighbour).
4. **Deformation only when packed.** A particle with no contact-free shift inside the box is
   placed at the shift of least overlap and deforms plastically at constant volume: its overlapping
   (or out-of-box) voxels are removed and the same number is added on its free surface,
   preferring in-plane (horizontal) growth, then any direction. Active volume is conserved
   exactly, and active voxels never overlap.
5. **Crushed CBD** is the bonded CBD squeezed out where bodies press together (Fig. 9j inset):
   landing on another particle's active voxels, on another particle's CBD, or beyond the roll or
   the collector; it is removed and reported (um^3 and fraction of the input CBD), so
   ``CBD_in = CBD_out + compacted + crushed`` exactly. Space a body leaves behind becomes pore.

What it cannot give: particle cracking, rolling, binder redistribution into neighbouring pores,
stress-dependent behaviour; strain localisation is only as realistic as rules 3-4.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from tomocell.errors import InputError
from tomocell.log import get_logger, progress
from tomocell.microstructure.variants_common import derived, particle_labels, provenance
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume

log = get_logger(__name__)

PAPER_STRAINS = (0.07, 0.15, 0.225)


def _affine_source_index(n: int, n_new: int) -> np.ndarray:
    """Old axis-0 index sampled by each new index (nearest neighbour, collector fixed)."""
    scale = n_new / n
    h_new = n_new - np.arange(n_new) - 0.5
    i_old = np.rint(n - 0.5 - h_new / scale).astype(int)
    return np.clip(i_old, 0, n - 1)


def _grow(active: np.ndarray, pmask: np.ndarray, need: int, rng: np.random.Generator) -> int:
    """Add up to ``need`` voxels to ``pmask`` on free (non-active) voxels, horizontal first.

    Both arrays are local views; ``pmask`` voxels are not in ``active``. Returns the number added.
    Candidates with more particle neighbours go first (keeps the shape compact).
    """
    lateral = np.zeros((3, 3, 3), bool)
    lateral[1, 1, :] = lateral[1, :, 1] = True
    full = ndimage.generate_binary_structure(3, 1)
    added = 0
    while added < need:
        free = ~active & ~pmask
        front = ndimage.binary_dilation(pmask, lateral) & free
        if not front.any():
            front = ndimage.binary_dilation(pmask, full) & free
            if not front.any():
                break
        score = ndimage.convolve(pmask.astype(np.int8), full.astype(np.int8), mode="constant")
        idx = np.flatnonzero(front)
        order = np.lexsort((rng.random(idx.size), -score.ravel()[idx]))
        take = idx[order[: need - added]]
        pmask.ravel()[take] = True
        added += take.size
    return added


def calender(
    volume: Volume,
    strain: float,
    labels: np.ndarray | None = None,
    seed: int = 0,
    cbd_attach_um: float = 1.0,
) -> tuple[Volume, dict[str, Any]]:
    """Compress ``volume`` along axis 0 by ``strain`` (0 <= strain < 0.9); see the module docstring.

    Returns:
        (calendered volume, report): achieved strain and thickness, particle counts (rigidly moved,
        contact-limited, deformed), deformed active volume, CBD compacted and crushed, porosity and
        phase fractions before and after, provenance.
    """
    try:
        strain = float(strain)
    except (TypeError, ValueError):
        raise InputError(f"strain must be a number, got {strain!r}") from None
    if not (0.0 <= strain < 0.9):
        raise InputError(f"calendering strain must be in [0, 0.9), got {strain}")
    rng = np.random.default_rng(seed)
    lab = particle_labels(volume, labels)
    n = volume.shape[0]
    n_new = int(round(n * (1.0 - strain)))
    if n_new < 1:
        raise InputError(f"strain {strain} leaves no slice of a {n}-slice volume")
    achieved = 1.0 - n_new / n
    shift = n - n_new
    vvol = volume.voxel_volume_um3

    if not cbd_attach_um >= 0:
        raise InputError(f"cbd_attach_um must be >= 0, got {cbd_attach_um}")
    # 2. CBD bonded to particles (nearest particle within cbd_attach_um) vs free CBD
    cbd = volume.labels == CBD
    cbd_owner = np.zeros(lab.shape, np.int32)
    if cbd.any() and (lab > 0).any():
        dist, idx = ndimage.distance_transform_edt(lab == 0, sampling=volume.voxel_size_um, return_indices=True)
        bonded = cbd & (dist <= cbd_attach_um + 1e-9)
        cbd_owner[bonded] = lab[tuple(i[bonded] for i in idx)]
        del dist, idx
    free_cbd = cbd & (cbd_owner == 0)
    src = _affine_source_index(n, n_new)
    free_new = free_cbd[src]
    cbd_in = int(cbd.sum())
    compacted = int(free_cbd.sum()) - int(free_new.sum())
    cbd_objs = ndimage.find_objects(cbd_owner, max_label=int(lab.max()) if lab.size else 0)

    # 3-4. particles, bottom-up
    objs = ndimage.find_objects(lab)
    ids = [i for i, o in enumerate(objs, start=1) if o is not None]
    centroids = ndimage.center_of_mass(np.ones(lab.shape, bool), lab, ids) if ids else []
    heights = {i: n - 0.5 - c[0] for i, c in zip(ids, centroids)}
    order = sorted(ids, key=lambda i: heights[i])
    new_active = np.zeros((n_new,) + volume.shape[1:], dtype=bool)
    moved: dict[int, int] = {}
    n_contact = n_deformed = deformed_voxels = lost = 0
    for pid in progress(order, desc="calendering particles"):
        sl = objs[pid - 1]
        pm = lab[sl] == pid
        imin, imax = sl[0].start, sl[0].stop - 1
        lo, hi = shift - imin, n - 1 - imax
        target = int(round(achieved * heights[pid]))
        cands = range(lo, hi + 1) if lo <= hi else range(0)
        cands = sorted(cands, key=lambda d: (abs(d - target), d))
        best, best_ov = None, None
        for d in cands:
            j0 = imin - shift + d
            ov = int(np.count_nonzero(new_active[j0:j0 + pm.shape[0], sl[1], sl[2]] & pm))
            if ov == 0:
                best, best_ov = d, 0
                break
            if best_ov is None or ov < best_ov:
                best, best_ov = d, ov
        if best is not None and best_ov == 0:
            j0 = imin - shift + best
            new_active[j0:j0 + pm.shape[0], sl[1], sl[2]] |= pm
            moved[pid] = best
            if best != min(max(target, lo), hi):
                n_contact += 1
            continue
        # packed: least-overlap shift (or the roll's limit when the particle is taller than the box)
        d = best if best is not None else lo
        moved[pid] = d
        j0 = imin - shift + d
        # local box: particle rows clipped to the new box, in-plane margin for lateral growth
        count = int(pm.sum())
        m = int(np.ceil(np.sqrt(count))) + 2
        a0, a1 = max(0, j0 - 2), min(n_new, j0 + pm.shape[0] + 2)
        b0, b1 = max(0, sl[1].start - m), min(volume.shape[1], sl[1].stop + m)
        c0, c1 = max(0, sl[2].start - m), min(volume.shape[2], sl[2].stop + m)
        loc_active = new_active[a0:a1, b0:b1, c0:c1]
        pl = np.zeros(loc_active.shape, bool)
        # paste the particle into the local box; rows outside [0, n_new) are dropped (collide)
        rows = np.arange(pm.shape[0]) + j0
        keep_rows = (rows >= a0) & (rows < a1)
        pl[rows[keep_rows] - a0, sl[1].start - b0:sl[1].stop - b0, sl[2].start - c0:sl[2].stop - c0] = pm[keep_rows]
        kept = pl & ~loc_active
        need = count - int(kept.sum())
        got = _grow(loc_active, kept, need, rng)
        loc_active |= kept
        lost += need - got
        n_deformed += 1
        deformed_voxels += need
    if lost:
        raise InputError(
            f"calendering to strain {strain}: {lost} active voxels found no free space (volume fully packed)"
        )
    # bonded CBD follows its particle; overlaps, active voxels and the box edges crush it
    new_cbd = free_new.copy()
    for pid, d in moved.items():
        csl = cbd_objs[pid - 1] if pid - 1 < len(cbd_objs) else None
        if csl is None:
            continue
        cm = cbd_owner[csl] == pid
        j0 = csl[0].start - shift + d
        r0, r1 = max(0, j0), min(n_new, j0 + cm.shape[0])
        if r1 > r0:
            new_cbd[r0:r1, csl[1], csl[2]] |= cm[r0 - j0:r1 - j0]
    out = np.full(new_active.shape, PORE, dtype=np.uint8)
    out[new_cbd] = CBD
    out[new_active] = ACTIVE
    cbd_out = int((out == CBD).sum())
    crushed = cbd_in - compacted - cbd_out
    new = derived(volume, out, "calender", {"strain": strain, "achieved_strain": achieved, "seed": seed})
    fin, fout = volume.fractions(), new.fractions()
    report: dict[str, Any] = {
        "strain_requested": strain,
        "strain": achieved,
        "thickness_um_input": volume.extent_um[0],
        "thickness_um": new.extent_um[0],
        "slices_input": n,
        "slices": n_new,
        "particles": len(ids),
        "particles_contact_limited": n_contact,
        "particles_deformed": n_deformed,
        "deformed_active_volume_um3": deformed_voxels * vvol,
        "active_voxels_input": int((volume.labels == ACTIVE).sum()),
        "active_voxels": int(new_active.sum()),
        "cbd_volume_um3_input": cbd_in * vvol,
        "cbd_bonded_fraction": float((cbd_owner > 0).sum() / cbd_in) if cbd_in else 0.0,
        "cbd_compacted_volume_um3": compacted * vvol,
        "cbd_crushed_volume_um3": crushed * vvol,
        "cbd_crushed_fraction": crushed / cbd_in if cbd_in else 0.0,
        "cbd_volume_um3": cbd_out * vvol,
        "porosity_input": fin["pore"],
        "porosity": fout["pore"],
        "pore_open_to_separator_input": pore_open_to_separator(volume.labels),
        "pore_open_to_separator": pore_open_to_separator(out),
        "fractions_input": fin,
        "fractions": fout,
        "provenance": provenance(volume, "calender", {"strain": strain, "seed": seed, "cbd_attach_um": cbd_attach_um,
                                 "particle_labels": "given" if labels is not None else "6-connected components"}),
    }
    if report["pore_open_to_separator"] < 0.9 * report["pore_open_to_separator_input"]:
        log.warning("calendering to strain %.3f closed the pore network: %.0f %% of the pore volume reaches the "
                    "separator (%.0f %% before); the closed pores carry no electrolyte current",
                    achieved, 100 * report["pore_open_to_separator"], 100 * report["pore_open_to_separator_input"])
    return new, report


def pore_open_to_separator(labels: np.ndarray) -> float:
    """Fraction of the pore volume 6-connected to the separator face (axis-0 index 0): the rest is closed
    off and carries no electrolyte transport. 0 when there is no pore."""
    import cc3d

    pore = labels == PORE
    n = int(pore.sum())
    if n == 0:
        return 0.0
    cc = cc3d.connected_components(pore, connectivity=6)
    top = np.unique(cc[0][cc[0] > 0])
    return float(np.isin(cc, top).sum() / n)
