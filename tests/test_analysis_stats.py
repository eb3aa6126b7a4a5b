"""The statistics behind the discharge analyses, on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tomocell.errors import InputError
from tomocell.studies.analysis_stats import (
    correlation_2d,
    depth_profile,
    electrochemical_biot,
    histogram_peaks,
    overpotential_decomposition,
    ragone_knee,
)

rng = np.random.default_rng(7)


def test_uniform_sol_gives_one_peak():
    sol = 0.62 + 0.002 * rng.standard_normal(500)
    peaks, member = histogram_peaks(sol)
    assert len(peaks) == 1
    assert peaks[0].position == pytest.approx(0.62, abs=0.003)
    assert np.all(member == 0) and peaks[0].weight_fraction == pytest.approx(1.0)
    exact, member = histogram_peaks(np.full(10, 0.5))
    assert len(exact) == 1 and exact[0].position == 0.5 and np.all(member == 0)


def test_three_planted_peaks_found_with_their_members():
    centres = np.array([0.35, 0.6, 0.85])
    truth = rng.integers(0, 3, 900)
    sol = centres[truth] + 0.025 * rng.standard_normal(truth.size)
    weights = rng.uniform(0.5, 2.0, truth.size)  # e.g. particle volumes
    peaks, member = histogram_peaks(sol, weights)
    assert np.allclose([p.position for p in peaks], centres, atol=0.02)
    assert np.mean(member == truth) > 0.99
    assert sum(p.weight_fraction for p in peaks) == pytest.approx(1.0)


def test_peaks_ignore_nan_and_check_lengths():
    peaks, member = histogram_peaks(np.array([0.1, np.nan, 0.1, 0.1]))
    assert member.tolist() == [0, -1, 0, 0]
    with pytest.raises(InputError):
        histogram_peaks(np.array([np.nan, np.nan]))
    with pytest.raises(InputError):
        histogram_peaks(np.ones(3), np.ones(4))


def test_planted_correlation_is_recovered():
    eta = rng.uniform(-0.1, 0.0, 4000)
    i0 = rng.uniform(1.0, 3.0, 4000)
    jct = np.exp(-20 * eta) * (1 + 0.01 * rng.standard_normal(eta.size))  # driven by eta, not i0
    c_eta = correlation_2d(eta, jct)
    c_i0 = correlation_2d(i0, jct)
    assert c_eta.spearman == pytest.approx(-1.0, abs=0.02)
    assert abs(c_i0.spearman) < 0.05
    assert c_eta.hist.sum() == eta.size and c_eta.n == eta.size
    x = rng.standard_normal(2000)
    y = 0.6 * x + 0.8 * rng.standard_normal(2000)
    assert correlation_2d(x, y).pearson == pytest.approx(0.6, abs=0.05)


def test_overpotential_decomposition_names_the_driver():
    n = 3000
    phi_e = -0.08 * rng.random(n)  # 80 mV spread
    U = 3.7 + 0.02 * rng.random(n)  # 20 mV spread
    phi_s = np.full(n, 3.6)
    res = overpotential_decomposition(phi_s, phi_e, U)
    assert res.governing == "phi_e"
    assert res.sd_phi_e == pytest.approx(0.08 / np.sqrt(12), rel=0.05)
    assert res.sd_U == pytest.approx(0.02 / np.sqrt(12), rel=0.05)
    assert res.sd_eta == pytest.approx(np.hypot(res.sd_phi_e, res.sd_U), rel=0.05)
    assert overpotential_decomposition(phi_s, 0 * phi_e, U).governing == "U"


def test_depth_profile_of_linear_field():
    z = rng.uniform(0, 50, 20000)
    centres, mean, w = depth_profile(z, 2 * z + 1, edges=np.linspace(0, 50, 11))
    assert np.allclose(mean, 2 * centres + 1, atol=0.3)
    assert w.sum() == z.size
    centres, mean, _ = depth_profile(np.array([0.0, 0.75, 2.0]), np.array([1.0, 3.0, 5.0]), edges=np.array([0, 0.5, 1, 1.5, 2]))
    assert mean[0] == 1.0 and mean[1] == 3.0 and np.isnan(mean[2]) and mean[3] == 5.0  # last edge is inclusive


def test_biot_number():
    bi = electrochemical_biot(np.array([1e-6, 5e-6]), np.array([1e-5, -1e-5]), 1e-14, 5e4)
    assert bi == pytest.approx([1e-5 * 1e-6 / (1e-14 * 5e4), 1e-5 * 5e-6 / (1e-14 * 5e4)])
    with pytest.raises(InputError):
        electrochemical_biot(np.array([0.0]), np.array([1.0]), 1e-14, 5e4)


def test_ragone_knee_is_last_point_before_collapse():
    power = np.array([10, 20, 40, 80, 160, 320, 640.0])
    energy = np.array([600, 598, 594, 585, 560, 300, 60.0])  # collapses after 160
    assert ragone_knee(power, energy) == 4
    shuffled = np.array([3, 0, 6, 1, 5, 2, 4])
    assert shuffled[ragone_knee(power[shuffled], energy[shuffled])] == 4
    collapse_at_160 = np.array([500, 500, 499, 498, 250, 100, 40.0])
    assert ragone_knee(power, collapse_at_160) == 3
    with pytest.raises(InputError):
        ragone_knee(power[:2], energy[:2])
