"""``tomocell simulate``: particle-resolved galvanostatic half-cell discharge of a tagged mesh."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tomocell.cliutil import add_c_rate, add_out, existing_file
from tomocell.errors import InputError
from tomocell.mpi import PARTITIONERS

HELP = "simulate a galvanostatic half-cell discharge on a tagged tet mesh (DOLFINx, MPI-parallel)"
DESCRIPTION = (
    "Particle-resolved half-cell model (Newman concentrated-solution electrolyte in the resolved pores and a "
    "homogenised separator, Fick diffusion in the particles, Ohm's law in active material + CBD, Butler-Volmer "
    "at the active/electrolyte interface, Li-metal counter electrode). Discharges from the charged state "
    "(voltage_max of the parameter set, 4.25 V for NMC111) at the given C-rate to the cut-off (3.0 V), "
    "located in time. Writes timeseries.csv, fields at depths of discharge (XDMF for ParaView), "
    "interface tables, per-particle state of lithiation and run.json into --out (layout: "
    "tomocell.physics.outputs). Run in parallel with `mpirun -n N tomocell simulate ...`."
)
EPILOG = """examples:
  tomocell simulate mesh.xdmf --c-rate 5 --out results/5C
  mpirun -n 2 tomocell simulate mesh.xdmf --c-rate 1 --out results/1C --dod 25,50,70
  tomocell simulate box:6,6,8 --c-rate 2 --out /tmp/box    # built-in 10x10x10 um test cell
  tomocell simulate mesh.xdmf --c-rate 1 --params xu2019 --param active.diffusivity=5e-15 --out r
  tomocell simulate mesh.xdmf --c-rate 1 --out r --resume     # continue a run killed by SIGTERM
  tomocell simulate mesh.xdmf --c-rate 2 --rest-min 10 --charge-c-rate 1 --out r   # + rest + CC-CV charge
  tomocell simulate box:4,4,6 --out r --experiment "Discharge at 1C until 3.0 V" "Rest for 10 minutes" \
      "Charge at C/2 until 4.2 V" "Hold at 4.2 V until C/50"          # PyBaMM experiment strings
  tomocell simulate mesh.xdmf --out r --experiment-file gitt.txt --cell-area-cm2 1.0
  tomocell simulate box:2,2,3 --out r --experiment-preset hppc     # + hppc.csv, hppc.png
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", metavar="MESH", help="tagged mesh (XDMF from `tomocell mesh`), or box:NX,NY,NZ for the built-in test cell")
    add_c_rate(parser, default=1.0)
    add_out(parser, what="the simulation run")
    parser.add_argument("--params", default="nmc111", metavar="SET|FILE",
                        help="parameter set: nmc111 (default), lco-ramadass2004, xu2019, a parameter JSON file or a BPX file")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override one parameter, e.g. cbd.conductivity=50 (repeatable)")
    parser.add_argument("--dod", default="25,50,70", metavar="P,...", help="depths of discharge in %% for field snapshots (default 25,50,70)")
    parser.add_argument("--rest-min", type=float, default=0.0, metavar="MIN", help="rest at zero current after the cut-off (minutes)")
    parser.add_argument("--charge-c-rate", type=float, default=None, metavar="X",
                        help="after the discharge (and rest): CC charge at X C to voltage_max, then CV until |I| < --cv-cutoff C")
    parser.add_argument("--cv-cutoff", type=float, default=0.05, metavar="X", help="CV end current in C (default 0.05)")
    parser.add_argument("--li", choices=("butler-volmer", "ideal"), default="butler-volmer",
                        help="Li-metal counter electrode: Butler-Volmer kinetics (default) or ideal (phi_e = 0)")
    parser.add_argument("--solver", choices=("auto", "direct", "iterative"), default="auto",
                        help="linear solver: MUMPS LU, GMRES + field-split AMG, or auto: direct below 20 k DOFs (default)")
    parser.add_argument("--partitioner", choices=PARTITIONERS, default="default",
                        help="graph partitioner of the mesh over the MPI ranks (default: DOLFINx's, SCOTCH in its pip "
                             "and conda-forge builds; one this DOLFINx build lacks is refused). --resume needs the same")
    parser.add_argument("--bodies", choices=("particles", "clusters"), default="particles",
                        help="solid diffusion: each labelled particle its own body, Li crossing no contact (default), "
                             "or clusters (touching particles share one concentration field, the model before "
                             "issue 17); electrons cross contacts in both")
    parser.add_argument("--cbd", choices=("dense", "porous"), default="dense",
                        help="carbon-binder domain: dense electron conductor (default, as Lu et al. 2020 model it after "
                             "resolving its micro-pores), or porous: electrolyte also fills its nanopores (parameters "
                             "cbd.porosity, cbd.bruggeman) and active|CBD facets react over that pore fraction; for "
                             "single-scan volumes whose CBD label still holds unresolved porosity")
    parser.add_argument("--max-ddod", type=float, default=0.02, metavar="F", help="largest change of depth of discharge per step (default 0.02)")
    parser.add_argument("--checkpoint-every", type=int, default=25, metavar="N", help="checkpoint every N steps (and on SIGTERM)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint (refused, naming it, if any setting that changes the answer differs)")
    parser.add_argument("--experiment", nargs="+", default=None, metavar="STEP",
                        help="run PyBaMM-style steps instead of the discharge: 'Discharge at 1C until 3.0 V', "
                             "'Rest for 10 minutes', 'Hold at 4.2 V until C/50', '(Discharge at C/5 for 10 minutes, "
                             "Rest for 1 hour) x 5', 'Run cycle.csv (A)' (tomocell.physics.protocols.experiment)")
    parser.add_argument("--experiment-file", default=None, metavar="FILE",
                        help="the experiment from a file, one step or block a line (# comments)")
    parser.add_argument("--experiment-preset", choices=("gitt", "hppc"), default=None,
                        help="run a GITT (C/10 pulses of 30 min, 1 h rests, x18) or HPPC (1C 10 s pulses both ways at "
                             "5 SOC levels) experiment and write gitt.csv (D_app per pulse vs SOC) or hppc.csv (10 s "
                             "resistance vs SOC) and a figure (tomocell.physics.protocols.presets)")
    parser.add_argument("--cell-area-cm2", type=float, default=None, metavar="A",
                        help="electrode area of the cell the experiment's absolute currents/powers are for; the mesh "
                             "carries its share (default: apply them to the mesh as given)")
    parser.add_argument("--max-inert", type=float, default=None, metavar="FRACTION",
                        help="refuse a mesh in which more than this fraction of the active material is disconnected "
                             "(0 refuses any; default: run it, report the inert share and both capacities)")


