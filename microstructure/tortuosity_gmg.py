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
aggregation, Braess 1995 / Notay 2010), damped Jacobi smooths, the coarsest level is factorised
(scipy SuperLU). The cycle runs in float32; CG and the flux balance run in float64. The cycle is
symmetric (same smoother before and after, R = P^T), so it is a valid CG preconditioner.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: coarse-grid correction weight for piecewise-constant aggregation (measured best on the GAN crop)
COARSE_SCALE = 1.8
#: damped-Jacobi weight (6/7 is the smoothing optimum of the 7-point Laplacian)
JACOBI_OMEGA = 6.0 / 7.0
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
        diag = np.zeros(self.shape, np.float32)
        for k in range(3):
            diag[_sl(k, slice(0, -1))] += g[k]
            diag[_sl(k, slice(1, None))] += g[k]
        diag[_sl(axis, slice(0, 1))] += g_in
        diag[_sl(axis, slice(-1, None))] += g_out
        self.diag = diag
        with np.errstate(divide="ignore"):
            self.inv_diag = np.where(diag > 0, np.float32(1.0) / diag, np.float32(0.0)).astype(np.float32)
        self.buf = np.empty(int(np.prod(self.shape)), np.float32)

    def apply(self, u: np.ndarray, out: np.ndarray, buf: np.ndarray | None = None) -> np.ndarray:
        """out = A u (u, out of this level's shape; dtype of u), in flux form: each face flux
        g (u_i - u_j) is added to one voxel and taken from the other, so the row sums equal the
        boundary conductances exactly and the flux balance measures the solve, not rounding."""
        if buf is None:
            buf = self.buf if u.dtype == np.float32 else np.empty(u.size, u.dtype)
        out.fill(0.0)
        first, last = _sl(self.axis, slice(0, 1)), _sl(self.axis, slice(-1, None))
        out[first] += self.g_in * u[first]
        out[last] += self.g_out * u[last]
        for k in range(3):
            lo, hi = _sl(k, slice(0, -1)), _sl(k, slice(1, None))
            t = buf[: self.g[k].size].reshape(self.g[k].shape)
            np.subtract(u[lo], u[hi], out=t)
            t *= self.g[k]
            out[lo] += t
            out[hi] -= t
        return out

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


def restrict(r: np.ndarray) -> np.ndarray:
    """Sum over 2x2x2 aggregates (P^T), as eight strided adds (faster than a 6D reshape-sum)."""
    out = np.zeros(tuple((n + 1) // 2 for n in r.shape), np.float32)
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                src = r[a::2, b::2, c::2]
                out[: src.shape[0], : src.shape[1], : src.shape[2]] += src
    return out


def prolong_add(u: np.ndarray, uc: np.ndarray, scale: float) -> None:
    """u += scale * P uc (piecewise constant)."""
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                dst = u[a::2, b::2, c::2]
                dst += np.float32(scale) * uc[: dst.shape[0], : dst.shape[1], : dst.shape[2]]


class Multigrid:
    """V-cycle preconditioner over a hierarchy of :class:`Level` s."""

    def __init__(self, fine: Level, smooth: int = 2) -> None:
        self.levels = [fine]
        while self.levels[-1].diag.size > COARSEST_VOXELS and min(self.levels[-1].shape) > 2:
            self.levels.append(self.levels[-1].coarsen())
        self.smooth = smooth
        self._factor_coarsest()

    def _factor_coarsest(self) -> None:
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        lev = self.levels[-1]
        act = lev.diag.ravel() > 0
        idx = np.full(lev.diag.size, -1, np.int64)
        idx[act] = np.arange(int(act.sum()))
        flat = np.arange(lev.diag.size).reshape(lev.shape)
        rows, cols, vals = [idx[act]], [idx[act]], [lev.diag.ravel()[act].astype(np.float64)]
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

    def _cycle(self, i: int, b: np.ndarray) -> np.ndarray:
        lev = self.levels[i]
        if i == len(self.levels) - 1:
            x = np.zeros(b.size, np.float32)
            if self._lu is not None:
                x[self._act] = self._lu.solve(b.ravel()[self._act].astype(np.float64))
            return x.reshape(b.shape)
        w = np.float32(JACOBI_OMEGA)
        wd = w * lev.inv_diag
        u = wd * b
        r = np.empty_like(b)

        def sweep() -> None:
            lev.apply(u, r)
            np.subtract(b, r, out=r)
            np.multiply(r, wd, out=r)
            np.add(u, r, out=u)

        for _ in range(self.smooth - 1):
            sweep()
        lev.apply(u, r)
        np.subtract(b, r, out=r)
        prolong_add(u, self._cycle(i + 1, restrict(r)), COARSE_SCALE)
        for _ in range(self.smooth):
            sweep()
        return u

    def __call__(self, r: np.ndarray) -> np.ndarray:
        return self._cycle(0, r.astype(np.float32))


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
    """Preconditioned CG in float64 for A x = b (b = g_in, inlet at c = 1); x is the initial guess.

    Returns (x, iterations, achieved relative residual). Voxels outside the cluster stay 0."""
    mg = mg or Multigrid(lev)
    active = lev.diag > 0
    b = np.zeros(lev.shape, np.float64)
    b[_sl(lev.axis, slice(0, 1))] = lev.g_in
    x = np.where(active, x, 0.0)
    buf = np.empty(x.size, np.float64)
    q = np.empty_like(x)
    r = b - lev.apply(x, q, buf)
    bnorm = float(np.sqrt(np.vdot(b, b))) or 1.0
    z = mg(r).astype(np.float64)
    p = z.copy()
    rz = float(np.vdot(r, z))
    its, rel = 0, float(np.sqrt(np.vdot(r, r))) / bnorm
    t = np.empty_like(x)
    while rel > rtol and its < max_it:
        lev.apply(p, q, buf)
        alpha = rz / float(np.vdot(p, q))
        np.multiply(p, alpha, out=t)
        x += t
        np.multiply(q, alpha, out=t)
        r -= t
        its += 1
        rel = float(np.sqrt(np.vdot(r, r))) / bnorm
        if rel <= rtol:
            break
        z[...] = mg(r)
        rz_new = float(np.vdot(r, z))
        p *= rz_new / rz
        p += z
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
