"""bench.forecast_quality: its coverage interval resamples whole worn axes; its work cycles are cached."""

from bench import forecast_quality
from bench.forecast_quality import _robot_cycles, coverage_interval


def cases(axis_hits):
    return [{"seed": 1, "robot": f"robot-{i:03d}", "inside": hit} for i, hits in enumerate(axis_hits) for hit in hits]


def bounds(text):
    low, high = (float(x.rstrip("%")) / 100 for x in text.split("-"))
    return low, high


def test_all_inside_is_certain():
    assert coverage_interval(cases([[True] * 5] * 10), "inside") == "100%-100%"


def test_forecasts_of_one_axis_count_as_one_case_not_many():
    # 20 axes, 10 forecasts each; half the axes always inside, half never: 50 % either way, but the
    # interval is that of 20 cases (about ±18 points), not of 200 independent forecasts (about ±6)
    clustered = cases([[True] * 10] * 10 + [[False] * 10] * 10)
    low, high = bounds(coverage_interval(clustered, "inside"))
    assert low < 0.5 < high and high - low > 0.25
    mixed = cases([[True, False] * 5] * 20)  # the same share spread within every axis: no doubt between axes
    assert coverage_interval(mixed, "inside") == "50%-50%"


def test_a_robots_work_cycles_are_made_once_then_read_from_the_cache(tmp_path, monkeypatch):
    # A new baseline (SERIES_VERSION) needs the series again but not the cycles, which are nearly all the CPU.
    path = tmp_path / "cycles.pkl"
    made = _robot_cycles(1, "robot-001", 0.05, None, path)
    assert made and path.exists()

    def generator_called(*args, **kwargs):
        raise AssertionError("the cycles were made again")

    monkeypatch.setattr(forecast_quality, "offline_cycles", generator_called)
    again = _robot_cycles(1, "robot-001", 0.05, None, path)
    assert [(c.start, c.end, sorted(c.axes)) for c in again] == [(c.start, c.end, sorted(c.axes)) for c in made]
    assert [c.axes[1].rms for c in again] == [c.axes[1].rms for c in made]


def errors(per_robot):
    """Model and naive rows, one robot per (model errors, naive errors) pair."""
    model, naive = [], []
    for i, (mine, theirs) in enumerate(per_robot):
        model += [{"seed": 1, "robot": f"robot-{i:03d}", "abs_error_h": e} for e in mine]
        naive += [{"seed": 1, "robot": f"robot-{i:03d}", "abs_error_h": e} for e in theirs]
    return model, naive


def test_a_ratio_the_same_on_every_robot_is_certain():
    assert forecast_quality.ratio_interval(*errors([([10.0, 20.0, 30.0], [20.0, 40.0, 60.0])] * 12)) == "0.50-0.50"


def test_a_ratio_that_differs_between_robots_gets_an_interval_around_it():
    # half the robots forecast as well as the naive line, half four times better: the pooled ratio lies
    # between, and another draw of robots could put it anywhere from near one end to near the other
    model, naive = errors([([40.0] * 3, [40.0] * 3)] * 10 + [([10.0] * 3, [40.0] * 3)] * 10)
    low, high = (float(x) for x in forecast_quality.ratio_interval(model, naive).split("-"))
    assert 0.25 <= low < 0.6 < high <= 1.0
