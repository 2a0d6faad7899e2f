"""WSGI entry point: ``gunicorn -c python:jobico_api.gunicorn_conf jobico_api.wsgi:app``."""
from __future__ import annotations

from jobico_api import create_app

app = create_app()
