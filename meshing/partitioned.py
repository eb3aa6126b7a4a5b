"""Read a tomocell mesh file with a chosen graph partitioner (SCOTCH, ParMETIS or KaHIP).

DOLFINx's XDMF reader always partitions with its default (the first partitioner it was built with).
:func:`read_mesh_partitioned` reads the file's arrays on rank 0 instead and builds the distributed mesh
with ``dolfinx.mesh.create_mesh(..., partitioner=create_cell_partitioner(graph.partitioner_NAME(), ...))``,
then distributes the cell, particle and facet tags to their owners (``distribute_entity_data`` +
``meshtags_from_entities``, as dolfinx.io.gmsh does). Same MeshData as
:func:`tomocell.meshing.meshfile.read_mesh`; coordinates in micrometres.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import tomocell.fem  # noqa: F401  (must precede dolfinx/petsc4py imports)
from tomocell.errors import InputError
from tomocell.meshing import tags
from tomocell.meshing.meshfile import MeshData, read_mesh_arrays


def available_partitioners() -> list[str]:
    """The graph partitioners of this DOLFINx build, DOLFINx's default first."""
    import dolfinx.graph

    return [n for n in ("scotch", "parmetis", "kahip") if hasattr(dolfinx.graph, f"partitioner_{n}")]


def cell_partitioner(name: str, ghost_mode: Any) -> Any:
    """DOLFINx cell partitioner using graph partitioner ``name`` (scotch, parmetis, kahip)."""
    import dolfinx.graph
    import dolfinx.mesh

    if name not in available_partitioners():
        raise InputError(f"partitioner {name!r} is not in this DOLFINx build (available: "
                         f"{', '.join(available_partitioners()) or 'none'})")
    return dolfinx.mesh.create_cell_partitioner(getattr(dolfinx.graph, f"partitioner_{name}")(), ghost_mode, 2)


def _tags(msh: Any, dim: int, entities: np.ndarray, values: np.ndarray, name: str) -> Any:
    import dolfinx.graph
    import dolfinx.io
    import dolfinx.mesh

    local, vals = dolfinx.io.distribute_entity_data(msh, dim, entities.astype(np.int64), values.astype(np.int32))
    msh.topology.create_connectivity(dim, 3)
    t = dolfinx.mesh.meshtags_from_entities(msh, dim, dolfinx.graph.adjacencylist(local),
                                            vals.astype(np.int32, copy=False))
    t.name = name
    return t


def read_mesh_partitioned(path_xdmf: str | os.PathLike[str], comm: Any, partitioner: str,
                          ghost_mode: Any = "shared_facet") -> MeshData:
    """The mesh file ``path_xdmf`` distributed over ``comm`` by graph partitioner ``partitioner``."""
    import basix.ufl
    import dolfinx.mesh
    import ufl

    if isinstance(ghost_mode, str):
        ghost_mode = getattr(dolfinx.mesh.GhostMode, ghost_mode)
    part = cell_partitioner(partitioner, ghost_mode)
    a = read_mesh_arrays(path_xdmf) if comm.rank == 0 else None  # (a file error: raised by every rank below)
    if comm.bcast(a is not None and a.facets is None, root=0):
        raise InputError(f"mesh file {path_xdmf}: no facet tags (an old layout): re-mesh it or use read_mesh")
    has_particles = comm.bcast(a is not None and a.particle is not None, root=0)
    empty = np.zeros((0, 4), np.int64)
    cells = a.tets if a is not None else empty
    x = a.points if a is not None else np.zeros((0, 3))
    domain = ufl.Mesh(basix.ufl.element("Lagrange", "tetrahedron", 1, shape=(3,)))
    msh = dolfinx.mesh.create_mesh(comm, cells, domain, x, partitioner=part)
    msh.topology.create_connectivity(2, 3)
    none = np.zeros(0, np.int32)
    ct = _tags(msh, 3, cells, a.phase if a is not None else none, tags.CELL_TAGS_NAME)
    pt = None
    if has_particles:
        pt = _tags(msh, 3, cells, a.particle if a is not None else none, tags.PARTICLE_TAGS_NAME)
    ft = _tags(msh, 2, a.facets if a is not None else np.zeros((0, 3), np.int64),
               a.facet_tags if a is not None else none, tags.FACET_TAGS_NAME)
    return MeshData(mesh=msh, cell_tags=ct, facet_tags=ft, particle_tags=pt)
