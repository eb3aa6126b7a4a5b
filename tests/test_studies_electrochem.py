"""Electrochemical design studies: Ragone numbers, knee, plans, band gradients, CLI, a tiny study end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tomocell.errors import InputError, SolverError
from tomocell.studies import calendering_rate, graded_designs, rate_capability, rve_capacity, thickness
from tomocell.studies.electrochem import ragone_point
from tomocell.studies.runner import RunOutcome, read_table, run_study_module, study_config


# ------------------------------------------------------------------ Ragone numbers
def test_ragone_point_constant_and_linear_voltage():
    t = np.linspace(0.0, 3600.0, 37)  # 1 h
    q = np.linspace(0.0, 150.0, 37)  # mAh/g
    e, p = ragone_point(t, np.full_like(t, 3.7), q)
    assert e == pytest.approx(3.7 * 150.0)  # mAh/g x V = Wh/kg
    assert p == pytest.approx(3.7 * 150.0)  # 1 h discharge: W/kg = Wh/kg / 1 h
    # linear fall 4.2 -> 3.0 V over linear charge: the trapezoid rule is exact, mean voltage 3.6 V
    e, p = ragone_point(t / 4, np.linspace(4.2, 3.0, 37), q)
    assert e == pytest.approx(3.6 * 150.0, rel=1e-12)
    assert p == pytest.approx(4 * 3.6 * 150.0, rel=1e-12)  # same energy in 15 min: 4x the power
    # an uneven time grid does not matter: only V against Q is integrated
    q2 = np.array([0.0, 10.0, 11.0, 80.0, 150.0])
    e2, _ = ragone_point(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 4.2 - 0.008 * q2, q2)
    assert e2 == pytest.approx(4.2 * 150 - 0.004 * 150**2)
    with pytest.raises(InputError):
        ragone_point(np.array([0.0, 1.0, 2.0]), np.array([4.0, 3.9, 3.8]), np.array([0.0, 2.0, 1.0]))
    with pytest.raises(InputError):
        ragone_point(np.array([0.0]), np.array([4.0]), np.array([0.0]))


def _outcome(design: str, c: float, power: float, energy: float, cap: float = 100.0) -> RunOutcome:
    return RunOutcome(f"{design}-{c:g}C", "ok", {"design": design, "c_rate": c},
                      {"specific_power_W_kg": power, "specific_energy_Wh_kg": energy, "capacity_mAh_g": cap},
                      Path("."))


def test_knee_is_the_last_point_before_the_energy_collapses():
    # a plateau up to 1.25C, then a collapse; given out of order to check the sorting
    pts = [(2.5, 800.0, 60.0), (0.125, 10.0, 150.0), (1.25, 200.0, 145.0), (0.5, 50.0, 148.0), (5.0, 2000.0, 20.0)]
    outs = [_outcome("a", c, p, e) for c, p, e in pts]
    outs.append(_outcome("b", 1.0, 100.0, 140.0))  # two points only: no knee
    # three points: the middle one would always be "the knee" of a concave curve, so none is reported
    outs += [_outcome("c", c, p, e) for c, p, e in [(0.5, 50.0, 148.0), (1.25, 200.0, 145.0), (5.0, 2000.0, 20.0)]]
    rows = {r["design"]: r for r in rate_capability.knee_table(outs)}
    assert rows["a"]["c_rates"] == [0.125, 0.5, 1.25, 2.5, 5.0]
    assert rows["a"]["knee_c_rate"] == 1.25 and rows["a"]["knee_energy_Wh_kg"] == 145.0
    assert rows["b"]["knee"] is None and rows["c"]["knee"] is None


# ------------------------------------------------------------------ plans of the bundled configs
def test_default_plans_have_the_right_runs():
    rc = rate_capability.plan(study_config(rate_capability))
    cfg = study_config(rate_capability)
    assert len(rc) == len(cfg["designs"]) * len(cfg["c_rates"])
    assert rc[0].name == "as-prepared-0.5C" and rc[-1].name == "high-porosity-10C"
    # runs of one design share one structure (one mesh for all C-rates)
    assert len({json.dumps(r.params["structure"], sort_keys=True) for r in rc}) == len(cfg["designs"])

    gd = graded_designs.plan(study_config(graded_designs))
    assert [r.name for r in gd] == ["as-prepared", "graded-particle", "R1", "R2", "R3", "high-porosity"]
    assert all(r.params["c_rate"] == 3.75 and 0.5 in r.params["simulate"]["dod_snapshots"] for r in gd)
    assert gd[2].params["structure"]["variants"] == [{"kind": "graded_porosity", "band": "R1", "dilation_um": 0.25}]

    th = thickness.plan(study_config(thickness))
    assert {r.params["design"] for r in th} == {"50um", "75um"}
    assert [v["kind"] for v in th[-1].params["structure"]["variants"]] == ["thick"]

    cr = calendering_rate.plan(study_config(calendering_rate))
    ccfg = study_config(calendering_rate)
    assert len(cr) == 3 * 2 * len(ccfg["c_rates"]) and len(ccfg["c_rates"]) >= 2  # a low and a high rate at least
    cal = [r for r in cr if r.params["state"] == "calendered"]
    assert len(cal) == 3 * len(ccfg["c_rates"]) and all([v["kind"] for v in r.params["structure"]["variants"]] == ["thick", "calender"] for r in cal)
    assert {r.params["structure"]["variants"][0]["thickness_um"] for r in cr} == {30.0, 50.0, 85.0}


CONFIG_DIR = Path(__file__).resolve().parents[1] / "studies" / "configs"
STUDY_OF_CONFIG = {"rate_capability": rate_capability, "graded_designs": graded_designs, "thickness": thickness,
                   "calendering_rate": calendering_rate, "rve": rve_capacity}


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_bundled_config_plans(path):
    """Every config shipped in studies/configs (defaults, *_full, extra set-ups) is valid for its study."""
    stem = path.stem
    if stem == "calendering":
        from tomocell.studies import calendering

        runs = calendering.plan(study_config(calendering, path))
    else:
        mod = next(m for k, m in STUDY_OF_CONFIG.items() if stem == k or stem.startswith(k + "_"))
        runs = mod.plan(study_config(mod, path))
    assert runs and len({r.name for r in runs}) == len(runs)


@pytest.mark.parametrize("bad", [
    {"c_rates": [0.0, 1.0]},
    {"c_rates": [1.0, 1.0]},
    {"designs": [{"name": "a"}, {"name": "a"}]},
    {"designs": [{"name": "bad name"}]},
    {"mesh": {"coarsn": 2}},
    {"simulate": {"dod_snapshots": [50]}},
    {"volume": None},
])
def test_bad_configs_are_input_errors(bad):
    cfg = study_config(rate_capability)
    cfg.update(bad)
    with pytest.raises(InputError):
        rate_capability.plan(cfg)


# ------------------------------------------------------------------ graded-design post-processing
def test_band_gradients_and_sol_profile_on_known_fields():
    depth = np.linspace(0.0, 40.0, 4001)
    ce = 1000.0 - 5.0 * depth + 0.01 * (depth - 20.0) ** 2  # slope -5 + 0.02 (x - 20)
    w = np.ones_like(depth)
    bands = {"R1": [0.0, 11.0], "R2": [11.0, 22.5], "R3": [22.5, 34.0], "R4": [34.0, 1e9]}
    g = graded_designs.band_gradients(depth, ce, w, bands)
    for name, (a, b) in bands.items():
        mid = 0.5 * (a + min(b, 40.0))
        # least squares of a quadratic on a symmetric interval: the slope at the band centre
        assert g[name]["slope_per_um"] == pytest.approx(-5.0 + 0.02 * (mid - 20.0), abs=2e-3)
        assert g[name]["mean"] == pytest.approx(np.mean(ce[(depth >= a) & (depth < b)]), rel=1e-9)
    # volume weighting of the per-particle SoL in depth bins
    d = np.array([1.0, 2.0, 7.0, 12.0])
    sol = np.array([0.9, 0.6, 0.5, np.nan])
    vol = np.array([1.0, 3.0, 2.0, 1.0])
    prof = graded_designs.sol_depth_profile(d, sol, vol, np.array([0.0, 5.0, 10.0, 15.0]))
    assert prof[0] == pytest.approx((0.9 + 3 * 0.6) / 4) and prof[1] == pytest.approx(0.5) and prof[2] is None


# ------------------------------------------------------------------ CLI
def test_study_cli_help_list_and_bad_name(capsys):
    from tomocell.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["study", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for name in ("rate-capability", "graded-designs", "thickness", "calendering", "calendering-rate", "--config"):
        assert name in text
    assert main(["study", "--list"]) == 0
    assert "graded_designs.toml" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["study", "no-such-study"])
    assert exc.value.code == 2


# ------------------------------------------------------------------ bookkeeping with a made-up discharge
class FakeDischarge:
    """Stands in for simulate_file: a linear 4.2 -> 3.0 V discharge whose capacity is 150/(1 + c) mAh/g,
    written in the physics' run-directory layout (timeseries.csv, run.json)."""

    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, mesh, c_rate, out, **kw):
        from tomocell.atomic import write_json
        from tomocell.physics.outputs import TIMESERIES_COLUMNS

        assert Path(mesh).is_file()
        self.calls.append(c_rate)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        nominal = 160.0
        cap = 150.0 / (1.0 + c_rate)
        q = np.linspace(0.0, cap, 11)
        t = 3600.0 * q / (c_rate * nominal)
        lines = [",".join(TIMESERIES_COLUMNS)]
        for i in range(11):
            row = {c: 0 for c in TIMESERIES_COLUMNS}
            row.update(step=i, t_s=t[i], segment="discharge", voltage_V=4.2 - 1.2 * q[i] / cap, capacity_mAh_g=q[i],
                       dod=q[i] / nominal)
            lines.append(",".join(str(row[c]) for c in TIMESERIES_COLUMNS))
        (out / "timeseries.csv").write_text("\n".join(lines) + "\n")
        summary = {"capacity_mAh_g": cap, "capacity_mAh_cm2": cap * 0.01, "utilisation": cap / nominal,
                   "nominal_capacity_mAh_g": nominal, "final_voltage_V": 3.0, "discharge_time_s": float(t[-1]),
                   "reason": "cut-off", "steps": 10, "dofs": 1, "snapshots": []}
        write_json(out / "run.json", {"status": "ok", "results": summary})

        class R:
            def summary(self_inner):
                return summary
        return R()


