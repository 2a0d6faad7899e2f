"""What the OpenAPI document says about inputs, from the rules the server enforces (``jobico_core.names``).

* ``Flag``: a JSON boolean, strictly (``0``, ``"yes"`` are a 422; marshmallow's Boolean takes them);
  ``QueryFlag``: a query-string boolean, ``true`` or ``false`` only.
* ``Named(rule)``: a string field documented with the rule's pattern and lengths (the service checks it
  with ``rule.problem``, which words the 422); ``Cursor``: a page cursor.
* Path converters ``tenant``, ``key``, ``variable``, ``package`` and ``file``: route the way the rules
  say (a package is never called ``archive``, so ``/packages/archive`` is the publishing route only; a
  file URL ending in ``/content`` is the download route only) and document each path parameter with its
  rule and an example (the names the tests and docs use).
* ``openapi(name, extra)``: a schema-level addition (``anyOf``...) to a marshmallow schema's component.
* ``StandardResponses``: the answers every operation of a kind can give, added to each: 401 and 403
  where a credential is required (401 only where any caller is welcome, ``ANY_CALLER``), 404 where the
  path names something (except a PUT, which creates it), each with the error body.
"""
from __future__ import annotations

from typing import Any

import marshmallow as ma
from apispec import BasePlugin
from werkzeug.routing import BaseConverter, PathConverter

from jobico_core.names import FILE, NAME, PACKAGE, Rule


class Flag(ma.fields.Boolean):
    """A JSON boolean: ``true`` or ``false``, nothing that merely looks like one."""

    default_error_messages = {"invalid": "Not a valid boolean: send true or false."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return value
        raise self.make_error("invalid")


class QueryFlag(ma.fields.Boolean):
    """A boolean in the query string: ``true`` or ``false``."""

    default_error_messages = {"invalid": "Not a valid boolean: send true or false."}

    def __init__(self, **kwargs):
        super().__init__(truthy={"true"}, falsy={"false"}, **kwargs)


class Named(ma.fields.String):
    """A string documented with ``rule`` (pattern, lengths, reserved words); the service checks it."""

    def __init__(self, rule: Rule, **kwargs):
        schema = rule.json_schema()
        schema.pop("type")
        super().__init__(metadata={**schema, **kwargs.pop("metadata", {})}, **kwargs)


class Cursor(ma.fields.String):
    """``?cursor=``: the ``next_cursor`` of the previous page, opaque (anything else is a 400)."""

    def __init__(self, **kwargs):
        super().__init__(metadata={"description": "next_cursor of the previous page (opaque: anything else is a "
                                                  "400; empty: the first page)", "pattern": "^[A-Za-z0-9_-]*$"},
                         **kwargs)


class TenantConverter(BaseConverter):
    """One path segment: a tenant id."""
    rule, example = NAME, "tenant_1"


class KeyConverter(BaseConverter):
    """One path segment: a key's name."""
    rule, example = NAME, "default"


class VariableConverter(BaseConverter):
    """One path segment: a stored variable's name."""
    rule, example = NAME, "API_TOKEN"


class PackageConverter(BaseConverter):
    """One path segment, not the word ``archive`` (the publishing route)."""
    rule, example = PACKAGE, "people"
    regex = "(?!(?:" + "|".join(PACKAGE.reserved) + ")(?![^/]))[^/]+"


class FileConverter(PathConverter):
    """The rest of the path (so ``a/b.json`` reaches the handler, which refuses it by name), except a
    trailing ``/content`` (the download route)."""
    rule, example = FILE, "echo.wasm"
    regex = "[^/].*?(?<!/content)"


CONVERTERS = {"tenant": TenantConverter, "key": KeyConverter, "variable": VariableConverter,
              "package": PackageConverter, "file": FileConverter}


def _param_schema(converter) -> dict:
    return {**converter.rule.json_schema(), "example": converter.example}


_EXTRAS: list[tuple[str, type[ma.Schema], dict[str, Any]]] = []


def openapi(name: str, extra: dict[str, Any]):
    """Class decorator: publish the schema as component ``name`` with ``extra`` (JSON Schema keywords
    marshmallow fields cannot say, e.g. "at least one of these properties")."""
    def deco(cls):
        _EXTRAS.append((name, cls, extra))
        return cls
    return deco


STANDARD = {
    "401": ("UNAUTHORIZED", "no credentials, or a token nobody issued"),
    "403": ("FORBIDDEN", "the other kind of credential: the admin token on tenant data, a tenant key on "
                         "tenants"),
    "404": ("NOT_FOUND", "nothing by that name or id (in the caller's tenant)"),
}
# secured operations open to the admin token and to tenant keys alike (never a 403)
ANY_CALLER = {("/api/v1/whoami", "get")}
METHODS = {"get", "put", "post", "delete", "patch"}


class StandardResponses(BasePlugin):
    def operation_helper(self, path=None, operations=None, **kwargs):
        for method, op in (operations or {}).items():
            if method not in METHODS:
                continue
            responses = op.setdefault("responses", {})
            security = op.get("security") or []
            codes = []
            if security and {} not in security:
                codes.append("401")
                if (path, method) not in ANY_CALLER:
                    codes.append("403")
            if "{" in (path or "") and method != "put":
                codes.append("404")
            for code in codes:
                responses.setdefault(code, STANDARD[code][0])


def install(app, api) -> None:
    """Before the blueprints are registered: the converters, standard responses and schema additions."""
    for name, description in STANDARD.values():
        api.spec.components.response(name, {"description": description, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    for key, conv in CONVERTERS.items():
        app.url_map.converters[key] = conv
        api.register_converter(conv, _param_schema)
    for name, cls, extra in _EXTRAS:
        api.spec.components.schema(name, extra, schema=cls)
