"""Optional volume mesher: TetGen (PyPI ``tetgen``, AGPL-3.0) over the same patch surface as gmsh.

Never required and never installed by tomocell (its licence is not compatible with tomocell's
LGPL as a dependency): install it yourself (``pip install tetgen``) and choose it with
``tomocell mesh --mesher tetgen`` or ``surface_mesh(..., formulation="tetgen")``. The surface is
given as one piecewise linear complex with every interface and box patch as facets; TetGen's ``Y``
switch keeps every given triangle as a tet face (no Steiner point on the surface), so the mesh is
conformal at every interface exactly as with gmsh, and the phases come from the regions between
interfaces (:func:`tomocell.meshing.gmsh_volume._assign_phases`). Quality: radius-edge ratio 1.2 and
minimum dihedral 10 degrees; volume bound from ``h_bulk``.
"""

from __future__ import annotations

import time

import numpy as np

from tomocell.errors import InputError

INSTALL_HINT = "the TetGen mesher needs the optional package `tetgen` (AGPL-3.0): pip install tetgen"


def tetgen_available() -> bool:
    try:
        import tetgen  # noqa: F401
    except ImportError:
        return False
    return True


def tetgen_tets(points: np.ndarray, groups: dict, *, h_bulk_um: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(nodes, tets, figures) of the region bounded by the patch surface ``groups`` (indices into
    ``points``). The given nodes keep their indices and positions (checked); new nodes follow them.
    Raises :class:`InputError` if TetGen is not installed, MeshingError if it fails."""
    from tomocell.meshing.gmsh_volume import MeshingError

    try:
        import tetgen
    except ImportError as exc:
        raise InputError(INSTALL_HINT) from exc
    t0 = time.perf_counter()
    tris = np.concatenate(list(groups.values())).astype(np.int32)
    used = np.unique(tris)
    if len(used) != len(points) or used[-1] != len(points) - 1:
        raise MeshingError("TetGen input: every node must be used by the surface")
    max_vol = h_bulk_um**3 / (6.0 * np.sqrt(2.0))  # a regular tet of edge h_bulk
    tg = tetgen.TetGen(np.ascontiguousarray(points, dtype=np.float64), np.ascontiguousarray(tris))
    try:
        # p: PLC, q1.2/10: radius-edge ratio and minimum dihedral, a: volume bound, Y: keep the
        # surface triangles (no Steiner points on them), Q: quiet
        nodes, elem, *_ = tg.tetrahedralize(switches=f"pq1.2/10a{max_vol:.6g}YQ")
    except RuntimeError as exc:
        raise MeshingError(f"TetGen failed: {exc}") from exc
    nodes = np.asarray(nodes, dtype=np.float64)
    tets = np.asarray(elem, dtype=np.int64)
    if len(tets) == 0:
        raise MeshingError("TetGen produced no tetrahedra")
    if len(nodes) < len(points) or not np.array_equal(nodes[: len(points)], points):
        raise MeshingError("TetGen moved or renumbered the surface nodes")
    return nodes, tets, {"mesher": "tetgen", "tetgen_version": getattr(tetgen, "__version__", "?"),
                         "tets": int(len(tets)), "time_s": time.perf_counter() - t0,
                         "switches": f"pq1.2/10a{max_vol:.6g}YQ"}


__all__ = ["tetgen_tets", "tetgen_available", "INSTALL_HINT"]
