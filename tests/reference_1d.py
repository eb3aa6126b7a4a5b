"""An independent 1D reference for a flat half-cell, written separately from tomocell.physics.

Geometry (z up, SI units): an active slab 0 <= z <= a on the current collector, a free-electrolyte
layer a <= z <= a + Lp (porosity 1, no tortuosity), a homogenised separator of thickness Ls
(porosity eps, effective transport eps^b) whose top is the Li-metal face. Every interface is flat and
as large as the collector, so the reaction current density equals the applied current density i
(A/m^2, > 0 on discharge) everywhere.

Nothing here imports tomocell: the parameters are read from the JSON data file with this module's
own evaluator and constants, the equations are written out below (strong form), and they are solved
with scipy (a shooting ODE solve for the steady electrolyte, a finite-volume method of lines for
the slab), so a coefficient or sign error in the model's weak forms or its parameter handling is
not shared by the reference.

Equations (concentrated-solution theory, binary salt):
* electrolyte, steady: Li+ flux N = -D_eff c' + t+ i_e / F = -i / F and ionic current
  i_e = kappa_eff (-phi' + 2 R T / F (1 - t+) TDF c'/c) = -i (both flow from the Li face down);
  the total salt is the initial one (the Li face gives what the interface takes).
* Li face (phi_Li = 0): i = i0_Li (c/c0)^g [exp(aa eta/V_T) - exp(-ac eta/V_T)], eta = -phi_e.
* interface: -i = i0 [exp(aa eta/V_T) - exp(-ac eta/V_T)], eta = phi_s - phi_e - U(x_s),
  i0 = F k c^aa (c_max (1 - x_s))^aa (c_max x_s)^ac.
* slab: dx/dt = D_s x'', D_s c_max x'(a) = i / F, x'(0) = 0; Ohm: phi_s(0) = phi_s(a) - i a / sigma.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

F = 96485.33212  # C/mol (CODATA 2018)
R = 8.314462618  # J/(mol K)
DATA = Path(__file__).resolve().parents[1] / "physics" / "parameters"


NUMPY_FUNCS = {"exp": np.exp, "sqrt": np.sqrt, "log": np.log, "tanh": np.tanh}


def _value(entry, funcs=None, **var):
    """A data-file entry: its number, or its expression in the variables ``var`` evaluated with
    ``funcs`` (numpy by default; tests/test_physics_mms.py passes the UFL functions)."""
    if "value" in entry:
        return float(entry["value"])
    ns = {**(NUMPY_FUNCS if funcs is None else funcs), "__builtins__": {}}
    return eval(entry["expression"], ns, dict(var))  # noqa: S307 - our own data file


class Ref:
    """The parameter set ``name`` of physics/parameters, read independently."""

    def __init__(self, name: str = "lco_ramadass2004_lipf6_ecemc", overrides: dict[str, float] | None = None):
        d = json.loads((DATA / f"{name}.json").read_text())
        for key, v in (overrides or {}).items():  # dotted keys, numbers (as tomocell's --param)
            *path, last = key.split(".")
            node = d
            for k in path:
                node = node[k]
            node[last] = {"value": float(v)}
        self.d = d
        self.T = _value(d["temperature"])
        self.VT = R * self.T / F
        a, e, s, li = d["active"], d["electrolyte"], d["separator"], d["li_metal"]
        self.c_max, self.D_s, self.sigma = _value(a["c_max"]), _value(a["diffusivity"]), _value(a["conductivity"])
        self.k, self.aa, self.ac = _value(a["rate_constant"]), _value(a["alpha_a"]), _value(a["alpha_c"])
        self.c0 = _value(e["c0"])
        self.eps, self.brug = _value(s["porosity"]), _value(s["bruggeman"])
        self.li_i0, self.li_g = _value(li["exchange_current_density"]), _value(li["c_exponent"])
        self.li_aa, self.li_ac = _value(li["alpha_a"]), _value(li["alpha_c"])

    def U(self, x):
        return _value(self.d["active"]["ocp"], x=x)

    def kappa(self, c):
        return _value(self.d["electrolyte"]["conductivity"], c=c, T=self.T)

    def D_e(self, c):
        return _value(self.d["electrolyte"]["diffusivity"], c=c, T=self.T)

    def t_plus(self, c):
        return _value(self.d["electrolyte"]["transference"], c=c, T=self.T)

    def tdf(self, c):
        return _value(self.d["electrolyte"]["thermodynamic_factor"], c=c, T=self.T)

    def x_at(self, V):
        """Stoichiometry where U(x) = V (the OCP falls with x on its valid range)."""
        return brentq(lambda x: self.U(x) - V, 0.45, 0.999999)

    @staticmethod
    def bv_eta(i, i0, aa, ac, VT):
        """eta with i0 [exp(aa eta/VT) - exp(-ac eta/VT)] = i."""
        f = lambda eta: i0 * (np.exp(aa * eta / VT) - np.exp(-ac * eta / VT)) - i  # noqa: E731
        return brentq(f, -2.0, 2.0, xtol=1e-14)

    def i0(self, x, c):
        return F * self.k * c**self.aa * (self.c_max * (1 - x)) ** self.aa * (self.c_max * x) ** self.ac

    # ---- steady electrolyte -----------------------------------------------------------------------
    def electrolyte(self, i, a, Lp, Ls):
        """Steady c(z), phi_e(z) on [a, a + Lp + Ls] (m, mol/m^3, V) at current density i: a function
        z -> (c, phi_e) plus c and phi_e at the interface z = a."""
        ztop = a + Lp + Ls

        def tau(z):
            return 1.0 if z <= a + Lp else self.eps**self.brug

        def porosity(z):
            return 1.0 if z <= a + Lp else self.eps

        def rhs(z, y):  # y = c, phi - phi(a), salt integral
            c = y[0]
            dc = (1 - self.t_plus(c)) * i / (F * self.D_e(c) * tau(z))
            dphi = i / (self.kappa(c) * tau(z)) + 2 * self.VT * (1 - self.t_plus(c)) * self.tdf(c) * dc / c
            return [dc, dphi, porosity(z) * c]

        def run(ca):
            return solve_ivp(rhs, (a, ztop), [ca, 0.0, 0.0], method="RK45", rtol=1e-11, atol=1e-12,
                             dense_output=True, max_step=Ls / 200, first_step=Ls / 1e4)

        salt = self.c0 * (Lp + self.eps * Ls)
        ca = brentq(lambda ca: run(ca).y[2, -1] - salt, 0.3 * self.c0, self.c0, xtol=1e-10)
        sol = run(ca)
        c_top = sol.y[0, -1]
        phi_top = -self.bv_eta(i, self.li_i0 * (c_top / self.c0) ** self.li_g, self.li_aa, self.li_ac, self.VT)
        shift = phi_top - sol.y[1, -1]

        def at(z):
            y = sol.sol(np.clip(z, a, ztop))
            return y[0], y[1] + shift

        return at, ca, shift

    # ---- slab diffusion ---------------------------------------------------------------------------
    def slab_surface(self, x0, i, a, t, n=400):
        """Surface stoichiometry x(a, t) of the slab [0, a] from x0 under Li flux i/F (finite volumes,
        BDF), the surface value extrapolated with the boundary flux."""
        h = a / n
        j = i / (F * self.c_max)  # dx/dt flux scale: D_s x'(a) = j

        def rhs(_, x):
            g = np.zeros(n + 1)
            g[1:n] = self.D_s * np.diff(x) / h
            g[n] = j
            return np.diff(g) / h

        sol = solve_ivp(rhs, (0.0, t), np.full(n, x0), method="BDF", rtol=1e-9, atol=1e-12,
                        jac_sparsity=None, dense_output=True)
        return lambda tt: sol.sol(tt)[-1] + j * h / (2 * self.D_s)

    def voltage(self, i, a, Lp, Ls, x_s):
        """Collector potential [V] with surface stoichiometry x_s and the steady electrolyte."""
        _, ca, pa = self.electrolyte(i, a, Lp, Ls)
        eta = self.bv_eta(-i, self.i0(x_s, ca), self.aa, self.ac, self.VT)
        return pa + self.U(x_s) + eta - i * a / self.sigma

    def voltage_initial(self, i, a, Lp, Ls, x0, layer_transport=1.0, react_fraction=1.0):
        """Collector potential [V] at t = 0+: uniform c0 and x0, only the ohmic drops in the electrolyte
        (kappa with Bruggeman in the separator) and solid, the interface and Li-face kinetics.
        ``layer_transport``: factor on kappa in the Lp layer (a porous medium there, eps^b);
        ``react_fraction``: the wetted fraction of the interface (the local current is i / it)."""
        k0 = self.kappa(self.c0)
        phi_top = -self.bv_eta(i, self.li_i0, self.li_aa, self.li_ac, self.VT)
        pa = phi_top - i * (Lp / (k0 * layer_transport) + Ls / (k0 * self.eps**self.brug))
        eta = self.bv_eta(-i / react_fraction, self.i0(x0, self.c0), self.aa, self.ac, self.VT)
        return pa + self.U(x0) + eta - i * a / self.sigma
