"""BPX (Battery Parameter eXchange) files read into tomocell's parameter schema.

:func:`bpx_to_raw` maps the fields BPX defines (v0.x: Cell, Electrolyte, Positive electrode,
Separator) onto the JSON schema of :mod:`tomocell.physics.parameters`; fields BPX does not define (CBD,
Li metal, density) come from a base set, and the ``User-defined`` fields that ``tomocell export-bpx``
writes (:mod:`tomocell.physics.bpx_export`) are read back. Load a BPX file with
``tomocell.physics.parameters.load_parameters(path)`` or ``read_bpx(path)``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from tomocell.errors import InputError


def _bpx_value(v: Any, name: str, var: str) -> dict[str, Any]:
    src = f"BPX field '{name}'"
    if isinstance(v, (int, float)):
        return {"value": float(v), "source": src}
    if isinstance(v, str):
        return {"expression": v.replace("x", var) if var != "x" else v, "source": src}
    if isinstance(v, dict) and "x" in v and "y" in v:
        return {"table": {"x": v["x"], "y": v["y"]}, "source": src}
    raise InputError(f"BPX field '{name}': unsupported value {v!r}")


def bpx_to_raw(bpx: dict[str, Any], base: dict[str, Any], base_name: str, source: str = "BPX") -> dict[str, Any]:
    """Map BPX ``Parameterisation`` fields onto this module's schema.

    Used: Cell (Reference temperature, Lower/Upper voltage cut-off), Electrolyte (Initial
    concentration, Cation transference number, Conductivity, Diffusivity: numbers or expressions in
    x = concentration in mol/m^3), Positive electrode (Maximum concentration, Diffusivity, OCP,
    Conductivity, Reaction rate constant k_norm with i0 = F k_norm sqrt((c_e/c_e0)(x)(1-x)),
    Minimum stoichiometry), Separator (Thickness, Porosity, Transport efficiency = porosity^b).
    Activation energies are not applied: runs are at the BPX reference temperature.
    ``base``: the raw parameter set (named ``base_name``) that supplies what BPX does not define.
    """
    par = bpx.get("Parameterisation")
    if not isinstance(par, dict):
        raise InputError(f"{source}: BPX file without a 'Parameterisation' object")
    raw = copy.deepcopy(base)
    raw["name"] = f"bpx:{Path(source).name}"
    raw["description"] = f"BPX file {source}; CBD, Li-metal and density from {base_name}"
    cell, el, pos, sep = (par.get(k, {}) for k in ("Cell", "Electrolyte", "Positive electrode", "Separator"))
    if not pos:
        raise InputError(f"{source}: BPX file has no 'Positive electrode' section")

    def need(section: dict[str, Any], key: str, sec_name: str) -> Any:
        if key not in section:
            raise InputError(f"{source}: BPX field '{sec_name}/{key}' is missing")
        return section[key]

    if "Reference temperature [K]" in cell:
        raw["temperature"] = {"value": float(cell["Reference temperature [K]"]), "source": "BPX Cell/Reference temperature"}
    for key, target in [("Lower voltage cut-off [V]", "voltage_min"), ("Upper voltage cut-off [V]", "voltage_max")]:
        if key in cell:
            raw[target] = {"value": float(cell[key]), "source": f"BPX Cell/{key}"}
    a = raw["active"]
    a["material"] = "BPX positive electrode"
    c_max = float(need(pos, "Maximum concentration [mol.m-3]", "Positive electrode"))
    a["c_max"] = {"value": c_max, "source": "BPX Positive electrode/Maximum concentration"}
    a["diffusivity"] = _bpx_value(need(pos, "Diffusivity [m2.s-1]", "Positive electrode"), "Positive electrode/Diffusivity", "x")
    ocp = _bpx_value(need(pos, "OCP [V]", "Positive electrode"), "Positive electrode/OCP", "x")
    ocp["valid"] = [0.0, 1.0]
    a["ocp"] = ocp
    if "Conductivity [S.m-1]" in pos:
        a["conductivity"] = _bpx_value(pos["Conductivity [S.m-1]"], "Positive electrode/Conductivity", "x")
    e = raw["electrolyte"]
    user = par.get("User-defined") or {}
    c_e0 = float(el.get("Initial concentration [mol.m-3]",
                        user.get("tomocell initial electrolyte concentration [mol.m-3]", 1000.0)))
    e["c0"] = {"value": c_e0, "source": "BPX Electrolyte/Initial concentration"}
    if "Reaction rate constant [mol.m-2.s-1]" in pos:
        k_norm = float(pos["Reaction rate constant [mol.m-2.s-1]"])
        a["rate_constant"] = {"value": k_norm / (c_max * math.sqrt(c_e0)),
                              "source": "BPX Positive electrode/Reaction rate constant k_norm / (c_max sqrt(c_e0))"}
    a["alpha_a"] = {"value": 0.5, "source": "BPX kinetics are symmetric (sinh form)"}
    a["alpha_c"] = {"value": 0.5, "source": "BPX kinetics are symmetric (sinh form)"}
    for key, target in [("Conductivity [S.m-1]", "conductivity"), ("Diffusivity [m2.s-1]", "diffusivity"),
                        ("Cation transference number", "transference")]:
        if key in el:
            val = _bpx_value(el[key], f"Electrolyte/{key}", "c")
            val["valid"] = e[target].get("valid", [50.0, 3000.0]) if isinstance(e.get(target), dict) else [50.0, 3000.0]
            e[target] = val
    e["thermodynamic_factor"] = {"value": 1.0, "source": "BPX defines no thermodynamic factor: 1 (ideal solution)"}
    if sep:
        s = raw["separator"]
        if "Thickness [m]" in sep:
            s["thickness"] = {"value": float(sep["Thickness [m]"]), "source": "BPX Separator/Thickness"}
        if "Porosity" in sep:
            s["porosity"] = {"value": float(sep["Porosity"]), "source": "BPX Separator/Porosity"}
        te = sep.get("Transport efficiency")
        eps = float(s["porosity"]["value"])
        if te is not None and 0 < eps < 1 and 0 < float(te) < 1:
            s["bruggeman"] = {"value": math.log(float(te)) / math.log(eps),
                              "source": "BPX Separator/Transport efficiency = porosity^b"}
    _apply_tomocell_user_defined(raw, user)
    return raw


#: User-defined BPX fields written by `tomocell export-bpx` (physics/bpx_export.py) -> dotted names here
_USER_DEFINED = {
    "tomocell initial electrolyte concentration [mol.m-3]": ("electrolyte.c0", ""),
    "tomocell cation transference number": ("electrolyte.transference", "c"),
    "tomocell thermodynamic factor": ("electrolyte.thermodynamic_factor", "c"),
    "tomocell Li metal exchange-current density [A.m-2]": ("li_metal.exchange_current_density", ""),
    "tomocell Li metal concentration exponent": ("li_metal.c_exponent", ""),
    "tomocell CBD conductivity [S.m-1]": ("cbd.conductivity", ""),
    "tomocell active material density [kg.m-3]": ("active.density", ""),
    "tomocell active material conductivity [S.m-1]": ("active.conductivity", ""),
    "tomocell separator Bruggeman coefficient": ("separator.bruggeman", ""),
}


def _apply_tomocell_user_defined(raw: dict[str, Any], user: dict[str, Any]) -> None:
    """Read back the half-cell parameters BPX has no field for (User-defined 'tomocell ...' names)."""
    for key, (dotted, var) in _USER_DEFINED.items():
        if key not in user:
            continue
        sec, name = dotted.split(".")
        old = raw[sec].get(name)
        val = _bpx_value(user[key], f"User-defined/{key}", var or "x")
        if var and isinstance(old, dict) and old.get("valid"):
            val["valid"] = old["valid"]
        raw[sec][name] = val
    lo, hi = user.get("tomocell OCP valid minimum stoichiometry"), user.get("tomocell OCP valid maximum stoichiometry")
    if lo is not None and hi is not None:
        raw["active"]["ocp"]["valid"] = [float(lo), float(hi)]
