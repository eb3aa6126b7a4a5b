"""The public Python API: every pipeline stage as one function (``import tomocell as tc``).

    import tomocell as tc
    vol = tc.generate(preset="tiny", seed=0)                  # or tc.read_volume("scan.tif", ...)
    char = tc.characterise(vol, fast=True)                   # metrics dict + particle labels
    msh = tc.mesh(vol, route="voxel", separator_um=5.0, particle_labels=char.particle_labels)
    run = tc.simulate(msh, c_rate=2.0, out="results/run")    # a mesh object or a mesh file
    tc.analyse([run.path], out="results/analysis")

Each function returns a small result object with plain attributes and ``.save(dir)`` where the
result is not already on disk. These are the same stage functions the ``tomocell`` subcommands
call; lengths are micrometres at this edge (``*_um``), everything else SI. Heavy libraries
(DOLFINx, gmsh, pyvista) are imported only by the function that needs them, so ``import tomocell``
stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tomocell.meshing.pipeline import MeshResult
    from tomocell.microstructure.characterise import CharacterisationResult
    from tomocell.microstructure.volume import Volume

PathLike = str | os.PathLike[str]


# ---- volumes ---------------------------------------------------------------------------------------
def read_volume(path: PathLike, *, voxel_size_um: Any = None, labels: dict[int, str] | None = None,
                **kw: Any) -> Volume:
    """Read a labelled volume (TIFF stack or folder, RAW, NPY, HDF5); see ``tomocell.microstructure.io``.

    ``voxel_size_um``: one edge or ``(dz, dy, dx)`` in micrometres (required when the file has none);
    ``labels``: file value -> phase name (``pore``, ``active``, ``cbd``). The returned
    :class:`~tomocell.microstructure.volume.Volume` has ``.labels``, ``.voxel_size_um``,
    ``.fractions()`` and ``.save(path)``.
    """
    from tomocell.microstructure.io import read_volume as _read

    return _read(path, voxel_size_um=voxel_size_um, labels=labels, **kw)


def generate(*, preset: str | None = "demo", seed: int = 0, **params: Any) -> Volume:
    """A synthetic NMC electrode (``preset`` 'tiny', 'demo', 'small', 'paper'; keyword arguments of
    ``tomocell.microstructure.synthetic.generate_electrode`` override it, e.g. ``box_um``,
    ``voxel_size_um``, ``active_fraction``, ``cbd_fraction``, ``d50_um``)."""
    from tomocell.microstructure.synthetic import generate_electrode

    return generate_electrode(preset=preset, seed=seed, **params)


@dataclass
class SegmentationResult:
    """A segmented volume and its report (thresholds, fractions, sensitivity to the thresholds)."""

    volume: Volume
    report: dict[str, Any]

    def save(self, out_dir: PathLike) -> Path:
        from tomocell.atomic import write_json

        d = Path(out_dir)
        from tomocell.microstructure.io import write_volume

        write_volume(self.volume, d / "segmented.tif")
        write_json(d / "report.json", self.report)
        return d


def segment(grey: Any, voxel_size_um: Any = None, **kw: Any) -> SegmentationResult:
    """Segment a greyscale scan (array, or a file path read with ``voxel_size_um``) into pore / CBD /
    active by multi-Otsu or given ``thresholds``; keyword arguments of ``segment_greyscale``."""
    import numpy as np

    from tomocell.microstructure.segmentation import segment_greyscale

    if isinstance(grey, (str, os.PathLike)):
        from tomocell.microstructure.io import read_greyscale

        grey, file_voxel = read_greyscale(grey, voxel_size_um=voxel_size_um)
        voxel_size_um = voxel_size_um or file_voxel
    vol, report = segment_greyscale(np.asarray(grey), voxel_size_um, **kw)
    return SegmentationResult(vol, report)


def superimpose(particle_scan: Volume, cbd_scan: Volume, **kw: Any) -> SegmentationResult:
    """Dual-scan superimposition: the blurry CBD of ``particle_scan`` replaced by the resampled
    high-resolution ``cbd_scan`` (particles and macro-pores unchanged)."""
    from tomocell.microstructure.superimpose import superimpose_dss

    vol, report = superimpose_dss(particle_scan, cbd_scan, **kw)
    return SegmentationResult(vol, report)


# ---- characterisation ------------------------------------------------------------------------------
def characterise(volume: Volume, out: PathLike | None = None, **kw: Any) -> CharacterisationResult:
    """Every metric of the paper's Fig. 2 and 5 (fractions, pore size, particles, tortuosity in three
    directions, depth profiles, travel distance, RVE). ``out``: also write metrics.json, CSV tables,
    figures and report.md there. The result has ``.metrics`` (dict) and ``.particle_labels``;
    ``.save(dir)`` writes the outputs later."""
    from tomocell.microstructure.characterise import characterise as _char

    res = _char(volume, out, **kw)
    _attach_save(res, lambda d: _char(volume, d, **kw))
    return res


def _attach_save(obj: Any, fn: Any) -> None:
    if not hasattr(type(obj), "save"):
        try:
            object.__setattr__(obj, "save", fn)
        except (AttributeError, TypeError):  # pragma: no cover - slotted objects
            pass


# ---- meshing ---------------------------------------------------------------------------------------
def mesh(volume: Volume, **kw: Any) -> MeshResult:
    """A conformal tetrahedral mesh of ``volume`` with a separator slab, tagged by phase, particle and
    interface, with its fidelity report (``.mesh``, ``.report``; ``.save(dir)`` writes mesh.xdmf,
    mesh_facets.xdmf, mesh.vtu, mesh.msh and fidelity.json). Keyword arguments of
    ``tomocell.meshing.pipeline.mesh_volume`` (``route``, ``h_interface_um``, ``h_bulk_um``,
    ``separator_um``, ``coarsen``, ``particle_labels``, ...), with the same defaults as ``tomocell mesh``
    (particle labels from the watershed of ``characterise`` unless given; ``particle_labels=None``: none)."""
    from mpi4py import MPI

    from tomocell.meshing.pipeline import mesh_volume, write_outputs

    if "particle_labels" not in kw:  # as `tomocell mesh --particles auto`: the watershed of characterise
        from tomocell.microstructure.particles import label_particles

        kw["particle_labels"] = label_particles(volume)
    res = mesh_volume(volume, **kw)
    _attach_save(res, lambda d: write_outputs(res, d, comm=MPI.COMM_SELF)["xdmf"].parent)
    return res


# ---- physics ---------------------------------------------------------------------------------------
@dataclass
class SimulationResult:
    """A finished simulation run: its directory and its summary (capacities, voltages, steps ...)."""

    path: Path
    summary: dict[str, Any]

    @property
    def capacity_mAh_g(self) -> float:
        return float(self.summary["capacity_mAh_g"])

    @property
    def utilisation(self) -> float:
        return float(self.summary["utilisation"])

    def timeseries(self) -> dict[str, Any]:
        """``timeseries.csv`` as columns of numbers (``pandas.read_csv(self.path / 'timeseries.csv')``
        gives the same as a DataFrame)."""
        from tomocell.studies.analysis_run import read_csv_columns

        return read_csv_columns(self.path / "timeseries.csv")

    def save(self, out_dir: PathLike) -> Path:
        """The run is on disk already; copy it to ``out_dir``."""
        import shutil

        shutil.copytree(self.path, out_dir, dirs_exist_ok=True)
        return Path(out_dir)


def simulate(mesh: Any, *, out: PathLike, c_rate: float = 1.0, reuse: bool = False, **kw: Any) -> SimulationResult:
    """Particle-resolved half-cell discharge of ``mesh`` against Li metal, outputs in ``out``.

    ``mesh``: a mesh file (``mesh.xdmf``), ``"box:NX,NY,NZ"`` (the built-in cell), or the result of
    :func:`mesh` (written to ``out/mesh/`` first). Keyword arguments as ``tomocell simulate``:
    ``params`` (parameter set name or file), ``overrides`` (``{"active.diffusivity": 5e-15}``),
    ``dod_snapshots``, and the options of ``simulate_discharge``; ``experiment=["Discharge at 1C until
    3.0 V", "Rest for 10 minutes", ...]`` (PyBaMM step strings, :mod:`tomocell.physics.protocols`) runs
    those steps instead (``cell_area_m2`` scales their absolute currents); ``summary["experiment_steps"]``.
    ``reuse=True``: if ``out`` already holds a finished ``simulate`` run of the same mesh (sha256) with
    the same C-rate and options, return it instead of running again (the pipeline's step cache,
    :func:`tomocell.pipeline.finished_run`; ``-v`` logs why a run is not reused).
    """
    from tomocell.physics.cli import simulate_file

    out = Path(out)
    if hasattr(mesh, "mesh") and hasattr(mesh, "report"):  # a MeshResult
        from mpi4py import MPI

        from tomocell import mpi
        from tomocell.meshing.pipeline import write_outputs

        mesh_dir = out.parent / f"{out.name}-mesh"
        if mpi.is_root():
            write_outputs(mesh, mesh_dir, write_msh=False, comm=MPI.COMM_SELF)
        mpi.world().barrier()
        mesh = mesh_dir / "mesh.xdmf"
    if reuse and (done := _finished_simulation(Path(mesh), out, c_rate, kw)) is not None:
        return SimulationResult(out, done["results"])
    res = simulate_file(mesh, c_rate, out, **kw)
    return SimulationResult(out, res.summary())


def _finished_simulation(mesh: Path, out: Path, c_rate: float, kw: dict[str, Any]) -> dict[str, Any] | None:
    """run.json of a finished simulate run in ``out`` of this mesh file and these options, else None."""
    from tomocell import mpi
    from tomocell.pipeline import finished_run

    done = None
    if mpi.is_root() and mesh.is_file() and (out / "run.json").is_file():
        from tomocell.meshing.meshfile import mesh_sha256

        wanted = {"c_rate": c_rate, "overrides": kw.get("overrides") or {},
                  **{k: v for k, v in kw.items() if k not in ("overrides", "experiment", "params")}}
        if kw.get("experiment") is not None:  # run.json holds the expanded steps (and c_rate null)
            from tomocell.physics.protocols.experiment import Step, parse_experiment, step_record

            steps = kw["experiment"]
            steps = steps if all(isinstance(e, Step) for e in steps) else parse_experiment(steps)
            wanted.update(c_rate=None, experiment=[step_record(s, k) for k, s in enumerate(steps)])
        if kw.get("params") is not None:
            wanted["parameter_set"] = str(kw["params"])

        def recorded(data: dict[str, Any]) -> dict[str, Any]:
            got = data.get("parameters", {})
            return {k: got.get(k) for k in wanted}

        done = finished_run(out, stage="simulate", parameters=wanted, key=recorded,
                            inputs={"mesh": mesh_sha256(mesh)}, outputs=("timeseries.csv",))
    return mpi.world().bcast(done, root=0)


# ---- homogenised twin (PyBaMM DFN) and BPX export, optional extra tomocell[dfn] ----------------------
def twin(run: PathLike | SimulationResult, *, out: PathLike, tau: float | None = None,
         bruggeman: float | str | None = None, psd: bool = True) -> dict[str, Any]:
    """The PyBaMM DFN twin of a finished simulate run, at its C-rate, compared with it in ``out``
    (timeseries.csv, comparison.csv, overlay.png); of an experiment its first constant-current discharge
    step (``protocol`` says which; any other first step raises InputError naming it). ``tau`` defaults to
    the value measured on the image behind the run's mesh; ``bruggeman``: a number B (porosity^B) or
    ``"fit"``; ``psd=False``: one radius. Returns the capacities, energies, mean voltages,
    ``voltage_rmse_mV``, ``capacity_diff_rel``, ``protocol``, the electrode's Bruggeman exponent and the
    measured ``geometry``."""
    from tomocell.physics.twin_compare import twin_of_run

    return twin_of_run(run.path if isinstance(run, SimulationResult) else run, out, tau=tau, bruggeman=bruggeman,
                       psd=psd)


def export_bpx(run: PathLike | SimulationResult, *, out: PathLike, tau: float | None = None,
               bruggeman: float | str | None = None) -> Path:
    """A BPX JSON (validated by bpx) of a finished simulate run's measured effective parameters."""
    from tomocell.physics.bpx_export import export_bpx as _export

    return _export(run.path if isinstance(run, SimulationResult) else run, out, tau=tau, bruggeman=bruggeman)


# ---- analysis and studies --------------------------------------------------------------------------
def analyse(runs: Sequence[PathLike | SimulationResult], *, out: PathLike, **kw: Any) -> Any:
    """Figures and tables of one or more simulation runs (Fig. 4 of the paper): ``out/report.md``."""
    from tomocell.studies.analyse import analyse_runs

    dirs = [r.path if isinstance(r, SimulationResult) else Path(r) for r in runs]
    return analyse_runs(dirs, out, **kw)


def run_study(name: str, *, out: PathLike, config: PathLike | None = None, force: bool = False) -> Any:
    """Run a bundled study (``rate-capability``, ``graded-designs``, ``thickness``, ``calendering``, ...)
    with its default config or ``config``; finished runs in ``out`` are reused."""
    from tomocell.studies.cli import default_config_path, study_module
    from tomocell.studies.runner import run_study_module, study_config

    mod = study_module(name)
    cfg = study_config(mod, Path(config) if config else default_config_path(name))
    return run_study_module(mod, cfg, Path(out), force=force)


__all__ = ["read_volume", "generate", "segment", "superimpose", "characterise", "mesh", "simulate", "analyse",
           "run_study", "SegmentationResult", "SimulationResult"]
