"""Import DOLFINx the same way everywhere.

The PyPI build (``dolfinx-solver-real``) needs ``import dolfinx_solver`` before dolfinx or petsc4py
so that its bundled PETSc/MPI libraries are found; conda-forge and Docker builds have no such module
and need nothing. Call :func:`import_dolfinx` (or just import this module) before importing dolfinx.
"""

from __future__ import annotations

import importlib
from types import ModuleType

try:  # pragma: no cover - depends on the installation flavour
    import dolfinx_solver  # noqa: F401
except ImportError:  # conda-forge / Docker DOLFINx
    pass


def import_dolfinx() -> ModuleType:
    """Return the dolfinx module, with a clear error if it is not installed."""
    try:
        return importlib.import_module("dolfinx")
    except ImportError as exc:  # pragma: no cover
        from tomocell.errors import InputError

        raise InputError(
            "DOLFINx is not installed: run scripts/install (pip wheel dolfinx-solver-real) or use the "
            "Docker image / a conda-forge fenics-dolfinx 0.11 environment"
        ) from exc


def have_dolfinx() -> bool:
    try:
        import_dolfinx()
    except Exception:
        return False
    return True
