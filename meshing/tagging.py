"""Facet tags from cell tags, and the face-sharing (conformity) structure of a tet mesh.

Every facet of a tetrahedral mesh is found by sorting the node triples of all tet faces; a face
seen by two tets with different phase tags is an interface facet (tag from
:data:`tags.INTERFACE_OF_PAIR`), a face seen by one tet must lie on a box face (tagged as current
collector, Li face or a side), and a face seen by three or more tets, or an open face inside the box,
means the mesh is not conformal: :class:`NonConformalMeshError`, never a silent tag.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tomocell.errors import TomocellError
from tomocell.meshing import tags

#: local faces of a tet (node positions), opposite node 0..3
TET_FACES = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]], dtype=np.int64)


class NonConformalMeshError(TomocellError):
    """A mesh failed a conformity check (face shared by > 2 tets, open internal face, ...)."""


@dataclasses.dataclass
class FaceTable:
    """All distinct faces of a tet mesh.

    faces: (F, 3) sorted node triples; cells: (F, 2) the tets on each side (-1 if none);
    counts: (F,) number of tets sharing the face.
    """

    faces: np.ndarray
    cells: np.ndarray
    counts: np.ndarray


def face_keys(tri: np.ndarray, num_nodes: int) -> np.ndarray:
    """One int64 key per sorted node triple (rows of ``tri`` must already be sorted)."""
    n = np.int64(num_nodes)
    if num_nodes < 2_000_000:
        return (tri[:, 0] * n + tri[:, 1]) * n + tri[:, 2]
    # beyond 2 M nodes the product would overflow: keys are then row views compared bytewise
    tri = np.ascontiguousarray(tri)
    return tri.view(np.dtype((np.void, tri.dtype.itemsize * 3))).ravel()


def face_table(tets: np.ndarray, num_nodes: int) -> FaceTable:
    """Distinct faces of ``tets`` with the tets on either side."""
    m = len(tets)
    allf = np.sort(tets[:, TET_FACES].reshape(-1, 3), axis=1)
    keys = face_keys(allf, num_nodes)
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    start = np.ones(len(ks), dtype=bool)
    start[1:] = ks[1:] != ks[:-1]
    first = np.flatnonzero(start)
    counts = np.diff(np.append(first, len(ks)))
    owner = order // 4
    cells = np.full((len(first), 2), -1, dtype=np.int64)
    cells[:, 0] = owner[first]
    two = counts >= 2
    cells[two, 1] = owner[first[two] + 1]
    del m
    return FaceTable(faces=allf[order[first]], cells=cells, counts=counts)


def check_face_sharing(ft: FaceTable) -> None:
    """Raise if any face is shared by more than two tets."""
    bad = int(np.count_nonzero(ft.counts > 2))
    if bad:
        raise NonConformalMeshError(f"{bad} faces are shared by more than two tets (non-manifold mesh)")


def _pair_lookup() -> np.ndarray:
    lut = np.zeros((8, 8), dtype=np.int32)
    for pair, t in tags.INTERFACE_OF_PAIR.items():
        a, b = sorted(pair)
        lut[a, b] = lut[b, a] = t
    return lut


def boundary_tag_of_faces(points: np.ndarray, faces: np.ndarray, box_um: tuple[float, float, float], tol_um: float) -> np.ndarray:
    """Tag of each boundary face by the box plane all three nodes lie on; 0 if none."""
    p = points[faces]  # (F, 3, 3)
    out = np.zeros(len(faces), dtype=np.int32)
    x1, y1, z1 = box_um
    planes = (
        (2, 0.0, tags.CURRENT_COLLECTOR),
        (2, z1, tags.LI_FACE),
        (0, 0.0, tags.SIDE_X0),
        (0, x1, tags.SIDE_X1),
        (1, 0.0, tags.SIDE_Y0),
        (1, y1, tags.SIDE_Y1),
    )
    for axis, val, t in planes:
        on = np.all(np.abs(p[:, :, axis] - val) <= tol_um, axis=1)
        out[(out == 0) & on] = t
    return out


def tag_facets(
    points: np.ndarray,
    tets: np.ndarray,
    cell_tags: np.ndarray,
    box_um: tuple[float, float, float],
    tol_um: float | None = None,
    ft: FaceTable | None = None,
) -> tuple[np.ndarray, np.ndarray, FaceTable]:
    """Facet tags (interfaces and outer boundary) from cell tags; checks conformity.

    Returns (facets (F,3), tags (F,), the FaceTable). Raises :class:`NonConformalMeshError` when a
    face is shared by > 2 tets or a face with one tet is not on the box boundary (an open face).
    """
    if tol_um is None:
        tol_um = 1e-6 * max(box_um)
    if ft is None:
        ft = face_table(tets, len(points))
    check_face_sharing(ft)
    lut = _pair_lookup()
    inner = ft.counts == 2
    ta = cell_tags[ft.cells[inner, 0]]
    tb = cell_tags[ft.cells[inner, 1]]
    itag = lut[ta, tb]
    iface = np.flatnonzero(inner)[itag > 0]
    itag = itag[itag > 0]
    bnd = np.flatnonzero(ft.counts == 1)
    btag = boundary_tag_of_faces(points, ft.faces[bnd], box_um, tol_um)
    open_faces = int(np.count_nonzero(btag == 0))
    if open_faces:
        c = points[ft.faces[bnd[btag == 0]]].mean(axis=1)
        raise NonConformalMeshError(
            f"{open_faces} open faces inside the box (holes in the mesh), e.g. at {c[0].round(4).tolist()} um"
        )
    facets = np.concatenate([ft.faces[bnd], ft.faces[iface]])
    values = np.concatenate([btag, itag]).astype(np.int32)
    return facets, values, ft
