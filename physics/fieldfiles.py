"""The fields of a run as one time series per domain, readable by ParaView, pyvista and meshio.

Layout under ``OUT/fields/`` (written by :class:`FieldSeriesWriter`, read by
:func:`read_snapshot_fields`)::

    active.xdmf          time series (one step per DoD snapshot, time = t_s): c_s [mol/m^3], SoL [-]
    solid.xdmf           time series: phi_s [V]
    electrolyte.xdmf     time series: c_e [mol/m^3], phi_e [V] (nodes), N_mag [mol/m^2/s] (cells)
    <domain>_mesh.h5     the domain's tetrahedra (/points in um, /cells), written once per run
    dodNNN/<domain>.h5   the values of snapshot dodNNN (one dataset per field)

Each domain's mesh is gathered on rank 0 in the order of the mesh file's cells (DOLFINx's
``original_cell_index``), with nodes merged by coordinates, so the layout is the same for any
number of MPI ranks and a resumed run (other rank count) appends to the same series. P1 fields are
node data, DG0 fields cell data. The XDMF files are rewritten, atomically, from the snapshot folders
present after every snapshot; each snapshot folder is itself complete or absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.xdmf import Attribute, Grid, read_h5_ref, write_h5, write_xdmf

#: domain -> (node fields, cell fields), in the order they are written
DOMAIN_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "active": (("c_s", "SoL"), ()),
    "solid": (("phi_s",), ()),
    "electrolyte": (("c_e", "phi_e"), ("N_mag",)),
}


@dataclass
class _Layout:
    """Rank 0's map from gathered cell-vertex values to the merged output mesh of one domain."""

    order: np.ndarray  # gathered cell rows sorted by original cell index
    first: np.ndarray  # for each output node, one (cell, vertex) slot of the sorted rows holding it
    cells: np.ndarray  # (m, 4) output tets
    points: np.ndarray  # (n, 3) um


def _gather_rows(comm: Any, orig: np.ndarray, block: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    got = comm.gather((orig, block), root=0)
    if comm.rank != 0:
        return None
    return np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])


class FieldSeriesWriter:
    """Writes one snapshot of every domain's fields (collective over the model's communicator)."""

    def __init__(self, comm: Any, fields_dir: Path):
        self.comm = comm
        self.dir = Path(fields_dir)
        self._layouts: dict[str, _Layout] = {}

    def write(self, snap_dir_tmp: Path, domain: str, submesh: Any, orig_cells: np.ndarray,
              node_fields: dict[str, Any], cell_fields: dict[str, Any]) -> None:
        """Gather ``domain``'s fields and write ``snap_dir_tmp/<domain>.h5`` (+ the domain mesh once).

        ``orig_cells``: for the owned cells of ``submesh``, the index of the parent cell in the mesh
        file. ``node_fields``: P1 functions on ``submesh``; ``cell_fields``: DG0 functions.
        """
        n_own = submesh.topology.index_map(3).size_local
        gdofs = submesh.geometry.dofmaps[0][:n_own]
        coords = submesh.geometry.x[gdofs]  # (n_own, 4, 3) um
        values = []
        for f in node_fields.values():
            # P1 Lagrange: local dof k of a cell is its vertex k, as for the linear geometry
            values.append(f.x.array[f.function_space.dofmap.list[:n_own]][..., None])
        for f in cell_fields.values():
            values.append(np.repeat(f.x.array[f.function_space.dofmap.list[:n_own, 0]][:, None, None], 4, axis=1))
        block = np.concatenate([coords, *values], axis=2)  # (n_own, 4, 3 + k)
        rows = _gather_rows(self.comm, np.asarray(orig_cells[:n_own], np.int64), block)
        if rows is None:
            return
        orig, block = rows
        lay = self._layouts.get(domain)
        if lay is None or len(lay.order) != len(orig):
            # once per process: a resumed run rewrites the same mesh, a rerun on another mesh replaces it
            lay = self._layouts[domain] = _layout(orig, block[..., :3])
            write_h5(self.dir / f"{domain}_mesh.h5", {"/points": lay.points, "/cells": lay.cells})
        flat = block[lay.order].reshape(-1, block.shape[2])
        out: dict[str, np.ndarray] = {}
        for i, name in enumerate(node_fields):
            out[f"/{name}"] = flat[lay.first, 3 + i]
        for j, name in enumerate(cell_fields):
            out[f"/{name}"] = block[lay.order][:, 0, 3 + len(node_fields) + j]
        write_h5(snap_dir_tmp / f"{domain}.h5", out)

    def write_index(self) -> None:
        """Rewrite ``<domain>.xdmf`` from the snapshot folders present (rank 0)."""
        if self.comm.rank == 0:
            write_series_index(self.dir)


