"""Checkpoints of a running simulation: written every N accepted steps and on SIGTERM, read by --resume.

Layout (``OUT/checkpoint/``): ``meta.json`` (step, time, controller state, time-series rows so far,
DoD snapshots done, MPI size, DOF count, mesh fingerprint) and ``rank<r>.npz`` (this rank's arrays
of the accepted state). The directory is written next to the old one and swapped in only when
every rank has finished (rank 0 renames), so a checkpoint is either complete or absent; only
accepted (converged) states are ever saved, so a diverging step cannot corrupt it. Resuming needs
the same mesh and the same number of MPI ranks (the arrays follow the partition).
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


def checkpoint_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoint"


def write_checkpoint(comm: MPI.Comm, out_dir: Path, arrays: list[np.ndarray], meta: dict[str, Any]) -> None:
    pdir = ParallelDir(comm, checkpoint_dir(out_dir))
    np.savez(pdir.tmp / f"rank{comm.rank}.npz", **dict(zip(ARRAYS, arrays)))
    if comm.rank == 0:
        (pdir.tmp / "meta.json").write_text(json.dumps({**meta, "mpi_size": comm.size}, default=float))
    pdir.commit()


def read_checkpoint(comm: MPI.Comm, out_dir: Path, fingerprint: dict[str, Any]) -> tuple[list[np.ndarray], dict[str, Any]]:
    d = checkpoint_dir(out_dir)
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        raise InputError(f"--resume: no checkpoint in {d}")
    meta = json.loads(meta_path.read_text())
    if meta.get("mpi_size") != comm.size:
        raise InputError(f"--resume: checkpoint was written with {meta.get('mpi_size')} MPI ranks, this run has {comm.size}")
    for k, v in fingerprint.items():
        if meta.get("fingerprint", {}).get(k) != v:
            raise InputError(f"--resume: checkpoint does not match this run ({k}: {meta.get('fingerprint', {}).get(k)} != {v})")
    data = np.load(d / f"rank{comm.rank}.npz")
    return [data[k] for k in ARRAYS], meta


class TermFlag:
    """Set by SIGTERM/SIGINT while installed; the time loop checks it after every accepted step."""

    def __init__(self) -> None:
        self.hit = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> TermFlag:
        for sig in (signal.SIGTERM,):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handler(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.hit = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
