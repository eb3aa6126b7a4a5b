"""Anisotropic voxels (d0 != d1 != d2) through the geometric paths, against hand counts.

Volume axes are (0, 1, 2) = (z through the electrode, y, x) with voxel edges (d0, d1, d2) =
(0.5, 1.0, 2.0) um: a face normal to axis k has the area of the other two edges, so a swapped or
reversed spacing changes every number below.
"""

from __future__ import annotations

import numpy as np
import pytest

import tomocell.fem  # noqa: F401
from tomocell.meshing import tags
from tomocell.meshing.voxel import voxel_mesh
from tomocell.microstructure.interfaces import specific_areas
from tomocell.microstructure.volume import ACTIVE, PORE, Volume

D = (0.5, 1.0, 2.0)


def _block() -> Volume:
    """6 x 5 x 4 voxels of pore with a 3 x 2 x 2 active block inside (not touching the box)."""
    lab = np.full((6, 5, 4), PORE, dtype=np.uint8)
    lab[1:4, 1:3, 1:3] = ACTIVE
    return Volume(lab, D)


# faces of the block: normal to axis 0: 2*2*2 = 8 of d1*d2 = 2.0 um^2; axis 1: 2*3*2 = 12 of
# d0*d2 = 1.0; axis 2: 2*3*2 = 12 of d0*d1 = 0.5  ->  16 + 12 + 6 = 34 um^2
AREA_UM2 = 34.0
BOX_UM3 = (6 * 0.5) * (5 * 1.0) * (4 * 2.0)  # 120 um^3


def test_voxel_face_area_with_anisotropic_voxels_matches_hand_count():
    s = specific_areas(_block())
    assert s["active_pore"]["voxel_faces_per_um"] == pytest.approx(AREA_UM2 / BOX_UM3, rel=1e-12)
    assert s["active_cbd"]["voxel_faces_per_um"] == 0.0


def test_voxel_mesh_with_anisotropic_voxels_has_the_hand_geometry():
    vol = _block()
    m = voxel_mesh(vol, separator_um=2.0)
    x1, y1, z1 = m.box_um
    assert (x1, y1) == pytest.approx((4 * 2.0, 5 * 1.0))  # x from axis 2 (d2), y from axis 1 (d1)
    assert m.electrode_thickness_um == pytest.approx(6 * 0.5)  # z from axis 0 (d0)
    assert z1 == pytest.approx(3.0 + 2.0)
    v = m.tet_volumes_um3()
    assert v[m.cell_tags == tags.ACTIVE].sum() == pytest.approx(12 * 0.5 * 1.0 * 2.0, rel=1e-12)
    assert m.facet_areas_um2(tags.ACTIVE_PORE).sum() == pytest.approx(AREA_UM2, rel=1e-12)
    # the block spans z in [d0 * (6 - 4), d0 * (6 - 1)] (axis 0 index 0 is the separator side)
    act = m.tets[m.cell_tags == tags.ACTIVE]
    z = m.points[act][:, :, 2]
    assert (z.min(), z.max()) == pytest.approx((1.0, 2.5))


def test_local_thickness_of_a_pore_slab_with_anisotropic_voxels_is_its_width():
    """A pore slab 6 voxels wide along axis 1 (d1 = 1 um, so 6 um), long in axes 0 and 2: its local
    thickness is the width (taking d0 or d2 for the width gives 3 or 12 um)."""
    from tomocell.microstructure.poresize import local_thickness

    lab = np.full((16, 8, 10), PORE, dtype=np.uint8)
    lab[:, 0] = ACTIVE
    lab[:, 7] = ACTIVE
    lt = local_thickness(Volume(lab, D), "pore")[:, 1:7]
    # the EDT of the two centre rows is 3 um (to the wall voxel's face): one 6 um ball covers the slab
    assert lt == pytest.approx(np.full(lt.shape, 6.0), abs=1e-5)


