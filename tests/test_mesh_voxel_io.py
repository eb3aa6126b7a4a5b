"""Exact voxel route + XDMF round trip on 1 and 2 ranks, with all tags."""

from __future__ import annotations

import numpy as np
import pytest

import tomocell.fem  # noqa: F401
from tomocell.errors import InputError
from tomocell.meshing import tags
from tomocell.meshing.phantoms import sphere_pack_volume
from tomocell.meshing.tagging import NonConformalMeshError, face_table, tag_facets
from tomocell.meshing.voxel import voxel_mesh
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


def _phantom(shape=(12, 10, 9)):
    return sphere_pack_volume(shape, 0.5, n_spheres=4, radius_vox=(2.5, 4.5), cbd_shell_vox=1.2, seed=3)


def test_voxel_mesh_exact_volumes_and_conformity():
    vol, part = _phantom()
    m = voxel_mesh(vol, separator_um=3.0, particle_labels=part)
    assert m.num_tets >= 6 * np.prod(vol.shape)
    v = m.tet_volumes_um3()
    vv = vol.voxel_volume_um3
    counts = np.bincount(vol.labels.ravel(), minlength=3)
    for code, tag in ((PORE, tags.PORE), (ACTIVE, tags.ACTIVE), (CBD, tags.CBD)):
        assert v[m.cell_tags == tag].sum() == pytest.approx(counts[code] * vv, rel=1e-12)
    x1, y1, z1 = m.box_um
    assert z1 == pytest.approx(vol.extent_um[0] + 3.0)
    assert v[m.cell_tags == tags.SEPARATOR].sum() == pytest.approx(x1 * y1 * 3.0, rel=1e-12)
    # no degenerate tets, no face shared by > 2 tets, every boundary face on the box
    assert v.min() > 0
    ft = face_table(m.tets, m.num_nodes)
    assert ft.counts.max() == 2
    # outer faces tagged with their plane, with the right total areas
    assert m.facet_areas_um2(tags.CURRENT_COLLECTOR).sum() == pytest.approx(x1 * y1)
    assert m.facet_areas_um2(tags.LI_FACE).sum() == pytest.approx(x1 * y1)
    assert m.facet_areas_um2(tags.SIDE_X0).sum() == pytest.approx(y1 * z1)
    # active|pore area equals the number of voxel faces between active and pore voxels
    lab = vol.labels
    d = vol.voxel_size_um
    face_area = (d[1] * d[2], d[0] * d[2], d[0] * d[1])
    expect = 0.0
    for ax in range(3):
        a = np.take(lab, range(lab.shape[ax] - 1), axis=ax)
        b = np.take(lab, range(1, lab.shape[ax]), axis=ax)
        expect += face_area[ax] * np.count_nonzero(((a == ACTIVE) & (b == PORE)) | ((a == PORE) & (b == ACTIVE)))
    assert m.facet_areas_um2(tags.ACTIVE_PORE).sum() == pytest.approx(expect)
    # particle labels: every active tet carries the label of its voxel's particle
    assert set(np.unique(m.particle_tags[m.cell_tags == tags.ACTIVE])) == set(np.unique(part[part > 0]))
    assert np.all(m.particle_tags[m.cell_tags != tags.ACTIVE] == 0)


def test_voxel_mesh_coarsen_keeps_box_and_majority():
    vol, part = _phantom((13, 10, 11))
    m = voxel_mesh(vol, separator_um=0.0, coarsen=2, particle_labels=part)
    assert m.box_um == pytest.approx((11 * 0.5, 10 * 0.5, 13 * 0.5))
    assert m.num_tets == 6 * 7 * 5 * 6
    frac = m.tet_volumes_um3()[m.cell_tags == tags.ACTIVE].sum() / np.prod(m.box_um)
    assert frac == pytest.approx(vol.fractions()["active"], abs=0.06)
    assert np.any(m.facet_tags == tags.LI_FACE)  # without separator the electrode top is the Li face


