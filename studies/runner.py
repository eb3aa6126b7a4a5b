"""Generic study bookkeeping: named runs, one directory each, resume, tidy tables, a report.

A *study* is a list of :class:`RunSpec` (a name and a JSON-able parameter dict) and one *run
function* ``run_fn(params, run_dir) -> results`` that does the work of one run, writes whatever
files it wants into ``run_dir`` (atomically, via :mod:`tomocell.atomic`) and returns a results
dict (numbers, strings, lists of numbers, nested dicts of those). :func:`run_study` then

* gives every run ``OUT/runs/<name>/`` with its own ``run.json`` (:func:`tomocell.manifest.run_manifest`:
  parameters, versions, timings, status, results, the error if it failed);
* **resumes**: a run whose ``run.json`` says ``status: ok`` *and* whose recorded parameters equal
  the current ones is skipped and its recorded results reused; a failed, interrupted or changed
  run is run again (``force=True`` reruns everything);
* keeps going after a failed run (``keep_going``) and reports every failure at the end;
* writes ``OUT/results.csv`` (tidy: one row per run x metric x index, with the run's scalar
  parameters as columns), ``OUT/summary.csv`` (wide: one row per run, scalar metrics only),
  ``OUT/report.md`` (runs, failures, figures with captions) and ``OUT/run.json`` for the study;
  all atomically, figures by the study's ``figures_fn(outcomes, fig_dir) -> [Figure]`` (called with
  ``config=`` too when it takes that keyword: settings that shape only the tables, not the runs).

Under MPI every rank calls :func:`run_study`; rank 0 decides what to skip (broadcast) and writes
the bookkeeping files, the run function is called on every rank (collective solvers).

Adding a study (e.g. the electrochemical ones, once the physics lands) is one module in
``studies/`` with ``NAME``, ``plan(config) -> list[RunSpec]``, ``run_one(params, run_dir) -> dict``
and ``figures(outcomes, fig_dir) -> list[Figure]`` plus ``studies/configs/<name>.toml``;
:func:`run_study_module` runs it. See ``studies/calendering.py`` for a complete example.
"""

from __future__ import annotations

import csv
import datetime as _dt
import inspect
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tomocell import mpi
from tomocell.atomic import atomic_path
from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.manifest import run_manifest
from tomocell.pipeline import canonical, finished_run

log = get_logger(__name__)

RunFunction = Callable[[dict[str, Any], Path], dict[str, Any]]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: a directory-safe name and its parameters (JSON-able)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Figure:
    """A figure file (path relative to the study directory) and its caption."""

    path: str
    caption: str


@dataclass
class RunOutcome:
    name: str
    status: str  # 'ok' (ran now), 'skipped' (finished before: resumed), 'failed', 'pending' (report_only)
    params: dict[str, Any]
    results: dict[str, Any]
    run_dir: Path
    error: str | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in ("ok", "skipped")


@dataclass
class StudyResult:
    name: str
    out_dir: Path
    outcomes: list[RunOutcome]
    figures: list[Figure]
    table: Path
    summary: Path
    report: Path

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


# ------------------------------------------------------------------ parameters and results
def flatten(results: dict[str, Any], prefix: str = "") -> list[tuple[str, int | None, Any]]:
    """(metric, index, value) rows: nested dicts join keys with '.', lists give one row per item."""
    rows: list[tuple[str, int | None, Any]] = []
    for key, val in results.items():
        name = f"{prefix}{key}"
        if isinstance(val, dict):
            rows.extend(flatten(val, name + "."))
        elif isinstance(val, (list, tuple)) or (hasattr(val, "ndim") and getattr(val, "ndim", 0) > 0):
            for i, item in enumerate(list(val)):
                if isinstance(item, dict):
                    rows.extend((f"{name}[{i}].{m}", j, v) for m, j, v in flatten(item))
                else:
                    rows.append((name, i, _scalar(item)))
        else:
            rows.append((name, None, _scalar(val)))
    return rows


