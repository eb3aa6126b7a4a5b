"""--out safety (issue 15 item 1, issue 14 items 4-5): never delete a user's files, refuse foreign or
finished directories, follow symlinks safely, one run per directory, respect the umask, and leave
nothing behind when a command is refused."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tomocell.atomic import atomic_dir, write_json
from tomocell.cli import main
from tomocell.errors import InputError
from tomocell.manifest import run_manifest
from tomocell.outdir import LOCK_NAME, OutLock, check_out

GEN = ["generate", "--preset", "demo", "--format", "npy"]


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(d.rglob("*"))}


def test_user_files_in_out_are_never_touched(tmp_path, capsys):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    (out / "data").mkdir()
    (out / "data" / "scan.tif").write_bytes(b"\x00" * 10)
    before = _tree(out)
    for argv in (GEN + ["--out", str(out)], GEN + ["--out", str(out), "--overwrite"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "not empty" in err and "thesis.tex" in err and "Traceback" not in err
        assert _tree(out) == before  # nothing deleted, nothing added (no run.json, no lock)


def test_characterise_into_a_directory_with_user_files_keeps_them(tmp_path, capsys):
    """The issue's case: `characterise --out existing_dir` deleted the user's files with exit 0."""
    assert main(GEN + ["--out", str(tmp_path / "g")]) == 0
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    rc = main(["characterise", str(tmp_path / "g" / "electrode.npy"), "--out", str(out), "--fast",
               "--skip", "tortuosity,rve,depth,particles,pore_size,travel,figures,fields"])
    assert rc == 2
    assert (out / "notes.txt").read_text() == "keep me" and sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_atomic_dir_merges_and_never_deletes_other_entries(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "user.txt").write_text("u")
    (d / "metrics.json").write_text("old")
    with atomic_dir(d) as tmp:
        (tmp / "metrics.json").write_text("new")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a").write_text("a")
    assert (d / "user.txt").read_text() == "u" and (d / "metrics.json").read_text() == "new"
    assert (d / "sub" / "a").read_text() == "a"
    assert sorted(p.name for p in d.iterdir()) == ["metrics.json", "sub", "user.txt"]
    with pytest.raises(RuntimeError), atomic_dir(d) as tmp:
        (tmp / "metrics.json").write_text("broken")
        raise RuntimeError("writer failed")
    assert (d / "metrics.json").read_text() == "new" and sorted(p.name for p in d.iterdir()) == ["metrics.json", "sub", "user.txt"]


def test_other_stage_and_finished_run_refused_overwrite_replaces_only_own_outputs(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(GEN + ["--out", str(out)]) == 0
    assert (out / "electrode.npy").is_file()
    # a different stage into it: refused
    assert main(["mesh", str(out / "electrode.npy"), "--route", "voxel", "--out", str(out)]) == 2
    assert "holds a tomocell 'generate' run" in capsys.readouterr().err
    # the same stage again, finished: needs --overwrite
    before = _tree(out)
    assert main(GEN + ["--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and _tree(out) == before
    (out / "my_notes.md").write_text("mine")
    # --overwrite with another format: the old volume is a stale output of the old run and goes
    assert main(["generate", "--preset", "demo", "--format", "h5", "--seed", "2", "--out", str(out), "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "electrode.npy" not in names and "electrode.npy.json" not in names and "electrode.h5" in names
    assert (out / "my_notes.md").read_text() == "mine"
    assert not [n for n in names if n.startswith(".")]  # no lock, no previous-run folder, no temp files
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "ok" and rec["parameters"]["seed"] == 2


def test_failed_rerun_restores_the_good_run(tmp_path):
    out = tmp_path / "r"
    with run_manifest("unit", out, {"v": 1}, guard=True) as m:
        write_json(out / "result.json", {"v": 1})
        m.add_output("result", out / "result.json")
    good = _tree(out)
    with pytest.raises(RuntimeError), run_manifest("unit", out, {"v": 2}, guard=True, overwrite=True):
        write_json(out / "result.json", {"v": 2})
        write_json(out / "extra.json", {})
        raise RuntimeError("solver blew up")
    now = _tree(out)
    failed = json.loads(now.pop("run.failed.json"))
    assert now == good  # the good run and its outputs are back, byte for byte
    assert failed["status"] == "failed" and "solver blew up" in failed["error"]
    # a refused rerun leaves no record at all
    with pytest.raises(InputError), run_manifest("unit", out, {"v": 3}, guard=True, overwrite=True):
        write_json(out / "result.json", {"v": 3})
        raise InputError("bad input")
    assert {k: v for k, v in _tree(out).items() if k != "run.failed.json"} == good


def test_symlinks(tmp_path, capsys):
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    assert main(GEN + ["--out", str(link)]) == 0
    assert link.is_symlink() and (target / "electrode.npy").is_file()  # written through, link kept
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert main(GEN + ["--out", str(dangling)]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and "does not exist" in err and "Traceback" not in err
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()
    f = tmp_path / "file"
    f.write_text("x")
    assert main(GEN + ["--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err and f.read_text() == "x"


def test_outputs_respect_the_umask(tmp_path):
    code = ("import os, sys; os.umask(int(sys.argv[1], 8)); from tomocell.cli import main; "
            "sys.exit(main(['generate', '--preset', 'demo', '--out', sys.argv[2]]))")
    for mask, want_file, want_dir in (("022", 0o644, 0o755), ("077", 0o600, 0o700), ("002", 0o664, 0o775)):
        out = tmp_path / f"u{mask}"
        subprocess.run([sys.executable, "-c", code, mask, str(out)], check=True, capture_output=True)
        files = [p for p in out.rglob("*") if p.is_file()]
        assert len(files) >= 4
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == want_file, (mask, p.name, oct(p.stat().st_mode))
        assert stat.S_IMODE(out.stat().st_mode) == want_dir


def test_simulate_outputs_respect_the_umask(tmp_path):
    from tomocell.fem import have_dolfinx

    if not have_dolfinx():
        pytest.skip("DOLFINx is not installed")
    out = tmp_path / "sim"
    code = ("import os, sys; os.umask(0o022); from tomocell.cli import main; "
            "sys.exit(main(['simulate', 'box:2,2,3', '--c-rate', '5', '--dod', '50', '--out', sys.argv[1]]))")
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, capture_output=True)
    entries = list(out.rglob("*"))
    assert any(p.suffix == ".h5" for p in entries) and (out / "checkpoint").is_dir()
    for p in entries:
        want = 0o755 if p.is_dir() else 0o644
        assert stat.S_IMODE(p.stat().st_mode) == want, (p.relative_to(out), oct(p.stat().st_mode))


def test_lock_refuses_a_second_run(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    # another process holds the lock
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from tomocell.outdir import OutLock; "
        "l = OutLock(Path(sys.argv[1])); l.acquire(); print('locked', flush=True); time.sleep(60)"), str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(GEN + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "another tomocell run" in err and f"pid {holder.pid}" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()
    # the holder died: the lock is free again (flock dies with its process), the run goes ahead
    assert main(GEN + ["--out", str(out)]) == 0
    assert not (out / LOCK_NAME).exists()
    lk = OutLock(out)
    lk.acquire()
    lk.release()


def test_check_out_is_side_effect_free(tmp_path):
    d = tmp_path / "new" / "deeper"
    assert check_out(d, "mesh") == (d, None)
    assert not (tmp_path / "new").exists()


def _bad_inputs(tmp: Path) -> dict[str, list[str]]:
    nan = np.random.default_rng(0).random((6, 6, 6)).astype(np.float32)
    nan[0, 0, 0] = np.nan
    np.save(tmp / "nan.npy", nan)
    (tmp / "bad.xdmf").write_text("<Xdmf><broken")
    (tmp / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 20)
    o = str(tmp / "OUT")
    return {
        "generate": ["generate", "--preset", "demo", "--active-fraction", "0.9", "--out", o],
        "segment": ["segment", str(tmp / "nan.npy"), "--voxel-size", "0.5", "--out", o],
        "superimpose": ["superimpose", str(tmp / "nan.npy"), str(tmp / "nan.npy"), "--particle-labels",
                        "0=pore,1=active,2=blurry", "--cbd-labels", "0=pore,1=cbd", "--particle-voxel-size", "1",
                        "--cbd-voxel-size", "1", "--out", o],
        "characterise": ["characterise", str(tmp / "nan.npy"), "--voxel-size", "0.5", "--labels",
                         "0=pore,1=active,2=cbd", "--out", o],
        "mesh": ["mesh", str(tmp / "nan.npy"), "--voxel-size", "0.5", "--labels", "0=pore,1=active,2=cbd", "--out", o],
        "simulate": ["simulate", str(tmp / "bad.xdmf"), "--out", o],
        "simulate-rate": ["simulate", "box:2,2,3", "--c-rate", "inf", "--out", o],
        "analyse": ["analyse", str(tmp / "nowhere"), "--out", o],
        "demo": ["demo", "--c-rate", "-1", "--out", o],
        "study": ["study", "rate-capability", "--config", str(tmp / "missing.toml"), "--out", o],
    }


@pytest.mark.parametrize("name", [
    "generate", "segment", "superimpose", "characterise", "mesh", "simulate", "simulate-rate", "analyse", "demo", "study"])
def test_refused_command_leaves_nothing(tmp_path, capsys, name):
    argv = _bad_inputs(tmp_path)[name]
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.count("error") == 1, err
    assert not (tmp_path / "OUT").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temp files beside it either


def test_study_refuses_a_foreign_directory(tmp_path, capsys):
    out = tmp_path / "home"
    out.mkdir()
    (out / "report.md").write_text("my own report")
    assert main(["study", "rate-capability", "--out", str(out), "--report-only"]) == 2
    assert "not a tomocell run directory" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["report.md"] and (out / "report.md").read_text() == "my own report"


def test_a_directory_whose_run_is_writing_its_record_is_refused_as_in_use(tmp_path):
    """A run that finishes writes run.json through a hidden partial file under its lock: a second run
    arriving in that instant sees no record; it must say the directory is in use (the other run holds
    the lock), not that it is a foreign directory (a race seen in CI with two concurrent simulate runs)."""
    d = tmp_path / "out"
    d.mkdir()
    (d / ".run.abc123.partial.json").write_text('{"status": ')
    lock = OutLock(d)
    lock.acquire()
    try:
        with pytest.raises(InputError, match="another tomocell run"):
            check_out(d, "simulate")
    finally:
        lock.release()
    with pytest.raises(InputError, match="not a tomocell run directory"):  # nobody holds it: foreign
        check_out(d, "simulate")


def test_a_run_refused_by_the_lock_never_removes_the_directory(tmp_path, monkeypatch):
    """Two runs started on a missing --out both create it; the one that loses the lock must leave the
    directory to the winner (it removed it as "created by this run": the winner then failed with
    'No such file or directory', a CI race in test_two_concurrent_runs_into_one_out)."""
    from tomocell.outdir import claim_out

    d = tmp_path / "new" / "out"
    other: dict[str, OutLock] = {}
    real = OutLock.acquire

    def racing_acquire(self: OutLock) -> None:
        if not other:  # the other run takes the lock between this run's mkdir and its acquire
            other["lock"] = OutLock(self.path.parent)
            real(other["lock"])
            (self.path.parent / "timeseries.csv").write_text("t_s\n")
        real(self)

    monkeypatch.setattr(OutLock, "acquire", racing_acquire)
    try:
        with pytest.raises(InputError, match="another tomocell run"):
            claim_out(d, "simulate")
        assert (d / "timeseries.csv").is_file()
    finally:
        other["lock"].release()
