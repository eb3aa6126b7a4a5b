"""One call from a labelled volume to a checked, written mesh: route choice, fallback, report, files.

:func:`mesh_volume` runs the requested route, builds the fidelity report and runs its checks. If the
surface route fails (gmsh error, unrecovered or self-intersecting surface, non-conformal output or a
failed fidelity check) and ``fallback`` is on, the exact voxel route is used instead and the reason
is kept in ``mesh.info['fallback']`` and in the report: never a silently bad mesh.
"""

from __future__ import annotations

from typing import Any

import dataclasses
import os
from pathlib import Path

import numpy as np

from tomocell.errors import InputError, TomocellError
from tomocell.log import get_logger
from tomocell.meshing.fidelity import FidelityError, check_fidelity, fidelity_report, marching_cubes_areas
from tomocell.meshing.tetmesh import TetMesh
from tomocell.microstructure.volume import Volume

log = get_logger("meshing")

ROUTES = ("surface", "levelset", "smoothed", "voxel")
GEOMETRY_CHECKS = ("warn", "refuse", "off")


@dataclasses.dataclass
class MeshResult:
    mesh: TetMesh
    report: dict


def mesh_volume(
    volume: Volume,
    *,
    route: str = "surface",
    h_interface_um: float = 0.3,
    h_bulk_um: float = 1.0,
    separator_um: float = 25.0,
    coarsen: int = 1,
    coarsen_method: str = "fraction",
    particle_labels: np.ndarray | None = None,
    fallback: bool = True,
    area_tol: float | None = 0.05,
    min_sicn: float = 1e-3,
    smoothing_iterations: int = 12,
    threads: int = 1,
    gmsh_formulation: str = "regions",
    gmsh_algorithm: int | None = None,
    geometry_check: str = "warn",
    hausd_vox: float = 0.2,
) -> MeshResult:
    """Mesh ``volume`` and check it (see module docstring).

    ``coarsen`` (voxel route): block size of the label grid; (surface route): the label grid is
    coarsened the same way before the surface is built when ``coarsen > 1``. ``coarsen_method``: how a
    block gets its phase (:func:`tomocell.meshing.coarsen.coarsen_labels`; 'fraction', the default, keeps
    each phase's volume, 'mode' takes the majority phase and drops films thinner than a block).
    ``smoothing_iterations``: Taubin iterations of the surface route (12; 8 keeps a rough, fine-CBD
    scan's CBD volume within 3 %).
    ``area_tol`` / ``min_sicn``: acceptance of the surface route (interface areas vs the reference,
    worst tet); a surface mesh failing them falls back to the voxel route when ``fallback`` is on.
    ``threads``: gmsh processes run at once (surface route; one region each); ``gmsh_formulation`` /
    ``gmsh_algorithm``: see :func:`tomocell.meshing.gmsh_volume.surface_mesh`.
    ``geometry_check``: what to do when the final mesh changes a phase fraction (vs the original
    voxels), an interface area (vs the marching-cubes reference) or the pore tau (P1 FE on the mesh vs
    `characterise` on the voxels) beyond the bounds of :mod:`tomocell.meshing.transport`: 'warn'
    (default; logged and listed in ``report['warnings']``, with the figures in
    ``report['simulated_vs_characterised']``), 'refuse' (raise :class:`GeometryChangedError`, an
    InputError; a conformal route refused falls back to the voxel route, which is checked in turn,
    when ``fallback`` is on) or 'off' (no transport solve).
    Route 'levelset' (:mod:`tomocell.meshing.levelset`, needs mmgpy): ``h_interface_um`` is Mmg's smallest
    edge, ``h_bulk_um`` its largest, ``hausd_vox`` the Hausdorff distance of the interfaces in voxels;
    it falls back to the voxel route like 'surface'.
    Raises :class:`FidelityError` if the final mesh fails its checks.
    """
    from tomocell.meshing.gmsh_volume import surface_mesh
    from tomocell.meshing.voxel import voxel_mesh

    if route not in ROUTES:
        raise InputError(f"unknown route {route!r} (choose from {', '.join(ROUTES)})")
    if geometry_check not in GEOMETRY_CHECKS:
        raise InputError(f"unknown geometry check {geometry_check!r} (choose from {', '.join(GEOMETRY_CHECKS)})")
    volume.require_phases("pore", "active")
    isolated = check_meshable(volume, refuse_isolated=route != "voxel")
    mc = marching_cubes_areas(volume)
    if route == "smoothed":
        # the smoothed voxel route (meshing/smoothed.py): volumes as the (coarsened) voxels, areas checked
        from tomocell.meshing.smoothed import smoothed_mesh

        mesh = smoothed_mesh(volume, separator_um=separator_um, coarsen=coarsen, coarsen_method=coarsen_method,
                             particle_labels=particle_labels)
        report = fidelity_report(mesh, volume, mc_reference=mc)
        _coarse_volume_check(report, mesh, volume, coarsen, coarsen_method, mc)
        check_fidelity(report, area_tol=area_tol, min_sicn=min_sicn)
        report["isolated_voxels"] = isolated
        return _check_geometry(MeshResult(mesh, report), volume, geometry_check)
    if route in ("surface", "levelset"):
        try:
            vol_s, part_s = volume, particle_labels
            if coarsen > 1:
                from tomocell.meshing.coarsen import coarsen_labels, particle_labels_on

                lab = coarsen_labels(volume.labels, coarsen, coarsen_method)
                vs = tuple(v * coarsen for v in volume.voxel_size_um)
                if any(n * coarsen != m for n, m in zip(lab.shape, volume.shape)):
                    raise InputError(f"surface route: volume shape {volume.shape} must be a multiple of --coarsen {coarsen}")
                vol_s = volume.with_labels(lab)
                vol_s = Volume(lab, vs, vol_s.metadata)
                part_s = particle_labels_on(lab, particle_labels, coarsen) if particle_labels is not None else None
            if route == "levelset":
                from tomocell.meshing.levelset import levelset_mesh

                if coarsen > 1:
                    raise InputError("the level-set route sets its sizes with --h-interface / --h-bulk, not --coarsen")
                dmin = min(volume.voxel_size_um)
                mesh = levelset_mesh(volume, separator_um=separator_um, h_max_um=h_bulk_um,
                                     h_min_vox=h_interface_um / dmin, hausd_vox=hausd_vox,
                                     particle_labels=particle_labels)
            else:
                mesh = surface_mesh(vol_s, h_interface_um=h_interface_um, h_bulk_um=h_bulk_um,
                                    separator_um=separator_um, particle_labels=part_s,
                                    smoothing_iterations=smoothing_iterations, threads=threads,
                                    formulation=gmsh_formulation, algorithm3d=gmsh_algorithm)
            report = fidelity_report(mesh, volume, mc_reference=mc)
            check_fidelity(report, area_tol=area_tol, min_sicn=min_sicn)
            report["isolated_voxels"] = isolated  # single voxels of a phase (kept; see check_meshable)
            return _check_geometry(MeshResult(mesh, report), volume, geometry_check)
        except TomocellError as exc:
            # bad input is raised as it is; a failed check, or a strict refusal, falls back
            if not fallback or (isinstance(exc, InputError) and not isinstance(exc, GeometryChangedError)):
                raise
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("%s route failed (%s); falling back to the exact voxel route", route, reason)
    else:
        reason = None
    mesh = voxel_mesh(volume, separator_um=separator_um, coarsen=coarsen, coarsen_method=coarsen_method,
                      particle_labels=particle_labels)
    if reason:
        mesh.info["fallback"] = reason
    report = fidelity_report(mesh, volume, mc_reference=mc)
    _coarse_volume_check(report, mesh, volume, coarsen, coarsen_method, mc)
    # voxel interfaces are stair-stepped: their excess area is reported, not a failure
    check_fidelity(report, area_tol=None)
    report["isolated_voxels"] = isolated
    return _check_geometry(MeshResult(mesh, report), volume, geometry_check)


