"""The homogenised PyBaMM DFN twin: translation value-for-value, measured geometry, agreement at C/10."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import tomocell  # noqa: F401  (h5py/PETSc order)
from tomocell.errors import InputError
from tomocell.physics.parameters import Func, load_parameters, regularised_concentration

pybamm = pytest.importorskip("pybamm")

from tomocell.physics.twin import bruggeman_from_tau, electrode_bruggeman, functions, mesh_geometry  # noqa: E402


def ev(sym) -> float:
    return float(np.asarray(sym.evaluate() if hasattr(sym, "evaluate") else sym).ravel()[0])


S = pybamm.Scalar


@pytest.mark.parametrize("pset", ["nmc111", "xu2019"])
def test_functions_value_for_value(pset):
    p = load_parameters(pset)
    f = functions(p)
    T = p.temperature
    lo, hi = p.ocp_valid
    for x in np.linspace(lo, hi, 9):
        assert ev(f["ocp"](S(x))) == pytest.approx(float(p.ocp(x=x)), rel=1e-12)
        assert ev(f["D_s"](S(x), S(T))) == pytest.approx(float(np.asarray(p.D_s(x=x))), rel=1e-12)
    # outside the valid range: the resolved model's linear continuation (slope at the end)
    h = 1e-6 * (hi - lo)
    slope = (float(p.ocp(x=hi)) - float(p.ocp(x=hi - h))) / h
    assert ev(f["ocp"](S(hi + 0.01))) == pytest.approx(float(p.ocp(x=hi)) + 0.01 * slope, rel=1e-9)
    for c in (200.0, 1000.0, 1800.0):
        # inside the fitted range the regularisation changes c by < 1e-8 relative
        assert ev(f["kappa"](S(c), S(T))) == pytest.approx(float(p.kappa(c=c, T=T)), rel=1e-8)
        assert ev(f["D_e"](S(c), S(T))) == pytest.approx(float(p.D_e(c=c, T=T)), rel=1e-8)
        assert ev(f["t_plus"](S(c), S(T))) == pytest.approx(float(p.t_plus(c=c, T=T)), rel=1e-8)
        assert ev(f["tdf"](S(c), S(T))) == pytest.approx(float(p.tdf(c=c, T=T)), rel=1e-8)
        # i0 = F k c_e^a (c_max - c_s)^a c_s^a (the model's exchange_current, a = 1/2)
        cs = 0.6 * p.c_max
        want = 96485.33212 * p.k_ct * math.sqrt(c * (p.c_max - cs) * cs)
        assert ev(f["i0"](S(c), S(cs), S(p.c_max), S(T))) == pytest.approx(want, rel=1e-12)
        assert ev(f["i0_li"](S(c), S(0.0), S(T))) == pytest.approx(p.li_i0 * (c / p.c_e0) ** p.li_c_exponent, rel=1e-12)
    # the regularisation is the model's too: capped smoothly at the top of the fitted range, positive
    # and smooth at the bottom (kappa -> 0 as the electrolyte starves, no clip at 50 mol/m^3)
    for c in (1e4, 3000.0, 20.0, 1.0, 0.0, -5.0):
        c_reg = float(regularised_concentration(c, p.c_e_valid[1]))
        assert ev(f["kappa"](S(c), S(T))) == pytest.approx(float(p.kappa(c=c_reg, T=T)), rel=1e-12)
    assert float(regularised_concentration(1e4, p.c_e_valid[1])) == pytest.approx(p.c_e_valid[1], rel=1e-9)
    assert 0 < ev(f["kappa"](S(0.0), S(T))) < 0.05 * float(p.kappa(c=50.0, T=T))  # the clip held kappa(50)


def test_table_function_matches_numpy():
    f = Func({"table": {"x": [0.0, 0.3, 0.7, 1.0], "y": [4.3, 4.0, 3.8, 3.0]}}, "t")
    for x in (-0.1, 0.1, 0.5, 0.9, 1.2):
        assert ev(f(x=S(x), backend="pybamm")) == pytest.approx(float(f(x=x)), rel=1e-12)


def test_asymmetric_kinetics_refused():
    p = load_parameters("nmc111", {"active.alpha_a": 0.4})
    with pytest.raises(InputError, match="symmetric"):
        functions(p)


def test_bruggeman_from_tau():
    eps = 0.4
    b = bruggeman_from_tau(2.5, eps)
    assert eps**b == pytest.approx(eps / 2.5)
    with pytest.raises(InputError):
        bruggeman_from_tau(0.5, eps)


def test_electrode_bruggeman_fit_default_and_number(box):
    p = load_parameters("nmc111")
    g = mesh_geometry(box, load_parameters("nmc111").sep_porosity)
    assert electrode_bruggeman(p, g) == p.sep_bruggeman  # nothing measured (box: no image)
    with pytest.raises(InputError, match="fit needs a measured tortuosity"):
        electrode_bruggeman(p, g, "fit")
    g.tau = 2.5
    b = electrode_bruggeman(p, g, "fit")
    assert g.porosity**b == pytest.approx(g.porosity / 2.5, rel=1e-12)
    assert electrode_bruggeman(p, g) == b  # the default transport is the same porosity/tau
    assert electrode_bruggeman(p, g, 1.7) == 1.7
    with pytest.raises(InputError, match="number or 'fit'"):
        electrode_bruggeman(p, g, "fitted")


def _mesh_dir(tmp_path, run=None, fidelity=None):
    d = tmp_path / "mesh"
    d.mkdir()
    (d / "mesh.xdmf").write_text("<Xdmf/>")  # never read: the tortuosity is resolved first
    if run is not None:
        (d / "run.json").write_text(json.dumps(run))
    if fidelity is not None:
        (d / "fidelity.json").write_text(json.dumps(fidelity))
    return d / "mesh.xdmf"


def test_measured_tau_follows_the_mesh_to_its_image(tmp_path):
    from tomocell.physics.twin_compare import measured_tau, mesh_tau

    gone = tmp_path / "vol" / "volume.tif"
    mesh = _mesh_dir(tmp_path, run={"stage": "mesh", "inputs": {"volume": {"path": str(gone)}}},
                     fidelity={"transport": {"pore": {"voxels": {"tau": 4.2}, "mesh": {"tau": 3.1}}}})
    with pytest.raises(InputError, match=f"{gone} does not exist"):  # no silent fallback to Bruggeman
        measured_tau(str(mesh))
    (mesh.parent / "run.json").unlink()  # a study's structure: no mesh run, the voxels' tau in fidelity.json
    tau, src = measured_tau(str(mesh))
    assert tau == 4.2 and "fidelity.json" in src
    assert mesh_tau(str(mesh)) == 3.1
    (mesh.parent / "fidelity.json").unlink()
    with pytest.raises(InputError, match="pass --tau"):
        measured_tau(str(mesh))
    assert mesh_tau(str(mesh)) is None and mesh_tau("box:6,6,8") is None


def test_twin_and_export_refuse_a_run_whose_volume_is_gone(tmp_path, capsys):
    from tomocell.cli import main
    from tomocell.physics.parameters import load_raw

    gone = tmp_path / "vol" / "volume.tif"
    mesh = _mesh_dir(tmp_path, run={"stage": "mesh", "inputs": {"volume": {"path": str(gone)}}})
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "timeseries.csv").write_text("t_s,voltage_V\n")
    (sim / "run.json").write_text(json.dumps({"stage": "simulate", "status": "ok", "cwd": str(tmp_path),
                                               "parameters": {"mesh": str(mesh), "c_rate": 1.0,
                                                              "parameters": load_raw("nmc111")}}))
    assert main(["-q", "twin", str(sim), "--out", str(tmp_path / "twin")]) == 2
    assert str(gone) in capsys.readouterr().err
    assert main(["-q", "export-bpx", str(sim), "--out", str(tmp_path / "cell.json")]) == 2
    assert str(gone) in capsys.readouterr().err
    assert not (tmp_path / "twin").exists() and not (tmp_path / "cell.json").exists()


@pytest.fixture(scope="module")
def box():
    from mpi4py import MPI

    from tomocell.physics.synthetic import box_cell

    return box_cell(MPI.COMM_WORLD, n=(6, 6, 8))


def test_mesh_geometry_of_box(box):
    g = mesh_geometry(box, load_parameters("nmc111").sep_porosity)
    assert g.thickness_m == pytest.approx(10e-6, rel=1e-9)
    assert g.separator_thickness_m == pytest.approx(5e-6, rel=1e-9)
    assert g.area_m2 == pytest.approx(100e-12, rel=1e-9)
    assert len(g.particle_radii_m) == 3
    total = g.active_fraction + g.porosity + g.cbd_fraction
    assert 0.99 < total <= 1.0 + 1e-12  # a few closed pore cells are inert
    # staircase spheres have more surface than smooth ones, minus the CBD-covered part
    assert g.interface_area_m2 > 0 and 0.5 < g.area_factor < 3.0


@pytest.fixture(scope="module")
def sim_c10(tmp_path_factory):
    from tomocell.cli import main

    sim = tmp_path_factory.mktemp("twin") / "sim"
    assert main(["-q", "simulate", "box:6,6,8", "--c-rate", "0.1", "--dod", "50", "--out", str(sim)]) == 0
    return sim


def test_twin_cli_agrees_at_c10(tmp_path, sim_c10):
    """Regression against the 1D DFN at low rate: C/10 on the built-in box, the resolved model and its
    DFN twin (same Newman model, only the geometry homogenised; at C/10 transport losses are small, so
    they must agree) within 1 % capacity and 15 mV voltage RMSE (measured with the nmc111 set:
    155.51 vs 155.31 mAh/g, -0.13 %, 7.6 mV; with the former LiCoO2-type default 0.07 %, 3.1 mV)."""
    from tomocell.cli import main

    exp = json.loads((sim_c10 / "run.json").read_text())["parameters"]["experiment"]
    assert [(s["kind"], s["value"], s["text"]) for s in exp] == [("c_rate", 0.1, "Discharge at 0.1C until 3 V")]
    twin = tmp_path / "twin"
    assert main(["-q", "twin", str(sim_c10), "--out", str(twin)]) == 0
    rows = list(csv.DictReader(open(twin / "comparison.csv")))
    dfn = [r for r in rows if r["model"] == "dfn"][0]
    assert abs(float(dfn["capacity_diff_rel"])) < 0.01
    res = [r for r in rows if r["model"] == "resolved"][0]
    # the capacity itself: the nmc111 window (x 0.440 -> 1.0 = 155.5 mAh/g) is nearly all used at C/10
    assert 150.0 < float(res["capacity_mAh_g"]) <= 155.6
    assert float(dfn["voltage_rmse_mV"]) < 15.0
    ts = list(csv.DictReader(open(twin / "timeseries.csv")))
    assert {"t_s", "voltage_V", "current_A", "capacity_mAh_g"} <= set(ts[0])
    assert float(ts[-1]["voltage_V"]) == pytest.approx(3.0, abs=0.02)
    assert (twin / "overlay.png").stat().st_size > 1000
    man = json.loads((twin / "run.json").read_text())
    assert man["status"] == "ok"
    assert man["results"]["psd"] is True  # the particle-size distribution is the default


def test_twin_refuses_unfinished_run(tmp_path):
    from tomocell.cli import main

    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "run.json").write_text(json.dumps({"stage": "simulate", "status": "running"}))
    assert main(["-q", "twin", str(sim), "--out", str(tmp_path / "twin")]) == 2
    assert not (tmp_path / "twin").exists()


def test_twin_of_an_experiment_runs_its_first_constant_current_step(tmp_path, capsys):
    """run.json records the expanded experiment; the twin runs its first CC discharge (after the rest) for
    that step's duration, not a discharge to the cut-off at the default C-rate."""
    from tomocell.cli import main

    sim, twin = tmp_path / "sim", tmp_path / "twin"
    assert main(["-q", "simulate", "box:2,2,3", "--dod", "50", "--out", str(sim), "--experiment", "Rest for 1 minute",
                 "(Discharge at 2C for 2 minutes, Rest for 1 minute) x 2"]) == 0
    par = json.loads((sim / "run.json").read_text())["parameters"]
    assert par["c_rate"] is None  # no single C-rate, not the option's default 1C
    exp = par["experiment"]
    assert [s["text"] for s in exp] == ["Rest for 1 minute"] + ["Discharge at 2C for 2 minutes", "Rest for 1 minute"] * 2
    assert [s["protocol_step"] for s in exp] == list(range(5))
    assert exp[1]["kind"] == "c_rate" and exp[1]["value"] == 2.0 and exp[1]["duration_s"] == 120.0
    capsys.readouterr()
    assert main(["twin", str(sim), "--out", str(twin)]) == 0
    assert "experiment step 1 of 5" in capsys.readouterr().out
    res = json.loads((twin / "run.json").read_text())["results"]
    assert res["protocol"]["protocol_step"] == 1 and res["c_rate"] == 2.0
    ts = list(csv.DictReader(open(twin / "timeseries.csv")))
    assert float(ts[-1]["t_s"]) == pytest.approx(120.0)  # the step's duration
    assert abs(res["capacity_diff_rel"]) < 1e-6  # same current for the same time


