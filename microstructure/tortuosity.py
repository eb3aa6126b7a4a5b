"""Tortuosity factor of a phase from a steady diffusion simulation on the voxels (paper Fig. 2d, 2j).

Finite volumes on the voxel grid, one unknown per voxel of the *transporting cluster* (the voxels of
the phase that are 6-connected to both the inlet and the outlet face: other clusters carry no flux
and would make the matrix singular). Between two face-neighbouring phase voxels along axis ``k`` the
conductance is ``D0 * A_k / d_k`` (``A_k`` the face area, ``d_k`` the voxel edge); at the inlet and
outlet faces the concentration is fixed (1 and 0) half a voxel away from the voxel centre, so the
conductance there is ``2 D0 A_k / d_k``; the four side faces carry no flux. This is the convention of
TauFactor (Cooper et al., SoftwareX 2016), so an open box has tau = 1 exactly.

    D_eff / D0 = J L / (A_cross * dc),   tau = eps * D0 / D_eff

with ``eps`` the volume fraction of the whole phase (dead ends and isolated pores included, as in the
paper and TauFactor). The linear system is SPD and is solved with PETSc CG + GAMG (petsc4py), rows
distributed over the MPI ranks of ``comm`` (default COMM_WORLD, so ``mpirun -n 2`` splits the solve).
On one rank the default is instead the matrix-free CG + geometric multigrid of :mod:`tortuosity_gmg`
(same discretisation, numba kernels, ~50 B/voxel of the box: 1.09 GB peak and 12.9 s CPU for the
256^3 GAN pore phase against 1.96 GB and 25 s with the numpy version, and 3.7 GB for GAMG); GAMG
stays available as ``preconditioner``.
GAMG needs ~450 B per unknown at its peak (measured: 3.7 GB for the 7.5 M pore voxels of the 256^3
GAN volume); when that does not fit in the memory available, 'auto' falls back to incomplete
Cholesky (about 3x less memory, iterations growing with the size). Options with prefix ``tau_``
(``PETSC_OPTIONS="-tau_pc_gamg_threshold 0.02"``) tune the solver.
Convergence is judged on the flux balance |J_in - J_out| / J, not only on the residual: the residual
tolerance is tightened until the balance is met.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import tomocell.fem  # noqa: F401  (must precede petsc4py: bundled PETSc of the PyPI build)
from tomocell.errors import InputError, NotPercolatingError, SolverError
from tomocell.log import get_logger
from tomocell.microstructure.volume import ACTIVE, CBD, PHASE_CODES, Volume

log = get_logger("microstructure.tortuosity")

#: phase selections accepted by :func:`phase_mask`
PHASE_SETS: dict[str, tuple[int, ...]] = {
    "pore": (PHASE_CODES["pore"],),
    "active": (ACTIVE,),
    "cbd": (CBD,),
    "solid": (ACTIVE, CBD),  # electronic conduction through active + CBD
}


def phase_mask(volume: Volume, phase: str) -> np.ndarray:
    """Boolean mask of a phase name or of 'solid' (active + CBD)."""
    if phase not in PHASE_SETS:
        raise InputError(f"unknown phase {phase!r} for tortuosity (choose from {sorted(PHASE_SETS)})")
    codes = PHASE_SETS[phase]
    m = volume.labels == codes[0]
    for c in codes[1:]:
        m |= volume.labels == c
    return m


@dataclasses.dataclass
class TortuosityResult:
    """Outcome of one steady-diffusion solve.

    ``tau`` is None when the phase does not percolate between the two faces (tau is infinite): check
    ``percolating``. ``flux_map`` (float32, same shape as the volume, 0 outside the cluster) is the
    magnitude of the local flux density divided by the mean flux density through the box,
    J_bulk = J / A_cross, so 1 means "carries the average flux of the whole cross-section".
    """

    phase: str
    axis: int
    percolating: bool
    tau: float | None
    eps: float
    eps_transporting: float
    d_eff_over_d0: float
    flux_in: float
    flux_out: float
    flux_balance_error: float
    iterations: int
    residual_rtol: float
    n_unknowns: int
    solve_time_s: float
    flux_map: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("flux_map")
        return d


def transporting_cluster(mask: np.ndarray, axis: int) -> np.ndarray:
    """Voxels of ``mask`` 6-connected to both faces normal to ``axis`` (bool array)."""
    import cc3d

    lab = cc3d.connected_components(mask, connectivity=6)
    first = np.unique(np.take(lab, 0, axis=axis))
    last = np.unique(np.take(lab, -1, axis=axis))
    keep = np.intersect1d(first[first > 0], last[last > 0])
    if keep.size == 0:
        return np.zeros(mask.shape, dtype=bool)
    return np.isin(lab, keep)


def _rank_range(n: int, comm: Any) -> tuple[int, int]:
    size, rank = comm.getSize(), comm.getRank()
    base, extra = divmod(n, size)
    r0 = rank * base + min(rank, extra)
    return r0, r0 + base + (1 if rank < extra else 0)


#: GAMG peak memory per unknown measured on the GAN volume (PETSc 3.25, smoothed aggregation), bytes
GAMG_BYTES_PER_UNKNOWN = 450
#: share of the available memory GAMG may take before "auto" falls back to incomplete Cholesky
GAMG_MEMORY_SHARE = 0.6


def _available_bytes() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    return float("inf")


def _choose_preconditioner(name: str, n_unknowns: int, comm: Any) -> str:
    """'gmg', 'gamg' (fast, ~450 B/unknown) or 'icc' (3x less memory, iterations grow with size).

    'auto' takes the matrix-free geometric multigrid on one rank (:mod:`tortuosity_gmg`); under MPI GAMG when its estimated footprint on this rank fits in GAMG_MEMORY_SHARE of the
    memory available now, else incomplete Cholesky (block-Jacobi ICC under MPI), with a log line.
    """
    if name not in ("auto", "gmg", "gamg", "icc"):
        raise InputError(f"preconditioner must be auto, gmg, gamg or icc, got {name!r}")
    if name == "gmg" and comm.getSize() > 1:
        raise InputError("preconditioner 'gmg' (matrix-free geometric multigrid) runs on one rank: use gamg or icc under MPI")
    if name != "auto":
        return name
    if comm.getSize() == 1:
        return "gmg"
    need = GAMG_BYTES_PER_UNKNOWN * n_unknowns / comm.getSize()
    if need < GAMG_MEMORY_SHARE * _available_bytes():
        return "gamg"
    log.warning("GAMG would need ~%.1f GB per rank: using incomplete Cholesky (slower, less memory)", need / 1e9)
    return "icc"


#: rows assembled per chunk: bounds the dense (rows x 7) temporaries (~100 B/row) at 10^8 voxels
ASSEMBLY_CHUNK_ROWS = 2_000_000


def _assemble_rows(
    keep: np.ndarray, axis: int, spacing: tuple[float, float, float], r0: int, r1: int,
    dfield: np.ndarray | None = None, index_dtype: Any = np.int32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR rows r0..r1 of the FV matrix, their right-hand side, and the inlet/outlet conductances.

    Unknowns are numbered in C order of their voxels, so the neighbour offsets -s0, -s1, -s2, 0, +s2,
    +s1, +s0 give sorted column indices. Conductances are in um (D0 = 1, A_k/d_k), times the harmonic
    mean of the two voxels' diffusivities when a ``dfield`` (in units of D0) is given: the exact
    flux through a face between two homogeneous half-voxels in series. Built in chunks of
    :data:`ASSEMBLY_CHUNK_ROWS` rows; column indices in ``index_dtype`` (PETSc's IntType).
    """
    n_all = int(np.count_nonzero(keep))
    idx = np.full(keep.size, -1, dtype=np.int64 if n_all >= 2**31 else np.int32)
    pos_all = np.flatnonzero(keep.ravel())
    idx[pos_all] = np.arange(pos_all.size, dtype=idx.dtype)
    parts = []
    for c0 in range(r0, r1, ASSEMBLY_CHUNK_ROWS):
        c1 = min(c0 + ASSEMBLY_CHUNK_ROWS, r1)
        parts.append(_assemble_chunk(idx, pos_all[c0:c1], keep.shape, axis, spacing, c0, dfield, index_dtype))
    del idx, pos_all
    if not parts:
        z = np.zeros(0)
        return np.zeros(1, np.int64), np.zeros(0, index_dtype), z, z, z, z
    counts = [p[0] for p in parts]
    indptr = np.zeros(r1 - r0 + 1, dtype=np.int64)
    np.cumsum(np.concatenate(counts), out=indptr[1:])
    cols = np.concatenate([p[1] for p in parts])
    vals = np.concatenate([p[2] for p in parts])
    rest = [np.concatenate([p[i] for p in parts]) for i in (3, 4, 5)]
    del parts
    if indptr[-1] < 2**31 and np.dtype(index_dtype) == np.int32:
        indptr = indptr.astype(np.int32)
    return indptr, cols, vals, rest[0], rest[1], rest[2]


