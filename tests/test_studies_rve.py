"""Representative volume study: the lateral crop, the plan and the representative-width rule."""

import numpy as np
import pytest

from tomocell.errors import InputError
from tomocell.microstructure.variants_crop import lateral_crop, lateral_window
from tomocell.microstructure.volume import Volume
from tomocell.studies import rve_capacity
from tomocell.studies.runner import study_config


def test_lateral_crop_keeps_depth_cuts_the_window_and_its_ids():
    lab = np.zeros((6, 10, 8), np.uint8)
    lab[:, 7:, :] = 1  # active in the high part of axis 1
    ids = np.arange(lab.size).reshape(lab.shape)
    vol = Volume(lab, (0.5, 0.5, 0.5))
    out, cids, rep = lateral_crop(vol, 2.0, offset=1.0, labels=ids)
    assert out.shape == (6, 4, 4) and rep["origin_um"] == [0.0, 3.0, 2.0]
    assert np.array_equal(cids, ids[:, 6:10, 4:8]) and np.array_equal(out.labels, lab[:, 6:10, 4:8])
    assert rep["fractions"]["active"] == pytest.approx(0.75)
    assert lateral_window(vol.shape, vol.voxel_size_um, [2.0, 3.0], [0.0, 0.5])[1:] == (slice(0, 4), slice(1, 7))
    for bad in ({"width_um": 6.0}, {"width_um": 1.0}, {"width_um": -2.0}, {"width_um": 2.0, "offset": 1.5}):
        with pytest.raises(InputError):
            lateral_crop(vol, **bad)


def test_plan_positions_and_a_single_full_width_window():
    cfg = study_config(rve_capacity)
    runs = rve_capacity.plan(cfg)
    widths = cfg["widths_um"]
    assert len(runs) == cfg["samples"] * (len(widths) - 1) + 1  # the widest window equals the box: once
    offs = {r.params["width_um"]: set() for r in runs}
    for r in runs:
        assert r.params["structure"]["variants"] == [{"kind": "crop", "width_um": r.params["width_um"],
                                                      "offset": [r.params["offset"]] * 2}]
        offs[r.params["width_um"]].add(r.params["offset"])
    assert offs[widths[0]] == {0.0, 0.5, 1.0} and offs[widths[-1]] == {0.5}
    with pytest.raises(InputError, match="wider than the electrode"):
        rve_capacity.plan({**cfg, "widths_um": [10.0, 40.0]})
    with pytest.raises(InputError, match="samples"):
        rve_capacity.plan({**cfg, "samples": 0})


def _rows(means, halfrange):
    return [{"metric": "m", "width_um": w, "n": 3, "mean": m, "std": 0.0, "min": m - h, "max": m + h}
            for w, m, h in zip((10.0, 20.0, 30.0, 40.0), means, halfrange)]


def test_representative_width_needs_mean_and_spread_inside_the_band_from_there_on():
    conv = rve_capacity.representative_widths(_rows([0.80, 0.99, 1.01, 1.0], [0.1, 0.01, 0.0, 0.0]), 0.02)
    assert conv[0]["representative_width_um"] == 20.0
    assert conv[0]["narrowest_mean_rel_dev"] == pytest.approx(-0.2)
    # a spread too wide at 20 um moves it to 30 um; a late excursion at 30 um means "not converged" below 40
    assert rve_capacity.representative_widths(_rows([0.8, 0.99, 1.01, 1.0], [0.1, 0.05, 0.0, 0.0]), 0.02)[0][
        "representative_width_um"] == 30.0
    assert rve_capacity.representative_widths(_rows([1.0, 1.0, 1.1, 1.0], [0.0, 0.0, 0.0, 0.0]), 0.02)[0][
        "representative_width_um"] is None
