"""Consecutive batches' transactions, overlapped where that is safe.

A batch's transaction first writes its rows (on PostgreSQL a COPY: most of its time), then folds them into
the rollup, stores alert events and dead letters, and commits. The sink starts the next batch's
transaction while the previous one still runs: its rows are written meanwhile, and the rest waits for the
previous commit (``Turn.wait``). So commits, folds and alert updates still go in batch order, while the
database works on two batches at once.

While it waits, the later transaction holds its new rows' index entries. If the earlier one needs one of
them (the same reading in both batches: a time repeated across the batch boundary, a redelivery) it waits
for the later one, which waits for it: a deadlock PostgreSQL cannot see, half of it being here. So the
waiting transaction asks every ``POLL_S`` whether it holds anybody up, and if so it gives way
(``GiveWay``): the caller rolls it back and does it again after the previous commit, without overlap.

SQLite has one writer at a time: there a transaction waits for its turn before it begins.
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection, text

POLL_S = 0.1
# Is a transaction waiting for a lock this one holds? (pg_locks, not pg_stat_activity: that one is read once
# per transaction, and this transaction asks again and again.)
HOLDING_ANYBODY_UP = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid)))"
)


class PreviousNotWritten(Exception):
    """The previous batch was not written (the service stopped during an outage): this one must not be
    committed either, or its offsets would be committed past the previous batch's messages."""


class GiveWay(Exception):
    """The transaction waiting for its turn holds up another one: roll it back and do it again in turn."""


class Turn:
    """One batch's place in the order of transactions: after ``previous``'s."""

    def __init__(self, previous: Turn | None = None) -> None:
        self._previous = previous
        self._ended = threading.Event()
        self._committed = False

    def end(self, *, committed: bool) -> None:
        """This batch's transactions are over (committed, or given up): the next one may go on."""
        self._committed = committed
        self._ended.set()
        self._previous = None  # a chain of turns as long as the stream would never be freed

    def wait(self, conn: Connection | None = None) -> None:
        """Return once the previous batch is committed. ``conn``: this batch's transaction, on PostgreSQL,
        which gives way (raises ``GiveWay``) if it holds anybody up meanwhile."""
        previous = self._previous
        if previous is None:
            return
        while not previous._ended.wait(POLL_S):
            if conn is not None and conn.execute(HOLDING_ANYBODY_UP).scalar():
                raise GiveWay
        if not previous._committed:
            raise PreviousNotWritten
