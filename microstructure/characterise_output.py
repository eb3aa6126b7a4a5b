"""Files of a characterisation run: metrics.json, CSV tables, fields.vti, PNG figures, report.md.

Called by :func:`tomocell.microstructure.characterise.characterise` inside an atomic directory, so a
failure leaves nothing behind. Figures follow the panels of the paper (Fig. 2c-l, Fig. 5d, 5i).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.atomic import write_json
from tomocell.microstructure.volume import PORE, Volume


def write_csv(path: Path, columns: dict[str, Any]) -> None:
    """Columns of equal length (arrays or lists; None -> empty cell) as CSV with a header row."""
    keys = list(columns)
    cols = [list(np.asarray(columns[k], dtype=object)) for k in keys]
    n = len(cols[0]) if cols else 0
    if any(len(c) != n for c in cols):
        raise ValueError(f"columns of unequal length in {path.name}")
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        for i in range(n):
            row = []
            for c in cols:
                v = c[i]
                if v is None or (isinstance(v, float) and not np.isfinite(v)):
                    row.append("")
                elif isinstance(v, (float, np.floating)):
                    row.append(f"{float(v):.6g}")
                elif isinstance(v, (np.bool_, bool)):
                    row.append(int(v))
                else:
                    row.append(v)
            w.writerow(row)


def write_fields(volume: Volume, res: Any, path: Path) -> None:
    """Cell-data fields on a VTK ImageData (.vti): x, y, z = axes 0, 1, 2; spacing in um."""
    import pyvista as pv

    grid = pv.ImageData(dimensions=tuple(n + 1 for n in volume.shape), spacing=volume.voxel_size_um)

    def put(name: str, arr: np.ndarray) -> None:
        grid.cell_data[name] = np.ravel(arr, order="F")

    put("phase", volume.labels)
    if res.local_thickness_um is not None:
        put("local_thickness_um", res.local_thickness_um)
    if res.particle_labels is not None:
        put("particle_label", res.particle_labels)
    if res.travel_distance_um is not None:
        put("travel_distance_um", res.travel_distance_um)
    for ax, fm in res.flux_maps.items():
        put(f"flux_axis{ax}_rel", fm)
    grid.save(str(path), binary=True)


# ---------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _phase_rgb(lab2d: np.ndarray) -> np.ndarray:
    colours = np.array([[0.05, 0.05, 0.05], [0.85, 0.85, 0.85], [0.45, 0.25, 0.55]])
    return colours[lab2d]


def _extent(volume: Volume, a: int, b: int) -> list[float]:
    return [0, volume.extent_um[b], volume.extent_um[a], 0]


def figures(volume: Volume, res: Any, out: Path) -> dict[str, str]:
    """Write the PNG figures; return {file name: caption}."""
    plt = _plt()
    caps: dict[str, str] = {}
    lab = volume.labels
    mid2 = volume.shape[2] // 2
    ext = _extent(volume, 0, 1)

    def save(fig: Any, name: str, caption: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        caps[name] = caption

    fig, ax = plt.subplots(1, 2, figsize=(10, 4.5))
    ax[0].imshow(_phase_rgb(lab[:, :, mid2]), extent=ext)
    ax[0].set(title="phases (section through thickness)", xlabel="axis 1 (um)", ylabel="depth from separator (um)")
    ax[1].imshow(_phase_rgb(lab[lab.shape[0] // 2]), extent=_extent(volume, 1, 2))
    ax[1].set(title="phases (in-plane section, mid depth)", xlabel="axis 2 (um)", ylabel="axis 1 (um)")
    f = volume.fractions()
    from matplotlib.patches import Patch

    colours = _phase_rgb(np.arange(3))
    # attached to an axes (not the figure) so that tight_layout makes room for it below the x labels
    ax[0].legend(handles=[Patch(facecolor=colours[i], edgecolor="k", label=f"{name} ({100 * f[key]:.1f} %)")
                          for i, (key, name) in enumerate((("pore", "pore"), ("active", "active NMC"), ("cbd", "CBD")))],
                 loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=3, frameon=False)
    save(fig, "fig_phases.png", f"Segmented phases (black pore {f['pore']:.3f}, grey active {f['active']:.3f}, "
         f"purple CBD {f['cbd']:.3f}); separator at the top of the left panel (cf. Fig. 2b).")
    from tomocell.microstructure.render3d import render_volume_3d

    render_volume_3d(volume, out / "fig_volume_3d.png")
    caps["fig_volume_3d.png"] = (f"3D view of the segmented volume (cf. Fig. 2a-b): (a) active NMC and CBD surfaces, "
                                 f"(b) the pore space ({100 * f['pore']:.1f} %); separator on top, axes in um.")

    if res.local_thickness_um is not None:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4.5))
        lt = np.where(lab[:, :, mid2] == PORE, res.local_thickness_um[:, :, mid2], np.nan)
        im = ax[0].imshow(lt, extent=ext, cmap="viridis")
        fig.colorbar(im, ax=ax[0], label="pore diameter (um)")
        ax[0].set(title="local thickness of the pore", xlabel="axis 1 (um)", ylabel="depth (um)")
        t = res.tables["pore_size_distribution"]
        ax[1].bar(t["diameter_lo_um"], t["pore_volume_fraction"], width=np.asarray(t["diameter_hi_um"]) - np.asarray(t["diameter_lo_um"]),
                  align="edge", edgecolor="k", linewidth=0.3)
        m = res.metrics["pore_size"]
        for k in ("d10_um", "d50_um", "d90_um"):
            ax[1].axvline(m[k], color="k", ls="--", lw=0.8)
        ax[1].set(title="pore size distribution (volume weighted)", xlabel="local thickness (um)", ylabel="pore volume fraction")
        save(fig, "fig_pore_size.png", f"Local thickness of the pore phase (cf. Fig. 2c) and its volume-weighted distribution; "
             f"D10/D50/D90 = {m['d10_um']:.2f}/{m['d50_um']:.2f}/{m['d90_um']:.2f} um (dashed).")

    if res.flux_maps:
        n = len(res.flux_maps)
        fig, ax = plt.subplots(1, n + 1, figsize=(4.5 * (n + 1), 4.2))
        for i, (a, fm) in enumerate(sorted(res.flux_maps.items())):
            other = [k for k in range(3) if k != a]
            cut = other[-1]
            sl = [slice(None)] * 3
            sl[cut] = volume.shape[cut] // 2
            img = fm[tuple(sl)]
            im = ax[i].imshow(np.where(img > 0, img, np.nan), cmap="inferno",
                              extent=_extent(volume, *[k for k in range(3) if k != cut]), vmax=np.nanpercentile(np.where(img > 0, img, np.nan), 99))
            fig.colorbar(im, ax=ax[i], label="|J| / J_mean")
            ra, ca = [k for k in range(3) if k != cut]
            ax[i].set(title=f"diffusive flux, flow along axis {a}", xlabel=f"axis {ca} (um)", ylabel=f"axis {ra} (um)")
        tau = res.metrics["tortuosity"]["pore"]
        names = [k for k in tau if k.startswith("axis")]
        vals = [tau[k]["tau"] if tau[k]["tau"] is not None else 0.0 for k in names]
        ax[-1].bar(names, vals, color="tab:blue")
        for j, k in enumerate(names):
            ax[-1].text(j, vals[j], "not percolating" if tau[k]["tau"] is None else f"{vals[j]:.2f}", ha="center", va="bottom")
        ax[-1].set(title="pore tortuosity factor", ylabel="tau")
        save(fig, "fig_flux_tortuosity.png", "Steady diffusive flux in the pore (flux density over its box mean; cf. Fig. 2d) "
             "and the tortuosity factor tau = eps D0/D_eff in each direction (cf. Fig. 2j).")

    if res.particle_labels is not None:
        t = res.tables["particles"]
        fig, ax = plt.subplots(2, 2, figsize=(10, 9))
        rng = np.random.default_rng(0)
        cmap = np.vstack([[0, 0, 0], rng.uniform(0.2, 1.0, (int(res.particle_labels.max()), 3))])
        ax[0, 0].imshow(cmap[res.particle_labels[:, :, mid2]], extent=ext)
        ax[0, 0].set(title="separated particles", xlabel="axis 1 (um)", ylabel="depth (um)")
        d = np.asarray(t["equivalent_diameter_um"])
        sc = ax[0, 1].scatter(t["centroid_depth_um"], d, c=d, s=12, cmap="viridis")
        fig.colorbar(sc, ax=ax[0, 1], label="diameter (um)")
        ax[0, 1].set(title="particle size vs depth", xlabel="distance from separator (um)", ylabel="equivalent diameter (um)")
        sc = ax[1, 0].scatter(d, t["sphericity"], s=4 + 60 * (d / max(d.max(), 1e-9)), c=t["sphericity"], cmap="plasma")
        ax[1, 0].set(title="sphericity (minor/major axis) vs size", xlabel="equivalent diameter (um)", ylabel="sphericity")
        ax[1, 1].remove()
        pax = fig.add_subplot(2, 2, 4, projection="polar")
        pax.scatter(np.radians(t["azimuth_deg"]), 90.0 - np.asarray(t["elevation_deg"]), s=8, c=d, cmap="viridis")
        pax.set_title("major-axis orientation\n(angle: azimuth; radius: 90 - elevation, deg)")
        pax.set_rmax(90)
        m = res.metrics["particles"]
        save(fig, "fig_particles.png", f"{m['count']} particles separated by watershed (cf. Fig. 2e); size vs depth (2g), sphericity vs "
             f"size (2h), orientation map (2i). Volume-weighted D10/D50/D90 = {m['d10_um']:.2f}/{m['d50_um']:.2f}/{m['d90_um']:.2f} um.")

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for a in range(3):
        p = res.tables[f"slice_profile_axis{a}"]
        ax[0].plot(p["position_um"], p["pore_fraction"], label=f"axis {a}")
        ax[1].plot(p["position_um"], p["mean_pore_diameter_um"], label=f"axis {a}")
    ax[0].set(xlabel="position along axis (um; axis 0 from the separator)", ylabel="slice porosity")
    ax[1].set(xlabel="position along axis (um)", ylabel="mean pore diameter (um)")
    ax[0].legend()
    save(fig, "fig_slice_profiles.png", "Slice-by-slice porosity and mean pore size along the three axes (cf. Fig. 2k).")

    if "depth_profile" in res.tables:
        rows = res.tables["depth_profile"]
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        z = np.asarray(rows["depth_um"])
        for k in rows:
            if k.startswith("tau_axis"):
                a = k[-1]
                ax[0].plot(z, [np.nan if v is None else v for v in rows[k]], "o-", label=f"axis {a}")
                ax[1].plot(z, [np.nan if v is None else v for v in rows[f"p_axis{a}"]], "o-", label=f"axis {a}")
        ax[0].set(xlabel="slab depth from separator (um)", ylabel="tortuosity factor of the slab")
        ax[1].set(xlabel="slab depth from separator (um)", ylabel="Bruggeman exponent p")
        ax[0].legend()
        save(fig, "fig_depth_profile.png", "Tortuosity factor of the slab from the separator to depth z (cf. Fig. 2j) and its "
             "Bruggeman exponent p = -ln tau / ln eps (cf. Fig. 2l); missing points: not percolating.")

    if res.travel_distance_um is not None:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4.5))
        im = ax[0].imshow(res.travel_distance_um[:, :, mid2], extent=ext, cmap="magma")
        fig.colorbar(im, ax=ax[0], label="travel distance (um)")
        ax[0].set(title="geodesic distance from separator", xlabel="axis 1 (um)", ylabel="depth (um)")
        b = res.tables["reaction_sites_by_depth"]
        for name, col in (("tau_electrode", "tab:green"), ("tau_pore", "tab:blue")):
            ax[1].plot(b["depth_um"], b[f"{name}_mean"], color=col,
                       label={"tau_electrode": r"$\tau_{electrode}$ (geodesic / depth)",
                              "tau_pore": r"$\tau_{pore}$ (geodesic / straight line)"}[name])
            ax[1].fill_between(b["depth_um"], b[f"{name}_p10"], b[f"{name}_p90"], color=col, alpha=0.2)
        ax[1].set(xlabel="distance from separator (um)", ylabel="local tortuosity", ylim=(0.9, None))
        ax[1].legend()
        save(fig, "fig_travel.png", "Travel distance through the pore from the separator by fast marching (cf. Fig. 5d) and the "
             "reaction-site tortuosities tau_pore (geodesic / straight line) and tau_electrode (geodesic / depth) vs depth: "
             "mean and 10-90 % band (cf. Fig. 5i).")

    if "rve" in res.tables:
        rows = res.tables["rve"]
        fig, ax = plt.subplots(1, 1, figsize=(6, 4))
        e = np.asarray(rows["edge_fraction"])
        names = {"porosity": "porosity", "active_pore_area_faces_per_um": "active/pore specific area",
                 "mean_pore_diameter_um": "mean pore diameter", "particle_d50_um": "particle D50",
                 "tau_pore_axis0": "pore tortuosity factor (through thickness)"}
        for k, name in names.items():
            v = np.array([np.nan if x is None else x for x in rows[k]], dtype=float)
            if np.isfinite(v).any() and np.isfinite(v[-1]) and v[-1] != 0:
                ax.plot(e, v / v[-1], "o-", label=name)
        ax.set(xlabel="sub-volume edge / full edge", ylabel="metric / full-volume value")
        ax.axhline(1.0, color="k", lw=0.6)
        ax.legend(fontsize=7)
        save(fig, "fig_rve.png", "Representativeness: metrics on growing centred sub-volumes, relative to the full volume.")
    return caps


def _report(volume: Volume, res: Any, caps: dict[str, str], tables: list[str]) -> str:
    m = res.metrics
    lines = ["# Microstructure characterisation", ""]
    v = m["volume"]
    lines += [f"Volume {v['shape']} voxels of {v['voxel_size_um']} um ({', '.join(f'{x:.1f}' for x in v['extent_um'])} um); "
              "axis 0 = through-thickness, index 0 = separator side.", "", "## Headline metrics", "",
              "| metric | value |", "| --- | --- |"]
    f = m["phase_fractions"]
    lines += [f"| porosity / active / CBD fraction | {f['pore']:.3f} / {f['active']:.3f} / {f['cbd']:.3f} |"]
    if "pore_size" in m:
        p = m["pore_size"]
        lines.append(f"| pore diameter D10/D50/D90 (um) | {p['d10_um']:.2f} / {p['d50_um']:.2f} / {p['d90_um']:.2f} |")
    if "particles" in m:
        p = m["particles"]
        lines.append(f"| particles: count, D10/D50/D90 (um) | {p['count']}, {p['d10_um']:.2f} / {p['d50_um']:.2f} / {p['d90_um']:.2f} |")
        lines.append(f"| mean sphericity | {p['mean_sphericity']:.3f} |")
    if "tortuosity" in m:
        for phase, entries in m["tortuosity"].items():
            for k, e in entries.items():
                if k.startswith("axis"):
                    val = "not percolating (infinite)" if e["tau"] is None else f"{e['tau']:.3f} (p = {e['bruggeman_p']:.2f}, flux balance {e['flux_balance_error']:.1e})"
                    lines.append(f"| tau {phase} {k} | {val} |")
    if "travel" in m:
        t = m["travel"]
        lines.append(f"| median tau_pore / tau_electrode at reaction sites | {t['median_tau_pore']:.3f} / {t['median_tau_electrode']:.3f} |")
        if t["far_face_travel_over_thickness"] is not None:
            lines.append(f"| mean travel distance at the far face / thickness | {t['far_face_travel_over_thickness']:.3f} |")
    if "specific_areas" in m:
        for k, e in m["specific_areas"].items():
            lines.append(f"| specific area {k} (1/um): marching cubes, voxel faces | {e['marching_cubes_per_um']:.4f}, {e['voxel_faces_per_um']:.4f} |")
    if "percolation" in m:
        for k, e in m["percolation"].items():
            if e.get("percolating_fraction_axis0") is not None:
                lines.append(f"| {k}: percolating fraction axis 0/1/2, isolated | "
                             f"{e['percolating_fraction_axis0']:.3f} / {e['percolating_fraction_axis1']:.3f} / "
                             f"{e['percolating_fraction_axis2']:.3f}, {e['isolated_fraction']:.3f} |")
    lines += ["", "## Figures", ""]
    for name, cap in caps.items():
        lines += [f"![{name}]({name})", "", f"*{cap}*", ""]
    lines += ["## Files", "", "- `metrics.json`: every scalar metric", "- `fields.vti`: fields for ParaView (cell data)"]
    lines += [f"- `{t}`" for t in tables]
    lines.append("")
    return "\n".join(lines)


def write_all(volume: Volume, res: Any, out: Path, *, with_fields: bool = True, with_figures: bool = True) -> None:
    out = Path(out)
    write_json(out / "metrics.json", res.metrics)
    written = []
    for name, cols in res.tables.items():
        write_csv(out / f"{name}.csv", cols)
        written.append(f"{name}.csv")
    if res.reaction_sites is not None:
        np.savez_compressed(out / "reaction_sites.npz", **res.reaction_sites)
        written.append("reaction_sites.npz")
    if with_fields:
        write_fields(volume, res, out / "fields.vti")
    caps = figures(volume, res, out) if with_figures else {}
    (out / "report.md").write_text(_report(volume, res, caps, written))

