"""The deployment of deploy/nginx-mpc-net.conf, as documented: Debian's nginx as the TLS reverse
proxy in front of two room-server processes sharing rooms through Redis, a computation through
it, and another once one process is gone."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from certificates import make_server_certificate
from sharedrooms import check_outputs, shared_room_server

from helpers import (
    DEMOS,
    ROOT,
    free_port,
    make_credentials,
    mpyc_tcp,
    start_parties,
)

DOCUMENTED = ROOT / "deploy" / "nginx-mpc-net.conf"
NGINX = "/usr/sbin/nginx"


def deployment(directory: Path, ports: list[int], listen: int) -> Path:
    """The documented configuration with this test's addresses and files, inside the smallest
    main configuration that runs nginx from `directory`."""
    text = DOCUMENTED.read_text()
    certificate = make_server_certificate(directory, "127.0.0.1")
    for documented, ours in (("127.0.0.1:8765", f"127.0.0.1:{ports[0]}"),
                             ("127.0.0.1:8766", f"127.0.0.1:{ports[1]}"),
                             ("listen 443 ssl", f"listen 127.0.0.1:{listen} ssl"),
                             ("/etc/ssl/certs/rooms.example.org.pem", str(certificate.certificate)),
                             ("/etc/ssl/private/rooms.example.org.key", str(certificate.key))):
        assert documented in text, documented
        text = text.replace(documented, ours)
    (directory / "mpc-net.conf").write_text(text)
    main = directory / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""  # workers read the test's own files
    main.write_text(f"""{user}
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/mpc-net.conf;
}}
""")
    return certificate.authority


def test_computation_through_nginx_in_front_of_two_processes(redis_server, tmp_path,
                                                             monkeypatch) -> None:
    ports = [free_port(), free_port()]
    servers = [shared_room_server(redis_server, "--port", str(port),
                                  "--max-connections-per-address", "0") for port in ports]
    listen = free_port()
    authority = deployment(tmp_path, ports, listen)
    nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                assert nginx.poll() is None, nginx.stderr.read()
                assert time.monotonic() < deadline, "nginx does not listen"
                time.sleep(0.1)
        monkeypatch.setenv("SSL_CERT_FILE", str(authority))  # the parties inherit it
        script = DEMOS / "auction.py"
        expected = mpyc_tcp(script, "-M3")
        credentials = make_credentials(tmp_path, 3)
        url = f"wss://127.0.0.1:{listen}"
        check_outputs(start_parties(script, 3, url, "proxied", credentials=credentials),
                      expected)
        # nginx takes turns between the processes; with one stopped, it sends every party to
        # the other.
        assert all(server.proc.poll() is None for server in servers)
        servers[0].close()
        check_outputs(start_parties(script, 3, url, "one-left", credentials=credentials),
                      expected)
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        for server in servers:
            if server.proc.poll() is None:
                server.close()
