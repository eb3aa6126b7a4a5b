"""Shared test fixtures: paths to ../shared/data (skip with a reason when absent), MPI info."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TOMOCELL_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_file(name: str) -> Path:
    """Path of a file in ../shared/data, or skip the test saying why (fail under TOMOCELL_REQUIRE_DATA=1, as in CI)."""
    p = SHARED_DATA / name
    if not p.is_file() and os.environ.get("TOMOCELL_REQUIRE_DATA") == "1":  # set by .ci/run: CI must not skip
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
    config.addinivalue_line("markers", "cross_ranks: compares results on 1 and >= 2 MPI ranks; skipped (not "
                                       "passed trivially) when COMM_WORLD has one rank, i.e. outside mpirun")


def pytest_collection_modifyitems(config, items):
    from mpi4py import MPI

    if MPI.COMM_WORLD.size > 1:
        return
    skip = pytest.mark.skip(reason="cross-rank comparison: meaningful only under mpirun -n >= 2 (scripts/run-tests)")
    for item in items:
        if item.get_closest_marker("cross_ranks") is not None:
            item.add_marker(skip)
