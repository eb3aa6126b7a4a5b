"""Coarsening of a label grid by blocks (the ``coarsen`` option of every voxel-based route).

:func:`coarsen_labels` gives each ``n x n x n`` block one phase: by default with
:func:`block_fraction_preserving` (every phase keeps its volume), or with :func:`block_mode` (the most
frequent label; drops films thinner than a block). :func:`particle_labels_on` carries particle labels
to the coarse grid. Blocks at the far end of an axis whose length is not a multiple of ``n`` are
partial; :func:`block_edges` returns their true edge lengths so the box keeps its exact size.
"""

from __future__ import annotations

import numpy as np

from tomocell.errors import InputError


def block_edges(n_vox: int, factor: int, voxel_um: float) -> np.ndarray:
    """Coordinates (um) of coarse-cell boundaries along one axis, from 0 to ``n_vox * voxel_um``."""
    idx = np.arange(0, n_vox, factor)
    return np.append(idx, n_vox).astype(float) * voxel_um


def block_mode(arr: np.ndarray, factor: int, ignore_zero: bool = False) -> np.ndarray:
    """Most frequent value of each ``factor^3`` block (partial blocks at the ends allowed).

    With ``ignore_zero`` a block takes its most frequent non-zero value when it has one (used for
    particle labels, 0 = outside particles). Ties go to the first value in block order.
    """
    if factor < 1:
        raise InputError(f"coarsening factor must be >= 1, got {factor}")
    if factor == 1:
        return np.array(arr, copy=True)
    shp = np.array(arr.shape)
    nb = -(-shp // factor)
    pad = nb * factor - shp
    sentinel = np.iinfo(np.int64).min
    a = np.pad(arr.astype(np.int64), [(0, int(p)) for p in pad], constant_values=sentinel)
    a = a.reshape(nb[0], factor, nb[1], factor, nb[2], factor).transpose(0, 2, 4, 1, 3, 5)
    a = a.reshape(-1, factor**3)
    valid = a != sentinel
    if ignore_zero:
        valid_nz = valid & (a != 0)
    # count, for each position p in a block, how many positions hold the same value (small blocks:
    # factor^6 vector comparisons; cheaper than a per-block bincount over arbitrary label values)
    k = a.shape[1]
    counts = np.zeros(a.shape, dtype=np.int32)
    for p in range(k):
        counts[:, p] = np.count_nonzero((a == a[:, p : p + 1]) & valid, axis=1)
    counts[~valid] = -1
    if ignore_zero:
        counts = np.where(valid_nz, counts + k + 1, counts)  # any non-zero beats zero
    best = np.argmax(counts, axis=1)
    out = a[np.arange(len(a)), best]
    return out.reshape(tuple(nb)).astype(arr.dtype)


COARSEN_METHODS = ("fraction", "mode")


def block_counts(arr: np.ndarray, factor: int, values: int) -> tuple[np.ndarray, np.ndarray]:
    """Per ``factor^3`` block: the voxel count of each label ``0 .. values-1`` and the block's voxel count.

    Returns ``(counts, size)``: ``counts`` has the coarse grid's shape plus a last axis of length
    ``values``; ``size`` (the coarse shape) is smaller than ``factor^3`` for the partial blocks at the far
    end of an axis whose length is not a multiple of ``factor``.
    """
    shp = np.array(arr.shape)
    nb = tuple(int(v) for v in -(-shp // factor))
    pad = [(0, int(nb[i] * factor - shp[i])) for i in range(3)]

    def block_sum(m: np.ndarray) -> np.ndarray:
        return np.pad(m, pad).reshape(nb[0], factor, nb[1], factor, nb[2], factor).sum(axis=(1, 3, 5))

    counts = np.stack([block_sum((arr == k).astype(np.int32)) for k in range(values)], axis=-1)
    return counts, block_sum(np.ones(arr.shape, np.int32))


def block_fraction_preserving(labels: np.ndarray, factor: int, values: int = 3) -> np.ndarray:
    """Coarse labels whose phase volumes equal the fine grid's, to within one block per phase.

    The phases take their blocks in turn, the scarcest first: each takes the still-free blocks where
    its volume fraction is highest until those blocks hold its fine volume; the most abundant phase
    gets the rest. The majority rule of :func:`block_mode` drops any phase thinner than a block (a
    one-voxel CBD film in 2^3 blocks is never the majority: the demo electrode lost 29 % of its CBD);
    here such a phase gets the blocks where it is densest instead, which keeps it where it was. Ties
    between equal fractions (fractions are multiples of 1 / factor^3) go to the block whose 3^3
    neighbourhood holds more of the phase, so a film coarsens into a sheet rather than scattered blocks.
    What it cannot keep is shape below the block: a film becomes one block thick (less area), and a
    pore channel narrower than a block may break (docs/meshing.md has the measured figures).
    Written here because no imaging library offers a volume-conserving multi-label downsampling
    (scikit-image's ``downscale_local_mean`` averages, ``block_reduce`` has no quota).
    """
    from scipy.ndimage import uniform_filter

    if factor < 1:
        raise InputError(f"coarsening factor must be >= 1, got {factor}")
    if factor == 1:
        return np.array(labels, copy=True)
    counts, size = block_counts(labels, factor, values)
    frac = counts / np.maximum(size, 1)[..., None]
    w = size.ravel()
    target = counts.reshape(-1, values).sum(axis=0)  # fine voxels per phase
    out = np.full(w.shape, -1, dtype=np.int64)
    order = np.argsort(target, kind="stable")
    for k in order[:-1]:
        if target[k] == 0:
            continue
        score = (frac[..., k] + 1e-3 * uniform_filter(frac[..., k], 3, mode="nearest")).ravel()
        free = np.flatnonzero((out < 0) & (score > 0))
        pick = free[np.argsort(-score[free], kind="stable")]
        cum = np.cumsum(w[pick])
        n = int(np.searchsorted(cum, target[k]))  # the first n + 1 blocks reach the target
        if 0 < n < len(pick) and cum[n] - target[k] > target[k] - cum[n - 1]:
            n -= 1  # stop on whichever side of the target is nearer
        out[pick[: n + 1]] = k
    out[out < 0] = order[-1]
    return out.reshape(size.shape).astype(labels.dtype)


def coarsen_labels(labels: np.ndarray, factor: int, method: str = "fraction") -> np.ndarray:
    """Phase labels coarsened by ``factor^3`` blocks: 'fraction' (:func:`block_fraction_preserving`,
    the default: phase volumes kept) or 'mode' (:func:`block_mode`: the majority phase of each block)."""
    if method not in COARSEN_METHODS:
        raise InputError(f"unknown coarsening method {method!r} (choose from {', '.join(COARSEN_METHODS)})")
    if method == "mode":
        return block_mode(labels, factor)
    return block_fraction_preserving(labels, factor)


def particle_labels_on(coarse_phase: np.ndarray, particle_labels: np.ndarray, factor: int,
                       active: int = 1) -> np.ndarray:
    """Particle label of each coarse block: the block's most frequent non-zero label; a block made
    active without any labelled voxel (fraction-preserving coarsening) takes its nearest labelled
    block's label; blocks that are not ``active`` get 0."""
    from scipy.ndimage import distance_transform_edt

    plab = block_mode(particle_labels, factor, ignore_zero=True)
    act = coarse_phase == active
    if np.any(act & (plab == 0)) and np.any(plab != 0):
        _, idx = distance_transform_edt(plab == 0, return_indices=True)
        plab = plab[tuple(idx)]
    return np.where(act, plab, 0).astype(particle_labels.dtype)
