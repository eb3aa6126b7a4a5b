"""Time stepping of a :class:`~tomocell.physics.model.HalfCellModel`: adaptive backward Euler, retries,
and events located in time (voltage cut-off by a bracketed secant search, depths of discharge exactly).

The Newton solve itself is PETSc SNES with the exact Jacobian (set up in the model); this module
decides step sizes: grow after easy steps, halve and retry after a failed Newton solve (the state
is restored first, so a failed step leaves nothing behind), and never change the depth of discharge
by more than ``max_ddod`` per step.

Step-size rule (:func:`next_step_size`), from the Newton iterations of the accepted step, since the
tight Newton tolerance (needed for 1e-10 Li balance) makes 3-5 iterations the norm:
``<= easy_newton`` grow by ``grow``; ``<= moderate_newton`` grow by ``grow_moderate``; ``<= hard_newton``
keep; more: reduce by ``reduce_hard``. After a retry the step that converged is kept (it is not
halved again). Before this Newton-count rule the step never grew while Newton needed 5-6 iterations,
which is the norm once the electrolyte depletes at high rate: a 75 um electrode at 10C spent 150
steps of ~0.1 s in its last 9 % of discharge.

Two caps follow. At the voltage slope of the last step the cell voltage changes by at most
``max_dvoltage_V``: this resolves the knee of the discharge curve before the cut-off and steps into
it gradually, where large steps would fail Newton and be retried (on the 758 k-tet demo mesh the last
4 % of a 1C discharge took 6 Newton iterations per step plus failed tries before this cap). And a
local error estimate of the voltage stays near ``max_verror_V`` (:func:`voltage_error_estimate`):
the slope cap sees the knee one step late (the voltage curvature grows by ~2x per step there), the
error estimate sees it coming (96 k-tet demo mesh at 1C: 845 -> 657 Newton iterations, same answer
to 1.5e-4, docs/performance.md).

A step whose electrolyte concentration falls below ``-ce_negative_tol`` (relative to c_e0) is
rejected and retried shorter, like a Newton failure: P1 undershoot of a few 1e-6 near a depleted
region is discretisation error and is accepted (and reported in the time series), a sizeable negative
concentration is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tomocell.errors import SolverError
from tomocell.log import get_logger
from tomocell.physics.model import HalfCellModel

log = get_logger("physics.solver")


@dataclass
class StepControl:
    dt_init_s: float = 1.0
    dt_min_s: float = 1e-4
    dt_max_s: float = 600.0
    grow: float = 1.6
    shrink: float = 0.5
    easy_newton: int = 4
    moderate_newton: int = 6
    hard_newton: int = 9
    grow_moderate: float = 1.25
    reduce_hard: float = 0.7
    max_cuts: int = 14
    ce_negative_tol: float = 1e-3
    max_dvoltage_V: float = 0.05
    #: target of the local voltage error estimate per step [V] (<= 0: off), see :func:`next_step_size`
    max_verror_V: float = 2e-3


def next_step_size(dt_planned: float, dt_taken: float, newton: int, retries: int, ctl: StepControl,
                   dvoltage_V: float = 0.0, verror_V: float = 0.0) -> float:
    """The next step length [s] after an accepted step (see the module docstring for the rule).

    ``dt_planned`` is the step the controller asked for, ``dt_taken`` the one accepted (shorter after
    retries, or when the step was cut to land on a snapshot or the end of a rest); ``dvoltage_V`` the
    change of cell voltage over the accepted step, ``verror_V`` the local error estimate of that change
    (:func:`voltage_error_estimate`): the next step is at most ``0.9 dt sqrt(max_verror_V / verror_V)``.
    """
    if retries > 0:
        dt = dt_taken
    elif dt_taken < 0.999 * dt_planned:  # truncated to land on an event: says nothing about difficulty
        dt = dt_planned * (1.0 if newton <= ctl.hard_newton else ctl.reduce_hard)
    elif newton <= ctl.easy_newton:
        dt = dt_taken * ctl.grow
    elif newton <= ctl.moderate_newton:
        dt = dt_taken * ctl.grow_moderate
    elif newton <= ctl.hard_newton:
        dt = dt_taken
    else:
        dt = dt_taken * ctl.reduce_hard
    if ctl.max_dvoltage_V > 0 and abs(dvoltage_V) > 0 and dt_taken > 0:
        dt = min(dt, dt_taken * ctl.max_dvoltage_V / abs(dvoltage_V))
    if ctl.max_verror_V > 0 and verror_V > 0 and dt_taken > 0:
        dt = min(dt, 0.9 * dt_taken * np.sqrt(ctl.max_verror_V / verror_V))
    return min(max(dt, ctl.dt_min_s), ctl.dt_max_s)


def voltage_error_estimate(dt_s: float, dvoltage_V: float, dt_prev_s: float, dvoltage_prev_V: float) -> float:
    """Local error estimate [V] of a backward-Euler step's voltage change, from the linear extrapolation
    of the step before (same current): ``|dV - dt/dt_prev dV_prev| dt / (dt + dt_prev)``, the
    predictor-corrector (Milne) estimate of the O(dt^2) local error of backward Euler, the voltage
    standing in for the state it is a functional of. It is ~0.2-0.5 mV per 2 % depth-of-discharge
    step on the flat of a 1C discharge and grows by ~2x per step into the knee before the cut-off,
    where it shrinks the steps before Newton fails."""
    if dt_s <= 0 or dt_prev_s <= 0:
        return 0.0
    return abs(dvoltage_V - dt_s / dt_prev_s * dvoltage_prev_V) * dt_s / (dt_s + dt_prev_s)


@dataclass
class StepStats:
    dt: float
    newton: int
    krylov: int
    retries: int
    #: Jacobians assembled (-1: not counted); with a reused Jacobian Newton needs more, cheaper iterations
    jacobians: int = -1

    @property
    def effort(self) -> int:
        """The Newton count the step-size rule sees: the iterations, but with a reused Jacobian
        (:class:`~tomocell.physics.newton.JacobianReuse`) at most the assemblies + 2. The Jacobian is
        assembled again only when an iteration contracted the residual poorly, so the assemblies count
        the iterations in which the nonlinearity was felt; the chord iterations in between are cheap
        and would otherwise stop the steps from growing. Without reuse (one assembly per iteration)
        this is the iteration count, as before."""
        return self.newton if self.jacobians < 0 else min(self.newton, self.jacobians + 2)


def try_step(model: HalfCellModel, dt: float, ctl: StepControl, *, allow_shorter: bool = True) -> StepStats:
    """One backward-Euler step of ``dt`` from the accepted state; the new state is NOT accepted.

    After a Newton failure the state is restored and the step is retried with ``dt * shrink``
    (``allow_shorter``): the returned ``StepStats.dt`` is the step actually taken. Raises SolverError
    (state restored) when no step down to ``dt_min_s`` converges, or at once if not ``allow_shorter``.
    """
    start = model.snapshot()
    newton = krylov = retries = 0
    count = getattr(model, "jacobians_assembled", lambda: -1)
    jac0 = count()
    h = dt
    while True:
        ok, its, kits = model.solve_step(h)
        newton += its
        krylov += kits
        if ok and model.min_scaled_electrolyte_concentration() < -ctl.ce_negative_tol:
            log.debug("step of %.3g s rejected: negative electrolyte concentration", h)
            ok = False
        if ok:
            return StepStats(h, newton, krylov, retries, -1 if jac0 < 0 else count() - jac0)
        model.restore(start)
        retries += 1
        h *= ctl.shrink
        if not allow_shorter or retries > ctl.max_cuts or h < ctl.dt_min_s:
            raise SolverError(f"Newton failed {retries} times from t-step {dt:.4g} s (last try {h / ctl.shrink:.3g} s)")


def locate_event(
    model: HalfCellModel,
    g: Callable[[], float],
    dt_hi: float,
    g_lo: float,
    g_hi: float,
    ctl: StepControl,
    tol: float,
    max_iter: int = 20,
) -> tuple[float, StepStats]:
    """Find dt in (0, dt_hi] with g(state after dt) = 0, from the accepted state (g_lo > 0 >= g_hi).

    Illinois-modified regula falsi on the step length; ends on the non-negative side of g within
    ``tol`` (so a voltage cut-off is met, not overshot). Leaves the model at the found state
    (not accepted).
    """
    start = model.snapshot()
    lo, hi = 0.0, dt_hi
    flo, fhi = g_lo, g_hi
    side = 0
    best = None
    stats = StepStats(0.0, 0, 0, 0, 0)
    for _ in range(max_iter):
        dt = 0.5 * (lo + hi) if not np.isfinite(fhi) else (lo * fhi - hi * flo) / (fhi - flo)
        dt = min(max(dt, lo + 1e-6 * (hi - lo)), hi - 1e-6 * (hi - lo))
        model.restore(start)
        try:
            s = try_step(model, dt, ctl, allow_shorter=False)
            f = g()
        except SolverError:
            # Newton fails only past the cut-off (surfaces saturate): that is the far side
            model.restore(start)
            s = StepStats(dt, 0, 0, 1)
            f = -np.inf
        stats = StepStats(dt, stats.newton + s.newton, stats.krylov + s.krylov, stats.retries + s.retries,
                          stats.jacobians + max(s.jacobians, 0))
        if f >= 0:
            best = (dt, model.snapshot())
            if f <= tol:
                return dt, stats
            lo, flo = dt, f
            if side == 1:
                fhi *= 0.5
            side = 1
        else:
            hi, fhi = dt, (f if np.isfinite(f) else fhi)
            if side == -1:
                flo *= 0.5
            side = -1
        if hi - lo <= 1e-9 * dt_hi:
            break
    if best is None:
        raise SolverError("cut-off event: no step length found that ends above the cut-off")
    model.restore(best[1])
    return best[0], stats
