"""bench.forecast_quality's coverage interval resamples whole worn axes, not single forecasts."""

from bench.forecast_quality import coverage_interval


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
