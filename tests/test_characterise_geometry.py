"""Local thickness (sphere, slab), particle metrics on placed ellipsoids, fast marching around an
obstacle, interfacial areas, percolation, slice profiles."""

from __future__ import annotations

import numpy as np
import pytest

from tomocell.errors import InputError
from tomocell.microstructure import fractions, interfaces, particles, poresize, travel
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


# ------------------------------------------------------------------------------ local thickness
def test_local_thickness_of_a_sphere_exact_to_one_voxel():
    n, R, h = 41, 12, 0.5
    z, y, x = np.indices((n, n, n))
    lab = np.full((n, n, n), ACTIVE, np.uint8)
    inside = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= R * R
    lab[inside] = PORE
    lt = poresize.local_thickness(Volume(lab, h), "pore")
    # every voxel of a sphere lies in the sphere itself: diameter 2R voxels everywhere, to one voxel
    assert np.all(np.abs(lt[inside] - 2 * R * h) <= h)
    assert np.all(lt[~inside] == 0)


@pytest.mark.parametrize("thickness", [3, 8, 13])
def test_local_thickness_of_a_slab_exact_to_one_voxel(thickness):
    lab = np.full((30, 24, 24), ACTIVE, np.uint8)
    lab[5:5 + thickness] = PORE
    v = Volume(lab, 0.25)
    lt = poresize.local_thickness(v)
    vals = lt[lab == PORE]
    assert np.all(np.abs(vals - thickness * 0.25) <= 0.25), np.unique(vals)
    psd = poresize.size_distribution(lt, lab == PORE)
    assert abs(psd["d50_um"] - thickness * 0.25) <= 0.25
    assert abs(psd["volume_fraction"].sum() - 1.0) < 1e-12


def test_local_thickness_two_pore_sizes_volume_weighted():
    # a wide slab (10 voxels) and a narrow one (2 voxels): D10 narrow, D90 wide, weights 1 : 5
    lab = np.full((40, 16, 16), ACTIVE, np.uint8)
    lab[2:4] = PORE
    lab[20:30] = PORE
    lt = poresize.local_thickness(Volume(lab, 1.0))
    psd = poresize.size_distribution(lt, lab == PORE)
    assert abs(psd["d10_um"] - 2.0) <= 1.0 and abs(psd["d90_um"] - 10.0) <= 1.0
    assert abs(psd["mean_um"] - (2 * 2 + 10 * 10) / 12) <= 1.0


def _brute_force_local_thickness(mask: np.ndarray, vs: tuple[float, float, float]) -> np.ndarray:
    """The definition, pair by pair: 2 max{dt(c) : |x - c| <= dt(c)} over all phase voxels c."""
    dt = poresize.distance_um(mask, vs).astype(np.float64)
    c, r = np.argwhere(mask) * np.asarray(vs), dt[mask]
    out = np.zeros(mask.shape)
    for p, x in zip(np.argwhere(mask), c):
        d2 = ((c - x) ** 2).sum(axis=1)
        out[tuple(p)] = 2.0 * r[d2 <= r * r * (1 + 1e-6)].max()
    return out


@pytest.mark.parametrize("vs", [(1.0, 1.0, 1.0), (0.5, 0.5, 0.5), (1.0, 0.7, 0.6)])
def test_local_thickness_equals_the_definition_on_a_random_medium(vs):
    # exact, not binned: every voxel gets the largest ball covering it (checked pair by pair),
    # including voxels on the rim of a ball whose radius is sqrt of a non-square integer
    from scipy import ndimage

    f = ndimage.gaussian_filter(np.random.default_rng(3).standard_normal((16, 18, 20)), 2.0)
    mask = f > 0.0
    lab = np.where(mask, PORE, ACTIVE).astype(np.uint8)
    lt = poresize.local_thickness(Volume(lab, vs), "pore")
    ref = _brute_force_local_thickness(mask, vs)
    np.testing.assert_allclose(lt, ref, rtol=1e-6, atol=0)
    assert np.all(lt[~mask] == 0)


def test_local_thickness_of_a_phase_filling_the_box_is_an_input_error():
    with pytest.raises(InputError, match="fills the whole volume"):
        poresize.local_thickness(Volume(np.zeros((5, 5, 5), np.uint8), 1.0))


def test_local_thickness_without_pore_is_an_input_error():
    with pytest.raises(InputError, match="no pore"):
        poresize.local_thickness(Volume(np.ones((5, 5, 5), np.uint8), 1.0))


