"""Absurd sign-in links to the dashboard, followed by the real curl as a browser would: the dashboard's own
server (tornado, through Bokeh) with its users in a real PostgreSQL. A `next` the page may not go to, or one
that cannot be a Location header, sends the user to the dashboard's start; none answers 500."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.store.db import make_engine
from common.store.users import add_user
from consumer_db.migrate import migrate
from dashboard.settings import DashboardSettings
from tests.conftest import service_missing
from tests.dashboard_support import ServerThread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def sign_in(base: str, jar: Path, following: str) -> tuple[str, str]:
    """The status line and Location of a sign-in by curl through the login link ``?next=following``, its
    XSRF cookie taken from the login page first, as a browser does."""
    subprocess.run(["curl", "-s", "-c", str(jar), "-o", "/dev/null", f"{base}/login"], check=True, timeout=60)
    xsrf = next(line.split("\t")[-1] for line in jar.read_text().splitlines() if "\t_xsrf\t" in line)
    fields = {"name": "otto", "password": "otto-password", "_xsrf": xsrf}
    answer = subprocess.run(
        ["curl", "-s", "-b", str(jar), "-D", "-", "-o", "/dev/null"]
        + [arg for name, value in fields.items() for arg in ("--data-urlencode", f"{name}={value}")]
        + [f"{base}/login?{urllib.parse.urlencode({'next': following})}"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.splitlines()
    location = next((line.split(":", 1)[1].strip() for line in answer if line.lower().startswith("location:")), "")
    return answer[0].strip(), location


def test_a_sign_in_link_with_control_characters_goes_to_the_start_not_a_500(pg_url, tmp_path):
    """Before: a `next` holding CR, LF or DEL passed as a path of this server, and tornado refused it as a
    Location header: the sign-in answered 500. Now a `next` of anything but printable characters is the start."""
    if shutil.which("curl") is None:
        service_missing("no curl")
    engine = make_engine(pg_url, log_version=False)
    migrate(engine)
    with engine.begin() as conn:
        add_user(conn, "otto", "operator", "otto-password", datetime.now(UTC))
    settings = DashboardSettings(_env_file=None, bus="memory", database_url=pg_url)
    try:
        with ServerThread(settings, engine=engine) as server:
            base = server.url.rstrip("/")
            found = {following: sign_in(base, tmp_path / "jar", following) for following in (
                "/\r\nSet-Cookie: x=1", "/\x7f", "/\x00", "/\t/evil.example", "/\u2028", "//evil.example", "/?robot=r7",
            )}  # fmt: skip
    finally:
        engine.dispose()
    assert found == {
        "/\r\nSet-Cookie: x=1": ("HTTP/1.1 302 Found", "/"),
        "/\x7f": ("HTTP/1.1 302 Found", "/"),
        "/\x00": ("HTTP/1.1 302 Found", "/"),
        "/\t/evil.example": ("HTTP/1.1 302 Found", "/"),
        "/\u2028": ("HTTP/1.1 302 Found", "/"),
        "//evil.example": ("HTTP/1.1 302 Found", "/"),
        "/?robot=r7": ("HTTP/1.1 302 Found", "/?robot=r7"),
    }
