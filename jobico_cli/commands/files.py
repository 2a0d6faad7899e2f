"""``jobico upload-wasm``, ``upload-schema``, ``upload`` and ``files``: the tenant's file repository."""
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from ..client import Client, UsageProblem
from ..output import cells, console, err_console, human_size, info, print_json, safe, short
from ..pyzip import pack_python_dir, python_files
from .common import Commands, JsonOpt, client, read_local

KINDS = {".wasm": "wasm", ".json": "schema", ".py": "python", ".zip": "python"}  # .zip: a Python package


class Kind(str, Enum):
    wasm = "wasm"
    schema = "schema"
    python = "python"


FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, show_default=False,
                                         help="Local file to upload.")]
UploadArg = Annotated[Path, typer.Argument(exists=True, readable=True, show_default=False,
                                           help="Local file to upload, or a directory to upload as a Python "
                                                "package zip (DIR.zip).")]
NameOpt = Annotated[str | None, typer.Option("--name", "-n", show_default=False,
                                                help="Name in the repository (default: the file's name).")]


def kind_for(path: Path) -> str:
    if path.is_dir():
        return "python"   # packed into a package zip (upload_files)
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise UsageProblem(f"cannot tell the kind of {str(path)!r} from its extension: "
                           "use .wasm (module), .py or .zip (Python jobicolet) or .json (schema), "
                           "or upload-wasm / upload-schema")
    return kind


def upload_name(path: Path, name: str | None) -> str:
    """The repository name a local file (or a directory, packed as a zip) is uploaded under."""
    if name:
        return name
    return f"{path.resolve().name}.zip" if path.is_dir() else path.name


def upload_files(c: Client, files: list[tuple[Path, str, str | None]]) -> list[dict]:
    """Upload (path, kind, name) triples with a progress bar on a terminal; return the answers.

    A directory (kind python) is packed into a Python package zip named ``<directory>.zip``.
    """
    payloads = []
    for path, kind, name in files:
        if path.is_dir():
            if kind != "python":
                raise UsageProblem(f"{str(path)!r} is a directory: only a Python package is uploaded from one")
            data = pack_python_dir(path)
            name = upload_name(path, name)
            info(f"Packed {safe(str(path))} into {safe(name)} ({len(python_files(path))} .py files)")
            payloads.append((path, kind, name, data))
        else:
            payloads.append((path, kind, upload_name(path, name), read_local(path)))
    results: list[dict] = []
    if not payloads:
        return results
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        console=err_console, transient=True, disable=not err_console.is_terminal)
    with progress:
        for _path, kind, name, data in payloads:
            task = progress.add_task(f"{safe(name)} ({kind})", total=len(data))
            advance: Callable[[int], None] = lambda n, t=task: progress.advance(t, n)  # noqa: E731
            res = c.upload_file(name, data, kind, on_progress=advance) or {}
            progress.update(task, completed=len(data))
            results.append(res)
            info(f"Uploaded {safe(res.get('name', name))} ({safe(res.get('kind', kind))}, "
                 f"{human_size(res.get('size', len(data)))}, sha256 {safe(short(res.get('sha256'), 12))})")
    return results


def _upload_one(path: Path, kind: str, name: str | None, json_: bool) -> None:
    [res] = upload_files(client(), [(path, kind, name)])
    if json_:
        print_json(res)


commands = Commands()


@commands("upload-wasm")
def upload_wasm(file: FileArg, name: NameOpt = None, json_: JsonOpt = False) -> None:
    """Upload a WebAssembly module to the tenant's repository (a runtime's moduleref)."""
    _upload_one(file, "wasm", name, json_)


@commands("upload-schema")
def upload_schema(file: FileArg, name: NameOpt = None, json_: JsonOpt = False) -> None:
    """Upload a JSON Schema to the tenant's repository (an event's schemaref)."""
    _upload_one(file, "schema", name, json_)


@commands("upload")
def upload(file: UploadArg, name: NameOpt = None, json_: JsonOpt = False) -> None:
    """Upload a file, its kind taken from the extension: .wasm (module), .py (Python jobicolet) or .json (schema).

    A .py file is compiled by the platform's sandboxed CPython 3.15: a syntax error is refused
    with its line. A .zip is a Python package (main.py at its root, plus the .py modules and
    packages it imports; docs/python.md): each of its files is compiled the same way. A
    directory holding main.py is packed into such a zip, DIR.zip (its .py files only).
    """
    _upload_one(file, kind_for(file), name, json_)


@commands("files")
def files(
    kind: Annotated[Kind | None, typer.Option("--kind", "-k", help="Only files of this kind.",
                                                 show_default=False)] = None,
    json_: JsonOpt = False,
) -> None:
    """List the files in the tenant's repository."""
    res = client().list_files(kind.value if kind else None) or {}
    if json_:
        print_json(res)
        return
    items = res.get("items", [])
    if not items:
        info("No files." if kind is None else f"No {kind.value} files.")
        return
    table = Table("NAME", "KIND", "SIZE", "SHA256", "UPLOADED", box=None, header_style="bold")
    for f in items:
        table.add_row(*cells([f.get("name"), f.get("kind"), human_size(f.get("size")),
                              short(f.get("sha256"), 12), f.get("uploaded_at")]))
    console.print(table)


def register(app: typer.Typer) -> None:
    commands.register(app)
