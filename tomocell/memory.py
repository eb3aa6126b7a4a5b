"""How much memory a step will need, checked against what the machine has before it starts.

``available_bytes`` is the kernel's MemAvailable (/proc/meminfo: free + reclaimable page cache), capped
by the cgroup limit when the process runs in a container or a batch job (cgroup v2 ``memory.max``,
v1 ``memory.limit_in_bytes``) minus what the cgroup already uses. Read here with the standard library:
psutil is not in the pinned stack and reports the host's memory, not a container's limit.
``TOMOCELL_MEMORY_BYTES`` overrides it (tests, or to allow more than the estimate thinks is safe).
"""

from __future__ import annotations

import os
from pathlib import Path

from tomocell.errors import InputError


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> int | None:
    """Bytes this process can still allocate without swapping (None if unknown)."""
    env = os.environ.get("TOMOCELL_MEMORY_BYTES")
    if env:
        return int(float(env))
    avail: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    for limit_f, used_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                            ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, used = _read_int(limit_f), _read_int(used_f)
        if limit is not None and limit < (1 << 60):
            room = limit - (used or 0)
            avail = room if avail is None else min(avail, room)
            break
    return avail


def fmt_bytes(n: float) -> str:
    for unit, k in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def check_memory(need_bytes: float, what: str, hint: str = "") -> None:
    """InputError with both figures if ``need_bytes`` exceeds what is available."""
    avail = available_bytes()
    if avail is not None and need_bytes > avail:
        raise InputError(f"{what} needs about {fmt_bytes(need_bytes)} of memory, but this machine has "
                         f"{fmt_bytes(avail)} available{': ' + hint if hint else ''}")
