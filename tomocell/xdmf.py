"""XDMF 3 files that every tool reads: meshio, pyvista (VTK's XDMF reader), ParaView and DOLFINx.

DOLFINx's own ``XDMFFile`` puts a mesh and its tag tables in several grids of one file, and its
function files point at the mesh through XPath references: meshio reads neither ("Only supports
one grid right now") and VTK's reader crashed on the function files. tomocell therefore writes its
files for people with this module, in the plainest form of the format:

* one **Uniform** grid per file (mesh, tags as cell attributes), or one **Temporal** collection of
  Uniform grids (a time series, one grid per snapshot), never several top-level grids;
* every grid names its Geometry and Topology data explicitly (no XPath/XInclude);
* heavy data in HDF5 files beside the XDMF (written here with h5py, which is safe next to PETSc
  because :mod:`tomocell._hdf5` binds it to its own HDF5).

DOLFINx reads these files too (``XDMFFile.read_mesh``; ``read_meshtags(mesh, grid_name,
attribute_name)``), in parallel, which is how :mod:`tomocell.meshing.meshfile` reads meshes.
Files appear atomically (temporary name, then rename).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tomocell._hdf5 import load_h5py
from tomocell.atomic import atomic_path

#: XDMF topology names of the cells tomocell writes
CELL_TYPES = {"tetra": ("Tetrahedron", 4), "triangle": ("Triangle", 3)}


@dataclass
class Attribute:
    """One data array on a grid: ``h5`` is ``file.h5:/dataset`` relative to the XDMF file."""

    name: str
    h5: str
    shape: tuple[int, ...]
    dtype: np.dtype
    center: str = "Cell"  # "Cell" or "Node"


@dataclass
class Grid:
    """A Uniform grid: points ``(n, 3)`` and cells ``(m, k)`` stored at the given HDF5 references."""

    name: str
    cell_type: str  # key of CELL_TYPES
    points_h5: str
    n_points: int
    cells_h5: str
    n_cells: int
    attributes: list[Attribute] = field(default_factory=list)
    time: float | None = None


def write_h5(path: str | os.PathLike[str], datasets: Mapping[str, np.ndarray]) -> Path:
    """Write ``{"/group/name": array}`` to an HDF5 file atomically (uncompressed, so VTK reads it)."""
    h5py = load_h5py()
    final = Path(path)
    with atomic_path(final) as tmp, h5py.File(tmp, "w") as f:
        for name, arr in datasets.items():
            f.create_dataset(name, data=np.ascontiguousarray(arr))
    return final


def _data_item(parent: ET.Element, ref: str, shape: Sequence[int], dtype: np.dtype) -> None:
    dt = np.dtype(dtype)
    kind = "Float" if dt.kind == "f" else ("UInt" if dt.kind == "u" else "Int")
    item = ET.SubElement(parent, "DataItem", Dimensions=" ".join(str(int(s)) for s in shape), Format="HDF",
                         NumberType=kind, Precision=str(dt.itemsize))
    item.text = ref


def _grid_element(parent: ET.Element, g: Grid) -> ET.Element:
    xdmf_type, npc = CELL_TYPES[g.cell_type]
    el = ET.SubElement(parent, "Grid", Name=g.name, GridType="Uniform")
    if g.time is not None:
        ET.SubElement(el, "Time", Value=repr(float(g.time)))
    topo = ET.SubElement(el, "Topology", TopologyType=xdmf_type, NumberOfElements=str(g.n_cells),
                         NodesPerElement=str(npc))
    _data_item(topo, g.cells_h5, (g.n_cells, npc), np.dtype(np.int64))
    geo = ET.SubElement(el, "Geometry", GeometryType="XYZ")
    _data_item(geo, g.points_h5, (g.n_points, 3), np.dtype(np.float64))
    for a in g.attributes:
        kind = "Scalar" if len(a.shape) == 1 else "Vector"
        att = ET.SubElement(el, "Attribute", Name=a.name, AttributeType=kind, Center=a.center)
        _data_item(att, a.h5, a.shape, a.dtype)
    return el


def write_xdmf(path: str | os.PathLike[str], grids: Sequence[Grid], *, temporal: str | None = None) -> Path:
    """Write an XDMF 3 file: one Uniform grid, or (``temporal`` = collection name) a time series."""
    root = ET.Element("Xdmf", Version="3.0", attrib={"xmlns:xi": "http://www.w3.org/2001/XInclude"})
    domain = ET.SubElement(root, "Domain")
    if temporal is None:
        if len(grids) != 1:
            raise ValueError("a plain XDMF file holds exactly one grid (use temporal= for a time series)")
        _grid_element(domain, grids[0])
    else:
        coll = ET.SubElement(domain, "Grid", Name=temporal, GridType="Collection", CollectionType="Temporal")
        for g in grids:
            if g.time is None:
                raise ValueError(f"grid {g.name} of a time series has no time")
            _grid_element(coll, g)
    ET.indent(root)
    final = Path(path)
    with atomic_path(final) as tmp:
        tmp.write_text('<?xml version="1.0"?>\n<!DOCTYPE Xdmf SYSTEM "Xdmf.dtd" []>\n'
                       + ET.tostring(root, encoding="unicode") + "\n")
    return final


def read_h5_ref(xdmf_dir: Path, ref: str) -> np.ndarray:
    """Read ``file.h5:/dataset`` (relative to ``xdmf_dir``)."""
    h5py = load_h5py()
    fname, dset = ref.strip().split(":", 1)
    with h5py.File(xdmf_dir / fname, "r") as f:
        return np.asarray(f[dset])
