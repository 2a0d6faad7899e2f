"""The worked example of docs/jobicolets.md, shared by the tests that run it in every language.

``documented_cases()`` reads the table of events and results from the document itself, so
the tests check what the document promises, not a copy of it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "jobicolets.md"
WASM_EXAMPLES = ROOT / "examples" / "jobicolets"
PYTHON_EXAMPLES = ROOT / "examples" / "python"

#: the greet jobicolet in each compiled language: module file -> how it is built
GREET_MODULES = {
    "greet.wasm": "C (clang + wasi-libc, reactor)",
    "greet_rust.wasm": "Rust, wasm32-unknown-unknown (the Rust SDK's ABI and quirks)",
    "greet_rust_wasi.wasm": "Rust, wasm32-wasip1 (libc allocator)",
    "greet_tinygo.wasm": "TinyGo, wasip1",
}
#: sources whose module is not committed, and why (the tests say so instead of passing silently)
NOT_BUILT = {"greet_tinygo.go": "TinyGo is not packaged by Debian nor on PyPI/npm: "
                                "its module could not be built where the examples were built"}


@dataclass(frozen=True)
class Case:
    event: str
    status: str
    code: int
    result: str
    logs: tuple[tuple[int, str], ...]


def documented_cases() -> list[Case]:
    """The rows of the worked example's table (between the `greet-cases` markers)."""
    text = DOC.read_text()
    m = re.search(r"<!-- greet-cases -->(.*?)<!-- /greet-cases -->", text, re.S)
    assert m, f"{DOC} lost its greet-cases table"
    cases = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`{"):
            continue
        event, status, code, result, logs = cells
        log_records = () if logs == "none" else tuple(
            (int(lv), msg) for lv, msg in re.findall(r"`\[(\d)\] ([^`]*)`", logs))
        cases.append(Case(event.strip("`"), status, int(code), result.strip("`"), log_records))
    assert len(cases) >= 4, "the greet-cases table has fewer rows than the document shows"
    return cases
