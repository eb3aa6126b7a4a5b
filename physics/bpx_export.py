"""BPX export of a resolved electrode's effective parameters (``tomocell export-bpx SIM_DIR --out cell.json``).

BPX 1.x describes full cells; a half-cell has no negative electrode, so the file uses BPX's
``Model: "Partial"`` parameterisation (Cell, Electrolyte, Positive electrode, Separator), or with
``--li-metal-negative`` a "DFN" file whose negative electrode stands in for the Li metal (zero OCP,
Li-metal kinetics, never limiting; :func:`li_metal_negative`), which
``pybamm.ParameterValues.create_from_bpx`` loads. The
positive electrode carries the mesh-measured effective values (thickness, porosity, transport
efficiency, surface area per volume, radius) and the set's functions: the OCP on its valid range and
the electrolyte conductivity and diffusivity as BPX interpolated tables (BPX expressions allow
only x, exp, tanh and cosh), D_s as a number or table. What BPX cannot hold goes into
``User-defined`` under ``tomocell ...`` names (read back by
:func:`tomocell.physics.bpx_import.bpx_to_raw`): the concentration-dependent transference number
and thermodynamic factor, the initial electrolyte concentration, Li-metal kinetics, CBD conductivity
and density. BPX's cation transference number is the set's value at c_e0.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.physics.parameters import FARADAY, Func, Parameters

N_TABLE = 101


def _table(f: Func, xs: np.ndarray, **kw: Any) -> Any:
    if f.is_constant:
        return float(f())
    ys = np.broadcast_to(np.asarray([float(np.asarray(f(**{k: (x if v is None else v) for k, v in kw.items()}))) for x in xs]),
                         xs.shape)
    return {"x": [float(x) for x in xs], "y": [float(y) for y in ys]}


#: Li metal: molar density [mol/m3] (0.534 g/cm3 / 6.94 g/mol) and conductivity [S/m] (CRC Handbook)
LI_MOLAR_DENSITY = 76_900.0
LI_CONDUCTIVITY = 1.1e7


def li_metal_negative(p: Parameters, q_nom_C_m2: float) -> dict[str, Any]:
    """A BPX negative electrode that behaves as the Li-metal counter electrode, so that full-cell readers
    (``pybamm.ParameterValues.create_from_bpx``) load the half cell: OCP 0 V at every stoichiometry, a
    1 um layer (porosity 0.5, transport efficiency 1: no electrolyte resistance to speak of) of Li-metal
    conductivity, particles of 0.1 um with D = 1e-9 m2/s (no diffusion limit), a stoichiometry window
    0.4-0.6 and a concentration sized to hold 20 times the positive capacity (so it never limits), and
    BPX's rate constant k = 2 i0_Li / F, which gives the Li exchange-current density at c_e0 and
    stoichiometry 0.5 (BPX: j0 = F k sqrt(c_e/c_e0 x (1 - x))). Approximations against tomocell's Li
    electrode: the c_e exponent is BPX's 0.5 (tomocell's set uses ``li_c_exponent``) and j0 varies by
    2 % across the window."""
    thick, eps_am, r = 1e-6, 0.5, 1e-7
    c_max = 20.0 * q_nom_C_m2 / (FARADAY * eps_am * thick * 0.2)
    return {"Thickness [m]": thick, "Porosity": 0.5, "Transport efficiency": 1.0,
            "Conductivity [S.m-1]": LI_CONDUCTIVITY, "Minimum stoichiometry": 0.4, "Maximum stoichiometry": 0.6,
            "Maximum concentration [mol.m-3]": c_max, "Particle radius [m]": r,
            "Surface area per unit volume [m-1]": 3.0 * eps_am / r, "Diffusivity [m2.s-1]": 1e-9,
            "OCP [V]": 0.0, "Entropic change coefficient [V.K-1]": 0.0,
            "Reaction rate constant [mol.m-2.s-1]": 2.0 * p.li_i0 / FARADAY}


def to_bpx(p: Parameters, g: Any, *, bruggeman: float | str | None = None, title: str = "tomocell electrode",
           li_negative: bool = False) -> dict[str, Any]:
    """A BPX 1.x mapping (Model "Partial") of parameter set ``p`` and measured geometry ``g``; with
    ``li_negative`` a full-cell file (Model "DFN") whose negative electrode stands for the Li metal
    (:func:`li_metal_negative`). Transport efficiency porosity^b with b of
    :func:`tomocell.physics.twin.electrode_bruggeman` (porosity/tau with a measured tau); ``"fit"``
    also records that b as ``tomocell fitted Bruggeman exponent``."""
    from tomocell.physics.twin import electrode_bruggeman

    x0, x1 = p.theta_limits()
    b_el = electrode_bruggeman(p, g, bruggeman)
    te = g.porosity / g.tau if g.tau is not None and not isinstance(bruggeman, (int, float)) else g.porosity**b_el
    lo, hi = p.ocp_valid
    xs = np.linspace(lo, hi, N_TABLE)
    cs = np.linspace(*p.c_e_valid, N_TABLE)
    T = p.temperature
    sigma = (p.sigma_active * g.active_fraction + p.sigma_cbd * g.cbd_fraction) / (g.active_fraction + g.cbd_fraction)
    q_nom = FARADAY * p.c_max * g.active_fraction * g.thickness_m * g.area_m2 * (x1 - x0) / 3600.0
    ocp = p.ocp.spec.get("expression") if isinstance(p.ocp.spec, dict) else None
    if ocp is None or any(s in ocp for s in ("sqrt", "log", "sinh", "abs", "c", "T")):
        ocp = _table(p.ocp, xs, x=None)
    pos = {
        "Minimum stoichiometry": min(x0, x1), "Maximum stoichiometry": max(x0, x1),
        "Maximum concentration [mol.m-3]": p.c_max, "Particle radius [m]": g.radius_m,
        "Surface area per unit volume [m-1]": g.specific_area_m,
        "Diffusivity [m2.s-1]": _table(p.D_s, np.linspace(0.0, 1.0, N_TABLE), x=None),
        "OCP [V]": ocp, "Entropic change coefficient [V.K-1]": 0.0,
        "Reaction rate constant [mol.m-2.s-1]": p.k_ct * p.c_max * math.sqrt(p.c_e0),
        "Thickness [m]": g.thickness_m, "Porosity": g.porosity, "Transport efficiency": te,
        "Conductivity [S.m-1]": sigma,
    }
    user = {
        "description": "tomocell half-cell parameters BPX cannot express (read back by tomocell)",
        "tomocell initial electrolyte concentration [mol.m-3]": p.c_e0,
        "tomocell cation transference number": _table(p.t_plus, cs, c=None, T=T),
        "tomocell thermodynamic factor": _table(p.tdf, cs, c=None, T=T),
        "tomocell Li metal exchange-current density [A.m-2]": p.li_i0,
        "tomocell Li metal concentration exponent": p.li_c_exponent,
        "tomocell CBD conductivity [S.m-1]": p.sigma_cbd,
        "tomocell active material density [kg.m-3]": p.density,
        "tomocell active material conductivity [S.m-1]": p.sigma_active,
        "tomocell separator Bruggeman coefficient": p.sep_bruggeman,
        "tomocell OCP valid minimum stoichiometry": lo, "tomocell OCP valid maximum stoichiometry": hi,
    }
    if bruggeman == "fit":
        user["tomocell fitted Bruggeman exponent"] = b_el
    out = {
        "Header": {"BPX": "1.0.0", "Title": title, "Model": "DFN" if li_negative else "Partial",
                   "Description": ("Half-cell (Li-metal counter electrode) positive electrode with effective parameters "
                                   f"measured on a tomocell mesh; parameter set {p.name}"),
                   "References": "tomocell; parameter sources in the tomocell parameter set"},
        "Parameterisation": {
            "Cell": {"Electrode area [m2]": g.area_m2, "Number of electrode pairs connected in parallel to make a cell": 1,
                     "Lower voltage cut-off [V]": p.voltage_min, "Upper voltage cut-off [V]": p.voltage_max,
                     "Nominal cell capacity [A.h]": q_nom, "Reference temperature [K]": T},
            "Electrolyte": {"Cation transference number": float(p.t_plus(c=p.c_e0, T=T)),
                            "Conductivity [S.m-1]": _table(p.kappa, cs, c=None, T=T),
                            "Diffusivity [m2.s-1]": _table(p.D_e, cs, c=None, T=T)},
            "Positive electrode": pos,
            "Separator": {"Thickness [m]": g.separator_thickness_m, "Porosity": p.sep_porosity,
                          "Transport efficiency": p.sep_porosity**p.sep_bruggeman},
            "User-defined": user,
        },
    }
    if li_negative:
        user.pop("description")  # PyBaMM reads every User-defined entry as a number
        # a full-cell reader takes the active volume fraction as a R / 3 (BPX has no other field for it):
        # spheres of the measured radius at the measured fraction, and the rate constant scaled by the
        # mesh's interface area over theirs (what the twin does), keep both the capacity and the total
        # exchange current of the mesh (with the mesh's own area PyBaMM's capacity was 57 % of nominal)
        pos["Surface area per unit volume [m-1]"] = 3.0 * g.active_fraction / g.radius_m
        pos["Reaction rate constant [mol.m-2.s-1]"] *= g.area_factor
        neg = li_metal_negative(p, q_nom * 3600.0 / g.area_m2)
        out["Parameterisation"]["Negative electrode"] = neg
        # what a full-cell reader needs besides: the cell's outer area and volume (a thermal model's)
        out["Parameterisation"]["Cell"].update({
            "External surface area [m2]": 2.0 * g.area_m2,
            "Volume [m3]": g.area_m2 * (g.thickness_m + g.separator_thickness_m + neg["Thickness [m]"])})
    return out


def validate_bpx(data: dict[str, Any]) -> Any:
    """Parse with the ``bpx`` package (InputError naming the extra when absent, or the failure)."""
    try:
        import bpx
    except ImportError:
        raise InputError("BPX export needs the bpx package: pip install 'tomocell[dfn]'") from None
    try:
        return bpx.parse_bpx_obj(copy.deepcopy(data))
    except Exception as exc:  # pydantic ValidationError and friends
        raise InputError(f"the exported parameters are not valid BPX: {exc}") from None


def export_bpx(sim_dir: str | Path, out: str | Path, *, tau: float | None = None,
               bruggeman: float | str | None = None, li_negative: bool = False) -> Path:
    """Write the BPX file of a finished simulate run's electrode (validated before it is written).

    The transport efficiency is porosity/tau with the tortuosity factor measured on the image behind the
    run's mesh (:func:`tomocell.physics.twin_compare.resolve_tau`) unless ``tau`` or a number ``bruggeman``
    is given."""
    from mpi4py import MPI

    from tomocell.atomic import write_json
    from tomocell.physics.cli import load_mesh
    from tomocell.physics.twin import mesh_geometry
    from tomocell.physics.twin_compare import read_run, resolve_tau, run_mesh_spec, run_parameters

    sim_dir, out = Path(sim_dir), Path(out)
    if out.suffix.lower() != ".json":
        raise InputError(f"--out {out}: a BPX file ends in .json")
    if tau is not None and not (math.isfinite(tau) and tau >= 1):
        raise InputError(f"--tau must be a finite tortuosity factor >= 1, got {tau}")
    run = read_run(sim_dir)
    params = run_parameters(run)
    mesh_spec = run_mesh_spec(run, sim_dir)
    tau_info = resolve_tau(mesh_spec, params, tau, bruggeman)
    g = mesh_geometry(load_mesh(mesh_spec, MPI.COMM_WORLD), params.sep_porosity)
    g.tau, g.tau_source, g.tau_mesh = tau_info
    data = to_bpx(params, g, bruggeman=bruggeman, title=f"tomocell electrode of {sim_dir.name}", li_negative=li_negative)
    validate_bpx(data)
    if MPI.COMM_WORLD.rank == 0:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, data)
    return out