def _assemble_chunk(
    idx: np.ndarray, pos: np.ndarray, shape: tuple[int, ...], axis: int, spacing: tuple[float, float, float],
    r0: int, dfield: np.ndarray | None, index_dtype: Any,
) -> tuple[np.ndarray, ...]:
    """One chunk of rows: (row nnz counts, cols, vals, rhs, g_in, g_out)."""
    coords = np.unravel_index(pos, shape)
    strides = (shape[1] * shape[2], shape[2], 1)
    d = spacing
    area = (d[1] * d[2], d[0] * d[2], d[0] * d[1])
    g = [area[k] / d[k] for k in range(3)]
    n = pos.size
    dflat = None if dfield is None else dfield.ravel()
    dself = None if dflat is None else dflat[pos].astype(np.float64)
    cols = np.full((n, 7), -1, dtype=index_dtype)
    vals = np.zeros((n, 7), dtype=np.float64)
    diag = np.zeros(n, dtype=np.float64)
    g_in = np.zeros(n, dtype=np.float64)
    g_out = np.zeros(n, dtype=np.float64)
    slot = {(-1, 0): 0, (-1, 1): 1, (-1, 2): 2, (1, 2): 4, (1, 1): 5, (1, 0): 6}
    for (sign, k), j in slot.items():
        c = coords[k]
        inside = (c > 0) if sign < 0 else (c < shape[k] - 1)
        nb = np.full(n, -1, dtype=index_dtype)
        nb[inside] = idx[pos[inside] + sign * strides[k]]
        has = nb >= 0
        cols[has, j] = nb[has]
        if dself is None:
            gk = np.where(has, g[k], 0.0)
        else:
            dn = np.zeros(n)
            dn[has] = dflat[pos[has] + sign * strides[k]]
            gk = np.where(has, g[k] * 2.0 * dself * dn / np.maximum(dself + dn, 1e-300), 0.0)
        vals[has, j] = -gk[has]
        diag += gk
        if k == axis:
            boundary = ~inside
            gb = 2.0 * g[k] * (1.0 if dself is None else dself[boundary])
            if sign < 0:
                g_in[boundary] = gb
            else:
                g_out[boundary] = gb
    diag += g_in + g_out
    cols[:, 3] = np.arange(r0, r0 + n, dtype=index_dtype)
    vals[:, 3] = diag
    valid = cols >= 0
    return valid.sum(axis=1), cols[valid], vals[valid], g_in * 1.0, g_in, g_out  # rhs: c_in = 1, c_out = 0


