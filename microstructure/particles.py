"""Separate and measure the active-material particles (paper Fig. 2e-i).

Touching particles are separated by a marker-controlled watershed on the distance transform of the
active phase: markers are the regional maxima of the exact distance map that stand at least ``h``
above their surroundings (h-maxima), which suppresses the spurious maxima of voxel noise. The
default h = 0.25 voxel (no smoothing) was chosen against the ground truth of the synthetic
generator (overlapping NMC-like ellipsoids at 0.5 um voxels, 30 x 20 x 20 um boxes, two seeds):
81-94 % of the true particles matched one-to-one (IoU > 0.5), volume-weighted D50 within 12 %;
h = 1 voxel matched only 33-60 % (small particles merged into neighbours). Per particle (moments
of the voxel coordinates in um, vectorised with bincount):

* volume-equivalent diameter (6V/pi)^(1/3);
* surface area from a marching-cubes surface of the particle (area of the voxel faces is also given:
  it overestimates a smooth surface by ~1.5x);
* best-fit ellipsoid semi-axes a >= b >= c from the covariance: for a solid ellipsoid the variance
  along a principal axis is a^2/5, so a = sqrt(5 lambda);
* sphericity = c / a (minor / major axis, the paper's definition);
* orientation of the major axis: azimuth in the (axis 1, axis 2) plane, 0-180 deg from axis 1, and
  elevation out of that plane, 0-90 deg (90 = along the through-thickness axis 0);
* centroid depth from the separator (axis 0, index 0 = separator side), um.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from scipy import ndimage as ndi

from tomocell.errors import InputError
from tomocell.log import get_logger, progress
from tomocell.microstructure.poresize import distance_um
from tomocell.microstructure.volume import ACTIVE, Volume

log = get_logger("microstructure.particles")


def label_particles(volume: Volume, *, h_voxels: float = 0.25, sigma_voxels: float = 0.0,
                    min_voxels: int = 8) -> np.ndarray:
    """Watershed labels of the active phase: int32 array, 0 = not active, 1..N particles.

    ``h_voxels``: depth (in voxel edges) a distance maximum must have to seed its own particle;
    larger merges more. ``min_voxels``: smaller watershed fragments are merged into a touching
    particle (an isolated fragment stays a particle of its own).
    """
    from skimage.segmentation import watershed

    active = volume.labels == ACTIVE
    if not active.any():
        raise InputError("volume has no active phase: no particles to label")
    h = min(volume.voxel_size_um)
    dt = distance_um(active, volume.voxel_size_um)
    if sigma_voxels > 0:
        sig = tuple(sigma_voxels * h / v for v in volume.voxel_size_um)
        dt = ndi.gaussian_filter(dt, sig, mode="nearest").astype(np.float32)
        dt[~active] = 0
    peaks = h_maxima(dt, np.float32(h_voxels * h)).astype(bool) & active
    markers, nm = ndi.label(peaks, structure=np.ones((3, 3, 3), bool))
    log.info("particle watershed: %d markers", nm)
    lab = watershed(-dt, markers.astype(np.int32), mask=active).astype(np.int32)
    del dt, markers, peaks
    # active voxels not reached (components without a marker) become their own particles
    orphan = active & (lab == 0)
    if orphan.any():
        extra, ne = ndi.label(orphan, structure=np.ones((3, 3, 3), bool))
        lab[orphan] = extra[orphan] + lab.max()
    return _relabel_sequential(_merge_small(lab, min_voxels))


#: the 13 neighbours of the 26-neighbourhood that come before a voxel in C (raster) order
_BEFORE = np.array([(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                    if (dz, dy, dx) < (0, 0, 0)], dtype=np.int64)


@numba.njit(cache=True, inline="always")
def _at(z, y, x, o, k, shape):  # noqa: ANN001, ANN202 - numba helper
    """Neighbour (z, y, x) + sign * o[k] and whether it lies inside the box."""
    zz, yy, xx = z + o[k, 0], y + o[k, 1], x + o[k, 2]
    return zz, yy, xx, 0 <= zz < shape[0] and 0 <= yy < shape[1] and 0 <= xx < shape[2]


@numba.njit(cache=True)
def _push(queue, head, size, p):  # noqa: ANN001, ANN202 - numba helper
    """Append p to the ring buffer (grown when full); returns (queue, head, size)."""
    if size == queue.size:
        queue, head = _grow(queue, head, size), 0
    queue[(head + size) % queue.size] = p
    return queue, head, size + 1


@numba.njit(cache=True)
def _reconstruct_dilation(seed: np.ndarray, mask: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Grayscale reconstruction by dilation of ``seed`` under ``mask`` (seed <= mask), 26-connected:
    Vincent's (1993) hybrid algorithm, a raster and an anti-raster scan then a FIFO propagation.
    The result is unique, so it is the same as skimage's ``reconstruction(method='dilation')``."""
    shape = mask.shape
    nz, ny, nx = shape
    after = -before
    full = np.concatenate((before, after))
    J = seed.copy()
    for z in range(nz):  # raster scan over the neighbours visited before (z, y, x)
        for y in range(ny):
            for x in range(nx):
                m = J[z, y, x]
                for k in range(before.shape[0]):
                    zz, yy, xx, ok = _at(z, y, x, before, k, shape)
                    if ok and J[zz, yy, xx] > m:
                        m = J[zz, yy, xx]
                J[z, y, x] = min(m, mask[z, y, x])
    queue = np.empty(1 << 16, np.int64)
    head, size = 0, 0
    for z in range(nz - 1, -1, -1):  # anti-raster scan over the neighbours visited after
        for y in range(ny - 1, -1, -1):
            for x in range(nx - 1, -1, -1):
                m = J[z, y, x]
                for k in range(after.shape[0]):
                    zz, yy, xx, ok = _at(z, y, x, after, k, shape)
                    if ok and J[zz, yy, xx] > m:
                        m = J[zz, yy, xx]
                v = min(m, mask[z, y, x])
                J[z, y, x] = v
                for k in range(after.shape[0]):
                    zz, yy, xx, ok = _at(z, y, x, after, k, shape)
                    if ok and J[zz, yy, xx] < v and J[zz, yy, xx] < mask[zz, yy, xx]:
                        queue, head, size = _push(queue, head, size, (z * ny + y) * nx + x)
                        break
    while size > 0:  # propagation
        p = queue[head]
        head = (head + 1) % queue.size
        size -= 1
        z, rest = divmod(p, ny * nx)
        y, x = divmod(rest, nx)
        v = J[z, y, x]
        for k in range(full.shape[0]):
            zz, yy, xx, ok = _at(z, y, x, full, k, shape)
            if ok and J[zz, yy, xx] < v and J[zz, yy, xx] != mask[zz, yy, xx]:
                J[zz, yy, xx] = min(v, mask[zz, yy, xx])
                queue, head, size = _push(queue, head, size, (zz * ny + yy) * nx + xx)
    return J


