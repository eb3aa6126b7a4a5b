"""Particle sizes and packing of the synthetic electrode generator (:mod:`.synthetic`).

:func:`size_distribution` fits the truncated log-normal volume-weighted size distribution to a
D50/D90; :func:`stratified_diameters` draws diameters that fill a volume with that distribution
(stratified in the cumulative volume, so small boxes still get the tail); :func:`pack_particles`
places ellipsoids of those sizes (random orientation, sphericity per particle) into the box by
random sequential addition with bounded overlap on the voxel grid, in rounds that raise the overlap
allowance when the packing jams. Units: micrometres; voxel sizes ``vs`` in um per axis.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import edt
import numpy as np
from scipy import optimize, special
from scipy.spatial.transform import Rotation

from tomocell.errors import InputError
from tomocell.log import get_logger, progress

if TYPE_CHECKING:
    from tomocell.microstructure.synthetic import GeneratorParams

log = get_logger("microstructure.packing")


# ----------------------------------------------------------------------------- size distribution
def _trunc_quantile(m: float, s: float, lo: float, hi: float, q: float) -> float:
    a, b = special.ndtr((math.log(lo) - m) / s), special.ndtr((math.log(hi) - m) / s)
    return math.exp(m + s * special.ndtri(a + q * (b - a)))


def size_distribution(d50_um: float, d90_um: float, d_min_um: float, d_max_um: float) -> tuple[float, float]:
    """(mu, sigma) of the log-normal *volume-weighted* diameter distribution (um) whose truncation to
    [d_min, d_max] has the given D50 and D90. The number distribution is log-normal(mu - 3 sigma^2, sigma)."""
    if not 0 < d_min_um < d50_um < d90_um < d_max_um:
        raise InputError(f"need 0 < d_min < D50 < D90 < d_max (um), got {d_min_um}, {d50_um}, {d90_um}, {d_max_um}")
    s0 = math.log(d90_um / d50_um) / special.ndtri(0.9)
    x0 = np.array([math.log(d50_um), s0])

    def resid(x: np.ndarray) -> list[float]:
        m, s = float(x[0]), abs(float(x[1])) + 1e-9
        return [math.log(_trunc_quantile(m, s, d_min_um, d_max_um, 0.5) / d50_um),
                math.log(_trunc_quantile(m, s, d_min_um, d_max_um, 0.9) / d90_um)]

    sol, info, ok, msg = optimize.fsolve(resid, x0, full_output=True)
    if ok != 1 or max(abs(r) for r in resid(sol)) > 1e-6:
        raise InputError(f"no log-normal truncated to [{d_min_um}, {d_max_um}] um has D50={d50_um}, D90={d90_um} um: {msg}")
    return float(sol[0]), abs(float(sol[1]))


def stratified_diameters(total_volume_um3: float, mu: float, sigma: float, lo: float, hi: float,
                         rng: np.random.Generator) -> np.ndarray:
    """Diameters whose volume-weighted empirical CDF follows the truncated log-normal(mu, sigma).

    Walks the volume-weighted CDF: each particle takes a slice of it as wide as its own share of the
    total volume, its diameter drawn inside that slice (quasi-Monte Carlo: no clustering of sizes).
    """
    a, b = special.ndtr((math.log(lo) - mu) / sigma), special.ndtr((math.log(hi) - mu) / sigma)

    def q(u: float) -> float:
        return math.exp(mu + sigma * special.ndtri(a + min(max(u, 0.0), 1 - 1e-12) * (b - a)))

    out = []
    u = 0.0
    while u < 1.0:
        # the particle sits at a random point of its own slice [u, u + du], du = its volume share
        t = rng.uniform()
        d = q(u)
        for _ in range(6):
            d = q(u + t * math.pi / 6 * d**3 / total_volume_um3)
        du = math.pi / 6 * d**3 / total_volume_um3
        if u + du > 1.0 and rng.uniform() > (1.0 - u) / du:
            break  # last slice only partly inside: keep it with the matching probability (unbiased)
        out.append(d)
        u += du
    return np.array(out)


# ----------------------------------------------------------------------------- particles
def _shapes(d: np.ndarray, p: GeneratorParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Semi-axes (n, 3) sorted major->minor, and rotation matrices (n, 3, 3) (columns = axis directions)."""
    mean, sd = p.sphericity
    lo, hi = p.sphericity_range
    n = d.size
    mu = np.clip(mean + p.sphericity_size_trend * np.log(d / p.d50_um), lo + 1e-3, hi - 1e-3)
    if sd > 0:
        a_ = (lo - mu) / sd
        b_ = (hi - mu) / sd
        u = rng.uniform(size=n)
        s = mu + sd * special.ndtri(special.ndtr(a_) + u * (special.ndtr(b_) - special.ndtr(a_)))
    else:
        s = mu
    t = rng.uniform(size=n)
    r = d / 2
    major = r / s ** ((1 + t) / 3)
    semi = np.stack([major, major * s**t, major * s], axis=1)
    rot = Rotation.random(n, random_state=rng).as_matrix() if n else np.zeros((0, 3, 3))
    return semi, rot