FAKE_CFG = {"c_rates": [0.5, 2.0, 8.0], "seed": 0,
            "volume": {"synthetic": {"box_um": [6.0, 4.0, 4.0], "voxel_size_um": 0.5, "d50_um": 2.0, "d90_um": 3.0,
                                     "d_min_um": 1.0, "d_max_um": 3.5, "periodic_inplane": True, "seed": 2}},
            "mesh": {"coarsen": 2, "separator_um": 4.0},
            "designs": [{"name": "base", "variants": []},
                        {"name": "porous", "variants": [{"kind": "graded_porosity", "band": "global"}]}]}


def test_study_bookkeeping_resume_and_tables_with_a_made_up_discharge(tmp_path, monkeypatch):
    import tomocell.physics.cli as pcli

    fake = FakeDischarge()
    monkeypatch.setattr(pcli, "simulate_file", fake)
    res = run_study_module(rate_capability, FAKE_CFG, tmp_path)
    assert [o.status for o in res.outcomes] == ["ok"] * 6, [o.error for o in res.outcomes]
    assert fake.calls == [0.5, 2.0, 8.0] * 2
    structs = sorted(p.name for p in (tmp_path / "structures").iterdir())
    assert len(structs) == 2  # one mesh per design, shared by its C-rates
    info = {o.params["design"]: o.results["structure"] for o in res.outcomes}
    assert info["porous"]["porosity"] > info["base"]["porosity"]  # the variant was applied
    assert info["porous"]["active_fraction"] == info["base"]["active_fraction"]  # active locked
    for o in res.outcomes:
        c = o.params["c_rate"]
        cap = 150.0 / (1.0 + c)
        assert o.results["specific_energy_Wh_kg"] == pytest.approx(3.6 * cap)
        assert o.results["specific_power_W_kg"] == pytest.approx(3.6 * cap * 3600 / (3600 * cap / (c * 160.0)))
    summary = read_table(res.summary)
    assert [r["run"] for r in summary] == ["base-0.5C", "base-2C", "base-8C", "porous-0.5C", "porous-2C", "porous-8C"]
    assert {"design", "c_rate", "capacity_mAh_g", "specific_energy_Wh_kg", "specific_power_W_kg",
            "structure.porosity"} <= set(summary[0])
    rows = read_table(res.table)
    assert sum(1 for r in rows if r["run"] == "porous-2C" and r["metric"] == "voltage_curve.voltage_V") == 11
    knees = {r["design"]: r for r in read_table(tmp_path / "ragone.csv")}
    assert set(knees) == {"base", "porous"} and knees["base"]["points"] == "3"
    assert "ragone.png" in res.report.read_text()
    # the DFN twin skips the stand-in discharges (not `tomocell simulate` runs) with a note, draws nothing
    twin = read_table(tmp_path / "twin.csv")
    assert len(twin) == 6 and all(r["note"].startswith("skipped: ") for r in twin), twin
    assert not (tmp_path / "figures" / "twin_vs_resolved.png").exists()
    # resume: nothing reruns; a lost run record reuses the finished discharge; a lost discharge is redone
    fake.calls.clear()
    assert [o.status for o in run_study_module(rate_capability, FAKE_CFG, tmp_path).outcomes] == ["skipped"] * 6
    assert fake.calls == []
    (tmp_path / "runs/base-2C/run.json").unlink()
    r3 = run_study_module(rate_capability, FAKE_CFG, tmp_path)
    assert [o.status for o in r3.outcomes].count("ok") == 1 and fake.calls == []
    (tmp_path / "runs/porous-8C/run.json").unlink()
    (tmp_path / "runs/porous-8C/discharge/study_settings.json").unlink()
    run_study_module(rate_capability, FAKE_CFG, tmp_path)
    assert fake.calls == [8.0]
    # a changed discharge setting reruns every run's discharge (parameters changed)
    fake.calls.clear()
    changed = json.loads(json.dumps(FAKE_CFG))
    changed["simulate"] = {"max_ddod": 0.1}
    assert [o.status for o in run_study_module(rate_capability, changed, tmp_path).outcomes] == ["ok"] * 6
    assert len(fake.calls) == 6
    # another study of the same structures reuses (copies) the identical finished discharges
    fake.calls.clear()
    other = {**changed, "designs": changed["designs"][1:], "reuse_from": [str(tmp_path)]}
    r5 = run_study_module(rate_capability, other, tmp_path / "other")
    assert [o.status for o in r5.outcomes] == ["ok"] * 3 and fake.calls == []
    assert (tmp_path / "other/runs/porous-8C/discharge/timeseries.csv").is_file()
    assert r5.outcomes[2].results["capacity_mAh_g"] == pytest.approx(150.0 / 9.0)


