"""The notifier's settings: the common ones plus where the channel file is and how the loop paces itself.

The channels themselves (addresses, rules) live in the one file NOTIFIER_CONFIG names; the secrets they use
(SMTP password, webhook signing secret, chat URLs with tokens) only in the environment or .env, named by that
file (docs/notifier.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from common.defaults import LONGEST_AHEAD_S, LONGEST_POLL_MS
from common.settings import CommonSettings


class NotifierSettings(CommonSettings):
    """Environment names are the field names in upper case (``NOTIFIER_CONFIG``, ...)."""

    notifier_config: Path = Field(
        Path("notifier.yaml"), description="The channel file (YAML, or TOML when it ends in .toml)."
    )
    notifier_group_id: str = Field("axiswatch-notifier", description="Kafka consumer group of the notifier.")
    notifier_poll_ms: int = Field(
        500,
        ge=10,
        le=LONGEST_POLL_MS,
        description="Longest wait in ms for new alert messages per turn (at most 10,000).",
    )
    notifier_batch_size: int = Field(500, ge=1, description="Alert messages recorded in one transaction at most.")
    notifier_reminder_check_s: float = Field(
        30.0, gt=0, description="How often the open, unacknowledged events are looked at for reminders."
    )
    notifier_max_age_s: float = Field(
        21_600.0,
        gt=0,
        le=LONGEST_AHEAD_S,  # 1e300: an OverflowError traceback at the first alerts, and again at every restart
        description="A change read more than this long after it was published is recorded but not notified "
        "(a first start on a topic with days of history; a notifier down for longer than a shift); at most a "
        "century.",
    )
    notifier_send_timeout_s: float = Field(
        15.0,
        gt=0,
        # A delivery is claimed for this long (plus a margin) so that no other sender takes it meanwhile: a notifier
        # that dies mid-send holds it that long. At 1e300 the claim's end was past the calendar (OverflowError),
        # and no notice was ever sent.
        le=3600,
        description="Longest one delivery attempt may take (at most an hour).",
    )
    notifier_db_retry_s: float = Field(
        5.0, gt=0, description="Wait before trying the database again after a failure (or a missing table)."
    )
    notifier_metrics_port: int | None = Field(
        9104, ge=0, le=65535, description="Port of /metrics, /livez and /readyz; 0 or empty: none."
    )

    @field_validator("notifier_metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
