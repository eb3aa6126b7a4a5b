"""``tomocell characterise VOLUME --out DIR``: every microstructure metric, with figures and a report."""

from __future__ import annotations

import argparse

from tomocell.cliutil import add_labels, add_out, add_voxel_size, existing_file
from tomocell.config import parse_labels, parse_voxel_size
from tomocell.errors import InputError
from tomocell.manifest import run_manifest

HELP = "compute every microstructure metric (fractions, pore size, particles, tortuosity, travel distance, ...)"
DESCRIPTION = (
    "Characterise a labelled three-phase electrode volume as in Lu et al. 2020 (Fig. 2 and Fig. 5d-i): phase\n"
    "fractions and slice profiles, local thickness (pore size distribution), watershed-separated particles\n"
    "(size, ellipsoid axes, sphericity, orientation vs depth), pore tortuosity factor from a steady diffusion\n"
    "simulation in each direction (tau = eps D0 / D_eff; PETSc CG + GAMG, MPI-parallel) with flux maps,\n"
    "tortuosity and Bruggeman exponent of growing slabs from the separator, travel distance by fast marching\n"
    "and tau_pore / tau_electrode at every reaction site, interfacial areas, percolation, RVE study.\n"
    "Writes DIR/metrics.json, CSV tables, fields.vti (ParaView), PNG figures, report.md and run.json.\n"
    "Axis 0 of the volume is the through-thickness direction, index 0 the separator side.\n"
    "Exit codes: 0 ok, 2 bad input (no pore or no active phase, missing voxel size, ...)."
)
EPILOG = """examples:
  tomocell characterise electrode.tif --labels 0=pore,85=active,170=cbd --voxel-size 0.390625 --out char/
  tomocell characterise generated.tif --out char/ --fast
  tomocell characterise electrode.tif --out char/ --directions 0 --skip rve,depth --electronic
  mpirun -n 2 tomocell characterise big.h5 --voxel-size 0.126 --labels 0=pore,1=active,2=cbd --out char/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tomocell.microstructure.characterise import STEPS

    parser.add_argument("volume", help="labelled volume (TIFF, TIFF slice folder, HDF5, NPY, RAW)")
    add_out(parser, what="metrics, tables, fields, figures and report")
    add_voxel_size(parser)
    add_labels(parser)
    parser.add_argument("--directions", default="0,1,2", metavar="AXES",
                        help="axes for the tortuosity factor, e.g. '0' or '0,1,2' (default 0,1,2)")
    parser.add_argument("--skip", default="", metavar="STEP,...", help=f"steps to leave out: {', '.join(STEPS)}")
    parser.add_argument("--electronic", action="store_true", help="also the electronic tortuosity of active + CBD")
    parser.add_argument("--fast", action="store_true", help="fewer depth/RVE steps, no tortuosity in the RVE study")
    parser.add_argument("--depth-steps", type=int, default=4, metavar="N", help="slabs in the depth profile (default 4)")
    parser.add_argument("--depth-directions", default=None, metavar="AXES",
                        help="axes for the depth profile (default: the --directions)")
    parser.add_argument("--rve-steps", type=int, default=4, metavar="N", help="sub-volume sizes in the RVE study (default 4)")
    parser.add_argument("--dataset", default=None, help="HDF5 dataset path")


def _parse_axes(text: str) -> tuple[int, ...]:
    try:
        axes = tuple(int(a) for a in str(text).split(",") if a.strip())
    except ValueError:
        raise InputError(f"--directions: {text!r} is not a comma-separated list of axes 0, 1, 2") from None
    if not axes or any(a not in (0, 1, 2) for a in axes):
        raise InputError(f"--directions: {text!r} must name axes among 0, 1, 2")
    return axes


def run(args: argparse.Namespace) -> int:
    from tomocell.microstructure.characterise import characterise
    from tomocell.microstructure.io import read_volume

    path = existing_file(args.volume, "volume")
    axes = _parse_axes(args.directions)
    depth_axes = _parse_axes(args.depth_directions) if args.depth_directions else None
    skip = tuple(s.strip() for s in str(args.skip or "").split(",") if s.strip())
    labels = parse_labels(args.labels) if args.labels else None
    params = {k: getattr(args, k) for k in ("voxel_size", "labels", "directions", "skip", "electronic", "fast",
                                           "depth_steps", "depth_directions", "rve_steps", "dataset")}
    with run_manifest("characterise", args.out, params, guard=True, overwrite=args.overwrite) as man:
        man.add_input("volume", path)
        with man.timed("read"):
            vol = read_volume(path, voxel_size_um=parse_voxel_size(args.voxel_size), labels=labels, dataset=args.dataset)
        vol.metadata.setdefault("source", str(path))
        with man.timed("characterise"):
            res = characterise(vol, args.out, directions=axes, skip=skip, electronic=args.electronic,
                               depth_steps=args.depth_steps, depth_directions=depth_axes, rve_steps=args.rve_steps,
                               fast=args.fast)
        for k, p in res.outputs.items():
            man.add_output(k, p)
        m = res.metrics
        headline = {"phase_fractions": m["phase_fractions"]}
        if "tortuosity" in m:
            headline["tau_pore"] = {k: e["tau"] for k, e in m["tortuosity"]["pore"].items() if k.startswith("axis")}
        man.set_result(**headline)
    _print_headline(res.metrics, args.out)
    return 0


def _print_headline(m: dict, out: object) -> None:
    f = m["phase_fractions"]
    parts = [f"pore {f['pore']:.3f}, active {f['active']:.3f}, CBD {f['cbd']:.3f}"]
    if "pore_size" in m:
        parts.append(f"pore D50 {m['pore_size']['d50_um']:.2f} um")
    if "particles" in m:
        parts.append(f"{m['particles']['count']} particles, D50 {m['particles']['d50_um']:.2f} um")
    if "tortuosity" in m:
        taus = [f"{k}: " + ("not percolating" if e["tau"] is None else f"{e['tau']:.3f}")
                for k, e in m["tortuosity"]["pore"].items() if k.startswith("axis")]
        parts.append("tau_pore " + ", ".join(taus))
    print("characterised: " + "; ".join(parts) + f" -> {out}/report.md")
