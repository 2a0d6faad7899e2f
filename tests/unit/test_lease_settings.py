"""JOBICO_EXECUTION_LEASE_SECONDS and JOBICO_BEAT_LOCK_SECONDS: parsed, bounded, and the
recovery's period follows the lease."""
from __future__ import annotations

import pytest

from jobico_core.services.leases import sweep_period
from jobico_core.settings import VARIABLES, ConfigError, Settings

BASE = {"JOBICO_ADMIN_TOKEN": "a" * 20, "JOBICO_SECRET_KEY": "s" * 20}


def test_the_execution_lease_setting():
    assert "JOBICO_EXECUTION_LEASE_SECONDS" in VARIABLES
    s = Settings.from_env(BASE)
    assert s.execution_lease_s == 60.0 and sweep_period(s) == 30.0
    s = Settings.from_env({**BASE, "JOBICO_EXECUTION_LEASE_SECONDS": "2.5"})
    assert s.execution_lease_s == 2.5 and sweep_period(s) == 1.25
    for bad, problem in (("0.5", "at least 1 second"), ("soon", "is not a number of seconds"),
                         ("7200", "between 0 and 3600")):
        with pytest.raises(ConfigError, match=problem):
            Settings.from_env({**BASE, "JOBICO_EXECUTION_LEASE_SECONDS": bad})


def test_the_beat_lock_setting():
    assert Settings.from_env(BASE).beat_lock_s == 10.0
    assert Settings.from_env({**BASE, "JOBICO_BEAT_LOCK_SECONDS": "3"}).beat_lock_s == 3.0
    for bad, problem in (("2", "at least 3 seconds"), ("soon", "is not a number of seconds")):
        with pytest.raises(ConfigError, match=problem):
            Settings.from_env({**BASE, "JOBICO_BEAT_LOCK_SECONDS": bad})
