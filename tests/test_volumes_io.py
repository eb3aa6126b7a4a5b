"""Volume I/O: exact round trips for every format, label mapping, voxel-size provenance, bad input."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from tomocell.errors import InputError
from tomocell.microstructure.io import read_greyscale, read_volume, write_volume
from tomocell.microstructure.volume import Volume


@pytest.fixture
def vol() -> Volume:
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 3, size=(7, 9, 11)).astype(np.uint8)
    return Volume(lab, (0.126, 0.2, 0.3), {"generator": {"seed": 3, "box_um": [1.0, 2.0, 3.0]}, "note": "x"})


@pytest.mark.parametrize("ext", [".tif", ".tiff", ".h5", ".hdf5", ".npy", ".raw", ""])
@pytest.mark.parametrize("mmap", [False, True])
def test_write_read_round_trip_is_exact(tmp_path: Path, vol: Volume, ext: str, mmap: bool) -> None:
    p = write_volume(vol, tmp_path / f"v{ext}")
    back = read_volume(p, mmap=mmap)
    assert back.labels.dtype == np.uint8
    assert np.array_equal(back.labels, vol.labels)
    assert back.voxel_size_um == vol.voxel_size_um  # exact floats, anisotropic order kept
    assert back.metadata["generator"] == vol.metadata["generator"]
    assert back.metadata["written_by_tomocell"] is True
    assert back.metadata["voxel_size_source"].startswith("file metadata")
    # no temporary files left next to the output
    sidecar = [f"v{ext}.json"] if ext in (".npy", ".raw") else []
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted([f"v{ext}"] + sidecar)
    if ext == "":
        assert len(list(p.glob("slice_*.tif"))) == vol.shape[0]


def test_voxel_size_argument_overrides_file(tmp_path: Path, vol: Volume) -> None:
    p = write_volume(vol, tmp_path / "v.tif")
    back = read_volume(p, voxel_size_um=0.5)
    assert back.voxel_size_um == (0.5, 0.5, 0.5)
    assert back.metadata["voxel_size_source"] == "argument"
    assert read_volume(p, voxel_size_um="0.1,0.2,0.3").voxel_size_um == (0.1, 0.2, 0.3)  # CLI strings


def _stored(vol: Volume) -> np.ndarray:
    """The volume with foreign label values 0/85/170 (as the GAN file)."""
    return np.array([0, 85, 170], dtype=np.uint8)[vol.labels]


LABELS = {0: "pore", 85: "active", 170: "cbd"}


def test_foreign_multipage_tiff(tmp_path: Path, vol: Volume) -> None:
    tifffile.imwrite(tmp_path / "f.tif", _stored(vol))
    back = read_volume(tmp_path / "f.tif", labels=LABELS, voxel_size_um=(0.126, 0.2, 0.3))
    assert np.array_equal(back.labels, vol.labels)
    assert back.metadata["label_map"] == LABELS


def test_tiff_slice_directory_natural_order(tmp_path: Path, vol: Volume) -> None:
    d = tmp_path / "slices"
    d.mkdir()
    st = _stored(vol)
    for i in range(st.shape[0]):  # names whose lexical order differs from numeric order
        tifffile.imwrite(d / f"slice_{i + 1}.tif", st[i])
    back = read_volume(d, labels=LABELS, voxel_size_um=(0.126, 0.2, 0.3))
    assert np.array_equal(back.labels, vol.labels)


def test_tiff_slice_directory_mismatch(tmp_path: Path) -> None:
    d = tmp_path / "slices"
    d.mkdir()
    tifffile.imwrite(d / "a1.tif", np.zeros((4, 4), np.uint8))
    tifffile.imwrite(d / "a2.tif", np.zeros((4, 5), np.uint8))
    with pytest.raises(InputError, match="shape"):
        read_volume(d, labels={0: "pore"}, voxel_size_um=1)


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("order", ["little", "big"])
def test_raw_round_trip(tmp_path: Path, vol: Volume, mmap: bool, order: str) -> None:
    stored = (vol.labels.astype(np.uint16) * 1000).astype(">u2" if order == "big" else "<u2")
    stored.tofile(tmp_path / "v.raw")
    back = read_volume(tmp_path / "v.raw", raw_shape=vol.shape, raw_dtype="uint16", byte_order=order, mmap=mmap,
                       labels={0: "pore", 1000: "active", 2000: "cbd"}, voxel_size_um=vol.voxel_size_um)
    assert np.array_equal(back.labels, vol.labels)


def test_raw_wrong_size_is_named(tmp_path: Path) -> None:
    np.zeros(100, np.uint8).tofile(tmp_path / "v.raw")
    with pytest.raises(InputError, match="has 100 bytes"):
        read_volume(tmp_path / "v.raw", raw_shape=(5, 5, 5), raw_dtype="uint8", labels={0: "pore"}, voxel_size_um=1)
    with pytest.raises(InputError, match="shape"):
        read_volume(tmp_path / "v.raw", labels={0: "pore"}, voxel_size_um=1)


def test_npy_mmap_and_foreign_hdf5(tmp_path: Path, vol: Volume) -> None:
    np.save(tmp_path / "f.npy", _stored(vol))
    back = read_volume(tmp_path / "f.npy", labels=LABELS, voxel_size_um=0.2, mmap=True)
    assert np.array_equal(back.labels, vol.labels)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        ds = f.create_dataset("exchange/data", data=_stored(vol))
        ds.attrs["element_size_um"] = [0.126, 0.2, 0.3]
        f.create_dataset("other2d", data=np.zeros((3, 3)))
    back = read_volume(tmp_path / "f.h5", labels=LABELS)
    assert np.array_equal(back.labels, vol.labels)
    assert back.voxel_size_um == (0.126, 0.2, 0.3)
    assert "element_size_um" in back.metadata["voxel_size_source"]
    with pytest.raises(InputError, match="no dataset"):
        read_volume(tmp_path / "f.h5", labels=LABELS, dataset="nope")


# ----------------------------------------------------------------------------- bad input
def test_codes_without_map_are_not_guessed(tmp_path: Path, vol: Volume) -> None:
    tifffile.imwrite(tmp_path / "f.tif", vol.labels)  # values 0/1/2, but not written by tomocell
    with pytest.raises(InputError, match="no label mapping"):
        read_volume(tmp_path / "f.tif", voxel_size_um=0.2)


def test_unmapped_values_named(tmp_path: Path, vol: Volume) -> None:
    tifffile.imwrite(tmp_path / "f.tif", _stored(vol))
    with pytest.raises(InputError, match=r"\[170\]"):
        read_volume(tmp_path / "f.tif", labels={0: "pore", 85: "active"}, voxel_size_um=0.2)


def test_missing_or_bad_voxel_size(tmp_path: Path, vol: Volume) -> None:
    tifffile.imwrite(tmp_path / "f.tif", _stored(vol))
    with pytest.raises(InputError, match="voxel size"):
        read_volume(tmp_path / "f.tif", labels=LABELS)
    for bad in (0, -0.1, float("nan"), (1, 2)):
        with pytest.raises(InputError, match="voxel size"):
            read_volume(tmp_path / "f.tif", labels=LABELS, voxel_size_um=bad)


def test_greyscale_refused_with_pointer_to_segment(tmp_path: Path) -> None:
    g = np.random.default_rng(0).normal(size=(6, 6, 6)).astype(np.float32)
    tifffile.imwrite(tmp_path / "g.tif", g)
    with pytest.raises(InputError, match="tomocell segment"):
        read_volume(tmp_path / "g.tif", voxel_size_um=0.2)
    g16 = (np.arange(216) * 100).reshape(6, 6, 6).astype(np.uint16)
    tifffile.imwrite(tmp_path / "g16.tif", g16)
    with pytest.raises(InputError, match="tomocell segment"):
        read_volume(tmp_path / "g16.tif", voxel_size_um=0.2)


def test_corrupt_and_wrong_shape_files(tmp_path: Path) -> None:
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="cannot read TIFF"):
        read_volume(tmp_path / "bad.tif", labels={0: "pore"}, voxel_size_um=1)
    (tmp_path / "bad.h5").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot open HDF5"):
        read_volume(tmp_path / "bad.h5", labels={0: "pore"}, voxel_size_um=1)
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((5, 5), np.uint8))
    with pytest.raises(InputError, match="3D"):
        read_volume(tmp_path / "flat.tif", labels={0: "pore"}, voxel_size_um=1)
    with pytest.raises(InputError, match="not found"):
        read_volume(tmp_path / "absent.tif")
    with pytest.raises(InputError, match="unknown volume format"):
        (tmp_path / "x.vtk").write_text("x")
        read_volume(tmp_path / "x.vtk")


def test_failed_write_leaves_nothing(tmp_path: Path, vol: Volume) -> None:
    with pytest.raises(InputError, match="cannot write"):
        write_volume(vol, tmp_path / "v.vtk")
    # a writer that fails half-way: metadata that cannot be serialised
    bad = Volume(vol.labels, vol.voxel_size_um, {"obj": object()})
    for ext in (".tif", ".h5", ".npy", ".raw", ""):
        with pytest.raises(TypeError):
            write_volume(bad, tmp_path / f"w{ext}")
    assert list(tmp_path.iterdir()) == []


def test_writer_crash_half_way_leaves_nothing(tmp_path: Path, vol: Volume, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(path, data, **kw):  # type: ignore[no-untyped-def]
        Path(path).write_bytes(b"II*\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", crash)
    with pytest.raises(OSError, match="disk full"):
        write_volume(vol, tmp_path / "v.tif")
    with pytest.raises(OSError, match="disk full"):
        write_volume(vol, tmp_path / "slices")
    assert list(tmp_path.iterdir()) == []


def test_greyscale_reader(tmp_path: Path) -> None:
    g = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    np.save(tmp_path / "g.npy", g)
    arr, vs = read_greyscale(tmp_path / "g.npy")
    assert vs is None and np.array_equal(arr, g)
    g[1, 2, 3] = np.nan
    np.save(tmp_path / "n.npy", g)
    with pytest.raises(InputError, match="NaN"):
        read_greyscale(tmp_path / "n.npy")
    np.save(tmp_path / "c.npy", np.ones((4, 4, 4), np.float32))
    with pytest.raises(InputError, match="constant"):
        read_greyscale(tmp_path / "c.npy")


# ----------------------------------------------------------------------------- shared real data
@pytest.mark.shared_data
def test_gan_volume(gan_volume_path: Path) -> None:
    v = read_volume(gan_volume_path, labels={0: "pore", 85: "active", 170: "cbd"}, voxel_size_um=0.390625)
    assert v.shape == (256, 256, 256)
    fr = v.fractions()
    assert fr["pore"] == pytest.approx(0.450, abs=0.002)
    assert fr["active"] == pytest.approx(0.400, abs=0.002)
    assert fr["cbd"] == pytest.approx(0.150, abs=0.002)
    assert v.extent_um[0] == pytest.approx(100.0)


@pytest.mark.shared_data
def test_xct_volume_two_phases(xct_volume_path: Path) -> None:
    with pytest.raises(InputError, match="voxel size"):  # its source does not record one
        read_volume(xct_volume_path, labels={0: "cbd", 128: "active"})
    v = read_volume(xct_volume_path, labels={0: "cbd", 128: "active"}, voxel_size_um=0.25)
    fr = v.fractions()
    assert fr["active"] == pytest.approx(0.398, abs=0.002)
    assert fr["cbd"] == pytest.approx(0.602, abs=0.002) and fr["pore"] == 0.0


def test_requested_phase_absent_and_single_phase(tmp_path: Path, vol: Volume) -> None:
    st = _stored(vol)
    st[st == 170] = 0
    tifffile.imwrite(tmp_path / "f.tif", st)
    with pytest.raises(InputError, match="do not occur"):
        read_volume(tmp_path / "f.tif", labels=LABELS, voxel_size_um=0.2)
    tifffile.imwrite(tmp_path / "one.tif", np.full((4, 4, 4), 85, np.uint8))
    with pytest.raises(InputError, match="only one phase"):
        read_volume(tmp_path / "one.tif", labels={85: "active"}, voxel_size_um=0.2)


def test_imagej_tiff_voxel_size(tmp_path: Path, vol: Volume) -> None:
    tifffile.imwrite(tmp_path / "ij.tif", _stored(vol), imagej=True, resolution=(1 / 0.3, 1 / 0.2),
                     metadata={"spacing": 0.126, "unit": "um", "axes": "ZYX"})
    back = read_volume(tmp_path / "ij.tif", labels=LABELS)
    assert back.voxel_size_um == pytest.approx((0.126, 0.2, 0.3))
    assert "ImageJ" in back.metadata["voxel_size_source"]


def test_hdf5_lazy_read(tmp_path: Path, vol: Volume) -> None:
    p = write_volume(vol, tmp_path / "v.h5")
    back = read_volume(p, mmap=True)
    assert np.array_equal(back.labels, vol.labels) and back.voxel_size_um == vol.voxel_size_um
