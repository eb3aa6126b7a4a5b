"""Reading and writing labelled electrode volumes (and greyscale scans for segmentation).

Formats, chosen by the path:

* ``.tif`` / ``.tiff``: one multi-page TIFF, pages along axis 0 (tifffile);
* a directory: one 2D TIFF per slice along axis 0, in natural name order (``s2`` before ``s10``);
* ``.raw``: headerless binary; needs ``raw_shape``, ``raw_dtype`` and ``byte_order``;
* ``.npy``: NumPy array; tomocell writes a ``<name>.npy.json`` sidecar with voxel size and provenance;
* ``.h5`` / ``.hdf5``: HDF5 dataset (``dataset=`` path, else the only 3D dataset, else ``labels``),
  voxel size from the attribute ``voxel_size_um`` (or ``element_size_um``, Fiji/ilastik convention).

Stored label values are mapped to phases with ``labels`` ({value: 'pore'|'active'|'cbd'}, from
``tomocell.config.parse_labels``). Without a map, only files written by tomocell (their metadata says so)
are accepted: values that merely look like phase codes (0/1/2) are never taken on trust. Greyscale data
(float, or integers with many distinct values) is refused with a pointer to ``tomocell segment``.

The voxel size comes from the ``voxel_size_um`` argument (which wins) or from the file's metadata; where
it came from is kept in ``metadata['voxel_size_source']``. Neither: InputError.

``mmap=True`` memory-maps ``.npy`` and ``.raw`` inputs and reads HDF5 datasets lazily; stored values are
then scanned and mapped slab by slab, so besides the input's pages only the uint8 result is held in memory. All writes
are atomic (tomocell.atomic): a failed write leaves no file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.atomic import _json_default, atomic_path
from tomocell.config import parse_voxel_size
from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.microstructure.volume import PHASE_CODES, PHASE_NAMES, Volume, _check_voxel_size

log = get_logger("microstructure.io")

TIFF_EXT = (".tif", ".tiff")
HDF5_EXT = (".h5", ".hdf5")
FORMAT_TAG = "tomocell-volume-1"
#: more distinct values than this in an integer file without a label map: treated as greyscale
MAX_LABEL_VALUES = 16
_SLAB = 64  # slices per chunk when scanning/mapping large arrays


# ----------------------------------------------------------------------------- low-level readers
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


def _read_any(
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


def _resolve_voxel_size(arg: Any, meta: dict[str, Any], p: Path) -> tuple[tuple[float, float, float] | None, str | None]:
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


# ----------------------------------------------------------------------------- label mapping
def _distinct_values(arr: np.ndarray) -> np.ndarray:
    """Distinct values, slab by slab (bincount for small unsigned ints: no full-array sort copy)."""
    if arr.dtype == bool:
        return np.unique(arr).astype(np.uint8)
    if arr.dtype.kind == "u" and arr.dtype.itemsize <= 2:
        counts = np.zeros(1 << (8 * arr.dtype.itemsize), dtype=np.int64)
        for i in range(0, arr.shape[0], _SLAB):
            counts += np.bincount(np.asarray(arr[i:i + _SLAB]).ravel(), minlength=counts.size)
        return np.flatnonzero(counts)
    vals: np.ndarray = np.array([], dtype=arr.dtype)
    for i in range(0, arr.shape[0], _SLAB):
        vals = np.union1d(vals, np.unique(np.asarray(arr[i:i + _SLAB])))
    return vals


def _greyscale_error(p: Path, why: str) -> InputError:
    return InputError(
        f"{p} looks like a greyscale scan ({why}), not a label volume: segment it first with "
        f"`tomocell segment {p} --out DIR`, or give --labels VALUE=PHASE for every stored value"
    )


def _map_labels(arr: np.ndarray, label_map: dict[int, str], p: Path, check_absent: bool = True) -> np.ndarray:
    present = _distinct_values(arr)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(present)):
        n_bad = sum(int(np.count_nonzero(~np.isfinite(np.asarray(arr[i:i + _SLAB])))) for i in range(0, arr.shape[0], _SLAB))
        raise InputError(f"{p}: {n_bad} voxels are NaN or infinite; a label volume needs a finite phase value "
                         "in every voxel (fix or mask them first)")
    if check_absent:
        absent = {int(v): n for v, n in label_map.items() if v not in {int(x) for x in present}}
        if absent:
            raise InputError(
                f"{p}: label value(s) {absent} given in the mapping do not occur in the file (values present: "
                f"{[x.item() for x in present[:10]]}); check --labels"
            )
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(present)) or np.any(present != np.round(present)):
            raise _greyscale_error(p, f"dtype {arr.dtype} with non-integer values")
    unmapped = [v.item() for v in present if int(v) not in label_map]
    if unmapped:
        hint = " (this many values suggests greyscale: run `tomocell segment`)" if len(present) > MAX_LABEL_VALUES else ""
        raise InputError(
            f"{p}: stored values {unmapped[:10]}{' ...' if len(unmapped) > 10 else ''} are not in the label mapping "
            f"{label_map}{hint}; give --labels VALUE=PHASE for each"
        )
    for v, ph in label_map.items():
        if ph not in PHASE_CODES:
            raise InputError(f"unknown phase {ph!r} for label {v} (phases: pore, active, cbd)")
    lut_keys = np.array(sorted(label_map), dtype=np.int64)
    lut_vals = np.array([PHASE_CODES[label_map[k]] for k in lut_keys], dtype=np.uint8)
    out = np.empty(arr.shape, dtype=np.uint8)
    for i in range(0, arr.shape[0], _SLAB):
        chunk = np.asarray(arr[i:i + _SLAB]).astype(np.int64)
        out[i:i + _SLAB] = lut_vals[np.searchsorted(lut_keys, chunk)]
    return out


# ----------------------------------------------------------------------------- public API
def read_volume(
    path: str | os.PathLike[str],
    *,
    voxel_size_um: Any = None,
    labels: dict[int, str] | None = None,
    dataset: str | None = None,
    raw_shape: Any = None,
    raw_dtype: Any = None,
    byte_order: str = "little",
    mmap: bool = False,
) -> Volume:
    """Read a labelled volume as a :class:`Volume` (see module docstring for formats and rules).

    Args:
        path: file or TIFF-slice directory.
        voxel_size_um: one value or (d0, d1, d2) in micrometres; overrides the file's metadata.
        labels: {stored value: phase name}; required unless the file was written by tomocell.
        dataset: HDF5 dataset path.
        raw_shape, raw_dtype, byte_order: layout of a headerless ``.raw`` file.
        mmap: memory-map ``.npy``/``.raw`` inputs.
    """
    arr, meta, p = _read_any(path, dataset=dataset, raw_shape=raw_shape, raw_dtype=raw_dtype, byte_order=byte_order, mmap=mmap)
    ours = meta.get("format") == FORMAT_TAG or bool(meta.get("tomocell"))
    user_map = labels is not None
    vs, vs_source = _resolve_voxel_size(voxel_size_um, meta, p)
    if vs is None:
        raise InputError(f"voxel size of {p} is unknown (not stored in the file): give it in micrometres (--voxel-size UM)")
    if labels is None:
        if ours:
            stored_map = meta.get("label_map") or {str(c): n for c, n in PHASE_NAMES.items()}
            labels = {int(k): str(v) for k, v in stored_map.items()}
        else:
            if np.issubdtype(arr.dtype, np.floating):
                vals = _distinct_values(arr)
                if vals.size > MAX_LABEL_VALUES or np.any(vals != np.round(vals)):
                    raise _greyscale_error(p, f"dtype {arr.dtype}, {vals.size} distinct values")
            else:
                vals = _distinct_values(arr)
                if vals.size > MAX_LABEL_VALUES:
                    raise _greyscale_error(p, f"{vals.size} distinct values")
            raise InputError(
                f"{p} stores label values {[v.item() for v in vals]} but no label mapping was given and the file was not "
                "written by tomocell: say which value is which phase, e.g. --labels 0=pore,85=active,170=cbd"
            )
    elif np.issubdtype(arr.dtype, np.floating) and _distinct_values(arr).size > MAX_LABEL_VALUES:
        raise _greyscale_error(p, f"dtype {arr.dtype} with many distinct values")
    codes = _map_labels(arr, labels, p, check_absent=user_map)
    if np.count_nonzero(np.bincount(codes.ravel(), minlength=3)) < 2:
        raise InputError(f"{p} holds only one phase ({PHASE_NAMES[int(codes.flat[0])]}): nothing to model")
    md: dict[str, Any] = {}
    if ours and isinstance(meta.get("metadata"), dict):
        md.update(meta["metadata"])
    md.update({
        "source": str(p),
        "voxel_size_source": vs_source,
        "written_by_tomocell": ours,
        "label_map": {int(k): v for k, v in labels.items()},
    })
    if "dataset" in meta:
        md["dataset"] = meta["dataset"]
    return Volume(codes, vs, md)


def read_greyscale(
    path: str | os.PathLike[str],
    *,
    voxel_size_um: Any = None,
    dataset: str | None = None,
    raw_shape: Any = None,
    raw_dtype: Any = None,
    byte_order: str = "little",
    mmap: bool = False,
) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """Read a greyscale scan for segmentation: (float32 array, voxel size in um or None if unknown).

    InputError on NaN/inf or a constant image (nothing to segment).
    """
    arr, meta, p = _read_any(path, dataset=dataset, raw_shape=raw_shape, raw_dtype=raw_dtype, byte_order=byte_order,
                             mmap=mmap, out_bytes_per_voxel=4.0)  # the float32 copy
    vs, _ = _resolve_voxel_size(voxel_size_um, meta, p)
    grey = np.asarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(grey)):
        n_bad = int(np.count_nonzero(~np.isfinite(grey)))
        raise InputError(f"{p}: greyscale has {n_bad} NaN/inf voxels; fix or mask them before segmenting")
    if float(grey.min()) == float(grey.max()):
        raise InputError(f"{p}: greyscale is constant ({float(grey.min())}): only one phase, nothing to segment")
    return grey, vs


def _file_metadata(volume: Volume) -> dict[str, Any]:
    from tomocell import __version__

    md = {k: v for k, v in volume.metadata.items() if k not in ("label_map", "voxel_size_source", "written_by_tomocell", "source")}
    return {
        "format": FORMAT_TAG,
        "tomocell": __version__,
        "voxel_size_um": list(volume.voxel_size_um),
        "label_map": {str(c): n for c, n in PHASE_NAMES.items()},
        "axes": "axis 0 = through-thickness (index 0 = separator side), axes 1-2 in-plane",
        "metadata": json.loads(json.dumps(md, default=_json_default)),
    }


def write_volume(volume: Volume, path: str | os.PathLike[str]) -> Path:
    """Write ``volume`` (uint8 phase codes) with voxel size and provenance; atomic.

    ``.tif``/``.tiff`` (JSON in the TIFF description, plus resolution tags), ``.h5``/``.hdf5`` (dataset
    ``labels`` with attributes ``voxel_size_um`` and ``tomocell``), ``.npy`` (+ ``.npy.json`` sidecar),
    ``.raw`` (uint8, + ``.raw.json`` sidecar with shape and dtype), or a path without suffix: a directory of
    2D TIFF slices along axis 0 (``slice_00000.tif`` ...) with ``volume.json``.
    """
    if not isinstance(volume, Volume):
        raise InputError(f"write_volume needs a Volume, got {type(volume).__name__}")
    p = Path(path)
    ext = p.suffix.lower()
    fmeta = _file_metadata(volume)
    labels = np.ascontiguousarray(volume.labels, dtype=np.uint8)
    if ext in TIFF_EXT:
        import tifffile

        d0, d1, d2 = volume.voxel_size_um
        with atomic_path(p) as tmp:
            tifffile.imwrite(
                tmp, labels, metadata={"axes": "ZYX", "tomocell_json": json.dumps(fmeta)},
                resolution=(1.0 / d2, 1.0 / d1), compression="zlib",
            )
    elif ext in HDF5_EXT:
        import h5py

        with atomic_path(p) as tmp:
            with h5py.File(tmp, "w") as f:
                ds = f.create_dataset("labels", data=labels, compression="gzip", compression_opts=4,
                                      chunks=tuple(min(64, s) for s in labels.shape))
                ds.attrs["voxel_size_um"] = np.asarray(volume.voxel_size_um, dtype=float)
                ds.attrs["element_size_um"] = np.asarray(volume.voxel_size_um, dtype=float)
                ds.attrs["tomocell"] = json.dumps(fmeta)
    elif ext in (".npy", ".raw"):
        side = Path(str(p) + ".json")
        if ext == ".raw":
            fmeta.update(shape=list(labels.shape), dtype="uint8", byte_order="little")
        with atomic_path(side) as tmp_side, atomic_path(p) as tmp:
            if ext == ".npy":
                np.save(tmp, labels, allow_pickle=False)
            else:
                labels.tofile(tmp)
            tmp_side.write_text(json.dumps(fmeta, indent=1))
    elif ext == "":
        import tifffile

        from tomocell.atomic import atomic_dir

        if p.is_dir() and any(p.iterdir()) and not (p / "volume.json").is_file():
            raise InputError(f"{p} is a non-empty directory that is not a TIFF-slice volume written by tomocell: "
                             "it is not replaced; give a new path")
        with atomic_dir(p, replace=True) as tmp_dir:
            width = max(5, len(str(labels.shape[0])))
            for i in range(labels.shape[0]):
                tifffile.imwrite(tmp_dir / f"slice_{i:0{width}d}.tif", labels[i], compression="zlib")
            (tmp_dir / "volume.json").write_text(json.dumps(fmeta, indent=1))
    else:
        raise InputError(f"cannot write volume format {p.suffix!r} ({p}): use .tif, .h5, .npy, .raw or a directory")
    return p


def _unpack_tiff_meta(meta: dict[str, Any]) -> dict[str, Any]:
    if "tomocell_json" in meta:
        try:
            inner = json.loads(meta["tomocell_json"])
        except json.JSONDecodeError as exc:
            raise InputError(f"corrupt tomocell metadata in TIFF: {exc}") from exc
        return {**meta, **inner}
    return meta
