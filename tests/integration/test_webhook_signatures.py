"""HMAC-signed webhooks: a signature is good for one request (replays within the 5-minute window
are a 409), and a rotated signing secret overlaps with the one it replaces until that one is
revoked or its grace period ends. Real PostgreSQL and Redis; the webhook through the Flask app."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time

import pytest

from tests.waiting import wait_until

from .helpers import PACKAGE

pytestmark = pytest.mark.services

QUEUE = "jobico.tenant_1.people.main"
BODY = json.dumps({"data": [{"name": "Ada"}]}).encode()


def signed(secret: str, body: bytes = BODY, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Jobico-Timestamp": stamp, "X-Jobico-Signature": f"sha256={mac}"}


def hmac_tenant(api, tenant: str = "tenant_1", source: str = PACKAGE) -> str:
    api.deployed_tenant(tenant, source=source)
    r = api.client.patch(f"/api/v1/tenants/{tenant}", json={"webhook_auth": "hmac"}, headers=api.admin)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["signing_secret"]


def spent_keys(api) -> list[str]:
    return sorted(k.decode() for k in api.redis.scan_iter("jobico:sig:*"))


def test_a_replayed_signature_is_refused_with_409_and_runs_once(api):
    secret = hmac_tenant(api)
    headers = signed(secret)
    answers = [api.post_events("tenant_1", "person_added", BODY, headers) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 409, 409], [r.get_json() for r in answers]
    refused = answers[1].get_json()
    assert refused["code"] == 409 and refused["message"].startswith("signature_replayed")
    assert refused["errors"] == {"X-Jobico-Signature": ["signature_replayed"]}
    assert len(api.executions_in_db()) == 1 and api.lists() == {QUEUE: 1}
    # the record lives as long as the timestamp is inside the window, per tenant
    [key] = spent_keys(api)
    assert key == "jobico:sig:tenant_1:" + headers["X-Jobico-Signature"].removeprefix("sha256=")
    assert 290 <= api.redis.ttl(key) <= 302
    # signed again (another second): accepted
    later = signed(secret, ts=int(headers["X-Jobico-Timestamp"]) + 1)
    assert api.post_events("tenant_1", "person_added", BODY, later).status_code == 200
    assert len(api.executions_in_db()) == 2


def test_the_record_lasts_the_rest_of_the_window(api):
    secret = hmac_tenant(api)
    old = int(time.time()) - 250  # 50 s of its window left
    assert api.post_events("tenant_1", "person_added", BODY, signed(secret, ts=old)).status_code == 200
    [key] = spent_keys(api)
    assert 40 <= api.redis.ttl(key) <= 52
    future = int(time.time()) + 200  # ahead of our clock: valid until now + 500 s
    assert api.post_events("tenant_1", "person_added", BODY, signed(secret, ts=future)).status_code == 200
    assert max(api.redis.ttl(k) for k in spent_keys(api)) >= 490


def test_a_bad_request_cannot_burn_a_valid_signature(api):
    """Only a verified signature is recorded: the captured headers on another body, or a body the
    event refuses, spend nothing; the genuine request is accepted afterwards."""
    secret = hmac_tenant(api)
    headers = signed(secret)
    other = json.dumps({"data": [{"name": "Eve"}]}).encode()
    r = api.post_events("tenant_1", "person_added", other, headers)
    assert r.status_code == 401 and "does not match" in r.get_json()["message"]
    r = api.post_events("tenant_1", "nope", BODY, headers)
    assert r.status_code == 404
    assert spent_keys(api) == []
    assert api.post_events("tenant_1", "person_added", BODY, headers).status_code == 200
    assert api.post_events("tenant_1", "person_added", BODY, headers).status_code == 409


def test_a_request_refused_by_the_rate_limit_does_not_spend_its_signature(make_api):
    api = make_api(rate_limit=1, rate_burst=1, max_elements=1)
    secret = hmac_tenant(api)
    first = json.dumps({"data": [{"name": "first"}]}).encode()
    assert api.post_events("tenant_1", "person_added", first, signed(secret, first)).status_code == 200
    headers = signed(secret)
    r = api.post_events("tenant_1", "person_added", BODY, headers)
    assert r.status_code == 429, r.get_json()
    assert len(spent_keys(api)) == 1  # only the first one's
    # the bucket refills at 1 event/s
    r = wait_until(lambda: (a := api.post_events("tenant_1", "person_added", BODY, headers)).status_code != 429
                   and a, 30, what="the rate limit letting the request in", interval=0.2)
    assert r.status_code == 200 and len(api.executions_in_db()) == 2


def test_a_request_whose_enqueue_fails_does_not_spend_its_signature(api, make_api, redis_server):
    """Admission passes (the record is set) and then the broker refuses the task (a Redis user
    that may not LPUSH): 503, nothing enqueued, the record released, the same request then works."""
    secret = hmac_tenant(api)
    user, password = f"nolpush{secrets.token_hex(4)}", secrets.token_hex(16)
    admin = redis_server.client(0)
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-lpush", "-rpush")
    try:
        url = api.settings.redis_url.replace("redis://", f"redis://{user}:{password}@", 1)
        limited = make_api(redis_url=url)
        headers = signed(secret)
        r = limited.post_events("tenant_1", "person_added", BODY, headers)
        assert r.status_code == 503 and r.headers["Retry-After"], r.get_json()
        assert api.executions_in_db() == [] and spent_keys(api) == []
        assert api.post_events("tenant_1", "person_added", BODY, headers).status_code == 200
        assert api.post_events("tenant_1", "person_added", BODY, headers).status_code == 409
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_idempotency_key_still_replays_the_first_answer_but_cannot_launder_a_signature(api):
    """The same bytes again (a retry after a lost answer) get the first answer and run nothing;
    the signature with another Idempotency-Key (not covered by it) is a replay: 409."""
    secret = hmac_tenant(api)
    headers = signed(secret)
    r1 = api.post_events("tenant_1", "person_added", BODY, {**headers, "Idempotency-Key": "k1"})
    r2 = api.post_events("tenant_1", "person_added", BODY, {**headers, "Idempotency-Key": "k1"})
    assert r1.status_code == r2.status_code == 200 and r1.get_json() == r2.get_json()
    r3 = api.post_events("tenant_1", "person_added", BODY, {**headers, "Idempotency-Key": "k2"})
    assert r3.status_code == 409 and r3.get_json()["message"].startswith("signature_replayed")
    # the refused key was not consumed: k2 with a fresh signature works
    r4 = api.post_events("tenant_1", "person_added", BODY, {**signed(secret, ts=int(time.time()) + 1),
                                                             "Idempotency-Key": "k2"})
    assert r4.status_code == 200 and r4.get_json() != r1.get_json()
    assert len(api.executions_in_db()) == 2


def test_signatures_are_spent_per_tenant(api):
    """Two tenants sharing nothing: each tenant's record is its own (the same body and second
    signed by each tenant's secret are two different signatures anyway)."""
    s1 = hmac_tenant(api, "tenant_1")
    s2 = hmac_tenant(api, "tenant_2")
    ts = int(time.time())
    assert api.post_events("tenant_1", "person_added", BODY, signed(s1, ts=ts)).status_code == 200
    assert api.post_events("tenant_2", "person_added", BODY, signed(s2, ts=ts)).status_code == 200
    assert [k.split(":")[2] for k in spent_keys(api)] == ["tenant_1", "tenant_2"]


