"""A room-server process's two links to the others through Redis (cluster.py decides what goes
over them): its pub/sub channel with one publishing queue (`Courier`), and its liveness key with
the knowledge of whether Redis is reachable at all (`Presence`). Both outlive Redis restarts,
trying again with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from .protocol import ProtocolError
from .store import (
    HEARTBEAT,
    KEY_TTL_MS,
    alive_key,
    channel,
    next_batch,
    redis_blocking_client,
    redis_timeouts,
)

logger = logging.getLogger("mpc_net.signaling")

BACKOFF = (0.1, 2.0)  # first and longest wait before trying an unreachable Redis again
# A process whose event loop has not beaten for this long is let go by its Heartbeat thread.
STALL = 60.0
PUBLISH_BATCH = 500
# Pub/sub keeps nothing for a channel nobody listens on, as a process's channel is between a
# Redis restart (or a lost connection) and its listener subscribing again: messages that found
# no listener are held and offered again this often, in order, ...
RETRY = 0.2
# ... until the process has not listened for as long as its keys live: it is gone (its clients'
# seats and its rooms go too), and what was held for it is dropped.
GIVE_UP = KEY_TTL_MS / 1000

Errors = tuple[type[BaseException], ...]


class Courier:
    """Messages to other processes go out in order through one queue and one publishing
    connection (so each client's messages stay in order); ours arrive on our own channel."""

    def __init__(self, redis: Any, process: str, errors: Errors,
                 received: Callable[[bytes], None]) -> None:
        self._redis = redis
        self._process = process
        self._errors = errors
        self._slow = redis_timeouts()
        self._received = received
        self._out: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        # By channel: what found no listener there, in order, and since when.
        self._held: dict[str, list[str]] = {}
        self._since: dict[str, float] = {}
        self.listening = asyncio.Event()  # subscribed to our channel: /health says it

    def to(self, target: str, **message: Any) -> None:
        self._out.put_nowait((channel(target), json.dumps(message)))

    async def sent(self) -> None:
        """Until what was queued has been offered to Redis (what found no listener may still be
        held)."""
        await self._out.join()

    async def publish(self) -> None:
        loop = asyncio.get_running_loop()
        retry_at = 0.0
        while True:
            batch = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETRY if self._held else None):
                    batch = await next_batch(self._out, PUBLISH_BATCH)
            now = loop.time()
            # Held messages go first, and a message to a channel that holds some waits behind
            # them: each channel's messages stay in order.
            out: list[tuple[str, str]] = []
            if now >= retry_at:
                retry_at = now + RETRY
                out = [(name, data) for name, held in self._held.items() for data in held]
                self._held.clear()
            for name, data in batch:
                if name in self._held:
                    self._held[name].append(data)
                else:
                    out.append((name, data))
            await self._send(out, now)
            for _ in batch:
                self._out.task_done()

    async def _send(self, out: list[tuple[str, str]], now: float) -> None:
        """Publish `out` and hold what found no listener. One transaction: a listener that
        subscribes meanwhile gets all or none of its channel's messages, never a later one
        without an earlier one."""
        if not out:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for name, data in out:
                    pipe.publish(name, data)
                listeners = await pipe.execute()
        except self._slow as exc:  # they may have gone out: sent again, they could come twice
            logger.warning("lost %d messages to other processes: %s", len(out), exc)
            return
        except self._errors as exc:
            logger.debug("holding %d messages to other processes: %s", len(out), exc)
            listeners = [0] * len(out)
        for (name, data), count in zip(out, listeners, strict=True):
            if count:
                self._since.pop(name, None)
            else:
                self._held.setdefault(name, []).append(data)
                self._since.setdefault(name, now)
        for name in [n for n, since in self._since.items() if now - since >= GIVE_UP]:
            logger.warning("dropped %d messages to %s: nobody listened for %g s",
                           len(self._held.pop(name, ())), name, GIVE_UP)
            del self._since[name]

    async def listen(self) -> None:
        """redis-py's PubSub does not resubscribe after Redis restarts, so this does."""
        delay = BACKOFF[0]
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(channel(self._process))
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":  # Redis says we listen from now on
                        self.listening.set()
                        delay = BACKOFF[0]
                        continue
                    try:
                        self._received(message["data"])
                    except (ValueError, KeyError, TypeError, ProtocolError) as exc:
                        logger.warning("unusable message from another process: %s", exc)
            except self._errors as exc:
                logger.debug("listening on Redis: %s", exc)
            finally:
                self.listening.clear()
                await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(2 * delay, BACKOFF[1])


