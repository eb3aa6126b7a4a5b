"""The input volume of a study run, from a config entry, with particle identity.

A config's ``[volume]`` table is either

* ``synthetic = { box_um = [...], voxel_size_um = ..., seed = ..., ... }``: arguments of
  :func:`tomocell.microstructure.synthetic.generate_electrode` (deterministic for a seed; its
  ground-truth particle ids give particle identity), or
* ``path = "electrode.tif"`` with ``voxel_size_um`` and ``labels`` ("0=pore,85=active,170=cbd")
  when the file does not carry them (particle identity from the watershed labelling of
  :mod:`tomocell.microstructure.particles` when available, else 6-connected components).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from tomocell.config import parse_labels, parse_voxel_size
from tomocell.errors import InputError
from tomocell.log import get_logger
from tomocell.microstructure.volume import ACTIVE, Volume

log = get_logger(__name__)


def complete_ids(volume: Volume, ids: np.ndarray) -> np.ndarray:
    """Particle ids that are > 0 exactly on the active voxels: ids off the active phase are
    cleared, active voxels without an id take the nearest id (generator clean-up can add some)."""
    out = np.where(volume.labels == ACTIVE, ids, 0).astype(np.int32)
    missing = (volume.labels == ACTIVE) & (out == 0)
    if missing.any() and (out > 0).any():
        idx = ndimage.distance_transform_edt(out == 0, sampling=volume.voxel_size_um,
                                             return_distances=False, return_indices=True)
        out[missing] = out[tuple(i[missing] for i in idx)]
    return out


def load_volume_cached(spec: dict[str, Any], cache_dir: str | Path, base_dir: str | Path | None = None
                       ) -> tuple[Volume, np.ndarray | None, dict[str, Any]]:
    """:func:`load_volume_spec`, generated/labelled once per study and kept in ``cache_dir``
    (``<sha of the spec>.npz``, written atomically on rank 0), so every run of a study starts from
    the same voxels and the watershed/generation is not repeated."""
    import hashlib
    import json

    from tomocell import mpi
    from tomocell.atomic import atomic_path

    key = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"volume-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            vol = Volume(z["labels"], tuple(z["voxel_size_um"]), json.loads(str(z["metadata"])))
            ids = z["ids"] if z["ids"].size else None
            desc = json.loads(str(z["source"]))
        return vol, ids, desc
    vol, ids, desc = load_volume_spec(spec, base_dir)
    if mpi.is_root():
        from tomocell.atomic import _json_default

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, labels=vol.labels, voxel_size_um=np.asarray(vol.voxel_size_um),
                                ids=ids if ids is not None else np.zeros(0, np.int32),
                                metadata=json.dumps(vol.metadata, default=_json_default),
                                source=json.dumps(desc, default=str))
    return vol, ids, desc


def load_volume_spec(spec: dict[str, Any], base_dir: str | Path | None = None) -> tuple[Volume, np.ndarray | None, dict[str, Any]]:
    """(volume, particle ids or None, description for the run record) from a ``[volume]`` table."""
    if not isinstance(spec, dict):
        raise InputError(f"[volume] must be a table with 'synthetic' or 'path', got {spec!r}")
    if "synthetic" in spec:
        from tomocell.microstructure.synthetic import generate_electrode

        kw = dict(spec["synthetic"])
        for k in ("box_um", "sphericity"):
            if k in kw:
                kw[k] = tuple(kw[k])
        vol, ids = generate_electrode(return_particle_ids=True, **kw)
        return vol, complete_ids(vol, ids), {"synthetic": kw}
    if "path" in spec:
        from tomocell.microstructure.io import read_volume

        p = Path(spec["path"])
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        vol = read_volume(p, voxel_size_um=parse_voxel_size(spec.get("voxel_size_um")),
                          labels=parse_labels(spec.get("labels")))
        ids = None
        try:
            from tomocell.microstructure.particles import label_particles
        except ImportError:
            log.warning("particle labelling not available: particles are 6-connected active components")
        else:
            ids = complete_ids(vol, np.asarray(label_particles(vol)))
        from tomocell.manifest import sha256_of

        return vol, ids, {"path": str(p.resolve()), "sha256": sha256_of(p)}
    raise InputError("[volume] needs either 'synthetic = {...}' or 'path = \"...\"'")


#: variant kinds a study config may name, with the function each calls
VARIANT_KINDS = ("as_prepared", "graded_particle", "graded_porosity", "thick", "calender", "crop")


def apply_variants(volume: Volume, ids: np.ndarray | None, steps: list[dict[str, Any]] | dict[str, Any] | None,
                   seed: int = 0) -> tuple[Volume, np.ndarray | None, list[dict[str, Any]]]:
    """Apply structure variants in order; each step is ``{kind = ..., <parameters>}``.

    kinds: ``as_prepared`` (nothing), ``graded_particle`` (band_um, erosion_um, small_diameter_um,
    tolerance), ``graded_porosity`` (band: R1..R4/global/[start, end], dilation_um), ``thick``
    (thickness_um, method), ``calender`` (strain, cbd_attach_um), ``crop`` (width_um, offset: a lateral
    sub-volume, :mod:`tomocell.microstructure.variants_crop`). Particle ids survive the steps that keep
    every active voxel where it was (graded porosity, crop); otherwise they become None (the caller relabels
    with the characterisation's watershed if it needs them). Returns (volume, ids, reports).
    """
    from tomocell.microstructure.variants_calendering import calender
    from tomocell.microstructure.variants_crop import lateral_crop
    from tomocell.microstructure.variants_graded_particle import graded_particle
    from tomocell.microstructure.variants_graded_porosity import graded_porosity
    from tomocell.microstructure.variants_thick import thick_electrode

    if steps is None:
        steps = []
    if isinstance(steps, dict):
        steps = [steps]
    reports: list[dict[str, Any]] = []
    for step in steps:
        if not isinstance(step, dict) or "kind" not in step:
            raise InputError(f"a variant step must be a table with 'kind' ({', '.join(VARIANT_KINDS)}), got {step!r}")
        kw = {k: v for k, v in step.items() if k != "kind"}
        kind = str(step["kind"]).replace("-", "_")
        try:
            if kind == "as_prepared":
                rep: dict[str, Any] = {}
            elif kind == "graded_particle":
                if "small_diameter_um" in kw:
                    kw["small_diameter_um"] = tuple(kw["small_diameter_um"])
                volume, rep = graded_particle(volume, labels=ids, seed=kw.pop("seed", seed), **kw)
                ids = None
            elif kind == "graded_porosity":
                if isinstance(kw.get("band"), list):
                    kw["band"] = tuple(kw["band"])
                volume, rep = graded_porosity(volume, **kw)
            elif kind == "crop":
                volume, ids, rep = lateral_crop(volume, labels=ids, **kw)
            elif kind == "thick":
                volume, rep = thick_electrode(volume, **kw)
                ids = None
            elif kind == "calender":
                bodies = str(kw.pop("bodies", "watershed"))
                if bodies not in ("watershed", "components"):
                    raise InputError(f"calender: bodies must be 'watershed' or 'components', got {bodies!r}")
                if ids is None and bodies == "watershed":
                    # after a step that dropped the particle ids (thick, graded particle) the calendering
                    # model would take 6-connected active components as its rigid bodies: in a packed
                    # electrode those merge into a few bodies spanning the thickness (10-32 "particles"
                    # for 114-244), which cannot move as particles and left an empty layer at the collector
                    # (85 -> 68 um: no electronic contact at all). The watershed separates the particles.
                    from tomocell.microstructure.particles import label_particles

                    ids = complete_ids(volume, np.asarray(label_particles(volume)))
                volume, rep = calender(volume, labels=ids, seed=kw.pop("seed", seed), **kw)
                rep = {**rep, "bodies": bodies}
                ids = None
            else:
                raise InputError(f"unknown variant kind {step['kind']!r} (use {', '.join(VARIANT_KINDS)})")
        except TypeError as exc:  # unknown parameter name in the config
            raise InputError(f"variant {kind}: {exc}") from None
        rep = {k: v for k, v in rep.items() if k != "provenance"}
        reports.append({"kind": kind, **rep})
    return volume, ids, reports
