"""The operation: galvanostatic half-cell discharge from the charged state to the voltage cut-off.

:func:`simulate_discharge` is the library entry point (the CLI and the demo call it):
start at equilibrium at ``voltage_max`` (4.25 V for NMC111), discharge at ``c_rate`` x 1C (1C =
the active material's capacity between the stoichiometries at ``voltage_max`` and ``voltage_min``
on the OCV, delivered in one hour), locate the ``voltage_min`` (3.0 V) crossing in time, then
optionally rest at zero current and charge CC-CV. These options are an experiment
(:func:`shortcut_steps`) run by the one time loop, :func:`tomocell.physics.protocols.run.run_experiment`.
Depth-of-discharge snapshots (default 25/50/70 %) are hit exactly.
Output layout: see :mod:`tomocell.physics.outputs`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.config import check_c_rate
from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.physics.model import HalfCellModel, MeshInput
from tomocell.physics.parameters import Parameters, load_parameters
from tomocell.physics.protocols.experiment import Step, Termination
from tomocell.physics.solver import StepControl

log = get_logger("physics.discharge")

# Above this the iterative solver is cheaper: on the demo electrode (voxel route) a full 1C discharge
# took the same CPU time with both at 7.8 k DOFs, and 4 steps took 20 (iterative) vs 36 (MUMPS) CPU s
# at 51 k DOFs; MUMPS's cost then grows superlinearly, the iterative one linearly.
DIRECT_DOF_LIMIT = 20_000


@dataclass
class DischargeResult:
    """What a discharge delivered. Capacities are per active-material mass and per projected area.

    Active material cut off from the collector (or behind closed pores) is set inert by the model
    (:func:`tomocell.physics.topology.analyse_mesh`) and carries no current: ``capacity_mAh_g`` and
    ``utilisation_total`` are per *all* active material in the mesh (what a cell made of this
    electrode would deliver per coated mass), ``capacity_mAh_g_connected`` and ``utilisation`` per the
    connected part only (the nominal capacity and the 1C current are the connected part's).
    ``inert`` gives the excluded fraction of every phase.
    """

    c_rate: float
    capacity_Ah: float
    capacity_mAh_g: float
    capacity_mAh_cm2: float
    nominal_capacity_Ah: float
    nominal_capacity_mAh_g: float
    utilisation: float
    one_c_current_A: float
    final_voltage_V: float
    mean_voltage_V: float
    energy_Wh: float
    discharge_time_s: float
    reason: str
    steps: int
    newton_total: int
    krylov_total: int
    newton_per_step: float
    snapshots: list[float]
    dofs: int
    cells: int
    mpi_size: int
    wall_s: float
    charge_Ah: float = 0.0
    #: per all active material (connected or not) in the mesh; utilisation_total likewise
    capacity_mAh_g_connected: float = float("nan")
    utilisation_total: float = float("nan")
    #: phase -> {volume_um3, inert_volume_um3, inert_fraction}: material excluded as disconnected
    inert: dict[str, dict[str, float]] = field(default_factory=dict)
    linear_solver: str = ""
    #: switches from the iterative solver to LU after a failed linear solve (time, step length)
    solver_switches: list[dict[str, Any]] = field(default_factory=list)
    #: the reacting interface area [um^2] (separator- and porous-CBD-facing facets weighted by their
    #: porosity) and the CBD model ("dense" / "porous")
    reacting_area_um2: float = float("nan")
    cbd: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("rows")
        return d


def make_model(inp: MeshInput, params: Parameters, *, li_kinetics: str = "butler-volmer",
               linear_solver: str = "auto", lu_lag: int = 3, direct_dof_limit: int = DIRECT_DOF_LIMIT,
               solver_options: dict[str, Any] | None = None, bodies: str = "particles",
               cbd: str = "dense") -> HalfCellModel:
    """The model with the linear solver chosen by size.

    ``linear_solver``: "direct" (MUMPS LU), "iterative" (GMRES + field-split AMG, see
    :func:`tomocell.physics.newton.iterative_options`) or "auto": direct below ``direct_dof_limit``
    DOFs (estimated as 0.5 per tet, the ratio of the voxel-route meshes), iterative above.
    ``solver_options``: PETSc options (without prefix) that override the defaults, e.g.
    ``{"fieldsplit_ps_pc_gamg_threshold": 0.05}``. ``bodies``: "particles" (each labelled particle its
    own diffusion body, :mod:`tomocell.physics.bodies`) or "clusters" (touching particles share c_s).
    ``cbd``: "dense" (electron conductor only, the default) or "porous" (also electrolyte in its
    nanopores, :mod:`tomocell.physics.electrolyte_phases`).
    """
    if linear_solver == "auto":
        ncell = inp.mesh.topology.index_map(3).size_global
        linear_solver = "direct" if ncell * 0.5 < direct_dof_limit else "iterative"
    return HalfCellModel(inp, params, li_kinetics=li_kinetics, linear_solver=linear_solver, lu_lag=lu_lag,
                         solver_options=solver_options, bodies=bodies, cbd=cbd)


def shortcut_steps(p: Parameters, c_rate: float, rest_s: float = 0.0, charge_c_rate: float | None = None,
                   cv_cutoff_c_rate: float = 0.05) -> list[Step]:
    """The experiment of the plain options: discharge at ``c_rate`` to ``voltage_min``, an optional rest,
    an optional CC charge to ``voltage_max`` and CV hold there until ``cv_cutoff_c_rate``. The steps carry
    the segment names discharge / rest / charge_cc / charge_cv of timeseries.csv."""
    vmin, vmax = float(p.voltage_min), float(p.voltage_max)
    steps = [Step("c_rate", float(c_rate), None, (Termination("voltage", vmin),),
                  f"Discharge at {c_rate:g}C until {vmin:g} V", label="discharge")]
    if rest_s > 0:
        steps.append(Step("rest", 0.0, float(rest_s), (), f"Rest for {rest_s:g} seconds", label="rest"))
    if charge_c_rate:
        steps += [Step("c_rate", -float(charge_c_rate), None, (Termination("voltage", vmax),),
                       f"Charge at {charge_c_rate:g}C until {vmax:g} V", label="charge_cc"),
                  Step("voltage", vmax, None, (Termination("c_rate", float(cv_cutoff_c_rate)),),
                       f"Hold at {vmax:g} V until {cv_cutoff_c_rate:g}C", label="charge_cv")]
    return steps


def simulate_discharge(
    inp: MeshInput | None,
    c_rate: float,
    *,
    params: Parameters | str | Path | None = None,
    out_dir: str | Path | None = None,
    dod_snapshots: tuple[float, ...] = (0.25, 0.5, 0.7),
    rest_s: float = 0.0,
    charge_c_rate: float | None = None,
    cv_cutoff_c_rate: float = 0.05,
    li_kinetics: str = "butler-volmer",
    linear_solver: str = "auto",
    max_ddod: float = 0.02,
    event_tol_V: float = 1e-4,
    checkpoint_every: int = 25,
    resume: bool = False,
    max_inert_fraction: float | None = None,
    model: HalfCellModel | None = None,
    control: StepControl | None = None,
    max_steps: int = 100_000,
    bodies: str = "particles",
    cbd: str = "dense",
) -> DischargeResult:
    """Galvanostatic discharge to the cut-off (then an optional rest and CC-CV charge); outputs under ``out_dir``.

    The experiment of :func:`shortcut_steps`, run by :func:`tomocell.physics.protocols.run.run_experiment`
    (one time loop for both). ``inp``: mesh with tags (ignored when ``model`` is given). Returns a
    :class:`DischargeResult` (same on every rank). ``max_inert_fraction``: refuse (InputError) a mesh in
    which a larger fraction of the active material is disconnected (None: run it, with a warning). Raises
    InputError before any solve on bad input, SolverError when the time stepping cannot continue,
    ``bodies``: "particles" (each labelled particle its own Fick body, the default) or "clusters" (touching
    particles share one c_s field; the model before issue 17), ``cbd`` "dense" or "porous", see
    :func:`make_model`.
    :class:`~tomocell.errors.Interrupted` after writing a checkpoint on SIGINT/SIGTERM.
    """
    from tomocell.physics.protocols.run import run_experiment

    t_wall = time.perf_counter()
    c_rate = check_c_rate(c_rate)
    if rest_s < 0:
        raise InputError(f"rest duration must be >= 0 s, got {rest_s}")
    if charge_c_rate is not None:
        charge_c_rate = check_c_rate(charge_c_rate, "charge C-rate")
    if not cv_cutoff_c_rate > 0:
        raise InputError(f"CV cut-off C-rate must be > 0, got {cv_cutoff_c_rate}")
    if charge_c_rate is not None and li_kinetics == "ideal":
        raise InputError("CC-CV charge needs the Butler-Volmer Li electrode (li_kinetics='butler-volmer')")
    owned = model is None  # a model made here is freed here (collectively, see NewtonSolver.close)
    if model is None:
        p = params if isinstance(params, Parameters) else load_parameters(params)
        if inp is None:
            raise InputError("simulate_discharge needs a mesh or a model")
        model = make_model(inp, p, li_kinetics=li_kinetics, linear_solver=linear_solver, bodies=bodies, cbd=cbd)
    p = model.p
    steps = shortcut_steps(p, c_rate, rest_s, charge_c_rate, cv_cutoff_c_rate)
    settings = {"c_rate": float(c_rate), "rest_s": float(rest_s),
                "charge_c_rate": None if charge_c_rate is None else float(charge_c_rate),
                "cv_cutoff_c_rate": float(cv_cutoff_c_rate), "bodies": model.bodies, "cbd": model.cbd}
    try:
        ex = run_experiment(model, steps, out_dir=out_dir, control=control, event_tol_V=event_tol_V,
                            max_ddod=max_ddod, max_steps=max_steps, dod_snapshots=dod_snapshots,
                            checkpoint_every=checkpoint_every, resume=resume,
                            max_inert_fraction=max_inert_fraction, settings=settings)
    finally:
        if owned:
            model.close()
    rows = ex.rows
    q_nom = ex.one_c_current_A * 3600.0
    dis = [r for r in rows if r["segment"] == "discharge" and r["step"] > 0]
    energy = sum(r["voltage_V"] * r["current_A"] * r["dt_s"] for r in dis) / 3600.0
    cap = sum(r["current_A"] * r["dt_s"] for r in dis) / 3600.0
    q_chg = -sum(r["current_A"] * r["dt_s"] for r in rows[1:] if r["current_A"] < 0)
    reason = "cut-off" if ex.steps[0]["reason"] == f"{p.voltage_min:g} V" else ex.steps[0]["reason"]
    n = len(rows) - 1
    return DischargeResult(
        c_rate=float(c_rate), capacity_Ah=cap, capacity_mAh_g=cap * 1e3 / ex.mass_total_g,
        capacity_mAh_cm2=cap * 1e3 / ex.area_cm2, capacity_mAh_g_connected=cap * 1e3 / ex.mass_g,
        # of the discharge segment alone (after a CC-CV charge the net charge is ~0)
        nominal_capacity_Ah=q_nom / 3600.0, nominal_capacity_mAh_g=q_nom / 3.6 / ex.mass_g,
        utilisation=cap * 3600.0 / q_nom, utilisation_total=cap * 3600.0 / q_nom * ex.mass_g / ex.mass_total_g,
        inert=ex.inert, one_c_current_A=ex.one_c_current_A,
        final_voltage_V=float(dis[-1]["voltage_V"]) if dis else float("nan"),
        mean_voltage_V=energy / cap if cap > 0 else float("nan"), energy_Wh=energy,
        discharge_time_s=float(dis[-1]["t_s"]) if dis else 0.0, reason=reason, steps=n,
        newton_total=ex.newton_total, krylov_total=ex.krylov_total, newton_per_step=ex.newton_total / max(n, 1),
        snapshots=ex.snapshots, dofs=ex.dofs, cells=model.inp.mesh.topology.index_map(3).size_global,
        mpi_size=model.comm.size, wall_s=time.perf_counter() - t_wall, rows=rows, charge_Ah=q_chg / 3600.0,
        linear_solver=ex.linear_solver, solver_switches=ex.solver_switches,
        reacting_area_um2=ex.reacting_area_um2, cbd=ex.cbd,
    )
