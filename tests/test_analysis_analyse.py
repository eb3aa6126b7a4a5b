"""analyse_runs / tomocell analyse end to end on constructed runs, and on a tiny real simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from analysis_runfactory import LX, LY, L, interface_table, make_run

from tomocell.errors import InputError
from tomocell.studies import analysis_compute as ac
from tomocell.studies.analyse import analyse_runs
from tomocell.studies.analysis_run import load_run
from tomocell.studies.runner import read_table

RATES = (1.25, 2.5, 5.0)


def _runs(tmp_path, **kw):
    out = []
    for k, r in enumerate(RATES):
        rng = np.random.default_rng(k)
        sol = 0.6 + (0.01 + 0.05 * k) * rng.standard_normal(40)  # spread grows with rate
        out.append(make_run(tmp_path / f"{r:g}C", r, particle_sol={"sol_dod025": sol - 0.1, "sol_dod050": sol},
                            volumes_um3=rng.uniform(5, 200, 40), dods=(0.25, 0.5), **kw))
    return out


def _characterisation(path, vs=0.5):
    """travel distance = 2 x depth in the pore; one solid slab of voxels (NaN) at x < 1 um."""
    import pyvista as pv

    shape = (int(L / vs), int(LY / vs), int(LX / vs))
    depth = (np.arange(shape[0]) + 0.5) * vs
    T = np.broadcast_to(2 * depth[:, None, None], shape).astype(np.float32).copy()
    T[:, :, : int(1 / vs)] = np.nan
    grid = pv.ImageData(dimensions=tuple(n + 1 for n in shape), spacing=(vs, vs, vs))
    grid.cell_data["travel_distance_um"] = np.ravel(T, order="F")
    path.mkdir()
    grid.save(str(path / "fields.vti"))
    d = np.linspace(0.2, L, 300)
    np.savez(path / "reaction_sites.npz", depth_um=d, travel_um=2 * d, tau_electrode=np.full(d.size, 2.0),
             tau_pore=np.full(d.size, 1.5))
    return path


def test_analyse_three_rates_with_characterisation(tmp_path):
    tab = interface_table(n=300)
    tab["phi_e_V"] = -0.004 * (L - tab["z_um"])  # phi_e falls with travel distance (= 2 x depth here)
    tab["eta_V"] = tab["phi_s_V"] - tab["phi_e_V"] - tab["U_V"]
    runs = _runs(tmp_path, iface=tab)
    ch = _characterisation(tmp_path / "char")
    res = analyse_runs(runs, tmp_path / "out", dod=0.5, characterisation_dir=ch)
    out = tmp_path / "out"
    names = {f.path for f in res.figures}
    assert names == {"voltage_capacity.png", "fields_render.png", "particle_sol_depth.png", "sol_histograms.png",
                     "intraparticle.png", "charge_transfer.png", "transport_path.png", "profiles.png", "biot.png"}
    for n in names:
        assert (out / n).stat().st_size > 5000
    assert res.runs == ["1.25C", "2.5C", "5C"]
    assert res.spread_grows_with_rate is True
    assert all(g == "eta_act" for g in res.governs_j.values())
    tp = read_table(out / "transport.csv")
    for row in tp:
        assert float(row["pearson_travel_phi_e"]) < -0.99
        assert float(row["mapped_fraction"]) == 1.0
    md = (out / "report.md").read_text()
    assert "it grows with C-rate" in md and "![Figure 9]" in md and "governed by the activation overpotential" in md
    assert (out / "report.html").exists()
    summ = read_table(out / "discharge_summary.csv")
    assert [float(r["c_rate"]) for r in summ] == list(RATES)
    # the same fixed colour range for every column: from the min/max over all runs
    rr = {r["field"]: (float(r["min"]), float(r["max"])) for r in read_table(out / "render_ranges.csv")}
    assert rr["c_e"] == pytest.approx((1000 - 10 * L, 1000.0))  # electrode only: separator cells not drawn


def test_travel_lookup_uses_nearest_pore_voxel(tmp_path):
    run = load_run(make_run(tmp_path / "r", 1.0))
    ch = ac.load_characterisation(_characterisation(tmp_path / "char"))
    # a point inside the NaN slab (x = 0.2 um), 1 um from the pore: takes the nearest pore voxel's value
    v = ac.travel_at_points(ch, run, np.array([0.2, 5.0]), np.array([4.1, 4.1]), np.array([L - 3.1, L - 3.1]))
    np.testing.assert_allclose(v, [2 * 3.25, 2 * 3.25])
    short = ac.load_characterisation(_characterisation(tmp_path / "c2", vs=0.5))
    short.travel_um = short.travel_um[:20]
    with pytest.raises(InputError, match="not the same electrode"):
        ac.travel_at_points(short, run, np.array([1.0]), np.array([1.0]), np.array([1.0]))


def test_bad_inputs_leave_no_output(tmp_path):
    a = make_run(tmp_path / "a", 1.0)
    b = make_run(tmp_path / "b", 2.0, cells=999)  # another mesh
    with pytest.raises(InputError, match="different meshes"):
        analyse_runs([a, b], tmp_path / "out")
    with pytest.raises(InputError, match="no snapshot at 70 % DoD"):
        analyse_runs([a], tmp_path / "out", dod=0.7)
    c = make_run(tmp_path / "c", 1.0)
    with pytest.raises(InputError, match="same C-rate"):
        analyse_runs([a, c], tmp_path / "out")
    with pytest.raises(InputError, match="peak bandwidth"):
        analyse_runs([a], tmp_path / "out", peak_bandwidth=2.0)
    with pytest.raises(InputError, match="characterise"):
        analyse_runs([a], tmp_path / "out", characterisation_dir=tmp_path / "a")
    assert not (tmp_path / "out").exists()
    # without renders, different meshes are fine (curves and tables only)
    res = analyse_runs([a, b], tmp_path / "out", render=False)
    assert "fields_render.png" not in {f.path for f in res.figures}


def test_cli_analyse(tmp_path, capsys):
    from tomocell.cli import main

    runs = _runs(tmp_path)
    rc = main(["analyse", *map(str, runs), "--out", str(tmp_path / "o"), "--dod", "25", "--no-render"])
    assert rc == 0
    man = json.loads((tmp_path / "o" / "run.json").read_text())
    assert man["stage"] == "analyse" and man["status"] == "ok" and man["results"]["spread_grows_with_rate"] is True
    assert "report.md" in capsys.readouterr().out
    assert main(["analyse", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")]) == 2


def test_real_tiny_simulation_end_to_end(tmp_path):
    """A real (coarse) half-cell discharge through `simulate_file`, then the whole analysis."""
    from tomocell.physics.cli import simulate_file

    run_dir = tmp_path / "5C"
    simulate_file("box:4,4,6", 5.0, run_dir, dod_snapshots=(0.5,), max_ddod=0.1)
    run = load_run(run_dir)
    assert run.thickness_um == pytest.approx(10.0) and run.thickness_source == "built-in box cell default"
    res = analyse_runs([run_dir], tmp_path / "out")
    s = res.summary[0]
    # the analysis' trapezoid energy agrees with the physics' own step sum to the step error
    assert s["capacity_mAh_g"] == pytest.approx(run.results["capacity_mAh_g"], rel=1e-9)
    assert s["energy_Wh"] == pytest.approx(run.results["energy_Wh"], rel=0.03)
    prof = read_table(tmp_path / "out" / "profiles.csv")
    ce = np.array([float(r["c_e_mol_m3"]) for r in prof])
    assert np.nanmin(ce) > 0
    # discharge: the particles lithiate, so the interface current is cathodic everywhere
    assert np.all(run.snapshot(0.5).interface()["J_ct_A_m2"] < 0)
    assert (tmp_path / "out" / "fields_render.png").stat().st_size > 5000


def test_mesh_file_gives_thickness_and_peak_particle_render(tmp_path):
    from tomocell.studies.analysis_render import particle_cells

    d = make_run(tmp_path / "r", 5.0, particle_sol={"sol_dod050": np.array([0.5, 0.5, 0.9, 0.9])}, mesh_file=True)
    run = load_run(d)
    assert run.thickness_um == pytest.approx(L) and run.thickness_source.startswith("separator cells")
    pts, tets, lab = particle_cells(run)
    cz = pts[tets].mean(axis=1)
    assert np.all(cz[:, 2] < L)
    np.testing.assert_array_equal(lab, 1 + np.minimum((cz[:, 0] / LX * 4).astype(int), 3))
    res = analyse_runs([d], tmp_path / "out")
    assert "peak_particles.png" in {f.path for f in res.figures}
    peaks = read_table(tmp_path / "out" / "sol_peaks.csv")
    assert [r["particles"] for r in peaks] == ["1 2", "3 4"]