# -- rotation with an overlap ------------------------------------------------------------------
def _patch(api, body: dict, tenant: str = "tenant_1"):
    return api.client.patch(f"/api/v1/tenants/{tenant}", json=body, headers=api.admin)


def _accepted(api, secret: str, tenant: str = "tenant_1") -> int:
    body = json.dumps({"data": [{"name": secrets.token_hex(4)}]}).encode()  # a new signature each time
    return api.post_events(tenant, "person_added", body, signed(secret, body)).status_code


def test_rotation_keeps_the_old_secret_until_it_is_revoked(make_api):
    api = make_api(webhook_secret_grace=3600)
    old = hmac_tenant(api)
    before = dt.datetime.now(dt.UTC)
    r = _patch(api, {"webhook_auth": "hmac", "rotate_secret": True})
    assert r.status_code == 200, r.get_json()
    new = r.get_json()["signing_secret"]
    expires = dt.datetime.fromisoformat(r.get_json()["previous_secret_expires_at"])
    assert new != old and dt.timedelta(seconds=3590) < expires - before < dt.timedelta(seconds=3610)
    assert _accepted(api, old) == 200 and _accepted(api, new) == 200  # both, during the overlap
    assert _accepted(api, "not-a-secret") == 401

    r = _patch(api, {"revoke_previous_secret": True})
    assert r.status_code == 200 and r.get_json()["previous_secret_expires_at"] is None
    assert r.get_json()["signing_secret"] == new
    r = api.post_events("tenant_1", "person_added", BODY, signed(old))
    assert r.status_code == 401 and "does not match" in r.get_json()["message"]
    assert _accepted(api, new) == 200
    assert _patch(api, {"revoke_previous_secret": True}).status_code == 200  # nothing left to revoke: fine


