"""Shared pieces of the commands: global options, the client, local file reading."""
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

try:  # typer >= 0.22 vendors click as typer._click
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover
    from click import get_current_context

from .. import config as cfg
from ..client import Client, CliError, UsageProblem
from ..output import report_error

API_URL_HELP = "Jobico API URL \\[env: JOBICO_API_URL; else the config file; default: http://127.0.0.1:8080]"
TOKEN_HELP = "Bearer token: a tenant key or the admin token \\[env: JOBICO_TOKEN; else the config file]"

ApiUrlOpt = Annotated[str | None, typer.Option("--api-url", help=API_URL_HELP, metavar="URL",
                                                  show_default=False, rich_help_panel="Connection")]
TokenOpt = Annotated[str | None, typer.Option("--token", help=TOKEN_HELP, metavar="TOKEN",
                                                 show_default=False, rich_help_panel="Connection")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (for scripts).")]


@dataclass
class State:
    api_url: str | None = None
    token: str | None = None


def state() -> State:
    return get_current_context().ensure_object(State)


def remember(api_url: str | None, token: str | None) -> None:
    st = state()
    if api_url:
        st.api_url = api_url
    if token:
        st.token = token


def resolved() -> cfg.Config:
    st = state()
    return cfg.resolve(st.api_url, st.token)


def client() -> Client:
    conf = resolved()
    return Client(conf.api_url, conf.token)


def plain_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Our errors as one plain ``Error: ...`` line on stderr (not a boxed panel, where a
    long path or URL would be folded across lines and could not be copied), with the
    error's exit code."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            report_error(exc.format_message())
            raise typer.Exit(exc.exit_code) from None
    return wrapper


def with_connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--api-url`` and ``--token`` to a command (they also work before the command name)."""
    sig = inspect.signature(fn)
    extra = [
        inspect.Parameter("api_url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ApiUrlOpt),
        inspect.Parameter("token", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=TokenOpt),
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, api_url: str | None = None, token: str | None = None, **kwargs: Any) -> Any:
        remember(api_url, token)
        return plain_errors(fn)(*args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=list(sig.parameters.values()) + extra)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "api_url": ApiUrlOpt, "token": TokenOpt}
    return wrapper


def command(app: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable[[Callable], Callable]:
    """``@app.command`` that also accepts the connection options."""
    def decorate(fn: Callable) -> Callable:
        app.command(name, **kwargs)(with_connection_options(fn))
        return fn
    return decorate


class Commands:
    """A module's top-level commands, written as module-level functions (``@commands("deploy")``)
    and added to the app by the module's ``register(app)``: the one way every command module
    registers (a command group is a ``typer.Typer`` of the module, added the same way)."""

    def __init__(self) -> None:
        self._pending: list[tuple[str | None, dict[str, Any], Callable]] = []

    def __call__(self, name: str | None = None, **kwargs: Any) -> Callable[[Callable], Callable]:
        def collect(fn: Callable) -> Callable:
            self._pending.append((name, kwargs, fn))
            return fn
        return collect

    def register(self, app: typer.Typer) -> None:
        for name, kwargs, fn in self._pending:
            command(app, name, **kwargs)(fn)


def read_local(path: Path, what: str = "file") -> bytes:
    """Bytes of a local file; a missing or unreadable one is a usage error (exit 2)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageProblem(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise UsageProblem(f"{what} {str(path)!r} is a directory") from None
    except OSError as exc:
        raise UsageProblem(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