def _scalar(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def flatten_scalars(d: dict[str, Any]) -> dict[str, Any]:
    """Scalar entries of a (nested) dict, keys joined with '.' (lists and None are left out)."""
    return {m: v for m, i, v in flatten(d) if i is None and v is not None}


# ------------------------------------------------------------------ resume
def finished_results(run_dir: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """Results of a finished run with these parameters, or None (absent, failed, changed, corrupt):
    the pipeline's step cache, :func:`tomocell.pipeline.finished_run`."""
    data = finished_run(run_dir, parameters=params)
    return None if data is None else data.get("results", {})


def _recorded_timings(run_dir: Path) -> tuple[float | None, float | None]:
    """(wall, CPU) seconds a finished run recorded in its run.json (None where absent)."""
    try:
        t = json.loads((run_dir / "run.json").read_text()).get("timings_s", {})
    except (OSError, ValueError):
        return None, None
    return t.get("total"), t.get("cpu")


# ------------------------------------------------------------------ the loop
def run_study(
    name: str,
    runs: Sequence[RunSpec],
    run_fn: RunFunction,
    out_dir: str | Path,
    *,
    figures_fn: Callable[[list[RunOutcome], Path], list[Figure]] | None = None,
    description: str = "",
    config: dict[str, Any] | None = None,
    force: bool = False,
    keep_going: bool = True,
    report_only: bool = False,
) -> StudyResult:
    """Run (or resume) a study; see the module docstring. Returns a :class:`StudyResult`.

    Raises InputError for bad run names (duplicate or not directory-safe). With ``keep_going``
    False the first failure is re-raised after its run.json is written. ``report_only``: run nothing;
    tables, figures and report from the finished runs, the others listed as ``pending`` (to look at
    a long study while it runs, or after stopping it).
    """
    out = Path(out_dir)
    seen: set[str] = set()
    for r in runs:
        if not _NAME_RE.match(r.name):
            raise InputError(f"study {name}: run name {r.name!r} must be letters, digits, '.', '_', '+', '-'")
        if r.name in seen:
            raise InputError(f"study {name}: run name {r.name!r} appears twice")
        seen.add(r.name)
    comm = mpi.world()
    outcomes: list[RunOutcome] = []
    with run_manifest(f"study.{name}", out, canonical({"study": name, "config": config or {}})) as manifest:
        for spec in runs:
            run_dir = out / "runs" / spec.name
            params = canonical(spec.params)
            done = None if force else (finished_results(run_dir, params) if mpi.is_root() else None)
            done = comm.bcast(done, root=0)
            if done is not None:
                log.info("study %s: run %s already finished: skipped", name, spec.name)
                wall, cpu = _recorded_timings(run_dir) if mpi.is_root() else (None, None)
                outcomes.append(RunOutcome(spec.name, "skipped", params, done, run_dir, seconds=wall, cpu_seconds=cpu))
                continue
            if report_only:
                outcomes.append(RunOutcome(spec.name, "pending", params, {}, run_dir, error="not run yet"))
                continue
            log.info("study %s: run %s ...", name, spec.name)
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                with run_manifest(f"study.{name}.run", run_dir, params) as m:
                    run_dir.mkdir(parents=True, exist_ok=True)
                    try:
                        res = run_fn(dict(params), run_dir)
                    finally:
                        # CPU seconds of this process (this rank under MPI): wall time alone says little
                        # on a shared machine; summed over ranks it is the cost on an idle one
                        m.data["timings_s"]["cpu"] = time.process_time() - c0
                    if not isinstance(res, dict):
                        raise TypeError(f"run function returned {type(res).__name__}, not a results dict")
                    m.set_result(**res)
                outcomes.append(RunOutcome(spec.name, "ok", params, canonical(res), run_dir,
                                           seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0))
            except Exception as exc:  # noqa: BLE001 - recorded in run.json and the report
                log.error("study %s: run %s failed: %s: %s", name, spec.name, type(exc).__name__, exc)
                outcomes.append(RunOutcome(spec.name, "failed", params, {}, run_dir,
                                           error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0,
                                           cpu_seconds=time.process_time() - c0))
                if not keep_going:
                    raise
        figures: list[Figure] = []
        if mpi.is_root() and figures_fn is not None and any(o.succeeded for o in outcomes):
            fig_dir = out / "figures"
            fig_dir.mkdir(parents=True, exist_ok=True)
            try:
                takes_config = "config" in inspect.signature(figures_fn).parameters
                figures = list(figures_fn(outcomes, fig_dir, config=config or {}) if takes_config
                               else figures_fn(outcomes, fig_dir))
            except Exception as exc:  # noqa: BLE001 - a broken figure must not lose the tables
                log.error("study %s: figures failed: %s: %s", name, type(exc).__name__, exc)
                figures = []
                manifest.set_result(figures_error=f"{type(exc).__name__}: {exc}")
        table, summary, report = out / "results.csv", out / "summary.csv", out / "report.md"
        if mpi.is_root():
            write_tidy_csv(outcomes, table)
            write_summary_csv(outcomes, summary)
            write_report(name, description, outcomes, figures, report)
        manifest.set_result(runs={o.name: o.status for o in outcomes},
                            failed=[o.name for o in outcomes if o.status == "failed"],
                            figures=[f.path for f in figures])
        manifest.add_output("results", table)
        manifest.add_output("summary", summary)
        manifest.add_output("report", report)
    return StudyResult(name, out, outcomes, figures, table, summary, report)


# ------------------------------------------------------------------ tables and report
def _param_columns(outcomes: Iterable[RunOutcome]) -> list[str]:
    cols: list[str] = []
    for o in outcomes:
        for k in flatten_scalars(o.params):
            if k not in cols:
                cols.append(k)
    return cols


def write_tidy_csv(outcomes: Sequence[RunOutcome], path: Path) -> Path:
    """Long table: run, status, <scalar parameters>, metric, index, value (atomic)."""
    pcols = _param_columns(outcomes)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "status", *pcols, "metric", "index", "value"])
        for o in outcomes:
            p = flatten_scalars(o.params)
            base = [o.name, o.status, *[p.get(c, "") for c in pcols]]
            rows = flatten(o.results) if o.succeeded else [("error", None, o.error)]
            for metric, idx, val in rows:
                w.writerow([*base, metric, "" if idx is None else idx, "" if val is None else val])
    return path


