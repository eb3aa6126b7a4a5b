"""Which of the paper's design conclusions the study runs reproduce, with the numbers (issue 8).

Reads the ``summary.csv`` of each study directory under one results root (the layout the default
commands produce: ``<root>/graded-designs``, ``graded-designs-10C``, ``rate-capability``,
``thickness``, ``calendering``, ``calendering-rate``) and checks each claim of Lu et al. 2020 against
them: a :class:`Verdict` per claim with the measured numbers, ``reproduced`` True/False, or None when
the runs it needs are missing. :func:`render` writes them as a Markdown block; :func:`update_document`
puts that block between the ``<!-- conclusions:begin -->`` / ``<!-- conclusions:end -->`` markers of a
document (``studies/CONCLUSIONS.md``) and keeps the hand-written discussion around it, so the numbers
in the document are always the CSVs' (``--check`` fails when they are not). Where the document has the
``<!-- twin:begin -->`` / ``<!-- twin:end -->`` markers, the rate study's ``twin.csv`` (resolved model
against its homogenised DFN twin, :mod:`tomocell.studies.rate_twin`) is rendered there (:func:`render_twin`)::

    python -m tomocell.studies.conclusions --results results/studies --doc studies/CONCLUSIONS.md [--check]

Thresholds are stated per claim: "beats" means strictly larger; "about equal" means within
``EQUAL_REL`` (2 %) relative.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tomocell.errors import InputError

#: relative difference below which two capacities count as "about equal" (paper Fig. 9l wording)
EQUAL_REL = 0.02
BEGIN, END = "<!-- conclusions:begin -->", "<!-- conclusions:end -->"
#: markers of the resolved-vs-twin block (the rate study's twin.csv); updated only where a document has them
TWIN_BEGIN, TWIN_END = "<!-- twin:begin -->", "<!-- twin:end -->"
#: what the twin test requires at C/10 (tests/test_twin_dfn.py): capacity within 2 %, voltage RMSE 15 mV
TWIN_AGREE_REL, TWIN_AGREE_MV = 0.02, 15.0


@dataclass(frozen=True)
class Verdict:
    claim: str
    paper: str
    measured: str
    reproduced: bool | None  # None: the runs it needs are missing

    @property
    def mark(self) -> str:
        return {True: "yes", False: "**no**", None: "not run"}[self.reproduced]


# ------------------------------------------------------------------ reading
def read_summary(study_dir: Path) -> list[dict[str, Any]]:
    """Finished runs (status ok/skipped) of a study's ``summary.csv``, numbers parsed; [] if absent."""
    path = Path(study_dir) / "summary.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("status") in ("ok", "skipped")]
    return [{k: _num(v) for k, v in r.items()} for r in rows]


def _num(v: str) -> Any:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return v
    return x


def _by(rows: Sequence[dict[str, Any]], key: str, **match: Any) -> dict[Any, dict[str, Any]]:
    out = {}
    for r in rows:
        if all(_same(r.get(k), v) for k, v in match.items()):
            out[r.get(key)] = r
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, float(b), rel_tol=1e-9)
    return a == b


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _rel(a: float, b: float) -> float:
    return (a - b) / b