def tortuosity_factor(
    volume: Volume,
    phase: str = "pore",
    axis: int = 0,
    *,
    flux_tol: float = 1e-4,
    rtol: float = 1e-6,
    max_it: int = 5000,
    want_flux_map: bool = False,
    raise_if_not_percolating: bool = True,
    comm: Any = None,
    preconditioner: str = "auto",
) -> TortuosityResult:
    """Tortuosity factor of ``phase`` ('pore', 'active', 'cbd' or 'solid') along ``axis``.

    Raises :class:`NotPercolatingError` when the phase does not connect the two faces normal to
    ``axis`` (or returns a result with ``tau=None, percolating=False`` when
    ``raise_if_not_percolating`` is False). Never returns a finite number for a blocked phase.
    ``preconditioner``: 'auto' (matrix-free geometric multigrid on one rank; under MPI GAMG when it
    fits in memory, else ICC), 'gmg', 'gamg' (the assembled reference) or 'icc'.
    """
    mask = phase_mask(volume, phase)
    if not mask.any():
        raise InputError(f"volume has no {phase} phase: no tortuosity factor")
    return _solve(mask, None, volume.voxel_size_um, axis, phase, flux_tol=flux_tol, rtol=rtol, max_it=max_it,
                  want_flux_map=want_flux_map, raise_if_not_percolating=raise_if_not_percolating, comm=comm,
                  preconditioner=preconditioner)


