"""``tomocell segment``: greyscale scan -> three-phase volume (see :mod:`tomocell.microstructure.segmentation`)."""

from __future__ import annotations

import argparse

from tomocell.cliutil import add_out, add_voxel_size, existing_file
from tomocell.config import parse_voxel_size
from tomocell.errors import InputError
from tomocell.manifest import run_manifest

HELP = "segment a greyscale CT scan into pore, CBD and active material"
DESCRIPTION = (
    "Segment a greyscale X-ray CT volume (multi-page TIFF, TIFF-slice directory, RAW, NPY or HDF5) into pore, "
    "carbon-binder domain and active material by grey-value thresholds: multi-Otsu unless --thresholds are "
    "given, after optional median or non-local-means denoising. Classes by increasing grey value: pore < CBD < "
    "active. Writes the labelled volume, report.json (histogram, thresholds, fractions, their sensitivity to "
    "+/- a few grey levels, isolated clusters), report_slices.png and run.json. Axis 0 of the file must be the "
    "electrode thickness with the separator at index 0."
)
EPILOG = """examples:
  tomocell segment scan.tif --voxel-size 0.126 --out results/seg
  tomocell segment slices/ --voxel-size 0.126 --denoise median --out results/seg
  tomocell segment scan.raw --raw-shape 400,512,512 --raw-dtype uint16 --voxel-size 0.126 --thresholds 9000,21000 --out results/seg
  tomocell segment lowres.h5 --dataset /exchange/data --classes 2 --out results/seg2   # pore+CBD blurry, for DSS
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scan", help="greyscale volume: .tif/.tiff, directory of TIFF slices, .raw, .npy, .h5/.hdf5")
    add_out(parser, what="the labelled volume and its report")
    add_voxel_size(parser)
    parser.add_argument("--denoise", choices=("none", "median", "nlmeans"), default="none",
                        help="denoising before thresholding (default none)")
    parser.add_argument("--thresholds", metavar="T1[,T2]", default=None,
                        help="manual grey-value thresholds (classes-1 increasing values); default multi-Otsu")
    parser.add_argument("--classes", type=int, choices=(2, 3), default=3,
                        help="3: pore, CBD, active (default); 2: pore-or-blurry and active")
    parser.add_argument("--sensitivity-levels", type=float, default=3.0,
                        help="threshold shift in grey levels for the sensitivity table (default 3)")
    parser.add_argument("--dataset", default=None, help="HDF5 dataset path")
    parser.add_argument("--raw-shape", metavar="N0,N1,N2", default=None, help="shape of a .raw file")
    parser.add_argument("--raw-dtype", default=None, help="dtype of a .raw file (uint8, uint16, float32, ...)")
    parser.add_argument("--byte-order", choices=("little", "big"), default="little", help="byte order of a .raw file")
    parser.add_argument("--remove-isolated", action="store_true",
                        help="remove pore not connected to the separator face and solid not connected to the current collector")
    parser.add_argument("--format", choices=("tif", "h5", "npy"), default="tif", help="output format (default tif)")


def run(args: argparse.Namespace) -> int:
    from tomocell.microstructure.io import read_greyscale
    from tomocell.microstructure.report_slices import finish_volume_outputs
    from tomocell.microstructure.segmentation import segment_greyscale

    scan = existing_file(args.scan, "greyscale scan")
    th = None
    if args.thresholds is not None:
        try:
            th = [float(t) for t in str(args.thresholds).split(",") if t.strip()]
        except ValueError:
            raise InputError(f"--thresholds: {args.thresholds!r} is not comma-separated numbers") from None
    params = {k: getattr(args, k) for k in ("voxel_size", "denoise", "thresholds", "classes", "sensitivity_levels",
                                           "dataset", "raw_shape", "raw_dtype", "byte_order", "remove_isolated", "format")}
    with run_manifest("segment", args.out, params, guard=True, overwrite=args.overwrite) as man:
        man.add_input("scan", scan)
        with man.timed("read"):
            grey, vs = read_greyscale(scan, voxel_size_um=parse_voxel_size(args.voxel_size), dataset=args.dataset,
                                      raw_shape=args.raw_shape, raw_dtype=args.raw_dtype, byte_order=args.byte_order)
        if vs is None:
            raise InputError(f"voxel size of {scan} is unknown (not stored in the file): give --voxel-size UM")
        with man.timed("segment"):
            vol, report = segment_greyscale(grey, vs, denoise=args.denoise, thresholds=th, classes=args.classes,
                                            sensitivity_levels=args.sensitivity_levels)
        vol.metadata["source"] = str(scan)
        with man.timed("write"):
            vol, paths, full = finish_volume_outputs(args.out, vol, report, stem="segmented", fmt=args.format,
                                                     remove_isolated=args.remove_isolated, grey=grey,
                                                     thresholds=report["thresholds"], title=f"tomocell segment {scan.name}")
        for k, p in paths.items():
            man.add_output(k, p)
        man.set_result(fractions=vol.fractions(), thresholds=report["thresholds"],
                       max_fraction_change=report["sensitivity"]["max_abs_fraction_change"])
    fr = vol.fractions()
    print(f"segmented {scan.name}: thresholds {', '.join(f'{t:.4g}' for t in report['thresholds'])}; "
          f"pore {fr['pore']:.3f}, active {fr['active']:.3f}, CBD {fr['cbd']:.3f} -> {paths['volume']}")
    return 0
