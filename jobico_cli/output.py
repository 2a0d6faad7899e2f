"""Everything the CLI prints.

* People get rich tables and panels on stdout; messages and progress go to stderr.
* ``--json`` prints exactly one JSON document to stdout (nothing else there).
* Text that came from a tenant's module or data (results, logs, stdout,
  messages, payloads, package sources) is printed as TEXT: never parsed as
  rich markup, and stripped of ANSI/control escape sequences, so a guest
  cannot restyle or repaint the terminal. ``sanitize`` does the stripping;
  ``text`` wraps it in a rich ``Text`` (which is never markup-parsed).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

__all__ = ["console", "err_console", "report_error", "sanitize", "text", "escape", "print_json", "json_text",
           "status_text", "level_text", "LEVELS"]

console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False)

# ESC-introduced sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL/ST), DCS/SOS/PM/APC
# (ESC P/X/^/_ ... ST), and two-character escapes (ESC + one char). The 8-bit C1
# forms (0x9B CSI, 0x9D OSC, 0x90 DCS, ...) are handled the same way.
_ANSI = re.compile(
    r"""
    (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]                           # CSI ... final byte
  | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) .*? (?:\x07|\x1b\\|\x9c|$)   # OSC/DCS/SOS/PM/APC ... BEL or ST
  | \x1b [ -/]* [0-~]                                             # other escapes (ESC c, ESC ( B, ESC 7 ...)
  | \x1b                                                          # a lone ESC
    """,
    re.VERBOSE | re.DOTALL,
)
# Left after removing escape sequences: C0 controls except \t and \n, DEL, C1
# controls, and Unicode bidi controls (which reorder what is displayed).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def sanitize(value: Any) -> str:
    """Text safe to print on a terminal: escape sequences removed, other controls shown as ``\\xNN``.

    Keeps newlines and tabs. ``\\r`` is shown (``\\r``) rather than obeyed, so a
    line cannot overwrite what came before it.
    """
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    s = s.replace("\r\n", "\n")
    s = _ANSI.sub("", s)
    return _CONTROL.sub(_show_control, s)


def _show_control(m: re.Match) -> str:
    code = ord(m.group(0))
    if code == 0x0D:
        return "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text(value: Any, style: str = "") -> Text:
    """A rich ``Text`` of sanitized untrusted content (never interpreted as markup)."""
    return Text(sanitize(value), style=style)


_UNSAFE_IN_JSON = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def json_text(document: Any) -> str:
    """The JSON text ``--json`` prints: indented, UTF-8, with every control character escaped.

    ``json`` already escapes C0 controls (ESC included); DEL, C1 and bidi
    controls are escaped here too (valid JSON: they only occur inside strings).
    """
    raw = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group(0)):04x}", raw)


def print_json(document: Any) -> None:
    """Print exactly one JSON document on stdout (plain write: no wrapping, no colour)."""
    import typer
    typer.echo(json_text(document))


def info(message: str) -> None:
    """A status line for people (stderr, so stdout stays parseable)."""
    err_console.print(message)


STATUS_STYLES = {
    "queued": "cyan", "running": "blue", "succeeded": "green", "failed": "red",
    "trapped": "bold red", "timed_out": "yellow", "limit_exceeded": "yellow",
    "invalid_module": "magenta", "cancelled": "dim", "superseded": "dim",
}


def status_text(status: Any, dead_lettered: bool = False) -> Text:
    t = text(status, STATUS_STYLES.get(str(status), ""))
    if dead_lettered:
        t.append(" (dead-lettered)", style="dim")
    return t


# level -> (label, style): 0 debug dim, 1 info, 2 warn yellow, 3 error red,
# 4 fatal bold red, 5 panic bold magenta, 6 no level.
LEVELS = {
    0: ("debug", "dim"), 1: ("info", ""), 2: ("warn", "yellow"), 3: ("error", "red"),
    4: ("fatal", "bold red"), 5: ("panic", "bold magenta"), 6: ("-", ""),
}


def level_text(level: Any) -> tuple[Text, str]:
    """(label, style for the message) of a log level."""
    try:
        label, style = LEVELS[int(level)]
    except (TypeError, ValueError, KeyError):
        label, style = sanitize(level), ""
    return Text(label, style=style), style


def short(value: Any, n: int = 12) -> str:
    s = sanitize(value)
    return s[:n] + "…" if len(s) > n + 1 else s


def human_size(n: Any) -> str:
    try:
        size = float(n)
    except (TypeError, ValueError):
        return sanitize(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def cells(values: Iterable[Any]) -> list[Text]:
    return [v if isinstance(v, Text) else text("" if v is None else v) for v in values]


def safe(value: Any) -> str:
    """Untrusted text to embed in a rich markup string: sanitized and markup-escaped."""
    return escape(sanitize(value))


def json_line(document: Any) -> str:
    """One compact JSON document on one line (JSON Lines), control characters escaped like ``json_text``."""
    raw = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group(0)):04x}", raw)


def one_line(value: Any, n: int = 60) -> str:
    """Untrusted text for a one-line display: sanitized, line breaks shown as ``⏎``, at most ``n`` characters."""
    s = sanitize(value).replace("\n", "⏎").replace("\t", " ")
    return s if len(s) <= n else s[:max(n - 1, 0)] + "…"


def report_error(message: str) -> None:
    """One error for people on stderr, never folded (``message`` is already sanitized)."""
    err_console.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)


def age_text(seconds: Any) -> str:
    """12.3s, 4m05s, 2h03m."""
    if not isinstance(seconds, (int, float)):
        return "-"
    s = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
