"""Tortuosity factor: analytic cases (open box, channels, layered series/parallel), isotropy,
non-percolating input, MPI invariance."""

from __future__ import annotations

import numpy as np
import pytest

from tomocell.errors import InputError, NotPercolatingError
from tomocell.microstructure.tortuosity import effective_diffusivity, tortuosity_factor, tortuosity_all
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


def random_spheres(n: int, count: int, r2: float, seed: int) -> np.ndarray:
    """Pore box with ``count`` overlapping solid spheres (radius^2 = r2 voxels^2) at random centres."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((n, n, n), np.uint8)
    z, y, x = np.ogrid[:n, :n, :n]
    for c in rng.uniform(0, n, (count, 3)):
        lab[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r2] = ACTIVE
    return lab


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_open_box_tau_is_one(axis):
    v = Volume(np.zeros((12, 9, 7), np.uint8), (1.0, 0.5, 2.0))
    r = tortuosity_factor(v, "pore", axis, want_flux_map=True)
    assert r.percolating and r.eps == 1.0
    assert abs(r.tau - 1.0) < 1e-6
    assert abs(r.d_eff_over_d0 - 1.0) < 1e-6
    assert r.flux_balance_error < 1e-6
    # uniform flux everywhere: flux map is 1 in every voxel
    assert np.allclose(r.flux_map, 1.0, atol=1e-5)


def test_straight_channels_tau_one_along_and_blocked_across():
    lab = np.full((20, 16, 16), ACTIVE, np.uint8)
    lab[:, 2:5, 3:6] = PORE
    lab[:, 9:11, 10:14] = PORE
    v = Volume(lab, 0.3)
    r = tortuosity_factor(v, "pore", 0)
    eps = (9 + 8) / 256
    assert abs(r.eps - eps) < 1e-12
    assert abs(r.tau - 1.0) < 1e-6
    assert abs(r.d_eff_over_d0 - eps) < 1e-6
    with pytest.raises(NotPercolatingError, match="infinite"):
        tortuosity_factor(v, "pore", 1)
    res = tortuosity_factor(v, "pore", 2, raise_if_not_percolating=False)
    assert res.percolating is False and res.tau is None


def test_layered_series_and_parallel_match_analytic():
    d1, d2 = 1.0, 0.1
    f = np.ones((24, 6, 6), np.float32)
    f[8:20] = d2  # layers normal to axis 0: series along 0, parallel along 1 and 2
    L1, L2 = 12, 12  # voxels with D1 (0-7 and 20-23) and with D2
    series = 24 / (L1 / d1 + L2 / d2)
    parallel = (L1 * d1 + L2 * d2) / 24
    r0 = effective_diffusivity(f, 0.5, 0, flux_tol=1e-9, rtol=1e-12)
    r1 = effective_diffusivity(f, 0.5, 1, flux_tol=1e-9, rtol=1e-12)
    r2 = effective_diffusivity(f, 0.5, 2, flux_tol=1e-9, rtol=1e-12)
    assert abs(r0.d_eff_over_d0 - series) / series < 1e-6
    assert abs(r1.d_eff_over_d0 - parallel) / parallel < 1e-6
    assert abs(r2.d_eff_over_d0 - parallel) / parallel < 1e-6
    assert r0.tau > r1.tau  # series layers are the tortuous direction


def test_isotropic_random_volume_directions_agree():
    # overlapping random spheres of solid in an isotropic box: three directions within spread
    lab = random_spheres(48, 70, 25, seed=3)
    v = Volume(lab, 1.0)
    taus = [r.tau for r in tortuosity_all(v, "pore").values()]
    eps = float((lab == PORE).mean())
    assert 0.4 < eps < 0.8
    assert all(1.0 < t < 2.5 for t in taus)
    spread = (max(taus) - min(taus)) / np.mean(taus)
    assert spread < 0.12, taus


def test_electronic_solid_tortuosity_and_bad_input():
    lab = np.full((10, 8, 8), PORE, np.uint8)
    lab[:, :4] = ACTIVE
    lab[:, 4:6] = CBD
    v = Volume(lab, 1.0)
    r = tortuosity_factor(v, "solid", 0)
    assert abs(r.tau - 1.0) < 1e-6 and abs(r.eps - 0.75) < 1e-12
    with pytest.raises(InputError, match="unknown phase"):
        tortuosity_factor(v, "electrolyte", 0)
    with pytest.raises(InputError, match="axis"):
        tortuosity_factor(v, "pore", 3)
    with pytest.raises(InputError, match="no pore"):
        tortuosity_factor(Volume(np.ones((4, 4, 4), np.uint8), 1.0), "pore", 0)


def test_dead_ends_and_isolated_pores_count_in_eps_not_in_flux():
    lab = np.full((16, 10, 10), ACTIVE, np.uint8)
    lab[:, 2:4, 2:4] = PORE          # channel: 4 / 100 of the cross-section
    lab[5:9, 6:9, 6:9] = PORE        # isolated pore (touches no face)
    lab[0:6, 6:8, 2:4] = PORE        # dead end open to the inlet face only (blind pore)
    v = Volume(lab, 1.0)
    r = tortuosity_factor(v, "pore", 0, flux_tol=1e-8, rtol=1e-10)
    assert abs(r.d_eff_over_d0 - 0.04) < 1e-6  # only the channel carries flux
    assert r.eps > r.eps_transporting and abs(r.eps_transporting - 0.04) < 1e-12
    assert abs(r.tau - r.eps / 0.04) < 1e-4


@pytest.mark.mpi
def test_tau_same_on_any_number_of_ranks():
    import tomocell.fem  # noqa: F401
    from petsc4py import PETSc

    v = Volume(random_spheres(32, 40, 16, seed=11), 0.5)
    par = tortuosity_factor(v, "pore", 0, flux_tol=1e-8, rtol=1e-10, want_flux_map=True)
    ser = tortuosity_factor(v, "pore", 0, flux_tol=1e-8, rtol=1e-10, comm=PETSc.COMM_SELF, want_flux_map=True)
    assert abs(par.tau - ser.tau) / ser.tau < 1e-6
    assert np.allclose(par.flux_map, ser.flux_map, atol=1e-4)
    icc = tortuosity_factor(v, "pore", 0, flux_tol=1e-8, rtol=1e-10, preconditioner="icc")
    assert abs(icc.tau - ser.tau) / ser.tau < 1e-6


def test_chunked_assembly_gives_the_same_matrix(monkeypatch):
    from tomocell.microstructure import tortuosity as T

    v = Volume(random_spheres(24, 20, 9, seed=5), 0.5)
    ref = T.tortuosity_factor(v, "pore", 2, flux_tol=1e-10, rtol=1e-12, preconditioner="gamg")
    monkeypatch.setattr(T, "ASSEMBLY_CHUNK_ROWS", 333)
    chunked = T.tortuosity_factor(v, "pore", 2, flux_tol=1e-10, rtol=1e-12, preconditioner="gamg")
    assert chunked.tau == pytest.approx(ref.tau, rel=1e-10)


def test_icc_fallback_gives_the_same_tau():
    v = Volume(random_spheres(24, 20, 9, seed=7), 0.5)
    amg = tortuosity_factor(v, "pore", 0, flux_tol=1e-9, rtol=1e-11, preconditioner="gamg")
    icc = tortuosity_factor(v, "pore", 0, flux_tol=1e-9, rtol=1e-11, preconditioner="icc")
    assert icc.tau == pytest.approx(amg.tau, rel=1e-7)
    with pytest.raises(InputError, match="preconditioner"):
        tortuosity_factor(v, "pore", 0, preconditioner="lu")


@pytest.mark.parametrize("axis", [0, 2])
def test_matrix_free_multigrid_matches_assembled_gamg(axis):
    # odd, non-cubic box with anisotropic voxels: several multigrid levels with thin last aggregates
    lab = random_spheres(41, 60, 16, seed=13)[:, :37, :]
    v = Volume(lab, (0.5, 0.4, 0.6))
    ref = tortuosity_factor(v, "pore", axis, flux_tol=1e-8, rtol=1e-10, preconditioner="gamg", want_flux_map=True)
    gmg = tortuosity_factor(v, "pore", axis, flux_tol=1e-8, rtol=1e-10, preconditioner="gmg", want_flux_map=True)
    assert gmg.tau == pytest.approx(ref.tau, rel=1e-6)
    assert gmg.flux_balance_error < 1e-8
    assert np.allclose(gmg.flux_map, ref.flux_map, atol=1e-4)
    from tomocell.microstructure.tortuosity_gmg import Multigrid, fine_level
    from tomocell.microstructure.tortuosity import transporting_cluster

    assert len(Multigrid(fine_level(transporting_cluster(lab == PORE, axis), axis, (0.5, 0.4, 0.6))).levels) >= 3
    # a diffusivity field goes through the same path
    f = np.where(lab == PORE, 1.0, 0.05).astype(np.float32)
    a = effective_diffusivity(f, 0.5, axis, flux_tol=1e-8, rtol=1e-10, preconditioner="gamg")
    b = effective_diffusivity(f, 0.5, axis, flux_tol=1e-8, rtol=1e-10, preconditioner="gmg")
    assert b.d_eff_over_d0 == pytest.approx(a.d_eff_over_d0, rel=1e-6)
