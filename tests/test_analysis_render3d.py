"""The 3D render of a segmented volume (Fig. 2a-b): a PNG with both panels drawn in the phase colours."""
from __future__ import annotations

import numpy as np
import pytest

from tomocell.microstructure.volume import Volume

pytest.importorskip("pyvista")


def test_volume_render_draws_solid_and_pore_panels(tmp_path):
    from PIL import Image

    from tomocell.microstructure.render3d import render_volume_3d

    rng = np.random.default_rng(1)
    lab = (rng.random((16, 18, 20)) > 0.5).astype(np.uint8)
    lab[rng.random(lab.shape) > 0.85] = 2
    path = render_volume_3d(Volume(labels=lab, voxel_size_um=(0.5, 0.5, 0.5)), tmp_path / "v.png", window_px=(800, 400))
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert img.shape[:2] == (400, 800)
    left, right = img[:, :400], img[:, 400:]

    def share(part, rgb):  # fraction of pixels near a colour (lit faces are darker, so a wide tolerance)
        return float(np.mean(np.abs(part - np.array(rgb)).sum(axis=2) < 120))

    orange, blue = (250, 178, 102), (77, 140, 217)
    assert share(left, orange) > 0.02, "active phase missing in panel (a)"
    assert share(right, blue) > 0.02, "pore phase missing in panel (b)"
    assert share(right, orange) < 0.005, "panel (b) shows only the pore"


def test_large_volumes_are_drawn_from_a_stride():
    from tomocell.microstructure.render3d import render_stride

    assert render_stride((60, 40, 40)) == 1
    assert render_stride((340, 340, 400)) == 3
    assert render_stride((200, 200, 200), max_voxels=1_000_000) == 2
