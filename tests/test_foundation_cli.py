"""The CLI frame: help texts, exit codes, config files, shared option parsers."""

from __future__ import annotations

import json

import pytest

from tomocell import cli
from tomocell.config import load_config, parse_labels, parse_voxel_size
from tomocell.errors import InputError


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in cli.stage_modules():
        assert name in out


@pytest.mark.parametrize("name", sorted(cli.SUBCOMMANDS))
def test_each_subcommand_has_complete_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "usage: tomocell" in out
    mod = cli.stage_modules()[name]
    assert mod.HELP and mod.DESCRIPTION and mod.EPILOG, f"{name}: HELP, DESCRIPTION and EPILOG are required"


def test_unknown_option_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--no-such-option"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unrecognized arguments: --no-such-option" in err[-1]


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2


def test_config_file_gives_defaults_and_cli_wins(tmp_path, monkeypatch):
    seen = {}

    def fake_run(args):
        seen.update(vars(args))
        return 0

    import tomocell.demo as demo

    monkeypatch.setattr(demo, "run", fake_run)
    cfg = tmp_path / "demo.toml"
    cfg.write_text('c-rate = 2.5\nseed = 7\nout = "somewhere"\n')
    assert cli.main(["demo", "--config", str(cfg)]) == 0
    assert seen["c_rate"] == 2.5 and seen["seed"] == 7 and str(seen["out"]) == "somewhere"
    assert cli.main(["demo", "--config", str(cfg), "--seed", "3"]) == 0
    assert seen["seed"] == 3 and seen["c_rate"] == 2.5


def test_config_unknown_key_and_bad_file_exit_2(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("c_rate: 1\nwarp_speed: 9\n")
    assert cli.main(["demo", "--config", str(cfg)]) == 2
    assert "warp_speed" in capsys.readouterr().err
    assert cli.main(["demo", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("c-rate = = 2\n")
    assert cli.main(["demo", "--config", str(broken)]) == 2


def test_bad_c_rate_is_a_usage_error(capsys):
    assert cli.main(["demo", "--c-rate", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--c-rate" in err[0]


def test_load_config_formats(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"voxel-size": 0.5}))
    assert load_config(tmp_path / "a.json") == {"voxel_size": 0.5}
    (tmp_path / "b.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="mapping"):
        load_config(tmp_path / "b.yaml")
    (tmp_path / "c.ini").write_text("x=1")
    with pytest.raises(InputError, match="unknown format"):
        load_config(tmp_path / "c.ini")


def test_parse_labels():
    assert parse_labels("0=pore,85=active,170=cbd") == {0: "pore", 85: "active", 170: "cbd"}
    assert parse_labels({"0": "Pore"}) == {0: "pore"}
    for bad, msg in [("0=pore,85", "VALUE=PHASE"), ("x=pore", "not an integer"), ("0=void", "unknown phase"),
                     ("0=pore,0=cbd", "twice"), ("", "empty")]:
        with pytest.raises(InputError, match=msg):
            parse_labels(bad)


def test_parse_voxel_size():
    assert parse_voxel_size("0.5") == (0.5, 0.5, 0.5)
    assert parse_voxel_size("0.2,0.1,0.1") == (0.2, 0.1, 0.1)
    assert parse_voxel_size(0.25) == (0.25, 0.25, 0.25)
    assert parse_voxel_size(None) is None
    for bad in ["-1", "0", "nan", "a", "1,2", "inf"]:
        with pytest.raises(InputError):
            parse_voxel_size(bad)
