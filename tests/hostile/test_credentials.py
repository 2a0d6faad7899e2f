"""Hostile credentials: bearer keys, the admin token where it does not belong, HMAC signatures."""
from __future__ import annotations

import json
import time

import pytest

from jobico_core.services.tenants import sign

from .helpers import GOOD

pytestmark = pytest.mark.services

BODY = json.dumps(GOOD).encode()


def _key_cases(w):
    return [
        ("no-authorization", {}, 401, ["missing credentials"]),
        ("basic-auth", {"Authorization": "Basic dXNlcjpwYXNz"}, 401, ["missing credentials", "Bearer"]),
        ("bearer-without-token", {"Authorization": "Bearer "}, 401, ["missing credentials"]),
        ("key-without-scheme", {"Authorization": w.acme.key}, 401, ["missing credentials"]),
        ("unknown-key", {"Authorization": "Bearer jbk_" + "x" * 43}, 401, ["not known"]),
        ("key-with-trailing-garbage", {"Authorization": f"Bearer {w.acme.key} extra"}, 401, ["not known"]),
        ("huge-authorization", {"Authorization": "Bearer jbk_" + "A" * 8000}, 401, ["not known"]),
        ("another-tenants-key", w.other.headers, 403, ["another tenant", "'acme'"]),
        ("admin-token-on-webhook", w.api.admin, 401, ["not known"]),
    ]


KEY_IDS = ["no-authorization", "basic-auth", "bearer-without-token", "key-without-scheme", "unknown-key",
           "key-with-trailing-garbage", "huge-authorization", "another-tenants-key", "admin-token-on-webhook"]


@pytest.mark.parametrize("case", KEY_IDS)
def test_webhook_key_refused(world, case):
    [(_, headers, status, fragments)] = [c for c in _key_cases(world) if c[0] == case]
    world.refused(lambda: world.post(BODY, headers=headers, auth=False), status, *fragments)


def _hmac_cases(w):
    secret = w.signed.signing_secret
    now = str(int(time.time()))
    old = str(int(time.time()) - 301)
    future = str(int(time.time()) + 400)
    return [
        ("hmac-missing-headers", {}, ["X-Jobico-Signature"]),
        ("hmac-missing-signature", {"X-Jobico-Timestamp": now}, ["X-Jobico-Signature"]),
        ("hmac-missing-timestamp", {"X-Jobico-Signature": sign(secret, now, BODY)}, ["X-Jobico-Timestamp"]),
        ("hmac-bad-signature", {"X-Jobico-Timestamp": now, "X-Jobico-Signature": "sha256=" + "0" * 64},
         ["does not match"]),
        ("hmac-stale-timestamp", {"X-Jobico-Timestamp": old, "X-Jobico-Signature": sign(secret, old, BODY)},
         ["older than 5 minutes"]),
        ("hmac-future-timestamp", {"X-Jobico-Timestamp": future,
                                   "X-Jobico-Signature": sign(secret, future, BODY)}, ["in the future"]),
        ("hmac-non-numeric-timestamp", {"X-Jobico-Timestamp": "yesterday",
                                        "X-Jobico-Signature": sign(secret, "yesterday", BODY)}, ["Unix seconds"]),
        ("hmac-5000-digit-timestamp", {"X-Jobico-Timestamp": "9" * 5000,
                                       "X-Jobico-Signature": "sha256=00"}, ["Unix seconds"]),
        ("hmac-signature-over-other-body", {"X-Jobico-Timestamp": now,
                                            "X-Jobico-Signature": sign(secret, now, BODY + b" ")},
         ["does not match"]),
        ("hmac-signature-over-other-timestamp", {"X-Jobico-Timestamp": now,
                                                 "X-Jobico-Signature": sign(secret, str(int(now) - 1), BODY)},
         ["does not match"]),
        ("hmac-wrong-secret", {"X-Jobico-Timestamp": now, "X-Jobico-Signature": sign("not-the-secret", now, BODY)},
         ["does not match"]),
        ("hmac-no-sha256-prefix", {"X-Jobico-Timestamp": now,
                                   "X-Jobico-Signature": sign(secret, now, BODY)[len("sha256="):]},
         ["does not match"]),
        ("hmac-bearer-key-instead", {"Authorization": f"Bearer {w.signed.key}"}, ["X-Jobico-Signature"]),
    ]


HMAC_IDS = ["hmac-missing-headers", "hmac-missing-signature", "hmac-missing-timestamp", "hmac-bad-signature",
            "hmac-stale-timestamp", "hmac-future-timestamp", "hmac-non-numeric-timestamp",
            "hmac-5000-digit-timestamp", "hmac-signature-over-other-body", "hmac-signature-over-other-timestamp",
            "hmac-wrong-secret", "hmac-no-sha256-prefix", "hmac-bearer-key-instead"]


@pytest.mark.parametrize("case", HMAC_IDS)
def test_webhook_hmac_refused(world, case):
    [(_, headers, fragments)] = [c for c in _hmac_cases(world) if c[0] == case]
    world.refused(lambda: world.post(BODY, tenant="signed", event="signed_added", headers=headers, auth=False),
                  401, *fragments)


