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
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.atomic import _json_default, atomic_path
from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.microstructure.readers import FORMAT_TAG, HDF5_EXT, TIFF_EXT, read_any, resolve_voxel_size
from tomocell.microstructure.volume import PHASE_CODES, PHASE_NAMES, Volume

log = get_logger("microstructure.io")

#: more distinct values than this in an integer file without a label map: treated as greyscale
MAX_LABEL_VALUES = 16
_SLAB = 64  # slices per chunk when scanning/mapping large arrays


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
    arr, meta, p = read_any(path, dataset=dataset, raw_shape=raw_shape, raw_dtype=raw_dtype, byte_order=byte_order, mmap=mmap)
    ours = meta.get("format") == FORMAT_TAG or bool(meta.get("tomocell"))
    user_map = labels is not None
    vs, vs_source = resolve_voxel_size(voxel_size_um, meta, p)
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
    arr, meta, p = read_any(path, dataset=dataset, raw_shape=raw_shape, raw_dtype=raw_dtype, byte_order=byte_order,
                             mmap=mmap, out_bytes_per_voxel=4.0)  # the float32 copy
    vs, _ = resolve_voxel_size(voxel_size_um, meta, p)
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
