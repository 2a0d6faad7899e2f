"""WSGI entry point: ``gunicorn -c python:jobico_api/gunicorn_conf.py jobico_api.wsgi:app``.

One port (JOBICO_API_PORT) serves everything, unless JOBICO_GATEWAY_PORT is set:
then gunicorn listens on both (``gunicorn_conf.bind``) and ``app`` sends each
connection to the app of the port it arrived on, the webhook gateway or the
control API (``jobico_api.split.PortDispatcher``).
"""
from __future__ import annotations

from jobico_api.split import make_wsgi_app

app = make_wsgi_app()
