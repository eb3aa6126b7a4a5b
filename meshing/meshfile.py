"""Mesh files: one XDMF/HDF5 pair that DOLFINx (in parallel), meshio, pyvista and ParaView all read.

File layout (names from :mod:`tomocell.meshing.tags`, written with :mod:`tomocell.xdmf`)::

    mesh.xdmf         one grid ``mesh``: the tetrahedra (coordinates in micrometres) with the cell
                      attributes ``cell_tags`` (phase) and ``particle_tags`` (particle label, 0 outside)
    mesh.h5           /mesh/points, /mesh/tets, /mesh/phase, /mesh/particle (the mesher's order)
    mesh_facets.xdmf  one grid ``facet_tags``: the tagged boundary and interface triangles on the same
                      nodes (referenced in mesh.h5), with the attribute ``facet_tags``
    mesh_facets.h5    /facets/triangles, /facets/tag

``meshio.read("mesh.xdmf")`` gives the tets with ``cell_data["cell_tags"]``; ``pyvista.read`` and
ParaView (XDMF3 reader) show the same, and ``mesh_facets.xdmf`` the interfaces. :func:`write_mesh`
writes on rank 0; :func:`read_mesh` reads on any number of ranks, partitions with ghost mode
``shared_facet`` (needed by the interface integrals of the physics) and returns the tags on that
mesh. It also reads the layout of tomocell 0.1 (DOLFINx's multi-grid file). Files appear atomically.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

import tomocell.fem  # noqa: F401  (must precede dolfinx/petsc4py imports)
from tomocell.errors import InputError
from tomocell.mpi import PARTITIONERS
from tomocell.meshing import tags
from tomocell.meshing.tetmesh import TetMesh
from tomocell.xdmf import Attribute, Grid, write_h5, write_xdmf


@dataclasses.dataclass
class MeshData:
    """A mesh read with :func:`read_mesh`: the DOLFINx mesh and its three tag fields."""

    mesh: Any  # dolfinx.mesh.Mesh
    cell_tags: Any  # dolfinx.mesh.MeshTags (dim 3), phase tags, covers owned and ghost cells
    facet_tags: Any  # dolfinx.mesh.MeshTags (dim 2)
    particle_tags: Any | None  # dolfinx.mesh.MeshTags (dim 3) or None if the file has none


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
    points = np.asarray(points, dtype=np.float64)
    tets = np.asarray(tets, dtype=np.int64)
    cell_tags = np.asarray(cell_tags, dtype=np.int32)
    facets, fvals = facet_tags
    facets = np.asarray(facets, dtype=np.int64).reshape(-1, 3)
    fvals = np.asarray(fvals, dtype=np.int32).ravel()
    if cell_tags.shape != (len(tets),):
        raise InputError("cell_tags must have one value per tet")
    if fvals.shape != (len(facets),):
        raise InputError("facet tags must have one value per facet")
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"points must be (n, 3), got {points.shape}")
    ptags = (np.zeros(len(tets), np.int32) if particle_tags is None
             else np.asarray(particle_tags, dtype=np.int32))
    if ptags.shape != (len(tets),):
        raise InputError("particle_tags must have one value per tet")
    h5 = final.with_suffix(".h5")
    fh5 = facets_path(final).with_suffix(".h5")
    datasets = {"/mesh/points": points, "/mesh/tets": tets, "/mesh/phase": cell_tags}
    if particle_tags is not None:
        datasets["/mesh/particle"] = ptags
    final.parent.mkdir(parents=True, exist_ok=True)
    # DOLFINx opens the .h5 named like its .xdmf, so the facets have their own file (nodes shared by reference)
    write_h5(fh5, {"/facets/triangles": facets, "/facets/tag": fvals})
    write_h5(h5, datasets)
    n, m = len(points), len(tets)
    attrs = [Attribute(tags.CELL_TAGS_NAME, f"{h5.name}:/mesh/phase", (m,), np.dtype(np.int32))]
    if particle_tags is not None:
        attrs.append(Attribute(tags.PARTICLE_TAGS_NAME, f"{h5.name}:/mesh/particle", (m,), np.dtype(np.int32)))
    cells = Grid(tags.MESH_NAME, "tetra", f"{h5.name}:/mesh/points", n, f"{h5.name}:/mesh/tets", m, attrs)
    tris = Grid(tags.FACET_TAGS_NAME, "triangle", f"{h5.name}:/mesh/points", n, f"{fh5.name}:/facets/triangles",
                len(facets), [Attribute(tags.FACET_TAGS_NAME, f"{fh5.name}:/facets/tag", (len(facets),),
                                        np.dtype(np.int32))])
    # the facet file first: a mesh.xdmf that exists always has its facets beside it
    write_xdmf(facets_path(final), [tris])
    write_xdmf(final, [cells])


def facets_path(mesh_xdmf: str | os.PathLike[str]) -> Path:
    """The facet-tag file that goes with a mesh file: ``mesh.xdmf`` -> ``mesh_facets.xdmf``."""
    p = Path(mesh_xdmf)
    return p.with_name(f"{p.stem}_facets.xdmf")


def _is_legacy(path: Path) -> bool:
    """True for a mesh file of tomocell < 0.2 (DOLFINx layout: tag tables as extra grids in one file)."""
    import xml.etree.ElementTree as ET

    try:
        domain = ET.parse(path).getroot().find("Domain")
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"mesh file {path} is not readable XDMF: {exc}") from None
    return domain is not None and len(domain.findall("Grid")) > 1


def read_mesh(path_xdmf: str | os.PathLike[str], comm: Any = None, ghost_mode: Any = "shared_facet",
              partitioner: str = "default") -> MeshData:
    """Read a mesh written by :func:`write_mesh`, partitioned over ``comm`` (default COMM_WORLD).

    ``ghost_mode``: a ``dolfinx.mesh.GhostMode`` or its name ("shared_facet" default, "none").
    ``partitioner``: the graph partitioner of the cells over the ranks, one of :data:`tomocell.mpi.PARTITIONERS`
    ("default": DOLFINx's own choice, SCOTCH in the pip and conda-forge builds); one this DOLFINx
    build lacks is refused, naming those it has.
    Cell tags cover owned and ghost cells; facet tags are the file's tagged facets present on this
    rank. Coordinates are micrometres.
    """
    from mpi4py import MPI

    import dolfinx.io
    import dolfinx.mesh

    comm = MPI.COMM_WORLD if comm is None else comm
    p = Path(path_xdmf)
    check_xdmf(p)
    if isinstance(ghost_mode, str):
        try:
            ghost_mode = getattr(dolfinx.mesh.GhostMode, ghost_mode)
        except AttributeError:
            raise InputError(f"unknown ghost mode {ghost_mode!r} (shared_facet or none)") from None
    part = cell_partitioner(partitioner, ghost_mode)
    try:
        return _read_mesh_dolfinx(p, comm, ghost_mode, part)
    except RuntimeError as exc:  # DOLFINx/HDF5: missing grid, truncated or corrupt heavy data
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"mesh file {p} could not be read (corrupt, truncated or not written by "
                         f"`tomocell mesh`): {first}") from None


def available_partitioners() -> list[str]:
    """The names of :data:`PARTITIONERS` this DOLFINx build has."""
    import dolfinx.graph

    return ["default"] + [n for n in PARTITIONERS[1:] if hasattr(dolfinx.graph, f"partitioner_{n}")]


def cell_partitioner(name: str, ghost_mode: Any) -> Any:
    """A DOLFINx cell partitioner for ``name`` (None for "default": read_mesh's own)."""
    import dolfinx.graph
    import dolfinx.mesh

    if name == "default":
        return None
    if name not in available_partitioners():
        raise InputError(f"partitioner {name!r} is not available in this DOLFINx build "
                         f"(available: {', '.join(available_partitioners())})")
    return dolfinx.mesh.create_cell_partitioner(getattr(dolfinx.graph, f"partitioner_{name}")(), ghost_mode, 2)


def _read_mesh_partitioned(f: Any, ghost_mode: Any, partitioner: Any) -> Any:
    """``XDMFFile.read_mesh`` with a chosen partitioner: DOLFINx 0.11's read_mesh has no partitioner
    argument, so this is its affine-Lagrange branch (the only cells tomocell writes) with ours."""
    if partitioner is None:
        return f.read_mesh(ghost_mode=ghost_mode, name=tags.MESH_NAME)
    import basix
    import basix.ufl
    import ufl
    from dolfinx import cpp
    from dolfinx.mesh import Mesh

    xpath = "/Xdmf/Domain"
    shape, degree = f.read_cell_type(tags.MESH_NAME, xpath)
    cells = f.read_topology_data(tags.MESH_NAME, xpath)
    x = f.read_geometry_data(tags.MESH_NAME, xpath)
    el = basix.ufl.element("Lagrange", shape.name, degree, basix.LagrangeVariant.unset, shape=(x.shape[1],))
    cmap = cpp.fem.CoordinateElement_float64(shape, degree)
    msh = cpp.mesh.create_mesh(f.comm, cells, cmap, x, partitioner, 2)
    msh.name = tags.MESH_NAME
    return Mesh(msh, ufl.Mesh(el))


def _read_mesh_dolfinx(p: Path, comm: Any, ghost_mode: Any, partitioner: Any = None) -> MeshData:
    import dolfinx.io

    if _is_legacy(p):
        with dolfinx.io.XDMFFile(comm, str(p), "r") as f:
            msh = _read_mesh_partitioned(f, ghost_mode, partitioner)
            msh.topology.create_connectivity(2, 3)
            ct = f.read_meshtags(msh, tags.CELL_TAGS_NAME)
            ft = f.read_meshtags(msh, tags.FACET_TAGS_NAME)
            try:
                pt = f.read_meshtags(msh, tags.PARTICLE_TAGS_NAME)
            except RuntimeError:
                pt = None
        return MeshData(mesh=msh, cell_tags=ct, facet_tags=ft, particle_tags=pt)
    fp = facets_path(p)
    if not fp.is_file():
        raise InputError(f"mesh file {p}: its facet-tag file {fp.name} is missing")
    check_xdmf(fp)
    with dolfinx.io.XDMFFile(comm, str(p), "r") as f:
        msh = _read_mesh_partitioned(f, ghost_mode, partitioner)
        msh.topology.create_connectivity(2, 3)
        ct = f.read_meshtags(msh, tags.MESH_NAME, attribute_name=tags.CELL_TAGS_NAME)
        try:
            pt = f.read_meshtags(msh, tags.MESH_NAME, attribute_name=tags.PARTICLE_TAGS_NAME)
        except RuntimeError:
            pt = None
    with dolfinx.io.XDMFFile(comm, str(fp), "r") as f:
        ft = f.read_meshtags(msh, tags.FACET_TAGS_NAME, attribute_name=tags.FACET_TAGS_NAME)
    ct.name, ft.name = tags.CELL_TAGS_NAME, tags.FACET_TAGS_NAME
    if pt is not None:
        pt.name = tags.PARTICLE_TAGS_NAME
    return MeshData(mesh=msh, cell_tags=ct, facet_tags=ft, particle_tags=pt)


@dataclasses.dataclass
class MeshArrays:
    """A mesh file's data as numpy arrays (serial, no DOLFINx): coordinates in micrometres."""

    points: np.ndarray  # (n, 3) float
    tets: np.ndarray  # (m, 4) int64
    phase: np.ndarray  # (m,) int32, tags.ACTIVE ...
    particle: np.ndarray | None  # (m,) int32 or None when the file has no particle tags
    facets: np.ndarray | None  # (k, 3) int64 (None: legacy file without facet table read)
    facet_tags: np.ndarray | None  # (k,) int32


def read_mesh_arrays(path_xdmf: str | os.PathLike[str]) -> MeshArrays:
    """Read a tomocell mesh file into numpy arrays on this process alone (any layout tomocell wrote)."""
    from tomocell._hdf5 import load_h5py

    h5py = load_h5py()
    p = Path(path_xdmf)
    h5 = p.with_suffix(".h5")
    if not h5.is_file():
        raise InputError(f"mesh data {h5} not found (the .h5 beside {p.name})")
    try:
        with h5py.File(h5, "r") as f:
            if "mesh" in f:  # tomocell >= 0.2
                pts, tets, phase = (np.asarray(f[f"mesh/{k}"]) for k in ("points", "tets", "phase"))
                part = np.asarray(f["mesh/particle"]) if "mesh/particle" in f else None
                fp = facets_path(p).with_suffix(".h5")
                facets = ftags = None
                if fp.is_file():
                    with h5py.File(fp, "r") as g:
                        facets, ftags = np.asarray(g["facets/triangles"]), np.asarray(g["facets/tag"])
                return MeshArrays(pts.astype(float), tets.astype(np.int64), phase.astype(np.int32),
                                  None if part is None else part.astype(np.int32), facets, ftags)
            # tomocell 0.1: DOLFINx's layout, tag tables list cells by their nodes, in their own order
            pts = np.asarray(f[f"Mesh/{tags.MESH_NAME}/geometry"], float)
            tets = np.asarray(f[f"Mesh/{tags.MESH_NAME}/topology"], np.int64)
            index = {tuple(sorted(c)): i for i, c in enumerate(tets)}

            def cell_values(name: str) -> np.ndarray | None:
                if f"MeshTags/{name}" not in f:
                    return None
                top = np.asarray(f[f"MeshTags/{name}/topology"], np.int64)
                val = np.asarray(f[f"MeshTags/{name}/Values"]).ravel()
                out = np.zeros(len(tets), np.int32)
                for c, v in zip(top, val):
                    i = index.get(tuple(sorted(c)))
                    if i is not None:
                        out[i] = v
                return out

            phase = cell_values(tags.CELL_TAGS_NAME)
            if phase is None:
                raise KeyError(tags.CELL_TAGS_NAME)
            ft = f"MeshTags/{tags.FACET_TAGS_NAME}"
            facets = np.asarray(f[f"{ft}/topology"], np.int64) if ft in f else None
            ftags = np.asarray(f[f"{ft}/Values"]).ravel().astype(np.int32) if ft in f else None
            return MeshArrays(pts, tets, phase, cell_values(tags.PARTICLE_TAGS_NAME), facets, ftags)
    except (OSError, KeyError) as exc:
        raise InputError(f"mesh data {h5} is not a tomocell mesh file: {exc}") from None


def mesh_files(path_xdmf: str | os.PathLike[str]) -> list[Path]:
    """Every file that makes up the mesh ``path_xdmf`` (those present)."""
    p = Path(path_xdmf)
    fp = facets_path(p)
    return [q for q in (p, p.with_suffix(".h5"), fp, fp.with_suffix(".h5")) if q.is_file()]


def mesh_sha256(path_xdmf: str | os.PathLike[str]) -> str:
    """sha256 over every file of the mesh (the .xdmf alone names its data but does not hold it)."""
    import hashlib

    from tomocell.manifest import sha256_of

    h = hashlib.sha256()
    for q in mesh_files(path_xdmf):
        h.update(q.name.encode())
        h.update(sha256_of(q).encode())
    return h.hexdigest()


def write_vtu(path: str | os.PathLike[str], mesh: TetMesh) -> Path:
    """``mesh.vtu`` for pyvista and ParaView (and meshio): the tets with ``cell_tags`` and
    ``particle_tags``, and the tagged triangles with ``facet_tags``, in one unstructured grid (0 where
    a tag does not apply: facet tags on tets, phase on triangles). pyvista cannot read the static
    ``mesh.xdmf`` (its XDMF reader needs a time series: pyvista issue #7801), so this file is its copy.
    Serial (call on one rank)."""
    import meshio

    from tomocell.atomic import atomic_path

    m = mesh
    nt, nf = len(m.tets), len(m.facets)
    part = m.particle_tags if m.particle_tags is not None else np.zeros(nt, np.int32)
    grid = meshio.Mesh(
        np.asarray(m.points, float),
        [("tetra", np.asarray(m.tets, np.int64)), ("triangle", np.asarray(m.facets, np.int64))],
        cell_data={
            tags.CELL_TAGS_NAME: [np.asarray(m.cell_tags, np.int32), np.zeros(nf, np.int32)],
            tags.PARTICLE_TAGS_NAME: [np.asarray(part, np.int32), np.zeros(nf, np.int32)],
            tags.FACET_TAGS_NAME: [np.zeros(nt, np.int32), np.asarray(m.facet_tags, np.int32)],
        },
    )
    final = Path(path)
    with atomic_path(final) as tmp:
        meshio.write(tmp, grid, file_format="vtu")
    return final


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_xdmf(p: Path) -> None:
    """InputError naming the problem if ``p`` is not a readable XDMF file whose HDF5 files exist and
    look like HDF5 (checked before DOLFINx reads it: its errors are C++ exceptions and HDF5 dumps).
    An HDF5 file shorter than what the XDMF says its largest dataset needs is reported as truncated."""
    import xml.etree.ElementTree as ET

    if not p.is_file():
        raise InputError(f"mesh file {p} not found")
    try:
        root = ET.parse(p).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"mesh file {p} is not valid XDMF (XML): {exc}") from None
    if root.tag != "Xdmf" or root.find(".//Grid") is None:
        raise InputError(f"mesh file {p} is XML but holds no XDMF grid: not a mesh written by `tomocell mesh`")
    need: dict[Path, int] = {}
    for item in root.iter("DataItem"):
        if item.get("Format", "").upper() != "HDF" or not (item.text or "").strip():
            continue
        fname = item.text.strip().split(":", 1)[0]
        h5 = (p.parent / fname) if not Path(fname).is_absolute() else Path(fname)
        try:
            dims = [int(v) for v in (item.get("Dimensions") or "0").split()]
            nbytes = int(np.prod(dims)) * int(item.get("Precision", "4"))
        except ValueError:
            nbytes = 0
        need[h5] = max(need.get(h5, 0), nbytes)
    for h5, nbytes in need.items():
        if not h5.is_file():
            raise InputError(f"mesh file {p} refers to {h5.name}, which is missing (copy it beside {p.name})")
        with open(h5, "rb") as fh:
            head = fh.read(8)
        if head != _HDF5_SIGNATURE:
            raise InputError(f"{h5} (heavy data of mesh {p.name}) is not an HDF5 file")
        if h5.stat().st_size < nbytes:
            raise InputError(f"{h5} is truncated: {h5.stat().st_size} bytes, but its largest dataset alone needs "
                             f"{nbytes} (copy it again)")