class Heartbeat:
    """Our liveness key, renewed also from a thread of its own: under load (thousands of
    connections on a busy machine) the event loop runs so late that its own renewals outlast
    the key's life, and the other processes would drop our clients' seats. The thread renews the
    key only while the loop has beaten (`progress`) within STALL seconds, so a process whose loop
    is stuck is still given up."""

    def __init__(self, url: str, process: str, errors: Errors,
                 clock: Callable[[], float]) -> None:
        self._redis = redis_blocking_client(url)
        self._key = alive_key(process)
        self._errors = errors
        self._clock = clock
        self.progress = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mpc-net liveness", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            if self._clock() - self.progress < STALL:
                try:
                    self._redis.set(self._key, "1", px=KEY_TTL_MS)
                except self._errors:
                    pass  # Presence, on the event loop, tells whether Redis is reachable

    def halt(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        """Stop renewing (before our key is deleted, lest the thread set it again)."""
        self.halt()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)
        self._redis.close()


class Presence:
    """Our liveness key, renewed every HEARTBEAT together with `work` (the cluster's renewals),
    and whether Redis answers. `work(settled)`: settled once Redis has been reachable for a key's
    lifetime, when every living process has renewed its keys again after a restart."""

    def __init__(self, redis: Any, process: str, errors: Errors, clock: Callable[[], float],
                 work: Callable[[bool], Awaitable[None]], heartbeat: Heartbeat) -> None:
        self._redis = redis
        self.heartbeat = heartbeat
        self._process = process
        self._errors = errors
        self._clock = clock
        self._work = work
        self.reachable = False
        self._since = 0.0  # when Redis last became reachable

    async def first(self) -> None:
        """A Redis that answers at once is known reachable before any client connects; one that
        does not is tried again by `keep`, in the background."""
        self.heartbeat.start()
        try:
            async with asyncio.timeout(HEARTBEAT):
                await self.beat()
        except (TimeoutError, *self._errors) as exc:
            # Said once the loop runs again: after the room server's address, its first line.
            asyncio.get_running_loop().call_soon(
                logger.warning, "Redis unreachable: %s; trying again", exc or "timed out")

    async def beat(self) -> None:
        self.heartbeat.progress = self._clock()
        await self._redis.set(alive_key(self._process), "1", px=KEY_TTL_MS)
        if not self.reachable:
            if self._since:  # not at start, where the room server's address is logged first
                logger.info("Redis reachable again", extra={"event": "redis-reachable"})
            self.reachable, self._since = True, self._clock()
        await self._work(self._clock() - self._since >= KEY_TTL_MS / 1000)

    async def keep(self) -> None:
        try:
            await self._keep()
        finally:  # the room server stops: so does our key's renewal
            self.heartbeat.halt()

    async def _keep(self) -> None:
        delay = BACKOFF[0]
        while True:
            try:
                await self.beat()
            except self._errors as exc:
                if self.reachable:
                    logger.warning("Redis unreachable: %s; trying again", exc)
                self.reachable = False
                await asyncio.sleep(delay)
                delay = min(2 * delay, BACKOFF[1])
                continue
            delay = BACKOFF[0]
            await asyncio.sleep(HEARTBEAT)

    async def living(self, processes: list[str]) -> set[str]:
        """Which of `processes` still renew their liveness keys."""
        alive = await self._redis.mget([alive_key(p) for p in processes])
        return {p for p, a in zip(processes, alive, strict=True) if a is not None}

    async def leave(self) -> None:
        await self.heartbeat.stop()
        await self._redis.delete(alive_key(self._process))
