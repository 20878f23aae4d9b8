"""bench.load_curve's own readings: a process's CPU from /proc, the broker found by its port, and the
verdict on a lag (a saw-tooth of 30-s commits keeps up, a rising floor does not)."""

import argparse
import os
import socket
import time

from bench.load_curve import Held, cpu_ticks, floor_trend, listening_pid

TIMES = [5.0 * i for i in range(1, 121)]  # a 10-minute hold sampled every 5 s


def test_cpu_ticks_count_this_process_working():
    before = cpu_ticks(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert cpu_ticks(os.getpid()) - before >= 0.2 * os.sysconf("SC_CLK_TCK")


def test_cpu_ticks_of_a_process_that_is_gone_is_none():
    assert cpu_ticks(2**22 + 1) is None  # above the kernel's pid_max


def test_the_listener_of_a_port_is_found():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert listening_pid(server.getsockname()[1]) == os.getpid()


def test_a_port_nobody_listens_on_has_no_listener():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound but not listening: the port is free of listeners
        assert listening_pid(probe.getsockname()[1]) is None


def test_a_saw_tooth_of_commits_every_30_s_keeps_up():
    lags = [t % 30 for t in TIMES]  # behind by up to 30 s, back to 0 at each commit
    end, slope = floor_trend(TIMES, lags, 40)
    assert end == 0
    assert abs(slope) < 0.01


def test_a_rising_floor_is_a_stage_falling_behind():
    lags = [t % 30 + 0.2 * t for t in TIMES]  # the same saw-tooth on a lag growing 0.2 s per s
    end, slope = floor_trend(TIMES, lags, 40)
    assert end > 100
    assert 0.15 < slope < 0.25


def test_too_short_a_hold_gives_no_slope():
    assert floor_trend([5.0, 10.0], [1.0, 2.0], 40) == (1.0, None)


def catching_up(lags: list[float], rate: float = 500.0) -> bool:
    held = Held(argparse.Namespace(max_lag_s=60.0))
    samples = [
        {"t": t, "produced": rate * (t + 100), "consumer_db": rate * (t + 100 - lag)}
        for t, lag in zip(TIMES[: len(lags)], lags, strict=True)
    ]
    return not held._not_catching_up(samples, "consumer_db", rate)


def test_a_slow_start_that_catches_up_does_not_end_the_level():
    assert catching_up([max(0.0, 90 - 0.5 * t) for t in TIMES][:20])  # 90 s behind at first, shrinking


def test_a_lag_past_the_limit_that_does_not_shrink_ends_the_level():
    assert not catching_up([50 + 0.1 * t for t in TIMES][:30])  # past 60 s after 100 s, still rising


def test_a_lag_under_the_limit_never_ends_the_level():
    assert catching_up([t % 30 for t in TIMES])