def test_hmac_signed_request_is_accepted(world):
    now = str(int(time.time()))
    r = world.post(BODY, tenant="signed", event="signed_added", auth=False, headers={
        "X-Jobico-Timestamp": now, "X-Jobico-Signature": sign(world.signed.signing_secret, now, BODY)})
    assert r.status_code == 200, r.get_data()[:300]


def test_hmac_replays_are_refused(world):
    """The captured headers on another body (401) do not spend the signature; the genuine request
    is accepted once; the same request again, with or without another Idempotency-Key, is a 409."""
    body = BODY + b" "  # the same events, another signature than the other tests' requests
    stamp = str(int(time.time()))
    headers = {"X-Jobico-Timestamp": stamp, "X-Jobico-Signature": sign(world.signed.signing_secret, stamp, body)}
    world.refused(lambda: world.post(BODY, tenant="signed", event="signed_added", auth=False, headers=headers),
                  401, "does not match")
    r = world.post(body, tenant="signed", event="signed_added", auth=False, headers=headers)
    assert r.status_code == 200, r.get_data()[:300]
    for extra in ({}, {"Idempotency-Key": "another"}):
        world.refused(lambda extra=extra: world.post(body, tenant="signed", event="signed_added", auth=False,
                                                     headers={**headers, **extra}), 409, "signature_replayed")


# -- the API: admin token vs tenant keys ---------------------------------------------------
def _api_cases(w):
    ex = f"/api/v1/executions/{w.baseline_exec}"
    return [
        ("admin-lists-packages", "get", "/api/v1/packages", w.api.admin, None, 403, ["admin token cannot"]),
        ("admin-reads-execution", "get", ex, w.api.admin, None, 403, ["admin token cannot"]),
        ("admin-lists-executions", "get", "/api/v1/executions", w.api.admin, None, 403, ["admin token cannot"]),
        ("admin-downloads-file", "get", "/api/v1/files/person.json/content", w.api.admin, None, 403,
         ["admin token cannot"]),
        ("admin-uploads-file", "put", "/api/v1/files/evil.json", w.api.admin, b"{}", 403, ["admin token cannot"]),
        ("tenant-key-lists-tenants", "get", "/api/v1/tenants", w.acme.headers, None, 403, ["needs the admin token"]),
        ("tenant-key-creates-tenant", "post", "/api/v1/tenants", w.acme.headers, {"id": "evil"}, 403,
         ["needs the admin token"]),
        ("tenant-key-creates-key", "post", "/api/v1/tenants/acme/keys", w.acme.headers, {"name": "k2"}, 403,
         ["needs the admin token"]),
        ("tenant-key-deletes-tenant", "delete", "/api/v1/tenants/other", w.acme.headers, None, 403,
         ["needs the admin token"]),
        ("unknown-token-on-admin", "get", "/api/v1/tenants", {"Authorization": "Bearer nope"}, None, 401,
         ["not known"]),
        ("no-token-on-tenant-api", "get", "/api/v1/packages", {}, None, 401, ["missing credentials"]),
        ("other-tenant-reads-execution", "get", ex, w.other.headers, None, 404, []),
        ("admin-tenant-id-with-newline", "post", "/api/v1/tenants", w.api.admin, {"id": "evil\n"}, 422,
         ["is not valid"]),
        ("admin-tenant-id-traversal", "post", "/api/v1/tenants", w.api.admin, {"id": "../acme"}, 422,
         ["is not valid"]),
        ("admin-tenant-bad-webhook-auth", "post", "/api/v1/tenants", w.api.admin,
         {"id": "evil", "webhook_auth": "root"}, 422, ["webhook_auth"]),
        ("admin-tenant-not-json", "post", "/api/v1/tenants", w.api.admin, b"{id: evil", 400, []),
        ("admin-key-name-with-nul", "post", "/api/v1/tenants/acme/keys", w.api.admin, {"name": "k\x00"}, 422,
         ["is not valid"]),
    ]


API_IDS = ["admin-lists-packages", "admin-reads-execution", "admin-lists-executions", "admin-downloads-file",
           "admin-uploads-file", "tenant-key-lists-tenants", "tenant-key-creates-tenant", "tenant-key-creates-key",
           "tenant-key-deletes-tenant", "unknown-token-on-admin", "no-token-on-tenant-api",
           "other-tenant-reads-execution", "admin-tenant-id-with-newline", "admin-tenant-id-traversal",
           "admin-tenant-bad-webhook-auth", "admin-tenant-not-json", "admin-key-name-with-nul"]


@pytest.mark.parametrize("case", API_IDS)
def test_api_credentials_refused(world, case):
    [(_, method, url, headers, body, status, fragments)] = [c for c in _api_cases(world) if c[0] == case]
    kw: dict = {"headers": dict(headers)}
    if isinstance(body, bytes):
        kw["data"] = body
        kw["headers"]["Content-Type"] = "application/json"
    elif body is not None:
        kw["json"] = body
    answer = world.refused(lambda: getattr(world.client, method)(url, **kw), status, *fragments)
    assert "Ada" not in json.dumps(answer)  # no tenant data in a refusal


def test_zz_world_intact(world):
    world.assert_intact()
