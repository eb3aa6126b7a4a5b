"""Calendering structure study end to end on a small synthetic electrode (coarse, ~10 s)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tomocell.errors import InputError
from tomocell.studies import calendering
from tomocell.studies.runner import read_table, run_study_module, study_config

for _mod in ("synthetic", "tortuosity", "poresize", "io"):
    pytest.importorskip(f"tomocell.microstructure.{_mod}")

CFG = {
    "strains": [0.0, 0.15, 0.3],
    "cbd_attach_um": 1.0, "axis": 0, "seed": 0, "psd_bin_um": 0.0,
    "volume": {"synthetic": {"box_um": [20.0, 16.0, 16.0], "voxel_size_um": 0.5, "d90_um": 9.0, "seed": 1}},
}


def test_calendering_study_end_to_end_and_resume(tmp_path):
    res = run_study_module(calendering, CFG, tmp_path)
    assert [o.status for o in res.outcomes] == ["ok", "ok", "ok"], [o.error for o in res.outcomes]
    r = {o.name: o.results for o in res.outcomes}
    r0, r15, r30 = r["strain-0pct"], r["strain-15pct"], r["strain-30pct"]
    # thickness: 40 slices -> 34 and 28, exactly
    assert r15["thickness_um"] == 17.0 and r30["thickness_um"] == 14.0
    assert r15["achieved_strain"] == pytest.approx(0.15) and r30["achieved_strain"] == pytest.approx(0.30)
    # the paper's Fig. 9k trends: porosity down, tortuosity up; active mass unchanged; CBD crushed
    assert r0["porosity"] > r15["porosity"] > r30["porosity"]
    assert r30["tortuosity_factor"] > r0["tortuosity_factor"]
    assert 0.0 < r30["pore_open_to_separator"] <= r0["pore_open_to_separator"] <= 1.0
    assert r0["active_voxels"] == r15["active_voxels"] == r30["active_voxels"]
    assert r0["cbd_crushed_volume_um3"] == 0 < r15["cbd_crushed_volume_um3"] < r30["cbd_crushed_volume_um3"]
    assert r30["pore_size"]["d50_um"] <= r0["pore_size"]["d50_um"]
    assert r0["bruggeman_exponent"] == pytest.approx(
        -__import__("math").log(r0["tortuosity_factor"]) / __import__("math").log(r0["porosity"]))
    # tables, figures, report
    rows = read_table(res.table)
    metrics = {x["metric"] for x in rows}
    assert {"porosity", "tortuosity_factor", "bruggeman_exponent", "active_pore_area_per_um",
            "cbd_crushed_volume_um3", "pore_size.volume_fraction", "pore_size.d50_um"} <= metrics
    n15 = len(r15["pore_size"]["volume_fraction"])
    assert sum(1 for x in rows if x["run"] == "strain-15pct" and x["metric"] == "pore_size.volume_fraction") == n15
    # psd_bin_um = 0: one voxel-wide bin per local-thickness level, the same grid at every strain
    centres = np.asarray(r15["pore_size"]["bin_centre_um"])
    assert np.allclose(np.diff(centres[1:]), 0.5)
    assert sum(r15["pore_size"]["volume_fraction"]) == pytest.approx(1.0)
    for f in ("metrics_vs_strain.png", "pore_size_distribution.png", "slices.png"):
        assert (tmp_path / "figures" / f).stat().st_size > 1000
    assert "metrics_vs_strain.png" in res.report.read_text()
    assert (tmp_path / "runs/strain-30pct/calendered.tif").is_file()
    # resume: nothing reruns
    res2 = run_study_module(calendering, CFG, tmp_path)
    assert [o.status for o in res2.outcomes] == ["skipped"] * 3
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "ok"


def test_calendering_plan_and_default_config():
    cfg = study_config(calendering)
    specs = calendering.plan(cfg)
    assert [s.name for s in specs] == ["strain-0pct", "strain-7pct", "strain-15pct", "strain-22.5pct"]
    assert specs[3].params["strain"] == 0.225 and "synthetic" in specs[3].params["volume"]
    with pytest.raises(InputError):
        calendering.plan({**cfg, "strains": [0.1, 1.2]})
    with pytest.raises(InputError):
        calendering.plan({"strains": [0.1]})


def test_default_calendering_rate_config_calendars_an_uncalendered_electrode():
    """The Fig. 9l study must start from an uncalendered electrode: calendering the bundled (already
    calendered, porosity 0.30) composition by 20 % closed its pores and every calendered discharge
    collapsed. With the default config the 20 %-calendered low loading keeps its pore network open
    and lands near the as-prepared porosity."""
    from tomocell.microstructure.variants_calendering import pore_open_to_separator
    from tomocell.studies import calendering_rate
    from tomocell.studies.inputs import apply_variants, load_volume_spec
    from tomocell.studies.runner import study_config

    cfg = study_config(calendering_rate)
    vol, ids, _ = load_volume_spec(cfg["volume"])
    assert vol.fractions()["pore"] > 0.4  # uncalendered
    run = next(r for r in calendering_rate.plan(cfg) if r.params["state"] == "calendered")
    steps = run.params["structure"]["variants"]
    cal, _, reports = apply_variants(vol, ids, steps)
    eps = cal.fractions()["pore"]
    assert 0.25 < eps < 0.40
    assert pore_open_to_separator(cal.labels) > 0.95
    assert reports[-1]["active_voxels"] == reports[-1]["active_voxels_input"]  # active mass unchanged
