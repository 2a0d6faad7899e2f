"""Process logging for API and worker: text for people, JSON lines for machines.

JSON records carry ``execution_id``/``tenant`` when the code logs them with
``extra={...}``, so operators can follow one execution across processes.
"""
from __future__ import annotations

import json
import logging
import sys
import time

from .settings import Settings

_EXTRA_FIELDS = ("execution_id", "tenant", "package", "event", "status", "error_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _EXTRA_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(settings: Settings, stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("urllib3", "botocore", "kombu.pidbox"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
