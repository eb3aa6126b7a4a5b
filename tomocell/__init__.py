"""tomocell: tomography volume -> microstructure metrics -> conformal mesh -> particle-resolved
half-cell discharge -> design studies, after Lu et al., Nat. Commun. 11, 2079 (2020).

``import tomocell as tc`` gives the stages as functions (:mod:`tomocell.api`): ``tc.read_volume``,
``tc.generate``, ``tc.segment``, ``tc.superimpose``, ``tc.characterise``, ``tc.mesh``, ``tc.simulate``,
``tc.twin``, ``tc.export_bpx`` (PyBaMM DFN twin and BPX, extra tomocell[dfn]), ``tc.analyse``, ``tc.run_study``.

Stage packages: :mod:`tomocell.microstructure`, :mod:`tomocell.meshing`, :mod:`tomocell.physics`,
:mod:`tomocell.studies`. Shared plumbing (errors, MPI-aware logging, run manifests, atomic output,
configuration) lives directly in this package.
"""

__version__ = "0.1.0"

import os as _os

# numba's parallel kernels (local thickness, multigrid): its default OpenMP layer spin-waits between
# parallel regions, which on a shared 2-core machine burned 2.8x the CPU time of the work itself
# (measured on the multigrid solve); the workqueue layer sleeps instead. A user's choice wins.
_os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

# h5py must be bound to its own HDF5 before any stage loads PETSc (see tomocell/_hdf5.py)
from tomocell._hdf5 import load_h5py as _load_h5py  # noqa: E402

_load_h5py()

#: the public API (tomocell/api.py), imported on first use so that ``import tomocell`` stays cheap
_API = ("read_volume", "generate", "segment", "superimpose", "characterise", "mesh", "simulate", "twin", "export_bpx", "analyse",
        "run_study", "SegmentationResult", "SimulationResult")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from tomocell import api

        return getattr(api, name)
    raise AttributeError(f"module 'tomocell' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
