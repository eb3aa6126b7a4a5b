"""The discharge operation end to end: CLI, cut-off event, output layout, checkpoint/resume, bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tomocell.fem  # noqa: F401

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

from tomocell.cli import main  # noqa: E402
from tomocell.physics.outputs import INTERFACE_COLUMNS, TIMESERIES_COLUMNS  # noqa: E402

BOX = "box:3,3,4"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run5c(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "5C"
    assert main(["simulate", BOX, "--c-rate", "5", "--out", str(out), "--rest-min", "2"]) == 0
    return out


def test_run_layout_and_cutoff_event(run5c):
    out = run5c
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "ok" and run["stage"] == "simulate"
    res = run["results"]
    rows = _rows(out / "timeseries.csv")
    assert list(rows[0]) == list(TIMESERIES_COLUMNS)
    dis = [r for r in rows if r["segment"] == "discharge"]
    # every step balances charge: the reaction current equals the applied one, and the current through
    # the Li-metal face is the same current (Li is conserved, test_protocols_balance)
    for r in rows[1:]:
        assert abs(float(r["charge_balance_rel"])) < 1e-7, r
        assert float(r["li_face_current_A"]) == pytest.approx(float(r["current_A"]), rel=1e-6, abs=1e-9 * float(dis[1]["current_A"]))
    v = np.array([float(r["voltage_V"]) for r in dis])
    # the cut-off is located in time: last point on 3.0 V from above, nothing below
    assert 3.0 <= v[-1] <= 3.0 + 1e-4
    assert np.all(v >= 3.0) and v[-2] > v[-1] + 1e-3
    assert res["final_voltage_V"] == pytest.approx(v[-1])
    assert res["reason"] == "cut-off"
    # capacity bookkeeping: trapezoid of the (constant) current over time
    t = np.array([float(r["t_s"]) for r in dis])
    i = float(dis[-1]["current_A"])
    assert res["capacity_Ah"] == pytest.approx(i * t[-1] / 3600, rel=1e-12)
    assert res["utilisation"] < 1.0
    # rest follows at zero current and the voltage relaxes upwards
    rest = [r for r in rows if r["segment"] == "rest"]
    assert rest and all(float(r["current_A"]) == 0.0 for r in rest)
    assert float(rest[-1]["voltage_V"]) > v[-1]
    assert float(rest[-1]["t_s"]) == pytest.approx(t[-1] + 120.0)
    assert max(abs(float(r["li_balance_rel"])) for r in rows[1:] if r["segment"] == "discharge") < 1e-10
    # per-step charge balance: reaction current against applied current, and the Li face's current
    assert max(abs(float(r["charge_balance_rel"])) for r in rows[1:]) < 1e-8
    for r in rows[1:]:
        assert float(r["li_face_current_A"]) == pytest.approx(float(r["current_A"]), rel=1e-8, abs=1e-8 * i)
        assert float(r["interface_current_A"]) == pytest.approx(-float(r["current_A"]), rel=1e-8, abs=1e-8 * i)
    # step control: the initial voltage jump (ohmic + kinetic response) does not cut the second step,
    # and the knee before the cut-off is resolved (the 50 mV cap predicts from the last slope, so a
    # realised change may exceed it somewhat; without the cap the knee took 0.1-0.15 V steps)
    dts = [float(r["dt_s"]) for r in dis]
    assert dts[2] >= dts[1]
    dv = np.abs(np.diff(v[1:-1]))
    # measured 0.108 V on the NMC111 OCP (its end falls faster, tanh slope 59 at x = 0.998, so the last
    # slope under-predicts the next change by up to 2x), 0.1 V on the former LiCoO2-type OCP
    assert dv.max() <= 0.12


def test_snapshots_interface_and_particles(run5c):
    out = run5c
    rows = _rows(out / "timeseries.csv")
    parts = _rows(out / "particles.csv")
    assert len(parts) == 3
    for dod in (25, 50, 70):
        d = out / "fields" / f"dod{dod:03d}"
        for f in ("active.h5", "solid.h5", "electrolyte.h5", "interface.npz", "interface.csv", "meta.json"):
            assert (d / f).is_file(), f
        meta = json.loads((d / "meta.json").read_text())
        assert meta["dod"] == pytest.approx(dod / 100)
        row = next(r for r in rows if abs(float(r["dod"]) - dod / 100) < 1e-9)
        tab = np.load(d / "interface.npz")
        assert set(INTERFACE_COLUMNS) <= set(tab.files)
        # midpoint rule for the total reaction current: near the applied current. Exp of P1 at facet
        # midpoints on this 3.3 um mesh under-integrates Butler-Volmer: measured 0.944 / 0.958 / 0.788 of
        # the applied current at 25 / 50 / 70 % DoD (separate particle bodies; one nearly full body,
        # SoL 0.95-0.98, where i0 ~ sqrt(1 - x) varies most over a facet, makes 70 % the worst; with
        # the shared-cluster model 0.886). The model's own quadrature, interface_current_A, equals the
        # applied current to 3e-12 on this box
        total = np.sum(tab["J_ct_A_m2"] * tab["area_um2"]) * 1e-12
        assert total == pytest.approx(-float(row["current_A"]), rel=0.1 if dod < 70 else 0.25)
        # cathodic (lithiation) on most of the surface; nearly full small particles may locally give Li back
        assert np.sum(tab["area_um2"] * (tab["J_ct_A_m2"] < 0)) > 0.8 * np.sum(tab["area_um2"])
        # every active cell belongs to a particle here: volume-weighted SoL = mean stoichiometry
        vol = np.array([float(p["volume_um3"]) for p in parts])
        sol = np.array([float(p[f"sol_dod{dod:03d}"]) for p in parts])
        assert np.sum(vol * sol) / np.sum(vol) == pytest.approx(float(row["mean_stoichiometry"]), rel=1e-10)


@pytest.mark.parametrize("args, msg", [
    (["--c-rate", "0"], "c-rate"),
    (["--c-rate", "-2"], "c-rate"),
    (["--dod", "120"], "dod"),
    (["--param", "active.diffusivity=-1"], "diffusivity"),
    (["--param", "voltage_min=0.5"], "outside the OCP range"),
])
def test_bad_input_exits_2_without_output(tmp_path, capsys, args, msg):
    out = tmp_path / "o"
    assert main(["simulate", BOX, "--out", str(out), *args]) == 2
    assert msg in capsys.readouterr().err
    assert not (out / "timeseries.csv").exists()


def test_missing_mesh_file(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "nope.xdmf"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


def test_sigterm_checkpoint_and_resume_reproduce_the_uninterrupted_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # ~500 steps (about 5 s): the signal must land inside the time loop. With 100 steps the whole run took
    # ~1 s once the physics got faster, and a SIGTERM during interpreter shutdown (Python has restored the
    # default handler by then) killed it with -15 after it had finished
    cmd = [sys.executable, "-m", "tomocell.cli", "simulate", BOX, "--c-rate", "0.2", "--max-ddod", "0.002",
           "--checkpoint-every", "1000"]
    ref = tmp_path / "ref"
    subprocess.run([*cmd, "--out", str(ref)], check=True, env=env, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "timeseries.csv").exists() and not (out / "fields").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("run finished before SIGTERM arrived (machine too fast for this test)")
    assert proc.returncode == 143 and b"SIGTERM" in err  # 128 + SIGTERM (issue 15)
    assert (out / "checkpoint" / "meta.json").is_file()
    subprocess.run([*cmd, "--out", str(out), "--resume"], check=True, env=env, capture_output=True)
    a = json.loads((ref / "run.json").read_text())["results"]
    b = json.loads((out / "run.json").read_text())["results"]
    assert b["steps"] == a["steps"]
    assert b["capacity_Ah"] == pytest.approx(a["capacity_Ah"], rel=1e-12)
    ra, rb = _rows(ref / "timeseries.csv"), _rows(out / "timeseries.csv")
    assert len(ra) == len(rb)
    assert float(rb[-1]["voltage_V"]) == pytest.approx(float(ra[-1]["voltage_V"]), abs=1e-10)


def test_cccv_charge_returns_the_discharged_charge():
    from mpi4py import MPI

    from tomocell.physics.discharge import simulate_discharge
    from tomocell.physics.synthetic import box_cell

    r = simulate_discharge(box_cell(MPI.COMM_WORLD, n=(3, 3, 4)), 2.0, charge_c_rate=1.0, rest_s=300.0)
    segs = [x["segment"] for x in r.rows]
    assert segs.index("rest") < segs.index("charge_cc") < segs.index("charge_cv")
    cc = [x for x in r.rows if x["segment"] == "charge_cc"]
    cv = [x for x in r.rows if x["segment"] == "charge_cv"]
    assert cc[-1]["voltage_V"] == pytest.approx(4.25, abs=1e-4) and cc[-1]["voltage_V"] <= 4.25
    assert all(x["voltage_V"] == pytest.approx(4.25, abs=1e-12) for x in cv)
    i_cv = np.array([x["current_A"] for x in cv])
    assert np.all(i_cv < 0) and np.all(np.diff(np.abs(i_cv)) < 0)  # the CV current decays
    assert abs(i_cv[-1]) == pytest.approx(0.05 * r.one_c_current_A, rel=1e-3)  # the end current, located
    # Li conserved in every step of every segment; the charge returns (almost) what was discharged
    assert max(abs(x["li_balance_rel"]) for x in r.rows[1:]) < 1e-10
    assert 0.97 < r.charge_Ah / r.capacity_Ah <= 1.0 + 1e-9