def effective_diffusivity(
    diffusivity: np.ndarray, voxel_size_um: Any, axis: int = 0, **kw: Any
) -> TortuosityResult:
    """Same solve for a voxel field of diffusivities (units of D0; 0 = impermeable).

    Faces between voxels get the harmonic mean, so layered media are exact. ``eps`` is the fraction
    of voxels with D > 0 and tau = eps * D0 / D_eff as for a phase. Keywords as
    :func:`tortuosity_factor`.
    """
    d = np.asarray(diffusivity, dtype=np.float32)
    if d.ndim != 3 or np.any(d < 0) or not np.all(np.isfinite(d)):
        raise InputError("diffusivity field must be a finite, non-negative 3D array")
    spacing = Volume(np.zeros((1, 1, 1), np.uint8), voxel_size_um).voxel_size_um
    return _solve(d > 0, d, spacing, axis, "field", **kw)


def _solve(
    mask: np.ndarray,
    dfield: np.ndarray | None,
    spacing: tuple[float, float, float],
    axis: int,
    phase: str,
    *,
    flux_tol: float = 1e-4,
    rtol: float = 1e-6,
    max_it: int = 5000,
    want_flux_map: bool = False,
    raise_if_not_percolating: bool = True,
    comm: Any = None,
    preconditioner: str = "auto",
) -> TortuosityResult:
    import time

    from petsc4py import PETSc

    if axis not in (0, 1, 2):
        raise InputError(f"axis must be 0, 1 or 2, got {axis!r}")
    comm = comm or PETSc.COMM_WORLD
    eps = float(mask.mean())
    if eps == 0.0:
        raise InputError(f"volume has no {phase} phase: no tortuosity factor")
    keep = transporting_cluster(mask, axis)
    del mask
    n = int(keep.sum())
    t0 = time.perf_counter()
    if n == 0:
        msg = f"{phase} phase (volume fraction {eps:.3f}) does not connect the two faces normal to axis {axis}: tau is infinite"
        if raise_if_not_percolating:
            raise NotPercolatingError(msg)
        log.warning(msg)
        return TortuosityResult(phase, axis, False, None, eps, 0.0, 0.0, 0.0, 0.0, 0.0, 0, rtol, 0, 0.0, None)

    extent = tuple(nk * dk for nk, dk in zip(keep.shape, spacing))
    A_cross = extent[(axis + 1) % 3] * extent[(axis + 2) % 3]
    L = extent[axis]
    pcname = _choose_preconditioner(preconditioner, n, comm)
    if pcname == "gmg":
        from tomocell.microstructure.tortuosity_gmg import solve_cluster

        c_all, f_in, f_out, err, its_total, cur_rtol = solve_cluster(keep, axis, spacing, dfield, rtol, max_it, flux_tol)
    else:
        c_all, f_in, f_out, err, its_total, cur_rtol = _solve_petsc(
            keep, axis, spacing, dfield, rtol, max_it, flux_tol, comm, pcname, want_flux_map, phase)
    if err > flux_tol:
        log.warning("flux balance %.2e did not reach %.1e (rtol %.0e)", err, flux_tol, cur_rtol)
    flux = 0.5 * (f_in + f_out)  # um^2 * (D0 dc / um) in units D0 = 1, dc = 1
    d_rel = flux * L / A_cross
    eps_t = float(n) / keep.size
    tau = eps / d_rel if d_rel > 0 else None
    flux_map = None
    if want_flux_map:
        flux_map = _flux_map(keep, c_all, axis, spacing, flux / A_cross, dfield)
    res = TortuosityResult(
        phase, axis, True, tau, eps, eps_t, d_rel, f_in, f_out, err, its_total, cur_rtol, n,
        time.perf_counter() - t0, flux_map,
    )
    log.info("tau_%s(axis %d) = %.4f (eps %.3f, D_eff/D0 %.4f, flux balance %.1e, %d CG its, %.1f s)",
             phase, axis, tau, eps, d_rel, err, its_total, res.solve_time_s)
    return res