@numba.njit(cache=True)
def _grow(queue: np.ndarray, head: int, size: int) -> np.ndarray:
    """The ring buffer ``queue`` (full) copied in order into one twice as large."""
    out = np.empty(2 * queue.size, np.int64)
    for i in range(size):
        out[i] = queue[(head + i) % queue.size]
    return out


def h_maxima(image: np.ndarray, h: float) -> np.ndarray:
    """Boolean h-maxima of a float32 image, 26-connected: skimage.morphology.h_maxima's definition
    and its float32 rounding guard, with the reconstruction compiled (~10x faster on 256^3)."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    h = np.float32(h)
    if h > np.ptp(image):
        return np.zeros(image.shape, bool)
    resolution = 2 * np.finfo(np.float32).resolution * np.abs(image)
    shifted = image - h - resolution
    rec = _reconstruct_dilation(shifted, image, _BEFORE)
    return (image - rec) >= h


def _merge_small(lab: np.ndarray, min_voxels: int) -> np.ndarray:
    """Merge particles smaller than ``min_voxels`` into the neighbour they share most faces with."""
    if min_voxels <= 1:
        return lab
    counts = np.bincount(lab.ravel())
    small = np.flatnonzero((counts < min_voxels) & (counts > 0))
    small = small[small > 0]
    if small.size == 0:
        return lab
    is_small = np.zeros(counts.size, bool)
    is_small[small] = True
    target = np.arange(counts.size)
    for k in range(3):
        a = np.moveaxis(lab, k, 0)
        for x, y in ((a[:-1], a[1:]), (a[1:], a[:-1])):
            sel = is_small[x] & (y > 0) & (y != x) & ~is_small[y]
            if sel.any():
                # any large neighbour will do for a fragment of a few voxels
                target[x[sel]] = y[sel]
    return target[lab].astype(np.int32)


def _relabel_sequential(lab: np.ndarray) -> np.ndarray:
    ids = np.unique(lab)
    ids = ids[ids > 0]
    lut = np.zeros(int(lab.max()) + 1, dtype=np.int32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[lab]


def _moments(lab: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts, centroids (n, 3) um and covariance matrices (n, 3, 3) um^2 of every label >= 1."""
    n = int(lab.max()) + 1
    flat = lab.ravel()
    sel = np.flatnonzero(flat)
    ids = flat[sel]
    counts = np.bincount(ids, minlength=n).astype(np.float64)
    coords = [(c.astype(np.float64) + 0.5) * spacing[k] for k, c in enumerate(np.unravel_index(sel, lab.shape))]
    del sel
    safe = np.maximum(counts, 1)
    mean = np.stack([np.bincount(ids, weights=c, minlength=n) / safe for c in coords], axis=1)
    cov = np.zeros((n, 3, 3))
    for i in range(3):
        for j in range(i, 3):
            m = np.bincount(ids, weights=(coords[i] - mean[ids, i]) * (coords[j] - mean[ids, j]), minlength=n) / safe
            cov[:, i, j] = cov[:, j, i] = m
    # a voxel is a cube, not a point: add its own second moment d^2/12 on the diagonal
    for k in range(3):
        cov[:, k, k] += spacing[k] ** 2 / 12.0
    return counts[1:], mean[1:], cov[1:]