def _parse_dod(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) / 100.0 for v in str(text).split(",") if v.strip())
    except ValueError:
        raise InputError(f"--dod {text!r}: expected percentages like 25,50,70") from None
    if any(not 0 < v < 1 for v in vals):
        raise InputError(f"--dod {text!r}: percentages must lie in (0, 100)")
    return vals


def load_mesh(spec: str, comm: Any, partitioner: str = "default") -> Any:
    """MeshInput from an XDMF mesh file (cells partitioned by ``partitioner``, see
    :func:`tomocell.meshing.meshfile.read_mesh`) or ``box:NX,NY,NZ``."""
    from tomocell.physics.model import MeshInput

    if spec.startswith("box:"):
        from tomocell.physics.synthetic import box_cell

        try:
            n = tuple(int(v) for v in spec[4:].split(","))
        except ValueError:
            raise InputError(f"mesh {spec!r}: expected box:NX,NY,NZ") from None
        if len(n) != 3:
            raise InputError(f"mesh {spec!r}: expected box:NX,NY,NZ")
        return box_cell(comm, n=n)
    path = existing_file(spec, "mesh")
    from tomocell.meshing.meshfile import read_mesh

    md = read_mesh(path, comm, partitioner=partitioner)
    return MeshInput(md.mesh, md.cell_tags, md.facet_tags, md.particle_tags)


