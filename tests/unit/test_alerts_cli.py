"""The CLI on small files: train, replay, score and plot, and clear errors."""

import csv
import math
from datetime import timedelta

import pytest

from common.csvio.skipped import ROWS_SHOWN
from consumer_alerts.cli import main
from consumer_alerts.model import AlertModel
from consumer_alerts.offline import CHANGE_COLUMNS
from tests.alerts_fixtures import T0, cycle_readings, write_export

TRAIN = ["train", "--csv", "export.csv", "--fraction", "1", "--out", "m.json"]


def overload(i, axis, amps):
    return amps * 2.5 if axis == 2 and 2200 <= i < 2700 else amps


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray .env, and outputs land in the test's folder
    for name in ("MODEL_PATH", "STATE_PATH", "DETECTORS", "ROBOT_ID", "AXES"):
        monkeypatch.delenv(name, raising=False)
    write_export(cycle_readings(3000, seed=11, fault=overload), tmp_path / "export.csv")
    return tmp_path


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_then_replay_finds_the_overload(files, capsys):
    assert main(["train", "--csv", "export.csv", "--fraction", "0.6", "--out", "model.json", "--window", "40"]) == 0
    model = AlertModel.load(files / "model.json")
    assert model.kind == "density" and set(model.axes) == {1, 2} and model.robot_id == "RMBR4-2"
    assert model.training["rows"] == 1800 and "axis 2" in capsys.readouterr().out
    assert main(["replay", "--csv", "export.csv", "--model", "model.json", "--out", "alerts.csv"]) == 0
    with open(files / "alerts.csv", newline="") as f:
        assert next(csv.reader(f)) == list(CHANGE_COLUMNS)
    events = rows(files / "alerts.csv")
    fault_start, fault_end = T0 + timedelta(seconds=2 * 2200), T0 + timedelta(seconds=2 * 2700)
    hits = [e for e in events if e["axis"] == "2" and e["detector"] == "residual"]
    assert hits, events
    assert all(e["opened_at"].endswith("Z") for e in events)
    assert any(fault_start.isoformat()[:13] <= e["opened_at"][:13] <= fault_end.isoformat()[:13] for e in hits)
    assert all(float(e["peak_amps"]) > 0 and e["severity"] in ("ALERT", "ERROR") for e in events)


def test_train_until_a_time_and_replay_without_a_model(files):
    assert (
        main(
            [
                "train",
                "--csv",
                "export.csv",
                "--until",
                "2022-10-17T13:00:00",
                "--out",
                "m.json",
                "--window",
                "40",
                "--kind",
                "line",
                "--robot-id",
                "cell-7",
            ]
        )
        == 0
    )
    model = AlertModel.load(files / "m.json")
    assert model.kind == "line" and model.robot_id == "cell-7" and model.training["end"] < "2022-10-17T13:00"
    assert main(["replay", "--csv", "export.csv", "--out", "plain.csv"]) == 0
    events = rows(files / "plain.csv")  # no model, too few readings to learn one: no residual
    assert not any(e["detector"] == "residual" for e in events)
    assert any(e["detector"] == "load_high" and e["axis"] == "2" for e in events), events


