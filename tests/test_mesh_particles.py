"""`tomocell mesh` carries particle labels to the mesh by default (issue 17 item 5).

Without them `simulate` writes an empty particles.csv. The default (``--particles auto``) separates
the active phase by the same watershed as `characterise`, so the mesh has as many particles as the
characterisation reports and every active cell belongs to one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tomocell.cli import main
from tomocell.meshing import tags as T
from tomocell.meshing.meshfile import read_mesh_arrays


def test_mesh_gets_the_watershed_particles_by_default(tmp_path: Path) -> None:
    import tomocell as tc
    from tomocell.microstructure.particles import label_particles

    vol = tc.generate(preset="tiny", seed=2)
    vpath = vol.save(tmp_path / "v.tif")
    assert main(["mesh", str(vpath), "--route", "voxel", "--separator", "4", "--out", str(tmp_path / "m")]) == 0
    m = read_mesh_arrays(tmp_path / "m" / "mesh.xdmf")
    act = m.phase == T.ACTIVE
    assert m.particle is not None and np.all(m.particle[act] > 0) and np.all(m.particle[~act] == 0)
    n_char = len(np.unique(label_particles(vol)[vol.labels == 1]))
    assert len(np.unique(m.particle[act])) == n_char > 3

    assert main(["mesh", str(vpath), "--route", "voxel", "--separator", "4", "--particles", "none",
                 "--out", str(tmp_path / "m0")]) == 0
    m0 = read_mesh_arrays(tmp_path / "m0" / "mesh.xdmf")
    assert m0.particle is None or not np.any(m0.particle)
