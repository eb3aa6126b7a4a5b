"""A homogenised twin of a resolved half-cell: the PyBaMM DFN with the mesh's own geometry and the
run's own parameter set.

The geometry (:class:`TwinGeometry`) is measured on the tagged mesh the resolved model ran on:
electrode thickness and projected collector area, the volume fractions of active material, pore
(electrolyte porosity) and CBD, the active/electrolyte interface area per electrode volume (the
reaction area the resolved model uses: CBD-covered surface excluded, separator-facing facets at the
separator porosity), the per-particle equivalent
radii, and the separator thickness of the mesh. Only the connected part (what carries current in the
resolved model, :func:`tomocell.physics.topology.analyse_mesh`) counts, so both models have the same 1C.

The translation (:func:`pybamm_parameters`) keeps the physics identical:

* OCP, particle diffusivity, kappa, D_e, t+ and the thermodynamic factor are the parameter set's own
  :class:`~tomocell.physics.parameters.Func` evaluated on PyBaMM symbols, with the resolved model's
  regularisation (c_e through parameters.regularised_concentration, the OCP continued linearly outside its valid range);
* i0 = F k c_e^a (c_max - c_s)^a c_s^a with a = 1/2 (PyBaMM's symmetric Butler-Volmer; any other
  transfer coefficient is refused), times ``area_factor`` = (mesh interface area) / (3 eps_am / R):
  the DFN's spheres of radius R then react over the resolved electrode's true area;
* Li metal: i0_Li = i0_ref (c_e/c_e0)^b;
* electrolyte transport efficiency eps/tau through a Bruggeman exponent b = 1 - ln(tau)/ln(eps)
  (``tau`` = the image-measured through-thickness tortuosity factor; ``bruggeman="fit"`` reports that b
  as the fitted exponent, the same transport; a number B uses porosity^B instead);
* particles: PyBaMM's particle-size distribution of the per-particle radii by default
  (:meth:`TwinGeometry.psd`), or one radius (``psd=False``);
* solid conductivity: the volume-weighted active + CBD conductivity with no Bruggeman correction (the
  solid potential drop is tiny at these sizes in both models).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tomocell.errors import InputError
from tomocell.physics.parameters import FARADAY, Parameters, regularised_concentration

#: the optional extra that provides pybamm and bpx
EXTRA = "dfn"


def require_pybamm() -> Any:
    """Import pybamm, or InputError naming the optional extra."""
    try:
        import pybamm
    except ImportError:
        raise InputError(f"the homogenised twin needs PyBaMM: pip install 'tomocell[{EXTRA}]' "
                         "(scripts/install installs it)") from None
    return pybamm


@dataclass
class TwinGeometry:
    """Effective geometry of a resolved electrode (SI units)."""

    thickness_m: float
    area_m2: float
    separator_thickness_m: float
    active_fraction: float
    porosity: float
    cbd_fraction: float
    interface_area_m2: float
    particle_radii_m: list[float] = field(default_factory=list)
    particle_volumes_m3: list[float] = field(default_factory=list)
    tau: float | None = None
    tau_source: str = ""
    #: the same tortuosity factor measured on the mesh's pore tets (meshing's fidelity report), for reference
    tau_mesh: float | None = None

    @property
    def specific_area_m(self) -> float:
        """Active/electrolyte interface area per electrode volume [1/m]."""
        return self.interface_area_m2 / (self.area_m2 * self.thickness_m)

    @property
    def radius_m(self) -> float:
        """Volume-weighted mean equivalent radius (the single-radius twin's R)."""
        r = np.asarray(self.particle_radii_m)
        v = np.asarray(self.particle_volumes_m3)
        if r.size == 0:
            raise InputError("the mesh has no particle labels: cannot give the twin a particle radius")
        return float(np.sum(r * v) / np.sum(v))

    @property
    def area_factor(self) -> float:
        """Mesh interface area over the area of spheres of radius :attr:`radius_m` (3 eps_am / R)."""
        return self.specific_area_m / (3.0 * self.active_fraction / self.radius_m)

    @property
    def sauter_radius_m(self) -> float:
        """sum R^3 / sum R^2: the radius whose spheres have the particles' total area per volume."""
        r = np.asarray(self.particle_radii_m)
        if r.size == 0:
            raise InputError("the mesh has no particle labels: cannot give the twin a particle-size distribution")
        return float(np.sum(r**3) / np.sum(r**2))

    def reaction_area_factor(self, psd: bool = True) -> float:
        """The i0 scale of the twin: mesh interface area over the area of its spheres (the Sauter radius's
        with a particle-size distribution, :attr:`radius_m`'s with one radius)."""
        r = self.sauter_radius_m if psd else self.radius_m
        return self.specific_area_m * r / (3.0 * self.active_fraction)

    def psd(self) -> tuple[Any, float, float]:
        """Area-weighted particle-size distribution of the per-particle radii for PyBaMM: a sum of
        Gaussian kernels (width 0.25 std + 0.05 mean) weighted by R^2, normalised on [R_min, R_max]."""
        from scipy.special import erf

        pybamm = require_pybamm()
        r = np.asarray(self.particle_radii_m)
        s = 0.25 * float(np.std(r)) + 0.05 * float(np.mean(r))
        lo, hi = max(float(r.min()) - 3 * s, 0.1 * float(r.min())), float(r.max()) + 3 * s
        w = r**2
        norm = float(np.sum(w * math.sqrt(2 * math.pi) * s * 0.5
                            * (erf((hi - r) / (math.sqrt(2) * s)) - erf((lo - r) / (math.sqrt(2) * s)))))

        def f_a(R: Any) -> Any:
            out = 0.0
            for ri, wi in zip(r, w):
                out = out + float(wi / norm) * pybamm.exp(-((R - float(ri)) ** 2) / float(2 * s * s))
            return out

        return f_a, lo, hi

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(specific_area_m=self.specific_area_m, radius_m=self.radius_m, area_factor=self.area_factor,
                 sauter_radius_m=self.sauter_radius_m, area_factor_psd=self.reaction_area_factor(True))
        return d


def mesh_geometry(inp: Any, sep_porosity: float, length_unit: float = 1e-6) -> TwinGeometry:
    """Measure :class:`TwinGeometry` on a tagged mesh (a :class:`~tomocell.physics.model.MeshInput`);
    ``sep_porosity`` weights the interface facets against the separator as the model does."""
    import tomocell.fem  # noqa: F401
    import ufl
    from dolfinx import fem
    from dolfinx import mesh as dmesh
    from mpi4py import MPI

    from tomocell.meshing import tags as T
    from tomocell.physics.electrolyte_phases import ElectrolytePhase
    from tomocell.physics.electrolyte_phases import reacting_fraction
    from tomocell.physics.model import IFACE
    from tomocell.physics.topology import analyse_mesh

    topo = analyse_mesh(inp)
    msh = inp.mesh
    comm = msh.comm
    tdim = msh.topology.dim
    ct = topo.cell_tag
    ctags = dmesh.meshtags(msh, tdim, np.arange(ct.size, dtype=np.int32), ct)
    dx = ufl.Measure("dx", domain=msh, subdomain_data=ctags)
    dS = ufl.Measure("dS", domain=msh, subdomain_data=[(IFACE, topo.iface_data)])
    one = fem.Constant(msh, 1.0)

    def integral(form: Any) -> float:
        return float(comm.allreduce(fem.assemble_scalar(fem.form(form)), op=MPI.SUM))

    vol = {name: integral(one * dx(tag)) for name, tag in T.CELL_TAGS.items()}
    inert = {k: float(v.get("inert_volume_um3", 0.0)) for k, v in (topo.inert or {}).items()}
    electrode = sum(vol[k] + inert.get(k, 0.0) for k in ("active", "cbd", "pore"))
    # projected area: the separator is a slab of the mesh's width over the electrode
    z_sep = topo.z_max - topo.z_min
    sep_vol = vol["separator"] + inert.get("separator", 0.0)
    area = electrode / max(_electrode_top(msh, ct, T.SEPARATOR, comm) - topo.z_min, 1e-30)
    thickness = electrode / area
    sep_thickness = sep_vol / area if sep_vol > 0 else 0.0
    if sep_thickness <= 0 or thickness >= z_sep:
        raise InputError("the mesh has no separator slab above the electrode: the twin needs its thickness")
    # reacting area, as the (dense-CBD) model: separator-facing facets over the separator porosity
    sep = (ElectrolytePhase(T.SEPARATOR, sep_porosity, sep_porosity),)
    iface = integral(reacting_fraction(msh, ct, sep)("-") * dS(IFACE))
    # per-particle volumes from the particle labels (connected active cells only)
    V0 = fem.functionspace(msh, ("DG", 0))
    w = ufl.TestFunction(V0)
    cellvol = fem.assemble_vector(fem.form(w * ufl.dx)).array
    n_owned = msh.topology.index_map(tdim).size_local
    labels = topo.particle[:n_owned]
    keep = (ct[:n_owned] == T.ACTIVE) & (labels > 0)
    dofs = V0.dofmap.list[:n_owned, 0]
    local: dict[int, float] = {}
    for lab, v in zip(labels[keep], cellvol[dofs[keep]]):
        local[int(lab)] = local.get(int(lab), 0.0) + float(v)
    tot: dict[int, float] = {}
    for d in comm.allgather(local):
        for k, v in d.items():
            tot[k] = tot.get(k, 0.0) + v
    l3 = length_unit**3
    pv = [tot[k] * l3 for k in sorted(tot)]
    radii = [(3.0 * v / (4.0 * math.pi)) ** (1.0 / 3.0) for v in pv]
    return TwinGeometry(
        thickness_m=thickness * length_unit, area_m2=area * length_unit**2,
        separator_thickness_m=sep_thickness * length_unit,
        active_fraction=vol["active"] / electrode, porosity=vol["pore"] / electrode, cbd_fraction=vol["cbd"] / electrode,
        interface_area_m2=iface * length_unit**2, particle_radii_m=radii, particle_volumes_m3=pv)


def _electrode_top(msh: Any, ct: np.ndarray, sep_tag: int, comm: Any) -> float:
    """Lowest z of the separator cells (the electrode/separator plane), in mesh units."""
    from dolfinx import mesh as dmesh
    from mpi4py import MPI

    cells = np.nonzero(ct == sep_tag)[0].astype(np.int32)
    z = np.inf
    if cells.size:
        geo = dmesh.entities_to_geometry(msh, msh.topology.dim, cells)
        z = float(msh.geometry.x[geo, 2].min())
    return float(comm.allreduce(z, op=MPI.MIN))


def bruggeman_from_tau(tau: float, porosity: float) -> float:
    """b with porosity^b = porosity / tau (PyBaMM's transport efficiency written as Bruggeman)."""
    if not (0 < porosity < 1 and tau >= 1 and math.isfinite(tau)):
        raise InputError(f"tortuosity factor {tau} / porosity {porosity}: PyBaMM needs 0 < porosity < 1 and a finite tau >= 1")
    return 1.0 - math.log(tau) / math.log(porosity)


def _check_expressible(p: Parameters) -> None:
    for name, a in (("active.alpha_a", p.alpha_a), ("active.alpha_c", p.alpha_c),
                    ("li_metal.alpha_a", p.li_alpha_a), ("li_metal.alpha_c", p.li_alpha_c)):
        if abs(a - 0.5) > 1e-12:
            raise InputError(f"parameter {name} = {a}: PyBaMM's DFN has symmetric Butler-Volmer kinetics (0.5) only")


def functions(p: Parameters, area_factor: float = 1.0) -> dict[str, Any]:
    """The parameter set's material functions as PyBaMM-callable functions (same regularisation as the model)."""
    pybamm = require_pybamm()
    _check_expressible(p)
    lo, hi = p.ocp_valid
    h = 1e-6 * (hi - lo)
    s_lo = float((p.ocp(x=lo + h) - p.ocp(x=lo)) / h)
    s_hi = float((p.ocp(x=hi) - p.ocp(x=hi - h)) / h)
    c_hi = p.c_e_valid[1]

    def clip_c(c_e: Any) -> Any:  # the model's smooth positive regularisation
        return regularised_concentration(c_e, c_hi, backend="pybamm")

    def ocp(sto: Any) -> Any:
        inner = p.ocp(x=pybamm.minimum(pybamm.maximum(sto, lo), hi), backend="pybamm")
        return inner + s_hi * pybamm.maximum(sto - hi, 0.0) + s_lo * pybamm.minimum(sto - lo, 0.0)

    def d_s(sto: Any, T: Any) -> Any:  # noqa: ARG001 - isothermal at the set's temperature
        return p.D_s(x=pybamm.minimum(pybamm.maximum(sto, 0.0), 1.0), backend="pybamm") if not p.D_s.is_constant else p.D_s()

    def i0(c_e: Any, c_s_surf: Any, c_s_max: Any, T: Any) -> Any:  # noqa: ARG001
        c = pybamm.maximum(c_e, 1e-9 * p.c_e0)
        th = pybamm.minimum(pybamm.maximum(c_s_surf / c_s_max, 1e-9), 1 - 1e-9)
        return area_factor * FARADAY * p.k_ct * c**0.5 * (p.c_max * (1 - th)) ** 0.5 * (p.c_max * th) ** 0.5

    def i0_li(c_e: Any, c_Li: Any, T: Any) -> Any:  # noqa: ARG001
        return p.li_i0 * pybamm.maximum(c_e / p.c_e0, 1e-9) ** p.li_c_exponent

    def electrolyte(f: Any) -> Any:
        return lambda c_e, T: f(c=clip_c(c_e), T=p.temperature, backend="pybamm")  # noqa: ARG005

    return {"ocp": ocp, "D_s": d_s, "i0": i0, "i0_li": i0_li, "kappa": electrolyte(p.kappa),
            "D_e": electrolyte(p.D_e), "t_plus": electrolyte(p.t_plus), "tdf": electrolyte(p.tdf)}


def electrode_bruggeman(p: Parameters, g: TwinGeometry, bruggeman: float | str | None = None) -> float:
    """The electrolyte Bruggeman exponent b of the electrode (transport efficiency porosity^b).

    ``None`` or ``"fit"``: b with porosity^b = porosity / ``g.tau`` (the measured tortuosity factor;
    ``"fit"`` refuses without one), else the separator's exponent of the set when nothing is measured
    (a mesh with no image behind it, ``box:``); a number: that exponent."""
    if isinstance(bruggeman, str):
        if bruggeman != "fit":
            raise InputError(f"--bruggeman must be a number or 'fit', got {bruggeman!r}")
        if g.tau is None:
            raise InputError("--bruggeman fit needs a measured tortuosity factor (none for this mesh: pass --tau)")
        return bruggeman_from_tau(g.tau, g.porosity)
    if bruggeman is not None:
        return float(bruggeman)
    if g.tau is not None:
        return bruggeman_from_tau(g.tau, g.porosity)
    return float(p.sep_bruggeman)


def pybamm_parameters(p: Parameters, g: TwinGeometry, *, bruggeman: float | str | None = None, psd: bool = True) -> Any:
    """``pybamm.ParameterValues`` of the half-cell DFN twin (``working electrode: positive``).

    Electrolyte transport efficiency in the electrode: :func:`electrode_bruggeman`.
    ``psd`` (default): PyBaMM's particle-size distribution from the per-particle radii
    (:meth:`TwinGeometry.psd`; the area factor then refers to the Sauter radius); False: one radius."""
    pybamm = require_pybamm()
    f = functions(p, g.reaction_area_factor(psd))
    b_el = electrode_bruggeman(p, g, bruggeman)
    x0, _ = p.theta_limits()
    sigma = (p.sigma_active * g.active_fraction + p.sigma_cbd * g.cbd_fraction) / (g.active_fraction + g.cbd_fraction)
    side = math.sqrt(g.area_m2)
    q_nom = FARADAY * p.c_max * g.active_fraction * g.thickness_m * g.area_m2 * (p.theta_limits()[1] - x0) / 3600.0
    vals = {
        "Ambient temperature [K]": p.temperature, "Initial temperature [K]": p.temperature,
        "Reference temperature [K]": p.temperature,
        "Electrode height [m]": side, "Electrode width [m]": side,
        "Number of electrodes connected in parallel to make a cell": 1.0,
        "Number of cells connected in series to make a battery": 1.0,
        "Nominal cell capacity [A.h]": q_nom, "Current function [A]": q_nom,
        "Lower voltage cut-off [V]": p.voltage_min, "Upper voltage cut-off [V]": p.voltage_max,
        "Open-circuit voltage at 0% SOC [V]": p.voltage_min, "Open-circuit voltage at 100% SOC [V]": p.voltage_max,
        "Contact resistance [Ohm]": 0.0,
        "Positive electrode thickness [m]": g.thickness_m,
        "Positive electrode porosity": g.porosity,
        "Positive electrode active material volume fraction": g.active_fraction,
        "Positive particle radius [m]": g.radius_m,
        "Positive electrode Bruggeman coefficient (electrolyte)": b_el,
        "Positive electrode Bruggeman coefficient (electrode)": 0.0,
        "Positive electrode conductivity [S.m-1]": sigma,
        "Maximum concentration in positive electrode [mol.m-3]": p.c_max,
        "Initial concentration in positive electrode [mol.m-3]": x0 * p.c_max,
        "Positive particle diffusivity [m2.s-1]": f["D_s"],
        "Positive electrode OCP [V]": f["ocp"],
        "Positive electrode OCP entropic change [V.K-1]": 0.0,
        "Positive electrode exchange-current density [A.m-2]": f["i0"],
        "Positive electrode charge transfer coefficient": 0.5,
        "Positive electrode double-layer capacity [F.m-2]": 0.2,
        "Exchange-current density for lithium metal electrode [A.m-2]": f["i0_li"],
        "Separator thickness [m]": g.separator_thickness_m,
        "Separator porosity": p.sep_porosity,
        "Separator Bruggeman coefficient (electrolyte)": p.sep_bruggeman,
        "Separator Bruggeman coefficient (electrode)": p.sep_bruggeman,
        "Initial concentration in electrolyte [mol.m-3]": p.c_e0,
        "Electrolyte conductivity [S.m-1]": f["kappa"],
        "Electrolyte diffusivity [m2.s-1]": f["D_e"],
        "Cation transference number": f["t_plus"],
        "Thermodynamic factor": f["tdf"],
    }
    pv = pybamm.ParameterValues("Xu2019")  # only for the names PyBaMM requires; every value used is set here
    if psd:
        f_a, r_lo, r_hi = g.psd()
        vals.update({"Positive area-weighted particle-size distribution [m-1]": f_a,
                     "Positive minimum particle radius [m]": r_lo, "Positive maximum particle radius [m]": r_hi})
    pv.update(vals, check_already_exists=False)
    return pv


def run_dfn(p: Parameters, g: TwinGeometry, c_rate: float, *, bruggeman: float | str | None = None, psd: bool = True,
            n_points: int = 200, voltage_end_V: float | None = None,
            duration_s: float | None = None) -> list[dict[str, Any]]:
    """Galvanostatic discharge of the twin from the charged state at ``c_rate`` to ``voltage_end_V``
    (default voltage_min), or for ``duration_s`` if it ends first.

    Returns rows with the resolved model's timeseries column names (t_s, voltage_V, current_A,
    current_density_A_m2, capacity_Ah, capacity_mAh_g, capacity_mAh_cm2, dod)."""
    pybamm = require_pybamm()
    if not (math.isfinite(c_rate) and c_rate > 0):
        raise InputError(f"C-rate must be a finite number > 0, got {c_rate}")
    pv = pybamm_parameters(p, g, bruggeman=bruggeman, psd=psd)
    q_nom = float(pv["Nominal cell capacity [A.h]"])
    pv["Current function [A]"] = c_rate * q_nom
    if voltage_end_V is not None:
        pv["Lower voltage cut-off [V]"] = float(voltage_end_V)
    options = {"working electrode": "positive"}
    if psd:
        options["particle size"] = "distribution"
    model = pybamm.lithium_ion.DFN(options)
    var_pts = {"x_n": 10, "x_s": 10, "x_p": 20, "r_n": 10, "r_p": 20, "R_n": 10, "R_p": 20}
    t_end = 1.3 * 3600.0 / c_rate if duration_s is None else float(duration_s)
    sim = pybamm.Simulation(model, parameter_values=pv, var_pts=var_pts)
    sol = sim.solve(np.linspace(0.0, t_end, n_points))
    t = np.asarray(sol["Time [s]"].entries)
    v = np.asarray(sol["Voltage [V]"].entries)
    i = np.asarray(sol["Current [A]"].entries)
    cap = np.asarray(sol["Discharge capacity [A.h]"].entries)
    mass_g = g.active_fraction * g.thickness_m * g.area_m2 * p.density * 1e3
    area_cm2 = g.area_m2 * 1e4
    return [{"t_s": float(t[k]), "voltage_V": float(v[k]), "current_A": float(i[k]),
             "current_density_A_m2": float(i[k] / g.area_m2), "capacity_Ah": float(cap[k]),
             "capacity_mAh_g": float(cap[k] * 1e3 / mass_g), "capacity_mAh_cm2": float(cap[k] * 1e3 / area_cm2),
             "dod": float(cap[k] / q_nom)} for k in range(t.size)]
