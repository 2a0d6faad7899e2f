"""``jobico deploy``, ``redeploy``, ``rollback``, ``delete``, ``show`` and ``packages``."""
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from ..client import Client, Refused, Unreachable, UsageProblem
from ..output import cells, console, err_console, info, print_json, safe, sanitize, text
from .common import Commands, JsonOpt, client, read_local
from .files import upload_files, upload_name

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", exists=True, dir_okay=False, readable=True, show_default=False,
    help="The package YAML (its id must equal PACKAGE).")]
WasmOpt = Annotated[list[Path] | None, typer.Option(
    "--wasm", exists=True, dir_okay=False, readable=True, show_default=False,
    help="A module to upload first (repeatable); stored under its file name.")]
SchemaOpt = Annotated[list[Path] | None, typer.Option(
    "--schema", exists=True, dir_okay=False, readable=True, show_default=False,
    help="A JSON Schema to upload first (repeatable); stored under its file name.")]
PythonOpt = Annotated[list[Path] | None, typer.Option(
    "--python", exists=True, readable=True, show_default=False,
    help="A Python jobicolet (.py, or a .zip package) to upload first (repeatable); stored under its file name. "
         "A directory holding main.py is packed into a package zip, DIR.zip.")]
PackageArg = Annotated[str, typer.Argument(help="Package id.", show_default=False)]


def yaml_package_id(source: bytes, path: Path) -> str:
    """The package id a YAML declares (``id:``, or ``package: {ID: ...}`` in the camel-case dialect)."""
    try:
        doc = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise UsageProblem(f"{str(path)!r} is not valid YAML: {exc}") from None
    pid: Any = None
    if isinstance(doc, dict):
        pid = doc.get("id")
        inner = doc.get("package")
        if pid is None and isinstance(inner, dict):
            pid = inner.get("ID", inner.get("id"))
    if pid is None:
        raise UsageProblem(f"{str(path)!r} declares no package id (an `id:` key, or `package: {{ID: ...}}`)")
    return str(pid)


def _event_ids(source: bytes) -> list[str]:
    try:
        doc = yaml.safe_load(source)
        root = doc.get("package", doc) if isinstance(doc, dict) and "package" in doc else doc
        ids = []
        for job in root.get("jobs", []) or []:
            ev = job.get("event") or {}
            eid = ev.get("id", ev.get("ID"))
            if eid is not None:
                ids.append(str(eid))
        return ids
    except Exception:  # only a courtesy line; the server validated the file
        return []


Upload = tuple[Path, str, str | None]


def _prepare(target: str, config: Path | None, wasm: list[Path] | None,
             schema: list[Path] | None, python: list[Path] | None = None
             ) -> tuple[str, bytes, list[Upload]]:
    """Read the YAML and check ids locally. Returns (package id, source, files to upload)."""
    if config is None:
        path = Path(target)
        if not path.is_file():
            raise UsageProblem(f"{target!r} is not a file: pass a package YAML, or a package id with "
                               "--config <package.yaml>")
        source = read_local(path, "package file")
        package = yaml_package_id(source, path)
    else:
        source = read_local(config, "package file")
        package = yaml_package_id(source, config)
        if package != target:
            raise UsageProblem(f"package {target!r} does not match the id {package!r} declared in {str(config)!r}")
    files: list[Upload] = ([(p, "wasm", None) for p in wasm or []] + [(p, "python", None) for p in python or []]
                           + [(p, "schema", None) for p in schema or []])
    return package, source, files


def _upload_then(files: list[Upload], action: Callable[[], Any]) -> Any:
    """Upload ``files``, then ``action()`` (the deploy), all or nothing for the repository.

    A deploy is checked by the server only once its files are in the repository, so the
    uploads come first; when the server refuses an upload or the deploy, every file they
    replaced gets its previous content back (same bytes, same sha256): a refused deploy
    leaves the repository's files as they were. A file that did not exist before stays
    (it replaced nothing; no package version pins it).
    """
    if not files:
        return action()
    c = client()
    previous: dict[str, tuple[dict, bytes] | None] = {}
    for path, _kind, name in files:
        n = upload_name(path, name)
        if n not in previous:
            previous[n] = c.file_content(n)
    try:
        upload_files(c, files)
        return action()
    except Refused:
        _restore(c, previous)
        raise


def _restore(c: Client, previous: dict[str, tuple[dict, bytes] | None]) -> None:
    for name, old in previous.items():
        if old is None:
            continue
        meta, data = old
        try:
            now = c.file_info(name)
            if now is not None and now.get("sha256") == meta.get("sha256"):
                continue
            c.upload_file(name, data, meta.get("kind"))
            info(f"Restored {safe(name)} to its previous content (sha256 {safe(str(meta.get('sha256'))[:12])}): "
                 "the deploy was refused.")
        except (Refused, Unreachable) as exc:
            err_console.print(f"Could not restore {safe(name)} to its previous content: {safe(str(exc))}")


def _version_number(res: dict) -> Any:
    v = res.get("version")
    if isinstance(v, dict) and v.get("number") is not None:
        return v["number"]
    return res.get("active_version", v)


def _report(verb: str, package: str, res: dict, source: bytes, json_: bool) -> None:
    if json_:
        print_json(res)
        return
    if res.get("unchanged"):
        info(f"Package [bold]{safe(res.get('id', package))}[/] unchanged: version {safe(_version_number(res))} "
             "(active) already has this YAML and these files; no new version.")
        return
    info(f"{verb} package [bold]{safe(res.get('id', package))}[/] version {safe(_version_number(res))} (active).")
    events = _event_ids(source)
    if events:
        info("Events: " + ", ".join(safe(e) for e in events))


