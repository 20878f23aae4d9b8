"""consumer_alerts restarted in the middle of a fault, as a real process: stopped with SIGTERM while a spike
is open, killed with SIGKILL while a stuck sensor's event has just opened, restarted each time. The kill
lands before any snapshot or commit since the first stop, so the restart replays the readings since then
(the events they raise are already on the topic). The alerts topic must end up exactly as an uninterrupted
run over the same readings makes it: the same events, each change published once (no second OPEN for an
event already out), each closed once, when its fault is over.

The readings carry faults from producer/faults.py; the expected events come from the service's own
detector engine run over them in one go, in the test process. The same scenario on the in-process bus:
tests/unit/test_faults_alerts_replay.py.
"""

import signal

import pytest

from common.wire.kafka import KafkaBus
from common.wire.schemas import Alert, AlertState
from consumer_alerts.settings import AlertsSettings
from tests.fault_feeds import DETECTION, by_event, check_like_uninterrupted, faulty_feed, uninterrupted
from tests.fault_support import Service, TopicReader, apoll, committed, service_env

pytestmark = pytest.mark.integration


async def test_restarts_mid_fault_publish_each_event_change_once_and_close_it(kafka_env, unique, tmp_path):
    readings = faulty_feed()
    expected = uninterrupted(readings)
    assert sorted(e.split(":")[2] for e in expected) == ["stuck", "zscore"], "the faults must raise two events"
    group = f"alerts-{unique}"
    settings = AlertsSettings(_env_file=None, **kafka_env, alerts_group_id=group)
    env = service_env(
        kafka_env,
        **DETECTION,
        alerts_group_id=group,
        state_path=tmp_path / "state.json",
        snapshot_interval_s=3600,
        poll_timeout_ms=100,
        max_batch=5,
        log_level="INFO",
    )
    log = tmp_path / "alerts.log"
    bus = KafkaBus(settings)
    await bus.start()
    await bus.ensure_topics([settings.readings_topic, settings.alerts_topic])

    async def publish(part) -> None:
        for r in part:
            await bus.send(settings.readings_topic, r.robot_id, r.to_bytes())
        await bus.flush()

    def events_seen(reader: TopicReader):
        async def check():
            return by_event(Alert.from_bytes(v) for v in await reader.read())

        return check

    service = None
    try:
        async with TopicReader(settings, settings.alerts_topic) as reader:
            # 1. The spike opens; SIGTERM while it is still open (in the middle of the fault).
            await publish(readings[:604])
            service = Service("consumer_alerts", env, log)
            spike_id = next(e for e in expected if ":zscore:" in e)
            await apoll(
                lambda: _has(events_seen(reader), spike_id, AlertState.OPEN), "the spike's OPEN", services=(service,)
            )
            assert service.stop(signal.SIGTERM) == 0, service.tail()

            # 2. Restart; the spike ends and closes, the stuck sensor's event opens: SIGKILL right then.
            await publish(readings[604:760])
            service = Service("consumer_alerts", env, log)
            stuck_id = next(e for e in expected if ":stuck:" in e)
            await apoll(
                lambda: _has(events_seen(reader), stuck_id, AlertState.OPEN),
                "the stuck sensor's OPEN",
                services=(service,),
            )
            service.stop(signal.SIGKILL)  # no snapshot since step 1's (the interval is long), nor a commit

            # 3. Restart with the stale snapshot; the stuck fault ends and its event closes.
            await publish(readings[760:])
            service = Service("consumer_alerts", env, log)
            await apoll(
                lambda: _has(events_seen(reader), stuck_id, AlertState.CLOSED),
                "the stuck sensor's CLOSE",
                services=(service,),
                timeout=90,
            )
            assert service.stop(signal.SIGTERM) == 0, service.tail()
            service = None
            seen = await events_seen(reader)()
            assert await committed(settings, group) > 760, "the clean stop commits what it replayed and read"
    finally:
        if service is not None:
            service.stop(signal.SIGKILL)
        await bus.stop()
    check_like_uninterrupted(seen, expected)


async def _has(check, event_id: str, state: AlertState) -> bool:
    return any(a.state is state for a in (await check()).get(event_id, []))
