"""Set-up files agree with each other: install script, Docker image, lock file, README, CI."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pip_installs(text: str) -> list[list[str]]:
    """Argument lists of every `pip install` in a shell/Dockerfile text (line continuations joined)."""
    text = text.replace("\\\n", " ")
    out = []
    for m in re.finditer(r"pip install ([^\n&;|]+)", text):
        args = [a for a in shlex.split(m.group(1)) if not a.startswith("-q")]
        out.append([a for a in args if a not in ("--no-cache-dir",)])
    return out


def _normalise(args: list[str]) -> set[str]:
    keep = set()
    for a in args:
        if a in ("-e", "--upgrade", "--no-deps", "--no-build-isolation"):
            continue
        keep.add("." if a in (".", '".[fem,test]"', ".[fem,test]") else a)
    return keep


def test_docker_installs_exactly_the_pinned_set_of_the_install_script():
    docker = _pip_installs((REPO / "docker/Dockerfile").read_text())
    install = _pip_installs((REPO / "scripts/install").read_text())
    install = [a for a in install if not any(x.startswith(".[fem,test") for x in a)]  # --relock path only
    assert [sorted(_normalise(a)) for a in docker] == [sorted(_normalise(a)) for a in install]
    assert any("requirements.lock" in a for a in docker)
    assert all("--no-deps" in a for a in docker if "." in a)


def test_lock_pins_every_dependency_and_the_fem_stack():
    lock = (REPO / "requirements.lock").read_text().lower()
    pinned = {line.split("==")[0].replace("_", "-") for line in lock.splitlines() if "==" in line}
    assert "dolfinx-solver-real==0.11.0.post0" in lock
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.split(r"[<>=!~ ]", dep, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is a dependency but not pinned in requirements.lock"
    assert all("==" in line for line in lock.splitlines() if line.strip() and not line.startswith("#"))


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci/run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", ci, re.M)
    make = (REPO / "Makefile").read_text()
    assert "scripts/run-tests" in make and "tomocell demo" in make


def test_install_script_is_valid_bash_and_explains_missing_python(tmp_path):
    subprocess.run(["bash", "-n", str(REPO / "scripts/install")], check=True)
    subprocess.run(["bash", "-n", str(REPO / "scripts/run-tests")], check=True)
    # With no usable interpreter anywhere, the message names the problem (run on a copy of the repo so
    # the real .venv is untouched; PATH keeps only the basics, HOME points to an empty folder).
    import glob

    import pytest

    if glob.glob("/usr/bin/python3.1[2-9]") + glob.glob("/usr/local/bin/python3.1[2-9]"):
        pytest.skip("a system Python >= 3.12 exists at a fixed path, so 'no Python' cannot be simulated")
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for f in ("scripts/install", "requirements.lock", "pyproject.toml"):
        (repo / f).write_bytes((REPO / f).read_bytes())
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    for tool in ("bash", "cat", "sha256sum", "cut", "dirname", "date", "ls", "sort", "rm", "printf", "cc"):
        src = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if src.startswith("/"):
            (fakebin / tool).symlink_to(src)
    r = subprocess.run(["bash", str(repo / "scripts/install")], capture_output=True, text=True,
                       env={"PATH": str(fakebin), "HOME": str(tmp_path)})
    assert r.returncode != 0
    assert "no Python >= 3.12" in r.stderr
