"""MPI-aware logging and progress reporting.

Only rank 0 prints INFO messages (other ranks print WARNING and above, prefixed with their rank), so
``mpirun -n N tomocell ...`` produces one readable log. Long loops use :func:`progress`: a tqdm bar on
an interactive terminal, periodic log lines otherwise (CI, batch jobs, files).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tomocell import mpi

T = TypeVar("T")

_CONFIGURED = False


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (like logging's own last-resort handler),
    so a handler set up once keeps working when stderr is swapped (pytest capture, notebooks)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbosity: int = 0) -> None:
    """Configure the ``tomocell`` logger. verbosity: -1 quiet, 0 info, 1+ debug."""
    global _CONFIGURED
    rank = mpi.rank()
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    if rank != 0:
        level = max(level, logging.WARNING)
    logger = logging.getLogger("tomocell")
    logger.setLevel(level)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = _CurrentStderrHandler()
    prefix = f"[rank {rank}] " if mpi.size() > 1 and rank != 0 else ""
    handler.setFormatter(logging.Formatter(f"{prefix}%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.propagate = False
    _CONFIGURED = True


def get_logger(name: str) -> logging.Logger:
    """Logger under the ``tomocell`` hierarchy (configured on first use if needed)."""
    if not _CONFIGURED:
        setup_logging(0)
    if not name.startswith("tomocell"):
        name = f"tomocell.{name}"
    return logging.getLogger(name)


def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    log_every_s: float = 10.0,
    logger: logging.Logger | None = None,
) -> Iterator[T]:
    """Iterate with a progress display on rank 0.

    A tqdm bar when stderr is a terminal; otherwise an INFO line at most every ``log_every_s``
    seconds and at the end, so batch logs show that work is moving.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    log = logger or get_logger("progress")
    if mpi.rank() == 0 and sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(iterable, total=total, desc=desc, leave=False)
        return
    t0 = last = time.monotonic()
    i = 0
    for i, item in enumerate(iterable, start=1):
        yield item
        now = time.monotonic()
        if now - last >= log_every_s:
            last = now
            frac = f"{i}/{total}" if total else f"{i}"
            log.info("%s: %s done (%.0f s)", desc or "progress", frac, now - t0)
    if time.monotonic() - t0 >= log_every_s:
        log.info("%s: finished %d items in %.0f s", desc or "progress", i, time.monotonic() - t0)
