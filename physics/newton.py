"""PETSc Newton-Krylov set-up and the step solve of :class:`~tomocell.physics.model.HalfCellModel`.

:func:`iterative_options` (GMRES + multiplicative field split, one GAMG V-cycle per field),
:func:`newton_convergence` (the SNES stopping rule), and :class:`NewtonSolver`, the solver half of the
model: it builds the SNES for the model's block residual (direct MUMPS LU reused over Jacobians, or the
field split with compressed diagonal blocks), predicts Newton's start, solves one step and falls back
to LU when GMRES fails. It uses the model's forms, spaces, measures and state (``F_blocks``, ``u``,
``spaces``, ``dx``, ``entity_maps``, ``bcs`` ...) and is not used on its own.
"""

from __future__ import annotations

import functools

from typing import Any

import numpy as np

import tomocell.fem  # noqa: F401  (before dolfinx)
import ufl
from dolfinx import fem
from petsc4py import PETSc
from mpi4py import MPI

from tomocell.errors import TomocellError
from tomocell.log import get_logger

log = get_logger(__name__)

SPLIT_NAMES = ("cs", "ps", "ce", "pe")  # fieldsplit names: options prefix <prefix>fieldsplit_<name>_


def _csr_keys(M: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the owned rows of a PETSc AIJ matrix and one int64 key (row * N + global column) per entry."""
    ai, aj, av = M.getValuesCSR()
    n = np.int64(M.getSize()[1])
    rows = np.repeat(np.arange(ai.size - 1, dtype=np.int64), np.diff(ai)) + M.getOwnershipRange()[0]
    return ai, aj, av, rows * n + aj.astype(np.int64)


def iterative_options(names: tuple[str, ...] = SPLIT_NAMES) -> dict[str, Any]:
    """PETSc options of the scalable linear solver (relative to the model's options prefix).

    GMRES preconditioned by a multiplicative (block Gauss-Seidel) field split in the order
    c_s, phi_s, c_e, phi_e, one smoothed-aggregation AMG V-cycle (GAMG) per field. This works because
    the residual is written so that every diagonal block is an O(1)-scaled elliptic or
    mass + diffusion operator and every off-diagonal coupling is weak against it: the Butler-Volmer
    terms are small next to the scaled conduction/diffusion terms, and the migration coupling of the
    electrolyte mass rows to phi_e is removed by the salt-balance row combination (see
    ``HalfCellModel._build_forms``).

    The relative tolerance is loose (1e-4): with a reused Jacobian
    (:class:`JacobianReuse`) each Newton iteration contracts the residual by up to 0.1 anyway, so a
    tighter linear solve buys nothing; Newton's stopping rule is on the true residual and unchanged.
    Measured on the 12.6 k-tet demo mesh, 1C: 6 Krylov iterations per Newton iteration instead of 14,
    the same capacity to 1e-6.
    """
    o: dict[str, Any] = {
        "ksp_type": "gmres", "ksp_rtol": 1e-4, "ksp_atol": 1e-14, "ksp_max_it": 400,
        "ksp_gmres_restart": 200, "ksp_pc_side": "right", "ksp_norm_type": "unpreconditioned",
        "pc_type": "fieldsplit", "pc_fieldsplit_type": "multiplicative",
        "pc_fieldsplit_off_diag_use_amat": True,
    }
    for name in names:  # SPLIT_NAMES, then cs1, cs2 ... for the c_s fields of further body colours
        f = f"fieldsplit_{name}_"
        o.update({f + "ksp_type": "preonly", f + "pc_type": "gamg", f + "pc_gamg_threshold": 0.02})
    return o


def newton_convergence(it: int, xnorm: float, gnorm: float, fnorm: float, fnorms: list[float], max_it: int) -> int:
    """PETSc SNES convergence reason for Newton iteration ``it`` (``fnorms``: residual norms so far,
    ``fnorms[0]`` the initial one, the last ``fnorm``); > 0 converged, < 0 diverged, 0 continue.

    Newton with the exact Jacobian stops on a small residual (1e-11 relative, 1e-13 absolute) with a
    small update, or when the update is at round-off, so Li is conserved to ~1e-13. Third case: the
    residual has reached the round-off floor of an ill-conditioned Jacobian. Once the electrolyte is
    depleted (c_e ~ 0 somewhere) the residual stalls at ~1e-10 after one or two quadratic iterations
    and the update stays noisy, so neither test can pass and every step size failed (measured: 75 um
    electrode at 10C, residual 1e-4 -> 8e-10 -> 2.9e-10 -> flat for 13 iterations, down to
    dt = 2e-4 s). Accepted when the residual fell by >= 1e5, is below 1e-8 (the scaled state is O(1))
    and made no progress over two iterations.

    A solve that stagnates above that floor (from iteration 6 on, the residual not halved over the
    last three iterations) is given up at once rather than at ``max_it``: at the knee of a discharge
    curve, where particle surfaces saturate one after another, such solves wandered at 1e-3-1e-2 for
    all 15 iterations and then failed anyway (measured on the 96 k-tet demo mesh at 1C: 9 failed tries,
    ~100 of 773 Newton iterations), and the shorter retry converges.
    """
    if not np.isfinite(fnorm):
        return -4  # SNES_DIVERGED_FNORM_NAN
    f0 = fnorms[0]
    if it == 0:
        return 2 if fnorm < 1e-14 else 0  # SNES_CONVERGED_FNORM_ABS
    if fnorm <= max(1e-13, 1e-11 * f0) and gnorm <= 1e-8 * max(1.0, xnorm):
        return 3  # SNES_CONVERGED_FNORM_RELATIVE
    if gnorm <= 1e-13 * max(1.0, xnorm):
        return 4  # SNES_CONVERGED_SNORM_RELATIVE
    if it >= 3 and fnorm <= 1e-5 * f0 and fnorm <= 1e-8 and fnorm >= 0.7 * fnorms[-3]:
        return 5  # SNES_CONVERGED_ITS: at the round-off floor
    if it >= 6 and fnorm > 1e-8 and fnorm > 0.5 * fnorms[-4]:
        return -6  # stagnated (reported as SNES_DIVERGED_LINE_SEARCH): retry with a shorter step now
    if it >= max_it:
        return -5  # SNES_DIVERGED_MAX_IT
    return 0


class JacobianReuse:
    """When to assemble the Jacobian again: Newton with a reused Jacobian (a modified / chord Newton).

    Profiled on the demo mesh, Jacobian assembly was 57-62 % of a discharge (about 5 residuals' cost
    each), one per Newton iteration, while the Jacobian hardly changes within a time step and between
    steps of the same length. The assembled Jacobian (and with it the preconditioner built from it) is
    kept as long as the iteration it drives still contracts the residual by ``max_ratio`` per
    iteration; it is assembled again when

    * the last iteration reduced the residual norm by less (``f_k > max_ratio * f_(k-1)``),
    * a solve starts with another time-step length (the mass terms are ~ 1/dt) or operating condition
      (current, potentiostatic voltage) than the Jacobian's, or after a failed solve.

    The stopping rule (:func:`newton_convergence`) is unchanged, so the converged solution is the
    same to the Newton tolerance; only the path there is cheaper. ``max_ratio <= 0``: assemble every
    iteration (plain Newton). The decision uses global norms only, so all ranks take it together.
    """

    def __init__(self, max_ratio: float, fhist: list[float], across_steps: bool = True):
        self.max_ratio = float(max_ratio)
        self.across_steps = bool(across_steps)
        self.fhist = fhist  # residual norms of the running solve (filled by the convergence test)
        self.key: Any = None
        self.valid = False
        self.assembled = 0  # Jacobians assembled (over the problem's life)

    def begin(self, key: Any) -> None:
        """A solve starts with ``key`` = (dt, operating condition): drop the Jacobian of another key."""
        if key != self.key or not self.across_steps:
            self.valid = False
        self.key = key

    def invalidate(self) -> None:
        self.valid = False

    def needed(self, it: int) -> bool:
        """Assemble at Newton iteration ``it``?"""
        if self.max_ratio <= 0 or not self.valid:
            return True
        f = self.fhist
        return it > 0 and len(f) >= 2 and f[-1] > self.max_ratio * f[-2]

    def __call__(self, assemble: Any) -> Any:
        """A SNES Jacobian callback that calls ``assemble(snes, x, J, P)`` only when :meth:`needed`.
        Skipping it leaves J and P (and their object state) untouched, so the KSP keeps the
        preconditioner built from them without setting it up again."""
        def jacobian(snes, x, J, P):  # noqa: ANN001
            if self.needed(snes.getIterationNumber()):
                assemble(snes, x, J, P)
                self.assembled += 1
                self.valid = True

        return jacobian


def assemble_residual(snes: Any, x: Any, b: Any, u: Any, residual: Any, jacobian: Any, bcs: Any,
                      _blocks: Any = None) -> None:
    """DOLFINx's SNES residual callback (``dolfinx.fem.petsc.assemble_residual``) without the lifting
    when there are no Dirichlet conditions. DOLFINx applies the lifting of the Jacobian forms for every
    residual regardless, which iterates over all cells of all 16 Jacobian blocks: it was half the cost of
    a residual (10.7 of 19 ms on the 12.6 k-tet demo mesh) for a galvanostatic model, which has no
    Dirichlet condition. Identical result (the lifting adds nothing without conditions)."""
    from dolfinx.fem.petsc import assemble_residual as dolfinx_residual, assemble_vector, assign
    from dolfinx.la.petsc import _ghost_update, _zero_vector

    if bcs:
        return dolfinx_residual(snes, x, b, u, residual, jacobian, bcs, _blocks)
    _ghost_update(x, PETSc.InsertMode.INSERT, PETSc.ScatterMode.FORWARD)
    assign(x, u)
    if b.getType() != PETSc.Vec.Type.NEST:
        b.setAttr("_blocks", _blocks)
        x.setAttr("_blocks", _blocks)
    _zero_vector(b)
    assemble_vector(b, residual)
    _ghost_update(b, PETSc.InsertMode.ADD, PETSc.ScatterMode.REVERSE)
    _ghost_update(b, PETSc.InsertMode.INSERT, PETSc.ScatterMode.FORWARD)


@functools.cache
def _problem_class() -> type:
    """DOLFINx's NonlinearProblem without its eager ``__del__``.

    Its ``__del__`` destroys the SNES, matrices and vectors at once, which is collective (MUMPS and
    communicator teardown communicate). A model sits in reference cycles, so the garbage collector
    frees it at a moment that differs between ranks: one rank destroying while the other was in a
    collective of the next model deadlocked ``mpirun -n 2`` (tests/test_protocols_mpi.py, once models
    were freed at all). Without the eager destroy, petsc4py's own deallocation destroys serial objects
    at once and stashes parallel ones for PETSc's collective delayed destruction; a run frees its
    model deterministically with :meth:`NewtonSolver.close` on every rank."""
    from dolfinx.fem.petsc import NonlinearProblem

    class Problem(NonlinearProblem):
        def __del__(self) -> None:  # see _problem_class
            pass

    return Problem


class NewtonSolver:
    """Solver methods of :class:`~tomocell.physics.model.HalfCellModel` (a mixin: see the module)."""

    def close(self) -> None:
        """Destroy the solver's PETSc objects now (collective: call it on every rank together). The
        model cannot solve afterwards; calling it twice is harmless."""
        pr = getattr(self, "problem", None)
        if pr is None:
            return
        for name in ("_snes", "_A", "_b", "_x", "_P_mat"):  # what NonlinearProblem.__del__ destroys
            obj = getattr(pr, name, None)
            if obj is not None:
                obj.destroy()

    def _build_solver(self, prefix: str) -> None:
        from tomocell.physics.checkpoint import deferred_signals  # here: checkpoint -> outputs -> model -> newton

        NonlinearProblem = _problem_class()

        # options left in PETSc's global database by an earlier model with the same prefix (the split
        # options stay there until a preconditioner is set up) would silently apply to this one: a direct
        # model built after an iterative one inherited right preconditioning and an unpreconditioned
        # norm, and its lagged-LU GMRES then failed after a current switch
        db = PETSc.Options()
        for key in list(db.getAll()):
            if key.startswith(prefix):
                db.delValue(key)
        opts: dict[str, Any] = {
            "snes_type": "newtonls",
            "snes_linesearch_type": "basic",
            "snes_max_it": 15,
            "snes_rtol": 1e-11,
            "snes_atol": 1e-13,
            "snes_stol": 0.0,
        }
        if self.linear_solver == "direct":
            # LU (MUMPS) refactorised every `lag` Jacobians and used as the preconditioner of GMRES
            # in between: the Newton steps still use the exact Jacobian, the factorisation (the
            # dominant cost) is reused across Newton iterations and time steps.
            opts.update({"ksp_type": "gmres", "ksp_rtol": 1e-12, "ksp_atol": 1e-16, "ksp_max_it": 50,
                         "pc_type": "lu", "pc_factor_mat_solver_type": "mumps",
                         "snes_lag_preconditioner": self.lu_lag, "snes_lag_preconditioner_persists": True})
            kind = "mpi"
            P = None
        else:
            opts.update({k: v for k, v in iterative_options().items() if not k.startswith("fieldsplit_")})
            kind = "nest"
            P = None  # the Jacobian itself is the preconditioning matrix (no second assembly)
        # user overrides last; options of the split solvers stay in the options database, because
        # PETSc reads them only when the preconditioner is first set up (after this returns)
        names = getattr(self, "split_names", SPLIT_NAMES)
        nested = {k: v for k, v in iterative_options(names).items() if k.startswith("fieldsplit_")}
        for k, v in self.solver_options.items():
            (nested if k.startswith("fieldsplit_") else opts)[k] = v
        self.bcs = self._dirichlet()
        self._prefix = prefix
        with deferred_signals():  # a signal mid-construction left a half-built object (see there)
            self.problem = NonlinearProblem(
                self.F_blocks, self.u, bcs=self.bcs, P=P, kind=kind, petsc_options_prefix=prefix,
                petsc_options=opts, entity_maps=self.entity_maps,
            )
        fhist: list[float] = []
        reuse = JacobianReuse(self.jacobian_reuse_ratio, fhist, self.jacobian_reuse_across_steps)
        self.problem._tc_reuse = reuse
        snes = self.problem.solver
        fctx = {"u": self.problem.u, "residual": self.problem.F, "jacobian": self.problem.J, "bcs": self.bcs,
                "_blocks": self.problem.b.getAttr("_blocks")}
        snes.setFunction(functools.partial(assemble_residual, **fctx), self.problem.b)
        if kind == "nest":
            pc = snes.getKSP().getPC()
            if pc.getType() == "fieldsplit":
                db = PETSc.Options()
                for k, v in nested.items():
                    db[prefix + k] = v
                isets = self.problem.A.getNestISs()[0]
                pc.setFieldSplitIS(*[(names[i], isets[i]) for i in range(len(names))])
                self._use_compressed_blocks(self.problem, reuse)
        if kind != "nest" or snes.getKSP().getPC().getType() != "fieldsplit":
            from dolfinx.fem.petsc import assemble_jacobian

            ctx = {"u": self.problem.u, "jacobian": self.problem.J, "preconditioner": self.problem.preconditioner,
                   "bcs": self.bcs}
            snes.setJacobian(reuse(functools.partial(assemble_jacobian, **ctx)), self.problem.A, self.problem.P_mat)

        # the callback must not reference the model: PETSc holds it, so a closure over `self` made a
        # reference cycle the garbage collector cannot see through the SNES, and every model leaked its
        # mesh and MPI communicators (MPICH aborted with "too many communicators", MPI_ERR_OTHER = exit
        # 15, after a few hundred models in one process: a notebook or a study running in-process)
        self._fhist = fhist

        def converged(snes, it, norms):  # noqa: ANN001
            xnorm, gnorm, fnorm = norms
            if it == 0:
                fhist.clear()
            fhist.append(fnorm)
            return newton_convergence(it, xnorm, gnorm, fnorm, fhist, snes.getTolerances()[3])

        snes.setConvergenceTest(converged)

    def _use_compressed_blocks(self, problem: Any, reuse: JacobianReuse) -> None:
        """Give the field split diagonal blocks without the spurious sparsity entries.

        DOLFINx 0.11 builds the sparsity of an interface (``dS``) block from both cells of every
        facet, also where one side is not in the field's submesh; such entries are never written
        (they stay exactly zero) but couple dofs far apart. Smoothed-aggregation AMG then forms
        Galerkin products over them: the coarse operators become dense (operator complexity 5-15 on
        the 96 k-tet demo mesh). Each diagonal block is therefore copied, every Jacobian, into a matrix
        holding only the couplings of dofs that share a cell of the field's submesh, and that copy
        is the preconditioning matrix of the split (values identical; the off-diagonal blocks of the
        Gauss-Seidel sweep and GMRES use the Jacobian itself).
        """
        from dolfinx.fem.petsc import assemble_jacobian, assemble_matrix

        A = problem.A
        A.zeroEntries()
        assemble_matrix(A, problem.J, self.bcs, diag=1.0)  # the pattern (values are not used)
        A.assemble()
        isets = A.getNestISs()[0]
        masks, comp = [], []
        for i, V in enumerate(self.spaces):
            B = A.getNestSubMatrix(i, i)
            # the P1 mass matrix of the field's cells is > 0 exactly for dof pairs sharing a cell,
            # including couplings assembled on other ranks
            M = assemble_matrix(fem.form(ufl.TrialFunction(V) * ufl.TestFunction(V) * self.field_measures[i],
                                         entity_maps=self.entity_maps))
            M.assemble()
            _, _, mv, mkeys = _csr_keys(M)
            M.destroy()
            ai, aj, _, keys = _csr_keys(B)
            masks.append(np.isin(keys, mkeys[mv != 0]))
            rows = np.repeat(np.arange(ai.size - 1), np.diff(ai))[masks[-1]]
            ai2 = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=ai.size - 1))]).astype(PETSc.IntType)
            C = PETSc.Mat().createAIJ(B.getSizes(), csr=(ai2, aj[masks[-1]].astype(PETSc.IntType),
                                                         np.zeros(rows.size)), comm=B.getComm())
            C.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
            comp.append((C, ai2, aj[masks[-1]].astype(PETSc.IntType)))
        nf = len(self.spaces)
        P = PETSc.Mat().createNest([[comp[i][0] if i == j else None for j in range(nf)] for i in range(nf)],
                                   isrows=isets, iscols=isets, comm=A.getComm())
        self._P_comp = (P, comp, masks)
        ctx = {"u": problem.u, "jacobian": problem.J, "preconditioner": None, "bcs": self.bcs}

        def jacobian(snes, x, J, Pm):  # noqa: ANN001
            assemble_jacobian(snes, x, J, None, **ctx)
            for i in range(nf):
                _, _, av = J.getNestSubMatrix(i, i).getValuesCSR()
                C, ai2, aj2 = comp[i]
                C.zeroEntries()
                C.setValuesCSR(ai2, aj2, av[masks[i]])
                C.assemble()
            Pm.assemble()

        problem.solver.setJacobian(reuse(jacobian), A, P)

    def _predict(self, dt: float) -> None:
        """Newton's initial guess: linear extrapolation in time from the last two accepted states when
        the operating condition (current or voltage) is unchanged and the model sits at the accepted
        state. It only moves the starting point (the solution is the same), and saves about one
        Newton iteration per step: the old state with a new step leaves an O(1) residual."""
        hist = getattr(self, "_history", [])
        if not self.predictor or len(hist) < 2 or hist[1][1] is None:
            return
        (a_prev, _, key_prev), (a_n, dt_n, key) = hist
        here = all(np.array_equal(f.x.array, a) for f, a in zip(self.u, a_n))
        # both states under the present condition: after a switch the potentials jump, no trend
        if not key_prev == key == self._operating_key() or not bool(self.comm.allreduce(here, op=MPI.LAND)):
            return
        r = min(dt / dt_n, 3.0)
        for f, a, b in zip(self.u, a_n, a_prev):
            f.x.array[:] = a + r * (a - b)

    def jacobians_assembled(self) -> int:
        """Jacobians assembled so far by all the model's problems; -1 when every Newton iteration
        assembles one (no reuse: the Newton count is the count)."""
        if self.jacobian_reuse_ratio <= 0:
            return -1
        probs = [getattr(self, n, None) for n in ("problem", "_problem_cv")]
        return getattr(self, "_jacobians_retired", 0) + sum(
            pr._tc_reuse.assembled for pr in probs if pr is not None and hasattr(pr, "_tc_reuse"))

    def _reset_reused_lu(self, snes: Any) -> None:
        """A reused LU may come from a state that led nowhere: refactorise on the next try. (Only an
        LU preconditioner: resetting the field split would drop its index sets; its AMG is rebuilt for
        every Jacobian anyway.)"""
        pc = snes.getKSP().getPC()
        if pc.getType() == "lu":
            pc.reset()

    def switch_to_direct(self, why: str) -> None:
        """Use MUMPS LU (reused over ``lu_lag`` Jacobians) from now on, for the galvanostatic problem and
        any potentiostatic one built later. Collective."""
        if self.linear_solver == "direct":
            return
        log.warning("iterative linear solver failed (%s): switching to MUMPS LU for the rest of the run "
                    "(%d DOFs)", why, self.dof_count())
        old = self.problem
        self._jacobians_retired = getattr(self, "_jacobians_retired", 0) + old._tc_reuse.assembled
        self.linear_solver = "direct"
        user, self.solver_options = self.solver_options, {}  # they were options of the iterative solver
        try:
            self._build_solver(self._prefix + "lu_")
        finally:
            self.solver_options = user
        try:
            old.solver.destroy()
        except Exception:  # noqa: BLE001 - best effort; the objects are also collected with the problem
            pass
        PETSc.garbage_cleanup(self.comm)
        self.solver_switches.append({"dt_s": float(self.dt.value), "reason": why})

    def solve_step(self, dt: float) -> tuple[bool, int, int]:
        """One backward-Euler step of length dt [s] from the accepted state. (converged, newton, krylov).

        With the iterative solver, a failed linear solve switches to LU (``direct_fallback_dof_limit``)
        and the step is redone from the same start; the returned counts include both tries."""
        fallback = (self.linear_solver == "iterative" and not self.potentiostatic
                    and 0 < self.dof_count() <= self.direct_fallback_dof_limit)
        start = [f.x.array.copy() for f in self.u] if fallback else None
        ok, its, kits, reason = self._solve_once(dt)
        if not ok and fallback and reason in (-3, -11):  # SNES_DIVERGED_LINEAR_SOLVE / PETSc error in KSP
            for f, a in zip(self.u, start):
                f.x.array[:] = a
            self.switch_to_direct("GMRES did not converge" if reason == -3 else "PETSc error in the linear solve")
            ok2, its2, kits2, _ = self._solve_once(dt)
            return ok2, its + its2, kits + kits2
        return ok, its, kits

    def _solve_once(self, dt: float) -> tuple[bool, int, int, int]:
        self.dt.value = dt
        self._predict(dt)
        self._last_dt = dt
        problem = self._problem_cv if self.potentiostatic else self.problem
        snes = problem.solver
        reuse = problem._tc_reuse
        reuse.begin((float(dt), self._operating_key()))
        try:
            problem.solve()
        except (KeyboardInterrupt, TomocellError):
            reuse.invalidate()
            raise  # Ctrl-C / a signal raised in a callback is not a failed step (issue 15)
        except Exception:  # noqa: BLE001 - PETSc errors (e.g. NaN in a factorisation) mean a failed step
            reuse.invalidate()
            self._reset_reused_lu(snes)
            return False, snes.getIterationNumber(), snes.getLinearSolveIterations(), -11
        reason = snes.getConvergedReason()
        its = snes.getIterationNumber()
        kits = snes.getLinearSolveIterations()
        ok = reason > 0 and all(np.all(np.isfinite(f.x.array)) for f in self.u)
        ok = bool(self.comm.allreduce(ok, op=MPI.LAND))
        reason = int(self.comm.allreduce(reason, op=MPI.MIN))
        if not ok:
            reuse.invalidate()
            self._reset_reused_lu(snes)
        return ok, its, kits, reason
