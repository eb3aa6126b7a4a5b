"""MPI access that degrades to a serial stand-in where mpi4py is not installed.

Everything that is not the FEM physics works without MPI; the physics imports mpi4py itself.
"""

from __future__ import annotations

from typing import Any

#: graph partitioners of a mesh over MPI ranks that DOLFINx may offer (which exist depends on its build;
#: tomocell.meshing.meshfile.read_mesh refuses a missing one, naming those it has)
PARTITIONERS = ("default", "scotch", "kahip", "parmetis")


class _SerialComm:
    rank = 0
    size = 1

    def Get_rank(self) -> int:  # noqa: N802 (mpi4py spelling)
        return 0

    def Get_size(self) -> int:  # noqa: N802
        return 1

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allreduce(self, obj: Any, op: Any = None) -> Any:
        return obj

    def gather(self, obj: Any, root: int = 0) -> list[Any]:
        return [obj]

    def Barrier(self) -> None:  # noqa: N802
        return None

    barrier = Barrier


def world() -> Any:
    """COMM_WORLD from mpi4py, or a serial stand-in."""
    try:
        from mpi4py import MPI
    except ImportError:  # pragma: no cover - mpi4py ships with the pinned stack
        return _SerialComm()
    return MPI.COMM_WORLD


def rank() -> int:
    return world().rank


def size() -> int:
    return world().size


def is_root() -> bool:
    return rank() == 0
