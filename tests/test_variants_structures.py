"""Structure variants: graded porosity, graded particle, thick electrode, calendering.

Hand-made volumes (spheres with a partial CBD coating, slabs) so every expected number is known.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tomocell.errors import InputError
from tomocell.microstructure.variants_calendering import calender
from tomocell.microstructure.variants_graded_particle import graded_particle, voxel_symmetries
from tomocell.microstructure.variants_graded_porosity import PAPER_BANDS_UM, graded_porosity
from tomocell.microstructure.variants_thick import thick_electrode
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


def sphere_pack(shape=(40, 40, 40), voxel=0.5, radii_um=(1.0, 4.0), target=0.3, seed=1) -> Volume:
    """Non-touching random spheres (radii in um), 70 % of a one-voxel shell around them CBD."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    n_active, n_target = 0, target * lab.size
    for _ in range(20000):
        if n_active >= n_target:
            break
        r = rng.uniform(*radii_um) / voxel
        c = rng.uniform(0, shape)
        lo = np.maximum(0, np.floor(c - r - 1).astype(int))
        hi = np.minimum(shape, np.ceil(c + r + 2).astype(int))
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        d2 = sum((g + 0.5 - cc) ** 2 for g, cc in zip(np.ogrid[sl], c))
        ball = d2 <= r * r
        if np.any(lab[sl][d2 <= (r + 1.5) ** 2] == ACTIVE):  # keep a gap: separate particles
            continue
        lab[sl][ball] = ACTIVE
        n_active += int(ball.sum())
    act = lab == ACTIVE
    coat = ndimage.binary_dilation(act) & ~act & (rng.random(shape) < 0.7)
    lab[coat] = CBD
    return Volume(lab, voxel)


@pytest.fixture(scope="module")
def pack() -> Volume:
    return sphere_pack()


# ------------------------------------------------------------------ graded porosity
def test_graded_porosity_band_exact_and_active_locked():
    vol = sphere_pack(shape=(60, 30, 30), seed=3)  # 30 um thick, 0.5 um voxels
    new, rep = graded_porosity(vol, "R2")
    assert np.array_equal(new.labels == ACTIVE, vol.labels == ACTIVE)  # active locked, bit-identical
    changed = new.labels != vol.labels
    assert np.all(vol.labels[changed] == CBD) and np.all(new.labels[changed] == PORE)
    rows = np.flatnonzero(changed.any(axis=(1, 2)))
    # R2 = [11, 22.5) um: voxel centres (i + 0.5) * 0.5 in the band -> i in [22, 45)
    assert rep["band_index"] == [22, 45]
    assert rows.min() == 22 and rows.max() == 44
    assert rep["cbd_voxels_to_pore"] == int(changed.sum()) > 0
    assert rep["band_porosity_after"] > rep["band_porosity_before"]


def test_graded_porosity_layers_known_case():
    # pore slab on top of a CBD slab; the dilation advances the boundary by whole voxel layers:
    # a voxel converts when its centre is within 0.25 um of the old boundary (ties convert)
    lab = np.full((20, 4, 4), CBD, np.uint8)
    lab[:5] = PORE
    lab[:, 0, 0] = ACTIVE  # an active column through everything stays put
    for voxel, layers in ((0.5, 1), (0.125, 2), (0.1, 3), (0.6, 0)):
        vol = Volume(lab, voxel)
        new, rep = graded_porosity(vol, "global", dilation_um=0.25)
        assert rep["dilation_layers_voxels"] == layers
        expect = lab.copy()
        cbd_rows = expect[5:5 + layers]
        cbd_rows[cbd_rows == CBD] = PORE
        assert np.array_equal(new.labels, expect), voxel
        if layers == 0:
            assert "warning" in rep


def test_graded_porosity_global_is_union_of_bands(pack):
    glob, _ = graded_porosity(pack, "global")
    union = pack.labels.copy()
    for name in PAPER_BANDS_UM:
        try:
            band, _ = graded_porosity(pack, name)
        except InputError:  # band beyond this 20 um volume
            continue
        union[band.labels != pack.labels] = PORE
    assert np.array_equal(glob.labels, union)
    with pytest.raises(InputError, match="holds no voxel"):
        graded_porosity(pack, "R3")  # starts at 22.5 um, the volume is 20 um thick


