"""A native party's event loop (mpc_net/native/loop.py): a long run of ready callbacks, as MPyC
starts by the thousand, is cut into turns that let the network and timers in."""

from __future__ import annotations

import asyncio
import socket
import time

from mpc_net.native.loop import PartyEventLoop

from helpers import mpc_net, program_lines


def burn(seconds: float) -> None:
    """Compute for `seconds` of this process's CPU time, as an MPyC task's step does."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_long_run_of_ready_callbacks_lets_the_network_and_timers_in_and_keeps_its_order(
) -> None:
    loop = PartyEventLoop()
    ran: list[int | str] = []
    seen_at: dict[str, int] = {}
    count = 300
    incoming, outgoing = socket.socketpair()
    try:
        outgoing.send(b"a SACK, say")

        def readable() -> None:
            seen_at["socket"] = len(ran)
            loop.remove_reader(incoming)

        def step(i: int) -> None:
            burn(0.001)
            ran.append(i)
            if i == 0:
                loop.call_soon(ran.append, "scheduled by the first")

        loop.add_reader(incoming, readable)
        loop.call_later(0.01, lambda: seen_at.setdefault("timer", len(ran)))
        for i in range(count):
            loop.call_soon(step, i)
        loop.run_until_complete(asyncio.sleep(0))
        while len(ran) < count + 1:
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        incoming.close()
        outgoing.close()
        loop.close()
    # asyncio's own loop runs all 300 (0.3 s) before it looks at the socket or the timer.
    assert seen_at["socket"] < count // 2 and seen_at["timer"] < count // 2, seen_at
    assert ran == [*range(count), "scheduled by the first"]


TASKS_BY_THE_THOUSAND = """\
import asyncio
import time
from mpyc.runtime import mpc


async def step():
    if mpc.pid == 1:  # 2500 tasks ready at once, 2 ms of computation each: 5 s in one turn
        end = time.process_time() + 0.002
        while time.process_time() < end:
            pass


async def main():
    await mpc.start()
    shares = mpc.input(mpc.SecInt(16)(mpc.pid + 1))
    await asyncio.gather(*(step() for _ in range(2500)))
    print("sum:", await mpc.output(mpc.sum(shares)))
    await mpc.shutdown()

mpc.run(main())
"""


def test_a_party_computing_thousands_of_tasks_at_once_is_not_given_up_by_its_peers(
        tmp_path) -> None:
    """Its keepalives go out between the tasks' steps: the peers, which wait 3 s for a word,
    do not declare it lost (they did: its loop ran all 2500 steps in one turn)."""
    program = tmp_path / "busy.py"
    program.write_text(TASKS_BY_THE_THOUSAND)
    done = mpc_net("run", str(program), "-M3", "--peer-timeout", "3", timeout=180)
    assert done.returncode == 0, done.stderr
    assert program_lines(done.stdout) == ["sum: 6"]
