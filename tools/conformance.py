#!/usr/bin/env python3
"""Black-box HTTP/1.1 conformance and hostility suite for ringcast.

Usage:
    python3 tools/conformance.py --root DIR --target 127.0.0.1:PORT [--only SUBSTR] [-v]

The suite first (re)creates its fixtures inside DIR (the server reads files on demand, so it may
already be running on DIR), then runs one small function per check over raw TCP sockets and prints
`PASS name` or `FAIL name: why` per check, and finally exactly one line `N passed, N failed`.
It exits 1 if any check failed. Every socket operation has a 2 s timeout, so a hung server is a
FAIL, never a hang, and the whole suite has a time budget.

Standard library only. Requests are written byte for byte (no http.client), so malformed input
reaches the server exactly as written here.

What "correct" means is the ringcast spec: RFC 9110 (semantics, ranges, preconditions) and
RFC 9112 (message syntax), with these project choices: 405 + `Allow: GET, HEAD` for known
non-GET/HEAD methods, 501 for unknown methods, 505 for HTTP/2.0 and HTTP/3.0 request lines,
414 above 8 KiB of request target, 431 above 16 KiB of header block or 100 header fields,
overlapping/adjacent ranges coalesced, dotfiles and directories not served, symlinks served only
when they resolve inside the root.
"""

from __future__ import annotations

import argparse
import calendar
import email.utils
import os
import random
import re
import socket
import ssl
import sys
import time
from typing import Callable

TIMEOUT = 2.0  # seconds, for every connect/send/recv
SUITE_BUDGET = 45.0  # seconds; checks not started by then FAIL as "not run"
MAX_HEAD = 128 * 1024  # a response head larger than this is a FAIL
MAX_BODY = 64 * 1024 * 1024  # never buffer more than this of one body

# Fixture facts the checks rely on.
SMALL = b"abcdefghijklmnopqrstuvwxyz"
VIDEO_LEN = 1 << 20
VIDEO = random.Random(0x5EED).randbytes(VIDEO_LEN)
NESTED = random.Random(0xBEEF).randbytes(4096)
BIG_OFFSET = 5 * 1024 * 1024 * 1024
BIG_MARKER = b"MARKER5GiB"  # 10 bytes at offset 5 GiB
BIG_LEN = BIG_OFFSET + len(BIG_MARKER)
# All fixtures get this mtime: far enough in the past that Last-Modified is a strong validator
# (RFC 9110 8.8.2.2), and stable across runs so cached metadata never disagrees.
FIXTURE_MTIME = 1700000000  # Tue, 14 Nov 2023 22:13:20 GMT

MIME_FIXTURES = {
    # file name: (accepted media types, lower case, parameters ignored)
    "x.m4s": ("video/iso.segment",),
    "x.m3u8": ("application/vnd.apple.mpegurl",),
    "x.mpd": ("application/dash+xml",),
    "x.ts": ("video/mp2t",),
    "x.mkv": ("video/x-matroska",),
    "x.vtt": ("text/vtt",),
    "x.m4a": ("audio/mp4",),
    "x.m4v": ("video/mp4",),
    "x.mov": ("video/quicktime",),
    "x.mp3": ("audio/mpeg",),
    "x.flac": ("audio/flac",),
    "x.opus": ("audio/ogg", "audio/opus"),
    "x.jpg": ("image/jpeg",),
    "x.png": ("image/png",),
    "x.webp": ("image/webp",),
    "x.json": ("application/json",),
    "x.html": ("text/html",),
    "x.css": ("text/css",),
    "x.js": ("text/javascript", "application/javascript"),
    "x.unknownext": ("application/octet-stream",),
    "X.MP4": ("video/mp4",),
}

IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT$"
)
# RFC 9110 8.8.3: entity-tag = [ weakness ] opaque-tag ; etagc = %x21 / %x23-7E / obs-text
STRONG_ETAG = re.compile(r'^"[\x21\x23-\x7e\x80-\xff]*"$')
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

ARGS: argparse.Namespace
# With --tls: the client context (verifying the server against --cacert).
TLS: "ssl.SSLContext | None" = None
HOST = ""  # "127.0.0.1:PORT", the Host header value
ADDR: tuple[str, int] = ("127.0.0.1", 0)
VERBOSE = False
TRACE: list[str] = []  # what the current check sent/received, printed with -v on failure
# Secondary assertions of the current check (common 200/206 headers, connection reuse probes),
# run after the check's own assertions so that a FAIL line names the most specific problem first.
DEFERRED: list[Callable[[], None]] = []


class Fail(Exception):
    """A check failed; the message is the one-line reason."""


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise Fail(msg)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------

def write_if_changed(path: str, data: bytes) -> None:
    try:
        with open(path, "rb") as f:
            if f.read(len(data) + 1) == data:
                os.utime(path, (FIXTURE_MTIME, FIXTURE_MTIME))
                return
    except FileNotFoundError:
        pass
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (FIXTURE_MTIME, FIXTURE_MTIME))


def relink(path: str, target: str) -> None:
    if os.path.islink(path):
        if os.readlink(path) == target:
            return
        os.unlink(path)
    elif os.path.isdir(path):
        raise SystemExit(f"fixture {path} is a real directory; remove it")
    elif os.path.exists(path):
        os.unlink(path)
    os.symlink(target, path)


def make_fixtures(root: str) -> None:
    os.makedirs(os.path.join(root, "sub"), exist_ok=True)
    write_if_changed(os.path.join(root, "small.txt"), SMALL)
    write_if_changed(os.path.join(root, "video.mp4"), VIDEO)
    write_if_changed(os.path.join(root, "empty.bin"), b"")
    write_if_changed(os.path.join(root, "sub", "nested.webm"), NESTED)
    write_if_changed(os.path.join(root, ".hidden"), b"hidden dotfile\n")
    write_if_changed(os.path.join(root, "sub", ".secret"), b"secret dotfile\n")
    write_if_changed(os.path.join(root, "a b \u00e9.txt"), b"space and unicode\n")
    for name in MIME_FIXTURES:
        write_if_changed(os.path.join(root, name), b"mime fixture " + name.encode() + b"\n")
    relink(os.path.join(root, "inside_link"), "small.txt")
    relink(os.path.join(root, "outside_link"), "/etc/passwd")
    relink(os.path.join(root, "outdir"), "/etc")
    # Sparse file: 5 GiB of holes, then a 10-byte marker.
    big = os.path.join(root, "big.bin")
    ok = False
    try:
        if os.path.getsize(big) == BIG_LEN:
            with open(big, "rb") as f:
                f.seek(BIG_OFFSET)
                ok = f.read() == BIG_MARKER
    except OSError:
        pass
    if not ok:
        with open(big, "wb") as f:
            f.truncate(BIG_LEN)
            f.seek(BIG_OFFSET)
            f.write(BIG_MARKER)
    os.utime(big, (FIXTURE_MTIME, FIXTURE_MTIME))


# --------------------------------------------------------------------------------------------
# Raw HTTP client
# --------------------------------------------------------------------------------------------

