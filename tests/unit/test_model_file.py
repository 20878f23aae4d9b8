"""The model file: training gives thresholds that stay quiet on normal data, and it round-trips."""

import json
from datetime import timedelta

import numpy as np
import pytest

from common.wire.schemas import Reading
from consumer_alerts.detectors.residual import ResidualDetector
from consumer_alerts.errors import ModelFileError, TrainingError
from consumer_alerts.model import FORMAT, VERSION, AlertModel
from consumer_alerts.training import TrainingOptions, collect, train
from tests.alerts_fixtures import T0, cycle_readings

SMALL = TrainingOptions(window=20, max_short=4)


@pytest.fixture(scope="module")
def readings():
    return cycle_readings(3000, seed=3)


@pytest.mark.parametrize("kind", ["density", "line"])
def test_model_round_trips_through_its_file(tmp_path, readings, kind):
    model = train(readings, TrainingOptions(kind=kind, window=20, max_short=4), robot_id="r1", source="test.csv")
    model.save(tmp_path / "model.json")
    back = AlertModel.load(tmp_path / "model.json")
    assert back == model
    body = json.loads((tmp_path / "model.json").read_text())
    assert body["format"] == FORMAT and body["version"] == VERSION and body["kind"] == kind
    assert set(body["axes"]) == {"1", "2"}  # axis 9 is OK null: nothing to train
    axis = body["axes"]["2"]
    for field in (
        "line",
        "min_c",
        "max_c",
        "surge_c",
        "t_long_s",
        "t_short_s",
        "short",
        "window",
        "samples",
        "log_mean",
    ):
        assert axis[field] is not None, field
    assert "r2" in axis["line"] and (axis["density"] is not None) == (kind == "density")
    assert body["training"]["start"] == "2022-10-17T12:00:00.000Z" and body["training"]["rows"] == 3000
    assert body["training"]["source"] == "test.csv"


def test_a_loaded_model_detects_exactly_like_the_trained_one(tmp_path, readings):
    model = train(readings, SMALL, robot_id="r1")
    model.save(tmp_path / "m.json")
    back = AlertModel.load(tmp_path / "m.json")
    values = [float(v) for v in np.random.default_rng(1).lognormal(2.3, 0.6, 400)]
    one, two = ResidualDetector(model.axes[2]), ResidualDetector(back.axes[2])
    for i, v in enumerate(values):
        assert one.update(i * 2.0, v) == two.update(i * 2.0, v)


def test_training_learns_thresholds_above_normal_running(readings):
    model = train(readings, SMALL, robot_id="r1")
    later = cycle_readings(3000, seed=4, start=T0 + timedelta(days=1))
    samples, _ = collect(later)
    detector = ResidualDetector(model.axes[2])
    findings = [detector.update(t, a) for t, a in zip(samples[2].ts, samples[2].amps, strict=True)]
    assert sum(f is not None for f in findings) <= 3
    m = model.axes[2]
    assert m.max_c >= SMALL.surge_amps / 2 and 1 <= m.short <= SMALL.max_short
    top = SMALL.error_scale * max(collect(readings)[0][2].amps) - m.median
    assert m.surge_c == pytest.approx(max(top, m.max_c), abs=1e-5), "SurgeC: the top training sample, scaled"
    assert m.top == max(collect(readings)[0][2].amps), "the highest current of training: a gross surge is twice it"
    assert m.t_long_s >= SMALL.t_long_s and m.threshold_source == "percentile"


def test_a_version_1_file_loads_without_the_surge_rule(tmp_path, readings):
    body = json.loads(train(readings, SMALL, robot_id="r1").to_json())
    body["version"] = 1
    for axis in body["axes"].values():
        del axis["surge_c"]
    (tmp_path / "v1.json").write_text(json.dumps(body))
    assert all(m.surge_c is None for m in AlertModel.load(tmp_path / "v1.json").axes.values())


def test_few_samples_fall_back_to_median_and_mad(readings):
    model = train(readings[:300], TrainingOptions(window=20, max_short=4, min_samples=500), robot_id="r1")
    assert model.axes[2].threshold_source == "median+MAD"


def test_the_line_fit_reports_r2():
    rising = [
        Reading(robot_id="r", ts=T0 + timedelta(seconds=2 * i), currents={1: 5.0 + i * 0.01 + (i % 3) * 0.001})
        for i in range(400)
    ]
    line = train(rising, TrainingOptions(kind="line", window=20, max_short=2)).axes[1].line
    assert line.r2 > 0.99 and line.slope_per_h == pytest.approx(18.0, rel=0.01)


def test_training_needs_active_samples():
    idle = [Reading(robot_id="r", ts=T0 + timedelta(seconds=2 * i), currents={1: 0.0, 2: 0.0}) for i in range(100)]
    with pytest.raises(TrainingError, match="active samples"):
        train(idle, SMALL)
    with pytest.raises(TrainingError, match="no readings"):
        train([], SMALL)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("not json", "not JSON"),
        ('{"format": "other"}', "not a consumer_alerts model file"),
        (json.dumps({"format": FORMAT, "version": 99}), "version 99 is not supported"),
        (
            json.dumps({"format": FORMAT, "version": VERSION, "kind": "line", "robot_id": None, "axes": {"1": {}}}),
            "malformed",
        ),
    ],
)
def test_unusable_model_files_say_why(tmp_path, text, reason):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ModelFileError, match=reason):
        AlertModel.load(path)
    with pytest.raises(ModelFileError, match="cannot read"):
        AlertModel.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"window": "40"}, "window '40' is not a whole number"),
        ({"window": 1e300}, "window 1e\\+300 is not a whole number"),
        ({"short": 0}, "short 0 is not a whole number of 1 or more"),
        ({"min_c": "abc"}, "min_c 'abc' is not a number"),
        ({"max_c": True}, "max_c True is not a number"),
        ({"axis": 99}, "axes are numbered 1 to 62"),
        ({"axis": 1}, "key is not its axis number"),  # filed under axis 2
    ],
)
def test_a_model_file_of_the_wrong_shape_is_refused_when_read(tmp_path, readings, change, reason):
    # Each loaded, and replay stopped at the robot's first reading with a TypeError (or a window error there).
    model = train(readings, SMALL, robot_id="r1", source="test.csv")
    body = json.loads(model.to_json())
    body["axes"]["2"] |= change
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ModelFileError, match=reason):
        AlertModel.load(path)
