"""`tomocell generate | segment | superimpose`: outputs, reports, and bad input (exit 2, no volume file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tomocell.cli import main
from tomocell.microstructure.io import read_volume
from tomocell.microstructure.synthetic import generate_cbd_scan


def _files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()} if d.exists() else set()


def test_generate_segment_superimpose_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = tmp_path / "gen"
    assert main(["generate", "--preset", "demo", "--seed", "1", "--greyscale", "--out", str(gen)]) == 0
    assert {"electrode.tif", "greyscale.tif", "report.json", "report_slices.png", "run.json"} <= _files(gen)
    vol = read_volume(gen / "electrode.tif")
    rep = json.loads((gen / "report.json").read_text())
    assert rep["fractions"] == pytest.approx(vol.fractions())
    assert rep["isolated_clusters"]["solid"]["n_isolated"] == 0
    assert len(rep["particles"]["d_eq_um"]) == rep["generator"]["achieved"]["n_particles"]
    run = json.loads((gen / "run.json").read_text())
    assert run["status"] == "ok" and run["stage"] == "generate"

    seg = tmp_path / "seg"
    assert main(["segment", str(gen / "greyscale.tif"), "--out", str(seg)]) == 0  # voxel size from the file
    svol = read_volume(seg / "segmented.tif")
    assert svol.voxel_size_um == vol.voxel_size_um
    assert np.mean(svol.labels == vol.labels) > 0.95
    srep = json.loads((seg / "report.json").read_text())
    assert len(srep["thresholds"]) == 2 and srep["sensitivity"]["shifts"]
    assert json.loads((seg / "run.json").read_text())["inputs"]["scan"]["sha256"]

    # DSS: the electrode's CBD read as the blurry phase of a particle scan (stored 0/128/255)
    stored = np.array([0, 255, 128], np.uint8)[vol.labels]
    tifffile.imwrite(tmp_path / "particles.tif", stored)
    cbd = generate_cbd_scan((80, 80, 80), 0.25, porosity=0.4, seed=0)
    tifffile.imwrite(tmp_path / "cbd.tif", np.where(cbd.labels == 2, 255, 0).astype(np.uint8))
    dss = tmp_path / "dss"
    assert main(["superimpose", str(tmp_path / "particles.tif"), str(tmp_path / "cbd.tif"), "--out", str(dss),
                 "--particle-labels", "0=pore,255=active,128=blurry", "--particle-voxel-size", "0.5",
                 "--cbd-labels", "0=pore,255=cbd", "--cbd-voxel-size", "0.25", "--format", "h5"]) == 0
    out = read_volume(dss / "superimposed.h5")
    keep = vol.labels != 2
    assert np.array_equal(out.labels[keep], vol.labels[keep])
    drep = json.loads((dss / "report.json").read_text())
    assert drep["cbd_porosity_after"] == pytest.approx(0.4, abs=0.02)
    assert "DSS" in capsys.readouterr().out


def test_bad_input_exit_2_and_no_volume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    g[0, 0, 0] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", g)
    out = tmp_path / "o1"
    assert main(["segment", str(tmp_path / "nan.tif"), "--voxel-size", "0.2", "--out", str(out)]) == 2
    assert "NaN" in capsys.readouterr().err
    assert not out.exists()  # a refused command leaves nothing: no directory, no run.json (issue 14.5)
    tifffile.imwrite(tmp_path / "ok.tif", np.random.default_rng(0).random((8, 8, 8)).astype(np.float32))
    out = tmp_path / "o2"
    assert main(["segment", str(tmp_path / "ok.tif"), "--out", str(out)]) == 2
    assert "voxel size" in capsys.readouterr().err and not out.exists()
    out = tmp_path / "o3"
    assert main(["segment", str(tmp_path / "ok.tif"), "--voxel-size", "-1", "--out", str(out)]) == 2
    assert "positive" in capsys.readouterr().err
    out = tmp_path / "o4"
    assert main(["generate", "--preset", "demo", "--active-fraction", "0.9", "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["superimpose", str(tmp_path / "ok.tif"), str(tmp_path / "ok.tif"), "--out", str(tmp_path / "o5"),
                 "--particle-labels", "0=pore,1=active"]) == 2
    assert "blurry" in capsys.readouterr().err
