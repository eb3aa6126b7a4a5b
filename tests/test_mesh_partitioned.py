"""A mesh file read with a chosen graph partitioner (``read_mesh(..., partitioner=NAME)``) is the same mesh as
DOLFINx's XDMF reader gives: same tags on the same entities (counted and measured over all ranks) and the
same discharge voltage, for every partitioner this DOLFINx build offers (issue 19, MPI scaling)."""

from __future__ import annotations

import numpy as np
import pytest

import tomocell.fem  # noqa: F401  (before dolfinx)
import dolfinx  # noqa: F401
from mpi4py import MPI

from tomocell.errors import InputError
from tomocell.meshing.meshfile import available_partitioners, read_mesh, write_mesh
from tomocell.meshing.voxel import voxel_mesh
from tomocell.microstructure.synthetic import generate_electrode


@pytest.fixture(scope="module")
def mesh_path(tmp_path_factory):
    comm = MPI.COMM_WORLD
    path = tmp_path_factory.mktemp("mesh") / "mesh.xdmf" if comm.rank == 0 else None
    if comm.rank == 0:
        write_mesh(path, voxel_mesh(generate_electrode(preset="tiny", seed=1), separator_um=4.0, coarsen=2),
                   comm=MPI.COMM_SELF)
    return comm.bcast(path, root=0)


def _measures(md) -> dict:
    """{(tag name, value): (global entity count, global measure)} of every tag table."""
    import ufl

    comm = MPI.COMM_WORLD
    out = {}
    for t in (md.cell_tags, md.facet_tags, md.particle_tags):
        if t is None:
            continue
        owned = t.indices < md.mesh.topology.index_map(t.dim).size_local
        for v in sorted(set().union(*comm.allgather(set(np.unique(t.values).tolist())))):
            n = comm.allreduce(int(np.sum(t.values[owned] == v)), op=MPI.SUM)
            size = None  # facets: counted; cells: counted and their volume
            if t.dim == 3:
                form = dolfinx.fem.form(1.0 * ufl.dx(domain=md.mesh, subdomain_data=t, subdomain_id=int(v)))
                size = comm.allreduce(dolfinx.fem.assemble_scalar(form), op=MPI.SUM)
            out[(t.name, int(v))] = (n, size)
    return out


@pytest.mark.mpi
def test_every_partitioner_gives_the_same_tags(mesh_path) -> None:
    ref = _measures(read_mesh(mesh_path, MPI.COMM_WORLD))
    assert len(available_partitioners()) > 1, "DOLFINx without any graph partitioner to choose"
    for name in available_partitioners()[1:]:  # those the user can choose besides "default"
        got = _measures(read_mesh(mesh_path, MPI.COMM_WORLD, partitioner=name))
        assert got.keys() == ref.keys(), name
        for k, (n, size) in ref.items():
            assert got[k][0] == n, (name, k)
            if size is not None:
                assert got[k][1] == pytest.approx(size, rel=1e-12), (name, k)


@pytest.mark.mpi
def test_partitioner_does_not_change_the_discharge(mesh_path) -> None:
    from tomocell.physics.discharge import make_model
    from tomocell.physics.model import MeshInput
    from tomocell.physics.parameters import load_parameters

    p = load_parameters("nmc111")

    def volts(md) -> list[float]:
        m = make_model(MeshInput(md.mesh, md.cell_tags, md.facet_tags, md.particle_tags), p, linear_solver="direct")
        m.set_state(p.theta_limits()[0])
        m.set_current_A(5.0 * m.one_c_current_A())
        out = []
        for dt in (7.2, 36.0, 72.0):
            ok, _, _ = m.solve_step(dt)
            assert ok
            m.accept_step()
            out.append(m.quantities()["voltage_V"])
        return out

    ref = volts(read_mesh(mesh_path, MPI.COMM_WORLD))
    for name in available_partitioners()[1:]:
        np.testing.assert_allclose(volts(read_mesh(mesh_path, MPI.COMM_WORLD, partitioner=name)), ref, rtol=0,
                                   atol=1e-8, err_msg=name)


def test_unknown_partitioner_is_refused(mesh_path) -> None:
    with pytest.raises(InputError, match="partitioner 'metis' is not available in this DOLFINx build"):
        read_mesh(mesh_path, MPI.COMM_WORLD, partitioner="metis")