# ------------------------------------------------------------------ claims
def graded_band_claims(rows: Sequence[dict[str, Any]], label: str) -> list[Verdict]:
    """R1 vs R2/R3, graded porosity vs as-prepared, own-band c_e gradient, high porosity, graded particle."""
    d = _by(rows, "design")
    out: list[Verdict] = []
    need = ("as-prepared", "R1", "R2", "R3")
    if not all(k in d for k in need):
        return [Verdict(f"R1 beats R2 and R3 ({label})", "Fig. 7d-f: accessible DoD 84 / 77 / 76 % at 3.75C",
                        "runs missing", None)]
    u = {k: d[k]["utilisation"] for k in d}
    dod = ", ".join(f"{k} {_pct(u[k])}" for k in d)
    out.append(Verdict(f"R1 beats R2 and R3 ({label})", "Fig. 7d-f: accessible DoD R1 84 %, R2 77 %, R3 76 % at 3.75C",
                       f"accessible DoD: {dod}", u["R1"] > u["R2"] and u["R1"] > u["R3"]))
    out.append(Verdict(f"every graded-porosity design beats as-prepared ({label})",
                       "Fig. 7l: R2 and R3 similar, still better than as-prepared",
                       f"DoD gain over as-prepared: " + ", ".join(f"{k} {100 * (u[k] - u['as-prepared']):+.2f} pts"
                                                                   for k in ("R1", "R2", "R3")),
                       min(u["R1"], u["R2"], u["R3"]) > u["as-prepared"]))
    grads = {k: {b: d[k].get(f"ce_bands.{b}.slope_per_um") for b in ("R1", "R2", "R3")} for k in need}
    if all(isinstance(v, (int, float)) for g in grads.values() for v in g.values()):
        own = [f"{b}: {grads[b][b]:.1f} (others {', '.join(f'{k} {grads[k][b]:.1f}' for k in need if k != b)})"
               for b in ("R1", "R2", "R3")]
        ok = all(abs(grads[b][b]) < min(abs(grads[k][b]) for k in need if k != b) for b in ("R1", "R2", "R3"))
        out.append(Verdict(f"each Rk has the smallest c_e gradient in its own band ({label})",
                           "Fig. 7g-i/k: locally suppressed gradient in each processed region",
                           "dc_e/d(depth) at 50 % DoD, mol m^-3 um^-1, " + "; ".join(own), ok))
    if "high-porosity" in d:
        gain = _rel(d["high-porosity"]["capacity_mAh_g"], d["R1"]["capacity_mAh_g"])
        out.append(Verdict(f"high porosity beats R1 ({label})", "Fig. 7l: 16 % more capacity than R1, similar voltage",
                           f"capacity {d['high-porosity']['capacity_mAh_g']:.1f} vs {d['R1']['capacity_mAh_g']:.1f} "
                           f"mAh/g ({100 * gain:+.1f} %), porosity {d['high-porosity']['structure.porosity']:.3f} "
                           f"vs {d['R1']['structure.porosity']:.3f}", gain > 0))
    if "graded-particle" in d:
        g, a = d["graded-particle"], d["as-prepared"]
        out.append(Verdict(f"graded particle beats as-prepared ({label})",
                           "Fig. 6i: higher discharge capacity and average voltage at 3.75C",
                           f"capacity {g['capacity_mAh_g']:.1f} vs {a['capacity_mAh_g']:.1f} mAh/g "
                           f"({100 * _rel(g['capacity_mAh_g'], a['capacity_mAh_g']):+.1f} %), mean voltage "
                           f"{g['mean_voltage_V']:.3f} vs {a['mean_voltage_V']:.3f} V",
                           g["capacity_mAh_g"] > a["capacity_mAh_g"] and g["mean_voltage_V"] > a["mean_voltage_V"]))
    return out


def rate_claims(rows: Sequence[dict[str, Any]]) -> list[Verdict]:
    """Graded structures improve on as-prepared, more at higher C-rates (Fig. 8b)."""
    out = []
    base = _by(rows, "c_rate", design="as-prepared")
    for design in ("graded-particle", "high-porosity"):
        cur = _by(rows, "c_rate", design=design)
        common = sorted(set(base) & set(cur))
        if len(common) < 2:
            out.append(Verdict(f"{design} beats as-prepared, more at high rate", "Fig. 8b", "runs missing", None))
            continue
        gains = [_rel(cur[c]["capacity_mAh_g"], base[c]["capacity_mAh_g"]) for c in common]
        out.append(Verdict(f"{design} beats as-prepared, more at high rate", "Fig. 8b: substantial improvement, "
                           "especially at higher C-rates; identical at 0.125C",
                           "capacity gain " + ", ".join(f"{c:g}C {100 * g:+.1f} %" for c, g in zip(common, gains)),
                           gains[-1] > 0 and gains[-1] > gains[0]))
    return out


def thickness_claims(rows: Sequence[dict[str, Any]]) -> list[Verdict]:
    """75 um loses specific energy at high power (and deteriorates faster with load) vs 50 um."""
    a, b = _by(rows, "c_rate", design="50um"), _by(rows, "c_rate", design="75um")
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return [Verdict("75 um loses specific energy at high power", "Fig. 8a (green vs grey)", "runs missing", None)]
    lo, hi = common[0], common[-1]
    e = {k: {c: r[c]["specific_energy_Wh_kg"] for c in common} for k, r in (("50", a), ("75", b))}
    p = {k: {c: r[c]["specific_power_W_kg"] for c in common} for k, r in (("50", a), ("75", b))}
    pts = "; ".join(f"{c:g}C: 50 um {e['50'][c]:.0f} Wh/kg at {p['50'][c]:.0f} W/kg, 75 um {e['75'][c]:.0f} Wh/kg at "
                    f"{p['75'][c]:.0f} W/kg" for c in common)
    drop50, drop75 = 1 - e["50"][hi] / e["50"][lo], 1 - e["75"][hi] / e["75"][lo]
    return [
        Verdict("75 um loses specific energy at high power", "Fig. 8a: the 75 um electrode has lower specific energy, "
                "deteriorating significantly with load, and loses power density", pts,
                e["75"][hi] < e["50"][hi] and p["75"][hi] < p["50"][hi]),
        Verdict("75 um energy falls faster with C-rate", "Fig. 8a/b",
                f"energy drop {lo:g}C -> {hi:g}C: 50 um {_pct(drop50)}, 75 um {_pct(drop75)}", drop75 > drop50),
    ]


