"""The mesh's own transport (P1 FE on its tets) against `characterise` on the voxels, and the
warning / refusal when meshing changes the electrode beyond the fidelity bounds."""

from __future__ import annotations

import numpy as np
import pytest

import tomocell.fem  # noqa: F401
from tomocell.errors import NotPercolatingError
from tomocell.meshing.pipeline import GeometryChangedError, mesh_volume
from tomocell.meshing.transport import geometry_changes, mesh_tortuosity, transport_comparison, voxel_tortuosity
from tomocell.meshing.voxel import voxel_mesh
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


def test_open_box_has_tau_one():
    vol = Volume(np.full((6, 5, 4), PORE, np.uint8), 0.5)
    r = mesh_tortuosity(voxel_mesh(vol, separator_um=1.0))
    assert r["eps"] == pytest.approx(1.0)
    assert r["D_eff_over_D0"] == pytest.approx(1.0, rel=1e-9)
    assert r["tau"] == pytest.approx(1.0, rel=1e-9)
    assert r["flux_balance"] < 1e-9


def test_straight_channel_matches_voxels_and_dead_end_counts_in_eps():
    lab = np.full((10, 8, 8), ACTIVE, np.uint8)
    lab[:, 2:5, 2:5] = PORE  # straight channel: 9 / 64 of the cross-section
    lab[3:6, 6, 6] = PORE  # isolated pocket: in eps, carries no flux
    vol = Volume(lab, 0.5)
    t = transport_comparison(voxel_mesh(vol, separator_um=2.0), vol)["pore"]
    assert t["mesh"]["D_eff_over_D0"] == pytest.approx(9 / 64, rel=1e-9)
    assert t["voxels"]["D_eff_over_D0"] == pytest.approx(9 / 64, rel=1e-6)
    assert t["mesh"]["eps"] == pytest.approx((9 * 10 + 3) / 640)
    assert t["mesh"]["tau"] == pytest.approx(t["voxels"]["tau"], rel=1e-6)
    assert abs(t["D_eff_rel_change"]) < 1e-6


def test_edge_only_contacts_carry_flux_on_the_mesh_and_are_reported():
    # a pore staircase whose steps touch only along voxel edges: `characterise` (6-connected) sees no
    # path, the P1 mesh does; the report must say so and 'refuse' must stop it
    lab = np.full((8, 6, 6), ACTIVE, np.uint8)
    for i in range(8):
        lab[i, 2 + i % 2, 2] = PORE
    vol = Volume(lab, 0.5)
    m = voxel_mesh(vol, separator_um=1.0)
    assert mesh_tortuosity(m)["D_eff_over_D0"] > 0
    res = mesh_volume(vol, route="voxel", separator_um=1.0)
    t = res.report["transport"]["pore"]
    assert t["voxels"] is None and t["mesh"] is not None
    assert any("percolation differs" in c for c in res.report["warnings"])
    with pytest.raises(GeometryChangedError, match="beyond the fidelity bounds"):
        mesh_volume(vol, route="voxel", separator_um=1.0, geometry_check="refuse")


def test_blocked_phase_raises():
    lab = np.full((6, 4, 4), PORE, np.uint8)
    lab[3] = ACTIVE  # a solid wall across the thickness
    with pytest.raises(NotPercolatingError):
        mesh_tortuosity(voxel_mesh(Volume(lab, 0.5), separator_um=1.0))


def test_coarsening_that_loses_cbd_is_flagged():
    rng = np.random.default_rng(0)
    lab = np.full((12, 12, 12), PORE, np.uint8)
    lab[:, :, 6:] = ACTIVE
    lab[rng.random(lab.shape) < 0.1] = CBD  # scattered one-voxel CBD: majority blocks erase it
    res = mesh_volume(Volume(lab, 0.5), route="voxel", coarsen=2, coarsen_method="mode", separator_um=1.0)
    changes = geometry_changes(res.report)
    assert any(c.startswith("cbd fraction") for c in changes)
    assert res.report["warnings"] == changes
    off = mesh_volume(Volume(lab, 0.5), route="voxel", coarsen=2, coarsen_method="mode", separator_um=1.0,
                      geometry_check="off")
    assert "transport" not in off.report
    # the default (fraction-preserving) coarsening keeps every phase fraction within its bound
    kept = mesh_volume(Volume(lab, 0.5), route="voxel", coarsen=2, separator_um=1.0)
    assert kept.report["coarsening"] == {"factor": 2, "method": "fraction"}
    assert not any("fraction" in c for c in kept.report["warnings"])


