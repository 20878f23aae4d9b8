"""consumer_db's alert upsert on PostgreSQL agrees with ``Alert.merged_with`` (as on SQLite)."""

import pytest
from hypothesis import HealthCheck, given, settings

from common.store.db import make_engine
from consumer_db.migrate import migrate
from tests.unit.test_alert_merge import check_sql_agrees_with_merged_with, versions

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(pg_url):
    engine = make_engine(pg_url, log_version=False)
    migrate(engine)
    yield engine
    engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=versions)
def test_the_postgres_upsert_agrees_with_merged_with(engine, history):
    check_sql_agrees_with_merged_with(engine, history)