def test_twin_of_a_current_step_draws_the_run_s_current(tmp_path):
    """A step given as a current (density): the twin's C-rate is the current the run drew over its 1C."""
    from tomocell.cli import main

    sim, twin = tmp_path / "sim", tmp_path / "twin"
    assert main(["-q", "simulate", "box:2,2,3", "--dod", "50", "--out", str(sim), "--experiment",
                 "Discharge at 0.4 mA/cm2 for 1 minute"]) == 0
    one_c = json.loads((sim / "run.json").read_text())["results"]["one_c_current_A"]
    assert main(["-q", "twin", str(sim), "--out", str(twin)]) == 0
    res = json.loads((twin / "run.json").read_text())["results"]
    assert res["c_rate"] * one_c == pytest.approx(4.0 * 1e-10, rel=1e-9)  # 4 A/m2 on the 10 um x 10 um box
    assert abs(res["capacity_diff_rel"]) < 1e-6


@pytest.mark.parametrize("steps, names", [
    (["Discharge at 20 W/m2 for 30 seconds", "Discharge at 1C until 3 V"], "step 0 ('Discharge at 20 W/m2 for 30 seconds')"),
    (["Rest for 1 minute", "Charge at 1C until 4.2 V"], "step 1 ('Charge at 1C until 4.2 V')"),
    (["Hold at 4.2 V until C/50"], "step 0 ('Hold at 4.2 V until C/50')"),
    (["Discharge at 1C until > 3.5 V"], "step 0"),
])
def test_twin_refuses_a_step_it_cannot_express(tmp_path, capsys, steps, names):
    from tomocell.cli import main
    from tomocell.physics.parameters import load_raw
    from tomocell.physics.protocols.experiment import parse_experiment, step_record

    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "timeseries.csv").write_text("t_s,voltage_V\n")
    exp = [step_record(s, k) for k, s in enumerate(parse_experiment(steps))]
    (sim / "run.json").write_text(json.dumps({"stage": "simulate", "status": "ok", "results": {"one_c_current_A": 1e-10},
                                               "parameters": {"mesh": "box:2,2,3", "c_rate": 1.0, "experiment": exp,
                                                              "parameters": load_raw("nmc111")}}))
    assert main(["-q", "twin", str(sim), "--out", str(tmp_path / "twin")]) == 2
    assert f"cannot express experiment {names}" in capsys.readouterr().err
    assert not (tmp_path / "twin").exists()


