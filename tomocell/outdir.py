"""The ``--out`` directory of a command: what may be written into it, one run at a time.

Rules (issue 15):

* A missing or empty directory is used as is. A non-empty one must hold a tomocell run of the same
  stage (its ``run.json``); anything else is refused (:class:`InputError`, exit 2) naming what is
  there: tomocell never writes into, or deletes from, a directory of files it did not make.
* A finished (``status: ok``) run of the same stage is replaced only with ``--overwrite``, and then
  only tomocell's own outputs of that run (the names its ``run.json`` lists and the stage's known
  output names) are replaced: other files in the directory are kept. Unfinished runs (failed,
  interrupted, killed) may be rerun or resumed without it.
* Symlinks are followed: a link to a directory means that directory; a dangling link, or a path that
  is a file, is refused.
* One lock per directory (``.tomocell.lock``, ``fcntl.flock``): a second run into it refuses at once
  (exit 2) naming the process that holds it.
* The previous run's outputs are moved aside (``.tomocell-previous-*``) before the new run starts, so
  no stale file of it survives a successful rerun; if the rerun fails they are moved back (the good
  ``run.json`` is never replaced by a failed one: the failure goes to ``run.failed.json``), and a
  refused command (bad input) leaves the directory exactly as it found it: no directory, no
  ``run.json``, if there was none before.

Everything here runs on MPI rank 0 only (the callers broadcast the outcome).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tomocell.errors import InputError

LOCK_NAME = ".tomocell.lock"
PREVIOUS_PREFIX = ".tomocell-previous-"
FAILED_RECORD = "run.failed.json"

#: names (glob patterns) each stage writes into its --out besides those its run.json lists
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "generate": ("electrode.*", "greyscale.tif", "report.json", "report_slices.png"),
    "segment": ("segmented.*", "report.json", "report_slices.png"),
    "superimpose": ("superimposed.*", "report.json", "report_slices.png"),
    "characterise": ("metrics.json", "report.md", "*.csv", "*.png", "fields.vti", "figures"),
    "mesh": ("mesh.*", "fidelity.json"),
    "simulate": ("timeseries.csv", "particles.csv", "fields", "checkpoint", "fields.*"),
    "analyse": ("report.md", "report.html", "*.csv", "*.png", "figures"),
}
_ALWAYS_OURS = ("run.json", FAILED_RECORD, ".*.partial*", ".*.old", ".checkpoint.partial-*")


def umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask is the fallback)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


def resolve_out(out: str | os.PathLike[str]) -> Path:
    """``out`` with symlinks followed; InputError for a dangling link or a path that is not a directory."""
    p = Path(out).expanduser()
    if p.is_symlink():
        target = p.resolve()
        if not target.exists():
            raise InputError(f"--out {p} is a symbolic link to {target}, which does not exist: "
                             "create the target directory or give another --out")
        if not target.is_dir():
            raise InputError(f"--out {p} is a symbolic link to {target}, which is not a directory")
        return target
    if p.exists() and not p.is_dir():
        raise InputError(f"--out {p} exists and is not a directory")
    # a parent that is a file cannot hold the directory
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--out {p}: {parent} is not a directory")
            break
    return p


def read_record(d: Path) -> dict[str, Any] | None:
    """The run.json of ``d`` if it is a tomocell record, else None."""
    rj = d / "run.json"
    try:
        data = json.loads(rj.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("tool") != "tomocell":
        return None
    return data


def _entries(d: Path) -> list[str]:
    return sorted(e.name for e in d.iterdir() if e.name != LOCK_NAME and not e.name.startswith(PREVIOUS_PREFIX))


def own_outputs(d: Path, stage: str, record: dict[str, Any] | None) -> list[str]:
    """Names in ``d`` that tomocell wrote for ``stage`` (top-level entries)."""
    listed: set[str] = set()
    cwd = Path(str((record or {}).get("cwd", os.getcwd())))
    root = d.resolve()
    for v in (record or {}).get("outputs", {}).values():
        q = Path(str(v))
        q = q if q.is_absolute() else cwd / q
        with contextlib.suppress(ValueError, OSError):
            rel = Path(os.path.normpath(q.parent.resolve() / q.name)).relative_to(root)
            if rel.parts:
                listed.add(rel.parts[0])
    pats = STAGE_OUTPUTS.get(stage, ()) + _ALWAYS_OURS
    return [n for n in _entries(d) if n in listed or any(fnmatch.fnmatch(n, pat) for pat in pats)]


def check_out(out: str | os.PathLike[str], stage: str, *, overwrite: bool = False, resume: bool = False,
              rerun_ok: bool = False, probe_lock: bool = True) -> tuple[Path, dict[str, Any] | None]:
    """Decide whether ``stage`` may write into ``out`` (no side effects): (resolved path, previous record).

    ``rerun_ok``: a finished run of the same stage is continued rather than replaced (demo, studies).
    ``probe_lock``: a directory without a readable record whose lock another process holds is refused
    as in use (it is in the middle of writing its record), not as a foreign directory; False when the
    caller holds the lock itself.
    """
    d = resolve_out(out)
    if not d.exists():
        return d, None
    names = _entries(d)
    if not names:
        return d, None
    rec = read_record(d)
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    if rec is None and probe_lock and (holder := _lock_holder(d)) is not None:
        raise InputError(f"another tomocell run ({holder or 'unknown process'}) is writing into {d}: wait for it "
                         "to finish or give another --out")
    if rec is None:
        raise InputError(f"--out {out} is not empty ({shown}) and is not a tomocell run directory: tomocell "
                         "writes only into a new or empty directory, or over its own earlier run; give another --out")
    if rec.get("stage") != stage:
        raise InputError(f"--out {out} holds a tomocell {rec.get('stage')!r} run, not a {stage!r} run: "
                         "give another --out (each run needs its own directory)")
    if rec.get("status") == "ok" and not (overwrite or rerun_ok or resume):
        raise InputError(f"--out {out} already holds a finished tomocell {stage} run (started "
                         f"{rec.get('started', '?')}): pass --overwrite to replace its outputs (other files there "
                         "are kept), or give another --out")
    return d, rec


def _lock_holder(d: Path) -> str | None:
    """What the lock file of ``d`` says of its holder if another process holds it, else None (a
    non-blocking probe: a lock taken is released at once)."""
    path = d / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                with contextlib.suppress(OSError):
                    return os.read(fd, 200).decode(errors="replace").strip()
                return ""
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class OutLock:
    """An exclusive ``flock`` on ``DIR/.tomocell.lock`` holding the owner's pid and host."""

    def __init__(self, d: Path):
        self.path = d / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = ""
                with contextlib.suppress(OSError):
                    holder = os.read(fd, 200).decode(errors="replace").strip()
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise InputError(f"another tomocell run ({holder or 'unknown process'}) is writing into "
                                     f"{self.path.parent}: wait for it to finish or give another --out") from None
                raise
            # the holder before us may have removed the file after we opened it: lock the current one
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {platform.node()}, since {time.strftime('%H:%M:%S')}".encode())
                self.fd = fd
                return
            os.close(fd)
        raise InputError(f"could not lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None


@dataclass
class OutClaim:
    """A claimed --out: locked, the previous run's outputs moved aside; :meth:`finish` settles it."""

    path: Path
    stage: str
    created: Path | None  # the top-most directory this run created (removed again if refused)
    before: set[str]  # entries present when the run started
    lock: OutLock
    previous_record: dict[str, Any] | None
    previous_dir: Path | None = None
    moved: list[str] = field(default_factory=list)

    def _restore(self) -> None:
        """Remove what this run added and put the previous outputs back."""
        for name in _entries(self.path):
            if name not in self.before or name in self.moved:
                _remove(self.path / name)
        if self.previous_dir is not None:
            for name in self.moved:
                os.replace(self.previous_dir / name, self.path / name)
            shutil.rmtree(self.previous_dir, ignore_errors=True)

    def finish(self, outcome: str, write: Any = None) -> str:
        """Settle the directory after the run: outcome 'ok', 'refused' (InputError), 'interrupted' or
        'failed'; ``write(name)`` is called (under the lock) to write the record, named 'run.json' or
        FAILED_RECORD (a failed rerun of a good run), not at all when refused. Returns the name or ''."""
        try:
            if outcome == "refused":
                self._restore()
                record = ""
            elif outcome == "failed" and self.previous_record is not None and self.previous_record.get("status") == "ok":
                self._restore()  # a failed rerun never replaces a good run
                record = FAILED_RECORD
            else:
                if self.previous_dir is not None:
                    shutil.rmtree(self.previous_dir, ignore_errors=True)
                record = "run.json"
            if record and write is not None:
                write(record)
        finally:
            self.lock.release()
        if outcome == "refused" and self.created is not None:
            q = self.path.absolute()
            with contextlib.suppress(OSError):  # rmdir refuses non-empty directories: only ours go
                while True:
                    q.rmdir()
                    if q == self.created or self.created not in q.parents:
                        break
                    q = q.parent
        return record


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def claim_out(out: str | os.PathLike[str], stage: str, *, overwrite: bool = False, resume: bool = False,
              rerun_ok: bool = False) -> OutClaim:
    """Check, create and lock ``out`` for a run of ``stage``; move a previous run's outputs aside
    (except when resuming or continuing it). InputError when the directory may not be used."""
    d, _ = check_out(out, stage, overwrite=overwrite, resume=resume, rerun_ok=rerun_ok)
    created = None
    if not d.exists():
        created = d.absolute()
        for parent in d.absolute().parents:
            if parent.exists():
                break
            created = parent
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {out}: cannot create the directory: {exc.strerror}") from None
    lock = OutLock(d)
    try:
        lock.acquire()
    except InputError:
        # another run holds the lock: the directory is its now, even if this run made it (two runs
        # started on a missing --out both create it; removing it here pulled it from under the winner)
        raise
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    try:
        # again under the lock: another run may have written in between
        d, rec = check_out(d, stage, overwrite=overwrite, resume=resume, rerun_ok=rerun_ok, probe_lock=False)
        claim = OutClaim(d, stage, created, set(_entries(d)), lock, rec)
        stale = sorted(q.name for q in d.glob(PREVIOUS_PREFIX + "*"))
        if stale:
            from tomocell.log import get_logger

            get_logger("outdir").warning("%s holds %s: outputs of an earlier run whose rerun was killed; "
                                         "move them back or delete them", d, ", ".join(stale))
        keep_in_place = resume or rerun_ok
        names = ["run.json"] if keep_in_place and rec is not None else own_outputs(d, stage, rec) if rec else []
        if names:
            prev = d / f"{PREVIOUS_PREFIX}{os.getpid()}-{int(time.time())}"
            prev.mkdir()
            claim.previous_dir = prev
            for n in names:
                if keep_in_place:
                    shutil.copy2(d / n, prev / n)  # the record is rewritten in place; restored if refused
                else:
                    os.replace(d / n, prev / n)
            claim.moved = list(names)
        return claim
    except BaseException:
        lock.release()
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