def _solve_petsc(
    keep: np.ndarray, axis: int, spacing: tuple[float, float, float], dfield: np.ndarray | None, rtol: float,
    max_it: int, flux_tol: float, comm: Any, pcname: str, want_c: bool, phase: str,
) -> tuple[np.ndarray | None, float, float, float, int, float]:
    """Assembled matrix, PETSc CG + GAMG / ICC, rows split over ``comm``; rtol tightened until the
    flux balance is met. Returns (concentration on the cluster or None, J_in, J_out, balance, its, rtol)."""
    from petsc4py import PETSc

    n = int(keep.sum())
    r0, r1 = _rank_range(n, comm)
    indptr, cols, vals, rhs, g_in, g_out = _assemble_rows(keep, axis, spacing, r0, r1, dfield, PETSc.IntType)
    A = PETSc.Mat().createAIJ(size=((r1 - r0, n), (r1 - r0, n)), csr=(indptr.astype(PETSc.IntType, copy=False), cols, vals), comm=comm)
    A.assemble()
    del indptr, cols, vals
    b = A.createVecLeft()
    b.setArray(rhs)
    x = A.createVecRight()
    ksp = PETSc.KSP().create(comm=comm)
    ksp.setOperators(A)
    ksp.setType("cg")
    pc = ksp.getPC()
    if pcname == "gamg":
        pc.setType("gamg")
    elif comm.getSize() == 1:
        pc.setType("icc")
    else:  # incomplete Cholesky per rank
        pc.setType("bjacobi")
        PETSc.Options()["tau_sub_pc_type"] = "icc"
    # PETSc options with prefix "tau_" tune the solve, e.g. -tau_pc_gamg_agg_nsmooths 0 (PETSC_OPTIONS)
    ksp.setOptionsPrefix("tau_")
    ksp.setFromOptions()
    ksp.setInitialGuessNonzero(True)
    # an initial guess linear in the flow coordinate is the open-box solution: good start
    coords_axis = np.unravel_index(np.flatnonzero(keep.ravel())[r0:r1], keep.shape)[axis]
    x.setArray(1.0 - (coords_axis + 0.5) / keep.shape[axis])
    its_total = 0
    cur_rtol = rtol
    while True:
        ksp.setTolerances(rtol=cur_rtol, atol=1e-300, max_it=max_it)
        ksp.solve(b, x)
        its_total += ksp.getIterationNumber()
        if ksp.getConvergedReason() < 0:
            raise SolverError(f"CG/GAMG diverged for {phase} tortuosity along axis {axis} (reason {ksp.getConvergedReason()})")
        c = x.getArray(readonly=True)
        f_in = comm.tompi4py().allreduce(float(np.dot(g_in, 1.0 - c))) if comm.getSize() > 1 else float(np.dot(g_in, 1.0 - c))
        f_out = comm.tompi4py().allreduce(float(np.dot(g_out, c))) if comm.getSize() > 1 else float(np.dot(g_out, c))
        err = abs(f_in - f_out) / max(abs(f_in), abs(f_out), 1e-300)
        if err <= flux_tol or cur_rtol <= 1e-14:
            break
        cur_rtol = max(cur_rtol * 1e-2, 1e-14)
        log.debug("flux balance %.2e > %.1e: tightening rtol to %.0e", err, flux_tol, cur_rtol)
    c_all = _gather(x, comm) if want_c else None
    # Destroy every handle explicitly: petsc4py defers the garbage collection of parallel objects,
    # so under MPI the PC (holding the GAMG hierarchy, GBs) would otherwise outlive the solve and
    # memory would grow with every direction / depth step.
    for obj in (pc, ksp, A, b, x):
        obj.destroy()
    if hasattr(PETSc, "garbage_cleanup"):
        PETSc.garbage_cleanup(comm)
    return c_all, f_in, f_out, err, its_total, cur_rtol


