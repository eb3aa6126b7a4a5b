"""Side-by-side runs of tomocell, TauFactor and PoreSpy for ``bench_characterise.py --compare``.

Each measurement runs in a fresh process (tomocell under this interpreter, the others under the
reference venv's) that reads the same TIFF, crops it the same way, times only the computation and
prints one JSON line with its wall and CPU time (after a warm-up on a 16^3 corner, so that numba's
compiled code is loaded and not timed, for tomocell and PoreSpy alike), its own peak RSS (which
includes the interpreter and the volume: the same for every tool) and its answer; local-thickness fields are
written to a temporary folder and compared voxel by voxel here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

_LOAD = """
import json, resource, sys, time
import numpy as np, tifffile
lab = tifffile.imread({vol!r})
n = {crop!r}
if n:
    lab = lab[:n, :n, :n]
pore = lab == {pore_value!r}
del lab
def done(t0, **kw):
    kw['wall_s'] = time.perf_counter() - t0
    r = resource.getrusage(resource.RUSAGE_SELF)
    kw['cpu_s'] = r.ru_utime + r.ru_stime - _c0
    kw['peak_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print('RESULT ' + json.dumps(kw), flush=True)
"""

_TOMOCELL_TAU = """
sys.path.insert(0, {repo!r})
import tomocell
from tomocell.microstructure.tortuosity import tortuosity_factor
from tomocell.microstructure.volume import Volume, PORE, ACTIVE
v = Volume(np.where(pore, PORE, ACTIVE).astype(np.uint8), {h!r})
tortuosity_factor(Volume(v.labels[:16, :16, :16].copy(), {h!r}), 'pore', 0, preconditioner={pc!r},
                  raise_if_not_percolating=False)  # compiled code loaded
_c0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t0 = time.perf_counter()
r = tortuosity_factor(v, 'pore', 0, preconditioner={pc!r})
done(t0, tau=r.tau, its=r.iterations, balance=r.flux_balance_error)
"""

_TOMOCELL_LT = """
sys.path.insert(0, {repo!r})
import tomocell
from tomocell.microstructure.poresize import local_thickness
from tomocell.microstructure.volume import Volume, PORE, ACTIVE
v = Volume(np.where(pore, PORE, ACTIVE).astype(np.uint8), {h!r})
local_thickness(Volume(v.labels[:16, :16, :16].copy(), {h!r}), 'pore')  # compiled code loaded
_c0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t0 = time.perf_counter()
lt = local_thickness(v, 'pore')
done(t0)
np.save({out!r}, (lt / {h!r}).astype(np.float32))  # diameter in voxels
"""

_TAUFACTOR = """
import taufactor
_c0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t0 = time.perf_counter()
s = taufactor.Solver(pore.astype(np.float32), device='cpu')
out = s.solve(verbose=False, conv_crit={conv!r})
tau = float(np.asarray(out.cpu() if hasattr(out, 'cpu') else out).ravel()[0])
done(t0, tau=tau)
"""

_PORESPY_LT = """
import porespy
porespy.filters.local_thickness(pore[:16, :16, :16])  # numba compiled
_c0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t0 = time.perf_counter()
lt = porespy.filters.local_thickness(pore)
done(t0)
np.save({out!r}, (2.0 * lt).astype(np.float32))  # porespy labels the radius in voxels
"""


def _run(py: str, code: str, label: str) -> dict:
    p = subprocess.run(["nice", "-n", "5", py, "-c", code], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(f"{label} failed (exit {p.returncode}):\n{p.stderr[-2000:]}", file=sys.stderr)
    return {}


def compare(args) -> int:
    vol = args.volume
    if not vol.is_file():
        print(f"volume {vol} is absent: nothing to do")
        return 0
    h = float(args.voxel_size.split(",")[0])
    pore_value = int(next(kv.split("=")[0] for kv in args.labels.split(",") if kv.split("=")[1] == "pore"))
    base = _LOAD.format(vol=str(vol), crop=args.crop, pore_value=pore_value)
    me = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        lt_tc, lt_ps = str(Path(tmp) / "tc.npy"), str(Path(tmp) / "ps.npy")
        rows = []
        if not args.only_lt:
            rows.append(("tortuosity", "tomocell (CG + GMG)", _run(me, base + _TOMOCELL_TAU.format(repo=str(REPO), h=h, pc="gmg"), "tomocell gmg")))
            if args.with_gamg:
                rows.append(("tortuosity", "tomocell (CG + GAMG)", _run(me, base + _TOMOCELL_TAU.format(repo=str(REPO), h=h, pc="gamg"), "tomocell gamg")))
            rows.append(("tortuosity", f"TauFactor (conv {args.tf_conv:g})", _run(args.compare, base + _TAUFACTOR.format(conv=args.tf_conv), "TauFactor")))
        rows += [
            ("local thickness", "tomocell", _run(me, base + _TOMOCELL_LT.format(repo=str(REPO), h=h, out=lt_tc), "tomocell LT")),
            ("local thickness", "PoreSpy (default)", _run(args.compare, base + _PORESPY_LT.format(out=lt_ps), "PoreSpy")),
        ]
        print(f"volume {vol.name}{f' crop {args.crop}^3' if args.crop else ''}, pore phase, voxel {h} um")
        print(f"{'metric':<16} {'tool':<24} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}  answer")
        for metric, tool, r in rows:
            if not r:
                print(f"{metric:<16} {tool:<24} {'failed':>8}")
                continue
            ans = f"tau {r['tau']:.5f}" if "tau" in r else ""
            if "its" in r:
                ans += f" ({r['its']} CG its, flux balance {r['balance']:.1e})"
            print(f"{metric:<16} {tool:<24} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['peak_mb']:8.0f}  {ans}")
        taus = [r["tau"] for _, _, r in rows if r and "tau" in r]
        if len(taus) > 1:
            print(f"tau spread across tools: {100 * (max(taus) - min(taus)) / min(taus):.3f} %")
        if Path(lt_tc).is_file() and Path(lt_ps).is_file():
            a, b = np.load(lt_tc), np.load(lt_ps)
            m = a > 0
            d = a[m] - b[m]
            print(f"local thickness (diameter, voxels) over {m.sum()} pore voxels: tomocell mean {a[m].mean():.3f}, "
                  f"PoreSpy mean {b[m].mean():.3f}; tomocell - PoreSpy: mean {d.mean():+.3f}, |diff| > 1 voxel in "
                  f"{100 * np.mean(np.abs(d) > 1.0):.2f} % of voxels, max |diff| {np.abs(d).max():.2f}")
    return 0
