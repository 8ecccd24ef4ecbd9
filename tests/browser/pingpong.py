"""A ping-pong between parties 0 and 1 for `measure.py --ping-pong`: N (default 300) MPyC round
trips of one small message each way, after as many to warm up. Prints the median and the mean
round trip in milliseconds, as party 0 sees them; other parties only take part in the start and
the end.
"""

import statistics
import sys
import time

from mpyc.runtime import mpc


async def ping_pong(rounds: int) -> list[float]:
    times = []
    for k in range(rounds):
        start = time.perf_counter()
        await mpc.transfer(k, senders=[0], receivers=[1])
        await mpc.transfer(k, senders=[1], receivers=[0])
        times.append(time.perf_counter() - start)
    return times


async def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    await mpc.start()
    if len(mpc.parties) > 1 and mpc.pid in (0, 1):
        await ping_pong(rounds)
        times = await ping_pong(rounds)
        print(f"round trip: median {statistics.median(times) * 1000:.3f} ms, "
              f"mean {statistics.fmean(times) * 1000:.3f} ms")
    await mpc.shutdown()


mpc.run(main())