# ------------------------------------------------------------------ a tiny study end to end (~1 min)
TINY = {"c_rates": [1.0, 3.0, 10.0], "seed": 0,
        "volume": {"synthetic": {"box_um": [6.0, 4.0, 4.0], "voxel_size_um": 0.5, "d50_um": 2.0, "d90_um": 3.0,
                                 "d_min_um": 1.0, "d_max_um": 3.5, "periodic_inplane": True, "seed": 2}},
        "mesh": {"coarsen": 2, "separator_um": 4.0},
        "simulate": {"max_ddod": 0.1, "dod_snapshots": [0.5]},
        "designs": [{"name": "base", "variants": []}]}


@pytest.mark.slow  # ~45 s on 2 idle cores, 2 min when loaded: the fake-physics test below covers the bookkeeping
def test_tiny_rate_study_end_to_end_resume_and_cli(tmp_path, monkeypatch):
    import dolfinx  # noqa: F401  (core dependency: fail, never skip)
    import tomocell.physics.cli as pcli

    calls: list[float] = []
    real = pcli.simulate_file

    def counting(mesh, c_rate, out, **kw):
        calls.append(c_rate)
        return real(mesh, c_rate, out, **kw)

    monkeypatch.setattr(pcli, "simulate_file", counting)
    res = run_study_module(rate_capability, TINY, tmp_path)
    assert [o.status for o in res.outcomes] == ["ok"] * 3, [o.error for o in res.outcomes]
    assert calls == [1.0, 3.0, 10.0]
    assert len(list((tmp_path / "structures").iterdir())) == 1  # one mesh for the three C-rates
    r = {o.params["c_rate"]: o.results for o in res.outcomes}
    # physics sanity: capacity falls with rate; energy/power follow the definitions
    assert r[1.0]["capacity_mAh_g"] > r[3.0]["capacity_mAh_g"] > r[10.0]["capacity_mAh_g"] > 0
    for c, x in r.items():
        assert x["reason"] == "cut-off" and 3.0 < x["mean_voltage_V"] < 4.25
        assert x["specific_energy_Wh_kg"] == pytest.approx(x["capacity_mAh_g"] * x["mean_voltage_V"])
        assert x["specific_power_W_kg"] * x["discharge_time_s"] / 3600 == pytest.approx(x["specific_energy_Wh_kg"])
        # discharge time = capacity / current: t = Q / (c * Q_nominal) h
        assert x["discharge_time_s"] == pytest.approx(3600 * x["capacity_mAh_g"] / (c * x["nominal_capacity_mAh_g"]), rel=1e-6)
        # the trapezoid energy agrees with the physics' own (rectangle) energy to a few %
        man = json.loads((tmp_path / "runs" / f"base-{c:g}C" / "discharge" / "run.json").read_text())["results"]
        mass_kg = man["capacity_Ah"] / man["capacity_mAh_g"]  # Ah / (mAh/g) = kg
        assert x["specific_energy_Wh_kg"] == pytest.approx(man["energy_Wh"] / mass_kg, rel=0.03)
    assert r[1.0]["specific_power_W_kg"] < r[3.0]["specific_power_W_kg"] < r[10.0]["specific_power_W_kg"]
    # tables: one row per run in summary.csv, the series in results.csv, knee in ragone.csv
    summary = read_table(res.summary)
    assert [row["run"] for row in summary] == ["base-1C", "base-3C", "base-10C"]
    assert float(summary[0]["specific_energy_Wh_kg"]) == pytest.approx(r[1.0]["specific_energy_Wh_kg"])
    rows = read_table(res.table)
    n_curve = len(r[3.0]["voltage_curve"]["voltage_V"])
    assert sum(1 for x in rows if x["run"] == "base-3C" and x["metric"] == "voltage_curve.voltage_V") == n_curve
    knees = read_table(tmp_path / "ragone.csv")
    assert knees[0]["design"] == "base" and knees[0]["points"] == "3" and knees[0]["knee_c_rate"] == ""  # < 4 points
    for f in ("capacity_vs_c_rate.png", "ragone.png", "voltage_curves.png", "twin_vs_resolved.png"):
        assert (tmp_path / "figures" / f).stat().st_size > 1000
    # the DFN twin of every discharge: one row per rate, the resolved capacity is the run's
    twin = read_table(tmp_path / "twin.csv")
    assert [float(t["c_rate"]) for t in twin] == [1.0, 3.0, 10.0] and not any(t["note"] for t in twin), twin
    for t in twin:
        assert float(t["capacity_resolved_mAh_g"]) == pytest.approx(r[float(t["c_rate"])]["capacity_mAh_g"], rel=1e-5)  # 6 digits
        assert float(t["capacity_twin_mAh_g"]) > 0 and float(t["voltage_rmse_mV"]) >= 0 and float(t["tau"]) >= 1
    assert (tmp_path / "runs/base-1C/twin/timeseries.csv").is_file()

    # resume: nothing is simulated again
    calls.clear()
    res2 = run_study_module(rate_capability, TINY, tmp_path)
    assert [o.status for o in res2.outcomes] == ["skipped"] * 3 and calls == []
    # a run whose record is lost reuses its finished discharge instead of simulating
    (tmp_path / "runs/base-3C/run.json").unlink()
    res3 = run_study_module(rate_capability, TINY, tmp_path)
    assert [o.status for o in res3.outcomes] == ["skipped", "ok", "skipped"] and calls == []
    assert res3.outcomes[1].results["capacity_mAh_g"] == pytest.approx(r[3.0]["capacity_mAh_g"])
    # the CLI: --config is the study's own config; resumes into the same directory
    from tomocell.cli import main

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    assert main(["study", "rate-capability", "--config", str(cfg), "--out", str(tmp_path)]) == 0
    assert calls == []
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "ok"
    assert not math.isnan(float(summary[2]["capacity_mAh_g"]))


