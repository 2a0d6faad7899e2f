"""`jobico new python NAME`: files that deploy as they are (no server needed)."""
import json

from typer.testing import CliRunner

from jobico_cli.main import app
from jobico_core.package import parse_package
from jobico_core.schemas import check_schema_bytes


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_new_python_writes_a_deployable_jobicolet(tmp_path):
    r = run("new", "python", "greeter", "--dir", str(tmp_path / "g"), "--json")
    assert r.exit_code == 0, r.output
    files = json.loads(r.output)["files"]
    assert [p.rsplit("/", 1)[1] for p in files] == ["greeter.py", "greeter.json", "package.yaml"]
    spec = parse_package((tmp_path / "g" / "package.yaml").read_text())
    rt = spec.runtimes["greeter"]
    assert (rt.language, rt.moduleref, spec.events["greeter"].schema.schemaref) == ("python", "greeter.py",
                                                                                    "greeter.json")
    check_schema_bytes((tmp_path / "g" / "greeter.json").read_bytes())
    source = (tmp_path / "g" / "greeter.py").read_text()
    compile(source, "greeter.py", "exec")  # the guest's CPython runs it in tests/python (the CLI flow)
    assert "def event(data):" in source and "return 0, " in source


def test_new_python_refuses_to_overwrite_and_bad_names(tmp_path):
    assert run("new", "python", "a", "--dir", str(tmp_path / "a")).exit_code == 0
    r = run("new", "python", "a", "--dir", str(tmp_path / "a"))
    assert r.exit_code == 2 and "already exists" in r.output and "Traceback" not in r.output
    assert run("new", "python", "a", "--dir", str(tmp_path / "a"), "--force").exit_code == 0
    r = run("new", "python", "bad name", "--dir", str(tmp_path / "b"))
    assert r.exit_code == 2 and "not valid" in r.output
    assert not (tmp_path / "b").exists()


def test_new_python_package_writes_a_directory_that_packs_into_its_zip(tmp_path):
    import io
    import zipfile

    from jobico_cli.pyzip import pack_python_dir
    from jobico_runtime.python import load_python
    r = run("new", "python", "greeter", "--dir", str(tmp_path / "g"), "--package", "--json")
    assert r.exit_code == 0, r.output
    files = [p.split(str(tmp_path / "g") + "/", 1)[1] for p in json.loads(r.output)["files"]]
    assert files == ["greeter/main.py", "greeter/greetings.py", "greeter.json", "package.yaml"]
    spec = parse_package((tmp_path / "g" / "package.yaml").read_text())
    assert (spec.runtimes["greeter"].language, spec.runtimes["greeter"].moduleref) == ("python", "greeter.zip")
    assert "--python " + str(tmp_path / "g" / "greeter") + " " in (tmp_path / "g" / "package.yaml").read_text()
    # the directory packs into a zip the platform's host-side checks accept, the same bytes every time
    (tmp_path / "g" / "greeter" / "__pycache__").mkdir()
    (tmp_path / "g" / "greeter" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "g" / "greeter" / "notes.txt").write_text("left out")
    data = pack_python_dir(tmp_path / "g" / "greeter")
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["greetings.py", "main.py"]
    assert data == pack_python_dir(tmp_path / "g" / "greeter")
    m = load_python(data, "greeter.zip")
    assert "import greetings" in m.source and [p for p, _ in m.files] == ["greetings.py"]
    for path, text in [("main.py", m.source), *m.files]:
        compile(text, path, "exec")  # the guest's CPython runs it in tests/python (the CLI flow)
    r = run("upload", str(tmp_path / "g"))   # a directory without main.py: a usage error, nothing sent
    assert r.exit_code == 2 and "main.py" in r.output and "is missing" in r.output, r.output
