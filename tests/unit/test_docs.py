"""Docs stay true to the code: the README's configuration table is the settings' own, every
JOBICO_* variable, repository path, make target, `jobico` command and option, and HTTP route
the docs name exists, and every route and make target is documented."""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from typer.main import get_command

from jobico_core.settings import VARIABLES, markdown_table

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "DEVELOPERS.md", *sorted((ROOT / "docs").glob("*.md"))]
LIMIT_PREFIXES = ("JOBICO_LIMIT_", "JOBICO_MAX_", "JOBICO_PYTHON_LIMIT_")


def _lines():
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            yield f"{doc.relative_to(ROOT)}:{n}", line


def test_readme_documents_every_variable():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in VARIABLES if f"`{name}`" not in readme]
    assert not missing, f"README.md lacks {missing}: regenerate with `python -m jobico_core.settings`"


def test_readme_configuration_table_is_generated_from_the_settings():
    readme = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `JOBICO_")]
    generated = [line for line in markdown_table().splitlines() if line.startswith("| `JOBICO_")]
    assert readme == generated, "README.md's configuration table differs from jobico_core.settings.VARIABLES: " \
                                "paste `python -m jobico_core.settings` over it"


def test_every_variable_read_by_the_code_is_declared():
    declared = set(VARIABLES)
    found = set()
    for path in ROOT.glob("jobico_*/**/*.py"):
        found |= set(re.findall(r"JOBICO_[A-Z0-9_]+", path.read_text()))
    undeclared = sorted(v for v in found - declared
                        if not v.startswith(LIMIT_PREFIXES) and not v.endswith("_") and v not in {
                            "JOBICO_API_URL", "JOBICO_TOKEN", "JOBICO_HOME", "JOBICO_DEBUG",
                            # the CLI's own variables, documented in --help
                            "JOBICO_SIGNING_SECRET", "JOBICO_GATEWAY_URL"})
    assert not undeclared, f"read by the code but not in jobico_core.settings.VARIABLES: {undeclared}"


def test_every_variable_the_docs_name_exists():
    """A JOBICO_* in the docs is a setting, or read somewhere in the repository (the CLI, the
    tests, compose, the chart), never a name that was renamed or removed."""
    used = set(VARIABLES)
    sources = [*ROOT.glob("jobico_*/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py"),
               ROOT / "Makefile", ROOT / "docker-compose.yml", *ROOT.glob("docker/*"),
               *(p for p in ROOT.glob("charts/**/*") if p.is_file())]
    for path in sources:
        used |= set(re.findall(r"JOBICO_[A-Z0-9_]+", path.read_text(errors="replace")))
    from jobico_core.limits import Limits
    keys = {f.upper() for f in Limits.__dataclass_fields__}
    unknown = []
    for where, line in _lines():
        for name in re.findall(r"JOBICO_[A-Z0-9_]+", line):
            if name.endswith("_"):  # JOBICO_LIMIT_<KEY>
                continue
            prefix = next((p for p in LIMIT_PREFIXES if name.startswith(p)), None)
            if prefix and name[len(prefix):] in keys:
                continue
            if name not in used:
                unknown.append(f"{where}: {name}")
    assert not unknown, f"variables the docs name that nothing reads: {unknown}"


PATH_RE = re.compile(r"(?<![\w./-])((?:jobico_[a-z]+|tests|bench|examples|charts|docker|scripts|\.ci)/"
                     r"[A-Za-z0-9_./-]*[A-Za-z0-9_])")
# package data: the repository's examples/ inside the wheel (pyproject [tool.setuptools.package-dir])
ALIASES = {"jobico_ops/examples": "examples"}


def test_every_repository_path_the_docs_name_exists():
    missing = []
    for where, line in _lines():
        for path in PATH_RE.findall(line):
            path = path.rstrip(".")
            for alias, real in ALIASES.items():
                if path == alias or path.startswith(alias + "/"):
                    path = real + path[len(alias):]
            if not any(c in path for c in "<*{$") and not (ROOT / path).exists():
                missing.append(f"{where}: {path}")
    assert not missing, f"paths the docs name that do not exist: {missing}"


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_every_make_target_the_docs_name_exists():
    targets = _make_targets()
    unknown = [f"{where}: make {t}" for where, line in _lines()
               for t in re.findall(r"`make ([a-z][a-z0-9-]*)", line) if t not in targets]
    assert not unknown, f"make targets the docs name that the Makefile lacks: {unknown}"


def test_every_target_of_make_help_is_in_the_readme():
    makefile = (ROOT / "Makefile").read_text()
    helped = set(re.findall(r'@echo "make ([a-z][a-z0-9-]*)', makefile))
    assert helped <= _make_targets(), f"make help names missing targets: {helped - _make_targets()}"
    readme = (ROOT / "README.md").read_text()
    missing = sorted(t for t in helped if f"`make {t}`" not in readme)
    assert not missing, f"README.md does not mention {missing} (see its Development table)"