def test_the_old_secret_expires_after_the_grace_period(api):
    old = hmac_tenant(api)
    r = _patch(api, {"webhook_auth": "hmac", "rotate_secret": True, "secret_grace_seconds": 2})
    new = r.get_json()["signing_secret"]
    assert r.status_code == 200 and r.get_json()["previous_secret_expires_at"]
    assert _accepted(api, old) == 200
    wait_until(lambda: _accepted(api, old) != 200, 30, what="the previous secret expiring", interval=0.2)
    assert _accepted(api, old) == 401 and _accepted(api, new) == 200


def test_grace_zero_and_leaving_hmac_end_the_overlap_at_once(api):
    old = hmac_tenant(api)
    r = _patch(api, {"webhook_auth": "hmac", "rotate_secret": True, "secret_grace_seconds": 0})
    assert r.status_code == 200 and r.get_json()["previous_secret_expires_at"] is None
    assert _accepted(api, old) == 401
    mid = r.get_json()["signing_secret"]
    r = _patch(api, {"webhook_auth": "hmac", "rotate_secret": True})  # default grace: overlap
    newest = r.get_json()["signing_secret"]
    assert _accepted(api, mid) == 200
    # rotating again keeps only the secret it replaces
    r = _patch(api, {"webhook_auth": "hmac", "rotate_secret": True})
    assert _accepted(api, mid) == 401 and _accepted(api, newest) == 200
    # leaving hmac mode and coming back: no overlap survives
    assert _patch(api, {"webhook_auth": "key"}).status_code == 200
    r = _patch(api, {"webhook_auth": "hmac"})
    assert r.get_json()["previous_secret_expires_at"] is None
    assert _accepted(api, newest) == 401 and _accepted(api, r.get_json()["signing_secret"]) == 200


@pytest.mark.parametrize("body, field", [
    ({"webhook_auth": "hmac", "secret_grace_seconds": 60}, "secret_grace_seconds"),
    ({"webhook_auth": "hmac", "rotate_secret": True, "secret_grace_seconds": -1}, "secret_grace_seconds"),
    ({"webhook_auth": "hmac", "rotate_secret": True, "secret_grace_seconds": 30 * 86400 + 1},
     "secret_grace_seconds"),
    ({"webhook_auth": "hmac", "rotate_secret": True, "revoke_previous_secret": True}, "revoke_previous_secret"),
    ({"revoke_previous_secret": "soon"}, "revoke_previous_secret"),
])
def test_bad_rotation_requests_are_422_naming_the_field(api, body, field):
    hmac_tenant(api)
    r = _patch(api, body)
    assert r.status_code == 422 and field in json.dumps(r.get_json()["errors"]), r.get_json()


def test_revoking_for_an_unknown_tenant_is_404(api):
    r = _patch(api, {"revoke_previous_secret": True}, tenant="nobody")
    assert r.status_code == 404 and "nobody" in r.get_json()["message"]

