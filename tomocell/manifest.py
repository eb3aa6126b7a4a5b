"""``run.json``: what every tomocell run records about itself.

Inputs with their sha256, the parameters as resolved (config file merged with options), versions of
tomocell and of the scientific packages, timings per step, the MPI size, the command line and the
outcome. Written atomically by rank 0 at the end of the run (also when it fails, with the error).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tomocell import __version__, mpi
from tomocell.atomic import write_json

_TRACKED_PACKAGES = (
    "numpy", "scipy", "scikit-image", "tifffile", "h5py", "edt", "scikit-fmm",
    "connected-components-3d", "gmsh", "meshio", "pyvista", "matplotlib",
    "fenics-dolfinx", "dolfinx-solver-real", "petsc4py", "mpi4py", "fenics-basix",
    "fenics-ffcx", "fenics-ufl",
)


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """sha256 of a file, or of every file in a directory (sorted by relative path)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version(), "tomocell": __version__}
    for name in _TRACKED_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


class RunManifest:
    """Collects the record of one run; :meth:`write` stores it as ``run.json``.

    Use as a context manager via :func:`run_manifest`, or by hand in library code.
    """

    def __init__(self, stage: str, out_dir: str | os.PathLike[str], parameters: dict[str, Any] | None = None):
        self.stage = stage
        self.out_dir = Path(out_dir)
        self.data: dict[str, Any] = {
            "tool": "tomocell",
            "stage": stage,
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": sys.argv,
            "cwd": os.getcwd(),
            "host": platform.node(),
            "mpi_size": mpi.size(),
            "versions": package_versions(),
            "parameters": dict(parameters or {}),
            "inputs": {},
            "outputs": {},
            "timings_s": {},
            "results": {},
            "status": "running",
        }
        self._t0 = time.perf_counter()

    def add_input(self, name: str, path: str | os.PathLike[str], sha256: str | None = None) -> None:
        """Record an input file; ``sha256`` for inputs made of several files (a mesh: .xdmf + .h5)."""
        p = Path(path)
        self.data["inputs"][name] = {"path": str(p.resolve()), "sha256": sha256 or sha256_of(p)}

    def add_output(self, name: str, path: str | os.PathLike[str]) -> None:
        self.data["outputs"][name] = str(Path(path))

    def set_parameters(self, **params: Any) -> None:
        self.data["parameters"].update(params)

    def set_result(self, **results: Any) -> None:
        self.data["results"].update(results)

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.data["timings_s"][step] = self.data["timings_s"].get(step, 0.0) + time.perf_counter() - t0

    def write(self, status: str = "ok", error: str | None = None, name: str = "run.json") -> Path | None:
        self.data["status"] = status
        if error:
            self.data["error"] = error
        self.data["finished"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self.data["timings_s"]["total"] = time.perf_counter() - self._t0
        if mpi.rank() != 0:
            return None
        return write_json(self.out_dir / name, self.data)


def _outcome(exc: BaseException | None) -> str:
    """'ok', 'refused' (bad input: nothing may be left), 'interrupted' (signal, checkpoint written) or 'failed'."""
    from tomocell.errors import InputError, Interrupted

    if exc is None:
        return "ok"
    if isinstance(exc, InputError):
        return "refused"
    if isinstance(exc, (Interrupted, KeyboardInterrupt)):
        return "interrupted"
    return "failed"


def _claim(stage: str, out_dir: Path, **kw: Any) -> Any:
    """claim_out on rank 0, its refusal raised on every rank."""
    from tomocell.errors import InputError
    from tomocell.outdir import claim_out

    comm = mpi.world()
    claim, err = None, None
    if mpi.rank() == 0:
        try:
            claim = claim_out(out_dir, stage, **kw)
        except InputError as exc:
            err = str(exc)
        except OSError as exc:  # permissions, read-only or full file system: the --out given cannot be used
            err = f"--out {out_dir}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    err = comm.bcast(err, root=0)
    if err is not None:
        raise InputError(err)
    return claim


@contextlib.contextmanager
def run_manifest(stage: str, out_dir: str | os.PathLike[str], parameters: dict[str, Any] | None = None, *,
                 guard: bool = False, overwrite: bool = False, resume: bool = False,
                 rerun_ok: bool = False) -> Iterator[RunManifest]:
    """Context manager: yields a :class:`RunManifest`, writes ``run.json`` on exit.

    ``guard=True`` (every CLI command): ``out_dir`` is checked, created and locked by
    :func:`tomocell.outdir.claim_out` (``overwrite``, ``resume``, ``rerun_ok`` as there), a
    ``run.json`` with status "running" marks it while the run goes on, and on exit the directory is
    settled by :meth:`tomocell.outdir.OutClaim.finish`: a refused run (InputError) leaves nothing
    behind, a failed rerun of a good run restores that run and records the failure in
    ``run.failed.json``. Without ``guard`` (library use inside a directory tomocell owns, e.g. a
    study's runs): a refusal writes nothing into a directory that did not exist, and a failure never
    replaces a good ``run.json`` (it goes to ``run.failed.json``).
    """
    out = Path(out_dir)
    m = RunManifest(stage, out, parameters)
    claim = _claim(stage, out, overwrite=overwrite, resume=resume, rerun_ok=rerun_ok) if guard else None
    existed = out.exists()
    if claim is not None:
        m.write(status="running")
        m.data.pop("finished", None)
    try:
        yield m
    except BaseException as exc:
        outcome = _outcome(exc)
        status = {"refused": "refused", "interrupted": "interrupted"}.get(outcome, "failed")
        err = f"{type(exc).__name__}: {exc}"
        if claim is not None:
            claim.finish(outcome, lambda name: m.write(status=status, error=err, name=name))
        elif (record := _unguarded_record(out, outcome, existed)):
            m.write(status=status, error=err, name=record)
        raise
    else:
        if claim is not None:
            claim.finish("ok", lambda name: m.write(status="ok", name=name))
        else:
            out.mkdir(parents=True, exist_ok=True)
            m.write(status="ok")


def _unguarded_record(out: Path, outcome: str, existed: bool) -> str:
    """Where the record of a failed library run goes: nowhere if refused before its directory existed,
    run.failed.json if a good run.json is there, else run.json."""
    import json

    if mpi.rank() != 0:
        return "run.json"
    if outcome == "refused" and not existed:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        return ""
    try:
        good = json.loads((out / "run.json").read_text()).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        good = False
    out.mkdir(parents=True, exist_ok=True)
    return "run.failed.json" if good else "run.json"
