"""consumer_db's alert upsert on PostgreSQL agrees with ``Alert.merged_with`` (as on SQLite)."""

import pytest
from hypothesis import HealthCheck, given, settings

from tests.unit.test_alert_merge import check_sql_agrees_with_merged_with, versions

pytestmark = pytest.mark.integration


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=versions)
def test_the_postgres_upsert_agrees_with_merged_with(pg_engine, history):
    check_sql_agrees_with_merged_with(pg_engine, history)
