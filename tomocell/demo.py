"""``tomocell demo``: the whole chain on a small synthetic electrode.

generate -> characterise -> mesh -> 1C discharge -> plots, everything under ``--out``
(default ``results/demo/``), with a short summary printed at the end. Each step is a plain function
call into its stage package (no subprocesses). Re-running reuses finished steps (``--fresh`` recomputes everything).
"""

from __future__ import annotations

import argparse
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
    generator: dict[str, Any] = field(default_factory=dict)
    meshing: dict[str, Any] = field(default_factory=dict)
    snapshots: tuple[float, ...] = (0.25, 0.5, 0.7)
    state: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


#: (step name, function), in pipeline order
STEPS: list[tuple[str, Callable[[DemoContext], None]]] = []


def step(name: str) -> Callable[[Callable[[DemoContext], None]], Callable[[DemoContext], None]]:
    def deco(fn: Callable[[DemoContext], None]) -> Callable[[DemoContext], None]:
        STEPS.append((name, fn))
        return fn

    return deco


def _done(run_dir: Path, ctx: DemoContext, *outputs: str, inputs: dict[str, str] | None = None) -> bool:
    """True if ``run_dir`` holds a finished step of the same demo settings whose ``outputs`` exist and
    whose ``inputs`` have these sha256 (resume; the pipeline's step cache,
    :func:`tomocell.pipeline.finished_run`)."""
    from tomocell.pipeline import finished_run

    if ctx.fresh:
        return False
    return finished_run(run_dir, parameters=_key(ctx), key=lambda data: data.get("parameters", {}).get("demo"),
                        inputs=inputs, outputs=outputs) is not None


def _key(ctx: DemoContext) -> dict[str, Any]:
    """What a step's outputs depend on: a finished step is reused only if this is unchanged."""
    return {"seed": ctx.seed, "generator": ctx.generator, "meshing": ctx.meshing}


#: demo sizes: small enough for <= 10 min on 2 cores, large enough to hold ~300 particles.
#: "demo" preset: 30 x 20 x 20 um (thickness first) at 0.5 um, see microstructure/synthetic.py
DEMO_GENERATOR: dict[str, Any] = {"preset": "demo"}
#: the smoothed conformal route (meshing/smoothed.py) at 1 um blocks (fraction-preserving coarsening):
#: phase volumes exact, interfaces off the staircase; at this size one-voxel CBD films cannot keep their
#: area, so areas are reported in fidelity.json's warnings instead of failing the mesh (area_tol None).
#: docs/meshing.md and scripts/study_mesh_convergence.py measure what the coarse mesh costs.
DEMO_MESH: dict[str, Any] = {"route": "smoothed", "coarsen": 2, "separator_um": 25.0, "area_tol": None}
DEMO_SNAPSHOTS = (0.25, 0.5, 0.7)
#: ``tomocell demo --size tiny``: the same chain in about a minute (the default test suite runs it)
TINY_GENERATOR: dict[str, Any] = {"preset": "tiny"}
TINY_MESH: dict[str, Any] = {**DEMO_MESH, "coarsen": 1, "separator_um": 5.0}
SIZES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {"demo": (DEMO_GENERATOR, DEMO_MESH),
                                                           "tiny": (TINY_GENERATOR, TINY_MESH)}


@step("generate")
def _generate(ctx: DemoContext) -> None:
    from tomocell.microstructure.io import read_volume, write_volume
    from tomocell.microstructure.report_slices import save_slices_png
    from tomocell.microstructure.synthetic import generate_electrode

    d = ctx.out / "volume"
    path = d / "volume.tif"
    if _done(d, ctx, path.name):
        ctx.state["volume"] = read_volume(path)
    else:
        with run_manifest("generate", d, {**ctx.generator, "seed": ctx.seed, "demo": _key(ctx)}) as man:
            vol = generate_electrode(seed=ctx.seed, **ctx.generator)
            if mpi.is_root():
                write_volume(vol, path)
                save_slices_png(vol, d / "slices.png", title="synthetic demo electrode")
            mpi.world().barrier()
            man.add_output("volume", path)
            man.set_result(fractions=vol.fractions(), shape=list(vol.shape))
        ctx.state["volume"] = vol
    vol = ctx.state["volume"]
    ctx.summary["volume"] = f"{vol.shape[0]} x {vol.shape[1]} x {vol.shape[2]} voxels of {vol.voxel_size_um[0]:g} um ({path})"
    ctx.summary["phase fractions"] = vol.fractions()