def simulate_file(mesh: str | Path, c_rate: float, out: str | Path, **kw: Any) -> Any:
    """Read a mesh file, run :func:`~tomocell.physics.discharge.simulate_discharge`, write run.json.

    Keyword arguments: ``params`` (set name/file), ``overrides`` (dict), and the options of
    simulate_discharge. Returns the DischargeResult.
    """
    import tomocell.fem  # noqa: F401
    from mpi4py import MPI

    from tomocell.manifest import run_manifest
    from tomocell.physics.discharge import simulate_discharge
    from tomocell.physics.parameters import load_parameters

    from tomocell.config import check_c_rate

    c_rate = check_c_rate(c_rate, "--c-rate")
    guard = {"guard": bool(kw.pop("guard", False)), "overwrite": bool(kw.pop("overwrite", False)),
             "resume": bool(kw.get("resume", False))}
    overrides = kw.pop("overrides", None) or {}
    pset = kw.pop("params", None)
    experiment = kw.pop("experiment", None)
    cell_area_m2 = kw.pop("cell_area_m2", None)
    preset = kw.pop("preset", None)
    partitioner = kw.pop("partitioner", None) or "default"
    if experiment is not None:
        from tomocell.physics.protocols.experiment import Step, parse_experiment

        experiment = experiment if all(isinstance(e, Step) for e in experiment) else parse_experiment(experiment)
        clash = [k for k in ("rest_s", "charge_c_rate") if kw.pop(k, None)]
        if clash:
            raise InputError(f"an experiment replaces {', '.join(clash)}: write them as steps "
                             "('Rest for 10 minutes', 'Charge at 1C until 4.2 V', 'Hold at 4.2 V until C/20')")
    params = load_parameters(pset, overrides)
    out = Path(out)
    settings = {"mesh": str(mesh), "c_rate": c_rate if experiment is None else None,  # an experiment: its steps
                "parameter_set": params.name, "overrides": overrides, "partitioner": partitioner,
                **{k: v for k, v in kw.items() if isinstance(v, (int, float, str, tuple, list, bool))}}
    with run_manifest("simulate", out, settings, **guard) as man:
        if Path(str(mesh)).exists():
            from tomocell.meshing.meshfile import mesh_sha256

            man.add_input("mesh", mesh, sha256=mesh_sha256(mesh))
        man.set_parameters(parameters=params.raw, cell_area_m2=cell_area_m2,
                           experiment=_experiment_record(experiment, params, c_rate, kw))
        with man.timed("load_mesh"):
            inp = load_mesh(str(mesh), MPI.COMM_WORLD, partitioner)
        with man.timed("simulate"):
            if experiment is not None:
                from tomocell.physics.discharge import make_model
                from tomocell.physics.protocols.run import run_experiment

                model = make_model(inp, params, li_kinetics=kw.pop("li_kinetics", "butler-volmer"),
                                   linear_solver=kw.pop("linear_solver", "auto"), bodies=kw.pop("bodies", "particles"),
                                   cbd=kw.pop("cbd", "dense"))
                kw.pop("cv_cutoff_c_rate", None)
                try:
                    res = run_experiment(model, experiment, out_dir=out, cell_area_m2=cell_area_m2, **kw)
                    if preset is not None:
                        from tomocell.physics.protocols.presets import write_preset_outputs

                        write_preset_outputs(preset, model, res.rows, out)
                finally:
                    model.close()  # collectively, on every rank (see NewtonSolver.close)
            else:
                res = simulate_discharge(inp, c_rate, params=params, out_dir=out, **kw)
        man.set_result(**res.summary())
        for name in ("timeseries.csv", "steps.csv", "particles.csv", "fields", "gitt.csv", "gitt.png", "hppc.csv",
                     "hppc.png"):
            if (out / name).exists():
                man.add_output(name, out / name)
    return res


def _experiment_record(experiment: list[Any] | None, params: Any, c_rate: float, kw: dict[str, Any]) -> list[dict[str, Any]]:
    """The expanded experiment of a run for run.json: the given steps, or those of the shortcut options."""
    from tomocell.physics.discharge import shortcut_steps
    from tomocell.physics.protocols.experiment import step_record

    steps = experiment if experiment is not None else shortcut_steps(
        params, c_rate, kw.get("rest_s", 0.0), kw.get("charge_c_rate"), kw.get("cv_cutoff_c_rate", 0.05))
    return [step_record(s, k) for k, s in enumerate(steps)]


