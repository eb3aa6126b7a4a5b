"""Figure style, checked on the source of every module that draws (issue 18 item 5).

Two rules a reader notices at once: no rainbow colormaps (jet and friends are not perceptually uniform and
invent edges), and a colour map always comes with a key (a colourbar, a legend, or pyvista's scalar bar).
The scan reads the code with ``ast`` so it needs neither matplotlib nor a run.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("microstructure", "meshing", "physics", "studies", "tomocell", "scripts")
FORBIDDEN = {"jet", "rainbow", "gist_rainbow", "hsv", "nipy_spectral", "gist_ncar", "spectral", "prism", "flag",
             "gist_stern", "cubehelix_r_jet"}
KEYS = {"colorbar", "legend", "add_scalar_bar"}


def _drawing_modules() -> list[Path]:
    files = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            text = f.read_text(encoding="utf-8")
            if "cmap" in text or "colormap" in text.lower():
                files.append(f)
    return files


def forbidden_colormaps(source: str) -> list[str]:
    """Rainbow colormap names used in ``source``: as a string literal or as an attribute (``cm.jet``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value.removesuffix("_r").lower()
            if name in FORBIDDEN:
                found.append(f"line {node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Attribute) and node.attr.removesuffix("_r").lower() in FORBIDDEN \
                and ast.unparse(node.value).split(".")[-1] in {"cm", "colormaps"}:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def keyless_colour_maps(source: str) -> list[str]:
    """Functions that pass ``cmap=`` to a call but never draw a key (colourbar, legend or scalar bar)."""
    bad = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call)]
        mapped = [c for c in calls if any(k.arg == "cmap" for k in c.keywords)]
        if not mapped:
            continue
        named = {c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", "") for c in calls}
        scalar_bar = any(k.arg == "scalar_bar_args" for c in mapped for k in c.keywords)
        if not (named & KEYS or scalar_bar):
            bad.append(f"{fn.name} (line {fn.lineno})")
    return bad


def test_scanner_catches_the_defects_it_is_for():
    bad = 'def f(ax, x):\n    ax.imshow(x, cmap="jet")\n    ax.scatter(x, x, c=x, cmap=plt.cm.gist_rainbow_r)\n'
    assert len(forbidden_colormaps(bad)) == 2
    assert keyless_colour_maps(bad) == ["f (line 1)"]
    good = 'def f(fig, ax, x):\n    im = ax.imshow(x, cmap="viridis")\n    fig.colorbar(im, ax=ax)\n'
    assert forbidden_colormaps(good) == [] and keyless_colour_maps(good) == []


def test_there_are_figure_modules_to_scan():
    names = {f.name for f in _drawing_modules()}
    assert {"characterise_output.py", "analysis_figures.py", "analysis_render.py"} <= names, names


@pytest.mark.parametrize("path", _drawing_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_rainbow_colormap(path: Path):
    assert forbidden_colormaps(path.read_text(encoding="utf-8")) == [], f"{path}: use viridis/magma/cividis"


@pytest.mark.parametrize("path", _drawing_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_colour_map_has_a_key(path: Path):
    assert keyless_colour_maps(path.read_text(encoding="utf-8")) == [], f"{path}: add a colourbar or legend"