def test_tortuosity_of_a_one_voxel_tube_with_anisotropic_voxels_matches_the_hand_resistance():
    """A one-voxel-wide pore tube in solid (6 x 3 x 5 voxels): 2 steps along axis 0, 2 along axis 2,
    3 along axis 0, so the flux is 1D and the finite-volume answer is a series of face conductances
    g_k = D0 * (area of a face normal to k) / d_k (g0 = d1 d2 / d0 = 4 um, g2 = d0 d1 / d2 = 0.25 um),
    plus a half voxel at each Dirichlet face: R = 5/g0 + 2/g2 + 2/(2 g0). tau = eps / (D_eff/D0) =
    8.444; a swapped spacing gives another number (d0 <-> d2: 1.361)."""
    from tomocell.microstructure.tortuosity import tortuosity_factor

    lab = np.full((6, 3, 5), ACTIVE, dtype=np.uint8)
    lab[0:3, 1, 1] = PORE
    lab[2, 1, 1:4] = PORE
    lab[2:6, 1, 3] = PORE

    def hand_tau(d0, d1, d2):
        g0, g2 = d1 * d2 / d0, d0 * d1 / d2
        r = 6.0 / g0 + 2.0 / g2
        d_eff = (6 * d0) / ((3 * d1) * (5 * d2) * r)
        return (8 / 90) / d_eff

    res = tortuosity_factor(Volume(lab, D), "pore", 0, rtol=1e-10)
    assert res.tau == pytest.approx(hand_tau(*D), rel=1e-6)  # 8.4444
    assert hand_tau(*D[::-1]) == pytest.approx(1.3611, rel=1e-4)  # the answer with d0 and d2 swapped


def test_surface_route_mesh_of_a_sphere_in_anisotropic_voxels_has_its_geometry():
    """A sphere (R = 2.4 um) in (0.25, 0.5, 0.4) um voxels of a 6 x 8 x 10 um box, meshed by the
    conformal surface route: the box takes each extent from its own axis, the phase volumes are the
    voxel volumes (1 %; the CBD bed, flat, exactly), the sphere sits where it was drawn (mesh z counts
    from the collector, voxel axis 0 from the separator) and its interface area is within 5 % of
    4 pi R^2 (measured: +1.8 %, active volume +0.9 %; voxel faces would give +50 %)."""
    from tomocell.meshing.pipeline import mesh_volume
    from tomocell.microstructure.volume import CBD

    d = (0.25, 0.5, 0.4)
    n = [int(round(L / dk)) for L, dk in zip((6.0, 8.0, 10.0), d)]
    z, y, x = np.meshgrid(*[(np.arange(k) + 0.5) * dk for k, dk in zip(n, d)], indexing="ij")
    R, c = 2.4, (3.1, 4.2, 5.6)
    lab = np.full(n, PORE, dtype=np.uint8)
    lab[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= R**2] = ACTIVE
    lab[(z >= 5.5) & (lab == PORE)] = CBD  # a bed on the collector side, not touching the sphere
    vol = Volume(lab, d)
    res = mesh_volume(vol, route="surface", separator_um=2.0, fallback=False, area_tol=0.08)
    rep, m = res.report, res.mesh
    assert rep["route"] == "surface" and rep["conformity"]["ok"]
    assert rep["box_um"] == pytest.approx([10.0, 8.0, 6.0 + 2.0])  # x from axis 2, y from axis 1
    for phase, pv in rep["phase_volumes"].items():
        assert abs(pv["rel_error"]) <= (1e-9 if phase == "cbd" else 0.01), (phase, pv)
    tv = m.tet_volumes_um3()
    act = m.cell_tags == tags.ACTIVE
    centroid = (m.points[m.tets[act]].mean(axis=1) * tv[act, None]).sum(axis=0) / tv[act].sum()
    assert centroid == pytest.approx([c[2], c[1], 6.0 - c[0]], abs=0.05)
    area = rep["interface_areas"]["active|pore"]["mesh_um2"]
    assert area == pytest.approx(4 * np.pi * R**2, rel=0.05), area
    assert rep["quality_sicn"]["min"] > 0.05
