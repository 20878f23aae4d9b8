"""The producer's settings: the common ones plus the feed (which source, how fast, which part)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from common.csvio.csv_time import zone
from common.defaults import LONGEST_AHEAD_S
from common.errors import ConfigurationError
from common.settings import BackwardsToleranceS, CommonSettings


class ProducerSettings(CommonSettings):
    """Environment names are the field names in upper case (``CSV_PATH``, ``REPLAY_SPEED``, ...);
    command-line options override them."""

    csv_path: Path | None = Field(None, description="Controller export to replay; unset: the synthetic fleet.")
    csv_timezone: str = Field("UTC", description="Zone of naive time stamps in the export (IANA name).")
    start_time: datetime | None = Field(
        None,
        description="First time stamp when the export has no time column, and start of the synthetic feed; unset: now.",
    )
    backwards_tolerance_s: BackwardsToleranceS = 0.0
    robots: int = Field(
        5,
        ge=1,
        # Each robot of the fleet is made before the first reading, ~2 KB (ten million once ate 22 GB): ROBOTS and
        # MAX_ROBOTS of 10^12 stopped the producer with a MemoryError traceback. The load runs stream 20,000.
        le=100_000,
        description="Robots of the synthetic fleet (at most 100,000).",
    )
    spread_robots: bool = Field(
        False,
        description="Synthetic fleet: each robot reads at a phase of its own, the fleet spread evenly over a tick "
        "(as controllers that are not in step), instead of every robot at the tick's start; sent at those times.",
    )
    spread_slice_s: float = Field(
        0.1,
        ge=0,
        description="With SPREAD_ROBOTS: the readings due within one slice of this many seconds are sent together "
        "(every consumer wakes once per slice, not once per row); 0: each at its own time.",
    )
    seed: int = Field(
        42, ge=0, description="Seed of the synthetic fleet and of injected faults (0 or more: numpy's rule)."
    )
    faults: bool = Field(False, description="Inject one fault of each kind (per FAULT_PERIOD_S of feed per robot).")
    fault_period_s: float = Field(
        7200.0,
        ge=60,
        le=LONGEST_AHEAD_S,  # 1e300: the fault plan's end was past the calendar, an OverflowError traceback
        description="Synthetic fleet: feed seconds in which each robot gets one fault of each kind (at most a "
        "century).",
    )
    labels_out: Path | None = Field(None, description="CSV file for the labels of injected faults.")
    wear_robots: int = Field(
        0, ge=0, description="Synthetic fleet: robots with a wearing axis; > 0 also adds stoppages and program changes."
    )
    wear_labels_out: Path | None = Field(None, description="CSV file for the wear labels (true crossing times).")
    replay_speed: float | None = Field(
        None, gt=0, description="Replay the feed's own time stamps this many times faster."
    )
    max_speed: bool = Field(False, description="No pacing at all (backfill, load tests).")
    catch_up: bool = Field(False, description="Send late ticks at once to make up lost time (bursts).")
    loop: bool = Field(False, description="Replay the export again and again, time stamps shifted forward.")
    start_row: int = Field(0, ge=0, description="Data rows of the export (or readings of the fleet) to skip.")
    limit: int | None = Field(None, ge=1, description="Rows per pass of the export, or readings of the fleet.")
    axes_from_db: bool = Field(True, description="Take the axis list from the axes_dim table when readable.")
    max_in_flight: int = Field(20_000, ge=1, description="Messages sent but not yet confirmed, at most.")
    producer_metrics_port: int | None = Field(
        9101, ge=0, le=65535, description="Port of /metrics, /livez and /readyz; 0 or empty: none."
    )
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="On stop, how long to wait for the broker to confirm what was sent."
    )

    @field_validator(
        "csv_path",
        "labels_out",
        "wear_labels_out",
        "replay_speed",
        "limit",
        "start_time",
        "producer_metrics_port",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # docker compose passes CSV_PATH="" when the variable is unset.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _fleet_the_services_take(self) -> ProducerSettings:
        # Checked before the fleet is made: ten million robots once ate 22 GB building their programs, and the
        # services would refuse every robot past MAX_ROBOTS anyway; worn robots are robots of the fleet.
        if self.robots > self.max_robots:
            raise ValueError(
                f"ROBOTS ({self.robots}) is more than MAX_ROBOTS ({self.max_robots}), the robots a service takes on: "
                "raise MAX_ROBOTS, for every service, to stream a bigger fleet"
            )
        if self.wear_robots > self.robots:
            raise ValueError(f"WEAR_ROBOTS ({self.wear_robots}) is more than the fleet's ROBOTS ({self.robots})")
        return self

    @model_validator(mode="after")
    def _stop_outlasts_the_confirmations(self) -> ProducerSettings:
        # A producer stopped by force before SHUTDOWN_TIMEOUT_S has passed never reaches the end of that wait: the
        # shorter of the two would decide, whatever the longer says.
        if self.stop_timeout_s <= self.shutdown_timeout_s:
            raise ValueError(
                f"STOP_TIMEOUT_S ({self.stop_timeout_s:g} s) must be more than SHUTDOWN_TIMEOUT_S "
                f"({self.shutdown_timeout_s:g} s): the producer would be stopped by force while it still waits for "
                "the broker's confirmations; keep STOP_TIMEOUT_S at least SHUTDOWN_TIMEOUT_S + 10 s"
            )
        return self

    @field_validator("csv_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return value
