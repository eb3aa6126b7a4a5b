"""The shared run function of the electrochemical studies: volume -> variants -> mesh -> discharge.

Every electrochemical study (rate capability, graded designs, thickness, calendering rate) is a list
of runs whose parameters are one *structure* (``volume`` table + ``variants`` steps + ``mesh``
options) and one *discharge* (``c_rate`` + ``simulate`` options). :func:`run_discharge` is the
run function they hand to :func:`tomocell.studies.runner.run_study`; each stage is cached so an
interrupted or extended study redoes nothing that is finished:

* the input volume: ``OUT/inputs/volume-<sha>.npz`` (:func:`tomocell.studies.inputs.load_volume_cached`);
* the structure (variants applied, characterised, meshed): ``OUT/structures/<sha of volume +
  variants + mesh options>/`` with ``mesh.xdmf/.h5``, ``fidelity.json`` and ``structure.json``
  (phase fractions, thickness, active mass loading, depth porosity profile, variant reports). Runs
  of the same structure at different C-rates share it;
* the discharge: ``OUT/runs/<run>/discharge/`` (layout: :mod:`tomocell.physics.outputs`). A finished
  discharge with the same settings is reused; an interrupted one continues from its checkpoint; with
  ``reuse_from = ["other/study/dir", ...]`` in the study config, an identical finished discharge of
  another study (same structure key and settings) is copied instead of simulated.

Numbers per run (:func:`discharge_metrics`): accessible capacity (mAh/g active, mAh/cm^2),
utilisation (accessible DoD), specific energy ``E = integral V dQ`` to the cut-off per kg of active
material (Wh/kg; trapezoidal rule on the time series), specific power ``P = E / t_discharge`` (W/kg),
as defined for the paper's Ragone plot (Lu et al. 2020, Fig. 8a), mean and final voltage.

Under MPI rank 0 builds and writes the structure, the discharge runs on all ranks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tomocell import mpi
from tomocell.atomic import write_json
from tomocell.errors import InputError, SolverError
from tomocell.log import get_logger
from tomocell.microstructure.variants_calendering import pore_open_to_separator
from tomocell.microstructure.volume import ACTIVE, PORE, Volume
from tomocell.studies.inputs import apply_variants, load_volume_cached

log = get_logger(__name__)

#: mesh options a study config may set (``[mesh]`` table), with their coarse defaults
#: (the smoothed conformal route at 1 um blocks, fraction-preserving: phase volumes exact; the areas of
#: films thinner than a block are reported in the study's mesh_warnings, checked only with check_areas)
MESH_DEFAULTS: dict[str, Any] = {"route": "smoothed", "coarsen": 2, "separator_um": 25.0, "check_areas": False}
#: discharge options a study config may set (``[simulate]`` table), with their defaults
SIM_DEFAULTS: dict[str, Any] = {"params": "nmc111", "overrides": {}, "max_ddod": 0.05,
                                "dod_snapshots": [0.5], "linear_solver": "auto"}


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def mesh_options(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """``[mesh]`` options with defaults; InputError for unknown keys."""
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(MESH_DEFAULTS)
    if unknown:
        raise InputError(f"[mesh]: unknown option(s) {sorted(unknown)} (known: {sorted(MESH_DEFAULTS)})")
    return {**MESH_DEFAULTS, **cfg}


def sim_options(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """``[simulate]`` options with defaults; InputError for unknown keys or bad snapshot DoDs."""
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(SIM_DEFAULTS)
    if unknown:
        raise InputError(f"[simulate]: unknown option(s) {sorted(unknown)} (known: {sorted(SIM_DEFAULTS)})")
    out = {**SIM_DEFAULTS, **cfg}
    snaps = [float(d) for d in out["dod_snapshots"]]
    if any(not 0 < d < 1 for d in snaps):
        raise InputError(f"[simulate] dod_snapshots must be fractions in (0, 1), got {snaps}")
    out["dod_snapshots"] = sorted(snaps)
    return out


def structure_params(volume: dict[str, Any], variants: list[dict[str, Any]] | None, mesh: dict[str, Any] | None,
                     seed: int = 0) -> dict[str, Any]:
    """The structure part of a run's parameters (what the structure cache is keyed on)."""
    if not isinstance(volume, dict):
        raise InputError("an electrochemical study needs a [volume] table (synthetic = {...} or path = ...)")
    steps = variants or []
    if isinstance(steps, dict):
        steps = [steps]
    return {"volume": volume, "variants": list(steps), "mesh": mesh_options(mesh), "seed": int(seed)}


