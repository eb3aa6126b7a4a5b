"""Small analytic three-phase volumes for meshing tests and benchmarks.

Spheres of active material (possibly overlapping, possibly cut by the box faces) coated by a CBD
shell of given thickness, in pore. They have every feature a mesher must get right: triple lines
where shell, particle and pore meet, thin CBD layers, particles touching the box faces, and a known
particle label per voxel. (The full electrode generator lives in tomocell.microstructure.)
"""

from __future__ import annotations

import numpy as np

from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


def sphere_pack_volume(
    shape: tuple[int, int, int],
    voxel_um: float,
    *,
    n_spheres: int = 6,
    radius_vox: tuple[float, float] = (4.0, 8.0),
    cbd_shell_vox: float = 1.5,
    seed: int = 0,
) -> tuple[Volume, np.ndarray]:
    """Random spheres (active) with a CBD shell in pore.

    Returns (volume, particle_labels) where particle_labels gives the sphere index + 1 of each active
    voxel (the nearest centre in units of its radius where spheres overlap), 0 elsewhere.
    """
    rng = np.random.default_rng(seed)
    shp = np.array(shape)
    centres = rng.uniform(0, 1, size=(n_spheres, 3)) * shp
    radii = rng.uniform(*radius_vox, size=n_spheres)
    best = np.full(shape, np.inf)
    owner = np.zeros(shape, dtype=np.int32)
    reach = cbd_shell_vox + 1.0
    for k, (c, r) in enumerate(zip(centres, radii)):
        lo = np.maximum(np.floor(c - r - reach).astype(int), 0)
        hi = np.minimum(np.ceil(c + r + reach).astype(int) + 1, shp)
        if np.any(hi <= lo):
            continue
        ax = [np.arange(lo[a], hi[a]) + 0.5 - c[a] for a in range(3)]
        d = np.sqrt(ax[0][:, None, None] ** 2 + ax[1][None, :, None] ** 2 + ax[2][None, None, :] ** 2) / r
        sub = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        better = d < best[sub]
        best[sub][better] = d[better]
        owner[sub][better] = k + 1
    r_own = np.where(owner > 0, radii[np.maximum(owner - 1, 0)], 1.0)
    dist_out = (best - 1.0) * r_own  # approx. distance outside the nearest sphere, voxels
    labels = np.full(shape, PORE, dtype=np.uint8)
    labels[dist_out < cbd_shell_vox] = CBD
    labels[best < 1.0] = ACTIVE
    particles = np.where(labels == ACTIVE, owner, 0).astype(np.int32)
    vol = Volume(labels, voxel_um, {"generator": "sphere_pack_volume", "seed": seed, "n_spheres": n_spheres})
    return vol, particles
