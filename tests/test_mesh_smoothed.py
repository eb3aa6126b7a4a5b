"""Smoothed voxel route (meshing/smoothed.py): conformal, valid, volume-exact, smooth areas."""

import numpy as np
import pytest

from tomocell.meshing import tags
from tomocell.meshing.fidelity import fidelity_report
from tomocell.meshing.phantoms import sphere_pack_volume
from tomocell.meshing.smoothed import _signed_volumes, smoothed_mesh
from tomocell.microstructure.volume import ACTIVE, PORE, Volume


def _sphere(r: float) -> Volume:
    n = int(2 * r + 6)
    z, y, x = np.mgrid[:n, :n, :n] + 0.5
    c = n / 2 + 0.17
    rho = np.sqrt((x - c - 0.11) ** 2 + (y - c + 0.07) ** 2 + (z - c) ** 2)
    return Volume(np.where(rho < r, ACTIVE, PORE).astype(np.uint8), 1.0)


@pytest.mark.parametrize("iterations", [20, 0])
def test_sphere_area_within_6_percent_only_when_smoothed(iterations):
    r = 8.0
    vol = _sphere(r)
    m = smoothed_mesh(vol, separator_um=0.0, iterations=iterations)
    err = m.facet_areas_um2(tags.ACTIVE_PORE).sum() / (4 * np.pi * r * r) - 1
    if iterations:
        assert abs(err) < 0.06  # measured +3.8 %; binary marching cubes is +8.7 %
    else:
        assert err > 0.4  # the staircase: about +50 %


def test_three_phase_conformal_valid_volumes_kept():
    vol, part = sphere_pack_volume((24, 20, 20), 0.5, n_spheres=5, radius_vox=(4, 7), cbd_shell_vox=1.5, seed=1)
    stair = smoothed_mesh(vol, separator_um=3.0, iterations=0, particle_labels=part)
    m = smoothed_mesh(vol, separator_um=3.0, particle_labels=part)
    moved = np.linalg.norm(m.points - stair.points, axis=1)
    assert moved.max() > 0.2 * 0.5  # the smoothing did move nodes
    assert moved.max() <= 0.7 * 0.5  # bounded: 0.6 voxel by smoothing, plus the small volume correction
    # no tet inverted: every tet keeps the orientation it has in the voxel mesh
    assert np.all(np.sign(_signed_volumes(m.points, m.tets)) == np.sign(_signed_volumes(stair.points, stair.tets)))
    rep = fidelity_report(m, vol)
    assert rep["conformity"]["ok"]
    assert abs(rep["total_volume_rel_error"]) < 1e-9  # box faces stay planar
    for name, v in rep["phase_volumes"].items():
        assert abs(v["rel_error"]) < 0.005, name
    assert rep["quality_sicn"]["min"] >= 0.05
    a0 = sum(stair.facet_areas_um2(t).sum() for t in (tags.ACTIVE_PORE, tags.ACTIVE_CBD, tags.CBD_PORE))
    a1 = sum(m.facet_areas_um2(t).sum() for t in (tags.ACTIVE_PORE, tags.ACTIVE_CBD, tags.CBD_PORE))
    assert a1 < 0.85 * a0  # the staircase excess is removed
    # the separator plane and the collector stay flat
    z = m.points[:, 2]
    on_sep = np.isclose(stair.points[:, 2], m.electrode_thickness_um)
    assert np.allclose(z[on_sep], m.electrode_thickness_um)


def test_route_in_mesh_volume():
    from tomocell.meshing.pipeline import mesh_volume

    vol, part = sphere_pack_volume((16, 16, 16), 0.5, n_spheres=3, radius_vox=(4, 6), cbd_shell_vox=1.5, seed=2)
    res = mesh_volume(vol, route="smoothed", separator_um=2.0, area_tol=None, geometry_check="off",
                      particle_labels=part)
    assert res.mesh.info["route"] == "smoothed"
    assert res.report["conformity"]["ok"]


def test_cli_smoothed_route(tmp_path):
    import json

    from tomocell.cli import main

    vol, _ = sphere_pack_volume((14, 12, 12), 0.5, n_spheres=3, radius_vox=(3.0, 5.0), seed=1)
    np.save(tmp_path / "v.npy", vol.labels)
    out = tmp_path / "m"
    rc = main(["mesh", str(tmp_path / "v.npy"), "--voxel-size", "0.5", "--labels", "0=pore,1=active,2=cbd",
               "--route", "smoothed", "--area-tol", "none", "--separator", "2", "--no-msh", "--out", str(out)])
    assert rc == 0
    rep = json.loads((out / "fidelity.json").read_text())
    assert rep["route"] == "smoothed" and rep["conformity"]["ok"]
    assert rep["info"]["smoothing"]["interface_nodes"] > 0
    assert all(abs(v["rel_error"]) < 0.005 for v in rep["phase_volumes"].values())
