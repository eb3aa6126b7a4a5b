"""Low-level readers of the volume formats (:func:`tomocell.microstructure.io.read_volume` uses them).

TIFF stacks and TIFF directories (tifffile, memory-mapped where the file allows), raw binary with a
shape, dtype and byte order (memory-mapped), ``.npy`` (memory-mapped) and HDF5 (h5py, read lazily by
slabs); each returns the array and the metadata the file carries (voxel size, tomocell's own JSON).
:func:`read_any` picks the reader by extension after checking the memory a read needs, and
:func:`resolve_voxel_size` reconciles the voxel size given by the user with the file's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.config import parse_voxel_size
from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.microstructure.volume import _check_voxel_size

log = get_logger("microstructure.io")

TIFF_EXT = (".tif", ".tiff")
HDF5_EXT = (".h5", ".hdf5")
FORMAT_TAG = "tomocell-volume-1"


def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _tiff_dir_files(path: Path) -> list[Path]:
    files = sorted((f for f in path.iterdir() if f.is_file() and f.suffix.lower() in TIFF_EXT), key=_natural_key)
    if not files:
        raise InputError(f"directory {path} holds no .tif/.tiff slices")
    return files


def _read_tiff(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            arr = tf.asarray()
            meta: dict[str, Any] = {}
            shaped = tf.shaped_metadata
            if shaped and isinstance(shaped[0], dict):
                meta = _unpack_tiff_meta(dict(shaped[0]))
            ij = tf.imagej_metadata
            if ij and "spacing" in ij and not meta.get("tomocell"):
                unit = str(ij.get("unit", "")).lower().replace("\\u00b5", "u").replace("µ", "u")
                page = tf.pages[0]
                xres = page.tags.get("XResolution")
                yres = page.tags.get("YResolution")
                if unit in ("um", "micron", "microns", "micrometer", "micrometre") and xres and yres:
                    dx = xres.value[1] / xres.value[0]
                    dy = yres.value[1] / yres.value[0]
                    meta["_imagej_voxel_size_um"] = (float(ij["spacing"]), float(dy), float(dx))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read TIFF {path}: {exc}") from exc
    return arr, meta


def _read_tiff_dir(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    files = _tiff_dir_files(path)
    first = None
    slices = []
    for f in files:
        try:
            s = tifffile.imread(f)
        except Exception as exc:
            raise InputError(f"cannot read TIFF slice {f}: {exc}") from exc
        if s.ndim != 2:
            raise InputError(f"slice {f} is not 2D (shape {s.shape}); a slice directory needs one 2D image per file")
        if first is None:
            first = s
        elif s.shape != first.shape or s.dtype != first.dtype:
            raise InputError(
                f"slice {f.name} has shape {s.shape} / dtype {s.dtype}, but {files[0].name} has {first.shape} / {first.dtype}"
            )
        slices.append(s)
    return np.stack(slices, axis=0), {**_sidecar(path), "n_slices": len(files)}


def _read_raw(path: Path, shape: Any, dtype: Any, byte_order: str, mmap: bool) -> np.ndarray:
    if shape is None or dtype is None:
        raise InputError(f"RAW file {path}: give its shape (n0,n1,n2) and dtype (e.g. uint8), e.g. --raw-shape 100,200,200 --raw-dtype uint8")
    try:
        shp = tuple(int(s) for s in (shape.split(",") if isinstance(shape, str) else shape))
    except ValueError:
        raise InputError(f"RAW shape {shape!r} is not three integers") from None
    if len(shp) != 3 or min(shp) < 1:
        raise InputError(f"RAW shape must be three positive integers, got {shp}")
    if byte_order not in ("little", "big"):
        raise InputError(f"byte order must be 'little' or 'big', got {byte_order!r}")
    try:
        dt = np.dtype(dtype).newbyteorder("<" if byte_order == "little" else ">")
    except TypeError:
        raise InputError(f"RAW dtype {dtype!r} is not a NumPy dtype name (uint8, uint16, float32, ...)") from None
    expected = int(np.prod(shp)) * dt.itemsize
    size = path.stat().st_size
    if size != expected:
        raise InputError(
            f"RAW file {path} has {size} bytes, but shape {shp} x {dt.name} ({dt.itemsize} B) needs {expected}: "
            "check shape, dtype and header bytes"
        )
    if mmap:
        return np.memmap(path, dtype=dt, mode="r", shape=shp)
    return np.fromfile(path, dtype=dt).reshape(shp)


def _sidecar(path: Path) -> dict[str, Any]:
    """Metadata from ``<file>.json`` (NPY/RAW) or ``volume.json`` (slice directory), if present."""
    side = path / "volume.json" if path.is_dir() else Path(str(path) + ".json")
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"sidecar {side} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise InputError(f"sidecar {side} must hold a JSON object")
    return meta


def _read_npy(path: Path, mmap: bool) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"cannot read NPY file {path}: {exc}") from exc
    return arr, _sidecar(path)


def _read_hdf5(path: Path, dataset: str | None, lazy: bool = False) -> tuple[Any, dict[str, Any]]:
    """Dataset as an array, or (``lazy``) as the open h5py Dataset, read slab by slab by the caller."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        raise InputError(f"cannot open HDF5 file {path}: {exc}") from exc
    try:
        if dataset is None:
            found: list[str] = []
            f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None)
            if len(found) == 1:
                dataset = found[0]
            elif "labels" in found:
                dataset = "labels"
            else:
                raise InputError(f"HDF5 file {path}: choose the dataset (--dataset), 3D datasets found: {found or 'none'}")
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise InputError(f"HDF5 file {path} has no dataset {dataset!r}")
        ds = f[dataset]
        if ds.ndim == 3 and not lazy:
            _check_read_memory(path, tuple(ds.shape), ds.dtype, 1.0, False)
        meta: dict[str, Any] = {}
        for src in (f.attrs, ds.attrs):
            for k, v in src.items():
                meta[k] = v.decode() if isinstance(v, bytes) else v
        if "tomocell" in meta and isinstance(meta["tomocell"], str):
            try:
                meta.update(json.loads(meta.pop("tomocell")))
            except json.JSONDecodeError as exc:
                raise InputError(f"HDF5 file {path}: corrupt tomocell metadata: {exc}") from exc
        meta["dataset"] = dataset
        if lazy:
            return ds, meta  # the Dataset keeps the file open until it is released
        arr = ds[()]
    except BaseException:
        f.close()
        raise
    f.close()
    return arr, meta


