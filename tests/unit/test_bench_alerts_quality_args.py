"""``bench.alerts_quality``'s seed option: a malformed range is an argparse message, not a traceback."""

import pytest

from bench.alerts_quality import main


@pytest.mark.parametrize("value", ["11..40", "40-11", "a-b", "11", "-3"])
def test_a_malformed_seed_range_is_refused_with_its_reason(value, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--broad", "tuning", f"--broad-seeds={value}"])
    assert stop.value.code == 2
    assert "FIRST-LAST" in capsys.readouterr().err


def test_a_seed_range_without_a_broad_run_is_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--broad-seeds", "11-40"])
    assert stop.value.code == 2
    assert "needs --broad" in capsys.readouterr().err
