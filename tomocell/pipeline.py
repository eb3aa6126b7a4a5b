"""The pipeline's step cache: is a step already done, with these inputs and settings?

Every stage records itself in ``run.json`` (:mod:`tomocell.manifest`): its stage, the parameters as
resolved, its inputs with their sha256, its outputs and its status. :func:`finished_run` is the one
reader of that record used to decide whether a step can be reused instead of run again, by the demo
(:mod:`tomocell.demo`), the studies (:mod:`tomocell.studies.runner`, :mod:`tomocell.studies.electrochem`)
and the Python API (``tc.simulate(..., reuse=True)``). A step is reused only if all of these hold:

* ``run.json`` is readable and its status is ``"ok"`` (a failed, refused, interrupted or still running
  step is redone, or resumed by the stage itself from its checkpoint);
* it is of the expected ``stage`` (a ``characterise`` run is never taken for a ``simulate`` run);
* its recorded parameters, or the part of them ``key`` selects, equal the expected ones after the
  JSON round trip of :func:`canonical` (tuples -> lists, numpy scalars -> Python, inf/nan -> None);
* every recorded input named in ``inputs`` still has the sha256 given (the mesh was not remeshed);
* every file named in ``outputs`` exists in the run directory.

The reason a step is not reused is logged at INFO level, so ``-v`` says why a step runs again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tomocell.atomic import _json_default, json_ready
from tomocell.log import get_logger

log = get_logger(__name__)

#: the run record every stage writes (tomocell/manifest.py)
MANIFEST = "run.json"


def canonical(params: Any) -> Any:
    """``params`` as it round-trips through run.json (tuples -> lists, numpy -> Python, non-finite
    floats -> None, as :func:`tomocell.atomic.write_json` stores them): compare with this, never with
    the raw Python value."""
    return json.loads(json.dumps(json_ready(params), default=_json_default, allow_nan=False))


def read_manifest(run_dir: str | Path) -> dict[str, Any] | None:
    """The parsed ``run.json`` of ``run_dir``; None if it is absent or unreadable (logged)."""
    rj = Path(run_dir) / MANIFEST
    if not rj.is_file():
        return None
    try:
        data = json.loads(rj.read_text())
    except (OSError, ValueError):
        log.warning("%s is unreadable: the step is redone", rj)
        return None
    return data if isinstance(data, dict) else None


_MISSING = object()


def finished_run(
    run_dir: str | Path,
    *,
    stage: str | None = None,
    parameters: Any = _MISSING,
    key: Callable[[dict[str, Any]], Any] | None = None,
    inputs: Mapping[str, str] | None = None,
    outputs: Iterable[str] = (),
) -> dict[str, Any] | None:
    """The ``run.json`` record of a finished, reusable step in ``run_dir``, else None.

    ``stage``: the stage the record must be of (``"simulate"``, ``"study.rate"``, ...).
    ``parameters``: what the recorded parameters must equal (after :func:`canonical`); with ``key``,
    what ``key(record)`` must equal instead (a part of the parameters, or a settings file next to
    it). ``inputs``: input name -> the sha256 it must still have. ``outputs``: files (relative to
    ``run_dir``) that must exist. See the module docstring.
    """
    d = Path(run_dir)
    data = read_manifest(d)
    if data is None:
        return None
    why = _why_not(d, data, stage, parameters, key, inputs or {}, outputs)
    if why:
        log.info("%s: %s: the step is run again", d, why)
        return None
    return data


def _why_not(d: Path, data: dict[str, Any], stage: str | None, parameters: Any,
             key: Callable[[dict[str, Any]], Any] | None, inputs: Mapping[str, str],
             outputs: Iterable[str]) -> str:
    """Why the record ``data`` cannot be reused ('' if it can)."""
    if data.get("status") != "ok":
        return f"status {data.get('status')!r}, not 'ok'"
    if stage is not None and data.get("stage") != stage:
        return f"a {data.get('stage')!r} run, not {stage!r}"
    if parameters is not _MISSING:
        try:
            got = key(data) if key is not None else data.get("parameters")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"its settings cannot be read ({exc})"
        if canonical(got) != canonical(parameters):
            return "its settings changed"
    recorded = data.get("inputs") or {}
    for name, sha in inputs.items():
        if (recorded.get(name) or {}).get("sha256") != sha:
            return f"input {name!r} changed"
    missing = [o for o in outputs if not (d / o).exists()]
    if missing:
        return f"output {missing[0]} is missing"
    return ""
