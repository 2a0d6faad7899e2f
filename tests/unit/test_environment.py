"""Package `environment:` validation, sealing of stored values, and redaction."""
from __future__ import annotations

import pytest

from jobico_core import secrets
from jobico_core.errors import Invalid
from jobico_core.package import MAX_ENV_VALUE_BYTES, MAX_ENV_VARS, PackageSpec, parse_package
from jobico_core.settings import Settings

BASE = """
id: p
{root}
queues: [{{id: q}}]
runtimes: [{{id: r, moduleref: m.wasm}}]
jobs:
- event: {{id: e, schema: {{id: s, schemaref: s.json}}, supplierqueue: q, runtime: r{event}}}
"""


def pkg(root: str = "", event: str = "") -> PackageSpec:
    return parse_package(BASE.format(root=root, event=event))


def problems(root: str = "", event: str = "") -> dict[str, str]:
    with pytest.raises(Invalid) as exc:
        pkg(root, event)
    assert exc.value.status == 422
    return {e["path"]: e["message"] for e in exc.value.errors["package"]}


def test_plain_values_and_secret_references_with_event_overrides():
    spec = pkg("environment: {LOG_LEVEL: debug, API_TOKEN: {secret: api-token}, RETRIES: 3, FLAG: true}",
               ", environment: {LOG_LEVEL: info, _X1: ''}")
    assert spec.environment_for("e") == {"LOG_LEVEL": {"value": "info"}, "API_TOKEN": {"secret": "api-token"},
                                         "RETRIES": {"value": "3"}, "FLAG": {"value": "true"}, "_X1": {"value": ""}}
    assert spec.secret_references() == {"api-token": "environment.API_TOKEN.secret"}
    again = PackageSpec.from_dict(spec.to_dict())          # what a version row stores and a worker reads
    assert again.environment_for("e") == spec.environment_for("e")


def test_the_camel_case_dialect_keeps_variable_names():
    spec = parse_package("""
package:
  ID: p
  Environment: {LogLevel: debug, Token: {secret: tok}}
  Queues: [{ID: q}]
  Runtimes: [{ID: r, ModuleRef: m.wasm}]
  Jobs: [{Event: {ID: e, Schema: {ID: s, SchemaRef: s.json}, SupplierQueue: q, Runtime: r}}]
""")
    assert spec.environment == {"LogLevel": {"value": "debug"}, "Token": {"secret": "tok"}}


@pytest.mark.parametrize("root, event, path, words", [
    ("environment: {1BAD: x}", "", "environment.1BAD", "POSIX name"),
    ("environment: {BAD-NAME: x}", "", "environment.BAD-NAME", "POSIX name"),
    ("environment: [A, B]", "", "environment", "must be a mapping"),
    ("environment: {A: {secret: ../x}}", "", "environment.A.secret", "secret name"),
    ("environment: {A: {secret: x, value: y}}", "", "environment.A", "exactly one key"),
    ("environment: {A: [1]}", "", "environment.A", "must be a string"),
    ("environment: {A: \"x\\0y\"}", "", "environment.A", "NUL"),
    (f"environment: {{A: {'x' * (MAX_ENV_VALUE_BYTES + 1)}}}", "", "environment.A", "longer than"),
    ("", ", environment: {\"9A\": x}", "jobs[0].event.environment.9A", "POSIX name"),
    ("environment: {" + ", ".join(f"V{i}: x" for i in range(MAX_ENV_VARS + 1)) + "}", "", "environment",
     f"at most {MAX_ENV_VARS}"),
])
def test_refusals_name_the_field(root, event, path, words):
    found = problems(root, event)
    assert path in found and words in found[path], found


def test_merged_count_is_bounded():
    root = "environment: {" + ", ".join(f"A{i}: x" for i in range(40)) + "}"
    event = ", environment: {" + ", ".join(f"B{i}: x" for i in range(40)) + "}"
    found = problems(root, event)
    assert "at most" in found["jobs[0].event.environment"]


def _settings(key: str = "k" * 32, embedded: bool = False) -> Settings:
    return Settings.from_env({"JOBICO_SECRET_KEY": key, "JOBICO_EMBEDDED": "1" if embedded else "0"})


def test_sealed_values_open_only_for_their_tenant_name_and_key():
    st = _settings()
    sealed, kid = secrets.seal(st, "t1", "api-token", "hunter2-value")
    assert sealed.startswith(f"v1:{kid}:") and "hunter2" not in sealed
    assert secrets.seal(st, "t1", "api-token", "hunter2-value")[0] != sealed   # a fresh nonce every time
    assert secrets.open_value(st, "t1", "api-token", sealed) == "hunter2-value"
    with pytest.raises(secrets.SecretError, match="another tenant or name"):
        secrets.open_value(st, "t2", "api-token", sealed)
    with pytest.raises(secrets.SecretError, match="another tenant or name"):
        secrets.open_value(st, "t1", "other", sealed)
    with pytest.raises(secrets.SecretError, match="JOBICO_SECRET_KEY differs"):
        secrets.open_value(_settings("z" * 32), "t1", "api-token", sealed)
    fmt, k, b64 = sealed.split(":")
    tampered = f"{fmt}:{k}:{b64[:-4]}{'AAAA' if not b64.endswith('AAAA') else 'BBBB'}"
    with pytest.raises(secrets.SecretError):
        secrets.open_value(st, "t1", "api-token", tampered)


def test_embedded_default_has_a_development_key_and_nothing_else_runs_without_one():
    assert secrets.key_id(_settings("", embedded=True))
    with pytest.raises(secrets.SecretError, match="JOBICO_SECRET_KEY is not set"):
        secrets.seal(_settings("", embedded=False), "t", "n", "v")


def test_redaction_masks_every_occurrence_longest_first():
    values = secrets.redaction_list(["abc", "abcdef", "", "abc"])
    assert values == ["abcdef", "abc"]
    assert secrets.redact("x abcdef y abc z", values) == "x *** y *** z"
    assert secrets.redact(None, values) is None and secrets.redact("clean", values) == "clean"
