"""Coarsening of a label grid by blocks (voxel route, and the surface route's ``coarsen`` option).

:func:`block_mode` replaces each ``n x n x n`` block by its most frequent label. Blocks at the
far end of an axis whose length is not a multiple of ``n`` are partial; their true edge lengths are
returned so the box keeps its exact size.
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
