"""Experiments on the model (box:2,2,3): CV hold, rest, Li balance per step, unreachable steps, drive cycle."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import tomocell.fem  # noqa: F401

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

from mpi4py import MPI  # noqa: E402

from tomocell.physics.discharge import make_model  # noqa: E402
from tomocell.physics.parameters import load_parameters  # noqa: E402
from tomocell.physics.protocols import parse_experiment  # noqa: E402
from tomocell.physics.protocols.run import COLUMNS, STEP_COLUMNS, run_experiment  # noqa: E402
from tomocell.physics.synthetic import box_cell  # noqa: E402

EXPERIMENT = ["Discharge at 2C until 3.6 V", "Rest for 5 minutes", "Charge at 1C until 4.2 V",
              "Hold at 4.2 V until C/20", "Charge at 1C until 4.0 V", "Discharge at 1 mW for 30 s",
              "Run cycle.csv (C)"]


@pytest.fixture(scope="module")
def model():
    return make_model(box_cell(MPI.COMM_WORLD, n=(2, 2, 3)), load_parameters(None))


@pytest.fixture(scope="module")
def run(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    (d / "cycle.csv").write_text("time_s,c_rate\n0,1\n20,-0.5\n30,3\n40,0\n")
    steps = parse_experiment(EXPERIMENT, base=d)
    res = run_experiment(model, steps, out_dir=d / "out", cell_area_m2=1e-4)  # 1 mW on a 1 cm2 cell
    with open(d / "out" / "timeseries.csv") as f:
        rows = list(csv.DictReader(f))
    with open(d / "out" / "steps.csv") as f:
        summ = list(csv.DictReader(f))
    return res, rows, summ


def _of(rows, k):
    return [r for r in rows[1:] if int(r["protocol_step"]) == k]


def test_layout_and_step_ends(run):
    res, rows, summ = run
    assert list(rows[0]) == list(COLUMNS) and list(summ[0]) == list(STEP_COLUMNS)
    assert [s["status"] for s in summ] == ["done", "done", "done", "done", "skipped", "done", "done"]
    v0 = np.array([float(r["voltage_V"]) for r in _of(rows, 0)])
    assert 3.6 <= v0[-1] <= 3.6 + 1e-4 and np.all(v0 >= 3.6)  # located, not overshot
    assert float(summ[1]["duration_s"]) == pytest.approx(300.0)
    assert "already 4.2" in summ[4]["reason"]  # charge to a voltage below the present one: skipped
    assert float(summ[5]["duration_s"]) == pytest.approx(30.0)


def test_rest_relaxes_monotonically_at_zero_current(run):
    _, rows, _ = run
    rest = _of(rows, 1)
    v = np.array([float(r["voltage_V"]) for r in rest])
    assert all(float(r["current_A"]) == 0.0 for r in rest)
    # the ohmic + kinetic drop comes back at once (the discharge ended at 3.6 V), the diffusion part over
    # the rest: measured 3.653 -> 3.692 V with nmc111 (the former LiCoO2-type default relaxed > 50 mV)
    assert v[0] > 3.6 + 0.02
    assert np.all(np.diff(v) > 0) and v[-1] - v[0] > 0.03


def test_cv_hold_stays_at_voltage_and_ends_at_its_current(run):
    res, rows, _ = run
    hold = _of(rows, 3)
    v = np.array([float(r["voltage_V"]) for r in hold])
    i = np.array([float(r["current_A"]) for r in hold])
    assert np.max(np.abs(v - 4.2)) < 1e-4
    i_end = res.one_c_current_A / 20
    assert np.all(i < 0) and np.all(np.abs(i[:-1]) > i_end)
    assert abs(i[-1]) == pytest.approx(i_end, rel=2e-3)


def test_power_and_drive_cycle_currents(run):
    res, rows, _ = run
    pw = _of(rows, 5)
    scale = 1e-10 / 1e-4  # box collector area 10 um x 10 um over 1 cm2
    for r in pw[1:]:  # I = P / V of the previous step
        assert float(r["current_A"]) * float(r["voltage_V"]) == pytest.approx(1e-3 * scale, rel=0.02)
    cyc = _of(rows, 6)
    t0 = float(_of(rows, 5)[-1]["t_s"])
    for r in cyc:
        t_mid = float(r["t_s"]) - 0.5 * float(r["dt_s"]) - t0
        want = 1.0 if t_mid < 20 else -0.5 if t_mid < 30 else 3.0
        assert float(r["current_A"]) == pytest.approx(want * res.one_c_current_A, rel=1e-12)
    assert float(cyc[-1]["t_s"]) - t0 == pytest.approx(40.0)


def test_lithium_conserved_in_every_step(run):
    _, _, summ = run
    assert max(float(s["li_balance_max"]) for s in summ) <= 1e-10


def test_cli_experiment_file_and_refusals(tmp_path, capsys):
    from tomocell.cli import main

    f = tmp_path / "exp.txt"
    f.write_text("Discharge at 2C for 2 minutes\n(Rest for 30 s, Charge at 1C for 20 s) x 2\n")
    out = tmp_path / "r"
    assert main(["simulate", "box:2,2,3", "--out", str(out), "--experiment-file", str(f)]) == 0
    with open(out / "steps.csv") as fh:
        summ = list(csv.DictReader(fh))
    assert [s["text"] for s in summ] == ["Discharge at 2C for 2 minutes"] + ["Rest for 30 s", "Charge at 1C for 20 s"] * 2
    with open(out / "timeseries.csv") as fh:
        ks = {int(r["protocol_step"]) for r in csv.DictReader(fh)}
    assert ks == set(range(5))
    for argv in (["--experiment", "Discharge at 1C"], ["--experiment-file", str(tmp_path / "none.txt")],
                 ["--experiment", "Rest for 1 s", "--charge-c-rate", "1"],
                 ["--experiment", "Rest for 1 s", "--experiment-file", str(f)]):
        bad = tmp_path / "bad"
        assert main(["simulate", "box:2,2,3", "--out", str(bad), *argv]) == 2
        assert not bad.exists()


def _write_run(rows, out):
    """A run directory holding just these timeseries rows (what `tomocell compare` reads)."""
    out.mkdir()
    with open(out / "timeseries.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def test_compare_with_a_measured_curve(run, tmp_path, capsys):
    from tomocell.cli import main

    _, rows, _ = run
    out = _write_run(rows, tmp_path / "sim")
    meas = tmp_path / "m.csv"
    t = [float(r["t_s"]) for r in rows[:40]]
    v = [float(r["voltage_V"]) + 0.002 for r in rows[:40]]  # the curve shifted by 2 mV
    q = float(rows[-1]["capacity_mAh_g"]) * 1.1  # the end capacities are compared
    meas.write_text("time_h,E_V,Q\n" + "".join(f"{a / 3600},{b},{q}\n" for a, b in zip(t, v)))
    argv = ["compare", str(out), str(meas), "--time-col", "time_h", "--time-scale", "3600", "--voltage-col", "E_V"]
    assert main(argv + ["--capacity-col", "Q", "--json", str(tmp_path / "c.json"), "--figure", str(tmp_path / "o.png")]) == 0
    assert (tmp_path / "o.png").stat().st_size > 10_000
    import json

    res = json.loads((tmp_path / "c.json").read_text())
    assert res["rmse_mV"] == pytest.approx(2.0, rel=1e-6) and res["mean_mV"] == pytest.approx(-2.0, rel=1e-6)
    assert res["capacity_difference_rel"] == pytest.approx(-1 / 11, rel=1e-9)
    assert main(argv[:3] + ["--voltage-col", "nope", "--figure", str(tmp_path / "n.png")]) == 2
    assert not (tmp_path / "n.png").exists()


def test_compare_with_one_step_of_the_experiment(run, tmp_path):
    """A measured curve of one step (its own clock and capacity from 0) against that step (--step K)."""
    import json

    from tomocell.cli import main

    res, rows, _ = run
    out = _write_run(rows, tmp_path / "sim")
    i0 = next(i for i, r in enumerate(rows) if r["protocol_step"] == "2") - 1  # the charge starts here
    step = [rows[i0]] + _of(rows, 2)
    t0, q0 = float(step[0]["t_s"]), float(step[0]["capacity_mAh_g"])
    meas = tmp_path / "m.csv"
    meas.write_text("t,E,Q\n" + "".join(f"{float(r['t_s']) - t0},{float(r['voltage_V']) - 0.003},"
                                        f"{float(r['capacity_mAh_g']) - q0}\n" for r in step))
    argv = ["compare", str(out), str(meas), "--time-col", "t", "--voltage-col", "E", "--capacity-col", "Q",
            "--figure", str(tmp_path / "o.png"), "--json", str(tmp_path / "c.json")]
    assert main(argv + ["--step", "2"]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["rmse_mV"] == pytest.approx(3.0, rel=1e-6) and c["points"] == len(step)
    assert c["duration_difference_s"] == pytest.approx(0.0, abs=1e-9)
    assert c["capacity_simulated"] < 0 and c["capacity_difference"] == pytest.approx(0.0, abs=1e-9)
    assert main(argv) == 0  # the whole run: its clock starts at the discharge
    assert json.loads((tmp_path / "c.json").read_text())["rmse_mV"] > 10.0
    assert main(argv + ["--step", "9"]) == 2


def test_resume_mid_experiment_gives_the_uninterrupted_result(tmp_path):
    """Stopped inside step 2 (checkpoint every 4 time steps, the run cut after 30), resumed: the same
    time series, step table and field snapshot as one uninterrupted run."""
    from tomocell.errors import SolverError

    exp = parse_experiment(["Discharge at 2C for 10 minutes", "Rest for 2 minutes", "Discharge at 2C until 3.6 V",
                            "Charge at 1C for 5 minutes"])

    def go(out, **kw):
        m = make_model(box_cell(MPI.COMM_WORLD, n=(2, 2, 3)), load_parameters(None))
        return run_experiment(m, exp, out_dir=out, dod_snapshots=(0.5,), checkpoint_every=4, **kw)

    ref = go(tmp_path / "ref")
    with pytest.raises(SolverError, match="no cut-off"):
        go(tmp_path / "cut", max_steps=30)
    import json

    meta = json.loads((tmp_path / "cut" / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == 28 and meta["state"]["local"] is not None  # inside a step
    k_cut = meta["protocol_step"]
    assert 0 < k_cut < len(exp)
    got = go(tmp_path / "cut", resume=True)
    assert len(got.rows) == len(ref.rows) and got.snapshots == ref.snapshots == [0.5]
    for a, b in zip(got.rows, ref.rows):
        assert a["voltage_V"] == pytest.approx(b["voltage_V"], abs=1e-10) and a["t_s"] == pytest.approx(b["t_s"], rel=1e-12)
    assert [s["reason"] for s in got.steps] == [s["reason"] for s in ref.steps]
    assert (tmp_path / "cut" / "fields" / "dod050" / "interface.csv").is_file()
    # a changed experiment is refused, naming it
    m = make_model(box_cell(MPI.COMM_WORLD, n=(2, 2, 3)), load_parameters(None))
    from tomocell.errors import InputError

    with pytest.raises(InputError, match="experiment"):
        run_experiment(m, exp[:3], out_dir=tmp_path / "cut", dod_snapshots=(0.5,), checkpoint_every=4, resume=True)


def test_resistance_step_and_operator_ends(tmp_path):
    """'Discharge at R Ohm' draws I = V/R (of the previous step); 'until < V' ends below the voltage."""
    m = make_model(box_cell(MPI.COMM_WORLD, n=(2, 2, 3)), load_parameters(None))
    r_ohm = 4.0 / (2 * m.one_c_current_A())  # about 2C at 4 V
    res = run_experiment(m, parse_experiment([f"Discharge at {r_ohm:.6g} Ohm until < 3.8 V"]))
    body = res.rows[1:]
    for a, b in zip(res.rows, body):
        assert b["current_A"] == pytest.approx(a["voltage_V"] / float(f"{r_ohm:.6g}"), rel=1e-9)
    assert 3.8 <= body[-1]["voltage_V"] <= 3.8 + 1e-4 and res.steps[0]["reason"] == "3.8 V"