def test_twin_refuses_an_experiment_run_without_its_steps(tmp_path, capsys):
    """A run of --experiment whose run.json has no expanded experiment (older tomocell): its c_rate entry is
    not what it ran."""
    from tomocell.cli import main
    from tomocell.physics.parameters import load_raw

    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "timeseries.csv").write_text("t_s,voltage_V\n")
    (sim / "run.json").write_text(json.dumps({
        "stage": "simulate", "status": "ok", "results": {"experiment_steps": [{"protocol_step": 0, "status": "done"}]},
        "parameters": {"mesh": "box:2,2,3", "c_rate": 1.0, "parameters": load_raw("nmc111")}}))
    assert main(["-q", "twin", str(sim), "--out", str(tmp_path / "twin")]) == 2
    assert "no expanded experiment" in capsys.readouterr().err
    assert not (tmp_path / "twin").exists()


def test_export_bpx_validates_and_reads_back(tmp_path, sim_c10):
    import bpx

    from tomocell.cli import main

    out = tmp_path / "cell.json"
    assert main(["-q", "export-bpx", str(sim_c10), "--out", str(out), "--tau", "2.0"]) == 0
    data = json.loads(out.read_text())
    import copy

    bpx.parse_bpx_obj(copy.deepcopy(data))  # raises if not valid BPX (and converts its argument in place)
    pos = data["Parameterisation"]["Positive electrode"]
    assert pos["Transport efficiency"] == pytest.approx(pos["Porosity"] / 2.0)
    assert pos["Thickness [m]"] == pytest.approx(10e-6)
    a, b = load_parameters("nmc111"), load_parameters(out)
    assert b.theta_limits() == pytest.approx(a.theta_limits(), rel=1e-12)
    for name in ("c_max", "k_ct", "c_e0", "li_i0", "li_c_exponent", "sigma_cbd", "density", "sep_bruggeman"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-12), name
    x = np.linspace(0.46, 0.99, 11)
    assert np.allclose(b.ocp(x=x), a.ocp(x=x), rtol=0, atol=1e-12)
    c = np.linspace(100.0, 2500.0, 13)
    for f in ("kappa", "D_e", "t_plus", "tdf"):  # 101-point tables of the set's functions
        assert np.allclose(getattr(b, f)(c=c, T=a.temperature), getattr(a, f)(c=c, T=a.temperature), rtol=5e-3), f
    # --bruggeman fit: the same transport, and the exponent recorded
    fit = tmp_path / "fit.json"
    assert main(["-q", "export-bpx", str(sim_c10), "--out", str(fit), "--tau", "2.0", "--bruggeman", "fit"]) == 0
    pf = json.loads(fit.read_text())["Parameterisation"]
    b = pf["User-defined"]["tomocell fitted Bruggeman exponent"]
    assert pf["Positive electrode"]["Transport efficiency"] == pytest.approx(pos["Transport efficiency"], rel=1e-12)
    assert pos["Porosity"] ** b == pytest.approx(pos["Porosity"] / 2.0, rel=1e-12)
    # nothing written on bad input
    assert main(["-q", "export-bpx", str(sim_c10), "--out", str(tmp_path / "cell.txt")]) == 2
    assert not (tmp_path / "cell.txt").exists()


