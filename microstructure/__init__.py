"""Labelled electrode volumes: I/O, segmentation, dual-scan superimposition, synthetic electrodes,
and the microstructure characterisation of Lu et al. (2020), Fig. 2 and 5.

Every function takes and returns :class:`tomocell.microstructure.volume.Volume`.
"""

from tomocell.microstructure.volume import ACTIVE, CBD, PHASE_CODES, PHASE_NAMES, PORE, Volume

__all__ = ["ACTIVE", "CBD", "PHASE_CODES", "PHASE_NAMES", "PORE", "Volume"]
