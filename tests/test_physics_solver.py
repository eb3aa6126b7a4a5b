"""The scalable linear solver (GMRES + field-split AMG): same answer as the direct solver, Krylov
iterations per Newton step bounded under mesh refinement, automatic choice by size."""

from __future__ import annotations

import numpy as np
import pytest

import tomocell.fem  # noqa: F401

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

from mpi4py import MPI  # noqa: E402

from tomocell.errors import InputError  # noqa: E402
from tomocell.physics.discharge import make_model  # noqa: E402
from tomocell.physics.model import HalfCellModel  # noqa: E402
from tomocell.physics.parameters import FARADAY, load_parameters  # noqa: E402
from tomocell.physics.synthetic import box_cell  # noqa: E402

STEPS_S = (7.2, 36.0, 72.0)  # 0.2 %, 1 %, 2 % of a 1C discharge


@pytest.fixture(scope="module")
def params():
    return load_parameters("nmc111")


def _run(inp, params, solver: str, c_rate: float = 3.0):
    m = HalfCellModel(inp, params, linear_solver=solver, petsc_prefix=f"t_{solver}_")
    x0, _ = params.theta_limits()
    m.set_state(x0)
    current = c_rate * m.one_c_current_A()
    m.set_current_A(current)
    newton = krylov = 0
    q0 = m.quantities()
    for dt in STEPS_S:
        ok, its, kits = m.solve_step(dt)
        assert ok
        m.accept_step()
        newton += its
        krylov += kits
        q = m.quantities()
        passed = current * dt / FARADAY
        d_li = q["li_solid_mol"] + q["li_electrolyte_mol"] - q0["li_solid_mol"] - q0["li_electrolyte_mol"]
        assert abs(d_li - passed) / passed <= 1e-10  # Li balance per step, as with the direct solver
        q0 = q
    return m, newton, krylov


@pytest.mark.mpi
def test_iterative_matches_direct(params):
    inp = box_cell(MPI.COMM_WORLD, n=(6, 6, 8), n_sep=2)
    md, nd, _ = _run(inp, params, "direct")
    mi, ni, ki = _run(inp, params, "iterative")
    assert mi.problem.solver.getKSP().getPC().getType() == "fieldsplit"
    for a, b in zip(md.u, mi.u):
        diff = np.max(np.abs(a.x.array - b.x.array)) if a.x.array.size else 0.0
        assert MPI.COMM_WORLD.allreduce(diff, op=MPI.MAX) < 1e-9  # V and scaled concentrations
    assert mi.quantities()["voltage_V"] == pytest.approx(md.quantities()["voltage_V"], abs=1e-10)
    assert ni <= nd + len(STEPS_S)  # inexactness of the linear solve does not cost Newton steps
    assert ki / ni <= 30


@pytest.mark.mpi
def test_failed_iterative_solve_falls_back_to_lu(params):
    """A GMRES that cannot converge (1 iteration allowed) switches the model to LU within the same step:
    the step succeeds, Li is conserved, and the states equal the direct solver's."""
    inp = box_cell(MPI.COMM_WORLD, n=(6, 6, 8), n_sep=2)
    md, _, _ = _run(inp, params, "direct")
    mf = HalfCellModel(inp, params, linear_solver="iterative", petsc_prefix="t_fallback_",
                       solver_options={"ksp_max_it": 1})
    x0, _ = params.theta_limits()
    mf.set_state(x0)
    current = 3.0 * mf.one_c_current_A()
    mf.set_current_A(current)
    q0 = mf.quantities()
    for k, dt in enumerate(STEPS_S):
        ok, its, _ = mf.solve_step(dt)
        assert ok and its > 0
        mf.accept_step()
        q = mf.quantities()
        passed = current * dt / FARADAY
        d_li = q["li_solid_mol"] + q["li_electrolyte_mol"] - q0["li_solid_mol"] - q0["li_electrolyte_mol"]
        assert abs(d_li - passed) / passed <= 1e-10
        q0 = q
        if k == 0:
            assert mf.linear_solver == "direct" and len(mf.solver_switches) == 1
            assert mf.problem.solver.getKSP().getPC().getType() == "lu"
    assert len(mf.solver_switches) == 1
    for a, b in zip(md.u, mf.u):
        diff = np.max(np.abs(a.x.array - b.x.array)) if a.x.array.size else 0.0
        assert MPI.COMM_WORLD.allreduce(diff, op=MPI.MAX) < 1e-9


