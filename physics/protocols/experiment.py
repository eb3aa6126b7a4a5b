"""PyBaMM-style experiment strings -> a flat list of :class:`Step` (SI units, discharge positive).

The step syntax is PyBaMM's (``pybamm.Experiment``), so users paste what they already have::

    Discharge at 1C until 3.0 V            Charge at C/2 until 4.2 V
    Rest for 10 minutes                    Hold at 4.2 V until C/50
    Discharge at 2 mA for 30 seconds       Discharge at 1 W for 1 hour or until 3.3 V
    Discharge at 10 Ohm until 3.0 V        Discharge at 1C until < 3.5 V    (PyBaMM's operators < and >)
    Charge at 0.5 mA/cm2 until 4.2 V       (an extension: per projected area, for sub-volume meshes)

plus two extensions of our own:

* repeated blocks ``(Discharge at C/5 for 10 minutes, Rest for 20 minutes) x 10`` (PyBaMM writes a
  Python list times 10); blocks may nest;
* drive cycles ``Run FILE.csv (A)`` (``(A)`` current, ``(W)`` power, ``(C)`` C-rate, ``(A/m2)``
  current density), a CSV of time [s] and value, held piecewise constant between its rows.

Signs follow PyBaMM: a positive current or power discharges the working electrode. Terminations:
a voltage (``until 3.0 V``), an end current (``until C/50``, ``until 50 uA``), several joined by
``or``; as in PyBaMM a leading ``<`` or ``>`` fixes the side a voltage end is reached from (without it
a discharge ends below, a charge above the voltage) and makes a current end signed (without it the
magnitude falls below the value). A resistance step (``Discharge at 10 Ohm``) draws I = V / R.
Everything that cannot be parsed raises :class:`~tomocell.errors.InputError` (exit 2) naming
the step and what is wrong.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tomocell.errors import InputError

#: step kinds: what is imposed
KINDS = ("current", "c_rate", "current_density", "power", "power_density", "resistance", "voltage", "rest", "profile")

_TIME_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
_PREFIX = {"": 1.0, "k": 1e3, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9}
#: electrical units -> step kind (per projected area: A/m2 SI, mA/cm2 the lab's)
_UNITS = {"A": "current", "W": "power", "V": "voltage", "Ohm": "resistance", "A/m2": "current_density", "A/cm2": "current_density",
          "W/m2": "power_density", "W/cm2": "power_density"}
_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


@dataclass(frozen=True)
class Termination:
    """An end condition: ``kind`` "voltage" [V], "current" [A], "c_rate", or "current_density" [A/m2].
    ``operator`` "<", ">" or None (PyBaMM's): a voltage end reached from above / below (None: from the
    step's direction); a current end on the signed current (None: its magnitude falls below)."""

    kind: str
    value: float
    operator: str | None = None


@dataclass(frozen=True)
class Step:
    """One operating step. ``value``: A, C-rate, A/m2, W, W/m2 or V by ``kind`` (positive = discharge;
    0 for rest). ``duration_s`` None: until a termination. ``profile``: (times_s, values) of a drive cycle,
    ``profile_unit`` the kind of its values. ``label``: the ``segment`` name in timeseries.csv (default
    :attr:`direction`)."""

    kind: str
    value: float
    duration_s: float | None
    until: tuple[Termination, ...] = ()
    text: str = ""
    profile: tuple[tuple[float, ...], tuple[float, ...]] | None = field(default=None, repr=False)
    profile_unit: str = ""
    label: str = ""

    @property
    def direction(self) -> str:
        """"discharge", "charge", "rest" or "hold" (voltage) or "profile"."""
        if self.kind == "rest":
            return "rest"
        if self.kind == "voltage":
            return "hold"
        if self.kind == "profile":
            return "profile"
        return "discharge" if self.value > 0 else "charge"


def _err(text: str, why: str) -> InputError:
    return InputError(f"experiment step {text!r}: {why}. Expected PyBaMM syntax such as 'Discharge at 1C until "
                      "3.0 V', 'Rest for 10 minutes', 'Charge at C/2 until 4.2 V', 'Hold at 4.2 V until C/50', "
                      "'Discharge at 2 mA for 30 seconds', '(Discharge at C/5 for 10 minutes, Rest for 20 minutes) x 3'")


def parse_duration(text: str, step: str = "") -> float:
    """'10 minutes' -> 600.0 (seconds); also 1 hour, 30 s, 2 days."""
    m = re.fullmatch(rf"\s*({_NUM})\s*([A-Za-z]+)\s*", text)
    if not m or m.group(2).lower() not in _TIME_UNITS:
        raise _err(step or text, f"duration {text.strip()!r} is not NUMBER UNIT with a unit of seconds, minutes, "
                                 "hours or days")
    d = float(m.group(1)) * _TIME_UNITS[m.group(2).lower()]
    if not (math.isfinite(d) and d > 0):
        raise _err(step or text, f"duration {text.strip()!r} must be > 0")
    return d


def parse_electric(text: str, step: str = "") -> tuple[str, float]:
    """'1C' / 'C/2' / '0.5 C' -> ("c_rate", x); '2 mA' -> ("current", 2e-3); '4.2 V' -> ("voltage", 4.2);
    '1 W' -> ("power", 1.0); '5 mA/cm2' -> ("current_density", 50.0 A/m2). Magnitudes, no sign."""
    s = text.strip()
    m = re.fullmatch(r"C\s*/\s*(" + _NUM + r")", s)
    if m:
        den = float(m.group(1))
        if den <= 0:
            raise _err(step or text, f"{s!r}: C/x needs x > 0")
        return "c_rate", 1.0 / den
    m = re.fullmatch(rf"({_NUM})\s*C", s)
    if m:
        return "c_rate", float(m.group(1))
    m = re.fullmatch(rf"({_NUM})\s*([kmunµ]?)(A|W|V|Ohm)(/[cm]?m2)?", s)
    if not m:
        raise _err(step or text, f"value {s!r} is not a C-rate (1C, C/2), a current (2 mA), a voltage (4.2 V), "
                                 "a power (1 W), a resistance (10 Ohm) or a current density (0.5 mA/cm2)")
    val = float(m.group(1)) * _PREFIX[m.group(2)]
    unit = m.group(3) + (m.group(4) or "")
    if unit.endswith("/cm2"):
        val, unit = val * 1e4, unit[:-4] + "/m2"
    if unit.endswith("/mm2"):
        val, unit = val * 1e6, unit[:-4] + "/m2"
    if unit not in _UNITS:
        raise _err(step or text, f"unit {unit!r} is not one of A, W, V, Ohm, A/m2, A/cm2, W/m2, W/cm2")
    return _UNITS[unit], val


def _termination(text: str, step: str) -> Termination:
    t = text.strip()
    op = t[0] if t[:1] in ("<", ">") else None
    kind, val = parse_electric(t[1:] if op else t, step)
    if kind in ("power", "power_density", "resistance"):
        raise _err(step, f"termination {text.strip()!r}: a step ends at a voltage or a current, not a power or resistance")
    return Termination(kind, val, op)


def _profile(path_text: str, unit: str, step: str, base: Path | None) -> Step:
    path = Path(path_text.strip())
    if not path.is_absolute() and base is not None and not path.exists():
        path = base / path
    if not path.is_file():
        raise _err(step, f"drive-cycle file {path_text.strip()!r} does not exist")
    kinds = {"A": "current", "W": "power", "C": "c_rate", "A/m2": "current_density", "W/m2": "power_density"}
    if unit not in kinds:
        raise _err(step, f"drive-cycle unit ({unit}) must be (A), (W), (C), (A/m2) or (W/m2)")
    ts: list[float] = []
    vs: list[float] = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            try:
                t, v = float(row[0]), float(row[1])
            except (ValueError, IndexError):
                if i == 0 and not ts:  # header
                    continue
                raise _err(step, f"{path}: row {i + 1} is not 'time_s,value'") from None
            if not (math.isfinite(t) and math.isfinite(v)):
                raise _err(step, f"{path}: row {i + 1} is not finite")
            if ts and t <= ts[-1]:
                raise _err(step, f"{path}: times must increase (row {i + 1})")
            ts.append(t)
            vs.append(v)
    if len(ts) < 2:
        raise _err(step, f"{path}: a drive cycle needs at least two rows of time_s,value")
    if ts[0] != 0.0:
        raise _err(step, f"{path}: the first time must be 0 s, got {ts[0]}")
    return Step("profile", 0.0, ts[-1] - ts[0], (), step, (tuple(ts), tuple(vs)), kinds[unit])


def parse_step(text: str, base: Path | None = None) -> Step:
    """One PyBaMM step string -> :class:`Step`. ``base``: folder for relative drive-cycle paths."""
    if not isinstance(text, str):
        raise InputError(f"experiment step must be a string, got {type(text).__name__}")
    s = " ".join(text.split())
    if not s:
        raise _err(text, "empty step")
    m = re.fullmatch(r"Run\s+(.+?)\s*\(([^)]+)\)(?:\s+until\s+(.+))?", s)
    if m:
        st = _profile(m.group(1), m.group(2).strip(), s, base)
        if m.group(3):
            until = tuple(_termination(t, s) for t in re.split(r"\s+or\s+", m.group(3)))
            st = Step(st.kind, st.value, st.duration_s, until, s, st.profile, st.profile_unit)
        return st
    if re.search(r"period\)|\d\s*(?:oC|°C)", s):
        raise _err(text, "periods and temperatures are not supported (the model is isothermal; time steps are adaptive)")
    body, until_text = s, None
    if " until " in f" {s} ":
        body, until_text = re.split(r"\s+until\s+", s, maxsplit=1)
        body = re.sub(r"\s+or$", "", body)
    duration = None
    if re.search(r"\sfor\s", body):
        body, dur_text = re.split(r"\s+for\s+", body, maxsplit=1)
        duration = parse_duration(dur_text, s)
    until = tuple(_termination(t, s) for t in re.split(r"\s+or\s+(?:until\s+)?", until_text)) if until_text else ()
    word = body.split(" ", 1)[0].lower()
    if word == "rest":
        if body.strip().lower() != "rest":
            raise _err(s, "a rest takes no value ('Rest for 10 minutes')")
        if duration is None:
            raise _err(s, "a rest needs a duration ('Rest for 10 minutes')")
        if until:
            raise _err(s, "a rest ends after its duration, not at a voltage or current")
        return Step("rest", 0.0, duration, (), s)
    m = re.fullmatch(r"(\w+)\s+at\s+(.+)", body)
    if not m or word not in ("discharge", "charge", "hold"):
        raise _err(s, "a step starts with Discharge, Charge, Hold, Rest or Run")
    kind, val = parse_electric(m.group(2), s)
    if word == "hold" and kind != "voltage":
        raise _err(s, "'Hold at' takes a voltage ('Hold at 4.2 V until C/50')")
    if word != "hold" and kind == "voltage":
        raise _err(s, f"'{m.group(1)} at' takes a current, C-rate or power; hold a voltage with 'Hold at 4.2 V'")
    if val <= 0 or not math.isfinite(val):
        raise _err(s, f"the value must be > 0 (the direction comes from {m.group(1)!r})")
    if kind == "voltage" and any(u.kind == "voltage" for u in until):
        raise _err(s, "a voltage hold ends at a current or after a time, not at a voltage")
    if duration is None and not until:
        raise _err(s, "the step never ends: give 'for DURATION' and/or 'until VALUE'")
    if kind != "voltage":
        val = -val if word == "charge" else val
    return Step(kind, val, duration, until, s)


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            raise InputError(f"experiment {text!r}: unbalanced ')'")
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise InputError(f"experiment {text!r}: unbalanced '('")
    out.append("".join(cur))
    return [p.strip() for p in out if p.strip()]


def expand(text: str, base: Path | None = None, _depth: int = 0) -> list[Step]:
    """One entry (a step or a ``(step, step, ...) x N`` block, nesting allowed) -> the flat steps."""
    s = text.strip()
    m = re.fullmatch(r"\((.*)\)\s*[xX*×]\s*(\d+)", s, flags=re.S)
    if m and _depth < 8:
        n = int(m.group(2))
        if not 1 <= n <= 100_000:
            raise InputError(f"experiment block {s!r}: the repeat count must lie in [1, 100000]")
        inner: list[Step] = []
        for part in _split_top(m.group(1)):
            inner.extend(expand(part, base, _depth + 1))
        return inner * n
    if s.startswith("("):
        raise InputError(f"experiment block {s!r}: a block is '(STEP, STEP, ...) x N'")
    return [parse_step(s, base)]


def parse_experiment(entries: str | list[str] | tuple[str, ...], base: Path | None = None) -> list[Step]:
    """Experiment -> expanded steps. ``entries``: a list of step strings / blocks (as given on the command
    line), or one string with entries on separate lines (an experiment file: ``#`` comments, blank lines
    ignored). Raises InputError on anything it cannot parse, or when the experiment is empty."""
    if isinstance(entries, str):
        entries = [entries]
    steps: list[Step] = []
    for entry in entries:
        for line in str(entry).splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                for part in _split_top(line):
                    steps.extend(expand(part, base))
    if not steps:
        raise InputError("the experiment has no steps")
    if len(steps) > 1_000_000:
        raise InputError(f"the experiment expands to {len(steps)} steps (limit 1000000)")
    return steps


def read_experiment_file(path: str | Path) -> list[Step]:
    """Steps of an experiment file (one step or block a line; drive-cycle paths relative to the file)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"experiment file {str(path)!r} does not exist")
    return parse_experiment(p.read_text(), base=p.parent)


def step_record(step: Step, index: int) -> dict[str, object]:
    """One expanded step as JSON-ready data (run.json's ``experiment``): what it imposes (``kind``,
    ``value`` in SI or C, positive = discharge), ``duration_s``, its ``until`` ends, ``direction``,
    ``label`` and, for a drive cycle, the (time_s, value) points of its ``profile``."""
    rec: dict[str, object] = {"protocol_step": index, "text": step.text, "kind": step.kind, "value": step.value,
                              "direction": step.direction, "duration_s": step.duration_s,
                              "until": [{"kind": u.kind, "value": u.value, "operator": u.operator} for u in step.until],
                              "label": step.label or step.direction}
    if step.profile is not None:
        rec.update(profile_unit=step.profile_unit, profile={"time_s": list(step.profile[0]), "value": list(step.profile[1])})
    return rec
