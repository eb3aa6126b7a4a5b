"""Every failure mode of issue 15 items 6-9: a clear message, exit 2 (bad input) or 1 (failed run),
no traceback unless --debug, once under MPI; memory checked before reading or allocating; the
parameter evaluator bounded; unknown parameter keys refused with the closest name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tomocell import mpi
from tomocell.cli import main
from tomocell.errors import InputError

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tomocell.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _one_clean_line(err: str) -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
    assert len(lines) == 1, err


def test_nan_in_a_labelled_float_volume(tmp_path, capsys):
    v = np.zeros((6, 6, 6), dtype=np.float32)
    v[3:] = 1.0
    v[2, 2, 2] = np.nan
    np.save(tmp_path / "v.npy", v)
    for cmd in ("characterise", "mesh"):
        assert main([cmd, str(tmp_path / "v.npy"), "--voxel-size", "1", "--labels", "0=pore,1=active",
                     "--out", str(tmp_path / cmd)]) == 2
        err = capsys.readouterr().err
        assert "1 voxels are NaN" in err
        _one_clean_line(err)
        assert not (tmp_path / cmd).exists()


def test_generate_refuses_an_impossible_allocation_with_the_figure(tmp_path, capsys):
    assert main(["generate", "--voxel-size", "1e-4", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "needs about 480 PB" in err and "available" in err  # 2.7e16 voxels x 40 bytes
    _one_clean_line(err)
    assert not (tmp_path / "g").exists()


def test_size_checked_before_reading(tmp_path, monkeypatch, capsys):
    """A 1 GB sparse .npy against 100 MB of memory: refused from its header, the data never read."""
    path = tmp_path / "big.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": (1000, 1000, 1000)})
        fh.truncate(fh.tell() + 10**9)
    monkeypatch.setenv("TOMOCELL_MEMORY_BYTES", "1e8")
    assert main(["characterise", str(path), "--voxel-size", "1", "--labels", "0=pore,1=active",
                 "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "needs about 2 GB" in err and "100 MB available" in err
    _one_clean_line(err)
    # the greyscale reader counts its float32 copy too: 1 GB + 4 GB
    assert main(["segment", str(path), "--voxel-size", "1", "--out", str(tmp_path / "s")]) == 2
    assert "needs about 5 GB" in capsys.readouterr().err
    from tomocell.memory import available_bytes

    monkeypatch.delenv("TOMOCELL_MEMORY_BYTES")
    assert available_bytes() is None or available_bytes() > 0


def _mesh_file(tmp_path: Path) -> Path:
    v = np.zeros((6, 4, 4), dtype=np.uint8)
    v[2:] = 1
    v[:, 0, :] = 2
    np.save(tmp_path / "v.npy", v)
    assert main(["mesh", str(tmp_path / "v.npy"), "--voxel-size", "1", "--labels", "0=pore,1=active,2=cbd",
                 "--route", "voxel", "--separator", "2", "--no-msh", "--out", str(tmp_path / "m")]) == 0
    return tmp_path / "m" / "mesh.xdmf"


def test_corrupt_truncated_or_missing_mesh_files(tmp_path, capsys):
    from tomocell.fem import have_dolfinx

    if not have_dolfinx():
        pytest.skip("DOLFINx is not installed")
    xdmf = _mesh_file(tmp_path)
    h5s = sorted(xdmf.parent.glob("*.h5"))
    capsys.readouterr()
    bad = tmp_path / "bad"
    bad.mkdir()
    # not XML
    (bad / "a.xdmf").write_text("<Xdmf><Domain>")
    # truncated heavy data
    import shutil

    shutil.copy(xdmf, bad / xdmf.name)
    for h in h5s:
        data = h.read_bytes()
        (bad / h.name).write_bytes(data[: len(data) // 3])
    cases = [(bad / "a.xdmf", "not valid XDMF"), (bad / xdmf.name, "truncated")]
    # missing heavy data
    miss = tmp_path / "miss"
    miss.mkdir()
    shutil.copy(xdmf, miss / xdmf.name)
    cases.append((miss / xdmf.name, "which is missing"))
    for path, said in cases:
        assert main(["simulate", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert said in err, err
        _one_clean_line(err)
        assert "(and its .h5)" not in err
        assert not (tmp_path / "o").exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(InputError):
        main(["--debug", "generate", "--voxel-size", "1e-4", "--out", str(tmp_path / "g")])
    with pytest.raises(InputError):
        main(["generate", "--voxel-size", "1e-4", "--out", str(tmp_path / "g"), "--debug"])


def test_unexpected_error_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    import tomocell.microstructure.synthetic as syn

    def boom(**kw):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(syn, "generate_electrode", boom)
    assert main(["generate", "--preset", "demo", "--out", str(tmp_path / "g")]) == 1
    err = capsys.readouterr().err
    _one_clean_line(err)
    assert "ZeroDivisionError" in err and "--debug" in err
    rec = json.loads((tmp_path / "g" / "run.json").read_text())  # a failed run (work had started): recorded
    assert rec["status"] == "failed" and "ZeroDivisionError" in rec["error"]


@pytest.mark.parametrize("value, said", [("inf", "finite number > 0"), ("nan", "finite number > 0"), ("0", "> 0")])
def test_c_rate_messages(tmp_path, capsys, value, said):
    assert main(["simulate", "box:2,2,3", "--c-rate", value, "--out", str(tmp_path / "o")]) == 2
    assert said in capsys.readouterr().err


def test_expression_evaluator_is_bounded(tmp_path):
    """`9**9**9*c` used to hang the evaluator (a 370-million-digit integer): now refused at once.
    Run in a subprocess with a timeout so a regression fails instead of hanging the suite."""
    from tomocell.physics.parameters import load_raw

    raw = load_raw()
    raw["electrolyte"]["conductivity"] = {"expression": "9**9**9*c", "valid": [50, 3000]}
    (tmp_path / "p.json").write_text(json.dumps(raw))
    code = ("import sys; from tomocell.physics.parameters import load_parameters; from tomocell.errors import InputError\n"
            "try: load_parameters(sys.argv[1])\nexcept InputError as e: print('refused:', e); sys.exit(0)\nsys.exit(3)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.json")], capture_output=True, text=True,
                         timeout=60, env=ENV)
    assert res.returncode == 0 and "cannot be evaluated" in res.stdout, res.stdout + res.stderr
    from tomocell.physics.parameters import Func

    with pytest.raises(InputError, match="terms"):
        Func({"expression": "+".join(["x"] * 2000)})
    with pytest.raises(InputError, match="longer than"):
        Func({"expression": "x" + "*1" * 5000})
    with pytest.raises(InputError):
        Func({"expression": "(" * 5000 + "x" + ")" * 5000})
    f = Func({"expression": "2*x**2 + 3"})  # ordinary expressions are unchanged
    assert f(x=np.array([2.0]))[0] == 11.0


def test_unknown_parameter_keys_refused_with_closest_name(tmp_path, capsys):
    from tomocell.physics.parameters import load_parameters, load_raw

    raw = load_raw()
    raw["active"]["difusivity"] = raw["active"].pop("diffusivity")
    (tmp_path / "p.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"unknown parameter 'active.difusivity'; did you mean 'active.diffusivity'"):
        load_parameters(tmp_path / "p.json")
    raw = load_raw()
    raw["cbd"]["conductivity"]["vlaue"] = 1.0
    (tmp_path / "q.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match="did you mean 'cbd.conductivity.value'"):
        load_parameters(tmp_path / "q.json")
    assert main(["simulate", "box:2,2,3", "--param", "separator.porosty=0.4", "--out", str(tmp_path / "o")]) == 2
    assert "did you mean 'separator.porosity'" in capsys.readouterr().err
    for name in ("nmc111", "lco-ramadass2004", "xu2019"):  # the bundled sets pass their own schema
        load_parameters(name)


@pytest.mark.skipif(mpi.size() > 1, reason="starts mpirun itself")
def test_errors_printed_once_under_mpi(tmp_path):
    mpirun = REPO / ".venv" / "bin" / "mpirun"
    if not mpirun.exists():
        pytest.skip("no .venv/bin/mpirun")
    res = subprocess.run([str(mpirun), "-n", "2", *CLI, "generate", "--preset", "demo", "--active-fraction", "0.9",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300, env=ENV)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("tomocell generate: error:") == 1, res.stderr
    assert not (tmp_path / "o").exists()
