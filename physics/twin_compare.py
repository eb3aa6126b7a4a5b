"""The twin of a finished ``tomocell simulate`` run: DFN at the same C-rate, side by side.

The twin runs the run's first constant-current discharge step (:func:`twin_protocol`, read from the
expanded experiment in run.json; a plain ``--c-rate`` run is the experiment of its options) with the same
voltage end and duration, and compares it with that step of the run. A run whose first step (after rests)
is anything else is refused, naming the step.

Output directory ``OUT/`` of :func:`twin_of_run` / ``tomocell twin SIM_DIR --out OUT``::

    OUT/run.json          manifest: the simulate run it twins, geometry, tortuosity source, results
    OUT/timeseries.csv    the DFN discharge with simulate's column names (t_s, voltage_V, current_A,
                          current_density_A_m2, capacity_Ah, capacity_mAh_g, capacity_mAh_cm2, dod)
    OUT/comparison.csv    one row per model (resolved, dfn): c_rate, capacity_mAh_g, energy_Wh_kg
                          (per active mass), mean_voltage_V, and voltage_rmse_mV / capacity_diff_rel
                          of the DFN against the resolved run (voltage against capacity, common range)
    OUT/overlay.png       voltage against capacity, both models
    OUT/geometry.json     the measured effective geometry (TwinGeometry.as_dict)
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.physics.parameters import Parameters, from_dict

TWIN_COLUMNS = ("t_s", "voltage_V", "current_A", "current_density_A_m2", "capacity_Ah", "capacity_mAh_g",
                "capacity_mAh_cm2", "dod")


def read_run(sim_dir: str | Path) -> dict[str, Any]:
    """The run.json of a finished simulate run (InputError naming what is wrong otherwise)."""
    d = Path(sim_dir)
    man = d / "run.json"
    if not man.is_file():
        raise InputError(f"{d}: no run.json - not a `tomocell simulate` run directory")
    try:
        run = json.loads(man.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{man}: not valid JSON ({exc})") from None
    if run.get("stage") != "simulate":
        raise InputError(f"{d}: run.json is of stage {run.get('stage')!r}, not a `tomocell simulate` run")
    if run.get("status") != "ok":
        raise InputError(f"{d}: the simulate run did not finish (status {run.get('status')!r})")
    if not (d / "timeseries.csv").is_file():
        raise InputError(f"{d}: timeseries.csv is missing")
    return run


def run_mesh_spec(run: dict[str, Any], sim_dir: Path) -> str:
    """The mesh the run used (box:... or a path resolved against the run's working directory)."""
    spec = str(run.get("parameters", {}).get("mesh", ""))
    if spec.startswith("box:"):
        return spec
    path = Path(spec)
    if not path.is_absolute():
        path = Path(run.get("cwd", ".")) / path
    if not path.is_file():
        raise InputError(f"{sim_dir}: the run's mesh {spec!r} is gone ({path} does not exist)")
    return str(path)


def _fidelity_transport(mdir: Path) -> dict[str, Any]:
    """The pore transport record of the mesh's fidelity report ({} when absent)."""
    try:
        rep = json.loads((mdir / "fidelity.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return (rep.get("transport") or {}).get("pore") or {}


def mesh_tau(mesh_spec: str) -> float | None:
    """The through-thickness pore tortuosity factor measured on the mesh's own pore tets at meshing
    (``fidelity.json``; what the resolved model's electrolyte sees), None when not recorded."""
    if mesh_spec.startswith("box:"):
        return None
    tau = (_fidelity_transport(Path(mesh_spec).parent).get("mesh") or {}).get("tau")
    return float(tau) if isinstance(tau, (int, float)) and math.isfinite(tau) else None


def measured_tau(mesh_spec: str) -> tuple[float, str]:
    """Through-thickness pore tortuosity factor of the image the mesh was made from (axis 0), with where
    it comes from. Followed from the mesh's directory:

    * the mesh's ``run.json`` names its source volume (``tomocell mesh VOLUME``): measured on that volume
      by :func:`tomocell.microstructure.tortuosity.tortuosity_factor` (InputError naming the file when
      it is gone: no silent fallback to Bruggeman);
    * otherwise (a study's structure, the demo's mesh) the value measured on the voxels at meshing,
      recorded in the mesh's ``fidelity.json``;
    * neither: InputError (pass ``--tau`` or ``--bruggeman B``)."""
    mdir = Path(mesh_spec).parent
    try:
        mrun = json.loads((mdir / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        mrun = {}
    src = ((mrun.get("inputs") or {}).get("volume") or {}).get("path")
    if src:
        if not Path(src).exists():
            raise InputError(f"the volume the mesh {mesh_spec} was made from is gone ({src} does not exist): "
                             "the twin measures its tortuosity factor on it (or pass --tau TAU / --bruggeman B)")
        from tomocell.config import parse_labels
        from tomocell.microstructure.io import read_volume
        from tomocell.microstructure.tortuosity import tortuosity_factor

        mp = mrun.get("parameters", {})
        vs = mp.get("voxel_size")
        labels = mp.get("labels")
        vol = read_volume(src, voxel_size_um=None if vs in (None, "None") else vs,
                          labels=None if labels in (None, "None") else parse_labels(labels))
        r = tortuosity_factor(vol, "pore", 0, raise_if_not_percolating=False)
        if r.tau is None:
            raise InputError(f"the pores of {src} do not percolate through the thickness: no tortuosity factor "
                             "for the twin (pass --tau TAU or --bruggeman B)")
        return float(r.tau), f"measured on {src} (pore, through thickness)"
    vox = _fidelity_transport(mdir).get("voxels") or {}
    if isinstance(vox.get("tau"), (int, float)) and math.isfinite(vox["tau"]):
        return float(vox["tau"]), f"measured on the voxels the mesh was made from (pore, through thickness; {mdir / 'fidelity.json'})"
    raise InputError(f"the mesh {mesh_spec} records neither its source volume (run.json) nor an image-measured "
                     "tortuosity factor (fidelity.json transport): pass --tau TAU (e.g. from `tomocell characterise`) "
                     "or --bruggeman B")


def resolve_tau(mesh_spec: str, params: Parameters, tau: float | None,
                bruggeman: float | str | None) -> tuple[float | None, str, float | None]:
    """(tau, where it comes from, tau of the mesh's own pores or None): ``--tau``; none with a numeric
    ``--bruggeman``; the set's Bruggeman exponent for a ``box:`` mesh (no image behind it); else
    :func:`measured_tau`. Called before anything is written: a missing volume leaves nothing behind."""
    if tau is not None and not (math.isfinite(tau) and tau >= 1):
        raise InputError(f"--tau must be a finite tortuosity factor >= 1, got {tau}")
    if isinstance(bruggeman, str) and bruggeman != "fit":
        raise InputError(f"--bruggeman must be a number or 'fit', got {bruggeman!r}")
    t_mesh = mesh_tau(mesh_spec)
    if tau is not None:
        return float(tau), "--tau", t_mesh
    if isinstance(bruggeman, (int, float)):
        return None, f"Bruggeman porosity^{bruggeman:g} (--bruggeman)", t_mesh
    if mesh_spec.startswith("box:"):
        if bruggeman == "fit":
            raise InputError("--bruggeman fit needs a measured tortuosity factor: a box: mesh has no image (pass --tau)")
        return None, f"Bruggeman porosity^{params.sep_bruggeman:g} (a box: mesh has no image)", t_mesh
    t, src = measured_tau(mesh_spec)
    return t, src, t_mesh


def run_parameters(run: dict[str, Any]) -> Parameters:
    raw = run.get("parameters", {}).get("parameters")
    if not isinstance(raw, dict):
        raise InputError("run.json holds no resolved parameter set")
    if run["parameters"].get("li_kinetics", "butler-volmer") != "butler-volmer":
        raise InputError("the run used --li ideal: PyBaMM's half-cell has Butler-Volmer Li-metal kinetics only")
    return from_dict(raw)


#: step kinds the twin reproduces: a constant current, however it is given
CC_KINDS = ("c_rate", "current", "current_density")


def twin_protocol(run: dict[str, Any], sim_dir: Path) -> dict[str, Any]:
    """The step of the run the twin reproduces: its first constant-current discharge, after any leading
    rests (no-ops from equilibrium), with its C-rate, voltage end and duration. InputError (exit 2) naming
    the step when that step is something else (PyBaMM's DFN is not given a protocol the run did not run).

    Returns {protocol_step, text, c_rate, voltage_end_V, duration_s, steps}: ``steps`` the number of
    steps of the experiment (the twin reproduces only ``protocol_step`` of them)."""
    par = run.get("parameters", {})
    exp = par.get("experiment")
    if exp is None:
        if "experiment_steps" in run.get("results", {}):
            raise InputError(f"{sim_dir}: run.json records no expanded experiment (made by an older tomocell): "
                             "run the experiment again to twin it")
        c = float(par["c_rate"])  # a plain discharge of an older run
        return {"protocol_step": 0, "text": f"Discharge at {c:g}C", "c_rate": c, "voltage_end_V": None,
                "duration_s": None, "steps": 1}
    k = 0
    while k < len(exp) - 1 and exp[k]["kind"] == "rest":
        k += 1
    st = exp[k]
    status = {int(s["protocol_step"]): s.get("status") for s in run.get("results", {}).get("experiment_steps", [])}

    def refuse(why: str) -> InputError:
        return InputError(f"the twin cannot express experiment step {k} ({st['text']!r}): {why}; it reproduces a "
                          "constant-current discharge from the charged state (the first step after any rests)")

    if st["kind"] not in CC_KINDS or st["value"] <= 0:
        raise refuse(f"a {st['direction']} step ({st['kind']}), not a constant-current discharge")
    if status.get(k, "done") != "done":
        raise refuse(f"the run {status[k]} it")
    ends = st.get("until", [])
    if any(u["kind"] != "voltage" or u.get("operator") not in (None, "<") for u in ends):
        raise refuse("only voltage ends reached from above are expressed")
    one_c = float(run.get("results", {}).get("one_c_current_A", math.nan))
    if st["kind"] == "c_rate":
        c = float(st["value"])
    elif math.isfinite(one_c) and one_c > 0:  # the current the run drew in that step, in its own 1C
        c = float(_step_current(sim_dir / "timeseries.csv", k)) / one_c
    else:
        raise refuse("run.json gives no 1C current to convert its current")
    return {"protocol_step": k, "text": st["text"], "c_rate": c,
            "voltage_end_V": max((float(u["value"]) for u in ends), default=None),
            "duration_s": st.get("duration_s"), "steps": len(exp)}


def _step_current(path: Path, k: int) -> float:
    with open(path, newline="") as fh:
        cur = [float(r["current_A"]) for r in csv.DictReader(fh) if r.get("protocol_step") == str(k)]
    if not cur:
        raise InputError(f"{path}: no rows of experiment step {k}")
    return cur[-1]


def read_timeseries(path: Path, k: int = 0) -> dict[str, np.ndarray]:
    """t_s, voltage_V, capacity_mAh_g of experiment step ``k`` (from the row it starts at), time and
    capacity counted from the step's start."""
    from tomocell.physics.protocols.compare import select_step

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = ("t_s", "voltage_V", "capacity_mAh_g")
    if rows and "protocol_step" not in rows[0]:  # before experiments: the discharge segment
        rows = [r for r in rows if r.get("segment", "discharge") == "discharge"]
        return {n: np.array([float(r[n]) for r in rows]) for n in names}
    return select_step({n: np.array([float(r[n]) for r in rows]) for n in (*names, "protocol_step")}, k, str(path))


def discharge_metrics(cap_mAh_g: np.ndarray, v: np.ndarray) -> dict[str, float]:
    """Capacity [mAh/g], energy [Wh/kg of active material] and mean voltage [V] of a discharge curve."""
    cap = float(cap_mAh_g[-1])
    energy = float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(cap_mAh_g)))  # mWh/g = Wh/kg
    return {"capacity_mAh_g": cap, "energy_Wh_kg": energy, "mean_voltage_V": energy / cap if cap > 0 else math.nan}


def voltage_rmse(cap_a: np.ndarray, v_a: np.ndarray, cap_b: np.ndarray, v_b: np.ndarray, n: int = 400,
                 upto: float = 1.0) -> float:
    """RMS of V_b - V_a [V] on the common capacity range, or its first ``upto`` fraction (both curves
    interpolated on n points)."""
    hi = upto * min(cap_a[-1], cap_b[-1])
    if hi <= 0:
        return math.nan
    q = np.linspace(0.0, hi, n)
    return float(np.sqrt(np.mean((np.interp(q, cap_b, v_b) - np.interp(q, cap_a, v_a)) ** 2)))


def overlay_figure(path: Path, curves: list[tuple[str, np.ndarray, np.ndarray]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tomocell.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, cap, v in curves:
        ax.plot(cap, v, label=label, ls="-" if "resolved" in label else "--")
    ax.set_xlabel("capacity [mAh/g active material]")
    ax.set_ylabel("voltage vs Li/Li+ [V]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def twin_of_run(sim_dir: str | Path, out: str | Path, *, tau: float | None = None,
                bruggeman: float | str | None = None, psd: bool = True, guard: bool = False,
                overwrite: bool = False, comm: Any = None) -> dict[str, Any]:
    """Build the DFN twin of a finished simulate run, run it at the run's C-rate, compare, write OUT.

    ``tau``: the through-thickness tortuosity factor (default: measured on the run's image,
    :func:`resolve_tau`); ``bruggeman``: a number B for porosity^B instead, or ``"fit"`` to report the
    exponent b with porosity^b = porosity/tau (the same transport); ``psd``: PyBaMM's particle-size
    distribution of the per-particle radii (default) or one radius (False). ``comm``: the communicator
    the mesh is read on (default COMM_WORLD; a study's report step, on rank 0 only, passes COMM_SELF)."""
    from mpi4py import MPI

    from tomocell.atomic import write_csv_rows, write_json
    from tomocell.manifest import run_manifest
    from tomocell.physics.cli import load_mesh
    from tomocell.physics.twin import electrode_bruggeman, mesh_geometry, require_pybamm, run_dfn

    require_pybamm()
    sim_dir = Path(sim_dir)
    run = read_run(sim_dir)
    params = run_parameters(run)
    mesh_spec = run_mesh_spec(run, sim_dir)
    proto = twin_protocol(run, sim_dir)
    c_rate = proto["c_rate"]
    t0 = time.perf_counter()
    tau_info = resolve_tau(mesh_spec, params, tau, bruggeman)
    t_tau = time.perf_counter() - t0
    out = Path(out)
    settings = {"simulate_run": str(sim_dir), "mesh": mesh_spec, "c_rate": c_rate, "protocol": proto, "tau": tau, "bruggeman": bruggeman, "psd": psd}
    with run_manifest("twin", out, settings, guard=guard, overwrite=overwrite) as man:
        man.add_input("simulate_run", sim_dir / "run.json")
        inp = load_mesh(mesh_spec, MPI.COMM_WORLD if comm is None else comm)
        g = mesh_geometry(inp, params.sep_porosity)
        g.tau, g.tau_source, g.tau_mesh = tau_info
        man.data["timings_s"]["tortuosity"] = t_tau
        b_el = electrode_bruggeman(params, g, bruggeman)
        with man.timed("dfn"):
            v_end = params.voltage_min - 0.5 if proto["voltage_end_V"] is None else proto["voltage_end_V"]
            rows = run_dfn(params, g, c_rate, bruggeman=bruggeman, psd=psd, voltage_end_V=v_end,
                           duration_s=proto["duration_s"])
        res = read_timeseries(sim_dir / "timeseries.csv", proto["protocol_step"])
        cap_d = np.array([r["capacity_mAh_g"] for r in rows])
        v_d = np.array([r["voltage_V"] for r in rows])
        m_res = discharge_metrics(res["capacity_mAh_g"], res["voltage_V"])
        m_dfn = discharge_metrics(cap_d, v_d)
        rmse = voltage_rmse(res["capacity_mAh_g"], res["voltage_V"], cap_d, v_d)
        dcap = m_dfn["capacity_mAh_g"] / m_res["capacity_mAh_g"] - 1.0
        table = [{"model": "resolved", "c_rate": c_rate, **m_res, "voltage_rmse_mV": 0.0, "capacity_diff_rel": 0.0},
                 {"model": "dfn", "c_rate": c_rate, **m_dfn, "voltage_rmse_mV": 1e3 * rmse, "capacity_diff_rel": dcap}]
        if MPI.COMM_WORLD.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            write_csv_rows(out / "timeseries.csv", rows, TWIN_COLUMNS)
            write_csv_rows(out / "comparison.csv", table, list(table[0]))
            write_json(out / "geometry.json", g.as_dict())
            overlay_figure(out / "overlay.png", [("resolved (tomocell)", res["capacity_mAh_g"], res["voltage_V"]),
                                                 ("homogenised DFN (PyBaMM)", cap_d, v_d)],
                           f"{proto['text']}: resolved vs DFN twin")
        man.set_parameters(geometry=g.as_dict(), parameters=params.raw)
        man.set_result(c_rate=c_rate, protocol=proto, resolved=m_res, dfn=m_dfn, voltage_rmse_mV=1e3 * rmse,
                       capacity_diff_rel=dcap, tau=g.tau, tau_source=g.tau_source, tau_mesh=g.tau_mesh,
                       bruggeman_electrode=b_el, bruggeman_fitted=b_el if bruggeman == "fit" else None, psd=psd,
                       area_factor=g.reaction_area_factor(psd))
        for name in ("timeseries.csv", "comparison.csv", "geometry.json", "overlay.png"):
            man.add_output(name, out / name)
    return {"protocol": proto, "resolved": m_res, "dfn": m_dfn, "voltage_rmse_mV": 1e3 * rmse, "capacity_diff_rel": dcap,
            "geometry": g, "bruggeman_electrode": b_el, "psd": psd, "out": out}
