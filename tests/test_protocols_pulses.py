"""GITT recovers the input solid diffusivity on a geometry where Weppner-Huggins holds (a planar active slab
on the collector, pulse short against its diffusion time); HPPC pulse resistance."""

from __future__ import annotations

import pytest

import tomocell.fem  # noqa: F401

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

from mpi4py import MPI  # noqa: E402

from tomocell.errors import InputError  # noqa: E402
from tomocell.physics.discharge import make_model  # noqa: E402
from tomocell.physics.parameters import load_parameters  # noqa: E402
from tomocell.physics.protocols import parse_experiment  # noqa: E402
from tomocell.physics.protocols.pulses import analyse_gitt, analyse_hppc, gitt_experiment, hppc_experiment  # noqa: E402
from tomocell.physics.protocols.run import run_experiment  # noqa: E402
from tomocell.physics.synthetic import box_cell  # noqa: E402


def _slab_model(d: float, slab_um: float = 6.0):
    # a "sphere" of radius 1e5 um centred far below the collector: its staircase is the planar slab
    # 0 <= z <= slab_um (60 layers over the 10 um electrode); 1D diffusion, V/S = slab thickness
    inp = box_cell(MPI.COMM_WORLD, n=(1, 1, 60), particles=[((5.0, 5.0, -1e5), 1e5 + slab_um)])
    return make_model(inp, load_parameters(None, {"active.diffusivity": d}))


@pytest.mark.parametrize("d", [5e-14, 2e-14])
def test_gitt_recovers_the_input_diffusivity(d):
    m = _slab_model(d)
    vs = m.vol["active"] / m.area_iface * m.ell
    assert vs == pytest.approx(6e-6, rel=1e-9)
    tau = 0.03 * vs**2 / d  # short against the diffusion time: the sqrt(t) regime
    res = run_experiment(m, parse_experiment(gitt_experiment(0.2, tau, 3 * vs**2 / d, 2)), initial_theta=0.6)
    table = analyse_gitt(res.rows, vs)
    assert [g["pulse_step"] for g in table] == [0, 2]
    for g in table:
        assert g["tau_s"] == pytest.approx(tau)
        assert g["dE_s_V"] < 0 and g["slope_V_per_sqrt_s"] < 0
        assert g["D_m2_s"] == pytest.approx(d, rel=0.04)


def test_hppc_pulse_resistance():
    m = make_model(box_cell(MPI.COMM_WORLD, n=(2, 2, 3)), load_parameters(None))
    res = run_experiment(m, parse_experiment(hppc_experiment(levels=1, relax_s=60.0)), initial_theta=0.6)
    table = analyse_hppc(res.rows)
    assert [t["direction"] for t in table] == ["discharge", "charge"]
    for t in table:
        assert 0 < t["R_first_step_ohm"] < t["R_10s_ohm"]  # polarisation grows during the pulse
        # same current both ways: the resistances agree to the asymmetry of the kinetics
        assert t["R_10s_ohm"] == pytest.approx(table[0]["R_10s_ohm"], rel=0.3)
    with pytest.raises(InputError):
        gitt_experiment(0.0)


@pytest.mark.parametrize("preset", ["hppc", "gitt"])
def test_cli_presets_write_their_table_and_figure(tmp_path, preset):
    import csv

    from tomocell.cli import main

    out = tmp_path / preset
    assert main(["simulate", "box:2,2,3", "--out", str(out), "--experiment-preset", preset, "--dod", "50"]) == 0
    with open(out / f"{preset}.csv") as f:
        table = list(csv.DictReader(f))
    assert (out / f"{preset}.png").stat().st_size > 10_000 and (out / "fields" / "dod050").is_dir()
    soc = [float(r["soc"]) for r in table]
    if preset == "hppc":
        assert len(table) == 10 and [r["direction"] for r in table[:2]] == ["discharge", "charge"]
        assert all(float(r["R_10s_ohm_cm2"]) > 0 for r in table) and soc[0] > 0.99 and soc[-2] == pytest.approx(0.6, abs=1e-6)
    else:
        assert len(table) == 18 and all(0 < float(r["D_app_m2_s"]) < 1e-12 for r in table)
        assert soc == pytest.approx([1 - 0.05 * (i + 1) for i in range(18)], abs=0.01)
    assert main(["simulate", "box:2,2,3", "--out", str(tmp_path / "x"), "--experiment-preset", preset,
                 "--experiment", "Rest for 1 s"]) == 2
