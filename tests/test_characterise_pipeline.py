"""characterise(): depth profiles, RVE study, the whole pipeline with its files, the CLI, bad input,
and a sub-volume of the shared GAN electrode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tomocell.cli import main
from tomocell.errors import InputError
from tomocell.microstructure import depthprofiles, rve
from tomocell.microstructure.characterise import characterise
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


def _channels_below_open_top(n0: int = 24, n: int = 12) -> np.ndarray:
    lab = np.full((n0, n, n), ACTIVE, np.uint8)
    lab[: n0 // 2] = PORE                   # open region next to the separator
    lab[:, 1:-1:2, 1:-1:2] = PORE           # straight channels all the way down, off the side faces
    return lab


def test_depth_profile_and_bruggeman_exponent():
    v = Volume(_channels_below_open_top(), 0.5)
    rows = depthprofiles.depth_profile(v, directions=(0, 1), n_steps=4)
    assert rows["depth_um"] == [3.0, 6.0, 9.0, 12.0]
    # slabs inside the open region: tau = 1, eps = 1 -> p undefined (None, not a number)
    assert abs(rows["tau_axis0"][0] - 1.0) < 1e-6 and rows["p_axis0"][0] is None
    # the channels block in-plane transport below half depth only in the channel layer; along axis 0 the
    # deepest slab is tortuous (flux squeezes into channels) and p = -ln tau / ln eps
    t, e = rows["tau_axis0"][-1], rows["eps"][-1]
    assert t > 1.0 and abs(rows["p_axis0"][-1] - (-np.log(t) / np.log(e))) < 1e-12
    assert abs(rows["eps"][-1] - (0.5 + 0.5 * 25 / 144)) < 1e-12
    assert depthprofiles.bruggeman_exponent(None, 0.4) is None
    assert abs(depthprofiles.bruggeman_exponent(0.4 ** -1.5, 0.4) - 1.5) < 1e-12


def test_rve_study_on_a_periodic_structure_is_flat():
    lab = np.full((32, 32, 32), ACTIVE, np.uint8)
    lab[:, :, ::2] = PORE
    rows = rve.rve_study(Volume(lab, 1.0), fractions=[0.25, 0.5, 1.0])
    assert all(abs(p - 0.5) < 1e-12 for p in rows["porosity"])
    assert all(abs(t - 1.0) < 1e-6 for t in rows["tau_pore_axis0"])
    assert rows["n_voxels"][-1] == 32**3


@pytest.fixture(scope="module")
def small_electrode() -> Volume:
    from tomocell.microstructure.synthetic import generate_electrode

    vol, ids = generate_electrode(preset="demo", seed=2, return_particle_ids=True)
    vol.metadata["_ids"] = ids  # ground-truth particle ids (test only)
    return vol


def test_characterise_writes_everything(small_electrode, tmp_path):
    out = tmp_path / "char"
    res = characterise(small_electrode, out, fast=True)
    m = res.metrics
    f = small_electrode.fractions()
    assert m["phase_fractions"] == f
    for name in ("metrics.json", "report.md", "particles.csv", "fields.vti", "depth_profile.csv", "rve.csv",
                 "pore_size_distribution.csv", "slice_profile_axis0.csv", "reaction_sites_by_depth.csv",
                 "fig_particles.png", "fig_flux_tortuosity.png", "fig_travel.png", "fig_depth_profile.png",
                 "fig_volume_3d.png"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["phase_fractions"]["pore"] == pytest.approx(f["pore"])
    # arrays other stages reuse
    assert res.particle_labels.dtype == np.int32
    assert np.all((res.particle_labels > 0) == (small_electrode.labels == ACTIVE))
    assert res.local_thickness_um.shape == small_electrode.shape
    assert np.all(res.local_thickness_um[small_electrode.labels != PORE] == 0)
    L = res.travel_distance_um
    assert np.nanmin(L) == pytest.approx(0.25, abs=1e-3)  # first slice: half a voxel below the separator
    # physics: tau > 1 and consistent with eps and D_eff; geodesic >= depth at every reaction site
    for ax in (0, 1, 2):
        e = m["tortuosity"]["pore"][f"axis{ax}"]
        assert e["tau"] > 1.0 and e["tau"] == pytest.approx(e["eps"] / e["d_eff_over_d0"])
        assert e["flux_balance_error"] < 1e-4
    assert np.all(res.reaction_sites["tau_electrode"] >= 0.99)
    assert m["particles"]["count"] > 5
    report = (out / "report.md").read_text()
    assert "fig_travel.png" in report and "tau pore axis0" in report
    # the generator's ground truth: most true particles recovered one-to-one (IoU > 0.5), D50 close
    gt = small_electrode.metadata["particles"]
    d, w = np.asarray(gt["d_eq_um"]), np.asarray(gt["voxels"], dtype=float)
    o = np.argsort(d)
    d50_true = d[o][np.searchsorted(np.cumsum(w[o]) / w.sum(), 0.5)]
    assert abs(m["particles"]["d50_um"] - d50_true) / d50_true < 0.15
    ids, lab = small_electrode.metadata["_ids"], res.particle_labels
    both = (ids > 0) & (lab > 0)
    pair, inter = np.unique(ids[both].astype(np.int64) * 2**31 + lab[both], return_counts=True)
    gi, li = pair // 2**31, pair % 2**31
    iou = inter / (np.bincount(ids.ravel())[gi] + np.bincount(lab.ravel())[li] - inter)
    assert (iou > 0.5).sum() >= 0.75 * len(d)


def test_characterise_bad_input(tmp_path):
    lab = np.full((10, 10, 10), ACTIVE, np.uint8)
    with pytest.raises(InputError, match="no pore"):
        characterise(Volume(lab, 1.0), tmp_path / "a")
    with pytest.raises(InputError, match="no active"):
        characterise(Volume(np.zeros((10, 10, 10), np.uint8), 1.0), tmp_path / "b")
    with pytest.raises(InputError, match="voxel size is missing"):
        Volume(lab, None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(InputError, match="skip"):
        characterise(Volume(_channels_below_open_top(), 1.0), skip=("nonsense",))


def test_non_percolating_pore_is_reported_not_a_number(tmp_path):
    lab = _channels_below_open_top()
    lab[15] = CBD  # a sealing CBD layer: no pore path from separator to current collector
    res = characterise(Volume(lab, 0.5), tmp_path / "c", directions=(0, 1), skip=("rve", "depth", "figures", "fields"))
    e = res.metrics["tortuosity"]["pore"]["axis0"]
    assert e["tau"] is None and e["percolating"] is False and "infinite" in e["note"]
    # in-plane: only the open half next to the separator carries flux (D_eff/D0 = 1/2 exactly); the
    # channels below are dead ends for in-plane transport but count in eps
    e1 = res.metrics["tortuosity"]["pore"]["axis1"]
    assert e1["d_eff_over_d0"] == pytest.approx(0.5, abs=1e-5)
    assert e1["tau"] == pytest.approx(e1["eps"] / 0.5, rel=1e-5)
    on_disk = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert on_disk["tortuosity"]["pore"]["axis0"]["tau"] is None


def test_cli_characterise(tmp_path, capsys):
    lab = np.where(_channels_below_open_top() == PORE, 0, 85).astype(np.uint8)
    lab[20:, 6:, 6:] = 170
    tif = tmp_path / "vol.tif"
    tifffile.imwrite(tif, lab)
    out = tmp_path / "out"
    rc = main(["characterise", str(tif), "--out", str(out), "--labels", "0=pore,85=active,170=cbd",
               "--voxel-size", "0.5", "--directions", "0", "--skip", "rve,figures,fields", "--depth-steps", "2"])
    assert rc == 0
    assert "tau_pore axis0" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "ok" and run["results"]["tau_pore"]["axis0"] > 1.0
    # missing voxel size: exit 2, one clear message, no metrics written
    rc = main(["characterise", str(tif), "--out", str(tmp_path / "o2"), "--labels", "0=pore,85=active,170=cbd"])
    assert rc == 2
    assert "voxel size" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "metrics.json").exists()
    rc = main(["characterise", str(tif), "--out", str(tmp_path / "o3"), "--voxel-size", "0.5",
               "--labels", "0=pore,85=active,170=cbd", "--directions", "0,5"])
    assert rc == 2
    _rebind_logging()


def _rebind_logging() -> None:
    """main() bound the log handler to capsys' stream, which closes after the test: rebind it."""
    import sys

    from tomocell.log import setup_logging

    saved, sys.stderr = sys.stderr, sys.__stderr__
    try:
        setup_logging(0)
    finally:
        sys.stderr = saved


