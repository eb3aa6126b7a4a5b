"""Small in-memory half-cell meshes for tests, benchmarks and quick runs (no files, no meshing stage).

:func:`box_cell` builds a structured tetrahedral box in micrometres following
:mod:`tomocell.meshing.tags`: the electrode ``0 <= z <= L`` with spherical active particles, CBD
columns connecting each particle to the current collector (z = 0) plus a thin CBD film on the
collector, pore elsewhere, and a separator slab ``L <= z <= L + L_sep`` whose top is the Li face.
Cells are tagged by their midpoints (so the phase boundaries are staircase surfaces of mesh faces);
facets get the boundary and interface tags. Ghost cells are tagged too (GhostMode.shared_facet).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import tomocell.fem  # noqa: F401
from dolfinx import mesh as dmesh
from mpi4py import MPI

from tomocell.errors import InputError
from tomocell.meshing import tags as T
from tomocell.physics.model import MeshInput


def default_particles(size_um: Sequence[float], thickness_um: float) -> list[tuple[tuple[float, float, float], float]]:
    """Three spheres of different sizes in the electrode (centres, radii in micrometres)."""
    lx, ly = size_um
    L = thickness_um
    return [((0.3 * lx, 0.3 * ly, 0.35 * L), 0.26 * min(lx, L)),
            ((0.72 * lx, 0.68 * ly, 0.62 * L), 0.22 * min(lx, L)),
            ((0.3 * lx, 0.75 * ly, 0.78 * L), 0.15 * min(lx, L))]


def box_cell(
    comm: MPI.Comm,
    n: Sequence[int] = (6, 6, 8),
    size_um: Sequence[float] = (10.0, 10.0),
    thickness_um: float = 10.0,
    separator_um: float = 5.0,
    n_sep: int = 2,
    particles: list[tuple[tuple[float, float, float], float]] | None = None,
    cbd_film_um: float | None = None,
) -> MeshInput:
    """Structured box half-cell; ``n`` = cells in x, y and through the electrode thickness."""
    nx, ny, nz = (int(v) for v in n)
    lx, ly = (float(v) for v in size_um)
    L, Ls = float(thickness_um), float(separator_um)
    if min(nx, ny, nz, n_sep) < 1 or min(lx, ly, L, Ls) <= 0:
        raise InputError("box_cell: sizes and cell counts must be positive")
    parts = default_particles((lx, ly), L) if particles is None else particles
    film = (L / nz) if cbd_film_um is None else cbd_film_um
    msh = dmesh.create_box(comm, [np.zeros(3), np.array([lx, ly, L + Ls])], [nx, ny, nz + n_sep],
                           cell_type=dmesh.CellType.tetrahedron, ghost_mode=dmesh.GhostMode.shared_facet)
    # move the z nodes so that z = L is a grid plane: nz layers below, n_sep above
    x = msh.geometry.x
    zt = x[:, 2] / (L + Ls) * (nz + n_sep)
    x[:, 2] = np.where(zt <= nz, zt / nz * L, L + (zt - nz) / n_sep * Ls)
    tdim = 3
    imap = msh.topology.index_map(tdim)
    ncell = imap.size_local + imap.num_ghosts
    cells = np.arange(ncell, dtype=np.int32)
    mid = dmesh.compute_midpoints(msh, tdim, cells)
    tag = np.full(ncell, T.PORE, dtype=np.int32)
    ptag = np.zeros(ncell, dtype=np.int32)
    for k, (c, r) in enumerate(parts, start=1):
        c = np.asarray(c, dtype=float)
        inside = np.sum((mid - c) ** 2, axis=1) <= r * r
        rc = max(0.45 * r, 0.75 * max(lx / nx, ly / ny))  # at least one cell wide: always connected
        col = (np.sum((mid[:, :2] - c[:2]) ** 2, axis=1) <= rc**2) & (mid[:, 2] < c[2]) & ~inside
        tag[col & (tag == T.PORE)] = T.CBD
        tag[inside] = T.ACTIVE
        ptag[inside] = k
    tag[(mid[:, 2] < film) & (tag == T.PORE)] = T.CBD
    tag[mid[:, 2] > L] = T.SEPARATOR
    ptag[tag != T.ACTIVE] = 0
    cell_tags = dmesh.meshtags(msh, tdim, cells, tag)
    particle_tags = dmesh.meshtags(msh, tdim, cells, ptag)
    facet_tags = tag_facets(msh, tag, L + Ls, (lx, ly))
    return MeshInput(msh, cell_tags, facet_tags, particle_tags)


def tag_facets(msh: dmesh.Mesh, cell_tag: np.ndarray, z_top: float, size_xy: tuple[float, float]) -> dmesh.MeshTags:
    """Boundary tags by position and interface tags by the phases of the two cells."""
    fdim = 2
    msh.topology.create_connectivity(fdim, 3)
    f2c = msh.topology.connectivity(fdim, 3)
    fmap = msh.topology.index_map(fdim)
    nf = fmap.size_local + fmap.num_ghosts
    fid = np.arange(nf, dtype=np.int32)
    mid = dmesh.compute_midpoints(msh, fdim, fid)
    offs = f2c.offsets
    nc = np.diff(offs)
    val = np.zeros(nf, dtype=np.int32)
    tol = 1e-9 * max(1.0, z_top)
    ext = nc == 1
    lx, ly = size_xy
    for tagv, cond in ((T.CURRENT_COLLECTOR, np.abs(mid[:, 2]) < tol), (T.LI_FACE, np.abs(mid[:, 2] - z_top) < tol),
                       (T.SIDE_X0, np.abs(mid[:, 0]) < tol), (T.SIDE_X1, np.abs(mid[:, 0] - lx) < tol),
                       (T.SIDE_Y0, np.abs(mid[:, 1]) < tol), (T.SIDE_Y1, np.abs(mid[:, 1] - ly) < tol)):
        val[ext & cond & (val == 0)] = tagv
    two = np.nonzero(nc == 2)[0]
    a = cell_tag[f2c.array[offs[two]]]
    b = cell_tag[f2c.array[offs[two] + 1]]
    for k, (ta, tb) in enumerate(zip(a, b)):
        if ta != tb:
            val[two[k]] = T.INTERFACE_OF_PAIR.get(frozenset((int(ta), int(tb))), 0)
    keep = np.nonzero(val)[0].astype(np.int32)
    return dmesh.meshtags(msh, fdim, keep, val[keep])
