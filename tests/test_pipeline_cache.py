"""The pipeline's one step cache (tomocell/pipeline.py): when a recorded step is reused and when it
is run again, for the record itself and for the API's ``tc.simulate(..., reuse=True)``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tomocell.atomic import write_json
from tomocell.manifest import RunManifest
from tomocell.pipeline import canonical, finished_run, read_manifest


def _record(d, stage="simulate", params=None, status="ok", inputs=None, outputs=("timeseries.csv",)):
    d.mkdir(parents=True, exist_ok=True)
    m = RunManifest(stage, d, params if params is not None else {"c_rate": 1.0, "snapshots": (0.5,)})
    for name, path in (inputs or {}).items():
        m.add_input(name, path)
    for o in outputs:
        (d / o).write_text("t_s\n0\n")
    m.set_result(capacity_mAh_g=150.0)
    m.write(status=status)
    return d


def test_a_finished_step_with_the_same_settings_is_reused(tmp_path):
    d = _record(tmp_path / "run")
    data = finished_run(d, stage="simulate", parameters={"c_rate": 1.0, "snapshots": [0.5]}, outputs=["timeseries.csv"])
    assert data is not None and data["results"]["capacity_mAh_g"] == 150.0
    # tuples and numpy scalars compare as they are stored
    assert finished_run(d, parameters={"c_rate": np.float64(1.0), "snapshots": (0.5,)}) is not None


@pytest.mark.parametrize("case", ["changed setting", "other stage", "failed", "running", "missing output",
                                  "no record", "corrupt record"])
def test_a_step_is_run_again_when_it_cannot_be_reused(tmp_path, case, caplog):
    d = _record(tmp_path / "run", status={"failed": "failed", "running": "running"}.get(case, "ok"))
    kw = {"stage": "simulate", "parameters": {"c_rate": 1.0, "snapshots": [0.5]}, "outputs": ["timeseries.csv"]}
    if case == "changed setting":
        kw["parameters"] = {"c_rate": 2.0, "snapshots": [0.5]}
    elif case == "other stage":
        kw["stage"] = "characterise"
    elif case == "missing output":
        (d / "timeseries.csv").unlink()
    elif case == "no record":
        (d / "run.json").unlink()
    elif case == "corrupt record":
        (d / "run.json").write_text('{"status": "ok", ')
    with caplog.at_level("INFO"):
        assert finished_run(d, **kw) is None
    if case not in ("no record",):
        assert caplog.text, "the reason a step is redone must be logged"


def test_a_changed_input_makes_the_step_run_again(tmp_path):
    src = tmp_path / "volume.tif"
    src.write_bytes(b"abc")
    d = _record(tmp_path / "run", inputs={"volume": src})
    sha = read_manifest(d)["inputs"]["volume"]["sha256"]
    assert finished_run(d, inputs={"volume": sha}) is not None
    src.write_bytes(b"abd")
    from tomocell.manifest import sha256_of

    assert finished_run(d, inputs={"volume": sha256_of(src)}) is None


def test_key_selects_what_must_match(tmp_path):
    d = _record(tmp_path / "run", params={"c_rate": 1.0, "demo": {"seed": 0}})
    (d / "settings.json").write_text(json.dumps({"rate": 3}))
    assert finished_run(d, parameters={"seed": 0}, key=lambda data: data["parameters"]["demo"]) is not None
    assert finished_run(d, parameters={"seed": 1}, key=lambda data: data["parameters"]["demo"]) is None
    assert finished_run(d, parameters={"rate": 3}, key=lambda _: json.loads((d / "settings.json").read_text())) is not None
    # a settings file that cannot be read is a reason to rerun, not a crash
    assert finished_run(d, parameters={"rate": 3}, key=lambda _: json.loads((d / "absent.json").read_text())) is None


def test_canonical_is_what_write_json_stores(tmp_path):
    params = {"a": (1, 2), "b": np.float32(0.25), "c": math.inf, "d": np.arange(3), 4: [np.nan]}
    write_json(tmp_path / "p.json", params)
    assert canonical(params) == json.loads((tmp_path / "p.json").read_text())


def test_simulate_reuses_a_finished_run_of_the_same_mesh(tmp_path):
    """``tc.simulate(..., reuse=True)`` returns the recorded run for the same mesh and settings, and
    runs again when the C-rate or the mesh changes."""
    import tomocell as tc
    from tomocell.meshing.meshfile import write_mesh
    from tomocell.meshing.voxel import voxel_mesh
    from tomocell.microstructure.volume import ACTIVE, PORE, Volume

    lab = np.full((6, 4, 4), PORE, dtype=np.uint8)
    lab[2:6, 1:3, 1:3] = ACTIVE
    mesh = tmp_path / "mesh" / "mesh.xdmf"
    write_mesh(mesh, voxel_mesh(Volume(lab, (0.5, 0.5, 0.5)), separator_um=1.0))
    out = tmp_path / "run"
    first = tc.simulate(mesh, out=out, c_rate=5.0, reuse=True)
    started = read_manifest(out)["started"]
    mtime = (out / "timeseries.csv").stat().st_mtime_ns
    again = tc.simulate(mesh, out=out, c_rate=5.0, reuse=True)
    assert again.summary == first.summary
    assert (out / "timeseries.csv").stat().st_mtime_ns == mtime and read_manifest(out)["started"] == started
    # another C-rate is another run
    other = tc.simulate(mesh, out=tmp_path / "run", c_rate=8.0, reuse=True)
    assert other.summary["capacity_mAh_g"] != first.summary["capacity_mAh_g"]
    assert (out / "timeseries.csv").stat().st_mtime_ns != mtime
    # an experiment run is reused for the same steps only
    exp = tmp_path / "exp"
    tc.simulate(mesh, out=exp, experiment=["Discharge at 5C for 60 seconds"], reuse=True)
    mtime = (exp / "timeseries.csv").stat().st_mtime_ns
    tc.simulate(mesh, out=exp, experiment=["Discharge at 5C for 60 seconds"], reuse=True)
    assert (exp / "timeseries.csv").stat().st_mtime_ns == mtime
    tc.simulate(mesh, out=exp, experiment=["Discharge at 5C for 30 seconds"], reuse=True)
    assert (exp / "timeseries.csv").stat().st_mtime_ns != mtime
