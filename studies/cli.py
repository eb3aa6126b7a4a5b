"""``tomocell study NAME``: run (or resume) one of the design and manufacturing studies of issue 8."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType

from tomocell.errors import InputError

#: study name -> module (NAME, DESCRIPTION, plan, run_one, figures; config studies/configs/<module>.toml)
STUDIES: dict[str, str] = {
    "rate-capability": "tomocell.studies.rate_capability",
    "graded-designs": "tomocell.studies.graded_designs",
    "thickness": "tomocell.studies.thickness",
    "calendering": "tomocell.studies.calendering",
    "calendering-rate": "tomocell.studies.calendering_rate",
    "rve": "tomocell.studies.rve_capacity",
}

HELP = "run a design/manufacturing study (rate capability, graded designs, thickness, calendering) with resume"
DESCRIPTION = (
    "Runs one of the paper's design studies from a config file (the bundled coarse default, or --config FILE) "
    "into --out: every run gets OUT/runs/<run>/ with its run.json (parameters, versions, timings, results); "
    "finished runs are skipped when the study is run again (resume; --force reruns), and an interrupted "
    "discharge continues from its checkpoint. Writes results.csv (tidy), summary.csv (one row per run), "
    "figures/ and report.md. Under MPI: `mpirun -n N tomocell study NAME ...`.\n\nstudies:\n"
    "  rate-capability   designs x C-rates: capacity vs C-rate (Fig. 8b), Ragone with knee points (Fig. 8a)\n"
    "  graded-designs    as prepared / graded particle / R1 / R2 / R3 / high porosity at 3.75C (Fig. 6-7)\n"
    "  thickness         50 vs 75 um electrode over C-rates (Fig. 8, green curve)\n"
    "  calendering       structure metrics vs calendering strain (Fig. 9j-k)\n"
    "  calendering-rate  calendered vs uncalendered rate capability at three mass loadings (Fig. 9l)\n"
    "  rve               metrics and capacity of lateral windows of growing width: how wide a column must be\n\n"
    "--config FILE here is the study's own config (TOML/YAML/JSON, same keys as the bundled "
    "studies/configs/<name>.toml; the *_full.toml files there document the full-resolution set-ups and their cost)."
)
EPILOG = """examples:
  tomocell study rate-capability --out results/rate
  tomocell study graded-designs --out results/graded          # run again to resume after an interruption
  tomocell study graded-designs --out results/graded --report-only   # figures of what has finished so far
  tomocell study thickness --config my_thickness.toml --out results/thick
  mpirun -n 4 tomocell study calendering-rate --out results/cal-rate
  tomocell study --list
"""


def study_module(name: str) -> ModuleType:
    if name not in STUDIES:
        raise InputError(f"unknown study {name!r} (studies: {', '.join(STUDIES)})")
    return importlib.import_module(STUDIES[name])


def default_config_path(name: str) -> Path:
    mod = study_module(name)
    return Path(__file__).parent / "configs" / f"{getattr(mod, 'CONFIG_NAME', mod.NAME)}.toml"


def _lock_study_dir(out: Path, stage: str):
    """Refuse a non-empty --out that is not this study's (a study continues its own earlier runs), and
    lock it for this process (rank 0), as every other command does (tomocell.outdir)."""
    from tomocell import mpi
    from tomocell.outdir import OutLock, check_out

    err, lock = None, None
    if mpi.is_root():
        try:
            d, _ = check_out(out, stage, rerun_ok=True)
            d.mkdir(parents=True, exist_ok=True)
            lock = OutLock(d)
            lock.acquire()
        except InputError as exc:
            err = str(exc)
        except OSError as exc:
            err = f"--out {out}: {exc.strerror or exc}"
    err = mpi.world().bcast(err, root=0)
    if err is not None:
        raise InputError(err)
    return lock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", choices=list(STUDIES), metavar="NAME", help=f"study: {', '.join(STUDIES)}")
    parser.add_argument("--out", type=Path, default=None, metavar="PATH",
                        help="study directory (default: results/study-NAME)")
    parser.add_argument("--force", action="store_true", help="rerun finished runs too")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rewrite tables, figures and report from the runs finished so far")
    parser.add_argument("--list", action="store_true", help="list the studies and their default configs, then exit")
    # the study config is this command's input, not a file of option defaults (see tomocell.cli)
    parser.set_defaults(_config_is_input=True)


def run(args: argparse.Namespace) -> int:
    from tomocell import mpi
    from tomocell.studies.runner import run_study_module, study_config

    if args.list or not args.name:
        if not args.name and not args.list:
            raise InputError(f"name a study: {', '.join(STUDIES)} (or --list)")
        for name in STUDIES:
            mod = study_module(name)
            print(f"{name:18s} {default_config_path(name)}\n{'':18s} {mod.DESCRIPTION[:110]}...")
        return 0
    mod = study_module(args.name)
    cfg_path = Path(args.config) if args.config else default_config_path(args.name)
    if not cfg_path.is_file():
        raise InputError(f"study config {cfg_path} does not exist")
    cfg = study_config(mod, cfg_path)
    out = args.out or Path("results") / f"study-{args.name}"
    lock = _lock_study_dir(out, f"study.{mod.NAME}" if hasattr(mod, "NAME") else f"study.{args.name}")
    try:
        res = run_study_module(mod, cfg, out, force=args.force, report_only=args.report_only)
    finally:
        if lock is not None:
            lock.release()
    if mpi.is_root():
        n_ok = sum(o.succeeded for o in res.outcomes)
        print(f"tomocell study {args.name}: {n_ok} of {len(res.outcomes)} runs finished; report {res.report}")
        for o in res.failed:
            print(f"  failed: {o.name}: {o.error}")
    return 1 if res.failed else 0