@step("characterise")
def _characterise(ctx: DemoContext) -> None:
    import numpy as np

    from tomocell.microstructure.characterise import characterise

    d = ctx.out / "characterisation"
    labels_path = d / "particle_labels.npy"
    if _done(d, ctx, labels_path.name, "metrics.json"):
        metrics = json.loads((d / "metrics.json").read_text())
        ctx.state["particle_labels"] = np.load(labels_path)
    else:
        with run_manifest("characterise", d, {"fast": True, "demo": _key(ctx)}) as man:
            res = characterise(ctx.state["volume"], d, fast=True)
            if mpi.is_root():
                from tomocell.atomic import atomic_path

                with atomic_path(labels_path) as tmp:
                    np.save(tmp, res.particle_labels)
            metrics = res.metrics
            man.set_result(tortuosity=_pore_taus(metrics))
        ctx.state["particle_labels"] = res.particle_labels
    ctx.summary["pore tortuosity factor"] = _pore_taus(metrics)
    if "pore_size" in metrics:
        ctx.summary["pore size D50 (um)"] = float(metrics["pore_size"]["d50_um"])
    if "particles" in metrics:
        ctx.summary["particles"] = f"{metrics['particles']['count']} (D50 {metrics['particles']['d50_um']:.2f} um)"
    ctx.summary["characterisation report"] = str(d / "report.md")


def _pore_taus(metrics: dict[str, Any]) -> dict[str, float | str]:
    """tau of the pore phase per axis ('not percolating' where it does not connect the faces)."""
    out: dict[str, float | str] = {}
    for k, v in metrics.get("tortuosity", {}).get("pore", {}).items():
        if isinstance(v, dict):
            out[k] = float(v["tau"]) if v.get("percolating") and v.get("tau") is not None else "not percolating"
    return out


@step("mesh")
def _mesh(ctx: DemoContext) -> None:
    from tomocell.meshing.pipeline import mesh_volume, write_outputs

    d = ctx.out / "mesh"
    mesh_path = d / "mesh.xdmf"
    if _done(d, ctx, mesh_path.name, "fidelity.json"):
        report = json.loads((d / "fidelity.json").read_text())
    else:
        with run_manifest("mesh", d, {**ctx.meshing, "demo": _key(ctx)}) as man:
            res = mesh_volume(ctx.state["volume"], particle_labels=ctx.state.get("particle_labels"), **ctx.meshing)
            write_outputs(res, d)
            report = res.report
            man.set_result(tets=report.get("tets"), nodes=report.get("nodes"), route=report.get("route"))
    ctx.state["mesh"] = mesh_path
    ctx.summary["mesh"] = f"{report.get('tets')} tets, {report.get('nodes')} nodes ({report.get('route')} route, {mesh_path})"
    sim = report.get("simulated_vs_characterised", {})
    if sim:  # what the physics sees, next to the characterisation printed above
        ctx.summary["simulated mesh"] = {
            **{f"{k} fraction": v["mesh"] for k, v in sim["phase_fractions"].items()},
            **{"pore tau axis0 (P1 FE on the mesh)": t["mesh_tau"] for k, t in sim["transport"].items()
               if k == "pore" and t.get("mesh_tau") is not None}}
    if report.get("warnings"):  # the simulated electrode is not the characterised one: say so
        ctx.summary["mesh changed the electrode"] = "; ".join(report["warnings"])


