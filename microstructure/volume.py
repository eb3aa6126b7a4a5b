"""The one volume type of tomocell.

A :class:`Volume` is a 3D array of canonical phase codes plus its voxel size in micrometres, and the
axis convention every stage relies on:

* axis 0 is the through-thickness direction; index 0 is the separator side, the last index the
  current-collector side;
* axes 1 and 2 are in-plane;
* ``voxel_size_um`` gives the edge lengths along axes (0, 1, 2), in micrometres (may differ);
* codes: ``PORE = 0``, ``ACTIVE = 1`` (NMC), ``CBD = 2`` (carbon-binder domain).

Arbitrary stored label values are mapped to these codes when a file is read (``--labels``); the
mapping used is kept in ``metadata['label_map']`` for provenance. The voxel size is never assumed:
constructing a Volume without a valid one is an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from tomocell.errors import InputError

PORE = 0
ACTIVE = 1
CBD = 2
PHASE_CODES: dict[str, int] = {"pore": PORE, "active": ACTIVE, "cbd": CBD}
PHASE_NAMES: dict[int, str] = {v: k for k, v in PHASE_CODES.items()}


def _check_voxel_size(voxel_size_um: Any) -> tuple[float, float, float]:
    if voxel_size_um is None:
        raise InputError("voxel size is missing: give it in micrometres (--voxel-size UM)")
    vs = np.atleast_1d(np.asarray(voxel_size_um, dtype=float))
    if vs.size == 1:
        vs = np.repeat(vs, 3)
    if vs.shape != (3,):
        raise InputError(f"voxel size must be one value or three (um), got {voxel_size_um!r}")
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise InputError(f"voxel size must be positive and finite (um), got {vs.tolist()}")
    return (float(vs[0]), float(vs[1]), float(vs[2]))


@dataclasses.dataclass
class Volume:
    """Labelled three-phase electrode volume (see module docstring for the conventions).

    Attributes:
        labels: uint8 array, shape (n0, n1, n2), values in {PORE, ACTIVE, CBD}.
        voxel_size_um: (d0, d1, d2) voxel edge lengths in micrometres.
        metadata: provenance (source file, label map, generator parameters, ...); JSON-serialisable.
    """

    labels: np.ndarray
    voxel_size_um: tuple[float, float, float]
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.voxel_size_um = _check_voxel_size(self.voxel_size_um)
        lab = np.asarray(self.labels)
        if lab.ndim != 3:
            raise InputError(f"a volume must be 3D, got shape {lab.shape}")
        if min(lab.shape) < 1:
            raise InputError(f"volume has an empty axis: shape {lab.shape}")
        if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
            raise InputError(
                f"labels must be an integer array of phase codes, got dtype {lab.dtype} "
                "(greyscale data must be segmented first: tomocell segment)"
            )
        if lab.dtype != np.uint8:
            if lab.size and (lab.min() < 0 or lab.max() > 255):
                raise InputError("labels out of range for phase codes")
            lab = lab.astype(np.uint8)
        # max() is one pass without a copy (np.unique would sort-copy the whole volume)
        if lab.size and int(lab.max()) > max(PHASE_NAMES):
            bad = np.flatnonzero(np.bincount(lab.ravel())[max(PHASE_NAMES) + 1 :]) + max(PHASE_NAMES) + 1
            raise InputError(
                f"labels contain values {bad.tolist()[:10]} that are not phase codes "
                f"{PHASE_CODES}; map stored values with --labels VALUE=PHASE,..."
            )
        self.labels = lab

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.labels.shape)  # type: ignore[return-value]

    @property
    def voxel_size_m(self) -> tuple[float, float, float]:
        return tuple(v * 1e-6 for v in self.voxel_size_um)  # type: ignore[return-value]

    @property
    def extent_um(self) -> tuple[float, float, float]:
        """Box edge lengths along axes (0, 1, 2) in micrometres."""
        return tuple(n * d for n, d in zip(self.shape, self.voxel_size_um))  # type: ignore[return-value]

    @property
    def voxel_volume_um3(self) -> float:
        d0, d1, d2 = self.voxel_size_um
        return d0 * d1 * d2

    # ------------------------------------------------------------------ phases
    def mask(self, phase: str | int) -> np.ndarray:
        code = PHASE_CODES[phase] if isinstance(phase, str) else int(phase)
        return self.labels == code

    def fractions(self) -> dict[str, float]:
        """Volume fraction of each phase (keys 'pore', 'active', 'cbd')."""
        counts = np.bincount(self.labels.ravel(), minlength=3)
        n = self.labels.size
        return {name: float(counts[code]) / n for name, code in PHASE_CODES.items()}

    def require_phases(self, *phases: str) -> None:
        """InputError naming each requested phase that is absent."""
        counts = np.bincount(self.labels.ravel(), minlength=3)
        missing = [p for p in phases if counts[PHASE_CODES[p]] == 0]
        if missing:
            raise InputError(f"volume has no {' and no '.join(missing)} phase (fractions: {self.fractions()})")

    # ------------------------------------------------------------------ helpers
    def save(self, path: str | Any) -> Any:
        """Write the volume (TIFF, NPY or HDF5 by extension, voxel size kept); returns the path."""
        from tomocell.microstructure.io import write_volume

        return write_volume(self, path)

    def with_labels(self, labels: np.ndarray, **metadata: Any) -> "Volume":
        """A new Volume with the same voxel size, new labels, metadata updated."""
        md = dict(self.metadata)
        md.update(metadata)
        return Volume(labels, self.voxel_size_um, md)

    def subvolume(self, slices: tuple[slice, slice, slice]) -> "Volume":
        return self.with_labels(np.ascontiguousarray(self.labels[slices]), parent_slices=str(slices))

    @classmethod
    def from_stored_labels(
        cls,
        stored: np.ndarray,
        voxel_size_um: Any,
        label_map: Mapping[int, str],
        metadata: dict[str, Any] | None = None,
    ) -> "Volume":
        """Map arbitrary stored label values to phase codes.

        Every value present in ``stored`` must be in ``label_map`` (value -> 'pore'|'active'|'cbd').
        """
        arr = np.asarray(stored)
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"label volume must hold integers, got dtype {arr.dtype}")
        present = np.unique(arr)
        unmapped = [int(v) for v in present if int(v) not in label_map]
        if unmapped:
            raise InputError(
                f"label values {unmapped[:10]} are not in the mapping {dict(label_map)} "
                "(give --labels VALUE=PHASE for each)"
            )
        lut_size = int(max(int(present.max()), max(label_map)) + 1) if present.size else 1
        if int(present.min()) < 0:
            raise InputError("negative label values are not supported")
        lut = np.zeros(lut_size, dtype=np.uint8)
        for v, phase in label_map.items():
            if phase not in PHASE_CODES:
                raise InputError(f"unknown phase {phase!r} for label {v} (phases: pore, active, cbd)")
            if v < lut_size:
                lut[v] = PHASE_CODES[phase]
        md = dict(metadata or {})
        md["label_map"] = {int(k): v for k, v in label_map.items()}
        return cls(lut[arr], voxel_size_um, md)
