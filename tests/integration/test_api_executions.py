"""Execution listing (cursor pagination, filters) and tenant isolation."""
from __future__ import annotations

import pytest

from .helpers import package_yaml, wasm

pytestmark = pytest.mark.services


def test_list_paginates_newest_first_and_filters(api):
    t = api.deployed_tenant("tenant_1")
    c = api.client
    assert api.deploy(t, package_yaml("billing", "invoice")).status_code == 201
    people = api.post_events("tenant_1", "person_added", {"data": [{"name": str(i)} for i in range(5)]},
                             t.headers).get_json()["executions"]
    invoices = api.post_events("tenant_1", "invoice", {"data": [{"name": "i0"}, {"name": "i1"}]},
                               t.headers).get_json()["executions"]
    everything = people + invoices

    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/v1/executions?limit=3" + (f"&cursor={cursor}" if cursor else "")
        r = c.get(url, headers=t.headers)
        assert r.status_code == 200, r.get_json()
        page = r.get_json()
        assert len(page["items"]) <= 3
        seen += [e["id"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(everything))  # newest first, each once
    assert "logs" not in page["items"][0] and page["items"][0]["status"] == "queued"

    def ids(query: str) -> list[str]:
        r = c.get(f"/api/v1/executions?{query}", headers=t.headers)
        assert r.status_code == 200, r.get_json()
        return [e["id"] for e in r.get_json()["items"]]

    assert ids("package=billing") == list(reversed(invoices))
    assert ids("event=person_added") == list(reversed(people))
    assert ids("package=people&event=invoice") == []
    assert ids("status=queued") == list(reversed(everything))
    assert ids("status=succeeded") == []
    assert ids("submitter=default&limit=2") == list(reversed(everything))[:2]
    assert ids("submitter=someone") == []
    r = c.get("/api/v1/executions?status=exploded", headers=t.headers)
    assert r.status_code == 422 and "status" in r.get_json()["errors"]["query"]
    assert c.get("/api/v1/executions?limit=0", headers=t.headers).status_code == 422
    assert c.get("/api/v1/executions?limit=100000", headers=t.headers).status_code == 422
    r = c.get("/api/v1/executions?cursor=garbage", headers=t.headers)
    assert r.status_code == 400 and "cursor" in r.get_json()["message"]


def test_get_execution_unknown_or_malformed_is_404(api):
    t = api.deployed_tenant("tenant_1")
    c = api.client
    assert c.get("/api/v1/executions/not-a-uuid", headers=t.headers).status_code == 404
    r = c.get("/api/v1/executions/01890a5d-ac96-774b-bcce-b302099a8057", headers=t.headers)
    assert r.status_code == 404 and r.get_json()["code"] == 404
    assert c.get("/api/v1/executions/01890a5d-ac96-774b-bcce-b302099a8057").status_code == 401


def test_tenant_isolation(api):
    a = api.deployed_tenant("tenant_a")
    b = api.deployed_tenant("tenant_b")
    c = api.client
    b_ids = api.post_events("tenant_b", "person_added", {"data": [{"name": "b"}]}, b.headers).get_json()["executions"]
    a_ids = api.post_events("tenant_a", "person_added", {"data": [{"name": "a"}]}, a.headers).get_json()["executions"]
    assert api.upload(b, "secret.json", {"type": "object"}).status_code == 201

    # executions: B's record is invisible to A (404, not 403: no oracle), and A's list has only A's
    assert c.get(f"/api/v1/executions/{b_ids[0]}", headers=a.headers).status_code == 404
    assert c.get(f"/api/v1/executions/{b_ids[0]}", headers=b.headers).status_code == 200
    assert [e["id"] for e in c.get("/api/v1/executions", headers=a.headers).get_json()["items"]] == a_ids
    assert c.get("/api/v1/executions?package=people", headers=a.headers).get_json()["items"][0]["tenant"] == \
        "tenant_a"
    # files: A cannot read B's file, and does not see it listed
    assert c.get("/api/v1/files/secret.json", headers=a.headers).status_code == 404
    assert c.get("/api/v1/files/secret.json/content", headers=a.headers).status_code == 404
    assert "secret.json" not in [f["name"] for f in c.get("/api/v1/files", headers=a.headers).get_json()["items"]]
    # ...nor deploy a package referencing it
    r = api.deploy(a, package_yaml("sneaky", "sneaky_ev", schema="secret.json"))
    assert r.status_code == 422 and "secret.json" in r.get_json()["message"]
    # A's upload of the same name is A's own file; B's is untouched
    assert api.upload(a, "person.json", {"type": "object"}).status_code == 201
    b_meta = c.get("/api/v1/files/person.json", headers=b.headers).get_json()
    a_meta = c.get("/api/v1/files/person.json", headers=a.headers).get_json()
    assert a_meta["sha256"] != b_meta["sha256"]
    # packages: same id in both tenants, each acting on its own
    assert c.delete("/api/v1/packages/people", headers=a.headers).status_code == 204
    assert c.get("/api/v1/packages/people", headers=b.headers).status_code == 200
    assert api.post_events("tenant_b", "person_added", {"data": [{"name": "b"}]}, b.headers).status_code == 200
    # webhook: A's key cannot post to B
    r = api.post_events("tenant_b", "person_added", {"data": [{"name": "x"}]}, a.headers)
    assert r.status_code == 403
    # a tenant declared in a package cannot be another one
    assert api.upload(a, "echo.wasm", wasm("echo")).status_code == 201
    r = api.deploy(a, "tenant: tenant_b\n" + package_yaml("p", "e"))
    assert r.status_code == 422
    assert api.lists() == {"jobico.tenant_b.people.main": 2, "jobico.tenant_a.people.main": 1}
