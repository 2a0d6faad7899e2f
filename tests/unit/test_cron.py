"""Cron triggers without services: expressions, time zones, fire times and the `schedule:` key."""
from __future__ import annotations

import datetime as dt

import pytest

from jobico_core.cron import Cron, CronError, check_expression, zone
from jobico_core.errors import Invalid
from jobico_core.package import PackageSpec, ScheduleSpec, parse_package

UTC = dt.UTC

BASE = """
id: p
queues: [{id: q}]
jobs:
  - event:
      id: tick
      schema: {id: s, schemaref: any.json}
      supplierqueue: q
      runtime: r
      SCHEDULE
runtimes: [{id: r, moduleref: echo.wasm}]
"""


def pkg(schedule: str) -> str:
    return BASE.replace("SCHEDULE", schedule)


def problems(source: str) -> list[dict]:
    with pytest.raises(Invalid) as exc:
        parse_package(source)
    assert exc.value.status == 422
    return exc.value.errors["package"]


def test_five_and_six_fields():
    assert check_expression("  0   8 * *   1-5 ") == "0 8 * * 1-5"
    five = Cron.parse("*/15 * * * *")
    assert not five.has_seconds
    t = dt.datetime(2026, 1, 1, 10, 7, 30, tzinfo=UTC)
    assert five.next_after(t) == dt.datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    six = Cron.parse("*/10 * * * * *")  # seconds first
    assert six.has_seconds
    assert six.next_after(t) == dt.datetime(2026, 1, 1, 10, 7, 40, tzinfo=UTC)
    assert Cron.parse("5 0 8 * * *").next_after(t) == dt.datetime(2026, 1, 2, 8, 0, 5, tzinfo=UTC)


def test_between_is_half_open_and_bounded():
    c = Cron.parse("* * * * * *")
    t = dt.datetime(2026, 1, 1, tzinfo=UTC)
    got = c.between(t, t + dt.timedelta(seconds=3), 100)
    assert got == [t + dt.timedelta(seconds=i) for i in (1, 2, 3)]  # start excluded, end included
    assert c.between(t, t + dt.timedelta(seconds=50), 5) == [t + dt.timedelta(seconds=i) for i in range(46, 51)]
    assert c.between(t, t, 10) == []


def test_time_zone_and_daylight_saving():
    paris = Cron.parse("0 30 8 * * *", "Europe/Paris")
    winter = dt.datetime(2026, 1, 15, 0, 0, tzinfo=UTC)
    summer = dt.datetime(2026, 7, 15, 0, 0, tzinfo=UTC)
    assert paris.next_after(winter) == dt.datetime(2026, 1, 15, 7, 30, tzinfo=UTC)  # UTC+1
    assert paris.next_after(summer) == dt.datetime(2026, 7, 15, 6, 30, tzinfo=UTC)  # UTC+2
    # 02:30 does not exist on the spring-forward day in Paris: it fires once that day, not never
    spring = Cron.parse("30 2 * * *", "Europe/Paris")
    fire = spring.next_after(dt.datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
    assert fire.date() == dt.date(2026, 3, 29)
    assert spring.next_after(fire) > fire


@pytest.mark.parametrize("expr, words", [
    ("* * * *", "has 4 fields"),
    ("* * * * * * *", "has 7 fields"),
    ("61 * * * *", "not a valid cron expression"),
    ("*/0 * * * *", "not a valid cron expression"),
    ("a b c d e", "not a valid cron expression"),
    ("H * * * *", "not a valid cron expression"),
    ("0 0 30 2 *", "never fires"),
    ("", "must be a cron expression"),
    ("x" * 300, "longer than"),
])
def test_bad_expressions_say_why(expr, words):
    with pytest.raises(CronError, match=words):
        check_expression(expr)


def test_bad_time_zones():
    assert zone("Europe/Paris").key == "Europe/Paris"
    for bad in ("Mars/Olympus", "../../etc/passwd", "", 7, "x" * 100):
        with pytest.raises(CronError):
            zone(bad)


def test_schedule_key_forms_and_round_trip():
    spec = parse_package(pkg('schedule: "*/5  * * * *"'))
    assert spec.events["tick"].schedule == ScheduleSpec(cron="*/5 * * * *", timezone="UTC", payload="{}")
    spec = parse_package(pkg("schedule: {cron: '0 0 8 * * 1-5', timezone: America/New_York, "
                             "payload: {b: [1, 2], a: 'é'}}"))
    assert spec.events["tick"].schedule == ScheduleSpec(cron="0 0 8 * * 1-5", timezone="America/New_York",
                                                        payload='{"a":"é","b":[1,2]}')
    assert spec.scheduled_events() == {"tick": spec.events["tick"].schedule}
    assert PackageSpec.from_dict(spec.to_dict()) == spec
    # versions stored before schedules existed have no key at all
    old = spec.to_dict()
    del old["events"]["tick"]["schedule"]
    assert PackageSpec.from_dict(old).events["tick"].schedule is None


def test_camel_case_dialect_keeps_the_payload_as_written():
    spec = parse_package("""
package:
  ID: p1
  Queues: [{ID: q}]
  Jobs:
    - Event:
        ID: e1
        Schema: {ID: s, SchemaRef: s.json}
        SupplierQueue: q
        Runtime: r
        Schedule: {Cron: "0 * * * *", TimeZone: UTC, Payload: {UserName: Ada}}
  Runtimes: [{ID: r, ModuleRef: m.wasm}]
""")
    assert spec.events["e1"].schedule.payload == '{"UserName":"Ada"}'


def test_schedule_errors_name_the_field():
    by_path = {i["path"]: i["message"] for i in problems(pkg(
        "schedule: {cron: '* * *', timezone: Nowhere/City, payload: 2026-01-01, every: 5}"))}
    assert "has 3 fields" in by_path["jobs[0].event.schedule.cron"]
    assert "not a known IANA time zone" in by_path["jobs[0].event.schedule.timezone"]
    assert "plain JSON" in by_path["jobs[0].event.schedule.payload"]  # YAML dates are not JSON
    assert "unknown key 'every'" in by_path["jobs[0].event.schedule.every"]
    assert "'cron' is required" in problems(pkg("schedule: {timezone: UTC}"))[0]["message"]
    assert "must be a cron expression or a mapping" in problems(pkg("schedule: [1, 2]"))[0]["message"]
    assert "not a valid cron expression" in problems(pkg("schedule: '61 * * * *'"))[0]["message"]
    nan = problems(pkg("schedule: {cron: '* * * * *', payload: .nan}"))
    assert nan[0]["path"] == "jobs[0].event.schedule.payload"