def _hand_face_area_per_um(arr: np.ndarray, a: int, b: int, vs: float) -> float:
    """Area of the faces between voxels labelled a and b per volume [1/um], counted by hand."""
    n = 0
    for ax in range(3):
        lo = np.take(arr, range(arr.shape[ax] - 1), axis=ax)
        hi = np.take(arr, range(1, arr.shape[ax]), axis=ax)
        n += int(np.count_nonzero(((lo == a) & (hi == b)) | ((lo == b) & (hi == a))))
    return n * vs**2 / (arr.size * vs**3)


@pytest.mark.shared_data
def test_gan_subvolume_metrics_match_hand_counts_bounds_and_measured_values(gan_volume_path, tmp_path):
    """64^3 crop of the GAN volume: pore fraction and voxel-face area against hand counts; tau above
    the Hashin-Shtrikman bound and against TauFactor on the same crop; pore sizes against PoreSpy on the
    same crop (tests/data/gan_crop64_references.json, made by scripts/make_test_references.py with a
    throwaway venv: never by tomocell); the particles against PoreSpy's SNOW watershed of the same crop."""
    vs = 0.390625
    arr = tifffile.imread(gan_volume_path)[:64, :64, :64]
    v = Volume.from_stored_labels(arr, vs, {0: "pore", 85: "active", 170: "cbd"})
    res = characterise(v, None, directions=(0, 1, 2), skip=("rve", "depth"))
    m = res.metrics
    eps = m["phase_fractions"]["pore"]
    assert eps == pytest.approx(np.count_nonzero(arr == 0) / arr.size, rel=1e-12)  # 0.4357
    taus = [m["tortuosity"]["pore"][f"axis{a}"]["tau"] for a in range(3)]
    # Hashin-Shtrikman: D_eff/D0 <= 2 eps / (3 - eps) for an insulating matrix, so tau >= (3 - eps)/2 = 1.28
    assert all(t >= (3 - eps) / 2 for t in taus), taus
    ref = json.loads((Path(__file__).parent / "data" / "gan_crop64_references.json").read_text())
    # TauFactor 1.2.1 on the same crop (conv 1e-5): 2.14639, 2.05707, 2.18883; tomocell measured 2.146,
    # 2.057, 2.189. 0.5 % is the agreement issue 20 asks of the two solvers (both are second-order
    # finite volumes on the voxel faces, so they agree far closer; a 10 % D error would be 10 %)
    assert taus == pytest.approx(ref["taufactor"]["tau_pore_axis"], rel=0.005), taus
    # local thickness is exact (equal to the definition, test_characterise_geometry.py): measured 10.77
    # voxels (4.21 um) on this crop. PoreSpy's brute force with integer radii gives each voxel the
    # largest integer radius not above the exact one, so its D50 (10.0 voxels) is below the exact D50 by
    # less than 2 voxels of diameter: the exact value must lie in [D50_bf, D50_bf + 2)
    d50_bf = ref["porespy_local_thickness"]["bf_integer_radii"]["d50_voxels"]
    assert d50_bf <= m["pore_size"]["d50_um"] / vs < d50_bf + 2.0, m["pore_size"]["d50_um"]
    assert abs(m["pore_size"]["d50_um"] / vs - 10.77) <= 0.5, m["pore_size"]["d50_um"]  # regression guard
    # watershed particles against PoreSpy's SNOW partitioning of the same crop (its defaults): 37
    # particles, D50 8.25 um; tomocell's h-maxima markers give 40 and 8.33 um. The two marker rules
    # split touching particles differently, which moves the count by a few and the volume-weighted D50
    # little: 5 % on D50 (a voxel-size error of 5 % or a radius/diameter slip fails it), 20 % on count
    snow = ref["porespy_snow_particles"]
    assert m["particles"]["d50_um"] == pytest.approx(snow["d50_um"], rel=0.05), m["particles"]
    assert m["particles"]["count"] == pytest.approx(snow["count"], rel=0.2), m["particles"]
    assert 1.0 <= m["travel"]["median_tau_pore"] <= m["travel"]["median_tau_electrode"] * 1.5
    sa = m["specific_areas"]["active_pore"]
    assert sa["voxel_faces_per_um"] == pytest.approx(_hand_face_area_per_um(arr, 85, 0, vs), rel=1e-12)  # 0.1237
    # voxel faces overstate an isotropic surface by E|n_x| + |n_y| + |n_z| = 3/2 (Cauchy-Crofton) against
    # marching cubes: measured ratio 1.59 (0.1237 / 0.0779)
    assert 1.35 < sa["voxel_faces_per_um"] / sa["marching_cubes_per_um"] < 1.75, sa