def calendering_claims(rows: Sequence[dict[str, Any]]) -> list[Verdict]:
    """Porosity falls and tortuosity rises with calendering strain (Fig. 9k)."""
    rows = sorted(rows, key=lambda r: r["achieved_strain"])
    if len(rows) < 2:
        return [Verdict("calendering lowers porosity and raises tortuosity", "Fig. 9k", "runs missing", None)]
    s = [r["achieved_strain"] for r in rows]
    eps = [r["porosity"] for r in rows]
    tau = [r["tortuosity_factor"] for r in rows]
    mono = all(x > y for x, y in zip(eps, eps[1:])) and all(x < y for x, y in zip(tau, tau[1:]))
    txt = ", ".join(f"{100 * a:.1f} %: eps {b:.3f}, tau {c:.1f}" for a, b, c in zip(s, eps, tau))
    out = [Verdict("calendering lowers porosity and raises tortuosity (monotonic in strain)",
                   "Fig. 9k: porosity falls, tortuosity rises with each calendering step", txt, mono)]
    if all(isinstance(r.get("pore_size.d50_um"), (int, float)) for r in rows):
        d50 = [r["pore_size.d50_um"] for r in rows]
        out.append(Verdict("pores shrink with strain", "Fig. 9j: macro- and micro-pores decrease in size",
                           "pore D50 " + ", ".join(f"{x:.2f}" for x in d50) + " um",
                           d50[-1] < d50[0] and all(x >= y for x, y in zip(d50, d50[1:]))))
    return out


def calendering_rate_claims(rows: Sequence[dict[str, Any]]) -> list[Verdict]:
    """Fig. 9l: low loading uncalendered better at all rates; high loading calendered better at low rate,
    about equal at high rate; mid loading equal at low rate, calendered worse at high rate."""
    out = []
    for loading, claim, paper in (
            ("low", "low loading: uncalendered beats calendered at every rate", "Fig. 9l, 30 um / 1 mAh cm-2"),
            ("mid", "mid loading: equal at low rate, calendered loses at high rate", "Fig. 9l, 50 um, loss above 2C"),
            ("high", "high loading: calendered beats uncalendered at low rate, about equal at high rate",
             "Fig. 9l, 85 um / 3 mAh cm-2")):
        u = _by(rows, "c_rate", loading=loading, state="uncalendered")
        c = _by(rows, "c_rate", loading=loading, state="calendered")
        common = sorted(set(u) & set(c))
        if len(common) < 2:
            out.append(Verdict(claim, paper, "runs missing", None))
            continue
        rel = {r: _rel(c[r]["capacity_mAh_g"], u[r]["capacity_mAh_g"]) for r in common}
        lo, hi = common[0], common[-1]
        txt = "calendered vs uncalendered capacity: " + ", ".join(
            f"{r:g}C {c[r]['capacity_mAh_g']:.1f} vs {u[r]['capacity_mAh_g']:.1f} mAh/g ({100 * rel[r]:+.1f} %)"
            for r in common)
        if loading == "low":
            ok = all(v < 0 for v in rel.values())
        elif loading == "mid":
            ok = abs(rel[lo]) <= EQUAL_REL and rel[hi] < -EQUAL_REL
        else:
            ok = rel[lo] > 0 and abs(rel[hi]) <= EQUAL_REL
        out.append(Verdict(claim, paper, txt, ok))
    return out


