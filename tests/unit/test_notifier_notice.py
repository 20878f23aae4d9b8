"""What a notice says and how it is signed: texts from the data cannot forge a mail header, a log line or a
signature; every attempt of one delivery sends the same bytes."""

import email
import email.policy
import hashlib
import hmac
import json
from datetime import UTC, datetime

from pydantic import SecretStr

from common.wire.schemas import Alert, AlertState, Severity
from notifier.channels import EmailSender, Notice, signature
from notifier.config import ChannelFile

AT = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def notice(change="open", **fields) -> Notice:
    values = {
        "event_id": "e1",
        "robot_id": "RMBR4-2",
        "axis": 3,
        "detector": "zscore",
        "severity": Severity.ERROR,
        "state": AlertState.OPEN,
        "opened_at": AT,
        "peak_amps": 25.0,
        "threshold": 9.0,
    }
    return Notice(42, change, "mail", Alert(**(values | fields)), AT)


def email_channel():
    channel = ChannelFile.model_validate(
        {
            "channels": [
                {"name": "mail", "kind": "email", "host": "h", "sender": "a@plant.example", "to": ["b@x.example"]}
            ]
        }
    ).channels[0]
    return channel.model_copy(update={"password": SecretStr("pw")})


def test_a_hostile_robot_id_stays_on_one_line_of_the_subject_and_the_text():
    hostile = notice(
        robot_id="r1\r\nBcc: everyone@example.com\n" + "x" * 500, acknowledged_by="ann\nforged", acknowledged_at=AT
    )
    assert "\n" not in hostile.title and "\r" not in hostile.title
    assert "r1\\r\\nBcc: everyone@example.com" in hostile.title and len(hostile.title) < 400
    assert "ann\\nforged" in hostile.text
    message = EmailSender(email_channel(), 5)._message(hostile)
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["To"] == "b@x.example"
    assert parsed["Subject"] == hostile.title
    assert parsed["Message-ID"] == "<axiswatch-delivery-42@plant.example>"  # the same at every attempt


def test_the_webhook_body_is_the_same_bytes_at_every_attempt_and_the_signature_covers_them():
    first, again = notice("escalate").body(), notice("escalate").body()
    assert first == again
    payload = json.loads(first)
    assert (payload["delivery_id"], payload["change"], payload["alert"]["severity"]) == (42, "escalate", "ERROR")
    assert signature(b"s3cret", first) == "sha256=" + hmac.new(b"s3cret", first, hashlib.sha256).hexdigest()
    assert signature(b"s3cret", first) != signature(b"other", first)
    assert signature(b"s3cret", first) != signature(b"s3cret", first.replace(b"ERROR", b"ALERT"))


def test_a_reminder_says_which_one_and_that_nobody_acknowledged():
    text = notice("reminder-3").text
    assert notice("reminder-3").title.startswith("axiswatch still open, not acknowledged:")
    assert "reminder 3: nobody has acknowledged it yet" in text
