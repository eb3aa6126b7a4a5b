"""Options that mean the same in every subcommand, and helpers for stage CLI modules.

A stage CLI module provides::

    HELP = "one line for `tomocell --help`"
    DESCRIPTION = "paragraph for `tomocell <stage> --help`"
    EPILOG = "examples"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

and is listed in :data:`tomocell.cli.SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tomocell.errors import InputError


def add_out(parser: argparse.ArgumentParser, default: str | None = None, what: str = "results") -> None:
    parser.add_argument(
        "--out", type=Path, default=Path(default) if default else None, required=default is None,
        metavar="PATH", help=f"output directory for {what}" + (f" (default: {default})" if default else "")
        + ": new or empty, or an earlier run of this command (tomocell never writes over files it did not make)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace a finished earlier run in --out (only its own outputs; other files there are kept)",
    )


def add_voxel_size(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--voxel-size", metavar="UM", default=None, required=required,
        help="voxel size in micrometres: one value (isotropic) or three 'dz,dy,dx' in axis order "
        "(axis 0 = through-thickness). Overrides any size stored in the file.",
    )


def add_labels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--labels", metavar="VALUE=PHASE,...", default=None,
        help="map stored label values to phases pore, active, cbd, e.g. '0=pore,85=active,170=cbd'",
    )


def add_seed(parser: argparse.ArgumentParser, default: int = 0) -> None:
    parser.add_argument("--seed", type=int, default=default, metavar="N", help=f"random seed (default: {default})")


def add_c_rate(parser: argparse.ArgumentParser, default: float | None = 1.0) -> None:
    parser.add_argument(
        "--c-rate", type=float, default=default, metavar="X",
        help="discharge rate in C (1C empties the active material's capacity between the voltage limits in 1 h)"
        + (f" (default: {default})" if default is not None else ""),
    )


def existing_file(path: str | Path, what: str = "input") -> Path:
    """Return ``path`` as a Path, or raise InputError if it does not exist."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    return p