def twin_claims(rows: Sequence[dict[str, Any]]) -> list[Verdict]:
    """Resolved model against its DFN twin over C-rate, per design (rows of the rate study's twin.csv)."""
    paper = "not in the paper (issue 21: where the homogenised DFN stops being right)"
    out: list[Verdict] = []
    for design in dict.fromkeys(r["design"] for r in rows):
        rs = sorted((r for r in rows if r["design"] == design), key=lambda r: r["c_rate"])
        if len(rs) < 2:
            out.append(Verdict(f"twin diverges with C-rate ({design})", paper, "runs missing", None))
            continue
        lo = rs[0]
        rmse = [r["voltage_rmse_mV"] for r in rs]
        dcap = [abs(r["capacity_diff_pct"]) for r in rs]
        out.append(Verdict(f"twin agrees at the lowest rate, {lo['c_rate']:g}C ({design})",
                           f"{paper}; the C/10 test's bounds: {100 * TWIN_AGREE_REL:g} % capacity, {TWIN_AGREE_MV:g} mV",
                           f"{lo['capacity_diff_pct']:+.2f} % capacity, {lo['voltage_rmse_mV']:.1f} mV RMSE",
                           abs(lo["capacity_diff_pct"]) <= 100 * TWIN_AGREE_REL and lo["voltage_rmse_mV"] <= TWIN_AGREE_MV))
        out.append(Verdict(f"twin's voltage RMSE grows with C-rate ({design})", paper,
                           ", ".join(f"{r['c_rate']:g}C {r['voltage_rmse_mV']:.1f} mV" for r in rs),
                           all(a < b for a, b in zip(rmse, rmse[1:]))))
        out.append(Verdict(f"twin's capacity difference grows with C-rate ({design})", paper,
                           ", ".join(f"{r['c_rate']:g}C {r['capacity_diff_pct']:+.2f} %" for r in rs),
                           all(a < b for a, b in zip(dcap, dcap[1:]))))
    return out


def render_twin(rows: Sequence[dict[str, Any]], source: str) -> str:
    """The Markdown block of the rate study's twin.csv: verdicts and one row per design and C-rate."""
    lines = [TWIN_BEGIN, "", f"_Generated from `{source}` by `python -m tomocell.studies.conclusions`; "
             "do not edit between the markers._", ""]
    if not rows:
        lines += ["No twin.csv (run the rate-capability study, or its `--report-only`, with `tomocell[dfn]`).", "",
                  TWIN_END]
        return "\n".join(lines)
    lines += ["| design | C-rate | resolved mAh/g | twin mAh/g | difference | voltage RMSE (first 90 %) "
              "| mean V resolved / twin | tau image / mesh | Bruggeman b | area factor |",
              "|---|---|---|---|---|---|---|---|---|---|"]

    def num(v: Any, f: str) -> str:
        return "-" if v is None else format(v, f)

    for r in rows:
        lines.append(f"| {r['design']} | {r['c_rate']:g} | {r['capacity_resolved_mAh_g']:.2f} | "
                     f"{r['capacity_twin_mAh_g']:.2f} | {r['capacity_diff_pct']:+.2f} % | {r['voltage_rmse_mV']:.1f} mV "
                     f"({num(r.get('voltage_rmse_90pct_mV'), '.1f')} mV) | "
                     f"{r['mean_voltage_resolved_V']:.4f} / {r['mean_voltage_twin_V']:.4f} V | "
                     f"{num(r.get('tau'), '.2f')} / {num(r.get('tau_mesh'), '.2f')} | "
                     f"{num(r.get('bruggeman_electrode'), '.2f')} | {num(r.get('area_factor'), '.3f')} |")
    lines += ["", "| claim | reproduced | measured | source |", "|---|---|---|---|"]
    lines += [f"| {v.claim} | {v.mark} | {v.measured} | {v.paper} |" for v in twin_claims(rows)]
    lines += ["", TWIN_END]
    return "\n".join(lines)


def verdicts(results_root: str | Path) -> list[tuple[str, list[Verdict]]]:
    """All claims, grouped by study, from the study directories under ``results_root``."""
    root = Path(results_root)
    if not root.is_dir():
        raise InputError(f"results directory {root} does not exist")
    groups = [
        ("graded designs, 3.75C (Fig. 6-7)", graded_band_claims(read_summary(root / "graded-designs"), "3.75C")),
        ("graded designs, 10C", graded_band_claims(read_summary(root / "graded-designs-10C"), "10C")),
        ("rate capability (Fig. 8b)", rate_claims(read_summary(root / "rate-capability"))),
        ("thickness (Fig. 8a)", thickness_claims(read_summary(root / "thickness"))),
        ("calendering structure (Fig. 9j-k)", calendering_claims(read_summary(root / "calendering"))),
        ("calendered vs uncalendered (Fig. 9l)", calendering_rate_claims(read_summary(root / "calendering-rate"))),
    ]
    return groups


