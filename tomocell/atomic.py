"""Write outputs so that a failure never leaves a half-written file behind.

Every file tomocell writes goes through :func:`atomic_path`: the writer gets a temporary name in
the same directory, and only a completed write is renamed to the final name (``os.replace`` is
atomic on POSIX). If the writer raises, the temporary file is removed and nothing is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    from tomocell.outdir import umask

    return umask()


def _chmod_default(path: Path, directory: bool = False) -> None:
    """Give a temporary file (mkstemp: 0600) or directory (mkdtemp: 0700) the mode an ordinary
    ``open``/``mkdir`` would have under the umask (0644/0755 under umask 022), so outputs are
    readable by the group, other users and the host user of a container as their owner intends."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _no_dangling(final: Path) -> Path:
    """Follow a symlink at ``final`` (writes go to its target); InputError if it dangles."""
    if final.is_symlink():
        target = final.resolve()
        if not target.parent.exists():
            from tomocell.errors import InputError

            raise InputError(f"{final} is a symbolic link to {target}, whose directory does not exist")
        return target
    return final


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    ``suffix`` defaults to the final suffix(es) so libraries that dispatch on the extension
    (tifffile, h5py, meshio) see the right one. The file gets the umask's mode (0644 under 022).
    """
    final = _no_dangling(Path(path))
    final.parent.mkdir(parents=True, exist_ok=True)
    sfx = suffix if suffix is not None else "".join(final.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".partial{sfx}", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _chmod_default(tmp_path, directory=tmp_path.is_dir())
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _replace_entry(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing what is there (a directory via a hidden .old name)."""
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old)
    else:
        os.replace(src, dst)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success move what was written into ``path``.

    Default (merge): each entry written replaces the entry of the same name in ``path`` (one atomic
    rename each); nothing else in ``path`` is touched, so a directory holding other files (a user's,
    or the home directory given by mistake) never loses them. ``replace=True`` swaps the whole
    directory, for outputs that are one directory of tomocell's own (a TIFF slice volume): the caller
    must have checked that ``path`` holds nothing else. A symlink at ``path`` is followed.
    On failure the temporary directory is removed and ``path`` is untouched.
    """
    final = Path(path)
    if final.is_symlink():
        final = _no_dangling(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    where = final if final.is_dir() and not replace else final.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=where))
    try:
        yield tmp
        _chmod_default(tmp, directory=True)
        if replace or not final.exists():
            if final.exists():
                _replace_entry(tmp, final)
            else:
                os.replace(tmp, final)
        else:
            for entry in sorted(tmp.iterdir()):
                _replace_entry(entry, final / entry.name)
            tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_ready(x: Any) -> Any:
    """``x`` with non-finite floats as None, tuples as lists, arrays as lists and keys as strings:
    what :func:`write_json` stores (numpy scalars and Paths are converted by :func:`_json_default`)."""
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    if isinstance(x, (float, np.floating)) and not np.isfinite(x):
        return None
    if isinstance(x, np.ndarray):
        return json_ready(x.tolist())
    return x


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically; numpy scalars/arrays and Paths are converted.

    Non-finite floats are written as null (strict JSON), so a missing value never reads as a number.
    """

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_ready(data), indent=2, default=_json_default, allow_nan=False) + "\n")
    return Path(path)


def write_csv_rows(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]],
                   columns: Sequence[str] | None = None) -> Path:
    """Rows (dicts) as CSV, atomically; columns default to the keys in first-seen order; floats with
    full precision (repr), NaN as 'nan', numpy integers as plain integers. Call on one rank only."""
    import csv
    import io

    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return repr(float(v))
        if isinstance(v, np.integer):
            return str(int(v))
        return str(v)

    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in rows:
        w.writerow([fmt(r.get(c, "")) for c in cols])
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(buf.getvalue())
    return Path(path)
