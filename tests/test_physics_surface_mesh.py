"""The physics on a conformal surface-route (gmsh) mesh: a 2C discharge conserves lithium to 1e-10 per
step and delivers the same charge as the voxel-route mesh of the same voxels (make test-slow; ~6 min).

Two spheres of NMC (radii 3.25 and 2.25 um) joined by a CBD neck, a CBD bed on the collector, 0.25 um
voxels: smooth enough for the surface route to pass its volume checks without falling back to voxels.
"""

from __future__ import annotations

import numpy as np
import pytest

import tomocell.fem  # noqa: F401

import dolfinx  # noqa: E402,F401  (a core dependency: without it these tests fail, never skip)

from tomocell.meshing.pipeline import mesh_volume, write_outputs  # noqa: E402
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume  # noqa: E402
from tomocell.physics.cli import simulate_file  # noqa: E402

STEP = ["Discharge at 2C until 3.0 V"]


def two_spheres(vs_um: float = 0.25) -> Volume:
    n0, n1, n2 = (round(L / vs_um) for L in (12.0, 8.0, 8.0))
    z, y, x = np.meshgrid(*((np.arange(n) + 0.5) * vs_um * 2 for n in (n0, n1, n2)), indexing="ij")  # half-um units
    lab = np.full((n0, n1, n2), PORE, dtype=np.uint8)
    lab[(z - 16) ** 2 + (y - 8) ** 2 + (x - 8) ** 2 <= 6.5**2] = ACTIVE
    lab[(z - 7) ** 2 + (y - 6) ** 2 + (x - 7) ** 2 <= 4.5**2] = ACTIVE
    neck = ((z - 11.5) ** 2 / 9 + (y - 7) ** 2 / 16 + (x - 7.5) ** 2 / 16 <= 1.0) & (lab == PORE)
    lab[neck] = CBD
    lab[(z >= 21.5) & (lab == PORE) & ((y - 8) ** 2 + (x - 8) ** 2 <= 7.5**2)] = CBD
    return Volume(lab, (vs_um,) * 3)


def _discharge(vol: Volume, route: str, tmp_path) -> tuple[dict, dict]:
    # area_tol 8 %: the marching-cubes reference overstates smooth bodies by 8-12 % (docs/meshing.md);
    # the volumes are still held to 1 % (CBD 3 %) and the mesh must not fall back to voxels
    res = mesh_volume(vol, route=route, separator_um=3.0, fallback=False, area_tol=0.08)
    write_outputs(res, tmp_path / route)
    r = simulate_file(tmp_path / route / "mesh.xdmf", 2.0, tmp_path / f"sim-{route}", experiment=STEP)
    return res.report, r.summary()


@pytest.mark.slow
def test_discharge_on_a_surface_route_mesh_conserves_lithium_and_matches_the_voxel_mesh(tmp_path):
    vol = two_spheres()
    rep_s, surf = _discharge(vol, "surface", tmp_path)
    assert rep_s["route"] == "surface"  # conformal, not the voxel fallback
    step = surf["experiment_steps"][0]
    assert step["reason"] == "3 V" and step["li_balance_max"] <= 1e-10, step
    # measured: 1.3748e-10 Ah (surface, 69 k tets) vs 1.3758e-10 Ah (voxels, 332 k tets), 0.07 %
    rep_v, vox = _discharge(vol, "voxel", tmp_path)
    q_s, q_v = step["charge_Ah"], vox["experiment_steps"][0]["charge_Ah"]
    assert q_s == pytest.approx(q_v, rel=0.01), (q_s, q_v)
    # most of the nominal charge (1C current x 1 h) at 2C: small particles, little diffusion loss (0.957)
    assert 0.9 < q_s / surf["one_c_current_A"] < 1.0


@pytest.mark.slow
def test_c5_discharge_on_a_surface_mesh_of_anisotropic_voxels_delivers_the_window_capacity(tmp_path):
    """A sphere (R = 2.4 um) on a CBD post and bed in (0.25, 0.5, 0.4) um voxels, conformal surface
    mesh (27 k tets): at C/5 the particle (5 um across) is nearly at equilibrium, so the delivered
    charge is the OCP window's c_max (x1 - x0) F V_active, with V_active the mesh's active volume
    (measured 99.8 %, ~2 min on 2 shared cores); Li balanced to 1e-10 per step."""
    from tomocell.meshing import tags
    from tomocell.physics.parameters import FARADAY, load_parameters

    d = (0.25, 0.5, 0.4)
    n = [int(round(L / dk)) for L, dk in zip((6.0, 8.0, 10.0), d)]
    z, y, x = np.meshgrid(*[(np.arange(k) + 0.5) * dk for k, dk in zip(n, d)], indexing="ij")
    lab = np.full(n, PORE, dtype=np.uint8)
    lab[(z - 3.1) ** 2 + (y - 4.2) ** 2 + (x - 5.6) ** 2 <= 2.4**2] = ACTIVE
    lab[(z >= 5.5) & (lab == PORE)] = CBD
    lab[(z >= 3.0) & (z < 5.5) & ((y - 4.2) ** 2 + (x - 5.6) ** 2 <= 1.0) & (lab == PORE)] = CBD
    res = mesh_volume(Volume(lab, d), route="surface", separator_um=2.0, fallback=False, area_tol=0.08)
    assert res.report["route"] == "surface"
    write_outputs(res, tmp_path / "mesh")
    r = simulate_file(tmp_path / "mesh" / "mesh.xdmf", 1.0, tmp_path / "sim",
                      experiment=["Discharge at 0.2C until 3.0 V"]).summary()
    p = load_parameters(None)
    x0, x1 = p.theta_limits()
    v_act = res.mesh.tet_volumes_um3()[res.mesh.cell_tags == tags.ACTIVE].sum() * 1e-18
    q_window = p.c_max * (x1 - x0) * FARADAY * v_act / 3600.0  # Ah
    step = r["experiment_steps"][0]
    assert step["reason"] == "3 V" and step["li_balance_max"] <= 1e-10, step
    assert 0.99 < step["charge_Ah"] / q_window <= 1.0, (step["charge_Ah"], q_window)