@pytest.mark.mpi
def test_characterise_under_mpi_matches_serial_tau(tmp_path):
    import tomocell.fem  # noqa: F401
    from petsc4py import PETSc

    from tomocell import mpi
    from tomocell.microstructure.tortuosity import tortuosity_factor

    lab = _channels_below_open_top(16, 10)
    lab[10:, :5, :] = CBD
    lab[3, 2:7, 2:7] = ACTIVE
    v = Volume(lab, 0.5)
    res = characterise(v, tmp_path / "m", directions=(0, 2), skip=("figures", "fields", "rve"), depth_steps=2)
    ser = tortuosity_factor(v, "pore", 0, comm=PETSc.COMM_SELF)
    assert res.metrics["tortuosity"]["pore"]["axis0"]["tau"] == pytest.approx(ser.tau, rel=1e-4)
    if mpi.rank() == 0:  # only rank 0 writes
        assert (tmp_path / "m" / "metrics.json").is_file()


@pytest.mark.mpi
def test_image_steps_distributed_over_ranks_give_every_rank_the_serial_results():
    from tomocell import mpi
    from tomocell.microstructure.characterise import _step_particles, _step_poresize, _step_travel

    lab = _channels_below_open_top(16, 10)
    lab[10:, :5, :] = CBD
    lab[3, 2:7, 2:7] = ACTIVE
    v = Volume(lab, 0.5)
    res = characterise(v, None, directions=(0,), skip=("depth", "rve"))
    # each step ran on one rank only; every rank holds the result it would have computed itself
    lt, psd = _step_poresize(v)
    assert np.array_equal(res.local_thickness_um, lt)
    assert res.metrics["pore_size"]["d50_um"] == psd["d50_um"]
    labels, table = _step_particles(v)
    assert np.array_equal(res.particle_labels, labels) and res.tables["particles"]["label"].tolist() == table["label"].tolist()
    dist, sites = _step_travel(v)
    assert np.array_equal(res.travel_distance_um, dist, equal_nan=True)
    assert np.array_equal(res.reaction_sites["depth_um"], sites["depth_um"])
    assert {"poresize", "particles", "travel", "interfaces"} <= set(res.metrics["timings_s"])
    all_metrics = mpi.world().allgather(json.dumps(res.metrics["specific_areas"], sort_keys=True, default=str)) \
        if mpi.size() > 1 else [None]
    assert len(set(all_metrics)) == 1


@pytest.mark.mpi
def test_a_failing_image_step_raises_on_every_rank():
    from tomocell.microstructure.characterise import _run_distributed

    def boom():
        raise InputError("planted failure")

    # with 2 ranks "b" runs on rank 1: rank 0 must raise too instead of waiting or going on
    with pytest.raises(InputError, match="planted failure"):
        _run_distributed({"a": lambda: 1, "b": boom}, {})
    assert _run_distributed({"a": lambda: 1, "b": lambda: 2}, {}) == {"a": 1, "b": 2}
