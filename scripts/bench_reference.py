"""Side-by-side runs of scripts/bench_physics.py against a reference commit (``--reference COMMIT``).

The reference code is checked out with ``git worktree add --detach`` (kept and reused under the work
directory) and imported through a staging directory that lays its folders out as the installed
package (``tomocell``, ``tomocell.physics`` -> ``physics/`` ...), put first on ``PYTHONPATH``: the same
venv, interpreter, PETSc and MPI run both versions. Each version runs in its own fresh interpreter
(``bench_physics.py --worker``, optionally under ``mpirun -n N``), alternating reference / current,
on the same mesh files, which the *reference* code writes (a newer mesh layout may not be readable by
the old code; the new code reads the old layout).

Comparison: speed-up of the time loop (wall and CPU seconds), delivered capacity (relative
difference) and the RMS difference of the cell voltage over the common time range.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: the package layout of pyproject.toml ([tool.setuptools] package-dir)
PACKAGE_DIRS = ("microstructure", "meshing", "physics", "studies")


def reference_tree(commit: str, workdir: Path) -> Path:
    """A checkout of ``commit`` (a detached git worktree under ``workdir``, reused when present)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"],
                         capture_output=True, text=True)
    if sha.returncode != 0:
        raise SystemExit(f"--reference: {commit!r} is not a commit of {ROOT}")
    sha = sha.stdout.strip()
    tree = workdir / f"ref-{sha[:10]}"
    if not (tree / "tomocell" / "__init__.py").is_file():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), sha], check=True,
                       capture_output=True)
    return tree


def staging_dir(tree: Path) -> Path:
    """A directory that imports as the ``tomocell`` package of ``tree`` (symlinks only)."""
    stage = tree.parent / f"{tree.name}-stage"
    pkg = stage / "tomocell"
    pkg.mkdir(parents=True, exist_ok=True)
    for f in (tree / "tomocell").iterdir():
        link = pkg / f.name
        if not link.exists():
            link.symlink_to(f)
    for d in PACKAGE_DIRS:
        link = pkg / d
        if not link.exists() and (tree / d).is_dir():
            link.symlink_to(tree / d, target_is_directory=True)
    return stage


def run_worker(args: list[str], ranks: int, pythonpath: Path | None, out_json: Path) -> dict[str, Any]:
    """Run ``bench_physics.py --worker out_json args`` in a fresh interpreter (under mpirun if ranks > 1)."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, str(Path(__file__).with_name("bench_physics.py")), "--worker", str(out_json), *args]
    if ranks > 1:
        cmd = [str(Path(sys.executable).with_name("mpirun")), "-n", str(ranks), *cmd]
    out_json.unlink(missing_ok=True)
    # run from the work directory: the current tree's package must not shadow the reference's
    proc = subprocess.run(cmd, env=env, cwd=str(out_json.parent), capture_output=True, text=True)
    if proc.returncode != 0 or not out_json.is_file():
        raise SystemExit(f"benchmark worker failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return json.loads(out_json.read_text())


def voltage_rmse(a: dict[str, Any], b: dict[str, Any], n: int = 2000) -> float:
    """RMS difference [V] of two voltage curves V(t) over their common time range (linear interpolation)."""
    ta, va = (np.asarray(a["t_s"], float), np.asarray(a["voltage_V"], float))
    tb, vb = (np.asarray(b["t_s"], float), np.asarray(b["voltage_V"], float))
    t_end = min(ta[-1], tb[-1])
    if t_end <= 0:
        return float("nan")
    t = np.linspace(0.0, t_end, n)
    return float(np.sqrt(np.mean((np.interp(t, ta, va) - np.interp(t, tb, vb)) ** 2)))


def compare(ref: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Speed-up and answer difference of one mesh, current (``new``) against reference (``ref``)."""
    out: dict[str, Any] = {
        "speedup_wall": ref["solve_wall_s"] / new["solve_wall_s"],
        "speedup_cpu": ref["solve_cpu_s_all_ranks"] / new["solve_cpu_s_all_ranks"],
        "jacobians_ref": ref.get("jacobians"), "jacobians_new": new.get("jacobians"),
        "newton_ref": ref.get("newton_total"), "newton_new": new.get("newton_total"),
        "steps_ref": ref["steps"], "steps_new": new["steps"],
    }
    if "capacity_Ah" in ref:  # delivered charge (mAh/g changed its mass basis after a23c53a: inert material)
        out["capacity_rel_diff"] = new["capacity_Ah"] / ref["capacity_Ah"] - 1.0
    out["voltage_rmse_mV"] = 1e3 * voltage_rmse(ref["curve"], new["curve"])
    return out


def verdict(c: dict[str, Any], speedup: float = 3.0, cap_tol: float = 0.005, rmse_mV: float = 2.0) -> str:
    ok_cap = abs(c.get("capacity_rel_diff", 0.0)) <= cap_tol
    ok_v = c["voltage_rmse_mV"] <= rmse_mV
    return (f"same answer: {'yes' if ok_cap and ok_v else 'NO'} (capacity within {100 * cap_tol:g} %: "
            f"{'yes' if ok_cap else 'no'}, voltage RMSE <= {rmse_mV:g} mV: {'yes' if ok_v else 'no'}); "
            f"speed-up >= {speedup:g}x: wall {'yes' if c['speedup_wall'] >= speedup else 'no'}, "
            f"CPU {'yes' if c['speedup_cpu'] >= speedup else 'no'}")