def test_plot_writes_the_fit_and_residual_pictures(files):
    main(["train", "--csv", "export.csv", "--fraction", "0.6", "--out", "model.json", "--window", "40"])
    assert main(["plot", "--model", "model.json", "--csv", "export.csv", "--out", "plots"]) == 0
    for name in ("axis1.png", "axis2.png", "residual-axis1.png", "residual-axis2.png"):
        assert (files / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_score_any_csv_gives_a_score_per_numeric_column_in_0_1(files):
    with open(files / "outside.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["when", "temp", "pressure", "note"])
        for i in range(800):
            pressure = 100 + 5 * math.sin(i) + (60 if 600 <= i < 610 else 0)
            temp = 20 + (i // 3 % 2) + (15 if 300 <= i < 310 else 0)  # repeats are normal here: still judged
            writer.writerow([(T0 + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S"), temp, pressure, "x"])
    assert main(["score", "--csv", "outside.csv", "--time-column", "when", "--out", "scores.csv"]) == 0
    scores = rows(files / "scores.csv")
    assert list(scores[0]) == ["timestamp", "temp_score", "pressure_score", "anomaly_score"] and len(scores) == 800
    values = [float(r["pressure_score"]) for r in scores]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert max(values[600:612]) > 0.5 > max(values[:600])
    assert sum(v >= 0.5 for v in values[600:612]) == 1, "an episode is flagged once, on the row that raises it"
    combined = [float(r["anomaly_score"]) for r in scores]
    assert combined == [max(float(r["temp_score"]), float(r["pressure_score"])) for r in scores]
    assert scores[0]["timestamp"] == "2022-10-17T12:00:00.000Z"
    assert main(["score", "--csv", "outside.csv", "--time-column", "when", "--columns", "temp", "--out", "t.csv"]) == 0
    temps = [float(r["temp_score"]) for r in rows(files / "t.csv")]
    assert list(rows(files / "t.csv")[0]) == ["timestamp", "temp_score", "anomaly_score"]
    assert max(temps[300:312]) > 0.5 > max(temps[:300])


def test_score_writes_a_number_for_every_row_even_when_time_stands_still_or_a_cell_is_empty(files):
    with open(files / "odd.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["when", "value"])
        for i in range(400):
            when = T0 + timedelta(minutes=5 * min(i, 398))  # the last row repeats the time of row 398
            value = "" if i == 100 else 50 + 3 * math.sin(i / 5) + (400 if i == 398 else 0)
            writer.writerow([when.strftime("%Y-%m-%d %H:%M:%S"), value])
    assert main(["score", "--csv", "odd.csv", "--time-column", "when", "--out", "s.csv"]) == 0
    scores = [float(r["anomaly_score"]) for r in rows(files / "s.csv")]
    assert len(scores) == 400 and all(0.0 <= v <= 1.0 for v in scores)
    assert scores[100] == 0.0  # an empty cell is no evidence
    assert scores[398] >= 0.5, "a new extreme far past the range raises at once on a 5-minute feed"
    assert scores[399] < 0.5, "a row whose time does not move forward raises nothing"


def test_score_says_how_many_rows_it_did_not_judge_because_time_did_not_move_forward(files, capsys):
    # A file in reverse time order (or of one time) scored 0 on every row, and said only "N row(s) of scores".
    with open(files / "reversed.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["when", "value"])
        for i in range(400):
            writer.writerow([(T0 - timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S"), math.sin(i / 5)])
    assert main(["score", "--csv", "reversed.csv", "--time-column", "when", "--out", "s.csv"]) == 0
    assert "399 of them not judged: their time is not after an earlier row's" in capsys.readouterr().err
    assert main(["score", "--csv", "export.csv", "--time-column", "Time", "--out", "s.csv"]) == 0
    assert "not judged" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--csv", "export.csv", "--fraction", "1.5", "--out", "m.json"], "--fraction must be within"),
        # Each wrote a model whose ERROR never fires (inf, 1e300), one learnt from zeros (0), or was ignored (nan).
        *(([*TRAIN, "--surge-amps", v], "--surge-amps") for v in ("inf", "nan", "-1")),
        *(([*TRAIN, "--error-scale", v], "--error-scale") for v in ("0", "nan", "inf", "1e300")),
        (["replay", "--csv", "export.csv", "--model", "nowhere.json", "--out", "a.csv"], "cannot read model file"),
        (["score", "--csv", "export.csv", "--time-column", "when", "--out", "s.csv"], "no column 'when'"),
        (
            ["score", "--csv", "export.csv", "--time-column", "Time", "--columns", "Axis #99", "--out", "s.csv"],
            "no column",
        ),
        (["--model", "nowhere.json"], "cannot read model file"),  # the service refuses to start, before any connection
    ],
)
def test_failures_exit_1_with_a_clear_message(files, capsys, argv, message):
    assert main(argv) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        # It passed, and replay stopped at the first reading with a ZeroDivisionError or OverflowError traceback.
        ("MULTIVARIATE_HALFLIFE_ROWS", "inf", "multivariate_halflife_rows"),
        ("MULTIVARIATE_HALFLIFE_ROWS", "1e300", "multivariate_halflife_rows"),
        # They passed: replay (and the service) judged every reading with no detector, "0 change(s)", silently.
        ("DETECTORS", "", "names no detector"),
        ("DETECTORS", " , ,", "names no detector"),
    ],
)
def test_settings_that_cannot_work_are_refused_before_reading(files, capsys, monkeypatch, setting, value, message):
    monkeypatch.setenv(setting, value)
    assert main(["replay", "--csv", "export.csv", "--out", "a.csv"]) == 1
    assert message in capsys.readouterr().err
    assert not (files / "a.csv").exists()


@pytest.mark.parametrize("bad_rows", [ROWS_SHOWN, 500])
def test_a_file_of_many_bad_rows_logs_the_first_few_then_a_count(files, caplog, bad_rows):
    # Each bad row was one warning: a file of a million bad rows was a million lines of log.
    with open("export.csv", "a", encoding="utf-8") as f:
        f.writelines(f'"current",{i},"2022-10-17T12:00:00Z"\n' for i in range(bad_rows))
    assert main(["replay", "--csv", "export.csv", "--out", "a.csv"]) == 0
    told = [r.getMessage() for r in caplog.records if r.name == "consumer_alerts.sources"]
    assert len(told) == min(bad_rows, ROWS_SHOWN + 1)
    assert told[0] == "export.csv line 3002 skipped: expected 16 fields, found 3"
    if bad_rows > ROWS_SHOWN:
        assert told[-1] == (
            f"{bad_rows - ROWS_SHOWN} more row(s) skipped ({bad_rows} in all, the first {ROWS_SHOWN} told above): "
            f"{bad_rows - ROWS_SHOWN} x expected … fields, found …"
        )


def test_help_documents_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("run", "train", "plot", "replay", "score"))


def test_train_from_the_database(files, monkeypatch, sqlite_url):
    from sqlalchemy import create_engine

    from common.store.tables import metadata, readings_fact

    engine = create_engine(sqlite_url)
    metadata.create_all(engine)
    rows = [
        {"robot_id": "r1", "axis_id": a, "ts": r.ts, "amps": v}
        for r in cycle_readings(1500, seed=12)
        for a, v in r.currents.items()
    ]
    with engine.begin() as conn:
        conn.execute(readings_fact.insert(), rows)
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    assert (
        main(["train", "--from-db", "--robot-id", "r1", "--fraction", "1", "--out", "db.json", "--window", "40"]) == 0
    )
    model = AlertModel.load(files / "db.json")
    assert model.training["rows"] == 1500 and set(model.axes) == {1, 2} and model.robot_id == "r1"
    assert main(["train", "--from-db", "--robot-id", "nobody", "--fraction", "1", "--out", "none.json"]) == 1