def run(args: argparse.Namespace) -> int:
    from tomocell import mpi
    from tomocell.physics.parameters import parse_overrides

    experiment = None
    if sum(map(bool, (args.experiment, args.experiment_file, args.experiment_preset))) > 1:
        raise InputError("give one of --experiment, --experiment-file and --experiment-preset")
    if args.experiment_preset:
        from tomocell.physics.protocols.experiment import parse_experiment
        from tomocell.physics.protocols.presets import preset_experiment

        experiment = parse_experiment(preset_experiment(args.experiment_preset))
    elif args.experiment_file:
        from tomocell.physics.protocols.experiment import read_experiment_file

        experiment = read_experiment_file(args.experiment_file)
    elif args.experiment:
        from tomocell.physics.protocols.experiment import parse_experiment

        experiment = parse_experiment(args.experiment, base=Path.cwd())
    if experiment is not None:
        res = simulate_file(args.mesh, 1.0, args.out, params=args.params, overrides=parse_overrides(args.param),
                            experiment=experiment, li_kinetics=args.li, linear_solver=args.solver,
                            max_ddod=args.max_ddod, guard=True, overwrite=args.overwrite,
                            rest_s=60.0 * args.rest_min, charge_c_rate=args.charge_c_rate, resume=args.resume,
                            dod_snapshots=_parse_dod(args.dod), checkpoint_every=args.checkpoint_every,
                            max_inert_fraction=args.max_inert, preset=args.experiment_preset,
                            partitioner=args.partitioner, bodies=args.bodies, cbd=args.cbd,
                            cell_area_m2=None if args.cell_area_cm2 is None else 1e-4 * args.cell_area_cm2)
        if mpi.rank() == 0:
            done = [s for s in res.steps if s["status"] == "done"]
            print(f"tomocell simulate: experiment of {len(res.steps)} steps ({len(res.steps) - len(done)} skipped), "
                  f"{len(res.rows) - 1} time steps, final voltage {res.rows[-1]['voltage_V']:.4f} V after "
                  f"{res.rows[-1]['t_s']:.0f} s; steps.csv and timeseries.csv in {args.out}/")
        return 0
    res = simulate_file(
        args.mesh, args.c_rate, args.out, params=args.params, overrides=parse_overrides(args.param),
        dod_snapshots=_parse_dod(args.dod), rest_s=60.0 * args.rest_min, li_kinetics=args.li,
        charge_c_rate=args.charge_c_rate, cv_cutoff_c_rate=args.cv_cutoff,
        linear_solver=args.solver, max_ddod=args.max_ddod, checkpoint_every=args.checkpoint_every, resume=args.resume,
        guard=True, overwrite=args.overwrite, max_inert_fraction=args.max_inert, partitioner=args.partitioner,
        bodies=args.bodies, cbd=args.cbd,
    )
    if mpi.rank() == 0:
        print(summary_line(res, args.out))
    return 0


def summary_line(res: Any, out: Any) -> str:
    """The line `tomocell simulate` prints: capacity per all active material, and when some of it is
    disconnected (inert) also per the connected part, with the inert share of each phase."""
    inert = {k: v["inert_fraction"] for k, v in (res.inert or {}).items() if v["inert_fraction"] > 0}
    if inert:
        cap = (f"{res.capacity_mAh_g:.2f} mAh/g of all active material, {res.capacity_mAh_g_connected:.2f} mAh/g of "
               f"the connected part ({res.capacity_mAh_cm2:.4g} mAh/cm2, {100 * res.utilisation_total:.1f} % of the "
               f"whole and {100 * res.utilisation:.1f} % of the connected nominal capacity); INERT (disconnected): "
               + ", ".join(f"{k} {100 * f:.1f} %" for k, f in inert.items()))
    else:
        cap = f"{res.capacity_mAh_g:.2f} mAh/g ({res.capacity_mAh_cm2:.4g} mAh/cm2, {100 * res.utilisation:.1f} % of nominal)"
    return (f"tomocell simulate: {cap} at {res.c_rate:g}C, {res.reason} at {res.final_voltage_V:.4f} V after "
            f"{res.discharge_time_s:.0f} s; {res.steps} steps, {res.newton_per_step:.2f} Newton/step; results in {out}/")