STUDIES = ("calendering", "thickness", "rate-capability", "graded-designs", "graded-designs-10C", "calendering-rate")


def cost_rows(results_root: str | Path) -> list[dict[str, Any]]:
    """Per study: finished runs, how many recorded their CPU time, the recorded CPU minutes, the slowest run.

    Runs copied from another study (``reuse_from``) record almost no CPU: the sum is the cost of the
    study as run, not of each discharge on its own.
    """
    import json

    out = []
    for name in STUDIES:
        runs = sorted((Path(results_root) / name / "runs").glob("*/run.json"))
        n = rec = 0
        cpu = 0.0
        slowest = (0.0, "")
        for rj in runs:
            try:
                data = json.loads(rj.read_text())
            except (OSError, ValueError):
                continue
            if data.get("status") != "ok":
                continue
            n += 1
            c = (data.get("timings_s") or {}).get("cpu")
            if c is not None:
                rec += 1
                cpu += float(c)
                slowest = max(slowest, (float(c), rj.parent.name))
        if n:
            out.append({"study": name, "runs": n, "recorded": rec, "cpu_min": cpu / 60.0,
                        "slowest": f"{slowest[1]} ({slowest[0] / 60:.1f} min)" if slowest[1] else ""})
    return out


def render(groups: Sequence[tuple[str, Sequence[Verdict]]], costs: Sequence[dict[str, Any]] = ()) -> str:
    """The Markdown block: one table per study, claim / reproduced / measured / paper; the CPU cost table."""
    lines = [BEGIN, "", "_Generated from the studies' summary.csv by `python -m tomocell.studies.conclusions`; "
             "do not edit between the markers._", ""]
    if costs:
        lines += ["### CPU time of the runs (run.json `timings_s.cpu`, one process each)", "",
                  "| study | finished runs | runs with a CPU record | CPU (min) of those | slowest run |",
                  "|---|---|---|---|---|"]
        lines += [f"| {c['study']} | {c['runs']} | {c['recorded']} | {c['cpu_min']:.1f} | {c['slowest']} |" for c in costs]
        lines.append("")
    for title, vs in groups:
        lines += [f"### {title}", "", "| claim | reproduced | measured (coarse default runs) | paper |",
                  "|---|---|---|---|"]
        lines += [f"| {v.claim} | {v.mark} | {v.measured} | {v.paper} |" for v in vs]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def update_document(text: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with the part between the markers (inclusive) replaced by ``block``; appended if absent."""
    if begin in text and end in text:
        a, b = text.index(begin), text.index(end) + len(end)
        if b < a:
            raise InputError(f"{end} comes before {begin}")
        return text[:a] + block + text[b:]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def twin_block(results_root: str | Path) -> str:
    """:func:`render_twin` of ``<results_root>/rate-capability/twin.csv``."""
    from tomocell.studies.rate_twin import TWIN_CSV, read_twin_csv

    path = Path(results_root) / "rate-capability" / TWIN_CSV
    return render_twin(read_twin_csv(path), str(path))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from tomocell.atomic import atomic_path

    ap = argparse.ArgumentParser(prog="python -m tomocell.studies.conclusions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results/studies", help="directory holding the study directories")
    ap.add_argument("--doc", default=None, help="Markdown document to update between the markers (else print)")
    ap.add_argument("--check", action="store_true", help="exit 1 if --doc does not hold the current numbers")
    args = ap.parse_args(argv)
    try:
        block = render(verdicts(args.results), cost_rows(args.results))
    except InputError as exc:
        print(f"error: {exc}")
        return 2
    if not args.doc:
        print(block)
        return 0
    doc = Path(args.doc)
    old = doc.read_text() if doc.is_file() else ""
    new = update_document(old, block)
    if TWIN_BEGIN in new:  # the twin block only where the document has its markers
        new = update_document(new, twin_block(args.results), TWIN_BEGIN, TWIN_END)
    if args.check:
        same = old == new
        print(f"{doc}: {'up to date' if same else 'OUT OF DATE with ' + args.results}")
        return 0 if same else 1
    with atomic_path(doc) as tmp:
        tmp.write_text(new)
    print(f"{doc}: updated from {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
