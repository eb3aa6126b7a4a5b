"""``tomocell demo``: the whole chain on a small synthetic electrode.

generate -> characterise -> mesh -> 1C discharge -> plots, everything under ``--out``
(default ``results/demo/``), with a short summary printed at the end. Each step is a plain function
call into its stage package (no subprocesses); a step whose stage is not installed is reported as
skipped rather than faked. Re-running reuses finished steps (``--fresh`` recomputes everything).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tomocell import mpi
from tomocell.cliutil import add_c_rate, add_out, add_seed
from tomocell.log import get_logger
from tomocell.manifest import run_manifest

HELP = "run the whole chain on a small synthetic electrode (the README's main job)"
DESCRIPTION = (
    "Generate a small synthetic NMC electrode, characterise it (phase fractions, pore size, particles, "
    "tortuosity), mesh it conformally with a separator slab, simulate a galvanostatic half-cell discharge "
    "against Li metal, and plot the results. Everything goes under --out; a summary is printed at the end. "
    "Steps already finished in --out are reused unless --fresh is given."
)
EPILOG = """examples:
  tomocell demo                               # results/demo/
  tomocell demo --c-rate 2 --out results/demo-2C
  mpirun -n 2 tomocell demo                   # mesh and physics in parallel
"""

log = get_logger("demo")


@dataclass
class DemoContext:
    out: Path
    seed: int
    c_rate: float
    fresh: bool
    state: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


#: (step name, module that must exist, function)
STEPS: list[tuple[str, str, Callable[[DemoContext], None]]] = []


def step(name: str, requires: str) -> Callable[[Callable[[DemoContext], None]], Callable[[DemoContext], None]]:
    def deco(fn: Callable[[DemoContext], None]) -> Callable[[DemoContext], None]:
        STEPS.append((name, requires, fn))
        return fn

    return deco


def run_demo(out: Path, *, seed: int = 0, c_rate: float = 1.0, fresh: bool = False) -> dict[str, Any]:
    """Run every available step; return the summary dict (also written to ``summary.json``)."""
    from tomocell.atomic import write_json

    ctx = DemoContext(Path(out), seed, c_rate, fresh)
    ctx.out.mkdir(parents=True, exist_ok=True)
    with run_manifest("demo", ctx.out, {"seed": seed, "c_rate": c_rate}) as man:
        for name, requires, fn in STEPS:
            if not _has(requires):
                ctx.summary.setdefault("skipped", []).append(f"{name} (stage {requires} not installed)")
                log.info("step %s: skipped, %s is not available yet", name, requires)
                continue
            log.info("step %s ...", name)
            t0 = time.perf_counter()
            with man.timed(name):
                fn(ctx)
            log.info("step %s done in %.1f s", name, time.perf_counter() - t0)
        man.set_result(**{k: v for k, v in ctx.summary.items() if k != "skipped"})
        if mpi.rank() == 0:
            write_json(ctx.out / "summary.json", ctx.summary)
    return ctx.summary


def format_summary(summary: dict[str, Any], out: Path) -> str:
    lines = [f"tomocell demo: results in {out}/"]
    for key, value in summary.items():
        if key == "skipped":
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        lines.append(f"  {key}: {value}")
    for s in summary.get("skipped", []):
        lines.append(f"  skipped: {s}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out(parser, default="results/demo", what="all demo outputs")
    add_seed(parser)
    add_c_rate(parser, default=1.0)
    parser.add_argument("--fresh", action="store_true", help="recompute every step even if its outputs exist")


def run(args: argparse.Namespace) -> int:
    from tomocell.errors import InputError

    if args.c_rate is None or not args.c_rate > 0:
        raise InputError(f"--c-rate must be > 0, got {args.c_rate}")
    summary = run_demo(args.out, seed=args.seed, c_rate=args.c_rate, fresh=args.fresh)
    if mpi.rank() == 0:
        print(format_summary(summary, args.out))
    return 0


def _load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