def isolated_voxels(labels: np.ndarray) -> dict[str, int]:
    """Per phase, the voxels with no face neighbour of the same phase."""
    from tomocell.microstructure.volume import PHASE_CODES

    out = {}
    for name, code in PHASE_CODES.items():
        m = labels == code
        same = np.zeros(m.shape, dtype=bool)
        for ax in range(3):
            n = m.shape[ax]
            a = [slice(None)] * 3
            b = [slice(None)] * 3
            a[ax], b[ax] = slice(0, n - 1), slice(1, n)
            pair = m[tuple(a)] & m[tuple(b)]
            same[tuple(a)] |= pair
            same[tuple(b)] |= pair
        out[name] = int(np.count_nonzero(m & ~same))
    return out


def check_meshable(volume: Volume, *, refuse_isolated: bool = True) -> dict[str, int]:
    """InputError for a volume thinner than 2 voxels along an axis, or (``refuse_isolated``: the
    conformal routes, which smooth single voxels away) a phase present only as isolated voxels (no two
    face-adjacent; the voxel route meshes them exactly). Returns the isolated-voxel counts per phase."""
    if min(volume.shape) < 2:
        raise InputError(f"volume {volume.shape} is too thin to mesh: it needs at least 2 voxels along every axis")
    iso = isolated_voxels(volume.labels)
    counts = np.bincount(volume.labels.ravel(), minlength=4)
    from tomocell.microstructure.volume import PHASE_CODES

    for name, n in iso.items():
        total = int(counts[PHASE_CODES[name]])
        if refuse_isolated and total > 0 and n == total:
            raise InputError(f"phase {name} is present only as {n} isolated voxel(s) (none face-adjacent to "
                             "another of its phase): relabel them (e.g. to the neighbouring phase) before meshing")
    return iso


class GeometryChangedError(FidelityError, InputError):
    """The mesh changed the electrode beyond the fidelity bounds and the user asked for a refusal
    (``geometry_check='refuse'``, ``tomocell mesh --strict-fidelity``): exit 2, nothing written."""