@step("simulate")
def _simulate(ctx: DemoContext) -> None:
    from tomocell.meshing.meshfile import mesh_sha256
    from tomocell.physics.cli import simulate_file

    from tomocell.pipeline import finished_run

    d = ctx.out / f"simulation-{ctx.c_rate:g}C"
    done = None if ctx.fresh else finished_run(
        d, stage="simulate", parameters=ctx.c_rate, key=lambda data: data.get("parameters", {}).get("c_rate"),
        inputs={"mesh": mesh_sha256(ctx.state["mesh"])}, outputs=("timeseries.csv",))
    if done is not None:
        results = done["results"]
    else:
        res = simulate_file(ctx.state["mesh"], ctx.c_rate, d, dod_snapshots=ctx.snapshots)
        results = res.summary()
    ctx.state["simulation"] = d
    ctx.summary["discharge"] = (
        f"{results['capacity_mAh_g']:.1f} mAh/g, {results['capacity_mAh_cm2']:.3f} mAh/cm2 at {ctx.c_rate:g}C "
        f"({100 * results['utilisation']:.0f} % of nominal), {results['reason']} at {results['final_voltage_V']:.3f} V"
    )


@step("plots")
def _plots(ctx: DemoContext) -> None:
    from tomocell.studies.analyse import analyse_runs

    d = ctx.out / "analysis"
    analyse_runs([ctx.state["simulation"]], d, characterisation_dir=ctx.out / "characterisation")
    ctx.summary["plots"] = str(d / "report.md")


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    c_rate: float = 1.0,
    fresh: bool = False,
    generator: dict[str, Any] | None = None,
    meshing: dict[str, Any] | None = None,
    snapshots: tuple[float, ...] = DEMO_SNAPSHOTS,
) -> dict[str, Any]:
    """Run every available step; return the summary dict (also written to ``summary.json``).

    ``generator`` / ``meshing``: keyword arguments for generate_electrode / mesh_volume (defaults
    :data:`DEMO_GENERATOR`, :data:`DEMO_MESH`).
    """
    from tomocell.atomic import write_json

    ctx = DemoContext(Path(out), seed, c_rate, fresh, dict(generator or DEMO_GENERATOR),
                      dict(meshing or DEMO_MESH), tuple(snapshots))
    # the demo continues its own earlier run in --out (finished steps are reused), never a foreign directory
    with run_manifest("demo", ctx.out, {"seed": seed, "c_rate": c_rate}, guard=True, rerun_ok=True) as man:
        for name, fn in STEPS:
            log.info("step %s ...", name)
            t0 = time.perf_counter()
            with man.timed(name):
                fn(ctx)
            log.info("step %s done in %.1f s", name, time.perf_counter() - t0)
        man.set_result(**ctx.summary)
        if mpi.rank() == 0:
            write_json(ctx.out / "summary.json", ctx.summary)
    return ctx.summary


def format_summary(summary: dict[str, Any], out: Path) -> str:
    lines = [f"tomocell demo: results in {out}/"]
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out(parser, default="results/demo", what="all demo outputs")
    add_seed(parser)
    add_c_rate(parser, default=1.0)
    parser.add_argument("--fresh", action="store_true", help="recompute every step even if its outputs exist")
    parser.add_argument("--size", choices=sorted(SIZES), default="demo",
                        help="demo: 30 x 20 x 20 um electrode (default, minutes); tiny: 8 x 6 x 6 um (about a minute)")


def run(args: argparse.Namespace) -> int:
    from tomocell.config import check_c_rate

    check_c_rate(args.c_rate, "--c-rate")
    generator, meshing = SIZES[args.size]
    summary = run_demo(args.out, seed=args.seed, c_rate=args.c_rate, fresh=args.fresh, generator=generator,
                       meshing=meshing)
    if mpi.rank() == 0:
        print(format_summary(summary, args.out))
    return 0
