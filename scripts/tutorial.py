# %% [markdown]
# # tomocell in ten minutes: from an electrode volume to a discharge curve
#
# This tutorial runs the whole chain of Lu et al. (Nat. Commun. 2020) from Python on a tiny synthetic
# NMC cathode (8 x 6 x 6 um, about a minute on a laptop): volume -> microstructure metrics ->
# tagged tetrahedral mesh -> particle-resolved half-cell discharge against Li metal -> figures.
# It runs as a plain script (`.venv/bin/python scripts/tutorial.py`) and opens as a notebook in
# Jupyter or VS Code (percent-cell format; `jupytext --to ipynb scripts/tutorial.py` converts it).
# Outputs go to `results/tutorial/` (or `$TOMOCELL_TUTORIAL_OUT`).

# %%
import os
from pathlib import Path

import tomocell as tc

out = Path(os.environ.get("TOMOCELL_TUTORIAL_OUT", "results/tutorial"))

# %% [markdown]
# ## 1. A volume
# `tc.generate` packs ellipsoidal NMC particles and places carbon-binder (CBD) at necks and surfaces.
# For a scan use `tc.read_volume("scan.tif", voxel_size_um=0.126, labels={0: "pore", 85: "active",
# 170: "cbd"})` instead. A `Volume` is a label array plus its voxel size in micrometres.

# %%
vol = tc.generate(preset="tiny", seed=0)
print(vol.shape, "voxels of", vol.voxel_size_um, "um;", vol.fractions())

# %% [markdown]
# ## 2. Microstructure metrics
# Phase fractions, pore size by local thickness, watershed particles, tortuosity factor in three
# directions (`fast=True` skips the slowest extras). `char.metrics` is a plain dict.

# %%
char = tc.characterise(vol, out / "characterisation", fast=True)
tau = char.metrics["tortuosity"]["pore"]["axis0"]["tau"]
print(f"pore tortuosity factor through the thickness: {tau:.2f}")
print(f"particles: {char.metrics['particles']['count']}, D50 {char.metrics['particles']['d50_um']:.2f} um")

# %% [markdown]
# ## 3. A tagged tetrahedral mesh
# Phases, particles (from the characterisation's labels) and every interface are tagged; a 5 um
# separator slab sits on top, its top face is the Li-metal counter electrode. `msh.report` is the
# fidelity report (phase volumes and interface areas against the voxels, element quality).

# %%
msh = tc.mesh(vol, route="voxel", separator_um=5.0, particle_labels=char.particle_labels)
err = {phase: f"{100 * v['rel_error']:+.2f} %" for phase, v in msh.report["phase_volumes"].items()}
print(msh.report["tets"], "tets; phase volumes against the voxels:", err)

# %% [markdown]
# ## 4. A 2C discharge against Li metal
# Concentrated-solution electrolyte in the resolved pores, Fick and Ohm in the particles, Ohm in the
# CBD, Butler-Volmer at particle/electrolyte interfaces. The run directory holds `timeseries.csv`,
# the fields as time series (open `fields/electrolyte.xdmf` in ParaView) and `run.json`.

# %%
run = tc.simulate(msh, c_rate=2.0, out=out / "discharge-2C", dod_snapshots=(0.5,))
print(f"{run.capacity_mAh_g:.1f} mAh/g delivered, {100 * run.utilisation:.0f} % of the theoretical capacity")
ts = run.timeseries()
print(f"voltage from {ts['voltage_V'][0]:.3f} V to {ts['voltage_V'][-1]:.3f} V in {ts['t_s'][-1]:.0f} s")

# %% [markdown]
# ## 5. Figures
# Voltage curve, state-of-lithiation heterogeneity, charge-transfer maps, 3D renders: `report.md`.

# %%
tc.analyse([run], out=out / "analysis")
print("report:", out / "analysis" / "report.md")
