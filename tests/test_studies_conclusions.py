"""The paper-conclusion checks read the studies' summary tables and decide each claim from the numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tomocell.studies import conclusions as cc


def write_summary(study_dir: Path, rows: list[dict]) -> None:
    study_dir.mkdir(parents=True, exist_ok=True)
    cols = sorted({k for r in rows for k in r} | {"run", "status"})
    with open(study_dir / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({"run": f"r{i}", "status": "ok", **r})


def graded_rows(util: dict[str, float], grads: dict[str, dict[str, float]] | None = None) -> list[dict]:
    rows = []
    for d, u in util.items():
        r = {"design": d, "utilisation": u, "capacity_mAh_g": 160 * u, "mean_voltage_V": 3.7 + 0.1 * u,
             "structure.porosity": 0.3}
        for band, slope in (grads or {}).get(d, {}).items():
            r[f"ce_bands.{band}.slope_per_um"] = slope
        rows.append(r)
    return rows


def by_claim(verdicts, start):
    return [v for v in verdicts if v.claim.startswith(start)][0]


def test_graded_claims_follow_the_numbers():
    paper_like = graded_rows({"as-prepared": 0.70, "R1": 0.84, "R2": 0.77, "R3": 0.76, "graded-particle": 0.75},
                             {"as-prepared": {"R1": -12, "R2": -20, "R3": -6}, "R1": {"R1": -8, "R2": -20, "R3": -6},
                              "R2": {"R1": -12, "R2": -9, "R3": -6}, "R3": {"R1": -12, "R2": -20, "R3": -3}})
    vs = cc.graded_band_claims([{k: cc._num(str(v)) for k, v in r.items()} for r in paper_like], "3.75C")
    assert by_claim(vs, "R1 beats").reproduced is True
    assert by_claim(vs, "every graded").reproduced is True
    assert by_claim(vs, "each Rk").reproduced is True
    assert by_claim(vs, "graded particle").reproduced is True
    assert "R1 84.0 %" in by_claim(vs, "R1 beats").measured
    # R2 ahead of R1, R3 below as-prepared, R3 not the flattest in its band: each claim flips
    other = graded_rows({"as-prepared": 0.70, "R1": 0.80, "R2": 0.81, "R3": 0.69, "graded-particle": 0.69},
                        {"as-prepared": {"R1": -12, "R2": -20, "R3": -6}, "R1": {"R1": -8, "R2": -20, "R3": -6},
                         "R2": {"R1": -12, "R2": -9, "R3": -6}, "R3": {"R1": -12, "R2": -20, "R3": -7}})
    vs = cc.graded_band_claims(other, "3.75C")
    assert [by_claim(vs, s).reproduced for s in ("R1 beats", "every graded", "each Rk", "graded particle")] == [False] * 4
    assert cc.graded_band_claims(graded_rows({"as-prepared": 0.7}), "x")[0].reproduced is None


def test_thickness_rate_and_calendering_claims():
    th = [{"design": d, "c_rate": c, "specific_energy_Wh_kg": e, "specific_power_W_kg": p}
          for d, c, e, p in (("50um", 0.5, 620, 316), ("50um", 10, 420, 5600), ("75um", 0.5, 610, 310), ("75um", 10, 150, 4000))]
    v = cc.thickness_claims(th)
    assert [x.reproduced for x in v] == [True, True]
    th[-1]["specific_energy_Wh_kg"] = 500
    th[-1]["specific_power_W_kg"] = 6000
    assert [x.reproduced for x in cc.thickness_claims(th)] == [False, False]

    rc = [{"design": d, "c_rate": c, "capacity_mAh_g": q} for d, c, q in
          (("as-prepared", 0.5, 158), ("as-prepared", 10, 120), ("graded-particle", 0.5, 159), ("graded-particle", 10, 130))]
    v = cc.rate_claims(rc)
    assert v[0].reproduced is True and v[1].reproduced is None  # high porosity not run

    cal = [{"achieved_strain": s, "porosity": e, "tortuosity_factor": t, "pore_size.d50_um": d}
           for s, e, t, d in ((0.0, 0.30, 5.0, 2.0), (0.07, 0.27, 6.0, 2.0), (0.15, 0.23, 15.0, 1.5))]
    assert [x.reproduced for x in cc.calendering_claims(cal)] == [True, True]
    cal[1]["tortuosity_factor"] = 4.0
    assert cc.calendering_claims(cal)[0].reproduced is False


@pytest.mark.parametrize("caps, expected", [
    # (low unc, low cal), (mid unc, mid cal), (high unc, high cal) at 0.5C and 5C
    ({("low", 0.5): (150, 140), ("low", 5): (120, 110), ("mid", 0.5): (150, 149), ("mid", 5): (120, 100),
      ("high", 0.5): (140, 150), ("high", 5): (60, 60.5)}, [True, True, True]),
    ({("low", 0.5): (150, 155), ("low", 5): (120, 110), ("mid", 0.5): (150, 140), ("mid", 5): (120, 100),
      ("high", 0.5): (150, 140), ("high", 5): (60, 80)}, [False, False, False]),
])
def test_calendering_rate_claims(caps, expected):
    rows = [{"loading": ld, "state": st, "c_rate": c, "capacity_mAh_g": q[i]}
            for (ld, c), q in caps.items() for i, st in enumerate(("uncalendered", "calendered"))]
    assert [v.reproduced for v in cc.calendering_rate_claims(rows)] == expected


def test_document_update_keeps_the_discussion_and_check_mode(tmp_path, capsys):
    root = tmp_path / "results"
    write_summary(root / "graded-designs", graded_rows({"as-prepared": 0.70, "R1": 0.84, "R2": 0.77, "R3": 0.76}))
    doc = tmp_path / "CONCLUSIONS.md"
    doc.write_text(f"# Head\n\nhand-written intro\n\n{cc.BEGIN}\nstale\n{cc.END}\n\n## Why\n\nhand-written discussion\n")
    assert cc.main(["--results", str(root), "--doc", str(doc), "--check"]) == 1
    assert cc.main(["--results", str(root), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Head\n\nhand-written intro") and text.endswith("## Why\n\nhand-written discussion\n")
    assert "stale" not in text and "| R1 beats R2 and R3 (3.75C) | yes |" in text
    assert "| 75 um loses specific energy at high power | not run |" in text
    assert cc.main(["--results", str(root), "--doc", str(doc), "--check"]) == 0
    # numbers changed under the document: check fails again
    write_summary(root / "graded-designs", graded_rows({"as-prepared": 0.70, "R1": 0.74, "R2": 0.77, "R3": 0.76}))
    assert cc.main(["--results", str(root), "--doc", str(doc), "--check"]) == 1
    assert cc.main(["--results", str(tmp_path / "nope")]) == 2


def test_cost_table_sums_recorded_cpu(tmp_path):
    import json

    for name, status, timings in (("a", "ok", {"total": 300.0, "cpu": 120.0}), ("b", "ok", {"total": 10.0, "cpu": 60.0}),
                                  ("c", "ok", {"total": 50.0}), ("d", "failed", {"cpu": 999.0})):
        d = tmp_path / "thickness" / "runs" / name
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"status": status, "timings_s": timings}))
    rows = cc.cost_rows(tmp_path)
    assert rows == [{"study": "thickness", "runs": 3, "recorded": 2, "cpu_min": 3.0, "slowest": "a (2.0 min)"}]
    assert "| thickness | 3 | 2 | 3.0 | a (2.0 min) |" in cc.render([], rows)


def _twin_row(c, dcap, rmse, note=""):
    from tomocell.studies.rate_twin import COLUMNS

    r = {k: None for k in COLUMNS}
    if not note:
        r.update(capacity_resolved_mAh_g=150.0, capacity_twin_mAh_g=150.0 * (1 + dcap / 100), capacity_diff_pct=dcap,
                 voltage_rmse_mV=rmse, voltage_rmse_90pct_mV=rmse / 5, mean_voltage_resolved_V=3.9, mean_voltage_twin_V=3.91, tau=4.97, tau_mesh=3.2,
                 bruggeman_electrode=2.4, area_factor=0.62)
    r.update(design="as-prepared", c_rate=c, note=note)
    return r


def test_twin_block_from_twin_csv(tmp_path):
    from tomocell.studies.rate_twin import read_twin_csv, write_twin_csv

    root = tmp_path / "results"
    (root / "rate-capability").mkdir(parents=True)
    rows = [_twin_row(0.1, 0.5, 4.0), _twin_row(1.0, 1.5, 30.0), _twin_row(5.0, 6.0, 90.0),
            _twin_row(8.0, 0, 0, note="skipped: not a `tomocell simulate` run")]
    write_twin_csv(rows, root / "rate-capability" / "twin.csv")
    got = read_twin_csv(root / "rate-capability" / "twin.csv")
    assert [r["c_rate"] for r in got] == [0.1, 1.0, 5.0]  # the skipped run is left out
    vs = cc.twin_claims(got)
    assert [v.reproduced for v in vs] == [True, True, True]
    assert "0.1C +0.50 %, 1C +1.50 %, 5C +6.00 %" in vs[2].measured
    worse = [dict(r) for r in got]
    worse[0]["voltage_rmse_mV"] = 40.0  # disagrees at the lowest rate, and the RMSE no longer grows
    worse[1]["voltage_rmse_mV"] = 20.0
    assert [v.reproduced for v in cc.twin_claims(worse)] == [False, False, True]
    # the block goes only where the document has the twin markers, the rest of the document is kept
    doc = tmp_path / "CONCLUSIONS.md"
    doc.write_text(f"# Head\n\n{cc.BEGIN}\n{cc.END}\n\n## Twin\n\n{cc.TWIN_BEGIN}\nstale\n{cc.TWIN_END}\n\nwhy\n")
    assert cc.main(["--results", str(root), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "stale" not in text and text.endswith("\n\nwhy\n")
    assert "| as-prepared | 5 | 150.00 | 159.00 | +6.00 % | 90.0 mV (18.0 mV) | 3.9000 / 3.9100 V | 4.97 / 3.20 | 2.40 | 0.620 |" in text
    assert cc.main(["--results", str(root), "--doc", str(doc), "--check"]) == 0
    (root / "rate-capability" / "twin.csv").unlink()
    assert cc.main(["--results", str(root), "--doc", str(doc), "--check"]) == 1
    assert "No twin.csv" in cc.twin_block(root)
