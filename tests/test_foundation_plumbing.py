"""Shared plumbing: atomic output, run manifests, the Volume contract, logging/progress."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest

from tomocell.atomic import atomic_dir, atomic_path, write_json
from tomocell.errors import InputError
from tomocell.log import progress
from tomocell.manifest import run_manifest, sha256_of
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer died")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".bin" and tmp.parent == tmp_path
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and len(list(tmp_path.iterdir())) == 1


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    d = tmp_path / "res"
    with atomic_dir(d) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(d) as tmp:
            (tmp / "a.txt").write_text("2")
            raise ValueError
    assert (d / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_write_json_converts_numpy_and_nonfinite(tmp_path):
    p = write_json(tmp_path / "x.json", {"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"), "d": np.int64(4)})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": 4}


def test_run_manifest_records_inputs_and_failure(tmp_path):
    inp = tmp_path / "in.dat"
    inp.write_bytes(b"abc")
    with run_manifest("unit", tmp_path / "ok", {"p": 1}) as m:
        m.add_input("volume", inp)
        with m.timed("work"):
            pass
        m.set_result(answer=42)
    data = json.loads((tmp_path / "ok" / "run.json").read_text())
    assert data["status"] == "ok" and data["parameters"] == {"p": 1} and data["results"]["answer"] == 42
    assert data["inputs"]["volume"]["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert data["mpi_size"] >= 1 and "numpy" in data["versions"] and "work" in data["timings_s"]
    with pytest.raises(KeyError):
        with run_manifest("unit", tmp_path / "bad"):
            raise KeyError("boom")
    bad = json.loads((tmp_path / "bad" / "run.json").read_text())
    assert bad["status"] == "failed" and "boom" in bad["error"]


def test_sha256_of_directory_depends_on_content(tmp_path):
    (tmp_path / "a").write_text("1")
    h1 = sha256_of(tmp_path)
    (tmp_path / "a").write_text("2")
    assert sha256_of(tmp_path) != h1


def test_volume_contract():
    lab = np.zeros((4, 3, 2), dtype=np.int32)
    lab[0] = ACTIVE
    lab[1] = CBD
    v = Volume(lab, 0.5)
    assert v.labels.dtype == np.uint8 and v.voxel_size_um == (0.5, 0.5, 0.5)
    assert v.extent_um == (2.0, 1.5, 1.0)
    assert v.fractions() == pytest.approx({"pore": 0.5, "active": 0.25, "cbd": 0.25})
    v.require_phases("pore", "active", "cbd")
    with pytest.raises(InputError, match="no cbd"):
        Volume(np.full((2, 2, 2), PORE, np.uint8), 1.0).require_phases("pore", "cbd")
    with pytest.raises(InputError, match="voxel size is missing"):
        Volume(lab, None)
    with pytest.raises(InputError, match="positive"):
        Volume(lab, (1.0, -1.0, 1.0))
    with pytest.raises(InputError, match="integer"):
        Volume(lab.astype(float), 1.0)
    with pytest.raises(InputError, match="3D"):
        Volume(lab[0], 1.0)
    with pytest.raises(InputError, match="not phase codes"):
        Volume(np.full((2, 2, 2), 7, np.uint8), 1.0)


def test_volume_from_stored_labels():
    stored = np.array([0, 85, 170, 85], dtype=np.uint8).reshape(1, 2, 2)
    v = Volume.from_stored_labels(stored, 0.39, {0: "pore", 85: "active", 170: "cbd"})
    assert v.labels.ravel().tolist() == [PORE, ACTIVE, CBD, ACTIVE]
    assert v.metadata["label_map"][85] == "active"
    with pytest.raises(InputError, match=r"\[170\]"):
        Volume.from_stored_labels(stored, 0.39, {0: "pore", 85: "active"})


def test_progress_logs_when_not_a_terminal(caplog):
    from tomocell.log import setup_logging

    setup_logging(0)  # configure first: it sets propagate=False, which the test lifts below
    caplog.set_level(logging.INFO, logger="tomocell")
    logging.getLogger("tomocell").propagate = True
    try:
        assert list(progress(range(5), desc="unit", log_every_s=0.0)) == list(range(5))
    finally:
        logging.getLogger("tomocell").propagate = False
    assert any("unit" in r.getMessage() for r in caplog.records)


def test_write_csv_rows_full_precision_nan_and_column_order(tmp_path):
    import numpy as np

    from tomocell.atomic import write_csv_rows

    p = write_csv_rows(tmp_path / "t.csv", [{"b": np.float64(0.1) + 0.2, "a": np.int64(3)}, {"a": float("nan"), "c": "x"}])
    assert p.read_text().splitlines() == ["b,a,c", "0.30000000000000004,3,", ",nan,x"]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
