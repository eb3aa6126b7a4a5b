"""Butler-Volmer exchange-current density of the active material, and the smooth floor under its
stoichiometry factors (the one formula, for the residual in UFL and the interface table in numpy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tomocell.physics.expressions import backend_namespace
from tomocell.physics.parameters import FARADAY

if TYPE_CHECKING:
    from tomocell.physics.parameters import Parameters

#: Width of the smooth floor of the stoichiometry factors theta and 1 - theta in the exchange current
#: (:func:`regularised_vacancies`): 1e-5 changes the 1C and 5C capacities of the coarse tiny demo by
#: +0.008 % and +0.005 % from the 1e-6 values (1e-4: +0.06 %, +0.02 %).
THETA_FLOOR = 1e-5


def regularised_vacancies(theta: Any, backend: str = "numpy") -> tuple[Any, Any]:
    """(theta_reg, (1 - theta)_reg): theta and 1 - theta through the smooth floor
    ``f(z) = (z + sqrt(z^2 + 4 d^2)) / 2`` (d = THETA_FLOOR), for the factors (c_max theta)^alpha_c
    (c_max (1 - theta))^alpha_a of i0.

    f(z) = z (1 + d^2/z^2 + ...) above the floor (relative 1e-4 at z = 100 d), d at z = 0, d^2/|z|
    below: smooth, > 0 for every z (no underflow), with a bounded slope. Why: near the end of a
    discharge the surface stoichiometry that gives the cut-off voltage is within about 1e-6 of full
    lithiation, where sqrt(1 - theta) has an unbounded slope; the former hard clamp at 1 - 1e-9 had
    a zero slope past it, and Newton cycled between the two sides of the kink (2-cycles of the
    residual, 15-iteration failures, 0.03 s steps: with the BPX NMC111 set the tiny demo's 1C
    discharge took 345 steps, most of them in its last 0.2 % of depth of discharge). A softplus floor
    underflows to 0 a few hundred d past the bound, where the square root's slope is infinite."""
    d = THETA_FLOOR
    ns = backend_namespace(backend)

    def f(z: Any) -> Any:
        return 0.5 * (z + ns["sqrt"](z * z + 4.0 * d * d))

    return f(theta), f(1.0 - theta)


def exchange_current_density(p: Parameters, theta: Any, c: Any, backend: str = "numpy") -> Any:
    """i0 = F k c^alpha_a (c_max (1 - theta))^alpha_a (c_max theta)^alpha_c [A/m^2] at the stoichiometry
    theta and the salt concentration c [mol/m^3]: the one formula, for UFL (the residual, backend
    "ufl") and numpy arrays (the interface table) alike. theta and 1 - theta pass through the smooth
    floor of :func:`regularised_vacancies`; the callers keep c above 0."""
    th, vac = regularised_vacancies(theta, backend)
    return FARADAY * p.k_ct * c**p.alpha_a * (p.c_max * vac)**p.alpha_a * (p.c_max * th)**p.alpha_c
