"""`mpc-net web`: the browser bundle and a room server on one port.

The room server is the usual one; websockets' `process_request` hook answers every request that
is not a WebSocket upgrade with a file of the bundle (`python wasm/build.py` makes it), so a
page and the room it joins share one origin, one port and one process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .argtypes import port
from .ice import IceConfigError, parse_urls
from .signaling.server import RoomServer, add_limit_arguments, limits_from, setup_logging

logger = logging.getLogger("mpc_net.web")

BUNDLE_VARIABLE = "MPC_NET_WEB_BUNDLE"
# Where `python wasm/build.py` puts the bundle, for a checkout installed in place.
DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "wasm" / "dist"

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


class StaticFiles:
    """The `process_request` hook: files of `root` for plain GETs, None for WebSockets."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None  # the room server's
        path = self._file(request.path)
        if path is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found\n")
        stat = path.stat()
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        if request.headers.get("If-None-Match") == etag:
            response = connection.respond(HTTPStatus.NOT_MODIFIED, "")
            response.body = b""
            del response.headers["Content-Type"], response.headers["Content-Length"]
        else:
            response = connection.respond(HTTPStatus.OK, "")
            response.body = path.read_bytes()
            del response.headers["Content-Type"], response.headers["Content-Length"]
            response.headers["Content-Type"] = CONTENT_TYPES.get(path.suffix,
                                                                 "application/octet-stream")
            response.headers["Content-Length"] = str(len(response.body))
        # Revalidate every time: cheap on a 304, and a rebuilt bundle is never served stale.
        response.headers["Cache-Control"] = "no-cache"
        response.headers["ETag"] = etag
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def _file(self, target: str) -> Path | None:
        path = unquote(urlsplit(target).path)
        if path.endswith("/"):
            path += "index.html"
        candidate = (self.root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate


class WebServer(RoomServer):
    """A RoomServer whose port also serves the browser bundle."""

    def __init__(self, host: str, port: int, bundle: Path, **kwargs) -> None:
        super().__init__(host, port, **kwargs)
        self.files = StaticFiles(bundle)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        return self.handle_http(connection, request) or self.files(connection, request)

    @property
    def page_url(self) -> str:
        return "http" + self.url.removeprefix("ws") + "/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--port", type=port, default=8000,
                        help="TCP port for the pages and the room server (default %(default)s; "
                             "0 picks a free one)")
    parser.add_argument("--bundle", type=Path,
                        default=Path(os.environ.get(BUNDLE_VARIABLE, DEFAULT_BUNDLE)),
                        help="the browser bundle from `python wasm/build.py` (default: "
                             f"${BUNDLE_VARIABLE}, else wasm/dist of this checkout)")
    parser.add_argument("--ice", action="append", metavar="URL",
                        help="a STUN or TURN server to hand to every party (repeatable; same "
                             "forms as for `mpc-net run --ice`)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log every join, leave and error")
    add_limit_arguments(parser)


def run(options: argparse.Namespace) -> int:
    if not (options.bundle / "index.html").is_file():
        print(f"mpc-net web: error: no browser bundle in {options.bundle}; build it with "
              "`python wasm/build.py`", file=sys.stderr)
        return 2
    try:
        ice_servers = parse_urls(options.ice or [])
        limits = limits_from(options)
    except (IceConfigError, ValueError) as exc:
        print(f"mpc-net web: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(options.log_format, options.verbose > 0)
    try:
        asyncio.run(_serve_until_signal(WebServer(options.host, options.port, options.bundle,
                                                  ice_servers=ice_servers, limits=limits)))
    except OSError as exc:
        print(f"mpc-net web: error: cannot listen on {options.host}:{options.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_signal(server: WebServer) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with server:
            logger.info("pages on %s and the room server on %s", server.page_url, server.url)
            await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
