"""Load a ``tomocell simulate`` run directory into typed objects (layout: :mod:`tomocell.physics.outputs`).

:func:`load_run` reads ``run.json``, ``timeseries.csv`` and ``particles.csv`` and lists the DoD
snapshots under ``fields/``; a snapshot's interface table and XDMF fields are read on demand
(:class:`Snapshot`). XDMF files written by DOLFINx are read with h5py, following the attribute
pointers in the XDMF XML (node- or cell-centred), so no VTK/meshio XDMF reader is needed.

Depth from the separator: mesh ``z`` is the height above the current collector and the electrode
occupies ``0 <= z <= L`` (:mod:`tomocell.meshing.tags`), so depth = ``L - z`` (negative inside the
separator). ``L`` is taken, in order, from ``run.json`` (``results.electrode_thickness_um`` or
``parameters.electrode_thickness_um``, if the physics records it), from the mesh file named in
``run.json`` inputs (lowest node of the separator cells), from the built-in ``box:`` test cell's
default, or (last resort, with a warning) from the top of the solid phase.
"""

from __future__ import annotations

import csv
import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.log import get_logger

log = get_logger("studies.analysis_run")

SNAPSHOT_RE = re.compile(r"^dod(\d{3})$")
FIELD_KINDS = ("active", "solid", "electrolyte")
FARADAY = 96485.33212  # C/mol (CODATA 2018, exact product N_A e)


