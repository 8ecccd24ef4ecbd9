"""Small programs the NAT tests run inside the namespaces: `python tools.py COMMAND ...`.

udp-echo HOST PORT [PORT...]   answer every datagram with the sender's address as the server saw
                               it ("HOST:PORT"); asked "both", also send that answer from the
                               next port (which a port-restricted NAT must drop)
udp-probe HOST PORT [PORT...]  from one socket, ask each port; print a JSON list of what came back
turn-allocate HOST PORT USER PASSWORD udp|tcp
                               ask the TURN server for an allocation (with aioice, as the
                               parties do); print JSON: relayed and mapped address, or error
wiretap PORT UPSTREAM LOG      a WebSocket relay to the room server that writes every message
                               (one JSON object per line) to LOG: the SDPs the parties send
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys


def udp_echo(host: str, ports: list[int]) -> None:
    socks = {}
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        socks[port] = sock
    print("ready", flush=True)
    import selectors
    selector = selectors.DefaultSelector()
    for sock in socks.values():
        selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            data, peer = sock.recvfrom(2048)
            answer = f"{peer[0]}:{peer[1]}".encode()
            sock.sendto(answer, peer)
            other = socks.get(sock.getsockname()[1] + 1)
            if data == b"both" and other is not None:
                other.sendto(b"from-other-port " + answer, peer)


def udp_probe(host: str, ports: list[int]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.3)  # answers take well under a millisecond here
    results = []
    for port in ports:
        sock.sendto(b"both", (host, port))
        answers = []
        try:
            while True:
                answers.append(sock.recv(2048).decode())
        except TimeoutError:
            pass
        results.append({"port": port, "answers": answers})
    print(json.dumps(results), flush=True)


async def turn_allocate(host: str, port: int, username: str, password: str,
                        transport: str) -> None:
    from aioice.turn import create_turn_endpoint

    try:
        relay, _ = await asyncio.wait_for(create_turn_endpoint(
            asyncio.DatagramProtocol, (host, port), username, password, transport=transport), 2)
    except Exception as exc:  # noqa: BLE001 - the probe reports whatever went wrong
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    print(json.dumps({"relayed": list(relay.get_extra_info("sockname")),
                      "mapped": list(relay.get_extra_info("related_address"))}), flush=True)
    relay.close()


async def wiretap(port: int, upstream: str, log_path: str) -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    log = open(log_path, "a", buffering=1)
    counter = 0

    async def pipe(source, sink, connection: int, direction: str) -> None:
        try:
            async for message in source:
                text = message if isinstance(message, str) else message.decode(errors="replace")
                log.write(json.dumps({"connection": connection, "direction": direction,
                                      "message": text}) + "\n")
                await sink.send(message)
        except ConnectionClosed:
            pass
        finally:
            await sink.close()

    async def handle(client) -> None:
        nonlocal counter
        counter += 1
        async with connect(upstream, max_size=None) as server:
            await asyncio.gather(pipe(client, server, counter, "to-server"),
                                 pipe(server, client, counter, "to-party"))

    host = upstream.split("//", 1)[1].rsplit(":", 1)[0]
    async with serve(handle, host, port, max_size=None):
        print(f"wiretap listening on ws://{host}:{port}", file=sys.stderr, flush=True)
        await asyncio.Future()


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "udp-echo":
        udp_echo(args[0], [int(p) for p in args[1:]])
    elif command == "udp-probe":
        udp_probe(args[0], [int(p) for p in args[1:]])
    elif command == "turn-allocate":
        asyncio.run(turn_allocate(args[0], int(args[1]), args[2], args[3], args[4]))
    elif command == "wiretap":
        asyncio.run(wiretap(int(args[0]), args[1], args[2]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
