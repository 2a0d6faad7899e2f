"""The sanitizer for tenant-controlled text, and --json output safety."""
import io
import json

import pytest
from rich.console import Console

from jobico_cli.output import json_text, level_text, safe, sanitize, status_text, text


@pytest.mark.parametrize("raw,expected", [
    ("plain text", "plain text"),
    ("a\x1b[31mred\x1b[0m b", "ared b"),                         # SGR colours
    ("\x1b[2J\x1b[Hhome", "home"),                             # clear screen + cursor home
    ("x\x1b]0;pwned title\x07y", "xy"),                        # OSC window title (BEL)
    ("a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),  # OSC 8 hyperlink (ST)
    ("\x9b2Jcls", "cls"),                                      # 8-bit CSI
    ("\x1bPdcs payload\x1b\\after", "after"),                 # DCS
    ("\x1bcreset", "reset"),                                   # RIS (full reset)
    ("lone\x1b", "lone"),
    ("over\rwrite", "over\\rwrite"),                           # CR cannot overwrite the line
    ("bell\x07 nul\x00 del\x7f", "bell\\x07 nul\\x00 del\\x7f"),
    ("bidi\u202eevil", "bidi\\u202eevil"),
    ("keeps\nnew lines\tand tabs", "keeps\nnew lines\tand tabs"),
    ("crlf\r\nline", "crlf\nline"),
    ("[bold red]not markup[/]", "[bold red]not markup[/]"),   # sanitize keeps the text; Text never parses it
    ("ünïcødé ✓ 日本", "ünïcødé ✓ 日本"),
    (None, ""), (42, "42"),
])
def test_sanitize(raw, expected):
    assert sanitize(raw) == expected


def _render(renderable) -> str:
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, color_system="truecolor", width=120, highlight=False).print(renderable)
    return buf.getvalue()


def test_guest_text_is_never_markup_and_never_reaches_the_terminal_as_escapes():
    hostile = "[bold magenta]fake[/] \x1b[31mred\x1b]0;title\x07 [link=http://evil]x[/link]"
    out = _render(text(hostile))
    assert "[bold magenta]fake[/]" in out and "[link=http://evil]x[/link]" in out
    assert "\x1b[31m" not in out and "\x1b]0;" not in out and "\x1b]8;" not in out
    # escaped for embedding into a markup string: printed literally as well
    out = _render(f"value: {safe(hostile)}")
    assert "[bold magenta]fake[/]" in out and "\x1b]0;" not in out


def test_json_text_is_one_parseable_document_with_controls_escaped():
    doc = {"result": "a\x1b[31mb\x9b2J\u202e", "name": "日本", "n": 18446744073709551615}
    out = json_text(doc)
    assert json.loads(out) == doc
    for raw in ("\x1b", "\x9b", "\u202e"):
        assert raw not in out
    assert "日本" in out  # readable UTF-8, not \\u escapes


def test_levels_and_statuses_have_their_styles():
    assert [level_text(i)[0].plain for i in range(7)] == ["debug", "info", "warn", "error", "fatal", "panic", "-"]
    assert level_text(0)[1] == "dim" and level_text(2)[1] == "yellow" and level_text(3)[1] == "red"
    assert level_text(4)[1] == "bold red" and level_text(5)[1] == "bold magenta"
    assert level_text("weird\x1b[31m")[0].plain == "weird"
    assert str(status_text("failed").style) == "red"
    assert status_text("failed", dead_lettered=True).plain == "failed (dead-lettered)"
