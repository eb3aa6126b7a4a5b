"""Isolated clusters on hand-made volumes: what is found, what removal does."""

from __future__ import annotations

import numpy as np
import pytest

from tomocell.microstructure.checks import find_isolated_clusters, phase_fractions, remove_isolated_clusters
from tomocell.microstructure.volume import ACTIVE, CBD, PORE, Volume


def hand_made() -> Volume:
    """10 x 8 x 8, separator at axis-0 index 0, current collector at index 9.

    * an active slab at axis-0 indices 6..9 touching the current collector;
    * an enclosed 2x2x2 pore pocket inside that slab (8 voxels) -> isolated pore;
    * a floating 2x2x2 active particle at indices 2..3 in open pore (8 voxels) -> isolated solid;
    * a second particle (indices 3..4) joined to the slab by one CBD voxel at index 5 -> connected;
    * a single active voxel at (4, 2, 0), pore all around -> isolated solid.
    """
    lab = np.full((10, 8, 8), PORE, np.uint8)
    lab[6:, :, :] = ACTIVE
    lab[7:9, 3:5, 3:5] = PORE
    lab[2:4, 1:3, 1:3] = ACTIVE
    lab[3:5, 5:7, 5:7] = ACTIVE
    lab[5, 5, 5] = CBD
    lab[4, 2, 0] = ACTIVE
    return Volume(lab, 0.5)


def test_hand_made_case_found() -> None:
    v = hand_made()
    rep = find_isolated_clusters(v)
    # pore: open pore touching the separator + the enclosed pocket
    assert rep["pore"]["n_isolated"] == 1
    assert rep["pore"]["isolated_voxels"] == 8
    assert rep["pore"]["largest_isolated_um3"] == pytest.approx(8 * 0.125)
    # solid: the slab (with the bridged particle) + the floating particle + the single voxel at (4,2,0)
    assert rep["solid"]["n_isolated"] == 2
    assert rep["solid"]["isolated_voxels"] == 9
    assert rep["fractions"] == phase_fractions(v)


def test_edge_contact_counts_only_with_26_connectivity() -> None:
    lab = np.full((4, 3, 3), PORE, np.uint8)
    lab[3] = ACTIVE
    lab[2, 1, 1] = ACTIVE  # face contact with the CC layer: connected
    lab[1, 0, 0] = ACTIVE  # corner contact with (2,1,1) only
    v = Volume(lab, 1.0)
    assert find_isolated_clusters(v, connectivity=6)["solid"]["isolated_voxels"] == 1
    assert find_isolated_clusters(v, connectivity=26)["solid"]["isolated_voxels"] == 0


def test_removal() -> None:
    v = hand_made()
    out = remove_isolated_clusters(v)
    rep = find_isolated_clusters(out)
    assert rep["pore"]["n_isolated"] == 0 and rep["solid"]["n_isolated"] == 0
    removed = out.metadata["isolated_clusters_removed"]
    assert removed["solid_voxels_to_pore"] == 9 and removed["active_voxels_removed"] == 9
    assert removed["pore_voxels_filled"] == 8
    # the pocket sits in active material, so it is filled with active; the floating particle is pore now
    assert np.all(out.labels[7:9, 3:5, 3:5] == ACTIVE)
    assert np.all(out.labels[2:4, 1:3, 1:3] == PORE)
    # nothing else changed
    changed = out.labels != v.labels
    assert changed.sum() == 17
    assert v.labels[5, 5, 5] == CBD and out.labels[5, 5, 5] == CBD
