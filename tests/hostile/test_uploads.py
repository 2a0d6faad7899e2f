"""Hostile uploads to ``PUT /api/v1/files/<name>[?kind=]``: bad modules, bad schemas, bad names.

A refused upload stores nothing and never replaces the file already there; a
schema with a remote ``$ref`` is refused and NOTHING is fetched, neither at
upload nor when an event is validated by such a schema.
"""
from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.helpers import wat

from .helpers import assert_error, package_yaml, wasm

pytestmark = pytest.mark.services


def module(*, imports: str = "", memory: bool = True, malloc: str = "(param i32) (result i32) (i32.const 8)",
           free: str | None = "(param i32)", extra: str = "") -> bytes:
    return wat(f"""(module {imports}
      {'(memory (export "memory") 1)' if memory else '(memory 1)'}
      {f'(func (export "malloc") {malloc})' if malloc else ''}
      {f'(func (export "free") {free})' if free is not None else ''}
      (func (export "event") (param i32 i32 i32)) {extra})""")


ECHO = wasm("echo")
GOOD_MODULE = module()

# (id, name, query, bytes, status, message fragments)
CASES = [
    ("not-wasm-named-wasm", "x.wasm", "", b"MZ\x90\x00this is a PE file, not wasm", 422, ["bad magic"]),
    ("text-named-wasm", "x.wasm", "", b"(module)", 422, ["not a valid jobicolet"]),
    ("truncated-wasm", "x.wasm", "", ECHO[:40], 422, ["not a valid jobicolet"]),
    ("wasm-header-only", "x.wasm", "", b"\x00asm\x01\x00\x00\x00", 422, ["missing export"]),
    ("wasm-garbage-section", "x.wasm", "", b"\x00asm\x01\x00\x00\x00\x01\xff\xff\xff\xff\x0f", 422,
     ["not a valid jobicolet"]),
    ("wasm-version-2", "x.wasm", "", b"\x00asm\x02\x00\x00\x00", 422, ["not a valid jobicolet"]),
    ("forbidden-import-env-socket", "x.wasm", "",
     module(imports='(import "env" "socket" (func (param i32) (result i32)))'), 422, ["env.socket"]),
    ("forbidden-import-other-module", "x.wasm", "",
     module(imports='(import "os" "system" (func (param i32)))'), 422, ["os.system"]),
    ("missing-memory-export", "x.wasm", "", module(memory=False), 422, ["memory"]),
    ("missing-malloc", "x.wasm", "", module(malloc=""), 422, ["malloc"]),
    ("malloc-wrong-signature", "x.wasm", "", module(malloc="(param i64) (result i32) (i32.const 8)"), 422,
     ["malloc"]),
    ("missing-free", "x.wasm", "", module(free=None), 422, ["free"]),
    ("empty-wasm", "x.wasm", "", b"", 422, ["empty"]),
    ("empty-schema", "x.json", "", b"", 422, ["empty"]),
    ("oversize-file", "big.wasm", "", b"\x00asm\x01\x00\x00\x00" + b"\x00" * 300_000, 413, ["256 KB"]),
    ("schema-not-json", "x.json", "", b"{type: object}", 422, ["not valid JSON"]),
    ("schema-not-utf8", "x.json", "", b'{"title": "\xff"}', 422, ["not valid JSON"]),
    ("schema-nan", "x.json", "", b'{"maximum": NaN}', 422, ["not valid JSON", "NaN"]),
    ("schema-deep-nesting", "x.json", "", b"[" * 100_000, 422, ["not valid JSON"]),
    ("schema-deep-valid-json", "x.json", "", (b"{\"items\":" * 300) + b"{}" + b"}" * 300, 422, ["nested too deeply"]),
    ("schema-invalid-type-12", "x.json", "", b'{"type": 12}', 422, ["not a valid JSON Schema at type"]),
    ("schema-a-json-array", "x.json", "", b"[1, 2]", 422, ["must be a JSON object"]),
    ("schema-bad-regex", "x.json", "", b'{"pattern": "(unclosed"}', 422, ["not a valid JSON Schema"]),
    ("schema-remote-ref-file", "x.json", "", b'{"$ref": "file:///etc/passwd"}', 422, ["remote $ref"]),
    ("schema-relative-ref", "x.json", "", b'{"properties": {"a": {"$ref": "other.json"}}}', 422,
     ["properties/a/$ref", "remote $ref 'other.json'"]),
    ("schema-dangling-local-ref", "x.json", "", b'{"properties": {"a": {"$ref": "#/$defs/nope"}}}', 422,
     ["'#/$defs/nope' does not resolve"]),
    ("name-traversal", "../x.wasm", "", GOOD_MODULE, 422, ["no directories"]),
    ("name-with-directory", "a/b.json", "", b"{}", 422, ["no directories"]),
    ("name-encoded-dotdot", "%2e%2e", "", b"{}", 422, ["'..' is not valid"]),
    ("name-encoded-traversal", "..%2Fperson.json", "", b"{}", 422, ["no directories"]),
    ("name-nul-byte", "a%00.json", "", b"{}", 404, ["control character"]),
    ("name-very-long", "a" * 300 + ".json", "", b"{}", 422, ["is not valid"]),
    ("name-hidden-dotfile", ".env.json", "", b"{}", 422, ["is not valid"]),
    ("name-unicode", "%C3%A9.json", "", b"{}", 422, ["is not valid"]),
    ("unknown-extension-no-kind", "notes.txt", "", b"{}", 422, ["cannot tell the kind", ".wasm", ".json"]),
    ("kind-mismatch-json-as-wasm", "s.json", "?kind=wasm", b'{"type": "object"}', 422, ["bad magic"]),
    ("kind-mismatch-wasm-as-schema", "m.wasm", "?kind=schema", GOOD_MODULE, 422, ["not valid JSON"]),
    ("kind-unknown", "m.wasm", "?kind=exe", GOOD_MODULE, 422, ["kind"]),
    ("replace-good-schema-with-garbage", "person.json", "", b"\x00\x01garbage", 422, ["not valid JSON"]),
    ("replace-good-module-with-schema", "echo.wasm", "", b'{"type": "object"}', 422, ["bad magic"]),
]


