"""Redis as the room-server processes use it (cluster.py): the client, key names and scripts.

The redis package is the optional [redis] extra, imported only here and only with --redis, so
that a room server without it neither needs nor loads it.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

PREFIX = "mpc-net:"
# Owner and liveness keys live this long unless renewed every HEARTBEAT seconds: a process that
# dies loses its rooms and its clients' seats this soon.
KEY_TTL_MS = 15000
HEARTBEAT = 3.0
COMMAND_TIMEOUT = 10.0
CONNECTIONS = 16  # to Redis, per process

# Renew the owner keys of the names whose rooms we hold; a missing key (Redis restarted) is ours
# again, one that another process holds is lost and returned.
RENEW = """
local lost = {}
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == false or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    lost[#lost + 1] = key
  end
end
return lost
"""
RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
"""


def _package() -> Any:
    try:
        import redis
        import redis.asyncio
        import redis.asyncio.retry
        import redis.backoff
    except ImportError:
        raise RuntimeError("--redis needs the redis package: pip install 'mpc-net[redis]'"
                           ) from None
    return redis


def redis_client(url: str) -> Any:
    """An asyncio client of the Redis at `url`."""
    redis = _package()
    # A busy event loop reads replies late; only a connection that cannot be made says quickly
    # that Redis is gone. Few jobs share the pool (claims.py, courier.py: one pipeline each at a
    # time), so no command waits long for a connection.
    # A connection kept in the pool across a Redis restart fails its next command ("Connection
    # closed by server"), which made a beat say Redis unreachable and a publish fail: a command
    # whose connection failed is sent once more, on a new one. Not one that timed out: Redis may
    # have carried it out.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=CONNECTIONS, timeout=COMMAND_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT, socket_connect_timeout=HEARTBEAT,
        retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 1,
                                        supported_errors=(redis.exceptions.ConnectionError,)))
    return redis.asyncio.Redis(connection_pool=pool)


def redis_blocking_client(url: str) -> Any:
    """A blocking client of the Redis at `url`, for a thread of its own (courier.Heartbeat)."""
    return _package().Redis.from_url(url, socket_timeout=HEARTBEAT,
                                     socket_connect_timeout=HEARTBEAT)


T = TypeVar("T")


async def next_batch(queue: asyncio.Queue[T], limit: int) -> list[T]:
    """What waits in `queue`, at least one item and at most `limit`, for one pipeline: a wave
    of work costs Redis a round trip per batch, not per item."""
    batch = [await queue.get()]
    while len(batch) < limit and not queue.empty():
        batch.append(queue.get_nowait())
    return batch


def redis_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import RedisError
    except ImportError:
        return (OSError,)
    return (RedisError, OSError)


def redis_timeouts() -> tuple[type[BaseException], ...]:
    """The errors of a reply that came too late, as opposed to a Redis that cannot be reached."""
    try:
        from redis.exceptions import TimeoutError as RedisTimeout
    except ImportError:
        return (TimeoutError,)
    return (RedisTimeout, TimeoutError)


def owner_key(name: str) -> str:
    """The key naming the process that holds the rooms of this name."""
    return f"{PREFIX}owner:{name}"


def alive_key(process: str) -> str:
    return f"{PREFIX}alive:{process}"


def channel(process: str) -> str:
    """The pub/sub channel of a process: what its clients are sent, what its rooms are told."""
    return f"{PREFIX}process:{process}"
