"""PyBaMM-style experiment strings: parsing, expansion of repeated blocks, drive-cycle files, refusals.

Where pybamm is installed the parse is compared with pybamm.Experiment's own (step class, value in SI with PyBaMM's
sign, duration, terminations)."""

from __future__ import annotations

import pytest

from tomocell.errors import InputError
from tomocell.physics.protocols.experiment import parse_experiment, parse_step, read_experiment_file

CASES = [
    # text, kind, value (SI, + discharge), duration_s, terminations
    ("Discharge at 1C until 3.0 V", "c_rate", 1.0, None, [("voltage", 3.0)]),
    ("Rest for 10 minutes", "rest", 0.0, 600.0, []),
    ("Charge at C/2 until 4.2 V", "c_rate", -0.5, None, [("voltage", 4.2)]),
    ("Hold at 4.2 V until C/50", "voltage", 4.2, None, [("c_rate", 0.02)]),
    ("Discharge at 2 mA for 30 seconds", "current", 2e-3, 30.0, []),
    ("Discharge at 1 W for 1 hour or until 3.3 V", "power", 1.0, 3600.0, [("voltage", 3.3)]),
    ("Charge at 0.5 A until 4.1 V", "current", -0.5, None, [("voltage", 4.1)]),
    ("Hold at 4.1 V until 50 mA", "voltage", 4.1, None, [("current", 0.05)]),
    ("Discharge at 0.1C for 2 hours", "c_rate", 0.1, 7200.0, []),
    ("Charge at 2.5 W for 5 minutes", "power", -2.5, 300.0, []),
    ("Rest for 1 hour", "rest", 0.0, 3600.0, []),
    ("Charge at 200mW for 45 minutes", "power", -0.2, 2700.0, []),
    ("Discharge at C/3 for 2 hours or until 2.5 V", "c_rate", 1 / 3, 7200.0, [("voltage", 2.5)]),
    ("Hold at 3V until C/50", "voltage", 3.0, None, [("c_rate", 0.02)]),
    ("Charge at 1 C until 4.1V", "c_rate", -1.0, None, [("voltage", 4.1)]),
    ("Rest for 2 min", "rest", 0.0, 120.0, []),
    ("Discharge at 10 Ohm for 1 hour", "resistance", 10.0, 3600.0, []),
    ("Discharge at 1C until < 3.5 V", "c_rate", 1.0, None, [("voltage", 3.5)]),
    ("Charge at 1C until > 4.1 V", "c_rate", -1.0, None, [("voltage", 4.1)]),
]


@pytest.mark.parametrize("text,kind,value,duration,until", CASES)
def test_parse_step(text, kind, value, duration, until):
    s = parse_step(text)
    assert (s.kind, s.duration_s) == (kind, duration)
    assert s.value == pytest.approx(value, rel=1e-12)
    assert [(u.kind, pytest.approx(u.value)) for u in s.until] == until


@pytest.mark.parametrize("text,kind,value,duration,until", CASES)
def test_same_as_pybamm(text, kind, value, duration, until):
    pybamm = pytest.importorskip("pybamm")
    ours = parse_step(text)
    theirs = pybamm.Experiment([text]).steps[0]
    classes = {"rest": "Rest", "c_rate": "CRate", "current": "Current", "voltage": "Voltage", "power": "Power",
               "resistance": "Resistance"}
    assert type(theirs).__name__ == classes[ours.kind]
    assert float(theirs.value) == pytest.approx(ours.value, abs=1e-15)
    if duration is not None:  # (without one PyBaMM sets a default duration)
        assert float(theirs.duration) == pytest.approx(duration)
    terms = {"voltage": "VoltageTermination", "current": "CurrentTermination", "c_rate": "CRateTermination"}
    assert [(type(t).__name__, pytest.approx(float(t.value)), t.operator) for t in theirs.termination] == [
        (terms[u.kind], u.value, u.operator) for u in ours.until]


def test_area_units_and_prefixes():
    assert parse_step("Charge at 0.5 mA/cm2 until 4.2 V").value == pytest.approx(-5.0)  # A/m2
    assert parse_step("Discharge at 3 A/m2 for 1 s").kind == "current_density"
    assert parse_step("Discharge at 20 uA until 3 V").value == pytest.approx(2e-5)
    assert parse_step("Discharge at 1C until 3 V or until 2 mA").until[1].value == pytest.approx(2e-3)


def test_repeated_blocks_expand_in_order():
    steps = parse_experiment("(Discharge at C/5 for 10 minutes, Rest for 20 minutes) x 10")
    assert len(steps) == 20
    assert [s.kind for s in steps[:4]] == ["c_rate", "rest", "c_rate", "rest"]
    nested = parse_experiment(["((Discharge at 1C for 1 s, Rest for 2 s) x 2, Charge at 1C until 4.2 V) x 3",
                               "Rest for 1 minute"])
    assert len(nested) == 3 * 5 + 1
    assert [s.duration_s for s in nested[:5]] == [1.0, 2.0, 1.0, 2.0, None]
    assert nested[-1].duration_s == 60.0


def test_experiment_file_and_drive_cycle(tmp_path):
    (tmp_path / "cycle.csv").write_text("time_s,current_A\n0,1e-3\n10,-2e-3\n25,0\n")
    f = tmp_path / "exp.txt"
    f.write_text("# a rate test\nDischarge at 1C until 3.5 V\n\nRest for 5 minutes  # relax\nRun cycle.csv (A)\n")
    steps = read_experiment_file(f)
    assert [s.kind for s in steps] == ["c_rate", "rest", "profile"]
    cyc = steps[2]
    assert cyc.duration_s == 25.0 and cyc.profile_unit == "current"
    assert cyc.profile == ((0.0, 10.0, 25.0), (1e-3, -2e-3, 0.0))


@pytest.mark.parametrize("bad,why", [
    ("Dance at 1C until 3 V", "starts with"),
    ("Discharge at 1C", "never ends"),
    ("Discharge at 1 Q until 3 V", "is not a C-rate"),
    ("Rest for ten minutes", "duration"),
    ("Rest for 0 minutes", "> 0"),
    ("Hold at 1C until 3 V", "takes a voltage"),
    ("Discharge at 4 V until 3 V", "Hold at"),
    ("Discharge at -1C until 3 V", "> 0"),
    ("Discharge at 1C until 2 W", "not a power"),
    ("Hold at 4.2 V until 4.1 V", "current or after a time"),
    ("Discharge at 1C for 1 hour (1 minute period)", "not supported"),
    ("Rest at 1C for 1 s", "no value"),
    ("(Rest for 1 s", "unbalanced"),
    ("(Rest for 1 s) x 0", "repeat count"),
    ("(Rest for 1 s)", "x N"),
    ("Run missing.csv (A)", "does not exist"),
    ("", "no steps"),
])
def test_bad_steps_are_refused(bad, why):
    with pytest.raises(InputError, match="(?i)" + __import__("re").escape(why)):
        parse_experiment(bad)


def test_bad_drive_cycles(tmp_path):
    for name, text, why in [("a.csv", "0,1\n0,2\n", "increase"), ("b.csv", "1,1\n2,2\n", "first time"),
                            ("c.csv", "0,1\n", "two rows"), ("d.csv", "0,1\n5,x\n", "row 2")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=why):
            parse_step(f"Run {tmp_path / name} (A)")
    with pytest.raises(InputError, match="unit"):
        parse_step(f"Run {tmp_path / 'a.csv'} (Ohm)")
