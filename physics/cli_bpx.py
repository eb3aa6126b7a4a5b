"""``tomocell export-bpx``: a BPX file of a simulate run's image-measured effective parameters."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomocell.physics.cli_twin import add_transport_options

HELP = "write a BPX JSON of a simulate run's measured effective electrode parameters (needs tomocell[dfn])"
DESCRIPTION = (
    "Writes a BPX 1.x file (Model 'Partial': a half-cell has no negative electrode) with the effective "
    "parameters measured on the run's mesh (thickness, porosity, transport efficiency, surface area per "
    "volume, particle radius, separator) and the run's parameter set (OCP, kinetics, electrolyte tables). "
    "Validated by the bpx package before it is written; `tomocell simulate --params cell.json` reads it back. "
    "Layout: tomocell.physics.bpx_export."
)
EPILOG = """examples:
  tomocell export-bpx runs/1C --out cell.json
  tomocell export-bpx runs/1C --out cell.json --tau 2.4
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sim_dir", metavar="SIM_DIR", help="directory of a finished `tomocell simulate` run")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.json", help="BPX file to write")
    add_transport_options(parser)
    parser.add_argument("--li-metal-negative", action="store_true",
                        help="add a negative electrode standing for the Li metal (Model DFN), so full-cell readers "
                             "such as pybamm.ParameterValues.create_from_bpx load the file")


def run(args: argparse.Namespace) -> int:
    from tomocell import mpi
    from tomocell.errors import InputError
    from tomocell.physics.bpx_export import export_bpx

    if args.out.exists():
        raise InputError(f"--out {args.out} exists: tomocell does not write over files (remove it first)")
    path = export_bpx(args.sim_dir, args.out, tau=args.tau, bruggeman=args.bruggeman, li_negative=args.li_metal_negative)
    if mpi.rank() == 0:
        print(f"tomocell export-bpx: wrote {path} (validated by bpx)")
    return 0
