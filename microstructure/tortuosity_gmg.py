"""Matrix-free geometric multigrid for the voxel diffusion problem of :mod:`tortuosity` (serial, numpy).

The finite-volume operator of ``tortuosity`` is a weighted graph Laplacian on the voxel grid: a
conductance on every face between two transporting voxels, plus the Dirichlet half-voxel
conductances on the inlet and outlet planes. It is stored here as three float32 face-conductance
arrays (one per axis, zero where either voxel is outside the cluster) instead of an assembled CSR
matrix: ~12 B/voxel instead of ~100 B/unknown for the matrix and ~450 B/unknown for GAMG.

Preconditioner: a V-cycle on 2x2x2 aggregates (piecewise-constant prolongation P, restriction P^T).
With that P the Galerkin coarse operator P^T A P is again a face-conductance Laplacian whose face
conductances are sums of the fine ones crossing the aggregate boundary, so every level is built
from the level above with a few sums, and stays exact for masked (porous) grids. The coarse
correction is over-weighted by ``COARSE_SCALE`` (the classical remedy for piecewise-constant
aggregation, Braess 1995 / Notay 2010), red-black Gauss-Seidel smooths (red then black before the
coarse correction, black then red after it: the cycle is symmetric, R = P^T, so it is a valid CG
preconditioner), the coarsest level is factorised (scipy SuperLU). The stencil, smoother, transfer
and CG vector kernels are compiled with numba (:mod:`gmg_kernels`), parallel over planes.

Precision: the cycle and the CG vectors r, p, q, z are float32, the iterate x is float64 and every
dot product accumulates in float64. Each (re)start computes the true residual b - A x from the
float64 x, so the tightening of the tolerance for the flux balance is an iterative refinement and
reaches float64 accuracy. Memory: ~16 B/voxel of the box for the fine level (three face
conductances and the inverse diagonal), 24 B/voxel for the CG vectors, 4 B/voxel of work space for
the cycle, and 1/7 more for the coarse levels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tomocell.microstructure import gmg_kernels as K

#: coarse-grid correction weight for piecewise-constant aggregation (measured on the GAN 128^3 crop with
#: two red-black sweeps: 21 CG its at 1.0, 16 at 1.4, 14 at 1.8; it must stay below 2 for an SPD cycle)
COARSE_SCALE = 1.8
#: a level with at most this many voxels is solved directly
COARSEST_VOXELS = 4096


def _sl(k: int, s: slice) -> tuple[slice, ...]:
    out = [slice(None)] * 3
    out[k] = s
    return tuple(out)


class Level:
    """Face conductances of one grid level: ``g[k]`` has shape[k]-1 entries along axis k."""

    def __init__(self, g: list[np.ndarray], g_in: np.ndarray, g_out: np.ndarray, axis: int) -> None:
        self.g, self.g_in, self.g_out, self.axis = g, g_in, g_out, axis
        self.shape = (g[0].shape[0] + 1, g[0].shape[1], g[0].shape[2])
        # the kernels take the inlet/outlet planes as 2D arrays (views)
        self.ops = (g[0], g[1], g[2], np.ascontiguousarray(g_in.squeeze(axis)),
                    np.ascontiguousarray(g_out.squeeze(axis)), axis)
        self.inv_diag = np.empty(self.shape, np.float32)
        K.diagonal(*self.ops, self.inv_diag)
        self.res = np.empty(self.shape, np.float32)  # work space of the cycle
        self.b: np.ndarray | None = None  # right-hand side and iterate of a coarse level
        self.u: np.ndarray | None = None

    @property
    def active(self) -> np.ndarray:
        return self.inv_diag > 0

    def apply(self, u: np.ndarray, out: np.ndarray) -> float:
        """out = A u; returns u . A u."""
        return K.apply_dot(*self.ops, u, out)

    def coarsen(self) -> "Level":
        """Galerkin coarse level of 2x2x2 aggregates (odd sizes: the last aggregate is thinner)."""
        def pair_sum(a: np.ndarray, k: int) -> np.ndarray:
            n = a.shape[k]
            if n % 2:
                pad = [(0, 0)] * 3
                pad[k] = (0, 1)
                a = np.pad(a, pad)
            return a[_sl(k, slice(0, None, 2))] + a[_sl(k, slice(1, None, 2))]

        g = []
        for k in range(3):
            a = self.g[k][_sl(k, slice(1, None, 2))]  # fine faces between aggregates
            for j in range(3):
                if j != k:
                    a = pair_sum(a, j)
            g.append(np.ascontiguousarray(a, dtype=np.float32))
        bnd = []
        for b in (self.g_in, self.g_out):
            for j in range(3):
                if j != self.axis:
                    b = pair_sum(b, j)
            bnd.append(np.ascontiguousarray(b, dtype=np.float32))
        return Level(g, bnd[0], bnd[1], self.axis)


class Multigrid:
    """Symmetric V-cycle preconditioner over a hierarchy of :class:`Level` s."""

    def __init__(self, fine: Level, smooth: int = 2) -> None:
        self.levels = [fine]
        while self.levels[-1].inv_diag.size > COARSEST_VOXELS and min(self.levels[-1].shape) > 2:
            self.levels.append(self.levels[-1].coarsen())
        for lev in self.levels[1:]:
            lev.b, lev.u = np.empty(lev.shape, np.float32), np.empty(lev.shape, np.float32)
        self.smooth = smooth
        self._factor_coarsest()

    def _factor_coarsest(self) -> None:
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        lev = self.levels[-1]
        act = lev.active.ravel()
        diag = np.zeros(lev.shape, np.float64)
        for k in range(3):
            diag[_sl(k, slice(0, -1))] += lev.g[k]
            diag[_sl(k, slice(1, None))] += lev.g[k]
        diag[_sl(lev.axis, slice(0, 1))] += lev.g_in
        diag[_sl(lev.axis, slice(-1, None))] += lev.g_out
        idx = np.full(act.size, -1, np.int64)
        idx[act] = np.arange(int(act.sum()))
        flat = np.arange(act.size).reshape(lev.shape)
        rows, cols, vals = [idx[act]], [idx[act]], [diag.ravel()[act]]
        for k in range(3):
            a = flat[_sl(k, slice(0, -1))].ravel()
            b = flat[_sl(k, slice(1, None))].ravel()
            gk = lev.g[k].ravel().astype(np.float64)
            m = gk > 0
            rows += [idx[a[m]], idx[b[m]]]
            cols += [idx[b[m]], idx[a[m]]]
            vals += [-gk[m], -gk[m]]
        n = int(act.sum())
        A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        self._act, self._lu = act, splu(A) if n else None

    def _cycle(self, i: int, b: np.ndarray, u: np.ndarray) -> None:
        lev = self.levels[i]
        if i == len(self.levels) - 1:
            u.fill(0.0)
            if self._lu is not None:
                u.ravel()[self._act] = self._lu.solve(b.ravel()[self._act].astype(np.float64))
            return
        u.fill(0.0)
        for _ in range(self.smooth):
            K.gauss_seidel(*lev.ops, lev.inv_diag, b, u, 0)
            K.gauss_seidel(*lev.ops, lev.inv_diag, b, u, 1)
        K.residual(*lev.ops, u, b, lev.res)
        nxt = self.levels[i + 1]
        K.restrict(lev.res, nxt.b)
        self._cycle(i + 1, nxt.b, nxt.u)
        K.prolong_add(u, nxt.u, np.float32(COARSE_SCALE))
        for _ in range(self.smooth):
            K.gauss_seidel(*lev.ops, lev.inv_diag, b, u, 1)
            K.gauss_seidel(*lev.ops, lev.inv_diag, b, u, 0)

    def __call__(self, r: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out = M r (one V-cycle; r, out float32 of the fine shape)."""
        self._cycle(0, r, out)
        return out


