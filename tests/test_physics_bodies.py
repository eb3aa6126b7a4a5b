"""Particles are separate solid-diffusion bodies (issue 17 item 1, physics/bodies.py).

Touching particles get different body colours; the colouring comes from the label graph alone, so it
is the same on any number of ranks; lithium does not cross a particle contact: over a step, the Li
content of each particle changes exactly by the Butler-Volmer charge through its own surface.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from tomocell.physics.bodies import greedy_colouring, label_edges

PARTS = [((3.0, 3.0, 4.0), 2.6), ((7.0, 3.0, 4.0), 1.8), ((5.0, 7.0, 6.5), 2.2)]


def test_greedy_colouring_separates_neighbours_and_ignores_order() -> None:
    edges = label_edges(np.array([5, 5, 9, 9, 9, 2]), np.array([1, 2, 2, 3, 1, 4]))
    assert edges == {(1, 2), (1, 3), (2, 3)}
    col = greedy_colouring([1, 2, 3, 4], edges)
    assert all(col[a] != col[b] for a, b in edges)
    assert col == greedy_colouring([4, 3, 2, 1], set(reversed(sorted(edges))))


def _model(bodies: str):
    from tomocell.physics.model import HalfCellModel
    from tomocell.physics.parameters import load_parameters
    from tomocell.physics.synthetic import box_cell

    inp = box_cell(MPI.COMM_WORLD, n=(8, 8, 8), particles=PARTS)
    return HalfCellModel(inp, load_parameters("nmc111"), bodies=bodies)


def _per_particle_li(m) -> np.ndarray:
    import ufl
    from dolfinx import fem

    V0 = fem.functionspace(m.inp.mesh, ("DG", 0))
    w = ufl.TestFunction(V0)
    vec = fem.assemble_vector(fem.form(sum(c * w * m.dx_cs(k) for k, c in enumerate(m.cs)), entity_maps=m.entity_maps))
    n = m.inp.mesh.topology.index_map(3).size_local
    lab = np.where(m.topo.cell_tag[:n] == 1, m.topo.particle[:n], 0)
    return MPI.COMM_WORLD.allreduce(np.bincount(lab, weights=vec.array[V0.dofmap.list[:n, 0]], minlength=4), op=MPI.SUM)


def test_touching_particles_are_separate_bodies_and_exchange_no_lithium() -> None:
    m = _model("particles")
    assert m.n_colours == 3 and m.colouring.n_contacts == 3  # all three touch each other
    x0, _ = m.p.theta_limits()
    m.set_state(x0)
    m.set_current_A(2 * m.one_c_current_A())
    for _ in range(3):
        assert m.solve_step(60.0)[0]
        m.accept_step()
    # rest: no current; particles of different state relax only through the electrolyte (BV)
    before = _per_particle_li(m)
    m.set_current_A(0.0)
    assert m.solve_step(600.0)[0]
    after = _per_particle_li(m)
    tot = after.sum() - before.sum()
    # the change of each particle's Li content is its own BV charge only: with no contact flux the
    # particles' changes sum to the (tiny) net interface exchange, and each equals its surface integral
    import ufl
    from dolfinx import fem
    V0 = fem.functionspace(m.inp.mesh, ("DG", 0))
    w = ufl.TestFunction(V0)
    i_cell = fem.assemble_vector(fem.form(sum(i_n * w("+") * dS for i_n, dS in m.interface_currents(m.u)),
                                          entity_maps=m.entity_maps))
    n = m.inp.mesh.topology.index_map(3).size_local
    lab = np.where(m.topo.cell_tag[:n] == 1, m.topo.particle[:n], 0)
    q = MPI.COMM_WORLD.allreduce(np.bincount(lab, weights=i_cell.array[V0.dofmap.list[:n, 0]], minlength=4), op=MPI.SUM)
    dli_bv = -q * 600.0 / (m.p.c_max * 96485.33212 * m.ell)  # change of the integral of c/c_max [um^3]
    np.testing.assert_allclose(after - before, dli_bv, rtol=1e-6, atol=1e-9 * np.abs(before).max())
    assert abs(tot) < 1e-6 * np.abs(before).sum()  # the rest moves Li between particles, not in or out
    assert np.abs(after - before)[1:].min() > 1e-4 * before[1:].min()  # ... and it does move some


def test_clusters_option_is_one_body() -> None:
    m = _model("clusters")
    assert m.n_colours == 1 and len(m.spaces) == 4


@pytest.mark.mpi
def test_colouring_does_not_depend_on_the_rank_count() -> None:
    m = _model("particles")
    assert m.colouring.colour_of_label == {1: 0, 2: 1, 3: 2}  # the serial answer (degree, then label)