def write_summary_csv(outcomes: Sequence[RunOutcome], path: Path) -> Path:
    """Wide table: one row per run, scalar parameters then scalar metrics (atomic)."""
    pcols = _param_columns(outcomes)
    mcols: list[str] = []
    for o in outcomes:
        for k in flatten_scalars(o.results):
            if k not in mcols:
                mcols.append(k)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "status", *pcols, *mcols])
        for o in outcomes:
            p, m = flatten_scalars(o.params), flatten_scalars(o.results)
            w.writerow([o.name, o.status, *[p.get(c, "") for c in pcols], *[m.get(c, "") for c in mcols]])
    return path


def read_table(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV written here, as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_report(name: str, description: str, outcomes: Sequence[RunOutcome], figures: Sequence[Figure], path: Path) -> Path:
    """``report.md``: what ran, what failed and why, the figures with captions (atomic)."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    lines = [f"# Study: {name}", "", f"Generated {now} by tomocell.", ""]
    if description:
        lines += [description.strip(), ""]
    # the parameters every run shares are listed once below the table; the table shows what differs
    flat = [flatten_scalars(o.params) for o in outcomes]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    common = {k: flat[0][k] for k in keys if len(flat) > 1 and all(k in f and f[k] == flat[0][k] for f in flat)}
    lines += ["## Runs", "", "| run | status | wall (s) | CPU (s) | parameters |", "|---|---|---|---|---|"]
    for o, f in zip(outcomes, flat):
        t = "" if o.seconds is None else f"{o.seconds:.1f}"
        c = "" if o.cpu_seconds is None else f"{o.cpu_seconds:.1f}"
        ptxt = ", ".join(f"{k}={v}" for k, v in f.items() if k not in common)
        lines.append(f"| {o.name} | {o.status} | {t} | {c} | {ptxt} |")
    done = [o for o in outcomes if o.cpu_seconds is not None]
    if done:
        lines += ["", f"CPU time of the {len(done)} runs with a record: {sum(o.cpu_seconds for o in done) / 60:.1f} min "
                  "(per process; under MPI multiply by the ranks)."]
    if common:
        lines += ["", "Parameters of every run: " + ", ".join(f"{k}={v}" for k, v in common.items()) + "."]
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        lines += ["", "## Failed runs", ""]
        lines += [f"- **{o.name}**: {o.error} (details: `runs/{o.name}/run.json`)" for o in failed]
    lines += ["", "## Figures", ""]
    if figures:
        for i, f in enumerate(figures, start=1):
            lines += [f"![Figure {i}]({f.path})", "", f"**Figure {i}.** {f.caption}", ""]
    else:
        lines += ["(none)", ""]
    lines += ["## Tables", "", "- `results.csv`: tidy, one row per run x metric (x index for series).",
              "- `summary.csv`: one row per run, scalar metrics.",
              "- `runs/<run>/run.json`: each run's parameters, versions, timings and results.", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


def save_figure(fig: Any, path: Path, caption: str, study_dir: Path) -> Figure:
    """Save a matplotlib figure atomically and return its :class:`Figure` entry."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return Figure(str(path.relative_to(study_dir)), caption)


# ------------------------------------------------------------------ study modules
def study_config(module: ModuleType, config_path: str | Path | None = None, **overrides: Any) -> dict[str, Any]:
    """A study's configuration: its default ``studies/configs/<NAME>.toml``, or ``config_path``,
    with ``overrides`` on top."""
    from tomocell.config import load_config

    stem = getattr(module, "CONFIG_NAME", module.NAME)  # file stem when NAME is not a module-like name
    path = Path(config_path) if config_path else Path(__file__).parent / "configs" / f"{stem}.toml"
    cfg = load_config(path)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def run_study_module(module: ModuleType, config: dict[str, Any], out_dir: str | Path, **kw: Any) -> StudyResult:
    """Run a study module (``NAME``, ``DESCRIPTION``, ``plan``, ``run_one``, ``figures``)."""
    return run_study(module.NAME, module.plan(config), module.run_one, out_dir,
                     figures_fn=getattr(module, "figures", None), description=getattr(module, "DESCRIPTION", ""),
                     config=config, **kw)


def study_main(module: ModuleType, argv: Sequence[str] | None = None) -> int:
    """``python -m tomocell.studies.<name> [--config FILE] --out DIR [--force]`` (also under mpirun).

    Exit 0 when every run finished, 1 when some failed (see report.md), 2 on bad input.
    """
    import argparse

    from tomocell.log import setup_logging

    ap = argparse.ArgumentParser(prog=f"python -m tomocell.studies.{getattr(module, 'CONFIG_NAME', module.NAME)}", description=getattr(module, "DESCRIPTION", ""))
    ap.add_argument("--config", help="study config (TOML/YAML/JSON); default: the bundled studies/configs/NAME.toml")
    ap.add_argument("--out", required=True, help="study directory (runs/, results.csv, report.md)")
    ap.add_argument("--force", action="store_true", help="rerun finished runs too")
    ap.add_argument("--report-only", action="store_true", help="run nothing: tables, figures, report of the finished runs")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(-1 if args.quiet else 0)
    try:
        cfg = study_config(module, args.config)
        res = run_study_module(module, cfg, args.out, force=args.force, report_only=args.report_only)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if mpi.is_root():
        print(f"{res.report} ({len(res.outcomes) - len(res.failed)} of {len(res.outcomes)} runs finished)")
    return 1 if res.failed else 0
