"""How a file's bad rows are told: the first few one by one, then how many more of each kind. A file of a
million bad rows once logged a million warning lines, one per row, and buried everything else in the log."""

from __future__ import annotations

import logging
import re
from collections import Counter

from common.wire.schemas import DeadLetter

ROWS_SHOWN = 20  # bad rows told one by one (the log, the producer's summary); past them, a count by kind


def kind(reason: str) -> str:
    """A reason without its particulars (values, numbers, times), to count alike rows together."""
    return re.sub(r"'[^']*'|\d[\d:.T+-]*Z?", "…", reason)


class SkippedRows:
    """Logs a file's skipped rows: the first ``ROWS_SHOWN`` one warning each, and at :meth:`close` one
    warning counting the rest by kind."""

    def __init__(self, log: logging.Logger) -> None:
        self.log, self.count, self.untold = log, 0, Counter[str]()

    def skip(self, letter: DeadLetter) -> None:
        self.count += 1
        if self.count <= ROWS_SHOWN:
            self.log.warning("%s line %s skipped: %s", letter.source, letter.line, letter.reason)
        else:
            self.untold[kind(letter.reason)] += 1

    def close(self) -> None:
        if self.untold:
            kinds = "; ".join(f"{count} x {reason}" for reason, count in self.untold.most_common())
            self.log.warning(
                "%d more row(s) skipped (%d in all, the first %d told above): %s",
                self.count - ROWS_SHOWN,
                self.count,
                ROWS_SHOWN,
                kinds,
            )
