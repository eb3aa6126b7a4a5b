"""3D renders of a segmented volume (the paper's Fig. 2a-b), off-screen with pyvista.

Left: the solid phases, active material (NMC, orange) and carbon-binder domain (CBD, blue-grey), as the
surfaces of their voxel sets. Right: the pore space alone. Axis 0 (depth from the separator) points up,
so the separator face is on top; the axes are in um.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tomocell.atomic import atomic_path
from tomocell.headless import use_headless_backend
from tomocell.microstructure.report_slices import PHASE_COLOURS
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


def _phase_surface(volume: Volume, code: int):  # -> pyvista.PolyData | None
    """Outer surface of the voxels of one phase code (um), or None if the phase is empty."""
    import pyvista as pv

    if not np.any(volume.labels == code):
        return None
    # axis 0 (depth from the separator) on z, reversed, so the separator is on top
    lab = volume.labels[::-1].transpose(1, 2, 0)
    vs = volume.voxel_size_um
    grid = pv.ImageData(dimensions=tuple(n + 1 for n in lab.shape), spacing=(vs[1], vs[2], vs[0]))
    grid.cell_data["phase"] = np.ravel(lab, order="F")
    return grid.threshold((code - 0.5, code + 0.5), scalars="phase").extract_surface(algorithm="dataset_surface")


def render_stride(shape: tuple[int, ...], max_voxels: int = 2_000_000) -> int:
    """Voxel stride that keeps a render under ``max_voxels`` (a paper-size 340 x 340 x 400 scan: 3, 1.7 M voxels)."""
    return max(1, int(np.ceil((float(np.prod(shape)) / max_voxels) ** (1.0 / 3.0))))


def render_volume_3d(volume: Volume, path: str | Path, *, window_px: tuple[int, int] = (1400, 650),
                     max_voxels: int = 2_000_000) -> Path:
    """Write a two-panel PNG: (a) active + CBD surfaces, (b) pore space; returns ``path``.

    Volumes over ``max_voxels`` are drawn from every k-th voxel (a picture, not a measurement; the
    legend's fractions are those of the full volume)."""
    use_headless_backend()
    import pyvista as pv

    pv.OFF_SCREEN = True
    fr = volume.fractions()
    k = render_stride(volume.shape, max_voxels)
    if k > 1:
        volume = Volume(labels=volume.labels[::k, ::k, ::k], voxel_size_um=tuple(k * v for v in volume.voxel_size_um))
    pl = pv.Plotter(shape=(1, 2), off_screen=True, window_size=window_px, border=False)
    panels = (
        ("(a) solid phases", ((ACTIVE, "active NMC", fr["active"]), (CBD, "CBD", fr["cbd"]))),
        ("(b) pore space", ((PORE, "pore", fr["pore"]),)),
    )
    for j, (title, phases) in enumerate(panels):
        pl.subplot(0, j)
        legend = []
        for code, name, frac in phases:
            surf = _phase_surface(volume, code)
            colour = PHASE_COLOURS[code] if code != PORE else (0.30, 0.55, 0.85)
            if surf is not None:
                pl.add_mesh(surf, color=tuple(colour), smooth_shading=False)
            legend.append([f"{name} ({100 * frac:.1f} %)", tuple(colour)])
        pl.add_legend(legend, bcolor="white", size=(0.42, 0.10), loc="lower left", face="rectangle")
        pl.add_text(title + " - separator on top", font_size=11, position="upper_left", color="black")
        pl.show_bounds(xtitle="axis 1 (um)", ytitle="axis 2 (um)", ztitle="height above collector (um)",
                       font_size=12, color="black", fmt="%.0f")
        pl.view_isometric()
        pl.camera.Zoom(0.8)
    pl.set_background("white")
    with atomic_path(Path(path)) as tmp:
        pl.screenshot(str(tmp))
    pl.close()
    return Path(path)
