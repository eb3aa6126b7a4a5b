"""``tomocell twin``: the homogenised PyBaMM DFN twin of a finished simulate run, side by side."""

from __future__ import annotations

import argparse

from tomocell.cliutil import add_out

HELP = "run the homogenised PyBaMM DFN twin of a finished simulate run and compare (needs tomocell[dfn])"
DESCRIPTION = (
    "Builds a PyBaMM DFN half-cell (positive working electrode, Li-metal counter electrode) from the mesh of a "
    "finished `tomocell simulate` run: its thickness, porosity, active and CBD fractions, active/electrolyte "
    "interface area, particle radii and separator thickness, with the run's own parameter set (same OCP, "
    "kinetics, electrolyte functions). Runs the run's first constant-current discharge step (after any rests; "
    "a run of --experiment whose first step is a power, resistance, hold, charge or drive-cycle step is refused, "
    "exit 2, naming it) at its C-rate, voltage end and duration, compares it with that step of the run, and writes "
    "timeseries.csv (simulate's column names), comparison.csv (capacity, energy, mean voltage, voltage "
    "RMSE) and overlay.png (voltage against capacity, both models). Layout: tomocell.physics.twin_compare."
)
EPILOG = """examples:
  tomocell simulate box:6,6,8 --c-rate 0.1 --out runs/c01 && tomocell twin runs/c01 --out runs/c01-twin
  tomocell twin runs/1C --out runs/1C-twin --tau 2.4       # a measured through-thickness tortuosity factor
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sim_dir", metavar="SIM_DIR", help="directory of a finished `tomocell simulate` run")
    add_out(parser, what="the twin run")
    parser.add_argument("--tau", type=float, default=None, metavar="TAU",
                        help="through-thickness tortuosity factor of the electrode's pores (e.g. from "
                             "`tomocell characterise`); the DFN's transport efficiency is porosity/TAU")
    parser.add_argument("--bruggeman", type=float, default=None, metavar="B",
                        help="use porosity^B instead (default without --tau: the separator's exponent of the set)")
    parser.add_argument("--psd", action="store_true",
                        help="PyBaMM's particle-size distribution from the mesh's per-particle radii (default: one radius)")


def run(args: argparse.Namespace) -> int:
    from tomocell import mpi
    from tomocell.physics.twin_compare import twin_of_run

    res = twin_of_run(args.sim_dir, args.out, tau=args.tau, bruggeman=args.bruggeman, psd=args.psd, guard=True,
                      overwrite=args.overwrite)
    if mpi.rank() == 0:
        r, d, pr = res["resolved"], res["dfn"], res["protocol"]
        what = f"{pr['text']!r}" + (f" (experiment step {pr['protocol_step']} of {pr['steps']}; the twin runs this "
                                    "step only)" if pr["steps"] > 1 else "")
        print(f"tomocell twin: {what}: resolved {r['capacity_mAh_g']:.2f} mAh/g, DFN {d['capacity_mAh_g']:.2f} mAh/g "
              f"({100 * res['capacity_diff_rel']:+.2f} %), voltage RMSE {res['voltage_rmse_mV']:.1f} mV; "
              f"results in {args.out}/")
    return 0
