"""Off-screen PyVista renders of the fields at one depth of discharge, one column per C-rate (Fig. 3).

Rows: state of lithiation in the particles, salt concentration c_e and |Li+ flux| in the pores
(electrode only, the homogenised separator slab is left out), and the Butler-Volmer current density
J_ct on the particle surfaces (each surface face takes the value of the nearest reaction facet of the
interface table; faces against CBD or other particles, with no reaction facet within 1 % of the box,
are shown grey). Colour ranges are fixed per row across rates so the columns compare: min-max over all
rates for SoL and c_e, the 1-99 % quantiles over all rates for |N| and J_ct (heavy-tailed). Mesh z
points up, so the separator side is on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tomocell.atomic import atomic_path
from tomocell.errors import InputError
from tomocell.headless import use_headless_backend
from tomocell.studies.analysis_run import FieldData, RunData

ROWS = (
    ("SoL", "particle state of lithiation (-)", "viridis"),
    ("c_e", "electrolyte concentration (mol/m^3)", "plasma"),
    ("N_mag", "Li+ flux magnitude (mol/m^2/s)", "inferno"),
    ("J_ct", "charge-transfer current density (A/m^2)", "coolwarm"),
)


def bar_format(lo: float, hi: float) -> str:
    """printf format for colour-bar ticks of the range [lo, hi]: one notation for all ticks, enough digits
    to tell the ticks apart (``%.3g`` printed 997 / 999 / 1e+03 on one bar)."""
    big = max(abs(lo), abs(hi))
    span = hi - lo
    if big == 0.0 or span <= 0.0:
        return "%.3g"
    if big >= 1e4 or big < 1e-2:
        return "%.2e"
    decimals = max(0, int(np.ceil(-np.log10(span / 10.0))))
    return f"%.{min(decimals, 6)}f"


def check_same_mesh(runs: list[RunData]) -> None:
    """Side-by-side comparisons need one electrode: InputError if the runs' meshes differ."""
    keys = {r.mesh_key() for r in runs}
    if len(keys) > 1:
        detail = "; ".join(f"{r.path}: cells {r.results.get('cells')}, L {r.thickness_um:.3g} um" for r in runs)
        raise InputError(f"runs are on different meshes, so their fields cannot be compared side by side ({detail})")


def to_grid(fd: FieldData) -> Any:
    import pyvista as pv

    n = fd.cells.shape[0]
    cells = np.hstack([np.full((n, 1), 4, dtype=np.int64), fd.cells]).ravel()
    grid = pv.UnstructuredGrid(cells, np.full(n, pv.CellType.TETRA, dtype=np.uint8), fd.points_um)
    for k, v in fd.point_data.items():
        grid.point_data[k] = v
    for k, v in fd.cell_data.items():
        grid.cell_data[k] = v
    return grid


def field_meshes(run: RunData, dod: float) -> dict[str, tuple[Any, str]]:
    """The four rendered meshes of one run: name -> (pyvista mesh, array name)."""
    from scipy.spatial import cKDTree

    snap = run.snapshot(dod)
    act = to_grid(snap.field("active"))
    ele = to_grid(snap.field("electrolyte"))
    zc = ele.cell_centers().points[:, 2]
    ele = ele.extract_cells(np.nonzero(zc <= run.thickness_um + 1e-9)[0])
    surf = act.extract_surface(algorithm="dataset_surface")
    tab = snap.interface()
    mid = np.column_stack([tab["x_um"], tab["y_um"], tab["z_um"]])
    d, idx = cKDTree(mid).query(surf.cell_centers().points)
    span = float(np.ptp(act.points, axis=0).max())
    j = tab["J_ct_A_m2"][idx].astype(float)
    j[d > 0.01 * span + 1e-12] = np.nan
    surf.cell_data["J_ct"] = j
    return {"SoL": (act, "SoL"), "c_e": (ele, "c_e"), "N_mag": (ele, "N_mag"), "J_ct": (surf, "J_ct")}


#: heavy-tailed fields get the 1-99 % quantiles over all rates (a few facets/cells would wash the rest out)
ROBUST = ("N_mag", "J_ct")


def _range(meshes: list[tuple[Any, str]], robust: bool = False) -> tuple[float, float]:
    vals = [np.asarray(m[a], float) for m, a in meshes if a in m.array_names]
    vals = [v[np.isfinite(v)] for v in vals]
    vals = [v for v in vals if v.size]
    if not vals:
        return 0.0, 1.0
    if robust:
        lo, hi = (float(q) for q in np.quantile(np.concatenate(vals), (0.01, 0.99)))
    else:
        lo, hi = min(float(v.min()) for v in vals), max(float(v.max()) for v in vals)
    return (lo, hi) if hi > lo else (lo - 0.5 * abs(lo) - 1e-12, hi + 0.5 * abs(hi) + 1e-12)


