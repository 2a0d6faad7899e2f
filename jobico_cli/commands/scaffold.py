"""``jobico new python NAME [--package]``: a ready-to-deploy Python jobicolet to start from."""
from pathlib import Path
from typing import Annotated

import typer

from jobico_core.names import name_problem

from ..client import UsageProblem
from ..output import info, print_json, safe
from .common import JsonOpt, command

SOURCE = '''"""{name}: a Python jobicolet.

`event(data)` gets the event, parsed from JSON, and returns (code, result):
code 0 is success, any other code a failure (the package's `error` chain).
A result that is not a string is stored as JSON. Print and exceptions land in
the execution's stdout; `jobico` logs at seven levels. docs/python.md has more.
"""
import jobico


def event(data):
    jobico.info("{name} got", data)
    name = data.get("name", "world") if isinstance(data, dict) else "world"
    return 0, {{"greeting": f"hello, {{name}}"}}
'''

SCHEMA = '''{{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "{name} event",
  "type": "object",
  "properties": {{"name": {{"type": "string", "maxLength": 200}}}}
}}
'''

PACKAGE = '''# {name}: deploy with
#   jobico deploy {dir}/package.yaml --python {dir}/{name}.py --schema {dir}/{name}.json
# then send an event:
#   jobico send {name} --data '{{"name": "Ada"}}'
id: {name}
queues:
  - id: main
jobs:
  - event:
      id: {name}
      datatype: 0
      schema: {{id: {name}-schema, schemaref: {name}.json}}
      supplierqueue: main
      runtime: {name}
runtimes:
  - id: {name}
    moduleref: {name}.py
    type: 1                  # 1 = Python
    # limits: {{timeout_ms: 5000, memory_mb: 256}}   # Python defaults: docs/limits.md
'''


PACKAGE_MAIN = '''"""{name}: a Python jobicolet packaged as a zip (docs/python.md, "Packaging a zip").

This directory is the zip's root: main.py (this file, with the event function) and the
modules and packages it imports (greetings.py here; add more .py files and packages
freely). `jobico deploy ... --python {pkgdir}` packs it into {name}.zip (its .py files only).
"""
import jobico

import greetings


def event(data):
    jobico.info("{name} got", data)
    name = data.get("name", "world") if isinstance(data, dict) else "world"
    return 0, {{"greeting": greetings.greet(name)}}
'''

PACKAGE_HELPER = '''"""A helper module of {name}'s package: `import greetings` in main.py."""


def greet(name):
    return f"hello, {{name}}"
'''


def scaffold_python(name: str, directory: Path, force: bool = False, package: bool = False) -> list[Path]:
    """Write ``<dir>/<name>.py`` (``--package``: ``<dir>/<name>/main.py`` and a helper module),
    ``<name>.json`` and ``package.yaml``; return the paths (the jobicolet's first)."""
    problem = name_problem(name, "jobicolet name")
    if problem:
        raise UsageProblem(problem)
    if not name.replace("-", "_").replace(".", "_").isidentifier():
        raise UsageProblem(f"{name!r} cannot name a Python file: use letters, digits, '-' and '_'")
    if package:
        pkgdir = directory / name
        yaml = PACKAGE.format(name=name, dir=directory).replace(f"--python {directory}/{name}.py",
                                                                f"--python {pkgdir}")
        yaml = yaml.replace(f"moduleref: {name}.py\n", f"moduleref: {name}.zip     # packed from {pkgdir}/\n")
        files = {pkgdir / "main.py": PACKAGE_MAIN.format(name=name, pkgdir=pkgdir),
                 pkgdir / "greetings.py": PACKAGE_HELPER.format(name=name),
                 directory / f"{name}.json": SCHEMA.format(name=name),
                 directory / "package.yaml": yaml}
    else:
        files = {directory / f"{name}.py": SOURCE.format(name=name),
                 directory / f"{name}.json": SCHEMA.format(name=name),
                 directory / "package.yaml": PACKAGE.format(name=name, dir=directory)}
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise UsageProblem(f"{existing[0]} already exists: pick another name or directory, or pass --force")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)


new = typer.Typer(help="Start a new jobicolet from a template.", no_args_is_help=True)


@command(new, "python")
def python(
    name: Annotated[str, typer.Argument(help="The jobicolet's name: its event, runtime and package id.",
                                        show_default=False)],
    directory: Annotated[Path | None, typer.Option(
        "--dir", "-d", file_okay=False, show_default=False,
        help="Where to write the files (default: ./NAME).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")] = False,
    package: Annotated[bool, typer.Option(
        "--package", help="A package instead of one file: NAME/main.py and a helper module, deployed as "
                          "NAME.zip.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Write a Python jobicolet (NAME.py), its event schema (NAME.json) and a package.yaml.

    With --package, the jobicolet is a directory, NAME/ (main.py with the event function and
    a helper module it imports), that `jobico deploy --python DIR` packs into NAME.zip.

    \b
      jobico new python greeter
      jobico deploy greeter/package.yaml --python greeter/greeter.py --schema greeter/greeter.json
      jobico send greeter --data '{"name": "Ada"}'
    """
    directory = directory or Path(name)
    paths = scaffold_python(name, directory, force, package)
    if json_:
        print_json({"name": name, "files": [str(p) for p in paths]})
        return
    for p in paths:
        info(f"wrote {safe(str(p))}")
    module = paths[0].parent if package else paths[0]
    info(f"Deploy it:  jobico deploy {safe(str(directory))}/package.yaml --python {safe(str(module))} "
         f"--schema {safe(str(paths[-2]))}")
    info(f"Try it:     jobico send {safe(name)} --data '{{\"name\": \"Ada\"}}'")


def register(app: typer.Typer) -> None:
    app.add_typer(new, name="new")
