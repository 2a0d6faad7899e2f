"""The ``jobico`` command line: typer app, command registration, exit codes.

Exit codes (public contract): 0 success, 1 the server refused (its message
says why), 2 usage error, 3 cannot reach the server. Failures are raised as
``jobico_cli.client.CliError`` (click exceptions), so typer prints them
without a traceback whether the app runs from ``main()`` or a CliRunner.
"""
from __future__ import annotations

import os
import sys

import typer

from .commands import (
    auth,
    environment,
    events,
    executions,
    files,
    locks,
    packages,
    publish,
    rejections,
    scaffold,
    tenants,
)
from .commands import stream as stream_commands
from .commands.common import ApiUrlOpt, TokenOpt, remember

app = typer.Typer(
    name="jobico",
    help="Jobico: run tenants' WebAssembly and Python jobs in response to events.\n\n"
         "Connection: --api-url/--token, else JOBICO_API_URL/JOBICO_TOKEN, else the config file "
         "written by `jobico login` ($JOBICO_HOME/config.toml, default ~/.config/jobico/config.toml).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(api_url: ApiUrlOpt = None, token: TokenOpt = None) -> None:
    remember(api_url, token)


auth.register(app)
tenants.register(app)
files.register(app)
packages.register(app)
environment.register(app)
publish.register(app)
executions.register(app)
rejections.register(app)
locks.register(app)
events.register(app)
stream_commands.register(app)
scaffold.register(app)

# The operator's commands (`jobico run`, `migrate`, ...) are added by jobico_ops.main, the `jobico`
# entry point: this package is the tenant's HTTP client only and imports no server code.


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turn every failure into an exit code."""
    try:
        app(args=argv, prog_name="jobico")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted.\n")
        sys.exit(130)
    except Exception as exc:  # a bug: one line, not a traceback, unless JOBICO_DEBUG=1
        if os.environ.get("JOBICO_DEBUG"):
            raise
        from .output import sanitize
        sys.stderr.write(f"jobico: internal error: {sanitize(type(exc).__name__)}: {sanitize(exc)}\n"
                         "  (set JOBICO_DEBUG=1 for the traceback)\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
