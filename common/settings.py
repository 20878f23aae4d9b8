"""Settings shared by every service, read from the environment and a git-ignored `.env`.

Each service subclasses :class:`CommonSettings` and builds it once in its ``main()``; nothing reads the
environment at import time.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Self

from pydantic import AwareDatetime, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The shared defaults live in common.defaults (no pydantic there); named here too, where most modules look.
from common.defaults import (
    DEFAULT_AXES,
    EARLIEST,
    LONGEST_AHEAD_S,
    MAX_ABS_AMPS,
    MAX_AXIS,
    MAX_FUTURE_S,
    MAX_ROBOTS,
    MAX_TICK_S,
    ROBOT_ID_PATTERN,
    STOP_TIMEOUT_S,
    TICK_SECONDS,
)
from common.defaults import GAP_THRESHOLD_S as GAP_THRESHOLD_S

if TYPE_CHECKING:
    from common.wire.schemas import ReadingPolicy


# Rules a setting shares with the options that override it (common.csvio.controller_csv.CsvOptions checks the
# ingest's --tick-seconds and --backwards-tolerance by them): declared once, here.
TickSeconds = Annotated[float, Field(gt=0, le=MAX_TICK_S)]
BackwardsToleranceS = Annotated[
    float,
    Field(
        ge=0,
        allow_inf_nan=True,  # the one infinite setting: any step back is taken (as 9,999 years are)
        description="How far a controller export's time may step back before its row is a dead letter.",
    ),
]


def parse_axes(value: object) -> list[int]:
    """Accept ``"1-14"``, ``"1,2,5-8"``, a list of ints, or a JSON list."""
    if isinstance(value, (list, tuple)):
        return _in_range({int(v) for v in value}, value)
    text = str(value).strip().strip("[]")
    axes: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "-" in part:
            low, high = (int(x) for x in part.split("-", 1))
            if low > high:
                raise ValueError(f"axis range {part!r} runs backwards")
            axes.update(range(low, high + 1))
        else:
            axes.add(int(part))
    return _in_range(axes, value)


def _in_range(axes: set[int], value: object) -> list[int]:
    if not axes or min(axes) < 1 or max(axes) > MAX_AXIS:
        raise ValueError(f"axes must be integers from 1 to {MAX_AXIS}, got {value!r}")
    return sorted(axes)


class CommonSettings(BaseSettings):
    """Connection, topic and feed settings every service needs. Environment names are the field names
    in upper case (``DATABASE_URL``, ``KAFKA_BOOTSTRAP_SERVERS``, ...)."""

    # No setting is infinite or NaN: a bound (gt=0) let "inf" through, and it then broke arithmetic far from the
    # setting (a dashboard sign-in's cookie age, a sleep, a timedelta) with an OverflowError at run time.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", allow_inf_nan=False)

    database_url: SecretStr = Field(
        SecretStr("sqlite:///axiswatch.sqlite"),
        description="SQLAlchemy URL of the database (PostgreSQL, or SQLite for the embedded demo). "
        "Add ?sslmode=require for a managed PostgreSQL.",
    )
    bus: Literal["kafka", "memory"] = Field(
        "kafka", description="Message bus: a Kafka cluster, or the in-process bus of the embedded demo."
    )
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle that signs the brokers' certificates.")
    readings_topic: str = "axiswatch.readings"
    alerts_topic: str = "axiswatch.alerts"
    dead_letter_topic: str = "axiswatch.dead-letters"
    health_topic: str = Field(
        "axiswatch.health", description="Topic of health events: work cycles' indicators and maintenance forecasts."
    )
    maintenance_topic: str = Field(
        "axiswatch.maintenance",
        description="Topic of the maintenance log: what was done to which joint (docs/maintenance.md).",
    )
    topic_partitions: int = Field(
        6,
        ge=1,
        # Kafka creates at most 10,000 records (a topic and each of its partitions) in one request, and consumer_db
        # asks for its five topics in one: five of 2,000 were refused (PolicyViolationError), of 1,990 made. Past
        # 2^31 the client could not even send the number (a ValueError traceback).
        le=1000,
        description="Partitions of topics created at start-up (at most 1,000).",
    )
    stop_timeout_s: float = Field(
        STOP_TIMEOUT_S,
        gt=0,
        description="After SIGINT/SIGTERM, how long a service may take to stop by itself before it is stopped by "
        "force (exit 1); a second signal forces it at once. Above the producer's SHUTDOWN_TIMEOUT_S (the producer "
        "refuses it at or below), by 10 s or more.",
    )
    topic_replication_factor: int = Field(
        1,
        ge=1,
        # Kafka's protocol carries it in 16 bits: past them, a ValueError traceback before the broker was asked; up to
        # them, a factor above the brokers there are is refused by Kafka, which says so.
        le=32_767,
        description="Copies of each topic created at start-up; 3 on a production cluster (docs/kafka.md); at most "
        "32,767.",
    )
    topic_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of topics created at start-up (2 with 3 copies), at most "
        "TOPIC_REPLICATION_FACTOR; unset: the broker's default.",
    )
    robot_id: str = Field("RMBR4-2", description="Robot id used when a feed does not name one.")
    axes: Annotated[list[int], NoDecode] = Field(
        list(DEFAULT_AXES), description="Axis list (schema lock), e.g. 1-14 or 1,2,3; axes 1 to 62."
    )
    tick_seconds: TickSeconds = Field(
        TICK_SECONDS, description="Seconds between two readings of one robot (at most a day)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # What a plausible reading is (common.wire.schemas.ReadingPolicy, where each rule is): the same for every service.
    reading_max_abs_amps: float = Field(
        MAX_ABS_AMPS,
        gt=0,
        le=1e6,  # readings_fact's CHECK (common.store.tables.AMPS_BOUND)
        description="Largest |current| in A accepted; beyond is a dead letter.",
    )
    reading_max_future_s: float = Field(
        MAX_FUTURE_S,
        ge=0,
        le=LONGEST_AHEAD_S,
        description="How far ahead of the receiver's clock a reading's time may be (a feed replayed faster "
        "than real time runs ahead); at most a century.",
    )
    reading_earliest: AwareDatetime = Field(
        EARLIEST, description="Readings dated before are dead letters (old offline data is fine)."
    )
    robot_id_pattern: str = Field(ROBOT_ID_PATTERN, description="Regular expression every robot id must match whole.")
    robot_ids_allowed: Annotated[list[str], NoDecode] = Field(
        [], description="Comma-separated allow-list of robot ids; empty: any id that matches the pattern."
    )
    max_robots: int = Field(
        MAX_ROBOTS, ge=1, description="Robots a service takes on at most; later new ids are refused."
    )

    @model_validator(mode="after")
    def _insync_copies_the_topics_have(self) -> Self:
        # Kafka counts min.insync.replicas only up to a partition's copies (its effective minimum is the smaller of
        # the two): with 2 asked of topics of 1 copy, every write with acks=all was confirmed by the one copy, and
        # the production layout a user set was silently not the one they got (docs/kafka.md).
        wanted, copies = self.topic_min_insync_replicas, self.topic_replication_factor
        if wanted is not None and wanted > copies:
            raise ValueError(
                f"TOPIC_MIN_INSYNC_REPLICAS ({wanted}) is more than TOPIC_REPLICATION_FACTOR ({copies}): Kafka counts "
                f"min.insync.replicas only up to a topic's copies, so a write would count once {copies} "
                f"cop{'y has' if copies == 1 else 'ies have'} it; set TOPIC_REPLICATION_FACTOR to "
                f"{wanted} or more (a cluster of that many brokers), or TOPIC_MIN_INSYNC_REPLICAS to at most {copies}"
            )
        return self

    @field_validator("axes", mode="before")
    @classmethod
    def _parse_axes(cls, value: object) -> list[int]:
        return parse_axes(value)

    @field_validator("robot_ids_allowed", mode="before")
    @classmethod
    def _parse_robot_ids(cls, value: object) -> list[str]:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return list(value)  # type: ignore[call-overload]

    def with_options(self, **options: object) -> Self:
        """These settings with the command-line options given (None: not given), checked by the settings' own
        rules: ``model_copy(update=...)`` checks nothing, and let ``--batch-ms`` past SINK_BATCH_MS's bound."""
        given = {name: value for name, value in options.items() if value is not None}
        return self.model_validate({**self.model_dump(), **given}) if given else self

    def reading_policy(self) -> ReadingPolicy:
        """The policy these settings describe; the same object for the same settings (cheap per message)."""
        return _policy(
            self.reading_max_abs_amps,
            self.reading_max_future_s,
            self.reading_earliest,
            self.robot_id_pattern,
            frozenset(self.robot_ids_allowed),
            self.max_robots,
        )


@functools.lru_cache(maxsize=16)
def _policy(
    max_abs_amps: float,
    max_future_s: float,
    earliest: datetime,
    pattern: str,
    allowed: frozenset[str],
    max_robots: int,
) -> ReadingPolicy:
    # Imported here: the wire models are for the services that read readings, not for every command that
    # reads its settings (a query).
    from common.wire.schemas import ReadingPolicy

    return ReadingPolicy(
        max_abs_amps=max_abs_amps,
        max_future_s=max_future_s,
        earliest=earliest,
        robot_id_pattern=pattern,
        robot_ids_allowed=allowed,
        max_robots=max_robots,
    )
