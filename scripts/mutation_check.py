#!/usr/bin/env python3
"""Mutation check: do the tests catch wrong physics?

Applies deliberate physics errors, one at a time, to a copy of this checkout, runs the chosen tests
on the copy and reports, per error, which tests failed and whether one of them is a physics-reference
test (a test that compares a physical value with an independent reference, REFERENCE_TESTS below). A
catch only by a solver-iteration bound or by a second copy of the same formula does not count.

    .venv/bin/python scripts/mutation_check.py                 # the reference tests (~30 min, make test-slow)
    .venv/bin/python scripts/mutation_check.py --tests tests   # the whole default suite (hours)
    .venv/bin/python scripts/mutation_check.py --only kappa_x0.1 --keep

Only failures of REFERENCE_TESTS count as catches, so running just those files gives the same count as
the whole suite; --tests tests also lists what else fails. The latest result is in
scripts/mutation_check.md (--markdown).

Exit 0 when every error was caught by a reference test, 1 otherwise; --markdown writes the table.
The copy imports the mutated sources: PYTHONPATH points at it and its sitecustomize.py removes the
editable install's import finder.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"microstructure": "microstructure", "meshing": "meshing", "physics": "physics", "studies": "studies"}

#: name -> (file, exact text, replacement, what the error is)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "kappa_x0.1": ("physics/model.py", "kap = p.kappa(c=c, T=p.temperature, ufl=True)",
                   "kap = 0.1 * p.kappa(c=c, T=p.temperature, ufl=True)", "electrolyte conductivity x 0.1"),
    "migration_sign": ("physics/model.py", "+ tp * self.ionic_current(ce, pe, tau) / (FARADAY",
                       "- tp * self.ionic_current(ce, pe, tau) / (FARADAY", "migration term - t+ i_e / F"),
    "i0_x2": ("physics/kinetics.py", "return FARADAY * p.k_ct * c**p.alpha_a",
              "return 2 * FARADAY * p.k_ct * c**p.alpha_a", "exchange current density x 2"),
    "Ds_x2": ("physics/model.py", "Ds / ell**2 * ufl.inner(ufl.grad(cs), ufl.grad(v))",
              "2 * Ds / ell**2 * ufl.inner(ufl.grad(cs), ufl.grad(v))", "solid diffusivity x 2"),
    "De_x2": ("physics/model.py", "D = p.D_e(c=c, T=p.temperature, ufl=True)",
              "D = 2 * p.D_e(c=c, T=p.temperature, ufl=True)", "electrolyte diffusivity x 2"),
    "tplus_swapped": ("physics/model.py", "tp = p.t_plus(c=c, T=p.temperature, ufl=True)",
                      "tp = 1 - p.t_plus(c=c, T=p.temperature, ufl=True)", "t+ -> 1 - t+"),
    "diffusion_potential_x0.5": ("physics/model.py", "2.0 * p.thermal_voltage * (1.0 - tp) * tdf",
                                 "1.0 * p.thermal_voltage * (1.0 - tp) * tdf", "diffusion-potential factor x 0.5"),
    "li_i0_x10": ("physics/model.py", "i0 = p.li_i0 * ufl.max_value(ce, 1e-9)",
                  "i0 = 10 * p.li_i0 * ufl.max_value(ce, 1e-9)", "Li-metal exchange current x 10"),
    "faraday_x1.05": ("physics/parameters.py", "FARADAY = 96485.33212", "FARADAY = 1.05 * 96485.33212",
                      "Faraday constant 5 % off"),
    "reaction_sign_solid": ("physics/model.py", "+ i_n / (F * p.c_max * ell) * v(\"+\") * dS)",
                            "- i_n / (F * p.c_max * ell) * v(\"+\") * dS)",
                            "Li flux into the particle with the wrong sign"),
    "bv_alpha_a": ("physics/model.py", "ufl.exp(p.alpha_a * eta / vt)", "ufl.exp((p.alpha_a + 0.2) * eta / vt)",
                   "Butler-Volmer anodic alpha + 0.2"),
    "bruggeman_off": ("physics/electrolyte_phases.py", "p.sep_porosity, p.sep_porosity**p.sep_bruggeman)",
                      "p.sep_porosity, p.sep_porosity)", "separator Bruggeman eps^b -> eps"),
    "cbd_bruggeman_off": ("physics/electrolyte_phases.py", "p.cbd_porosity, p.cbd_porosity**p.cbd_bruggeman)",
                          "p.cbd_porosity, p.cbd_porosity)", "porous-CBD Bruggeman eps^b -> eps"),
    "sigma_x0.1": ("physics/model.py", "W * (p.sigma_active / ell**2", "W * (0.1 * p.sigma_active / ell**2",
                   "active-material conductivity x 0.1"),
    "voxel_axis_swap": ("meshing/voxel.py", "xs = block_edges(n2, coarsen, d2)", "xs = block_edges(n2, coarsen, d0)",
                        "voxel-mesh x spacing taken from the z voxel size"),
    "face_areas_reversed": ("microstructure/interfaces.py", "farea = (vs[1] * vs[2], vs[0] * vs[2], vs[0] * vs[1])",
                            "farea = (vs[0] * vs[1], vs[0] * vs[2], vs[1] * vs[2])",
                            "voxel-face areas in reverse axis order"),
    "tortuosity_spacing_reversed": ("microstructure/tortuosity.py",
                                    "return _solve(mask, None, volume.voxel_size_um, axis,",
                                    "return _solve(mask, None, volume.voxel_size_um[::-1], axis,",
                                    "tortuosity solve with the voxel spacing in reverse axis order"),
}

#: test files whose tests compare physical values with independent references
REFERENCE_TESTS = ("tests/test_physics_reference_1d.py", "tests/test_physics_mms.py", "tests/test_anisotropic_voxels.py")


def make_copy(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.pyc", ".pytest_cache", "build", "*.egg-info")
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    for sub, src in PACKAGES.items():  # the installed layout: tomocell.<sub> = <src>/
        (dest / "tomocell" / sub).symlink_to(Path("..") / src)
    # the editable install's finder maps tomocell.* to this checkout ahead of sys.path: drop it in the copy
    (dest / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')\n"
        "                    and 'editable' not in type(f).__module__]\n")


def mutate(copy: Path, name: str) -> None:
    rel, old, new, _ = MUTATIONS[name]
    f = copy / rel
    text = f.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"mutation {name}: expected exactly one {old!r} in {rel}, found {text.count(old)}")
    f.write_text(text.replace(old, new))


def run_tests(copy: Path, tests: list[str], marker: str, timeout: float) -> tuple[str, list[str], float]:
    env = dict(os.environ, PYTHONPATH=str(copy))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker, "-rf", *tests]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", [], time.monotonic() - t0
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", r.stdout, re.M)))
    status = "pass" if r.returncode == 0 else ("fail" if failed else f"rc={r.returncode}")
    return status, failed, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", nargs="+", default=list(REFERENCE_TESTS),
                    help="test paths (default: the reference tests; 'tests' for the whole suite)")
    ap.add_argument("-m", "--marker", default="not slow and not mpi", help="pytest -m expression")
    ap.add_argument("--only", nargs="+", choices=sorted(MUTATIONS), help="run only these mutations")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per mutation run")
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    ap.add_argument("--keep", action="store_true", help="keep the mutated copies (their paths are printed)")
    a = ap.parse_args(argv)
    names = a.only or list(MUTATIONS)
    # every mutation must still find its text (the code moves on): refuse before an hour of runs
    stale = [n for n in names if (ROOT / MUTATIONS[n][0]).read_text().count(MUTATIONS[n][1]) != 1]
    if stale:
        print(f"mutation_check: the text of {', '.join(stale)} is not found exactly once: update MUTATIONS",
              file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="tomocell-mutation-"))
    rows = []
    try:
        # the unmutated copy must pass, or a "catch" would mean nothing
        make_copy(base / "baseline")
        status, failed, secs = run_tests(base / "baseline", a.tests, a.marker, a.timeout)
        print(f"{'(no error: baseline)':26s} {status:8s} {len(failed):3d} failed ({secs:.0f} s)", flush=True)
        if status != "pass":
            print(f"mutation_check: the unmutated copy does not pass ({', '.join(failed) or status})", file=sys.stderr)
            return 2
        shutil.rmtree(base / "baseline", ignore_errors=True)
        for name in names:
            copy = base / name
            make_copy(copy)
            mutate(copy, name)
            status, failed, secs = run_tests(copy, a.tests, a.marker, a.timeout)
            ref = [t for t in failed if t.startswith(REFERENCE_TESTS)]
            rows.append((name, MUTATIONS[name][3], status, ref, failed, secs))
            print(f"{name:26s} {status:8s} {len(failed):3d} failed, {len(ref)} by a reference test ({secs:.0f} s)",
                  flush=True)
            if not a.keep:
                shutil.rmtree(copy, ignore_errors=True)
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    caught = sum(1 for r in rows if r[3])
    lines = [f"Tests: `{' '.join(a.tests)}` -m \"{a.marker}\"; caught by a reference test: {caught} of {len(rows)}", "",
             "| error | result | caught by a reference test | other failures | s |", "|---|---|---|---|---|"]
    for name, what, status, ref, failed, secs in rows:
        other = [t for t in failed if t not in ref]
        short = lambda ts: ", ".join(t.split("::")[-1] for t in ts) or "-"  # noqa: E731
        lines.append(f"| {what} (`{name}`) | {status} | {short(ref)} | {short(other)} | {secs:.0f} |")
    table = "\n".join(lines)
    print("\n" + table)
    if a.markdown:
        a.markdown.write_text(table + "\n")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
