"""consumer_alerts crashed in the middle of a fault, on the in-process bus: while the stuck sensor's event
has just opened, the service task is cancelled (no checkpoint since the first stop's: the interval is long),
then restarted. The restart replays the readings since the last checkpoint and must leave the
alerts topic as an uninterrupted run does: before the fix in consumer_alerts/service.py (commit only with
a snapshot, snapshot with the open events) it raised a second z-score event from stale state and closed
the stuck sensor's event while the sensor was still stuck, then opened another one.
With real processes and Kafka: tests/integration/test_faults_alerts_restart.py.
"""

import asyncio

from common.wire.bus import InProcessBus
from common.wire.schemas import Alert, AlertState
from consumer_alerts.service import run
from consumer_alerts.settings import AlertsSettings
from tests.fault_feeds import DETECTION, by_event, check_like_uninterrupted, faulty_feed, uninterrupted


def events(bus: InProcessBus) -> dict[str, list[Alert]]:
    return by_event(Alert.from_bytes(m.value) for log in bus._log("alerts") for m in log)


def has(bus: InProcessBus, kind: str, state: AlertState) -> bool:
    return any(a.state is state for e, messages in events(bus).items() if kind in e for a in messages)


async def run_until(settings: AlertsSettings, bus: InProcessBus, done, *, crash: bool = False) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, bus=bus, stop=stop))
    async with asyncio.timeout(30):
        while not done():
            assert not task.done(), task.exception()
            await asyncio.sleep(0.01)
    if not crash:
        stop.set()
        await task
        return
    task.cancel()  # cancelled in its poll: no checkpoint, no commit, as after a SIGKILL
    await asyncio.gather(task, return_exceptions=True)


async def test_a_crash_mid_fault_replays_to_the_events_of_an_uninterrupted_run(tmp_path):
    readings = faulty_feed()
    settings = AlertsSettings(
        _env_file=None,
        bus="memory",
        readings_topic="readings",
        alerts_topic="alerts",
        state_path=tmp_path / "state.json",  # the health pipeline's file beside it
        snapshot_interval_s=3600,
        poll_timeout_ms=20,
        max_batch=5,
        **DETECTION,
    )
    bus = InProcessBus()
    for part, until, crash in (
        (readings[:604], ("zscore", AlertState.OPEN), False),
        (readings[604:760], ("stuck", AlertState.OPEN), True),
        (readings[760:], ("stuck", AlertState.CLOSED), False),
    ):
        for r in part:
            await bus.publish("readings", r.robot_id, r.to_bytes())
        await run_until(settings, bus, lambda until=until: has(bus, *until), crash=crash)
    check_like_uninterrupted(events(bus), uninterrupted(readings))
    assert bus.uncommitted(settings.alerts_group_id, ["readings"]) < len(readings) - 760, "the clean stop commits"
