"""The integer tags of tomocell meshes, in one place.

Geometry convention of every mesh written by :mod:`tomocell.meshing`:

* coordinates are in **micrometres** (the physics scales them to SI);
* ``x`` follows volume axis 2, ``y`` volume axis 1, ``z`` the through-thickness direction, pointing
  from the current collector (``z = 0``) towards the separator: the electrode occupies
  ``0 <= z <= L`` (``L`` = thickness of the volume) and the separator slab ``L <= z <= L + L_sep``,
  whose top face ``z = L + L_sep`` is the Li-metal counter electrode. Volume index 0 (separator side)
  therefore lies at ``z = L``.

Cell tags (mesh file name ``cell_tags``): one per phase. A second cell field, ``particle_tags``,
holds the particle label from characterisation (0 outside particles).

Facet tags (``facet_tags``): outer boundaries, then one tag per interface type. An interface facet
is tagged once, whichever side it is seen from.
"""

from __future__ import annotations

# ---- cell tags (phases) ---------------------------------------------------------------------
ACTIVE = 1
CBD = 2
PORE = 3
SEPARATOR = 4

CELL_TAGS: dict[str, int] = {"active": ACTIVE, "cbd": CBD, "pore": PORE, "separator": SEPARATOR}
ELECTROLYTE_CELLS = (PORE, SEPARATOR)
SOLID_CELLS = (ACTIVE, CBD)

# ---- facet tags: outer boundary ----------------------------------------------------------------
CURRENT_COLLECTOR = 11  # z = 0
LI_FACE = 12  # z = L + L_sep: separator / Li-metal counter electrode
SIDE_X0 = 13
SIDE_X1 = 14
SIDE_Y0 = 15
SIDE_Y1 = 16
SIDES = (SIDE_X0, SIDE_X1, SIDE_Y0, SIDE_Y1)

# ---- facet tags: internal interfaces -------------------------------------------------------------
ACTIVE_PORE = 21  # Butler-Volmer reaction surface
ACTIVE_CBD = 22  # electronic contact
CBD_PORE = 23  # no reaction
PORE_SEPARATOR = 24  # electrolyte continuity into the homogenised separator
ACTIVE_SEPARATOR = 25  # particle touching the separator plane: reaction surface as well
CBD_SEPARATOR = 26

FACET_TAGS: dict[str, int] = {
    "current_collector": CURRENT_COLLECTOR,
    "li_face": LI_FACE,
    "side_x0": SIDE_X0,
    "side_x1": SIDE_X1,
    "side_y0": SIDE_Y0,
    "side_y1": SIDE_Y1,
    "active|pore": ACTIVE_PORE,
    "active|cbd": ACTIVE_CBD,
    "cbd|pore": CBD_PORE,
    "pore|separator": PORE_SEPARATOR,
    "active|separator": ACTIVE_SEPARATOR,
    "cbd|separator": CBD_SEPARATOR,
}

#: interface tag for an unordered pair of cell tags
INTERFACE_OF_PAIR: dict[frozenset[int], int] = {
    frozenset((ACTIVE, PORE)): ACTIVE_PORE,
    frozenset((ACTIVE, CBD)): ACTIVE_CBD,
    frozenset((CBD, PORE)): CBD_PORE,
    frozenset((PORE, SEPARATOR)): PORE_SEPARATOR,
    frozenset((ACTIVE, SEPARATOR)): ACTIVE_SEPARATOR,
    frozenset((CBD, SEPARATOR)): CBD_SEPARATOR,
}

#: reaction (Butler-Volmer) surfaces: active material against electrolyte
REACTION_FACETS = (ACTIVE_PORE, ACTIVE_SEPARATOR)

#: names used in mesh files (XDMF grid names / gmsh physical names)
MESH_NAME = "mesh"
CELL_TAGS_NAME = "cell_tags"
FACET_TAGS_NAME = "facet_tags"
PARTICLE_TAGS_NAME = "particle_tags"
LENGTH_UNIT_M = 1e-6  # mesh coordinates are micrometres