def _peek(p: Path, ext: str, dataset: str | None, raw_shape: Any, raw_dtype: Any) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of the stored array from the file's header, without reading the data (None if
    the format cannot tell cheaply; the reader then reports what is wrong)."""
    try:
        if ext == ".npy":
            with open(p, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
            return tuple(shape), np.dtype(dtype)
        if ext == ".raw" and raw_shape is not None and raw_dtype is not None:
            shp = tuple(int(s) for s in (raw_shape.split(",") if isinstance(raw_shape, str) else raw_shape))
            return shp, np.dtype(raw_dtype)
        if ext in TIFF_EXT:
            import tifffile

            with tifffile.TiffFile(p) as tf:
                s = tf.series[0]
                return tuple(s.shape), np.dtype(s.dtype)
        if p.is_dir():
            import tifffile

            files = _tiff_dir_files(p)
            with tifffile.TiffFile(files[0]) as tf:
                s = tf.series[0]
                return (len(files), *s.shape), np.dtype(s.dtype)
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - unreadable header: the reader gives the precise error
        return None
    return None  # HDF5: checked from the dataset's shape in _read_hdf5


def _check_read_memory(p: Path, shape: tuple[int, ...], dtype: np.dtype, out_bytes_per_voxel: float, mmap: bool) -> None:
    from tomocell.memory import check_memory

    n = float(np.prod([float(s) for s in shape]))
    need = (0.0 if mmap else n * dtype.itemsize) + n * out_bytes_per_voxel
    check_memory(need, f"reading {p} ({' x '.join(str(s) for s in shape)} {dtype.name})",
                 "read it memory-mapped (.npy/.raw/.h5 with mmap=True), crop it, or use a machine with more memory")


def read_any(
    path: str | os.PathLike[str], *, dataset: str | None, raw_shape: Any, raw_dtype: Any, byte_order: str, mmap: bool,
    out_bytes_per_voxel: float = 1.0,
) -> tuple[np.ndarray, dict[str, Any], Path]:
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p}")
    ext = p.suffix.lower()
    peek = _peek(p, ext, dataset, raw_shape, raw_dtype)
    if peek is not None and len(peek[0]) == 3:
        _check_read_memory(p, peek[0], peek[1], out_bytes_per_voxel, mmap and ext in (".npy", ".raw"))
    if p.is_dir():
        arr, meta = _read_tiff_dir(p)
    elif ext in TIFF_EXT:
        arr, meta = _read_tiff(p)
    elif ext == ".raw":
        meta = _sidecar(p)
        if meta.get("format") == FORMAT_TAG and raw_shape is None and raw_dtype is None:
            raw_shape, raw_dtype, byte_order = meta["shape"], meta["dtype"], meta.get("byte_order", "little")
        arr = _read_raw(p, raw_shape, raw_dtype, byte_order, mmap)
    elif ext == ".npy":
        arr, meta = _read_npy(p, mmap)
    elif ext in HDF5_EXT:
        arr, meta = _read_hdf5(p, dataset, lazy=mmap)
    else:
        raise InputError(f"unknown volume format {p.suffix!r} for {p} (use .tif, .tiff, a TIFF-slice directory, .raw, .npy, .h5)")
    if arr.ndim != 3:
        raise InputError(f"{p}: expected a 3D volume, got shape {arr.shape}")
    if min(arr.shape) < 1:
        raise InputError(f"{p}: volume has an empty axis, shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool):
        raise InputError(f"{p}: unsupported dtype {arr.dtype} (need integers or floats)")
    return arr, meta, p


def resolve_voxel_size(arg: Any, meta: dict[str, Any], p: Path) -> tuple[tuple[float, float, float] | None, str | None]:
    file_vs = None
    source = None
    for key, src in (("voxel_size_um", "file metadata (voxel_size_um)"), ("element_size_um", "file metadata (element_size_um)"),
                     ("_imagej_voxel_size_um", "file metadata (ImageJ spacing/resolution)")):
        if meta.get(key) is not None:
            try:
                file_vs = _check_voxel_size(np.asarray(meta[key], dtype=float).tolist())
            except (InputError, ValueError, TypeError) as exc:
                raise InputError(f"{p}: voxel size stored in the file is invalid ({meta[key]!r}): {exc}") from None
            source = src
            break
    if arg is not None:
        vs = parse_voxel_size(arg) if isinstance(arg, str) else _check_voxel_size(arg)
        if file_vs is not None and not np.allclose(vs, file_vs, rtol=1e-6):
            log.warning("%s: voxel size %s um given overrides %s um stored in the file", p, vs, file_vs)
        return vs, "argument"
    return file_vs, source


def _unpack_tiff_meta(meta: dict[str, Any]) -> dict[str, Any]:
    if "tomocell_json" in meta:
        try:
            inner = json.loads(meta["tomocell_json"])
        except json.JSONDecodeError as exc:
            raise InputError(f"corrupt tomocell metadata in TIFF: {exc}") from exc
        return {**meta, **inner}
    return meta
