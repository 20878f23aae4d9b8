"""consumer_alerts' own exceptions."""

from common.errors import AxiswatchError


class ModelFileError(AxiswatchError, ValueError):
    """A model file that cannot be used: not JSON, another format or version, a missing field."""


class TrainingError(AxiswatchError, ValueError):
    """Training data that cannot give a model (no active samples on any axis, an empty span)."""
