"""``tomocell mesh``: labelled volume -> conformal tagged tet mesh (XDMF/HDF5 + .msh) + fidelity report."""

from __future__ import annotations

import argparse

import numpy as np

from tomocell.cliutil import add_labels, add_out, add_voxel_size, existing_file
from tomocell.config import parse_labels
from tomocell import mpi
from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.manifest import run_manifest

HELP = "conformal multi-phase tetrahedral mesh with tags, separator slab and a fidelity report"
DESCRIPTION = (
    "Mesh a segmented three-phase electrode volume (pore / active / CBD) into one conformal "
    "tetrahedral mesh with a separator slab on the separator side (volume index 0). Route 'surface' "
    "(default): multi-label voxel-corner surface, Taubin smoothing with pinned triple lines and box "
    "faces, constrained coarsening, gmsh volume mesh of each phase region bounded by its interfaces "
    "(HXT, Delaunay where HXT fails) with sizes graded from --h-interface to --h-bulk; if it fails or "
    "fails its checks the exact 'voxel' route (6 tets per voxel or per --coarsen block) is used and the reason recorded. Outputs in --out: mesh.xdmf + "
    "mesh.h5 (read with tomocell.meshing.meshfile.read_mesh, any number of MPI ranks), mesh.msh, "
    "fidelity.json (phase volumes vs voxel counts, interface areas vs marching cubes, SICN quality, "
    "conformity), run.json. Lengths in micrometres; tags in tomocell/meshing/tags.py."
)
EPILOG = """examples:
  tomocell mesh electrode.tif --voxel-size 0.390625 --labels 0=pore,85=active,170=cbd --out mesh/
  tomocell mesh electrode.npy --voxel-size 0.2 --route voxel --coarsen 2 --separator 10 --out mesh_vox/
  tomocell mesh electrode.tif --voxel-size 0.1 --h-interface 0.3 --h-bulk 1.0 --separator 25 --out mesh/
"""


