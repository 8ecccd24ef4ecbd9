"""Workload: many small sequential rounds (latency-bound).

Every step depends on the result of the previous one, so each costs at least one round trip
between the parties and only a few bytes: the pattern of chatty MPyC programs (sorting,
secret santa, linear programming). Three phases:

1. R sequential openings of a secret (one round each);
2. a chain of R secure multiplications, each needing the previous product (one round each);
3. C sequential secure comparisons: a running maximum whose every step needs the previous one.

Run: python benchmarks/rounds.py -M3 [--rounds R] [--comparisons C]
"""

import argparse

from mpyc.runtime import mpc

secint = mpc.SecInt(32)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Many small sequential MPyC rounds.")
    parser.add_argument("--rounds", type=int, default=200, help="R (default %(default)s)")
    parser.add_argument("--comparisons", type=int, default=30, help="C (default %(default)s)")
    return parser.parse_args()


def value(k: int) -> int:
    """Public formula for the k-th input, so every party can check the result in the clear."""
    return (7919 * k + 13) % 1009


async def main(rounds: int, comparisons: int) -> None:
    await mpc.start()
    total = sum(mpc.input(secint(mpc.pid + 1)))
    opened = 0
    for _ in range(rounds):
        opened = await mpc.output(total + opened)  # waits: the next step needs this value
    one = total - (len(mpc.parties) * (len(mpc.parties) + 1) // 2 - 1)  # a secret 1
    product = one
    for _ in range(rounds):
        product = product * one  # a resharing round, which must wait for the previous one
    product = await mpc.output(product)
    best = secint(value(0))
    for k in range(1, comparisons):
        v = secint(value(k))
        best = mpc.if_else(best < v, v, best)
    maximum = await mpc.output(best)
    await mpc.shutdown()
    expected_max = max(value(k) for k in range(comparisons))
    print(f"Sequential openings: {rounds}, multiplications: {rounds}, comparisons: {comparisons}")
    print(f"Last opening: {opened}; product: {product}; maximum: {maximum}")
    print(f"Matches the plaintext computation: {product == 1 and maximum == expected_max}")


if __name__ == "__main__":
    options = parse_args()
    mpc.run(main(options.rounds, options.comparisons))
