"""Coupled four-field solve on small in-memory meshes: Li conservation, current balance, rest, bad meshes."""

from __future__ import annotations

import numpy as np
import pytest

import tomocell.fem  # noqa: E402,F401  (before dolfinx)

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

from mpi4py import MPI  # noqa: E402

from tomocell.errors import InputError  # noqa: E402
from tomocell.meshing import tags as T  # noqa: E402
from tomocell.physics.model import HalfCellModel, MeshInput  # noqa: E402
from tomocell.physics.parameters import FARADAY, load_parameters  # noqa: E402
from tomocell.physics.synthetic import box_cell  # noqa: E402


@pytest.fixture(scope="module")
def params():
    return load_parameters("nmc111")


@pytest.fixture(scope="module")
def cell():
    return box_cell(MPI.COMM_WORLD, n=(5, 5, 6), n_sep=2)


@pytest.mark.mpi
@pytest.mark.parametrize("li", ["butler-volmer", "ideal"])
def test_li_conservation_and_current_balance(cell, params, li):
    m = HalfCellModel(cell, params, li_kinetics=li)
    x0, _ = params.theta_limits()
    m.set_state(x0)
    current = 3.0 * m.one_c_current_A()
    m.set_current_A(current)
    q0 = m.quantities()
    for dt in (5.0, 20.0, 60.0, 120.0):
        j0 = m.jacobians_assembled()
        ok, its, _ = m.solve_step(dt)
        # a reused Jacobian (JacobianReuse) takes more, cheaper iterations; the assemblies stay few
        assert ok and its <= 10 and m.jacobians_assembled() - j0 <= 6
        q = m.quantities()
        passed = current * dt / FARADAY  # mol of Li moved from the Li metal into the cell
        d_li = (q["li_solid_mol"] + q["li_electrolyte_mol"]) - (q0["li_solid_mol"] + q0["li_electrolyte_mol"])
        assert abs(d_li - passed) / passed <= 1e-10
        # the particles gained what the electrolyte carried in (minus its own change)
        assert q["li_solid_mol"] > q0["li_solid_mol"]
        assert q["interface_current_A"] == pytest.approx(-current, rel=1e-9)
        if li == "butler-volmer":
            assert q["li_face_current_A"] == pytest.approx(current, rel=1e-9)
            assert q["phi_e_li_V"] < 0  # stripping needs a positive overpotential phi_Li - phi_e
        assert q["voltage_V"] < q0["voltage_V"] + 1e-12  # discharging lowers the voltage
        m.accept_step()
        q0 = q


def test_rest_at_equilibrium_does_not_drift(cell, params):
    m = HalfCellModel(cell, params)
    x = 0.7
    m.set_state(x)
    m.set_current_A(0.0)
    start = [a.copy() for a in m.snapshot()[:4]]
    for dt in (10.0, 100.0, 1000.0):
        ok, _, _ = m.solve_step(dt)
        assert ok
        m.accept_step()
    for a, b in zip(start, m.snapshot()[:4]):
        assert np.max(np.abs(a - b)) < 1e-11
    assert m.quantities()["voltage_V"] == pytest.approx(float(params.ocp(x=x)), abs=1e-11)


def test_relaxation_after_pulse_approaches_ocv(cell, params):
    """After a 4C pulse the open-circuit voltage rises monotonically to U(mean stoichiometry)."""
    m = HalfCellModel(cell, params)
    m.set_state(0.6)
    m.set_current_A(4.0 * m.one_c_current_A())
    for _ in range(3):
        assert m.solve_step(60.0)[0]
        m.accept_step()
    v_load = m.quantities()["voltage_V"]
    m.set_current_A(0.0)
    volts = []
    for dt in (1.0, 10.0, 100.0, 1000.0, 5000.0):
        assert m.solve_step(dt)[0]
        m.accept_step()
        volts.append(m.quantities()["voltage_V"])
    assert volts[0] > v_load
    assert np.all(np.diff(volts) > -1e-9)
    q = m.quantities()
    assert volts[-1] == pytest.approx(float(params.ocp(x=q["mean_stoichiometry"])), abs=2e-4)


def _retag(cell: MeshInput, new_values) -> MeshInput:
    from dolfinx import mesh as dmesh

    ct = cell.cell_tags
    return MeshInput(cell.mesh, dmesh.meshtags(cell.mesh, 3, ct.indices, new_values(ct.values)), cell.facet_tags,
                     cell.particle_tags)


