"""Hostile package YAML for ``POST /api/v1/packages`` (deploy) and ``PUT`` (redeploy).

Each refusal names the problem and where; nothing is deployed, no event route
moves, and the package deployed before the corpus is unchanged.
"""
from __future__ import annotations

import pytest

from .helpers import PACKAGE, package_yaml

pytestmark = pytest.mark.services


def pkg(**replace: str) -> str:
    """A valid package `p2` (event `e2`, schema person.json, module echo.wasm) with textual replacements."""
    text = package_yaml("p2", "e2")
    for old, new in replace.items():
        assert old.replace("_", " ") in text or old in text, old
        text = text.replace(old if old in text else old.replace("_", " "), new)
    return text


BASE = package_yaml("p2", "e2")
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))

# (id, source bytes/str, status, message fragments, extra checks on errors.package)
CASES = [
    ("billion-laughs", LAUGHS, 422, ["anchors and aliases are not allowed", "line 1"]),
    ("anchor-in-package", BASE.replace("  - id: main", "  - &q id: main"), 422, ["anchors and aliases"]),
    ("deep-flow-nesting", "id: p2\nqueues: " + "[" * 10_000 + "]" * 10_000 + "\n", 422,
     ["nests deeper than 32 levels", "line 2"]),
    ("deep-block-nesting", "id: p2\n" + "".join("  " * i + "k:\n" for i in range(200)), 422,
     ["nests deeper than 32 levels"]),
    ("duplicate-key", BASE.replace("id: p2\n", "id: p2\nid: p3\n"), 422, ["duplicate key 'id'", "line 2"]),
    ("unknown-root-key-with-hint", BASE.replace("queues:", "queus:"), 422,
     ["queus", "did you mean 'queues'"]),
    ("unknown-nested-key-with-hint", BASE.replace("supplierqueue:", "suplierqueue:"), 422,
     ["jobs[0].event.suplierqueue", "did you mean 'supplierqueue'"]),
    ("tab-indentation", BASE.replace("  - id: main", "\t- id: main"), 422, ["not valid YAML", "line 3"]),
    ("garbage", "%%%%\n@@@: [}\n", 422, ["not valid YAML"]),
    ("binary-garbage", bytes(range(256)) * 4, 422, ["not UTF-8"]),
    ("latin1-not-utf8", BASE.replace("id: p2", "name: caf\xe9\nid: p2").encode("latin-1"), 422, ["not UTF-8"]),
    ("raw-nul-byte", BASE.replace("id: p2", "name: a\x00b\nid: p2"), 422, ["not valid YAML", "special characters"]),
    ("multiple-documents", BASE + "---\n" + BASE, 422, ["exactly one YAML document"]),
    ("python-object-apply", "id: !!python/object/apply:os.system ['touch {marker}']\n", 422,
     ["not valid YAML", "python/object/apply:os.system"]),
    ("python-object-new", "id: p2\nname: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n", 422,
     ["not valid YAML", "python/object/new"]),
    ("python-name", "id: !!python/name:os.system\n", 422, ["not valid YAML"]),
    ("unknown-local-tag", "id: !evil p2\n", 422, ["not valid YAML", "!evil"]),
    ("bad-timestamp", BASE.replace("id: p2", "id: 2001-13-45"), 422, ["cannot be read", "month"]),
    ("int-5000-digits", BASE.replace("id: p2", "id: 1" + "0" * 5000), 422, ["cannot be read", "digits"]),
    ("bad-explicit-int", BASE.replace("id: p2", "id: !!int abc"), 422, ["cannot be read"]),
    ("empty-explicit-int", BASE.replace("id: p2", "id: !!int"), 422, ["cannot be read"]),
    ("bad-explicit-timestamp", BASE.replace("id: p2", "id: !!timestamp x"), 422, ["cannot be read"]),
    ("huge-file", "id: p2\n# " + "x" * (1 << 20) + "\n", 413, ["larger than 1024 KB"]),
    ("id-breaks-name-rule", BASE.replace("id: p2", "id: ../evil"), 422, ["'../evil' is not valid",
                                                                          "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"]),
    ("id-trailing-newline", BASE.replace("id: p2", 'id: "p2\\n"'), 422, ["is not valid"]),
    ("id-too-long", BASE.replace("id: p2", "id: " + "p" * 65), 422, ["is not valid"]),
    ("event-id-unicode", BASE.replace("id: e2", "id: \u00e9v\u00e9nement"), 422, ["jobs[0].event.id"]),
    ("id-not-a-string", BASE.replace("id: p2", "id: [p2]"), 422, ["must be a string"]),
    ("missing-schema-file", BASE.replace("schemaref: person.json", "schemaref: nope.json"), 422,
     ["'nope.json' is not in the repository"]),
    ("missing-module-file", BASE.replace("moduleref: echo.wasm", "moduleref: nope.wasm"), 422,
     ["'nope.wasm' is not in the repository"]),
    ("schemaref-traversal", BASE.replace("schemaref: person.json", "schemaref: ../acme/person.json"), 422,
     ["schemaref", "no directories"]),
    ("moduleref-is-a-schema", BASE.replace("moduleref: echo.wasm", "moduleref: person.json"), 422,
     ["'person.json' is a schema file, not a WASM module"]),
    ("mainfunc-not-exported", BASE.replace("moduleref: echo.wasm", "moduleref: echo.wasm\n    mainfuncname: nope"),
     422, ["mainfuncname", "nope"]),
    ("event-owned-by-other-package", package_yaml("p2", "person_added"), 409,
     ["'person_added'", "package 'people'", "package 'p2'"]),
    ("chained-event-owned-by-other-package", BASE + "    result:\n      ok: {id: person_added}\n", 422,
     ["'person_added' is not defined in this package"]),
    ("tenant-of-another-tenant", "tenant: other\n" + BASE, 422, ["declares tenant 'other'", "'acme'"]),
    ("limits-above-maxima", BASE.replace("moduleref: echo.wasm",
                                         "moduleref: echo.wasm\n    limits: {memory_mb: 1000000}"), 422,
     ["runtimes[0].limits.memory_mb", "exceeds the platform maximum"]),
    ("limit-not-a-positive-int", BASE.replace("moduleref: echo.wasm",
                                              "moduleref: echo.wasm\n    limits: {fuel: -1}"), 422,
     ["positive integer"]),
    ("unknown-limit", BASE.replace("moduleref: echo.wasm", "moduleref: echo.wasm\n    limits: {timout_ms: 5}"),
     422, ["did you mean 'timeout_ms'"]),
    ("list-where-mapping-expected", BASE.replace("    schema:\n        id: s_e2\n        schemaref: person.json",
                                                 "    schema: [s_e2, person.json]"), 422,
     ["jobs[0].event.schema", "must be a mapping"]),
    ("mapping-where-list-expected", BASE.replace("queues:\n  - id: main", "queues: {id: main}"), 422,
     ["'queues' must be a list"]),
    ("root-is-a-list", "- id: p2\n", 422, ["must be a YAML mapping"]),
    ("root-is-a-scalar", "p2\n", 422, ["must be a YAML mapping"]),
    ("empty-document", "", 422, ["exactly one YAML document"]),
    ("camel-dialect-not-a-mapping", "package: [1, 2]\n", 422, ["'package' must be a mapping"]),
    ("runtime-does-not-exist", BASE.replace("runtime: rt", "runtime: rtt"), 422,
     ["runtime 'rtt' is not defined", "did you mean 'rt'"]),
    ("queue-does-not-exist", BASE.replace("supplierqueue: main", "supplierqueue: mian"), 422,
     ["queue 'mian' is not defined", "did you mean 'main'"]),
    ("non-string-key", BASE + "1: x\n", 422, ["not a string"]),
    ("lock-name-invalid", BASE.replace("runtime: rt", "runtime: rt\n      locks: ['a:b']"), 422,
     ["jobs[0].event.locks[0]", "lock name 'a:b' is not valid"]),
    ("mqtt-wildcard-inside-level", BASE.replace("runtime: rt", "runtime: rt\n      mqtt: {topic: 'a/b#'}"), 422,
     ["jobs[0].event.mqtt.topic", "must stand alone in a level"]),
    ("mqtt-hash-not-last", BASE.replace("runtime: rt", "runtime: rt\n      mqtt: '#/a'"), 422,
     ["jobs[0].event.mqtt.topic", "'#' may only be the last level"]),
    ("mqtt-system-topic", BASE.replace("runtime: rt", "runtime: rt\n      mqtt: '$SYS/broker'"), 422,
     ["starts with '$'"]),
    ("mqtt-empty-level", BASE.replace("runtime: rt", "runtime: rt\n      mqtt: '/a//b'"), 422,
     ["empty level"]),
    ("mqtt-nul", BASE.replace("runtime: rt", "runtime: rt\n      mqtt: \"a\\0b\""), 422,
     ["control characters"]),
    ("mqtt-qos-2", BASE.replace("runtime: rt", "runtime: rt\n      mqtt: {topic: a, qos: 2}"), 422,
     ["jobs[0].event.mqtt.qos", "QoS 2 is not supported"]),
    ("mqtt-qos-float", BASE.replace("runtime: rt", "runtime: rt\n      mqtt: {topic: a, qos: 1.0}"), 422,
     ["jobs[0].event.mqtt.qos"]),
    ("mqtt-topic-list", BASE.replace("runtime: rt", "runtime: rt\n      mqtt: {topic: [a]}"), 422,
     ["jobs[0].event.mqtt.topic", "non-empty MQTT topic"]),
    ("mqtt-unknown-key", BASE.replace("runtime: rt", "runtime: rt\n      mqtt: {topic: a, retain: true}"), 422,
     ["jobs[0].event.mqtt.retain", "unknown key"]),
    ("cron-out-of-range", BASE.replace("runtime: rt", "runtime: rt\n      schedule: '99 * * * *'"), 422,
     ["jobs[0].event.schedule.cron", "not a valid cron expression"]),
    ("cron-never-fires", BASE.replace("runtime: rt", "runtime: rt\n      schedule: '0 0 31 2 *'"), 422,
     ["never fires"]),
    ("cron-timezone-path", BASE.replace("runtime: rt", "runtime: rt\n      schedule: {cron: '* * * * *', "
                                        "timezone: ../../etc/passwd}"), 422, ["not a known IANA time zone"]),
    ("cron-payload-nan", BASE.replace("runtime: rt", "runtime: rt\n      schedule: {cron: '* * * * *', "
                                      "payload: .nan}"), 422, ["schedule.payload", "plain JSON"]),
    ("retries-infinite", BASE.replace("runtime: rt", "runtime: rt\n      retries: .inf"), 422, ["retries"]),
    ("datatype-not-json", BASE.replace("runtime: rt", "runtime: rt\n      datatype: 1"), 422,
     ["datatype 1 is not supported"]),
    ("runtime-type-a-list", BASE.replace("moduleref: echo.wasm", "moduleref: echo.wasm\n    type: []"), 422,
     ["runtime type [] is not known"]),
    ("runtime-type-unknown", BASE.replace("moduleref: echo.wasm", "moduleref: echo.wasm\n    type: 7"), 422,
     ["runtime type 7 is not known"]),
]


