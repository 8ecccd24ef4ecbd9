"""A test program in the `async def main()` style, as `python ranks.py -M3 N` runs it.

Reads sys.argv itself: N (public, default 3) values per party. Each party's private values on
its standard input, comma separated (fewer than N: padded with zeros). Prints all values
securely sorted, and their median.
"""

import sys

from mpyc.runtime import mpc


async def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    line = sys.stdin.readline().strip()
    mine = [int(v) for v in line.split(",") if v.strip()] if line else []
    mine = (mine + [0] * count)[:count]
    secint = mpc.SecInt(16)
    await mpc.start()
    values = [x for xs in mpc.input([secint(v) for v in mine]) for x in xs]
    ordered = await mpc.output(mpc.sorted(values))
    print("sorted:", ordered)
    print("median:", ordered[len(ordered) // 2])
    await mpc.shutdown()


mpc.run(main())