@pytest.mark.parametrize("case, msg", [
    ("no_active", "no active-material"),
    ("no_electrolyte", "no electrolyte"),
    ("no_interface", "no active/electrolyte interface"),
    ("no_cc", "CURRENT_COLLECTOR"),
    ("no_li", "LI_FACE"),
    ("unknown_tag", "unknown or missing"),
])
def test_bad_meshes_are_refused_before_any_solve(cell, params, case, msg):
    from dolfinx import mesh as dmesh

    ft = cell.facet_tags
    if case == "no_active":
        inp = _retag(cell, lambda v: np.where(v == T.ACTIVE, T.PORE, v))
    elif case == "no_electrolyte":
        inp = _retag(cell, lambda v: np.where(np.isin(v, T.ELECTROLYTE_CELLS), T.CBD, v))
    elif case == "no_interface":
        inp = _retag(cell, lambda v: np.where(np.isin(v, (T.PORE,)), T.CBD, v))
        inp = _retag(inp, lambda v: np.where(v == T.SEPARATOR, T.SEPARATOR, v))
        # particles touching the separator would still react: cover them with CBD too
        inp = MeshInput(inp.mesh, inp.cell_tags, ft, inp.particle_tags)
        vals = inp.cell_tags.values.copy()
        mid = dmesh.compute_midpoints(cell.mesh, 3, inp.cell_tags.indices)
        vals[(vals == T.SEPARATOR) & (mid[:, 2] < 10.0 + 2.5 + 1e-9)] = T.CBD
        inp = MeshInput(inp.mesh, dmesh.meshtags(cell.mesh, 3, inp.cell_tags.indices, vals), ft, inp.particle_tags)
    elif case in ("no_cc", "no_li"):
        drop = T.CURRENT_COLLECTOR if case == "no_cc" else T.LI_FACE
        keep = ft.values != drop
        inp = MeshInput(cell.mesh, cell.cell_tags, dmesh.meshtags(cell.mesh, 2, ft.indices[keep], ft.values[keep]),
                        cell.particle_tags)
    else:
        inp = _retag(cell, lambda v: np.where(v == T.CBD, 9, v))
    with pytest.raises(InputError, match=msg):
        HalfCellModel(inp, params)


def test_separator_facing_facets_react_over_the_separator_porosity(params):
    """An active facet against the homogenised separator reacts over eps_sep of its area (only the
    separator's pores touch it); against a resolved pore over all of it. Checked against the facet
    areas summed by hand from the interface facet pairs."""
    from dolfinx import mesh as dmesh

    # one particle cut by the separator plane z = 10 um, one below it touching it (a contact for electrons)
    cell = box_cell(MPI.COMM_WORLD, n=(6, 6, 8), particles=[((5.0, 5.0, 8.8), 2.6), ((5.0, 5.0, 3.8), 2.6)],
                    cbd_film_um=0.0)
    m = HalfCellModel(cell, params)
    msh = cell.mesh
    data = m.topo.iface_data.reshape(-1, 4)
    n_own = msh.topology.index_map(3).size_local
    own = data[:, 0] < n_own  # each interface facet once: where its active cell is owned
    msh.topology.create_connectivity(3, 2)
    c2f = msh.topology.connectivity(3, 2)
    facets = c2f.array[c2f.offsets[data[own, 0]] + data[own, 1]].astype(np.int32)
    X = msh.geometry.x
    fv = dmesh.entities_to_geometry(msh, 2, facets) if facets.size else np.zeros((0, 3), np.int32)
    area = 0.5 * np.linalg.norm(np.cross(X[fv[:, 1]] - X[fv[:, 0]], X[fv[:, 2]] - X[fv[:, 0]]), axis=1)
    against_sep = m.topo.cell_tag[data[own, 2]] == T.SEPARATOR
    a_sep = MPI.COMM_WORLD.allreduce(float(area[against_sep].sum()), op=MPI.SUM)
    a_pore = MPI.COMM_WORLD.allreduce(float(area[~against_sep].sum()), op=MPI.SUM)
    assert a_sep > 0 and a_pore > 0  # the box has particles touching the separator
    assert m.area_iface == pytest.approx(a_pore + params.sep_porosity * a_sep, rel=1e-12)
    # the integrated reaction current carries the same weight: uniform state, i_n = i0 (e^.. - e^..)
    x0, _ = params.theta_limits()
    m.set_state(x0)
    m.u[1].x.array[:] += 0.01  # 10 mV anodic overpotential everywhere
    vt = params.thermal_voltage
    from tomocell.physics.kinetics import exchange_current_density

    i0 = float(exchange_current_density(params, x0, params.c_e0))
    i_n = i0 * (np.exp(params.alpha_a * 0.01 / vt) - np.exp(-params.alpha_c * 0.01 / vt))
    assert m.quantities()["interface_current_A"] == pytest.approx(i_n * m.area_iface * m.ell**2, rel=1e-9)


