"""The notifier's rules: which changes count, a channel's filters, quiet hours (across midnight, time zones,
daylight saving), reminders, and the channel file (docs/notifier.example.yaml must load)."""

from datetime import UTC, datetime, timedelta

import pytest

from common.wire.schemas import MAINTENANCE_DUE_DETECTOR, Alert, AlertState, Severity
from notifier.config import ChannelFile, QuietHours, load_channels
from notifier.rules import changes, due_at, merge, quiet_until, reminder_number, wants_change
from tests.conftest import REPO

OPENED = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
MAINTENANCE = ChannelFile().maintenance_detectors  # the default: the health forecast's alert


def alert(**change) -> Alert:
    values = {
        "event_id": "r1:2:zscore:2026-12-05T08:00:00.000Z",
        "robot_id": "r1",
        "axis": 2,
        "detector": "zscore",
        "severity": Severity.ALERT,
        "state": AlertState.OPEN,
        "opened_at": OPENED,
        "peak_amps": 10.0,
    }
    return Alert(**(values | change))


def channel(**rules):
    data = {"name": "c", "kind": "webhook", "url": "http://x", "secret_env": "S"} | rules
    return ChannelFile.model_validate({"channels": [data]}).channels[0]


def test_first_sight_is_an_opening_whatever_its_severity_and_maintenance_detectors_say_maintenance_due():
    assert changes(None, alert(), MAINTENANCE) == ["open"]
    assert changes(None, alert(severity=Severity.ERROR), MAINTENANCE) == ["open"]
    assert changes(None, alert(detector=MAINTENANCE_DUE_DETECTOR), MAINTENANCE) == ["maintenance_due"]
    # an event first seen at its close: both, so a channel that wants either hears of it
    assert changes(None, alert(state=AlertState.CLOSED, closed_at=OPENED), MAINTENANCE) == ["open", "close"]


def test_escalate_and_close_are_changes_a_growing_peak_and_an_acknowledgement_are_not():
    held = alert()
    assert changes(held, merge(held, alert(severity=Severity.ERROR)), MAINTENANCE) == ["escalate"]
    error = merge(held, alert(severity=Severity.ERROR))
    assert changes(error, merge(error, alert(severity=Severity.ERROR, peak_amps=30.0)), MAINTENANCE) == []
    acked = alert(acknowledged_by="ann", acknowledged_at=OPENED)
    assert changes(held, merge(held, acked), MAINTENANCE) == []
    closed = alert(state=AlertState.CLOSED, closed_at=OPENED + timedelta(minutes=5))
    assert changes(held, merge(held, closed), MAINTENANCE) == ["close"]
    # severity never goes down (Alert.merged_with): an ALERT message after the escalation changes nothing
    assert changes(error, merge(error, alert()), MAINTENANCE) == []


def test_a_closed_event_stays_closed_when_an_older_open_message_is_read_again():
    closed = merge(alert(), alert(state=AlertState.CLOSED, closed_at=OPENED + timedelta(minutes=5)))
    again = merge(closed, alert())
    assert again.state == AlertState.CLOSED and again.closed_at == closed.closed_at
    assert changes(closed, again, MAINTENANCE) == []


def test_a_channel_filters_by_change_severity_robot_and_axis():
    assert wants_change(channel(), "open", alert())
    assert not wants_change(channel(), "close", alert())  # close only when asked
    assert wants_change(channel(changes=["close"]), "close", alert())
    errors_only = channel(min_severity="ERROR")
    assert not wants_change(errors_only, "open", alert())
    assert wants_change(errors_only, "escalate", alert(severity=Severity.ERROR))
    robots = channel(robots=["RMBR4-*", "press-7"])
    assert wants_change(robots, "open", alert(robot_id="RMBR4-2"))
    assert wants_change(robots, "open", alert(robot_id="press-7"))
    assert not wants_change(robots, "open", alert(robot_id="press-70"))
    axes = channel(axes="1-3")
    assert axes.axes == [1, 2, 3]
    assert wants_change(axes, "open", alert(axis=3)) and not wants_change(axes, "open", alert(axis=4))


NIGHT = QuietHours(start="22:00", end="06:00", timezone="Europe/Berlin")


