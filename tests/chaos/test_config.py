"""The visibility-timeout rule the chaos scenarios rely on (no servers needed)."""
from __future__ import annotations

import pytest

from jobico_core import celeryconfig
from jobico_core.settings import ConfigError, Settings

BASE = {"JOBICO_ADMIN_TOKEN": "a" * 20, "JOBICO_SECRET_KEY": "s" * 20}


def test_visibility_timeout_is_used_exactly():
    s = Settings.from_env({**BASE, "JOBICO_VISIBILITY_TIMEOUT": "5", "JOBICO_MAX_TIMEOUT_MS": "2500"}).check()
    opts = celeryconfig.make_config(s)["broker_transport_options"]
    assert opts["visibility_timeout"] == 5
    assert opts["unacked_restore_interval"] == 1 and opts["unacked_restore_throttle"] == 1
    default = celeryconfig.make_config(Settings.from_env(BASE).check())["broker_transport_options"]
    assert default["visibility_timeout"] == 3600 and default["unacked_restore_interval"] == 10


def test_visibility_shorter_than_twice_the_longest_execution_is_refused():
    with pytest.raises(ConfigError, match="JOBICO_VISIBILITY_TIMEOUT"):
        Settings.from_env({**BASE, "JOBICO_VISIBILITY_TIMEOUT": "59"}).check()  # maximum 30 s
    with pytest.raises(ConfigError, match="JOBICO_VISIBILITY_TIMEOUT"):
        Settings.from_env({**BASE, "JOBICO_VISIBILITY_TIMEOUT": "5", "JOBICO_MAX_TIMEOUT_MS": "3000"}).check()


def test_retry_backoff_stays_under_half_the_visibility_timeout():
    from jobico_worker.executor import backoff_cap, retry_delay
    s = Settings.from_env({**BASE, "JOBICO_VISIBILITY_TIMEOUT": "5", "JOBICO_MAX_TIMEOUT_MS": "2500"})
    assert backoff_cap(s) == 2.5
    assert all(retry_delay(a, base=0.5, cap=backoff_cap(s)) <= 2.5 for a in range(40))
    assert backoff_cap(Settings.from_env(BASE)) == 60.0
