"""Identifier rules of the public contract."""
from __future__ import annotations

import re

NAME_RULE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(NAME_RULE)
# File names in a tenant's repository: same alphabet, a little longer, never a path.
FILE_RULE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_FILE_RE = re.compile(FILE_RULE)


def name_problem(value: object, what: str = "id") -> str | None:
    """Return a message when ``value`` breaks the id rule, else None."""
    if not isinstance(value, str):
        return f"{what} must be a string matching {NAME_RULE}"
    if not _NAME_RE.fullmatch(value) or value in (".", ".."):
        return f"{what} {value!r} is not valid: it must match {NAME_RULE}"
    return None


def is_valid_name(value: object) -> bool:
    return name_problem(value) is None


def file_name_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"file name must be a string matching {FILE_RULE}"
    if not _FILE_RE.fullmatch(value) or ".." in value:
        return (f"file name {value!r} is not valid: it must match {FILE_RULE} "
                "(no directories, no '..')")
    return None


def queue_name(tenant: str, package: str, queue: str) -> str:
    """The Celery/Redis queue of a tenant's package queue (contract: Names)."""
    return f"jobico.{tenant}.{package}.{queue}"