class _Packer:
    """Places ellipsoids into an id array with bounded overlap.

    Axis 0 (thickness) is bounded by the separator and current-collector walls. Axes 1 and 2 either cut
    particles (default) or, with ``periodic_inplane``, wrap them (a particle leaving one side face
    re-enters at the opposite one).
    """

    def __init__(self, shape: tuple[int, int, int], vs: np.ndarray, p: GeneratorParams, rng: np.random.Generator):
        self.shape = shape
        self.vs = vs
        self.p = p
        self.rng = rng
        self.ids = np.zeros(shape, dtype=np.int32)
        self.n_active = 0
        self.vox_count: list[int] = [0]
        self.k = np.maximum(1, np.round(0.5 / vs)).astype(int)  # coarse grid ~0.5 um for placement search
        self.dist: np.ndarray | None = None
        self.max_overlap = p.max_overlap
        self.periodic = p.periodic_inplane

    def refresh(self) -> None:
        """Free-space distance on the coarse grid (periodic in-plane via wrap padding)."""
        k = self.k
        coarse = self.ids[:: k[0], :: k[1], :: k[2]] == 0
        h = self.vs * k
        # distances matter up to the largest placement threshold (0.6 x the largest minor semi-axis)
        pad = [0] + [min(n, int(np.ceil(0.3 * self.p.d_max_um / hj)) + 1) if self.periodic else 0
                     for n, hj in zip(coarse.shape[1:], h[1:])]
        big = np.pad(coarse, [(0, 0), (pad[1], pad[1]), (pad[2], pad[2])], mode="wrap")
        d = edt.edt(big, anisotropy=tuple(float(x) for x in h), black_border=False, parallel=2)
        self.dist = np.ascontiguousarray(d[:, pad[1]: pad[1] + coarse.shape[1], pad[2]: pad[2] + coarse.shape[2]])

    def _window(self, lo: np.ndarray, hi: np.ndarray, n: tuple[int, ...]) -> tuple[list[np.ndarray], tuple[Any, ...]]:
        """(grid positions per axis, index for the array) of the box [lo, hi): clipped on axis 0 (walls), on
        axes 1-2 wrapped to at most one period if periodic, else clipped."""
        pos = [np.arange(max(lo[0], 0), min(hi[0], n[0]))]
        idx = [pos[0]]
        for j in (1, 2):
            if self.periodic:
                r = np.arange(lo[j], min(hi[j], lo[j] + n[j]))
                pos.append(r)
                idx.append(np.mod(r, n[j]))
            else:
                r = np.arange(max(lo[j], 0), min(hi[j], n[j]))
                pos.append(r)
                idx.append(r)
        return pos, np.ix_(*idx)

    def mark(self, centre: np.ndarray, radius_um: float, reach_um: float) -> None:
        """Lower the coarse free-space distance around a new particle (bounding sphere), out to ``reach_um``.

        Cheaper than a new distance transform after every particle; a full refresh happens each round.
        """
        assert self.dist is not None
        h = self.vs * self.k
        c = centre / h
        ext = (radius_um + reach_um) / h
        lo = np.floor(c - ext).astype(int)
        hi = np.ceil(c + ext).astype(int) + 1
        pos, ix = self._window(lo, hi, self.dist.shape)
        if not all(r.size for r in pos):
            return
        g = [(r - cj) * hj for r, cj, hj in zip(pos, c, h)]
        r = np.sqrt(g[0][:, None, None] ** 2 + g[1][None, :, None] ** 2 + g[2][None, None, :] ** 2) - radius_um
        self.dist[ix] = np.minimum(self.dist[ix], np.maximum(r, 0.0).astype(self.dist.dtype))

    def candidates(self, need_um: float, n: int) -> np.ndarray:
        assert self.dist is not None
        flat = self.dist.ravel()
        # rejection sampling first (cheap); a full scan of the coarse grid only when free space is rare
        trial = self.rng.integers(0, flat.size, size=32 * n)
        ok = trial[flat[trial] >= need_um]
        if ok.size < n:
            ok = np.flatnonzero(flat >= need_um)
            if ok.size == 0:
                m = max(1, flat.size // 200)
                ok = np.argpartition(flat, -m)[-m:]
        pick = self.rng.choice(ok, size=min(n, ok.size), replace=False) if ok.size > n else ok
        idx = np.stack(np.unravel_index(pick, self.dist.shape), axis=1)
        jitter = self.rng.uniform(-0.5, 0.5, size=idx.shape)
        return (idx * self.k + jitter * self.k) * self.vs  # um, voxel-centre convention: centre i at i*vs

    def try_place(self, centre: np.ndarray, semi: np.ndarray, rot: np.ndarray, budget: int) -> int:
        """Stamp if admissible; returns new active voxels, 0 if rejected, -1 if it would exceed ``budget``."""
        p, vs = self.p, self.vs
        half = np.sqrt(((rot * semi[None, :]) ** 2).sum(axis=1))  # extent along each grid axis (um)
        L0 = self.shape[0] * vs[0]
        pen = p.wall_penetration * half[0]
        # walls at the separator plane (0) and the CC plane (L0); voxel i spans [(i-0.5)vs, (i+0.5)vs]
        lo_wall, hi_wall = -0.5 * vs[0], L0 - 0.5 * vs[0]
        if centre[0] - half[0] + pen < lo_wall or centre[0] + half[0] - pen > hi_wall:
            return 0
        lo = np.floor((centre - half) / vs).astype(int)
        hi = np.ceil((centre + half) / vs).astype(int) + 1
        pos, ix = self._window(lo, hi, self.shape)
        if not all(r.size for r in pos):
            return 0
        g = [r * vs[j] - centre[j] for j, r in enumerate(pos)]
        m = rot @ np.diag(1.0 / semi**2) @ rot.T
        x, y, z = g[0][:, None, None], g[1][None, :, None], g[2][None, None, :]
        q = (m[0, 0] * x * x + m[1, 1] * y * y + m[2, 2] * z * z
             + 2 * (m[0, 1] * x * y + m[0, 2] * x * z + m[1, 2] * y * z))
        inside = q <= 1.0
        n_in = int(inside.sum())
        if n_in == 0:
            return 0
        local = self.ids[ix]
        hits = local[inside]
        hits = hits[hits > 0]
        if hits.size > self.max_overlap * n_in:
            return 0
        if hits.size:
            others, counts = np.unique(hits, return_counts=True)
            vc = np.fromiter((self.vox_count[o] for o in others), dtype=np.int64, count=others.size)
            if np.any(counts > self.max_overlap * vc):
                return 0
        new = n_in - hits.size
        if new > budget:
            return -1
        pid = len(self.vox_count)
        local[inside & (local == 0)] = pid
        self.ids[ix] = local
        self.vox_count.append(n_in)
        self.n_active += new
        return new


def _relax_overlap(packer: _Packer, p: GeneratorParams) -> bool:
    """Raise the packer's overlap bound by 0.05 (not beyond ``max_overlap_relax_to``); False if at the limit."""
    if packer.max_overlap >= p.max_overlap_relax_to - 1e-9:
        return False
    packer.max_overlap = min(p.max_overlap_relax_to, packer.max_overlap + 0.05)
    return True


def pack_particles(p: GeneratorParams, shape: tuple[int, int, int], vs: np.ndarray, rng: np.random.Generator,
          mu: float, sigma: float, efficiency: float = 1.0, strict: bool = True
          ) -> tuple[_Packer, dict[str, list[Any]], dict[str, Any]]:
    packer = _Packer(shape, vs, p, rng)
    n_total = int(np.prod(shape))
    target = int(round(p.active_fraction * n_total))
    tol = max(1, int(0.002 * n_total))  # stop within 0.2 % of the target (the CBD is exact)
    truth: dict[str, list[Any]] = {"centre_um": [], "semi_axes_um": [], "axes": [], "d_eq_um": [], "voxels": []}
    # Voxels gained per nominal particle volume (overlaps, side cuts), learnt per round. Each round asks for
    # a little less than the deficit, so stopping at the target never drops the small end of a sample; the
    # particles a round could not place (mostly large ones in a crowded box) are owed to the distribution
    # and retried first in the next round, so the size distribution is not skewed towards small particles.
    eff_first = None
    dropped = 0
    stalled = 0
    pend_d = np.zeros(0)
    pend_semi = np.zeros((0, 3))
    pend_rot = np.zeros((0, 3, 3))
    rounds = 0
    while packer.n_active < target - tol and rounds < 40:
        rounds += 1
        deficit_um3 = (target - packer.n_active) * float(np.prod(vs))
        owed = float(np.sum(math.pi / 6 * pend_d**3))
        want = 0.97 * deficit_um3 / efficiency - owed
        d_new = stratified_diameters(want, mu, sigma, p.d_min_um, p.d_max_um, rng) if want > 0 else np.zeros(0)
        semi_new, rot_new = _shapes(d_new, p, rng)
        d = np.concatenate([pend_d, d_new])
        semi = np.concatenate([pend_semi, semi_new])
        rot = np.concatenate([pend_rot, rot_new])
        order = np.argsort(-d, kind="stable")
        d, semi, rot = d[order], semi[order], rot[order]
        not_placed: list[int] = []
        packer.refresh()
        gained_before = packer.n_active
        nominal = 0.0
        for i in progress(range(d.size), desc=f"placing particles (round {rounds})", logger=log):
            budget = target + tol - packer.n_active
            if budget <= 0:
                break
            placed = 0
            need = 0.6 * float(semi[i, 2])
            for attempt in range(4):
                for c in packer.candidates(need * (1.0 - 0.25 * attempt), 8):
                    r = packer.try_place(c, semi[i], rot[i], budget)
                    if r > 0:
                        placed = r
                        truth["centre_um"].append([round(float(x), 4) for x in c])
                        truth["semi_axes_um"].append([round(float(x), 4) for x in semi[i]])
                        truth["axes"].append([[round(float(x), 5) for x in row] for row in rot[i]])
                        truth["d_eq_um"].append(round(float(d[i]), 4))
                        truth["voxels"].append(int(packer.vox_count[-1]))
                        break
                    if r < 0:
                        break
                if placed:
                    break
            if placed:
                nominal += math.pi / 6 * d[i] ** 3
                packer.mark(np.asarray(truth["centre_um"][-1]), float(semi[i, 0]),
                            need + float(packer.vs.max() * packer.k.max()))
            else:
                not_placed.append(i)
        # a particle already owed from the previous round and still not placeable is dropped: no room left
        retry = [i for i in not_placed if order[i] >= pend_d.size]
        dropped += len(not_placed) - len(retry)
        pend_d, pend_semi, pend_rot = d[retry], semi[retry], rot[retry]
        gained = packer.n_active - gained_before
        if nominal > 0 and gained > 0:
            efficiency = float(np.clip(gained * float(np.prod(vs)) / nominal, 0.2, 1.0))
            if eff_first is None:
                eff_first = efficiency
        log.debug("packing round %d: active %.4f of %.4f", rounds, packer.n_active / n_total, p.active_fraction)
        # a round of several particles placed under a tenth of its volume: jammed at this overlap bound
        requested = float(np.sum(math.pi / 6 * d**3))
        if d.size >= 5 and nominal < 0.1 * requested and _relax_overlap(packer, p):
            log.info("packing jams at active %.3f: max_overlap raised to %.2f", packer.n_active / n_total,
                     packer.max_overlap)
        stalled = stalled + 1 if gained == 0 else 0
        if stalled >= 6 or (stalled >= 3 and packer.max_overlap >= p.max_overlap_relax_to - 1e-9):
            break
    if strict and abs(packer.n_active - target) > 0.005 * n_total:
        raise InputError(
            f"could not pack active fraction {p.active_fraction} (reached {packer.n_active / n_total:.3f}) in box "
            f"{p.box_um} um with max_overlap up to {packer.max_overlap:.2f}: lower the fraction, raise "
            "max_overlap_relax_to or enlarge the box"
        )
    return packer, truth, {"rounds": rounds, "max_overlap_used": round(packer.max_overlap, 3), "particles_dropped": dropped + int(pend_d.size),
                           "efficiency_first_round": eff_first}
