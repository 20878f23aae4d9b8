"""The project's own exceptions, in one place."""


class AxiswatchError(Exception):
    """Base class of every error this project raises on purpose."""


class SchemaError(AxiswatchError, ValueError):
    """A message on the wire that this version cannot read (bad JSON, wrong shape, unknown version)."""


class ConfigurationError(AxiswatchError):
    """A setting that cannot work, found at start-up."""


class ServiceUnavailable(AxiswatchError):
    """Kafka or the database did not answer within the allowed retries."""


class CommitFailed(AxiswatchError):
    """The bus refused an offset commit (on Kafka, e.g. after a rebalance moved the partitions away): the
    messages will be delivered again, to this consumer or the partitions' new owner."""


class CsvFormatError(AxiswatchError, ValueError):
    """A controller export whose header cannot be used at all (no header, no axis column, a duplicate
    column). Bad data rows are not errors: they go to the dead letters and the feed goes on."""
