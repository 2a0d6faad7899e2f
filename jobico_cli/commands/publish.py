"""``jobico publish <dir|archive>``: deploy a package and its files as one archive, all or nothing."""
import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from ..client import ProgressBody, UsageProblem
from ..output import err_console, human_size, info, print_json, safe
from .common import Commands, JsonOpt, client, read_local

YAML_NAMES = ("package.yaml", "package.yml")


def _references(doc: Any) -> set[str]:
    """Every moduleref/schemaref value of a package (either dialect)."""
    found: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(k, str) and k.lower() in ("moduleref", "schemaref") and isinstance(v, str):
                found.add(v)
            else:
                found |= _references(v)
    elif isinstance(doc, list):
        for v in doc:
            found |= _references(v)
    return found


def pack_directory(directory: Path) -> tuple[bytes, list[str]]:
    """A tar.gz of the directory's package YAML and the files it references that the directory holds."""
    yaml_path = next((directory / n for n in YAML_NAMES if (directory / n).is_file()), None)
    if yaml_path is None:
        candidates = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if len(candidates) != 1:
            raise UsageProblem(f"{str(directory)!r} has no package.yaml"
                               + (f" and several YAML files ({', '.join(p.name for p in candidates)})"
                                  if candidates else ""))
        yaml_path = candidates[0]
    source = read_local(yaml_path, "package file")
    try:
        doc = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise UsageProblem(f"{str(yaml_path)!r} is not valid YAML: {exc}") from None
    members = [(yaml_path.name, source)]
    for name in sorted(_references(doc)):
        path = directory / name
        if path.is_file() and not path.is_symlink():
            members.append((name, read_local(path)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue(), [n for n, _ in members]


commands = Commands()


@commands("publish")
def publish(
    target: Annotated[Path, typer.Argument(exists=True, show_default=False, metavar="DIR | ARCHIVE",
                                           help="A directory holding package.yaml and its files (packed "
                                                "here), or a .zip / .tar.gz archive.")],
    json_: JsonOpt = False,
) -> None:
    """Publish a package and its modules and schemas as one archive: all or nothing.

    \b
      jobico publish ./greet            # packs package.yaml + the files it references
      jobico publish greet.zip          # or a zip / tar.gz made by CI

    The package is created, or gets a new active version; every file is stored, or nothing is.
    The same YAML and files as the active version again: "unchanged", no new version.
    """
    if target.is_dir():
        data, names = pack_directory(target)
        info(f"Packed {len(names)} files ({', '.join(safe(n) for n in names)}): {human_size(len(data))}")
    else:
        data = read_local(target, "archive")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        console=err_console, transient=True, disable=not err_console.is_terminal)
    with progress:
        task = progress.add_task(f"publishing {safe(target.name)}", total=len(data))
        advance: Callable[[int], None] = lambda n: progress.advance(task, n)  # noqa: E731
        res = client().request("POST", "/api/v1/packages/archive", data=ProgressBody(data, advance),
                               headers={"Content-Type": "application/octet-stream"}) or {}
    if json_:
        print_json(res)
        return
    version = (res.get("version") or {}).get("number")
    if res.get("unchanged"):
        info(f"Package [bold]{safe(res.get('id'))}[/] unchanged: version {safe(version)} (active) already has "
             "this YAML and these files; no new version.")
        return
    info(f"Published package [bold]{safe(res.get('id'))}[/] version {safe(version)} (active), "
         f"{len(res.get('files') or [])} files stored.")
    for f in res.get("files") or []:
        info(f"  {safe(f.get('name'))} ({safe(f.get('kind'))}, {human_size(f.get('size') or 0)})")


def register(app: typer.Typer) -> None:
    commands.register(app)
