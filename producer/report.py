"""What a producer run did: rows read, confirmed, rejected (and why), how fast."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from common.csvio.skipped import ROWS_SHOWN, kind
from common.wire.schemas import DeadLetter


@dataclass
class ProducerReport:
    source: str = ""
    readings: int = 0
    """Readings handed to the bus (confirmed or not)."""
    readings_confirmed: int = 0
    dead_letters_confirmed: int = 0
    unconfirmed: int = 0
    """Messages the broker had not confirmed when the run ended: NOT sent."""
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[str, int | None, str]] = field(default_factory=list)
    elapsed_s: float = 0.0
    late_ticks: int = 0
    stopped: bool = False
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    dry_run: bool = False
    """The messages were written out as JSON lines, not sent: nothing was confirmed by a broker."""

    def reject(self, letter: DeadLetter) -> None:
        self.rejected += 1
        self.reasons[kind(letter.reason)] += 1
        if len(self.examples) < ROWS_SHOWN:
            self.examples.append((letter.source, letter.line, letter.reason))

    def saw(self, ts: datetime) -> None:
        self.readings += 1
        self.first_ts = self.first_ts or ts
        self.last_ts = ts

    @property
    def rows_per_s(self) -> float:
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        delivered = "written to stdout (dry run: nothing sent)" if self.dry_run else "confirmed by the bus"
        lines = [
            f"{self.source}: {self.readings_confirmed} readings {delivered} "
            f"in {self.elapsed_s:.1f} s ({self.rows_per_s:,.0f} rows/s)"
            + (", stopped on request" if self.stopped else ""),
        ]
        if self.late_ticks:
            lines.append(f"{self.late_ticks} ticks went out late (not made up by bursting)")
        if self.unconfirmed:
            lines.append(f"NOT SENT: {self.unconfirmed} messages were not confirmed by the broker before exit")
        if not self.rejected:
            lines.append("rejected rows: none")
            return "\n".join(lines)
        where = (
            "as dead-letter lines"
            if self.dry_run
            else f"on the dead-letter topic, {self.dead_letters_confirmed} confirmed"
        )
        lines.append(f"rejected rows: {self.rejected} ({where})")
        lines += [f"  {count:>6} x {kind}" for kind, count in self.reasons.most_common()]
        lines += [f"  {source}:{line}: {reason}" for source, line, reason in self.examples]
        if self.rejected > len(self.examples):
            lines.append(f"  ... and {self.rejected - len(self.examples)} more")
        return "\n".join(lines)
