"""Synthetic electrode generator: fractions, size distribution, shapes, CBD placement, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from tomocell.errors import InputError
from tomocell.microstructure.checks import find_isolated_clusters
from tomocell.microstructure.synthetic import (
    PRESETS,
    generate_electrode,
)
from tomocell.microstructure.packing import size_distribution, stratified_diameters
from tomocell.microstructure.particles import volume_weighted_quantiles
from tomocell.microstructure.volume import ACTIVE, CBD, PORE


@pytest.fixture(scope="module")
def demo():
    return generate_electrode(preset="demo", seed=0, return_particle_ids=True)


@pytest.fixture(scope="module")
def big():
    """50 um cube at 0.5 um: ~2500 particles, enough for stable D50/D90 (about 10 s)."""
    return generate_electrode(box_um=(50, 50, 50), voxel_size_um=0.5, seed=0, return_particle_ids=True)


def test_demo_preset_hits_fractions(demo) -> None:
    v, _ = demo
    assert v.shape == (60, 40, 40) and v.voxel_size_um == (0.5, 0.5, 0.5)
    fr = v.fractions()
    assert fr["active"] == pytest.approx(0.55, abs=0.01)
    assert fr["cbd"] == pytest.approx(0.15, abs=0.01)
    assert fr["pore"] == pytest.approx(0.30, abs=0.01)
    rep = find_isolated_clusters(v)
    assert rep["pore"]["n_isolated"] == 0 and rep["solid"]["n_isolated"] == 0


@pytest.mark.parametrize("active,cbd", [(0.45, 0.05), (0.3, 0.3), (0.7, 0.1)])
def test_other_targets(active: float, cbd: float) -> None:
    v = generate_electrode(preset="demo", active_fraction=active, cbd_fraction=cbd, seed=2)
    fr = v.fractions()
    assert fr["active"] == pytest.approx(active, abs=0.01)
    assert fr["cbd"] == pytest.approx(cbd, abs=0.01)
    rep = find_isolated_clusters(v)
    assert rep["pore"]["n_isolated"] == 0 and rep["solid"]["n_isolated"] == 0


def test_deterministic_by_seed(demo) -> None:
    v, _ = demo
    again = generate_electrode(preset="demo", seed=0)
    other = generate_electrode(preset="demo", seed=1)
    assert np.array_equal(v.labels, again.labels)
    assert not np.array_equal(v.labels, other.labels)


def test_size_distribution_d50_d90(big) -> None:
    v, _ = big
    d = np.asarray(v.metadata["particles"]["d_eq_um"])
    _, d50, d90 = volume_weighted_quantiles(d)
    assert d50 == pytest.approx(5.0, rel=0.10)
    assert d90 == pytest.approx(10.0, rel=0.10)
    assert d.min() >= 2.0 - 1e-9 and d.max() <= 15.0 + 1e-9
    fr = v.fractions()
    assert fr["active"] == pytest.approx(0.55, abs=0.01) and fr["cbd"] == pytest.approx(0.15, abs=0.01)


def test_truncated_lognormal_solution() -> None:
    mu, s = size_distribution(5.0, 10.0, 2.0, 15.0)
    d = stratified_diameters(2e6, mu, s, 2.0, 15.0, np.random.default_rng(0))
    _, d50, d90 = volume_weighted_quantiles(d)
    assert d50 == pytest.approx(5.0, rel=0.01) and d90 == pytest.approx(10.0, rel=0.01)
    with pytest.raises(InputError):
        size_distribution(10.0, 5.0, 2.0, 15.0)


def test_ground_truth_matches_stamped_voxels(big) -> None:
    v, ids = big
    P = v.metadata["particles"]
    vs = 0.5
    semi = np.asarray(P["semi_axes_um"])
    centre = np.asarray(P["centre_um"])
    axes = np.asarray(P["axes"])
    nominal = 4 / 3 * math.pi * semi.prod(axis=1) / vs**3
    half = np.sqrt(((axes * semi[:, None, :]) ** 2).sum(axis=2))
    inside = np.all(centre - half > 0, axis=1) & np.all(centre + half < np.array(v.shape) * vs - vs, axis=1)
    big_enough = semi[:, 2] >= 1.5
    sel = inside & big_enough
    assert sel.sum() > 50
    vox = np.asarray(P["voxels"])[sel]
    assert np.median(np.abs(vox / nominal[sel] - 1)) < 0.03
    # ids: every active voxel belongs to a particle, ids index the ground-truth list
    assert np.array_equal(ids > 0, v.labels == ACTIVE)
    assert ids.max() == len(P["d_eq_um"])
    # the centre voxel of an interior particle carries its id (or a particle it overlaps)
    k = int(np.flatnonzero(sel)[0])
    c = np.round(centre[k] / vs).astype(int)
    assert ids[tuple(c)] > 0
    # semi-axes ordered major >= intermediate >= minor; sphericity in its range, larger more spherical
    assert np.all(semi[:, 0] >= semi[:, 1] - 1e-9) and np.all(semi[:, 1] >= semi[:, 2] - 1e-9)
    s = semi[:, 2] / semi[:, 0]
    assert s.min() >= 0.4 - 1e-6 and s.max() <= 1.0
    d = np.asarray(P["d_eq_um"])
    assert np.mean(s[d > 7]) > np.mean(s[d < 3])
    # rotations are proper and uniformly random: <|cos(major, axis 0)|> = 1/2 on the sphere
    assert np.allclose(np.linalg.det(axes), 1.0, atol=1e-3)
    assert np.mean(np.abs(axes[:, 0, 0])) == pytest.approx(0.5, abs=0.04)


def test_walls_bound_particles(big) -> None:
    v, _ = big
    P = v.metadata["particles"]
    semi = np.asarray(P["semi_axes_um"])
    axes = np.asarray(P["axes"])
    c0 = np.asarray(P["centre_um"])[:, 0]
    h0 = np.sqrt(((axes[:, 0, :] * semi) ** 2).sum(axis=1))
    pen = 0.15 * h0 + 1e-6
    L0 = v.shape[0] * 0.5
    assert np.all(c0 - h0 + pen >= -0.25) and np.all(c0 + h0 - pen <= L0 - 0.25)


def test_cbd_sits_at_necks_and_surfaces(demo) -> None:
    v, _ = demo
    active = v.labels == ACTIVE
    near = ndimage.binary_dilation(active, structure=ndimage.generate_binary_structure(3, 1))
    cbd_touch = np.mean(near[v.labels == CBD])
    pore_touch = np.mean(near[v.labels == PORE])
    assert cbd_touch > 0.6 and cbd_touch > pore_touch + 0.2
    # the current-collector layer holds more CBD than the electrode on average (binder wets the foil)
    assert np.mean(v.labels[-1] == CBD) > v.fractions()["cbd"]


def test_metadata_is_complete(demo) -> None:
    v, _ = demo
    g = v.metadata["generator"]
    for key in ("active_fraction", "cbd_fraction", "d50_um", "d90_um", "sphericity", "seed", "achieved", "shape"):
        assert key in g
    assert len(v.metadata["particles"]["centre_um"]) == g["achieved"]["n_particles"]


@pytest.mark.parametrize("kw,msg", [
    ({"active_fraction": 0.9}, "active_fraction"),
    ({"active_fraction": 0.7, "cbd_fraction": 0.35}, "sum"),
    ({"preset": "huge"}, "preset"),
    ({"box_um": (3, 20, 20)}, "smaller than D50"),
    ({"box_um": (30, -1, 20)}, "box_um"),
    ({"d50_um": 12.0}, "D50"),
    ({"sphericity": (1.5, 0.1)}, "sphericity"),
    ({"voxel_size_um": 0}, "voxel size"),
    ({"max_ovrlap": 0.1}, "unknown generator parameter"),
])
def test_bad_parameters(kw, msg) -> None:
    with pytest.raises(InputError, match=msg):
        generate_electrode(**{"preset": "demo", **kw})


def test_presets_documented() -> None:
    assert PRESETS["paper"]["box_um"] == (50.0, 43.0, 43.0) and PRESETS["paper"]["voxel_size_um"] == 0.126


@pytest.mark.slow
def test_paper_box() -> None:
    """The paper's volume (50 x 43 x 43 um at 0.126 um, 46 M voxels): fractions and sizes (about 20-40 s)."""
    v = generate_electrode(preset="paper", seed=0)
    assert v.labels.size > 45e6
    fr = v.fractions()
    assert fr["active"] == pytest.approx(0.55, abs=0.01) and fr["cbd"] == pytest.approx(0.15, abs=0.01)
    _, d50, d90 = volume_weighted_quantiles(np.asarray(v.metadata["particles"]["d_eq_um"]))
    assert d50 == pytest.approx(5.0, rel=0.1) and d90 == pytest.approx(10.0, rel=0.1)


def test_periodic_inplane_option() -> None:
    v = generate_electrode(preset="demo", seed=1, periodic_inplane=True)
    fr = v.fractions()
    assert fr["active"] == pytest.approx(0.55, abs=0.01) and fr["cbd"] == pytest.approx(0.15, abs=0.01)
    assert v.metadata["generator"]["periodic_inplane"] is True
    # some particle crosses a side face and re-enters at the opposite one
    P = v.metadata["particles"]
    semi = np.asarray(P["semi_axes_um"])
    c = np.asarray(P["centre_um"])
    assert np.any((c[:, 1] - semi[:, 0] < 0) | (c[:, 1] + semi[:, 0] > 20.0))