def test_porous_cbd_conserves_li_and_charge_and_reacts_through_its_pores(cell, params):
    """cbd="porous" on the box cell (CBD film on the collector and CBD columns): the electrolyte fills
    eps_cbd of the CBD, so the Li inventory, the reacting area and the balances change accordingly;
    Li and charge stay conserved to round-off over 3C steps."""
    dense = HalfCellModel(cell, params, petsc_prefix="cbd_dense_")
    m = HalfCellModel(cell, params, petsc_prefix="cbd_porous_", cbd="porous")
    assert m.topo.counts["reaction_facets"] > dense.topo.counts["reaction_facets"]  # active|CBD facets react
    assert m.area_iface > dense.area_iface
    x0, _ = params.theta_limits()
    for mod in (dense, m):
        mod.set_state(x0)
    # electrolyte inventory: c0 (V_pore + eps_sep V_sep + eps_cbd V_cbd), volumes from the model
    v = m.vol
    inv = params.c_e0 * m.ell**3 * (v["pore"] + params.sep_porosity * v["separator"] + params.cbd_porosity * v["cbd"])
    assert m.quantities()["li_electrolyte_mol"] == pytest.approx(inv, rel=1e-12)
    assert dense.quantities()["li_electrolyte_mol"] < inv
    current = 3.0 * m.one_c_current_A()
    m.set_current_A(current)
    q0 = m.quantities()
    for dt in (5.0, 30.0, 120.0):
        ok, _, _ = m.solve_step(dt)
        assert ok
        q = m.quantities()
        passed = current * dt / FARADAY
        d_li = (q["li_solid_mol"] + q["li_electrolyte_mol"]) - (q0["li_solid_mol"] + q0["li_electrolyte_mol"])
        assert abs(d_li - passed) / passed <= 1e-10
        assert q["interface_current_A"] == pytest.approx(-current, rel=1e-9)
        assert q["li_face_current_A"] == pytest.approx(current, rel=1e-9)
        m.accept_step()
        q0 = q
    for mod in (dense, m):
        mod.close()


def _layered_cell(comm, layers):
    """A 2 x 2 um column of tets with horizontal layers ((tag, thickness um), ... from the collector up)."""
    from dolfinx import mesh as dmesh

    from tomocell.physics.synthetic import tag_facets

    top = sum(t for _, t in layers)
    msh = dmesh.create_box(comm, [np.zeros(3), np.array([2.0, 2.0, top])], [2, 2, int(round(4 * top))],
                           cell_type=dmesh.CellType.tetrahedron, ghost_mode=dmesh.GhostMode.shared_facet)
    imap = msh.topology.index_map(3)
    cells = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
    z = dmesh.compute_midpoints(msh, 3, cells)[:, 2]
    tag = np.zeros(cells.size, dtype=np.int32)
    z0 = 0.0
    for t, h in layers:
        tag[(z >= z0) & (z < z0 + h)] = t
        z0 += h
    return MeshInput(msh, dmesh.meshtags(msh, 3, cells, tag), tag_facets(msh, tag, top, (2.0, 2.0)),
                     dmesh.meshtags(msh, 3, cells, (tag == T.ACTIVE).astype(np.int32)))


def test_porous_cbd_cut_off_from_the_separator_still_conducts_and_equals_dense(params):
    """A CBD film between the collector and the active layer: with cbd="porous" its pores cannot reach
    the separator, so it holds no electrolyte ("dry" CBD) but must still carry the electrons to the
    collector (set inert, the electrode would be disconnected). Nothing else differs from the dense
    model, so the voltage after 1C steps is the dense model's to solver tolerance."""
    cell = _layered_cell(MPI.COMM_WORLD, [(T.CBD, 1.0), (T.ACTIVE, 2.0), (T.PORE, 2.0), (T.SEPARATOR, 3.0)])
    dense = HalfCellModel(cell, params, petsc_prefix="dry_dense_")
    m = HalfCellModel(cell, params, petsc_prefix="dry_porous_", cbd="porous")
    assert m.topo.counts["dry_cbd_cells"] == dense.topo.counts["cbd"] > 0
    assert m.topo.counts["isolated_cbd_cells"] == 0
    assert m.area_iface == pytest.approx(dense.area_iface, rel=1e-12)
    x0, _ = params.theta_limits()
    for mod in (dense, m):
        mod.set_state(x0)
        mod.set_current_A(mod.one_c_current_A())
        for dt in (10.0, 60.0):
            ok, _, _ = mod.solve_step(dt)
            assert ok
            mod.accept_step()
    assert m.quantities()["voltage_V"] == pytest.approx(dense.quantities()["voltage_V"], abs=1e-9)
    for mod in (dense, m):
        mod.close()