def fine_level(keep: np.ndarray, axis: int, spacing: tuple[float, float, float],
               dfield: np.ndarray | None = None) -> Level:
    """Face conductances (um, D0 = 1) of the transporting cluster ``keep``, as in ``_assemble_rows``."""
    area = (spacing[1] * spacing[2], spacing[0] * spacing[2], spacing[0] * spacing[1])
    gk = [np.float32(area[k] / spacing[k]) for k in range(3)]
    g = []
    for k in range(3):
        lo, hi = _sl(k, slice(0, -1)), _sl(k, slice(1, None))
        both = keep[lo] & keep[hi]
        if dfield is None:
            g.append(both.astype(np.float32) * gk[k])
        else:
            da, db = dfield[lo].astype(np.float32), dfield[hi].astype(np.float32)
            hm = 2.0 * da * db / np.maximum(da + db, np.float32(1e-30))
            g.append(np.where(both, gk[k] * hm, 0.0).astype(np.float32))
    first, last = _sl(axis, slice(0, 1)), _sl(axis, slice(-1, None))
    bnd = []
    for s in (first, last):
        d = np.float32(1.0) if dfield is None else dfield[s].astype(np.float32)
        bnd.append((keep[s] * (2.0 * gk[axis] * d)).astype(np.float32))
    return Level(g, bnd[0], bnd[1], axis)