def test_calendering_rate_study_with_a_made_up_discharge(tmp_path, monkeypatch):
    import tomocell.physics.cli as pcli

    monkeypatch.setattr(pcli, "simulate_file", FakeDischarge())
    cfg = {**{k: v for k, v in FAKE_CFG.items() if k != "designs"}, "c_rates": [1.0, 4.0], "strain": 0.2,
           "loadings": [{"name": "thin", "thickness_um": 4.0}, {"name": "thick", "thickness_um": 8.0}]}
    res = run_study_module(calendering_rate, cfg, tmp_path)
    assert [o.status for o in res.outcomes] == ["ok"] * 8, [o.error for o in res.outcomes]
    st = {o.params["design"]: o.results["structure"] for o in res.outcomes}
    # calendering by 20 % keeps the active mass (loading) and thins the electrode; porosity drops
    for ld, t in (("thin", 4.0), ("thick", 8.0)):
        u, c = st[f"{ld}-uncalendered"], st[f"{ld}-calendered"]
        assert u["thickness_um"] == t and c["thickness_um"] == pytest.approx(0.8 * t, abs=0.5)
        assert c["active_loading_mg_cm2"] == pytest.approx(u["active_loading_mg_cm2"], rel=1e-9)
        assert c["porosity"] < u["porosity"]
    # thick/calender drop the input's particle ids and are not relabelled (no per-particle output needed)
    for o in res.outcomes[:: len(cfg["c_rates"])]:
        sdir = tmp_path / "structures" / o.results["structure"]["key"]
        info = json.loads((sdir / "structure.json").read_text())
        assert info["particles_relabelled"] is False and info["particles"] == 0
        # the stair-stepped voxel areas are beyond the 5 % bound: the structure records it
        assert info["mesh_warnings"] == json.loads((sdir / "fidelity.json").read_text())["warnings"]
        assert any(" area " in w for w in info["mesh_warnings"])
    o = res.outcomes[0]
    assert o.results["volumetric_capacity_mAh_cm3"] == pytest.approx(
        o.results["capacity_mAh_cm2"] / (o.results["structure"]["thickness_um"] * 1e-4))
    for f in ("capacity_by_loading.png", "volumetric_capacity_by_loading.png", "ragone.png"):
        assert (tmp_path / "figures" / f).stat().st_size > 1000


