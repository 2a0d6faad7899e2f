"""The Jobico HTTP API: a thin Flask + flask-smorest layer over ``jobico_core.services``.

``create_app(settings=None, ctx=None, role="all")`` builds the app; ``jobico_api.wsgi:app``
is what gunicorn serves. Roles: ``gateway`` (the webhook ``POST /events/...``, ``/health``,
``/ready``), ``control`` (``/api/v1/...``, ``/docs``, the OpenAPI document, ``/metrics``,
``/health``, ``/ready``) or ``all`` (both, one port). With JOBICO_GATEWAY_PORT set, the WSGI
entry point serves a gateway app on that port and a control app on JOBICO_API_PORT.
"""
from __future__ import annotations

import logging

from flask import Flask
from flask_smorest import Api

from jobico_core import tracing
from jobico_core.services.context import Context
from jobico_core.settings import Settings

from . import docs_ui, errors, openapi
from .auth import BEARER_SCHEME

__all__ = ["create_app", "ROLES"]
ROLES = ("all", "gateway", "control")

API_VERSION = "v1"
# room for the largest body any endpoint accepts; each endpoint enforces its own limit
_PACKAGE_SOURCE_KB = 1024


class JobicoApi(Api):
    """flask-smorest's Api with Jobico's error bodies (always code/status/message/errors)."""

    ERROR_SCHEMA = errors.ErrorSchema

    def handle_http_exception(self, error):
        return errors.handle_http_exception(error)


def _configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=settings.log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("jobico_api").setLevel(settings.log_level)


def create_app(settings: Settings | None = None, ctx: Context | None = None, role: str = "all") -> Flask:
    """The Flask app. ``ctx`` wins over ``settings``; neither: from the environment.
    ``role``: which endpoints it serves (module docstring); anything else is a JSON 404.

    Refuses to start (``ConfigError``) with a configuration ``Settings.check``
    rejects (outside the embedded default: no admin token or secret key).
    """
    if ctx is None:
        settings = settings or Settings.from_env()
        settings.check()
        ctx = Context(settings)
    else:
        settings = ctx.settings
        settings.check()
    tracing.setup("jobico-api")  # only with OTEL_EXPORTER_OTLP_ENDPOINT set (docs/operating.md)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    _configure_logging(settings)

    app = Flask("jobico_api")
    app.url_map.merge_slashes = False  # `/events/a//b` is a JSON 404, not werkzeug's HTML 308 redirect
    app.config.update(
        API_TITLE="Jobico",
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=None if role == "gateway" else "/",  # no /docs nor OpenAPI on the gateway
        OPENAPI_JSON_PATH="api/v1/openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=docs_ui.ASSETS_URL,  # served by this app, no CDN (works offline)
        OPENAPI_SWAGGER_UI_CONFIG=docs_ui.CONFIG,
        API_SPEC_OPTIONS={
            "info": {"description": "Multi-tenant platform running tenants' WebAssembly jobicolets in response "
                                    "to events. Errors: `{code, status, message, errors}`."},
            "servers": [{"url": "/"}],
        },
        MAX_CONTENT_LENGTH=(max(settings.max_body_kb, settings.max_upload_kb, _PACKAGE_SOURCE_KB) + 64) * 1024,
        JSON_SORT_KEYS=False,
    )
    app.extensions["jobico"] = ctx

    api = JobicoApi(app, spec_kwargs={"extra_plugins": [openapi.StandardResponses()]})
    api.spec.components.security_scheme("bearerAuth", BEARER_SCHEME)
    from .blueprints import (
        admin,
        environment,
        executions,
        files,
        health,
        locks,
        metrics,
        packages,
        rejections,
        stream,
        webhook,
    )
    gateway = [webhook.blp]
    control = [admin.blp, files.blp, packages.blp, environment.blp, executions.blp, rejections.blp, locks.blp,
               metrics.blp, stream.blp]  # stream: GET /api/v1/executions/stream (SSE)
    openapi.install(app, api)
    blueprints = {"gateway": gateway, "control": control, "all": control + gateway}[role]
    for bp in blueprints + [health.blp]:
        api.register_blueprint(bp)
    metrics.instrument(app)  # /metrics is the control port's; every role's answers are counted all the same
    if role != "gateway":
        docs_ui.register(app)
    app.extensions["jobico_role"] = role
    errors.register_error_handlers(app)

    _refuse_unroutable_urls(app)
    app.json.sort_keys = False
    return app


def _refuse_unroutable_urls(app: Flask) -> None:
    """JSON 404s for URLs no route can have: a leading empty segment, a control character."""
    @app.before_request
    def _refuse_leading_empty_segment():
        # werkzeug's router and request.path drop leading slashes, so `//events/t/e` would reach
        # the webhook: every path with an empty first segment is a JSON 404, like `/events//t/e`
        from flask import request

        from jobico_core.errors import NotFound
        if request.environ.get("PATH_INFO", "").startswith("//"):
            raise NotFound("not found: the URL starts with '//' (an empty path segment); no route has one",
                           {"url": ["empty path segment"]})

    @app.before_request
    def _refuse_control_characters():
        # no id or file name may hold one, and PostgreSQL refuses NUL in a query (a 500 otherwise)
        from flask import request

        from jobico_core.errors import NotFound
        if request.endpoint == "webhook.post_events":
            return  # its own order (body size first); jobico_core.services.ingest copes with NUL
        if any(c < " " or c == "\x7f" for c in request.path) or \
                any("\x00" in v for vs in request.args.lists() for v in [vs[0], *vs[1]]):
            raise NotFound("not found: the URL holds a control character (NUL, newline...), which no "
                           "tenant, event, package or file name may contain", {"url": ["control character"]})