def _check_geometry(result: MeshResult, volume: Volume, mode: str) -> MeshResult:
    """Add the mesh-vs-voxel figures and the warnings (changes beyond the bounds); warn or refuse."""
    from tomocell.meshing.transport import geometry_changes, simulated_vs_characterised, transport_comparison

    if mode == "off":
        return result
    rep = result.report
    rep["transport"] = transport_comparison(result.mesh, volume)
    rep["simulated_vs_characterised"] = simulated_vs_characterised(rep)
    rep["warnings"] = changes = geometry_changes(rep)
    if changes:
        msg = "meshing changed the electrode beyond the fidelity bounds: " + "; ".join(changes)
        if mode == "refuse":
            raise GeometryChangedError(msg + " (strict fidelity; drop --strict-fidelity to accept with a warning)")
        log.warning("%s", msg)
    return result


def _coarse_volume_check(report: dict, mesh: TetMesh, volume: Volume, coarsen: int, method: str,
                         mc: dict[str, float]) -> None:
    """A coarsened mesh's own volume check is against its coarse grid (what it meshes); the change the
    coarsening made is kept as ``phase_volumes_vs_original_voxels`` (and warned about by the geometry check)."""
    if coarsen <= 1:
        return
    from tomocell.meshing.coarsen import coarsen_labels

    report["phase_volumes_vs_original_voxels"] = report["phase_volumes"]
    ref = _coarse_reference_volume(volume, coarsen_labels(volume.labels, coarsen, method), coarsen)
    report["phase_volumes"] = fidelity_report(mesh, ref, mc_reference=mc)["phase_volumes"]
    report["coarsening"] = {"factor": coarsen, "method": method}


def _coarse_reference_volume(volume: Volume, lab: np.ndarray, n: int) -> Volume:
    """The coarsened labels expanded back to the fine grid (same box), as the volume reference."""
    fine = np.repeat(np.repeat(np.repeat(lab, n, axis=0), n, axis=1), n, axis=2)
    fine = fine[: volume.shape[0], : volume.shape[1], : volume.shape[2]]
    return volume.with_labels(np.ascontiguousarray(fine))


def write_outputs(result: MeshResult, out_dir: str | os.PathLike[str], *, write_msh: bool = True,
                  comm: Any = None) -> dict[str, Path]:
    """mesh.xdmf/.h5 + mesh_facets.xdmf/.h5 (DOLFINx, meshio, ParaView), mesh.vtu (pyvista), mesh.msh (gmsh,
    physical groups = tags) and fidelity.json in out_dir.

    Collective over ``comm`` (default COMM_WORLD, as under ``mpirun tomocell mesh``); a caller that
    meshed on one rank only passes ``MPI.COMM_SELF``, or the other ranks are waited for forever."""
    from tomocell.atomic import atomic_path, write_json
    from tomocell.meshing.meshfile import write_mesh, write_vtu

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"xdmf": write_mesh(out / "mesh.xdmf", result.mesh, comm=comm), "report": write_json(out / "fidelity.json", result.report)}
    if write_msh:
        with atomic_path(out / "mesh.msh") as tmp:
            write_msh_file(tmp, result.mesh)
        paths["msh"] = out / "mesh.msh"
        paths["vtu"] = write_vtu(out / "mesh.vtu", result.mesh)
    return paths


def write_msh_file(path: str | os.PathLike[str], mesh: TetMesh) -> None:
    """gmsh MSH 4.1: tets per phase tag and facets per facet tag as physical groups (names from tags)."""
    import gmsh

    from tomocell.meshing import tags

    names_cell = {v: k for k, v in tags.CELL_TAGS.items()}
    names_facet = {v: k for k, v in tags.FACET_TAGS.items()}
    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("tomocell")
        node_tags = np.arange(1, mesh.num_nodes + 1, dtype=np.uint64)
        first = True
        for t in np.unique(mesh.cell_tags):
            e = int(t)
            gmsh.model.addDiscreteEntity(3, e)
            if first:
                gmsh.model.mesh.addNodes(3, e, node_tags, mesh.points.ravel())
                first = False
            gmsh.model.mesh.addElementsByType(e, 4, [], (mesh.tets[mesh.cell_tags == t] + 1).astype(np.uint64).ravel())
            gmsh.model.addPhysicalGroup(3, [e], e, name=names_cell.get(e, str(e)))
        for t in np.unique(mesh.facet_tags):
            e = int(t)
            gmsh.model.addDiscreteEntity(2, e)
            gmsh.model.mesh.addElementsByType(e, 2, [], (mesh.facets[mesh.facet_tags == t] + 1).astype(np.uint64).ravel())
            gmsh.model.addPhysicalGroup(2, [e], e, name=names_facet.get(e, str(e)))
        gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
        gmsh.write(str(path) if str(path).endswith(".msh") else str(path))
    finally:
        gmsh.finalize()


__all__ = ["MeshResult", "GeometryChangedError", "mesh_volume", "write_outputs", "write_msh_file", "FidelityError", "ROUTES"]
