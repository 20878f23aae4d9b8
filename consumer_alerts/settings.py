"""consumer_alerts' settings: the common ones plus the detectors', the lifecycle's and the service's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from common.defaults import LONGEST_POLL_MS, STOPPAGE_RESET_S
from common.settings import CommonSettings
from consumer_alerts.detectors import registry

DEFAULT_DETECTORS: tuple[str, ...] = ("level", "load", "residual", "stuck", "multivariate", "cycle")


class AlertsSettings(CommonSettings):
    """Environment names are the field names in upper case (``Z_THRESHOLD``, ``HOLDOFF_S``, ...)."""

    alerts_group_id: str = Field("axiswatch-alerts", description="Kafka consumer group of the detector service.")
    alerts_state_topic: str = Field(
        "axiswatch.alerts-state",
        description="Compacted topic of the detectors' state, one message per robot: it moves with the robot's "
        "partition to whichever instance of the group holds it.",
    )
    detectors: Annotated[list[str], NoDecode] = Field(
        list(DEFAULT_DETECTORS),
        description="Detectors to run, comma-separated, by their name in consumer_alerts/detectors/registry.py: "
        "level, load, residual, stuck; multivariate and cycle (robot-level); zscore (opt-in).",
    )
    level_warmup: int = Field(
        300,
        ge=10,
        description="Readings the level detector learns from before it scores (its calibration, range and "
        "sequences): 10 minutes of a robot sampled every 2 s, a day of a feed sampled every 5 minutes.",
    )
    level_warmup_s: float = Field(
        3600.0,
        ge=0,
        description="Feed time from a series' first reading before the level detector scores, besides "
        "LEVEL_WARMUP readings: a robot's first 300 readings are ten minutes, not yet its day.",
    )
    level_short: int = Field(5, ge=1, description="Readings averaged into the level detector's value under test.")
    level_average: int = Field(
        20, ge=1, description="Readings over which the level detector averages its deviation statistic."
    )
    level_history: int = Field(
        3000, ge=20, description="Readings of the deviation statistic's history the calibration judges against."
    )
    level_alpha: float = Field(
        0.002, gt=0, lt=1, description="Weight of a new reading in the level detector's slow baseline."
    )
    level_alert_tail: float = Field(
        1e-6,
        gt=0,
        lt=1,
        description="Tail probability of the deviation statistic that scores 0.5 (an ALERT); its square scores 1.",
    )
    level_extreme_tolerance: float = Field(
        0.02, ge=0, description="Share of the range seen so far a value must pass it by to be a new extreme."
    )
    level_extreme_absorb: int = Field(
        10, ge=1, description="Readings after which an excursion beyond the range becomes part of it."
    )
    level_novelty_levels: int = Field(8, ge=2, description="Levels the range is cut into for new sequences.")
    level_novelty_order: int = Field(3, ge=1, description="Readings in a sequence of levels.")
    level_novelty_quiet: int = Field(
        500,
        ge=0,
        description="Readings without a new sequence of levels before a new one scores: a series whose "
        "sequences keep being new (noise, a wandering level) is not surprised by one more.",
    )
    level_error_score: float = Field(
        0.8, ge=0.5, le=1, description="Level score at or above which a rise is an ERROR (0.5: ALERT)."
    )
    level_low_error_score: float = Field(
        0.8, ge=0.5, le=1, description="Level score at or above which a drop is an ERROR (0.5: ALERT)."
    )
    level_hold_s: float = Field(
        16.0,
        ge=0,
        description="Feed time a level score >= 0.5 must cover, readings in a row each covering one sampling "
        "interval, before it fires: 8 readings of a robot sampled every 2 s (more than LEVEL_SHORT, so one "
        "odd sample cannot hold it alone), one reading of a feed sampled every minute or slower.",
    )
    load_window: int = Field(
        120,
        ge=10,
        description="Active (non-zero) readings of an axis whose log-mean is the load detector's level: several "
        "work cycles, so that the swing within a cycle averages out.",
    )
    load_warmup: int = Field(
        600,
        ge=10,
        description="Active readings the load detector learns the axis's normal level from before it scores.",
    )
    load_alpha: float = Field(
        0.0005, gt=0, lt=1, description="Weight of a new active reading in the load detector's normal level and spread."
    )
    load_sigmas: float = Field(
        5.0,
        gt=0,
        description="Half-width of the load detector's band, in units of the spread of its window level on the "
        "axis's own data (not narrower than LOAD_MIN_RATIO).",
    )
    load_min_ratio: float = Field(
        0.75,
        gt=0,
        lt=1,
        description="The band's narrowest half-width as a ratio of loads: below this share of normal (or above "
        "its inverse) at the least before the load detector scores 0.5.",
    )
    gross_high: float = Field(
        2.0,
        gt=1,
        description="An axis's level over its normal level (the load detector's window) at or above which a "
        "finding of any detector is an ERROR (the load doubled; a rise once it has held there over LOAD_HOLD_S); "
        "below it, an ALERT.",
    )
    gross_low: float = Field(
        0.2, gt=0, lt=1, description="That ratio at or below which a finding is an ERROR (80 % of the load gone)."
    )
    load_absorb: int = Field(
        1800,
        ge=1,
        description="Active readings out of the band after which the load detector takes the new level as "
        "normal (a new program: one event, then quiet).",
    )
    load_hold_s: float = Field(
        16.0,
        ge=0,
        description="Feed time a load score >= 0.5 must cover, readings in a row each covering one sampling "
        "interval, before it fires; and a rise's level at or past GROSS_HIGH, before it is an ERROR.",
    )
    multivariate_halflife_rows: float = Field(
        2000.0,
        gt=1,
        # Past ~1e15 a reading's weight rounds to 0 and the detector divided by it (1e300: ZeroDivisionError,
        # infinity: OverflowError, at the first reading); a billion readings is decades of a robot.
        le=1e9,
        description="Active readings after which a reading's weight in the cross-axis model halves (at most 1e9).",
    )
    multivariate_alpha: float = Field(
        1e-6, gt=0, lt=1, description="False-alarm rate per reading of the cross-axis detector at its ALERT limit."
    )
    multivariate_window: int = Field(
        30, ge=1, description="Active readings averaged into the vector the cross-axis detector judges."
    )
    multivariate_stride: int = Field(
        10,
        ge=1,
        description="Active readings between two the cross-axis detector judges and learns (the window's mean "
        "moves little in between; every reading still enters the window).",
    )
    z_window: int = Field(500, ge=10, description="Active samples per axis in the z-score baseline.")
    z_min_samples: int = Field(100, ge=2, description="Active samples the baseline needs before the z-score can fire.")
    z_test_samples: int = Field(
        8, ge=1, description="Active samples averaged into the sample under test (1 = single-sample z)."
    )
    z_threshold: float = Field(7.0, gt=0, description="z at or above which the z-score detector raises an ALERT.")
    z_error_threshold: float = Field(10.0, gt=0, description="z at or above which it raises an ERROR.")
    z_hold_s: float = Field(0.0, ge=0, description="Seconds z must stay above a threshold before it fires.")
    stoppage_reset_s: float = Field(
        STOPPAGE_RESET_S,
        gt=0,
        description="A gap without active data longer than this (and than STOPPAGE_READINGS sampling "
        "intervals) is a stoppage: it resets the z-score baseline and the level detector's short-term state "
        "and closes the robot's open events; a long pause is not recent behaviour.",
    )
    stoppage_readings: float = Field(
        300.0, gt=0, description="The same in sampling intervals of the feed, learnt per series."
    )
    holdoff_s: float = Field(
        300.0,
        ge=0,
        description="An event closes once its rule has been quiet this long (observed, not idle), "
        "and for at least HOLDOFF_READINGS readings.",
    )
    holdoff_readings: int = Field(
        60, ge=0, description="Observed quiet readings an event needs before it closes (see HOLDOFF_S)."
    )
    idle_rule: bool = Field(
        True,
        description="Rows where no axis has a fresh non-zero value are idle (a robot at rest): its zeros feed "
        "no baseline. Off for feeds without that meaning (``score`` turns it off).",
    )
    stuck_readings: int = Field(
        30,
        ge=2,
        description="Identical non-zero readings in a row that make a sensor stuck (ALERT). A model "
        "raises it to twice the longest run seen in training.",
    )
    model_path: Path | None = Field(
        None,
        description="Model file from `train` (MODEL_PATH): the residual detector's model of the robots it is "
        "for from the start; without one each robot's model is learned by the service (MODEL_LEARN_READINGS).",
    )
    model_learn_readings: int = Field(
        4000,
        ge=0,
        description="Active readings of a robot the service learns its model from (and learns it again from "
        "after a lasting change), when no model file is for that robot; 0: never (residual only with a file).",
    )
    model_relearn_s: float = Field(
        1800.0,
        ge=0,
        description="Feed time a broad change of a robot's load must last before its model is learned again "
        "(announced as a `model` INFO event); longer than a fault's window. 0: a model is never re-learned "
        "(a file's model stays fixed).",
    )
    model_relearn_shift: float = Field(
        0.1,
        gt=0,
        description="How far an axis's running mean of active current must be from the model's mean (log "
        "ratio, either way: 0.1 is about 10 %) to count as changed.",
    )
    model_relearn_axes: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of the model's axes (and at least two) that must have changed together for a "
        "change of program, not a fault (which touches one axis or a few): with 0.5, 4 of 8 axes, both of 2.",
    )
    state_path: Path | None = Field(
        Path("var/consumer_alerts-state.json"),
        description="Base name of the health pipeline's state file (<name>.health.pkl); empty = none. The "
        "detectors' state is on ALERTS_STATE_TOPIC.",
    )
    snapshot_interval_s: float = Field(
        30.0,
        gt=0,
        # At 1e300 no checkpoint was ever made, so no offset committed: a crash replayed every reading since the
        # service began, and the readings topic keeps a week by Kafka's default (retention.ms).
        le=86_400,
        description="Seconds between two checkpoints of the detectors' state (to ALERTS_STATE_TOPIC); the "
        "offsets are committed with each, so a crash replays at most this much (at most a day).",
    )
    alerts_metrics_port: int | None = Field(
        9103, ge=0, le=65535, description="Port of /metrics, /livez and /readyz; 0 or empty: none."
    )
    poll_timeout_ms: int = Field(
        500,
        ge=10,
        le=LONGEST_POLL_MS,
        description="Longest wait for new readings before checking for stop (at most 10,000).",
    )
    max_batch: int = Field(2000, ge=1, description="Readings taken from the topic in one batch at most.")
    # Joint health and the maintenance forecast (consumer_alerts/health, docs/health.md).
    health: bool = Field(
        True,
        description="Run the health pipeline: work cycles, indicators and forecasts on HEALTH_TOPIC, maintenance due.",
    )
    health_limit: float = Field(
        0.30,
        gt=0,
        description="Health level at which an axis needs a visit: relative excess of its working RMS current.",
    )
    health_due_days: float = Field(
        7.0,
        gt=0,
        description="A maintenance_due event opens when the forecast crossing is at most this many days ahead.",
    )
    health_holdoff_h: float = Field(
        24.0, ge=0, description="Hours the forecast must stay beyond HEALTH_DUE_DAYS before maintenance_due closes."
    )
    health_min_level: float = Field(
        0.10,
        ge=0,
        description="Health level an axis must have reached before maintenance can be due: a slope alone is not wear.",
    )
    health_hold_hours: int = Field(
        12, ge=1, description="Hourly forecasts in a row that must say maintenance is due before it opens."
    )
    health_min_hours: int = Field(
        24, ge=1, description="Hourly values an axis's trend needs before it may call maintenance due."
    )

    @field_validator("detectors", mode="before")
    @classmethod
    def _parse_detectors(cls, value: object) -> list[str]:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        names = list(dict.fromkeys(value))
        if not names:  # empty or only commas: the service ran, judged every reading and could raise nothing
            raise ValueError(f"names no detector (known: {', '.join(registry.known())})")
        unknown = [n for n in names if n not in registry.known()]
        if unknown:
            raise ValueError(f"unknown detector(s) {', '.join(unknown)} (known: {', '.join(registry.known())})")
        return names

    @field_validator("state_path", "model_path", "alerts_metrics_port", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> AlertsSettings:
        if self.z_error_threshold < self.z_threshold:
            raise ValueError("z_error_threshold must not be below z_threshold")
        if self.z_min_samples > self.z_window:
            raise ValueError("z_min_samples must not exceed z_window")
        return self
