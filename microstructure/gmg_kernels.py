"""Compiled (numba) kernels of the matrix-free multigrid of :mod:`tortuosity_gmg`.

Every kernel works on one grid level, given by its face conductances ``g0, g1, g2`` (float32, shape
n-1 along their own axis), the inlet/outlet conductances ``gin, gout`` (the plane normal to
``axis``) and, for the smoothers, the inverse diagonal. Loops run in parallel over the planes of
axis 0; every kernel writes only the voxels of its own plane (no write races). Sums are accumulated
in float64. The operator is applied in gather form, sum_j g_ij (u_i - u_j): the face term seen from
both sides is the same floating-point number with the sign flipped, so the row sums are the
boundary conductances exactly (the flux balance measures the solve, not rounding).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _plane(axis, z, y, x, nz, ny, nx):  # noqa: ANN001, ANN202 - numba helper
    """(on the inlet plane, on the outlet plane, index of the voxel in that plane) along ``axis``."""
    # int64 casts: a prange index is unsigned, and unsigned with signed would unify to float64
    z, y, x = np.int64(z), np.int64(y), np.int64(x)
    if axis == 0:
        return z == 0, z == nz - 1, y, x
    if axis == 1:
        return y == 0, y == ny - 1, z, x
    return x == 0, x == nx - 1, z, y


@numba.njit(cache=True, inline="always")
def _row(g0, g1, g2, gin, gout, axis, u, z, y, x):  # noqa: ANN001, ANN202 - numba helper
    """(A u)_i and the diagonal A_ii at voxel (z, y, x), in float64."""
    nz, ny, nx = u.shape
    ui = np.float64(u[z, y, x])
    acc = 0.0
    d = 0.0
    if z > 0:
        g = np.float64(g0[z - 1, y, x])
        acc += g * (ui - u[z - 1, y, x])
        d += g
    if z < nz - 1:
        g = np.float64(g0[z, y, x])
        acc += g * (ui - u[z + 1, y, x])
        d += g
    if y > 0:
        g = np.float64(g1[z, y - 1, x])
        acc += g * (ui - u[z, y - 1, x])
        d += g
    if y < ny - 1:
        g = np.float64(g1[z, y, x])
        acc += g * (ui - u[z, y + 1, x])
        d += g
    if x > 0:
        g = np.float64(g2[z, y, x - 1])
        acc += g * (ui - u[z, y, x - 1])
        d += g
    if x < nx - 1:
        g = np.float64(g2[z, y, x])
        acc += g * (ui - u[z, y, x + 1])
        d += g
    on_in, on_out, p0, p1 = _plane(axis, z, y, x, nz, ny, nx)
    if on_in:
        acc += gin[p0, p1] * ui
        d += gin[p0, p1]
    if on_out:
        acc += gout[p0, p1] * ui
        d += gout[p0, p1]
    return acc, d


@numba.njit(parallel=True, cache=True)
def diagonal(g0, g1, g2, gin, gout, axis, out):  # noqa: ANN001, ANN201
    """out = 1 / A_ii where A_ii > 0, else 0 (voxels outside the cluster)."""
    nz, ny, nx = out.shape
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                d = _row(g0, g1, g2, gin, gout, axis, out, z, y, x)[1]
                out[z, y, x] = 1.0 / d if d > 0.0 else 0.0


@numba.njit(parallel=True, cache=True)
def residual(g0, g1, g2, gin, gout, axis, u, b, out):  # noqa: ANN001, ANN201
    """out = b - A u (b may be None: the inlet right-hand side b = gin on the first plane)."""
    nz, ny, nx = u.shape
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                a = _row(g0, g1, g2, gin, gout, axis, u, z, y, x)[0]
                if b is None:
                    on_in, on_out, p0, p1 = _plane(axis, z, y, x, nz, ny, nx)
                    bi = np.float64(gin[p0, p1]) if on_in else 0.0
                else:
                    bi = np.float64(b[z, y, x])
                out[z, y, x] = bi - a


@numba.njit(parallel=True, cache=True)
def apply_dot(g0, g1, g2, gin, gout, axis, u, out):  # noqa: ANN001, ANN201
    """out = A u; returns u . A u (float64)."""
    nz, ny, nx = u.shape
    s = 0.0
    for z in numba.prange(nz):
        sz = 0.0
        for y in range(ny):
            for x in range(nx):
                a = _row(g0, g1, g2, gin, gout, axis, u, z, y, x)[0]
                out[z, y, x] = a
                sz += a * u[z, y, x]
        s += sz
    return s


@numba.njit(parallel=True, cache=True)
def gauss_seidel(g0, g1, g2, gin, gout, axis, inv_diag, b, u, colour):  # noqa: ANN001, ANN201
    """One red-black Gauss-Seidel half sweep in place: voxels with (z + y + x) % 2 == colour."""
    nz, ny, nx = u.shape
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range((z + y + colour) % 2, nx, 2):
                w = inv_diag[z, y, x]
                if w == 0.0:
                    continue
                a = _row(g0, g1, g2, gin, gout, axis, u, z, y, x)[0]
                u[z, y, x] += w * (b[z, y, x] - a)


@numba.njit(parallel=True, cache=True)
def restrict(r, out):  # noqa: ANN001, ANN201
    """out = sum of r over 2x2x2 aggregates (P^T r); odd sizes: the last aggregate is thinner."""
    nz, ny, nx = r.shape
    cz, cy, cx = out.shape
    for k in numba.prange(cz):
        for j in range(cy):
            for i in range(cx):
                s = 0.0
                for z in range(2 * k, min(2 * k + 2, nz)):
                    for y in range(2 * j, min(2 * j + 2, ny)):
                        for x in range(2 * i, min(2 * i + 2, nx)):
                            s += r[z, y, x]
                out[k, j, i] = s


@numba.njit(parallel=True, cache=True)
def prolong_add(u, uc, scale):  # noqa: ANN001, ANN201
    """u += scale * P uc (piecewise constant over the aggregates)."""
    nz, ny, nx = u.shape
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                u[z, y, x] += scale * uc[z // 2, y // 2, x // 2]


@numba.njit(parallel=True, cache=True)
def dot(a, b):  # noqa: ANN001, ANN201
    """a . b (3D arrays) accumulated in float64."""
    nz, ny, nx = a.shape
    s = 0.0
    for z in numba.prange(nz):
        sz = 0.0
        for y in range(ny):
            for x in range(nx):
                sz += np.float64(a[z, y, x]) * b[z, y, x]
        s += sz
    return s


@numba.njit(parallel=True, cache=True)
def cg_step(x, r, p, q, alpha):  # noqa: ANN001, ANN201
    """x += alpha p, r -= alpha q (3D arrays); returns r . r (float64)."""
    nz, ny, nx = x.shape
    s = 0.0
    for z in numba.prange(nz):
        sz = 0.0
        for y in range(ny):
            for i in range(nx):
                x[z, y, i] += alpha * p[z, y, i]
                ri = r[z, y, i] - alpha * q[z, y, i]
                r[z, y, i] = ri
                sz += np.float64(r[z, y, i]) * r[z, y, i]
        s += sz
    return s


@numba.njit(parallel=True, cache=True)
def cg_direction(p, z, beta):  # noqa: ANN001, ANN201
    """p = z + beta p (3D arrays)."""
    nz, ny, nx = p.shape
    for k in numba.prange(nz):
        for j in range(ny):
            for i in range(nx):
                p[k, j, i] = z[k, j, i] + beta * p[k, j, i]
