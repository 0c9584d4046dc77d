"""Just enough HTTP/1.1 for the fault proxy: read whole messages, re-frame, write.

Bodies are read whole (AWS JSON bodies are at most a few MiB) and forwarded
with a Content-Length, whatever framing (Content-Length, chunked, until-EOF)
they arrived with; the body bytes themselves are never touched here. Header
bytes round-trip through latin-1, so nothing is re-encoded either.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Iterable
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024  # PutRecords is capped at 5 MiB; leave room for other APIs
STREAM_LIMIT = MAX_HEAD_BYTES + 1024  # StreamReader limit: bounds readuntil() buffering

# Hop-by-hop headers (RFC 9110 7.6.1) and the framing ones this proxy rewrites.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "expect",
    }
)
_NO_BODY_STATUSES = frozenset({204, 304})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Headers = tuple[tuple[str, str], ...]


class HttpError(Exception):
    """A malformed or oversized message: the connection cannot be used any more."""


class NoResponseError(ConnectionError):
    """The server closed the connection before sending a byte of its answer.

    On a reused keep-alive connection this usually means the server had closed
    it as idle before our request arrived, so the request was never seen.
    """


def header(headers: Headers, name: str) -> str | None:
    """The first value of a header, case-insensitively."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None


@dataclass(frozen=True)
class Request:
    """One request, body de-framed."""

    method: str
    path: str
    version: str
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header, case-insensitively."""
        return header(self.headers, name)

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept after this exchange."""
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


@dataclass(frozen=True)
class Response:
    """One response, body de-framed; ``will_close`` when the server ends the connection."""

    status: int
    reason: str
    headers: Headers
    body: bytes
    will_close: bool = False


def _parse_headers(lines: Iterable[str]) -> Headers:
    out: list[tuple[str, str]] = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(f"malformed header line {line!r:.100}")
        out.append((name, value.strip()))
    return tuple(out)


async def _read_head(reader: asyncio.StreamReader) -> list[str] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HttpError("connection closed inside a message head") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpError(f"message head over {MAX_HEAD_BYTES} bytes") from exc
    if len(raw) > MAX_HEAD_BYTES:
        raise HttpError(f"message head over {MAX_HEAD_BYTES} bytes")
    # A client may send stray CRLFs between messages (RFC 9112 2.2); skip them.
    return raw.decode("latin-1").lstrip("\r\n").split("\r\n")[:-2]


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise HttpError(f"bad chunk size line {line!r:.100}") from exc
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers are dropped
                pass
            return bytes(body)
        if len(body) + size > MAX_BODY_BYTES:
            raise HttpError(f"body over {MAX_BODY_BYTES} bytes")
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise HttpError("chunk not followed by CRLF")
        body += chunk[:-2]


async def _read_body(
    reader: asyncio.StreamReader, headers: Headers, *, until_eof_allowed: bool
) -> tuple[bytes, bool]:
    """Read a body by its framing; returns (body, read until EOF)."""
    encoding = header(headers, "transfer-encoding")
    if encoding is not None and "chunked" in encoding.lower():
        return await _read_chunked(reader), False
    lengths = {v.strip() for k, v in headers if k.lower() == "content-length"}
    if len(lengths) > 1:
        raise HttpError(f"conflicting Content-Length headers {sorted(lengths)}")
    if lengths:
        try:
            length = int(lengths.pop())
        except ValueError as exc:
            raise HttpError("bad Content-Length") from exc
        if not 0 <= length <= MAX_BODY_BYTES:
            raise HttpError(f"Content-Length {length} out of range 0..{MAX_BODY_BYTES}")
        return await reader.readexactly(length), False
    if not until_eof_allowed:
        return b"", False
    body = await reader.read(MAX_BODY_BYTES + 1)
    while not reader.at_eof() and len(body) <= MAX_BODY_BYTES:
        body += await reader.read(MAX_BODY_BYTES + 1 - len(body))
    if len(body) > MAX_BODY_BYTES:
        raise HttpError(f"body over {MAX_BODY_BYTES} bytes")
    return body, True


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """Read one request; ``None`` on a clean EOF between requests.

    Answers ``Expect: 100-continue`` itself, since the body is read before forwarding.

    Raises:
        HttpError: malformed message.
        asyncio.IncompleteReadError: the client went away mid-message.
    """
    lines = await _read_head(reader)
    if lines is None:
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(f"malformed request line {lines[0]!r:.100}")
    method, path, version = parts
    headers = _parse_headers(lines[1:])
    if (header(headers, "expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body, _ = await _read_body(reader, headers, until_eof_allowed=False)
    return Request(method, path, version, headers, body)


async def read_response(reader: asyncio.StreamReader, *, head_request: bool) -> Response:
    """Read one final response (interim 1xx answers are skipped).

    Raises:
        HttpError: malformed message.
        NoResponseError: the server closed the connection before answering.
        asyncio.IncompleteReadError: the server closed mid-message.
    """
    while True:
        lines = await _read_head(reader)
        if lines is None:
            raise NoResponseError("connection closed before a response")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"malformed status line {lines[0]!r:.100}")
        status = int(parts[1])
        reason = parts[2] if len(parts) == 3 else ""
        headers = _parse_headers(lines[1:])
        if 100 <= status < 200 and status != 101:
            continue
        break
    if head_request or status in _NO_BODY_STATUSES or status < 200:
        body, until_eof = b"", False
    else:
        body, until_eof = await _read_body(reader, headers, until_eof_allowed=True)
    tokens = {t.strip().lower() for t in (header(headers, "connection") or "").split(",")}
    will_close = until_eof or "close" in tokens or parts[0] == "HTTP/1.0"
    return Response(status, reason, headers, body, will_close)


def _end_to_end(headers: Headers) -> list[str]:
    return [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP]


def encode_request(request: Request, body: bytes | None = None) -> bytes:
    """The request as forwarded upstream: same head, keep-alive, Content-Length framing."""
    payload = request.body if body is None else body
    lines = [f"{request.method} {request.path} HTTP/1.1", *_end_to_end(request.headers)]
    if payload or request.method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def encode_response(
    status: int,
    reason: str,
    headers: Headers,
    body: bytes,
    *,
    close: bool,
    head_request: bool = False,
) -> bytes:
    """The response as sent to the client, framed by Content-Length."""
    lines = [f"HTTP/1.1 {status} {reason or _phrase(status)}", *_end_to_end(headers)]
    if head_request:
        lines += [f"{k}: {v}" for k, v in headers if k.lower() == "content-length"][:1]
        body = b""
    elif status not in _NO_BODY_STATUSES:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
