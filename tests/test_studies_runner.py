"""Study bookkeeping: resume, failure handling, tidy/wide tables, report, manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tomocell.errors import InputError
from tomocell.studies.runner import Figure, RunSpec, read_table, run_study, save_figure


class Recorder:
    """A run function that records its calls and fails for runs named in ``fail``."""

    def __init__(self, fail=()):
        self.calls: list[str] = []
        self.fail = set(fail)

    def __call__(self, params, run_dir: Path):
        name = run_dir.name
        self.calls.append(name)
        (run_dir / "artefact.txt").write_text(str(params["x"]))
        if name in self.fail:
            raise RuntimeError(f"boom in {name}")
        x = params["x"]
        return {"square": x * x, "series": [x, x + 1, x + 2], "nested": {"half": x / 2}, "label": f"x{x}"}


def figures(outcomes, fig_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ok = [o for o in outcomes if o.succeeded]
    ax.plot([o.params["x"] for o in ok], [o.results["square"] for o in ok], "o")
    return [save_figure(fig, fig_dir / "square.png", "Square of x for every finished run.", fig_dir.parent)]


RUNS = [RunSpec("a", {"x": 1, "opts": {"mode": "fast"}}), RunSpec("b", {"x": 2, "opts": {"mode": "fast"}}),
        RunSpec("c", {"x": 3, "opts": {"mode": "slow"}})]


def test_resume_skips_finished_and_reruns_failed(tmp_path):
    rec = Recorder(fail={"b"})
    res = run_study("demo", RUNS, rec, tmp_path, figures_fn=figures)
    assert rec.calls == ["a", "b", "c"]
    assert [o.status for o in res.outcomes] == ["ok", "failed", "ok"]
    assert json.loads((tmp_path / "runs/b/run.json").read_text())["status"] == "failed"
    assert "boom in b" in json.loads((tmp_path / "runs/b/run.json").read_text())["error"]
    ok_json = json.loads((tmp_path / "runs/a/run.json").read_text())
    assert ok_json["status"] == "ok" and ok_json["results"]["square"] == 1
    assert ok_json["parameters"] == {"x": 1, "opts": {"mode": "fast"}}

    # second pass: only the failed run runs again (and now succeeds)
    rec2 = Recorder()
    res2 = run_study("demo", RUNS, rec2, tmp_path, figures_fn=figures)
    assert rec2.calls == ["b"]
    assert [o.status for o in res2.outcomes] == ["skipped", "ok", "skipped"]
    assert res2.outcomes[0].results["square"] == 1  # results of skipped runs come from run.json

    # third pass: nothing to do; a changed parameter reruns just that run; force reruns all
    rec3 = Recorder()
    run_study("demo", RUNS, rec3, tmp_path)
    assert rec3.calls == []
    changed = [RUNS[0], RunSpec("b", {"x": 5, "opts": {"mode": "fast"}}), RUNS[2]]
    rec4 = Recorder()
    run_study("demo", changed, rec4, tmp_path)
    assert rec4.calls == ["b"]
    rec5 = Recorder()
    run_study("demo", changed, rec5, tmp_path, force=True)
    assert rec5.calls == ["a", "b", "c"]


def test_interrupted_run_is_redone(tmp_path):
    run_study("demo", RUNS[:1], Recorder(), tmp_path)
    rj = tmp_path / "runs/a/run.json"
    data = json.loads(rj.read_text())
    data["status"] = "running"  # as if killed mid-run
    rj.write_text(json.dumps(data))
    rec = Recorder()
    run_study("demo", RUNS[:1], rec, tmp_path)
    assert rec.calls == ["a"]
    (tmp_path / "runs/a/run.json").write_text("{not json")
    rec = Recorder()
    run_study("demo", RUNS[:1], rec, tmp_path)
    assert rec.calls == ["a"]


def test_tidy_and_summary_tables(tmp_path):
    res = run_study("demo", RUNS, Recorder(fail={"c"}), tmp_path, figures_fn=figures)
    rows = read_table(res.table)
    assert list(rows[0]) == ["run", "status", "x", "opts.mode", "metric", "index", "value"]
    a = [r for r in rows if r["run"] == "a"]
    by = {(r["metric"], r["index"]): r["value"] for r in a}
    assert by[("square", "")] == "1"
    assert [by[("series", str(i))] for i in range(3)] == ["1", "2", "3"]
    assert by[("nested.half", "")] == "0.5"
    assert by[("label", "")] == "x1"
    assert all(r["x"] == "1" and r["opts.mode"] == "fast" and r["status"] == "ok" for r in a)
    assert len(a) == 6  # square, 3 series items, nested.half, label
    c = [r for r in rows if r["run"] == "c"]
    assert len(c) == 1 and c[0]["status"] == "failed" and c[0]["metric"] == "error" and "boom in c" in c[0]["value"]
    wide = read_table(res.summary)
    assert [w["run"] for w in wide] == ["a", "b", "c"]
    assert wide[1]["square"] == "4" and wide[1]["nested.half"] == "1.0" and wide[2]["square"] == ""
    assert "series" not in wide[0]
    # report: runs, the failure, the figure with its caption, and the file exists
    rep = res.report.read_text()
    assert "| c | failed |" in rep and "boom in c" in rep
    # shared parameters once, the differing ones per run
    assert "Parameters of every run: " not in rep or "x=" not in rep.split("Parameters of every run: ")[1]
    assert "| a | ok |" in rep and "x=1, opts.mode=fast |" in rep
    res2 = run_study("demo", RUNS[:2], Recorder(), tmp_path / "two")
    rep2 = res2.report.read_text()
    assert "Parameters of every run: opts.mode=fast." in rep2 and "| x=1 |" in rep2 and "| x=2 |" in rep2
    assert "![Figure 1](figures/square.png)" in rep and "Square of x for every finished run." in rep
    assert (tmp_path / "figures/square.png").stat().st_size > 0
    study = json.loads((tmp_path / "run.json").read_text())
    assert study["results"]["runs"] == {"a": "ok", "b": "ok", "c": "failed"}
    assert not list(tmp_path.rglob("*.partial*"))


def test_broken_figures_keep_tables(tmp_path):
    def bad(outcomes, fig_dir):
        raise ValueError("no plot")

    res = run_study("demo", RUNS[:2], Recorder(), tmp_path, figures_fn=bad)
    assert res.figures == [] and res.table.is_file() and "(none)" in res.report.read_text()
    assert "no plot" in json.loads((tmp_path / "run.json").read_text())["results"]["figures_error"]


def test_bad_names_and_stop_on_failure(tmp_path):
    with pytest.raises(InputError, match="twice"):
        run_study("demo", [RUNS[0], RUNS[0]], Recorder(), tmp_path)
    with pytest.raises(InputError, match="must be letters"):
        run_study("demo", [RunSpec("../x", {"x": 1})], Recorder(), tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        run_study("demo", RUNS, Recorder(fail={"a"}), tmp_path, keep_going=False)
    assert json.loads((tmp_path / "runs/a/run.json").read_text())["status"] == "failed"
    assert isinstance(Figure("f.png", "c"), Figure)


@pytest.mark.mpi
def test_runner_under_mpi(tmp_path):
    """Every rank runs each run (collectives inside work), rank 0 alone decides skips and writes."""
    from tomocell import mpi

    comm = mpi.world()
    out = Path(comm.bcast(str(tmp_path), root=0))

    def collective(params, run_dir):
        total = comm.allreduce(params["x"])  # would hang if a rank skipped the run
        return {"sum_over_ranks": total}

    res = run_study("mpi", RUNS[:2], collective, out)
    assert [o.results["sum_over_ranks"] for o in res.outcomes] == [comm.size * 1, comm.size * 2]
    res2 = run_study("mpi", RUNS[:2], collective, out)
    assert [o.status for o in res2.outcomes] == ["skipped", "skipped"]
    comm.Barrier()
    if mpi.is_root():
        assert read_table(out / "summary.csv")[1]["sum_over_ranks"] == str(comm.size * 2)


def test_cpu_time_recorded_and_reported_for_skipped_runs(tmp_path):
    """Each run records its process CPU seconds beside the wall time; a resumed study reports both
    from run.json (the cost of a study is read off its report even when every run was skipped)."""

    def busy(params, run_dir):
        t = __import__("time")
        c0 = t.process_time()
        while t.process_time() - c0 < 0.05:  # burn >= 50 ms of CPU
            pass
        return {"x": params["x"]}

    run_study("demo", RUNS[:1], busy, tmp_path)
    timings = json.loads((tmp_path / "runs/a/run.json").read_text())["timings_s"]
    assert timings["cpu"] >= 0.05 and timings["total"] >= timings["cpu"] * 0.5
    res = run_study("demo", RUNS[:1], busy, tmp_path)
    assert res.outcomes[0].status == "skipped"
    assert res.outcomes[0].cpu_seconds == pytest.approx(timings["cpu"])
    assert res.outcomes[0].seconds == pytest.approx(timings["total"])
    row = [ln for ln in res.report.read_text().splitlines() if ln.startswith("| a |")][0]
    assert f"| {timings['cpu']:.1f} |" in row


def test_report_only_runs_nothing_and_lists_pending_runs(tmp_path):
    run_study("demo", RUNS[:1], Recorder(), tmp_path, figures_fn=figures)
    rec = Recorder()
    res = run_study("demo", RUNS, rec, tmp_path, figures_fn=figures, report_only=True)
    assert rec.calls == []
    assert [o.status for o in res.outcomes] == ["skipped", "pending", "pending"]
    assert not (tmp_path / "runs/b").exists()
    assert [r["run"] for r in read_table(res.summary) if r["status"] == "skipped"] == ["a"]
    rep = res.report.read_text()
    assert "| b | pending |" in rep and "(figures/square.png)" in rep
    # and the CLI flag of python -m
    from tomocell.studies import calendering
    from tomocell.studies.runner import study_main

    assert study_main(calendering, ["--out", str(tmp_path / "cal"), "--report-only", "-q"]) == 0
    assert not (tmp_path / "cal/runs").exists() and "pending" in (tmp_path / "cal/report.md").read_text()