def test_fallback_can_be_disabled(params):
    inp = box_cell(MPI.COMM_WORLD, n=(4, 4, 5), n_sep=2)
    m = HalfCellModel(inp, params, linear_solver="iterative", petsc_prefix="t_nofallback_",
                      solver_options={"ksp_max_it": 1}, direct_fallback_dof_limit=0)
    x0, _ = params.theta_limits()
    m.set_state(x0)
    m.set_current_A(3.0 * m.one_c_current_A())
    ok, _, _ = m.solve_step(STEPS_S[0])
    assert not ok and m.linear_solver == "iterative" and not m.solver_switches


def test_krylov_per_newton_bounded_under_refinement(params):
    """Two refinements (h and h/2) of the same cell: Krylov iterations per Newton step within 30 %."""
    per = []
    for n in (6, 12):
        inp = box_cell(MPI.COMM_WORLD, n=(n, n, int(1.3 * n)), n_sep=max(2, n // 3))
        m, newton, krylov = _run(inp, params, "iterative", c_rate=1.0)
        # the Jacobian is reused while Newton contracts by 0.1 per iteration: more, cheaper iterations
        assert m.jacobians_assembled() <= 4 * len(STEPS_S)
        assert newton <= 8 * len(STEPS_S)
        per.append(krylov / newton)
    assert max(per) <= 30
    assert per[1] <= 1.3 * per[0], per


def test_auto_solver_choice_and_overrides(params):
    inp = box_cell(MPI.COMM_WORLD, n=(4, 4, 5), n_sep=2)
    assert make_model(inp, params).linear_solver == "direct"
    m = make_model(inp, params, direct_dof_limit=10)
    assert m.linear_solver == "iterative"
    m = make_model(inp, params, linear_solver="iterative", solver_options={"fieldsplit_ps_pc_type": "jacobi"})
    x0, _ = params.theta_limits()
    m.set_state(x0)
    m.set_current_A(m.one_c_current_A())
    assert m.solve_step(7.2)[0]
    sub = m.problem.solver.getKSP().getPC().getFieldSplitSubKSP()
    # cs, ps, ce, pe, then the c_s fields of further body colours (touching particles on this coarse grid)
    assert [k.getPC().getType() for k in sub] == ["gamg", "jacobi", "gamg", "gamg"] + ["gamg"] * (m.n_colours - 1)
    with pytest.raises(InputError):
        make_model(inp, params, linear_solver="cholesky")


def test_iterative_recovers_from_a_failed_linear_solve(params):
    """A step whose Krylov solve fails is reported as failed and the next try solves (the field split
    keeps its splits: a PC reset would drop them). The LU fallback is off here: it is tested above."""
    inp = box_cell(MPI.COMM_WORLD, n=(4, 4, 5), n_sep=2)
    m = HalfCellModel(inp, params, linear_solver="iterative", petsc_prefix="t_fail_", direct_fallback_dof_limit=0)
    x0, _ = params.theta_limits()
    m.set_state(x0)
    m.set_current_A(2.0 * m.one_c_current_A())
    start = m.snapshot()
    ksp = m.problem.solver.getKSP()
    ksp.setTolerances(max_it=1)
    assert not m.solve_step(36.0)[0]
    m.restore(start)
    ksp.setTolerances(max_it=400)
    ok, its, kits = m.solve_step(36.0)
    assert ok and kits > 0


def test_options_of_an_earlier_model_do_not_leak_into_the_next(params):
    """Iterative options (right preconditioning, unpreconditioned norm) left in PETSc's global database
    by a model must not apply to a later direct model with the same prefix: they made its lagged-LU
    GMRES fail after a current switch."""
    from petsc4py import PETSc

    inp = box_cell(MPI.COMM_WORLD, n=(4, 4, 5), n_sep=2)
    HalfCellModel(inp, params, linear_solver="iterative", petsc_prefix="t_leak_")
    PETSc.Options()["t_leak_ksp_pc_side"] = "right"  # as if left behind
    m = HalfCellModel(inp, params, linear_solver="direct", petsc_prefix="t_leak_")
    ksp = m.problem.solver.getKSP()
    assert ksp.getPCSide() == PETSc.PC.Side.LEFT
    assert ksp.getPC().getType() == "lu"


def test_a_finished_model_is_freed(params):
    """A model must not outlive its last reference: the SNES convergence callback once closed over the
    model, a cycle through PETSc the garbage collector cannot break, and every model leaked its mesh
    and MPI communicators until MPICH aborted (MPI_ERR_OTHER) after a few hundred models in one
    process, as in a notebook or an in-process study."""
    import gc
    import weakref

    inp = box_cell(MPI.COMM_WORLD, n=(2, 2, 3))
    m = HalfCellModel(inp, params)
    x0, _ = params.theta_limits()
    m.set_state(x0)
    m.set_current_A(m.one_c_current_A())
    ok, _, _ = m.solve_step(7.2)
    assert ok
    ref = weakref.ref(m)
    del m, inp
    gc.collect()
    assert ref() is None, "the model is still referenced after its last use (a leak)"


def test_jacobian_reuse_same_solution_fewer_jacobians(params):
    """The reused Jacobian (JacobianReuse) changes the path of Newton, not its answer: the same states
    to 1e-9 and Li balance to 1e-10 (checked in _run) as Newton with a Jacobian every iteration, with
    fewer Jacobians assembled."""
    inp = box_cell(MPI.COMM_WORLD, n=(6, 6, 8), n_sep=2)
    runs = {}
    for ratio in (0.0, 0.1):
        m = HalfCellModel(inp, params, linear_solver="iterative", petsc_prefix=f"t_reuse{ratio}_",
                          jacobian_reuse_ratio=ratio)
        x0, _ = params.theta_limits()
        m.set_state(x0)
        current = 1.0 * m.one_c_current_A()
        m.set_current_A(current)
        q0 = m.quantities()
        newton = 0
        for dt in (7.2, 36.0, 72.0, 72.0, 72.0):
            ok, its, _ = m.solve_step(dt)
            assert ok
            m.accept_step()
            newton += its
            q = m.quantities()
            passed = current * dt / FARADAY
            d_li = q["li_solid_mol"] + q["li_electrolyte_mol"] - q0["li_solid_mol"] - q0["li_electrolyte_mol"]
            assert abs(d_li - passed) / passed <= 1e-10
            q0 = q
        runs[ratio] = (m, newton, m.jacobians_assembled())
    (plain, n_plain, j_plain), (reuse, n_reuse, j_reuse) = runs[0.0], runs[0.1]
    assert j_plain == -1  # one Jacobian per iteration: the Newton count is the count
    assert 0 < j_reuse < n_plain
    for a, b in zip(plain.u, reuse.u):
        diff = np.max(np.abs(a.x.array - b.x.array)) if a.x.array.size else 0.0
        assert MPI.COMM_WORLD.allreduce(diff, op=MPI.MAX) < 1e-9


def test_jacobian_reuse_rule():
    from tomocell.physics.newton import JacobianReuse

    f: list[float] = []
    r = JacobianReuse(0.1, f)
    r.begin((72.0, (1.0, False, 0.0)))
    assert r.needed(0)  # nothing assembled yet
    r.valid = True
    f[:] = [1.0, 1e-3]
    assert not r.needed(1)  # contracted by 1e-3 <= 0.1: keep
    f[:] = [1.0, 1e-3, 5e-4]
    assert r.needed(2)  # by 0.5 only: assemble again
    r.begin((72.0, (1.0, False, 0.0)))
    f[:] = [1.0]
    assert not r.needed(0)  # the next step of the same length and current starts with it
    r.begin((36.0, (1.0, False, 0.0)))
    assert r.needed(0)  # another step length: the mass terms changed
    r.valid = True
    r.begin((36.0, (2.0, False, 0.0)))
    assert r.needed(0)  # another current
    assert JacobianReuse(0.0, f).needed(1)  # 0: plain Newton
