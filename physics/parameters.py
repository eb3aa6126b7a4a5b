"""Material and cell parameters of the half-cell model, read from cited JSON files (or BPX).

Bundled sets (``physics/parameters/*.json``; every value carries its unit and literature source):

* ``nmc111`` (default): NMC111 (OCP and c_max of the About:Energy BPX NMC111 parameterisation, density
  = c_max x 96.46 g/mol, i.e. the theoretical 278 mAh/g) + carbon-binder domain, LiPF6 in EC:EMC 3:7
  (Landesfeind & Gasteiger 2019 fits for kappa, D, t+ and the thermodynamic factor), Celgard-like
  separator (25 um, 39 %, Bruggeman 1.5), Li-metal Butler-Volmer kinetics (Xu et al. 2019).
* ``lco-ramadass2004``: the former default, honestly named: a LiCoO2 rational OCP (Ramadass et al.
  2004) with the same electrolyte; kept for the numerical verification tests.
* ``xu2019``: the NMC532 | Li half-cell of Xu et al. 2019 as published with PyBaMM, for cross-checks.

A value is either ``{"value": number}``, ``{"expression": "..."}`` (arithmetic in ``x``
(stoichiometry) or ``c`` (electrolyte concentration in mol/m^3) and ``T`` (K), with exp, tanh, cosh,
sinh, sqrt, log, abs), or ``{"table": {"x": [...], "y": [...]}}`` (piecewise linear, linearly
extrapolated). The same :class:`Func` evaluates on numpy arrays and on UFL expressions, so the
weak forms use exactly the functions the tests check.

:func:`read_bpx` maps the fields BPX defines (Battery Parameter eXchange, v0.x: Cell, Electrolyte,
Positive electrode, Separator) onto this schema; fields BPX does not define (CBD, Li metal, density)
come from the bundled default set. Everything is SI.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.physics.bpx_import import bpx_to_raw
from tomocell.physics.expressions import Func, backend_namespace

FARADAY = 96485.33212  # C/mol
GAS_CONSTANT = 8.314462618  # J/(mol K)
# A cut-off below the OCP at full lithiation is reached through the kinetic and ohmic drop as the
# particle surfaces saturate (the default NMC111 fit ends at 3.147 V, the cut-off is 3.0 V); further
# than this below it, the run can only end in a failed solve, so the set is refused up front [V].
CUTOFF_BELOW_OCP_MAX_V = 0.5

#: Electrolyte regularisation [mol/m^3]: the electrolyte functions (kappa, D, t+, TDF) are evaluated at
#: :func:`regularised_concentration`, a smooth, strictly positive stand-in for c: a softplus floor of
#: width C_E_FLOOR at the bottom (c_reg = C_E_FLOOR ln 2 = 0.69 mol/m^3 at c = 0, c_reg - c < 1e-9 mol/m^3
#: above 21 C_E_FLOOR) and a smooth cap of width C_E_CAP_WIDTH at the top of the fitted range, plus
#: C_E_MIN, which keeps it positive where the softplus underflows (c below about -36 C_E_FLOOR).
C_E_FLOOR = 1.0
C_E_CAP_WIDTH = 50.0
C_E_MIN = 1e-6


def _softplus(y: Any, backend: str) -> Any:
    """log(1 + exp(y)), overflow-free: max(y, 0) + log(1 + exp(-|y|)) (smooth: the kinks cancel)."""
    ns = backend_namespace(backend)
    if backend == "numpy":
        mx = np.maximum
    elif backend == "ufl":
        import ufl

        mx = ufl.max_value
    else:
        import pybamm

        mx = pybamm.maximum
    return mx(y, 0.0) + ns["log"](1.0 + ns["exp"](-ns["abs"](y)))


def regularised_concentration(c: Any, c_hi: float, backend: str = "numpy") -> Any:
    """The concentration [mol/m^3] at which the electrolyte functions are evaluated.

    ``c_cap = c_hi - w softplus((c_hi - c)/w)`` (w = C_E_CAP_WIDTH: = c below the top of the fitted
    range to within w exp(-(c_hi - c)/w), -> c_hi above it), then ``c_reg = f softplus(c_cap/f)``
    (f = C_E_FLOOR: = c to within f exp(-c/f) above a few f, C_E_FLOOR ln 2 at c = 0), plus C_E_MIN
    (1e-6 mol/m^3, a relative 1e-9 at 1 M), so it is > 0 for every c. Smooth (C-infinity) and monotone, so Newton
    sees the conductivity fall towards zero as the electrolyte starves (the former hard clip held the
    properties at their 50 mol/m^3 values); the fits are continued below their 50 mol/m^3 data limit
    with their own c -> 0 behaviour (kappa ~ c)."""
    w, f = C_E_CAP_WIDTH, C_E_FLOOR
    c_cap = c_hi - w * _softplus((c_hi - c) / w, backend)
    return f * _softplus(c_cap / f, backend) + C_E_MIN


BUNDLED = {"nmc111": "nmc111_lipf6_ecemc.json", "lco-ramadass2004": "lco_ramadass2004_lipf6_ecemc.json",
           "xu2019": "xu2019_nmc_li.json"}
DEFAULT_SET = "nmc111"

@dataclass
class Parameters:
    """Resolved parameter set (SI units). ``raw`` keeps the JSON with sources for run.json."""

    name: str
    raw: dict[str, Any]
    temperature: float
    voltage_max: float
    voltage_min: float
    c_max: float
    density: float
    D_s: Func
    sigma_active: float
    k_ct: float
    alpha_a: float
    alpha_c: float
    ocp: Func
    sigma_cbd: float
    c_e0: float
    kappa: Func
    D_e: Func
    t_plus: Func
    tdf: Func
    c_e_valid: tuple[float, float]
    sep_thickness: float
    sep_porosity: float
    sep_bruggeman: float
    li_i0: float
    li_c_exponent: float
    li_alpha_a: float
    li_alpha_c: float
    initial_stoichiometry: float | None = None
    #: electrolyte-filled fraction of the CBD and the Bruggeman exponent of its effective ionic
    #: transport, used only by the porous-CBD model (``HalfCellModel(cbd="porous")``)
    cbd_porosity: float = 0.5
    cbd_bruggeman: float = 1.5

    @property
    def thermal_voltage(self) -> float:
        """RT/F in volts."""
        return GAS_CONSTANT * self.temperature / FARADAY

    @property
    def ocp_valid(self) -> tuple[float, float]:
        return self.ocp.valid or (0.0, 1.0)

    def stoichiometry_at(self, voltage: float) -> float:
        """Stoichiometry x with U(x) = voltage inside the OCP's valid range (InputError if none)."""
        from scipy.optimize import brentq

        lo, hi = self.ocp_valid
        xs = np.linspace(lo + 1e-9, hi - 1e-9, 4001)
        u = np.asarray(self.ocp(x=xs), dtype=float) - voltage
        s = np.nonzero(np.sign(u[:-1]) * np.sign(u[1:]) <= 0)[0]
        if s.size == 0:
            raise InputError(
                f"voltage {voltage} V is outside the OCP range of {self.name} "
                f"({np.nanmin(u + voltage):.3f} .. {np.nanmax(u + voltage):.3f} V on x in [{lo}, {hi}])")
        if s.size > 1 and np.ptp(xs[s]) > 1e-6:
            raise InputError(f"OCP of {self.name} reaches {voltage} V more than once on x in [{lo}, {hi}]: "
                             "it must be monotone on its 'valid' range")
        i = s[0]
        return float(brentq(lambda x: float(self.ocp(x=x)) - voltage, xs[i], xs[i + 1], xtol=1e-14))

    def theta_limits(self) -> tuple[float, float]:
        """(x at voltage_max = charged initial state, x at voltage_min = OCV-implied end of discharge).

        An OCP whose valid range ends (at full lithiation) above voltage_min ends the discharge there:
        the NMC111 fit of the default set stops at 3.147 V at x = 1, above the 3.0 V cut-off."""
        x0 = self.initial_stoichiometry if self.initial_stoichiometry is not None else self.stoichiometry_at(self.voltage_max)
        hi = self.ocp_valid[1]
        u_full = float(np.asarray(self.ocp(x=hi)))
        if u_full > self.voltage_min:
            if u_full - self.voltage_min > CUTOFF_BELOW_OCP_MAX_V:
                raise InputError(
                    f"voltage_min {self.voltage_min} V is outside the OCP range of {self.name}: the OCP ends at "
                    f"{u_full:.3f} V at full lithiation (x = {hi}), and a cut-off more than "
                    f"{CUTOFF_BELOW_OCP_MAX_V} V below that is reached only by saturating the particle surfaces "
                    "(the exchange current vanishes there and the solve fails)")
            return x0, float(hi)
        return x0, self.stoichiometry_at(self.voltage_min)

    def molar_mass(self) -> float | None:
        """Molar mass of the active material [kg/mol] if the set gives one (active.molar_mass)."""
        m = self.raw.get("active", {}).get("molar_mass")
        return None if m is None else float(Func(m, "active.molar_mass")())

    def theoretical_capacity_mAh_g(self) -> float:
        """F c_max / density [mAh/g]: the capacity the set implies for x from 0 to 1."""
        return FARADAY * self.c_max / self.density / 3600.0

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "raw": self.raw}


