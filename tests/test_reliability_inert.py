"""Disconnected (inert) material is reported, never silently excluded (issue 15 item 2)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import tomocell.fem  # noqa: F401,E402  (before dolfinx)

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

from dolfinx import mesh as dmesh  # noqa: E402
from mpi4py import MPI  # noqa: E402

from tomocell.errors import InputError  # noqa: E402
from tomocell.meshing import tags as T  # noqa: E402
from tomocell.physics.cli import summary_line  # noqa: E402
from tomocell.physics.discharge import simulate_discharge  # noqa: E402
from tomocell.physics.model import MeshInput  # noqa: E402
from tomocell.physics.synthetic import box_cell, tag_facets  # noqa: E402

L = 10.0


def _cut_box(layer=(4.0, 5.0)):
    """The built-in test cell with a pore layer through the whole electrode at z in ``layer`` (um):
    all solid above it is cut off from the collector. Returns the mesh and the expected inert share
    of the active material (equal-volume tets: a count ratio, computed from the tags alone)."""
    inp = box_cell(MPI.COMM_WORLD, n=(4, 4, 10))
    msh = inp.mesh
    n = msh.topology.index_map(3).size_local + msh.topology.index_map(3).num_ghosts
    cells = np.arange(n, dtype=np.int32)
    mid = dmesh.compute_midpoints(msh, 3, cells)
    tag = inp.cell_tags.values.copy()
    in_layer = (mid[:, 2] > layer[0]) & (mid[:, 2] < layer[1])
    tag[in_layer & np.isin(tag, T.SOLID_CELLS)] = T.PORE
    ptag = np.where(tag == T.ACTIVE, inp.particle_tags.values, 0).astype(np.int32)
    own = msh.topology.index_map(3).size_local
    act = tag[:own] == T.ACTIVE
    above = act & (mid[:own, 2] > layer[1])
    n_act = MPI.COMM_WORLD.allreduce(int(act.sum()))
    n_above = MPI.COMM_WORLD.allreduce(int(above.sum()))
    out = MeshInput(msh, dmesh.meshtags(msh, 3, cells, tag), tag_facets(msh, tag, L + 5.0, (10.0, 10.0)),
                    dmesh.meshtags(msh, 3, cells, ptag))
    return out, n_above / n_act


def test_disconnected_material_is_reported(tmp_path, caplog):
    inp, expected = _cut_box()
    assert 0.2 < expected < 0.8  # the layer really cuts a good share off
    with caplog.at_level(logging.WARNING, logger="tomocell"):
        res = simulate_discharge(inp, 5.0, out_dir=tmp_path / "r", dod_snapshots=(0.5,), max_ddod=0.1)
    f = res.inert["active"]["inert_fraction"]
    assert f == pytest.approx(expected, rel=1e-9)
    assert res.inert["cbd"]["inert_fraction"] > 0  # (closed pore pockets below the layer are inert too)
    # capacity per all active material vs per the connected part, both reported and consistent
    assert res.capacity_mAh_g == pytest.approx(res.capacity_mAh_g_connected * (1 - f), rel=1e-9)
    assert res.utilisation_total == pytest.approx(res.utilisation * (1 - f), rel=1e-9)
    assert "disconnected material set inert" in caplog.text and "active" in caplog.text
    line = summary_line(res, tmp_path / "r")
    assert "INERT" in line and f"active {100 * f:.1f} %" in line and "of all active material" in line
    # summary() is what run.json records
    assert res.summary()["inert"]["active"]["inert_fraction"] == pytest.approx(f)
    # an option to refuse such meshes, before any solve
    with pytest.raises(InputError, match="disconnected"):
        simulate_discharge(inp, 5.0, max_inert_fraction=0.1)


def test_connected_cell_reports_zero_inert():
    # (box:3,3,4, the cell of the discharge tests, has 7.1 % of its active material cut off; 2,2,3 none)
    res = simulate_discharge(box_cell(MPI.COMM_WORLD, n=(2, 2, 3)), 10.0, dod_snapshots=(0.5,), max_ddod=0.2)
    assert all(v["inert_fraction"] == 0 for v in res.inert.values())
    assert res.capacity_mAh_g == pytest.approx(res.capacity_mAh_g_connected, rel=1e-12)
    assert "INERT" not in summary_line(res, "x")


def test_mesh_reports_percolation_per_phase(tmp_path, capsys):
    """`tomocell mesh` on a volume whose solid is cut by a pore layer: per-phase connected shares in
    run.json and on the summary line, the same rule as the physics."""
    from tomocell.cli import main

    v = np.zeros((12, 6, 6), dtype=np.uint8)  # axis 0 = thickness, index 0 = separator side
    v[:, 1:5, 1:5] = 1  # an active pillar through the electrode
    v[:, 0, :] = 2  # a CBD wall
    v[5:7] = 0  # the pore layer cutting everything
    np.save(tmp_path / "v.npy", v)
    rc = main(["mesh", str(tmp_path / "v.npy"), "--voxel-size", "1", "--labels", "0=pore,1=active,2=cbd",
               "--route", "voxel", "--separator", "2", "--no-msh", "--out", str(tmp_path / "m")])
    assert rc == 0
    perc = json.loads((tmp_path / "m" / "run.json").read_text())["results"]["percolation"]
    # voxels 0-4 (separator side) are cut off from the collector (index 11 side): 5 of 10 solid slabs
    assert perc["active"]["inert_fraction"] == pytest.approx(0.5, abs=1e-9)
    assert perc["cbd"]["inert_fraction"] == pytest.approx(0.5, abs=1e-9)
    assert perc["pore"]["inert_fraction"] == pytest.approx(0.0, abs=1e-12)
    out = capsys.readouterr()
    assert "active 50.0 %" in out.out and "disconnected" in out.out + out.err
