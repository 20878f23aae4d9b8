"""The HTTP API: alerts (filtered, paged), acknowledge with an outcome, robots and their latest readings."""