# ------------------------------------------------------------------------------ particles
def _rotation(az_deg: float, el_deg: float) -> np.ndarray:
    """Columns: major-axis direction (azimuth in the 1-2 plane, elevation towards axis 0), two normals."""
    az, el = np.radians(az_deg), np.radians(el_deg)
    u = np.array([np.sin(el), np.cos(el) * np.cos(az), np.cos(el) * np.sin(az)])
    t = np.cross(u, [1.0, 0, 0]) if abs(u[0]) < 0.9 else np.cross(u, [0, 1.0, 0])
    t /= np.linalg.norm(t)
    return np.stack([u, t, np.cross(u, t)], axis=1)


def _ellipsoid(shape, centre, semi, rot) -> np.ndarray:
    p = np.stack(np.indices(shape), -1).astype(float) - np.asarray(centre, float)
    q = p @ rot
    return ((q / np.asarray(semi, float)) ** 2).sum(-1) <= 1.0


ELLIPSOIDS = [  # centre (voxels), semi-axes (voxels), azimuth, elevation (deg)
    ((18, 18, 18), (13, 6, 5), 30.0, 20.0),
    ((44, 20, 44), (12, 5, 5), 120.0, 60.0),
    ((20, 46, 46), (11, 7, 4), 75.0, 5.0),
    ((46, 46, 16), (8, 8, 8), 0.0, 0.0),
]


def test_particle_metrics_recover_placed_ellipsoids():
    shape, h = (64, 64, 64), 0.4
    lab = np.zeros(shape, np.uint8)
    for c, semi, az, el in ELLIPSOIDS:
        lab[_ellipsoid(shape, c, semi, _rotation(az, el))] = ACTIVE
    v = Volume(lab, h)
    lbl = particles.label_particles(v)
    assert lbl.dtype == np.int32 and lbl.max() == len(ELLIPSOIDS)
    t = particles.particle_table(v, lbl)
    for c, semi, az, el in ELLIPSOIDS:
        i = int(np.argmin([np.hypot(np.hypot(t["centroid_depth_um"][k] - (c[0] + 0.5) * h, t["centroid_1_um"][k] - (c[1] + 0.5) * h),
                                    t["centroid_2_um"][k] - (c[2] + 0.5) * h) for k in range(len(t["label"]))]))
        a, b, cc = (s * h for s in semi)
        d_true = 2 * (a * b * cc) ** (1 / 3)
        assert abs(t["equivalent_diameter_um"][i] - d_true) / d_true < 0.05
        assert abs(t["semi_axis_a_um"][i] - a) / a < 0.05
        assert abs(t["semi_axis_c_um"][i] - cc) / cc < 0.05
        assert abs(t["sphericity"][i] - cc / a) < 0.05
        if a / cc > 1.5:  # orientation is defined for elongated particles
            assert abs(t["elevation_deg"][i] - el) < 5.0
            if el < 80:
                daz = abs((t["azimuth_deg"][i] - az + 90) % 180 - 90)
                assert daz < 5.0, (t["azimuth_deg"][i], az)
        # marching cubes closer to the smooth area than voxel faces
        assert t["surface_area_um2"][i] < t["surface_area_voxel_faces_um2"][i]
    s = particles.summary(t)
    assert s["count"] == 4 and s["d10_um"] <= s["d50_um"] <= s["d90_um"]


def test_watershed_separates_two_touching_spheres():
    shape = (40, 40, 60)
    z, y, x = np.indices(shape)
    lab = np.zeros(shape, np.uint8)
    lab[(z - 20) ** 2 + (y - 20) ** 2 + (x - 18) ** 2 <= 100] = ACTIVE
    lab[(z - 20) ** 2 + (y - 20) ** 2 + (x - 36) ** 2 <= 100] = ACTIVE  # overlap: a neck
    lab[18:22, 18:22, 47:50] = CBD  # CBD cap on the outside: not active, ignored
    v = Volume(lab, 1.0)
    lbl = particles.label_particles(v)
    assert lbl.max() == 2
    assert np.all((lbl > 0) == (lab == ACTIVE))
    t = particles.particle_table(v, lbl)
    assert abs(t["volume_um3"].sum() - (lab == ACTIVE).sum()) < 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_h_maxima_equals_skimage(seed):
    # same definition (reconstruction by dilation, 26-connected, float32 guard) as skimage's
    from scipy import ndimage
    from skimage.morphology import h_maxima

    f = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal((20, 23, 26)), 1.5).astype(np.float32)
    for h in (0.01, 0.05, 0.2):
        ours = particles.h_maxima(f, h)
        assert ours.any()
        np.testing.assert_array_equal(ours, h_maxima(f, np.float32(h)).astype(bool))


def test_particles_need_active_phase():
    with pytest.raises(InputError, match="no active"):
        particles.label_particles(Volume(np.zeros((6, 6, 6), np.uint8), 1.0))


