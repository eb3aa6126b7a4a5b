"""tomocell: tomography volume -> microstructure metrics -> conformal mesh -> particle-resolved
half-cell discharge -> design studies, after Lu et al., Nat. Commun. 11, 2079 (2020).

Stage packages: :mod:`tomocell.microstructure`, :mod:`tomocell.meshing`, :mod:`tomocell.physics`,
:mod:`tomocell.studies`. Shared plumbing (errors, MPI-aware logging, run manifests, atomic output,
configuration) lives directly in this package.
"""

__version__ = "0.1.0"

# h5py must be bound to its own HDF5 before any stage loads PETSc (see tomocell/_hdf5.py)
from tomocell._hdf5 import load_h5py as _load_h5py  # noqa: E402

_load_h5py()
