"""`tomocell demo` steps in-process: summary, resume, --fresh (the whole chain in a fresh process: test_main_job)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tomocell import demo

TINY_GENERATOR = demo.TINY_GENERATOR
TINY_MESH = demo.TINY_MESH


def _tiny(out: Path, **kw):
    return demo.run_demo(out, c_rate=2.0, generator=TINY_GENERATOR, meshing=TINY_MESH, snapshots=(0.5,), **kw)


@pytest.fixture
def front_steps_only(monkeypatch):
    """The demo without its simulate/plots steps (test_main_job runs those)."""
    monkeypatch.setattr(demo, "STEPS", [s for s in demo.STEPS if s[0] in ("generate", "characterise", "mesh")])


def test_demo_front_steps_summary_and_resume(tmp_path, front_steps_only):
    out = tmp_path / "demo"
    summary = _tiny(out)
    assert summary["phase fractions"]["active"] == pytest.approx(0.45, abs=0.02)
    # the summary carries characterise's tau (measured 2.44, 2.06, 3.08 on this 16 x 12 x 12 volume),
    # which is at least the Hashin-Shtrikman bound (3 - eps)/2 of an insulating matrix (1.29 here)
    metrics = json.loads((out / "characterisation" / "metrics.json").read_text())
    eps = summary["phase fractions"]["pore"]
    for axis, t in summary["pore tortuosity factor"].items():
        assert t == metrics["tortuosity"]["pore"][axis]["tau"] and t >= (3 - eps) / 2, (axis, t)
    assert "tets" in summary["mesh"]
    for f in ("volume/volume.tif", "characterisation/metrics.json", "characterisation/particle_labels.npy",
              "mesh/mesh.xdmf", "mesh/mesh.h5", "run.json", "summary.json"):
        assert (out / f).is_file(), f
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "ok" and set(run["timings_s"]) >= {"generate", "characterise", "mesh"}

    stamp = {f: (out / f).stat().st_mtime_ns for f in ("volume/volume.tif", "mesh/mesh.h5")}
    again = _tiny(out)  # resume: finished steps are reused, not recomputed
    assert again["mesh"] == summary["mesh"]
    assert {f: (out / f).stat().st_mtime_ns for f in stamp} == stamp

    _tiny(out, seed=1)  # other settings: recomputed
    assert (out / "volume/volume.tif").stat().st_mtime_ns != stamp["volume/volume.tif"]
    _tiny(out, seed=1, fresh=True)
    assert json.loads((out / "volume/run.json").read_text())["parameters"]["seed"] == 1


def test_demo_cli_prints_summary(tmp_path, front_steps_only, monkeypatch, capsys):
    from tomocell import cli

    monkeypatch.setattr(demo, "DEMO_GENERATOR", TINY_GENERATOR)
    monkeypatch.setattr(demo, "DEMO_MESH", TINY_MESH)
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--c-rate", "2"]) == 0
    out = capsys.readouterr().out
    assert "phase fractions" in out and "mesh:" in out and str(tmp_path / "d") in out
