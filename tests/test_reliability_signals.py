"""Interruptions, resume and concurrent runs (issue 15 items 3-5 and 9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tomocell.fem  # noqa: F401  (before dolfinx)

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

from mpi4py import MPI  # noqa: E402

from tomocell.cli import main  # noqa: E402
from tomocell.errors import InputError, SolverError  # noqa: E402
from tomocell.physics.cli import simulate_file  # noqa: E402
from tomocell.physics.discharge import simulate_discharge  # noqa: E402
from tomocell.physics.synthetic import box_cell  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CLI = [sys.executable, "-m", "tomocell.cli"]


def _interrupted_run(out: Path, c_rate: float = 5.0, **kw) -> None:
    """A run stopped after 5 steps with a checkpoint at step 4 (as if killed), recorded by the CLI path."""
    with pytest.raises(SolverError, match="no cut-off"):
        simulate_file("box:2,2,3", c_rate, out, dod_snapshots=(0.5,), checkpoint_every=4, max_steps=5, guard=True, **kw)
    assert (out / "checkpoint" / "meta.json").is_file()


def test_resume_refuses_any_changed_setting_naming_it(tmp_path, capsys):
    out = tmp_path / "r"
    _interrupted_run(out)
    record = (out / "run.json").read_bytes()
    ckpt = {p.name: p.read_bytes() for p in (out / "checkpoint").iterdir()}
    cases = [
        (["--c-rate", "2"], "c_rate was 5.0 in the interrupted run, 2.0 now"),
        (["--c-rate", "5", "--param", "active.diffusivity=2e-14"], "active.diffusivity"),
        (["--c-rate", "5", "--dod", "50,70"], "dod_snapshots"),
        (["--c-rate", "5", "--max-ddod", "0.05"], "max_ddod"),
        (["--c-rate", "5", "--rest-min", "3"], "rest_s"),
        (["--c-rate", "5", "--li", "ideal"], "li_kinetics"),
        (["--c-rate", "5", "--params", "xu2019"], "parameters differ"),
    ]
    for extra, named in cases:
        argv = ["simulate", "box:2,2,3", "--out", str(out), "--resume", "--dod", "50", *extra]
        assert main(argv) == 2, extra
        err = capsys.readouterr().err
        assert "--resume refused" in err and named in err, (extra, err)
        assert (out / "run.json").read_bytes() == record  # a refused resume changes nothing
        assert {p.name: p.read_bytes() for p in (out / "checkpoint").iterdir()} == ckpt
    # another mesh
    assert main(["simulate", "box:2,2,4", "--c-rate", "5", "--dod", "50", "--out", str(out), "--resume"]) == 2
    assert "--resume refused" in capsys.readouterr().err
    # the same settings resume and finish, and match an uninterrupted run
    assert main(["simulate", "box:2,2,3", "--c-rate", "5", "--dod", "50", "--out", str(out), "--resume"]) == 0
    ref = simulate_discharge(box_cell(MPI.COMM_WORLD, n=(2, 2, 3)), 5.0, dod_snapshots=(0.5,))
    got = json.loads((out / "run.json").read_text())["results"]
    assert got["steps"] == ref.steps and got["capacity_Ah"] == pytest.approx(ref.capacity_Ah, rel=1e-10)


def test_resume_mismatch_library_call():
    inp = box_cell(MPI.COMM_WORLD, n=(2, 2, 3))
    with pytest.raises(InputError, match="--resume: no checkpoint"):
        simulate_discharge(inp, 5.0, out_dir=Path("/nonexistent/x"), resume=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {path.name} appeared: {proc.communicate()}")
        if time.time() - t0 > timeout:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.1)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_in_the_time_loop_checkpoints_and_exits_128_plus_signum(tmp_path, sig, code):
    out = tmp_path / "r"
    cmd = [*CLI, "simulate", "box:3,3,4", "--c-rate", "0.2", "--max-ddod", "0.01", "--checkpoint-every", "3",
           "--dod", "50", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "checkpoint" / "meta.json", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("run finished before the signal arrived")
    assert proc.returncode == code, err
    assert signal.Signals(sig).name in err and "checkpoint written" in err and "--resume" in err
    assert "Traceback" not in err and "Newton" not in err and "PETSC ERROR" not in err
    assert err.count("tomocell simulate:") == 1
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "interrupted"
    assert not list(out.glob(".*partial*")) and not (out / ".tomocell.lock").exists()
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["step"] >= 3
    res = subprocess.run([*cmd, "--resume"], env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "ok"


def test_sigterm_outside_the_time_loop(tmp_path):
    """During start-up (imports, mesh, JIT): a clean exit 143, no PETSc error dump, no traceback."""
    out = tmp_path / "r"
    proc = subprocess.Popen([*CLI, "simulate", "box:3,3,4", "--out", str(out)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "run.json", proc)  # the run has claimed --out, the model is being set up
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("run finished before the signal arrived")
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "PETSC ERROR" not in err and "SIGTERM" in err
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert not (out / ".tomocell.lock").exists()


def test_two_concurrent_runs_into_one_out(tmp_path):
    out = tmp_path / "same"
    cmd = [*CLI, "simulate", "box:3,3,4", "--c-rate", "2", "--dod", "50", "--out", str(out)]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.communicate()[1]) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    err = next(e for c, e in results if c == 2)
    # refused by the lock while the other ran, or (if it had already finished) as a finished run
    assert "another tomocell run" in err or "already holds a finished" in err, err
    assert "Traceback" not in err and "Directory not empty" not in err
    assert json.loads((out / "run.json").read_text())["status"] == "ok"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_rerun_leaves_no_stale_snapshots(tmp_path):
    out = tmp_path / "r"
    assert main(["simulate", "box:2,2,3", "--c-rate", "5", "--dod", "25,50", "--out", str(out)]) == 0
    snapshots = lambda: sorted(p.name for p in (out / "fields").iterdir() if p.is_dir())  # noqa: E731
    assert snapshots() == ["dod025", "dod050"]
    assert main(["simulate", "box:2,2,3", "--c-rate", "5", "--dod", "70", "--out", str(out), "--overwrite"]) == 0
    assert snapshots() == ["dod070"]
    # the time series lists only the new run's snapshot, and names no stale file
    xdmf = (out / "fields" / "active.xdmf").read_text()
    assert "dod070" in xdmf and "dod025" not in xdmf and "dod050" not in xdmf
    if (out / "checkpoint").exists():  # only the new run's
        assert json.loads((out / "checkpoint" / "meta.json").read_text())["fingerprint"]["dod_snapshots"] == [0.7]


def test_checkpoint_swap_keeps_a_whole_copy_at_every_instant(tmp_path, monkeypatch):
    """Killed between the two renames of the swap: the previous checkpoint is still whole and --resume
    reads it (the old code deleted it before the new one was in place)."""
    import numpy as np

    from tomocell.physics import checkpoint as ckpt
    from tomocell.physics import outputs

    comm = MPI.COMM_WORLD
    fp = {"c_rate": 1.0}
    arrays = [np.full(3, float(i)) for i in range(len(ckpt.ARRAYS))]
    ckpt.write_checkpoint(comm, tmp_path, arrays, {"step": 1, "fingerprint": fp})
    real = os.replace
    calls = []

    def dies_on_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the renames")
        return real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        ckpt.write_checkpoint(comm, tmp_path, [a + 10 for a in arrays], {"step": 2, "fingerprint": fp})
    monkeypatch.setattr(outputs.os, "replace", real)
    assert not (tmp_path / "checkpoint").exists()
    got, meta = ckpt.read_checkpoint(comm, tmp_path, fp)
    assert meta["step"] == 1 and np.array_equal(got[0], arrays[0])
    # the next write cleans up the half-done swap and its temporary directory
    ckpt.write_checkpoint(comm, tmp_path, arrays, {"step": 3, "fingerprint": fp})
    assert ckpt.read_checkpoint(comm, tmp_path, fp)[1]["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
