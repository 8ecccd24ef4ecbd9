"""Who holds the room each join is for, asked of Redis for many joins at once.

A wave of joins (every client of a course or a demo at the same moment) must not take one Redis
round trip each: a busy event loop reads each reply late, and joins then wait for a connection
of the pool long enough to look like Redis being down. So the claims wait in one queue, go to
Redis in one pipeline per batch, and the queue is bounded: a join beyond it is refused with
`busy` at once (the party tries again a moment later) rather than held without end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .protocol import ErrorCode, ProtocolError
from .store import KEY_TTL_MS, next_batch, owner_key, redis_timeouts

logger = logging.getLogger("mpc_net.signaling")

CLAIM_BATCH = 500
BUSY = "the room server is busy with other joins; try again in a moment"
SLOW = "the room server's Redis answers slowly; try again in a moment"


class RedisSlow(Exception):
    """Redis (or this process's event loop) did not answer a claim in time: no sign that Redis
    is down, which `Presence` tells from connecting."""


class Claims:
    """Claims of room names for joins: the owner a claim returns is this process if the name
    was free (SET NX), else the process that holds it."""

    def __init__(self, redis: Any, process: str, errors: tuple[type[BaseException], ...],
                 limit: int) -> None:
        self._redis = redis
        self._process = process
        self._errors = errors
        self._slow = redis_timeouts()
        self.limit = limit
        self.waiting = 0  # joins queued or in a pipeline under way
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[str]]] = asyncio.Queue()

    def admit(self) -> None:
        """Refuse (`busy`) a join that would wait beyond the queue's bound: before its proof is
        checked, the costly part of a join."""
        if self.waiting >= self.limit:
            raise ProtocolError(ErrorCode.BUSY, BUSY)

    def claim(self, name: str) -> asyncio.Future[str]:
        """The process that holds room `name`, claimed for us if nobody did: a future that ends
        in RedisSlow, or one of `errors` if Redis cannot be reached."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting += 1
        future.add_done_callback(self._done)
        self._queue.put_nowait((name, future))
        return future

    def _done(self, _: asyncio.Future[str]) -> None:
        self.waiting -= 1

    async def run(self) -> None:
        while True:
            batch = await next_batch(self._queue, CLAIM_BATCH)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for name, _ in batch:
                        pipe.set(owner_key(name), self._process, nx=True, px=KEY_TTL_MS,
                                 get=True)
                    owners = await pipe.execute()
            except self._errors as exc:
                failure = RedisSlow(str(exc)) if isinstance(exc, self._slow) else exc
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                continue
            for (_, future), owner in zip(batch, owners, strict=True):
                if not future.done():  # not cancelled meanwhile
                    future.set_result(self._process if owner is None else owner.decode())
