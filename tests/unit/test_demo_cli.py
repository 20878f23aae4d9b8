"""``python -m demo``: its options, and bad ones refused with a clear message before anything starts."""

import pytest

from demo.cli import build_parser, main


def test_the_defaults_are_the_readme_s_demo(tmp_path, monkeypatch):
    monkeypatch.delenv("CSV", raising=False)
    args = build_parser().parse_args([])
    assert (args.db.name, args.csv, args.robots, args.speed, args.port, args.open_browser) == (
        "axiswatch-demo.sqlite",
        None,
        2,
        4.0,
        5006,
        True,
    )


def test_a_missing_export_is_refused_before_anything_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--csv", str(tmp_path / "nonexistent.csv"), "--work-dir", str(tmp_path / "work")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "work").exists() and not (tmp_path / "axiswatch-demo.sqlite").exists()


def test_the_csv_variable_names_the_export(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CSV", str(tmp_path / "missing.csv"))
    assert main([]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for option in ("--db", "--csv", "--robots", "--tick-seconds", "--speed", "--fault-period", "--port"):
        assert option in out
    assert "--no-browser" in out and "--work-dir" in out