def _func(d: dict[str, Any], path: str) -> Func:
    node: Any = d
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise InputError(f"parameter file: missing '{path}'")
        node = node[key]
    return Func(node, path)


def _num(d: dict[str, Any], path: str) -> float:
    f = _func(d, path)
    if not f.is_constant:
        raise InputError(f"parameter '{path}' must be a number")
    return float(f())


def from_dict(data: dict[str, Any]) -> Parameters:
    """Build (and validate) :class:`Parameters` from the JSON schema of the bundled files."""
    e = data.get("electrolyte", {})
    valid = Func(e.get("conductivity", 1.0), "electrolyte.conductivity").valid or (1e-3, 1e5)
    init = data.get("initial_stoichiometry")
    p = Parameters(
        name=str(data.get("name", "custom")),
        raw=data,
        temperature=_num(data, "temperature"),
        voltage_max=_num(data, "voltage_max"),
        voltage_min=_num(data, "voltage_min"),
        c_max=_num(data, "active.c_max"),
        density=_num(data, "active.density"),
        D_s=_func(data, "active.diffusivity"),
        sigma_active=_num(data, "active.conductivity"),
        k_ct=_num(data, "active.rate_constant"),
        alpha_a=_num(data, "active.alpha_a"),
        alpha_c=_num(data, "active.alpha_c"),
        ocp=_func(data, "active.ocp"),
        sigma_cbd=_num(data, "cbd.conductivity"),
        c_e0=_num(data, "electrolyte.c0"),
        kappa=_func(data, "electrolyte.conductivity"),
        D_e=_func(data, "electrolyte.diffusivity"),
        t_plus=_func(data, "electrolyte.transference"),
        tdf=_func(data, "electrolyte.thermodynamic_factor"),
        c_e_valid=valid,
        sep_thickness=_num(data, "separator.thickness"),
        sep_porosity=_num(data, "separator.porosity"),
        sep_bruggeman=_num(data, "separator.bruggeman"),
        li_i0=_num(data, "li_metal.exchange_current_density"),
        li_c_exponent=_num(data, "li_metal.c_exponent"),
        li_alpha_a=_num(data, "li_metal.alpha_a"),
        li_alpha_c=_num(data, "li_metal.alpha_c"),
        initial_stoichiometry=None if init is None else float(Func(init, "initial_stoichiometry")()),
        cbd_porosity=_num(data, "cbd.porosity") if "porosity" in data.get("cbd", {}) else 0.5,
        cbd_bruggeman=_num(data, "cbd.bruggeman") if "bruggeman" in data.get("cbd", {}) else 1.5,
    )
    validate(p)
    return p


