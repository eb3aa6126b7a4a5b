"""The mesh's own transport (P1 FE on its tets) against `characterise` on the voxels, and the
warning / refusal when meshing changes the electrode beyond the fidelity bounds."""

from __future__ import annotations

import numpy as np
import pytest

import tomocell.fem  # noqa: F401
from tomocell.errors import NotPercolatingError
from tomocell.meshing.fidelity import FidelityError
from tomocell.meshing.pipeline import mesh_volume
from tomocell.meshing.transport import geometry_changes, mesh_tortuosity, transport_comparison
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
    assert any("percolation differs" in c for c in res.report["geometry_changes"])
    with pytest.raises(FidelityError, match="beyond the fidelity bounds"):
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
    res = mesh_volume(Volume(lab, 0.5), route="voxel", coarsen=2, separator_um=1.0)
    changes = geometry_changes(res.report)
    assert any(c.startswith("cbd volume") for c in changes)
    assert res.report["geometry_changes"] == changes
    off = mesh_volume(Volume(lab, 0.5), route="voxel", coarsen=2, separator_um=1.0, geometry_check="off")
    assert "transport" not in off.report
