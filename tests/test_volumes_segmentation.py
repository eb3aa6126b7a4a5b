"""Segmentation of forward-modelled CT scans against the known voxel truth."""

from __future__ import annotations

import numpy as np
import pytest

from tomocell.errors import InputError
from tomocell.microstructure.ctmodel import DEFAULT_ATTENUATION, forward_ct
from tomocell.microstructure.segmentation import segment_greyscale
from tomocell.microstructure.synthetic import generate_electrode
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


@pytest.fixture(scope="module")
def truth() -> Volume:
    return generate_electrode(preset="small", seed=4)  # 120 x 80 x 80 at 0.25 um


def test_forward_model_levels() -> None:
    lab = np.zeros((8, 8, 8), np.uint8)
    lab[:, :, 3:5] = CBD
    lab[:, :, 5:] = ACTIVE
    g = forward_ct(Volume(lab, 1.0), blur_sigma_um=0.0, noise_sd=0.0)
    assert np.all(g[lab == PORE] == DEFAULT_ATTENUATION["pore"])
    assert np.allclose(g[lab == ACTIVE], DEFAULT_ATTENUATION["active"])
    g = forward_ct(Volume(lab, 1.0), blur_sigma_um=0.0, noise_sd=0.1, seed=3)
    assert np.std(g[lab == PORE]) == pytest.approx(0.1, rel=0.1)
    # blur conserves the mean grey value away from the box edges
    gb = forward_ct(Volume(lab, 1.0), blur_sigma_um=1.0, noise_sd=0.0)
    assert gb.mean() == pytest.approx(forward_ct(Volume(lab, 1.0), blur_sigma_um=0, noise_sd=0).mean(), rel=0.02)
    with pytest.raises(InputError):
        forward_ct(Volume(lab, 1.0), attenuation={"binder": 1.0})


def test_recovers_truth_at_default_noise(truth: Volume) -> None:
    grey = forward_ct(truth, seed=1)
    seg, rep = segment_greyscale(grey, truth.voxel_size_um)
    acc = float(np.mean(seg.labels == truth.labels))
    assert acc >= 0.95
    assert rep["method"] == "multi-otsu" and len(rep["thresholds"]) == 2
    for name in ("pore", "active", "cbd"):
        assert rep["fractions"][name] == pytest.approx(truth.fractions()[name], abs=0.03)
    # thresholds sit between the phase grey levels
    t1, t2 = rep["thresholds"]
    assert DEFAULT_ATTENUATION["pore"] < t1 < DEFAULT_ATTENUATION["cbd"] < t2 < DEFAULT_ATTENUATION["active"]
    assert sum(rep["histogram"]["counts"]) == grey.size


def test_denoising_options_run_and_stay_accurate(truth: Volume) -> None:
    sub = truth.subvolume((slice(0, 40), slice(0, 40), slice(0, 40)))
    grey = forward_ct(sub, seed=2)
    for method in ("median", "nlmeans"):
        seg, rep = segment_greyscale(grey, sub.voxel_size_um, denoise=method)
        assert rep["denoise"] == method
        assert np.mean(seg.labels == sub.labels) >= 0.9


def test_manual_thresholds_and_sensitivity(truth: Volume) -> None:
    grey = forward_ct(truth, seed=1)
    seg, rep = segment_greyscale(grey, truth.voxel_size_um, thresholds=[0.2, 0.7], sensitivity_levels=3)
    assert rep["method"] == "manual" and rep["thresholds"] == [0.2, 0.7]
    assert np.array_equal(seg.labels == PORE, grey < 0.2)
    shifts = rep["sensitivity"]["shifts"]
    assert len(shifts) == 4
    up = next(s for s in shifts if s["threshold"] == 0 and s["shift_grey"] > 0)
    assert up["change"]["pore"] > 0 and up["change"]["cbd"] < 0 and abs(up["change"]["active"]) < 1e-12
    assert up["shift_grey"] == pytest.approx(3 * (grey.max() - grey.min()) / 255)


def test_two_class_mode() -> None:
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[:, :, 10:] = ACTIVE
    grey = forward_ct(Volume(lab, 0.5), seed=0)
    seg, rep = segment_greyscale(grey, 0.5, classes=2)
    assert set(np.unique(seg.labels)) == {PORE, ACTIVE}
    assert np.mean(seg.labels == lab) > 0.99


@pytest.mark.parametrize("grey,kw,msg", [
    (np.full((5, 5, 5), 3.0), {}, "constant"),
    (np.random.default_rng(0).random((5, 5)), {}, "3D"),
    (np.where(np.arange(125).reshape(5, 5, 5) == 7, np.nan, 1.0), {}, "NaN"),
    (np.random.default_rng(0).random((6, 6, 6)), {"thresholds": [0.7, 0.3]}, "increase"),
    (np.random.default_rng(0).random((6, 6, 6)), {"thresholds": [0.5]}, "need 2 thresholds"),
    (np.random.default_rng(0).random((6, 6, 6)), {"thresholds": [0.4, 2.0]}, "outside the grey range"),
    (np.random.default_rng(0).random((6, 6, 6)), {"denoise": "wavelet"}, "denoising"),
])
def test_bad_greyscale(grey, kw, msg) -> None:
    with pytest.raises(InputError, match=msg):
        segment_greyscale(grey, 0.5, **kw)


def test_voxel_size_required() -> None:
    with pytest.raises(InputError, match="voxel size"):
        segment_greyscale(np.random.default_rng(0).random((6, 6, 6)), None)
