"""The mesh-convergence study script runs end to end, writes its table and figure, and resumes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path


SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "study_mesh_convergence.py"


def test_mesh_convergence_script_tables_figure_and_reuse(tmp_path):
    out = tmp_path / "mc"
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--preset", "tiny", "--box-um", "8", "6", "6",
           "--cases", "smoothed:1", "voxel:1", "--rates", "5", "--separator-um", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, timeout=900)
    rows = list(csv.DictReader(open(out / "mesh_convergence.csv")))
    assert [(r["route"], r["c_rate"]) for r in rows] == [("smoothed", "5.0"), ("voxel", "5.0")]
    for r in rows:
        assert 0 < float(r["capacity_mAh_g"]) < 278  # below the theoretical NMC111 capacity
        assert int(r["tets"]) > 6 * 16 * 12 * 12  # 6 tets per voxel plus the separator
    # same electrode, same element count: the staircase has more reacting area than the smoothed mesh
    sm, vx = rows
    assert float(vx["active_pore_area_um2"]) > float(sm["active_pore_area_um2"])
    table = (out / "mesh_convergence.md").read_text()
    assert table.count("\n") == 4 and "smoothed conformal, 0.5 um cells" in table
    assert (out / "mesh_convergence.png").stat().st_size > 10_000
    # a rerun reuses the meshes and the finished discharges (nothing is simulated again)
    stamp = (out / "voxel-c1" / "5C" / "timeseries.csv").stat().st_mtime_ns
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, timeout=300)
    assert (out / "voxel-c1" / "5C" / "timeseries.csv").stat().st_mtime_ns == stamp