def reuse_option(config: dict[str, Any]) -> dict[str, Any]:
    """``{"reuse_from": [...]}`` from a config's ``reuse_from`` (study directories), or {} when absent."""
    dirs = config.get("reuse_from")
    if not dirs:
        return {}
    if isinstance(dirs, str):
        dirs = [dirs]
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise InputError(f"reuse_from must be a list of study directories, got {dirs!r}")
    return {"reuse_from": [str(Path(d).resolve()) for d in dirs]}


# ------------------------------------------------------------------ structure
def depth_porosity_um(volume: Volume, step_um: float = 1.0) -> tuple[list[float], list[float]]:
    """Porosity against depth from the separator (um), averaged over slabs of ~``step_um``."""
    d0 = volume.voxel_size_um[0]
    n = max(1, int(round(step_um / d0)))
    por = (volume.labels == PORE).mean(axis=(1, 2))
    k = len(por) // n
    if k == 0:
        return [0.5 * len(por) * d0], [float(por.mean())]
    por = por[: k * n].reshape(k, n).mean(axis=1)
    depth = (np.arange(k) + 0.5) * n * d0
    return depth.tolist(), por.tolist()


def active_loading_mg_cm2(volume: Volume, density_kg_m3: float) -> float:
    """Active mass per projected area, mg/cm^2: active fraction x thickness x density."""
    thickness_m = volume.extent_um[0] * 1e-6
    return float((volume.labels == ACTIVE).mean() * thickness_m * density_kg_m3 * 1e2)  # kg/m^2 -> mg/cm^2


def build_structure(sp: dict[str, Any], out_dir: Path, density_kg_m3: float) -> tuple[Path, dict[str, Any]]:
    """The meshed structure of ``sp`` (see :func:`structure_params`), built once per study.

    Returns (mesh.xdmf path, structure description). Cached in ``out_dir/structures/<key>/``. Under
    MPI only rank 0 builds and writes it (the volume and its variants are serial numpy work; the
    other ranks wait and read the description), so memory does not grow with the number of ranks.
    """
    key = _key(sp)
    final = out_dir / "structures" / key
    comm = mpi.world()
    info, err = None, None
    if mpi.is_root():
        try:
            info = _build_on_root(sp, out_dir, final, key, density_kg_m3)
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            err = exc
    info, msg = comm.bcast((info, None if err is None else f"{type(err).__name__}: {err}"), root=0)
    if err is not None:
        raise err
    if msg is not None:
        raise InputError(f"building structure {key} failed on rank 0: {msg}")
    return final / "mesh.xdmf", info