def _area_tol(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--area-tol must be a fraction such as 0.05 or 'none', got {text!r}") from None
    if not (0.0 < v < 10.0):
        raise argparse.ArgumentTypeError(f"--area-tol must be a positive fraction (0.05 = 5 %), got {v}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", help="labelled volume (TIFF, TIFF directory, .npy, .h5, .raw; see tomocell segment)")
    add_voxel_size(parser)
    add_labels(parser)
    parser.add_argument("--route", choices=("surface", "levelset", "smoothed", "voxel"), default="surface",
                        help="meshing route (default: surface, with automatic fallback to voxel; levelset: Mmg "
                             "multi-material level set of the smoothed, volume-matched labels, needs mmgpy; smoothed: "
                             "the voxel mesh (--coarsen blocks) with its interface nodes smoothed off the "
                             "staircase at fixed phase volumes, no fallback; see docs/meshing.md)")
    parser.add_argument("--h-interface", type=float, default=0.3, metavar="UM",
                        help="target element size at interfaces, um (default 0.3)")
    parser.add_argument("--h-bulk", type=float, default=1.0, metavar="UM",
                        help="element size inside particles and pores, um (default 1.0)")
    parser.add_argument("--separator", type=float, default=25.0, metavar="UM",
                        help="separator slab thickness, um (0: none; default 25)")
    parser.add_argument("--coarsen", type=int, default=1, metavar="N",
                        help="coarsen the label grid by N^3 blocks before meshing (default 1)")
    parser.add_argument("--coarsen-method", choices=("fraction", "mode"), default="fraction",
                        help="how a coarse block gets its phase: fraction (default: every phase keeps its "
                             "volume; thin CBD films become the blocks where they are densest) or mode (the "
                             "majority phase; drops films thinner than a block)")
    parser.add_argument("--particles", default="auto", metavar="auto|none|FILE",
                        help="particle labels for the mesh's particle_tags (particles.csv of `simulate`): auto "
                             "(default) separates the active phase by the same watershed as `characterise`; a .npy "
                             "of integer labels (same shape as the volume, e.g. a generator's ground truth); none")
    parser.add_argument("--no-fallback", action="store_true",
                        help="fail instead of falling back to the voxel route when the surface route fails")
    parser.add_argument("--smoothing-iterations", type=int, default=12, metavar="N",
                        help="surface route: Taubin smoothing iterations (default 12; 8 for rough scans with fine CBD)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="surface route: gmsh processes run at once, one region each (default 1)")
    parser.add_argument("--mesher", choices=("gmsh", "tetgen"), default="gmsh",
                        help="surface route: volume mesher (default gmsh; tetgen needs the optional AGPL "
                             "package `tetgen`, which tomocell does not install)")
    parser.add_argument("--area-tol", type=_area_tol, default=0.05, metavar="FRAC",
                        help="surface route: accepted relative error of each interface area against the "
                             "binary-mask marching-cubes reference (default 0.05; 'none' reports without "
                             "checking: that reference overstates smooth bodies by 8-12 %%, so rough scans "
                             "may need more)")
    parser.add_argument("--geometry-check", choices=("warn", "refuse", "off"), default="warn",
                        help="when the mesh changes a phase fraction (1 %%, CBD 2 %%), an interface area (5 %% vs "
                             "marching cubes) or the pore tau through the thickness (5 %%: P1 FE on the mesh vs "
                             "characterise on the voxels) beyond the bounds: warn (default: stderr and fidelity.json "
                             "'warnings'), refuse (exit 2, nothing written), off (skip the transport solves); figures "
                             "in fidelity.json 'simulated_vs_characterised'")
    parser.add_argument("--strict-fidelity", action="store_true",
                        help="the same as --geometry-check refuse: exit 2 and write nothing when the mesh changes "
                             "the electrode beyond the fidelity bounds")
    parser.add_argument("--hausd", type=float, default=0.2, metavar="VOXELS",
                        help="levelset route: Hausdorff distance of the remeshed interfaces, voxels (default 0.2)")
    parser.add_argument("--no-msh", action="store_true", help="do not write the gmsh .msh copy")
    add_out(parser, what="mesh.xdmf/.h5, mesh.msh, fidelity.json, run.json")


def run(args: argparse.Namespace) -> int:
    from tomocell.meshing.pipeline import mesh_volume, write_outputs
    from tomocell.microstructure.io import read_volume

    if args.strict_fidelity:
        if args.geometry_check == "off":
            raise InputError("--strict-fidelity needs the geometry check: drop --geometry-check off")
        args.geometry_check = "refuse"
    src = existing_file(args.volume, "volume")
    labels = parse_labels(args.labels)
    params = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "config"}
    with run_manifest("mesh", args.out, {k: str(v) if not isinstance(v, (int, float, bool, type(None))) else v
                                         for k, v in params.items()}, guard=True, overwrite=args.overwrite) as man:
        man.add_input("volume", src)
        with man.timed("read"):
            vol = read_volume(src, voxel_size_um=args.voxel_size, labels=labels)
        part = None
        if args.particles == "auto":
            from tomocell.microstructure.particles import label_particles

            with man.timed("particles"):
                part = label_particles(vol)
            man.set_parameters(particle_labels="watershed (as characterise)")
        elif args.particles and args.particles != "none":
            pf = existing_file(args.particles, "particle labels")
            man.add_input("particles", pf)
            part = np.load(pf)
            if part.shape != vol.shape:
                raise InputError(f"particle labels {part.shape} do not match the volume {vol.shape}")
        with man.timed("mesh"):
            res = mesh_volume(vol, route=args.route, h_interface_um=args.h_interface, h_bulk_um=args.h_bulk,
                              separator_um=args.separator, coarsen=args.coarsen,
                              coarsen_method=args.coarsen_method, particle_labels=part,
                              fallback=not args.no_fallback, smoothing_iterations=args.smoothing_iterations,
                              threads=args.threads, area_tol=args.area_tol, geometry_check=args.geometry_check,
                              hausd_vox=args.hausd,
                              gmsh_formulation="tetgen" if args.mesher == "tetgen" else "regions")
        with man.timed("write"):
            paths = write_outputs(res, args.out, write_msh=not args.no_msh)
        for k, p in paths.items():
            man.add_output(k, p)
        from tomocell.meshing.connectivity import describe, percolation_warning, phase_connectivity

        perc = phase_connectivity(res.mesh)
        if (warn := percolation_warning(perc)):
            get_logger("meshing.cli").warning("%s", warn)
        r = res.report
        man.set_result(percolation=perc)
        man.set_result(route=res.mesh.info.get("route"), fallback=res.mesh.info.get("fallback"), tets=r["tets"],
                       nodes=r["nodes"], min_sicn=r["quality_sicn"]["min"], slivers=r["slivers"],
                       phase_volume_rel_error={k: v["rel_error"] for k, v in r["phase_volumes"].items()},
                       interface_area_rel_error={k: v["rel_error"] for k, v in r["interface_areas"].items()},
                       warnings=r.get("warnings", []))
    if mpi.is_root():
        print(f"tomocell mesh: {r['tets']} tets ({res.mesh.info.get('route')} route), min SICN "
              f"{r['quality_sicn']['min']:.3f}; connected to the collector / separator: {describe(perc)}"
              f"{' (WARNING: disconnected material)' if warn else ''} -> {args.out}/")
        if r.get("warnings"):
            print(f"tomocell mesh: {len(r['warnings'])} change(s) beyond the fidelity bounds (fidelity.json 'warnings'; "
                  "--strict-fidelity refuses them)")
    return 0
