"""consumer_db's settings: the common ones plus batching, retries, exports and data health."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from common.defaults import CENTURY_DAYS, LONGEST_POLL_MS
from common.settings import GAP_THRESHOLD_S, BackwardsToleranceS, CommonSettings


class ConsumerDbSettings(CommonSettings):
    """Environment names are the field names in upper case (``SINK_BATCH_SIZE``, ...)."""

    sink_group_id: str = Field("axiswatch-consumer-db", description="Kafka consumer group of the sink.")
    sink_batch_size: int = Field(
        5000, ge=1, description="Messages written in one transaction at most (readings, alerts, dead letters)."
    )
    sink_batch_ms: int = Field(
        50,
        ge=1,
        le=LONGEST_POLL_MS,  # the loop turns once a batch: at 10^12 a trickle of readings was never written
        description="Longest wait in ms from a batch's first message to its write, when traffic is low "
        "(50 ms keeps p99 reading-to-commit latency at 239 ms at 100 readings/s; see docs/benchmarks.md); "
        "at most 10,000.",
    )
    sink_copy_min_rows: int = Field(
        1000,
        ge=1,
        description="PostgreSQL: batches of at least this many rows go through COPY into a "
        "staging table; smaller ones through a multi-row INSERT.",
    )
    sink_retry_initial_s: float = Field(0.5, gt=0, description="First wait before retrying a failed database write.")
    sink_retry_max_s: float = Field(
        10.0,
        gt=0,
        description="Longest wait between retries (the wait doubles): how long the sink may take to notice "
        "the database is back.",
    )
    migrate_on_start: bool = Field(True, description="Apply pending migrations when the service starts.")
    migration_database_url: SecretStr | None = Field(
        None,
        description="URL the migrations run with: the schema's owner, while DATABASE_URL is the services' "
        "role without DDL rights (least privilege). Unset: DATABASE_URL.",
    )
    sink_metrics_port: int | None = Field(
        9102, ge=0, le=65535, description="Port of /metrics, /livez and /readyz; 0 or empty: none."
    )
    axes_refresh_s: float = Field(60.0, gt=0, description="How long the sink trusts its copy of axes_dim.")
    ingest_chunk_rows: int = Field(5000, ge=1, description="Readings per transaction in the bulk CSV ingest.")
    csv_timezone: str = Field("UTC", description="Zone of a CSV's naive timestamps (ISO ones with Z are UTC).")
    backwards_tolerance_s: BackwardsToleranceS = 0.0
    export_page_size: int = Field(100_000, ge=1, description="Readings rows per CSV page of the full export.")
    export_sample_rows: int = Field(1000, ge=1, description="Readings (wide rows) in the XLSX sample sheet.")

    raw_retention_days: int | None = Field(
        None,
        ge=1,
        # the cut-off is a date: 10^12 days failed the maintenance with an OverflowError traceback every time
        le=CENTURY_DAYS,
        description="PostgreSQL: raw readings are kept this many whole UTC days before today (and today); older "
        "day partitions are dropped after their minutes are folded into the rollup, which stays. Empty: forever; "
        "at most 36,500 (a century).",
    )
    partitions_ahead_days: int = Field(
        7,
        ge=0,
        # Each is a table with its index (~8 ms to make: a year ahead 1.5 s, ten years 30 s and 3,284 tables that
        # every unpruned query plans over); 10^12 failed the maintenance with an OverflowError traceback every
        # time. A batch makes its own day's partition anyway.
        le=366,
        description="PostgreSQL: day partitions of the readings made ahead of today (at most 366).",
    )
    partition_maintenance_s: float = Field(
        3600.0, gt=0, description="How often the partitions are made ahead and the retention applied."
    )

    @field_validator("migration_database_url", "sink_metrics_port", "raw_retention_days", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    gap_threshold_s: float = Field(
        GAP_THRESHOLD_S, gt=0, description="Data health: a step between readings longer than this is a gap."
    )