def solve(lev: Level, x: np.ndarray, rtol: float, max_it: int, mg: Multigrid | None = None) -> tuple[np.ndarray, int, float]:
    """Preconditioned CG for A x = b (b = g_in on the inlet plane, c = 1 there); x (float64) is the
    initial guess and is updated in place. Vectors other than x are float32, dot products float64.

    Returns (x, iterations, achieved relative residual, from the recursively updated residual).
    Voxels outside the cluster stay 0."""
    mg = mg or Multigrid(lev)
    x[~lev.active] = 0.0
    r = np.empty(lev.shape, np.float32)
    K.residual(*lev.ops, x, None, r)
    bnorm = float(np.sqrt(np.sum(lev.g_in.astype(np.float64) ** 2))) or 1.0
    z = mg(r, np.empty_like(r))
    p = z.copy()
    q = np.empty_like(r)
    rz = K.dot(r, z)
    its, rel = 0, float(np.sqrt(K.dot(r, r))) / bnorm
    while rel > rtol and its < max_it:
        alpha = rz / lev.apply(p, q)
        rel = float(np.sqrt(K.cg_step(x, r, p, q, alpha))) / bnorm
        its += 1
        if rel <= rtol:
            break
        mg(r, z)
        rz_new = K.dot(r, z)
        K.cg_direction(p, z, np.float32(rz_new / rz))
        rz = rz_new
    return x, its, rel


def solve_cluster(
    keep: np.ndarray, axis: int, spacing: tuple[float, float, float], dfield: np.ndarray | None,
    rtol: float, max_it: int, flux_tol: float,
) -> tuple[np.ndarray, float, float, float, int, float]:
    """Solve on the cluster ``keep``; rtol tightened until |J_in - J_out| / J <= flux_tol.

    Returns (concentration on the cluster voxels in C order, J_in, J_out, balance, CG its, rtol)."""
    from tomocell.errors import SolverError

    lev = fine_level(keep, axis, spacing, dfield)
    mg = Multigrid(lev)
    shape = [1, 1, 1]
    shape[axis] = keep.shape[axis]
    x = np.empty(keep.shape)  # initial guess: the open-box solution, linear along the flow axis
    x[...] = (1.0 - (np.arange(keep.shape[axis]) + 0.5) / keep.shape[axis]).reshape(shape)
    first, last = _sl(axis, slice(0, 1)), _sl(axis, slice(-1, None))
    its_total, cur = 0, rtol
    while True:
        x, its, rel = solve(lev, x, cur, max_it, mg)
        its_total += its
        if not np.isfinite(rel) or (its >= max_it and rel > cur):
            raise SolverError(f"CG/GMG did not converge along axis {axis} (relative residual {rel:.1e} after {its} its)")
        f_in = float(np.sum(lev.g_in * (1.0 - x[first]), dtype=np.float64))
        f_out = float(np.sum(lev.g_out * x[last], dtype=np.float64))
        err = abs(f_in - f_out) / max(abs(f_in), abs(f_out), 1e-300)
        if err <= flux_tol or cur <= 1e-14:
            break
        cur = max(cur * 1e-2, 1e-14)
    return x[keep], f_in, f_out, err, its_total, cur