def _packages(world):
    return world.client.get("/api/v1/packages", headers=world.acme.headers).get_json()["items"]


@pytest.mark.parametrize("source, status, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_deploy_refused(world, tmp_path, source, status, fragments):
    marker = tmp_path / "executed"
    if isinstance(source, str):
        source = source.replace("{marker}", str(marker))
    before = _packages(world)
    body = world.refused(lambda: world.api.deploy(world.acme, source), status, *fragments)
    assert not marker.exists(), "YAML executed code"
    assert _packages(world) == before
    if status == 422:  # every problem is listed with a path
        assert body["errors"]["package"] and all("path" in e and e["message"] for e in body["errors"]["package"])


def test_redeploy_with_hostile_yaml_keeps_the_active_version(world):
    for source in (LAUGHS, "id: people\nqueues: " + "[" * 5000, PACKAGE.replace("name: People", "name: [")):
        world.refused(lambda source=source: world.api.deploy(world.acme, source, package="people"), 422, "line")
    world.refused(lambda: world.api.deploy(world.acme, package_yaml("p2", "e2"), package="people"), 422,
                  "id is 'p2', not 'people'")


def test_form_encoded_package_is_415(world):
    world.refused(lambda: world.client.post("/api/v1/packages", data={"id": "p2"}, headers=world.acme.headers),
                  415, "raw body")


def test_free_text_names_survive_control_characters(world):
    """`name` fields are free text: a NUL escape or 300 KB of text must not break storage."""
    for name in ('"a\\0b\\x07c"', "x" * 300_000):
        source = package_yaml("p_text", "e_text").replace("id: p_text", f"id: p_text\nname: {name}")
        r = world.api.deploy(world.acme, source)
        assert r.status_code in (201, 422), r.get_data()[:400]
        if r.status_code == 201:
            assert world.client.delete("/api/v1/packages/p_text", headers=world.acme.headers).status_code == 204


def test_zz_world_intact(world):
    world.assert_intact()
