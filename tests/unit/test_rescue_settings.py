"""JOBICO_RESCUE_AFTER: parsed as documented (README, docs/delivery.md: 0 turns the rescue off),
and the worker's sweep period follows it."""
from __future__ import annotations

import pytest

from jobico_core.services.rescue import sweep_period
from jobico_core.settings import VARIABLES, ConfigError, Settings

BASE = {"JOBICO_ADMIN_TOKEN": "a" * 20, "JOBICO_SECRET_KEY": "s" * 20}


def test_the_rescue_setting():
    assert "0 turns the rescue off" in VARIABLES["JOBICO_RESCUE_AFTER"][1]
    s = Settings.from_env(BASE)
    assert s.rescue_after == 120 and sweep_period(s) == 60.0
    s = Settings.from_env({**BASE, "JOBICO_RESCUE_AFTER": "1"})
    assert s.rescue_after == 1 and sweep_period(s) == 1.0
    s = Settings.from_env({**BASE, "JOBICO_RESCUE_AFTER": "0"})
    assert s.rescue_after == 0 and sweep_period(s) == 0  # the worker schedules no sweep
    for bad, problem in (("-1", "must be at least 0"), ("soon", "is not an integer")):
        with pytest.raises(ConfigError, match=problem):
            Settings.from_env({**BASE, "JOBICO_RESCUE_AFTER": bad})