@pytest.mark.slow
def test_bpx_round_trip_same_discharge(tmp_path, sim_c10):
    """simulate --params cell.json (the export of the run) gives the run's discharge again."""
    from tomocell.cli import main

    out = tmp_path / "cell.json"
    assert main(["-q", "export-bpx", str(sim_c10), "--out", str(out)]) == 0
    again = tmp_path / "again"
    assert main(["-q", "simulate", "box:6,6,8", "--c-rate", "0.1", "--dod", "50", "--params", str(out),
                 "--out", str(again)]) == 0
    r0 = json.loads((sim_c10 / "run.json").read_text())["results"]
    r1 = json.loads((again / "run.json").read_text())["results"]
    assert r1["capacity_mAh_g"] == pytest.approx(r0["capacity_mAh_g"], rel=2e-3)
    assert r1["mean_voltage_V"] == pytest.approx(r0["mean_voltage_V"], abs=2e-3)


def test_python_api(tmp_path, sim_c10):
    import tomocell as tc

    res = tc.twin(sim_c10, out=tmp_path / "twin", bruggeman=1.5)
    assert abs(res["capacity_diff_rel"]) < 0.02 and res["voltage_rmse_mV"] < 15.0
    assert res["geometry"].thickness_m == pytest.approx(10e-6)
    path = tc.export_bpx(sim_c10, out=tmp_path / "cell.json")
    assert json.loads(path.read_text())["Header"]["Model"] == "Partial"
    with pytest.raises(InputError, match="tortuosity"):
        tc.twin(sim_c10, out=tmp_path / "bad", tau=0.5)
    assert not (tmp_path / "bad").exists()


