"""Dual-scan superimposition: particles and macro-pores bit-identical, CBD porosity reproduced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tomocell.errors import InputError
from tomocell.microstructure.io import read_volume
from tomocell.microstructure.superimpose import parse_labels_with_blurry, split_blurry_labels, superimpose_dss
from tomocell.microstructure.synthetic import generate_cbd_scan, generate_electrode
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


@pytest.fixture(scope="module")
def electrode() -> Volume:
    return generate_electrode(preset="small", seed=5)


@pytest.fixture(scope="module")
def cbd_scan() -> Volume:
    """Stand-alone CBD at half the voxel size (0.125 um, like the paper's 63 vs 126 nm), porosity 0.45."""
    return generate_cbd_scan((96, 96, 96), 0.125, porosity=0.45, feature_um=0.3, seed=1)


@pytest.mark.parametrize("preserve", [True, False])
def test_particles_untouched_and_porosity_kept(electrode: Volume, cbd_scan: Volume, preserve: bool) -> None:
    # the particle scan: CBD and micro-pores are one blurry phase (carried by the CBD code)
    out, rep = superimpose_dss(electrode, cbd_scan, preserve_porosity=preserve, seed=3)
    blurry = electrode.labels == CBD
    assert np.array_equal(out.labels[~blurry], electrode.labels[~blurry])  # bit-identical particles + macro-pores
    assert set(np.unique(out.labels[blurry])) == {PORE, CBD}
    assert rep["active_and_macropores_identical"] is True
    scan_porosity = float(np.mean(cbd_scan.labels == PORE))
    after = float(np.mean(out.labels[blurry] == PORE))
    assert rep["cbd_scan_porosity"] == pytest.approx(scan_porosity)
    assert rep["cbd_porosity_after"] == pytest.approx(after)
    assert after == pytest.approx(scan_porosity, abs=0.02)
    fr = out.fractions()
    assert fr["active"] == electrode.fractions()["active"]
    assert fr["pore"] == pytest.approx(electrode.fractions()["pore"] + electrode.fractions()["cbd"] * after)
    assert rep["tiles_per_axis"] == [3, 2, 2] and rep["zoom"] == [0.5, 0.5, 0.5]


def test_structure_comes_from_the_cbd_scan(electrode: Volume) -> None:
    """Slabs in the CBD scan must reappear, downsampled, in the blurry region (not random noise)."""
    lab = np.full((64, 64, 64), CBD, np.uint8)
    lab[:, :, ::8] = PORE
    lab[:, :, 1::8] = PORE  # 2-voxel pore walls every 8 voxels -> every 4 voxels at half resolution
    scan = Volume(lab, 0.125)
    blurry = np.full((30, 30, 32), CBD, np.uint8)
    blurry[:, :, :4] = ACTIVE
    out, rep = superimpose_dss(Volume(blurry, 0.25), scan, seed=0)
    prof = np.mean(out.labels[:, :, 4:] == PORE, axis=(0, 1))
    assert rep["cbd_porosity_after"] == pytest.approx(0.25, abs=0.01)
    period = np.flatnonzero(prof > 0.5)
    assert np.all(np.diff(period) == 4)


def test_bad_inputs(electrode: Volume, cbd_scan: Volume) -> None:
    no_blurry = electrode.with_labels(np.where(electrode.labels == CBD, PORE, electrode.labels).astype(np.uint8))
    with pytest.raises(InputError, match="no blurry phase"):
        superimpose_dss(no_blurry, cbd_scan)
    with_active = cbd_scan.with_labels(np.where(cbd_scan.labels == PORE, ACTIVE, CBD).astype(np.uint8))
    with pytest.raises(InputError, match="active"):
        superimpose_dss(electrode, with_active)
    only_cbd = cbd_scan.with_labels(np.full(cbd_scan.shape, CBD, np.uint8))
    with pytest.raises(InputError, match="no pore"):
        superimpose_dss(electrode, only_cbd)
    with pytest.raises(InputError, match="blurry_phase"):
        superimpose_dss(electrode, cbd_scan, blurry_phase="active")


def test_label_parsing_with_blurry() -> None:
    m = parse_labels_with_blurry("0=pore,255=active,128=blurry")
    assert m == {0: "pore", 255: "active", 128: "blurry"}
    pmap, vals = split_blurry_labels(m)
    assert pmap == {0: "pore", 255: "active", 128: "cbd"} and vals == [128]
    with pytest.raises(InputError, match="blurry"):
        split_blurry_labels({0: "pore", 1: "active"})
    with pytest.raises(InputError, match="no resolved CBD"):
        split_blurry_labels({0: "pore", 1: "active", 2: "cbd", 3: "blurry"})
    with pytest.raises(InputError, match="twice"):
        parse_labels_with_blurry("0=pore,0=blurry")


@pytest.mark.shared_data
def test_real_two_phase_xct(xct_volume_path: Path, cbd_scan: Volume) -> None:
    """The SuperRes XCT volume: 0 = pore+CBD (blurry), 128 = NMC; voxel size assumed 0.25 um here."""
    pmap, _ = split_blurry_labels(parse_labels_with_blurry("0=blurry,128=active"))
    particle = read_volume(xct_volume_path, labels=pmap, voxel_size_um=0.25)
    out, rep = superimpose_dss(particle, cbd_scan, seed=1)
    nmc = particle.labels == ACTIVE
    assert np.array_equal(out.labels[nmc], particle.labels[nmc]) and np.all(out.labels[~nmc] != ACTIVE)
    assert rep["cbd_porosity_after"] == pytest.approx(rep["cbd_scan_porosity"], abs=0.02)
    assert out.fractions()["active"] == pytest.approx(0.398, abs=0.002)
    assert out.fractions()["pore"] == pytest.approx(0.602 * 0.45, abs=0.015)
