"""The defaults several modules share, each declared once. Only plain values, no library: a command that
only checks its arguments or lists its phrases loads this module, not pydantic (common.settings)."""

from datetime import UTC, datetime

DEFAULT_AXES = tuple(range(1, 15))
TICK_SECONDS = 2.0  # seconds between two readings of one robot
MAX_TICK_S = 86_400.0  # a reading a day at the slowest: longer (infinity, 1e300) broke the clocks' arithmetic
# consumer_alerts' stoppage (STOPPAGE_RESET_S), and the bound after which every consumer follows a robot's clock
# back from a leap ahead (common.wire.clock)
STOPPAGE_RESET_S = 600.0
GAP_THRESHOLD_S = 10.0  # data health: a longer step between two readings is a gap
MAX_AXIS = 62  # the rollup keeps a robot's axes as the bits of a 64-bit integer
# The most rows a command's count (--n, "latest N rows", --page-size, ...) asks for: SQL's bigint, the largest
# LIMIT there is (past it, PostgreSQL refused the query and SQLite's driver raised). A larger count asks for all.
MAX_COUNT = 2**63 - 1
# After SIGINT/SIGTERM a service has this long to stop by itself (its loop sees the stop event, flushes, waits
# for confirmations, commits) before it is stopped by force (common.service.run_service): a wait on Kafka that
# never looks at the stop event (a send's confirmation, a checkpoint's acknowledgements, with the broker gone)
# held it for ever. Above the producer's SHUTDOWN_TIMEOUT_S (30 s) plus a client's close (10 s).
STOP_TIMEOUT_S = 60.0

# A plausible reading's defaults (common.wire.schemas.ReadingPolicy says each rule): here, so that the settings
# name them without loading the wire models, which a query command does not use.
MAX_ABS_AMPS = 1000.0
MAX_FUTURE_S = 86_400.0
# READING_MAX_FUTURE_S's largest value, a century: infinity or 1e300 stopped every service at its first reading
# (a timedelta), and the dashboard adds it to its clock, which must stay inside the calendar.
CENTURY_DAYS = 36_500  # the longest span a setting in days names (a token's life, the raw readings' retention)
LONGEST_AHEAD_S = CENTURY_DAYS * 86_400.0
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
ROBOT_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,63}"
MAX_ROBOTS = 1000
# The longest a service's loop waits on Kafka at one go (POLL_TIMEOUT_MS, NOTIFIER_POLL_MS, DASHBOARD_PUSH_MS,
# SINK_BATCH_MS): between two waits it looks at the stop signal and tells /livez it is turning. At 10^12 ms on
# a quiet topic, SIGTERM was only obeyed by force (exit 1 after STOP_TIMEOUT_S) and /livez said the loop was
# stuck after a minute (common.metrics.LIVE_WITHIN_S); 10 s is a sixth of either.
LONGEST_POLL_MS = 10_000
