"""Publish by archive (POST /api/v1/packages/archive, `jobico publish`): atomic, and every attack refused."""
from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from jobico_core.storage import blob_key, sha256_hex

from .helpers import PERSON_SCHEMA, package_yaml, wasm

pytestmark = pytest.mark.services

SCHEMA = json.dumps(PERSON_SCHEMA).encode()


def make_zip(members: list[tuple], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """members: (name, bytes) or (name, bytes, unix mode)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for m in members:
            zi = zipfile.ZipInfo(m[0])
            zi.compress_type = compression
            if len(m) > 2:
                zi.external_attr = m[2] << 16
            zf.writestr(zi, m[1])
    return buf.getvalue()


def make_tgz(members: list[tuple]) -> bytes:
    """members: (name, bytes) or (name, bytes, tar type, link name)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for m in members:
            ti = tarfile.TarInfo(m[0])
            if len(m) > 2:
                ti.type = m[2]
                ti.linkname = m[3] if len(m) > 3 else ""
                tf.addfile(ti)
            else:
                ti.size = len(m[1])
                tf.addfile(ti, io.BytesIO(m[1]))
    return buf.getvalue()


def _lying_count(data: bytes) -> bytes:
    """The end-of-central-directory record claims 3 entries; the directory holds 73."""
    pos = data.rfind(b"PK\x05\x06")
    three = (3).to_bytes(2, "little")
    return data[:pos + 8] + three + three + data[pos + 12:]


def good_members(pkg: str = "people", event: str = "person_added") -> list[tuple]:
    return [("package.yaml", package_yaml(pkg, event).encode()), ("echo.wasm", wasm("echo")),
            ("person.json", SCHEMA)]


def publish(api, t, data: bytes):
    return api.client.post("/api/v1/packages/archive", data=data, headers={**t.headers,
                                                                          "Content-Type": "application/zip"})


def _state(api, tenant: str) -> dict:
    with api.ctx.db.engine.connect() as conn:
        return {table: conn.execute(text(f"SELECT count(*) FROM {table} WHERE {col} = :t"), {"t": tenant}).scalar()
                for table, col in (("files", "tenant_id"), ("packages", "tenant_id"), ("event_routes", "tenant_id"))}


def test_publish_zip_then_tar_gz_creates_versions_and_stores_files(api):
    t = api.tenant("pub1")
    r = publish(api, t, make_zip(good_members()))
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["id"] == "people" and body["version"]["number"] == 1 and body["active_version"] == 1
    assert {f["name"]: f["kind"] for f in body["files"]} == {"echo.wasm": "wasm", "person.json": "schema"}
    assert body["version"]["pins"]["echo.wasm"] == sha256_hex(wasm("echo"))
    assert body["unchanged"] is False
    # the same YAML and files again, in a directory as `tar czf pkg.tgz pkg/` makes it: unchanged
    members = [(f"pkg/{n}", d) for n, d in good_members()]
    r = publish(api, t, make_tgz([("pkg/", b"", tarfile.DIRTYPE), *members]))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["unchanged"] is True and r.get_json()["version"]["number"] == 1
    assert r.get_json()["active_version"] == 1 and [v["number"] for v in r.get_json()["versions"]] == [1]
    # another module under the same name: a new version
    members = [(f"pkg/{n}", wasm("error") if n == "echo.wasm" else d) for n, d in good_members()]
    r = publish(api, t, make_tgz([("pkg/", b"", tarfile.DIRTYPE), *members]))
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["version"]["number"] == 2 and r.get_json()["unchanged"] is False
    assert api.post_events("pub1", "person_added", {"data": [{"name": "Ada"}]}, t.headers).status_code == 200
    # a referenced file may come from the repository instead of the archive (and a changed YAML is a version)
    yaml2 = package_yaml(extra_events=("person_removed",)).encode()
    r = publish(api, t, make_zip([("package.yaml", yaml2), ("echo.wasm", wasm("echo"))]))
    assert r.status_code == 201 and r.get_json()["version"]["number"] == 3
    assert r.get_json()["version"]["pins"]["person.json"] == sha256_hex(SCHEMA)


ATTACKS = [
    ("zip symlink", lambda: make_zip([*good_members(), ("person2.json", b"/etc/passwd", stat.S_IFLNK | 0o777)]),
     422, "person2.json", "symbolic links"),
    ("tar symlink", lambda: make_tgz([*good_members(), ("link.json", b"", tarfile.SYMTYPE, "/etc/passwd")]),
     422, "link.json", "links"),
    ("tar hardlink", lambda: make_tgz([*good_members(), ("hard.json", b"", tarfile.LNKTYPE, "person.json")]),
     422, "hard.json", "links"),
    ("tar device", lambda: make_tgz([*good_members(), ("dev.json", b"", tarfile.CHRTYPE)]), 422, "dev.json",
     "devices"),
    ("tar fifo", lambda: make_tgz([*good_members(), ("fifo.json", b"", tarfile.FIFOTYPE)]), 422, "fifo.json",
     "FIFOs"),
    ("absolute path", lambda: make_tgz([*good_members(), ("/etc/cron.d/x.json", SCHEMA)]), 422,
     "/etc/cron.d/x.json", "absolute"),
    ("dot-dot path", lambda: make_zip([*good_members(), ("../../x.json", SCHEMA)]), 422, "../../x.json", "'..'"),
    ("backslash path", lambda: make_zip([*good_members(), ("..\\x.json", SCHEMA)]), 422, "..\\x.json",
     "backslash"),
    ("duplicate zip name", lambda: make_zip([*good_members(), ("echo.wasm", wasm("echo"))]), 422, "echo.wasm",
     "duplicate"),
    ("duplicate tar name", lambda: make_tgz([*good_members(), ("person.json", SCHEMA)]), 422, "person.json",
     "duplicate"),
    ("same file name twice", lambda: make_zip([*good_members(), ("sub/person.json", SCHEMA)]), 422,
     "sub/person.json", "flat"),
    ("oversize member", lambda: make_zip([*good_members(), ("big.wasm", os.urandom(257 * 1024))]), 413,
     "big.wasm", "larger than 256 KB"),
    ("too many zip members", lambda: make_zip([*good_members(), *((f"f{i}.json", b"{}") for i in range(70))]),
     413, "", "more than 64 members"),
    ("too many tar members", lambda: make_tgz([*good_members(), *((f"f{i}.json", b"{}") for i in range(70))]),
     413, "f61.json", "more than 64 members"),
    ("zip record claiming fewer members", lambda: _lying_count(make_zip(
        [*good_members(), *((f"f{i}.json", b"{}") for i in range(70))])), 413, "f61.json", "more than 64 members"),
    ("zip central directory too large", lambda: _lying_count(make_zip(
        [*good_members(), *((f"{'d' * 1000}{i}.json", b"{}") for i in range(64))])), 413, "",
     "central directory"),
    ("zip bomb", lambda: make_zip([*good_members(), *((f"z{i}.json", bytes(250 * 1024)) for i in range(6))]),
     413, "z4.json", "times its size"),
    ("tar.gz bomb", lambda: make_tgz([*good_members(), *((f"z{i}.json", bytes(250 * 1024)) for i in range(6))]),
     413, "", "times its size"),
    ("unreferenced member", lambda: make_zip([*good_members(), ("notes.json", SCHEMA)]), 422, "notes.json",
     "not referenced"),
    ("no package yaml", lambda: make_zip(good_members()[1:]), 422, "", "no package YAML"),
    ("invalid member", lambda: make_zip([good_members()[0], ("echo.wasm", b"\0asm junk"), good_members()[2]]),
     422, "echo.wasm", "not a valid jobicolet"),
    ("not an archive", lambda: b"just some bytes", 415, "", "neither a zip"),
    ("truncated zip", lambda: make_zip(good_members())[:200], 422, "", "not a readable zip"),
]


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("name, build, status, member, words", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_every_attack_is_refused_naming_the_member_and_leaves_nothing(api, name, build, status, member, words):
    t = api.tenant("pub2")
    r = publish(api, t, build())
    body = r.get_json()
    assert r.status_code == status, body
    assert words in body["message"], body
    assert body["errors"].get("archive", [{}])[0].get("member", "") == member or member in body["message"], body
    assert _state(api, "pub2") == {"files": 0, "packages": 0, "event_routes": 0}


def test_total_size_limit(make_api):
    api = make_api(max_archive_kb=400)
    t = api.tenant("pub3")
    members = [*good_members(), *((f"r{i}.wasm", os.urandom(200 * 1024)) for i in range(3))]
    r = publish(api, t, make_zip(members, compression=zipfile.ZIP_STORED))
    assert r.status_code == 413 and "400 KB" in r.get_json()["message"], r.get_json()


def test_a_publish_failing_after_storing_blobs_leaves_no_row_and_no_blob(api):
    t = api.tenant("pub4")
    module = wasm("log")   # a module this tenant never uploaded
    yaml_text = package_yaml(module="log.wasm", schema="missing.json")   # the schema is nowhere
    r = publish(api, t, make_zip([("package.yaml", yaml_text.encode()), ("log.wasm", module)]))
    assert r.status_code == 422 and "missing.json" in r.get_json()["message"], r.get_json()
    assert _state(api, "pub4") == {"files": 0, "packages": 0, "event_routes": 0}
    assert not api.ctx.store.exists(blob_key("pub4", sha256_hex(module)))
    # an event id owned by another package: refused (409) after the blobs were written, nothing kept
    assert publish(api, t, make_zip(good_members("first"))).status_code == 201
    before = _state(api, "pub4")
    r = publish(api, t, make_zip([("package.yaml", package_yaml("second", module="log.wasm").encode()),
                                  ("log.wasm", module)]))
    assert r.status_code == 409 and "owned by package 'first'" in json.dumps(r.get_json()), r.get_json()
    assert _state(api, "pub4") == before
    assert not api.ctx.store.exists(blob_key("pub4", sha256_hex(module)))


def test_cli_publish_packs_a_directory_and_sends_an_archive(api, tmp_path):
    """`jobico publish DIR` against the real API (a werkzeug server in a thread)."""
    import threading

    from werkzeug.serving import make_server

    from jobico_cli.main import app as cli_app
    t = api.tenant("pub5")
    server = make_server("127.0.0.1", 0, api.app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        d = tmp_path / "people"
        d.mkdir()
        for name, data in good_members():
            (d / name).write_bytes(data)
        (d / "README.md").write_text("not sent")
        env = {"JOBICO_API_URL": f"http://127.0.0.1:{server.server_port}", "JOBICO_TOKEN": t.key,
               "JOBICO_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
        res = CliRunner().invoke(cli_app, ["publish", str(d)], env=env)
        assert res.exit_code == 0, res.output
        assert "Packed 3 files" in res.output and "version 1" in res.output
        archive = tmp_path / "people.zip"
        archive.write_bytes(make_zip(good_members()))
        res = CliRunner().invoke(cli_app, ["publish", str(archive), "--json"], env=env)
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)   # the same content again: no new version
        assert doc["unchanged"] is True and doc["version"]["number"] == 1, res.output
        res = CliRunner().invoke(cli_app, ["publish", str(d)], env=env)
        assert res.exit_code == 0 and "unchanged: version 1" in res.output and "no new version" in res.output
        (d / "package.yaml").write_text(package_yaml(extra_events=("person_removed",)))
        res = CliRunner().invoke(cli_app, ["publish", str(d)], env=env)
        assert res.exit_code == 0 and "Published package people version 2" in res.output, res.output
        bad = tmp_path / "bad.zip"
        bad.write_bytes(make_zip([*good_members(), ("../evil.json", SCHEMA)]))
        res = CliRunner().invoke(cli_app, ["publish", str(bad)], env=env)
        assert res.exit_code == 1 and "../evil.json" in res.output and "Traceback" not in res.output
    finally:
        server.shutdown()
