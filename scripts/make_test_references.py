#!/usr/bin/env python
"""Reference values for the tests, computed by independent tools (TauFactor, PoreSpy), never by tomocell.

Run with the interpreter of a throwaway venv that has them (never a tomocell dependency)::

    python3.11 -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0 taufactor porespy tifffile
    /tmp/ref/bin/python scripts/make_test_references.py        # rewrites tests/data/gan_crop64_references.json

Volume: the first 64^3 voxels of ../shared/data/nmc_gan_3phase_256.tif (labels 0 pore, 85 active,
170 CBD, 0.390625 um voxels), the crop tests/test_characterise_pipeline.py characterises.
- Pore tortuosity factor along each axis: TauFactor's finite-difference solver (``taufactor.Solver``,
  CPU, conv 1e-5), tau = eps / (D_eff/D0) as tomocell defines it.
- Pore local thickness: PoreSpy's ``filters.local_thickness`` (a) its default ``method="bf"``: balls
  of every integer radius (a voxel gets the largest integer radius not above the inscribed ball's,
  so up to 2 voxels of diameter below the exact value) and (b) ``method="legacy"`` with its 25
  fractional bins; the volume-weighted D10/D50/D90 are the quantiles over the pore voxels, in voxels
  of diameter. (PoreSpy 3.2 accepts only integer radii in ``sizes``, so it has no unbinned mode.)
- Particles: PoreSpy's SNOW partitioning of the active phase (``filters.snow_partitioning``, its
  defaults r_max = 4, sigma = 0.4): count and volume-weighted D10/D50/D90 of the equivalent diameter.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
VOLUME = REPO.parent / "shared" / "data" / "nmc_gan_3phase_256.tif"
OUT = REPO / "tests" / "data" / "gan_crop64_references.json"


def main() -> int:
    import porespy
    import taufactor
    import torch

    arr = tifffile.imread(VOLUME)[:64, :64, :64]
    pore = arr == 0
    ref: dict = {"volume": "../shared/data/nmc_gan_3phase_256.tif", "crop": "[:64, :64, :64]",
                 "voxel_size_um": 0.390625, "pore_fraction": float(pore.mean()),
                 "tools": {"taufactor": importlib.metadata.version("taufactor"), "porespy": porespy.__version__,
                           "torch": torch.__version__, "python": sys.version.split()[0]},
                 "made_by": "scripts/make_test_references.py (with a throwaway venv's python)"}
    taus = []
    for ax in range(3):
        img = np.moveaxis(pore, ax, 0).astype(np.float32)
        s = taufactor.Solver(img, device="cpu")
        t0 = time.perf_counter()
        res = s.solve(verbose=False, conv_crit=1e-5)
        res = res.cpu() if hasattr(res, "cpu") else res
        taus.append(float(np.asarray(res).ravel()[0]))
        print(f"TauFactor axis {ax}: tau {taus[-1]:.5f} ({time.perf_counter() - t0:.1f} s)")
    ref["taufactor"] = {"settings": "Solver(img, device='cpu').solve(conv_crit=1e-5); axis k moved to axis 0",
                        "tau_pore_axis": taus}
    out = {}
    for name, kw in (("bf_integer_radii", {"method": "bf"}), ("legacy_25_bins", {"method": "legacy"})):
        t0 = time.perf_counter()
        lt = porespy.filters.local_thickness(pore, **kw)
        d = 2.0 * lt[pore]  # PoreSpy returns the radius (voxels)
        out[name] = {f"d{q}_voxels": float(np.quantile(d, q / 100)) for q in (10, 50, 90)}
        out[name]["mean_voxels"] = float(d.mean())
        print(f"PoreSpy local thickness ({name}): {out[name]} ({time.perf_counter() - t0:.1f} s)")
    ref["porespy_local_thickness"] = {"settings": "filters.local_thickness(pore, method=..., sizes=...) x 2 (radius -> diameter)",
                                      **out}
    # particles: PoreSpy's SNOW watershed of the active phase (its defaults r_max = 4, sigma = 0.4);
    # count and volume-weighted D10/D50/D90 of the equivalent-sphere diameter (tomocell's definition)
    active = arr == 85
    t0 = time.perf_counter()
    regions = porespy.filters.snow_partitioning(active, r_max=4, sigma=0.4).regions * active
    _, nvox = np.unique(regions[regions > 0], return_counts=True)
    vs = ref["voxel_size_um"]
    vol = nvox * vs**3
    d_eq = (6.0 * vol / np.pi) ** (1.0 / 3.0)
    o = np.argsort(d_eq)
    cw = np.cumsum(vol[o]) / vol.sum()
    dq = {f"d{q}_um": float(d_eq[o][min(int(np.searchsorted(cw, q / 100)), d_eq.size - 1)]) for q in (10, 50, 90)}
    ref["porespy_snow_particles"] = {"settings": "filters.snow_partitioning(active, r_max=4, sigma=0.4).regions "
                                                 "on the active phase (label 85)", "count": int(nvox.size), **dq}
    print(f"PoreSpy SNOW particles: {ref['porespy_snow_particles']} ({time.perf_counter() - t0:.1f} s)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(ref, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
