"""Minor items of issue 15 (item 9) not covered elsewhere."""

from __future__ import annotations

import pytest

import tomocell.fem  # noqa: F401  (before dolfinx)

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

from mpi4py import MPI  # noqa: E402

from tomocell.physics.cli import summary_line  # noqa: E402
from tomocell.physics.discharge import simulate_discharge  # noqa: E402
from tomocell.physics.synthetic import box_cell  # noqa: E402


def test_utilisation_after_cccv_is_that_of_the_discharge():
    """`simulate` after a CC-CV charge printed "0.0 % of nominal" (the net charge): the utilisation
    is the discharge segment's, the same as without the charge."""
    inp = box_cell(MPI.COMM_WORLD, n=(2, 2, 3))
    plain = simulate_discharge(inp, 5.0, dod_snapshots=(0.5,), max_ddod=0.1)
    cccv = simulate_discharge(inp, 5.0, dod_snapshots=(0.5,), max_ddod=0.1, charge_c_rate=5.0, cv_cutoff_c_rate=0.5)
    assert cccv.charge_Ah > 0.5 * cccv.capacity_Ah
    assert plain.utilisation > 0.5
    assert cccv.utilisation == pytest.approx(plain.utilisation, rel=1e-9)
    assert f"{100 * plain.utilisation:.1f} % of nominal" in summary_line(cccv, "r")
