"""The ``tomocell`` command: one subcommand per pipeline stage.

Each subcommand lives in its stage package (see :data:`SUBCOMMANDS`); this module only builds the
parser, applies ``--config`` files, sets up MPI-aware logging and turns user errors into one line on
stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from tomocell import __version__
from tomocell.config import load_config
from tomocell.errors import InputError, Interrupted, NotPercolatingError, TomocellError
from tomocell.log import get_logger, setup_logging

#: subcommand name -> module implementing it (HELP, DESCRIPTION, EPILOG, add_arguments, run)
SUBCOMMANDS: dict[str, str] = {
    "generate": "tomocell.microstructure.cli_generate",
    "segment": "tomocell.microstructure.cli_segment",
    "superimpose": "tomocell.microstructure.cli_superimpose",
    "characterise": "tomocell.microstructure.cli_characterise",
    "mesh": "tomocell.meshing.cli",
    "simulate": "tomocell.physics.cli",
    "twin": "tomocell.physics.cli_twin",
    "export-bpx": "tomocell.physics.cli_bpx",
    "compare": "tomocell.physics.protocols.compare",
    "analyse": "tomocell.studies.cli_analyse",
    "study": "tomocell.studies.cli",
    "demo": "tomocell.demo",
}

ALIASES = {"characterize": "characterise", "analyze": "analyse"}


def stage_modules() -> dict[str, ModuleType]:
    """The CLI module of every subcommand (each defines HELP, DESCRIPTION, EPILOG, add_arguments, run)."""
    return {name: importlib.import_module(modname) for name, modname in SUBCOMMANDS.items()}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="tomocell",
        description=(
            "tomocell: from a 3D tomography volume of a Li-ion electrode to microstructure metrics, "
            "conformal meshes, particle-resolved half-cell discharge and design studies "
            "(workflow of Lu et al., Nat. Commun. 11, 2079, 2020). Lengths on the command line are "
            "in micrometres; everything inside is SI. Run under MPI as `mpirun -n N tomocell ...`."
        ),
        epilog="Run `tomocell <command> --help` for the options of each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tomocell {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (for bug reports) instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for name, mod in stage_modules().items():
        p = sub.add_parser(
            name,
            help=getattr(mod, "HELP", ""),
            description=getattr(mod, "DESCRIPTION", getattr(mod, "HELP", "")),
            epilog=getattr(mod, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            aliases=[a for a, target in ALIASES.items() if target == name],
        )
        p.add_argument(
            "--config", metavar="FILE", default=None,
            help=getattr(mod, "CONFIG_HELP", "TOML/YAML/JSON file whose keys give defaults for this command's "
                         "options (command-line options win)"),
        )
        mod.add_arguments(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the Python traceback of an error instead of one line")
        p.set_defaults(_run=mod.run, _name=name)
        subparsers[name] = p
    return parser, subparsers


def _apply_config(argv: list[str], parser: argparse.ArgumentParser, subparsers: dict[str, argparse.ArgumentParser]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    # a subcommand whose --config file is its input (set_defaults(_config_is_input=True)) reads it itself
    if getattr(args, "config", None) and getattr(args, "_name", None) and not getattr(args, "_config_is_input", False):
        sp = subparsers[args._name]
        cfg = load_config(args.config)
        dests = {a.dest for a in sp._actions}
        unknown = sorted(set(cfg) - dests)
        if unknown:
            raise InputError(f"config file {args.config}: unknown option(s) for `tomocell {args._name}`: {', '.join(unknown)}")
        for a in sp._actions:
            if a.dest in cfg and a.required:
                a.required = False  # the file supplies it
        sp.set_defaults(**cfg)
        args = parser.parse_args(argv)
    return args


def _say(line: str, *, all_ranks: bool = False) -> None:
    """Print an error line once: on rank 0 (the errors tomocell raises are raised on every rank), or
    with a rank prefix on the other ranks for unexpected errors (which may hit one rank only)."""
    from tomocell import mpi

    r = mpi.rank()
    if r == 0:
        print(line, file=sys.stderr)
    elif all_ranks:
        print(f"[rank {r}] {line}", file=sys.stderr)


def _install_signal_handlers() -> None:
    """SIGTERM (batch schedulers, `kill`) ends the process like Ctrl-C (SIGINT) does: as an exception,
    so every ``finally`` runs, locks are released and the run is recorded; the physics time loop
    catches both itself to write a checkpoint first (:class:`tomocell.physics.checkpoint.TermFlag`)."""
    import signal

    def on_term(signum: int, frame: object) -> None:  # noqa: ARG001
        raise Interrupted(f"terminated by signal {signal.Signals(signum).name}", signum)

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not in the main thread (embedded use)
        pass
    # PETSc installs its own handler at initialisation (when the physics first imports petsc4py),
    # which turns SIGTERM into an error dump and MPI_Abort (exit 15 / 59); without it ours stays
    import os

    opts = os.environ.get("PETSC_OPTIONS", "")
    if "-no_signal_handler" not in opts:
        os.environ["PETSC_OPTIONS"] = (opts + " -no_signal_handler").strip()


def main(argv: list[str] | None = None) -> int:
    import signal

    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    try:
        args = _apply_config(argv, parser, subparsers)
    except InputError as exc:
        _say(f"tomocell: error: {exc}")
        return 2
    setup_logging(-1 if args.quiet else args.verbose)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    _install_signal_handlers()
    name = args._name
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        _say(f"tomocell {name}: error: {exc}")
        if debug:
            raise
        return 2
    except NotPercolatingError as exc:
        _say(f"tomocell {name}: not percolating: {exc}")
        if debug:
            raise
        return 3
    except Interrupted as exc:
        _say(f"tomocell {name}: {exc}")
        return 128 + exc.signum
    except KeyboardInterrupt:
        _say(f"tomocell {name}: interrupted (Ctrl-C)")
        return 128 + int(signal.SIGINT)
    except TomocellError as exc:
        _say(f"tomocell {name}: failed: {exc}")
        if debug:
            raise
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen failure: one line, traceback on --debug
        if debug:
            raise
        _say(f"tomocell {name}: failed: {type(exc).__name__}: {exc} (this is a bug if the input was valid: "
             "rerun with --debug for the traceback and report it)", all_ranks=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
