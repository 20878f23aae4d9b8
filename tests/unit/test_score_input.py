"""What `score` reads: `,` or `;` files (sniffed, or --sep), and which columns it scores."""

import csv
import math
from datetime import timedelta

import pytest

from common.defaults import MAX_AXIS
from consumer_alerts.cli import main
from consumer_alerts.offline import read_table, sniff_separator
from tests.alerts_fixtures import T0


def write(path, header, rows, sep=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def pump_rows(n=400, decimal=".", spike_at=300):
    """A pump log: time, two sensors, a 0/1 label column and a text column."""
    rows = []
    for i in range(n):
        flow = 50 + 3 * math.sin(i / 5) + (40 if spike_at <= i < spike_at + 8 else 0)
        current = 12.5 + 0.5 * math.cos(i / 7)
        rows.append(
            [
                (T0 + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S"),
                f"{flow:.2f}".replace(".", decimal),
                f"{current:.3f}".replace(".", decimal),
                int(spike_at <= i < spike_at + 8),
                "running",
            ]
        )
    return rows


HEADER = ["when", "flow", "current", "label", "status"]


def test_a_semicolon_file_with_decimal_commas_reads_as_numbers(tmp_path):
    path = write(tmp_path / "pump.csv", HEADER, pump_rows(decimal=","), sep=";")
    assert sniff_separator(path) == ";"
    times, values = read_table(path, "when")
    assert list(values.columns) == ["flow", "current", "label"]  # the text column is not scored
    assert len(times) == 400 and values["flow"].iloc[300] == pytest.approx(50 + 3 * math.sin(60) + 40, abs=0.01)
    assert values.notna().all().all()


def test_a_comma_file_with_commas_inside_quoted_cells_is_still_comma_separated(tmp_path):
    path = write(tmp_path / "c.csv", ["when", "a;b", "note"], [["2022-10-17 12:00:00", 1.5, "x;y;z"]])
    assert sniff_separator(path) == ","
    assert list(read_table(path, "when")[1].columns) == ["a;b"]


def test_sep_overrides_the_sniffed_separator(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("when;value\n" + "".join(f"2022-10-17 12:0{i}:00;{i},5\n" for i in range(5)))
    assert sniff_separator(path) == ";"
    with pytest.raises(ValueError, match="no column 'when'"):
        read_table(path, "when", sep=",")  # forced: the header reads as one column, as before the sniffing
    times, values = read_table(path, "when", sep=";")
    assert values["value"].tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]


def test_columns_and_exclude_choose_what_is_scored(tmp_path):
    path = write(tmp_path / "pump.csv", HEADER, pump_rows())
    assert list(read_table(path, "when", exclude=["label"])[1].columns) == ["flow", "current"]
    assert list(read_table(path, "when", ["current", "flow"])[1].columns) == ["current", "flow"]
    assert list(read_table(path, "when", ["current", "flow"], exclude=["flow"])[1].columns) == ["current"]
    with pytest.raises(ValueError, match="no column"):
        read_table(path, "when", exclude=["lable"])
    with pytest.raises(ValueError, match="no number in column"):
        read_table(path, "when", ["status"])
    with pytest.raises(ValueError, match="no numeric column"):
        read_table(path, "when", exclude=["flow", "current", "label"])


def test_more_columns_than_the_engine_has_axes_is_refused_with_the_way_out(tmp_path):
    sensors = [f"s{i}" for i in range(MAX_AXIS + 1)]
    rows = [[(T0 + timedelta(minutes=i)).isoformat(), *range(len(sensors))] for i in range(3)]
    path = write(tmp_path / "wide.csv", ["when", *sensors], rows)
    with pytest.raises(ValueError, match=f"{MAX_AXIS + 1} columns to score, at most {MAX_AXIS}: choose them"):
        read_table(path, "when")
    assert list(read_table(path, "when", exclude=["s0"])[1].columns) == sensors[1:]


def test_score_on_a_semicolon_file_scores_the_chosen_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "pump.csv", HEADER, pump_rows(decimal=","), sep=";")
    argv = ["score", "--csv", "pump.csv", "--time-column", "when", "--exclude", "label", "--out", "s.csv"]
    assert main(argv) == 0
    with open(tmp_path / "s.csv", newline="") as f:
        scores = list(csv.DictReader(f))
    assert list(scores[0]) == ["timestamp", "flow_score", "current_score", "anomaly_score"] and len(scores) == 400
    flow = [float(r["flow_score"]) for r in scores]
    assert max(flow[300:310]) > 0.5 > max(flow[:300])
