"""The `jobico` CLI against a REAL API (werkzeug server on loopback) on real PostgreSQL, Redis and S3.

Driven both in-process (typer's CliRunner) and as a subprocess (`.venv/bin/jobico`).
No worker runs here, so executions stay `queued`.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobico_cli import config as cfg
from jobico_cli.main import app
from tests.e2e.helpers import served_api

from .helpers import ADMIN_TOKEN, PERSON_SCHEMA, package_yaml, wasm

ROOT = Path(__file__).resolve().parents[2]
JOBICO = ROOT / ".venv" / "bin" / "jobico"


@pytest.fixture
def server(api_settings):
    """The API served over real HTTP on 127.0.0.1:<free port>; yields its URL."""
    with served_api(api_settings) as (_ctx, url):
        yield url


class Cli:
    """Runs the CLI with an isolated JOBICO_HOME and a given token."""

    def __init__(self, url: str, home: Path):
        self.url = url
        self.home = home

    def env(self, token: str | None) -> dict[str, str | None]:
        return {"JOBICO_API_URL": self.url, "JOBICO_TOKEN": token, "JOBICO_HOME": str(self.home),
                "COLUMNS": "200", "JOBICO_SIGNING_SECRET": None}

    def __call__(self, *args: str, token: str | None = None, code: int = 0, input: str | None = None):
        result = CliRunner().invoke(app, [str(a) for a in args], env=self.env(token), input=input)
        assert result.exit_code == code, f"jobico {' '.join(map(str, args))} -> {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output
        return result

    def json(self, *args: str, token: str | None = None):
        result = self(*args, "--json", token=token)
        return json.loads(result.stdout)

    def proc(self, *args: str, token: str | None = None, env: dict | None = None, code: int = 0):
        full = {k: v for k, v in os.environ.items() if not k.startswith("JOBICO_")}
        full.update({k: v for k, v in self.env(token).items() if v is not None})
        full.update(env or {})
        p = subprocess.run([str(JOBICO), *map(str, args)], capture_output=True, text=True, timeout=120, env=full)
        assert p.returncode == code, f"{args} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
        assert "Traceback" not in p.stderr
        return p


@pytest.fixture
def cli(server, tmp_path) -> Cli:
    return Cli(server, tmp_path / "jobico-home")


@pytest.fixture
def tenant(cli) -> str:
    """A tenant created through the CLI; returns its key."""
    doc = cli.json("tenant", "create", "tenant_1", token=ADMIN_TOKEN)
    return doc["key"]


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    (tmp_path / "echo.wasm").write_bytes(wasm("echo"))
    (tmp_path / "person.json").write_text(json.dumps(PERSON_SCHEMA))
    (tmp_path / "people.yaml").write_text(package_yaml("people", "person_added"))
    (tmp_path / "people-v2.yaml").write_text(package_yaml("people", "person_added", extra_events=("person_removed",)))
    return {p.name: p for p in tmp_path.iterdir() if p.is_file()}


# -- tenants and keys (admin) -----------------------------------------------------------
def test_tenant_admin_commands(cli):
    created = cli.json("tenant", "create", "acme", token=ADMIN_TOKEN)
    assert created["tenant"] == "acme" and len(created["key"]) > 16
    human = cli("tenant", "create", "beta", "--webhook-auth", "hmac", token=ADMIN_TOKEN)
    key_line = human.stdout.strip().splitlines()
    assert len(key_line) == 2  # the key, then the signing secret: nothing else on stdout
    assert "Created tenant beta" in human.output and "shown only once" in human.output

    listed = cli.json("tenant", "list", token=ADMIN_TOKEN)
    assert {t["id"]: t["webhook_auth"] for t in listed["items"]} == {"acme": "key", "beta": "hmac"}
    assert "acme" in cli("tenant", "list", token=ADMIN_TOKEN).stdout

    key = cli.json("tenant", "key", "create", "acme", "ci", token=ADMIN_TOKEN)
    assert key["name"] == "ci" and key["key"]
    assert cli.json("whoami", token=key["key"]) == {"tenant": "acme", "key_name": "ci"}
    names = [k["name"] for k in cli.json("tenant", "key", "list", "acme", token=ADMIN_TOKEN)["items"]]
    assert sorted(names) == ["ci", "default"]
    cli("tenant", "key", "delete", "acme", "ci", token=ADMIN_TOKEN)
    assert cli("whoami", token=key["key"], code=1).output  # revoked
    cli("tenant", "key", "delete", "acme", "ci", token=ADMIN_TOKEN, code=1)

    dup = cli("tenant", "create", "acme", token=ADMIN_TOKEN, code=1)
    assert "acme" in dup.output
    bad = cli("tenant", "create", "bad name!", token=ADMIN_TOKEN, code=1)
    assert "A-Za-z0-9" in bad.output  # the id rule is in the message
    denied = cli("tenant", "list", token=created["key"], code=1)  # a tenant key is not the admin token
    assert "admin" in denied.output.lower(), denied.output
    nokey = cli("tenant", "list", token=None, code=1)
    assert "jobico login" in nokey.output

    cli("tenant", "delete", "beta", "--yes", token=ADMIN_TOKEN)
    assert [t["id"] for t in cli.json("tenant", "list", token=ADMIN_TOKEN)["items"]] == ["acme"]


def test_signing_secret_rotation_with_an_overlap(cli, tenant, files):
    """`tenant webhook --rotate-secret [--grace S]` keeps the old secret valid until `tenant
    revoke-previous-secret` (or the grace runs out); `send --signing-secret` signs."""
    cli("deploy", "people", "--config", files["people.yaml"], "--wasm", files["echo.wasm"],
        "--schema", files["person.json"], token=tenant)
    old = cli.json("tenant", "webhook", "tenant_1", "--auth", "hmac", token=ADMIN_TOKEN)["signing_secret"]
    names = iter(range(1000))

    def send(secret: str, code: int = 0):
        return cli("send", "person_added", "--tenant", "tenant_1", "--signing-secret", secret,
                   "--data", json.dumps({"name": f"n{next(names)}"}), token=tenant, code=code)

    send(old)
    rotated = cli("tenant", "webhook", "tenant_1", "--auth", "hmac", "--rotate-secret", "--grace", "3600",
                  token=ADMIN_TOKEN)
    new = rotated.stdout.strip()
    assert new and new != old and "previous signing secret stays valid until" in rotated.output
    assert "revoke-previous-secret tenant_1" in rotated.output
    send(old), send(new)
    done = cli("tenant", "revoke-previous-secret", "tenant_1", token=ADMIN_TOKEN)
    assert "only the current signing secret" in done.output
    assert "does not match" in send(old, code=1).output
    send(new)
    doc = cli.json("tenant", "revoke-previous-secret", "tenant_1", token=ADMIN_TOKEN)
    assert doc["previous_secret_expires_at"] is None and doc["signing_secret"] == new
    assert "--grace needs --rotate-secret" in cli("tenant", "webhook", "tenant_1", "--auth", "hmac",
                                                  "--grace", "5", token=ADMIN_TOKEN, code=2).output
    cli("tenant", "webhook", "tenant_1", "--auth", "hmac", "--rotate-secret", "--grace", "-1",
        token=ADMIN_TOKEN, code=2)
    assert "nobody" in cli("tenant", "revoke-previous-secret", "nobody", token=ADMIN_TOKEN, code=1).output

# -- login / whoami / config file -----------------------------------------------------------
def test_login_writes_a_private_config_used_by_later_commands(cli, tenant):
    p = cli.proc("login", "--api-url", cli.url, "--token", tenant, env={"JOBICO_API_URL": "http://127.0.0.1:9"})
    assert "tenant_1" in p.stderr
    path = cli.home / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cfg.read_config(path) == {"api_url": cli.url, "token": tenant, "tenant": "tenant_1"}
    # no env at all: everything comes from the file
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBICO_")}
    env["JOBICO_HOME"] = str(cli.home)
    p = subprocess.run([str(JOBICO), "whoami", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"tenant": "tenant_1", "key_name": "default"}
    # a flag beats the file: the admin token
    assert cli.json("whoami", "--token", ADMIN_TOKEN, token=None) == {"admin": True}


def test_login_with_a_bad_token_writes_nothing(cli):
    result = cli("login", "--token", "not-a-key", code=1)
    assert "invalid credentials: the token is not known" in result.output, result.output
    assert not (cli.home / "config.toml").exists()
    assert cli("login", code=2).exit_code == 2  # no token and no terminal to ask on


# -- files ---------------------------------------------------------------------------------------
def test_upload_commands_and_files(cli, tenant, files, tmp_path):
    up = cli.json("upload-wasm", files["echo.wasm"], token=tenant)
    assert up["name"] == "echo.wasm" and up["kind"] == "wasm" and up["size"] == files["echo.wasm"].stat().st_size
    cli("upload-schema", files["person.json"], "--name", "person-v1.json", token=tenant)
    cli("upload", files["person.json"], token=tenant)
    cli("upload", files["echo.wasm"], "--name", "copy.wasm", token=tenant)

    listed = cli.json("files", token=tenant)
    assert sorted(f["name"] for f in listed["items"]) == ["copy.wasm", "echo.wasm", "person-v1.json", "person.json"]
    assert sorted(f["name"] for f in cli.json("files", "--kind", "schema", token=tenant)["items"]) == \
        ["person-v1.json", "person.json"]
    table = cli("files", token=tenant).stdout
    assert "echo.wasm" in table and up["sha256"][:12] in table

    bogus = tmp_path / "bogus.wasm"
    bogus.write_bytes(b"this is not webassembly")
    refused = cli("upload", bogus, token=tenant, code=1)
    assert "not a WebAssembly module (bad magic bytes)" in refused.output, refused.output
    cli("files", token="wrong-token", code=1)


# -- packages -----------------------------------------------------------------------------------
def test_deploy_with_uploads_redeploy_rollback_show_delete(cli, tenant, files):
    deployed = cli("deploy", "people", "--config", files["people.yaml"], "--wasm", files["echo.wasm"],
                   "--schema", files["person.json"], token=tenant)
    assert "Uploaded echo.wasm" in deployed.output and "Uploaded person.json" in deployed.output
    assert "Deployed package people version 1" in deployed.output
    assert sorted(f["name"] for f in cli.json("files", token=tenant)["items"]) == ["echo.wasm", "person.json"]

    again = cli("deploy", files["people.yaml"], token=tenant, code=1)
    assert "redeploy" in again.output

    v2 = cli.json("redeploy", "people", "--config", files["people-v2.yaml"], token=tenant)
    assert v2["active_version"] == 2 and v2["version"]["number"] == 2

    pkgs = cli.json("packages", token=tenant)
    assert [(p["id"], p["active_version"]) for p in pkgs["items"]] == [("people", 2)]
    assert "people" in cli("packages", token=tenant).stdout

    shown = cli.json("show", "people", token=tenant)
    assert shown["version"]["number"] == 2 and "person_removed" in shown["version"]["source"]
    assert set(shown["version"]["pins"]) == {"echo.wasm", "person.json"}
    assert [v["number"] for v in shown["versions"]] == [1, 2] or [v["number"] for v in shown["versions"]] == [2, 1]
    human = cli("show", "people", "--version", "1", token=tenant).stdout
    assert "moduleref: echo.wasm" in human and "person_removed" not in human and "Versions" in human

    rolled = cli("rollback", "people", "--version", "1", token=tenant)
    assert "version 1" in rolled.output
    assert cli.json("show", "people", token=tenant)["active_version"] == 1
    missing = cli("rollback", "people", "--version", "9", token=tenant, code=1)
    assert "9" in missing.output
    cli("redeploy", "ghost", "--config", files["people.yaml"], token=tenant, code=2)  # id mismatch, local

    cli("delete", "people", "--yes", token=tenant)
    assert cli.json("packages", token=tenant)["items"] == []
    gone = cli("delete", "people", "--yes", token=tenant, code=1)
    assert "people" in gone.output
    cli("show", "people", token=tenant, code=1)


def test_deploy_problems_are_listed_one_per_line(cli, tenant, files, tmp_path):
    # references a module nobody uploaded: the server names it
    result = cli("deploy", files["people.yaml"], token=tenant, code=1)
    assert "echo.wasm" in result.output
    bad = tmp_path / "typo.yaml"
    bad.write_text(package_yaml("typo").replace("moduleref", "modulref"))
    result = cli("deploy", "typo", "--config", bad, token=tenant, code=1)
    assert "modulref" in result.output and "moduleref" in result.output  # the key and its closest known key
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert any("runtimes[0]" in line for line in lines)


def test_redeploying_the_same_config_and_files_is_unchanged(cli, tenant, files):
    cli("deploy", "people", "--config", files["people.yaml"], "--wasm", files["echo.wasm"],
        "--schema", files["person.json"], token=tenant)
    same = cli("redeploy", "people", "--config", files["people.yaml"], "--wasm", files["echo.wasm"], token=tenant)
    assert "Package people unchanged: version 1 (active)" in same.output and "no new version" in same.output
    doc = cli.json("redeploy", "people", "--config", files["people.yaml"], token=tenant)
    assert doc["unchanged"] is True and doc["version"]["number"] == 1
    assert [v["number"] for v in cli.json("show", "people", token=tenant)["versions"]] == [1]
    # one byte more in the YAML, or another file behind a name: a new version
    changed = files["people.yaml"].read_text() + "# v2\n"
    files["people.yaml"].write_text(changed)
    doc = cli.json("redeploy", "people", "--config", files["people.yaml"], token=tenant)
    assert doc["unchanged"] is False and doc["version"]["number"] == 2
    files["echo.wasm"].write_bytes(wasm("error"))
    doc = cli.json("redeploy", "people", "--config", files["people.yaml"], "--wasm", files["echo.wasm"],
                   token=tenant)
    assert doc["unchanged"] is False and doc["version"]["number"] == 3
    # after a rollback the active version is the one compared with
    cli("rollback", "people", "--version", "1", token=tenant)
    doc = cli.json("redeploy", "people", "--config", files["people.yaml"], token=tenant)
    assert doc["unchanged"] is False and doc["version"]["number"] == 4


def test_a_refused_deploy_leaves_the_repository_files_as_they_were(cli, tenant, files, tmp_path):
    cli("deploy", "people", "--config", files["people.yaml"], "--wasm", files["echo.wasm"],
        "--schema", files["person.json"], token=tenant)
    before = {f["name"]: f["sha256"] for f in cli.json("files", token=tenant)["items"]}
    other = tmp_path / "other"
    other.mkdir()
    (other / "echo.wasm").write_bytes(wasm("error"))          # another module under the same name
    bad = tmp_path / "people-bad.yaml"                        # refused by the server: a missing schema
    bad.write_text(package_yaml("people", "person_added", schema="nope.json"))

    refused = cli("redeploy", "people", "--config", bad, "--wasm", other / "echo.wasm", token=tenant, code=1)
    assert "Uploaded echo.wasm" in refused.output and "nope.json" in refused.output
    assert "Restored echo.wasm to its previous content" in refused.output
    assert {f["name"]: f["sha256"] for f in cli.json("files", token=tenant)["items"]} == before
    # the bytes behind the name are the first module's again, and version 1 is still the only one
    from jobico_cli.client import Client
    meta, data = Client(cli.url, tenant).file_content("echo.wasm")
    assert data == files["echo.wasm"].read_bytes() and meta["sha256"] == before["echo.wasm"]
    assert cli.json("show", "people", token=tenant)["active_version"] == 1

    # a refused deploy of a new package: the same (the file it replaced is back; a new file stays)
    (other / "fresh.json").write_text(json.dumps(PERSON_SCHEMA))
    (tmp_path / "p2.yaml").write_text(package_yaml("people2", "p2_added", schema="nope.json"))
    cli("deploy", "people2", "--config", tmp_path / "p2.yaml", "--wasm", other / "echo.wasm",
        "--schema", other / "fresh.json", token=tenant, code=1)
    after = {f["name"]: f["sha256"] for f in cli.json("files", token=tenant)["items"]}
    assert after["echo.wasm"] == before["echo.wasm"] and "fresh.json" in after

    # an accepted redeploy does replace the file
    ok = cli("redeploy", "people", "--config", files["people-v2.yaml"], "--wasm", other / "echo.wasm", token=tenant)
    assert "Restored" not in ok.output
    assert {f["name"]: f["sha256"] for f in cli.json("files", token=tenant)["items"]}["echo.wasm"] != \
        before["echo.wasm"]


# -- events and executions -------------------------------------------------------------------------
def test_send_and_executions(cli, tenant, files):
    cli("deploy", "people", "--config", files["people.yaml"], "--wasm", files["echo.wasm"],
        "--schema", files["person.json"], token=tenant)

    one = cli("send", "person_added", "--data", '{"name": "Ada"}', token=tenant)  # tenant from whoami
    [first] = one.stdout.split()
    many = cli.json("send", "person_added", "--tenant", "tenant_1", "--data", '[{"name": "Bob"}, {"name": "Cy"}]',
                    token=tenant)
    assert len(many["executions"]) == 2
    events_file = files["person.json"].parent / "events.json"
    events_file.write_text('{"name": "Di", "age": 3}')
    [fourth] = cli.json("send", "person_added", "--file", events_file, token=tenant)["executions"]

    invalid = cli("send", "person_added", "--data", '[{"name": "Ok"}, {"age": "x"}]', token=tenant, code=1)
    assert "data[1]" in invalid.output  # the element's index, then each problem
    cli("send", "no_such_event", "--data", "{}", token=tenant, code=1)

    listed = cli.json("executions", token=tenant)
    ids = [e["id"] for e in listed["items"]]
    assert ids == [fourth, *reversed(many["executions"]), first]  # newest first
    assert {e["status"] for e in listed["items"]} == {"queued"}
    assert listed["next_cursor"] is None

    page = cli("executions", "--package", "people", "--limit", "3", token=tenant)
    assert fourth in page.stdout and first not in page.stdout
    hint = [line for line in page.stderr.splitlines() if "--cursor" in line]
    assert hint and "--limit 3" in hint[0] and "--package people" in hint[0]
    cursor = hint[0].split("--cursor", 1)[1].strip()
    rest = cli.json("executions", "--package", "people", "--limit", "3", "--cursor", cursor, token=tenant)
    assert [e["id"] for e in rest["items"]] == [first]
    assert cli.json("executions", "--status", "succeeded", token=tenant)["items"] == []
    assert cli.json("executions", "--event", "nope", token=tenant)["items"] == []

    rec = cli.json("executions", "show", first, token=tenant)
    assert rec["id"] == first and rec["status"] == "queued" and rec["event"] == "person_added"
    assert json.loads(rec["payload"]) == {"name": "Ada"}
    human = cli("executions", "show", first, token=tenant).stdout
    assert first in human and "queued" in human and "person_added" in human and "Ada" in human
    cli("executions", "show", "0190d5c4-0000-7000-8000-000000000000", token=tenant, code=1)

    # other tenants see nothing of it
    other = cli.json("tenant", "create", "tenant_2", token=ADMIN_TOKEN)["key"]
    assert cli.json("executions", token=other)["items"] == []
    cli("executions", "show", first, token=other, code=1)


def test_send_as_admin_needs_a_tenant(cli, tenant):
    result = cli("send", "person_added", "--data", "{}", token=ADMIN_TOKEN, code=2)
    assert "--tenant" in result.output


# -- the installed console script -------------------------------------------------------------------
def test_subprocess_flow_with_json(cli, files):
    key = json.loads(cli.proc("tenant", "create", "sub_1", "--json", token=ADMIN_TOKEN).stdout)["key"]
    p = cli.proc("deploy", "people", "--config", files["people.yaml"], "--wasm", files["echo.wasm"],
                 "--schema", files["person.json"], "--json", token=key)
    assert json.loads(p.stdout)["active_version"] == 1
    sent = json.loads(cli.proc("send", "person_added", "--data", '{"name": "Z"}', "--json", token=key).stdout)
    listed = json.loads(cli.proc("executions", "--json", token=key).stdout)
    assert [e["id"] for e in listed["items"]] == sent["executions"]
    shown = json.loads(cli.proc("executions", "show", sent["executions"][0], "--json", token=key).stdout)
    assert shown["status"] == "queued"
    p = cli.proc("deploy", files["people.yaml"], token=key, code=1)
    assert "redeploy" in p.stderr and p.stdout == ""
    p = cli.proc("deploy", "other", "--config", files["people.yaml"], token=key, code=2)
    assert "'other'" in p.stderr


def test_send_through_a_separate_gateway_and_list_rejections(cli, tenant, files, api_settings):
    """`jobico send --gateway-url` posts to the gateway's own port; `jobico rejections` lists what the
    MQTT bridge could not accept."""
    from jobico_core.services import rejections

    cli("deploy", "people", "--config", files["people.yaml"], "--wasm", files["echo.wasm"],
        "--schema", files["person.json"], token=tenant)
    with served_api(api_settings, role="gateway") as (ctx, gw):
        sent = cli.json("send", "person_added", "--tenant", "tenant_1", "--data", '{"name": "Gw"}',
                        "--gateway-url", gw, token=tenant)
        assert len(sent["executions"]) == 1
        # the gateway serves no control API: the CLI's other commands need the API URL
        cli("executions", "--api-url", gw, token=tenant, code=1)
        assert cli("rejections", token=tenant).output.strip() == "No rejected events."
        rid = rejections.record(ctx, "tenant_1", event="person_added", trigger="mqtt", source="people/new",
                                reason="invalid", message="event 0 does not match schema 'person.json'",
                                errors={}, payload=b'{"age": "x"}')
        human = cli("rejections", token=tenant).stdout
        assert "people/new" in human and "invalid" in human and "person_added" in human
        doc = cli.json("rejections", "--reason", "invalid", token=tenant)
        assert [i["id"] for i in doc["items"]] == [rid] and doc["items"][0]["payload"] == '{"age": "x"}'
        assert cli.json("rejections", "--event", "other", token=tenant)["items"] == []
        cli("rejections", "--reason", "nope", token=tenant, code=2)