def render_fields(runs: list[RunData], dod: float, path: str | Path, *, col_px: int = 420, row_px: int = 380) -> dict[str, tuple[float, float]]:
    """Render the four field rows for every run (columns) into one PNG; returns the colour ranges used."""
    use_headless_backend()
    import pyvista as pv

    check_same_mesh(runs)
    pv.OFF_SCREEN = True
    meshes = [field_meshes(r, dod) for r in runs]
    clim = {name: _range([m[name] for m in meshes], name in ROBUST) for name, _, _ in ROWS}
    pl = pv.Plotter(shape=(len(ROWS), len(runs)), off_screen=True, window_size=(col_px * len(runs), row_px * len(ROWS)),
                    border=False)
    for j, (run, mm) in enumerate(zip(runs, meshes)):
        for i, (name, title, cmap) in enumerate(ROWS):
            pl.subplot(i, j)
            mesh, arr = mm[name]
            pl.add_mesh(mesh, scalars=arr, clim=clim[name], cmap=cmap, nan_color="lightgrey",
                        scalar_bar_args={"title": title, "vertical": False, "title_font_size": 14, "label_font_size": 11,
                                         "position_x": 0.15, "position_y": 0.02, "width": 0.7, "height": 0.08,
                                         "n_labels": 3, "fmt": bar_format(*clim[name])})
            pl.add_text(f"{run.c_rate:g}C, {100 * dod:.0f} % DoD: {title}", font_size=10, position="upper_left")
            _camera(pl)
    for bar in pl.scalar_bars.values():
        # VTK draws a horizontal bar's title over its tick labels in a small viewport; the field's
        # name is in each panel's heading instead
        bar.SetTitle("")
    _save(pl, path)
    return clim


def _camera(pl: Any) -> None:
    """Oblique view with mesh z (collector -> separator) pointing up."""
    pl.view_xz()
    pl.camera.Azimuth(-35)
    pl.camera.Elevation(20)
    pl.camera.Zoom(0.8)  # leaves the bottom strip (colour bar and its tick labels) clear of the mesh


def _save(pl: Any, path: str | Path) -> None:
    pl.set_background("white")
    with atomic_path(Path(path)) as tmp:
        pl.screenshot(str(tmp))
    pl.close()


def particle_cells(run: RunData) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(points um, tets, particle label per tet) of the active cells of the run's mesh file, or None when
    the run has no readable mesh file with particle tags (e.g. the built-in box cell)."""
    from tomocell.errors import InputError
    from tomocell.meshing import tags as T
    from tomocell.meshing.meshfile import read_mesh_arrays

    mesh_in = run.manifest.get("inputs", {}).get("mesh", {}).get("path")
    if not mesh_in or not Path(mesh_in).exists():
        return None
    try:
        m = read_mesh_arrays(mesh_in)
    except InputError:
        return None
    if m.particle is None:
        return None
    act = m.phase == T.ACTIVE
    return m.points, m.tets[act], m.particle[act].astype(np.int64)


def _peak_label(k: int, run: str, peak_sol: dict[str, list[float]] | None) -> str:
    sol = (peak_sol or {}).get(run, [])
    return f"peak {k + 1}: SoL {sol[k]:.2f}" if k < len(sol) else f"peak {k + 1}"


def render_peak_particles(runs: list[RunData], peak_of: dict[str, dict[int, int]], dod: float, path: str | Path,
                          *, col_px: int = 420, row_px: int = 420,
                          peak_sol: dict[str, list[float]] | None = None) -> bool:
    """Particles coloured by the SoL-histogram peak they belong to (Fig. 4e inset), one panel per rate.
    ``peak_of[run.name]`` maps particle label -> peak index; ``peak_sol[run.name][k]``: the SoL at
    peak k (named in the legend). Returns False if no run has a mesh file."""
    use_headless_backend()
    import pyvista as pv

    from tomocell.studies.analysis_figures import PEAK_COLOURS

    cells = [particle_cells(r) for r in runs]
    if all(c is None for c in cells):
        return False
    pv.OFF_SCREEN = True
    pl = pv.Plotter(shape=(1, len(runs)), off_screen=True, window_size=(col_px * len(runs), row_px), border=False)
    for j, (run, c) in enumerate(zip(runs, cells)):
        pl.subplot(0, j)
        if c is None:
            pl.add_text(f"{run.c_rate:g}C: no mesh file", font_size=10)
            continue
        pts, tets, lab = c
        peaks = np.array([peak_of[run.name].get(int(v), -1) for v in lab])
        for k in sorted(set(peaks.tolist()) - {-1}):
            sel = np.nonzero(peaks == k)[0]
            fd = FieldData(pts, tets[sel], {}, {})
            pl.add_mesh(to_grid(fd).extract_surface(algorithm="dataset_surface"),
                        color=PEAK_COLOURS[k % len(PEAK_COLOURS)], label=_peak_label(k, run.name, peak_sol))
        pl.add_text(f"{run.c_rate:g}C, {100 * dod:.0f} % DoD: particles grouped by the peak of the\n"
                    "particle state-of-lithiation histogram they fall in", font_size=9, position="upper_left")
        pl.add_legend(bcolor="white", size=(0.25, 0.2))
        _camera(pl)
    _save(pl, path)
    return True
