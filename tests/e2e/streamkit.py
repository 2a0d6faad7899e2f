"""Helpers of the live-stream tests: a tenant with a small package, an SSE reader
thread, a TCP proxy that can cut connections, and a guest that returns hostile text."""
from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import requests

from jobico_cli.stream import parse_sse, shutdown
from tests.guests import constant_guest
from tests.waiting import wait_until

from .helpers import example

# the guest's result: rich markup and an ANSI "clear screen"
EVIL_RESULT = "[red]x[/red]\x1b[2J"

PACKAGE = """
id: {pkg}
tenant: {tenant}
queues: [{{id: q}}]
jobs:
  - event: {{id: {prefix}ok, schema: {{id: s, schemaref: any.json}}, supplierqueue: q, runtime: echo}}
  - event: {{id: {prefix}fail, schema: {{id: s, schemaref: any.json}}, supplierqueue: q, runtime: error}}
  - event: {{id: {prefix}evil, schema: {{id: s, schemaref: any.json}}, supplierqueue: q, runtime: evil}}
runtimes:
  - {{id: echo, moduleref: echo.wasm}}
  - {{id: error, moduleref: error.wasm}}
  - {{id: evil, moduleref: evil.wasm}}
"""


def evil_wasm(tmp: Path) -> Path:
    path = tmp / "evil.wasm"
    path.write_bytes(constant_guest(EVIL_RESULT.encode()))
    return path


def setup_tenant(p, tenant: str, pkg: str = "tools", prefix: str = "") -> str:
    key = p.tenant(tenant)
    for f in ("jobicolets/echo.wasm", "jobicolets/error.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    p.upload(key, evil_wasm(p.tmp))
    p.deploy(key, PACKAGE.format(pkg=pkg, tenant=tenant, prefix=prefix))
    return key


def post_ids(p, key: str, tenant: str, event: str, data: list) -> list[str]:
    r = p.post(key, tenant, event, data)
    assert r.status_code == 200, r.text
    return r.json()["executions"]


class SSEReader:
    """Reads one SSE connection in a thread: ``events`` = [(id, record)], ``ids`` = every id: seen."""

    def __init__(self, url: str, key: str, params: dict | None = None, headers: dict | None = None):
        self.events: list[tuple[int, dict]] = []
        self.markers: list[int] = []
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self.resp = requests.get(url + "/api/v1/executions/stream", params=params or {}, stream=True,
                                 headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=(5, 60))
        assert self.resp.status_code == 200, self.resp.text
        assert self.resp.headers["Content-Type"].startswith("text/event-stream")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for kind, data, ident in parse_sse(self.resp.iter_content(chunk_size=None)):
                if ident is not None and data is None:
                    self.markers.append(int(ident))
                if kind == "execution":
                    self.events.append((int(ident), json.loads(data)))
        except BaseException as exc:  # noqa: BLE001 - closed by the test
            self.error = exc
        finally:
            self.ended.set()

    def ids(self) -> list[str]:
        return [d["id"] for _, d in self.events]

    def wait_for(self, ids, timeout: float = 30.0) -> None:
        try:
            wait_until(lambda: set(ids) <= set(self.ids()), timeout, what="the stream's executions")
        except AssertionError:
            raise AssertionError(f"stream got {self.ids()}, missing {set(ids) - set(self.ids())}") from None

    def close(self) -> None:
        shutdown(self.resp)


class CuttableProxy:
    """A loopback TCP proxy to ``target_port``; ``cut()`` closes every open connection,
    ``refuse`` makes it close new ones at once (the server looks down)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.refuse = False
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.cut()