def _cli():
    from jobico_ops.main import app
    return get_command(app)


CLI_RE = re.compile(r"\bjobico((?: +[a-z][a-z0-9-]*)+)([^`|]*)")


def test_every_cli_command_and_option_in_the_docs_exists():
    """Each `jobico <command> [<subcommand>] [--option]` inside backticks or a code block names a
    real command of the `jobico` console script and options that command takes."""
    root = _cli()
    global_opts = {o for p in root.params for o in p.opts}
    problems = []
    for doc in DOCS:
        text = doc.read_text()
        spans = re.findall(r"```.*?```", text, re.S) + re.findall(r"`[^`\n]+`", text)
        for span in spans:
            for line in span.splitlines():
                for m in CLI_RE.finditer(line):
                    words = m.group(1).split()
                    if words[0] not in root.commands:
                        continue  # prose such as "jobico run" is checked; "jobico echo" (a bench row) is not a command
                    cmd, path = root.commands[words[0]], [words[0]]
                    for word in words[1:]:
                        sub = getattr(cmd, "commands", {}).get(word)
                        if sub is None:
                            break
                        cmd, path = sub, [*path, word]
                    if isinstance(cmd, click.Group) or hasattr(cmd, "commands"):
                        if len(words) > len(path):
                            problems.append(f"{doc.name}: `jobico {' '.join(path)}` has no `{words[len(path)]}`")
                        continue
                    opts = {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}
                    for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", m.group(0)):
                        if opt not in opts | global_opts | {"--help"}:
                            problems.append(f"{doc.name}: `jobico {' '.join(path)}` has no option {opt}")
    assert not problems, problems


def test_cli_commands_in_docs_are_found():
    """The check above reads the docs at all: it finds commands the README's tour uses."""
    root = _cli()
    readme = (ROOT / "README.md").read_text()
    named = {m.group(1).split()[0] for line in readme.splitlines() for m in CLI_RE.finditer(line)}
    named &= set(root.commands)
    assert {"run", "deploy", "executions", "stream", "locks"} <= named


def _norm(path: str) -> str:
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path).split("?")[0]


@pytest.fixture
def routes(monkeypatch, tmp_path):
    monkeypatch.setenv("JOBICO_EMBEDDED", "1")
    monkeypatch.setenv("JOBICO_DATA_DIR", str(tmp_path))
    from jobico_api import create_app
    app = create_app()
    return {(m, _norm(r.rule)) for r in app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}
            if not r.rule.startswith(("/static/", "/docs/assets/"))}


METHODS = r"(?:GET|POST|PUT|PATCH|DELETE)"
SPAN_RE = re.compile(rf"`(?:({METHODS}(?:/{METHODS})*) )?((?:/|\.\.\./)[^`\s]*)`")


def _documented_routes(text: str) -> set[tuple[str, str]]:
    """(method, path) of every `METHOD /path` in the text; `.../rest` continues the path before it
    on the same line (`GET /api/v1/files/<name>` / `.../content`), taking the methods of the span
    before it when it names none."""
    named = set()
    for line in text.splitlines():
        prev_path, prev_methods = None, []
        for methods, path in SPAN_RE.findall(line):
            if path.startswith(".../"):
                if prev_path is None:
                    continue
                rest = path[4:]
                head = prev_path.split("/" + rest.split("/")[0])[0] if "/" + rest.split("/")[0] in prev_path \
                    else prev_path
                path = f"{head.rstrip('/')}/{rest}"
            elif "..." in path:
                continue
            methods = methods.split("/") if methods else prev_methods
            named |= {(m, _norm(path)) for m in methods}
            prev_path, prev_methods = path, methods
    return named


def test_documented_routes_reads_the_table_shorthands():
    assert _documented_routes("| `GET /api/v1/files/<name>` / `.../content` | `GET /x`, `DELETE .../y/<n>` |") == {
        ("GET", "/api/v1/files/{}"), ("GET", "/api/v1/files/{}/content"), ("GET", "/x"), ("DELETE", "/x/y/{}")}
    assert _documented_routes("`GET /api/v1/tenants/<t>/keys`, `DELETE .../keys/<name>`") == {
        ("GET", "/api/v1/tenants/{}/keys"), ("DELETE", "/api/v1/tenants/{}/keys/{}")}


def test_api_md_names_every_route_and_only_real_ones(routes):
    api = (ROOT / "docs" / "api.md").read_text()
    named = _documented_routes(api)
    unknown = sorted(n for n in named if n not in routes)
    assert not unknown, f"docs/api.md names routes the app does not have: {unknown}"
    paths = {p for _, p in named} | {_norm(p) for p in re.findall(r"`(/[^`\s]*)`", api)}
    undocumented = sorted((m, p) for m, p in routes if p not in paths)
    assert not undocumented, f"routes docs/api.md does not mention: {undocumented}"