def dod_label(dod: float) -> str:
    """``0.5`` -> ``dod050`` (the physics' folder naming)."""
    return f"dod{int(round(100 * float(dod))):03d}"


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """CSV with a header -> dict of columns (float arrays where every value parses, else str arrays)."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise InputError(f"{path} is empty")
    head, body = rows[0], rows[1:]
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(head):
        vals = [r[j] if j < len(r) else "" for r in body]
        try:
            cols[name.strip()] = np.array([float(v) for v in vals], dtype=float)
        except ValueError:
            cols[name.strip()] = np.array(vals, dtype=object)
    return cols


@dataclass
class FieldData:
    """One XDMF file of a snapshot: tetrahedral mesh (um) with node- and cell-centred functions (SI)."""

    points_um: np.ndarray  #: (N, 3)
    cells: np.ndarray  #: (M, 4) node indices
    point_data: dict[str, np.ndarray]
    cell_data: dict[str, np.ndarray]

    def cell_centres_um(self) -> np.ndarray:
        return self.points_um[self.cells].mean(axis=1)

    def cell_volumes_um3(self) -> np.ndarray:
        p = self.points_um[self.cells]
        return np.abs(np.einsum("ij,ij->i", np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), p[:, 3] - p[:, 0])) / 6.0

    def cell_values(self, name: str) -> np.ndarray:
        """Cell values of ``name``: cell data as is, node data averaged over the 4 nodes."""
        if name in self.cell_data:
            return self.cell_data[name]
        if name in self.point_data:
            return self.point_data[name][self.cells].mean(axis=1)
        raise InputError(f"field {name!r} not in this file (has {sorted({**self.point_data, **self.cell_data})})")


def read_xdmf_fields(path: Path) -> FieldData:
    """Read a DOLFINx XDMF file (mesh + functions, last time step of each function) with h5py."""
    import h5py

    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"cannot read XDMF {path}: {exc}") from None

    def item(elem: ET.Element) -> tuple[Path, str]:
        text = (elem.text or "").strip()
        if ":" not in text:
            raise InputError(f"{path}: unsupported XDMF DataItem {text!r} (expected HDF)")
        fname, dset = text.split(":", 1)
        return path.parent / fname, dset

    grids = [g for g in root.iter("Grid") if g.get("GridType") == "Uniform"]
    mesh_grid = next((g for g in grids if g.find("Topology") is not None and g.find("Topology").find("DataItem") is not None), None)
    if mesh_grid is None:
        raise InputError(f"{path}: no mesh grid")
    topo_file, topo_set = item(mesh_grid.find("Topology").find("DataItem"))
    geo_file, geo_set = item(mesh_grid.find("Geometry").find("DataItem"))
    point_data: dict[str, np.ndarray] = {}
    cell_data: dict[str, np.ndarray] = {}
    try:
        with h5py.File(geo_file, "r") as f:
            pts = np.asarray(f[geo_set], dtype=float)
        with h5py.File(topo_file, "r") as f:
            cells = np.asarray(f[topo_set], dtype=np.int64)
        for g in grids:
            for att in g.findall("Attribute"):
                fpath, dset = item(att.find("DataItem"))
                with h5py.File(fpath, "r") as f:
                    arr = np.asarray(f[dset], dtype=float)
                arr = arr[:, 0] if arr.ndim == 2 and arr.shape[1] == 1 else arr
                # later time steps overwrite earlier ones: the last one is kept
                (cell_data if att.get("Center") == "Cell" else point_data)[att.get("Name")] = arr
    except (OSError, KeyError) as exc:
        raise InputError(f"cannot read the HDF5 data of {path}: {exc}") from None
    if pts.ndim != 2 or pts.shape[1] < 3 or cells.ndim != 2 or cells.shape[1] != 4:
        raise InputError(f"{path}: expected a tetrahedral mesh in 3D, got points {pts.shape}, cells {cells.shape}")
    return FieldData(pts[:, :3], cells, point_data, cell_data)


def read_snapshot(snapshot_dir: Path, kind: str) -> FieldData:
    """The ``kind`` fields of snapshot folder ``fields/dodNNN`` (time-series layout, or the per-snapshot
    XDMF files of tomocell 0.1)."""
    from tomocell.physics.fieldfiles import read_snapshot_fields

    d = Path(snapshot_dir)
    if (d / f"{kind}.h5").is_file() and (d.parent / f"{kind}_mesh.h5").is_file():
        try:
            pts, cells, pdata, cdata = read_snapshot_fields(d.parent, d.name, kind)
        except (OSError, KeyError) as exc:
            raise InputError(f"cannot read the {kind} fields of {d}: {exc}") from None
        return FieldData(np.asarray(pts, float), np.asarray(cells, np.int64),
                         {k: np.asarray(v, float) for k, v in pdata.items()},
                         {k: np.asarray(v, float) for k, v in cdata.items()})
    legacy = d / f"{kind}.xdmf"
    if not legacy.exists():
        raise InputError(f"{d}: no {kind} fields ({kind}.h5 or {kind}.xdmf)")
    return read_xdmf_fields(legacy)


@dataclass
class Snapshot:
    """One DoD snapshot folder ``fields/dodNNN``."""

    label: str
    dod: float
    path: Path
    meta: dict[str, Any]
    _interface: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _fields: dict[str, FieldData] = field(default_factory=dict, repr=False)

    def interface(self) -> dict[str, np.ndarray]:
        """The reaction-facet table (columns of physics.outputs.INTERFACE_COLUMNS)."""
        if self._interface is None:
            npz, csvp = self.path / "interface.npz", self.path / "interface.csv"
            if npz.exists():
                with np.load(npz) as z:
                    tab = {k: np.asarray(z[k], dtype=float) for k in z.files}
            elif csvp.exists():
                tab = {k: np.asarray(v, dtype=float) for k, v in read_csv_columns(csvp).items()}
            else:
                raise InputError(f"{self.path}: no interface.npz or interface.csv")
            need = ("x_um", "y_um", "z_um", "area_um2", "particle", "J_ct_A_m2", "i0_A_m2", "eta_V", "U_V",
                    "phi_s_V", "phi_e_V", "c_e_mol_m3", "sol")
            missing = [k for k in need if k not in tab]
            if missing:
                raise InputError(f"{self.path}: interface table lacks columns {missing}")
            self._interface = tab
        return self._interface

    def field(self, kind: str) -> FieldData:
        """``active`` (c_s, SoL), ``solid`` (phi_s) or ``electrolyte`` (c_e, phi_e, N_mag)."""
        if kind not in FIELD_KINDS:
            raise InputError(f"unknown field file {kind!r} (choose from {', '.join(FIELD_KINDS)})")
        if kind not in self._fields:
            self._fields[kind] = read_snapshot(self.path, kind)
        return self._fields[kind]


@dataclass
class RunData:
    """A loaded run directory."""

    path: Path
    manifest: dict[str, Any]
    timeseries: dict[str, np.ndarray]
    particles: dict[str, np.ndarray]
    snapshots: dict[str, Snapshot]
    thickness_um: float
    thickness_source: str

    @property
    def name(self) -> str:
        return f"{self.c_rate:g}C"

    @property
    def c_rate(self) -> float:
        v = self.manifest.get("results", {}).get("c_rate", self.manifest.get("parameters", {}).get("c_rate"))
        if v is None:
            raise InputError(f"{self.path}/run.json: no c_rate in results or parameters (a run of --experiment "
                             "has no single C-rate: its steps are in parameters.experiment)")
        return float(v)

    @property
    def results(self) -> dict[str, Any]:
        return self.manifest.get("results", {})

    @property
    def material(self) -> dict[str, Any]:
        """The parameter set as resolved by the physics (JSON with sources)."""
        return self.manifest.get("parameters", {}).get("parameters", {})

    def mesh_key(self) -> tuple[Any, ...]:
        """What identifies the mesh of the run (to refuse side-by-side comparisons of different meshes)."""
        r = self.results
        mesh_in = self.manifest.get("inputs", {}).get("mesh", {})
        return (mesh_in.get("sha256") or self.manifest.get("parameters", {}).get("mesh"), r.get("cells"),
                round(self.thickness_um, 6))

    def snapshot(self, dod: float) -> Snapshot:
        lab = dod_label(dod)
        if lab not in self.snapshots:
            have = ", ".join(f"{s.dod:.0%}" for s in self.snapshots.values()) or "none"
            raise InputError(f"run {self.path} has no snapshot at {100 * dod:.0f} % DoD (has: {have}); "
                             f"simulate with --dod including {100 * dod:.0f} or analyse another DoD")
        return self.snapshots[lab]

    def depth_um(self, z_um: np.ndarray) -> np.ndarray:
        """Distance from the separator plane (um) of mesh heights ``z_um``."""
        return self.thickness_um - np.asarray(z_um, dtype=float)

    def particle_radius_um(self) -> np.ndarray:
        """Volume-equivalent radius (um) of each particle in particles.csv order."""
        return np.cbrt(3.0 * np.asarray(self.particles["volume_um3"], float) / (4.0 * math.pi))

    def solid_diffusivity(self, sol: np.ndarray | float) -> np.ndarray:
        """D_s (m^2/s) at stoichiometry ``sol`` from the run's parameter set."""
        from tomocell.physics.parameters import Func

        spec = self.material.get("active", {}).get("diffusivity")
        if spec is None:
            raise InputError(f"{self.path}/run.json: parameters lack active.diffusivity")
        f = Func(spec, "active.diffusivity")
        x = np.asarray(sol, dtype=float)
        return np.asarray(f(x=x), dtype=float) * np.ones_like(x)

    def c_max(self) -> float:
        from tomocell.physics.parameters import Func

        spec = self.material.get("active", {}).get("c_max")
        if spec is None:
            raise InputError(f"{self.path}/run.json: parameters lack active.c_max")
        return float(Func(spec, "active.c_max")())

    def active_mass_g(self) -> float | None:
        """Active-material mass (g) implied by the timeseries (capacity_Ah / capacity_mAh_g)."""
        ts = self.timeseries
        q, qg = ts["capacity_Ah"], ts["capacity_mAh_g"]
        ok = qg > 0
        return float(np.median(q[ok] * 1e3 / qg[ok])) if ok.any() else None


