"""Constructed ``tomocell simulate`` run directories with known answers, for the analysis tests.

Writes the documented layout (tomocell.physics.outputs): run.json, timeseries.csv, particles.csv and
fields/dodNNN/{active,solid,electrolyte}.xdmf/.h5 (DOLFINx XDMF layout), interface.npz/.csv, meta.json.
Geometry: box [0, LX] x [0, LY] x [0, L + LS] um; the 'active' and 'solid' files cover the electrode
block z <= L (its only non-wall face is the separator plane z = L, so distance to the particle surface
= depth from the separator), the 'electrolyte' file the whole box.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

LX, LY, L, LS = 8.0, 8.0, 20.0, 6.0
D_S, C_MAX = 1e-14, 50000.0
INTERFACE_COLUMNS = ("x_um", "y_um", "z_um", "area_um2", "particle", "J_ct_A_m2", "i0_A_m2", "eta_V", "U_V",
                     "phi_s_V", "phi_e_V", "c_s_mol_m3", "c_e_mol_m3", "sol")


def box_tets(nx: int, ny: int, nz: int, z0: float, z1: float) -> tuple[np.ndarray, np.ndarray]:
    """Structured box split into 6 tetrahedra per hexahedron (Kuhn split)."""
    xs, ys, zs = np.linspace(0, LX, nx + 1), np.linspace(0, LY, ny + 1), np.linspace(z0, z1, nz + 1)
    P = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), -1).reshape(-1, 3)

    def vid(i, j, k):
        return (i * (ny + 1) + j) * (nz + 1) + k

    cells = []
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                v = [vid(i + a, j + b, k + c) for c in (0, 1) for b in (0, 1) for a in (0, 1)]
                for t in ((0, 1, 3, 7), (0, 1, 5, 7), (0, 2, 3, 7), (0, 2, 6, 7), (0, 4, 5, 7), (0, 4, 6, 7)):
                    cells.append([v[q] for q in t])
    return P, np.asarray(cells, dtype=np.int64)


def write_xdmf(path: Path, points: np.ndarray, cells: np.ndarray, point_data: dict, cell_data: dict, t: float = 1.0) -> None:
    h5 = path.with_suffix(".h5")
    key = f"{t:g}".replace(".", "_")
    with h5py.File(h5, "w") as f:
        f["Mesh/mesh/geometry"] = points
        f["Mesh/mesh/topology"] = cells
        for name, arr in {**point_data, **cell_data}.items():
            f[f"Function/{name}/{key}"] = np.asarray(arr, float).reshape(-1, 1)
    grids = []
    for name, arr in point_data.items():
        grids.append((name, "Node", len(arr)))
    for name, arr in cell_data.items():
        grids.append((name, "Cell", len(arr)))
    parts = ['<?xml version="1.0"?>', '<Xdmf Version="3.0" xmlns:xi="https://www.w3.org/2001/XInclude"><Domain>',
             f'<Grid Name="mesh" GridType="Uniform"><Topology TopologyType="Tetrahedron" NumberOfElements="{len(cells)}" '
             f'NodesPerElement="4"><DataItem Dimensions="{len(cells)} 4" NumberType="Int" Format="HDF">{h5.name}:/Mesh/mesh/topology'
             f'</DataItem></Topology><Geometry GeometryType="XYZ"><DataItem Dimensions="{len(points)} 3" Format="HDF">'
             f'{h5.name}:/Mesh/mesh/geometry</DataItem></Geometry></Grid>']
    for name, centre, n in grids:
        parts.append(f'<Grid Name="{name}" GridType="Collection" CollectionType="Temporal"><Grid Name="{name}" GridType="Uniform">'
                     '<xi:include xpointer="xpointer(/Xdmf/Domain/Grid[@GridType=\'Uniform\'][1]/*[self::Topology or self::Geometry])" />'
                     f'<Time Value="{t}" /><Attribute Name="{name}" AttributeType="Scalar" Center="{centre}">'
                     f'<DataItem Dimensions="{n} 1" Format="HDF">{h5.name}:/Function/{name}/{key}</DataItem></Attribute></Grid></Grid>')
    parts.append("</Domain></Xdmf>")
    path.write_text("\n".join(parts))


def write_csv(path: Path, cols: dict) -> None:
    keys = list(cols)
    n = len(cols[keys[0]])
    lines = [",".join(keys)] + [",".join(repr(float(cols[k][i])) if not isinstance(cols[k][i], str) else cols[k][i]
                                         for k in keys) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def interface_table(n: int = 400, seed: int = 0, n_particles: int = 4) -> dict[str, np.ndarray]:
    """Planted: J_ct = -exp(-eta / 25 mV) (i0 independent of J); spread of phi_e (sd ~80 mV) > U (~25 mV)."""
    rng = np.random.default_rng(seed)
    phi_s = np.full(n, 3.9)
    phi_e = rng.normal(-0.05, 0.08, n)
    U = rng.normal(3.95, 0.025, n)
    eta = phi_s - phi_e - U
    return {"x_um": rng.uniform(0, LX, n), "y_um": rng.uniform(0, LY, n), "z_um": rng.uniform(0.5, L - 0.5, n),
            "area_um2": np.full(n, 0.25), "particle": (np.arange(n) % n_particles + 1).astype(float),
            "J_ct_A_m2": -np.exp(-eta / 0.025), "i0_A_m2": rng.uniform(1.0, 5.0, n), "eta_V": eta, "U_V": U,
            "phi_s_V": phi_s, "phi_e_V": phi_e, "c_s_mol_m3": np.full(n, 0.6 * C_MAX), "c_e_mol_m3": np.full(n, 1000.0),
            "sol": np.full(n, 0.6)}


def make_run(d: Path, c_rate: float, *, particle_sol: dict[str, np.ndarray] | None = None,
             volumes_um3: np.ndarray | None = None, iface: dict[str, np.ndarray] | None = None,
             c_e: Callable[[np.ndarray], np.ndarray] = lambda depth: 1000.0 - 10.0 * depth,
             sol_field: Callable[[np.ndarray], np.ndarray] = lambda depth: 0.5 + 0.01 * depth,
             voltage: np.ndarray | None = None, capacity_mAh_g: np.ndarray | None = None,
             dods: tuple[float, ...] = (0.5,), cells: int = 1000, n: tuple[int, int, int] = (2, 2, 10),
             mesh_file: bool = False) -> Path:
    """Write a run directory; ``particle_sol``: {'sol_dod050': values per particle}."""
    d.mkdir(parents=True, exist_ok=True)
    if voltage is None:
        voltage = np.array([4.2, 4.0, 3.9, 3.8, 3.5, 3.0])
    if capacity_mAh_g is None:
        capacity_mAh_g = np.array([0.0, 20.0, 50.0, 90.0, 120.0, 130.0])
    mass_g = 2e-9
    area_cm2 = 1e-6
    q_ah = capacity_mAh_g * mass_g / 1e3
    nrow = voltage.size
    ts = {"step": np.arange(nrow), "t_s": np.linspace(0, 3600 / c_rate, nrow), "dt_s": np.r_[0, np.full(nrow - 1, 1.0)],
          "segment": ["discharge"] * nrow, "voltage_V": voltage, "current_A": np.r_[0.0, np.full(nrow - 1, 1e-10)],
          "capacity_Ah": q_ah, "capacity_mAh_g": capacity_mAh_g, "capacity_mAh_cm2": q_ah * 1e3 / area_cm2,
          "dod": capacity_mAh_g / 160.0}
    write_csv(d / "timeseries.csv", ts)
    npart = 4 if particle_sol is None else len(next(iter(particle_sol.values())))
    vols = np.full(npart, 4 / 3 * np.pi * 2.0**3) if volumes_um3 is None else volumes_um3
    sols = particle_sol or {f"sol_dod{int(round(100 * x)):03d}": np.full(npart, 0.6) for x in dods}
    rng = np.random.default_rng(1)
    write_csv(d / "particles.csv", {"particle": np.arange(1, npart + 1), "volume_um3": vols,
                                    "centroid_x_um": rng.uniform(0, LX, npart), "centroid_y_um": rng.uniform(0, LY, npart),
                                    "centroid_z_um": np.linspace(1, L - 1, npart), **sols})
    nx, ny, nz = n
    P_a, C_a = box_tets(nx, ny, nz, 0.0, L)
    P_e, C_e = box_tets(nx, ny, nz + round(nz * LS / L), 0.0, L + LS)  # layers aligned with z = L
    for x in dods:
        f = d / "fields" / f"dod{int(round(100 * x)):03d}"
        f.mkdir(parents=True, exist_ok=True)
        depth_a = L - P_a[:, 2]
        s = sol_field(depth_a)
        write_xdmf(f / "active.xdmf", P_a, C_a, {"c_s": s * C_MAX, "SoL": s}, {})
        write_xdmf(f / "solid.xdmf", P_a, C_a, {"phi_s": np.full(len(P_a), 3.9)}, {})
        depth_e = L - P_e[:, 2]
        write_xdmf(f / "electrolyte.xdmf", P_e, C_e, {"c_e": c_e(depth_e), "phi_e": -0.001 * depth_e},
                   {"N_mag": np.full(len(C_e), 1e-4)})
        tab = iface if iface is not None else interface_table(n_particles=npart)
        np.savez(f / "interface.npz", **tab)
        write_csv(f / "interface.csv", {k: tab[k] for k in INTERFACE_COLUMNS})
        (f / "meta.json").write_text(json.dumps({"t_s": 100.0, "dod": x, "voltage_V": 3.8, "capacity_Ah": 1e-11}))
    inputs = {}
    if mesh_file:
        inputs["mesh"] = {"path": str(write_mesh_file(d / "mesh.xdmf", P_e, C_e, npart)), "sha256": "constructed"}
    run = {"tool": "tomocell", "stage": "simulate", "inputs": inputs,
           "parameters": {"mesh": "constructed", "c_rate": c_rate,
                          "parameters": {"voltage_min": {"value": 3.0}, "active": {"c_max": {"value": C_MAX},
                                                                                    "diffusivity": {"value": D_S}}}},
           "results": {"c_rate": c_rate, "cells": cells, "utilisation": 0.8}}
    if not mesh_file:
        run["results"]["electrode_thickness_um"] = L
    (d / "run.json").write_text(json.dumps(run))
    return d


def write_mesh_file(path: Path, P: np.ndarray, C: np.ndarray, npart: int) -> Path:
    """A tomocell mesh file (HDF5 part): cells below z = L active, particle k = k-th slab in x; separator above."""
    cz = P[C].mean(axis=1)
    tag = np.where(cz[:, 2] < L, 1, 4)
    part = np.where(tag == 1, 1 + np.minimum((cz[:, 0] / LX * npart).astype(int), npart - 1), 0)
    order = np.random.default_rng(0).permutation(len(C))  # the particle table lists cells in another order
    with h5py.File(path.with_suffix(".h5"), "w") as f:
        f["Mesh/mesh/geometry"] = P
        f["Mesh/mesh/topology"] = C
        f["MeshTags/cell_tags/topology"] = C
        f["MeshTags/cell_tags/Values"] = tag.reshape(-1, 1)
        f["MeshTags/particle_tags/topology"] = C[order][:, ::-1]
        f["MeshTags/particle_tags/Values"] = part[order].reshape(-1, 1)
    path.write_text("<Xdmf/>")
    return path
