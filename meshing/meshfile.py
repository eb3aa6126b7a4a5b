"""Mesh files: XDMF/HDF5 (uncompressed) for DOLFINx, read back in parallel with all tags.

File layout (names from :mod:`tomocell.meshing.tags`): one XDMF file with the grid ``mesh``
(tetrahedra, coordinates in micrometres), the cell tags ``cell_tags`` (phase), the second cell field
``particle_tags`` and the facet tags ``facet_tags``; heavy data in the HDF5 file beside it.

:func:`write_mesh` builds the DOLFINx mesh on rank 0 alone (``COMM_SELF``) and writes it with
``dolfinx.io.XDMFFile``; :func:`read_mesh` reads it on any number of ranks, partitions it with ghost
mode ``shared_facet`` (needed by the interface integrals of the physics) and returns the tags on
that mesh. Files appear atomically (written in a temporary directory, then moved into place).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import tomocell.fem  # noqa: F401  (must precede dolfinx/petsc4py imports)
from tomocell.errors import InputError
from tomocell.meshing import tags
from tomocell.meshing.tetmesh import TetMesh


@dataclasses.dataclass
class MeshData:
    """A mesh read with :func:`read_mesh`: the DOLFINx mesh and its three tag fields."""

    mesh: Any  # dolfinx.mesh.Mesh
    cell_tags: Any  # dolfinx.mesh.MeshTags (dim 3), phase tags, covers owned and ghost cells
    facet_tags: Any  # dolfinx.mesh.MeshTags (dim 2)
    particle_tags: Any | None  # dolfinx.mesh.MeshTags (dim 3) or None if the file has none


def _dolfinx_mesh_serial(points: np.ndarray, tets: np.ndarray):
    """A DOLFINx tet mesh on COMM_SELF with the given nodes and cells (input order kept by index maps)."""
    import basix.ufl
    from mpi4py import MPI

    import dolfinx.mesh

    element = basix.ufl.element("Lagrange", "tetrahedron", 1, shape=(3,))
    return dolfinx.mesh.create_mesh(MPI.COMM_SELF, np.asarray(tets, dtype=np.int64), element,
                                    np.asarray(points, dtype=np.float64))


def _cell_meshtags(msh, values_input_order: np.ndarray, name: str):
    import dolfinx.mesh

    n_local = msh.topology.index_map(3).size_local + msh.topology.index_map(3).num_ghosts
    orig = np.asarray(msh.topology.original_cell_index, dtype=np.int64)[:n_local]
    mt = dolfinx.mesh.meshtags(msh, 3, np.arange(n_local, dtype=np.int32),
                               np.asarray(values_input_order, dtype=np.int32)[orig])
    mt.name = name
    return mt


def _facet_meshtags(msh, facets_input_nodes: np.ndarray, values: np.ndarray, name: str):
    import dolfinx.graph
    import dolfinx.io
    import dolfinx.mesh

    msh.topology.create_connectivity(2, 3)
    ents, vals = dolfinx.io.distribute_entity_data(
        msh, 2, np.asarray(facets_input_nodes, dtype=np.int64), np.asarray(values, dtype=np.int32)
    )
    mt = dolfinx.mesh.meshtags_from_entities(
        msh, 2, dolfinx.graph.adjacencylist(ents), np.asarray(vals, dtype=np.int32)
    )
    mt.name = name
    return mt


def write_mesh(
    path_xdmf: str | os.PathLike[str],
    mesh_or_points: TetMesh | np.ndarray,
    tets: np.ndarray | None = None,
    cell_tags: np.ndarray | None = None,
    facet_tags: tuple[np.ndarray, np.ndarray] | None = None,
    particle_tags: np.ndarray | None = None,
    *,
    comm: Any = None,
) -> Path:
    """Write a tagged tet mesh to ``path_xdmf`` (+ ``.h5`` beside it), uncompressed.

    Call either ``write_mesh(path, tetmesh)`` or
    ``write_mesh(path, points, tets, cell_tags, (facets, facet_values), particle_tags=None)`` with
    global arrays (points in micrometres). Collective over ``comm`` (default COMM_WORLD): rank 0
    writes, the others wait. Returns the XDMF path.
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD if comm is None else comm
    if isinstance(mesh_or_points, TetMesh):
        m = mesh_or_points
        points, tets, cell_tags = m.points, m.tets, m.cell_tags
        facet_tags = (m.facets, m.facet_tags)
        particle_tags = m.particle_tags if particle_tags is None else particle_tags
    else:
        points = mesh_or_points
        if tets is None or cell_tags is None or facet_tags is None:
            raise InputError("write_mesh needs points, tets, cell_tags and (facets, facet_values)")
    final = Path(path_xdmf)
    if final.suffix != ".xdmf":
        raise InputError(f"mesh file must end in .xdmf, got {final}")
    err: str | None = None
    if comm.rank == 0:
        try:
            _write_serial(final, points, tets, cell_tags, facet_tags, particle_tags)
        except Exception as exc:  # reported on every rank below, then re-raised on rank 0
            err = f"{type(exc).__name__}: {exc}"
            comm.bcast(err, root=0)
            raise
    err = comm.bcast(err, root=0)
    if err is not None:
        raise RuntimeError(f"writing {final} failed on rank 0: {err}")
    return final


