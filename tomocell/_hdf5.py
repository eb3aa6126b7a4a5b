"""One HDF5 library per symbol scope: h5py is always bound to its own bundled HDF5.

Why this exists: ``dolfinx.fem.petsc`` loads libpetsc with ``RTLD_GLOBAL`` (through llvmlite's
``load_library_permanently``, whenever numba is importable). That puts PETSc's dependencies, among
them its ``libhdf5.so.310`` (HDF5 1.14 in the ``dolfinx-solver-real`` wheel), into the process's
global symbol scope. h5py's wheel bundles its own HDF5 (2.0), and the dynamic linker resolves the
HDF5 calls of h5py's extension modules *global scope first*: once PETSc's HDF5 is global, h5py
silently calls into the wrong library and fails with ``ValueError: Not a datatype``.

The fix is made once, here, and :mod:`tomocell` runs it on import (before any stage can load
DOLFINx): h5py is imported with ``RTLD_DEEPBIND``, so its extension modules and its bundled HDF5
resolve their symbols in their own dependency tree before the global scope, whatever is loaded
before or after. PETSc's HDF5 stays private to PETSc (h5py's copy is loaded ``RTLD_LOCAL``). The
two libraries then never bind to each other's symbols, in any import order, in the CLI, the Python
API, the studies, under ``mpirun`` and in Docker. Tested by ``tests/test_hdf5_isolation.py`` in
fresh interpreters.

Where h5py and PETSc share one HDF5 (conda-forge, Spack, the Docker image built on DOLFINx's own
image) ``RTLD_DEEPBIND`` finds the same library and changes nothing. On platforms without
``RTLD_DEEPBIND`` (macOS: two-level namespaces) the problem does not arise.

If a user's own code imports ``dolfinx.fem.petsc`` and then h5py *before* importing tomocell, h5py
is already bound to the wrong HDF5 and nothing later can repair it: :func:`load_h5py` detects that
case with a cheap round trip and raises a clear error naming the import order.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

_CHECKED = False


def load_h5py() -> ModuleType:
    """Import h5py bound to its own HDF5 (see the module docstring) and return it."""
    global _CHECKED
    mod = sys.modules.get("h5py")
    if mod is None:
        import numpy  # noqa: F401  (numpy's own libraries load with the default flags)

        flags = sys.getdlopenflags()
        sys.setdlopenflags(flags | getattr(os, "RTLD_DEEPBIND", 0))
        try:
            import h5py as mod
        finally:
            sys.setdlopenflags(flags)
    elif not _CHECKED:
        _check_working(mod)
    _CHECKED = True
    return mod


def _check_working(h5py: ModuleType) -> None:
    """h5py was imported before tomocell: check that it still talks to its own HDF5."""
    import numpy as np

    try:
        with h5py.File("tomocell-hdf5-check.h5", "w", driver="core", backing_store=False) as f:
            f["x"] = np.arange(2.0)
    except ValueError as exc:  # pragma: no cover - depends on the caller's import order
        from tomocell.errors import InputError

        raise InputError(
            "h5py is bound to PETSc's HDF5 library (it was imported after dolfinx.fem.petsc and before "
            f"tomocell: {exc}). Import tomocell (or h5py) before dolfinx.fem.petsc."
        ) from exc
