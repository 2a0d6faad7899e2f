"""HTTP client of the Jobico API, and the CLI's failures as exit codes.

Every failure becomes a ``CliError`` (a ``click.ClickException``), so typer
prints a message and exits with the contract's code, never a traceback:

* 0 success, 1 the server refused (its message and ``errors`` detail),
* 2 usage error (bad arguments, missing or unreadable local files),
* 3 the server cannot be reached (refused connection, DNS, timeout),
* 4 ``jobico executions cancel``: the execution was still running when the wait ran out
  (the cancel stands; its worker stops it when the request reaches it).
"""
from __future__ import annotations

import errno
import json
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import requests

try:  # typer >= 0.22 vendors click as typer._click: its exceptions are the ones typer handles
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on the real click
    from click import ClickException

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_STILL_RUNNING = 4

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0


class CliError(ClickException):
    exit_code = EXIT_REFUSED

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def format_message(self) -> str:
        from .output import sanitize
        return sanitize(self.message)


class Refused(CliError):
    """The server answered with an error (exit 1)."""
    exit_code = EXIT_REFUSED

    def __init__(self, message: str, status: int | None = None, body: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.body = dict(body or {})


class UsageProblem(CliError):
    """Bad arguments, missing or unreadable local files (exit 2)."""
    exit_code = EXIT_USAGE


class Unreachable(CliError):
    """The API cannot be reached: refused connection, DNS, timeout (exit 3)."""
    exit_code = EXIT_UNREACHABLE


# -- error bodies ----------------------------------------------------------------
def _location(parts: Iterable[str]) -> str:
    out = ""
    for part in parts:
        if part.isdigit():
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def error_lines(errors: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    """Flatten a flask-smorest ``errors`` mapping into ``location: message`` lines.

    Handles our shapes (``{"package": [{"path", "message"}]}``,
    ``{"data": {"0": [{"path", "rule", "message"}]}}``) and webargs' own
    (``{"json": {"field": ["message"]}}``).
    """
    lines: list[str] = []
    where = _location(prefix)
    if isinstance(errors, Mapping):
        if "message" in errors and not any(isinstance(v, (Mapping, list)) for k, v in errors.items()
                                           if k not in ("path", "rule", "message", "line")):
            path = str(errors.get("path") or "")
            loc = ": ".join(p for p in (where, path) if p)
            msg = str(errors["message"])
            if errors.get("line") is not None and "line" not in msg:
                msg += f" (line {errors['line']})"
            lines.append(f"{loc}: {msg}" if loc else msg)
        else:
            for key, value in errors.items():
                lines.extend(error_lines(value, prefix + (str(key),)))
    elif isinstance(errors, (list, tuple)):
        for item in errors:
            lines.extend(error_lines(item, prefix))
    elif errors is not None and errors != "":
        lines.append(f"{where}: {errors}" if where else str(errors))
    return lines


def refusal_message(status: int, reason: str, body: Any, url: str) -> str:
    if isinstance(body, Mapping) and body.get("message"):
        message = str(body["message"])
        details = [line for line in error_lines(body.get("errors")) if line != message]
    else:
        message = f"HTTP {status} {reason} from {url}"
        details = []
    text = message
    if details:
        text += "\n" + "\n".join(f"  {line}" for line in details)
    return text


# -- the client ------------------------------------------------------------------
def reason_of(exc: BaseException) -> str:
    """A short human reason for a connection failure."""
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, socket.gaierror):
            return "the host name could not be resolved"
        if isinstance(cur, ConnectionRefusedError) or getattr(cur, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(cur, (socket.timeout, TimeoutError)):
            return "timed out"
        if isinstance(cur, ConnectionResetError):
            return "connection reset"
        nxt = cur.__cause__ or cur.__context__
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        if nxt is None and len(cur.args) > 1 and isinstance(cur.args[1], BaseException):
            nxt = cur.args[1]
        cur = nxt
    text = str(exc)
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "the host name could not be resolved"
    if "refused" in text.lower():
        return "connection refused"
    return text


class ProgressBody:
    """A bytes body that reports its progress as requests reads it (keeps Content-Length)."""

    def __init__(self, data: bytes, on_read: Callable[[int], None], chunk: int = 64 * 1024):
        self._data = data
        self._pos = 0
        self._on_read = on_read
        self._chunk = chunk

    def __len__(self) -> int:
        return len(self._data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = len(self._data) - self._pos
        size = min(size, self._chunk)
        piece = self._data[self._pos:self._pos + size]
        self._pos += len(piece)
        if piece:
            self._on_read(len(piece))
        return piece


class Client:
    """Talks to one Jobico API with one bearer token."""

    def __init__(self, base_url: str, token: str | None = None, *,
                 timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
                 session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "jobico-cli"
        self.session.trust_env = True

    # -- plumbing --------------------------------------------------------------
    def url(self, path: str) -> str:
        return self.base_url + path

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None, data: Any = None, headers: Mapping[str, str] | None = None,
                auth: bool = True, raw: bool = False) -> Any:
        """Send a request; return the decoded JSON answer (None for an empty one).

        ``raw``: return the successful :class:`requests.Response` itself (a download).
        """
        url = self.url(path)
        hdrs = {"Accept": "application/json"}
        if auth and self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        hdrs.update(headers or {})
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        try:
            resp = self.session.request(method, url, params=params, data=data, headers=hdrs,
                                        timeout=self.timeout, allow_redirects=False)
        except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                requests.exceptions.InvalidURL, requests.exceptions.URLRequired) as exc:
            raise UsageProblem(f"invalid API URL {self.base_url!r}: {exc}") from None
        except requests.exceptions.Timeout:
            raise Unreachable(f"cannot reach the Jobico API at {self.base_url}: timed out "
                              f"(connect {self.timeout[0]:g}s, read {self.timeout[1]:g}s)") from None
        except requests.exceptions.ConnectionError as exc:
            raise Unreachable(f"cannot reach the Jobico API at {self.base_url}: {reason_of(exc)}\n"
                              "  Is it running? Set the URL with --api-url, JOBICO_API_URL or `jobico login`."
                              ) from None
        except requests.exceptions.RequestException as exc:
            raise Unreachable(f"cannot reach the Jobico API at {self.base_url}: {exc}") from None
        if raw and 200 <= resp.status_code < 300:
            return resp
        return self._answer(resp)

    def _answer(self, resp: requests.Response) -> Any:
        body: Any = None
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                body = None
        if resp.status_code >= 400 or 300 <= resp.status_code < 400:
            message = refusal_message(resp.status_code, resp.reason or "", body, resp.url)
            if resp.status_code == 401 and not self.token:
                message += ("\n  No token is configured: run `jobico login`, pass --token or set JOBICO_TOKEN.")
            if resp.status_code == 503 and resp.headers.get("Retry-After"):
                message += f"\n  The server asks to retry after {resp.headers['Retry-After']} s."
            raise Refused(message, status=resp.status_code, body=body if isinstance(body, Mapping) else None)
        if resp.content and body is None:
            raise Refused(f"unexpected answer from {resp.url} (HTTP {resp.status_code}, not JSON): "
                          "is this a Jobico API?", status=resp.status_code)
        return body

    # -- the API -----------------------------------------------------------------
    def whoami(self) -> dict:
        return self.request("GET", "/api/v1/whoami")

    def create_tenant(self, tenant: str, webhook_auth: str | None = None, key_name: str | None = None) -> dict:
        body: dict[str, Any] = {"id": tenant}
        if webhook_auth:
            body["webhook_auth"] = webhook_auth
        if key_name:
            body["key_name"] = key_name
        return self.request("POST", "/api/v1/tenants", json_body=body)

    def list_tenants(self) -> dict:
        return self.request("GET", "/api/v1/tenants")

    def update_tenant(self, tenant: str, webhook_auth: str, rotate_secret: bool = False,
                      grace_seconds: int | None = None) -> dict:
        body: dict = {"webhook_auth": webhook_auth, "rotate_secret": rotate_secret}
        if grace_seconds is not None:
            body["secret_grace_seconds"] = grace_seconds
        return self.request("PATCH", f"/api/v1/tenants/{segment(tenant)}", json_body=body)

    def revoke_previous_secret(self, tenant: str) -> dict:
        return self.request("PATCH", f"/api/v1/tenants/{segment(tenant)}", json_body={"revoke_previous_secret": True})

    def set_submitter_header(self, tenant: str, header: str | None) -> dict:
        return self.request("PATCH", f"/api/v1/tenants/{segment(tenant)}", json_body={"submitter_header": header})

    def delete_tenant(self, tenant: str) -> None:
        self.request("DELETE", f"/api/v1/tenants/{segment(tenant)}")

    def create_key(self, tenant: str, name: str) -> dict:
        return self.request("POST", f"/api/v1/tenants/{segment(tenant)}/keys", json_body={"name": name})

    def list_keys(self, tenant: str) -> dict:
        return self.request("GET", f"/api/v1/tenants/{segment(tenant)}/keys")

    def delete_key(self, tenant: str, name: str) -> None:
        self.request("DELETE", f"/api/v1/tenants/{segment(tenant)}/keys/{segment(name)}")

    def upload_file(self, name: str, data: bytes, kind: str | None = None,
                    on_progress: Callable[[int], None] | None = None) -> dict:
        body: Any = ProgressBody(data, on_progress) if on_progress else data
        return self.request("PUT", f"/api/v1/files/{segment(name)}", params={"kind": kind}, data=body,
                            headers={"Content-Type": "application/octet-stream"})

    def file_info(self, name: str) -> dict | None:
        """A repository file's metadata (kind, sha256, ...); None when there is no such file."""
        try:
            return self.request("GET", f"/api/v1/files/{segment(name)}")
        except Refused as exc:
            if exc.status == 404:
                return None
            raise

    def file_content(self, name: str) -> tuple[dict, bytes] | None:
        """A repository file's metadata and current bytes; None when there is no such file."""
        meta = self.file_info(name)
        if meta is None:
            return None
        resp = self.request("GET", f"/api/v1/files/{segment(name)}/content", raw=True, headers={"Accept": "*/*"})
        return meta, resp.content

    def list_files(self, kind: str | None = None) -> dict:
        return self.request("GET", "/api/v1/files", params={"kind": kind})

    def deploy(self, source: bytes) -> dict:
        return self.request("POST", "/api/v1/packages", data=source,
                            headers={"Content-Type": "application/yaml"})

    def redeploy(self, package: str, source: bytes) -> dict:
        return self.request("PUT", f"/api/v1/packages/{segment(package)}", data=source,
                            headers={"Content-Type": "application/yaml"})

    def rollback(self, package: str, version: int) -> dict:
        return self.request("POST", f"/api/v1/packages/{segment(package)}/rollback", json_body={"version": version})

    def delete_package(self, package: str) -> None:
        self.request("DELETE", f"/api/v1/packages/{segment(package)}")

    def list_packages(self) -> dict:
        return self.request("GET", "/api/v1/packages")

    def get_package(self, package: str, version: int | None = None) -> dict:
        return self.request("GET", f"/api/v1/packages/{segment(package)}", params={"version": version})

    def list_executions(self, **filters: Any) -> dict:
        return self.request("GET", "/api/v1/executions", params=filters)

    def list_rejections(self, **filters: Any) -> dict:
        return self.request("GET", "/api/v1/rejections", params=filters)

    def list_locks(self) -> dict:
        return self.request("GET", "/api/v1/locks")

    def running_executions(self, **filters: Any) -> dict:
        return self.request("GET", "/api/v1/executions/running", params=filters)

    def retry_execution(self, execution_id: str) -> dict:
        return self.request("POST", f"/api/v1/executions/{segment(execution_id)}/retry")

    def cancel_execution(self, execution_id: str, wait: float | None = None) -> dict:
        return self.request("POST", f"/api/v1/executions/{segment(execution_id)}/cancel", params={"wait": wait})

    def resubmit_execution(self, execution_id: str) -> dict:
        return self.request("POST", f"/api/v1/executions/{segment(execution_id)}/resubmit")

    def get_execution(self, execution_id: str) -> dict:
        return self.request("GET", f"/api/v1/executions/{segment(execution_id)}")

    def send_events(self, tenant: str, event: str, body: bytes, headers: Mapping[str, str] | None = None) -> dict:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        return self.request("POST", f"/events/{segment(tenant)}/{segment(event)}", data=body, headers=hdrs)


def segment(value: str) -> str:
    """One URL path segment (ids are validated by the server; never let one add a path)."""
    return quote(value, safe="")
