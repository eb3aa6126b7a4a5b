"""The in-memory tetrahedral mesh every meshing route returns.

Plain numpy arrays, coordinates in micrometres (convention of :mod:`tomocell.meshing.tags`), so the
routes, the fidelity report and the writers share one type without depending on DOLFINx or gmsh.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass
class TetMesh:
    """A tagged, conformal tetrahedral mesh (serial, global arrays).

    Attributes:
        points: (N, 3) float64 node coordinates in micrometres.
        tets: (M, 4) int64 node indices.
        cell_tags: (M,) int32 phase tag of each tet (values from :mod:`tomocell.meshing.tags`).
        facets: (F, 3) int64 node indices of the tagged facets (outer boundary and interfaces).
        facet_tags: (F,) int32 tag of each facet.
        particle_tags: (M,) int32 particle label from characterisation (0 outside particles).
        box_um: (x1, y1, z1) upper corner of the box (lower corner is the origin), micrometres;
            ``z1`` includes the separator slab.
        electrode_thickness_um: z of the electrode/separator plane.
        info: provenance and route-specific figures (route, sizes, timings, warnings).
    """

    points: np.ndarray
    tets: np.ndarray
    cell_tags: np.ndarray
    facets: np.ndarray
    facet_tags: np.ndarray
    particle_tags: np.ndarray
    box_um: tuple[float, float, float]
    electrode_thickness_um: float
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.points = np.ascontiguousarray(self.points, dtype=np.float64)
        self.tets = np.ascontiguousarray(self.tets, dtype=np.int64)
        self.cell_tags = np.ascontiguousarray(self.cell_tags, dtype=np.int32)
        self.facets = np.ascontiguousarray(self.facets, dtype=np.int64).reshape(-1, 3)
        self.facet_tags = np.ascontiguousarray(self.facet_tags, dtype=np.int32)
        if self.particle_tags is None:
            self.particle_tags = np.zeros(len(self.tets), dtype=np.int32)
        self.particle_tags = np.ascontiguousarray(self.particle_tags, dtype=np.int32)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"points must be (N, 3), got {self.points.shape}")
        if self.tets.ndim != 2 or self.tets.shape[1] != 4:
            raise ValueError(f"tets must be (M, 4), got {self.tets.shape}")
        for name in ("cell_tags", "particle_tags"):
            if getattr(self, name).shape != (len(self.tets),):
                raise ValueError(f"{name} must have one value per tet")
        if self.facet_tags.shape != (len(self.facets),):
            raise ValueError("facet_tags must have one value per facet")

    @property
    def num_tets(self) -> int:
        return int(len(self.tets))

    @property
    def num_nodes(self) -> int:
        return int(len(self.points))

    def tet_volumes_um3(self) -> np.ndarray:
        """Unsigned volume of every tet, um^3."""
        p = self.points[self.tets]
        a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
        return np.abs(np.einsum("ij,ij->i", a, np.cross(b, c))) / 6.0

    def facet_areas_um2(self, tag: int | None = None) -> np.ndarray:
        f = self.facets if tag is None else self.facets[self.facet_tags == tag]
        p = self.points[f]
        return 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