def _build_on_root(sp: dict[str, Any], out_dir: Path, final: Path, key: str, density_kg_m3: float) -> dict[str, Any]:
    from mpi4py import MPI

    from tomocell.meshing.meshfile import write_mesh
    from tomocell.meshing.pipeline import mesh_volume

    info_path = final / "structure.json"
    if info_path.is_file() and (final / "mesh.xdmf").is_file():
        return json.loads(info_path.read_text())
    vol, ids, source = load_volume_cached(sp["volume"], out_dir / "inputs")
    vol, ids, reports = apply_variants(vol, ids, sp["variants"], seed=sp["seed"])
    relabelled = False
    if ids is None and any(str(v.get("kind", "")).replace("-", "_") == "graded_particle" for v in sp["variants"]):
        # the graded particle variant drops the input's particle ids; the characterisation's watershed
        # labels the result so the discharge still reports per-particle SoL (the graded-designs SoL
        # maps and profiles). The physics uses the tags for output only. Not done for thick/calender:
        # their studies need no per-particle output.
        from tomocell.microstructure.particles import label_particles
        from tomocell.studies.inputs import complete_ids

        ids = complete_ids(vol, np.asarray(label_particles(vol)))
        relabelled = True
    m = sp["mesh"]
    res = mesh_volume(vol, route=m["route"], coarsen=int(m["coarsen"]), separator_um=float(m["separator_um"]),
                      particle_labels=ids, area_tol=0.05 if m["check_areas"] else None)
    fr = vol.fractions()
    # phase fractions of the mesh itself (after any coarsening: what the physics sees)
    pv = {k: float(v["mesh_um3"]) for k, v in res.report.get("phase_volumes", {}).items()}
    tot = sum(pv.values())
    mesh_fr = {k: v / tot for k, v in pv.items()} if tot > 0 else {}
    depth, por = depth_porosity_um(vol)
    info = {
        "key": key, "input": source, "variants": reports, "shape": list(vol.shape),
        "voxel_size_um": list(vol.voxel_size_um), "thickness_um": float(vol.extent_um[0]),
        "porosity": fr["pore"], "active_fraction": fr["active"], "cbd_fraction": fr.get("cbd", 0.0),
        "active_loading_mg_cm2": active_loading_mg_cm2(vol, density_kg_m3),
        "depth_um": depth, "depth_porosity": por,
        # pore closed off from the separator carries no electrolyte current (calendering can close it)
        "pore_open_to_separator": pore_open_to_separator(vol.labels),
        "mesh_porosity": mesh_fr.get("pore"), "mesh_active_fraction": mesh_fr.get("active"),
        "mesh_cells": int(res.mesh.tets.shape[0]), "mesh_route": m["route"], "coarsen": int(m["coarsen"]),
        "mesh_fallback": res.mesh.info.get("fallback"),
        # what the mesh changed beyond the fidelity bounds (figures in fidelity.json)
        "mesh_warnings": res.report.get("warnings", []),
        "particles_relabelled": relabelled, "particles": int(ids.max()) if ids is not None and ids.size else 0,
    }
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{key}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_mesh(tmp / "mesh.xdmf", res.mesh, comm=MPI.COMM_SELF)
    write_json(tmp / "fidelity.json", res.report)
    write_json(tmp / "structure.json", info)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    log.info("structure %s: %s, %d tets, porosity %.3f, %.1f um", key, [r["kind"] for r in reports] or "as prepared",
             info["mesh_cells"], info["porosity"], info["thickness_um"])
    return json.loads((final / "structure.json").read_text())


# ------------------------------------------------------------------ discharge numbers
def ragone_point(t_s: np.ndarray, voltage_V: np.ndarray, capacity_mAh_g: np.ndarray) -> tuple[float, float]:
    """(specific energy Wh/kg, specific power W/kg) of one discharge, per mass of active material.

    ``E = integral V dQ`` from the start to the last row (the cut-off), trapezoidal in Q
    (mAh/g x V = mWh/g = Wh/kg); ``P = E / t_end`` with ``t_end`` the discharge time. This is the
    paper's definition (Fig. 8a caption): specific energy by integrating the discharge curve to the
    cut-off voltage, specific power as that energy divided by the discharge time.
    """
    t = np.asarray(t_s, float)
    v = np.asarray(voltage_V, float)
    q = np.asarray(capacity_mAh_g, float)
    if not (t.shape == v.shape == q.shape) or t.size < 2:
        raise InputError("a Ragone point needs at least two rows of time, voltage and capacity of equal length")
    if np.any(np.diff(q) < -1e-12) or np.any(np.diff(t) < 0):
        raise InputError("capacity and time must not decrease during a discharge")
    energy = float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(q)))
    duration = float(t[-1] - t[0])
    power = energy * 3600.0 / duration if duration > 0 else float("nan")
    return energy, power


