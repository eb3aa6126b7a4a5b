"""``tomocell twin``: the homogenised PyBaMM DFN twin of a finished simulate run, side by side."""

from __future__ import annotations

import argparse

from tomocell.cliutil import add_out

HELP = "run the homogenised PyBaMM DFN twin of a finished simulate run and compare (needs tomocell[dfn])"
DESCRIPTION = (
    "Builds a PyBaMM DFN half-cell (positive working electrode, Li-metal counter electrode) from the mesh of a "
    "finished `tomocell simulate` run: its thickness, porosity, active and CBD fractions, active/electrolyte "
    "interface area, particle-size distribution (or one radius), separator thickness and the through-thickness "
    "tortuosity factor measured on the image behind the mesh, with the run's own parameter set (same OCP, "
    "kinetics, electrolyte functions). Runs the run's first constant-current discharge step (after any rests; "
    "a run of --experiment whose first step is a power, resistance, hold, charge or drive-cycle step is refused, "
    "exit 2, naming it) at its C-rate, voltage end and duration, compares it with that step of the run, and writes "
    "timeseries.csv (simulate's column names), comparison.csv (capacity, energy, mean voltage, voltage "
    "RMSE) and overlay.png (voltage against capacity, both models). Layout: tomocell.physics.twin_compare."
)
EPILOG = """examples:
  tomocell simulate box:6,6,8 --c-rate 0.1 --out runs/c01 && tomocell twin runs/c01 --out runs/c01-twin
  tomocell twin runs/1C --out runs/1C-twin --tau 2.4       # a given through-thickness tortuosity factor
  tomocell twin runs/1C --out runs/1C-fit --bruggeman fit  # report the fitted Bruggeman exponent
  tomocell twin runs/1C --out runs/1C-one --single-radius  # one radius instead of the size distribution
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sim_dir", metavar="SIM_DIR", help="directory of a finished `tomocell simulate` run")
    add_out(parser, what="the twin run")
    add_transport_options(parser)
    parser.add_argument("--single-radius", action="store_true",
                        help="one particle radius (the volume-weighted mean) instead of PyBaMM's particle-size "
                             "distribution of the mesh's per-particle radii")


def add_transport_options(parser: argparse.ArgumentParser) -> None:
    """``--tau`` and ``--bruggeman B|fit`` (shared with ``export-bpx``)."""
    parser.add_argument("--tau", type=float, default=None, metavar="TAU",
                        help="through-thickness tortuosity factor of the electrode's pores (default: measured on the "
                             "image the run's mesh was made from); transport efficiency porosity/TAU")
    parser.add_argument("--bruggeman", type=bruggeman_arg, default=None, metavar="B|fit",
                        help="B: transport efficiency porosity^B instead of porosity/tau; fit: report the exponent b "
                             "with porosity^b = porosity/tau (the same transport, as a Bruggeman exponent)")


def bruggeman_arg(text: str) -> float | str:
    """``--bruggeman``: a number or ``fit``."""
    if text.strip().lower() == "fit":
        return "fit"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or 'fit', got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from tomocell import mpi
    from tomocell.physics.twin_compare import twin_of_run

    res = twin_of_run(args.sim_dir, args.out, tau=args.tau, bruggeman=args.bruggeman, psd=not args.single_radius,
                      guard=True, overwrite=args.overwrite)
    if mpi.rank() == 0:
        r, d, pr = res["resolved"], res["dfn"], res["protocol"]
        what = f"{pr['text']!r}" + (f" (experiment step {pr['protocol_step']} of {pr['steps']}; the twin runs this "
                                    "step only)" if pr["steps"] > 1 else "")
        print(f"tomocell twin: {what}: resolved {r['capacity_mAh_g']:.2f} mAh/g, DFN {d['capacity_mAh_g']:.2f} mAh/g "
              f"({100 * res['capacity_diff_rel']:+.2f} %), voltage RMSE {res['voltage_rmse_mV']:.1f} mV; "
              f"results in {args.out}/")
        g = res["geometry"]
        print(f"  tau {g.tau if g.tau is None else f'{g.tau:.3g}'} ({g.tau_source}); electrolyte Bruggeman exponent "
              f"b = {res['bruggeman_electrode']:.3f}{' (fitted: porosity^b = porosity/tau)' if args.bruggeman == 'fit' else ''}; "
              f"{'particle-size distribution' if res['psd'] else 'one radius'}")
    return 0