def test_open_face_is_detected():
    vol, _ = _phantom((4, 4, 4))
    m = voxel_mesh(vol, separator_um=0.0)
    keep = np.ones(m.num_tets, bool)
    keep[6 * 21 + 2] = False  # remove one interior tet: a hole
    with pytest.raises(NonConformalMeshError, match="open faces"):
        tag_facets(m.points, m.tets[keep], m.cell_tags[keep], m.box_um)


@pytest.mark.mpi
def test_xdmf_round_trip_parallel(tmp_path):
    from mpi4py import MPI

    import dolfinx.fem
    import ufl

    from tomocell.meshing.meshfile import read_mesh, write_mesh

    comm = MPI.COMM_WORLD
    vol, part = _phantom()
    m = voxel_mesh(vol, separator_um=2.0, particle_labels=part)
    path = comm.bcast(str(tmp_path / "mesh.xdmf"), root=0)
    write_mesh(path, m)
    d = read_mesh(path, comm=comm)
    msh = d.mesh
    tdim = 3
    imap = msh.topology.index_map(tdim)
    n_all = imap.size_local + imap.num_ghosts
    # cell tags cover owned and ghost cells
    assert np.array_equal(np.sort(d.cell_tags.indices), np.arange(n_all))
    assert np.array_equal(np.sort(d.particle_tags.indices), np.arange(n_all))
    if comm.size > 1:
        assert imap.num_ghosts > 0  # shared_facet ghosting is on
    # phase volumes and tagged areas through DOLFINx measures
    dx = ufl.Measure("dx", domain=msh, subdomain_data=d.cell_tags)
    ds = ufl.Measure("ds", domain=msh, subdomain_data=d.facet_tags)
    dS = ufl.Measure("dS", domain=msh, subdomain_data=d.facet_tags)
    one = dolfinx.fem.Constant(msh, 1.0)
    v_ref = m.tet_volumes_um3()
    for t in (tags.ACTIVE, tags.CBD, tags.PORE, tags.SEPARATOR):
        got = comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(one * dx(t))), op=MPI.SUM)
        assert got == pytest.approx(v_ref[m.cell_tags == t].sum(), rel=1e-10)
    for t in (tags.CURRENT_COLLECTOR, tags.LI_FACE, *tags.SIDES):
        got = comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(one * ds(t))), op=MPI.SUM)
        assert got == pytest.approx(m.facet_areas_um2(t).sum(), rel=1e-10)
    for t in (tags.ACTIVE_PORE, tags.ACTIVE_CBD, tags.CBD_PORE, tags.PORE_SEPARATOR):
        got = comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(one("+") * dS(t))), op=MPI.SUM)
        assert got == pytest.approx(m.facet_areas_um2(t).sum(), rel=1e-10), t
    # particle volumes
    pt_vals = np.empty(n_all, np.int32)
    pt_vals[d.particle_tags.indices] = d.particle_tags.values
    dxp = ufl.Measure("dx", domain=msh, subdomain_data=d.particle_tags)
    for p in np.unique(part[part > 0])[:3]:
        got = comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(one * dxp(int(p)))), op=MPI.SUM)
        assert got == pytest.approx(np.count_nonzero(part == p) * vol.voxel_volume_um3, rel=1e-10)
    # interface facets found from cell tags == facet tags, on every owned facet
    ct = np.empty(n_all, np.int32)
    ct[d.cell_tags.indices] = d.cell_tags.values
    msh.topology.create_connectivity(2, 3)
    f2c = msh.topology.connectivity(2, 3)
    n_owned_f = msh.topology.index_map(2).size_local
    ftag = np.zeros(msh.topology.index_map(2).size_local + msh.topology.index_map(2).num_ghosts, np.int32)
    ftag[d.facet_tags.indices] = d.facet_tags.values
    n_iface = 0
    for f in range(n_owned_f):
        cells = f2c.links(f)
        if len(cells) == 2 and ct[cells[0]] != ct[cells[1]]:
            expect = tags.INTERFACE_OF_PAIR[frozenset((int(ct[cells[0]]), int(ct[cells[1]])))]
            assert ftag[f] == expect
            n_iface += 1
        elif len(cells) == 2:
            assert ftag[f] == 0
        else:
            assert ftag[f] in (tags.CURRENT_COLLECTOR, tags.LI_FACE, *tags.SIDES)
    n_iface = comm.allreduce(n_iface, op=MPI.SUM)
    interface_tags = [t for t in tags.INTERFACE_OF_PAIR.values()]
    assert n_iface == np.count_nonzero(np.isin(m.facet_tags, interface_tags))