def _gather(x: Any, comm: Any) -> np.ndarray:
    from petsc4py import PETSc

    if comm.getSize() == 1:
        return x.getArray(readonly=True).copy()
    scatter, xall = PETSc.Scatter.toAll(x)
    scatter.scatter(x, xall, addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
    out = xall.getArray(readonly=True).copy()
    scatter.destroy()
    xall.destroy()
    return out


def _flux_map(keep: np.ndarray, c: np.ndarray, axis: int, spacing: tuple[float, float, float], j_bulk: float,
              dfield: np.ndarray | None = None) -> np.ndarray:
    """|flux density| at voxel centres (average of the two face fluxes per axis), / j_bulk, float32.

    With a diffusivity field the face gradient is scaled by the harmonic mean of the two voxels."""
    conc = np.zeros(keep.shape, dtype=np.float32)
    conc[keep] = c
    out = np.zeros(keep.shape, dtype=np.float32)
    for k in range(3):
        # face flux densities between neighbours along k (D0 = 1): -(c_j - c_i)/d_k where both in cluster
        sl_a = [slice(None)] * 3
        sl_b = [slice(None)] * 3
        sl_a[k] = slice(0, -1)
        sl_b[k] = slice(1, None)
        both = keep[tuple(sl_a)] & keep[tuple(sl_b)]
        face = np.where(both, (conc[tuple(sl_a)] - conc[tuple(sl_b)]) / spacing[k], 0.0).astype(np.float32)
        if dfield is not None:
            da, db = dfield[tuple(sl_a)], dfield[tuple(sl_b)]
            face *= 2 * da * db / np.maximum(da + db, np.float32(1e-30))
        comp = np.zeros(keep.shape, dtype=np.float32)
        comp[tuple(sl_a)] += 0.5 * face
        comp[tuple(sl_b)] += 0.5 * face
        if k == axis:  # boundary half-faces at the Dirichlet planes
            first = [slice(None)] * 3
            last = [slice(None)] * 3
            first[k] = 0
            last[k] = -1
            df = 1.0 if dfield is None else dfield[tuple(first)]
            dl = 1.0 if dfield is None else dfield[tuple(last)]
            comp[tuple(first)] += np.where(keep[tuple(first)], df * 0.5 * (1.0 - conc[tuple(first)]) / (0.5 * spacing[k]), 0.0)
            comp[tuple(last)] += np.where(keep[tuple(last)], dl * 0.5 * conc[tuple(last)] / (0.5 * spacing[k]), 0.0)
        out += comp * comp
        del comp, face, both
    np.sqrt(out, out=out)
    out /= np.float32(j_bulk) if j_bulk > 0 else np.float32(1.0)
    out[~keep] = 0.0
    return out


def tortuosity_all(volume: Volume, phase: str = "pore", directions: tuple[int, ...] = (0, 1, 2), **kw: Any) -> dict[int, TortuosityResult]:
    """:func:`tortuosity_factor` in each direction, not-percolating directions reported, not raised."""
    kw.setdefault("raise_if_not_percolating", False)
    return {ax: tortuosity_factor(volume, phase, ax, **kw) for ax in directions}