# ------------------------------------------------------------------ graded particle
def test_graded_particle_restores_active_fraction(pack):
    new, rep = graded_particle(pack, band_um=8.0, erosion_um=1.0, seed=2)
    n_band = int(round(8.0 / 0.5))
    assert rep["band_index"] == [0, n_band]
    # outside the band nothing changes, bit for bit
    assert np.array_equal(new.labels[n_band:], pack.labels[n_band:])
    # active volume restored within 1 % in the band (and so globally)
    before = int((pack.labels[:n_band] == ACTIVE).sum())
    after = int((new.labels[:n_band] == ACTIVE).sum())
    assert after == rep["band_active_voxels_output"]  # placed particles never overlapped active voxels
    assert abs(after - before) <= 0.01 * before
    assert abs(new.fractions()["active"] - pack.fractions()["active"]) <= 0.01 * pack.fractions()["active"]
    assert rep["band_active_voxels_after_erosion"] < 0.8 * before  # the erosion really removed material
    # more, smaller particles in the band: the band's active surface grows
    def surface(v):
        a = v.labels[:n_band] == ACTIVE
        return int((a & ~ndimage.binary_erosion(a, border_value=1)).sum())
    assert surface(new) > surface(pack)
    assert rep["templates"]["source"] == "whole particles"
    assert all(2.0 <= d <= 3.0 for d in rep["templates"]["diameters_um"])
    # reproducible
    again, _ = graded_particle(pack, band_um=8.0, erosion_um=1.0, seed=2)
    assert np.array_equal(again.labels, new.labels)


def test_graded_particle_erosion_depth_known_case():
    # one big sphere (r = 5 um) inside the band; small spheres below the band as the template source
    vox = 0.5
    shape = (60, 30, 30)
    lab = np.zeros(shape, np.uint8)
    z, y, x = np.indices(shape)
    big = ((z + 0.5 - 12) ** 2 + (y + 0.5 - 15) ** 2 + (x + 0.5 - 15) ** 2) * vox**2 <= 5.0**2
    lab[big] = ACTIVE
    for cz, cy, cx in ((45, 6, 6), (45, 22, 22), (52, 8, 22)):
        lab[((z + 0.5 - cz) ** 2 + (y + 0.5 - cy) ** 2 + (x + 0.5 - cx) ** 2) * vox**2 <= 1.25**2] = ACTIVE
    vol = Volume(lab, vox)
    new, rep = graded_particle(vol, band_um=12.0, erosion_um=2.0, seed=0)
    # the core (centre farther than erosion + half a voxel from the surface) is untouched
    core = ((z + 0.5 - 12) ** 2 + (y + 0.5 - 15) ** 2 + (x + 0.5 - 15) ** 2) * vox**2 <= (5.0 - 2.0 - 0.5) ** 2
    assert np.all(new.labels[core] == ACTIVE)
    shell_expected = 4 / 3 * np.pi * (5.0**3 - 3.0**3) / vox**3
    assert rep["eroded_voxels"] == pytest.approx(shell_expected, rel=0.15)
    assert abs(rep["band_active_relative_error"]) <= 0.01


def test_graded_particle_bad_input(pack):
    with pytest.raises(InputError):
        graded_particle(pack, band_um=-1)
    with pytest.raises(InputError):
        graded_particle(pack, small_diameter_um=(3.0, 2.0))


def test_voxel_symmetries_respect_anisotropy():
    assert len(voxel_symmetries((1.0, 1.0, 1.0))) == 48
    assert len(voxel_symmetries((2.0, 1.0, 1.0))) == 16  # swap of axes 1, 2 only
    assert len(voxel_symmetries((3.0, 2.0, 1.0))) == 8  # flips only


# ------------------------------------------------------------------ thick electrode
def test_thick_mirror_stacking(pack):
    thick, rep = thick_electrode(pack, thickness_um=30.0)
    n = pack.shape[0]
    assert thick.shape == (60, 40, 40) and thick.extent_um[0] == 30.0
    assert np.array_equal(thick.labels[:n], pack.labels)  # separator side is the input itself
    assert np.array_equal(thick.labels[n:], pack.labels[::-1][:20])  # mirror plane at the seam
    assert np.array_equal(thick.labels[n - 1], thick.labels[n])
    for k, f in pack.fractions().items():
        assert thick.fractions()[k] == pytest.approx(f, abs=0.03)
    assert rep["blocks"][1]["mirrored"] is True