def test_sigterm_stops_the_study_and_the_next_invocation_resumes(tmp_path, monkeypatch):
    import tomocell.physics.cli as pcli
    from tomocell.errors import SolverError

    seen: list[bool] = []

    def killed(mesh, c_rate, out, **kw):
        seen.append(kw["resume"])
        (Path(out) / "checkpoint").mkdir(parents=True, exist_ok=True)
        (Path(out) / "checkpoint" / "meta.json").write_text("{}")
        raise SolverError("terminated by SIGTERM at step 3, t = 1.0 s; checkpoint written, continue with --resume")

    cfg = {**FAKE_CFG, "c_rates": [1.0, 2.0], "designs": FAKE_CFG["designs"][:1]}
    monkeypatch.setattr(pcli, "simulate_file", killed)
    with pytest.raises(KeyboardInterrupt):
        run_study_module(rate_capability, cfg, tmp_path)
    assert seen == [False]  # the second run was not started
    fake = FakeDischarge()
    monkeypatch.setattr(pcli, "simulate_file", lambda *a, **kw: (seen.append(kw["resume"]), fake(*a, **kw))[1])
    res = run_study_module(rate_capability, cfg, tmp_path)
    assert [o.status for o in res.outcomes] == ["ok", "ok"] and seen == [False, True, False]