def _layout(orig: np.ndarray, coords: np.ndarray) -> _Layout:
    order = np.argsort(orig, kind="stable")
    pts = coords[order].reshape(-1, 3)
    points, first, inverse = np.unique(pts, axis=0, return_index=True, return_inverse=True)
    return _Layout(order, first, inverse.reshape(-1, 4).astype(np.int64), points)


def _snapshots(fields_dir: Path) -> list[tuple[float, str]]:
    out = []
    for sub in sorted(fields_dir.glob("dod[0-9][0-9][0-9]")):
        meta = sub / "meta.json"
        if sub.is_dir() and meta.is_file():
            try:
                t = float(json.loads(meta.read_text())["t_s"])
            except (KeyError, ValueError, json.JSONDecodeError):
                continue
            out.append((t, sub.name))
    return sorted(out)


def write_series_index(fields_dir: Path) -> None:
    """Write the time-series XDMF of each domain whose mesh exists, one step per complete snapshot."""
    fields_dir = Path(fields_dir)
    snaps = _snapshots(fields_dir)
    for domain, (nodes, cells) in DOMAIN_FIELDS.items():
        mesh_h5 = fields_dir / f"{domain}_mesh.h5"
        present = [(t, lab) for t, lab in snaps if (fields_dir / lab / f"{domain}.h5").is_file()]
        if not mesh_h5.is_file() or not present:
            continue
        pts_shape = _shape(mesh_h5, "/points")
        cell_shape = _shape(mesh_h5, "/cells")
        grids = []
        for t, lab in present:
            ref = f"{lab}/{domain}.h5"
            attrs = [Attribute(n, f"{ref}:/{n}", (pts_shape[0],), np.dtype(np.float64), "Node") for n in nodes]
            attrs += [Attribute(c, f"{ref}:/{c}", (cell_shape[0],), np.dtype(np.float64), "Cell") for c in cells]
            grids.append(Grid(f"{domain}_{lab}", "tetra", f"{mesh_h5.name}:/points", pts_shape[0],
                              f"{mesh_h5.name}:/cells", cell_shape[0], attrs, time=t))
        write_xdmf(fields_dir / f"{domain}.xdmf", grids, temporal=f"{domain}_fields")


def _shape(h5: Path, dset: str) -> tuple[int, ...]:
    from tomocell._hdf5 import load_h5py

    with load_h5py().File(h5, "r") as f:
        return tuple(f[dset].shape)


def read_snapshot_fields(fields_dir: Path, label: str, domain: str) -> tuple[np.ndarray, np.ndarray,
                                                                                 dict[str, np.ndarray],
                                                                                 dict[str, np.ndarray]]:
    """(points um, tets, node data, cell data) of one snapshot of one domain."""
    fields_dir = Path(fields_dir)
    nodes, cells = DOMAIN_FIELDS[domain]
    mesh_ref, snap_ref = f"{domain}_mesh.h5", f"{label}/{domain}.h5"
    pts = read_h5_ref(fields_dir, f"{mesh_ref}:/points")
    tets = read_h5_ref(fields_dir, f"{mesh_ref}:/cells")
    point_data = {n: read_h5_ref(fields_dir, f"{snap_ref}:/{n}") for n in nodes}
    cell_data = {c: read_h5_ref(fields_dir, f"{snap_ref}:/{c}") for c in cells}
    return pts, tets, point_data, cell_data