def _surface_areas(lab: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Marching-cubes area and voxel-face area (um^2) of each particle."""
    from skimage.measure import marching_cubes, mesh_surface_area

    n = int(lab.max())
    mc = np.zeros(n)
    faces = np.zeros(n)
    farea = (spacing[1] * spacing[2], spacing[0] * spacing[2], spacing[0] * spacing[1])
    for k in range(3):
        # faces between a particle voxel and anything else (other particle, other phase, not the box)
        a = np.moveaxis(lab, k, 0)
        x, y = a[:-1], a[1:]
        diff = x != y
        faces += farea[k] * (np.bincount(x[diff], minlength=n + 1)[1:] + np.bincount(y[diff], minlength=n + 1)[1:])
    objs = ndi.find_objects(lab)
    for i, sl in enumerate(progress(objs, desc="particle surfaces")):
        if sl is None:
            continue
        pad = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, lab.shape[k])) for k, s in enumerate(sl))
        # one voxel of margin where the box allows: the surface closes there; where the box cuts the
        # particle there is no margin and no cap is counted (the cut face is not particle surface)
        sub = (lab[pad] == i + 1).astype(np.float32)
        if min(sub.shape) < 2:
            mc[i] = faces[i]
            continue
        try:
            verts, tri, _, _ = marching_cubes(sub, 0.5, spacing=spacing)
            mc[i] = mesh_surface_area(verts, tri)
        except (ValueError, RuntimeError):
            mc[i] = faces[i]
    return mc, faces


def particle_table(volume: Volume, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-particle metrics as columns (arrays of equal length, one row per label 1..N)."""
    if labels.shape != volume.shape:
        raise InputError(f"particle labels shape {labels.shape} differs from the volume {volume.shape}")
    if labels.max() <= 0:
        raise InputError("no particles in the label array")
    vs = volume.voxel_size_um
    counts, cen, cov = _moments(labels, vs)
    lam, vec = np.linalg.eigh(cov)  # ascending
    semi = np.sqrt(np.maximum(5.0 * lam[:, ::-1], 0.0))  # a >= b >= c
    major = vec[:, :, 2]
    major = np.where(major[:, :1] < 0, -major, major)  # sign convention: pointing deeper (axis 0 >= 0)
    elevation = np.degrees(np.arcsin(np.clip(np.abs(major[:, 0]), 0, 1)))
    azimuth = np.degrees(np.arctan2(major[:, 2], major[:, 1])) % 180.0
    vol = counts * volume.voxel_volume_um3
    mc, faces = _surface_areas(labels, vs)
    touches = _touches_box(labels)
    return {
        "label": np.arange(1, counts.size + 1),
        "volume_um3": vol,
        "equivalent_diameter_um": (6.0 * vol / np.pi) ** (1.0 / 3.0),
        "surface_area_um2": mc,
        "surface_area_voxel_faces_um2": faces,
        "semi_axis_a_um": semi[:, 0], "semi_axis_b_um": semi[:, 1], "semi_axis_c_um": semi[:, 2],
        "sphericity": np.where(semi[:, 0] > 0, semi[:, 2] / np.maximum(semi[:, 0], 1e-30), 1.0),
        "azimuth_deg": azimuth, "elevation_deg": elevation,
        "centroid_depth_um": cen[:, 0], "centroid_1_um": cen[:, 1], "centroid_2_um": cen[:, 2],
        "touches_boundary": touches,
    }


def _touches_box(labels: np.ndarray) -> np.ndarray:
    n = int(labels.max())
    t = np.zeros(n + 1, bool)
    for k in range(3):
        for idx in (0, -1):
            t[np.unique(np.take(labels, idx, axis=k))] = True
    return t[1:]


def volume_weighted_quantiles(d_um: np.ndarray, qs: tuple[float, ...] = (0.1, 0.5, 0.9),
                              volumes_um3: np.ndarray | None = None) -> list[float]:
    """Volume-weighted quantiles (D10, D50, D90 by default) of particle diameters, um.

    The one definition of Dxx in tomocell (the generator's targets and achieved sizes, `characterise`,
    the RVE study): the diameters are sorted and each particle's volume is placed at the midpoint of
    its step of the cumulative volume distribution, which is interpolated linearly, so a quantile moves
    continuously with the particle sizes (a first-crossing step rule jumps a whole particle when a
    few voxels change). ``volumes_um3``: the particles' volumes (default: d^3, spheres).
    """
    d = np.asarray(d_um, dtype=float)
    w = d**3 if volumes_um3 is None else np.asarray(volumes_um3, dtype=float)
    o = np.argsort(d, kind="stable")
    d, w = d[o], w[o]
    c = (np.cumsum(w) - 0.5 * w) / w.sum()
    return [float(np.interp(q, c, d)) for q in qs]


def volume_weighted_diameters(table: dict[str, np.ndarray], qs: tuple[float, ...] = (0.1, 0.5, 0.9)) -> dict[str, float]:
    """D10/D50/D90 of the equivalent diameter, weighted by particle volume (um; see
    :func:`volume_weighted_quantiles`)."""
    vals = volume_weighted_quantiles(table["equivalent_diameter_um"], qs, volumes_um3=table["volume_um3"])
    return {f"d{int(q * 100)}_um": v for q, v in zip(qs, vals)}


def summary(table: dict[str, Any]) -> dict[str, Any]:
    """Scalar summary of a particle table."""
    out: dict[str, Any] = {"count": int(len(table["label"]))}
    out.update(volume_weighted_diameters(table))
    out["mean_sphericity"] = float(np.mean(table["sphericity"]))
    interior = ~np.asarray(table["touches_boundary"])
    out["count_interior"] = int(interior.sum())
    return out