def test_calender_after_thick_moves_watershed_particles():
    """thick drops the particle ids; calendering then needs the watershed particles as bodies. With
    6-connected components the packed active network became a few thickness-spanning bodies and the
    85 -> 68 um electrode lost all contact with the collector (an empty layer there)."""
    from tomocell.microstructure.volume import PORE
    from tomocell.studies.inputs import apply_variants, load_volume_spec

    vol, ids, _ = load_volume_spec({"synthetic": {"box_um": [50.0, 10.0, 10.0], "voxel_size_um": 0.5,
                                                  "periodic_inplane": True, "seed": 1}})
    steps = [{"kind": "thick", "thickness_um": 85.0, "method": "mirror"}, {"kind": "calender", "strain": 0.2}]
    v, _, rep = apply_variants(vol, ids, steps)
    assert v.shape[0] == 136 and rep[-1]["bodies"] == "watershed"
    por = (v.labels == PORE).mean(axis=(1, 2))
    assert por[-4:].max() < 0.5  # solid reaches the collector
    assert rep[-1]["particles"] > 150  # ~244 particles, not a handful of merged bodies
    assert (v.labels == 1).sum() == rep[-1]["active_voxels_input"]  # active mass conserved
    _, _, rep_c = apply_variants(vol, ids, [steps[0], {**steps[1], "bodies": "components"}])
    assert rep_c[-1]["particles"] < rep[-1]["particles"] / 4
    with pytest.raises(InputError):
        apply_variants(vol, ids, [steps[0], {**steps[1], "bodies": "spheres"}])


