"""Geometric kernels of the surface remesher (meshing/remesh.py) against brute force."""

from __future__ import annotations

import numpy as np

from tomocell.meshing.remesh import _point_segment_distance, _point_triangle_distance, triangle_quality


def test_point_triangle_distance_matches_dense_sampling():
    rng = np.random.default_rng(1)
    u, v = np.meshgrid(np.linspace(0, 1, 201), np.linspace(0, 1, 201))
    inside = u + v <= 1
    for _ in range(100):
        a, b, c, p = rng.normal(size=(4, 3))
        pts = a + u[inside, None] * (b - a) + v[inside, None] * (c - a)
        ref = np.linalg.norm(pts - p, axis=1).min()
        d = _point_triangle_distance(p, a, b, c)
        # the exact distance is never above the sampled one, and within the sampling step of it
        assert d <= ref + 1e-12 and ref - d < 0.03 * max(np.linalg.norm(b - a), np.linalg.norm(c - a))
    # a point above the face, and one beyond a vertex
    a, b, c = np.array([0.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0])
    assert _point_triangle_distance(np.array([0.2, 0.2, 0.7]), a, b, c) == 0.7
    assert np.isclose(_point_triangle_distance(np.array([2.0, 0, 0]), a, b, c), 1.0)
    assert np.isclose(_point_segment_distance(np.array([0.5, 1.0, 0]), a, b), 1.0)
    assert np.isclose(_point_segment_distance(np.array([-3.0, 4.0, 0]), a, b), 5.0)


def test_triangle_quality_limits():
    P = np.array([[0, 0, 0], [1, 0, 0], [0.5, np.sqrt(3) / 2, 0], [2, 0, 0]], float)
    q = triangle_quality(P, np.array([[0, 1, 2], [0, 1, 3]]))
    assert np.isclose(q[0], 1.0) and q[1] == 0.0