def _coarsened_electrode() -> Volume:
    """Particles with one-voxel CBD: 2-voxel majority blocks erase most of the CBD and move the pore."""
    rng = np.random.default_rng(3)
    z, y, x = np.mgrid[:16, :12, :12]
    lab = np.full((16, 12, 12), PORE, np.uint8)
    for c in rng.uniform((2, 2, 2), (14, 10, 10), size=(6, 3)):
        lab[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < 3.2**2] = ACTIVE
    lab[(lab == PORE) & (rng.random(lab.shape) < 0.15)] = CBD
    return Volume(lab, 0.5)


def test_simulated_vs_characterised_lists_fractions_areas_and_tau():
    vol = _coarsened_electrode()
    rep = mesh_volume(vol, route="voxel", coarsen=2, coarsen_method="mode", separator_um=1.0).report
    cmp = rep["simulated_vs_characterised"]
    fr = vol.fractions()
    for name in ("pore", "active", "cbd"):
        f = cmp["phase_fractions"][name]
        assert f["voxels"] == pytest.approx(fr[name], rel=1e-9)
        assert f["rel_change"] == pytest.approx(f["mesh"] / f["voxels"] - 1.0)
    assert cmp["phase_fractions"]["cbd"]["rel_change"] < -0.1  # the blocks erased CBD
    for name, a in cmp["interface_areas"].items():
        assert a["mesh_um2"] == rep["interface_areas"][name]["mesh_um2"]
    t = cmp["transport"]["pore"]
    m, vx = rep["transport"]["pore"]["mesh"], rep["transport"]["pore"]["voxels"]
    assert t["mesh_tau"] == m["tau"] and t["voxels_tau"] == vx["tau"]
    assert t["tau_rel_change"] == pytest.approx(m["tau"] / vx["tau"] - 1.0)
    # every quantity beyond its bound is a warning, and nothing within its bound is
    w = rep["warnings"]
    assert any(s.startswith("cbd fraction") for s in w)
    assert any(s.startswith("pore tau") for s in w) == (abs(t["tau_rel_change"]) > t["bound"])
    for name, a in cmp["interface_areas"].items():
        assert any(s.startswith(f"{name} area") for s in w) == (a["checked"] and abs(a["rel_change"]) > 0.05)


def test_stair_stepped_areas_are_a_warning():
    # one ball meshed by the exact voxel route: volumes exact, but the stair-stepped surface is far
    # larger than the marching-cubes reference, and that area drives Butler-Volmer
    z, y, x = np.mgrid[:14, :14, :14] + 0.5
    lab = np.where((z - 7.1) ** 2 + (y - 6.9) ** 2 + (x - 7.0) ** 2 < 5.0**2, ACTIVE, PORE).astype(np.uint8)
    rep = mesh_volume(Volume(lab, 0.5), route="voxel", separator_um=1.0).report
    assert all(abs(v["rel_error"]) < 1e-9 for v in rep["phase_volumes"].values())
    a = rep["simulated_vs_characterised"]["interface_areas"]["active|pore"]
    assert a["rel_change"] > 0.3
    assert any(s.startswith("active|pore area") for s in rep["warnings"])
    assert not any("fraction" in s for s in rep["warnings"])


