"""``--dry-run``: a bus that writes each message as one JSON line instead of sending it to Kafka.

Each line is ``{"topic": ..., "key": ..., "value": <the message as JSON>}``, so a feed can be checked
with ``jq`` before it goes anywhere. It is the in-process bus with a different ``publish``: the
messages go to the stream and are not kept.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from common.wire.bus import InProcessBus


class JsonLinesBus(InProcessBus):
    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__()
        self.out = out or sys.stdout
        self.sent = 0

    async def stop(self) -> None:
        self.out.flush()

    async def flush(self) -> None:
        self.out.flush()

    async def publish(self, topic: str, key: str, value: bytes, *, partition: int | None = None) -> None:
        # The value is already JSON: splice it in rather than parse and dump it again.
        self.out.write(f'{{"topic": {json.dumps(topic)}, "key": {json.dumps(key)}, "value": {value.decode()}}}\n')
        self.sent += 1
