"""The physics on a mesh file written by the meshing stage (voxel route), serial and on 2 ranks:
the path the demo and `tomocell simulate MESH` take, including clusters the model must set inert."""

from __future__ import annotations

import numpy as np
import pytest

import tomocell.fem  # noqa: F401

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

from mpi4py import MPI  # noqa: E402

from tomocell.meshing.meshfile import write_mesh  # noqa: E402
from tomocell.meshing.voxel import voxel_mesh  # noqa: E402
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume  # noqa: E402
from tomocell.physics.cli import simulate_file  # noqa: E402


def _volume() -> Volume:
    """12 x 10 x 10 voxels of 0.5 um: two particles, a CBD bed on the collector joining them, a CBD
    speck on the collector touching nothing else (must be set inert) and a closed pore inside a particle."""
    n0, n1, n2 = 12, 10, 10
    z, y, x = np.meshgrid(*(np.arange(n) + 0.5 for n in (n0, n1, n2)), indexing="ij")
    lab = np.full((n0, n1, n2), PORE, dtype=np.uint8)
    lab[(z - 7.5) ** 2 + (y - 3) ** 2 + (x - 3) ** 2 <= 3.2**2] = ACTIVE
    lab[(z - 5.5) ** 2 + (y - 7) ** 2 + (x - 7) ** 2 <= 2.6**2] = ACTIVE
    lab[9:, 2:8, 2:6] = np.where(lab[9:, 2:8, 2:6] == PORE, CBD, lab[9:, 2:8, 2:6])  # bed (axis 0: index 0 = separator side)
    lab[11, 3:8, 5:9] = CBD
    lab[11, 0, 9] = CBD  # speck on the collector, isolated
    lab[11, 9, 0] = PORE
    lab[10:, 8:, 0:2] = CBD
    lab[11, 9, 0] = CBD
    return Volume(lab, (0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def mesh_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("mesh") / "mesh.xdmf"
    if MPI.COMM_WORLD.rank == 0:
        m = voxel_mesh(_volume(), separator_um=3.0)
        write_mesh(path, m, comm=MPI.COMM_SELF)
    return MPI.COMM_WORLD.bcast(path, root=0)


@pytest.mark.slow
@pytest.mark.mpi
def test_discharge_on_a_mesh_file(mesh_path, tmp_path_factory):
    out = MPI.COMM_WORLD.bcast(tmp_path_factory.mktemp("sim") / "run" if MPI.COMM_WORLD.rank == 0 else None, root=0)
    res = simulate_file(mesh_path, 4.0, out, dod_snapshots=(0.5,))
    assert res.reason == "cut-off" and 3.0 <= res.final_voltage_V <= 3.0 + 1e-4
    assert 0.5 < res.utilisation < 1.0
    assert 100 < res.capacity_mAh_g < 170
    assert max(abs(r["li_balance_rel"]) for r in res.rows[1:]) < 1e-10
    assert (out / "fields" / "dod050" / "interface.npz").is_file()


@pytest.mark.mpi
def test_inert_particle_with_the_largest_label_is_listed(tmp_path_factory):
    """An active particle touching no CBD and no other particle cannot carry current: it is set inert,
    and with the largest particle label it must still get its row in the per-particle tables."""
    from tomocell.physics.cli import load_mesh
    from tomocell.physics.discharge import make_model
    from tomocell.physics.outputs import OutputWriter
    from tomocell.physics.parameters import load_parameters

    vol = _volume()
    lab = vol.labels.copy()
    lab[1:3, 7:9, 1:3] = ACTIVE  # floating in the pore near the separator side
    ids = np.zeros(lab.shape, np.int32)
    n0, n1, n2 = lab.shape
    z, y, x = np.meshgrid(*(np.arange(n) + 0.5 for n in (n0, n1, n2)), indexing="ij")
    ids[(lab == ACTIVE) & ((z - 7.5) ** 2 + (y - 3) ** 2 + (x - 3) ** 2 <= 3.2**2)] = 1
    ids[(lab == ACTIVE) & (ids == 0)] = 2
    ids[1:3, 7:9, 1:3] = 7
    comm = MPI.COMM_WORLD
    path = comm.bcast(tmp_path_factory.mktemp("mesh_inert") / "mesh.xdmf" if comm.rank == 0 else None, root=0)
    if comm.rank == 0:
        write_mesh(path, voxel_mesh(Volume(lab, (0.5, 0.5, 0.5)), separator_um=3.0, particle_labels=ids), comm=MPI.COMM_SELF)
    comm.barrier()
    model = make_model(load_mesh(str(path), comm), load_parameters(None))
    out = comm.bcast(tmp_path_factory.mktemp("out_inert") if comm.rank == 0 else None, root=0)
    w = OutputWriter(model, out)
    assert 7 in w.particle_ids.tolist() and len(w.p_present) == 8
    sol = w.particle_sol_now()
    assert sol.shape == (8,) and sol[7] == 0.0  # inert: no lithium bookkept in it (volume 0 in the active sum)


def test_a_partitioner_missing_from_dolfinx_is_refused_naming_those_it_has(tmp_path) -> None:
    """`--partitioner parmetis` on a DOLFINx without ParMETIS: exit 2, the message names the available
    ones, and no output directory is left behind."""
    import subprocess
    import sys
    from pathlib import Path

    from tomocell.meshing.meshfile import available_partitioners

    if "parmetis" in available_partitioners():
        pytest.skip("this DOLFINx has ParMETIS: nothing to refuse")
    import tomocell as tc

    msh = tc.mesh(tc.generate(preset="tiny", seed=1), route="voxel", coarsen=2, separator_um=4.0)
    msh.save(tmp_path / "mesh")
    out = tmp_path / "sim"
    r = subprocess.run([str(Path(sys.executable).parent / "tomocell"), "simulate", str(tmp_path / "mesh" / "mesh.xdmf"),
                        "--partitioner", "parmetis", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "partitioner 'parmetis' is not available" in r.stderr and "scotch" in r.stderr
    assert not out.exists()
