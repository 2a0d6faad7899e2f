"""The Swagger UI of ``/docs``, served from the installed ``flask-swagger-ui`` wheel.

flask-smorest's page loads ``swagger-ui.css``, ``swagger-ui-bundle.js`` and
``swagger-ui-standalone-preset.js`` from ``OPENAPI_SWAGGER_UI_URL``; pointing it at
``ASSETS_URL`` (this app) instead of a CDN makes ``/docs`` work on a machine or a
cluster without Internet access. ``CONFIG`` turns off the one other outside call
Swagger UI makes (the validator badge at validator.swagger.io).
"""
from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Flask, send_from_directory

DIST = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
ASSETS_URL = "/docs/assets/"
CONFIG = {"validatorUrl": None}


def _asset(filename: str):
    return send_from_directory(DIST, filename, max_age=24 * 3600)


def register(app: Flask) -> None:
    """Serve the Swagger UI files at ASSETS_URL (a JSON 404 for any other name)."""
    app.add_url_rule(ASSETS_URL + "<path:filename>", "swagger_ui_asset", _asset, methods=["GET"])
