"""Which cells carry the electrolyte, and how much of each cell it fills.

The one definition used by the topology (the electrolyte submesh and the reaction interface), the
residual (storage and effective transport), the lithium inventory, the reacting fraction of the
interface facets and the outputs. Three phases can hold electrolyte:

* PORE: resolved pores, filled (volume fraction 1, transport factor 1);
* SEPARATOR: the homogenised separator slab (porosity eps_sep, transport eps_sep^b_sep);
* CBD, only with the porous-CBD model: the carbon-binder domain's unresolved nanopores (porosity
  eps_cbd, transport eps_cbd^b_cbd, parameters ``cbd.porosity`` and ``cbd.bruggeman``). The CBD then
  carries both fields: electrons through its solid (``cbd.conductivity``, the composite's effective
  value) and Li+ through its pores; active facets against it react over the pore fraction eps_cbd.

The dense model (the default, as in Lu et al. 2020, whose dual-scan superimposition resolves the CBD's
micro-pores as pore phase and models the rest of the CBD as a pure electron conductor) leaves the CBD
without electrolyte: active|CBD facets do not react. The porous model is meant for volumes in which
the CBD label still holds unresolved porosity (a single scan at ~0.5 um voxels): see docs/physics.md
for the dense-vs-porous comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tomocell.errors import InputError
from tomocell.meshing import tags as T

if TYPE_CHECKING:
    from tomocell.physics.parameters import Parameters

CBD_MODELS = ("dense", "porous")


@dataclass(frozen=True)
class ElectrolytePhase:
    """One electrolyte-carrying cell tag: ``porosity`` is the electrolyte volume fraction of its cells
    (storage and reacting fraction of the facets against them), ``transport`` the factor on the bulk
    conductivity and diffusivity (porosity^bruggeman)."""

    tag: int
    porosity: float
    transport: float


def check_cbd_model(cbd: str) -> str:
    if cbd not in CBD_MODELS:
        raise InputError(f"cbd must be one of {', '.join(CBD_MODELS)}, got {cbd!r}")
    return cbd


def electrolyte_tags(cbd: str = "dense") -> tuple[int, ...]:
    """The cell tags that carry c_e and phi_e."""
    return (*T.ELECTROLYTE_CELLS, T.CBD) if check_cbd_model(cbd) == "porous" else tuple(T.ELECTROLYTE_CELLS)


def electrolyte_phases(p: Parameters, cbd: str = "dense") -> tuple[ElectrolytePhase, ...]:
    """The electrolyte phases of the model with their porosity and transport factor."""
    phases = [ElectrolytePhase(T.PORE, 1.0, 1.0),
              ElectrolytePhase(T.SEPARATOR, p.sep_porosity, p.sep_porosity**p.sep_bruggeman)]
    if check_cbd_model(cbd) == "porous":
        phases.append(ElectrolytePhase(T.CBD, p.cbd_porosity, p.cbd_porosity**p.cbd_bruggeman))
    return tuple(phases)


def reacting_fraction(msh: Any, cell_tag: np.ndarray, phases: tuple[ElectrolytePhase, ...]) -> Any:
    """DG0 function on the parent mesh: the wetted fraction of an interface facet, read on its
    electrolyte ("-") side: the porosity of the electrolyte phase there (separator: eps_sep; porous
    CBD: eps_cbd), 1 elsewhere (owned + ghost cells)."""
    from dolfinx import fem  # here: the phase table itself needs no DOLFINx

    Q0 = fem.functionspace(msh, ("DG", 0))
    f = fem.Function(Q0, name="reacting_fraction")
    vals = np.ones(cell_tag.size)
    for ph in phases:
        vals[cell_tag == ph.tag] = ph.porosity
    f.x.array[Q0.dofmap.list[:, 0]] = vals
    return f
