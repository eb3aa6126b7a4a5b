"""The analysis report: ``report.md`` and ``report.html`` with every figure, caption, conclusion and a
list of the CSV files holding the numbers behind them. Written atomically."""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tomocell.atomic import atomic_path, write_csv_rows
from tomocell.studies.runner import Figure


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Rows (dicts) as CSV, atomically (see :func:`tomocell.atomic.write_csv_rows`)."""
    return write_csv_rows(path, rows, columns)


def _table_md(rows: Sequence[dict[str, Any]], cols: Sequence[tuple[str, str, str]]) -> list[str]:
    """Markdown table; ``cols`` = (key, header, format)."""
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for k, _, f in cols:
            v = r.get(k, "")
            cells.append(format(v, f) if isinstance(v, (int, float, np.floating)) and f else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_report(out: Path, *, runs: Sequence[Any], dod: float, summary: Sequence[dict[str, Any]],
                 spread: Sequence[dict[str, Any]], conclusions: Sequence[str], figures: Sequence[Figure],
                 tables: Sequence[str], notes: Sequence[str] = ()) -> tuple[Path, Path]:
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    md = [f"# Discharge analysis at {100 * dod:.0f} % depth of discharge", "",
          f"Generated {now} by `tomocell analyse` from {len(runs)} run(s):", ""]
    md += [f"- {r.name}: `{r.path}` (electrode thickness {r.thickness_um:.2f} um from {r.thickness_source})" for r in runs]
    md += ["", "## Delivered capacity, energy and mean voltage", ""]
    md += _table_md(summary, [("c_rate", "C-rate", "g"), ("capacity_mAh_g", "capacity (mAh/g)", ".2f"),
                              ("capacity_mAh_cm2", "capacity (mAh/cm2)", ".4f"),
                              ("specific_energy_Wh_kg", "energy (Wh/kg AM)", ".1f"),
                              ("areal_energy_mWh_cm2", "energy (mWh/cm2)", ".4f"),
                              ("mean_voltage_V", "mean voltage (V)", ".4f"), ("utilisation", "utilisation", ".3f")])
    md += ["", "## State-of-lithiation spread across particles", ""]
    md += _table_md(spread, [("c_rate", "C-rate", "g"), ("dod", "DoD", ".2f"), ("mean", "mean SoL", ".4f"),
                             ("std", "sd (volume-weighted)", ".4f"), ("p05_p95", "5-95 % range", ".4f"),
                             ("range", "max - min", ".4f"), ("n_peaks", "histogram peaks", "d")])
    md += ["", "## Conclusions", ""] + [f"- {c}" for c in conclusions]
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    md += ["", "## Figures", ""]
    for i, f in enumerate(figures, start=1):
        md += [f"![Figure {i}]({f.path})", "", f"**Figure {i}.** {f.caption}", ""]
    md += ["## Numbers behind the figures (CSV)", ""] + [f"- `{t}`" for t in tables] + [""]
    md_path = out / "report.md"
    with atomic_path(md_path) as tmp:
        tmp.write_text("\n".join(md))
    body = [f"<h1>Discharge analysis at {100 * dod:.0f} % depth of discharge</h1>", f"<p>Generated {now}.</p>",
            "<h2>Delivered capacity, energy and mean voltage</h2>", _html_table(summary),
            "<h2>State-of-lithiation spread</h2>", _html_table(spread),
            "<h2>Conclusions</h2><ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in conclusions) + "</ul>"]
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    body.append("<h2>Figures</h2>")
    for i, f in enumerate(figures, start=1):
        body.append(f'<figure><img src="{html.escape(f.path)}" style="max-width:100%"><figcaption><b>Figure {i}.</b> '
                    f"{html.escape(f.caption)}</figcaption></figure>")
    body.append("<h2>CSV files</h2><ul>" + "".join(f'<li><a href="{html.escape(t)}">{html.escape(t)}</a></li>' for t in tables) + "</ul>")
    html_path = out / "report.html"
    with atomic_path(html_path) as tmp:
        tmp.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>tomocell analysis</title></head><body>"
                       + "\n".join(body) + "</body></html>")
    return md_path, html_path


def _html_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_short(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table border='1' cellpadding='3'><tr>{head}</tr>{body}</table>"


def _short(v: Any) -> str:
    return f"{float(v):.5g}" if isinstance(v, (float, np.floating)) else str(v)
