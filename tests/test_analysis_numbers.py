"""The numbers behind the discharge analysis, on constructed run directories with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_runfactory import C_MAX, D_S, L, interface_table, make_run

from tomocell.errors import InputError
from tomocell.studies import analysis_compute as ac
from tomocell.studies.analysis_run import load_run, read_xdmf_fields


def test_discharge_table_is_the_trapezoid_of_a_made_up_curve(tmp_path):
    v = np.array([4.2, 4.0, 3.9, 3.8, 3.5, 3.0])
    q = np.array([0.0, 20.0, 50.0, 90.0, 120.0, 130.0])  # mAh/g
    run = load_run(make_run(tmp_path / "r", 2.0, voltage=v, capacity_mAh_g=q))
    s = ac.discharge_summary(run)
    # by hand: sum of (V_i + V_i+1)/2 * dQ
    e = 20 * 4.1 + 30 * 3.95 + 40 * 3.85 + 30 * 3.65 + 10 * 3.25  # mWh/g = Wh/kg
    assert e == pytest.approx(496.5)
    assert s["capacity_mAh_g"] == pytest.approx(130.0)
    assert s["specific_energy_Wh_kg"] == pytest.approx(e)
    assert s["mean_voltage_V"] == pytest.approx(e / 130.0)
    assert s["energy_Wh"] == pytest.approx(e * 2e-9 / 1e3)  # mass 2e-9 g in the factory
    assert s["capacity_mAh_cm2"] == pytest.approx(130.0 * 2e-9 / 1e-6)
    assert s["cut_off_V"] == 3.0 and s["final_voltage_V"] == 3.0


def test_uniform_sol_gives_one_peak_and_two_groups_two(tmp_path):
    run = load_run(make_run(tmp_path / "u", 1.0, particle_sol={"sol_dod050": np.full(30, 0.62)},
                            volumes_um3=np.linspace(10, 100, 30)))
    ps = ac.particle_sol(run, 0.5)
    assert len(ps.peaks) == 1 and ps.peaks[0].position == pytest.approx(0.62)
    assert np.all(ps.peak_of == 0)
    sp = ac.sol_spread(ps)
    assert sp["std"] == pytest.approx(0.0, abs=1e-12) and sp["n_peaks"] == 1
    # radius from the volume
    assert ps.radius_um[0] == pytest.approx((3 * 10 / (4 * math.pi)) ** (1 / 3))
    # two populations: 20 particles at 0.55 +- small, 10 at 0.80: two peaks, the right members
    rng = np.random.default_rng(3)
    sol = np.r_[0.55 + 0.005 * rng.standard_normal(20), 0.80 + 0.005 * rng.standard_normal(10)]
    run2 = load_run(make_run(tmp_path / "t", 5.0, particle_sol={"sol_dod050": sol}, volumes_um3=np.full(30, 20.0)))
    ps2 = ac.particle_sol(run2, 0.5)
    assert [round(p.position, 2) for p in ps2.peaks] == pytest.approx([0.55, 0.80], abs=0.01)
    assert np.all(ps2.peak_of[:20] == 0) and np.all(ps2.peak_of[20:] == 1)
    assert ps2.peaks[0].weight_fraction == pytest.approx(2 / 3)
    assert ac.sol_spread(ps2)["std"] > 0.1
    # a bandwidth wider than the gap merges the two groups into one peak
    assert len(ac.particle_sol(run2, 0.5, bandwidth=0.2).peaks) == 1


def test_planted_exponential_correlation_says_eta_governs(tmp_path):
    run = load_run(make_run(tmp_path / "r", 5.0))
    ct = ac.charge_transfer(run, 0.5)
    assert ct.j_vs_eta.spearman == pytest.approx(1.0)
    assert abs(ct.j_vs_i0.spearman) < 0.2
    assert ct.governs_j == "eta_act"
    assert ct.decomposition.governing == "phi_e"
    assert ct.decomposition.sd_phi_e == pytest.approx(0.08, rel=0.15)
    assert ct.decomposition.sd_U == pytest.approx(0.025, rel=0.15)
    assert "activation overpotential" in ct.conclusion and "electrolyte potential" in ct.conclusion
    # the reverse plant: J ~ i0, eta constant -> i0 governs
    tab = interface_table()
    tab["J_ct_A_m2"] = -3.0 * tab["i0_A_m2"]
    tab["eta_V"] = np.full_like(tab["eta_V"], -0.05) + 1e-4 * np.random.default_rng(5).standard_normal(tab["eta_V"].size)
    run2 = load_run(make_run(tmp_path / "s", 5.0, iface=tab))
    assert ac.charge_transfer(run2, 0.5).governs_j == "i0"


def test_linear_profiles_are_recovered(tmp_path):
    run = load_run(make_run(tmp_path / "r", 1.0, n=(2, 2, 20)))
    edges = ac.common_depth_edges([run], 0.5, n_bins=10)
    assert edges[-1] == pytest.approx(L) and edges[0] < 0  # separator bins included
    prof = ac.depth_profiles(run, 0.5, edges)
    d = prof["depth_um"]
    ok = np.isfinite(prof["c_e_mol_m3"])
    # c_e = 1000 - 10 depth, SoL = 0.5 + 0.01 depth (constructed); slice means of linear fields = value at the centre
    np.testing.assert_allclose(prof["c_e_mol_m3"][ok], 1000 - 10 * d[ok], rtol=0, atol=0.2)
    inside = d > 0
    np.testing.assert_allclose(prof["sol"][inside], 0.5 + 0.01 * d[inside], atol=2e-3)
    assert np.all(np.isnan(prof["sol"][~inside]))  # no particles in the separator


def test_core_vs_surface_and_biot_by_hand(tmp_path):
    run = load_run(make_run(tmp_path / "r", 2.5))
    ps = ac.particle_sol(run, 0.5)
    intra = ac.intraparticle(run, 0.5, ps)
    # the active block's only non-wall face is the separator plane: distance to surface = depth, SoL = 0.5 + 0.01 depth
    ok = np.isfinite(intra["sol_mean"])
    np.testing.assert_allclose(intra["sol_mean"][ok], 0.5 + 0.01 * intra["distance_um"][ok], atol=0.01)
    assert intra["core_sol"] > intra["surface_node_sol"] == pytest.approx(0.5)
    np.testing.assert_allclose(intra["surface_minus_mean"], 0.0, atol=1e-12)  # interface sol 0.6 = particle mean 0.6
    b = ac.biot(run, 0.5, ps)
    tab = interface_table(n_particles=4)
    sel = tab["particle"] == 2
    j = np.sum(tab["J_ct_A_m2"][sel] * tab["area_um2"][sel]) / np.sum(tab["area_um2"][sel])
    R = (3 * (4 / 3 * np.pi * 8.0) / (4 * np.pi)) ** (1 / 3) * 1e-6
    assert R == pytest.approx(2e-6)
    assert b["biot"][1] == pytest.approx(abs(j) / 96485.33212 * R / (D_S * C_MAX), rel=1e-9)


def test_xdmf_reader_node_and_cell_data(tmp_path):
    make_run(tmp_path / "r", 1.0)
    fd = read_xdmf_fields(tmp_path / "r" / "fields" / "dod050" / "electrolyte.xdmf")
    assert set(fd.point_data) == {"c_e", "phi_e"} and set(fd.cell_data) == {"N_mag"}
    assert fd.cell_volumes_um3().sum() == pytest.approx(8 * 8 * 26)


def test_bad_inputs_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="missing run.json"):
        load_run(tmp_path / "empty")
    run = load_run(make_run(tmp_path / "r", 1.0))
    with pytest.raises(InputError, match="no snapshot at 70 % DoD"):
        run.snapshot(0.7)
    (tmp_path / "r" / "fields" / "dod050" / "active.xdmf").unlink()
    with pytest.raises(InputError, match="no active fields"):
        ac.intraparticle(run, 0.5, ac.particle_sol(run, 0.5))


def test_inert_particles_are_left_out(tmp_path):
    d = make_run(tmp_path / "r", 1.0, particle_sol={"sol_dod050": np.array([0.6, np.nan, 0.6, 0.6])})
    text = (d / "particles.csv").read_text().splitlines()
    # the physics' layout: a 'connected' column, inert particles all NaN
    rows = [line.split(",") for line in text]
    rows[0].insert(1, "connected")
    for i, r in enumerate(rows[1:], start=1):
        r.insert(1, "0" if i == 2 else "1")
        if i == 2:
            r[2:] = ["nan"] * (len(r) - 2)
    (d / "particles.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    ps = ac.particle_sol(load_run(d), 0.5)
    assert ps.n_inert == 1 and list(ps.particle) == [1, 3, 4]
    assert ac.sol_spread(ps)["std"] == pytest.approx(0.0, abs=1e-12)


def test_i0_correlated_as_a_consequence_does_not_fool_the_conclusion(tmp_path):
    """As in real runs: where J_ct is high the surface lithiates, so i0 drops a little - J_ct correlates
    with i0 nearly perfectly, yet its spread comes from eta_act (Butler-Volmer, Vt = 25.7 mV)."""
    tab = interface_table()
    eta = np.linspace(-0.12, -0.02, tab["eta_V"].size)
    f = 2 * np.sinh(0.5 * eta / 0.0257)
    i0 = 1.7 - 0.01 * np.abs(f)  # 1.5 .. 1.7 A/m2
    tab.update(eta_V=eta, i0_A_m2=i0, J_ct_A_m2=i0 * f)
    ct = ac.charge_transfer(load_run(make_run(tmp_path / "r", 5.0, iface=tab)), 0.5)
    assert abs(ct.j_vs_i0.spearman) == pytest.approx(1.0)
    assert ct.governs_j == "eta_act"
    assert ct.sd_ln_j_over_i0 > 10 * ct.sd_ln_i0
