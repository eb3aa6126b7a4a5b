"""h5py keeps its own HDF5 in every import order and entry point (issue 14, tomocell/_hdf5.py).

``dolfinx.fem.petsc`` makes PETSc's HDF5 1.14 global; h5py's bundled HDF5 2.0 then binds to it
(``ValueError: Not a datatype``) unless tomocell imported h5py first with RTLD_DEEPBIND. Each order
runs in a fresh interpreter (the bug depends on what a process loaded before), writes and reads an
HDF5 file through h5py and an XDMF file through meshio, and must print ``ok``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

ROUND_TRIP = """
import numpy as np, h5py, meshio
with h5py.File(r"{d}/x.h5", "w") as f:
    f["a"] = np.arange(3.0); f.attrs["s"] = "hello"
    f.create_dataset("c", data=np.ones((10, 3)), compression="gzip", chunks=True)
with h5py.File(r"{d}/x.h5") as f:
    assert f["c"][:].sum() == 30 and f.attrs["s"] == "hello"
m = meshio.Mesh(np.random.rand(4, 3), [("tetra", np.array([[0, 1, 2, 3]]))], cell_data={{"p": [np.array([7])]}})
meshio.write(r"{d}/m.xdmf", m)
assert meshio.read(r"{d}/m.xdmf").cell_data["p"][0][0] == 7
print("ok")
"""

PETSC = "import tomocell.fem, dolfinx.fem.petsc"  # the load that makes PETSc's HDF5 global
ORDERS = {
    "physics model, then h5py": "import tomocell.physics.model",
    "dolfinx.fem.petsc before tomocell": "import dolfinx_solver, dolfinx.fem.petsc; import tomocell",
    "h5py before tomocell": f"import h5py; {PETSC}",
    "meshio before dolfinx": f"import meshio, tomocell; {PETSC}",
    "volume reader (h5py) then mesh file module": "import tomocell.microstructure.io, tomocell.meshing.meshfile",
    "tomocell then dolfinx.fem.petsc": f"import tomocell; {PETSC}",
}


def _run(cmd: list[str], tmp_path: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra_env}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("order", list(ORDERS))
def test_h5py_round_trip_after_each_import_order(order: str, tmp_path: Path) -> None:
    code = ORDERS[order] + "\n" + ROUND_TRIP.format(d=tmp_path)
    r = _run([sys.executable, "-c", code], tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), f"{order}:\n{r.stdout}\n{r.stderr[-3000:]}"


def test_without_the_fix_the_bug_is_real(tmp_path: Path) -> None:
    """The reference failure: the same round trip without tomocell fails as the issue reported.

    If this ever passes, the wheel stack no longer has two HDF5 libraries and tomocell/_hdf5.py can go.
    """
    if importlib.util.find_spec("dolfinx_solver") is None:
        pytest.skip("not the dolfinx-solver-real wheel stack (one HDF5 for PETSc and h5py)")
    code = "import dolfinx_solver, dolfinx.fem.petsc\n" + ROUND_TRIP.format(d=tmp_path)
    r = _run([sys.executable, "-c", code], tmp_path, TOMOCELL_NO_H5PY_HOOK="1")
    assert r.returncode != 0 and "Not a datatype" in r.stderr


def test_environment_hook_fixes_code_that_never_imports_tomocell(tmp_path: Path) -> None:
    """A notebook's ``import dolfinx.fem.petsc, h5py`` (no tomocell, no dolfinx_solver) works in the
    environment scripts/install made: the site hook (scripts/site/tomocell_h5py_deepbind.py) binds
    h5py to its own HDF5 and bootstraps the wheel's MPI before dolfinx."""
    made_by_install = Path(sys.prefix).resolve() == (REPO / ".venv").resolve()
    if importlib.util.find_spec("tomocell_h5py_deepbind") is None:
        assert not made_by_install, "scripts/install did not install the site hook into .venv"
        pytest.skip("environment not made by scripts/install (no site hook): tomocell/_hdf5.py covers tomocell's own imports")
    code = "import dolfinx.fem.petsc\n" + ROUND_TRIP.format(d=tmp_path)
    r = _run([sys.executable, "-c", code], tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr[-3000:]


def test_h5py_round_trip_under_mpirun(tmp_path: Path) -> None:
    mpirun = BIN / "mpirun"
    if not mpirun.exists():
        pytest.skip("no mpirun beside this interpreter")
    code = ("from mpi4py import MPI\nimport tomocell.physics.model\nimport os\n"
            f"os.makedirs(r'{tmp_path}/r%d' % MPI.COMM_WORLD.rank, exist_ok=True)\n"
            + ROUND_TRIP.format(d=f"{tmp_path}/r\" + str(MPI.COMM_WORLD.rank) + r\""))
    r = _run([str(mpirun), "-n", "2", sys.executable, "-c", code], tmp_path)
    assert r.returncode == 0 and r.stdout.count("ok") == 2, r.stdout + r.stderr[-3000:]