# ------------------------------------------------------------------ calendering
@pytest.mark.parametrize("strain,slices", [(0.075, 37), (0.15, 34), (0.225, 31)])
def test_calender_strain_exact_and_active_conserved(pack, strain, slices):
    new, rep = calender(pack, strain)
    assert new.shape == (slices, 40, 40)
    assert rep["strain"] == pytest.approx(strain, abs=1e-12)
    assert new.extent_um[0] == pytest.approx(pack.extent_um[0] * (1 - strain), abs=1e-12)
    assert int((new.labels == ACTIVE).sum()) == int((pack.labels == ACTIVE).sum())
    assert rep["porosity"] < rep["porosity_input"]
    cbd_out = int((new.labels == CBD).sum()) * new.voxel_volume_um3
    assert rep["cbd_volume_um3_input"] == pytest.approx(
        cbd_out + rep["cbd_compacted_volume_um3"] + rep["cbd_crushed_volume_um3"])


def test_calender_any_strain_and_monotonic(pack):
    poro = []
    for s in (0.0, 0.07, 0.3):
        new, rep = calender(pack, s)
        assert abs(rep["strain"] - s) <= 0.5 / pack.shape[0]
        poro.append(rep["porosity"])
    assert poro[0] == pack.fractions()["pore"]
    assert poro[0] > poro[1] > poro[2]
    assert np.array_equal(calender(pack, 0.0)[0].labels, pack.labels)
    with pytest.raises(InputError):
        calender(pack, 0.95)


def test_calender_free_particle_moves_rigidly():
    lab = np.zeros((40, 20, 20), np.uint8)
    z, y, x = np.indices(lab.shape)
    ball = (z - 15.0) ** 2 + (y - 10.0) ** 2 + (x - 10.0) ** 2 <= 16
    coat = ndimage.binary_dilation(ball) & ~ball
    lab[ball] = ACTIVE
    lab[coat] = CBD  # bonded coating (within cbd_attach_um) travels with the particle
    vol = Volume(lab, 0.5)
    new, rep = calender(vol, 0.25)  # 40 -> 30 slices, shift 10
    h_c = 40 - 0.5 - 15.0
    delta = int(round(0.25 * h_c))
    expect = np.zeros(new.shape, bool)
    zz = np.flatnonzero(ball.any(axis=(1, 2)))
    expect[zz.min() - 10 + delta:zz.max() - 10 + delta + 1] = ball[zz.min():zz.max() + 1]
    assert np.array_equal(new.labels == ACTIVE, expect)
    expect_cbd = np.zeros(new.shape, bool)
    expect_cbd[zz.min() - 11 + delta:zz.max() - 9 + delta + 1] = coat[zz.min() - 1:zz.max() + 2]
    assert np.array_equal(new.labels == CBD, expect_cbd)
    assert rep["particles_deformed"] == 0 and rep["cbd_crushed_volume_um3"] == 0
    assert rep["pore_open_to_separator_input"] == rep["pore_open_to_separator"] == 1.0


def test_pore_open_to_separator_counts_only_pore_reaching_index_0():
    from tomocell.microstructure.variants_calendering import pore_open_to_separator

    lab = np.full((10, 5, 5), ACTIVE, np.uint8)
    lab[:6, 2, 2] = PORE      # 6 voxels open to the separator face
    lab[8, 1:4, 1] = PORE     # 3-voxel pocket, closed
    lab[7, 4, 4] = PORE       # touches the pocket only diagonally: closed as well
    assert pore_open_to_separator(lab) == pytest.approx(6 / 10)
    assert pore_open_to_separator(np.full((3, 3, 3), ACTIVE, np.uint8)) == 0.0


def test_calender_slabs_crush_cbd_between_them():
    # active slab A (rows 0-9) / CBD (rows 10-29) / active slab B (rows 30-39); 25 % strain
    lab = np.full((40, 6, 6), CBD, np.uint8)
    lab[:10] = ACTIVE
    lab[30:] = ACTIVE
    lab[:, 1:3, 1:3] = np.where(lab[:, 1:3, 1:3] == CBD, PORE, lab[:, 1:3, 1:3])
    vol = Volume(lab, 0.5)
    new, rep = calender(vol, 0.25)
    assert new.shape[0] == 30
    # rigid slabs: A stays under the roll (rows 0-9), B on the collector (rows 20-29)
    assert np.all(new.labels[:10] == ACTIVE) and np.all(new.labels[20:] == ACTIVE)
    assert not np.any(new.labels[10:20] == ACTIVE)
    assert rep["particles_deformed"] == 0
    # the 20-row CBD layer now fills 10 rows: the rest was compacted or crushed
    area = 36 - 4
    assert int((new.labels == CBD).sum()) == 10 * area
    lost = rep["cbd_compacted_volume_um3"] + rep["cbd_crushed_volume_um3"]
    assert lost == pytest.approx(10 * area * vol.voxel_volume_um3)


