"""Conformal multi-phase tetrahedral meshes from labelled volumes (see :mod:`tomocell.meshing.tags`)."""