def _write_serial(final: Path, points, tets, cell_tags, facet_tags, particle_tags) -> None:
    import dolfinx.io

    points = np.asarray(points, dtype=np.float64)
    tets = np.asarray(tets, dtype=np.int64)
    cell_tags = np.asarray(cell_tags, dtype=np.int32)
    facets, fvals = facet_tags
    if cell_tags.shape != (len(tets),):
        raise InputError("cell_tags must have one value per tet")
    msh = _dolfinx_mesh_serial(points, tets)
    msh.name = tags.MESH_NAME
    ct = _cell_meshtags(msh, cell_tags, tags.CELL_TAGS_NAME)
    ft = _facet_meshtags(msh, facets, fvals, tags.FACET_TAGS_NAME)
    pt = _cell_meshtags(msh, particle_tags, tags.PARTICLE_TAGS_NAME) if particle_tags is not None else None
    final.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{final.stem}.", suffix=".partial", dir=final.parent))
    try:
        tmp_x = tmpdir / final.name
        with dolfinx.io.XDMFFile(msh.comm, str(tmp_x), "w", encoding=dolfinx.io.XDMFFile.Encoding.HDF5) as f:
            f.write_mesh(msh)
            f.write_meshtags(ct, msh.geometry)
            f.write_meshtags(ft, msh.geometry)
            if pt is not None:
                f.write_meshtags(pt, msh.geometry)
        # the .xdmf names its .h5 by basename, so moving both keeps the reference valid
        os.replace(tmp_x.with_suffix(".h5"), final.with_suffix(".h5"))
        os.replace(tmp_x, final)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def read_mesh(path_xdmf: str | os.PathLike[str], comm: Any = None, ghost_mode: Any = "shared_facet") -> MeshData:
    """Read a mesh written by :func:`write_mesh`, partitioned over ``comm`` (default COMM_WORLD).

    ``ghost_mode``: a ``dolfinx.mesh.GhostMode`` or its name ("shared_facet" default, "none").
    Cell tags cover owned and ghost cells; facet tags are the file's tagged facets present on this
    rank. Coordinates are micrometres.
    """
    from mpi4py import MPI

    import dolfinx.io
    import dolfinx.mesh

    comm = MPI.COMM_WORLD if comm is None else comm
    p = Path(path_xdmf)
    if not p.is_file() or not p.with_suffix(".h5").is_file():
        raise InputError(f"mesh file {p} (and its .h5) not found")
    if isinstance(ghost_mode, str):
        try:
            ghost_mode = getattr(dolfinx.mesh.GhostMode, ghost_mode)
        except AttributeError:
            raise InputError(f"unknown ghost mode {ghost_mode!r} (shared_facet or none)") from None
    with dolfinx.io.XDMFFile(comm, str(p), "r") as f:
        msh = f.read_mesh(ghost_mode=ghost_mode, name=tags.MESH_NAME)
        msh.topology.create_connectivity(2, 3)
        ct = f.read_meshtags(msh, tags.CELL_TAGS_NAME)
        ft = f.read_meshtags(msh, tags.FACET_TAGS_NAME)
        try:
            pt = f.read_meshtags(msh, tags.PARTICLE_TAGS_NAME)
        except RuntimeError:
            pt = None
    return MeshData(mesh=msh, cell_tags=ct, facet_tags=ft, particle_tags=pt)
