"""Client of the live stream ``GET /api/v1/executions/stream`` (Server-Sent Events).

``ExecutionStream`` yields execution records (dicts) as they finish. With
``follow`` it reconnects by itself after a dropped connection (or a silent
one: the server sends a comment every 15 s), sending ``Last-Event-ID`` = the
highest ``id:`` seen, and drops records it already yielded (by execution id):
the server's replay may repeat a few around a reconnect on purpose.
"""
from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests

from .client import CONNECT_TIMEOUT, Client, Unreachable, UsageProblem, reason_of

STREAM_PATH = "/api/v1/executions/stream"
READ_TIMEOUT = 45.0  # three missed heartbeats
SEEN_MEMORY = 20000


def parse_sse(chunks: Iterator[bytes]) -> Iterator[tuple[str | None, str | None, str | None]]:
    """(event, data, id) for each dispatched block of an SSE byte stream.

    A block with only an ``id:`` yields (None, None, id): it moves the
    position without carrying an event. Comments yield nothing.
    """
    buf = b""
    event: str | None = None
    data: list[str] = []
    ident: str | None = None
    for chunk in chunks:
        if not chunk:
            continue
        buf += chunk
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            raw, buf = buf[:i], buf[i + 1:]
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if data or ident is not None:
                    yield (event or "message") if data else None, "\n".join(data) if data else None, ident
                event, data, ident = None, [], None
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.decode("utf-8", "replace").partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id" and "\x00" not in value:
                ident = value


class ExecutionStream:
    """Iterate over finished executions from the stream, reconnecting when ``follow``."""

    def __init__(self, client: Client, *, package: str | None = None, event: str | None = None,
                 status: str | None = None, recent: int = 0, follow: bool = True,
                 last_event_id: int | None = None, on_state: Callable[[str], None] | None = None,
                 read_timeout: float = READ_TIMEOUT, max_backoff: float = 5.0):
        self.client = client
        self.filters = {"package": package, "event": event, "status": status}
        self.recent = recent
        self.follow = follow
        self.last_id = last_event_id
        self.on_state = on_state or (lambda _state: None)
        self.read_timeout = read_timeout
        self.max_backoff = max_backoff
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.connections = 0
        self._response: requests.Response | None = None
        self._closed = False

    def close(self) -> None:
        """Stop (from any thread): the socket is shut down first, so a blocked read returns at once."""
        self._closed = True
        resp = self._response
        if resp is not None:
            shutdown(resp)


    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {k: v for k, v in self.filters.items() if v is not None}
        if not self.follow:
            params["follow"] = "false"
        if self.last_id is None and self.recent:
            params["recent"] = self.recent
        return params

    def _open(self) -> requests.Response:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.client.token:
            headers["Authorization"] = f"Bearer {self.client.token}"
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        url = self.client.url(STREAM_PATH)
        try:
            resp = self.client.session.get(url, params=self._params(), headers=headers, stream=True,
                                           timeout=(CONNECT_TIMEOUT, self.read_timeout))
        except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                requests.exceptions.InvalidURL) as exc:
            raise UsageProblem(f"invalid API URL {self.client.base_url!r}: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise Unreachable(f"cannot reach the Jobico API at {self.client.base_url}: {reason_of(exc)}") from None
        if resp.status_code != 200:
            try:
                resp.content  # noqa: B018 - read the error body
            finally:
                resp.close()
            self.client._answer(resp)  # raises Refused with the server's message
            raise Unreachable(f"unexpected answer from {url}: HTTP {resp.status_code}")
        return resp

    def _remember(self, eid: str) -> bool:
        """True the first time an execution id is seen."""
        if eid in self.seen:
            return False
        self.seen[eid] = None
        if len(self.seen) > SEEN_MEMORY:
            self.seen.popitem(last=False)
        return True

    def __iter__(self) -> Iterator[dict]:
        backoff = 0.25
        while not self._closed:
            try:
                self._response = resp = self._open()
            except Unreachable:
                if not self.follow or self.connections == 0:
                    raise
                self.on_state("reconnecting")
                time.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.connections += 1
            self.on_state("connected")
            try:
                for kind, data, ident in parse_sse(resp.iter_content(chunk_size=None)):
                    if ident is not None:
                        try:
                            value = int(ident)
                            self.last_id = value if self.last_id is None else max(self.last_id, value)
                        except ValueError:
                            pass
                    if kind != "execution" or data is None:
                        continue
                    backoff = 0.25
                    try:
                        record = json.loads(data)
                    except ValueError:
                        continue
                    if isinstance(record, Mapping) and record.get("id") and self._remember(str(record["id"])):
                        yield dict(record)
            except (requests.exceptions.RequestException, OSError, AttributeError, ValueError) as exc:
                # AttributeError: urllib3 after a close() from another thread
                if self._closed:
                    return
                if not self.follow:
                    raise Unreachable(f"the stream from {self.client.base_url} broke: {reason_of(exc)}") from None
            finally:
                resp.close()
                self._response = None
            if not self.follow or self._closed:
                return
            self.on_state("reconnecting")
            time.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)


def shutdown(resp: requests.Response) -> None:
    """Shut a streaming response's socket down, then close it (``close`` alone can wait for the next read)."""
    import socket
    sock = getattr(getattr(resp.raw, "_connection", None), "sock", None)
    if sock is None:  # "Connection: close": http.client handed the socket over to the response's file
        fp = getattr(getattr(resp.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    try:
        resp.close()
    except Exception:
        pass
