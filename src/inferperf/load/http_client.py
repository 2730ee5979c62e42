"""A small, fast HTTP/1.1 client for load generation: asyncio protocols over keep-alive connections.

Why not aiohttp or httpx: a load generator must cost far less per request than the server it measures.
General clients spend 100-300 µs of Python per request on features a benchmark does not use (cookies,
redirects, header objects, streaming readers); this client writes pre-built request bytes on a pooled
connection and parses only the status line, Content-Length and the KServe header length, so one
event-loop thread keeps thousands of requests per second on a 2-core machine.

Connections are opened on demand up to ``max_connections``; a request that finds every connection busy
waits for one (that wait delays its send, so open-loop runs count it as a late send, and its latency —
taken from the scheduled time — includes it). Only ``http://`` URLs on hosts the caller chose; nothing
here follows redirects or resolves anything else.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferperf.errors import ConfigError, InferperfError

HEADER_LENGTH = b"inference-header-content-length"


class HttpError(InferperfError):
    """The target answered something a client cannot use (connection refused, bad response)."""


@dataclass
class HttpResponse:
    status: int
    body: bytes
    header_length: int | None
    t_sent_ns: int
    t_done_ns: int


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, int | None, bool]] | None = None
        self.open = False
        self._head: tuple[int, int, int | None, bool, bool] | None = None  # status, body_start, length, close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed by the server{f': {exc}' if exc else ''}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._try_complete()

    def _try_complete(self) -> None:
        if self._head is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).split(b"\r\n")
            try:
                status = int(lines[0].split(b" ", 2)[1])
            except (IndexError, ValueError):
                self._fail(f"malformed status line {lines[0][:80]!r}")
                return
            length, hlen, close, chunked = None, None, False, False
            for line in lines[1:]:
                key, _, value = line.partition(b":")
                key = key.strip().lower()
                if key == b"content-length":
                    length = int(value.strip())
                elif key == HEADER_LENGTH:
                    hlen = int(value.strip())
                elif key == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif key == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                self._fail("chunked responses are not supported by the load client")
                return
            self._head = (status, end + 4, length if length is not None else 0, hlen, close)  # type: ignore[assignment]
        status, start, length, hlen, close = self._head  # type: ignore[misc]
        if len(self.buf) < start + length:
            return
        body = bytes(self.buf[start:start + length])
        del self.buf[:start + length]
        self._head = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body, hlen, close))

    def _fail(self, why: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(why))
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """Pooled keep-alive connections to one ``http://host:port``; an optional shaper models the network."""

    def __init__(self, url: str, *, max_connections: int = 256, shaper: Any = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ConfigError(f"the target must be an http://host:port URL, got {url!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.base_path = parsed.path.rstrip("/")
        self.max_connections = max_connections
        self.shaper = shaper
        self._idle: collections.deque[_Connection] = collections.deque()
        self._total = 0
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self.pool_waits = 0
        self.opened = 0

    def request_bytes(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
        """A complete HTTP/1.1 request, built once and re-sent as often as wanted."""
        lines = [f"{method} {self.base_path}{path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.open:
                return conn
            self._total -= 1
        if self._total < self.max_connections:
            self._total += 1
            try:
                loop = asyncio.get_running_loop()
                _, conn = await loop.create_connection(_Connection, self.host, self.port)
            except OSError as exc:
                self._total -= 1
                raise HttpError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
            self.opened += 1
            return conn
        self.pool_waits += 1
        fut: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        got = await fut
        return got if got is not None and got.open else await self._acquire()

    def _release(self, conn: _Connection, reusable: bool) -> None:
        if not reusable or not conn.open:
            if conn.transport is not None:
                conn.transport.close()
            self._total -= 1
            conn = None  # type: ignore[assignment]
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        if conn is not None:
            self._idle.append(conn)

    async def send(self, raw: bytes) -> HttpResponse:
        """Send one pre-built request; ``t_sent_ns`` is when its bytes were handed to the socket."""
        conn = await self._acquire()
        reusable = False
        try:
            t_sent = time.perf_counter_ns()
            if self.shaper is not None:  # the request is "sent" when it enters the (modelled) network
                await self.shaper.uplink(len(raw))
            loop = asyncio.get_running_loop()
            conn.waiter = loop.create_future()
            assert conn.transport is not None
            conn.transport.write(raw)
            status, body, hlen, close = await conn.waiter
            if self.shaper is not None:
                await self.shaper.downlink(len(body) + 128)
            reusable = not close
            return HttpResponse(status, body, hlen, t_sent, time.perf_counter_ns())
        finally:
            conn.waiter = None
            self._release(conn, reusable)

    async def close(self) -> None:
        while self._idle:
            conn = self._idle.pop()
            if conn.transport is not None:
                conn.transport.close()
        self._total = 0
        await asyncio.sleep(0)


# --------------------------------------------------------------------------------- KServe v2 bodies

_V2 = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "int32": "INT32",
       "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
       "uint64": "UINT64", "bool": "BOOL"}
_NP = {v: k for k, v in _V2.items()}


def encode_infer_request(feeds: dict[str, np.ndarray], *, binary: bool = True,
                         binary_output: bool = True) -> tuple[bytes, dict[str, str]]:
    """A KServe v2 inference body for ``feeds`` and the headers it needs (binary extension or JSON)."""
    inputs = []
    blobs = []
    for name, arr in feeds.items():
        arr = np.ascontiguousarray(arr)
        entry: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": _V2[arr.dtype.name]}
        if binary:
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        inputs.append(entry)
    doc: dict[str, Any] = {"inputs": inputs}
    if binary_output:
        doc["parameters"] = {"binary_data_output": True}
    header = json.dumps(doc, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
    if binary:
        headers["Inference-Header-Content-Length"] = str(len(header))
    return header + b"".join(blobs), headers


def decode_infer_response(body: bytes, header_length: int | None, *,
                          outputs: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Outputs (as numpy arrays, unless ``outputs`` is False) and the response's ``parameters``."""
    head = body if header_length is None else body[:header_length]
    doc = json.loads(head)
    params = doc.get("parameters") or {}
    result: dict[str, np.ndarray] = {}
    if outputs:
        offset = header_length or 0
        for out in doc.get("outputs", []):
            dtype = np.dtype(_NP[out["datatype"]])
            size = (out.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                arr = np.frombuffer(body, dtype=dtype.newbyteorder("<"), count=size // dtype.itemsize, offset=offset)
                offset += size
            else:
                arr = np.asarray(out["data"], dtype=dtype)
            result[out["name"]] = arr.reshape(out["shape"])
    return result, params


def server_parameters(body: bytes, header_length: int | None) -> dict[str, Any]:
    """Only the response ``parameters`` (server-side timings), without decoding tensors."""
    return decode_infer_response(body, header_length, outputs=False)[1]


def get_json(url: str, timeout_s: float = 10.0, method: str = "GET") -> Any:
    """One blocking JSON request (metadata, readiness) outside the timed loop."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - caller-chosen http URL
            return json.loads(resp.read() or b"null")
    except OSError as exc:
        raise HttpError(f"{method} {url} failed: {exc}") from None
    except ValueError as exc:
        raise HttpError(f"{method} {url} did not return JSON: {exc}") from None


def wait_ready(url: str, timeout_s: float, model: str | None = None) -> float:
    """Poll readiness until it answers 200; returns the seconds waited. Raises HttpError on timeout."""
    t0 = time.perf_counter()
    path = f"/v2/models/{model}/ready" if model else "/v2/health/ready"
    last = ""
    while time.perf_counter() - t0 < timeout_s:
        try:
            with urllib.request.urlopen(url.rstrip("/") + path, timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return time.perf_counter() - t0
        except OSError as exc:
            last = str(exc)
        time.sleep(0.02)
    raise HttpError(f"{url} was not ready within {timeout_s:g} s ({last})")
