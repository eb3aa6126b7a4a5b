"""``tomocell superimpose``: dual-scan superimposition (see :mod:`tomocell.microstructure.superimpose`)."""

from __future__ import annotations

import argparse

from tomocell.cliutil import add_out, add_seed, existing_file
from tomocell.config import parse_labels, parse_voxel_size
from tomocell.errors import InputError
from tomocell.manifest import run_manifest

HELP = "dual-scan superimposition: put a high-resolution CBD scan into a particle scan's blurry phase"
DESCRIPTION = (
    "Dual-scan superimposition (DSS, Lu et al. 2020): the particle scan resolves active particles and "
    "macro-pores, but CBD and its micro-pores form one blurry phase; a separate higher-resolution scan of "
    "stand-alone CBD resolves CBD solid and micro-pores. The CBD scan is resampled (anti-aliased) to the "
    "particle scan's voxel size, mirror-tiled or cropped to its shape, and replaces the blurry phase only; "
    "particles and macro-pores are copied voxel for voxel. Mark the blurry phase's stored value with the "
    "name 'blurry' in --particle-labels. By default the CBD scan's porosity is kept exactly inside the "
    "blurry phase. Writes the three-phase volume, report.json (fractions, CBD porosity, checks), "
    "report_slices.png and run.json."
)
EPILOG = """examples:
  tomocell superimpose electrode.tif cbd.tif --particle-labels 0=pore,255=active,128=blurry \\
      --cbd-labels 0=pore,255=cbd --particle-voxel-size 0.126 --cbd-voxel-size 0.063 --out results/dss
  tomocell superimpose lowres.tif cbd.tif --particle-labels 0=blurry,128=active --particle-voxel-size 0.25 \\
      --cbd-labels 0=pore,1=cbd --cbd-voxel-size 0.063 --out results/dss2      # two-phase scan: all non-NMC blurry
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("particle_scan", help="labelled particle scan (pore, active, blurry mixed phase)")
    parser.add_argument("cbd_scan", help="labelled high-resolution CBD scan (cbd solid, micro-pores)")
    add_out(parser, what="the superimposed volume and its report")
    parser.add_argument("--particle-labels", metavar="VALUE=PHASE,...", default=None,
                        help="stored values of the particle scan: pore, active and blurry, e.g. 0=pore,255=active,128=blurry")
    parser.add_argument("--blurry-phase", choices=("cbd", "pore"), default="cbd",
                        help="for a particle scan written by tomocell (no --particle-labels): which phase code is the "
                        "blurry one (default cbd)")
    parser.add_argument("--cbd-labels", metavar="VALUE=PHASE,...", default=None,
                        help="stored values of the CBD scan: cbd and pore, e.g. 0=pore,255=cbd")
    parser.add_argument("--particle-voxel-size", metavar="UM", default=None, help="particle scan voxel size, um")
    parser.add_argument("--cbd-voxel-size", metavar="UM", default=None, help="CBD scan voxel size, um")
    parser.add_argument("--no-preserve-porosity", action="store_true",
                        help="cut the resampled CBD at solid fraction 0.5 instead of keeping the CBD scan's porosity")
    add_seed(parser)
    parser.add_argument("--remove-isolated", action="store_true",
                        help="remove pore not connected to the separator face and solid not connected to the current collector")
    parser.add_argument("--format", choices=("tif", "h5", "npy"), default="tif", help="output format (default tif)")


def run(args: argparse.Namespace) -> int:
    from tomocell.microstructure.io import read_volume
    from tomocell.microstructure.report_slices import finish_volume_outputs
    from tomocell.microstructure.superimpose import parse_labels_with_blurry, split_blurry_labels, superimpose_dss

    pscan = existing_file(args.particle_scan, "particle scan")
    cscan = existing_file(args.cbd_scan, "CBD scan")
    pmap, blurry_values = split_blurry_labels(parse_labels_with_blurry(args.particle_labels))
    blurry_phase = "cbd" if pmap is not None else args.blurry_phase
    cmap = parse_labels(args.cbd_labels)
    if cmap is not None and "active" in cmap.values():
        raise InputError("--cbd-labels: a stand-alone CBD scan has no active phase (use cbd and pore)")
    params = {k: getattr(args, k) for k in ("particle_labels", "blurry_phase", "cbd_labels", "particle_voxel_size",
                                           "cbd_voxel_size", "no_preserve_porosity", "seed", "remove_isolated", "format")}
    with run_manifest("superimpose", args.out, params, guard=True, overwrite=args.overwrite) as man:
        man.add_input("particle_scan", pscan)
        man.add_input("cbd_scan", cscan)
        with man.timed("read"):
            pvol = read_volume(pscan, voxel_size_um=parse_voxel_size(args.particle_voxel_size), labels=pmap)
            cvol = read_volume(cscan, voxel_size_um=parse_voxel_size(args.cbd_voxel_size), labels=cmap)
        with man.timed("superimpose"):
            vol, report = superimpose_dss(pvol, cvol, blurry_phase=blurry_phase,
                                          preserve_porosity=not args.no_preserve_porosity, seed=args.seed)
        report["blurry_values"] = blurry_values
        with man.timed("write"):
            vol, paths, _ = finish_volume_outputs(args.out, vol, report, stem="superimposed", fmt=args.format,
                                                  remove_isolated=args.remove_isolated, title="tomocell superimpose (DSS)")
        for k, p in paths.items():
            man.add_output(k, p)
        man.set_result(fractions=vol.fractions(), cbd_porosity=report["cbd_porosity_after"],
                       cbd_scan_porosity=report["cbd_scan_porosity"])
    fr = vol.fractions()
    print(f"DSS: pore {fr['pore']:.3f}, active {fr['active']:.3f}, CBD {fr['cbd']:.3f}; CBD porosity "
          f"{report['cbd_porosity_after']:.3f} (CBD scan {report['cbd_scan_porosity']:.3f}) -> {paths['volume']}")
    return 0
