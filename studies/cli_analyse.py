"""``tomocell analyse``: the paper's Fig. 3-5 analyses of discharge runs (plots, renders, tables, report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomocell.cliutil import add_out
from tomocell.errors import InputError

HELP = "analyse discharge runs: voltage curves, field renders, per-particle SoL, J_ct heterogeneity, report"
DESCRIPTION = (
    "Reads `tomocell simulate` run directories (one per C-rate, same electrode) and writes the analyses of the "
    "paper's 'Microstructure and performance correlation' section into --out: voltage vs capacity with a table of "
    "capacity, energy and mean voltage; off-screen renders of SoL, c_e, |Li+ flux| and J_ct at a depth of discharge "
    "(one column per rate, fixed colour ranges); per-particle state of lithiation vs depth and size, SoL histograms "
    "with their peaks and particles, core vs surface; 2D histograms of J_ct against i0 and eta_act with the "
    "decomposition of eta_act into U and phi_e and the conclusion; through-thickness profiles; electrochemical Biot "
    "numbers; and, with --characterisation, phi_e at reaction sites vs Li+ travel distance and local tortuosity vs "
    "depth. Everything is summarised in report.md / report.html with the numbers as CSV."
)
EPILOG = """examples:
  tomocell analyse results/1.25C results/2.5C results/5C --out results/analysis
  tomocell analyse results/5C --out results/analysis-5C --dod 25
  tomocell analyse results/*C --out results/analysis --characterisation results/characterise
  tomocell analyse results/*C --out results/analysis-peaks --peak-bandwidth 0.01 --no-render
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by `tomocell simulate --out`")
    add_out(parser, what="the analysis (figures, CSV tables, report)")
    parser.add_argument("--dod", type=float, default=50.0, metavar="PERCENT",
                        help="depth of discharge of the field analyses in %% (a snapshot the runs wrote; default 50)")
    parser.add_argument("--characterisation", metavar="DIR", default=None,
                        help="`tomocell characterise` output of the same electrode (travel distance, reaction-site tortuosity)")
    parser.add_argument("--peak-bandwidth", type=float, default=None, metavar="SOL",
                        help="kernel bandwidth (SoL units, e.g. 0.01) of the SoL-histogram peak search; default Scott's "
                             "rule, which merges close peaks")
    parser.add_argument("--no-render", action="store_true", help="skip the PyVista field renders")


def run(args: argparse.Namespace) -> int:
    from tomocell import mpi
    from tomocell.manifest import run_manifest
    from tomocell.studies.analyse import analyse_runs

    if not 0 < args.dod < 100:
        raise InputError(f"--dod {args.dod}: expected a percentage in (0, 100)")
    if mpi.size() > 1:
        raise InputError("tomocell analyse runs on one process; start it without mpirun")
    out = Path(args.out)
    settings = {"runs": [str(r) for r in args.runs], "dod": args.dod / 100.0,
                "characterisation": args.characterisation, "render": not args.no_render,
                "peak_bandwidth": args.peak_bandwidth}
    with run_manifest("analyse", out, settings, guard=True, overwrite=args.overwrite) as man:
        res = analyse_runs(args.runs, out, dod=args.dod / 100.0, characterisation_dir=args.characterisation,
                           render=not args.no_render, peak_bandwidth=args.peak_bandwidth)
        for r in args.runs:
            for name in ("run.json", "timeseries.csv", "particles.csv"):
                if (Path(r) / name).exists():
                    man.add_input(f"{r}/{name}", Path(r) / name)
        man.set_result(summary=res.summary, spread=res.spread, conclusions=res.conclusions,
                       spread_grows_with_rate=res.spread_grows_with_rate, governs_j=res.governs_j)
        for t in res.tables + [f.path for f in res.figures] + ["report.md", "report.html"]:
            man.add_output(t, out / t)
    print(f"tomocell analyse: {len(res.figures)} figures, {len(res.tables)} tables, report in {out}/report.md")
    for c in res.conclusions:
        print(f"  {c}")
    return 0
