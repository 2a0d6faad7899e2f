"""Where the CLI finds its API URL and token.

Precedence, per setting: the ``--api-url``/``--token`` flags, then the
``JOBICO_API_URL``/``JOBICO_TOKEN`` environment variables, then the config
file ``$JOBICO_HOME/config.toml`` (default ``~/.config/jobico/config.toml``),
then the built-in default URL ``http://127.0.0.1:8080`` (there is no default
token).

The file is tiny TOML written by ``jobico login`` and ``jobico run``::

    api_url = "http://127.0.0.1:8080"
    token = "..."
    tenant = "demo"        # optional: the tenant the token belongs to

It holds a secret, so it is written with mode 0600 (its directory 0700).
"""
from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .client import UsageProblem

DEFAULT_API_URL = "http://127.0.0.1:8080"
CONFIG_NAME = "config.toml"


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    home = env.get("JOBICO_HOME")
    if home:
        return Path(home).expanduser()
    return Path("~/.config/jobico").expanduser()


def config_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / CONFIG_NAME


def read_config(path: Path | str) -> dict[str, str]:
    """The config file's settings ({} when the file does not exist).

    An unreadable or malformed file is a usage problem (exit 2) naming the file,
    never a traceback.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageProblem(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageProblem(f"the config file {path} is not valid TOML: {exc}") from None
    out: dict[str, str] = {}
    for key in ("api_url", "token", "tenant"):
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise UsageProblem(f"the config file {path}: {key} must be a string")
        out[key] = value
    return out


def _toml_string(value: str) -> str:
    """A TOML basic string (escapes what TOML requires, keeps other Unicode)."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def write_config(path: Path | str, api_url: str, token: str, tenant: str | None = None) -> Path:
    """Write the CLI config file atomically with mode 0600 and return its path.

    Used by ``jobico login`` and by ``jobico run`` (the embedded platform).
    Creates missing directories (0700). Replaces the whole file.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ["# written by jobico; holds a secret token (keep it mode 0600)",
             f"api_url = {_toml_string(api_url)}",
             f"token = {_toml_string(token)}"]
    if tenant:
        lines.append(f"tenant = {_toml_string(tenant)}")
    text = "\n".join(lines) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.chmod(path, 0o600)
    return path


@dataclass(frozen=True)
class Config:
    api_url: str
    token: str | None
    tenant: str | None
    path: Path
    api_url_source: str  # "flag", "env", "file" or "default"
    token_source: str | None


def resolve(api_url: str | None = None, token: str | None = None, *,
            env: Mapping[str, str] | None = None, path: Path | None = None) -> Config:
    """Apply the precedence: flag, then environment, then config file, then default."""
    env = os.environ if env is None else env
    path = path or config_path(env)
    file = read_config(path)

    def pick(flag: str | None, env_name: str, key: str) -> tuple[str | None, str | None]:
        if flag:
            return flag, "flag"
        if env.get(env_name):
            return env[env_name], "env"
        if file.get(key):
            return file[key], "file"
        return None, None

    url, url_source = pick(api_url, "JOBICO_API_URL", "api_url")
    if url is None:
        url, url_source = DEFAULT_API_URL, "default"
    tok, tok_source = pick(token, "JOBICO_TOKEN", "token")
    # the file's tenant only describes the file's token
    tenant = file.get("tenant") if tok_source == "file" or (tok and tok == file.get("token")) else None
    return Config(api_url=url.rstrip("/"), token=tok, tenant=tenant, path=path,
                  api_url_source=url_source, token_source=tok_source)
