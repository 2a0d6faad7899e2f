"""Celery settings for Jobico, derived from the JOBICO_* environment.

`make_config(settings)` is what the platform uses (``jobico_core.broker``);
importing this module as ``celery --config jobico_core.celeryconfig`` gives the same
values from the current environment.

Why these values (delivery guarantees, see docs/architecture.md):
- acks_late + reject_on_worker_lost: a task is acknowledged only after its
  execution is recorded, and a worker process that dies mid-task puts it back.
- prefetch_multiplier=1: a worker reserves one task per process, so a long
  execution does not hold other tenants' events hostage in its buffer.
- visibility_timeout: Redis redelivers unacknowledged tasks after it. It is
  JOBICO_VISIBILITY_TIMEOUT exactly (``Settings.check`` refuses one shorter
  than twice the platform maximum execution time, JOBICO_MAX_TIMEOUT_MS), so a
  worker killed mid-execution has its task run elsewhere that many seconds
  later. kombu sweeps the ``unacked`` hash for expired messages from every
  consuming worker every ``unacked_restore_interval`` seconds (throttle 1: each
  tick really scans), and once when a worker starts. See docs/delivery.md.
"""
from __future__ import annotations

from typing import Any


def make_config(settings: Any) -> dict[str, Any]:
    visibility = settings.visibility_timeout
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "broker_pool_limit": 16,
        "broker_transport_options": {
            "visibility_timeout": visibility,
            # kombu 5.7 default: a sweep every 10 s, scanning every 10th: ~100 s to notice a dead worker
            "unacked_restore_interval": max(1, min(10, visibility // 5)),
            "unacked_restore_throttle": 1,
            "fanout_prefix": True,
            "fanout_patterns": True,
            "socket_timeout": 10,
            "socket_connect_timeout": 3,
            "health_check_interval": 15,
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_default_queue": "jobico.control",
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "enable_utc": True,
    }


def _from_env() -> dict[str, Any]:
    from jobico_core.settings import Settings
    return make_config(Settings.from_env())


globals().update(_from_env())
