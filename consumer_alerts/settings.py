"""consumer_alerts' settings: the common ones plus the detectors', the lifecycle's and the service's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from common.settings import CommonSettings

DetectorName = Literal["zscore", "residual", "stuck"]
ALL_DETECTORS: tuple[DetectorName, ...] = ("zscore", "residual", "stuck")


class AlertsSettings(CommonSettings):
    """Environment names are the field names in upper case (``Z_THRESHOLD``, ``HOLDOFF_S``, ...)."""

    alerts_group_id: str = Field("axiswatch-alerts", description="Kafka consumer group of the detector service.")
    detectors: Annotated[list[DetectorName], NoDecode] = Field(
        list(ALL_DETECTORS), description="Detectors to run, comma-separated: zscore, residual, stuck."
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
        600.0,
        gt=0,
        description="A gap without active data longer than this resets the z-score baseline "
        "and closes the robot's open events: a long pause is not recent behaviour.",
    )
    holdoff_s: float = Field(
        300.0, ge=0, description="An event closes once its rule has been quiet this long (observed, not idle)."
    )
    stuck_readings: int = Field(
        30,
        ge=2,
        description="Identical non-zero readings in a row that make a sensor stuck (ALERT). A model "
        "raises it to twice the longest run seen in training.",
    )
    model_path: Path | None = Field(
        None, description="Model file from `train` (MODEL_PATH); without one the residual detector is off."
    )
    state_path: Path | None = Field(
        Path("var/consumer_alerts-state.json"),
        description="Snapshot of the detectors' state, read at start and written while running; empty = none.",
    )
    snapshot_interval_s: float = Field(
        30.0,
        gt=0,
        description="Seconds between two snapshots of the state; the offsets are committed with each, "
        "so a crash replays at most this much.",
    )
    alerts_metrics_port: int | None = Field(
        9103, ge=0, le=65535, description="Port of /metrics, /livez and /readyz; 0 or empty: none."
    )
    poll_timeout_ms: int = Field(500, ge=10, description="Longest wait for new readings before checking for stop.")
    max_batch: int = Field(2000, ge=1, description="Readings taken from the topic in one batch at most.")

    @field_validator("detectors", mode="before")
    @classmethod
    def _parse_detectors(cls, value: object) -> list[str]:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return list(dict.fromkeys(value))

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