def test_psd_is_normalised_and_area_weighted(box):
    g = mesh_geometry(box, load_parameters("nmc111").sep_porosity)
    f_a, lo, hi = g.psd()
    R = np.linspace(lo, hi, 4001)
    vals = np.array([ev(f_a(S(r))) for r in R])
    assert np.trapezoid(vals, R) == pytest.approx(1.0, rel=1e-3)
    r = np.asarray(g.particle_radii_m)
    # the area-weighted mean radius of the kernels is the Sauter radius of the particles
    assert np.trapezoid(vals * R, R) == pytest.approx(float(np.sum(r**3) / np.sum(r**2)), rel=0.03)
    assert g.sauter_radius_m == pytest.approx(float(np.sum(r**3) / np.sum(r**2)))


def test_twin_refuses_run_whose_mesh_is_gone(tmp_path, capsys):
    from tomocell.cli import main
    from tomocell.physics.parameters import load_raw

    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "timeseries.csv").write_text("t_s,voltage_V\n")
    (sim / "run.json").write_text(json.dumps({"stage": "simulate", "status": "ok", "cwd": str(tmp_path),
                                               "parameters": {"mesh": "gone/mesh.xdmf", "c_rate": 1.0,
                                                              "parameters": load_raw("nmc111")}}))
    assert main(["-q", "twin", str(sim), "--out", str(tmp_path / "twin")]) == 2
    assert "is gone" in capsys.readouterr().err
    assert main(["-q", "export-bpx", str(sim), "--out", str(tmp_path / "cell.json")]) == 2
    assert not (tmp_path / "twin").exists() and not (tmp_path / "cell.json").exists()


