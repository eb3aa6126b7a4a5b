"""Operating protocols: PyBaMM-style experiment strings (:mod:`.experiment`) and their execution on the
half-cell model (:mod:`.run`)."""

from tomocell.physics.protocols.experiment import Step, expand, parse_experiment, parse_step

__all__ = ["Step", "expand", "parse_experiment", "parse_step"]