def test_calender_packed_particle_deforms_at_constant_volume():
    # a column taller than the compressed box must flatten sideways
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[:, 8:12, 8:12] = ACTIVE
    vol = Volume(lab, 1.0)
    new, rep = calender(vol, 0.2)
    act = new.labels == ACTIVE
    assert int(act.sum()) == int(lab.astype(bool).sum())
    assert rep["particles_deformed"] == 1
    assert int(act.any(axis=0).sum()) > 16  # footprint grew (horizontal deformation)


def test_thick_generate_uses_recorded_generator_and_variants_chain():
    generate_electrode = pytest.importorskip("tomocell.microstructure.synthetic").generate_electrode

    base = generate_electrode(box_um=(20.0, 16.0, 16.0), voxel_size_um=0.5, d90_um=9.0, seed=1)
    thick, rep = thick_electrode(base, thickness_um=30.0, method="generate")
    assert thick.shape == (60, 32, 32)
    gen = rep["blocks"][0]["generator"]
    assert gen["d90_um"] == 9.0 and gen["seed"] == 1 and tuple(gen["box_um"]) == (30.0, 16.0, 16.0)
    for k in ("active", "cbd"):
        assert thick.fractions()[k] == pytest.approx(base.fractions()[k], abs=0.05)
    cal, _ = calender(thick, 0.1)
    assert [v["operation"] for v in cal.metadata["variants"]] == ["thick_electrode", "calender"]
    assert "particles" not in cal.metadata  # the generator's ground truth no longer applies
    with pytest.raises(InputError, match="synthetic generator"):
        thick_electrode(Volume(np.zeros((4, 4, 4), np.uint8), 1.0), 8.0, method="generate")


def test_graded_particle_dense_electrode_restored():
    # a realistic, dense synthetic electrode (active ~55 %): random placement alone jams, the exact
    # FFT search must still restore the active volume within 1 %
    generate_electrode = pytest.importorskip("tomocell.microstructure.synthetic").generate_electrode

    vol, ids = generate_electrode(box_um=(20.0, 16.0, 16.0), voxel_size_um=0.5, d90_um=9.0, seed=1,
                                  return_particle_ids=True)
    ids = np.where(vol.labels == ACTIVE, ids, 0)
    lonely = (vol.labels == ACTIVE) & (ids == 0)
    ids[lonely] = ids.max() + 1 + np.arange(int(lonely.sum()))  # stray voxels: own particles
    new, rep = graded_particle(vol, band_um=8.0, erosion_um=2.0, labels=ids, seed=0)
    assert rep["band_active_voxels_after_erosion"] < 0.5 * rep["band_active_voxels_input"]
    assert abs(rep["band_active_relative_error"]) <= 0.01
    n_band = rep["band_index"][1]
    assert int((new.labels[:n_band] == ACTIVE).sum()) == rep["band_active_voxels_output"]
    assert np.array_equal(new.labels[n_band:], vol.labels[n_band:])
    assert rep["small_particles_without_solid_contact"] == 0
    assert rep["truncation_used"] <= 0.3 + 1e-9 and rep["small_particles_truncated"] <= rep["small_particles_placed"]


def test_apply_variants_from_config_steps(pack):
    from tomocell.studies.inputs import apply_variants

    vol, ids, reps = apply_variants(pack, None, [{"kind": "graded-porosity", "band": "R1"},
                                                 {"kind": "calender", "strain": 0.15}])
    direct, _ = calender(graded_porosity(pack, "R1")[0], 0.15)
    assert np.array_equal(vol.labels, direct.labels)
    assert [r["kind"] for r in reps] == ["graded_porosity", "calender"] and ids is None
    assert [v["operation"] for v in vol.metadata["variants"]] == ["graded_porosity", "calender"]
    same, _, _ = apply_variants(pack, None, {"kind": "as_prepared"})
    assert same is pack
    with pytest.raises(InputError, match="unknown variant kind"):
        apply_variants(pack, None, [{"kind": "sintering"}])
    with pytest.raises(InputError, match="graded_porosity"):
        apply_variants(pack, None, [{"kind": "graded_porosity", "bnad": "R1"}])
