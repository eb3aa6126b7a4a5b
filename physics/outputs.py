"""Outputs of a simulation run: the layout of a run directory (read by the analysis stage, issue 7).

Run directory ``OUT/`` written by :func:`tomocell.physics.discharge.simulate_discharge` /
``tomocell simulate MESH --out OUT``::

    OUT/run.json            run manifest (tomocell.manifest): inputs + sha256, parameters as resolved
                            (with every literature source), versions, timings, MPI size, and
                            ``results`` = DischargeResult.summary() (capacities, final voltage, steps,
                            Newton/Krylov counts, DoD snapshots written, termination reason)
    OUT/timeseries.csv      one row per accepted time step (row 0 = initial state), columns:
        step, t_s, dt_s, segment (discharge|rest|charge_cc|charge_cv of the plain options;
        discharge|charge|rest|hold|profile of an experiment), protocol_step (0-based index of the
        step in the expanded experiment), voltage_V, current_A
        (> 0 discharge), current_density_A_m2 (per projected collector area), capacity_Ah
        (discharged charge since start), capacity_mAh_g (per active-material mass),
        capacity_mAh_cm2 (per projected collector area), dod (capacity / nominal 1C capacity),
        mean_stoichiometry (volume mean of c_s/c_max), li_solid_mol, li_electrolyte_mol, li_total_mol,
        li_balance_rel (Li change of the step, integrated from c - c_old, minus charge passed over F,
        relative to the charge of the step),
        interface_current_A (integral of Butler-Volmer current; = -current_A at convergence),
        li_face_current_A (Butler-Volmer current through the Li-metal face, > 0 on discharge; nan with
        --li ideal), charge_balance_rel ((current_A + interface_current_A) / 1C current: the step's
        charge balance of the cathode, ~1e-12 at Newton convergence),
        c_e_min_mol_m3, phi_e_li_V (phi_e at the Li face), newton_its, krylov_its, retries
    OUT/particles.csv       per-particle mean state of lithiation: particle (label from the mesh's
        particle_tags), connected (1; 0 = electronically isolated from the collector, set inert by
        the model, all other columns nan), volume_um3, centroid_x_um, centroid_y_um, centroid_z_um, then one column
        ``sol_dodNNN`` per snapshot (NNN = DoD in %, e.g. sol_dod050), mean c_s/c_max over the particle
    OUT/fields/active.xdmf, solid.xdmf, electrolyte.xdmf
                            one time series per domain (a step per snapshot, time t_s; open in
                            ParaView or pyvista, or meshio.xdmf.TimeSeriesReader), see
                            tomocell.physics.fieldfiles: active submesh c_s [mol/m^3], SoL [-] (P1);
                            active+CBD submesh phi_s [V] (P1); pore+separator submesh c_e [mol/m^3],
                            phi_e [V] (P1), N_mag [mol/m^2/s] = |Li+ flux| (cell-wise, DG0)
    OUT/fields/dodNNN/      one folder per requested DoD (default 25, 50, 70 %; reached ones only):
        active.h5, solid.h5, electrolyte.h5   the snapshot's field values (meshes in fields/*_mesh.h5)
        interface.npz         reaction facets (one row each, owned facets gathered from all ranks):
                              x_um, y_um, z_um (facet midpoint), area_um2, particle (label of the
                              active cell), J_ct_A_m2 (Butler-Volmer current density, > 0 anodic, so
                              < 0 on discharge), i0_A_m2, eta_V, U_V, phi_s_V, phi_e_V, c_s_mol_m3,
                              c_e_mol_m3, sol (all evaluated at the facet midpoints)
        interface.csv         the same table as CSV (header = the npz keys)
        meta.json             t_s, dod, voltage_V, capacity_Ah of the snapshot
    OUT/steps.csv           one row per experiment step (tomocell.physics.protocols.run.STEP_COLUMNS):
                            status (done|skipped), end reason, start/end time, voltage and current,
                            charge, energy, worst Li balance of its time steps
    OUT/checkpoint/         latest checkpoint (meta.json + rank<r>.npz), see tomocell.physics.checkpoint

Coordinates in files for people are micrometres (as in the mesh); everything else is SI.
All files are written atomically (temporary name, then rename), so readers never see half files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

import tomocell.fem  # noqa: F401
import ufl
from dolfinx import fem, la
from dolfinx import mesh as dmesh
from mpi4py import MPI

from tomocell.atomic import write_csv_rows as _write_csv
from tomocell.meshing import tags as T
from tomocell.physics.fieldfiles import FieldSeriesWriter
from tomocell.physics.kinetics import exchange_current_density
from tomocell.physics.model import IFACE_COLOUR, HalfCellModel

TIMESERIES_COLUMNS = (
    "step", "t_s", "dt_s", "segment", "protocol_step", "voltage_V", "current_A", "current_density_A_m2", "capacity_Ah",
    "capacity_mAh_g", "capacity_mAh_cm2", "dod", "mean_stoichiometry", "li_solid_mol", "li_electrolyte_mol",
    "li_total_mol", "li_balance_rel", "interface_current_A", "li_face_current_A", "charge_balance_rel",
    "c_e_min_mol_m3", "phi_e_li_V", "newton_its",
    "krylov_its", "retries",
)
INTERFACE_COLUMNS = ("x_um", "y_um", "z_um", "area_um2", "particle", "J_ct_A_m2", "i0_A_m2", "eta_V", "U_V",
                     "phi_s_V", "phi_e_V", "c_s_mol_m3", "c_e_mol_m3", "sol")


def dod_label(dod: float) -> str:
    return f"dod{int(round(100 * dod)):03d}"


def write_csv_rows(path: Path, columns: tuple[str, ...] | list[str], rows: list[dict[str, Any]]) -> None:
    """Write a CSV atomically (call on rank 0 only)."""
    _write_csv(path, rows, columns)


class ParallelDir:
    """A directory written collectively: all ranks write into a temporary sibling, rank 0 renames it."""

    def __init__(self, comm: MPI.Comm, final: Path):
        self.comm = comm
        self.final = Path(final)
        name = None
        if comm.rank == 0:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_partials(self.final)
            name = str(self.final.parent / f".{self.final.name}.partial-{os.getpid()}")
            os.makedirs(name)
        self.tmp = Path(comm.bcast(name, root=0))
        comm.barrier()

    def commit(self) -> None:
        self.comm.barrier()
        if self.comm.rank == 0:
            _swap_in(self.tmp, self.final)
        self.comm.barrier()


def _remove_stale_partials(final: Path) -> None:
    """Temporary siblings of ``final`` left by killed runs. The run holds the --out lock
    (tomocell.outdir), so no other live run can own them."""
    for q in final.parent.glob(f".{final.name}.partial-*"):
        shutil.rmtree(q, ignore_errors=True)


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace directory ``final`` by ``tmp`` so that at every instant one complete copy exists:
    the old one is renamed aside, the new one renamed in, and only then the old one deleted."""
    old = final.parent / f".{final.name}.old"
    if old.exists() and final.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


