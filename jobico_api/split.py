"""Serving the webhook gateway and the control API on separate ports from one gunicorn.

gunicorn binds both addresses (``gunicorn_conf.bind``); each request is routed by
the local port of the socket it arrived on (``environ["gunicorn.socket"]``, which
no client can forge, unlike a Host header), falling back to ``SERVER_PORT`` for
other WSGI servers. A request on a port that is neither gets a JSON 404.
"""
from __future__ import annotations

import json

from flask import Flask

from jobico_core.services.context import Context
from jobico_core.settings import Settings


class PortDispatcher:
    def __init__(self, apps: dict[int, Flask]):
        self.apps = apps

    def port_of(self, environ) -> int | None:
        sock = environ.get("gunicorn.socket")
        try:
            if sock is not None:
                return int(sock.getsockname()[1])
            return int(environ.get("SERVER_PORT", ""))
        except (OSError, ValueError, TypeError, IndexError):
            return None

    def __call__(self, environ, start_response):
        app = self.apps.get(self.port_of(environ))
        if app is None:
            body = json.dumps({"code": 404, "status": "Not Found", "message": "this port serves nothing",
                               "errors": {}}).encode()
            start_response("404 NOT FOUND", [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)


def make_wsgi_app(settings: Settings | None = None):
    """The app gunicorn serves: one Flask app, or a dispatcher over a gateway and a control app
    sharing one Context when JOBICO_GATEWAY_PORT is set."""
    from jobico_api import create_app
    settings = settings or Settings.from_env()
    if settings.gateway_port is None:
        return create_app(settings)
    ctx = Context(settings.check())
    return PortDispatcher({settings.api_port: create_app(ctx=ctx, role="control"),
                           settings.gateway_port: create_app(ctx=ctx, role="gateway")})