commands = Commands()


@commands("deploy")
def deploy(
    target: Annotated[str, typer.Argument(metavar="PACKAGE.yaml | PACKAGE", show_default=False,
                                          help="A package YAML file, or a package id with --config.")],
    config: ConfigOpt = None, wasm: WasmOpt = None, schema: SchemaOpt = None, python: PythonOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Deploy a new package (its version 1), uploading --wasm/--python/--schema files first.

    \b
      jobico deploy greet.yaml
      jobico deploy greet --config greet.yaml --wasm greet.wasm --schema hello.json
      jobico deploy echo/package.yaml --python echo/echo.py --schema echo/schema.json

    A package that already exists is refused: use `jobico redeploy`. When the server refuses
    the deploy, every repository file the uploads replaced gets its previous content back.
    """
    package, source, files = _prepare(target, config, wasm, schema, python)
    try:
        res = _upload_then(files, lambda: client().deploy(source)) or {}
    except Refused as exc:
        if exc.status == 409 and "redeploy" not in exc.message:
            exc.message += (f"\n  To create a new version of an existing package use: "
                            f"jobico redeploy {package} --config <file.yaml>")
        raise
    _report("Deployed", package, res, source, json_)


@commands("redeploy")
def redeploy(
    target: Annotated[str, typer.Argument(metavar="PACKAGE | PACKAGE.yaml", show_default=False,
                                          help="The package id (with --config), or a package YAML file.")],
    config: ConfigOpt = None, wasm: WasmOpt = None, schema: SchemaOpt = None, python: PythonOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Deploy a new version of an existing package and make it active.

    \b
      jobico redeploy greet --config greet-v2.yaml [--wasm greet.wasm] [--python x.py] [--schema hello.json]

    The same YAML and files as the active version again: "unchanged", no new version.
    When the server refuses it, every repository file the uploads replaced gets its previous
    content back.
    """
    package, source, files = _prepare(target, config, wasm, schema, python)
    res = _upload_then(files, lambda: client().redeploy(package, source)) or {}
    _report("Redeployed", package, res, source, json_)


@commands("rollback")
def rollback(
    package: PackageArg,
    version: Annotated[int, typer.Option("--version", "-v", min=1, show_default=False,
                                         help="The version to make active again.")],
    json_: JsonOpt = False,
) -> None:
    """Make an earlier version of a package the active one."""
    res = client().rollback(package, version) or {}
    if json_:
        print_json(res)
        return
    info(f"Package [bold]{safe(package)}[/] is now at version {safe(res.get('active_version', version))}.")


@commands("delete")
def delete(
    package: PackageArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a package and all its versions (its events stop being accepted, its schedules firing)."""
    if not yes:
        if not sys.stdin.isatty():
            raise UsageProblem(f"refusing to delete package {package!r} without confirmation: pass --yes")
        if not typer.confirm(f"Delete package {sanitize(package)!r} and all its versions?", default=False,
                             err=True):
            err_console.print("Cancelled.")
            raise typer.Exit(1)
    client().delete_package(package)
    info(f"Deleted package {safe(package)}.")


@commands("show")
def show(
    package: PackageArg,
    version: Annotated[int | None, typer.Option("--version", "-v", min=1, show_default=False,
                                                   help="Show this version (default: the active one).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Show a package: a version's YAML, the files it pins, and the version history."""
    res = client().get_package(package, version) or {}
    if json_:
        print_json(res)
        return
    ver = res.get("version") or {}
    active = res.get("active_version")
    title = Text.assemble(("package ", "dim"), text(res.get("id", package), "bold"),
                          ("  version ", "dim"), text(ver.get("number")),
                          (" (active)" if ver.get("number") == active else f"  (active: {active})", "dim"))
    console.print(title)
    source = sanitize(ver.get("source") or "")
    console.print(Panel(Syntax(source, "yaml", line_numbers=False, word_wrap=True,
                               background_color="default"),
                        title=f"created {safe(ver.get('created_at'))}", title_align="left", expand=True))
    pins = ver.get("pins") or {}
    if pins:
        table = Table("FILE", "SHA256", box=None, header_style="bold", title="Pinned files",
                      title_justify="left", title_style="bold")
        for name, sha in sorted(pins.items()) if isinstance(pins, dict) else []:
            table.add_row(*cells([name, sha]))
        console.print(table)
    versions = res.get("versions") or []
    if versions:
        table = Table("VERSION", "CREATED", "", box=None, header_style="bold", title="Versions",
                      title_justify="left", title_style="bold")
        for v in sorted(versions, key=lambda v: v.get("number") or 0, reverse=True):
            table.add_row(*cells([v.get("number"), v.get("created_at"),
                                  Text("active", "green") if v.get("active") else ""]))
        console.print(table)


@commands("packages")
def packages(json_: JsonOpt = False) -> None:
    """List the tenant's packages."""
    res = client().list_packages() or {}
    if json_:
        print_json(res)
        return
    items = res.get("items", [])
    if not items:
        info("No packages. Deploy one with `jobico deploy <package.yaml>`.")
        return
    table = Table("PACKAGE", "ACTIVE", "VERSIONS", "UPDATED", box=None, header_style="bold")
    for p in items:
        versions = p.get("versions")
        count = len(versions) if isinstance(versions, list) else versions
        table.add_row(*cells([p.get("id"), p.get("active_version"), count, p.get("updated_at")]))
    console.print(table)


def register(app: typer.Typer) -> None:
    commands.register(app)


__all__ = ["register", "yaml_package_id"]