def test_checkpoint_of_other_settings_is_discarded_not_resumed(tmp_path, monkeypatch):
    """A run whose structure changed must start afresh even though its directory holds a checkpoint
    (it used to 'continue' the old discharge and fail on a dof mismatch)."""
    import tomocell.physics.cli as pcli
    from tomocell.studies import electrochem as ec

    seen = []

    def fake(mesh, c_rate, out, resume=False, **kw):
        seen.append(resume)
        raise SolverError("stop here")

    monkeypatch.setattr(pcli, "simulate_file", fake)
    sim = ec.sim_options({})
    d = tmp_path / "discharge"
    (d / "checkpoint").mkdir(parents=True)
    (d / "checkpoint" / "meta.json").write_text("{}")
    (d / ec.STARTED_FILE).write_text(json.dumps({"mesh": str(tmp_path / "structures/OLD/mesh.xdmf"), "c_rate": 1.0, **sim}))
    new_mesh = tmp_path / "structures/NEW/mesh.xdmf"
    with pytest.raises(SolverError):
        ec.discharge(new_mesh, 1.0, d, sim)
    assert seen == [False] and not (d / "checkpoint").exists()
    # the same settings again: its own checkpoint is continued
    (d / "checkpoint").mkdir()
    (d / "checkpoint" / "meta.json").write_text("{}")
    with pytest.raises(SolverError):
        ec.discharge(new_mesh, 1.0, d, sim)
    assert seen == [False, True]