def test_bad_inputs():

    vol = Volume(np.zeros((3, 3, 3), np.uint8), 1.0)
    with pytest.raises(InputError):
        voxel_mesh(vol, coarsen=4)
    with pytest.raises(InputError):
        voxel_mesh(vol, particle_labels=np.zeros((2, 2, 2)))


def test_fraction_preserving_coarsening_keeps_a_thin_film_that_the_majority_erases():
    from tomocell.meshing.coarsen import block_counts, coarsen_labels

    # spheres of active material wrapped in a thin CBD skin (0.6 voxel): in 2^3 blocks the skin is rarely the
    # majority, so the majority rule erases it; the fraction rule must keep each phase's volume to
    # within one block and put the CBD where it was (blocks whose CBD fraction is highest)
    z, y, x = np.mgrid[:24, :20, :22] + 0.5
    lab = np.zeros(z.shape, np.uint8)
    for c, r in (((7, 6, 7), 4.6), ((16, 13, 14), 5.3)):
        d = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
        lab[(d < r + 0.6) & (lab == 0)] = 2
        lab[d < r] = 1
    fine = np.bincount(lab.ravel(), minlength=3)
    assert fine[2] > 0.3 * fine[1]
    counts, size = block_counts(lab, 2, 3)
    assert counts.sum(axis=-1).tolist() == size.tolist()
    mode = coarsen_labels(lab, 2, "mode")
    frac = coarsen_labels(lab, 2)
    vol_mode = np.bincount(mode.ravel(), weights=size.ravel(), minlength=3)
    vol_frac = np.bincount(frac.ravel(), weights=size.ravel(), minlength=3)
    assert vol_mode[2] < 0.6 * fine[2]  # half the skin gone
    assert np.all(np.abs(vol_frac - fine) <= 8)  # every phase to within one 2^3 block
    # the scarcest phase (CBD) took the blocks where it was densest: none left behind holds more
    cbd_share = counts[..., 2] / size
    assert cbd_share[frac == 2].min() >= cbd_share[frac != 2].max() > 0
    # a phase absent from the fine grid stays absent; factor 1 is the identity; bad method refused
    assert not np.any(coarsen_labels(np.where(lab == 2, 0, lab).astype(np.uint8), 2) == 2)
    assert np.array_equal(coarsen_labels(lab, 1), lab)
    with pytest.raises(InputError, match="unknown coarsening method"):
        coarsen_labels(lab, 2, "median")


def test_fraction_coarsened_mesh_labels_every_active_block_with_a_particle():
    vol, part = _phantom((13, 10, 11))
    m = voxel_mesh(vol, separator_um=0.0, coarsen=2, particle_labels=part)
    act = m.cell_tags == tags.ACTIVE
    assert m.info["coarsen_method"] == "fraction"
    assert np.all(m.particle_tags[act] > 0) and np.all(m.particle_tags[~act] == 0)
    assert set(np.unique(m.particle_tags[act])) <= set(np.unique(part[part > 0]))
    frac = m.tet_volumes_um3()[act].sum() / np.prod(m.box_um)
    assert frac == pytest.approx(vol.fractions()["active"], abs=2 * 8 * 0.125 / np.prod(m.box_um))