def _files(world):
    return world.client.get("/api/v1/files", headers=world.acme.headers).get_json()["items"]


@pytest.mark.parametrize("name, query, data, status, fragments", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_upload_refused(world, name, query, data, status, fragments):
    before = _files(world)
    world.refused(lambda: world.client.put(f"/api/v1/files/{name}{query}", data=data, headers={
        **world.acme.headers, "Content-Type": "application/octet-stream"}), status, *fragments)
    assert _files(world) == before


@pytest.mark.parametrize("url", ["/api/v1/files/a%00b", "/api/v1/files/..%2F..%2Fetc%2Fpasswd/content",
                                 "/api/v1/files/%2e%2e/content", "/api/v1/packages/p%00", "/api/v1/tenants/a%00",
                                 "/api/v1/executions?package=a%00b"])
def test_reading_weird_names_is_a_clean_4xx(world, url):
    headers = world.api.admin if "/tenants" in url else world.acme.headers
    r = world.client.get(url, headers=headers)
    assert r.status_code in (400, 404, 422), r.get_data()[:300]
    assert_error(r, r.status_code)


# -- remote $ref: a local HTTP server proves nothing is fetched --------------------------
class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def ref_server():
    _Recorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.hits
    finally:
        server.shutdown()
        server.server_close()


def test_remote_ref_is_refused_at_upload_and_never_fetched(world, ref_server, monkeypatch):
    base, hits = ref_server
    with urllib.request.urlopen(f"{base}/probe.json") as resp:  # the recorder works: a fetch WOULD show
        assert resp.status == 200
    assert hits == ["/probe.json"]
    hits.clear()

    remote = {"type": "object", "properties": {"name": {"$ref": f"{base}/x.json"}}}
    world.refused(lambda: world.api.upload(world.open, "remote.json", remote), 422,
                  "remote $ref", f"{base}/x.json", "properties/name/$ref")
    world.refused(lambda: world.api.upload(world.open, "remote2.json", {"$ref": f"{base}/y.json#/defs/a"}), 422,
                  "remote $ref")
    assert hits == []

    # A schema stored before uploads refused remote refs (simulated by skipping the check):
    # validating an event with it must not fetch either, and says what is wrong.
    from jobico_core.services import files
    monkeypatch.setattr(files, "check_schema_bytes", lambda data: json.loads(data))
    assert world.api.upload(world.open, "legacy.json", remote).status_code == 201
    monkeypatch.undo()
    r = world.api.deploy(world.open, package_yaml("legacy", "legacy_added", schema="legacy.json"))
    assert r.status_code == 201, r.get_json()
    try:
        body = world.refused(lambda: world.post({"data": [{"name": "Ada"}]}, tenant="open", event="legacy_added",
                                                auth=False), 422, "schema cannot be used", "remote $ref")
        assert body["errors"]["schema"][0]["path"] == "properties/name/$ref"
        assert hits == []
    finally:
        assert world.client.delete("/api/v1/packages/legacy", headers=world.open.headers).status_code == 204


def test_validator_registry_refuses_retrieval_directly(ref_server):
    """The validator the webhook uses cannot fetch, whatever the schema says."""
    import referencing.exceptions
    from jsonschema import Draft202012Validator

    from jobico_core.schemas import NO_REMOTE

    base, hits = ref_server
    v = Draft202012Validator({"$ref": f"{base}/x.json"}, registry=NO_REMOTE)
    with pytest.raises(referencing.exceptions.Unresolvable):
        v.is_valid("x")
    assert hits == []


def test_local_and_embedded_refs_and_metaschema_refs_are_fine(world):
    ok = {"$id": "https://example.com/root.json",
          "$defs": {"name": {"$id": "name.json", "type": "string"}, "age": {"type": "integer"}},
          "properties": {"name": {"$ref": "name.json"}, "age": {"$ref": "#/$defs/age"},
                         "meta": {"$ref": "https://json-schema.org/draft/2020-12/schema"}}}
    r = world.api.upload(world.open, "embedded.json", ok)
    assert r.status_code == 201, r.get_json()


def test_zz_world_intact(world):
    world.assert_intact()