def _thickness(run_dir: Path, man: dict[str, Any], snaps: dict[str, Snapshot]) -> tuple[float, str]:
    for where in ("results", "parameters"):
        v = man.get(where, {}).get("electrode_thickness_um")
        if v is not None:
            return float(v), f"run.json {where}.electrode_thickness_um"
    mesh_in = man.get("inputs", {}).get("mesh", {}).get("path")
    if mesh_in and Path(mesh_in).exists():
        L = separator_bottom_um(Path(mesh_in))
        if L is not None:
            return L, f"separator cells of {mesh_in}"
    spec = str(man.get("parameters", {}).get("mesh", ""))
    if spec.startswith("box:"):
        import inspect

        from tomocell.physics.synthetic import box_cell

        return float(inspect.signature(box_cell).parameters["thickness_um"].default), "built-in box cell default"
    for s in snaps.values():
        top = float(s.field("solid").points_um[:, 2].max())
        log.warning("%s: electrode thickness not recorded; using the top of the solid phase (%.3f um)", run_dir, top)
        return top, "top of the solid phase (estimate)"
    raise InputError(f"{run_dir}: cannot determine the electrode thickness (no mesh file, no snapshot)")


def separator_bottom_um(mesh_xdmf: Path) -> float | None:
    """Lowest z (um) of the separator cells of a tomocell mesh file (= electrode thickness L)."""
    from tomocell.meshing import tags as T
    from tomocell.meshing.meshfile import read_mesh_arrays

    try:
        m = read_mesh_arrays(mesh_xdmf)
    except InputError:
        return None
    sep = m.tets[m.phase == T.SEPARATOR]
    if sep.size == 0:
        return None
    return float(m.points[np.unique(sep), 2].min())


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory; InputError naming the problem if it is not one."""
    d = Path(run_dir)
    if not d.is_dir():
        raise InputError(f"{d} is not a directory (expected a `tomocell simulate --out` run directory)")
    missing = [n for n in ("run.json", "timeseries.csv") if not (d / n).exists()]
    if missing:
        raise InputError(f"{d} is not a simulation run directory: missing {', '.join(missing)}")
    try:
        man = json.loads((d / "run.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{d}/run.json unreadable: {exc}") from None
    if man.get("stage") not in (None, "simulate"):
        raise InputError(f"{d}/run.json is from stage {man.get('stage')!r}, not a simulation")
    ts = read_csv_columns(d / "timeseries.csv")
    for c in ("t_s", "voltage_V", "current_A", "capacity_Ah", "capacity_mAh_g", "capacity_mAh_cm2"):
        if c not in ts:
            raise InputError(f"{d}/timeseries.csv lacks column {c!r}")
    parts = read_csv_columns(d / "particles.csv") if (d / "particles.csv").exists() else {}
    snaps: dict[str, Snapshot] = {}
    fdir = d / "fields"
    if fdir.is_dir():
        for sub in sorted(fdir.iterdir()):
            m = SNAPSHOT_RE.match(sub.name)
            if not (m and sub.is_dir()):
                continue
            meta = json.loads((sub / "meta.json").read_text()) if (sub / "meta.json").exists() else {}
            snaps[sub.name] = Snapshot(sub.name, float(meta.get("dod", int(m.group(1)) / 100.0)), sub, meta)
    L, src = _thickness(d, man, snaps)
    return RunData(d, man, ts, parts, snaps, L, src)
