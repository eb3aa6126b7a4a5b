"""Checkpoints of a running simulation: written every N accepted steps and on SIGTERM/SIGINT, read by --resume.

Layout (``OUT/checkpoint/``): ``meta.json`` (step, time, controller state, time-series rows so far,
DoD snapshots done, MPI size, DOF count, mesh fingerprint) and ``rank<r>.npz`` (this rank's arrays
of the accepted state). The directory is written next to the old one and swapped in only when
every rank has finished (rank 0 renames the old one aside, the new one in, then deletes the old
one; a kill between the two renames leaves the old one whole, and --resume reads it), so a
checkpoint is either complete or absent; only
accepted (converged) states are ever saved, so a diverging step cannot corrupt it. Resuming needs
the same mesh, the same number of MPI ranks (the arrays follow the partition) and every setting that
changes the answer (parameters, C-rate, protocol, step control: the fingerprint of
:func:`fingerprint`); a mismatch is refused, naming it.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from tomocell.errors import InputError
from tomocell.physics.outputs import ParallelDir

ARRAYS = ("c_s", "phi_s", "c_e", "phi_e", "c_s_old", "c_e_old")


#: keys of a parameter file that document a value without changing it (ignored by --resume)
_DOC_KEYS = {"source", "sources", "unit", "units", "description", "note", "notes", "reference", "doi", "name",
             "material", "comment"}


def flat_parameters(raw: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted name -> value of every answer-changing entry of a parameter mapping."""
    out: dict[str, Any] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            if str(k) in _DOC_KEYS:
                continue
            out.update(flat_parameters(v, f"{prefix}{k}."))
    elif isinstance(raw, (list, tuple)):
        out[prefix[:-1]] = [flat_parameters(v) if isinstance(v, dict) else v for v in raw]
    else:
        out[prefix[:-1]] = raw
    return out


def fingerprint(model: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """Everything a checkpoint must share with the run that resumes it: the mesh (size, active volume,
    a checksum of this rank's node coordinates and cell tags), every parameter, and the operating and
    time-stepping settings (``settings``). Not the linear solver: it changes the answer only at its
    tolerance, and the iterative solver may switch to LU mid-run anyway."""
    msh = model.inp.mesh
    n_nodes = msh.geometry.index_map().size_local
    xs = np.asarray(msh.geometry.x[:n_nodes], dtype=float)
    n_own = msh.topology.index_map(3).size_local
    local = float(np.sum(xs * np.array([1.0, 1.0001, 1.0002]))) + float(np.sum(model.topo.cell_tag[:n_own] * 1e-3))
    checksums = model.comm.allgather(round(local, 6))
    return {"dofs": model.dof_count(), "cells": msh.topology.index_map(3).size_global,
            "active_volume_um3": round(model.vol["active"], 6), "mesh_checksum": checksums,
            "parameters": flat_parameters(model.p.raw), "li_kinetics": model.li_kinetics, **settings}


def array_names(n: int) -> list[str]:
    """Names of the ``n`` state arrays of :meth:`HalfCellModel.snapshot`: the single-body six, then the
    c_s and c_s_old of each further body colour (physics/bodies.py) as ``c_s_extra<i>``."""
    return [*ARRAYS[:n], *(f"c_s_extra{i}" for i in range(max(n - len(ARRAYS), 0)))]


def checkpoint_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoint"


def write_checkpoint(comm: MPI.Comm, out_dir: Path, arrays: list[np.ndarray], meta: dict[str, Any]) -> None:
    pdir = ParallelDir(comm, checkpoint_dir(out_dir))
    np.savez(pdir.tmp / f"rank{comm.rank}.npz", **dict(zip(array_names(len(arrays)), arrays)))
    if comm.rank == 0:
        (pdir.tmp / "meta.json").write_text(json.dumps({**meta, "mpi_size": comm.size}, default=float))
    pdir.commit()


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=float))


def _mismatch(key: str, old: Any, new: Any) -> str:
    """One sentence naming what differs between the checkpoint and this run."""
    if key == "parameters" and isinstance(old, dict) and isinstance(new, dict):
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        shown = "; ".join(f"{k}: {old.get(k, '(absent)')!r} in the checkpoint, {new.get(k, '(absent)')!r} now"
                          for k in diff[:3])
        return f"parameters differ ({shown}{' ...' if len(diff) > 3 else ''})"
    if key == "mesh_checksum":
        return ("the mesh or its partition over the ranks differs (node coordinates or cell tags on some rank: "
                "resume with the same mesh, number of ranks and --partitioner)")
    if old is None:
        return f"{key} is not recorded in the checkpoint (written by an older tomocell), this run has {new!r}"
    return f"{key} was {old!r} in the interrupted run, {new!r} now"


def read_checkpoint(comm: MPI.Comm, out_dir: Path, fingerprint: dict[str, Any]) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The state and meta data of the checkpoint in ``out_dir``; InputError naming the first setting
    that differs from ``fingerprint`` (the mesh, any parameter, the C-rate, the snapshots, the rest
    and charge protocol, the step control: everything that changes the answer)."""
    d = checkpoint_dir(out_dir)
    if not (d / "meta.json").is_file() and (d.parent / f".{d.name}.old" / "meta.json").is_file():
        d = d.parent / f".{d.name}.old"  # killed between the two renames of the swap: the previous one is whole
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        raise InputError(f"--resume: no checkpoint in {d}")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise InputError(f"--resume: checkpoint {meta_path} is corrupt ({exc})") from None
    if meta.get("mpi_size") != comm.size:
        raise InputError(f"--resume: checkpoint was written with {meta.get('mpi_size')} MPI ranks, this run has {comm.size}")
    saved = meta.get("fingerprint", {})
    for k, v in _jsonable(fingerprint).items():
        if saved.get(k) != v:
            raise InputError(f"--resume refused: {_mismatch(k, saved.get(k), v)}. Resume with the settings of the "
                             f"interrupted run (see {Path(out_dir) / 'run.json'}), or start afresh with --overwrite")
    try:
        data = np.load(d / f"rank{comm.rank}.npz")
        arrays = [data[k] for k in array_names(len(data.files))]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"--resume: checkpoint {d} is incomplete or corrupt ({exc})") from None
    return arrays, meta


class TermFlag:
    """Records SIGTERM or SIGINT (Ctrl-C) while installed instead of raising; the time loop checks
    ``signum`` after every accepted step, writes a checkpoint and stops. Raising inside the solve would
    turn into a PETSc error in a Python callback, i.e. a "failed" Newton step (issue 15)."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    @property
    def hit(self) -> bool:
        return self.signum != 0

    def __enter__(self) -> TermFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handler(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.signum = int(signum)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class deferred_signals:
    """Hold SIGTERM and SIGINT back while a block runs, deliver them when it ends.

    Used around the construction of PETSc objects: an ``Interrupted`` raised by the CLI's handler inside
    ``NonlinearProblem.__init__`` left a half-built object whose ``__del__`` printed an AttributeError
    traceback on a clean SIGTERM exit. Blocked signals stay pending and are handled as soon as the mask
    is restored, so the run still stops at once after the block."""

    _SIGS = {signal.SIGTERM, signal.SIGINT}

    def __enter__(self) -> deferred_signals:
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, self._SIGS)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)
