"""run_service's stop: the first SIGTERM sets the stop event; a service still running STOP_TIMEOUT_S later,
or at a second signal, is stopped by force (its task cancelled, its ``finally`` run), with exit code 1."""

import asyncio
import logging
import os
import signal

from common.service import run_service
from common.settings import CommonSettings


def never_looks_at_stop(finished: list[str]):
    async def run(stop: asyncio.Event) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await asyncio.Event().wait()  # a confirmation the gone broker never sends
        finally:
            finished.append("finally")
        return 0

    return run


def test_a_service_that_does_not_stop_is_stopped_by_force_after_the_timeout(caplog):
    finished: list[str] = []
    with caplog.at_level(logging.INFO, logger="common.service"):
        assert run_service(never_looks_at_stop(finished), CommonSettings(stop_timeout_s=0.2)) == 1
    assert finished == ["finally"]
    assert "stopping by force: not stopped within 0.2 s of SIGTERM" in caplog.text


def test_a_second_signal_forces_the_stop_at_once(caplog):
    async def run(stop: asyncio.Event) -> int:
        os.kill(os.getpid(), signal.SIGINT)
        await stop.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.Event().wait()
        return 0

    with caplog.at_level(logging.INFO, logger="common.service"):
        assert run_service(run, CommonSettings(stop_timeout_s=600)) == 1
    assert "stopping by force: SIGTERM again" in caplog.text


def test_a_service_that_stops_by_itself_keeps_its_exit_code(caplog):
    async def run(stop: asyncio.Event) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        await stop.wait()
        await asyncio.sleep(0.3)  # its own flushing, well within the timeout
        return 0

    with caplog.at_level(logging.INFO, logger="common.service"):
        assert run_service(run, CommonSettings(stop_timeout_s=5)) == 0
    assert "SIGTERM: stopping" in caplog.text and "by force:" not in caplog.text