def read_discharge(run_dir: Path) -> dict[str, np.ndarray]:
    """The discharge segment of a run's ``timeseries.csv`` (t_s, voltage_V, capacity_mAh_g, dod)."""
    import csv

    path = Path(run_dir) / "timeseries.csv"
    if not path.is_file():
        raise InputError(f"no timeseries.csv in {run_dir}")
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["segment"] == "discharge"]
    cols = ("t_s", "voltage_V", "capacity_mAh_g", "dod")
    return {c: np.array([float(r[c]) for r in rows]) for c in cols}


def discharge_metrics(sim_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Per-run numbers from a finished discharge directory and its DischargeResult summary."""
    ts = read_discharge(sim_dir)
    energy, power = ragone_point(ts["t_s"], ts["voltage_V"], ts["capacity_mAh_g"])
    cap = float(summary["capacity_mAh_g"])
    return {
        "capacity_mAh_g": cap, "capacity_mAh_cm2": float(summary["capacity_mAh_cm2"]),
        "utilisation": float(summary["utilisation"]), "nominal_capacity_mAh_g": float(summary["nominal_capacity_mAh_g"]),
        "specific_energy_Wh_kg": energy, "specific_power_W_kg": power,
        "mean_voltage_V": energy / cap if cap > 0 else None, "final_voltage_V": float(summary["final_voltage_V"]),
        "discharge_time_s": float(summary["discharge_time_s"]), "reason": summary["reason"],
        "steps": int(summary["steps"]), "dofs": int(summary["dofs"]), "snapshots": list(summary["snapshots"]),
        "voltage_curve": {"capacity_mAh_g": ts["capacity_mAh_g"].tolist(), "voltage_V": ts["voltage_V"].tolist()},
    }


SETTINGS_FILE = "study_settings.json"
#: the settings of the discharge last started in a directory (its checkpoint belongs to them)
STARTED_FILE = "study_settings.started.json"


def _portable(settings: dict[str, Any]) -> dict[str, Any]:
    """Discharge settings with the mesh path replaced by its structure key (study directories may move)."""
    out = dict(settings)
    if "mesh" in out:
        out["structure"] = Path(str(out.pop("mesh"))).parent.name
    return out


def _finished_discharge(sim_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded summary of a finished discharge with these settings (the pipeline's step cache,
    :func:`tomocell.pipeline.finished_run`, on the study's settings file next to run.json), else None."""
    from tomocell.pipeline import finished_run

    def recorded(_data: dict[str, Any]) -> dict[str, Any]:
        return _portable(json.loads((sim_dir / SETTINGS_FILE).read_text()))

    data = finished_run(sim_dir, parameters=_portable(settings), key=recorded)
    return None if data is None else data.get("results")


def _reuse_from_other_studies(sim_dir: Path, settings: dict[str, Any], study_dirs: list[str]) -> dict[str, Any] | None:
    """Copy a finished discharge with the same structure and settings from another study directory."""
    from tomocell.atomic import atomic_dir

    for d in study_dirs:
        for cand in sorted(Path(d).glob(f"runs/*/discharge/{SETTINGS_FILE}")):
            done = _finished_discharge(cand.parent, settings)
            if done is not None and cand.parent.resolve() != sim_dir.resolve():
                with atomic_dir(sim_dir) as tmp:
                    shutil.copytree(cand.parent, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoint"))
                    write_json(tmp / SETTINGS_FILE, settings)
                log.info("discharge reused from %s", cand.parent)
                return done
    return None


def discharge(mesh_xdmf: Path, c_rate: float, sim_dir: Path, sim: dict[str, Any],
              reuse_from: list[str] | None = None) -> dict[str, Any]:
    """Run (or reuse, or continue) one discharge; returns the DischargeResult summary dict.

    ``reuse_from``: other study directories whose finished discharges of the same structure (same
    volume, variants and mesh options) and settings are copied instead of simulated again.
    """
    from tomocell.physics.cli import simulate_file

    settings = json.loads(json.dumps({"mesh": str(mesh_xdmf), "c_rate": float(c_rate), **sim}, default=str))
    done = None
    if mpi.is_root():
        done = _finished_discharge(sim_dir, settings)
        if done is None and reuse_from:
            done = _reuse_from_other_studies(sim_dir, settings, list(reuse_from))
    done = mpi.world().bcast(done, root=0)
    if done is not None:
        log.info("discharge in %s already finished: reused", sim_dir)
        return done
    resume = None
    if mpi.is_root():
        # a checkpoint is continued only if it was written by a discharge with these very settings (a
        # finished or interrupted discharge of a changed structure leaves one behind: resuming it failed
        # with a dof mismatch or, worse, could continue the wrong state)
        started = sim_dir / STARTED_FILE
        try:
            same = _portable(json.loads(started.read_text())) == _portable(settings)
        except (OSError, ValueError):
            same = False
        resume = (sim_dir / "checkpoint" / "meta.json").is_file() and same
        if not resume and (sim_dir / "checkpoint").exists():
            log.info("discarding the checkpoint in %s: written by other settings", sim_dir)
            shutil.rmtree(sim_dir / "checkpoint")
        (sim_dir / SETTINGS_FILE).unlink(missing_ok=True)
        sim_dir.mkdir(parents=True, exist_ok=True)
        write_json(started, settings)
    resume = bool(mpi.world().bcast(resume, root=0))
    if resume:
        log.info("continuing the interrupted discharge in %s", sim_dir)
    try:
        res = simulate_file(mesh_xdmf, float(c_rate), sim_dir, params=sim["params"], overrides=dict(sim["overrides"]),
                            dod_snapshots=tuple(sim["dod_snapshots"]), max_ddod=float(sim["max_ddod"]),
                            linear_solver=sim["linear_solver"], resume=resume)
    except SolverError as exc:
        # SIGTERM (job scheduler, kill): the physics wrote a checkpoint; stop the whole study rather than
        # letting the runner move on to the next run. The next invocation continues from the checkpoint.
        if "SIGTERM" in str(exc):
            raise KeyboardInterrupt(str(exc)) from exc
        raise
    if mpi.is_root():  # the settings beside the physics' own run.json: what "finished" is checked against
        write_json(sim_dir / SETTINGS_FILE, settings)
    return res.summary()


def run_discharge(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The run function: structure (cached) then discharge (cached/resumable); numbers of the run.

    ``params``: ``structure`` (:func:`structure_params`), ``c_rate``, ``simulate`` (:data:`SIM_DEFAULTS`),
    optional ``reuse_from`` (study directories to copy identical finished discharges from), plus any labels the study adds (``design``, ...) which are passed through to the tables.
    """
    from tomocell.physics.parameters import load_parameters

    sim = sim_options(params.get("simulate"))
    pset = load_parameters(sim["params"], dict(sim["overrides"]))
    study_dir = run_dir.parent.parent
    mesh_xdmf, info = build_structure(params["structure"], study_dir, pset.density)
    summary = discharge(mesh_xdmf, float(params["c_rate"]), run_dir / "discharge", sim, params.get("reuse_from"))
    out = discharge_metrics(run_dir / "discharge", summary)
    out["structure"] = {k: info.get(k) for k in ("key", "thickness_um", "porosity", "active_fraction", "cbd_fraction",
                                                 "active_loading_mg_cm2", "mesh_porosity", "mesh_active_fraction",
                                                 "mesh_cells", "coarsen", "pore_open_to_separator")}
    return out
