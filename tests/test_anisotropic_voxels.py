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