class OutputWriter:
    """Writes the snapshot files of one run (fields, interface table, per-particle SoL)."""

    def __init__(self, model: HalfCellModel, out_dir: Path):
        self.m = model
        self.out = Path(out_dir)
        self.comm = model.comm
        self.sol_columns: list[str] = []
        self.particle_sol: dict[str, np.ndarray] = {}
        self._setup_particles()
        self._setup_interface()
        self._setup_flux()
        self._series = FieldSeriesWriter(self.comm, self.out / "fields")

    # ---- per-particle SoL -------------------------------------------------------------------------
    def _setup_particles(self) -> None:
        m = self.m
        msh = m.inp.mesh
        V0 = fem.functionspace(msh, ("DG", 0))
        w = ufl.TestFunction(V0)
        self._cell_cs = fem.form(sum(c * w * m.dx_cs(k) for k, c in enumerate(m.cs)), entity_maps=m.entity_maps)
        vol = fem.assemble_vector(fem.form(w * m.dx(T.ACTIVE)))
        x = ufl.SpatialCoordinate(msh)
        self._V0 = V0
        n_own = msh.topology.index_map(3).size_local
        dofs = V0.dofmap.list[:n_own, 0]
        self._own_dofs = dofs
        labels = m.topo.particle[:n_own]
        act = m.topo.cell_tag[:n_own] == T.ACTIVE
        self._labels = np.where(act, labels, 0)
        # particles set inert (not connected to the collector) are listed with connected = 0
        orig = m.topo.cell_tag_orig if m.topo.cell_tag_orig is not None else m.topo.cell_tag
        all_lab = np.where(orig[:n_own] == T.ACTIVE, labels, 0)
        mom = [fem.assemble_vector(fem.form(x[i] * w * m.dx(T.ACTIVE))).array[dofs] for i in range(3)]
        v = vol.array[dofs]
        # sized by every active label, inert (unconnected) particles included: they are listed too
        nlab = int(self.comm.allreduce(int(all_lab.max()) if all_lab.size else 0, op=MPI.MAX)) + 1
        self._nlab = nlab

        def red(a: np.ndarray) -> np.ndarray:
            loc = np.bincount(self._labels, weights=a, minlength=nlab)
            return self.comm.allreduce(loc, op=MPI.SUM)

        self.p_vol = red(v)
        present = np.zeros(nlab)
        np.maximum.at(present, all_lab, 1.0)
        # buffer Allreduce: the pickled allreduce applies Python's max() to whole arrays
        self.p_present = np.empty_like(present)
        self.comm.Allreduce(present, self.p_present, op=MPI.MAX)
        self.p_centroid = np.stack([red(mm) for mm in mom], axis=1) / np.maximum(self.p_vol, 1e-300)[:, None]
        self._red = red
        self.particle_ids = np.nonzero(self.p_present > 0)[0]
        self.particle_ids = self.particle_ids[self.particle_ids > 0]

    def particle_sol_now(self) -> np.ndarray:
        vec = fem.assemble_vector(self._cell_cs)
        s = self._red(vec.array[self._own_dofs])
        return s / np.maximum(self.p_vol, 1e-300)

    # ---- interface table ---------------------------------------------------------------------------
    def _setup_interface(self) -> None:
        m = self.m
        msh = m.inp.mesh
        data = m.topo.iface_data.reshape(-1, 4)
        cells_a, lf = data[:, 0], data[:, 1]
        msh.topology.create_connectivity(3, 2)
        c2f = msh.topology.connectivity(3, 2)
        facets = c2f.array[c2f.offsets[cells_a] + lf]
        self._if_mid = dmesh.compute_midpoints(msh, 2, facets.astype(np.int32)) if facets.size else np.zeros((0, 3))
        fv = dmesh.entities_to_geometry(msh, 2, facets.astype(np.int32)) if facets.size else np.zeros((0, 3), np.int32)
        X = msh.geometry.x
        if facets.size:
            a, b, c = X[fv[:, 0]], X[fv[:, 1]], X[fv[:, 2]]
            self._if_area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
        else:
            self._if_area = np.zeros(0)
        self._if_particle = m.topo.particle[cells_a]
        # sub-mesh cells for point evaluation (c_s: the field of the facet's body colour)
        em_p, em_e = m.entity_maps[1], m.entity_maps[2]
        self._if_colour = m.colouring.cell_colour[cells_a] if m.n_colours > 1 else np.zeros(cells_a.size, np.int32)
        self._if_cell_s = [em.sub_topology_to_topology(cells_a[self._if_colour == k], inverse=True)
                           for k, em in enumerate(m.em_cs)]
        self._if_cell_p = em_p.sub_topology_to_topology(cells_a, inverse=True)
        self._if_cell_e = em_e.sub_topology_to_topology(data[:, 2], inverse=True)

    def interface_table(self) -> dict[str, np.ndarray] | None:
        """Gathered on rank 0 (None elsewhere)."""
        m, p = self.m, self.m.p
        pts = self._if_mid
        if pts.shape[0]:
            cs = np.zeros(pts.shape[0])
            for k, (f, cells) in enumerate(zip(m.cs, self._if_cell_s)):
                sel = self._if_colour == k
                if np.any(sel):
                    cs[sel] = f.eval(pts[sel], cells)[:, 0]
            ps = m.u[1].eval(pts, self._if_cell_p)[:, 0]
            ce = m.u[2].eval(pts, self._if_cell_e)[:, 0]
            pe = m.u[3].eval(pts, self._if_cell_e)[:, 0]
        else:
            cs = ps = ce = pe = np.zeros(0)
        lo, hi = p.ocp_valid
        U = np.asarray(p.ocp(x=np.clip(cs, lo, hi)), dtype=float) * np.ones_like(cs)
        c = np.maximum(ce, 1e-9) * p.c_e0
        i0 = exchange_current_density(p, cs, c)
        eta = ps - pe - U
        vt = p.thermal_voltage
        j = i0 * (np.exp(p.alpha_a * eta / vt) - np.exp(-p.alpha_c * eta / vt))
        local = {
            "x_um": pts[:, 0], "y_um": pts[:, 1], "z_um": pts[:, 2], "area_um2": self._if_area,
            "particle": self._if_particle.astype(float), "J_ct_A_m2": j, "i0_A_m2": i0, "eta_V": eta, "U_V": U,
            "phi_s_V": ps, "phi_e_V": pe, "c_s_mol_m3": cs * p.c_max, "c_e_mol_m3": ce * p.c_e0, "sol": cs,
        }
        gathered = self.comm.gather(local, root=0)
        if self.comm.rank != 0:
            return None
        return {k: np.concatenate([g[k] for g in gathered]) for k in INTERFACE_COLUMNS}

    # ---- flux magnitude ----------------------------------------------------------------------------
    def _setup_flux(self) -> None:
        m = self.m
        sm = m.sm_e
        Q = fem.functionspace(sm, ("DG", 0))
        n_sub = sm.topology.index_map(3).size_local + sm.topology.index_map(3).num_ghosts
        parent = m.entity_maps[2].sub_topology_to_topology(np.arange(n_sub, dtype=np.int32), inverse=False)
        tag = m.topo.cell_tag[parent]
        eps = fem.Function(Q)
        tau = fem.Function(Q)
        dofs = Q.dofmap.list[:, 0]
        eps.x.array[dofs] = 1.0
        tau.x.array[dofs] = 1.0
        for ph in m.electrolyte:  # separator, porous CBD
            eps.x.array[dofs[tag == ph.tag]] = ph.porosity
            tau.x.array[dofs[tag == ph.tag]] = ph.transport
        # scaled flux -> mol/m^2/s: N_scaled * c_e0 / length_unit; the separator carries tau
        N = m.li_flux(m.u[2], m.u[3], tau=tau)  # the residual's own flux (ionic_current is linear in tau)
        expr = ufl.sqrt(ufl.inner(N, N)) * m.p.c_e0 / m.ell
        self._flux_expr = fem.Expression(expr, Q.element.interpolation_points)
        self._flux = fem.Function(Q, name="N_mag")

    def _active_view(self) -> fem.Function:
        """c_s / c_max as one P1 field on all active cells: each body colour's field at its vertices;
        where particles touch (a vertex of several colours) the volume-weighted mean of their values
        (vertex quadrature: exact at every vertex of a single body, independent of the partition)."""
        m = self.m
        if m.n_colours == 1:
            return m.u[0]
        if not hasattr(self, "_view"):
            V = fem.functionspace(m.sm_s, ("Lagrange", 1))
            w = ufl.TestFunction(V)
            dxv = ufl.Measure("dx", domain=m.inp.mesh, subdomain_data=m.dxc.subdomain_data(),
                              metadata={"quadrature_rule": "vertex"})
            self._view_num = fem.form(sum(c * w * dxv(IFACE_COLOUR + k) for k, c in enumerate(m.cs)),
                                      entity_maps=m.entity_maps)
            den = fem.assemble_vector(fem.form(sum(w * dxv(IFACE_COLOUR + k) for k in range(m.n_colours)),
                                               entity_maps=m.entity_maps))
            den.scatter_reverse(la.InsertMode.add)
            den.scatter_forward()
            self._view_den = den.array.copy()
            self._view = fem.Function(V, name="SoL")
        num = fem.assemble_vector(self._view_num)
        num.scatter_reverse(la.InsertMode.add)
        num.scatter_forward()
        self._view.x.array[:] = num.array / np.maximum(self._view_den, 1e-300)
        return self._view

    # ---- snapshot ----------------------------------------------------------------------------------
    def write_snapshot(self, dod: float, info: dict[str, Any]) -> Path:
        m = self.m
        label = dod_label(dod)
        pdir = ParallelDir(self.comm, self.out / "fields" / label)
        sol = self._active_view()
        cs_mol = fem.Function(sol.function_space, name="c_s")
        cs_mol.x.array[:] = sol.x.array * m.p.c_max
        ce_mol = fem.Function(m.spaces[2], name="c_e")
        ce_mol.x.array[:] = m.u[2].x.array * m.p.c_e0
        self._flux.interpolate(self._flux_expr)
        orig = np.asarray(m.inp.mesh.topology.original_cell_index, dtype=np.int64)
        for (name, sm, nodes, cells), em in zip(
                (("active", m.sm_s, {"c_s": cs_mol, "SoL": sol}, {}),
                 ("solid", m.sm_p, {"phi_s": m.u[1]}, {}),
                 ("electrolyte", m.sm_e, {"c_e": ce_mol, "phi_e": m.u[3]}, {"N_mag": self._flux})),
                m.entity_maps):
            n_sub = sm.topology.index_map(3).size_local
            parent = em.sub_topology_to_topology(np.arange(n_sub, dtype=np.int32), inverse=False)
            self._series.write(pdir.tmp, name, sm, orig[parent], nodes, cells)
        table = self.interface_table()
        if self.comm.rank == 0:
            np.savez(pdir.tmp / "interface.npz", **table)
            rows = np.column_stack([table[k] for k in INTERFACE_COLUMNS]) if table["x_um"].size else np.zeros((0, len(INTERFACE_COLUMNS)))
            np.savetxt(pdir.tmp / "interface.csv", rows, delimiter=",", header=",".join(INTERFACE_COLUMNS), comments="")
            (pdir.tmp / "meta.json").write_text(json.dumps({k: float(v) for k, v in info.items() if isinstance(v, (int, float))}, indent=2))
        pdir.commit()
        self._series.write_index()
        col = f"sol_{label}"
        self.particle_sol[col] = self.particle_sol_now()
        if col not in self.sol_columns:
            self.sol_columns.append(col)
        self.write_particles()
        return self.out / "fields" / label

    def write_particles(self) -> None:
        if self.comm.rank != 0:
            return
        cols = ["particle", "connected", "volume_um3", "centroid_x_um", "centroid_y_um", "centroid_z_um", *self.sol_columns]
        rows = []
        for k in self.particle_ids:
            if self.p_vol[k] <= 0:  # inert particle: not connected to the collector
                rows.append({"particle": int(k), "connected": 0, **{c: "nan" for c in cols[2:]}})
                continue
            r = {"particle": int(k), "connected": 1, "volume_um3": self.p_vol[k], "centroid_x_um": self.p_centroid[k, 0],
                 "centroid_y_um": self.p_centroid[k, 1], "centroid_z_um": self.p_centroid[k, 2]}
            for c in self.sol_columns:
                r[c] = self.particle_sol[c][k]
            rows.append(r)
        write_csv_rows(self.out / "particles.csv", cols, rows)
