"""Identifier rules of the public contract: one definition each, for the checks and for the OpenAPI document.

A ``Rule`` is a pattern (valid both as a Python regex and as an ECMA-262 one, so the OpenAPI document can
carry it as is), a maximum length and reserved words. ``Rule.problem`` is what the server checks;
``Rule.json_schema`` is what the API's schemas publish (``jobico_api.fields``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    pattern: str                      # anchored with ^...$; matched whole (fullmatch)
    max_length: int
    hint: str = ""                    # added to the refusal, e.g. "(no directories, no '..')"
    reserved: tuple[str, ...] = ()    # names the pattern allows that mean something else
    reserved_why: str = ""            # ... and what
    _re: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_re", re.compile(self.pattern))

    def problem(self, value: object, what: str) -> str | None:
        """A message when ``value`` breaks the rule, else None."""
        hint = f" {self.hint}" if self.hint else ""
        if not isinstance(value, str):
            return f"{what} must be a string matching {self.pattern}{hint}"
        if not self._re.fullmatch(value):
            return f"{what} {value!r} is not valid: it must match {self.pattern}{hint}"
        if value in self.reserved:
            return f"{what} {value!r} is reserved: {self.reserved_why}"
        return None

    def optional_pattern(self) -> str:
        """The pattern, the empty string allowed too."""
        return f"^(?:{self.pattern[1:-1]})?$"

    def json_schema(self) -> dict:
        """The rule as a JSON Schema (OpenAPI 3.0) string schema."""
        out: dict = {"type": "string", "pattern": self.pattern, "minLength": 1, "maxLength": self.max_length}
        if self.reserved:
            out["not"] = {"enum": list(self.reserved)}
        return out


NAME_RULE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# tenants, events, queues, keys, stored variables, locks
NAME = Rule(NAME_RULE, 64)
# a package id is a name, except the word of the publishing route (POST /api/v1/packages/archive)
PACKAGE = Rule(NAME_RULE, 64, reserved=("archive",),
               reserved_why="POST /api/v1/packages/archive publishes an archive; choose another package id")
# File names in a tenant's repository: same alphabet, a little longer, never a path.
FILE_RULE = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
FILE = Rule(FILE_RULE, 128, hint="(no directories, no '..')")
# an HTTP header name (an RFC 9110 token), e.g. a tenant's submitter header
HEADER = Rule(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$", 64)


def name_problem(value: object, what: str = "id") -> str | None:
    """Return a message when ``value`` breaks the id rule, else None."""
    return NAME.problem(value, what)


def is_valid_name(value: object) -> bool:
    return name_problem(value) is None


def package_name_problem(value: object, what: str = "id") -> str | None:
    return PACKAGE.problem(value, what)


def file_name_problem(value: object) -> str | None:
    return FILE.problem(value, "file name")


def queue_name(tenant: str, package: str, queue: str) -> str:
    """The Celery/Redis queue of a tenant's package queue (contract: Names)."""
    return f"jobico.{tenant}.{package}.{queue}"