def test_cli_warns_on_stderr_and_strict_fidelity_refuses_leaving_nothing(tmp_path, capsys):
    from tomocell.cli import main
    from tomocell.microstructure.io import write_volume

    vol = _coarsened_electrode()
    src = tmp_path / "v.npy"
    write_volume(vol, src)
    out = tmp_path / "m"
    args = ["mesh", str(src), "--voxel-size", "0.5", "--route", "voxel", "--coarsen", "2", "--separator", "1",
            "--coarsen-method", "mode", "--particles", "none", "--no-msh"]
    assert main([*args, "--out", str(out)]) == 0
    import json

    rep = json.loads((out / "fidelity.json").read_text())
    err = capsys.readouterr().err
    assert rep["warnings"] and "beyond the fidelity bounds" in err
    assert all(w in err for w in rep["warnings"])
    assert json.loads((out / "run.json").read_text())["results"]["warnings"] == rep["warnings"]
    strict = tmp_path / "strict"
    assert main([*args, "--strict-fidelity", "--out", str(strict)]) == 2
    assert "cbd fraction" in capsys.readouterr().err
    assert not strict.exists()
    assert main([*args, "--strict-fidelity", "--geometry-check", "off", "--out", str(strict)]) == 2
    assert not strict.exists()


def test_conformal_mesh_tau_agrees_with_characterise_on_a_straight_channel():
    # a straight round pore channel in a CBD sleeve: D_eff/D0 = porosity, tau = 1 for any cross-section,
    # so the conformal (level-set) mesh and `characterise` must agree although their walls differ
    pytest.importorskip("mmgpy", reason="optional LGPL mesher, not installed by tomocell (pip install mmgpy)")
    _, y, x = np.mgrid[:10, :12, :12] + 0.5
    r2 = (y - 6.2) ** 2 + (x - 5.9) ** 2
    lab = np.where(r2 < 3.1**2, PORE, np.where(r2 < 4.2**2, CBD, ACTIVE)).astype(np.uint8)
    rep = mesh_volume(Volume(lab, 0.5), route="levelset", separator_um=1.0, fallback=False,
                      area_tol=None, min_sicn=0.0).report
    assert rep["route"] == "levelset"
    t = rep["simulated_vs_characterised"]["transport"]["pore"]
    assert t["voxels_tau"] == pytest.approx(1.0, rel=1e-6)
    assert t["mesh_tau"] == pytest.approx(1.0, rel=2e-3)
    assert t["mesh_D_eff_over_D0"] == pytest.approx(rep["transport"]["pore"]["mesh"]["eps"], rel=2e-3)
    assert not any("tau" in w or "fraction" in w for w in rep["warnings"])


def test_mesh_and_characterise_tau_bracket_the_same_limit_under_refinement():
    # A face-connected zig-zag pore channel (no edge-only contacts, so both solvers see one network):
    # finite volumes with one cell per voxel (`characterise`, as TauFactor) put the flux through the
    # voxel faces and overestimate tau; P1 on the voxel's Kuhn tets (what the physics solves) lets it
    # cut the channel's corners and underestimates it. Refining the same geometry (each voxel split
    # into f^3) moves both towards one limit: the gap between them is discretisation, not geometry.
    lab = np.full((12, 8, 8), ACTIVE, np.uint8)
    for i in range(12):
        s = (0, 1, 2, 3, 2, 1)[(i // 2) % 6]
        lab[i, 2:4, s:s + 3] = PORE
    fv, fe = [], []
    for f in (1, 2, 3):
        up = np.repeat(np.repeat(np.repeat(lab, f, 0), f, 1), f, 2)
        vol = Volume(up, 0.5 / f)
        fv.append(voxel_tortuosity(vol, "pore")["tau"])
        fe.append(mesh_tortuosity(voxel_mesh(vol, separator_um=0.0), "pore")["tau"])
    assert fe[0] < fe[1] < fe[2] < fv[2] < fv[1] < fv[0]  # measured: 1.218 1.276 1.295 | 1.355 1.378 1.468
    gaps = [a - b for a, b in zip(fv, fe)]
    assert gaps[1] < 0.5 * gaps[0] and gaps[2] < 0.7 * gaps[1]  # 0.250 -> 0.102 -> 0.060