# ------------------------------------------------------------------------------ fast marching
def test_travel_distance_around_a_plate_matches_analytic_path():
    n0, n1, n2 = 60, 61, 3
    lab = np.zeros((n0, n1, n2), np.uint8)
    lab[10:15, 20:41] = ACTIVE  # plate: depth 10..15, in-plane 20..41 (physical edges)
    v = Volume(lab, 1.0)
    f = travel.travel_fields(v)
    L = f["travel_distance_um"]
    assert abs(L[4, 5, 1] - 4.5) < 0.05  # free path straight down
    w, z2 = 10.5, 15.0  # half-width and depth of the plate's lower corner, from the centre line y = 30.5
    for i in (20, 30, 50):
        z = i + 0.5
        exact = z2 + np.hypot(w, z - z2)  # straight down beside the plate, then straight to the point
        assert abs(L[i, 30, 1] - exact) <= 1.0, (i, L[i, 30, 1], exact)
        # the path starts at the plate's edge on the separator plane (voxel centre beside it)
        assert abs(min(abs(f["start_1_um"][i, 30, 1] - 20.0), abs(f["start_1_um"][i, 30, 1] - 41.0))) <= 1.0
    sites = travel.reaction_site_tortuosity(v, f)
    assert np.all(sites["tau_electrode"] >= sites["tau_pore"] - 1e-6)
    assert np.all(sites["tau_pore"] >= 0.97)
    # sites on the plate's top face are reached straight down: both tortuosities 1
    top = (sites["i0"] == 9) & (sites["i1"] == 30)
    assert np.allclose(sites["tau_electrode"][top], 1.0, atol=0.03)


def test_travel_unreachable_pore_is_nan_and_errors():
    lab = np.zeros((20, 10, 10), np.uint8)
    lab[8] = ACTIVE  # a full wall: pore below is cut off from the separator
    L = travel.travel_distance(Volume(lab, 1.0))
    assert np.all(np.isnan(L[9:])) and np.all(np.isfinite(L[:8]))
    with pytest.raises(InputError, match="no pore"):
        travel.travel_distance(Volume(np.ones((5, 5, 5), np.uint8), 1.0))


# ------------------------------------------------------------------------------ interfaces, profiles
def test_specific_area_of_a_sphere_and_percolation():
    n, R, h = 64, 20, 0.5
    z, y, x = np.indices((n, n, n))
    lab = np.zeros((n, n, n), np.uint8)
    lab[(z - 32) ** 2 + (y - 32) ** 2 + (x - 32) ** 2 <= R * R] = ACTIVE
    v = Volume(lab, h)
    a = interfaces.specific_areas(v)["active_pore"]
    exact = 4 * np.pi * (R * h) ** 2 / (n * h) ** 3
    assert abs(a["marching_cubes_per_um"] - exact) / exact < 0.10
    assert a["voxel_faces_per_um"] > 1.3 * exact  # the voxel staircase overestimates
    p = interfaces.percolation(v)
    assert p["pore"]["percolating_fraction_axis0"] == 1.0
    assert p["active"]["isolated_fraction"] == 1.0


def test_pairwise_areas_of_three_layers():
    lab = np.zeros((12, 10, 10), np.uint8)
    lab[4:8] = ACTIVE
    lab[8:] = CBD
    v = Volume(lab, 1.0)
    a = interfaces.specific_areas(v)
    vol = 12 * 10 * 10
    for pair, area in (("active_pore", 100.0), ("active_cbd", 100.0), ("cbd_pore", 0.0)):
        assert abs(a[pair]["voxel_faces_per_um"] - area / vol) < 1e-12
        # the marching-cubes surface spans voxel centres: a half-voxel strip along the box faces is
        # missing, (1 - 1/n) per in-plane direction (9 x 9 of 10 x 10 here; < 1 % at 256^3)
        assert abs(a[pair]["marching_cubes_per_um"] - area * 0.81 / vol) < 1e-9


def test_slice_profiles_follow_a_porosity_gradient():
    lab = np.full((20, 10, 10), ACTIVE, np.uint8)
    for i in range(20):
        lab[i, : (i // 2) + 1] = PORE  # porosity grows with depth
    v = Volume(lab, 0.5)
    lt = poresize.local_thickness(v)
    prof = fractions.slice_profiles(v, lt)
    e = prof[0]["pore_fraction"]
    assert np.allclose(e, [((i // 2) + 1) / 10 for i in range(20)])
    assert np.all(np.isfinite(prof[0]["mean_pore_diameter_um"]))
    assert abs(prof[1]["pore_fraction"].mean() - (lab == PORE).mean()) < 1e-12
    assert prof[0]["position_um"][0] == 0.25
