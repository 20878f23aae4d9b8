"""A reading that fits its robot's model is judged after the rest of its batch (consumer_alerts.service): the
fit then holds up no other robot's reading, and no decision changes."""

from common.wire.bus import Message
from common.wire.schemas import Reading
from consumer_alerts import service
from consumer_alerts.engine import DetectorEngine, EngineConfig
from tests.alerts_fixtures import cycle_readings

CONFIG = EngineConfig(detectors=("residual", "level"), model_learn_readings=1000)
ROWS = 2200  # 16 busy rows of every 26: the 1000th active row near row 1620, then the model at work


def fleet_batches() -> list[list[Message]]:
    """One reading of each of three robots a batch, at phases of their work cycle of their own (so that their
    models are fitted in different batches); robot b's overload after its model is learned."""
    fault = lambda i, axis, amps: amps * 2.5 if axis == 2 and i >= 1900 else amps  # noqa: E731
    robots = [
        cycle_readings(ROWS + skip, robot_id=robot_id, seed=seed, fault=fault if robot_id == "b" else None)[skip:]
        for robot_id, seed, skip in (("a", 1, 0), ("b", 2, 20), ("c", 3, 9))
    ]
    offset = iter(range(10**6))
    return [
        [Message("readings", 0, next(offset), r.robot_id.encode(), r.to_bytes()) for r in tick]
        for tick in zip(*robots, strict=True)
    ]


def test_the_reading_that_fits_a_model_goes_last_in_its_batch_and_decides_as_in_order():
    batches = fleet_batches()
    engine, order, events, moved = DetectorEngine(CONFIG), [], [], 0
    for batch in batches:
        order.clear()
        robots = [m.key.decode() for m in batch]
        learning = {robot_id for robot_id, robot in engine.robots.items() if robot.learner.model is None}
        put_off = {robot_id for robot_id in learning if engine.robots[robot_id].learner.fits_next}
        for found in service.events_per_reading(
            engine, batch, before=lambda robot_id, partition: order.append(robot_id)
        ):
            if isinstance(found, list):
                events += found
        assert order == [r for r in robots if r not in put_off] + [r for r in robots if r in put_off]
        fitted = {robot_id for robot_id in learning if engine.robots[robot_id].learner.model is not None}
        assert fitted <= put_off, "a fit came on a reading that was not put off"
        moved += bool(fitted) and order != robots
    assert all(robot.learner.model is not None for robot in engine.robots.values())
    assert moved >= 1, "no fit was moved behind another robot's reading: the test shows nothing"

    in_order = DetectorEngine(CONFIG)
    expected = [a for batch in batches for m in batch for a in in_order.process(Reading.from_bytes(m.value))]
    assert events, "robot b's overload raised nothing: the test shows nothing"
    assert sorted(a.to_bytes() for a in events) == sorted(a.to_bytes() for a in expected)
