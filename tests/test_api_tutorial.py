"""The public Python API (`import tomocell as tc`) and the literate tutorial that uses it (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_tomocell_is_cheap_and_lists_the_stages() -> None:
    code = ("import sys, time; t = time.perf_counter(); import tomocell as tc; dt = time.perf_counter() - t\n"
            "heavy = [m for m in ('dolfinx', 'gmsh', 'pyvista', 'petsc4py', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "for name in ('read_volume', 'generate', 'segment', 'superimpose', 'characterise', 'mesh', 'simulate',\n"
            "             'analyse', 'run_study'):\n"
            "    assert callable(getattr(tc, name)) and getattr(tc, name).__doc__, name\n"
            "print(dt)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_api_volume_round_trip_and_errors(tmp_path: Path) -> None:
    import numpy as np
    import pytest

    import tomocell as tc
    from tomocell.errors import InputError

    vol = tc.generate(preset="tiny", seed=3)
    p = vol.save(tmp_path / "v.tif")
    back = tc.read_volume(p)
    assert np.array_equal(back.labels, vol.labels) and back.voxel_size_um == vol.voxel_size_um
    with pytest.raises(InputError, match="unknown preset"):
        tc.generate(preset="huge")
    with pytest.raises(AttributeError):
        tc.no_such_stage  # noqa: B018


def test_tutorial_runs_as_a_script(tmp_path: Path) -> None:
    """scripts/tutorial.py end to end (fresh process): volume -> metrics -> mesh -> 2C discharge -> figures."""
    env = {**os.environ, "TOMOCELL_TUTORIAL_OUT": str(tmp_path), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYVISTA_OFF_SCREEN": "true"}
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "tutorial.py")], env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "mAh/g delivered" in r.stdout and "pore tortuosity factor" in r.stdout
    assert (tmp_path / "discharge-2C" / "timeseries.csv").is_file()
    assert (tmp_path / "analysis" / "report.md").is_file()
    # the tutorial's numbers are the run's numbers (printed from the result object, not typed in)
    import json

    res = json.loads((tmp_path / "discharge-2C" / "run.json").read_text())["results"]
    assert f"{res['capacity_mAh_g']:.1f} mAh/g" in r.stdout