class Response:
    def __init__(self, version: str, status: int, reason: str, headers: list[tuple[str, str]],
                 head: bytes):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.head = head
        self.body = b""

    def all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def get(self, name: str) -> str | None:
        vals = self.all(name)
        return vals[0] if vals else None

    def has(self, name: str) -> bool:
        return bool(self.all(name))

    def tokens(self, name: str) -> set[str]:
        """Comma-separated token list header (e.g. Connection), lower-cased."""
        out: set[str] = set()
        for v in self.all(name):
            out.update(t.strip().lower() for t in v.split(",") if t.strip())
        return out

    def says_close(self) -> bool:
        return "close" in self.tokens("connection")

    def summary(self) -> str:
        return f"{self.status} {self.reason}".strip()


class Conn:
    """One TCP connection; owns a read buffer so several pipelined responses can be read."""

    def __init__(self) -> None:
        self.buf = b""
        self.send_error: str | None = None
        try:
            self.sock = socket.create_connection(ADDR, timeout=TIMEOUT)
            if TLS is not None:
                # The handshake happens here; the checks then see the same
                # byte stream they see over plain TCP.
                self.sock = TLS.wrap_socket(self.sock, server_hostname=ADDR[0])
        except OSError as e:
            raise Fail(f"connect failed: {e}")
        self.sock.settimeout(TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        """Send everything; a send error is remembered, not raised: the server may already have
        answered (e.g. 431 then close) and the answer is what the check wants to see."""
        if VERBOSE:
            TRACE.append(">> " + repr(data[:300]) + (" ..." if len(data) > 300 else ""))
        try:
            self.sock.sendall(data)
        except socket.timeout:
            self.send_error = "send timed out"
        except OSError as e:
            self.send_error = f"send failed: {e}"

    def send_slowly(self, data: bytes, step: int = 1, delay: float = 0.002) -> None:
        if VERBOSE:
            TRACE.append(">> (in %d-byte writes) " % step + repr(data[:300]))
        for i in range(0, len(data), step):
            try:
                self.sock.sendall(data[i:i + step])
            except OSError as e:
                raise Fail(f"send failed at byte {i}: {e}")
            time.sleep(delay)

    def _fill(self, what: str) -> bool:
        """Read more bytes into buf; False on orderly EOF."""
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise Fail(f"timeout ({TIMEOUT:g}s) waiting for {what}"
                       + (f" ({self.send_error})" if self.send_error else ""))
        except ConnectionResetError:
            raise Fail(f"connection reset by server while waiting for {what}"
                       + (f" ({self.send_error})" if self.send_error else ""))
        except OSError as e:
            raise Fail(f"recv error while waiting for {what}: {e}")
        if not data:
            return False
        self.buf += data
        return True

    def read_response(self, head: bool = False) -> Response:
        """Parse one response. head=True: the request was HEAD, so there is no body."""
        while True:
            resp = self._read_one(head)
            if 100 <= resp.status < 200 and resp.status != 101:
                continue  # interim response; the final one follows
            return resp

    def _read_one(self, head: bool) -> Response:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) >= 5 and not self.buf.startswith(b"HTTP/"):
                raise Fail("expected a status line, got %r (stray body bytes from an earlier "
                           "response, an HTTP/0.9-style reply, or not HTTP?)" % self.buf[:40])
            if len(self.buf) > MAX_HEAD:
                raise Fail("response head larger than %d bytes" % MAX_HEAD)
            if not self._fill("response head"):
                if not self.buf:
                    raise Fail("connection closed without a response"
                               + (f" ({self.send_error})" if self.send_error else ""))
                if not self.buf.startswith(b"HTTP/"):
                    raise Fail("server sent non-HTTP bytes and closed (an HTTP/0.9-style "
                               "response?): %r" % self.buf[:40])
                raise Fail("connection closed in the middle of the response head: %r"
                           % self.buf[:80])
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if VERBOSE:
            TRACE.append("<< " + raw.decode("latin-1").replace("\r\n", "\n<< "))
        lines = raw.split(b"\r\n")
        m = re.match(rb"^HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: (.*))?$", lines[0])
        if not m:
            raise Fail("bad status line %r" % lines[0][:80])
        resp = Response(f"{m.group(1).decode()}.{m.group(2).decode()}", int(m.group(3)),
                        (m.group(4) or b"").decode("latin-1"), [], raw)
        for line in lines[1:]:
            if b":" not in line:
                raise Fail("response header line without colon: %r" % line[:80])
            k, v = line.split(b":", 1)
            name = k.decode("latin-1")
            if not TOKEN.match(name):
                raise Fail("bad response header name %r" % name)
            if b"\n" in v or b"\r" in v or b"\0" in v:
                raise Fail("bad bytes in response header %s" % name)
            resp.headers.append((name, v.strip(b" \t").decode("latin-1")))

        if head or resp.status in (204, 304) or 100 <= resp.status < 200:
            return resp
        if "chunked" in resp.tokens("transfer-encoding"):
            resp.body = self._read_chunked()
            return resp
        cls = resp.all("content-length")
        if cls:
            if len(set(cls)) != 1 or not cls[0].isdigit():
                raise Fail("bad Content-Length in response: %r" % cls)
            n = int(cls[0])
            if n > MAX_BODY:
                raise Fail(f"response body of {n} bytes is more than this suite reads")
            while len(self.buf) < n:
                if not self._fill(f"body ({len(self.buf)}/{n} bytes)"):
                    raise Fail(f"connection closed after {len(self.buf)} of {n} body bytes")
            resp.body, self.buf = self.buf[:n], self.buf[n:]
            return resp
        # No framing: the body runs until the server closes.
        while self._fill("close-delimited body"):
            if len(self.buf) > MAX_BODY:
                raise Fail("close-delimited body larger than %d bytes" % MAX_BODY)
        resp.body, self.buf = self.buf, b""
        resp.headers.append(("X-Conformance-Close-Delimited", "1"))
        return resp

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill("chunk size"):
                    raise Fail("connection closed inside chunked body")
            line, self.buf = self.buf.split(b"\r\n", 1)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise Fail("bad chunk size line %r" % line[:40])
            if size == 0:
                while True:  # trailers until an empty line
                    while b"\r\n" not in self.buf:
                        if not self._fill("chunked trailer"):
                            raise Fail("connection closed inside chunked trailer")
                    t, self.buf = self.buf.split(b"\r\n", 1)
                    if not t:
                        return body
            while len(self.buf) < size + 2:
                if not self._fill("chunk data"):
                    raise Fail("connection closed inside chunk data")
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]
            if len(body) > MAX_BODY:
                raise Fail("chunked body too large")

    def peer_closed(self, wait: float = TIMEOUT) -> bool:
        """True if the server closes (EOF/RST) within `wait` with no further bytes."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        except OSError:
            return True
        finally:
            self.sock.settimeout(TIMEOUT)
        if data:
            self.buf += data
            return False
        return True


def to_bytes(x: str | bytes) -> bytes:
    return x if isinstance(x, bytes) else x.encode("utf-8")


def req(target: str | bytes = "/small.txt", method: str | bytes = "GET",
        headers: list | None = None, version: str | bytes = "HTTP/1.1", host: bool = True,
        body: bytes = b"") -> bytes:
    """Build raw request bytes. headers: list of (name, value) pairs or raw header lines."""
    out = to_bytes(method) + b" " + to_bytes(target) + b" " + to_bytes(version) + b"\r\n"
    if host:
        out += b"Host: " + HOST.encode() + b"\r\n"
    for h in headers or []:
        if isinstance(h, tuple):
            out += to_bytes(h[0]) + b": " + to_bytes(h[1]) + b"\r\n"
        else:
            out += to_bytes(h) + b"\r\n"
    return out + b"\r\n" + body


def exchange(raw: bytes, head: bool = False, probe: bool = False) -> Response:
    """Open a connection, send raw, read one response. probe=True: then send a GET /small.txt on
    the same connection and require a correct 200, proving the first response was framed right
    (no stray body bytes) and the connection stayed usable."""
    with Conn() as c:
        c.send(raw)
        resp = c.read_response(head=head)
        if probe:
            try:
                probe_connection(c, resp)
            except Fail as e:
                DEFERRED.append(lambda e=e: (_ for _ in ()).throw(e))
        return resp


def probe_connection(c: Conn, after: Response) -> None:
    if after.status >= 400 and after.status != 404 and after.says_close():
        # An error response may end the connection, but only if it says so.
        expect(c.peer_closed(), f"{after.status} said Connection: close but the server kept "
                                "the connection open")
        return
    expect(not after.says_close(),
           f"{after.status} response said Connection: close; the connection should stay open")
    c.send(req("/small.txt"))
    try:
        r2 = c.read_response()
    except Fail as e:
        raise Fail(f"after a {after.status} response, a second request on the same connection "
                   f"failed: {e}")
    expect(r2.status == 200 and r2.body == SMALL,
           f"after a {after.status} response, a second request on the same connection got "
           f"{r2.summary()} body {r2.body[:40]!r}")


def get(target: str | bytes = "/small.txt", headers: list | None = None, method: str = "GET",
        probe: bool = False) -> Response:
    return exchange(req(target, method, headers), head=(method == "HEAD"), probe=probe)


# --------------------------------------------------------------------------------------------
# Assertion helpers
# --------------------------------------------------------------------------------------------

def media_type(v: str | None) -> str:
    return (v or "").split(";")[0].strip().lower()


def common_headers(r: Response, length: int | None = None) -> None:
    """Every 200/206 carries Accept-Ranges: bytes, Date, a strong ETag, Last-Modified,
    Content-Length and Content-Type."""
    expect(r.has("accept-ranges") and r.get("accept-ranges").strip().lower() == "bytes",
           f"Accept-Ranges is {r.get('accept-ranges')!r}, want 'bytes'")
    d = r.get("date")
    expect(d is not None and IMF_FIXDATE.match(d) is not None,
           f"Date {d!r} is not an IMF-fixdate")
    et = r.get("etag")
    expect(et is not None, "no ETag")
    expect(not et.startswith("W/"), f"ETag {et!r} is weak; want a strong ETag")
    expect(STRONG_ETAG.match(et) is not None, f"ETag {et!r} is not a quoted entity-tag")
    lm = r.get("last-modified")
    expect(lm is not None and IMF_FIXDATE.match(lm) is not None,
           f"Last-Modified {lm!r} is not an IMF-fixdate")
    cl = r.all("content-length")
    expect(len(cl) == 1 and cl[0].isdigit(), f"Content-Length is {cl!r}")
    if length is not None:
        expect(int(cl[0]) == length, f"Content-Length {cl[0]}, want {length}")
    expect(r.has("content-type"), "no Content-Type")
    expect(len(r.all("content-type")) == 1, "several Content-Type headers")


def status_is(r: Response, *codes: int) -> None:
    expect(r.status in codes,
           f"status {r.summary()}, want {' or '.join(map(str, codes))}")
    if r.status in (200, 206):
        DEFERRED.append(lambda: common_headers(r))


def body_is(r: Response, want: bytes) -> None:
    if r.body != want:
        raise Fail(f"body {r.body[:40]!r}{'...' if len(r.body) > 40 else ''} "
                   f"({len(r.body)} bytes), want {want[:40]!r} ({len(want)} bytes)")


def imf(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def parse_imf(s: str) -> int:
    return calendar.timegm(time.strptime(s, "%a, %d %b %Y %H:%M:%S GMT"))


def validators() -> tuple[str, str]:
    """(ETag, Last-Modified) of /small.txt from a plain GET."""
    r = get("/small.txt")
    status_is(r, 200)
    return r.get("etag"), r.get("last-modified")


# --------------------------------------------------------------------------------------------
# Check registry
# --------------------------------------------------------------------------------------------

CHECKS: list[tuple[str, Callable[[], None]]] = []


def check(fn: Callable[[], None]) -> Callable[[], None]:
    CHECKS.append((fn.__name__, fn))
    return fn


def add(name: str, fn: Callable[[], None]) -> None:
    CHECKS.append((name, fn))


# --------------------------------------------------------------------------------------------
# Basics, HEAD, methods
# --------------------------------------------------------------------------------------------

@check
def get_small_headers_and_body() -> None:
    r = get("/small.txt")
    status_is(r, 200)
    common_headers(r, 26)
    body_is(r, SMALL)
    expect(media_type(r.get("content-type")) == "text/plain",
           f"Content-Type {r.get('content-type')!r}, want text/plain")


@check
def last_modified_matches_mtime() -> None:
    r = get("/small.txt")
    status_is(r, 200)
    lm = r.get("last-modified")
    expect(parse_imf(lm) == FIXTURE_MTIME, f"Last-Modified {lm!r}, want {imf(FIXTURE_MTIME)!r}")


@check
def date_is_now() -> None:
    r = get("/small.txt")
    status_is(r, 200)
    skew = abs(parse_imf(r.get("date")) - time.time())
    expect(skew < 5, f"Date {r.get('date')!r} is {skew:.0f}s away from now")


@check
def etag_stable_across_requests() -> None:
    a, b = get("/small.txt"), get("/small.txt")
    expect(a.get("etag") == b.get("etag"), f"ETag changed: {a.get('etag')} vs {b.get('etag')}")


@check
def etag_differs_between_files() -> None:
    a, b = get("/small.txt"), get("/x.json")
    status_is(a, 200)
    status_is(b, 200)
    expect(a.get("etag") != b.get("etag"), "two different files have the same ETag")


@check
def get_video_1mib() -> None:
    r = get("/video.mp4")
    status_is(r, 200)
    common_headers(r, VIDEO_LEN)
    expect(r.body == VIDEO, f"video.mp4 body differs ({len(r.body)} bytes)")
    expect(media_type(r.get("content-type")) == "video/mp4", "Content-Type not video/mp4")


@check
def get_empty_file() -> None:
    r = get("/empty.bin", probe=True)
    status_is(r, 200)
    common_headers(r, 0)
    body_is(r, b"")


@check
def get_nested_file() -> None:
    r = get("/sub/nested.webm")
    status_is(r, 200)
    body_is(r, NESTED)
    expect(media_type(r.get("content-type")) == "video/webm",
           f"Content-Type {r.get('content-type')!r}, want video/webm")


@check
def head_same_headers_as_get() -> None:
    g = get("/small.txt")
    h = get("/small.txt", method="HEAD", probe=True)  # probe proves HEAD sent no body
    status_is(h, 200)
    common_headers(h, 26)
    ignore = {"date", "connection", "keep-alive"}
    gn = {k.lower() for k, _ in g.headers} - ignore
    hn = {k.lower() for k, _ in h.headers} - ignore
    expect(gn == hn, f"header names differ: GET-only {sorted(gn - hn)}, HEAD-only {sorted(hn - gn)}")
    for name in ("content-length", "content-type", "etag", "last-modified", "accept-ranges"):
        expect(g.get(name) == h.get(name), f"{name}: GET {g.get(name)!r} vs HEAD {h.get(name)!r}")


@check
def head_video_no_body() -> None:
    h = get("/video.mp4", method="HEAD", probe=True)
    status_is(h, 200)
    common_headers(h, VIDEO_LEN)


@check
def head_big_file_over_4gib() -> None:
    h = get("/big.bin", method="HEAD", probe=True)
    status_is(h, 200)
    common_headers(h, BIG_LEN)


def _method_405(method: str) -> Callable[[], None]:
    def fn() -> None:
        if method == "CONNECT":
            raw = req(HOST, "CONNECT")  # authority-form, as RFC 9112 3.2.3 requires
        elif method in ("POST", "PUT", "PATCH"):
            raw = req("/small.txt", method, [("Content-Length", "3")], body=b"abc")
        else:
            raw = req("/small.txt", method)
        r = exchange(raw)
        status_is(r, 405)
        allow = r.get("allow")
        expect(allow is not None, "405 without an Allow header")
        got = sorted(t.strip().upper() for t in allow.split(",") if t.strip())
        expect(got == ["GET", "HEAD"], f"Allow {allow!r}, want 'GET, HEAD'")
    return fn


for _m in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"):
    add(f"method_{_m.lower()}_405", _method_405(_m))


@check
def method_405_keeps_connection() -> None:
    # The 3-byte body must be consumed and the connection reusable.
    r = exchange(req("/small.txt", "POST", [("Content-Length", "3")], body=b"abc"), probe=True)
    status_is(r, 405)


@check
def method_unknown_501() -> None:
    r = exchange(req("/small.txt", "FOO"))
    status_is(r, 501)


# --------------------------------------------------------------------------------------------
# Versions and connection management
# --------------------------------------------------------------------------------------------

@check
def http11_keepalive_default() -> None:
    with Conn() as c:
        for i in range(3):
            c.send(req("/small.txt"))
            r = c.read_response()
            status_is(r, 200)
            body_is(r, SMALL)
            expect(not r.says_close(), f"response {i + 1} says Connection: close")


@check
def http10_closes_by_default() -> None:
    with Conn() as c:
        c.send(b"GET /small.txt HTTP/1.0\r\n\r\n")
        r = c.read_response()
        status_is(r, 200)
        body_is(r, SMALL)
        expect(c.peer_closed(), "HTTP/1.0 request without keep-alive: server did not close")


@check
def http10_keepalive() -> None:
    with Conn() as c:
        c.send(b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        status_is(r, 200)
        body_is(r, SMALL)
        expect("keep-alive" in r.tokens("connection"),
               f"response Connection is {r.get('connection')!r}, want keep-alive")
        c.send(b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r2 = c.read_response()
        status_is(r2, 200)
        body_is(r2, SMALL)


@check
def http11_connection_close() -> None:
    with Conn() as c:
        c.send(req("/small.txt", headers=[("Connection", "close")]))
        r = c.read_response()
        status_is(r, 200)
        body_is(r, SMALL)
        expect(r.says_close(), f"response Connection is {r.get('connection')!r}, want close")
        expect(c.peer_closed(), "server did not close after Connection: close")


@check
def version_http2_505() -> None:
    status_is(exchange(req(version="HTTP/2.0")), 505)


@check
def version_http3_505() -> None:
    status_is(exchange(req(version="HTTP/3.0")), 505)


@check
def version_garbage_400() -> None:
    status_is(exchange(req(version="HTTX/1.1")), 400)


@check
def pipeline_three_in_one_write() -> None:
    with Conn() as c:
        c.send(req("/small.txt") + req("/sub/nested.webm")
               + req("/small.txt", headers=[("Range", "bytes=0-4")]))
        r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
        status_is(r1, 200)
        body_is(r1, SMALL)
        status_is(r2, 200)
        body_is(r2, NESTED)
        status_is(r3, 206)
        body_is(r3, b"abcde")


@check
def pipeline_head_then_get() -> None:
    with Conn() as c:
        c.send(req("/video.mp4", "HEAD") + req("/small.txt"))
        r1 = c.read_response(head=True)
        status_is(r1, 200)
        r2 = c.read_response()
        status_is(r2, 200)
        body_is(r2, SMALL)


@check
def pipeline_404_then_200() -> None:
    with Conn() as c:
        c.send(req("/missing") + req("/small.txt"))
        r1 = c.read_response()
        status_is(r1, 404)
        r2 = c.read_response()
        status_is(r2, 200)
        body_is(r2, SMALL)


@check
def request_in_1_byte_writes() -> None:
    with Conn() as c:
        c.send_slowly(req("/small.txt", headers=[("User-Agent", "slow")]))
        r = c.read_response()
        status_is(r, 200)
        body_is(r, SMALL)


@check
def error_404_keeps_connection() -> None:
    with Conn() as c:
        c.send(req("/missing"))
        r = c.read_response()
        status_is(r, 404)
        expect(r.has("content-length") or r.says_close(),
               "404 has neither Content-Length nor Connection: close")
        probe_connection(c, r)


@check
def get_with_cl_body_then_pipelined_get() -> None:
    with Conn() as c:
        c.send(req("/small.txt", headers=[("Content-Length", "5")], body=b"hello")
               + req("/x.json"))
        r1 = c.read_response()
        status_is(r1, 200)
        body_is(r1, SMALL)
        r2 = c.read_response()
        status_is(r2, 200)
        body_is(r2, b"mime fixture x.json\n")


@check
def get_with_chunked_body_then_pipelined_get() -> None:
    with Conn() as c:
        c.send(req("/small.txt", headers=[("Transfer-Encoding", "chunked")],
                   body=b"5\r\nhello\r\n0\r\n\r\n") + req("/x.json"))
        r1 = c.read_response()
        if r1.status == 400:
            expect(r1.says_close(), "400 for a chunked body without Connection: close")
            expect(c.peer_closed(), "400 for a chunked body but the connection stayed open")
            return
        status_is(r1, 200)
        body_is(r1, SMALL)
        r2 = c.read_response()
        status_is(r2, 200)
        body_is(r2, b"mime fixture x.json\n")


# --------------------------------------------------------------------------------------------
# Malformed requests -> 400
# --------------------------------------------------------------------------------------------

# Message-framing errors: after the 400 the server MUST close the connection (RFC 9112 6.1 for
# Content-Length + Transfer-Encoding, 6.3 item 5 for an invalid Content-Length), since it can no
# longer tell where the next request starts.
FRAMING_ERRORS = {"content_length_and_transfer_encoding", "two_different_content_lengths",
                  "content_length_list_different", "content_length_non_numeric",
                  "content_length_negative", "content_length_plus_sign"}


def _malformed(raw_fn: Callable[[], bytes], must_close: bool) -> Callable[[], None]:
    def fn() -> None:
        with Conn() as c:
            c.send(raw_fn())
            r = c.read_response()
            status_is(r, 400)
            if must_close:
                expect(c.peer_closed(), "400 for a framing error but the connection stayed open")
    return fn


def register_malformed() -> None:
    # Registered after argument parsing: the request bytes embed HOST.
    for n in build_malformed():
        add(f"malformed_{n}_400",
            _malformed(lambda n=n: build_malformed()[n], n in FRAMING_ERRORS))


def build_malformed() -> dict[str, bytes]:
    h = HOST.encode()
    return {
        "missing_host_http11": b"GET /small.txt HTTP/1.1\r\n\r\n",
        "two_host_headers": req(headers=[("Host", "other.example")]),
        "obs_fold_space": req(headers=["X-A: one", " folded"]),
        "obs_fold_tab": req(headers=["X-A: one", "\tfolded"]),
        "header_without_colon": req(headers=["X-No-Colon value"]),
        "space_before_colon": b"GET /small.txt HTTP/1.1\r\nHost : " + h + b"\r\n\r\n",
        "space_before_colon_other": req(headers=["X-A : 1"]),
        "content_length_and_transfer_encoding": req(
            headers=[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            body=b"0\r\n\r\n"),
        "two_different_content_lengths": req(
            headers=[("Content-Length", "1"), ("Content-Length", "2")], body=b"ab"),
        "content_length_list_different": req(headers=[("Content-Length", "1, 2")], body=b"ab"),
        "content_length_non_numeric": req(headers=[("Content-Length", "abc")]),
        "content_length_negative": req(headers=[("Content-Length", "-1")]),
        "content_length_plus_sign": req(headers=[("Content-Length", "+1")], body=b"a"),
        "nul_in_header_value": req(headers=[b"X-A: a\x00b"]),
        "ctl_0x01_in_header_value": req(headers=[b"X-A: a\x01b"]),
        "bare_cr_in_header_value": req(headers=[b"X-A: a\rb"]),
        "nul_in_request_target": b"GET /small.txt\x00 HTTP/1.1\r\nHost: " + h + b"\r\n\r\n",
        "bare_garbage_line": b"garbage\r\n\r\n",
        "space_in_header_name": req(headers=["X A: 1"]),
        "empty_header_name": req(headers=[": value"]),
        "request_line_missing_version": b"GET /small.txt\r\nHost: " + h + b"\r\n\r\n",
    }


@check
def request_line_two_spaces_200_or_400() -> None:
    # RFC 9112 3: a recipient MAY parse on whitespace boundaries, so lenient 200 is allowed too.
    r = exchange(b"GET  /small.txt HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n")
    status_is(r, 200, 400)


@check
def transfer_encoding_unknown_501_or_400() -> None:
    # RFC 9112 6.1: an unknown transfer coding SHOULD get 501; 400 is tolerated.
    status_is(exchange(req(headers=[("Transfer-Encoding", "gzip")], body=b"x")), 501, 400)


@check
def tls_client_hello_400_or_close() -> None:
    # A TLS ClientHello on the plain port. A server may wait for a line end; once one arrives the
    # request is a garbage line, so the answer is a 400 or a close, never a hang or a crash.
    hello = bytes.fromhex("16030100a5010000a10303") + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00"
    with Conn() as c:
        c.send(hello)
        if c.peer_closed(wait=0.5):
            return
        c.send(b"\r\n\r\n")
        try:
            r = c.read_response()
        except Fail as e:
            if "closed without a response" in str(e) or "reset" in str(e):
                return
            raise
        status_is(r, 400)


@check
def header_value_with_htab_ok() -> None:
    status_is(get(headers=[b"X-A: a\tb"]), 200)


@check
def header_value_with_obs_text_ok() -> None:
    status_is(get(headers=[b"X-A: caf\xe9"]), 200)


@check
def header_name_case_insensitive_host() -> None:
    r = exchange(b"GET /small.txt HTTP/1.1\r\nhOsT: " + HOST.encode() + b"\r\n\r\n")
    status_is(r, 200)


@check
def identical_duplicate_content_length_ok_or_400() -> None:
    # RFC 9112 6.3: identical repeated values may be accepted as one; rejecting is also allowed.
    with Conn() as c:
        c.send(req(headers=[("Content-Length", "2"), ("Content-Length", "2")], body=b"ab")
               + req("/x.json"))
        r = c.read_response()
        status_is(r, 200, 400)
        if r.status == 200:
            r2 = c.read_response()
            status_is(r2, 200)
            body_is(r2, b"mime fixture x.json\n")


# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------

@check
def target_over_8kib_414() -> None:
    status_is(exchange(req("/" + "a" * 9000)), 414)


@check
def target_under_8kib_404() -> None:
    status_is(exchange(req("/" + "a" * 7900)), 404)


@check
def header_block_over_16kib_431() -> None:
    pads = [(f"X-Pad-{i}", "p" * 1000) for i in range(20)]  # ~20.5 KiB, 21 fields
    status_is(exchange(req(headers=pads)), 431)


@check
def single_header_over_16kib_431() -> None:
    status_is(exchange(req(headers=[("X-Big", "b" * 17000)])), 431)


@check
def header_block_under_16kib_ok() -> None:
    pads = [(f"X-Pad-{i}", "p" * 1000) for i in range(14)]  # ~14.4 KiB
    status_is(exchange(req(headers=pads)), 200)


@check
def header_fields_over_100_431() -> None:
    hs = [(f"X-H{i}", "1") for i in range(100)]  # + Host = 101 fields
    status_is(exchange(req(headers=hs)), 431)


@check
def header_fields_exactly_100_ok() -> None:
    hs = [(f"X-H{i}", "1") for i in range(99)]  # + Host = 100 fields
    status_is(exchange(req(headers=hs)), 200)


# --------------------------------------------------------------------------------------------
# Ranges (RFC 9110 14)
# --------------------------------------------------------------------------------------------

def range_206(target: str, rng: str, body: bytes, content_range: str, total: int) -> None:
    r = get(target, [("Range", rng)], probe=True)
    status_is(r, 206)
    expect(media_type(r.get("content-type")) != "multipart/byteranges",
           f"multipart/byteranges response; want one 206 with Content-Range {content_range!r}")
    body_is(r, body)
    cr = r.get("content-range")
    expect(cr == content_range, f"Content-Range {cr!r}, want {content_range!r}")
    expect(r.get("content-length") == str(len(body)),
           f"Content-Length {r.get('content-length')}, want {len(body)}")


def range_200_full(target: str, rng: str, body: bytes) -> None:
    r = get(target, [("Range", rng)], probe=True)
    status_is(r, 200)
    body_is(r, body)
    expect(not r.has("content-range"), f"200 carries Content-Range {r.get('content-range')!r}")


def range_416(target: str, rng: str, total: int) -> None:
    r = get(target, [("Range", rng)], probe=True)
    status_is(r, 416)
    want = f"bytes */{total}"
    expect(r.get("content-range") == want,
           f"416 Content-Range {r.get('content-range')!r}, want {want!r}")


RANGE_206 = [
    ("range_first_5", "bytes=0-4", SMALL[0:5], "bytes 0-4/26"),
    ("range_open_end", "bytes=20-", SMALL[20:], "bytes 20-25/26"),
    ("range_suffix_3", "bytes=-3", SMALL[-3:], "bytes 23-25/26"),
    ("range_suffix_longer_than_file", "bytes=-100", SMALL, "bytes 0-25/26"),
    ("range_end_clamped", "bytes=10-1000", SMALL[10:], "bytes 10-25/26"),
    ("range_last_byte", "bytes=25-25", SMALL[25:], "bytes 25-25/26"),
    ("range_unit_case_insensitive", "BYTES=0-4", SMALL[0:5], "bytes 0-4/26"),
    ("range_huge_last_pos", "bytes=0-99999999999999999999999", SMALL, "bytes 0-25/26"),
    ("range_ows_around_comma_coalesced", "bytes=0-1 , 2-4", SMALL[0:5], "bytes 0-4/26"),
    ("range_overlap_coalesced", "bytes=0-4,3-8", SMALL[0:9], "bytes 0-8/26"),
    ("range_adjacent_coalesced", "bytes=0-4,5-9", SMALL[0:10], "bytes 0-9/26"),
    ("range_unsatisfiable_part_dropped", "bytes=30-40,0-1", SMALL[0:2], "bytes 0-1/26"),
]
for _n, _r, _b, _cr in RANGE_206:
    add(_n, lambda r=_r, b=_b, cr=_cr: range_206("/small.txt", r, b, cr, 26))

RANGE_416 = [
    ("range_start_at_eof_416", "bytes=26-"),
    ("range_beyond_eof_416", "bytes=30-40"),
    ("range_suffix_zero_416", "bytes=-0"),
    ("range_huge_first_pos_416", "bytes=99999999999999999999999-"),
]
for _n, _r in RANGE_416:
    add(_n, lambda r=_r: range_416("/small.txt", r, 26))

RANGE_IGNORED = [
    ("range_invalid_reversed_200", "bytes=5-2"),
    ("range_unknown_unit_200", "items=0-4"),
    ("range_garbage_200", "bytes=abc"),
    ("range_empty_set_200", "bytes="),
    ("range_missing_equals_200", "bytes 0-4"),
    ("range_one_invalid_part_200", "bytes=0-1,x-y"),
]
for _n, _r in RANGE_IGNORED:
    add(_n, lambda r=_r: range_200_full("/small.txt", r, SMALL))


@check
def range_head_ignored() -> None:
    r = get("/small.txt", [("Range", "bytes=0-4")], method="HEAD", probe=True)
    status_is(r, 200)
    common_headers(r, 26)
    expect(not r.has("content-range"), "HEAD with Range carries Content-Range")


@check
def range_video_middle() -> None:
    range_206("/video.mp4", "bytes=1000-1999", VIDEO[1000:2000],
              f"bytes 1000-1999/{VIDEO_LEN}", VIDEO_LEN)


@check
def range_video_suffix() -> None:
    range_206("/video.mp4", "bytes=-10", VIDEO[-10:],
              f"bytes {VIDEO_LEN - 10}-{VIDEO_LEN - 1}/{VIDEO_LEN}", VIDEO_LEN)


@check
def range_big_file_over_4gib() -> None:
    range_206("/big.bin", f"bytes={BIG_OFFSET}-{BIG_OFFSET + 9}", BIG_MARKER,
              f"bytes {BIG_OFFSET}-{BIG_OFFSET + 9}/{BIG_LEN}", BIG_LEN)


@check
def range_big_file_suffix() -> None:
    range_206("/big.bin", "bytes=-10", BIG_MARKER,
              f"bytes {BIG_OFFSET}-{BIG_OFFSET + 9}/{BIG_LEN}", BIG_LEN)


@check
def range_big_file_across_4gib_boundary() -> None:
    lo = (1 << 32) - 4
    range_206("/big.bin", f"bytes={lo}-{lo + 7}", bytes(8),
              f"bytes {lo}-{lo + 7}/{BIG_LEN}", BIG_LEN)


def parse_multipart(r: Response) -> list[tuple[dict[str, str], bytes]]:
    ct = r.get("content-type") or ""
    expect(media_type(ct) == "multipart/byteranges",
           f"Content-Type {ct!r}, want multipart/byteranges")
    m = re.search(r';\s*boundary=(?:"([^"]+)"|([^;\s]+))', ct, re.I)
    expect(m is not None, f"no boundary parameter in {ct!r}")
    boundary = (m.group(1) or m.group(2)).encode()
    expect(r.get("content-length") == str(len(r.body)),
           f"Content-Length {r.get('content-length')} but body is {len(r.body)} bytes")
    delim = b"\r\n--" + boundary
    chunks = (b"\r\n" + r.body).split(delim)
    expect(len(chunks) >= 3, f"multipart body has {len(chunks) - 1} delimiters")
    # chunks[0] is the preamble, chunks[-1] must be the close delimiter's tail.
    tail = chunks[-1]
    expect(tail.startswith(b"--"), f"multipart body does not end with a close delimiter: {tail[:20]!r}")
    expect(tail[2:].strip(b"\r\n") == b"", f"bytes after close delimiter: {tail[2:40]!r}")
    parts = []
    for ch in chunks[1:-1]:
        expect(ch.startswith(b"\r\n"), f"part does not start with CRLF: {ch[:20]!r}")
        expect(b"\r\n\r\n" in ch[2:] or ch[2:].startswith(b"\r\n"), "part without header end")
        rest = ch[2:]
        if rest.startswith(b"\r\n"):
            hdr_raw, data = b"", rest[2:]
        else:
            hdr_raw, data = rest.split(b"\r\n\r\n", 1)
        hdrs = {}
        for line in hdr_raw.split(b"\r\n") if hdr_raw else []:
            expect(b":" in line, f"bad part header {line[:40]!r}")
            k, v = line.split(b":", 1)
            hdrs[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
        parts.append((hdrs, data))
    return parts


@check
def range_multi_multipart() -> None:
    r = get("/small.txt", [("Range", "bytes=0-0,2-2")], probe=True)
    status_is(r, 206)
    expect(not r.has("content-range"), "multipart 206 carries a top-level Content-Range")
    parts = parse_multipart(r)
    expect(len(parts) == 2, f"{len(parts)} parts, want 2")
    for (hdrs, data), cr, want in zip(parts, ("bytes 0-0/26", "bytes 2-2/26"), (b"a", b"c")):
        expect(media_type(hdrs.get("content-type")) == "text/plain",
               f"part Content-Type {hdrs.get('content-type')!r}, want text/plain")
        expect(hdrs.get("content-range") == cr,
               f"part Content-Range {hdrs.get('content-range')!r}, want {cr!r}")
        expect(data == want, f"part data {data!r}, want {want!r}")


@check
def range_multi_three_parts_video() -> None:
    r = get("/video.mp4", [("Range", "bytes=0-9,100-109,-10")], probe=True)
    status_is(r, 206)
    parts = parse_multipart(r)
    want = [(f"bytes 0-9/{VIDEO_LEN}", VIDEO[0:10]), (f"bytes 100-109/{VIDEO_LEN}", VIDEO[100:110]),
            (f"bytes {VIDEO_LEN - 10}-{VIDEO_LEN - 1}/{VIDEO_LEN}", VIDEO[-10:])]
    expect(len(parts) == 3, f"{len(parts)} parts, want 3")
    for (hdrs, data), (cr, b) in zip(parts, want):
        expect(hdrs.get("content-range") == cr, f"part Content-Range {hdrs.get('content-range')!r}, want {cr!r}")
        expect(data == b, f"part data differs for {cr}")
        expect(media_type(hdrs.get("content-type")) == "video/mp4", "part Content-Type not video/mp4")


def _whole_file_at_most_26(rng: str) -> Callable[[], None]:
    def fn() -> None:
        r = get("/small.txt", [("Range", rng)], probe=True)
        status_is(r, 200, 206)
        expect(len(r.body) <= 26, f"body is {len(r.body)} bytes for a 26-byte file")
        body_is(r, SMALL)
        if r.status == 206:
            expect(r.get("content-range") == "bytes 0-25/26",
                   f"Content-Range {r.get('content-range')!r}, want 'bytes 0-25/26'")
    return fn


add("range_duplicate_whole_file", _whole_file_at_most_26("bytes=0-25,0-25"))
add("range_pieces_cover_whole_file", _whole_file_at_most_26("bytes=0-12,13-25"))
add("range_many_overlaps_whole_file", _whole_file_at_most_26(
    "bytes=" + ",".join("0-25" for _ in range(50))))


@check
def range_200_tiny_ranges_capped() -> None:
    spec = "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(200))
    r = get("/small.txt", [("Range", spec)])
    status_is(r, 200, 206, 416)
    expect(len(r.body) <= 26 + 4096,
           f"body is {len(r.body)} bytes for a 26-byte file (range amplification)")


@check
def range_overlapping_amplification_capped() -> None:
    spec = "bytes=" + ",".join(f"{i % 20}-{i % 20 + 5}" for i in range(300))
    r = get("/video.mp4", [("Range", spec)])
    status_is(r, 200, 206, 416)
    if r.status == 206:
        expect(len(r.body) <= 26 + 4096, f"206 body is {len(r.body)} bytes for bytes 0-24")


@check
def range_multi_on_empty_file() -> None:
    r = get("/empty.bin", [("Range", "bytes=0-0,2-2")], probe=True)
    status_is(r, 200, 416)
    body_is(r, b"")
    if r.status == 416:
        expect(r.get("content-range") == "bytes */0", f"Content-Range {r.get('content-range')!r}")


@check
def range_suffix_on_empty_file_200() -> None:
    r = get("/empty.bin", [("Range", "bytes=-5")], probe=True)
    status_is(r, 200)
    body_is(r, b"")


@check
def range_first_byte_on_empty_file() -> None:
    r = get("/empty.bin", [("Range", "bytes=0-0")], probe=True)
    status_is(r, 200, 416)
    body_is(r, b"")
    if r.status == 416:
        expect(r.get("content-range") == "bytes */0",
               f"Content-Range {r.get('content-range')!r}, want 'bytes */0'")


# --------------------------------------------------------------------------------------------
# Preconditions (RFC 9110 13.2.2 order)
# --------------------------------------------------------------------------------------------

def is_304(r: Response, etag: str) -> None:
    status_is(r, 304)
    # RFC 9110 15.4.5: a 304 carries the Date and ETag a 200 would have had.
    d = r.get("date")
    expect(d is not None and IMF_FIXDATE.match(d) is not None, f"304 Date {d!r}")
    expect(r.get("etag") == etag, f"304 ETag {r.get('etag')!r}, want {etag!r}")
    expect(not r.has("content-type"), f"304 carries Content-Type {r.get('content-type')!r}")
    expect(not r.has("content-range"), "304 carries Content-Range")


def _cond(build: Callable[[str, str], list], want: int, target: str = "/small.txt",
          body: bytes | None = None) -> Callable[[], None]:
    def fn() -> None:
        etag, lm = validators()
        r = get(target, build(etag, lm), probe=True)
        if want == 304:
            is_304(r, etag)
        else:
            status_is(r, want)
            if body is not None:
                body_is(r, body)
    return fn


EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"
COND = [
    ("inm_exact_304", lambda e, lm: [("If-None-Match", e)], 304, None),
    ("inm_weak_304", lambda e, lm: [("If-None-Match", "W/" + e)], 304, None),
    ("inm_list_304", lambda e, lm: [("If-None-Match", f'"x", {e}')], 304, None),
    ("inm_star_304", lambda e, lm: [("If-None-Match", "*")], 304, None),
    ("inm_other_200", lambda e, lm: [("If-None-Match", '"nope"')], 200, SMALL),
    ("ims_equal_304", lambda e, lm: [("If-Modified-Since", lm)], 304, None),
    ("ims_later_304", lambda e, lm: [("If-Modified-Since", imf(parse_imf(lm) + 3600))], 304, None),
    ("ims_epoch_200", lambda e, lm: [("If-Modified-Since", EPOCH)], 200, SMALL),
    ("ims_invalid_date_200", lambda e, lm: [("If-Modified-Since", "yesterday-ish")], 200, SMALL),
    ("inm_overrides_ims_200", lambda e, lm: [("If-None-Match", '"nope"'),
                                              ("If-Modified-Since", lm)], 200, SMALL),
    ("if_match_exact_200", lambda e, lm: [("If-Match", e)], 200, SMALL),
    ("if_match_other_412", lambda e, lm: [("If-Match", '"nope"')], 412, None),
    ("if_match_weak_412", lambda e, lm: [("If-Match", "W/" + e)], 412, None),
    ("if_match_star_200", lambda e, lm: [("If-Match", "*")], 200, SMALL),
    ("if_match_list_200", lambda e, lm: [("If-Match", f'"nope", {e}')], 200, SMALL),
    ("ius_epoch_412", lambda e, lm: [("If-Unmodified-Since", EPOCH)], 412, None),
    ("ius_equal_200", lambda e, lm: [("If-Unmodified-Since", lm)], 200, SMALL),
    ("if_match_overrides_ius_200", lambda e, lm: [("If-Match", e),
                                                   ("If-Unmodified-Since", EPOCH)], 200, SMALL),
    ("inm_with_range_304", lambda e, lm: [("If-None-Match", e), ("Range", "bytes=0-4")], 304, None),
    ("if_match_fail_with_range_412", lambda e, lm: [("If-Match", '"nope"'),
                                                     ("Range", "bytes=0-4")], 412, None),
    ("if_range_etag_206", lambda e, lm: [("If-Range", e), ("Range", "bytes=0-4")], 206, SMALL[:5]),
    ("if_range_other_etag_200", lambda e, lm: [("If-Range", '"other"'),
                                                ("Range", "bytes=0-4")], 200, SMALL),
    ("if_range_weak_etag_200", lambda e, lm: [("If-Range", "W/" + e),
                                               ("Range", "bytes=0-4")], 200, SMALL),
    ("if_range_last_modified_206", lambda e, lm: [("If-Range", lm),
                                                   ("Range", "bytes=0-4")], 206, SMALL[:5]),
    ("if_range_other_date_200", lambda e, lm: [("If-Range", imf(parse_imf(lm) - 86400)),
                                                ("Range", "bytes=0-4")], 200, SMALL),
]
for _n, _b, _w, _body in COND:
    add(_n, _cond(_b, _w, body=_body))


@check
def if_match_on_missing_file_404() -> None:
    status_is(get("/missing", [("If-Match", '"nope"')]), 404)


@check
def inm_on_missing_file_404() -> None:
    status_is(get("/missing", [("If-None-Match", "*")]), 404)


@check
def head_inm_304() -> None:
    etag, _ = validators()
    r = get("/small.txt", [("If-None-Match", etag)], method="HEAD", probe=True)
    is_304(r, etag)


# --------------------------------------------------------------------------------------------
# MIME types
# --------------------------------------------------------------------------------------------

def _mime(name: str, accepted: tuple[str, ...]) -> Callable[[], None]:
    def fn() -> None:
        r = get("/" + name)
        status_is(r, 200)
        mt = media_type(r.get("content-type"))
        expect(mt in accepted, f"Content-Type {r.get('content-type')!r}, want {' or '.join(accepted)}")
    return fn


for _name, _acc in MIME_FIXTURES.items():
    _ext = _name.split(".")[-1]
    add(f"mime_{'upper_' if _ext.isupper() else ''}{_ext.lower()}", _mime(_name, _acc))


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------

def _not_served(target: bytes) -> Callable[[], None]:
    def fn() -> None:
        r = exchange(req(target))
        expect(b"root:" not in r.body, f"{r.status} response leaked /etc/passwd contents")
        expect(r.status in (400, 403, 404), f"status {r.summary()}, want 400, 403 or 404")
    return fn


ESCAPES = [
    ("path_dotdot_raw", b"/../../etc/passwd"),
    ("path_dotdot_pct_encoded", b"/%2e%2e/%2e%2e/etc/passwd"),
    ("path_dotdot_pct_upper_slashes", b"/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd"),
    ("path_sub_dotdot_escape", b"/sub/../../etc/passwd"),
    ("path_dotdot_pct2f", b"/..%2f..%2fetc/passwd"),
    ("path_backslash_raw", b"/..\\..\\etc\\passwd"),
    ("path_backslash_pct5c", b"/%5c..%5c..%5cetc%5cpasswd"),
    ("path_pct00_truncation", b"/small.txt%00.mp4"),
    ("path_etc_passwd_not_in_root", b"/etc/passwd"),
    ("path_outside_symlink", b"/outside_link"),
    ("path_symlinked_dir_outside", b"/outdir/passwd"),
    ("path_double_slash", b"//etc/passwd"),
    ("path_dotdot_overlong_utf8", b"/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd"),
    ("path_dotdot_many", b"/" + b"../" * 40 + b"etc/passwd"),
]
for _n, _t in ESCAPES:
    add(_n, _not_served(_t))


def _served_small(target: bytes, also: tuple[int, ...] = ()) -> Callable[[], None]:
    def fn() -> None:
        r = exchange(req(target))
        status_is(r, 200, *also)
        if r.status == 200:
            body_is(r, SMALL)
    return fn


add("path_query_ignored", _served_small(b"/small.txt?x=1&y=/../"))
add("path_dotdot_inside_root", _served_small(b"/sub/../small.txt", (400,)))
add("path_pct_decoding", _served_small(b"/%73mall.txt"))
add("path_inside_symlink_served", _served_small(b"/inside_link"))
add("path_absolute_form", lambda: _served_small(f"http://{HOST}/small.txt".encode())())
add("path_fragment_ignored_or_400", _served_small(b"/small.txt#frag", (400, 404)))


@check
def path_space_unicode_name() -> None:
    r = exchange(req(b"/a%20b%20%C3%A9.txt"))
    status_is(r, 200)
    body_is(r, b"space and unicode\n")


def _hidden(target: bytes, forbid: bytes = b"") -> Callable[[], None]:
    def fn() -> None:
        r = exchange(req(target))
        expect(r.status in (403, 404), f"status {r.summary()}, want 403 or 404")
        if forbid:
            expect(forbid not in r.body, f"body lists {forbid.decode()!r}")
        expect(b"dotfile" not in r.body, "body contains the dotfile's contents")
    return fn


add("path_dotfile_hidden", _hidden(b"/.hidden"))
add("path_nested_dotfile_hidden", _hidden(b"/sub/.secret"))
add("path_pct_dotfile_hidden", _hidden(b"/%2ehidden"))
add("path_dir_slash_no_listing", _hidden(b"/sub/", b"nested.webm"))
add("path_dir_no_slash_no_listing", _hidden(b"/sub", b"nested.webm"))
add("path_root_dir_no_listing", _hidden(b"/", b"small.txt"))


@check
def path_missing_404() -> None:
    r = get("/missing", probe=True)
    status_is(r, 404)


@check
def path_invalid_pct_escape_400() -> None:
    status_is(exchange(req(b"/%zz")), 400)


@check
def path_truncated_pct_escape_400() -> None:
    status_is(exchange(req(b"/small.txt%2")), 400)


@check
def path_not_starting_with_slash_400() -> None:
    status_is(exchange(req(b"small.txt")), 400)


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------

def main() -> int:
    global ARGS, HOST, ADDR, VERBOSE, TLS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="directory the server serves; fixtures go here")
    ap.add_argument("--target", required=True, help="HOST:PORT of the server")
    ap.add_argument("--only", default=None, help="run only checks whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print the bytes exchanged by failing checks")
    ap.add_argument("--tls", action="store_true",
                    help="speak HTTPS to the target (TLS 1.2+, ALPN http/1.1), verifying it")
    ap.add_argument("--cacert", default=None,
                    help="with --tls: the CA certificate (PEM) the server's chain must lead to")
    ARGS = ap.parse_args()
    if ARGS.tls:
        TLS = ssl.create_default_context(cafile=ARGS.cacert)
        TLS.minimum_version = ssl.TLSVersion.TLSv1_2
        TLS.set_alpn_protocols(["http/1.1"])
    elif ARGS.cacert:
        ap.error("--cacert needs --tls")
    VERBOSE = ARGS.verbose
    host, _, port = ARGS.target.rpartition(":")
    if not host or not port.isdigit():
        ap.error("--target must be HOST:PORT")
    ADDR = (host.strip("[]"), int(port))
    HOST = ARGS.target

    make_fixtures(ARGS.root)
    register_malformed()

    # Last, always: the server must have survived everything above.
    CHECKS.append(("server_still_alive", lambda: body_is(get("/small.txt"), SMALL)))
    selected = [(n, f) for n, f in CHECKS
                if ARGS.only is None or ARGS.only in n or n == "server_still_alive"]
    names = [n for n, _ in CHECKS]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"duplicate check names {dup}"

    passed = failed = 0
    start = time.monotonic()
    for name, fn in selected:
        TRACE.clear()
        if time.monotonic() - start > SUITE_BUDGET:
            print(f"FAIL {name}: not run: suite time budget of {SUITE_BUDGET:g}s used up")
            failed += 1
            continue
        DEFERRED.clear()
        t0 = time.monotonic()
        try:
            fn()
            for d in DEFERRED:
                d()
        except Fail as e:
            print(f"FAIL {name}: {e}")
            failed += 1
        except Exception as e:  # a bug in a check, or something the client could not handle
            print(f"FAIL {name}: unexpected {type(e).__name__}: {e}")
            failed += 1
        else:
            print(f"PASS {name}")
            passed += 1
            if VERBOSE and time.monotonic() - t0 > 0.5:
                print(f"    | slow: {time.monotonic() - t0:.1f}s")
            continue
        if VERBOSE:
            for t in TRACE:
                for line in t.splitlines():
                    print("    | " + line)
        sys.stdout.flush()
    if VERBOSE:
        print(f"    | {len(selected)} checks in {time.monotonic() - start:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
