"""JOBICO_WORKER_TENANTS / JOBICO_WORKER_METRICS_PORT settings and the pool's queue filter."""
from __future__ import annotations

import pytest

from jobico_core.settings import VARIABLES, ConfigError, Settings

BASE = {"JOBICO_ADMIN_TOKEN": "a" * 20, "JOBICO_SECRET_KEY": "s" * 20}


def test_worker_tenants_parsed_and_checked():
    assert Settings.from_env(BASE).worker_tenants == ()
    s = Settings.from_env({**BASE, "JOBICO_WORKER_TENANTS": " acme, acme.eu ,,"}).check()
    assert s.worker_tenants == ("acme", "acme.eu")
    with pytest.raises(ConfigError, match="JOBICO_WORKER_TENANTS"):
        Settings.from_env({**BASE, "JOBICO_WORKER_TENANTS": "ok,bad tenant"}).check()
    assert "JOBICO_WORKER_TENANTS" in VARIABLES and "JOBICO_WORKER_METRICS_PORT" in VARIABLES


def test_worker_metrics_port():
    assert Settings.from_env(BASE).worker_metrics_port is None
    assert Settings.from_env({**BASE, "JOBICO_WORKER_METRICS_PORT": "9100"}).worker_metrics_port == 9100
    with pytest.raises(ConfigError):
        Settings.from_env({**BASE, "JOBICO_WORKER_METRICS_PORT": "x"})


def test_in_pool_prefix_filter(monkeypatch):
    for k, v in BASE.items():
        monkeypatch.setenv(k, v)
    from jobico_worker.app import in_pool
    assert in_pool("jobico.acme.pkg.q", ("acme",))
    assert not in_pool("jobico.globex.pkg.q", ("acme",))
    assert in_pool("jobico.control", ("acme",))  # the default queue is always consumed
    assert in_pool("jobico.globex.pkg.q", ())  # no pool: everything


def test_metrics_tenant_labels_are_bounded(monkeypatch):
    from jobico_core import metrics
    monkeypatch.setattr(metrics, "_tenant_labels", set())
    monkeypatch.setattr(metrics, "MAX_TENANT_LABELS", 2)
    assert metrics.tenant_label("../etc") == "_invalid"
    assert [metrics.tenant_label(t) for t in ("a", "b", "c", "a")] == ["a", "b", "_other", "a"]
