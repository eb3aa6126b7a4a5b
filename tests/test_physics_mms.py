"""Method of manufactured solutions on the coupled four-field system (all interface and boundary terms).

The discrete problem is R(u_h; v) - R(u*; v) = 0 with R the model's own residual and u* smooth
functions of position: u* solves it exactly at the continuous level, so the L2 error of P1 must fall
as h^2 for every field, through the interface, boundary and separator terms. This verifies the
discretisation (quadrature, submesh coupling, interface measures) only: because the source is built
from the same residual, a wrong coefficient or sign cancels. The physics itself (kappa, Bruggeman, t+,
D_e, the diffusion potential, i0, the alphas, the Li-metal kinetics, D_s, F) is checked against an
independent 1D solution in test_physics_reference_1d.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import tomocell.fem  # noqa: F401

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

import ufl  # noqa: E402
from dolfinx import fem  # noqa: E402
from dolfinx import mesh as dmesh  # noqa: E402
from mpi4py import MPI  # noqa: E402

from tomocell.meshing import tags as T  # noqa: E402
from tomocell.physics.model import HalfCellModel, MeshInput  # noqa: E402
from tomocell.physics.parameters import load_parameters  # noqa: E402
from tomocell.physics.synthetic import tag_facets  # noqa: E402

L = 4.0  # um


def mms_mesh(comm, n: int) -> MeshInput:
    msh = dmesh.create_box(comm, [np.zeros(3), np.full(3, L)], [n, n, n], cell_type=dmesh.CellType.tetrahedron,
                           ghost_mode=dmesh.GhostMode.shared_facet)
    imap = msh.topology.index_map(3)
    cells = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
    mid = dmesh.compute_midpoints(msh, 3, cells)
    h = L / 2
    tag = np.where(mid[:, 2] > h, T.SEPARATOR,
                   np.where(mid[:, 0] < h, T.ACTIVE, np.where(mid[:, 1] < h, T.CBD, T.PORE))).astype(np.int32)
    ct = dmesh.meshtags(msh, 3, cells, tag)
    pt = dmesh.meshtags(msh, 3, cells, (tag == T.ACTIVE).astype(np.int32))
    return MeshInput(msh, ct, tag_facets(msh, tag, L, (L, L)), pt)


def exact(x, p):
    w = np.pi / L  # half waves over the box
    cs = 0.62 + 0.08 * ufl.sin(w * x[0]) * ufl.cos(w * x[1]) + 0.05 * ufl.cos(w * x[2])
    ps = 4.08 + 0.01 * ufl.cos(w * x[0]) * ufl.sin(w * x[2]) + 0.004 * ufl.sin(w * x[1])
    ce = 1.0 + 0.2 * ufl.sin(w * x[2]) * ufl.cos(w * x[0]) + 0.1 * ufl.cos(w * x[1])
    pe = -0.01 + 0.006 * ufl.cos(w * x[1]) * ufl.sin(w * x[2]) + 0.004 * ufl.cos(w * x[0])
    return [cs, ps, ce, pe]


def solve_mms(n: int, params) -> list[float]:
    inp = mms_mesh(MPI.COMM_WORLD, n)
    x = ufl.SpatialCoordinate(inp.mesh)
    ue = exact(x, params)

    def extra(model, tests):
        return -model.residual(ue, model.cs_n, model.ce_n, tests)

    m = HalfCellModel(inp, params, quadrature_degree=5, extra_residual=extra)
    m.set_state(0.6, 1.0, 0.0, 4.08)
    m.set_current_A(0.5 * m.one_c_current_A())  # data cancel out; kept non-zero to exercise the term
    m.dt.value = 50.0
    ok, its, _ = m.solve_step(50.0)
    assert ok, "Newton did not converge on the MMS problem"
    errs = []
    for k, tags in enumerate(((T.ACTIVE,), (T.ACTIVE, T.CBD), (T.PORE, T.SEPARATOR), (T.PORE, T.SEPARATOR))):
        e = (m.u[k] - ue[k]) ** 2 * m.dx(tags)
        val = fem.assemble_scalar(fem.form(e, entity_maps=m.entity_maps))
        errs.append(float(np.sqrt(m.comm.allreduce(val, op=MPI.SUM))))
    return errs


def test_mms_second_order_all_fields():
    params = load_parameters("nmc111")
    ns = np.array([6, 12, 24])
    errs = np.array([solve_mms(int(n), params) for n in ns])
    pair = np.log2(errs[:-1] / errs[1:])
    for j, name in enumerate(("c_s", "phi_s", "c_e", "phi_e")):
        # order over the three refinements (least-squares slope of log e against log h) ...
        slope = np.polyfit(np.log(L / ns), np.log(errs[:, j]), 1)[0]
        assert abs(slope - 2.0) <= 0.1, (name, slope, pair[:, j], errs[:, j])
        # ... and on the finest pair
        assert abs(pair[-1, j] - 2.0) <= 0.1, (name, pair[:, j], errs[:, j])
