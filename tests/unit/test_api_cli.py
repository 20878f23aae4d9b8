"""``python -m api add-user`` and ``issue-token``: the password from API_USER_PASSWORD (never an argument),
the token printed once and good for the days asked, errors said on stderr with exit code 1."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from api import users
from common.store import users as accounts
from common.store.tables import api_audit, api_tokens, api_users
from tests.phrase_fixture import migrated_sqlite  # noqa: F401 - a fixture

REPO_ENV_KEEP = ("PATH", "HOME", "LANG")


def run(
    args: list[str],
    sqlite_url: str,
    tmp_path,
    password: str | None = None,
    python: tuple[str, ...] = ("-m", "api"),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    env = {k: os.environ[k] for k in REPO_ENV_KEEP if k in os.environ} | {"DATABASE_URL": sqlite_url} | (env or {})
    if password is not None:
        env["API_USER_PASSWORD"] = password
    # A session of its own: no controlling terminal, so a password prompt reads the empty stdin and fails at
    # once rather than waiting. The timeout is then only a ceiling for a runaway command: one takes about a
    # second of CPU, which a loaded two-core machine (load 30) stretches to a minute.
    return subprocess.run(
        [sys.executable, *python, *args], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def test_add_user_then_issue_token_gives_a_token_of_that_user(migrated_sqlite, sqlite_url, tmp_path):  # noqa: F811
    added = run(["add-user", "otto", "--role", "operator"], sqlite_url, tmp_path, password="s3cret pass")
    assert added.returncode == 0, added.stderr
    assert "s3cret" not in added.stdout + added.stderr
    issued = run(["issue-token", "otto", "--days", "3"], sqlite_url, tmp_path)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    now = datetime.now(UTC)
    with migrated_sqlite.connect() as conn:
        assert users.user_of_token(conn, token, now) == accounts.User("otto", "operator")
        assert users.user_of_token(conn, token, now + timedelta(days=3, minutes=1)) is None
        assert accounts.check_password(conn, "otto", "s3cret pass")
        assert conn.execute(select(api_tokens.c.token_hash)).scalars().all() == [users.hash_token(token)]
        audit = conn.execute(select(api_audit.c.user_name, api_audit.c.action, api_audit.c.event_id)).all()
        assert [tuple(a) for a in audit] == [("(command line)", "add_user", "user:otto")]
    revoked = run(["revoke-tokens", "otto"], sqlite_url, tmp_path)
    assert revoked.returncode == 0 and "1 token(s)" in revoked.stdout, revoked.stderr
    with migrated_sqlite.connect() as conn:
        assert users.user_of_token(conn, token, datetime.now(UTC)) is None


def test_errors_are_said_and_change_nothing(migrated_sqlite, sqlite_url, tmp_path):  # noqa: F811
    assert run(["add-user", "ada", "--role", "admin"], sqlite_url, tmp_path, password="pw").returncode == 0
    again = run(["add-user", "ada", "--role", "viewer"], sqlite_url, tmp_path, password="pw2")
    assert again.returncode == 1 and "exists already" in again.stderr
    unknown = run(["issue-token", "nobody"], sqlite_url, tmp_path)
    assert unknown.returncode == 1 and "no user" in unknown.stderr
    no_prompt = run(["add-user", "bo", "--role", "viewer"], sqlite_url, tmp_path)  # no password, no terminal
    assert no_prompt.returncode != 0
    with migrated_sqlite.connect() as conn:
        assert conn.execute(select(api_users.c.name, api_users.c.role)).all() == [("ada", "admin")]
        assert conn.execute(select(api_tokens)).all() == []


def test_a_token_of_more_than_a_century_is_refused_and_none_is_issued(migrated_sqlite, sqlite_url, tmp_path):  # noqa: F811
    # 3,000,000 days put the expiry past the year 9999: an OverflowError traceback; 10^12 overflowed timedelta.
    assert run(["add-user", "ada", "--role", "admin"], sqlite_url, tmp_path, password="pw").returncode == 0
    for days in ("3000000", "1000000000000"):
        asked = run(["issue-token", "ada", "--days", days], sqlite_url, tmp_path)
        assert asked.returncode == 1 and "--days must be from 1 to 36,500" in asked.stderr, asked.stderr
        assert "Traceback" not in asked.stderr
        by_setting = run(["issue-token", "ada"], sqlite_url, tmp_path, env={"API_TOKEN_DAYS": days})
        assert by_setting.returncode == 1 and "api_token_days" in by_setting.stderr, by_setting.stderr
        assert "Traceback" not in by_setting.stderr
    assert run(["issue-token", "ada", "--days", "36500"], sqlite_url, tmp_path).returncode == 0
    with migrated_sqlite.connect() as conn:
        assert len(conn.execute(select(api_tokens)).all()) == 1


def test_a_database_not_migrated_or_away_is_said_in_one_line(tmp_path):
    # Both were a traceback that showed the SQL statement and its parameters.
    bare = run(["add-user", "ada", "--role", "admin"], f"sqlite:///{tmp_path / 'bare.sqlite'}", tmp_path, password="pw")
    assert bare.returncode == 1 and "no axiswatch schema yet" in bare.stderr and "consumer_db migrate" in bare.stderr
    away = run(["revoke-tokens", "ada"], f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite'}", tmp_path)
    assert away.returncode == 1 and "the database does not answer" in away.stderr
    for done in (bare, away):
        assert "Traceback" not in done.stderr and "SELECT" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_a_user_command_loads_neither_the_web_server_nor_kafkas_client(migrated_sqlite, sqlite_url, tmp_path):  # noqa: F811
    show_modules = "import sys; from api.cli import main; code = main(sys.argv[1:]); print(*sys.modules); exit(code)"
    done = run(["issue-token", "nobody"], sqlite_url, tmp_path, python=("-c", show_modules))
    assert done.returncode == 1 and "no user" in done.stderr  # it did go to the database
    modules = set(done.stdout.split())
    assert "sqlalchemy" in modules and modules.isdisjoint({"aiohttp", "aiokafka", "api.service"}), modules
