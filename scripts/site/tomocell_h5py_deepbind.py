"""Environment-wide half of tomocell's HDF5 isolation (see tomocell/_hdf5.py for the why).

scripts/install and docker/Dockerfile copy this file into the environment's site-packages with a
``tomocell_h5py_deepbind.pth`` that imports it at interpreter start-up. It puts one finder first on
``sys.meta_path`` that only acts on ``h5py`` and its submodules: their loaders run with
``RTLD_DEEPBIND`` added to the dlopen flags, so h5py's extension modules and its bundled HDF5 bind to
each other even when ``dolfinx.fem.petsc`` already made PETSc's HDF5 global. Code that never imports
tomocell (a user's notebook: ``import dolfinx.fem.petsc, h5py``) is then safe too; tomocell/_hdf5.py
stays for environments not made by scripts/install. Costs one list insert at start-up, nothing else.
``TOMOCELL_NO_H5PY_HOOK=1`` disables it (the test that shows the bug is real uses that).

The same finder makes a plain ``import dolfinx`` (or petsc4py) work with the ``dolfinx-solver-real``
wheel, which otherwise needs ``import dolfinx_solver`` first (it loads the MPI runtime from mpi4py
before any binding; without it: ``ImportError: libmpi.so.12``): on the first import of one of those
names it imports ``dolfinx_solver`` where that package is installed, then lets the normal import run.

Written here because no library offers it: it is a property of this wheel stack (two HDF5s).
"""

from __future__ import annotations

import os
import sys

_DEEPBIND = getattr(os, "RTLD_DEEPBIND", 0)
_NEEDS_BOOTSTRAP = ("dolfinx", "petsc4py", "slepc4py")


class _H5pyDeepbindFinder:
    """Meta-path finder: find h5py modules as usual, execute them with RTLD_DEEPBIND."""

    @staticmethod
    def find_spec(name, path=None, target=None):  # noqa: ANN001, ANN205 - importlib protocol
        from importlib.machinery import PathFinder

        if name in _NEEDS_BOOTSTRAP:
            if "dolfinx_solver" not in sys.modules and PathFinder.find_spec("dolfinx_solver") is not None:
                import dolfinx_solver  # noqa: F401  (orders MPI ahead of the bindings)
            return None
        if not _DEEPBIND or (name != "h5py" and not name.startswith("h5py.")):
            return None

        spec = PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None or getattr(spec.loader, "_tomocell_deepbind", False):
            return spec
        loader = spec.loader
        create, execute = loader.create_module, loader.exec_module

        def with_deepbind(fn):  # noqa: ANN001, ANN202
            def run(module):  # noqa: ANN001, ANN202
                if name == "h5py":
                    import numpy  # noqa: F401  (numpy's own libraries keep the default flags)
                flags = sys.getdlopenflags()
                sys.setdlopenflags(flags | _DEEPBIND)
                try:
                    return fn(module)
                finally:
                    sys.setdlopenflags(flags)
            return run

        loader.create_module = with_deepbind(create)  # extension modules are dlopen'ed here
        loader.exec_module = with_deepbind(execute)  # h5py/__init__ imports its extensions here
        loader._tomocell_deepbind = True
        return spec


if os.environ.get("TOMOCELL_NO_H5PY_HOOK", "") in ("", "0"):
    sys.meta_path.insert(0, _H5pyDeepbindFinder)