@pytest.mark.parametrize(
    ("now", "until"),
    [
        # winter: Berlin is UTC+1
        (datetime(2026, 12, 5, 20, 59, tzinfo=UTC), None),  # 21:59 local
        (datetime(2026, 12, 5, 21, 0, tzinfo=UTC), datetime(2026, 12, 6, 5, 0, tzinfo=UTC)),  # 22:00 local
        (datetime(2026, 12, 5, 22, 30, tzinfo=UTC), datetime(2026, 12, 6, 5, 0, tzinfo=UTC)),  # 23:30, past midnight
        (datetime(2026, 12, 6, 4, 59, tzinfo=UTC), datetime(2026, 12, 6, 5, 0, tzinfo=UTC)),  # 05:59 local
        (datetime(2026, 12, 6, 5, 0, tzinfo=UTC), None),  # 06:00 local: over
        # summer: UTC+2, the same local night is an hour earlier in UTC
        (datetime(2026, 7, 1, 20, 30, tzinfo=UTC), datetime(2026, 7, 2, 4, 0, tzinfo=UTC)),
        # the night clocks go forward (2026-03-29): it starts at 22:00 CET and ends at 06:00 CEST
        (datetime(2026, 3, 28, 23, 0, tzinfo=UTC), datetime(2026, 3, 29, 4, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_across_midnight_in_the_plants_time_zone(now, until):
    assert quiet_until(NIGHT, now) == until


def test_quiet_hours_within_a_day_and_in_another_zone():
    lunch = QuietHours(start="12:00", end="13:00", timezone="America/New_York")  # UTC-5 in December
    assert quiet_until(lunch, datetime(2026, 12, 5, 16, 59, tzinfo=UTC)) is None
    assert quiet_until(lunch, datetime(2026, 12, 5, 17, 30, tzinfo=UTC)) == datetime(2026, 12, 5, 18, 0, tzinfo=UTC)
    assert quiet_until(lunch, datetime(2026, 12, 5, 18, 0, tzinfo=UTC)) is None


def test_a_notice_raised_in_quiet_hours_waits_for_their_end():
    quiet = channel(quiet_hours={"start": "22:00", "end": "06:00", "timezone": "Europe/Berlin"})
    at_night = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)
    assert due_at(quiet, at_night) == datetime(2026, 12, 6, 5, 0, tzinfo=UTC)
    assert due_at(channel(), at_night) == at_night


def test_quiet_hours_refuse_an_unquoted_yaml_time(tmp_path):
    path = tmp_path / "channels.yaml"
    path.write_text(
        "channels:\n  - {name: hook, kind: webhook, url: 'https://x', secret_env: S,\n"
        "      quiet_hours: {start: 22:00, end: '06:00'}}\n"
    )  # YAML 1.1 reads 22:00 as 1320
    with pytest.raises(ValueError, match="in quotes"):
        load_channels(path, env_file=None)


def test_quiet_hours_refuse_an_unknown_zone_and_an_empty_span():
    with pytest.raises(ValueError, match="unknown time zone"):
        QuietHours(start="22:00", end="06:00", timezone="Europe/Atlantis")
    with pytest.raises(ValueError, match="same time"):
        QuietHours(start="22:00", end="22:00")


def test_reminders_count_whole_intervals_from_the_first_notice_and_skip_quiet_hours():
    every_30 = channel(remind_every_min=30)
    first = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    assert reminder_number(every_30, first, first + timedelta(minutes=29)) is None
    assert reminder_number(every_30, first, first + timedelta(minutes=30)) == 1
    assert reminder_number(every_30, first, first + timedelta(minutes=95)) == 3  # down for an hour: only the 3rd
    assert reminder_number(channel(), first, first + timedelta(days=1)) is None  # no reminders asked
    quiet = channel(remind_every_min=30, quiet_hours={"start": "22:00", "end": "06:00", "timezone": "UTC"})
    assert reminder_number(quiet, first, datetime(2026, 12, 5, 23, 0, tzinfo=UTC)) is None
    assert reminder_number(quiet, first, datetime(2026, 12, 6, 6, 0, tzinfo=UTC)) == 44


def test_the_example_file_loads_with_its_secrets_from_the_environment(monkeypatch, tmp_path):
    for name in ("SMTP_PASSWORD", "WEBHOOK_SECRET"):
        monkeypatch.setenv(name, f"{name.lower()}-value")
    (tmp_path / ".env").write_text("CHAT_URLS=json://localhost/x\n")  # .env works as well
    config = load_channels(REPO / "docs" / "notifier.example.yaml", env_file=tmp_path / ".env")
    mail, hook, chat = config.channels
    assert mail.password.get_secret_value() == "smtp_password-value"
    assert hook.secret.get_secret_value() == "webhook_secret-value"
    assert chat.urls.get_secret_value() == "json://localhost/x"
    assert chat.axes == [1, 2, 3, 4, 5, 6] and chat.min_severity == Severity.ERROR
    assert "smtp_password-value" not in repr(config) and "smtp_password-value" not in config.model_dump_json()


def test_a_secret_named_but_not_set_fails_at_start(monkeypatch, tmp_path):
    monkeypatch.delenv("HOOK_SECRET_NOT_SET", raising=False)
    path = tmp_path / "channels.toml"
    path.write_text(
        '[[channels]]\nname = "hook"\nkind = "webhook"\nurl = "https://x"\nsecret_env = "HOOK_SECRET_NOT_SET"\n'
    )
    with pytest.raises(ValueError, match="HOOK_SECRET_NOT_SET, which is not set"):
        load_channels(path, env_file=None)


def test_a_typo_in_the_file_fails_with_the_field_named(tmp_path):
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n  - {name: hook, kind: webhook, url: 'https://x', secret_env: S, min_severty: ERROR}\n")
    with pytest.raises(ValueError, match="min_severty"):
        load_channels(path, env_file=None)
