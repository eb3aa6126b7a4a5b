"""The homogenised separator slab added on the separator side of the electrode.

The slab is electrolyte-only (cell tag :data:`tags.SEPARATOR`) and spans ``L <= z <= L + L_sep``.
Its layers start as thin as the electrode's top cells (so cells at the electrode/separator plane are
not stretched) and grow geometrically to a maximum thickness, so a 25 um slab costs a few layers.
"""

from __future__ import annotations

import numpy as np

from tomocell.errors import InputError


def layer_thicknesses(total_um: float, first_um: float, max_um: float, growth: float = 1.3) -> np.ndarray:
    """Layer thicknesses (um) summing exactly to ``total_um``, growing by ``growth`` up to ``max_um``.

    The first layer is ``first_um``; the remainder is spread so the sum is exact.
    """
    if total_um < 0 or not np.isfinite(total_um):
        raise InputError(f"separator thickness must be >= 0 um, got {total_um}")
    if total_um == 0:
        return np.zeros(0)
    if first_um <= 0 or max_um <= 0:
        raise InputError("separator layer sizes must be positive")
    hs: list[float] = []
    h = min(first_um, max_um)
    acc = 0.0
    while acc + h < total_um - 1e-9 * total_um:
        hs.append(h)
        acc += h
        h = min(h * growth, max_um)
    rest = total_um - acc
    if hs and rest < 0.5 * hs[-1]:
        hs[-1] += rest  # merge a sliver layer into the previous one
    else:
        hs.append(rest)
    out = np.asarray(hs, dtype=float)
    out *= total_um / out.sum()
    return out
