"""``tomocell generate``: a synthetic NMC cathode volume (see :mod:`tomocell.microstructure.synthetic`)."""

from __future__ import annotations

import argparse
from typing import Any

from tomocell.cliutil import add_out, add_seed
from tomocell.config import parse_voxel_size
from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.manifest import run_manifest

HELP = "generate a synthetic NMC cathode (ellipsoidal particles + CBD at necks)"
DESCRIPTION = (
    "Generate a three-phase NMC cathode volume: ellipsoidal secondary particles with a log-normal size "
    "distribution (volume-weighted D50/D90), a sphericity distribution and random orientations, packed to "
    "a target active fraction with bounded overlap; carbon-binder domain (CBD) at particle necks, surfaces "
    "and the current-collector foil to a target fraction. Axis 0 is the thickness (index 0 = separator). "
    "Defaults follow Lu et al. 2020 (D50 5 um, D90 10 um; active 0.55, CBD 0.15, pore 0.30). Writes the "
    "volume (with the per-particle ground truth in its metadata), report.json, report_slices.png, run.json."
)
EPILOG = """examples:
  tomocell generate --preset demo --out results/gen-demo          # 30x20x20 um at 0.5 um, < 1 s
  tomocell generate --box-um 50,43,43 --voxel-size 0.126 --out results/gen-paper   # the paper's box
  tomocell generate --preset demo --active-fraction 0.5 --cbd-fraction 0.1 --seed 3 --greyscale --out results/g3
"""

log = get_logger("microstructure.cli_generate")


def _floats(spec: str | None, n: int, what: str) -> tuple[float, ...] | None:
    if spec is None:
        return None
    try:
        vals = tuple(float(v) for v in str(spec).replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise InputError(f"{what}: {spec!r} is not {n} comma-separated numbers") from None
    if len(vals) != n:
        raise InputError(f"{what}: expected {n} numbers, got {len(vals)}")
    return vals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tomocell.microstructure.synthetic import PRESETS

    add_out(parser, what="the volume and its report")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="box and voxel size: " + "; ".join(f"{k}: {v['box_um']} um at {v['voxel_size_um']} um"
                                                                for k, v in PRESETS.items()))
    parser.add_argument("--box-um", metavar="L0,L1,L2", default=None,
                        help="box edge lengths in um, thickness first (default 30,20,20)")
    parser.add_argument("--voxel-size", metavar="UM", default=None, help="voxel edge in um (default 0.25)")
    parser.add_argument("--active-fraction", type=float, default=None, help="active volume fraction (default 0.55)")
    parser.add_argument("--cbd-fraction", type=float, default=None, help="CBD volume fraction (default 0.15)")
    parser.add_argument("--d50-um", type=float, default=None, help="volume-weighted median diameter, um (default 5)")
    parser.add_argument("--d90-um", type=float, default=None, help="volume-weighted D90 diameter, um (default 10)")
    parser.add_argument("--sphericity", metavar="MEAN,SD", default=None,
                        help="minor/major axis ratio at D50: mean and sd (default 0.75,0.12)")
    parser.add_argument("--max-overlap", type=float, default=None,
                        help="largest share of a particle's voxels another may overlap (default 0.15)")
    parser.add_argument("--periodic-inplane", action="store_true",
                        help="wrap particles across the side faces (no side-face porosity excess)")
    add_seed(parser)
    parser.add_argument("--format", choices=("tif", "h5", "npy"), default="tif", help="volume file format (default tif)")
    parser.add_argument("--greyscale", action="store_true",
                        help="also write greyscale.tif, a forward-modelled CT scan of the volume (to try `tomocell segment`)")


def run(args: argparse.Namespace) -> int:
    from tomocell.microstructure.ctmodel import forward_ct
    from tomocell.microstructure.report_slices import finish_volume_outputs
    from tomocell.microstructure.synthetic import generate_electrode

    box = _floats(args.box_um, 3, "--box-um")
    vs = parse_voxel_size(args.voxel_size)
    sph = _floats(args.sphericity, 2, "--sphericity")
    params: dict[str, Any] = {
        "preset": args.preset, "box_um": box, "voxel_size_um": vs, "active_fraction": args.active_fraction,
        "cbd_fraction": args.cbd_fraction, "d50_um": args.d50_um, "d90_um": args.d90_um, "sphericity": sph,
        "seed": args.seed,
    }
    if args.max_overlap is not None:
        params["max_overlap"] = args.max_overlap
    if args.periodic_inplane:
        params["periodic_inplane"] = True
    with run_manifest("generate", args.out, {**params, "format": args.format}, guard=True, overwrite=args.overwrite) as man:
        with man.timed("generate"):
            vol = generate_electrode(**params)
        gen = vol.metadata["generator"]
        report = {"generator": gen, "particles": vol.metadata["particles"]}
        with man.timed("write"):
            vol, paths, _ = finish_volume_outputs(args.out, vol, report, stem="electrode", fmt=args.format,
                                                  title="tomocell generate")
            if args.greyscale:
                import tifffile

                from tomocell.atomic import atomic_path

                g = forward_ct(vol, seed=args.seed)
                with atomic_path(args.out / "greyscale.tif") as tmp:
                    tifffile.imwrite(tmp, g, metadata={"axes": "ZYX", "voxel_size_um": list(vol.voxel_size_um)})
                paths["greyscale"] = args.out / "greyscale.tif"
        for k, p in paths.items():
            man.add_output(k, p)
        man.set_result(fractions=vol.fractions(), shape=list(vol.shape), n_particles=gen["achieved"]["n_particles"],
                       d50_um=gen["achieved"]["d50_um"], d90_um=gen["achieved"]["d90_um"])
    a = gen["achieved"]
    print(f"generated {vol.shape} voxels at {vol.voxel_size_um[0]} um: pore {a['pore']:.3f}, active {a['active']:.3f}, "
          f"CBD {a['cbd']:.3f}; {a['n_particles']} particles, D50 {a['d50_um']:.2f} um, D90 {a['d90_um']:.2f} um -> {paths['volume']}")
    return 0
