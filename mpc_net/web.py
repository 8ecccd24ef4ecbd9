"""`mpc-net web`: the browser bundle and a room server on one port.

The room server is the usual one; its connections answer every request that is not a WebSocket
upgrade with a file of the bundle (mpc_net/bundle.py builds it), several on one connection
(signaling/keepalive.py), so a page and the room it joins share one origin, one port and one
process.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import re
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .bundle import BuildError, installed_bundle
from .ice import IceConfigError, parse_urls
from .signaling.arguments import limits_from, start_logging, tls_from
from .signaling.keepalive import KeepAliveConnection, asks_for_websocket
from .signaling.logs import event
from .signaling.server import OPEN_TIMEOUT, SHUTDOWN_MESSAGE, RoomServer, serve_until_signal
from .web_arguments import BUNDLE_VARIABLE, add_arguments  # noqa: F401 (web.add_arguments)

logger = logging.getLogger("mpc_net.web")


CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",  # needed for WebAssembly's streaming compilation
    ".zip": "application/zip",
    ".whl": "application/zip",
    ".md": "text/plain; charset=utf-8",
}

# What the page needs and no more: its own scripts, WebAssembly compilation for Pyodide, and
# connections to its own server, to room servers a link names and to a package repository.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "connect-src 'self' ws: wss: https:",
    "style-src 'self'",
    "img-src 'self' data:",  # the empty data: icon, so that no /favicon.ico is asked for
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    # Links carry the room and the roster; a page they lead to need not see them.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

# A file of the bundle named by a digest of what it holds, or in a directory so named (the
# bundle's memory snapshot, Pyodide's directory): other contents get another name, so browsers
# may keep it and never ask again. Chromium also keeps the compiled WebAssembly of a response
# beside it in its HTTP cache; a response it need not revalidate keeps it from load to load.
DIGEST_NAMED = re.compile(r"[\w.]*-[0-9a-f]{16}(\.[\w.]+)?")
IMMUTABLE = "max-age=31536000, immutable"

# Longer paths name no file of a bundle; refusing them early keeps them away from the OS.
MAX_PATH = 1024

# `--program FILE`s: listed at PROGRAM_LIST, each at PROGRAMS/NAME, next to the bundle's files.
PROGRAM_LIST = "programs.json"
PROGRAMS = "programs"
# A program is one file a person reads and a page edits; beyond this it is surely not one.
MAX_PROGRAM = 1 << 20


class ProgramFileError(ValueError):
    """A `--program FILE` that a page could not run; the text says why, in one line."""


def read_programs(paths: list[str]) -> dict[str, str]:
    """The programs `mpc-net web --program` serves, by file name (the name a link's
    `program=` gives): each readable UTF-8 Python that compiles, and no two with one name."""
    programs: dict[str, str] = {}
    for path in paths:
        name = Path(path).name
        if not name.endswith(".py"):
            raise ProgramFileError(f"{path}: a program is a .py file")
        if name in programs:
            raise ProgramFileError(f"{path}: two programs named {name}; pages list programs "
                                   "by file name")
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_PROGRAM + 1)
        except OSError as exc:
            raise ProgramFileError(f"cannot read the program {path}: {exc.strerror or exc}"
                                   ) from None
        if len(data) > MAX_PROGRAM:
            raise ProgramFileError(f"{path}: larger than {MAX_PROGRAM >> 20} MiB; a program "
                                   "is one file of Python")
        try:
            text = data.decode()
            compile(text, name, "exec", dont_inherit=True)
        except UnicodeDecodeError:
            raise ProgramFileError(f"{path}: not UTF-8 text, so not a Python program") from None
        except (SyntaxError, ValueError) as exc:
            where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
            raise ProgramFileError(f"{path}: not a Python program: "
                                   f"{getattr(exc, 'msg', exc)}{where}") from None
        programs[name] = text
    return programs


class ProgramFiles:
    """The list of programs and each program's text, for GETs of PROGRAM_LIST and
    PROGRAMS/NAME; None for every other path (the bundle's)."""

    def __init__(self, programs: dict[str, str]) -> None:
        self.programs = programs

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        if asks_for_websocket(request):
            return None
        try:
            segments = bundle_path(request.path)
        except BadPath:
            return None  # StaticFiles answers it
        headers = {"Cache-Control": "no-cache"}
        if segments == (PROGRAM_LIST,):
            body = json.dumps({"programs": sorted(self.programs)}).encode()
            return respond(connection, HTTPStatus.OK, body,
                           {"Content-Type": CONTENT_TYPES[".json"], **headers})
        if len(segments) != 2 or segments[0] != PROGRAMS:
            return None
        text = self.programs.get(segments[1])
        if text is None:
            return respond(connection, HTTPStatus.NOT_FOUND, b"No such program\n",
                           {"Content-Type": "text/plain; charset=utf-8"})
        return respond(connection, HTTPStatus.OK, text.encode(),
                       {"Content-Type": "text/plain; charset=utf-8", **headers})


class BadPath(ValueError):
    """A request path that cannot name a file: not UTF-8, control characters, dot segments."""


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value allows gzip: named, or as `*`, with a weight above 0."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.lower()] = weight
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def bundle_path(target: str) -> tuple[str, ...]:
    """The path segments of a request target; BadPath if it cannot name a file."""
    path = urlsplit(target).path
    if len(path) > MAX_PATH:
        raise BadPath("path too long")
    try:
        path = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise BadPath("path not UTF-8") from None
    segments = path.split("/")
    if segments[0] != "" or any(not s.isprintable() or s in (".", "..") or "\\" in s
                                for s in segments):
        raise BadPath("not a plain path")
    if segments[-1] == "":
        segments[-1] = "index.html"
    return tuple(s for s in segments if s)


def respond(connection: ServerConnection, status: HTTPStatus, body: bytes,
            headers: dict[str, str]) -> Response:
    """A response with exactly these headers besides websockets' own (Date, Connection)."""
    response = connection.respond(status, "")
    del response.headers["Content-Type"], response.headers["Content-Length"]
    response.body = body
    for name, value in headers.items():
        response.headers[name] = value
    if status is not HTTPStatus.NOT_MODIFIED:
        response.headers["Content-Length"] = str(len(body))
    return response


class StaticFiles:
    """Files of `root` for plain GETs, None for WebSocket upgrades (the room server's).

    A file with a precompressed `NAME.gz` beside it goes out gzipped to clients that accept it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        if asks_for_websocket(request):
            return None
        text = {"Content-Type": "text/plain; charset=utf-8"}
        try:
            segments = bundle_path(request.path)
            path = self._file(segments)
        except BadPath:
            return respond(connection, HTTPStatus.BAD_REQUEST, b"Bad request\n", text)
        if path is None:
            return respond(connection, HTTPStatus.NOT_FOUND, b"Not found\n", text)
        named_by_digest = any(DIGEST_NAMED.fullmatch(segment) for segment in segments)
        headers = {"Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                   # Others revalidate every time: cheap on a 304; a rebuilt bundle is never
                   # stale.
                   "Cache-Control": IMMUTABLE if named_by_digest else "no-cache",
                   "Vary": "Accept-Encoding"}
        try:
            stat = path.stat()
            packed = path.with_name(path.name + ".gz")
            if accepts_gzip(request.headers.get("Accept-Encoding", "")) and packed.is_file():
                packed_stat = packed.stat()
                if packed_stat.st_mtime_ns >= stat.st_mtime_ns:  # not a file edited since
                    path, stat = packed, packed_stat
                    headers["Content-Encoding"] = "gzip"
            headers["ETag"] = etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
            if etag in (t.strip() for t in request.headers.get("If-None-Match", "").split(",")):
                return respond(connection, HTTPStatus.NOT_MODIFIED, b"",
                               {k: v for k, v in headers.items() if k != "Content-Type"})
            body = path.read_bytes()
        except OSError:  # gone since _file found it: the bundle is being rebuilt
            return respond(connection, HTTPStatus.NOT_FOUND, b"Not found\n", text)
        return respond(connection, HTTPStatus.OK, body, headers)

    def _file(self, segments: tuple[str, ...]) -> Path | None:
        try:
            candidate = self.root.joinpath(*segments).resolve()
            if candidate.is_relative_to(self.root) and candidate.is_file():
                return candidate
        except OSError:  # a name too long for the file system, say
            pass
        return None


class WebServer(RoomServer):
    """A RoomServer whose port also serves the browser bundle."""

    # How long a page connection waits for its next request: long enough for a page to ask for
    # its next file, short enough that idle connections do not pile up.
    page_idle_timeout = OPEN_TIMEOUT
    # How long a page connection may take nothing of an answer before it is dropped: a browser
    # compiling a large WebAssembly file on a busy machine reads it slowly.
    page_send_timeout = 60.0

    def __init__(self, host: str, port: int, bundle: Path,
                 programs: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(host, port, **kwargs)
        self.files = StaticFiles(bundle)
        self.programs = ProgramFiles(programs or {})
        self._page_connections: set[KeepAliveConnection] = set()  # plain HTTP ones

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        response = (self.handle_http(connection, request) or self.programs(connection, request)
                    or self.files(connection, request))
        if response is not None:
            for name, value in SECURITY_HEADERS.items():
                response.headers[name] = value
        return response

    def connection_options(self) -> dict[str, Any]:
        # The keep-alive connection bounds each request and, after an upgrade, the handshake.
        return {"open_timeout": None,
                "create_connection": functools.partial(
                    KeepAliveConnection, respond=self.process_request, headers=SECURITY_HEADERS,
                    idle_timeout=self.page_idle_timeout,
                    send_timeout=self.page_send_timeout, open_timeout=OPEN_TIMEOUT,
                    registry=self._page_connections)}

    async def close(self, message: str = SHUTDOWN_MESSAGE) -> None:
        # No await before the room server stops listening, so no new page connection slips in.
        for connection in list(self._page_connections):
            connection.close_idle()
        await super().close(message)

    @property
    def page_url(self) -> str:
        return "http" + self.url.removeprefix("ws") + "/"

    def announce(self) -> None:
        logger.info("pages on %s and the room server on %s", self.page_url, self.url,
                    extra=event("listening", url=self.url, pages=self.page_url))


def run(options: argparse.Namespace) -> int:
    chosen = options.bundle or os.environ.get(BUNDLE_VARIABLE)
    if chosen and not (Path(chosen) / "index.html").is_file():
        print(f"mpc-net web: error: no browser bundle in {chosen}; build one with "
              "`python wasm/build.py`, or leave out --bundle", file=sys.stderr)
        return 2
    try:
        ice_servers = parse_urls(options.ice or [])
        limits = limits_from(options)
        tls = tls_from(options)
        programs = read_programs(options.program)
    except (IceConfigError, ValueError) as exc:
        print(f"mpc-net web: error: {exc}", file=sys.stderr)
        return 2
    if chosen:
        bundle = Path(chosen)
    else:
        try:
            bundle = installed_bundle(_announce_build)
        except BuildError as exc:
            print(f"mpc-net web: error: cannot build the browser bundle: {exc}; or pass "
                  "--bundle DIR", file=sys.stderr)
            return 1
    start_logging(options)
    try:
        asyncio.run(serve_until_signal(WebServer(options.host, options.port, bundle,
                                                 programs, ice_servers=ice_servers, limits=limits,
                                                 tls=tls, redis=options.redis)))
    except OSError as exc:
        print(f"mpc-net web: error: cannot listen on {options.host}:{options.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _announce_build(directory: Path) -> None:
    print(f"mpc-net web: building the browser bundle of this installation (once) into "
          f"{directory}", file=sys.stderr, flush=True)
