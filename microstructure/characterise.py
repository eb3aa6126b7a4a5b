"""Every microstructure metric of the paper's Fig. 2 and Fig. 5d-i, in one call, with outputs.

:func:`characterise` runs the metric families (phase fractions and slice profiles, local thickness,
particles, tortuosity factors in three directions with flux maps, depth profiles with Bruggeman
exponents, travel distance and reaction-site tortuosities, interfacial areas and percolation, RVE
study) and returns a :class:`CharacterisationResult`. With ``out_dir`` it also writes, atomically
(the directory appears complete or not at all):

* ``metrics.json``: every scalar metric;
* CSV tables: particles, slice profiles, pore-size distribution, depth profile, reaction sites binned
  by depth, RVE study (and ``reaction_sites.npz`` with every site);
* ``fields.vti``: phases, local thickness, particle labels, travel distance and flux maps as cell
  data for ParaView (VTK x, y, z = volume axes 0, 1, 2; lengths in um);
* PNG figures and ``report.md`` showing them with captions.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tomocell import mpi
from tomocell.atomic import atomic_dir, write_json
from tomocell.errors import InputError
from tomocell.log import get_logger, progress
from tomocell.microstructure import (
    depthprofiles,
    fractions,
    interfaces,
    particles,
    poresize,
    rve,
    tortuosity,
    travel,
)
from tomocell.microstructure.volume import PORE, Volume

log = get_logger("microstructure.characterise")

#: metric families that ``skip`` may name
STEPS = ("poresize", "particles", "tortuosity", "depth", "travel", "interfaces", "rve", "fields", "figures")


@dataclasses.dataclass
class CharacterisationResult:
    """Scalar metrics plus the arrays other stages reuse.

    ``particle_labels``: int32, 0 = not active, 1..N particles. ``local_thickness_um``: float32 pore
    diameter field (0 outside the pore). ``travel_distance_um``: float32 geodesic distance from the
    separator (NaN where not reachable). Arrays are None when their step was skipped.
    """

    metrics: dict[str, Any]
    particle_labels: np.ndarray | None = None
    local_thickness_um: np.ndarray | None = None
    travel_distance_um: np.ndarray | None = None
    flux_maps: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    reaction_sites: dict[str, np.ndarray] | None = None
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)


def _tau_entry(r: tortuosity.TortuosityResult) -> dict[str, Any]:
    d = r.as_dict()
    d["bruggeman_p"] = depthprofiles.bruggeman_exponent(r.tau, r.eps)
    if not r.percolating:
        d["note"] = "not percolating: tau is infinite"
    return d


def _step_poresize(volume: Volume) -> tuple[np.ndarray, dict[str, Any]]:
    lt = poresize.local_thickness(volume, "pore")
    return lt, poresize.size_distribution(lt, volume.labels == PORE, min(volume.voxel_size_um))


def _step_particles(volume: Volume) -> tuple[np.ndarray, dict[str, Any]]:
    labels = particles.label_particles(volume)
    return labels, particles.particle_table(volume, labels)


def _step_travel(volume: Volume) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    fields = travel.travel_fields(volume)
    sites = travel.reaction_site_tortuosity(volume, fields)
    return fields["travel_distance_um"], sites


def _run_distributed(steps: dict[str, Callable[[], Any]], timings: dict[str, float]) -> dict[str, Any]:
    """Run independent ``steps`` round-robin over the MPI ranks (all on one process when serial) and
    give every rank every result (broadcast from the rank that computed it). A step that fails on
    one rank raises on all ranks (no rank is left waiting in a broadcast)."""
    comm = mpi.world()
    size, rank = comm.size, comm.rank
    mine: dict[str, Any] = {}
    for i, (name, fn) in enumerate(steps.items()):
        if i % size != rank:
            continue
        t0 = time.perf_counter()
        log.info("characterise: %s ...", name)
        try:
            mine[name] = ("ok", fn())
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            mine[name] = ("error", exc)
        timings[name] = time.perf_counter() - t0
    out: dict[str, Any] = {}
    for i, name in enumerate(steps):
        owner = i % size
        status, value = comm.bcast(mine.get(name), root=owner) if size > 1 else mine[name]
        if status == "error":
            raise value
        out[name] = value
    if size > 1:  # every rank reports the time of each step on the rank that ran it
        for part in comm.allgather({k: v for k, v in timings.items() if k in steps}):
            timings.update(part)
    return out


def characterise(
    volume: Volume,
    out_dir: str | Path | None = None,
    *,
    directions: Iterable[int] = (0, 1, 2),
    skip: Iterable[str] = (),
    electronic: bool = False,
    depth_steps: int = 4,
    depth_directions: Iterable[int] | None = None,
    rve_steps: int = 4,
    rve_tortuosity: bool = True,
    flux_tol: float = 1e-4,
    fast: bool = False,
) -> CharacterisationResult:
    """Compute all metrics of ``volume``; write the outputs to ``out_dir`` if given.

    ``directions``: axes for the tortuosity factors. ``skip``: names from :data:`STEPS`.
    ``electronic``: also the electronic tortuosity of active + CBD. ``fast``: fewer depth/RVE steps
    and no tortuosity in the RVE study (for demos and quick looks).
    """
    dirs = tuple(int(d) for d in directions)
    if not dirs or any(d not in (0, 1, 2) for d in dirs):
        raise InputError(f"directions must be a non-empty subset of 0,1,2, got {dirs}")
    skip = set(skip)
    unknown = skip - set(STEPS)
    if unknown:
        raise InputError(f"unknown step(s) to skip: {sorted(unknown)} (choose from {', '.join(STEPS)})")
    volume.require_phases("pore", "active")
    if fast:
        depth_steps, rve_steps, rve_tortuosity = min(depth_steps, 3), min(rve_steps, 3), False
    ddirs = tuple(depth_directions) if depth_directions is not None else dirs
    timings: dict[str, float] = {}
    metrics: dict[str, Any] = {
        "volume": {
            "shape": list(volume.shape), "voxel_size_um": list(volume.voxel_size_um),
            "extent_um": list(volume.extent_um), "source": volume.metadata.get("source"),
        },
        "conventions": "axis 0 = through-thickness, index 0 = separator side; lengths in um; "
                       "tau = eps * D0 / D_eff; specific areas in um^2 per um^3 of electrode",
    }
    res = CharacterisationResult(metrics=metrics)
    full_results: dict[int, Any] = {}  # whole-volume tortuosity per axis, reused by depth and RVE

    def timed(name: str):
        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()
                log.info("characterise: %s ...", name)

            def __exit__(self, *exc):
                timings[name] = time.perf_counter() - self.t0
                return False
        return _T()

    with timed("fractions"):
        metrics["phase_fractions"] = fractions.phase_fractions(volume)
    # The image-analysis steps are independent of each other and of the tortuosity solves: under MPI
    # each runs on one rank and its result is broadcast (the tortuosity solves are split over all ranks).
    image_steps = {
        "poresize": lambda: _step_poresize(volume),
        "particles": lambda: _step_particles(volume),
        "travel": lambda: _step_travel(volume),
        "interfaces": lambda: (interfaces.specific_areas(volume), interfaces.percolation(volume)),
    }
    done = _run_distributed({k: f for k, f in image_steps.items() if k not in skip}, timings)
    if "poresize" in done:
        res.local_thickness_um, psd = done["poresize"]
        metrics["pore_size"] = {k: v for k, v in psd.items() if k.endswith("_um") and not k.startswith("bin")}
        edges = psd["bin_edges_um"]
        res.tables["pore_size_distribution"] = {
            "diameter_lo_um": edges[:-1], "diameter_hi_um": edges[1:], "pore_volume_fraction": psd["volume_fraction"]}
    with timed("profiles"):
        prof = fractions.slice_profiles(volume, res.local_thickness_um)
        metrics["slice_profiles"] = fractions.profile_summary(prof)
        for ax, p in prof.items():
            res.tables[f"slice_profile_axis{ax}"] = p
    if "particles" in done:
        res.particle_labels, table = done["particles"]
        res.tables["particles"] = table
        metrics["particles"] = particles.summary(table)
    if "tortuosity" not in skip:
        with timed("tortuosity"):
            tau: dict[str, Any] = {"pore": {}}
            for ax in progress(dirs, desc="pore tortuosity, directions", log_every_s=0.0):
                r = tortuosity.tortuosity_factor(volume, "pore", ax, want_flux_map=True,
                                                 raise_if_not_percolating=False, flux_tol=flux_tol)
                tau["pore"][f"axis{ax}"] = _tau_entry(r)
                full_results[ax] = r
                if r.flux_map is not None:
                    res.flux_maps[ax] = r.flux_map
            if electronic:
                tau["solid"] = {}
                for ax in dirs:
                    r = tortuosity.tortuosity_factor(volume, "solid", ax, raise_if_not_percolating=False, flux_tol=flux_tol)
                    tau["solid"][f"axis{ax}"] = _tau_entry(r)
            vals = [e["tau"] for e in tau["pore"].values() if e["tau"] is not None]
            if len(vals) > 1:
                tau["pore"]["anisotropy_max_over_min"] = max(vals) / min(vals)
            metrics["tortuosity"] = tau
    if "depth" not in skip and "tortuosity" not in skip:
        with timed("depth"):
            rows = depthprofiles.depth_profile(volume, directions=ddirs, n_steps=depth_steps, flux_tol=flux_tol,
                                              full=full_results)
            res.tables["depth_profile"] = rows
            metrics["depth_profile"] = rows
    if "travel" in done:
        with timed("travel_tables"):
            res.travel_distance_um, sites = done["travel"]
            res.reaction_sites = sites
            bin_um = max(volume.extent_um[0] / 20.0, volume.voxel_size_um[0])
            res.tables["reaction_sites_by_depth"] = travel.depth_binned(sites, bin_um)
            L = res.travel_distance_um
            deepest = L[-1][np.isfinite(L[-1])]
            metrics["travel"] = {
                "n_reaction_sites": int(sites["depth_um"].size),
                "reachable_pore_fraction": float(np.isfinite(L).sum() / max((volume.labels == PORE).sum(), 1)),
                "mean_travel_at_far_face_um": float(deepest.mean()) if deepest.size else None,
                "far_face_travel_over_thickness": float(deepest.mean() / volume.extent_um[0]) if deepest.size else None,
                "median_tau_pore": float(np.nanmedian(sites["tau_pore"])),
                "median_tau_electrode": float(np.nanmedian(sites["tau_electrode"])),
            }
    if "interfaces" in done:
        metrics["specific_areas"], metrics["percolation"] = done["interfaces"]
    if "rve" not in skip:
        with timed("rve"):
            rows = rve.rve_study(volume, fractions=rve.rve_fractions(rve_steps), local_thickness_um=res.local_thickness_um,
                                 particle_table=res.tables.get("particles"),
                                 with_tortuosity=rve_tortuosity and "tortuosity" not in skip, flux_tol=flux_tol,
                                 full_tau=full_results.get(0))
            res.tables["rve"] = rows
            metrics["rve"] = rows
    metrics["timings_s"] = timings
    if out_dir is not None and mpi.is_root():  # under MPI every rank has the results; rank 0 writes
        from tomocell.microstructure import characterise_output

        t0 = time.perf_counter()
        with atomic_dir(out_dir) as tmp:
            characterise_output.write_all(volume, res, tmp, with_fields="fields" not in skip, with_figures="figures" not in skip)
            written = sorted(p.name for p in tmp.iterdir())  # only these: other files in out_dir are not ours
        timings["write"] = time.perf_counter() - t0
        out = Path(out_dir)
        res.outputs = {name: str(out / name) for name in written}
        write_json(out / "metrics.json", metrics)  # again, with the write time
    return res