def test_missing_extra_is_named(monkeypatch):
    import sys

    from tomocell.physics.twin import require_pybamm

    monkeypatch.setitem(sys.modules, "pybamm", None)  # import pybamm now raises ImportError
    with pytest.raises(InputError, match=r"tomocell\[dfn\]"):
        require_pybamm()


def test_export_bpx_with_li_metal_negative_loads_in_pybamm(tmp_path, sim_c10):
    """--li-metal-negative: a full-cell (DFN) BPX file that pybamm.ParameterValues.create_from_bpx loads,
    with the positive electrode as exported and a zero-OCP, never-limiting negative for the Li metal."""
    import pybamm

    from tomocell.cli import main
    from tomocell.physics.parameters import FARADAY

    out = tmp_path / "full.json"
    assert main(["-q", "export-bpx", str(sim_c10), "--out", str(out), "--li-metal-negative"]) == 0
    data = json.loads(out.read_text())
    assert data["Header"]["Model"] == "DFN"
    pv = pybamm.ParameterValues.create_from_bpx(str(out))
    pos = data["Parameterisation"]["Positive electrode"]
    assert pv["Positive electrode thickness [m]"] == pytest.approx(pos["Thickness [m]"])
    assert pv["Negative electrode thickness [m]"] == pytest.approx(1e-6)
    assert float(pv["Negative electrode OCP [V]"]) == 0.0
    neg = data["Parameterisation"]["Negative electrode"]
    cell = data["Parameterisation"]["Cell"]
    q_neg = FARADAY * neg["Maximum concentration [mol.m-3]"] * 0.5 * neg["Thickness [m]"] * 0.2 * cell["Electrode area [m2]"]
    assert q_neg / 3600.0 == pytest.approx(20 * cell["Nominal cell capacity [A.h]"], rel=1e-9)
    a = load_parameters("nmc111")
    assert neg["Reaction rate constant [mol.m-2.s-1]"] * FARADAY / 2 == pytest.approx(a.li_i0, rel=1e-12)
    # PyBaMM's own DFN on the loaded file delivers the resolved run's C/10 capacity
    sim = pybamm.Simulation(pybamm.lithium_ion.DFN(), parameter_values=pv,
                            experiment=pybamm.Experiment([f"Discharge at C/10 until {a.voltage_min} V"]))
    q = float(sim.solve()["Discharge capacity [A.h]"].entries[-1])
    ref = json.loads((sim_c10 / "run.json").read_text())["results"]["capacity_Ah"]
    assert q == pytest.approx(ref, rel=0.02)
