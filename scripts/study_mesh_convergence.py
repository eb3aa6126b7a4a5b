#!/usr/bin/env python
"""Mesh-convergence study (issue 16 item 6): how the discharge depends on the mesh of one electrode.

    .venv/bin/python scripts/study_mesh_convergence.py --out results/mesh-convergence
    .venv/bin/mpirun -n 2 .venv/bin/python scripts/study_mesh_convergence.py --out results/mesh-convergence

One synthetic electrode (``tomocell generate --preset demo`` in a smaller box, default 20 x 12 x 12 um
at 0.5 um voxels) is meshed several ways (default: the smoothed conformal route at blocks of 1, 2
and 3 voxels, the voxel staircase at blocks of 1 and 2; every coarsening fraction-preserving), and each
mesh is discharged at each rate (default 1C and 5C). Per mesh and rate it writes the delivered capacity,
the mean voltage and the area-weighted mean activation overpotential |eta_act| at 50 % DoD (from the
snapshot's interface table), next to the mesh's tet count, its active|pore area and pore tau (P1 FE on
the mesh, fidelity.json) and the voxel values. Outputs in ``--out``: ``mesh_convergence.csv``,
``mesh_convergence.md`` (the table), ``mesh_convergence.png``; one directory per mesh and run, reused on
a rerun (the runs resume from the pipeline's step cache), so an interrupted study continues.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

import tomocell as tc
from tomocell import mpi

#: route:blocks; "up2": the same voxels each split into 2^3 (a finer mesh of the same geometry)
DEFAULT_CASES = ("smoothed:up2", "smoothed:1", "smoothed:2", "voxel:1", "voxel:2")
LABELS = {"smoothed": "smoothed conformal", "voxel": "voxel staircase"}


def mean_activation_overpotential_V(run_dir: Path, dod: float = 0.5) -> float | None:
    """Area-weighted mean |eta_act| (V) over the particle/electrolyte facets at the ``dod`` snapshot."""
    f = run_dir / "fields" / f"dod{round(100 * dod):03d}" / "interface.npz"
    if not f.is_file():
        return None
    tab = np.load(f)
    w = tab["area_um2"]
    return float(np.sum(np.abs(tab["eta_V"]) * w) / np.sum(w))


def upsampled(volume, particles: np.ndarray, n: int):
    """``volume`` and its particle labels with every voxel split into ``n^3`` (same geometry, finer grid)."""
    from tomocell.microstructure.volume import Volume

    def up(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(np.repeat(a, n, 0), n, 1), n, 2)

    return Volume(up(volume.labels), tuple(v / n for v in volume.voxel_size_um)), up(particles)


def mesh_case(volume, particles: np.ndarray, route: str, blocks: str, separator_um: float, out: Path) -> Path:
    """The mesh of one case, reused when ``out/mesh.xdmf`` exists. Every rank builds it (its fidelity
    report's voxel tortuosity is a collective solve under mpirun); rank 0 writes it."""
    path = out / "mesh.xdmf"
    exists = mpi.world().bcast(path.is_file() if mpi.is_root() else None, root=0)
    if not exists:
        coarsen = 1
        if blocks.startswith("up"):
            volume, particles = upsampled(volume, particles, int(blocks[2:]))
        else:
            coarsen = int(blocks)
        res = tc.mesh(volume, route=route, coarsen=coarsen, separator_um=separator_um, area_tol=None,
                      particle_labels=particles)
        if mpi.is_root():
            res.save(out)
    mpi.world().barrier()
    return path


def run(args: argparse.Namespace) -> list[dict]:
    out = Path(args.out)
    from tomocell.microstructure.particles import label_particles

    vol = tc.generate(preset=args.preset, box_um=tuple(args.box_um), seed=args.seed)
    part = label_particles(vol)
    rows = []
    for case in args.cases:
        route, c = case.split(":")
        mdir = out / f"{route}-{c if c.startswith('up') else 'c' + c}"
        mpath = mesh_case(vol, part, route, c, args.separator_um, mdir)
        fid = json.loads((mdir / "fidelity.json").read_text()) if mpi.is_root() else None
        for rate in args.rates:
            r = tc.simulate(mpath, out=mdir / f"{rate:g}C", c_rate=rate, reuse=True, dod_snapshots=(0.5,))
            if not mpi.is_root():
                continue
            ap = fid["interface_areas"]["active|pore"]
            tr = (fid.get("transport") or {}).get("pore") or {}
            eta = mean_activation_overpotential_V(r.path)
            rows.append({
                "route": route, "element_um": vol.voxel_size_um[0] * (1 / int(c[2:]) if c.startswith("up") else int(c)),
                "c_rate": rate, "tets": fid["tets"],
                "capacity_mAh_g": r.capacity_mAh_g, "mean_voltage_V": r.summary["mean_voltage_V"],
                "mean_eta_act_mV_at_dod50": None if eta is None else 1e3 * eta,
                "active_pore_area_um2": ap["mesh_um2"], "active_pore_area_mc_um2": ap["marching_cubes_um2"],
                "pore_tau_mesh": (tr.get("mesh") or {}).get("tau"), "pore_tau_voxels": (tr.get("voxels") or {}).get("tau"),
                "wall_s": r.summary.get("wall_s"),
            })
            print(f"{case} {rate:g}C: {fid['tets']} tets, {r.capacity_mAh_g:.2f} mAh/g"
                  + ("" if eta is None else f", mean |eta_act| {1e3 * eta:.2f} mV"), flush=True)
    return rows


def write_outputs(rows: list[dict], out: Path) -> None:
    with open(out / "mesh_convergence.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    finest = min(r["element_um"] for r in rows if r["route"] == "smoothed") if any(
        r["route"] == "smoothed" for r in rows) else None
    ref = {r["c_rate"]: r for r in rows if r["route"] == "smoothed" and r["element_um"] == finest}
    lines = ["| mesh | tets | C-rate | capacity (mAh/g) | vs finest conformal | mean \\|eta_act\\| at 50 % DoD (mV) |"
             " active/pore area vs marching cubes | pore tau (mesh / voxels) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = ref.get(r["c_rate"])
        dev = f"{100 * (r['capacity_mAh_g'] / base['capacity_mAh_g'] - 1):+.2f} %" if base else "-"
        eta = "-" if r["mean_eta_act_mV_at_dod50"] is None else f"{r['mean_eta_act_mV_at_dod50']:.2f}"
        tau = "-" if r["pore_tau_mesh"] is None else f"{r['pore_tau_mesh']:.2f} / {r['pore_tau_voxels']:.2f}"
        lines.append(f"| {LABELS[r['route']]}, {r['element_um']:g} um cells | {r['tets']} | {r['c_rate']:g}C | "
                     f"{r['capacity_mAh_g']:.2f} | {dev} | {eta} | "
                     f"{100 * (r['active_pore_area_um2'] / r['active_pore_area_mc_um2'] - 1):+.1f} % | {tau} |")
    (out / "mesh_convergence.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows, out / "mesh_convergence.png")


def plot(rows: list[dict], path: Path) -> None:
    from tomocell.headless import use_headless_backend

    use_headless_backend()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    colours = plt.get_cmap("viridis")
    rates = sorted({r["c_rate"] for r in rows})
    for k, rate in enumerate(rates):
        col = colours(0.15 + 0.7 * k / max(1, len(rates) - 1))
        for route, marker, ls in (("smoothed", "o", "-"), ("voxel", "s", "--")):
            sel = sorted((r for r in rows if r["c_rate"] == rate and r["route"] == route), key=lambda r: r["tets"])
            if not sel:
                continue
            lab = f"{LABELS[route]}, {rate:g}C"
            axes[0].plot([r["tets"] for r in sel], [r["capacity_mAh_g"] for r in sel], marker=marker, ls=ls,
                         color=col, label=lab)
            eta = [(r["tets"], r["mean_eta_act_mV_at_dod50"]) for r in sel if r["mean_eta_act_mV_at_dod50"] is not None]
            if eta:
                axes[1].plot(*zip(*eta), marker=marker, ls=ls, color=col, label=lab)
    axes[0].set_ylabel("delivered capacity (mAh/g)")
    axes[1].set_ylabel("mean |activation overpotential|\nat 50 % DoD (mV)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("tetrahedra in the mesh")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Mesh convergence of a half-cell discharge (one synthetic electrode)")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--box-um", type=float, nargs=3, default=(20.0, 12.0, 12.0), metavar=("Z", "Y", "X"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="demo", help="generator preset (tomocell generate --preset; default demo)")
    p.add_argument("--rates", type=float, nargs="+", default=(1.0, 5.0))
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="route:blocks, e.g. smoothed:2 voxel:1")
    p.add_argument("--separator-um", type=float, default=15.0)
    args = p.parse_args(argv)
    rows = run(args)
    if mpi.is_root() and rows:
        write_outputs(rows, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
