"""tomocell: tomography volume -> microstructure metrics -> conformal mesh -> particle-resolved
half-cell discharge -> design studies, after Lu et al., Nat. Commun. 11, 2079 (2020).

Stage packages: :mod:`tomocell.microstructure`, :mod:`tomocell.meshing`, :mod:`tomocell.physics`,
:mod:`tomocell.studies`. Shared plumbing (errors, MPI-aware logging, run manifests, atomic output,
configuration) lives directly in this package.
"""

__version__ = "0.1.0"
