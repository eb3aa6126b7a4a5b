"""Run configuration files (TOML, YAML or JSON) and the shared option parsers.

A config file gives defaults for a subcommand's options (keys = option names with ``-`` or ``_``);
options on the command line win over the file.
"""

from __future__ import annotations

import math
import numbers

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from tomocell.errors import InputError

PHASES = ("pore", "active", "cbd")


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML/YAML/JSON mapping; InputError on a missing, unreadable or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise InputError(f"config file {p}: unknown format {p.suffix!r} (use .toml, .yaml or .json)")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"config file {p} could not be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"config file {p} must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse_labels(spec: str | dict[str, Any] | None) -> dict[int, str] | None:
    """Parse ``--labels 0=pore,85=active,170=cbd`` into {0: 'pore', 85: 'active', 170: 'cbd'}."""
    if spec is None:
        return None
    items: list[tuple[str, str]]
    if isinstance(spec, dict):
        items = [(str(k), str(v)) for k, v in spec.items()]
    else:
        items = []
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise InputError(f"--labels: {part!r} is not VALUE=PHASE (phases: {', '.join(PHASES)})")
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
    out: dict[int, str] = {}
    for k, v in items:
        try:
            value = int(k)
        except ValueError:
            raise InputError(f"--labels: label value {k!r} is not an integer") from None
        phase = v.lower()
        if phase not in PHASES:
            raise InputError(f"--labels: unknown phase {v!r} for value {value} (phases: {', '.join(PHASES)})")
        if value in out:
            raise InputError(f"--labels: value {value} given twice")
        out[value] = phase
    if not out:
        raise InputError("--labels is empty")
    return out


def parse_voxel_size(spec: str | float | list[float] | tuple[float, ...] | None) -> tuple[float, float, float] | None:
    """Parse ``--voxel-size`` in micrometres: one number (isotropic) or three (axis 0,1,2)."""
    if spec is None:
        return None
    if isinstance(spec, (int, float)):
        vals = [float(spec)]
    elif isinstance(spec, (list, tuple)):
        vals = [float(v) for v in spec]
    else:
        try:
            vals = [float(v) for v in str(spec).replace("x", ",").split(",") if v.strip()]
        except ValueError:
            raise InputError(f"--voxel-size: {spec!r} is not a number or three comma-separated numbers (um)") from None
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise InputError(f"--voxel-size: expected 1 or 3 values (um), got {len(vals)}")
    if not all(v > 0 and v == v and v != float("inf") for v in vals):
        raise InputError(f"--voxel-size must be positive and finite (um), got {vals}")
    return (vals[0], vals[1], vals[2])


def check_c_rate(value: Any, name: str = "C-rate") -> float:
    """``value`` as a float if it is a finite number > 0 (the one check of a C-rate: the CLI, the demo,
    ``simulate_file`` and ``simulate_discharge``); else InputError naming ``name``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a finite number > 0, got {value}")
    return float(value)
