"""Short human-readable outputs of the volume commands: a PNG of three orthogonal slices + a JSON report.

Phase colours: pore black, CBD grey-blue, active (NMC) light orange. Slices go through the middle of
the volume; the axis-0 (thickness) slices are labelled with the separator (top) and current collector
(bottom) sides. With a greyscale scan, its slices are shown above the labels, plus its histogram with the
thresholds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.atomic import atomic_path, write_json
from tomocell.microstructure.volume import Volume

PHASE_COLOURS = np.array([[0.0, 0.0, 0.0], [0.98, 0.70, 0.40], [0.45, 0.55, 0.75]])  # pore, active, cbd


def _planes(a: np.ndarray) -> list[tuple[str, np.ndarray]]:
    n0, n1, n2 = a.shape
    return [
        (f"axis 0 = {n0 // 2} (in-plane)", a[n0 // 2]),
        (f"axis 1 = {n1 // 2} (top: separator)", a[:, n1 // 2, :]),
        (f"axis 2 = {n2 // 2} (top: separator)", a[:, :, n2 // 2]),
    ]


def save_slices_png(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    grey: np.ndarray | None = None,
    thresholds: list[float] | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG with the three middle orthogonal slices of ``volume`` (and of ``grey`` if given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 if grey is not None else 1
    cols = 4 if grey is not None else 3
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    vs = volume.voxel_size_um
    extents = [(0, volume.shape[2] * vs[2], volume.shape[1] * vs[1], 0),
               (0, volume.shape[2] * vs[2], volume.shape[0] * vs[0], 0),
               (0, volume.shape[1] * vs[1], volume.shape[0] * vs[0], 0)]
    r = 0
    if grey is not None:
        lo, hi = np.percentile(grey, [0.5, 99.5])
        for j, (name, sl) in enumerate(_planes(grey)):
            im = axes[0, j].imshow(sl, cmap="gray", vmin=lo, vmax=hi, extent=extents[j], interpolation="nearest")
            axes[0, j].set_title(f"greyscale, {name}", fontsize=9)
            axes[0, j].set(xlabel="um", ylabel="um")
        fig.colorbar(im, ax=axes[0, 2], label="grey value", shrink=0.8)
        ax = axes[0, 3]
        ax.hist(grey.ravel()[:: max(1, grey.size // 2_000_000)], bins=256, color="0.4")
        for t in thresholds or []:
            ax.axvline(t, color="r")
        ax.set_title("histogram and thresholds (red)", fontsize=9)
        ax.set(xlabel="grey value", ylabel="voxels")
        ax.set_yscale("log")
        r = 1
        axes[1, 3].axis("off")
    fr = volume.fractions()
    for j, (name, sl) in enumerate(_planes(volume.labels)):
        ax = axes[r, j]
        ax.imshow(PHASE_COLOURS[sl], extent=extents[j], interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set(xlabel="um", ylabel="um")
    fig.suptitle((title + "\n" if title else "") + "pore {pore:.3f} (black), active {active:.3f} (orange), "
                 "CBD {cbd:.3f} (blue-grey)".format(**fr), fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)


def write_report(
    out_dir: str | os.PathLike[str],
    volume: Volume,
    report: dict[str, Any],
    *,
    name: str = "report",
    grey: np.ndarray | None = None,
    thresholds: list[float] | None = None,
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``<name>.json`` (report + fractions, shape, voxel size) and ``<name>_slices.png`` into ``out_dir``."""
    out = Path(out_dir)
    data = {"shape": list(volume.shape), "voxel_size_um": list(volume.voxel_size_um),
            "extent_um": list(volume.extent_um), "fractions": volume.fractions(), **report}
    js = write_json(out / f"{name}.json", data)
    png = save_slices_png(volume, out / f"{name}_slices.png", grey=grey, thresholds=thresholds, title=title)
    return {"report": js, "slices": png}


def finish_volume_outputs(
    out_dir: str | os.PathLike[str],
    volume: Volume,
    report: dict[str, Any],
    *,
    stem: str,
    fmt: str = "tif",
    remove_isolated: bool = False,
    grey: np.ndarray | None = None,
    thresholds: list[float] | None = None,
    title: str | None = None,
) -> tuple[Volume, dict[str, Path], dict[str, Any]]:
    """What every volume command ends with: isolated-cluster check (and optional removal), the volume file,
    the JSON report and the slice PNG. Returns (final volume, {name: path}, full report)."""
    from tomocell.errors import InputError
    from tomocell.microstructure.checks import find_isolated_clusters, remove_isolated_clusters
    from tomocell.microstructure.io import write_volume

    if fmt not in ("tif", "h5", "npy"):
        raise InputError(f"--format must be tif, h5 or npy, got {fmt!r}")
    checks = find_isolated_clusters(volume)
    if remove_isolated:
        volume = remove_isolated_clusters(volume)
        checks = {"before_removal": checks, "removed": volume.metadata["isolated_clusters_removed"],
                  "after_removal": find_isolated_clusters(volume)}
    full = {**report, "isolated_clusters": checks}
    out = Path(out_dir)
    vol_path = write_volume(volume, out / f"{stem}.{fmt}")
    paths = {"volume": vol_path, **write_report(out, volume, full, name="report", grey=grey, thresholds=thresholds,
                                                title=title)}
    return volume, paths, full