def validate(p: Parameters) -> None:
    """InputError naming the first parameter that is out of its physical range."""

    def positive(name: str, value: float) -> None:
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"parameter {name} must be positive and finite, got {value}")

    for name, value in [("temperature", p.temperature), ("active.c_max", p.c_max), ("active.density", p.density),
                        ("active.conductivity", p.sigma_active), ("active.rate_constant", p.k_ct),
                        ("cbd.conductivity", p.sigma_cbd), ("electrolyte.c0", p.c_e0),
                        ("separator.thickness", p.sep_thickness), ("separator.bruggeman", p.sep_bruggeman),
                        ("li_metal.exchange_current_density", p.li_i0)]:
        positive(name, value)
    for name, a in [("active.alpha_a", p.alpha_a), ("active.alpha_c", p.alpha_c),
                    ("li_metal.alpha_a", p.li_alpha_a), ("li_metal.alpha_c", p.li_alpha_c)]:
        if not 0 < a < 1:
            raise InputError(f"parameter {name} must lie in (0, 1), got {a}")
    if not 0 < p.sep_porosity <= 1:
        raise InputError(f"parameter separator.porosity must lie in (0, 1], got {p.sep_porosity}")
    if not 0 < p.cbd_porosity < 1:
        raise InputError(f"parameter cbd.porosity must lie in (0, 1), got {p.cbd_porosity}")
    positive("cbd.bruggeman", p.cbd_bruggeman)
    xs = np.linspace(*p.ocp_valid, 201)
    u = np.broadcast_to(np.asarray(p.ocp(x=xs), dtype=float), xs.shape)
    if not (np.all(np.isfinite(u)) and np.all(np.diff(u) < 0)):
        raise InputError(f"active.ocp must be finite and fall monotonically with x on its valid range {p.ocp_valid}")
    ds = np.broadcast_to(np.asarray(p.D_s(x=xs), dtype=float), xs.shape)
    if not np.all(np.isfinite(ds) & (ds > 0)):
        raise InputError(f"parameter active.diffusivity must be positive on x in {p.ocp_valid} (min {np.min(ds):.3g})")
    cs = np.linspace(*p.c_e_valid, 201)
    for name, f in [("electrolyte.conductivity", p.kappa), ("electrolyte.diffusivity", p.D_e),
                    ("electrolyte.thermodynamic_factor", p.tdf)]:
        v = np.broadcast_to(np.asarray(f(c=cs, T=p.temperature), dtype=float), cs.shape)
        if not np.all(np.isfinite(v) & (v > 0)):
            raise InputError(f"parameter {name} must be positive for c in {p.c_e_valid} mol/m^3 (min {np.min(v):.3g})")
    tp = np.broadcast_to(np.asarray(p.t_plus(c=cs, T=p.temperature), dtype=float), cs.shape)
    if not np.all(np.isfinite(tp) & (tp > 0) & (tp < 1)):
        raise InputError("parameter electrolyte.transference must lie in (0, 1)")
    if not p.c_e_valid[0] <= p.c_e0 <= p.c_e_valid[1]:
        raise InputError(f"electrolyte.c0 = {p.c_e0} mol/m^3 is outside the fitted range {p.c_e_valid}")
    if not p.voltage_min < p.voltage_max:
        raise InputError(f"voltage_min ({p.voltage_min} V) must be below voltage_max ({p.voltage_max} V)")
    if p.initial_stoichiometry is not None and not 0 < p.initial_stoichiometry < 1:
        raise InputError(f"initial_stoichiometry must lie in (0, 1) (c0 must be below c_max), got {p.initial_stoichiometry}")
    x0, x1 = p.theta_limits()  # raises if a voltage limit is outside the OCP range
    if not x0 < x1:
        raise InputError(f"initial stoichiometry {x0:.4f} must be below the cut-off stoichiometry {x1:.4f} for a discharge")


