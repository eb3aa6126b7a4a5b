"""Weak forms of the particle-resolved half-cell model on one parent mesh with four submeshes.

Unknowns (P1 Lagrange, each on its own submesh of the parent mesh, dimensionless or volts):

* ``cs`` = c_s / c_max on ACTIVE cells (Fick diffusion, D_s(x)),
* ``ps`` = phi_s [V] on ACTIVE + CBD cells (Ohm's law, continuous across their contacts),
* ``ce`` = c_e / c_e0 on PORE + SEPARATOR cells (+ CBD with ``cbd="porous"``), ``pe`` = phi_e [V]
  on the same cells (concentrated-solution theory with electroneutrality, binary salt; the separator
  and a porous CBD are homogenised: porosity eps in the storage term, eps^b (Bruggeman) on kappa and
  D; physics/electrolyte_phases.py).

Interface (ACTIVE against PORE or SEPARATOR, or porous CBD; one ``dS`` measure with "+" on the active
side; facets against the separator or a porous CBD react over its porosity):
Butler-Volmer current density ``i_n = i0 [exp(a_a eta/V_T) - exp(-a_c eta/V_T)]`` [A/m^2],
positive anodic (Li leaves the particle); i0 = F k c_e^a_a (c_max - c_s)^a_a c_s^a_c,
eta = phi_s - phi_e - U(c_s/c_max). The Li flux into the particle is -i_n/F, the Li+ flux into the
electrolyte +i_n/F; CBD/electrolyte carries no reaction, nor does CBD/active with the dense CBD (default).
Boundaries: current collector (z = 0, solid facets only): galvanostatic current density
(``i_app`` [A/m^2] per projected area, > 0 on discharge, spread over the solid contact area) or a
fixed potential; Li face (top of the separator): Li-metal Butler-Volmer with phi_Li = 0
(``li_kinetics="butler-volmer"``) or ``"ideal"`` (phi_e = 0, uniform Li+ inflow); sides: no flux.

Scaling: mesh coordinates are micrometres (``length_unit`` = 1e-6 m); every equation is written per
(length unit)^3 and multiplied by a constant (l^2/D_s, l^2/sigma, l^2/D_e, -l^2/kappa) so that its
stiffness coefficient is O(1); concentrations are scaled by c_max and c_e0; potentials are in volts.
The interface terms use one quadrature rule for the solid and electrolyte sides, so Li is conserved
to round-off whatever the mesh.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

import tomocell.fem  # noqa: F401  (before dolfinx)
import ufl
from dolfinx import fem, mesh as dmesh
from mpi4py import MPI

from tomocell.errors import InputError
from tomocell.meshing import tags as T
from tomocell.physics.newton import NewtonSolver
from tomocell.physics.electrolyte_phases import check_cbd_model, electrolyte_phases, electrolyte_tags, reacting_fraction
from tomocell.physics.kinetics import exchange_current_density
from tomocell.physics.parameters import FARADAY, Parameters, regularised_concentration
from tomocell.physics.topology import CBD_DRY, SOLID_TAGS, MeshInput, analyse_mesh  # noqa: F401  (re-exported)
from tomocell.physics.bodies import colour_bodies, single_body

IFACE = 1  # dS subdomain id of the reaction interface
IFACE_COLOUR = 100  # dS ids 100 + k: the interface of the c_s field of colour k; dx ids 100 + k: its cells
CC_SOLID = 1  # ds subdomain ids
LI = 2
CC_ALL = 3

FIELD_NAMES = ("c_s", "phi_s", "c_e", "phi_e")


class HalfCellModel(NewtonSolver):
    """The coupled four-field problem; one backward-Euler step per :meth:`solve_step`.

    Parameters
    ----------
    inp : the parent mesh (micrometres) with cell/facet/particle tags.
    params : :class:`~tomocell.physics.parameters.Parameters`.
    li_kinetics : "butler-volmer" (default) or "ideal".
    linear_solver : "direct" (MUMPS LU, reused over ``lu_lag`` Jacobians) or "iterative" (GMRES +
        multiplicative field split with one GAMG V-cycle per field, :func:`iterative_options`;
        Krylov iterations per Newton step flat under mesh refinement, see scripts/bench_physics.py).
    solver_options : PETSc options (relative to ``petsc_prefix``) overriding the defaults, e.g.
        ``{"ksp_rtol": 1e-8}`` or ``{"fieldsplit_ps_pc_gamg_threshold": 0.05}`` (splits cs, ps, ce, pe).
    quadrature_degree : quadrature for every integral (2 is exact enough for P1 with smooth data).
    interface_quadrature_degree : quadrature of the Butler-Volmer interface terms (None: ``quadrature_degree``).
    predictor : start Newton from a linear extrapolation of the last two accepted states.
    direct_fallback_dof_limit : with the iterative solver, a Newton step whose linear solve fails
        (GMRES not converged) is redone from the same start with MUMPS LU, and the model stays on LU
        from then on (``solver_switches`` records when), if the model has at most this many DOFs
        (0 disables it). The field split relies on weak off-diagonal blocks; once the electrolyte
        depletes at high rate (c_e -> 0: kappa -> 0 and the diffusion-potential term ~ 1/c_e) they are
        no longer weak and GMRES stalls, which used to cut the time step to milliseconds.
    jacobian_reuse_ratio : keep the assembled Jacobian while Newton reduces the residual by at least
        this factor per iteration (:class:`~tomocell.physics.newton.JacobianReuse`; 0: assemble every
        iteration); ``jacobian_reuse_across_steps``: also into the next step of the same length.
    extra_residual : optional callable(model, tests) -> UFL form added to the residual (used by the
        method of manufactured solutions test).
    """

    def __init__(
        self,
        inp: MeshInput,
        params: Parameters,
        *,
        li_kinetics: str = "butler-volmer",
        linear_solver: str = "direct",
        quadrature_degree: int = 2,
        length_unit: float = T.LENGTH_UNIT_M,
        extra_residual: Callable[[HalfCellModel, list[Any]], Any] | None = None,
        petsc_prefix: str = "tomocell_",
        lu_lag: int = 3,
        solver_options: dict[str, Any] | None = None,
        predictor: bool = True,
        direct_fallback_dof_limit: int = 2_000_000,
        jacobian_reuse_ratio: float = 0.1,
        jacobian_reuse_across_steps: bool = True,
        interface_quadrature_degree: int | None = None,
        bodies: str = "particles",
        cbd: str = "dense",
    ):
        if li_kinetics not in ("butler-volmer", "ideal"):
            raise InputError(f"li_kinetics must be 'butler-volmer' or 'ideal', got {li_kinetics!r}")
        if linear_solver not in ("direct", "iterative"):
            raise InputError(f"linear_solver must be 'direct' or 'iterative', got {linear_solver!r}")
        if bodies not in ("particles", "clusters"):
            raise InputError(f"bodies must be 'particles' or 'clusters', got {bodies!r}")
        self.bodies = bodies
        self.cbd = check_cbd_model(cbd)
        #: the electrolyte-carrying phases with their porosity and transport factor (physics/electrolyte_phases.py)
        self.electrolyte = electrolyte_phases(params, cbd)
        self.electrolyte_tags = electrolyte_tags(cbd)
        self.inp = inp
        self.p = params
        self.li_kinetics = li_kinetics
        self.linear_solver = linear_solver
        self.direct_fallback_dof_limit = int(direct_fallback_dof_limit)
        #: (time-step length [s], reason) of each switch from the iterative solver to LU
        self.solver_switches: list[dict[str, Any]] = []
        self.lu_lag = int(lu_lag)
        self.solver_options = dict(solver_options or {})
        self.predictor = bool(predictor)
        self.jacobian_reuse_ratio = float(jacobian_reuse_ratio)
        self.jacobian_reuse_across_steps = bool(jacobian_reuse_across_steps)
        self.ell = float(length_unit)
        self.topo = analyse_mesh(inp, self.electrolyte_tags)
        self.comm = inp.mesh.comm
        msh = inp.mesh
        tdim = msh.topology.dim
        ct = self.topo.cell_tag

        def sub(tags: tuple[int, ...]):
            cells = np.sort(np.nonzero(np.isin(ct, tags))[0]).astype(np.int32)
            sm, emap = dmesh.create_submesh(msh, tdim, cells)[:2]
            return sm, emap

        # one c_s field per body colour (physics/bodies.py); fields: cs_0, ps, ce, pe, cs_1, ..., cs_(K-1)
        self.colouring = colour_bodies(msh, ct, self.topo.particle) if bodies == "particles" else single_body(ct)
        K = self.n_colours = self.colouring.n_colours
        self.sm_s, em_s = sub((T.ACTIVE,))
        self.sm_p, em_p = sub(SOLID_TAGS)
        self.sm_e, em_e = sub(self.electrolyte_tags)
        self.entity_maps = [em_s, em_p, em_e]
        col_sm = [(self.sm_s, em_s)] if K == 1 else []
        for k in range(K if K > 1 else 0):
            cells = np.sort(np.nonzero(self.colouring.cell_colour == k)[0]).astype(np.int32)
            col_sm.append(dmesh.create_submesh(msh, tdim, cells)[:2])
            self.entity_maps.append(col_sm[-1][1])
        self.sm_cs = [sm for sm, _ in col_sm]
        self.em_cs = [em for _, em in col_sm]
        V_cs = [fem.functionspace(sm, ("Lagrange", 1)) for sm in self.sm_cs]
        V_ps = fem.functionspace(self.sm_p, ("Lagrange", 1))
        V_ce = fem.functionspace(self.sm_e, ("Lagrange", 1))
        V_pe = fem.functionspace(self.sm_e, ("Lagrange", 1))
        self.spaces = [V_cs[0], V_ps, V_ce, V_pe, *V_cs[1:]]
        names = (*FIELD_NAMES, *(f"c_s_{k}" for k in range(1, K)))
        self.u = [fem.Function(V, name=n) for V, n in zip(self.spaces, names)]
        self.cs = [self.u[0], *self.u[4:]]  # the c_s field of each colour
        self.cs_old = [fem.Function(V, name="c_s_old") for V in V_cs]
        self.cs_n = self.cs_old[0]
        self.split_names = ("cs", "ps", "ce", "pe", *(f"cs{k}" for k in range(1, K)))
        self.ce_n = fem.Function(V_ce, name="c_e_old")
        self.dt = fem.Constant(msh, 1.0)  # s
        self.i_app = fem.Constant(msh, 0.0)  # A/m^2 of projected collector area, > 0 on discharge
        self.v_set = fem.Constant(msh, 0.0)  # V, potentiostatic mode only
        self.potentiostatic = False

        q = {"quadrature_degree": int(quadrature_degree)}
        self.dx = ufl.Measure("dx", domain=msh, subdomain_data=inp.cell_tags, metadata=q)
        # cell tags given to dx must cover ghosts too: rebuild them from the scattered values
        n_loc = ct.size
        all_cells = np.arange(n_loc, dtype=np.int32)
        self._ct_full = dmesh.meshtags(msh, tdim, all_cells, ct)
        self.dx = ufl.Measure("dx", domain=msh, subdomain_data=self._ct_full, metadata=q)
        cc = self.colouring.cell_colour
        ctag = np.where(cc >= 0, IFACE_COLOUR + cc, 0).astype(np.int32)
        self.dxc = ufl.Measure("dx", domain=msh, subdomain_data=dmesh.meshtags(msh, tdim, all_cells, ctag), metadata=q)
        qi = q if interface_quadrature_degree is None else {"quadrature_degree": int(interface_quadrature_degree)}
        idata = self.topo.iface_data.reshape(-1, 4)
        icol = cc[idata[:, 0]] if idata.size else np.zeros(0, np.int32)
        sd = [(IFACE, self.topo.iface_data)] + [(IFACE_COLOUR + k, idata[icol == k].flatten()) for k in range(K)]
        self.dS = ufl.Measure("dS", domain=msh, subdomain_data=sd, metadata=qi)
        self.react_frac = reacting_fraction(msh, ct, self.electrolyte)
        # per field: the cells its P1 mass matrix lives on (the solver's compressed blocks)
        self.field_measures = [self.dx_cs(0), self.dx(SOLID_TAGS), self.dx(self.electrolyte_tags),
                               self.dx(self.electrolyte_tags), *(self.dx_cs(k) for k in range(1, K))]
        self.ds = ufl.Measure("ds", domain=msh, subdomain_data=[(CC_SOLID, self.topo.cc_solid_data),
                                                                 (LI, self.topo.li_data),
                                                                 (CC_ALL, self.topo.cc_all_data)], metadata=q)
        # geometric measures (in length_unit^k)
        self.area_cc = self._assemble(fem.Constant(msh, 1.0) * self.ds(CC_ALL))
        self.area_cc_solid = self._assemble(fem.Constant(msh, 1.0) * self.ds(CC_SOLID))
        self.area_li = self._assemble(fem.Constant(msh, 1.0) * self.ds(LI))
        self.area_iface = self._assemble(self.react_frac("-") * self.dS(IFACE))  # reacting area
        self.vol = {name: self._assemble(fem.Constant(msh, 1.0) * self.dx(tag)) for name, tag in T.CELL_TAGS.items()}

        # scales
        p = params
        x0, _ = p.theta_limits()
        self.scale_Ds = float(np.asarray(p.D_s(x=x0)))
        self.scale_sigma = p.sigma_active
        self.scale_De = float(np.asarray(p.D_e(c=p.c_e0, T=p.temperature)))
        self.scale_kappa = float(np.asarray(p.kappa(c=p.c_e0, T=p.temperature)))
        t0 = float(np.asarray(p.t_plus(c=p.c_e0, T=p.temperature)))
        self.beta_salt = t0 * self.scale_kappa / (FARADAY * p.c_e0 * self.scale_De)
        self.extra_residual = extra_residual
        self._build_forms()
        self._build_solver(petsc_prefix)

    def dx_cs(self, k: int) -> Any:
        """Cells of the c_s field of colour k (all active cells with one colour)."""
        return self.dx(T.ACTIVE) if self.n_colours == 1 else self.dxc(IFACE_COLOUR + k)

    def dS_cs(self, k: int) -> Any:
        """Reaction interface of the c_s field of colour k."""
        return self.dS(IFACE) if self.n_colours == 1 else self.dS(IFACE_COLOUR + k)

    def interface_currents(self, u: list[Any]) -> list[tuple[Any, Any]]:
        """(i_n [A/m^2] of colour k, its dS measure) for every colour; u = (cs_0, ps, ce, pe, cs_1, ...)."""
        cs_l = [u[0], *u[4:]]
        ps, ce, pe = u[1], u[2], u[3]
        w = self.react_frac("-")  # separator-facing facets react over the separator porosity
        return [(w * self.reaction_current(c("+"), ps("+"), ce("-"), pe("-")), self.dS_cs(k)) for k, c in enumerate(cs_l)]

    # ---- constitutive expressions (UFL), shared by residual, outputs and tests -----------------
    def ocp(self, cs: Any) -> Any:
        """U(x) on the valid range, continued linearly with the end slopes outside it, so Newton still
        sees a driving force when P1 nodes overshoot full lithiation near the cut-off."""
        lo, hi = self.p.ocp_valid
        h = 1e-6 * (hi - lo)
        s_lo = float((self.p.ocp(x=lo + h) - self.p.ocp(x=lo)) / h)
        s_hi = float((self.p.ocp(x=hi) - self.p.ocp(x=hi - h)) / h)
        inner = self.p.ocp(x=ufl.min_value(ufl.max_value(cs, lo), hi), ufl=True)
        return inner + s_hi * ufl.max_value(cs - hi, 0.0) + s_lo * ufl.min_value(cs - lo, 0.0)

    def exchange_current(self, cs: Any, ce: Any) -> Any:
        """i0 [A/m^2] from the scaled concentrations."""
        p = self.p
        c = ufl.max_value(ce, 1e-9) * p.c_e0
        return exchange_current_density(p, cs, c, backend="ufl")

    def overpotential(self, cs: Any, ps: Any, pe: Any) -> Any:
        return ps - pe - self.ocp(cs)

    def reaction_current(self, cs: Any, ps: Any, ce: Any, pe: Any) -> Any:
        """Butler-Volmer i_n [A/m^2], positive anodic (Li out of the particle)."""
        p = self.p
        eta = self.overpotential(cs, ps, pe)
        vt = p.thermal_voltage
        return self.exchange_current(cs, ce) * (ufl.exp(p.alpha_a * eta / vt) - ufl.exp(-p.alpha_c * eta / vt))

    def li_current(self, ce: Any, pe: Any) -> Any:
        """Li-metal Butler-Volmer current density [A/m^2] into the electrolyte (> 0: stripping)."""
        p = self.p
        eta = -pe  # phi_Li = 0, U_Li = 0
        vt = p.thermal_voltage
        i0 = p.li_i0 * ufl.max_value(ce, 1e-9) ** p.li_c_exponent
        return i0 * (ufl.exp(p.li_alpha_a * eta / vt) - ufl.exp(-p.li_alpha_c * eta / vt))

    def electrolyte_props(self, ce: Any) -> tuple[Any, Any, Any, Any]:
        """kappa [S/m], D [m^2/s], t+, kappa_D/kappa factor 2 V_T (1-t+) TDF [V] at scaled ce."""
        p = self.p
        c = regularised_concentration(ce * p.c_e0, p.c_e_valid[1], backend="ufl")  # smooth, > 0 (docs/physics.md)
        kap = p.kappa(c=c, T=p.temperature, ufl=True)
        D = p.D_e(c=c, T=p.temperature, ufl=True)
        tp = p.t_plus(c=c, T=p.temperature, ufl=True)
        tdf = p.tdf(c=c, T=p.temperature, ufl=True)
        return kap, D, tp, 2.0 * p.thermal_voltage * (1.0 - tp) * tdf

    def ionic_current(self, ce: Any, pe: Any, tau: float = 1.0) -> Any:
        """i_e [A/m^2] times length_unit (gradients are per length unit)."""
        kap, _, _, kd = self.electrolyte_props(ce)
        return tau * kap * (-ufl.grad(pe) + kd * ufl.grad(ce) / ufl.max_value(ce, 1e-9))

    def li_flux(self, ce: Any, pe: Any, eps: float = 1.0, tau: float = 1.0) -> Any:
        """Li+ flux N [mol/m^2/s] times length_unit / c_e0 (scaled)."""
        _, D, tp, _ = self.electrolyte_props(ce)
        return -tau * D * ufl.grad(ce) + tp * self.ionic_current(ce, pe, tau) / (FARADAY * self.p.c_e0)

    # ---- residual --------------------------------------------------------------------------------
    def residual(self, u: list[Any], cs_old: Any, ce_old: Any, tests: list[Any]) -> Any:
        """The scaled residual form for states ``u`` (Functions or UFL expressions)."""
        ps, ce, pe = u[1], u[2], u[3]
        q, w, r = tests[1], tests[2], tests[3]
        cs_l, v_l = [u[0], *u[4:]], [tests[0], *tests[4:]]
        old_l = list(cs_old) if isinstance(cs_old, (list, tuple)) else [cs_old]
        p = self.p
        ell, F = self.ell, FARADAY
        dx, ds = self.dx, self.ds
        dt = self.dt
        iface = self.interface_currents(u)

        # particles: c_max dc/dt = div(D_s grad c); Li flux -i_n/F enters through the interface; one
        # equation per body colour, no flux between colours (no Li across particle contacts)
        W = ell**2 / self.scale_Ds
        Fcs = 0
        for k, (cs, v, c_o, (i_n, dS)) in enumerate(zip(cs_l, v_l, old_l, iface)):
            Ds = p.D_s(x=ufl.min_value(ufl.max_value(cs, 0.0), 1.0), ufl=True) if not p.D_s.is_constant else p.D_s()
            dxk = self.dx_cs(k)
            Fcs += W * ((cs - c_o) / dt * v * dxk + Ds / ell**2 * ufl.inner(ufl.grad(cs), ufl.grad(v)) * dxk
                        + i_n / (F * p.c_max * ell) * v("+") * dS)
        # solid potential: div(sigma grad phi_s) = 0; i_n leaves into the electrolyte; i_app leaves at z = 0
        W = ell**2 / self.scale_sigma
        i_cc = self.i_app * self.area_cc / self.area_cc_solid  # A/m^2 on the solid contact area
        Fps = W * (p.sigma_active / ell**2 * ufl.inner(ufl.grad(ps), ufl.grad(q)) * dx(T.ACTIVE)
                   + p.sigma_cbd / ell**2 * ufl.inner(ufl.grad(ps), ufl.grad(q)) * dx((T.CBD, CBD_DRY))
                   + sum(i_n / ell * q("+") * dS for i_n, dS in iface))
        if not self.potentiostatic:
            Fps += W * i_cc / ell * q * ds(CC_SOLID)
        # electrolyte mass: eps dc/dt + div N = 0, N = -D grad c + t+ i_e / F
        W = ell**2 / self.scale_De
        Fce = 0
        Fpe = 0
        for ph in self.electrolyte:  # pores; separator and porous CBD with their porosity and eps^b
            tag, e, tau = ph.tag, ph.porosity, ph.transport
            Fce += W * (e * (ce - ce_old) / dt * w * dx(tag) - ufl.inner(self.li_flux(ce, pe, e, tau), ufl.grad(w)) / ell**2 * dx(tag))
            Fpe += -ell**2 / self.scale_kappa * ufl.inner(self.ionic_current(ce, pe, tau), ufl.grad(r)) / ell**2 * dx(tag)
        if self.li_kinetics == "butler-volmer":
            i_li = self.li_current(ce, pe)
        else:
            i_li = self.i_app * self.area_cc / self.area_li
        Fce += W * (sum(-i_n / (F * p.c_e0 * ell) * w("-") * dS for i_n, dS in iface) - i_li / (F * p.c_e0 * ell) * w * ds(LI))
        # electrolyte charge: div i_e = 0; i_n enters at the interface, i_li at the Li face
        Wk = -ell**2 / self.scale_kappa
        Fpe += Wk * sum(i_n / ell * r("-") * dS for i_n, dS in iface)
        if self.li_kinetics == "butler-volmer":
            Fpe += Wk * (i_li / ell * r * ds(LI))
        return Fcs + Fps + Fce + Fpe

    def _build_forms(self) -> None:
        W = ufl.MixedFunctionSpace(*self.spaces)
        self.tests = list(ufl.TestFunctions(W))
        R = self.residual(self.u, self.cs_old, self.ce_n, self.tests)
        if self.extra_residual is not None:
            R = R + self.extra_residual(self, self.tests)
        self.F_ufl = R
        blocks = list(ufl.extract_blocks(R))
        if self.li_kinetics == "butler-volmer":
            # Salt-balance form of the electrolyte mass rows: (mass rows) - beta x (charge rows), with
            # beta = t+(c_e0) kappa0 / (F c_e0 D_e0) in the scaled units. c_e and phi_e share one space,
            # so this is an exact, invertible combination of rows: same discrete solution, same Newton
            # iterates, same Li balance. It cancels the migration term t+ i_e / F (exactly at t+ =
            # t+(c_e0)), whose phi_e coupling is ~13x the c_e diffusion and would make any block
            # preconditioner of the (c_e, phi_e) pair diverge; what is left is near-triangular.
            # (With the "ideal" Li electrode phi_e has Dirichlet rows, which a row combination
            # would not respect, so it is kept in the plain form there.)
            blocks[2] = blocks[2] - self.beta_salt * ufl.replace(blocks[3], {self.tests[3]: self.tests[2]})
        self.F_blocks = blocks

    def set_potentiostatic(self, voltage: float | None) -> None:
        """Switch to a fixed collector potential (volts; phi_s = voltage on the collector contact,
        the current follows) or back to galvanostatic operation with ``None``. The potentiostatic
        problem (its own forms and SNES) is built on first use; the state is shared."""
        if voltage is None:
            self.potentiostatic = False
            return
        if self.li_kinetics != "butler-volmer":
            raise InputError("potentiostatic (CV) operation needs the Butler-Volmer Li electrode (li_kinetics)")
        self.v_set.value = float(voltage)
        if not hasattr(self, "_problem_cv"):
            keep = (self.problem, self.F_blocks, self.bcs, self._prefix)
            self.potentiostatic = True
            self._build_forms()
            self._build_solver(self._prefix + "cv_")
            self._problem_cv = self.problem
            self.problem, self.F_blocks, self.bcs, self._prefix = keep
        self.potentiostatic = True

    def _dirichlet(self) -> list[fem.DirichletBC]:
        bcs = []
        tol = 1e-8 * max(1.0, abs(self.topo.z_max))
        if self.li_kinetics == "ideal":
            sm = self.sm_e
            sm.topology.create_connectivity(2, 3)
            facets = dmesh.locate_entities_boundary(sm, 2, lambda x: np.abs(x[2] - self.topo.z_max) < tol)
            dofs = fem.locate_dofs_topological(self.spaces[3], 2, facets)
            bcs.append(fem.dirichletbc(0.0, dofs, self.spaces[3]))
        if self.potentiostatic:
            sm = self.sm_p
            sm.topology.create_connectivity(2, 3)
            facets = dmesh.locate_entities_boundary(sm, 2, lambda x: np.abs(x[2] - self.topo.z_min) < tol)
            dofs = fem.locate_dofs_topological(self.spaces[1], 2, facets)
            bcs.append(fem.dirichletbc(self.v_set, dofs, self.spaces[1]))
        return bcs

    # ---- state ------------------------------------------------------------------------------------
    def set_state(self, cs: float, ce: float = 1.0, pe: float = 0.0, ps: float | None = None) -> None:
        """Uniform equilibrium state: cs = x, ce = c/c_e0, phi_e = pe, phi_s = U(x) + pe."""
        for f in self.cs:
            f.x.array[:] = cs
        self.u[2].x.array[:] = ce
        self.u[3].x.array[:] = pe
        self.u[1].x.array[:] = (float(np.asarray(self.p.ocp(x=cs))) + pe) if ps is None else ps
        self._history = []
        self._last_dt = None
        self.accept_step()

    def _operating_key(self) -> tuple[float, bool, float]:
        return float(self.i_app.value), bool(self.potentiostatic), float(self.v_set.value)

    def accept_step(self) -> None:
        for f, g in zip(self.cs_old, self.cs):
            f.x.array[:] = g.x.array
        self.ce_n.x.array[:] = self.u[2].x.array
        hist = getattr(self, "_history", [])
        hist.append(([f.x.array.copy() for f in self.u], getattr(self, "_last_dt", None), self._operating_key()))
        self._history = hist[-2:]

    def snapshot(self) -> list[np.ndarray]:
        """Copies of the current and the accepted state (order of :meth:`_state_functions`)."""
        return [f.x.array.copy() for f in self._state_functions()]

    def _state_functions(self) -> list[Any]:
        """c_s, phi_s, c_e, phi_e, c_s_old, c_e_old (the single-body order), then the further colours'
        c_s and c_s_old."""
        return [*self.u[:4], self.cs_old[0], self.ce_n, *self.u[4:], *self.cs_old[1:]]

    def restore(self, snap: list[np.ndarray]) -> None:
        for f, a in zip(self._state_functions(), snap):
            f.x.array[:] = a

    # ---- integrated quantities -----------------------------------------------------------------
    def _assemble(self, form_ufl: Any) -> float:
        f = fem.form(form_ufl, entity_maps=self.entity_maps if hasattr(self, "entity_maps") else None)
        return float(self.comm.allreduce(fem.assemble_scalar(f), op=MPI.SUM))

    def compile_quantities(self) -> None:
        """Forms for the scalar outputs (compiled once)."""
        ps, ce, pe = self.u[1:4]
        p = self.p
        ell3 = self.ell**3
        iface = self.interface_currents(self.u)

        def solid(f: Callable[[int], Any]) -> Any:
            return sum(f(k) * self.dx_cs(k) for k in range(self.n_colours))

        forms = {
            "li_solid_mol": solid(lambda k: p.c_max * ell3 * self.cs[k]),
            "li_electrolyte_mol": p.c_e0 * ell3 * sum(ph.porosity * ce * self.dx(ph.tag) for ph in self.electrolyte),
            # the change since the accepted state, integrated from (c - c_old) itself: differencing the
            # totals above loses ~1e-12 of them to summation round-off, which is ~1e-10 of a short
            # step's charge on a mesh of ~1e4 cells
            "dli_solid_mol": solid(lambda k: p.c_max * ell3 * (self.cs[k] - self.cs_old[k])),
            "dli_electrolyte_mol": p.c_e0 * ell3 * sum(ph.porosity * (ce - self.ce_n) * self.dx(ph.tag)
                                                       for ph in self.electrolyte),
            "interface_current_A": sum(self.ell**2 * i_n * dS for i_n, dS in iface),
            "phi_s_cc_int": ps * self.ds(CC_SOLID),
            "cs_int": solid(lambda k: self.cs[k]),
            "ce_min_proxy": ce * self.dx(T.PORE),
            "phi_e_li_int": pe * self.ds(LI),
        }
        if self.li_kinetics == "butler-volmer":
            forms["li_face_current_A"] = self.ell**2 * self.li_current(ce, pe) * self.ds(LI)
        self._qforms = {k: fem.form(v, entity_maps=self.entity_maps) for k, v in forms.items()}

    def quantities(self) -> dict[str, float]:
        if not hasattr(self, "_qforms"):
            self.compile_quantities()
        vals = {k: float(self.comm.allreduce(fem.assemble_scalar(f), op=MPI.SUM)) for k, f in self._qforms.items()}
        out = {
            "voltage_V": vals["phi_s_cc_int"] / self.area_cc_solid,
            "li_solid_mol": vals["li_solid_mol"],
            "li_electrolyte_mol": vals["li_electrolyte_mol"],
            "dli_mol": vals["dli_solid_mol"] + vals["dli_electrolyte_mol"],
            "interface_current_A": vals["interface_current_A"],
            "mean_stoichiometry": vals["cs_int"] / self.vol["active"],
            "phi_e_li_V": vals["phi_e_li_int"] / self.area_li,
        }
        if "li_face_current_A" in vals:
            out["li_face_current_A"] = vals["li_face_current_A"]
        out["c_e_min"] = self.min_scaled_electrolyte_concentration() * self.p.c_e0
        return out

    def min_scaled_electrolyte_concentration(self) -> float:
        """min over all ranks of the current c_e / c_e0 (collective)."""
        loc_min = float(self.u[2].x.array.min()) if self.u[2].x.array.size else np.inf
        return float(self.comm.allreduce(loc_min, op=MPI.MIN))

    @property
    def applied_current_A(self) -> float:
        """Applied cell current [A] (> 0 on discharge) for the projected collector area."""
        return float(self.i_app.value) * self.area_cc * self.ell**2

    def one_c_current_A(self) -> float:
        """1C [A]: active-material capacity between the initial and cut-off stoichiometries in 1 h."""
        x0, x1 = self.p.theta_limits()
        return FARADAY * self.p.c_max * self.vol["active"] * self.ell**3 * (x1 - x0) / 3600.0

    def set_current_A(self, current: float) -> None:
        self.i_app.value = current / (self.area_cc * self.ell**2)

    def dof_count(self) -> int:
        return int(sum(V.dofmap.index_map.size_global * V.dofmap.index_map_bs for V in self.spaces))
