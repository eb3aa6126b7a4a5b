"""Shared test fixtures and CI rules: paths to ../shared/data, the MPI-only tests, strict skips.

* ``shared_file``: a file of ../shared/data, or a skip saying why (a failure under
  TOMOCELL_REQUIRE_DATA=1, which scripts/run-tests sets when CI is set).
* Tests marked ``mpi`` run under ``mpirun -n 2`` (scripts/run-tests' first pass). With one rank they
  are skipped, not run: a "1 rank vs 2 ranks" comparison on COMM_WORLD = COMM_SELF compares a
  computation with itself and would pass trivially.
* Under TOMOCELL_STRICT_SKIPS=1 (scripts/run-tests sets it when CI is set) a skip fails the test
  unless its reason matches OPTIONAL_SKIPS, the list of what is optional by design, each with why.
  A missing core dependency, a missing ../shared/data or a test that silently stopped applying
  therefore fails CI instead of going green.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TOMOCELL_SHARED_DATA", REPO.parent / "shared" / "data"))
STRICT_SKIPS = os.environ.get("TOMOCELL_STRICT_SKIPS") == "1"
MPI_ONLY_REASON = "an mpi test: meaningful only under mpirun -n >= 2 (it runs in scripts/run-tests' mpirun pass)"

#: skip reasons (regular expressions) that are optional by design -> why; any other skip fails under
#: TOMOCELL_STRICT_SKIPS=1
OPTIONAL_SKIPS: dict[str, str] = {
    re.escape(MPI_ONLY_REASON): "the serial pass skips the mpi tests; the mpirun -n 2 pass runs them",
    r"starts mpirun itself": "a test that launches mpirun is skipped when it already runs under mpirun",
    r"optional AGPL mesher": "TetGen is AGPL and not installed by tomocell (tests/test_mesh_surface.py)",
    r"this DOLFINx has ParMETIS: nothing to refuse": "the refusal of a missing partitioner needs a build without it",
    r"optional LGPL mesher": "mmgpy (the level-set route) is LGPL and not installed by tomocell",
    r"so 'no Python' cannot be simulated": "scripts/install's no-Python error cannot be provoked where a "
                                            "system Python >= 3.12 sits at a fixed path",
    r"run finished before (SIGTERM|the signal) arrived": "a signal race: a fast machine may finish the run "
                                                         "before the signal, then there is nothing to check",
}


def shared_file(name: str) -> Path:
    """Path of a file in ../shared/data, or skip the test saying why (fail under TOMOCELL_REQUIRE_DATA=1, as in CI)."""
    p = SHARED_DATA / name
    if not p.is_file() and os.environ.get("TOMOCELL_REQUIRE_DATA") == "1":  # set by scripts/run-tests under CI
        pytest.fail(f"external test volume {p} is absent and TOMOCELL_REQUIRE_DATA=1 (CI needs ../shared/data)")
    if not p.is_file():
        pytest.skip(f"external test volume {p} is absent (../shared/data is not beside this checkout)")
    return p


@pytest.fixture
def gan_volume_path() -> Path:
    """The 256^3 three-phase GAN NMC volume (0=pore, 85=active, 170=cbd; 0.390625 um voxels)."""
    return shared_file("nmc_gan_3phase_256.tif")


@pytest.fixture
def xct_volume_path() -> Path:
    """The 128^3 two-phase low-resolution XCT volume (0=pore+CBD, 128=NMC; voxel size unknown)."""
    return shared_file("nmc_xct_2phase_128.tif")


def pytest_configure(config):
    # kept as an alias of `mpi` (every cross-rank comparison is an mpi test)
    config.addinivalue_line("markers", "cross_ranks: compares results on 1 and >= 2 MPI ranks (skipped with "
                                       "one rank, like every `mpi` test)")


def pytest_collection_modifyitems(config, items):
    from mpi4py import MPI

    if MPI.COMM_WORLD.size > 1:
        return
    skip = pytest.mark.skip(reason=MPI_ONLY_REASON)
    for item in items:
        if item.get_closest_marker("mpi") is not None or item.get_closest_marker("cross_ranks") is not None:
            item.add_marker(skip)


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _strict_failure(rep) -> None:
    """Turn a skip report into a failure when strict skips are on and its reason is not optional."""
    if not (STRICT_SKIPS and rep.skipped) or hasattr(rep, "wasxfail"):
        return
    reason = _skip_reason(rep.longrepr)
    if any(re.search(pat, reason) for pat in OPTIONAL_SKIPS):
        return
    rep.outcome = "failed"
    rep.longrepr = (f"skipped under TOMOCELL_STRICT_SKIPS=1 (CI), and the reason is not one of "
                    f"tests/conftest.py OPTIONAL_SKIPS: {reason}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    _strict_failure(rep)
    return rep


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    rep = yield  # a module-level importorskip is a skipped collection
    _strict_failure(rep)
    return rep
