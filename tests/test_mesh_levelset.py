"""Level-set route (meshing/levelset.py): the exact cut volume, volume matching, conformity."""

import numpy as np
import pytest

from tomocell.errors import InputError
from tomocell.meshing.levelset import negative_volume


def _unit_tet():
    return np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]), np.array([[0, 1, 2, 3]])


@pytest.mark.parametrize("c", [0.1, 0.3, 0.5, 0.9])
def test_negative_volume_plane_cut_of_the_unit_tet(c):
    # ls = x + y + z - c: {ls < 0} is the corner tet of volume c^3 / 6 (c <= 1)
    p, t = _unit_tet()
    ls = p.sum(axis=1) - c
    assert negative_volume(p, t, ls) == pytest.approx(c**3 / 6, rel=1e-5)


def test_negative_volume_two_two_split_and_complement():
    # both sides of any cut add up to the tet volume
    p, t = _unit_tet()
    rng = np.random.default_rng(1)
    for _ in range(20):
        ls = rng.normal(size=4)
        assert negative_volume(p, t, ls) + negative_volume(p, t, -ls) == pytest.approx(1 / 6, rel=1e-5)
    ls = np.array([-1.0, -1.0, 1.0, 1.0])  # 2-2 split through the edge midpoints: half by symmetry
    assert negative_volume(p, t, ls) == pytest.approx(1 / 12, rel=1e-5)


def test_negative_volume_of_a_linear_field_on_a_grid_is_exact():
    from tomocell.meshing.voxel import rectilinear_tets

    ax = np.linspace(0.0, 1.0, 5)
    p, t = rectilinear_tets(ax, ax, ax)
    ls = p[:, 0] + 0.5 * p[:, 1] - 0.6  # plane: {x < 0.6 - 0.5 y}, volume 0.6 - 0.25 = 0.35
    assert negative_volume(p, t, ls) == pytest.approx(0.35, rel=1e-6)


def test_levelset_route_matches_phase_volumes_and_is_conformal():
    pytest.importorskip("mmgpy", reason="optional LGPL mesher, not installed by tomocell (pip install mmgpy)")
    from tomocell.meshing.fidelity import check_fidelity, fidelity_report
    from tomocell.meshing.levelset import levelset_mesh
    from tomocell.meshing.phantoms import sphere_pack_volume

    vol, parts = sphere_pack_volume((14, 14, 14), 0.5, n_spheres=2, radius_vox=(4.0, 5.0), seed=3)
    mesh = levelset_mesh(vol, separator_um=1.0, hausd_vox=0.3, h_max_um=2.0, particle_labels=parts)
    rep = fidelity_report(mesh, vol)
    for name, v in rep["phase_volumes"].items():
        assert abs(v["rel_error"]) < (0.02 if name == "cbd" else 0.01), (name, v)
    assert rep["conformity"]["ok"]
    assert rep["total_volume_rel_error"] == pytest.approx(0.0, abs=1e-9)
    check_fidelity(rep, area_tol=None, min_sicn=0.0)
    assert set(np.unique(mesh.particle_tags[mesh.cell_tags == 1])) - {0} <= set(np.unique(parts)) - {0}


def test_levelset_route_refuses_a_volume_too_thin():
    from tomocell.meshing.levelset import levelset_mesh
    from tomocell.microstructure.volume import Volume

    with pytest.raises(InputError, match="too thin"):
        levelset_mesh(Volume(np.zeros((1, 5, 5), np.uint8), 0.5))


def _labels(shape, fill):
    from tomocell.microstructure.volume import PORE

    lab = np.full(shape, PORE, np.uint8)
    lab[:, : shape[1] // 2] = fill
    return lab


def test_mesh_volume_refuses_a_volume_too_thin_and_a_phase_of_isolated_voxels():
    from tomocell.meshing.pipeline import isolated_voxels, mesh_volume
    from tomocell.microstructure.volume import ACTIVE, CBD, Volume

    with pytest.raises(InputError, match="too thin"):
        mesh_volume(Volume(_labels((1, 6, 6), ACTIVE), 0.5), route="voxel")
    lab = _labels((6, 6, 6), ACTIVE)
    lab[4, 4, 1] = lab[2, 5, 4] = CBD  # two CBD voxels inside the pore, not face-adjacent
    assert isolated_voxels(lab)["cbd"] == 2
    with pytest.raises(InputError, match="cbd is present only as 2 isolated"):
        mesh_volume(Volume(lab, 0.5), route="levelset")
    assert mesh_volume(Volume(lab, 0.5), route="voxel", separator_um=0.0,  # exact: kept and reported
                       geometry_check="off").report["isolated_voxels"]["cbd"] == 2
    lab[4, 4, 2] = CBD  # now two of them touch: meshed, and the last single voxel is reported
    res = mesh_volume(Volume(lab, 0.5), route="voxel", separator_um=0.0, geometry_check="off")
    assert res.report["isolated_voxels"] == {"pore": 0, "active": 0, "cbd": 1}