def _unknown(d: dict[str, Any], dotted: str) -> InputError:
    import difflib

    names = sorted(k for k in flat_names(d))
    close = difflib.get_close_matches(dotted, names, n=1, cutoff=0.5)
    return InputError(f"unknown parameter '{dotted}'" + (f"; did you mean '{close[0]}'?" if close else ""))


def flat_names(d: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settable parameters of a raw parameter mapping."""
    out: list[str] = []
    for k, v in d.items():
        if isinstance(v, dict) and not any(s in v for s in ("value", "expression", "table")):
            out.extend(flat_names(v, f"{prefix}{k}."))
        elif k not in ("name", "description", "material"):
            out.append(f"{prefix}{k}")
    return out


def _deep_set(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = d
    for k in keys[:-1]:
        if k not in node or not isinstance(node[k], dict):
            raise _unknown(d, dotted)
        node = node[k]
    if keys[-1] not in node and keys[-1] != "initial_stoichiometry":
        raise _unknown(d, dotted)
    old = node.get(keys[-1])
    if isinstance(value, dict):
        node[keys[-1]] = value
    elif isinstance(old, dict):
        node[keys[-1]] = {k: v for k, v in old.items() if k not in ("expression", "table", "value")}
        node[keys[-1]]["value"] = value
        node[keys[-1]]["source"] = "user override"
    else:
        node[keys[-1]] = value


def parse_overrides(items: list[str] | None) -> dict[str, float]:
    """``["active.diffusivity=1e-13", ...]`` -> {"active.diffusivity": 1e-13}."""
    out: dict[str, float] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--param {item!r}: expected NAME=VALUE, e.g. active.diffusivity=1e-13")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise InputError(f"--param {item!r}: value is not a number") from None
    return out


def load_raw(spec: str | Path | None = None) -> dict[str, Any]:
    """The JSON mapping of a bundled set name, a parameter JSON file or a BPX file."""
    if spec is None:
        spec = DEFAULT_SET
    if str(spec) in BUNDLED:
        text = resources.files("tomocell.physics").joinpath("parameters", BUNDLED[str(spec)]).read_text()
        return json.loads(text)
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"parameter set {spec!r} is neither a bundled set ({', '.join(BUNDLED)}) nor a file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"parameter file {path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and "Parameterisation" in data:
        return bpx_to_raw(data, load_raw(DEFAULT_SET), DEFAULT_SET, source=str(path))
    if not isinstance(data, dict):
        raise InputError(f"parameter file {path} must hold a JSON object")
    check_known_keys(data, str(path))
    return data


#: keys of a value mapping ({"value": ...} etc.) besides the value itself
_SPEC_KEYS = ("value", "expression", "table", "valid", "unit", "units", "source", "sources", "variable", "note",
              "notes", "reference", "doi", "description", "comment")
_TOP_DOC_KEYS = ("name", "description", "initial_stoichiometry", "note", "notes", "reference", "references",
                 "comment", "version")


def known_keys() -> dict[str, set[str]]:
    """Section -> the keys the bundled sets use ('' = top level): the schema a parameter file must keep to."""
    out: dict[str, set[str]] = {"": set(_TOP_DOC_KEYS)}
    for fname in BUNDLED.values():
        raw = json.loads(resources.files("tomocell.physics").joinpath("parameters", fname).read_text())
        for k, v in raw.items():
            out[""].add(k)
            if isinstance(v, dict) and not any(s in v for s in ("value", "expression", "table")):
                out.setdefault(k, set()).update(v.keys())
    return out


def check_known_keys(data: dict[str, Any], source: str) -> None:
    """InputError for a key the model does not use (a misspelt name would silently keep the default),
    naming the closest known one."""
    import difflib

    schema = known_keys()

    def refuse(where: str, key: str, choices: set[str]) -> None:
        close = difflib.get_close_matches(key, sorted(choices), n=1, cutoff=0.5)
        hint = f"; did you mean '{where}{close[0]}'?" if close else f" (known: {', '.join(sorted(choices))})"
        raise InputError(f"parameter file {source}: unknown parameter '{where}{key}'{hint}")

    for k, v in data.items():
        if k not in schema[""]:
            refuse("", k, schema[""])
        if k in schema and isinstance(v, dict):
            for kk, vv in v.items():
                if kk not in schema[k]:
                    refuse(f"{k}.", kk, schema[k])
                if isinstance(vv, dict):
                    for s in vv:
                        if s not in _SPEC_KEYS:
                            refuse(f"{k}.{kk}.", s, set(_SPEC_KEYS))
        elif isinstance(v, dict) and k not in schema:
            for s in v:
                if s not in _SPEC_KEYS:
                    refuse(f"{k}.", s, set(_SPEC_KEYS))


def load_parameters(spec: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Parameters:
    """Load a parameter set (bundled name, JSON file or BPX file), apply dotted overrides, validate."""
    data = copy.deepcopy(load_raw(spec))
    for k, v in (overrides or {}).items():
        _deep_set(data, k, v)
    return from_dict(data)


def read_bpx(path: str | Path, overrides: dict[str, Any] | None = None) -> Parameters:
    """Parameters from a BPX JSON file (fields BPX defines; the rest from the default set)."""
    return load_parameters(path, overrides)
