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
from typing import TYPE_CHECKING

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


def porosity_by_tag(phases: tuple[ElectrolytePhase, ...]) -> dict[int, float]:
    return {ph.tag: ph.porosity for ph in phases}


def transport_by_tag(phases: tuple[ElectrolytePhase, ...]) -> dict[int, float]:
    return {ph.tag: ph.transport for ph in phases}
