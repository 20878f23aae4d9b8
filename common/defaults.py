"""The defaults several modules share, each declared once. Only plain values, no library: a command that
only checks its arguments or lists its phrases loads this module, not pydantic (common.settings)."""

DEFAULT_AXES = tuple(range(1, 15))
TICK_SECONDS = 2.0  # seconds between two readings of one robot
# consumer_alerts' stoppage (STOPPAGE_RESET_S), and the bound after which every consumer follows a robot's clock
# back from a leap ahead (common.wire.clock)
STOPPAGE_RESET_S = 600.0
GAP_THRESHOLD_S = 10.0  # data health: a longer step between two readings is a gap
